//! Bulk work (B7): one background job runs up to [`MAX_ITEMS`] items of one
//! operation (link, push, sync, account sync, test, end test) through the
//! same use cases as the single operations, records each item's outcome as
//! it goes, reports progress, and stops between two items when cancelled,
//! so an item is either done or not started, never half done.
//!
//! Items run one after another on the job's connection, so the Stages
//! client's per-connection rate limit paces them like any other caller.
//! An upstream that is down stops the attempt without failing the item: the
//! job waits out the outage (without using up attempts) and goes on from the
//! first item without an outcome.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::connection::ConnectionId;
use crate::events::{types, NewEvent};
use crate::jobs::{
    new_job, summary, Attempt, Done, Job, JobError, JobId, JobKind, JobState, NewJob, RunJob,
};
use crate::link::LinkId;
use crate::link_sync;
use crate::linking::{self, LinkRequest, LinkingPorts, PushRequest};
use crate::operations::OperationError;
use crate::reconcile::Progress;
use crate::stages::DeviceId;
use crate::stages_tab::{self, TestRequest};
use crate::store::{JobStore, PageRequest, StoreError, StoreResult};
use crate::sync::{FieldChoice, Side};
use crate::tenancy::{Caller, DealerId, Role, UserId};
use crate::upstream::{stages_client, ActingAs};
use crate::validation::ValidationError;
use crate::Page;

/// The most items one batch takes.
pub const MAX_ITEMS: usize = 10_000;

/// How many items the job reads at a time.
const CHUNK: u32 = 100;

/// A batch's id: the id of the job that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BatchId(pub Uuid);

impl BatchId {
    pub fn job_id(self) -> JobId {
        JobId(self.0)
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The single operation every item of a batch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchOperation {
    Link,
    Push,
    Sync,
    AccountSync,
    Test,
    EndTest,
}

impl BatchOperation {
    pub const ALL: [Self; 6] = [
        Self::Link,
        Self::Push,
        Self::Sync,
        Self::AccountSync,
        Self::Test,
        Self::EndTest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Link => "link",
            Self::Push => "push",
            Self::Sync => "sync",
            Self::AccountSync => "account_sync",
            Self::Test => "test",
            Self::EndTest => "end_test",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// A dry run is offered where the single operation offers one.
    pub fn offers_dry_run(self) -> bool {
        matches!(self, Self::Push | Self::Sync)
    }

    /// Operations on Stages records named by a connection of the batch;
    /// sync and account sync name links, which carry their connection.
    pub fn needs_connection(self) -> bool {
        !matches!(self, Self::Sync | Self::AccountSync)
    }
}

/// One item as its single operation takes it. Items are read a chunk at a
/// time, so the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchItemInput {
    Link(LinkRequest),
    Push(PushRequest),
    Sync {
        link_id: LinkId,
        choices: BTreeMap<String, FieldChoice>,
    },
    AccountSync {
        link_id: LinkId,
        side: Side,
    },
    Test {
        device_id: DeviceId,
        request: TestRequest,
    },
    EndTest {
        device_id: DeviceId,
        test_id: String,
    },
}

impl BatchItemInput {
    pub fn operation(&self) -> BatchOperation {
        match self {
            Self::Link(_) => BatchOperation::Link,
            Self::Push(_) => BatchOperation::Push,
            Self::Sync { .. } => BatchOperation::Sync,
            Self::AccountSync { .. } => BatchOperation::AccountSync,
            Self::Test { .. } => BatchOperation::Test,
            Self::EndTest { .. } => BatchOperation::EndTest,
        }
    }

    /// The record the item is about, as the caller named it, so a list of
    /// outcomes reads without the request beside it.
    pub fn subject(&self) -> String {
        match self {
            Self::Link(r) => r.billing_site_id.to_string(),
            Self::Push(PushRequest::Site {
                billing_site_id, ..
            }) => billing_site_id.to_string(),
            Self::Push(PushRequest::System(s)) => s.billing_system_id.to_string(),
            Self::Sync { link_id, .. } | Self::AccountSync { link_id, .. } => link_id.0.to_string(),
            Self::Test { device_id, .. } => device_id.to_string(),
            Self::EndTest { device_id, test_id } => format!("{device_id}/{test_id}"),
        }
    }
}

/// What a batch is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRequest {
    pub operation: BatchOperation,
    pub connection_id: Option<ConnectionId>,
    pub dry_run: bool,
    pub items: Vec<BatchItemInput>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BatchCounts {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Not run because the batch was cancelled (or ended) before them.
    pub cancelled: u64,
}

impl BatchCounts {
    /// Items with an outcome.
    pub fn done(&self) -> u64 {
        self.succeeded + self.failed + self.cancelled
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: BatchId,
    pub dealer: DealerId,
    pub operation: BatchOperation,
    pub connection_id: Option<ConnectionId>,
    pub dry_run: bool,
    pub counts: BatchCounts,
    /// How the batch ended, once its summary event is on the feed.
    pub finished_state: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewBatch {
    pub id: BatchId,
    pub dealer: DealerId,
    pub operation: BatchOperation,
    pub connection_id: Option<ConnectionId>,
    pub dry_run: bool,
    pub items: Vec<BatchItemInput>,
    pub created_by: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    Pending,
    Succeeded,
    Failed,
    Cancelled,
}

impl ItemState {
    pub const ALL: [Self; 4] = [
        Self::Pending,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One item and its outcome, as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    /// Its place in the request, from 0.
    pub index: u32,
    pub subject: String,
    pub state: ItemState,
    /// What the single operation answered, for a succeeded item.
    pub result: Option<serde_json::Value>,
    /// The problem the single operation answered, for a failed item.
    pub problem: Option<serde_json::Value>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The end of one item.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemOutcome {
    pub index: u32,
    /// `Succeeded` with its result, or `Failed` with its problem.
    pub state: ItemState,
    pub result: Option<serde_json::Value>,
    pub problem: Option<serde_json::Value>,
}

/// Renders an operation's error the way the single operation's answer
/// would show it (the HTTP layer's problem document), for a failed item.
pub type DescribeError = fn(&OperationError) -> serde_json::Value;

#[async_trait]
pub trait BatchStore: Send + Sync {
    /// The batch, its items and the job that runs it, in one transaction.
    async fn create_batch(&self, new: NewBatch, job: NewJob) -> StoreResult<(Batch, Job)>;
    async fn batch(&self, dealer: &DealerId, id: BatchId) -> StoreResult<Batch>;
    /// Newest first.
    async fn list_batches(&self, dealer: &DealerId, page: PageRequest) -> StoreResult<Page<Batch>>;
    /// In request order, of one state when given.
    async fn batch_items(
        &self,
        dealer: &DealerId,
        id: BatchId,
        state: Option<ItemState>,
        page: PageRequest,
    ) -> StoreResult<Page<BatchItem>>;
    /// The first `limit` items without an outcome, in request order.
    async fn pending_items(
        &self,
        dealer: &DealerId,
        id: BatchId,
        limit: u32,
    ) -> StoreResult<Vec<(u32, BatchItemInput)>>;
    /// Records one item's outcome (only while it is pending, so an item
    /// repeated after a lost lease counts once); returns the batch's counts.
    async fn record_item(
        &self,
        dealer: &DealerId,
        id: BatchId,
        outcome: ItemOutcome,
    ) -> StoreResult<BatchCounts>;
    /// Ends the batch, once: items still pending become cancelled, and the
    /// summary goes on the change feed. `false` when it had ended already.
    async fn finish_batch(
        &self,
        dealer: &DealerId,
        id: BatchId,
        state: JobState,
        summary: NewEvent,
    ) -> StoreResult<bool>;
}

/// What a batch needs: the single operations' ports, the queue, its own
/// store, and how a failed item's problem is shown.
#[derive(Clone, Copy)]
pub struct BatchPorts<'a> {
    pub linking: LinkingPorts<'a>,
    pub jobs: &'a dyn JobStore,
    pub batches: &'a dyn BatchStore,
    pub describe: DescribeError,
}

/// Checks the request and stores the batch with its queued job. Items are
/// checked one by one when they run, by their single operation; what is
/// checked here is what would fail every item alike.
pub async fn start_batch(
    ports: BatchPorts<'_>,
    caller: &Caller,
    request: BatchRequest,
) -> Result<(Batch, Job), OperationError> {
    let mut v = ValidationError::default();
    if request.items.is_empty() || request.items.len() > MAX_ITEMS {
        v.push(
            "items",
            format!("give 1 to {MAX_ITEMS} items (got {})", request.items.len()),
        );
    }
    if request.dry_run && !request.operation.offers_dry_run() {
        v.push(
            "dry_run",
            format!(
                "a dry run is offered for push and sync batches, as for the single operations, not for {}",
                request.operation.as_str()
            ),
        );
    }
    if let Some(i) = request
        .items
        .iter()
        .position(|item| item.operation() != request.operation)
    {
        v.push(
            format!("items[{i}]"),
            format!(
                "every item of a {} batch is a {0}",
                request.operation.as_str()
            ),
        );
    }
    match (request.operation.needs_connection(), request.connection_id) {
        (true, None) => v.push(
            "connection_id",
            format!(
                "a {} batch runs on one connection: name it",
                request.operation.as_str()
            ),
        ),
        (false, Some(_)) => v.push(
            "connection_id",
            "sync batches name links, which carry their connection: leave it out",
        ),
        _ => {}
    }
    v.into_result()?;
    if let Some(cid) = request.connection_id {
        let connection = match ports
            .linking
            .connections
            .connection(&caller.dealer, cid)
            .await
        {
            Ok(c) => c,
            Err(StoreError::NotFound) => {
                return Err(ValidationError::field("connection_id", "no such connection").into())
            }
            Err(e) => return Err(e.into()),
        };
        // The job acts with the caller's credentials (S2): without them the
        // batch is refused now, not accepted to fail every item later.
        stages_client(
            ports.linking.connections,
            ports.linking.stages,
            ActingAs::Caller(caller),
            &connection,
        )
        .await?;
    }
    let id = BatchId(Uuid::now_v7());
    let job = BatchJob { batch_id: id }.new_job(caller);
    let new = NewBatch {
        id,
        dealer: caller.dealer.clone(),
        operation: request.operation,
        connection_id: request.connection_id,
        dry_run: request.dry_run,
        items: request.items,
        created_by: caller.user.0.clone(),
    };
    Ok(ports.batches.create_batch(new, job).await?)
}

/// Cancels a batch: a queued one ends here, with its summary; a running one
/// stops before its next item.
pub async fn cancel_batch(
    ports: BatchPorts<'_>,
    caller: &Caller,
    id: BatchId,
) -> Result<(Batch, Job), OperationError> {
    // Another dealer's batch is not found before its job is touched.
    ports.batches.batch(&caller.dealer, id).await?;
    let job = ports.jobs.cancel_job(&caller.dealer, id.job_id()).await?;
    if job.state == JobState::Cancelled {
        finish_batch(ports.batches, &caller.dealer, id, JobState::Cancelled).await?;
    }
    // The job first: a batch's end is written before its job's.
    let job = ports.jobs.job(&caller.dealer, id.job_id()).await?;
    let batch = ports.batches.batch(&caller.dealer, id).await?;
    Ok((batch, job))
}

/// Ends a batch and puts its summary on the change feed, once.
pub async fn finish_batch(
    batches: &dyn BatchStore,
    dealer: &DealerId,
    id: BatchId,
    state: JobState,
) -> StoreResult<bool> {
    let batch = batches.batch(dealer, id).await?;
    let c = batch.counts;
    // Items still pending are cancelled by the end: count them so.
    let cancelled = c.total - c.succeeded - c.failed;
    let summary = NewEvent {
        event_type: types::BATCH_FINISHED.into(),
        subject_kind: "batch".into(),
        subject_id: id.to_string(),
        connection_id: batch.connection_id,
        data: serde_json::json!({
            "batch_id": id,
            "operation": batch.operation.as_str(),
            "dry_run": batch.dry_run,
            "state": state.as_str(),
            "counts": {
                "total": c.total,
                "succeeded": c.succeeded,
                "failed": c.failed,
                "cancelled": cancelled,
            },
            "summary": format!(
                "{} batch {}: {} items, {} succeeded, {} failed, {} not run",
                batch.operation.as_str(),
                state.as_str(),
                c.total,
                c.succeeded,
                c.failed,
                cancelled
            ),
        }),
    };
    batches.finish_batch(dealer, id, state, summary).await
}

/// The queued work of one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchJob {
    pub batch_id: BatchId,
}

impl JobKind for BatchJob {
    const KIND: &'static str = "batch";
    const MAX_ATTEMPTS: u32 = 5;
}

impl BatchJob {
    /// Runs with the credentials of `caller`, who asked for it; its id is the batch's.
    pub fn new_job(&self, caller: &Caller) -> NewJob {
        let mut job = new_job(&caller.dealer, self, &caller.user.0, Utc::now());
        job.id = self.batch_id.job_id();
        job
    }
}

/// A context that can run batches.
pub trait HasBatchPorts: Sync {
    fn batch_ports(&self) -> BatchPorts<'_>;
}

/// How one attempt of a batch stopped before its last item.
enum Stop {
    Cancelled,
    /// Another worker holds the job now and goes on.
    LeaseLost,
    Job(JobError),
}

#[async_trait]
impl<C: HasBatchPorts + ?Sized> RunJob<C> for BatchJob {
    async fn run(self, ctx: &C, attempt: Attempt<'_>) -> Result<Done, JobError> {
        let ports = ctx.batch_ports();
        let job = attempt.job;
        let stopped = run_items(ports, self.batch_id, attempt).await;
        let (end, outcome) = match stopped {
            Ok(()) => (
                Some(JobState::Succeeded),
                summary(&serde_json::json!({ "batch_id": self.batch_id })),
            ),
            Err(Stop::LeaseLost) => (
                None,
                Err(JobError::Transient(
                    "the lease was lost; another worker goes on".into(),
                )),
            ),
            Err(Stop::Cancelled) => (
                Some(JobState::Cancelled),
                Err(JobError::Permanent("cancelled".into())),
            ),
            // Waiting out an outage resumes at the same item.
            Err(Stop::Job(e @ JobError::Unavailable(_))) => (None, Err(e)),
            Err(Stop::Job(JobError::Transient(e))) => (
                (job.attempts >= job.max_attempts).then_some(JobState::Dead),
                Err(JobError::Transient(e)),
            ),
            Err(Stop::Job(JobError::Permanent(e))) => {
                (Some(JobState::Failed), Err(JobError::Permanent(e)))
            }
        };
        if let Some(end) = end {
            if let Err(e) = finish_batch(ports.batches, &job.dealer, self.batch_id, end).await {
                tracing::warn!(error = %e, "recording the end of a batch failed");
            }
        }
        outcome
    }
}

/// Runs the items without an outcome, in order, until none is left.
async fn run_items(ports: BatchPorts<'_>, id: BatchId, attempt: Attempt<'_>) -> Result<(), Stop> {
    let job = attempt.job;
    let store = |e: StoreError| Stop::Job(JobError::from(OperationError::Store(e)));
    let batch = ports.batches.batch(&job.dealer, id).await.map_err(store)?;
    // The batch acts with the credentials of whoever asked for it.
    let caller = Caller {
        dealer: job.dealer.clone(),
        user: UserId(job.created_by.clone()),
        roles: vec![Role::Operator],
    };
    let progress = attempt.progress(ports.jobs);
    let mut counts = batch.counts;
    loop {
        let chunk = ports
            .batches
            .pending_items(&job.dealer, id, CHUNK)
            .await
            .map_err(store)?;
        if chunk.is_empty() {
            progress.report(counts.done(), Some(counts.total)).await;
            return Ok(());
        }
        for (index, input) in chunk {
            // Between two items: the only place a batch stops.
            if !progress.report(counts.done(), Some(counts.total)).await {
                return Err(if attempt.still_ours(ports.jobs).await {
                    Stop::Cancelled
                } else {
                    Stop::LeaseLost
                });
            }
            let ran = run_item(ports.linking, &caller, &batch, input).await;
            let outcome = match ran {
                Ok(result) => ItemOutcome {
                    index,
                    state: ItemState::Succeeded,
                    result: Some(result),
                    problem: None,
                },
                Err(e) => {
                    // An upstream that is down fails no item: the batch
                    // waits and goes on from here.
                    if let JobError::Unavailable(why) = JobError::from(e.clone()) {
                        return Err(Stop::Job(JobError::Unavailable(why)));
                    }
                    ItemOutcome {
                        index,
                        state: ItemState::Failed,
                        result: None,
                        problem: Some((ports.describe)(&e)),
                    }
                }
            };
            counts = ports
                .batches
                .record_item(&job.dealer, id, outcome)
                .await
                .map_err(store)?;
        }
    }
}

/// One item through its single operation; the answer as that operation's.
async fn run_item(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    batch: &Batch,
    input: BatchItemInput,
) -> Result<serde_json::Value, OperationError> {
    let connection = || {
        batch.connection_id.ok_or_else(|| {
            OperationError::Invalid(ValidationError::field(
                "connection_id",
                "this batch names no connection",
            ))
        })
    };
    let value = |v: Result<serde_json::Value, serde_json::Error>| {
        v.map_err(|e| OperationError::Store(StoreError::Failed(e.to_string())))
    };
    match input {
        BatchItemInput::Link(mut request) => {
            // Every item runs on the batch's connection.
            request.connection_id = connection()?;
            let links = linking::link(ports, caller, request).await?;
            value(serde_json::to_value(serde_json::json!({ "links": links })))
        }
        BatchItemInput::Push(request) => {
            let outcome =
                linking::push(ports, caller, connection()?, request, batch.dry_run).await?;
            value(serde_json::to_value(outcome))
        }
        BatchItemInput::Sync { link_id, choices } => {
            let outcome =
                link_sync::sync_link(ports, caller, link_id, &choices, batch.dry_run).await?;
            value(serde_json::to_value(outcome))
        }
        BatchItemInput::AccountSync { link_id, side } => {
            let outcomes = link_sync::account_sync(ports, caller, link_id, side).await?;
            value(serde_json::to_value(
                serde_json::json!({ "items": outcomes }),
            ))
        }
        BatchItemInput::Test { device_id, request } => {
            let started =
                stages_tab::start_test(ports, caller, connection()?, &device_id, &request).await?;
            value(serde_json::to_value(started))
        }
        BatchItemInput::EndTest { device_id, test_id } => {
            stages_tab::end_test(ports, caller, connection()?, &device_id, &test_id).await?;
            Ok(serde_json::json!({ "ended": true }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_round_trip_their_names() {
        for op in BatchOperation::ALL {
            assert_eq!(BatchOperation::parse(op.as_str()), Some(op));
        }
        assert_eq!(BatchOperation::parse("unlink"), None);
        for s in ItemState::ALL {
            assert_eq!(ItemState::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn only_push_and_sync_offer_a_dry_run() {
        let offered: Vec<_> = BatchOperation::ALL
            .into_iter()
            .filter(|o| o.offers_dry_run())
            .collect();
        assert_eq!(offered, vec![BatchOperation::Push, BatchOperation::Sync]);
    }

    #[test]
    fn an_item_input_survives_storage() {
        let input = BatchItemInput::Sync {
            link_id: LinkId(Uuid::nil()),
            choices: BTreeMap::from([("name".to_owned(), FieldChoice::TakeBilling)]),
        };
        let stored = serde_json::to_string(&input).unwrap();
        let back: BatchItemInput = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, input);
        assert_eq!(back.operation(), BatchOperation::Sync);
    }
}
