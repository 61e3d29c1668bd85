//! Settings: built-in defaults < `crosslink.toml` (or `--config FILE`) <
//! environment `CROSSLINK__SECTION__KEY`. Every key is listed in the README.

use std::path::PathBuf;

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
    pub jobs: JobSettings,
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

    /// Jobs run at once: `jobs.workers`, or four per job connection. A job
    /// spends most of its time waiting on Stages or Alarm.com, not on the
    /// database, so several share a connection.
    pub fn concurrency(&self) -> usize {
        match self.workers {
            AutoOr::Fixed(n) => n,
            AutoOr::Auto => 4 * self.pool_size() as usize,
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub bind: String,
    /// HTTP worker threads; 0 = one per core.
    pub workers: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
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
    pub leeway_secs: u64,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("algorithm", &self.algorithm)
            .field("public_key_file", &self.public_key_file)
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
    ("jobs.workers", "auto"),
    ("jobs.pool_size", "auto"),
    ("jobs.retry_base_ms", "1000"),
    ("jobs.retry_cap_ms", "300000"),
    ("jobs.lease_secs", "30"),
    ("jobs.outage_patience_secs", "86400"),
    // A list; empty: no special-purpose range allowed.
    ("egress.allow", ""),
];

impl Settings {
    /// Loads the layers. `file` is `--config`; without it `crosslink.toml` in
    /// the working directory is read when present.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, config::ConfigError> {
        let mut builder = config::Config::builder();
        for (key, value) in DEFAULTS {
            builder = builder.set_default(*key, *value)?;
        }
        builder = match file {
            Some(path) => builder.add_source(config::File::from(path).required(true)),
            None => builder.add_source(config::File::with_name("crosslink.toml").required(false)),
        };
        builder
            .add_source(
                config::Environment::with_prefix("CROSSLINK")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    // Only this key is a list; every other value stays text.
                    .list_separator(",")
                    .with_list_parse_key("egress.allow"),
            )
            .build()?
            .try_deserialize()
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
        let hs = self.auth.algorithm.eq_ignore_ascii_case("HS256");
        if hs && self.auth.hs256_secret.is_empty() {
            if self.mode == Mode::Production {
                return Err("auth.hs256_secret is required in production mode (or use RS256/ES256 with auth.public_key_file)".into());
            }
            warnings.push("auth.hs256_secret is not set: using the DEVELOPMENT signing secret; anyone can mint tokens. Set CROSSLINK__AUTH__HS256_SECRET before exposing this service.".into());
        }
        self.egress.policy().map_err(|e| e.to_string())?;
        if !hs && self.auth.public_key_file.is_none() {
            return Err(format!(
                "auth.algorithm is {} but auth.public_key_file is not set",
                self.auth.algorithm
            ));
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_deserialize_and_environment_overrides() {
        // One test touches the environment, so no other test races it.
        std::env::set_var("CROSSLINK__SERVER__BIND", "127.0.0.1:9999");
        std::env::set_var("CROSSLINK__DATABASE__POOL_SIZE", "3");
        let s = Settings::load(None).unwrap();
        std::env::remove_var("CROSSLINK__SERVER__BIND");
        std::env::remove_var("CROSSLINK__DATABASE__POOL_SIZE");
        assert_eq!(s.server.bind, "127.0.0.1:9999");
        assert_eq!(s.database.pool_size, 3);
        assert_eq!(s.database.url, "sqlite://data/crosslink.db");
        assert_eq!(s.mode, Mode::Development);
        assert_eq!(s.jwt_secret(), DEV_JWT_SECRET);
        assert_eq!(s.check().unwrap().len(), 1, "dev secret warns");
        assert!(s.egress.allow.is_empty(), "no range allowed by default");
    }

    #[test]
    fn the_egress_allow_list_is_read_from_a_file_or_as_text() {
        let dir = std::env::temp_dir().join(format!("cl-egress-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[egress]\nallow = [\"10.20.0.0/16\", \"127.0.0.1\"]\n",
        )
        .unwrap();
        let s = Settings::load(Some(&file)).unwrap();
        assert_eq!(s.egress.allow, ["10.20.0.0/16", "127.0.0.1"]);
        assert!(s.check().is_ok());
        std::fs::write(&file, "[egress]\nallow = \"10.0.0.0/8, ::1\"\n").unwrap();
        let s = Settings::load(Some(&file)).unwrap();
        assert_eq!(s.egress.allow, ["10.0.0.0/8", "::1"]);
        std::fs::write(&file, "[egress]\nallow = [\"10.0.0.0/33\"]\n").unwrap();
        let s = Settings::load(Some(&file)).unwrap();
        let err = s.check().unwrap_err();
        assert!(
            err.contains("egress.allow") && err.contains("10.0.0.0/33"),
            "{err}"
        );
    }

    #[test]
    fn job_sizes_are_auto_or_given() {
        let auto = JobSettings {
            workers: AutoOr::Auto,
            pool_size: AutoOr::Auto,
            retry_base_ms: 1,
            retry_cap_ms: 1,
            lease_secs: 1,
            outage_patience_secs: 1,
        };
        assert!(auto.pool_size() >= 2);
        assert_eq!(auto.concurrency(), 4 * auto.pool_size() as usize);
        let fixed = JobSettings {
            workers: AutoOr::Fixed(0),
            pool_size: AutoOr::Fixed(3),
            ..auto
        };
        assert_eq!((fixed.concurrency(), fixed.pool_size()), (0, 3));
        let parse = |v: serde_json::Value| serde_json::from_value::<AutoOr>(v).ok();
        assert_eq!(parse(serde_json::json!("auto")), Some(AutoOr::Auto));
        assert_eq!(parse(serde_json::json!("6")), Some(AutoOr::Fixed(6)));
        assert_eq!(parse(serde_json::json!(6)), Some(AutoOr::Fixed(6)));
        assert_eq!(parse(serde_json::json!("many")), None);
    }

    #[test]
    fn a_file_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("cl-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "mode = \"production\"\n[auth]\nhs256_secret = \"s3cret-s3cret\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&file)).unwrap();
        assert_eq!(s.mode, Mode::Production);
        assert!(s.check().unwrap().is_empty());
        std::fs::write(&file, "mode = \"production\"\n").unwrap();
        let s = Settings::load(Some(&file)).unwrap();
        assert!(s.check().is_err(), "production without a secret is refused");
    }
}
