//! `EventStore` on diesel: the change feed. Events are written by
//! `insert_events` inside the transaction of the change they describe, with
//! one `webhook_delivery` job per subscription that wants each (outbox).
//! Readers page by `seq`, so seqs must become visible in order: SQLite has one
//! writer at a time; on PostgreSQL event writers take a per-dealer advisory
//! lock held until commit, so no seq commits after a larger one of its dealer.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};
use domain::connection::ConnectionId;
use domain::events::{Event, NewEvent, WebhookDelivery};
use domain::store::{EventStore, StoreError, StoreResult};
use domain::tenancy::DealerId;

use crate::audit::{parse_uuid, uuid_text};
use crate::connections::{corrupt, from_db_time, to_db_time};
use crate::db::{insert_rows, write_transaction, DbConnection, Fail};
use crate::jobs::enqueue_within;
use crate::schema::events;
use crate::webhooks::active_subscriptions;
use crate::{Store, MAX_PAGE_SIZE};

/// The first key of the feed's advisory locks ("evnt"); the second is a hash
/// of the dealer. Two-key locks never meet the one-key migration lock.
const FEED_LOCK_CLASS: i32 = 0x6576_6e74;

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = events)]
struct EventRow {
    seq: i64,
    id: String,
    dealer: String,
    event_type: String,
    subject_kind: String,
    subject_id: String,
    connection_id: Option<String>,
    data: String,
    created_at: NaiveDateTime,
}

/// The seq is the database's to give. A missing connection is NULL rather
/// than DEFAULT (see `insert_rows!`).
#[derive(Debug, Insertable)]
#[diesel(table_name = events, treat_none_as_default_value = false)]
struct NewEventRow {
    id: String,
    dealer: String,
    event_type: String,
    subject_kind: String,
    subject_id: String,
    connection_id: Option<String>,
    data: String,
    created_at: NaiveDateTime,
}

impl NewEventRow {
    fn new(dealer: &str, id: uuid::Uuid, event: NewEvent, now: DateTime<Utc>) -> Self {
        Self {
            id: uuid_text(id),
            dealer: dealer.to_owned(),
            event_type: event.event_type,
            subject_kind: event.subject_kind,
            subject_id: event.subject_id,
            connection_id: event.connection_id.map(|c| uuid_text(c.0)),
            data: event.data.to_string(),
            created_at: to_db_time(now),
        }
    }
}

impl EventRow {
    fn into_domain(self) -> Result<Event, Fail> {
        let data = serde_json::from_str(&self.data)
            .map_err(|_| corrupt(format!("event {} has bad JSON", self.id)))?;
        Ok(Event {
            seq: self.seq,
            id: parse_uuid(&self.id, "event")?,
            connection_id: self
                .connection_id
                .as_deref()
                .map(|c| parse_uuid(c, "connection").map(ConnectionId))
                .transpose()?,
            dealer: DealerId(self.dealer),
            event_type: self.event_type,
            subject_kind: self.subject_kind,
            subject_id: self.subject_id,
            data,
            created_at: from_db_time(self.created_at),
        })
    }
}

/// Holds the dealer's feed until the transaction ends (PostgreSQL): the seqs
/// taken after this commit after those of every earlier holder.
fn lock_feed(conn: &mut DbConnection, dealer: &str) -> QueryResult<()> {
    if let DbConnection::Postgresql(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind::<Integer, _>(FEED_LOCK_CLASS)
            .bind::<Text, _>(dealer)
            .execute(pg)?;
    }
    Ok(())
}

/// Writes `events` and their webhook deliveries on `conn`, inside the
/// transaction the caller holds (the change the events describe).
pub(crate) fn insert_events(
    conn: &mut DbConnection,
    dealer: &str,
    events: Vec<NewEvent>,
) -> Result<Vec<Event>, Fail> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    lock_feed(conn, dealer)?;
    let subscriptions = active_subscriptions(conn, dealer)?;
    let now = Utc::now();
    let dealer_id = DealerId(dealer.to_owned());
    let mut written = Vec::with_capacity(events.len());
    for event in events {
        // v7: ids made one after another keep their order.
        let row = NewEventRow::new(dealer, uuid::Uuid::now_v7(), event, now);
        diesel::insert_into(events::table)
            .values(&row)
            .execute(conn)?;
        let stored = events::table
            .filter(events::id.eq(&row.id))
            .select(EventRow::as_select())
            .first(conn)?
            .into_domain()?;
        for subscription in subscriptions.iter().filter(|s| s.wants(&stored.event_type)) {
            let delivery = WebhookDelivery {
                subscription_id: subscription.id,
                event_id: stored.id,
            };
            enqueue_within(conn, delivery.new_job(&dealer_id, now))?;
        }
        written.push(stored);
    }
    Ok(written)
}

/// `insert_events` for many events of one change (a chunk of an import): a
/// few bulk statements (`insert_rows!`), and the events are not read back. Rows are
/// inserted in the order given, so their seqs keep that order.
pub(crate) fn insert_many_events(
    conn: &mut DbConnection,
    dealer: &str,
    events: Vec<NewEvent>,
) -> Result<(), Fail> {
    if events.is_empty() {
        return Ok(());
    }
    lock_feed(conn, dealer)?;
    let subscriptions = active_subscriptions(conn, dealer)?;
    let now = Utc::now();
    let mut deliveries = Vec::new();
    let rows: Vec<NewEventRow> = events
        .into_iter()
        .map(|event| {
            // v7: ids made one after another keep their order.
            let id = uuid::Uuid::now_v7();
            for subscription in subscriptions.iter().filter(|s| s.wants(&event.event_type)) {
                deliveries.push(WebhookDelivery {
                    subscription_id: subscription.id,
                    event_id: id,
                });
            }
            NewEventRow::new(dealer, id, event, now)
        })
        .collect();
    insert_rows!(&mut *conn, events, &rows)?;
    let dealer_id = DealerId(dealer.to_owned());
    for delivery in deliveries {
        enqueue_within(conn, delivery.new_job(&dealer_id, now))?;
    }
    Ok(())
}

#[async_trait]
impl EventStore for Store {
    /// At most `limit` events (none for 0), and never more than `MAX_PAGE_SIZE`.
    async fn list_events(
        &self,
        dealer: &DealerId,
        after: Option<i64>,
        types: &[String],
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let dealer = dealer.0.clone();
        let types = types.to_vec();
        let limit = i64::from(limit.min(MAX_PAGE_SIZE));
        // Polled by every feed reader: one dealer's events in `events_dealer_seq` order.
        self.run_index_read(move |conn, _| {
            let mut query = events::table
                .filter(events::dealer.eq(dealer))
                .select(EventRow::as_select())
                .order(events::seq.asc())
                .limit(limit)
                .into_boxed();
            if let Some(after) = after {
                query = query.filter(events::seq.gt(after));
            }
            if !types.is_empty() {
                query = query.filter(events::event_type.eq_any(types));
            }
            let rows: Vec<EventRow> = query.load(conn)?;
            rows.into_iter().map(EventRow::into_domain).collect()
        })
        .await
    }

    async fn event(&self, dealer: &DealerId, id: uuid::Uuid) -> StoreResult<Event> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            events::table
                .filter(events::dealer.eq(dealer))
                .filter(events::id.eq(uuid_text(id)))
                .select(EventRow::as_select())
                .first(conn)
                .optional()?
                .ok_or(StoreError::NotFound)?
                .into_domain()
        })
        .await
    }

    async fn record_events(
        &self,
        dealer: &DealerId,
        events: Vec<NewEvent>,
    ) -> StoreResult<Vec<Event>> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| insert_events(conn, &dealer, events))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use diesel::sql_types::BigInt;
    use serde_json::json;

    use super::*;
    use crate::db::conflict_on_unique;
    use crate::scratch_postgres::ScratchSchema;

    /// A row of `dealer` d1's feed, written at one fixed microsecond.
    fn row(data: serde_json::Value, connection: Option<uuid::Uuid>) -> NewEventRow {
        let event = NewEvent {
            event_type: "site.updated".to_owned(),
            subject_kind: "site".to_owned(),
            subject_id: "S1".to_owned(),
            connection_id: connection.map(ConnectionId),
            data,
        };
        let at = DateTime::from_timestamp_micros(1_796_000_000_123_456).unwrap();
        NewEventRow::new("d1", uuid::Uuid::now_v7(), event, at)
    }

    /// `insert_rows!` on either backend: every row, in the order given (the
    /// seqs keep it), with its NULLs, quotes, non-ASCII text and
    /// microseconds; more than one SQLite statement's worth too; and a row
    /// that is there already refuses the whole set as a unique violation,
    /// which `conflict_on_unique` turns into a conflict.
    fn inserted_rows_are_kept_whole_and_in_order(conn: &mut DbConnection) {
        let mut rows = vec![
            row(json!({"name": "O'Brien \"Bob\"\tZoë"}), None),
            row(json!({}), Some(uuid::Uuid::nil())),
        ];
        rows.extend((0..1200).map(|n| row(json!([n]), None)));
        rows.reverse();
        assert_eq!(insert_rows!(&mut *conn, events, &rows).unwrap(), 1202);
        let none: Vec<NewEventRow> = Vec::new();
        assert_eq!(insert_rows!(&mut *conn, events, &none).unwrap(), 0);

        let stored: Vec<EventRow> = events::table
            .order(events::seq.asc())
            .select(EventRow::as_select())
            .load(conn)
            .unwrap();
        let ids: Vec<&str> = stored.iter().map(|r| r.id.as_str()).collect();
        let given: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, given, "in the order given, not the ids' order");
        let (named, linked) = (&stored[1201], &stored[1200]);
        assert_eq!(named.data, rows[1201].data);
        assert_eq!(named.connection_id, None);
        assert_eq!(linked.connection_id, rows[1200].connection_id);
        assert!(stored.iter().all(|r| r.created_at == rows[0].created_at));

        let mut again = vec![row(json!({}), None)];
        again.push(NewEventRow {
            id: rows[0].id.clone(),
            ..row(json!({}), None)
        });
        let refused = conflict_on_unique(insert_rows!(&mut *conn, events, &again), || {
            "taken".to_owned()
        });
        assert!(
            matches!(refused, Err(Fail::Store(StoreError::Conflict(ref m))) if m == "taken"),
            "{refused:?}"
        );
        let count: i64 = events::table.count().get_result(conn).unwrap();
        assert_eq!(count, 1202, "nothing of a refused set stays");
    }

    #[test]
    fn inserted_rows_are_kept_whole_and_in_order_on_postgres() {
        let (_schema, pg) = ScratchSchema::open();
        inserted_rows_are_kept_whole_and_in_order(&mut DbConnection::Postgresql(pg));
    }

    #[test]
    fn inserted_rows_are_kept_whole_and_in_order_on_sqlite() {
        let sqlite = crate::scratch_sqlite::open();
        inserted_rows_are_kept_whole_and_in_order(&mut DbConnection::Sqlite(sqlite));
    }

    /// With no value left to DEFAULT, diesel keeps a row's INSERT prepared:
    /// PostgreSQL parses and plans it once per connection.
    #[test]
    fn a_single_row_insert_is_prepared_once() {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let (_schema, mut pg) = ScratchSchema::open();
        for _ in 0..3 {
            diesel::insert_into(events::table)
                .values(&row(json!({}), None))
                .execute(&mut pg)
                .unwrap();
        }
        let prepared: Count = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_prepared_statements \
             WHERE starts_with(statement, 'INSERT INTO \"events\"')",
        )
        .get_result(&mut pg)
        .unwrap();
        assert_eq!(prepared.n, 1);
    }
}
