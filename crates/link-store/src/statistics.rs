//! The query planner's statistics (issue 12's reads, B15): taken after
//! migrations, after bulk jobs, as the job queue fills and drains, and for
//! every other table as it changes, so plans never wait for autovacuum.
//!
//! On PostgreSQL they also decide how long a kept plan lives: a prepared
//! statement's generic plan is dropped when ANALYZE runs on one of its
//! tables, and made again from the new figures (see `db::PostgresSetup`).

use diesel::sql_types::{Bool, Text};
use diesel::{QueryableByName, RunQueryDsl};
use domain::store::StoreError;

use crate::db::{DbConnection, Fail};
use crate::Store;

/// The tables changed by more than autovacuum's default rule (50 rows and a
/// tenth of the table as ANALYZE last counted it) since it last looked,
/// quoted for a statement; from 10,000 rows on, by more than the whole
/// table. A plan changes shape when a table grows by a multiple (from
/// nearly empty to thousands of rows), not by a tenth; an Alarm.com import
/// growing four tables to 90,000 rows had them analyzed at every look, a
/// tenth of the machine's CPU while it ran (`perf record -a`), though the
/// import analyzes them itself each time they quadruple and at its end.
/// `jobs` follows its queued rows instead
/// ([`Store::refresh_job_statistics`]): every push changes rows of it, so
/// under load this rule would analyze it at nearly every look.
const STALE_TABLES: &str = "SELECT quote_ident(s.relname) AS relname \
     FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
     WHERE s.schemaname = current_schema() AND s.relname <> 'jobs' \
     AND s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0) \
     AND (c.reltuples < 10000 OR s.n_mod_since_analyze > c.reltuples) \
     ORDER BY s.relname";

#[derive(QueryableByName)]
struct Table {
    #[diesel(sql_type = Text)]
    relname: String,
}

impl Store {
    /// Refreshes the query planner's statistics of `tables` (`ANALYZE`):
    /// after migrations, and after a job that wrote many rows (a reconcile,
    /// an import), so plans do not depend on autovacuum.
    pub async fn refresh_statistics(
        &self,
        tables: &'static [&'static str],
    ) -> Result<(), StoreError> {
        self.run(move |conn, _| analyze(conn, tables)).await
    }

    /// As [`Store::refresh_statistics`], from a smaller sample on
    /// PostgreSQL: for a run's refreshes while it grows its tables, which
    /// are there for the row counts (a plan made for an empty table), not
    /// for the spread of values. ANALYZE reads 300 rows per unit of
    /// `default_statistics_target`: at the default 100, analyzing a 90,000-row
    /// `import_items` took 105-120 ms, at [`SAMPLED_STATISTICS_TARGET`]
    /// 8-12 ms; ANALYZE was a sixth of PostgreSQL's CPU in four seconds of
    /// a 90,000-customer import (`perf record -a`). SQLite samples anyway.
    pub async fn refresh_statistics_sampled(
        &self,
        tables: &'static [&'static str],
    ) -> Result<(), StoreError> {
        self.run(move |conn, _| analyze_sampled(conn, tables)).await
    }

    /// Refreshes the statistics of the job queue alone: its queued rows
    /// come and go by the thousand in a burst, and a plan made for the
    /// queue as ANALYZE last saw it can be far off (B15): PostgreSQL walked
    /// the dealers by sorting every queued row, SQLite read the whole table
    /// where it believed it held one row. SQLite samples, so its write lock
    /// is held for a moment.
    pub async fn refresh_job_statistics(&self) -> Result<(), StoreError> {
        self.run(|conn, _| analyze(conn, &["jobs"])).await
    }

    /// Analyzes the tables that changed enough since they were last analyzed
    /// (by [`STALE_TABLES`]' rule) and answers their names; call it every few
    /// seconds. PostgreSQL only: there the store's connections keep generic
    /// plans, and a plan made while a table was nearly empty read the whole
    /// table once it had grown (a sequential scan of 20,000 links for a
    /// lookup by key) until ANALYZE dropped it. SQLite plans each statement
    /// when it is prepared, from heuristics or `sqlite_stat1`, and keeps no
    /// change counts: nothing is analyzed there.
    pub async fn refresh_stale_statistics(&self) -> Result<Vec<String>, StoreError> {
        self.run(|conn, _| analyze_stale(conn)).await
    }
}

/// The statistics target of [`Store::refresh_statistics_sampled`]: a
/// sample of 3,000 rows a table.
const SAMPLED_STATISTICS_TARGET: u32 = 10;

/// ANALYZEs `tables`; on SQLite from a sample per index, not a full scan
/// of every table.
///
/// An empty table is left alone on PostgreSQL. Never analyzed, it is
/// planned as at least ten pages, so a lookup by key walks its index; once
/// analyzed empty it is planned as empty, and the plan a connection keeps
/// reads the whole table as it fills, until the next ANALYZE: while a new
/// database took its first 2,000 billing sites, their reads scanned the
/// whole of `billing_sites` 1,750 times, 1.7 million rows
/// (`pg_stat_user_tables`, crosslink-bench). The stale-statistics
/// refresher analyzes such a table once it holds rows.
fn analyze(conn: &mut DbConnection, tables: &[&str]) -> Result<(), Fail> {
    if let DbConnection::Sqlite(_) = conn {
        diesel::sql_query("PRAGMA analysis_limit = 1000").execute(conn)?;
    }
    for table in tables {
        if let DbConnection::Postgresql(pg) = conn {
            let has_rows = diesel::select(diesel::dsl::sql::<Bool>(&format!(
                "EXISTS (SELECT 1 FROM {table})"
            )))
            .get_result::<bool>(pg)?;
            if !has_rows {
                continue;
            }
        }
        diesel::sql_query(format!("ANALYZE {table}")).execute(conn)?;
    }
    Ok(())
}

/// [`analyze`], on PostgreSQL with [`SAMPLED_STATISTICS_TARGET`] set for
/// this transaction only.
fn analyze_sampled(conn: &mut DbConnection, tables: &[&str]) -> Result<(), Fail> {
    use diesel::Connection as _;
    if let DbConnection::Sqlite(_) = conn {
        return analyze(conn, tables);
    }
    conn.transaction(|conn| {
        diesel::sql_query(format!(
            "SET LOCAL default_statistics_target = {SAMPLED_STATISTICS_TARGET}"
        ))
        .execute(conn)?;
        analyze(conn, tables)
    })
}

fn analyze_stale(conn: &mut DbConnection) -> Result<Vec<String>, Fail> {
    let DbConnection::Postgresql(pg) = conn else {
        return Ok(Vec::new());
    };
    let stale: Vec<Table> = diesel::sql_query(STALE_TABLES).load(pg)?;
    for table in &stale {
        diesel::sql_query(format!("ANALYZE {}", table.relname)).execute(pg)?;
    }
    Ok(stale.into_iter().map(|t| t.relname).collect())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use diesel::connection::SimpleConnection;
    use diesel::r2d2::CustomizeConnection;

    use super::*;
    use crate::db::PostgresSetup;
    use crate::scratch_postgres::{plan, ScratchSchema, CONNECTION_C1};

    fn pg_of(conn: &mut DbConnection) -> &mut diesel::PgConnection {
        let DbConnection::Postgresql(pg) = conn else {
            unreachable!("opened on PostgreSQL")
        };
        pg
    }

    fn insert_links(pg: &mut diesel::PgConnection, ids: std::ops::RangeInclusive<u32>) {
        pg.batch_execute(&format!(
            "INSERT INTO links (id, dealer, connection_id, kind, billing_id, external_id, \
             version, created_at, updated_at) SELECT 'L-' || g, 'd1', 'c1', 'site', \
             'B-' || g, 'S' || g, 1, now(), now() FROM generate_series({}, {}) AS g",
            ids.start(),
            ids.end()
        ))
        .unwrap();
    }

    /// A schema whose `links` grew to 5,000 rows after a lookup by key was
    /// prepared on it, empty, as the store's main connections prepare it,
    /// and the plan that lookup then runs with.
    fn lookup_kept_while_empty() -> (ScratchSchema, DbConnection, Vec<String>) {
        let (schema, pg) = ScratchSchema::open();
        let mut conn = DbConnection::Postgresql(pg);
        PostgresSetup::GENERIC_PLANS_WHEN_AS_GOOD
            .on_acquire(&mut conn)
            .unwrap();
        pg_of(&mut conn)
            .batch_execute(&format!(
                "{CONNECTION_C1}; ANALYZE connections; ANALYZE links; PREPARE by_key (text, text) \
                 AS SELECT * FROM links WHERE dealer = $1 AND id = $2"
            ))
            .unwrap();
        assert_eq!(analyze_stale(&mut conn).unwrap(), Vec::<String>::new());
        // Past its first five runs, a statement may keep a generic plan.
        for _ in 0..6 {
            pg_of(&mut conn)
                .batch_execute("EXECUTE by_key('d1', 'L-1')")
                .unwrap();
        }
        insert_links(pg_of(&mut conn), 1..=5000);
        let kept = plan(pg_of(&mut conn), "EXECUTE by_key('d1', 'L-777')");
        (schema, conn, kept)
    }

    /// A lookup by key prepared on the store's main connections while
    /// `links` was empty keeps a plan that reads the whole table once it
    /// holds 5,000 rows; analyzing the grown table makes the plan again.
    #[test]
    fn a_grown_table_is_analyzed_and_its_kept_plans_are_made_again() {
        // Other tests' migrations at once can overflow PostgreSQL's queue of
        // catalog changes, and then every kept plan is made again, from the
        // grown table (seen once in 10 runs of this crate's tests, and on
        // all 6 tries once in a full `make test`): the hazard is shown once
        // a kept plan survives; a try that does costs nothing more.
        let seq_scan = |plan: &[String]| plan.iter().any(|l| l.contains("Seq Scan on links"));
        let (_schema, mut conn, kept) = std::iter::repeat_with(lookup_kept_while_empty)
            .take(20)
            .find(|(_, _, kept)| seq_scan(kept))
            .unwrap_or_else(lookup_kept_while_empty);
        assert!(
            seq_scan(&kept),
            "PostgreSQL no longer keeps a plan made on the empty table, so this test shows nothing: {kept:#?}"
        );

        // A backend reports its changes within a second or so of its commit.
        let deadline = Instant::now() + Duration::from_secs(15);
        let analyzed = loop {
            let analyzed = analyze_stale(&mut conn).unwrap();
            if !analyzed.is_empty() || Instant::now() > deadline {
                break analyzed;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(
            analyzed,
            ["links"],
            "one row more in connections is not stale"
        );
        let made_again = plan(pg_of(&mut conn), "EXECUTE by_key('d1', 'L-777')");
        assert!(
            made_again.iter().any(|l| l.contains("Index"))
                && !made_again.iter().any(|l| l.contains("Seq Scan")),
            "the lookup still reads the whole table: {made_again:#?}"
        );
        assert_eq!(analyze_stale(&mut conn).unwrap(), Vec::<String>::new());
    }

    /// A refresh leaves an empty table never analyzed, so a lookup by key
    /// kept while it is empty still walks its index; a table with rows is
    /// analyzed.
    #[test]
    fn an_empty_table_is_not_analyzed_so_its_kept_lookups_walk_the_index() {
        #[derive(QueryableByName)]
        struct Counted {
            #[diesel(sql_type = diesel::sql_types::Double)]
            rows: f64,
        }
        let counted = |conn: &mut DbConnection, table: &str| {
            diesel::sql_query(format!(
                "SELECT reltuples::float8 AS rows FROM pg_class WHERE oid = '{table}'::regclass"
            ))
            .get_result::<Counted>(pg_of(conn))
            .unwrap()
            .rows
        };
        let (_schema, pg) = ScratchSchema::open();
        let mut conn = DbConnection::Postgresql(pg);
        pg_of(&mut conn).batch_execute(CONNECTION_C1).unwrap();
        insert_links(pg_of(&mut conn), 1..=500);
        analyze(&mut conn, &["links", "billing_users"]).unwrap();
        assert_eq!(
            counted(&mut conn, "links"),
            500.0,
            "a table with rows is analyzed"
        );
        assert_eq!(
            counted(&mut conn, "billing_users"),
            -1.0,
            "the empty table is still never analyzed"
        );
        PostgresSetup::GENERIC_PLANS_WHEN_AS_GOOD
            .on_acquire(&mut conn)
            .unwrap();
        pg_of(&mut conn)
            .batch_execute(
                "SET plan_cache_mode = force_generic_plan; PREPARE user_by_key (text, text) \
                 AS SELECT * FROM billing_users WHERE dealer = $1 AND id = $2",
            )
            .unwrap();
        let kept = plan(pg_of(&mut conn), "EXECUTE user_by_key('d1', 'U-1')");
        assert!(
            kept.iter().any(|l| l.contains("Index"))
                && !kept.iter().any(|l| l.contains("Seq Scan")),
            "the lookup kept on the empty table reads the whole table: {kept:#?}"
        );
    }

    /// A sampled refresh counts the rows, keeps a histogram of 10 buckets
    /// rather than 100, and leaves the connection's target as it was.
    #[test]
    fn a_sampled_refresh_takes_a_small_sample_for_its_own_transaction() {
        #[derive(QueryableByName)]
        struct Analyzed {
            #[diesel(sql_type = diesel::sql_types::Double)]
            rows: f64,
            #[diesel(sql_type = diesel::sql_types::Integer)]
            bounds: i32,
        }
        #[derive(QueryableByName)]
        struct Target {
            #[diesel(sql_type = Text)]
            target: String,
        }
        let target = |conn: &mut DbConnection| {
            diesel::sql_query("SELECT current_setting('default_statistics_target') AS target")
                .get_result::<Target>(pg_of(conn))
                .unwrap()
                .target
        };
        let (_schema, pg) = ScratchSchema::open();
        let mut conn = DbConnection::Postgresql(pg);
        pg_of(&mut conn).batch_execute(CONNECTION_C1).unwrap();
        insert_links(pg_of(&mut conn), 1..=20_000);
        let before = target(&mut conn);
        assert_ne!(before, "10", "the server's own target is not the sample's");
        analyze_sampled(&mut conn, &["links"]).unwrap();
        let analyzed: Analyzed = diesel::sql_query(
            "SELECT c.reltuples::float8 AS rows, \
             coalesce(array_length(s.histogram_bounds::text::text[], 1), 0) AS bounds \
             FROM pg_class c JOIN pg_stats s ON s.tablename = c.relname \
             AND s.schemaname = current_schema() AND s.attname = 'billing_id' \
             WHERE c.oid = 'links'::regclass",
        )
        .get_result(pg_of(&mut conn))
        .unwrap();
        assert!(
            (19_000.0..=21_000.0).contains(&analyzed.rows),
            "rows counted: {}",
            analyzed.rows
        );
        assert_eq!(analyzed.bounds, 11, "a histogram of 10 buckets");
        assert_eq!(
            target(&mut conn),
            before,
            "the setting was for the transaction"
        );
    }

    /// Changes to `links` that PostgreSQL's statistics count so far.
    fn links_changed(pg: &mut diesel::PgConnection) -> i64 {
        #[derive(QueryableByName)]
        struct Changed {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query(
            "SELECT n_mod_since_analyze AS n FROM pg_stat_user_tables \
             WHERE schemaname = current_schema() AND relname = 'links'",
        )
        .get_result::<Changed>(pg)
        .unwrap()
        .n
    }

    /// Past 10,000 rows a table is stale once it changed by its own size,
    /// not by a tenth: 11,111 of 20,000 links changed leave it, 20,000
    /// more inserted analyze it.
    #[test]
    fn a_large_table_is_stale_once_it_changed_by_its_size() {
        let (_schema, pg) = ScratchSchema::open();
        let mut conn = DbConnection::Postgresql(pg);
        pg_of(&mut conn).batch_execute(CONNECTION_C1).unwrap();
        // A backend reports its changes within a second or so of its commit;
        // reported after an ANALYZE, they would count as changes since it.
        let reported = |conn: &mut DbConnection, changes: i64| {
            let deadline = Instant::now() + Duration::from_secs(15);
            while links_changed(pg_of(conn)) < changes {
                assert!(
                    Instant::now() < deadline,
                    "{changes} changes never reported"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        insert_links(pg_of(&mut conn), 1..=20_000);
        reported(&mut conn, 20_000);
        pg_of(&mut conn)
            .batch_execute("ANALYZE connections; ANALYZE links")
            .unwrap();
        pg_of(&mut conn)
            .batch_execute("UPDATE links SET version = 2 WHERE id LIKE 'L-1%'")
            .unwrap();
        reported(&mut conn, 11_111);
        assert_eq!(analyze_stale(&mut conn).unwrap(), Vec::<String>::new());

        insert_links(pg_of(&mut conn), 20_001..=40_000);
        reported(&mut conn, 31_111);
        assert_eq!(analyze_stale(&mut conn).unwrap(), ["links"]);
    }
}
