//! `JobStore` on diesel: the durable queue of work that outlives a request.
//! Workers claim due jobs with a lease: on PostgreSQL `FOR UPDATE SKIP LOCKED`
//! lets many claim at once without meeting; on SQLite `BEGIN IMMEDIATE` makes
//! claims take turns. Every later write checks the lease is still the worker's.
//!
//! A `unique_key` coalesces *queued* jobs: one queued job per key reads the
//! latest state when it runs. A job already running read its inputs when it
//! started, so a change made meanwhile queues a job of its own, which is not
//! claimed until the running one ends: the jobs of one key never run at once.
//! A `serial_key` only keeps jobs apart, of any kind: one of a key runs at a
//! time (a unique index on running jobs' serial keys holds it under races).

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{Array, Text, Timestamp};
use domain::jobs::{Done, Job, JobFailure, JobId, JobState, NewJob};
use domain::store::{Claim, JobStore, PageRequest, StoreError, StoreResult};
use domain::tenancy::DealerId;
use domain::Page;

use crate::audit::{parse_uuid, uuid_text};
use crate::connections::{corrupt, from_db_time, to_db_time};
use crate::db::{
    conflict_on_unique, into_page, keyed_reads_only, page_limit, per_backend, write_transaction,
    DbConnection, Fail,
};
use crate::field_issues::apply_settlements;
use crate::inbox::mark_all_processed;
use crate::prepared::kept_sql;
use crate::schema::jobs;
use crate::Store;

const QUEUED: &str = "queued";
const RUNNING: &str = "running";

/// How often a write goes round when a job changed state between its read and
/// its write (a claim, a cancel or a finish by someone else).
const WRITE_ATTEMPTS: usize = 4;

/// The last error of a job whose worker vanished during its last attempt.
const LOST_ON_LAST_ATTEMPT: &str =
    "the worker stopped answering (its lease ran out) during the last attempt";

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = jobs, treat_none_as_default_value = false)]
struct JobRow {
    id: String,
    dealer: String,
    kind: String,
    payload: String,
    state: String,
    attempts: i64,
    max_attempts: i64,
    run_at: NaiveDateTime,
    lease_owner: Option<String>,
    lease_expires_at: Option<NaiveDateTime>,
    progress_done: i64,
    progress_total: Option<i64>,
    summary: Option<String>,
    last_error: Option<String>,
    unique_key: Option<String>,
    serial_key: Option<String>,
    cancel_requested: bool,
    created_by: String,
    created_at: NaiveDateTime,
    started_at: Option<NaiveDateTime>,
    finished_at: Option<NaiveDateTime>,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn time_after(now: DateTime<Utc>, lease: chrono::Duration) -> NaiveDateTime {
    to_db_time(
        now.checked_add_signed(lease)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    )
}

impl JobRow {
    fn new(job: NewJob, now: NaiveDateTime) -> Self {
        Self {
            id: uuid_text(job.id.0),
            dealer: job.dealer.0,
            kind: job.kind,
            payload: job.payload.to_string(),
            state: QUEUED.to_owned(),
            attempts: 0,
            max_attempts: i64::from(job.max_attempts),
            run_at: to_db_time(job.run_at),
            lease_owner: None,
            lease_expires_at: None,
            progress_done: 0,
            progress_total: None,
            summary: None,
            last_error: None,
            unique_key: job.unique_key,
            serial_key: job.serial_key,
            cancel_requested: false,
            created_by: job.created_by,
            created_at: now,
            started_at: None,
            finished_at: None,
        }
    }

    fn into_domain(self) -> Result<Job, Fail> {
        let bad = |what: &str| corrupt(format!("job {} has a bad {what}", self.id));
        let json = |text: &str, what: &str| -> Result<serde_json::Value, Fail> {
            serde_json::from_str(text).map_err(|_| bad(what))
        };
        Ok(Job {
            id: JobId(parse_uuid(&self.id, "job")?),
            payload: json(&self.payload, "payload")?,
            summary: self
                .summary
                .as_deref()
                .map(|s| json(s, "summary"))
                .transpose()?,
            state: JobState::parse(&self.state).ok_or_else(|| bad("state"))?,
            attempts: u32::try_from(self.attempts).map_err(|_| bad("attempt count"))?,
            max_attempts: u32::try_from(self.max_attempts).map_err(|_| bad("attempt limit"))?,
            progress_done: u64::try_from(self.progress_done).map_err(|_| bad("progress"))?,
            progress_total: self
                .progress_total
                .map(u64::try_from)
                .transpose()
                .map_err(|_| bad("progress total"))?,
            dealer: DealerId(self.dealer),
            kind: self.kind,
            run_at: from_db_time(self.run_at),
            lease_owner: self.lease_owner,
            lease_expires_at: self.lease_expires_at.map(from_db_time),
            last_error: self.last_error,
            unique_key: self.unique_key,
            serial_key: self.serial_key,
            created_by: self.created_by,
            created_at: from_db_time(self.created_at),
            started_at: self.started_at.map(from_db_time),
            finished_at: self.finished_at.map(from_db_time),
        })
    }
}

fn find_job(conn: &mut DbConnection, dealer: &str, id: &str) -> QueryResult<Option<JobRow>> {
    jobs::table
        .filter(jobs::dealer.eq(dealer))
        .filter(jobs::id.eq(id))
        .select(JobRow::as_select())
        .first(conn)
        .optional()
}

/// The job while it runs under `worker`'s lease, as a filter.
macro_rules! leased {
    ($id:expr, $worker:expr) => {
        jobs::table
            .filter(jobs::id.eq($id))
            .filter(jobs::state.eq(RUNNING))
            .filter(jobs::lease_owner.eq($worker))
    };
}

/// Why a worker's write found no job running under its lease.
fn lease_lost(conn: &mut DbConnection, id: &str, worker: &str) -> Fail {
    let exists = jobs::table
        .filter(jobs::id.eq(id))
        .select(jobs::id)
        .first::<String>(conn)
        .optional();
    match exists {
        Ok(Some(_)) => StoreError::Conflict(format!(
            "lease lost: job {id} is no longer running under worker '{worker}'"
        ))
        .into(),
        Ok(None) => StoreError::NotFound.into(),
        Err(e) => e.into(),
    }
}

mod claim;
use claim::{claim_due, Claiming};

mod enqueue;
pub(crate) use enqueue::{enqueue_all_within, enqueue_within};
use enqueue::{enqueue_blocking, queued_with_key};

/// The PostgreSQL channel on which a new job is announced, by a trigger on
/// its insert (migration 000018), so every replica's runners wake up
/// ([`crate::Store::listen_for_jobs`]); delivered when the transaction commits.
pub(crate) const JOBS_CHANNEL: &str = "crosslink_jobs";

/// Records a success; false when the job no longer runs under `worker`.
/// Done is done, even when a cancel was asked meanwhile.
fn complete_one(
    conn: &mut DbConnection,
    id: &str,
    worker: &str,
    summary: String,
    now: NaiveDateTime,
) -> Result<bool, Fail> {
    // A job that ends well shows no error of an earlier attempt. The lease's
    // test is `leased!`'s.
    let completed = per_backend!(&mut *conn, |c| kept_sql(
        "UPDATE jobs SET state = ?, summary = ?, last_error = NULL, finished_at = ?, \
         lease_owner = NULL, lease_expires_at = NULL \
         WHERE id = ? AND state = ? AND lease_owner = ?"
    )
    .bind::<Text, _>(JobState::Succeeded.as_str())
    .bind::<Text, _>(&summary)
    .bind::<Timestamp, _>(now)
    .bind::<Text, _>(id)
    .bind::<Text, _>(RUNNING)
    .bind::<Text, _>(worker)
    .execute(c))?;
    Ok(completed == 1)
}

/// Records the successes of a batch and what they settled, in the caller's
/// transaction; returns the jobs no longer running under `worker` (whoever
/// holds such a job now settles its link).
fn complete_batch(
    conn: &mut DbConnection,
    worker: &str,
    done: Vec<(JobId, Done)>,
    now: NaiveDateTime,
) -> Result<Vec<JobId>, Fail> {
    // Every write here finds its rows by key. In a burst of callbacks on a
    // new database, `webhook_inbox` grew far past what ANALYZE last saw and
    // PostgreSQL marked each batch by hashing a read of the whole table:
    // 1.6 ms for nine rows, 107 such reads in 3.5 s (pg_stat_statements,
    // pg_stat_user_tables).
    keyed_reads_only(conn)?;
    let ids: Vec<String> = done.iter().map(|(id, _)| uuid_text(id.0)).collect();
    let summaries: Vec<String> = done.iter().map(|(_, d)| d.summary.to_string()).collect();
    let completed = complete_many(conn, &ids, summaries, worker, now)?;
    let mut lost = Vec::new();
    let mut settlements = Vec::new();
    let mut processed = Vec::new();
    for ((id, done), text) in done.into_iter().zip(&ids) {
        if !completed.contains(text) {
            lost.push(id);
            continue;
        }
        // A link unlinked meanwhile has nothing to keep.
        settlements.extend(done.settlement);
        processed.extend(done.processed);
    }
    apply_settlements(conn, settlements)?;
    mark_all_processed(conn, &processed, now)?;
    Ok(lost)
}

/// Records the successes of jobs `ids` (with their `summaries`); returns
/// those that were still running under `worker`. On PostgreSQL one
/// statement for the batch: a statement per job was a round trip each.
fn complete_many(
    conn: &mut DbConnection,
    ids: &[String],
    summaries: Vec<String>,
    worker: &str,
    now: NaiveDateTime,
) -> Result<HashSet<String>, Fail> {
    match conn {
        DbConnection::Postgresql(pg) if ids.len() > 1 => {
            #[derive(QueryableByName)]
            struct Completed {
                #[diesel(sql_type = Text)]
                id: String,
            }
            // The same writes and lease test as `complete_one`. PostgreSQL
            // plans this (and the settlements' `unnest` statements) at each
            // run, 0.35 ms each: a custom plan knows the array's length, so
            // it always looks cheaper. Not forced generic: made on a table
            // analyzed small, that plan hash-joins a scan of the whole
            // table, and `jobs` is not analyzed as it grows.
            let completed = kept_sql(
                "UPDATE jobs SET state = ?, summary = v.summary, last_error = NULL, \
                 finished_at = ?, lease_owner = NULL, lease_expires_at = NULL \
                 FROM unnest(?, ?) AS v(id, summary) \
                 WHERE jobs.id = v.id AND jobs.state = ? AND jobs.lease_owner = ? \
                 RETURNING jobs.id",
            )
            .bind::<Text, _>(JobState::Succeeded.as_str())
            .bind::<Timestamp, _>(now)
            .bind::<Array<Text>, _>(ids)
            .bind::<Array<Text>, _>(&summaries)
            .bind::<Text, _>(RUNNING)
            .bind::<Text, _>(worker)
            .load::<Completed>(pg)?;
            Ok(completed.into_iter().map(|c| c.id).collect())
        }
        _ => {
            let mut completed = HashSet::new();
            for (id, summary) in ids.iter().zip(summaries) {
                if complete_one(conn, id, worker, summary, now)? {
                    completed.insert(id.clone());
                }
            }
            Ok(completed)
        }
    }
}

fn fail_blocking(
    conn: &mut DbConnection,
    id: &str,
    worker: &str,
    failure: JobFailure,
) -> Result<JobState, Fail> {
    for _ in 0..WRITE_ATTEMPTS {
        match write_transaction(conn, |conn| fail_once(conn, id, worker, failure.clone())) {
            // A job of its key was queued between the check and the write
            // (PostgreSQL): the next round finds it and gives way to it.
            Err(Fail::Db(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _))) => {}
            other => return other,
        }
    }
    Err(StoreError::Conflict(format!("job {id} kept changing; try again")).into())
}

fn fail_once(
    conn: &mut DbConnection,
    id: &str,
    worker: &str,
    failure: JobFailure,
) -> Result<JobState, Fail> {
    let now = to_db_time(Utc::now());
    let job = leased!(id, worker)
        .select(JobRow::as_select())
        .first(conn)
        .optional()?;
    let Some(job) = job else {
        return Err(lease_lost(conn, id, worker));
    };
    // A retry would make a second queued job of its key: the one already
    // queued does the same work, with later inputs, so this one gives way.
    let queued_twin = match (&failure, &job.unique_key) {
        (JobFailure::Retry { .. } | JobFailure::Wait { .. }, Some(key))
            if !job.cancel_requested =>
        {
            queued_with_key(conn, &job.dealer, key)?.map(|twin| twin.id)
        }
        _ => None,
    };
    // An attempt made while the upstream was down is given back.
    let attempts = match &failure {
        JobFailure::Wait { .. } if !job.cancel_requested => (job.attempts - 1).max(0),
        _ => job.attempts,
    };
    let (state, error, run_at) = match (failure, queued_twin) {
        // It was asked to stop, and it stopped.
        (failure, _) if job.cancel_requested => {
            (JobState::Cancelled, failure_error(failure), job.run_at)
        }
        (JobFailure::Retry { error, .. } | JobFailure::Wait { error, .. }, Some(twin)) => (
            JobState::Cancelled,
            format!("{error} (superseded by job {twin}, queued with the same key)"),
            job.run_at,
        ),
        (JobFailure::Retry { error, at }, None) if job.attempts < job.max_attempts => {
            (JobState::Queued, error, to_db_time(at))
        }
        (JobFailure::Retry { error, .. }, None) => (JobState::Dead, error, job.run_at),
        (JobFailure::Wait { error, at }, None) => (JobState::Queued, error, to_db_time(at)),
        (JobFailure::Permanent { error }, _) => (JobState::Failed, error, job.run_at),
    };
    let finished_at = state.is_finished().then_some(now);
    let updated = diesel::update(leased!(id, worker).filter(jobs::attempts.eq(job.attempts)))
        .set((
            jobs::state.eq(state.as_str()),
            jobs::attempts.eq(attempts),
            jobs::last_error.eq(error),
            jobs::run_at.eq(run_at),
            jobs::finished_at.eq(finished_at),
            jobs::lease_owner.eq(None::<String>),
            jobs::lease_expires_at.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    if updated == 0 {
        return Err(lease_lost(conn, id, worker));
    }
    Ok(state)
}

fn failure_error(failure: JobFailure) -> String {
    match failure {
        JobFailure::Retry { error, .. }
        | JobFailure::Wait { error, .. }
        | JobFailure::Permanent { error } => error,
    }
}

fn cancel_blocking(conn: &mut DbConnection, dealer: &str, id: &str) -> Result<JobRow, Fail> {
    let now = to_db_time(Utc::now());
    for _ in 0..WRITE_ATTEMPTS {
        let job = find_job(conn, dealer, id)?.ok_or(StoreError::NotFound)?;
        let target = jobs::table
            .filter(jobs::id.eq(id))
            .filter(jobs::state.eq(job.state.clone()));
        let updated = match JobState::parse(&job.state) {
            Some(JobState::Queued) => diesel::update(target)
                .set((
                    jobs::state.eq(JobState::Cancelled.as_str()),
                    jobs::cancel_requested.eq(true),
                    jobs::finished_at.eq(now),
                ))
                .execute(conn)?,
            // Asked to stop: its next progress report answers false.
            Some(JobState::Running) => diesel::update(target)
                .set(jobs::cancel_requested.eq(true))
                .execute(conn)?,
            Some(JobState::Cancelled) => return Ok(job),
            _ => {
                return Err(StoreError::Conflict(format!(
                    "job {id} has already ended {}",
                    job.state
                ))
                .into())
            }
        };
        if updated == 1 {
            return find_job(conn, dealer, id)?.ok_or_else(|| StoreError::NotFound.into());
        }
        // Claimed or finished in between: decide again on its new state.
    }
    Err(StoreError::Conflict(format!("job {id} kept changing; try again")).into())
}

fn retry_blocking(conn: &mut DbConnection, dealer: &str, id: &str) -> Result<JobRow, Fail> {
    let now = to_db_time(Utc::now());
    let job = find_job(conn, dealer, id)?.ok_or(StoreError::NotFound)?;
    if !matches!(
        JobState::parse(&job.state),
        Some(JobState::Dead | JobState::Failed)
    ) {
        return Err(StoreError::Conflict(format!(
            "only a dead or failed job can be retried; job {id} is {}",
            job.state
        ))
        .into());
    }
    let updated = diesel::update(
        jobs::table
            .filter(jobs::id.eq(id))
            .filter(jobs::state.eq(&job.state)),
    )
    .set((
        jobs::state.eq(QUEUED),
        jobs::attempts.eq(0),
        jobs::run_at.eq(now),
        jobs::cancel_requested.eq(false),
        jobs::progress_done.eq(0),
        jobs::progress_total.eq(None::<i64>),
        jobs::summary.eq(None::<String>),
        jobs::started_at.eq(None::<NaiveDateTime>),
        jobs::finished_at.eq(None::<NaiveDateTime>),
        jobs::lease_owner.eq(None::<String>),
        jobs::lease_expires_at.eq(None::<NaiveDateTime>),
    ))
    .execute(conn);
    // The last error stays: it says why the job needed a hand.
    let updated = conflict_on_unique(updated, || {
        format!(
            "another job with the key '{}' is queued",
            job.unique_key.as_deref().unwrap_or_default()
        )
    })?;
    if updated == 0 {
        return Err(StoreError::Conflict(format!("job {id} changed meanwhile; try again")).into());
    }
    find_job(conn, dealer, id)?.ok_or_else(|| StoreError::NotFound.into())
}

#[async_trait]
impl JobStore for Store {
    /// With a `unique_key`, the job of that key that is still queued is
    /// returned instead of a new one; a running job of the key does not count
    /// (its inputs were read when it started), so a new job is queued beside
    /// it and claimed once it ends.
    async fn enqueue(&self, job: NewJob) -> StoreResult<Job> {
        let row = JobRow::new(job, to_db_time(Utc::now()));
        self.run(move |conn, _| enqueue_blocking(conn, row)?.into_domain())
            .await
    }

    async fn claim_jobs(&self, claim: Claim<'_>) -> StoreResult<Vec<Job>> {
        // No kinds, no work: a worker names what it can do.
        if claim.kinds.is_empty() || claim.limit == 0 {
            return Ok(Vec::new());
        }
        let lease_until = time_after(claim.now, claim.lease);
        let now = to_db_time(claim.now);
        let claiming = Claiming {
            kinds: claim.kinds.to_vec(),
            worker: claim.worker.to_owned(),
            limit: claim.limit,
            settle_lost_leases: claim.settle_lost_leases,
            max_running_per_dealer: claim.max_running_per_dealer,
            most_of_kind: claim.most_of_kind.to_vec(),
        };
        self.run(move |conn, _| {
            claim_due(conn, &claiming, now, lease_until)?
                .into_iter()
                .map(JobRow::into_domain)
                .collect()
        })
        .await
    }

    async fn renew_leases(
        &self,
        worker: &str,
        ids: &[JobId],
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = ids.iter().map(|id| uuid_text(id.0)).collect();
        let worker = worker.to_owned();
        let lease_until = time_after(now, lease);
        self.run(move |conn, _| {
            let renewed = diesel::update(
                jobs::table
                    .filter(jobs::id.eq_any(&ids))
                    .filter(jobs::state.eq(RUNNING))
                    .filter(jobs::lease_owner.eq(&worker)),
            )
            .set(jobs::lease_expires_at.eq(lease_until))
            .execute(conn)?;
            Ok(renewed as u64)
        })
        .await
    }

    async fn job_progress(
        &self,
        id: JobId,
        worker: &str,
        done: u64,
        total: Option<u64>,
    ) -> StoreResult<bool> {
        let id = uuid_text(id.0);
        let worker = worker.to_owned();
        self.run(move |conn, _| {
            let done = jobs::progress_done.eq(to_i64(done));
            // An unknown total leaves the one reported before.
            let recorded = match total {
                Some(total) => diesel::update(leased!(&id, &worker))
                    .set((done, jobs::progress_total.eq(Some(to_i64(total)))))
                    .execute(conn)?,
                None => diesel::update(leased!(&id, &worker))
                    .set(done)
                    .execute(conn)?,
            };
            if recorded == 0 {
                return Ok(false);
            }
            let cancel_requested: bool = jobs::table
                .filter(jobs::id.eq(&id))
                .select(jobs::cancel_requested)
                .first(conn)?;
            Ok(!cancel_requested)
        })
        .await
    }

    async fn complete_job(
        &self,
        id: JobId,
        worker: &str,
        summary: serde_json::Value,
    ) -> StoreResult<()> {
        let id = uuid_text(id.0);
        let worker = worker.to_owned();
        let summary = summary.to_string();
        let now = to_db_time(Utc::now());
        self.run(move |conn, _| {
            if complete_one(conn, &id, &worker, summary, now)? {
                Ok(())
            } else {
                Err(lease_lost(conn, &id, &worker))
            }
        })
        .await
    }

    async fn complete_jobs(
        &self,
        worker: &str,
        done: Vec<(JobId, Done)>,
    ) -> StoreResult<Vec<JobId>> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let worker = worker.to_owned();
        let now = to_db_time(Utc::now());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| complete_batch(conn, &worker, done, now))
        })
        .await
    }

    /// A retry of a keyed job while another job of its key is queued ends
    /// `Cancelled` instead (superseded, said in its last error): the queued
    /// job does the same work with later inputs.
    async fn fail_job(
        &self,
        id: JobId,
        worker: &str,
        failure: JobFailure,
    ) -> StoreResult<JobState> {
        let id = uuid_text(id.0);
        let worker = worker.to_owned();
        self.run(move |conn, _| fail_blocking(conn, &id, &worker, failure))
            .await
    }

    async fn job(&self, dealer: &DealerId, id: JobId) -> StoreResult<Job> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            find_job(conn, &dealer, &uuid_text(id.0))?
                .ok_or(StoreError::NotFound)?
                .into_domain()
        })
        .await
    }

    async fn list_jobs(
        &self,
        dealer: &DealerId,
        state: Option<JobState>,
        kind: Option<&str>,
        page: PageRequest,
    ) -> StoreResult<Page<Job>> {
        let dealer = dealer.0.clone();
        let kind = kind.map(str::to_owned);
        let limit = page_limit(&page);
        self.run(move |conn, _| {
            let mut query = jobs::table
                .filter(jobs::dealer.eq(dealer))
                .select(JobRow::as_select())
                // Newest first: v7 ids are time-ordered.
                .order(jobs::id.desc())
                .limit(limit as i64 + 1)
                .into_boxed();
            if let Some(state) = state {
                query = query.filter(jobs::state.eq(state.as_str()));
            }
            if let Some(kind) = kind {
                query = query.filter(jobs::kind.eq(kind));
            }
            if let Some(after) = page.after {
                query = query.filter(jobs::id.lt(after));
            }
            let rows: Vec<JobRow> = query.load(conn)?;
            into_page(rows, limit, |r| r.id.clone(), JobRow::into_domain)
        })
        .await
    }

    async fn cancel_job(&self, dealer: &DealerId, id: JobId) -> StoreResult<Job> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                cancel_blocking(conn, &dealer, &uuid_text(id.0))
            })?
            .into_domain()
        })
        .await
    }

    async fn retry_job(&self, dealer: &DealerId, id: JobId) -> StoreResult<Job> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| retry_blocking(conn, &dealer, &uuid_text(id.0)))?
                .into_domain()
        })
        .await
    }
}

/// What `/metrics` shows of the queue (see [`Store::job_stats`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobStats {
    /// (kind, state, jobs) of the states that do not pile up: queued,
    /// running, failed and dead. Succeeded and cancelled jobs are counted by
    /// the runner as they end (a table of millions is never counted).
    pub by_state: Vec<(String, String, u64)>,
    /// (kind, queued jobs due now, when the oldest of them was due).
    pub due: Vec<(String, u64, DateTime<Utc>)>,
    /// (kind, items done, items planned when known) summed over running jobs.
    pub progress: Vec<(String, u64, u64)>,
}

/// The states [`JobStats::by_state`] counts.
pub const COUNTED_STATES: [&str; 4] = [QUEUED, RUNNING, "failed", "dead"];

/// Most running jobs whose progress is summed (a runner runs a few dozen).
const PROGRESS_ROWS: i64 = 10_000;

impl Store {
    /// Counts for the operator's dashboard, in three statements that all
    /// go through `jobs_state_run_at` and read only unfinished, failed and
    /// dead jobs, never the succeeded ones that make up most of the table.
    pub async fn job_stats(&self, now: DateTime<Utc>) -> StoreResult<JobStats> {
        let now = to_db_time(now);
        self.run(move |conn, _| {
            use diesel::dsl::{count_star, min};
            let by_state: Vec<(String, String, i64)> = jobs::table
                .filter(jobs::state.eq_any(COUNTED_STATES))
                .group_by((jobs::kind, jobs::state))
                .select((jobs::kind, jobs::state, count_star()))
                .load(conn)?;
            let due: Vec<(String, i64, Option<NaiveDateTime>)> = jobs::table
                .filter(jobs::state.eq(QUEUED))
                .filter(jobs::run_at.le(now))
                .group_by(jobs::kind)
                .select((jobs::kind, count_star(), min(jobs::run_at)))
                .load(conn)?;
            let running: Vec<(String, i64, Option<i64>)> = jobs::table
                .filter(jobs::state.eq(RUNNING))
                .select((jobs::kind, jobs::progress_done, jobs::progress_total))
                .limit(PROGRESS_ROWS)
                .load(conn)?;
            let mut progress: Vec<(String, u64, u64)> = Vec::new();
            for (kind, done, total) in running {
                let (done, total) = (done.max(0) as u64, total.unwrap_or(0).max(0) as u64);
                match progress.iter_mut().find(|(k, _, _)| *k == kind) {
                    Some(entry) => {
                        entry.1 += done;
                        entry.2 += total;
                    }
                    None => progress.push((kind, done, total)),
                }
            }
            Ok(JobStats {
                by_state: by_state
                    .into_iter()
                    .map(|(kind, state, n)| (kind, state, n.max(0) as u64))
                    .collect(),
                due: due
                    .into_iter()
                    .filter_map(|(kind, n, oldest)| {
                        Some((kind, n.max(0) as u64, from_db_time(oldest?)))
                    })
                    .collect(),
                progress,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests;
