//! The Stages tab (S14, S15): what a user sees and does in Stages through
//! the caller's connection, one file per use case:
//!
//! - `views`: live views of a site (devices, notes, contacts) and of a
//!   device (configurations), and history newest first with date and test
//!   filters (S14).
//! - `edits`: contacts created, edited and deleted, configurations created,
//!   zones edited (S14).
//! - `device_edit`: a device edited in Stages; a linked device's mapped
//!   fields flow to its billing system (S14).
//! - `on_test`: test mode: a device or every device of a site put on test,
//!   tests listed and ended, every test of a site cleared (S15).
//! - `status`: what Stages says right now about a linked record's devices and
//!   about a billing customer's, on test or in alarm (S15).

use crate::connection::{Connection, ConnectionId};
use crate::linking::LinkingPorts;
use crate::operations::OperationError;
use crate::stages::StagesApi;
use crate::store::StoreError;
use crate::tenancy::Caller;
use crate::upstream::{stages_client, ActingAs};

mod device_edit;
mod edits;
mod on_test;
mod status;
mod views;

pub use device_edit::{edit_device, DeviceEdited};
pub use edits::{
    check_zone_patch, create_configuration, create_contact, delete_contact, find_zone,
    update_contact, update_zone,
};
pub use on_test::{
    clear_site_tests, end_test, list_tests, start_site_tests, start_test, DeviceTestResult,
    DeviceTestsCleared, StartedTest, TestRequest,
};
pub use status::{
    customer_status, live_status, summarise, CustomerStagesState, CustomerStagesStatus, LiveStatus,
};
pub use views::{
    device_configurations, device_history, site_history, site_view, HistoryQuery, SiteView,
    SiteViewItems,
};

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
    let acting = ActingAs::Caller(caller);
    let api = stages_client(ports.connections, ports.stages, acting, &connection).await?;
    Ok((connection, api))
}
