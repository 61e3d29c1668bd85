//! The billing records (the service's copy of the billing system's customers,
//! sites, systems and users): PUT is an upsert guarded by If-Match; GET of a
//! site or system lists its links.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use domain::billing::{
    BillingId, BillingRecord, CustomerFields, CustomerKind, SiteFields, SystemFields, Upserted,
    UserFields,
};
use domain::link::LinkKind;
use domain::sync::normalize::Normalizer;
use domain::tenancy::Role;
use domain::validation::ValidationError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Auth;
use crate::extract::{encode_page_token, etag, if_match, JsonBody, PageParams, Query};
use crate::problem::{ApiError, ApiResult};
use crate::routes::connections::{ConnectionList, ConnectionResponse};
use crate::routes::links::LinkResponse;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/billing/customers", web::get().to(search_customers))
        .service(
            web::resource("/billing/customers/{customer_id}")
                .route(web::put().to(put_customer))
                .route(web::get().to(get_customer))
                .route(web::delete().to(delete_customer)),
        )
        .route(
            "/billing/sites/{site_id}/push-targets",
            web::get().to(push_targets),
        )
        .service(
            web::resource("/billing/sites/{site_id}")
                .route(web::put().to(put_site))
                .route(web::get().to(get_site))
                .route(web::delete().to(delete_site)),
        )
        .service(
            web::resource("/billing/systems/{system_id}")
                .route(web::put().to(put_system))
                .route(web::get().to(get_system))
                .route(web::delete().to(delete_system)),
        )
        .service(
            web::resource("/billing/users/{user_id}")
                .route(web::put().to(put_user))
                .route(web::get().to(get_user))
                .route(web::delete().to(delete_user)),
        );
}

/// A billing id from the path of a PUT: refusing it is the caller's mistake.
fn id_to_write(raw: &str) -> ApiResult<BillingId> {
    BillingId::parse(raw).map_err(|why| ValidationError::field("id", why).into())
}

/// A billing id from the path of a read: an impossible id names no record.
fn id_to_read(raw: &str, what: &str) -> ApiResult<BillingId> {
    BillingId::parse(raw).map_err(|_| ApiError::not_found(format!("no billing {what} '{raw}'")))
}

fn not_found_as(what: &str, id: &BillingId) -> impl FnOnce(domain::store::StoreError) -> ApiError {
    let message = format!("no billing {what} '{id}'");
    move |e| match e {
        domain::store::StoreError::NotFound => ApiError::not_found(message),
        other => other.into(),
    }
}

/// Checks a text field: at most `max` characters, no control characters
/// (line breaks allowed where `multiline`).
fn text(
    v: &mut ValidationError,
    field: &str,
    value: String,
    max: usize,
    multiline: bool,
) -> String {
    if value.chars().count() > max {
        v.push(field, format!("must be at most {max} characters"));
    } else if value
        .chars()
        .any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\r' || c == '\t')))
    {
        v.push(field, "must not contain control characters");
    }
    value
}

/// A text field whose values the sync compares with `normalizer` (state,
/// zip, phone): refused when that kind cannot make sense of it.
fn checked(v: &mut ValidationError, field: &str, value: String, normalizer: Normalizer) -> String {
    let max = match normalizer {
        Normalizer::Zip => 20,
        Normalizer::Phone => 40,
        _ => 50,
    };
    let before = v.errors.len();
    let value = text(v, field, value, max, false);
    if v.errors.len() == before {
        v.check(field, normalizer.validate(&value));
    }
    value
}

fn reference(v: &mut ValidationError, field: &str, raw: &str) -> Option<BillingId> {
    v.check(field, BillingId::parse(raw))
}

fn respond<F, R: Serialize>(
    upserted: Upserted<BillingRecord<F>>,
    path: &str,
    to: impl FnOnce(BillingRecord<F>) -> R,
) -> HttpResponse {
    let version = upserted.record.version;
    let mut res = if upserted.created {
        let mut r = HttpResponse::Created();
        r.insert_header((header::LOCATION, path.to_owned()));
        r
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, etag(version)))
        .json(to(upserted.record))
}

/// Common parts of every billing record answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordMeta {
    pub id: String,
    /// Also the ETag.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn meta<F>(r: &BillingRecord<F>) -> RecordMeta {
    RecordMeta {
        id: r.id.to_string(),
        version: r.version,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

// ---- customers ----

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CustomerKindDto {
    #[default]
    Person,
    Business,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PutCustomerRequest {
    pub kind: CustomerKindDto,
    pub first_name: String,
    pub last_name: String,
    pub business_name: String,
    pub phone: String,
    pub email: String,
    pub address1: String,
    pub address2: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    /// The dealer's office the customer is served from.
    pub office_location: String,
    pub tags: Vec<String>,
    /// The billing user who sold the account.
    pub rep_id: Option<String>,
    pub sale_date: Option<NaiveDate>,
    pub two_way_voice: bool,
    /// Central station account number.
    pub account_number: String,
    /// Central station receiver phone number.
    pub receiver_number: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerResponse {
    #[serde(flatten)]
    pub meta: RecordMeta,
    pub kind: CustomerKindDto,
    pub display_name: String,
    pub first_name: String,
    pub last_name: String,
    pub business_name: String,
    pub phone: String,
    pub email: String,
    pub address1: String,
    pub address2: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    pub office_location: String,
    pub tags: Vec<String>,
    pub rep_id: Option<String>,
    pub sale_date: Option<NaiveDate>,
    pub two_way_voice: bool,
    pub account_number: String,
    pub receiver_number: String,
    /// On a read of one customer: what Stages says now about the devices
    /// under its sites (on test, in alarm); absent in lists and write answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stages_status: Option<CustomerStagesStatusResponse>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CustomerStagesStateDto {
    OnTest,
    InAlarm,
    Normal,
    Unknown,
    NotLinked,
}

/// A customer's devices in Stages, summed up: any device on test makes the
/// customer on test; a device that cannot be read makes it `unknown` (with
/// the reason) unless another already says on test or in alarm.
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerStagesStatusResponse {
    pub state: CustomerStagesStateDto,
    /// Why the state is `unknown`.
    pub reason: Option<String>,
    /// Each linked device under the customer's sites.
    pub devices: Vec<CustomerDeviceStatusResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerDeviceStatusResponse {
    /// The billing site the device is linked under.
    pub site_id: String,
    #[serde(flatten)]
    pub status: LiveStatusResponse,
}

impl From<domain::stages_tab::CustomerStagesStatus> for CustomerStagesStatusResponse {
    fn from(s: domain::stages_tab::CustomerStagesStatus) -> Self {
        use domain::stages_tab::CustomerStagesState as S;
        Self {
            state: match s.state {
                S::OnTest => CustomerStagesStateDto::OnTest,
                S::InAlarm => CustomerStagesStateDto::InAlarm,
                S::Normal => CustomerStagesStateDto::Normal,
                S::Unknown => CustomerStagesStateDto::Unknown,
                S::NotLinked => CustomerStagesStateDto::NotLinked,
            },
            reason: s.reason,
            devices: s
                .devices
                .into_iter()
                .map(|(site_id, l)| CustomerDeviceStatusResponse {
                    site_id: site_id.to_string(),
                    status: live_status_response(l),
                })
                .collect(),
        }
    }
}

impl From<BillingRecord<CustomerFields>> for CustomerResponse {
    fn from(r: BillingRecord<CustomerFields>) -> Self {
        let meta = meta(&r);
        let display_name = r.fields.display_name();
        let f = r.fields;
        Self {
            meta,
            kind: match f.kind {
                CustomerKind::Person => CustomerKindDto::Person,
                CustomerKind::Business => CustomerKindDto::Business,
            },
            display_name,
            first_name: f.first_name,
            last_name: f.last_name,
            business_name: f.business_name,
            phone: f.phone,
            email: f.email,
            address1: f.address1,
            address2: f.address2,
            city: f.city,
            state: f.state,
            zip: f.zip,
            office_location: f.office_location,
            tags: f.tags,
            rep_id: f.rep_id.map(|r| r.to_string()),
            sale_date: f.sale_date,
            two_way_voice: f.two_way_voice,
            account_number: f.account_number,
            receiver_number: f.receiver_number,
            stages_status: None,
        }
    }
}

/// Checks a list of tags: at most 50, each a short line of text.
fn tag_list(v: &mut ValidationError, tags: Vec<String>) -> Vec<String> {
    if tags.len() > 50 {
        v.push("tags", "at most 50 tags");
    }
    tags.into_iter()
        .enumerate()
        .map(|(i, t)| text(v, &format!("tags[{i}]"), t, 50, false))
        .collect()
}

pub(crate) fn customer_fields(b: PutCustomerRequest) -> Result<CustomerFields, ValidationError> {
    let mut v = ValidationError::default();
    let kind = match b.kind {
        CustomerKindDto::Person => CustomerKind::Person,
        CustomerKindDto::Business => CustomerKind::Business,
    };
    let f = CustomerFields {
        kind,
        first_name: text(&mut v, "first_name", b.first_name, 100, false),
        last_name: text(&mut v, "last_name", b.last_name, 100, false),
        business_name: text(&mut v, "business_name", b.business_name, 200, false),
        phone: checked(&mut v, "phone", b.phone, Normalizer::Phone),
        email: text(&mut v, "email", b.email, 254, false),
        address1: text(&mut v, "address1", b.address1, 200, false),
        address2: text(&mut v, "address2", b.address2, 200, false),
        city: text(&mut v, "city", b.city, 100, false),
        state: checked(&mut v, "state", b.state, Normalizer::State),
        zip: checked(&mut v, "zip", b.zip, Normalizer::Zip),
        office_location: text(&mut v, "office_location", b.office_location, 100, false),
        tags: tag_list(&mut v, b.tags),
        rep_id: b
            .rep_id
            .as_deref()
            .and_then(|r| reference(&mut v, "rep_id", r)),
        sale_date: b.sale_date,
        two_way_voice: b.two_way_voice,
        account_number: text(&mut v, "account_number", b.account_number, 50, false),
        receiver_number: text(&mut v, "receiver_number", b.receiver_number, 40, false),
    };
    if f.display_name().trim().is_empty() {
        v.push(
            "last_name",
            "a customer needs a name: first or last name for a person, business name (or last name) for a business",
        );
    }
    if !f.email.is_empty() && !f.email.contains('@') {
        v.push("email", "is not an email address");
    }
    v.into_result()?;
    Ok(f)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CustomerSearch {
    /// Name, business name, phone (digits), email or address.
    pub q: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerList {
    pub items: Vec<CustomerResponse>,
    pub next_page_token: Option<String>,
}

/// Search billing customers.
///
/// Searches the service's copy of the billing customers with `q` (name, business name, phone
/// digits, email or address). Reads only this service's database; never calls Stages.
#[utoipa::path(get, path = "/v1/billing/customers", tag = "billing", security(("bearer" = ["viewer"])),
    params(CustomerSearch, PageParams),
    responses((status = 200, description = "A page of matching customers", body = CustomerList),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn search_customers(
    state: web::Data<AppState>,
    auth: Auth,
    search: Query<CustomerSearch>,
    page: Query<PageParams>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let q = search.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.chars().count() > 200) {
        return Err(ValidationError::field("q", "must be at most 200 characters").into());
    }
    let found = state
        .billing
        .search_customers(&caller.dealer, q, page.to_request()?)
        .await?;
    Ok(HttpResponse::Ok().json(CustomerList {
        next_page_token: found.next_page_token.as_deref().map(encode_page_token),
        items: found.items.into_iter().map(Into::into).collect(),
    }))
}

/// Create or replace a billing customer.
///
/// Writes the service's copy of a billing customer, as the billing system holds it. With `If-
/// Match` the replace happens only if nobody changed it since you read it. A change to a linked
/// record may be pushed to Stages by Auto Sync afterwards; this call itself never calls Stages.
#[utoipa::path(put, path = "/v1/billing/customers/{customer_id}", tag = "billing", security(("bearer" = ["operator"])),
    params(("customer_id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = PutCustomerRequest,
    responses((status = 200, description = "Replaced", body = CustomerResponse), (status = 201, description = "Created", body = CustomerResponse),
        (status = 412, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn put_customer(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    path: web::Path<String>,
    body: JsonBody<PutCustomerRequest>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let id = id_to_write(&path)?;
    let fields = customer_fields(body.0)?;
    let upserted = state
        .billing
        .upsert_customer(&caller.dealer, &id, fields, if_match(&req)?)
        .await?;
    Ok(respond(upserted, req.path(), CustomerResponse::from))
}

/// Read a billing customer.
///
/// The service's copy of one billing customer, with what Stages says now about the devices
/// under its linked sites (`stages_status`: on test, in alarm, normal; `unknown` with a reason
/// when Stages cannot be asked, never a failure of the read). Changes nothing.
#[utoipa::path(get, path = "/v1/billing/customers/{customer_id}", tag = "billing", security(("bearer" = ["viewer"])),
    params(("customer_id" = String, Path)),
    responses((status = 200, description = "The customer; `ETag` guards a later change", body = CustomerResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn get_customer(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let id = id_to_read(&path, "customer")?;
    let c = state
        .billing
        .customer(&caller.dealer, &id)
        .await
        .map_err(not_found_as("customer", &id))?;
    let version = c.version;
    let mut body = CustomerResponse::from(c);
    body.stages_status = Some(
        domain::stages_tab::customer_status(state.linking(), caller, &id)
            .await
            .into(),
    );
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(version)))
        .json(body))
}

/// Delete a billing customer.
///
/// Removes the service's copy of a billing customer. Refused while sites belong to it. Never
/// deletes anything in Stages.
#[utoipa::path(delete, path = "/v1/billing/customers/{customer_id}", tag = "billing", security(("bearer" = ["operator"])),
    params(("customer_id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204, description = "Deleted"),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn delete_customer(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let id = id_to_read(&path, "customer")?;
    state
        .billing
        .delete_customer(&caller.dealer, &id, if_match(&req)?)
        .await
        .map_err(not_found_as("customer", &id))?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- sites ----

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

#[derive(Debug, Serialize, ToSchema)]
pub struct LiveStatusResponse {
    pub connection_id: uuid::Uuid,
    pub device_id: String,
    /// normal, alarm, out_of_service or on_test; absent when it could not be read.
    pub status: Option<String>,
    /// A test is running on the device.
    pub on_test: bool,
    pub in_alarm: bool,
    /// Why the status could not be read.
    pub error: Option<String>,
}

async fn live(
    state: &AppState,
    caller: &domain::tenancy::Caller,
    kind: LinkKind,
    id: &BillingId,
) -> ApiResult<Vec<LiveStatusResponse>> {
    Ok(
        domain::stages_views::live_status(state.linking(), caller, kind, id)
            .await?
            .into_iter()
            .map(live_status_response)
            .collect(),
    )
}

fn live_status_response(l: domain::stages_views::LiveStatus) -> LiveStatusResponse {
    LiveStatusResponse {
        connection_id: l.connection_id.0,
        device_id: l.device_id,
        status: l
            .status
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| v.as_str().map(str::to_owned)),
        on_test: l.on_test,
        in_alarm: l.in_alarm,
        error: l.error,
    }
}

fn site_response(r: BillingRecord<SiteFields>, links: Vec<LinkResponse>) -> SiteResponse {
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
        stages_status: Vec::new(),
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

async fn links_of(
    state: &AppState,
    dealer: &domain::tenancy::DealerId,
    kind: LinkKind,
    id: &BillingId,
) -> ApiResult<Vec<LinkResponse>> {
    Ok(state
        .links
        .links_of_billing(dealer, kind, id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

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
    let caller = auth.require(Role::Operator)?;
    let id = id_to_write(&path)?;
    let fields = site_fields(body.0)?;
    let (upserted, links) = state
        .billing
        .upsert_site_linked(&caller.dealer, &id, fields, if_match(&req)?)
        .await?;
    let links = links.into_iter().map(Into::into).collect();
    Ok(respond(upserted, req.path(), |r| site_response(r, links)))
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
    let caller = auth.require(Role::Viewer)?;
    let id = id_to_read(&path, "site")?;
    let s = state
        .billing
        .site(&caller.dealer, &id)
        .await
        .map_err(not_found_as("site", &id))?;
    let links = links_of(&state, &caller.dealer, LinkKind::Site, &id).await?;
    let mut body = site_response(s.clone(), links);
    body.stages_status = live(&state, caller, LinkKind::Site, &id).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(s.version)))
        .json(body))
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
    let caller = auth.require(Role::Operator)?;
    let id = id_to_read(&path, "site")?;
    state
        .billing
        .delete_site(&caller.dealer, &id, if_match(&req)?)
        .await
        .map_err(not_found_as("site", &id))?;
    Ok(HttpResponse::NoContent().finish())
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

// ---- systems ----

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

fn system_response(r: BillingRecord<SystemFields>, links: Vec<LinkResponse>) -> SystemResponse {
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
        stages_status: Vec::new(),
    }
}

fn system_fields(b: PutSystemRequest) -> ApiResult<SystemFields> {
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
    let caller = auth.require(Role::Operator)?;
    let id = id_to_write(&path)?;
    let fields = system_fields(body.0)?;
    let (upserted, links) = state
        .billing
        .upsert_system_linked(&caller.dealer, &id, fields, if_match(&req)?)
        .await?;
    let links = links.into_iter().map(Into::into).collect();
    Ok(respond(upserted, req.path(), |r| system_response(r, links)))
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
    let caller = auth.require(Role::Viewer)?;
    let id = id_to_read(&path, "system")?;
    let s = state
        .billing
        .system(&caller.dealer, &id)
        .await
        .map_err(not_found_as("system", &id))?;
    let links = links_of(&state, &caller.dealer, LinkKind::System, &id).await?;
    let mut body = system_response(s.clone(), links);
    body.stages_status = live(&state, caller, LinkKind::System, &id).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(s.version)))
        .json(body))
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
    let caller = auth.require(Role::Operator)?;
    let id = id_to_read(&path, "system")?;
    state
        .billing
        .delete_system(&caller.dealer, &id, if_match(&req)?)
        .await
        .map_err(not_found_as("system", &id))?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- users ----

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PutUserRequest {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: String,
    pub login_name: String,
    pub active: bool,
    pub can_login: bool,
    pub permission_group: String,
    pub tags: Vec<String>,
    pub address1: String,
    pub address2: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    /// A free field the dealer uses as it likes.
    pub user_field: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    #[serde(flatten)]
    pub meta: RecordMeta,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: String,
    pub login_name: String,
    pub active: bool,
    pub can_login: bool,
    pub permission_group: String,
    pub tags: Vec<String>,
    pub address1: String,
    pub address2: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    pub user_field: String,
}

impl From<BillingRecord<UserFields>> for UserResponse {
    fn from(r: BillingRecord<UserFields>) -> Self {
        let meta = meta(&r);
        let f = r.fields;
        Self {
            meta,
            first_name: f.first_name,
            last_name: f.last_name,
            email: f.email,
            phone: f.phone,
            login_name: f.login_name,
            active: f.active,
            can_login: f.can_login,
            permission_group: f.permission_group,
            tags: f.tags,
            address1: f.address1,
            address2: f.address2,
            city: f.city,
            state: f.state,
            zip: f.zip,
            user_field: f.user_field,
        }
    }
}

fn user_fields(b: PutUserRequest) -> ApiResult<UserFields> {
    let mut v = ValidationError::default();
    let tags = tag_list(&mut v, b.tags);
    let f = UserFields {
        first_name: text(&mut v, "first_name", b.first_name, 100, false),
        last_name: text(&mut v, "last_name", b.last_name, 100, false),
        email: text(&mut v, "email", b.email, 254, false),
        phone: checked(&mut v, "phone", b.phone, Normalizer::Phone),
        login_name: text(&mut v, "login_name", b.login_name, 100, false),
        active: b.active,
        can_login: b.can_login,
        permission_group: text(&mut v, "permission_group", b.permission_group, 100, false),
        tags,
        address1: text(&mut v, "address1", b.address1, 200, false),
        address2: text(&mut v, "address2", b.address2, 200, false),
        city: text(&mut v, "city", b.city, 100, false),
        state: checked(&mut v, "state", b.state, Normalizer::State),
        zip: checked(&mut v, "zip", b.zip, Normalizer::Zip),
        user_field: text(&mut v, "user_field", b.user_field, 200, false),
    };
    if f.first_name.trim().is_empty() && f.last_name.trim().is_empty() {
        v.push("last_name", "a user needs a first or last name");
    }
    v.into_result()?;
    Ok(f)
}

/// Create or replace a billing user.
///
/// Writes the service's copy of a billing user (a rep or staff member). Imports link an
/// Alarm.com customer's rep to the billing user of that rep. Nothing is sent to any provider.
#[utoipa::path(put, path = "/v1/billing/users/{user_id}", tag = "billing", security(("bearer" = ["operator"])),
    params(("user_id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = PutUserRequest,
    responses((status = 200, description = "Replaced", body = UserResponse), (status = 201, description = "Created", body = UserResponse),
        (status = 412, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn put_user(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    path: web::Path<String>,
    body: JsonBody<PutUserRequest>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let id = id_to_write(&path)?;
    let fields = user_fields(body.0)?;
    let upserted = state
        .billing
        .upsert_user(&caller.dealer, &id, fields, if_match(&req)?)
        .await?;
    Ok(respond(upserted, req.path(), UserResponse::from))
}

/// Read a billing user.
///
/// The service's copy of one billing user (a rep or staff member). Reads only this service's
/// database.
#[utoipa::path(get, path = "/v1/billing/users/{user_id}", tag = "billing", security(("bearer" = ["viewer"])),
    params(("user_id" = String, Path)),
    responses((status = 200, description = "The user", body = UserResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn get_user(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let id = id_to_read(&path, "user")?;
    let u = state
        .billing
        .user(&caller.dealer, &id)
        .await
        .map_err(not_found_as("user", &id))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(u.version)))
        .json(UserResponse::from(u)))
}

/// Delete a billing user.
///
/// Removes the service's copy of a billing user. Nothing changes at any provider.
#[utoipa::path(delete, path = "/v1/billing/users/{user_id}", tag = "billing", security(("bearer" = ["operator"])),
    params(("user_id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204, description = "Deleted"),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn delete_user(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let id = id_to_read(&path, "user")?;
    state
        .billing
        .delete_user(&caller.dealer, &id, if_match(&req)?)
        .await
        .map_err(not_found_as("user", &id))?;
    Ok(HttpResponse::NoContent().finish())
}
