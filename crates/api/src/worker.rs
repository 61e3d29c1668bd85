//! The job runner: claims due jobs from the durable queue in batches, runs
//! up to `jobs.workers` of them at once, keeps their leases alive with one
//! statement per round and records successes in batches. Every replica runs
//! one; the queue makes sure each job runs in one place at a time (and one
//! job of a serial key at a time).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web;
use chrono::Utc;
use domain::batch::{BatchJob, BatchPorts, HasBatchPorts};
use domain::events::WebhookDelivery;
use domain::import::{AdcImportJob, RunSettings};
use domain::jobs::{
    backoff, kinds, outage_delay, Attempt, Done, HasJobPorts, Job, JobFailure, JobId, JobPorts,
    JobState, Registry,
};
use domain::link_sync::jobs::{ApplyStagesCallback, AutoSyncPush};
use domain::reconcile::ReconcileJob;
use domain::store::{Claim, StoreError};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
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
        .register::<BatchJob>()
}

impl HasBatchPorts for AppState {
    fn batch_ports(&self) -> BatchPorts<'_> {
        AppState::batch_ports(self)
    }
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

/// How long a claim waits for more free slots once one is free, so that a
/// busy runner claims several jobs per statement rather than one at a time.
const GATHER: Duration = Duration::from_millis(5);

/// The least time between two claims while they come back short. What is
/// due but not claimed is held back (its dealer at its cap, its key
/// running), and every billing edit wakes the runner: without a spacing a
/// burst of edits made a claim per edit that took nothing (a write
/// transaction each, holding SQLite's one writer).
const SHORT_CLAIM_SPACING: Duration = Duration::from_millis(10);

/// How often the runner also looks after the jobs whose lease ran out: it
/// takes them back first, or ends those asked to stop or out of attempts.
const SETTLE_LOST_EVERY: Duration = Duration::from_secs(2);

/// Most successes recorded in one transaction.
const ENDS_PER_BATCH: usize = 128;

/// The jobs this runner holds a lease on: renewed together, forgotten when
/// their end is recorded (or could not be, so their lease runs out).
type Held = Arc<Mutex<HashSet<JobId>>>;

/// What every running job of this runner shares.
struct Runner {
    registry: Registry<AppState>,
    worker_id: String,
    held: Held,
    ends: mpsc::UnboundedSender<Success>,
    /// Stages callbacks being applied now.
    applying: AtomicUsize,
    /// Told when one of them ends.
    callback_ended: tokio::sync::Notify,
}

/// A claimed job's place in this runner, given back once its end is
/// recorded (or its task unwinds).
struct Slot {
    _permit: OwnedSemaphorePermit,
    /// For a callback: counted as applied until then. Freed with the
    /// permit, the count never lets a claim in beside a callback whose end
    /// is still being written (a moment when the queue shows one more
    /// running than the room).
    _applying: Option<Applying>,
}

/// Counts a callback as applied from its claim until its slot is freed.
struct Applying(Arc<Runner>);

impl Applying {
    fn start(runner: &Arc<Runner>) -> Self {
        runner.applying.fetch_add(1, Ordering::Relaxed);
        Self(runner.clone())
    }
}

impl Drop for Applying {
    fn drop(&mut self) {
        self.0.applying.fetch_sub(1, Ordering::Relaxed);
        self.0.callback_ended.notify_one();
    }
}

/// Runs jobs until the process ends, `concurrency` at a time.
pub async fn run(state: web::Data<AppState>, worker_id: String, concurrency: usize) {
    let held: Held = Arc::default();
    let runner = Arc::new(Runner {
        registry: registry(),
        worker_id: worker_id.clone(),
        held: held.clone(),
        ends: spawn_recorder(state.clone(), worker_id.clone(), held.clone()),
        applying: AtomicUsize::new(0),
        callback_ended: tokio::sync::Notify::new(),
    });
    let kinds = runner.registry.kinds();
    let kinds_but_callbacks: Vec<String> = kinds
        .iter()
        .filter(|k| k.as_str() != kinds::STAGES_CALLBACK)
        .cloned()
        .collect();
    let most_callbacks = state.settings.jobs.most_callbacks_at_once(concurrency);
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    tokio::spawn(renew_leases(state.clone(), worker_id.clone(), held.clone()));
    let want = (concurrency / 4).max(1);
    let mut settled_at: Option<Instant> = None;
    loop {
        let permits = free_slots(&slots, want).await;
        let asked = permits.len();
        let claimed_at = tokio::time::Instant::now();
        let settle = settled_at.is_none_or(|t| t.elapsed() >= SETTLE_LOST_EVERY);
        let room = most_callbacks.saturating_sub(runner.applying.load(Ordering::Relaxed));
        let (kinds_now, most_of_kind) = if room == 0 {
            (&kinds_but_callbacks, Vec::new())
        } else {
            (&kinds, vec![(kinds::STAGES_CALLBACK.to_owned(), room)])
        };
        let claim = Claim {
            most_of_kind: &most_of_kind,
            ..claim(&state, kinds_now, &worker_id, permits.len(), settle)
        };
        match state.jobs.claim_jobs(claim).await {
            Ok(jobs) => {
                if settle {
                    settled_at = Some(Instant::now());
                }
                let claimed = jobs.len();
                let mut permits = permits.into_iter();
                for job in jobs {
                    let permit = permits.next().expect("a slot per claimed job");
                    held.lock().expect("held jobs").insert(job.id);
                    let slot = Slot {
                        _permit: permit,
                        _applying: (job.kind == kinds::STAGES_CALLBACK)
                            .then(|| Applying::start(&runner)),
                    };
                    let (state, runner) = (state.clone(), runner.clone());
                    tokio::spawn(async move {
                        // A job that panics stops being renewed: its lease runs out.
                        let _forget = ForgetOnPanic {
                            held: runner.held.clone(),
                            id: job.id,
                        };
                        run_one(&state, &runner, job, slot).await
                    });
                }
                // Nothing more due for now: wait for an enqueue here or in
                // another replica (LISTEN on PostgreSQL) or an end, or poll.
                // With no room for callbacks, every callback taken in would
                // wake this runner into a claim that takes nothing: it waits
                // for one of them to end instead (they end every few ms in a
                // burst).
                if claimed < asked {
                    if claimed == 0 {
                        tokio::select! {
                            _ = tokio::time::sleep(IDLE_POLL) => {}
                            _ = state.jobs_wake.notified(), if room > 0 => {}
                            _ = runner.callback_ended.notified(), if room == 0 => {}
                        }
                    }
                    tokio::time::sleep_until(claimed_at + SHORT_CLAIM_SPACING).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "claiming jobs failed");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// Drops a job from the held set when its task unwinds from a panic, so its
/// lease is no longer renewed and another attempt takes it after it runs out.
struct ForgetOnPanic {
    held: Held,
    id: JobId,
}

impl Drop for ForgetOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(mut held) = self.held.lock() {
                held.remove(&self.id);
            }
        }
    }
}

/// At least one free slot, and up to `want` when they free up within
/// [`GATHER`], and any others free right now.
async fn free_slots(slots: &Arc<Semaphore>, want: usize) -> Vec<OwnedSemaphorePermit> {
    let first = slots.clone().acquire_owned().await.expect("never closed");
    let mut permits = vec![first];
    let deadline = tokio::time::Instant::now() + GATHER;
    while permits.len() < want {
        match tokio::time::timeout_at(deadline, slots.clone().acquire_owned()).await {
            Ok(permit) => permits.push(permit.expect("never closed")),
            Err(_) => break,
        }
    }
    while let Ok(permit) = slots.clone().try_acquire_owned() {
        permits.push(permit);
    }
    permits
}

/// Extends the lease of every job this runner holds, a third of a lease
/// apart, in one statement.
async fn renew_leases(state: web::Data<AppState>, worker_id: String, held: Held) {
    let every = lease(&state).to_std().unwrap_or(Duration::from_secs(1)) / 3;
    loop {
        tokio::time::sleep(every).await;
        let ids: Vec<JobId> = held.lock().expect("held jobs").iter().copied().collect();
        if let Err(e) = state
            .jobs
            .renew_leases(&worker_id, &ids, lease(&state), Utc::now())
            .await
        {
            tracing::warn!(error = %e, "renewing leases failed");
        }
    }
}

/// A job's success, waiting to be recorded.
struct Success {
    id: JobId,
    done: Done,
    /// The job's slot, free once its end is recorded: a runner never holds
    /// more unrecorded jobs than it runs at once.
    slot: Slot,
}

/// Records successes as they come, many per transaction when they come
/// fast. When a batch cannot be recorded, each job is recorded on its own,
/// and a job whose end still cannot be recorded is queued to run again
/// (every job is written to allow that).
fn spawn_recorder(
    state: web::Data<AppState>,
    worker_id: String,
    held: Held,
) -> mpsc::UnboundedSender<Success> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Success>();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(ENDS_PER_BATCH);
        while rx.recv_many(&mut batch, ENDS_PER_BATCH).await > 0 {
            let ids: Vec<JobId> = batch.iter().map(|s| s.id).collect();
            let (done, slots): (Vec<_>, Vec<_>) =
                batch.drain(..).map(|s| ((s.id, s.done), s.slot)).unzip();
            record_ends(&state, &worker_id, done).await;
            // A job of the same key (the next push of a link, a callback
            // about its record) may have been waiting for these to end.
            state.jobs_wake.notify_one();
            let mut held = held.lock().expect("held jobs");
            for id in &ids {
                held.remove(id);
            }
            drop(slots);
        }
    });
    tx
}

async fn record_ends(state: &AppState, worker_id: &str, done: Vec<(JobId, Done)>) {
    let alone = done.len() == 1;
    let error = match state.jobs.complete_jobs(worker_id, done.clone()).await {
        Ok(lost) => {
            for id in lost {
                tracing::warn!(job_id = %id, "job ended after its lease was lost; not recorded");
            }
            return;
        }
        Err(e) => e,
    };
    if !alone {
        // One job's settlement may be what failed: the others need not wait.
        for one in done {
            Box::pin(record_ends(state, worker_id, vec![one])).await;
        }
        return;
    }
    let id = done[0].0;
    tracing::warn!(job_id = %id, error = %error, "recording a job's end failed; it runs again");
    let again = JobFailure::Retry {
        error: format!("its end could not be recorded: {error}"),
        at: Utc::now(),
    };
    if let Err(e) = state.jobs.fail_job(id, worker_id, again).await {
        tracing::warn!(job_id = %id, error = %e, "the job waits for its lease to run out");
    }
}

/// A claim, now, of up to `limit` due jobs of `kinds` for `worker`, with
/// this service's lease and cap of running jobs per dealer.
fn claim<'a>(
    state: &AppState,
    kinds: &'a [String],
    worker: &'a str,
    limit: usize,
    settle_lost_leases: bool,
) -> Claim<'a> {
    Claim {
        kinds,
        worker,
        lease: lease(state),
        now: Utc::now(),
        limit,
        settle_lost_leases,
        max_running_per_dealer: state
            .settings
            .jobs
            .max_running_per_dealer(state.store.backend()),
        most_of_kind: &[],
    }
}

fn lease(state: &AppState) -> chrono::Duration {
    chrono::Duration::seconds(state.settings.jobs.lease_secs.max(1) as i64)
}

async fn run_one(state: &web::Data<AppState>, runner: &Runner, job: Job, slot: Slot) {
    let span =
        tracing::info_span!("job", job_id = %job.id, kind = %job.kind, attempt = job.attempts);
    run_one_inner(state, runner, job, slot)
        .instrument(span)
        .await
}

async fn run_one_inner(state: &web::Data<AppState>, runner: &Runner, job: Job, slot: Slot) {
    let worker_id = runner.worker_id.as_str();
    let started = Instant::now();
    let kind = job.kind.clone();
    tracing::info!("job started");
    let attempt = Attempt {
        job: &job,
        worker: worker_id,
    };
    let outcome = runner.registry.run(state.get_ref(), attempt).await;
    let result = match outcome {
        Ok(done) => {
            let id = job.id;
            // A reconcile wrote many rows: plans should see them. In the
            // background: the job's end does not wait for it. (An import
            // refreshes its own tables as it grows them.)
            if job.kind == kinds::RECONCILE {
                let store = state.store.clone();
                tokio::spawn(async move {
                    if let Err(e) = store.refresh_statistics(link_store::GROWING_TABLES).await {
                        tracing::warn!(error = %e, "refreshing the planner's statistics failed");
                    }
                });
            }
            // Recorded with others that end about now; "job ended" is logged
            // here, the recorder logs a failure to record it.
            if runner.ends.send(Success { id, done, slot }).is_err() {
                tracing::warn!("the job recorder has stopped; the job will run again");
            }
            Ok("succeeded".to_owned())
        }
        Err(e) => {
            let recorded = state
                .jobs
                .fail_job(job.id, worker_id, failure_of(state, &job, e))
                .await
                .map(|s| s.as_str().to_owned());
            runner.held.lock().expect("held jobs").remove(&job.id);
            state.jobs_wake.notify_one();
            recorded
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(ended) => {
            // A failure that goes back to the queue is a retry, not an end.
            let outcome = if ended == JobState::Queued.as_str() {
                "retry"
            } else {
                ended.as_str()
            };
            state.metrics.job_ended(&kind, outcome, seconds);
            tracing::info!(state = %ended, "job ended")
        }
        Err(e) => {
            state.metrics.job_ended(&kind, "unrecorded", seconds);
            tracing::warn!(error = %e, "recording the end of a job failed")
        }
    }
}

/// What a failed attempt of `job` leaves: an end for good, a retry after
/// the backoff, or, while an upstream is down, a wait that uses no attempt.
fn failure_of(state: &AppState, job: &Job, e: JobError) -> JobFailure {
    let settings = &state.settings.jobs;
    let base = chrono::Duration::milliseconds(settings.retry_base_ms as i64);
    let cap = chrono::Duration::milliseconds(settings.retry_cap_ms as i64);
    let age = Utc::now() - job.created_at;
    let patient = age < chrono::Duration::seconds(settings.outage_patience_secs as i64);
    match e {
        JobError::Permanent(error) => JobFailure::Permanent { error },
        JobError::Unavailable(error) if patient => JobFailure::Wait {
            error,
            at: Utc::now() + outage_delay(age, base, cap, rand::random::<f64>()),
        },
        JobError::Transient(error) | JobError::Unavailable(error) => JobFailure::Retry {
            error,
            at: Utc::now() + backoff(job.attempts, base, cap, rand::random::<f64>()),
        },
    }
}

/// Runs every job that is due now, one at a time in this task, until none
/// is: what a test drives in place of a runner (as crates.io's
/// `run_pending_background_jobs`). Jobs these queue run too, once due; one
/// whose retry comes later stays queued. Returns how many attempts ran.
pub async fn run_pending(state: &web::Data<AppState>) -> Result<usize, StoreError> {
    const WORKER: &str = "run-pending";
    let registry = registry();
    let kinds = registry.kinds();
    let mut ran = 0;
    loop {
        let jobs = state
            .jobs
            .claim_jobs(claim(state, &kinds, WORKER, 16, true))
            .await?;
        if jobs.is_empty() {
            return Ok(ran);
        }
        for job in jobs {
            ran += 1;
            let attempt = Attempt {
                job: &job,
                worker: WORKER,
            };
            match registry.run(state.get_ref(), attempt).await {
                Ok(done) => record_ends(state, WORKER, vec![(job.id, done)]).await,
                Err(e) => {
                    let failure = failure_of(state, &job, e);
                    state.jobs.fail_job(job.id, WORKER, failure).await?;
                }
            }
        }
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
            kinds::BATCH,
        ];
        all.sort_unstable();
        assert_eq!(super::registry().kinds(), all);
    }
}
