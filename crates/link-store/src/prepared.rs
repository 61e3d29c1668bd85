//! Hot writes as statements PostgreSQL keeps prepared (S14, B1).
//!
//! diesel prepares a statement once per connection only when it is sure its
//! SQL is the same for any values, and it is never sure of an UPDATE (a
//! changeset skips its `None` fields), of an upsert, or of `sql_query` (an
//! INSERT of a derived row it is sure of: see `db::insert_rows!`). So
//! PostgreSQL parsed and planned
//! each run of the push's writes: 1.1 s of the 3.0 s of planning left in
//! 4,000 Auto Sync edits (`log_planner_stats`). A statement written here has
//! one text whatever its values, so diesel keys it by that text and
//! PostgreSQL keeps its plan.

use std::borrow::Cow;
use std::marker::PhantomData;

use diesel::backend::Backend;
use diesel::query_builder::{AsChangeset, AstPass, Query, QueryFragment, QueryId};
use diesel::query_source::QuerySource;
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};
use diesel::{QueryResult, RunQueryDsl};

/// Where a value goes in a kept statement's SQL (so a kept statement cannot
/// use PostgreSQL's `?` operators of `jsonb`); each backend writes its own
/// marker there (`$1`, `$2`, ... on PostgreSQL).
const VALUE: char = '?';

/// `sql`, with a `?` where each value goes (in the order of the
/// [`KeptSql::bind`] calls), prepared once per connection and text. Only
/// for a bounded number of texts: each is kept as long as its connection.
pub(crate) fn kept_sql<'a, DB: Backend>(sql: impl Into<Cow<'a, str>>) -> KeptSql<'a, DB> {
    KeptSql {
        sql: sql.into(),
        values: Vec::new(),
    }
}

/// See [`kept_sql`].
pub(crate) struct KeptSql<'a, DB> {
    sql: Cow<'a, str>,
    values: Vec<Box<dyn Value<DB> + 'a>>,
}

impl<'a, DB: Backend> KeptSql<'a, DB> {
    /// Binds the value of the next `?`, as SQL type `ST`.
    pub(crate) fn bind<ST, V>(mut self, value: V) -> Self
    where
        DB: HasSqlType<ST>,
        ST: 'a,
        V: ToSql<ST, DB> + 'a,
    {
        self.values.push(Box::new(Typed(value, PhantomData::<ST>)));
        self
    }
}

/// A bound value, whatever its type.
trait Value<DB: Backend> {
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()>;
}

struct Typed<V, ST>(V, PhantomData<ST>);

impl<V, ST, DB> Value<DB> for Typed<V, ST>
where
    DB: Backend + HasSqlType<ST>,
    V: ToSql<ST, DB>,
{
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_bind_param::<ST, V>(&self.0)
    }
}

/// `UPDATE table SET set WHERE filter`, kept prepared like [`kept_sql`].
/// diesel's own UPDATE is never kept (see the module's comment); this one is
/// written from the same parts. Meant for a changeset that writes every
/// column (no `Option` fields, or `treat_none_as_null`), so one text serves
/// any values; one that skips its `None` fields would keep a statement for
/// each set of fields it writes.
pub(crate) fn kept_update<T, V, W>(
    table: T,
    set: V,
    filter: W,
) -> KeptUpdate<T::FromClause, V::Changeset, W>
where
    T: QuerySource,
    V: AsChangeset<Target = T>,
{
    KeptUpdate {
        table: table.from_clause(),
        set: set.as_changeset(),
        filter,
    }
}

/// See [`kept_update`].
pub(crate) struct KeptUpdate<T, V, W> {
    table: T,
    set: V,
    filter: W,
}

impl<T, V, W> QueryId for KeptUpdate<T, V, W> {
    // No static id: diesel keys the statement by its SQL and bind types.
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB, T, V, W> QueryFragment<DB> for KeptUpdate<T, V, W>
where
    DB: Backend,
    T: QueryFragment<DB>,
    V: QueryFragment<DB>,
    W: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("UPDATE ");
        self.table.walk_ast(out.reborrow())?;
        out.push_sql(" SET ");
        self.set.walk_ast(out.reborrow())?;
        out.push_sql(" WHERE ");
        self.filter.walk_ast(out.reborrow())
    }
}

impl<T, V, W, Conn> RunQueryDsl<Conn> for KeptUpdate<T, V, W> {}

/// `insert` (diesel's INSERT of one row, which it writes with one text for
/// any values) followed by `tail` (its `ON CONFLICT` and `RETURNING`
/// clauses), kept prepared like [`kept_sql`]; its rows are read by name.
pub(crate) fn kept_insert<I>(insert: I, tail: &'static str) -> KeptInsert<I> {
    KeptInsert { insert, tail }
}

/// See [`kept_insert`].
pub(crate) struct KeptInsert<I> {
    insert: I,
    tail: &'static str,
}

impl<I> QueryId for KeptInsert<I> {
    // No static id: diesel keys the statement by its SQL and bind types.
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<I> Query for KeptInsert<I> {
    type SqlType = Untyped;
}

impl<DB: Backend, I: QueryFragment<DB>> QueryFragment<DB> for KeptInsert<I> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.insert.walk_ast(out.reborrow())?;
        out.push_sql(self.tail);
        Ok(())
    }
}

impl<I, Conn> RunQueryDsl<Conn> for KeptInsert<I> {}

impl<DB> QueryId for KeptSql<'_, DB> {
    // No static id: diesel keys the statement by its SQL and bind types.
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB> Query for KeptSql<'_, DB> {
    type SqlType = Untyped;
}

impl<DB, Conn> RunQueryDsl<Conn> for KeptSql<'_, DB> {}

impl<DB: Backend> QueryFragment<DB> for KeptSql<'_, DB> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let places = self.sql.matches(VALUE).count();
        if places != self.values.len() {
            return Err(diesel::result::Error::QueryBuilderError(
                format!(
                    "a kept statement has {places} places for values and {} values",
                    self.values.len()
                )
                .into(),
            ));
        }
        for (n, part) in self.sql.split(VALUE).enumerate() {
            if n > 0 {
                self.values[n - 1].push(&mut out)?;
            }
            out.push_sql(part);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use diesel::sql_types::{BigInt, Text};

    use super::*;
    use crate::scratch_postgres::{ScratchSchema, CONNECTION_C1};

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    fn prepared_like(pg: &mut PgConnection, start: &str) -> i64 {
        diesel::sql_query(
            "SELECT count(*) AS n FROM pg_prepared_statements WHERE starts_with(statement, $1)",
        )
        .bind::<Text, _>(start)
        .get_result::<Count>(pg)
        .unwrap()
        .n
    }

    fn snapshot(pg: &mut PgConnection) -> Option<String> {
        crate::schema::links::table
            .filter(crate::schema::links::id.eq("l1"))
            .select(crate::schema::links::last_synced)
            .first(pg)
            .unwrap()
    }

    /// A schema holding link `l1` of dealer `d1`.
    fn one_link() -> (ScratchSchema, PgConnection) {
        let (schema, mut pg) = ScratchSchema::open();
        pg.batch_execute(&format!(
            "{CONNECTION_C1}; \
             INSERT INTO links (id, dealer, connection_id, kind, billing_id, external_id, \
             version, created_at, updated_at) \
             VALUES ('l1', 'd1', 'c1', 'site', 'S1', 'E1', 1, now(), now())"
        ))
        .unwrap();
        (schema, pg)
    }

    /// diesel sends its own UPDATE unprepared; the same UPDATE written as a
    /// kept statement is prepared once and runs with each run's values.
    #[test]
    fn a_kept_update_is_prepared_once_and_runs_with_each_runs_values() {
        let (_schema, mut pg) = one_link();
        use crate::schema::links;
        let ran = diesel::update(links::table.filter(links::dealer.eq("d1")))
            .set(links::last_synced.eq("by diesel"))
            .execute(&mut pg)
            .unwrap();
        assert_eq!(ran, 1);
        assert_eq!(prepared_like(&mut pg, "UPDATE \"links\""), 0);

        let set = |pg: &mut PgConnection, value: &str| {
            kept_sql("UPDATE links SET last_synced = ? WHERE dealer = ? AND id = ?")
                .bind::<Text, _>(value)
                .bind::<Text, _>("d1")
                .bind::<Text, _>("l1")
                .execute(pg)
                .unwrap()
        };
        assert_eq!(set(&mut pg, "a"), 1);
        assert_eq!(snapshot(&mut pg).as_deref(), Some("a"));
        assert_eq!(set(&mut pg, "b"), 1);
        assert_eq!(snapshot(&mut pg).as_deref(), Some("b"));
        assert_eq!(prepared_like(&mut pg, "UPDATE links SET last_synced"), 1);
    }

    /// An UPDATE written from a changeset's parts is prepared once, where
    /// diesel's own (above) is not, and writes each run's values.
    #[test]
    fn an_update_built_from_a_changeset_is_prepared_once_and_writes_each_runs_values() {
        use crate::schema::links;

        let (_schema, mut pg) = one_link();
        let set = |pg: &mut PgConnection, value: &str, dealer: &str| {
            kept_update(
                links::table,
                links::last_synced.eq(value),
                links::dealer.eq(dealer).and(links::id.eq("l1")),
            )
            .execute(pg)
            .unwrap()
        };
        assert_eq!(set(&mut pg, "a", "d1"), 1);
        assert_eq!(snapshot(&mut pg).as_deref(), Some("a"));
        assert_eq!(set(&mut pg, "b", "d2"), 0, "the filter holds");
        assert_eq!(set(&mut pg, "c", "d1"), 1);
        assert_eq!(snapshot(&mut pg).as_deref(), Some("c"));
        assert_eq!(prepared_like(&mut pg, "UPDATE \"links\" SET"), 1);
    }

    #[test]
    fn each_place_gets_the_backends_marker_and_a_missing_value_is_an_error() {
        use diesel::pg::Pg;
        use diesel::query_builder::QueryBuilder;

        let sql = |q: &KeptSql<'_, Pg>| {
            let mut out = <Pg as Backend>::QueryBuilder::default();
            q.to_sql(&mut out, &Pg).map(|()| out.finish())
        };
        let two = kept_sql::<Pg>("UPDATE t SET a = ? WHERE b = ?")
            .bind::<Text, _>("x")
            .bind::<BigInt, _>(1_i64);
        assert_eq!(sql(&two).unwrap(), "UPDATE t SET a = $1 WHERE b = $2");
        let one = kept_sql::<Pg>("UPDATE t SET a = ? WHERE b = ?").bind::<Text, _>("x");
        let e = sql(&one).unwrap_err().to_string();
        assert!(e.contains("2 places for values and 1 values"), "{e}");
    }
}
