//! Reading links: the list with its filters (and the one fixed-shape query
//! billing front ends make on every screen), and which external records of
//! a connection are linked already.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;
use domain::connection::ConnectionId;
use domain::link::{Link, LinkFilter, LinkKind};
use domain::store::PageRequest;
use domain::Page;

use super::gathered::Lookup;
use super::{LinkRow, LOOKUP_CHUNK};
use crate::audit::uuid_text;
use crate::db::{in_given_order, into_page, per_backend, DbConnection, Fail};
use crate::schema::links;

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

/// The first pages of several lookups in one statement, in the order asked.
/// It reads every link of the billing ids asked for among the dealers asked
/// for (a dealer's row matching another's billing id is read and left out),
/// but no more than all the pages can hold: when it reads that many, a
/// billing id may have had more, and each lookup is read alone instead.
pub(super) fn links_of_billing_ids(
    conn: &mut DbConnection,
    lookups: &[Lookup],
) -> Result<Vec<Page<Link>>, Fail> {
    let billing_ids: Vec<&str> = lookups.iter().map(|l| l.billing_id.as_str()).collect();
    let mut dealers: Vec<&str> = lookups.iter().map(|l| l.dealer.as_str()).collect();
    dealers.sort_unstable();
    dealers.dedup();
    let room: usize = lookups.iter().map(|l| l.limit + 1).sum();
    let rows: Vec<LinkRow> = per_backend!(&mut *conn, |c| links::table
        .filter(links::billing_id.eq_any(&billing_ids))
        .filter(links::dealer.eq_any(&dealers))
        .filter(links::claim_expires_at.is_null())
        .select(LinkRow::as_select())
        .order(links::id.asc())
        .limit(room as i64)
        .load(c))?;
    if rows.len() >= room {
        return lookups
            .iter()
            .map(|l| links_of_billing_id(conn, &l.dealer, &l.billing_id, l.limit))
            .collect();
    }
    let mut of: HashMap<(&str, &str), Vec<LinkRow>> = HashMap::new();
    for row in rows {
        if let Some(l) = lookups
            .iter()
            .find(|l| l.billing_id == row.billing_id && l.dealer == row.dealer)
        {
            of.entry((&l.dealer, &l.billing_id)).or_default().push(row);
        }
    }
    lookups
        .iter()
        .map(|l| {
            // The same lookup twice in a batch gets the same rows twice.
            let rows = of
                .get(&(&l.dealer, &l.billing_id))
                .cloned()
                .unwrap_or_default();
            into_page(
                rows.into_iter().take(l.limit + 1).collect(),
                l.limit,
                |r| r.id.clone(),
                LinkRow::into_domain,
            )
        })
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
    /// pages: another dealer's link of the same billing id stays out, a
    /// lookup asked twice gets its rows twice, and a billing id with more
    /// links than the statement has room for is read alone.
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
            // Room for 4 rows, and B-4 of d1 alone has more: read one by one.
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
