//! Use cases over the ports. Each is what one button of a billing screen does;
//! the HTTP layer parses, authorises, and calls one of these.

use std::time::Instant;

use serde::Serialize;

use crate::connection::{Connection, ConnectionId, ProviderKind};
use crate::stages::{StagesConnector, StagesError};
use crate::store::{ConnectionStore, StoreError};
use crate::tenancy::Caller;
use crate::upstream::{adc_client, stages_client, ActingAs, UpstreamTarget};
use crate::Secret;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OperationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record the request is about does not exist (for this dealer).
    #[error("{0}")]
    NotFound(String),
    /// The request breaks a rule of the data it names.
    #[error(transparent)]
    Invalid(#[from] crate::validation::ValidationError),
    /// The request is well formed but conflicts with the current state.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The caller has no upstream credential to act with; `next` is set
    /// when the caller can store one themselves.
    #[error("{message}")]
    MissingCredentials {
        message: String,
        next: Option<NextStep>,
    },
    /// A Stages record carries the billing id of another record (S6), so it
    /// cannot be linked; `next` is the request that frees it, if one does.
    #[error("{message}")]
    ClaimedInStages {
        message: String,
        next: Option<NextStep>,
    },
    /// The operation does not apply to this connection's provider.
    #[error("{0}")]
    WrongProvider(String),
    /// Stages failed; `connection` is the connection's name.
    #[error("Stages (connection '{connection}'): {error}")]
    Upstream {
        connection: String,
        error: StagesError,
    },
    /// An interactive services provider (Alarm.com, ...) failed: the
    /// connection's name, what the service was doing when it says so, and
    /// the provider's error as the client typed it.
    #[error("{connection}: {doing}{error}")]
    Provider {
        connection: String,
        doing: &'static str,
        error: crate::adc::AdcError,
    },
    /// A push stopped part way: `done` is what exists and is linked now; the
    /// same push again finishes the rest.
    #[error("the push stopped at billing system '{failed}': {error}")]
    PartialPush {
        done: Vec<crate::linking::PushedRecord>,
        failed: String,
        error: Box<OperationError>,
    },
    /// An edit in Stages stopped part way: `made` lists the changes Stages
    /// kept (and the billing side followed); the rest were not made.
    #[error("only part of the edit was made ({}): {error}", made.join(", "))]
    PartialEdit {
        made: Vec<String>,
        error: Box<OperationError>,
    },
    /// A change toward Stages failed part way and was undone: what it had
    /// written to Stages was put back and nothing changed in the service;
    /// `left` names what could not be put back.
    #[error("nothing was changed: {error}")]
    Undone {
        left: Vec<String>,
        error: Box<OperationError>,
    },
}

/// A request the caller can make to clear an error. The domain names the step;
/// the API words it as the route that takes it, so no route is named here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Delete this link with release: the billing ids in Stages are cleared.
    ReleaseLink(crate::link::LinkId),
    /// Delete with release the link the caller is told to make again.
    ReleaseTheLinkMadeAgain,
    /// Store the caller's own credentials on this connection.
    StoreOwnCredentials(ConnectionId),
}

/// Turns a Stages failure into the operation's error, naming the connection.
pub(crate) fn upstream(connection: &Connection) -> impl Fn(StagesError) -> OperationError + '_ {
    move |error| OperationError::Upstream {
        connection: connection.name.as_str().to_owned(),
        error,
    }
}

/// Why a connection test failed, or that it did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TestOutcome {
    Ok,
    MissingCredentials,
    BadCredentials,
    Unreachable,
    Timeout,
    RateLimited,
    BadAnswer,
    /// A provider this service has no client for: its credentials are
    /// stored as given, not checked.
    NotVerified,
    /// The egress policy forbids the endpoint's address; nothing was sent.
    EgressRefused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionTestReport {
    pub outcome: TestOutcome,
    /// What happened, in words a dealer's staff can act on.
    pub detail: String,
    /// Time spent calling the upstream, in milliseconds.
    pub latency_ms: u64,
    /// What the provider login may do (Alarm.com: Builder Program, billing).
    pub permissions: Option<crate::adc::AdcPermissions>,
}

/// What a provider without a client says about credentials it keeps.
pub fn not_verified(connection: &Connection) -> String {
    let name = connection.provider.describe().name;
    format!(
        "{name} credentials are stored but not verified: this service has no {name} client yet, so it cannot check them"
    )
}

/// Checks the caller's effective credentials against the connection's
/// endpoint: Stages (the caller's credential), Alarm.com (the dealer
/// credential and its permissions); other providers are not checked, and
/// the report says so.
pub async fn test_connection(
    store: &dyn ConnectionStore,
    connector: &dyn StagesConnector,
    adc: &dyn crate::adc::AdcConnector,
    caller: &Caller,
    id: ConnectionId,
) -> Result<ConnectionTestReport, OperationError> {
    let connection = store.connection(&caller.dealer, id).await?;
    match connection.provider {
        ProviderKind::Stages => {}
        ProviderKind::AlarmCom => return test_alarm_com(store, adc, &connection).await,
        ProviderKind::TotalConnect | ProviderKind::BrinksHome => {
            return Ok(ConnectionTestReport {
                outcome: TestOutcome::NotVerified,
                detail: not_verified(&connection),
                latency_ms: 0,
                permissions: None,
            })
        }
    }
    let api = match stages_client(store, connector, ActingAs::Caller(caller), &connection).await {
        Ok(api) => api,
        Err(e) => return missing_credentials_report(e),
    };
    let started = Instant::now();
    let result = api.ping().await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let endpoint = connection.endpoint.as_str();
    let (outcome, detail) = match result {
        Ok(()) => (
            TestOutcome::Ok,
            format!("Stages at {endpoint} accepted the credentials"),
        ),
        Err(StagesError::Unauthorized) => (
            TestOutcome::BadCredentials,
            format!("Stages at {endpoint} refused the username or password"),
        ),
        Err(StagesError::Unreachable(why)) => (
            TestOutcome::Unreachable,
            format!("Stages at {endpoint} could not be reached: {why}"),
        ),
        Err(StagesError::Timeout) => (
            TestOutcome::Timeout,
            format!("Stages at {endpoint} did not answer in time"),
        ),
        Err(StagesError::RateLimited { retry_after_secs }) => (
            TestOutcome::RateLimited,
            match retry_after_secs {
                Some(s) => format!("Stages at {endpoint} asks to slow down; try again in {s} s"),
                None => format!("Stages at {endpoint} asks to slow down; try again shortly"),
            },
        ),
        Err(StagesError::EgressRefused(why)) => (
            TestOutcome::EgressRefused,
            format!("Stages at {endpoint} was not called: {why}"),
        ),
        Err(other @ (StagesError::BadAnswer(_)
        | StagesError::NotFound(_)
        | StagesError::Rejected { .. })) => (
            TestOutcome::BadAnswer,
            format!("Stages at {endpoint} gave an unexpected answer ({other}); is the endpoint URL right?"),
        ),
    };
    Ok(ConnectionTestReport {
        outcome,
        detail,
        latency_ms,
        permissions: None,
    })
}

/// A test without the credentials to call with says so; any other failure
/// to get a client is the request's.
fn missing_credentials_report(
    error: OperationError,
) -> Result<ConnectionTestReport, OperationError> {
    match error {
        OperationError::MissingCredentials { message, .. } => Ok(ConnectionTestReport {
            outcome: TestOutcome::MissingCredentials,
            detail: message,
            latency_ms: 0,
            permissions: None,
        }),
        other => Err(other),
    }
}

/// `:test` of an Alarm.com entry: the dealer credential (a cheap
/// authenticated read), then what the login may do.
async fn test_alarm_com(
    store: &dyn ConnectionStore,
    adc: &dyn crate::adc::AdcConnector,
    connection: &Connection,
) -> Result<ConnectionTestReport, OperationError> {
    use crate::adc::AdcError;
    let api = match adc_client(store, adc, ActingAs::Dealer, connection).await {
        Ok(api) => api,
        Err(e) => return missing_credentials_report(e),
    };
    let endpoint = connection.endpoint.as_str();
    let started = Instant::now();
    let checked = match api.check_credentials().await {
        Ok(()) => Ok(api.permissions().await),
        Err(e) => Err(e),
    };
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let yes_no = |b: bool| if b { "may" } else { "may not" };
    let (outcome, detail, permissions) = match checked {
        Ok(Ok(p)) => (
            TestOutcome::Ok,
            format!(
                "Alarm.com at {endpoint} accepted the credentials; the login {} use the Builder Program and {} receive billing notifications (the billing integration permission)",
                yes_no(p.builder_program),
                yes_no(p.billing)
            ),
            Some(p),
        ),
        Ok(Err(e)) => (
            TestOutcome::Ok,
            format!(
                "Alarm.com at {endpoint} accepted the credentials; its permissions could not be read ({e})"
            ),
            None,
        ),
        Err(AdcError::Unauthorized) => (
            TestOutcome::BadCredentials,
            format!("Alarm.com at {endpoint} refused the username or password"),
            None,
        ),
        Err(AdcError::Unreachable(why)) => (
            TestOutcome::Unreachable,
            format!("Alarm.com at {endpoint} could not be reached: {why}"),
            None,
        ),
        Err(AdcError::Timeout) => (
            TestOutcome::Timeout,
            format!("Alarm.com at {endpoint} did not answer in time"),
            None,
        ),
        Err(AdcError::RateLimited { .. }) => (
            TestOutcome::RateLimited,
            format!("Alarm.com at {endpoint} asks to slow down; try again shortly"),
            None,
        ),
        Err(other) => (
            TestOutcome::BadAnswer,
            format!("Alarm.com at {endpoint} gave an unexpected answer ({other}); is the endpoint URL right?"),
            None,
        ),
    };
    Ok(ConnectionTestReport {
        outcome,
        detail,
        latency_ms,
        permissions,
    })
}

/// An interactive services provider failed or refused; `connection` is the
/// connection's name.
fn adc_failure(connection: &Connection, e: crate::adc::AdcError) -> OperationError {
    use crate::adc::AdcError;
    match e {
        AdcError::Unauthorized => {
            OperationError::Invalid(crate::validation::ValidationError::field(
                "password",
                format!(
                    "{} refused these credentials for connection '{}'",
                    connection.provider.describe().name,
                    connection.name.as_str()
                ),
            ))
        }
        AdcError::PermissionDenied { message } => OperationError::Conflict {
            code: "provider_permission",
            message: format!("{}: {message}", connection.provider.describe().name),
        },
        AdcError::EgressRefused(message) => OperationError::Conflict {
            code: "egress_refused",
            message: format!(
                "{} (connection '{}') was not called: {message}",
                connection.provider.describe().name,
                connection.name.as_str()
            ),
        },
        other => provider_failure(connection, &other),
    }
}

/// An Alarm.com failure that is the provider's to fix or outlast: a 502
/// (a 504 when it timed out) naming the connection, and transient for jobs.
pub(crate) fn provider_failure(
    connection: &Connection,
    error: &crate::adc::AdcError,
) -> OperationError {
    OperationError::Provider {
        connection: connection.name.as_str().to_owned(),
        doing: "",
        error: error.clone(),
    }
}

/// Checks credentials against the provider before they are saved (I1): a
/// wrong password is refused with the provider's reason. Stages connections
/// are checked with `:test` instead; providers without a client yet are stored as given.
///
/// `Ok(None)`: checked. `Ok(Some(note))`: stored unchecked, and why.
pub async fn check_provider_credentials(
    adc: &dyn crate::adc::AdcConnector,
    connection: &Connection,
    username: &str,
    password: &Secret,
) -> Result<Option<String>, OperationError> {
    match connection.provider {
        ProviderKind::AlarmCom => adc
            .connect(UpstreamTarget::of(connection, username, password))
            .check_credentials()
            .await
            .map(|()| None)
            .map_err(|e| adc_failure(connection, e)),
        ProviderKind::Stages => Ok(Some(
            "Stages credentials are not checked when saved; the connection test checks them"
                .to_owned(),
        )),
        ProviderKind::TotalConnect | ProviderKind::BrinksHome => Ok(Some(not_verified(connection))),
    }
}

/// The service plans a provider offers, read with the dealer credential.
pub async fn service_plans(
    store: &dyn ConnectionStore,
    adc: &dyn crate::adc::AdcConnector,
    caller: &Caller,
    id: ConnectionId,
) -> Result<Vec<crate::adc::ServicePlan>, OperationError> {
    let connection = store.connection(&caller.dealer, id).await?;
    adc_client(store, adc, ActingAs::Dealer, &connection)
        .await?
        .service_plans()
        .await
        .map_err(|e| adc_failure(&connection, e))
}
