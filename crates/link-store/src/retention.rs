//! `RetentionStore` on diesel: bounded growth (B15). Each call deletes one
//! batch in one short write transaction (on SQLite it takes its turn with the
//! other writers): the keys of the oldest rows, found by an indexed age column
//! (migration 000016), then a delete of those keys that checks the age again,
//! so a row changed in between (a job retried) stays. Every row something
//! still reads is left alone.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::dsl::{count_star, exists, min, not};
use diesel::prelude::*;
use domain::events::WebhookDelivery;
use domain::jobs::{JobKind, JobState};
use domain::store::{History, RetentionStore, StoreResult, TableFigures};

use crate::connections::{from_db_time, to_db_time};
use crate::db::{write_transaction, DbConnection, Fail};
use crate::schema::{
    audit_log, batches, callback_log, connections, events, idempotency_keys, import_items, imports,
    jobs, links,
};
use crate::Store;

/// An event and its deliveries are written in one transaction, their times a
/// moment apart: events this much younger than the oldest pending delivery
/// stay too.
const DELIVERY_MARGIN: chrono::Duration = chrono::Duration::hours(1);

#[async_trait]
impl RetentionStore for Store {
    async fn purge_history(
        &self,
        history: History,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64> {
        let before = to_db_time(before);
        let limit = i64::from(limit.max(1));
        self.run(move |conn, _| {
            let purged = write_transaction(conn, |conn| match history {
                History::Events => purge_events(conn, before, limit),
                History::Audit => {
                    let doomed: Vec<String> = audit_log::table
                        .filter(audit_log::at.lt(before))
                        .select(audit_log::id)
                        .limit(limit)
                        .load(conn)?;
                    Ok(diesel::delete(
                        audit_log::table
                            .filter(audit_log::id.eq_any(doomed))
                            .filter(audit_log::at.lt(before)),
                    )
                    .execute(conn)?)
                }
                History::CallbackLog => {
                    let doomed: Vec<String> = callback_log::table
                        .filter(callback_log::received_at.lt(before))
                        .select(callback_log::id)
                        .limit(limit)
                        .load(conn)?;
                    Ok(diesel::delete(
                        callback_log::table
                            .filter(callback_log::id.eq_any(doomed))
                            .filter(callback_log::received_at.lt(before)),
                    )
                    .execute(conn)?)
                }
                History::IdempotencyKeys => purge_idempotency_keys(conn, before, limit),
                History::FinishedJobs => purge_jobs(
                    conn,
                    &[JobState::Succeeded, JobState::Cancelled],
                    before,
                    limit,
                ),
                History::DeadJobs => {
                    purge_jobs(conn, &[JobState::Dead, JobState::Failed], before, limit)
                }
                History::ImportItems => purge_import_items(conn, before, limit),
            })?;
            Ok(purged as u64)
        })
        .await
    }

    async fn table_figures(&self) -> StoreResult<Vec<TableFigures>> {
        self.run(|conn, _| {
            // One statement per table; the caller reads them every minute or
            // so, never per scrape.
            macro_rules! figures {
                ($table:ident, $age:expr) => {{
                    let (rows, oldest): (i64, Option<NaiveDateTime>) = $table::table
                        .select((count_star(), min($age)))
                        .first(conn)?;
                    TableFigures {
                        table: stringify!($table),
                        rows: rows.max(0) as u64,
                        oldest: oldest.map(from_db_time),
                    }
                }};
            }
            Ok(vec![
                figures!(events, events::created_at),
                figures!(audit_log, audit_log::at),
                figures!(callback_log, callback_log::received_at),
                figures!(idempotency_keys, idempotency_keys::created_at),
                figures!(jobs, jobs::created_at),
                figures!(import_items, import_items::created_at),
                figures!(links, links::created_at),
            ])
        })
        .await
    }
}

/// Events before `before`, except those a queued or running delivery will
/// still read (a retried delivery would otherwise fail on a missing event).
fn purge_events(conn: &mut DbConnection, before: NaiveDateTime, limit: i64) -> Result<usize, Fail> {
    let pending: Option<NaiveDateTime> = jobs::table
        .filter(jobs::state.eq_any([JobState::Queued.as_str(), JobState::Running.as_str()]))
        .filter(jobs::kind.eq(WebhookDelivery::KIND))
        .select(min(jobs::created_at))
        .first(conn)?;
    let before = pending.map_or(before, |p| before.min(p - DELIVERY_MARGIN));
    let doomed: Vec<i64> = events::table
        .filter(events::created_at.lt(before))
        .select(events::seq)
        .limit(limit)
        .load(conn)?;
    Ok(diesel::delete(
        events::table
            .filter(events::seq.eq_any(doomed))
            .filter(events::created_at.lt(before)),
    )
    .execute(conn)?)
}

/// The key is three columns, which an `IN (subquery)` cannot name on both
/// backends: the oldest keys are read, then deleted per dealer and user.
fn purge_idempotency_keys(
    conn: &mut DbConnection,
    before: NaiveDateTime,
    limit: i64,
) -> Result<usize, Fail> {
    use idempotency_keys as keys;
    let doomed: Vec<(String, String, String)> = keys::table
        .filter(keys::created_at.lt(before))
        .order(keys::created_at)
        .select((keys::dealer, keys::user_id, keys::idem_key))
        .limit(limit)
        .load(conn)?;
    let mut by_caller: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (dealer, user, key) in doomed {
        by_caller.entry((dealer, user)).or_default().push(key);
    }
    let mut purged = 0;
    for ((dealer, user), names) in by_caller {
        purged += diesel::delete(
            keys::table
                .filter(keys::dealer.eq(dealer))
                .filter(keys::user_id.eq(user))
                .filter(keys::idem_key.eq_any(names))
                .filter(keys::created_at.lt(before)),
        )
        .execute(conn)?;
    }
    Ok(purged)
}

/// Jobs in `states` that ended before `before`. A batch's, an import's or a
/// connection's migration job stays: they read their state from it, and a
/// missing one is a broken reference. The state and the end are checked again
/// by the delete itself, so a job retried meanwhile (queued again) stays.
fn purge_jobs(
    conn: &mut DbConnection,
    states: &[JobState],
    before: NaiveDateTime,
    limit: i64,
) -> Result<usize, Fail> {
    let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
    let doomed = jobs::table
        .filter(jobs::state.eq_any(states.clone()))
        .filter(jobs::finished_at.lt(before))
        .filter(not(exists(batches::table.filter(batches::id.eq(jobs::id)))))
        .filter(not(exists(imports::table.filter(imports::id.eq(jobs::id)))))
        .filter(not(exists(
            connections::table.filter(connections::migration_job_id.eq(jobs::id.nullable())),
        )))
        .select(jobs::id)
        .limit(limit)
        .load::<String>(conn)?;
    Ok(diesel::delete(
        jobs::table
            .filter(jobs::id.eq_any(doomed))
            .filter(jobs::state.eq_any(states))
            .filter(jobs::finished_at.lt(before)),
    )
    .execute(conn)?)
}

/// The items of imports that ended before `before`, oldest import first, up
/// to `limit` over as many imports as it takes. An import still running has
/// no end, so its items (which a resumed run reads) stay.
fn purge_import_items(
    conn: &mut DbConnection,
    before: NaiveDateTime,
    limit: i64,
) -> Result<usize, Fail> {
    let mut purged = 0;
    while (purged as i64) < limit {
        let ended: Option<String> = imports::table
            .filter(imports::finished_at.lt(before))
            .filter(exists(
                import_items::table.filter(import_items::import_id.eq(imports::id)),
            ))
            .order(imports::finished_at)
            .select(imports::id)
            .first(conn)
            .optional()?;
        let Some(import) = ended else { break };
        let doomed = import_items::table
            .filter(import_items::import_id.eq(&import))
            .select(import_items::seq)
            .limit(limit - purged as i64)
            .load::<i64>(conn)?;
        let deleted = diesel::delete(
            import_items::table
                .filter(import_items::import_id.eq(&import))
                .filter(import_items::seq.eq_any(doomed)),
        )
        .execute(conn)?;
        if deleted == 0 {
            break;
        }
        purged += deleted;
    }
    Ok(purged)
}
