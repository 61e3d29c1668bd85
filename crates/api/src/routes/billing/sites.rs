//! Billing sites: upsert, read with their links and live Stages status,
//! delete, and the connections a site can still be pushed to.

use actix_web::{web, HttpRequest, HttpResponse};
use domain::billing::{BillingRecord, SiteFields};
use domain::link::LinkKind;
use domain::sync::normalize::Normalizer;
use domain::tenancy::Role;
use domain::validation::ValidationError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::fields::{checked, reference, text};
use super::{id_to_read, meta, record_kind, LiveStatusResponse, RecordMeta};
use crate::auth::Auth;
use crate::extract::JsonBody;
use crate::problem::ApiResult;
use crate::routes::connections::{ConnectionList, ConnectionResponse};
use crate::routes::links::LinkResponse;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PutSiteRequest {
    pub customer_id: Option<String>,
    pub name: String,
    pub address1: String,
    pub address2: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    pub phone: String,
    pub info: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SiteResponse {
    #[serde(flatten)]
    pub meta: RecordMeta,
    pub customer_id: Option<String>,
    pub name: String,
    pub address1: String,
    pub address2: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    pub phone: String,
    pub info: String,
    /// Its links on every connection.
    pub links: Vec<LinkResponse>,
    /// On a read: what Stages says now about the linked devices (on test, in alarm).
    pub stages_status: Vec<LiveStatusResponse>,
}

fn site_response(
    r: BillingRecord<SiteFields>,
    links: Vec<LinkResponse>,
    stages_status: Vec<LiveStatusResponse>,
) -> SiteResponse {
    let meta = meta(&r);
    let f = r.fields;
    SiteResponse {
        meta,
        customer_id: f.customer_id.map(|c| c.to_string()),
        name: f.name,
        address1: f.address1,
        address2: f.address2,
        city: f.city,
        state: f.state,
        zip: f.zip,
        phone: f.phone,
        info: f.info,
        links,
        stages_status,
    }
}

pub(crate) fn site_fields(b: PutSiteRequest) -> Result<SiteFields, ValidationError> {
    let mut v = ValidationError::default();
    let customer_id = b
        .customer_id
        .as_deref()
        .and_then(|c| reference(&mut v, "customer_id", c));
    let f = SiteFields {
        customer_id,
        name: text(&mut v, "name", b.name.trim().to_owned(), 200, false),
        address1: text(&mut v, "address1", b.address1, 200, false),
        address2: text(&mut v, "address2", b.address2, 200, false),
        city: text(&mut v, "city", b.city, 100, false),
        state: checked(&mut v, "state", b.state, Normalizer::State),
        zip: checked(&mut v, "zip", b.zip, Normalizer::Zip),
        phone: checked(&mut v, "phone", b.phone, Normalizer::Phone),
        info: text(&mut v, "info", b.info, 4000, true),
    };
    if f.name.is_empty() {
        v.push("name", "must not be empty");
    }
    v.into_result()?;
    Ok(f)
}

record_kind!(
    /// The billing sites: written with their links, read with them and with
    /// the live status of their devices.
    Sites = "site", links: Some(LinkKind::Site),
    PutSiteRequest => SiteFields = site_fields, answer: SiteResponse = site_response,
    store: upsert_site_linked, site, delete_site
);

/// Create or replace a billing site.
///
/// Writes the service's copy of a billing site of an existing customer. With `If-Match` the
/// replace happens only if nobody changed it since you read it. When the site is linked and its
/// connection has Auto Sync on, the change is pushed to Stages afterwards by a background job;
/// this call itself never calls Stages.
#[utoipa::path(put, path = "/v1/billing/sites/{site_id}", tag = "billing", security(("bearer" = ["operator"])),
    params(("site_id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = PutSiteRequest,
    responses((status = 200, description = "Replaced", body = SiteResponse), (status = 201, description = "Created", body = SiteResponse),
        (status = 409, description = "The customer does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 412, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn put_site(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    path: web::Path<String>,
    body: JsonBody<PutSiteRequest>,
) -> ApiResult<HttpResponse> {
    super::put::<Sites>(&state, auth, &req, &path, body.0).await
}

/// Read a billing site.
///
/// The service's copy of one billing site, with its links and, per linked device, its live
/// status in Stages (read now; a Stages failure shows in that entry's `error`, not as a failed
/// answer). Changes nothing.
#[utoipa::path(get, path = "/v1/billing/sites/{site_id}", tag = "billing", security(("bearer" = ["viewer"])),
    params(("site_id" = String, Path)),
    responses((status = 200, description = "The site with its links", body = SiteResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn get_site(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    super::get::<Sites>(&state, auth, &path).await
}

/// Delete a billing site.
///
/// Removes the service's copy of a billing site. Refused while it has systems or links. Never
/// deletes anything in Stages.
#[utoipa::path(delete, path = "/v1/billing/sites/{site_id}", tag = "billing", security(("bearer" = ["operator"])),
    params(("site_id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204, description = "Deleted"),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn delete_site(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    super::delete::<Sites>(&state, auth, &req, &path).await
}

/// List where a site can be pushed.
///
/// The Stages connections on which this billing site is not linked yet, where a push may send
/// it. Reads only this service's database.
#[utoipa::path(get, path = "/v1/billing/sites/{site_id}/push-targets", tag = "billing", security(("bearer" = ["viewer"])),
    params(("site_id" = String, Path)),
    responses((status = 200, description = "The connections the site can be pushed to", body = ConnectionList),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn push_targets(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let id = id_to_read(&path, "site")?;
    let targets = domain::linking::push_targets(state.linking(), caller, &id).await?;
    Ok(HttpResponse::Ok().json(ConnectionList {
        items: targets.into_iter().map(ConnectionResponse::from).collect(),
        next_page_token: None,
    }))
}
