//! What the sync of one link reads and records: the link with its
//! connection, the dealer's credential and the billing record it names, in
//! one consistent read; and the snapshot agreed once it is settled.

use diesel::prelude::*;
use domain::audit::NewAuditEntry;
use domain::connection::CredentialOwner;
use domain::link::LinkId;
use domain::link_sync::LinkToSettle;
use domain::store::StoreError;

use super::find_link;
use crate::audit::{insert_audit, uuid_text};
use crate::billing::find_linked;
use crate::connections::{find_connection, read_credential};
use crate::crypto::Cipher;
use crate::db::{DbConnection, Fail};
use crate::schema::links;

/// Link `id` (not a claim) with what its sync needs.
pub(super) fn link_to_settle(
    conn: &mut DbConnection,
    cipher: &Cipher,
    dealer: &str,
    id: LinkId,
) -> Result<LinkToSettle, Fail> {
    // One transaction: a consistent read, one commit.
    conn.transaction(|conn| {
        let link = find_link(conn, dealer, &uuid_text(id.0))?
            .filter(|row| row.claim_expires_at.is_none())
            .ok_or(StoreError::NotFound)?
            .into_domain()?;
        let connection = find_connection(conn, dealer, link.connection_id)?;
        let dealer_credential = read_credential(
            conn,
            cipher,
            dealer,
            link.connection_id,
            &CredentialOwner::Dealer,
        )?;
        let billing = find_linked(conn, dealer, link.kind, link.billing_id.as_str())?;
        Ok(LinkToSettle {
            link,
            connection,
            dealer_credential,
            billing,
        })
    })
}

/// Records the snapshot of link `id` agreed by a sync, with its audit entries.
pub(super) fn set_link_snapshot(
    conn: &mut DbConnection,
    dealer: &str,
    id: LinkId,
    snapshot: String,
    audit: Vec<NewAuditEntry>,
) -> Result<(), Fail> {
    let updated = diesel::update(
        links::table
            .filter(links::dealer.eq(dealer))
            .filter(links::id.eq(uuid_text(id.0))),
    )
    .set(links::last_synced.eq(snapshot))
    .execute(conn)?;
    if updated == 0 {
        return Err(StoreError::NotFound.into());
    }
    insert_audit(conn, dealer, audit)
}
