//! The job runner: claims due jobs from the durable queue, keeps their lease
//! alive while working, and records how they ended. Every replica runs one;
//! the queue makes sure each job runs in one place at a time.

use std::time::Duration;

use actix_web::web;
use chrono::Utc;
use domain::events::WebhookDelivery;
use domain::import::{AdcImportJob, RunSettings};
use domain::jobs::{
    backoff, outage_delay, Attempt, HasJobPorts, Job, JobFailure, JobPorts, Registry,
};
use domain::reconcile::ReconcileJob;
use domain::syncing_jobs::{ApplyStagesCallback, AutoSyncPush};
use tracing::Instrument;

use crate::state::AppState;

pub use domain::jobs::JobError;

const IDLE_POLL: Duration = Duration::from_millis(250);

/// Every kind of job this service runs. A kind missing here is never claimed.
pub fn registry() -> Registry<AppState> {
    Registry::default()
        .register::<AutoSyncPush>()
        .register::<ApplyStagesCallback>()
        .register::<ReconcileJob>()
        .register::<AdcImportJob>()
        .register::<WebhookDelivery>()
}

impl HasJobPorts for AppState {
    fn job_ports(&self) -> JobPorts<'_> {
        JobPorts {
            linking: self.linking(),
            imports: self.import_ports(),
            jobs: self.jobs.as_ref(),
            inbox: self.inbox.as_ref(),
            events: self.events.as_ref(),
            import_settings: RunSettings {
                read_concurrency: self.settings.adc.import_concurrency.max(1),
                ..RunSettings::default()
            },
        }
    }
}

/// Runs jobs until the process ends.
pub async fn run(state: web::Data<AppState>, worker_id: String) {
    let registry = registry();
    let kinds = registry.kinds();
    loop {
        let claimed = state
            .jobs
            .claim_job(&kinds, &worker_id, lease(&state), Utc::now())
            .await;
        match claimed {
            Ok(Some(job)) => run_one(&state, &registry, &worker_id, job).await,
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

async fn run_one(
    state: &web::Data<AppState>,
    registry: &Registry<AppState>,
    worker_id: &str,
    job: Job,
) {
    let span =
        tracing::info_span!("job", job_id = %job.id, kind = %job.kind, attempt = job.attempts);
    run_one_inner(state, registry, worker_id, job)
        .instrument(span)
        .await
}

async fn run_one_inner(
    state: &web::Data<AppState>,
    registry: &Registry<AppState>,
    worker_id: &str,
    job: Job,
) {
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
    let attempt = Attempt {
        job: &job,
        worker: worker_id,
    };
    let outcome = registry.run(state.get_ref(), attempt).await;
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

#[cfg(test)]
mod tests {
    use domain::jobs::kinds;

    /// The worker claims and runs every kind the service enqueues.
    #[test]
    fn the_registry_knows_every_kind() {
        let mut all = vec![
            kinds::RECONCILE,
            kinds::AUTO_SYNC_PUSH,
            kinds::STAGES_CALLBACK,
            kinds::WEBHOOK_DELIVERY,
            kinds::ADC_IMPORT,
        ];
        all.sort_unstable();
        assert_eq!(super::registry().kinds(), all);
    }
}
