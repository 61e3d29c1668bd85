//! End to end: what interactive services providers send in. Alarm.com billing
//! notifications (I4) become change-feed events for the billing system, once
//! per event id, only when signed with the connection's inbound secret and
//! only while billing notifications are on (which needs the Alarm.com billing
//! permission). Alarm.net callbacks (I2) are verified, stored and counted in
//! the callback health.

mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use support::*;

const ADC_USER: &str = "adc-dealer";
const ADC_PASSWORD: &str = "adc-Passw0rd";

/// A signed POST, as a provider sends it.
async fn deliver(
    svc: &Service,
    path: &str,
    secret: &str,
    event_id: &str,
    body: &Value,
    timestamp: i64,
) -> Answer {
    let raw = serde_json::to_vec(body).unwrap();
    let signature = sign(secret, event_id, timestamp, &raw);
    send(
        svc,
        path,
        &raw,
        &[
            ("webhook-id", event_id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ],
    )
    .await
}

async fn send(svc: &Service, path: &str, raw: &[u8], headers: &[(&str, String)]) -> Answer {
    let mut rb = svc
        .http
        .post(svc.url(path))
        .header("content-type", "application/json")
        .body(raw.to_vec());
    for (k, v) in headers {
        rb = rb.header(*k, v);
    }
    Answer::from(rb.send().await.unwrap()).await
}

/// Standard Webhooks signing, written here apart from the service's own code.
fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    use base64::Engine;
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Rows of the inbox for a connection, read straight from the database.
fn inbox_rows(svc: &Service, cid: &str) -> usize {
    svc.sql(&format!(
        "SELECT count(*) FROM webhook_inbox WHERE connection_id = '{cid}'"
    ))
    .parse()
    .unwrap()
}

async fn rotate(svc: &Service, admin: &Who, cid: &str) -> (String, String) {
    let a = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}/inbound-credentials:rotate"),
            admin,
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    (
        a.body["secret"].as_str().unwrap().to_owned(),
        a.body["callback_path"].as_str().unwrap().to_owned(),
    )
}

/// The whole feed of `types`, read one event per page through
/// `next_page_token` (the list shape every list has).
async fn events(svc: &Service, who: &Who, types: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut path = format!("/v1/events?types={types}&page_size=1");
    loop {
        let a = svc.call(Method::GET, &path, who, None).await;
        assert_eq!(a.status, 200, "{}", a.text);
        all.extend(a.body["items"].as_array().unwrap().iter().cloned());
        match a.body["next_page_token"].as_str() {
            Some(token) => {
                assert_eq!(a.body["items"].as_array().unwrap().len(), 1);
                path = format!("/v1/events?types={types}&page_size=1&page_token={token}");
            }
            None => {
                // Caught up: the position to poll from is the last event read.
                assert_eq!(
                    a.body["next_after"],
                    all.last().map_or(Value::Null, |e| e["seq"].clone()),
                    "{}",
                    a.text
                );
                return all;
            }
        }
    }
}

async fn billing_notifications_reach_the_change_feed(backend: Backend) {
    let adc = adc_sim::Sim::start(adc_sim::SimConfig {
        username: ADC_USER.into(),
        password: ADC_PASSWORD.into(),
        seed_customers: 10,
        ..Default::default()
    })
    .await
    .unwrap();
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
    let cid = created.body["id"].as_str().unwrap().to_owned();
    let creds = svc
        .call(
            Method::PUT,
            &format!("/v1/connections/{cid}/credentials/dealer"),
            &admin,
            Some(json!({"username": ADC_USER, "password": ADC_PASSWORD})),
        )
        .await;
    assert_eq!(creds.status, 200, "{}", creds.text);
    let (secret, path) = rotate(&svc, &admin, &cid).await;
    assert_eq!(path, format!("/v1/webhooks/alarm-com/{cid}"));

    // C-1 has an ISP account: the linked Alarm.com customer.
    let adc_customer = adc
        .state()
        .customers()
        .into_iter()
        .find(|c| !c.is_terminated && !c.is_commitment)
        .unwrap()
        .customer_id;
    svc.call(
        Method::PUT,
        "/v1/billing/customers/C-1",
        &admin,
        Some(json!({"first_name": "Ada", "last_name": "Lovelace"})),
    )
    .await;
    let linked = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}/isp-accounts"),
            &admin,
            Some(json!({"billing_customer_id": "C-1", "action": "link", "customer_id": adc_customer})),
        )
        .await;
    assert_eq!(linked.status, 201, "{}", linked.text);

    let payment = json!({
        "type": "payment_received", "customer_id": adc_customer,
        "occurred_at": "2026-11-27T10:00:00Z",
        "payment": {"payment_id": "PAY-1", "amount_cents": 4999, "currency": "USD",
                    "invoice_ids": ["INV-7"], "method": {"kind": "card", "last4": "4242", "expires": "12/2030"}}
    });

    // Off until an admin turns it on: refused, nothing stored.
    let off = deliver(&svc, &path, &secret, "evt-0", &payment, now()).await;
    assert_eq!(off.assert_problem(409), "billing_notifications_off");
    assert_eq!(inbox_rows(&svc, &cid), 0);
    let on = svc
        .call(
            Method::PATCH,
            &format!("/v1/connections/{cid}"),
            &admin,
            Some(json!({"settings": {"billing_notifications": true}})),
        )
        .await;
    assert_eq!(on.status, 200, "{}", on.text);

    let accepted = deliver(&svc, &path, &secret, "evt-1", &payment, now()).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    assert_eq!(accepted.body["status"], "accepted");
    assert_eq!(accepted.body["billing_customer_id"], "C-1");
    let feed = events(&svc, &admin, "isp.payment.received").await;
    assert_eq!(feed.len(), 1, "{feed:?}");
    assert_eq!(feed[0]["subject_kind"], "customer");
    assert_eq!(feed[0]["subject_id"], "C-1");
    assert_eq!(feed[0]["connection_id"], cid);
    assert_eq!(feed[0]["data"]["notice"]["amount_cents"], 4999);
    assert_eq!(feed[0]["data"]["notice"]["invoice_ids"], json!(["INV-7"]));
    assert_eq!(feed[0]["data"]["event_id"], "evt-1");

    // The same event again: acknowledged, ignored.
    let repeat = deliver(&svc, &path, &secret, "evt-1", &payment, now()).await;
    assert_eq!(repeat.status, 200, "{}", repeat.text);
    assert_eq!(repeat.body["status"], "duplicate");
    assert_eq!(events(&svc, &admin, "isp.payment.received").await.len(), 1);
    assert_eq!(inbox_rows(&svc, &cid), 1);

    // Forged, stale, unsigned, another secret, another connection: 401, nothing stored.
    let raw = serde_json::to_vec(&payment).unwrap();
    let ts = now();
    let forged = sign(&secret, "evt-2", ts, &raw);
    let tampered = serde_json::to_vec(
        &json!({"type": "payment_received", "customer_id": adc_customer, "occurred_at": "2026-11-27T10:00:00Z",
                "payment": {"payment_id": "PAY-1", "amount_cents": 1, "currency": "USD"}}),
    )
    .unwrap();
    let refusals = [
        send(
            &svc,
            &path,
            &tampered,
            &[
                ("webhook-id", "evt-2".into()),
                ("webhook-timestamp", ts.to_string()),
                ("webhook-signature", forged.clone()),
            ],
        )
        .await,
        deliver(&svc, &path, &secret, "evt-3", &payment, now() - 3600).await,
        // A timestamp at the edge of i64 is refused, not an overflow.
        send(
            &svc,
            &path,
            &raw,
            &[
                ("webhook-id", "evt-7".into()),
                ("webhook-timestamp", i64::MIN.to_string()),
                ("webhook-signature", forged.clone()),
            ],
        )
        .await,
        send(&svc, &path, &raw, &[]).await,
        deliver(&svc, &path, "not-the-secret", "evt-4", &payment, now()).await,
        deliver(
            &svc,
            &format!("/v1/webhooks/alarm-com/{}", uuid::Uuid::now_v7()),
            &secret,
            "evt-5",
            &payment,
            now(),
        )
        .await,
        deliver(
            &svc,
            &path.replace("alarm-com", "alarmnet"),
            &secret,
            "evt-6",
            &payment,
            now(),
        )
        .await,
    ];
    for refused in &refusals {
        assert_eq!(refused.assert_problem(401), "unauthorized");
        assert!(!refused.text.contains(&secret));
    }
    assert_eq!(inbox_rows(&svc, &cid), 1);
    assert_eq!(events(&svc, &admin, "isp.payment.received").await.len(), 1);

    // A payment-method change of an Alarm.com customer no ISP account has:
    // still on the feed, marked unmatched, for the billing side to look at.
    let method = json!({
        "type": "payment_method_changed", "customer_id": 424242, "occurred_at": "2026-11-27T11:00:00Z",
        "payment_method": {"kind": "bank_account", "last4": "6789"}
    });
    let unmatched = deliver(&svc, &path, &secret, "evt-7", &method, now()).await;
    assert_eq!(unmatched.status, 202, "{}", unmatched.text);
    assert!(unmatched.body.get("billing_customer_id").is_none());
    let changed = events(&svc, &admin, "isp.payment_method.changed").await;
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["subject_kind"], "adc_customer");
    assert_eq!(changed[0]["subject_id"], "424242");
    assert_eq!(changed[0]["data"]["matched"], false);
    assert_eq!(
        changed[0]["data"]["notice"]["method"]["kind"],
        "bank_account"
    );

    // A signed body that is not a notification: 422 naming the field, nothing stored.
    let bad = deliver(
        &svc,
        &path,
        &secret,
        "evt-8",
        &json!({"type": "payment_received", "customer_id": 5, "occurred_at": "2026-11-27T11:00:00Z"}),
        now(),
    )
    .await;
    assert_eq!(bad.assert_problem(422), "validation");
    assert_eq!(bad.body["errors"][0]["field"], "payment");
    assert_eq!(inbox_rows(&svc, &cid), 2);

    // The report: on, the permission held, and what came in the last day.
    let viewer = Who::new("acme", "v", "viewer");
    let report_path = format!("/v1/connections/{cid}/billing-notifications");
    let ask_report = || svc.call(Method::GET, &report_path, &viewer, None);
    let report = ask_report().await;
    assert_eq!(report.status, 200, "{}", report.text);
    assert_eq!(report.body["enabled"], true);
    assert_eq!(report.body["permission"], "granted");
    assert_eq!(report.body["receiving_path"], path);
    assert_eq!(
        report.body["last_24h"],
        json!({"accepted": 2, "duplicates": 1, "rejected": 6}),
        "{}",
        report.text
    );
    assert_eq!(report.body["last_rejection_reason"], "unreadable payload");
    assert!(report.body["last_notification_at"].is_string());

    // The account loses the permission: the report says so and what to do.
    assert!(adc
        .state()
        .update_permissions(Some(ADC_USER), |p| p.billing = false));
    let report = ask_report().await;
    assert_eq!(report.status, 200, "{}", report.text);
    assert_eq!(report.body["permission"], "missing");
    assert!(
        report.body["detail"]
            .as_str()
            .unwrap()
            .contains("setSecurityTraxSettings"),
        "{}",
        report.text
    );
    // Alarm.com unreachable: the report still answers, the permission unknown.
    // The simulator's stop returns before its worker threads have dropped
    // their open connections, so a kept-alive one may answer once more.
    adc.stop().await;
    svc.eventually(
        "the report to say unknown",
        Duration::from_secs(5),
        || async {
            let r = ask_report().await;
            assert_eq!(r.status, 200, "{}", r.text);
            (r.body["permission"] == "unknown").then_some(())
        },
    )
    .await;
}

async fn alarmnet_callbacks_are_verified_stored_and_counted(backend: Backend) {
    let svc = Service::in_process(backend, Vec::new()).await;
    let admin = Who::admin("acme");
    let viewer = Who::new("acme", "v", "viewer");
    let created = svc
        .call(
            Method::POST,
            "/v1/connections",
            &admin,
            Some(json!({"provider": "total_connect", "endpoint": "https://tc.example.com/"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let cid = created.body["id"].as_str().unwrap().to_owned();
    let health_path = format!("/v1/connections/{cid}/callback-health");
    let health = svc.call(Method::GET, &health_path, &viewer, None).await;
    assert_eq!(health.status, 200, "{}", health.text);
    assert_eq!(health.body["status"], "not_configured");
    assert_eq!(health.body["configured_url"], Value::Null);
    assert_eq!(
        health.body["receiving_path"],
        format!("/v1/webhooks/alarmnet/{cid}")
    );
    assert_eq!(
        health.body["last_24h"],
        json!({"accepted": 0, "duplicates": 0, "rejected": 0})
    );

    let url = format!("https://crosslink.example.com/v1/webhooks/alarmnet/{cid}");
    let set = svc
        .call(
            Method::PATCH,
            &format!("/v1/connections/{cid}"),
            &admin,
            Some(json!({"settings": {"alarmnet_callback_url": url}})),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    let (secret, path) = rotate(&svc, &admin, &cid).await;
    assert_eq!(path, format!("/v1/webhooks/alarmnet/{cid}"));
    let health = svc.call(Method::GET, &health_path, &viewer, None).await;
    assert_eq!(health.body["status"], "silent");
    assert_eq!(health.body["configured_url"], url.as_str());
    assert_eq!(health.body["secret_configured"], true);

    let event = json!({"event_type": "arming", "account_id": "TC-1001",
                       "occurred_at": "2026-11-27T10:00:00Z", "details": {"user": 3, "mode": "away"}});
    let first = deliver(&svc, &path, &secret, "an-1", &event, now()).await;
    assert_eq!(first.status, 202, "{}", first.text);
    assert_eq!(first.body["status"], "accepted");
    let repeat = deliver(&svc, &path, &secret, "an-1", &event, now()).await;
    assert_eq!(repeat.status, 200, "{}", repeat.text);
    assert_eq!(repeat.body["status"], "duplicate");
    let forged = deliver(&svc, &path, "guessed", "an-2", &event, now()).await;
    assert_eq!(forged.assert_problem(401), "unauthorized");
    let stale = deliver(&svc, &path, &secret, "an-3", &event, now() - 600).await;
    stale.assert_problem(401);
    let second = deliver(&svc, &path, &secret, "an-4", &event, now()).await;
    assert_eq!(second.status, 202, "{}", second.text);
    assert_eq!(inbox_rows(&svc, &cid), 2);

    let health = svc.call(Method::GET, &health_path, &viewer, None).await;
    assert_eq!(health.status, 200, "{}", health.text);
    assert_eq!(
        health.body["last_24h"],
        json!({"accepted": 2, "duplicates": 1, "rejected": 2}),
        "{}",
        health.text
    );
    assert_eq!(health.body["status"], "degraded");
    assert!(health.body["last_callback_at"].is_string());
    assert!(health.body["last_rejected_at"].is_string());
    assert!(
        health.body["last_rejection_reason"]
            .as_str()
            .unwrap()
            .contains("webhook-timestamp"),
        "{}",
        health.text
    );
    assert!(!health.text.contains(&secret));

    // Another dealer cannot read it; an Alarm.com connection has no Alarm.net health.
    svc.call(Method::GET, &health_path, &Who::admin("other"), None)
        .await
        .assert_problem(404);
    let adc = svc
        .call(
            Method::POST,
            "/v1/connections",
            &admin,
            Some(json!({"provider": "alarm_com", "endpoint": "http://127.0.0.1:9/"})),
        )
        .await;
    let adc_health = svc
        .call(
            Method::GET,
            &format!(
                "/v1/connections/{}/callback-health",
                adc.body["id"].as_str().unwrap()
            ),
            &viewer,
            None,
        )
        .await;
    assert_eq!(adc_health.assert_problem(409), "wrong_provider");
    let tc_billing = svc
        .call(
            Method::GET,
            &format!("/v1/connections/{cid}/billing-notifications"),
            &viewer,
            None,
        )
        .await;
    assert_eq!(tc_billing.assert_problem(409), "wrong_provider");
}

on_both_backends!(
    billing_notifications_reach_the_change_feed,
    alarmnet_callbacks_are_verified_stored_and_counted,
);
