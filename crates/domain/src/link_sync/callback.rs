//! Updates from Stages (S18): applying a stored Stages callback about a
//! linked record settles the link as an Auto Sync push does, and says how it
//! ended (applied, held, echo, ...); a callback about a record not linked on
//! the connection is reported as an event.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::audit;
use crate::connection::{Connection, ConnectionId};
use crate::events::{types, NewEvent};
use crate::field_issues::LinkSettlement;
use crate::link::LinkKind;
use crate::linking::LinkingPorts;
use crate::operations::OperationError;
use crate::stages::{StagesCallback, StagesCallbackEvent, StagesError};
use crate::store::{EventStore, StoreError};
use crate::sync::{self, Snapshot, Values};
use crate::tenancy::DealerId;
use crate::upstream::stages_client_with;

use super::jobs::{auto_sync_on, StagesRecord};
use super::settle::{settle, Settled};
use super::sides::{sides_with, snapshot_of, LinkToSettle, Sides};
use super::write::By;

/// What applying a Stages callback came to (a job summary's `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackResult {
    /// Billing took Stages' values.
    Applied,
    /// A field it names changed on both sides: held as a conflict.
    Held,
    /// Our own push coming back: Stages holds what was last synced.
    Echo,
    /// A field it names is one callbacks do not carry; a sync takes it.
    AwaitingSync,
    Unchanged,
    /// The Stages record is not linked on the connection.
    Unmatched,
    /// The Stages record no longer exists.
    Gone,
    /// An event answered when it is received, not applied later.
    Unsupported,
}

impl CallbackResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Held => "held",
            Self::Echo => "echo",
            Self::AwaitingSync => "awaiting_sync",
            Self::Unchanged => "unchanged",
            Self::Unmatched => "unmatched",
            Self::Gone => "gone",
            Self::Unsupported => "unsupported",
        }
    }
}

/// How a Stages callback ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallbackOutcome {
    pub outcome: CallbackResult,
    pub applied: Values,
    pub detail: String,
    /// The link's new base and field issues, stored with the job's end.
    #[serde(skip)]
    pub settlement: Option<LinkSettlement>,
}

/// Updates from Stages (S18): a callback about a linked record settles the
/// link as an Auto Sync push does (`sync::decide`, one rule for both
/// directions): Stages' changes that its callbacks carry (`site.updated`:
/// address, info, phone; `device.updated`: transmitter code) reach billing,
/// a field billing changed too is held as a conflict rather than
/// overwritten, and billing's own pending changes go to Stages when Auto Sync
/// is on. The values are read from Stages when the callback is applied, so
/// callbacks applied out of order still leave billing with Stages' latest;
/// our own push coming back (an echo) finds both sides equal. Unknown or
/// unlinked records are reported as events.
pub async fn apply_stages_callback(
    ports: LinkingPorts<'_>,
    events: &dyn EventStore,
    dealer: &DealerId,
    connection_id: ConnectionId,
    callback: &StagesCallback,
) -> Result<CallbackOutcome, OperationError> {
    let (kind, external_id, changes) = match &callback.event {
        StagesCallbackEvent::SiteUpdated {
            site_no, changes, ..
        } => (LinkKind::Site, site_no.as_str(), changes),
        StagesCallbackEvent::DeviceUpdated {
            device_id, changes, ..
        } => (LinkKind::System, device_id.as_str(), changes),
        StagesCallbackEvent::SendToBilling { .. } => {
            return Ok(not_settled(
                CallbackResult::Unsupported,
                "site.send_to_billing is answered when it is received".into(),
            ))
        }
    };
    // One read of everything on our side, as an Auto Sync push: callbacks
    // come in bursts.
    let record = StagesRecord {
        connection_id,
        kind,
        external_id: external_id.to_owned(),
    };
    let read = ports
        .links
        .link_to_settle_of_record(dealer, &record)
        .await?;
    let Some(LinkToSettle {
        link,
        connection,
        dealer_credential,
        billing,
    }) = read
    else {
        let connection = ports.connections.connection(dealer, connection_id).await?;
        return unmatched(events, &connection, kind, external_id, changes).await;
    };
    let api = stages_client_with(ports.stages, &connection, dealer_credential)?;
    let billing = billing.ok_or(StoreError::NotFound)?;
    let base = snapshot_of(&link);
    let auto_sync = auto_sync_on(connection.status, connection.auto_sync);
    let sides = match sides_with(link, connection, api, billing).await {
        Ok(sides) => sides,
        Err(OperationError::Upstream {
            error: StagesError::NotFound(_),
            ..
        }) => {
            return Ok(not_settled(
                CallbackResult::Gone,
                format!("Stages {} '{external_id}' no longer exists", kind.as_str()),
            ))
        }
        Err(e) => return Err(e),
    };
    let (settled, settlement) = settle(
        ports,
        dealer,
        &sides,
        auto_sync,
        // When Stages says its record changed, for `newest_wins`.
        Some(callback.occurred_at),
        By {
            source: "stages",
            action: "stages_callback",
            actor: &audit::callback_actor(&callback.event_id),
        },
    )
    .await?;
    let what = format!("billing {} '{}'", kind.as_str(), sides.link.billing_id);
    let (outcome, detail) = settled_outcome(kind, &what, &sides, base.as_ref(), changes, &settled);
    Ok(CallbackOutcome {
        outcome,
        applied: settled.pulled,
        detail,
        settlement: Some(settlement),
    })
}

/// A callback that settled nothing, and why.
fn not_settled(outcome: CallbackResult, detail: String) -> CallbackOutcome {
    CallbackOutcome {
        outcome,
        applied: Values::new(),
        detail,
        settlement: None,
    }
}

/// A callback about a record not linked on the connection: reported as an
/// event, and nothing else is done.
async fn unmatched(
    events: &dyn EventStore,
    connection: &Connection,
    kind: LinkKind,
    external_id: &str,
    changes: &BTreeMap<String, String>,
) -> Result<CallbackOutcome, OperationError> {
    events
        .record_events(
            &connection.dealer,
            vec![NewEvent {
                event_type: types::STAGES_CALLBACK_UNMATCHED.into(),
                subject_kind: kind.as_str().into(),
                subject_id: external_id.to_owned(),
                connection_id: Some(connection.id),
                data: serde_json::json!({"reason": "not linked on this connection", "changes": changes}),
            }],
        )
        .await?;
    Ok(not_settled(
        CallbackResult::Unmatched,
        format!(
            "Stages {} '{external_id}' is not linked on this connection",
            kind.as_str()
        ),
    ))
}

/// How a callback about `what` ended once its link was settled, judged by
/// the fields it names: applied when billing took Stages' values; held when
/// one of them changed on both sides; awaiting_sync when one that callbacks
/// do not carry still differs; echo when Stages holds what was last synced
/// (our own push coming back); unchanged otherwise.
fn settled_outcome(
    kind: LinkKind,
    what: &str,
    sides: &Sides,
    base: Option<&Snapshot>,
    changes: &BTreeMap<String, String>,
    settled: &Settled,
) -> (CallbackResult, String) {
    let fields = sync::fields_for(kind);
    // The fields this callback names, by their billing names.
    let named: Vec<&sync::MappedField> = fields
        .iter()
        .filter(|f| changes.contains_key(f.stages_name))
        .collect();
    if !settled.pulled.is_empty() {
        (
            CallbackResult::Applied,
            format!("{what} updated from Stages"),
        )
    } else if named
        .iter()
        .any(|f| settled.held.iter().any(|h| h == f.name))
    {
        (
            CallbackResult::Held,
            format!(
                "{what}: both sides changed {} since the last sync; held as a conflict",
                settled.held.join(", ")
            ),
        )
    } else if named.iter().any(|f| {
        !f.from_stages_callback
            && sides.external_values.get(f.name) != sides.billing_values.get(f.name)
    }) {
        (
            CallbackResult::AwaitingSync,
            format!(
                "{what}: Stages' callbacks do not carry {}; a sync of the link takes it",
                named
                    .iter()
                    .filter(|f| !f.from_stages_callback)
                    .map(|f| f.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    } else if named.iter().any(|f| {
        base.and_then(|b| b.get(f.name))
            .zip(sides.external_values.get(f.name))
            .is_some_and(|(synced, now)| f.normalizer.equal(synced, now))
    }) {
        (CallbackResult::Echo, format!("nothing new for {what}"))
    } else {
        (CallbackResult::Unchanged, format!("nothing new for {what}"))
    }
}

#[cfg(test)]
mod tests {
    use super::CallbackResult;

    #[test]
    fn a_callback_result_is_named_alike_in_job_notes_and_summaries() {
        use CallbackResult::*;
        for r in [
            Applied,
            Held,
            Echo,
            AwaitingSync,
            Unchanged,
            Unmatched,
            Gone,
            Unsupported,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }
}
