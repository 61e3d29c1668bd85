//! Callbacks: the simulator calls the billing integration back when linked
//! records change, the way Stages does.
//!
//! The payloads mirror `domain::stages::StagesCallback` (written out again on
//! purpose, as in [`crate::wire`]). Emitted callbacks go onto one FIFO queue
//! that a background tokio task delivers with HTTP Basic auth, retrying with
//! backoff; one queue means callbacks about a record arrive in the order of
//! the changes. See "Callbacks" in `docs/stages-protocol.md`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::wire::{Device, Site};

/// Site fields whose change Stages reports (`site.updated`).
pub const SITE_CALLBACK_FIELDS: &[&str] = &[
    "address1", "address2", "city", "state", "zip", "phone", "info",
];

/// Device fields whose change Stages reports (`device.updated`), besides the
/// transmitter code (changed through `change-xmit`).
pub const DEVICE_CALLBACK_FIELDS: &[&str] = &["location", "info"];

/// How many delivery attempts are kept for [`crate::SimState::callback_log`].
const LOG_LIMIT: usize = 1000;

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One callback as it goes over the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Callback {
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: CallbackEvent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum CallbackEvent {
    /// Site fields changed; `changes` holds the new values of the changed ones.
    #[serde(rename = "site.updated")]
    SiteUpdated {
        site_no: String,
        #[serde(default)]
        billing_id: Option<String>,
        changes: BTreeMap<String, String>,
    },
    /// Device fields changed (`transmitter_code`, `location`, `info`).
    #[serde(rename = "device.updated")]
    DeviceUpdated {
        device_id: String,
        site_no: String,
        #[serde(default)]
        billing_id: Option<String>,
        changes: BTreeMap<String, String>,
    },
    /// A whole site sent to billing (only ever sent through
    /// `POST /admin/callbacks/send`; the simulator has no operator to do it).
    #[serde(rename = "site.send_to_billing")]
    SendToBilling {
        site_no: String,
        target: SendToBillingTarget,
    },
}

impl CallbackEvent {
    /// The `type` on the wire.
    pub fn type_name(&self) -> &'static str {
        match self {
            CallbackEvent::SiteUpdated { .. } => "site.updated",
            CallbackEvent::DeviceUpdated { .. } => "device.updated",
            CallbackEvent::SendToBilling { .. } => "site.send_to_billing",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SendToBillingTarget {
    NewCustomer {
        #[serde(default)]
        business: bool,
        #[serde(default)]
        first_name: String,
        #[serde(default)]
        last_name: String,
        #[serde(default)]
        address1: String,
        #[serde(default)]
        address2: String,
        #[serde(default)]
        city: String,
        #[serde(default)]
        state: String,
        #[serde(default)]
        zip: String,
    },
    ExistingCustomer {
        customer_id: String,
    },
}

/// A random UUID v4, as text: the id of one callback event.
pub fn new_event_id() -> String {
    let mut b: [u8; 16] = rand::thread_rng().gen();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn default_max_attempts() -> u32 {
    5
}

fn default_backoff_ms() -> u64 {
    200
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// Where callbacks go and how (`PUT /admin/callbacks`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackTarget {
    /// e.g. `http://127.0.0.1:PORT/v1/webhooks/stages/<connection id>`.
    pub url: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// Deliver every queued callback twice (same event id): for dedupe tests.
    #[serde(default)]
    pub duplicate: bool,
    /// Deliver queued callbacks in random order rather than Stages' order of
    /// the changes: for tests that callbacks applied out of order converge.
    #[serde(default)]
    pub shuffle: bool,
    /// Attempts per delivery (1..=20), the first included.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait before the first retry; doubles per retry, at most 5 s.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Per-attempt timeout.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl std::fmt::Debug for CallbackTarget {
    // The password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackTarget")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("duplicate", &self.duplicate)
            .field("shuffle", &self.shuffle)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_ms", &self.backoff_ms)
            .field("timeout_ms", &self.timeout_ms)
            .finish_non_exhaustive()
    }
}

impl CallbackTarget {
    /// A target with the default delivery settings (5 attempts, 200 ms
    /// first backoff, 10 s timeout, no duplicates).
    pub fn new(
        url: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        CallbackTarget {
            url: url.into(),
            username: username.into(),
            password: password.into(),
            duplicate: false,
            shuffle: false,
            max_attempts: default_max_attempts(),
            backoff_ms: default_backoff_ms(),
            timeout_ms: default_timeout_ms(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| format!("url: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("url: must be http or https".to_string());
        }
        if self.username.contains(':') {
            return Err("username: must not contain ':'".to_string());
        }
        if !(1..=20).contains(&self.max_attempts) {
            return Err("max_attempts: must be 1..=20".to_string());
        }
        if self.backoff_ms > 60_000 {
            return Err("backoff_ms: must be at most 60000".to_string());
        }
        if !(1..=600_000).contains(&self.timeout_ms) {
            return Err("timeout_ms: must be 1..=600000".to_string());
        }
        Ok(())
    }

    /// The wait after failed attempt `n` (1-based).
    fn backoff(&self, n: u32) -> Duration {
        let factor = 1u64 << (n - 1).min(16);
        Duration::from_millis(self.backoff_ms.saturating_mul(factor)).min(MAX_BACKOFF)
    }

    fn view(&self) -> CallbackTargetView {
        CallbackTargetView {
            url: self.url.clone(),
            username: self.username.clone(),
            duplicate: self.duplicate,
            shuffle: self.shuffle,
            max_attempts: self.max_attempts,
            backoff_ms: self.backoff_ms,
            timeout_ms: self.timeout_ms,
        }
    }
}

/// A target as `GET /admin/callbacks` shows it: without the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackTargetView {
    pub url: String,
    pub username: String,
    pub duplicate: bool,
    #[serde(default)]
    pub shuffle: bool,
    pub max_attempts: u32,
    pub backoff_ms: u64,
    pub timeout_ms: u64,
}

/// What `GET /admin/callbacks` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackStatus {
    pub target: Option<CallbackTargetView>,
    /// Callbacks queued (one per change; a duplicated one counts once).
    pub emitted: u64,
    /// HTTP requests made: every attempt, duplicates and `/send` included.
    pub sent: u64,
    /// Requests answered with a 2xx.
    pub acknowledged: u64,
    /// Queued deliveries given up after their last attempt.
    pub failed: u64,
    /// Queued deliveries not yet acknowledged or given up (in flight included).
    pub pending: u64,
}

/// One HTTP request the simulator made to the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackAttempt {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// 1 for the first try of a delivery (a duplicate starts at 1 again).
    pub attempt: u32,
    /// The answer's status, or null when there was none.
    pub status: Option<u16>,
    /// Why there was no answer.
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// What the target answered to `POST /admin/callbacks/send`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackReply {
    pub event_id: String,
    pub status: u16,
    /// The answer body: JSON if it parses, else a string; null when empty.
    pub body: serde_json::Value,
}

/// One queued delivery.
#[derive(Debug)]
struct Job {
    event_id: String,
    event_type: &'static str,
    body: Vec<u8>,
    target: Arc<CallbackTarget>,
    generation: u64,
}

#[derive(Debug, Default)]
struct Queue {
    jobs: VecDeque<Job>,
    in_flight: bool,
    /// Held: nothing is delivered until released (queued callbacks pile up).
    paused: bool,
}

#[derive(Debug)]
struct Shared {
    target: Mutex<Option<Arc<CallbackTarget>>>,
    queue: Mutex<Queue>,
    /// Bumped by stop and reset: queued and in-flight deliveries of an older
    /// generation are abandoned.
    generation: AtomicU64,
    emitted: AtomicU64,
    sent: AtomicU64,
    acknowledged: AtomicU64,
    failed: AtomicU64,
    log: Mutex<VecDeque<CallbackAttempt>>,
    client: reqwest::Client,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn http_client() -> reqwest::Client {
    // No idle pool: connections may be opened on different runtimes (the
    // delivery task's, an actix worker's for `/send`), and a pooled one
    // would not outlive the runtime that opened it.
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// The callback machinery of one simulator.
#[derive(Debug)]
pub(crate) struct Hub {
    shared: Arc<Shared>,
    wake: mpsc::UnboundedSender<()>,
    /// Taken by the delivery task when it starts.
    wake_rx: Mutex<Option<mpsc::UnboundedReceiver<()>>>,
}

impl Hub {
    pub(crate) fn new() -> Self {
        let (wake, rx) = mpsc::unbounded_channel();
        let hub = Hub {
            shared: Arc::new(Shared {
                target: Mutex::new(None),
                queue: Mutex::new(Queue::default()),
                generation: AtomicU64::new(0),
                emitted: AtomicU64::new(0),
                sent: AtomicU64::new(0),
                acknowledged: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                log: Mutex::new(VecDeque::new()),
                client: http_client(),
            }),
            wake,
            wake_rx: Mutex::new(Some(rx)),
        };
        hub.ensure_worker();
        hub
    }

    /// Starts the delivery task on the current tokio runtime, once. Without a
    /// runtime it does nothing (a later call from inside one starts it); the
    /// task ends when the hub is dropped.
    pub(crate) fn ensure_worker(&self) {
        let mut slot = lock(&self.wake_rx);
        if slot.is_none() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if let Some(rx) = slot.take() {
            handle.spawn(run(self.shared.clone(), rx));
        }
    }

    pub(crate) fn target(&self) -> Option<Arc<CallbackTarget>> {
        lock(&self.shared.target).clone()
    }

    pub(crate) fn set_target(&self, target: CallbackTarget) -> Result<(), String> {
        target.validate()?;
        *lock(&self.shared.target) = Some(Arc::new(target));
        self.ensure_worker();
        Ok(())
    }

    /// No more callbacks; queued ones are dropped.
    pub(crate) fn clear_target(&self) {
        *lock(&self.shared.target) = None;
        self.drop_queue();
    }

    fn drop_queue(&self) {
        let mut q = lock(&self.shared.queue);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        q.jobs.clear();
    }

    /// Drops the queue and zeroes the counters and the log; keeps the target.
    pub(crate) fn reset(&self) {
        self.drop_queue();
        for c in [
            &self.shared.emitted,
            &self.shared.sent,
            &self.shared.acknowledged,
            &self.shared.failed,
        ] {
            c.store(0, Ordering::SeqCst);
        }
        lock(&self.shared.log).clear();
    }

    /// Holds deliveries (`true`) or lets them go (`false`).
    pub(crate) fn set_paused(&self, paused: bool) {
        lock(&self.shared.queue).paused = paused;
        let _ = self.wake.send(());
    }

    pub(crate) fn pending(&self) -> u64 {
        let q = lock(&self.shared.queue);
        (q.jobs.len() + usize::from(q.in_flight)) as u64
    }

    pub(crate) fn status(&self) -> CallbackStatus {
        let s = &self.shared;
        CallbackStatus {
            target: self.target().map(|t| t.view()),
            emitted: s.emitted.load(Ordering::SeqCst),
            sent: s.sent.load(Ordering::SeqCst),
            acknowledged: s.acknowledged.load(Ordering::SeqCst),
            failed: s.failed.load(Ordering::SeqCst),
            pending: self.pending(),
        }
    }

    pub(crate) fn log(&self) -> Vec<CallbackAttempt> {
        lock(&self.shared.log).iter().cloned().collect()
    }

    /// Queues a callback for delivery, if a target is set. Cheap and never
    /// blocks on the network.
    pub(crate) fn emit(&self, event: CallbackEvent, now: DateTime<Utc>) {
        let Some(target) = self.target() else {
            return;
        };
        let callback = Callback {
            event_id: new_event_id(),
            occurred_at: now,
            event,
        };
        let Ok(body) = serde_json::to_vec(&callback) else {
            return;
        };
        let copies = if target.duplicate { 2 } else { 1 };
        {
            let mut q = lock(&self.shared.queue);
            let generation = self.shared.generation.load(Ordering::SeqCst);
            for _ in 0..copies {
                q.jobs.push_back(Job {
                    event_id: callback.event_id.clone(),
                    event_type: callback.event.type_name(),
                    body: body.clone(),
                    target: target.clone(),
                    generation,
                });
            }
        }
        self.shared.emitted.fetch_add(1, Ordering::SeqCst);
        tracing::debug!(event_id = %callback.event_id, r#type = callback.event.type_name(), "callback queued");
        self.ensure_worker();
        let _ = self.wake.send(());
    }

    /// `site.updated` for the callback fields that differ, if the site is linked.
    pub(crate) fn site_changed(&self, before: &Site, after: &Site, now: DateTime<Utc>) {
        let Some(billing_id) = after.fields.billing_id.clone() else {
            return;
        };
        let (b, a) = (&before.fields, &after.fields);
        let pairs = [
            ("address1", &b.address1, &a.address1),
            ("address2", &b.address2, &a.address2),
            ("city", &b.city, &a.city),
            ("state", &b.state, &a.state),
            ("zip", &b.zip, &a.zip),
            ("phone", &b.phone, &a.phone),
            ("info", &b.info, &a.info),
        ];
        let changes = changed(&pairs);
        if changes.is_empty() {
            return;
        }
        self.emit(
            CallbackEvent::SiteUpdated {
                site_no: after.site_no.clone(),
                billing_id: Some(billing_id),
                changes,
            },
            now,
        );
    }

    /// `device.updated` for the transmitter code, location and info, if the
    /// device is linked.
    pub(crate) fn device_changed(&self, before: &Device, after: &Device, now: DateTime<Utc>) {
        let Some(billing_id) = after.fields.billing_id.clone() else {
            return;
        };
        let (b, a) = (&before.fields, &after.fields);
        let pairs = [
            ("transmitter_code", &b.transmitter_code, &a.transmitter_code),
            ("device_type", &b.device_type, &a.device_type),
            ("location", &b.location, &a.location),
            ("info", &b.info, &a.info),
        ];
        let changes = changed(&pairs);
        if changes.is_empty() {
            return;
        }
        self.emit(
            CallbackEvent::DeviceUpdated {
                device_id: after.device_id.clone(),
                site_no: after.site_no.clone(),
                billing_id: Some(billing_id),
                changes,
            },
            now,
        );
    }

    /// Sends one callback now, once, and returns the target's answer.
    /// A missing `event_id` (or `occurred_at`) is filled in; a given one is kept.
    pub(crate) async fn send_now(
        &self,
        mut body: serde_json::Value,
    ) -> Result<CallbackReply, ApiError> {
        let target = self.target().ok_or_else(|| {
            ApiError::new(
                409,
                "no_callback_target",
                "no callback target is set (PUT /admin/callbacks)",
            )
        })?;
        let obj = body
            .as_object_mut()
            .ok_or_else(|| ApiError::validation("the callback must be a JSON object"))?;
        let event_id = match obj.get("event_id") {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            None | Some(serde_json::Value::Null) => {
                let id = new_event_id();
                obj.insert("event_id".into(), id.clone().into());
                id
            }
            Some(_) => return Err(ApiError::validation("event_id: must be a non-empty string")),
        };
        if obj.get("occurred_at").is_none_or(|v| v.is_null()) {
            obj.insert(
                "occurred_at".into(),
                serde_json::to_value(Utc::now()).unwrap_or_default(),
            );
        }
        let event_type = obj
            .get("type")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let bytes = serde_json::to_vec(&body).map_err(|e| ApiError::validation(e.to_string()))?;
        let client = http_client();
        let res = post(&client, &target, bytes).await;
        let shared = &self.shared;
        shared.sent.fetch_add(1, Ordering::SeqCst);
        let (status, error) = match &res {
            Ok((status, _)) => (Some(*status), None),
            Err(e) => (None, Some(e.clone())),
        };
        if status.is_some_and(|s| (200..300).contains(&s)) {
            shared.acknowledged.fetch_add(1, Ordering::SeqCst);
        }
        record(shared, &event_id, &event_type, 1, status, error);
        match res {
            Ok((status, text)) => {
                let body = if text.is_empty() {
                    serde_json::Value::Null
                } else {
                    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
                };
                Ok(CallbackReply {
                    event_id,
                    status,
                    body,
                })
            }
            Err(e) => Err(ApiError::new(
                502,
                "callback_failed",
                format!("the callback target did not answer: {e}"),
            )),
        }
    }
}

fn changed(pairs: &[(&str, &String, &String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .filter(|(_, b, a)| b != a)
        .map(|(name, _, a)| (name.to_string(), a.to_string()))
        .collect()
}

fn record(
    shared: &Shared,
    event_id: &str,
    event_type: &str,
    attempt: u32,
    status: Option<u16>,
    error: Option<String>,
) {
    let mut log = lock(&shared.log);
    if log.len() >= LOG_LIMIT {
        log.pop_front();
    }
    log.push_back(CallbackAttempt {
        event_id: event_id.to_string(),
        event_type: event_type.to_string(),
        attempt,
        status,
        error,
        at: Utc::now(),
    });
}

/// One POST; the status and body text, or why there was no answer.
async fn post(
    client: &reqwest::Client,
    target: &CallbackTarget,
    body: Vec<u8>,
) -> Result<(u16, String), String> {
    let mut rb = client
        .post(&target.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .timeout(Duration::from_millis(target.timeout_ms))
        .body(body);
    if !target.username.is_empty() || !target.password.is_empty() {
        rb = rb.basic_auth(&target.username, Some(&target.password));
    }
    let res = rb.send().await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    Ok((status, text))
}

/// The delivery task: one job at a time, in queue order (a random queued one
/// when the target shuffles), none while paused.
async fn run(shared: Arc<Shared>, mut wake: mpsc::UnboundedReceiver<()>) {
    loop {
        let job = {
            let mut q = lock(&shared.queue);
            let shuffle = q.jobs.front().is_some_and(|j| j.target.shuffle);
            let next = if q.paused {
                None
            } else if shuffle {
                let at = rand::thread_rng().gen_range(0..q.jobs.len());
                q.jobs.remove(at)
            } else {
                q.jobs.pop_front()
            };
            match next {
                Some(job) => {
                    q.in_flight = true;
                    Some(job)
                }
                None => {
                    q.in_flight = false;
                    None
                }
            }
        };
        let job = match job {
            Some(job) => job,
            None => {
                if wake.recv().await.is_none() {
                    return;
                }
                continue;
            }
        };
        deliver(&shared, job).await;
        lock(&shared.queue).in_flight = false;
    }
}

async fn deliver(shared: &Shared, job: Job) {
    let target = &job.target;
    for attempt in 1..=target.max_attempts {
        if shared.generation.load(Ordering::SeqCst) != job.generation {
            return;
        }
        let res = post(&shared.client, target, job.body.clone()).await;
        shared.sent.fetch_add(1, Ordering::SeqCst);
        let (status, error) = match res {
            Ok((status, _)) => (Some(status), None),
            Err(e) => (None, Some(e)),
        };
        record(
            shared,
            &job.event_id,
            job.event_type,
            attempt,
            status,
            error.clone(),
        );
        if status.is_some_and(|s| (200..300).contains(&s)) {
            shared.acknowledged.fetch_add(1, Ordering::SeqCst);
            return;
        }
        tracing::info!(
            event_id = %job.event_id,
            attempt,
            ?status,
            error = error.as_deref().unwrap_or(""),
            "callback not acknowledged"
        );
        if attempt < target.max_attempts {
            tokio::time::sleep(target.backoff(attempt)).await;
        }
    }
    shared.failed.fetch_add(1, Ordering::SeqCst);
    tracing::warn!(event_id = %job.event_id, "callback given up");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_uuid_v4() {
        let a = new_event_id();
        let b = new_event_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let t = CallbackTarget::new("http://127.0.0.1:1/x", "u", "p");
        assert_eq!(t.backoff(1), Duration::from_millis(200));
        assert_eq!(t.backoff(2), Duration::from_millis(400));
        assert_eq!(t.backoff(3), Duration::from_millis(800));
        assert_eq!(t.backoff(20), MAX_BACKOFF);
    }

    #[test]
    fn payloads_have_the_wire_shape() {
        let cb = Callback {
            event_id: "e-1".into(),
            occurred_at: "2024-05-01T12:00:00Z".parse().unwrap(),
            event: CallbackEvent::DeviceUpdated {
                device_id: "D-1".into(),
                site_no: "10001".into(),
                billing_id: Some("SYS-1".into()),
                changes: [("transmitter_code".to_string(), "4100002".to_string())].into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&cb).unwrap(),
            serde_json::json!({
                "event_id": "e-1", "occurred_at": "2024-05-01T12:00:00Z",
                "type": "device.updated", "device_id": "D-1", "site_no": "10001",
                "billing_id": "SYS-1", "changes": {"transmitter_code": "4100002"}
            })
        );
        let stb: Callback = serde_json::from_value(serde_json::json!({
            "event_id": "e-2", "occurred_at": "2024-05-01T12:00:00Z",
            "type": "site.send_to_billing", "site_no": "10001",
            "target": {"kind": "existing_customer", "customer_id": "C-9"}
        }))
        .unwrap();
        assert_eq!(
            stb.event,
            CallbackEvent::SendToBilling {
                site_no: "10001".into(),
                target: SendToBillingTarget::ExistingCustomer {
                    customer_id: "C-9".into()
                }
            }
        );
    }

    #[test]
    fn the_password_stays_out_of_debug() {
        let t = CallbackTarget::new("http://127.0.0.1:1/x", "u", "hunter2");
        assert!(!format!("{t:?}").contains("hunter2"));
    }
}
