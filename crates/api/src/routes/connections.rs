//! Connections (S1, S2): CRUD, dealer and per-user upstream credentials, the
//! inbound credential Stages calls back with, and the connection test.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use domain::connection::{
    Connection, ConnectionChanges, ConnectionId, ConnectionName, CredentialOwner, Endpoint,
    InboundCredential, NewConnection, ProviderKind,
};
use domain::operations;
use domain::tenancy::Role;
use domain::validation::ValidationError;
use domain::Secret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Auth;
use crate::dto::{
    AuthModeDto, ConflictPolicyDto, ConnectionStatusDto, MigrationStateDto, ProviderDto,
    TestOutcomeDto,
};
use crate::extract::{
    connection_id, encode_page_token, etag, if_match, page_slice, JsonBody, NoBody, PageParams,
    Query,
};
use crate::problem::{ApiError, ApiResult};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // Custom methods (`{id}:verb`) first: the plain `{id}` pattern would match them too.
    cfg.route(
        "/connections/{connection_id}:test",
        web::post().to(test_connection),
    )
    .route(
        "/connections/{connection_id}/inbound-credentials:rotate",
        web::post().to(rotate_inbound_credentials),
    )
    .service(
        web::resource("/connections")
            .route(web::get().to(list_connections))
            .route(web::post().to(create_connection)),
    )
    .service(
        web::resource("/connections/{connection_id}")
            .route(web::get().to(get_connection))
            .route(web::patch().to(update_connection))
            .route(web::delete().to(delete_connection)),
    )
    .service(
        web::resource("/connections/{connection_id}/credentials/me")
            .route(web::put().to(put_my_credentials))
            .route(web::get().to(get_my_credentials))
            .route(web::delete().to(delete_my_credentials)),
    )
    .route(
        "/connections/{connection_id}/credentials/dealer",
        web::put().to(put_dealer_credentials),
    )
    .route(
        "/connections/{connection_id}/inbound-credentials",
        web::get().to(get_inbound_credentials),
    )
    .route(
        "/connections/{connection_id}/service-plans",
        web::get().to(service_plans),
    );
}

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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutCredentialRequest {
    #[schema(min_length = 1, max_length = 256)]
    pub username: String,
    /// Write-only: stored encrypted, never returned.
    #[schema(min_length = 1, max_length = 1024, format = Password)]
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialResponse {
    pub username: String,
    pub updated_at: DateTime<Utc>,
    /// Whether the provider accepted them when saved (Alarm.com); `false`
    /// for a provider this service has no client for, which `note` explains.
    pub verified: bool,
    pub note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InboundCredentialResponse {
    /// The Basic username Stages sends on callbacks.
    pub username: String,
    /// Whether a secret has been issued (rotate to issue or replace it).
    pub configured: bool,
    pub rotated_at: Option<DateTime<Utc>>,
    /// Where the provider posts its callbacks; none for a provider that has
    /// no callback this service receives (Brinks Home).
    pub callback_path: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedInboundCredentialResponse {
    pub username: String,
    /// Shown this once; give it to Stages as the password of the callback credential.
    pub secret: String,
    pub rotated_at: DateTime<Utc>,
    pub callback_path: Option<String>,
}

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

fn not_found_as_connection(e: domain::store::StoreError) -> ApiError {
    match e {
        domain::store::StoreError::NotFound => ApiError::not_found("no such connection"),
        other => other.into(),
    }
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
    Ok(HttpResponse::Ok().json(ConnectionList {
        next_page_token: page.next_page_token.as_deref().map(encode_page_token),
        items: page.items.into_iter().map(Into::into).collect(),
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
    let body = body.0;
    let provider: ProviderKind = body.provider.into();
    let mut v = ValidationError::default();
    let name = v.check(
        "name",
        ConnectionName::parse(
            body.name
                .as_deref()
                .unwrap_or(provider.describe().default_connection_name),
        ),
    );
    let endpoint = v.check("endpoint", Endpoint::parse(&body.endpoint));
    let auth_mode = body.auth_mode.map(Into::into).unwrap_or_default();
    if auth_mode == domain::connection::AuthMode::User && !provider.describe().supports_user_auth {
        v.push(
            "auth_mode",
            format!(
                "{} connections take dealer credentials only",
                provider.as_str()
            ),
        );
    }
    let migrate_on_connect = match (provider, body.migrate_on_connect) {
        (ProviderKind::Stages, on) => on.unwrap_or(true),
        (_, Some(true)) => {
            v.push("migrate_on_connect", "applies to Stages connections only");
            false
        }
        (_, _) => false,
    };
    v.clone().into_result()?;
    let (Some(name), Some(endpoint)) = (name, endpoint) else {
        return Err(v.into());
    };
    state.check_egress("endpoint", endpoint.url()).await?;
    let created = state
        .connections
        .insert_connection(NewConnection {
            dealer: caller.dealer.clone(),
            name,
            provider,
            endpoint,
            auth_mode,
            auto_sync: body.auto_sync.unwrap_or(true),
            conflict_policy: body.conflict_policy.map(Into::into).unwrap_or_default(),
            status: body.status.map(Into::into).unwrap_or_default(),
            migrate_on_connect,
        })
        .await?;
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
    let body = body.0;
    let mut v = ValidationError::default();
    let dealer_credential = match body.dealer_credentials {
        Some(c) => match check_credential(c, "dealer_credentials.") {
            Ok(c) => Some(c),
            Err(e) => {
                v.errors.extend(e.errors);
                None
            }
        },
        None => None,
    };
    let mut changes = ConnectionChanges {
        name: body
            .name
            .as_deref()
            .and_then(|n| v.check("name", ConnectionName::parse(n))),
        endpoint: body
            .endpoint
            .as_deref()
            .and_then(|e| v.check("endpoint", Endpoint::parse(e))),
        auth_mode: body.auth_mode.map(Into::into),
        auto_sync: body.auto_sync,
        conflict_policy: body.conflict_policy.map(Into::into),
        status: body.status.map(Into::into),
        migrate_on_connect: body.migrate_on_connect,
        settings: None,
    };
    let settings = match body.settings {
        Some(patch) => match patch.into_domain() {
            Ok(patch) => Some(patch),
            Err(e) => {
                v.errors.extend(e.errors);
                None
            }
        },
        None => None,
    };
    v.into_result()?;
    if let Some(endpoint) = &changes.endpoint {
        state.check_egress("endpoint", endpoint.url()).await?;
    }
    if let Some((username, password)) = &dealer_credential {
        // Checked where it will be used: at the new endpoint when it moves.
        let mut at = state
            .connections
            .connection(&caller.dealer, id)
            .await
            .map_err(not_found_as_connection)?;
        if let Some(endpoint) = &changes.endpoint {
            at.endpoint = endpoint.clone();
        }
        operations::check_provider_credentials(state.adc.as_ref(), &at, username, password).await?;
    }
    if let Some(patch) = settings.filter(|p| !p.is_empty()) {
        let current = state
            .connections
            .connection(&caller.dealer, id)
            .await
            .map_err(not_found_as_connection)?;
        if expected.is_some_and(|v| v != current.version) {
            return Err(ApiError::precondition_failed());
        }
        let next = domain::isp::settings_after(
            state.connections.as_ref(),
            state.adc.as_ref(),
            &caller.dealer,
            &current,
            &patch,
        )
        .await?;
        changes.settings = Some(next);
    }
    if changes.auth_mode == Some(domain::connection::AuthMode::User)
        || changes.migrate_on_connect == Some(true)
    {
        let current = state
            .connections
            .connection(&caller.dealer, id)
            .await
            .map_err(not_found_as_connection)?;
        if changes.migrate_on_connect == Some(true) && current.provider != ProviderKind::Stages {
            return Err(ValidationError::field(
                "migrate_on_connect",
                "applies to Stages connections only",
            )
            .into());
        }
        if changes.auth_mode == Some(domain::connection::AuthMode::User)
            && !current.provider.describe().supports_user_auth
        {
            return Err(ValidationError::field(
                "auth_mode",
                format!(
                    "{} connections take dealer credentials only",
                    current.provider.as_str()
                ),
            )
            .into());
        }
    }
    let credential_set = dealer_credential.is_some();
    let mut updated = state
        .connections
        .update_connection_as(
            &caller.dealer,
            id,
            changes,
            expected,
            dealer_credential,
            &caller.user.0,
        )
        .await
        .map_err(not_found_as_connection)?;
    if updated.credentials_dropped {
        tracing::info!(connection_id = %id, "endpoint moved to another server; its credentials were dropped");
    }
    if credential_set {
        updated.connection = migrate_if_working(&state, caller, updated.connection).await;
    }
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

fn parse_credential(body: PutCredentialRequest) -> ApiResult<(String, Secret)> {
    Ok(check_credential(body, "")?)
}

/// A credential's fields checked, named under `prefix` in the errors.
fn check_credential(
    body: PutCredentialRequest,
    prefix: &str,
) -> Result<(String, Secret), ValidationError> {
    let mut v = ValidationError::default();
    let username = body.username.trim().to_owned();
    if username.is_empty() || username.chars().count() > 256 {
        v.push(format!("{prefix}username"), "must be 1 to 256 characters");
    } else if username.chars().any(char::is_control) {
        v.push(
            format!("{prefix}username"),
            "must not contain control characters",
        );
    }
    if body.password.is_empty() || body.password.chars().count() > 1024 {
        v.push(format!("{prefix}password"), "must be 1 to 1024 characters");
    }
    v.into_result()?;
    Ok((username, Secret::new(body.password)))
}

/// Set the dealer credential.
///
/// Stores the one credential the whole dealer uses on this connection. Needs the admin role. An
/// Alarm.com credential is checked against Alarm.com before it is stored and a wrong one is
/// refused with the provider's reason; a Stages credential is stored as given (test the
/// connection to check it). The password is encrypted at rest and never returned.
#[utoipa::path(put, path = "/v1/connections/{connection_id}/credentials/dealer", tag = "connections",
    security(("bearer" = ["admin"])),
    params(("connection_id" = Uuid, Path)),
    request_body = PutCredentialRequest,
    // Alarm.com credentials are checked against Alarm.com when saved.
    responses((status = 200, description = "The stored username (never the password)", body = CredentialResponse),
        (status = 403, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 504, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn put_dealer_credentials(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    body: JsonBody<PutCredentialRequest>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Admin)?;
    let id = connection_id(&path)?;
    let (username, password) = parse_credential(body.0)?;
    let connection = state
        .connections
        .connection(&caller.dealer, id)
        .await
        .map_err(not_found_as_connection)?;
    let note = operations::check_provider_credentials(
        state.adc.as_ref(),
        &connection,
        &username,
        &password,
    )
    .await?;
    let stored = state
        .connections
        .put_credential(
            &caller.dealer,
            id,
            &CredentialOwner::Dealer,
            &username,
            &password,
        )
        .await
        .map_err(not_found_as_connection)?;
    migrate_if_working(&state, caller, connection).await;
    Ok(HttpResponse::Ok().json(CredentialResponse {
        username: stored.username,
        updated_at: stored.updated_at,
        verified: note.is_none(),
        note,
    }))
}

/// After the dealer credential was stored: a Stages connection whose
/// migration (S20) waits gets it queued when Stages accepts the credential.
/// Never fails the request; answers the connection as it is now.
async fn migrate_if_working(
    state: &AppState,
    caller: &domain::tenancy::Caller,
    connection: Connection,
) -> Connection {
    let queued = domain::migration::after_dealer_credentials(
        state.connections.as_ref(),
        state.stages.as_ref(),
        caller,
        &connection,
    )
    .await;
    match queued {
        Some(_) => state
            .connections
            .connection(&caller.dealer, connection.id)
            .await
            .unwrap_or(connection),
        None => connection,
    }
}

/// The caller's own upstream credential on a user-mode connection.
async fn user_mode_connection(
    state: &AppState,
    caller: &domain::tenancy::Caller,
    id: ConnectionId,
) -> ApiResult<Connection> {
    let c = state
        .connections
        .connection(&caller.dealer, id)
        .await
        .map_err(not_found_as_connection)?;
    if c.auth_mode != domain::connection::AuthMode::User {
        return Err(ApiError::conflict(
            "dealer_auth_mode",
            format!(
                "connection '{}' uses one dealer credential, not per-user ones; an admin sets it with PUT .../credentials/dealer",
                c.name.as_str()
            ),
        ));
    }
    Ok(c)
}

/// Per-user credentials are stored as given; `:test` checks them.
const OWN_CREDENTIALS_NOTE: &str =
    "stored as given, not checked when saved; POST /v1/connections/{id}:test checks them";

/// Store your own credential.
///
/// On a connection in `user` mode, stores the credential the service uses when you act through
/// it. You see and change only your own. The password is encrypted at rest and never returned.
#[utoipa::path(put, path = "/v1/connections/{connection_id}/credentials/me", tag = "connections",
    security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path)),
    request_body = PutCredentialRequest,
    responses((status = 200, description = "Your stored username (never the password)", body = CredentialResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The connection uses dealer credentials", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn put_my_credentials(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    body: JsonBody<PutCredentialRequest>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let id = connection_id(&path)?;
    let (username, password) = parse_credential(body.0)?;
    user_mode_connection(&state, caller, id).await?;
    let owner = CredentialOwner::User(caller.user.clone());
    let stored = state
        .connections
        .put_credential(&caller.dealer, id, &owner, &username, &password)
        .await
        .map_err(not_found_as_connection)?;
    Ok(HttpResponse::Ok().json(CredentialResponse {
        username: stored.username,
        updated_at: stored.updated_at,
        verified: false,
        note: Some(OWN_CREDENTIALS_NOTE.to_owned()),
    }))
}

/// Read your own username.
///
/// On a connection in `user` mode, the username you stored. The password is never returned.
#[utoipa::path(get, path = "/v1/connections/{connection_id}/credentials/me", tag = "connections",
    security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path)),
    responses((status = 200, description = "Your stored username", body = CredentialResponse),
        (status = 404, description = "No such connection, or no credential stored", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn get_my_credentials(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let id = connection_id(&path)?;
    user_mode_connection(&state, caller, id).await?;
    let owner = CredentialOwner::User(caller.user.clone());
    let stored = state
        .connections
        .credential(&caller.dealer, id, &owner)
        .await
        .map_err(not_found_as_connection)?
        .ok_or_else(|| {
            ApiError::not_found("you have not stored credentials for this connection")
        })?;
    Ok(HttpResponse::Ok().json(CredentialResponse {
        username: stored.username,
        updated_at: stored.updated_at,
        verified: false,
        note: Some(OWN_CREDENTIALS_NOTE.to_owned()),
    }))
}

/// Forget your own credential.
///
/// On a connection in `user` mode, removes your stored credential. Other users' credentials are
/// not touched.
#[utoipa::path(delete, path = "/v1/connections/{connection_id}/credentials/me", tag = "connections",
    security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn delete_my_credentials(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let id = connection_id(&path)?;
    user_mode_connection(&state, caller, id).await?;
    let owner = CredentialOwner::User(caller.user.clone());
    let deleted = state
        .connections
        .delete_credential(&caller.dealer, id, &owner)
        .await
        .map_err(not_found_as_connection)?;
    if !deleted {
        return Err(ApiError::not_found(
            "you have not stored credentials for this connection",
        ));
    }
    Ok(HttpResponse::NoContent().finish())
}

fn inbound_username(id: ConnectionId) -> String {
    format!("cl-{}", id.0.simple())
}

/// Where the provider posts its callbacks, signed or authenticated with the inbound credential.
/// Alarm.net callbacks come from the Honeywell-based provider (Total Connect) only.
fn callback_path(c: &Connection) -> Option<String> {
    let id = c.id;
    match c.provider {
        ProviderKind::Stages => Some(format!("/v1/webhooks/stages/{id}")),
        ProviderKind::AlarmCom => Some(format!("/v1/webhooks/alarm-com/{id}")),
        ProviderKind::TotalConnect => Some(format!("/v1/webhooks/alarmnet/{id}")),
        ProviderKind::BrinksHome => None,
    }
}

/// Read the callback credential.
///
/// The username and callback URL Stages uses to call this service back on this connection.
/// Needs the admin role. The secret is never shown here; rotate it to get a new one.
#[utoipa::path(get, path = "/v1/connections/{connection_id}/inbound-credentials", tag = "connections",
    security(("bearer" = ["admin"])),
    params(("connection_id" = Uuid, Path)),
    responses((status = 200, description = "The callback username and URL, without the secret", body = InboundCredentialResponse),
        (status = 403, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn get_inbound_credentials(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Admin)?;
    let id = connection_id(&path)?;
    let connection = state
        .connections
        .connection(&caller.dealer, id)
        .await
        .map_err(not_found_as_connection)?;
    let current = state
        .connections
        .inbound_credential(&caller.dealer, id)
        .await
        .map_err(not_found_as_connection)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(InboundCredentialResponse {
            username: current
                .as_ref()
                .map_or_else(|| inbound_username(id), |c| c.username.clone()),
            configured: current.is_some(),
            rotated_at: current.map(|c| c.rotated_at),
            callback_path: callback_path(&connection),
        }))
}

/// Rotate the callback secret.
///
/// Issues a new secret for callbacks to this connection; the old one stops working at once.
/// Needs the admin role. The new secret is shown in this answer only: store it in Stages (or
/// the provider) right away.
#[utoipa::path(post, path = "/v1/connections/{connection_id}/inbound-credentials:rotate", tag = "connections",
    security(("bearer" = ["admin"])),
    params(("connection_id" = Uuid, Path)),
    responses((status = 200, description = "The new secret, shown this once", body = RotatedInboundCredentialResponse),
        (status = 403, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn rotate_inbound_credentials(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    _no_body: NoBody,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Admin)?;
    let id = connection_id(&path)?;
    let connection = state
        .connections
        .connection(&caller.dealer, id)
        .await
        .map_err(not_found_as_connection)?;
    let credential = InboundCredential {
        username: inbound_username(id),
        secret: Secret::new(crate::random_secret()),
        rotated_at: Utc::now(),
    };
    state
        .connections
        .set_inbound_credential(&caller.dealer, id, &credential)
        .await
        .map_err(not_found_as_connection)?;
    tracing::info!(connection_id = %id, "inbound credential rotated");
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(RotatedInboundCredentialResponse {
            username: credential.username,
            secret: credential.secret.expose().to_owned(),
            rotated_at: credential.rotated_at,
            callback_path: callback_path(&connection),
        }))
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
    let report = operations::test_connection(
        state.connections.as_ref(),
        state.stages.as_ref(),
        state.adc.as_ref(),
        caller,
        id,
    )
    .await
    .map_err(|e| match e {
        operations::OperationError::Store(s) => not_found_as_connection(s),
        other => other.into(),
    })?;
    if report.outcome == operations::TestOutcome::Ok {
        // The connection works: its migration (S20) may start now.
        let armed = match state.connections.connection(&caller.dealer, id).await {
            Ok(c) => domain::migration::arm(state.connections.as_ref(), caller, &c).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = armed {
            tracing::warn!(connection_id = %id, error = %e, "could not queue the migration");
        }
    }
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
            .map_err(|e| match e {
                operations::OperationError::Store(s) => not_found_as_connection(s),
                other => other.into(),
            })?;
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
