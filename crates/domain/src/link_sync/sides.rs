//! The two records of a link, read for a sync: the billing record from the
//! store and the Stages record from Stages, each with its values by field
//! name, and the link's base (its last synced values). Sync on request reads
//! Stages as the caller; the automatic syncs (Auto Sync, callbacks) have no
//! user to act as and read it with the connection's dealer credential
//! (`ActingAs::Dealer`).

use std::sync::Arc;

use crate::billing::{BillingSite, BillingSystem};
use crate::connection::{Connection, Credential};
use crate::link::{Link, LinkId, LinkKind};
use crate::linking::LinkingPorts;
use crate::operations::{upstream, OperationError};
use crate::stages::StagesApi;
use crate::store::StoreError;
use crate::sync::{self, Snapshot, Values};
use crate::tenancy::{Caller, DealerId};
use crate::upstream::{stages_client, ActingAs};

/// The records of one link, both sides, as they are now.
pub(super) struct Sides {
    pub(super) link: Link,
    pub(super) connection: Connection,
    pub(super) api: Arc<dyn StagesApi>,
    pub(super) billing: LinkedRecord,
    pub(super) billing_values: Values,
    pub(super) external_values: Values,
}

/// The billing record of a link.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkedRecord {
    Site(BillingSite),
    System(BillingSystem),
}

/// What settling a link reads from the store, in one read (see
/// [`crate::store::LinkStore::link_to_settle`]).
#[derive(Debug, Clone)]
pub struct LinkToSettle {
    pub link: Link,
    pub connection: Connection,
    /// The connection's dealer credential: background work acts with it.
    pub dealer_credential: Option<Credential>,
    /// `None` when the billing record is gone.
    pub billing: Option<LinkedRecord>,
}

pub(super) fn snapshot_of(link: &Link) -> Option<Snapshot> {
    link.last_synced
        .as_ref()
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

pub(super) async fn link_and_connection(
    ports: LinkingPorts<'_>,
    dealer: &DealerId,
    link_id: LinkId,
) -> Result<(Link, Connection), OperationError> {
    let link = ports
        .links
        .link(dealer, link_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => OperationError::NotFound("no such link".into()),
            other => other.into(),
        })?;
    let connection = ports
        .connections
        .connection(dealer, link.connection_id)
        .await?;
    Ok((link, connection))
}

pub(super) async fn load_sides(
    ports: LinkingPorts<'_>,
    dealer: &DealerId,
    link: Link,
    connection: Connection,
    api: Arc<dyn StagesApi>,
) -> Result<Sides, OperationError> {
    let billing = match link.kind {
        LinkKind::Site => LinkedRecord::Site(ports.billing.site(dealer, &link.billing_id).await?),
        LinkKind::System => {
            LinkedRecord::System(ports.billing.system(dealer, &link.billing_id).await?)
        }
    };
    sides_with(link, connection, api, billing).await
}

/// The two sides of a link whose billing record is read: Stages' is read now.
pub(super) async fn sides_with(
    link: Link,
    connection: Connection,
    api: Arc<dyn StagesApi>,
    billing: LinkedRecord,
) -> Result<Sides, OperationError> {
    let (billing, billing_values, external_values) = match billing {
        LinkedRecord::Site(site) => {
            let external = api
                .get_site(&link.site_no())
                .await
                .map_err(upstream(&connection))?;
            let values = sync::billing_site_values(&site.fields);
            (
                LinkedRecord::Site(site),
                values,
                sync::stages_site_values(&external),
            )
        }
        LinkedRecord::System(system) => {
            let external = api
                .get_device(&link.device_id())
                .await
                .map_err(upstream(&connection))?;
            let values = sync::billing_system_values(&system.fields);
            (
                LinkedRecord::System(system),
                values,
                sync::stages_device_values(&external.fields),
            )
        }
    };
    Ok(Sides {
        link,
        connection,
        api,
        billing,
        billing_values,
        external_values,
    })
}

pub(super) async fn sides_as_caller(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    link_id: LinkId,
) -> Result<Sides, OperationError> {
    let (link, connection) = link_and_connection(ports, &caller.dealer, link_id).await?;
    let acting = ActingAs::Caller(caller);
    let api = stages_client(ports.connections, ports.stages, acting, &connection).await?;
    load_sides(ports, &caller.dealer, link, connection, api).await
}

/// Pushes want the link's snapshot to start equal to what was sent.
pub fn pushed_snapshot(kind: LinkKind, billing_values: &Values) -> serde_json::Value {
    serde_json::to_value(Snapshot::of(sync::fields_for(kind), billing_values)).unwrap_or_default()
}
