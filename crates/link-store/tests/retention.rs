//! The retention suite (B15), on SQLite and on PostgreSQL: one purge call
//! deletes at most its batch of rows older than the horizon, and never a row
//! something still reads (unfinished jobs, jobs a batch, an import or a
//! connection's migration names, events a pending delivery will send, the
//! items of an import still running); the table figures count what is left.

#[macro_use]
mod common;

use chrono::{TimeDelta, Utc};
use common::*;
use domain::connection::ProviderKind;
use domain::store::{ConnectionStore, History, RetentionStore};

/// A stored time `days` ago, as both backends read it in SQL.
fn ago(days: i64) -> String {
    (Utc::now() - TimeDelta::days(days))
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

fn horizon() -> chrono::DateTime<Utc> {
    Utc::now() - TimeDelta::days(5)
}

fn add_audit(db: &TestDb, id: &str, days: i64) {
    db.execute(&format!(
        "INSERT INTO audit_log (id, dealer, at, actor, action, kind) \
         VALUES ('{id}', 'd1', '{}', 'alice', 'link.created', 'site')",
        ago(days)
    ));
}

fn add_event(db: &TestDb, id: &str, days: i64) {
    db.execute(&format!(
        "INSERT INTO events (id, dealer, event_type, subject_kind, subject_id, data, created_at) \
         VALUES ('{id}', 'd1', 'billing.customer.created', 'customer', 'c1', '{{}}', '{}')",
        ago(days)
    ));
}

fn add_job(db: &TestDb, id: &str, kind: &str, state: &str, created: i64, ended: Option<i64>) {
    let finished = ended.map_or("NULL".to_owned(), |d| format!("'{}'", ago(d)));
    db.execute(&format!(
        "INSERT INTO jobs (id, dealer, kind, payload, state, attempts, max_attempts, run_at, \
         progress_done, cancel_requested, created_by, created_at, finished_at) \
         VALUES ('{id}', 'd1', '{kind}', '{{}}', '{state}', 1, 5, '{c}', 0, false, 'alice', '{c}', {finished})",
        c = ago(created)
    ));
}

fn add_import(db: &TestDb, id: &str, ended: Option<i64>, items: usize) {
    let finished = ended.map_or("NULL".to_owned(), |d| format!("'{}'", ago(d)));
    db.execute(&format!(
        "INSERT INTO imports (id, dealer, connection_id, kind, filters, options, seen, imported, \
         already_imported, filtered_out, failed, created_by, created_at, updated_at, finished_at) \
         VALUES ('{id}', 'd1', 'c1', 'customers', '{{}}', '{{}}', 0, 0, 0, 0, 0, 'alice', '{c}', '{c}', {finished})",
        c = ago(40)
    ));
    for seq in 0..items {
        db.execute(&format!(
            "INSERT INTO import_items (import_id, seq, external_id, outcome, created_at) \
             VALUES ('{id}', {seq}, 'x{seq}', 'imported', '{}')",
            ago(40)
        ));
    }
}

store_test!(
    a_purge_deletes_at_most_its_batch_and_nothing_younger,
    |db| async move {
        let store = db.store().await;
        for n in 0..12 {
            add_audit(&db, &format!("old-{n:02}"), 10);
        }
        for n in 0..3 {
            add_audit(&db, &format!("young-{n}"), 4);
        }
        let mut rounds = Vec::new();
        loop {
            let n = store
                .purge_history(History::Audit, horizon(), 5)
                .await
                .unwrap();
            rounds.push(n);
            if n < 5 {
                break;
            }
        }
        assert_eq!(rounds, [5, 5, 2]);
        assert_eq!(db.count("audit_log"), 3);
        assert_eq!(db.count("audit_log WHERE id LIKE 'young-%'"), 3);
        // Nothing older is left: another round finds nothing.
        assert_eq!(
            store.purge_history(History::Audit, horizon(), 5).await,
            Ok(0)
        );
    }
);

store_test!(jobs_something_still_reads_stay, |db| async move {
    let store = db.store().await;
    let connection = store
        .insert_connection(new_connection("d1", "Stages", ProviderKind::Stages))
        .await
        .unwrap();
    add_job(&db, "ok-1", "reconcile", "succeeded", 20, Some(20));
    add_job(&db, "ok-2", "reconcile", "succeeded", 20, Some(10));
    add_job(&db, "stopped", "reconcile", "cancelled", 20, Some(10));
    add_job(&db, "dead", "reconcile", "dead", 20, Some(10));
    add_job(&db, "failed", "reconcile", "failed", 20, Some(10));
    add_job(&db, "young", "reconcile", "succeeded", 20, Some(1));
    add_job(&db, "waiting", "reconcile", "queued", 20, None);
    add_job(&db, "busy", "reconcile", "running", 20, None);
    add_job(&db, "of-batch", "batch", "succeeded", 20, Some(10));
    add_job(&db, "of-import", "adc_import", "dead", 20, Some(10));
    // A connection parses its migration job's id.
    let migration = uuid::Uuid::now_v7().to_string();
    add_job(&db, &migration, "reconcile", "succeeded", 20, Some(10));
    db.execute(&format!(
        "INSERT INTO batches (id, dealer, operation, dry_run, total, succeeded, failed, \
         created_by, created_at) VALUES ('of-batch', 'd1', 'push', false, 1, 1, 0, 'alice', '{}')",
        ago(20)
    ));
    add_import(&db, "of-import", Some(10), 0);
    db.execute(&format!(
        "UPDATE connections SET migration_job_id = '{migration}' WHERE id = '{}'",
        connection.id.0
    ));
    assert_eq!(
        store
            .purge_history(History::FinishedJobs, horizon(), 500)
            .await,
        Ok(3)
    );
    assert_eq!(
        store.purge_history(History::DeadJobs, horizon(), 500).await,
        Ok(2)
    );
    let mut left = Vec::new();
    for id in [
        "young",
        "waiting",
        "busy",
        "of-batch",
        "of-import",
        &migration,
    ] {
        left.push((id, db.count(&format!("jobs WHERE id = '{id}'"))));
    }
    assert!(left.iter().all(|(_, n)| *n == 1), "{left:?}");
    assert_eq!(db.count("jobs"), 6);
    // The connection still reads its migration's state.
    let read = store.connection(&dealer("d1"), connection.id).await;
    assert!(read.is_ok(), "{read:?}");
});

store_test!(import_items_go_once_their_import_ended, |db| async move {
    let store = db.store().await;
    add_import(&db, "a", Some(12), 7);
    add_import(&db, "b", Some(11), 4);
    add_import(&db, "running", None, 3);
    add_import(&db, "recent", Some(1), 2);
    let mut rounds = Vec::new();
    loop {
        let n = store
            .purge_history(History::ImportItems, horizon(), 5)
            .await
            .unwrap();
        rounds.push(n);
        if n < 5 {
            break;
        }
    }
    // A batch spans imports: 5 of a, then a's last 2 and 3 of b, then b's last.
    assert_eq!(rounds, [5, 5, 1]);
    assert_eq!(db.count("import_items WHERE import_id = 'running'"), 3);
    assert_eq!(db.count("import_items WHERE import_id = 'recent'"), 2);
    assert_eq!(db.count("import_items"), 5);
    assert_eq!(db.count("imports"), 4, "the imports themselves stay");
});

store_test!(events_a_pending_delivery_sends_stay, |db| async move {
    let store = db.store().await;
    add_event(&db, "e-20", 20);
    add_event(&db, "e-15", 15);
    add_event(&db, "e-1", 1);
    add_job(&db, "delivery", "webhook_delivery", "queued", 15, None);
    assert_eq!(
        store.purge_history(History::Events, horizon(), 500).await,
        Ok(1)
    );
    assert_eq!(db.count("events WHERE id = 'e-15'"), 1);
    db.execute(&format!(
        "UPDATE jobs SET state = 'succeeded', finished_at = '{}' WHERE id = 'delivery'",
        ago(0)
    ));
    assert_eq!(
        store.purge_history(History::Events, horizon(), 500).await,
        Ok(1)
    );
    assert_eq!(db.count("events"), 1);
    let figures = store.table_figures().await.unwrap();
    let events = figures.iter().find(|f| f.table == "events").unwrap();
    assert_eq!(events.rows, 1);
    let age = Utc::now() - events.oldest.unwrap();
    assert!(
        age > TimeDelta::hours(23) && age < TimeDelta::hours(25),
        "{age}"
    );
    let links = figures.iter().find(|f| f.table == "links").unwrap();
    assert_eq!((links.rows, links.oldest), (0, None));
    let tables: Vec<&str> = figures.iter().map(|f| f.table).collect();
    assert!(
        tables.contains(&"imports") && tables.contains(&"batches"),
        "{tables:?}"
    );
});

store_test!(old_callbacks_and_idempotency_keys_go, |db| async move {
    let store = db.store().await;
    let connection = store
        .insert_connection(new_connection("d1", "Alarm", ProviderKind::AlarmCom))
        .await
        .unwrap();
    for (id, days) in [("cb-old", 8), ("cb-new", 6)] {
        db.execute(&format!(
            "INSERT INTO callback_log (id, dealer, connection_id, source, outcome, received_at) \
             VALUES ('{id}', 'd1', '{}', 'alarmnet', 'accepted', '{}')",
            connection.id.0,
            ago(days)
        ));
    }
    for (user, key, days) in [
        ("u1", "k1", 8),
        ("u1", "k2", 8),
        ("u2", "k1", 8),
        ("u1", "k3", 1),
    ] {
        db.execute(&format!(
            "INSERT INTO idempotency_keys (dealer, user_id, idem_key, fingerprint, state, created_at, updated_at) \
             VALUES ('d1', '{user}', '{key}', 'fp', 'done', '{t}', '{t}')",
            t = ago(days)
        ));
    }
    let week = Utc::now() - TimeDelta::days(7);
    assert_eq!(
        store.purge_history(History::CallbackLog, week, 500).await,
        Ok(1)
    );
    assert_eq!(db.count("callback_log WHERE id = 'cb-new'"), 1);
    assert_eq!(
        store.purge_history(History::IdempotencyKeys, week, 2).await,
        Ok(2)
    );
    assert_eq!(
        store.purge_history(History::IdempotencyKeys, week, 2).await,
        Ok(1)
    );
    assert_eq!(db.count("idempotency_keys"), 1);
    assert_eq!(db.count("idempotency_keys WHERE idem_key = 'k3'"), 1);
});

fn add_batch(db: &TestDb, id: &str, ended: Option<i64>, items: usize) {
    let finished = ended.map_or("NULL".to_owned(), |d| format!("'{}'", ago(d)));
    db.execute(&format!(
        "INSERT INTO batches (id, dealer, operation, dry_run, total, succeeded, failed, \
         created_by, created_at, finished_at) \
         VALUES ('{id}', 'd1', 'sync', false, {items}, {items}, 0, 'alice', '{}', {finished})",
        ago(40)
    ));
    for position in 0..items {
        db.execute(&format!(
            "INSERT INTO batch_items (batch_id, position, subject, input, state) \
             VALUES ('{id}', {position}, 's{position}', '{{}}', 'succeeded')"
        ));
    }
}

store_test!(
    ended_runs_go_with_their_items_and_job_and_imported_records_stay,
    |db| async move {
        let store = db.store().await;
        add_batch(&db, "batch-old", Some(12), 6);
        add_job(&db, "batch-old", "batch", "succeeded", 40, Some(12));
        add_batch(&db, "batch-running", None, 2);
        add_job(&db, "batch-running", "batch", "running", 1, None);
        add_batch(&db, "batch-recent", Some(1), 1);
        add_import(&db, "import-old", Some(11), 3);
        add_job(&db, "import-old", "import", "succeeded", 40, Some(11));
        add_import(&db, "import-running", None, 2);
        add_import(&db, "import-recent", Some(2), 1);
        let connection = store
            .insert_connection(new_connection("d1", "Alarm", ProviderKind::AlarmCom))
            .await
            .unwrap();
        db.execute(&format!(
            "INSERT INTO imported_records (connection_id, kind, external_id, dealer, billing_id, \
             import_id, imported_at) VALUES ('{}', 'customer', 'x0', 'd1', 'b0', 'import-old', '{}')",
            connection.id.0,
            ago(11)
        ));
        let mut rounds = Vec::new();
        loop {
            let n = store
                .purge_history(History::Runs, horizon(), 4)
                .await
                .unwrap();
            rounds.push(n);
            if n < 4 {
                break;
            }
        }
        // Items first, four rows a call: the import's 3 and one of the
        // batch's, then 4 more of the batch's; then its last one and the two
        // runs, now empty.
        assert_eq!(rounds, [3 + 1, 4, 1 + 2]);
        assert_eq!(db.count("batches"), 2);
        assert_eq!(db.count("imports"), 2);
        assert_eq!(
            db.count("batch_items"),
            3,
            "running and recent batches keep theirs"
        );
        assert_eq!(db.count("import_items"), 3);
        assert_eq!(db.count("jobs WHERE id IN ('batch-old', 'import-old')"), 0);
        assert_eq!(db.count("jobs WHERE id = 'batch-running'"), 1);
        assert_eq!(
            db.count("imported_records WHERE import_id = 'import-old'"),
            1,
            "what an import matched outlives the run"
        );
        assert_eq!(
            store.purge_history(History::Runs, horizon(), 4).await,
            Ok(0)
        );
    }
);
