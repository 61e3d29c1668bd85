//! Interactive services providers beyond their credentials: the settings of a
//! provider entry (I1, I2, I4, I5), the ISP accounts of billing customers
//! (I3, I5) and what the providers send us (billing notifications, Alarm.net
//! callbacks) with its health.
//!
//! Everything that needs the provider is checked through `AdcApi` (plans,
//! permissions, creating and linking accounts); the storage is `IspStore`.
//! The wire form of the inbound payloads is not here: the HTTP layer keeps our
//! own (the real schemas are not public) in one module and hands over these types.
//!
//! By use case: [`settings`] changes a provider entry's settings; [`accounts`]
//! holds the ISP accounts, their plans and what the provider holds for them;
//! [`provision`] creates or links one; [`builder_programs`] lists and checks
//! Builder Programs; [`notices`] receives what providers send and reports on
//! it. This module holds the storage port and what they share: Alarm.com's
//! failures in terms of an operation (reaching it is `crate::upstream`'s).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::adc::{AdcConnector, AdcError, AdcPackageId};
use crate::billing::BillingId;
use crate::connection::{Connection, ConnectionId, ConnectionStatus};
use crate::events::NewEvent;
use crate::operations::OperationError;
use crate::store::{BillingStore, ConnectionStore, PageRequest, StoreError, StoreResult};
use crate::tenancy::DealerId;
use crate::Page;

pub mod accounts;
pub mod builder_programs;
pub mod notices;
pub mod provision;
pub mod settings;

pub(crate) use accounts::completed_from;
pub use accounts::{
    change_service_plan, isp_account_with_provider, pending_timeout, CompletedIspAccount,
    IspAccount, IspAccountId, IspAccountKind, IspAccountOrigin, IspAccountState, NewIspAccount,
    ProviderAccount,
};
pub use builder_programs::{builder_programs, check_builder_program, BuilderProgramCache};
pub use notices::{
    billing_notifications_report, callback_health, receive_alarmnet_callback,
    receive_billing_notice, sources, AlarmNetCallback, BillingNotice, BillingNotificationsReport,
    CallbackHealth, CallbackHealthStatus, CallbackStats, NoticeReceipt, PaymentMethodKind,
    PaymentMethodSummary, PermissionCheck,
};
pub use provision::{add_ons_of, new_adc_customer, provision, ProvisionAction, ProvisionRequest};
pub use settings::{settings_after, uses_alarmnet_callbacks, ProviderSettingsPatch};

/// ISP accounts and inbound provider callbacks. `link-store` implements it on
/// both databases; unique constraints on (connection, billing customer) and
/// (connection, external id) back the one-account-each-way rule.
#[async_trait]
pub trait IspStore: Send + Sync {
    /// Inserts a pending account. `Conflict` naming the account when the
    /// billing customer has one on the connection, unless it is a pending one
    /// last touched before `stale_before` (its request died): that one is
    /// taken over and returned, with its id.
    async fn reserve_isp_account(
        &self,
        dealer: &DealerId,
        new: NewIspAccount,
        stale_before: DateTime<Utc>,
    ) -> StoreResult<IspAccount>;
    /// Makes a pending account active. `Conflict` when the external account
    /// is already linked to another billing customer on the connection.
    async fn complete_isp_account(
        &self,
        dealer: &DealerId,
        id: IspAccountId,
        done: CompletedIspAccount,
    ) -> StoreResult<IspAccount>;
    /// Drops a pending account (the provider call failed); active ones stay.
    async fn release_isp_account(&self, dealer: &DealerId, id: IspAccountId) -> StoreResult<()>;
    async fn isp_account(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        id: IspAccountId,
    ) -> StoreResult<IspAccount>;
    /// Ordered by id; only those of one billing customer when given.
    async fn list_isp_accounts(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        billing_customer_id: Option<&BillingId>,
        page: PageRequest,
    ) -> StoreResult<Page<IspAccount>>;
    /// The active account of a provider customer, if linked.
    async fn isp_account_by_external(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        external_id: &str,
    ) -> StoreResult<Option<IspAccount>>;
    /// Records the plan now in force; checks `expected_version` when given.
    async fn set_isp_account_plan(
        &self,
        dealer: &DealerId,
        id: IspAccountId,
        package_id: AdcPackageId,
        expected_version: Option<i64>,
    ) -> StoreResult<IspAccount>;

    /// Stores a verified callback once per (connection, event id), with its
    /// change-feed events, in one transaction, and logs it under `source`.
    /// `Ok(false)`: a repeat, logged as a duplicate, nothing else written.
    async fn receive_provider_callback(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        source: &str,
        event_id: &str,
        payload: serde_json::Value,
        events: Vec<NewEvent>,
    ) -> StoreResult<bool>;
    /// Logs a refused callback: its reason, never its body.
    async fn record_rejected_callback(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        source: &str,
        reason: &str,
    ) -> StoreResult<()>;
    /// Counts since `since`; the last-received fields look at all time.
    async fn callback_stats(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        source: &str,
        since: DateTime<Utc>,
    ) -> StoreResult<CallbackStats>;
}

/// What provisioning works with.
pub struct IspPorts<'a> {
    pub connections: &'a dyn ConnectionStore,
    pub billing: &'a dyn BillingStore,
    pub accounts: &'a dyn IspStore,
    pub adc: &'a dyn AdcConnector,
    pub builder_programs: &'a BuilderProgramCache,
}

fn not_alarm_com(connection: &Connection, what: &str) -> OperationError {
    OperationError::WrongProvider(format!(
        "connection '{}' is a {} connection; {what} is for alarm_com connections",
        connection.name.as_str(),
        connection.provider.as_str()
    ))
}

fn missing_builder_permission(connection: &Connection) -> OperationError {
    OperationError::Conflict {
        code: "provider_permission",
        message: format!(
            "the Alarm.com login of connection '{}' may not use the Builder Program; give it the Builder Program custom role (or the legacy Dealer Administrator and Manage Builder Program roles) in Alarm.com, then try again",
            connection.name.as_str()
        ),
    }
}

fn missing_billing_permission(connection: &Connection) -> OperationError {
    OperationError::Conflict {
        code: "provider_permission",
        message: format!(
            "the Alarm.com account of connection '{}' lacks the billing integration permission (setSecurityTraxSettings); ask your Alarm.com Technical Account Manager to add it, then turn billing notifications on again",
            connection.name.as_str()
        ),
    }
}

/// A provider failure in terms of this operation. Unlike a credential check,
/// a refused login here means the stored credential went stale.
fn provider_error(connection: &Connection, e: AdcError) -> OperationError {
    let provider = connection.provider.describe().name;
    match e {
        AdcError::Unauthorized => OperationError::Conflict {
            code: "provider_credentials",
            message: format!(
                "{provider} refused the stored credentials of connection '{}'; an admin sets new ones",
                connection.name.as_str()
            ),
        },
        AdcError::PermissionDenied { message } => OperationError::Conflict {
            code: "provider_permission",
            message: format!("{provider} denied the permission: {message}"),
        },
        AdcError::Rejected { message } => OperationError::Conflict {
            code: "provider_rejected",
            message: format!("{provider} refused the request: {message}"),
        },
        AdcError::NotFound(message) => OperationError::NotFound(format!(
            "{provider} has no such record: {message}"
        )),
        // Permanent: retrying cannot help until the endpoint or the policy changes.
        AdcError::EgressRefused(message) => OperationError::Conflict {
            code: "egress_refused",
            message: format!("{provider} was not called: {message}"),
        },
        other => crate::operations::provider_failure(connection, &other),
    }
}

fn require_active(connection: &Connection) -> Result<(), OperationError> {
    if connection.status == ConnectionStatus::Inactive {
        return Err(OperationError::Conflict {
            code: "connection_inactive",
            message: format!(
                "connection '{}' is inactive; an admin sets its status to active first",
                connection.name.as_str()
            ),
        });
    }
    Ok(())
}

fn not_found_as(what: String) -> impl Fn(StoreError) -> OperationError {
    move |e| match e {
        StoreError::NotFound => OperationError::NotFound(what.clone()),
        other => other.into(),
    }
}
