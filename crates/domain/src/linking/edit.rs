//! Edit link (S12): point a link, and a site link's systems with it, at
//! other Stages records that are not linked yet; the billing ids move with
//! it, under a claim, and a failure puts back what the edit wrote.

use std::collections::{HashMap, HashSet};

use crate::audit::NewAuditEntry;
use crate::connection::Connection;
use crate::link::{Link, LinkFilter, LinkId, LinkKind, Relink};
use crate::operations::{upstream, OperationError};
use crate::stages::{StagesApi, StagesError};
use crate::store::{PageRequest, StoreError};
use crate::tenancy::Caller;
use crate::validation::ValidationError;

use super::claims::{claim_lost, claimed_elsewhere, put_back, release_claims, set_billing_id};
use super::{load_connection, named_device, named_site, store_not_found, LinkingPorts, SystemPair};

/// The new target of a link (S12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditLink {
    pub external_id: String,
    /// For a site link with linked systems: the device of the new site each
    /// linked system moves to (every linked system must be listed).
    pub systems: Vec<SystemPair>,
}

/// One link an edit moves.
struct Planned {
    link: Link,
    /// The Stages site number or device id it moves to.
    new: String,
    /// The request field naming `new`.
    field: String,
    /// For a device: the Stages site it must belong to, when there is one.
    site: Option<String>,
}

/// What each Stages record an edit touches carries as its billing id, by
/// kind and site number or device id.
type Carried = HashMap<(LinkKind, String), Option<String>>;

/// The billing ids an edit wrote to Stages, to put back on a failure: (kind,
/// site number or device id, the billing id it carried before).
type Written = Vec<(LinkKind, String, String)>;

/// Edit link (S12): point a link at another Stages record that is not linked
/// yet; the billing ids move with it. Like a link, it claims first: the new
/// records are claimed in the link table (the unique constraints decide
/// between racing edits, links and pushes; a loser gets 409 naming the
/// winner's link and touches nothing in Stages), then the billing ids move in
/// Stages, then the claim is confirmed and the links move. Stages lets one
/// site (one device) carry a billing id at a time, so the old records let go
/// first, and only of ids that are still the link's own. A failure puts back
/// what this edit wrote in Stages and releases its claim.
pub async fn edit_link(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    link_id: LinkId,
    edit: EditLink,
    expected_version: Option<i64>,
) -> Result<Vec<Link>, OperationError> {
    let current = ports
        .links
        .link(&caller.dealer, link_id)
        .await
        .map_err(store_not_found("no such link"))?;
    if let Some(v) = expected_version {
        if v != current.version {
            return Err(StoreError::VersionMismatch.into());
        }
    }
    let (connection, api) = load_connection(ports, caller, current.connection_id).await?;
    // What moves where, from the request alone: (link, new external id, the
    // request field naming it, the Stages site a new device must belong to).
    let plan = plan_edit(ports, caller, &current, &edit).await?;

    // Claim the new records. Those the moving links hold already (a site
    // edit may cross its systems over between devices of one site) are ours.
    let own: HashSet<(LinkKind, &str)> = plan
        .iter()
        .map(|p| (p.link.kind, p.link.external_id.as_str()))
        .collect();
    let claims = claim_new_records(ports, caller, &plan, &own).await?;
    let moved = edit_claimed(
        ports,
        caller,
        &connection,
        api.as_ref(),
        &current,
        &plan,
        &own,
        &claims,
    )
    .await;
    if moved.is_err() {
        release_claims(ports.links, caller, &claims).await;
    }
    moved
}

/// The links an edit moves: the link itself, and for a site link each of
/// its linked systems to the device of the new site the request names.
async fn plan_edit(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    current: &Link,
    edit: &EditLink,
) -> Result<Vec<Planned>, OperationError> {
    let mut plan: Vec<Planned> = Vec::new();
    match current.kind {
        LinkKind::System => {
            let parent = match current.parent_id {
                Some(p) => Some(ports.links.link(&caller.dealer, p).await?),
                None => None,
            };
            plan.push(Planned {
                link: current.clone(),
                new: edit.external_id.clone(),
                field: "external_id".into(),
                site: parent.map(|p| p.external_id),
            });
        }
        LinkKind::Site => {
            plan.push(Planned {
                link: current.clone(),
                new: edit.external_id.clone(),
                field: "external_id".into(),
                site: None,
            });
            plan_moved_systems(ports, caller, current, edit, &mut plan).await?;
        }
    }
    Ok(plan)
}

/// A site edit moves every system linked under the site: each must be listed
/// with a device, once, and only those.
async fn plan_moved_systems(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    current: &Link,
    edit: &EditLink,
    plan: &mut Vec<Planned>,
) -> Result<(), OperationError> {
    let children = ports
        .links
        .list_links(
            &caller.dealer,
            &LinkFilter {
                parent_id: Some(current.id),
                ..Default::default()
            },
            PageRequest {
                after: None,
                limit: 1000,
            },
        )
        .await?
        .items;
    let mut v = ValidationError::default();
    let mut seen_devices = HashSet::new();
    for (i, pair) in edit.systems.iter().enumerate() {
        if !seen_devices.insert(pair.stages_device_id.as_str()) {
            v.push(format!("systems[{i}].stages_device_id"), "is listed twice");
        }
    }
    for child in &children {
        match edit
            .systems
            .iter()
            .position(|p| p.billing_system_id == child.billing_id)
        {
            None => v.push(
                "systems",
                format!(
                    "linked system '{}' needs a device of the new site",
                    child.billing_id
                ),
            ),
            Some(i) => plan.push(Planned {
                link: child.clone(),
                new: edit.systems[i].stages_device_id.clone(),
                field: format!("systems[{i}].stages_device_id"),
                site: Some(edit.external_id.clone()),
            }),
        }
    }
    if edit.systems.len() > children.len() {
        v.push(
            "systems",
            "lists a system that is not linked under this site link",
        );
    }
    v.into_result().map_err(OperationError::Invalid)
}

/// Claims the new records the moving links do not hold already; returns the
/// claim ids.
async fn claim_new_records(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    plan: &[Planned],
    own: &HashSet<(LinkKind, &str)>,
) -> Result<Vec<LinkId>, OperationError> {
    let to_claim: Vec<Relink> = plan
        .iter()
        .filter(|p| !own.contains(&(p.link.kind, p.new.as_str())))
        .map(|p| Relink {
            link_id: p.link.id,
            new_external_id: p.new.clone(),
        })
        .collect();
    if to_claim.is_empty() {
        return Ok(Vec::new());
    }
    ports
        .links
        .claim_relinks(
            &caller.dealer,
            to_claim,
            chrono::Duration::seconds(crate::link::CLAIM_LEASE_SECS),
        )
        .await
        .map_err(claim_lost)
}

/// The Stages half of an edit, under its claim: checks the new records, moves
/// the billing ids, confirms. On a failure what it wrote is put back.
#[allow(clippy::too_many_arguments)]
async fn edit_claimed(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection: &Connection,
    api: &dyn StagesApi,
    current: &Link,
    plan: &[Planned],
    own: &HashSet<(LinkKind, &str)>,
    claims: &[LinkId],
) -> Result<Vec<Link>, OperationError> {
    let mut carried = check_new_records(ports, caller, connection, api, current, plan, own).await?;
    read_left_behind(connection, api, plan, &mut carried).await?;
    let written = move_billing_ids(connection, api, plan, &mut carried).await?;
    confirm_edit(ports, caller, api, current, plan, claims, &written).await
}

/// The new records, read under the claim: each must exist, a device must be
/// a child of its site, and none may carry another record's billing id (a
/// record our own links hold carries a sibling's, which moves too). Returns
/// what each carries.
async fn check_new_records(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection: &Connection,
    api: &dyn StagesApi,
    current: &Link,
    plan: &[Planned],
    own: &HashSet<(LinkKind, &str)>,
) -> Result<Carried, OperationError> {
    let mut carried: Carried = HashMap::new();
    let mut v = ValidationError::default();
    for p in plan {
        let billing_id = match p.link.kind {
            LinkKind::Site => {
                let site = named_site(api, connection, &p.field, &p.new).await?;
                if !own.contains(&(LinkKind::Site, p.new.as_str())) {
                    if let Some(e) = claimed_elsewhere(
                        ports,
                        caller,
                        connection.id,
                        LinkKind::Site,
                        &site.site_no,
                        &site.billing_id,
                        &p.link.billing_id,
                    )
                    .await?
                    {
                        return Err(e);
                    }
                }
                site.billing_id
            }
            LinkKind::System => {
                let device = named_device(api, connection, &p.field, &p.new).await?;
                match &p.site {
                    Some(site_no) if device.site_no != *site_no => {
                        v.push(
                            p.field.clone(),
                            if current.kind == LinkKind::System {
                                format!(
                                    "device '{}' belongs to Stages site '{}', not the linked site '{}'",
                                    device.device_id, device.site_no, site_no
                                )
                            } else {
                                format!(
                                    "device '{}' is not a child of Stages site '{}'",
                                    device.device_id, site_no
                                )
                            },
                        );
                        continue;
                    }
                    _ => {}
                }
                if !own.contains(&(LinkKind::System, p.new.as_str())) {
                    if let Some(e) = claimed_elsewhere(
                        ports,
                        caller,
                        connection.id,
                        LinkKind::System,
                        &device.device_id,
                        &device.fields.billing_id,
                        &p.link.billing_id,
                    )
                    .await?
                    {
                        return Err(e);
                    }
                }
                device.fields.billing_id
            }
        };
        carried.insert((p.link.kind, p.new.clone()), billing_id);
    }
    v.into_result().map_err(OperationError::Invalid)?;
    Ok(carried)
}

/// The records left behind: what they carry now.
async fn read_left_behind(
    connection: &Connection,
    api: &dyn StagesApi,
    plan: &[Planned],
    carried: &mut Carried,
) -> Result<(), OperationError> {
    for p in plan.iter().filter(|p| p.link.external_id != p.new) {
        let billing_id = match p.link.kind {
            LinkKind::Site => api.get_site(&p.link.site_no()).await.map(|s| s.billing_id),
            LinkKind::System => api
                .get_device(&p.link.device_id())
                .await
                .map(|d| d.fields.billing_id),
        };
        let billing_id = match billing_id {
            Ok(b) => b,
            // Gone from Stages: nothing to clear.
            Err(StagesError::NotFound(_)) => None,
            Err(e) => return Err(upstream(connection)(e)),
        };
        carried.insert((p.link.kind, p.link.external_id.clone()), billing_id);
    }
    Ok(())
}

/// Move the billing ids: the old records let go of the link's own ids, then
/// the new records take them. Returns what to put back; a failure puts it
/// back itself and says what it could not.
async fn move_billing_ids(
    connection: &Connection,
    api: &dyn StagesApi,
    plan: &[Planned],
    carried: &mut Carried,
) -> Result<Written, OperationError> {
    let mut written: Written = Vec::new();
    let mut steps: Vec<(LinkKind, String, String)> = Vec::new();
    for p in plan.iter().filter(|p| p.link.external_id != p.new) {
        let key = (p.link.kind, p.link.external_id.clone());
        if carried.get(&key).cloned().flatten().as_deref() == Some(p.link.billing_id.as_str()) {
            steps.push((p.link.kind, p.link.external_id.clone(), String::new()));
        }
    }
    for p in plan {
        steps.push((p.link.kind, p.new.clone(), p.link.billing_id.to_string()));
    }
    for (kind, external_id, billing_id) in steps {
        let key = (kind, external_id);
        let before = carried.get(&key).cloned().flatten().unwrap_or_default();
        if before == billing_id {
            continue;
        }
        let (kind, external_id) = key;
        match set_billing_id(api, kind, &external_id, &billing_id).await {
            Ok(()) => {
                written.push((kind, external_id.clone(), before));
                carried.insert((kind, external_id), Some(billing_id));
            }
            Err(error) => {
                // A transient failure may have been applied all the same.
                if error.is_transient() {
                    written.push((kind, external_id, before));
                }
                let left = put_back(api, &written).await;
                return Err(OperationError::Undone {
                    left,
                    error: Box::new(upstream(connection)(error)),
                });
            }
        }
    }
    Ok(written)
}

/// Confirms the claim and moves the links, with their audit entries; if
/// that fails, the billing ids written go back.
async fn confirm_edit(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    api: &dyn StagesApi,
    current: &Link,
    plan: &[Planned],
    claims: &[LinkId],
    written: &Written,
) -> Result<Vec<Link>, OperationError> {
    let mut changes = Vec::new();
    let mut entries = Vec::new();
    for p in plan {
        changes.push(Relink {
            link_id: p.link.id,
            new_external_id: p.new.clone(),
        });
        entries.push(NewAuditEntry {
            actor: caller.user.0.clone(),
            action: "edit_link".into(),
            connection_id: Some(p.link.connection_id),
            kind: p.link.kind.as_str().into(),
            billing_id: Some(p.link.billing_id.to_string()),
            external_id: Some(p.new.clone()),
            before: Some(serde_json::json!({"external_id": p.link.external_id})),
            after: Some(serde_json::json!({"external_id": p.new})),
        });
    }
    match ports
        .links
        .confirm_relinks(
            &caller.dealer,
            claims.to_vec(),
            changes,
            Some((current.id, current.version)),
            entries,
        )
        .await
    {
        Ok(updated) => Ok(updated),
        Err(e) => {
            let left = put_back(api, written).await;
            if !left.is_empty() {
                tracing::warn!(link = %current.id, left = ?left, "an edit that failed left billing ids in Stages");
            }
            Err(claim_lost(e))
        }
    }
}
