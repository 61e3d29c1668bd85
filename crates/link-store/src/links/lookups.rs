//! Reading links: the list with its filters (and the one fixed-shape query
//! billing front ends make on every screen), and which external records of
//! a connection are linked already.

use std::collections::HashSet;

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Text, Untyped};
use domain::connection::ConnectionId;
use domain::link::{Link, LinkFilter, LinkKind};
use domain::store::{PageRequest, StoreResult};
use domain::Page;

use super::{LinkRow, LOOKUP_CHUNK};
use crate::audit::uuid_text;
use crate::connections::corrupt;
use crate::db::{in_given_order, into_page, per_backend, DbConnection, Fail};
use crate::gathered::each_failed;
use crate::schema::links;
use crate::{Backend, Store};

/// One lookup: the first page of `dealer`'s links of `billing_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lookup {
    pub dealer: String,
    pub billing_id: String,
    pub limit: usize,
}

impl Store {
    /// The first page of a dealer's links of one billing id: on SQLite read
    /// at once (a read there never waits on the network); on PostgreSQL over
    /// the calling thread's own asynchronous connection where there is one
    /// (see `LookupClient`), else gathered with the other lookups in flight
    /// into one statement, on a connection that keeps its plans.
    pub(super) async fn billing_id_lookup(&self, lookup: Lookup) -> StoreResult<Page<Link>> {
        if self.backend() == Backend::Sqlite {
            return self
                .run_index_read(move |conn, _| {
                    links_of_billing_id(conn, &lookup.dealer, &lookup.billing_id, lookup.limit)
                })
                .await;
        }
        if let Some(client) = &self.inner.lookup_client {
            if let Some(page) = client.lookup(&lookup).await {
                return Ok(page);
            }
        }
        self.gathered(
            |inner| &inner.lookups,
            |inner| inner.index_reads.as_ref().unwrap_or(&inner.pool),
            lookup,
            |conn, _, batch| match links_of_billing_ids(conn, batch) {
                Ok(pages) => pages.into_iter().map(Ok).collect(),
                Err(e) => each_failed(batch.len(), e.into_store_error()),
            },
        )
        .await
    }
}

/// The lookup billing front ends make on every screen: the first page of the
/// dealer's links of one billing id, and no other filter. It is one query of
/// a fixed shape that leads the `links_billing` index, so each connection
/// prepares it once and, on PostgreSQL, keeps its plan (a boxed query of
/// varying filters is parsed and planned every time).
pub(super) fn billing_id_lookup<'a>(filter: &'a LinkFilter, page: &PageRequest) -> Option<&'a str> {
    match filter {
        LinkFilter {
            billing_id: Some(billing_id),
            connection_id: None,
            kind: None,
            external_id: None,
            parent_id: None,
        } if page.after.is_none() => Some(billing_id),
        _ => None,
    }
}

/// The first page of the dealer's links of `billing_id` (claims left out):
/// see [`billing_id_lookup`].
pub(super) fn links_of_billing_id(
    conn: &mut DbConnection,
    dealer: &str,
    billing_id: &str,
    limit: usize,
) -> Result<Page<Link>, Fail> {
    // On the inner connection: through the `MultiConnection` diesel writes
    // the statement's SQL out again on every run (several times), which
    // cost this lookup more than SQLite's own work; here the statement cache
    // finds it by type.
    let rows: Vec<LinkRow> = per_backend!(conn, |c| links::table
        .filter(links::billing_id.eq(billing_id))
        .filter(links::dealer.eq(dealer))
        .filter(links::claim_expires_at.is_null())
        .select(LinkRow::as_select())
        .order(links::id.asc())
        .limit(limit as i64 + 1)
        .load(c))?;
    into_page(rows, limit, |r| r.id.clone(), LinkRow::into_domain)
}

/// A link and the place of the lookup that found it.
#[derive(QueryableByName)]
struct Found {
    #[diesel(sql_type = BigInt)]
    nth: i64,
    #[diesel(embed)]
    link: LinkRow,
}

/// Each lookup's rows with its place (from 1): dealers, billing ids and rooms
/// (a page and one more) in. A type of its own rather than `sql_query`, so
/// diesel prepares it once per connection (its SQL follows from its type).
struct LookupsTogether<'a> {
    dealers: Vec<&'a str>,
    billing_ids: Vec<&'a str>,
    rooms: Vec<i64>,
}

impl QueryId for LookupsTogether<'_> {
    type QueryId = LookupsTogether<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for LookupsTogether<'_> {
    type SqlType = Untyped;
}

impl RunQueryDsl<PgConnection> for LookupsTogether<'_> {}

impl QueryFragment<Pg> for LookupsTogether<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT k.nth, l.* FROM unnest(");
        out.push_bind_param::<Array<Text>, _>(&self.dealers)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Text>, _>(&self.billing_ids)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.rooms)?;
        out.push_sql(LOOKUPS_TOGETHER_REST);
        Ok(())
    }
}

pub(super) const LOOKUPS_TOGETHER_REST: &str = "::bigint[]) WITH ORDINALITY \
    AS k (dealer, billing_id, room, nth) \
    CROSS JOIN LATERAL ( \
        SELECT * FROM links \
        WHERE links.billing_id = k.billing_id AND links.dealer = k.dealer \
          AND links.claim_expires_at IS NULL \
        ORDER BY links.id LIMIT k.room) AS l";

/// The first pages of several lookups in one statement (PostgreSQL), in the
/// order asked: each (dealer, billing id) walks `links_billing` for its own
/// page, whatever the plan kept (a generic plan of `= ANY` filters had
/// walked one dealer's every link).
pub(super) fn links_of_billing_ids(
    conn: &mut DbConnection,
    lookups: &[Lookup],
) -> Result<Vec<Page<Link>>, Fail> {
    let DbConnection::Postgresql(pg) = conn else {
        return lookups
            .iter()
            .map(|l| links_of_billing_id(conn, &l.dealer, &l.billing_id, l.limit))
            .collect();
    };
    let found: Vec<Found> = LookupsTogether {
        dealers: lookups.iter().map(|l| l.dealer.as_str()).collect(),
        billing_ids: lookups.iter().map(|l| l.billing_id.as_str()).collect(),
        rooms: lookups.iter().map(|l| l.limit as i64 + 1).collect(),
    }
    .load(pg)?;
    let mut pages: Vec<Vec<LinkRow>> = vec![Vec::new(); lookups.len()];
    for f in found {
        // `WITH ORDINALITY` counts from 1.
        let at = usize::try_from(f.nth - 1)
            .ok()
            .filter(|&at| at < pages.len())
            .ok_or_else(|| corrupt(format!("a lookup read as number {}", f.nth)))?;
        pages[at].push(f.link);
    }
    lookups
        .iter()
        .zip(pages)
        .map(|(l, rows)| into_page(rows, l.limit, |r| r.id.clone(), LinkRow::into_domain))
        .collect()
}

/// A page of the dealer's links that `filter` selects (claims left out).
pub(super) fn list_links(
    conn: &mut DbConnection,
    dealer: String,
    filter: LinkFilter,
    page: PageRequest,
    limit: usize,
) -> Result<Page<Link>, Fail> {
    let mut query = links::table
        .filter(links::dealer.eq(dealer))
        .filter(links::claim_expires_at.is_null())
        .select(LinkRow::as_select())
        .order(links::id.asc())
        .limit(limit as i64 + 1)
        .into_boxed();
    if let Some(connection) = filter.connection_id {
        query = query.filter(links::connection_id.eq(uuid_text(connection.0)));
    }
    if let Some(kind) = filter.kind {
        query = query.filter(links::kind.eq(kind.as_str()));
    }
    if let Some(billing_id) = filter.billing_id {
        query = query.filter(links::billing_id.eq(billing_id));
    }
    if let Some(external_id) = filter.external_id {
        query = query.filter(links::external_id.eq(external_id));
    }
    if let Some(parent) = filter.parent_id {
        query = query.filter(links::parent_id.eq(uuid_text(parent.0)));
    }
    if let Some(after) = page.after {
        query = query.filter(links::id.gt(after));
    }
    let rows: Vec<LinkRow> = query.load(conn)?;
    into_page(rows, limit, |r| r.id.clone(), LinkRow::into_domain)
}

/// Of `external_ids`, those linked on the connection as `kind`, in the order given.
pub(super) fn linked_external_ids(
    conn: &mut DbConnection,
    dealer: &str,
    connection_id: ConnectionId,
    kind: LinkKind,
    external_ids: Vec<String>,
) -> Result<Vec<String>, Fail> {
    let connection = uuid_text(connection_id.0);
    let mut found = HashSet::new();
    for chunk in external_ids.chunks(LOOKUP_CHUNK) {
        let rows: Vec<String> = links::table
            .filter(links::dealer.eq(dealer))
            .filter(links::connection_id.eq(&connection))
            .filter(links::kind.eq(kind.as_str()))
            .filter(links::external_id.eq_any(chunk))
            .filter(links::claim_expires_at.is_null())
            .select(links::external_id)
            .load(conn)?;
        found.extend(rows);
    }
    Ok(in_given_order(external_ids, &found))
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::r2d2::CustomizeConnection;
    use diesel::sql_types::{BigInt, Text};

    use super::*;
    use crate::db::PostgresSetup;
    use crate::scratch_postgres::{plan, ScratchSchema};

    #[derive(QueryableByName)]
    struct Prepared {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = BigInt)]
        generic_plans: i64,
    }

    /// Lookups read together find what each finds alone, in its order and
    /// pages: another dealer's link of the same billing id stays out, and a
    /// lookup asked twice gets its rows twice.
    #[test]
    fn lookups_read_together_find_what_each_finds_alone() {
        let (_schema, mut pg) = ScratchSchema::open();
        pg.batch_execute(
            "SET session_replication_role = replica; \
             INSERT INTO links (id, dealer, connection_id, kind, billing_id, external_id, \
             version, created_at, updated_at) \
             SELECT md5(g::text)::uuid::text, CASE WHEN g % 2 = 0 THEN 'd1' ELSE 'd2' END, \
             gen_random_uuid()::text, 'site', 'B-' || (g % 7), 'S' || g, 1, now(), now() \
             FROM generate_series(1, 60) AS g",
        )
        .unwrap();
        let mut conn = DbConnection::Postgresql(pg);
        let ask = |dealer: &str, billing: &str, limit: usize| Lookup {
            dealer: dealer.into(),
            billing_id: billing.into(),
            limit,
        };
        let ids = |page: &Page<Link>| -> Vec<String> {
            page.items.iter().map(|l| l.id.0.to_string()).collect()
        };
        // Each of the 14 (dealer, billing id) pairs holds 4 or 5 links.
        let cases = [
            vec![
                ask("d1", "B-1", 10),
                ask("d2", "B-1", 2),
                ask("d1", "B-9", 10),
            ],
            vec![
                ask("d1", "B-2", 3),
                ask("d1", "B-2", 3),
                ask("d2", "B-3", 50),
            ],
            vec![ask("d1", "B-4", 1), ask("d3", "B-4", 1)],
        ];
        for lookups in cases {
            let together = links_of_billing_ids(&mut conn, &lookups).unwrap();
            assert_eq!(together.len(), lookups.len());
            for (l, page) in lookups.iter().zip(&together) {
                let alone =
                    links_of_billing_id(&mut conn, &l.dealer, &l.billing_id, l.limit).unwrap();
                assert_eq!(ids(page), ids(&alone), "{l:?}");
                assert_eq!(page.next_page_token, alone.next_page_token, "{l:?}");
                assert!(page.items.iter().all(|i| i.dealer.0 == l.dealer), "{l:?}");
            }
        }
        let DbConnection::Postgresql(pg) = &mut conn else {
            unreachable!("opened on PostgreSQL")
        };
        let prepared: Vec<Prepared> = diesel::sql_query(
            "SELECT name, generic_plans FROM pg_prepared_statements \
             WHERE statement LIKE '%unnest%'",
        )
        .load(pg)
        .unwrap();
        assert_eq!(prepared.len(), 1, "prepared once, and kept");
        // On the connections it runs on, each lookup walks links_billing.
        PostgresSetup::KEPT_INDEX_PLANS
            .on_acquire(&mut conn)
            .unwrap();
        let DbConnection::Postgresql(pg) = &mut conn else {
            unreachable!("opened on PostgreSQL")
        };
        pg.batch_execute(&format!(
            "PREPARE together (text[], text[], bigint[]) AS SELECT k.nth, l.* FROM \
             unnest($1::text[], $2::text[], $3{LOOKUPS_TOGETHER_REST}"
        ))
        .unwrap();
        let plan = plan(pg, "EXECUTE together('{d1,d2}', '{B-1,B-2}', '{11,11}')");
        assert!(
            plan.iter()
                .any(|l| l.contains("Index Scan using links_billing")),
            "the lookups do not walk links_billing: {plan:#?}"
        );
    }

    /// The lookup's kept plan walks the index even when it was made while
    /// `links` held one row, and stays right once the table has grown:
    /// without `enable_seqscan = off` the plan kept would read every link.
    #[test]
    fn the_billing_id_lookup_keeps_an_index_plan_made_on_a_small_table() {
        let (_schema, mut pg) = ScratchSchema::open();
        // Links without their connections: foreign keys are not the point here.
        let link = |n: &str| {
            format!(
                "INSERT INTO links (id, dealer, connection_id, kind, billing_id, external_id, \
                 version, created_at, updated_at) SELECT gen_random_uuid()::text, 'd1', \
                 gen_random_uuid()::text, 'site', 'B-' || n, 'S' || n, 1, now(), now() FROM {n}"
            )
        };
        pg.batch_execute(&format!(
            "SET session_replication_role = replica; {}; ANALYZE links",
            link("(VALUES ('1')) AS v(n)")
        ))
        .unwrap();

        let mut conn = DbConnection::Postgresql(pg);
        PostgresSetup::KEPT_INDEX_PLANS
            .on_acquire(&mut conn)
            .unwrap();
        let found = links_of_billing_id(&mut conn, "d1", "B-1", 10).unwrap();
        assert_eq!(found.items.len(), 1);
        let DbConnection::Postgresql(pg) = &mut conn else {
            unreachable!("opened on PostgreSQL")
        };
        pg.batch_execute(&link(
            "(SELECT g::text FROM generate_series(2, 20000) AS g) AS v(n)",
        ))
        .unwrap();
        let found = links_of_billing_id(&mut conn, "d1", "B-777", 10).unwrap();
        assert_eq!(found.items[0].billing_id.as_str(), "B-777");

        let DbConnection::Postgresql(pg) = &mut conn else {
            unreachable!("opened on PostgreSQL")
        };
        let lookup: Prepared = diesel::sql_query(
            "SELECT name, generic_plans FROM pg_prepared_statements \
             WHERE statement LIKE '%FROM \"links\" WHERE%billing_id%'",
        )
        .get_result(pg)
        .unwrap_or_else(|e| panic!("the lookup is not a prepared statement: {e}"));
        assert!(
            lookup.generic_plans >= 1,
            "the lookup was planned every run"
        );
        let plan = plan(pg, &format!("EXECUTE {}('B-5', 'd1', 11)", lookup.name));
        assert!(
            plan.iter().any(|l| l.contains("Index"))
                && !plan.iter().any(|l| l.contains("Seq Scan")),
            "the kept plan does not walk an index: {plan:#?}"
        );
    }
}
