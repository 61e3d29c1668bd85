//! `LinkStore` on diesel: which billing record is which external record on a
//! connection. The unique constraints on either side decide races (of fifty
//! concurrent links to one Stages site, one wins); every change writes its
//! audit entries and deliberate unlinks in the same transaction.
//!
//! The rows and what every change shares are here, with the port; inserting
//! links and claims is in `insert`, moving them in `relinks`, removing them in
//! `unlinks`, reading them in `lookups`, and what a sync of one link reads and
//! records in `settle`.

mod insert;
mod lookup_client;
pub(crate) use lookup_client::LookupClient;
mod lookups;
mod relinks;
mod settle;
mod unlinks;

use async_trait::async_trait;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use domain::audit::NewAuditEntry;
use domain::billing::BillingId;
use domain::connection::ConnectionId;
use domain::link::{
    ConfirmLink, DeliberateUnlink, Link, LinkFilter, LinkId, LinkKind, NewLink, Relink,
};
use domain::link_sync::jobs::StagesRecord;
use domain::link_sync::LinkToSettle;
use domain::store::{LinkStore, PageRequest, StoreError, StoreResult};
use domain::tenancy::DealerId;
use domain::Page;

use crate::audit::{parse_uuid, uuid_text};
use crate::connections::{corrupt, from_db_time, to_db_time};
use crate::db::{conflict_on_foreign_key, page_limit, write_transaction, DbConnection, Fail};
use crate::schema::{connections, deliberate_unlinks, links};
use crate::{Backend, Store};
use insert::{confirm_blocking, insert_links_blocking, release_blocking};
pub(crate) use lookups::Lookup;
use relinks::{claim_relinks_blocking, confirm_relinks_blocking, relink_blocking};
pub(crate) use settle::{write_snapshot, SettleRead};
use unlinks::{discard_blocking, unlink_blocking};

// A `None` is NULL rather than DEFAULT, so a batch of rows is one INSERT on
// SQLite too: diesel sends a statement per row when its derived values may
// be DEFAULT, as they are by default (`treat_none_as_null` is for updates).
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = links, treat_none_as_default_value = false)]
struct LinkRow {
    id: String,
    dealer: String,
    connection_id: String,
    kind: String,
    billing_id: String,
    external_id: String,
    parent_id: Option<String>,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    last_synced: Option<String>,
    /// A claim until then; a confirmed link when none.
    claim_expires_at: Option<NaiveDateTime>,
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = deliberate_unlinks, treat_none_as_default_value = false)]
struct UnlinkRow {
    connection_id: String,
    kind: String,
    billing_id: String,
    external_id: String,
    dealer: String,
    unlinked_at: NaiveDateTime,
    actor: String,
}

// `what` names the row only when a column is bad: every link read passes here.
fn link_kind(raw: &str, what: impl FnOnce() -> String) -> Result<LinkKind, Fail> {
    LinkKind::parse(raw).ok_or_else(|| corrupt(format!("{} has a bad kind '{raw}'", what())))
}

fn billing_id(raw: &str, what: impl FnOnce() -> String) -> Result<BillingId, Fail> {
    BillingId::parse(raw).map_err(|_| corrupt(format!("{} has a bad billing id '{raw}'", what())))
}

impl LinkRow {
    fn new(dealer: &str, link: &NewLink, now: NaiveDateTime) -> Self {
        Self {
            id: uuid_text(link.id.0),
            dealer: dealer.to_owned(),
            connection_id: uuid_text(link.connection_id.0),
            kind: link.kind.as_str().to_owned(),
            billing_id: link.billing_id.as_str().to_owned(),
            external_id: link.external_id.clone(),
            parent_id: link.parent_id.map(|p| uuid_text(p.0)),
            version: 1,
            created_at: now,
            updated_at: now,
            last_synced: None,
            claim_expires_at: None,
        }
    }

    fn into_domain(self) -> Result<Link, Fail> {
        let what = || format!("link {}", self.id);
        let last_synced = self
            .last_synced
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|_| corrupt(format!("{} has a bad snapshot", what())))?;
        Ok(Link {
            id: LinkId(parse_uuid(&self.id, "link")?),
            dealer: DealerId(self.dealer),
            connection_id: ConnectionId(parse_uuid(&self.connection_id, "connection")?),
            kind: link_kind(&self.kind, what)?,
            billing_id: billing_id(&self.billing_id, what)?,
            external_id: self.external_id,
            parent_id: self
                .parent_id
                .as_deref()
                .map(|p| parse_uuid(p, "link").map(LinkId))
                .transpose()?,
            last_synced,
            version: self.version,
            created_at: from_db_time(self.created_at),
            updated_at: from_db_time(self.updated_at),
        })
    }

    fn kind(&self) -> Result<LinkKind, Fail> {
        link_kind(&self.kind, || format!("link {}", self.id))
    }
}

impl UnlinkRow {
    fn into_domain(self) -> Result<DeliberateUnlink, Fail> {
        let what = || format!("deliberate unlink of {} '{}'", self.kind, self.billing_id);
        Ok(DeliberateUnlink {
            connection_id: ConnectionId(parse_uuid(&self.connection_id, "connection")?),
            kind: link_kind(&self.kind, what)?,
            billing_id: billing_id(&self.billing_id, what)?,
            external_id: self.external_id,
            unlinked_at: from_db_time(self.unlinked_at),
            actor: self.actor,
        })
    }
}

/// The billing side of a link, as messages name it.
fn billing_side(kind: LinkKind, id: &str) -> String {
    match kind {
        LinkKind::Site => format!("billing site '{id}'"),
        LinkKind::System => format!("billing system '{id}'"),
    }
}

/// The external side of a link, as messages name it.
fn external_side(kind: LinkKind, id: &str) -> String {
    match kind {
        LinkKind::Site => format!("Stages site '{id}'"),
        LinkKind::System => format!("Stages device '{id}'"),
    }
}

fn already_linked(side: String) -> Fail {
    Fail::Store(StoreError::Conflict(format!(
        "{side} is already linked on this connection"
    )))
}

/// A unique violation of the links table, told apart by which side it names:
/// PostgreSQL reports the constraint, SQLite the columns.
fn link_write(result: QueryResult<usize>, row: &LinkRow) -> Result<usize, Fail> {
    match result {
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)) => {
            let kind = row.kind()?;
            let names = format!(
                "{} {}",
                info.constraint_name().unwrap_or(""),
                info.message()
            );
            Err(if names.contains("external") {
                already_linked(external_side(kind, &row.external_id))
            } else if names.contains("billing") {
                already_linked(billing_side(kind, &row.billing_id))
            } else {
                StoreError::Conflict(format!("link {} already exists", row.id)).into()
            })
        }
        other => conflict_on_foreign_key(other, || {
            "the connection or the parent link was removed meanwhile; try again".to_owned()
        }),
    }
}

/// A link of a billing record, claims included, with its connection's
/// status and Auto Sync switch.
pub(crate) struct RecordLink {
    pub(crate) link: Link,
    pub(crate) claimed: bool,
    pub(crate) status: String,
    pub(crate) auto_sync: bool,
}

impl RecordLink {
    /// The confirmed links among `links` (what [`links_of_record`] reads).
    pub(crate) fn confirmed(links: Vec<RecordLink>) -> Vec<Link> {
        links
            .into_iter()
            .filter(|l| !l.claimed)
            .map(|l| l.link)
            .collect()
    }
}

/// The links of one billing record on every connection, claims included,
/// with what Auto Sync asks of their connections: a billing edit's pushes
/// and its answer come from this one read.
pub(crate) fn record_links(
    conn: &mut DbConnection,
    dealer: &str,
    kind: LinkKind,
    billing_id: &str,
) -> Result<Vec<RecordLink>, Fail> {
    let rows: Vec<(LinkRow, String, bool)> = links::table
        .inner_join(connections::table)
        .filter(links::dealer.eq(dealer))
        .filter(links::kind.eq(kind.as_str()))
        .filter(links::billing_id.eq(billing_id))
        .select((
            LinkRow::as_select(),
            connections::status,
            connections::auto_sync,
        ))
        .order(links::id.asc())
        .load(conn)?;
    rows.into_iter()
        .map(|(row, status, auto_sync)| {
            Ok(RecordLink {
                claimed: row.claim_expires_at.is_some(),
                link: row.into_domain()?,
                status,
                auto_sync,
            })
        })
        .collect()
}

/// The links of one billing record on every connection (claims left out).
pub(crate) fn links_of_record(
    conn: &mut DbConnection,
    dealer: &str,
    kind: LinkKind,
    billing_id: &str,
) -> Result<Vec<Link>, Fail> {
    let rows: Vec<LinkRow> = links::table
        .filter(links::dealer.eq(dealer))
        .filter(links::kind.eq(kind.as_str()))
        .filter(links::billing_id.eq(billing_id))
        .filter(links::claim_expires_at.is_null())
        .select(LinkRow::as_select())
        .order(links::id.asc())
        .load(conn)?;
    rows.into_iter().map(LinkRow::into_domain).collect()
}

fn find_link(conn: &mut DbConnection, dealer: &str, id: &str) -> QueryResult<Option<LinkRow>> {
    links::table
        .filter(links::dealer.eq(dealer))
        .filter(links::id.eq(id))
        .select(LinkRow::as_select())
        .first(conn)
        .optional()
}

/// Lists of records looked up with `IN (...)` go in slices of at most this
/// many. Without statistics PostgreSQL takes each listed value to match 0.5%
/// of the rows: a few hundred of them look like the whole table, and it reads
/// the whole table rather than the index.
const LOOKUP_CHUNK: usize = 100;

#[async_trait]
impl LinkStore for Store {
    async fn insert_links(
        &self,
        dealer: &DealerId,
        links: Vec<NewLink>,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<Vec<Link>> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                insert_links_blocking(conn, &dealer, &links, audit, None)
            })
        })
        .await
    }

    async fn claim_links(
        &self,
        dealer: &DealerId,
        links: Vec<NewLink>,
        lease: chrono::Duration,
    ) -> StoreResult<Vec<Link>> {
        let dealer = dealer.0.clone();
        let until = to_db_time(Utc::now() + lease);
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                insert_links_blocking(conn, &dealer, &links, Vec::new(), Some(until))
            })
        })
        .await
    }

    async fn confirm_links(
        &self,
        dealer: &DealerId,
        confirms: Vec<ConfirmLink>,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<Vec<Link>> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                confirm_blocking(conn, &dealer, &confirms, audit)
            })
        })
        .await
    }

    async fn release_links(&self, dealer: &DealerId, ids: &[LinkId]) -> StoreResult<()> {
        let dealer = dealer.0.clone();
        let ids = ids.to_vec();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| release_blocking(conn, &dealer, &ids))
        })
        .await
    }

    async fn link(&self, dealer: &DealerId, id: LinkId) -> StoreResult<Link> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            find_link(conn, &dealer, &uuid_text(id.0))?
                .filter(|row| row.claim_expires_at.is_none())
                .ok_or(StoreError::NotFound)?
                .into_domain()
        })
        .await
    }

    /// On PostgreSQL gathered with the other reads in flight (the pushes of
    /// a runner's slots) into one statement; on SQLite, where a read never
    /// waits on the network, read at once.
    async fn link_to_settle(&self, dealer: &DealerId, id: LinkId) -> StoreResult<LinkToSettle> {
        let dealer = dealer.0.clone();
        if self.backend() == Backend::Sqlite {
            return self
                .run(move |conn, cipher| settle::link_to_settle(conn, cipher, &dealer, id))
                .await;
        }
        let read = settle::SettleRead { dealer, id };
        self.gathered(
            |inner| &inner.settling,
            |inner| &inner.pool,
            read,
            settle::links_to_settle,
        )
        .await
    }

    async fn link_to_settle_of_record(
        &self,
        dealer: &DealerId,
        record: &StagesRecord,
    ) -> StoreResult<Option<LinkToSettle>> {
        let dealer = dealer.0.clone();
        let connection_id = uuid_text(record.connection_id.0);
        let (kind, external_id) = (record.kind, record.external_id.clone());
        self.run(move |conn, cipher| {
            settle::link_to_settle_of_record(
                conn,
                cipher,
                &dealer,
                &connection_id,
                kind,
                &external_id,
            )
        })
        .await
    }

    async fn list_links(
        &self,
        dealer: &DealerId,
        filter: &LinkFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Link>> {
        let dealer = dealer.0.clone();
        let limit = page_limit(&page);
        if let Some(billing_id) = lookups::billing_id_lookup(filter, &page) {
            let lookup = lookups::Lookup {
                dealer,
                billing_id: billing_id.to_owned(),
                limit,
            };
            return self.billing_id_lookup(lookup).await;
        }
        let filter = filter.clone();
        self.run(move |conn, _| lookups::list_links(conn, dealer, filter, page, limit))
            .await
    }

    async fn links_of_billing(
        &self,
        dealer: &DealerId,
        kind: LinkKind,
        billing_id: &BillingId,
    ) -> StoreResult<Vec<Link>> {
        let dealer = dealer.0.clone();
        let billing_id = billing_id.as_str().to_owned();
        self.run(move |conn, _| links_of_record(conn, &dealer, kind, &billing_id))
            .await
    }

    async fn linked_external_ids(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        kind: LinkKind,
        external_ids: &[String],
    ) -> StoreResult<Vec<String>> {
        let dealer = dealer.0.clone();
        let external_ids = external_ids.to_vec();
        self.run(move |conn, _| {
            lookups::linked_external_ids(conn, &dealer, connection_id, kind, external_ids)
        })
        .await
    }

    async fn relink(
        &self,
        dealer: &DealerId,
        changes: Vec<Relink>,
        expected: Option<(LinkId, i64)>,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<Vec<Link>> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                relink_blocking(conn, &dealer, changes, expected, audit)
            })
        })
        .await
    }

    async fn claim_relinks(
        &self,
        dealer: &DealerId,
        changes: Vec<Relink>,
        lease: chrono::Duration,
    ) -> StoreResult<Vec<LinkId>> {
        let dealer = dealer.0.clone();
        let until = to_db_time(Utc::now() + lease);
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                claim_relinks_blocking(conn, &dealer, &changes, until)
            })
        })
        .await
    }

    async fn confirm_relinks(
        &self,
        dealer: &DealerId,
        claims: Vec<LinkId>,
        changes: Vec<Relink>,
        expected: Option<(LinkId, i64)>,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<Vec<Link>> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                confirm_relinks_blocking(conn, &dealer, &claims, changes, expected, audit)
            })
        })
        .await
    }

    async fn unlink(
        &self,
        dealer: &DealerId,
        ids: &[LinkId],
        actor: &str,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<Vec<Link>> {
        let dealer = dealer.0.clone();
        let ids = ids.to_vec();
        let actor = actor.to_owned();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                unlink_blocking(conn, &dealer, &ids, &actor, audit)
            })
        })
        .await
    }

    async fn discard_links(&self, dealer: &DealerId, ids: &[LinkId]) -> StoreResult<()> {
        let dealer = dealer.0.clone();
        let ids = ids.to_vec();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| discard_blocking(conn, &dealer, &ids))
        })
        .await
    }

    /// Bookkeeping of the sync, not a change of the link: the version (the
    /// link's ETag) and `updated_at` stay.
    async fn set_link_snapshot(
        &self,
        dealer: &DealerId,
        id: LinkId,
        snapshot: serde_json::Value,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<()> {
        let dealer = dealer.0.clone();
        let snapshot = snapshot.to_string();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                settle::set_link_snapshot(conn, &dealer, id, snapshot, audit)
            })
        })
        .await
    }

    async fn deliberate_unlinks(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
    ) -> StoreResult<Vec<DeliberateUnlink>> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            unlinks::deliberate_unlinks_of(conn, &dealer, &uuid_text(connection_id.0))
        })
        .await
    }
}
