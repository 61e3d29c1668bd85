//! The ISP accounts of billing customers (I3): a billing customer's account at
//! an interactive services provider on one connection, how it came to be
//! linked, moving it to another service plan, and reading what the provider
//! holds for it now.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{not_found_as, provider_error, require_active, IspPorts};
use crate::adc::{AdcCustomer, AdcCustomerId, AdcError, AdcPackageId};
use crate::billing::BillingId;
use crate::connection::ConnectionId;
use crate::operations::OperationError;
use crate::store::StoreError;
use crate::tenancy::{Caller, DealerId};
use crate::upstream::{adc_client, ActingAs};
use crate::validation::ValidationError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IspAccountId(pub Uuid);

impl IspAccountId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for IspAccountId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for IspAccountId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}

text_enum!(
    /// A provider account that is a customer, or a Builder Program commitment
    /// (a home still being built).
    IspAccountKind { Customer = "customer", Commitment = "commitment" }
);
text_enum!(
    /// How the account came to be linked.
    IspAccountOrigin {
        /// The service created it at the provider.
        Created = "created",
        /// Someone linked an account that already existed.
        Linked = "linked",
        /// An earlier create whose answer was lost had made it; found by the
        /// billing id it carries (`DealerCustomerId`) and linked instead of
        /// creating another.
        Recovered = "recovered",
    }
);
text_enum!(
    /// `Pending` while the provider is being called: the reservation that keeps
    /// two requests from creating two accounts for one billing customer.
    IspAccountState { Pending = "pending", Active = "active" }
);

/// A billing customer's account at an interactive services provider, on one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IspAccount {
    pub id: IspAccountId,
    pub dealer: DealerId,
    pub connection_id: ConnectionId,
    pub billing_customer_id: BillingId,
    /// The provider's customer id (ADC's CustomerId); `None` while pending.
    pub external_id: Option<String>,
    pub state: IspAccountState,
    pub kind: IspAccountKind,
    pub origin: IspAccountOrigin,
    pub builder_program_id: Option<i64>,
    pub commitment_id: Option<i64>,
    /// The service plan as last set through this service (or read when linked).
    pub package_id: Option<AdcPackageId>,
    pub login_name: String,
    pub created_by: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The reservation written before the provider is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIspAccount {
    pub id: IspAccountId,
    pub connection_id: ConnectionId,
    pub billing_customer_id: BillingId,
    pub kind: IspAccountKind,
    pub origin: IspAccountOrigin,
    pub builder_program_id: Option<i64>,
    pub created_by: String,
}

/// What the provider made of a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedIspAccount {
    pub external_id: String,
    pub kind: IspAccountKind,
    pub origin: IspAccountOrigin,
    pub builder_program_id: Option<i64>,
    pub commitment_id: Option<i64>,
    pub package_id: Option<AdcPackageId>,
    pub login_name: String,
}

/// A reservation older than this belongs to a request that died.
pub fn pending_timeout() -> chrono::Duration {
    chrono::Duration::minutes(5)
}

pub(crate) fn completed_from(
    customer: &AdcCustomer,
    origin: IspAccountOrigin,
) -> CompletedIspAccount {
    CompletedIspAccount {
        external_id: customer.customer_id.to_string(),
        kind: if customer.is_commitment {
            IspAccountKind::Commitment
        } else {
            IspAccountKind::Customer
        },
        origin,
        builder_program_id: customer.builder_program_id.filter(|id| *id != 0),
        commitment_id: customer.commitment_id.filter(|id| *id != 0),
        package_id: customer.service_plan.as_ref().map(|p| p.package_id),
        login_name: customer.login_name.clone(),
    }
}

/// Moves an ISP account to another service plan at the provider, then records it.
pub async fn change_service_plan(
    ports: &IspPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    id: IspAccountId,
    package_id: AdcPackageId,
    add_ons: Option<Vec<String>>,
    expected_version: Option<i64>,
) -> Result<IspAccount, OperationError> {
    let dealer = &caller.dealer;
    let connection = ports
        .connections
        .connection(dealer, connection_id)
        .await
        .map_err(not_found_as("no such connection".into()))?;
    require_active(&connection)?;
    let account = ports
        .accounts
        .isp_account(dealer, connection_id, id)
        .await
        .map_err(not_found_as("no such ISP account".into()))?;
    if expected_version.is_some_and(|v| v != account.version) {
        return Err(StoreError::VersionMismatch.into());
    }
    let external = match (&account.state, &account.external_id) {
        (IspAccountState::Active, Some(external)) => external.clone(),
        _ => {
            return Err(OperationError::Conflict {
                code: "isp_account_pending",
                message: "the ISP account is still being provisioned; try again shortly".into(),
            })
        }
    };
    let customer_id: AdcCustomerId = external
        .parse()
        .map_err(|_| StoreError::Unavailable(format!("ISP account {id} has a bad external id")))?;
    let api = adc_client(ports.connections, ports.adc, ActingAs::Dealer, &connection).await?;
    api.change_service_plan(customer_id, package_id, add_ons.as_deref())
        .await
        .map_err(|e| match e {
            AdcError::Rejected { message } => {
                ValidationError::field("package_id", format!("Alarm.com refused it: {message}"))
                    .into()
            }
            other => provider_error(&connection, other),
        })?;
    ports
        .accounts
        .set_isp_account_plan(dealer, id, package_id, expected_version)
        .await
        .map_err(not_found_as("no such ISP account".into()))
}

/// An ISP account as the provider holds it now: its plan and add-ons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderAccount {
    pub package_id: Option<AdcPackageId>,
    pub service_plan_name: Option<String>,
    pub add_on_features: Vec<String>,
    pub is_terminated: bool,
}

impl From<&AdcCustomer> for ProviderAccount {
    fn from(c: &AdcCustomer) -> Self {
        Self {
            package_id: c.service_plan.as_ref().map(|p| p.package_id),
            service_plan_name: c
                .service_plan
                .as_ref()
                .map(|p| p.name.clone())
                .filter(|n| !n.is_empty()),
            add_on_features: c.add_on_features.clone(),
            is_terminated: c.is_terminated,
        }
    }
}

/// An ISP account with what Alarm.com holds for it, read now: `Err` says
/// why it could not be read (the stored account is shown all the same);
/// `None` while the account is being provisioned.
pub async fn isp_account_with_provider(
    ports: &IspPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    id: IspAccountId,
) -> Result<(IspAccount, Option<Result<ProviderAccount, String>>), OperationError> {
    let dealer = &caller.dealer;
    let account = ports
        .accounts
        .isp_account(dealer, connection_id, id)
        .await
        .map_err(not_found_as("no such ISP account".into()))?;
    let external = match (&account.state, &account.external_id) {
        (IspAccountState::Active, Some(external)) => external.clone(),
        _ => return Ok((account, None)),
    };
    let read = async {
        let connection = ports
            .connections
            .connection(dealer, connection_id)
            .await
            .map_err(not_found_as("no such connection".into()))?;
        let customer_id: AdcCustomerId = external.parse().map_err(|_| {
            OperationError::from(StoreError::Unavailable(format!(
                "ISP account {id} has a bad external id"
            )))
        })?;
        let api = adc_client(ports.connections, ports.adc, ActingAs::Dealer, &connection).await?;
        api.customer(customer_id)
            .await
            .map(|c| ProviderAccount::from(&c))
            .map_err(|e| provider_error(&connection, e))
    };
    let provider = read.await.map_err(|e| e.to_string());
    Ok((account, Some(provider)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_enums_round_trip() {
        for k in [IspAccountKind::Customer, IspAccountKind::Commitment] {
            assert_eq!(IspAccountKind::parse(k.as_str()), Some(k));
        }
        for o in [
            IspAccountOrigin::Created,
            IspAccountOrigin::Linked,
            IspAccountOrigin::Recovered,
        ] {
            assert_eq!(IspAccountOrigin::parse(o.as_str()), Some(o));
        }
        assert_eq!(
            IspAccountState::parse("pending"),
            Some(IspAccountState::Pending)
        );
        assert_eq!(IspAccountState::parse("x"), None);
    }
}
