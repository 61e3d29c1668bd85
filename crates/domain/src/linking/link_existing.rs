//! Link (S7): an existing billing site to an existing Stages site with at
//! least one system-to-device pair, each device a child of that site;
//! claimed in the link table first, then the billing ids go to Stages.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::audit::NewAuditEntry;
use crate::billing::{BillingId, BillingSite};
use crate::connection::{Connection, ConnectionId};
use crate::link::{ConfirmLink, Link, LinkId, LinkKind, NewLink};
use crate::operations::{upstream, OperationError};
use crate::stages::{
    StagesApi, StagesDevice, StagesDevicePatch, StagesError, StagesSite, StagesSitePatch,
};
use crate::store::StoreError;
use crate::tenancy::Caller;
use crate::validation::ValidationError;

use super::claims::{
    claim, claim_lost, claimed_elsewhere, release_claims, restore_device_billing_id,
    restore_site_billing_id,
};
use super::{
    audit, body_reference, link_on, load_connection, named_device, named_site, LinkingPorts,
};

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

/// Link (S7): an existing billing site to an existing Stages site with at
/// least one system-to-device pair, each device a child of that site. The
/// links are claimed in the database first (so of many concurrent requests
/// exactly one wins), then the billing ids are written to Stages.
pub async fn link(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    request: LinkRequest,
) -> Result<Vec<Link>, OperationError> {
    check_pairs(&request)?;
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
    check_billing_systems(ports, caller, &site, &request).await?;
    let stages_site = named_site(
        api.as_ref(),
        &connection,
        "stages_site_no",
        &request.stages_site_no,
    )
    .await?;
    let devices = named_devices(api.as_ref(), &connection, &stages_site, &request).await?;
    let existing_site_link = check_free(
        ports,
        caller,
        &connection,
        &site,
        &stages_site,
        &request,
        &devices,
    )
    .await?;

    let new_links = new_links(
        &connection,
        &site,
        &stages_site,
        existing_site_link.as_ref(),
        &request,
    );
    let entries: Vec<NewAuditEntry> = new_links
        .iter()
        .map(|l| audit(caller, "link", l, None))
        .collect();
    let claim_ids: Vec<LinkId> = new_links.iter().map(|l| l.id).collect();
    claim(ports.links, caller, new_links).await?;

    // Write the billing ids to Stages under the claim; on a failure put back
    // what this request changed (no one else may write these records while
    // it holds them) and release the claim.
    let written = write_billing_ids(api.as_ref(), &site, &stages_site, &request, &devices).await;
    if let Err(error) = written {
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

/// The request alone: at least one pair, no system and no device twice.
fn check_pairs(request: &LinkRequest) -> Result<(), OperationError> {
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
    v.into_result().map_err(OperationError::Invalid)
}

/// Every billing system of the request exists and belongs to the billing site.
async fn check_billing_systems(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    site: &BillingSite,
    request: &LinkRequest,
) -> Result<(), OperationError> {
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
    v.into_result().map_err(OperationError::Invalid)
}

/// Reads the Stages devices of the request, in its order: each must exist
/// and be a child of the chosen Stages site.
async fn named_devices(
    api: &dyn StagesApi,
    connection: &Connection,
    stages_site: &StagesSite,
    request: &LinkRequest,
) -> Result<Vec<StagesDevice>, OperationError> {
    let mut devices = Vec::new();
    let mut v = ValidationError::default();
    for (i, pair) in request.systems.iter().enumerate() {
        let field = format!("systems[{i}].stages_device_id");
        let device = named_device(api, connection, &field, &pair.stages_device_id).await?;
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
    Ok(devices)
}

/// No one else holds the records: the billing site is linked to no other
/// Stages site here, and no Stages record carries another record's billing
/// id. Returns the billing site's link, when it is linked to this very site.
async fn check_free(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection: &Connection,
    site: &BillingSite,
    stages_site: &StagesSite,
    request: &LinkRequest,
    devices: &[StagesDevice],
) -> Result<Option<Link>, OperationError> {
    // A site already linked to this very Stages site may gain more systems.
    let existing_site_link =
        link_on(ports.links, caller, connection.id, LinkKind::Site, &site.id).await?;
    if let Some(l) = &existing_site_link {
        if stages_site.site_no != l.external_id {
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
    for (pair, device) in request.systems.iter().zip(devices) {
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
    Ok(existing_site_link)
}

/// The links to create: the site's unless it is linked already, and one per
/// pair under it.
fn new_links(
    connection: &Connection,
    site: &BillingSite,
    stages_site: &StagesSite,
    existing_site_link: Option<&Link>,
    request: &LinkRequest,
) -> Vec<NewLink> {
    let site_link_id = existing_site_link.map_or_else(LinkId::new, |l| l.id);
    let mut new_links = Vec::new();
    if existing_site_link.is_none() {
        new_links.push(NewLink {
            id: site_link_id,
            connection_id: connection.id,
            kind: LinkKind::Site,
            billing_id: site.id.clone(),
            external_id: stages_site.site_no.to_string(),
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
    new_links
}

/// Writes the billing ids to the Stages site and devices that do not carry
/// them yet; on a failure puts back what it changed.
async fn write_billing_ids(
    api: &dyn StagesApi,
    site: &BillingSite,
    stages_site: &StagesSite,
    request: &LinkRequest,
    devices: &[StagesDevice],
) -> Result<(), StagesError> {
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
        for (pair, device) in request.systems.iter().zip(devices) {
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
    if written.is_err() {
        if changed_site {
            restore_site_billing_id(api, stages_site).await;
        }
        for device in changed_devices {
            restore_device_billing_id(api, device).await;
        }
    }
    written
}
