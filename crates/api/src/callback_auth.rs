//! The Basic credential of Stages callbacks (S18), checked from memory.
//! A callback whose credential matches the one this process read for its
//! connection before is not read again: that read was a database round trip
//! for every callback, a fifth of what taking one in cost. Memory never
//! widens what is accepted: the inbox stores a callback only while the
//! credential it was verified with is still the connection's (its
//! `rotated_at`), so a rotation on any replica stops the old secret at once;
//! and a secret that differs from the remembered one is read afresh, as it
//! may be the new one.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use domain::connection::{Connection, ConnectionId, InboundCredential, ProviderKind};
use domain::store::{InboundLookup, StoreResult};
use subtle::ConstantTimeEq;

/// Connections remembered at most; past this the memory starts again
/// (callbacks come for the connections that exist, a few per dealer).
const MOST_REMEMBERED: usize = 4096;

/// A callback's credential, found to be its connection's.
#[derive(Debug, Clone)]
pub struct Verified {
    pub connection: Connection,
    /// When the credential it matched was set: the inbox stores the
    /// callback only while that credential is the connection's.
    pub credential_set_at: DateTime<Utc>,
    /// Checked against the credential read for an earlier callback, not
    /// read now.
    pub from_memory: bool,
}

/// The Stages connections and their inbound credentials, as last read.
#[derive(Default)]
pub struct CallbackCredentials {
    remembered: Mutex<HashMap<ConnectionId, (Connection, InboundCredential)>>,
}

impl CallbackCredentials {
    /// The connection, when `user` and `password` are its inbound
    /// credential; from memory when they match the one remembered.
    pub async fn verify(
        &self,
        lookup: &dyn InboundLookup,
        id: ConnectionId,
        user: &str,
        password: &str,
    ) -> StoreResult<Option<Verified>> {
        let remembered = self.lock().get(&id).cloned();
        if let Some((connection, credential)) = remembered {
            if matches(&credential, user, password) {
                return Ok(Some(Verified {
                    connection,
                    credential_set_at: credential.rotated_at,
                    from_memory: true,
                }));
            }
        }
        self.verify_afresh(lookup, id, user, password).await
    }

    /// [`Self::verify`], with the connection and its credential read now.
    pub async fn verify_afresh(
        &self,
        lookup: &dyn InboundLookup,
        id: ConnectionId,
        user: &str,
        password: &str,
    ) -> StoreResult<Option<Verified>> {
        let (connection, credential) = match lookup.connection_for_callback(id).await? {
            Some((connection, Some(credential))) if connection.provider == ProviderKind::Stages => {
                (connection, credential)
            }
            _ => {
                self.lock().remove(&id);
                return Ok(None);
            }
        };
        let ok = matches(&credential, user, password);
        let credential_set_at = credential.rotated_at;
        {
            let mut remembered = self.lock();
            if remembered.len() >= MOST_REMEMBERED && !remembered.contains_key(&id) {
                remembered.clear();
            }
            remembered.insert(id, (connection.clone(), credential));
        }
        Ok(ok.then_some(Verified {
            connection,
            credential_set_at,
            from_memory: false,
        }))
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, (Connection, InboundCredential)>> {
        self.remembered.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Compared in constant time, the user name and the secret together.
fn matches(credential: &InboundCredential, user: &str, password: &str) -> bool {
    let user_ok = credential.username.as_bytes().ct_eq(user.as_bytes());
    let secret_ok = credential
        .secret
        .expose()
        .as_bytes()
        .ct_eq(password.as_bytes());
    bool::from(user_ok & secret_ok)
}
