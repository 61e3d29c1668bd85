//! The link table: which billing record is which external record on one
//! connection. The rules of S6: one link per record on each side.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::billing::BillingId;
use crate::connection::ConnectionId;
use crate::stages::{DeviceId, SiteNo};
use crate::tenancy::DealerId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LinkId(pub Uuid);

impl LinkId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for LinkId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for LinkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What kind of record a link joins: a billing site to a Stages site, or a
/// billing system to a Stages device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    Site,
    System,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Site => "site",
            Self::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "site" => Some(Self::Site),
            "system" => Some(Self::System),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub id: LinkId,
    pub dealer: DealerId,
    pub connection_id: ConnectionId,
    pub kind: LinkKind,
    pub billing_id: BillingId,
    /// The Stages site number or device id.
    pub external_id: String,
    /// A system link's site link.
    pub parent_id: Option<LinkId>,
    /// The mapped field values both sides agreed on at the last sync or push
    /// (a `sync::Snapshot`): the base of the three-way merge, and how a
    /// callback echoing our own push is recognised.
    pub last_synced: Option<serde_json::Value>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Link {
    /// The Stages site a site link holds.
    pub fn site_no(&self) -> SiteNo {
        SiteNo::known(&self.external_id)
    }

    /// The Stages device a system link holds.
    pub fn device_id(&self) -> DeviceId {
        DeviceId::known(&self.external_id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLink {
    pub id: LinkId,
    pub connection_id: ConnectionId,
    pub kind: LinkKind,
    pub billing_id: BillingId,
    pub external_id: String,
    pub parent_id: Option<LinkId>,
}

/// Filters of the mappings list; every given field must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkFilter {
    pub connection_id: Option<ConnectionId>,
    pub kind: Option<LinkKind>,
    pub billing_id: Option<String>,
    pub external_id: Option<String>,
    pub parent_id: Option<LinkId>,
}

/// A record someone deliberately unlinked, remembered so reconcile reports it
/// instead of linking it again. A new link of either record forgets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliberateUnlink {
    pub connection_id: ConnectionId,
    pub kind: LinkKind,
    pub billing_id: BillingId,
    pub external_id: String,
    pub unlinked_at: DateTime<Utc>,
    pub actor: String,
}

/// One change of an external id (edit link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relink {
    pub link_id: LinkId,
    pub new_external_id: String,
}

/// Turns a claim into a link (see `LinkStore::claim_links`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmLink {
    pub link_id: LinkId,
    /// The external record, when the claim could not name it yet (a push
    /// claims before Stages has numbered the new record).
    pub external_id: Option<String>,
}

/// A lease of claims: longer than any request that acts on Stages runs (a
/// push makes a handful of calls, each bounded by the client's timeout), so a
/// live claim is never taken over; short enough that the claim of a process
/// that died frees its records by itself. A lease is chosen over tracking
/// owners: a replica cannot tell whether another replica's request finished.
pub const CLAIM_LEASE_SECS: i64 = 300;

/// An external id that stands for a record Stages has not numbered yet. A
/// control character never occurs in a real one.
pub fn claim_placeholder(link_id: LinkId) -> String {
    format!("\u{1}claim {link_id}")
}
