//! A device edited in Stages from the Stages tab (S14): every field checked
//! before any is changed, a new transmitter code through its own call, and,
//! when the device is linked, its mapped fields flow to the billing system
//! and become the link's synced values.

use serde::Serialize;

use crate::billing::BillingWrite;
use crate::connection::{Connection, ConnectionId};
use crate::events::{types, NewEvent};
use crate::link::LinkKind;
use crate::linking::{link_of_external, LinkingPorts};
use crate::operations::{upstream, OperationError};
use crate::stages::{DeviceId, TransmitterCode};
use crate::stages::{LookupList, StagesApi, StagesDevice, StagesDevicePatch};
use crate::sync::{self, Snapshot, Values};
use crate::tenancy::Caller;
use crate::validation::ValidationError;

use super::open;

/// What editing a device did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceEdited {
    pub device: StagesDevice,
    /// The linked billing system's fields that took the new values.
    pub billing_updated: Values,
    pub billing_system_id: Option<String>,
    /// The device's link, when it is linked (as it stands after the edit).
    #[serde(skip)]
    pub link: Option<crate::link::Link>,
}

/// Edits a device in Stages; a new transmitter code goes through its own call.
/// When the device is linked, the mapped fields flow to the billing system
/// (published on the change feed) and become the link's synced values.
pub async fn edit_device(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    device_id: &DeviceId,
    patch: &StagesDevicePatch,
    new_transmitter_code: Option<&str>,
) -> Result<DeviceEdited, OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    let up = upstream(&connection);
    let current = api.get_device(device_id).await.map_err(&up)?;
    let new_code = new_transmitter_code
        .map(str::trim)
        .filter(|c| *c != current.fields.transmitter_code);
    // Every field is checked before any is changed (S14): the code and the
    // other fields go to Stages in two requests, so a field refused after
    // the first would leave the edit half made.
    check_device_edit(api.as_ref(), &connection, patch, new_code).await?;
    let mut device = current.clone();
    let mut made = Vec::new();
    if let Some(code) = new_code {
        device = api
            .change_transmitter_code(device_id, &TransmitterCode::known(code))
            .await
            .map_err(&up)?;
        made.push(format!("transmitter_code changed to '{code}'"));
    }
    // Past the checks Stages may still refuse (or fail): the billing side
    // follows what was made, and the answer says exactly what that is.
    let mut failure = None;
    if *patch != StagesDevicePatch::default() {
        match api.update_device(device_id, patch).await {
            Ok(d) => device = d,
            Err(e) if made.is_empty() => return Err(up(e)),
            Err(e) => failure = Some(up(e)),
        }
    }
    let edited = follow_in_billing(ports, caller, connection_id, device_id, device).await?;
    match failure {
        None => Ok(edited),
        Some(error) => Err(OperationError::PartialEdit {
            made,
            error: Box::new(error),
        }),
    }
}

/// The checks of a device edit that Stages would otherwise make one request
/// at a time: the new code, the periods, the choice-list fields.
async fn check_device_edit(
    api: &dyn StagesApi,
    connection: &Connection,
    patch: &StagesDevicePatch,
    new_code: Option<&str>,
) -> Result<(), OperationError> {
    let mut v = ValidationError::default();
    if let Some(code) = new_code {
        if let Err(why) = TransmitterCode::parse(code) {
            v.push("transmitter_code", why);
        }
    }
    for (field, value) in [
        ("entry_period", &patch.entry_period),
        ("exit_period", &patch.exit_period),
    ] {
        if let Some(value) = value {
            if !value.is_empty() && !crate::linking::is_period(value) {
                v.push(field, "must be mm:ss");
            }
        }
    }
    v.into_result().map_err(OperationError::Invalid)?;
    let checks = [
        ("device_type", LookupList::DeviceTypes, &patch.device_type),
        (
            "oos_category",
            LookupList::OosCategories,
            &patch.oos_category,
        ),
        (
            "timer_test_type",
            LookupList::TimerTestTypes,
            &patch.timer_test_type,
        ),
        ("comm_type", LookupList::CommTypes, &patch.comm_type),
        ("lid_type", LookupList::LidTypes, &patch.lid_type),
    ]
    .into_iter()
    .filter_map(|(f, l, v)| v.clone().map(|v| (f.to_owned(), l, v)))
    .collect();
    crate::linking::check_lookups(api, connection, checks).await
}

/// A linked device's mapped fields flow to its billing system.
async fn follow_in_billing(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    device_id: &DeviceId,
    device: StagesDevice,
) -> Result<DeviceEdited, OperationError> {
    let Some(link) = link_of_external(
        ports,
        &caller.dealer,
        connection_id,
        LinkKind::System,
        device_id,
    )
    .await?
    else {
        return Ok(DeviceEdited {
            device,
            billing_updated: Values::new(),
            billing_system_id: None,
            link: None,
        });
    };
    let system = ports
        .billing
        .system(&caller.dealer, &link.billing_id)
        .await?;
    let external = sync::stages_device_values(&device.fields);
    let billing = sync::billing_system_values(&system.fields);
    let changed: Values = sync::SYSTEM_FIELDS
        .iter()
        .filter_map(|f| {
            let new = external.get(f.name)?;
            let old = billing.get(f.name).map(String::as_str).unwrap_or("");
            (!f.normalizer.equal(old, new)).then(|| (f.name.to_owned(), new.clone()))
        })
        .collect();
    if !changed.is_empty() {
        let fields = sync::apply_to_billing_system(&system.fields, &changed).map_err(|e| {
            OperationError::Conflict {
                code: "unknown_field",
                message: e.to_string(),
            }
        })?;
        let record = serde_json::to_value(&fields).unwrap_or_default();
        ports
            .billing
            .write_billing(
                &caller.dealer,
                BillingWrite::System {
                    id: system.id.clone(),
                    fields,
                },
                vec![NewEvent {
                    event_type: types::BILLING_SYSTEM_UPDATED.into(),
                    subject_kind: "system".into(),
                    subject_id: system.id.to_string(),
                    connection_id: Some(connection_id),
                    data: serde_json::json!({"changed": changed, "record": record, "source": "stages_edit"}),
                }],
                Some(connection_id),
                crate::audit::data_change(
                    &caller.user.0,
                    "stages_edit",
                    crate::audit::WrittenSide::Billing,
                    crate::audit::ChangedRecord {
                        connection_id,
                        kind: LinkKind::System.as_str(),
                        billing_id: system.id.as_str(),
                        external_id: device_id,
                    },
                    &billing,
                    &changed,
                )
                .into_iter()
                .collect(),
            )
            .await?;
    }
    let snapshot = Snapshot::of(sync::SYSTEM_FIELDS, &external);
    ports
        .links
        .set_link_snapshot(
            &caller.dealer,
            link.id,
            serde_json::to_value(snapshot).unwrap_or_default(),
            Vec::new(),
        )
        .await?;
    // The link as it stands now (its synced values just moved).
    let link = ports.links.link(&caller.dealer, link.id).await?;
    Ok(DeviceEdited {
        device,
        billing_updated: changed,
        billing_system_id: Some(system.id.to_string()),
        link: Some(link),
    })
}
