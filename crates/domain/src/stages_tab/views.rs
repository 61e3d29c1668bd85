//! The Stages tab (S14, S15): live views of a site and a device read through
//! the caller's connection, edits made in Stages (a linked device's mapped
//! fields flow to its billing system), and test mode.

use chrono::{NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::billing::{BillingId, BillingWrite};
use crate::connection::{Connection, ConnectionId};
use crate::events::{types, NewEvent};
use crate::link::{LinkFilter, LinkKind};
use crate::linking::{link_of_external, LinkingPorts};
use crate::operations::{stages_as_caller, upstream, OperationError};
use crate::stages::{
    DeviceStatus, LookupList, NewStagesConfiguration, NewStagesContact, NewStagesTest, StagesApi,
    StagesConfiguration, StagesContact, StagesContactPatch, StagesDevice, StagesDevicePatch,
    StagesError, StagesNote, StagesTest, TestType,
};
use crate::store::{PageRequest, StoreError};
use crate::sync::{self, Snapshot, Values};
use crate::tenancy::Caller;
use crate::test_mode::{self, TestEnd, TestWindow, TestWindowError};
use crate::validation::ValidationError;

/// The connection and the caller's Stages API on it.
pub async fn open(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
) -> Result<(Connection, std::sync::Arc<dyn StagesApi>), OperationError> {
    let connection = ports
        .connections
        .connection(&caller.dealer, connection_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => OperationError::NotFound("no such connection".into()),
            other => other.into(),
        })?;
    let api = stages_as_caller(ports.connections, ports.stages, caller, &connection).await?;
    Ok((connection, api))
}

/// A live list read from Stages.
pub enum SiteView {
    Devices,
    Notes,
    Contacts,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SiteViewItems {
    Devices(Vec<StagesDevice>),
    Notes(Vec<StagesNote>),
    Contacts(Vec<StagesContact>),
}

pub async fn site_view(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    site_no: &str,
    view: SiteView,
) -> Result<SiteViewItems, OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    let up = upstream(&connection);
    Ok(match view {
        SiteView::Devices => SiteViewItems::Devices(api.list_devices(site_no).await.map_err(up)?),
        SiteView::Notes => SiteViewItems::Notes(api.list_notes(site_no).await.map_err(up)?),
        SiteView::Contacts => {
            SiteViewItems::Contacts(api.list_contacts(site_no).await.map_err(up)?)
        }
    })
}

pub async fn device_configurations(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    device_id: &str,
) -> Result<Vec<StagesConfiguration>, OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    api.list_configurations(device_id)
        .await
        .map_err(upstream(&connection))
}

pub async fn create_contact(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    site_no: &str,
    contact: &NewStagesContact,
) -> Result<StagesContact, OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    api.create_contact(site_no, contact)
        .await
        .map_err(upstream(&connection))
}

pub async fn update_contact(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    site_no: &str,
    contact_id: &str,
    patch: &StagesContactPatch,
) -> Result<StagesContact, OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    api.update_contact(site_no, contact_id, patch)
        .await
        .map_err(upstream(&connection))
}

pub async fn create_configuration(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    device_id: &str,
    config: &NewStagesConfiguration,
) -> Result<StagesConfiguration, OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    api.create_configuration(device_id, config)
        .await
        .map_err(upstream(&connection))
}

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
    device_id: &str,
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
            .change_transmitter_code(device_id, code)
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
        if code.is_empty() {
            v.push("transmitter_code", "must not be empty");
        } else if code.chars().count() > 32 || code.chars().any(char::is_control) {
            v.push(
                "transmitter_code",
                "must be at most 32 printable characters",
            );
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
    device_id: &str,
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

pub async fn list_tests(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    device_id: &str,
) -> Result<Vec<StagesTest>, OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    api.list_tests(device_id)
        .await
        .map_err(upstream(&connection))
}

/// A test and its window in both clocks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StartedTest {
    pub test: StagesTest,
    pub window: TestWindow,
}

fn window_error(e: TestWindowError, end: &TestEnd) -> OperationError {
    let field = match (&e, end) {
        (TestWindowError::UnknownZone(_), _) => "time_zone",
        (_, TestEnd::After { .. }) => "hours",
        (
            TestWindowError::EndNotAfterStart { .. }
            | TestWindowError::TooLong { .. }
            | TestWindowError::EndInPast,
            TestEnd::At(_),
        ) => "end",
    };
    OperationError::Invalid(ValidationError::field(field, e.to_string()))
}

/// The window of a test on a device of `site_no`, read in the site's zone.
async fn window_for(
    api: &dyn StagesApi,
    connection: &Connection,
    site_no: &str,
    request: &TestRequest,
) -> Result<TestWindow, OperationError> {
    let site = api.get_site(site_no).await.map_err(upstream(connection))?;
    test_mode::test_window(
        &site.time_zone,
        request.start,
        request.end,
        request.max_hours,
        Utc::now(),
    )
    .map_err(|e| window_error(e, &request.end))
}

async fn start_on(
    api: &dyn StagesApi,
    connection: &Connection,
    device: &StagesDevice,
    window: &TestWindow,
    reason: &str,
) -> Result<StagesTest, OperationError> {
    if let Some(why) = test_mode::refuse_test(device.status) {
        return Err(OperationError::Conflict {
            code: "device_state",
            message: format!("device '{}': {why}", device.device_id),
        });
    }
    api.start_test(
        &device.device_id,
        &NewStagesTest {
            test_type: TestType::AllPoints,
            effective: window.start.utc,
            expire: window.end.utc,
            reason: reason.to_owned(),
        },
    )
    .await
    .map_err(|e| match e {
        StagesError::Rejected { code, message } if code == "device_state" => {
            OperationError::Conflict {
                code: "device_state",
                message: format!("device '{}': {message}", device.device_id),
            }
        }
        other => upstream(connection)(other),
    })
}

/// A test window as entered: a local start in the site's zone and an end
/// (a local time, or a duration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRequest {
    pub start: NaiveDateTime,
    pub end: TestEnd,
    pub reason: String,
    /// The longest test allowed (configuration).
    pub max_hours: u32,
}

/// Puts a device on test, all points, from `start` to `end` in its site's time zone.
pub async fn start_test(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    device_id: &str,
    request: &TestRequest,
) -> Result<StartedTest, OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    let device = api
        .get_device(device_id)
        .await
        .map_err(upstream(&connection))?;
    let window = window_for(api.as_ref(), &connection, &device.site_no, request).await?;
    let test = start_on(api.as_ref(), &connection, &device, &window, &request.reason).await?;
    Ok(StartedTest { test, window })
}

pub async fn end_test(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    device_id: &str,
    test_id: &str,
) -> Result<(), OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    api.end_test(device_id, test_id)
        .await
        .map_err(upstream(&connection))
}

/// The outcome for one device of a site-wide test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceTestResult {
    pub device_id: String,
    pub test: Option<StagesTest>,
    /// Why this device is not on test.
    pub error: Option<String>,
}

/// Puts every device of a site on test; each device answers for itself.
pub async fn start_site_tests(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    site_no: &str,
    request: &TestRequest,
) -> Result<(TestWindow, Vec<DeviceTestResult>), OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    let window = window_for(api.as_ref(), &connection, site_no, request).await?;
    let devices = api
        .list_devices(site_no)
        .await
        .map_err(upstream(&connection))?;
    let mut results = Vec::new();
    for device in devices {
        let result = start_on(api.as_ref(), &connection, &device, &window, &request.reason).await;
        results.push(match result {
            Ok(test) => DeviceTestResult {
                device_id: device.device_id,
                test: Some(test),
                error: None,
            },
            Err(e) => DeviceTestResult {
                device_id: device.device_id,
                test: None,
                error: Some(e.to_string()),
            },
        });
    }
    Ok((window, results))
}

/// What Stages says right now about a linked record's device(s).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveStatus {
    pub connection_id: ConnectionId,
    pub device_id: String,
    pub status: Option<DeviceStatus>,
    pub on_test: bool,
    pub in_alarm: bool,
    /// Why the status could not be read (the record itself still answers).
    pub error: Option<String>,
}

/// The live state of the devices behind a billing system or site, per link.
/// Read failures are reported per device, never as a failure of the read.
pub async fn live_status(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    kind: LinkKind,
    billing_id: &BillingId,
) -> Result<Vec<LiveStatus>, OperationError> {
    let links = ports
        .links
        .links_of_billing(&caller.dealer, kind, billing_id)
        .await?;
    let mut out = Vec::new();
    for link in links {
        let device_links = match kind {
            LinkKind::System => vec![link.clone()],
            LinkKind::Site => {
                ports
                    .links
                    .list_links(
                        &caller.dealer,
                        &LinkFilter {
                            parent_id: Some(link.id),
                            ..Default::default()
                        },
                        PageRequest {
                            after: None,
                            limit: 500,
                        },
                    )
                    .await?
                    .items
            }
        };
        let api = match open(ports, caller, link.connection_id).await {
            Ok((_, api)) => Some(api),
            Err(e) => {
                for d in &device_links {
                    out.push(LiveStatus {
                        connection_id: link.connection_id,
                        device_id: d.external_id.clone(),
                        status: None,
                        on_test: false,
                        in_alarm: false,
                        error: Some(e.to_string()),
                    });
                }
                None
            }
        };
        let Some(api) = api else { continue };
        for d in device_links {
            out.push(match api.get_device(&d.external_id).await {
                Ok(device) => LiveStatus {
                    connection_id: link.connection_id,
                    device_id: d.external_id,
                    status: Some(device.status),
                    on_test: device.status == DeviceStatus::OnTest,
                    in_alarm: device.status == DeviceStatus::Alarm,
                    error: None,
                },
                Err(e) => LiveStatus {
                    connection_id: link.connection_id,
                    device_id: d.external_id,
                    status: None,
                    on_test: false,
                    in_alarm: false,
                    error: Some(e.to_string()),
                },
            });
        }
    }
    Ok(out)
}
