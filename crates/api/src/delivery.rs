//! Outbound webhooks, signed the Standard Webhooks way: `webhook-id`,
//! `webhook-timestamp` and `webhook-signature` (HMAC-SHA256 over
//! `id.timestamp.body` with the subscription's secret). One job per event and
//! subscription; the job queue retries with backoff; a 410 disables the subscription.
//! Each attempt counts in `crosslink_webhook_deliveries_total` by outcome:
//! delivered (2xx), gone (410), rejected (another status), unreachable, or
//! skipped (the subscription was deleted or disabled).

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use domain::events::{SubscriptionStatus, WebhookDelivery};
use domain::jobs::{Attempt, Done, Job, JobError, RunJob};
use domain::store::StoreError;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use upstream_http::EgressPolicy;

use crate::routes::events::EventResponse;
use crate::state::AppState;

/// The client deliveries are sent with; the receiver's address must pass `egress`.
pub fn client(egress: &EgressPolicy) -> reqwest::Client {
    upstream_http::apply(reqwest::Client::builder(), egress)
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(3))
        // A redirect would resend the signed body elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a plain client builds")
}

/// Ends a delivery the egress policy refuses: retrying would be refused the
/// same way, so the job fails for good with the reason.
fn refused(refusal: &upstream_http::Refused) -> JobError {
    JobError::Permanent(format!("the webhook was not sent: {refusal}"))
}

/// `v1,<base64 signature>` for the secret `whsec_<base64 key>`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let key = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| "the subscription secret is not base64".to_owned())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

fn transient(e: StoreError) -> JobError {
    JobError::Transient(e.to_string())
}

/// The run side of [`WebhookDelivery`] (declared in `domain::events`): it
/// needs the HTTP client, so it lives here.
#[async_trait]
impl RunJob<AppState> for WebhookDelivery {
    async fn run(self, state: &AppState, attempt: Attempt<'_>) -> Result<Done, JobError> {
        deliver(state, attempt.job, self).await.map(Done::from)
    }
}

async fn deliver(
    state: &AppState,
    job: &Job,
    p: WebhookDelivery,
) -> Result<serde_json::Value, JobError> {
    let subscription = match state
        .webhooks
        .subscription(&job.dealer, p.subscription_id)
        .await
    {
        Ok(s) => s,
        Err(StoreError::NotFound) => {
            state.metrics.delivery("skipped");
            return Ok(serde_json::json!({"skipped": "the subscription was deleted"}));
        }
        Err(e) => return Err(transient(e)),
    };
    if subscription.status != SubscriptionStatus::Active {
        state.metrics.delivery("skipped");
        return Ok(serde_json::json!({"skipped": "the subscription is disabled"}));
    }
    let event = match state.events.event(&job.dealer, p.event_id).await {
        Ok(event) => event,
        // Written with its deliveries, so only retention (B15) removes it:
        // a delivery retried by hand long after.
        Err(StoreError::NotFound) => {
            state.metrics.delivery("skipped");
            return Ok(serde_json::json!({"skipped": "the event is past its retention"}));
        }
        Err(e) => return Err(transient(e)),
    };
    let secret = state
        .webhooks
        .subscription_secret(&job.dealer, p.subscription_id)
        .await
        .map_err(transient)?;
    let body = serde_json::to_vec(&serde_json::json!({
        "type": event.event_type,
        "timestamp": event.created_at,
        "data": EventResponse::from(event.clone()),
    }))
    .map_err(|e| JobError::Permanent(e.to_string()))?;
    // The id stays the same on every retry so receivers can de-duplicate.
    let id = format!("evt_{}", event.id.simple());
    let timestamp = chrono::Utc::now().timestamp();
    let signature = sign(secret.expose(), &id, timestamp, &body).map_err(JobError::Permanent)?;
    // Host names are checked by the client's resolver; an address in the URL reaches none.
    state.egress.check_literal(&subscription.url).map_err(|r| {
        state.metrics.delivery("refused");
        refused(&r)
    })?;
    let answer = state
        .webhook_http
        .post(subscription.url.clone())
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    match answer {
        Ok(r) if r.status().is_success() => {
            state.metrics.delivery("delivered");
            Ok(serde_json::json!({"delivered": id, "status": r.status().as_u16()}))
        }
        Ok(r) if r.status() == reqwest::StatusCode::GONE => {
            state.metrics.delivery("gone");
            state
                .webhooks
                .disable_subscription(
                    &job.dealer,
                    p.subscription_id,
                    "the receiver answered 410 Gone",
                )
                .await
                .map_err(transient)?;
            tracing::info!(subscription = %p.subscription_id, "webhook subscription disabled after 410");
            Ok(serde_json::json!({"disabled": true, "status": 410}))
        }
        Ok(r) => {
            state.metrics.delivery("rejected");
            Err(JobError::Transient(format!(
                "the receiver answered {}",
                r.status().as_u16()
            )))
        }
        Err(e) => match upstream_http::refusal_in(&e) {
            Some(r) => {
                state.metrics.delivery("refused");
                Err(refused(r))
            }
            None => {
                state.metrics.delivery("unreachable");
                Err(JobError::Transient(format!(
                    "the receiver could not be reached: {}",
                    e.without_url()
                )))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
