//! Reconcile, step 3: deciding, record by record, which links found in
//! Stages can be taken over, and reporting everything that does not add up
//! as drift, never guessed at: a billing id nobody has, one claimed twice, a
//! pair unlinked on purpose, a link whose Stages record is gone or no longer
//! carries its billing id (what a repair writes back).

use std::collections::{HashMap, HashSet};

use crate::billing::BillingId;
use crate::connection::ConnectionId;
use crate::link::{Link, LinkId, LinkKind, NewLink};
use crate::operations::OperationError;

use super::read::{Claim, Known, Ours, Seen};
use super::{Drift, DriftKind, ReconcileReport};

/// What step 4 writes: the links to take over, and the links whose Stages
/// record lost their billing id.
pub(super) struct Plan {
    pub(super) new_site_links: Vec<NewLink>,
    pub(super) new_system_links: Vec<NewLink>,
    pub(super) lost: Vec<Lost>,
}

/// Decides every Stages record seen against what the service knows, sites
/// first so devices can hang under sites taken over now.
pub(super) fn plan(
    connection_id: ConnectionId,
    sites: &Seen,
    devices: &Seen,
    ours: &Ours,
    report: &mut ReconcileReport,
) -> Result<Plan, OperationError> {
    let mut new_site_links: Vec<NewLink> = Vec::new();
    let mut site_link_of: HashMap<String, LinkId> = ours
        .sites
        .by_external
        .iter()
        .map(|(ext, l)| (ext.clone(), l.id))
        .collect();
    for claim in decide(
        LinkKind::Site,
        &sites.claims,
        &ours.sites,
        &ours.existing_sites,
        &ours.tombstones,
        report,
    ) {
        let id = LinkId::new();
        site_link_of.insert(claim.external_id.clone(), id);
        new_site_links.push(new_link(id, connection_id, LinkKind::Site, claim, None)?);
    }
    let new_system_links = device_links(connection_id, devices, ours, &site_link_of, report)?;
    report_missing(LinkKind::Site, &ours.sites, &sites.carried, report);
    report_missing(LinkKind::System, &ours.systems, &devices.carried, report);

    let mut lost = lost_ids(&ours.sites, &sites.carried, report);
    lost.extend(lost_ids(&ours.systems, &devices.carried, report));
    Ok(Plan {
        new_site_links,
        new_system_links,
        lost,
    })
}

/// The device links to take over, each under its site's link (`site_link_of`,
/// by site number); a device whose site is not linked is reported.
fn device_links(
    connection_id: ConnectionId,
    devices: &Seen,
    ours: &Ours,
    site_link_of: &HashMap<String, LinkId>,
    report: &mut ReconcileReport,
) -> Result<Vec<NewLink>, OperationError> {
    let mut new_system_links = Vec::new();
    for claim in decide(
        LinkKind::System,
        &devices.claims,
        &ours.systems,
        &ours.existing_systems,
        &ours.tombstones,
        report,
    ) {
        let site_no = claim.site_no.clone().unwrap_or_default();
        match site_link_of.get(&site_no) {
            Some(parent) => new_system_links.push(new_link(
                LinkId::new(),
                connection_id,
                LinkKind::System,
                claim,
                Some(*parent),
            )?),
            None => report.drift(Drift {
                kind: DriftKind::SiteNotLinked,
                record: LinkKind::System,
                external_id: claim.external_id.clone(),
                billing_id: Some(claim.billing_id.clone()),
                detail: format!(
                    "device's Stages site '{site_no}' is not linked, so the device cannot be"
                ),
                repaired: false,
            }),
        }
    }
    Ok(new_system_links)
}

/// Reports every link of `kind` whose Stages record was not `seen`.
fn report_missing(
    kind: LinkKind,
    known: &Known,
    seen: &HashMap<String, Option<String>>,
    report: &mut ReconcileReport,
) {
    let mut gone: Vec<&Link> = known
        .by_external
        .values()
        .filter(|l| !seen.contains_key(&l.external_id))
        .collect();
    gone.sort_by_key(|l| l.id);
    for l in gone {
        report.drift(Drift {
            kind: DriftKind::MissingExternal,
            record: kind,
            external_id: l.external_id.clone(),
            billing_id: Some(l.billing_id.to_string()),
            detail: format!(
                "link {} points at a Stages record that no longer exists",
                l.id
            ),
            repaired: false,
        });
    }
}

/// A link whose Stages record lost its billing id (or carries another).
pub(super) struct Lost {
    pub(super) link: Link,
    /// What the record carries instead (none when cleared).
    pub(super) carried: Option<String>,
    /// Its drift item's place in the report, if it made the list.
    pub(super) item: Option<usize>,
}

/// Reports every link whose Stages record is there but does not carry the
/// link's billing id; these are what a repair writes back.
fn lost_ids(
    known: &Known,
    seen: &HashMap<String, Option<String>>,
    report: &mut ReconcileReport,
) -> Vec<Lost> {
    let mut lost: Vec<Lost> = known
        .by_external
        .values()
        .filter_map(|l| {
            let carried = seen.get(&l.external_id)?;
            (carried.as_deref() != Some(l.billing_id.as_str())).then(|| Lost {
                link: l.clone(),
                carried: carried.clone(),
                item: None,
            })
        })
        .collect();
    lost.sort_by_key(|l| l.link.id);
    for l in &mut lost {
        let (kind, detail) = match &l.carried {
            None => (
                DriftKind::BillingIdCleared,
                format!(
                    "link {} is there but the Stages record carries no billing id, so Stages does not call back for it",
                    l.link.id
                ),
            ),
            Some(other) => (
                DriftKind::BillingIdChanged,
                format!(
                    "link {} is there but the Stages record carries billing id '{other}'",
                    l.link.id
                ),
            ),
        };
        let at = report.drift.len();
        report.drift(Drift {
            kind,
            record: l.link.kind,
            external_id: l.link.external_id.clone(),
            billing_id: Some(l.link.billing_id.to_string()),
            detail,
            repaired: false,
        });
        l.item = (report.drift.len() > at).then_some(at);
    }
    lost
}

/// The claims that can be taken over; every other claim is counted or reported.
fn decide<'c>(
    kind: LinkKind,
    claims: &'c [Claim],
    known: &Known,
    existing: &HashSet<String>,
    tombstones: &HashSet<(LinkKind, String)>,
    report: &mut ReconcileReport,
) -> Vec<&'c Claim> {
    let mut claimants: HashMap<&str, usize> = HashMap::new();
    for c in claims {
        *claimants.entry(c.billing_id.as_str()).or_default() += 1;
    }
    let mut takeovers = Vec::new();
    for c in claims {
        let drift = |kind_of: DriftKind, detail: String| Drift {
            kind: kind_of,
            record: kind,
            external_id: c.external_id.clone(),
            billing_id: Some(c.billing_id.clone()),
            detail,
            repaired: false,
        };
        if let Some(l) = known.by_external.get(&c.external_id) {
            if l.billing_id.as_str() == c.billing_id {
                report.already_linked.add(kind);
            }
            // Otherwise the record is linked but carries another id: that
            // link is reported (billing_id_changed) by `lost_ids`, once.
        } else if let Some(l) = known.by_billing.get(&c.billing_id) {
            report.drift(drift(
                DriftKind::LinkedElsewhere,
                format!(
                    "billing record is linked to Stages record '{}'",
                    l.external_id
                ),
            ));
        } else if claimants[c.billing_id.as_str()] > 1 {
            report.drift(drift(
                DriftKind::DuplicateClaim,
                format!(
                    "{} Stages records carry this billing id",
                    claimants[c.billing_id.as_str()]
                ),
            ));
        } else if !existing.contains(&c.billing_id) {
            report.drift(drift(
                DriftKind::UnknownBillingRecord,
                "no billing record has this id".into(),
            ));
        } else if tombstones.contains(&(kind, c.billing_id.clone()))
            || tombstones.contains(&(kind, format!("ext:{}", c.external_id)))
        {
            report.drift(drift(
                DriftKind::DeliberatelyUnlinked,
                "unlinked on purpose; link it again to restore".into(),
            ));
        } else {
            takeovers.push(c);
        }
    }
    takeovers
}

fn new_link(
    id: LinkId,
    connection_id: ConnectionId,
    kind: LinkKind,
    claim: &Claim,
    parent_id: Option<LinkId>,
) -> Result<NewLink, OperationError> {
    Ok(NewLink {
        id,
        connection_id,
        kind,
        billing_id: BillingId::parse(&claim.billing_id).map_err(|why| {
            OperationError::Conflict {
                code: "bad_billing_id",
                message: format!(
                    "Stages record '{}' carries an unusable billing id: {why}",
                    claim.external_id
                ),
            }
        })?,
        external_id: claim.external_id.clone(),
        parent_id,
    })
}
