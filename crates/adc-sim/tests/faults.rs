//! Every fault kind, seen from a real HTTP client.

mod common;

use std::time::{Duration, Instant};

use adc_sim::{FaultKind, FaultRule};
use common::*;
use reqwest::Method;
use serde_json::json;

async fn set_faults(c: &Client, rules: serde_json::Value) {
    c.admin(Method::PUT, "/admin/faults", Some(rules)).await;
}

#[tokio::test]
async fn latency_delays_only_the_named_operation() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    set_faults(
        &c,
        json!([{"operation": "GetDealerId", "kind": "latency", "ms": 400}]),
    )
    .await;
    // A lower bound only: the named operation is at least its latency late,
    // however loaded the machine.
    let t = Instant::now();
    let r = c.call(DM, "GetDealerId", "").await;
    assert_eq!(r.status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );

    // Another operation is not delayed: with an hour of latency on
    // GetDealerId, one that waited for it would still be waiting, so the
    // other operation answering at all (within the client's 30 s) is the
    // proof, with no speed figure in it (speed is for `make bench`).
    set_faults(
        &c,
        json!([{"operation": "GetDealerId", "kind": "latency", "ms": 3_600_000}]),
    )
    .await;
    assert_eq!(c.call(DM, "GetCSPhoneNumber", "").await.status, 200);
    let stats = c.stats().await;
    assert_eq!(stats["succeeded"]["GetCSPhoneNumber"], 1);
}

#[tokio::test]
async fn http_500_is_an_html_page_not_a_soap_fault() {
    let sim = start_with(
        3,
        vec![FaultRule::parse("GetCustomerList=http_500").unwrap()],
    )
    .await;
    let c = Client::new(&sim);
    let r = c
        .call(CM, "GetCustomerList", "<includeTermed>true</includeTermed>")
        .await;
    assert_eq!(r.status, 500);
    assert!(
        r.content_type.starts_with("text/html"),
        "{}",
        r.content_type
    );
    assert!(!r.body.contains("Envelope"));
    assert!(r.body.contains("Server Error"));
    assert_eq!(c.call(DM, "GetDealerId", "").await.status, 200);
    // Faults come before authentication: an outage does not check credentials.
    let r = c
        .post_raw(
            CM,
            Some("GetCustomerList"),
            envelope_as("x", "y", "GetCustomerList", ""),
        )
        .await;
    assert!(r.content_type.starts_with("text/html"));
}

#[tokio::test]
async fn throttle_answers_503_with_retry_after() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    let rules = c
        .admin(
            Method::POST,
            "/admin/faults",
            Some(json!({"operation": "DealerManagement/*", "kind": "throttle", "retry_after_secs": 2})),
        )
        .await;
    assert_eq!(rules.as_array().unwrap().len(), 1);
    let r = c.call(DM, "GetRepList", "").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.headers.get("retry-after").unwrap(), "2");
    assert_eq!(
        c.call(CM, "GetLatestCallerVersion", "").await.status,
        200,
        "other service not throttled"
    );
}

#[tokio::test]
async fn malformed_is_200_with_broken_xml() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    set_faults(
        &c,
        json!([{"operation": "GetPackageIds", "kind": "malformed"}]),
    )
    .await;
    let r = c.call(DM, "GetPackageIds", "").await;
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/xml"));
    assert!(r.body.starts_with("<?xml"));
    assert!(well_formed(&r.body).is_err(), "{}", r.body);
}

#[tokio::test]
async fn timeout_never_answers() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    set_faults(
        &c,
        json!([{"operation": "GetDealerId", "kind": "timeout", "times": 1}]),
    )
    .await;
    let res = c
        .http
        .post(format!("{}{DM}", c.base))
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(envelope("GetDealerId", ""))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(res.unwrap_err().is_timeout());
    assert_eq!(c.call(DM, "GetDealerId", "").await.status, 200);
}

#[tokio::test]
async fn drop_closes_the_connection() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    set_faults(
        &c,
        json!([{"operation": "GetDealerId", "kind": "drop", "times": 1}]),
    )
    .await;
    // A closed connection is an error of its own, not a timeout: with a
    // client timeout of a minute, a request left hanging would end as one.
    let res = c
        .http
        .post(format!("{}{DM}", c.base))
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(envelope("GetDealerId", ""))
        .timeout(Duration::from_secs(60))
        .send()
        .await;
    let outcome = match res {
        Err(e) => Err(e),
        Ok(r) => r.text().await.map(|_| ()),
    };
    let err = outcome.expect_err("no answer");
    assert!(!err.is_timeout(), "{err}");
    assert_eq!(c.call(DM, "GetDealerId", "").await.status, 200);
}

#[tokio::test]
async fn fault_text_and_bad_credentials() {
    let sim = start_with(
        2,
        vec![
            FaultRule::parse("CreateCustomer=fault:Server busy, try later,times=1").unwrap(),
            FaultRule::new("GetRepList", FaultKind::BadCredentials).times(2),
        ],
    )
    .await;
    let c = Client::new(&sim);
    let r = c.call(CM, "CreateCustomer", "").await;
    assert_eq!(r.status, 500);
    assert_eq!(r.one("faultcode").as_deref(), Some("soap:Server"));
    assert_eq!(r.faultstring().as_deref(), Some("Server busy, try later"));
    for _ in 0..2 {
        let r = c.call(DM, "GetRepList", "").await;
        assert_eq!(r.status, 500);
        assert_eq!(r.faultstring().as_deref(), Some(adc_sim::AUTH_FAILED));
    }
    assert_eq!(c.call(DM, "GetRepList", "").await.status, 200);
    assert!(sim.state().faults().is_empty(), "times used up");
    let stats = c.stats().await;
    assert_eq!(stats["requests"]["GetRepList"], 3);
    assert_eq!(stats["succeeded"]["GetRepList"], 1);
}

#[tokio::test]
async fn probability_is_roughly_honoured() {
    let sim = start_with(
        0,
        vec![FaultRule::parse("GetDealerId=http_500,probability=0.2").unwrap()],
    )
    .await;
    let c = Client::new(&sim);
    let n = 500;
    let mut failed = 0;
    for _ in 0..n {
        let r = c.call(DM, "GetDealerId", "").await;
        match r.status {
            500 => failed += 1,
            200 => {}
            s => panic!("status {s}"),
        }
    }
    // Mean 100, standard deviation about 9: this range is over 3.5 deviations wide.
    assert!((65..=135).contains(&failed), "{failed} of {n} failed");
    let stats = c.stats().await;
    assert_eq!(stats["requests"]["GetDealerId"], n);
    assert_eq!(stats["succeeded"]["GetDealerId"], n - failed);
}

#[tokio::test]
async fn faults_are_managed_over_admin_routes() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    set_faults(
        &c,
        json!([
            {"operation": "*", "kind": "latency", "ms": 1},
            {"operation": "GetDealerId", "kind": "fault", "text": "x", "probability": 0.5}
        ]),
    )
    .await;
    let listed = c.admin(Method::GET, "/admin/faults", None).await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[1]["probability"], 0.5);
    c.admin(Method::DELETE, "/admin/faults", None).await;
    assert!(sim.state().faults().is_empty());

    let bad = c
        .http
        .put(format!("{}/admin/faults", c.base))
        .json(&json!([{"operation": "GetDealerId", "kind": "drop", "probability": 3}]))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad = c
        .http
        .post(format!("{}/admin/faults", c.base))
        .json(&json!({"operation": "GetDealerId", "kind": "explode"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn wsdl_can_fail_too() {
    let sim = start_with(0, vec![FaultRule::parse("WSDL=http_500,times=1").unwrap()]).await;
    let c = Client::new(&sim);
    assert_eq!(c.get(&format!("{CM}?WSDL")).await.status, 500);
    assert_eq!(c.get(&format!("{CM}?WSDL")).await.status, 200);
}
