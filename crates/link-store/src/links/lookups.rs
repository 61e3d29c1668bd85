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

/// A page of the dealer's links that `filter` selects (claims left out).
pub(super) fn list_links(
    conn: &mut DbConnection,
    dealer: String,
    filter: LinkFilter,
    page: PageRequest,
    limit: usize,
) -> Result<Page<Link>, Fail> {
    // The lookup billing front ends make on every screen: a query of
    // one fixed shape, which each connection prepares once (a boxed
    // query of varying filters is parsed and planned every time).
    if let LinkFilter {
        billing_id: Some(billing_id),
        connection_id: None,
        kind: None,
        external_id: None,
        parent_id: None,
    } = &filter
    {
        if page.after.is_none() {
            let rows: Vec<LinkRow> = links::table
                .filter(links::billing_id.eq(billing_id))
                .filter(links::dealer.eq(&dealer))
                .filter(links::claim_expires_at.is_null())
                .select(LinkRow::as_select())
                .order(links::id.asc())
                .limit(limit as i64 + 1)
                .load(conn)?;
            return into_page(rows, limit, |r| r.id.clone(), LinkRow::into_domain);
        }
    }
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
