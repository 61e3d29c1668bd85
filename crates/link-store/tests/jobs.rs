//! The job queue suite, on SQLite and on PostgreSQL: coalescing by unique key,
//! due times and order, leases that expire and are taken over, progress,
//! cancels, retries with backoff until dead, and concurrent workers that never
//! share a job.

#[macro_use]
mod common;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use common::*;
use domain::jobs::{Job, JobFailure, JobId, JobState, NewJob};
use domain::store::{JobStore, PageRequest, StoreError};
use link_store::Store;

/// A time that reads back as written (whole microseconds).
fn t0() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn new_job(dealer_id: &str, kind: &str, run_at: DateTime<Utc>) -> NewJob {
    NewJob {
        id: JobId::new(),
        dealer: dealer(dealer_id),
        kind: kind.into(),
        payload: serde_json::json!({"connection": "c1"}),
        max_attempts: 3,
        run_at,
        unique_key: None,
        serial_key: None,
        created_by: "alice".into(),
    }
}

fn kinds(list: &[&str]) -> Vec<String> {
    list.iter().map(|k| k.to_string()).collect()
}

const LEASE: TimeDelta = TimeDelta::seconds(30);

async fn claim(store: &Store, kind: &str, worker: &str, now: DateTime<Utc>) -> Option<Job> {
    store
        .claim_job(&kinds(&[kind]), worker, LEASE, now)
        .await
        .unwrap()
}

fn conflict_text<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Err(StoreError::Conflict(msg)) => msg,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

store_test!(enqueue_coalesces_on_the_unique_key, |db| async move {
    let store = db.store().await;
    let now = t0();
    let keyed = |dealer_id: &str| NewJob {
        unique_key: Some("reconcile:c1".into()),
        serial_key: None,
        ..new_job(dealer_id, "reconcile", now)
    };
    let first = store.enqueue(keyed("d1")).await.unwrap();
    assert_eq!(first.state, JobState::Queued);
    assert_eq!(first.attempts, 0);
    assert_eq!(first.max_attempts, 3);
    assert_eq!(first.run_at, now);
    assert_eq!(first.payload, serde_json::json!({"connection": "c1"}));
    assert_eq!(first.created_by, "alice");
    assert_eq!(first.unique_key.as_deref(), Some("reconcile:c1"));
    assert_eq!((first.lease_owner.clone(), first.started_at), (None, None));
    assert_eq!(store.job(&dealer("d1"), first.id).await.unwrap(), first);

    // While it is unfinished, the same key gets the same job.
    assert_eq!(store.enqueue(keyed("d1")).await.unwrap(), first);
    // Another dealer's key is another key; no key never coalesces.
    let theirs = store.enqueue(keyed("d2")).await.unwrap();
    assert_ne!(theirs.id, first.id);
    let a = store
        .enqueue(new_job("d1", "reconcile", now))
        .await
        .unwrap();
    let b = store
        .enqueue(new_job("d1", "reconcile", now))
        .await
        .unwrap();
    assert_ne!(a.id, b.id);
    // The same enqueue repeated gets the job it made.
    let again = new_job("d1", "other", now);
    let made = store.enqueue(again.clone()).await.unwrap();
    assert_eq!(store.enqueue(again).await.unwrap(), made);

    // A running job read its inputs when it started: the key queues a new
    // job beside it, and further enqueues coalesce into that one.
    let running = claim(&store, "reconcile", "w1", now).await.unwrap();
    assert_eq!(running.id, first.id);
    let beside = store.enqueue(keyed("d1")).await.unwrap();
    assert_ne!(beside.id, first.id);
    assert_eq!(beside.state, JobState::Queued);
    assert_eq!(store.enqueue(keyed("d1")).await.unwrap(), beside);
    // Once the running one finished, the queued one still coalesces.
    store
        .complete_job(first.id, "w1", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(store.enqueue(keyed("d1")).await.unwrap(), beside);

    // Many enqueues of one key at once make one job.
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let job = NewJob {
                    unique_key: Some("race".into()),
                    serial_key: None,
                    ..new_job("d1", "reconcile", t0())
                };
                barrier.wait().await;
                store.enqueue(job).await.unwrap().id
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(task.await.unwrap());
    }
    assert_eq!(ids.len(), 1);
});

store_test!(
    jobs_of_one_serial_key_run_one_at_a_time_whatever_their_kind,
    |db| async move {
        let store = db.store().await;
        let now = t0();
        let serial = |kind: &str, dealer_id: &str, key: &str| NewJob {
            serial_key: Some(key.into()),
            ..new_job(dealer_id, kind, now)
        };
        let both = kinds(&["push", "callback"]);
        let push = store
            .enqueue(serial("push", "d1", "stages:c1:site:S1"))
            .await
            .unwrap();
        let callback = store
            .enqueue(serial("callback", "d1", "stages:c1:site:S1"))
            .await
            .unwrap();
        let other_record = store
            .enqueue(serial("callback", "d1", "stages:c1:site:S2"))
            .await
            .unwrap();
        let other_dealer = store
            .enqueue(serial("callback", "d2", "stages:c1:site:S1"))
            .await
            .unwrap();
        // Serial keys do not coalesce: four jobs.
        assert_eq!(
            [push.id, callback.id, other_record.id, other_dealer.id]
                .into_iter()
                .collect::<HashSet<_>>()
                .len(),
            4
        );
        let claim_any = |worker: &'static str| {
            let store = store.clone();
            let both = both.clone();
            async move { store.claim_job(&both, worker, LEASE, now).await.unwrap() }
        };
        assert_eq!(claim_any("w1").await.unwrap().id, push.id);
        // The callback of the same record waits; the others do not.
        let mut free = vec![
            claim_any("w2").await.unwrap().id,
            claim_any("w2").await.unwrap().id,
        ];
        free.sort();
        let mut expected = vec![other_record.id, other_dealer.id];
        expected.sort();
        assert_eq!(free, expected);
        assert_eq!(claim_any("w2").await, None);
        store
            .complete_job(push.id, "w1", serde_json::json!({}))
            .await
            .unwrap();
        assert_eq!(claim_any("w2").await.unwrap().id, callback.id);

        // Many workers claiming at once never run two jobs of one key together.
        let key = "stages:c1:site:RACE";
        for i in 0..6 {
            let kind = if i % 2 == 0 { "push" } else { "callback" };
            store.enqueue(serial(kind, "d3", key)).await.unwrap();
        }
        let barrier = Arc::new(tokio::sync::Barrier::new(6));
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let store = store.clone();
                let barrier = barrier.clone();
                let both = both.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    let worker = format!("racer{i}");
                    store.claim_job(&both, &worker, LEASE, now).await.unwrap()
                })
            })
            .collect();
        let mut claimed = Vec::new();
        for task in tasks {
            claimed.extend(task.await.unwrap());
        }
        let ours: Vec<_> = claimed
            .iter()
            .filter(|j| j.serial_key.as_deref() == Some(key))
            .collect();
        assert_eq!(ours.len(), 1, "one job of the key runs: {claimed:#?}");
    }
);

store_test!(the_jobs_of_one_key_never_run_at_once, |db| async move {
    let store = db.store().await;
    let now = t0();
    let d = dealer("d1");
    let keyed = || NewJob {
        unique_key: Some("auto_sync:l1".into()),
        serial_key: None,
        ..new_job("d1", "push", now)
    };
    let first = store.enqueue(keyed()).await.unwrap();
    assert_eq!(claim(&store, "push", "w1", now).await.unwrap().id, first.id);

    // Queued beside the running one, and held back until it ends.
    let second = store.enqueue(keyed()).await.unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(claim(&store, "push", "w2", now).await, None);
    // Jobs without a key, and the same key of another dealer, are not held.
    let unkeyed = store.enqueue(new_job("d1", "push", now)).await.unwrap();
    let theirs = store
        .enqueue(NewJob {
            unique_key: Some("auto_sync:l1".into()),
            serial_key: None,
            ..new_job("d2", "push", now)
        })
        .await
        .unwrap();
    let mut free = vec![
        claim(&store, "push", "w2", now).await.unwrap().id,
        claim(&store, "push", "w2", now).await.unwrap().id,
    ];
    free.sort();
    let mut expected = vec![unkeyed.id, theirs.id];
    expected.sort();
    assert_eq!(free, expected);
    assert_eq!(claim(&store, "push", "w2", now).await, None);
    for id in free {
        store
            .complete_job(id, "w2", serde_json::json!({}))
            .await
            .unwrap();
    }

    // A retry of the running one gives way to the queued one, which does the
    // same work with later inputs.
    let state = store
        .fail_job(
            first.id,
            "w1",
            JobFailure::Retry {
                error: "timeout".into(),
                at: now,
            },
        )
        .await
        .unwrap();
    assert_eq!(state, JobState::Cancelled);
    let superseded = store.job(&d, first.id).await.unwrap();
    assert_eq!(superseded.state, JobState::Cancelled);
    let error = superseded.last_error.unwrap();
    assert!(error.starts_with("timeout"), "{error}");
    assert!(error.contains(&second.id.to_string()), "{error}");
    assert!(superseded.finished_at.is_some());

    // Now the queued one runs.
    assert_eq!(
        claim(&store, "push", "w2", now).await.unwrap().id,
        second.id
    );
    // Its lease runs out while a third waits: the lost one is taken over
    // first, and the third still waits.
    let third = store.enqueue(keyed()).await.unwrap();
    let later = now + LEASE + TimeDelta::seconds(1);
    let again = claim(&store, "push", "w3", later).await.unwrap();
    assert_eq!((again.id, again.attempts), (second.id, 2));
    assert_eq!(claim(&store, "push", "w3", later).await, None);
    // With no job of its key queued, a retry goes back to the queue as always.
    store
        .complete_job(second.id, "w3", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(
        claim(&store, "push", "w3", later).await.unwrap().id,
        third.id
    );
    assert_eq!(
        store
            .fail_job(
                third.id,
                "w3",
                JobFailure::Retry {
                    error: "timeout".into(),
                    at: later,
                },
            )
            .await,
        Ok(JobState::Queued)
    );
    assert_eq!(
        claim(&store, "push", "w3", later).await.unwrap().id,
        third.id
    );
});

store_test!(claims_take_due_jobs_oldest_first, |db| async move {
    let store = db.store().await;
    let now = t0();
    let later = store
        .enqueue(new_job("d1", "reconcile", now + TimeDelta::seconds(20)))
        .await
        .unwrap();
    let second = store
        .enqueue(new_job("d1", "reconcile", now - TimeDelta::seconds(10)))
        .await
        .unwrap();
    let first = store
        .enqueue(new_job("d2", "reconcile", now - TimeDelta::seconds(20)))
        .await
        .unwrap();
    let same_time = store
        .enqueue(new_job("d1", "reconcile", now - TimeDelta::seconds(10)))
        .await
        .unwrap();
    let other_kind = store
        .enqueue(new_job("d1", "push", now - TimeDelta::minutes(1)))
        .await
        .unwrap();

    // No kinds, no work.
    assert_eq!(store.claim_job(&[], "w1", LEASE, now).await, Ok(None));

    let got = claim(&store, "reconcile", "w1", now).await.unwrap();
    assert_eq!(
        got.id, first.id,
        "the oldest run_at first, whatever the dealer"
    );
    assert_eq!(got.state, JobState::Running);
    assert_eq!(got.attempts, 1);
    assert_eq!(got.lease_owner.as_deref(), Some("w1"));
    assert_eq!(got.lease_expires_at, Some(now + LEASE));
    assert_eq!(got.started_at, Some(now));
    assert_eq!(store.job(&dealer("d2"), first.id).await.unwrap(), got);
    // Equal run_at: creation (id) order.
    assert_eq!(
        claim(&store, "reconcile", "w1", now).await.unwrap().id,
        second.id
    );
    assert_eq!(
        claim(&store, "reconcile", "w1", now).await.unwrap().id,
        same_time.id
    );
    // Not due yet, then due (while the leases above still run).
    assert_eq!(claim(&store, "reconcile", "w1", now).await, None);
    assert_eq!(
        claim(&store, "reconcile", "w1", now + TimeDelta::seconds(20))
            .await
            .unwrap()
            .id,
        later.id
    );
    // Several kinds at once.
    let got = store
        .claim_job(&kinds(&["x", "push"]), "w1", LEASE, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.id, other_kind.id);
});

store_test!(concurrent_workers_never_share_a_job, |db| async move {
    let store = db.store().await;
    let now = t0();
    let mut enqueued = HashSet::new();
    for i in 0..20 {
        let job = store
            .enqueue(new_job("d1", "reconcile", now - TimeDelta::seconds(i)))
            .await
            .unwrap();
        enqueued.insert(job.id);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(4));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let worker = format!("w{w}");
                let mut claimed = Vec::new();
                barrier.wait().await;
                while let Some(job) = store
                    .claim_job(&kinds(&["reconcile"]), &worker, LEASE, now)
                    .await
                    .unwrap()
                {
                    assert_eq!(job.lease_owner.as_deref(), Some(worker.as_str()));
                    claimed.push(job.id);
                }
                claimed
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    assert_eq!(all.len(), 20, "each job claimed exactly once");
    let unique: HashSet<JobId> = all.into_iter().collect();
    assert_eq!(unique, enqueued);
});

store_test!(expired_leases_are_claimed_again, |db| async move {
    let store = db.store().await;
    let now = t0();
    let job = store
        .enqueue(new_job("d1", "reconcile", now))
        .await
        .unwrap();
    let first = claim(&store, "reconcile", "w1", now).await.unwrap();
    assert_eq!(first.attempts, 1);

    // Held while the lease runs, renewed by its holder only.
    assert_eq!(
        claim(&store, "reconcile", "w2", now + TimeDelta::seconds(20)).await,
        None
    );
    assert_eq!(
        store
            .renew_lease(job.id, "w2", LEASE, now + TimeDelta::seconds(20))
            .await,
        Ok(false)
    );
    assert_eq!(
        store
            .renew_lease(job.id, "w1", LEASE, now + TimeDelta::seconds(20))
            .await,
        Ok(true)
    );
    // Renewed to t+50s: still held at t+40s.
    assert_eq!(
        claim(&store, "reconcile", "w2", now + TimeDelta::seconds(40)).await,
        None
    );
    assert_eq!(
        store.job_progress(job.id, "w1", 3, Some(10)).await,
        Ok(true)
    );
    let seen = store.job(&dealer("d1"), job.id).await.unwrap();
    assert_eq!((seen.progress_done, seen.progress_total), (3, Some(10)));
    // An unknown total keeps the one reported before.
    assert_eq!(store.job_progress(job.id, "w1", 4, None).await, Ok(true));
    let seen = store.job(&dealer("d1"), job.id).await.unwrap();
    assert_eq!((seen.progress_done, seen.progress_total), (4, Some(10)));

    // The worker vanished: after the lease, another takes the job over.
    let later = now + TimeDelta::seconds(51);
    let second = claim(&store, "reconcile", "w2", later).await.unwrap();
    assert_eq!(second.id, job.id);
    assert_eq!(second.attempts, 2);
    assert_eq!(second.lease_owner.as_deref(), Some("w2"));
    assert_eq!(second.lease_expires_at, Some(later + LEASE));
    assert_eq!(second.started_at, Some(now), "started when first claimed");

    // The first worker has lost it for every write.
    assert_eq!(
        store.renew_lease(job.id, "w1", LEASE, later).await,
        Ok(false)
    );
    assert_eq!(store.job_progress(job.id, "w1", 5, None).await, Ok(false));
    let msg = conflict_text(
        store
            .complete_job(job.id, "w1", serde_json::json!({}))
            .await,
    );
    assert!(msg.contains("lease lost"), "{msg}");
    let msg = conflict_text(
        store
            .fail_job(job.id, "w1", JobFailure::Permanent { error: "x".into() })
            .await,
    );
    assert!(msg.contains("lease lost"), "{msg}");
    assert_eq!(
        store
            .complete_job(JobId::new(), "w1", serde_json::json!({}))
            .await,
        Err(StoreError::NotFound)
    );

    let summary = serde_json::json!({"linked": 4, "conflicts": []});
    store
        .complete_job(job.id, "w2", summary.clone())
        .await
        .unwrap();
    let done = store.job(&dealer("d1"), job.id).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.summary, Some(summary));
    assert!(done.finished_at.is_some());
    assert_eq!((done.lease_owner, done.lease_expires_at), (None, None));
    assert_eq!(
        claim(&store, "reconcile", "w3", later + TimeDelta::hours(1)).await,
        None
    );

    // A worker lost during the last attempt leaves the job dead, not claimed again.
    let last = store
        .enqueue(NewJob {
            max_attempts: 1,
            ..new_job("d1", "reconcile", now)
        })
        .await
        .unwrap();
    assert_eq!(
        claim(&store, "reconcile", "w1", now).await.unwrap().id,
        last.id
    );
    assert_eq!(
        claim(&store, "reconcile", "w2", later).await,
        None,
        "no attempts left"
    );
    let dead = store.job(&dealer("d1"), last.id).await.unwrap();
    assert_eq!(dead.state, JobState::Dead);
    assert!(dead.last_error.unwrap().contains("lease"));
});

store_test!(waits_for_an_upstream_use_up_no_attempt, |db| async move {
    let store = db.store().await;
    let now = t0();
    let d = dealer("d1");
    // Three attempts allowed; ten failures while the upstream is down.
    let job = store
        .enqueue(new_job("d1", "reconcile", now))
        .await
        .unwrap();
    let mut at = now;
    for round in 1..=10 {
        let claimed = claim(&store, "reconcile", "w1", at).await.unwrap();
        assert_eq!((claimed.id, claimed.attempts), (job.id, 1));
        at += TimeDelta::seconds(5);
        let state = store
            .fail_job(
                job.id,
                "w1",
                JobFailure::Wait {
                    error: format!("unreachable {round}"),
                    at,
                },
            )
            .await
            .unwrap();
        assert_eq!(state, JobState::Queued);
        let seen = store.job(&d, job.id).await.unwrap();
        assert_eq!((seen.attempts, seen.run_at), (0, at));
        assert_eq!(seen.last_error, Some(format!("unreachable {round}")));
    }
    // Counted failures still end it.
    for _ in 0..3 {
        claim(&store, "reconcile", "w1", at).await.unwrap();
        store
            .fail_job(
                job.id,
                "w1",
                JobFailure::Retry {
                    error: "bad answer".into(),
                    at,
                },
            )
            .await
            .unwrap();
    }
    assert_eq!(store.job(&d, job.id).await.unwrap().state, JobState::Dead);
});

store_test!(failures_retry_until_dead, |db| async move {
    let store = db.store().await;
    let now = t0();
    let d = dealer("d1");
    let job = store
        .enqueue(new_job("d1", "reconcile", now))
        .await
        .unwrap();
    let mut at = now;
    for attempt in 1..=3u32 {
        let claimed = claim(&store, "reconcile", "w1", at).await.unwrap();
        assert_eq!((claimed.id, claimed.attempts), (job.id, attempt));
        let retry_at = at + TimeDelta::seconds(i64::from(attempt) * 10);
        let state = store
            .fail_job(
                job.id,
                "w1",
                JobFailure::Retry {
                    error: format!("timeout {attempt}"),
                    at: retry_at,
                },
            )
            .await
            .unwrap();
        let seen = store.job(&d, job.id).await.unwrap();
        assert_eq!(seen.last_error, Some(format!("timeout {attempt}")));
        assert_eq!(
            (seen.lease_owner.clone(), seen.lease_expires_at),
            (None, None)
        );
        if attempt < 3 {
            assert_eq!(state, JobState::Queued);
            assert_eq!(seen.state, JobState::Queued);
            assert_eq!(seen.run_at, retry_at);
            assert_eq!(seen.finished_at, None);
            // Not before its time.
            assert_eq!(
                claim(&store, "reconcile", "w1", retry_at - TimeDelta::seconds(1)).await,
                None
            );
        } else {
            assert_eq!(state, JobState::Dead);
            assert_eq!(seen.state, JobState::Dead);
            assert_eq!(seen.attempts, 3);
            assert!(seen.finished_at.is_some());
        }
        at = retry_at;
    }
    assert_eq!(
        claim(&store, "reconcile", "w1", at + TimeDelta::hours(1)).await,
        None
    );

    // Retried by hand: fresh attempts, due now, the last error kept.
    let before = Utc::now();
    let retried = store.retry_job(&d, job.id).await.unwrap();
    assert_eq!(retried.state, JobState::Queued);
    assert_eq!(retried.attempts, 0);
    assert!(retried.run_at >= before.trunc_subsecs(6) - TimeDelta::microseconds(1));
    assert_eq!(retried.last_error.as_deref(), Some("timeout 3"));
    assert_eq!(retried.finished_at, None);
    let msg = conflict_text(store.retry_job(&d, job.id).await);
    assert!(msg.contains("queued"), "{msg}");
    assert_eq!(
        store.retry_job(&dealer("d2"), job.id).await,
        Err(StoreError::NotFound)
    );

    // A permanent error fails it at once, and it can be retried too.
    let claimed = claim(&store, "reconcile", "w1", Utc::now()).await.unwrap();
    assert_eq!(claimed.attempts, 1);
    assert_eq!(
        store
            .fail_job(
                job.id,
                "w1",
                JobFailure::Permanent {
                    error: "bad credentials".into(),
                },
            )
            .await,
        Ok(JobState::Failed)
    );
    let failed = store.job(&d, job.id).await.unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.last_error.as_deref(), Some("bad credentials"));
    assert_eq!(
        store.retry_job(&d, job.id).await.unwrap().state,
        JobState::Queued
    );

    // A retry may not make a second unfinished job of one key.
    let keyed = |run_at| NewJob {
        unique_key: Some("k".into()),
        serial_key: None,
        ..new_job("d1", "keyed", run_at)
    };
    let k1 = store.enqueue(keyed(now)).await.unwrap();
    claim(&store, "keyed", "w1", now).await.unwrap();
    store
        .fail_job(k1.id, "w1", JobFailure::Permanent { error: "no".into() })
        .await
        .unwrap();
    let k2 = store.enqueue(keyed(now)).await.unwrap();
    assert_ne!(k1.id, k2.id);
    let msg = conflict_text(store.retry_job(&d, k1.id).await);
    assert!(msg.contains("'k'"), "{msg}");
});

store_test!(cancels_stop_queued_and_running_jobs, |db| async move {
    let store = db.store().await;
    let now = t0();
    let d = dealer("d1");

    // Queued: cancelled at once and never claimed.
    let queued = store
        .enqueue(new_job("d1", "reconcile", now))
        .await
        .unwrap();
    let cancelled = store.cancel_job(&d, queued.id).await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert!(cancelled.finished_at.is_some());
    assert_eq!(claim(&store, "reconcile", "w1", now).await, None);
    // Cancelling again is no error.
    assert_eq!(store.cancel_job(&d, queued.id).await.unwrap(), cancelled);
    assert_eq!(
        store.cancel_job(&dealer("d2"), queued.id).await,
        Err(StoreError::NotFound)
    );

    // Running: asked to stop; its progress answers false; it ends cancelled.
    let running = store
        .enqueue(new_job("d1", "reconcile", now))
        .await
        .unwrap();
    claim(&store, "reconcile", "w1", now).await.unwrap();
    assert_eq!(
        store.job_progress(running.id, "w1", 1, Some(5)).await,
        Ok(true)
    );
    let asked = store.cancel_job(&d, running.id).await.unwrap();
    assert_eq!(asked.state, JobState::Running);
    assert_eq!(
        store.job_progress(running.id, "w1", 2, None).await,
        Ok(false)
    );
    assert_eq!(
        store
            .fail_job(
                running.id,
                "w1",
                JobFailure::Retry {
                    error: "cancelled".into(),
                    at: now,
                },
            )
            .await,
        Ok(JobState::Cancelled)
    );
    let ended = store.job(&d, running.id).await.unwrap();
    assert_eq!(ended.state, JobState::Cancelled);
    assert_eq!(ended.progress_done, 2);
    assert!(ended.finished_at.is_some());

    // A job that finishes its work despite the cancel has succeeded.
    let finishing = store
        .enqueue(new_job("d1", "reconcile", now))
        .await
        .unwrap();
    claim(&store, "reconcile", "w1", now).await.unwrap();
    store.cancel_job(&d, finishing.id).await.unwrap();
    store
        .complete_job(finishing.id, "w1", serde_json::json!({"n": 1}))
        .await
        .unwrap();
    assert_eq!(
        store.job(&d, finishing.id).await.unwrap().state,
        JobState::Succeeded
    );
    let msg = conflict_text(store.cancel_job(&d, finishing.id).await);
    assert!(msg.contains("succeeded"), "{msg}");

    // Asked to stop, then its worker vanished: it ends cancelled, not claimed again.
    let abandoned = store
        .enqueue(new_job("d1", "reconcile", now))
        .await
        .unwrap();
    claim(&store, "reconcile", "w1", now).await.unwrap();
    store.cancel_job(&d, abandoned.id).await.unwrap();
    assert_eq!(
        claim(&store, "reconcile", "w2", now + TimeDelta::minutes(5)).await,
        None
    );
    assert_eq!(
        store.job(&d, abandoned.id).await.unwrap().state,
        JobState::Cancelled
    );
});

store_test!(jobs_list_newest_first_with_filters, |db| async move {
    let store = db.store().await;
    let now = t0();
    let d = dealer("d1");
    let mut made = Vec::new();
    for kind in ["reconcile", "push", "reconcile", "push", "reconcile"] {
        made.push(store.enqueue(new_job("d1", kind, now)).await.unwrap());
    }
    store
        .enqueue(new_job("d2", "reconcile", now))
        .await
        .unwrap();
    // The oldest reconcile runs.
    let running = claim(&store, "reconcile", "w1", now).await.unwrap();
    assert_eq!(running.id, made[0].id);

    let ids = |page: domain::Page<Job>| page.items.iter().map(|j| j.id).collect::<Vec<_>>();
    let newest_first: Vec<JobId> = made.iter().rev().map(|j| j.id).collect();
    let mut seen = Vec::new();
    let mut page = first_page(2);
    loop {
        let got = store.list_jobs(&d, None, None, page.clone()).await.unwrap();
        assert!(got.items.iter().all(|j| j.dealer == d));
        let token = got.next_page_token.clone();
        seen.extend(ids(got));
        match token {
            Some(token) => page.after = Some(token),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);

    let reconciles = store
        .list_jobs(&d, None, Some("reconcile"), first_page(10))
        .await
        .unwrap();
    assert_eq!(ids(reconciles), vec![made[4].id, made[2].id, made[0].id]);
    let queued_reconciles = store
        .list_jobs(
            &d,
            Some(JobState::Queued),
            Some("reconcile"),
            first_page(10),
        )
        .await
        .unwrap();
    assert_eq!(ids(queued_reconciles), vec![made[4].id, made[2].id]);
    let running_jobs = store
        .list_jobs(&d, Some(JobState::Running), None, first_page(10))
        .await
        .unwrap();
    assert_eq!(ids(running_jobs), vec![made[0].id]);
    let none = store
        .list_jobs(
            &d,
            Some(JobState::Dead),
            None,
            PageRequest {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(none.items.is_empty());
    assert_eq!(none.next_page_token, None);
    assert_eq!(
        store.job(&dealer("d2"), made[0].id).await,
        Err(StoreError::NotFound)
    );
});

/// On PostgreSQL a new job is announced on the channel the runners of every
/// replica listen to, and an enqueue that coalesces into a queued job is
/// not. (SQLite has no announcements: its workers poll.) Other tests share
/// the database and its channels, so only announcements that name this
/// test's schema count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_job_is_announced_to_every_replica() {
    use diesel::connection::SimpleConnection;
    use diesel::Connection as _;

    let db = TestDb::postgres();
    let Kind::Postgres { schema, .. } = &db.kind else {
        unreachable!("a PostgreSQL database")
    };
    let store = db.store().await;
    let mut listener = diesel::PgConnection::establish(&db.url).unwrap();
    listener.batch_execute("LISTEN crosslink_jobs").unwrap();
    // Announcements of this schema heard within `wait`.
    let mut heard = |wait: std::time::Duration| {
        let until = std::time::Instant::now() + wait;
        let mut ours = 0;
        while std::time::Instant::now() < until {
            for note in listener.notifications_iter() {
                if note.unwrap().payload == *schema {
                    ours += 1;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        ours
    };

    store.enqueue(new_job("d1", "ping", t0())).await.unwrap();
    assert_eq!(heard(std::time::Duration::from_secs(2)), 1, "a new job");

    let keyed = || NewJob {
        unique_key: Some("push:site:1".into()),
        ..new_job("d1", "push", t0())
    };
    store.enqueue(keyed()).await.unwrap();
    assert_eq!(
        heard(std::time::Duration::from_secs(2)),
        1,
        "a new keyed job"
    );
    let again = store.enqueue(keyed()).await.unwrap();
    assert_eq!(again.state, JobState::Queued);
    assert_eq!(
        heard(std::time::Duration::from_secs(1)),
        0,
        "an enqueue that coalesced into a queued job"
    );
}
