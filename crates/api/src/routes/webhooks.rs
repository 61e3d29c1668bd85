//! Inbound callbacks from Stages: verified with the connection's inbound Basic
//! credential before the body is read, stored once per event id, answered as
//! soon as they are stored, and applied by a background job.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use domain::connection::ConnectionId;
use domain::link_sync::jobs::ApplyStagesCallback;
use domain::stages::{StagesCallback, StagesCallbackEvent};
use domain::store::Received;
use serde::Serialize;
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
    #[schema(value_type = crate::dto::ReceiptStatus)]
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

#[derive(Debug, Serialize, ToSchema)]
pub struct SentSystemResponse {
    pub device_id: String,
    pub system_id: String,
}

/// The answer to `site.send_to_billing`: the billing ids Stages stores.
#[derive(Debug, Serialize, ToSchema)]
pub struct SentToBillingResponse {
    pub event_id: String,
    #[schema(value_type = crate::dto::SentToBillingStatus)]
    pub status: &'static str,
    pub customer_id: String,
    pub customer_created: bool,
    pub site_id: String,
    pub systems: Vec<SentSystemResponse>,
}

/// A callback's event id as an idempotency key: its refusals name the event.
const EVENT_ID_KEY: crate::middleware::KeyRefusals = crate::middleware::KeyRefusals {
    in_flight: ("in_flight", "this event is being processed; retry shortly"),
    reused: (
        "event_id_reused",
        "this event id was sent before with another body",
    ),
};

/// Stages waits for this answer, so it is worked out now, not by a job. The
/// event id is an idempotency key: the same event again gets the same answer.
async fn send_to_billing(
    state: &AppState,
    connection: &domain::connection::Connection,
    event_id: &str,
    body: &[u8],
    site_no: &domain::stages::SiteNo,
    target: &domain::stages::SendToBillingTarget,
) -> ApiResult<HttpResponse> {
    use domain::store::{IdempotencyScope, StoredResponse};
    use sha2::{Digest, Sha256};
    let scope = IdempotencyScope {
        dealer: connection.dealer.clone(),
        user: format!("stages-callback:{}", connection.id),
        key: event_id.to_owned(),
    };
    let fingerprint = hex::encode(Sha256::digest(body));
    let begun = state
        .idempotency
        .begin(
            &scope,
            &fingerprint,
            chrono::Utc::now(),
            chrono::Duration::minutes(5),
        )
        .await;
    if let Some(answer) = crate::middleware::earlier_answer(begun, &EVENT_ID_KEY) {
        return Ok(answer);
    }
    let outcome =
        domain::send_to_billing::send_to_billing(state.linking(), connection, site_no, target)
            .await;
    let (status, body) = match outcome {
        Ok(sent) => (
            StatusCode::CREATED,
            serde_json::to_vec(&SentToBillingResponse {
                event_id: event_id.to_owned(),
                status: "created",
                customer_id: sent.customer_id,
                customer_created: sent.customer_created,
                site_id: sent.site_id,
                systems: sent
                    .systems
                    .into_iter()
                    .map(|s| SentSystemResponse {
                        device_id: s.device_id,
                        system_id: s.system_id,
                    })
                    .collect(),
            })
            .map_err(ApiError::internal)?,
        ),
        Err(e) => {
            // Nothing was made, so Stages may send the same event again.
            let _ = state.idempotency.release(&scope).await;
            return Err(e.into());
        }
    };
    let stored = StoredResponse {
        status: status.as_u16(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.clone(),
    };
    if let Err(e) = state.idempotency.finish(&scope, &stored).await {
        tracing::warn!(error = %e, "could not keep the send_to_billing answer");
    }
    Ok(HttpResponse::build(status)
        .content_type("application/json")
        .body(body))
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

/// Receive a Stages callback.
///
/// Called by Stages, with the connection's callback credential (HTTP Basic), not by clients.
/// `site.updated` and `device.updated` are stored once per event id, answered 202, and applied
/// to the linked billing records by a background job (`Location` names it, readable with a
/// dealer token). `site.send_to_billing` is answered at once with the billing customer, site
/// and systems made (or found) for the Stages site; the billing ids are written back to Stages.
/// A repeated event id is answered 200 and ignored.
#[utoipa::path(post, path = "/v1/webhooks/stages/{connection_id}", tag = "webhooks",
    security(("stages_basic" = [])),
    params(("connection_id" = Uuid, Path)),
    request_body(content = Object, description = "A Stages callback: {event_id, occurred_at, type, ...}; see docs/stages-protocol.md"),
    responses((status = 201, description = "site.send_to_billing: the billing records made", body = SentToBillingResponse),
        (status = 202, description = "Stored; applied shortly by the job `Location` names (readable with a dealer token, not the callback credential)", body = CallbackReceipt, headers(("Location" = String, description = "The job that applies the event: `/v1/jobs/{job_id}`"))),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The site is already linked", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json"),
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
    let credentials = &state.callback_credentials;
    let lookup = state.inbound.as_ref();
    let mut verified = credentials
        .verify(lookup, cid, &user, &password)
        .await?
        .ok_or_else(unauthorized)?;
    let callback: StagesCallback = parse_json(&body)?;
    if callback.event_id.trim().is_empty() || callback.event_id.len() > 200 {
        return Err(domain::validation::ValidationError::field(
            "event_id",
            "must be 1 to 200 characters",
        )
        .into());
    }
    if let StagesCallbackEvent::SendToBilling { site_no, target } = &callback.event {
        // It writes to Stages through the connection: as it is now.
        if verified.from_memory {
            verified = credentials
                .verify_afresh(lookup, cid, &user, &password)
                .await?
                .ok_or_else(unauthorized)?;
        }
        // A resend may carry another delivery time; the event itself must match.
        let what = serde_json::to_vec(&callback.event).map_err(ApiError::internal)?;
        return send_to_billing(
            &state,
            &verified.connection,
            &callback.event_id,
            &what,
            site_no,
            target,
        )
        .await;
    }
    let payload = serde_json::to_value(&callback).map_err(ApiError::internal)?;
    let (received, job_id) = loop {
        let dealer = &verified.connection.dealer;
        let job = ApplyStagesCallback::new(cid, &callback).new_job(dealer, chrono::Utc::now());
        let job_id = job.id;
        let received = state
            .inbox
            .receive_callback(
                dealer,
                cid,
                &callback.event_id,
                &payload,
                job,
                Some(verified.credential_set_at),
            )
            .await?;
        match received {
            // Rotated since this process read it: the credential sent may
            // be the new one.
            Received::CredentialReplaced if verified.from_memory => {
                verified = credentials
                    .verify_afresh(lookup, cid, &user, &password)
                    .await?
                    .ok_or_else(unauthorized)?;
            }
            Received::CredentialReplaced => return Err(unauthorized()),
            other => break (other, job_id),
        }
    };
    let new = received == Received::New;
    let receipt = CallbackReceipt {
        event_id: callback.event_id,
        status: if new { "accepted" } else { "duplicate" },
    };
    Ok(if new {
        HttpResponse::Accepted()
            // A new event is applied by this job (no other job shares its id).
            .insert_header((header::LOCATION, format!("/v1/jobs/{}", job_id.0)))
            .json(receipt)
    } else {
        HttpResponse::Ok().json(receipt)
    })
}
