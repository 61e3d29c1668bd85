//! `InboxStore` on diesel: callbacks Stages sends in, stored before they are
//! answered, once per (connection, event id), with the job that processes them
//! in the same transaction. A repeat is decided by the primary key (an insert
//! that does nothing on conflict), so two deliveries at once store one.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Nullable, Text, Timestamp};
use domain::connection::ConnectionId;
use domain::jobs::{NewJob, ProcessedCallback};
use domain::store::{InboxStore, Received, StoreError, StoreResult};
use domain::tenancy::DealerId;

use crate::audit::uuid_text;
use crate::connections::{corrupt, require_connection, to_db_time};
use crate::crypto::Cipher;
use crate::db::{per_backend, write_transaction, Columns, DbConnection, Fail};
use crate::jobs::{enqueue_all_within, enqueue_within};
use crate::prepared::kept_sql;
use crate::schema::inbound_credentials;
use crate::schema::webhook_inbox as inbox;
use crate::Store;

#[derive(Debug)]
struct NewCallbackRow {
    connection_id: String,
    dealer: String,
    event_id: String,
    payload: String,
    received_at: NaiveDateTime,
    /// When the inbound credential the callback was verified with was set.
    credential_set_at: Option<NaiveDateTime>,
}

/// One stored callback, as a filter.
macro_rules! stored_callback {
    ($dealer:expr, $connection:expr, $event:expr) => {
        inbox::table
            .filter(inbox::dealer.eq($dealer))
            .filter(inbox::connection_id.eq($connection))
            .filter(inbox::event_id.eq($event))
    };
}

/// Marks the callback processed now, within the transaction that records
/// its job's end; marking again replaces the outcome. A callback gone with
/// its connection has nothing to mark.
pub(crate) fn mark_processed(
    conn: &mut DbConnection,
    processed: &ProcessedCallback,
    now: NaiveDateTime,
) -> Result<(), Fail> {
    let connection = uuid_text(processed.connection_id.0);
    per_backend!(&mut *conn, |c| kept_sql(
        "UPDATE webhook_inbox SET outcome = ?, processed_at = ? \
         WHERE dealer = ? AND connection_id = ? AND event_id = ?"
    )
    .bind::<Text, _>(&processed.outcome)
    .bind::<Timestamp, _>(now)
    .bind::<Text, _>(&processed.dealer.0)
    .bind::<Text, _>(&connection)
    .bind::<Text, _>(&processed.event_id)
    .execute(c))?;
    Ok(())
}

/// Marks each callback of a batch of job ends processed, as
/// [`mark_processed`] does one; on PostgreSQL in one statement.
pub(crate) fn mark_all_processed(
    conn: &mut DbConnection,
    processed: &[ProcessedCallback],
    now: NaiveDateTime,
) -> Result<(), Fail> {
    match conn {
        DbConnection::Postgresql(pg) if processed.len() > 1 => {
            let mut marks = Columns::<4>::default();
            for p in processed {
                marks.push([
                    p.dealer.0.clone(),
                    uuid_text(p.connection_id.0),
                    p.event_id.clone(),
                    p.outcome.clone(),
                ]);
            }
            let [dealers, connections, events, outcomes] = &marks.0;
            kept_sql(
                "UPDATE webhook_inbox SET outcome = v.outcome, processed_at = ? \
                 FROM unnest(?, ?, ?, ?) AS v(dealer, connection_id, event_id, outcome) \
                 WHERE webhook_inbox.dealer = v.dealer \
                 AND webhook_inbox.connection_id = v.connection_id \
                 AND webhook_inbox.event_id = v.event_id",
            )
            .bind::<Timestamp, _>(now)
            .bind::<Array<Text>, _>(dealers)
            .bind::<Array<Text>, _>(connections)
            .bind::<Array<Text>, _>(events)
            .bind::<Array<Text>, _>(outcomes)
            .execute(pg)?;
            Ok(())
        }
        _ => processed
            .iter()
            .try_for_each(|p| mark_processed(conn, p, now)),
    }
}

/// A callback to store, and the job that applies it.
pub(crate) struct Offered {
    row: NewCallbackRow,
    job: NewJob,
}

/// Stores each callback of `batch` not stored before, with its job. All in
/// one transaction; when that is refused (a connection deleted meanwhile,
/// say), each goes alone, so one refusal is its own.
fn store_callbacks(
    conn: &mut DbConnection,
    _: &Cipher,
    batch: &[Offered],
) -> Vec<StoreResult<Received>> {
    if batch.len() > 1 {
        let together = write_transaction(conn, |conn| {
            if let DbConnection::Postgresql(pg) = conn {
                let stored = insert_all(pg, batch)?;
                return answer_and_enqueue(conn, batch, stored);
            }
            batch
                .iter()
                .map(|r| store_callback(conn, r))
                .collect::<Result<Vec<Received>, Fail>>()
        });
        if let Ok(stored) = together {
            return stored.into_iter().map(Ok).collect();
        }
    }
    batch
        .iter()
        .map(|r| {
            write_transaction(conn, |conn| store_callback(conn, r)).map_err(Fail::into_store_error)
        })
        .collect()
}

/// Stores one callback and its job, unless the event was stored before or
/// the credential it was verified with is replaced; `NotFound` when the
/// dealer has no such connection.
fn store_callback(conn: &mut DbConnection, r: &Offered) -> Result<Received, Fail> {
    // A concurrent receive of the same event waits here for the first to
    // commit, then inserts nothing; so does a repeat in the same batch. The
    // dealer's connection and the credential are checked by the insert
    // itself: a statement of their own was one more round trip for every
    // callback.
    let row = &r.row;
    let inserted = per_backend!(&mut *conn, |c| kept_sql(
        "INSERT INTO webhook_inbox (connection_id, dealer, event_id, payload, received_at) \
         SELECT ?, ?, ?, ?, ? WHERE EXISTS \
         (SELECT 1 FROM connections WHERE connections.id = ? AND connections.dealer = ?) \
         AND (? IS NULL OR EXISTS (SELECT 1 FROM inbound_credentials AS i \
         WHERE i.connection_id = ? AND i.rotated_at = ?)) \
         ON CONFLICT DO NOTHING"
    )
    .bind::<Text, _>(&row.connection_id)
    .bind::<Text, _>(&row.dealer)
    .bind::<Text, _>(&row.event_id)
    .bind::<Text, _>(&row.payload)
    .bind::<Timestamp, _>(row.received_at)
    .bind::<Text, _>(&row.connection_id)
    .bind::<Text, _>(&row.dealer)
    .bind::<Nullable<Timestamp>, _>(row.credential_set_at)
    .bind::<Text, _>(&row.connection_id)
    .bind::<Nullable<Timestamp>, _>(row.credential_set_at)
    .execute(c))?;
    if inserted == 0 {
        return not_stored(conn, row);
    }
    enqueue_within(conn, r.job.clone())?;
    Ok(Received::New)
}

/// Why the insert of `row` stored nothing: a repeat, unless the connection
/// is not the dealer's (`NotFound`) or its credential was rotated since the
/// caller read it (both rare).
fn not_stored(conn: &mut DbConnection, row: &NewCallbackRow) -> Result<Received, Fail> {
    require_connection(conn, &row.dealer, &row.connection_id)?;
    if let Some(set_at) = row.credential_set_at {
        let current: i64 = inbound_credentials::table
            .filter(inbound_credentials::connection_id.eq(&row.connection_id))
            .filter(inbound_credentials::rotated_at.eq(set_at))
            .count()
            .get_result(conn)?;
        if current == 0 {
            return Ok(Received::CredentialReplaced);
        }
    }
    Ok(Received::Repeat)
}

/// A callback stored by [`insert_all`].
#[derive(QueryableByName, PartialEq, Eq, Hash)]
struct StoredKey {
    #[diesel(sql_type = Text)]
    connection_id: String,
    #[diesel(sql_type = Text)]
    event_id: String,
}

/// The inbox rows of `batch`, checked as [`store_callback`] checks one, in
/// one statement (PostgreSQL); the keys of those stored. With
/// [`answer_and_enqueue`], a batch is two statements: one by one, each
/// callback took two, and they were most of what taking callbacks in cost
/// PostgreSQL (`pg_stat_statements`). The rows go in in the batch's order,
/// so of one event sent twice the first is stored and the second is a
/// repeat.
fn insert_all(pg: &mut PgConnection, batch: &[Offered]) -> QueryResult<HashSet<StoredKey>> {
    let mut texts = Columns::<4>::default();
    for r in batch {
        texts.push([
            r.row.connection_id.clone(),
            r.row.dealer.clone(),
            r.row.event_id.clone(),
            r.row.payload.clone(),
        ]);
    }
    let [connections, dealers, events, payloads] = &texts.0;
    let received_at: Vec<NaiveDateTime> = batch.iter().map(|r| r.row.received_at).collect();
    let set_at: Vec<Option<NaiveDateTime>> =
        batch.iter().map(|r| r.row.credential_set_at).collect();
    let stored: Vec<StoredKey> = kept_sql(
        "INSERT INTO webhook_inbox (connection_id, dealer, event_id, payload, received_at) \
         SELECT v.connection_id, v.dealer, v.event_id, v.payload, v.received_at \
         FROM unnest(?, ?, ?, ?, ?, ?) WITH ORDINALITY \
         AS v(connection_id, dealer, event_id, payload, received_at, set_at, n) \
         WHERE EXISTS (SELECT 1 FROM connections \
         WHERE connections.id = v.connection_id AND connections.dealer = v.dealer) \
         AND (v.set_at IS NULL OR EXISTS (SELECT 1 FROM inbound_credentials AS i \
         WHERE i.connection_id = v.connection_id AND i.rotated_at = v.set_at)) \
         ORDER BY v.n \
         ON CONFLICT DO NOTHING RETURNING connection_id, event_id",
    )
    .bind::<Array<Text>, _>(connections)
    .bind::<Array<Text>, _>(dealers)
    .bind::<Array<Text>, _>(events)
    .bind::<Array<Text>, _>(payloads)
    .bind::<Array<Timestamp>, _>(&received_at)
    .bind::<Array<Nullable<Timestamp>>, _>(&set_at)
    .load(pg)?;
    Ok(stored.into_iter().collect())
}

/// Each callback of `batch` answered by whether [`insert_all`] stored it
/// (the first of a key stored is new; any other is [`not_stored`]), and the
/// jobs of the new ones enqueued together.
fn answer_and_enqueue(
    conn: &mut DbConnection,
    batch: &[Offered],
    mut stored: HashSet<StoredKey>,
) -> Result<Vec<Received>, Fail> {
    let mut answers = Vec::with_capacity(batch.len());
    let mut jobs = Vec::new();
    for r in batch {
        let key = StoredKey {
            connection_id: r.row.connection_id.clone(),
            event_id: r.row.event_id.clone(),
        };
        if stored.remove(&key) {
            answers.push(Received::New);
            jobs.push(r.job.clone());
        } else {
            answers.push(not_stored(conn, &r.row)?);
        }
    }
    enqueue_all_within(conn, jobs)?;
    Ok(answers)
}

#[async_trait]
impl InboxStore for Store {
    /// `NotFound` when the dealer has no such connection; `Conflict` when the
    /// job belongs to another dealer.
    async fn receive_callback(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        event_id: &str,
        payload: &serde_json::Value,
        job: NewJob,
        credential_set_at: Option<chrono::DateTime<Utc>>,
    ) -> StoreResult<Received> {
        if job.dealer != *dealer {
            return Err(StoreError::Conflict(
                "the job of a callback must belong to the callback's dealer".into(),
            ));
        }
        let offered = Offered {
            row: NewCallbackRow {
                connection_id: uuid_text(connection_id.0),
                dealer: dealer.0.clone(),
                event_id: event_id.to_owned(),
                payload: payload.to_string(),
                received_at: to_db_time(Utc::now()),
                credential_set_at: credential_set_at.map(to_db_time),
            },
            job,
        };
        // Gathered: the callbacks arriving while one transaction commits are
        // stored by the next, one commit for all of them.
        self.gathered(
            |inner| &inner.callbacks,
            |inner| &inner.pool,
            offered,
            store_callbacks,
        )
        .await
    }

    async fn callback(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        event_id: &str,
    ) -> StoreResult<serde_json::Value> {
        let dealer = dealer.0.clone();
        let connection = uuid_text(connection_id.0);
        let event_id = event_id.to_owned();
        self.run(move |conn, _| {
            let payload: String = stored_callback!(&dealer, &connection, &event_id)
                .select(inbox::payload)
                .first(conn)?;
            serde_json::from_str(&payload).map_err(|_| {
                corrupt(format!(
                    "callback {event_id} of connection {connection} has bad JSON"
                ))
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use domain::jobs::JobId;

    use super::*;
    use crate::crypto::SecretKey;

    const CONNECTION: &str = "0193f6c2-0000-7000-8000-000000000001";

    fn offered(dealer: &str, event: &str, payload: &str, set_at: Option<NaiveDateTime>) -> Offered {
        let job = NewJob {
            id: JobId(uuid::Uuid::now_v7()),
            dealer: DealerId(dealer.into()),
            kind: "stages_callback".into(),
            payload: serde_json::json!({ "event_id": event }),
            max_attempts: 8,
            run_at: Utc::now(),
            unique_key: None,
            serial_key: Some(format!("site:{event}")),
            created_by: "test".into(),
        };
        Offered {
            row: NewCallbackRow {
                connection_id: CONNECTION.into(),
                dealer: dealer.into(),
                event_id: event.into(),
                payload: payload.into(),
                received_at: to_db_time(Utc::now()),
                credential_set_at: set_at,
            },
            job,
        }
    }

    #[derive(QueryableByName, Debug, PartialEq)]
    struct Stored {
        #[diesel(sql_type = Text)]
        event_id: String,
        #[diesel(sql_type = Text)]
        payload: String,
    }

    #[derive(QueryableByName, Debug, PartialEq)]
    struct Queued {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = Text)]
        state: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        attempts: i64,
        #[diesel(sql_type = Nullable<Text>)]
        serial_key: Option<String>,
    }

    /// A batch of callbacks gets the answers each would get alone, in its
    /// order: stored with its job, a repeat (in the batch or of one stored
    /// before) stores nothing, a replaced credential nothing; a callback to
    /// another dealer's connection is refused alone. On PostgreSQL the batch
    /// goes in at once (`insert_all`).
    fn a_batch_is_answered_as_each_alone(mut conn: DbConnection) {
        conn.batch_execute(&format!(
            "INSERT INTO connections (id, dealer, name, name_key, provider, endpoint, \
             auth_mode, auto_sync, status, version, created_at, updated_at) VALUES \
             ('{CONNECTION}', 'd1', 'n', 'n', 'stages', 'http://127.0.0.1:1', 'basic', \
             TRUE, 'active', 1, '2026-12-07 08:00:00', '2026-12-07 08:00:00')"
        ))
        .unwrap();
        let cipher = Cipher::new(&SecretKey::generate());
        let set_at = to_db_time(Utc::now());
        let batch = [
            offered("d1", "e1", "first", None),
            offered("d1", "e2", "second", None),
            offered("d1", "e1", "again", None),
            offered("d1", "e3", "rotated", Some(set_at)),
            offered("d1", "e4", "fourth", None),
        ];
        let answers = store_callbacks(&mut conn, &cipher, &batch);
        use Received::*;
        assert_eq!(
            answers,
            [
                Ok(New),
                Ok(New),
                Ok(Repeat),
                Ok(CredentialReplaced),
                Ok(New)
            ]
        );
        let next = [
            offered("d1", "e2", "late", None),
            offered("d1", "e5", "fifth", None),
        ];
        assert_eq!(
            store_callbacks(&mut conn, &cipher, &next),
            [Ok(Repeat), Ok(New)]
        );
        let refused = [
            offered("d1", "e6", "sixth", None),
            offered("d2", "e7", "not d2's", None),
        ];
        assert_eq!(
            store_callbacks(&mut conn, &cipher, &refused),
            [Ok(New), Err(StoreError::NotFound)]
        );

        let stored: Vec<Stored> =
            diesel::sql_query("SELECT event_id, payload FROM webhook_inbox ORDER BY event_id")
                .load(&mut conn)
                .unwrap();
        let stored: Vec<(&str, &str)> = stored
            .iter()
            .map(|s| (s.event_id.as_str(), s.payload.as_str()))
            .collect();
        assert_eq!(
            stored,
            [
                ("e1", "first"),
                ("e2", "second"),
                ("e4", "fourth"),
                ("e5", "fifth"),
                ("e6", "sixth")
            ]
        );
        let mut expected: Vec<Queued> = [&batch[0], &batch[1], &batch[4], &next[1], &refused[0]]
            .iter()
            .map(|o| Queued {
                id: uuid_text(o.job.id.0),
                state: "queued".into(),
                attempts: 0,
                serial_key: o.job.serial_key.clone(),
            })
            .collect();
        expected.sort_by(|a, b| a.id.cmp(&b.id));
        let queued: Vec<Queued> =
            diesel::sql_query("SELECT id, state, attempts, serial_key FROM jobs ORDER BY id")
                .load(&mut conn)
                .unwrap();
        assert_eq!(
            queued, expected,
            "each callback stored has its job, no other"
        );
    }

    #[test]
    fn a_batch_is_answered_as_each_alone_on_sqlite() {
        a_batch_is_answered_as_each_alone(DbConnection::Sqlite(crate::scratch_sqlite::open()));
    }

    #[test]
    fn a_batch_is_answered_as_each_alone_on_postgres() {
        let (_schema, pg) = crate::scratch_postgres::ScratchSchema::open();
        a_batch_is_answered_as_each_alone(DbConnection::Postgresql(pg));
    }
}
