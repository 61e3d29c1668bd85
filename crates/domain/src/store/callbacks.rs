//! The ports of Stages callbacks (S18): the inbox they are stored in, and
//! the connection and credential they are verified against.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::connection::{Connection, ConnectionId, InboundCredential};
use crate::jobs::NewJob;
use crate::tenancy::DealerId;

/// Inbound callbacks (from Stages), stored before they are answered.
#[async_trait]
pub trait InboxStore: Send + Sync {
    /// Stores a callback once per (connection, event id) and enqueues `job` in
    /// the same transaction. With `credential_set_at` (the `rotated_at` of the
    /// inbound credential the callback was verified with), only while that
    /// credential is still the connection's.
    async fn receive_callback(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        event_id: &str,
        payload: &serde_json::Value,
        job: NewJob,
        credential_set_at: Option<DateTime<Utc>>,
    ) -> StoreResult<Received>;
    /// The stored callback, for the job that processes it.
    async fn callback(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        event_id: &str,
    ) -> StoreResult<serde_json::Value>;
}

/// What became of a callback offered to the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Stored, with its job.
    New,
    /// Received before: nothing stored, nothing enqueued.
    Repeat,
    /// Nothing stored: the credential it was verified with has been
    /// replaced (rotated) since.
    CredentialReplaced,
}

/// Finds a connection by its id alone, for unauthenticated inbound callbacks
/// whose Basic credentials are checked against the connection's inbound credential.
#[async_trait]
pub trait InboundLookup: Send + Sync {
    async fn connection_for_callback(
        &self,
        id: ConnectionId,
    ) -> StoreResult<Option<(Connection, Option<InboundCredential>)>>;
}
