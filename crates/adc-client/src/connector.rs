//! The connector: Alarm.com's defaults for the shared
//! `upstream_http::Connector` (one HTTP client, one rate limiter per
//! connection).
//!
//! Clients are cheap and made per call site; the connection pool and the
//! per-connection request budget must outlive them, so both live there.
//! ADC documents no rate limit, and public scripts throttle themselves, so
//! the budget is ours to keep.

use std::sync::Arc;
use std::time::Duration;

use domain::adc::{AdcApi, AdcConnector, AdcTarget};
use domain::upstream::CallObserver;
use upstream_http::{EgressPolicy, RetryPolicy};

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
    connector: upstream_http::Connector,
    settings: AdcClientSettings,
    observer: Option<Arc<dyn CallObserver>>,
}

impl HttpAdcConnector {
    pub fn new(settings: AdcClientSettings) -> Result<Self, BuildError> {
        let connector = upstream_http::Connector::new(upstream_http::Settings {
            user_agent: concat!("crosslink-adc-client/", env!("CARGO_PKG_VERSION")),
            timeout: settings.timeout,
            connect_timeout: settings.connect_timeout,
            retry: RetryPolicy {
                max_retries: settings.max_retries,
                base_delay: settings.retry_base_delay,
                max_delay: settings.max_retry_delay,
            },
            requests_per_second: settings.requests_per_second,
            egress: settings.egress.clone(),
        })
        .map_err(|e| BuildError(e.to_string()))?;
        Ok(Self {
            connector,
            settings,
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
        let channel = self.connector.channel(&target.key);
        HttpAdcClient::new(channel, target, self.observer.clone())
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
