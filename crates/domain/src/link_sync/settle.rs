//! Settling a link (B5), the step the automatic syncs share (Auto Sync
//! pushes, S19, and Stages callbacks, S18): each field of the link is settled
//! by one rule, `sync::decide`, so both directions agree on who wins; what
//! did not sync (held conflicts, refusals) is kept on the link.

use serde::Serialize;

use crate::audit::NewAuditEntry;
use crate::field_issues::{IssueKind, IssueUpdate, LinkSettlement, NewFieldIssue};
use crate::linking::LinkingPorts;
use crate::operations::OperationError;
use crate::sync::{self, FieldDiff, FieldStatus, Snapshot, Values};
use crate::tenancy::DealerId;

use super::sides::{snapshot_of, LinkedRecord, Sides};
use super::write::{stages_change, write_fields_to_stages, write_to_billing, By};

/// What an automatic sync (an Auto Sync push, an applied callback) did to
/// one link: every field went through `sync::decide`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Settled {
    /// Fields written to Stages.
    pub pushed: Values,
    /// Fields written to billing.
    pub pulled: Values,
    /// Fields both sides changed, held as conflicts.
    pub held: Vec<String>,
    /// Fields whose value Stages refused; the others still synced.
    pub refused: Vec<String>,
}

/// Brings one link's two sides together as `sync::decide` says, field by
/// field: one-sided changes merge (a push only when `may_push`, i.e. Auto
/// Sync is on), changes on both sides are settled by the connection's
/// conflict policy or held, refusals noted. The new base and the field
/// issues are handed back as a [`LinkSettlement`], which the job stores with
/// its end: a failure part way leaves the old base, and a retry decides
/// again from it. `stages_changed_at` is when Stages says its record
/// changed, when known (a callback's time), for `newest_wins`.
pub(super) async fn settle(
    ports: LinkingPorts<'_>,
    dealer: &DealerId,
    sides: &Sides,
    may_push: bool,
    stages_changed_at: Option<chrono::DateTime<chrono::Utc>>,
    by: By<'_>,
) -> Result<(Settled, LinkSettlement), OperationError> {
    let fields = sync::fields_for(sides.link.kind);
    let base = snapshot_of(&sides.link);
    let diffs = sync::diff(
        fields,
        &sides.billing_values,
        &sides.external_values,
        base.as_ref(),
    );
    let Decided {
        mut snapshot,
        push,
        pulled,
        held,
        conflicts,
    } = decide_fields(sides, fields, &diffs, base, may_push, stages_changed_at);
    // Toward Stages first: a push that fails part way leaves the old base,
    // so the retry still sees billing's change. A callback echoing the push
    // may arrive in between; it finds both sides equal and writes nothing.
    let (accepted, refused) = if push.is_empty() {
        (Values::new(), Vec::new())
    } else {
        write_fields_to_stages(sides, &push).await?
    };
    snapshot.extend(accepted.clone());
    let stages_audit =
        write_pulled(ports, dealer, sides, by, &snapshot, &accepted, &pulled).await?;
    snapshot.extend(pulled.clone());

    let (conflicts, refusals) =
        field_issues(&diffs, conflicts, &held, &refused, &accepted, &pulled);
    let settlement = LinkSettlement {
        dealer: dealer.clone(),
        link_id: sides.link.id,
        snapshot: serde_json::to_value(&snapshot).unwrap_or_default(),
        conflicts,
        refusals,
        audit: stages_audit,
    };
    let settled = Settled {
        pushed: accepted,
        pulled,
        held,
        refused: refused.into_iter().map(|(f, _)| f).collect(),
    };
    Ok((settled, settlement))
}

/// What `sync::decide` made of each field of a link, before anything is
/// written.
struct Decided {
    /// The new base so far: the old one, with the fields found equal.
    snapshot: Values,
    /// Fields billing changed, for Stages (only when pushes may be made).
    push: Values,
    /// Fields Stages changed, for billing.
    pulled: Values,
    /// Fields both sides changed, held as conflicts.
    held: Vec<String>,
    /// The conflicts of the held fields, as kept on the link.
    conflicts: Vec<NewFieldIssue>,
}

/// Each field of a link as `sync::decide` settles it, with the connection's
/// conflict policy and when each side changed (billing's record, Stages'
/// when known) for `newest_wins`. A field to push is left alone unless
/// `may_push`.
fn decide_fields(
    sides: &Sides,
    fields: &[sync::MappedField],
    diffs: &[FieldDiff],
    base: Option<Snapshot>,
    may_push: bool,
    stages_changed_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Decided {
    let times = sync::ChangeTimes {
        billing: Some(match &sides.billing {
            LinkedRecord::Site(site) => site.updated_at,
            LinkedRecord::System(system) => system.updated_at,
        }),
        stages: stages_changed_at,
    };
    let mut decided = Decided {
        snapshot: base.map(Snapshot::into_values).unwrap_or_default(),
        push: Values::new(),
        pulled: Values::new(),
        held: Vec::new(),
        conflicts: Vec::new(),
    };
    for (f, d) in fields.iter().zip(diffs) {
        match sync::decide(f, d, sides.connection.conflict_policy, times) {
            sync::Decision::Leave if d.status == FieldStatus::Equal => {
                decided.snapshot.insert(d.field.clone(), d.billing.clone());
            }
            sync::Decision::Leave => {}
            sync::Decision::Push if may_push => {
                decided.push.insert(d.field.clone(), d.billing.clone());
            }
            sync::Decision::Push => {}
            sync::Decision::Pull => {
                decided.pulled.insert(d.field.clone(), d.external.clone());
            }
            sync::Decision::Hold => {
                decided.held.push(d.field.clone());
                decided.conflicts.push(NewFieldIssue {
                    field: d.field.clone(),
                    kind: IssueKind::Conflict,
                    billing_value: d.billing.clone(),
                    stages_value: d.external.clone(),
                    last_synced: d.last_synced.clone(),
                    reason: None,
                });
            }
        }
    }
    decided
}

/// Writes what Stages changed on its own (`pulled`) to billing, once what
/// Stages took of the push (`accepted`) is the base; hands back the audit
/// entry of what Stages took when it is not recorded yet.
async fn write_pulled(
    ports: LinkingPorts<'_>,
    dealer: &DealerId,
    sides: &Sides,
    by: By<'_>,
    snapshot: &Values,
    accepted: &Values,
    pulled: &Values,
) -> Result<Vec<NewAuditEntry>, OperationError> {
    let mut stages_audit = stages_change(sides, by, accepted);
    if !accepted.is_empty() && !pulled.is_empty() {
        // What Stages took is the base from now on, before billing is
        // written: should that write fail (billing changed meanwhile), the
        // retry must not take our own push for a change made in Stages and
        // pull it back over billing's newer edit.
        ports
            .links
            .set_link_snapshot(
                dealer,
                sides.link.id,
                serde_json::to_value(snapshot).unwrap_or_default(),
                // What Stages took is recorded with it: the billing write may fail.
                std::mem::take(&mut stages_audit),
            )
            .await?;
    }
    if !pulled.is_empty() {
        write_to_billing(ports, dealer, sides, pulled, by).await?;
    }
    Ok(stages_audit)
}

/// What did not sync, kept on the link: a conflict lasts while the field
/// decides `Hold`; a refusal until the field syncs or the sides agree.
/// Hands back the conflicts and the refusals, each found and settled.
fn field_issues(
    diffs: &[FieldDiff],
    conflicts: Vec<NewFieldIssue>,
    held: &[String],
    refused: &[(String, String)],
    accepted: &Values,
    pulled: &Values,
) -> (IssueUpdate, IssueUpdate) {
    let not_held: Vec<String> = diffs
        .iter()
        .map(|d| d.field.clone())
        .filter(|f| !held.contains(f))
        .collect();
    let refusals: Vec<NewFieldIssue> = refused
        .iter()
        .map(|(field, reason)| {
            let d = diffs
                .iter()
                .find(|d| &d.field == field)
                .expect("a diffed field");
            NewFieldIssue {
                field: field.clone(),
                kind: IssueKind::Refused,
                billing_value: d.billing.clone(),
                stages_value: d.external.clone(),
                last_synced: d.last_synced.clone(),
                reason: Some(reason.clone()),
            }
        })
        .collect();
    let synced: Vec<String> = diffs
        .iter()
        .filter(|d| {
            d.status == FieldStatus::Equal
                || accepted.contains_key(&d.field)
                || pulled.contains_key(&d.field)
        })
        .map(|d| d.field.clone())
        .collect();
    (
        IssueUpdate {
            found: conflicts,
            settled: not_held,
        },
        IssueUpdate {
            found: refusals,
            settled: synced,
        },
    )
}
