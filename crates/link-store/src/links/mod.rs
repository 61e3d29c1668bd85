//! `LinkStore` on diesel: which billing record is which external record on a
//! connection. The unique constraints on either side decide races (of fifty
//! concurrent links to one Stages site, one wins); every change writes its
//! audit entries and deliberate unlinks in the same transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use domain::audit::NewAuditEntry;
use domain::billing::BillingId;
use domain::connection::ConnectionId;
use domain::connection::CredentialOwner;
use domain::link::{
    ConfirmLink, DeliberateUnlink, Link, LinkFilter, LinkId, LinkKind, NewLink, Relink,
};
use domain::store::{LinkStore, PageRequest, StoreError, StoreResult};
use domain::syncing::LinkToSettle;

use crate::billing::find_linked;
use crate::connections::{find_connection, read_credential};
use domain::tenancy::DealerId;
use domain::Page;

use crate::audit::{insert_audit, parse_uuid, uuid_text};
use crate::connections::{corrupt, from_db_time, require_connection, to_db_time};
use crate::db::{
    conflict_on_foreign_key, in_given_order, into_page, page_limit, per_backend, write_transaction,
    DbConnection, Fail, IN_CHUNK,
};
use crate::schema::{deliberate_unlinks, links};
use crate::Store;

// `treat_none_as_null`: a batch of rows is one INSERT on SQLite too (diesel
// sends a statement per row when a value is left to the column's DEFAULT).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = links, treat_none_as_null = true)]
struct LinkRow {
    id: String,
    dealer: String,
    connection_id: String,
    kind: String,
    billing_id: String,
    external_id: String,
    parent_id: Option<String>,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    last_synced: Option<String>,
    /// A claim until then; a confirmed link when none.
    claim_expires_at: Option<NaiveDateTime>,
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = deliberate_unlinks)]
struct UnlinkRow {
    connection_id: String,
    kind: String,
    billing_id: String,
    external_id: String,
    dealer: String,
    unlinked_at: NaiveDateTime,
    actor: String,
}

fn link_kind(raw: &str, what: &str) -> Result<LinkKind, Fail> {
    LinkKind::parse(raw).ok_or_else(|| corrupt(format!("{what} has a bad kind '{raw}'")))
}

fn billing_id(raw: &str, what: &str) -> Result<BillingId, Fail> {
    BillingId::parse(raw).map_err(|_| corrupt(format!("{what} has a bad billing id '{raw}'")))
}

impl LinkRow {
    fn new(dealer: &str, link: &NewLink, now: NaiveDateTime) -> Self {
        Self {
            id: uuid_text(link.id.0),
            dealer: dealer.to_owned(),
            connection_id: uuid_text(link.connection_id.0),
            kind: link.kind.as_str().to_owned(),
            billing_id: link.billing_id.as_str().to_owned(),
            external_id: link.external_id.clone(),
            parent_id: link.parent_id.map(|p| uuid_text(p.0)),
            version: 1,
            created_at: now,
            updated_at: now,
            last_synced: None,
            claim_expires_at: None,
        }
    }

    fn into_domain(self) -> Result<Link, Fail> {
        let what = format!("link {}", self.id);
        let last_synced = self
            .last_synced
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|_| corrupt(format!("{what} has a bad snapshot")))?;
        Ok(Link {
            id: LinkId(parse_uuid(&self.id, "link")?),
            dealer: DealerId(self.dealer),
            connection_id: ConnectionId(parse_uuid(&self.connection_id, "connection")?),
            kind: link_kind(&self.kind, &what)?,
            billing_id: billing_id(&self.billing_id, &what)?,
            external_id: self.external_id,
            parent_id: self
                .parent_id
                .as_deref()
                .map(|p| parse_uuid(p, "link").map(LinkId))
                .transpose()?,
            last_synced,
            version: self.version,
            created_at: from_db_time(self.created_at),
            updated_at: from_db_time(self.updated_at),
        })
    }

    fn kind(&self) -> Result<LinkKind, Fail> {
        link_kind(&self.kind, &format!("link {}", self.id))
    }
}

impl UnlinkRow {
    fn into_domain(self) -> Result<DeliberateUnlink, Fail> {
        let what = format!("deliberate unlink of {} '{}'", self.kind, self.billing_id);
        Ok(DeliberateUnlink {
            connection_id: ConnectionId(parse_uuid(&self.connection_id, "connection")?),
            kind: link_kind(&self.kind, &what)?,
            billing_id: billing_id(&self.billing_id, &what)?,
            external_id: self.external_id,
            unlinked_at: from_db_time(self.unlinked_at),
            actor: self.actor,
        })
    }
}

/// The billing side of a link, as messages name it.
fn billing_side(kind: LinkKind, id: &str) -> String {
    match kind {
        LinkKind::Site => format!("billing site '{id}'"),
        LinkKind::System => format!("billing system '{id}'"),
    }
}

/// The external side of a link, as messages name it.
fn external_side(kind: LinkKind, id: &str) -> String {
    match kind {
        LinkKind::Site => format!("Stages site '{id}'"),
        LinkKind::System => format!("Stages device '{id}'"),
    }
}

fn already_linked(side: String) -> Fail {
    Fail::Store(StoreError::Conflict(format!(
        "{side} is already linked on this connection"
    )))
}

/// A unique violation of the links table, told apart by which side it names:
/// PostgreSQL reports the constraint, SQLite the columns.
fn link_write(result: QueryResult<usize>, row: &LinkRow) -> Result<usize, Fail> {
    match result {
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)) => {
            let kind = row.kind()?;
            let names = format!(
                "{} {}",
                info.constraint_name().unwrap_or(""),
                info.message()
            );
            Err(if names.contains("external") {
                already_linked(external_side(kind, &row.external_id))
            } else if names.contains("billing") {
                already_linked(billing_side(kind, &row.billing_id))
            } else {
                StoreError::Conflict(format!("link {} already exists", row.id)).into()
            })
        }
        other => conflict_on_foreign_key(other, || {
            "the connection or the parent link was removed meanwhile; try again".to_owned()
        }),
    }
}

/// The links of one billing record on every connection (claims left out).
pub(crate) fn links_of_record(
    conn: &mut DbConnection,
    dealer: &str,
    kind: LinkKind,
    billing_id: &str,
) -> Result<Vec<Link>, Fail> {
    let rows: Vec<LinkRow> = links::table
        .filter(links::dealer.eq(dealer))
        .filter(links::kind.eq(kind.as_str()))
        .filter(links::billing_id.eq(billing_id))
        .filter(links::claim_expires_at.is_null())
        .select(LinkRow::as_select())
        .order(links::id.asc())
        .load(conn)?;
    rows.into_iter().map(LinkRow::into_domain).collect()
}

fn find_link(conn: &mut DbConnection, dealer: &str, id: &str) -> QueryResult<Option<LinkRow>> {
    links::table
        .filter(links::dealer.eq(dealer))
        .filter(links::id.eq(id))
        .select(LinkRow::as_select())
        .first(conn)
        .optional()
}

/// Lists of records looked up with `IN (...)` go in slices of at most this
/// many. Without statistics PostgreSQL takes each listed value to match 0.5%
/// of the rows: a few hundred of them look like the whole table, and it reads
/// the whole table rather than the index.
const LOOKUP_CHUNK: usize = 100;

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
fn edit_claim_billing_id(id: &str) -> String {
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
fn refuse_taken(conn: &mut DbConnection, row: &LinkRow) -> Result<(), Fail> {
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

/// Inserts a link, relying on the unique constraints: only when they refuse it
/// is the link in the way looked up, to name it, so a batch of free records
/// looks nothing up. The constraints also decide races (PostgreSQL waits for
/// the other writer, then answers here with the link it committed).
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

fn insert_link(conn: &mut DbConnection, row: &LinkRow) -> Result<(), Fail> {
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
fn forget_unlinks(conn: &mut DbConnection, rows: &[&LinkRow]) -> Result<(), Fail> {
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
fn insert_links_blocking(
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

fn confirm_blocking(
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

fn release_blocking(conn: &mut DbConnection, dealer: &str, ids: &[LinkId]) -> Result<(), Fail> {
    let ids: Vec<String> = ids.iter().map(|id| uuid_text(id.0)).collect();
    let claims = links::table
        .filter(links::dealer.eq(dealer))
        .filter(links::claim_expires_at.is_not_null());
    // Children first: SQLite may run without foreign key cascades.
    diesel::delete(claims.filter(links::parent_id.eq_any(&ids))).execute(conn)?;
    diesel::delete(claims.filter(links::id.eq_any(&ids))).execute(conn)?;
    Ok(())
}

/// Stands in for an external id while a batch of relinks is applied, so links
/// may swap their external records. A control character never occurs in a real one.
fn relink_placeholder(id: &str) -> String {
    format!("\u{1}relink {id}")
}

fn relink_blocking(
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
fn claim_relinks_blocking(
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
fn confirm_relinks_blocking(
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

fn unlink_blocking(
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

fn discard_blocking(conn: &mut DbConnection, dealer: &str, ids: &[LinkId]) -> Result<(), Fail> {
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

#[async_trait]
impl LinkStore for Store {
    async fn insert_links(
        &self,
        dealer: &DealerId,
        links: Vec<NewLink>,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<Vec<Link>> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                insert_links_blocking(conn, &dealer, &links, audit, None)
            })
        })
        .await
    }

    async fn claim_links(
        &self,
        dealer: &DealerId,
        links: Vec<NewLink>,
        lease: chrono::Duration,
    ) -> StoreResult<Vec<Link>> {
        let dealer = dealer.0.clone();
        let until = to_db_time(Utc::now() + lease);
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                insert_links_blocking(conn, &dealer, &links, Vec::new(), Some(until))
            })
        })
        .await
    }

    async fn confirm_links(
        &self,
        dealer: &DealerId,
        confirms: Vec<ConfirmLink>,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<Vec<Link>> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                confirm_blocking(conn, &dealer, &confirms, audit)
            })
        })
        .await
    }

    async fn release_links(&self, dealer: &DealerId, ids: &[LinkId]) -> StoreResult<()> {
        let dealer = dealer.0.clone();
        let ids = ids.to_vec();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| release_blocking(conn, &dealer, &ids))
        })
        .await
    }

    async fn link(&self, dealer: &DealerId, id: LinkId) -> StoreResult<Link> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            find_link(conn, &dealer, &uuid_text(id.0))?
                .filter(|row| row.claim_expires_at.is_none())
                .ok_or(StoreError::NotFound)?
                .into_domain()
        })
        .await
    }

    async fn link_to_settle(&self, dealer: &DealerId, id: LinkId) -> StoreResult<LinkToSettle> {
        let dealer = dealer.0.clone();
        self.run(move |conn, cipher| {
            // One transaction: a consistent read, one commit.
            conn.transaction(|conn| {
                let link = find_link(conn, &dealer, &uuid_text(id.0))?
                    .filter(|row| row.claim_expires_at.is_none())
                    .ok_or(StoreError::NotFound)?
                    .into_domain()?;
                let connection = find_connection(conn, &dealer, link.connection_id)?;
                let dealer_credential = read_credential(
                    conn,
                    cipher,
                    &dealer,
                    link.connection_id,
                    &CredentialOwner::Dealer,
                )?;
                let billing = find_linked(conn, &dealer, link.kind, link.billing_id.as_str())?;
                Ok(LinkToSettle {
                    link,
                    connection,
                    dealer_credential,
                    billing,
                })
            })
        })
        .await
    }

    async fn list_links(
        &self,
        dealer: &DealerId,
        filter: &LinkFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Link>> {
        let dealer = dealer.0.clone();
        let filter = filter.clone();
        let limit = page_limit(&page);
        self.run(move |conn, _| {
            // The lookup billing front ends make on every screen: a query of
            // one fixed shape, which each connection prepares once (a boxed
            // query of varying filters is parsed and planned every time).
            if let LinkFilter {
                billing_id: Some(billing_id),
                connection_id: None,
                kind: None,
                external_id: None,
                parent_id: None,
            } = &filter
            {
                if page.after.is_none() {
                    let rows: Vec<LinkRow> = links::table
                        .filter(links::billing_id.eq(billing_id))
                        .filter(links::dealer.eq(&dealer))
                        .filter(links::claim_expires_at.is_null())
                        .select(LinkRow::as_select())
                        .order(links::id.asc())
                        .limit(limit as i64 + 1)
                        .load(conn)?;
                    return into_page(rows, limit, |r| r.id.clone(), LinkRow::into_domain);
                }
            }
            let mut query = links::table
                .filter(links::dealer.eq(dealer))
                .filter(links::claim_expires_at.is_null())
                .select(LinkRow::as_select())
                .order(links::id.asc())
                .limit(limit as i64 + 1)
                .into_boxed();
            if let Some(connection) = filter.connection_id {
                query = query.filter(links::connection_id.eq(uuid_text(connection.0)));
            }
            if let Some(kind) = filter.kind {
                query = query.filter(links::kind.eq(kind.as_str()));
            }
            if let Some(billing_id) = filter.billing_id {
                query = query.filter(links::billing_id.eq(billing_id));
            }
            if let Some(external_id) = filter.external_id {
                query = query.filter(links::external_id.eq(external_id));
            }
            if let Some(parent) = filter.parent_id {
                query = query.filter(links::parent_id.eq(uuid_text(parent.0)));
            }
            if let Some(after) = page.after {
                query = query.filter(links::id.gt(after));
            }
            let rows: Vec<LinkRow> = query.load(conn)?;
            into_page(rows, limit, |r| r.id.clone(), LinkRow::into_domain)
        })
        .await
    }

    async fn links_of_billing(
        &self,
        dealer: &DealerId,
        kind: LinkKind,
        billing_id: &BillingId,
    ) -> StoreResult<Vec<Link>> {
        let dealer = dealer.0.clone();
        let billing_id = billing_id.as_str().to_owned();
        self.run(move |conn, _| links_of_record(conn, &dealer, kind, &billing_id))
            .await
    }

    async fn linked_external_ids(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        kind: LinkKind,
        external_ids: &[String],
    ) -> StoreResult<Vec<String>> {
        let dealer = dealer.0.clone();
        let external_ids = external_ids.to_vec();
        self.run(move |conn, _| {
            let connection = uuid_text(connection_id.0);
            let mut found = HashSet::new();
            for chunk in external_ids.chunks(LOOKUP_CHUNK) {
                let rows: Vec<String> = links::table
                    .filter(links::dealer.eq(&dealer))
                    .filter(links::connection_id.eq(&connection))
                    .filter(links::kind.eq(kind.as_str()))
                    .filter(links::external_id.eq_any(chunk))
                    .filter(links::claim_expires_at.is_null())
                    .select(links::external_id)
                    .load(conn)?;
                found.extend(rows);
            }
            Ok(in_given_order(external_ids, &found))
        })
        .await
    }

    async fn relink(
        &self,
        dealer: &DealerId,
        changes: Vec<Relink>,
        expected: Option<(LinkId, i64)>,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<Vec<Link>> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                relink_blocking(conn, &dealer, changes, expected, audit)
            })
        })
        .await
    }

    async fn claim_relinks(
        &self,
        dealer: &DealerId,
        changes: Vec<Relink>,
        lease: chrono::Duration,
    ) -> StoreResult<Vec<LinkId>> {
        let dealer = dealer.0.clone();
        let until = to_db_time(Utc::now() + lease);
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                claim_relinks_blocking(conn, &dealer, &changes, until)
            })
        })
        .await
    }

    async fn confirm_relinks(
        &self,
        dealer: &DealerId,
        claims: Vec<LinkId>,
        changes: Vec<Relink>,
        expected: Option<(LinkId, i64)>,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<Vec<Link>> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                confirm_relinks_blocking(conn, &dealer, &claims, changes, expected, audit)
            })
        })
        .await
    }

    async fn unlink(
        &self,
        dealer: &DealerId,
        ids: &[LinkId],
        actor: &str,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<Vec<Link>> {
        let dealer = dealer.0.clone();
        let ids = ids.to_vec();
        let actor = actor.to_owned();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                unlink_blocking(conn, &dealer, &ids, &actor, audit)
            })
        })
        .await
    }

    async fn discard_links(&self, dealer: &DealerId, ids: &[LinkId]) -> StoreResult<()> {
        let dealer = dealer.0.clone();
        let ids = ids.to_vec();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| discard_blocking(conn, &dealer, &ids))
        })
        .await
    }

    /// Bookkeeping of the sync, not a change of the link: the version (the
    /// link's ETag) and `updated_at` stay.
    async fn set_link_snapshot(
        &self,
        dealer: &DealerId,
        id: LinkId,
        snapshot: serde_json::Value,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<()> {
        let dealer = dealer.0.clone();
        let snapshot = snapshot.to_string();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                let updated = diesel::update(
                    links::table
                        .filter(links::dealer.eq(&dealer))
                        .filter(links::id.eq(uuid_text(id.0))),
                )
                .set(links::last_synced.eq(snapshot))
                .execute(conn)?;
                if updated == 0 {
                    return Err(StoreError::NotFound.into());
                }
                insert_audit(conn, &dealer, audit)
            })
        })
        .await
    }

    async fn deliberate_unlinks(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
    ) -> StoreResult<Vec<DeliberateUnlink>> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            let connection = uuid_text(connection_id.0);
            require_connection(conn, &dealer, &connection)?;
            let rows: Vec<UnlinkRow> = deliberate_unlinks::table
                .filter(deliberate_unlinks::dealer.eq(&dealer))
                .filter(deliberate_unlinks::connection_id.eq(&connection))
                .select(UnlinkRow::as_select())
                .order((
                    deliberate_unlinks::unlinked_at.asc(),
                    deliberate_unlinks::kind.asc(),
                    deliberate_unlinks::billing_id.asc(),
                ))
                .load(conn)?;
            rows.into_iter().map(UnlinkRow::into_domain).collect()
        })
        .await
    }
}
