//! What a billing change brings along in its own transaction (outbox): the
//! Auto Sync pushes of the record's links (S19), and for a change the service
//! makes itself (`write_billing`) its audit entries and events.

use chrono::Utc;
use domain::audit::NewAuditEntry;
use domain::billing::{BillingWrite, BillingWritten};
use domain::connection::{ConnectionId, ConnectionStatus};
use domain::events::NewEvent;
use domain::link::LinkKind;
use domain::link_sync::jobs::{AutoSyncPush, StagesRecord};
use domain::tenancy::DealerId;

use super::customers::save_customer;
use super::sites::save_site;
use super::systems::save_system;
use super::users::save_user;
use crate::audit::insert_audit;
use crate::connections::corrupt;
use crate::db::{DbConnection, Fail};
use crate::events::insert_events;
use crate::jobs::enqueue_within;
use crate::links::{record_links, RecordLink};

/// The Auto Sync outbox (S19): an [`AutoSyncPush`] for each of the record's
/// `links` (read by [`record_links`]) on a connection where Auto Sync is on
/// (the rule is the domain's), but `origin` (the connection a change came
/// from does not get it back). The push's definition builds the job: it
/// coalesces quick edits and takes turns with the callbacks of its Stages
/// record.
pub(super) fn enqueue_auto_sync(
    conn: &mut DbConnection,
    dealer: &str,
    links: &[RecordLink],
    origin: Option<ConnectionId>,
) -> Result<(), Fail> {
    let now = Utc::now();
    let dealer_id = DealerId(dealer.to_owned());
    for l in links
        .iter()
        .filter(|l| Some(l.link.connection_id) != origin)
    {
        let status = ConnectionStatus::parse(&l.status)
            .ok_or_else(|| corrupt(format!("connection status '{}'", l.status)))?;
        let record = StagesRecord {
            connection_id: l.link.connection_id,
            kind: l.link.kind,
            external_id: l.link.external_id.clone(),
        };
        if let Some(push) = AutoSyncPush::for_link(l.link.id, record, status, l.auto_sync) {
            enqueue_within(conn, push.new_job(&dealer_id, now))?;
        }
    }
    Ok(())
}

pub(super) fn write_billing_blocking(
    conn: &mut DbConnection,
    dealer: &str,
    write: BillingWrite,
    expected_version: Option<i64>,
    events: Vec<NewEvent>,
    origin: Option<ConnectionId>,
    audit: Vec<NewAuditEntry>,
) -> Result<BillingWritten, Fail> {
    let (written, changed, linked) = match &write {
        BillingWrite::Customer { id, fields } => {
            let saved = save_customer(conn, dealer, id.as_str(), fields, expected_version)?;
            (
                BillingWritten::Customer(saved.upserted),
                saved.changed,
                None,
            )
        }
        BillingWrite::Site { id, fields } => {
            let saved = save_site(conn, dealer, id.as_str(), fields, expected_version)?;
            let linked = Some((LinkKind::Site, id));
            (BillingWritten::Site(saved.upserted), saved.changed, linked)
        }
        BillingWrite::System { id, fields } => {
            let saved = save_system(conn, dealer, id.as_str(), fields, expected_version)?;
            let linked = Some((LinkKind::System, id));
            (
                BillingWritten::System(saved.upserted),
                saved.changed,
                linked,
            )
        }
        BillingWrite::User { id, fields } => {
            let saved = save_user(conn, dealer, id.as_str(), fields, expected_version)?;
            (BillingWritten::User(saved.upserted), saved.changed, None)
        }
    };
    if changed {
        if let Some((kind, id)) = linked {
            let links = record_links(conn, dealer, kind, id.as_str())?;
            enqueue_auto_sync(conn, dealer, &links, origin)?;
        }
        insert_audit(conn, dealer, audit)?;
        // Last: the feed's lock (PostgreSQL) is held for the shortest time.
        insert_events(conn, dealer, events)?;
    }
    Ok(written)
}
