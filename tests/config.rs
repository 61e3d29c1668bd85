//! End to end: strict configuration (issue 13). A key that names no setting,
//! in the file or in a `CROSSLINK__` variable, stops the start with its name
//! and the key it most likely meant; production mode needs an explicit
//! database and a long secret; `crosslink config check` shows the settings in
//! force with secrets masked and fails on any problem.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Runs the binary with only `env` set and waits (at most 60 s: a service
/// that starts when it should not is killed, and the test fails on it).
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crosslink"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the crosslink binary starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const PRODUCTION: &[(&str, &str)] = &[
    ("CROSSLINK__MODE", "production"),
    ("CROSSLINK__SERVER__BIND", "127.0.0.1:0"),
    ("CROSSLINK__AUTH__HS256_SECRET", JWT_SECRET),
    ("CROSSLINK__SECRETS__ENCRYPTION_KEY", ENCRYPTION_KEY),
];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    PRODUCTION.iter().chain(extra).copied().collect()
}

#[test]
fn a_mistyped_environment_key_stops_the_start_naming_it() {
    let dir = scratch_dir("cfg-env");
    let out = run(
        &dir,
        &["serve"],
        &with(&[(
            "CROSSLINK__DATABASE__URI",
            "postgres://db.example/crosslink",
        )]),
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "started with a typo: {err}");
    assert!(err.contains("database.uri"), "names the key: {err}");
    assert!(
        err.contains("CROSSLINK__DATABASE__URI"),
        "and the variable: {err}"
    );
    assert!(err.contains("did you mean database.url?"), "{err}");
    assert!(
        !dir.join("data/crosslink.db").exists(),
        "no SQLite file of its own"
    );
}

#[test]
fn a_mistyped_file_key_stops_the_start_naming_it() {
    let dir = scratch_dir("cfg-file");
    let file = dir.join("crosslink.toml");
    std::fs::write(
        &file,
        "[database]\nurl = \"sqlite://x.db\"\n\n[jobs]\nworker = 3\n",
    )
    .unwrap();
    for args in [
        vec!["serve", "--config", file.to_str().unwrap()],
        // Read from the working directory without --config, and by every command.
        vec!["migrate"],
    ] {
        let out = run(&dir, &args, &[]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(
            err.contains("unknown setting jobs.worker"),
            "{args:?}: {err}"
        );
        assert!(err.contains("did you mean jobs.workers?"), "{err}");
        assert!(err.contains("crosslink.toml"), "names the file: {err}");
    }
}

#[test]
fn production_needs_an_explicit_database_and_a_long_secret() {
    let dir = scratch_dir("cfg-prod");
    let out = run(&dir, &["serve"], PRODUCTION);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("database.url"), "{err}");
    let out = run(
        &dir,
        &["serve"],
        &[
            ("CROSSLINK__MODE", "production"),
            ("CROSSLINK__SERVER__BIND", "127.0.0.1:0"),
            ("CROSSLINK__DATABASE__URL", "sqlite://prod.db"),
            ("CROSSLINK__AUTH__HS256_SECRET", "abc"),
            ("CROSSLINK__SECRETS__ENCRYPTION_KEY", ENCRYPTION_KEY),
        ],
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("auth.hs256_secret is 3 bytes"), "{err}");
    assert!(!dir.join("prod.db").exists(), "refused before any database");
}

#[test]
fn config_check_masks_secrets_and_fails_on_any_problem() {
    let dir = scratch_dir("cfg-check");
    let db = "postgres://crosslink:db-Passw0rd@db.example/crosslink";
    let good = with(&[("CROSSLINK__DATABASE__URL", db)]);
    let out = run(&dir, &["config", "check"], &good);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("mode = \"production\""), "{text}");
    assert!(text.contains("auth.hs256_secret = \"***\""), "{text}");
    assert!(text.contains("secrets.encryption_key = \"***\""), "{text}");
    assert!(text.contains("rate_limit.requests_per_second = "), "{text}");
    for secret in [JWT_SECRET, ENCRYPTION_KEY, "db-Passw0rd"] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
        assert!(!stderr(&out).contains(secret));
    }
    assert!(
        !dir.join("data").exists(),
        "a check creates no key or database"
    );

    // An unknown key: the settings are still shown, the status is not 0.
    let mut typo = good.clone();
    typo.push(("CROSSLINK__AUTH__HS256_SECRETS", "x"));
    let out = run(&dir, &["config", "check"], &typo);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("auth.hs256_secrets") && stderr(&out).contains("auth.hs256_secret?"),
        "{}",
        stderr(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("server.bind = "));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("\"x\""));

    // What check() refuses, a value of the wrong type, a JWKS file that does not read.
    for (env, why) in [
        (PRODUCTION.to_vec(), "database.url"),
        (
            with(&[
                ("CROSSLINK__DATABASE__URL", db),
                ("CROSSLINK__SERVER__WORKERS", "many"),
            ]),
            "server.workers",
        ),
        (
            with(&[
                ("CROSSLINK__DATABASE__URL", db),
                ("CROSSLINK__AUTH__JWKS_FILE", "/nonexistent/jwks.json"),
            ]),
            "auth.jwks_file",
        ),
    ] {
        let out = run(&dir, &["config", "check"], &env);
        assert!(!out.status.success(), "{why}");
        assert!(stderr(&out).contains(why), "{why}: {}", stderr(&out));
    }

    // The production example of deploy/ passes, given its secrets.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/crosslink.toml");
    let out = run(
        &dir,
        &["config", "check", "--config", example],
        &[
            ("CROSSLINK__AUTH__HS256_SECRET", JWT_SECRET),
            ("CROSSLINK__SECRETS__ENCRYPTION_KEY", ENCRYPTION_KEY),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}
