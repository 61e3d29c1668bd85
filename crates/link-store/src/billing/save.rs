//! Saving and deleting a billing record of any kind, written once over
//! `BillingRow`: the upsert that writes nothing when the fields are those
//! stored (and retries when another writer came between its read and its
//! write), the delete with the refusals that name what still needs the
//! record, and an import's bulk insert of new customers and users.

use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use domain::billing::{BillingRecord, CustomerFields, Upserted, UserFields};
use domain::link::LinkKind;
use domain::store::StoreError;

use super::customers::CustomerRow;
use super::users::UserRow;
use super::{BillingRow, WRITE_ATTEMPTS};
use crate::connections::to_db_time;
use crate::db::{conflict_on_foreign_key, insert_rows, DbConnection, Fail};
use crate::schema::links;

pub(super) fn does_not_exist(what: &str, id: &str) -> String {
    format!("{what} '{id}' does not exist")
}

/// What an upsert did, and whether it wrote anything (a creation or a change
/// of fields): only then do Auto Sync pushes and events follow.
pub(super) struct Saved<F> {
    pub(super) upserted: Upserted<BillingRecord<F>>,
    pub(super) changed: bool,
}

/// Creates or replaces the record. A replacement with the very same fields
/// writes nothing and keeps the version, so a billing system that PUTs its
/// records again and again does not churn ETags. `missing_reference` is the
/// message when a foreign key refuses the write (a reference deleted meanwhile).
pub(super) fn upsert_row<R: BillingRow>(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
    fields: &R::Fields,
    expected_version: Option<i64>,
    missing_reference: impl Fn() -> String,
) -> Result<Saved<R::Fields>, Fail> {
    let now = to_db_time(Utc::now());
    if let (DbConnection::Postgresql(pg), None) = (&mut *conn, expected_version) {
        // A round trip fewer for a creation or a change (most PUTs): the
        // statement decides; a PUT of the stored fields reads them below.
        let row = R::build(dealer, id, fields, 1, now, now);
        if let Some(w) = conflict_on_foreign_key(row.upsert_changed(pg), &missing_reference)? {
            return Ok(Saved {
                upserted: Upserted {
                    record: R::build(dealer, id, fields, w.version, w.created_at, now)
                        .into_record()?,
                    // Only an insert writes version 1.
                    created: w.version == 1,
                },
                changed: true,
            });
        }
    }
    for _ in 0..WRITE_ATTEMPTS {
        let written = match R::find(conn, dealer, id)? {
            None => {
                // If-Match names a version of something that is not there.
                if expected_version.is_some() {
                    return Err(StoreError::VersionMismatch.into());
                }
                let row = R::build(dealer, id, fields, 1, now, now);
                let inserted = conflict_on_foreign_key(row.insert_new(conn), &missing_reference)?;
                (inserted == 1).then_some((row, true))
            }
            Some(current) => {
                let (version, created_at) = (current.version(), current.created_at());
                if expected_version.is_some_and(|v| v != version) {
                    return Err(StoreError::VersionMismatch.into());
                }
                let current = current.into_record()?;
                if current.fields == *fields {
                    return Ok(Saved {
                        upserted: Upserted {
                            record: current,
                            created: false,
                        },
                        changed: false,
                    });
                }
                let row = R::build(dealer, id, fields, version + 1, created_at, now);
                let updated =
                    conflict_on_foreign_key(row.update_from(conn, version), &missing_reference)?;
                (updated == 1).then_some((row, false))
            }
        };
        if let Some((row, created)) = written {
            return Ok(Saved {
                upserted: Upserted {
                    record: row.into_record()?,
                    created,
                },
                changed: true,
            });
        }
        // Created or changed by another writer in between: look again.
    }
    Err(StoreError::Conflict(format!(
        "{} '{id}' kept changing while it was saved; try again",
        R::WHAT
    ))
    .into())
}

/// New billing customers and users of an import, in a few bulk
/// statements, version 1, nothing else written (like `save_customer` and
/// `save_user` on a new id). The caller checked that none exists: one that
/// appeared meanwhile fails the whole statement with a unique violation.
pub(crate) fn insert_new_records(
    conn: &mut DbConnection,
    dealer: &str,
    customers: &[(&str, &CustomerFields)],
    users: &[(&str, &UserFields)],
    now: NaiveDateTime,
) -> QueryResult<()> {
    let customers: Vec<CustomerRow> = customers
        .iter()
        .map(|(id, fields)| <CustomerRow as BillingRow>::build(dealer, id, fields, 1, now, now))
        .collect();
    insert_rows!(&mut *conn, billing_customers, &customers)?;
    let users: Vec<UserRow> = users
        .iter()
        .map(|(id, fields)| <UserRow as BillingRow>::build(dealer, id, fields, 1, now, now))
        .collect();
    insert_rows!(&mut *conn, billing_users, &users)?;
    Ok(())
}

/// Deletes the record unless `dependants` names something that still needs it.
pub(super) fn delete_row<R: BillingRow>(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
    expected_version: Option<i64>,
    dependants: impl Fn(&mut DbConnection) -> Result<Option<String>, Fail>,
) -> Result<(), Fail> {
    for _ in 0..WRITE_ATTEMPTS {
        let current = R::find(conn, dealer, id)?.ok_or(StoreError::NotFound)?;
        let version = current.version();
        if expected_version.is_some_and(|v| v != version) {
            return Err(StoreError::VersionMismatch.into());
        }
        if let Some(refusal) = dependants(conn)? {
            return Err(StoreError::Conflict(refusal).into());
        }
        // The foreign keys back the check up against a dependant added meanwhile.
        let deleted = conflict_on_foreign_key(R::delete_at(conn, dealer, id, version), || {
            format!("{} '{id}' is still referenced; try again", R::WHAT)
        })?;
        if deleted == 1 {
            return Ok(());
        }
    }
    Err(StoreError::Conflict(format!(
        "{} '{id}' kept changing while it was deleted; try again",
        R::WHAT
    ))
    .into())
}

/// "'A', 'B' and 3 more" from the first few ids and the count of all.
fn name_some(ids: &[String], total: i64) -> String {
    let named = ids
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let more = total - ids.len() as i64;
    if more > 0 {
        format!("{named} and {more} more")
    } else {
        named
    }
}

pub(super) fn still_has(
    what: &str,
    id: &str,
    dependants: &str,
    ids: &[String],
    total: i64,
) -> String {
    format!(
        "{what} '{id}' still has {dependants} {}; delete or move them first",
        name_some(ids, total)
    )
}

/// A refusal while the record is linked on some connection.
pub(super) fn linked_refusal(
    conn: &mut DbConnection,
    dealer: &str,
    kind: LinkKind,
    id: &str,
) -> Result<Option<String>, Fail> {
    let linked: i64 = links::table
        .filter(links::dealer.eq(dealer))
        .filter(links::kind.eq(kind.as_str()))
        .filter(links::billing_id.eq(id))
        .count()
        .get_result(conn)?;
    Ok((linked > 0).then(|| {
        let what = match kind {
            LinkKind::Site => "billing site",
            LinkKind::System => "billing system",
        };
        let connections = if linked == 1 {
            "1 connection".to_owned()
        } else {
            format!("{linked} connections")
        };
        format!("{what} '{id}' is linked on {connections}; unlink it first")
    }))
}
