//! Push (S5, S9): a billing site becomes a Stages site with its contacts,
//! devices and zones, or a billing system becomes a device of its linked
//! site, only on connections where the record is not linked yet; with a dry
//! run (B6) that says what it would send. The checks and the claims are here;
//! the Stages half, the confirmation and the answer are in `push_send`.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::billing::{BillingId, BillingSite, BillingSystem};
use crate::connection::{Connection, ConnectionId};
use crate::link::{Link, LinkId, LinkKind, NewLink};
use crate::operations::OperationError;
use crate::stages::{
    NewStagesConfiguration, NewStagesContact, NewStagesDevice, NewStagesSite, StagesApi,
    StagesDeviceFields, StagesSiteFields,
};
use crate::store::PageRequest;
use crate::tenancy::Caller;
use crate::validation::ValidationError;

use super::claims::{claim, release_claims};
use super::field_checks::{
    check_device_fields, check_lookups, device_lookup_checks, site_lookup_checks,
};
use super::push_send::{confirm_pushed, push_answer, push_claimed};
use super::{body_reference, link_on, load_connection, store_not_found, LinkingPorts};

/// The Stages-only fields of a pushed site; the rest come from the billing site.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StagesSiteExtras {
    pub region: String,
    pub time_zone: String,
    pub site_type: String,
    pub dispatch_type: String,
    pub permit: String,
    pub subdivision: String,
    pub pets: String,
    pub keys: bool,
    pub ul_code: String,
    pub authority: String,
}

/// A billing system to become a Stages device, with its device fields and zones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushSystem {
    pub billing_system_id: BillingId,
    /// Every device field of the seed; `billing_id` is set by the push.
    pub device: StagesDeviceFields,
    pub configurations: Vec<NewStagesConfiguration>,
}

// Stored as a batch item's input (B7) as JSON; in memory one at a time, so
// the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushRequest {
    /// A billing site becomes a new Stages site, with contacts and devices.
    Site {
        billing_site_id: BillingId,
        extras: StagesSiteExtras,
        contacts: Vec<NewStagesContact>,
        systems: Vec<PushSystem>,
    },
    /// A billing system becomes a device of its (linked) site's Stages site.
    System(PushSystem),
}

/// What a push did with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PushAction {
    /// Made in Stages.
    Created,
    /// Found in Stages by its billing id (an earlier attempt made it) and linked.
    Reused,
    /// Linked already: nothing to do.
    AlreadyLinked,
    /// In a dry run: would be made in Stages.
    WouldCreate,
}

/// What a push did (or, in a dry run, would do) to one record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PushedRecord {
    pub kind: LinkKind,
    pub billing_id: String,
    /// The Stages site number or device id (none in a dry run of a new record).
    pub external_id: Option<String>,
    pub action: PushAction,
    pub link_id: Option<LinkId>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PushOutcome {
    pub dry_run: bool,
    pub records: Vec<PushedRecord>,
    /// In a dry run: the site that would be sent to Stages.
    pub would_send: Option<NewStagesSite>,
}

pub(super) fn new_site_for(
    site: &BillingSite,
    extras: &StagesSiteExtras,
    contacts: &[NewStagesContact],
) -> NewStagesSite {
    let f = &site.fields;
    NewStagesSite {
        fields: StagesSiteFields {
            name: f.name.clone(),
            address1: f.address1.clone(),
            address2: f.address2.clone(),
            city: f.city.clone(),
            state: f.state.clone(),
            zip: f.zip.clone(),
            phone: f.phone.clone(),
            info: f.info.clone(),
            region: extras.region.clone(),
            time_zone: extras.time_zone.clone(),
            site_type: extras.site_type.clone(),
            dispatch_type: extras.dispatch_type.clone(),
            permit: extras.permit.clone(),
            subdivision: extras.subdivision.clone(),
            pets: extras.pets.clone(),
            keys: extras.keys,
            ul_code: extras.ul_code.clone(),
            authority: extras.authority.clone(),
            billing_id: Some(site.id.as_str().to_owned()),
        },
        devices: Vec::new(),
        contacts: contacts.to_vec(),
    }
}

pub(super) fn new_device_for(system: &BillingSystem, spec: &PushSystem) -> NewStagesDevice {
    let mut fields = spec.device.clone();
    fields.transmitter_code = fields.transmitter_code.trim().to_owned();
    fields.billing_id = Some(system.id.as_str().to_owned());
    if fields.location.is_empty() {
        fields.location = system.fields.location.clone();
    }
    if fields.info.is_empty() {
        fields.info = system.fields.info.clone();
    }
    NewStagesDevice {
        fields,
        configurations: spec.configurations.clone(),
    }
}

/// What a push is about: the billing site, and for a site push its
/// Stages-only fields and contacts; the systems to push with it.
struct PushTarget {
    site: BillingSite,
    /// Some for a site push, none for a system push.
    extras: Option<StagesSiteExtras>,
    contacts: Vec<NewStagesContact>,
    specs: Vec<PushSystem>,
}

/// A system of a push once checked: its billing record, what was asked for
/// it, its link on the connection if it has one, and its request field prefix.
struct CheckedSystem<'a> {
    system: BillingSystem,
    spec: &'a PushSystem,
    existing: Option<Link>,
    prefix: String,
}

/// The claims a push holds while it writes to Stages.
struct Claimed<'a> {
    site_link_id: LinkId,
    claim_ids: Vec<LinkId>,
    /// The systems linked already, answered as they are.
    already_linked: Vec<PushedRecord>,
    /// The systems to push, each with the id of its claim.
    todo: Vec<(BillingSystem, &'a PushSystem, LinkId)>,
}

/// Push (S5, S9): a billing site becomes a Stages site with its contacts,
/// devices and zones, or a billing system becomes a device of its linked site.
///
/// Safe to retry: each Stages record is looked up by its billing id before it
/// is created, and a push that stopped half way resumes where it stopped.
pub async fn push(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    request: PushRequest,
    dry_run: bool,
) -> Result<PushOutcome, OperationError> {
    let (connection, api) = load_connection(ports, caller, connection_id).await?;
    let target = push_target(ports, caller, request).await?;
    let site = &target.site;
    let site_link = link_on(ports.links, caller, connection_id, LinkKind::Site, &site.id).await?;
    if target.extras.is_none() && site_link.is_none() {
        return Err(OperationError::Conflict {
            code: "site_not_linked",
            message: format!(
                "billing site '{}' is not linked on connection '{}': push or link the site before pushing its systems",
                site.id,
                connection.name.as_str()
            ),
        });
    }

    // Validate every system before touching Stages.
    let systems = check_systems(ports, caller, connection_id, &target).await?;
    refuse_when_all_linked(&connection, &target, site_link.as_ref(), &systems)?;
    check_push_lookups(api.as_ref(), &connection, &target, &systems).await?;
    if dry_run {
        return Ok(dry_run_outcome(&target, site_link.as_ref(), &systems));
    }

    // Claim first: of pushes racing for one record, the unique constraints let
    // one through and the others leave before touching Stages.
    let claimed = claim_push(
        ports,
        caller,
        connection_id,
        site,
        site_link.as_ref(),
        systems,
    )
    .await?;
    let pushed = push_claimed(
        &connection,
        api.as_ref(),
        site,
        site_link.as_ref(),
        claimed.site_link_id,
        target
            .extras
            .as_ref()
            .map(|e| (e, target.contacts.as_slice())),
        &claimed.todo,
    )
    .await;
    let (done, failure) = match pushed {
        Ok(done) => (done, None),
        Err((done, failure)) => (done, Some(failure)),
    };
    // Whatever was not confirmed goes: nothing half linked stays behind.
    let confirmed = match confirm_pushed(ports, caller, connection_id, site, &done).await {
        Ok(confirmed) => confirmed,
        Err(e) => {
            release_claims(ports.links, caller, &claimed.claim_ids).await;
            return Err(e);
        }
    };
    let unconfirmed: Vec<LinkId> = claimed
        .claim_ids
        .iter()
        .copied()
        .filter(|id| !confirmed.contains(id))
        .collect();
    release_claims(ports.links, caller, &unconfirmed).await;
    push_answer(
        site,
        site_link.as_ref(),
        &done,
        claimed.already_linked,
        failure,
    )
}

/// Reads the billing records a push names: the site, or the system and its site.
async fn push_target(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    request: PushRequest,
) -> Result<PushTarget, OperationError> {
    Ok(match request {
        PushRequest::Site {
            billing_site_id,
            extras,
            contacts,
            systems,
        } => {
            let site = ports
                .billing
                .site(&caller.dealer, &billing_site_id)
                .await
                .map_err(body_reference(
                    "billing_site_id",
                    format!("no billing site '{billing_site_id}'"),
                ))?;
            PushTarget {
                site,
                extras: Some(extras),
                contacts,
                specs: systems,
            }
        }
        PushRequest::System(spec) => {
            let system = ports
                .billing
                .system(&caller.dealer, &spec.billing_system_id)
                .await
                .map_err(body_reference(
                    "billing_system_id",
                    format!("no billing system '{}'", spec.billing_system_id),
                ))?;
            let site = ports
                .billing
                .site(&caller.dealer, &system.fields.site_id)
                .await
                .map_err(store_not_found(format!(
                    "no billing site '{}'",
                    system.fields.site_id
                )))?;
            PushTarget {
                site,
                extras: None,
                contacts: Vec::new(),
                specs: vec![spec],
            }
        }
    })
}

/// Checks every system of a push (listed once, device fields well formed, a
/// system of the pushed site) and reads its link on the connection, if any.
async fn check_systems<'a>(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    target: &'a PushTarget,
) -> Result<Vec<CheckedSystem<'a>>, OperationError> {
    let site = &target.site;
    let mut v = ValidationError::default();
    let mut systems = Vec::new();
    let mut seen = HashSet::new();
    for (i, spec) in target.specs.iter().enumerate() {
        let prefix = if target.extras.is_some() {
            format!("systems[{i}].device")
        } else {
            "device".to_owned()
        };
        if !seen.insert(spec.billing_system_id.clone()) {
            v.push(format!("systems[{i}].billing_system_id"), "is listed twice");
            continue;
        }
        check_device_fields(&mut v, &prefix, &spec.device);
        let system = ports
            .billing
            .system(&caller.dealer, &spec.billing_system_id)
            .await
            .map_err(body_reference(
                format!("{}billing_system_id", prefix.trim_end_matches("device")),
                format!("no billing system '{}'", spec.billing_system_id),
            ))?;
        if system.fields.site_id != site.id {
            v.push(
                format!("systems[{i}].billing_system_id"),
                format!(
                    "system '{}' belongs to site '{}', not '{}'",
                    system.id, system.fields.site_id, site.id
                ),
            );
        }
        let existing = link_on(
            ports.links,
            caller,
            connection_id,
            LinkKind::System,
            &system.id,
        )
        .await?;
        systems.push(CheckedSystem {
            system,
            spec,
            existing,
            prefix,
        });
    }
    v.into_result().map_err(OperationError::Invalid)?;
    Ok(systems)
}

/// A push goes only to connections where the record is not linked (S9):
/// with the site and every system linked already, there is nothing to push.
fn refuse_when_all_linked(
    connection: &Connection,
    target: &PushTarget,
    site_link: Option<&Link>,
    systems: &[CheckedSystem<'_>],
) -> Result<(), OperationError> {
    let nothing_left = systems.iter().all(|s| s.existing.is_some());
    if site_link.is_some() && nothing_left {
        let what = if target.extras.is_some() {
            "site"
        } else {
            "system"
        };
        // Name the link, as a push that loses the race for it does: the
        // caller learns which link to read whichever way it lost.
        let link = match target.extras {
            Some(_) => site_link.map(|l| l.id),
            None => systems
                .first()
                .and_then(|s| s.existing.as_ref().map(|l| l.id)),
        };
        let link = link.map_or_else(String::new, |id| format!(" (link {id})"));
        return Err(OperationError::Conflict {
            code: "already_linked",
            message: format!(
                "billing {what} is already linked on connection '{}'{link}; push only goes to connections where the record is not linked",
                connection.name.as_str()
            ),
        });
    }
    Ok(())
}

/// The choice-list fields of the new site and of the devices still to create.
async fn check_push_lookups(
    api: &dyn StagesApi,
    connection: &Connection,
    target: &PushTarget,
    systems: &[CheckedSystem<'_>],
) -> Result<(), OperationError> {
    let mut checks = target
        .extras
        .as_ref()
        .map(|e| site_lookup_checks("site", e))
        .unwrap_or_default();
    for s in systems {
        if s.existing.is_none() {
            checks.extend(device_lookup_checks(&s.prefix, &s.spec.device));
        }
    }
    check_lookups(api, connection, checks).await
}

/// A dry run (B6): what each record would become and the site that would be
/// sent, with nothing claimed and nothing sent.
fn dry_run_outcome(
    target: &PushTarget,
    site_link: Option<&Link>,
    systems: &[CheckedSystem<'_>],
) -> PushOutcome {
    let site = &target.site;
    let would_send = match (&target.extras, site_link) {
        (Some(extras), None) => {
            let mut s = new_site_for(site, extras, &target.contacts);
            s.devices = systems
                .iter()
                .filter(|s| s.existing.is_none())
                .map(|s| new_device_for(&s.system, s.spec))
                .collect();
            // PINs are write-only: a preview says one would be set, never which.
            Some(s.with_pins_masked())
        }
        _ => None,
    };
    let mut records = vec![PushedRecord {
        kind: LinkKind::Site,
        billing_id: site.id.to_string(),
        external_id: site_link.map(|l| l.external_id.clone()),
        action: if site_link.is_some() {
            PushAction::AlreadyLinked
        } else {
            PushAction::WouldCreate
        },
        link_id: site_link.map(|l| l.id),
    }];
    for s in systems {
        records.push(PushedRecord {
            kind: LinkKind::System,
            billing_id: s.system.id.to_string(),
            external_id: s.existing.as_ref().map(|l| l.external_id.clone()),
            action: if s.existing.is_some() {
                PushAction::AlreadyLinked
            } else {
                PushAction::WouldCreate
            },
            link_id: s.existing.as_ref().map(|l| l.id),
        });
    }
    PushOutcome {
        dry_run: true,
        records,
        would_send,
    }
}

/// Claims what the push will make: the site unless it is linked, and each
/// system not linked yet under the site's link.
async fn claim_push<'a>(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    site: &BillingSite,
    site_link: Option<&Link>,
    systems: Vec<CheckedSystem<'a>>,
) -> Result<Claimed<'a>, OperationError> {
    let site_link_id = site_link.map_or_else(LinkId::new, |l| l.id);
    let mut claims = Vec::new();
    if site_link.is_none() {
        claims.push(NewLink {
            id: site_link_id,
            connection_id,
            kind: LinkKind::Site,
            billing_id: site.id.clone(),
            external_id: crate::link::claim_placeholder(site_link_id),
            parent_id: None,
        });
    }
    let mut already_linked = Vec::new();
    let mut todo = Vec::new();
    for CheckedSystem {
        system,
        spec,
        existing,
        ..
    } in systems
    {
        match existing {
            Some(link) => already_linked.push(PushedRecord {
                kind: LinkKind::System,
                billing_id: system.id.to_string(),
                external_id: Some(link.external_id.clone()),
                action: PushAction::AlreadyLinked,
                link_id: Some(link.id),
            }),
            None => {
                let id = LinkId::new();
                claims.push(NewLink {
                    id,
                    connection_id,
                    kind: LinkKind::System,
                    billing_id: system.id.clone(),
                    external_id: crate::link::claim_placeholder(id),
                    parent_id: Some(site_link_id),
                });
                todo.push((system, spec, id));
            }
        }
    }
    let claim_ids: Vec<LinkId> = claims.iter().map(|c| c.id).collect();
    claim(ports.links, caller, claims).await?;
    Ok(Claimed {
        site_link_id,
        claim_ids,
        already_linked,
        todo,
    })
}

/// The connections a billing site can still be pushed to (S9).
pub async fn push_targets(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    billing_site_id: &BillingId,
) -> Result<Vec<Connection>, OperationError> {
    ports
        .billing
        .site(&caller.dealer, billing_site_id)
        .await
        .map_err(store_not_found(format!(
            "no billing site '{billing_site_id}'"
        )))?;
    let linked: HashSet<ConnectionId> = ports
        .links
        .links_of_billing(&caller.dealer, LinkKind::Site, billing_site_id)
        .await?
        .into_iter()
        .map(|l| l.connection_id)
        .collect();
    let mut targets = Vec::new();
    let mut after = None;
    loop {
        let page = ports
            .connections
            .list_connections(
                &caller.dealer,
                Some(crate::connection::ProviderKind::Stages),
                PageRequest { after, limit: 500 },
            )
            .await?;
        targets.extend(page.items.into_iter().filter(|c| {
            c.status == crate::connection::ConnectionStatus::Active && !linked.contains(&c.id)
        }));
        match page.next_page_token {
            Some(t) => after = Some(t),
            None => break,
        }
    }
    Ok(targets)
}
