//! For unit tests that need SQLite's own planner: a migrated database in
//! memory, and the plan SQLite makes for a statement.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;

/// A migrated database in memory, with the statistics migrations leave on
/// a new database: taken of empty tables, so the planner believes every
/// table empty however many rows a test inserts afterwards (as it did in
/// the first seconds of a service's life).
pub(crate) fn open() -> SqliteConnection {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    crate::migrate::migrate_sqlite(&mut conn).unwrap();
    conn.batch_execute("ANALYZE").unwrap();
    conn
}

#[derive(QueryableByName)]
struct PlanStep {
    #[diesel(sql_type = Text)]
    detail: String,
}

/// The steps of `EXPLAIN QUERY PLAN {statement}`; its `?`s stay unbound.
pub(crate) fn plan(conn: &mut SqliteConnection, statement: &str) -> Vec<String> {
    diesel::sql_query(format!("EXPLAIN QUERY PLAN {statement}"))
        .load::<PlanStep>(conn)
        .unwrap()
        .into_iter()
        .map(|s| s.detail)
        .collect()
}
