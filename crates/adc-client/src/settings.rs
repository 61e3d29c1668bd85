//! How the client talks to ADC unless told otherwise.

use std::time::Duration;

use upstream_http::{ClientSettings, EgressPolicy};

/// Alarm.com's defaults.
///
/// Retries: only reads (the `Get*` operations) are retried, up to
/// `max_retries` times, when ADC could not be reached, timed out, answered
/// an HTTP 5xx without a SOAP fault, or asked to slow down (429, 503 with
/// `Retry-After`, a throttling fault). Changes (create, commitment, plan
/// change, terminate, central station update) get exactly one attempt: the
/// service's jobs repeat them after checking what ADC already holds.
///
/// ADC documents no rate limit, and public scripts throttle themselves, so
/// the budget is ours to keep.
pub fn default_settings() -> ClientSettings {
    ClientSettings {
        user_agent: concat!("crosslink-adc-client/", env!("CARGO_PKG_VERSION")),
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
