//! The records the simulator holds, in the shape the admin routes speak
//! (snake_case JSON) and the SOAP answers are written from.
//!
//! Field names follow what an Alarm.com customer and rep carry as far as it
//! is public; everything else (sub-dealers, roles, permissions, builder
//! programs) is our own model, kept here so that it can be corrected in one
//! place once the real schema is known.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A postal address (install address, rep address).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Address {
    pub street1: String,
    pub street2: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    pub country_id: String,
}

/// One Alarm.com customer account (or Builder Program commitment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub customer_id: i64,
    /// The customer's Alarm.com login; empty for commitments.
    pub login_name: String,
    /// The dealer's own id for the customer (our billing record id).
    pub dealer_customer_id: String,
    pub first_name: String,
    pub last_name: String,
    /// Business name for commercial accounts.
    pub company_name: String,
    pub email: String,
    pub phone: String,
    pub install_address: Address,
    pub time_zone: String,
    pub panel_type: String,
    pub modem_serial_number: String,
    /// The service plan.
    pub package_id: i64,
    /// e.g. `TwoWayVoice`, `Video`.
    pub add_on_features: Vec<String>,
    pub sales_rep_login_name: String,
    pub installer_login_name: String,
    /// The sub-dealer (branch) the account belongs to; 0 for the dealer itself.
    pub sub_dealer_id: i64,
    pub central_station_account_number: String,
    /// The central station receiver phone number.
    pub central_station_receiver_number: String,
    pub install_type: String,
    pub is_terminated: bool,
    pub terminated_date: Option<DateTime<Utc>>,
    pub is_commitment: bool,
    /// Set for commitments (0 otherwise).
    pub commitment_id: i64,
    /// 0 when not in a Builder Program.
    pub builder_program_id: i64,
    pub join_date: DateTime<Utc>,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
}

/// A dealer user ("rep"): sales rep, technician, manager, office staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rep {
    /// The unique id Alarm.com support knows the user by.
    pub support_id: i64,
    pub login_name: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: String,
    pub address: Address,
    /// 0 for the dealer itself.
    pub sub_dealer_id: i64,
    /// Role names, see [`Role`].
    pub roles: Vec<String>,
    pub is_active: bool,
    /// A free dealer-defined field.
    pub user_field: String,
}

/// A sub-dealer (branch) of the dealer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubDealer {
    pub sub_dealer_id: i64,
    pub name: String,
}

/// A permission role a rep can hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub role_id: i64,
    pub name: String,
}

/// A service plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub package_id: i64,
    pub name: String,
}

/// A Builder Program a commitment or builder customer is created under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuilderProgram {
    pub builder_program_id: i64,
    pub name: String,
}

/// What a dealer login may do beyond the basic customer calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Permissions {
    /// May create Builder Program customers and commitments.
    pub builder_program: bool,
    /// Has the billing integration permission (billing notifications).
    pub billing: bool,
}

impl Default for Permissions {
    /// Everything allowed.
    fn default() -> Self {
        Permissions {
            builder_program: true,
            billing: true,
        }
    }
}

/// A partial customer for `POST /admin/customers` and
/// `PATCH /admin/customers/{id}`: what is given overrides a generated (or
/// the existing) record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CustomerPatch {
    pub login_name: Option<String>,
    pub dealer_customer_id: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub install_address: Option<Address>,
    pub time_zone: Option<String>,
    pub panel_type: Option<String>,
    pub modem_serial_number: Option<String>,
    pub package_id: Option<i64>,
    pub add_on_features: Option<Vec<String>>,
    pub sales_rep_login_name: Option<String>,
    pub installer_login_name: Option<String>,
    pub sub_dealer_id: Option<i64>,
    pub central_station_account_number: Option<String>,
    pub central_station_receiver_number: Option<String>,
    pub install_type: Option<String>,
    pub is_terminated: Option<bool>,
    pub is_commitment: Option<bool>,
    pub builder_program_id: Option<i64>,
    pub join_date: Option<DateTime<Utc>>,
    pub created: Option<DateTime<Utc>>,
    /// Defaults to now on a patch, to `created` on a new record.
    pub modified: Option<DateTime<Utc>>,
}

/// A partial rep for `POST /admin/reps`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepPatch {
    pub login_name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<Address>,
    pub sub_dealer_id: Option<i64>,
    pub roles: Option<Vec<String>>,
    pub is_active: Option<bool>,
    pub user_field: Option<String>,
}
