//! How the client talks to Stages unless told otherwise.

use std::time::Duration;

use upstream_http::{ClientSettings, EgressPolicy};

/// Stages' defaults.
///
/// Retries: reads (`GET`, including ping), `PATCH` and `DELETE` are retried
/// up to `max_retries` times when Stages could not be reached, timed out,
/// failed with a 5xx or answered 429. `POST` is never retried: creating twice
/// is not harmless, and the service's jobs retry creations idempotently
/// themselves.
pub fn default_settings() -> ClientSettings {
    ClientSettings {
        user_agent: concat!("crosslink-stages-client/", env!("CARGO_PKG_VERSION")),
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(3),
        max_retries: 2,
        retry_base_delay: Duration::from_millis(200),
        max_retry_delay: Duration::from_secs(2),
        requests_per_second: 20,
        egress: EgressPolicy::default(),
    }
}
