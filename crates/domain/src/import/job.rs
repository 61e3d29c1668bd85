//! The queue job of a run (A4): it runs the import (or resumes it from its
//! checkpoint), and whatever the outcome ends the run once with its summary on
//! the change feed, so every run's state and counts are kept.

use async_trait::async_trait;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::{run_import, ImportCounts, ImportId, ImportRunError, ImportStore};
use crate::connection::ConnectionId;
use crate::events::{types, NewEvent};
use crate::jobs::{
    new_job, summary, Attempt, Done, HasJobPorts, JobError, JobKind, JobState, NewJob, RunJob,
};
use crate::store::StoreResult;
use crate::tenancy::{Caller, DealerId};

/// How often a run is tried when ADC keeps failing for a while.
pub const IMPORT_ATTEMPTS: u32 = 10;

/// The job that runs (or resumes) an import; its id is the import's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdcImportJob {
    pub import_id: ImportId,
    /// Runs of one connection take turns (the serial key); kept in the job
    /// row, not in the payload.
    #[serde(skip)]
    pub connection_id: Option<ConnectionId>,
}

impl JobKind for AdcImportJob {
    const KIND: &'static str = "adc_import";
    const MAX_ATTEMPTS: u32 = IMPORT_ATTEMPTS;

    fn serial_key(&self) -> Option<String> {
        self.connection_id.map(|c| format!("adc_import:{c}"))
    }
}

impl AdcImportJob {
    /// The queue row of the run `import_id`, asked for by `caller`.
    pub fn new_job(import_id: ImportId, connection_id: ConnectionId, caller: &Caller) -> NewJob {
        let job = Self {
            import_id,
            connection_id: Some(connection_id),
        };
        let mut row = new_job(&caller.dealer, &job, &caller.user.0, Utc::now());
        row.id = import_id.job_id();
        row
    }
}

/// Runs (or resumes from its checkpoint), then ends the import with its
/// summary on the change feed, whether it succeeded, failed, was cancelled,
/// or ran out of attempts.
#[async_trait]
impl<C: HasJobPorts + ?Sized> RunJob<C> for AdcImportJob {
    async fn run(self, ctx: &C, attempt: Attempt<'_>) -> Result<Done, JobError> {
        let ports = ctx.job_ports();
        let job = attempt.job;
        let progress = attempt.progress(ports.jobs);
        let result = run_import(
            ports.imports,
            &job.dealer,
            self.import_id,
            &progress,
            ports.import_settings,
        )
        .await;
        let (end, outcome) = match result {
            Ok(counts) => (
                Some((JobState::Succeeded, None)),
                summary(&ImportRunSummary {
                    import_id: self.import_id,
                    counts,
                }),
            ),
            // Progress answers "stop" when the job was cancelled, and also when
            // this worker lost its lease (another one now runs the import, and
            // records its end): only the first is the run's end.
            Err(ImportRunError::Cancelled) if !attempt.still_ours(ports.jobs).await => (
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
            // Got on before it stopped: try again without using up an attempt.
            Err(ImportRunError::Interrupted(e)) => (None, Err(JobError::Unavailable(e))),
            // The next attempt resumes; the last one ends the run.
            Err(ImportRunError::Transient(e)) => (
                (job.attempts >= job.max_attempts).then(|| (JobState::Dead, Some(e.clone()))),
                Err(JobError::Transient(e)),
            ),
        };
        if let Some((end, error)) = end {
            if let Err(e) = finish_import(
                ports.imports.imports,
                &job.dealer,
                self.import_id,
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
}

/// What a finished run's job records.
#[derive(Serialize)]
struct ImportRunSummary {
    import_id: ImportId,
    counts: ImportCounts,
}

/// Ends a run: records how it ended and puts its summary on the change feed,
/// once (a run ended twice, after a crash, says so once).
pub async fn finish_import(
    imports: &dyn ImportStore,
    dealer: &DealerId,
    id: ImportId,
    state: JobState,
    error: Option<&str>,
) -> StoreResult<bool> {
    let import = imports.import(dealer, id).await?;
    let c = import.counts;
    let summary = NewEvent {
        event_type: types::IMPORT_FINISHED.into(),
        subject_kind: "import".into(),
        subject_id: id.to_string(),
        connection_id: Some(import.connection_id),
        data: serde_json::json!({
            "import_id": id,
            "kind": import.spec.kind(),
            "state": state.as_str(),
            "counts": c,
            "error": error,
            "summary": format!(
                "Alarm.com {} import {}: {} seen, {} imported, {} already imported, {} filtered out, {} failed",
                import.spec.kind().as_str(),
                state.as_str(),
                c.seen, c.imported, c.already_imported, c.filtered_out, c.failed
            ),
        }),
    };
    imports.finish_import(dealer, id, state, summary).await
}
