//! Upstream credentials (S2, I1): the dealer's one credential, checked
//! against the provider when saved, each user's own on a `user`-mode
//! connection (nobody sees another's), and the inbound credential a
//! provider calls this service back with.

use chrono::{DateTime, Utc};

use super::{migrate_if_working, missing_connection, ConnectionPorts, SetupError};
use crate::connection::{
    AuthMode, Connection, ConnectionId, Credential, CredentialOwner, InboundCredential,
};
use crate::operations;
use crate::store::ConnectionStore;
use crate::tenancy::Caller;
use crate::validation::ValidationError;
use crate::Secret;

/// An upstream credential as a caller gives it, checked: the username
/// trimmed, 1 to 256 characters on one line; the password 1 to 1024
/// characters, kept as given.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCredential {
    pub username: String,
    pub password: Secret,
}

impl NewCredential {
    pub fn parse(username: &str, password: String) -> Result<Self, ValidationError> {
        let mut v = ValidationError::default();
        let username = username.trim().to_owned();
        if username.is_empty() || username.chars().count() > 256 {
            v.push("username", "must be 1 to 256 characters");
        } else if username.chars().any(char::is_control) {
            v.push("username", "must not contain control characters");
        }
        if password.is_empty() || password.chars().count() > 1024 {
            v.push("password", "must be 1 to 1024 characters");
        }
        v.into_result()?;
        Ok(Self {
            username,
            password: Secret::new(password),
        })
    }
}

/// Stores the dealer credential of a connection (I1): checked against the
/// provider first where it can be (a wrong one is refused with the
/// provider's reason). Answers the stored credential and, when it was not
/// checked, why. A Stages connection may start its migration (S20).
pub async fn set_dealer_credential(
    ports: ConnectionPorts<'_>,
    caller: &Caller,
    id: ConnectionId,
    credential: NewCredential,
) -> Result<(Credential, Option<String>), SetupError> {
    let connection = ports
        .connections
        .connection(&caller.dealer, id)
        .await
        .map_err(missing_connection)?;
    let note = operations::check_provider_credentials(
        ports.adc,
        &connection,
        &credential.username,
        &credential.password,
    )
    .await?;
    let stored = ports
        .connections
        .put_credential(
            &caller.dealer,
            id,
            &CredentialOwner::Dealer,
            &credential.username,
            &credential.password,
        )
        .await
        .map_err(missing_connection)?;
    migrate_if_working(ports, caller, connection).await;
    Ok((stored, note))
}

/// A connection on which the caller keeps their own credential (S2): one in
/// `user` mode.
async fn user_mode_connection(
    connections: &dyn ConnectionStore,
    caller: &Caller,
    id: ConnectionId,
) -> Result<Connection, SetupError> {
    let c = connections
        .connection(&caller.dealer, id)
        .await
        .map_err(missing_connection)?;
    if c.auth_mode != AuthMode::User {
        return Err(SetupError::DealerAuthMode {
            connection: c.name.as_str().to_owned(),
        });
    }
    Ok(c)
}

/// Stores the caller's own credential on a `user`-mode connection, as given
/// (the connection test checks it).
pub async fn set_own_credential(
    connections: &dyn ConnectionStore,
    caller: &Caller,
    id: ConnectionId,
    credential: NewCredential,
) -> Result<Credential, SetupError> {
    user_mode_connection(connections, caller, id).await?;
    let owner = CredentialOwner::User(caller.user.clone());
    Ok(connections
        .put_credential(
            &caller.dealer,
            id,
            &owner,
            &credential.username,
            &credential.password,
        )
        .await
        .map_err(missing_connection)?)
}

/// The caller's own credential on a `user`-mode connection; nobody sees another's.
pub async fn own_credential(
    connections: &dyn ConnectionStore,
    caller: &Caller,
    id: ConnectionId,
) -> Result<Credential, SetupError> {
    user_mode_connection(connections, caller, id).await?;
    let owner = CredentialOwner::User(caller.user.clone());
    connections
        .credential(&caller.dealer, id, &owner)
        .await
        .map_err(missing_connection)?
        .ok_or(SetupError::NoOwnCredential)
}

/// Forgets the caller's own credential; other users' stay.
pub async fn forget_own_credential(
    connections: &dyn ConnectionStore,
    caller: &Caller,
    id: ConnectionId,
) -> Result<(), SetupError> {
    user_mode_connection(connections, caller, id).await?;
    let owner = CredentialOwner::User(caller.user.clone());
    let deleted = connections
        .delete_credential(&caller.dealer, id, &owner)
        .await
        .map_err(missing_connection)?;
    if !deleted {
        return Err(SetupError::NoOwnCredential);
    }
    Ok(())
}

// ---- the inbound credential ----

/// The Basic username a provider sends on callbacks to connection `id`.
pub fn inbound_username(id: ConnectionId) -> String {
    format!("cl-{}", id.0.simple())
}

/// The callback credential of a connection, without its secret.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundStatus {
    pub connection: Connection,
    pub username: String,
    /// When the secret was issued; `None` while none has been.
    pub rotated_at: Option<DateTime<Utc>>,
}

pub async fn inbound_status(
    connections: &dyn ConnectionStore,
    caller: &Caller,
    id: ConnectionId,
) -> Result<InboundStatus, SetupError> {
    let connection = connections
        .connection(&caller.dealer, id)
        .await
        .map_err(missing_connection)?;
    let current = connections
        .inbound_credential(&caller.dealer, id)
        .await
        .map_err(missing_connection)?;
    Ok(InboundStatus {
        connection,
        username: current
            .as_ref()
            .map_or_else(|| inbound_username(id), |c| c.username.clone()),
        rotated_at: current.map(|c| c.rotated_at),
    })
}

/// Replaces the callback secret with `secret`; the old one stops working at once.
pub async fn rotate_inbound_credential(
    connections: &dyn ConnectionStore,
    caller: &Caller,
    id: ConnectionId,
    secret: Secret,
) -> Result<(Connection, InboundCredential), SetupError> {
    let connection = connections
        .connection(&caller.dealer, id)
        .await
        .map_err(missing_connection)?;
    let credential = InboundCredential {
        username: inbound_username(id),
        secret,
        rotated_at: Utc::now(),
    };
    connections
        .set_inbound_credential(&caller.dealer, id, &credential)
        .await
        .map_err(missing_connection)?;
    tracing::info!(connection_id = %id, "inbound credential rotated");
    Ok((connection, credential))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_is_trimmed_and_one_line() {
        let c = NewCredential::parse("  alice ", "pw".to_owned()).unwrap();
        assert_eq!(c.username, "alice");
        let e = NewCredential::parse("a\nb", "pw".to_owned()).unwrap_err();
        assert_eq!(e.errors[0].message, "must not contain control characters");
        assert_eq!(inbound_username(ConnectionId(uuid::Uuid::nil())).len(), 35);
    }
}
