//! Adding, reading, changing and removing connections (S1): the requests
//! and answers of a connection itself, and their handlers.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use domain::connection::Connection;
use domain::connection_setup::{self, ConnectionEdit, ConnectionRequest};
use domain::tenancy::Role;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{not_found_as_connection, ports, PutCredentialRequest};
use crate::auth::Auth;
use crate::dto::{
    AuthModeDto, ConflictPolicyDto, ConnectionStatusDto, MigrationStateDto, ProviderDto,
};
use crate::extract::{connection_id, etag, if_match, page_parts, JsonBody, PageParams, Query};
use crate::problem::ApiResult;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnectionRequest {
    pub provider: ProviderDto,
    /// Defaults to the provider's name ("Stages"); unique per dealer.
    #[schema(max_length = 100)]
    pub name: Option<String>,
    /// Base URL of the upstream API.
    #[schema(example = "https://stages.example.com/")]
    pub endpoint: String,
    pub auth_mode: Option<AuthModeDto>,
    /// Push linked billing changes without being asked. Default true.
    pub auto_sync: Option<bool>,
    /// Default `hold`.
    pub conflict_policy: Option<ConflictPolicyDto>,
    pub status: Option<ConnectionStatusDto>,
    /// Stages only. When the connection first works (its dealer credential
    /// is stored and Stages accepts it, or a `:test` by an operator passes),
    /// queue a reconcile that takes over the billing ids already in Stages
    /// (S20). Default true.
    pub migrate_on_connect: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConnectionRequest {
    #[schema(max_length = 100)]
    pub name: Option<String>,
    /// Credentials are bound to the server they were given for: a new
    /// scheme, host or port drops the stored dealer and per-user credentials
    /// (a new path keeps them). Send `dealer_credentials` with it to replace
    /// the dealer one in the same change.
    pub endpoint: Option<String>,
    pub auth_mode: Option<AuthModeDto>,
    pub auto_sync: Option<bool>,
    pub conflict_policy: Option<ConflictPolicyDto>,
    pub status: Option<ConnectionStatusDto>,
    /// Stages only; see the create request. Turning it on later queues the
    /// migration at the next credential set that works or passing `:test`.
    pub migrate_on_connect: Option<bool>,
    /// Provider settings; each change is checked against the provider.
    pub settings: Option<crate::routes::isp::ProviderSettingsPatchRequest>,
    /// Stored as the dealer credential with this change, as
    /// `PUT .../credentials/dealer` would (checked against Alarm.com first
    /// for an Alarm.com connection), at the new endpoint if it moves.
    pub dealer_credentials: Option<PutCredentialRequest>,
}

impl From<CreateConnectionRequest> for ConnectionRequest {
    fn from(b: CreateConnectionRequest) -> Self {
        Self {
            provider: b.provider.into(),
            name: b.name,
            endpoint: b.endpoint,
            auth_mode: b.auth_mode.map(Into::into),
            auto_sync: b.auto_sync,
            conflict_policy: b.conflict_policy.map(Into::into),
            status: b.status.map(Into::into),
            migrate_on_connect: b.migrate_on_connect,
        }
    }
}

impl From<UpdateConnectionRequest> for ConnectionEdit {
    fn from(b: UpdateConnectionRequest) -> Self {
        Self {
            name: b.name,
            endpoint: b.endpoint,
            auth_mode: b.auth_mode.map(Into::into),
            auto_sync: b.auto_sync,
            conflict_policy: b.conflict_policy.map(Into::into),
            status: b.status.map(Into::into),
            migrate_on_connect: b.migrate_on_connect,
            settings: b.settings.map(|p| p.into_domain()),
            dealer_credentials: b.dealer_credentials.map(PutCredentialRequest::parse),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionResponse {
    pub id: Uuid,
    pub name: String,
    pub provider: ProviderDto,
    pub endpoint: String,
    pub auth_mode: AuthModeDto,
    pub auto_sync: bool,
    pub conflict_policy: ConflictPolicyDto,
    pub status: ConnectionStatusDto,
    pub settings: crate::routes::isp::ProviderSettingsResponse,
    pub migrate_on_connect: bool,
    pub migration: MigrationResponse,
    /// Also the ETag.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The automatic migration (S20) of a Stages connection.
#[derive(Debug, Serialize, ToSchema)]
pub struct MigrationResponse {
    pub state: MigrationStateDto,
    /// The reconcile job (`GET /v1/jobs/{id}`; its summary says what was
    /// taken over and the drift found), once one was queued.
    pub job_id: Option<Uuid>,
}

impl From<Connection> for ConnectionResponse {
    fn from(c: Connection) -> Self {
        Self {
            migration: MigrationResponse {
                state: domain::migration::MigrationState::of(&c).into(),
                job_id: c.migration.map(|m| m.job_id.0),
            },
            migrate_on_connect: c.migrate_on_connect,
            settings: (&c.settings).into(),
            id: c.id.0,
            name: c.name.as_str().to_owned(),
            provider: c.provider.into(),
            endpoint: c.endpoint.as_str().to_owned(),
            auth_mode: c.auth_mode.into(),
            auto_sync: c.auto_sync,
            conflict_policy: c.conflict_policy.into(),
            status: c.status.into(),
            version: c.version,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// The changed connection, and whether the change dropped its credentials.
#[derive(Debug, Serialize, ToSchema)]
pub struct UpdatedConnectionResponse {
    #[serde(flatten)]
    pub connection: ConnectionResponse,
    /// The endpoint moved to another scheme, host or port, so the
    /// credentials stored for the old one (dealer and per-user) were deleted;
    /// they must be set again (unless `dealer_credentials` came with the
    /// change). Recorded in the audit trail as `drop_credentials`.
    pub credentials_dropped: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    pub items: Vec<ConnectionResponse>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConnectionFilter {
    pub provider: Option<ProviderDto>,
}

fn with_etag(mut res: actix_web::HttpResponseBuilder, c: Connection) -> HttpResponse {
    res.insert_header((header::ETAG, etag(c.version)))
        .json(ConnectionResponse::from(c))
}

/// List connections.
///
/// The connections of your dealer, optionally of one provider. Credentials are never shown,
/// only whether they are set.
#[utoipa::path(get, path = "/v1/connections", tag = "connections",
    security(("bearer" = ["viewer"])),
    params(ConnectionFilter, PageParams),
    responses((status = 200, description = "A page of connections", body = ConnectionList),
        (status = 401, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn list_connections(
    state: web::Data<AppState>,
    auth: Auth,
    filter: Query<ConnectionFilter>,
    page: Query<PageParams>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let page = state
        .connections
        .list_connections(
            &caller.dealer,
            filter.provider.map(Into::into),
            page.to_request()?,
        )
        .await?;
    let (items, next_page_token) = page_parts(page);
    Ok(HttpResponse::Ok().json(ConnectionList {
        items,
        next_page_token,
    }))
}

/// Create a connection.
///
/// Adds a connection of your dealer to Stages or to an interactive services provider: its name
/// (unique per dealer), endpoint, authentication mode and settings. Needs the admin role. The
/// endpoint must pass the egress policy; nothing is called upstream until the connection is
/// tested or used. Credentials are set separately.
#[utoipa::path(post, path = "/v1/connections", tag = "connections",
    security(("bearer" = ["admin"])),
    request_body = CreateConnectionRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same key and body")),
    responses((status = 201, description = "The connection made; `Location` names it", body = ConnectionResponse, headers(("ETag" = String), ("Location" = String))),
        (status = 400, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Name taken", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn create_connection(
    state: web::Data<AppState>,
    auth: Auth,
    body: JsonBody<CreateConnectionRequest>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Admin)?;
    let new = connection_setup::new_connection(caller.dealer.clone(), body.0.into())?;
    state.check_egress("endpoint", new.endpoint.url()).await?;
    let created = state.connections.insert_connection(new).await?;
    tracing::info!(connection_id = %created.id, dealer = %caller.dealer, "connection created");
    let mut res = HttpResponse::Created();
    res.insert_header((header::LOCATION, format!("/v1/connections/{}", created.id)));
    Ok(with_etag(res, created))
}

/// Read a connection.
///
/// One connection of your dealer with its settings and status. Passwords and secrets are never
/// shown.
#[utoipa::path(get, path = "/v1/connections/{connection_id}", tag = "connections",
    security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path)),
    responses((status = 200, description = "The connection; `ETag` guards a later change", body = ConnectionResponse, headers(("ETag" = String))),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn get_connection(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let id = connection_id(&path)?;
    let c = state
        .connections
        .connection(&caller.dealer, id)
        .await
        .map_err(not_found_as_connection)?;
    Ok(with_etag(HttpResponse::Ok(), c))
}

/// Change a connection.
///
/// Changes the name, endpoint, status, authentication mode or settings of a connection. Needs
/// the admin role. Send `If-Match` with the ETag you read to avoid overwriting someone else's
/// change. Turning on Alarm.com billing notifications first asks Alarm.com whether the account
/// holds the permission they need. Existing links and billing records are not changed.
#[utoipa::path(patch, path = "/v1/connections/{connection_id}", tag = "connections",
    security(("bearer" = ["admin"])),
    params(("connection_id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    request_body = UpdateConnectionRequest,
    responses((status = 200, description = "The connection as changed, with any warnings", body = UpdatedConnectionResponse, headers(("ETag" = String))),
        (status = 403, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 412, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 504, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn update_connection(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    path: web::Path<String>,
    body: JsonBody<UpdateConnectionRequest>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Admin)?;
    let id = connection_id(&path)?;
    let expected = if_match(&req)?;
    let edit = connection_setup::checked_edit(body.0.into())?;
    if let Some(endpoint) = edit.endpoint() {
        state.check_egress("endpoint", endpoint.url()).await?;
    }
    let updated =
        connection_setup::update_connection(ports(&state), caller, id, edit, expected).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(updated.connection.version)))
        .json(UpdatedConnectionResponse {
            connection: updated.connection.into(),
            credentials_dropped: updated.credentials_dropped,
        }))
}

/// Delete a connection.
///
/// Removes the connection with its stored credentials. Needs the admin role. Nothing is deleted
/// in Stages or at the provider.
#[utoipa::path(delete, path = "/v1/connections/{connection_id}", tag = "connections",
    security(("bearer" = ["admin"])),
    params(("connection_id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204, description = "Deleted"),
        (status = 403, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 412, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn delete_connection(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Admin)?;
    let id = connection_id(&path)?;
    let expected = if_match(&req)?;
    state
        .connections
        .delete_connection(&caller.dealer, id, expected)
        .await
        .map_err(not_found_as_connection)?;
    Ok(HttpResponse::NoContent().finish())
}
