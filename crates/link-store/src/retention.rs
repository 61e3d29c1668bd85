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
    audit_log, batch_items, batches, callback_log, connections, events, idempotency_keys,
    import_items, imports, jobs, links,
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
                History::Runs => purge_runs(conn, before, limit),
            })?;
            Ok(purged as u64)
        })
        .await
    }

    async fn table_figures(&self) -> StoreResult<Vec<TableFigures>> {
        self.run(|conn, _| {
            let estimates = live_row_estimates(conn)?;
            // One or two statements per table; the caller reads them every
            // minute or so, never per scrape. The oldest row is an index probe
            // where the purger has an age index, a scan of a table retention
            // keeps bounded elsewhere.
            macro_rules! figures {
                ($table:ident, $age:expr) => {{
                    let table = stringify!($table);
                    let oldest: Option<NaiveDateTime> =
                        $table::table.select(min($age)).first(conn)?;
                    figures!(@rows $table, table, oldest)
                }};
                (@rows $table:ident, $name:expr, $oldest:expr) => {{
                    let table = $name;
                    let rows = match estimates.get(table) {
                        Some(&n) if n >= EXACT_COUNT_BELOW => n,
                        _ => $table::table.select(count_star()).first::<i64>(conn)?,
                    };
                    TableFigures {
                        table,
                        rows: rows.max(0) as u64,
                        oldest: $oldest.map(from_db_time),
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
                figures!(imports, imports::created_at),
                figures!(batches, batches::created_at),
                // Links are not history: their count matters, and the age of
                // the oldest would be a scan of the largest table.
                figures!(@rows links, "links", None::<NaiveDateTime>),
            ])
        })
        .await
    }
}

/// Tables at least this large are not counted row by row on PostgreSQL: a
/// `count(*)` of millions of rows is seconds of scanning every minute.
const EXACT_COUNT_BELOW: i64 = 100_000;

#[derive(QueryableByName)]
struct LiveRows {
    #[diesel(sql_type = diesel::sql_types::Text)]
    relname: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n_live_tup: i64,
}

/// PostgreSQL's running count of live rows per table, kept by its statistics
/// system on every commit (autovacuum or not); SQLite has none, and counts.
fn live_row_estimates(conn: &mut DbConnection) -> Result<BTreeMap<String, i64>, Fail> {
    let DbConnection::Postgresql(pg) = conn else {
        return Ok(BTreeMap::new());
    };
    let rows: Vec<LiveRows> = diesel::sql_query(
        "SELECT relname::text AS relname, n_live_tup FROM pg_stat_user_tables \
         WHERE schemaname = current_schema()",
    )
    .load(pg)?;
    Ok(rows
        .into_iter()
        .map(|r| (r.relname, r.n_live_tup))
        .collect())
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
    purge_items_of_ended_runs(
        conn,
        limit,
        |conn| {
            imports::table
                .filter(imports::finished_at.lt(before))
                .filter(exists(
                    import_items::table.filter(import_items::import_id.eq(imports::id)),
                ))
                .order(imports::finished_at)
                .select(imports::id)
                .first(conn)
                .optional()
        },
        |conn, import, n| {
            let doomed = import_items::table
                .filter(import_items::import_id.eq(import))
                .select(import_items::seq)
                .limit(n)
                .load::<i64>(conn)?;
            diesel::delete(
                import_items::table
                    .filter(import_items::import_id.eq(import))
                    .filter(import_items::seq.eq_any(doomed)),
            )
            .execute(conn)
        },
    )
}

/// The items of batches that ended before `before`, as for imports above.
fn purge_batch_items(
    conn: &mut DbConnection,
    before: NaiveDateTime,
    limit: i64,
) -> Result<usize, Fail> {
    purge_items_of_ended_runs(
        conn,
        limit,
        |conn| {
            batches::table
                .filter(batches::finished_at.lt(before))
                .filter(exists(
                    batch_items::table.filter(batch_items::batch_id.eq(batches::id)),
                ))
                .order(batches::finished_at)
                .select(batches::id)
                .first(conn)
                .optional()
        },
        |conn, batch, n| {
            let doomed = batch_items::table
                .filter(batch_items::batch_id.eq(batch))
                .select(batch_items::position)
                .limit(n)
                .load::<i64>(conn)?;
            diesel::delete(
                batch_items::table
                    .filter(batch_items::batch_id.eq(batch))
                    .filter(batch_items::position.eq_any(doomed)),
            )
            .execute(conn)
        },
    )
}

/// Up to `limit` items of ended runs: `oldest` names the run that ended
/// first and still has items, `delete` deletes up to `n` of a run's items.
fn purge_items_of_ended_runs(
    conn: &mut DbConnection,
    limit: i64,
    oldest: impl Fn(&mut DbConnection) -> QueryResult<Option<String>>,
    delete: impl Fn(&mut DbConnection, &str, i64) -> QueryResult<usize>,
) -> Result<usize, Fail> {
    let mut purged = 0;
    while (purged as i64) < limit {
        let Some(run) = oldest(conn)? else { break };
        let deleted = delete(conn, &run, limit - purged as i64)?;
        if deleted == 0 {
            break;
        }
        purged += deleted;
    }
    Ok(purged)
}

/// Batches and imports that ended before `before`, with their job. Their
/// items go first, at most `limit` rows a call, so a run of 100,000 records
/// is never one long delete; a run and its job go once none of its items is
/// left. `imported_records` stay: later imports match against them,
/// whichever run wrote them.
fn purge_runs(conn: &mut DbConnection, before: NaiveDateTime, limit: i64) -> Result<usize, Fail> {
    let mut purged = purge_import_items(conn, before, limit)?;
    purged += purge_batch_items(conn, before, limit - purged as i64)?;
    let room = limit - purged as i64;
    if room <= 0 {
        return Ok(purged);
    }
    let mut gone: Vec<String> = batches::table
        .filter(batches::finished_at.lt(before))
        .filter(not(exists(
            batch_items::table.filter(batch_items::batch_id.eq(batches::id)),
        )))
        .order(batches::finished_at)
        .select(batches::id)
        .limit(room)
        .load(conn)?;
    let batches_gone = diesel::delete(
        batches::table
            .filter(batches::id.eq_any(&gone))
            .filter(batches::finished_at.lt(before)),
    )
    .execute(conn)?;
    let imports: Vec<String> = imports::table
        .filter(imports::finished_at.lt(before))
        .filter(not(exists(
            import_items::table.filter(import_items::import_id.eq(imports::id)),
        )))
        .order(imports::finished_at)
        .select(imports::id)
        .limit(room - batches_gone as i64)
        .load(conn)?;
    let imports_gone = diesel::delete(
        imports::table
            .filter(imports::id.eq_any(&imports))
            .filter(imports::finished_at.lt(before)),
    )
    .execute(conn)?;
    gone.extend(imports);
    // A run's job shares its id; one still queued or running (a run ended
    // by hand while its job winds down) stays for the jobs' own purge.
    diesel::delete(
        jobs::table
            .filter(jobs::id.eq_any(gone))
            .filter(jobs::finished_at.is_not_null())
            .filter(not(jobs::state.eq_any([
                JobState::Queued.as_str(),
                JobState::Running.as_str(),
            ]))),
    )
    .execute(conn)?;
    Ok(purged + batches_gone + imports_gone)
}
