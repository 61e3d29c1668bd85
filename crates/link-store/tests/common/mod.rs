//! What every store suite shares: a private database per test on SQLite (a
//! temp file) or PostgreSQL (a fresh schema on `TEST_DATABASE_URL`), and
//! `store_test!`, which runs one case on both. Without `TEST_DATABASE_URL` the
//! PostgreSQL half fails rather than skipping, so a green run means both ran.

// Each suite uses some of these helpers, none uses all.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Text};
use domain::connection::{
    AuthMode, ConnectionId, ConnectionName, ConnectionStatus, Endpoint, NewConnection, ProviderKind,
};
use domain::store::{ConnectionStore, PageRequest};
use domain::tenancy::DealerId;
use link_store::{Backend, SecretKey, Store, StoreOptions};

const PG_HINT: &str = "set TEST_DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/test";

/// One test's private database, removed when dropped.
pub struct TestDb {
    pub url: String,
    pub key: SecretKey,
    pub kind: Kind,
}

pub enum Kind {
    Sqlite { dir: PathBuf, file: PathBuf },
    Postgres { base_url: String, schema: String },
}

impl TestDb {
    pub fn sqlite() -> Self {
        let dir =
            std::env::temp_dir().join(format!("link-store-test-{}", uuid::Uuid::now_v7().simple()));
        // The store creates the directory itself; the test checks that it does.
        let file = dir.join("nested").join("crosslink.db");
        Self {
            url: format!("sqlite://{}", file.display()),
            key: SecretKey::generate(),
            kind: Kind::Sqlite { dir, file },
        }
    }

    pub fn postgres() -> Self {
        let base_url = std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| {
                panic!("the PostgreSQL half of the store suite needs a database: {PG_HINT}")
            });
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&base_url)
            .unwrap_or_else(|e| panic!("cannot connect to TEST_DATABASE_URL ({e}); {PG_HINT}"));
        diesel::sql_query(format!("CREATE SCHEMA {schema}"))
            .execute(&mut admin)
            .expect("create the test schema");
        // libpq reads `options` from the URL: every session starts in the schema.
        let sep = if base_url.contains('?') { '&' } else { '?' };
        Self {
            url: format!("{base_url}{sep}options=-c%20search_path%3D{schema}"),
            key: SecretKey::generate(),
            kind: Kind::Postgres { base_url, schema },
        }
    }

    pub fn backend(&self) -> Backend {
        match self.kind {
            Kind::Sqlite { .. } => Backend::Sqlite,
            Kind::Postgres { .. } => Backend::Postgres,
        }
    }

    pub async fn open_with(&self, key: SecretKey) -> Store {
        let url = self.url.clone();
        tokio::task::spawn_blocking(move || Store::open(&url, key, StoreOptions::default()))
            .await
            .unwrap()
            .expect("open the store")
    }

    /// Opened, not migrated.
    pub async fn open(&self) -> Store {
        self.open_with(self.key.clone()).await
    }

    /// Opened and migrated: what most cases start from.
    pub async fn store(&self) -> Store {
        let store = self.open().await;
        assert_eq!(store.backend(), self.backend());
        store.migrate().await.expect("migrate");
        store
    }

    /// Runs raw SQL beside the store, on a connection of its own.
    pub fn execute(&self, sql: &str) -> usize {
        match &self.kind {
            Kind::Sqlite { file, .. } => {
                let mut conn = SqliteConnection::establish(&file.to_string_lossy()).unwrap();
                diesel::sql_query("PRAGMA busy_timeout = 5000")
                    .execute(&mut conn)
                    .unwrap();
                diesel::sql_query(sql).execute(&mut conn).unwrap()
            }
            Kind::Postgres { .. } => {
                let mut conn = PgConnection::establish(&self.url).unwrap();
                diesel::sql_query(sql).execute(&mut conn).unwrap()
            }
        }
    }

    pub fn count(&self, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let sql = format!("SELECT count(*) AS n FROM {sql}");
        let row: Count = match &self.kind {
            Kind::Sqlite { file, .. } => {
                let mut conn = SqliteConnection::establish(&file.to_string_lossy()).unwrap();
                diesel::sql_query(sql).get_result(&mut conn).unwrap()
            }
            Kind::Postgres { .. } => {
                let mut conn = PgConnection::establish(&self.url).unwrap();
                diesel::sql_query(sql).get_result(&mut conn).unwrap()
            }
        };
        row.n
    }

    /// Everything a reader of the database could see: on SQLite the bytes of the
    /// file and its write-ahead log, on PostgreSQL every row as text plus the
    /// raw secret bytes (a bytea prints as hex, which would hide a plaintext).
    pub fn raw_contents(&self) -> Vec<u8> {
        match &self.kind {
            Kind::Sqlite { file, .. } => {
                let mut bytes = std::fs::read(file).unwrap();
                let wal = PathBuf::from(format!("{}-wal", file.display()));
                if let Ok(more) = std::fs::read(wal) {
                    bytes.extend(more);
                }
                bytes
            }
            Kind::Postgres { .. } => {
                #[derive(QueryableByName)]
                struct RowText {
                    #[diesel(sql_type = Text)]
                    row: String,
                }
                #[derive(QueryableByName)]
                struct SecretBytes {
                    #[diesel(sql_type = Binary)]
                    secret: Vec<u8>,
                }
                let mut conn = PgConnection::establish(&self.url).unwrap();
                let mut bytes = Vec::new();
                for table in [
                    "connections",
                    "credentials",
                    "inbound_credentials",
                    "webhook_subscriptions",
                ] {
                    let rows: Vec<RowText> =
                        diesel::sql_query(format!("SELECT t::text AS row FROM {table} t"))
                            .load(&mut conn)
                            .unwrap();
                    for r in rows {
                        bytes.extend(r.row.into_bytes());
                    }
                }
                for table in [
                    "credentials",
                    "inbound_credentials",
                    "webhook_subscriptions",
                ] {
                    let rows: Vec<SecretBytes> =
                        diesel::sql_query(format!("SELECT secret FROM {table}"))
                            .load(&mut conn)
                            .unwrap();
                    for r in rows {
                        bytes.extend(r.secret);
                    }
                }
                bytes
            }
        }
    }

    /// The migration folders of this backend, oldest first.
    pub fn migration_names(&self) -> Vec<String> {
        let folder = match self.kind {
            Kind::Sqlite { .. } => "sqlite",
            Kind::Postgres { .. } => "postgres",
        };
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../migrations")
            .join(folder);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.kind {
            Kind::Sqlite { dir, .. } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Kind::Postgres { base_url, schema } => {
                if let Ok(mut conn) = PgConnection::establish(base_url) {
                    let _ = diesel::sql_query(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .execute(&mut conn);
                }
            }
        }
    }
}

pub async fn run_case<F, Fut>(db: TestDb, case: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    case(db).await
}

/// `store_test!(name, |db| async move { ... })` makes `name::sqlite` and `name::postgres`.
macro_rules! store_test {
    ($name:ident, $case:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                run_case(TestDb::sqlite(), $case).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                run_case(TestDb::postgres(), $case).await
            }
        }
    };
}

pub fn dealer(name: &str) -> DealerId {
    DealerId(name.into())
}

pub fn new_connection(dealer_id: &str, name: &str, provider: ProviderKind) -> NewConnection {
    NewConnection {
        dealer: dealer(dealer_id),
        name: ConnectionName::parse(name).unwrap(),
        provider,
        endpoint: Endpoint::parse("https://stages.example.com/api").unwrap(),
        auth_mode: AuthMode::Dealer,
        auto_sync: true,
        conflict_policy: Default::default(),
        status: ConnectionStatus::Active,
        migrate_on_connect: true,
    }
}

/// A new Stages connection of `dealer_id`, by its id.
pub async fn stages_connection(store: &Store, dealer_id: &str, name: &str) -> ConnectionId {
    store
        .insert_connection(new_connection(dealer_id, name, ProviderKind::Stages))
        .await
        .unwrap()
        .id
}

pub fn first_page(limit: u32) -> PageRequest {
    PageRequest { after: None, limit }
}
