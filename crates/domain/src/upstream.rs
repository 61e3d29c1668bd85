//! One way to reach an upstream provider, and what the providers' failures
//! have in common.
//!
//! Reaching: [`stages_client`] and [`adc_client`] are the only doors from a
//! connection to its provider's client. [`ActingAs`] decides whose stored
//! credential is used (S1, S2: the caller's in user mode, the dealer's
//! otherwise and for background work); the provider is checked, the
//! credential read, and a missing one refused, here once. Both connectors
//! take the same [`UpstreamTarget`]. Rules of one use case (an import needs
//! an active entry, A5) stay with that use case, on top.
//!
//! Failures: [`UpstreamErrorKind`] is the one classification of a provider's
//! failure (Stages' `StagesError`, Alarm.com's `AdcError`): its stable name
//! and whether trying again later may help are written here once. The
//! clients report each call, after its retries, to an observer the service
//! hands them ([`observed`]), so an operator sees which connection is
//! failing and how.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use crate::adc::{AdcApi, AdcConnector};
use crate::connection::{Connection, Credential, CredentialOwner, ProviderKind};
use crate::operations::{NextStep, OperationError};
use crate::stages::{StagesApi, StagesConnector};
use crate::store::{ConnectionStore, StoreError};
use crate::tenancy::{Caller, DealerId};
use crate::Secret;

/// Where and as whom to call a provider; what both connectors take.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    /// A stable key for per-connection limits (the connection id).
    pub key: String,
    /// Base URL: Stages' protocol lives under `/api/v1/`, Alarm.com's
    /// services under `/WebServices/`.
    pub endpoint: url::Url,
    pub username: String,
    pub password: String,
}

impl UpstreamTarget {
    /// `connection`'s endpoint with this login: a stored credential, or one
    /// checked before it is stored (I1).
    pub fn of(connection: &Connection, username: &str, password: &Secret) -> Self {
        Self {
            key: connection.id.to_string(),
            endpoint: connection.endpoint.url().clone(),
            username: username.to_owned(),
            password: password.expose().to_owned(),
        }
    }
}

impl std::fmt::Debug for UpstreamTarget {
    // The password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTarget")
            .field("key", &self.key)
            .field("endpoint", &self.endpoint.as_str())
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Whose stored credential a call uses.
#[derive(Debug, Clone, Copy)]
pub enum ActingAs<'a> {
    /// The caller, on their request: the dealer credential in dealer auth
    /// mode, the caller's own in user mode (S2).
    Caller(&'a Caller),
    /// The dealer: work nobody waits on (Auto Sync, callbacks, imports) has
    /// no user to act as, and an Alarm.com login is the dealer's.
    Dealer,
}

impl<'a> ActingAs<'a> {
    fn owner(self, connection: &Connection) -> CredentialOwner {
        match self {
            Self::Caller(caller) => connection.credential_owner_for(&caller.user),
            Self::Dealer => CredentialOwner::Dealer,
        }
    }

    /// A caller reads only their own dealer's credentials, whatever
    /// connection they were handed.
    fn dealer<'c>(self, connection: &'c Connection) -> &'c DealerId
    where
        'a: 'c,
    {
        match self {
            Self::Caller(caller) => &caller.dealer,
            Self::Dealer => &connection.dealer,
        }
    }
}

/// The Stages client of `connection`, acting as `acting`.
pub async fn stages_client(
    connections: &dyn ConnectionStore,
    stages: &dyn StagesConnector,
    acting: ActingAs<'_>,
    connection: &Connection,
) -> Result<Arc<dyn StagesApi>, OperationError> {
    let target = target(connections, acting, connection, ProviderKind::Stages).await?;
    Ok(stages.connect(target))
}

/// [`stages_client`] acting as the dealer, with the dealer credential
/// already read (by a store read that brings it along).
pub fn stages_client_with(
    stages: &dyn StagesConnector,
    connection: &Connection,
    dealer_credential: Option<Credential>,
) -> Result<Arc<dyn StagesApi>, OperationError> {
    check_provider(connection, ProviderKind::Stages)?;
    let target = target_from(connection, &CredentialOwner::Dealer, dealer_credential)?;
    Ok(stages.connect(target))
}

/// The Alarm.com client of `connection`, acting as `acting`.
pub async fn adc_client(
    connections: &dyn ConnectionStore,
    adc: &dyn AdcConnector,
    acting: ActingAs<'_>,
    connection: &Connection,
) -> Result<Arc<dyn AdcApi>, OperationError> {
    let target = target(connections, acting, connection, ProviderKind::AlarmCom).await?;
    Ok(adc.connect(target))
}

async fn target(
    connections: &dyn ConnectionStore,
    acting: ActingAs<'_>,
    connection: &Connection,
    provider: ProviderKind,
) -> Result<UpstreamTarget, OperationError> {
    check_provider(connection, provider)?;
    let owner = acting.owner(connection);
    let credential = connections
        .credential(acting.dealer(connection), connection.id, &owner)
        .await?;
    target_from(connection, &owner, credential)
}

fn target_from(
    connection: &Connection,
    owner: &CredentialOwner,
    credential: Option<Credential>,
) -> Result<UpstreamTarget, OperationError> {
    let credential = credential.ok_or_else(|| missing_credentials(connection, owner))?;
    if !credential.endpoint.same_origin(&connection.endpoint) {
        // The connection moved between its read and the credential's (a
        // PATCH committed in between): the credential belongs to the other
        // server, and must never be sent to the one read before.
        return Err(OperationError::Store(StoreError::Unavailable(format!(
            "connection '{}' was moved to another server while this request read it; try again",
            connection.name.as_str()
        ))));
    }
    Ok(UpstreamTarget::of(
        connection,
        &credential.username,
        &credential.password,
    ))
}

fn check_provider(connection: &Connection, provider: ProviderKind) -> Result<(), OperationError> {
    if connection.provider == provider {
        return Ok(());
    }
    Err(OperationError::WrongProvider(format!(
        "connection '{}' is a {} connection; this is for {} connections",
        connection.name.as_str(),
        connection.provider.as_str(),
        provider.as_str()
    )))
}

/// No credential of `owner` on `connection`. The dealer's is what links a
/// provider entry to its provider (A5), whence the words.
fn missing_credentials(connection: &Connection, owner: &CredentialOwner) -> OperationError {
    let name = connection.name.as_str();
    match owner {
        CredentialOwner::Dealer => OperationError::MissingCredentials {
            message: format!(
                "connection '{name}' is not linked to {}: it has no dealer credentials yet; an admin sets them first",
                connection.provider.describe().name
            ),
            next: None,
        },
        // The fix is the caller's own to make: the API names the request.
        CredentialOwner::User(_) => OperationError::MissingCredentials {
            message: format!(
                "connection '{name}' uses per-user credentials and you have not stored yours"
            ),
            next: Some(NextStep::StoreOwnCredentials(connection.id)),
        },
    }
}

/// Told about every upstream call once it has ended.
pub trait CallObserver: Send + Sync {
    /// `provider` is e.g. `stages`; `connection` the connection's key (its
    /// id); `outcome` is `ok` or the kind of error (`timeout`, `unreachable`, ...).
    fn observe(
        &self,
        provider: &'static str,
        connection: &str,
        outcome: &'static str,
        seconds: f64,
    );
}

/// Why a call to a provider failed, whichever the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamErrorKind {
    /// The provider refused the credentials.
    Unauthorized,
    /// The provider has no such record.
    NotFound,
    /// A rule of the provider refused the request.
    Rejected,
    /// The login lacks a role or permission for this call.
    PermissionDenied,
    /// A deliberate fault the request caused.
    Fault,
    /// A fault of the provider's own side: the same request may well
    /// succeed a moment later.
    ServerFault,
    /// The provider asks to slow down.
    RateLimited,
    /// The provider could not be reached.
    Unreachable,
    /// The provider did not answer in time.
    Timeout,
    /// A failure of the provider, or an answer the protocol does not allow.
    BadAnswer,
    /// The egress policy forbids the endpoint's address: nothing was sent.
    EgressRefused,
}

impl UpstreamErrorKind {
    /// A short stable name (a metric label).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::Rejected => "rejected",
            Self::PermissionDenied => "permission_denied",
            Self::Fault => "fault",
            Self::ServerFault => "server_fault",
            Self::RateLimited => "rate_limited",
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::BadAnswer => "bad_answer",
            Self::EgressRefused => "egress_refused",
        }
    }

    /// Worth trying again later (by a job, or an import within its run; the
    /// clients retry safe calls themselves). A refusal, or a fault the
    /// request caused, is the provider's deliberate answer, so it is not; a
    /// failure of the provider's own side is.
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            Self::RateLimited
                | Self::Unreachable
                | Self::Timeout
                | Self::BadAnswer
                | Self::ServerFault
        )
    }
}

/// A provider's error, classified.
pub trait UpstreamFailure {
    fn upstream_kind(&self) -> UpstreamErrorKind;
}

/// Runs `call` (one upstream call, retries included) and tells `observer`
/// how it ended and how long it took.
pub async fn observed<T, E: UpstreamFailure>(
    observer: Option<&dyn CallObserver>,
    provider: &'static str,
    connection: &str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = call.await;
    if let Some(observer) = observer {
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.upstream_kind().as_str(),
        };
        let seconds = started.elapsed().as_secs_f64();
        observer.observe(provider, connection, outcome, seconds);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::connection::{test_connection, AuthMode};
    use crate::tenancy::{Role, UserId};

    fn caller(dealer: &str) -> Caller {
        Caller {
            dealer: DealerId(dealer.into()),
            user: UserId("u1".into()),
            roles: vec![Role::Operator],
        }
    }

    /// A credential read after a PATCH moved the connection belongs to the
    /// new server: with the endpoint read before the move there is no
    /// target, so the password never reaches the old one. A new path on the
    /// same server keeps the credential, as the store does.
    #[test]
    fn a_credential_goes_only_to_the_server_it_was_read_with() {
        let connection = test_connection();
        let credential = |endpoint: &str| Credential {
            username: "u".into(),
            password: Secret::new("p"),
            updated_at: connection.updated_at,
            endpoint: crate::connection::Endpoint::parse(endpoint).unwrap(),
        };
        let here = connection.endpoint.as_str().to_owned();
        let target = target_from(
            &connection,
            &CredentialOwner::Dealer,
            Some(credential(&here)),
        );
        assert!(target.is_ok());
        let same_server = format!("{}/other/path/", here.trim_end_matches('/'));
        let target = target_from(
            &connection,
            &CredentialOwner::Dealer,
            Some(credential(&same_server)),
        );
        assert!(target.is_ok(), "a new path on the same server");
        for elsewhere in ["http://127.0.0.1:1/", "https://elsewhere.example/"] {
            let target = target_from(
                &connection,
                &CredentialOwner::Dealer,
                Some(credential(elsewhere)),
            );
            assert!(
                matches!(
                    target,
                    Err(OperationError::Store(StoreError::Unavailable(_)))
                ),
                "{elsewhere}: {target:?}"
            );
        }
    }

    #[test]
    fn the_caller_acts_with_the_credential_of_the_auth_mode() {
        let mut connection = test_connection();
        let alice = caller("d");
        let as_alice = ActingAs::Caller(&alice);
        assert_eq!(as_alice.owner(&connection), CredentialOwner::Dealer);
        connection.auth_mode = AuthMode::User;
        assert_eq!(
            as_alice.owner(&connection),
            CredentialOwner::User(alice.user.clone())
        );
        assert_eq!(ActingAs::Dealer.owner(&connection), CredentialOwner::Dealer);
    }

    #[test]
    fn a_caller_reads_only_their_own_dealers_credentials() {
        let connection = test_connection();
        let stranger = caller("other");
        assert_eq!(ActingAs::Caller(&stranger).dealer(&connection).0, "other");
        assert_eq!(ActingAs::Dealer.dealer(&connection).0, "d");
    }

    #[test]
    fn a_connection_of_another_provider_is_refused() {
        let connection = test_connection();
        assert_eq!(check_provider(&connection, ProviderKind::Stages), Ok(()));
        match check_provider(&connection, ProviderKind::AlarmCom) {
            Err(OperationError::WrongProvider(why)) => {
                assert!(why.contains("'Stages' is a stages connection"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_credential_says_whose_it_is() {
        let connection = test_connection();
        let missing = |owner: &CredentialOwner| match target_from(&connection, owner, None) {
            Err(OperationError::MissingCredentials { message, next }) => (message, next),
            other => panic!("{other:?}"),
        };
        let (dealer, next) = missing(&CredentialOwner::Dealer);
        assert!(dealer.contains("not linked to Stages"), "{dealer}");
        assert!(dealer.contains("has no dealer credentials"), "{dealer}");
        assert_eq!(next, None, "only an admin sets the dealer's: {dealer}");
        let (own, next) = missing(&CredentialOwner::User(UserId("u1".into())));
        assert!(own.contains("per-user credentials"), "{own}");
        assert_eq!(next, Some(NextStep::StoreOwnCredentials(connection.id)));
    }

    #[test]
    fn a_target_is_the_connections_endpoint_with_the_login() {
        let connection = test_connection();
        let target = UpstreamTarget::of(&connection, "dealer", &Secret::new("pw"));
        assert_eq!(target.key, connection.id.to_string());
        assert_eq!(target.endpoint, *connection.endpoint.url());
        assert_eq!(
            (target.username.as_str(), target.password.as_str()),
            ("dealer", "pw")
        );
    }

    #[test]
    fn target_debug_hides_the_password() {
        let target = UpstreamTarget {
            key: "k".into(),
            endpoint: url::Url::parse("https://alarmadmin.example/").unwrap(),
            username: "integration".into(),
            password: "hunter2".into(),
        };
        let shown = format!("{target:?}");
        assert!(shown.contains("integration"));
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn only_failures_that_may_pass_are_transient() {
        use UpstreamErrorKind::*;
        for kind in [RateLimited, Unreachable, Timeout, BadAnswer, ServerFault] {
            assert!(kind.is_transient(), "{kind:?}");
        }
        for kind in [
            Unauthorized,
            NotFound,
            Rejected,
            PermissionDenied,
            Fault,
            EgressRefused,
        ] {
            assert!(!kind.is_transient(), "{kind:?}");
        }
        assert_eq!(EgressRefused.as_str(), "egress_refused");
    }
}
