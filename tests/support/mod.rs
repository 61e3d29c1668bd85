//! The test harness: the real `crosslink` binary on a free port, on a fresh
//! SQLite file or PostgreSQL schema, beside an in-process Stages simulator.
//! Tests read like a billing front end using the service.

#![allow(dead_code)]

pub mod clock;
pub mod in_process;
pub mod wait;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

// Each test crate builds the harness whole; not all of them wait.
#[allow(unused_imports)]
pub use wait::{eventually, Poll};

pub const JWT_SECRET: &str = "test-secret-for-the-e2e-suite-0123456789";
pub const ISSUER: &str = "crosslink";
pub const AUDIENCE: &str = "crosslink";
/// base64 of 32 bytes; the e2e services encrypt with it.
pub const ENCRYPTION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const SIM_USER: &str = "sim-user";
pub const SIM_PASSWORD: &str = "sim-Passw0rd-e2e";

/// Where the service listens, from its line on stdout: `crosslink listening
/// on http://…`, or in JSON log mode a JSON event with `fields.address`.
pub fn listening_address(line: &str) -> Option<String> {
    if let Some(addr) = line.strip_prefix("crosslink listening on ") {
        return Some(addr.trim().to_owned());
    }
    let event: Value = serde_json::from_str(line).ok()?;
    if event["fields"]["message"] != "crosslink listening" {
        return None;
    }
    event["fields"]["address"].as_str().map(str::to_owned)
}

/// A unique scratch directory under the system temp dir.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "crosslink-e2e-{tag}-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The PostgreSQL the suite must use; its absence fails the test (never a skip).
pub fn test_database_url() -> String {
    std::env::var("TEST_DATABASE_URL").expect(
        "TEST_DATABASE_URL must be set for the PostgreSQL tests, e.g. postgres://postgres@127.0.0.1:5432/test (make test sets it)",
    )
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-qtAX", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh, empty schema on the test PostgreSQL, dropped on drop.
pub struct PgSchema {
    base: String,
    pub name: String,
}

impl PgSchema {
    pub fn new() -> Self {
        let base = test_database_url();
        let name = format!("e2e_{}", uuid::Uuid::now_v7().simple());
        psql(&base, &format!("CREATE SCHEMA {name}"));
        Self { base, name }
    }

    /// A URL whose connections use only this schema.
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.base, self.name)
    }

    pub fn query(&self, sql: &str) -> String {
        psql(&self.url(), sql)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &self.base,
                "-qtAX",
                "-c",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
            ])
            .output();
    }
}

/// Which database a test's service runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(Backend)` as two tests, `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
                #[tokio::test]
                async fn postgres() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            }
        )*
    };
}

/// How long a job, import or batch may take to end (a thousand-item batch
/// paced at Stages' 20 calls a second takes about a minute).
pub const ENDED_LIMIT: Duration = Duration::from_secs(120);
/// How long a test waits for one step it has just caused (a push to run,
/// a count or a metric to move, a log line to be written).
pub const STEP_LIMIT: Duration = Duration::from_secs(20);
/// How long the jobs and callbacks of a test may take to settle.
pub const QUIESCE_LIMIT: Duration = Duration::from_secs(60);

/// A running `crosslink serve`: the binary, or the same service in the
/// test's process (`Service::in_process`), which runs no job runner: its
/// waits run the queue instead (see `in_process`).
pub struct Service {
    child: Option<Child>,
    in_process: Option<in_process::InProcess>,
    /// Keeps a PostgreSQL schema alive as long as the service.
    _schema: Option<PgSchema>,
    pub base: String,
    pub dir: PathBuf,
    pub log: PathBuf,
    pub database_url: String,
    pub http: reqwest::Client,
    /// Every line the service wrote on stdout so far.
    stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

#[derive(Default)]
pub struct ServiceOptions {
    pub database_url: Option<String>,
    pub env: Vec<(String, String)>,
}

impl Service {
    pub async fn start() -> Self {
        Self::start_with(ServiceOptions::default()).await
    }

    /// A service on a fresh SQLite file or a fresh PostgreSQL schema.
    pub async fn start_on(backend: Backend, env: Vec<(String, String)>) -> Self {
        let schema = (backend == Backend::Postgres).then(PgSchema::new);
        let mut service = Self::start_with(ServiceOptions {
            database_url: schema.as_ref().map(PgSchema::url),
            env,
        })
        .await;
        service._schema = schema;
        service
    }

    pub async fn start_with(options: ServiceOptions) -> Self {
        let service = Self::spawn(options);
        service.wait_ready().await;
        service
    }

    /// The service in this process on a fresh SQLite file or PostgreSQL
    /// schema, with `env` as `start_on` takes it; jobs run when the test
    /// waits (`eventually`, `quiesce`, `wait_ended`) or asks
    /// (`run_pending_jobs`), and none may be left when it ends.
    pub async fn in_process(backend: Backend, env: Vec<(String, String)>) -> Self {
        let schema = (backend == Backend::Postgres).then(PgSchema::new);
        let dir = scratch_dir("app");
        let database_url = schema.as_ref().map_or_else(
            || format!("sqlite://{}", dir.join("crosslink.db").display()),
            PgSchema::url,
        );
        let mut vars = service_env(&database_url);
        vars.push(("CROSSLINK__JOBS__WORKERS".into(), "0".into()));
        vars.extend(env);
        let (app, base) = in_process::InProcess::start(vars).await;
        Self {
            child: None,
            in_process: Some(app),
            _schema: schema,
            base,
            log: dir.join("crosslink.log"),
            dir,
            database_url,
            http: http_client(),
            stdout: Default::default(),
        }
    }

    /// Runs every due job to its end, in this process: the in-process
    /// service's queue (a binary runs its own: nothing to do).
    pub async fn run_pending_jobs(&self) -> usize {
        match &self.in_process {
            Some(app) => app.run_pending_jobs().await,
            None => 0,
        }
    }

    /// Starts the binary without waiting for readiness.
    pub fn spawn(options: ServiceOptions) -> Self {
        let dir = scratch_dir("svc");
        let database_url = options
            .database_url
            .unwrap_or_else(|| format!("sqlite://{}", dir.join("crosslink.db").display()));
        let log = dir.join("crosslink.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crosslink"));
        cmd.arg("serve")
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "debug")
            .envs(service_env(&database_url))
            .envs(options.env)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = cmd.spawn().expect("the crosslink binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = listening_address(&line) {
                    let _ = tx.send(addr);
                }
                kept.lock().unwrap().push(line);
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "crosslink did not start; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Self {
            child: Some(child),
            in_process: None,
            _schema: None,
            base,
            dir,
            log,
            database_url,
            http: http_client(),
            stdout: lines,
        }
    }

    pub async fn wait_ready(&self) {
        self.eventually("crosslink to be ready", Duration::from_secs(60), || async {
            let r = self.http.get(self.url("/readyz")).send().await;
            r.is_ok_and(|r| r.status() == 200).then_some(())
        })
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The lines the service wrote on stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let r = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }

    /// Runs SQL on the service's database beside it (sqlite3 or psql, which
    /// waits for a lock the service holds); returns what it printed.
    pub fn sql(&self, sql: &str) -> String {
        let out = match self.database_url.strip_prefix("sqlite://") {
            Some(path) => Command::new("sqlite3")
                .args(["-cmd", ".timeout 10000", path, sql])
                .output(),
            None => Command::new("psql")
                .args([
                    &self.database_url,
                    "-qtAX",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                    sql,
                ])
                .output(),
        }
        .expect("the database client runs");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The process id (worker ids carry it: `host-pid`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a process of its own").id()
    }

    pub fn kill(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(app) = &self.in_process {
            app.stop();
        }
    }

    /// A request with a token for `who`.
    pub fn req(&self, method: reqwest::Method, path: &str, who: &Who) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(who.token())
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        who: &Who,
        body: Option<Value>,
    ) -> Answer {
        let mut rb = self.req(method, path, who);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        Answer::from(rb.send().await.expect("the service answers")).await
    }

    /// `eventually`, whose failure shows this service's log; in process,
    /// the due jobs run before each look.
    pub async fn eventually<T, F, Fut>(&self, what: &str, limit: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let mut poll = Poll::new(what, limit);
        loop {
            self.run_pending_jobs().await;
            if let Some(value) = check().await {
                return value;
            }
            poll.pause(|| self.log_detail()).await;
        }
    }

    /// The end of the log, to close a failed wait's message with (a run of
    /// thousands logs too much to show whole; the file stays).
    pub fn log_detail(&self) -> String {
        const SHOWN: usize = 400;
        let log = self.logs();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(SHOWN)..].join("\n");
        format!(
            "log ({} lines, the last {SHOWN} shown; whole at {}):\n{tail}",
            lines.len(),
            self.log.display()
        )
    }

    /// GETs `path` (a job, an import, a batch) until its `state` is neither
    /// queued nor running, and returns it.
    pub async fn wait_ended(&self, who: &Who, path: &str) -> Value {
        self.wait_ended_within(who, path, ENDED_LIMIT).await
    }

    /// `wait_ended` with a limit of the caller's (a run of thousands).
    pub async fn wait_ended_within(&self, who: &Who, path: &str, limit: Duration) -> Value {
        let mut poll = Poll::new(format!("{path} to end"), limit);
        loop {
            self.run_pending_jobs().await;
            let a = self.call(reqwest::Method::GET, path, who, None).await;
            assert_eq!(a.status, 200, "{path}: {}", a.text);
            if !wait::ongoing(&a.body) {
                return a.body;
            }
            poll.pause(|| format!("last: {}\n{}", a.text, self.log_detail()))
                .await;
        }
    }

    /// Waits until no job of `who`'s dealer is queued or running and none of
    /// `sims` has a callback left to send, three looks in a row (a retried
    /// job moves between queued and running, so one look can miss it).
    pub async fn quiesce(&self, who: &Who, sims: &[&stages_sim::Sim]) {
        self.settle(who, sims, None, QUIESCE_LIMIT, Duration::from_millis(25))
            .await
    }

    /// Waits until no job of `kind` is queued or running, three looks in a
    /// row 200 ms apart (a run of thousands, whose jobs queue more jobs).
    pub async fn drained(&self, who: &Who, kind: &str, limit: Duration) {
        let pause = Duration::from_millis(200);
        self.settle(who, &[], Some(kind), limit, pause).await
    }

    async fn settle(
        &self,
        who: &Who,
        sims: &[&stages_sim::Sim],
        kind: Option<&str>,
        limit: Duration,
        pause: Duration,
    ) {
        let what = match kind {
            Some(kind) => format!("{kind} jobs to drain"),
            None => "jobs and callbacks to settle".to_owned(),
        };
        let filter = kind.map(|k| format!("&kind={k}")).unwrap_or_default();
        // Steady, so that three quiet looks span some time.
        let mut poll = Poll::new(what, limit).every(pause);
        let mut quiet = 0;
        // In process no runner moves a job between looks: one quiet look,
        // after the queue ran dry, is enough.
        let enough = if self.in_process.is_some() { 1 } else { 3 };
        loop {
            let ran = self.run_pending_jobs().await;
            let mut busy = sims.iter().any(|s| s.state().callbacks_pending() > 0);
            for state in ["queued", "running"] {
                let path = format!("/v1/jobs?state={state}{filter}&page_size=1");
                let a = self.call(reqwest::Method::GET, &path, who, None).await;
                assert_eq!(a.status, 200, "{}", a.text);
                busy |= !a.body["items"].as_array().unwrap().is_empty();
            }
            quiet = if busy || ran > 0 { 0 } else { quiet + 1 };
            if quiet == enough {
                return;
            }
            poll.pause(|| self.log_detail()).await;
        }
    }

    /// A dealer-mode Stages connection of `admin`'s dealer to `sim`, with
    /// the simulator's credentials stored and the migration they queue over.
    pub async fn stages_connection(&self, admin: &Who, sim: &stages_sim::Sim) -> String {
        self.stages_connection_named(admin, "Stages", sim).await
    }

    /// As [`Service::stages_connection`], named `name` (a dealer's second
    /// connection needs a name of its own).
    pub async fn stages_connection_named(
        &self,
        admin: &Who,
        name: &str,
        sim: &stages_sim::Sim,
    ) -> String {
        let cid = self
            .create_connection(admin, name, &sim.base_url(), "dealer")
            .await;
        let a = self
            .call(
                reqwest::Method::PUT,
                &format!("/v1/connections/{cid}/credentials/dealer"),
                admin,
                Some(serde_json::json!({"username": SIM_USER, "password": SIM_PASSWORD})),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        self.migration_settled(admin, &cid).await;
        cid
    }

    /// Points `sim`'s callbacks at this service's webhook of connection
    /// `cid`, with a freshly rotated inbound credential; returns its secret.
    pub async fn connect_callbacks(&self, admin: &Who, cid: &str, sim: &stages_sim::Sim) -> String {
        let rotated = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/connections/{cid}/inbound-credentials:rotate"),
                admin,
                None,
            )
            .await;
        assert_eq!(rotated.status, 200, "{}", rotated.text);
        let secret = rotated.body["secret"].as_str().unwrap().to_owned();
        sim.state()
            .set_callback_target(stages_sim::CallbackTarget::new(
                self.url(&format!("/v1/webhooks/stages/{cid}")),
                rotated.body["username"].as_str().unwrap(),
                secret.clone(),
            ))
            .unwrap();
        secret
    }

    /// Waits until the automatic migration (S20) of connection `cid` is
    /// neither queued nor running, and returns the connection. Storing a
    /// Stages dealer credential that works queues it; a test that then sets
    /// billing ids in Stages itself waits first, so the migration cannot take
    /// them over meanwhile.
    pub async fn migration_settled(&self, who: &Who, cid: &str) -> Value {
        let what = format!("the migration of {cid} to settle");
        self.eventually(&what, QUIESCE_LIMIT, || async {
            let path = format!("/v1/connections/{cid}");
            let a = self.call(reqwest::Method::GET, &path, who, None).await;
            assert_eq!(a.status, 200, "{}", a.text);
            (!wait::ongoing(&a.body["migration"])).then_some(a.body)
        })
        .await
    }

    /// Creates a Stages connection to `endpoint` as an admin of `who`'s dealer.
    pub async fn create_connection(
        &self,
        who: &Who,
        name: &str,
        endpoint: &str,
        auth_mode: &str,
    ) -> String {
        let a = self
            .call(
                reqwest::Method::POST,
                "/v1/connections",
                who,
                Some(json!({"provider": "stages", "name": name, "endpoint": endpoint, "auth_mode": auth_mode})),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
        a.body["id"].as_str().unwrap().to_owned()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(app) = &self.in_process {
            app.check_no_jobs_left();
        }
        self.kill();
    }
}

/// What every test's service runs with, binary or in process.
fn service_env(database_url: &str) -> Vec<(String, String)> {
    [
        ("CROSSLINK__SERVER__BIND", "127.0.0.1:0"),
        ("CROSSLINK__SERVER__WORKERS", "2"),
        ("CROSSLINK__DATABASE__URL", database_url),
        ("CROSSLINK__DATABASE__POOL_SIZE", "4"),
        ("CROSSLINK__AUTH__HS256_SECRET", JWT_SECRET),
        ("CROSSLINK__SECRETS__ENCRYPTION_KEY", ENCRYPTION_KEY),
        ("CROSSLINK__STAGES__TIMEOUT_MS", "1500"),
        ("CROSSLINK__STAGES__CONNECT_TIMEOUT_MS", "500"),
        ("CROSSLINK__STAGES__MAX_RETRIES", "1"),
        // The suite drives one dealer hard; the rate limit has a test of its own.
        ("CROSSLINK__RATE_LIMIT__REQUESTS_PER_SECOND", "0"),
        // Nor is the client-side pacing of Stages calls (20/s) what the
        // suite tests (the client's own tests do): with it, every read of a
        // linked billing record (which asks Stages for its status) waited
        // its turn, and the longest test spent most of its time so.
        ("CROSSLINK__STAGES__REQUESTS_PER_SECOND", "0"),
        // The simulators and test receivers listen on loopback, which the
        // egress policy refuses unless allowed (a test may override this).
        ("CROSSLINK__EGRESS__ALLOW", "127.0.0.0/8"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        // The service closes a connection idle for 5 s (actix's keep-alive);
        // a request sent on it just then fails with an incomplete message.
        // Dropping idle ones sooner avoids that race.
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// An answer, read whole.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Answer {
    pub async fn from(r: reqwest::Response) -> Self {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            body,
        }
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts a problem+json answer with this status; returns its `code`.
    pub fn assert_problem(&self, status: u16) -> String {
        assert_eq!(self.status, status, "body: {}", self.text);
        assert_eq!(
            self.content_type(),
            "application/problem+json",
            "body: {}",
            self.text
        );
        assert_eq!(self.body["status"], status, "body: {}", self.text);
        assert!(
            self.body["title"].is_string()
                && self.body["detail"].is_string()
                && self.body["type"].is_string()
        );
        self.body["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// Someone calling the API.
#[derive(Clone)]
pub struct Who {
    pub dealer: String,
    pub sub: String,
    pub roles: Vec<String>,
}

impl Who {
    pub fn new(dealer: &str, sub: &str, role: &str) -> Self {
        Self {
            dealer: dealer.into(),
            sub: sub.into(),
            roles: vec![role.into()],
        }
    }

    pub fn admin(dealer: &str) -> Self {
        Self::new(dealer, &format!("{dealer}-admin"), "admin")
    }

    pub fn token(&self) -> String {
        sign(
            json!({
                "sub": self.sub, "dealer": self.dealer, "roles": self.roles,
                "exp": now() + 3600, "iat": now(), "iss": ISSUER, "aud": AUDIENCE,
            }),
            JWT_SECRET,
        )
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn sign(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// The in-process Stages simulator, on a free loopback port.
pub async fn start_sim(seed_sites: usize) -> stages_sim::Sim {
    stages_sim::Sim::start(stages_sim::SimConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        username: SIM_USER.into(),
        password: SIM_PASSWORD.into(),
        seed_sites,
        faults: Vec::new(),
    })
    .await
    .expect("the simulator starts")
}
