//! Fields of a link that did not sync (S18, S19, B11): a conflict held because
//! both sides changed the field since the last sync, or a value Stages
//! refused. Each is kept on its link until it settles (the sides agree, a
//! resolution picks a side, billing corrects the refused value), listed in
//! the conflict inbox, and published once on the change feed
//! (`link.conflict`, `link.sync_failed`) so the billing system hears of it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::billing::BillingId;
use crate::connection::ConnectionId;
use crate::link::{LinkId, LinkKind};
use crate::store::{PageRequest, StoreResult};
use crate::tenancy::DealerId;
use crate::Page;

/// Why a field did not sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    /// Both sides changed it since the last sync; held by the `hold` policy.
    Conflict,
    /// Stages refused billing's value for good (a 4xx naming the reason).
    Refused,
}

impl IssueKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Conflict => "conflict",
            Self::Refused => "refused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Conflict, Self::Refused]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    /// The change-feed event that announces it.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::Conflict => crate::events::types::LINK_CONFLICT,
            Self::Refused => crate::events::types::LINK_SYNC_FAILED,
        }
    }
}

/// One field of one link that did not sync, as found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewFieldIssue {
    pub field: String,
    pub kind: IssueKind,
    pub billing_value: String,
    pub stages_value: String,
    pub last_synced: Option<String>,
    /// Stages' reason for a refusal.
    pub reason: Option<String>,
}

/// A stored field issue with the link it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldIssue {
    pub id: uuid::Uuid,
    pub link_id: LinkId,
    pub connection_id: ConnectionId,
    pub record_kind: LinkKind,
    pub billing_id: BillingId,
    pub external_id: String,
    #[serde(flatten)]
    pub issue: NewFieldIssue,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// What settling a link leaves to store, all at once: the values both sides
/// now agree on (the link's new base, see `Link::last_synced`) and its field
/// issues of each kind, as [`FieldIssueStore::record_field_issues`] takes
/// them. A job hands it back with its success, and the queue stores it in
/// the transaction that ends the job, so it lands only while the job still
/// holds its lease, at the cost of no commit of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSettlement {
    pub dealer: DealerId,
    pub link_id: LinkId,
    pub snapshot: serde_json::Value,
    pub conflicts: IssueUpdate,
    pub refusals: IssueUpdate,
    /// What was written to Stages to get there (B8).
    pub audit: Vec<crate::audit::NewAuditEntry>,
}

/// The issues of one kind found on a link, and the fields that settled.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IssueUpdate {
    pub found: Vec<NewFieldIssue>,
    pub settled: Vec<String>,
}

/// Filters of the inbox; every given one must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldIssueFilter {
    pub kind: Option<IssueKind>,
    pub connection_id: Option<ConnectionId>,
    pub link_id: Option<LinkId>,
    pub record_kind: Option<LinkKind>,
    pub field: Option<String>,
    /// Only issues first seen before this time (an age filter).
    pub seen_before: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait FieldIssueStore: Send + Sync {
    /// Records the link's issues of `kind` as `found` says: new ones and ones
    /// whose values changed are stored and published on the change feed in
    /// one transaction; the link's other issues of that kind among `settled`
    /// fields are removed. Fields in neither list keep what they had.
    /// Returns the issues that were new or changed.
    async fn record_field_issues(
        &self,
        dealer: &DealerId,
        link_id: LinkId,
        kind: IssueKind,
        found: Vec<NewFieldIssue>,
        settled: Vec<String>,
    ) -> StoreResult<Vec<FieldIssue>>;

    /// Newest first.
    async fn list_field_issues(
        &self,
        dealer: &DealerId,
        filter: &FieldIssueFilter,
        page: PageRequest,
    ) -> StoreResult<Page<FieldIssue>>;
}
