//! The inbound credential of a connection: the Basic credential Stages (or
//! the provider) calls this service back with, and where it calls.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use domain::connection::{Connection, ProviderKind};
use domain::connection_setup;
use domain::tenancy::Role;
use domain::Secret;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::extract::{connection_id, NoBody};
use crate::problem::ApiResult;
use crate::state::AppState;

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
    let status = connection_setup::inbound_status(state.connections.as_ref(), caller, id).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(InboundCredentialResponse {
            username: status.username,
            configured: status.rotated_at.is_some(),
            rotated_at: status.rotated_at,
            callback_path: callback_path(&status.connection),
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
    let secret = Secret::new(crate::random_secret());
    let (connection, credential) =
        connection_setup::rotate_inbound_credential(state.connections.as_ref(), caller, id, secret)
            .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(RotatedInboundCredentialResponse {
            username: credential.username,
            secret: credential.secret.expose().to_owned(),
            rotated_at: credential.rotated_at,
            callback_path: callback_path(&connection),
        }))
}
