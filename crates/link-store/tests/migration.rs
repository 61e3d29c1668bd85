//! The automatic migration of a connection (S20) as the store keeps it: queued
//! once however many replicas arm it at once, again only after it failed, never
//! when turned off; on SQLite and PostgreSQL.

#[macro_use]
mod common;

use chrono::Utc;
use common::*;
use domain::connection::{ConnectionChanges, ConnectionId, ProviderKind};
use domain::jobs::{JobId, JobState, NewJob};
use domain::store::{ConnectionStore, JobStore};

/// A reconcile of `cid` as the migration queues it (the key of a plain reconcile).
fn reconcile(dealer_id: &str, cid: ConnectionId) -> NewJob {
    NewJob {
        id: JobId::new(),
        dealer: dealer(dealer_id),
        kind: "reconcile".into(),
        payload: serde_json::json!({"connection_id": cid, "dry_run": false}),
        max_attempts: 5,
        run_at: Utc::now(),
        unique_key: Some(format!("reconcile:{cid}:false")),
        serial_key: None,
        created_by: "admin".into(),
    }
}

store_test!(
    a_migration_is_queued_once_and_again_only_after_it_failed,
    |db| async move {
        let store = db.store().await;
        let other = db.open().await;
        let d = dealer("d1");
        let c = store
            .insert_connection(new_connection("d1", "Stages", ProviderKind::Stages))
            .await
            .unwrap();
        assert!(c.migrate_on_connect);
        assert_eq!(c.migration, None);

        // Eight arms at once through two stores (two replicas): one job.
        let mut tasks = Vec::new();
        for i in 0..8 {
            let s = if i % 2 == 0 {
                store.clone()
            } else {
                other.clone()
            };
            let d = d.clone();
            tasks.push(tokio::spawn(async move {
                s.start_migration(&d, c.id, reconcile("d1", c.id)).await
            }));
        }
        let mut queued = Vec::new();
        for t in tasks {
            if let Some(job) = t.await.unwrap().unwrap() {
                queued.push(job);
            }
        }
        assert_eq!(queued.len(), 1, "{queued:?}");
        assert_eq!(db.count("jobs"), 1);
        let read = store.connection(&d, c.id).await.unwrap();
        let m = read.migration.expect("the migration is recorded");
        assert_eq!((m.job_id, m.state), (queued[0].id, JobState::Queued));
        assert_eq!(
            read.version, c.version,
            "arming is no edit of the connection"
        );
        // Listed with it too.
        let listed = store
            .list_connections(&d, None, first_page(10))
            .await
            .unwrap();
        assert_eq!(listed.items[0].migration, read.migration);

        // Armed again while it is queued (or done): nothing.
        assert!(store
            .start_migration(&d, c.id, reconcile("d1", c.id))
            .await
            .unwrap()
            .is_none());
        db.execute("UPDATE jobs SET state = 'succeeded'");
        assert!(store
            .start_migration(&d, c.id, reconcile("d1", c.id))
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            store
                .connection(&d, c.id)
                .await
                .unwrap()
                .migration
                .unwrap()
                .state,
            JobState::Succeeded
        );

        // After a failure it may be queued again, once.
        db.execute("UPDATE jobs SET state = 'dead'");
        let again = store
            .start_migration(&d, c.id, reconcile("d1", c.id))
            .await
            .unwrap()
            .expect("queued again after it died");
        assert_ne!(again.id, queued[0].id);
        assert_eq!(
            store
                .connection(&d, c.id)
                .await
                .unwrap()
                .migration
                .unwrap()
                .job_id,
            again.id
        );

        // Another dealer cannot arm it.
        assert!(store
            .start_migration(&dealer("d2"), c.id, reconcile("d2", c.id))
            .await
            .is_err());
    }
);

store_test!(a_migration_that_is_off_queues_nothing, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let mut new = new_connection("d1", "Stages", ProviderKind::Stages);
    new.migrate_on_connect = false;
    let c = store.insert_connection(new).await.unwrap();
    assert!(!c.migrate_on_connect);
    assert!(store
        .start_migration(&d, c.id, reconcile("d1", c.id))
        .await
        .unwrap()
        .is_none());
    assert_eq!(db.count("jobs"), 0);

    // Turned on by a change: the next arm queues it.
    let on = store
        .update_connection(
            &d,
            c.id,
            ConnectionChanges {
                migrate_on_connect: Some(true),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert!(on.migrate_on_connect);
    assert!(store
        .start_migration(&d, c.id, reconcile("d1", c.id))
        .await
        .unwrap()
        .is_some());
});

store_test!(
    a_migration_joins_a_reconcile_already_queued,
    |db| async move {
        let store = db.store().await;
        let d = dealer("d1");
        let c = store
            .insert_connection(new_connection("d1", "Stages", ProviderKind::Stages))
            .await
            .unwrap();
        let asked = store.enqueue(reconcile("d1", c.id)).await.unwrap();
        let migration = store
            .start_migration(&d, c.id, reconcile("d1", c.id))
            .await
            .unwrap()
            .expect("the queued reconcile is the migration");
        assert_eq!(migration.id, asked.id);
        assert_eq!(db.count("jobs"), 1);
        assert_eq!(
            store
                .connection(&d, c.id)
                .await
                .unwrap()
                .migration
                .unwrap()
                .job_id,
            asked.id
        );
    }
);
