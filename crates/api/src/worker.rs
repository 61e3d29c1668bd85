//! The job runner: claims due jobs from the durable queue, keeps their lease
//! alive while working, and records how they ended. Every replica runs one;
//! the queue makes sure each job runs in one place at a time.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use async_trait::async_trait;
use chrono::Utc;
use domain::connection::ConnectionId;
use domain::jobs::{backoff, kinds, outage_delay, Job, JobFailure, JobId, NewJob};
use domain::operations::OperationError;
use domain::reconcile::Progress;
use domain::stages::StagesError;
use domain::store::JobStore;
use domain::tenancy::{Caller, Role, UserId};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::state::AppState;

const IDLE_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Serialize, Deserialize)]
struct ReconcilePayload {
    connection_id: ConnectionId,
    dry_run: bool,
}

/// A reconcile of one connection; one at a time per connection.
pub fn reconcile_job(caller: &Caller, connection_id: ConnectionId, dry_run: bool) -> NewJob {
    NewJob {
        id: JobId::new(),
        dealer: caller.dealer.clone(),
        kind: kinds::RECONCILE.to_owned(),
        payload: serde_json::to_value(ReconcilePayload {
            connection_id,
            dry_run,
        })
        .expect("plain data serialises"),
        max_attempts: 5,
        run_at: Utc::now(),
        unique_key: Some(format!("reconcile:{connection_id}:{dry_run}")),
        serial_key: None,
        created_by: caller.user.0.clone(),
    }
}

/// Runs jobs until the process ends.
pub async fn run(state: web::Data<AppState>, worker_id: String) {
    let kinds = vec![
        kinds::RECONCILE.to_owned(),
        kinds::AUTO_SYNC_PUSH.to_owned(),
        kinds::STAGES_CALLBACK.to_owned(),
        kinds::WEBHOOK_DELIVERY.to_owned(),
        kinds::ADC_IMPORT.to_owned(),
    ];
    loop {
        let claimed = state
            .jobs
            .claim_job(&kinds, &worker_id, lease(&state), Utc::now())
            .await;
        match claimed {
            Ok(Some(job)) => run_one(&state, &worker_id, job).await,
            Ok(None) => {
                // Other replicas' work is found by polling; our own wakes us at once.
                tokio::select! {
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = state.jobs_wake.notified() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "claiming a job failed");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

fn lease(state: &AppState) -> chrono::Duration {
    chrono::Duration::seconds(state.settings.jobs.lease_secs.max(1) as i64)
}

async fn run_one(state: &web::Data<AppState>, worker_id: &str, job: Job) {
    let span =
        tracing::info_span!("job", job_id = %job.id, kind = %job.kind, attempt = job.attempts);
    run_one_inner(state, worker_id, job).instrument(span).await
}

async fn run_one_inner(state: &web::Data<AppState>, worker_id: &str, job: Job) {
    tracing::info!("job started");
    // Keep the lease while the job works; a lost lease means another worker took it.
    let renewer = {
        let jobs = state.jobs.clone();
        let worker = worker_id.to_owned();
        let id = job.id;
        let lease = lease(state);
        let every = lease.to_std().unwrap_or(Duration::from_secs(1)) / 3;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match jobs.renew_lease(id, &worker, lease, Utc::now()).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => tracing::warn!(error = %e, "renewing a lease failed"),
                }
            }
        })
    };
    let outcome = match job.kind.as_str() {
        kinds::RECONCILE => run_reconcile(state, worker_id, &job).await,
        kinds::AUTO_SYNC_PUSH => run_auto_sync(state, &job).await,
        kinds::STAGES_CALLBACK => run_stages_callback(state, &job).await,
        kinds::WEBHOOK_DELIVERY => crate::delivery::deliver(state, &job).await,
        kinds::ADC_IMPORT => run_adc_import(state, worker_id, &job).await,
        other => Err(JobError::Permanent(format!("unknown job kind '{other}'"))),
    };
    renewer.abort();
    let result = match outcome {
        Ok(summary) => state
            .jobs
            .complete_job(job.id, worker_id, summary)
            .await
            .map(|_| "succeeded".to_owned()),
        Err(e) => {
            let settings = &state.settings.jobs;
            let at = Utc::now()
                + backoff(
                    job.attempts,
                    chrono::Duration::milliseconds(settings.retry_base_ms as i64),
                    chrono::Duration::milliseconds(settings.retry_cap_ms as i64),
                    rand::random::<f64>(),
                );
            let age = Utc::now() - job.created_at;
            let patient = age < chrono::Duration::seconds(settings.outage_patience_secs as i64);
            let failure = match e {
                JobError::Permanent(error) => JobFailure::Permanent { error },
                JobError::Unavailable(error) if patient => JobFailure::Wait {
                    error,
                    at: Utc::now()
                        + outage_delay(
                            age,
                            chrono::Duration::milliseconds(settings.retry_base_ms as i64),
                            chrono::Duration::milliseconds(settings.retry_cap_ms as i64),
                            rand::random::<f64>(),
                        ),
                },
                JobError::Transient(error) | JobError::Unavailable(error) => {
                    JobFailure::Retry { error, at }
                }
            };
            state
                .jobs
                .fail_job(job.id, worker_id, failure)
                .await
                .map(|s| s.as_str().to_owned())
        }
    };
    match result {
        Ok(state) => tracing::info!(%state, "job ended"),
        Err(e) => tracing::warn!(error = %e, "recording the end of a job failed"),
    }
}

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
            OperationError::Store(domain::store::StoreError::Unavailable(_)) => true,
            // The record changed between the job's read and its write: read again.
            OperationError::Store(domain::store::StoreError::VersionMismatch) => true,
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

/// Whether `job` still runs under this worker's lease.
async fn still_ours(state: &web::Data<AppState>, job: &Job, worker_id: &str) -> bool {
    match state.jobs.job(&job.dealer, job.id).await {
        Ok(now) => now.lease_owner.as_deref() == Some(worker_id),
        // Unknown: take the cancel at its word.
        Err(_) => true,
    }
}

/// Job progress goes to the queue; a cancelled job stops at the next report.
struct QueueProgress {
    jobs: Arc<dyn JobStore>,
    id: JobId,
    worker: String,
}

#[async_trait]
impl Progress for QueueProgress {
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

async fn run_reconcile(
    state: &web::Data<AppState>,
    worker_id: &str,
    job: &Job,
) -> Result<serde_json::Value, JobError> {
    let payload: ReconcilePayload = serde_json::from_value(job.payload.clone())
        .map_err(|e| JobError::Permanent(format!("bad reconcile payload: {e}")))?;
    // The job acts with the credentials of whoever asked for it.
    let caller = Caller {
        dealer: job.dealer.clone(),
        user: UserId(job.created_by.clone()),
        roles: vec![Role::Operator],
    };
    let progress = QueueProgress {
        jobs: state.jobs.clone(),
        id: job.id,
        worker: worker_id.to_owned(),
    };
    let report = domain::reconcile::reconcile(
        state.linking(),
        &caller,
        payload.connection_id,
        payload.dry_run,
        &progress,
    )
    .await?;
    serde_json::to_value(report).map_err(|e| JobError::Permanent(e.to_string()))
}

fn payload<T: serde::de::DeserializeOwned>(job: &Job) -> Result<T, JobError> {
    serde_json::from_value(job.payload.clone())
        .map_err(|e| JobError::Permanent(format!("bad {} payload: {e}", job.kind)))
}

#[derive(Deserialize)]
struct LinkPayload {
    link_id: domain::link::LinkId,
}

/// Auto Sync: the fields billing changed go to Stages.
async fn run_auto_sync(
    state: &web::Data<AppState>,
    job: &Job,
) -> Result<serde_json::Value, JobError> {
    let p: LinkPayload = payload(job)?;
    let outcome = domain::syncing::auto_sync_push(state.linking(), &job.dealer, p.link_id).await?;
    serde_json::to_value(outcome).map_err(|e| JobError::Permanent(e.to_string()))
}

#[derive(Deserialize)]
struct CallbackPayload {
    connection_id: ConnectionId,
    event_id: String,
}

/// A stored Stages callback, applied to the billing records.
async fn run_stages_callback(
    state: &web::Data<AppState>,
    job: &Job,
) -> Result<serde_json::Value, JobError> {
    let p: CallbackPayload = payload(job)?;
    let stored = state
        .inbox
        .callback(&job.dealer, p.connection_id, &p.event_id)
        .await
        .map_err(OperationError::from)?;
    let callback: domain::stages::StagesCallback = serde_json::from_value(stored)
        .map_err(|e| JobError::Permanent(format!("stored callback does not parse: {e}")))?;
    let connection = state
        .connections
        .connection(&job.dealer, p.connection_id)
        .await
        .map_err(OperationError::from)?;
    let outcome = domain::syncing::apply_stages_callback(
        state.linking(),
        state.events.as_ref(),
        &connection,
        &callback.event,
    )
    .await?;
    let note = format!("{}: {}", outcome.outcome, outcome.detail);
    state
        .inbox
        .mark_callback(&job.dealer, p.connection_id, &p.event_id, &note)
        .await
        .map_err(OperationError::from)?;
    serde_json::to_value(outcome).map_err(|e| JobError::Permanent(e.to_string()))
}

/// An Alarm.com import: runs (or resumes from its checkpoint), then ends with
/// its summary on the change feed, whether it succeeded, failed, was
/// cancelled, or ran out of attempts.
async fn run_adc_import(
    state: &web::Data<AppState>,
    worker_id: &str,
    job: &Job,
) -> Result<serde_json::Value, JobError> {
    use domain::import::{
        finish_import, run_import, ImportJobPayload, ImportRunError, RunSettings,
    };
    use domain::jobs::JobState;

    let p: ImportJobPayload = payload(job)?;
    let progress = QueueProgress {
        jobs: state.jobs.clone(),
        id: job.id,
        worker: worker_id.to_owned(),
    };
    let settings = RunSettings {
        read_concurrency: state.settings.adc.import_concurrency.max(1),
        ..RunSettings::default()
    };
    let result = run_import(
        state.import_ports(),
        &job.dealer,
        p.import_id,
        &progress,
        settings,
    )
    .await;
    let (end, outcome) = match result {
        Ok(counts) => (
            Some((JobState::Succeeded, None)),
            Ok(serde_json::json!({ "import_id": p.import_id, "counts": counts })),
        ),
        // Progress answers "stop" when the job was cancelled, and also when
        // this worker lost its lease (another one now runs the import, and
        // records its end): only the first is the run's end.
        Err(ImportRunError::Cancelled) if !still_ours(state, job, worker_id).await => (
            None,
            Err(JobError::Transient(
                "the lease was lost; another worker goes on".into(),
            )),
        ),
        Err(ImportRunError::Cancelled) => (
            Some((JobState::Cancelled, None)),
            Err(JobError::Permanent(ImportRunError::Cancelled.to_string())),
        ),
        Err(ImportRunError::Permanent(e)) => (
            Some((JobState::Failed, Some(e.clone()))),
            Err(JobError::Permanent(e)),
        ),
        // The next attempt resumes; the last one ends the run.
        Err(ImportRunError::Transient(e)) => (
            (job.attempts >= job.max_attempts).then(|| (JobState::Dead, Some(e.clone()))),
            Err(JobError::Transient(e)),
        ),
    };
    if let Some((end, error)) = end {
        if let Err(e) = finish_import(
            state.imports.as_ref(),
            &job.dealer,
            p.import_id,
            end,
            error.as_deref(),
        )
        .await
        {
            tracing::warn!(error = %e, "recording the end of an import failed");
        }
    }
    outcome
}
