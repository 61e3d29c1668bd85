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
    let svc = Service::in_process(backend, Vec::new()).await;
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
    let all = plans.body["items"].as_array().unwrap().clone();
    assert!(all.len() > 1, "{}", plans.text);
    assert!(plans.body["items"][0]["package_id"].is_i64());
    // Paged like every list: one plan per page, then the rest.
    let first = svc
        .call(
            Method::GET,
            &format!("/v1/connections/{cid}/service-plans?page_size=1"),
            &admin,
            None,
        )
        .await;
    assert_eq!(
        first.body["items"],
        serde_json::Value::Array(all[..1].to_vec())
    );
    let token = first.body["next_page_token"].as_str().unwrap();
    let rest = svc
        .call(
            Method::GET,
            &format!("/v1/connections/{cid}/service-plans?page_size=500&page_token={token}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(
        rest.body["items"],
        serde_json::Value::Array(all[1..].to_vec())
    );
    assert!(rest.body["next_page_token"].is_null());
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

/// `:test` on an Alarm.com entry checks its credentials and reads its
/// permissions, with the latency; an entry of a provider without a client
/// says its credentials are stored but not verified.
async fn the_test_checks_alarm_com_entries_and_names_what_is_unchecked(backend: Backend) {
    let adc = adc_sim().await;
    let svc = Service::in_process(backend, Vec::new()).await;
    let admin = Who::admin("acme");
    let viewer = Who::new("acme", "vera", "viewer");
    let create = |provider: &str, endpoint: String| {
        let (svc, admin) = (&svc, &admin);
        let body = json!({"provider": provider, "endpoint": endpoint});
        async move {
            let a = svc
                .call(Method::POST, "/v1/connections", admin, Some(body))
                .await;
            assert_eq!(a.status, 201, "{}", a.text);
            a.body["id"].as_str().unwrap().to_owned()
        }
    };
    let test = |cid: String| {
        let (svc, viewer) = (&svc, &viewer);
        async move {
            let t = svc
                .call(
                    Method::POST,
                    &format!("/v1/connections/{cid}:test"),
                    viewer,
                    None,
                )
                .await;
            assert_eq!(t.status, 200, "{}", t.text);
            t.body
        }
    };
    let cid = create("alarm_com", adc.base_url()).await;
    let t = test(cid.clone()).await;
    assert_eq!(t["outcome"], "missing_credentials", "{t}");
    let creds = svc
        .call(
            Method::PUT,
            &format!("/v1/connections/{cid}/credentials/dealer"),
            &admin,
            Some(json!({"username": "adc-dealer", "password": "adc-Passw0rd"})),
        )
        .await;
    assert_eq!(creds.status, 200, "{}", creds.text);
    assert_eq!(creds.body["verified"], true, "{}", creds.text);
    let t = test(cid.clone()).await;
    assert_eq!(
        (t["ok"].clone(), t["outcome"].clone()),
        (json!(true), json!("ok")),
        "{t}"
    );
    assert!(t["latency_ms"].is_u64(), "{t}");
    assert!(t["permissions"]["builder_program"].is_boolean(), "{t}");
    assert!(t["permissions"]["billing"].is_boolean(), "{t}");
    assert!(
        t["detail"].as_str().unwrap().contains("Builder Program"),
        "{t}"
    );
    assert!(adc.state().request_count("GetDealerPermissions") >= 1);
    // Alarm.com now refuses the stored credentials.
    adc.state()
        .add_fault(adc_sim::FaultRule::parse("*=bad_credentials").unwrap())
        .unwrap();
    let t = test(cid.clone()).await;
    assert_eq!(t["outcome"], "bad_credentials", "{t}");
    assert_eq!(t["ok"], false);
    assert!(t["permissions"].is_null());
    adc.state().clear_faults();

    for provider in ["total_connect", "brinks_home"] {
        let cid = create(provider, "https://provider.example.com/".into()).await;
        let creds = svc
            .call(
                Method::PUT,
                &format!("/v1/connections/{cid}/credentials/dealer"),
                &admin,
                Some(json!({"username": "dealer", "password": "secret-Passw0rd"})),
            )
            .await;
        assert_eq!(creds.status, 200, "{}", creds.text);
        assert_eq!(creds.body["verified"], false, "{}", creds.text);
        assert!(
            creds.body["note"]
                .as_str()
                .unwrap()
                .contains("stored but not verified"),
            "{}",
            creds.text
        );
        let t = test(cid).await;
        assert_eq!(t["outcome"], "not_verified", "{t}");
        assert_eq!(t["ok"], false);
        assert!(
            t["detail"].as_str().unwrap().contains("not verified"),
            "{t}"
        );
    }
}

on_both_backends!(
    alarm_com_credentials_are_checked_when_saved,
    the_test_checks_alarm_com_entries_and_names_what_is_unchecked,
);
