//! The table rows of the Auto Sync throughput runs (`make bench`, issue 12):
//! each figure of every variant (`jobs.workers` at its default and at 2)
//! beside its baseline from the same run.

use crate::cost::PgCost;
use crate::load;
use crate::report::Bench;
use crate::service::Backend;
use crate::sync::{AutoSyncSizes, Direct, Throughput, IDLE_POLL_MS, LOOK_EVERY, QUIET_LOOKS};

/// The rows made per variant (the service's defaults and each other
/// `jobs.workers`), each row maker skipping the variants it has nothing for.
struct PerVariant<'a> {
    variants: &'a [Variant<'a>],
    rows: Vec<Bench>,
}

impl<'a> PerVariant<'a> {
    fn new(variants: &'a [Variant<'a>]) -> Self {
        Self {
            variants,
            rows: Vec::new(),
        }
    }

    fn add(&mut self, row: impl Fn(&Variant, &Throughput) -> Option<Bench>) {
        let rows = self.variants.iter().filter_map(|v| row(v, v.run));
        self.rows.extend(rows);
    }
}

/// A throughput run with how its service was set up, for the rows.
pub struct Variant<'a> {
    /// Added to the row names ("" for the service's defaults).
    pub suffix: &'a str,
    /// The job settings, for the notes.
    pub workers: &'a str,
    pub run: &'a Throughput,
    /// PostgreSQL only: commits and statements from the service's start to its stop.
    pub pg: Option<&'a PgCost>,
}

/// The rows of the throughput runs: each figure for every variant in turn,
/// so that the runs of one figure sit together.
pub fn throughput_rows(
    backend: Backend,
    sizes: AutoSyncSizes,
    direct: &Direct,
    variants: &[Variant],
) -> Vec<Bench> {
    let mut rows = delivery_rows(backend, sizes, direct, variants);
    rows.extend(start_rows(backend, variants));
    rows.extend(cost_rows(backend, direct, variants));
    rows
}

/// Edits and pushes per second, and when the edits settled.
fn delivery_rows(
    backend: Backend,
    sizes: AutoSyncSizes,
    direct: &Direct,
    variants: &[Variant],
) -> Vec<Bench> {
    let label = backend.label();
    let rps = match sizes.stages_rps {
        0 => "the client-side Stages rate limit off (--sync-stages-rps)".to_owned(),
        r => format!("the client-side Stages rate limit at {r}/s (--sync-stages-rps)"),
    };
    let mut rows = PerVariant::new(variants);
    rows.add(|v, r| {
        Some(
            Bench::new(
                format!(
                    "Auto Sync: billing edits/s (PUT /v1/billing/sites, address1 changed){}",
                    v.suffix
                ),
                Some(label),
                r.edits as f64 / r.edit_secs,
                "req/s",
            )
            .note(format!(
                "{} edits over {} linked sites, {} in flight, {:.1} s; {}; informational",
                r.edits, r.sites, r.concurrency, r.edit_secs, v.workers
            )),
        )
    });
    rows.add(|v, r| {
        Some(
            Bench::new(
                format!(
                    "Auto Sync: pushes/s arriving at Stages (first edit to quiescence){}",
                    v.suffix
                ),
                Some(label),
                r.pushes as f64 / r.settle_secs,
                "req/s",
            )
            .against(
                "PATCH /api/v1/sites sent straight to the simulator",
                direct.per_second,
            )
            .note(format!(
                "{} pushes ({} jobs) for {} edits in {:.1} s: quick edits of one site coalesce, \
                 so pushes ≤ edits; every site's last edit arrived; {rps}; {}; baseline {} in \
                 flight, {} requests",
                r.pushes,
                r.jobs,
                r.edits,
                r.settle_secs,
                v.workers,
                direct.concurrency,
                direct.requests
            )),
        )
    });
    rows.add(|v, r| {
        Some(
            Bench::new(
                format!(
                    "Auto Sync: edits settled/s (edits / first edit to quiescence){}",
                    v.suffix
                ),
                Some(label),
                r.edits as f64 / r.settle_secs,
                "req/s",
            )
            .against(
                "billing edits/s answered in the same run (PUT)",
                r.edits as f64 / r.edit_secs,
            )
            .note(format!(
                "{} edits, first edit to every site holding its last edit in Stages and no job \
                 queued or running, {:.1} s; ratio 1 = Auto Sync keeps up with the edits; {}",
                r.edits, r.settle_secs, v.workers
            )),
        )
    });
    rows.add(|v, r| {
        Some(
            Bench::new(
                format!("Auto Sync: last edit to quiescence{}", v.suffix),
                Some(label),
                r.drain_secs,
                "s",
            )
            .note(format!(
                "no job queued or running for {QUIET_LOOKS} looks {} ms apart and every site \
                 holding its last edit; {}; informational",
                LOOK_EVERY.as_millis(),
                v.workers
            )),
        )
    });
    rows.rows
}

/// How long a job waited from enqueue to start, against the idle poll.
fn start_rows(backend: Backend, variants: &[Variant]) -> Vec<Bench> {
    let label = backend.label();
    let baseline = "worker idle poll interval (IDLE_POLL)";
    let mut rows = PerVariant::new(variants);
    rows.add(|v, r| {
        Some(
            Bench::new(
                format!(
                    "Auto Sync: enqueue-to-start p50, under the load above{}",
                    v.suffix
                ),
                Some(label),
                load::percentile(&r.waits_ms, 50.0),
                "ms",
            )
            .against(baseline, IDLE_POLL_MS)
            .note(format!(
                "created_at to started_at; {} jobs of {} edits over {} linked sites, {} in \
                 flight; {}",
                r.waits_ms.len(),
                r.edits,
                r.sites,
                r.concurrency,
                v.workers
            )),
        )
    });
    rows.add(|v, r| {
        Some(
            Bench::new(
                format!(
                    "Auto Sync: enqueue-to-start p99, under the load above{}",
                    v.suffix
                ),
                Some(label),
                load::percentile(&r.waits_ms, 99.0),
                "ms",
            )
            .against(baseline, IDLE_POLL_MS),
        )
    });
    rows.rows
}

/// What a push cost: CPU, and on PostgreSQL commits and statements.
fn cost_rows(backend: Backend, direct: &Direct, variants: &[Variant]) -> Vec<Bench> {
    let label = backend.label();
    let database = match backend {
        Backend::Sqlite => "service",
        Backend::Postgres => "service + PostgreSQL",
    };
    let mut rows = PerVariant::new(variants);
    rows.add(|v, r| {
        let pg_part = match (r.cpu.database_ms, backend) {
            (Some(ms), _) => format!(
                " + PostgreSQL {:.2} ms ({} processes: the database's backends and the \
                 server's own; a backend that ended during the run is missed)",
                ms / r.pushes.max(1) as f64,
                r.cpu.database_processes
            ),
            (None, Backend::Postgres) => " (PostgreSQL's processes could not be read)".to_owned(),
            (None, Backend::Sqlite) => String::new(),
        };
        Some(
            Bench::new(
                format!("Auto Sync: CPU ms per push ({database}){}", v.suffix),
                Some(label),
                r.cpu.total_ms() / r.pushes.max(1) as f64,
                "ms",
            )
            .against(
                "CPU ms per PATCH sent straight to the simulator (client + simulator)",
                direct.cpu_ms_per_patch,
            )
            .note(format!(
                "/proc utime+stime, first edit to quiescence, over {} pushes: service {:.2} \
                 ms{pg_part}; the edits' PUTs are in it; issue 12 target ≤ 6 ms; baseline: this \
                 process (load client and in-process simulator) over the direct PATCH run; {}",
                r.pushes,
                r.cpu.service_ms / r.pushes.max(1) as f64,
                v.workers
            )),
        )
    });
    rows.add(|v, r| {
        let pg = v.pg?;
        let statements = match &pg.statements {
            Ok((n, _)) => format!(
                "{:.1} statements per edit (next row)",
                *n as f64 / r.edits as f64
            ),
            Err(why) => format!("statements per edit not available ({why})"),
        };
        Some(
            Bench::new(
                format!("Auto Sync: PostgreSQL commits per billing edit{}", v.suffix),
                Some(label),
                pg.commits as f64 / r.edits as f64,
                "commits",
            )
            .against("issue 12 target (fixed, not measured)", 3.0)
            .note(format!(
                "pg_stat_database.xact_commit of the service's own database, {} commits ({} \
                 rollbacks) from the service's start to its stop, for {} edits and {} pushes \
                 (the edits' PUTs, the jobs, the idle workers' polls; single statements outside \
                 a transaction count as one each); {statements}; {}",
                pg.commits, pg.rollbacks, r.edits, r.pushes, v.workers
            )),
        )
    });
    rows.add(|v, r| {
        let (n, top) = v.pg?.statements.as_ref().ok()?;
        let top = top
            .iter()
            .map(|(calls, q)| format!("{:.2}/edit `{q}`", *calls as f64 / r.edits as f64))
            .collect::<Vec<_>>()
            .join(", ");
        Some(
            Bench::new(
                format!(
                    "Auto Sync: PostgreSQL statements per billing edit{}",
                    v.suffix
                ),
                Some(label),
                *n as f64 / r.edits as f64,
                "statements",
            )
            .note(format!(
                "pg_stat_statements calls in the service's database, start to stop, {n} in all; \
                 most called: {top}; {}; informational",
                v.workers
            )),
        )
    });
    rows.rows
}
