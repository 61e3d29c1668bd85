//! End to end: interactive services providers (I1): Alarm.com credentials are
//! checked against Alarm.com (its SOAP simulator) when saved, and its service
//! plans are read through the connection.

mod support;

use reqwest::Method;
use serde_json::json;
use support::*;

async fn adc_sim() -> adc_sim::Sim {
    adc_sim::Sim::start(adc_sim::SimConfig {
        username: "adc-dealer".into(),
        password: "adc-Passw0rd".into(),
        seed_customers: 5,
        ..Default::default()
    })
    .await
    .expect("the Alarm.com simulator starts")
}

async fn alarm_com_credentials_are_checked_when_saved(backend: Backend) {
    let adc = adc_sim().await;
    let svc = Service::start_on(backend, Vec::new()).await;
    let admin = Who::admin("acme");
    let created = svc
        .call(
            Method::POST,
            "/v1/connections",
            &admin,
            Some(json!({"provider": "alarm_com", "endpoint": adc.base_url()})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["name"], "Alarm.com");
    let cid = created.body["id"].as_str().unwrap().to_owned();
    let creds = format!("/v1/connections/{cid}/credentials/dealer");

    let wrong = svc
        .call(
            Method::PUT,
            &creds,
            &admin,
            Some(json!({"username": "adc-dealer", "password": "nope"})),
        )
        .await;
    assert_eq!(wrong.assert_problem(422), "validation");
    assert_eq!(wrong.body["errors"][0]["field"], "password");
    assert!(
        wrong.body["detail"]
            .as_str()
            .unwrap()
            .contains("Alarm.com refused"),
        "{}",
        wrong.text
    );
    // Nothing was stored: the plans need credentials still.
    let plans = svc
        .call(
            Method::GET,
            &format!("/v1/connections/{cid}/service-plans"),
            &admin,
            None,
        )
        .await;
    assert_eq!(plans.assert_problem(409), "credentials_required");

    let right = svc
        .call(
            Method::PUT,
            &creds,
            &admin,
            Some(json!({"username": "adc-dealer", "password": "adc-Passw0rd"})),
        )
        .await;
    assert_eq!(right.status, 200, "{}", right.text);
    let plans = svc
        .call(
            Method::GET,
            &format!("/v1/connections/{cid}/service-plans"),
            &admin,
            None,
        )
        .await;
    assert_eq!(plans.status, 200, "{}", plans.text);
    assert!(!plans.body["items"].as_array().unwrap().is_empty());
    assert!(plans.body["items"][0]["package_id"].is_i64());
    // Calls to Alarm.com are counted per connection and outcome.
    let metrics = svc.metrics().await;
    for outcome in ["unauthorized", "ok"] {
        let series = format!(
            r#"crosslink_upstream_calls_total{{connection="{cid}",outcome="{outcome}",provider="alarm_com"}}"#
        );
        assert!(metrics.contains(&series), "{series} in\n{metrics}");
    }

    // Only admins change provider credentials.
    let viewer = Who::new("acme", "v", "viewer");
    svc.call(
        Method::PUT,
        &creds,
        &viewer,
        Some(json!({"username": "x", "password": "y"})),
    )
    .await
    .assert_problem(403);
    // A Stages connection has no service plans.
    let stages = svc
        .create_connection(&admin, "Stages", "http://127.0.0.1:9", "dealer")
        .await;
    let none = svc
        .call(
            Method::GET,
            &format!("/v1/connections/{stages}/service-plans"),
            &admin,
            None,
        )
        .await;
    assert_eq!(none.assert_problem(409), "wrong_provider");

    // Alarm.com down: a 502 naming the connection, not a refusal of the password.
    adc.stop().await;
    let down = svc
        .call(
            Method::PUT,
            &creds,
            &admin,
            Some(json!({"username": "adc-dealer", "password": "adc-Passw0rd"})),
        )
        .await;
    down.assert_problem(502);
    assert!(
        down.body["detail"].as_str().unwrap().contains("Alarm.com"),
        "{}",
        down.text
    );
}

on_both_backends!(alarm_com_credentials_are_checked_when_saved);
