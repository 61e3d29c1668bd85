//! `AuditStore` on diesel: the trail of who changed which link, when. Link
//! changes write their entries through `insert_audit` inside their own
//! transaction, so a change and its record stand or fall together.

use async_trait::async_trait;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use domain::audit::{AuditEntry, AuditFilter, NewAuditEntry};
use domain::connection::ConnectionId;
use domain::store::{AuditStore, PageRequest, StoreResult};
use domain::tenancy::DealerId;
use domain::Page;

use crate::connections::{corrupt, from_db_time, to_db_time};
use crate::db::{insert_rows, into_page, page_limit, DbConnection, Fail};
use crate::schema::audit_log;
use crate::Store;

// A `None` is NULL rather than DEFAULT: see `insert_rows!`.
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_log, treat_none_as_default_value = false)]
struct AuditRow {
    id: String,
    dealer: String,
    at: NaiveDateTime,
    actor: String,
    action: String,
    connection_id: Option<String>,
    kind: String,
    billing_id: Option<String>,
    external_id: Option<String>,
    before_json: Option<String>,
    after_json: Option<String>,
}

pub(crate) fn uuid_text(id: uuid::Uuid) -> String {
    id.hyphenated().to_string()
}

pub(crate) fn parse_uuid(raw: &str, what: &str) -> Result<uuid::Uuid, Fail> {
    uuid::Uuid::parse_str(raw).map_err(|_| corrupt(format!("{what} id '{raw}'")))
}

fn json_text(value: &Option<serde_json::Value>) -> Option<String> {
    value.as_ref().map(|v| v.to_string())
}

fn json_value(raw: Option<String>, id: &str) -> Result<Option<serde_json::Value>, Fail> {
    raw.map(|text| {
        serde_json::from_str(&text).map_err(|_| corrupt(format!("audit entry {id} has bad JSON")))
    })
    .transpose()
}

impl AuditRow {
    fn new(dealer: &str, at: NaiveDateTime, entry: NewAuditEntry) -> Self {
        Self {
            // v7 ids made one after another keep their order, within one batch too.
            id: uuid_text(uuid::Uuid::now_v7()),
            dealer: dealer.to_owned(),
            at,
            before_json: json_text(&entry.before),
            after_json: json_text(&entry.after),
            actor: entry.actor,
            action: entry.action,
            connection_id: entry.connection_id.map(|c| uuid_text(c.0)),
            kind: entry.kind,
            billing_id: entry.billing_id,
            external_id: entry.external_id,
        }
    }

    fn into_domain(self) -> Result<AuditEntry, Fail> {
        let connection_id = self
            .connection_id
            .as_deref()
            .map(|c| parse_uuid(c, "connection").map(ConnectionId))
            .transpose()?;
        Ok(AuditEntry {
            id: parse_uuid(&self.id, "audit entry")?,
            dealer: DealerId(self.dealer),
            at: from_db_time(self.at),
            entry: NewAuditEntry {
                before: json_value(self.before_json, &self.id)?,
                after: json_value(self.after_json, &self.id)?,
                actor: self.actor,
                action: self.action,
                connection_id,
                kind: self.kind,
                billing_id: self.billing_id,
                external_id: self.external_id,
            },
        })
    }
}

/// Writes `entries` on `conn`, inside whatever transaction the caller holds.
pub(crate) fn insert_audit(
    conn: &mut DbConnection,
    dealer: &str,
    entries: Vec<NewAuditEntry>,
) -> Result<(), Fail> {
    insert_audit_of(conn, entries.into_iter().map(|e| (dealer, e)))
}

/// Writes each entry for its dealer, inside whatever transaction the caller
/// holds: a batch of pushes ending together writes theirs in one go.
pub(crate) fn insert_audit_of<'a>(
    conn: &mut DbConnection,
    entries: impl IntoIterator<Item = (&'a str, NewAuditEntry)>,
) -> Result<(), Fail> {
    let at = to_db_time(Utc::now());
    let rows: Vec<AuditRow> = entries
        .into_iter()
        .map(|(dealer, e)| AuditRow::new(dealer, at, e))
        .collect();
    match rows.as_slice() {
        [] => {}
        // A push writes one entry: a row's INSERT, which diesel keeps
        // prepared (see `insert_rows!`); a COPY would take more round trips.
        [row] => {
            diesel::insert_into(audit_log::table)
                .values(row)
                .execute(conn)?;
        }
        // Few statements: a reconcile writes an entry per link taken over.
        _ => {
            insert_rows!(&mut *conn, audit_log, &rows)?;
        }
    }
    Ok(())
}

/// `text` matched literally by LIKE ... ESCAPE '\\'.
fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[async_trait]
impl AuditStore for Store {
    async fn record_audit(
        &self,
        dealer: &DealerId,
        entries: Vec<NewAuditEntry>,
    ) -> StoreResult<()> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            crate::db::write_transaction(conn, |conn| insert_audit(conn, &dealer, entries))
        })
        .await
    }

    async fn list_audit(
        &self,
        dealer: &DealerId,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditEntry>> {
        let dealer = dealer.0.clone();
        let filter = filter.clone();
        let limit = page_limit(&page);
        self.run(move |conn, _| {
            let mut query = audit_log::table
                .filter(audit_log::dealer.eq(dealer))
                .select(AuditRow::as_select())
                // Newest first: v7 ids are time-ordered.
                .order(audit_log::id.desc())
                .limit(limit as i64 + 1)
                .into_boxed();
            if let Some(subject) = filter.subject {
                query = query.filter(
                    audit_log::billing_id
                        .eq(subject.clone())
                        .or(audit_log::external_id.eq(subject)),
                );
            }
            if let Some(actor) = filter.actor {
                query = query.filter(audit_log::actor.eq(actor));
            }
            if let Some(connection) = filter.connection_id {
                query = query.filter(audit_log::connection_id.eq(uuid_text(connection.0)));
            }
            if let Some(field) = filter.field {
                // A member name in the JSON text of before or after; a value
                // holding the same text has its quotes escaped, so it does not match.
                let member = format!("%\"{}\":%", like_literal(&field));
                query = query.filter(
                    audit_log::before_json
                        .like(member.clone())
                        .escape('\\')
                        .or(audit_log::after_json.like(member).escape('\\')),
                );
            }
            if let Some(after) = page.after {
                query = query.filter(audit_log::id.lt(after));
            }
            let rows: Vec<AuditRow> = query.load(conn)?;
            into_page(rows, limit, |r| r.id.clone(), AuditRow::into_domain)
        })
        .await
    }
}
