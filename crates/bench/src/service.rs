//! The service under measurement: the real `crosslink serve` binary in its own
//! process, as it runs in production, on a fresh SQLite file or PostgreSQL
//! schema. Figures taken in-process would miss the HTTP stack and the pool.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// Which database a service runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn label(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// What every service of the run shares.
#[derive(Debug, Clone)]
pub struct Env {
    pub bin: PathBuf,
    /// Scratch space: SQLite files and service logs.
    pub work: PathBuf,
    /// Base URL of the PostgreSQL the fresh schemas are made in.
    pub postgres_url: String,
    pub jwt_secret: String,
    pub encryption_key: String,
}

/// A fresh database of one backend; a PostgreSQL schema or database is
/// dropped on drop.
pub struct Database {
    pub url: String,
    scratch: Scratch,
}

/// What a PostgreSQL [`Database`] made, to be dropped with it.
enum Scratch {
    None,
    /// A schema in the database of `TEST_DATABASE_URL`.
    Schema {
        base: String,
        name: String,
    },
    /// A database of its own, so `pg_stat_database` counts this service only.
    Database(PgDatabase),
}

/// A PostgreSQL database the bench made for one service.
#[derive(Debug, Clone)]
pub struct PgDatabase {
    /// `TEST_DATABASE_URL`: where the bench's own queries about it go.
    pub admin_url: String,
    pub name: String,
    /// The URL of the database itself.
    pub url: String,
}

impl Database {
    /// A new, empty database whose files (if any) live under `env.work`; on
    /// PostgreSQL a schema in the database of `TEST_DATABASE_URL`.
    pub fn fresh(env: &Env, backend: Backend, tag: &str) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        match backend {
            Backend::Sqlite => Ok(Self::sqlite(env, tag, &id)),
            Backend::Postgres => {
                let name = format!("bench_{id}");
                psql(&env.postgres_url, &format!("CREATE SCHEMA {name}"))?;
                let sep = if env.postgres_url.contains('?') {
                    '&'
                } else {
                    '?'
                };
                Ok(Database {
                    url: format!("{}{sep}options=-c%20search_path%3D{name}", env.postgres_url),
                    scratch: Scratch::Schema {
                        base: env.postgres_url.clone(),
                        name,
                    },
                })
            }
        }
    }

    /// [`Database::fresh`], but on PostgreSQL a whole database (on the server
    /// of `TEST_DATABASE_URL`), so that its `pg_stat_database` row and its
    /// backends in `pg_stat_activity` are this service's alone.
    pub fn fresh_own(env: &Env, backend: Backend, tag: &str) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        match backend {
            Backend::Sqlite => Ok(Self::sqlite(env, tag, &id)),
            Backend::Postgres => {
                let name = format!("bench_{id}");
                let mut url = url::Url::parse(&env.postgres_url)
                    .with_context(|| format!("parsing {}", env.postgres_url))?;
                url.set_path(&format!("/{name}"));
                psql(
                    &env.postgres_url,
                    &format!("CREATE DATABASE {name} TEMPLATE template0"),
                )?;
                let url = url.to_string();
                Ok(Database {
                    url: url.clone(),
                    scratch: Scratch::Database(PgDatabase {
                        admin_url: env.postgres_url.clone(),
                        name,
                        url,
                    }),
                })
            }
        }
    }

    fn sqlite(env: &Env, tag: &str, id: &str) -> Self {
        let path = env.work.join(format!("{tag}-{}.db", &id[..8]));
        Database {
            url: format!("sqlite://{}", path.display()),
            scratch: Scratch::None,
        }
    }

    /// The PostgreSQL database of its own, when made by [`Database::fresh_own`].
    pub fn pg_database(&self) -> Option<&PgDatabase> {
        match &self.scratch {
            Scratch::Database(db) => Some(db),
            _ => None,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (base, sql) = match &self.scratch {
            Scratch::None => return,
            Scratch::Schema { base, name } => {
                (base, format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
            }
            Scratch::Database(db) => (
                &db.admin_url,
                format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name),
            ),
        };
        if let Err(e) = psql(base, &sql) {
            eprintln!("warning: {sql}: {e:#}");
        }
    }
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    psql_query(url, sql).map(drop)
}

/// Runs `sql` with `psql` and returns its unaligned output: rows on lines,
/// fields separated by U+001F (so text with `|` in it stays whole).
pub fn psql_query(url: &str, sql: &str) -> anyhow::Result<String> {
    let out = std::process::Command::new("psql")
        .args([
            url,
            "-qtAX",
            "-F",
            "\u{1f}",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .context("running psql (is the PostgreSQL client installed?)")?;
    if !out.status.success() {
        bail!(
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}

/// [`psql_query`] for a script too long for a command line: sent on stdin.
pub fn psql_script(url: &str, sql: &str) -> anyhow::Result<String> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("psql")
        .args([
            url,
            "-qtAX",
            "-F",
            "\u{1f}",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running psql (is the PostgreSQL client installed?)")?;
    let mut stdin = child.stdin.take().context("psql without stdin")?;
    stdin.write_all(sql.as_bytes())?;
    drop(stdin);
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let head: String = sql.chars().take(200).collect();
        bail!(
            "psql script {head:?}...: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}

/// A running `crosslink serve`; killed on drop if not stopped.
pub struct Service {
    child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Service {
    /// Spawns the binary and waits until it prints its address (not until ready).
    pub async fn spawn(env: &Env, db: &Database, name: &str) -> anyhow::Result<Service> {
        Self::spawn_with(env, db, name, &[]).await
    }

    /// [`Service::spawn`] with settings of its own (`CROSSLINK__...` variables).
    pub async fn spawn_with(
        env: &Env,
        db: &Database,
        name: &str,
        settings: &[(&str, String)],
    ) -> anyhow::Result<Service> {
        let log = env.work.join(format!("{name}.log"));
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(&env.bin)
            .arg("serve")
            .current_dir(&env.work)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("CROSSLINK__SERVER__BIND", "127.0.0.1:0")
            .env("CROSSLINK__DATABASE__URL", &db.url)
            .env("CROSSLINK__AUTH__HS256_SECRET", &env.jwt_secret)
            .env("CROSSLINK__SECRETS__ENCRYPTION_KEY", &env.encryption_key)
            // Benchmarks measure the service, not the per-dealer limit.
            .env("CROSSLINK__RATE_LIMIT__REQUESTS_PER_SECOND", "0")
            // The simulators listen on loopback, which the egress policy refuses unless allowed.
            .env("CROSSLINK__EGRESS__ALLOW", "127.0.0.0/8")
            .envs(settings.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", env.bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = BufReader::new(stdout).lines();
            // Keep reading after the address so the pipe never fills up.
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = listening_address(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
        let base = match tokio::time::timeout(Duration::from_secs(120), rx).await {
            Ok(Ok(base)) => base,
            _ => {
                let _ = child.kill().await;
                bail!(
                    "crosslink did not print its address; its log ({}):\n{}",
                    log.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Ok(Service { child, base, log })
    }

    /// Polls `/readyz` every few milliseconds until it answers 200.
    pub async fn wait_ready(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let url = format!("{}/readyz", self.base);
        loop {
            if let Ok(r) = http.get(&url).send().await {
                if r.status() == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("crosslink never became ready; see {}", self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops it the way an operator would (SIGTERM), then SIGKILL after 15 s.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
        self.child.kill().await.context("killing crosslink")
    }
}

/// Calls the API as a billing front end would, with one admin token.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub bearer: String,
}

impl Api {
    pub fn new(http: reqwest::Client, base: &str, token: &str) -> Self {
        Api {
            http,
            base: base.to_owned(),
            bearer: format!("Bearer {token}"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request and fails unless the status is one of `ok`.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        ok: &[u16],
    ) -> anyhow::Result<Value> {
        let mut rb = self
            .http
            .request(method.clone(), self.url(path))
            .header(reqwest::header::AUTHORIZATION, &self.bearer);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let r = rb
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = r.status().as_u16();
        let text = r.text().await.with_context(|| format!("{method} {path}"))?;
        if !ok.contains(&status) {
            bail!("{method} {path} answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// Mints the HS256 admin token the service accepts (it shares the secret).
pub fn admin_token(secret: &str, dealer: &str) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "sub": "bench-admin", "dealer": dealer, "roles": ["admin"],
        "iat": now, "exp": now + 24 * 3600, "iss": "crosslink", "aud": "crosslink",
    });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// A random secret: 64 hex characters.
pub fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Base64 (standard, padded) of 32 random bytes: an encryption key.
pub fn random_key() -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    base64(&bytes)
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Makes sure `path` exists and is empty.
pub fn fresh_dir(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        std::fs::remove_dir_all(path).with_context(|| format!("clearing {}", path.display()))?;
    }
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))
}

/// Where the service listens, from its line on stdout: `crosslink listening
/// on http://…`, or in JSON log mode a JSON event with `fields.address`.
fn listening_address(line: &str) -> Option<String> {
    if let Some(addr) = line.strip_prefix("crosslink listening on ") {
        return Some(addr.trim().to_owned());
    }
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    if event["fields"]["message"] != "crosslink listening" {
        return None;
    }
    event["fields"]["address"].as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(random_key().len(), 44);
    }

    #[test]
    fn the_address_is_read_from_the_text_and_the_json_line() {
        let text = "crosslink listening on http://127.0.0.1:4000";
        assert_eq!(
            listening_address(text).as_deref(),
            Some("http://127.0.0.1:4000")
        );
        let json = r#"{"level":"INFO","fields":{"message":"crosslink listening","address":"http://127.0.0.1:4001"}}"#;
        assert_eq!(
            listening_address(json).as_deref(),
            Some("http://127.0.0.1:4001")
        );
        assert_eq!(listening_address(r#"{"fields":{"message":"other"}}"#), None);
    }
}
