//! Every fault kind, seen from a real HTTP client.

mod common;

use std::time::{Duration, Instant};

use common::{start, start_with, Client};
use reqwest::Method;
use serde_json::{json, Value};
use stages_sim::{FaultKind, FaultRule};

async fn set_faults(sim: &stages_sim::Sim, rules: Value) {
    let a = Client::anonymous(sim).put("/admin/faults", rules).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn latency_delays_the_answer() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    set_faults(
        &sim,
        json!([{"route": "GET /api/v1/ping", "kind": "latency", "ms": 400}]),
    )
    .await;
    let t = Instant::now();
    let a = c.get("/api/v1/ping").await;
    let took = t.elapsed();
    assert_eq!(a.status, 200);
    assert!(took >= Duration::from_millis(400), "{took:?}");
    // Other routes are not slowed.
    let t = Instant::now();
    c.get("/api/v1/lookups/regions").await;
    assert!(t.elapsed() < Duration::from_millis(400));
}

#[tokio::test]
async fn error_answers_5xx_with_the_error_shape() {
    let sim = start_with(
        1,
        vec![FaultRule::parse("* /api/v1/sites*=error:503").unwrap()],
    )
    .await;
    let c = Client::new(&sim);
    let a = c.get("/api/v1/sites").await;
    assert_eq!(a.status, 503);
    assert_eq!(a.error_code(), "injected_fault");
    let a = c.get("/api/v1/sites/10001/devices").await;
    assert_eq!(a.status, 503);
    assert_eq!(c.get("/api/v1/ping").await.status, 200);
    // Faults come before auth: an outage does not check credentials.
    assert_eq!(
        Client::anonymous(&sim).get("/api/v1/sites").await.status,
        503
    );
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    let a = Client::anonymous(&sim)
        .post(
            "/admin/faults",
            json!({"route": "POST /api/v1/sites", "kind": "rate_limit", "retry_after_secs": 2}),
        )
        .await;
    assert_eq!(a.status, 201);
    let a = c.post("/api/v1/sites", json!({"name": "x"})).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.headers.get("retry-after").unwrap(), "2");
    assert_eq!(a.error_code(), "rate_limited");
    assert_eq!(sim.state().site_count(), 0);
    assert_eq!(c.get("/api/v1/sites").await.status, 200, "GET not limited");
}

#[tokio::test]
async fn drop_closes_the_connection_without_an_answer() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    set_faults(
        &sim,
        json!([{"route": "GET /api/v1/ping", "kind": "drop", "times": 3}]),
    )
    .await;
    for _ in 0..3 {
        let err = c
            .request(Method::GET, "/api/v1/ping")
            .send()
            .await
            .expect_err("no response head reaches the client");
        assert!(!err.is_timeout(), "{err:?}");
        assert!(err.is_request() || err.is_connect(), "{err:?}");
    }
    // The server is fine afterwards.
    assert_eq!(c.get("/api/v1/ping").await.status, 200);
}

#[tokio::test]
async fn timeout_never_answers() {
    let sim = start(0).await;
    sim.state()
        .add_fault(FaultRule::new("/api/v1/ping", FaultKind::Timeout).times(1))
        .unwrap();
    let c = Client::new(&sim);
    let t = Instant::now();
    let err = c
        .request(Method::GET, "/api/v1/ping")
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .expect_err("no answer");
    assert!(err.is_timeout(), "{err:?}");
    assert!(t.elapsed() >= Duration::from_millis(500));
    assert_eq!(c.get("/api/v1/ping").await.status, 200, "times=1 used up");
}

#[tokio::test]
async fn malformed_body_is_not_json() {
    let sim = start_with(
        0,
        vec![FaultRule::parse("GET /api/v1/sites=malformed").unwrap()],
    )
    .await;
    let c = Client::new(&sim);
    let res = c
        .request(Method::GET, "/api/v1/sites")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.json::<Value>().await.is_err());
}

#[tokio::test]
async fn times_limits_a_rule_and_admin_lists_and_clears() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    let anon = Client::anonymous(&sim);
    set_faults(
        &sim,
        json!([{"route": "* /api/v1/*", "kind": "error", "status": 502, "times": 2}]),
    )
    .await;
    assert_eq!(c.get("/api/v1/ping").await.status, 502);
    let a = anon.get("/admin/faults").await;
    assert_eq!(a.body[0]["times"], 1, "one use left: {}", a.body);
    assert_eq!(c.get("/api/v1/lookups/regions").await.status, 502);
    assert_eq!(c.get("/api/v1/ping").await.status, 200);
    assert_eq!(anon.get("/admin/faults").await.body, json!([]));

    // Probability 0 never applies, 1 always.
    set_faults(
        &sim,
        json!([
            {"route": "GET /api/v1/ping", "kind": "error", "status": 500, "probability": 0.0},
            {"route": "GET /api/v1/lookups/*", "kind": "error", "status": 500, "probability": 1.0}
        ]),
    )
    .await;
    for _ in 0..5 {
        assert_eq!(c.get("/api/v1/ping").await.status, 200);
    }
    assert_eq!(c.get("/api/v1/lookups/regions").await.status, 500);

    // Bad rules are refused whole.
    let a = anon
        .put(
            "/admin/faults",
            json!([{"route": "GET /x", "kind": "error", "status": 404}]),
        )
        .await;
    assert_eq!((a.status, a.error_code()), (422, "validation"));
    let a = anon
        .post(
            "/admin/faults",
            json!({"route": "GET /x", "kind": "explode"}),
        )
        .await;
    assert_eq!(a.status, 422);
    assert_eq!(
        anon.get("/admin/faults")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        2
    );

    assert_eq!(anon.delete("/admin/faults").await.status, 204);
    assert_eq!(c.get("/api/v1/lookups/regions").await.status, 200);

    // Faulted requests are counted too.
    let stats = anon.get("/admin/stats").await;
    assert_eq!(stats.body["requests"]["GET /api/v1/lookups/{list}"], 3);
}
