//! The claim's fairness, and the plans of its reads on both backends.

use super::*;

fn head(dealer: &str, running: i64, minute: u32) -> Head {
    Head {
        dealer: dealer.into(),
        head_at: chrono::NaiveDate::from_ymd_opt(2026, 12, 3)
            .and_then(|d| d.and_hms_opt(8, minute, 0))
            .unwrap(),
        running,
    }
}

#[test]
fn slots_go_to_the_dealer_with_the_fewest_jobs_running() {
    // A has 6 running and an older head; B has none: B gets slots until
    // it has as many as A, then they alternate.
    let s = shares(&[head("a", 6, 0), head("b", 0, 5)], 8, 0);
    assert_eq!(s, [("a".to_owned(), 2), ("b".to_owned(), 14)]);
    // Equal load: the older head first.
    let s = shares(&[head("a", 0, 0), head("b", 0, 5)], 1, 0);
    assert_eq!(s, [("a".to_owned(), 2)]);
}

#[test]
fn a_dealer_at_its_cap_gets_no_slot() {
    let s = shares(&[head("a", 4, 0), head("b", 3, 5)], 8, 4);
    assert_eq!(s, [("b".to_owned(), 2)]);
    assert!(shares(&[head("a", 4, 0)], 8, 4).is_empty());
}

/// A reconcile that ran when the queue was new: the statistics taken
/// after it say `jobs` holds one row.
const ONE_FINISHED_JOB: &str = "INSERT INTO jobs (id, dealer, kind, payload, state, \
     attempts, max_attempts, run_at, progress_done, cancel_requested, created_by, \
     created_at, finished_at) VALUES ('r1', 'd1', 'reconcile', '{}', 'succeeded', 1, 8, \
     '2026-12-06 07:00:00', 0, FALSE, 'test', '2026-12-06 07:00:00', \
     '2026-12-06 07:00:01')";

/// Jobs of dealer `d1` as a busy queue holds them: 2,000 queued (one
/// per key, a second apart), 5,000 finished.
const BUSY_QUEUE: &str = "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g \
     WHERE n < 7000) \
     INSERT INTO jobs (id, dealer, kind, payload, state, attempts, max_attempts, run_at, \
     progress_done, unique_key, serial_key, cancel_requested, created_by, created_at) \
     SELECT printf('j%05d', n), 'd1', 'auto_sync_push', '{}', \
     CASE WHEN n > 5000 THEN 'queued' ELSE 'succeeded' END, 0, 8, \
     datetime('2026-12-06 08:00:00', '+' || n || ' seconds'), 0, 'k' || n, 's' || n, \
     FALSE, 'test', '2026-12-06 08:00:00' FROM g";

/// A SQLite database holding [`BUSY_QUEUE`] with the statistics taken
/// after [`ONE_FINISHED_JOB`].
fn busy_queue_analyzed_at_one_row() -> diesel::SqliteConnection {
    use diesel::connection::SimpleConnection;

    let mut sqlite = crate::scratch_sqlite::open();
    sqlite
        .batch_execute(&format!(
            "{ONE_FINISHED_JOB}; ANALYZE jobs; DELETE FROM jobs; {BUSY_QUEUE}"
        ))
        .unwrap();
    sqlite
}

/// SQLite's claim reads a dealer's due jobs in one walk of the queued
/// jobs' index, also while its statistics say the table holds one row:
/// the read diesel wrote (kinds and flag bound) then read every row of
/// the table and sorted the queued ones (4 to 6 ms a claim with 2,000
/// queued, in SQLite's write lock). Callbacks and the other kinds each have
/// an index of their own (see [`Among`]).
#[test]
fn on_sqlite_a_dealers_due_jobs_are_one_walk_of_the_queued_index() {
    let sqlite = busy_queue_analyzed_at_one_row();
    let mut conn = DbConnection::Sqlite(sqlite);
    let oldest = &["j05001", "j05002", "j05003"][..];
    for (kinds, index, expected) in [
        (&["auto_sync_push"][..], "jobs_queued_but_callbacks", oldest),
        (
            &["auto_sync_push", "stages_callback"][..],
            "jobs_queued_by_dealer",
            oldest,
        ),
        // The queue holds no callback.
        (&["stages_callback"][..], "jobs_queued_callbacks", &[][..]),
    ] {
        let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        let sql = QueuedSql::new(&conn, &kinds).unwrap();
        let DbConnection::Sqlite(sqlite) = &mut conn else {
            unreachable!("opened on SQLite")
        };
        let steps = crate::scratch_sqlite::plan(sqlite, &sql.dealer_due);
        assert!(
            steps[0].contains(&format!("USING INDEX {index}"))
                && !steps.iter().any(|s| s.contains("TEMP B-TREE")),
            "{kinds:?}: {steps:#?}"
        );
        // The oldest queued jobs, in order.
        let now = chrono::NaiveDate::from_ymd_opt(2026, 12, 7)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap();
        let due = dealer_due(&mut conn, &sql, "d1", now, 3).unwrap();
        let ids: Vec<&str> = due.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, expected, "{kinds:?}");
    }
}

/// A claim with no room for callbacks finds the other kinds' jobs behind a
/// burst of queued callbacks, and only theirs; with room, the callbacks
/// come first, oldest first; with room for a few, it takes those few and
/// the other kinds' jobs.
#[test]
fn a_claim_finds_the_jobs_behind_a_burst_of_callbacks() {
    use diesel::connection::SimpleConnection;

    let mut sqlite = crate::scratch_sqlite::open();
    sqlite
        .batch_execute(&format!(
            "{BUSY_QUEUE}; UPDATE jobs SET kind = 'stages_callback' \
             WHERE state = 'queued' AND id <> 'j06500'"
        ))
        .unwrap();
    let mut conn = DbConnection::Sqlite(sqlite);
    let now = chrono::NaiveDate::from_ymd_opt(2026, 12, 7)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap();
    let sql_for = |kinds: &[&str]| {
        QueuedSql::new(
            &conn,
            &kinds.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
        )
        .unwrap()
    };
    let (without, with) = (
        sql_for(&["auto_sync_push", "reconcile"]),
        sql_for(&["auto_sync_push", "stages_callback"]),
    );
    let heads_without = heads(&mut conn, &without, now).unwrap();
    assert_eq!(heads_without.len(), 1);
    assert_eq!(
        heads_without[0].head_at.to_string(),
        "2026-12-06 09:48:20",
        "the push's time, not the first callback's"
    );
    let due = dealer_due(&mut conn, &without, "d1", now, 4).unwrap();
    let ids: Vec<&str> = due.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["j06500"]);
    let due = dealer_due(&mut conn, &with, "d1", now, 2).unwrap();
    let got: Vec<(&str, &str)> = due
        .iter()
        .map(|j| (j.id.as_str(), j.kind.as_str()))
        .collect();
    assert_eq!(
        got,
        [("j05001", "stages_callback"), ("j05002", "stages_callback")]
    );

    let claim = Claiming {
        kinds: vec!["auto_sync_push".to_owned(), "stages_callback".to_owned()],
        worker: "w1".to_owned(),
        limit: 10,
        settle_lost_leases: false,
        max_running_per_dealer: 0,
        most_of_kind: vec![("stages_callback".to_owned(), 2)],
    };
    let claimed = claim_batch(&mut conn, &claim, now, now + chrono::Duration::minutes(5)).unwrap();
    let mut ids: Vec<&str> = claimed.iter().map(|j| j.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["j05001", "j05002", "j06500"]);
}

/// SQLite's claim marks its jobs running by key, also while its
/// statistics say `jobs` holds one row: then it planned the update of
/// `id IN (...)` as a scan of the whole table.
#[test]
fn on_sqlite_claimed_jobs_are_marked_running_by_key() {
    let mut sqlite = busy_queue_analyzed_at_one_row();
    let one = format!("{MARK_CLAIMED} WHERE id = ?");
    let steps = crate::scratch_sqlite::plan(&mut sqlite, &one);
    assert!(steps[0].starts_with("SEARCH jobs USING INDEX"), "{steps:?}");
    let many = format!("{MARK_CLAIMED} WHERE id IN (?, ?)");
    let steps = crate::scratch_sqlite::plan(&mut sqlite, &many);
    assert_eq!(steps, ["SCAN jobs"], "what a statement for the batch did");

    let mut conn = DbConnection::Sqlite(sqlite);
    let t = |h| {
        chrono::NaiveDate::from_ymd_opt(2026, 12, 7)
            .and_then(|d| d.and_hms_opt(h, 0, 0))
            .unwrap()
    };
    mark_claimed(&mut conn, &["j05001", "j05002"], "w1", t(1), t(0)).unwrap();
    let running: Vec<JobRow> = jobs::table
        .filter(jobs::state.eq(RUNNING))
        .order(jobs::id)
        .select(JobRow::as_select())
        .load(&mut conn)
        .unwrap();
    let got: Vec<_> = running
        .iter()
        .map(|j| {
            (
                j.id.as_str(),
                j.attempts,
                j.lease_owner.as_deref(),
                j.started_at,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("j05001", 1, Some("w1"), Some(t(0))),
            ("j05002", 1, Some("w1"), Some(t(0)))
        ]
    );
}

#[derive(QueryableByName)]
struct Prepared {
    #[diesel(sql_type = Text)]
    name: String,
}

/// A dealer's due jobs planned without the parameters' values, as a
/// kept plan is, still walk the queued jobs' partial index: the state
/// is written into the statement, where a bound one would rule the
/// index out. Without callbacks among the kinds, the walk is of the index
/// without them.
#[test]
fn a_kept_plan_of_a_dealers_due_jobs_walks_the_queued_jobs_index() {
    use diesel::connection::SimpleConnection;

    let (_schema, mut pg) = crate::scratch_postgres::ScratchSchema::open();
    // Each dealer's jobs are of one kind: d10's pushes, d15's callbacks.
    pg.batch_execute(
        "INSERT INTO jobs (id, dealer, kind, payload, state, attempts, max_attempts, \
         run_at, progress_done, cancel_requested, created_by, created_at) \
         SELECT 'j' || g, 'd' || (g % 100), \
         CASE WHEN g % 10 = 5 THEN 'stages_callback' ELSE 'auto_sync_push' END, '{}', \
         CASE WHEN g % 5 = 0 THEN 'queued' ELSE 'succeeded' END, 0, 5, now(), 0, \
         false, 'test', now() FROM generate_series(1, 20000) AS g; ANALYZE jobs; \
         SET plan_cache_mode = force_generic_plan",
    )
    .unwrap();
    let now = chrono::Utc::now().naive_utc();
    let mut conn = DbConnection::Postgresql(pg);
    for (kinds, index, dealer) in [
        (&["auto_sync_push"][..], "jobs_queued_but_callbacks", "d10"),
        (
            &["auto_sync_push", "stages_callback"][..],
            "jobs_queued_by_dealer",
            "d10",
        ),
        (&["stages_callback"][..], "jobs_queued_callbacks", "d15"),
    ] {
        let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        let lines = conn
            .transaction(|conn| {
                // As the claim does (`claim_batch`).
                conn.batch_execute(
                    "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; \
                     SET LOCAL enable_sort = off",
                )?;
                let sql = QueuedSql::new(conn, &kinds).expect("plain kinds");
                let due = dealer_due(conn, &sql, dealer, now, 4).expect("due jobs");
                assert_eq!(due.len(), 4);
                let DbConnection::Postgresql(pg) = conn else {
                    unreachable!("opened on PostgreSQL")
                };
                let read: Prepared = diesel::sql_query(
                    "SELECT name FROM pg_prepared_statements WHERE statement LIKE '%twin%' \
                     ORDER BY prepare_time DESC LIMIT 1",
                )
                .get_result(pg)?;
                Ok::<_, DieselError>(crate::scratch_postgres::plan(
                    pg,
                    &format!("EXECUTE {}('{dealer}', now()::timestamp, 4)", read.name),
                ))
            })
            .unwrap();
        assert!(
            lines.iter().any(|l| l.contains(index)),
            "{kinds:?}: the kept plan does not walk {index}: {lines:#?}"
        );
    }
}

/// Every statement of a claim runs on the plan its connection made once:
/// in PostgreSQL's `auto` mode the read of a dealer's due jobs was
/// planned again at most claims, and planning it cost more than running
/// it.
#[test]
fn a_claims_statements_keep_one_plan_per_connection() {
    use diesel::connection::SimpleConnection;

    #[derive(QueryableByName, Debug)]
    struct Plans {
        #[diesel(sql_type = Text)]
        statement: String,
        #[diesel(sql_type = BigInt)]
        generic_plans: i64,
        #[diesel(sql_type = BigInt)]
        custom_plans: i64,
    }

    let (_schema, mut pg) = crate::scratch_postgres::ScratchSchema::open();
    pg.batch_execute(
        "INSERT INTO jobs (id, dealer, kind, payload, state, attempts, max_attempts, \
         run_at, progress_done, cancel_requested, created_by, created_at) \
         SELECT 'j' || g, 'd' || (g % 4), 'auto_sync_push', '{}', 'queued', 0, 5, \
         now() - interval '1 minute', 0, false, 'test', now() \
         FROM generate_series(1, 200) AS g; ANALYZE jobs",
    )
    .unwrap();
    let mut conn = DbConnection::Postgresql(pg);
    let claim = Claiming {
        kinds: vec!["auto_sync_push".to_owned()],
        worker: "w1".to_owned(),
        limit: 2,
        settle_lost_leases: false,
        max_running_per_dealer: 0,
        most_of_kind: Vec::new(),
    };
    let now = chrono::Utc::now().naive_utc();
    let lease_until = now + chrono::Duration::minutes(5);
    for _ in 0..7 {
        let claimed = claim_batch(&mut conn, &claim, now, lease_until).unwrap();
        assert_eq!(claimed.len(), 2);
    }
    let DbConnection::Postgresql(pg) = &mut conn else {
        unreachable!("opened on PostgreSQL")
    };
    let plans: Vec<Plans> = diesel::sql_query(
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements \
         WHERE statement LIKE '%jobs%'",
    )
    .load(pg)
    .unwrap();
    // The walk over dealers, the read of a dealer's due jobs, the mark.
    assert!(plans.len() >= 3, "{plans:#?}");
    for p in &plans {
        assert_eq!(p.custom_plans, 0, "planned at a run: {}", p.statement);
        assert!(p.generic_plans >= 7, "{}: {p:#?}", p.statement);
    }
}
