//! Relinks: moving links to other external records, at once or as an edit
//! that first claims the new records and then confirms the move. A batch may
//! swap records between its links.

use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use domain::audit::NewAuditEntry;
use domain::link::{Link, LinkId, Relink};
use domain::store::StoreError;

use super::insert::{
    edit_claim_billing_id, forget_unlinks, insert_link, refuse_taken, release_blocking,
};
use super::{find_link, link_write, LinkRow};
use crate::audit::{insert_audit, uuid_text};
use crate::connections::to_db_time;
use crate::db::{DbConnection, Fail};
use crate::schema::links;

/// Stands in for an external id while a batch of relinks is applied, so links
/// may swap their external records. A control character never occurs in a real one.
fn relink_placeholder(id: &str) -> String {
    format!("\u{1}relink {id}")
}

pub(super) fn relink_blocking(
    conn: &mut DbConnection,
    dealer: &str,
    changes: Vec<Relink>,
    expected: Option<(LinkId, i64)>,
    audit: Vec<NewAuditEntry>,
) -> Result<Vec<Link>, Fail> {
    let now = to_db_time(Utc::now());
    if let Some((id, version)) = expected {
        let row = find_link(conn, dealer, &uuid_text(id.0))?.ok_or(StoreError::NotFound)?;
        if row.version != version {
            return Err(StoreError::VersionMismatch.into());
        }
    }
    // One change per link: the last one given wins.
    let mut targets: Vec<(String, String)> = Vec::new();
    for change in changes {
        let id = uuid_text(change.link_id.0);
        match targets.iter_mut().find(|(t, _)| *t == id) {
            Some(target) => target.1 = change.new_external_id,
            None => targets.push((id, change.new_external_id)),
        }
    }
    let mut rows = Vec::with_capacity(targets.len());
    for (id, _) in &targets {
        rows.push(find_link(conn, dealer, id)?.ok_or(StoreError::NotFound)?);
    }
    let moving: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].external_id != targets[i].1)
        .collect();
    // First every moving link lets go of its external record, then each takes its new one.
    // The version read must still be current: a concurrent change (PostgreSQL
    // takes row locks only as it writes) is not overwritten.
    for &i in &moving {
        let held = diesel::update(
            links::table
                .filter(links::id.eq(&rows[i].id))
                .filter(links::version.eq(rows[i].version)),
        )
        .set(links::external_id.eq(relink_placeholder(&rows[i].id)))
        .execute(conn)?;
        if held == 0 {
            return Err(StoreError::VersionMismatch.into());
        }
    }
    for &i in &moving {
        let row = &mut rows[i];
        row.external_id = targets[i].1.clone();
        row.version += 1;
        row.updated_at = now;
        // The snapshot was agreed with the record the link leaves: it is no
        // base for a merge with the new one.
        row.last_synced = None;
        refuse_taken(conn, row)?;
        let updated = diesel::update(links::table.filter(links::id.eq(&row.id)))
            .set((
                links::external_id.eq(&row.external_id),
                links::version.eq(row.version),
                links::updated_at.eq(now),
                links::last_synced.eq(None::<String>),
            ))
            .execute(conn);
        link_write(updated, row)?;
    }
    let moved: Vec<&LinkRow> = moving.iter().map(|&i| &rows[i]).collect();
    forget_unlinks(conn, &moved)?;
    insert_audit(conn, dealer, audit)?;
    rows.into_iter().map(LinkRow::into_domain).collect()
}

/// Claims for an edit: each change's new external record, held apart from
/// its link (see `edit_claim_billing_id`) until `confirm_relinks_blocking`.
pub(super) fn claim_relinks_blocking(
    conn: &mut DbConnection,
    dealer: &str,
    changes: &[Relink],
    until: NaiveDateTime,
) -> Result<Vec<LinkId>, Fail> {
    let now = to_db_time(Utc::now());
    let mut ids = Vec::with_capacity(changes.len());
    for change in changes {
        let link = find_link(conn, dealer, &uuid_text(change.link_id.0))?
            .filter(|row| row.claim_expires_at.is_none())
            .ok_or(StoreError::NotFound)?;
        let id = LinkId::new();
        let claim = LinkRow {
            id: uuid_text(id.0),
            dealer: dealer.to_owned(),
            connection_id: link.connection_id.clone(),
            kind: link.kind.clone(),
            billing_id: edit_claim_billing_id(&link.id),
            external_id: change.new_external_id.clone(),
            parent_id: None,
            version: 1,
            created_at: now,
            updated_at: now,
            last_synced: None,
            claim_expires_at: Some(until),
        };
        insert_link(conn, &claim)?;
        ids.push(id);
    }
    Ok(ids)
}

/// Drops an edit's claims and moves its links, in one transaction, so no
/// other writer can take the records in between.
pub(super) fn confirm_relinks_blocking(
    conn: &mut DbConnection,
    dealer: &str,
    claims: &[LinkId],
    changes: Vec<Relink>,
    expected: Option<(LinkId, i64)>,
    audit: Vec<NewAuditEntry>,
) -> Result<Vec<Link>, Fail> {
    for claim in claims {
        let id = uuid_text(claim.0);
        if find_link(conn, dealer, &id)?.is_none_or(|row| row.claim_expires_at.is_none()) {
            return Err(StoreError::Conflict(format!(
                "the claim {id} of this edit was taken over after its lease ran out; try again"
            ))
            .into());
        }
    }
    release_blocking(conn, dealer, claims)?;
    relink_blocking(conn, dealer, changes, expected, audit)
}
