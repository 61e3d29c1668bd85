//! More of the Stages tab (S14, S15): deleting contacts, editing zones,
//! history newest first with date and test filters, clearing every test of a
//! site, and what Stages says about a billing customer's devices.

pub mod views;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::billing::BillingId;
use crate::connection::ConnectionId;
use crate::link::LinkKind;
use crate::linking::LinkingPorts;
use crate::operations::{upstream, OperationError};
use crate::stages::{StagesConfiguration, StagesConfigurationPatch, StagesHistoryEntry};
use crate::stages_views::{live_status, open, LiveStatus};
use crate::tenancy::Caller;
use crate::validation::ValidationError;

pub async fn delete_contact(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    site_no: &str,
    contact_id: &str,
) -> Result<(), OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    api.delete_contact(site_no, contact_id)
        .await
        .map_err(upstream(&connection))
}

/// The zone that `key` names among a device's zones: its configuration id,
/// or else its point number when exactly one zone has that point.
pub fn find_zone<'a>(
    zones: &'a [StagesConfiguration],
    key: &str,
) -> Result<&'a StagesConfiguration, OperationError> {
    if let Some(z) = zones.iter().find(|z| z.config_id == key) {
        return Ok(z);
    }
    let not_found = || OperationError::NotFound(format!("the device has no zone '{key}'"));
    let point: u32 = key.parse().map_err(|_| not_found())?;
    let mut with_point = zones.iter().filter(|z| z.fields.point == point);
    match (with_point.next(), with_point.next()) {
        (None, _) => Err(not_found()),
        (Some(z), None) => Ok(z),
        (Some(_), Some(_)) => Err(OperationError::Conflict {
            code: "ambiguous_zone",
            message: format!(
                "more than one zone has point {point}; name the zone by its config_id"
            ),
        }),
    }
}

/// The checks of a zone edit: a point is 1 or more; an edit changes something.
pub fn check_zone_patch(patch: &StagesConfigurationPatch) -> Result<(), ValidationError> {
    if *patch == StagesConfigurationPatch::default() {
        return Err(ValidationError::field(
            "point",
            "give at least one of point, area, event_code, description",
        ));
    }
    if patch.point == Some(0) {
        return Err(ValidationError::field("point", "must be 1 or more"));
    }
    Ok(())
}

/// Edits a zone (configuration) of a device in Stages, named by its
/// configuration id or its point.
pub async fn update_zone(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    device_id: &str,
    zone: &str,
    patch: &StagesConfigurationPatch,
) -> Result<StagesConfiguration, OperationError> {
    check_zone_patch(patch)?;
    let (connection, api) = open(ports, caller, connection_id).await?;
    let up = upstream(&connection);
    let zones = api.list_configurations(device_id).await.map_err(&up)?;
    let config_id = find_zone(&zones, zone)?.config_id.clone();
    api.update_configuration(device_id, &config_id, patch)
        .await
        .map_err(up)
}

/// Which history entries to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistoryQuery {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Only what was received while the device was on test.
    pub tests_only: bool,
}

impl HistoryQuery {
    pub fn new(
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        tests_only: bool,
    ) -> Result<Self, ValidationError> {
        if let (Some(from), Some(to)) = (from, to) {
            if to < from {
                return Err(ValidationError::field("to", "must not be before from"));
            }
        }
        Ok(Self {
            from,
            to,
            tests_only,
        })
    }

    /// The entries that pass, newest first (ties by id, newest first), so the
    /// first page of a busy device holds its latest events.
    pub fn apply(&self, mut entries: Vec<StagesHistoryEntry>) -> Vec<StagesHistoryEntry> {
        entries.retain(|h| {
            self.from.is_none_or(|f| h.occurred_at >= f)
                && self.to.is_none_or(|t| h.occurred_at <= t)
                && (!self.tests_only || h.on_test)
        });
        entries.sort_by(|a, b| {
            b.occurred_at
                .cmp(&a.occurred_at)
                .then_with(|| id_number(&b.history_id).cmp(&id_number(&a.history_id)))
                .then_with(|| b.history_id.cmp(&a.history_id))
        });
        entries
    }
}

/// The number in an id like `H-12`, so `H-10` sorts after `H-9`.
fn id_number(id: &str) -> Option<u64> {
    let digits: String = id.chars().filter(char::is_ascii_digit).collect();
    digits.parse().ok()
}

pub async fn site_history(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    site_no: &str,
    query: &HistoryQuery,
) -> Result<Vec<StagesHistoryEntry>, OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    let history = api
        .site_history(site_no, query.from, query.to)
        .await
        .map_err(upstream(&connection))?;
    Ok(query.apply(history))
}

pub async fn device_history(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    device_id: &str,
    query: &HistoryQuery,
) -> Result<Vec<StagesHistoryEntry>, OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    let mut history = api
        .device_history(device_id, query.from, query.to)
        .await
        .map_err(upstream(&connection))?;
    // Only this device's entries, whatever Stages sends along.
    history.retain(|h| h.device_id == device_id);
    Ok(query.apply(history))
}

/// What clearing the tests of a site did on one device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceTestsCleared {
    pub device_id: String,
    /// The tests ended (current and scheduled).
    pub ended: Vec<String>,
    /// Why a test of this device (or the device's list) could not be ended.
    pub error: Option<String>,
}

/// Ends every current and scheduled test of every device of a site; each
/// device answers for itself, and one failure does not stop the others.
pub async fn clear_site_tests(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    site_no: &str,
) -> Result<Vec<DeviceTestsCleared>, OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    let up = upstream(&connection);
    let devices = api.list_devices(site_no).await.map_err(&up)?;
    let mut out = Vec::with_capacity(devices.len());
    for device in devices {
        let mut result = DeviceTestsCleared {
            device_id: device.device_id.clone(),
            ended: Vec::new(),
            error: None,
        };
        match api.list_tests(&device.device_id).await {
            Err(e) => result.error = Some(up(e).to_string()),
            Ok(tests) => {
                for test in tests {
                    match api.end_test(&device.device_id, &test.test_id).await {
                        Ok(()) => result.ended.push(test.test_id),
                        Err(e) => {
                            result.error = Some(format!("test '{}': {}", test.test_id, up(e)));
                        }
                    }
                }
            }
        }
        out.push(result);
    }
    Ok(out)
}

/// The state of a billing customer's devices in Stages, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerStagesState {
    /// A device of one of its systems is on test.
    OnTest,
    /// A device is in alarm (and none on test).
    InAlarm,
    /// Every linked device reads normal (or out of service).
    Normal,
    /// Some device could not be read, and none read on test or in alarm.
    Unknown,
    /// No site of the customer is linked to Stages.
    NotLinked,
}

/// What Stages says about the devices behind a billing customer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerStagesStatus {
    pub state: CustomerStagesState,
    /// Why the state is `unknown` (the first failure).
    pub reason: Option<String>,
    /// Each linked device, with the billing site it is under.
    pub devices: Vec<(BillingId, LiveStatus)>,
}

/// Sums up device states: on test wins, then alarm, then an unreadable
/// device (unknown), then normal; no devices at all is "not linked".
pub fn summarise(devices: Vec<(BillingId, LiveStatus)>) -> CustomerStagesStatus {
    let reason = devices.iter().find_map(|(_, d)| d.error.clone());
    let state = if devices.iter().any(|(_, d)| d.on_test) {
        CustomerStagesState::OnTest
    } else if devices.iter().any(|(_, d)| d.in_alarm) {
        CustomerStagesState::InAlarm
    } else if reason.is_some() {
        CustomerStagesState::Unknown
    } else if devices.is_empty() {
        CustomerStagesState::NotLinked
    } else {
        CustomerStagesState::Normal
    };
    CustomerStagesStatus {
        state,
        reason: reason.filter(|_| state == CustomerStagesState::Unknown),
        devices,
    }
}

/// The live state of every linked device under a customer's sites. Never an
/// error: whatever cannot be read makes the state `unknown` with a reason,
/// so the customer read itself always answers.
pub async fn customer_status(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    customer_id: &BillingId,
) -> CustomerStagesStatus {
    let unknown = |why: String| CustomerStagesStatus {
        state: CustomerStagesState::Unknown,
        reason: Some(why),
        devices: Vec::new(),
    };
    let sites = match ports
        .billing
        .sites_of_customer(&caller.dealer, customer_id)
        .await
    {
        Ok(sites) => sites,
        Err(e) => return unknown(format!("the customer's sites could not be read: {e}")),
    };
    let mut devices = Vec::new();
    for site in sites {
        match live_status(ports, caller, LinkKind::Site, &site.id).await {
            Ok(found) => devices.extend(found.into_iter().map(|d| (site.id.clone(), d))),
            Err(e) => {
                let mut status = summarise(devices);
                if !matches!(
                    status.state,
                    CustomerStagesState::OnTest | CustomerStagesState::InAlarm
                ) {
                    status.state = CustomerStagesState::Unknown;
                }
                status.reason = Some(format!("site '{}': {e}", site.id));
                return status;
            }
        }
    }
    summarise(devices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::{HistoryKind, NewStagesConfiguration};

    fn entry(id: &str, at: &str, on_test: bool) -> StagesHistoryEntry {
        StagesHistoryEntry {
            history_id: id.into(),
            device_id: "D-1".into(),
            site_no: "10001".into(),
            occurred_at: at.parse().unwrap(),
            kind: HistoryKind::Signal,
            event_code: "E130".into(),
            description: String::new(),
            point: None,
            on_test,
        }
    }

    #[test]
    fn history_is_newest_first_and_filtered() {
        let entries = vec![
            entry("H-9", "2025-01-01T10:00:00Z", false),
            entry("H-10", "2025-01-01T10:00:00Z", true),
            entry("H-11", "2025-01-03T10:00:00Z", true),
            entry("H-2", "2025-01-02T10:00:00Z", false),
        ];
        let ids = |v: Vec<StagesHistoryEntry>| -> Vec<String> {
            v.into_iter().map(|h| h.history_id).collect()
        };
        let all = HistoryQuery::default().apply(entries.clone());
        assert_eq!(ids(all), ["H-11", "H-2", "H-10", "H-9"]);
        let tests = HistoryQuery::new(None, None, true)
            .unwrap()
            .apply(entries.clone());
        assert_eq!(ids(tests), ["H-11", "H-10"]);
        let window = HistoryQuery::new(
            Some("2025-01-01T12:00:00Z".parse().unwrap()),
            Some("2025-01-02T10:00:00Z".parse().unwrap()),
            false,
        )
        .unwrap()
        .apply(entries);
        assert_eq!(ids(window), ["H-2"]);
        let backwards = HistoryQuery::new(
            Some("2025-01-02T00:00:00Z".parse().unwrap()),
            Some("2025-01-01T00:00:00Z".parse().unwrap()),
            false,
        );
        assert_eq!(backwards.unwrap_err().errors[0].field, "to");
    }

    fn zone(id: &str, point: u32) -> StagesConfiguration {
        StagesConfiguration {
            config_id: id.into(),
            device_id: "D-1".into(),
            fields: NewStagesConfiguration {
                point,
                ..Default::default()
            },
        }
    }

    #[test]
    fn a_zone_is_named_by_its_id_or_its_point() {
        let zones = [zone("Z-1", 1), zone("Z-2", 2), zone("Z-3", 2)];
        assert_eq!(find_zone(&zones, "Z-3").unwrap().config_id, "Z-3");
        assert_eq!(find_zone(&zones, "1").unwrap().config_id, "Z-1");
        assert!(matches!(
            find_zone(&zones, "2"),
            Err(OperationError::Conflict {
                code: "ambiguous_zone",
                ..
            })
        ));
        assert!(matches!(
            find_zone(&zones, "9"),
            Err(OperationError::NotFound(_))
        ));
        assert!(matches!(
            find_zone(&zones, "Z-9"),
            Err(OperationError::NotFound(_))
        ));
        assert!(check_zone_patch(&StagesConfigurationPatch::default()).is_err());
        let zero = StagesConfigurationPatch {
            point: Some(0),
            ..Default::default()
        };
        assert_eq!(
            check_zone_patch(&zero).unwrap_err().errors[0].field,
            "point"
        );
    }

    fn live(on_test: bool, in_alarm: bool, error: Option<&str>) -> (BillingId, LiveStatus) {
        (
            BillingId::parse("S1").unwrap(),
            LiveStatus {
                connection_id: ConnectionId(uuid::Uuid::nil()),
                device_id: "D-1".into(),
                status: None,
                on_test,
                in_alarm,
                error: error.map(str::to_owned),
            },
        )
    }

    #[test]
    fn a_customer_is_on_test_when_any_device_is() {
        use CustomerStagesState::*;
        assert_eq!(summarise(vec![]).state, NotLinked);
        assert_eq!(summarise(vec![live(false, false, None)]).state, Normal);
        let s = summarise(vec![
            live(false, false, None),
            live(false, false, Some("Stages could not be reached")),
        ]);
        assert_eq!(s.state, Unknown);
        assert_eq!(s.reason.as_deref(), Some("Stages could not be reached"));
        let s = summarise(vec![
            live(false, false, Some("timeout")),
            live(true, false, None),
            live(false, true, None),
        ]);
        assert_eq!(s.state, OnTest);
        assert_eq!(s.reason, None);
        assert_eq!(
            summarise(vec![live(false, true, None), live(false, false, None)]).state,
            InAlarm
        );
    }
}
