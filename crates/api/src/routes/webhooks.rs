//! Inbound callbacks from Stages: verified with the connection's inbound Basic
//! credential before the body is read, stored once per event id, answered as
//! soon as they are stored, and applied by a background job.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use domain::connection::{ConnectionId, ProviderKind};
use domain::jobs::{kinds, JobId, NewJob};
use domain::stages::{StagesCallback, StagesCallbackEvent};
use serde::Serialize;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::extract::parse_json;
use crate::problem::{ApiError, ApiResult};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/stages/{connection_id}", web::post().to(stages_callback));
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackReceipt {
    pub event_id: String,
    /// accepted (stored, applied shortly) or duplicate (already received; ignored)
    pub status: &'static str,
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "send this connection's inbound credential with HTTP Basic authentication",
    )
    .with_header(
        header::WWW_AUTHENTICATE,
        "Basic realm=\"crosslink-callbacks\"",
    )
}

fn basic_credentials(req: &HttpRequest) -> Option<(String, String)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// A Stages callback: `site.updated` and `device.updated` update the linked billing records.
#[utoipa::path(post, path = "/v1/webhooks/stages/{connection_id}", tag = "webhooks",
    security(("stages_basic" = [])),
    params(("connection_id" = Uuid, Path)),
    request_body(content = Object, description = "A Stages callback: {event_id, occurred_at, type, ...}; see docs/stages-protocol.md"),
    responses((status = 202, description = "Stored; applied shortly", body = CallbackReceipt),
        (status = 200, description = "A repeat of an event already received; ignored", body = CallbackReceipt),
        (status = 400, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn stages_callback(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    // Verify before parsing anything the caller sent.
    let (user, password) = basic_credentials(&req).ok_or_else(unauthorized)?;
    let cid = Uuid::parse_str(&path)
        .map(ConnectionId)
        .map_err(|_| unauthorized())?;
    let (connection, inbound) = state
        .inbound
        .connection_for_callback(cid)
        .await?
        .ok_or_else(unauthorized)?;
    let inbound = inbound.ok_or_else(unauthorized)?;
    let user_ok = inbound.username.as_bytes().ct_eq(user.as_bytes());
    let secret_ok = inbound
        .secret
        .expose()
        .as_bytes()
        .ct_eq(password.as_bytes());
    if !bool::from(user_ok & secret_ok) || connection.provider != ProviderKind::Stages {
        return Err(unauthorized());
    }
    let callback: StagesCallback = parse_json(&body)?;
    if callback.event_id.trim().is_empty() || callback.event_id.len() > 200 {
        return Err(domain::validation::ValidationError::field(
            "event_id",
            "must be 1 to 200 characters",
        )
        .into());
    }
    if matches!(callback.event, StagesCallbackEvent::SendToBilling { .. }) {
        return Err(ApiError::unprocessable(
            "unsupported_event",
            "site.send_to_billing is not handled by this version of the service",
        ));
    }
    let payload = serde_json::to_value(&callback).map_err(ApiError::internal)?;
    let job = NewJob {
        id: JobId::new(),
        dealer: connection.dealer.clone(),
        kind: kinds::STAGES_CALLBACK.to_owned(),
        payload: serde_json::json!({"connection_id": cid, "event_id": callback.event_id}),
        max_attempts: 8,
        run_at: chrono::Utc::now(),
        unique_key: None,
        created_by: "system:stages".into(),
    };
    let new = state
        .inbox
        .receive_callback(&connection.dealer, cid, &callback.event_id, payload, job)
        .await?;
    let receipt = CallbackReceipt {
        event_id: callback.event_id,
        status: if new { "accepted" } else { "duplicate" },
    };
    Ok(if new {
        HttpResponse::Accepted().json(receipt)
    } else {
        HttpResponse::Ok().json(receipt)
    })
}
