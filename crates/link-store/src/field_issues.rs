//! `FieldIssueStore` on diesel: the fields of links that did not sync
//! (conflicts held, values Stages refused). An issue that is new or whose
//! values changed is published on the change feed in the same transaction,
//! so the feed says each one once and never says one that was not stored.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Text};
use domain::billing::BillingId;
use domain::connection::ConnectionId;
use domain::events::NewEvent;
use domain::field_issues::{
    FieldIssue, FieldIssueFilter, FieldIssueStore, IssueKind, LinkSettlement, NewFieldIssue,
};
use domain::link::{LinkId, LinkKind};
use domain::store::{PageRequest, StoreError, StoreResult};
use domain::tenancy::DealerId;
use domain::Page;

use crate::audit::{insert_audit, insert_audit_of, parse_uuid, uuid_text};
use crate::connections::{corrupt, from_db_time, to_db_time};
use crate::db::{into_page, page_limit, write_transaction, Columns, DbConnection, Fail};
use crate::events::insert_events;
use crate::links::write_snapshot;
use crate::prepared::kept_sql;
use crate::schema::{link_field_issues, links};
use crate::Store;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = link_field_issues, treat_none_as_default_value = false)]
struct IssueRow {
    id: String,
    dealer: String,
    link_id: String,
    connection_id: String,
    record_kind: String,
    billing_id: String,
    external_id: String,
    field: String,
    issue: String,
    billing_value: String,
    stages_value: String,
    last_synced: Option<String>,
    reason: Option<String>,
    first_seen_at: NaiveDateTime,
    last_seen_at: NaiveDateTime,
}

impl IssueRow {
    fn into_domain(self) -> Result<FieldIssue, Fail> {
        let what = || format!("field issue {}", self.id);
        Ok(FieldIssue {
            id: parse_uuid(&self.id, "field issue")?,
            link_id: LinkId(parse_uuid(&self.link_id, "link")?),
            connection_id: ConnectionId(parse_uuid(&self.connection_id, "connection")?),
            record_kind: LinkKind::parse(&self.record_kind)
                .ok_or_else(|| corrupt(format!("{} has a bad record kind", what())))?,
            billing_id: BillingId::parse(&self.billing_id)
                .map_err(|_| corrupt(format!("{} has a bad billing id", what())))?,
            external_id: self.external_id,
            issue: NewFieldIssue {
                kind: IssueKind::parse(&self.issue)
                    .ok_or_else(|| corrupt(format!("{} has a bad kind", what())))?,
                field: self.field,
                billing_value: self.billing_value,
                stages_value: self.stages_value,
                last_synced: self.last_synced,
                reason: self.reason,
            },
            first_seen_at: from_db_time(self.first_seen_at),
            last_seen_at: from_db_time(self.last_seen_at),
        })
    }

    /// Whether `found` says what this row already says.
    fn says(&self, found: &NewFieldIssue) -> bool {
        self.billing_value == found.billing_value
            && self.stages_value == found.stages_value
            && self.reason == found.reason
    }
}

/// The event announcing an issue: the link's billing record is its subject.
fn event_of(issue: &FieldIssue) -> NewEvent {
    NewEvent {
        event_type: issue.issue.kind.event_type().to_owned(),
        subject_kind: issue.record_kind.as_str().to_owned(),
        subject_id: issue.billing_id.as_str().to_owned(),
        connection_id: Some(issue.connection_id),
        data: serde_json::to_value(issue).unwrap_or_default(),
    }
}

fn record(
    conn: &mut DbConnection,
    dealer: &str,
    link_id: &str,
    kind: IssueKind,
    found: Vec<NewFieldIssue>,
    settled: Vec<String>,
) -> Result<Vec<FieldIssue>, Fail> {
    let (connection_id, record_kind, billing_id, external_id): (String, String, String, String) =
        links::table
            .filter(links::id.eq(link_id))
            .filter(links::dealer.eq(dealer))
            .select((
                links::connection_id,
                links::kind,
                links::billing_id,
                links::external_id,
            ))
            .first(conn)
            .optional()?
            .ok_or(Fail::Store(StoreError::NotFound))?;
    let existing: Vec<IssueRow> = link_field_issues::table
        .filter(link_field_issues::link_id.eq(link_id))
        .filter(link_field_issues::issue.eq(kind.as_str()))
        .select(IssueRow::as_select())
        .load(conn)?;
    let now = to_db_time(Utc::now());
    let mut changed = Vec::new();
    for issue in &found {
        match existing.iter().find(|r| r.field == issue.field) {
            Some(row) if row.says(issue) => {
                diesel::update(link_field_issues::table.find(&row.id))
                    .set(link_field_issues::last_seen_at.eq(now))
                    .execute(conn)?;
            }
            Some(row) => {
                diesel::update(link_field_issues::table.find(&row.id))
                    .set((
                        link_field_issues::billing_value.eq(&issue.billing_value),
                        link_field_issues::stages_value.eq(&issue.stages_value),
                        link_field_issues::last_synced.eq(&issue.last_synced),
                        link_field_issues::reason.eq(&issue.reason),
                        link_field_issues::last_seen_at.eq(now),
                    ))
                    .execute(conn)?;
                let mut row = row.clone();
                row.billing_value = issue.billing_value.clone();
                row.stages_value = issue.stages_value.clone();
                row.last_synced = issue.last_synced.clone();
                row.reason = issue.reason.clone();
                row.last_seen_at = now;
                changed.push(row);
            }
            None => {
                let row = IssueRow {
                    id: uuid_text(uuid::Uuid::now_v7()),
                    dealer: dealer.to_owned(),
                    link_id: link_id.to_owned(),
                    connection_id: connection_id.clone(),
                    record_kind: record_kind.clone(),
                    billing_id: billing_id.clone(),
                    external_id: external_id.clone(),
                    field: issue.field.clone(),
                    issue: kind.as_str().to_owned(),
                    billing_value: issue.billing_value.clone(),
                    stages_value: issue.stages_value.clone(),
                    last_synced: issue.last_synced.clone(),
                    reason: issue.reason.clone(),
                    first_seen_at: now,
                    last_seen_at: now,
                };
                diesel::insert_into(link_field_issues::table)
                    .values(&row)
                    .execute(conn)?;
                changed.push(row);
            }
        }
    }
    let gone: Vec<&String> = settled
        .iter()
        .filter(|f| !found.iter().any(|i| &i.field == *f))
        .collect();
    if !gone.is_empty() {
        diesel::delete(
            link_field_issues::table
                .filter(link_field_issues::link_id.eq(link_id))
                .filter(link_field_issues::issue.eq(kind.as_str()))
                .filter(link_field_issues::field.eq_any(gone)),
        )
        .execute(conn)?;
    }
    let changed = changed
        .into_iter()
        .map(IssueRow::into_domain)
        .collect::<Result<Vec<_>, _>>()?;
    insert_events(conn, dealer, changed.iter().map(event_of).collect())?;
    Ok(changed)
}

/// The common case of every sync: nothing new to keep, so one statement
/// clears what settled (nothing is published).
fn clear_settled(
    conn: &mut DbConnection,
    dealer: &str,
    link_id: &str,
    kind: IssueKind,
    settled: &[String],
) -> Result<(), Fail> {
    if !settled.is_empty() {
        diesel::delete(
            link_field_issues::table
                .filter(link_field_issues::dealer.eq(dealer))
                .filter(link_field_issues::link_id.eq(link_id))
                .filter(link_field_issues::issue.eq(kind.as_str()))
                .filter(link_field_issues::field.eq_any(settled)),
        )
        .execute(conn)?;
    }
    Ok(())
}

/// Stores what settling a link left (its new base, its issues of both
/// kinds), inside the caller's transaction; false, and nothing written,
/// when the link is gone meanwhile.
pub(crate) fn apply_settlement(
    conn: &mut DbConnection,
    settlement: LinkSettlement,
) -> Result<bool, Fail> {
    let dealer = settlement.dealer.0.as_str();
    let link_id = uuid_text(settlement.link_id.0);
    let snapshot = settlement.snapshot.to_string();
    if write_snapshot(conn, dealer, &link_id, &snapshot)? == 0 {
        return Ok(false);
    }
    insert_audit(conn, dealer, settlement.audit)?;
    let (conflicts, refusals) = (settlement.conflicts, settlement.refusals);
    if conflicts.found.is_empty() && refusals.found.is_empty() {
        // The common case: nothing new of either kind, one statement.
        diesel::delete(
            link_field_issues::table
                .filter(link_field_issues::dealer.eq(dealer))
                .filter(link_field_issues::link_id.eq(&link_id))
                .filter(
                    link_field_issues::issue
                        .eq(IssueKind::Conflict.as_str())
                        .and(link_field_issues::field.eq_any(&conflicts.settled))
                        .or(link_field_issues::issue
                            .eq(IssueKind::Refused.as_str())
                            .and(link_field_issues::field.eq_any(&refusals.settled))),
                ),
        )
        .execute(conn)?;
        return Ok(true);
    }
    for (kind, update) in [
        (IssueKind::Conflict, conflicts),
        (IssueKind::Refused, refusals),
    ] {
        if update.found.is_empty() {
            clear_settled(conn, dealer, &link_id, kind, &update.settled)?;
        } else {
            record(conn, dealer, &link_id, kind, update.found, update.settled)?;
        }
    }
    Ok(true)
}

/// Stores what settling several links left, inside the caller's transaction
/// (a batch of Auto Sync pushes ending together); a link gone meanwhile
/// keeps nothing, as with [`apply_settlement`].
///
/// On PostgreSQL the links with no new issue of either kind (nearly every
/// push) share three statements, whatever their number: their snapshots,
/// their audit entries, and the issues their settled fields clear. Link by
/// link that was three round trips each. SQLite runs in this process, where
/// a statement costs no round trip: there each link goes alone.
pub(crate) fn apply_settlements(
    conn: &mut DbConnection,
    settlements: Vec<LinkSettlement>,
) -> Result<(), Fail> {
    let on_postgres = matches!(conn, DbConnection::Postgresql(_));
    let (together, alone): (Vec<_>, Vec<_>) = settlements
        .into_iter()
        .partition(|s| on_postgres && s.conflicts.found.is_empty() && s.refusals.found.is_empty());
    // One link alone takes its own statements, kept prepared like these.
    let (together, alone) = match together.len() {
        0 | 1 => (Vec::new(), together.into_iter().chain(alone).collect()),
        _ => (together, alone),
    };
    for settlement in alone {
        apply_settlement(conn, settlement)?;
    }
    let DbConnection::Postgresql(pg) = &mut *conn else {
        return Ok(());
    };
    if together.is_empty() {
        return Ok(());
    }
    let mut snapshots = Columns::<3>::default();
    for s in &together {
        snapshots.push([
            s.dealer.0.clone(),
            uuid_text(s.link_id.0),
            s.snapshot.to_string(),
        ]);
    }
    let [dealers, ids, values] = &snapshots.0;
    let written: HashSet<String> = kept_sql(
        "UPDATE links SET last_synced = v.snapshot \
         FROM unnest(?, ?, ?) AS v(dealer, id, snapshot) \
         WHERE links.dealer = v.dealer AND links.id = v.id RETURNING links.id",
    )
    .bind::<Array<Text>, _>(dealers)
    .bind::<Array<Text>, _>(ids)
    .bind::<Array<Text>, _>(values)
    .load::<LinkIdRow>(pg)?
    .into_iter()
    .map(|r| r.id)
    .collect();
    let kept: Vec<(String, LinkSettlement)> = together
        .into_iter()
        .map(|s| (uuid_text(s.link_id.0), s))
        .filter(|(id, _)| written.contains(id))
        .collect();
    let mut cleared = Columns::<4>::default();
    for (link_id, s) in &kept {
        for (kind, update) in [
            (IssueKind::Conflict, &s.conflicts),
            (IssueKind::Refused, &s.refusals),
        ] {
            for field in &update.settled {
                cleared.push([
                    s.dealer.0.clone(),
                    link_id.clone(),
                    kind.as_str().to_owned(),
                    field.clone(),
                ]);
            }
        }
    }
    if !cleared.is_empty() {
        let [dealers, link_ids, issues, fields] = &cleared.0;
        kept_sql(
            "DELETE FROM link_field_issues AS f \
             USING unnest(?, ?, ?, ?) AS v(dealer, link_id, issue, field) \
             WHERE f.dealer = v.dealer AND f.link_id = v.link_id \
             AND f.issue = v.issue AND f.field = v.field",
        )
        .bind::<Array<Text>, _>(dealers)
        .bind::<Array<Text>, _>(link_ids)
        .bind::<Array<Text>, _>(issues)
        .bind::<Array<Text>, _>(fields)
        .execute(pg)?;
    }
    insert_audit_of(
        conn,
        kept.iter()
            .flat_map(|(_, s)| s.audit.iter().map(|e| (s.dealer.0.as_str(), e.clone()))),
    )
}

#[derive(QueryableByName)]
struct LinkIdRow {
    #[diesel(sql_type = Text)]
    id: String,
}

#[async_trait]
impl FieldIssueStore for Store {
    async fn record_field_issues(
        &self,
        dealer: &DealerId,
        link_id: LinkId,
        kind: IssueKind,
        found: Vec<NewFieldIssue>,
        settled: Vec<String>,
    ) -> StoreResult<Vec<FieldIssue>> {
        let dealer = dealer.0.clone();
        let link_id = uuid_text(link_id.0);
        self.run(move |conn, _| {
            if found.is_empty() {
                return clear_settled(conn, &dealer, &link_id, kind, &settled).map(|()| Vec::new());
            }
            write_transaction(conn, |conn| {
                record(conn, &dealer, &link_id, kind, found, settled)
            })
        })
        .await
    }

    async fn list_field_issues(
        &self,
        dealer: &DealerId,
        filter: &FieldIssueFilter,
        page: PageRequest,
    ) -> StoreResult<Page<FieldIssue>> {
        let dealer = dealer.0.clone();
        let filter = filter.clone();
        let limit = page_limit(&page);
        self.run(move |conn, _| {
            let mut query = link_field_issues::table
                .filter(link_field_issues::dealer.eq(dealer))
                .select(IssueRow::as_select())
                // Newest first: v7 ids are time-ordered.
                .order(link_field_issues::id.desc())
                .limit(limit as i64 + 1)
                .into_boxed();
            if let Some(kind) = filter.kind {
                query = query.filter(link_field_issues::issue.eq(kind.as_str()));
            }
            if let Some(connection) = filter.connection_id {
                query = query.filter(link_field_issues::connection_id.eq(uuid_text(connection.0)));
            }
            if let Some(link) = filter.link_id {
                query = query.filter(link_field_issues::link_id.eq(uuid_text(link.0)));
            }
            if let Some(kind) = filter.record_kind {
                query = query.filter(link_field_issues::record_kind.eq(kind.as_str()));
            }
            if let Some(field) = filter.field {
                query = query.filter(link_field_issues::field.eq(field));
            }
            if let Some(before) = filter.seen_before {
                query = query.filter(link_field_issues::first_seen_at.lt(to_db_time(before)));
            }
            if let Some(after) = page.after {
                query = query.filter(link_field_issues::id.lt(after));
            }
            let rows: Vec<IssueRow> = query.load(conn)?;
            into_page(rows, limit, |r| r.id.clone(), IssueRow::into_domain)
        })
        .await
    }
}
