//! The change feed (B2): every change the service makes to a billing record
//! becomes an event, readable in order and delivered to webhook subscriptions.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::connection::ConnectionId;
use crate::tenancy::DealerId;

/// Event types, as stored and as subscribed to.
pub mod types {
    pub const BILLING_CUSTOMER_CREATED: &str = "billing.customer.created";
    pub const BILLING_CUSTOMER_UPDATED: &str = "billing.customer.updated";
    pub const BILLING_SITE_CREATED: &str = "billing.site.created";
    pub const BILLING_SITE_UPDATED: &str = "billing.site.updated";
    pub const BILLING_SYSTEM_CREATED: &str = "billing.system.created";
    pub const BILLING_SYSTEM_UPDATED: &str = "billing.system.updated";
    pub const BILLING_USER_CREATED: &str = "billing.user.created";
    pub const BILLING_USER_UPDATED: &str = "billing.user.updated";
    /// A Stages callback named a record the service cannot apply it to.
    pub const STAGES_CALLBACK_UNMATCHED: &str = "stages.callback.unmatched";
    /// A field changed on both sides since the last sync is held (S18, S19).
    pub const LINK_CONFLICT: &str = "link.conflict";
    /// Stages refused a field's value; the record's other fields still synced.
    pub const LINK_SYNC_FAILED: &str = "link.sync_failed";
    /// A customer paid at the interactive services provider (Alarm.com): the
    /// billing system applies it to the customer's recurring invoices.
    pub const ISP_PAYMENT_RECEIVED: &str = "isp.payment.received";
    /// A customer changed the payment method of their recurring invoices at the provider.
    pub const ISP_PAYMENT_METHOD_CHANGED: &str = "isp.payment_method.changed";
    /// An imported user may log in: the billing system sends them a username
    /// and password.
    pub const BILLING_USER_CREDENTIALS_REQUIRED: &str = "billing.user.credentials_required";
    /// An Alarm.com import ended (succeeded, failed or cancelled), with its counts.
    pub const IMPORT_FINISHED: &str = "import.finished";
    /// A batch (B7) ended (succeeded, failed or cancelled), with its counts.
    pub const BATCH_FINISHED: &str = "batch.finished";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub event_type: String,
    /// customer, site, system, user, ...
    pub subject_kind: String,
    pub subject_id: String,
    /// The connection the change came through, if any.
    pub connection_id: Option<ConnectionId>,
    /// The record after the change, and what changed.
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the dealer's feed; strictly increasing.
    pub seq: i64,
    pub id: Uuid,
    pub dealer: DealerId,
    pub event_type: String,
    pub subject_kind: String,
    pub subject_id: String,
    pub connection_id: Option<ConnectionId>,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SubscriptionId(pub Uuid);

impl std::fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    /// Stopped: by its owner, or because the receiver answered 410 Gone.
    Disabled,
}

/// Where and what to deliver. The signing secret is kept encrypted apart.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSubscription {
    pub id: SubscriptionId,
    pub dealer: DealerId,
    pub url: url::Url,
    /// Event types delivered; empty means all.
    pub types: Vec<String>,
    pub status: SubscriptionStatus,
    pub disabled_reason: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl WebhookSubscription {
    pub fn wants(&self, event_type: &str) -> bool {
        self.status == SubscriptionStatus::Active
            && (self.types.is_empty() || self.types.iter().any(|t| t == event_type))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewWebhookSubscription {
    pub id: SubscriptionId,
    pub url: url::Url,
    pub types: Vec<String>,
    /// Standard Webhooks secret (`whsec_` + base64).
    pub secret: crate::Secret,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubscriptionChanges {
    pub url: Option<url::Url>,
    pub types: Option<Vec<String>>,
    pub status: Option<SubscriptionStatus>,
}

/// Who enqueues webhook deliveries.
pub const DELIVERY_CREATED_BY: &str = "system:webhooks";

/// Deliver one event to one webhook subscription; enqueued with the event,
/// in the transaction of the change it describes. Runs where the HTTP client
/// is (the api's delivery module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    pub subscription_id: SubscriptionId,
    pub event_id: Uuid,
}

impl crate::jobs::JobKind for WebhookDelivery {
    const KIND: &'static str = "webhook_delivery";
    const MAX_ATTEMPTS: u32 = 10;
}

impl WebhookDelivery {
    pub fn new_job(&self, dealer: &DealerId, run_at: DateTime<Utc>) -> crate::jobs::NewJob {
        crate::jobs::new_job(dealer, self, DELIVERY_CREATED_BY, run_at)
    }
}
