//! Stages as the service sees it: its records and the `StagesApi` port.
//!
//! The serde form of these types is the JSON of the Stages wire protocol
//! (docs/stages-protocol.md). `stages-client` implements the port over HTTP;
//! `stages-sim` serves the same JSON from its own, independent types.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::upstream::{UpstreamErrorKind, UpstreamFailure};
use crate::Page;

/// A Stages site (an account of the central station).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StagesSite {
    pub site_no: String,
    pub name: String,
    #[serde(default)]
    pub address1: String,
    #[serde(default)]
    pub address2: String,
    #[serde(default)]
    pub city: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub zip: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub info: String,
    #[serde(default)]
    pub region: String,
    /// IANA zone name, e.g. `America/New_York`.
    #[serde(default)]
    pub time_zone: String,
    #[serde(default)]
    pub site_type: String,
    #[serde(default)]
    pub dispatch_type: String,
    #[serde(default)]
    pub permit: String,
    #[serde(default)]
    pub subdivision: String,
    #[serde(default)]
    pub pets: String,
    /// Whether the central station holds keys to the premises.
    #[serde(default)]
    pub keys: bool,
    #[serde(default)]
    pub ul_code: String,
    #[serde(default)]
    pub authority: String,
    /// The billing site id; `None` when the site is not linked.
    #[serde(default)]
    pub billing_id: Option<String>,
}

/// The fields of a site that a client may set; `site_no` is Stages' own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StagesSiteFields {
    pub name: String,
    #[serde(default)]
    pub address1: String,
    #[serde(default)]
    pub address2: String,
    #[serde(default)]
    pub city: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub zip: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub info: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub time_zone: String,
    #[serde(default)]
    pub site_type: String,
    #[serde(default)]
    pub dispatch_type: String,
    #[serde(default)]
    pub permit: String,
    #[serde(default)]
    pub subdivision: String,
    #[serde(default)]
    pub pets: String,
    #[serde(default)]
    pub keys: bool,
    #[serde(default)]
    pub ul_code: String,
    #[serde(default)]
    pub authority: String,
    #[serde(default)]
    pub billing_id: Option<String>,
}

/// `POST /api/v1/sites`: a site with its first devices and contacts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NewStagesSite {
    #[serde(flatten)]
    pub fields: StagesSiteFields,
    #[serde(default)]
    pub devices: Vec<NewStagesDevice>,
    #[serde(default)]
    pub contacts: Vec<NewStagesContact>,
}

/// What a masked PIN reads as: the same for every PIN, so not even its length shows.
pub const MASKED_PIN: &str = "********";

impl NewStagesSite {
    /// The site with every contact PIN replaced by [`MASKED_PIN`], for
    /// showing what would be sent (a dry run) without the PINs themselves.
    pub fn with_pins_masked(mut self) -> Self {
        for c in &mut self.contacts {
            if c.pin.is_some() {
                c.pin = Some(MASKED_PIN.to_owned());
            }
        }
        self
    }
}

/// The answer to a site creation: the site and what was created under it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedStagesSite {
    pub site: StagesSite,
    pub devices: Vec<StagesDevice>,
    pub contacts: Vec<StagesContact>,
}

/// Partial update of a site. A field left out is unchanged; for `billing_id`,
/// an empty string clears it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StagesSitePatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdivision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pets: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ul_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    #[default]
    Normal,
    Alarm,
    OutOfService,
    OnTest,
}

/// The settable fields of a device (a billing "system").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StagesDeviceFields {
    /// The account identifier (CSID, Xmit#); unique within the central station.
    pub transmitter_code: String,
    #[serde(default)]
    pub alt_device_id: String,
    #[serde(default)]
    pub oos_category: String,
    #[serde(default)]
    pub device_type: String,
    #[serde(default)]
    pub timer_test_type: String,
    #[serde(default)]
    pub timer_test_days: Option<u32>,
    #[serde(default)]
    pub timer_test_hours: Option<u32>,
    #[serde(default)]
    pub timer_test_minutes: Option<u32>,
    #[serde(default)]
    pub fail_event: String,
    #[serde(default)]
    pub ivr_number: String,
    #[serde(default)]
    pub primary_xmit: String,
    #[serde(default)]
    pub comm_type: String,
    #[serde(default)]
    pub line_security: String,
    #[serde(default)]
    pub lid_type: String,
    #[serde(default)]
    pub url_text: String,
    #[serde(default)]
    pub url_target: String,
    #[serde(default)]
    pub signal_format: String,
    /// `mm:ss`
    #[serde(default)]
    pub entry_period: String,
    /// `mm:ss`
    #[serde(default)]
    pub exit_period: String,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub info: String,
    #[serde(default)]
    pub first_signal_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub silent: bool,
    #[serde(default)]
    pub config_only: bool,
    #[serde(default)]
    pub billing_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StagesDevice {
    pub device_id: String,
    pub site_no: String,
    #[serde(flatten)]
    pub fields: StagesDeviceFields,
    #[serde(default)]
    pub status: DeviceStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NewStagesDevice {
    #[serde(flatten)]
    pub fields: StagesDeviceFields,
    #[serde(default)]
    pub configurations: Vec<NewStagesConfiguration>,
}

/// Partial update of a device. `transmitter_code` is changed with its own
/// call (`change_transmitter_code`), never here. Empty `billing_id` clears it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StagesDevicePatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oos_category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer_test_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer_test_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer_test_hours: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer_test_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ivr_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_xmit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_security: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lid_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silent: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_id: Option<String>,
}

/// A zone of a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NewStagesConfiguration {
    pub point: u32,
    #[serde(default)]
    pub area: String,
    #[serde(default)]
    pub event_code: String,
    #[serde(default)]
    pub description: String,
}

/// Partial update of a zone; a field left out is unchanged. The zone keeps
/// its `config_id`, so an edit of the point is an edit, not a new zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StagesConfigurationPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagesConfiguration {
    pub config_id: String,
    pub device_id: String,
    #[serde(flatten)]
    pub fields: NewStagesConfiguration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactPhone {
    /// home, work, mobile, other
    pub kind: String,
    pub number: String,
}

/// A site contact. Stages-only: billing contacts are separate records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StagesContactFields {
    pub name: String,
    #[serde(default)]
    pub relation: String,
    #[serde(default)]
    pub authority: String,
    #[serde(default)]
    pub phones: Vec<ContactPhone>,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub has_keys: bool,
    /// Enhanced call verification: call this contact before dispatch.
    #[serde(default)]
    pub ecv: bool,
    #[serde(default)]
    pub effective_date: Option<NaiveDate>,
    #[serde(default)]
    pub expire_date: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NewStagesContact {
    #[serde(flatten)]
    pub fields: StagesContactFields,
    /// Write-only: Stages never returns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagesContact {
    pub contact_id: String,
    pub site_no: String,
    #[serde(flatten)]
    pub fields: StagesContactFields,
    #[serde(default)]
    pub has_pin: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StagesContactPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phones: Option<Vec<ContactPhone>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_keys: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecv: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewStagesNote {
    pub text: String,
    #[serde(default)]
    pub effective_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub expire_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagesNote {
    pub note_id: String,
    pub site_no: String,
    pub text: String,
    #[serde(default)]
    pub effective_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub expire_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryKind {
    Signal,
    Event,
}

/// A signal or event in a device's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagesHistoryEntry {
    pub history_id: String,
    pub device_id: String,
    pub site_no: String,
    pub occurred_at: DateTime<Utc>,
    pub kind: HistoryKind,
    #[serde(default)]
    pub event_code: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub point: Option<u32>,
    /// Received while the device was on test.
    #[serde(default)]
    pub on_test: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TestType {
    #[default]
    AllPoints,
    ListedItems,
    AllExceptListed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestState {
    Current,
    Scheduled,
    Expired,
}

/// `POST /api/v1/devices/{id}/tests`. Times are instants; the service converts
/// from the site's time zone before calling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewStagesTest {
    #[serde(rename = "type", default)]
    pub test_type: TestType,
    pub effective: DateTime<Utc>,
    pub expire: DateTime<Utc>,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagesTest {
    pub test_id: String,
    pub device_id: String,
    #[serde(rename = "type")]
    pub test_type: TestType,
    pub effective: DateTime<Utc>,
    pub expire: DateTime<Utc>,
    #[serde(default)]
    pub reason: String,
    pub state: TestState,
}

/// The central station's choice lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LookupList {
    Regions,
    TimeZones,
    SiteTypes,
    DispatchTypes,
    UlCodes,
    Authorities,
    OosCategories,
    DeviceTypes,
    TimerTestTypes,
    CommTypes,
    LidTypes,
}

impl LookupList {
    pub const ALL: [LookupList; 11] = [
        Self::Regions,
        Self::TimeZones,
        Self::SiteTypes,
        Self::DispatchTypes,
        Self::UlCodes,
        Self::Authorities,
        Self::OosCategories,
        Self::DeviceTypes,
        Self::TimerTestTypes,
        Self::CommTypes,
        Self::LidTypes,
    ];

    /// The path segment of the list, e.g. `site-types`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Regions => "regions",
            Self::TimeZones => "time-zones",
            Self::SiteTypes => "site-types",
            Self::DispatchTypes => "dispatch-types",
            Self::UlCodes => "ul-codes",
            Self::Authorities => "authorities",
            Self::OosCategories => "oos-categories",
            Self::DeviceTypes => "device-types",
            Self::TimerTestTypes => "timer-test-types",
            Self::CommTypes => "comm-types",
            Self::LidTypes => "lid-types",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupItem {
    pub code: String,
    pub description: String,
}

/// `GET /api/v1/sites` filters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StagesSiteQuery {
    /// Only the site whose billing id is this.
    pub billing_id: Option<String>,
    /// Only sites without a billing id.
    pub unlinked: bool,
    /// Free text over name, address, city, phone and site number.
    pub q: Option<String>,
    pub page_token: Option<String>,
    pub page_size: Option<u32>,
}

/// `GET /api/v1/devices` filters: every device of the central station, in
/// device id order, paged. Filters combine with AND.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StagesDeviceQuery {
    /// Only the device whose billing id is this.
    pub billing_id: Option<String>,
    /// Only the devices of this site.
    pub site_no: Option<String>,
    /// `Some(true)`: only devices with a billing id; `Some(false)`: only those without.
    pub has_billing_id: Option<bool>,
    pub page_token: Option<String>,
    /// 1..=500; Stages uses 50 when none is given.
    pub page_size: Option<u32>,
}

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
    async fn get_site(&self, site_no: &str) -> StagesResult<StagesSite>;
    async fn update_site(&self, site_no: &str, patch: &StagesSitePatch)
        -> StagesResult<StagesSite>;
    async fn site_history(
        &self,
        site_no: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> StagesResult<Vec<StagesHistoryEntry>>;

    async fn list_devices(&self, site_no: &str) -> StagesResult<Vec<StagesDevice>>;
    /// Every device of the central station, paged; for reconcile and lookups by billing id.
    async fn list_all_devices(&self, query: &StagesDeviceQuery)
        -> StagesResult<Page<StagesDevice>>;
    async fn create_device(
        &self,
        site_no: &str,
        device: &NewStagesDevice,
    ) -> StagesResult<StagesDevice>;
    async fn get_device(&self, device_id: &str) -> StagesResult<StagesDevice>;
    async fn update_device(
        &self,
        device_id: &str,
        patch: &StagesDevicePatch,
    ) -> StagesResult<StagesDevice>;
    async fn change_transmitter_code(
        &self,
        device_id: &str,
        new_code: &str,
    ) -> StagesResult<StagesDevice>;
    async fn device_history(
        &self,
        device_id: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> StagesResult<Vec<StagesHistoryEntry>>;

    async fn list_configurations(&self, device_id: &str) -> StagesResult<Vec<StagesConfiguration>>;
    async fn create_configuration(
        &self,
        device_id: &str,
        config: &NewStagesConfiguration,
    ) -> StagesResult<StagesConfiguration>;

    async fn update_configuration(
        &self,
        device_id: &str,
        config_id: &str,
        patch: &StagesConfigurationPatch,
    ) -> StagesResult<StagesConfiguration>;

    async fn list_contacts(&self, site_no: &str) -> StagesResult<Vec<StagesContact>>;
    async fn create_contact(
        &self,
        site_no: &str,
        contact: &NewStagesContact,
    ) -> StagesResult<StagesContact>;
    async fn update_contact(
        &self,
        site_no: &str,
        contact_id: &str,
        patch: &StagesContactPatch,
    ) -> StagesResult<StagesContact>;
    async fn delete_contact(&self, site_no: &str, contact_id: &str) -> StagesResult<()>;

    async fn list_notes(&self, site_no: &str) -> StagesResult<Vec<StagesNote>>;
    async fn create_note(&self, site_no: &str, note: &NewStagesNote) -> StagesResult<StagesNote>;

    async fn list_tests(&self, device_id: &str) -> StagesResult<Vec<StagesTest>>;
    async fn start_test(&self, device_id: &str, test: &NewStagesTest) -> StagesResult<StagesTest>;
    async fn end_test(&self, device_id: &str, test_id: &str) -> StagesResult<()>;
}

/// Where and as whom to call Stages.
#[derive(Clone, PartialEq, Eq)]
pub struct StagesTarget {
    /// A stable key for per-connection limits (the connection id).
    pub key: String,
    /// Base URL; the protocol lives under `/api/v1/`.
    pub endpoint: url::Url,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for StagesTarget {
    // The password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagesTarget")
            .field("key", &self.key)
            .field("endpoint", &self.endpoint.as_str())
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Makes a `StagesApi` for a target; implemented by `stages-client`.
pub trait StagesConnector: Send + Sync {
    fn connect(&self, target: StagesTarget) -> std::sync::Arc<dyn StagesApi>;
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
        site_no: String,
        #[serde(default)]
        billing_id: Option<String>,
        changes: std::collections::BTreeMap<String, String>,
    },
    /// Device fields changed in Stages (`transmitter_code`, ...).
    #[serde(rename = "device.updated")]
    DeviceUpdated {
        device_id: String,
        site_no: String,
        #[serde(default)]
        billing_id: Option<String>,
        changes: std::collections::BTreeMap<String, String>,
    },
    /// Stages sends a whole site to billing: as a new customer or to an existing one.
    #[serde(rename = "site.send_to_billing")]
    SendToBilling {
        site_no: String,
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
