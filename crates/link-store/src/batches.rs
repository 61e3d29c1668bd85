//! `BatchStore` on diesel (B7): a batch, its items with their inputs and
//! outcomes, and its counts. An item's outcome and the batch's counts are
//! written in one transaction, and only over a pending item, so an item run
//! again after a lost lease is counted once.

use async_trait::async_trait;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use domain::batch::{
    Batch, BatchCounts, BatchId, BatchItem, BatchItemInput, BatchOperation, BatchStore,
    ItemOutcome, ItemState, NewBatch,
};
use domain::connection::ConnectionId;
use domain::events::NewEvent;
use domain::jobs::{Job, JobState, NewJob};
use domain::store::{PageRequest, StoreError, StoreResult};
use domain::tenancy::DealerId;
use domain::Page;

use crate::audit::{parse_uuid, uuid_text};
use crate::connections::{corrupt, from_db_time, to_db_time};
use crate::db::{insert_rows, into_page, page_limit, write_transaction, DbConnection, Fail};
use crate::events::insert_events;
use crate::jobs::enqueue_within;
use crate::schema::{batch_items, batches};
use crate::Store;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = batches, treat_none_as_default_value = false)]
struct BatchRow {
    id: String,
    dealer: String,
    operation: String,
    connection_id: Option<String>,
    dry_run: bool,
    total: i64,
    succeeded: i64,
    failed: i64,
    finished_state: Option<String>,
    created_by: String,
    created_at: NaiveDateTime,
    finished_at: Option<NaiveDateTime>,
}

/// A missing result, problem or end is NULL rather than DEFAULT (see
/// `insert_rows!`).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = batch_items, treat_none_as_default_value = false)]
struct ItemRow {
    batch_id: String,
    position: i64,
    subject: String,
    input: String,
    state: String,
    result: Option<String>,
    problem: Option<String>,
    finished_at: Option<NaiveDateTime>,
}

impl BatchRow {
    fn into_domain(self) -> Result<Batch, Fail> {
        let bad = |what: &str| corrupt(format!("batch {} has a bad {what}", self.id));
        let operation = BatchOperation::parse(&self.operation).ok_or_else(|| bad("operation"))?;
        let count = |n: i64| u64::try_from(n).map_err(|_| bad("count"));
        let total = count(self.total)?;
        let succeeded = count(self.succeeded)?;
        let failed = count(self.failed)?;
        // Items left pending by the end of a batch are cancelled with it.
        let cancelled = if self.finished_state.is_some() {
            total.saturating_sub(succeeded + failed)
        } else {
            0
        };
        Ok(Batch {
            id: BatchId(parse_uuid(&self.id, "batch")?),
            dealer: DealerId(self.dealer),
            operation,
            connection_id: self
                .connection_id
                .as_deref()
                .map(|c| parse_uuid(c, "connection").map(ConnectionId))
                .transpose()?,
            dry_run: self.dry_run,
            counts: BatchCounts {
                total,
                succeeded,
                failed,
                cancelled,
            },
            finished_state: self.finished_state,
            created_by: self.created_by,
            created_at: from_db_time(self.created_at),
            finished_at: self.finished_at.map(from_db_time),
        })
    }
}

impl ItemRow {
    fn into_domain(self) -> Result<BatchItem, Fail> {
        let bad = |what: &str| {
            corrupt(format!(
                "batch item {}/{} has a bad {what}",
                self.batch_id, self.position
            ))
        };
        let json = |text: Option<&str>, what: &str| {
            text.map(|t| serde_json::from_str(t).map_err(|_| bad(what)))
                .transpose()
        };
        Ok(BatchItem {
            index: u32::try_from(self.position).map_err(|_| bad("position"))?,
            state: ItemState::parse(&self.state).ok_or_else(|| bad("state"))?,
            result: json(self.result.as_deref(), "result")?,
            problem: json(self.problem.as_deref(), "problem")?,
            subject: self.subject,
            finished_at: self.finished_at.map(from_db_time),
        })
    }
}

fn find_batch(conn: &mut DbConnection, dealer: &str, id: &str) -> QueryResult<Option<BatchRow>> {
    batches::table
        .filter(batches::dealer.eq(dealer))
        .filter(batches::id.eq(id))
        .select(BatchRow::as_select())
        .first(conn)
        .optional()
}

fn existing_batch(conn: &mut DbConnection, dealer: &str, id: &str) -> Result<BatchRow, Fail> {
    find_batch(conn, dealer, id)?.ok_or_else(|| StoreError::NotFound.into())
}

#[async_trait]
impl BatchStore for Store {
    async fn create_batch(&self, new: NewBatch, job: NewJob) -> StoreResult<(Batch, Job)> {
        let now = to_db_time(Utc::now());
        let id = uuid_text(new.id.0);
        let mut items = Vec::with_capacity(new.items.len());
        for (position, input) in new.items.iter().enumerate() {
            items.push(ItemRow {
                batch_id: id.clone(),
                position: position as i64,
                subject: input.subject(),
                input: serde_json::to_string(input)
                    .map_err(|e| StoreError::Failed(format!("a batch item: {e}")))?,
                state: ItemState::Pending.as_str().to_owned(),
                result: None,
                problem: None,
                finished_at: None,
            });
        }
        let row = BatchRow {
            id,
            dealer: new.dealer.0,
            operation: new.operation.as_str().to_owned(),
            connection_id: new.connection_id.map(|c| uuid_text(c.0)),
            dry_run: new.dry_run,
            total: items.len() as i64,
            succeeded: 0,
            failed: 0,
            finished_state: None,
            created_by: new.created_by,
            created_at: now,
            finished_at: None,
        };
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                diesel::insert_into(batches::table)
                    .values(&row)
                    .execute(conn)?;
                insert_rows!(&mut *conn, batch_items, &items)?;
                let job = enqueue_within(conn, job)?;
                Ok((row.into_domain()?, job))
            })
        })
        .await
    }

    async fn batch(&self, dealer: &DealerId, id: BatchId) -> StoreResult<Batch> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| existing_batch(conn, &dealer, &uuid_text(id.0))?.into_domain())
            .await
    }

    async fn list_batches(&self, dealer: &DealerId, page: PageRequest) -> StoreResult<Page<Batch>> {
        let dealer = dealer.0.clone();
        let limit = page_limit(&page);
        self.run(move |conn, _| {
            let mut query = batches::table
                .filter(batches::dealer.eq(dealer))
                .select(BatchRow::as_select())
                // Newest first: v7 ids are time-ordered.
                .order(batches::id.desc())
                .limit(limit as i64 + 1)
                .into_boxed();
            if let Some(after) = page.after {
                query = query.filter(batches::id.lt(after));
            }
            let rows: Vec<BatchRow> = query.load(conn)?;
            into_page(rows, limit, |r| r.id.clone(), BatchRow::into_domain)
        })
        .await
    }

    async fn batch_items(
        &self,
        dealer: &DealerId,
        id: BatchId,
        state: Option<ItemState>,
        page: PageRequest,
    ) -> StoreResult<Page<BatchItem>> {
        let dealer = dealer.0.clone();
        let limit = page_limit(&page);
        let id = uuid_text(id.0);
        self.run(move |conn, _| {
            existing_batch(conn, &dealer, &id)?;
            let mut query = batch_items::table
                .filter(batch_items::batch_id.eq(&id))
                .select(ItemRow::as_select())
                .order(batch_items::position.asc())
                .limit(limit as i64 + 1)
                .into_boxed();
            if let Some(state) = state {
                query = query.filter(batch_items::state.eq(state.as_str()));
            }
            if let Some(after) = page.after {
                // The cursor is a position this store made; anything else ends the list.
                let after = after.parse::<i64>().unwrap_or(i64::MAX);
                query = query.filter(batch_items::position.gt(after));
            }
            let rows: Vec<ItemRow> = query.load(conn)?;
            into_page(
                rows,
                limit,
                |r| r.position.to_string(),
                ItemRow::into_domain,
            )
        })
        .await
    }

    async fn pending_items(
        &self,
        dealer: &DealerId,
        id: BatchId,
        limit: u32,
    ) -> StoreResult<Vec<(u32, BatchItemInput)>> {
        let dealer = dealer.0.clone();
        let id = uuid_text(id.0);
        self.run(move |conn, _| {
            existing_batch(conn, &dealer, &id)?;
            let rows: Vec<(i64, String)> = batch_items::table
                .filter(batch_items::batch_id.eq(&id))
                .filter(batch_items::state.eq(ItemState::Pending.as_str()))
                .order(batch_items::position.asc())
                .select((batch_items::position, batch_items::input))
                .limit(i64::from(limit))
                .load(conn)?;
            rows.into_iter()
                .map(|(position, input)| {
                    let bad = || corrupt(format!("batch item {id}/{position} has a bad input"));
                    let input = serde_json::from_str(&input).map_err(|_| bad())?;
                    Ok((u32::try_from(position).map_err(|_| bad())?, input))
                })
                .collect()
        })
        .await
    }

    async fn record_item(
        &self,
        dealer: &DealerId,
        id: BatchId,
        outcome: ItemOutcome,
    ) -> StoreResult<BatchCounts> {
        let dealer = dealer.0.clone();
        let id = uuid_text(id.0);
        let now = to_db_time(Utc::now());
        let text = |v: &Option<serde_json::Value>| v.as_ref().map(ToString::to_string);
        let (result, problem) = (text(&outcome.result), text(&outcome.problem));
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                existing_batch(conn, &dealer, &id)?;
                let recorded = diesel::update(
                    batch_items::table
                        .filter(batch_items::batch_id.eq(&id))
                        .filter(batch_items::position.eq(i64::from(outcome.index)))
                        .filter(batch_items::state.eq(ItemState::Pending.as_str())),
                )
                .set((
                    batch_items::state.eq(outcome.state.as_str()),
                    batch_items::result.eq(&result),
                    batch_items::problem.eq(&problem),
                    batch_items::finished_at.eq(now),
                ))
                .execute(conn)?;
                if recorded == 1 {
                    let target = batches::table.filter(batches::id.eq(&id));
                    match outcome.state {
                        ItemState::Succeeded => diesel::update(target)
                            .set(batches::succeeded.eq(batches::succeeded + 1))
                            .execute(conn)?,
                        _ => diesel::update(target)
                            .set(batches::failed.eq(batches::failed + 1))
                            .execute(conn)?,
                    };
                }
                Ok(existing_batch(conn, &dealer, &id)?.into_domain()?.counts)
            })
        })
        .await
    }

    async fn finish_batch(
        &self,
        dealer: &DealerId,
        id: BatchId,
        state: JobState,
        summary: NewEvent,
    ) -> StoreResult<bool> {
        let dealer = dealer.0.clone();
        let id = uuid_text(id.0);
        let now = to_db_time(Utc::now());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                existing_batch(conn, &dealer, &id)?;
                let ended = diesel::update(
                    batches::table
                        .filter(batches::id.eq(&id))
                        .filter(batches::finished_state.is_null()),
                )
                .set((
                    batches::finished_state.eq(state.as_str()),
                    batches::finished_at.eq(now),
                ))
                .execute(conn)?;
                if ended == 0 {
                    return Ok(false);
                }
                diesel::update(
                    batch_items::table
                        .filter(batch_items::batch_id.eq(&id))
                        .filter(batch_items::state.eq(ItemState::Pending.as_str())),
                )
                .set((
                    batch_items::state.eq(ItemState::Cancelled.as_str()),
                    batch_items::finished_at.eq(now),
                ))
                .execute(conn)?;
                insert_events(conn, &dealer, vec![summary])?;
                Ok(true)
            })
        })
        .await
    }
}
