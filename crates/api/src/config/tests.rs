//! The settings' unit tests: layers, strict keys, checks, rendering.

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
fn http_workers_are_two_per_core_unless_given() {
    let mut server = ServerSettings {
        bind: "127.0.0.1:0".into(),
        workers: 0,
        max_body_bytes: 1,
    };
    assert_eq!(server.http_workers(), 2 * super::cores());
    server.workers = 3;
    assert_eq!(server.http_workers(), 3);
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
        max_running_per_dealer: AutoOr::Auto,
    };
    let pool = auto.pool_size() as usize;
    assert!(pool >= 2);
    // SQLite's one writer serves the HTTP handlers too; PostgreSQL commits
    // many at once.
    assert_eq!(auto.concurrency(Backend::Sqlite), 16 * pool);
    assert_eq!(auto.concurrency(Backend::Postgres), 64 * pool);
    // Three quarters of the slots, rounded up; never 0 (that means no cap).
    for backend in [Backend::Sqlite, Backend::Postgres] {
        assert_eq!(
            auto.max_running_per_dealer(backend),
            auto.concurrency(backend) * 3 / 4
        );
    }
    // Callbacks: two per job connection, at most a quarter of the slots.
    assert_eq!(auto.most_callbacks_at_once(64 * pool), 2 * pool);
    assert_eq!(auto.most_callbacks_at_once(8), 2);
    assert_eq!(auto.most_callbacks_at_once(1), 1);
    let two = JobSettings {
        workers: AutoOr::Fixed(2),
        ..auto.clone()
    };
    assert_eq!(two.max_running_per_dealer(Backend::Postgres), 2);
    let one = JobSettings {
        workers: AutoOr::Fixed(1),
        ..auto.clone()
    };
    assert_eq!(one.max_running_per_dealer(Backend::Sqlite), 1);
    let fixed = JobSettings {
        workers: AutoOr::Fixed(0),
        pool_size: AutoOr::Fixed(3),
        ..auto
    };
    assert_eq!(
        (fixed.concurrency(Backend::Postgres), fixed.pool_size()),
        (0, 3)
    );
    assert_eq!(fixed.most_callbacks_at_once(128), 6);
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
    let production = "mode = \"production\"\n[database]\nurl = \"postgres://db/crosslink\"\n";
    std::fs::write(
        &file,
        format!("{production}[auth]\nhs256_secret = \"s3cret-s3cret-s3cret-s3cret-s3cret\"\n"),
    )
    .unwrap();
    let s = Settings::load(Some(&file)).unwrap();
    assert_eq!(s.mode, Mode::Production);
    assert!(s.check().unwrap().is_empty());
    std::fs::write(&file, production).unwrap();
    let s = Settings::load(Some(&file)).unwrap();
    assert!(s.check().is_err(), "production without a secret is refused");
}

fn scratch_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cl-conf-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

fn vars(pairs: &[(&str, &str)]) -> Option<config::Map<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

#[test]
fn unknown_keys_in_the_file_stop_the_load_with_the_nearest_key() {
    let file = scratch_file(
        "typo.toml",
        "[database]\nuri = \"postgres://db/x\"\n[auth]\nissuer = \"me\"\n",
    );
    let err = Settings::load_strict(Some(&file), vars(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown setting database.uri"), "{err}");
    assert!(err.contains("did you mean database.url?"), "{err}");
    assert!(err.contains("typo.toml"), "names the file: {err}");
    // A whole unknown section, and a known section's unknown key.
    // An empty known section is fine; an empty unknown one is not.
    let file = scratch_file("empty.toml", "[secrets]\n[auth]\n");
    assert!(Settings::load_strict(Some(&file), vars(&[])).is_ok());
    let file = scratch_file("empty.toml", "[secret]\n");
    let err = Settings::load_strict(Some(&file), vars(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown setting secret (in"), "{err}");
    let file = scratch_file("section.toml", "[logging]\nformat = \"json\"\n");
    let err = Settings::load_strict(Some(&file), vars(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown setting logging.format"), "{err}");
    assert!(err.contains("did you mean log.format?"), "{err}");
}

#[test]
fn unknown_environment_variables_stop_the_load() {
    let err = Settings::load_strict(
        None,
        vars(&[
            ("CROSSLINK__DATABASE__URI", "postgres://db/x"),
            ("CROSSLINK__SERVER__BIND", "127.0.0.1:1"),
            ("OTHER__THING", "ignored"),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("unknown setting database.uri (in CROSSLINK__DATABASE__URI)"),
        "{err}"
    );
    assert!(err.contains("did you mean database.url?"), "{err}");
    assert!(!err.contains("server.bind"), "known keys pass: {err}");
    // Optional keys without a default are known.
    let s = Settings::load_strict(
        None,
        vars(&[
            ("CROSSLINK__AUTH__JWKS_FILE", "/etc/crosslink/jwks.json"),
            ("CROSSLINK__RATE_LIMIT__BURST", "7"),
        ]),
    )
    .unwrap();
    assert_eq!(
        s.auth.jwks_file,
        Some(PathBuf::from("/etc/crosslink/jwks.json"))
    );
    assert_eq!(s.rate_limit.burst, 7);
    // Far from every key: no suggestion.
    let err = Settings::load_strict(None, vars(&[("CROSSLINK__ZZZZZZZZ", "1")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown setting zzzzzzzz"), "{err}");
    assert!(!err.contains("did you mean"), "{err}");
}

#[test]
fn production_needs_a_database_url_and_a_long_secret() {
    let load = |pairs: &[(&str, &str)]| Settings::load_strict(None, vars(pairs)).unwrap();
    let long = "0123456789abcdef0123456789abcdef";
    let s = load(&[
        ("CROSSLINK__MODE", "production"),
        ("CROSSLINK__AUTH__HS256_SECRET", long),
    ]);
    let err = s.check().unwrap_err();
    assert!(err.contains("database.url"), "{err}");
    let s = load(&[
        ("CROSSLINK__MODE", "production"),
        ("CROSSLINK__DATABASE__URL", "postgres://db/crosslink"),
        ("CROSSLINK__AUTH__HS256_SECRET", "abc"),
    ]);
    let err = s.check().unwrap_err();
    assert!(
        err.contains("3 bytes") && err.contains("at least 32"),
        "{err}"
    );
    let s = load(&[
        ("CROSSLINK__MODE", "production"),
        ("CROSSLINK__DATABASE__URL", "postgres://db/crosslink"),
        ("CROSSLINK__AUTH__HS256_SECRET", long),
    ]);
    assert_eq!(s.check(), Ok(vec![]));
    // Development keeps working with a short secret and the default database.
    let s = load(&[("CROSSLINK__AUTH__HS256_SECRET", "abc")]);
    assert_eq!(s.check(), Ok(vec![]));
}

#[test]
fn the_rendered_configuration_masks_secrets() {
    let loaded = Settings::inspect(
        None,
        vars(&[
            ("CROSSLINK__AUTH__HS256_SECRET", "very-secret-value"),
            ("CROSSLINK__SECRETS__ENCRYPTION_KEY", "AAAAkey"),
            ("CROSSLINK__DATABASE__URL", "postgres://u:pw-in-url@db/x"),
            ("CROSSLINK__DATABASE__URI", "oops"),
        ]),
    )
    .unwrap();
    let text = loaded.render();
    assert!(!text.contains("very-secret-value"), "{text}");
    assert!(!text.contains("AAAAkey"), "{text}");
    assert!(!text.contains("pw-in-url"), "{text}");
    assert!(text.contains("auth.hs256_secret = \"***\""), "{text}");
    assert!(
        text.contains("secrets.key_file = \"data/secret.key\""),
        "{text}"
    );
    assert!(text.contains("server.bind = \"127.0.0.1:8080\""), "{text}");
    assert!(text.contains("# auth.jwks_file is not set"), "{text}");
    assert_eq!(loaded.unknown.len(), 1);
    assert!(loaded.settings.is_ok());
    assert!(is_secret_key("secrets.encryption_key") && !is_secret_key("secrets.key_file"));
}

#[test]
fn the_readme_lists_every_key() {
    let readme = include_str!("../../../../README.md");
    for key in known_keys() {
        assert!(
            readme.contains(&format!("| `{key}` |")),
            "README.md's settings table lacks {key}"
        );
    }
}

#[test]
fn retention_settings_have_defaults_and_read_the_environment() {
    let s = Settings::load_strict(None, vars(&[])).unwrap();
    let r = &s.retention;
    assert_eq!(
        (r.events_days, r.audit_days, r.callback_log_days),
        (30, 365, 7)
    );
    assert_eq!(
        (r.finished_jobs_days, r.dead_jobs_days, r.import_items_days),
        (7, 30, 30)
    );
    assert_eq!(r.runs_days, 90);
    assert_eq!((r.batch_size, r.interval_secs), (500, 600));
    assert_eq!(s.idempotency.ttl_hours, 24, "the old key keeps working");
    let s = Settings::load_strict(
        None,
        vars(&[
            ("CROSSLINK__RETENTION__EVENTS_DAYS", "3"),
            ("CROSSLINK__RETENTION__BATCH_SIZE", "0"),
        ]),
    )
    .unwrap();
    assert_eq!(s.retention.events_days, 3);
    let err = s.check().unwrap_err();
    assert!(err.contains("retention.batch_size"), "{err}");
}
