//! Billing customers: search, upsert, read (with what Stages says now about
//! their devices) and delete.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::NaiveDate;
use domain::billing::{BillingCustomer, BillingRecord, CustomerFields, CustomerKind};
use domain::sync::normalize::Normalizer;
use domain::tenancy::{Caller, Role};
use domain::validation::ValidationError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::fields::{checked, reference, tag_list, text};
use super::{live_status_response, meta, record_kind, unlinked, LiveStatusResponse, RecordMeta};
use crate::auth::Auth;
use crate::extract::{page_parts, JsonBody, PageParams, Query};
use crate::problem::ApiResult;
use crate::state::AppState;

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

record_kind!(
    /// The billing customers: never linked themselves; a read sums up what
    /// Stages says now about the devices under their sites.
    Customers = "customer", links: None,
    PutCustomerRequest => CustomerFields = customer_fields,
    answer: CustomerResponse = unlinked,
    store: upsert_customer, customer, delete_customer;

    async fn read_answer(
        state: &AppState,
        caller: &Caller,
        record: BillingCustomer,
    ) -> ApiResult<CustomerResponse> {
        let status = domain::stages_tab::customer_status(state.linking(), caller, &record.id).await;
        Ok(CustomerResponse {
            stages_status: Some(status.into()),
            ..record.into()
        })
    }
);

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
    let (items, next_page_token) = page_parts(found);
    Ok(HttpResponse::Ok().json(CustomerList {
        items,
        next_page_token,
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
    super::put::<Customers>(&state, auth, &req, &path, body.0).await
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
    super::get::<Customers>(&state, auth, &path).await
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
    super::delete::<Customers>(&state, auth, &req, &path).await
}
