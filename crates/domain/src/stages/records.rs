//! The Stages records as the wire protocol carries them: sites, devices,
//! configurations, contacts, notes, history, tests, lookups and the list
//! queries.
//!
//! The serde form of these types is the JSON of the Stages wire protocol
//! (docs/stages-protocol.md).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{DeviceId, SiteNo};

/// A Stages site (an account of the central station).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagesSite {
    pub site_no: SiteNo,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagesDevice {
    pub device_id: DeviceId,
    pub site_no: SiteNo,
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
    pub device_id: DeviceId,
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
    pub site_no: SiteNo,
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
    pub site_no: SiteNo,
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
    /// Empty for an entry of the site itself (a site's history has both).
    pub device_id: String,
    pub site_no: SiteNo,
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
    pub device_id: DeviceId,
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
    pub site_no: Option<SiteNo>,
    /// `Some(true)`: only devices with a billing id; `Some(false)`: only those without.
    pub has_billing_id: Option<bool>,
    pub page_token: Option<String>,
    /// 1..=500; Stages uses 50 when none is given.
    pub page_size: Option<u32>,
}
