//! Sync on request (S10, S11, B5): the diff of a link, record sync with a
//! choice per field, and account sync (every field from one side, a system
//! with its site). Each goes through the three-way merge of `sync`, with the
//! link's last synced values as the base, so a change on one side merges by
//! itself and only a true conflict needs a choice. Acts as the caller.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::field_issues::IssueKind;
use crate::link::{LinkId, LinkKind};
use crate::linking::LinkingPorts;
use crate::operations::OperationError;
use crate::store::StoreError;
use crate::sync::{self, FieldChoice, FieldDiff, MergePlan, Side};
use crate::tenancy::Caller;

use super::sides::{sides_as_caller, snapshot_of, Sides};
use super::write::{stages_change, write_to_billing, write_to_stages, By};

/// The diff of a link, field by field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkDiff {
    pub link_id: LinkId,
    pub kind: LinkKind,
    pub fields: Vec<FieldDiff>,
}

pub async fn link_diff(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    link_id: LinkId,
) -> Result<LinkDiff, OperationError> {
    let sides = sides_as_caller(ports, caller, link_id).await?;
    let fields = sync::diff(
        sync::fields_for(sides.link.kind),
        &sides.billing_values,
        &sides.external_values,
        snapshot_of(&sides.link).as_ref(),
    );
    Ok(LinkDiff {
        link_id,
        kind: sides.link.kind,
        fields,
    })
}

/// What a sync did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncOutcome {
    pub link_id: LinkId,
    pub dry_run: bool,
    pub fields: Vec<FieldDiff>,
    pub plan: MergePlan,
}

async fn apply_plan(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    sides: &Sides,
    plan: &MergePlan,
    source: &str,
) -> Result<(), OperationError> {
    let dealer = &caller.dealer;
    let by = By {
        source,
        action: source,
        actor: &caller.user.0,
    };
    if !plan.to_external.is_empty() {
        write_to_stages(sides, &plan.to_external).await?;
    }
    if !plan.to_billing.is_empty() {
        write_to_billing(ports, dealer, sides, &plan.to_billing, by).await?;
    }
    ports
        .links
        .set_link_snapshot(
            dealer,
            sides.link.id,
            serde_json::to_value(&plan.new_snapshot).unwrap_or_default(),
            stages_change(sides, by, &plan.to_external),
        )
        .await?;
    // A field the sync settled is no longer a conflict nor a refusal.
    let resolved: Vec<String> = plan.merged.keys().cloned().collect();
    for kind in [IssueKind::Conflict, IssueKind::Refused] {
        ports
            .issues
            .record_field_issues(dealer, sides.link.id, kind, Vec::new(), resolved.clone())
            .await?;
    }
    Ok(())
}

/// Record sync (S11, B5): a choice per field; a field left out takes the
/// merge's proposal (one-sided changes merge by themselves). Only this record,
/// not its children. `dry_run` shows the result and writes nothing.
pub async fn sync_link(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    link_id: LinkId,
    choices: &BTreeMap<String, FieldChoice>,
    dry_run: bool,
) -> Result<SyncOutcome, OperationError> {
    sync_link_as(ports, caller, link_id, choices, dry_run, "sync").await
}

/// A record sync, audited as made through `source` (sync or account_sync).
async fn sync_link_as(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    link_id: LinkId,
    choices: &BTreeMap<String, FieldChoice>,
    dry_run: bool,
    source: &str,
) -> Result<SyncOutcome, OperationError> {
    let sides = sides_as_caller(ports, caller, link_id).await?;
    let fields = sync::diff(
        sync::fields_for(sides.link.kind),
        &sides.billing_values,
        &sides.external_values,
        snapshot_of(&sides.link).as_ref(),
    );
    let plan = sync::merge(&fields, choices).map_err(|e| OperationError::Invalid(e.into()))?;
    if !dry_run {
        apply_plan(ports, caller, &sides, &plan, source).await?;
    }
    Ok(SyncOutcome {
        link_id,
        dry_run,
        fields,
        plan,
    })
}

/// Account sync (S10): every field from one side. A system's sync also syncs
/// its site; a site's sync syncs the site only.
pub async fn account_sync(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    link_id: LinkId,
    side: Side,
) -> Result<Vec<SyncOutcome>, OperationError> {
    let link = ports
        .links
        .link(&caller.dealer, link_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => OperationError::NotFound("no such link".into()),
            other => other.into(),
        })?;
    let mut order = vec![link.id];
    if let (LinkKind::System, Some(parent)) = (link.kind, link.parent_id) {
        order.push(parent);
    }
    let mut outcomes = Vec::new();
    for id in order {
        let kind = ports.links.link(&caller.dealer, id).await?.kind;
        let choices = sync::account_sync(sync::fields_for(kind), side);
        outcomes.push(sync_link_as(ports, caller, id, &choices, false, "account_sync").await?);
    }
    Ok(outcomes)
}
