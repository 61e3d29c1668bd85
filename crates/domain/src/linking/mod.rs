//! Getting records into and out of the link table (S4, S5, S6, S7, S8, S9,
//! S12, S13): push a billing site or system to Stages (with a dry run, B6),
//! link existing records, point a link elsewhere, unlink. Every rule of the
//! External tab is enforced here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::audit::NewAuditEntry;
use crate::billing::{BillingId, BillingSite, BillingSystem};
use crate::connection::{Connection, ConnectionId};
use crate::link::{ConfirmLink, Link, LinkFilter, LinkId, LinkKind, NewLink, Relink};
use crate::operations::{stages_as_caller, upstream, OperationError};
use crate::stages::{
    LookupList, NewStagesConfiguration, NewStagesContact, NewStagesDevice, NewStagesSite,
    StagesApi, StagesDevice, StagesDeviceFields, StagesDevicePatch, StagesError, StagesSite,
    StagesSiteFields, StagesSitePatch, StagesSiteQuery,
};
use crate::store::{BillingStore, ConnectionStore, LinkStore, PageRequest, StoreError};
use crate::tenancy::Caller;
use crate::validation::ValidationError;

/// The ports the linking operations use.
#[derive(Clone, Copy)]
pub struct LinkingPorts<'a> {
    pub connections: &'a dyn ConnectionStore,
    pub billing: &'a dyn BillingStore,
    pub links: &'a dyn LinkStore,
    pub stages: &'a dyn crate::stages::StagesConnector,
    /// Fields of links that did not sync (conflicts held, refusals).
    pub issues: &'a dyn crate::field_issues::FieldIssueStore,
    /// Changes made to Stages outside a link change (a reconcile's repairs).
    pub audit: &'a dyn crate::store::AuditStore,
}

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

/// What a push did (or, in a dry run, would do) to one record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PushedRecord {
    pub kind: LinkKind,
    pub billing_id: String,
    /// The Stages site number or device id (none in a dry run of a new record).
    pub external_id: Option<String>,
    /// created, reused (found by its billing id after an earlier attempt), already_linked, would_create
    pub action: &'static str,
    pub link_id: Option<LinkId>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PushOutcome {
    pub dry_run: bool,
    pub records: Vec<PushedRecord>,
    /// In a dry run: the site that would be sent to Stages.
    pub would_send: Option<NewStagesSite>,
}

fn store_not_found(what: impl Into<String>) -> impl FnOnce(StoreError) -> OperationError {
    let what = what.into();
    move |e| match e {
        StoreError::NotFound => OperationError::NotFound(what),
        other => other.into(),
    }
}

/// An id a request body gives that names nothing: a 422 on that field,
/// whatever the route (an id in the path that names nothing is a 404).
pub(crate) fn body_reference(
    field: impl Into<String>,
    what: impl Into<String>,
) -> impl FnOnce(StoreError) -> OperationError {
    let (field, what) = (field.into(), what.into());
    move |e| match e {
        StoreError::NotFound => OperationError::Invalid(ValidationError::field(field, what)),
        other => other.into(),
    }
}

pub(crate) async fn load_connection(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    id: ConnectionId,
) -> Result<(Connection, Arc<dyn StagesApi>), OperationError> {
    let connection = ports
        .connections
        .connection(&caller.dealer, id)
        .await
        .map_err(store_not_found("no such connection"))?;
    let api = stages_as_caller(ports.connections, ports.stages, caller, &connection).await?;
    Ok((connection, api))
}

/// The link of a billing record on one connection, if any.
pub async fn link_on(
    links: &dyn LinkStore,
    caller: &Caller,
    connection_id: ConnectionId,
    kind: LinkKind,
    billing_id: &BillingId,
) -> Result<Option<Link>, OperationError> {
    Ok(links
        .links_of_billing(&caller.dealer, kind, billing_id)
        .await?
        .into_iter()
        .find(|l| l.connection_id == connection_id))
}

/// Checks the fields backed by a central-station choice list.
pub(crate) async fn check_lookups(
    api: &dyn StagesApi,
    connection: &Connection,
    checks: Vec<(String, LookupList, String)>,
) -> Result<(), OperationError> {
    let mut lists: BTreeMap<&'static str, HashSet<String>> = BTreeMap::new();
    let mut v = ValidationError::default();
    for (field, list, value) in checks {
        if value.is_empty() {
            continue;
        }
        if !lists.contains_key(list.as_str()) {
            let items = api.lookup(list).await.map_err(upstream(connection))?;
            lists.insert(list.as_str(), items.into_iter().map(|i| i.code).collect());
        }
        if !lists[list.as_str()].contains(&value) {
            v.push(
                field,
                format!(
                    "'{value}' is not in the central station's {} list",
                    list.as_str()
                ),
            );
        }
    }
    v.into_result().map_err(OperationError::Invalid)
}

pub(crate) fn site_lookup_checks(
    prefix: &str,
    extras: &StagesSiteExtras,
) -> Vec<(String, LookupList, String)> {
    [
        ("region", LookupList::Regions, &extras.region),
        ("time_zone", LookupList::TimeZones, &extras.time_zone),
        ("site_type", LookupList::SiteTypes, &extras.site_type),
        (
            "dispatch_type",
            LookupList::DispatchTypes,
            &extras.dispatch_type,
        ),
        ("ul_code", LookupList::UlCodes, &extras.ul_code),
        ("authority", LookupList::Authorities, &extras.authority),
    ]
    .into_iter()
    .map(|(f, l, v)| (format!("{prefix}.{f}"), l, v.clone()))
    .collect()
}

pub(crate) fn device_lookup_checks(
    prefix: &str,
    d: &StagesDeviceFields,
) -> Vec<(String, LookupList, String)> {
    [
        ("device_type", LookupList::DeviceTypes, &d.device_type),
        ("oos_category", LookupList::OosCategories, &d.oos_category),
        (
            "timer_test_type",
            LookupList::TimerTestTypes,
            &d.timer_test_type,
        ),
        ("comm_type", LookupList::CommTypes, &d.comm_type),
        ("lid_type", LookupList::LidTypes, &d.lid_type),
    ]
    .into_iter()
    .map(|(f, l, v)| (format!("{prefix}.{f}"), l, v.clone()))
    .collect()
}

/// `mm:ss` with seconds below 60.
pub(crate) fn is_period(s: &str) -> bool {
    let Some((m, sec)) = s.split_once(':') else {
        return false;
    };
    m.len() == 2
        && sec.len() == 2
        && m.bytes().all(|b| b.is_ascii_digit())
        && sec.bytes().all(|b| b.is_ascii_digit())
        && sec < "60"
}

pub(crate) fn check_device_fields(v: &mut ValidationError, prefix: &str, d: &StagesDeviceFields) {
    let code = d.transmitter_code.trim();
    if code.is_empty() {
        v.push(format!("{prefix}.transmitter_code"), "must not be empty");
    } else if code.chars().count() > 32 || code.chars().any(char::is_control) {
        v.push(
            format!("{prefix}.transmitter_code"),
            "must be at most 32 printable characters",
        );
    }
    for (field, value) in [
        ("entry_period", &d.entry_period),
        ("exit_period", &d.exit_period),
    ] {
        if !value.is_empty() && !is_period(value) {
            v.push(format!("{prefix}.{field}"), "must be mm:ss");
        }
    }
}

fn new_site_for(
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

fn new_device_for(system: &BillingSystem, spec: &PushSystem) -> NewStagesDevice {
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

fn audit(
    caller: &Caller,
    action: &str,
    link: &NewLink,
    before: Option<serde_json::Value>,
) -> NewAuditEntry {
    NewAuditEntry {
        actor: caller.user.0.clone(),
        action: action.to_owned(),
        connection_id: Some(link.connection_id),
        kind: link.kind.as_str().to_owned(),
        billing_id: Some(link.billing_id.as_str().to_owned()),
        external_id: Some(link.external_id.clone()),
        before,
        after: Some(serde_json::json!({"external_id": link.external_id, "link_id": link.id})),
    }
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
    let (site, extras, contacts, specs) = match request {
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
            (site, Some(extras), contacts, systems)
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
            (site, None, Vec::new(), vec![spec])
        }
    };
    let site_link = link_on(ports.links, caller, connection_id, LinkKind::Site, &site.id).await?;
    if extras.is_none() && site_link.is_none() {
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
    let mut v = ValidationError::default();
    let mut systems = Vec::new();
    let mut seen = HashSet::new();
    for (i, spec) in specs.iter().enumerate() {
        let prefix = if extras.is_some() {
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
        systems.push((system, spec, existing, prefix));
    }
    v.into_result().map_err(OperationError::Invalid)?;
    let nothing_left = systems.iter().all(|(_, _, existing, _)| existing.is_some());
    if site_link.is_some() && nothing_left {
        let what = if extras.is_some() { "site" } else { "system" };
        // Name the link, as a push that loses the race for it does: the
        // caller learns which link to read whichever way it lost.
        let link = match extras {
            Some(_) => site_link.as_ref().map(|l| l.id),
            None => systems
                .first()
                .and_then(|(_, _, l, _)| l.as_ref().map(|l| l.id)),
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
    let mut checks = extras
        .as_ref()
        .map(|e| site_lookup_checks("site", e))
        .unwrap_or_default();
    for (_, spec, existing, prefix) in &systems {
        if existing.is_none() {
            checks.extend(device_lookup_checks(prefix, &spec.device));
        }
    }
    check_lookups(api.as_ref(), &connection, checks).await?;

    let mut records = Vec::new();
    if dry_run {
        let would_send = match (&extras, &site_link) {
            (Some(extras), None) => {
                let mut s = new_site_for(&site, extras, &contacts);
                s.devices = systems
                    .iter()
                    .filter(|(_, _, existing, _)| existing.is_none())
                    .map(|(system, spec, _, _)| new_device_for(system, spec))
                    .collect();
                // PINs are write-only: a preview says one would be set, never which.
                Some(s.with_pins_masked())
            }
            _ => None,
        };
        records.push(PushedRecord {
            kind: LinkKind::Site,
            billing_id: site.id.to_string(),
            external_id: site_link.as_ref().map(|l| l.external_id.clone()),
            action: if site_link.is_some() {
                "already_linked"
            } else {
                "would_create"
            },
            link_id: site_link.as_ref().map(|l| l.id),
        });
        for (system, _, existing, _) in &systems {
            records.push(PushedRecord {
                kind: LinkKind::System,
                billing_id: system.id.to_string(),
                external_id: existing.as_ref().map(|l| l.external_id.clone()),
                action: if existing.is_some() {
                    "already_linked"
                } else {
                    "would_create"
                },
                link_id: existing.as_ref().map(|l| l.id),
            });
        }
        return Ok(PushOutcome {
            dry_run,
            records,
            would_send,
        });
    }

    // Claim first: of pushes racing for one record, the unique constraints let
    // one through and the others leave before touching Stages.
    let site_link_id = site_link.as_ref().map_or_else(LinkId::new, |l| l.id);
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
    let mut todo = Vec::new();
    for (system, spec, existing, _) in systems {
        match existing {
            Some(link) => records.push(PushedRecord {
                kind: LinkKind::System,
                billing_id: system.id.to_string(),
                external_id: Some(link.external_id.clone()),
                action: "already_linked",
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
    let pushed = push_claimed(
        &connection,
        api.as_ref(),
        &site,
        site_link.as_ref(),
        site_link_id,
        extras.as_ref().map(|e| (e, contacts.as_slice())),
        &todo,
    )
    .await;
    // Whatever was not confirmed goes: nothing half linked stays behind.
    let release = |confirmed: &[LinkId]| {
        claim_ids
            .iter()
            .copied()
            .filter(|id| !confirmed.contains(id))
            .collect::<Vec<_>>()
    };
    let (done, failure) = match pushed {
        Ok(done) => (done, None),
        Err((done, failure)) => (done, Some(failure)),
    };
    let confirmed = match confirm_pushed(ports, caller, connection_id, &site, &done).await {
        Ok(confirmed) => confirmed,
        Err(e) => {
            release_claims(ports.links, caller, &claim_ids).await;
            return Err(e);
        }
    };
    release_claims(ports.links, caller, &release(&confirmed)).await;
    let mut done_records: Vec<PushedRecord> = done
        .iter()
        .map(|d| PushedRecord {
            kind: d.kind,
            billing_id: d.billing_id.to_string(),
            external_id: Some(d.external_id.clone()),
            action: d.action,
            link_id: Some(d.link_id),
        })
        .collect();
    if let Some(link) = &site_link {
        done_records.insert(
            0,
            PushedRecord {
                kind: LinkKind::Site,
                billing_id: site.id.to_string(),
                external_id: Some(link.external_id.clone()),
                action: "already_linked",
                link_id: Some(link.id),
            },
        );
    }
    let mut all = done_records;
    all.extend(records);
    if let Some((failed, error)) = failure {
        return Err(
            match (failed, all.iter().any(|r| r.action != "already_linked")) {
                // Nothing was made: the plain failure (a refusal is a 422 and not
                // worth sending again; a transient one is).
                (_, false) | (None, _) => error,
                (Some(failed), true) => OperationError::PartialPush {
                    done: all,
                    failed: failed.to_string(),
                    error: Box::new(error),
                },
            },
        );
    }
    Ok(PushOutcome {
        dry_run,
        records: all,
        would_send: None,
    })
}

/// A record a push made or found in Stages, to be confirmed as a link.
struct Pushed<'a> {
    kind: LinkKind,
    billing_id: BillingId,
    external_id: String,
    action: &'static str,
    link_id: LinkId,
    parent_id: Option<LinkId>,
    /// A system's device as it was asked for.
    system: Option<(&'a BillingSystem, &'a PushSystem)>,
}

/// Stages failed: what was done before (confirmed anyway, so a resend finds it
/// linked), the billing system it stopped at, and the error.
type PushFailure<'a> = (Vec<Pushed<'a>>, (Option<BillingId>, OperationError));

/// The Stages half of a push, on claimed records. A new site goes in one
/// request with its devices and contacts: Stages checks it whole and stores
/// all or nothing. Devices of a site that exists already must be created one
/// by one; a refusal stops there (Stages cannot delete what was made, so what
/// is done stays, complete and linked, and the answer says so).
#[allow(clippy::too_many_arguments)]
async fn push_claimed<'a>(
    connection: &Connection,
    api: &dyn StagesApi,
    site: &BillingSite,
    site_link: Option<&Link>,
    site_link_id: LinkId,
    new_site: Option<(&StagesSiteExtras, &[NewStagesContact])>,
    todo: &'a [(BillingSystem, &'a PushSystem, LinkId)],
) -> Result<Vec<Pushed<'a>>, PushFailure<'a>> {
    let up = upstream(connection);
    let mut done = Vec::new();
    let site_no =
        match site_link {
            Some(link) => link.external_id.clone(),
            None => {
                let (extras, contacts) = new_site.expect("a system push needs a linked site");
                let found = api
                    .list_sites(&StagesSiteQuery {
                        billing_id: Some(site.id.to_string()),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| (Vec::new(), (None, up(e))))?
                    .items
                    .into_iter()
                    .next();
                match found {
                    // An earlier attempt created it but its answer was lost.
                    Some(existing) => {
                        done.push(Pushed {
                            kind: LinkKind::Site,
                            billing_id: site.id.clone(),
                            external_id: existing.site_no.clone(),
                            action: "reused",
                            link_id: site_link_id,
                            parent_id: None,
                            system: None,
                        });
                        existing.site_no
                    }
                    None => {
                        let mut new = new_site_for(site, extras, contacts);
                        new.devices = todo
                            .iter()
                            .map(|(system, spec, _)| new_device_for(system, spec))
                            .collect();
                        let created = api
                            .create_site(&new)
                            .await
                            .map_err(|e| (Vec::new(), (None, up(e))))?;
                        done.push(Pushed {
                            kind: LinkKind::Site,
                            billing_id: site.id.clone(),
                            external_id: created.site.site_no.clone(),
                            action: "created",
                            link_id: site_link_id,
                            parent_id: None,
                            system: None,
                        });
                        for (system, spec, id) in todo {
                            let Some(device) = created.devices.iter().find(|d| {
                                d.fields.billing_id.as_deref() == Some(system.id.as_str())
                            }) else {
                                let e = StagesError::BadAnswer(format!(
                                    "the new site has no device for billing system '{}'",
                                    system.id
                                ));
                                return Err((done, (Some(system.id.clone()), up(e))));
                            };
                            done.push(Pushed {
                                kind: LinkKind::System,
                                billing_id: system.id.clone(),
                                external_id: device.device_id.clone(),
                                action: "created",
                                link_id: *id,
                                parent_id: Some(site_link_id),
                                system: Some((system, spec)),
                            });
                        }
                        return Ok(done);
                    }
                }
            }
        };
    // Devices of an existing site, one at a time; each is looked up by its
    // billing id first, so a resend after a lost answer creates nothing twice.
    let mut existing: Option<Vec<StagesDevice>> = None;
    for (system, spec, id) in todo {
        let step: Result<(String, &'static str), StagesError> = async {
            if existing.is_none() {
                existing = Some(api.list_devices(&site_no).await?);
            }
            let found = existing.as_ref().and_then(|ds| {
                ds.iter()
                    .find(|d| d.fields.billing_id.as_deref() == Some(system.id.as_str()))
            });
            match found {
                Some(d) => Ok((d.device_id.clone(), "reused")),
                None => {
                    let d = api
                        .create_device(&site_no, &new_device_for(system, spec))
                        .await?;
                    Ok((d.device_id, "created"))
                }
            }
        }
        .await;
        match step {
            Ok((device_id, action)) => done.push(Pushed {
                kind: LinkKind::System,
                billing_id: system.id.clone(),
                external_id: device_id,
                action,
                link_id: *id,
                parent_id: Some(site_link_id),
                system: Some((system, spec)),
            }),
            Err(e) => return Err((done, (Some(system.id.clone()), up(e)))),
        }
    }
    Ok(done)
}

/// Confirms the claims of what a push made, with their audit entries, then
/// brings the billing systems in line and keeps the snapshots. Returns the
/// confirmed link ids.
async fn confirm_pushed(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    site: &BillingSite,
    done: &[Pushed<'_>],
) -> Result<Vec<LinkId>, OperationError> {
    if done.is_empty() {
        return Ok(Vec::new());
    }
    let mut confirms = Vec::new();
    let mut entries = Vec::new();
    for d in done {
        confirms.push(ConfirmLink {
            link_id: d.link_id,
            external_id: Some(d.external_id.clone()),
        });
        let new = NewLink {
            id: d.link_id,
            connection_id,
            kind: d.kind,
            billing_id: d.billing_id.clone(),
            external_id: d.external_id.clone(),
            parent_id: d.parent_id,
        };
        entries.push(audit(caller, "push", &new, None));
    }
    ports
        .links
        .confirm_links(&caller.dealer, confirms, entries)
        .await
        .map_err(claim_lost)?;
    for d in done {
        match d.system {
            // Both sides now hold the billing values: the base of later syncs.
            None => {
                ports
                    .links
                    .set_link_snapshot(
                        &caller.dealer,
                        d.link_id,
                        crate::syncing::pushed_snapshot(
                            LinkKind::Site,
                            &crate::sync::billing_site_values(&site.fields),
                        ),
                        Vec::new(),
                    )
                    .await?
            }
            Some((system, spec)) => {
                let device_id = d.external_id.as_str();
                adopt_pushed_device(
                    ports,
                    caller,
                    connection_id,
                    system,
                    spec,
                    d.link_id,
                    device_id,
                )
                .await?
            }
        }
    }
    Ok(done.iter().map(|d| d.link_id).collect())
}

/// The transmitter code entered for Stages becomes the billing system number:
/// a change the service makes, so it is published. Location and info typed
/// for the device are the system's too, so both sides agree after the push.
async fn adopt_pushed_device(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    system: &BillingSystem,
    spec: &PushSystem,
    link_id: LinkId,
    device_id: &str,
) -> Result<(), OperationError> {
    let code = spec.device.transmitter_code.trim();
    let mut fields = system.fields.clone();
    fields.system_number = code.to_owned();
    if !spec.device.location.is_empty() {
        fields.location = spec.device.location.clone();
    }
    if !spec.device.info.is_empty() {
        fields.info = spec.device.info.clone();
    }
    if fields != system.fields {
        let before = crate::sync::billing_system_values(&system.fields);
        let changed: crate::sync::Values = crate::sync::billing_system_values(&fields)
            .into_iter()
            .filter(|(f, v)| before.get(f) != Some(v))
            .collect();
        let record = crate::audit::ChangedRecord {
            connection_id,
            kind: LinkKind::System.as_str(),
            billing_id: system.id.as_str(),
            external_id: device_id,
        };
        let billing = crate::audit::WrittenSide::Billing;
        let entry =
            crate::audit::data_change(&caller.user.0, "push", billing, record, &before, &changed);
        let event = crate::events::NewEvent {
            event_type: crate::events::types::BILLING_SYSTEM_UPDATED.into(),
            subject_kind: "system".into(),
            subject_id: system.id.to_string(),
            connection_id: Some(connection_id),
            data: serde_json::json!({
                "changed": {"system_number": code, "location": fields.location, "info": fields.info},
                "record": fields,
                "source": "push",
            }),
        };
        ports
            .billing
            .write_billing(
                &caller.dealer,
                crate::billing::BillingWrite::System {
                    id: system.id.clone(),
                    fields: fields.clone(),
                },
                vec![event],
                Some(connection_id),
                entry.into_iter().collect(),
            )
            .await?;
    }
    ports
        .links
        .set_link_snapshot(
            &caller.dealer,
            link_id,
            crate::syncing::pushed_snapshot(
                LinkKind::System,
                &crate::sync::billing_system_values(&fields),
            ),
            Vec::new(),
        )
        .await?;
    Ok(())
}

/// Claims records in the link table before anything is written to Stages. A
/// record held by another link or claim is a 409 naming that link.
pub(crate) async fn claim(
    links: &dyn LinkStore,
    caller: &Caller,
    claims: Vec<NewLink>,
) -> Result<Vec<Link>, OperationError> {
    claim_for(links, &caller.dealer, claims).await
}

pub(crate) async fn claim_for(
    links: &dyn LinkStore,
    dealer: &crate::tenancy::DealerId,
    claims: Vec<NewLink>,
) -> Result<Vec<Link>, OperationError> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    links
        .claim_links(
            dealer,
            claims,
            chrono::Duration::seconds(crate::link::CLAIM_LEASE_SECS),
        )
        .await
        .map_err(claim_lost)
}

/// A claim refused (or lost after its lease): the existing `already_linked` conflict.
pub(crate) fn claim_lost(e: StoreError) -> OperationError {
    match e {
        StoreError::Conflict(message) => OperationError::Conflict {
            code: "already_linked",
            message,
        },
        other => other.into(),
    }
}

/// Drops own claims; a failure is logged (the lease frees them anyway).
pub(crate) async fn release_claims(links: &dyn LinkStore, caller: &Caller, ids: &[LinkId]) {
    release_claims_for(links, &caller.dealer, ids).await
}

pub(crate) async fn release_claims_for(
    links: &dyn LinkStore,
    dealer: &crate::tenancy::DealerId,
    ids: &[LinkId],
) {
    if ids.is_empty() {
        return;
    }
    if let Err(e) = links.release_links(dealer, ids).await {
        tracing::warn!(error = %e, "could not release claims; their lease will");
    }
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

/// One system-to-device pair of a link request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemPair {
    pub billing_system_id: BillingId,
    pub stages_device_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRequest {
    pub connection_id: ConnectionId,
    pub billing_site_id: BillingId,
    pub stages_site_no: String,
    pub systems: Vec<SystemPair>,
}

/// Reads a Stages site a request names; a missing one is the caller's mistake (422).
pub(crate) async fn named_site(
    api: &dyn StagesApi,
    connection: &Connection,
    field: &str,
    site_no: &str,
) -> Result<StagesSite, OperationError> {
    match api.get_site(site_no).await {
        Ok(s) => Ok(s),
        Err(StagesError::NotFound(_)) => Err(OperationError::Invalid(ValidationError::field(
            field,
            format!("Stages site '{site_no}' does not exist"),
        ))),
        Err(e) => Err(upstream(connection)(e)),
    }
}

async fn named_device(
    api: &dyn StagesApi,
    connection: &Connection,
    field: &str,
    device_id: &str,
) -> Result<StagesDevice, OperationError> {
    match api.get_device(device_id).await {
        Ok(d) => Ok(d),
        Err(StagesError::NotFound(_)) => Err(OperationError::Invalid(ValidationError::field(
            field,
            format!("Stages device '{device_id}' does not exist"),
        ))),
        Err(e) => Err(upstream(connection)(e)),
    }
}

/// The 409 for a Stages record that carries another record's billing id,
/// with the way out: the link that holds it (released, it lets go), or, when
/// no link of this connection holds it, how to clear it.
#[allow(clippy::too_many_arguments)]
async fn claimed_elsewhere(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    kind: LinkKind,
    id: &str,
    carried: &Option<String>,
    ours: &BillingId,
) -> Result<Option<OperationError>, OperationError> {
    let Some(b) = carried
        .as_deref()
        .filter(|b| !b.is_empty() && *b != ours.as_str())
    else {
        return Ok(None);
    };
    let what = match kind {
        LinkKind::Site => "Stages site",
        LinkKind::System => "Stages device",
    };
    let holder = match BillingId::parse(b) {
        Ok(other) => link_on(ports.links, caller, connection_id, kind, &other).await?,
        Err(_) => None,
    };
    let advice = match holder {
        Some(l) if l.external_id == id => format!(
            "link {} holds it; delete that link with DELETE /v1/links/{}?release=true to clear the billing id in Stages, then link again",
            l.id, l.id
        ),
        Some(l) => format!(
            "that record is linked to {what} '{}' here, so this is a stale copy: clear the billing id of '{id}' in Stages",
            l.external_id
        ),
        None => format!(
            "no link of this connection holds that record (an older integration's id, or a link deleted without release): link '{b}' to '{id}' again and delete that link with release=true (DELETE /v1/links/{{link_id}}?release=true), or clear the billing id in Stages"
        ),
    };
    Ok(Some(OperationError::Conflict {
        code: "claimed_in_stages",
        message: format!("{what} '{id}' carries billing id '{b}' of another record; {advice}"),
    }))
}

/// Link (S7): an existing billing site to an existing Stages site with at
/// least one system-to-device pair, each device a child of that site. The
/// links are claimed in the database first (so of many concurrent requests
/// exactly one wins), then the billing ids are written to Stages.
pub async fn link(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    request: LinkRequest,
) -> Result<Vec<Link>, OperationError> {
    let mut v = ValidationError::default();
    if request.systems.is_empty() {
        v.push(
            "systems",
            "link at least one system with its device: Stages needs a device on every linked site",
        );
    }
    let mut seen_systems = HashSet::new();
    let mut seen_devices = HashSet::new();
    for (i, pair) in request.systems.iter().enumerate() {
        if !seen_systems.insert(pair.billing_system_id.clone()) {
            v.push(format!("systems[{i}].billing_system_id"), "is listed twice");
        }
        if !seen_devices.insert(pair.stages_device_id.clone()) {
            v.push(format!("systems[{i}].stages_device_id"), "is listed twice");
        }
    }
    v.into_result().map_err(OperationError::Invalid)?;
    let (connection, api) = load_connection(ports, caller, request.connection_id)
        .await
        .map_err(|e| match e {
            // Named in the body, not the path.
            OperationError::NotFound(what) => {
                OperationError::Invalid(ValidationError::field("connection_id", what))
            }
            other => other,
        })?;
    let site = ports
        .billing
        .site(&caller.dealer, &request.billing_site_id)
        .await
        .map_err(body_reference(
            "billing_site_id",
            format!("no billing site '{}'", request.billing_site_id),
        ))?;
    let mut v = ValidationError::default();
    for (i, pair) in request.systems.iter().enumerate() {
        match ports
            .billing
            .system(&caller.dealer, &pair.billing_system_id)
            .await
        {
            Ok(system) if system.fields.site_id != site.id => v.push(
                format!("systems[{i}].billing_system_id"),
                format!(
                    "system '{}' belongs to site '{}', not '{}'",
                    system.id, system.fields.site_id, site.id
                ),
            ),
            Ok(_) => {}
            Err(StoreError::NotFound) => v.push(
                format!("systems[{i}].billing_system_id"),
                format!("no billing system '{}'", pair.billing_system_id),
            ),
            Err(e) => return Err(e.into()),
        }
    }
    v.into_result().map_err(OperationError::Invalid)?;

    let stages_site = named_site(
        api.as_ref(),
        &connection,
        "stages_site_no",
        &request.stages_site_no,
    )
    .await?;
    let mut devices = Vec::new();
    let mut v = ValidationError::default();
    for (i, pair) in request.systems.iter().enumerate() {
        let field = format!("systems[{i}].stages_device_id");
        let device =
            named_device(api.as_ref(), &connection, &field, &pair.stages_device_id).await?;
        if device.site_no != stages_site.site_no {
            v.push(
                field,
                format!(
                    "device '{}' belongs to Stages site '{}', not '{}': choose a device of the chosen site",
                    device.device_id, device.site_no, stages_site.site_no
                ),
            );
        }
        devices.push(device);
    }
    v.into_result().map_err(OperationError::Invalid)?;

    // A site already linked to this very Stages site may gain more systems.
    let existing_site_link =
        link_on(ports.links, caller, connection.id, LinkKind::Site, &site.id).await?;
    if let Some(l) = &existing_site_link {
        if l.external_id != stages_site.site_no {
            return Err(OperationError::Conflict {
                code: "already_linked",
                message: format!(
                    "billing site '{}' is already linked to Stages site '{}' on connection '{}'; edit or delete that link",
                    site.id,
                    l.external_id,
                    connection.name.as_str()
                ),
            });
        }
    } else if let Some(e) = claimed_elsewhere(
        ports,
        caller,
        connection.id,
        LinkKind::Site,
        &stages_site.site_no,
        &stages_site.billing_id,
        &site.id,
    )
    .await?
    {
        return Err(e);
    }
    for (pair, device) in request.systems.iter().zip(&devices) {
        if let Some(e) = claimed_elsewhere(
            ports,
            caller,
            connection.id,
            LinkKind::System,
            &device.device_id,
            &device.fields.billing_id,
            &pair.billing_system_id,
        )
        .await?
        {
            return Err(e);
        }
    }

    let site_link_id = existing_site_link
        .as_ref()
        .map_or_else(LinkId::new, |l| l.id);
    let mut new_links = Vec::new();
    if existing_site_link.is_none() {
        new_links.push(NewLink {
            id: site_link_id,
            connection_id: connection.id,
            kind: LinkKind::Site,
            billing_id: site.id.clone(),
            external_id: stages_site.site_no.clone(),
            parent_id: None,
        });
    }
    for pair in &request.systems {
        new_links.push(NewLink {
            id: LinkId::new(),
            connection_id: connection.id,
            kind: LinkKind::System,
            billing_id: pair.billing_system_id.clone(),
            external_id: pair.stages_device_id.clone(),
            parent_id: Some(site_link_id),
        });
    }
    let entries: Vec<NewAuditEntry> = new_links
        .iter()
        .map(|l| audit(caller, "link", l, None))
        .collect();
    let claim_ids: Vec<LinkId> = new_links.iter().map(|l| l.id).collect();
    claim(ports.links, caller, new_links).await?;

    // Write the billing ids to Stages under the claim; on a failure put back
    // what this request changed (no one else may write these records while
    // it holds them) and release the claim.
    let mut changed_site = false;
    let mut changed_devices: Vec<&StagesDevice> = Vec::new();
    let written: Result<(), StagesError> = async {
        if stages_site.billing_id.as_deref() != Some(site.id.as_str()) {
            changed_site = true;
            api.update_site(
                &stages_site.site_no,
                &StagesSitePatch {
                    billing_id: Some(site.id.to_string()),
                    ..Default::default()
                },
            )
            .await?;
        }
        for (pair, device) in request.systems.iter().zip(&devices) {
            if device.fields.billing_id.as_deref() != Some(pair.billing_system_id.as_str()) {
                changed_devices.push(device);
                api.update_device(
                    &device.device_id,
                    &StagesDevicePatch {
                        billing_id: Some(pair.billing_system_id.to_string()),
                        ..Default::default()
                    },
                )
                .await?;
            }
        }
        Ok(())
    }
    .await;
    if let Err(error) = written {
        if changed_site {
            restore_site_billing_id(api.as_ref(), &stages_site).await;
        }
        for device in changed_devices {
            restore_device_billing_id(api.as_ref(), device).await;
        }
        release_claims(ports.links, caller, &claim_ids).await;
        return Err(upstream(&connection)(error));
    }
    let confirms = claim_ids
        .iter()
        .map(|id| ConfirmLink {
            link_id: *id,
            external_id: None,
        })
        .collect();
    match ports
        .links
        .confirm_links(&caller.dealer, confirms, entries)
        .await
    {
        Ok(created) => Ok(created),
        Err(e) => {
            release_claims(ports.links, caller, &claim_ids).await;
            Err(claim_lost(e))
        }
    }
}

/// Puts back the billing id a site had before this request wrote its own (best effort).
async fn restore_site_billing_id(api: &dyn StagesApi, before: &StagesSite) {
    let patch = StagesSitePatch {
        billing_id: Some(before.billing_id.clone().unwrap_or_default()),
        ..Default::default()
    };
    if let Err(e) = api.update_site(&before.site_no, &patch).await {
        tracing::warn!(error = %e, site_no = %before.site_no, "could not put back a billing id");
    }
}

async fn restore_device_billing_id(api: &dyn StagesApi, before: &StagesDevice) {
    let patch = StagesDevicePatch {
        billing_id: Some(before.fields.billing_id.clone().unwrap_or_default()),
        ..Default::default()
    };
    if let Err(e) = api.update_device(&before.device_id, &patch).await {
        tracing::warn!(error = %e, device = %before.device_id, "could not put back a billing id");
    }
}

/// The new target of a link (S12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditLink {
    pub external_id: String,
    /// For a site link with linked systems: the device of the new site each
    /// linked system moves to (every linked system must be listed).
    pub systems: Vec<SystemPair>,
}

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
            v.into_result().map_err(OperationError::Invalid)?;
        }
    }

    // Claim the new records. Those the moving links hold already (a site
    // edit may cross its systems over between devices of one site) are ours.
    let own: HashSet<(LinkKind, &str)> = plan
        .iter()
        .map(|p| (p.link.kind, p.link.external_id.as_str()))
        .collect();
    let to_claim: Vec<Relink> = plan
        .iter()
        .filter(|p| !own.contains(&(p.link.kind, p.new.as_str())))
        .map(|p| Relink {
            link_id: p.link.id,
            new_external_id: p.new.clone(),
        })
        .collect();
    let claims = if to_claim.is_empty() {
        Vec::new()
    } else {
        ports
            .links
            .claim_relinks(
                &caller.dealer,
                to_claim,
                chrono::Duration::seconds(crate::link::CLAIM_LEASE_SECS),
            )
            .await
            .map_err(claim_lost)?
    };
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
    // The new records, read under the claim: each must exist, a device must
    // be a child of its site, and none may carry another record's billing id
    // (a record our own links hold carries a sibling's, which moves too).
    let mut carried: HashMap<(LinkKind, String), Option<String>> = HashMap::new();
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
    // The records left behind: what they carry now.
    for p in plan.iter().filter(|p| p.link.external_id != p.new) {
        let billing_id = match p.link.kind {
            LinkKind::Site => api
                .get_site(&p.link.external_id)
                .await
                .map(|s| s.billing_id),
            LinkKind::System => api
                .get_device(&p.link.external_id)
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

    // Move the billing ids: the old records let go of the link's own ids,
    // then the new records take them. `written` keeps what to put back.
    let mut written: Vec<(LinkKind, String, String)> = Vec::new();
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
            let left = put_back(api, &written).await;
            if !left.is_empty() {
                tracing::warn!(link = %current.id, left = ?left, "an edit that failed left billing ids in Stages");
            }
            Err(claim_lost(e))
        }
    }
}

/// Writes one billing id to a Stages site or device (`""` clears it).
pub(crate) async fn set_billing_id(
    api: &dyn StagesApi,
    kind: LinkKind,
    external_id: &str,
    billing_id: &str,
) -> Result<(), StagesError> {
    match kind {
        LinkKind::Site => api
            .update_site(
                external_id,
                &StagesSitePatch {
                    billing_id: Some(billing_id.to_owned()),
                    ..Default::default()
                },
            )
            .await
            .map(drop),
        LinkKind::System => api
            .update_device(
                external_id,
                &StagesDevicePatch {
                    billing_id: Some(billing_id.to_owned()),
                    ..Default::default()
                },
            )
            .await
            .map(drop),
    }
}

/// Puts back, last first, the billing ids an operation changed in Stages
/// (best effort); returns what could not be put back.
pub(crate) async fn put_back(
    api: &dyn StagesApi,
    written: &[(LinkKind, String, String)],
) -> Vec<String> {
    let mut left = Vec::new();
    for (kind, external_id, billing_id) in written.iter().rev() {
        if let Err(e) = set_billing_id(api, *kind, external_id, billing_id).await {
            tracing::warn!(error = %e, record = %external_id, "could not put back a billing id");
            let what = match kind {
                LinkKind::Site => "Stages site",
                LinkKind::System => "Stages device",
            };
            left.push(format!(
                "billing id '{billing_id}' of {what} '{external_id}'"
            ));
        }
    }
    left
}

/// Unlink (S8, S13): the link (and a site link's system links) goes; both
/// records stay as they are, in Stages too. Remembered as deliberate so a
/// reconcile does not silently link them again.
pub async fn unlink(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    link_id: LinkId,
) -> Result<Vec<Link>, OperationError> {
    let current = ports
        .links
        .link(&caller.dealer, link_id)
        .await
        .map_err(store_not_found("no such link"))?;
    let entry = NewAuditEntry {
        actor: caller.user.0.clone(),
        action: "unlink".into(),
        connection_id: Some(current.connection_id),
        kind: current.kind.as_str().into(),
        billing_id: Some(current.billing_id.to_string()),
        external_id: Some(current.external_id.clone()),
        before: Some(
            serde_json::json!({"link_id": current.id, "external_id": current.external_id}),
        ),
        after: None,
    };
    Ok(ports
        .links
        .unlink(&caller.dealer, &[current.id], &caller.user.0, vec![entry])
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_minutes_and_seconds() {
        assert!(is_period("01:30"));
        assert!(is_period("00:00"));
        for bad in ["1:30", "01:60", "0130", "ab:cd", "01:3"] {
            assert!(!is_period(bad), "{bad}");
        }
    }
}

/// A Stages record with the link the service holds for it on that connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Browsed<T> {
    pub record: T,
    pub link: Option<Link>,
}

/// The link of a Stages record on one connection, if any.
pub(crate) async fn link_of_external(
    ports: LinkingPorts<'_>,
    dealer: &crate::tenancy::DealerId,
    connection_id: ConnectionId,
    kind: LinkKind,
    external_id: &str,
) -> Result<Option<Link>, OperationError> {
    Ok(ports
        .links
        .list_links(
            dealer,
            &LinkFilter {
                connection_id: Some(connection_id),
                kind: Some(kind),
                external_id: Some(external_id.to_owned()),
                ..Default::default()
            },
            PageRequest {
                after: None,
                limit: 1,
            },
        )
        .await?
        .items
        .into_iter()
        .next())
}

/// The central station's choice list.
pub async fn lookup(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    list: LookupList,
) -> Result<Vec<crate::stages::LookupItem>, OperationError> {
    let (connection, api) = load_connection(ports, caller, connection_id).await?;
    api.lookup(list).await.map_err(upstream(&connection))
}

/// Stages sites to pick from (S4): `unlinked` keeps those without a billing id
/// in Stages and without a link on this connection.
pub async fn browse_sites(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    query: StagesSiteQuery,
) -> Result<crate::Page<Browsed<StagesSite>>, OperationError> {
    let (connection, api) = load_connection(ports, caller, connection_id).await?;
    let unlinked = query.unlinked;
    let page = api
        .list_sites(&query)
        .await
        .map_err(upstream(&connection))?;
    let ids: Vec<String> = page.items.iter().map(|s| s.site_no.clone()).collect();
    let linked: HashSet<String> = ports
        .links
        .linked_external_ids(&caller.dealer, connection_id, LinkKind::Site, &ids)
        .await?
        .into_iter()
        .collect();
    let mut items = Vec::new();
    for site in page.items {
        let is_linked = linked.contains(&site.site_no);
        if unlinked && is_linked {
            continue;
        }
        let link = if is_linked {
            link_of_external(
                ports,
                &caller.dealer,
                connection_id,
                LinkKind::Site,
                &site.site_no,
            )
            .await?
        } else {
            None
        };
        items.push(Browsed { record: site, link });
    }
    Ok(crate::Page {
        items,
        next_page_token: page.next_page_token,
    })
}

/// One Stages site with its devices, each with its link (to pre-fill a billing site).
pub async fn stages_site(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    site_no: &str,
) -> Result<(Browsed<StagesSite>, Vec<Browsed<StagesDevice>>), OperationError> {
    let (connection, api) = load_connection(ports, caller, connection_id).await?;
    let site = api.get_site(site_no).await.map_err(upstream(&connection))?;
    let devices = api
        .list_devices(site_no)
        .await
        .map_err(upstream(&connection))?;
    let site_link = link_of_external(
        ports,
        &caller.dealer,
        connection_id,
        LinkKind::Site,
        site_no,
    )
    .await?;
    let mut browsed = Vec::new();
    for d in devices {
        let link = link_of_external(
            ports,
            &caller.dealer,
            connection_id,
            LinkKind::System,
            &d.device_id,
        )
        .await?;
        browsed.push(Browsed { record: d, link });
    }
    Ok((
        Browsed {
            record: site,
            link: site_link,
        },
        browsed,
    ))
}

/// One Stages device with its link.
pub async fn stages_device(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    device_id: &str,
) -> Result<Browsed<StagesDevice>, OperationError> {
    let (connection, api) = load_connection(ports, caller, connection_id).await?;
    let device = api
        .get_device(device_id)
        .await
        .map_err(upstream(&connection))?;
    let link = link_of_external(
        ports,
        &caller.dealer,
        connection_id,
        LinkKind::System,
        device_id,
    )
    .await?;
    Ok(Browsed {
        record: device,
        link,
    })
}
