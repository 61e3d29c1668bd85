//! The JSON records of the Stages protocol, as the simulator serves them.
//!
//! These mirror `domain::stages` field for field but are written out again on
//! purpose: the simulator is an independent party, so a change on the client
//! side that breaks the wire format shows up as a failing test instead of
//! being silently mirrored here.
//!
//! Request bodies are strict, as Stages' schema is: an unknown (or misspelled)
//! field is a 422, never silently dropped, so a client that loses an S5 site or
//! device field on the wire fails here. Response types stay lenient: the
//! simulator only writes them. Optional fields may be left out; required ones
//! (site `name`, device `transmitter_code`, zone `point`, contact `name`, note
//! `text`, test times) have no default.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// A list answer. Only `GET /sites` pages; other lists always carry `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Items<T> {
    pub items: Vec<T>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

impl<T> Items<T> {
    pub fn all(items: Vec<T>) -> Self {
        Items {
            items,
            next_page_token: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SiteFields {
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Site {
    pub site_no: String,
    #[serde(flatten)]
    pub fields: SiteFields,
}

/// `POST /sites` (S5). `deny_unknown_fields` sits here, not on the flattened
/// `SiteFields`: serde refuses what the flattened struct leaves unclaimed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewSite {
    #[serde(flatten)]
    pub fields: SiteFields,
    #[serde(default)]
    pub devices: Vec<NewDevice>,
    #[serde(default)]
    pub contacts: Vec<NewContact>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedSite {
    pub site: Site,
    pub devices: Vec<Device>,
    pub contacts: Vec<Contact>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SitePatch {
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

/// What a device reports; `on_test` is derived, never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    #[default]
    Normal,
    Alarm,
    OutOfService,
    OnTest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DeviceFields {
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
    #[serde(default)]
    pub entry_period: String,
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
pub struct Device {
    pub device_id: String,
    pub site_no: String,
    #[serde(flatten)]
    pub fields: DeviceFields,
    #[serde(default)]
    pub status: DeviceStatus,
}

/// A new device (S5), alone or in a `NewSite`; strict like `NewSite`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    #[serde(flatten)]
    pub fields: DeviceFields,
    #[serde(default)]
    pub configurations: Vec<NewConfiguration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DevicePatch {
    /// Never accepted here (its change is `change-xmit`); kept only to refuse it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transmitter_code: Option<serde_json::Value>,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeXmit {
    pub new_transmitter_code: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewConfiguration {
    pub point: u32,
    #[serde(default)]
    pub area: String,
    #[serde(default)]
    pub event_code: String,
    #[serde(default)]
    pub description: String,
}

/// `PATCH /devices/{id}/configurations/{config_id}`: a field left out is unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigurationPatch {
    #[serde(default)]
    pub point: Option<u32>,
    #[serde(default)]
    pub area: Option<String>,
    #[serde(default)]
    pub event_code: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Configuration {
    pub config_id: String,
    pub device_id: String,
    #[serde(flatten)]
    pub fields: NewConfiguration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactPhone {
    pub kind: String,
    pub number: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ContactFields {
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
    #[serde(default)]
    pub ecv: bool,
    #[serde(default)]
    pub effective_date: Option<NaiveDate>,
    #[serde(default)]
    pub expire_date: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewContact {
    #[serde(flatten)]
    pub fields: ContactFields,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

/// A contact as served: the PIN itself never leaves the simulator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub contact_id: String,
    pub site_no: String,
    #[serde(flatten)]
    pub fields: ContactFields,
    #[serde(default)]
    pub has_pin: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ContactPatch {
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
    /// An empty PIN removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewNote {
    pub text: String,
    #[serde(default)]
    pub effective_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub expire_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
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

/// A signal or event. Site-level events (site edits, contacts, notes) carry
/// an empty `device_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTest {
    #[serde(rename = "type", default)]
    pub test_type: TestType,
    pub effective: DateTime<Utc>,
    pub expire: DateTime<Utc>,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Test {
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

impl Test {
    /// The state at `now`: a test is a window, so its state follows the clock.
    pub fn state_at(
        effective: DateTime<Utc>,
        expire: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> TestState {
        if now < effective {
            TestState::Scheduled
        } else if now < expire {
            TestState::Current
        } else {
            TestState::Expired
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupItem {
    pub code: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}
