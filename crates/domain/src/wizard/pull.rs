//! The wizard's pull (B12), and `site.send_to_billing` (S16, S17) through
//! it: claims, billing ids to Stages, billing records, new devices, links,
//! each step taken back when a later one fails.

use std::collections::{BTreeMap, HashSet};

use super::{
    check_new_devices, delete_records, existing_customer, new_id, system_of,
    with_site_contact_details, write_records, NewDevice, WizardCustomer, WizardOutcome, WizardPull,
    WizardSystem,
};
use crate::audit::{self, ChangedRecord, NewAuditEntry, WrittenSide};
use crate::billing::{BillingId, CustomerFields, SiteFields, SystemFields};
use crate::connection::{Connection, ConnectionId};
use crate::link::{claim_placeholder, ConfirmLink, LinkId, LinkKind, NewLink};
use crate::linking::{self, check_lookups, device_lookup_checks, LinkingPorts};
use crate::operations::{upstream, OperationError};
use crate::stages::{
    DeviceId, NewStagesDevice, SiteNo, StagesApi, StagesDevice, StagesDevicePatch, StagesSite,
    StagesSitePatch,
};
use crate::sync::{self, Snapshot};
use crate::tenancy::Caller;
use crate::validation::ValidationError;

/// The wizard's pull: a Stages site (and the devices asked for, all by
/// default) becomes a new billing site with one system per device, under an
/// existing or a new billing customer; new devices are made in Stages; all
/// of it linked.
pub async fn pull(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    request: WizardPull,
) -> Result<WizardOutcome, OperationError> {
    let (connection, api) = linking::load_connection(ports, caller, connection_id).await?;
    let mut v = ValidationError::default();
    if request.site_no.trim().is_empty() {
        v.push("site_no", "must not be empty");
    }
    check_new_devices(&mut v, "new_devices", &request.new_devices);
    if let Some(ids) = &request.device_ids {
        let mut seen = HashSet::new();
        for (i, id) in ids.iter().enumerate() {
            if !seen.insert(id) {
                v.push(format!("device_ids[{i}]"), "is listed twice");
            }
        }
    }
    v.into_result()?;
    if let WizardCustomer::Existing(id) = &request.customer {
        existing_customer(ports, caller, id).await?;
    }
    let site = linking::named_site(api.as_ref(), &connection, "site_no", &request.site_no).await?;
    let on_site = api
        .list_devices(&site.site_no)
        .await
        .map_err(upstream(&connection))?;
    let taken: Vec<StagesDevice> = match &request.device_ids {
        None => on_site.clone(),
        Some(ids) => {
            let mut v = ValidationError::default();
            let mut taken = Vec::new();
            for (i, id) in ids.iter().enumerate() {
                match on_site.iter().find(|d| &d.device_id == id) {
                    Some(d) => taken.push(d.clone()),
                    None => v.push(
                        format!("device_ids[{i}]"),
                        format!("Stages site '{}' has no device '{id}'", site.site_no),
                    ),
                }
            }
            v.into_result()?;
            taken
        }
    };
    let mut v = ValidationError::default();
    for (i, n) in request.new_devices.iter().enumerate() {
        let code = n.device.transmitter_code.trim();
        if taken
            .iter()
            .any(|d| d.fields.transmitter_code.trim() == code)
        {
            v.push(
                format!("new_devices[{i}].device.transmitter_code"),
                format!("transmitter code '{code}' is a device the site has; list it in device_ids instead"),
            );
        }
    }
    v.into_result()?;
    let mut checks = Vec::new();
    for (i, n) in request.new_devices.iter().enumerate() {
        checks.extend(device_lookup_checks(
            &format!("new_devices[{i}].device"),
            &n.device,
        ));
    }
    check_lookups(api.as_ref(), &connection, checks).await?;
    refuse_linked_site(ports, &connection, &site.site_no).await?;

    let (customer_id, customer) = match request.customer {
        WizardCustomer::Existing(id) => (id, None),
        WizardCustomer::New(fields) => (
            new_id("CUS"),
            Some(with_site_contact_details(*fields, &site)),
        ),
    };
    pull_site(
        Puller {
            ports,
            connection: &connection,
            api: api.as_ref(),
            actor: &caller.user.0,
            source: "wizard",
        },
        &site,
        &taken,
        &request.new_devices,
        customer_id,
        customer,
    )
    .await
}

/// A site already linked on the connection is refused, naming its link.
pub(crate) async fn refuse_linked_site(
    ports: LinkingPorts<'_>,
    connection: &Connection,
    site_no: &SiteNo,
) -> Result<(), OperationError> {
    match linking::link_of_external(
        ports,
        &connection.dealer,
        connection.id,
        LinkKind::Site,
        site_no,
    )
    .await?
    {
        Some(link) => Err(OperationError::Conflict {
            code: "already_linked",
            message: format!(
                "Stages site '{site_no}' is already linked to billing site '{}' (link {})",
                link.billing_id, link.id
            ),
        }),
        None => Ok(()),
    }
}

/// Who pulls, and through what.
pub(crate) struct Puller<'a> {
    pub ports: LinkingPorts<'a>,
    pub connection: &'a Connection,
    pub api: &'a dyn StagesApi,
    /// The audit entries' actor.
    pub actor: &'a str,
    /// The audit entries' action and the events' `source`.
    pub source: &'static str,
}

/// One billing system of a pull: of a device the site has, or of a new one.
struct Planned<'a> {
    device_id: Option<DeviceId>,
    system_id: BillingId,
    fields: SystemFields,
    link_id: LinkId,
    new: Option<&'a NewDevice>,
    /// How the device came to be (`existing`, `created`, `reused`).
    device: &'static str,
}

/// What a pull wrote so far, to take back on a failure.
#[derive(Default)]
struct Written {
    /// Stages records that carry one of this pull's billing ids.
    site_id_written: bool,
    devices: Vec<DeviceId>,
    records: bool,
}

/// The pull on a site that was checked: claims in the link table (of two
/// pulls of one site, one wins and the other leaves before writing
/// anything), billing ids to Stages, billing records, new devices, then the
/// links confirmed. A failure takes back every step before it.
pub(crate) async fn pull_site(
    p: Puller<'_>,
    site: &StagesSite,
    taken: &[StagesDevice],
    new_devices: &[NewDevice],
    customer_id: BillingId,
    customer: Option<CustomerFields>,
) -> Result<WizardOutcome, OperationError> {
    let dealer = &p.connection.dealer;
    let site_no = &site.site_no;
    let site_id = new_id("SITE");
    let site_link = LinkId::new();
    let mut planned: Vec<Planned<'_>> = taken
        .iter()
        .map(|d| Planned {
            device_id: Some(d.device_id.clone()),
            system_id: new_id("SYS"),
            fields: system_of(&site_id, &d.fields),
            link_id: LinkId::new(),
            new: None,
            device: "existing",
        })
        .collect();
    planned.extend(new_devices.iter().map(|n| Planned {
        device_id: None,
        system_id: new_id("SYS"),
        fields: system_of(&site_id, &n.device),
        link_id: LinkId::new(),
        new: Some(n),
        device: "created",
    }));

    // 1. The claims: the unique constraints decide between concurrent pulls.
    let claims = claims_of(p.connection, site_no, &site_id, site_link, &planned);
    let claim_ids: Vec<LinkId> = claims.iter().map(|c| c.id).collect();
    linking::claim_for(p.ports.links, dealer, claims.clone()).await?;

    let site_fields = SiteFields {
        customer_id: Some(customer_id.clone()),
        name: site.name.clone(),
        address1: site.address1.clone(),
        address2: site.address2.clone(),
        city: site.city.clone(),
        state: site.state.clone(),
        zip: site.zip.clone(),
        phone: site.phone.clone(),
        info: site.info.clone(),
    };
    let customer_made = customer.is_some();
    let mut written = Written::default();
    let outcome = pull_claimed(
        &p,
        site,
        &customer_id,
        customer,
        &site_id,
        &site_fields,
        &mut planned,
        &mut written,
    )
    .await;
    let confirmed = match outcome {
        Ok(()) => {
            confirm_pull(
                &p,
                site_no,
                site_link,
                &site_id,
                &site_fields,
                &planned,
                &customer_id,
                customer_made,
            )
            .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = confirmed {
        // Stages first, while the claims keep others away; then the claims,
        // which would keep the billing records from being deleted.
        let site_to_clear = written.site_id_written.then_some(site_no);
        clear_stages_ids(p.api, site_to_clear, &written.devices).await;
        linking::release_claims_for(p.ports.links, dealer, &claim_ids).await;
        if written.records {
            undo_records(
                p.ports,
                p.connection,
                &customer_id,
                customer_made,
                &site_id,
                &planned,
            )
            .await;
        }
        return Err(e);
    }
    Ok(WizardOutcome {
        customer_id: customer_id.to_string(),
        customer_created: customer_made,
        site_id: site_id.to_string(),
        site_no: site_no.to_string(),
        site_link_id: site_link,
        systems: planned
            .into_iter()
            .map(|s| WizardSystem {
                system_id: s.system_id.to_string(),
                device_id: s.device_id.map(String::from).unwrap_or_default(),
                link_id: s.link_id,
                device: s.device,
            })
            .collect(),
    })
}

/// The link claims of a pull: the site by its number, each device the site
/// has by its id, each new device by a placeholder until it exists.
fn claims_of(
    connection: &Connection,
    site_no: &SiteNo,
    site_id: &BillingId,
    site_link: LinkId,
    planned: &[Planned<'_>],
) -> Vec<NewLink> {
    let mut claims = vec![NewLink {
        id: site_link,
        connection_id: connection.id,
        kind: LinkKind::Site,
        billing_id: site_id.clone(),
        external_id: site_no.to_string(),
        parent_id: None,
    }];
    claims.extend(planned.iter().map(|s| {
        NewLink {
            id: s.link_id,
            connection_id: connection.id,
            kind: LinkKind::System,
            billing_id: s.system_id.clone(),
            external_id: s
                .device_id
                .as_ref()
                .map_or_else(|| claim_placeholder(s.link_id), ToString::to_string),
            parent_id: Some(site_link),
        }
    }));
    claims
}

/// Steps 2 to 4 of a pull, each noted in `written` as it lands.
#[allow(clippy::too_many_arguments)]
async fn pull_claimed(
    p: &Puller<'_>,
    site: &StagesSite,
    customer_id: &BillingId,
    customer: Option<CustomerFields>,
    site_id: &BillingId,
    site_fields: &SiteFields,
    planned: &mut [Planned<'_>],
    written: &mut Written,
) -> Result<(), OperationError> {
    let dealer = &p.connection.dealer;
    let up = upstream(p.connection);
    let site_no = &site.site_no;
    // A billing id in Stages that names a billing site is one no link holds
    // (unlinked on purpose): refused. One that names no billing record (left
    // by an earlier failed attempt) does not count.
    if let Some(b) = site.billing_id.as_deref().filter(|b| !b.is_empty()) {
        let found = p
            .ports
            .billing
            .existing_billing_ids(dealer, LinkKind::Site, &[b.to_owned()])
            .await?;
        if !found.is_empty() {
            return Err(OperationError::Conflict {
                code: "already_linked",
                message: format!(
                    "Stages site '{site_no}' carries billing id '{b}' of an existing billing site; unlink or reconcile first"
                ),
            });
        }
    }

    // 2. Billing ids to the site and its devices. Only the claim holder
    // writes (and on a failure clears) them.
    written.site_id_written = true;
    p.api
        .update_site(
            site_no,
            &StagesSitePatch {
                billing_id: Some(site_id.to_string()),
                ..Default::default()
            },
        )
        .await
        .map_err(&up)?;
    for s in planned.iter().filter(|s| s.new.is_none()) {
        let device_id = s.device_id.clone().expect("a device the site has");
        written.devices.push(device_id.clone());
        p.api
            .update_device(
                &device_id,
                &StagesDevicePatch {
                    billing_id: Some(s.system_id.to_string()),
                    ..Default::default()
                },
            )
            .await
            .map_err(&up)?;
    }

    // 3. The billing records, published as they are made.
    written.records = true;
    make_records(p, customer_id, customer, site_id, site_fields, planned).await?;

    // 4. New devices last: Stages cannot delete them. A device an earlier,
    // failed attempt made is found by its transmitter code (with no billing
    // id, or this one) and taken instead of made twice.
    let mut existing: Option<Vec<StagesDevice>> = None;
    for s in planned.iter_mut() {
        let Some(n) = s.new else { continue };
        let code = n.device.transmitter_code.trim().to_owned();
        if existing.is_none() {
            existing = Some(p.api.list_devices(site_no).await.map_err(&up)?);
        }
        let found = existing.iter().flatten().find(|d| {
            d.fields.transmitter_code.trim() == code
                && d.fields
                    .billing_id
                    .as_deref()
                    .is_none_or(|b| b.is_empty() || b == s.system_id.as_str())
        });
        let device_id = match found {
            Some(d) => {
                written.devices.push(d.device_id.clone());
                p.api
                    .update_device(
                        &d.device_id,
                        &StagesDevicePatch {
                            billing_id: Some(s.system_id.to_string()),
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(&up)?;
                s.device = "reused";
                d.device_id.clone()
            }
            None => {
                let mut fields = n.device.clone();
                fields.transmitter_code = code;
                fields.billing_id = Some(s.system_id.to_string());
                let made = p
                    .api
                    .create_device(
                        site_no,
                        &NewStagesDevice {
                            fields,
                            configurations: n.configurations.clone(),
                        },
                    )
                    .await
                    .map_err(&up)?;
                written.devices.push(made.device_id.clone());
                made.device_id
            }
        };
        s.device_id = Some(device_id);
    }
    Ok(())
}

async fn make_records(
    p: &Puller<'_>,
    customer_id: &BillingId,
    customer: Option<CustomerFields>,
    site_id: &BillingId,
    site_fields: &SiteFields,
    planned: &[Planned<'_>],
) -> Result<(), OperationError> {
    let systems: Vec<(&BillingId, &SystemFields)> =
        planned.iter().map(|s| (&s.system_id, &s.fields)).collect();
    write_records(
        p.ports,
        p.connection,
        p.source,
        customer.map(|c| (customer_id, c)),
        (site_id, site_fields),
        &systems,
    )
    .await
}

/// Keeps the base of later syncs (both sides hold the same values now) and
/// confirms the claims, with the links' and the records' audit entries.
#[allow(clippy::too_many_arguments)]
async fn confirm_pull(
    p: &Puller<'_>,
    site_no: &SiteNo,
    site_link: LinkId,
    site_id: &BillingId,
    site_fields: &SiteFields,
    planned: &[Planned<'_>],
    customer_id: &BillingId,
    customer_made: bool,
) -> Result<(), OperationError> {
    let dealer = &p.connection.dealer;
    let none = BTreeMap::new();
    let mut entries = Vec::new();
    let mut snapshots = vec![(
        site_link,
        LinkKind::Site,
        site_id,
        site_no.as_str(),
        sync::billing_site_values(site_fields),
    )];
    for s in planned {
        let device_id = s.device_id.as_deref().unwrap_or_default();
        snapshots.push((
            s.link_id,
            LinkKind::System,
            &s.system_id,
            device_id,
            sync::billing_system_values(&s.fields),
        ));
    }
    if customer_made {
        entries.push(NewAuditEntry {
            actor: p.actor.to_owned(),
            action: format!("{}_to_billing", p.source),
            connection_id: Some(p.connection.id),
            kind: "customer".into(),
            billing_id: Some(customer_id.to_string()),
            external_id: None,
            before: None,
            after: Some(serde_json::json!({"created": true})),
        });
    }
    for (link_id, kind, billing_id, external_id, values) in &snapshots {
        entries.push(NewAuditEntry {
            actor: p.actor.to_owned(),
            action: p.source.to_owned(),
            connection_id: Some(p.connection.id),
            kind: kind.as_str().into(),
            billing_id: Some(billing_id.to_string()),
            external_id: Some((*external_id).to_owned()),
            before: None,
            after: Some(serde_json::json!({"external_id": external_id, "link_id": link_id})),
        });
        let record = ChangedRecord {
            connection_id: p.connection.id,
            kind: kind.as_str(),
            billing_id: billing_id.as_str(),
            external_id,
        };
        entries.extend(audit::data_change(
            p.actor,
            p.source,
            WrittenSide::Billing,
            record,
            &none,
            values,
        ));
        let snapshot = Snapshot::of(sync::fields_for(*kind), values);
        p.ports
            .links
            .set_link_snapshot(
                dealer,
                *link_id,
                serde_json::to_value(snapshot).unwrap_or_default(),
                Vec::new(),
            )
            .await?;
    }
    let confirms = std::iter::once(ConfirmLink {
        link_id: site_link,
        external_id: None,
    })
    .chain(planned.iter().map(|s| ConfirmLink {
        link_id: s.link_id,
        // A new device's claim held a placeholder until now.
        external_id: s.new.and(s.device_id.as_ref().map(ToString::to_string)),
    }))
    .collect();
    p.ports
        .links
        .confirm_links(dealer, confirms, entries)
        .await
        .map_err(linking::claim_lost)?;
    Ok(())
}

/// Clears billing ids a failed pull wrote to Stages (best effort).
async fn clear_stages_ids(api: &dyn StagesApi, site_no: Option<&SiteNo>, devices: &[DeviceId]) {
    if let Some(site_no) = site_no {
        let clear = StagesSitePatch {
            billing_id: Some(String::new()),
            ..Default::default()
        };
        if let Err(e) = api.update_site(site_no, &clear).await {
            tracing::warn!(error = %e, %site_no, "could not clear a billing id after a failed pull");
        }
    }
    for d in devices {
        let clear = StagesDevicePatch {
            billing_id: Some(String::new()),
            ..Default::default()
        };
        if let Err(e) = api.update_device(d, &clear).await {
            tracing::warn!(error = %e, device = %d, "could not clear a billing id after a failed pull");
        }
    }
}

/// Removes the records a failed wizard made (best effort; records never
/// made are no error).
async fn undo_records(
    ports: LinkingPorts<'_>,
    connection: &Connection,
    customer_id: &BillingId,
    customer_made: bool,
    site_id: &BillingId,
    planned: &[Planned<'_>],
) {
    let systems: Vec<&BillingId> = planned.iter().map(|s| &s.system_id).collect();
    delete_records(
        ports,
        connection,
        customer_made.then_some(customer_id),
        site_id,
        &systems,
    )
    .await;
}
