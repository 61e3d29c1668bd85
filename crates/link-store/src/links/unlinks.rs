//! Unlinking: a deliberate unlink (remembered per record, so a sync does
//! not link the records again, and audited) and a discard (the undo of links
//! an operation made before it failed), each with the links' descendants;
//! and the list of deliberate unlinks of a connection.

use std::collections::HashSet;

use chrono::Utc;
use diesel::prelude::*;
use domain::audit::NewAuditEntry;
use domain::link::{DeliberateUnlink, Link, LinkId};
use domain::store::StoreError;

use super::{find_link, LinkRow, UnlinkRow};
use crate::audit::{insert_audit, uuid_text};
use crate::connections::{require_connection, to_db_time};
use crate::db::{per_backend, DbConnection, Fail, IN_CHUNK};
use crate::schema::{deliberate_unlinks, links};

/// The dealer's links of `ids` and all their descendants, parents first. A
/// missing id is `NotFound` unless `missing_ok`.
fn with_descendants(
    conn: &mut DbConnection,
    dealer: &str,
    ids: &[LinkId],
    missing_ok: bool,
) -> Result<Vec<Link>, Fail> {
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    for id in ids {
        let id = uuid_text(id.0);
        if seen.insert(id.clone()) {
            match find_link(conn, dealer, &id)? {
                Some(row) => found.push(row),
                None if missing_ok => {}
                None => return Err(StoreError::NotFound.into()),
            }
        }
    }
    // The cascade would remove the children silently: find them first, so each
    // is accounted for like the links asked for.
    let mut frontier: Vec<String> = found.iter().map(|r| r.id.clone()).collect();
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for chunk in frontier.chunks(IN_CHUNK) {
            let children: Vec<LinkRow> = links::table
                .filter(links::dealer.eq(dealer))
                .filter(links::parent_id.eq_any(chunk))
                .select(LinkRow::as_select())
                .order(links::id.asc())
                .load(conn)?;
            for child in children {
                if seen.insert(child.id.clone()) {
                    next.push(child.id.clone());
                    found.push(child);
                }
            }
        }
        frontier = next;
    }
    found.into_iter().map(LinkRow::into_domain).collect()
}

/// Deletes `removed`, system links before site links, so each delete counts
/// its own row and none goes by cascade (links are two levels deep: a site
/// and its systems). Unless `missing_ok`, a link gone meanwhile (another
/// unlink on PostgreSQL, which locks rows only as it writes) fails the whole
/// change as `NotFound`.
fn delete_links(
    conn: &mut DbConnection,
    dealer: &str,
    removed: &[Link],
    missing_ok: bool,
) -> Result<(), Fail> {
    let children = removed.iter().filter(|l| l.parent_id.is_some());
    let parents = removed.iter().filter(|l| l.parent_id.is_none());
    for link in children.chain(parents) {
        let deleted = diesel::delete(
            links::table
                .filter(links::dealer.eq(dealer))
                .filter(links::id.eq(uuid_text(link.id.0))),
        )
        .execute(conn)?;
        if deleted == 0 && !missing_ok {
            return Err(StoreError::NotFound.into());
        }
    }
    Ok(())
}

/// The audit entry of a link removed by `action`, for links the caller's
/// entries do not cover.
fn removal_entry(link: &Link, actor: &str, action: &str) -> NewAuditEntry {
    NewAuditEntry {
        actor: actor.to_owned(),
        action: action.to_owned(),
        connection_id: Some(link.connection_id),
        kind: link.kind.as_str().to_owned(),
        billing_id: Some(link.billing_id.as_str().to_owned()),
        external_id: Some(link.external_id.clone()),
        before: serde_json::to_value(link).ok(),
        after: None,
    }
}

pub(super) fn unlink_blocking(
    conn: &mut DbConnection,
    dealer: &str,
    ids: &[LinkId],
    actor: &str,
    mut audit: Vec<NewAuditEntry>,
) -> Result<Vec<Link>, Fail> {
    let now = to_db_time(Utc::now());
    let removed = with_descendants(conn, dealer, ids, false)?;

    for link in &removed {
        let row = UnlinkRow {
            connection_id: uuid_text(link.connection_id.0),
            kind: link.kind.as_str().to_owned(),
            billing_id: link.billing_id.as_str().to_owned(),
            external_id: link.external_id.clone(),
            dealer: dealer.to_owned(),
            unlinked_at: now,
            actor: actor.to_owned(),
        };
        per_backend!(&mut *conn, |c| diesel::insert_into(
            deliberate_unlinks::table
        )
        .values(&row)
        .on_conflict((
            deliberate_unlinks::connection_id,
            deliberate_unlinks::kind,
            deliberate_unlinks::billing_id,
            deliberate_unlinks::external_id,
        ))
        .do_update()
        .set((
            deliberate_unlinks::unlinked_at.eq(now),
            deliberate_unlinks::actor.eq(actor),
        ))
        .execute(c))?;
    }

    // Every removed link is audited: the caller's entries, and one made here for
    // each link they do not cover (the children, as a rule).
    let uncovered: Vec<NewAuditEntry> = removed
        .iter()
        .filter(|link| {
            !audit.iter().any(|e| {
                e.connection_id == Some(link.connection_id)
                    && e.kind == link.kind.as_str()
                    && e.billing_id.as_deref() == Some(link.billing_id.as_str())
            })
        })
        .map(|link| removal_entry(link, actor, "unlink"))
        .collect();
    audit.extend(uncovered);
    insert_audit(conn, dealer, audit)?;
    delete_links(conn, dealer, &removed, false)?;
    Ok(removed)
}

/// The actor of the audit entries of discarded links: the port names none.
const DISCARD_ACTOR: &str = "system:discard";

pub(super) fn discard_blocking(
    conn: &mut DbConnection,
    dealer: &str,
    ids: &[LinkId],
) -> Result<(), Fail> {
    // An undo after a failure: links already gone are no error.
    let removed = with_descendants(conn, dealer, ids, true)?;
    // No deliberate unlink is remembered, but the trail that recorded the
    // links also records that they were taken back.
    let entries = removed
        .iter()
        .map(|link| removal_entry(link, DISCARD_ACTOR, "discard_link"))
        .collect();
    insert_audit(conn, dealer, entries)?;
    delete_links(conn, dealer, &removed, true)
}

/// The connection's deliberate unlinks, oldest first.
pub(super) fn deliberate_unlinks_of(
    conn: &mut DbConnection,
    dealer: &str,
    connection: &str,
) -> Result<Vec<DeliberateUnlink>, Fail> {
    require_connection(conn, dealer, connection)?;
    let rows: Vec<UnlinkRow> = deliberate_unlinks::table
        .filter(deliberate_unlinks::dealer.eq(dealer))
        .filter(deliberate_unlinks::connection_id.eq(connection))
        .select(UnlinkRow::as_select())
        .order((
            deliberate_unlinks::unlinked_at.asc(),
            deliberate_unlinks::kind.asc(),
            deliberate_unlinks::billing_id.asc(),
        ))
        .load(conn)?;
    rows.into_iter().map(UnlinkRow::into_domain).collect()
}
