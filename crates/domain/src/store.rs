//! The persistence ports. `link-store` implements them on SQLite and PostgreSQL;
//! every call is scoped by dealer so one tenant never reaches another's rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::connection::{
    Connection, ConnectionChanges, ConnectionId, ConnectionUpdate, Credential, CredentialOwner,
    InboundCredential, NewConnection, ProviderKind,
};
use crate::tenancy::DealerId;
use crate::{Page, Secret};

mod callbacks;
pub use callbacks::{InboundLookup, InboxStore, Received};

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
    /// A reference the caller gave (a site's customer, a system's site)
    /// names no record of this dealer: the caller's input, named by field.
    #[error("{message}")]
    UnknownReference { field: String, message: String },
    /// The database answered but refused the statement: a bug, never a
    /// reason to say it is unreachable. Details are logged, not shown.
    #[error("database statement failed: {0}")]
    Failed(String),
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
    /// Credentials stay bound to their endpoint (S1): see
    /// [`ConnectionStore::update_connection_as`], which this is as `system`.
    async fn update_connection(
        &self,
        dealer: &DealerId,
        id: ConnectionId,
        changes: ConnectionChanges,
        expected_version: Option<i64>,
    ) -> StoreResult<Connection> {
        self.update_connection_as(dealer, id, changes, expected_version, None, "system")
            .await
            .map(|u| u.connection)
    }
    /// Applies `changes` as `update_connection` does. Credentials are bound
    /// to the endpoint they were given for: when `changes` move the endpoint
    /// to another scheme, host or port, the same transaction deletes the
    /// connection's dealer and per-user credentials and, if any were
    /// deleted, writes an audit entry by `actor` (action `drop_credentials`,
    /// kind `connection`, the old and new endpoint as before and after).
    /// `dealer_credential` (username, password), when given, is then stored
    /// as the dealer credential, whether or not the endpoint moved.
    async fn update_connection_as(
        &self,
        dealer: &DealerId,
        id: ConnectionId,
        changes: ConnectionChanges,
        expected_version: Option<i64>,
        dealer_credential: Option<(String, Secret)>,
        actor: &str,
    ) -> StoreResult<ConnectionUpdate>;
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
    /// Queues the connection's migration (S20) at most once: when
    /// `migrate_on_connect` is on and the connection has no migration yet, or
    /// only one that failed, died or was cancelled, enqueues `job` (which may
    /// coalesce with a queued job of its key) and records the job on the
    /// connection, in one transaction. Replicas arming at once queue one job;
    /// `None` when nothing was queued. The connection's version stays.
    async fn start_migration(
        &self,
        dealer: &DealerId,
        id: ConnectionId,
        job: crate::jobs::NewJob,
    ) -> StoreResult<Option<crate::jobs::Job>>;
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

use crate::audit::{AuditEntry, AuditFilter, NewAuditEntry};
use crate::billing::{
    BillingCustomer, BillingId, BillingSite, BillingSystem, BillingUser, BillingWrite,
    BillingWritten, CustomerFields, SiteFields, SystemFields, Upserted, UserFields,
};
use crate::events::{
    Event, NewEvent, NewWebhookSubscription, SubscriptionChanges, SubscriptionId,
    WebhookSubscription,
};
use crate::jobs::{Job, JobFailure, JobId, JobState, NewJob};
use crate::link::{
    ConfirmLink, DeliberateUnlink, Link, LinkFilter, LinkId, LinkKind, NewLink, Relink,
};

/// The billing records. Upserts check `expected_version` (If-Match) when given
/// and bump the version; references (a site's customer, a system's site) must
/// exist (`Conflict` naming the missing record otherwise).
///
/// Auto Sync outbox (S19): when an upsert of a site or system changes its
/// fields, the same transaction enqueues, for each of its links on a
/// connection that is active with `auto_sync` on, a job of kind
/// `auto_sync_push` with payload `{"link_id": ...}`, `unique_key`
/// `auto_sync:<link id>` (so quick edits coalesce into one queued push that
/// reads the latest values when it runs) and 8 attempts.
#[async_trait]
pub trait BillingStore: Send + Sync {
    async fn upsert_customer(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        fields: CustomerFields,
        expected_version: Option<i64>,
    ) -> StoreResult<Upserted<BillingCustomer>>;
    async fn customer(&self, dealer: &DealerId, id: &BillingId) -> StoreResult<BillingCustomer>;
    /// `Conflict` while sites still belong to the customer.
    async fn delete_customer(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        expected_version: Option<i64>,
    ) -> StoreResult<()>;
    /// Case-insensitive search over names, business name, phone (digits
    /// compared alone), email and address; ordered by id.
    async fn search_customers(
        &self,
        dealer: &DealerId,
        q: Option<&str>,
        page: PageRequest,
    ) -> StoreResult<Page<BillingCustomer>>;

    /// The sites of a customer, ordered by id; `NotFound` for a missing customer.
    async fn sites_of_customer(
        &self,
        dealer: &DealerId,
        customer_id: &BillingId,
    ) -> StoreResult<Vec<BillingSite>>;

    /// Writes the site (and, when it changed, the Auto Sync pushes of its
    /// links) and answers with its links, read in the same transaction: a
    /// billing edit costs one commit.
    async fn upsert_site_linked(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        fields: SiteFields,
        expected_version: Option<i64>,
    ) -> StoreResult<(Upserted<BillingSite>, Vec<Link>)>;
    async fn upsert_site(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        fields: SiteFields,
        expected_version: Option<i64>,
    ) -> StoreResult<Upserted<BillingSite>> {
        let (site, _) = self
            .upsert_site_linked(dealer, id, fields, expected_version)
            .await?;
        Ok(site)
    }
    async fn site(&self, dealer: &DealerId, id: &BillingId) -> StoreResult<BillingSite>;
    /// `Conflict` while systems belong to the site or the site is linked.
    async fn delete_site(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        expected_version: Option<i64>,
    ) -> StoreResult<()>;

    /// As [`BillingStore::upsert_site_linked`], for a system.
    async fn upsert_system_linked(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        fields: SystemFields,
        expected_version: Option<i64>,
    ) -> StoreResult<(Upserted<BillingSystem>, Vec<Link>)>;
    async fn upsert_system(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        fields: SystemFields,
        expected_version: Option<i64>,
    ) -> StoreResult<Upserted<BillingSystem>> {
        let (system, _) = self
            .upsert_system_linked(dealer, id, fields, expected_version)
            .await?;
        Ok(system)
    }
    async fn system(&self, dealer: &DealerId, id: &BillingId) -> StoreResult<BillingSystem>;
    /// `Conflict` while the system is linked.
    async fn delete_system(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        expected_version: Option<i64>,
    ) -> StoreResult<()>;
    /// The systems of a site, ordered by id.
    async fn systems_of_site(
        &self,
        dealer: &DealerId,
        site_id: &BillingId,
    ) -> StoreResult<Vec<BillingSystem>>;

    async fn upsert_user(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        fields: UserFields,
        expected_version: Option<i64>,
    ) -> StoreResult<Upserted<BillingUser>>;
    async fn user(&self, dealer: &DealerId, id: &BillingId) -> StoreResult<BillingUser>;
    async fn delete_user(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        expected_version: Option<i64>,
    ) -> StoreResult<()>;

    /// A change the service itself makes, written with its events in one
    /// transaction (each event also enqueues a `webhook_delivery` job
    /// `{"subscription_id", "event_id"}` per active subscription that wants
    /// it). Auto Sync jobs are enqueued as for an upsert, except for links on
    /// `origin`: the connection the change came from must not get it back.
    /// A write that changes nothing records nothing (no version, events,
    /// audit entries or pushes). `audit` names the data change (B8).
    async fn write_billing(
        &self,
        dealer: &DealerId,
        write: BillingWrite,
        events: Vec<NewEvent>,
        origin: Option<crate::connection::ConnectionId>,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<BillingWritten>;

    /// `write_billing` of a record that must still be at `version`
    /// (`VersionMismatch` otherwise): a write worked out from a read does
    /// not undo a change someone made since.
    async fn write_billing_at(
        &self,
        dealer: &DealerId,
        write: BillingWrite,
        version: i64,
        events: Vec<NewEvent>,
        origin: Option<crate::connection::ConnectionId>,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<BillingWritten>;

    /// Which of these billing ids exist as records of `kind` (site or system).
    async fn existing_billing_ids(
        &self,
        dealer: &DealerId,
        kind: LinkKind,
        ids: &[String],
    ) -> StoreResult<Vec<String>>;
}

/// The link table. Unique constraints on (connection, kind, billing id) and
/// (connection, kind, external id) back the one-link-per-record rule; every
/// change is written with its audit entries in one transaction.
#[async_trait]
pub trait LinkStore: Send + Sync {
    /// Inserts all or none. `Conflict` says which record is already linked.
    /// Forgets deliberate unlinks of the records now linked.
    async fn insert_links(
        &self,
        dealer: &DealerId,
        links: Vec<NewLink>,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<Vec<Link>>;
    async fn link(&self, dealer: &DealerId, id: LinkId) -> StoreResult<Link>;
    /// Everything settling a link reads, in one read: the link, its
    /// connection, the connection's dealer credential and the linked billing
    /// record. `NotFound` when the link is gone (or still only a claim).
    async fn link_to_settle(
        &self,
        dealer: &DealerId,
        id: LinkId,
    ) -> StoreResult<crate::link_sync::LinkToSettle>;
    /// [`LinkStore::link_to_settle`] found by its Stages record: `None` when the record has no link.
    async fn link_to_settle_of_record(
        &self,
        dealer: &DealerId,
        record: &crate::link_sync::jobs::StagesRecord,
    ) -> StoreResult<Option<crate::link_sync::LinkToSettle>>;
    /// Ordered by id.
    async fn list_links(
        &self,
        dealer: &DealerId,
        filter: &LinkFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Link>>;
    /// The links of one billing record on every connection.
    async fn links_of_billing(
        &self,
        dealer: &DealerId,
        kind: LinkKind,
        billing_id: &BillingId,
    ) -> StoreResult<Vec<Link>>;
    /// Which of `external_ids` are linked on the connection.
    async fn linked_external_ids(
        &self,
        dealer: &DealerId,
        connection_id: crate::connection::ConnectionId,
        kind: LinkKind,
        external_ids: &[String],
    ) -> StoreResult<Vec<String>>;
    /// Points links at other external records, all or none; `expected` checks
    /// one link's version (If-Match). `Conflict` when a target is already linked.
    async fn relink(
        &self,
        dealer: &DealerId,
        changes: Vec<Relink>,
        expected: Option<(LinkId, i64)>,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<Vec<Link>>;
    /// Claims, for an edit, the external records `changes` move links to,
    /// before acting upstream: one claim per change, held until `lease` from
    /// now, all or none. Each link keeps its current record until
    /// `confirm_relinks`. The unique constraint on the external side decides
    /// between writers; `Conflict` names the link (or the link being edited)
    /// holding a record. Returns the claims' ids (for `release_links`).
    async fn claim_relinks(
        &self,
        dealer: &DealerId,
        changes: Vec<Relink>,
        lease: chrono::Duration,
    ) -> StoreResult<Vec<LinkId>>;
    /// Drops own `claims` and applies `relink`, in one transaction. `Conflict`
    /// when a claim was taken over after its lease.
    async fn confirm_relinks(
        &self,
        dealer: &DealerId,
        claims: Vec<LinkId>,
        changes: Vec<Relink>,
        expected: Option<(LinkId, i64)>,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<Vec<Link>>;
    /// Removes links and remembers each as a deliberate unlink by `actor`.
    async fn unlink(
        &self,
        dealer: &DealerId,
        ids: &[LinkId],
        actor: &str,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<Vec<Link>>;
    /// Removes links without remembering them: undoes links whose Stages
    /// write failed. Children go with their site link.
    async fn discard_links(&self, dealer: &DealerId, ids: &[LinkId]) -> StoreResult<()>;
    /// Claims records before acting upstream: inserts the links all or none
    /// as claims held until `lease` from now. The unique constraints count a
    /// claim, reads do not list it; a claim past its lease is taken over.
    /// `Conflict` names the link (or claim) holding a record.
    async fn claim_links(
        &self,
        dealer: &DealerId,
        links: Vec<NewLink>,
        lease: chrono::Duration,
    ) -> StoreResult<Vec<Link>>;
    /// Turns own claims into links, all or none, each with its external id
    /// when it was not known at claim time. `Conflict` when a claim was taken over.
    async fn confirm_links(
        &self,
        dealer: &DealerId,
        confirms: Vec<ConfirmLink>,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<Vec<Link>>;
    /// Drops own claims that are still claims (confirmed links stay).
    async fn release_links(&self, dealer: &DealerId, ids: &[LinkId]) -> StoreResult<()>;
    /// Keeps the values both sides agreed on (see `Link::last_synced`); the
    /// link's version does not change. `audit` names what was written to
    /// Stages to get there (B8), recorded in the same transaction.
    async fn set_link_snapshot(
        &self,
        dealer: &DealerId,
        id: LinkId,
        snapshot: serde_json::Value,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<()>;
    async fn deliberate_unlinks(
        &self,
        dealer: &DealerId,
        connection_id: crate::connection::ConnectionId,
    ) -> StoreResult<Vec<DeliberateUnlink>>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn record_audit(&self, dealer: &DealerId, entries: Vec<NewAuditEntry>)
        -> StoreResult<()>;
    /// Newest first.
    async fn list_audit(
        &self,
        dealer: &DealerId,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditEntry>>;
}

/// What a worker asks of [`JobStore::claim_jobs`].
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The kinds the worker runs.
    pub kinds: &'a [String],
    pub worker: &'a str,
    pub lease: chrono::Duration,
    pub now: DateTime<Utc>,
    /// Most jobs to take.
    pub limit: usize,
    /// Also take back the jobs whose lease ran out (first), or end them if
    /// asked to stop or out of attempts: done now and then, not per claim.
    pub settle_lost_leases: bool,
    /// Most jobs of one dealer running at once, on every replica (0: no
    /// cap), so one dealer's slow jobs never hold every slot (B15).
    pub max_running_per_dealer: usize,
    /// At most this many jobs of each of these kinds (the worker's room
    /// for a kind it runs only so many of at once).
    pub most_of_kind: &'a [(String, usize)],
}

/// The durable job queue. Workers of any replica claim due jobs with a lease
/// (`FOR UPDATE SKIP LOCKED` on PostgreSQL); a job whose lease ran out is
/// claimed again, so handlers must be idempotent.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// With a `unique_key`, a *queued* job of that key is returned instead of a
    /// new one (edits coalesce); a queued job is not claimed while another job
    /// of its key runs, so one key never runs twice at once.
    async fn enqueue(&self, job: NewJob) -> StoreResult<Job>;
    /// Takes up to `claim.limit` due jobs of these kinds (queued and due, or
    /// running with an expired lease) in one go, shared out fairly between
    /// dealers (the fewest running first, none past its cap, interactive
    /// kinds before bulk ones, then the oldest), no two of one serial or
    /// unique key, counts their attempts, and leases them to `claim.worker`.
    async fn claim_jobs(&self, claim: Claim<'_>) -> StoreResult<Vec<Job>>;
    /// [`JobStore::claim_jobs`] of one job.
    async fn claim_job(
        &self,
        kinds: &[String],
        worker: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Job>> {
        let claim = Claim {
            kinds,
            worker,
            lease,
            now,
            limit: 1,
            settle_lost_leases: true,
            max_running_per_dealer: 0,
            most_of_kind: &[],
        };
        Ok(self.claim_jobs(claim).await?.pop())
    }
    /// Extends the leases of those of `ids` that still run under `worker`, in
    /// one statement; answers how many it extended.
    async fn renew_leases(
        &self,
        worker: &str,
        ids: &[JobId],
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// `Ok(false)` when the worker no longer holds the lease.
    async fn renew_lease(
        &self,
        id: JobId,
        worker: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        Ok(self.renew_leases(worker, &[id], lease, now).await? == 1)
    }
    /// Records progress; `Ok(false)` when the lease is lost or a cancel was asked (stop working).
    async fn job_progress(
        &self,
        id: JobId,
        worker: &str,
        done: u64,
        total: Option<u64>,
    ) -> StoreResult<bool>;
    async fn complete_job(
        &self,
        id: JobId,
        worker: &str,
        summary: serde_json::Value,
    ) -> StoreResult<()>;
    /// Records the success of several jobs of `worker` in one transaction;
    /// answers the ids whose lease the worker had lost (not recorded: they
    /// run again where they are leased now).
    /// Each job's settlement and processed callback, if any, are stored in
    /// the same transaction.
    async fn complete_jobs(
        &self,
        worker: &str,
        done: Vec<(JobId, crate::jobs::Done)>,
    ) -> StoreResult<Vec<JobId>>;
    /// Returns the state the job ends in (queued for a retry, dead, failed, or
    /// cancelled when a newer job of its key is already queued: it supersedes the retry).
    async fn fail_job(&self, id: JobId, worker: &str, failure: JobFailure)
        -> StoreResult<JobState>;
    async fn job(&self, dealer: &DealerId, id: JobId) -> StoreResult<Job>;
    /// Newest first.
    async fn list_jobs(
        &self,
        dealer: &DealerId,
        state: Option<JobState>,
        kind: Option<&str>,
        page: PageRequest,
    ) -> StoreResult<Page<Job>>;
    /// A queued job is cancelled at once; a running one is asked to stop
    /// (its next `job_progress` answers false) and ends cancelled.
    async fn cancel_job(&self, dealer: &DealerId, id: JobId) -> StoreResult<Job>;
    /// A dead or failed job goes back to the queue with fresh attempts.
    async fn retry_job(&self, dealer: &DealerId, id: JobId) -> StoreResult<Job>;
}

/// The change feed.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Events after `after` (a `seq`), oldest first, of the given types (all
    /// when empty), at most `limit`.
    async fn list_events(
        &self,
        dealer: &DealerId,
        after: Option<i64>,
        types: &[String],
        limit: u32,
    ) -> StoreResult<Vec<Event>>;
    async fn event(&self, dealer: &DealerId, id: uuid::Uuid) -> StoreResult<Event>;
    /// Records events that are not billing writes (e.g. an unmatched callback),
    /// with their webhook deliveries, in one transaction.
    async fn record_events(
        &self,
        dealer: &DealerId,
        events: Vec<NewEvent>,
    ) -> StoreResult<Vec<Event>>;
}

/// Outbound webhook subscriptions; secrets encrypted at rest.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn create_subscription(
        &self,
        dealer: &DealerId,
        new: NewWebhookSubscription,
    ) -> StoreResult<WebhookSubscription>;
    async fn subscription(
        &self,
        dealer: &DealerId,
        id: SubscriptionId,
    ) -> StoreResult<WebhookSubscription>;
    async fn list_subscriptions(
        &self,
        dealer: &DealerId,
        page: PageRequest,
    ) -> StoreResult<Page<WebhookSubscription>>;
    async fn update_subscription(
        &self,
        dealer: &DealerId,
        id: SubscriptionId,
        changes: SubscriptionChanges,
        expected_version: Option<i64>,
    ) -> StoreResult<WebhookSubscription>;
    async fn delete_subscription(&self, dealer: &DealerId, id: SubscriptionId) -> StoreResult<()>;
    /// The signing secret (decrypted) for a delivery.
    async fn subscription_secret(
        &self,
        dealer: &DealerId,
        id: SubscriptionId,
    ) -> StoreResult<Secret>;
    /// Marks it disabled with the reason (e.g. the receiver answered 410).
    async fn disable_subscription(
        &self,
        dealer: &DealerId,
        id: SubscriptionId,
        reason: &str,
    ) -> StoreResult<()>;
}

/// A kind of history that piles up as the service works, and that the purger
/// (B15) deletes once it is older than its retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum History {
    /// The change feed; an event a queued or running webhook delivery will
    /// still read is kept.
    Events,
    Audit,
    CallbackLog,
    IdempotencyKeys,
    /// Succeeded and cancelled jobs, by when they ended.
    FinishedJobs,
    /// Dead jobs and jobs failed for good, by when they ended.
    DeadJobs,
    /// The outcome of each record of an import, by when the import ended.
    ImportItems,
    /// Batches and imports themselves (their items and their job with
    /// them), by when they ended.
    Runs,
}

impl History {
    pub const ALL: [History; 8] = [
        History::Events,
        History::Audit,
        History::CallbackLog,
        History::IdempotencyKeys,
        History::FinishedJobs,
        History::DeadJobs,
        History::ImportItems,
        History::Runs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Audit => "audit",
            Self::CallbackLog => "callback_log",
            Self::IdempotencyKeys => "idempotency_keys",
            Self::FinishedJobs => "finished_jobs",
            Self::DeadJobs => "dead_jobs",
            Self::ImportItems => "import_items",
            Self::Runs => "runs",
        }
    }
}

/// The size of one table, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFigures {
    pub table: &'static str,
    pub rows: u64,
    /// When its oldest row was written; `None` when it is empty.
    pub oldest: Option<DateTime<Utc>>,
}

/// Bounded growth (B15): history is deleted in small batches, each its own
/// short statement, so a purge never holds locks that requests wait on.
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Deletes at most `limit` rows of `history` written (or, for jobs and
    /// import items, ended) before `before`; returns how many went. Fewer
    /// than `limit` means none is left. Never deletes a row still needed: a
    /// queued or running job, a job a batch, an import or a connection's
    /// migration reads its state from, an event a pending delivery will
    /// send, the items of an import that has not ended, a batch or an import
    /// that has not ended.
    async fn purge_history(
        &self,
        history: History,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64>;

    /// Rows and the oldest row of each table history piles up in, and of links.
    async fn table_figures(&self) -> StoreResult<Vec<TableFigures>>;
}
