//! What Stages says right now (S15): the live state of the devices behind a
//! linked billing site or system (on test, in alarm), and summed up for a
//! billing customer. Reading it never fails the record's own read: what
//! cannot be read is reported with the state.

use serde::Serialize;

use crate::billing::BillingId;
use crate::connection::ConnectionId;
use crate::link::{LinkFilter, LinkKind};
use crate::linking::LinkingPorts;
use crate::operations::OperationError;
use crate::stages::DeviceStatus;
use crate::store::PageRequest;
use crate::tenancy::Caller;

use super::open;

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
            out.push(match api.get_device(&d.device_id()).await {
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
