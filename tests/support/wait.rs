//! Waiting in the end-to-end suite: one bounded poll for everything a test
//! waits on (a job, an import, a batch, a count, a log line). The limit is a
//! time, not a number of looks, so a slow machine does not change what it
//! means; looks start close together and spread out, so a quick answer is
//! seen quickly and a slow one is not asked about too often.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The pause after the first look; each next one is half as long again, up
/// to `LONGEST_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(20);
const LONGEST_PAUSE: Duration = Duration::from_millis(200);

/// The pacing and the limit of one wait. A loop that keeps something of each
/// look (progress seen, a streak of quiet looks) looks, then calls `pause`.
pub struct Poll {
    what: String,
    limit: Duration,
    deadline: Instant,
    pause: Duration,
    longest: Duration,
}

impl Poll {
    /// A wait for `what` (said when it fails) of at most `limit`.
    pub fn new(what: impl Into<String>, limit: Duration) -> Self {
        Self {
            what: what.into(),
            limit,
            deadline: Instant::now() + limit,
            pause: FIRST_PAUSE,
            longest: LONGEST_PAUSE,
        }
    }

    /// Looks every `pause`, steadily: for a loop that samples as it waits
    /// (progress figures) or needs its quiet looks some time apart.
    pub fn every(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self.longest = pause;
        self
    }

    /// Pauses before the next look. Once the limit has passed it panics
    /// instead, naming what was awaited and `detail()` (the last look, a
    /// log); the last pause ends at the limit, so one look is made there.
    pub async fn pause(&mut self, detail: impl FnOnce() -> String) {
        let now = Instant::now();
        if now >= self.deadline {
            panic!(
                "waited {:?} in vain for {}\n{}",
                self.limit,
                self.what,
                detail()
            );
        }
        tokio::time::sleep(self.pause.min(self.deadline - now)).await;
        self.pause = (self.pause * 3 / 2).min(self.longest);
    }
}

/// Runs `check` until it gives a value, and returns that value; panics
/// naming `what` once `limit` has passed.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    until(Poll::new(what, limit), check, String::new).await
}

/// `check` until it gives a value, paced by `poll`; `detail` is added to
/// the panic at the limit.
pub async fn until<T, F, Fut>(mut poll: Poll, mut check: F, detail: impl Fn() -> String) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    loop {
        if let Some(value) = check().await {
            return value;
        }
        poll.pause(&detail).await;
    }
}

/// Whether a job, import or batch (all of which have a `state`) has yet to
/// end: it is queued, or running.
pub fn ongoing(body: &Value) -> bool {
    matches!(body["state"].as_str(), Some("queued" | "running"))
}
