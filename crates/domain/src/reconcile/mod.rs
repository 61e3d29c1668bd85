//! Reconcile (B4, S20): rebuild and verify the link table from the billing ids
//! stored in Stages. Links an older integration left behind are taken over;
//! everything that does not add up is reported as drift, never guessed at.
//! A link whose billing id was cleared or changed in Stages (Stages then stops
//! calling back for it) is drift too, and with `repair` its id is written back.
//!
//! A run goes in four steps: read what Stages holds and what the service
//! knows (`read`), decide each record (`plan`), then take over and repair
//! (`apply`), reporting progress and stopping when the job is cancelled.
//! [`start_reconcile`] queues a run as a job of the caller who asked.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::connection::{Connection, ConnectionId};
use crate::jobs::{
    new_job, summary, Attempt, Done, HasJobPorts, Job, JobError, JobKind, NewJob, RunJob,
};
use crate::link::LinkKind;
use crate::linking::LinkingPorts;
use crate::operations::OperationError;
use crate::stages::StagesApi;
use crate::store::{JobStore, StoreError};
use crate::tenancy::{Caller, Role, UserId};
use crate::upstream::{stages_client, ActingAs};

mod apply;
mod plan;
mod read;

/// A reconcile of one connection, as a job; one queued at a time per
/// connection and mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileJob {
    pub connection_id: ConnectionId,
    pub dry_run: bool,
    /// Write the link's billing id back to Stages records that lost it.
    /// Left out of a plain run's payload, which stays as it was.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repair: bool,
}

impl JobKind for ReconcileJob {
    const KIND: &'static str = "reconcile";
    const MAX_ATTEMPTS: u32 = 5;

    fn unique_key(&self) -> Option<String> {
        // A repairing run does more than a plain one: it does not coalesce with it.
        Some(match self.repair {
            false => format!("reconcile:{}:{}", self.connection_id, self.dry_run),
            true => format!("reconcile:{}:{}:repair", self.connection_id, self.dry_run),
        })
    }
}

impl ReconcileJob {
    /// Runs with the credentials of `caller`, who asked for it.
    pub fn new_job(&self, caller: &Caller) -> NewJob {
        new_job(&caller.dealer, self, &caller.user.0, Utc::now())
    }
}

#[async_trait]
impl<C: HasJobPorts + ?Sized> RunJob<C> for ReconcileJob {
    async fn run(self, ctx: &C, attempt: Attempt<'_>) -> Result<Done, JobError> {
        let ports = ctx.job_ports();
        // The job acts with the credentials of whoever asked for it.
        let caller = Caller {
            dealer: attempt.job.dealer.clone(),
            user: UserId(attempt.job.created_by.clone()),
            roles: vec![Role::Operator],
        };
        let progress = attempt.progress(ports.jobs);
        let report = reconcile(
            ports.linking,
            &caller,
            self.connection_id,
            Mode {
                dry_run: self.dry_run,
                repair: self.repair,
            },
            &progress,
        )
        .await?;
        summary(&report)
    }
}

/// Where a long run reports how far it got. `false` means stop (cancelled).
#[async_trait]
pub trait Progress: Send + Sync {
    async fn report(&self, done: u64, total: Option<u64>) -> bool;
}

/// A reconcile reports after every page read and every chunk taken over
/// (1,100 reports at 100,000 sites), each a write to the queue; passed on
/// at most every [`Throttled::EVERY`], and always the first and the last,
/// it still shows how far the run got and still stops a cancelled run soon.
struct Throttled<'a> {
    inner: &'a dyn Progress,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Throttled<'_> {
    const EVERY: std::time::Duration = std::time::Duration::from_millis(250);
}

#[async_trait]
impl Progress for Throttled<'_> {
    async fn report(&self, done: u64, total: Option<u64>) -> bool {
        let now = std::time::Instant::now();
        let due = {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            let due = total == Some(done) || last.is_none_or(|t| now - t >= Self::EVERY);
            if due {
                *last = Some(now);
            }
            due
        };
        !due || self.inner.report(done, total).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// A Stages record carries a billing id that names no billing record.
    UnknownBillingRecord,
    /// Two or more Stages records carry the same billing id.
    DuplicateClaim,
    /// The pair was unlinked on purpose; it is not linked again.
    DeliberatelyUnlinked,
    /// The billing record or the Stages record is linked to something else.
    LinkedElsewhere,
    /// A link points at a Stages record that no longer exists.
    MissingExternal,
    /// A device carries a billing id but its site is not linked.
    SiteNotLinked,
    /// A linked Stages record carries no billing id any more.
    BillingIdCleared,
    /// A linked Stages record carries another billing id than its link's.
    BillingIdChanged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub kind: DriftKind,
    pub record: LinkKind,
    pub external_id: String,
    pub billing_id: Option<String>,
    pub detail: String,
    /// The link's billing id was written back (in a dry run: would be).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repaired: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindCounts {
    pub sites: u64,
    pub systems: u64,
}

impl KindCounts {
    fn add(&mut self, kind: LinkKind) {
        match kind {
            LinkKind::Site => self.sites += 1,
            LinkKind::System => self.systems += 1,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    pub dry_run: bool,
    pub repair: bool,
    pub sites_seen: u64,
    pub devices_seen: u64,
    pub already_linked: KindCounts,
    /// Links created from billing ids found in Stages (in a dry run: would be).
    pub taken_over: KindCounts,
    /// Links whose billing id was written back to Stages (in a dry run: would be).
    pub repaired: KindCounts,
    pub drift_counts: BTreeMap<String, u64>,
    /// The first `MAX_DRIFT_ITEMS` drift findings.
    pub drift: Vec<Drift>,
    pub drift_truncated: bool,
    /// Stopped early because the job was cancelled.
    pub stopped: bool,
}

pub const MAX_DRIFT_ITEMS: usize = 1000;
const PAGE: u32 = 500;

impl ReconcileReport {
    fn drift(&mut self, d: Drift) {
        let key = serde_json::to_value(d.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        *self.drift_counts.entry(key).or_default() += 1;
        if self.drift.len() < MAX_DRIFT_ITEMS {
            self.drift.push(d);
        } else {
            self.drift_truncated = true;
        }
    }
}

/// How a reconcile runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mode {
    /// Report what would change and change nothing.
    pub dry_run: bool,
    /// Write the link's billing id back where Stages lost or changed it.
    pub repair: bool,
}

/// Queues a reconcile of the connection for `caller`. The job acts with the
/// caller's credentials (S2): without them it is refused now, like every
/// other Stages operation, not accepted to fail later.
pub async fn start_reconcile(
    ports: LinkingPorts<'_>,
    jobs: &dyn JobStore,
    caller: &Caller,
    connection_id: ConnectionId,
    mode: Mode,
) -> Result<Job, OperationError> {
    stages_as(ports, caller, connection_id).await?;
    let job = ReconcileJob {
        connection_id,
        dry_run: mode.dry_run,
        repair: mode.repair,
    };
    Ok(jobs.enqueue(job.new_job(caller)).await?)
}

/// The caller's connection and its Stages client.
async fn stages_as(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
) -> Result<(Connection, Arc<dyn StagesApi>), OperationError> {
    let connection = ports
        .connections
        .connection(&caller.dealer, connection_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => OperationError::NotFound("no such connection".into()),
            other => other.into(),
        })?;
    let acting = ActingAs::Caller(caller);
    let api = stages_client(ports.connections, ports.stages, acting, &connection).await?;
    Ok((connection, api))
}

pub async fn reconcile(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    mode: Mode,
    progress: &dyn Progress,
) -> Result<ReconcileReport, OperationError> {
    let dry_run = mode.dry_run;
    let progress = &Throttled {
        inner: progress,
        last: Default::default(),
    };
    let (connection, api) = stages_as(ports, caller, connection_id).await?;
    let mut report = ReconcileReport {
        dry_run,
        repair: mode.repair,
        ..Default::default()
    };

    // 1. Read Stages: every site and every device with their billing ids,
    // both lists at once (each is paged in order, one page after another).
    let read = std::sync::atomic::AtomicU64::new(0);
    let (sites, devices) = futures_util::future::try_join(
        read::read_sites(api.as_ref(), &connection, progress, &read),
        read::read_devices(api.as_ref(), &connection, progress, &read),
    )
    .await?;
    let (Some(sites), Some(devices)) = (sites, devices) else {
        return Ok(stopped(report));
    };
    report.sites_seen = sites.count;
    report.devices_seen = devices.count;

    // 2. What the service knows: links, deliberate unlinks, billing records.
    let ours = read::read_ours(ports, caller, connection_id, &sites, &devices).await?;

    // 3. Decide, sites first so devices can hang under sites taken over now.
    let plan = plan::plan(connection_id, &sites, &devices, &ours, &mut report)?;

    // 4. Take over and repair (unless this is a dry run).
    let total = report.sites_seen
        + report.devices_seen
        + (plan.new_site_links.len() + plan.new_system_links.len()) as u64
        + if mode.repair {
            plan.lost.len() as u64
        } else {
            0
        };
    let mut done = report.sites_seen + report.devices_seen;
    for (kind, batch_source) in [
        (LinkKind::Site, plan.new_site_links),
        (LinkKind::System, plan.new_system_links),
    ] {
        if dry_run {
            for _ in &batch_source {
                report.taken_over.add(kind);
            }
            continue;
        }
        for batch in batch_source.chunks(200) {
            apply::take_over(ports, caller, batch, &mut report).await?;
            done += batch.len() as u64;
            if !progress.report(done, Some(total)).await {
                return Ok(stopped(report));
            }
        }
    }
    if mode.repair {
        for chunk in plan.lost.chunks(200) {
            apply::repair(
                ports,
                caller,
                api.as_ref(),
                &connection,
                chunk,
                dry_run,
                &mut report,
            )
            .await?;
            done += chunk.len() as u64;
            if !progress.report(done, Some(total)).await {
                return Ok(stopped(report));
            }
        }
    }
    progress.report(total, Some(total)).await;
    Ok(report)
}

/// The report of a run stopped early because its job was cancelled.
fn stopped(mut report: ReconcileReport) -> ReconcileReport {
    report.stopped = true;
    report
}
