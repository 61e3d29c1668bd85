//! Reading links: the list with its filters (and the one fixed-shape query
//! billing front ends make on every screen), and which external records of
//! a connection are linked already.

use std::collections::HashSet;

use diesel::prelude::*;
use domain::connection::ConnectionId;
use domain::link::{Link, LinkFilter, LinkKind};
use domain::store::PageRequest;
use domain::Page;

use super::{LinkRow, LOOKUP_CHUNK};
use crate::audit::uuid_text;
use crate::db::{in_given_order, into_page, DbConnection, Fail};
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
    let rows: Vec<LinkRow> = links::table
        .filter(links::billing_id.eq(billing_id))
        .filter(links::dealer.eq(dealer))
        .filter(links::claim_expires_at.is_null())
        .select(LinkRow::as_select())
        .order(links::id.asc())
        .limit(limit as i64 + 1)
        .load(conn)?;
    into_page(rows, limit, |r| r.id.clone(), LinkRow::into_domain)
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
