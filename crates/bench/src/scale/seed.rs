//! Seeding a million links by SQL (B9). The HTTP API takes hours for that, so
//! the service writes one record set (the template: a customer, its site and
//! system, their links, and the events and audit entries those made) and
//! `INSERT ... SELECT` copies every row of it once per record set of every
//! dealer, the ids, dealer, connection, link ids and Stages ids swapped in
//! and the timestamps moved. Every other column, NOT NULL or not, is the
//! service's own value, so a column added later is copied without a change
//! here.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{bail, Context as _};

use super::world::{self, Conn, Live};
use crate::service::{psql_query, psql_script};

/// The tables the template's rows are copied into, parents first.
pub const CLONED: &[&str] = &[
    "billing_customers",
    "billing_sites",
    "billing_systems",
    "links",
    "events",
    "audit_log",
];

/// What is seeded: `sites` record sets (a customer, a site and a system,
/// linked: two links) for each of `dealers` dealers.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub dealers: u32,
    pub sites: u32,
}

/// Rows written per table and the time taken.
#[derive(Debug)]
pub struct Seeded {
    pub rows: Vec<(String, u64, f64)>,
    pub secs: f64,
    /// Tables where the template left rows that are not copied (jobs, ...).
    pub not_copied: Vec<(String, u64)>,
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The template's values that each copy replaces with its own.
struct Template {
    dealer: String,
    /// When the template's customer was made: copies keep their rows' offsets from it.
    base: String,
    connection_id: String,
    site_link_id: String,
    system_link_id: String,
    site_no: String,
    device_id: String,
}

impl Template {
    fn read(url: &str, conn: &Conn, live: &Live) -> anyhow::Result<Self> {
        let dealer = world::dealer(live.d);
        let rows = psql_query(
            url,
            &format!(
                "SELECT kind, id FROM links WHERE dealer = {} ORDER BY kind",
                lit(&dealer)
            ),
        )?;
        let mut site_link_id = None;
        let mut system_link_id = None;
        for row in rows.lines() {
            match row.split_once('\u{1f}') {
                Some(("site", id)) => site_link_id = Some(id.to_owned()),
                Some(("system", id)) => system_link_id = Some(id.to_owned()),
                _ => bail!("unexpected template link row {row:?}"),
            }
        }
        let base = psql_query(
            url,
            &format!(
                "SELECT min(created_at) FROM billing_customers WHERE dealer = {}",
                lit(&dealer)
            ),
        )?;
        Ok(Template {
            base: base.trim().to_owned(),
            dealer,
            connection_id: conn.id.clone(),
            site_link_id: site_link_id.context("the template has no site link")?,
            system_link_id: system_link_id.context("the template has no system link")?,
            site_no: live.site_no.clone(),
            device_id: live.device_id.clone(),
        })
    }

    /// `x` with every template value in it replaced by the copy's (`c`).
    fn swap(&self, x: &str, live: &Live) -> String {
        let pairs = [
            (self.dealer.clone(), "c.dealer"),
            (world::customer_id(live.d, live.n), "c.customer_id"),
            (world::site_id(live.d, live.n), "c.site_id"),
            (world::system_id(live.d, live.n), "c.system_id"),
            (self.connection_id.clone(), "c.connection_id"),
            (self.site_link_id.clone(), "c.site_link_id"),
            (self.system_link_id.clone(), "c.system_link_id"),
        ];
        let mut e = x.to_owned();
        for (from, to) in pairs {
            e = format!("replace({e}, {}, {to})", lit(&from));
        }
        // Stages ids are short numbers that other text may hold, so they are
        // swapped only as a whole JSON string.
        for (from, to) in [
            (&self.site_no, "c.site_no"),
            (&self.device_id, "c.device_id"),
        ] {
            e = format!(
                "replace({e}, {}, '\"' || {to} || '\"')",
                lit(&format!("\"{from}\""))
            );
        }
        e
    }
}

/// The helpers of one seeding: a v7-shaped uuid from a time and a seed (ids
/// of the service are v7, in time order), each dealer's connection, the live
/// sites, and one row per record set to make.
fn setup_sql(plan: Plan, conns: &[Conn], live: &[Live], template: &Live) -> String {
    let mut sql = String::from(
        "CREATE FUNCTION scale_uuid7(ts timestamp, seed text) RETURNS text \
         LANGUAGE sql IMMUTABLE AS $$ \
         SELECT substr(t, 1, 8) || '-' || substr(t, 9, 4) || '-7' || substr(h, 1, 3) || '-' \
           || substr('89ab', 1 + get_byte(decode(substr(h, 4, 2), 'hex'), 0) % 4, 1) \
           || substr(h, 6, 3) || '-' || substr(h, 9, 12) \
         FROM (SELECT lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0') AS t, \
           md5(seed) AS h) x $$;\n\
         CREATE TABLE scale_dealers (d int PRIMARY KEY, dealer text, connection_id text);\n\
         CREATE TABLE scale_live (d int, n int, site_no text, device_id text, PRIMARY KEY (d, n));\n",
    );
    for chunk in conns.chunks(500).enumerate().map(|(k, c)| (k * 500, c)) {
        let (first, conns) = chunk;
        let values: Vec<String> = conns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let d = (first + i) as u32 + 1;
                format!("({d}, {}, {})", lit(&world::dealer(d)), lit(&c.id))
            })
            .collect();
        let _ = writeln!(
            sql,
            "INSERT INTO scale_dealers VALUES {};",
            values.join(", ")
        );
    }
    for chunk in live.chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|l| {
                format!(
                    "({}, {}, {}, {})",
                    l.d,
                    l.n,
                    lit(&l.site_no),
                    lit(&l.device_id)
                )
            })
            .collect();
        let _ = writeln!(sql, "INSERT INTO scale_live VALUES {};", values.join(", "));
    }
    // Created over the last year, deterministically; Stages ids of sites the
    // load never touches are numbers no simulator site has.
    let _ = writeln!(
        sql,
        "CREATE TABLE scale_clones AS \
         SELECT s.d, g.n, s.dealer, s.connection_id, \
           'C' || lpad(s.d::text, 5, '0') || '-' || lpad(g.n::text, 5, '0') AS customer_id, \
           'S' || lpad(s.d::text, 5, '0') || '-' || lpad(g.n::text, 5, '0') AS site_id, \
           'Y' || lpad(s.d::text, 5, '0') || '-' || lpad(g.n::text, 5, '0') AS system_id, \
           coalesce(l.site_no, (900000000 + s.d::bigint * 100000 + g.n)::text) AS site_no, \
           coalesce(l.device_id, 'D-' || (900000000 + s.d::bigint * 100000 + g.n)::text) AS device_id, \
           t.created, \
           scale_uuid7(t.created, 'site-link:' || s.d || ':' || g.n) AS site_link_id, \
           scale_uuid7(t.created, 'system-link:' || s.d || ':' || g.n) AS system_link_id \
         FROM scale_dealers s CROSS JOIN generate_series(1, {sites}) AS g(n) \
         LEFT JOIN scale_live l ON l.d = s.d AND l.n = g.n \
         CROSS JOIN LATERAL (SELECT (now() AT TIME ZONE 'UTC') - make_interval(secs => \
           (abs(hashtext(s.d || ':' || g.n)) % 31536000)::double precision) AS created) t \
         WHERE NOT (s.d = {td} AND g.n = {tn});",
        sites = plan.sites,
        td = template.d,
        tn = template.n,
    );
    sql
}

/// The `INSERT ... SELECT` that copies the template's rows of `table`.
fn copy_sql(url: &str, table: &str, t: &Template, template: &Live) -> anyhow::Result<String> {
    let columns = psql_query(
        url,
        &format!(
            "SELECT column_name, data_type, is_identity, is_generated \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = {} ORDER BY ordinal_position",
            lit(table)
        ),
    )?;
    let (mut names, mut exprs) = (Vec::new(), Vec::new());
    let mut has_seq = false;
    for row in columns.lines() {
        let f: Vec<&str> = row.split('\u{1f}').collect();
        let [name, data_type, identity, generated] = f[..] else {
            bail!("unexpected column row {row:?}");
        };
        has_seq |= name == "seq";
        if identity == "YES" || generated == "ALWAYS" {
            continue; // the database numbers it (events.seq)
        }
        let col = format!("tpl.{name}");
        let expr = match data_type {
            "timestamp without time zone" => {
                format!("c.created + ({col} - {}::timestamp)", lit(&t.base))
            }
            "text" | "character varying" if name == "id" => {
                let swapped = t.swap(&col, template);
                // An id no copy names (an event's, an audit entry's): a new v7 id.
                format!(
                    "CASE WHEN {swapped} = {col} THEN scale_uuid7(c.created, \
                     '{table}:' || {col} || ':' || c.d || ':' || c.n) ELSE {swapped} END"
                )
            }
            "text" | "character varying" if name == "external_id" => format!(
                "CASE {col} WHEN {} THEN c.site_no WHEN {} THEN c.device_id ELSE {} END",
                lit(&t.site_no),
                lit(&t.device_id),
                t.swap(&col, template)
            ),
            "text" | "character varying" => t.swap(&col, template),
            _ => col,
        };
        names.push(name.to_owned());
        exprs.push(expr);
    }
    // The template dealer's rows of this table are the template's alone:
    // each table is copied once, parents first, before the load starts.
    let order = if has_seq {
        "c.created, tpl.seq"
    } else {
        "c.created"
    };
    Ok(format!(
        "INSERT INTO {table} ({}) SELECT {} FROM {table} AS tpl CROSS JOIN scale_clones AS c \
         WHERE tpl.dealer = {} ORDER BY {order}",
        names.join(", "),
        exprs.join(", "),
        lit(&t.dealer),
    ))
}

/// Rows of the template dealer per table that has a dealer column.
fn template_rows(url: &str, dealer: &str) -> anyhow::Result<Vec<(String, u64)>> {
    let tables = psql_query(
        url,
        "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema() \
         AND column_name = 'dealer' ORDER BY table_name",
    )?;
    let mut out = Vec::new();
    for table in tables.lines() {
        let n: u64 = psql_query(
            url,
            &format!(
                "SELECT count(*) FROM {table} WHERE dealer = {}",
                lit(dealer)
            ),
        )?
        .trim()
        .parse()?;
        if n > 0 {
            out.push((table.to_owned(), n));
        }
    }
    Ok(out)
}

/// Copies the template (made by [`world::make_template`] for `template`)
/// into `plan`'s record sets, then gathers statistics and checkpoints, as a
/// database that grew over time would be.
pub fn seed(
    url: &str,
    plan: Plan,
    conns: &[Conn],
    live: &[Live],
    template: &Live,
) -> anyhow::Result<Seeded> {
    let t0 = Instant::now();
    let tconn = &conns[template.d as usize - 1];
    let t = Template::read(url, tconn, template)?;
    let present = template_rows(url, &t.dealer)?;
    let not_copied = present
        .iter()
        .filter(|(table, _)| !CLONED.contains(&table.as_str()))
        .cloned()
        .collect();
    psql_script(url, &setup_sql(plan, conns, live, template))?;
    let mut rows = Vec::new();
    for &table in CLONED {
        if !present.iter().any(|(p, _)| p == table) {
            continue;
        }
        let started = Instant::now();
        // The copies are consistent by construction (every reference is
        // swapped with the row it names); per-row foreign key checks would
        // only slow the copy down.
        let sql = format!(
            "SET session_replication_role = replica;\n{};\n",
            copy_sql(url, table, &t, template)?
        );
        psql_script(url, &sql).with_context(|| format!("copying into {table}"))?;
        let n: u64 = psql_query(url, &format!("SELECT count(*) FROM {table}"))?
            .trim()
            .parse()?;
        rows.push((table.to_owned(), n, started.elapsed().as_secs_f64()));
        eprintln!(
            "bench-scale: {table}: {n} rows ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
    }
    psql_script(
        url,
        "DROP TABLE scale_clones, scale_live, scale_dealers;\n\
         DROP FUNCTION scale_uuid7(timestamp, text);\nANALYZE;\nCHECKPOINT;\n",
    )?;
    Ok(Seeded {
        rows,
        secs: t0.elapsed().as_secs_f64(),
        not_copied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_values_are_swapped_and_stages_ids_only_whole() {
        let t = Template {
            dealer: "dealer-00001".into(),
            base: String::new(),
            connection_id: "conn".into(),
            site_link_id: "sl".into(),
            system_link_id: "yl".into(),
            site_no: "10001".into(),
            device_id: "D-1".into(),
        };
        let live = Live {
            d: 1,
            n: 1,
            site_no: "10001".into(),
            device_id: "D-1".into(),
        };
        let e = t.swap("tpl.x", &live);
        assert!(e.starts_with("replace(replace(replace("));
        for (from, to) in [
            ("'dealer-00001'", "c.dealer"),
            ("'C00001-00001'", "c.customer_id"),
            ("'S00001-00001'", "c.site_id"),
            ("'Y00001-00001'", "c.system_id"),
            ("'\"10001\"'", "'\"' || c.site_no || '\"'"),
        ] {
            assert!(e.contains(&format!("{from}, {to})")), "{from} in {e}");
        }
        assert_eq!(lit("it's"), "'it''s'");
    }
}
