//! What interactive services providers send in: Alarm.com billing
//! notifications (I4) and Alarm.net callbacks (I2). Each is verified on the
//! raw body with the connection's inbound secret before anything is parsed
//! (the scheme and payloads are in `crate::provider_payloads`), stored once
//! per event id, and answered as soon as it is stored. Refusals of a known
//! connection are logged for its callback health, without the body.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::connection::{Connection, ConnectionId, ProviderKind};
use domain::isp::sources;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::extract::parse_json;
use crate::problem::{ApiError, ApiResult};
use crate::provider_payloads::{self, AlarmComBillingNotification, AlarmNetCallbackBody};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/alarm-com/{connection_id}",
        web::post().to(alarm_com_billing),
    )
    .route(
        "/alarmnet/{connection_id}",
        web::post().to(alarmnet_callback),
    );
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderCallbackReceipt {
    pub event_id: String,
    #[schema(value_type = crate::dto::ReceiptStatus)]
    pub status: &'static str,
    /// For billing notifications: the billing customer whose ISP account has
    /// the Alarm.com customer; absent when none has (the event says so too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_customer_id: Option<String>,
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "sign the request with this connection's inbound secret (webhook-id, webhook-timestamp and webhook-signature headers)",
    )
}

/// The connection the path names, if it is one of `provider`; anything else
/// reads as an authentication failure, so nothing about connections leaks.
async fn target(
    state: &AppState,
    raw: &str,
    provider: ProviderKind,
) -> ApiResult<(Connection, Option<String>)> {
    let cid = Uuid::parse_str(raw)
        .map(ConnectionId)
        .map_err(|_| unauthorized())?;
    let (connection, inbound) = state
        .inbound
        .connection_for_callback(cid)
        .await?
        .ok_or_else(unauthorized)?;
    if connection.provider != provider {
        return Err(unauthorized());
    }
    Ok((connection, inbound.map(|c| c.secret.expose().to_owned())))
}

/// Verifies the request, logging a refusal under `source`; returns the event id.
async fn verified(
    state: &AppState,
    req: &HttpRequest,
    body: &[u8],
    connection: &Connection,
    secret: Option<&str>,
    source: &str,
) -> ApiResult<String> {
    match provider_payloads::verify(req, body, secret, chrono::Utc::now()) {
        Ok(event_id) => Ok(event_id),
        Err(why) => {
            tracing::info!(connection_id = %connection.id, source, reason = why.reason(), "provider callback refused");
            reject(state, connection, source, why.reason()).await;
            Err(unauthorized())
        }
    }
}

async fn reject(state: &AppState, connection: &Connection, source: &str, reason: &str) {
    if let Err(e) = state
        .isp
        .record_rejected_callback(&connection.dealer, connection.id, source, reason)
        .await
    {
        tracing::warn!(error = %e, "could not log a refused provider callback");
    }
}

fn receipt(event_id: String, new: bool, billing_customer_id: Option<String>) -> HttpResponse {
    let body = ProviderCallbackReceipt {
        event_id,
        status: if new { "accepted" } else { "duplicate" },
        billing_customer_id,
    };
    if new {
        HttpResponse::Accepted().json(body)
    } else {
        HttpResponse::Ok().json(body)
    }
}

/// Receive an Alarm.com billing notification.
///
/// Called by Alarm.com, signed with the connection's inbound secret (the `webhook-*` headers),
/// not by clients. A payment or payment-method change becomes an `isp.payment.received` or
/// `isp.payment_method.changed` event on the change feed for the billing system to apply; no
/// billing record is changed here. A repeated `webhook-id` is answered 200 and ignored. Refused
/// while the connection's billing notifications are off.
#[utoipa::path(post, path = "/v1/webhooks/alarm-com/{connection_id}", tag = "webhooks",
    params(("connection_id" = Uuid, Path),
        ("webhook-id" = String, Header, description = "The event id; a repeat is acknowledged and ignored"),
        ("webhook-timestamp" = i64, Header, description = "Unix seconds; at most 5 minutes from now"),
        ("webhook-signature" = String, Header, description = "`v1,` + base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` keyed with the connection's inbound secret")),
    request_body = AlarmComBillingNotification,
    responses((status = 202, description = "Stored; the change-feed event is written", body = ProviderCallbackReceipt),
        (status = 200, description = "A repeat of an event already received; ignored", body = ProviderCallbackReceipt),
        (status = 400, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Billing notifications are off for this connection", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn alarm_com_billing(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let source = sources::ALARM_COM_BILLING;
    let (connection, secret) = target(&state, &path, ProviderKind::AlarmCom).await?;
    let event_id = verified(&state, &req, &body, &connection, secret.as_deref(), source).await?;
    let parsed = parse_json::<AlarmComBillingNotification>(&body)
        .and_then(|n| n.into_domain().map_err(ApiError::from));
    let notice = match parsed {
        Ok(notice) => notice,
        Err(e) => {
            reject(&state, &connection, source, "unreadable payload").await;
            return Err(e);
        }
    };
    let got =
        domain::isp::receive_billing_notice(state.isp.as_ref(), &connection, &event_id, notice)
            .await?;
    Ok(receipt(
        event_id,
        got.new,
        got.billing_customer_id.map(|b| b.as_str().to_owned()),
    ))
}

/// Receive an Alarm.net callback.
///
/// Called by an Alarm.net (Honeywell-based) provider, signed like the Alarm.com notifications,
/// not by clients. Stored once per `webhook-id` and counted in the connection's callback
/// health; no billing record is changed.
#[utoipa::path(post, path = "/v1/webhooks/alarmnet/{connection_id}", tag = "webhooks",
    params(("connection_id" = Uuid, Path),
        ("webhook-id" = String, Header, description = "The event id; a repeat is acknowledged and ignored"),
        ("webhook-timestamp" = i64, Header, description = "Unix seconds; at most 5 minutes from now"),
        ("webhook-signature" = String, Header, description = "`v1,` + base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` keyed with the connection's inbound secret")),
    request_body = AlarmNetCallbackBody,
    responses((status = 202, description = "Stored", body = ProviderCallbackReceipt),
        (status = 200, description = "A repeat of an event already received; ignored", body = ProviderCallbackReceipt),
        (status = 400, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn alarmnet_callback(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let source = sources::ALARMNET;
    let (connection, secret) = target(&state, &path, ProviderKind::TotalConnect).await?;
    let event_id = verified(&state, &req, &body, &connection, secret.as_deref(), source).await?;
    let parsed = parse_json::<AlarmNetCallbackBody>(&body)
        .and_then(|n| n.into_domain().map_err(ApiError::from));
    let callback = match parsed {
        Ok(callback) => callback,
        Err(e) => {
            reject(&state, &connection, source, "unreadable payload").await;
            return Err(e);
        }
    };
    let new = domain::isp::receive_alarmnet_callback(
        state.isp.as_ref(),
        &connection,
        &event_id,
        callback,
    )
    .await?;
    Ok(receipt(event_id, new, None))
}
