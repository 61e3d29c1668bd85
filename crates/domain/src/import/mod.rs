//! Alarm.com imports (A1 customers, A2 rep linking, A3 users, A4 run state, A5 precondition):
//! customers and users (reps) brought over from an Alarm.com connection into
//! the billing records, filtered on our side (ADC filters nothing), each record
//! once per connection, in a background run that records every record's
//! outcome with its effects, so a run killed at any point resumes where it
//! stopped and a later run imports only what is new.
//!
//! By use case: [`spec`] is what a run asks for and its rules; [`start`]
//! checks the precondition and stores a run with its job; [`job`] is that
//! job, which drives the run ([`run`]: read Alarm.com, write billing) and
//! ends it; [`mapping`] turns an Alarm.com customer or user into a billing
//! record; [`items`] is what a run records; [`follow`] reads, lists and
//! cancels runs. This module holds a stored run ([`Import`]) and its storage
//! port ([`ImportStore`]).

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::adc::AdcConnector;
use crate::billing::BillingId;
use crate::connection::ConnectionId;
use crate::events::NewEvent;
use crate::jobs::{Job, JobId, JobState, NewJob};
use crate::store::{BillingStore, ConnectionStore, PageRequest, StoreResult};
use crate::tenancy::DealerId;
use crate::Page;

#[cfg(test)]
mod fixtures;
pub mod follow;
pub mod items;
pub mod job;
pub mod mapping;
pub mod run;
pub mod spec;
pub mod start;

pub use follow::{cancel_import, import_items, import_with_job, list_imports, pace};
pub use items::{ImportCounts, ImportItem, ImportWrite, ItemOutcome, RecordOutcome};
pub use job::{finish_import, AdcImportJob, IMPORT_ATTEMPTS};
pub use mapping::{
    customer_billing_id, customer_fields, match_by_dealer_customer_id, user_billing_id,
    user_external_id, user_fields, CustomerMatch,
};
pub use run::{run_import, ImportRunError, RunSettings};
pub use spec::{
    CustomerFilters, CustomerOptions, ImportRequest, ImportSpec, RequestedFilters, RequestedIds,
    RequestedOptions, UserFilters, UserOptions,
};
pub use start::{
    filter_choices, import_source, start_import, unknown_filter_ids, unknown_roles, FilterChoices,
};

/// A run's id: the id of the job that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ImportId(pub Uuid);

impl ImportId {
    pub fn job_id(self) -> JobId {
        JobId(self.0)
    }
}

impl fmt::Display for ImportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a run brings over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportKind {
    /// ADC customers into billing customers.
    Customers,
    /// ADC reps (dealer logins) into billing users.
    Users,
}

impl ImportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customers => "customers",
            Self::Users => "users",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "customers" => Some(Self::Customers),
            "users" => Some(Self::Users),
            _ => None,
        }
    }
}

/// A stored run. Its state and progress are those of its job.
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    pub id: ImportId,
    pub dealer: DealerId,
    pub connection_id: ConnectionId,
    pub spec: ImportSpec,
    pub counts: ImportCounts,
    /// How the run ended, once its summary event is on the feed.
    pub finished_state: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewImport {
    pub id: ImportId,
    pub dealer: DealerId,
    pub connection_id: ConnectionId,
    pub spec: ImportSpec,
    pub created_by: String,
}

/// Storage of runs, their items, and which ADC record became which billing
/// record (unique per connection, kind and ADC id).
#[async_trait]
pub trait ImportStore: Send + Sync {
    /// The run and the job that runs it, in one transaction.
    async fn create_import(&self, new: NewImport, job: NewJob) -> StoreResult<(Import, Job)>;
    async fn import(&self, dealer: &DealerId, id: ImportId) -> StoreResult<Import>;
    /// Newest first.
    async fn list_imports(&self, dealer: &DealerId, page: PageRequest)
        -> StoreResult<Page<Import>>;
    /// In recording order, of one outcome when given.
    async fn import_items(
        &self,
        dealer: &DealerId,
        id: ImportId,
        outcome: Option<ItemOutcome>,
        page: PageRequest,
    ) -> StoreResult<Page<ImportItem>>;
    /// The ADC ids this run has recorded an outcome for (its checkpoint).
    async fn recorded_external_ids(
        &self,
        dealer: &DealerId,
        id: ImportId,
    ) -> StoreResult<Vec<String>>;
    /// Of `external_ids`, those imported before on the connection, with their billing ids.
    async fn imported_records(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        kind: ImportKind,
        external_ids: &[String],
    ) -> StoreResult<Vec<(String, BillingId)>>;
    /// The external ids of every record of `kind` imported on the connection.
    async fn all_imported_external_ids(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        kind: ImportKind,
    ) -> StoreResult<Vec<String>>;
    /// Every record of `kind` imported on the connection.
    async fn all_imported_records(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        kind: ImportKind,
    ) -> StoreResult<Vec<(String, BillingId)>>;
    /// Of `external_ids` (ADC customer ids), those with an ISP account on the
    /// connection (provisioned, linked, made through the Builder Program),
    /// with the billing customer each belongs to.
    async fn isp_linked_customers(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        external_ids: &[String],
    ) -> StoreResult<Vec<(String, BillingId)>>;
    /// Of `billing_ids`, the billing customers of the dealer that exist, each
    /// with the provider customer id of its ISP account on the connection
    /// when it has one (empty while that account is being provisioned).
    async fn billing_customers_among(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        billing_ids: &[String],
    ) -> StoreResult<Vec<(BillingId, Option<String>)>>;
    /// Of `billing_ids`, the billing users of the dealer that exist.
    async fn billing_users_among(
        &self,
        dealer: &DealerId,
        billing_ids: &[String],
    ) -> StoreResult<Vec<BillingId>>;
    /// Login name and id of every billing user that has a login name.
    async fn billing_user_logins(&self, dealer: &DealerId)
        -> StoreResult<Vec<(String, BillingId)>>;
    /// Counts `count` records of the run as imported before it ran: found
    /// in one look at its start and not listed one by one as items (a run
    /// with nothing new writes nothing per record). The number replaces the
    /// one an earlier attempt of the run set, so a resumed run counts each
    /// such record once; returns the run's counts.
    async fn record_imported_before(
        &self,
        dealer: &DealerId,
        id: ImportId,
        count: u64,
    ) -> StoreResult<ImportCounts>;
    /// Records the outcomes with their effects in one transaction, skipping
    /// records this run has recorded already; returns the run's counts.
    async fn record_outcomes(
        &self,
        dealer: &DealerId,
        id: ImportId,
        outcomes: Vec<RecordOutcome>,
    ) -> StoreResult<ImportCounts>;
    /// Marks the run ended and writes its summary event, once: `Ok(false)`
    /// when it had ended already (nothing written).
    async fn finish_import(
        &self,
        dealer: &DealerId,
        id: ImportId,
        state: JobState,
        summary: NewEvent,
    ) -> StoreResult<bool>;
}

/// The ports a run uses.
#[derive(Clone, Copy)]
pub struct ImportPorts<'a> {
    pub connections: &'a dyn ConnectionStore,
    pub billing: &'a dyn BillingStore,
    pub imports: &'a dyn ImportStore,
    pub adc: &'a dyn AdcConnector,
}
