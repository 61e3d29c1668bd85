//! The state of a connection's migration job, read with the connection.

use diesel::sql_types::{Nullable, Text};
use diesel::QueryResult;

use crate::schema::connections;

/// The state of the connection's migration job, looked up by its id. Raw
/// SQL: a correlated subquery goes to the job's primary key whatever the
/// planner's statistics say, where SQLite planned the equivalent left join
/// as a read of the whole queue once `jobs` had been analyzed nearly empty.
/// A type of its own, not a `sql()` literal: diesel prepares a statement only
/// when its SQL follows from its type, so with a literal every connection
/// read (one per Stages callback) was parsed again by PostgreSQL.
#[derive(Debug, Clone, Copy, diesel::query_builder::QueryId)]
pub(crate) struct MigrationState;

impl diesel::Expression for MigrationState {
    type SqlType = Nullable<Text>;
}

impl<DB: diesel::backend::Backend> diesel::query_builder::QueryFragment<DB> for MigrationState {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        out.push_sql("(SELECT jobs.state FROM jobs WHERE jobs.id = connections.migration_job_id)");
        Ok(())
    }
}

// Wherever `connections` can be selected from (a join of it included).
impl<QS> diesel::AppearsOnTable<QS> for MigrationState where
    connections::id: diesel::AppearsOnTable<QS>
{
}
impl<QS> diesel::SelectableExpression<QS> for MigrationState where
    connections::id: diesel::SelectableExpression<QS>
{
}
impl diesel::expression::ValidGrouping<()> for MigrationState {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}
