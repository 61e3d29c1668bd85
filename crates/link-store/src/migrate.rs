//! Schema migrations, embedded in the binary from `migrations/<backend>`, and the
//! readiness check that compares them with what the database has applied.
//! On PostgreSQL several replicas may start at once: an advisory lock makes one
//! of them migrate while the others wait and then find nothing left to do.

use diesel::backend::Backend as DieselBackend;
use diesel::migration::{Migration, MigrationSource};
use diesel::pg::{Pg, PgConnection};
use diesel::sql_types::{BigInt, Bool, Text};
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::db::{DbConnection, Target};
use crate::Store;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// The advisory lock key for migrations ("crosslnk" in ASCII); any process of
/// this service that migrates takes the same one.
const MIGRATION_LOCK_KEY: i64 = 0x6372_6f73_736c_6e6b;

/// What `migrate` did: the migrations it applied, oldest first (empty when the
/// schema was already current).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationReport {
    pub applied: Vec<String>,
}

/// For `/readyz`: whether a query got through, and how many embedded migrations
/// the database lacks. `pending_migrations` is 0 when the database is unreachable
/// (unknown); check `database_reachable` first, or use [`Readiness::is_ready`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub database_reachable: bool,
    pub pending_migrations: usize,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.database_reachable && self.pending_migrations == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot reach the database to migrate it: {0}")]
    Unavailable(String),
    #[error("migration failed: {0}")]
    Failed(String),
}

type HarnessResult<T> = diesel::migration::Result<T>;

/// The tables bulk work fills, whose statistics go stale first.
pub const GROWING_TABLES: &[&str] = &[
    "links",
    "billing_customers",
    "billing_sites",
    "billing_systems",
    "billing_users",
    "imported_records",
    "import_items",
    "batch_items",
    "jobs",
    "events",
];

/// Of [`GROWING_TABLES`], those an Alarm.com import writes and reads back:
/// the others' statistics are not changed by it.
pub(crate) const IMPORT_TABLES: &[&str] = &[
    "billing_customers",
    "billing_users",
    "imported_records",
    "import_items",
    "events",
];

impl Store {
    /// Applies the embedded migrations the database lacks. Safe to call from
    /// several processes at once on one PostgreSQL database, and again later.
    pub async fn migrate(&self) -> Result<MigrationReport, MigrateError> {
        let inner = std::sync::Arc::clone(&self.inner);
        let joined = tokio::task::spawn_blocking(move || match &inner.target {
            Target::Postgres(url) => {
                // A connection of its own, not a pooled one: the session lock dies
                // with it even if the unlock below cannot be sent, so a failed
                // migration never leaves other replicas waiting forever.
                let mut conn = PgConnection::establish(url)
                    .map_err(|e| MigrateError::Unavailable(e.to_string()))?;
                migrate_postgres(&mut conn)
            }
            Target::SqliteFile(_) | Target::SqliteMemory => {
                let mut conn = inner
                    .pool
                    .get()
                    .map_err(|e| MigrateError::Unavailable(e.to_string()))?;
                match &mut *conn {
                    DbConnection::Sqlite(conn) => migrate_sqlite(conn),
                    DbConnection::Postgresql(_) => unreachable!("a SQLite target opens SQLite"),
                }
            }
        })
        .await;
        let applied = match joined {
            Ok(result) => result?,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => return Err(MigrateError::Unavailable(e.to_string())),
        };
        if !applied.is_empty() {
            tracing::info!(
                backend = self.backend().as_str(),
                ?applied,
                "migrated the database"
            );
            // New tables and indexes have no statistics until autovacuum
            // gets to them; plans should not wait for it.
            if let Err(e) = self.refresh_statistics(GROWING_TABLES).await {
                tracing::warn!(error = %e, "refreshing the planner's statistics failed");
            }
        }
        Ok(MigrationReport { applied })
    }

    /// Reachability and pending migrations, without changing anything (unlike
    /// diesel's harness, which creates its bookkeeping table when asked).
    pub async fn readiness(&self) -> Readiness {
        let pending = self
            .run(|conn, _| {
                let applied = applied_versions(conn)?;
                let embedded = match conn {
                    DbConnection::Postgresql(_) => embedded_versions::<Pg>(&POSTGRES_MIGRATIONS),
                    DbConnection::Sqlite(_) => embedded_versions::<Sqlite>(&SQLITE_MIGRATIONS),
                };
                Ok(embedded.iter().filter(|v| !applied.contains(v)).count())
            })
            .await;
        match pending {
            Ok(pending_migrations) => Readiness {
                database_reachable: true,
                pending_migrations,
            },
            Err(_) => Readiness {
                database_reachable: false,
                pending_migrations: 0,
            },
        }
    }
}

pub(crate) fn migrate_postgres(conn: &mut PgConnection) -> Result<Vec<String>, MigrateError> {
    lock(conn, "SELECT pg_advisory_lock($1)")
        .map_err(|e| MigrateError::Unavailable(format!("cannot take the migration lock: {e}")))?;
    let result = apply_pending(conn, POSTGRES_MIGRATIONS);
    let unlocked = lock(conn, "SELECT pg_advisory_unlock($1)");
    let applied = result.map_err(|e| MigrateError::Failed(e.to_string()))?;
    if let Err(e) = unlocked {
        // The connection is dropped right after, which releases the lock anyway.
        tracing::warn!(error = %e, "could not release the migration lock");
    }
    Ok(applied)
}

fn lock(conn: &mut PgConnection, sql: &str) -> diesel::QueryResult<()> {
    diesel::sql_query(sql)
        .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
        .execute(conn)
        .map(drop)
}

pub(crate) fn migrate_sqlite(conn: &mut SqliteConnection) -> Result<Vec<String>, MigrateError> {
    // One write transaction around the check and the work: two callers on one
    // file take turns, and the second finds nothing pending. diesel runs each
    // migration in a savepoint inside it.
    conn.immediate_transaction(|conn| apply_pending(conn, SQLITE_MIGRATIONS))
        .map_err(|e| MigrateError::Failed(e.to_string()))
}

fn apply_pending<C, DB>(conn: &mut C, source: EmbeddedMigrations) -> HarnessResult<Vec<String>>
where
    C: MigrationHarness<DB>,
    DB: DieselBackend,
    EmbeddedMigrations: MigrationSource<DB>,
{
    let pending = conn.pending_migrations(source)?;
    let mut applied = Vec::with_capacity(pending.len());
    for migration in &pending {
        conn.run_migration(migration.as_ref())?;
        applied.push(migration.name().to_string());
    }
    Ok(applied)
}

fn embedded_versions<DB: DieselBackend>(source: &EmbeddedMigrations) -> Vec<String>
where
    EmbeddedMigrations: MigrationSource<DB>,
{
    let migrations: Vec<Box<dyn Migration<DB>>> = source
        .migrations()
        .expect("embedded migrations are checked when the crate is built");
    migrations
        .iter()
        .map(|m| m.name().version().to_string())
        .collect()
}

#[derive(QueryableByName)]
struct Present {
    #[diesel(sql_type = Bool)]
    present: bool,
}

#[derive(QueryableByName)]
struct AppliedVersion {
    #[diesel(sql_type = Text)]
    version: String,
}

/// Versions recorded in diesel's `__diesel_schema_migrations`, empty when the
/// table does not exist yet (a database never migrated).
fn applied_versions(conn: &mut DbConnection) -> diesel::QueryResult<Vec<String>> {
    const APPLIED: &str = "SELECT version FROM __diesel_schema_migrations";
    let rows: Vec<AppliedVersion> = match conn {
        DbConnection::Postgresql(conn) => {
            let table: Present = diesel::sql_query(
                "SELECT to_regclass('__diesel_schema_migrations') IS NOT NULL AS present",
            )
            .get_result(conn)?;
            if !table.present {
                return Ok(Vec::new());
            }
            diesel::sql_query(APPLIED).load(conn)?
        }
        DbConnection::Sqlite(conn) => {
            let table: Present = diesel::sql_query(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master \
                 WHERE type = 'table' AND name = '__diesel_schema_migrations') AS present",
            )
            .get_result(conn)?;
            if !table.present {
                return Ok(Vec::new());
            }
            diesel::sql_query(APPLIED).load(conn)?
        }
    };
    Ok(rows.into_iter().map(|r| r.version).collect())
}
