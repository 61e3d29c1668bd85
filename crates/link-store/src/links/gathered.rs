//! Billing-id lookups on PostgreSQL, gathered (B1): the lookups that arrive
//! while one round trip to the database runs go together in the next, one
//! statement for all of them. Alone, each lookup paid a hop to a blocking
//! thread and a round trip of its own, several times the cost of reading its
//! row; under load they now share both. A lookup that arrives when none runs
//! goes at once, so nothing waits for company.

use std::sync::Mutex;

use domain::link::Link;
use domain::store::{StoreError, StoreResult};
use domain::Page;
use tokio::sync::oneshot;

use super::lookups;
use crate::db::{self, Fail};
use crate::{Backend, Store};

/// At most this many lookups go in one statement.
pub(crate) const MOST_IN_ONE_READ: usize = 64;

/// One lookup: the first page of `dealer`'s links of `billing_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lookup {
    pub dealer: String,
    pub billing_id: String,
    pub limit: usize,
}

type Answer = oneshot::Sender<StoreResult<Page<Link>>>;

/// The lookups waiting for the next round trip, and whether one runs.
#[derive(Default)]
pub(crate) struct LookupQueue {
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    lookups: Vec<(Lookup, Answer)>,
    /// A reader is running: it takes what waits before it stops.
    reading: bool,
}

impl LookupQueue {
    /// Queues `lookup`; true when no reader runs, so the caller must start
    /// one (and this queue counts it as running from now).
    pub(crate) fn push(&self, lookup: Lookup, answer: Answer) -> bool {
        let mut w = self.lock();
        w.lookups.push((lookup, answer));
        !std::mem::replace(&mut w.reading, true)
    }

    /// The next lookups for the reader, at most [`MOST_IN_ONE_READ`]; none
    /// when none wait, and then the reader is counted as stopped, in the same
    /// step, so a lookup queued after it always finds a reader or starts one.
    pub(crate) fn next_batch(&self) -> Vec<(Lookup, Answer)> {
        let mut w = self.lock();
        if w.lookups.is_empty() {
            w.reading = false;
            return Vec::new();
        }
        // The oldest go first; the rest wait for the next batch.
        let taken = MOST_IN_ONE_READ.min(w.lookups.len());
        let rest = w.lookups.split_off(taken);
        std::mem::replace(&mut w.lookups, rest)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `read` on batches until none wait. However it ends (a panic
    /// included), the queue is left with no reader, and a lookup it took and
    /// did not answer gets an error rather than waiting for good.
    pub(crate) fn read_until_empty(
        &self,
        mut read: impl FnMut(&[Lookup]) -> StoreResult<Vec<Page<Link>>>,
    ) {
        struct Stopped<'a>(&'a LookupQueue);
        impl Drop for Stopped<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    // Answer nobody: dropping the senders tells each waiter.
                    let mut w = self.0.lock();
                    w.lookups.clear();
                    w.reading = false;
                }
            }
        }
        let _stopped = Stopped(self);
        loop {
            let batch = self.next_batch();
            if batch.is_empty() {
                return;
            }
            let (lookups, answers): (Vec<Lookup>, Vec<Answer>) = batch.into_iter().unzip();
            match read(&lookups) {
                Ok(pages) if pages.len() == answers.len() => {
                    for (answer, page) in answers.into_iter().zip(pages) {
                        // A caller that gave up (its request was dropped) is no loss.
                        let _ = answer.send(Ok(page));
                    }
                }
                Ok(pages) => {
                    let e = StoreError::Failed(format!(
                        "{} lookups read as {} pages",
                        answers.len(),
                        pages.len()
                    ));
                    answers
                        .into_iter()
                        .for_each(|a| drop(a.send(Err(e.clone()))));
                }
                Err(e) => answers
                    .into_iter()
                    .for_each(|a| drop(a.send(Err(e.clone())))),
            }
        }
    }
}

impl Store {
    /// The first page of a dealer's links of one billing id: on SQLite read
    /// at once (a read there never waits on the network); on PostgreSQL
    /// gathered with the other lookups in flight.
    pub(super) async fn billing_id_lookup(&self, lookup: Lookup) -> StoreResult<Page<Link>> {
        if self.backend() == Backend::Sqlite {
            return self
                .run_index_read(move |conn, _| {
                    lookups::links_of_billing_id(
                        conn,
                        &lookup.dealer,
                        &lookup.billing_id,
                        lookup.limit,
                    )
                })
                .await;
        }
        let (answer, answered) = oneshot::channel();
        if self.inner.lookups.push(lookup, answer) {
            let store = self.clone();
            // Detached: it answers through the channels, not its handle.
            tokio::task::spawn_blocking(move || store.read_gathered_lookups());
        }
        answered.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the lookup's database read stopped before it answered".into(),
            ))
        })
    }

    /// The reader: batch after batch, each on a connection that keeps its
    /// plans, until no lookup waits.
    fn read_gathered_lookups(&self) {
        let pool = self.inner.index_reads.as_ref().unwrap_or(&self.inner.pool);
        self.inner.lookups.read_until_empty(|batch| {
            let mut conn = pool
                .get()
                .map_err(|e| db::unavailable(&format!("no database connection: {e}")))?;
            lookups::links_of_billing_ids(&mut conn, batch).map_err(Fail::into_store_error)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(n: usize) -> Lookup {
        Lookup {
            dealer: "d1".into(),
            billing_id: format!("B-{n}"),
            limit: 10,
        }
    }

    fn page(n: usize) -> Page<Link> {
        Page {
            items: Vec::new(),
            next_page_token: Some(format!("{n}")),
        }
    }

    #[test]
    fn the_first_lookup_starts_a_reader_and_the_rest_wait_for_it() {
        let q = LookupQueue::default();
        let (a, _ra) = oneshot::channel();
        let (b, _rb) = oneshot::channel();
        assert!(
            q.push(lookup(1), a),
            "no reader ran, so this one must start one"
        );
        assert!(
            !q.push(lookup(2), b),
            "a reader runs: this one waits for it"
        );
        assert_eq!(q.next_batch().len(), 2);
        assert!(q.next_batch().is_empty());
        let (c, _rc) = oneshot::channel();
        assert!(q.push(lookup(3), c), "the reader stopped when none waited");
    }

    #[test]
    fn batches_keep_arrival_order_and_their_size() {
        let q = LookupQueue::default();
        let mut receivers = Vec::new();
        for n in 0..MOST_IN_ONE_READ + 5 {
            let (tx, rx) = oneshot::channel();
            q.push(lookup(n), tx);
            receivers.push(rx);
        }
        let first: Vec<String> = q
            .next_batch()
            .into_iter()
            .map(|(l, _)| l.billing_id)
            .collect();
        assert_eq!(first.len(), MOST_IN_ONE_READ);
        assert_eq!(first[0], "B-0");
        assert_eq!(
            first[MOST_IN_ONE_READ - 1],
            format!("B-{}", MOST_IN_ONE_READ - 1)
        );
        let second: Vec<String> = q
            .next_batch()
            .into_iter()
            .map(|(l, _)| l.billing_id)
            .collect();
        assert_eq!(
            second,
            (MOST_IN_ONE_READ..MOST_IN_ONE_READ + 5)
                .map(|n| format!("B-{n}"))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn each_lookup_gets_its_own_page_or_the_error() {
        let q = LookupQueue::default();
        let (a, ra) = oneshot::channel();
        let (b, rb) = oneshot::channel();
        q.push(lookup(1), a);
        q.push(lookup(2), b);
        q.read_until_empty(|ls| {
            Ok(ls
                .iter()
                .map(|l| page(l.billing_id.len() + l.limit))
                .collect())
        });
        assert_eq!(
            ra.blocking_recv()
                .unwrap()
                .unwrap()
                .next_page_token
                .as_deref(),
            Some("13")
        );
        assert_eq!(
            rb.blocking_recv()
                .unwrap()
                .unwrap()
                .next_page_token
                .as_deref(),
            Some("13")
        );

        let (c, rc) = oneshot::channel();
        assert!(q.push(lookup(3), c));
        q.read_until_empty(|_| Err(StoreError::Unavailable("down".into())));
        assert_eq!(
            rc.blocking_recv().unwrap(),
            Err(StoreError::Unavailable("down".into()))
        );
    }

    #[test]
    fn a_reader_that_panics_leaves_no_one_waiting_and_the_queue_usable() {
        let q = LookupQueue::default();
        let (a, ra) = oneshot::channel();
        let (b, rb) = oneshot::channel();
        q.push(lookup(1), a);
        q.push(lookup(2), b);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            q.read_until_empty(|_| panic!("a bug in the read"))
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
            q.push(lookup(3), c),
            "the queue still counts a reader running"
        );
    }
}
