//! Billing systems (the alarm systems at a billing site): upsert, read with
//! their links and live Stages status, delete.

use actix_web::{web, HttpRequest, HttpResponse};
use domain::billing::{BillingRecord, SystemFields};
use domain::link::LinkKind;
use domain::validation::ValidationError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::fields::{reference, text};
use super::{meta, record_kind, LiveStatusResponse, RecordMeta};
use crate::auth::Auth;
use crate::extract::JsonBody;
use crate::problem::ApiResult;
use crate::routes::links::LinkResponse;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PutSystemRequest {
    /// The billing site the system belongs to.
    pub site_id: String,
    pub system_number: String,
    pub panel_type: String,
    pub location: String,
    pub info: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SystemResponse {
    #[serde(flatten)]
    pub meta: RecordMeta,
    pub site_id: String,
    pub system_number: String,
    pub panel_type: String,
    pub location: String,
    pub info: String,
    pub links: Vec<LinkResponse>,
    /// On a read: what Stages says now about the linked device (on test, in alarm).
    pub stages_status: Vec<LiveStatusResponse>,
}

fn system_response(
    r: BillingRecord<SystemFields>,
    links: Vec<LinkResponse>,
    stages_status: Vec<LiveStatusResponse>,
) -> SystemResponse {
    let meta = meta(&r);
    let f = r.fields;
    SystemResponse {
        meta,
        site_id: f.site_id.to_string(),
        system_number: f.system_number,
        panel_type: f.panel_type,
        location: f.location,
        info: f.info,
        links,
        stages_status,
    }
}

fn system_fields(b: PutSystemRequest) -> Result<SystemFields, ValidationError> {
    let mut v = ValidationError::default();
    let site_id = reference(&mut v, "site_id", &b.site_id);
    let system_number = text(&mut v, "system_number", b.system_number, 64, false);
    let panel_type = text(&mut v, "panel_type", b.panel_type, 100, false);
    let location = text(&mut v, "location", b.location, 200, false);
    let info = text(&mut v, "info", b.info, 4000, true);
    v.into_result()?;
    Ok(SystemFields {
        site_id: site_id.expect("checked above"),
        system_number,
        panel_type,
        location,
        info,
    })
}

record_kind!(
    /// The billing systems: written with their links, read with them and
    /// with the live status of their device.
    Systems = "system", links: Some(LinkKind::System),
    PutSystemRequest => SystemFields = system_fields, answer: SystemResponse = system_response,
    store: upsert_system_linked, system, delete_system
);

/// Create or replace a billing system.
///
/// Writes the service's copy of a billing system (an alarm system at a billing site). With `If-
/// Match` the replace happens only if nobody changed it since you read it. When the system is
/// linked and Auto Sync is on, the change is pushed to its Stages device afterwards by a
/// background job; this call itself never calls Stages.
#[utoipa::path(put, path = "/v1/billing/systems/{system_id}", tag = "billing", security(("bearer" = ["operator"])),
    params(("system_id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = PutSystemRequest,
    responses((status = 200, description = "Replaced", body = SystemResponse), (status = 201, description = "Created", body = SystemResponse),
        (status = 409, description = "The site does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 412, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn put_system(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    path: web::Path<String>,
    body: JsonBody<PutSystemRequest>,
) -> ApiResult<HttpResponse> {
    super::put::<Systems>(&state, auth, &req, &path, body.0).await
}

/// Read a billing system.
///
/// The service's copy of one billing system, with its links and, per linked device, its live
/// status in Stages (read now; a Stages failure shows in that entry's `error`, not as a failed
/// answer). Changes nothing.
#[utoipa::path(get, path = "/v1/billing/systems/{system_id}", tag = "billing", security(("bearer" = ["viewer"])),
    params(("system_id" = String, Path)),
    responses((status = 200, description = "The system with its links", body = SystemResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn get_system(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    super::get::<Systems>(&state, auth, &path).await
}

/// Delete a billing system.
///
/// Removes the service's copy of a billing system. Refused while it is linked. Never deletes
/// anything in Stages.
#[utoipa::path(delete, path = "/v1/billing/systems/{system_id}", tag = "billing", security(("bearer" = ["operator"])),
    params(("system_id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204, description = "Deleted"),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn delete_system(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    super::delete::<Systems>(&state, auth, &req, &path).await
}
