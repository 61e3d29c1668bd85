//! Getting records into and out of the link table (S4, S5, S6, S7, S8, S9,
//! S12, S13): push a billing site or system to Stages (with a dry run, B6),
//! link existing records, point a link elsewhere, unlink. Every rule of the
//! External tab is enforced here, one use case a file:
//!
//! - `push` (S5, S9, B6) and `push_send`, its Stages half;
//! - `link_existing` (S7): link records that exist on both sides;
//! - `edit` (S12): point a link elsewhere;
//! - `unlink` (S8, S13);
//! - `browse` (S4): Stages records to pick from, with their links;
//! - `claims` (S6): who holds a record, in the link table and in Stages;
//! - `field_checks`: the Stages fields a push or a wizard sends.
//!
//! This file holds the ports and the steps the use cases share.

mod browse;
mod claims;
mod edit;
mod field_checks;
mod link_existing;
mod push;
mod push_send;
mod unlink;

use std::sync::Arc;

use crate::audit::NewAuditEntry;
use crate::billing::BillingId;
use crate::connection::{Connection, ConnectionId};
use crate::link::{Link, LinkKind, NewLink};
use crate::operations::{upstream, OperationError};
use crate::stages::{DeviceId, SiteNo, StagesApi, StagesDevice, StagesError, StagesSite};
use crate::store::{BillingStore, ConnectionStore, LinkStore, StoreError};
use crate::tenancy::Caller;
use crate::upstream::{stages_client, ActingAs};
use crate::validation::ValidationError;

pub(crate) use browse::link_of_external;
pub use browse::{browse_sites, lookup, stages_device, stages_site, Browsed};
pub(crate) use claims::{claim_for, claim_lost, put_back, release_claims_for, set_billing_id};
pub use edit::{edit_link, EditLink};
pub(crate) use field_checks::{
    check_device_fields, check_lookups, device_lookup_checks, is_period, site_lookup_checks,
};
pub use link_existing::{link, LinkRequest, SystemPair};
pub use push::{
    push, push_targets, PushAction, PushOutcome, PushRequest, PushSystem, PushedRecord,
    StagesSiteExtras,
};
pub use unlink::unlink;

/// The ports the linking operations use.
#[derive(Clone, Copy)]
pub struct LinkingPorts<'a> {
    pub connections: &'a dyn ConnectionStore,
    pub billing: &'a dyn BillingStore,
    pub links: &'a dyn LinkStore,
    pub stages: &'a dyn crate::stages::StagesConnector,
    /// Fields of links that did not sync (conflicts held, refusals).
    pub issues: &'a dyn crate::field_issues::FieldIssueStore,
    /// Changes made to Stages outside a link change (a reconcile's repairs).
    pub audit: &'a dyn crate::store::AuditStore,
}

fn store_not_found(what: impl Into<String>) -> impl FnOnce(StoreError) -> OperationError {
    let what = what.into();
    move |e| match e {
        StoreError::NotFound => OperationError::NotFound(what),
        other => other.into(),
    }
}

/// An id a request body gives that names nothing: a 422 on that field,
/// whatever the route (an id in the path that names nothing is a 404).
pub(crate) fn body_reference(
    field: impl Into<String>,
    what: impl Into<String>,
) -> impl FnOnce(StoreError) -> OperationError {
    let (field, what) = (field.into(), what.into());
    move |e| match e {
        StoreError::NotFound => OperationError::Invalid(ValidationError::field(field, what)),
        other => other.into(),
    }
}

pub(crate) async fn load_connection(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    id: ConnectionId,
) -> Result<(Connection, Arc<dyn StagesApi>), OperationError> {
    let connection = ports
        .connections
        .connection(&caller.dealer, id)
        .await
        .map_err(store_not_found("no such connection"))?;
    let acting = ActingAs::Caller(caller);
    let api = stages_client(ports.connections, ports.stages, acting, &connection).await?;
    Ok((connection, api))
}

/// The link of a billing record on one connection, if any.
pub async fn link_on(
    links: &dyn LinkStore,
    caller: &Caller,
    connection_id: ConnectionId,
    kind: LinkKind,
    billing_id: &BillingId,
) -> Result<Option<Link>, OperationError> {
    Ok(links
        .links_of_billing(&caller.dealer, kind, billing_id)
        .await?
        .into_iter()
        .find(|l| l.connection_id == connection_id))
}

/// Reads a Stages site a request names; a missing one is the caller's mistake (422).
pub(crate) async fn named_site(
    api: &dyn StagesApi,
    connection: &Connection,
    field: &str,
    site_no: &str,
) -> Result<StagesSite, OperationError> {
    let site_no = SiteNo::parse(site_no).map_err(|why| ValidationError::field(field, why))?;
    match api.get_site(&site_no).await {
        Ok(s) => Ok(s),
        Err(StagesError::NotFound(_)) => Err(OperationError::Invalid(ValidationError::field(
            field,
            format!("Stages site '{site_no}' does not exist"),
        ))),
        Err(e) => Err(upstream(connection)(e)),
    }
}

async fn named_device(
    api: &dyn StagesApi,
    connection: &Connection,
    field: &str,
    device_id: &str,
) -> Result<StagesDevice, OperationError> {
    let device_id = DeviceId::parse(device_id).map_err(|why| ValidationError::field(field, why))?;
    match api.get_device(&device_id).await {
        Ok(d) => Ok(d),
        Err(StagesError::NotFound(_)) => Err(OperationError::Invalid(ValidationError::field(
            field,
            format!("Stages device '{device_id}' does not exist"),
        ))),
        Err(e) => Err(upstream(connection)(e)),
    }
}

/// The audit entry of a link a push or a link creates.
fn audit(
    caller: &Caller,
    action: &str,
    link: &NewLink,
    before: Option<serde_json::Value>,
) -> NewAuditEntry {
    NewAuditEntry {
        actor: caller.user.0.clone(),
        action: action.to_owned(),
        connection_id: Some(link.connection_id),
        kind: link.kind.as_str().to_owned(),
        billing_id: Some(link.billing_id.as_str().to_owned()),
        external_id: Some(link.external_id.clone()),
        before,
        after: Some(serde_json::json!({"external_id": link.external_id, "link_id": link.id})),
    }
}
