//! Inserting links, at once or as claims an operation holds while it acts on
//! Stages, confirmed (or released) when it is done. The unique constraints
//! decide races; only when they refuse a link is the link in the way looked
//! up, to take it over (an expired claim) or to name it in the refusal.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use domain::audit::NewAuditEntry;
use domain::link::{ConfirmLink, Link, LinkId, LinkKind, NewLink};
use domain::store::StoreError;

use super::{
    already_linked, billing_side, external_side, find_link, link_write, LinkRow, LOOKUP_CHUNK,
};
use crate::audit::{insert_audit, uuid_text};
use crate::connections::{require_connection, to_db_time};
use crate::db::{per_backend, DbConnection, Fail};
use crate::schema::{deliberate_unlinks, links};

/// One side of a link.
#[derive(Debug, Clone, Copy)]
enum Side {
    Billing,
    External,
}

/// Another link on `row`'s connection and kind that holds `row`'s record of
/// `side`: one lookup on that side's unique constraint.
fn holder(conn: &mut DbConnection, row: &LinkRow, side: Side) -> QueryResult<Option<LinkRow>> {
    let query = links::table
        .filter(links::connection_id.eq(&row.connection_id))
        .filter(links::kind.eq(&row.kind))
        .filter(links::id.ne(&row.id))
        .select(LinkRow::as_select())
        .into_boxed();
    let query = match side {
        Side::Billing => query.filter(links::billing_id.eq(&row.billing_id)),
        Side::External => query.filter(links::external_id.eq(&row.external_id)),
    };
    query.first(conn).optional()
}

/// The billing id of a claim an edit holds on the external record it moves
/// link `id` to: the link keeps its own billing id (and its record) until the
/// edit is confirmed, so the claim stands apart on the billing side. A control
/// character never occurs in a real billing id.
pub(super) fn edit_claim_billing_id(id: &str) -> String {
    format!("\u{1}edit {id}")
}

/// The link an edit claim is for.
fn edit_claim_of(row: &LinkRow) -> Option<&str> {
    row.billing_id.strip_prefix("\u{1}edit ")
}

/// How a holder is named: its link id (an edit's claim: the link being
/// edited), and whether it is still a claim (an operation acting on Stages
/// right now) or a link.
fn holder_text(taken: &LinkRow, other_side: String) -> String {
    match taken.claim_expires_at {
        Some(_) => match edit_claim_of(taken) {
            Some(edited) => format!(
                "is being linked on this connection by another request (an edit of link {edited})"
            ),
            None => format!(
                "is being linked on this connection by another request (link {})",
                taken.id
            ),
        },
        None => format!(
            "is already linked on this connection (to {other_side}, link {})",
            taken.id
        ),
    }
}

/// Refuses a link whose billing or external record is linked already on its
/// connection, naming both sides: the billing side is looked up first, then the
/// external one, each on its own unique constraint (a single query asking for
/// either record would read every link of the connection on PostgreSQL).
pub(super) fn refuse_taken(conn: &mut DbConnection, row: &LinkRow) -> Result<(), Fail> {
    let kind = row.kind()?;
    let message = if let Some(taken) = holder(conn, row, Side::Billing)? {
        // Two edits of one link claim with the same stand-in billing id.
        let subject = match edit_claim_of(row) {
            Some(edited) => format!("link {edited}"),
            None => billing_side(kind, &row.billing_id),
        };
        format!(
            "{subject} {}",
            holder_text(&taken, external_side(kind, &taken.external_id))
        )
    } else if let Some(taken) = holder(conn, row, Side::External)? {
        format!(
            "{} {}",
            external_side(kind, &row.external_id),
            holder_text(&taken, billing_side(kind, &taken.billing_id))
        )
    } else {
        return Ok(());
    };
    Err(StoreError::Conflict(message).into())
}

/// Removes claims past their lease that hold `row`'s records (their request
/// died or outlived its lease; see `domain::link::CLAIM_LEASE_SECS`), with
/// their children. True when one was removed.
fn take_over_expired(conn: &mut DbConnection, row: &LinkRow) -> Result<bool, Fail> {
    let now = to_db_time(Utc::now());
    let mut expired = Vec::new();
    for side in [Side::Billing, Side::External] {
        if let Some(taken) = holder(conn, row, side)? {
            if taken.claim_expires_at.is_some_and(|until| until < now) {
                expired.push(taken.id);
            }
        }
    }
    if expired.is_empty() {
        return Ok(false);
    }
    diesel::delete(links::table.filter(links::parent_id.eq_any(&expired))).execute(conn)?;
    diesel::delete(links::table.filter(links::id.eq_any(&expired))).execute(conn)?;
    Ok(true)
}

/// How often an insert that found its records taken, and then no link holding
/// them, is tried again.
const INSERT_ATTEMPTS: usize = 3;

/// Inserts `rows` (in order: parents first) with one statement per chunk;
/// the rows a chunk could not insert (a record linked already, an expired
/// claim in the way) go through [`insert_link`] one by one, which takes
/// over or refuses each as it should.
fn insert_many(conn: &mut DbConnection, rows: &[&LinkRow]) -> Result<(), Fail> {
    // 12 columns a row: well under SQLite's bind limit.
    const CHUNK: usize = 500;
    for chunk in rows.chunks(CHUNK) {
        let values: Vec<LinkRow> = chunk.iter().map(|r| (*r).clone()).collect();
        let inserted = match &mut *conn {
            DbConnection::Postgresql(pg) => diesel::insert_into(links::table)
                .values(&values[..])
                .on_conflict_do_nothing()
                .execute(pg)?,
            // Rows it ignores are looked at one by one below.
            DbConnection::Sqlite(sqlite) => diesel::insert_or_ignore_into(links::table)
                .values(&values[..])
                .execute(sqlite)?,
        };
        if inserted == chunk.len() {
            continue;
        }
        // The rows stored as this chunk wrote them (an older link with the
        // same id is not one of them).
        let ids: Vec<&str> = chunk.iter().map(|r| r.id.as_str()).collect();
        let stored: BTreeSet<(String, String, String, NaiveDateTime)> = links::table
            .filter(links::id.eq_any(&ids))
            .select((
                links::id,
                links::billing_id,
                links::external_id,
                links::created_at,
            ))
            .load(conn)?
            .into_iter()
            .collect();
        let written = |r: &LinkRow| {
            stored.contains(&(
                r.id.clone(),
                r.billing_id.clone(),
                r.external_id.clone(),
                r.created_at,
            ))
        };
        for row in chunk.iter().filter(|r| !written(r)) {
            insert_link(conn, row)?;
        }
    }
    Ok(())
}

/// Inserts a link, relying on the unique constraints: only when they refuse it
/// is the link in the way looked up, to name it, so a batch of free records
/// looks nothing up. The constraints also decide races (PostgreSQL waits for
/// the other writer, then answers here with the link it committed).
pub(super) fn insert_link(conn: &mut DbConnection, row: &LinkRow) -> Result<(), Fail> {
    for _ in 0..INSERT_ATTEMPTS {
        let inserted = per_backend!(&mut *conn, |c| diesel::insert_into(links::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(c));
        if link_write(inserted, row)? == 1 {
            return Ok(());
        }
        if take_over_expired(conn, row)? {
            continue;
        }
        refuse_taken(conn, row)?;
        let same_id: Option<String> = links::table
            .filter(links::id.eq(&row.id))
            .select(links::id)
            .first(conn)
            .optional()?;
        if same_id.is_some() {
            return Err(StoreError::Conflict(format!("link {} already exists", row.id)).into());
        }
        // The link in the way was removed meanwhile: try again.
    }
    Err(StoreError::Conflict(format!(
        "{} kept changing while it was linked; try again",
        billing_side(row.kind()?, &row.billing_id)
    ))
    .into())
}

/// The site links of the dealer among `ids`, each with its connection. The
/// query names the ids alone, so it can only go to the primary key; the rest is
/// checked here (PostgreSQL without statistics would rather read all of the
/// dealer's links than look up a few hundred ids).
fn site_links(
    conn: &mut DbConnection,
    dealer: &str,
    ids: &BTreeSet<&str>,
) -> QueryResult<HashMap<String, String>> {
    let ids: Vec<&str> = ids.iter().copied().collect();
    let mut sites = HashMap::new();
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let found: Vec<(String, String, String, String)> = links::table
            .filter(links::id.eq_any(chunk))
            .select((links::id, links::dealer, links::kind, links::connection_id))
            .load(conn)?;
        sites.extend(
            found
                .into_iter()
                .filter(|(_, d, kind, _)| d == dealer && kind == LinkKind::Site.as_str())
                .map(|(id, _, _, connection)| (id, connection)),
        );
    }
    Ok(sites)
}

/// New links of records forget that they were deliberately unlinked: per
/// connection and kind, one delete per side for a slice of records, each on
/// that side's index.
pub(super) fn forget_unlinks(conn: &mut DbConnection, rows: &[&LinkRow]) -> Result<(), Fail> {
    type Records<'a> = (BTreeSet<&'a str>, BTreeSet<&'a str>);
    let mut groups: BTreeMap<(&str, &str), Records> = BTreeMap::new();
    for row in rows {
        let (billing, external) = groups
            .entry((row.connection_id.as_str(), row.kind.as_str()))
            .or_default();
        billing.insert(row.billing_id.as_str());
        external.insert(row.external_id.as_str());
    }
    for ((connection, kind), (billing, external)) in groups {
        let billing: Vec<&str> = billing.into_iter().collect();
        for chunk in billing.chunks(LOOKUP_CHUNK) {
            diesel::delete(
                deliberate_unlinks::table
                    .filter(deliberate_unlinks::connection_id.eq(connection))
                    .filter(deliberate_unlinks::kind.eq(kind))
                    .filter(deliberate_unlinks::billing_id.eq_any(chunk)),
            )
            .execute(conn)?;
        }
        let external: Vec<&str> = external.into_iter().collect();
        for chunk in external.chunks(LOOKUP_CHUNK) {
            diesel::delete(
                deliberate_unlinks::table
                    .filter(deliberate_unlinks::connection_id.eq(connection))
                    .filter(deliberate_unlinks::kind.eq(kind))
                    .filter(deliberate_unlinks::external_id.eq_any(chunk)),
            )
            .execute(conn)?;
        }
    }
    Ok(())
}

/// Inserts links, or with `claim_until` claims (no audit, no forgotten
/// unlinks yet: both come with the confirmation).
pub(super) fn insert_links_blocking(
    conn: &mut DbConnection,
    dealer: &str,
    links: &[NewLink],
    audit: Vec<NewAuditEntry>,
    claim_until: Option<NaiveDateTime>,
) -> Result<Vec<Link>, Fail> {
    let now = to_db_time(Utc::now());
    let rows: Vec<LinkRow> = links
        .iter()
        .map(|l| LinkRow {
            claim_expires_at: claim_until,
            ..LinkRow::new(dealer, l, now)
        })
        .collect();
    let connections: BTreeSet<&str> = rows.iter().map(|r| r.connection_id.as_str()).collect();
    for connection in connections {
        require_connection(conn, dealer, connection)?;
    }
    // The parents named, looked up at once: site links already there, and
    // (below) those of this batch as they are inserted.
    let parents: BTreeSet<&str> = rows.iter().filter_map(|r| r.parent_id.as_deref()).collect();
    let mut sites = site_links(conn, dealer, &parents)?;
    // Parents before children, so a site and its systems can be linked at once.
    let mut order: Vec<&LinkRow> = rows.iter().collect();
    order.sort_by_key(|r| r.parent_id.is_some());
    for row in &order {
        if let Some(parent) = &row.parent_id {
            if sites.get(parent) != Some(&row.connection_id) {
                return Err(StoreError::Conflict(format!(
                    "the parent site link '{parent}' does not exist on this connection"
                ))
                .into());
            }
        }
        if row.kind == LinkKind::Site.as_str() {
            sites.insert(row.id.clone(), row.connection_id.clone());
        }
    }
    insert_many(conn, &order)?;
    if claim_until.is_none() {
        forget_unlinks(conn, &order)?;
        insert_audit(conn, dealer, audit)?;
    }
    rows.into_iter().map(LinkRow::into_domain).collect()
}

pub(super) fn confirm_blocking(
    conn: &mut DbConnection,
    dealer: &str,
    confirms: &[ConfirmLink],
    audit: Vec<NewAuditEntry>,
) -> Result<Vec<Link>, Fail> {
    let now = to_db_time(Utc::now());
    let mut rows = Vec::new();
    for confirm in confirms {
        let id = uuid_text(confirm.link_id.0);
        let mut row = match find_link(conn, dealer, &id)? {
            Some(row) if row.claim_expires_at.is_some() => row,
            _ => {
                return Err(StoreError::Conflict(format!(
                    "the claim of link {id} was taken over after its lease ran out; try again"
                ))
                .into())
            }
        };
        if let Some(external) = &confirm.external_id {
            row.external_id = external.clone();
        }
        row.claim_expires_at = None;
        row.updated_at = now;
        let updated = diesel::update(links::table.filter(links::id.eq(&id)))
            .set((
                links::external_id.eq(&row.external_id),
                links::claim_expires_at.eq(None::<NaiveDateTime>),
                links::updated_at.eq(now),
            ))
            .execute(conn);
        if link_write(updated, &row).is_err() {
            refuse_taken(conn, &row)?;
            return Err(already_linked(external_side(row.kind()?, &row.external_id)));
        }
        rows.push(row);
    }
    let refs: Vec<&LinkRow> = rows.iter().collect();
    forget_unlinks(conn, &refs)?;
    insert_audit(conn, dealer, audit)?;
    rows.into_iter().map(LinkRow::into_domain).collect()
}

pub(super) fn release_blocking(
    conn: &mut DbConnection,
    dealer: &str,
    ids: &[LinkId],
) -> Result<(), Fail> {
    let ids: Vec<String> = ids.iter().map(|id| uuid_text(id.0)).collect();
    let claims = links::table
        .filter(links::dealer.eq(dealer))
        .filter(links::claim_expires_at.is_not_null());
    // Children first: SQLite may run without foreign key cascades.
    diesel::delete(claims.filter(links::parent_id.eq_any(&ids))).execute(conn)?;
    diesel::delete(claims.filter(links::id.eq_any(&ids))).execute(conn)?;
    Ok(())
}
