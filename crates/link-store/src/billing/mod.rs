//! `BillingStore` on diesel: the billing system's customers, sites, systems and
//! users, one row per (dealer, id). The four kinds share one upsert and one
//! delete, written once over `BillingRow`; only their columns and checks differ.
//! A change of a linked site or system enqueues its Auto Sync pushes in the
//! same transaction (outbox), and a change the service makes itself
//! (`write_billing`) writes its events there too.
//!
//! Each kind's row and checks are in its module (`customers`, `sites`,
//! `systems`, `users`), the shared upsert and delete in `save`, what a change
//! brings along in `outbox`; this module maps the port onto them.

use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use domain::audit::NewAuditEntry;
use domain::billing::{
    BillingCustomer, BillingId, BillingRecord, BillingSite, BillingSystem, BillingUser,
    BillingWrite, BillingWritten, CustomerFields, SiteFields, SystemFields, Upserted, UserFields,
};
use domain::connection::ConnectionId;
use domain::events::NewEvent;
use domain::link::{Link, LinkKind};
use domain::store::{BillingStore, PageRequest, StoreError, StoreResult};
use domain::tenancy::DealerId;
use domain::Page;

use crate::connections::{corrupt, from_db_time};
use crate::db::{in_given_order, page_limit, write_transaction, DbConnection, Fail, IN_CHUNK};
use crate::links::{record_links, RecordLink};
use crate::schema::{billing_sites, billing_systems};
use crate::Store;

/// How often a write goes round when another writer changed the row between
/// its read and its write (PostgreSQL; on SQLite the write lock is held throughout).
const WRITE_ATTEMPTS: usize = 4;

/// A refusal names at most this many dependants.
const NAMED_DEPENDANTS: i64 = 5;

/// What the shared upsert and delete need of a billing table's row.
trait BillingRow: Sized {
    type Fields: PartialEq;
    /// The kind as messages name it: "billing customer".
    const WHAT: &'static str;

    fn build(
        dealer: &str,
        id: &str,
        fields: &Self::Fields,
        version: i64,
        created_at: NaiveDateTime,
        updated_at: NaiveDateTime,
    ) -> Self;
    fn into_record(self) -> Result<BillingRecord<Self::Fields>, Fail>;
    fn version(&self) -> i64;
    fn created_at(&self) -> NaiveDateTime;
    fn find(conn: &mut DbConnection, dealer: &str, id: &str) -> QueryResult<Option<Self>>;
    /// Inserts the row unless one with its key exists (then 0).
    fn insert_new(&self, conn: &mut DbConnection) -> QueryResult<usize>;
    /// Overwrites the stored row while its version is still `old_version` (else 0).
    fn update_from(&self, conn: &mut DbConnection, old_version: i64) -> QueryResult<usize>;
    /// PostgreSQL's upsert in one statement: inserts the row (version 1), or
    /// writes its fields over the stored row's with the next version when
    /// any differs; what it wrote, or `None` when the fields were the same.
    fn upsert_changed(&self, pg: &mut PgConnection) -> QueryResult<Option<Written>>;
    /// The columns of the record's fields: all but its key, version and times.
    #[cfg(test)]
    const FIELD_COLUMNS: &'static [&'static str];
    /// Deletes the row while its version is still `version` (else 0).
    fn delete_at(
        conn: &mut DbConnection,
        dealer: &str,
        id: &str,
        version: i64,
    ) -> QueryResult<usize>;
}

/// The version and creation time an upsert wrote (see `upsert_changed`).
#[derive(QueryableByName)]
struct Written {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    version: i64,
    #[diesel(sql_type = diesel::sql_types::Timestamp)]
    created_at: NaiveDateTime,
}

/// The queries of `BillingRow`, the same for every table but its name and
/// the columns of its fields (every column but the five all tables share; a
/// test holds the list to the schema).
macro_rules! billing_row_queries {
    ($table:ident: $($field:ident),+) => {
        #[cfg(test)]
        const FIELD_COLUMNS: &'static [&'static str] = &[$(stringify!($field)),+];

        fn upsert_changed(&self, pg: &mut PgConnection) -> QueryResult<Option<super::Written>> {
            // One text for any values, kept prepared. The WHERE leaves an
            // unchanged row alone (no new version, no ETag churn).
            const TAIL: &str = concat!(
                " ON CONFLICT (dealer, id) DO UPDATE SET version = ",
                stringify!($table),
                ".version + 1, updated_at = excluded.updated_at",
                $(", ", stringify!($field), " = excluded.", stringify!($field),)+
                " WHERE ",
                $(stringify!($table), ".", stringify!($field), " IS DISTINCT FROM excluded.",
                    stringify!($field), " OR ",)+
                "FALSE RETURNING version, created_at"
            );
            crate::prepared::kept_insert(diesel::insert_into($table::table).values(self), TAIL)
                .get_result(pg)
                .optional()
        }

        fn version(&self) -> i64 {
            self.version
        }

        fn created_at(&self) -> NaiveDateTime {
            self.created_at
        }

        fn find(conn: &mut DbConnection, dealer: &str, id: &str) -> QueryResult<Option<Self>> {
            $table::table
                .filter($table::dealer.eq(dealer))
                .filter($table::id.eq(id))
                .select(Self::as_select())
                .first(conn)
                .optional()
        }

        fn insert_new(&self, conn: &mut DbConnection) -> QueryResult<usize> {
            per_backend!(conn, |c| diesel::insert_into($table::table)
                .values(self)
                .on_conflict_do_nothing()
                .execute(c))
        }

        // Kept prepared, on the inner connection: every billing edit runs
        // it, and PostgreSQL parsed and planned diesel's own UPDATE at each
        // of 10,000 edits (pg_stat_statements), longer than it ran.
        fn update_from(&self, conn: &mut DbConnection, old_version: i64) -> QueryResult<usize> {
            per_backend!(conn, |c| crate::prepared::kept_update(
                $table::table,
                self,
                $table::dealer
                    .eq(&self.dealer)
                    .and($table::id.eq(&self.id))
                    .and($table::version.eq(old_version)),
            )
            .execute(c))
        }

        fn delete_at(
            conn: &mut DbConnection,
            dealer: &str,
            id: &str,
            version: i64,
        ) -> QueryResult<usize> {
            diesel::delete(
                $table::table
                    .filter($table::dealer.eq(dealer))
                    .filter($table::id.eq(id))
                    .filter($table::version.eq(version)),
            )
            .execute(conn)
        }
    };
}

// After the macro, which they use.
mod customers;
mod outbox;
mod save;
mod sites;
mod systems;
mod users;

use customers::{save_customer, CustomerRow};
use outbox::{enqueue_auto_sync, write_billing_blocking};
use save::{delete_row, linked_refusal};
use sites::save_site;
pub(crate) use sites::SiteRow;
use systems::save_system;
pub(crate) use systems::SystemRow;
use users::{save_user, UserRow};

pub(crate) use save::insert_new_records;

fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).expect("a list of strings is JSON")
}

fn stored_id(raw: &str, what: &str) -> Result<BillingId, Fail> {
    BillingId::parse(raw).map_err(|_| corrupt(format!("{what} id '{raw}'")))
}

/// A stored row's common columns as the domain's record around `fields`.
fn record<F>(
    what: &str,
    dealer: String,
    id: &str,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    fields: F,
) -> Result<BillingRecord<F>, Fail> {
    Ok(BillingRecord {
        id: stored_id(id, what)?,
        dealer: DealerId(dealer),
        version,
        created_at: from_db_time(created_at),
        updated_at: from_db_time(updated_at),
        fields,
    })
}

fn exists<T>(found: QueryResult<Option<T>>) -> Result<bool, Fail> {
    Ok(found?.is_some())
}

#[async_trait]
impl BillingStore for Store {
    async fn upsert_customer(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        fields: CustomerFields,
        expected_version: Option<i64>,
    ) -> StoreResult<Upserted<BillingCustomer>> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                save_customer(conn, &dealer, &id, &fields, expected_version)
            })
            .map(|saved| saved.upserted)
        })
        .await
    }

    async fn customer(&self, dealer: &DealerId, id: &BillingId) -> StoreResult<BillingCustomer> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            CustomerRow::find(conn, &dealer, &id)?
                .ok_or(StoreError::NotFound)?
                .into_record()
        })
        .await
    }

    async fn delete_customer(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        expected_version: Option<i64>,
    ) -> StoreResult<()> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                delete_row::<CustomerRow>(conn, &dealer, &id, expected_version, |conn| {
                    customers::sites_left(conn, &dealer, &id)
                })
            })
        })
        .await
    }

    async fn sites_of_customer(
        &self,
        dealer: &DealerId,
        customer_id: &BillingId,
    ) -> StoreResult<Vec<BillingSite>> {
        let (dealer, customer_id) = (dealer.0.clone(), customer_id.as_str().to_owned());
        self.run(move |conn, _| sites::sites_of_customer(conn, &dealer, &customer_id))
            .await
    }

    async fn search_customers(
        &self,
        dealer: &DealerId,
        q: Option<&str>,
        page: PageRequest,
    ) -> StoreResult<Page<BillingCustomer>> {
        let dealer = dealer.0.clone();
        let limit = page_limit(&page);
        let q = customers::search_patterns(q);
        self.run(move |conn, _| customers::search(conn, dealer, q, page, limit))
            .await
    }

    async fn upsert_site_linked(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        fields: SiteFields,
        expected_version: Option<i64>,
    ) -> StoreResult<(Upserted<BillingSite>, Vec<Link>)> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                let saved = save_site(conn, &dealer, &id, &fields, expected_version)?;
                let links = record_links(conn, &dealer, LinkKind::Site, &id)?;
                if saved.changed {
                    enqueue_auto_sync(conn, &dealer, &links, None)?;
                }
                Ok((saved.upserted, RecordLink::confirmed(links)))
            })
        })
        .await
    }

    async fn site(&self, dealer: &DealerId, id: &BillingId) -> StoreResult<BillingSite> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            SiteRow::find(conn, &dealer, &id)?
                .ok_or(StoreError::NotFound)?
                .into_record()
        })
        .await
    }

    async fn delete_site(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        expected_version: Option<i64>,
    ) -> StoreResult<()> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                delete_row::<SiteRow>(conn, &dealer, &id, expected_version, |conn| {
                    sites::systems_or_links_left(conn, &dealer, &id)
                })
            })
        })
        .await
    }

    async fn upsert_system_linked(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        fields: SystemFields,
        expected_version: Option<i64>,
    ) -> StoreResult<(Upserted<BillingSystem>, Vec<Link>)> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                let saved = save_system(conn, &dealer, &id, &fields, expected_version)?;
                let links = record_links(conn, &dealer, LinkKind::System, &id)?;
                if saved.changed {
                    enqueue_auto_sync(conn, &dealer, &links, None)?;
                }
                Ok((saved.upserted, RecordLink::confirmed(links)))
            })
        })
        .await
    }

    async fn system(&self, dealer: &DealerId, id: &BillingId) -> StoreResult<BillingSystem> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            SystemRow::find(conn, &dealer, &id)?
                .ok_or(StoreError::NotFound)?
                .into_record()
        })
        .await
    }

    async fn delete_system(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        expected_version: Option<i64>,
    ) -> StoreResult<()> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                delete_row::<SystemRow>(conn, &dealer, &id, expected_version, |conn| {
                    linked_refusal(conn, &dealer, LinkKind::System, &id)
                })
            })
        })
        .await
    }

    async fn systems_of_site(
        &self,
        dealer: &DealerId,
        site_id: &BillingId,
    ) -> StoreResult<Vec<BillingSystem>> {
        let (dealer, site_id) = (dealer.0.clone(), site_id.as_str().to_owned());
        self.run(move |conn, _| systems::systems_of_site(conn, &dealer, &site_id))
            .await
    }

    async fn upsert_user(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        fields: UserFields,
        expected_version: Option<i64>,
    ) -> StoreResult<Upserted<BillingUser>> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                save_user(conn, &dealer, &id, &fields, expected_version)
            })
            .map(|saved| saved.upserted)
        })
        .await
    }

    async fn user(&self, dealer: &DealerId, id: &BillingId) -> StoreResult<BillingUser> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            UserRow::find(conn, &dealer, &id)?
                .ok_or(StoreError::NotFound)?
                .into_record()
        })
        .await
    }

    async fn delete_user(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        expected_version: Option<i64>,
    ) -> StoreResult<()> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                delete_row::<UserRow>(conn, &dealer, &id, expected_version, |_| Ok(None))
            })
        })
        .await
    }

    /// No version check. When the fields are those already stored, nothing
    /// is written: no version bump, no Auto Sync job, and none of `events` is
    /// recorded (`created` is false and the record is the stored one).
    async fn write_billing(
        &self,
        dealer: &DealerId,
        write: BillingWrite,
        events: Vec<NewEvent>,
        origin: Option<ConnectionId>,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<BillingWritten> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                write_billing_blocking(conn, &dealer, write, None, events, origin, audit)
            })
        })
        .await
    }

    async fn write_billing_at(
        &self,
        dealer: &DealerId,
        write: BillingWrite,
        version: i64,
        events: Vec<NewEvent>,
        origin: Option<ConnectionId>,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<BillingWritten> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                let version = Some(version);
                write_billing_blocking(conn, &dealer, write, version, events, origin, audit)
            })
        })
        .await
    }

    async fn existing_billing_ids(
        &self,
        dealer: &DealerId,
        kind: LinkKind,
        ids: &[String],
    ) -> StoreResult<Vec<String>> {
        let dealer = dealer.0.clone();
        let ids = ids.to_vec();
        self.run(move |conn, _| {
            let mut found = std::collections::HashSet::new();
            for chunk in ids.chunks(IN_CHUNK) {
                let rows: Vec<String> = match kind {
                    LinkKind::Site => billing_sites::table
                        .filter(billing_sites::dealer.eq(&dealer))
                        .filter(billing_sites::id.eq_any(chunk))
                        .select(billing_sites::id)
                        .load(conn)?,
                    LinkKind::System => billing_systems::table
                        .filter(billing_systems::dealer.eq(&dealer))
                        .filter(billing_systems::id.eq_any(chunk))
                        .select(billing_systems::id)
                        .load(conn)?,
                };
                found.extend(rows);
            }
            Ok(in_given_order(ids, &found))
        })
        .await
    }
}

/// The billing record a link of `kind` names, from its table's row read with
/// the link (none when the record no longer exists).
pub(crate) fn linked_of(
    kind: LinkKind,
    site: Option<SiteRow>,
    system: Option<SystemRow>,
) -> Result<Option<domain::link_sync::LinkedRecord>, Fail> {
    Ok(match kind {
        LinkKind::Site => site
            .map(SiteRow::into_record)
            .transpose()?
            .map(domain::link_sync::LinkedRecord::Site),
        LinkKind::System => system
            .map(SystemRow::into_record)
            .transpose()?
            .map(domain::link_sync::LinkedRecord::System),
    })
}

#[cfg(test)]
mod tests {
    use diesel::sql_types::Text;

    use super::*;
    use crate::scratch_postgres::ScratchSchema;

    /// PostgreSQL's upsert writes and compares the columns a kind lists: a
    /// column left out would never change on a PUT, nor make one a change.
    #[test]
    fn each_kind_lists_every_column_of_its_fields() {
        const SHARED: [&str; 5] = ["dealer", "id", "version", "created_at", "updated_at"];
        let (_schema, mut pg) = ScratchSchema::open();
        for (table, fields) in [
            ("billing_customers", CustomerRow::FIELD_COLUMNS),
            ("billing_sites", SiteRow::FIELD_COLUMNS),
            ("billing_systems", SystemRow::FIELD_COLUMNS),
            ("billing_users", UserRow::FIELD_COLUMNS),
        ] {
            let mut stored: Vec<String> = diesel::dsl::sql::<Text>(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = ",
            )
            .bind::<Text, _>(table)
            .load(&mut pg)
            .unwrap();
            let mut listed: Vec<String> =
                SHARED.iter().chain(fields).map(|c| c.to_string()).collect();
            stored.sort();
            listed.sort();
            assert_eq!(listed, stored, "{table}");
        }
    }
}
