//! The queue shared fairly between dealers (B15), on SQLite and on
//! PostgreSQL: one dealer's burst never holds up another's next job, a
//! dealer never runs more than its cap, the dealer with fewer jobs running
//! goes first, and within a dealer interactive kinds go before bulk ones.

#[macro_use]
mod common;

use std::collections::HashSet;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use common::*;
use domain::jobs::{Done, Job, JobId, NewJob};
use domain::store::{Claim, JobStore};
use link_store::Store;

fn t0() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn job(dealer_id: &str, kind: &str, run_at: DateTime<Utc>) -> NewJob {
    NewJob {
        id: JobId::new(),
        dealer: dealer(dealer_id),
        kind: kind.into(),
        payload: serde_json::json!({}),
        max_attempts: 3,
        run_at,
        unique_key: None,
        serial_key: None,
        created_by: "test".into(),
    }
}

const KINDS: &[&str] = &["auto_sync_push", "reconcile"];

async fn claim(store: &Store, limit: usize, cap: usize, now: DateTime<Utc>) -> Vec<Job> {
    let kinds: Vec<String> = KINDS.iter().map(|k| k.to_string()).collect();
    store
        .claim_jobs(Claim {
            kinds: &kinds,
            worker: "w1",
            lease: TimeDelta::seconds(30),
            now,
            limit,
            settle_lost_leases: false,
            max_running_per_dealer: cap,
            most_of_kind: &[],
        })
        .await
        .unwrap()
}

async fn finish(store: &Store, jobs: &[Job]) {
    let done = jobs
        .iter()
        .map(|j| (j.id, Done::from(serde_json::json!({}))))
        .collect();
    assert!(store.complete_jobs("w1", done).await.unwrap().is_empty());
}

fn dealers_of(jobs: &[Job]) -> Vec<&str> {
    jobs.iter().map(|j| j.dealer.0.as_str()).collect()
}

store_test!(
    a_burst_of_one_dealer_leaves_room_for_another,
    |db| async move {
        let store = db.store().await;
        let now = t0();
        // Dealer A's 5,000 pushes, all due long before dealer B's one.
        for i in 0..5_000 {
            let at = now - TimeDelta::minutes(10) + TimeDelta::milliseconds(i);
            store.enqueue(job("a", "auto_sync_push", at)).await.unwrap();
        }
        let b = store
            .enqueue(job("b", "auto_sync_push", now))
            .await
            .unwrap();
        let first = claim(&store, 4, 0, now).await;
        assert_eq!(first.len(), 4);
        assert!(
            first.iter().any(|j| j.id == b.id),
            "B's job is in the first claim: {:?}",
            dealers_of(&first)
        );
        // And A's all arrive, each once.
        finish(&store, &first).await;
        let mut seen: HashSet<JobId> = first.iter().map(|j| j.id).collect();
        loop {
            let batch = claim(&store, 64, 0, now).await;
            if batch.is_empty() {
                break;
            }
            for j in &batch {
                assert!(seen.insert(j.id), "job {} claimed twice", j.id.0);
            }
            finish(&store, &batch).await;
        }
        assert_eq!(seen.len(), 5_001);
    }
);

// A claim takes no more of a kind than the worker has room for, and the
// other kinds due behind them still come in that claim.
store_test!(
    a_claim_takes_no_more_of_a_kind_than_its_room,
    |db| async move {
        let store = db.store().await;
        let now = t0();
        for i in 0..6 {
            let at = now - TimeDelta::minutes(1) + TimeDelta::seconds(i);
            store.enqueue(job("a", "reconcile", at)).await.unwrap();
        }
        for i in 0..3 {
            let at = now - TimeDelta::seconds(10) + TimeDelta::seconds(i);
            store.enqueue(job("a", "auto_sync_push", at)).await.unwrap();
        }
        let kinds: Vec<String> = KINDS.iter().map(|k| k.to_string()).collect();
        let room = [("reconcile".to_owned(), 2)];
        let claimed = store
            .claim_jobs(Claim {
                kinds: &kinds,
                worker: "w1",
                lease: TimeDelta::seconds(30),
                now,
                limit: 16,
                settle_lost_leases: false,
                max_running_per_dealer: 0,
                most_of_kind: &room,
            })
            .await
            .unwrap();
        let count = |kind: &str| claimed.iter().filter(|j| j.kind == kind).count();
        assert_eq!(count("reconcile"), 2, "the room, not the batch");
        assert_eq!(count("auto_sync_push"), 3);
        // Without a most, the rest come.
        assert_eq!(claim(&store, 16, 0, now).await.len(), 4);
    }
);

store_test!(
    a_dealer_at_its_cap_waits_for_its_own_jobs,
    |db| async move {
        let store = db.store().await;
        let now = t0();
        for i in 0..10 {
            store
                .enqueue(job("a", "auto_sync_push", now - TimeDelta::seconds(i)))
                .await
                .unwrap();
        }
        let running = claim(&store, 16, 3, now).await;
        assert_eq!(running.len(), 3, "the cap, not the batch size");
        assert!(claim(&store, 16, 3, now).await.is_empty());
        // Another dealer is not held back by A's cap.
        store
            .enqueue(job("b", "auto_sync_push", now))
            .await
            .unwrap();
        assert_eq!(dealers_of(&claim(&store, 16, 3, now).await), ["b"]);
        // One of A's ends: one more of A's may start.
        finish(&store, &running[..1]).await;
        assert_eq!(dealers_of(&claim(&store, 16, 3, now).await), ["a"]);
        // No cap (0): the batch takes them all.
        assert_eq!(claim(&store, 16, 0, now).await.len(), 6);
    }
);

store_test!(
    the_dealer_with_fewer_jobs_running_goes_first,
    |db| async move {
        let store = db.store().await;
        let now = t0();
        for i in 0..3 {
            store
                .enqueue(job(
                    "a",
                    "auto_sync_push",
                    now - TimeDelta::hours(2) + TimeDelta::seconds(i),
                ))
                .await
                .unwrap();
        }
        assert_eq!(claim(&store, 3, 0, now).await.len(), 3);
        // A, three running, has older jobs queued than B, none running.
        for i in 0..5 {
            store
                .enqueue(job(
                    "a",
                    "auto_sync_push",
                    now - TimeDelta::hours(1) + TimeDelta::seconds(i),
                ))
                .await
                .unwrap();
        }
        for i in 0..2 {
            store
                .enqueue(job("b", "auto_sync_push", now - TimeDelta::seconds(10 - i)))
                .await
                .unwrap();
        }
        assert_eq!(dealers_of(&claim(&store, 2, 0, now).await), ["b", "b"]);
        // B has nothing more queued: A's oldest comes next.
        assert_eq!(dealers_of(&claim(&store, 1, 0, now).await), ["a"]);
    }
);

store_test!(
    interactive_kinds_go_before_bulk_ones_of_a_dealer,
    |db| async move {
        let store = db.store().await;
        let now = t0();
        let reconcile = store
            .enqueue(job("a", "reconcile", now - TimeDelta::hours(1)))
            .await
            .unwrap();
        let push = store
            .enqueue(job("a", "auto_sync_push", now))
            .await
            .unwrap();
        let first = claim(&store, 1, 0, now).await;
        assert_eq!(first.iter().map(|j| j.id).collect::<Vec<_>>(), [push.id]);
        let second = claim(&store, 1, 0, now).await;
        assert_eq!(
            second.iter().map(|j| j.id).collect::<Vec<_>>(),
            [reconcile.id]
        );
    }
);
