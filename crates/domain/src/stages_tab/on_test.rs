//! Test mode from the Stages tab (S15): a device, or every device of a site,
//! put on test (all points) from a start to an end given in the site's time
//! zone, only when the device's status allows; tests listed and ended; every
//! test of a site cleared. The window rules are `crate::test_mode`'s.

use chrono::{NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::connection::{Connection, ConnectionId};
use crate::linking::LinkingPorts;
use crate::operations::{upstream, OperationError};
use crate::stages::{DeviceId, SiteNo};
use crate::stages::{NewStagesTest, StagesApi, StagesDevice, StagesError, StagesTest, TestType};
use crate::tenancy::Caller;
use crate::test_mode::{self, TestEnd, TestWindow, TestWindowError};
use crate::validation::ValidationError;

use super::open;

pub async fn list_tests(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    device_id: &DeviceId,
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
    site_no: &SiteNo,
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
    device_id: &DeviceId,
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
    device_id: &DeviceId,
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
    pub device_id: DeviceId,
    pub test: Option<StagesTest>,
    /// Why this device is not on test.
    pub error: Option<String>,
}

/// Puts every device of a site on test; each device answers for itself.
pub async fn start_site_tests(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    site_no: &SiteNo,
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

/// What clearing the tests of a site did on one device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceTestsCleared {
    pub device_id: DeviceId,
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
    site_no: &SiteNo,
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
