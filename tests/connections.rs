//! End to end: connections, credentials, the connection test, and the API
//! conventions (problem+json, paging, ETag, Idempotency-Key) over real HTTP.

mod support;

use reqwest::Method;
use serde_json::json;
use support::*;

#[tokio::test]
async fn a_dealer_connects_to_stages_and_tests_the_connection() {
    let sim = start_sim(3).await;
    let svc = Service::in_process(Backend::Sqlite, Vec::new()).await;
    let admin = Who::admin("acme");

    let providers = svc.call(Method::GET, "/v1/providers", &admin, None).await;
    assert_eq!(providers.status, 200);
    let names: Vec<_> = providers.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["provider"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["stages", "alarm_com", "total_connect", "brinks_home"]
    );

    // The name defaults to the provider's; auto sync is on by default.
    let created = svc
        .call(
            Method::POST,
            "/v1/connections",
            &admin,
            Some(json!({"provider": "stages", "endpoint": sim.base_url()})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["name"], "Stages");
    assert_eq!(created.body["auto_sync"], true);
    assert_eq!(created.body["auth_mode"], "dealer");
    let cid = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.headers["location"].to_str().unwrap(),
        format!("/v1/connections/{cid}")
    );

    // No credentials yet: the test says so instead of failing.
    let t = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}:test"),
            &admin,
            None,
        )
        .await;
    assert_eq!(t.status, 200);
    assert_eq!(t.body["ok"], false);
    assert_eq!(t.body["outcome"], "missing_credentials");

    let put = svc
        .call(
            Method::PUT,
            &format!("/v1/connections/{cid}/credentials/dealer"),
            &admin,
            Some(json!({"username": SIM_USER, "password": SIM_PASSWORD})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(put.body["username"], SIM_USER);
    assert!(!put.text.contains(SIM_PASSWORD));

    let t = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}:test"),
            &admin,
            None,
        )
        .await;
    assert_eq!(t.status, 200, "{}", t.text);
    assert_eq!(t.body["ok"], true, "{}", t.text);
    assert_eq!(t.body["outcome"], "ok");
    assert!(t.body["latency_ms"].is_u64());

    // Wrong password: the test says the credentials were refused.
    svc.call(
        Method::PUT,
        &format!("/v1/connections/{cid}/credentials/dealer"),
        &admin,
        Some(json!({"username": SIM_USER, "password": "not-the-password"})),
    )
    .await;
    let t = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}:test"),
            &admin,
            None,
        )
        .await;
    assert_eq!(t.body["ok"], false);
    assert_eq!(t.body["outcome"], "bad_credentials", "{}", t.text);
    // The migration (S20) that working credentials queued.
    svc.run_pending_jobs().await;
}

#[tokio::test]
async fn the_test_tells_unreachable_and_timeout_apart() {
    let sim = start_sim(0).await;
    let svc = Service::in_process(Backend::Sqlite, Vec::new()).await;
    let admin = Who::admin("acme");

    // Latency beyond the service's 1.5 s timeout (the harness sets it).
    let slow = svc
        .create_connection(&admin, "slow", &sim.base_url(), "dealer")
        .await;
    svc.call(
        Method::PUT,
        &format!("/v1/connections/{slow}/credentials/dealer"),
        &admin,
        Some(json!({"username": SIM_USER, "password": SIM_PASSWORD})),
    )
    .await;
    let faults = reqwest::Client::new()
        .post(format!("{}/admin/faults", sim.base_url()))
        .json(&json!({"route": "GET /api/v1/ping", "kind": "latency", "ms": 4000}))
        .send()
        .await
        .unwrap();
    assert!(
        faults.status().is_success(),
        "{}",
        faults.text().await.unwrap()
    );
    let t = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{slow}:test"),
            &admin,
            None,
        )
        .await;
    assert_eq!(t.body["outcome"], "timeout", "{}", t.text);
    assert!(t.body["latency_ms"].as_u64().unwrap() >= 1400, "{}", t.text);

    // Nothing listens on the endpoint.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let down = svc.create_connection(&admin, "down", &dead, "dealer").await;
    svc.call(
        Method::PUT,
        &format!("/v1/connections/{down}/credentials/dealer"),
        &admin,
        Some(json!({"username": "u", "password": "p"})),
    )
    .await;
    let t = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{down}:test"),
            &admin,
            None,
        )
        .await;
    assert_eq!(t.status, 200);
    assert_eq!(t.body["outcome"], "unreachable", "{}", t.text);
    // The migration (S20) that working credentials queued.
    svc.run_pending_jobs().await;
}

#[tokio::test]
async fn in_user_mode_each_user_keeps_their_own_credentials() {
    let sim = start_sim(0).await;
    let svc = Service::in_process(Backend::Sqlite, Vec::new()).await;
    let admin = Who::admin("acme");
    let one = Who::new("acme", "userone", "operator");
    let two = Who::new("acme", "usertwo", "viewer");
    let cid = svc
        .create_connection(&admin, "Rapid", &sim.base_url(), "user")
        .await;
    let me = format!("/v1/connections/{cid}/credentials/me");

    let t = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}:test"),
            &one,
            None,
        )
        .await;
    assert_eq!(t.body["outcome"], "missing_credentials", "{}", t.text);
    svc.call(Method::GET, &me, &one, None)
        .await
        .assert_problem(404);

    let put = svc
        .call(
            Method::PUT,
            &me,
            &one,
            Some(json!({"username": SIM_USER, "password": SIM_PASSWORD})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    svc.call(
        Method::PUT,
        &me,
        &two,
        Some(json!({"username": "two", "password": "secret-two"})),
    )
    .await;

    // Each sees only their own username, never a password.
    let mine = svc.call(Method::GET, &me, &one, None).await;
    assert_eq!(mine.body["username"], SIM_USER);
    assert!(!mine.text.contains(SIM_PASSWORD));
    let theirs = svc.call(Method::GET, &me, &two, None).await;
    assert_eq!(theirs.body["username"], "two");

    let t = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}:test"),
            &one,
            None,
        )
        .await;
    assert_eq!(t.body["outcome"], "ok", "{}", t.text);
    let t = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}:test"),
            &two,
            None,
        )
        .await;
    assert_eq!(t.body["outcome"], "bad_credentials", "{}", t.text);

    let del = svc.call(Method::DELETE, &me, &two, None).await;
    assert_eq!(del.status, 204);
    svc.call(Method::GET, &me, &two, None)
        .await
        .assert_problem(404);
    assert_eq!(svc.call(Method::GET, &me, &one, None).await.status, 200);

    // A dealer-mode connection has no per-user credentials.
    let dealer_mode = svc
        .create_connection(&admin, "Dealer", &sim.base_url(), "dealer")
        .await;
    let code = svc
        .call(
            Method::PUT,
            &format!("/v1/connections/{dealer_mode}/credentials/me"),
            &one,
            Some(json!({"username": "x", "password": "y"})),
        )
        .await
        .assert_problem(409);
    assert_eq!(code, "dealer_auth_mode");
    // The migration (S20) that working credentials queued.
    svc.run_pending_jobs().await;
}

#[tokio::test]
async fn names_are_unique_per_dealer_and_changes_need_the_current_etag() {
    let svc = Service::in_process(Backend::Sqlite, Vec::new()).await;
    let acme = Who::admin("acme");
    let other = Who::admin("other");
    let cid = svc
        .create_connection(&acme, "Stages", "http://127.0.0.1:9", "dealer")
        .await;

    let dup = svc
        .call(
            Method::POST,
            "/v1/connections",
            &acme,
            Some(
                json!({"provider": "stages", "name": " stages ", "endpoint": "http://127.0.0.1:9"}),
            ),
        )
        .await;
    dup.assert_problem(409);
    // Another dealer may use the same name.
    svc.create_connection(&other, "Stages", "http://127.0.0.1:9", "dealer")
        .await;

    let got = svc
        .call(Method::GET, &format!("/v1/connections/{cid}"), &acme, None)
        .await;
    let etag = got.headers["etag"].to_str().unwrap().to_owned();
    let renamed = svc
        .req(Method::PATCH, &format!("/v1/connections/{cid}"), &acme)
        .header("if-match", &etag)
        .json(&json!({"name": "Rapid", "auto_sync": false}))
        .send()
        .await
        .unwrap();
    let renamed = Answer::from(renamed).await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    assert_eq!(renamed.body["name"], "Rapid");
    assert_eq!(renamed.body["auto_sync"], false);
    assert_ne!(renamed.headers["etag"].to_str().unwrap(), etag);

    let stale = svc
        .req(Method::PATCH, &format!("/v1/connections/{cid}"), &acme)
        .header("if-match", &etag)
        .json(&json!({"name": "Lost update"}))
        .send()
        .await
        .unwrap();
    Answer::from(stale).await.assert_problem(412);
    let stale_delete = svc
        .req(Method::DELETE, &format!("/v1/connections/{cid}"), &acme)
        .header("if-match", &etag)
        .send()
        .await
        .unwrap();
    Answer::from(stale_delete).await.assert_problem(412);
    assert_eq!(
        svc.call(
            Method::DELETE,
            &format!("/v1/connections/{cid}"),
            &acme,
            None
        )
        .await
        .status,
        204
    );
    svc.call(Method::GET, &format!("/v1/connections/{cid}"), &acme, None)
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn lists_page_with_opaque_tokens_and_filter_by_provider() {
    let svc = Service::in_process(Backend::Sqlite, Vec::new()).await;
    let admin = Who::admin("pager");
    for i in 0..7 {
        svc.create_connection(&admin, &format!("conn {i}"), "http://127.0.0.1:9", "dealer")
            .await;
    }
    svc.call(
        Method::POST,
        "/v1/connections",
        &admin,
        Some(json!({"provider": "alarm_com", "endpoint": "https://alarm.example.com/"})),
    )
    .await;

    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(t) => format!("/v1/connections?provider=stages&page_size=3&page_token={t}"),
            None => "/v1/connections?provider=stages&page_size=3".to_owned(),
        };
        let page = svc.call(Method::GET, &path, &admin, None).await;
        assert_eq!(page.status, 200, "{}", page.text);
        for c in page.body["items"].as_array().unwrap() {
            seen.push(c["name"].as_str().unwrap().to_owned());
        }
        match page.body["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    let expected: Vec<_> = (0..7).map(|i| format!("conn {i}")).collect();
    assert_eq!(seen, expected, "every connection once, in creation order");

    svc.call(Method::GET, "/v1/connections?page_size=0", &admin, None)
        .await
        .assert_problem(422);
    svc.call(Method::GET, "/v1/connections?page_size=501", &admin, None)
        .await
        .assert_problem(422);
    svc.call(
        Method::GET,
        "/v1/connections?page_token=%21%21",
        &admin,
        None,
    )
    .await
    .assert_problem(422);
    svc.call(Method::GET, "/v1/connections?provider=nope", &admin, None)
        .await
        .assert_problem(422);
}

#[tokio::test]
async fn an_idempotency_key_replays_refuses_other_bodies_and_guards_in_flight() {
    let sim = start_sim(0).await;
    let svc = Service::in_process(Backend::Sqlite, Vec::new()).await;
    let admin = Who::admin("idem");
    let body = json!({"provider": "stages", "name": "Once", "endpoint": "http://127.0.0.1:9"});
    let post = |b: serde_json::Value, key: &'static str| {
        svc.req(Method::POST, "/v1/connections", &admin)
            .header("idempotency-key", key)
            .json(&b)
            .send()
    };
    let first = Answer::from(post(body.clone(), "k-1").await.unwrap()).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let again = Answer::from(post(body.clone(), "k-1").await.unwrap()).await;
    assert_eq!(again.status, 201);
    assert_eq!(
        again.body["id"], first.body["id"],
        "replayed, not created twice"
    );
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let list = svc.call(Method::GET, "/v1/connections", &admin, None).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);

    let other = Answer::from(
        post(
            json!({"provider": "stages", "name": "Twice", "endpoint": "http://127.0.0.1:9"}),
            "k-1",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(other.assert_problem(422), "idempotency_key_reused");

    // While a slow first request runs, the same key answers 409.
    let cid = svc
        .create_connection(&admin, "slow", &sim.base_url(), "dealer")
        .await;
    svc.call(
        Method::PUT,
        &format!("/v1/connections/{cid}/credentials/dealer"),
        &admin,
        Some(json!({"username": SIM_USER, "password": SIM_PASSWORD})),
    )
    .await;
    reqwest::Client::new()
        .post(format!("{}/admin/faults", sim.base_url()))
        .json(&json!({"route": "GET /api/v1/ping", "kind": "latency", "ms": 1000, "times": 1}))
        .send()
        .await
        .unwrap();
    let test_path = format!("/v1/connections/{cid}:test");
    let slow = svc
        .req(Method::POST, &test_path, &admin)
        .header("idempotency-key", "t-1")
        .send();
    let slow = tokio::spawn(slow);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let during = Answer::from(
        svc.req(Method::POST, &test_path, &admin)
            .header("idempotency-key", "t-1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(during.assert_problem(409), "idempotency_in_flight");
    let first = Answer::from(slow.await.unwrap().unwrap()).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body["outcome"], "ok", "{}", first.text);
    // The migration (S20) that working credentials queued.
    svc.run_pending_jobs().await;
}

#[tokio::test]
async fn inbound_credentials_show_the_secret_only_when_rotated() {
    let svc = Service::in_process(Backend::Sqlite, Vec::new()).await;
    let admin = Who::admin("acme");
    let cid = svc
        .create_connection(&admin, "Stages", "http://127.0.0.1:9", "dealer")
        .await;
    let path = format!("/v1/connections/{cid}/inbound-credentials");
    let before = svc.call(Method::GET, &path, &admin, None).await;
    assert_eq!(before.status, 200, "{}", before.text);
    assert_eq!(before.body["configured"], false);

    let rotated = svc
        .call(Method::POST, &format!("{path}:rotate"), &admin, None)
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let secret = rotated.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 40);
    let after = svc.call(Method::GET, &path, &admin, None).await;
    assert_eq!(after.body["configured"], true);
    assert_eq!(after.body["username"], rotated.body["username"]);
    assert!(!after.text.contains(&secret), "the secret is shown once");
    let again = svc
        .call(Method::POST, &format!("{path}:rotate"), &admin, None)
        .await;
    assert_ne!(again.body["secret"], rotated.body["secret"]);
    assert!(!svc.logs().contains(&secret));

    let viewer = Who::new("acme", "v", "viewer");
    svc.call(Method::POST, &format!("{path}:rotate"), &viewer, None)
        .await
        .assert_problem(403);
}

#[tokio::test]
async fn http_conventions_304_allow_retry_after_and_location() {
    let sim = start_sim(2).await;
    let svc = Service::in_process(Backend::Sqlite, Vec::new()).await;
    let admin = Who::admin("conventions");
    let cid = svc
        .create_connection(&admin, "Conv", &sim.base_url(), "dealer")
        .await;
    let path = format!("/v1/connections/{cid}");

    // If-None-Match with the current ETag: 304, no body; a stale one: 200.
    let got = svc.call(Method::GET, &path, &admin, None).await;
    let tag = got.headers["etag"].to_str().unwrap().to_owned();
    let conditional = |tag: String| {
        svc.req(Method::GET, &path, &admin)
            .header("if-none-match", tag)
            .send()
    };
    let same = conditional(tag.clone()).await.unwrap();
    assert_eq!(same.status(), 304);
    assert_eq!(same.headers()["etag"].to_str().unwrap(), tag);
    assert!(same.bytes().await.unwrap().is_empty());
    let stale = conditional("\"0\", W/\"-1\"".into()).await.unwrap();
    assert_eq!(stale.status(), 200);

    // A method the route does not take: 405 naming the ones it does.
    let wrong = svc.call(Method::PUT, "/v1/connections", &admin, None).await;
    wrong.assert_problem(405);
    assert_eq!(wrong.headers["allow"], "GET, POST");
    let wrong = svc.call(Method::PUT, &path, &admin, None).await;
    wrong.assert_problem(405);
    assert_eq!(wrong.headers["allow"], "DELETE, GET, PATCH");

    // A 202 says where to poll and when.
    svc.call(
        Method::PUT,
        &format!("/v1/connections/{cid}/credentials/dealer"),
        &admin,
        Some(json!({"username": SIM_USER, "password": SIM_PASSWORD})),
    )
    .await;
    // An operation without a body refuses fields it does not know.
    let unknown = svc
        .call(
            Method::POST,
            &format!("{path}:reconcile"),
            &admin,
            Some(json!({"dry_run": true})),
        )
        .await;
    assert_eq!(
        unknown.assert_problem(422),
        "validation",
        "{}",
        unknown.text
    );
    assert!(unknown.text.contains("dry_run"), "{}", unknown.text);
    let job = svc
        .call(
            Method::POST,
            &format!("{path}:reconcile"),
            &admin,
            Some(json!({})),
        )
        .await;
    assert_eq!(job.status, 202, "{}", job.text);
    assert_eq!(job.headers["retry-after"], "1");
    assert_eq!(
        job.headers["location"].to_str().unwrap(),
        format!("/v1/jobs/{}", job.body["id"].as_str().unwrap())
    );
    // The migration (S20) that working credentials queued.
    svc.run_pending_jobs().await;
}
