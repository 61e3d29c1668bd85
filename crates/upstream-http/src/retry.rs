//! The retry engine of the upstream clients: which failed attempts are tried
//! again, after how long, and how `Retry-After` is read.
//!
//! A client says per call whether repeating it is safe (its own rule: Stages
//! repeats all but `POST`, Alarm.com only reads) and per failure whether
//! another attempt may help; the engine does the rest, the same for both.

use std::future::Future;
use std::time::Duration;

use governor::DefaultDirectRateLimiter;
use rand::Rng;

/// How often and how soon a safe call is tried again.
///
/// Delays grow exponentially from `base_delay` with full jitter, capped by
/// `max_delay`; a `Retry-After` is honoured as given, and one longer than
/// `max_delay` ends the call with the failure instead of waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt, for the calls that may be retried.
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

/// How one attempt failed, and what that says about trying again.
#[derive(Debug)]
pub struct Failure<E> {
    pub error: E,
    /// Worth another attempt, if the call may be repeated.
    pub retryable: bool,
    /// The upstream may have acted on the request before it failed.
    pub maybe_done: bool,
    /// How long the upstream asked to wait before the next attempt.
    pub retry_after: Option<Duration>,
}

impl<E> Failure<E> {
    /// Final: the same request fails the same way again.
    pub fn permanent(error: E) -> Self {
        Self {
            error,
            retryable: false,
            maybe_done: false,
            retry_after: None,
        }
    }

    /// Another attempt may succeed; the upstream may have acted on this one.
    pub fn transient(error: E) -> Self {
        Self {
            error,
            retryable: true,
            maybe_done: true,
            retry_after: None,
        }
    }

    /// Nothing reached the upstream (no connection), or it says it did nothing.
    pub fn not_done(mut self) -> Self {
        self.maybe_done = false;
        self
    }

    /// With the wait the upstream asked for.
    pub fn after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }
}

impl RetryPolicy {
    /// Calls `attempt` until it succeeds, fails for good, or the retries are
    /// used up; a call that is not `safe` gets exactly one attempt. Each
    /// attempt first waits for `limiter`. `attempt` is told whether an
    /// earlier attempt may have been acted on (a repeated `DELETE` then
    /// finds nothing to delete, which is what was asked).
    pub async fn run<T, E, F, Fut>(
        &self,
        limiter: Option<&DefaultDirectRateLimiter>,
        safe: bool,
        mut attempt: F,
    ) -> Result<T, E>
    where
        E: std::fmt::Display,
        F: FnMut(bool) -> Fut,
        Fut: Future<Output = Result<T, Failure<E>>>,
    {
        let mut retries = 0u32;
        let mut maybe_done = false;
        loop {
            if let Some(limiter) = limiter {
                limiter.until_ready().await;
            }
            let failure = match attempt(maybe_done).await {
                Ok(answer) => return Ok(answer),
                Err(f) => f,
            };
            if !safe || !failure.retryable || retries >= self.max_retries {
                return Err(failure.error);
            }
            let delay = match failure.retry_after {
                Some(wait) if wait > self.max_delay => {
                    tracing::debug!(
                        retry_after_ms = wait.as_millis() as u64,
                        "retry-after longer than we wait"
                    );
                    return Err(failure.error);
                }
                Some(wait) => wait,
                None => self.backoff(retries),
            };
            maybe_done |= failure.maybe_done;
            retries += 1;
            tracing::debug!(
                retry = retries,
                delay_ms = delay.as_millis() as u64,
                error = %failure.error,
                "retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Full jitter: uniform in `0..=min(max, base * 2^retries)`.
    pub fn backoff(&self, retries: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retries))
            .min(self.max_delay);
        rand::thread_rng().gen_range(Duration::ZERO..=ceiling)
    }
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// A wait in whole seconds, rounded up (what a caller is told to wait).
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn policy(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let wait = parse_retry_after(&later).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(ceil_secs(Duration::from_millis(1500)), 2);
        assert_eq!(ceil_secs(Duration::from_secs(3)), 3);
    }

    #[test]
    fn backoff_stays_under_the_cap() {
        let policy = RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
        };
        for retries in 0..40 {
            let cap = Duration::from_millis(100 * 2u64.pow(retries.min(20)))
                .min(Duration::from_millis(300));
            assert!(policy.backoff(retries) <= cap);
        }
    }

    #[tokio::test]
    async fn safe_calls_are_retried_until_the_limit() {
        let attempts = Cell::new(0);
        let result: Result<(), &str> = policy(2)
            .run(None, true, |_| {
                attempts.set(attempts.get() + 1);
                async { Err(Failure::transient("down")) }
            })
            .await;
        assert_eq!(result, Err("down"));
        assert_eq!(attempts.get(), 3);
    }

    #[tokio::test]
    async fn unsafe_calls_and_final_failures_get_one_attempt() {
        let attempts = Cell::new(0);
        let result: Result<(), &str> = policy(2)
            .run(None, false, |_| {
                attempts.set(attempts.get() + 1);
                async { Err(Failure::transient("down")) }
            })
            .await;
        assert_eq!(result, Err("down"));
        assert_eq!(attempts.get(), 1);
        let result: Result<(), &str> = policy(2)
            .run(None, true, |_| {
                attempts.set(attempts.get() + 1);
                async { Err(Failure::permanent("no")) }
            })
            .await;
        assert_eq!(result, Err("no"));
        assert_eq!(attempts.get(), 2);
    }

    #[tokio::test]
    async fn a_retry_after_over_the_cap_ends_the_call() {
        let attempts = Cell::new(0);
        let result: Result<(), &str> = policy(2)
            .run(None, true, |_| {
                attempts.set(attempts.get() + 1);
                async { Err(Failure::transient("slow down").after(Some(Duration::from_secs(60)))) }
            })
            .await;
        assert_eq!(result, Err("slow down"));
        assert_eq!(attempts.get(), 1);
    }

    #[tokio::test]
    async fn attempts_learn_whether_an_earlier_one_may_have_acted() {
        let seen = std::cell::RefCell::new(Vec::new());
        let result: Result<(), &str> = policy(3)
            .run(None, true, |earlier| {
                seen.borrow_mut().push(earlier);
                let n = seen.borrow().len();
                async move {
                    match n {
                        1 => Err(Failure::transient("refused").not_done()),
                        2 => Err(Failure::transient("timeout")),
                        _ => Ok(()),
                    }
                }
            })
            .await;
        assert_eq!(result, Ok(()));
        assert_eq!(*seen.borrow(), [false, false, true]);
    }
}
