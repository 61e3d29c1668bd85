//! Interactive services providers beyond their credentials: the settings of a
//! provider entry (I1, I2, I4, I5), the ISP accounts of billing customers
//! (I3, I5) and what the providers send us (billing notifications, Alarm.net
//! callbacks) with its health.
//!
//! Everything that needs the provider is checked through `AdcApi` (plans,
//! permissions, creating and linking accounts); the storage is `IspStore`.
//! The wire form of the inbound payloads is not here: the HTTP layer keeps our
//! own (the real schemas are not public) in one module and hands over these types.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::adc::{
    AdcAccountAddress, AdcAddress, AdcApi, AdcBuilderProgram, AdcCentralStationInfo, AdcConnector,
    AdcCustomer, AdcCustomerId, AdcCustomerQuery, AdcError, AdcPackageId, AdcTarget,
    NewAdcCommitment, NewAdcCustomer,
};
use crate::billing::{BillingCustomer, BillingId, BillingSite, CustomerKind};
use crate::connection::{
    Connection, ConnectionId, ConnectionStatus, CredentialOwner, Endpoint, ProviderKind,
    ProviderSettings,
};
use crate::events::{types, NewEvent};
use crate::operations::OperationError;
use crate::store::{BillingStore, ConnectionStore, PageRequest, StoreError, StoreResult};
use crate::tenancy::{Caller, DealerId};
use crate::validation::ValidationError;
use crate::Page;

// ---- the provider entry's settings -------------------------------------------

/// A partial change of `ProviderSettings`; `None` leaves a field, `Some(None)` clears it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProviderSettingsPatch {
    pub default_service_plan: Option<Option<AdcPackageId>>,
    pub builder_program: Option<bool>,
    pub billing_notifications: Option<bool>,
    pub alarmnet_callback_url: Option<Option<Endpoint>>,
}

impl ProviderSettingsPatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Providers whose callbacks come through Alarm.net (the Honeywell-based ones).
pub fn uses_alarmnet_callbacks(provider: ProviderKind) -> bool {
    provider == ProviderKind::TotalConnect
}

fn not_alarm_com(connection: &Connection, what: &str) -> OperationError {
    OperationError::WrongProvider(format!(
        "connection '{}' is a {} connection; {what} is for alarm_com connections",
        connection.name.as_str(),
        connection.provider.as_str()
    ))
}

/// The settings `patch` leads to, after checking each changed field against
/// the provider: a default plan must be one of the provider's plans, and the
/// Builder Program and billing notifications are turned on only when the
/// provider login holds the permission they need.
pub async fn settings_after(
    connections: &dyn ConnectionStore,
    adc: &dyn AdcConnector,
    dealer: &DealerId,
    connection: &Connection,
    patch: &ProviderSettingsPatch,
) -> Result<ProviderSettings, OperationError> {
    let mut next = connection.settings.clone();
    let needs_alarm_com = matches!(patch.default_service_plan, Some(Some(_)))
        || patch.builder_program == Some(true)
        || patch.billing_notifications == Some(true);
    if needs_alarm_com && connection.provider != ProviderKind::AlarmCom {
        return Err(not_alarm_com(
            connection,
            "a default service plan, the Builder Program or billing notifications",
        ));
    }
    if matches!(patch.alarmnet_callback_url, Some(Some(_)))
        && !uses_alarmnet_callbacks(connection.provider)
    {
        return Err(OperationError::WrongProvider(format!(
            "connection '{}' is a {} connection; Alarm.net callbacks are for the Honeywell-based providers (total_connect)",
            connection.name.as_str(),
            connection.provider.as_str()
        )));
    }
    if needs_alarm_com {
        let api = adc_as_dealer(connections, adc, dealer, connection).await?;
        if let Some(Some(plan)) = patch.default_service_plan {
            let plans = api
                .service_plans()
                .await
                .map_err(|e| provider_error(connection, e))?;
            if !plans.iter().any(|p| p.package_id == plan) {
                let known = plans
                    .iter()
                    .map(|p| format!("{} ({})", p.package_id, p.name))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(ValidationError::field(
                    "settings.default_service_plan",
                    format!("{plan} is not one of the provider's service plans: {known}"),
                )
                .into());
            }
        }
        if patch.builder_program == Some(true) || patch.billing_notifications == Some(true) {
            let permissions = api
                .permissions()
                .await
                .map_err(|e| provider_error(connection, e))?;
            if patch.builder_program == Some(true) && !permissions.builder_program {
                return Err(missing_builder_permission(connection));
            }
            if patch.billing_notifications == Some(true) && !permissions.billing {
                return Err(missing_billing_permission(connection));
            }
        }
    }
    if let Some(plan) = patch.default_service_plan {
        next.default_service_plan = plan;
    }
    if let Some(on) = patch.builder_program {
        next.builder_program = on;
    }
    if let Some(on) = patch.billing_notifications {
        next.billing_notifications = on;
    }
    if let Some(url) = &patch.alarmnet_callback_url {
        next.alarmnet_callback_url = url.clone();
    }
    Ok(next)
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
                "{provider} refused the stored credentials of connection '{}'; an admin sets new ones with PUT .../credentials/dealer",
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
        other => OperationError::Provider {
            connection: connection.name.as_str().to_owned(),
            timeout: matches!(other, AdcError::Timeout),
            message: other.to_string(),
        },
    }
}

/// `AdcApi` with the connection's dealer credential.
async fn adc_as_dealer(
    connections: &dyn ConnectionStore,
    adc: &dyn AdcConnector,
    dealer: &DealerId,
    connection: &Connection,
) -> Result<Arc<dyn AdcApi>, OperationError> {
    if connection.provider != ProviderKind::AlarmCom {
        return Err(not_alarm_com(connection, "this"));
    }
    let credential = connections
        .credential(dealer, connection.id, &CredentialOwner::Dealer)
        .await?
        .ok_or_else(|| {
            OperationError::MissingCredentials(format!(
                "connection '{}' has no credentials yet; an admin sets them with PUT .../credentials/dealer",
                connection.name.as_str()
            ))
        })?;
    Ok(adc.connect(AdcTarget {
        key: connection.id.to_string(),
        endpoint: connection.endpoint.url().clone(),
        username: credential.username,
        password: credential.password.expose().to_owned(),
    }))
}

// ---- ISP accounts --------------------------------------------------------------

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

/// The Builder Programs of each connection, kept briefly (I5): the list
/// changes rarely, and a form's dropdown and the check of the program chosen
/// ask for it one after the other.
pub struct BuilderProgramCache {
    ttl: std::time::Duration,
    entries: std::sync::Mutex<
        std::collections::HashMap<ConnectionId, (std::time::Instant, Vec<AdcBuilderProgram>)>,
    >,
}

impl BuilderProgramCache {
    pub fn new(ttl: std::time::Duration) -> Self {
        Self {
            ttl,
            entries: std::sync::Mutex::default(),
        }
    }

    fn get(&self, id: ConnectionId) -> Option<Vec<AdcBuilderProgram>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&id)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, list)| list.clone())
    }

    fn put(&self, id: ConnectionId, list: Vec<AdcBuilderProgram>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
        entries.insert(id, (std::time::Instant::now(), list));
    }
}

impl Default for BuilderProgramCache {
    fn default() -> Self {
        Self::new(std::time::Duration::from_secs(60))
    }
}

/// The Builder Programs of an Alarm.com connection, from the cache or from
/// Alarm.com (`GetBuilderProgramList`).
pub async fn builder_programs(
    ports: &IspPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
) -> Result<Vec<AdcBuilderProgram>, OperationError> {
    let connection = ports
        .connections
        .connection(&caller.dealer, connection_id)
        .await
        .map_err(not_found_as("no such connection".into()))?;
    let api = adc_as_dealer(ports.connections, ports.adc, &caller.dealer, &connection).await?;
    programs_of(ports, &connection, api.as_ref()).await
}

async fn programs_of(
    ports: &IspPorts<'_>,
    connection: &Connection,
    api: &dyn AdcApi,
) -> Result<Vec<AdcBuilderProgram>, OperationError> {
    if let Some(list) = ports.builder_programs.get(connection.id) {
        return Ok(list);
    }
    let list = api
        .builder_programs()
        .await
        .map_err(|e| provider_error(connection, e))?;
    ports.builder_programs.put(connection.id, list.clone());
    Ok(list)
}

/// Whether `id` is one of `programs`; the refusal lists the choices.
pub fn check_builder_program(
    id: i64,
    programs: &[AdcBuilderProgram],
) -> Result<(), ValidationError> {
    if programs.iter().any(|p| p.id == id) {
        return Ok(());
    }
    let known = programs
        .iter()
        .map(|p| format!("{} ({})", p.id, p.name))
        .collect::<Vec<_>>()
        .join(", ");
    Err(ValidationError::field(
        "builder_program_id",
        if known.is_empty() {
            format!("{id} is not a Builder Program of the Alarm.com account, which has none")
        } else {
            format!("{id} is not a Builder Program of the Alarm.com account: {known}")
        },
    ))
}

/// A reservation older than this belongs to a request that died.
pub fn pending_timeout() -> chrono::Duration {
    chrono::Duration::minutes(5)
}

/// What to do for a billing customer at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionAction {
    /// A new customer account; a Builder Program customer when
    /// `builder_program_id` is given.
    CreateCustomer {
        builder_program_id: Option<i64>,
        login_name: Option<String>,
    },
    /// A Builder Program commitment.
    CreateCommitment { builder_program_id: i64 },
    /// An account that exists already.
    Link { customer_id: AdcCustomerId },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionRequest {
    pub billing_customer_id: BillingId,
    /// The site whose address is the installation address (the customer's own otherwise).
    pub site_id: Option<BillingId>,
    /// Else the connection's default service plan.
    pub package_id: Option<AdcPackageId>,
    pub panel_type: String,
    pub modem_serial_number: String,
    pub action: ProvisionAction,
}

/// An installation address from a billing site or customer.
fn address_of(address1: &str, address2: &str, city: &str, state: &str, zip: &str) -> AdcAddress {
    AdcAddress {
        street1: address1.to_owned(),
        street2: address2.to_owned(),
        city: city.to_owned(),
        state: state.to_owned(),
        zip: zip.to_owned(),
        country_id: String::new(),
    }
}

/// The provider account a billing customer (and the site it is installed at) maps to.
pub fn new_adc_customer(
    customer: &BillingCustomer,
    site: Option<&BillingSite>,
    package_id: AdcPackageId,
    login_name: &str,
    builder_program_id: Option<i64>,
) -> NewAdcCustomer {
    let f = &customer.fields;
    let own = address_of(&f.address1, &f.address2, &f.city, &f.state, &f.zip);
    let installation = match site {
        Some(s) => {
            let s = &s.fields;
            address_of(&s.address1, &s.address2, &s.city, &s.state, &s.zip)
        }
        None => own.clone(),
    };
    NewAdcCustomer {
        account_address: AdcAccountAddress {
            first_name: f.first_name.clone(),
            last_name: f.last_name.clone(),
            company_name: match f.kind {
                CustomerKind::Business => f.business_name.clone(),
                CustomerKind::Person => String::new(),
            },
            phone: f.phone.clone(),
            address: own,
        },
        email: f.email.clone(),
        phone: f.phone.clone(),
        dealer_customer_id: customer.id.as_str().to_owned(),
        desired_login_name: login_name.to_owned(),
        installation_address: installation,
        // The fields the import maps the other way: where the panel reports,
        // and the two-way voice service billing sells.
        central_station: AdcCentralStationInfo {
            account_number: f.account_number.trim().to_owned(),
            receiver_number: f.receiver_number.trim().to_owned(),
        },
        add_on_features: add_ons_of(customer),
        package_id: Some(package_id),
        builder_program_id,
        ..NewAdcCustomer::default()
    }
}

/// The add-on features a billing customer's fields call for.
pub fn add_ons_of(customer: &BillingCustomer) -> Vec<String> {
    let mut add_ons = Vec::new();
    if customer.fields.two_way_voice {
        add_ons.push(crate::adc::TWO_WAY_VOICE.to_owned());
    }
    add_ons
}

/// A login name ADC would take: what was asked, else the customer's email.
fn login_name_for(
    asked: Option<&str>,
    customer: &BillingCustomer,
) -> Result<String, ValidationError> {
    let name = asked
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(customer.fields.email.trim());
    if name.is_empty() {
        return Err(ValidationError::field(
            "login_name",
            "give the customer's Alarm.com login name (the billing customer has no email to use)",
        ));
    }
    if name.chars().count() > 100 || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ValidationError::field(
            "login_name",
            "must be 1 to 100 characters without spaces",
        ));
    }
    Ok(name.to_owned())
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

/// Creates a customer or a commitment at the provider for a billing customer,
/// or links one that exists, and records the account. Never two accounts for
/// one billing customer on one connection: the account is reserved before the
/// provider is called, and a create whose answer was lost is found again by
/// the billing id it carries.
pub async fn provision(
    ports: &IspPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    request: ProvisionRequest,
) -> Result<IspAccount, OperationError> {
    let dealer = &caller.dealer;
    let connection = ports
        .connections
        .connection(dealer, connection_id)
        .await
        .map_err(not_found_as("no such connection".into()))?;
    if connection.provider != ProviderKind::AlarmCom {
        return Err(not_alarm_com(
            &connection,
            "creating or linking ISP accounts",
        ));
    }
    require_active(&connection)?;
    let customer = ports
        .billing
        .customer(dealer, &request.billing_customer_id)
        .await
        .map_err(|e| -> OperationError {
            match e {
                StoreError::NotFound => ValidationError::field(
                    "billing_customer_id",
                    format!("no billing customer '{}'", request.billing_customer_id),
                )
                .into(),
                other => other.into(),
            }
        })?;
    let site = match &request.site_id {
        None => None,
        Some(id) => {
            let site = ports.billing.site(dealer, id).await.map_err(|e| match e {
                StoreError::NotFound => {
                    ValidationError::field("site_id", format!("no billing site '{id}'")).into()
                }
                other => OperationError::from(other),
            })?;
            if site.fields.customer_id.as_ref() != Some(&customer.id) {
                return Err(ValidationError::field(
                    "site_id",
                    format!("site '{id}' does not belong to customer '{}'", customer.id),
                )
                .into());
            }
            Some(site)
        }
    };
    let builder_program_id = match &request.action {
        ProvisionAction::CreateCustomer {
            builder_program_id, ..
        } => *builder_program_id,
        ProvisionAction::CreateCommitment { builder_program_id } => Some(*builder_program_id),
        ProvisionAction::Link { .. } => None,
    };
    let package_id = match request.action {
        ProvisionAction::Link { .. } => None,
        _ => Some(
            request
                .package_id
                .or(connection.settings.default_service_plan)
                .ok_or_else(|| {
                    ValidationError::field(
                        "package_id",
                        "give a package_id, or have an admin set the connection's default service plan",
                    )
                })?,
        ),
    };
    let login_name = match &request.action {
        ProvisionAction::CreateCustomer { login_name, .. } => {
            login_name_for(login_name.as_deref(), &customer)?
        }
        _ => String::new(),
    };
    let api = adc_as_dealer(ports.connections, ports.adc, dealer, &connection).await?;
    if builder_program_id.is_some() {
        if !connection.settings.builder_program {
            return Err(OperationError::Conflict {
                code: "builder_program_off",
                message: format!(
                    "the Builder Program is not turned on for connection '{}'; an admin sets settings.builder_program",
                    connection.name.as_str()
                ),
            });
        }
        let permissions = api
            .permissions()
            .await
            .map_err(|e| provider_error(&connection, e))?;
        if !permissions.builder_program {
            return Err(missing_builder_permission(&connection));
        }
        if let Some(program) = builder_program_id {
            let programs = programs_of(ports, &connection, api.as_ref()).await?;
            check_builder_program(program, &programs)?;
        }
    }
    let kind = match request.action {
        ProvisionAction::CreateCommitment { .. } => IspAccountKind::Commitment,
        _ => IspAccountKind::Customer,
    };
    let reserved = ports
        .accounts
        .reserve_isp_account(
            dealer,
            NewIspAccount {
                id: IspAccountId::new(),
                connection_id,
                billing_customer_id: customer.id.clone(),
                kind,
                origin: match request.action {
                    ProvisionAction::Link { .. } => IspAccountOrigin::Linked,
                    _ => IspAccountOrigin::Created,
                },
                builder_program_id,
                created_by: caller.user.0.clone(),
            },
            Utc::now() - pending_timeout(),
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(message) => OperationError::Conflict {
                code: "isp_account_exists",
                message,
            },
            other => other.into(),
        })?;
    let made = provision_reserved(
        api.as_ref(),
        &connection,
        &customer,
        site.as_ref(),
        &request,
        package_id,
        &login_name,
        builder_program_id,
    )
    .await;
    let done = match made {
        Ok(done) => done,
        Err(e) => {
            // Nothing to keep; a create that did land is recovered next time.
            if let Err(release) = ports
                .accounts
                .release_isp_account(dealer, reserved.id)
                .await
            {
                tracing::warn!(error = %release, account = %reserved.id, "could not release an ISP account reservation");
            }
            return Err(e);
        }
    };
    match ports
        .accounts
        .complete_isp_account(dealer, reserved.id, done)
        .await
    {
        Ok(account) => {
            tracing::info!(account = %account.id, connection = %connection_id, external_id = ?account.external_id, origin = account.origin.as_str(), "ISP account recorded");
            Ok(account)
        }
        Err(e) => {
            let _ = ports
                .accounts
                .release_isp_account(dealer, reserved.id)
                .await;
            Err(match e {
                StoreError::Conflict(message) => OperationError::Conflict {
                    code: "isp_account_exists",
                    message,
                },
                other => other.into(),
            })
        }
    }
}

/// An account ADC already holds for this billing customer (its `DealerCustomerId`).
async fn existing_for_billing_id(
    api: &dyn AdcApi,
    connection: &Connection,
    billing_id: &BillingId,
) -> Result<Option<AdcCustomer>, OperationError> {
    let ids = api
        .customer_ids(&AdcCustomerQuery {
            alternate_id: Some(billing_id.as_str().to_owned()),
            ..AdcCustomerQuery::default()
        })
        .await
        .map_err(|e| provider_error(connection, e))?;
    for id in ids.into_iter().take(5) {
        let customer = api
            .customer(id)
            .await
            .map_err(|e| provider_error(connection, e))?;
        if customer.dealer_customer_id == billing_id.as_str() && !customer.is_terminated {
            return Ok(Some(customer));
        }
    }
    Ok(None)
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

#[allow(clippy::too_many_arguments)]
async fn provision_reserved(
    api: &dyn AdcApi,
    connection: &Connection,
    customer: &BillingCustomer,
    site: Option<&BillingSite>,
    request: &ProvisionRequest,
    package_id: Option<AdcPackageId>,
    login_name: &str,
    builder_program_id: Option<i64>,
) -> Result<CompletedIspAccount, OperationError> {
    if let ProvisionAction::Link { customer_id } = request.action {
        let found = api.customer(customer_id).await.map_err(|e| match e {
            AdcError::NotFound(_) => ValidationError::field(
                "customer_id",
                format!("Alarm.com has no customer {customer_id}"),
            )
            .into(),
            other => provider_error(connection, other),
        })?;
        if found.is_terminated {
            return Err(ValidationError::field(
                "customer_id",
                format!("Alarm.com customer {customer_id} is terminated"),
            )
            .into());
        }
        return Ok(completed_from(&found, IspAccountOrigin::Linked));
    }
    if let Some(existing) = existing_for_billing_id(api, connection, &customer.id).await? {
        return Ok(completed_from(&existing, IspAccountOrigin::Recovered));
    }
    let package_id = package_id.unwrap_or(AdcPackageId(0));
    let mut new = new_adc_customer(customer, site, package_id, login_name, builder_program_id);
    new.panel_type = request.panel_type.clone();
    new.modem_serial_number = request.modem_serial_number.clone();
    match request.action {
        ProvisionAction::CreateCommitment { builder_program_id } => {
            new.desired_login_name.clear();
            let made = api
                .create_commitment(&NewAdcCommitment {
                    builder_program_id,
                    customer: new,
                })
                .await
                .map_err(|e| provider_error(connection, e))?;
            Ok(CompletedIspAccount {
                external_id: made.customer_id.to_string(),
                kind: IspAccountKind::Commitment,
                origin: IspAccountOrigin::Created,
                builder_program_id: Some(builder_program_id),
                commitment_id: made.commitment_id,
                package_id: Some(package_id),
                login_name: String::new(),
            })
        }
        _ => {
            let id = api
                .create_customer(&new)
                .await
                .map_err(|e| provider_error(connection, e))?;
            Ok(CompletedIspAccount {
                external_id: id.to_string(),
                kind: IspAccountKind::Customer,
                origin: IspAccountOrigin::Created,
                builder_program_id,
                commitment_id: None,
                package_id: Some(package_id),
                login_name: login_name.to_owned(),
            })
        }
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
    let api = adc_as_dealer(ports.connections, ports.adc, dealer, &connection).await?;
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
        let api = adc_as_dealer(ports.connections, ports.adc, dealer, &connection).await?;
        api.customer(customer_id)
            .await
            .map(|c| ProviderAccount::from(&c))
            .map_err(|e| provider_error(&connection, e))
    };
    let provider = read.await.map_err(|e| e.to_string());
    Ok((account, Some(provider)))
}

// ---- what providers send us ------------------------------------------------------

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
    let asked = match adc_as_dealer(connections, adc, &caller.dealer, &connection).await {
        Ok(api) => api
            .permissions()
            .await
            .map_err(|e| provider_error(&connection, e).to_string()),
        Err(OperationError::MissingCredentials(why)) => Err(why),
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
    use crate::billing::{BillingRecord, CustomerFields, SiteFields};

    fn customer() -> BillingCustomer {
        BillingRecord {
            id: BillingId::parse("C-1").unwrap(),
            dealer: DealerId("d".into()),
            version: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            fields: CustomerFields {
                kind: CustomerKind::Business,
                first_name: "Ada".into(),
                last_name: "Lovelace".into(),
                business_name: "Engines Ltd".into(),
                phone: "555-0100".into(),
                email: "ada@example.com".into(),
                address1: "1 Main St".into(),
                city: "Springfield".into(),
                state: "IL".into(),
                zip: "62701".into(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn a_billing_customer_maps_onto_a_new_account() {
        let c = customer();
        let new = new_adc_customer(&c, None, AdcPackageId(3), "ada", None);
        assert_eq!(new.dealer_customer_id, "C-1");
        assert_eq!(new.account_address.company_name, "Engines Ltd");
        assert_eq!(new.account_address.address.street1, "1 Main St");
        assert_eq!(new.installation_address, new.account_address.address);
        assert_eq!(new.package_id, Some(AdcPackageId(3)));
        assert_eq!(new.desired_login_name, "ada");

        let site = BillingRecord {
            id: BillingId::parse("S-1").unwrap(),
            dealer: DealerId("d".into()),
            version: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            fields: SiteFields {
                customer_id: Some(c.id.clone()),
                address1: "9 Lake Rd".into(),
                city: "Shelbyville".into(),
                ..Default::default()
            },
        };
        let new = new_adc_customer(&c, Some(&site), AdcPackageId(3), "ada", Some(7));
        assert_eq!(new.installation_address.street1, "9 Lake Rd");
        assert_eq!(new.account_address.address.street1, "1 Main St");
        assert_eq!(new.builder_program_id, Some(7));
    }

    #[test]
    fn login_names_default_to_the_email() {
        let mut c = customer();
        assert_eq!(login_name_for(None, &c).unwrap(), "ada@example.com");
        assert_eq!(login_name_for(Some(" ada1 "), &c).unwrap(), "ada1");
        assert!(login_name_for(Some("a b"), &c).is_err());
        c.fields.email.clear();
        assert!(login_name_for(None, &c).is_err());
    }

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
