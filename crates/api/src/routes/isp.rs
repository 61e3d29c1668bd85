//! Interactive services providers (I1-I5) over HTTP: the settings of a
//! provider entry as the connection resource shows and changes them, the ISP
//! accounts of billing customers, and the Alarm.net callback health.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use domain::adc::{AdcCustomerId, AdcPackageId};
use domain::billing::BillingId;
use domain::connection::{Endpoint, ProviderSettings};
use domain::isp::{
    CallbackHealthStatus, IspAccount, IspAccountId, PermissionCheck, ProviderSettingsPatch,
    ProvisionAction, ProvisionRequest,
};
use domain::tenancy::Role;
use domain::validation::ValidationError;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Auth;
use crate::extract::{connection_id, etag, if_match, page_parts, JsonBody, PageParams, Query};
use crate::problem::{ApiError, ApiResult};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // The custom method first: the plain `{account_id}` pattern would match it too.
    cfg.route(
        "/connections/{connection_id}/isp-accounts/{account_id}:change-service-plan",
        web::post().to(change_service_plan),
    )
    .service(
        web::resource("/connections/{connection_id}/isp-accounts")
            .route(web::get().to(list_isp_accounts))
            .route(web::post().to(create_isp_account)),
    )
    .route(
        "/connections/{connection_id}/isp-accounts/{account_id}",
        web::get().to(get_isp_account),
    )
    .route(
        "/connections/{connection_id}/builder-programs",
        web::get().to(builder_programs),
    )
    .route(
        "/connections/{connection_id}/callback-health",
        web::get().to(callback_health),
    )
    .route(
        "/connections/{connection_id}/billing-notifications",
        web::get().to(billing_notifications),
    );
}

// ---- provider settings, as part of the connection resource ----------------------

/// What a provider entry is set up to do beyond its credentials.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderSettingsResponse {
    /// The Alarm.com PackageId new ISP accounts get unless another is given.
    pub default_service_plan: Option<i64>,
    /// Builder Program customers and commitments may be created (alarm_com).
    pub builder_program: bool,
    /// Payments and payment-method changes made in Alarm.com are received (alarm_com).
    pub billing_notifications: bool,
    /// The URL Alarm.net was given for its callbacks (total_connect).
    pub alarmnet_callback_url: Option<String>,
}

impl From<&ProviderSettings> for ProviderSettingsResponse {
    fn from(s: &ProviderSettings) -> Self {
        Self {
            default_service_plan: s.default_service_plan.map(|p| p.0),
            builder_program: s.builder_program,
            billing_notifications: s.billing_notifications,
            alarmnet_callback_url: s
                .alarmnet_callback_url
                .as_ref()
                .map(|u| u.as_str().to_owned()),
        }
    }
}

/// Absent leaves a field as it is, `null` clears it.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A change of the provider settings (admin). Each change is checked against
/// the provider with the connection's credentials, so set those first.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettingsPatchRequest {
    /// One of `GET .../service-plans`; `null` clears it (alarm_com).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub default_service_plan: Option<Option<i64>>,
    /// Turning it on needs the Builder Program permission of the Alarm.com login.
    pub builder_program: Option<bool>,
    /// Turning it on needs the billing integration permission of the Alarm.com account.
    pub billing_notifications: Option<bool>,
    /// This service's public URL of `POST /v1/webhooks/alarmnet/{connection_id}`
    /// as given to Alarm.net; `null` clears it (total_connect).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub alarmnet_callback_url: Option<Option<String>>,
}

impl ProviderSettingsPatchRequest {
    pub fn into_domain(self) -> Result<ProviderSettingsPatch, ValidationError> {
        let mut v = ValidationError::default();
        let default_service_plan = match self.default_service_plan {
            Some(Some(p)) if p <= 0 => {
                v.push(
                    "settings.default_service_plan",
                    "must be a positive PackageId",
                );
                None
            }
            other => other.map(|p| p.map(AdcPackageId)),
        };
        let alarmnet_callback_url = match self.alarmnet_callback_url {
            Some(Some(raw)) => v
                .check("settings.alarmnet_callback_url", Endpoint::parse(&raw))
                .map(Some),
            Some(None) => Some(None),
            None => None,
        };
        v.into_result()?;
        Ok(ProviderSettingsPatch {
            default_service_plan,
            builder_program: self.builder_program,
            billing_notifications: self.billing_notifications,
            alarmnet_callback_url,
        })
    }
}

// ---- ISP accounts -------------------------------------------------------------

/// What to do at the provider for the billing customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IspActionDto {
    /// A new Alarm.com customer; a Builder Program customer with `builder_program_id`.
    CreateCustomer,
    /// A Builder Program commitment (`builder_program_id` required).
    CreateCommitment,
    /// An Alarm.com customer that exists already (`customer_id` required).
    Link,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIspAccountRequest {
    #[schema(example = "C-1001")]
    pub billing_customer_id: String,
    pub action: IspActionDto,
    /// The billing site whose address is the installation address (the customer's own otherwise).
    pub site_id: Option<String>,
    /// Alarm.com PackageId; defaults to the connection's default service plan.
    pub package_id: Option<i64>,
    /// The Builder Program to create the customer or commitment under.
    pub builder_program_id: Option<i64>,
    /// The customer's Alarm.com login (create_customer); defaults to the customer's email.
    pub login_name: Option<String>,
    /// The Alarm.com CustomerId to link (link).
    pub customer_id: Option<i64>,
    pub panel_type: Option<String>,
    pub modem_serial_number: Option<String>,
}

impl CreateIspAccountRequest {
    fn into_domain(self) -> Result<ProvisionRequest, ValidationError> {
        let mut v = ValidationError::default();
        let billing_customer_id = v.check(
            "billing_customer_id",
            BillingId::parse(&self.billing_customer_id),
        );
        let site_id = self
            .site_id
            .as_deref()
            .and_then(|s| v.check("site_id", BillingId::parse(s)).map(Some))
            .flatten();
        if self.package_id.is_some_and(|p| p <= 0) {
            v.push("package_id", "must be a positive PackageId");
        }
        if self.builder_program_id.is_some_and(|p| p <= 0) {
            v.push("builder_program_id", "must be a positive BuilderProgramId");
        }
        for (field, value) in [
            ("panel_type", &self.panel_type),
            ("modem_serial_number", &self.modem_serial_number),
        ] {
            if value
                .as_deref()
                .is_some_and(|s| s.chars().count() > 100 || s.chars().any(char::is_control))
            {
                v.push(
                    field,
                    "must be at most 100 characters without control characters",
                );
            }
        }
        let action = match self.action {
            IspActionDto::CreateCustomer => {
                if self.customer_id.is_some() {
                    v.push("customer_id", "is only for action link");
                }
                Some(ProvisionAction::CreateCustomer {
                    builder_program_id: self.builder_program_id,
                    login_name: self.login_name,
                })
            }
            IspActionDto::CreateCommitment => {
                if self.customer_id.is_some() {
                    v.push("customer_id", "is only for action link");
                }
                if self.login_name.is_some() {
                    v.push("login_name", "a commitment has no login yet");
                }
                match self.builder_program_id {
                    Some(id) => Some(ProvisionAction::CreateCommitment {
                        builder_program_id: id,
                    }),
                    None => {
                        v.push(
                            "builder_program_id",
                            "a commitment is made under a Builder Program",
                        );
                        None
                    }
                }
            }
            IspActionDto::Link => {
                for (field, given) in [
                    ("package_id", self.package_id.is_some()),
                    ("builder_program_id", self.builder_program_id.is_some()),
                    ("login_name", self.login_name.is_some()),
                    ("site_id", self.site_id.is_some()),
                ] {
                    if given {
                        v.push(field, "is not used when linking an existing account");
                    }
                }
                match self.customer_id {
                    Some(id) if id > 0 => Some(ProvisionAction::Link {
                        customer_id: AdcCustomerId(id),
                    }),
                    _ => {
                        v.push(
                            "customer_id",
                            "the Alarm.com CustomerId to link is required",
                        );
                        None
                    }
                }
            }
        };
        v.clone().into_result()?;
        let (Some(billing_customer_id), Some(action)) = (billing_customer_id, action) else {
            return Err(v);
        };
        Ok(ProvisionRequest {
            billing_customer_id,
            site_id,
            package_id: self.package_id.map(AdcPackageId),
            panel_type: self.panel_type.unwrap_or_default(),
            modem_serial_number: self.modem_serial_number.unwrap_or_default(),
            action,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IspAccountResponse {
    pub id: Uuid,
    pub connection_id: Uuid,
    pub billing_customer_id: String,
    /// The Alarm.com CustomerId; absent while the account is being provisioned.
    pub external_id: Option<String>,
    /// `pending` while the provider is being called, then `active`.
    pub state: String,
    /// `customer` or `commitment`.
    pub kind: String,
    /// `created`, `linked`, or `recovered` (an earlier create whose answer was
    /// lost had made it; found by the billing id and linked, not made twice).
    pub origin: String,
    pub builder_program_id: Option<i64>,
    pub commitment_id: Option<i64>,
    pub package_id: Option<i64>,
    pub login_name: String,
    pub created_by: String,
    /// Also the ETag.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// What Alarm.com holds for the account, read when one account is
    /// shown or changed (not in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderAccountResponse>,
    /// Why Alarm.com could not be read for `provider`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_error: Option<String>,
}

/// The account's current plan and add-ons, as Alarm.com holds them.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderAccountResponse {
    pub package_id: Option<i64>,
    pub service_plan_name: Option<String>,
    /// Alarm.com's names: `TwoWayVoice`, `Video`, `ImageSensor`, `EnergyManagement`.
    pub add_on_features: Vec<String>,
    pub is_terminated: bool,
}

impl From<domain::isp::ProviderAccount> for ProviderAccountResponse {
    fn from(p: domain::isp::ProviderAccount) -> Self {
        Self {
            package_id: p.package_id.map(|p| p.0),
            service_plan_name: p.service_plan_name,
            add_on_features: p.add_on_features,
            is_terminated: p.is_terminated,
        }
    }
}

impl From<IspAccount> for IspAccountResponse {
    fn from(a: IspAccount) -> Self {
        Self {
            id: a.id.0,
            connection_id: a.connection_id.0,
            billing_customer_id: a.billing_customer_id.as_str().to_owned(),
            external_id: a.external_id,
            state: a.state.as_str().to_owned(),
            kind: a.kind.as_str().to_owned(),
            origin: a.origin.as_str().to_owned(),
            builder_program_id: a.builder_program_id,
            commitment_id: a.commitment_id,
            package_id: a.package_id.map(|p| p.0),
            login_name: a.login_name,
            created_by: a.created_by,
            version: a.version,
            created_at: a.created_at,
            updated_at: a.updated_at,
            provider: None,
            provider_error: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IspAccountList {
    pub items: Vec<IspAccountResponse>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IspAccountFilter {
    pub billing_customer_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeServicePlanRequest {
    /// The Alarm.com PackageId to move the account to (the current one to
    /// change only the add-ons).
    pub package_id: i64,
    /// The add-on features the account is to have, replacing its current
    /// ones (`[]` removes them all; left out, they stay): `TwoWayVoice`,
    /// `Video`, `ImageSensor`, `EnergyManagement` (any case; `two-way voice`
    /// is read as `TwoWayVoice`).
    #[serde(default)]
    pub add_on_features: Option<Vec<String>>,
}

fn account_id(raw: &str) -> ApiResult<IspAccountId> {
    Uuid::parse_str(raw)
        .map(IspAccountId)
        .map_err(|_| ApiError::not_found("no such ISP account"))
}

fn with_etag(mut res: actix_web::HttpResponseBuilder, a: IspAccount) -> HttpResponse {
    res.insert_header((header::ETAG, etag(a.version)))
        .json(IspAccountResponse::from(a))
}

/// One account with what Alarm.com holds for it, read now.
async fn with_provider(
    state: &AppState,
    caller: &domain::tenancy::Caller,
    cid: domain::connection::ConnectionId,
    id: IspAccountId,
) -> ApiResult<HttpResponse> {
    let (account, provider) =
        domain::isp::isp_account_with_provider(&state.isp_ports(), caller, cid, id).await?;
    let version = account.version;
    let mut body = IspAccountResponse::from(account);
    match provider {
        Some(Ok(p)) => body.provider = Some(p.into()),
        Some(Err(why)) => body.provider_error = Some(why),
        None => {}
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(version)))
        .json(body))
}

/// Provision an ISP account.
///
/// For a billing customer: creates the Alarm.com customer (mapped from the billing customer and
/// the site given), creates a Builder Program customer or commitment, or links an Alarm.com
/// customer that exists already; the account is recorded here. A billing customer has at most
/// one account per connection; a create whose answer was lost is recovered by the billing id at
/// Alarm.com rather than made twice. No billing record is changed.
#[utoipa::path(post, path = "/v1/connections/{connection_id}/isp-accounts", tag = "isp",
    security(("bearer" = ["operator"])),
    params(("connection_id" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same key and body")),
    request_body = CreateIspAccountRequest,
    responses((status = 201, description = "The account; `Location` names it", body = IspAccountResponse, headers(("ETag" = String), ("Location" = String))),
        (status = 403, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already has an account; the provider refused (`provider_rejected`); the Alarm.com login lacks the permission (`provider_permission`); Builder Program off; connection inactive or not alarm_com; no credentials", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 504, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn create_isp_account(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    body: JsonBody<CreateIspAccountRequest>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let cid = connection_id(&path)?;
    let request = body.0.into_domain()?;
    let account = domain::isp::provision(&state.isp_ports(), caller, cid, request).await?;
    let mut res = HttpResponse::Created();
    res.insert_header((
        header::LOCATION,
        format!("/v1/connections/{cid}/isp-accounts/{}", account.id),
    ));
    Ok(with_etag(res, account))
}

/// List ISP accounts.
///
/// The ISP accounts recorded on this connection, oldest first. Reads only this service's
/// database.
#[utoipa::path(get, path = "/v1/connections/{connection_id}/isp-accounts", tag = "isp",
    security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path), IspAccountFilter, PageParams),
    responses((status = 200, description = "A page of ISP accounts", body = IspAccountList),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn list_isp_accounts(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    filter: Query<IspAccountFilter>,
    page: Query<PageParams>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let cid = connection_id(&path)?;
    let billing = filter
        .billing_customer_id
        .as_deref()
        .map(BillingId::parse)
        .transpose()
        .map_err(|e| ValidationError::field("billing_customer_id", e))?;
    let page = state
        .isp
        .list_isp_accounts(&caller.dealer, cid, billing.as_ref(), page.to_request()?)
        .await
        .map_err(|e| match e {
            domain::store::StoreError::NotFound => ApiError::not_found("no such connection"),
            other => other.into(),
        })?;
    let (items, next_page_token) = page_parts(page);
    Ok(HttpResponse::Ok().json(IspAccountList {
        items,
        next_page_token,
    }))
}

/// Read an ISP account.
///
/// One ISP account as recorded here: its billing customer, provider account, plan and state.
/// Does not call the provider.
#[utoipa::path(get, path = "/v1/connections/{connection_id}/isp-accounts/{account_id}", tag = "isp",
    security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path), ("account_id" = Uuid, Path)),
    responses((status = 200, description = "The ISP account; `ETag` guards a later change", body = IspAccountResponse, headers(("ETag" = String))),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn get_isp_account(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let cid = connection_id(&path.0)?;
    let id = account_id(&path.1)?;
    with_provider(&state, caller, cid, id).await
}

/// Change an account's service plan.
///
/// Moves an ISP account to another service plan at the provider, which checks the plan; the
/// account here is updated when the provider accepts. Send `If-Match` with the ETag you read.
#[utoipa::path(post, path = "/v1/connections/{connection_id}/isp-accounts/{account_id}:change-service-plan", tag = "isp",
    security(("bearer" = ["operator"])),
    params(("connection_id" = Uuid, Path), ("account_id" = Uuid, Path),
        ("If-Match" = Option<String>, Header),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same key and body")),
    request_body = ChangeServicePlanRequest,
    responses((status = 200, description = "The account on its new plan", body = IspAccountResponse, headers(("ETag" = String))),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 412, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn change_service_plan(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: JsonBody<ChangeServicePlanRequest>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let cid = connection_id(&path.0)?;
    let id = account_id(&path.1)?;
    let expected = if_match(&req)?;
    let body = body.0;
    let mut v = ValidationError::default();
    if body.package_id <= 0 {
        v.push("package_id", "must be a positive PackageId");
    }
    let add_ons = body.add_on_features.map(|names| {
        let mut add_ons: Vec<String> = Vec::new();
        for (i, name) in names.iter().enumerate() {
            match domain::adc::add_on_feature(name) {
                Some(known) if !add_ons.iter().any(|a| a == known) => {
                    add_ons.push(known.to_owned())
                }
                Some(_) => {}
                None => v.push(
                    format!("add_on_features[{i}]"),
                    format!(
                        "'{}' is not an Alarm.com add-on; one of {}",
                        name.chars().take(40).collect::<String>(),
                        domain::adc::ADD_ON_FEATURES.join(", ")
                    ),
                ),
            }
        }
        add_ons
    });
    v.into_result()?;
    domain::isp::change_service_plan(
        &state.isp_ports(),
        caller,
        cid,
        id,
        AdcPackageId(body.package_id),
        add_ons,
        expected,
    )
    .await?;
    // Read back: the answer shows what Alarm.com now holds.
    with_provider(&state, caller, cid, id).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BuilderProgramResponse {
    pub builder_program_id: i64,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BuilderProgramList {
    pub items: Vec<BuilderProgramResponse>,
}

/// List the Builder Programs.
///
/// The Builder Programs of the Alarm.com account, read from Alarm.com (kept a minute), to
/// choose the one a Builder Program customer or commitment is made under. Changes nothing.
#[utoipa::path(get, path = "/v1/connections/{connection_id}/builder-programs", tag = "isp",
    security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path)),
    responses((status = 200, description = "The Builder Programs", body = BuilderProgramList),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not an Alarm.com connection, or no credentials", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn builder_programs(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let cid = connection_id(&path)?;
    let programs = domain::isp::builder_programs(&state.isp_ports(), caller, cid).await?;
    Ok(HttpResponse::Ok().json(BuilderProgramList {
        items: programs
            .into_iter()
            .map(|p| BuilderProgramResponse {
                builder_program_id: p.id,
                name: p.name,
            })
            .collect(),
    }))
}

// ---- Alarm.net callback health ------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackCounts {
    /// Verified and stored.
    pub accepted: u64,
    /// Verified repeats of an event already stored.
    pub duplicates: u64,
    /// Refused: bad or missing signature, stale timestamp, unreadable payload.
    pub rejected: u64,
}

impl From<&domain::isp::CallbackStats> for CallbackCounts {
    fn from(s: &domain::isp::CallbackStats) -> Self {
        Self {
            accepted: s.accepted,
            duplicates: s.duplicates,
            rejected: s.rejected,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackHealthResponse {
    pub connection_id: Uuid,
    /// Where Alarm.net must post (the path on this service).
    pub receiving_path: String,
    /// The URL configured in the provider settings.
    pub configured_url: Option<String>,
    /// Whether a signing secret was issued (`inbound-credentials:rotate`).
    pub secret_configured: bool,
    /// `not_configured`, `silent` (nothing in 24 hours), `healthy`, or
    /// `degraded` (some rejected in 24 hours).
    pub status: String,
    pub last_callback_at: Option<DateTime<Utc>>,
    pub last_rejected_at: Option<DateTime<Utc>>,
    pub last_rejection_reason: Option<String>,
    /// Over the last 24 hours.
    pub last_24h: CallbackCounts,
}

/// Read the Alarm.net callback health.
///
/// For a Honeywell-based provider connection: the callback URL to configure, the last callback
/// received, and how many were accepted and refused in the last 24 hours.
#[utoipa::path(get, path = "/v1/connections/{connection_id}/callback-health", tag = "isp",
    security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path)),
    responses((status = 200, description = "The callback health", body = CallbackHealthResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a provider with Alarm.net callbacks", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn callback_health(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let cid = connection_id(&path)?;
    let health = domain::isp::callback_health(
        state.connections.as_ref(),
        state.isp.as_ref(),
        caller,
        cid,
        Utc::now(),
    )
    .await?;
    let status = match health.status {
        CallbackHealthStatus::NotConfigured => "not_configured",
        CallbackHealthStatus::Silent => "silent",
        CallbackHealthStatus::Healthy => "healthy",
        CallbackHealthStatus::Degraded => "degraded",
    };
    let stats = health.last_24h;
    let counts = CallbackCounts::from(&stats);
    Ok(HttpResponse::Ok().json(CallbackHealthResponse {
        connection_id: cid.0,
        receiving_path: format!("/v1/webhooks/alarmnet/{cid}"),
        configured_url: health.configured_url,
        secret_configured: health.secret_configured,
        status: status.to_owned(),
        last_callback_at: stats.last_received_at,
        last_rejected_at: stats.last_rejected_at,
        last_rejection_reason: stats.last_rejection_reason,
        last_24h: counts,
    }))
}

// ---- Alarm.com billing notifications --------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct BillingNotificationsResponse {
    pub connection_id: Uuid,
    /// Whether `settings.billing_notifications` is on.
    pub enabled: bool,
    /// The Alarm.com account's billing permission, asked now: `granted`,
    /// `missing`, or `unknown` (no credentials, or Alarm.com could not be asked).
    pub permission: String,
    /// What to do next.
    pub detail: String,
    /// Where Alarm.com must post (the path on this service).
    pub receiving_path: String,
    pub last_notification_at: Option<DateTime<Utc>>,
    pub last_rejected_at: Option<DateTime<Utc>>,
    pub last_rejection_reason: Option<String>,
    /// Over the last 24 hours.
    pub last_24h: CallbackCounts,
}

/// Read the billing notifications state.
///
/// For an Alarm.com connection: whether billing notifications are on, whether the Alarm.com
/// account holds the billing permission they need (asked now), and what arrived in the last 24
/// hours. Changes nothing.
#[utoipa::path(get, path = "/v1/connections/{connection_id}/billing-notifications", tag = "isp",
    security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path)),
    responses((status = 200, description = "The billing notifications state", body = BillingNotificationsResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not an alarm_com connection", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn billing_notifications(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let cid = connection_id(&path)?;
    let report = domain::isp::billing_notifications_report(
        state.connections.as_ref(),
        state.adc.as_ref(),
        state.isp.as_ref(),
        caller,
        cid,
        Utc::now(),
    )
    .await?;
    let stats = report.last_24h;
    let counts = CallbackCounts::from(&stats);
    Ok(HttpResponse::Ok().json(BillingNotificationsResponse {
        connection_id: cid.0,
        enabled: report.enabled,
        permission: match report.permission {
            PermissionCheck::Granted => "granted",
            PermissionCheck::Missing => "missing",
            PermissionCheck::Unknown => "unknown",
        }
        .to_owned(),
        detail: report.detail,
        receiving_path: format!("/v1/webhooks/alarm-com/{cid}"),
        last_notification_at: stats.last_received_at,
        last_rejected_at: stats.last_rejected_at,
        last_rejection_reason: stats.last_rejection_reason,
        last_24h: counts,
    }))
}
