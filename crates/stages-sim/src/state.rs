//! The simulator's shared state: records, credentials, faults and counters.
//!
//! It is one cheap-to-clone handle so that the HTTP workers, the admin routes
//! and a test holding a running simulator all see and change the same data.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::callbacks::{CallbackAttempt, CallbackReply, CallbackStatus, CallbackTarget, Hub};
use crate::db::Db;
use crate::error::ApiError;
use crate::faults::{self, FaultRule, Plan};
use crate::seed;
use crate::wire::*;
use crate::SimConfig;

/// What `GET /admin/stats` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Stats {
    /// Requests to `/api/v1`, keyed by `"METHOD /api/v1/route/{template}"`,
    /// including refused and faulted ones. Unknown routes count under
    /// `"METHOD (unmatched)"`.
    pub requests: BTreeMap<String, u64>,
    pub total_requests: u64,
    pub sites: usize,
    pub devices: usize,
    pub contacts: usize,
    pub configurations: usize,
    pub notes: usize,
    /// Current and scheduled tests.
    pub tests: usize,
}

/// One change Stages applied to a site or a device, in the order applied:
/// tests read it to tell a push sent twice from an edit made in between.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedWrite {
    /// Made through the API (by an integration), not by Stages' own staff
    /// (a test calling `patch_site`, `patch_device` or `change_xmit`).
    pub by_api: bool,
    /// The patch as applied (`{"new_transmitter_code": ..}` for change-xmit).
    pub body: serde_json::Value,
}

#[derive(Debug)]
struct Inner {
    db: Mutex<Db>,
    users: Mutex<HashMap<String, String>>,
    faults: Mutex<Vec<FaultRule>>,
    requests: Mutex<BTreeMap<String, u64>>,
    /// Applied writes by site number or device id.
    writes: Mutex<HashMap<String, Vec<AppliedWrite>>>,
    callbacks: Hub,
    initial: SimConfig,
}

/// A handle on the simulator's state; clones share it.
#[derive(Debug, Clone)]
pub struct SimState {
    inner: Arc<Inner>,
}

/// Locks, carrying on after a panic elsewhere (the data stays usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

impl SimState {
    /// A state seeded and configured as `config` says (the bind address is unused).
    pub fn new(config: &SimConfig) -> Self {
        let state = SimState {
            inner: Arc::new(Inner {
                db: Mutex::new(Db::new()),
                users: Mutex::new(HashMap::new()),
                faults: Mutex::new(Vec::new()),
                requests: Mutex::new(BTreeMap::new()),
                writes: Mutex::new(HashMap::new()),
                callbacks: Hub::new(),
                initial: config.clone(),
            }),
        };
        state.reset();
        state
    }

    /// Back to the state at start: the seeded sites, the first user, the
    /// start-up faults, no counted requests, no queued callbacks and zero
    /// callback counters. The callback target is kept.
    pub fn reset(&self) {
        let cfg = &self.inner.initial;
        let mut db = Db::new();
        seed::seed(&mut db, cfg.seed_sites, now());
        *lock(&self.inner.db) = db;
        let mut users = lock(&self.inner.users);
        users.clear();
        users.insert(cfg.username.clone(), cfg.password.clone());
        drop(users);
        *lock(&self.inner.faults) = cfg.faults.clone();
        lock(&self.inner.requests).clear();
        lock(&self.inner.writes).clear();
        self.inner.callbacks.reset();
    }

    /// Runs `f` on the records under the lock (keep it short).
    pub fn with_db<R>(&self, f: impl FnOnce(&mut Db) -> R) -> R {
        f(&mut lock(&self.inner.db))
    }

    // ---- credentials ----------------------------------------------------

    /// Adds (or replaces the password of) a user.
    pub fn add_user(&self, username: &str, password: &str) {
        lock(&self.inner.users).insert(username.to_string(), password.to_string());
    }

    pub fn check_credentials(&self, username: &str, password: &str) -> bool {
        lock(&self.inner.users)
            .get(username)
            .is_some_and(|p| p == password)
    }

    // ---- faults ---------------------------------------------------------

    pub fn faults(&self) -> Vec<FaultRule> {
        lock(&self.inner.faults).clone()
    }

    pub fn set_faults(&self, rules: Vec<FaultRule>) -> Result<(), String> {
        for r in &rules {
            r.validate()?;
        }
        *lock(&self.inner.faults) = rules;
        Ok(())
    }

    pub fn add_fault(&self, rule: FaultRule) -> Result<(), String> {
        rule.validate()?;
        lock(&self.inner.faults).push(rule);
        Ok(())
    }

    pub fn clear_faults(&self) {
        lock(&self.inner.faults).clear();
    }

    pub(crate) fn plan_faults(&self, method: &str, path: &str) -> Plan {
        faults::plan(&mut lock(&self.inner.faults), method, path)
    }

    // ---- counters -------------------------------------------------------

    pub(crate) fn count_request(&self, key: String) {
        *lock(&self.inner.requests).entry(key).or_default() += 1;
    }

    /// Requests seen for a key like `"POST /api/v1/sites"`.
    pub fn request_count(&self, key: &str) -> u64 {
        lock(&self.inner.requests).get(key).copied().unwrap_or(0)
    }

    pub fn stats(&self) -> Stats {
        let requests = lock(&self.inner.requests).clone();
        let total_requests = requests.values().sum();
        let now = now();
        self.with_db(|db| Stats {
            requests,
            total_requests,
            sites: db.site_count(),
            devices: db.device_count(),
            contacts: db.contact_count(),
            configurations: db.configuration_count(),
            notes: db.note_count(),
            tests: db.test_count(now),
        })
    }

    // ---- records, for tests ---------------------------------------------

    pub fn site_count(&self) -> usize {
        self.with_db(|db| db.site_count())
    }

    pub fn device_count(&self) -> usize {
        self.with_db(|db| db.device_count())
    }

    pub fn contact_count(&self) -> usize {
        self.with_db(|db| db.contact_count())
    }

    /// Current and scheduled tests.
    pub fn test_count(&self) -> usize {
        self.with_db(|db| db.test_count(now()))
    }

    pub fn sites(&self) -> Vec<Site> {
        self.with_db(|db| db.sites())
    }

    pub fn site(&self, site_no: &str) -> Option<Site> {
        self.with_db(|db| db.get_site(site_no).ok())
    }

    pub fn devices(&self, site_no: &str) -> Vec<Device> {
        self.with_db(|db| db.list_devices(site_no, now()).unwrap_or_default())
    }

    pub fn device(&self, device_id: &str) -> Option<Device> {
        self.with_db(|db| db.get_device(device_id, now()).ok())
    }

    pub fn device_by_transmitter_code(&self, code: &str) -> Option<Device> {
        self.with_db(|db| db.device_by_transmitter_code(code, now()))
    }

    pub fn configurations(&self, device_id: &str) -> Vec<Configuration> {
        self.with_db(|db| db.list_configurations(device_id, now()).unwrap_or_default())
    }

    pub fn contacts(&self, site_no: &str) -> Vec<Contact> {
        self.with_db(|db| db.list_contacts(site_no).unwrap_or_default())
    }

    pub fn notes(&self, site_no: &str) -> Vec<Note> {
        self.with_db(|db| db.list_notes(site_no).unwrap_or_default())
    }

    pub fn tests(&self, device_id: &str) -> Vec<Test> {
        self.with_db(|db| db.list_tests(device_id, now()).unwrap_or_default())
    }

    pub fn history(&self, device_id: &str) -> Vec<HistoryEntry> {
        self.with_db(|db| {
            db.device_history(device_id, None, None, now())
                .unwrap_or_default()
        })
    }

    pub fn create_site(&self, site: NewSite) -> Result<CreatedSite, ApiError> {
        self.with_db(|db| db.create_site(site, now()))
    }

    /// Changes a site as a Stages operator would (what `PATCH
    /// /api/v1/sites/{site_no}` does). A change of address1, address2, city,
    /// state, zip, phone or info of a linked site queues a `site.updated`
    /// callback. (`with_db(|db| db.patch_site(..))` changes the record
    /// without any callback.)
    pub fn patch_site(&self, site_no: &str, patch: SitePatch) -> Result<Site, ApiError> {
        self.patch_site_by(site_no, patch, false)
    }

    pub(crate) fn patch_site_by(
        &self,
        site_no: &str,
        patch: SitePatch,
        by_api: bool,
    ) -> Result<Site, ApiError> {
        let now = now();
        let body = serde_json::to_value(&patch).unwrap_or_default();
        self.with_db(|db| {
            let before = db.get_site(site_no)?;
            let after = db.patch_site(site_no, patch, now)?;
            // Queued under the records' lock: callbacks keep the order of changes.
            self.inner.callbacks.site_changed(&before, &after, now);
            self.record_write(site_no, by_api, body);
            Ok(after)
        })
    }

    fn record_write(&self, record: &str, by_api: bool, body: serde_json::Value) {
        lock(&self.inner.writes)
            .entry(record.to_owned())
            .or_default()
            .push(AppliedWrite { by_api, body });
    }

    /// The changes applied to a site (by number) or a device (by id), oldest first.
    pub fn applied_writes(&self, record: &str) -> Vec<AppliedWrite> {
        lock(&self.inner.writes)
            .get(record)
            .cloned()
            .unwrap_or_default()
    }

    /// Changes a device as a Stages operator would (`PATCH
    /// /api/v1/devices/{device_id}`). A change of device type, location or
    /// info of a linked device queues a `device.updated` callback.
    pub fn patch_device(&self, device_id: &str, patch: DevicePatch) -> Result<Device, ApiError> {
        self.patch_device_by(device_id, patch, false)
    }

    pub(crate) fn patch_device_by(
        &self,
        device_id: &str,
        patch: DevicePatch,
        by_api: bool,
    ) -> Result<Device, ApiError> {
        let now = now();
        let body = serde_json::to_value(&patch).unwrap_or_default();
        self.with_db(|db| {
            let before = db.get_device(device_id, now)?;
            let after = db.patch_device(device_id, patch, now)?;
            self.inner.callbacks.device_changed(&before, &after, now);
            self.record_write(device_id, by_api, body);
            Ok(after)
        })
    }

    /// Changes a device's transmitter code (`POST
    /// /api/v1/devices/{device_id}/change-xmit`). A change on a linked device
    /// queues a `device.updated` callback with `transmitter_code`.
    pub fn change_xmit(&self, device_id: &str, new_code: &str) -> Result<Device, ApiError> {
        self.change_xmit_by(device_id, new_code, false)
    }

    pub(crate) fn change_xmit_by(
        &self,
        device_id: &str,
        new_code: &str,
        by_api: bool,
    ) -> Result<Device, ApiError> {
        let now = now();
        self.with_db(|db| {
            let before = db.get_device(device_id, now)?;
            let after = db.change_xmit(device_id, new_code, now)?;
            self.inner.callbacks.device_changed(&before, &after, now);
            let body = serde_json::json!({ "new_transmitter_code": new_code });
            self.record_write(device_id, by_api, body);
            Ok(after)
        })
    }

    /// Sets what the panel reports: normal, alarm or out of service.
    pub fn set_device_status(
        &self,
        device_id: &str,
        status: DeviceStatus,
    ) -> Result<Device, ApiError> {
        self.with_db(|db| db.set_status(device_id, status, now()))
    }

    /// Records a signal from the device, now.
    pub fn add_signal(
        &self,
        device_id: &str,
        event_code: &str,
        description: &str,
        point: Option<u32>,
    ) -> Result<HistoryEntry, ApiError> {
        self.with_db(|db| db.add_signal(device_id, now(), event_code, description, point))
    }

    // ---- callbacks ------------------------------------------------------

    /// Sets (replaces) where callbacks go. Queued callbacks keep the target
    /// they were queued for.
    pub fn set_callback_target(&self, target: CallbackTarget) -> Result<(), String> {
        self.inner.callbacks.set_target(target)
    }

    /// Stops callbacks: no target, queued ones dropped.
    pub fn clear_callback_target(&self) {
        self.inner.callbacks.clear_target();
    }

    /// The target (password included), if any.
    pub fn callback_target(&self) -> Option<CallbackTarget> {
        self.inner.callbacks.target().map(|t| (*t).clone())
    }

    /// The target without password, and the counters.
    pub fn callback_status(&self) -> CallbackStatus {
        self.inner.callbacks.status()
    }

    /// Every HTTP request made to the target, oldest first (the last 1000).
    pub fn callback_log(&self) -> Vec<CallbackAttempt> {
        self.inner.callbacks.log()
    }

    /// Holds callback deliveries while `true`; they queue up and go when released.
    pub fn set_callbacks_paused(&self, paused: bool) {
        self.inner.callbacks.set_paused(paused);
    }

    /// Callbacks queued or in flight.
    pub fn callbacks_pending(&self) -> u64 {
        self.inner.callbacks.pending()
    }

    /// Waits until no callback is queued or in flight; false on timeout.
    pub async fn callbacks_idle(&self, timeout: std::time::Duration) -> bool {
        self.inner.callbacks.ensure_worker();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.inner.callbacks.pending() == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Sends one callback (any JSON object) to the target now, once, and
    /// returns its answer. A missing `event_id` or `occurred_at` is filled
    /// in; a given `event_id` is kept. 409 `no_callback_target` without a
    /// target, 502 `callback_failed` when the target does not answer.
    pub async fn send_callback(&self, body: serde_json::Value) -> Result<CallbackReply, ApiError> {
        self.inner.callbacks.send_now(body).await
    }

    /// Starts the callback delivery task on the current runtime if it is
    /// not running yet (it starts by itself when the state is made inside a
    /// tokio runtime).
    pub fn start_callback_delivery(&self) {
        self.inner.callbacks.ensure_worker();
    }
}
