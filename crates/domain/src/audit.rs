//! The audit trail (B8): who changed which link, when, through which
//! connection; and every change crosslink made to the data of a billing
//! record or a Stages record (sync, account sync, Auto Sync, callbacks),
//! with the fields before and after.

use std::collections::BTreeMap;

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

/// `subject` matches the billing id or the external id; `field` an entry
/// whose before or after names that field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditFilter {
    pub subject: Option<String>,
    pub actor: Option<String>,
    pub connection_id: Option<ConnectionId>,
    pub field: Option<String>,
}

/// The side of a link whose record a data change wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrittenSide {
    Billing,
    Stages,
}

/// Who made an automatic change: Auto Sync, or the Stages callback (by
/// its event id) that brought it.
pub const AUTO_SYNC_ACTOR: &str = "auto_sync";

pub fn callback_actor(event_id: &str) -> String {
    format!("stages_callback:{event_id}")
}

/// One record of one link, as a data change names it.
#[derive(Debug, Clone, Copy)]
pub struct ChangedRecord<'a> {
    pub connection_id: ConnectionId,
    pub kind: &'a str,
    pub billing_id: &'a str,
    pub external_id: &'a str,
}

/// The entry of a change of `after`'s fields on one side of a record by
/// `source` (sync, account_sync, auto_sync, stages_callback, push, edit):
/// action `<source>_to_<side>`, each field's value before and after.
/// `None` when nothing changed.
pub fn data_change(
    actor: &str,
    source: &str,
    side: WrittenSide,
    record: ChangedRecord<'_>,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Option<NewAuditEntry> {
    if after.is_empty() {
        return None;
    }
    let side = match side {
        WrittenSide::Billing => "billing",
        WrittenSide::Stages => "stages",
    };
    let before: BTreeMap<&String, &str> = after
        .keys()
        .map(|f| (f, before.get(f).map_or("", String::as_str)))
        .collect();
    Some(NewAuditEntry {
        actor: actor.to_owned(),
        action: format!("{source}_to_{side}"),
        connection_id: Some(record.connection_id),
        kind: record.kind.to_owned(),
        billing_id: Some(record.billing_id.to_owned()),
        external_id: Some(record.external_id.to_owned()),
        before: Some(serde_json::to_value(before).unwrap_or_default()),
        after: Some(serde_json::to_value(after).unwrap_or_default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_change_names_each_field_before_and_after() {
        let record = ChangedRecord {
            connection_id: ConnectionId(Uuid::nil()),
            kind: "site",
            billing_id: "S1",
            external_id: "10001",
        };
        let before = BTreeMap::from([
            ("city".to_owned(), "Columbus".to_owned()),
            ("name".to_owned(), "Home".to_owned()),
        ]);
        let after = BTreeMap::from([("city".to_owned(), "Dublin".to_owned())]);
        let e = data_change(
            "auto_sync",
            "auto_sync",
            WrittenSide::Stages,
            record,
            &before,
            &after,
        )
        .unwrap();
        assert_eq!(e.action, "auto_sync_to_stages");
        assert_eq!(e.before, Some(serde_json::json!({"city": "Columbus"})));
        assert_eq!(e.after, Some(serde_json::json!({"city": "Dublin"})));
        assert!(data_change(
            "u",
            "sync",
            WrittenSide::Billing,
            record,
            &before,
            &BTreeMap::new()
        )
        .is_none());
    }
}
