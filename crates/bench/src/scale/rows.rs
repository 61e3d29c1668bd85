//! The rows of `scale.md` (B15, B9), each figure beside a baseline from the
//! same run where one means something: lookups under the mix against
//! lookups alone, the other dealers' job waits during the burst against
//! before it, the database and the service after the load against before.

use crate::cost::Cpu;
use crate::load::LoadResult;
use crate::report::{number, Bench};

use super::figures::{Waits, MIB};
use super::mix::Mixed;
use super::seed::Seeded;
use super::world::{dealer, BURST_DEALER, RECONCILE_DEALER};
use super::Cli;

/// What was measured after the load.
pub struct After {
    pub size: f64,
    pub tables: String,
    /// (VmHWM, VmRSS) in MiB.
    pub memory: (f64, f64),
    pub jobs: String,
    pub dead_or_failed: u64,
    pub drain_secs: f64,
    /// Jobs still queued or running when the drain gave up.
    pub left: u64,
    /// VACUUM and ANALYZE runs the bench made for an autovacuum that is off.
    pub housekept: Option<u64>,
}

/// Enqueue-to-start by window.
pub struct Fairness {
    /// Other dealers' jobs created from the load's start to the burst's.
    pub before: Waits,
    /// Other dealers' jobs created during the burst.
    pub during: Waits,
    /// The burst dealer's own jobs created during the burst.
    pub burst_dealer: Waits,
}

/// Everything the rows are made of.
pub struct Run<'a> {
    pub cli: &'a Cli,
    pub links: u64,
    pub connect_secs: f64,
    pub seeded: &'a Seeded,
    pub size_before: f64,
    pub tables_before: String,
    pub rss_idle: f64,
    pub idle: &'a LoadResult,
    pub mixed: &'a Mixed,
    pub mix_secs: f64,
    pub cpu: Cpu,
    pub wal_bytes: f64,
    pub after: After,
    pub fair: Fairness,
}

const PG: Option<&str> = Some("postgres");

/// A count with thousands separators and no decimals.
fn count(n: u64) -> String {
    if n < 1000 {
        n.to_string()
    } else {
        number(n as f64)
    }
}

pub fn all(r: &Run) -> Vec<Bench> {
    [seeding(r), operations(r), fairness(r), database(r)].concat()
}

fn seeding(r: &Run) -> Vec<Bench> {
    let tables = r
        .seeded
        .rows
        .iter()
        .map(|(t, n, s)| format!("{t} {} rows ({s:.1} s)", count(*n)))
        .collect::<Vec<_>>()
        .join(", ");
    let not_copied = match r.seeded.not_copied.as_slice() {
        [] => String::new(),
        rest => format!(
            "; the template's rows of {} are not copied",
            rest.iter()
                .map(|(t, n)| format!("{t} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    vec![
        Bench::new(
            format!(
                "seeding by SQL: {} dealers x {} links",
                count(u64::from(r.cli.dealers)),
                count(u64::from(r.cli.links_per_dealer))
            ),
            PG,
            r.seeded.secs,
            "s",
        )
        .note(format!(
            "{} links in all; one record set made through the API, copied by INSERT ... SELECT, \
             then ANALYZE and CHECKPOINT: {tables}{not_copied}; informational",
            count(r.links)
        )),
        Bench::new(
            "Stages connections made through the API (one per dealer)",
            PG,
            r.connect_secs,
            "s",
        )
        .note(format!(
            "POST /v1/connections, PUT its dealer credential, rotate its callback credential; \
             {} dealers, 8 in flight; informational",
            r.cli.dealers
        )),
    ]
}

fn latency_rows(name: &str, l: &LoadResult, workers: usize, how: &str) -> Vec<Bench> {
    vec![
        Bench::new(format!("{name}: p50"), PG, l.percentile_ms(50.0), "ms").note(format!(
            "{} requests, {:.0}/s, {workers} in flight{how}",
            count(l.requests),
            l.per_second()
        )),
        Bench::new(format!("{name}: p99"), PG, l.percentile_ms(99.0), "ms"),
    ]
}

fn operations(r: &Run) -> Vec<Bench> {
    let m = r.mixed;
    let cli = r.cli;
    let mut rows = Vec::new();
    for (i, (name, l)) in m.ops.iter().enumerate() {
        let workers = [
            cli.lookup_workers,
            cli.edit_workers,
            cli.callback_workers,
            cli.feed_workers,
        ][i];
        if i == 0 {
            rows.push(
                Bench::new(
                    format!("{name}: p50, under the mix"),
                    PG,
                    l.percentile_ms(50.0),
                    "ms",
                )
                .against("the same lookups alone, p50", r.idle.percentile_ms(50.0))
                .note(format!(
                    "any dealer's site or system link, {} links; {} requests, {:.0}/s, \
                         {workers} in flight ({:.0}/s alone, {:.0} s)",
                    count(r.links),
                    count(l.requests),
                    l.per_second(),
                    r.idle.per_second(),
                    cli.idle_secs
                )),
            );
            rows.push(
                Bench::new(
                    format!("{name}: p99, under the mix"),
                    PG,
                    l.percentile_ms(99.0),
                    "ms",
                )
                .against("the same lookups alone, p99", r.idle.percentile_ms(99.0)),
            );
        } else {
            let rate = match i {
                1 => cli.edit_rate,
                2 => cli.callback_rate,
                _ => 0.0,
            };
            let paced = if rate > 0.0 {
                format!(", paced at {rate:.0}/s")
            } else {
                String::new()
            };
            rows.extend(latency_rows(name, l, workers, &paced));
        }
    }
    rows.extend(latency_rows(
        &format!(
            "burst: {} edits by {}",
            count(cli.burst_edits),
            dealer(BURST_DEALER)
        ),
        &m.burst,
        cli.burst_workers,
        &format!(
            ", over its {} sites, from {:.0} s into the load for {:.0} s",
            cli.links_per_dealer / 2,
            cli.burst_after,
            (m.burst_to - m.burst_from).num_milliseconds() as f64 / 1000.0
        ),
    ));
    let s = &m.reconcile.summary;
    rows.push(
        Bench::new(
            format!(
                "reconcile of {} during the load (job wall time)",
                dealer(RECONCILE_DEALER)
            ),
            PG,
            m.reconcile.secs,
            "s",
        )
        .note(format!(
            "asked {:.0} s into the load, ended {}: {} sites and {} devices seen, already \
             linked {}, drift {}",
            cli.reconcile_after,
            m.reconcile.state,
            s["sites_seen"],
            s["devices_seen"],
            s["already_linked"],
            s["drift_counts"]
        )),
    );
    rows
}

fn waits_note(w: &Waits, what: &str) -> String {
    format!(
        "{what}: {} jobs, {} started, max {:.0} ms; started_at - created_at from the jobs table, \
         reconciles left out",
        w.jobs, w.started, w.max_ms
    )
}

fn fairness(r: &Run) -> Vec<Bench> {
    let f = &r.fair;
    let cap = "jobs.max_running_per_dealer at its default (3/4 of jobs.workers)";
    vec![
        Bench::new(
            "other dealers' jobs created during the burst: enqueue-to-start p50",
            PG,
            f.during.p50_ms,
            "ms",
        )
        .against("their jobs created before the burst, p50", f.before.p50_ms)
        .note(format!(
            "{}; before: {} jobs; {cap}",
            waits_note(&f.during, "during"),
            f.before.jobs
        )),
        Bench::new(
            "other dealers' jobs created during the burst: enqueue-to-start p99",
            PG,
            f.during.p99_ms,
            "ms",
        )
        .against("their jobs created before the burst, p99", f.before.p99_ms),
        Bench::new(
            format!(
                "{}'s own jobs during the burst: enqueue-to-start p99",
                dealer(BURST_DEALER)
            ),
            PG,
            f.burst_dealer.p99_ms,
            "ms",
        )
        .note(format!(
            "{}; p50 {:.0} ms; edits of one site coalesce into its queued push; informational",
            waits_note(&f.burst_dealer, "burst dealer"),
            f.burst_dealer.p50_ms
        )),
        Bench::new("queue drained after the load", PG, r.after.drain_secs, "s").note(format!(
            "{} still queued or running at the end; {} failed or dead; jobs by kind and state: \
             {}{}",
            r.after.left,
            r.after.dead_or_failed,
            r.after.jobs,
            match r.after.housekept {
                None => String::new(),
                Some(n) => format!(
                    "; autovacuum is off on this server, so the bench ran VACUUM/ANALYZE at \
                     autovacuum's default thresholds every 5 s ({n} runs)"
                ),
            }
        )),
    ]
}

fn database(r: &Run) -> Vec<Bench> {
    let a = &r.after;
    let wall_ms = r.mix_secs * 1000.0;
    let edits: u64 = r.mixed.burst.requests
        + r.mixed
            .ops
            .iter()
            .skip(1)
            .take(2)
            .map(|(_, l)| l.requests)
            .sum::<u64>();
    vec![
        Bench::new("database size after the load", PG, a.size / MIB, "MiB")
            .against("after seeding", r.size_before / MIB)
            .note(format!(
                "pg_database_size; growth {:.0} MiB; after: {}; before: {}",
                (a.size - r.size_before) / MIB,
                a.tables,
                r.tables_before
            )),
        Bench::new("WAL written during the load", PG, r.wal_bytes / MIB, "MiB").note(format!(
            "pg_current_wal_lsn difference over {:.0} s ({:.2} MiB/s, {:.1} KiB per edit or \
             callback over {} of them); the whole server's WAL, other databases' writes included",
            r.mix_secs,
            r.wal_bytes / MIB / r.mix_secs,
            r.wal_bytes / 1024.0 / edits.max(1) as f64,
            edits
        )),
        Bench::new(
            "service CPU during the load",
            PG,
            r.cpu.service_ms / wall_ms * 100.0,
            "%",
        )
        .note(format!(
            "/proc utime+stime of the service over {:.0} s, in % of one core ({} cores); \
                 PostgreSQL {:.0} % ({} processes)",
            r.mix_secs,
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            r.cpu.database_ms.unwrap_or(f64::NAN) / wall_ms * 100.0,
            r.cpu.database_processes
        )),
        Bench::new(
            "service resident memory after the load",
            PG,
            a.memory.1,
            "MiB",
        )
        .against("idle after seeding", r.rss_idle)
        .note(format!("/proc VmRSS; peak (VmHWM) {:.0} MiB", a.memory.0)),
    ]
}
