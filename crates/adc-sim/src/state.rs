//! The simulator's shared state: records, logins with their permissions,
//! fault rules and request counters.
//!
//! One cheap-to-clone handle, so that the HTTP workers, the admin routes and
//! a test holding a running simulator all see and change the same data.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::faults::{self, FaultRule, Plan};
use crate::model::{Customer, Permissions, Rep};
use crate::store::Store;
use crate::SimConfig;

/// What `GET /admin/stats` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Stats {
    /// SOAP requests per operation name, including refused and faulted
    /// ones. Bodies that are not SOAP count under `"(invalid)"`, elements
    /// that are no operation of the service under `"(unknown)"`, WSDL pages
    /// under `"WSDL"`.
    pub requests: BTreeMap<String, u64>,
    /// Requests per operation that were answered normally (no fault) and,
    /// for results with `Success`, with `Success=true`: the upstream effects.
    pub succeeded: BTreeMap<String, u64>,
    pub total_requests: u64,
    pub customers: usize,
    pub active_customers: usize,
    pub terminated_customers: usize,
    pub commitments: usize,
    pub reps: usize,
}

/// One accepted login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub password: String,
    pub permissions: Permissions,
}

#[derive(Debug, Default)]
struct Counters {
    requests: BTreeMap<String, u64>,
    succeeded: BTreeMap<String, u64>,
}

#[derive(Debug)]
struct Inner {
    store: Mutex<Store>,
    logins: Mutex<BTreeMap<String, Login>>,
    faults: Mutex<Vec<FaultRule>>,
    counters: Mutex<Counters>,
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

impl SimState {
    /// A state seeded and configured as `config` says (the bind address is unused).
    pub fn new(config: &SimConfig) -> Self {
        let state = SimState {
            inner: Arc::new(Inner {
                store: Mutex::new(Store::seeded(config.seed_customers)),
                logins: Mutex::new(BTreeMap::new()),
                faults: Mutex::new(Vec::new()),
                counters: Mutex::new(Counters::default()),
                initial: config.clone(),
            }),
        };
        state.reset_except_records();
        state
    }

    /// Back to the state at start: the seeded records, the first login with
    /// the configured permissions, the start-up faults, no counted requests.
    pub fn reset(&self) {
        let store = Store::seeded(self.inner.initial.seed_customers);
        *lock(&self.inner.store) = store;
        self.reset_except_records();
    }

    fn reset_except_records(&self) {
        let cfg = &self.inner.initial;
        let mut logins = lock(&self.inner.logins);
        logins.clear();
        logins.insert(
            cfg.username.clone(),
            Login {
                password: cfg.password.clone(),
                permissions: cfg.permissions,
            },
        );
        drop(logins);
        *lock(&self.inner.faults) = cfg.faults.clone();
        *lock(&self.inner.counters) = Counters::default();
    }

    /// Runs `f` on the records under the lock (keep it short).
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut lock(&self.inner.store))
    }

    // ---- logins ----------------------------------------------------------

    /// Adds (or replaces) a login.
    pub fn add_login(&self, username: &str, password: &str, permissions: Permissions) {
        lock(&self.inner.logins).insert(
            username.to_string(),
            Login {
                password: password.to_string(),
                permissions,
            },
        );
    }

    /// The permissions of `username` when the password is right.
    pub fn authenticate(&self, username: &str, password: &str) -> Option<Permissions> {
        lock(&self.inner.logins)
            .get(username)
            .filter(|l| l.password == password)
            .map(|l| l.permissions)
    }

    /// Changes the permissions of one login, or of all when `username` is
    /// `None`. False when the login does not exist.
    pub fn update_permissions(&self, username: Option<&str>, f: impl Fn(&mut Permissions)) -> bool {
        let mut logins = lock(&self.inner.logins);
        match username {
            Some(u) => match logins.get_mut(u) {
                Some(l) => {
                    f(&mut l.permissions);
                    true
                }
                None => false,
            },
            None => {
                logins.values_mut().for_each(|l| f(&mut l.permissions));
                true
            }
        }
    }

    /// Login name → permissions.
    pub fn permissions(&self) -> BTreeMap<String, Permissions> {
        lock(&self.inner.logins)
            .iter()
            .map(|(u, l)| (u.clone(), l.permissions))
            .collect()
    }

    // ---- faults ----------------------------------------------------------

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

    pub(crate) fn plan_faults(&self, op: &str, service: &str) -> Plan {
        faults::plan(&mut lock(&self.inner.faults), op, service)
    }

    // ---- counters --------------------------------------------------------

    pub(crate) fn count_request(&self, op: &str) {
        *lock(&self.inner.counters)
            .requests
            .entry(op.to_string())
            .or_default() += 1;
    }

    pub(crate) fn count_success(&self, op: &str) {
        *lock(&self.inner.counters)
            .succeeded
            .entry(op.to_string())
            .or_default() += 1;
    }

    /// Requests seen for an operation (see [`Stats::requests`]).
    pub fn request_count(&self, op: &str) -> u64 {
        lock(&self.inner.counters)
            .requests
            .get(op)
            .copied()
            .unwrap_or(0)
    }

    /// Requests of an operation that succeeded (see [`Stats::succeeded`]).
    pub fn success_count(&self, op: &str) -> u64 {
        lock(&self.inner.counters)
            .succeeded
            .get(op)
            .copied()
            .unwrap_or(0)
    }

    pub fn stats(&self) -> Stats {
        let counters = lock(&self.inner.counters);
        let requests = counters.requests.clone();
        let succeeded = counters.succeeded.clone();
        drop(counters);
        let total_requests = requests.values().sum();
        self.with_store(|s| {
            let mut stats = Stats {
                requests,
                succeeded,
                total_requests,
                customers: s.customer_count(),
                reps: s.reps().count(),
                ..Stats::default()
            };
            for c in s.customers() {
                if c.is_terminated {
                    stats.terminated_customers += 1;
                } else if c.is_commitment {
                    stats.commitments += 1;
                } else {
                    stats.active_customers += 1;
                }
            }
            stats
        })
    }

    // ---- records, for tests ------------------------------------------------

    pub fn customer_count(&self) -> usize {
        self.with_store(|s| s.customer_count())
    }

    pub fn customer(&self, id: i64) -> Option<Customer> {
        self.with_store(|s| s.customer(id).cloned())
    }

    /// All customers, by id.
    pub fn customers(&self) -> Vec<Customer> {
        self.with_store(|s| s.customers().cloned().collect())
    }

    pub fn reps(&self) -> Vec<Rep> {
        self.with_store(|s| s.reps().cloned().collect())
    }
}
