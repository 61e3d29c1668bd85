//! Upstream credentials (S2, I1): the dealer's one credential, checked
//! against the provider when saved, and each user's own on a `user`-mode
//! connection, which only that user sees.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use domain::connection::Credential;
use domain::connection_setup::{self, NewCredential};
use domain::tenancy::Role;
use domain::validation::ValidationError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ports;
use crate::auth::Auth;
use crate::extract::{connection_id, JsonBody};
use crate::problem::ApiResult;
use crate::state::AppState;

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

impl PutCredentialRequest {
    /// The credential, checked (field names as in this body).
    pub fn parse(self) -> Result<NewCredential, ValidationError> {
        NewCredential::parse(&self.username, self.password)
    }
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
    let credential = body.0.parse()?;
    let (stored, note) =
        connection_setup::set_dealer_credential(ports(&state), caller, id, credential).await?;
    Ok(HttpResponse::Ok().json(CredentialResponse {
        username: stored.username,
        updated_at: stored.updated_at,
        verified: note.is_none(),
        note,
    }))
}

/// Per-user credentials are stored as given; `:test` checks them.
const OWN_CREDENTIALS_NOTE: &str =
    "stored as given, not checked when saved; POST /v1/connections/{id}:test checks them";

/// A user's own credential is not checked when saved: the note says how to check it.
fn own_credential_response(stored: Credential) -> CredentialResponse {
    CredentialResponse {
        username: stored.username,
        updated_at: stored.updated_at,
        verified: false,
        note: Some(OWN_CREDENTIALS_NOTE.to_owned()),
    }
}

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
    let credential = body.0.parse()?;
    let stored =
        connection_setup::set_own_credential(state.connections.as_ref(), caller, id, credential)
            .await?;
    Ok(HttpResponse::Ok().json(own_credential_response(stored)))
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
    let stored = connection_setup::own_credential(state.connections.as_ref(), caller, id).await?;
    Ok(HttpResponse::Ok().json(own_credential_response(stored)))
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
    connection_setup::forget_own_credential(state.connections.as_ref(), caller, id).await?;
    Ok(HttpResponse::NoContent().finish())
}
