//! `IdempotencyStore` on diesel (B3): a request with an `Idempotency-Key` claims a row
//! before it runs and stores its answer after, so a retry replays that answer.
//! Claims are race-safe by construction: an insert that does nothing on conflict,
//! and a takeover of a stale claim that only one conditional update can win.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use domain::store::{
    IdempotencyBegin, IdempotencyScope, IdempotencyStore, StoreError, StoreResult, StoredResponse,
};

use crate::connections::to_db_time;
use crate::crypto::Cipher;
use crate::db::{per_backend, DbConnection, Fail};
use crate::schema::idempotency_keys as keys;
use crate::Store;

const IN_FLIGHT: &str = "in_flight";
const DONE: &str = "done";

/// How often `begin` goes round when the row changes under it (released, taken
/// over or finished by another caller between two statements).
const BEGIN_ATTEMPTS: usize = 4;

#[derive(Debug, Insertable)]
#[diesel(table_name = keys, treat_none_as_default_value = false)]
struct NewClaim<'a> {
    dealer: &'a str,
    user_id: &'a str,
    idem_key: &'a str,
    fingerprint: &'a str,
    state: &'a str,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = keys)]
struct ClaimRow {
    fingerprint: String,
    state: String,
    status: Option<i32>,
    headers: Option<String>,
    body: Option<Vec<u8>>,
    updated_at: NaiveDateTime,
}

/// The primary key of one claim, as a filter.
macro_rules! claim {
    ($scope:expr) => {
        keys::table
            .filter(keys::dealer.eq(&$scope.dealer.0))
            .filter(keys::user_id.eq(&$scope.user))
            .filter(keys::idem_key.eq(&$scope.key))
    };
}

/// Associated data binding a sealed answer to its key: a blob copied to another
/// caller's row does not open.
fn answer_aad(scope: &IdempotencyScope) -> String {
    format!(
        "idempotency|{}|{}|{}",
        scope.dealer.0, scope.user, scope.key
    )
}

/// Answers are kept sealed, headers and body together, because some carry a
/// secret shown once (a rotated inbound password, a webhook signing secret).
/// Plaintext: the headers' JSON length (4 bytes, big endian), their JSON, the body.
fn seal_answer(
    cipher: &Cipher,
    scope: &IdempotencyScope,
    response: &StoredResponse,
) -> Result<Vec<u8>, Fail> {
    let headers = serde_json::to_vec(&response.headers)
        .map_err(|e| StoreError::Failed(format!("cannot encode headers: {e}")))?;
    let len = u32::try_from(headers.len())
        .map_err(|_| StoreError::Failed("the answer's headers are too long".into()))?;
    let mut plain = Vec::with_capacity(4 + headers.len() + response.body.len());
    plain.extend_from_slice(&len.to_be_bytes());
    plain.extend_from_slice(&headers);
    plain.extend_from_slice(&response.body);
    Ok(cipher.seal(&answer_aad(scope), &plain))
}

fn stored_response(
    cipher: &Cipher,
    scope: &IdempotencyScope,
    row: ClaimRow,
) -> Result<StoredResponse, Fail> {
    let bad = || {
        tracing::error!("an idempotency key marked done has no readable response");
        Fail::Store(StoreError::Unavailable(
            "a stored idempotent response is unreadable".into(),
        ))
    };
    let status = row
        .status
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(bad)?;
    let blob = row.body.unwrap_or_default();
    // A row kept before answers were sealed has its headers in their own
    // column; it expires with the key's time to live.
    if let Some(json) = row.headers {
        return Ok(StoredResponse {
            status,
            headers: serde_json::from_str(&json).map_err(|_| bad())?,
            body: blob,
        });
    }
    let plain = cipher.open(&answer_aad(scope), &blob).map_err(|_| bad())?;
    let (len, rest) = plain.split_first_chunk::<4>().ok_or_else(bad)?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(bad());
    }
    let (headers, body) = rest.split_at(len);
    Ok(StoredResponse {
        status,
        headers: serde_json::from_slice(headers).map_err(|_| bad())?,
        body: body.to_vec(),
    })
}

fn begin_blocking(
    conn: &mut DbConnection,
    cipher: &Cipher,
    scope: &IdempotencyScope,
    fingerprint: &str,
    now: NaiveDateTime,
    stale_before: NaiveDateTime,
) -> Result<IdempotencyBegin, Fail> {
    let claim = NewClaim {
        dealer: &scope.dealer.0,
        user_id: &scope.user,
        idem_key: &scope.key,
        fingerprint,
        state: IN_FLIGHT,
        created_at: now,
        updated_at: now,
    };
    for _ in 0..BEGIN_ATTEMPTS {
        // Of several concurrent inserts of one key, the database lets exactly one
        // through; the others do nothing and read what is there.
        let inserted = per_backend!(&mut *conn, |c| diesel::insert_into(keys::table)
            .values(&claim)
            .on_conflict_do_nothing()
            .execute(c))?;
        if inserted == 1 {
            return Ok(IdempotencyBegin::Started);
        }
        let Some(row) = claim!(scope)
            .select(ClaimRow::as_select())
            .first(conn)
            .optional()?
        else {
            continue; // released in between: try to claim it again
        };
        if row.fingerprint != fingerprint {
            return Ok(IdempotencyBegin::Mismatch);
        }
        if row.state == DONE {
            return Ok(IdempotencyBegin::Replay(stored_response(
                cipher, scope, row,
            )?));
        }
        if row.updated_at >= stale_before {
            return Ok(IdempotencyBegin::InFlight);
        }
        // An abandoned claim: the update's own condition decides who takes it
        // over, since a winner's fresh `updated_at` fails everyone else's.
        let taken = diesel::update(
            claim!(scope)
                .filter(keys::fingerprint.eq(fingerprint))
                .filter(keys::state.eq(IN_FLIGHT))
                .filter(keys::updated_at.lt(stale_before)),
        )
        .set(keys::updated_at.eq(now))
        .execute(conn)?;
        if taken == 1 {
            return Ok(IdempotencyBegin::Started);
        }
    }
    // The row kept changing under us: someone else is working on this key.
    Ok(IdempotencyBegin::InFlight)
}

#[async_trait]
impl IdempotencyStore for Store {
    async fn begin(
        &self,
        scope: &IdempotencyScope,
        fingerprint: &str,
        now: DateTime<Utc>,
        stale_after: chrono::Duration,
    ) -> StoreResult<IdempotencyBegin> {
        let scope = scope.clone();
        let fingerprint = fingerprint.to_owned();
        let stale_before = to_db_time(now - stale_after);
        let now = to_db_time(now);
        self.run(move |conn, cipher| {
            begin_blocking(conn, cipher, &scope, &fingerprint, now, stale_before)
        })
        .await
    }

    async fn finish(&self, scope: &IdempotencyScope, response: &StoredResponse) -> StoreResult<()> {
        let scope = scope.clone();
        let response = response.clone();
        let now = to_db_time(Utc::now());
        self.run(move |conn, cipher| {
            let sealed = seal_answer(cipher, &scope, &response)?;
            let finished = diesel::update(claim!(scope).filter(keys::state.eq(IN_FLIGHT)))
                .set((
                    keys::state.eq(DONE),
                    keys::status.eq(i32::from(response.status)),
                    keys::headers.eq(None::<String>),
                    keys::body.eq(sealed),
                    keys::updated_at.eq(now),
                ))
                .execute(conn)?;
            // No claim in flight: released, purged or finished already.
            if finished == 0 {
                return Err(StoreError::NotFound.into());
            }
            Ok(())
        })
        .await
    }

    async fn release(&self, scope: &IdempotencyScope) -> StoreResult<()> {
        let scope = scope.clone();
        self.run(move |conn, _| {
            // A finished key stays: its answer is what a retry must get.
            diesel::delete(claim!(scope).filter(keys::state.eq(IN_FLIGHT))).execute(conn)?;
            Ok(())
        })
        .await
    }

    async fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let before = to_db_time(before);
        self.run(move |conn, _| {
            let purged =
                diesel::delete(keys::table.filter(keys::created_at.lt(before))).execute(conn)?;
            Ok(purged as u64)
        })
        .await
    }
}
