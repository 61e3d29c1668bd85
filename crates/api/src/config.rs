//! Settings: built-in defaults < `crosslink.toml` (or `--config FILE`) <
//! environment `CROSSLINK__SECTION__KEY`. Every key is listed in the README.
//! Strict: a key that names no setting, in the file or the environment, stops
//! the start (a typo would otherwise fall back to a default silently).

use std::path::{Path, PathBuf};

use link_store::Backend;
use serde::Deserialize;

/// The dev-only signing secret used when none is configured. `serve` warns
/// loudly about it and production mode refuses it.
pub const DEV_JWT_SECRET: &str = "crosslink-development-secret-do-not-use-in-production";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Development,
    Production,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub mode: Mode,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub secrets: SecretSettings,
    pub stages: StagesSettings,
    pub adc: AdcSettings,
    pub log: LogSettings,
    pub idempotency: IdempotencySettings,
    pub retention: RetentionSettings,
    pub jobs: JobSettings,
    pub rate_limit: RateLimitSettings,
    pub egress: EgressSettings,
}

/// Where calls made on a tenant's behalf (webhook deliveries, Stages,
/// Alarm.com, connection tests) may go. Loopback, private, link-local,
/// unique-local, multicast and the other special-purpose ranges are refused
/// unless listed here.
#[derive(Debug, Clone, Deserialize)]
pub struct EgressSettings {
    /// CIDR ranges (`10.20.0.0/16`) or single addresses let through. In the
    /// environment: `CROSSLINK__EGRESS__ALLOW=10.20.0.0/16,127.0.0.1`.
    #[serde(deserialize_with = "list_or_text")]
    pub allow: Vec<String>,
}

impl EgressSettings {
    pub fn policy(&self) -> Result<upstream_http::EgressPolicy, upstream_http::AllowListError> {
        upstream_http::EgressPolicy::parse_allow(&self.allow)
    }
}

/// A list from a file, or text separated by commas (the default, and a
/// variable the environment source did not split).
fn list_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::List(items) => items,
        Raw::Text(text) => text.split(',').map(str::to_owned).collect(),
    }
    .into_iter()
    .map(|s| s.trim().to_owned())
    .filter(|s| !s.is_empty())
    .collect())
}

/// Requests each dealer may make on the bearer API (`/v1`, callbacks and
/// provider webhooks excluded), counted in this replica's memory.
#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitSettings {
    /// Sustained requests per second per dealer; 0 turns the limit off.
    pub requests_per_second: u32,
    /// Requests a dealer may send at once before the rate applies (the token
    /// bucket's size); 0 means one second's worth.
    pub burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JobSettings {
    /// Jobs this process runs at once (0 = this replica runs no background
    /// jobs); `auto` sizes it from the job pool, see [`JobSettings::concurrency`].
    pub workers: AutoOr,
    /// Database connections of the job runners, apart from the HTTP
    /// handlers' pool so a burst of jobs cannot starve requests; `auto`: two
    /// per core, between 2 and 16.
    pub pool_size: AutoOr,
    /// First retry delay of a failed job; doubles per attempt, with full jitter.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_cap_ms: u64,
    /// How long a claimed job stays leased without renewal; a crashed
    /// worker's jobs are taken again after it.
    pub lease_secs: u64,
    /// While an upstream is down, a job younger than this retries without
    /// using up its attempts; an older one counts them again (and may die).
    pub outage_patience_secs: u64,
    /// Most jobs of one dealer running at once, counted over every replica
    /// (0: no cap); `auto`: three quarters of this process's `workers`, so
    /// one dealer's slow jobs always leave room for the others'.
    pub max_running_per_dealer: AutoOr,
}

/// A count given in the settings, or `auto` for one the service sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoOr {
    Auto,
    Fixed(usize),
}

impl<'de> Deserialize<'de> for AutoOr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A number in TOML, a string in the environment (where "4" may come
        // parsed or not): both mean the same.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        let parsed = match Raw::deserialize(d)? {
            Raw::Number(n) => usize::try_from(n).ok().map(AutoOr::Fixed),
            Raw::Text(t) if t.trim().eq_ignore_ascii_case("auto") => Some(AutoOr::Auto),
            Raw::Text(t) => t.trim().parse().ok().map(AutoOr::Fixed),
        };
        parsed.ok_or_else(|| serde::de::Error::custom("expected a whole number or \"auto\""))
    }
}

impl JobSettings {
    /// Connections the job runners use: `jobs.pool_size`, or two per core
    /// (between 2 and 16).
    pub fn pool_size(&self) -> u32 {
        match self.pool_size {
            AutoOr::Fixed(n) => u32::try_from(n.max(1)).unwrap_or(u32::MAX),
            AutoOr::Auto => (2 * cores()).clamp(2, 16) as u32,
        }
    }

    /// Jobs run at once: `jobs.workers`, or per job connection sixteen on
    /// SQLite (64 on 2 cores) and sixty-four on PostgreSQL (256). A job
    /// spends most of its time waiting on Stages or Alarm.com, not on the
    /// database, so several share a connection; and a job holds its slot
    /// until its end is committed with a batch of others, so the slots are
    /// the runner's window: more of them make bigger claims, reads and
    /// batches of ends, and pushes keep up with a burst of edits.
    ///
    /// Under 10,000 edits over 2,000 sites, 16 in flight (`crosslink-bench
    /// --sites 2000 --sync-edits 10000 --duration 3`, alternating runs):
    /// on SQLite, whose one writer the HTTP handlers share, pushes started
    /// after 1.1-1.4 s with eight per connection and 0.46-0.65 s with
    /// sixteen, billing edits answered fell from 1,761-2,367 to 1,316-1,560
    /// per second and edits settled from 1,624-2,020 to 1,238-1,471. On
    /// PostgreSQL, which commits many writers at once, pushes started after
    /// 3.0-4.4 s with eight, 1.5-2.0 s with thirty-two and 0.23-1.3 s with
    /// sixty-four, where pushes kept up with the edits (804-938/s), at
    /// 1.8-2.1 ms of CPU per push against 3.4-4.7. Stages callbacks take
    /// a room of their own ([`JobSettings::most_callbacks_at_once`]).
    pub fn concurrency(&self, backend: Backend) -> usize {
        match self.workers {
            AutoOr::Fixed(n) => n,
            AutoOr::Auto => {
                let per_connection = match backend {
                    Backend::Sqlite => 16,
                    Backend::Postgres => 64,
                };
                per_connection * self.pool_size() as usize
            }
        }
    }

    /// `jobs.max_running_per_dealer`, or three quarters of the concurrency
    /// (at least one); 0 means no cap.
    pub fn max_running_per_dealer(&self, backend: Backend) -> usize {
        match self.max_running_per_dealer {
            AutoOr::Fixed(n) => n,
            AutoOr::Auto => (self.concurrency(backend) * 3).div_ceil(4).max(1),
        }
    }

    /// Stages callbacks one runner applies at once: two per job connection
    /// (8 on 2 cores), and no more than a quarter of `concurrency`. Applying
    /// one is mostly database work (the stored callback, the billing
    /// record, the snapshot), which is what taking callbacks in (what
    /// Stages waits on) needs too; so the room follows the connections, not
    /// the slots, and a burst of callbacks leaves the other slots to
    /// pushes. With every slot open to them, callbacks ingested were 0.56 /
    /// 0.57 of plain inserts on SQLite and 0.48 / 0.57 on PostgreSQL; with
    /// eight, 0.59 / 0.62 and 0.61 / 0.59 (`crosslink-bench --sites 2000`).
    pub fn most_callbacks_at_once(&self, concurrency: usize) -> usize {
        (2 * self.pool_size() as usize).min(concurrency / 4).max(1)
    }
}

/// The cores this process may use, asked once: the job runner sizes each
/// claim from it, and the standard library reads the cgroup files to answer.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub bind: String,
    /// HTTP worker threads; 0 = two per core, see [`ServerSettings::http_workers`].
    pub workers: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl ServerSettings {
    /// `server.workers`, or two per core. A worker thread serves all its
    /// connections in turn, so while the kernel runs another thread (a
    /// database backend, a job) every request of that worker waits: with a
    /// thread per core, lookups under a burst of edits waited 9.7-11 ms at
    /// p99 (`make bench-scale`), 7.9-9.4 ms with two per core.
    pub fn http_workers(&self) -> usize {
        match self.workers {
            0 => 2 * cores(),
            n => n,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: String,
    pub pool_size: u32,
    pub migrate_on_start: bool,
}

#[derive(Clone, Deserialize)]
pub struct AuthSettings {
    pub issuer: String,
    pub audience: String,
    /// HS256, RS256 or ES256.
    pub algorithm: String,
    /// HS256 secret. Empty means the development secret (development mode only).
    pub hs256_secret: String,
    /// PEM public key file for RS256 / ES256.
    pub public_key_file: Option<PathBuf>,
    /// A JWKS file: verification keys chosen by the token's `kid`, re-read
    /// when it changes and on SIGHUP (key rotation without downtime).
    pub jwks_file: Option<PathBuf>,
    pub leeway_secs: u64,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("algorithm", &self.algorithm)
            .field("public_key_file", &self.public_key_file)
            .field("jwks_file", &self.jwks_file)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Deserialize)]
pub struct SecretSettings {
    /// Base64 of 32 random bytes; encrypts upstream passwords at rest.
    pub encryption_key: String,
    /// Where the key is kept when `encryption_key` is empty. Development mode
    /// creates it on first start; production mode requires one or the other.
    pub key_file: PathBuf,
}

impl std::fmt::Debug for SecretSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSettings")
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct StagesSettings {
    /// The longest test (device on test) the service lets anyone ask for.
    pub max_test_hours: u32,
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub max_retries: u32,
    pub requests_per_second: u32,
}

/// Calls to Alarm.com (and the providers that speak its protocol).
#[derive(Debug, Clone, Deserialize)]
pub struct AdcSettings {
    pub timeout_ms: u64,
    /// Client-side throttle per connection (Alarm.com publishes no limit).
    pub requests_per_second: u32,
    /// Customers an import reads from Alarm.com at once.
    pub import_concurrency: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// Used when `RUST_LOG` is not set.
    pub level: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IdempotencySettings {
    /// How long a key and its first answer are kept.
    pub ttl_hours: u64,
}

/// How long each kind of history is kept before the purger (B15) deletes
/// it, in days; 0 keeps it for good. Idempotency keys follow
/// `idempotency.ttl_hours`.
#[derive(Debug, Clone, Deserialize)]
pub struct RetentionSettings {
    /// The change feed; a reader further behind than this misses what went.
    pub events_days: u64,
    pub audit_days: u64,
    /// Inbound provider callbacks (the ISP health report reads the last day).
    pub callback_log_days: u64,
    /// Succeeded and cancelled jobs, from when they ended.
    pub finished_jobs_days: u64,
    /// Dead jobs and jobs failed for good, kept longer to be looked into.
    pub dead_jobs_days: u64,
    /// Each record's outcome of an import, from when the import ended.
    pub import_items_days: u64,
    /// Batches and imports themselves (what is left of their items and their
    /// job with them), from when they ended; what an import matched stays.
    pub runs_days: u64,
    /// Most rows one purge statement deletes.
    pub batch_size: u32,
    /// Pause between two batches, so requests get the database in between.
    pub batch_pause_ms: u64,
    /// How often the purge runs.
    pub interval_secs: u64,
}

/// Every key with its default, in the order the README lists them.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("mode", "development"),
    ("server.bind", "127.0.0.1:8080"),
    ("server.workers", "0"),
    ("server.max_body_bytes", "262144"),
    ("database.url", "sqlite://data/crosslink.db"),
    ("database.pool_size", "8"),
    ("database.migrate_on_start", "true"),
    ("auth.issuer", "crosslink"),
    ("auth.audience", "crosslink"),
    ("auth.algorithm", "HS256"),
    ("auth.hs256_secret", ""),
    ("auth.leeway_secs", "30"),
    ("secrets.encryption_key", ""),
    ("secrets.key_file", "data/secret.key"),
    ("stages.max_test_hours", "72"),
    ("stages.timeout_ms", "10000"),
    ("stages.connect_timeout_ms", "3000"),
    ("stages.max_retries", "2"),
    ("stages.requests_per_second", "20"),
    ("adc.timeout_ms", "30000"),
    ("adc.requests_per_second", "10"),
    ("adc.import_concurrency", "4"),
    ("log.format", "text"),
    ("log.level", "info"),
    ("idempotency.ttl_hours", "24"),
    ("retention.events_days", "30"),
    ("retention.audit_days", "365"),
    ("retention.callback_log_days", "7"),
    ("retention.finished_jobs_days", "7"),
    ("retention.dead_jobs_days", "30"),
    ("retention.import_items_days", "30"),
    ("retention.runs_days", "90"),
    ("retention.batch_size", "500"),
    ("retention.batch_pause_ms", "100"),
    ("retention.interval_secs", "600"),
    ("jobs.workers", "auto"),
    ("jobs.pool_size", "auto"),
    ("jobs.retry_base_ms", "1000"),
    ("jobs.retry_cap_ms", "300000"),
    ("jobs.lease_secs", "30"),
    ("jobs.outage_patience_secs", "86400"),
    ("jobs.max_running_per_dealer", "auto"),
    ("rate_limit.requests_per_second", "50"),
    ("rate_limit.burst", "200"),
    // A list; empty: no special-purpose range allowed.
    ("egress.allow", ""),
];

/// Keys that have no default (unset unless given). Together with [`DEFAULTS`]
/// they are every key the service knows; anything else stops the start.
pub const OPTIONAL_KEYS: &[&str] = &["auth.public_key_file", "auth.jwks_file"];

/// HS256 secrets shorter than this are refused in production (RFC 7518
/// §3.2: a key at least as long as the hash output).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// A key given in the file or the environment that names no setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// The dotted key, e.g. `database.uri`.
    pub key: String,
    /// Where it came from: the file's path or the variable's name.
    pub source: String,
    /// The known key it most likely meant.
    pub nearest: Option<&'static str>,
}

impl std::fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown setting {} (in {})", self.key, self.source)?;
        match self.nearest {
            Some(near) => write!(f, "; did you mean {near}?"),
            None => write!(f, "; the README lists every setting"),
        }
    }
}

/// The settings as loaded, with every problem found on the way, for
/// `crosslink config check` (which reports them all instead of stopping at one).
pub struct Loaded {
    /// The merged layers, for printing what is in force.
    pub layers: config::Config,
    pub unknown: Vec<UnknownKey>,
    /// `Err` when the values do not make settings (a wrong type, a bad value).
    pub settings: Result<Settings, config::ConfigError>,
}

/// Every key the service knows.
pub fn known_keys() -> impl Iterator<Item = &'static str> {
    DEFAULTS
        .iter()
        .map(|(k, _)| *k)
        .chain(OPTIONAL_KEYS.iter().copied())
}

/// The known key closest to `key` by edit distance, when close enough to be
/// a plausible typo.
pub fn nearest_key(key: &str) -> Option<&'static str> {
    let (best, distance) = known_keys()
        .map(|k| (k, strsim::levenshtein(key, k)))
        .min_by_key(|(_, d)| *d)?;
    (distance <= (key.len() / 3).max(2)).then_some(best)
}

/// Whether the value of `key` must never be shown (masked by `config check`).
pub fn is_secret_key(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    !last.ends_with("_file")
        && (last.contains("secret")
            || last.contains("password")
            || last.contains("token")
            || last == "key"
            || last.ends_with("_key"))
}

/// `section.key` paths of a source's values (tables flattened, lists kept
/// whole); an empty table (`[secrets]` with every key commented out) is its
/// own path, ending with a dot.
fn flatten(prefix: &str, table: &config::Map<String, config::Value>, out: &mut Vec<String>) {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match &value.kind {
            config::ValueKind::Table(inner) if inner.is_empty() => out.push(format!("{key}.")),
            config::ValueKind::Table(inner) => flatten(&key, inner, out),
            _ => out.push(key),
        }
    }
}

fn unknown_in(
    source: &dyn config::Source,
    origin: impl Fn(&str) -> String,
) -> Result<Vec<UnknownKey>, config::ConfigError> {
    let mut keys = Vec::new();
    flatten("", &source.collect()?, &mut keys);
    keys.sort();
    Ok(keys
        .into_iter()
        .filter(|k| match k.strip_suffix('.') {
            // An empty table is fine when it is a known section.
            Some(_) => !known_keys().any(|known| known.starts_with(k.as_str())),
            None => !known_keys().any(|known| known == k),
        })
        .map(|key| key.trim_end_matches('.').to_owned())
        .map(|key| UnknownKey {
            source: origin(&key),
            nearest: nearest_key(&key),
            key,
        })
        .collect())
}

fn file_source(file: Option<&Path>) -> config::File<config::FileSourceFile, config::FileFormat> {
    match file {
        Some(path) => config::File::from(path).required(true),
        None => config::File::with_name("crosslink.toml").required(false),
    }
}

/// `CROSSLINK__SECTION__KEY` variables; `vars` replaces the process
/// environment (tests).
fn env_source(vars: Option<config::Map<String, String>>) -> config::Environment {
    config::Environment::with_prefix("CROSSLINK")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        // Only this key is a list; every other value stays text.
        .list_separator(",")
        .with_list_parse_key("egress.allow")
        .source(vars)
}

impl Settings {
    /// Loads the layers. `file` is `--config`; without it `crosslink.toml` in
    /// the working directory is read when present.
    /// An unknown key (see [`OPTIONAL_KEYS`]) is an error naming it and the
    /// key it most likely meant.
    pub fn load(file: Option<&Path>) -> Result<Self, config::ConfigError> {
        Self::load_strict(file, None)
    }

    /// [`Settings::load`] with `vars` in place of the process environment.
    pub fn load_strict(
        file: Option<&Path>,
        vars: Option<config::Map<String, String>>,
    ) -> Result<Self, config::ConfigError> {
        let loaded = Self::inspect(file, vars)?;
        if !loaded.unknown.is_empty() {
            let lines: Vec<String> = loaded.unknown.iter().map(ToString::to_string).collect();
            return Err(config::ConfigError::Message(lines.join("\n")));
        }
        loaded.settings
    }

    /// Loads the layers without stopping at unknown keys or bad values, so
    /// that every problem can be reported. Errs only when a source cannot be
    /// read (a missing `--config` file, a file that is not TOML).
    pub fn inspect(
        file: Option<&Path>,
        vars: Option<config::Map<String, String>>,
    ) -> Result<Loaded, config::ConfigError> {
        let file_name =
            file.map_or_else(|| "crosslink.toml".to_owned(), |p| p.display().to_string());
        let mut unknown = unknown_in(&file_source(file), |_| file_name.clone())?;
        unknown.extend(unknown_in(&env_source(vars.clone()), |key| {
            format!("CROSSLINK__{}", key.replace('.', "__").to_ascii_uppercase())
        })?);
        let mut builder = config::Config::builder();
        for (key, value) in DEFAULTS {
            builder = builder.set_default(*key, *value)?;
        }
        let layers = builder
            .add_source(file_source(file))
            .add_source(env_source(vars))
            .build()?;
        let settings = layers.clone().try_deserialize();
        Ok(Loaded {
            layers,
            unknown,
            settings,
        })
    }

    /// The HS256 secret in force (the dev one when none is set).
    pub fn jwt_secret(&self) -> &str {
        if self.auth.hs256_secret.is_empty() {
            DEV_JWT_SECRET
        } else {
            &self.auth.hs256_secret
        }
    }

    /// Refuses settings that must not run in production.
    pub fn check(&self) -> Result<Vec<String>, String> {
        let mut warnings = Vec::new();
        let production = self.mode == Mode::Production;
        if production && self.database.url == default_of("database.url") {
            return Err(format!(
                "production mode needs database.url set explicitly (the default, {}, is a file of this replica's own)",
                default_of("database.url")
            ));
        }
        let hs = self.auth.algorithm.eq_ignore_ascii_case("HS256");
        // With a JWKS file, tokens that name a key (kid) need no single key.
        let jwks = self.auth.jwks_file.is_some();
        if hs && self.auth.hs256_secret.is_empty() && !jwks {
            if production {
                return Err("auth.hs256_secret is required in production mode (or use RS256/ES256 with auth.public_key_file, or auth.jwks_file)".into());
            }
            warnings.push("auth.hs256_secret is not set: using the DEVELOPMENT signing secret; anyone can mint tokens. Set CROSSLINK__AUTH__HS256_SECRET before exposing this service.".into());
        }
        self.egress.policy().map_err(|e| e.to_string())?;
        if self.retention.batch_size == 0 || self.retention.interval_secs == 0 {
            return Err(
                "retention.batch_size and retention.interval_secs must be at least 1".into(),
            );
        }
        if production
            && hs
            && self.auth.hs256_secret.len() < MIN_HS256_SECRET_BYTES
            && !self.auth.hs256_secret.is_empty()
        {
            return Err(format!(
                "auth.hs256_secret is {} bytes; production mode needs at least {MIN_HS256_SECRET_BYTES} (e.g. openssl rand -base64 32)",
                self.auth.hs256_secret.len()
            ));
        }
        if !hs && self.auth.public_key_file.is_none() && !jwks {
            return Err(format!(
                "auth.algorithm is {} but neither auth.public_key_file nor auth.jwks_file is set",
                self.auth.algorithm
            ));
        }
        Ok(warnings)
    }
}

fn default_of(key: &str) -> &'static str {
    DEFAULTS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or("", |(_, v)| *v)
}

impl Loaded {
    /// Every known key with the value in force, one `key = value` a line,
    /// secrets masked and database passwords redacted.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for key in known_keys() {
            let Ok(value) = self.layers.get::<config::Value>(key) else {
                out.push_str(&format!("# {key} is not set\n"));
                continue;
            };
            let shown = if is_secret_key(key) {
                match &value.kind {
                    config::ValueKind::String(s) if s.is_empty() => "\"\"".to_owned(),
                    config::ValueKind::Nil => "\"\"".to_owned(),
                    _ => "\"***\" # masked".to_owned(),
                }
            } else {
                render_value(key, &value)
            };
            out.push_str(&format!("{key} = {shown}\n"));
        }
        out
    }
}

fn render_value(key: &str, value: &config::Value) -> String {
    match &value.kind {
        config::ValueKind::String(s) if key == "database.url" => {
            format!("{:?}", crate::app::redact_url(s))
        }
        // Defaults are given as text: a number or a boolean shows as one.
        config::ValueKind::String(s) if s.parse::<i64>().is_ok() || s.parse::<bool>().is_ok() => {
            s.clone()
        }
        config::ValueKind::String(s) => format!("{s:?}"),
        config::ValueKind::Array(items) => {
            let items: Vec<String> = items.iter().map(|v| render_value(key, v)).collect();
            format!("[{}]", items.join(", "))
        }
        config::ValueKind::Table(_) => "{ ... }".to_owned(),
        config::ValueKind::Nil => "\"\"".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
