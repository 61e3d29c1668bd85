//! Background jobs: their state, progress and outcome.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use domain::jobs::{Job, JobId, JobState};
use domain::tenancy::Role;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Auth;
use crate::extract::{page_parts, NoBody, PageParams, Query};
use crate::problem::{ApiError, ApiResult};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/jobs/{job_id}:retry", web::post().to(retry_job))
        .route("/jobs/{job_id}:cancel", web::post().to(cancel_job))
        .route("/jobs", web::get().to(list_jobs))
        .route("/jobs/{job_id}", web::get().to(get_job));
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStateDto {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Dead,
}

impl From<JobState> for JobStateDto {
    fn from(s: JobState) -> Self {
        match s {
            JobState::Queued => Self::Queued,
            JobState::Running => Self::Running,
            JobState::Succeeded => Self::Succeeded,
            JobState::Failed => Self::Failed,
            JobState::Cancelled => Self::Cancelled,
            JobState::Dead => Self::Dead,
        }
    }
}

impl From<JobStateDto> for JobState {
    fn from(s: JobStateDto) -> Self {
        match s {
            JobStateDto::Queued => Self::Queued,
            JobStateDto::Running => Self::Running,
            JobStateDto::Succeeded => Self::Succeeded,
            JobStateDto::Failed => Self::Failed,
            JobStateDto::Cancelled => Self::Cancelled,
            JobStateDto::Dead => Self::Dead,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
/// How far a job is: items done of the total. A job without items of its own
/// (an Auto Sync push, a callback) is one step: `0 of 1`, then `1 of 1`.
pub struct JobProgress {
    pub done: u64,
    /// Unknown (null) while a job is still counting what it has to do.
    pub total: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobResponse {
    pub id: Uuid,
    #[schema(value_type = crate::dto::JobKind)]
    pub kind: String,
    pub state: JobStateDto,
    pub progress: JobProgress,
    pub attempts: u32,
    /// What the job found or did, once finished.
    #[schema(value_type = Option<Object>)]
    pub summary: Option<serde_json::Value>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<Job> for JobResponse {
    fn from(j: Job) -> Self {
        let (done, total) = j.progress();
        Self {
            id: j.id.0,
            kind: j.kind,
            state: j.state.into(),
            progress: JobProgress { done, total },
            attempts: j.attempts,
            summary: j.summary,
            error: j.last_error,
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub items: Vec<JobResponse>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobFilter {
    pub state: Option<JobStateDto>,
    /// Only jobs of this kind (see a job's `kind` for the values); another
    /// value matches no job.
    pub kind: Option<String>,
}

fn job_id(raw: &str) -> ApiResult<JobId> {
    Uuid::parse_str(raw)
        .map(JobId)
        .map_err(|_| ApiError::not_found("no such job"))
}

fn job_not_found(e: domain::store::StoreError) -> ApiError {
    match e {
        domain::store::StoreError::NotFound => ApiError::not_found("no such job"),
        other => other.into(),
    }
}

/// Retry a job.
///
/// Puts a dead or failed job back on the queue with fresh attempts. Refused for a job in any
/// other state.
#[utoipa::path(post, path = "/v1/jobs/{job_id}:retry", tag = "jobs", security(("bearer" = ["operator"])),
    params(("job_id" = Uuid, Path)),
    responses((status = 200, description = "The job, queued again", body = JobResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not dead or failed", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn retry_job(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    _no_body: NoBody,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let job = state
        .jobs
        .retry_job(&caller.dealer, job_id(&path)?)
        .await
        .map_err(job_not_found)?;
    Ok(HttpResponse::Ok().json(JobResponse::from(job)))
}

/// Cancel a job.
///
/// Cancels a queued job, or asks a running one to stop at its next safe point. What it already
/// did stays done. Refused for a finished job.
#[utoipa::path(post, path = "/v1/jobs/{job_id}:cancel", tag = "jobs", security(("bearer" = ["operator"])),
    params(("job_id" = Uuid, Path)),
    responses((status = 200, description = "The job, cancelled or asked to stop", body = JobResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already finished", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn cancel_job(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    _no_body: NoBody,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let job = state
        .jobs
        .cancel_job(&caller.dealer, job_id(&path)?)
        .await
        .map_err(job_not_found)?;
    Ok(HttpResponse::Ok().json(JobResponse::from(job)))
}

/// Read a job.
///
/// One background job: its state, progress, summary and error.
#[utoipa::path(get, path = "/v1/jobs/{job_id}", tag = "jobs", security(("bearer" = ["viewer"])),
    params(("job_id" = Uuid, Path)),
    responses((status = 200, description = "The job", body = JobResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn get_job(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let id = Uuid::parse_str(&path).map_err(|_| ApiError::not_found("no such job"))?;
    let job = state
        .jobs
        .job(&caller.dealer, JobId(id))
        .await
        .map_err(|e| match e {
            domain::store::StoreError::NotFound => ApiError::not_found("no such job"),
            other => other.into(),
        })?;
    Ok(HttpResponse::Ok().json(JobResponse::from(job)))
}

/// List jobs.
///
/// Background jobs of your dealer, newest first, filtered by kind or state.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", security(("bearer" = ["viewer"])),
    params(JobFilter, PageParams),
    responses((status = 200, description = "A page of jobs", body = JobList),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn list_jobs(
    state: web::Data<AppState>,
    auth: Auth,
    filter: Query<JobFilter>,
    page: Query<PageParams>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let found = state
        .jobs
        .list_jobs(
            &caller.dealer,
            filter.state.map(Into::into),
            filter.kind.as_deref(),
            page.to_request()?,
        )
        .await?;
    let (items, next_page_token) = page_parts(found);
    Ok(HttpResponse::Ok().json(JobList {
        items,
        next_page_token,
    }))
}
