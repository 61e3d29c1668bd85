//! The connector: one HTTP client, and one rate limiter per connection.
//!
//! Clients are cheap and made per call site; the connection pool and the
//! per-connection request budget must outlive them, so both live here.
//! ADC documents no rate limit, and public scripts throttle themselves, so
//! the budget is ours to keep.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::adc::{AdcApi, AdcConnector, AdcTarget};
use domain::upstream::CallObserver;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use upstream_http::EgressPolicy;

use crate::client::HttpAdcClient;

/// How the client talks to ADC.
///
/// Retries: only reads (the `Get*` operations) are retried, up to
/// `max_retries` times, when ADC could not be reached, timed out, answered
/// an HTTP 5xx without a SOAP fault, or asked to slow down (429, 503 with
/// `Retry-After`, a throttling fault). Changes (create, commitment, plan
/// change, terminate, central station update) get exactly one attempt: the
/// service's jobs repeat them after checking what ADC already holds.
/// Delays grow exponentially from `retry_base_delay` with full jitter,
/// capped by `max_retry_delay`; a `Retry-After` is honoured as given, and
/// one longer than `max_retry_delay` ends the call with `RateLimited`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdcClientSettings {
    /// Whole request, from connecting to the last byte of the answer.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Retries after the first attempt, for reads.
    pub max_retries: u32,
    pub retry_base_delay: Duration,
    pub max_retry_delay: Duration,
    /// Per connection key (burst of the same size); 0 turns the limit off.
    pub requests_per_second: u32,
    /// Which addresses calls may reach; the default refuses loopback,
    /// private, link-local and the other special ranges.
    pub egress: EgressPolicy,
}

impl Default for AdcClientSettings {
    fn default() -> Self {
        Self {
            // ADC's SOAP calls are slower than a JSON API; a customer list
            // of a large dealer takes seconds.
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_retries: 3,
            retry_base_delay: Duration::from_millis(500),
            max_retry_delay: Duration::from_secs(10),
            // Public scripts pause for seconds every hundred calls; ten a
            // second reads a dealer of five thousand customers in under ten
            // minutes without hammering the host.
            requests_per_second: 10,
            egress: EgressPolicy::default(),
        }
    }
}

/// The HTTP client could not be set up (TLS backend, ...).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the Alarm.com HTTP client: {0}")]
pub struct BuildError(String);

/// Makes [`HttpAdcClient`]s that share one connection pool and, per
/// connection key, one rate limiter.
pub struct HttpAdcConnector {
    http: reqwest::Client,
    settings: AdcClientSettings,
    limiters: Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>,
    observer: Option<Arc<dyn CallObserver>>,
}

impl HttpAdcConnector {
    pub fn new(settings: AdcClientSettings) -> Result<Self, BuildError> {
        let http = upstream_http::apply(reqwest::Client::builder(), &settings.egress)
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            // A redirect would resend the credentials elsewhere, and turn the
            // POST into a GET.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("crosslink-adc-client/", env!("CARGO_PKG_VERSION")))
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

    pub fn settings(&self) -> &AdcClientSettings {
        &self.settings
    }

    /// A client for `target`, as its concrete type.
    pub fn client(&self, target: AdcTarget) -> HttpAdcClient {
        let limiter = self.limiter(&target.key);
        let observer = self.observer.clone();
        HttpAdcClient::new(
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

impl std::fmt::Debug for HttpAdcConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAdcConnector")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl AdcConnector for HttpAdcConnector {
    fn connect(&self, target: AdcTarget) -> Arc<dyn AdcApi> {
        Arc::new(self.client(target))
    }
}
