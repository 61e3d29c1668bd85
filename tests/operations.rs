//! End to end: probes, metrics, the OpenAPI document and docs, and the
//! command line a newcomer and scripts rely on.

mod support;

use std::process::Command;

use reqwest::Method;
use support::*;

#[tokio::test]
async fn probes_metrics_and_request_ids() {
    let svc = Service::start().await;
    let health = svc.http.get(svc.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = Answer::from(svc.http.get(svc.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["pending_migrations"], 0);

    let admin = Who::admin("acme");
    let listed = svc
        .req(Method::GET, "/v1/connections", &admin)
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.headers()["x-request-id"], "trace-me-42");
    let fresh = svc.http.get(svc.url("/healthz")).send().await.unwrap();
    assert!(!fresh.headers()["x-request-id"].is_empty());

    let metrics = svc.metrics().await;
    assert!(
        metrics.contains(
            r#"crosslink_http_requests_total{method="GET",route="/v1/connections",status="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("crosslink_http_request_duration_seconds_bucket"));
    assert!(
        svc.logs().contains("trace-me-42"),
        "the request id is on the log line"
    );
}

/// In JSON log mode stdout holds nothing but JSON: the line that tells
/// where the service listens is a JSON event too (the harness reads the
/// address from it), and the log goes to stderr as JSON lines.
#[tokio::test]
async fn json_log_mode_writes_only_json_on_stdout() {
    let svc = Service::start_with(ServiceOptions {
        env: vec![("CROSSLINK__LOG__FORMAT".into(), "json".into())],
        ..Default::default()
    })
    .await;
    let admin = Who::admin("acme");
    let listed = svc.call(Method::GET, "/v1/connections", &admin, None).await;
    assert_eq!(listed.status, 200);
    let _ = svc.metrics().await;
    let lines = svc.stdout_lines();
    assert!(!lines.is_empty(), "the listening line is on stdout");
    for line in &lines {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout line {line:?} is not JSON: {e}"));
        assert_eq!(event["fields"]["message"], "crosslink listening", "{line}");
        assert_eq!(event["fields"]["address"], svc.base.as_str(), "{line}");
        assert_eq!(event["level"], "INFO");
    }
    let log = svc.logs();
    let mut logged = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("log line {line:?} is not JSON: {e}"));
        logged += 1;
    }
    assert!(logged > 0, "the JSON log is on stderr");
}

#[tokio::test]
async fn the_document_and_docs_are_served_without_internet() {
    let svc = Service::start().await;
    let doc = svc
        .http
        .get(svc.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(doc, api::openapi::document());
    let html = svc
        .http
        .get(svc.url("/docs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("/docs/swagger-ui-bundle.js") && html.contains("/openapi.json"));
    for asset in ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"] {
        let r = svc.http.get(svc.url(asset)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert!(
            r.bytes().await.unwrap().len() > 10_000,
            "{asset} is the real asset"
        );
    }
    let missing = Answer::from(svc.http.get(svc.url("/docs/nope.js")).send().await.unwrap()).await;
    missing.assert_problem(404);
}

#[test]
fn the_committed_openapi_document_is_current() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../openapi/openapi.json"
    ))
    .expect("openapi/openapi.json is committed");
    assert!(
        committed == api::openapi::document(),
        "openapi/openapi.json is stale: run `make openapi` and commit it"
    );
    let doc: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
}

#[tokio::test]
async fn crosslink_token_prints_only_a_token_the_service_accepts() {
    let svc = Service::start().await;
    let out = Command::new(env!("CARGO_BIN_EXE_crosslink"))
        .args([
            "token", "--dealer", "acme", "--sub", "alice", "--role", "admin", "--ttl", "10m",
        ])
        .env_clear()
        .env("CROSSLINK__AUTH__HS256_SECRET", JWT_SECRET)
        .current_dir(&svc.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    let token = stdout.trim();
    assert_eq!(token.split('.').count(), 3);
    let r = svc
        .http
        .get(svc.url("/v1/connections"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let bad = Command::new(env!("CARGO_BIN_EXE_crosslink"))
        .args([
            "token", "--dealer", "acme", "--sub", "alice", "--role", "king",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown role"));
}

#[test]
fn production_mode_without_an_encryption_key_is_a_clear_error() {
    let dir = scratch_dir("prod");
    let out = Command::new(env!("CARGO_BIN_EXE_crosslink"))
        .arg("serve")
        .env_clear()
        .env("CROSSLINK__MODE", "production")
        .env("CROSSLINK__AUTH__HS256_SECRET", JWT_SECRET)
        .env("CROSSLINK__SERVER__BIND", "127.0.0.1:0")
        .env(
            "CROSSLINK__DATABASE__URL",
            format!("sqlite://{}", dir.join("prod.db").display()),
        )
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no encryption key"), "{err}");
    assert!(
        !dir.join("data/secret.key").exists(),
        "production never makes a key"
    );
}

#[test]
fn development_mode_makes_a_key_once_and_migrate_is_idempotent() {
    let dir = scratch_dir("dev");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_crosslink"))
            .args(args)
            .env_clear()
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    let first = run(&["migrate"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        dir.join("data/crosslink.db").exists(),
        "the SQLite default lives under ./data/"
    );
    let key = std::fs::read_to_string(dir.join("data/secret.key")).unwrap();
    assert!(String::from_utf8_lossy(&first.stdout).contains("applied"));
    let second = run(&["migrate"]);
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).starts_with("applied 0 migration(s)"));
    assert_eq!(
        std::fs::read_to_string(dir.join("data/secret.key")).unwrap(),
        key,
        "the key is kept"
    );
}
