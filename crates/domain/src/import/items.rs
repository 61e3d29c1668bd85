//! What a run records (A4): its counts, and per record its outcome, as one is
//! recorded with its effects (the billing record it writes, the events it
//! publishes, the match it remembers) and as it is stored and listed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::billing::{BillingId, CustomerFields, UserFields};
use crate::events::NewEvent;
use crate::isp::CompletedIspAccount;

/// How many records a run has seen, and what became of them (A4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ImportCounts {
    pub seen: u64,
    pub imported: u64,
    pub already_imported: u64,
    pub filtered_out: u64,
    pub failed: u64,
}

/// What became of one record of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemOutcome {
    Imported,
    AlreadyImported,
    FilteredOut,
    Failed,
}

impl ItemOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Imported => "imported",
            Self::AlreadyImported => "already_imported",
            Self::FilteredOut => "filtered_out",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Imported,
            Self::AlreadyImported,
            Self::FilteredOut,
            Self::Failed,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// One record's outcome, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportItem {
    /// Order of recording within the run.
    pub seq: i64,
    /// The ADC customer id or user support id.
    pub external_id: String,
    pub outcome: ItemOutcome,
    /// The billing record it became or already was.
    pub billing_id: Option<BillingId>,
    /// Why it was filtered out or failed, or how it was matched.
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The billing record an imported record becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportWrite {
    Customer {
        id: BillingId,
        fields: CustomerFields,
    },
    User {
        id: BillingId,
        fields: UserFields,
    },
}

impl ImportWrite {
    pub fn billing_id(&self) -> &BillingId {
        match self {
            Self::Customer { id, .. } | Self::User { id, .. } => id,
        }
    }
}

/// One record's outcome, to be recorded with its effects.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordOutcome {
    /// Create the billing record, remember where it came from, publish `events`.
    /// The store records `AlreadyImported` instead when the record was
    /// imported meanwhile, and `Failed` when the billing id is taken.
    Imported {
        external_id: String,
        write: Box<ImportWrite>,
        events: Vec<NewEvent>,
        note: Option<String>,
    },
    AlreadyImported {
        external_id: String,
        billing_id: BillingId,
    },
    /// The record is one billing already holds (matched before create): it
    /// is remembered as imported into `billing_id`, so later runs count it
    /// without reading it, and its ISP account link is recorded when
    /// `link` is given (the billing customer had none). Recorded as
    /// `AlreadyImported` with `how` as the reason.
    Matched {
        external_id: String,
        billing_id: BillingId,
        how: String,
        link: Option<CompletedIspAccount>,
    },
    /// A dry run's outcome: only the item is recorded, nothing else.
    Planned {
        external_id: String,
        outcome: ItemOutcome,
        billing_id: Option<BillingId>,
        reason: String,
    },
    FilteredOut {
        external_id: String,
        reason: String,
    },
    Failed {
        external_id: String,
        reason: String,
    },
}

impl RecordOutcome {
    pub fn external_id(&self) -> &str {
        match self {
            Self::Imported { external_id, .. }
            | Self::AlreadyImported { external_id, .. }
            | Self::Matched { external_id, .. }
            | Self::Planned { external_id, .. }
            | Self::FilteredOut { external_id, .. }
            | Self::Failed { external_id, .. } => external_id,
        }
    }
}
