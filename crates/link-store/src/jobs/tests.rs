//! The plans SQLite and PostgreSQL make for the queue's statements (the
//! claim's are tested beside it, in `claim.rs`).

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use domain::connection::ConnectionId;
use domain::jobs::{Done, JobId, ProcessedCallback};
use domain::tenancy::DealerId;
use uuid::Uuid;

use super::complete_batch;
use super::enqueue::QUEUED_WITH_KEY;
use crate::db::DbConnection;
use crate::scratch_postgres::{plan, ScratchSchema};

/// An edit finds the queued job it coalesces into by one probe of the
/// partial index of queued keys, planned without any value bound.
#[test]
fn the_queued_job_of_a_key_is_one_probe_of_the_queued_keys_index() {
    let mut sqlite = crate::scratch_sqlite::open();
    let steps = crate::scratch_sqlite::plan(&mut sqlite, QUEUED_WITH_KEY);
    assert_eq!(
        steps,
        ["SEARCH jobs USING INDEX jobs_queued_unique_key (dealer=? AND unique_key=?)"]
    );
    // With the state a `?` the plan made before any value is bound
    // cannot use the index: SQLite plans again for each value bound.
    let bound = QUEUED_WITH_KEY.replace("'queued'", "?");
    let steps = crate::scratch_sqlite::plan(&mut sqlite, &bound);
    assert!(
        !steps.iter().any(|s| s.contains("jobs_queued_unique_key")),
        "{steps:?}"
    );
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A burst of callbacks on a new database: `webhook_inbox` was analyzed
/// empty and holds thousands of rows when their jobs end. Recording a batch
/// of ends marks each callback by its key, not by reading the table.
#[test]
fn a_batch_of_ends_marks_its_callbacks_by_key_in_an_inbox_grown_past_its_statistics() {
    let (_schema, mut pg) = ScratchSchema::open();
    let connection = Uuid::new_v4();
    let jobs: Vec<Uuid> = (0..9).map(|_| Uuid::new_v4()).collect();
    let job_list = jobs
        .iter()
        .map(|j| format!("'{j}'"))
        .collect::<Vec<_>>()
        .join(", ");
    pg.batch_execute(&format!(
        "INSERT INTO connections (id, dealer, name, name_key, provider, endpoint, auth_mode, \
         auto_sync, status, version, created_at, updated_at) VALUES ('{connection}', 'd1', 'n', \
         'n', 'stages', 'http://127.0.0.1:1', 'basic', true, 'active', 1, now(), now()); \
         ANALYZE webhook_inbox; \
         INSERT INTO webhook_inbox (connection_id, dealer, event_id, payload, received_at) \
         SELECT '{connection}', 'd1', 'e' || g, '{{}}', now() FROM generate_series(1, 3000) AS g; \
         INSERT INTO jobs (id, dealer, kind, payload, state, attempts, max_attempts, run_at, \
         progress_done, cancel_requested, created_by, created_at, lease_owner, \
         lease_expires_at, started_at) SELECT id, 'd1', 'stages_callback', '{{}}', 'running', \
         1, 8, now(), 0, FALSE, 'test', now(), 'w', now() + interval '1 minute', now() \
         FROM unnest(ARRAY[{job_list}]) AS id"
    ))
    .unwrap();
    // The batch's mark as `mark_all_processed` writes it, left to itself.
    let events = (1..=jobs.len())
        .map(|n| format!("'e{n}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let each = |value: &str| vec![format!("'{value}'"); jobs.len()].join(", ");
    pg.batch_execute(
        "PREPARE mark(timestamp, text[], text[], text[], text[]) AS \
         UPDATE webhook_inbox SET outcome = v.outcome, processed_at = $1 \
         FROM unnest($2, $3, $4, $5) AS v(dealer, connection_id, event_id, outcome) \
         WHERE webhook_inbox.dealer = v.dealer \
         AND webhook_inbox.connection_id = v.connection_id \
         AND webhook_inbox.event_id = v.event_id",
    )
    .unwrap();
    let mark_alone = plan(
        &mut pg,
        &format!(
            "EXECUTE mark(now()::timestamp, ARRAY[{}], ARRAY[{}], ARRAY[{events}], ARRAY[{}])",
            each("d1"),
            each(&connection.to_string()),
            each("x")
        ),
    );
    assert!(
        mark_alone.iter().any(|l| l.contains("Seq Scan")),
        "PostgreSQL no longer reads the table for this mark, so this test shows nothing: \
         {mark_alone:#?}"
    );

    let mut conn = DbConnection::Postgresql(pg);
    let done: Vec<(JobId, Done)> = jobs
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let mut done = Done::from(serde_json::json!({}));
            done.processed = Some(ProcessedCallback {
                dealer: DealerId("d1".into()),
                connection_id: ConnectionId(connection),
                event_id: format!("e{}", n + 1),
                outcome: "applied: test".into(),
            });
            (JobId(*id), done)
        })
        .collect();
    let now = chrono::Utc::now().naive_utc();
    let DbConnection::Postgresql(pg) = &mut conn else {
        unreachable!("opened on PostgreSQL")
    };
    pg.begin_test_transaction().unwrap();
    let lost = complete_batch(&mut conn, "w", done, now).unwrap_or_else(|_| panic!("ended"));
    assert!(lost.is_empty(), "{lost:?}");
    let DbConnection::Postgresql(pg) = &mut conn else {
        unreachable!("opened on PostgreSQL")
    };
    // This transaction's own counts: rows read by scans and through indexes.
    let read = diesel::sql_query(
        "SELECT seq_tup_read + COALESCE(idx_tup_fetch, 0) AS n FROM pg_stat_xact_user_tables \
         WHERE relid = 'webhook_inbox'::regclass",
    )
    .get_result::<Count>(pg)
    .unwrap()
    .n;
    assert_eq!(
        read,
        jobs.len() as i64,
        "the batch read more of the inbox than its rows"
    );
    let marked = diesel::sql_query(
        "SELECT COUNT(*) AS n FROM webhook_inbox WHERE outcome = 'applied: test'",
    )
    .get_result::<Count>(pg)
    .unwrap()
    .n;
    assert_eq!(marked, jobs.len() as i64);
}
