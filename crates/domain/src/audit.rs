//! The audit trail (B8): who changed which link, when, through which connection.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::connection::ConnectionId;
use crate::tenancy::DealerId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAuditEntry {
    /// The user id (`sub`), or `system:<job>` for background work.
    pub actor: String,
    /// push, link, edit_link, unlink, reconcile_link, ...
    pub action: String,
    pub connection_id: Option<ConnectionId>,
    /// site, system, ...
    pub kind: String,
    pub billing_id: Option<String>,
    pub external_id: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: Uuid,
    pub dealer: DealerId,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub entry: NewAuditEntry,
}

/// `subject` matches the billing id or the external id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditFilter {
    pub subject: Option<String>,
    pub actor: Option<String>,
    pub connection_id: Option<ConnectionId>,
}
