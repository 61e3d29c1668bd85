//! Requests gathered for one round trip (B1, S14): those that arrive while
//! one statement or transaction runs go together in the next. Alone, each
//! paid a hop to a blocking thread, a round trip and (for a write) a commit of
//! its own, several times the cost of its row; under load they now share
//! them. A request that arrives when none runs goes at once, so nothing waits
//! for company.

use std::sync::Mutex;

use domain::store::{StoreError, StoreResult};
use tokio::sync::oneshot;

use std::sync::Arc;

use diesel::r2d2::Pool;

use crate::crypto::Cipher;
use crate::db::{DbConnection, Manager};
use crate::{connection, Inner, Store};

/// At most this many requests go in one round trip.
pub(crate) const MOST_IN_ONE_TRIP: usize = 64;

/// At most this many round trips of one queue run at once: one alone left
/// the cores idle while it waited on the database.
pub(crate) const MOST_RUNNERS: usize = 4;

type Answer<T> = oneshot::Sender<StoreResult<T>>;

/// The requests waiting for the next round trip, and whether one runs.
pub(crate) struct Gathered<R, T> {
    waiting: Mutex<Waiting<R, T>>,
    /// At most this many round trips at once ([`MOST_RUNNERS`] unless
    /// made [`Gathered::one_at_a_time`]).
    most_runners: usize,
}

struct Waiting<R, T> {
    requests: Vec<(R, Answer<T>)>,
    /// Runners running: each takes what waits before it stops.
    runners: usize,
}

impl<R, T> Default for Gathered<R, T> {
    fn default() -> Self {
        Self::with_runners(MOST_RUNNERS)
    }
}

impl<R, T> Gathered<R, T> {
    fn with_runners(most_runners: usize) -> Self {
        Self {
            waiting: Mutex::new(Waiting {
                requests: Vec::new(),
                runners: 0,
            }),
            most_runners: most_runners.max(1),
        }
    }

    /// A queue with one round trip at a time: for writes to SQLite, whose
    /// one writer runs them one after the other anyway. With four runners,
    /// each waited for the writer with the few requests it took (two a
    /// transaction on average, taking Stages callbacks in), where one
    /// takes all that arrived while the last committed.
    pub(crate) fn one_at_a_time() -> Self {
        Self::with_runners(1)
    }

    /// Queues `request`; true when fewer runners run than this queue
    /// allows, so the caller must start one (and this queue counts it from
    /// now).
    pub(crate) fn push(&self, request: R, answer: Answer<T>) -> bool {
        let mut w = self.lock();
        w.requests.push((request, answer));
        let start = w.runners < self.most_runners;
        w.runners += usize::from(start);
        start
    }

    /// The next requests for the runner, the oldest first, at most
    /// [`MOST_IN_ONE_TRIP`]; none when none wait, and then the runner is
    /// counted as stopped, in the same step, so a request queued after it
    /// always finds a runner or starts one.
    pub(crate) fn next_batch(&self) -> Vec<(R, Answer<T>)> {
        let mut w = self.lock();
        if w.requests.is_empty() {
            w.runners = w.runners.saturating_sub(1);
            return Vec::new();
        }
        let taken = MOST_IN_ONE_TRIP.min(w.requests.len());
        let rest = w.requests.split_off(taken);
        std::mem::replace(&mut w.requests, rest)
    }

    /// A runner stopped half way: it answers nobody (dropping the senders
    /// tells each waiter) and no longer counts.
    pub(crate) fn abandon(&self) {
        let mut w = self.lock();
        w.requests.clear();
        w.runners = w.runners.saturating_sub(1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting<R, T>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `run` on batches until none wait; it answers each request of a
    /// batch, in order. However it ends (a panic included), the queue is
    /// left with no runner, and a request it took and did not answer gets
    /// an error rather than waiting for good.
    pub(crate) fn run_until_empty(&self, mut run: impl FnMut(&[R]) -> Vec<StoreResult<T>>) {
        struct Stopped<'a, R, T>(&'a Gathered<R, T>);
        impl<R, T> Drop for Stopped<'_, R, T> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.abandon();
                }
            }
        }
        let _stopped = Stopped(self);
        loop {
            let batch = self.next_batch();
            if batch.is_empty() {
                return;
            }
            let (requests, answers): (Vec<R>, Vec<Answer<T>>) = batch.into_iter().unzip();
            let results = run(&requests);
            if results.len() != answers.len() {
                let e = StoreError::Failed(format!(
                    "{} requests were answered {} times",
                    answers.len(),
                    results.len()
                ));
                answers
                    .into_iter()
                    .for_each(|a| drop(a.send(Err(e.clone()))));
                continue;
            }
            for (answer, result) in answers.into_iter().zip(results) {
                // A caller that gave up (its request was dropped) is no loss.
                let _ = answer.send(result);
            }
        }
    }
}

/// The same error for each of `n` requests: what failed their batch.
pub(crate) fn each_failed<T>(n: usize, e: StoreError) -> Vec<StoreResult<T>> {
    (0..n).map(|_| Err(e.clone())).collect()
}

impl Store {
    /// `request`'s answer, run with whatever else `queue` gathers: the first
    /// caller with a runner free starts one on a blocking thread, which takes
    /// batch after batch to `run` (with the store's cipher), each on a
    /// connection of `pool`, until none wait. A connection that cannot be
    /// had fails the batch.
    pub(crate) async fn gathered<R, T>(
        &self,
        queue: fn(&Inner) -> &Gathered<R, T>,
        pool: fn(&Inner) -> &Pool<Manager>,
        request: R,
        run: fn(&mut DbConnection, &Cipher, &[R]) -> Vec<StoreResult<T>>,
    ) -> StoreResult<T>
    where
        R: Send + 'static,
        T: Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        if queue(&self.inner).push(request, answer) {
            let inner = Arc::clone(&self.inner);
            // Detached: it answers through the channels, not its handle.
            tokio::task::spawn_blocking(move || {
                queue(&inner).run_until_empty(|batch| match connection(pool(&inner)) {
                    Ok(mut conn) => run(&mut conn, &inner.cipher, batch),
                    Err(e) => each_failed(batch.len(), e),
                })
            });
        }
        answered.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the database call stopped before it answered".into(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Queue = Gathered<usize, String>;

    #[test]
    fn the_first_requests_start_runners_and_the_rest_wait_for_them() {
        let q = Queue::default();
        let mut receivers = Vec::new();
        for n in 0..MOST_RUNNERS {
            let (tx, rx) = oneshot::channel();
            assert!(q.push(n, tx), "runner {n} of {MOST_RUNNERS} must start");
            receivers.push(rx);
        }
        let (a, _ra) = oneshot::channel();
        assert!(!q.push(9, a), "all runners run: this one waits for them");
        assert_eq!(q.next_batch().len(), MOST_RUNNERS + 1);
        for _ in 0..MOST_RUNNERS {
            assert!(q.next_batch().is_empty());
        }
        let (b, _rb) = oneshot::channel();
        assert!(q.push(10, b), "the runners stopped when none waited");
    }

    #[test]
    fn a_queue_one_at_a_time_starts_one_runner() {
        let q = Queue::one_at_a_time();
        let (a, _ra) = oneshot::channel();
        assert!(q.push(1, a), "none runs: this one must start it");
        let (b, _rb) = oneshot::channel();
        assert!(!q.push(2, b), "one runs: this one waits for it");
        assert_eq!(q.next_batch().len(), 2);
        assert!(q.next_batch().is_empty());
        let (c, _rc) = oneshot::channel();
        assert!(q.push(3, c), "the runner stopped when none waited");
    }

    #[test]
    fn batches_keep_arrival_order_and_their_size() {
        let q = Queue::default();
        let mut receivers = Vec::new();
        for n in 0..MOST_IN_ONE_TRIP + 5 {
            let (tx, rx) = oneshot::channel();
            q.push(n, tx);
            receivers.push(rx);
        }
        let first: Vec<usize> = q.next_batch().into_iter().map(|(n, _)| n).collect();
        assert_eq!(first, (0..MOST_IN_ONE_TRIP).collect::<Vec<_>>());
        let second: Vec<usize> = q.next_batch().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            second,
            (MOST_IN_ONE_TRIP..MOST_IN_ONE_TRIP + 5).collect::<Vec<_>>()
        );
    }

    #[test]
    fn each_request_gets_its_own_answer() {
        let q = Queue::default();
        let (a, ra) = oneshot::channel();
        let (b, rb) = oneshot::channel();
        q.push(1, a);
        q.push(2, b);
        q.run_until_empty(|batch| {
            batch
                .iter()
                .map(|&n| match n {
                    1 => Ok("one".to_owned()),
                    _ => Err(StoreError::NotFound),
                })
                .collect()
        });
        assert_eq!(ra.blocking_recv().unwrap(), Ok("one".to_owned()));
        assert_eq!(rb.blocking_recv().unwrap(), Err(StoreError::NotFound));

        // A runner that answers the wrong number of times fails the batch.
        let (c, rc) = oneshot::channel();
        q.push(3, c);
        q.run_until_empty(|_| Vec::new());
        assert!(matches!(
            rc.blocking_recv().unwrap(),
            Err(StoreError::Failed(_))
        ));
    }

    #[test]
    fn a_runner_that_panics_leaves_no_one_waiting_and_the_queue_usable() {
        let q = Queue::default();
        let (a, ra) = oneshot::channel();
        let (b, rb) = oneshot::channel();
        q.push(1, a);
        q.push(2, b);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            q.run_until_empty(|_| panic!("a bug in the runner"))
        }));
        assert!(panicked.is_err());
        assert!(
            ra.blocking_recv().is_err(),
            "the first waiter was left waiting"
        );
        assert!(
            rb.blocking_recv().is_err(),
            "the second waiter was left waiting"
        );
        let (c, _rc) = oneshot::channel();
        assert!(
            q.push(3, c),
            "the queue still counts the runner that panicked"
        );
    }
}
