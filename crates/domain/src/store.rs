//! The persistence ports. `link-store` implements them on SQLite and PostgreSQL;
//! every call is scoped by dealer so one tenant never reaches another's rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::connection::{
    Connection, ConnectionChanges, ConnectionId, Credential, CredentialOwner, InboundCredential,
    NewConnection, ProviderKind,
};
use crate::tenancy::DealerId;
use crate::{Page, Secret};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No such row for this dealer (another dealer's rows are "not found" too).
    #[error("not found")]
    NotFound,
    /// A uniqueness rule refused the change; the text names the rule.
    #[error("conflict: {0}")]
    Conflict(String),
    /// `If-Match` named a version that is no longer current.
    #[error("the record changed since it was read")]
    VersionMismatch,
    /// The database could not be used; details are logged, not shown.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Keyset paging: rows after `after` (an opaque cursor the store made), at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<String>,
    pub limit: u32,
}

#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Conflict when the dealer already has a connection of that name.
    async fn insert_connection(&self, new: NewConnection) -> StoreResult<Connection>;
    async fn connection(&self, dealer: &DealerId, id: ConnectionId) -> StoreResult<Connection>;
    /// Ordered by id (creation order).
    async fn list_connections(
        &self,
        dealer: &DealerId,
        provider: Option<ProviderKind>,
        page: PageRequest,
    ) -> StoreResult<Page<Connection>>;
    /// Applies `changes` when the stored version equals `expected_version` (if given).
    async fn update_connection(
        &self,
        dealer: &DealerId,
        id: ConnectionId,
        changes: ConnectionChanges,
        expected_version: Option<i64>,
    ) -> StoreResult<Connection>;
    /// Removes the connection with its credentials.
    async fn delete_connection(
        &self,
        dealer: &DealerId,
        id: ConnectionId,
        expected_version: Option<i64>,
    ) -> StoreResult<()>;

    /// Stores (replacing) an upstream credential; the password is encrypted at rest.
    async fn put_credential(
        &self,
        dealer: &DealerId,
        id: ConnectionId,
        owner: &CredentialOwner,
        username: &str,
        password: &Secret,
    ) -> StoreResult<Credential>;
    async fn credential(
        &self,
        dealer: &DealerId,
        id: ConnectionId,
        owner: &CredentialOwner,
    ) -> StoreResult<Option<Credential>>;
    /// `Ok(false)` when there was none.
    async fn delete_credential(
        &self,
        dealer: &DealerId,
        id: ConnectionId,
        owner: &CredentialOwner,
    ) -> StoreResult<bool>;

    async fn inbound_credential(
        &self,
        dealer: &DealerId,
        id: ConnectionId,
    ) -> StoreResult<Option<InboundCredential>>;
    /// Replaces the inbound credential (the secret encrypted at rest).
    async fn set_inbound_credential(
        &self,
        dealer: &DealerId,
        id: ConnectionId,
        credential: &InboundCredential,
    ) -> StoreResult<()>;
}

/// The first answer to a request made with an `Idempotency-Key`, kept for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    /// Headers worth replaying (content type, location, etag).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What to do with a request that carries an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// First use: run the request, then `finish` (or `release` on failure).
    Started,
    /// Same key and same request: answer with the first response.
    Replay(StoredResponse),
    /// Same key, first request still running.
    InFlight,
    /// Same key, another request.
    Mismatch,
}

/// A key is scoped to its dealer and user, so two callers never collide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyScope {
    pub dealer: DealerId,
    pub user: String,
    pub key: String,
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims the key for a request whose method, path and body hash to `fingerprint`.
    /// A claim left in flight longer than `stale_after` counts as abandoned.
    async fn begin(
        &self,
        scope: &IdempotencyScope,
        fingerprint: &str,
        now: DateTime<Utc>,
        stale_after: chrono::Duration,
    ) -> StoreResult<IdempotencyBegin>;
    async fn finish(&self, scope: &IdempotencyScope, response: &StoredResponse) -> StoreResult<()>;
    /// Forgets an unfinished claim so the caller may retry (after a 5xx, say).
    async fn release(&self, scope: &IdempotencyScope) -> StoreResult<()>;
    /// Drops keys created before `before`; returns how many.
    async fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> StoreResult<u64>;
}
