//! What a connection's upstream says, read through it: the connection test
//! (S1) and an interactive services provider's service plans (I1).

use actix_web::{web, HttpResponse};
use domain::connection_setup;
use domain::operations;
use domain::tenancy::Role;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::ports;
use crate::auth::Auth;
use crate::dto::TestOutcomeDto;
use crate::extract::{connection_id, page_slice, NoBody, PageParams, Query};
use crate::problem::ApiResult;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionTestResponse {
    pub connection_id: Uuid,
    pub ok: bool,
    pub outcome: TestOutcomeDto,
    pub detail: String,
    pub latency_ms: u64,
    /// What the Alarm.com login may do, when the test could read it.
    pub permissions: Option<ProviderPermissions>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderPermissions {
    /// May create Builder Program customers and commitments.
    pub builder_program: bool,
    /// Holds the billing integration permission (billing notifications).
    pub billing: bool,
}

/// Test a connection.
///
/// Checks the credentials you would use on this connection (yours in `user` mode, the dealer's
/// otherwise) against its endpoint, and says whether it worked, why not, and how long it took.
/// A failed check is still a 200 with `ok` false. Changes nothing anywhere.
#[utoipa::path(post, path = "/v1/connections/{connection_id}:test", tag = "connections",
    security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path)),
    responses((status = 200, description = "The test ran; `ok` says whether it passed", body = ConnectionTestResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a provider this service can test yet", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn test_connection(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    _no_body: NoBody,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let id = connection_id(&path)?;
    let report = connection_setup::test_connection(ports(&state), caller, id).await?;
    Ok(HttpResponse::Ok().json(ConnectionTestResponse {
        connection_id: id.0,
        ok: report.outcome == operations::TestOutcome::Ok,
        outcome: report.outcome.into(),
        detail: report.detail,
        latency_ms: report.latency_ms,
        permissions: report.permissions.map(|p| ProviderPermissions {
            builder_program: p.builder_program,
            billing: p.billing,
        }),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServicePlanResponse {
    pub package_id: i64,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServicePlanList {
    pub items: Vec<ServicePlanResponse>,
    /// The provider answers its list whole; it is paged here like every other list.
    pub next_page_token: Option<String>,
}

/// List the provider's service plans.
///
/// The service plans of an interactive services provider, read from the provider through this
/// connection, to choose a default plan or an account's plan from. Changes nothing.
#[utoipa::path(get, path = "/v1/connections/{connection_id}/service-plans", tag = "connections",
    security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path), PageParams),
    responses((status = 200, description = "A page of service plans", body = ServicePlanList),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a provider with service plans, or no credentials", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn service_plans(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    page: Query<PageParams>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let id = connection_id(&path)?;
    let plans =
        operations::service_plans(state.connections.as_ref(), state.adc.as_ref(), caller, id)
            .await
            .map_err(connection_setup::missing_connection_in)?;
    let (plans, next_page_token) = page_slice(plans, &page)?;
    Ok(HttpResponse::Ok().json(ServicePlanList {
        items: plans
            .into_iter()
            .map(|p| ServicePlanResponse {
                package_id: p.package_id.0,
                name: p.name,
            })
            .collect(),
        next_page_token,
    }))
}
