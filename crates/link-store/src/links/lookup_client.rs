//! S14, PostgreSQL: the link lookup by billing id over an asynchronous
//! connection that lives on the calling thread's own runtime.
//!
//! Through diesel (synchronous) a lookup took four thread wake-ups: the HTTP
//! worker handed it to a blocking thread, which woke the database backend,
//! was woken by its answer, and woke the worker again. On two cores, with
//! PostgreSQL on the same machine, those wake-ups were most of a lookup's
//! cost (perf: the kernel's wake-up path led every process's profile) and of
//! its tail under load. Here the worker writes the query on its own socket
//! and is woken once by the answer; the lookups that arrive on one worker
//! while its statements run go together in its next.
//!
//! Each thread that looks up gets its own connection, opened on first use
//! and again after it closed, with the same session settings as the index
//! reads' pool (a kept generic plan that walks the index). The client speaks
//! no TLS, so it is used only where libpq would not use TLS either: a URL
//! that says `sslmode=disable`, or `allow` (which the store gives loopback
//! URLs, see `db::loopback_tls_if_needed`). Anywhere else, and whenever this
//! path cannot answer (no connection, a dropped one), the lookup goes the
//! diesel way, which answers with the store's own errors; a read is safe to
//! ask twice.

use std::cell::RefCell;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use domain::link::Link;
use domain::store::StoreError;
use domain::Page;
use tokio::sync::oneshot;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use super::lookups::{Lookup, LOOKUPS_TOGETHER_REST};
use super::LinkRow;
use crate::db::{into_page, PostgresSetup};
use crate::gathered::{each_failed, Gathered};

/// A link's columns in the order [`link_row`] reads them.
const LINK_COLUMNS: [&str; 12] = [
    "id",
    "dealer",
    "connection_id",
    "kind",
    "billing_id",
    "external_id",
    "parent_id",
    "version",
    "created_at",
    "updated_at",
    "last_synced",
    "claim_expires_at",
];

/// [`LINK_COLUMNS`] as a select list, each name after `table`.
fn link_columns(table: &str) -> String {
    LINK_COLUMNS.map(|c| format!("{table}{c}")).join(", ")
}

/// After a connection could not be opened, how long lookups go the diesel
/// way before this path tries again (so a refusing server is not asked on
/// every lookup).
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// The store's end of the asynchronous lookups: where to connect, and when
/// this path may be tried again.
pub(crate) struct LookupClient {
    config: Config,
    /// The threads' connections find their store by this (see [`SESSIONS`]).
    owner: Arc<()>,
    /// While set and in the future, this path is not tried.
    resting_until: Mutex<Option<Instant>>,
    /// Lookups this path answered (tests look at it).
    answered: AtomicU64,
}

/// One thread's connection to one store's database and its prepared lookups.
struct Session {
    client: Client,
    lookup: Statement,
    together: Statement,
}

/// One thread's connection slot for one store: connected once, however many
/// of the thread's lookups wait for it. The lookups that arrive while
/// [`MOST_RUNNERS`](crate::gathered::MOST_RUNNERS) statements run on it go
/// together in the next (each one alone cost the database a round of its
/// own: a wake-up, a portal, a send).
#[derive(Default)]
struct Slot {
    session: tokio::sync::OnceCell<Session>,
    waiting: Gathered<Lookup, Page<Link>>,
}

thread_local! {
    /// This thread's slots, by the store they belong to. A slot whose store
    /// is gone is dropped (and its connection closed) on the next look.
    static SESSIONS: RefCell<Vec<(Weak<()>, Arc<Slot>)>> = const { RefCell::new(Vec::new()) };
}

impl LookupClient {
    /// The client for `url`, when the URL asks for no TLS and
    /// `tokio-postgres` understands all of it; none otherwise.
    pub(crate) fn for_url(url: &str, connect_timeout: Duration) -> Option<Self> {
        let mut config = plain_config(url)?;
        config.connect_timeout(connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("crosslink lookups");
        }
        Some(Self {
            config,
            owner: Arc::new(()),
            resting_until: Mutex::new(None),
            answered: AtomicU64::new(0),
        })
    }

    /// The first page of the lookup's links, or none when this path cannot
    /// answer now (the caller then reads the diesel way).
    pub(crate) async fn lookup(&self, lookup: &Lookup) -> Option<Page<Link>> {
        if self.resting() {
            return None;
        }
        let slot = self.slot();
        if let Err(e) = slot.session.get_or_try_init(|| self.connect()).await {
            tracing::warn!(
                error = %e,
                "link lookups cannot open their own PostgreSQL connection; \
                 they go through the pool for a while"
            );
            self.rest();
            return None;
        }
        let (answer, answered) = oneshot::channel();
        if slot.waiting.push(lookup.clone(), answer) {
            tokio::spawn(read_until_none_wait(Arc::clone(&slot)));
        }
        let page = answered.await.ok()?.ok()?;
        self.answered.fetch_add(1, Ordering::Relaxed);
        Some(page)
    }

    /// This thread's slot for this store: a fresh one when there was none or
    /// its connection closed. Slots of dropped stores go on the way.
    fn slot(&self) -> Arc<Slot> {
        SESSIONS.with(|sessions| {
            let mut sessions = sessions.borrow_mut();
            sessions.retain(|(owner, _)| owner.strong_count() > 0);
            let mine = sessions
                .iter_mut()
                .find(|(owner, _)| owner.as_ptr() == Arc::as_ptr(&self.owner));
            match mine {
                Some((_, slot)) => {
                    if slot.session.get().is_some_and(|s| s.client.is_closed()) {
                        *slot = Arc::default();
                    }
                    Arc::clone(slot)
                }
                None => {
                    let slot = Arc::<Slot>::default();
                    sessions.push((Arc::downgrade(&self.owner), Arc::clone(&slot)));
                    slot
                }
            }
        })
    }

    /// A new connection, driven by a task on the current runtime, with the
    /// index reads' session settings and the lookup prepared.
    async fn connect(&self) -> Result<Session, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a link lookup connection closed");
            }
        });
        for setting in PostgresSetup::KEPT_INDEX_PLANS.statements() {
            if let Err(e) = client.batch_execute(setting).await {
                // PostgreSQL 11 or older has no plan_cache_mode: go on
                // without it, as the pool does.
                if !setting.contains("plan_cache_mode") {
                    return Err(e);
                }
            }
        }
        let lookup = client
            .prepare(&format!(
                "SELECT {} FROM links \
                 WHERE billing_id = $1 AND dealer = $2 AND claim_expires_at IS NULL \
                 ORDER BY id LIMIT $3",
                link_columns("")
            ))
            .await?;
        // The pool path's statement for several lookups, each row with its
        // lookup's place (from 1) ahead of the link's columns.
        let together = client
            .prepare(&format!(
                "SELECT k.nth, {} FROM unnest($1::text[], $2::text[], $3{LOOKUPS_TOGETHER_REST}",
                link_columns("l.")
            ))
            .await?;
        Ok(Session {
            client,
            lookup,
            together,
        })
    }

    fn resting(&self) -> bool {
        let mut until = self.lock_resting();
        match *until {
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    fn rest(&self) {
        *self.lock_resting() = Some(Instant::now() + RETRY_AFTER);
    }

    fn lock_resting(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.resting_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many lookups this path answered.
    #[cfg(test)]
    pub(crate) fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// This thread's connection's backend process, once it is open.
    #[cfg(test)]
    pub(crate) async fn backend_pid(&self) -> Option<i32> {
        let slot = self.slot();
        let session = slot.session.get()?;
        let row = session
            .client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .ok()?;
        row.try_get(0).ok()
    }
}

/// Reads the slot's waiting lookups, batch after batch, until none wait;
/// each is answered with its page, or with an error when its batch could
/// not be read (its caller then reads the diesel way). Dropped half way
/// (its runtime stopped), it leaves the slot with no lookup waiting on it.
async fn read_until_none_wait(slot: Arc<Slot>) {
    struct Stopped<'a>(&'a Gathered<Lookup, Page<Link>>, bool);
    impl Drop for Stopped<'_> {
        fn drop(&mut self) {
            if !self.1 {
                self.0.abandon();
            }
        }
    }
    let mut stopped = Stopped(&slot.waiting, false);
    let Some(session) = slot.session.get() else {
        return;
    };
    loop {
        let batch = slot.waiting.next_batch();
        if batch.is_empty() {
            stopped.1 = true;
            return;
        }
        let (lookups, answers): (Vec<Lookup>, Vec<_>) = batch.into_iter().unzip();
        let pages = match read(session, &lookups).await {
            Ok(pages) => pages.into_iter().map(Ok).collect(),
            Err(e) => {
                // A closed connection is opened again by the next lookup on
                // this thread; any other failure the diesel way reports.
                tracing::debug!(error = %e, "lookups on their own connection failed");
                each_failed(lookups.len(), StoreError::Unavailable(e))
            }
        };
        for (answer, page) in answers.into_iter().zip(pages) {
            // A caller that gave up is no loss.
            let _ = answer.send(page);
        }
    }
}

/// The first pages of `lookups`, in their order: one alone by the plain
/// statement, several by the one that takes them together.
async fn read(session: &Session, lookups: &[Lookup]) -> Result<Vec<Page<Link>>, String> {
    let mut pages: Vec<Vec<LinkRow>> = vec![Vec::new(); lookups.len()];
    if let [one] = lookups {
        let room = one.limit as i64 + 1;
        let rows = session
            .client
            .query(&session.lookup, &[&one.billing_id, &one.dealer, &room])
            .await
            .map_err(|e| e.to_string())?;
        for row in &rows {
            pages[0].push(link_row(row, 0).map_err(|e| e.to_string())?);
        }
    } else {
        let dealers: Vec<&str> = lookups.iter().map(|l| l.dealer.as_str()).collect();
        let billing_ids: Vec<&str> = lookups.iter().map(|l| l.billing_id.as_str()).collect();
        let rooms: Vec<i64> = lookups.iter().map(|l| l.limit as i64 + 1).collect();
        let rows = session
            .client
            .query(&session.together, &[&dealers, &billing_ids, &rooms])
            .await
            .map_err(|e| e.to_string())?;
        for row in &rows {
            let nth: i64 = row.try_get(0).map_err(|e| e.to_string())?;
            // `WITH ORDINALITY` counts from 1.
            let page = usize::try_from(nth - 1)
                .ok()
                .and_then(|at| pages.get_mut(at))
                .ok_or_else(|| format!("a lookup read as number {nth}"))?;
            page.push(link_row(row, 1).map_err(|e| e.to_string())?);
        }
    }
    lookups
        .iter()
        .zip(pages)
        .map(|(l, rows)| {
            into_page(rows, l.limit, |r| r.id.clone(), LinkRow::into_domain)
                .map_err(|e| e.into_store_error().to_string())
        })
        .collect()
}

/// `url` as a `tokio-postgres` configuration without TLS, when it asks for
/// none: `sslmode=disable` or `allow` (a plain connection first). A URL with
/// any other mode, or none (libpq then prefers TLS), or a parameter
/// `tokio-postgres` does not know, gives none.
fn plain_config(url: &str) -> Option<Config> {
    let (base, query) = url.split_once('?')?;
    let mut plain = false;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some(("sslmode", mode)) => {
                plain = matches!(mode, "disable" | "allow");
                false
            }
            _ => !pair.is_empty(),
        })
        .collect();
    if !plain {
        return None;
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    let mut config = Config::from_str(&url).ok()?;
    config.ssl_mode(SslMode::Disable);
    Some(config)
}

/// The link of a row of either lookup statement: [`LINK_COLUMNS`] from
/// column `first` on, read by place (by name, each read searched the row's
/// columns).
fn link_row(row: &Row, first: usize) -> Result<LinkRow, tokio_postgres::Error> {
    Ok(LinkRow {
        id: row.try_get(first)?,
        dealer: row.try_get(first + 1)?,
        connection_id: row.try_get(first + 2)?,
        kind: row.try_get(first + 3)?,
        billing_id: row.try_get(first + 4)?,
        external_id: row.try_get(first + 5)?,
        parent_id: row.try_get(first + 6)?,
        version: row.try_get(first + 7)?,
        created_at: row.try_get(first + 8)?,
        updated_at: row.try_get(first + 9)?,
        last_synced: row.try_get(first + 10)?,
        claim_expires_at: row.try_get(first + 11)?,
    })
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::RunQueryDsl;

    use super::*;
    use crate::db::{DbConnection, Target};
    use crate::links::lookups::links_of_billing_id;
    use crate::scratch_postgres::ScratchSchema;

    fn ids(page: &Page<Link>) -> Vec<String> {
        page.items.iter().map(|l| l.id.0.to_string()).collect()
    }

    /// On the loopback URL the store is given, lookups go over the
    /// thread's own connection and find what the pool's query finds (pages,
    /// claims and other dealers left out); when that connection is killed,
    /// a lookup is declined (the store then reads the diesel way) and the
    /// next one opens a new connection.
    #[tokio::test]
    async fn lookups_on_the_threads_own_connection_find_what_the_pool_finds() {
        let (schema, mut pg) = ScratchSchema::open();
        pg.batch_execute(
            "SET session_replication_role = replica; \
             INSERT INTO links (id, dealer, connection_id, kind, billing_id, external_id, \
             version, created_at, updated_at, last_synced, claim_expires_at) \
             SELECT md5(g::text)::uuid::text, CASE WHEN g % 2 = 0 THEN 'd1' ELSE 'd2' END, \
             gen_random_uuid()::text, 'site', 'B-' || (g % 7), 'S' || g, g, now(), now(), \
             CASE WHEN g % 3 = 0 THEN '{\"name\":\"x\"}' END, \
             CASE WHEN g % 5 = 0 THEN now() + interval '1 hour' END \
             FROM generate_series(1, 70) AS g",
        )
        .unwrap();
        let Target::Postgres(url) = Target::parse(schema.url()).unwrap() else {
            unreachable!("a PostgreSQL URL")
        };
        let client = LookupClient::for_url(&url, Duration::from_secs(5))
            .expect("a loopback URL is given sslmode=allow, so the client serves it");
        let mut conn = DbConnection::Postgresql(pg);
        let ask = |dealer: &str, billing: &str, limit: usize| Lookup {
            dealer: dealer.into(),
            billing_id: billing.into(),
            limit,
        };
        let cases = [
            ask("d1", "B-1", 10),
            ask("d2", "B-1", 2),
            ask("d1", "B-2", 1),
            ask("d1", "B-9", 10),
            ask("d3", "B-4", 10),
        ];
        let mut found_any = 0;
        for l in &cases {
            let alone = links_of_billing_id(&mut conn, &l.dealer, &l.billing_id, l.limit).unwrap();
            let page = client
                .lookup(l)
                .await
                .expect("answered on its own connection");
            assert_eq!(ids(&page), ids(&alone), "{l:?}");
            assert_eq!(page.items, alone.items, "{l:?}");
            assert_eq!(page.next_page_token, alone.next_page_token, "{l:?}");
            found_any += page.items.len();
        }
        assert!(found_any > 5, "the cases found links");
        assert_eq!(client.answered(), cases.len() as u64);

        // Asked at once on one thread, they go in one statement (the first
        // lookup's runner takes every one waiting) and each finds the same.
        let [a, b, c, d, e] = &cases;
        let together = tokio::join!(
            client.lookup(a),
            client.lookup(b),
            client.lookup(c),
            client.lookup(d),
            client.lookup(e)
        );
        let together = [together.0, together.1, together.2, together.3, together.4];
        for (l, page) in cases.iter().zip(together) {
            let page = page.expect("answered together");
            let alone = links_of_billing_id(&mut conn, &l.dealer, &l.billing_id, l.limit).unwrap();
            assert_eq!(page.items, alone.items, "{l:?}");
            assert_eq!(page.next_page_token, alone.next_page_token, "{l:?}");
        }

        let first = client.backend_pid().await.expect("a connection is open");
        let DbConnection::Postgresql(pg) = &mut conn else {
            unreachable!("opened on PostgreSQL")
        };
        diesel::sql_query(format!("SELECT pg_terminate_backend({first})"))
            .execute(pg)
            .unwrap();
        let mut answered = None;
        for _ in 0..3 {
            answered = client.lookup(&cases[0]).await;
            if answered.is_some() {
                break;
            }
        }
        let again = answered.expect("a new connection answers after the old one was killed");
        let alone = links_of_billing_id(&mut conn, "d1", "B-1", 10).unwrap();
        assert_eq!(again.items, alone.items);
        let second = client.backend_pid().await.expect("a connection is open");
        assert_ne!(first, second, "the killed connection was replaced");
    }

    #[test]
    fn only_urls_that_ask_for_no_tls_get_the_client() {
        let plain = [
            "postgres://u:p@127.0.0.1:5432/db?sslmode=allow",
            "postgres://u@db.example/db?sslmode=disable",
            "postgresql://u@localhost/db?options=-c%20search_path%3Dx&sslmode=allow",
        ];
        for url in plain {
            assert!(plain_config(url).is_some(), "{url}");
        }
        let c = plain_config(plain[2]).expect("parsed");
        assert_eq!(c.get_options(), Some("-c search_path=x"));
        assert_eq!(c.get_ssl_mode(), SslMode::Disable);
        let not = [
            // libpq's default, prefer: TLS when the server has it.
            "postgres://u@db.example/db",
            "postgres://u@db.example/db?sslmode=prefer",
            "postgres://u@db.example/db?sslmode=require",
            "postgres://u@db.example/db?sslmode=verify-full",
            // A parameter tokio-postgres does not know.
            "postgres://u@127.0.0.1/db?sslmode=allow&fallback_application_name=x",
        ];
        for url in not {
            assert!(plain_config(url).is_none(), "{url}");
        }
    }
}
