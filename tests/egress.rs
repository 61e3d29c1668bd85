//! Issue 13, items 1 and 2: outbound calls go only where the operator
//! allows (`egress.allow`), and a connection's credentials stay with the
//! server they were given for.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

on_both_backends!(
    refused_targets_are_refused_when_stored,
    the_allow_list_lets_its_range_through,
    a_stored_target_refused_later_fails_its_calls_for_good,
    a_new_host_never_sees_the_old_password,
);

/// The service with no range allowed (the default).
fn strict() -> Vec<(String, String)> {
    vec![("CROSSLINK__EGRESS__ALLOW".into(), String::new())]
}

fn quick_jobs() -> Vec<(String, String)> {
    vec![
        ("CROSSLINK__JOBS__RETRY_BASE_MS".into(), "20".into()),
        ("CROSSLINK__JOBS__RETRY_CAP_MS".into(), "200".into()),
    ]
}

/// Every refused range, IPv4 and IPv6, as a URL an attacker would store.
const REFUSED: &[&str] = &[
    "http://127.0.0.1:9/",
    "http://127.1.2.3/",
    "http://0x7f.1/",
    "http://localhost:9/hook",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]:8080/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://[fd00:ec2::254]/",
    "http://[fc00::1]/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://255.255.255.255/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:a9fe:a9fe::1]/",
];

fn assert_refused(a: &Answer, field: &str, url: &str) {
    assert_eq!(a.assert_problem(422), "egress_refused", "{url}: {}", a.text);
    assert_eq!(a.body["errors"][0]["field"], field, "{url}: {}", a.text);
    assert!(
        a.body["detail"].as_str().unwrap().contains("egress policy"),
        "{url}: {}",
        a.text
    );
}

async fn subscribe(svc: &Service, admin: &Who, url: &str) -> Answer {
    svc.call(
        Method::POST,
        "/v1/webhook-subscriptions",
        admin,
        Some(json!({"url": url, "types": ["billing.system.updated"]})),
    )
    .await
}

async fn create_connection(svc: &Service, admin: &Who, name: &str, endpoint: &str) -> Answer {
    svc.call(
        Method::POST,
        "/v1/connections",
        admin,
        Some(json!({"provider": "stages", "name": name, "endpoint": endpoint})),
    )
    .await
}

async fn patch_connection(svc: &Service, admin: &Who, cid: &str, body: Value) -> Answer {
    svc.call(
        Method::PATCH,
        &format!("/v1/connections/{cid}"),
        admin,
        Some(body),
    )
    .await
}

async fn test_connection(svc: &Service, who: &Who, cid: &str) -> Answer {
    let a = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}:test"),
            who,
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a
}

/// Subscription URLs, new connection endpoints and changed ones: each
/// refused range answers 422 `egress_refused` naming the field, and nothing
/// is stored.
async fn refused_targets_are_refused_when_stored(backend: Backend) {
    let svc = Service::start_on(backend, strict()).await;
    let admin = Who::admin("acme");
    let public = create_connection(&svc, &admin, "Public", "https://stages.example.com/").await;
    assert_eq!(public.status, 201, "{}", public.text);
    let cid = public.body["id"].as_str().unwrap().to_owned();
    for (i, url) in REFUSED.iter().enumerate() {
        assert_refused(&subscribe(&svc, &admin, url).await, "url", url);
        let created = create_connection(&svc, &admin, &format!("C{i}"), url).await;
        assert_refused(&created, "endpoint", url);
        let changed = patch_connection(&svc, &admin, &cid, json!({"endpoint": url})).await;
        assert_refused(&changed, "endpoint", url);
    }
    let subs = svc
        .call(Method::GET, "/v1/webhook-subscriptions", &admin, None)
        .await;
    assert_eq!(subs.body["items"], json!([]), "{}", subs.text);
    let conns = svc.call(Method::GET, "/v1/connections", &admin, None).await;
    assert_eq!(conns.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        conns.body["items"][0]["endpoint"],
        "https://stages.example.com/"
    );

    // A subscription's URL cannot be changed to one either.
    let sub = subscribe(&svc, &admin, "https://hooks.example.com/in").await;
    assert_eq!(sub.status, 201, "{}", sub.text);
    let sid = sub.body["id"].as_str().unwrap();
    let changed = svc
        .call(
            Method::PATCH,
            &format!("/v1/webhook-subscriptions/{sid}"),
            &admin,
            Some(json!({"url": "http://[::ffff:169.254.169.254]/"})),
        )
        .await;
    assert_refused(&changed, "url", "PATCH");
}

/// `egress.allow` lets its range through, and only it.
async fn the_allow_list_lets_its_range_through(backend: Backend) {
    let svc = Service::start_on(
        backend,
        vec![("CROSSLINK__EGRESS__ALLOW".into(), "127.0.0.0/8,::1".into())],
    )
    .await;
    let admin = Who::admin("acme");
    for url in [
        "http://127.0.0.1:9/",
        "http://localhost:9/",
        "http://[::ffff:127.0.0.1]:9/",
    ] {
        assert_eq!(subscribe(&svc, &admin, url).await.status, 201, "{url}");
    }
    let created = create_connection(&svc, &admin, "Local", "http://127.0.0.1:9/").await;
    assert_eq!(created.status, 201, "{}", created.text);
    for url in [
        "http://10.0.0.1/",
        "http://169.254.169.254/",
        "http://[fd00::1]/",
    ] {
        assert_refused(&subscribe(&svc, &admin, url).await, "url", url);
        let c = create_connection(&svc, &admin, "Other", url).await;
        assert_refused(&c, "endpoint", url);
    }
}

/// A loopback listener on `ip` that counts the connections made to it and
/// records each request's head; it answers 401 to everything.
async fn recorder(ip: &str) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let _ = stream
                    .write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (format!("http://{addr}/"), seen)
}

/// What was stored while a range was allowed, and is refused after the
/// operator narrowed `egress.allow`: deliveries (to an address, and to a
/// name resolving to loopback) fail for good with the reason (not retried),
/// `:test` says why, a live read answers 409; the target never sees a
/// connection.
async fn a_stored_target_refused_later_fails_its_calls_for_good(backend: Backend) {
    // The simulator on 127.0.0.2, which stays allowed; the target on 127.0.0.1.
    let sim = stages_sim::Sim::start(stages_sim::SimConfig {
        bind: "127.0.0.2:0".parse().unwrap(),
        username: SIM_USER.into(),
        password: SIM_PASSWORD.into(),
        seed_sites: 0,
        faults: Vec::new(),
    })
    .await
    .unwrap();
    let (target, seen) = recorder("127.0.0.1").await;
    let port = url::Url::parse(&target).unwrap().port().unwrap();
    let by_name = format!("http://localhost:{port}/");
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let mut first = Service::start_on(backend, quick_jobs()).await;
    for url in [format!("{target}hook"), format!("{by_name}hook")] {
        let sub = subscribe(&first, &admin, &url).await;
        assert_eq!(sub.status, 201, "{}", sub.text);
    }
    let cid = first
        .create_connection(&admin, "Stages", &sim.base_url(), "dealer")
        .await;
    // No migration (S20) for this one: storing its credentials would probe
    // the target while the first service still allows it.
    let elsewhere = first
        .call(
            Method::POST,
            "/v1/connections",
            &admin,
            Some(
                json!({"provider": "stages", "name": "Elsewhere", "endpoint": by_name,
                "auth_mode": "dealer", "migrate_on_connect": false}),
            ),
        )
        .await;
    assert_eq!(elsewhere.status, 201, "{}", elsewhere.text);
    let elsewhere = elsewhere.body["id"].as_str().unwrap().to_owned();
    for id in [&cid, &elsewhere] {
        let a = first
            .call(
                Method::PUT,
                &format!("/v1/connections/{id}/credentials/dealer"),
                &admin,
                Some(json!({"username": SIM_USER, "password": SIM_PASSWORD})),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
    // Killed with its migration done: a job it held would wait out its lease
    // (30 s) before the next service took it back.
    first.migration_settled(&admin, &cid).await;
    first.kill();

    // The same database, now allowing the simulator's address only.
    let mut env = quick_jobs();
    env.push(("CROSSLINK__EGRESS__ALLOW".into(), "127.0.0.2/32".into()));
    let svc = Service::start_with(ServiceOptions {
        database_url: Some(first.database_url.clone()),
        env,
    })
    .await;

    // A push makes an event (billing.system.updated) for the subscription.
    for (path, body) in [
        ("/v1/billing/sites/E1", json!({"name": "Egress"})),
        ("/v1/billing/systems/SYS-E1", json!({"site_id": "E1"})),
    ] {
        let a = svc.call(Method::PUT, path, &op, Some(body)).await;
        assert_eq!(a.status, 201, "{}", a.text);
    }
    let push = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}/push"),
            &op,
            Some(
                json!({"billing_site_id": "E1", "systems": [{"billing_system_id": "SYS-E1",
                "device": {"transmitter_code": "6650009"}}]}),
            ),
        )
        .await;
    assert_eq!(push.status, 201, "{}", push.text);
    svc.quiesce(&op, &[&sim]).await;
    let jobs = svc
        .call(Method::GET, "/v1/jobs?kind=webhook_delivery", &op, None)
        .await;
    let jobs = jobs.body["items"].as_array().unwrap().clone();
    assert_eq!(jobs.len(), 2, "{jobs:#?}");
    let mut errors = Vec::new();
    for job in &jobs {
        assert_eq!(job["state"], "failed", "{jobs:#?}");
        assert_eq!(job["attempts"], 1, "not retried: {jobs:#?}");
        let error = job["error"].as_str().unwrap();
        assert!(
            error.contains("egress policy") && error.contains("loopback"),
            "{error}"
        );
        errors.push(error.to_owned());
    }
    assert!(
        errors.iter().any(|e| e.contains("localhost is refused")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("127.0.0.1 is refused")),
        "{errors:?}"
    );

    // The connection whose endpoint is now refused.
    let t = test_connection(&svc, &op, &elsewhere).await;
    assert_eq!(t.body["ok"], false);
    assert_eq!(t.body["outcome"], "egress_refused", "{}", t.text);
    let read = svc
        .call(
            Method::GET,
            &format!("/v1/connections/{elsewhere}/stages/sites/S-1"),
            &op,
            None,
        )
        .await;
    assert_eq!(read.assert_problem(409), "egress_refused", "{}", read.text);
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the target"
    );
}

/// PATCHing the endpoint to another server drops the credentials (the
/// answer and the audit trail say so): the new server never gets the old
/// password. A new path on the same server keeps them; new dealer
/// credentials may come with the change.
async fn a_new_host_never_sees_the_old_password(backend: Backend) {
    let sim = start_sim(0).await;
    let (other, seen) = recorder("127.0.0.1").await;
    let svc = Service::start_on(backend, Vec::new()).await;
    let admin = Who::admin("acme");
    let cid = svc
        .create_connection(&admin, "Stages", &sim.base_url(), "dealer")
        .await;
    let put = svc
        .call(
            Method::PUT,
            &format!("/v1/connections/{cid}/credentials/dealer"),
            &admin,
            Some(json!({"username": SIM_USER, "password": SIM_PASSWORD})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(
        test_connection(&svc, &admin, &cid).await.body["outcome"],
        "ok"
    );

    // Another path on the same server keeps the credentials.
    let base = sim.base_url();
    let same = patch_connection(
        &svc,
        &admin,
        &cid,
        json!({"endpoint": format!("{}/other/", base.trim_end_matches('/'))}),
    )
    .await;
    assert_eq!(same.status, 200, "{}", same.text);
    assert_eq!(same.body["credentials_dropped"], false, "{}", same.text);
    let back = patch_connection(&svc, &admin, &cid, json!({"endpoint": base})).await;
    assert_eq!(back.body["credentials_dropped"], false, "{}", back.text);
    assert_eq!(
        test_connection(&svc, &admin, &cid).await.body["outcome"],
        "ok"
    );

    // Another port: the credentials go.
    let moved = patch_connection(&svc, &admin, &cid, json!({"endpoint": other})).await;
    assert_eq!(moved.status, 200, "{}", moved.text);
    assert_eq!(moved.body["credentials_dropped"], true, "{}", moved.text);
    assert_eq!(moved.body["endpoint"], other.as_str());
    let t = test_connection(&svc, &admin, &cid).await;
    assert_eq!(t.body["outcome"], "missing_credentials", "{}", t.text);
    use base64::Engine;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{SIM_USER}:{SIM_PASSWORD}"));
    for head in seen.lock().unwrap().iter() {
        assert!(
            !head.contains(&basic) && !head.contains(SIM_PASSWORD),
            "{head}"
        );
    }
    let audit = svc
        .call(
            Method::GET,
            &format!("/v1/audit?connection_id={cid}"),
            &admin,
            None,
        )
        .await;
    let entries = audit.body["items"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{}", audit.text);
    assert_eq!(entries[0]["action"], "drop_credentials");
    assert_eq!(entries[0]["actor"], admin.sub.as_str());
    assert_eq!(
        entries[0]["before"]["endpoint"],
        format!("{}/", base.trim_end_matches('/'))
    );
    assert_eq!(entries[0]["after"]["endpoint"], other.as_str());

    // Credentials given with the move are kept, and used at the new place.
    let with_new = patch_connection(
        &svc,
        &admin,
        &cid,
        json!({"endpoint": base, "dealer_credentials": {"username": SIM_USER, "password": SIM_PASSWORD}}),
    )
    .await;
    assert_eq!(with_new.status, 200, "{}", with_new.text);
    assert_eq!(
        with_new.body["credentials_dropped"], false,
        "nothing was left to drop"
    );
    assert_eq!(
        test_connection(&svc, &admin, &cid).await.body["outcome"],
        "ok"
    );

    // Per-user credentials of a user-mode connection go the same way.
    let ucid = svc
        .create_connection(&admin, "Per user", &sim.base_url(), "user")
        .await;
    let alice = Who::new("acme", "alice", "operator");
    let mine = format!("/v1/connections/{ucid}/credentials/me");
    let a = svc
        .call(
            Method::PUT,
            &mine,
            &alice,
            Some(json!({"username": SIM_USER, "password": SIM_PASSWORD})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let moved = patch_connection(&svc, &admin, &ucid, json!({"endpoint": other})).await;
    assert_eq!(moved.body["credentials_dropped"], true, "{}", moved.text);
    assert_eq!(svc.call(Method::GET, &mine, &alice, None).await.status, 404);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let seen = seen.lock().unwrap();
    assert!(seen.is_empty(), "the new server was called: {seen:#?}");
}
