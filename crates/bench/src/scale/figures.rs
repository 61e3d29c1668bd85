//! What `make bench-scale` reads from PostgreSQL itself (B15, B9): the jobs
//! table's enqueue-to-start per dealer and window (the tenant-fair queue's
//! figure), the database's size, and the WAL written.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};

use super::world;
use crate::report::number;
use crate::service::{psql_query, PgDatabase};

fn ts(t: DateTime<Utc>) -> String {
    // The service stores UTC as `timestamp without time zone`.
    format!("'{}'", t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f"))
}

fn fields(row: &str) -> Vec<&str> {
    row.split('\u{1f}').collect()
}

fn num(s: &str) -> f64 {
    s.trim().parse().unwrap_or(f64::NAN)
}

/// Whose jobs a [`Waits`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whose {
    /// Every dealer but the burst dealer.
    Others,
    BurstDealer,
}

/// Enqueue-to-start (`started_at - created_at`) of the jobs created in a window.
#[derive(Debug, Clone, Default)]
pub struct Waits {
    pub jobs: u64,
    pub started: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The jobs of `whose` created in `[from, to)`, reconciles left out (bulk
/// work, which a dealer's pushes and callbacks go before by design).
pub fn waits(
    db: &PgDatabase,
    whose: Whose,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Waits> {
    let op = match whose {
        Whose::Others => "<>",
        Whose::BurstDealer => "=",
    };
    let row = psql_query(
        &db.url,
        &format!(
            "SELECT count(*), count(started_at), \
               coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY w), 'NaN'), \
               coalesce(percentile_disc(0.99) WITHIN GROUP (ORDER BY w), 'NaN'), \
               coalesce(max(w), 'NaN') \
             FROM (SELECT started_at, \
                     (extract(epoch FROM started_at - created_at) * 1000)::float8 AS w \
                   FROM jobs WHERE dealer {op} '{}' AND kind <> 'reconcile' \
                   AND created_at >= {} AND created_at < {}) j",
            world::dealer(world::BURST_DEALER),
            ts(from),
            ts(to)
        ),
    )?;
    let f = fields(&row);
    let [jobs, started, p50, p99, max] = f[..] else {
        bail!("unexpected waits row {row:?}");
    };
    Ok(Waits {
        jobs: jobs.parse()?,
        started: started.parse()?,
        p50_ms: num(p50),
        p99_ms: num(p99),
        max_ms: num(max),
    })
}

/// Jobs by kind and state, over the whole run: "kind state: n, ...".
pub fn job_counts(db: &PgDatabase) -> anyhow::Result<String> {
    let rows = psql_query(
        &db.url,
        "SELECT kind, state, count(*) FROM jobs GROUP BY kind, state ORDER BY kind, state",
    )?;
    Ok(rows
        .lines()
        .map(|r| fields(r).join(" "))
        .collect::<Vec<_>>()
        .join(", "))
}

/// Jobs in `state`.
pub fn jobs_in(db: &PgDatabase, states: &str) -> anyhow::Result<u64> {
    Ok(psql_query(
        &db.url,
        &format!("SELECT count(*) FROM jobs WHERE state IN ({states})"),
    )?
    .trim()
    .parse()?)
}

/// Waits until no job is queued or running (up to `timeout`); the seconds it took.
pub async fn drain(db: &PgDatabase, timeout: Duration) -> anyhow::Result<(f64, u64)> {
    let t0 = Instant::now();
    loop {
        let left = jobs_in(db, "'queued', 'running'")?;
        if left == 0 || t0.elapsed() > timeout {
            return Ok((t0.elapsed().as_secs_f64(), left));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `pg_database_size` of the run's database, in bytes.
pub fn database_size(db: &PgDatabase) -> anyhow::Result<f64> {
    Ok(num(&psql_query(
        &db.url,
        "SELECT pg_database_size(current_database())",
    )?))
}

/// Tables and their indexes by size, largest first: "links 512 MiB, ...".
pub fn table_sizes(db: &PgDatabase) -> anyhow::Result<String> {
    let rows = psql_query(
        &db.url,
        "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname = current_schema() \
         ORDER BY 2 DESC LIMIT 8",
    )?;
    Ok(rows
        .lines()
        .filter_map(|r| match fields(r)[..] {
            [name, bytes] => Some(format!("{name} {} MiB", number(num(bytes) / MIB))),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(", "))
}

/// Rows in `table`.
pub fn rows(db: &PgDatabase, table: &str) -> anyhow::Result<u64> {
    psql_query(&db.url, &format!("SELECT count(*) FROM {table}"))?
        .trim()
        .parse()
        .with_context(|| format!("counting {table}"))
}

pub const MIB: f64 = 1024.0 * 1024.0;

/// A point in the WAL, to measure what was written since (the whole
/// server's WAL: other databases' writes in the window count too).
pub struct WalMark(String);

impl WalMark {
    pub fn now(db: &PgDatabase) -> anyhow::Result<Self> {
        Ok(WalMark(
            psql_query(&db.admin_url, "SELECT pg_current_wal_lsn()")?
                .trim()
                .to_owned(),
        ))
    }

    /// Bytes of WAL written since the mark.
    pub fn bytes_since(&self, db: &PgDatabase) -> anyhow::Result<f64> {
        Ok(num(&psql_query(
            &db.admin_url,
            &format!("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{}')", self.0),
        )?))
    }
}

/// Autovacuum's work done by hand while the server runs without it (test
/// clusters turn it off for speed): every few seconds, VACUUM ANALYZE or
/// ANALYZE the run's tables past autovacuum's default thresholds. Without
/// it the jobs table keeps the statistics of its empty start, and the
/// claim's walk over the dealers reads every queued job once per dealer.
pub struct Housekeeping {
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<u64>>,
}

const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(5);

impl Housekeeping {
    /// Starts it when `autovacuum` is off on the server; else does nothing.
    pub fn start(db: &PgDatabase) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let on = psql_query(&db.url, "SHOW autovacuum")?.trim() == "on";
        let task = (!on).then(|| {
            let (db, stop) = (db.clone(), stop.clone());
            tokio::spawn(async move {
                let mut acted = 0;
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(HOUSEKEEPING_EVERY).await;
                    let db = db.clone();
                    // psql blocks: off the load's threads.
                    let run = tokio::task::spawn_blocking(move || housekeep(&db));
                    match run.await {
                        Ok(Ok(n)) => acted += n,
                        Ok(Err(e)) => eprintln!("bench-scale: housekeeping: {e:#}"),
                        Err(e) => eprintln!("bench-scale: housekeeping: {e}"),
                    }
                }
                acted
            })
        });
        Ok(Housekeeping { stop, task })
    }

    /// Stops it: `None` when autovacuum was on, else the VACUUM and ANALYZE runs made.
    pub async fn stop(mut self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        Some(self.task.take()?.await.unwrap_or(0))
    }
}

/// One round: autovacuum's default thresholds (50 rows + 20 % dead for a
/// vacuum, 50 + 10 % changed for an analyze); one statement per call, as
/// VACUUM cannot run in a transaction.
fn housekeep(db: &PgDatabase) -> anyhow::Result<u64> {
    let due = psql_query(
        &db.url,
        "SELECT relname, n_dead_tup > 50 + 0.2 * n_live_tup \
         FROM pg_stat_user_tables WHERE schemaname = current_schema() \
         AND (n_dead_tup > 50 + 0.2 * n_live_tup OR n_mod_since_analyze > 50 + 0.1 * n_live_tup)",
    )?;
    let mut acted = 0;
    for row in due.lines() {
        let sql = match fields(row)[..] {
            [table, "t"] => format!("VACUUM (ANALYZE) {table}"),
            [table, _] => format!("ANALYZE {table}"),
            _ => continue,
        };
        psql_query(&db.url, &sql)?;
        acted += 1;
    }
    Ok(acted)
}
