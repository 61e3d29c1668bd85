//! Alarm.com (ADC) as the service sees it: its customers, reps and service
//! plans, and the `AdcApi` port.
//!
//! ADC speaks SOAP (docs: `ADC-API.md`); `adc-client` implements the port over
//! it and `adc-sim` serves it from its own code. Nothing here knows about XML:
//! these are the records the importer, the provisioning jobs and the API work
//! with. Text fields ADC leaves out come back as empty strings, so the field
//! maps compare them without unwrapping.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::upstream::{UpstreamErrorKind, UpstreamFailure};

/// ADC's own id of a customer (a "CustomerId", an integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AdcCustomerId(pub i64);

impl fmt::Display for AdcCustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for AdcCustomerId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(Self)
    }
}

/// ADC's id of a service plan (a "PackageId").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AdcPackageId(pub i64);

impl fmt::Display for AdcPackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for AdcPackageId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(Self)
    }
}

/// A postal address as ADC holds it (an install address, a rep's address).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AdcAddress {
    #[serde(default)]
    pub street1: String,
    #[serde(default)]
    pub street2: String,
    #[serde(default)]
    pub city: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub zip: String,
    /// ADC's country name, e.g. `USA`; empty leaves ADC's default.
    #[serde(default)]
    pub country_id: String,
}

/// A sub-dealer (branch) of the dealer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AdcSubDealer {
    pub id: i64,
    pub name: String,
}

/// A permission role a rep (ADC login) can hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AdcRole {
    pub id: i64,
    pub name: String,
}

/// A Builder Program: a home builder's project that commitments are made
/// under ("Choose the correct Builder Program from the dropdown").
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AdcBuilderProgram {
    pub id: i64,
    pub name: String,
}

/// A service plan the dealer may sell ("Default service plan" of the ISP
/// settings; a customer's plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePlan {
    pub package_id: AdcPackageId,
    pub name: String,
}

/// The add-on features Alarm.com accepts on an account (`AddOnFeatures`),
/// as it spells them. Two-way voice is the one billing carries as a field.
pub const ADD_ON_FEATURES: &[&str] = &["TwoWayVoice", "Video", "ImageSensor", "EnergyManagement"];

/// The add-on `TwoWayVoice` ("Two Way Voice Enabled Service").
pub const TWO_WAY_VOICE: &str = "TwoWayVoice";

/// An add-on name as Alarm.com spells it (any case, spaces, `-` and `_`
/// ignored: `two-way voice` is `TwoWayVoice`); `None` when it is not one.
pub fn add_on_feature(name: &str) -> Option<&'static str> {
    let squeeze = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let wanted = squeeze(name);
    ADD_ON_FEATURES
        .iter()
        .copied()
        .find(|known| squeeze(known) == wanted)
}

/// Where the panel's signals go: the central station data points.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AdcCentralStationInfo {
    #[serde(default)]
    pub account_number: String,
    /// The receiver's phone number.
    #[serde(default)]
    pub receiver_number: String,
}

/// A customer account as `GetCustomerInfo_V2` describes it: what the customer
/// import maps onto a billing customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdcCustomer {
    pub customer_id: AdcCustomerId,
    /// The dealer's own account number for the customer, when it was given.
    #[serde(default)]
    pub dealer_customer_id: String,
    #[serde(default)]
    pub login_name: String,
    #[serde(default)]
    pub is_terminated: bool,
    #[serde(default)]
    pub terminated_date: Option<DateTime<Utc>>,
    /// A Builder Program commitment rather than an installed customer.
    #[serde(default)]
    pub is_commitment: bool,
    #[serde(default)]
    pub commitment_id: Option<i64>,
    #[serde(default)]
    pub builder_program_id: Option<i64>,
    /// `None` when the account belongs to the dealer itself.
    #[serde(default)]
    pub sub_dealer: Option<AdcSubDealer>,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    /// "Commercial Name"; the billing business name.
    #[serde(default)]
    pub company_name: String,
    /// Primary email.
    #[serde(default)]
    pub email: String,
    /// Primary phone number.
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub install_address: AdcAddress,
    /// ADC's time zone name of the install address.
    #[serde(default)]
    pub time_zone: String,
    #[serde(default)]
    pub panel_type: String,
    #[serde(default)]
    pub modem_serial_number: String,
    #[serde(default)]
    pub service_plan: Option<ServicePlan>,
    /// ADC's add-on names, e.g. `TwoWayVoice`.
    #[serde(default)]
    pub add_on_features: Vec<String>,
    #[serde(default)]
    pub sales_rep_login_name: String,
    /// "Rep Id" of the import mapping: the sales rep's support id.
    #[serde(default)]
    pub sales_rep_support_id: Option<i64>,
    #[serde(default)]
    pub installer_login_name: String,
    #[serde(default)]
    pub install_type: String,
    #[serde(default)]
    pub central_station: AdcCentralStationInfo,
    /// "Two Way Voice Enabled Service".
    #[serde(default)]
    pub two_way_voice: bool,
    /// "Join Date", the billing sale date.
    #[serde(default)]
    pub join_date: Option<DateTime<Utc>>,
    #[serde(default)]
    pub created_date: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_modified_date: Option<DateTime<Utc>>,
}

/// A rep (an ADC login of the dealer or a sub-dealer): what the user import
/// maps onto a billing user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdcRep {
    /// The "Support ID": ADC's unique id of the user, which the user import
    /// filters on (an exact match) and customers name as their "Rep Id".
    #[serde(default)]
    pub support_id: Option<i64>,
    pub login_name: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub email: String,
    /// Cell phone.
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub address: AdcAddress,
    #[serde(default)]
    pub roles: Vec<AdcRole>,
    /// `None` for a login of the dealer itself.
    #[serde(default)]
    pub sub_dealer: Option<AdcSubDealer>,
    #[serde(default)]
    pub active: bool,
    /// A free dealer-defined field ("User Field").
    #[serde(default)]
    pub user_field: String,
}

/// The contact and billing address of a new account (`CustomerAccountAddress`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AdcAccountAddress {
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub company_name: String,
    #[serde(default)]
    pub phone: String,
    #[serde(flatten)]
    pub address: AdcAddress,
}

/// The input of `CreateCustomer`. Empty text and `None` are left out of the
/// request, so ADC applies its defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NewAdcCustomer {
    pub account_address: AdcAccountAddress,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub phone: String,
    /// The billing account number, so the account can be found from ADC.
    #[serde(default)]
    pub dealer_customer_id: String,
    /// The customer's login; ADC refuses one already taken.
    pub desired_login_name: String,
    #[serde(default)]
    pub installation_address: AdcAddress,
    /// ADC's time zone name, e.g. `Eastern`.
    #[serde(default)]
    pub installation_time_zone: String,
    #[serde(default)]
    pub panel_type: String,
    #[serde(default)]
    pub modem_serial_number: String,
    #[serde(default)]
    pub central_station: AdcCentralStationInfo,
    /// ADC's add-on names, e.g. `TwoWayVoice`.
    #[serde(default)]
    pub add_on_features: Vec<String>,
    #[serde(default)]
    pub sales_rep_login_name: String,
    #[serde(default)]
    pub installer_login_name: String,
    #[serde(default)]
    pub branch_id: Option<i64>,
    #[serde(default)]
    pub package_id: Option<AdcPackageId>,
    #[serde(default)]
    pub builder_program_id: Option<i64>,
    #[serde(default)]
    pub install_type: String,
}

/// A Builder Program commitment: an account created for a home still being
/// built, before its panel is installed (so without login or modem yet).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NewAdcCommitment {
    /// Sent as the customer's `BuilderProgramId`; wins over the one in `customer`.
    pub builder_program_id: i64,
    pub customer: NewAdcCustomer,
}

/// What ADC made of a commitment: the account every link points to, and the
/// commitment's own number when ADC gives one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedAdcCommitment {
    pub customer_id: AdcCustomerId,
    #[serde(default)]
    pub commitment_id: Option<i64>,
}

/// `GetCustomerList_V2` filters. ADC filters nothing else (no customer ids,
/// sub-dealers or paging): list, read each, filter on our side.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AdcCustomerQuery {
    #[serde(default)]
    pub include_terminated: bool,
    /// Customers created (joined) from this instant; the incremental import's window.
    #[serde(default)]
    pub start_date: Option<DateTime<Utc>>,
    #[serde(default)]
    pub end_date: Option<DateTime<Utc>>,
    #[serde(default)]
    pub exclude_commitments: bool,
    /// Only commitments.
    #[serde(default)]
    pub exclude_customers: bool,
    /// ADC panel version names; empty means any.
    #[serde(default)]
    pub panel_versions: Vec<String>,
    #[serde(default)]
    pub alternate_id: Option<String>,
}

/// What the integration login may do in ADC beyond the basic customer calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AdcPermissions {
    /// May create Builder Program customers and commitments (the "Builder
    /// Program" role, or "Dealer Administrator" with "Manage Builder Program").
    #[serde(default)]
    pub builder_program: bool,
    /// The billing integration permission (`setSecurityTraxSettings`), needed
    /// for ADC's billing notifications.
    #[serde(default)]
    pub billing: bool,
}

/// Why a call to ADC failed, in terms the service can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdcError {
    #[error("Alarm.com refused the credentials")]
    Unauthorized,
    #[error("Alarm.com has no such record: {0}")]
    NotFound(String),
    /// A result with `Success=false` (a login already taken, a bad field, ...).
    #[error("Alarm.com refused the request: {message}")]
    Rejected { message: String },
    /// The login lacks a role or permission for this call.
    #[error("Alarm.com denied the permission: {message}")]
    PermissionDenied { message: String },
    /// Any other SOAP fault the request caused (`soap:Client`).
    #[error("Alarm.com answered with a fault: {message}")]
    Fault { message: String },
    /// A fault of Alarm.com's own side (`soap:Server`, e.g. "server busy"):
    /// the same request may well succeed a moment later.
    #[error("Alarm.com failed on its side: {message}")]
    ServerFault { message: String },
    #[error("Alarm.com asks to slow down (retry after {retry_after_secs:?} s)")]
    RateLimited { retry_after_secs: Option<u64> },
    #[error("Alarm.com could not be reached: {0}")]
    Unreachable(String),
    #[error("Alarm.com did not answer in time")]
    Timeout,
    /// An HTTP error without a fault, or an answer the protocol does not allow.
    #[error("Alarm.com gave a bad answer: {0}")]
    BadAnswer(String),
    /// The egress policy forbids the endpoint's address (loopback, private,
    /// ...): nothing was sent, and nothing will be until the endpoint or the
    /// policy changes.
    #[error("{0}")]
    EgressRefused(String),
}

impl UpstreamFailure for AdcError {
    fn upstream_kind(&self) -> UpstreamErrorKind {
        match self {
            Self::Unauthorized => UpstreamErrorKind::Unauthorized,
            Self::NotFound(_) => UpstreamErrorKind::NotFound,
            Self::Rejected { .. } => UpstreamErrorKind::Rejected,
            Self::PermissionDenied { .. } => UpstreamErrorKind::PermissionDenied,
            Self::Fault { .. } => UpstreamErrorKind::Fault,
            Self::ServerFault { .. } => UpstreamErrorKind::ServerFault,
            Self::RateLimited { .. } => UpstreamErrorKind::RateLimited,
            Self::Unreachable(_) => UpstreamErrorKind::Unreachable,
            Self::Timeout => UpstreamErrorKind::Timeout,
            Self::BadAnswer(_) => UpstreamErrorKind::BadAnswer,
            Self::EgressRefused(_) => UpstreamErrorKind::EgressRefused,
        }
    }
}

impl AdcError {
    /// A short stable name of the kind of failure (a metric label).
    pub fn kind(&self) -> &'static str {
        self.upstream_kind().as_str()
    }

    /// Worth trying again later (by a job, or an import within its run; the
    /// client retries reads itself). A fault the request caused is ADC's
    /// deliberate answer, so it is not; a server-side one is.
    pub fn is_transient(&self) -> bool {
        self.upstream_kind().is_transient()
    }
}

pub type AdcResult<T> = Result<T, AdcError>;

/// The ADC dealer web services, bound to one endpoint and one login.
#[async_trait]
pub trait AdcApi: Send + Sync {
    /// Checks the credentials (a cheap authenticated read).
    async fn check_credentials(&self) -> AdcResult<()>;
    /// The `CallerVersion` the `_V2` calls want.
    async fn latest_caller_version(&self) -> AdcResult<i32>;

    /// The ids of the customers matching `query`, in ADC's order.
    async fn customer_ids(&self, query: &AdcCustomerQuery) -> AdcResult<Vec<AdcCustomerId>>;
    async fn customer(&self, id: AdcCustomerId) -> AdcResult<AdcCustomer>;
    /// Never retried by the client: a job retries it after looking the account up.
    async fn create_customer(&self, customer: &NewAdcCustomer) -> AdcResult<AdcCustomerId>;
    /// A Builder Program commitment; needs the Builder Program permission.
    /// Never retried by the client, like every change.
    async fn create_commitment(
        &self,
        commitment: &NewAdcCommitment,
    ) -> AdcResult<CreatedAdcCommitment>;
    async fn terminate_customer(&self, id: AdcCustomerId) -> AdcResult<()>;
    /// Moves the account to `package_id`; `add_ons`, when given, replaces
    /// its add-on features (an empty list removes them all).
    async fn change_service_plan(
        &self,
        id: AdcCustomerId,
        package_id: AdcPackageId,
        add_ons: Option<&[String]>,
    ) -> AdcResult<()>;
    async fn update_central_station_info(
        &self,
        id: AdcCustomerId,
        info: &AdcCentralStationInfo,
    ) -> AdcResult<()>;

    async fn reps(&self) -> AdcResult<Vec<AdcRep>>;
    async fn service_plans(&self) -> AdcResult<Vec<ServicePlan>>;
    async fn permissions(&self) -> AdcResult<AdcPermissions>;
    async fn sub_dealers(&self) -> AdcResult<Vec<AdcSubDealer>>;
    async fn roles(&self) -> AdcResult<Vec<AdcRole>>;
    async fn builder_programs(&self) -> AdcResult<Vec<AdcBuilderProgram>>;
}

/// Makes an `AdcApi` for a target; implemented by `adc-client`.
pub trait AdcConnector: Send + Sync {
    fn connect(&self, target: crate::upstream::UpstreamTarget) -> std::sync::Arc<dyn AdcApi>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_on_names_are_alarm_coms() {
        assert_eq!(add_on_feature("two-way voice"), Some("TwoWayVoice"));
        assert_eq!(add_on_feature("VIDEO"), Some("Video"));
        assert_eq!(add_on_feature("image_sensor"), Some("ImageSensor"));
        assert_eq!(add_on_feature("Teleporter"), None);
    }

    #[test]
    fn ids_parse_and_show() {
        assert_eq!(" 42 ".parse::<AdcCustomerId>().unwrap(), AdcCustomerId(42));
        assert_eq!(AdcPackageId(7).to_string(), "7");
        assert!("x".parse::<AdcCustomerId>().is_err());
    }

    #[test]
    fn transient_errors() {
        assert!(AdcError::Timeout.is_transient());
        assert!(AdcError::RateLimited {
            retry_after_secs: None
        }
        .is_transient());
        assert!(!AdcError::Unauthorized.is_transient());
        assert!(!AdcError::Fault {
            message: "x".into()
        }
        .is_transient());
        assert!(AdcError::ServerFault {
            message: "Server busy".into()
        }
        .is_transient());
        assert!(!AdcError::Rejected {
            message: "taken".into()
        }
        .is_transient());
    }
}
