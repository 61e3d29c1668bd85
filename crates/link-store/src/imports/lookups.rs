//! What an import run looks up besides its own rows: which Alarm.com
//! records were imported (or are linked through ISP accounts) into which
//! billing records, and which billing customers and users exist.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;
use domain::billing::BillingId;
use domain::import::ImportKind;

use super::record_kind;
use crate::connections::corrupt;
use crate::db::{DbConnection, Fail, IN_CHUNK};
use crate::schema::{
    billing_customers, billing_users, connections, imported_records, isp_accounts,
};

/// Rows of (external id or login, billing id text) as the domain's pairs;
/// a billing id that does not read is an unreadable row, named by `what`.
fn parse_billing_pairs(
    rows: impl IntoIterator<Item = (String, String)>,
    what: &str,
) -> Result<Vec<(String, BillingId)>, Fail> {
    rows.into_iter()
        .map(|(e, b)| {
            BillingId::parse(&b)
                .map(|b| (e, b))
                .map_err(|_| corrupt(format!("{what} '{b}'")))
        })
        .collect()
}

/// Of `ids`, the billing customers (or users) of the dealer that exist.
pub(super) fn existing_billing_ids(
    conn: &mut DbConnection,
    dealer: &str,
    users: bool,
    ids: &[&str],
) -> Result<HashSet<String>, Fail> {
    let mut found = HashSet::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let rows: Vec<String> = if users {
            billing_users::table
                .filter(billing_users::dealer.eq(dealer))
                .filter(billing_users::id.eq_any(chunk))
                .select(billing_users::id)
                .load(conn)?
        } else {
            billing_customers::table
                .filter(billing_customers::dealer.eq(dealer))
                .filter(billing_customers::id.eq_any(chunk))
                .select(billing_customers::id)
                .load(conn)?
        };
        found.extend(rows);
    }
    Ok(found)
}

/// Of `external_ids`, those imported on the connection as `kind`, with their
/// billing records.
pub(super) fn imported_records(
    conn: &mut DbConnection,
    dealer: &str,
    connection_id: &str,
    kind: ImportKind,
    external_ids: &[String],
) -> Result<Vec<(String, BillingId)>, Fail> {
    let mut rows: Vec<(String, String)> = Vec::new();
    for chunk in external_ids.chunks(IN_CHUNK) {
        rows.extend(
            imported_records::table
                .filter(imported_records::connection_id.eq(connection_id))
                .filter(imported_records::kind.eq(record_kind(kind)))
                .filter(imported_records::dealer.eq(dealer))
                .filter(imported_records::external_id.eq_any(chunk))
                .select((imported_records::external_id, imported_records::billing_id))
                .load::<(String, String)>(conn)?,
        );
    }
    parse_billing_pairs(rows, "imported record billing id")
}

/// The external ids of every record imported on the dealer's connection as
/// `kind`. Only the primary key's columns are read, so the scan is of that
/// index alone (the heap too on PostgreSQL until a vacuum marks its pages
/// all-visible); the dealer is checked once, on the connection.
pub(super) fn all_imported_external_ids(
    conn: &mut DbConnection,
    dealer: &str,
    connection_id: &str,
    kind: ImportKind,
) -> Result<Vec<String>, Fail> {
    let dealers_connection = connections::table
        .filter(connections::id.eq(connection_id))
        .filter(connections::dealer.eq(dealer));
    Ok(imported_records::table
        .filter(imported_records::connection_id.eq(connection_id))
        .filter(imported_records::kind.eq(record_kind(kind)))
        .filter(diesel::dsl::exists(dealers_connection))
        .select(imported_records::external_id)
        .load(conn)?)
}

/// Every record imported on the connection as `kind`, with its billing record.
pub(super) fn all_imported_records(
    conn: &mut DbConnection,
    dealer: &str,
    connection_id: &str,
    kind: ImportKind,
) -> Result<Vec<(String, BillingId)>, Fail> {
    let rows: Vec<(String, String)> = imported_records::table
        .filter(imported_records::connection_id.eq(connection_id))
        .filter(imported_records::kind.eq(record_kind(kind)))
        .filter(imported_records::dealer.eq(dealer))
        .select((imported_records::external_id, imported_records::billing_id))
        .load(conn)?;
    parse_billing_pairs(rows, "imported record billing id")
}

/// Of `external_ids`, those linked to a billing customer through an ISP
/// account of the connection, with that customer.
pub(super) fn isp_linked_customers(
    conn: &mut DbConnection,
    dealer: &str,
    connection_id: &str,
    external_ids: &[String],
) -> Result<Vec<(String, BillingId)>, Fail> {
    // A connection has few ISP accounts next to its customer list:
    // read them all and keep those asked for.
    let wanted: HashSet<&str> = external_ids.iter().map(String::as_str).collect();
    let rows: Vec<(Option<String>, String)> = isp_accounts::table
        .filter(isp_accounts::connection_id.eq(connection_id))
        .filter(isp_accounts::dealer.eq(dealer))
        .filter(isp_accounts::external_id.is_not_null())
        .select((isp_accounts::external_id, isp_accounts::billing_customer_id))
        .load(conn)?;
    let rows = rows
        .into_iter()
        .filter_map(|(e, b)| e.filter(|e| wanted.contains(e.as_str())).map(|e| (e, b)));
    parse_billing_pairs(rows, "ISP account billing customer id")
}

/// Of `billing_ids`, the billing customers that exist, each with the
/// provider customer id of its ISP account on the connection when it has one
/// (empty while that account is being provisioned).
pub(super) fn billing_customers_among(
    conn: &mut DbConnection,
    dealer: &str,
    connection_id: &str,
    billing_ids: &[String],
) -> Result<Vec<(BillingId, Option<String>)>, Fail> {
    let ids: Vec<&str> = billing_ids.iter().map(String::as_str).collect();
    let found = existing_billing_ids(conn, dealer, false, &ids)?;
    let mut accounts: HashMap<String, String> = HashMap::new();
    let found_ids: Vec<&str> = found.iter().map(String::as_str).collect();
    for chunk in found_ids.chunks(IN_CHUNK) {
        let rows: Vec<(String, Option<String>)> = isp_accounts::table
            .filter(isp_accounts::connection_id.eq(connection_id))
            .filter(isp_accounts::billing_customer_id.eq_any(chunk))
            .select((isp_accounts::billing_customer_id, isp_accounts::external_id))
            .load(conn)?;
        accounts.extend(rows.into_iter().map(|(b, e)| (b, e.unwrap_or_default())));
    }
    found
        .into_iter()
        .map(|b| {
            let account = accounts.get(&b).cloned();
            BillingId::parse(&b)
                .map(|id| (id, account))
                .map_err(|_| corrupt(format!("billing customer id '{b}'")))
        })
        .collect()
}

/// Of `billing_ids`, the billing users that exist.
pub(super) fn billing_users_among(
    conn: &mut DbConnection,
    dealer: &str,
    billing_ids: &[String],
) -> Result<Vec<BillingId>, Fail> {
    let ids: Vec<&str> = billing_ids.iter().map(String::as_str).collect();
    existing_billing_ids(conn, dealer, true, &ids)?
        .into_iter()
        .map(|b| BillingId::parse(&b).map_err(|_| corrupt(format!("billing user id '{b}'"))))
        .collect()
}

/// The login names of the dealer's billing users that have one, with the user.
pub(super) fn billing_user_logins(
    conn: &mut DbConnection,
    dealer: &str,
) -> Result<Vec<(String, BillingId)>, Fail> {
    let rows: Vec<(String, String)> = billing_users::table
        .filter(billing_users::dealer.eq(dealer))
        .filter(billing_users::login_name.ne(""))
        .select((billing_users::login_name, billing_users::id))
        .order(billing_users::id.asc())
        .load(conn)?;
    parse_billing_pairs(rows, "billing user id")
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::sql_types::Text;

    use super::*;
    use crate::db::keyed_lookups;
    use crate::scratch_postgres::{plan, ScratchSchema};

    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = Text)]
        enable_seqscan: String,
    }

    fn plan_of_a_chunk_lookup(conn: &mut DbConnection) -> Vec<String> {
        let DbConnection::Postgresql(pg) = conn else {
            unreachable!("opened on PostgreSQL")
        };
        let ids: Vec<String> = (1..=500).map(|n| (n * 7).to_string()).collect();
        plan(
            pg,
            &format!(
                "SELECT external_id, billing_id FROM imported_records \
                 WHERE connection_id = 'c1' AND kind = 'customer' AND external_id = ANY('{{{}}}')",
                ids.join(",")
            ),
        )
    }

    fn seqscan_setting(conn: &mut DbConnection) -> String {
        let DbConnection::Postgresql(pg) = conn else {
            unreachable!("opened on PostgreSQL")
        };
        diesel::sql_query("SHOW enable_seqscan")
            .get_result::<Setting>(pg)
            .unwrap()
            .enable_seqscan
    }

    /// 500 keys of a 20,000-row table, statistics fresh: PostgreSQL reads
    /// the whole table unless the chunk's lookups price that out, and they
    /// do so for their own transaction only.
    #[test]
    fn a_chunks_keyed_lookups_walk_the_key_and_leave_the_session_as_it_was() {
        let (_schema, mut pg) = ScratchSchema::open();
        // Records without their connection: foreign keys are not the point here.
        pg.batch_execute(
            "SET session_replication_role = replica; \
             INSERT INTO imported_records SELECT 'c1', 'customer', g::text, 'd1', 'b' || g, \
             'i1', now() FROM generate_series(1, 20000) AS g; \
             ANALYZE imported_records; SET session_replication_role = DEFAULT",
        )
        .unwrap();
        let mut conn = DbConnection::Postgresql(pg);

        let unpriced = plan_of_a_chunk_lookup(&mut conn);
        assert!(
            unpriced.iter().any(|l| l.contains("Seq Scan")),
            "PostgreSQL no longer prefers reading the table here, so this test shows nothing: {unpriced:#?}"
        );
        let keyed = keyed_lookups(&mut conn, |conn| {
            assert_eq!(seqscan_setting(conn), "off");
            Ok(plan_of_a_chunk_lookup(conn))
        })
        .unwrap_or_else(|_| panic!("the keyed lookups failed"));
        assert!(
            keyed.iter().any(|l| l.contains("imported_records_pkey"))
                && !keyed.iter().any(|l| l.contains("Seq Scan")),
            "the chunk's lookup does not walk the key: {keyed:#?}"
        );
        assert_eq!(seqscan_setting(&mut conn), "on");
    }
}
