//! Setting up a connection (S1, S2, I1): the rules of adding and changing
//! one (default name, Auto Sync on by default, providers that take dealer
//! credentials only, a dealer credential checked where it will be used) and
//! the connection test; the credentials it is called with, dealer, per-user
//! and inbound, are in [`credentials`]. The types are in [`crate::connection`];
//! the HTTP layer parses, checks the egress policy and calls these.

use crate::adc::AdcConnector;
use crate::connection::{
    AuthMode, ConflictPolicy, Connection, ConnectionChanges, ConnectionId, ConnectionName,
    ConnectionStatus, ConnectionUpdate, Endpoint, NewConnection, ProviderKind,
};
use crate::isp::ProviderSettingsPatch;
use crate::operations::{self, ConnectionTestReport, OperationError, TestOutcome};
use crate::stages::StagesConnector;
use crate::store::{ConnectionStore, StoreError};
use crate::tenancy::{Caller, DealerId};
use crate::validation::ValidationError;

mod credentials;

pub use credentials::*;

/// What the setup of a connection reaches: its store and the upstreams that
/// check credentials (Alarm.com when saved, Stages for the migration probe).
#[derive(Clone, Copy)]
pub struct ConnectionPorts<'a> {
    pub connections: &'a dyn ConnectionStore,
    pub stages: &'a dyn StagesConnector,
    pub adc: &'a dyn AdcConnector,
}

/// Why a setup step was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SetupError {
    /// Per-user credentials on a connection that uses one dealer credential.
    #[error("connection '{connection}' uses one dealer credential, not per-user ones")]
    DealerAuthMode { connection: String },
    /// The caller stored no credential of their own on this connection.
    #[error("you have not stored credentials for this connection")]
    NoOwnCredential,
    #[error(transparent)]
    Operation(#[from] OperationError),
}

impl From<ValidationError> for SetupError {
    fn from(v: ValidationError) -> Self {
        Self::Operation(v.into())
    }
}

/// A store failure of a request about one connection: "not found" means
/// that connection (of the caller's dealer) does not exist.
pub fn missing_connection(e: StoreError) -> OperationError {
    match e {
        StoreError::NotFound => OperationError::NotFound("no such connection".to_owned()),
        other => other.into(),
    }
}

/// An operation's failure, with a store "not found" read as the connection's.
pub fn missing_connection_in(e: OperationError) -> OperationError {
    match e {
        OperationError::Store(s) => missing_connection(s),
        other => other,
    }
}

// ---- adding and changing a connection ----

/// A connection as a caller asks for it; `None` takes the default.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionRequest {
    pub provider: ProviderKind,
    /// Defaults to the provider's name ("Stages").
    pub name: Option<String>,
    pub endpoint: String,
    pub auth_mode: Option<AuthMode>,
    /// Default on.
    pub auto_sync: Option<bool>,
    pub conflict_policy: Option<ConflictPolicy>,
    pub status: Option<ConnectionStatus>,
    /// Stages only; default on there (S20).
    pub migrate_on_connect: Option<bool>,
}

/// The connection `request` makes for `dealer`, with S1's defaults, or
/// every field it breaks a rule of.
pub fn new_connection(
    dealer: DealerId,
    request: ConnectionRequest,
) -> Result<NewConnection, ValidationError> {
    let provider = request.provider;
    let mut v = ValidationError::default();
    let name = v.check(
        "name",
        ConnectionName::parse(
            request
                .name
                .as_deref()
                .unwrap_or(provider.describe().default_connection_name),
        ),
    );
    let endpoint = v.check("endpoint", Endpoint::parse(&request.endpoint));
    let auth_mode = request.auth_mode.unwrap_or_default();
    if let Err(why) = allows_auth_mode(provider, auth_mode) {
        v.push("auth_mode", why);
    }
    let migrate_on_connect = match (provider, request.migrate_on_connect) {
        (ProviderKind::Stages, on) => on.unwrap_or(true),
        (_, Some(true)) => {
            v.push("migrate_on_connect", STAGES_ONLY);
            false
        }
        (_, _) => false,
    };
    v.clone().into_result()?;
    let (Some(name), Some(endpoint)) = (name, endpoint) else {
        return Err(v);
    };
    Ok(NewConnection {
        dealer,
        name,
        provider,
        endpoint,
        auth_mode,
        auto_sync: request.auto_sync.unwrap_or(true),
        conflict_policy: request.conflict_policy.unwrap_or_default(),
        status: request.status.unwrap_or_default(),
        migrate_on_connect,
    })
}

const STAGES_ONLY: &str = "applies to Stages connections only";

/// Only providers whose users may hold their own login take per-user credentials.
fn allows_auth_mode(provider: ProviderKind, mode: AuthMode) -> Result<(), String> {
    if mode == AuthMode::User && !provider.describe().supports_user_auth {
        return Err(format!(
            "{} connections take dealer credentials only",
            provider.as_str()
        ));
    }
    Ok(())
}

/// A change of a connection as a caller asks for it; `None` leaves a field.
/// The parts parsed apart (settings, credential) come with their refusals,
/// which join the others.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionEdit {
    pub name: Option<String>,
    pub endpoint: Option<String>,
    pub auth_mode: Option<AuthMode>,
    pub auto_sync: Option<bool>,
    pub conflict_policy: Option<ConflictPolicy>,
    pub status: Option<ConnectionStatus>,
    pub migrate_on_connect: Option<bool>,
    pub settings: Option<Result<ProviderSettingsPatch, ValidationError>>,
    /// Stored as the dealer credential with the change.
    pub dealer_credentials: Option<Result<NewCredential, ValidationError>>,
}

/// A change whose fields passed their own rules; the rules that depend on
/// the stored connection are [`update_connection`]'s.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedEdit {
    pub changes: ConnectionChanges,
    pub settings: Option<ProviderSettingsPatch>,
    pub dealer_credential: Option<NewCredential>,
}

impl CheckedEdit {
    /// Where the connection will be called after the change, when it moves.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        self.changes.endpoint.as_ref()
    }
}

/// Checks each field of `edit`, naming every refused one at once.
pub fn checked_edit(edit: ConnectionEdit) -> Result<CheckedEdit, ValidationError> {
    let mut v = ValidationError::default();
    let dealer_credential = edit.dealer_credentials.and_then(|c| {
        c.map_err(|e| v.errors.extend(e.prefixed("dealer_credentials.").errors))
            .ok()
    });
    let changes = ConnectionChanges {
        name: edit
            .name
            .as_deref()
            .and_then(|n| v.check("name", ConnectionName::parse(n))),
        endpoint: edit
            .endpoint
            .as_deref()
            .and_then(|e| v.check("endpoint", Endpoint::parse(e))),
        auth_mode: edit.auth_mode,
        auto_sync: edit.auto_sync,
        conflict_policy: edit.conflict_policy,
        status: edit.status,
        migrate_on_connect: edit.migrate_on_connect,
        settings: None,
    };
    let settings = edit
        .settings
        .and_then(|s| s.map_err(|e| v.errors.extend(e.errors)).ok());
    v.into_result()?;
    Ok(CheckedEdit {
        changes,
        settings,
        dealer_credential,
    })
}

/// Applies a checked change (S1) as `caller`, when the stored version is
/// `expected` (if given): a dealer credential that comes with it is checked
/// against the provider where it will be used, settings against the
/// provider, and the provider-bound rules against the stored connection.
/// A Stages connection whose dealer credential was set may start its
/// migration (S20).
pub async fn update_connection(
    ports: ConnectionPorts<'_>,
    caller: &Caller,
    id: ConnectionId,
    edit: CheckedEdit,
    expected: Option<i64>,
) -> Result<ConnectionUpdate, SetupError> {
    let CheckedEdit {
        mut changes,
        settings,
        dealer_credential,
    } = edit;
    let settings = settings.filter(|p| !p.is_empty());
    let needs_current = dealer_credential.is_some()
        || settings.is_some()
        || changes.auth_mode == Some(AuthMode::User)
        || changes.migrate_on_connect == Some(true);
    if needs_current {
        // One read serves every rule below that depends on the stored connection.
        let current = ports
            .connections
            .connection(&caller.dealer, id)
            .await
            .map_err(missing_connection)?;
        if let Some(credential) = &dealer_credential {
            check_where_used(ports, &current, &changes, credential).await?;
        }
        if let Some(patch) = settings {
            if expected.is_some_and(|v| v != current.version) {
                return Err(OperationError::Store(StoreError::VersionMismatch).into());
            }
            changes.settings = Some(
                crate::isp::settings_after(ports.connections, ports.adc, &current, &patch).await?,
            );
        }
        provider_rules(&current, &changes)?;
    }
    let credential_set = dealer_credential.is_some();
    let mut updated = ports
        .connections
        .update_connection_as(
            &caller.dealer,
            id,
            changes,
            expected,
            dealer_credential.map(|c| (c.username, c.password)),
            &caller.user.0,
        )
        .await
        .map_err(missing_connection)?;
    if updated.credentials_dropped {
        tracing::info!(connection_id = %id, "endpoint moved to another server; its credentials were dropped");
    }
    if credential_set {
        updated.connection = migrate_if_working(ports, caller, updated.connection).await;
    }
    Ok(updated)
}

/// A dealer credential given with a change is checked where it will be
/// used: at the new endpoint when the change moves it.
async fn check_where_used(
    ports: ConnectionPorts<'_>,
    current: &Connection,
    changes: &ConnectionChanges,
    credential: &NewCredential,
) -> Result<(), OperationError> {
    let mut at = current.clone();
    if let Some(endpoint) = &changes.endpoint {
        at.endpoint = endpoint.clone();
    }
    operations::check_provider_credentials(
        ports.adc,
        &at,
        &credential.username,
        &credential.password,
    )
    .await?;
    Ok(())
}

/// The rules of a change that depend on the connection's provider.
fn provider_rules(
    current: &Connection,
    changes: &ConnectionChanges,
) -> Result<(), ValidationError> {
    if changes.migrate_on_connect == Some(true) && current.provider != ProviderKind::Stages {
        return Err(ValidationError::field("migrate_on_connect", STAGES_ONLY));
    }
    if let Some(mode) = changes.auth_mode {
        allows_auth_mode(current.provider, mode)
            .map_err(|why| ValidationError::field("auth_mode", why))?;
    }
    Ok(())
}

/// After the dealer credential was stored: a Stages connection whose
/// migration (S20) waits gets it queued when Stages accepts the credential.
/// Never fails; answers the connection as it is now.
async fn migrate_if_working(
    ports: ConnectionPorts<'_>,
    caller: &Caller,
    connection: Connection,
) -> Connection {
    let queued = crate::migration::after_dealer_credentials(
        ports.connections,
        ports.stages,
        caller,
        &connection,
    )
    .await;
    match queued {
        Some(_) => ports
            .connections
            .connection(&caller.dealer, connection.id)
            .await
            .unwrap_or(connection),
        None => connection,
    }
}

// ---- the connection test (S1) ----

/// Tests the credentials the caller would use on the connection; a test that
/// passes lets its migration (S20) start. A failed check is a report, not an
/// error.
pub async fn test_connection(
    ports: ConnectionPorts<'_>,
    caller: &Caller,
    id: ConnectionId,
) -> Result<ConnectionTestReport, SetupError> {
    let report =
        operations::test_connection(ports.connections, ports.stages, ports.adc, caller, id)
            .await
            .map_err(missing_connection_in)?;
    if report.outcome == TestOutcome::Ok {
        // The connection works: its migration (S20) may start now.
        let armed = match ports.connections.connection(&caller.dealer, id).await {
            Ok(c) => crate::migration::arm(ports.connections, caller, &c).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = armed {
            tracing::warn!(connection_id = %id, error = %e, "could not queue the migration");
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(provider: ProviderKind) -> ConnectionRequest {
        ConnectionRequest {
            provider,
            name: None,
            endpoint: "https://upstream.example.com/".to_owned(),
            auth_mode: None,
            auto_sync: None,
            conflict_policy: None,
            status: None,
            migrate_on_connect: None,
        }
    }

    fn fields(e: &ValidationError) -> Vec<&str> {
        e.errors.iter().map(|f| f.field.as_str()).collect()
    }

    #[test]
    fn a_new_connection_takes_the_providers_name_and_auto_sync() {
        let dealer = DealerId("d1".to_owned());
        let stages = new_connection(dealer.clone(), request(ProviderKind::Stages)).unwrap();
        assert_eq!(stages.name.as_str(), "Stages");
        assert!(stages.auto_sync && stages.migrate_on_connect);
        assert_eq!(stages.auth_mode, AuthMode::Dealer);
        let adc = new_connection(dealer, request(ProviderKind::AlarmCom)).unwrap();
        assert_eq!(adc.name.as_str(), "Alarm.com");
        assert!(adc.auto_sync && !adc.migrate_on_connect);
    }

    #[test]
    fn providers_without_user_logins_take_dealer_credentials_only() {
        let mut r = request(ProviderKind::AlarmCom);
        r.auth_mode = Some(AuthMode::User);
        r.migrate_on_connect = Some(true);
        r.endpoint = "not a url".to_owned();
        let e = new_connection(DealerId("d1".to_owned()), r).unwrap_err();
        assert_eq!(fields(&e), ["endpoint", "auth_mode", "migrate_on_connect"]);
        assert_eq!(
            e.errors[1].message,
            "alarm_com connections take dealer credentials only"
        );
    }

    #[test]
    fn an_edit_names_every_refused_field_in_order() {
        let edit = ConnectionEdit {
            name: Some(String::new()),
            dealer_credentials: Some(NewCredential::parse(" ", String::new())),
            settings: Some(Err(ValidationError::field("settings.x", "no"))),
            ..ConnectionEdit::default()
        };
        let e = checked_edit(edit).unwrap_err();
        assert_eq!(
            fields(&e),
            [
                "dealer_credentials.username",
                "dealer_credentials.password",
                "name",
                "settings.x"
            ]
        );
    }
}
