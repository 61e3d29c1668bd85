//! Reconcile, step 4: taking over the links found in Stages, and, with
//! `repair`, writing the link's billing id back to the Stages records that
//! lost it; each write audited.

use crate::audit::NewAuditEntry;
use crate::connection::Connection;
use crate::link::NewLink;
use crate::linking::LinkingPorts;
use crate::operations::OperationError;
use crate::stages::{StagesApi, StagesError};
use crate::store::StoreError;
use crate::tenancy::Caller;

use super::plan::Lost;
use super::{Drift, DriftKind, ReconcileReport};

/// Writes each lost link's billing id back to its Stages record, audited. A
/// record Stages refuses to change is left as reported; an upstream that is
/// down fails the run (it is retried, and what was written stays written).
pub(super) async fn repair(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    api: &dyn StagesApi,
    connection: &Connection,
    lost: &[Lost],
    dry_run: bool,
    report: &mut ReconcileReport,
) -> Result<(), OperationError> {
    let mut entries = Vec::new();
    for l in lost {
        let outcome = if dry_run {
            Ok(())
        } else {
            crate::linking::set_billing_id(
                api,
                l.link.kind,
                &l.link.external_id,
                l.link.billing_id.as_str(),
            )
            .await
        };
        let note = match outcome {
            Ok(()) => {
                report.repaired.add(l.link.kind);
                if !dry_run {
                    entries.push(repair_audit(caller, l));
                }
                None
            }
            Err(e) if e.is_transient() || matches!(e, StagesError::Unauthorized) => {
                // Record what was written before giving up.
                ports.audit.record_audit(&caller.dealer, entries).await?;
                return Err(crate::operations::upstream(connection)(e));
            }
            Err(e) => Some(format!("; not repaired: {e}")),
        };
        if let Some(item) = l.item.and_then(|i| report.drift.get_mut(i)) {
            match note {
                None => item.repaired = true,
                Some(note) => item.detail.push_str(&note),
            }
        }
    }
    if !entries.is_empty() {
        ports.audit.record_audit(&caller.dealer, entries).await?;
    }
    Ok(())
}

fn repair_audit(caller: &Caller, l: &Lost) -> NewAuditEntry {
    NewAuditEntry {
        actor: format!("system:reconcile ({})", caller.user),
        action: "reconcile_repair".into(),
        connection_id: Some(l.link.connection_id),
        kind: l.link.kind.as_str().into(),
        billing_id: Some(l.link.billing_id.to_string()),
        external_id: Some(l.link.external_id.clone()),
        before: Some(serde_json::json!({"stages_billing_id": l.carried})),
        after: Some(serde_json::json!({"stages_billing_id": l.link.billing_id.as_str()})),
    }
}

fn takeover_audit(caller: &Caller, l: &NewLink) -> NewAuditEntry {
    NewAuditEntry {
        actor: format!("system:reconcile ({})", caller.user),
        action: "reconcile_link".into(),
        connection_id: Some(l.connection_id),
        kind: l.kind.as_str().into(),
        billing_id: Some(l.billing_id.to_string()),
        external_id: Some(l.external_id.clone()),
        before: None,
        after: Some(serde_json::json!({"link_id": l.id, "external_id": l.external_id})),
    }
}

/// Inserts a batch at once; when something in it conflicts (a link made
/// meanwhile), one by one, reporting the ones that lost.
pub(super) async fn take_over(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    batch: &[NewLink],
    report: &mut ReconcileReport,
) -> Result<(), OperationError> {
    let audit = batch.iter().map(|l| takeover_audit(caller, l)).collect();
    match ports
        .links
        .insert_links(&caller.dealer, batch.to_vec(), audit)
        .await
    {
        Ok(created) => {
            for l in created {
                report.taken_over.add(l.kind);
            }
            Ok(())
        }
        Err(StoreError::Conflict(_)) => {
            for l in batch {
                match ports
                    .links
                    .insert_links(
                        &caller.dealer,
                        vec![l.clone()],
                        vec![takeover_audit(caller, l)],
                    )
                    .await
                {
                    Ok(_) => report.taken_over.add(l.kind),
                    Err(StoreError::Conflict(why)) => report.drift(Drift {
                        kind: DriftKind::LinkedElsewhere,
                        record: l.kind,
                        external_id: l.external_id.clone(),
                        billing_id: Some(l.billing_id.to_string()),
                        detail: why,
                        repaired: false,
                    }),
                    // A site taken over by someone else meanwhile leaves its devices orphaned: report.
                    Err(StoreError::NotFound) => report.drift(Drift {
                        kind: DriftKind::SiteNotLinked,
                        record: l.kind,
                        external_id: l.external_id.clone(),
                        billing_id: Some(l.billing_id.to_string()),
                        detail: "its site link could not be made".into(),
                        repaired: false,
                    }),
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
