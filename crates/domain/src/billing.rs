//! The service's copy of the billing system's records: customers, sites,
//! systems and users. The billing system keeps them current with PUT; the
//! service writes to them when Stages or an import brings data back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::tenancy::DealerId;

/// An id given by the billing system: opaque, 1 to 128 characters, no `/`,
/// no control characters (it travels in URL paths and in Stages' billing id).
///
/// Read from JSON through [`BillingId::parse`] too, so no body or payload
/// holds one that skipped the check.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BillingId(String);

impl From<BillingId> for String {
    fn from(id: BillingId) -> String {
        id.0
    }
}

impl TryFrom<String> for BillingId {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}

impl BillingId {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("must not be empty".into());
        }
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        if raw.trim() != raw {
            return Err("must not start or end with white space".into());
        }
        if raw.chars().any(|c| c.is_control() || c == '/') {
            return Err("must not contain '/' or control characters".into());
        }
        if crate::validation::is_dot_segment(raw) {
            return Err("must not be '.' or '..'".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BillingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CustomerKind {
    #[default]
    Person,
    Business,
}

/// The settable fields of a billing customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CustomerFields {
    pub kind: CustomerKind,
    pub first_name: String,
    pub last_name: String,
    /// For a business.
    pub business_name: String,
    pub phone: String,
    pub email: String,
    pub address1: String,
    pub address2: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    /// The dealer's office the customer is served from.
    #[serde(default)]
    pub office_location: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The billing user who sold the account (the rep).
    #[serde(default)]
    pub rep_id: Option<BillingId>,
    #[serde(default)]
    pub sale_date: Option<chrono::NaiveDate>,
    /// The two-way voice service is on.
    #[serde(default)]
    pub two_way_voice: bool,
    /// The central station account number.
    #[serde(default)]
    pub account_number: String,
    /// The central station receiver's phone number.
    #[serde(default)]
    pub receiver_number: String,
}

impl CustomerFields {
    /// The name a screen shows: the business name, else first and last name.
    pub fn display_name(&self) -> String {
        match self.kind {
            CustomerKind::Business if !self.business_name.is_empty() => self.business_name.clone(),
            _ => format!("{} {}", self.first_name, self.last_name)
                .trim()
                .to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SiteFields {
    pub customer_id: Option<BillingId>,
    pub name: String,
    pub address1: String,
    pub address2: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    pub phone: String,
    pub info: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemFields {
    pub site_id: BillingId,
    /// The account number at the central station; a push sets it to the
    /// transmitter code entered for Stages.
    pub system_number: String,
    pub panel_type: String,
    pub location: String,
    pub info: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UserFields {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    /// The user's (cell) phone.
    pub phone: String,
    pub login_name: String,
    pub active: bool,
    pub can_login: bool,
    pub permission_group: String,
    pub tags: Vec<String>,
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
    /// A free field the dealer uses as it likes.
    #[serde(default)]
    pub user_field: String,
}

/// A stored billing record of any kind: its id, owner, version and fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingRecord<F> {
    pub id: BillingId,
    pub dealer: DealerId,
    /// Bumped on every change; the ETag.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub fields: F,
}

pub type BillingCustomer = BillingRecord<CustomerFields>;
pub type BillingSite = BillingRecord<SiteFields>;
pub type BillingSystem = BillingRecord<SystemFields>;
pub type BillingUser = BillingRecord<UserFields>;

/// A change the service itself makes to a billing record (a sync taking the
/// Stages value, a Stages callback, a push setting the system number, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillingWrite {
    Customer {
        id: BillingId,
        fields: CustomerFields,
    },
    Site {
        id: BillingId,
        fields: SiteFields,
    },
    System {
        id: BillingId,
        fields: SystemFields,
    },
    User {
        id: BillingId,
        fields: UserFields,
    },
}

/// What a `BillingWrite` did, with the record as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillingWritten {
    Customer(Upserted<BillingCustomer>),
    Site(Upserted<BillingSite>),
    System(Upserted<BillingSystem>),
    User(Upserted<BillingUser>),
}

/// What an upsert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upserted<T> {
    pub record: T,
    pub created: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_ids_are_opaque_but_path_safe() {
        assert!(BillingId::parse("SITE-001").is_ok());
        assert!(BillingId::parse("42").is_ok());
        assert!(BillingId::parse("a b:c.d").is_ok());
        for bad in ["", " x", "x ", "a/b", "a\nb"] {
            assert!(BillingId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(BillingId::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn billing_ids_read_from_json_are_checked_too() {
        let id: BillingId = serde_json::from_str("\"SITE-001\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"SITE-001\"");
        let err = serde_json::from_str::<BillingId>("\"a/b\"").unwrap_err();
        assert!(err.to_string().contains("must not contain '/'"), "{err}");
        assert!(serde_json::from_str::<BillingId>("\"\"").is_err());
    }

    #[test]
    fn businesses_show_their_business_name() {
        let mut c = CustomerFields {
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            ..Default::default()
        };
        assert_eq!(c.display_name(), "Ada Lovelace");
        c.kind = CustomerKind::Business;
        c.business_name = "Analytical Engines".into();
        assert_eq!(c.display_name(), "Analytical Engines");
    }
}
