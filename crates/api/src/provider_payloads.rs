//! The one place for what interactive services providers send this service.
//!
//! Neither Alarm.com's billing notifications nor Alarm.net's callbacks have a
//! public schema (see `ADC-API.md`), so these are our own, kept small: the
//! JSON bodies below, and one signature scheme for both. When a real schema
//! becomes known, this module (and its OpenAPI schemas, generated from it) is
//! what changes; the domain only sees `domain::isp::BillingNotice` and
//! `domain::isp::AlarmNetCallback`.
//!
//! Signatures follow Standard Webhooks: the sender puts the event id in
//! `webhook-id`, Unix seconds in `webhook-timestamp` and `v1,<base64 of
//! HMAC-SHA256>` in `webhook-signature` (several, space-separated, while a
//! secret is being replaced). The HMAC key is the connection's inbound secret
//! (its UTF-8 bytes, issued by `POST .../inbound-credentials:rotate`); the
//! signed text is `{webhook-id}.{webhook-timestamp}.{raw body}`. A timestamp
//! more than five minutes away from now is refused, so a captured request
//! cannot be replayed later; within that window the event id de-duplicates.

use actix_web::HttpRequest;
use base64::Engine;
use chrono::{DateTime, Utc};
use domain::adc::AdcCustomerId;
use domain::isp::{AlarmNetCallback, BillingNotice, PaymentMethodKind, PaymentMethodSummary};
use domain::validation::ValidationError;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

/// How far a signed timestamp may be from now.
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 300;

/// Why a request was not accepted as signed by the connection's secret. The
/// text is kept for the health report; it never holds a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unverified {
    MissingHeaders,
    BadEventId,
    BadTimestamp,
    StaleTimestamp,
    BadSignature,
    NoSecret,
}

impl Unverified {
    pub fn reason(self) -> &'static str {
        match self {
            Self::MissingHeaders => {
                "missing webhook-id, webhook-timestamp or webhook-signature header"
            }
            Self::BadEventId => "webhook-id is not 1 to 200 visible characters",
            Self::BadTimestamp => "webhook-timestamp is not Unix seconds",
            Self::StaleTimestamp => "webhook-timestamp is more than 5 minutes from now",
            Self::BadSignature => "the signature does not match the connection's inbound secret",
            Self::NoSecret => "no inbound secret has been issued for this connection",
        }
    }
}

/// The signature of `body` under `secret`, as `v1,<base64>`.
pub fn sign(secret: &str, event_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(event_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Checks the signature headers against the raw body; returns the event id.
pub fn verify(
    req: &HttpRequest,
    body: &[u8],
    secret: Option<&str>,
    now: DateTime<Utc>,
) -> Result<String, Unverified> {
    let (Some(id), Some(timestamp), Some(signatures)) = (
        header(req, "webhook-id"),
        header(req, "webhook-timestamp"),
        header(req, "webhook-signature"),
    ) else {
        return Err(Unverified::MissingHeaders);
    };
    if id.is_empty() || id.len() > 200 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Unverified::BadEventId);
    }
    let timestamp: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Unverified::BadTimestamp)?;
    // abs_diff: the header is not trusted yet, and i64::MIN must not overflow.
    if now.timestamp().abs_diff(timestamp) > TIMESTAMP_TOLERANCE_SECS.unsigned_abs() {
        return Err(Unverified::StaleTimestamp);
    }
    let secret = secret.ok_or(Unverified::NoSecret)?;
    let expected = sign(secret, id, timestamp, body);
    let matches = signatures
        .split_whitespace()
        .any(|given| bool::from(given.as_bytes().ct_eq(expected.as_bytes())));
    if !matches {
        return Err(Unverified::BadSignature);
    }
    Ok(id.to_owned())
}

// ---- Alarm.com billing notifications -----------------------------------------------

/// Which billing change a notification reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BillingNotificationType {
    /// The customer paid (an overdue invoice, or the monthly charge).
    PaymentReceived,
    /// The customer changed the payment method of their monthly charges.
    PaymentMethodChanged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethodKindWire {
    Card,
    BankAccount,
}

/// A payment method, never more than its last four digits.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentMethodWire {
    pub kind: PaymentMethodKindWire,
    /// The last four digits of the card or account number.
    #[schema(example = "4242")]
    pub last4: String,
    /// A card's expiry, `MM/YYYY`.
    #[schema(example = "12/2030")]
    pub expires: Option<String>,
}

/// A payment.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentWire {
    /// Alarm.com's id of the payment.
    pub payment_id: String,
    /// In the currency's minor unit (cents); positive.
    pub amount_cents: i64,
    /// ISO 4217, e.g. `USD`.
    #[schema(example = "USD")]
    pub currency: String,
    /// The invoices the payment settles, when Alarm.com names them.
    #[serde(default)]
    pub invoice_ids: Vec<String>,
    pub method: Option<PaymentMethodWire>,
}

/// Body of `POST /v1/webhooks/alarm-com/{connection_id}`: a billing change a
/// customer made in Alarm.com (our schema; Alarm.com's is not public). The
/// event id is the `webhook-id` header.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlarmComBillingNotification {
    #[serde(rename = "type")]
    pub kind: BillingNotificationType,
    /// The Alarm.com CustomerId.
    pub customer_id: i64,
    pub occurred_at: DateTime<Utc>,
    /// For `payment_received`.
    pub payment: Option<PaymentWire>,
    /// For `payment_method_changed`.
    pub payment_method: Option<PaymentMethodWire>,
}

fn method(field: &str, m: PaymentMethodWire, v: &mut ValidationError) -> PaymentMethodSummary {
    if m.last4.len() != 4 || !m.last4.bytes().all(|b| b.is_ascii_digit()) {
        v.push(format!("{field}.last4"), "must be four digits");
    }
    if let Some(e) = &m.expires {
        let ok = e.len() == 7
            && e.as_bytes()[2] == b'/'
            && e[..2].parse::<u8>().is_ok_and(|m| (1..=12).contains(&m))
            && e[3..].bytes().all(|b| b.is_ascii_digit());
        if !ok {
            v.push(format!("{field}.expires"), "must be MM/YYYY");
        }
    }
    PaymentMethodSummary {
        kind: match m.kind {
            PaymentMethodKindWire::Card => PaymentMethodKind::Card,
            PaymentMethodKindWire::BankAccount => PaymentMethodKind::BankAccount,
        },
        last4: m.last4,
        expires: m.expires,
    }
}

fn short_text(field: &str, s: &str, v: &mut ValidationError) {
    if s.trim().is_empty() || s.chars().count() > 100 || s.chars().any(char::is_control) {
        v.push(field, "must be 1 to 100 characters");
    }
}

impl AlarmComBillingNotification {
    pub fn into_domain(self) -> Result<BillingNotice, ValidationError> {
        let mut v = ValidationError::default();
        if self.customer_id <= 0 {
            v.push("customer_id", "must be a positive Alarm.com CustomerId");
        }
        let customer_id = AdcCustomerId(self.customer_id);
        let notice = match self.kind {
            BillingNotificationType::PaymentReceived => {
                if self.payment_method.is_some() {
                    v.push("payment_method", "is for payment_method_changed");
                }
                match self.payment {
                    None => {
                        v.push("payment", "is required for payment_received");
                        None
                    }
                    Some(p) => {
                        short_text("payment.payment_id", &p.payment_id, &mut v);
                        if p.amount_cents <= 0 {
                            v.push("payment.amount_cents", "must be positive");
                        }
                        if p.currency.len() != 3
                            || !p.currency.bytes().all(|b| b.is_ascii_uppercase())
                        {
                            v.push("payment.currency", "must be an ISO 4217 code like USD");
                        }
                        if p.invoice_ids.len() > 100 {
                            v.push("payment.invoice_ids", "at most 100");
                        }
                        for (i, id) in p.invoice_ids.iter().enumerate() {
                            short_text(&format!("payment.invoice_ids[{i}]"), id, &mut v);
                        }
                        let method = p.method.map(|m| method("payment.method", m, &mut v));
                        Some(BillingNotice::PaymentReceived {
                            customer_id,
                            occurred_at: self.occurred_at,
                            payment_id: p.payment_id,
                            amount_cents: p.amount_cents,
                            currency: p.currency,
                            invoice_ids: p.invoice_ids,
                            method,
                        })
                    }
                }
            }
            BillingNotificationType::PaymentMethodChanged => {
                if self.payment.is_some() {
                    v.push("payment", "is for payment_received");
                }
                match self.payment_method {
                    None => {
                        v.push("payment_method", "is required for payment_method_changed");
                        None
                    }
                    Some(m) => Some(BillingNotice::PaymentMethodChanged {
                        customer_id,
                        occurred_at: self.occurred_at,
                        method: method("payment_method", m, &mut v),
                    }),
                }
            }
        };
        v.clone().into_result()?;
        notice.ok_or(v)
    }
}

// ---- Alarm.net callbacks ---------------------------------------------------------------

/// Body of `POST /v1/webhooks/alarmnet/{connection_id}`: one event of a panel
/// account (our schema; Alarm.net's is not public). The event id is the
/// `webhook-id` header.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlarmNetCallbackBody {
    /// What happened, e.g. `alarm`, `arming`, `trouble`, `communication`.
    #[schema(example = "arming")]
    pub event_type: String,
    /// The panel account the event belongs to.
    pub account_id: String,
    pub occurred_at: DateTime<Utc>,
    /// Anything else the event carries, kept as received.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl AlarmNetCallbackBody {
    pub fn into_domain(self) -> Result<AlarmNetCallback, ValidationError> {
        let mut v = ValidationError::default();
        short_text("event_type", &self.event_type, &mut v);
        short_text("account_id", &self.account_id, &mut v);
        v.into_result()?;
        Ok(AlarmNetCallback {
            event_type: self.event_type,
            account_id: self.account_id,
            occurred_at: self.occurred_at,
            details: self.details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_id_timestamp_and_body() {
        let a = sign("s3cret", "evt-1", 1_700_000_000, b"{}");
        assert!(a.starts_with("v1,"));
        assert_ne!(a, sign("s3cret", "evt-2", 1_700_000_000, b"{}"));
        assert_ne!(a, sign("s3cret", "evt-1", 1_700_000_001, b"{}"));
        assert_ne!(a, sign("s3cret", "evt-1", 1_700_000_000, b"{ }"));
        assert_ne!(a, sign("other", "evt-1", 1_700_000_000, b"{}"));
    }

    #[test]
    fn a_notification_needs_its_part() {
        let n: AlarmComBillingNotification = serde_json::from_value(serde_json::json!({
            "type": "payment_received", "customer_id": 5, "occurred_at": "2026-11-27T10:00:00Z"
        }))
        .unwrap();
        let e = n.into_domain().unwrap_err();
        assert_eq!(e.errors[0].field, "payment");
        let n: AlarmComBillingNotification = serde_json::from_value(serde_json::json!({
            "type": "payment_method_changed", "customer_id": 5, "occurred_at": "2026-11-27T10:00:00Z",
            "payment_method": {"kind": "card", "last4": "4242", "expires": "13/2030"}
        }))
        .unwrap();
        let e = n.into_domain().unwrap_err();
        assert_eq!(e.errors[0].field, "payment_method.expires");
    }
}
