//! `ImportStore` on diesel: Alarm.com import runs, the outcome of each record
//! of a run, and which ADC record became which billing record. A chunk of
//! outcomes is written in one transaction with its billing records, its
//! `imported_records` rows, its events and the run's counts, so a run killed
//! at any point has recorded either all of a record's effects or none; the
//! primary key of `imported_records` (connection, kind, ADC id) refuses a
//! second import of one record, whatever happens. Recording a chunk is in
//! `record`, the lookups of other tables a run makes in `lookups`.

mod lookups;
mod record;

use async_trait::async_trait;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use domain::billing::BillingId;
use domain::connection::ConnectionId;
use domain::events::NewEvent;
use domain::import::{
    Import, ImportCounts, ImportId, ImportItem, ImportKind, ImportSpec, ImportStore, ItemOutcome,
    NewImport, RecordOutcome,
};
use domain::jobs::{Job, JobState, NewJob};
use domain::store::{PageRequest, StoreError, StoreResult};
use domain::tenancy::DealerId;
use domain::Page;

use crate::audit::{parse_uuid, uuid_text};
use crate::connections::{corrupt, from_db_time, to_db_time};
use crate::db::{into_page, keyed_lookups, page_limit, write_transaction, DbConnection, Fail};
use crate::events::insert_events;
use crate::jobs::enqueue_within;
use crate::migrate::IMPORT_TABLES;
use crate::schema::{import_items, imported_records, imports};
use crate::Store;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = imports, treat_none_as_default_value = false)]
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

/// A missing billing id or reason is NULL rather than DEFAULT (see
/// `insert_rows!`).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = import_items, treat_none_as_default_value = false)]
struct ItemRow {
    import_id: String,
    seq: i64,
    external_id: String,
    outcome: String,
    billing_id: Option<String>,
    reason: Option<String>,
    created_at: NaiveDateTime,
}

/// Every value is written as given, none left to DEFAULT: see `insert_rows!`.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = imported_records, treat_none_as_default_value = false)]
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
            keyed_lookups(conn, |conn| {
                lookups::imported_records(conn, &dealer, &connection_id, kind, &external_ids)
            })
        })
        .await
    }

    async fn all_imported_external_ids(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        kind: ImportKind,
    ) -> StoreResult<Vec<String>> {
        let dealer = dealer.0.clone();
        let connection_id = uuid_text(connection_id.0);
        self.run(move |conn, _| {
            lookups::all_imported_external_ids(conn, &dealer, &connection_id, kind)
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
        self.run(move |conn, _| lookups::all_imported_records(conn, &dealer, &connection_id, kind))
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
            lookups::isp_linked_customers(conn, &dealer, &connection_id, &external_ids)
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
            keyed_lookups(conn, |conn| {
                lookups::billing_customers_among(conn, &dealer, &connection_id, &billing_ids)
            })
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
            keyed_lookups(conn, |conn| {
                lookups::billing_users_among(conn, &dealer, &billing_ids)
            })
        })
        .await
    }

    async fn billing_user_logins(
        &self,
        dealer: &DealerId,
    ) -> StoreResult<Vec<(String, BillingId)>> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| lookups::billing_user_logins(conn, &dealer))
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
                record::record_before_blocking(conn, &dealer, &id, count)
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
        let recorded = outcomes.len() as u64;
        let counts = self
            .run(move |conn, _| {
                write_transaction(conn, |conn| {
                    record::record_blocking(conn, &dealer, &id, outcomes)
                })
            })
            .await?;
        if statistics_outgrown(counts.seen.saturating_sub(recorded), counts.seen) {
            if let Err(e) = self.refresh_statistics_sampled(IMPORT_TABLES).await {
                tracing::warn!(error = %e, "refreshing the planner's statistics failed");
            }
        }
        Ok(counts)
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
        let ended = self
            .run(move |conn, _| {
                write_transaction(conn, |conn| {
                    let Some(import) = find_import(conn, &dealer, &id)? else {
                        return Err(StoreError::NotFound.into());
                    };
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
                        return Ok(None);
                    }
                    insert_events(conn, &dealer, vec![summary])?;
                    Ok(Some(import.counts()))
                })
            })
            .await?;
        // The run's last records since its last refresh, before its job ends
        // (a re-run right after plans with them), from the small sample as
        // the run's other refreshes: the full one of a 90,000-customer run's
        // tables was a few hundred milliseconds at the end of every run, and
        // the stale-statistics refresher takes it once they double.
        if ended.as_ref().is_some_and(statistics_grown_by) {
            if let Err(e) = self.refresh_statistics_sampled(IMPORT_TABLES).await {
                tracing::warn!(error = %e, "refreshing the planner's statistics failed");
            }
        }
        Ok(ended.is_some())
    }
}

/// Whether a run that went from `before` to `after` records crossed 1,000,
/// 4,000, 16,000, ...: its rows grow the tables it reads by the thousand,
/// and a plan made for them as ANALYZE last saw them (nearly empty) read a
/// dealer's every customer for each chunk of ids (19 ms a lookup at 20,000,
/// and growing with the run, on PostgreSQL without autovacuum). Past the
/// first, a refresh matters less (PostgreSQL scales the rows it last counted
/// by the table's pages now), so they are four times apart: each refresh of
/// the import's tables cost a fifth of the run's CPU while they doubled.
fn statistics_outgrown(before: u64, after: u64) -> bool {
    let step = |n: u64| (n / 1_000).checked_ilog(4);
    after > before && step(after) != step(before)
}

/// Whether a finished run created enough records that the statistics of
/// its tables are refreshed at its end (a run with nothing new leaves them).
fn statistics_grown_by(counts: &ImportCounts) -> bool {
    counts.imported >= 1_000
}

#[cfg(test)]
mod statistics_tests {
    use super::statistics_outgrown;

    #[test]
    fn statistics_are_refreshed_each_time_a_run_quadruples_past_a_thousand() {
        assert!(!statistics_outgrown(0, 999));
        assert!(statistics_outgrown(500, 1_000));
        assert!(!statistics_outgrown(1_000, 3_999));
        assert!(statistics_outgrown(3_999, 4_500));
        assert!(!statistics_outgrown(4_500, 15_999));
        assert!(statistics_outgrown(60_000, 70_000));
        assert!(!statistics_outgrown(70_000, 90_000));
        assert!(!statistics_outgrown(5_000, 5_000));
    }
}
