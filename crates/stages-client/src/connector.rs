//! The connector: Stages' defaults for the shared `upstream_http::Connector`
//! (one HTTP client, one rate limiter per connection).
//!
//! Clients are cheap and made per call site; the connection pool and the
//! per-connection request budget must outlive them, so both live there.

use std::sync::Arc;
use std::time::Duration;

use domain::stages::{StagesApi, StagesConnector, StagesTarget};
use domain::upstream::CallObserver;
use upstream_http::{EgressPolicy, RetryPolicy};

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

/// Makes [`HttpStagesClient`]s that share one connection pool and, per
/// connection key, one rate limiter.
pub struct HttpStagesConnector {
    connector: upstream_http::Connector,
    settings: ClientSettings,
    observer: Option<Arc<dyn CallObserver>>,
}

impl HttpStagesConnector {
    pub fn new(settings: ClientSettings) -> Result<Self, BuildError> {
        let connector = upstream_http::Connector::new(upstream_http::Settings {
            user_agent: concat!("crosslink-stages-client/", env!("CARGO_PKG_VERSION")),
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

    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// A client for `target`, as its concrete type.
    pub fn client(&self, target: StagesTarget) -> HttpStagesClient {
        let channel = self.connector.channel(&target.key);
        HttpStagesClient::new(channel, target, self.observer.clone())
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
