//! Persistence of crosslink: one diesel code base over SQLite and PostgreSQL
//! behind `Store`, which implements the domain's store ports. Migrations are
//! embedded here and secrets are encrypted here, so callers never see SQL,
//! a ciphertext or the key.

mod audit;
mod batches;
mod billing;
mod connections;
mod crypto;
mod db;
mod events;
mod field_issues;
mod gathered;
mod idempotency;
mod imports;
mod inbox;
mod isp;
mod jobs;
mod links;
mod migrate;
mod prepared;
mod retention;
mod schema;
#[cfg(test)]
mod scratch_postgres;
#[cfg(test)]
mod scratch_sqlite;
mod statistics;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use diesel::r2d2::{Pool, PooledConnection};
use domain::store::StoreError;

pub use connections::MAX_PAGE_SIZE;
pub use crypto::{SecretKey, SecretKeyError};
pub use jobs::{JobStats, COUNTED_STATES};
pub use migrate::{MigrateError, MigrationReport, Readiness, GROWING_TABLES};

use crypto::Cipher;
use db::{DbConnection, Fail, Manager, PostgresSetup, SqliteSetup, Target};

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Most connections the pool opens (a SQLite `:memory:` store always uses one).
    pub pool_size: u32,
    /// How long to wait for a connection, when opening and on every query.
    pub connect_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            pool_size: 10,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreOpenError {
    #[error("unsupported database URL: {0}")]
    UnsupportedUrl(String),
    #[error("cannot create the database directory {path}: {source}")]
    CreateDirectory {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to the {backend} database: {reason}")]
    Connect {
        backend: &'static str,
        reason: String,
    },
}

/// The persistence of the service. Cheap to clone: all clones share one pool.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool<Manager>,
    /// PostgreSQL only: the index reads' own connections, which keep their
    /// plans (see [`db::PostgresSetup`]). Opened on first use.
    index_reads: Option<Pool<Manager>>,
    target: Target,
    /// Shared with the store's other pools (see [`Store::another_pool`]).
    cipher: Arc<Cipher>,
    /// PostgreSQL, on a URL that asks for no TLS: billing-id lookups over
    /// each thread's own asynchronous connection (see `links::LookupClient`).
    lookup_client: Option<links::LookupClient>,
    /// Billing-id lookups waiting to be read together (PostgreSQL).
    lookups: gathered::Gathered<links::Lookup, domain::Page<domain::link::Link>>,
    /// Stages callbacks waiting to be stored together.
    callbacks: gathered::Gathered<inbox::Offered, domain::store::Received>,
    /// Links to settle (a push's read) waiting to be read together (PostgreSQL).
    settling: gathered::Gathered<links::SettleRead, domain::link_sync::LinkToSettle>,
}

impl std::fmt::Debug for Store {
    // The URL may hold a password, so only the backend is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens a pool on the database named by `url` and checks that one connection
    /// can be made. Blocking: call it at startup or through `spawn_blocking`.
    /// It does not migrate; call [`Store::migrate`] for that.
    pub fn open(url: &str, key: SecretKey, options: StoreOptions) -> Result<Store, StoreOpenError> {
        let target = Target::parse(url)?;
        Self::with_pool(target, Arc::new(Cipher::new(&key)), options, true)
    }

    /// Another pool on the same database with the same key (the job
    /// runners' own). A SQLite `:memory:` database is one connection for
    /// good, so there the store itself is answered. Blocking, as `open`.
    pub fn another_pool(&self, options: StoreOptions) -> Result<Store, StoreOpenError> {
        if self.inner.target == Target::SqliteMemory {
            return Ok(self.clone());
        }
        Self::with_pool(
            self.inner.target.clone(),
            Arc::clone(&self.inner.cipher),
            options,
            false,
        )
    }

    fn with_pool(
        target: Target,
        cipher: Arc<Cipher>,
        options: StoreOptions,
        index_reads: bool,
    ) -> Result<Store, StoreOpenError> {
        let backend = backend_of(&target);
        let mut builder = Pool::builder()
            .max_size(options.pool_size.max(1))
            .min_idle(Some(1))
            // A broken connection is found when a statement fails on it (and
            // dropped then, see `Manager::has_broken`); testing each one at
            // checkout cost a round trip per query.
            .test_on_check_out(false)
            .connection_timeout(options.connect_timeout);
        match &target {
            Target::Postgres(_) => {
                builder = builder
                    .connection_customizer(Box::new(PostgresSetup::GENERIC_PLANS_WHEN_AS_GOOD));
            }
            Target::SqliteFile(path) => {
                db::create_parent_dir(path)?;
                builder = builder.connection_customizer(Box::new(SqliteSetup));
            }
            Target::SqliteMemory => {
                // Every connection to ":memory:" is a database of its own: keep
                // exactly one, for as long as the store lives.
                builder = builder
                    .max_size(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connection_customizer(Box::new(SqliteSetup));
            }
        }
        let pool =
            builder
                .build(Manager::new(target.clone()))
                .map_err(|e| StoreOpenError::Connect {
                    backend: backend.as_str(),
                    reason: e.to_string(),
                })?;
        let index_reads = match &target {
            Target::Postgres(_) if index_reads => Some(
                Pool::builder()
                    .max_size(options.pool_size.max(1))
                    .min_idle(Some(0))
                    .test_on_check_out(false)
                    .connection_timeout(options.connect_timeout)
                    .connection_customizer(Box::new(PostgresSetup::KEPT_INDEX_PLANS))
                    .build_unchecked(Manager::new(target.clone())),
            ),
            _ => None,
        };
        let lookup_client = match &target {
            Target::Postgres(url) if index_reads.is_some() => {
                links::LookupClient::for_url(url, options.connect_timeout)
            }
            _ => None,
        };
        Ok(Store {
            inner: Arc::new(Inner {
                pool,
                index_reads,
                lookup_client,
                target,
                cipher,
                lookups: Default::default(),
                callbacks: match backend {
                    Backend::Sqlite => gathered::Gathered::one_at_a_time(),
                    Backend::Postgres => Default::default(),
                },
                settling: Default::default(),
            }),
        })
    }

    /// Calls `wake` soon after any replica enqueues a job, for as long as
    /// the process runs: on PostgreSQL a thread LISTENs to the queue's
    /// channel (reconnecting when the connection drops). On SQLite nothing
    /// is announced and this does nothing: workers poll.
    pub fn listen_for_jobs(&self, wake: impl Fn() + Send + 'static) {
        let Target::Postgres(url) = &self.inner.target else {
            return;
        };
        let url = url.clone();
        let spawned = std::thread::Builder::new()
            .name("crosslink-job-listener".into())
            .spawn(move || db::listen(&url, jobs::JOBS_CHANNEL, &wake));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the job listener; workers will poll");
        }
    }

    pub fn backend(&self) -> Backend {
        backend_of(&self.inner.target)
    }

    /// Runs `f` with a pooled connection on tokio's blocking threads, so a slow
    /// query never stalls the async workers (diesel is synchronous).
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection, &Cipher) -> Result<T, Fail> + Send + 'static,
    {
        self.run_on(|inner| &inner.pool, f).await
    }

    /// As [`Store::run`], for a read outside a transaction whose filter leads
    /// an index, the same whatever the values (a record by its key, a page of
    /// one dealer's feed): on PostgreSQL it runs on the connections that keep
    /// their plans.
    async fn run_index_read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection, &Cipher) -> Result<T, Fail> + Send + 'static,
    {
        if let Some(mut conn) = self.inline_read_connection() {
            return f(&mut conn, &self.inner.cipher).map_err(Fail::into_store_error);
        }
        self.run_on(|inner| inner.index_reads.as_ref().unwrap_or(&inner.pool), f)
            .await
    }

    /// SQLite only, and only when a connection is free at once: one for an
    /// index read on the calling thread. Such a read takes microseconds and,
    /// in WAL mode, never waits for a writer, while the hop to a blocking
    /// thread and back costs two thread wake-ups; a PostgreSQL read waits on
    /// the network, so it keeps to the blocking threads.
    fn inline_read_connection(&self) -> Option<PooledConnection<Manager>> {
        match self.inner.target {
            Target::SqliteFile(_) | Target::SqliteMemory => self.inner.pool.try_get(),
            Target::Postgres(_) => None,
        }
    }

    async fn run_on<T, F>(&self, pool: fn(&Inner) -> &Pool<Manager>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection, &Cipher) -> Result<T, Fail> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let joined = tokio::task::spawn_blocking(move || {
            let mut conn = connection(pool(&inner))?;
            f(&mut conn, &inner.cipher).map_err(Fail::into_store_error)
        })
        .await;
        match joined {
            Ok(result) => result,
            // A panic in a query is a bug: let it surface where it happened.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(StoreError::Unavailable(format!(
                "the database call was cancelled: {e}"
            ))),
        }
    }
}

/// A connection of `pool`, waiting as long as the pool allows.
fn connection(pool: &Pool<Manager>) -> Result<PooledConnection<Manager>, StoreError> {
    pool.get()
        .map_err(|e| db::unavailable(&format!("no database connection: {e}")))
}

fn backend_of(target: &Target) -> Backend {
    match target {
        Target::Postgres(_) => Backend::Postgres,
        Target::SqliteFile(_) | Target::SqliteMemory => Backend::Sqlite,
    }
}
