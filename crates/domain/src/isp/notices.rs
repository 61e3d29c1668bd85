//! What providers send us and its health: Alarm.com billing notifications (I4:
//! payments and payment-method changes, turned into change-feed events, and a
//! report on the permission they need) and Alarm.net callbacks (I2: stored
//! once per event, with the health of the receiving endpoint).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    missing_billing_permission, not_alarm_com, not_found_as, provider_error,
    uses_alarmnet_callbacks, IspStore,
};
use crate::adc::{AdcConnector, AdcCustomerId};
use crate::billing::BillingId;
use crate::connection::{Connection, ConnectionId, ProviderKind};
use crate::events::{types, NewEvent};
use crate::operations::OperationError;
use crate::store::{ConnectionStore, StoreError};
use crate::tenancy::Caller;
use crate::upstream::{adc_client, ActingAs};

/// How one receiving endpoint fared over a period.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct CallbackStats {
    /// Verified and stored for the first time.
    pub accepted: u64,
    /// Verified repeats of an event already stored.
    pub duplicates: u64,
    /// Refused: bad or missing signature, stale timestamp, unreadable payload.
    pub rejected: u64,
    /// The last verified callback (new or repeat), at any time.
    pub last_received_at: Option<DateTime<Utc>>,
    pub last_rejected_at: Option<DateTime<Utc>>,
    pub last_rejection_reason: Option<String>,
}

/// Which receiving endpoint a callback came through.
pub mod sources {
    pub const ALARMNET: &str = "alarmnet";
    pub const ALARM_COM_BILLING: &str = "alarm_com_billing";
}

/// A card or a bank account, as far as a billing system needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethodKind {
    Card,
    BankAccount,
}

/// A payment method without anything secret: its kind, last four digits,
/// and a card's expiry (`MM/YYYY`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMethodSummary {
    pub kind: PaymentMethodKind,
    pub last4: String,
    #[serde(default)]
    pub expires: Option<String>,
}

/// A payment or payment-method change a customer made in Alarm.com (I4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BillingNotice {
    PaymentReceived {
        customer_id: AdcCustomerId,
        occurred_at: DateTime<Utc>,
        payment_id: String,
        /// In the currency's minor unit (cents).
        amount_cents: i64,
        currency: String,
        /// The provider's invoices the payment settles, when it names them.
        invoice_ids: Vec<String>,
        method: Option<PaymentMethodSummary>,
    },
    PaymentMethodChanged {
        customer_id: AdcCustomerId,
        occurred_at: DateTime<Utc>,
        method: PaymentMethodSummary,
    },
}

impl BillingNotice {
    pub fn customer_id(&self) -> AdcCustomerId {
        match self {
            Self::PaymentReceived { customer_id, .. }
            | Self::PaymentMethodChanged { customer_id, .. } => *customer_id,
        }
    }

    pub fn event_type(&self) -> &'static str {
        match self {
            Self::PaymentReceived { .. } => types::ISP_PAYMENT_RECEIVED,
            Self::PaymentMethodChanged { .. } => types::ISP_PAYMENT_METHOD_CHANGED,
        }
    }
}

/// What became of a received notice or callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoticeReceipt {
    /// False for a repeat of an event already received (nothing new written).
    pub new: bool,
    /// The billing customer it was matched to through its ISP account.
    pub billing_customer_id: Option<BillingId>,
}

/// Turns a verified billing notice into a change-feed event for the billing
/// system to apply to the customer's recurring invoices; stored once per event id.
pub async fn receive_billing_notice(
    accounts: &dyn IspStore,
    connection: &Connection,
    event_id: &str,
    notice: BillingNotice,
) -> Result<NoticeReceipt, OperationError> {
    if !connection.settings.billing_notifications {
        return Err(OperationError::Conflict {
            code: "billing_notifications_off",
            message: format!(
                "billing notifications are not turned on for connection '{}'; an admin turns them on (settings.billing_notifications), which checks the Alarm.com billing permission",
                connection.name.as_str()
            ),
        });
    }
    let external = notice.customer_id().to_string();
    let account = accounts
        .isp_account_by_external(&connection.dealer, connection.id, &external)
        .await?;
    let billing_customer_id = account.map(|a| a.billing_customer_id);
    let (subject_kind, subject_id) = match &billing_customer_id {
        Some(id) => ("customer", id.as_str().to_owned()),
        None => ("adc_customer", external.clone()),
    };
    let event = NewEvent {
        event_type: notice.event_type().to_owned(),
        subject_kind: subject_kind.to_owned(),
        subject_id,
        connection_id: Some(connection.id),
        data: serde_json::json!({
            "event_id": event_id,
            "billing_customer_id": billing_customer_id,
            "adc_customer_id": notice.customer_id(),
            "matched": billing_customer_id.is_some(),
            "notice": notice,
        }),
    };
    let payload = serde_json::to_value(&notice)
        .map_err(|e| StoreError::Unavailable(format!("a notice could not be kept: {e}")))?;
    let new = accounts
        .receive_provider_callback(
            &connection.dealer,
            connection.id,
            sources::ALARM_COM_BILLING,
            event_id,
            payload,
            vec![event],
        )
        .await?;
    Ok(NoticeReceipt {
        new,
        billing_customer_id,
    })
}

/// Whether the provider login holds a permission, as far as could be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PermissionCheck {
    Granted,
    Missing,
    /// Not checked: no credentials, or the provider could not be asked.
    Unknown,
}

/// The state of Alarm.com billing notifications on a connection (I4): on or
/// off, whether the Alarm.com account holds the billing permission now, and
/// what arrived in the last 24 hours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BillingNotificationsReport {
    pub enabled: bool,
    pub permission: PermissionCheck,
    /// What to do, in words an admin can act on.
    pub detail: String,
    pub last_24h: CallbackStats,
}

/// Reports on billing notifications, asking Alarm.com for the permission now;
/// a provider that cannot be asked makes the permission `Unknown`, not an error.
pub async fn billing_notifications_report(
    connections: &dyn ConnectionStore,
    adc: &dyn AdcConnector,
    accounts: &dyn IspStore,
    caller: &Caller,
    connection_id: ConnectionId,
    now: DateTime<Utc>,
) -> Result<BillingNotificationsReport, OperationError> {
    let connection = connections
        .connection(&caller.dealer, connection_id)
        .await
        .map_err(not_found_as("no such connection".into()))?;
    if connection.provider != ProviderKind::AlarmCom {
        return Err(not_alarm_com(&connection, "billing notifications"));
    }
    let asked = match adc_client(connections, adc, ActingAs::Dealer, &connection).await {
        Ok(api) => api
            .permissions()
            .await
            .map_err(|e| provider_error(&connection, e).to_string()),
        Err(OperationError::MissingCredentials { message, .. }) => Err(message),
        Err(other) => return Err(other),
    };
    let enabled = connection.settings.billing_notifications;
    let (permission, detail) = match asked {
        Ok(p) if p.billing => (
            PermissionCheck::Granted,
            if enabled {
                "billing notifications are on and the Alarm.com account holds the billing permission".to_owned()
            } else {
                "the Alarm.com account holds the billing permission; an admin turns billing notifications on with settings.billing_notifications".to_owned()
            },
        ),
        Ok(_) => (
            PermissionCheck::Missing,
            missing_billing_permission(&connection).to_string(),
        ),
        Err(why) => (
            PermissionCheck::Unknown,
            format!("the billing permission could not be checked: {why}"),
        ),
    };
    let last_24h = accounts
        .callback_stats(
            &caller.dealer,
            connection_id,
            sources::ALARM_COM_BILLING,
            now - chrono::Duration::hours(24),
        )
        .await?;
    Ok(BillingNotificationsReport {
        enabled,
        permission,
        detail,
        last_24h,
    })
}

/// An Alarm.net callback: an event of one panel account, as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmNetCallback {
    pub event_type: String,
    pub account_id: String,
    pub occurred_at: DateTime<Utc>,
    #[serde(default)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// Stores a verified Alarm.net callback once per event id.
pub async fn receive_alarmnet_callback(
    accounts: &dyn IspStore,
    connection: &Connection,
    event_id: &str,
    callback: AlarmNetCallback,
) -> Result<bool, OperationError> {
    let payload = serde_json::to_value(&callback)
        .map_err(|e| StoreError::Unavailable(format!("a callback could not be kept: {e}")))?;
    Ok(accounts
        .receive_provider_callback(
            &connection.dealer,
            connection.id,
            sources::ALARMNET,
            event_id,
            payload,
            Vec::new(),
        )
        .await?)
}

/// The Alarm.net callback health of a connection (I2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallbackHealth {
    pub configured_url: Option<String>,
    /// Whether a signing secret has been issued (`inbound-credentials:rotate`).
    pub secret_configured: bool,
    /// Counts over the last 24 hours.
    pub last_24h: CallbackStats,
    pub status: CallbackHealthStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackHealthStatus {
    /// No callback URL or no signing secret yet.
    NotConfigured,
    /// Configured, but nothing verified arrived in the last 24 hours.
    Silent,
    /// Callbacks arrive and none was rejected in the last 24 hours.
    Healthy,
    /// Some callbacks of the last 24 hours were rejected.
    Degraded,
}

pub async fn callback_health(
    connections: &dyn ConnectionStore,
    accounts: &dyn IspStore,
    caller: &Caller,
    connection_id: ConnectionId,
    now: DateTime<Utc>,
) -> Result<CallbackHealth, OperationError> {
    let connection = connections
        .connection(&caller.dealer, connection_id)
        .await
        .map_err(not_found_as("no such connection".into()))?;
    if !uses_alarmnet_callbacks(connection.provider) {
        return Err(OperationError::WrongProvider(format!(
            "connection '{}' is a {} connection; Alarm.net callbacks are for the Honeywell-based providers (total_connect)",
            connection.name.as_str(),
            connection.provider.as_str()
        )));
    }
    let secret_configured = connections
        .inbound_credential(&caller.dealer, connection_id)
        .await?
        .is_some();
    let stats = accounts
        .callback_stats(
            &caller.dealer,
            connection_id,
            sources::ALARMNET,
            now - chrono::Duration::hours(24),
        )
        .await?;
    let configured_url = connection
        .settings
        .alarmnet_callback_url
        .as_ref()
        .map(|u| u.as_str().to_owned());
    let status = if configured_url.is_none() || !secret_configured {
        CallbackHealthStatus::NotConfigured
    } else if stats.rejected > 0 {
        CallbackHealthStatus::Degraded
    } else if stats.accepted + stats.duplicates == 0 {
        CallbackHealthStatus::Silent
    } else {
        CallbackHealthStatus::Healthy
    };
    Ok(CallbackHealth {
        configured_url,
        secret_configured,
        last_24h: stats,
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_name_their_event_type() {
        let n = BillingNotice::PaymentMethodChanged {
            customer_id: AdcCustomerId(5),
            occurred_at: Utc::now(),
            method: PaymentMethodSummary {
                kind: PaymentMethodKind::Card,
                last4: "4242".into(),
                expires: Some("12/2030".into()),
            },
        };
        assert_eq!(n.event_type(), types::ISP_PAYMENT_METHOD_CHANGED);
        assert_eq!(n.customer_id(), AdcCustomerId(5));
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["type"], "payment_method_changed");
    }
}
