//! B14 per-dealer request limits (issue 13): a token bucket per dealer on the
//! bearer API, so one tenant's burst cannot starve the others. Counted in
//! this process's memory: each replica allows the rate on its own. Stages
//! callbacks and provider webhooks carry no dealer token and are not counted.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimitSettings;

pub struct DealerLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl DealerLimiter {
    /// `None` when `rate_limit.requests_per_second` is 0 (no limit).
    pub fn from_settings(settings: &RateLimitSettings) -> Option<Self> {
        let rate = NonZeroU32::new(settings.requests_per_second)?;
        let burst = NonZeroU32::new(settings.burst).unwrap_or(rate);
        Some(Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            clock: DefaultClock::default(),
        })
    }

    /// Takes one request from the dealer's bucket, or says how long until
    /// the next one is allowed.
    pub fn check(&self, dealer: &str) -> Result<(), Duration> {
        self.limiter
            .check_key(&dealer.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Drops the buckets of dealers that are full again (idle), so the map
    /// holds only the dealers active lately.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// `Retry-After` seconds for a wait: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    whole.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_dealer_has_a_bucket_of_its_own() {
        let limiter = DealerLimiter::from_settings(&RateLimitSettings {
            requests_per_second: 1,
            burst: 3,
        })
        .unwrap();
        for _ in 0..3 {
            assert!(limiter.check("acme").is_ok());
        }
        let wait = limiter.check("acme").unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(
            limiter.check("globex").is_ok(),
            "another dealer still passes"
        );
        assert!(DealerLimiter::from_settings(&RateLimitSettings {
            requests_per_second: 0,
            burst: 5,
        })
        .is_none());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    }
}
