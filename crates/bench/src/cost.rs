//! What a run costs the machine: CPU time from `/proc/<pid>/stat` (the service
//! process, the PostgreSQL processes that served it, this process), and on
//! PostgreSQL the commits and statements of the service's own database
//! (`pg_stat_database`, `pg_stat_statements` when it is loaded).

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::service::{psql_query, PgDatabase};

/// Clock ticks per second of the `utime`/`stime` fields (`getconf CLK_TCK`,
/// 100 on Linux when it cannot be asked).
fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, PartialEq)]
struct ProcStat {
    comm: String,
    /// Clock ticks since boot when it started: tells a reused pid apart.
    start: u64,
    /// utime + stime, in clock ticks.
    ticks: u64,
}

/// Parses a `/proc/<pid>/stat` line (the command name may hold spaces and
/// parentheses; everything after its last `)` is space separated).
fn parse_stat(line: &str) -> Option<ProcStat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let comm = line.get(open + 1..close)?.to_owned();
    // Fields from the third on (state = field 3 = index 0).
    let rest: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3)?.parse::<u64>().ok();
    Some(ProcStat {
        comm,
        start: field(22)?,
        ticks: field(14)? + field(15)?,
    })
}

fn read_stat(pid: &str) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU time of one process so far, in milliseconds (`pid` may be `self`).
pub fn process_cpu_ms(pid: &str) -> Option<f64> {
    read_stat(pid).map(|s| s.ticks as f64 * 1000.0 / clk_tck())
}

/// Every process named `postgres`, by pid.
fn postgres_processes() -> HashMap<u32, ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.filter_map(|e| {
        let name = e.ok()?.file_name().into_string().ok()?;
        let pid = name.parse::<u32>().ok()?;
        let stat = read_stat(&name)?;
        (stat.comm == "postgres").then_some((pid, stat))
    })
    .collect()
}

/// The PostgreSQL processes that work for `db`: its backends and the
/// server's own processes (WAL writer, checkpointer, autovacuum, ...), not
/// the backends of other databases (other sessions on a shared server).
fn serving_pids(db: &PgDatabase) -> anyhow::Result<HashSet<u32>> {
    let out = psql_query(
        &db.admin_url,
        &format!(
            "SELECT pid FROM pg_stat_activity WHERE datname = '{}' \
             OR backend_type <> 'client backend'",
            db.name
        ),
    )?;
    Ok(out.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// CPU spent from [`CpuProbe::start`] to [`CpuProbe::finish`].
#[derive(Debug, Clone, Copy)]
pub struct Cpu {
    pub service_ms: f64,
    /// `None` on SQLite (or when PostgreSQL's processes cannot be read).
    pub database_ms: Option<f64>,
    /// PostgreSQL processes counted.
    pub database_processes: usize,
}

impl Cpu {
    pub fn total_ms(&self) -> f64 {
        self.service_ms + self.database_ms.unwrap_or(0.0)
    }
}

/// CPU of the service process (and its PostgreSQL processes) over a window.
pub struct CpuProbe {
    service_pid: String,
    service_ms: f64,
    db: Option<PgDatabase>,
    postgres: HashMap<u32, ProcStat>,
}

impl CpuProbe {
    pub fn start(service_pid: u32, db: Option<&PgDatabase>) -> anyhow::Result<Self> {
        let service_pid = service_pid.to_string();
        let service_ms = process_cpu_ms(&service_pid)
            .with_context(|| format!("reading /proc/{service_pid}/stat"))?;
        Ok(CpuProbe {
            service_pid,
            service_ms,
            db: db.cloned(),
            postgres: db.map(|_| postgres_processes()).unwrap_or_default(),
        })
    }

    /// While the service still runs. A PostgreSQL process counts with what it
    /// spent since the start (all of it if it started since); a backend of
    /// the service that ended in between is missed.
    pub fn finish(&self) -> anyhow::Result<Cpu> {
        let service_ms = process_cpu_ms(&self.service_pid)
            .with_context(|| format!("reading /proc/{}/stat", self.service_pid))?
            - self.service_ms;
        let (database_ms, database_processes) = match &self.db {
            None => (None, 0),
            Some(db) => {
                let now = postgres_processes();
                let serving = serving_pids(db)?;
                let mut ticks = 0;
                let mut n = 0;
                for (pid, stat) in now.iter().filter(|(pid, _)| serving.contains(pid)) {
                    let before = self
                        .postgres
                        .get(pid)
                        .filter(|b| b.start == stat.start)
                        .map_or(0, |b| b.ticks);
                    ticks += stat.ticks.saturating_sub(before);
                    n += 1;
                }
                if n == 0 {
                    (None, 0)
                } else {
                    (Some(ticks as f64 * 1000.0 / clk_tck()), n)
                }
            }
        };
        Ok(Cpu {
            service_ms,
            database_ms,
            database_processes,
        })
    }
}

/// The counters of a PostgreSQL database at one moment.
#[derive(Debug, Clone)]
pub struct PgCounters {
    pub commits: u64,
    pub rollbacks: u64,
    /// `pg_stat_statements` calls by query id (with the query's start),
    /// or why they are not available.
    pub statements: Result<HashMap<String, (u64, String)>, String>,
}

/// What a window cost the database: the difference of two [`PgCounters`].
#[derive(Debug, Clone)]
pub struct PgCost {
    pub commits: u64,
    pub rollbacks: u64,
    /// All statements, and the most called ones (calls, query start).
    pub statements: Result<(u64, Vec<(u64, String)>), String>,
}

impl PgCounters {
    /// Reads the counters of `db`. Call it with no session of the service
    /// open: a backend reports its counts at most once a second, and an idle
    /// one may hold them for up to 10 s, but every backend reports them when
    /// it ends.
    pub fn read(db: &PgDatabase) -> anyhow::Result<Self> {
        let row = psql_query(
            &db.admin_url,
            &format!(
                "SELECT pg_stat_clear_snapshot(); \
                 SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = '{}'",
                db.name
            ),
        )?;
        let fields: Vec<&str> = row.lines().last().unwrap_or("").split('\u{1f}').collect();
        let [commits, rollbacks] = fields[..] else {
            bail!("no pg_stat_database row for {}: {row:?}", db.name);
        };
        Ok(PgCounters {
            commits: commits.parse().context("xact_commit")?,
            rollbacks: rollbacks.parse().context("xact_rollback")?,
            statements: statements(db),
        })
    }

    /// From `self` (before) to `after`.
    pub fn cost_until(&self, after: &PgCounters) -> PgCost {
        let statements = match (&self.statements, &after.statements) {
            (Ok(before), Ok(now)) => {
                let mut by_query: Vec<(u64, String)> = now
                    .iter()
                    .map(|(id, (calls, text))| {
                        let was = before.get(id).map_or(0, |(c, _)| *c);
                        (calls.saturating_sub(was), text.clone())
                    })
                    .filter(|(calls, _)| *calls > 0)
                    .collect();
                by_query.sort_by_key(|(calls, _)| std::cmp::Reverse(*calls));
                let total = by_query.iter().map(|(c, _)| c).sum();
                by_query.truncate(3);
                Ok((total, by_query))
            }
            (Err(e), _) | (_, Err(e)) => Err(e.clone()),
        };
        PgCost {
            commits: after.commits.saturating_sub(self.commits),
            rollbacks: after.rollbacks.saturating_sub(self.rollbacks),
            statements,
        }
    }
}

/// `pg_stat_statements` of `db` by query id, when the server loads it
/// (`shared_preload_libraries`); else why not.
fn statements(db: &PgDatabase) -> Result<HashMap<String, (u64, String)>, String> {
    let loaded =
        psql_query(&db.admin_url, "SHOW shared_preload_libraries").map_err(|e| format!("{e:#}"))?;
    if !loaded.contains("pg_stat_statements") {
        return Err("pg_stat_statements is not in shared_preload_libraries".to_owned());
    }
    let out = psql_query(
        &db.url,
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; \
         SELECT queryid, calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 60) \
         FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database \
         WHERE datname = current_database())",
    )
    .map_err(|e| format!("pg_stat_statements: {e:#}"))?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\u{1f}');
            let id = f.next()?.to_owned();
            let calls = f.next()?.parse::<u64>().ok()?;
            Some((id, (calls, f.next().unwrap_or("").to_owned())))
        })
        .collect())
}

/// Waits (up to 15 s) until `db` has no session left, then a little more
/// for the last ones to have reported their counts.
pub async fn wait_sessions_gone(db: &PgDatabase) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = psql_query(
            &db.admin_url,
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}'",
                db.name
            ),
        )?;
        if n.trim() == "0" {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{n} sessions still open on {} after 15 s", db.name);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_past_odd_command_names() {
        let line = "4242 (post gres) (x)) S 1 2 3 4 5 6 7 8 9 10 250 50 7 7 20 0 1 0 98765 1000 10";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                comm: "post gres) (x)".to_owned(),
                start: 98765,
                ticks: 300,
            })
        );
        assert!(parse_stat("garbage").is_none());
        assert!(process_cpu_ms("self").is_some_and(|ms| ms >= 0.0));
    }
}
