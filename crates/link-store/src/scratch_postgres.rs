//! For unit tests that need PostgreSQL's own planner: a migrated schema of
//! their own in `TEST_DATABASE_URL`, dropped when the test ends (also when it
//! fails), and the plan PostgreSQL makes for a statement.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;

/// A schema made for one test; dropped with this value.
pub(crate) struct ScratchSchema {
    admin: PgConnection,
    name: String,
    url: String,
}

impl ScratchSchema {
    /// Creates and migrates the schema, and a connection whose search path
    /// is that schema.
    pub(crate) fn open() -> (Self, PgConnection) {
        let base = std::env::var("TEST_DATABASE_URL")
            .expect("set TEST_DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/test");
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&base).expect("connect to TEST_DATABASE_URL");
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
        let mut pg = PgConnection::establish(&url).unwrap();
        crate::migrate::migrate_postgres(&mut pg).unwrap();
        (Self { admin, name, url }, pg)
    }

    /// The URL of a connection whose search path is this schema.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name));
    }
}

/// Inserts Stages connection `c1` of dealer `d1`, for links that need one.
pub(crate) const CONNECTION_C1: &str = "INSERT INTO connections (id, dealer, name, name_key, \
     provider, endpoint, auth_mode, auto_sync, status, version, created_at, updated_at) VALUES \
     ('c1', 'd1', 'n', 'n', 'stages', 'http://127.0.0.1:1', 'basic', true, 'active', 1, \
     now(), now())";

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

/// The lines of `EXPLAIN {statement}`.
pub(crate) fn plan(pg: &mut PgConnection, statement: &str) -> Vec<String> {
    diesel::sql_query(format!("EXPLAIN {statement}"))
        .load::<PlanLine>(pg)
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect()
}
