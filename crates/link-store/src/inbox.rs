//! `InboxStore` on diesel: callbacks Stages sends in, stored before they are
//! answered, once per (connection, event id), with the job that processes them
//! in the same transaction. A repeat is decided by the primary key (an insert
//! that does nothing on conflict), so two deliveries at once store one.

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
use crate::jobs::enqueue_within;
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
        // A repeat, unless the connection is not the dealer's or its
        // credential was rotated since the caller read it (both rare).
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
        return Ok(Received::Repeat);
    }
    enqueue_within(conn, r.job.clone())?;
    Ok(Received::New)
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
