//! Stages as the service sees it: its records and the `StagesApi` port.
//!
//! The serde form of these types is the JSON of the Stages wire protocol
//! (docs/stages-protocol.md). `stages-client` implements the port over HTTP;
//! `stages-sim` serves the same JSON from its own, independent types.
//!
//! - `ids`: Stages' keys (site number, device id, transmitter code) and their checks.
//! - `records`: the records (sites, devices, contacts, ...) and list queries.
//! - here: the failures (`StagesError`), the port and its connector,
//!   and what Stages calls back with.

mod ids;
mod records;

pub use ids::{DeviceId, SiteNo, TransmitterCode};
pub use records::*;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::upstream::{UpstreamErrorKind, UpstreamFailure};
use crate::Page;

/// Why a call to Stages failed, in terms the service can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StagesError {
    #[error("Stages refused the credentials")]
    Unauthorized,
    #[error("Stages has no such record: {0}")]
    NotFound(String),
    /// A rule of Stages refused the change (duplicate transmitter code, a
    /// device in alarm put on test, ...).
    #[error("Stages refused the request ({code}): {message}")]
    Rejected { code: String, message: String },
    #[error("Stages asks to slow down (retry after {retry_after_secs:?} s)")]
    RateLimited { retry_after_secs: Option<u64> },
    #[error("Stages could not be reached: {0}")]
    Unreachable(String),
    #[error("Stages did not answer in time")]
    Timeout,
    /// A 5xx, or an answer that is not what the protocol says.
    #[error("Stages gave a bad answer: {0}")]
    BadAnswer(String),
    /// The egress policy forbids the endpoint's address (loopback, private,
    /// ...): nothing was sent, and nothing will be until the endpoint or the
    /// policy changes.
    #[error("{0}")]
    EgressRefused(String),
}

impl UpstreamFailure for StagesError {
    fn upstream_kind(&self) -> UpstreamErrorKind {
        match self {
            Self::Unauthorized => UpstreamErrorKind::Unauthorized,
            Self::NotFound(_) => UpstreamErrorKind::NotFound,
            Self::Rejected { .. } => UpstreamErrorKind::Rejected,
            Self::RateLimited { .. } => UpstreamErrorKind::RateLimited,
            Self::Unreachable(_) => UpstreamErrorKind::Unreachable,
            Self::Timeout => UpstreamErrorKind::Timeout,
            Self::BadAnswer(_) => UpstreamErrorKind::BadAnswer,
            Self::EgressRefused(_) => UpstreamErrorKind::EgressRefused,
        }
    }
}

impl StagesError {
    /// A short stable name of the kind of failure (a metric label).
    pub fn kind(&self) -> &'static str {
        self.upstream_kind().as_str()
    }

    /// Worth trying again later (by a job; the client retries safe calls itself).
    pub fn is_transient(&self) -> bool {
        self.upstream_kind().is_transient()
    }
}

pub type StagesResult<T> = Result<T, StagesError>;

/// The whole Stages protocol, bound to one endpoint and one set of credentials.
#[async_trait]
pub trait StagesApi: Send + Sync {
    /// Checks the credentials.
    async fn ping(&self) -> StagesResult<()>;
    async fn lookup(&self, list: LookupList) -> StagesResult<Vec<LookupItem>>;

    async fn list_sites(&self, query: &StagesSiteQuery) -> StagesResult<Page<StagesSite>>;
    async fn create_site(&self, site: &NewStagesSite) -> StagesResult<CreatedStagesSite>;
    async fn get_site(&self, site_no: &SiteNo) -> StagesResult<StagesSite>;
    async fn update_site(
        &self,
        site_no: &SiteNo,
        patch: &StagesSitePatch,
    ) -> StagesResult<StagesSite>;
    async fn site_history(
        &self,
        site_no: &SiteNo,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> StagesResult<Vec<StagesHistoryEntry>>;

    async fn list_devices(&self, site_no: &SiteNo) -> StagesResult<Vec<StagesDevice>>;
    /// Every device of the central station, paged; for reconcile and lookups by billing id.
    async fn list_all_devices(&self, query: &StagesDeviceQuery)
        -> StagesResult<Page<StagesDevice>>;
    async fn create_device(
        &self,
        site_no: &SiteNo,
        device: &NewStagesDevice,
    ) -> StagesResult<StagesDevice>;
    async fn get_device(&self, device_id: &DeviceId) -> StagesResult<StagesDevice>;
    async fn update_device(
        &self,
        device_id: &DeviceId,
        patch: &StagesDevicePatch,
    ) -> StagesResult<StagesDevice>;
    async fn change_transmitter_code(
        &self,
        device_id: &DeviceId,
        new_code: &TransmitterCode,
    ) -> StagesResult<StagesDevice>;
    async fn device_history(
        &self,
        device_id: &DeviceId,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> StagesResult<Vec<StagesHistoryEntry>>;

    async fn list_configurations(
        &self,
        device_id: &DeviceId,
    ) -> StagesResult<Vec<StagesConfiguration>>;
    async fn create_configuration(
        &self,
        device_id: &DeviceId,
        config: &NewStagesConfiguration,
    ) -> StagesResult<StagesConfiguration>;

    async fn update_configuration(
        &self,
        device_id: &DeviceId,
        config_id: &str,
        patch: &StagesConfigurationPatch,
    ) -> StagesResult<StagesConfiguration>;

    async fn list_contacts(&self, site_no: &SiteNo) -> StagesResult<Vec<StagesContact>>;
    async fn create_contact(
        &self,
        site_no: &SiteNo,
        contact: &NewStagesContact,
    ) -> StagesResult<StagesContact>;
    async fn update_contact(
        &self,
        site_no: &SiteNo,
        contact_id: &str,
        patch: &StagesContactPatch,
    ) -> StagesResult<StagesContact>;
    async fn delete_contact(&self, site_no: &SiteNo, contact_id: &str) -> StagesResult<()>;

    async fn list_notes(&self, site_no: &SiteNo) -> StagesResult<Vec<StagesNote>>;
    async fn create_note(&self, site_no: &SiteNo, note: &NewStagesNote)
        -> StagesResult<StagesNote>;

    async fn list_tests(&self, device_id: &DeviceId) -> StagesResult<Vec<StagesTest>>;
    async fn start_test(
        &self,
        device_id: &DeviceId,
        test: &NewStagesTest,
    ) -> StagesResult<StagesTest>;
    async fn end_test(&self, device_id: &DeviceId, test_id: &str) -> StagesResult<()>;
}

/// Makes a `StagesApi` for a target; implemented by `stages-client`.
pub trait StagesConnector: Send + Sync {
    fn connect(&self, target: crate::upstream::UpstreamTarget) -> std::sync::Arc<dyn StagesApi>;
}

/// A callback Stages sends to the service (outbound from Stages): HTTP Basic
/// with the connection's inbound credential, JSON body, an id unique per event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagesCallback {
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: StagesCallbackEvent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum StagesCallbackEvent {
    /// Site fields changed in Stages; `changes` holds the new values by
    /// Stages field name (address1, address2, city, state, zip, phone, info, ...).
    #[serde(rename = "site.updated")]
    SiteUpdated {
        site_no: SiteNo,
        #[serde(default)]
        billing_id: Option<String>,
        changes: std::collections::BTreeMap<String, String>,
    },
    /// Device fields changed in Stages (`transmitter_code`, ...).
    #[serde(rename = "device.updated")]
    DeviceUpdated {
        device_id: DeviceId,
        site_no: SiteNo,
        #[serde(default)]
        billing_id: Option<String>,
        changes: std::collections::BTreeMap<String, String>,
    },
    /// Stages sends a whole site to billing: as a new customer or to an existing one.
    #[serde(rename = "site.send_to_billing")]
    SendToBilling {
        site_no: SiteNo,
        target: SendToBillingTarget,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SendToBillingTarget {
    NewCustomer {
        #[serde(default)]
        business: bool,
        #[serde(default)]
        first_name: String,
        #[serde(default)]
        last_name: String,
        #[serde(default)]
        address1: String,
        #[serde(default)]
        address2: String,
        #[serde(default)]
        city: String,
        #[serde(default)]
        state: String,
        #[serde(default)]
        zip: String,
    },
    ExistingCustomer {
        customer_id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_site_holds_no_pin() {
        let site = NewStagesSite {
            contacts: vec![
                NewStagesContact {
                    pin: Some("4321".into()),
                    ..Default::default()
                },
                NewStagesContact::default(),
            ],
            ..Default::default()
        };
        let masked = site.with_pins_masked();
        assert_eq!(masked.contacts[0].pin.as_deref(), Some(MASKED_PIN));
        assert_eq!(masked.contacts[1].pin, None);
        assert!(!serde_json::to_string(&masked).unwrap().contains("4321"));
    }
}
