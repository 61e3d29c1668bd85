//! More of the Stages tab (S14, S15): deleting a contact, editing a zone,
//! clearing every test of a site, and the history filters.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use domain::stages::StagesConfigurationPatch;
use domain::stages_tab::{self, HistoryQuery};
use domain::tenancy::Role;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Auth;
use crate::extract::{connection_id, JsonBody};
use crate::problem::ApiResult;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HistoryKindParam {
    /// Every signal and event.
    #[default]
    All,
    /// Only what was received while the device was on test.
    Tests,
}

/// The filters of a history view; entries come newest first.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Only entries at or after this time (RFC 3339, e.g. `2027-03-14T00:00:00Z`).
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<DateTime<Utc>>,
    /// Only entries at or before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<DateTime<Utc>>,
    /// `all` (the default) or `tests`.
    #[param(inline)]
    pub kind: Option<HistoryKindParam>,
}

impl HistoryParams {
    pub fn to_query(&self) -> ApiResult<HistoryQuery> {
        Ok(HistoryQuery::new(
            self.from,
            self.to,
            matches!(self.kind, Some(HistoryKindParam::Tests)),
        )?)
    }
}

/// Delete a contact of a Stages site.
///
/// Deletes the contact in Stages, live. Contacts are Stages-only records: nothing changes in
/// the billing records.
#[utoipa::path(delete, path = "/v1/connections/{connection_id}/stages/sites/{site_no}/contacts/{contact_id}", tag = "stages", security(("bearer" = ["operator"])),
    params(("connection_id" = Uuid, Path), ("site_no" = String, Path), ("contact_id" = String, Path)),
    responses((status = 204, description = "Deleted in Stages"),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn delete_contact(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let (cid, site_no, contact_id) = path.into_inner();
    stages_tab::delete_contact(
        state.linking(),
        caller,
        connection_id(&cid)?,
        &crate::extract::site_no(&site_no)?,
        &contact_id,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The fields of a zone to change; those left out stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZonePatchBody {
    /// 1 or more.
    pub point: Option<u32>,
    pub area: Option<String>,
    pub event_code: Option<String>,
    pub description: Option<String>,
}

/// Edit a zone of a device.
///
/// Changes a zone (configuration) of a Stages device, live; the zone is named by its
/// `config_id` or, when only one zone has it, its point number. Fields left out stay as they
/// are. Zones are Stages-only records: nothing changes in the billing records.
#[utoipa::path(patch, path = "/v1/connections/{connection_id}/stages/devices/{device_id}/configurations/{zone}", tag = "stages", security(("bearer" = ["operator"])),
    params(("connection_id" = Uuid, Path), ("device_id" = String, Path),
        ("zone" = String, Path, description = "The zone's config_id, or its point number")),
    request_body = ZonePatchBody,
    responses((status = 200, description = "The zone as Stages stored it", body = Object),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "More than one zone has that point", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn update_zone(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String, String)>,
    body: JsonBody<ZonePatchBody>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let (cid, device_id, zone) = path.into_inner();
    let b = body.0;
    let patch = StagesConfigurationPatch {
        point: b.point,
        area: b.area,
        event_code: b.event_code,
        description: b.description,
    };
    let zone = stages_tab::update_zone(
        state.linking(),
        caller,
        connection_id(&cid)?,
        &crate::extract::device_id(&device_id)?,
        &zone,
        &patch,
    )
    .await?;
    Ok(HttpResponse::Ok().json(zone))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceTestsClearedResponse {
    pub device_id: String,
    /// The ids of the tests ended (current and scheduled).
    pub ended: Vec<String>,
    /// Why a test of this device could not be ended.
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClearSiteTestsResponse {
    pub devices: Vec<DeviceTestsClearedResponse>,
}

/// Clear all tests of a site.
///
/// Ends every current and scheduled test of every device of a Stages site, live; each device
/// answers for itself (the tests it ended, or why not). Changes nothing in the billing records.
#[utoipa::path(delete, path = "/v1/connections/{connection_id}/stages/sites/{site_no}/tests", tag = "stages", security(("bearer" = ["operator"])),
    params(("connection_id" = Uuid, Path), ("site_no" = String, Path)),
    responses((status = 200, description = "What became of each device's tests", body = ClearSiteTestsResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn clear_site_tests(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let (cid, site_no) = path.into_inner();
    let cid = connection_id(&cid)?;
    let site_no = crate::extract::site_no(&site_no)?;
    let results = stages_tab::clear_site_tests(state.linking(), caller, cid, &site_no).await?;
    Ok(HttpResponse::Ok().json(ClearSiteTestsResponse {
        devices: results
            .into_iter()
            .map(|r| DeviceTestsClearedResponse {
                device_id: r.device_id.into(),
                ended: r.ended,
                error: r.error,
            })
            .collect(),
    }))
}
