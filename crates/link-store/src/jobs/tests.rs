//! The plans the databases make for the queue's statements (the claim's
//! are tested beside it, in `claim.rs`).

use super::enqueue::QUEUED_WITH_KEY;

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

/// A batch of successes on PostgreSQL runs the kept plan of its `unnest`
/// statement from the first batch on: planned for the values bound, each
/// run was planned again.
#[test]
fn a_batch_of_successes_is_planned_once_on_postgresql() {
    use chrono::Utc;
    use diesel::prelude::*;
    use diesel::sql_types::BigInt;
    use domain::connection::ConnectionId;
    use domain::jobs::{Done, JobId};
    use domain::link::{LinkId, LinkKind};
    use domain::link_sync::jobs::{AutoSyncPush, StagesRecord};
    use domain::tenancy::DealerId;

    use super::{complete_batch, JobRow, RUNNING};
    use crate::connections::to_db_time;
    use crate::db::{write_transaction, DbConnection};
    use crate::schema::jobs;

    let (_schema, pg) = crate::scratch_postgres::ScratchSchema::open();
    let mut conn = DbConnection::Postgresql(pg);
    let now = to_db_time(Utc::now());
    for round in 0..3 {
        // Pushes of three links, built by their kind's definition.
        let rows: Vec<JobRow> = (0..3)
            .map(|n| {
                let record = StagesRecord {
                    connection_id: ConnectionId::new(),
                    kind: LinkKind::Site,
                    external_id: format!("{round}-{n}"),
                };
                let push = AutoSyncPush::new(LinkId::new(), record);
                let mut row = JobRow::new(push.new_job(&DealerId("d1".into()), Utc::now()), now);
                row.state = RUNNING.to_owned();
                row.lease_owner = Some("w1".into());
                row
            })
            .collect();
        let ids: Vec<JobId> = rows.iter().map(|r| JobId(r.id.parse().unwrap())).collect();
        crate::db::insert_rows!(&mut conn, jobs, &rows).unwrap();
        let done = ids
            .iter()
            .map(|id| (*id, Done::from(serde_json::json!({ "round": round }))))
            .collect();
        let lost =
            write_transaction(&mut conn, |conn| complete_batch(conn, "w1", done, now)).unwrap();
        assert!(lost.is_empty(), "round {round}: {lost:?}");
    }
    let DbConnection::Postgresql(pg) = &mut conn else {
        unreachable!("opened on PostgreSQL")
    };
    let plans: (i64, i64) = diesel::dsl::sql::<(BigInt, BigInt)>(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements \
         WHERE statement LIKE 'UPDATE jobs SET state = $1, summary = v.summary%'",
    )
    .get_result(pg)
    .unwrap();
    assert_eq!(
        plans,
        (3, 0),
        "(generic, custom) plans of the batch's UPDATE"
    );
    let succeeded: i64 = jobs::table
        .filter(jobs::state.eq("succeeded"))
        .count()
        .get_result(pg)
        .unwrap();
    assert_eq!(succeeded, 9);
}
