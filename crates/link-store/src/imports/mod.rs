//! `ImportStore` on diesel: Alarm.com import runs, the outcome of each record
//! of a run, and which ADC record became which billing record. A chunk of
//! outcomes is written in one transaction with its billing records, its
//! `imported_records` rows, its events and the run's counts, so a run killed
//! at any point has recorded either all of a record's effects or none; the
//! primary key of `imported_records` (connection, kind, ADC id) refuses a
//! second import of one record, whatever happens.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use domain::billing::BillingId;
use domain::connection::ConnectionId;
use domain::events::NewEvent;
use domain::import::{
    Import, ImportCounts, ImportId, ImportItem, ImportKind, ImportSpec, ImportStore, ImportWrite,
    ItemOutcome, NewImport, RecordOutcome,
};
use domain::jobs::{Job, JobState, NewJob};
use domain::store::{PageRequest, StoreError, StoreResult};
use domain::tenancy::DealerId;
use domain::Page;

use crate::audit::{parse_uuid, uuid_text};
use crate::billing::insert_new_records;
use crate::connections::{corrupt, from_db_time, to_db_time};
use crate::db::{
    conflict_on_unique, into_page, page_limit, per_backend, write_transaction, DbConnection, Fail,
    IN_CHUNK,
};
use crate::events::{insert_events, insert_many_events};
use crate::jobs::enqueue_within;
use crate::schema::{
    billing_customers, billing_users, import_items, imported_records, imports, isp_accounts,
};
use crate::Store;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = imports)]
struct ImportRow {
    id: String,
    dealer: String,
    connection_id: String,
    kind: String,
    filters: String,
    options: String,
    seen: i64,
    imported: i64,
    already_imported: i64,
    filtered_out: i64,
    failed: i64,
    finished_state: Option<String>,
    created_by: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    finished_at: Option<NaiveDateTime>,
}

/// A missing billing id or reason is NULL rather than DEFAULT, which SQLite
/// would insert one row per statement.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = import_items, treat_none_as_null = true)]
struct ItemRow {
    import_id: String,
    seq: i64,
    external_id: String,
    outcome: String,
    billing_id: Option<String>,
    reason: Option<String>,
    created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = imported_records)]
struct ImportedRow {
    connection_id: String,
    kind: String,
    external_id: String,
    dealer: String,
    billing_id: String,
    import_id: String,
    imported_at: NaiveDateTime,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The kind of record a mapping row is about.
fn record_kind(kind: ImportKind) -> &'static str {
    match kind {
        ImportKind::Customers => "customer",
        ImportKind::Users => "user",
    }
}

impl ImportRow {
    fn counts(&self) -> ImportCounts {
        ImportCounts {
            seen: count(self.seen),
            imported: count(self.imported),
            already_imported: count(self.already_imported),
            filtered_out: count(self.filtered_out),
            failed: count(self.failed),
        }
    }

    fn into_domain(self) -> Result<Import, Fail> {
        let bad = |what: &str| corrupt(format!("import {} has a bad {what}", self.id));
        let kind = ImportKind::parse(&self.kind).ok_or_else(|| bad("kind"))?;
        let json = |text: &str, what: &str| -> Result<serde_json::Value, Fail> {
            serde_json::from_str(text).map_err(|_| bad(what))
        };
        let spec = ImportSpec::from_parts(
            kind,
            json(&self.filters, "filters")?,
            json(&self.options, "options")?,
        )
        .map_err(|_| bad("filters or options"))?;
        Ok(Import {
            id: ImportId(parse_uuid(&self.id, "import")?),
            connection_id: ConnectionId(parse_uuid(&self.connection_id, "connection")?),
            counts: self.counts(),
            spec,
            dealer: DealerId(self.dealer),
            finished_state: self.finished_state,
            created_by: self.created_by,
            created_at: from_db_time(self.created_at),
            updated_at: from_db_time(self.updated_at),
            finished_at: self.finished_at.map(from_db_time),
        })
    }
}

impl ItemRow {
    fn into_domain(self) -> Result<ImportItem, Fail> {
        let outcome = ItemOutcome::parse(&self.outcome).ok_or_else(|| {
            corrupt(format!(
                "import item {}/{} has a bad outcome",
                self.import_id, self.external_id
            ))
        })?;
        let billing_id = self
            .billing_id
            .as_deref()
            .map(|b| {
                BillingId::parse(b).map_err(|_| corrupt(format!("import item billing id '{b}'")))
            })
            .transpose()?;
        Ok(ImportItem {
            seq: self.seq,
            external_id: self.external_id,
            outcome,
            billing_id,
            reason: self.reason,
            created_at: from_db_time(self.created_at),
        })
    }
}

fn find_import(conn: &mut DbConnection, dealer: &str, id: &str) -> QueryResult<Option<ImportRow>> {
    imports::table
        .filter(imports::dealer.eq(dealer))
        .filter(imports::id.eq(id))
        .select(ImportRow::as_select())
        .first(conn)
        .optional()
}

/// Rows per multi-row insert: 500 rows of at most 8 columns stay far under
/// SQLite's 32,766 bound parameters (PostgreSQL takes 65,535).
const ROWS_PER_INSERT: usize = 500;

/// Of `external_ids`, those the run `id` has recorded an item for.
fn recorded_among(
    conn: &mut DbConnection,
    id: &str,
    external_ids: &[&str],
) -> Result<HashSet<String>, Fail> {
    let mut found = HashSet::new();
    for chunk in external_ids.chunks(IN_CHUNK) {
        let rows: Vec<String> = import_items::table
            .filter(import_items::import_id.eq(id))
            .filter(import_items::external_id.eq_any(chunk))
            .select(import_items::external_id)
            .load(conn)?;
        found.extend(rows);
    }
    Ok(found)
}

/// Of `external_ids`, those imported on the connection, with their billing ids.
fn imported_among(
    conn: &mut DbConnection,
    connection_id: &str,
    kind: &str,
    external_ids: &[&str],
) -> Result<HashMap<String, String>, Fail> {
    let mut found = HashMap::new();
    for chunk in external_ids.chunks(IN_CHUNK) {
        let rows: Vec<(String, String)> = imported_records::table
            .filter(imported_records::connection_id.eq(connection_id))
            .filter(imported_records::kind.eq(kind))
            .filter(imported_records::external_id.eq_any(chunk))
            .select((imported_records::external_id, imported_records::billing_id))
            .load(conn)?;
        found.extend(rows);
    }
    Ok(found)
}

/// Of `ids`, the billing customers (or users) of the dealer that exist.
fn existing_billing_ids(
    conn: &mut DbConnection,
    dealer: &str,
    users: bool,
    ids: &[&str],
) -> Result<HashSet<String>, Fail> {
    let mut found = HashSet::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let rows: Vec<String> = if users {
            billing_users::table
                .filter(billing_users::dealer.eq(dealer))
                .filter(billing_users::id.eq_any(chunk))
                .select(billing_users::id)
                .load(conn)?
        } else {
            billing_customers::table
                .filter(billing_customers::dealer.eq(dealer))
                .filter(billing_customers::id.eq_any(chunk))
                .select(billing_customers::id)
                .load(conn)?
        };
        found.extend(rows);
    }
    Ok(found)
}

/// The last seq the run gave an item (0 before its first). Not `seen`:
/// records counted as imported before the run have no item.
fn last_seq(conn: &mut DbConnection, id: &str) -> Result<i64, Fail> {
    Ok(import_items::table
        .filter(import_items::import_id.eq(id))
        .select(diesel::dsl::max(import_items::seq))
        .first::<Option<i64>>(conn)?
        .unwrap_or(0))
}

/// An item as recorded, before its row is made.
struct Recorded {
    external_id: String,
    outcome: ItemOutcome,
    billing_id: Option<String>,
    reason: Option<String>,
}

/// Records a chunk of outcomes with their effects, set-based: a few lookups
/// for the whole chunk (recorded already, imported meanwhile, billing id
/// taken), then one multi-row insert per table (billing records, mappings,
/// items, events) and one update of the run's counts, however many records.
fn record_blocking(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
    outcomes: Vec<RecordOutcome>,
) -> Result<ImportCounts, Fail> {
    let mut import = find_import(conn, dealer, id)?.ok_or(StoreError::NotFound)?;
    let kind = ImportKind::parse(&import.kind)
        .map(record_kind)
        .ok_or_else(|| corrupt(format!("import {id} has a bad kind")))?;
    let ids: Vec<&str> = outcomes.iter().map(RecordOutcome::external_id).collect();
    let mut recorded_before = recorded_among(conn, id, &ids)?;
    // Recorded by an attempt before this one, or twice in one chunk.
    let outcomes: Vec<RecordOutcome> = outcomes
        .into_iter()
        .filter(|o| recorded_before.insert(o.external_id().to_owned()))
        .collect();

    let (mut to_import, mut customer_ids, mut user_ids) = (Vec::new(), Vec::new(), Vec::new());
    for outcome in &outcomes {
        match outcome {
            RecordOutcome::Imported {
                external_id, write, ..
            } => {
                to_import.push(external_id.as_str());
                match write.as_ref() {
                    ImportWrite::Customer { id, .. } => customer_ids.push(id.as_str()),
                    ImportWrite::User { id, .. } => user_ids.push(id.as_str()),
                }
            }
            RecordOutcome::Matched { external_id, .. } => to_import.push(external_id.as_str()),
            _ => {}
        }
    }
    let meanwhile = imported_among(conn, &import.connection_id, kind, &to_import)?;
    let mut taken_customers = existing_billing_ids(conn, dealer, false, &customer_ids)?;
    let mut taken_users = existing_billing_ids(conn, dealer, true, &user_ids)?;

    let now = to_db_time(Utc::now());
    let first_seq = last_seq(conn, id)? + 1;
    let mut items = Vec::with_capacity(outcomes.len());
    let mut writes = Vec::new();
    let mut mappings = Vec::new();
    let mut links = Vec::new();
    let mut events: Vec<NewEvent> = Vec::new();
    for (seq, outcome) in (first_seq..).zip(outcomes) {
        let recorded = match outcome {
            RecordOutcome::Imported {
                external_id,
                write,
                events: record_events,
                note,
            } => {
                let billing_id = write.billing_id().as_str().to_owned();
                let (taken, what) = match write.as_ref() {
                    ImportWrite::Customer { .. } => (&mut taken_customers, "billing customer"),
                    ImportWrite::User { .. } => (&mut taken_users, "billing user"),
                };
                if let Some(before) = meanwhile.get(&external_id) {
                    Recorded {
                        external_id,
                        outcome: ItemOutcome::AlreadyImported,
                        billing_id: Some(before.clone()),
                        reason: None,
                    }
                // Taken before, or by an earlier record of this chunk.
                } else if !taken.insert(billing_id.clone()) {
                    Recorded {
                        external_id,
                        outcome: ItemOutcome::Failed,
                        billing_id: None,
                        reason: Some(format!(
                            "{what} '{billing_id}' exists already and was not imported from this connection"
                        )),
                    }
                } else {
                    mappings.push(ImportedRow {
                        connection_id: import.connection_id.clone(),
                        kind: kind.to_owned(),
                        external_id: external_id.clone(),
                        dealer: dealer.to_owned(),
                        billing_id: billing_id.clone(),
                        import_id: import.id.clone(),
                        imported_at: now,
                    });
                    writes.push(*write);
                    events.extend(record_events);
                    Recorded {
                        external_id,
                        outcome: ItemOutcome::Imported,
                        billing_id: Some(billing_id),
                        reason: note,
                    }
                }
            }
            RecordOutcome::AlreadyImported {
                external_id,
                billing_id,
            } => Recorded {
                external_id,
                outcome: ItemOutcome::AlreadyImported,
                billing_id: Some(billing_id.as_str().to_owned()),
                reason: None,
            },
            RecordOutcome::Matched {
                external_id,
                billing_id,
                how,
                link,
            } => {
                if let Some(before) = meanwhile.get(&external_id) {
                    Recorded {
                        external_id,
                        outcome: ItemOutcome::AlreadyImported,
                        billing_id: Some(before.clone()),
                        reason: None,
                    }
                } else {
                    // Remembered like an import, so later runs count it
                    // without reading it again.
                    mappings.push(ImportedRow {
                        connection_id: import.connection_id.clone(),
                        kind: kind.to_owned(),
                        external_id: external_id.clone(),
                        dealer: dealer.to_owned(),
                        billing_id: billing_id.as_str().to_owned(),
                        import_id: import.id.clone(),
                        imported_at: now,
                    });
                    if let Some(link) = link {
                        links.push((billing_id.as_str().to_owned(), link));
                    }
                    Recorded {
                        external_id,
                        outcome: ItemOutcome::AlreadyImported,
                        billing_id: Some(billing_id.as_str().to_owned()),
                        reason: Some(how),
                    }
                }
            }
            RecordOutcome::Planned {
                external_id,
                outcome,
                billing_id,
                reason,
            } => Recorded {
                external_id,
                outcome,
                billing_id: billing_id.map(|b| b.as_str().to_owned()),
                reason: Some(reason),
            },
            RecordOutcome::FilteredOut {
                external_id,
                reason,
            } => Recorded {
                external_id,
                outcome: ItemOutcome::FilteredOut,
                billing_id: None,
                reason: Some(reason),
            },
            RecordOutcome::Failed {
                external_id,
                reason,
            } => Recorded {
                external_id,
                outcome: ItemOutcome::Failed,
                billing_id: None,
                reason: Some(reason),
            },
        };
        import.seen += 1;
        match recorded.outcome {
            ItemOutcome::Imported => import.imported += 1,
            ItemOutcome::AlreadyImported => import.already_imported += 1,
            ItemOutcome::FilteredOut => import.filtered_out += 1,
            ItemOutcome::Failed => import.failed += 1,
        }
        items.push(ItemRow {
            import_id: id.to_owned(),
            seq,
            external_id: recorded.external_id,
            outcome: recorded.outcome.as_str().to_owned(),
            billing_id: recorded.billing_id,
            reason: recorded.reason,
            created_at: now,
        });
    }
    if items.is_empty() {
        return Ok(import.counts());
    }

    let (mut customers, mut users) = (Vec::new(), Vec::new());
    for write in &writes {
        match write {
            ImportWrite::Customer { id, fields } => customers.push((id.as_str(), fields)),
            ImportWrite::User { id, fields } => users.push((id.as_str(), fields)),
        }
    }
    // A record made by someone else since the look above: the chunk is
    // written again from the start (the job's next attempt), and then fails.
    conflict_on_unique(
        insert_new_records(conn, dealer, &customers, &users, now),
        || "a billing record of this import was created meanwhile; try again".to_owned(),
    )?;
    // The primary key is the last word on "never twice".
    for chunk in mappings.chunks(ROWS_PER_INSERT) {
        conflict_on_unique(
            per_backend!(&mut *conn, |c| diesel::insert_into(imported_records::table)
                .values(chunk)
                .execute(c)),
            || "an Alarm.com record of this import was imported meanwhile; try again".to_owned(),
        )?;
    }
    if !links.is_empty() {
        crate::isp::record_found_accounts(
            conn,
            dealer,
            &import.connection_id,
            links,
            &import.created_by,
            now,
        )?;
    }
    for chunk in items.chunks(ROWS_PER_INSERT) {
        per_backend!(&mut *conn, |c| diesel::insert_into(import_items::table)
            .values(chunk)
            .execute(c))?;
    }
    write_counts(conn, &import, now)?;
    // Last: the feed's lock (PostgreSQL) is held for the shortest time.
    insert_many_events(conn, dealer, events)?;
    Ok(import.counts())
}

fn write_counts(
    conn: &mut DbConnection,
    import: &ImportRow,
    now: NaiveDateTime,
) -> Result<(), Fail> {
    diesel::update(imports::table.filter(imports::id.eq(&import.id)))
        .set((
            imports::seen.eq(import.seen),
            imports::imported.eq(import.imported),
            imports::already_imported.eq(import.already_imported),
            imports::filtered_out.eq(import.filtered_out),
            imports::failed.eq(import.failed),
            imports::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Sets how many records of the run were imported before it ran (they have
/// no item): the count an earlier attempt set is replaced, not added to.
fn record_before_blocking(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
    count: u64,
) -> Result<ImportCounts, Fail> {
    let mut import = find_import(conn, dealer, id)?.ok_or(StoreError::NotFound)?;
    // Already-imported items come from records imported while the run went
    // on (and from users matched by login name); the rest was counted here.
    let listed: i64 = if import.already_imported == 0 {
        0
    } else {
        import_items::table
            .filter(import_items::import_id.eq(id))
            .filter(import_items::outcome.eq(ItemOutcome::AlreadyImported.as_str()))
            .count()
            .get_result(conn)?
    };
    let counted_before = import.already_imported - listed;
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    if count == counted_before {
        return Ok(import.counts());
    }
    import.seen += count - counted_before;
    import.already_imported = listed + count;
    write_counts(conn, &import, to_db_time(Utc::now()))?;
    Ok(import.counts())
}

#[async_trait]
impl ImportStore for Store {
    async fn create_import(&self, new: NewImport, job: NewJob) -> StoreResult<(Import, Job)> {
        let now = to_db_time(Utc::now());
        let (filters, options) = new.spec.parts();
        let row = ImportRow {
            id: uuid_text(new.id.0),
            dealer: new.dealer.0,
            connection_id: uuid_text(new.connection_id.0),
            kind: new.spec.kind().as_str().to_owned(),
            filters: filters.to_string(),
            options: options.to_string(),
            seen: 0,
            imported: 0,
            already_imported: 0,
            filtered_out: 0,
            failed: 0,
            finished_state: None,
            created_by: new.created_by,
            created_at: now,
            updated_at: now,
            finished_at: None,
        };
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                diesel::insert_into(imports::table)
                    .values(&row)
                    .execute(conn)?;
                let job = enqueue_within(conn, job)?;
                Ok((row.into_domain()?, job))
            })
        })
        .await
    }

    async fn import(&self, dealer: &DealerId, id: ImportId) -> StoreResult<Import> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            find_import(conn, &dealer, &uuid_text(id.0))?
                .ok_or(StoreError::NotFound)?
                .into_domain()
        })
        .await
    }

    async fn list_imports(
        &self,
        dealer: &DealerId,
        page: PageRequest,
    ) -> StoreResult<Page<Import>> {
        let dealer = dealer.0.clone();
        let limit = page_limit(&page);
        self.run(move |conn, _| {
            let mut query = imports::table
                .filter(imports::dealer.eq(dealer))
                .select(ImportRow::as_select())
                // Newest first: v7 ids are time-ordered.
                .order(imports::id.desc())
                .limit(limit as i64 + 1)
                .into_boxed();
            if let Some(after) = page.after {
                query = query.filter(imports::id.lt(after));
            }
            let rows: Vec<ImportRow> = query.load(conn)?;
            into_page(rows, limit, |r| r.id.clone(), ImportRow::into_domain)
        })
        .await
    }

    async fn import_items(
        &self,
        dealer: &DealerId,
        id: ImportId,
        outcome: Option<ItemOutcome>,
        page: PageRequest,
    ) -> StoreResult<Page<ImportItem>> {
        let dealer = dealer.0.clone();
        let limit = page_limit(&page);
        let id = uuid_text(id.0);
        self.run(move |conn, _| {
            if find_import(conn, &dealer, &id)?.is_none() {
                return Err(StoreError::NotFound.into());
            }
            let mut query = import_items::table
                .filter(import_items::import_id.eq(&id))
                .select(ItemRow::as_select())
                .order(import_items::seq.asc())
                .limit(limit as i64 + 1)
                .into_boxed();
            if let Some(outcome) = outcome {
                query = query.filter(import_items::outcome.eq(outcome.as_str()));
            }
            if let Some(after) = page.after {
                // The cursor is a seq this store made; anything else ends the list.
                let after = after.parse::<i64>().unwrap_or(i64::MAX);
                query = query.filter(import_items::seq.gt(after));
            }
            let rows: Vec<ItemRow> = query.load(conn)?;
            into_page(rows, limit, |r| r.seq.to_string(), ItemRow::into_domain)
        })
        .await
    }

    async fn recorded_external_ids(
        &self,
        dealer: &DealerId,
        id: ImportId,
    ) -> StoreResult<Vec<String>> {
        let dealer = dealer.0.clone();
        let id = uuid_text(id.0);
        self.run(move |conn, _| {
            if find_import(conn, &dealer, &id)?.is_none() {
                return Err(StoreError::NotFound.into());
            }
            Ok(import_items::table
                .filter(import_items::import_id.eq(&id))
                .select(import_items::external_id)
                .load(conn)?)
        })
        .await
    }

    async fn imported_records(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        kind: ImportKind,
        external_ids: &[String],
    ) -> StoreResult<Vec<(String, BillingId)>> {
        let dealer = dealer.0.clone();
        let connection_id = uuid_text(connection_id.0);
        let external_ids = external_ids.to_vec();
        self.run(move |conn, _| {
            let query = imported_records::table
                .filter(imported_records::connection_id.eq(&connection_id))
                .filter(imported_records::kind.eq(record_kind(kind)))
                .filter(imported_records::dealer.eq(&dealer))
                .select((imported_records::external_id, imported_records::billing_id));
            // One query whatever the number of ids: a long list (a run's
            // whole customer list) reads the connection's records of the
            // kind and keeps those asked for, rather than hundreds of `IN`s.
            let rows: Vec<(String, String)> = if external_ids.len() <= IN_CHUNK {
                query
                    .filter(imported_records::external_id.eq_any(&external_ids))
                    .load(conn)?
            } else {
                let wanted: HashSet<&str> = external_ids.iter().map(String::as_str).collect();
                let mut rows: Vec<(String, String)> = query.load(conn)?;
                rows.retain(|(e, _)| wanted.contains(e.as_str()));
                rows
            };
            rows.into_iter()
                .map(|(e, b)| {
                    BillingId::parse(&b)
                        .map(|b| (e, b))
                        .map_err(|_| corrupt(format!("imported record billing id '{b}'")))
                })
                .collect()
        })
        .await
    }

    async fn all_imported_records(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        kind: ImportKind,
    ) -> StoreResult<Vec<(String, BillingId)>> {
        let dealer = dealer.0.clone();
        let connection_id = uuid_text(connection_id.0);
        self.run(move |conn, _| {
            let rows: Vec<(String, String)> = imported_records::table
                .filter(imported_records::connection_id.eq(&connection_id))
                .filter(imported_records::kind.eq(record_kind(kind)))
                .filter(imported_records::dealer.eq(&dealer))
                .select((imported_records::external_id, imported_records::billing_id))
                .load(conn)?;
            rows.into_iter()
                .map(|(e, b)| {
                    BillingId::parse(&b)
                        .map(|b| (e, b))
                        .map_err(|_| corrupt(format!("imported record billing id '{b}'")))
                })
                .collect()
        })
        .await
    }

    async fn isp_linked_customers(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        external_ids: &[String],
    ) -> StoreResult<Vec<(String, BillingId)>> {
        let dealer = dealer.0.clone();
        let connection_id = uuid_text(connection_id.0);
        let external_ids = external_ids.to_vec();
        self.run(move |conn, _| {
            // A connection has few ISP accounts next to its customer list:
            // read them all and keep those asked for.
            let wanted: HashSet<&str> = external_ids.iter().map(String::as_str).collect();
            let rows: Vec<(Option<String>, String)> = isp_accounts::table
                .filter(isp_accounts::connection_id.eq(&connection_id))
                .filter(isp_accounts::dealer.eq(&dealer))
                .filter(isp_accounts::external_id.is_not_null())
                .select((isp_accounts::external_id, isp_accounts::billing_customer_id))
                .load(conn)?;
            rows.into_iter()
                .filter_map(|(e, b)| e.filter(|e| wanted.contains(e.as_str())).map(|e| (e, b)))
                .map(|(e, b)| {
                    BillingId::parse(&b)
                        .map(|b| (e, b))
                        .map_err(|_| corrupt(format!("ISP account billing customer id '{b}'")))
                })
                .collect()
        })
        .await
    }

    async fn billing_customers_among(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        billing_ids: &[String],
    ) -> StoreResult<Vec<(BillingId, Option<String>)>> {
        let dealer = dealer.0.clone();
        let connection_id = uuid_text(connection_id.0);
        let billing_ids = billing_ids.to_vec();
        self.run(move |conn, _| {
            let ids: Vec<&str> = billing_ids.iter().map(String::as_str).collect();
            let found = existing_billing_ids(conn, &dealer, false, &ids)?;
            let mut accounts: HashMap<String, String> = HashMap::new();
            let found_ids: Vec<&str> = found.iter().map(String::as_str).collect();
            for chunk in found_ids.chunks(IN_CHUNK) {
                let rows: Vec<(String, Option<String>)> = isp_accounts::table
                    .filter(isp_accounts::connection_id.eq(&connection_id))
                    .filter(isp_accounts::billing_customer_id.eq_any(chunk))
                    .select((isp_accounts::billing_customer_id, isp_accounts::external_id))
                    .load(conn)?;
                accounts.extend(rows.into_iter().map(|(b, e)| (b, e.unwrap_or_default())));
            }
            found
                .into_iter()
                .map(|b| {
                    let account = accounts.get(&b).cloned();
                    BillingId::parse(&b)
                        .map(|id| (id, account))
                        .map_err(|_| corrupt(format!("billing customer id '{b}'")))
                })
                .collect()
        })
        .await
    }

    async fn billing_users_among(
        &self,
        dealer: &DealerId,
        billing_ids: &[String],
    ) -> StoreResult<Vec<BillingId>> {
        let dealer = dealer.0.clone();
        let billing_ids = billing_ids.to_vec();
        self.run(move |conn, _| {
            let ids: Vec<&str> = billing_ids.iter().map(String::as_str).collect();
            existing_billing_ids(conn, &dealer, true, &ids)?
                .into_iter()
                .map(|b| {
                    BillingId::parse(&b).map_err(|_| corrupt(format!("billing user id '{b}'")))
                })
                .collect()
        })
        .await
    }

    async fn billing_user_logins(
        &self,
        dealer: &DealerId,
    ) -> StoreResult<Vec<(String, BillingId)>> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            let rows: Vec<(String, String)> = billing_users::table
                .filter(billing_users::dealer.eq(&dealer))
                .filter(billing_users::login_name.ne(""))
                .select((billing_users::login_name, billing_users::id))
                .order(billing_users::id.asc())
                .load(conn)?;
            rows.into_iter()
                .map(|(login, id)| {
                    BillingId::parse(&id)
                        .map(|id| (login, id))
                        .map_err(|_| corrupt(format!("billing user id '{id}'")))
                })
                .collect()
        })
        .await
    }

    async fn record_imported_before(
        &self,
        dealer: &DealerId,
        id: ImportId,
        count: u64,
    ) -> StoreResult<ImportCounts> {
        let dealer = dealer.0.clone();
        let id = uuid_text(id.0);
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                record_before_blocking(conn, &dealer, &id, count)
            })
        })
        .await
    }

    async fn record_outcomes(
        &self,
        dealer: &DealerId,
        id: ImportId,
        outcomes: Vec<RecordOutcome>,
    ) -> StoreResult<ImportCounts> {
        let dealer = dealer.0.clone();
        let id = uuid_text(id.0);
        self.run(move |conn, _| {
            write_transaction(conn, |conn| record_blocking(conn, &dealer, &id, outcomes))
        })
        .await
    }

    async fn finish_import(
        &self,
        dealer: &DealerId,
        id: ImportId,
        state: JobState,
        summary: NewEvent,
    ) -> StoreResult<bool> {
        let dealer = dealer.0.clone();
        let id = uuid_text(id.0);
        let now = to_db_time(Utc::now());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                if find_import(conn, &dealer, &id)?.is_none() {
                    return Err(StoreError::NotFound.into());
                }
                let ended = diesel::update(
                    imports::table
                        .filter(imports::id.eq(&id))
                        .filter(imports::finished_state.is_null()),
                )
                .set((
                    imports::finished_state.eq(state.as_str()),
                    imports::finished_at.eq(now),
                    imports::updated_at.eq(now),
                ))
                .execute(conn)?;
                if ended == 0 {
                    return Ok(false);
                }
                insert_events(conn, &dealer, vec![summary])?;
                Ok(true)
            })
        })
        .await
    }
}
