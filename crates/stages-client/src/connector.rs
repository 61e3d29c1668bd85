//! The connector: one HTTP client and one rate limiter per connection.
//!
//! Clients are cheap and made per call site; the connection pool and the
//! per-connection request budget must outlive them, so both live here.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::stages::{StagesApi, StagesConnector, StagesTarget};
use domain::upstream::CallObserver;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use upstream_http::EgressPolicy;

use crate::client::HttpStagesClient;

/// How the client talks to Stages.
///
/// Retries: reads (`GET`, including ping), `PATCH` and `DELETE` are retried up
/// to `max_retries` times when Stages could not be reached, timed out, failed
/// with a 5xx or answered 429. `POST` is never retried: creating twice is not
/// harmless, and the service's jobs retry creations idempotently themselves.
/// Delays grow exponentially from `retry_base_delay` with full jitter, capped
/// by `max_retry_delay`; a `Retry-After` is honoured as given, and one longer
/// than `max_retry_delay` ends the call with `RateLimited` instead of waiting.
/// A call therefore takes at most
/// `(max_retries + 1) * timeout + max_retries * max_retry_delay`
/// plus any wait for the rate limiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// Whole request, from connecting to the last byte of the body.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Retries after the first attempt, for the calls that may be retried.
    pub max_retries: u32,
    pub retry_base_delay: Duration,
    pub max_retry_delay: Duration,
    /// Per connection key (burst of the same size); 0 turns the limit off.
    pub requests_per_second: u32,
    /// Which addresses calls may reach; the default refuses loopback,
    /// private, link-local and the other special ranges.
    pub egress: EgressPolicy,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            max_retries: 2,
            retry_base_delay: Duration::from_millis(200),
            max_retry_delay: Duration::from_secs(2),
            requests_per_second: 20,
            egress: EgressPolicy::default(),
        }
    }
}

/// The HTTP client could not be set up (TLS backend, ...).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the Stages HTTP client: {0}")]
pub struct BuildError(String);

/// Makes [`HttpStagesClient`]s that share one connection pool.
pub struct HttpStagesConnector {
    http: reqwest::Client,
    settings: ClientSettings,
    limiters: Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>,
    observer: Option<Arc<dyn CallObserver>>,
}

impl HttpStagesConnector {
    pub fn new(settings: ClientSettings) -> Result<Self, BuildError> {
        let http = upstream_http::apply(reqwest::Client::builder(), &settings.egress)
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            // The API never redirects; following one would resend credentials
            // and may turn a POST into a GET.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "crosslink-stages-client/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| BuildError(e.to_string()))?;
        Ok(Self {
            http,
            settings,
            limiters: Mutex::new(HashMap::new()),
            observer: None,
        })
    }

    /// Reports every call's outcome to `observer` (metrics).
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// A client for `target`, as its concrete type.
    pub fn client(&self, target: StagesTarget) -> HttpStagesClient {
        let limiter = self.limiter(&target.key);
        let observer = self.observer.clone();
        HttpStagesClient::new(
            self.http.clone(),
            self.settings.clone(),
            limiter,
            target,
            observer,
        )
    }

    fn limiter(&self, key: &str) -> Option<Arc<DefaultDirectRateLimiter>> {
        let rps = NonZeroU32::new(self.settings.requests_per_second)?;
        let mut limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        let limiter = limiters
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(RateLimiter::direct(Quota::per_second(rps))));
        Some(Arc::clone(limiter))
    }
}

impl std::fmt::Debug for HttpStagesConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpStagesConnector")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl StagesConnector for HttpStagesConnector {
    fn connect(&self, target: StagesTarget) -> Arc<dyn StagesApi> {
        Arc::new(self.client(target))
    }
}
