//! What the sync of one link reads and records: the link with its
//! connection, the dealer's credential and the billing record it names, in
//! one consistent read; and the snapshot agreed once it is settled.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::Text;
use domain::audit::NewAuditEntry;
use domain::link::{LinkId, LinkKind};
use domain::link_sync::LinkToSettle;
use domain::store::{StoreError, StoreResult};

use super::LinkRow;
use crate::audit::{insert_audit, uuid_text};
use crate::billing::{linked_of, SiteRow, SystemRow};
use crate::connections::{
    connection_with_credential, ConnectionRow, CredentialRow, MigrationState, DEALER_OWNER,
};
use crate::crypto::Cipher;
use crate::db::{per_backend, DbConnection, Fail};
use crate::gathered::each_failed;
use crate::prepared::kept_sql;
use crate::schema::{billing_sites, billing_systems, connections, credentials, links};

type Settling = (
    LinkRow,
    ConnectionRow,
    Option<String>,
    Option<CredentialRow>,
    Option<SiteRow>,
    Option<SystemRow>,
);

/// Links joined with what settling one needs (its connection, the dealer
/// credential, the billing record it names); the caller picks the link.
macro_rules! settling {
    () => {
        links::table
            .inner_join(
                connections::table.on(connections::id
                    .eq(links::connection_id)
                    .and(connections::dealer.eq(links::dealer))),
            )
            .left_join(
                credentials::table.on(credentials::connection_id
                    .eq(links::connection_id)
                    .and(credentials::dealer.eq(links::dealer))
                    .and(credentials::owner.eq(DEALER_OWNER))),
            )
            .left_join(
                billing_sites::table.on(links::kind
                    .eq(LinkKind::Site.as_str())
                    .and(billing_sites::dealer.eq(links::dealer))
                    .and(billing_sites::id.eq(links::billing_id))),
            )
            .left_join(
                billing_systems::table.on(links::kind
                    .eq(LinkKind::System.as_str())
                    .and(billing_systems::dealer.eq(links::dealer))
                    .and(billing_systems::id.eq(links::billing_id))),
            )
            .select((
                LinkRow::as_select(),
                ConnectionRow::as_select(),
                MigrationState,
                Option::<CredentialRow>::as_select(),
                Option::<SiteRow>::as_select(),
                Option::<SystemRow>::as_select(),
            ))
    };
}

/// Link `id` (not a claim) with what its sync needs.
///
/// One statement, so one consistent read with no transaction around it: an
/// Auto Sync push reads this on every run, and as four reads in a
/// transaction it cost six round trips. Planning the join costs PostgreSQL
/// more than running it, so its plan is kept ([`crate::db::PostgresSetup`]);
/// not on the connections of the index reads, whose plans are made on the
/// first run: made while the tables were small, it walked whole indexes of
/// `links` and `billing_sites`.
pub(super) fn link_to_settle(
    conn: &mut DbConnection,
    cipher: &Cipher,
    dealer: &str,
    id: LinkId,
) -> Result<LinkToSettle, Fail> {
    let row: Option<Settling> = per_backend!(conn, |c| settling!()
        .filter(links::dealer.eq(dealer))
        .filter(links::id.eq(uuid_text(id.0)))
        .first(c)
        .optional())?;
    Ok(settling_of(cipher, row)?.ok_or(StoreError::NotFound)?)
}

/// A push's read of the link it settles, waiting to go with the others in
/// flight (see [`links_to_settle`]).
pub(crate) struct SettleRead {
    pub(super) dealer: String,
    pub(super) id: LinkId,
}

/// [`link_to_settle`] for each read of `batch`, in one statement: on
/// PostgreSQL every Auto Sync push read its link alone, a statement and an
/// implicit commit each, and with many pushes in flight those were most of
/// what a push cost the database. A link read twice in a batch is answered
/// twice; another dealer's link, like none, is `NotFound`.
pub(super) fn links_to_settle(
    conn: &mut DbConnection,
    cipher: &Cipher,
    batch: &[SettleRead],
) -> Vec<StoreResult<LinkToSettle>> {
    let ids: Vec<String> = batch.iter().map(|r| uuid_text(r.id.0)).collect();
    let rows: Result<Vec<Settling>, _> =
        per_backend!(conn, |c| settling!().filter(links::id.eq_any(&ids)).load(c));
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return each_failed(batch.len(), Fail::from(e).into_store_error()),
    };
    let mut found: HashMap<(String, String), StoreResult<Option<LinkToSettle>>> = HashMap::new();
    for row in rows {
        let key = (row.0.dealer.clone(), row.0.id.clone());
        found.insert(
            key,
            settling_of(cipher, Some(row)).map_err(Fail::into_store_error),
        );
    }
    batch
        .iter()
        .zip(ids)
        .map(|(read, id)| match found.get(&(read.dealer.clone(), id)) {
            Some(Ok(Some(link))) => Ok(link.clone()),
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(None)) | None => Err(StoreError::NotFound),
        })
        .collect()
}

/// The link (not a claim) of a Stages record on a connection, with what its
/// sync needs, in the same one statement: a Stages callback reads this on
/// every run. `None` when the record has no link there.
pub(super) fn link_to_settle_of_record(
    conn: &mut DbConnection,
    cipher: &Cipher,
    dealer: &str,
    connection_id: &str,
    kind: LinkKind,
    external_id: &str,
) -> Result<Option<LinkToSettle>, Fail> {
    // (external_id, connection_id, kind) is unique: one row at most.
    let row: Option<Settling> = per_backend!(conn, |c| settling!()
        .filter(links::external_id.eq(external_id))
        .filter(links::connection_id.eq(connection_id))
        .filter(links::kind.eq(kind.as_str()))
        .filter(links::dealer.eq(dealer))
        .first(c)
        .optional())?;
    settling_of(cipher, row)
}

/// What a settling read found, unless it found nothing or only a claim.
fn settling_of(cipher: &Cipher, row: Option<Settling>) -> Result<Option<LinkToSettle>, Fail> {
    let Some((link, connection, migration, credential, site, system)) =
        row.filter(|(link, ..)| link.claim_expires_at.is_none())
    else {
        return Ok(None);
    };
    let link = link.into_domain()?;
    let (connection, dealer_credential) =
        connection_with_credential(cipher, connection, migration, credential)?;
    let billing = linked_of(link.kind, site, system)?;
    Ok(Some(LinkToSettle {
        link,
        connection,
        dealer_credential,
        billing,
    }))
}

/// Records the snapshot of link `id` agreed by a sync, with its audit entries.
pub(super) fn set_link_snapshot(
    conn: &mut DbConnection,
    dealer: &str,
    id: LinkId,
    snapshot: String,
    audit: Vec<NewAuditEntry>,
) -> Result<(), Fail> {
    if write_snapshot(conn, dealer, &uuid_text(id.0), &snapshot)? == 0 {
        return Err(StoreError::NotFound.into());
    }
    insert_audit(conn, dealer, audit)
}

/// Writes `snapshot` as the last synced values of the dealer's link `id`:
/// 1 row, or 0 when the link is gone.
pub(crate) fn write_snapshot(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
    snapshot: &str,
) -> QueryResult<usize> {
    per_backend!(conn, |c| kept_sql(
        "UPDATE links SET last_synced = ? WHERE dealer = ? AND id = ?"
    )
    .bind::<Text, _>(snapshot)
    .bind::<Text, _>(dealer)
    .bind::<Text, _>(id)
    .execute(c))
}
