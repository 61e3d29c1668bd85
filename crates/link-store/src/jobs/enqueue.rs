//! Enqueueing: a new job, or, while a job of its unique key is queued,
//! that job (coalescing, see the `jobs` module).

use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamp};
use domain::jobs::{Job, NewJob};
use domain::store::StoreError;

use super::{JobRow, WRITE_ATTEMPTS};
use crate::connections::to_db_time;
use crate::db::{per_backend, Columns, DbConnection, Fail};
use crate::prepared::kept_sql;
use crate::schema::jobs;

/// The insert of a job, which does nothing while a job of its unique key
/// is queued (the partial unique index on queued jobs' keys).
macro_rules! insert_job_sql {
    () => {
        "INSERT INTO jobs (id, dealer, kind, payload, state, attempts, max_attempts, run_at, \
         lease_owner, lease_expires_at, progress_done, progress_total, summary, last_error, \
         unique_key, serial_key, cancel_requested, created_by, created_at, started_at, \
         finished_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT DO NOTHING"
    };
}

/// Binds `$row`'s values to the places of [`insert_job_sql`].
macro_rules! bind_job_row {
    ($query:expr, $row:expr) => {
        $query
            .bind::<Text, _>(&$row.id)
            .bind::<Text, _>(&$row.dealer)
            .bind::<Text, _>(&$row.kind)
            .bind::<Text, _>(&$row.payload)
            .bind::<Text, _>(&$row.state)
            .bind::<BigInt, _>($row.attempts)
            .bind::<BigInt, _>($row.max_attempts)
            .bind::<Timestamp, _>($row.run_at)
            .bind::<Nullable<Text>, _>(&$row.lease_owner)
            .bind::<Nullable<Timestamp>, _>($row.lease_expires_at)
            .bind::<BigInt, _>($row.progress_done)
            .bind::<Nullable<BigInt>, _>($row.progress_total)
            .bind::<Nullable<Text>, _>(&$row.summary)
            .bind::<Nullable<Text>, _>(&$row.last_error)
            .bind::<Nullable<Text>, _>(&$row.unique_key)
            .bind::<Nullable<Text>, _>(&$row.serial_key)
            .bind::<Bool, _>($row.cancel_requested)
            .bind::<Text, _>(&$row.created_by)
            .bind::<Timestamp, _>($row.created_at)
            .bind::<Nullable<Timestamp>, _>($row.started_at)
            .bind::<Nullable<Timestamp>, _>($row.finished_at)
    };
}

/// The queued job of a dealer's key; see [`QUEUED_WITH_KEY`].
macro_rules! queued_with_key_sql {
    () => {
        "SELECT * FROM jobs WHERE dealer = ? AND unique_key = ? AND state = 'queued'"
    };
}

/// PostgreSQL's enqueue in one statement: the insert, or else the queued
/// job of the key, locked as [`queued_with_key`] locks it. An edit that
/// coalesces into a queued job (most edits of a burst) made the two in two
/// round trips. The read sees the rows committed before the statement
/// began: a job of the key committed while the insert waited for it is
/// found at the next attempt.
const INSERT_OR_QUEUED: &str = concat!(
    "WITH new AS (",
    insert_job_sql!(),
    " RETURNING *), queued AS (",
    queued_with_key_sql!(),
    " AND NOT EXISTS (SELECT 1 FROM new) FOR SHARE OF jobs) \
     SELECT * FROM new UNION ALL SELECT * FROM queued"
);

/// The job `row` made, or the queued job of its key, if either.
fn insert_or_queued(conn: &mut DbConnection, row: &JobRow) -> QueryResult<Option<JobRow>> {
    match conn {
        DbConnection::Postgresql(pg) => bind_job_row!(kept_sql(INSERT_OR_QUEUED), row)
            .bind::<Text, _>(&row.dealer)
            .bind::<Nullable<Text>, _>(&row.unique_key)
            .get_result::<JobRow>(pg)
            .optional(),
        DbConnection::Sqlite(sqlite) => {
            if bind_job_row!(kept_sql(insert_job_sql!()), row).execute(sqlite)? == 1 {
                return Ok(Some(row.clone()));
            }
            match &row.unique_key {
                Some(key) => queued_with_key(conn, &row.dealer, key),
                None => Ok(None),
            }
        }
    }
}

/// The queued job of a dealer's key. `'queued'` is written in, not bound, so
/// that a plan made once may use the partial unique index of queued keys.
/// With the state bound, SQLite prepared the statement again at every run,
/// to see whether the value bound made a partial index usable: 6 % of the
/// service's CPU in an Auto Sync run (`perf record`, under
/// `sqlite3Reprepare`), inside the edit's write lock.
pub(super) const QUEUED_WITH_KEY: &str = queued_with_key_sql!();

/// The queued job of `key`, if any.
///
/// On PostgreSQL the job is locked (`FOR SHARE`) until the caller's
/// transaction ends. An edit coalesces into the queued job and commits its
/// change after this; a claim in between (`SKIP LOCKED`) would otherwise
/// start the job, read the record before the edit committed, and leave the
/// edit with no job to push it. SQLite has one writer, so no claim can
/// come in between.
pub(super) fn queued_with_key(
    conn: &mut DbConnection,
    dealer: &str,
    key: &str,
) -> QueryResult<Option<JobRow>> {
    let sql = match conn {
        DbConnection::Postgresql(_) => concat!(queued_with_key_sql!(), " FOR SHARE"),
        DbConnection::Sqlite(_) => QUEUED_WITH_KEY,
    };
    per_backend!(conn, |c| kept_sql(sql)
        .bind::<Text, _>(dealer)
        .bind::<Text, _>(key)
        .get_result::<JobRow>(c)
        .optional())
}

/// Enqueues on `conn`, inside whatever transaction the caller holds: the
/// outbox of a change (Auto Sync pushes, webhook deliveries, callbacks).
pub(crate) fn enqueue_within(conn: &mut DbConnection, job: NewJob) -> Result<Job, Fail> {
    let row = JobRow::new(job, to_db_time(Utc::now()));
    enqueue_blocking(conn, row)?.into_domain()
}

/// Enqueues `jobs`, within the caller's transaction. On PostgreSQL, when
/// none has a unique key (none can coalesce), in one statement: enqueued
/// one by one, each was a statement of its own, most of what storing a
/// Stages callback cost there. Otherwise one by one ([`enqueue_within`]).
pub(crate) fn enqueue_all_within(conn: &mut DbConnection, jobs: Vec<NewJob>) -> Result<(), Fail> {
    match conn {
        DbConnection::Postgresql(pg)
            if jobs.len() > 1 && jobs.iter().all(|j| j.unique_key.is_none()) =>
        {
            let now = to_db_time(Utc::now());
            let rows: Vec<JobRow> = jobs.into_iter().map(|j| JobRow::new(j, now)).collect();
            let mut texts = Columns::<5>::default();
            for r in &rows {
                texts.push([
                    r.id.clone(),
                    r.dealer.clone(),
                    r.kind.clone(),
                    r.payload.clone(),
                    r.created_by.clone(),
                ]);
            }
            let [ids, dealers, kinds, payloads, created_by] = &texts.0;
            let max_attempts: Vec<i64> = rows.iter().map(|r| r.max_attempts).collect();
            let run_at: Vec<NaiveDateTime> = rows.iter().map(|r| r.run_at).collect();
            let serial_keys: Vec<Option<&str>> =
                rows.iter().map(|r| r.serial_key.as_deref()).collect();
            // As `JobRow::new` makes a job: queued, never run.
            kept_sql(
                "INSERT INTO jobs (id, dealer, kind, payload, state, attempts, max_attempts, \
                 run_at, progress_done, serial_key, cancel_requested, created_by, created_at) \
                 SELECT v.id, v.dealer, v.kind, v.payload, 'queued', 0, v.max_attempts, \
                 v.run_at, 0, v.serial_key, FALSE, v.created_by, ? \
                 FROM unnest(?, ?, ?, ?, ?, ?, ?, ?) \
                 AS v(id, dealer, kind, payload, created_by, max_attempts, run_at, serial_key)",
            )
            .bind::<Timestamp, _>(now)
            .bind::<Array<Text>, _>(ids)
            .bind::<Array<Text>, _>(dealers)
            .bind::<Array<Text>, _>(kinds)
            .bind::<Array<Text>, _>(payloads)
            .bind::<Array<Text>, _>(created_by)
            .bind::<Array<BigInt>, _>(&max_attempts)
            .bind::<Array<Timestamp>, _>(&run_at)
            .bind::<Array<Nullable<Text>>, _>(&serial_keys)
            .execute(pg)?;
            Ok(())
        }
        _ => jobs
            .into_iter()
            .try_for_each(|job| enqueue_within(conn, job).map(drop)),
    }
}

pub(super) fn enqueue_blocking(conn: &mut DbConnection, row: JobRow) -> Result<JobRow, Fail> {
    for _ in 0..WRITE_ATTEMPTS {
        if let Some(found) = insert_or_queued(conn, &row)? {
            return Ok(found);
        }
        // An enqueue repeated with the same id gets the job it made.
        let same_id = jobs::table
            .filter(jobs::id.eq(&row.id))
            .select(JobRow::as_select())
            .first(conn)
            .optional()?;
        match same_id {
            Some(existing) if existing.dealer == row.dealer => return Ok(existing),
            Some(_) => {
                return Err(StoreError::Conflict(format!("job {} already exists", row.id)).into())
            }
            // The queued job of the key was claimed in between: insert again.
            None => {}
        }
    }
    Err(StoreError::Conflict(format!(
        "the queued job with key '{}' kept changing; try again",
        row.unique_key.unwrap_or_default()
    ))
    .into())
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::result::Error as DieselError;
    use domain::jobs::JobId;
    use domain::tenancy::DealerId;

    use super::*;
    use crate::scratch_postgres::ScratchSchema;

    fn keyed(key: Option<&str>) -> JobRow {
        let job = NewJob {
            id: JobId(uuid::Uuid::now_v7()),
            dealer: DealerId("d1".into()),
            kind: "auto_sync_push".into(),
            payload: serde_json::json!({}),
            max_attempts: 5,
            run_at: Utc::now(),
            unique_key: key.map(str::to_owned),
            serial_key: None,
            created_by: "test".into(),
        };
        JobRow::new(job, to_db_time(Utc::now()))
    }

    /// On PostgreSQL an enqueue that coalesces finds the queued job and
    /// locks it in the statement that tried the insert: a claim cannot take
    /// the job until the enqueue's transaction ends.
    #[test]
    fn on_postgresql_a_coalescing_enqueue_is_one_statement_that_locks_the_queued_job() {
        let (schema, pg) = ScratchSchema::open();
        let mut other = PgConnection::establish(schema.url()).unwrap();
        let mut conn = DbConnection::Postgresql(pg);
        let first = enqueue_blocking(&mut conn, keyed(Some("k1"))).unwrap();
        conn.batch_execute("BEGIN").unwrap();
        let again = enqueue_blocking(&mut conn, keyed(Some("k1"))).unwrap();
        assert_eq!(again.id, first.id, "coalesced into the queued job");
        let claim = diesel::sql_query(format!(
            "SELECT id FROM jobs WHERE id = '{}' FOR UPDATE NOWAIT",
            first.id
        ))
        .execute(&mut other);
        let locked = matches!(
            &claim,
            Err(DieselError::DatabaseError(_, info)) if info.message().contains("could not obtain lock")
        );
        assert!(locked, "the queued job is not locked: {claim:?}");
        conn.batch_execute("COMMIT").unwrap();
        let DbConnection::Postgresql(pg) = &mut conn else {
            unreachable!("opened on PostgreSQL")
        };
        let prepared: i64 = diesel::dsl::sql::<BigInt>(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'WITH new AS%'",
        )
        .get_result(pg)
        .unwrap();
        assert_eq!(prepared, 1, "one kept statement");
        let count =
            |other: &mut PgConnection| -> i64 { jobs::table.count().get_result(other).unwrap() };
        assert_eq!(count(&mut other), 1);
        // No key never coalesces; the same row again gets the job it made.
        let unkeyed = keyed(None);
        let made = enqueue_blocking(&mut conn, unkeyed.clone()).unwrap();
        assert_eq!(made.id, unkeyed.id);
        assert_eq!(enqueue_blocking(&mut conn, unkeyed).unwrap().id, made.id);
        assert_eq!(count(&mut other), 2);
    }
}
