//! Probes for orchestrators and scrapers (B10): liveness, readiness, metrics.

use actix_web::http::StatusCode;
use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct HealthResponse {
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct ReadyResponse {
    pub status: &'static str,
    pub database: &'static str,
    pub pending_migrations: usize,
}

/// Liveness: the process is up.
///
/// Answers 200 as long as the process runs; it reads nothing and calls nothing, so it says
/// nothing about the database or the upstream systems (use `/readyz` for that). Needs no token.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = HealthResponse)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse { status: "ok" })
}

/// Readiness: the database answers and is migrated.
///
/// Answers 200 when the database can be reached and every migration is applied, so a load
/// balancer can send traffic; 503 otherwise. Never calls Stages or Alarm.com. Needs no token.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready to serve", body = ReadyResponse),
        (status = 503, description = "Not ready", body = crate::problem::Problem, content_type = "application/problem+json")))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let r = state.store.readiness().await;
    if !r.database_reachable {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the database cannot be reached",
        ));
    }
    if r.pending_migrations > 0 {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!(
                "{} database migrations are not applied yet; run `crosslink migrate`",
                r.pending_migrations
            ),
        ));
    }
    Ok(HttpResponse::Ok().json(ReadyResponse {
        status: "ready",
        database: "ok",
        pending_migrations: 0,
    }))
}

/// Prometheus metrics.
///
/// The service's metrics in the Prometheus text format: requests, upstream calls, jobs and
/// webhook deliveries. Needs no token; never carries secrets or record data.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
