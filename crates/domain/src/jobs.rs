//! Work that outlives a request: a durable queue with leases. Anything that
//! talks to an upstream after the caller's answer is a job, written in the same
//! transaction as the change that causes it (outbox).

//!
//! Each kind of job is declared once, beside its use case: a payload type that
//! implements [`JobKind`] (its stored name, attempts, coalescing and serial
//! keys) and [`RunJob`] (what an attempt does, against a context of ports).
//! [`new_job`] is the only place a queue row is built; the worker dispatches
//! claimed rows through a [`Registry`] of the kinds it runs.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::field_issues::LinkSettlement;
use crate::import::{ImportPorts, RunSettings};
use crate::linking::LinkingPorts;
use crate::operations::OperationError;
use crate::stages::StagesError;
use crate::store::{EventStore, InboxStore, JobStore, StoreError};
use crate::tenancy::DealerId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl JobId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    /// Failed for good (a permanent error).
    Failed,
    Cancelled,
    /// Out of attempts after transient errors; kept with its last error, can be retried by hand.
    Dead,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Running,
            Self::Succeeded,
            Self::Failed,
            Self::Cancelled,
            Self::Dead,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Cancelled | Self::Dead
        )
    }
}

/// The stored names of the job kinds, for filters and tests; each is defined
/// by its kind's [`JobKind::KIND`].
pub mod kinds {
    use super::JobKind;

    pub const RECONCILE: &str = crate::reconcile::ReconcileJob::KIND;
    /// Push a linked billing record's changed fields to Stages (Auto Sync outbox).
    pub const AUTO_SYNC_PUSH: &str = crate::link_sync::jobs::AutoSyncPush::KIND;
    /// Apply a stored Stages callback to the billing records.
    pub const STAGES_CALLBACK: &str = crate::link_sync::jobs::ApplyStagesCallback::KIND;
    /// Deliver one event to one webhook subscription.
    pub const WEBHOOK_DELIVERY: &str = crate::events::WebhookDelivery::KIND;
    /// Run (or resume) an Alarm.com import.
    pub const ADC_IMPORT: &str = crate::import::AdcImportJob::KIND;
    /// Run the items of a batch (B7).
    pub const BATCH: &str = crate::batch::BatchJob::KIND;
    /// Bulk work: within one dealer, every other (interactive) kind is
    /// claimed first, so a reconcile or an import never holds up a push (B15).
    pub const BULK: &[&str] = &[RECONCILE, ADC_IMPORT, BATCH];
}

/// A kind of background job: the payload type is the kind. Its JSON is what
/// the queue stores, so renaming a field needs a migration of queued rows.
pub trait JobKind: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stored name; the worker dispatches on it.
    const KIND: &'static str;
    /// Attempts before a job that keeps failing is `Dead`.
    const MAX_ATTEMPTS: u32;

    /// At most one queued job per key, and one running at a time (edits coalesce).
    fn unique_key(&self) -> Option<String> {
        None
    }

    /// Jobs of one serial key, whatever their kind, never run at the same time.
    fn serial_key(&self) -> Option<String> {
        None
    }
}

/// The queue row of `job`, due at `run_at`; the only place a [`NewJob`] is built.
pub fn new_job<J: JobKind>(
    dealer: &DealerId,
    job: &J,
    created_by: &str,
    run_at: DateTime<Utc>,
) -> NewJob {
    NewJob {
        id: JobId::new(),
        dealer: dealer.clone(),
        kind: J::KIND.to_owned(),
        payload: serde_json::to_value(job).expect("a job payload is plain data"),
        max_attempts: J::MAX_ATTEMPTS,
        run_at,
        unique_key: job.unique_key(),
        serial_key: job.serial_key(),
        created_by: created_by.to_owned(),
    }
}

/// How an attempt failed; the worker turns it into a [`JobFailure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    Transient(String),
    /// The upstream is down: retried without using up attempts for a while.
    Unavailable(String),
    Permanent(String),
}

impl From<OperationError> for JobError {
    fn from(e: OperationError) -> Self {
        if let OperationError::Upstream { error, .. } = &e {
            if matches!(
                error,
                StagesError::Unreachable(_) | StagesError::Timeout | StagesError::BadAnswer(_)
            ) {
                return Self::Unavailable(e.to_string());
            }
        }
        let transient = match &e {
            OperationError::Upstream { error, .. } => error.is_transient(),
            // A refused statement is retried too (with its attempts counted):
            // a job is never dropped on its first database surprise.
            OperationError::Store(StoreError::Unavailable(_) | StoreError::Failed(_)) => true,
            // The record changed between the job's read and its write: read again.
            OperationError::Store(StoreError::VersionMismatch) => true,
            OperationError::Provider { .. } => true,
            _ => false,
        };
        if transient {
            Self::Transient(e.to_string())
        } else {
            Self::Permanent(e.to_string())
        }
    }
}

/// What a successful attempt hands back to be recorded with its end.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    /// The job's summary.
    pub summary: serde_json::Value,
    /// The link the job settled, stored in the same transaction as its end.
    pub settlement: Option<LinkSettlement>,
    /// The stored callback the job processed, marked with its outcome in the
    /// same transaction as its end: a job that ends is never left unmarked,
    /// and a mark never stands for a job that runs again.
    pub processed: Option<ProcessedCallback>,
}

/// How the processing of a stored Stages callback ended (S18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedCallback {
    pub dealer: DealerId,
    pub connection_id: crate::connection::ConnectionId,
    pub event_id: String,
    /// `applied: ...`, `echo: ...`, `unmatched: ...`; a later mark replaces it.
    pub outcome: String,
}

impl From<serde_json::Value> for Done {
    fn from(summary: serde_json::Value) -> Self {
        Self {
            summary,
            settlement: None,
            processed: None,
        }
    }
}

impl Done {
    pub fn settling(mut self, settlement: Option<LinkSettlement>) -> Self {
        self.settlement = settlement;
        self
    }

    pub fn marking(mut self, processed: ProcessedCallback) -> Self {
        self.processed = Some(processed);
        self
    }
}

/// A job's summary, recorded with its end.
pub fn summary<T: Serialize>(outcome: &T) -> Result<Done, JobError> {
    let summary = serde_json::to_value(outcome).map_err(|e| JobError::Permanent(e.to_string()))?;
    Ok(Done::from(summary))
}

/// One attempt of a claimed job, as its runner sees it.
#[derive(Clone, Copy)]
pub struct Attempt<'a> {
    pub job: &'a Job,
    /// The worker holding the lease.
    pub worker: &'a str,
}

impl Attempt<'_> {
    /// Progress reports to the queue; a cancelled job stops at the next one.
    pub fn progress<'p>(&self, jobs: &'p dyn JobStore) -> QueueProgress<'p> {
        QueueProgress {
            jobs,
            id: self.job.id,
            worker: self.worker.to_owned(),
        }
    }

    /// Whether the job still runs under this worker's lease.
    pub async fn still_ours(&self, jobs: &dyn JobStore) -> bool {
        match jobs.job(&self.job.dealer, self.job.id).await {
            Ok(now) => now.lease_owner.as_deref() == Some(self.worker),
            // Unknown: take the cancel at its word.
            Err(_) => true,
        }
    }
}

/// Job progress goes to the queue; a cancelled job stops at the next report.
pub struct QueueProgress<'a> {
    jobs: &'a dyn JobStore,
    id: JobId,
    worker: String,
}

#[async_trait]
impl crate::reconcile::Progress for QueueProgress<'_> {
    async fn report(&self, done: u64, total: Option<u64>) -> bool {
        match self
            .jobs
            .job_progress(self.id, &self.worker, done, total)
            .await
        {
            Ok(go_on) => go_on,
            Err(e) => {
                tracing::warn!(error = %e, "recording progress failed");
                true
            }
        }
    }
}

/// What a job kind does when it runs, in a context `C` that gives it the
/// ports it needs. Safe to repeat: a lost lease runs it again elsewhere.
#[async_trait]
pub trait RunJob<C: ?Sized + Sync>: JobKind {
    /// What is recorded with a success.
    async fn run(self, ctx: &C, attempt: Attempt<'_>) -> Result<Done, JobError>;
}

/// The ports the domain's job kinds run against.
#[derive(Clone, Copy)]
pub struct JobPorts<'a> {
    pub linking: LinkingPorts<'a>,
    pub imports: ImportPorts<'a>,
    pub jobs: &'a dyn JobStore,
    pub inbox: &'a dyn InboxStore,
    pub events: &'a dyn EventStore,
    pub import_settings: RunSettings,
}

/// A context that can run the domain's job kinds.
pub trait HasJobPorts: Sync {
    fn job_ports(&self) -> JobPorts<'_>;
}

type Runner<C> = for<'a> fn(&'a C, Attempt<'a>) -> BoxFuture<'a, Result<Done, JobError>>;

/// The kinds a worker runs, by stored name.
pub struct Registry<C: ?Sized> {
    runners: BTreeMap<&'static str, Runner<C>>,
}

impl<C: ?Sized + Sync> Default for Registry<C> {
    fn default() -> Self {
        Self {
            runners: BTreeMap::new(),
        }
    }
}

impl<C: ?Sized + Sync> Registry<C> {
    /// Adds `J`; a kind registered twice is a programming error.
    pub fn register<J: RunJob<C>>(mut self) -> Self {
        let before = self.runners.insert(J::KIND, run_as::<C, J>);
        assert!(before.is_none(), "job kind '{}' registered twice", J::KIND);
        self
    }

    /// The stored names of the kinds this registry runs (what a worker claims).
    pub fn kinds(&self) -> Vec<String> {
        self.runners.keys().map(|k| (*k).to_owned()).collect()
    }

    /// Runs the attempt with its kind's runner; an unknown kind, or a
    /// payload that does not parse, fails for good.
    pub async fn run(&self, ctx: &C, attempt: Attempt<'_>) -> Result<Done, JobError> {
        match self.runners.get(attempt.job.kind.as_str()) {
            Some(run) => run(ctx, attempt).await,
            None => Err(JobError::Permanent(format!(
                "unknown job kind '{}'",
                attempt.job.kind
            ))),
        }
    }
}

fn run_as<'a, C: ?Sized + Sync, J: RunJob<C>>(
    ctx: &'a C,
    attempt: Attempt<'a>,
) -> BoxFuture<'a, Result<Done, JobError>> {
    Box::pin(async move {
        let payload: J = serde_json::from_value(attempt.job.payload.clone())
            .map_err(|e| JobError::Permanent(format!("bad {} payload: {e}", J::KIND)))?;
        payload.run(ctx, attempt).await
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub dealer: DealerId,
    pub kind: String,
    pub payload: serde_json::Value,
    pub state: JobState,
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_at: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub progress_done: u64,
    pub progress_total: Option<u64>,
    pub summary: Option<serde_json::Value>,
    pub last_error: Option<String>,
    /// At most one queued job per key, and one running at a time (edits coalesce).
    pub unique_key: Option<String>,
    /// Jobs of one serial key never run at the same time, whatever their kind
    /// (an Auto Sync push and a callback of the same Stages record).
    pub serial_key: Option<String>,
    /// Whoever asked for it (a user id or `system`).
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Job {
    /// Progress as callers see it, `(done, total)`. A job that reports its own
    /// (imports, reconciles) shows that; any other is one step, done once it
    /// succeeded, so a finished push never reads "0 of unknown".
    pub fn progress(&self) -> (u64, Option<u64>) {
        match self.progress_total {
            Some(total) => (self.progress_done, Some(total)),
            None if self.progress_done > 0 => (self.progress_done, None),
            None => (u64::from(self.state == JobState::Succeeded), Some(1)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub id: JobId,
    pub dealer: DealerId,
    pub kind: String,
    pub payload: serde_json::Value,
    pub max_attempts: u32,
    pub run_at: DateTime<Utc>,
    pub unique_key: Option<String>,
    /// See [`Job::serial_key`]; [`stages_record_key`] for work on a Stages record.
    pub serial_key: Option<String>,
    pub created_by: String,
}

/// The serial key of work that reads and writes one Stages record: a push of
/// a link and a callback about its Stages record must not interleave, or a
/// callback that read Stages just before the push landed writes the older
/// value into billing.
pub fn stages_record_key(
    connection: crate::connection::ConnectionId,
    kind: crate::link::LinkKind,
    external_id: &str,
) -> String {
    format!("stages:{connection}:{}:{external_id}", kind.as_str())
}

/// How a failed attempt ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobFailure {
    /// Try again at this time (the store turns it into `Dead` when attempts are used up).
    Retry { error: String, at: DateTime<Utc> },
    /// The upstream is down (unreachable, timing out, 5xx): try again at this
    /// time without using up an attempt, so an outage leaves a backlog that
    /// drains when the upstream returns rather than dead jobs.
    Wait { error: String, at: DateTime<Utc> },
    /// Do not try again.
    Permanent { error: String },
}

/// Exponential backoff with full jitter: a delay in `[0, min(cap, base * 2^attempt))`.
/// `unit` in `[0, 1)` is the random draw, passed in so this stays deterministic to test.
pub fn backoff(attempt: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let factor = 2f64.powi(attempt.min(30) as i32);
    let ceiling = (base.num_milliseconds() as f64 * factor).min(cap.num_milliseconds() as f64);
    Duration::milliseconds((ceiling * unit.clamp(0.0, 1.0)) as i64)
}

/// The wait before trying a job again while its upstream is down. Attempts
/// are not counted then, so the delay grows with the job's age instead: half
/// its age, between `base` and `cap`, jittered over its upper half.
pub fn outage_delay(age: Duration, base: Duration, cap: Duration, unit: f64) -> Duration {
    let ceiling = (age.num_milliseconds() / 2)
        .max(base.num_milliseconds())
        .min(cap.num_milliseconds().max(base.num_milliseconds()));
    Duration::milliseconds((ceiling as f64 * (0.5 + unit.clamp(0.0, 1.0) / 2.0)) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outage_delay_grows_with_age_within_bounds() {
        let (base, cap) = (Duration::seconds(1), Duration::seconds(300));
        let at = |age_secs, unit| outage_delay(Duration::seconds(age_secs), base, cap, unit);
        assert_eq!(at(0, 1.0), base, "never under the base");
        assert_eq!(at(60, 1.0), Duration::seconds(30));
        assert_eq!(at(60, 0.0), Duration::seconds(15), "jitter keeps half");
        assert_eq!(at(86_400, 1.0), cap, "never over the cap");
        assert!(at(100, 0.3) < at(400, 0.3));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::milliseconds(100);
        let cap = Duration::seconds(10);
        assert_eq!(backoff(0, base, cap, 0.999).num_milliseconds(), 99);
        assert_eq!(backoff(3, base, cap, 0.5).num_milliseconds(), 400);
        assert_eq!(backoff(20, base, cap, 1.0), cap);
        assert_eq!(backoff(5, base, cap, 0.0), Duration::zero());
    }

    /// Each kind's payload reads what it writes, and reads the JSON of jobs
    /// queued before the kinds were declared as types (same field names).
    #[test]
    fn payloads_round_trip_and_read_queued_rows() {
        use crate::connection::ConnectionId;
        use crate::events::{SubscriptionId, WebhookDelivery};
        use crate::import::{AdcImportJob, ImportId};
        use crate::link::{LinkId, LinkKind};
        use crate::link_sync::jobs::{ApplyStagesCallback, AutoSyncPush, StagesRecord};
        use crate::reconcile::ReconcileJob;

        fn check<J: JobKind + PartialEq + std::fmt::Debug>(job: J, stored: serde_json::Value) {
            let row = new_job(&DealerId("d1".into()), &job, "u1", Utc::now());
            assert_eq!(row.kind, J::KIND);
            assert_eq!(row.max_attempts, J::MAX_ATTEMPTS);
            assert_eq!(row.payload, stored, "{} writes the stored shape", J::KIND);
            let read: J = serde_json::from_value(stored).unwrap();
            let again = new_job(&DealerId("d1".into()), &read, "u1", Utc::now());
            assert_eq!(again.payload, row.payload, "{} round-trips", J::KIND);
        }

        let uuid = |n: u128| Uuid::from_u128(n);
        let (link, conn) = (LinkId(uuid(1)), ConnectionId(uuid(2)));
        let record = StagesRecord {
            connection_id: conn,
            kind: LinkKind::Site,
            external_id: "10001".into(),
        };
        let push = AutoSyncPush::new(link, record);
        let row = new_job(&DealerId("d1".into()), &push, "u1", Utc::now());
        assert_eq!(
            row.unique_key.as_deref(),
            Some(&*format!("auto_sync:{link}"))
        );
        assert_eq!(
            row.serial_key,
            Some(stages_record_key(conn, LinkKind::Site, "10001"))
        );
        check(push, serde_json::json!({ "link_id": link }));
        check(
            ApplyStagesCallback {
                connection_id: conn,
                event_id: "e1".into(),
                stages_record: None,
            },
            serde_json::json!({ "connection_id": conn, "event_id": "e1" }),
        );
        let reconcile = ReconcileJob {
            connection_id: conn,
            dry_run: true,
            repair: false,
        };
        assert_eq!(
            reconcile.unique_key(),
            Some(format!("reconcile:{conn}:true"))
        );
        check(
            reconcile,
            serde_json::json!({ "connection_id": conn, "dry_run": true }),
        );
        // A repairing run is a job of its own, not folded into a plain one.
        let repairing = ReconcileJob {
            connection_id: conn,
            dry_run: false,
            repair: true,
        };
        assert_eq!(
            repairing.unique_key(),
            Some(format!("reconcile:{conn}:false:repair"))
        );
        check(
            repairing,
            serde_json::json!({ "connection_id": conn, "dry_run": false, "repair": true }),
        );
        check(
            AdcImportJob {
                import_id: ImportId(uuid(3)),
                connection_id: None,
            },
            serde_json::json!({ "import_id": uuid(3) }),
        );
        check(
            WebhookDelivery {
                subscription_id: SubscriptionId(uuid(4)),
                event_id: uuid(5),
            },
            serde_json::json!({ "subscription_id": uuid(4), "event_id": uuid(5) }),
        );
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Echo {
        said: String,
    }

    impl JobKind for Echo {
        const KIND: &'static str = "echo";
        const MAX_ATTEMPTS: u32 = 2;
    }

    #[async_trait]
    impl RunJob<str> for Echo {
        async fn run(self, ctx: &str, _: Attempt<'_>) -> Result<Done, JobError> {
            summary(&format!("{ctx}: {}", self.said))
        }
    }

    #[test]
    fn the_registry_dispatches_by_kind_and_refuses_what_it_does_not_know() {
        use futures_util::FutureExt;

        let registry = Registry::<str>::default().register::<Echo>();
        assert_eq!(registry.kinds(), vec!["echo".to_owned()]);
        let row = new_job(
            &DealerId("d1".into()),
            &Echo { said: "hi".into() },
            "u1",
            Utc::now(),
        );
        let mut job = Job {
            id: row.id,
            dealer: row.dealer,
            kind: row.kind,
            payload: row.payload,
            state: JobState::Running,
            attempts: 1,
            max_attempts: row.max_attempts,
            run_at: row.run_at,
            lease_owner: Some("w1".into()),
            lease_expires_at: None,
            progress_done: 0,
            progress_total: None,
            summary: None,
            last_error: None,
            unique_key: row.unique_key,
            serial_key: row.serial_key,
            created_by: row.created_by,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
        };
        let run = |job: &Job| {
            registry
                .run("ctx", Attempt { job, worker: "w1" })
                .now_or_never()
                .expect("the runner does not wait")
        };
        assert_eq!(
            run(&job).map(|d| d.summary),
            Ok(serde_json::json!("ctx: hi"))
        );
        job.payload = serde_json::json!({ "said": 3 });
        assert!(
            matches!(run(&job), Err(JobError::Permanent(e)) if e.starts_with("bad echo payload")),
            "a payload that does not parse fails for good"
        );
        job.kind = "gone".into();
        assert_eq!(
            run(&job).map(|d| d.summary),
            Err(JobError::Permanent("unknown job kind 'gone'".into()))
        );

        // A job without items of its own is one step; one that counts shows its count.
        assert_eq!(job.progress(), (0, Some(1)));
        job.state = JobState::Succeeded;
        assert_eq!(job.progress(), (1, Some(1)));
        job.state = JobState::Dead;
        assert_eq!(job.progress(), (0, Some(1)));
        (job.progress_done, job.progress_total) = (40, Some(181));
        assert_eq!(job.progress(), (40, Some(181)));
    }

    #[test]
    fn states_round_trip() {
        for s in [
            "queued",
            "running",
            "succeeded",
            "failed",
            "cancelled",
            "dead",
        ] {
            assert_eq!(JobState::parse(s).unwrap().as_str(), s);
        }
        assert!(JobState::Dead.is_finished());
        assert!(!JobState::Running.is_finished());
    }
}
