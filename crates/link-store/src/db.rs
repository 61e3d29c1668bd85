//! The database connection over both backends (B9: SQLite by default,
//! PostgreSQL for several replicas): the `MultiConnection` enum, the
//! choice of backend from the URL, the r2d2 pool and its SQLite settings, and the
//! few helpers the repositories share (backend-specific statements, transactions).

use std::path::{Path, PathBuf};

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{CustomizeConnection, ManageConnection, R2D2Connection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use domain::store::StoreError;

use crate::StoreOpenError;

/// One connection to either backend. Queries written against it run on both;
/// match on the variant only where the SQL differs.
#[derive(diesel::MultiConnection)]
pub(crate) enum DbConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// Runs `$body` with `$c` bound to the inner connection, for statements the
/// `MultiConnection` cannot express (upserts): the same diesel DSL, type-checked
/// once per backend.
macro_rules! per_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConnection::Postgresql($c) => $body,
            $crate::db::DbConnection::Sqlite($c) => $body,
        }
    };
}
pub(crate) use per_backend;

/// Inserts the slice `$rows` of Insertable rows into `$table` (a table of
/// `schema`), in the order given, and gives how many went in. PostgreSQL
/// takes them in one binary `COPY`: a multi-row `INSERT` has a text for each
/// row count, which it parsed and planned at each run (a fifth of its CPU in
/// an import of 100,000 customers). SQLite takes multi-row inserts of 500
/// rows: up to 25 columns stay under its 32,766 bound values. Rows derive
/// Insertable with `treat_none_as_default_value = false` (a `None` is NULL),
/// or this does not compile: by default every derived value may be DEFAULT,
/// which has no `COPY` form and which diesel sends to SQLite a row per
/// statement (`treat_none_as_null` is for updates; it does not do this).
/// Every derived Insertable of this crate says so (no column of ours has a
/// default a `None` should take): it also lets diesel keep a single-row
/// INSERT prepared, which it will not do when a value may be DEFAULT.
macro_rules! insert_rows {
    ($conn:expr, $table:ident, $rows:expr) => {{
        let rows = $rows;
        match $conn {
            $crate::db::DbConnection::Postgresql(pg) => {
                diesel::prelude::ExecuteCopyFromDsl::execute(
                    diesel::copy_from($crate::schema::$table::table).from_insertable(rows),
                    pg,
                )
            }
            $crate::db::DbConnection::Sqlite(c) => rows.chunks(500).try_fold(0, |n, chunk| {
                diesel::RunQueryDsl::execute(
                    diesel::insert_into($crate::schema::$table::table).values(chunk),
                    c,
                )
                .map(|m| n + m)
            }),
        }
    }};
}
pub(crate) use insert_rows;

/// Where the data lives, read from the database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Postgres(String),
    SqliteFile(PathBuf),
    /// One private in-memory database; the pool keeps a single connection to it.
    SqliteMemory,
}

impl Target {
    /// `postgres://` / `postgresql://` → PostgreSQL; `sqlite://PATH`, `sqlite:PATH`
    /// or a plain path → a SQLite file; `sqlite::memory:` → SQLite in memory.
    pub(crate) fn parse(url: &str) -> Result<Self, StoreOpenError> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let tls_chosen = std::env::var_os("PGSSLMODE").is_some();
            return Ok(Self::Postgres(loopback_tls_if_needed(url, tls_chosen)));
        }
        if matches!(url, "sqlite::memory:" | "sqlite://:memory:" | ":memory:") {
            return Ok(Self::SqliteMemory);
        }
        let path = if let Some(path) = url.strip_prefix("sqlite://") {
            path
        } else if let Some(path) = url.strip_prefix("sqlite:") {
            path
        } else if let Some((scheme, _)) = url.split_once("://") {
            return Err(StoreOpenError::UnsupportedUrl(format!(
                "the scheme '{scheme}' is not supported; use postgres://, sqlite:// or a file path"
            )));
        } else {
            url
        };
        if path.is_empty() {
            return Err(StoreOpenError::UnsupportedUrl(
                "the SQLite URL names no file".into(),
            ));
        }
        Ok(Self::SqliteFile(PathBuf::from(path)))
    }
}

/// A PostgreSQL URL whose every host is a loopback address, and that chooses
/// no TLS mode (nor does `PGSSLMODE`), gets `sslmode=allow`: a plain
/// connection first, TLS only if the server refuses it.
///
/// libpq's default, `prefer`, negotiates TLS whenever the server has it on
/// (Debian's packages do), and on a loopback connection that protects nothing
/// (the bytes never leave the host) while costing a cipher pass on every
/// round trip: link lookups answered 9,934/s with it and 11,621/s without,
/// and a push took 5.18 against 4.68 ms of CPU (crosslink-bench, PostgreSQL,
/// 2,000 links, one run each). A server that accepts only TLS still gets it.
fn loopback_tls_if_needed(url: &str, tls_chosen: bool) -> String {
    let (rest, query) = url.split_once('?').unwrap_or((url, ""));
    let chosen_in_url = query.split('&').any(|pair| {
        let key = pair.split_once('=').map_or(pair, |(key, _)| key);
        matches!(key, "sslmode" | "host" | "hostaddr" | "service")
    });
    let authority = rest
        .split_once("://")
        .map_or("", |(_, after)| after.split('/').next().unwrap_or(""));
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let loopback = !hosts.is_empty() && hosts.split(',').all(is_loopback_host);
    if tls_chosen || chosen_in_url || !loopback {
        return url.to_owned();
    }
    let sep = match url.chars().last() {
        _ if !url.contains('?') => "?",
        Some('?' | '&') => "",
        _ => "&",
    };
    format!("{url}{sep}sslmode=allow")
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port.
fn is_loopback_host(host_port: &str) -> bool {
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Establishes connections of the backend the URL named. diesel's own
/// `ConnectionManager<DbConnection>` tries every backend in turn, so an
/// unreachable PostgreSQL would be reported as a SQLite error (or, worse, a
/// file named like the URL); this manager never guesses.
#[derive(Debug)]
pub(crate) struct Manager {
    target: Target,
}

impl Manager {
    pub(crate) fn new(target: Target) -> Self {
        Self { target }
    }
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        let conn = match &self.target {
            Target::Postgres(url) => PgConnection::establish(url).map(DbConnection::Postgresql),
            Target::SqliteFile(path) => {
                SqliteConnection::establish(&path.to_string_lossy()).map(DbConnection::Sqlite)
            }
            Target::SqliteMemory => {
                SqliteConnection::establish(":memory:").map(DbConnection::Sqlite)
            }
        };
        conn.map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}

/// Settings every SQLite connection gets when the pool opens it. The busy timeout
/// comes first: switching to WAL needs a lock another connection may hold.
///
/// The page cache is 8 MiB a connection (`cache_size` in KiB when negative),
/// not SQLite's 2 MiB: with 100,000 links a lookup's index pages did not
/// fit, and reading them from the file again (`pread`) was 3 % of a link
/// lookup's CPU (perf). A connection fills its cache only as it reads, so
/// an idle service does not grow.
#[derive(Debug)]
pub(crate) struct SqliteSetup;

pub(crate) const SQLITE_SETUP: &str = "PRAGMA busy_timeout = 10000; \
     PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = NORMAL; \
     PRAGMA foreign_keys = ON; \
     PRAGMA cache_size = -8192;";

impl CustomizeConnection<DbConnection, diesel::r2d2::Error> for SqliteSetup {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(SQLITE_SETUP)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Settings a PostgreSQL connection gets when its pool opens it.
///
/// diesel prepares its statements once per connection, and after five runs
/// PostgreSQL keeps a generic plan for one, made without the parameters'
/// values, whenever it costs no more than the plans made for them. Such a
/// plan lives until ANALYZE runs on one of its tables. Made while a table
/// was nearly empty, it read the whole table once it had grown (a lookup by
/// key scanned 20,000 links); so the store analyzes every table that changed
/// by a tenth since it was last analyzed, every few seconds
/// ([`Store::refresh_stale_statistics`](crate::Store::refresh_stale_statistics)),
/// and its main pool keeps PostgreSQL's choice
/// ([`PostgresSetup::GENERIC_PLANS_WHEN_AS_GOOD`]). Planning each run instead
/// was 23 % of all CPU in an Auto Sync run (perf, 10,000 edits over 2,000
/// sites): the push's read of its link, connection, credential and billing
/// record took 1.5 ms to plan and far less to run. Kept plans settled
/// 440 and 461 edits/s there against 356 and 339 (crosslink-bench, two
/// alternating pairs of runs).
///
/// The link lookup by billing id, the read billing front ends make on every
/// screen, has a pool of its own ([`PostgresSetup::KEPT_INDEX_PLANS`]),
/// which keeps one generic plan per statement from the first run and has
/// sequential scans priced out, so the plan it keeps walks an index even
/// when it was made on an empty table. Only reads whose filter leads an
/// index go through that pool.
///
/// `plan_cache_mode` is a plain session setting (any role may set it) of
/// PostgreSQL 12 and later; an older server keeps its default, with a warning.
#[derive(Debug)]
pub(crate) struct PostgresSetup(&'static str);

impl PostgresSetup {
    pub(crate) const GENERIC_PLANS_WHEN_AS_GOOD: Self = Self("SET plan_cache_mode = auto");
    pub(crate) const KEPT_INDEX_PLANS: Self =
        Self("SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off");

    /// Its settings one at a time (for a connection that is not the pool's).
    pub(crate) fn statements(&self) -> impl Iterator<Item = &'static str> {
        self.0.split("; ")
    }
}

impl CustomizeConnection<DbConnection, diesel::r2d2::Error> for PostgresSetup {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), diesel::r2d2::Error> {
        match conn.batch_execute(self.0) {
            // PostgreSQL 11 or older: 'unrecognized configuration parameter'.
            Err(DieselError::DatabaseError(_, info))
                if info.message().contains("plan_cache_mode") =>
            {
                tracing::warn!(
                    error = info.message(),
                    "this PostgreSQL cannot choose how prepared statements are planned (version 12 or later can)"
                );
                Ok(())
            }
            other => other.map_err(diesel::r2d2::Error::QueryError),
        }
    }
}

/// Creates the directory a SQLite file goes in, so a newcomer's `./data/x.db` just works.
pub(crate) fn create_parent_dir(path: &Path) -> Result<(), StoreOpenError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| StoreOpenError::CreateDirectory {
                path: dir.to_owned(),
                source,
            })
        }
        _ => Ok(()),
    }
}

/// SQLite has one writer at a time. The write transactions of this process
/// take turns on this lock (a waiter wakes as it frees) rather than on SQLite's busy handler,
/// which sleeps 1, 2, 5, 10 ms... between looks and so adds milliseconds to
/// every write under load. (Another process on the same file still meets the
/// busy handler.)
static SQLITE_WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` in a transaction that holds the write lock from its first statement.
/// On SQLite a deferred transaction that reads and then writes fails at once with
/// SQLITE_BUSY when another writer got in between (the busy timeout does not
/// apply to that upgrade); `BEGIN IMMEDIATE` waits for the lock instead.
/// PostgreSQL takes row locks as it goes, so a plain transaction is enough there.
pub(crate) fn write_transaction<T, E>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<DieselError>,
{
    if let DbConnection::Sqlite(inner) = &mut *conn {
        let _turn = SQLITE_WRITER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN IMMEDIATE")?;
        // From here the enum's transaction manager sees the open transaction of the
        // inner connection, so commit and rollback go through it as usual.
        return match f(conn) {
            Ok(value) => {
                <DbConnection as TransactionManager<DbConnection>>::commit_transaction(conn)?;
                Ok(value)
            }
            Err(error) => {
                match <DbConnection as TransactionManager<DbConnection>>::rollback_transaction(conn)
                {
                    Ok(()) | Err(DieselError::BrokenTransactionManager) => Err(error),
                    Err(rollback) => Err(rollback.into()),
                }
            }
        };
    }
    conn.transaction(f)
}

/// Prices sequential scans out for the rest of the open transaction, whose
/// reads are all lookups of at most [`IN_CHUNK`] keys of a primary or unique
/// key (PostgreSQL; SQLite has no such setting and picks the keys). As a
/// bulk job grows its tables past what ANALYZE last saw, the planner came to
/// price 500 index probes above reading the whole table: by its 75,000th
/// record, an import of 90,017 customers had read 9.2 million rows that way,
/// each chunk more than the last (none with this).
pub(crate) fn keyed_reads_only(conn: &mut DbConnection) -> Result<(), Fail> {
    if let DbConnection::Postgresql(pg) = conn {
        use diesel::RunQueryDsl;
        crate::prepared::kept_sql("SELECT set_config('enable_seqscan', 'off', true)")
            .execute(pg)?;
    }
    Ok(())
}

/// Runs `f`, a few keyed lookups, in a transaction of its own with
/// [`keyed_reads_only`] (on SQLite, as it is).
pub(crate) fn keyed_lookups<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, Fail>,
) -> Result<T, Fail> {
    if !matches!(conn, DbConnection::Postgresql(_)) {
        return f(conn);
    }
    conn.transaction(|conn| {
        keyed_reads_only(conn)?;
        f(conn)
    })
}

/// The error inside a blocking database call: a domain answer decided there, or
/// a diesel error still to be classified. Turned into `StoreError` once, at the end.
#[derive(Debug)]
pub(crate) enum Fail {
    Store(StoreError),
    Db(DieselError),
}

impl From<DieselError> for Fail {
    fn from(e: DieselError) -> Self {
        Self::Db(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl Fail {
    pub(crate) fn into_store_error(self) -> StoreError {
        match self {
            Self::Store(e) => e,
            Self::Db(DieselError::NotFound) => StoreError::NotFound,
            Self::Db(e) if is_unreachable(&e) => unavailable(&e),
            Self::Db(e) => {
                tracing::error!(error = %e, "database statement failed");
                StoreError::Failed(e.to_string())
            }
        }
    }
}

/// Whether an error says the database could not be used right now (lost,
/// busy, or asking for a retry), as opposed to refusing a statement: only
/// the first is a 503 and a transient job failure.
fn is_unreachable(e: &DieselError) -> bool {
    match e {
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::SerializationFailure,
            _,
        ) => true,
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            // Neither backend gives diesel a kind for these.
            let message = info.message().to_ascii_lowercase();
            [
                "database is locked",
                "database table is locked",
                "busy",
                "deadlock",
                "could not serialize",
                "terminating connection",
                "server closed the connection",
                "connection",
                "canceling statement",
                "the database system is",
                "too many clients",
                "out of memory",
                "disk",
            ]
            .iter()
            .any(|m| message.contains(m))
        }
        DieselError::DatabaseError(..)
        | DieselError::DeserializationError(_)
        | DieselError::SerializationError(_)
        | DieselError::QueryBuilderError(_)
        | DieselError::InvalidCString(_) => false,
        // Transaction-manager states and anything newer: a connection that
        // went away mid-transaction shows up here.
        _ => true,
    }
}

/// Logs a database error and answers `Unavailable`. diesel's messages carry no
/// bound values, so no secret reaches the log or the text.
pub(crate) fn unavailable(e: &dyn std::fmt::Display) -> StoreError {
    tracing::error!(error = %e, "database error");
    StoreError::Unavailable(e.to_string())
}

/// Turns a unique violation into `Conflict(message)`, anything else into `Fail::Db`.
pub(crate) fn conflict_on_unique<T>(
    result: Result<T, DieselError>,
    message: impl FnOnce() -> String,
) -> Result<T, Fail> {
    match result {
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            Err(Fail::Store(StoreError::Conflict(message())))
        }
        other => other.map_err(Fail::Db),
    }
}

/// Turns a foreign key violation into `Conflict(message)`, anything else into `Fail::Db`:
/// a referenced row went missing, or a referencing one appeared, under a check.
pub(crate) fn conflict_on_foreign_key<T>(
    result: Result<T, DieselError>,
    message: impl FnOnce() -> String,
) -> Result<T, Fail> {
    match result {
        Err(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)) => {
            Err(Fail::Store(StoreError::Conflict(message())))
        }
        other => other.map_err(Fail::Db),
    }
}

/// Keyset paging: the query asked for one row more than `limit`; a row beyond
/// the limit means another page follows, whose cursor is the last row kept.
pub(crate) fn into_page<R, T>(
    mut rows: Vec<R>,
    limit: usize,
    cursor: impl Fn(&R) -> String,
    convert: impl FnMut(R) -> Result<T, Fail>,
) -> Result<domain::Page<T>, Fail> {
    let next_page_token = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(cursor)
    } else {
        None
    };
    let items = rows.into_iter().map(convert).collect::<Result<_, _>>()?;
    Ok(domain::Page {
        items,
        next_page_token,
    })
}

/// The page size a list uses, whatever the caller asked.
pub(crate) fn page_limit(page: &domain::store::PageRequest) -> usize {
    page.limit.clamp(1, crate::MAX_PAGE_SIZE) as usize
}

/// Large `IN (...)` lists go in slices of this many binds, well under either
/// backend's limit on bound parameters.
pub(crate) const IN_CHUNK: usize = 500;

/// The given ids that were found, in the order given, each once.
pub(crate) fn in_given_order(
    ids: Vec<String>,
    found: &std::collections::HashSet<String>,
) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    ids.into_iter()
        .filter(|id| found.contains(id) && seen.insert(id.clone()))
        .collect()
}

/// How often the listener looks for notifications that arrived; reading
/// them costs no round trip to the server.
const LISTEN_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// LISTENs on `channel` and calls `wake` once per look that found
/// notifications; never returns. A lost connection is opened again after a
/// pause (the workers' polling covers the gap).
pub(crate) fn listen(url: &str, channel: &str, wake: &dyn Fn()) {
    loop {
        match PgConnection::establish(url) {
            Ok(mut conn) => {
                let listening = diesel::RunQueryDsl::execute(
                    diesel::sql_query(format!("LISTEN {channel}")),
                    &mut conn,
                );
                if let Err(e) = listening {
                    tracing::warn!(error = %e, "LISTEN failed; retrying");
                } else {
                    loop {
                        let mut heard = false;
                        let mut broken = None;
                        for note in conn.notifications_iter() {
                            match note {
                                Ok(_) => heard = true,
                                Err(e) => {
                                    broken = Some(e);
                                    break;
                                }
                            }
                        }
                        if heard {
                            wake();
                        }
                        if let Some(e) = broken {
                            tracing::warn!(error = %e, "the job listener lost its connection");
                            break;
                        }
                        std::thread::sleep(LISTEN_EVERY);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "the job listener cannot connect"),
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// Text columns of rows, bound on PostgreSQL as one array per column and
/// read back as rows by `unnest`: one statement, and one kept plan, for any
/// number of rows.
pub(crate) struct Columns<const N: usize>(pub(crate) [Vec<String>; N]);

impl<const N: usize> Default for Columns<N> {
    fn default() -> Self {
        Self(std::array::from_fn(|_| Vec::new()))
    }
}

impl<const N: usize> Columns<N> {
    pub(crate) fn push(&mut self, row: [String; N]) {
        for (column, value) in self.0.iter_mut().zip(row) {
            column.push(value);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0[0].is_empty()
    }
}

#[cfg(test)]
mod tests {
    use diesel::{QueryableByName, RunQueryDsl};

    use super::*;

    #[test]
    fn a_pooled_sqlite_connection_gets_its_settings() {
        #[derive(QueryableByName)]
        struct CacheSize {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            cache_size: i64,
        }
        let mut conn = DbConnection::Sqlite(SqliteConnection::establish(":memory:").unwrap());
        SqliteSetup.on_acquire(&mut conn).unwrap();
        let size: CacheSize = diesel::sql_query("PRAGMA cache_size")
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(size.cache_size, -8192, "an 8 MiB page cache");
    }

    #[test]
    fn only_a_loopback_server_with_no_tls_mode_chosen_is_reached_plain_first() {
        for (url, plain_first) in [
            (
                "postgres://u:p@127.0.0.1:5432/db",
                "postgres://u:p@127.0.0.1:5432/db?sslmode=allow",
            ),
            (
                "postgresql://localhost/db?options=x",
                "postgresql://localhost/db?options=x&sslmode=allow",
            ),
            (
                "postgres://[::1]:5433/db",
                "postgres://[::1]:5433/db?sslmode=allow",
            ),
            (
                "postgres://127.0.0.2,localhost:5433/db",
                "postgres://127.0.0.2,localhost:5433/db?sslmode=allow",
            ),
            (
                "postgres://u@127.0.0.1",
                "postgres://u@127.0.0.1?sslmode=allow",
            ),
            (
                "postgres://localhost/db?",
                "postgres://localhost/db?sslmode=allow",
            ),
        ] {
            assert_eq!(loopback_tls_if_needed(url, false), plain_first, "{url}");
            // PGSSLMODE is libpq's to apply.
            assert_eq!(loopback_tls_if_needed(url, true), url, "{url}");
        }
        for kept in [
            "postgres://u@db.example.com/db",
            "postgres://u@10.0.0.5:5432/db",
            "postgres://127.0.0.1,db.example.com/db",
            "postgres://u@127.0.0.1/db?sslmode=require",
            "postgres://u@127.0.0.1/db?host=db.example.com",
            "postgres:///db",
            "postgres://u@/db?host=/var/run/postgresql",
        ] {
            assert_eq!(loopback_tls_if_needed(kept, false), kept);
        }
    }

    #[test]
    fn the_url_scheme_picks_the_backend() {
        let pg = "postgres://u@h:5432/db";
        assert_eq!(Target::parse(pg).unwrap(), Target::Postgres(pg.into()));
        let pg = "postgresql://h/db?options=-c%20search_path%3Dx";
        assert_eq!(Target::parse(pg).unwrap(), Target::Postgres(pg.into()));
        for (url, path) in [
            ("sqlite://data/crosslink.db", "data/crosslink.db"),
            ("sqlite:///var/lib/crosslink.db", "/var/lib/crosslink.db"),
            ("sqlite:data/crosslink.db", "data/crosslink.db"),
            ("./data/crosslink.db", "./data/crosslink.db"),
            ("crosslink.db", "crosslink.db"),
        ] {
            assert_eq!(
                Target::parse(url).unwrap(),
                Target::SqliteFile(path.into()),
                "{url}"
            );
        }
        assert_eq!(
            Target::parse("sqlite::memory:").unwrap(),
            Target::SqliteMemory
        );
        assert!(Target::parse("mysql://h/db").is_err());
        assert!(Target::parse("sqlite://").is_err());
        assert!(Target::parse("").is_err());
    }
}
