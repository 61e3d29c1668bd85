//! The customer wizard (B12): a billing customer, site and systems made from
//! a Stages site and linked (`pull`: its existing devices, and new ones made
//! in Stages), or made in billing and pushed to Stages as a new site
//! (`push`), all or nothing on both sides. Stages' own `site.send_to_billing`
//! (S16, S17) is a pull of every device of the site.
//!
//! Stages can delete neither a site nor a device; everything else the wizard
//! does can be taken back (link claims, billing ids written to Stages, billing
//! records). So what Stages cannot take back comes last: a new device is made
//! only once everything else stands, and a new site goes in one request with
//! its devices, which Stages stores whole or not at all. The pull's steps
//! are in `pull`.

use std::collections::HashSet;

use serde::Serialize;

use crate::billing::{BillingId, BillingWrite, CustomerFields, SiteFields, SystemFields};
use crate::connection::{Connection, ConnectionId};
use crate::events::{types, NewEvent};
use crate::link::{LinkId, LinkKind};
use crate::linking::{
    self, check_device_fields, check_lookups, device_lookup_checks, site_lookup_checks,
    LinkingPorts, PushRequest, PushSystem, StagesSiteExtras,
};
use crate::operations::OperationError;
use crate::stages::{
    NewStagesConfiguration, NewStagesContact, StagesApi, StagesDeviceFields, StagesError,
    StagesSite, StagesSiteQuery,
};
use crate::store::StoreError;
use crate::tenancy::Caller;
use crate::validation::ValidationError;

mod pull;

pub use pull::pull;
pub(crate) use pull::{pull_site, refuse_linked_site, Puller};

/// The billing customer the records go under.
#[derive(Debug, Clone, PartialEq)]
pub enum WizardCustomer {
    Existing(BillingId),
    /// Made by the wizard; an empty address or phone is taken from the site.
    New(Box<CustomerFields>),
}

/// A device to make in Stages with its zones. Its billing system takes the
/// transmitter code as system number, the device type as panel type, and
/// the location and info, so both sides agree from the start.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDevice {
    pub device: StagesDeviceFields,
    pub configurations: Vec<NewStagesConfiguration>,
}

/// Pull: a Stages site into new billing records.
#[derive(Debug, Clone, PartialEq)]
pub struct WizardPull {
    pub site_no: String,
    pub customer: WizardCustomer,
    /// The site's devices to take; `None` takes all of them.
    pub device_ids: Option<Vec<String>>,
    pub new_devices: Vec<NewDevice>,
}

/// Push: new billing records, sent to Stages as a new site.
#[derive(Debug, Clone, PartialEq)]
pub struct WizardPush {
    pub customer: WizardCustomer,
    /// The billing site; its `customer_id` is the wizard's customer.
    pub site: SiteFields,
    pub extras: StagesSiteExtras,
    pub contacts: Vec<NewStagesContact>,
    pub systems: Vec<NewDevice>,
}

/// One billing system the wizard made, with its device and link.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WizardSystem {
    pub system_id: String,
    pub device_id: String,
    pub link_id: LinkId,
    /// `existing` (a device the site had), `created` (made now), `reused`
    /// (made by an earlier attempt, found by its transmitter code or billing id).
    pub device: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WizardOutcome {
    pub customer_id: String,
    pub customer_created: bool,
    pub site_id: String,
    pub site_no: String,
    pub site_link_id: LinkId,
    pub systems: Vec<WizardSystem>,
}

pub(crate) fn new_id(prefix: &str) -> BillingId {
    BillingId::parse(&format!("{prefix}-{}", uuid::Uuid::now_v7().simple()))
        .expect("a well-formed id")
}

/// The billing system of a device.
pub(crate) fn system_of(site_id: &BillingId, d: &StagesDeviceFields) -> SystemFields {
    SystemFields {
        site_id: site_id.clone(),
        system_number: d.transmitter_code.trim().to_owned(),
        panel_type: d.device_type.clone(),
        location: d.location.clone(),
        info: d.info.clone(),
    }
}

/// A new customer's address and phone, where left empty, are the site's.
pub(crate) fn with_site_contact_details(
    mut c: CustomerFields,
    site: &StagesSite,
) -> CustomerFields {
    if c.address1.is_empty() {
        c.address1 = site.address1.clone();
        c.address2 = site.address2.clone();
        if c.city.is_empty() {
            c.city = site.city.clone();
        }
        if c.state.is_empty() {
            c.state = site.state.clone();
        }
        if c.zip.is_empty() {
            c.zip = site.zip.clone();
        }
    }
    if c.phone.is_empty() {
        c.phone = site.phone.clone();
    }
    c
}

/// Device fields and transmitter codes of new devices: each well formed and
/// none twice (Stages refuses a transmitter code it holds already).
fn check_new_devices(v: &mut ValidationError, field: &str, devices: &[NewDevice]) {
    let mut codes = HashSet::new();
    for (i, n) in devices.iter().enumerate() {
        let prefix = format!("{field}[{i}].device");
        check_device_fields(v, &prefix, &n.device);
        let code = n.device.transmitter_code.trim();
        if !code.is_empty() && !codes.insert(code.to_owned()) {
            v.push(
                format!("{prefix}.transmitter_code"),
                format!("transmitter code '{code}' is listed twice"),
            );
        }
    }
}

/// An existing customer the request names (422 when there is none).
async fn existing_customer(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    id: &BillingId,
) -> Result<(), OperationError> {
    ports
        .billing
        .customer(&caller.dealer, id)
        .await
        .map(drop)
        .map_err(linking::body_reference(
            "customer.customer_id",
            format!("no billing customer '{id}'"),
        ))
}

fn created(
    event_type: &str,
    kind: &str,
    id: &BillingId,
    connection: &Connection,
    source: &str,
    record: serde_json::Value,
) -> NewEvent {
    NewEvent {
        event_type: event_type.into(),
        subject_kind: kind.into(),
        subject_id: id.to_string(),
        connection_id: Some(connection.id),
        data: serde_json::json!({"record": record, "source": source}),
    }
}

/// The customer (when new), site and systems of a pull or a push.
async fn write_records(
    ports: LinkingPorts<'_>,
    connection: &Connection,
    source: &str,
    customer: Option<(&BillingId, CustomerFields)>,
    site: (&BillingId, &SiteFields),
    systems: &[(&BillingId, &SystemFields)],
) -> Result<(), OperationError> {
    let dealer = &connection.dealer;
    let mut writes = Vec::new();
    if let Some((id, fields)) = customer {
        let record = serde_json::to_value(&fields).unwrap_or_default();
        writes.push((
            BillingWrite::Customer {
                id: id.clone(),
                fields,
            },
            created(
                types::BILLING_CUSTOMER_CREATED,
                "customer",
                id,
                connection,
                source,
                record,
            ),
        ));
    }
    let record = serde_json::to_value(site.1).unwrap_or_default();
    writes.push((
        BillingWrite::Site {
            id: site.0.clone(),
            fields: site.1.clone(),
        },
        created(
            types::BILLING_SITE_CREATED,
            "site",
            site.0,
            connection,
            source,
            record,
        ),
    ));
    for (id, fields) in systems {
        let record = serde_json::to_value(fields).unwrap_or_default();
        writes.push((
            BillingWrite::System {
                id: (*id).clone(),
                fields: (*fields).clone(),
            },
            created(
                types::BILLING_SYSTEM_CREATED,
                "system",
                id,
                connection,
                source,
                record,
            ),
        ));
    }
    for (write, event) in writes {
        // The data-change entries go with the links' confirmation, so that
        // records taken back leave none.
        ports
            .billing
            .write_billing(dealer, write, vec![event], Some(connection.id), Vec::new())
            .await?;
    }
    Ok(())
}

async fn delete_records(
    ports: LinkingPorts<'_>,
    connection: &Connection,
    customer: Option<&BillingId>,
    site_id: &BillingId,
    systems: &[&BillingId],
) {
    let dealer = &connection.dealer;
    for id in systems.iter().rev() {
        let _ = ports.billing.delete_system(dealer, id, None).await;
    }
    let _ = ports.billing.delete_site(dealer, site_id, None).await;
    if let Some(id) = customer {
        let _ = ports.billing.delete_customer(dealer, id, None).await;
    }
}

/// The wizard's push: a new billing customer (or an existing one), site and
/// systems, sent to Stages as a new site with its devices, contacts and
/// zones, and linked. Everything is checked before anything is written; a
/// push that fails takes the billing records back.
pub async fn push(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    request: WizardPush,
) -> Result<WizardOutcome, OperationError> {
    let (connection, api) = linking::load_connection(ports, caller, connection_id).await?;
    let mut v = ValidationError::default();
    check_new_devices(&mut v, "systems", &request.systems);
    v.into_result()?;
    if let WizardCustomer::Existing(id) = &request.customer {
        existing_customer(ports, caller, id).await?;
    }
    let mut checks = site_lookup_checks("stages_site", &request.extras);
    for (i, n) in request.systems.iter().enumerate() {
        checks.extend(device_lookup_checks(
            &format!("systems[{i}].device"),
            &n.device,
        ));
    }
    check_lookups(api.as_ref(), &connection, checks).await?;

    let (customer_id, customer) = match request.customer {
        WizardCustomer::Existing(id) => (id, None),
        WizardCustomer::New(fields) => (new_id("CUS"), Some(*fields)),
    };
    let customer_made = customer.is_some();
    let site_id = new_id("SITE");
    let site_fields = SiteFields {
        customer_id: Some(customer_id.clone()),
        ..request.site
    };
    let systems: Vec<(BillingId, SystemFields)> = request
        .systems
        .iter()
        .map(|n| (new_id("SYS"), system_of(&site_id, &n.device)))
        .collect();
    let system_ids: Vec<&BillingId> = systems.iter().map(|(id, _)| id).collect();
    let records: Vec<(&BillingId, &SystemFields)> = systems.iter().map(|(id, f)| (id, f)).collect();
    // The billing records are the user's, as a PUT of each would make them;
    // the links the push confirms carry the audit entries.
    let made = write_records(
        ports,
        &connection,
        "wizard",
        customer.map(|c| (&customer_id, c)),
        (&site_id, &site_fields),
        &records,
    )
    .await;
    if let Err(e) = made {
        delete_records(
            ports,
            &connection,
            customer_made.then_some(&customer_id),
            &site_id,
            &system_ids,
        )
        .await;
        return Err(e);
    }
    let push_request = PushRequest::Site {
        billing_site_id: site_id.clone(),
        extras: request.extras,
        contacts: request.contacts,
        systems: request
            .systems
            .into_iter()
            .zip(&systems)
            .map(|(n, (id, _))| PushSystem {
                billing_system_id: id.clone(),
                device: n.device,
                configurations: n.configurations,
            })
            .collect(),
    };
    let pushed =
        match linking::push(ports, caller, connection_id, push_request.clone(), false).await {
            Err(e) if lost_answer(&e) && made_anyway(api.as_ref(), &site_id).await => {
                // Stages made the site but its answer was lost: the same push
                // finds it by its billing id and links it.
                linking::push(ports, caller, connection_id, push_request, false).await
            }
            other => other,
        };
    match pushed {
        Ok(outcome) => pushed_outcome(customer_id, customer_made, site_id, outcome),
        // Stages kept part of it and it is linked (an answer that did not
        // name every device): what exists stays, as the error says.
        Err(e @ OperationError::PartialPush { .. }) => Err(e),
        Err(e) => {
            delete_records(
                ports,
                &connection,
                customer_made.then_some(&customer_id),
                &site_id,
                &system_ids,
            )
            .await;
            Err(e)
        }
    }
}

/// A failure after which Stages may have done what it was asked.
fn lost_answer(e: &OperationError) -> bool {
    matches!(
        e,
        OperationError::Upstream {
            error: StagesError::Timeout | StagesError::Unreachable(_) | StagesError::BadAnswer(_),
            ..
        }
    )
}

async fn made_anyway(api: &dyn StagesApi, site_id: &BillingId) -> bool {
    api.list_sites(&StagesSiteQuery {
        billing_id: Some(site_id.to_string()),
        ..Default::default()
    })
    .await
    .is_ok_and(|page| !page.items.is_empty())
}

fn pushed_outcome(
    customer_id: BillingId,
    customer_created: bool,
    site_id: BillingId,
    outcome: linking::PushOutcome,
) -> Result<WizardOutcome, OperationError> {
    // A push that answers Ok has confirmed a link for every record.
    let unlinked = || {
        OperationError::Store(StoreError::Failed(
            "a pushed record without its link".into(),
        ))
    };
    let site = outcome
        .records
        .iter()
        .find(|r| r.kind == LinkKind::Site)
        .ok_or_else(unlinked)?;
    let mut systems = Vec::new();
    for r in outcome
        .records
        .iter()
        .filter(|r| r.kind == LinkKind::System)
    {
        systems.push(WizardSystem {
            system_id: r.billing_id.clone(),
            device_id: r.external_id.clone().unwrap_or_default(),
            link_id: r.link_id.ok_or_else(unlinked)?,
            device: if r.action == crate::linking::PushAction::Reused {
                "reused"
            } else {
                "created"
            },
        });
    }
    Ok(WizardOutcome {
        customer_id: customer_id.to_string(),
        customer_created,
        site_no: site.external_id.clone().unwrap_or_default(),
        site_link_id: site.link_id.ok_or_else(unlinked)?,
        site_id: site_id.to_string(),
        systems,
    })
}
