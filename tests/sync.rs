//! End to end: diff and record sync, account sync, Auto Sync through the
//! outbox, Stages callbacks (with echo suppression), the change feed and
//! signed outbound webhooks.

mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use support::*;

struct World {
    sim: stages_sim::Sim,
    svc: Service,
    op: Who,
    admin: Who,
    cid: String,
}

async fn world(backend: Backend) -> World {
    world_with(backend, Vec::new()).await
}

async fn world_with(backend: Backend, extra_env: Vec<(String, String)>) -> World {
    let sim = start_sim(0).await;
    let mut env = vec![
        ("CROSSLINK__JOBS__RETRY_BASE_MS".into(), "20".into()),
        ("CROSSLINK__JOBS__RETRY_CAP_MS".into(), "200".into()),
    ];
    env.extend(extra_env);
    let svc = Service::start_on(backend, env).await;
    let admin = Who::admin("acme");
    let cid = svc
        .create_connection(&admin, "Stages", &sim.base_url(), "dealer")
        .await;
    svc.call(
        Method::PUT,
        &format!("/v1/connections/{cid}/credentials/dealer"),
        &admin,
        Some(json!({"username": SIM_USER, "password": SIM_PASSWORD})),
    )
    .await;
    World {
        sim,
        svc,
        op: Who::new("acme", "olivia", "operator"),
        admin,
        cid,
    }
}

impl World {
    /// The audit entries (B8) of `query`, newest first.
    async fn audit(&self, query: &str) -> Vec<Value> {
        let a = self
            .call(Method::GET, &format!("/v1/audit?{query}"), None)
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.body["items"].as_array().unwrap().clone()
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.svc.call(method, path, &self.op, body).await
    }

    /// A billing site S with system SYS pushed to Stages; returns (site_no, device_id, site link, system link).
    async fn pushed(&self, site: &str, code: &str) -> (String, String, String, String) {
        self.call(Method::PUT, &format!("/v1/billing/sites/{site}"), Some(json!({
            "name": "Lovelace home", "address1": "12 Elm St", "city": "Columbus", "state": "Ohio", "zip": "43004", "phone": "(614) 555-0101"}))).await;
        self.call(
            Method::PUT,
            &format!("/v1/billing/systems/SYS-{site}"),
            Some(json!({"site_id": site})),
        )
        .await;
        let p = self.call(Method::POST, &format!("/v1/connections/{}/push", self.cid), Some(json!({
            "billing_site_id": site, "systems": [{"billing_system_id": format!("SYS-{site}"), "device": {"transmitter_code": code}}]}))).await;
        assert_eq!(p.status, 201, "{}", p.text);
        let r = &p.body["records"];
        (
            r[0]["external_id"].as_str().unwrap().to_owned(),
            r[1]["external_id"].as_str().unwrap().to_owned(),
            r[0]["link_id"].as_str().unwrap().to_owned(),
            r[1]["link_id"].as_str().unwrap().to_owned(),
        )
    }

    fn stages_site(&self, site_no: &str) -> Value {
        serde_json::to_value(self.sim.state().site(site_no).unwrap()).unwrap()
    }

    async fn quiesce(&self) {
        self.svc.quiesce(&self.op, &[&self.sim]).await
    }

    async fn connect_callbacks(&self) -> String {
        self.svc
            .connect_callbacks(&self.admin, &self.cid, &self.sim)
            .await
    }

    /// The user name Stages calls back with (the secret is what
    /// `connect_callbacks` answered).
    async fn callback_user(&self) -> String {
        let path = format!("/v1/connections/{}/inbound-credentials", self.cid);
        let answer = self.svc.call(Method::GET, &path, &self.admin, None).await;
        answer.body["username"].as_str().unwrap().to_owned()
    }
}

async fn a_diff_shows_each_field_and_a_record_sync_applies_the_choices(backend: Backend) {
    let w = world(backend).await;
    let (site_no, _, site_link, _) = w.pushed("S1", "8100001").await;
    // Without Auto Sync, billing's edit stays on its side until a sync.
    let off = w
        .svc
        .call(
            Method::PATCH,
            &format!("/v1/connections/{}", w.cid),
            &w.admin,
            Some(json!({"auto_sync": false})),
        )
        .await;
    assert_eq!(off.status, 200, "{}", off.text);
    // Stages spells the state its own way: equal after normalisation.
    w.sim
        .state()
        .patch_site(
            &site_no,
            serde_json::from_value(
                json!({"state": "OH", "phone": "614-555-0199", "city": "Worthington"}),
            )
            .unwrap(),
        )
        .unwrap();
    // Billing changes the city too, differently: a conflict.
    let s = w.call(Method::GET, "/v1/billing/sites/S1", None).await;
    let mut body = s.body.clone();
    body["city"] = json!("Dublin");
    let b: Value = json!({"name": body["name"], "address1": body["address1"], "city": "Dublin", "state": "Ohio", "zip": "43004", "phone": "(614) 555-0101"});
    let put = w.call(Method::PUT, "/v1/billing/sites/S1", Some(b)).await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(put.body["city"], "Dublin");

    let d = w
        .call(Method::GET, &format!("/v1/links/{site_link}/diff"), None)
        .await;
    assert_eq!(d.status, 200, "{}", d.text);
    let field = |name: &str| {
        d.body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(field("state")["status"], "equal", "OH == Ohio");
    assert_eq!(field("phone")["status"], "external_changed");
    assert_eq!(field("phone")["proposed"], "take_external");
    assert_eq!(field("city")["status"], "conflict");
    assert_eq!(field("city")["proposed"], Value::Null);
    assert_eq!(field("name")["status"], "equal");

    // A dry run shows the plan and writes nothing.
    let dry = w
        .call(
            Method::POST,
            &format!("/v1/links/{site_link}:sync?dry_run=true"),
            Some(json!({})),
        )
        .await;
    assert_eq!(dry.status, 200, "{}", dry.text);
    assert_eq!(dry.body["to_billing"]["phone"], "614-555-0199");
    assert_eq!(dry.body["unresolved"], json!(["city"]));
    assert_eq!(
        w.call(Method::GET, "/v1/billing/sites/S1", None).await.body["phone"],
        "(614) 555-0101"
    );

    // No free text: only take_billing / take_external, and only known fields.
    w.call(
        Method::POST,
        &format!("/v1/links/{site_link}:sync"),
        Some(json!({"fields": {"city": "Columbus"}})),
    )
    .await
    .assert_problem(422);
    w.call(
        Method::POST,
        &format!("/v1/links/{site_link}:sync"),
        Some(json!({"fields": {"colour": "take_billing"}})),
    )
    .await
    .assert_problem(422);

    let synced = w
        .call(
            Method::POST,
            &format!("/v1/links/{site_link}:sync"),
            Some(json!({"fields": {"city": "take_billing"}})),
        )
        .await;
    assert_eq!(synced.status, 200, "{}", synced.text);
    assert_eq!(w.stages_site(&site_no)["city"], "Dublin");
    assert_eq!(
        w.stages_site(&site_no)["state"],
        "OH",
        "equal values are not rewritten"
    );
    let billing = w.call(Method::GET, "/v1/billing/sites/S1", None).await;
    assert_eq!(billing.body["phone"], "614-555-0199");
    let after = w
        .call(Method::GET, &format!("/v1/links/{site_link}/diff"), None)
        .await;
    assert!(
        after.body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["status"] == "equal"),
        "{}",
        after.text
    );

    // The change the service made to billing is on the feed.
    let feed = w
        .call(Method::GET, "/v1/events?types=billing.site.updated", None)
        .await;
    let items = feed.body["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .any(|e| e["subject_id"] == "S1" && e["data"]["changed"]["phone"] == "614-555-0199"),
        "{}",
        feed.text
    );
    // Both writes are in the audit trail (B8), by the caller, field by field.
    let to_stages = w.audit("subject=S1&field=city").await;
    let e = to_stages
        .iter()
        .find(|e| e["action"] == "sync_to_stages")
        .unwrap_or_else(|| panic!("no sync_to_stages entry: {to_stages:?}"));
    assert_eq!(e["after"]["city"], "Dublin", "{e}");
    assert_eq!(
        e["before"]["city"], "Worthington",
        "Stages' own value before: {e}"
    );
    assert_eq!(e["external_id"], site_no.as_str());
    let to_billing = w.audit("subject=S1&field=phone").await;
    let e = to_billing
        .iter()
        .find(|e| e["action"] == "sync_to_billing")
        .unwrap_or_else(|| panic!("no sync_to_billing entry: {to_billing:?}"));
    assert_eq!(e["after"]["phone"], "614-555-0199", "{e}");
    assert!(
        e["actor"].as_str().is_some_and(|a| !a.starts_with("auto")),
        "{e}"
    );
    // A field nobody changed names no entry.
    assert!(w
        .audit("subject=S1&field=zip")
        .await
        .iter()
        .all(|e| !e["action"].as_str().unwrap().contains("_to_")));
}

async fn account_sync_of_a_system_also_syncs_its_site(backend: Backend) {
    let w = world(backend).await;
    let (site_no, device_id, site_link, system_link) = w.pushed("S2", "8200002").await;
    w.sim
        .state()
        .patch_site(
            &site_no,
            serde_json::from_value(json!({"info": "Gate code 1234"})).unwrap(),
        )
        .unwrap();
    w.sim
        .state()
        .patch_device(
            &device_id,
            serde_json::from_value(json!({"location": "Garage"})).unwrap(),
        )
        .unwrap();
    let a = w
        .call(
            Method::POST,
            &format!("/v1/links/{system_link}:account-sync"),
            Some(json!({"use": "external"})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.body["items"].as_array().unwrap().len(),
        2,
        "the system, then its site"
    );
    assert_eq!(
        w.call(Method::GET, "/v1/billing/systems/SYS-S2", None)
            .await
            .body["location"],
        "Garage"
    );
    assert_eq!(
        w.call(Method::GET, "/v1/billing/sites/S2", None).await.body["info"],
        "Gate code 1234"
    );
    // A site's account sync is the site only.
    let a = w
        .call(
            Method::POST,
            &format!("/v1/links/{site_link}:account-sync"),
            Some(json!({"use": "billing"})),
        )
        .await;
    assert_eq!(a.body["items"].as_array().unwrap().len(), 1);
}

async fn auto_sync_pushes_billing_edits_once_coalesced_and_not_when_off(backend: Backend) {
    let w = world(backend).await;
    let (site_no, _, site_link, _) = w.pushed("S3", "8300003").await;
    let patches_before = w.sim.state().request_count("PATCH /api/v1/sites/{site_no}");
    for i in 0..5 {
        let a = w
            .call(
                Method::PUT,
                "/v1/billing/sites/S3",
                Some(
                    json!({"name": "Lovelace home", "address1": format!("{i} Elm St"),
            "city": "Columbus", "state": "Ohio", "zip": "43004", "phone": "(614) 555-0101"}),
                ),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
    w.quiesce().await;
    assert_eq!(
        w.stages_site(&site_no)["address1"],
        "4 Elm St",
        "the latest value arrived"
    );
    let patches = w.sim.state().request_count("PATCH /api/v1/sites/{site_no}") - patches_before;
    assert!(
        (1..5).contains(&patches),
        "five quick edits coalesce: {patches} pushes"
    );
    // Each push is in the audit trail (B8) by Auto Sync, before and after.
    let pushed = w.audit("actor=auto_sync&subject=S3&field=address1").await;
    assert_eq!(pushed.len() as u64, patches, "{pushed:?}");
    assert_eq!(pushed[0]["action"], "auto_sync_to_stages");
    assert_eq!(pushed[0]["after"]["address1"], "4 Elm St", "{}", pushed[0]);
    assert!(pushed[0]["before"]["address1"].is_string(), "{}", pushed[0]);

    // Auto Sync off: nothing is pushed until someone syncs.
    let c = w
        .svc
        .call(
            Method::PATCH,
            &format!("/v1/connections/{}", w.cid),
            &w.admin,
            Some(json!({"auto_sync": false})),
        )
        .await;
    assert_eq!(c.status, 200);
    let before = w.sim.state().request_count("PATCH /api/v1/sites/{site_no}");
    let put = w
        .call(
            Method::PUT,
            "/v1/billing/sites/S3",
            Some(json!({"name": "Lovelace home", "address1": "99 Oak Ave",
            "city": "Columbus", "state": "Ohio", "zip": "43004", "phone": "(614) 555-0101"})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(put.body["address1"], "99 Oak Ave", "billing took the edit");
    w.quiesce().await;
    assert_eq!(
        w.sim.state().request_count("PATCH /api/v1/sites/{site_no}"),
        before
    );
    assert_eq!(w.stages_site(&site_no)["address1"], "4 Elm St");
    let queued = w
        .call(Method::GET, "/v1/jobs?kind=auto_sync_push", None)
        .await;
    let pushes_queued = queued.body["items"].as_array().unwrap().len();
    let diff = w
        .call(Method::GET, &format!("/v1/links/{site_link}/diff"), None)
        .await;
    let address = diff.body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "address1")
        .unwrap()
        .clone();
    assert_eq!(address["status"], "billing_changed", "{}", diff.text);
    assert_eq!(address["proposed"], "take_billing", "{}", diff.text);

    // Someone asks for a sync: the edit goes out, once, and nothing else is queued.
    let synced = w
        .call(
            Method::POST,
            &format!("/v1/links/{site_link}:sync"),
            Some(json!({})),
        )
        .await;
    assert_eq!(synced.status, 200, "{}", synced.text);
    assert_eq!(w.stages_site(&site_no)["address1"], "99 Oak Ave");
    w.quiesce().await;
    assert_eq!(
        w.sim.state().request_count("PATCH /api/v1/sites/{site_no}"),
        before + 1,
        "one PATCH for the one change"
    );
    let queued = w
        .call(Method::GET, "/v1/jobs?kind=auto_sync_push", None)
        .await;
    assert_eq!(
        queued.body["items"].as_array().unwrap().len(),
        pushes_queued,
        "a sync asked for is not also queued as Auto Sync: {}",
        queued.text
    );
    let after = w
        .call(Method::GET, &format!("/v1/links/{site_link}/diff"), None)
        .await;
    assert!(
        after.body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["status"] == "equal"),
        "{}",
        after.text
    );
}

async fn a_push_that_keeps_failing_goes_dead_and_can_be_retried(backend: Backend) {
    // No patience with an outage: every failed attempt counts.
    let impatient = ("CROSSLINK__JOBS__OUTAGE_PATIENCE_SECS".into(), "0".into());
    let w = world_with(backend, vec![impatient]).await;
    let (site_no, _, _, _) = w.pushed("S4", "8400004").await;
    w.sim
        .state()
        .add_fault(stages_sim::FaultRule::parse("PATCH /api/v1/sites/*=error:503").unwrap())
        .unwrap();
    w.call(
        Method::PUT,
        "/v1/billing/sites/S4",
        Some(json!({"name": "Renamed", "address1": "12 Elm St",
        "city": "Columbus", "state": "Ohio", "zip": "43004", "phone": "(614) 555-0101"})),
    )
    .await;
    w.quiesce().await;
    let dead = w.call(Method::GET, "/v1/jobs?state=dead", None).await;
    let items = dead.body["items"].as_array().unwrap();
    let all = w.call(Method::GET, "/v1/jobs", None).await;
    assert_eq!(items.len(), 1, "{}", all.text);
    assert_eq!(items[0]["kind"], "auto_sync_push");
    assert_eq!(items[0]["attempts"], 8);
    assert!(
        items[0]["error"].as_str().unwrap().contains("503"),
        "{}",
        dead.text
    );
    w.sim.state().clear_faults();
    let id = items[0]["id"].as_str().unwrap();
    let retried = w
        .call(Method::POST, &format!("/v1/jobs/{id}:retry"), None)
        .await;
    assert_eq!(retried.status, 200, "{}", retried.text);
    w.quiesce().await;
    assert_eq!(w.stages_site(&site_no)["name"], "Renamed");
}

async fn stages_callbacks_update_billing_once_and_our_own_pushes_do_not_echo(backend: Backend) {
    let w = world(backend).await;
    let (site_no, device_id, _, _) = w.pushed("S5", "8500005").await;
    w.connect_callbacks().await;

    // A change made in Stages reaches billing.
    w.sim
        .state()
        .patch_site(
            &site_no,
            serde_json::from_value(json!({"address1": "1 New Rd", "phone": "614-555-0123"}))
                .unwrap(),
        )
        .unwrap();
    w.sim.state().change_xmit(&device_id, "8500099").unwrap();
    w.quiesce().await;
    let site = w.call(Method::GET, "/v1/billing/sites/S5", None).await;
    assert_eq!(site.body["address1"], "1 New Rd");
    assert_eq!(site.body["phone"], "614-555-0123");
    assert_eq!(
        w.call(Method::GET, "/v1/billing/systems/SYS-S5", None)
            .await
            .body["system_number"],
        "8500099"
    );
    let version = site.body["version"].as_i64().unwrap();

    // A billing edit is pushed; Stages calls back with it; that echo changes nothing.
    let patches = w.sim.state().request_count("PATCH /api/v1/sites/{site_no}");
    w.call(Method::PUT, "/v1/billing/sites/S5", Some(json!({"name": "Lovelace home", "address1": "1 New Rd",
        "city": "Columbus", "state": "Ohio", "zip": "43004", "phone": "614-555-0123", "info": "Dog in yard"}))).await;
    w.quiesce().await;
    assert_eq!(w.stages_site(&site_no)["info"], "Dog in yard");
    assert_eq!(
        w.sim.state().request_count("PATCH /api/v1/sites/{site_no}") - patches,
        1,
        "pushed once, never echoed back"
    );
    let site = w.call(Method::GET, "/v1/billing/sites/S5", None).await;
    assert_eq!(
        site.body["version"].as_i64().unwrap(),
        version + 1,
        "only the billing edit itself"
    );
    assert!(
        w.sim.state().callback_status().acknowledged >= 3,
        "Stages did call back"
    );
}

async fn callbacks_are_verified_deduplicated_and_unmatched_ones_reported(backend: Backend) {
    let w = world(backend).await;
    let (site_no, _, _, _) = w.pushed("S6", "8600006").await;
    let secret = w.connect_callbacks().await;
    let url = w.svc.url(&format!("/v1/webhooks/stages/{}", w.cid));
    // The change in Stages this callback tells of (made without the simulator's own callback).
    w.sim
        .state()
        .with_db(|db| {
            db.patch_site(
                &site_no,
                serde_json::from_value(json!({"info": "Beware of the dog"})).unwrap(),
                chrono::Utc::now(),
            )
        })
        .unwrap();
    let event = json!({"event_id": "evt-1", "occurred_at": "2026-11-22T06:00:00Z", "type": "site.updated",
        "site_no": site_no, "billing_id": "S6", "changes": {"info": "Beware of the dog"}});
    // Wrong password: refused before anything is read.
    let bad = w
        .svc
        .http
        .post(&url)
        .basic_auth("anyone", Some("wrong"))
        .json(&event)
        .send()
        .await
        .unwrap();
    Answer::from(bad).await.assert_problem(401);
    let user = w.callback_user().await;
    let send = || {
        w.svc
            .http
            .post(&url)
            .basic_auth(&user, Some(&secret))
            .json(&event)
            .send()
    };
    let first = Answer::from(send().await.unwrap()).await;
    assert_eq!(first.status, 202, "{}", first.text);
    // `Location` names the job that applies the event, readable with a dealer token.
    let job = first.headers["location"].to_str().unwrap().to_owned();
    assert!(job.starts_with("/v1/jobs/"), "{job}");
    let read = w.svc.call(Method::GET, &job, &w.admin, None).await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.body["kind"], "stages_callback");
    let again = Answer::from(send().await.unwrap()).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["status"], "duplicate");
    w.quiesce().await;
    assert_eq!(
        w.call(Method::GET, "/v1/billing/sites/S6", None).await.body["info"],
        "Beware of the dog"
    );
    let feed = w
        .call(Method::GET, "/v1/events?types=billing.site.updated", None)
        .await;
    let hits = feed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subject_id"] == "S6" && e["data"]["source"] == "stages")
        .count();
    assert_eq!(hits, 1, "applied once: {}", feed.text);
    // The applied callback is in the audit trail (B8), named by its event.
    let applied = w.audit("subject=S6&field=info").await;
    assert_eq!(applied.len(), 1, "{applied:?}");
    assert_eq!(applied[0]["actor"], "stages_callback:evt-1");
    assert_eq!(applied[0]["action"], "stages_callback_to_billing");
    assert_eq!(applied[0]["after"]["info"], "Beware of the dog");
    assert!(applied[0]["before"]["info"].is_string(), "{}", applied[0]);

    // A record nobody linked: acknowledged, reported on the feed.
    let unknown = json!({"event_id": "evt-2", "occurred_at": "2026-11-22T06:00:00Z", "type": "site.updated",
        "site_no": "99999", "changes": {"info": "?"}});
    let a = Answer::from(
        w.svc
            .http
            .post(&url)
            .basic_auth(&user, Some(&secret))
            .json(&unknown)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 202);
    w.quiesce().await;
    let feed = w
        .call(
            Method::GET,
            "/v1/events?types=stages.callback.unmatched",
            None,
        )
        .await;
    assert_eq!(
        feed.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        feed.text
    );
    // Malformed bodies are refused with a problem.
    let a = Answer::from(
        w.svc
            .http
            .post(&url)
            .basic_auth(&user, Some(&secret))
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap(),
    )
    .await;
    a.assert_problem(400);
}

/// A receiver of signed webhooks on a free port: records requests, answers with `status`.
async fn receiver(
    status: u16,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(reqwest::header::HeaderMap, Vec<u8>)>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                break;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let mut headers = reqwest::header::HeaderMap::new();
                            for l in text[..end].lines().skip(1) {
                                if let Some((k, v)) = l.split_once(':') {
                                    headers.insert(
                                        reqwest::header::HeaderName::from_bytes(
                                            k.trim().as_bytes(),
                                        )
                                        .unwrap(),
                                        v.trim().parse().unwrap(),
                                    );
                                }
                            }
                            log.lock()
                                .unwrap()
                                .push((headers, buf[end + 4..end + 4 + len].to_vec()));
                            break;
                        }
                    }
                }
                let _ = sock
                    .write_all(
                        format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    (format!("http://{addr}/hook"), seen)
}

async fn webhook_subscribers_get_signed_events_and_a_410_disables_them(backend: Backend) {
    let w = world(backend).await;
    let (url, seen) = receiver(200).await;
    let sub = w
        .svc
        .call(
            Method::POST,
            "/v1/webhook-subscriptions",
            &w.admin,
            Some(json!({"url": url, "types": ["billing.system.updated"]})),
        )
        .await;
    assert_eq!(sub.status, 201, "{}", sub.text);
    let secret = sub.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert!(!w
        .svc
        .call(Method::GET, "/v1/webhook-subscriptions", &w.admin, None)
        .await
        .text
        .contains(&secret));
    // The push sets the system number: a change the service makes.
    w.pushed("S7", "8700007").await;
    w.quiesce().await;
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "one event of the subscribed type");
    let (headers, body) = &got[0];
    let id = headers["webhook-id"].to_str().unwrap();
    let ts: i64 = headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected = api::delivery::sign(&secret, id, ts, body).unwrap();
    assert_eq!(headers["webhook-signature"].to_str().unwrap(), expected);
    let payload: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(payload["type"], "billing.system.updated");
    assert_eq!(
        payload["data"]["data"]["changed"]["system_number"],
        "8700007"
    );

    let (gone_url, _) = receiver(410).await;
    let gone = w
        .svc
        .call(
            Method::POST,
            "/v1/webhook-subscriptions",
            &w.admin,
            Some(json!({"url": gone_url})),
        )
        .await;
    let gone_id = gone.body["id"].as_str().unwrap().to_owned();
    w.pushed("S8", "8800008").await;
    w.quiesce().await;
    let after = w
        .svc
        .call(
            Method::GET,
            &format!("/v1/webhook-subscriptions/{gone_id}"),
            &w.admin,
            None,
        )
        .await;
    assert_eq!(after.body["status"], "disabled", "{}", after.text);
}

async fn a_thousand_auto_sync_pushes_through_faults_each_arrive_once(backend: Backend) {
    const SITES: usize = 50;
    const ROUNDS: usize = 20;
    // Stages answers in milliseconds here: a short timeout keeps the injected
    // hangs, and a loose rate limit the client's own pacing, from setting the
    // pace of the rounds. Short, not shorter than a loaded machine's slowest
    // answer: a PATCH that timed out after Stages applied it is sent again,
    // which this test would count as a second push.
    let w = world_with(
        backend,
        vec![
            ("CROSSLINK__STAGES__TIMEOUT_MS".into(), "1000".into()),
            (
                "CROSSLINK__STAGES__REQUESTS_PER_SECOND".into(),
                "1000".into(),
            ),
        ],
    )
    .await;
    let mut sites = Vec::new();
    for i in 0..SITES {
        let (site_no, _, _, _) = w.pushed(&format!("F{i}"), &format!("89{i:05}")).await;
        sites.push(site_no);
    }
    for rule in [
        "PATCH /api/v1/sites/*=error:503,probability=0.3",
        "PATCH /api/v1/sites/*=timeout,probability=0.05",
        "PATCH /api/v1/sites/*=drop,probability=0.05",
    ] {
        w.sim
            .state()
            .add_fault(stages_sim::FaultRule::parse(rule).unwrap())
            .unwrap();
    }
    // Stages' own log of the writes it applied: a faulted request applies
    // nothing, so each round's edit must be applied exactly once per site.
    let pushes = |site_no: &str| -> Vec<Value> {
        w.sim
            .state()
            .applied_writes(site_no)
            .into_iter()
            .filter(|a| a.by_api)
            .map(|a| a.body)
            .collect()
    };
    let before: Vec<usize> = sites.iter().map(|s| pushes(s).len()).collect();
    // 1,000 edits: 20 rounds over 50 sites, each round waiting for the pushes.
    for round in 0..ROUNDS {
        for i in 0..SITES {
            let a = w.call(Method::PUT, &format!("/v1/billing/sites/F{i}"), Some(json!({"name": "Lovelace home",
                "address1": format!("{round} Elm St"), "city": "Columbus", "state": "Ohio", "zip": "43004", "phone": "(614) 555-0101"}))).await;
            assert_eq!(a.status, 200, "{}", a.text);
            assert_eq!(a.body["address1"], format!("{round} Elm St"));
        }
        w.quiesce().await;
        for (site_no, before) in sites.iter().zip(&before) {
            assert_eq!(
                w.stages_site(site_no)["address1"],
                format!("{round} Elm St"),
                "round {round} arrived at {site_no}"
            );
            let applied = pushes(site_no);
            assert_eq!(
                applied[*before..],
                (0..=round)
                    .map(|r| json!({"address1": format!("{r} Elm St")}))
                    .collect::<Vec<_>>(),
                "each round's edit applied once at {site_no}, in order"
            );
        }
    }
    let dead = w.call(Method::GET, "/v1/jobs?state=dead", None).await;
    assert_eq!(dead.body["items"], json!([]), "nothing dead: {}", dead.text);
}

async fn a_worker_killed_in_the_middle_of_a_push_leaves_it_to_be_done_once(backend: Backend) {
    let sim = start_sim(0).await;
    let env = || {
        vec![
            ("CROSSLINK__JOBS__LEASE_SECS".to_owned(), "2".to_owned()),
            ("CROSSLINK__JOBS__RETRY_BASE_MS".to_owned(), "20".to_owned()),
            // Longer than the hang below: the first attempt ends by the
            // kill, never by the client giving up.
            (
                "CROSSLINK__STAGES__TIMEOUT_MS".to_owned(),
                "20000".to_owned(),
            ),
        ]
    };
    let mut first = Service::start_on(backend, env()).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let cid = first
        .create_connection(&admin, "Stages", &sim.base_url(), "dealer")
        .await;
    first
        .call(
            Method::PUT,
            &format!("/v1/connections/{cid}/credentials/dealer"),
            &admin,
            Some(json!({"username": SIM_USER, "password": SIM_PASSWORD})),
        )
        .await;
    first
        .call(
            Method::PUT,
            "/v1/billing/sites/K1",
            &op,
            Some(json!({"name": "Kill me"})),
        )
        .await;
    let pushed = first
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}/push"),
            &op,
            Some(json!({"billing_site_id": "K1"})),
        )
        .await;
    assert_eq!(pushed.status, 201, "{}", pushed.text);
    let site_no = pushed.body["records"][0]["external_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The push hangs in Stages long enough to kill the worker running it,
    // even on a loaded machine. Only the push counts as running: the
    // connection's first reconcile may be running too, and killing the
    // service then left the push to the second one's first attempt.
    sim.state()
        .add_fault(
            stages_sim::FaultRule::parse("PATCH /api/v1/sites/*=latency:4000,times=1").unwrap(),
        )
        .unwrap();
    first
        .call(
            Method::PUT,
            "/v1/billing/sites/K1",
            &op,
            Some(json!({"name": "Killed mid-push"})),
        )
        .await;
    first
        .eventually("the push to show as running", STEP_LIMIT, || async {
            let running = first
                .call(
                    Method::GET,
                    "/v1/jobs?state=running&kind=auto_sync_push",
                    &op,
                    None,
                )
                .await;
            (!running.body["items"].as_array().unwrap().is_empty()).then_some(())
        })
        .await;
    first.kill();

    // Another replica on the same database takes the job once its lease runs out.
    let second = Service::start_with(ServiceOptions {
        database_url: Some(first.database_url.clone()),
        env: env(),
    })
    .await;
    let done = second
        .eventually("the push to be taken again", STEP_LIMIT, || async {
            let jobs = second
                .call(Method::GET, "/v1/jobs?kind=auto_sync_push", &op, None)
                .await;
            let items = jobs.body["items"].as_array().unwrap();
            (!items.iter().any(wait::ongoing)).then_some(jobs.body)
        })
        .await;
    let items = done["items"].as_array().expect("the job finished");
    assert_eq!(items.len(), 1, "{done}");
    assert_eq!(items[0]["state"], "succeeded", "{done}");
    assert_eq!(
        items[0]["attempts"], 2,
        "taken again after the crash: {done}"
    );
    assert_eq!(
        serde_json::to_value(sim.state().site(&site_no).unwrap()).unwrap()["name"],
        "Killed mid-push"
    );
}

/// Values each side picks from: spellings that are equal after normalisation
/// ("OH" and "Ohio", phone and zip formats, case and spaces) beside ones that
/// are not, so the random edits make real changes, echoes and conflicts.
const ADDRESSES: &[&str] = &["1 Elm St", "1 ELM ST ", "2 Oak Ave", "3 Pine Rd"];
const CITIES: &[&str] = &["Columbus", "COLUMBUS", "Dayton"];
const STATES: &[&str] = &["OH", "Ohio", "PA", "Pennsylvania"];
const ZIPS: &[&str] = &["43004", "43004-1234", "15201"];
const PHONES: &[&str] = &[
    "(614) 555-0101",
    "614.555.0101",
    "+1 614 555 0101",
    "412-555-0199",
];
const INFOS: &[&str] = &["", "Dog in yard", "Gate code 1234"];

fn pick<'a>(rng: &mut impl rand::Rng, values: &[&'a str]) -> &'a str {
    values[rng.gen_range(0..values.len())]
}

/// A random callback field of a site and a value for it.
fn site_change(rng: &mut impl rand::Rng) -> (&'static str, &'static str) {
    match rng.gen_range(0..6) {
        0 => ("address1", pick(rng, ADDRESSES)),
        1 => ("city", pick(rng, CITIES)),
        2 => ("state", pick(rng, STATES)),
        3 => ("zip", pick(rng, ZIPS)),
        4 => ("phone", pick(rng, PHONES)),
        _ => ("info", pick(rng, INFOS)),
    }
}

/// Convergence (S18, S19, B5): random edits of ten linked sites and their
/// systems on both sides, Stages' callbacks held back in bursts and delivered
/// in random order, the service left to settle after each round. A model
/// tracks, per field, who wrote it last in the round and asserts the value
/// each side ends with: a field written by one side only ends with that
/// side's last value on both (a lost edit fails, even when both sides agree);
/// one written by both ends equal on both, with one of the two last values.
/// Stages' log of applied writes shows no push for a record billing did not
/// change in the round (no echo) and no push sent twice.
///
/// A replica checks a callback's credential against the one it read before
/// (S18), yet a secret rotated on another replica stops working there at
/// once, and the new one works there at once.
async fn a_callback_secret_rotated_on_one_replica_stops_working_on_the_other_at_once(
    backend: Backend,
) {
    let w = world(backend).await;
    let old = w.connect_callbacks().await;
    let second = Service::start_with(ServiceOptions {
        database_url: Some(w.svc.database_url.clone()),
        env: Vec::new(),
    })
    .await;
    let user = w.callback_user().await;
    let url = second.url(&format!("/v1/webhooks/stages/{}", w.cid));
    let send = |event_id: &str, secret: &str| {
        let event = json!({"event_id": event_id, "occurred_at": "2026-12-07T06:00:00Z",
            "type": "site.updated", "site_no": "99999", "changes": {"info": "?"}});
        let request = second
            .http
            .post(&url)
            .basic_auth(&user, Some(secret))
            .json(&event);
        async move { Answer::from(request.send().await.unwrap()).await }
    };
    // The second replica reads the credential and keeps it.
    assert_eq!(send("evt-1", &old).await.status, 202);
    assert_eq!(send("evt-2", &old).await.status, 202);

    let rotated = w
        .svc
        .call(
            Method::POST,
            &format!("/v1/connections/{}/inbound-credentials:rotate", w.cid),
            &w.admin,
            None,
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let new = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);

    send("evt-3", &old).await.assert_problem(401);
    // Refused means not stored: the event is new when sent right.
    let right = send("evt-3", &new).await;
    assert_eq!(right.status, 202, "{}", right.text);
    assert_eq!(send("evt-3", &new).await.status, 200, "a repeat");
    send("evt-4", &old).await.assert_problem(401);
    // A repeat sent with the old secret is refused as well.
    send("evt-1", &old).await.assert_problem(401);
}

/// A burst of callbacks is applied a quarter of the runner's slots at a time
/// (two of eight here), however many are due: the other slots stay free for
/// pushes, and taking callbacks in keeps its share of the machine.
async fn a_burst_of_callbacks_is_applied_a_quarter_of_the_slots_at_a_time(backend: Backend) {
    let w = world_with(
        backend,
        vec![("CROSSLINK__JOBS__WORKERS".into(), "8".into())],
    )
    .await;
    let mut sites = Vec::new();
    for i in 0..6 {
        let (site_no, ..) = w.pushed(&format!("Q{i}"), &format!("88{i:05}")).await;
        sites.push(site_no);
    }
    let secret = w.connect_callbacks().await;
    w.quiesce().await;
    let user = w.callback_user().await;
    // Applying one reads its site from Stages: slowly, so they overlap.
    w.sim
        .state()
        .add_fault(stages_sim::FaultRule::parse("GET /api/v1/*=latency:400").unwrap())
        .unwrap();
    let url = w.svc.url(&format!("/v1/webhooks/stages/{}", w.cid));
    for (i, site_no) in sites.iter().enumerate() {
        let event = json!({"event_id": format!("burst-{i}"), "occurred_at": "2026-12-07T06:00:00Z",
            "type": "site.updated", "site_no": site_no, "changes": {"info": format!("Burst {i}")}});
        let answer = w
            .svc
            .http
            .post(&url)
            .basic_auth(&user, Some(&secret))
            .json(&event)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202);
    }
    let count = |state: &'static str| {
        let path = format!("/v1/jobs?kind=stages_callback&state={state}&limit=100");
        let svc = &w.svc;
        let admin = &w.admin;
        async move {
            let page = svc.call(Method::GET, &path, admin, None).await;
            assert_eq!(page.status, 200, "{}", page.text);
            page.body["items"].as_array().unwrap().len()
        }
    };
    let mut most_running = 0;
    let started = std::time::Instant::now();
    while count("succeeded").await < sites.len() {
        most_running = most_running.max(count("running").await);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the callbacks were not applied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(most_running, 2, "callbacks applied at once");
    w.sim.state().set_faults(Vec::new()).unwrap();
    w.quiesce().await;
}

/// Two replicas share the database: billing edits go to either, Stages'
/// callbacks (delivered twice each, in random order) to one or the other,
/// and Stages goes down for a random while in some rounds.
///
/// The seed is fixed for `make test` (1,000 steps); `CONVERGENCE_SEED=N`
/// replays a run, `CONVERGENCE_SEED=random` draws one, `CONVERGENCE_STEPS`
/// sets the length (`make soak` runs 100,000).
async fn random_edits_on_both_sides_converge_and_nothing_is_pushed_twice(backend: Backend) {
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;

    let seed = match std::env::var("CONVERGENCE_SEED").ok().as_deref() {
        None | Some("") => 19,
        Some("random") => rand::random::<u64>(),
        Some(n) => n.parse().expect("CONVERGENCE_SEED is a number or `random`"),
    };
    let total_steps: usize = std::env::var("CONVERGENCE_STEPS")
        .ok()
        .map(|n| n.parse().expect("CONVERGENCE_STEPS is a number"))
        .unwrap_or(1000);
    println!("convergence: seed {seed}, {total_steps} steps (CONVERGENCE_SEED={seed} replays it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let w = world(backend).await;
    let second = Service::start_with(ServiceOptions {
        database_url: Some(w.svc.database_url.clone()),
        env: vec![
            ("CROSSLINK__JOBS__RETRY_BASE_MS".into(), "20".into()),
            ("CROSSLINK__JOBS__RETRY_CAP_MS".into(), "200".into()),
        ],
    })
    .await;
    let replicas = [&w.svc, &second];
    let mut records = Vec::new();
    for i in 0..10 {
        let site = format!("C{i}");
        let (site_no, device_id, _, _) = w.pushed(&site, &format!("77{i}0000")).await;
        records.push((site, site_no, device_id));
    }
    w.connect_callbacks().await;
    let mut target = w.sim.state().callback_target().unwrap();
    target.shuffle = true;
    target.duplicate = true;
    w.sim.state().set_callback_target(target.clone()).unwrap();

    // Each field as both sides hold it now: (billing, Stages).
    const SITE: [&str; 6] = ["address1", "city", "state", "zip", "phone", "info"];
    let normalizer = |field: &str| {
        domain::sync::fields::find_field(domain::sync::fields::SITE_FIELDS, field)
            .or_else(|| {
                domain::sync::fields::find_field(domain::sync::fields::SYSTEM_FIELDS, field)
            })
            .unwrap()
            .normalizer
    };
    let sides = |i: usize| {
        let (site, site_no, device_id) = &records[i];
        let w = &w;
        async move {
            let billing = w
                .call(Method::GET, &format!("/v1/billing/sites/{site}"), None)
                .await;
            let system = w
                .call(
                    Method::GET,
                    &format!("/v1/billing/systems/SYS-{site}"),
                    None,
                )
                .await;
            let stages = w.stages_site(site_no);
            let device = serde_json::to_value(w.sim.state().device(device_id).unwrap()).unwrap();
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            let mut out = BTreeMap::new();
            for f in SITE {
                out.insert(f, (text(&billing.body[f]), text(&stages[f])));
            }
            out.insert(
                "system_number",
                (
                    text(&system.body["system_number"]),
                    text(&device["transmitter_code"]),
                ),
            );
            out
        }
    };
    // What each field must hold on both sides after the round that just ended.
    let mut agreed: Vec<BTreeMap<&str, String>> = Vec::new();
    for i in 0..records.len() {
        let now = sides(i).await;
        for (f, (b, s)) in &now {
            assert!(
                normalizer(f).equal(b, s),
                "after the push {f}: {b:?} vs {s:?}"
            );
        }
        agreed.push(now.into_iter().map(|(f, (b, _))| (f, b)).collect());
    }
    let api_writes = |record: &str| {
        w.sim
            .state()
            .applied_writes(record)
            .into_iter()
            .filter(|a| a.by_api)
            .count()
    };

    let mut log = Vec::new();
    let mut conflicts_resolved = 0;
    let context = |log: &[String]| {
        format!(
            "seed {seed} (CONVERGENCE_SEED={seed} replays it):\n{}",
            log.join("\n")
        )
    };
    let (mut round, mut steps, mut outages) = (0, 0, 0);
    while steps < total_steps {
        round += 1;
        // This round's replica for billing's edits and for Stages' callbacks.
        let svc = replicas[rng.gen_range(0..2)];
        target.url = replicas[rng.gen_range(0..2)].url(&format!("/v1/webhooks/stages/{}", w.cid));
        w.sim.state().set_callback_target(target.clone()).unwrap();
        // Who wrote which field of which record in this round, last value each.
        let mut billing_wrote: BTreeMap<(usize, &str), String> = BTreeMap::new();
        let mut stages_wrote: BTreeMap<(usize, &str), String> = BTreeMap::new();
        let pushes_before: Vec<(usize, usize)> = records
            .iter()
            .map(|(_, site_no, device_id)| (api_writes(site_no), api_writes(device_id)))
            .collect();
        w.sim.state().set_callbacks_paused(rng.gen_bool(0.6));
        for _ in 0..rng.gen_range(1..6) {
            steps += 1;
            let i = rng.gen_range(0..records.len());
            let (site, site_no, device_id) = &records[i];
            let code = format!("77{i}000{}", rng.gen_range(0..3));
            match rng.gen_range(0..4) {
                0 => {
                    // A careful front end: read, change some fields, write
                    // back only if nothing changed in between (If-Match), so
                    // the fields it did not touch are not written back stale.
                    let changes: Vec<(&str, &str)> = (0..rng.gen_range(1..4))
                        .map(|_| site_change(&mut rng))
                        .collect();
                    let path = format!("/v1/billing/sites/{site}");
                    let body = loop {
                        let now = svc.call(Method::GET, &path, &w.op, None).await;
                        let mut body = json!({});
                        for f in [
                            "name", "address1", "address2", "city", "state", "zip", "phone", "info",
                        ] {
                            body[f] = now.body[f].clone();
                        }
                        for (f, v) in &changes {
                            body[*f] = json!(v);
                        }
                        let put = svc
                            .req(Method::PUT, &path, &w.op)
                            .header("if-match", now.headers["etag"].to_str().unwrap())
                            .json(&body)
                            .send()
                            .await
                            .unwrap();
                        let a = Answer::from(put).await;
                        if a.status == 412 {
                            continue;
                        }
                        assert_eq!(a.status, 200, "{}: {}", context(&log), a.text);
                        break body;
                    };
                    for (f, v) in changes {
                        billing_wrote.insert((i, f), v.to_owned());
                    }
                    log.push(format!("{round}: billing site {site} {body}"));
                }
                1 => {
                    let mut patch = json!({});
                    for _ in 0..rng.gen_range(1..4) {
                        let (f, v) = site_change(&mut rng);
                        patch[f] = json!(v);
                        stages_wrote.insert((i, f), v.to_owned());
                    }
                    w.sim
                        .state()
                        .patch_site(site_no, serde_json::from_value(patch.clone()).unwrap())
                        .unwrap();
                    log.push(format!("{round}: stages site {site_no} {patch}"));
                }
                2 => {
                    let path = format!("/v1/billing/systems/SYS-{site}");
                    let body = json!({"site_id": site, "system_number": code});
                    let a = svc.call(Method::PUT, &path, &w.op, Some(body)).await;
                    assert_eq!(a.status, 200, "{}: {}", context(&log), a.text);
                    billing_wrote.insert((i, "system_number"), code.clone());
                    log.push(format!("{round}: billing system SYS-{site} {code}"));
                }
                _ => {
                    // Stages refuses a code that is already the device's own:
                    // then nothing was written.
                    if w.sim.state().change_xmit(device_id, &code).is_ok() {
                        stages_wrote.insert((i, "system_number"), code.clone());
                    }
                    log.push(format!("{round}: stages device {device_id} {code}"));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..60))).await;
        if rng.gen_bool(0.2) {
            // Stages is down for a while: pushes wait, nothing is lost.
            outages += 1;
            w.sim
                .state()
                .add_fault(stages_sim::FaultRule::parse("* /api/v1/*=error:503").unwrap())
                .unwrap();
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..400))).await;
            w.sim.state().clear_faults();
            log.push(format!("{round}: Stages was down"));
        }
        w.sim.state().set_callbacks_paused(false);
        w.quiesce().await;

        // The conflicts held now, by (Stages record, field).
        let inbox = w
            .call(Method::GET, "/v1/conflicts?page_size=500", None)
            .await;
        assert_eq!(inbox.status, 200, "{}", inbox.text);
        let held: BTreeMap<(String, String), String> = inbox.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    (
                        c["external_id"].as_str().unwrap().to_owned(),
                        c["field"].as_str().unwrap().to_owned(),
                    ),
                    c["link_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let mut resolutions = Vec::new();
        for i in 0..records.len() {
            let (site, site_no, device_id) = &records[i];
            let now = sides(i).await;
            for (f, (billing, stages)) in &now {
                let n = normalizer(f);
                let key = (i, *f);
                let record = if *f == "system_number" {
                    device_id
                } else {
                    site_no
                };
                let link = held.get(&(record.clone(), f.to_string()));
                // What Stages applied to the record lately, by whom: the
                // first thing to read when this fails.
                let applied: Vec<String> = w
                    .sim
                    .state()
                    .applied_writes(record)
                    .iter()
                    .rev()
                    .take(6)
                    .map(|a| format!("{} {}", if a.by_api { "api" } else { "staff" }, a.body))
                    .collect();
                let what = format!(
                    "round {round}, {site} ({site_no}, {device_id}) {f}: billing {billing:?}, Stages {stages:?}, held {link:?}, wrote: billing {:?}, Stages {:?}; Stages applied, newest first: {applied:?}",
                    billing_wrote.get(&key),
                    stages_wrote.get(&key)
                );
                match (billing_wrote.get(&key), stages_wrote.get(&key)) {
                    // Both sides changed it since the last sync: either one
                    // side's change reached the other first (and the other
                    // side's then went on top), or it is held as a conflict
                    // with each side keeping its own value.
                    (Some(b), Some(s)) if link.is_some() => {
                        assert!(
                            n.equal(billing, b) && n.equal(stages, s),
                            "a held conflict changed a side: {what}\n{}",
                            context(&log)
                        );
                        let (side, value) = if rng.gen_bool(0.5) {
                            ("billing", b)
                        } else {
                            ("stages", s)
                        };
                        resolutions.push((i, *f, link.unwrap().clone(), side, value.clone()));
                        continue;
                    }
                    (b, s) => {
                        assert!(
                            link.is_none(),
                            "held though only one side changed it: {what}\n{}",
                            context(&log)
                        );
                        let want: Vec<&String> = match (b, s) {
                            (None, None) => vec![&agreed[i][f]],
                            (Some(b), None) => vec![b],
                            (None, Some(s)) => vec![s],
                            (Some(b), Some(s)) => vec![b, s],
                        };
                        assert!(
                            n.equal(billing, stages),
                            "the sides differ: {what}\n{}",
                            context(&log)
                        );
                        assert!(
                            want.iter().any(|v| n.equal(billing, v)),
                            "an edit was lost: {what}\n{}",
                            context(&log)
                        );
                    }
                }
            }
            agreed[i] = now.into_iter().map(|(f, (b, _))| (f, b)).collect();

            // No echo: a record billing did not touch this round gets no push.
            let (site_before, device_before) = pushes_before[i];
            let site_fields_written = SITE.iter().any(|f| billing_wrote.contains_key(&(i, *f)));
            if !site_fields_written {
                assert_eq!(
                    api_writes(site_no),
                    site_before,
                    "round {round}: {site_no} pushed though billing did not change it\n{}",
                    context(&log)
                );
            }
            if !billing_wrote.contains_key(&(i, "system_number")) {
                assert_eq!(
                    api_writes(device_id),
                    device_before,
                    "round {round}: {device_id} pushed though billing did not change it\n{}",
                    context(&log)
                );
            }
        }

        // Held conflicts are resolved from the inbox, a side each; both sides
        // then hold the chosen value and the inbox is empty.
        if !resolutions.is_empty() {
            let body: Vec<Value> = resolutions
                .iter()
                .map(|(_, f, link, side, _)| json!({"link_id": link, "field": f, "use": side}))
                .collect();
            let r = w
                .call(
                    Method::POST,
                    "/v1/conflicts:resolve",
                    Some(json!({"resolutions": body})),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            for item in r.body["items"].as_array().unwrap() {
                assert_eq!(item["error"], Value::Null, "{}\n{}", r.text, context(&log));
            }
            log.push(format!("{round}: resolved {body:?}"));
            conflicts_resolved += resolutions.len();
            w.quiesce().await;
            for (i, f, _, _, value) in &resolutions {
                let now = sides(*i).await;
                let (billing, stages) = &now[f];
                assert!(
                    normalizer(f).equal(billing, value) && normalizer(f).equal(stages, value),
                    "round {round}: resolving {f} of {:?} to {value:?} left billing {billing:?}, Stages {stages:?}\n{}",
                    records[*i],
                    context(&log)
                );
                agreed[*i].insert(f, billing.clone());
            }
            let inbox = w.call(Method::GET, "/v1/conflicts", None).await;
            assert_eq!(inbox.body["items"], json!([]), "{}", inbox.text);
        }
    }

    println!(
        "convergence: {steps} steps in {round} rounds, {outages} Stages outages, {conflicts_resolved} conflicts held and resolved from the inbox"
    );
    // Nothing pushed twice: no write of the service repeats the one before it
    // with no other change to that record in between.
    for (_, site_no, device_id) in &records {
        for record in [site_no, device_id] {
            let writes = w.sim.state().applied_writes(record);
            for pair in writes.windows(2) {
                assert!(
                    !(pair[0].by_api && pair[1].by_api && pair[0].body == pair[1].body),
                    "{record} got the same push twice: {}\n{}",
                    pair[1].body,
                    context(&log)
                );
            }
        }
    }
    // Quiet stays quiet: no echo starts up later.
    let total = || -> usize {
        records
            .iter()
            .map(|(_, s, d)| api_writes(s) + api_writes(d))
            .sum()
    };
    let settled = total();
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.quiesce().await;
    assert_eq!(total(), settled, "{}", context(&log));
}

/// Upstream outage: Stages answers nothing but 503s and dropped connections
/// for a while. Auto Sync keeps the edits queued (no attempt is used up while
/// Stages is down, so nothing dies), `/readyz` stays ready, `/metrics` names
/// the failing connection, and once Stages is back the backlog drains with
/// the latest value of every record.
async fn a_stages_outage_leaves_a_backlog_that_drains_when_it_returns(backend: Backend) {
    let w = world(backend).await;
    let mut sites = Vec::new();
    for i in 0..10 {
        let (site_no, _, _, _) = w.pushed(&format!("O{i}"), &format!("86{i:05}")).await;
        sites.push(site_no);
    }
    for rule in ["* /api/v1/*=error:503,probability=0.7", "* /api/v1/*=drop"] {
        w.sim
            .state()
            .add_fault(stages_sim::FaultRule::parse(rule).unwrap())
            .unwrap();
    }
    for round in 0..5 {
        for i in 0..10 {
            let a = w.call(Method::PUT, &format!("/v1/billing/sites/O{i}"), Some(json!({"name": "Lovelace home",
                "address1": format!("{round} Outage Rd"), "city": "Columbus", "state": "Ohio", "zip": "43004", "phone": "(614) 555-0101"}))).await;
            assert_eq!(a.status, 200, "{}", a.text);
        }
    }
    // Long enough for every push to have failed many times over: eight
    // counted attempts at these retry delays take well under a second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ready = w.svc.http.get(w.svc.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "the service itself is fine");
    let metrics = w.svc.metrics().await;
    let failing: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("crosslink_upstream_calls_total{"))
        .filter(|l| l.contains(&format!("connection=\"{}\"", w.cid)))
        .filter(|l| !l.contains("outcome=\"ok\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(
        failing >= 10,
        "failed calls counted for the connection:\n{metrics}"
    );
    let dead = w.call(Method::GET, "/v1/jobs?state=dead", None).await;
    assert_eq!(dead.body["items"], json!([]), "nothing died of the outage");
    for site_no in &sites {
        assert_ne!(w.stages_site(site_no)["address1"], "4 Outage Rd");
    }

    // Stages is back: the backlog drains.
    w.sim.state().clear_faults();
    w.quiesce().await;
    for site_no in &sites {
        assert_eq!(w.stages_site(site_no)["address1"], "4 Outage Rd");
    }
    let dead = w.call(Method::GET, "/v1/jobs?state=dead", None).await;
    assert_eq!(dead.body["items"], json!([]), "{}", dead.text);
    let metrics = w.svc.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("crosslink_upstream_calls_total{")
                && l.contains(&format!("connection=\"{}\"", w.cid))
                && l.contains("outcome=\"ok\"")),
        "{metrics}"
    );
}

/// The value of one series of a Prometheus text (`name{labels}` exactly as
/// the service writes it).
fn series(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Operations (issue 16): a delivery that arrives and one that keeps being
/// refused show on /metrics as deliveries by outcome, job durations by kind
/// and outcome, and (read from the database every few seconds) the dead job
/// by kind and state and an empty queue; process figures and the build too.
async fn metrics_show_jobs_by_state_durations_and_deliveries(backend: Backend) {
    let w = world(backend).await;
    let (ok_url, ok_seen) = receiver(200).await;
    let (refusing_url, refused) = receiver(500).await;
    for url in [&ok_url, &refusing_url] {
        let sub = w
            .svc
            .call(
                Method::POST,
                "/v1/webhook-subscriptions",
                &w.admin,
                Some(json!({"url": url, "types": ["billing.system.updated"]})),
            )
            .await;
        assert_eq!(sub.status, 201, "{}", sub.text);
    }
    w.pushed("M1", "8710001").await;
    // The refused delivery goes dead after its 10 attempts (20-200 ms apart).
    w.quiesce().await;
    assert_eq!(ok_seen.lock().unwrap().len(), 1);
    assert_eq!(refused.lock().unwrap().len(), 10);

    let kind = r#"kind="webhook_delivery""#;
    let metrics = w
        .svc
        .eventually(
            "/metrics to count the dead delivery",
            STEP_LIMIT,
            || async {
                let metrics = w.svc.metrics().await;
                let dead = series(
                    &metrics,
                    &format!("crosslink_jobs{{{kind},state=\"dead\"}}"),
                );
                (dead == Some(1.0)).then_some(metrics)
            },
        )
        .await;
    let want = [
        (format!("crosslink_jobs{{{kind},state=\"dead\"}}"), 1.0),
        (format!("crosslink_jobs{{{kind},state=\"queued\"}}"), 0.0),
        (format!("crosslink_jobs{{{kind},state=\"running\"}}"), 0.0),
        (format!("crosslink_job_queue_depth{{{kind}}}"), 0.0),
        (
            format!("crosslink_job_queue_oldest_due_age_seconds{{{kind}}}"),
            0.0,
        ),
        (
            r#"crosslink_jobs{kind="reconcile",state="queued"}"#.to_owned(),
            0.0,
        ),
        (
            r#"crosslink_job_progress_items_done{kind="adc_import"}"#.to_owned(),
            0.0,
        ),
        (
            format!("crosslink_job_duration_seconds_count{{{kind},outcome=\"succeeded\"}}"),
            1.0,
        ),
        (
            format!("crosslink_job_duration_seconds_count{{{kind},outcome=\"retry\"}}"),
            9.0,
        ),
        (
            format!("crosslink_job_duration_seconds_count{{{kind},outcome=\"dead\"}}"),
            1.0,
        ),
        (
            r#"crosslink_webhook_deliveries_total{outcome="delivered"}"#.to_owned(),
            1.0,
        ),
        (
            r#"crosslink_webhook_deliveries_total{outcome="rejected"}"#.to_owned(),
            10.0,
        ),
        (
            format!(
                "crosslink_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        ),
    ];
    for (name, value) in want {
        assert_eq!(series(&metrics, &name), Some(value), "{name} in\n{metrics}");
    }
    let rss = series(&metrics, "process_resident_memory_bytes").unwrap_or(0.0);
    assert!(rss > 1e6, "resident memory {rss} in\n{metrics}");
    assert!(series(&metrics, "process_open_fds").unwrap_or(0.0) > 3.0);
    assert!(series(&metrics, "process_cpu_seconds_total").unwrap_or(0.0) > 0.0);
    let age = series(&metrics, "crosslink_job_stats_age_seconds").unwrap();
    assert!((0.0..10.0).contains(&age), "job figures {age} s old");
}

on_both_backends!(
    a_stages_outage_leaves_a_backlog_that_drains_when_it_returns,
    random_edits_on_both_sides_converge_and_nothing_is_pushed_twice,
    a_worker_killed_in_the_middle_of_a_push_leaves_it_to_be_done_once,
    a_diff_shows_each_field_and_a_record_sync_applies_the_choices,
    account_sync_of_a_system_also_syncs_its_site,
    auto_sync_pushes_billing_edits_once_coalesced_and_not_when_off,
    a_push_that_keeps_failing_goes_dead_and_can_be_retried,
    stages_callbacks_update_billing_once_and_our_own_pushes_do_not_echo,
    callbacks_are_verified_deduplicated_and_unmatched_ones_reported,
    a_callback_secret_rotated_on_one_replica_stops_working_on_the_other_at_once,
    a_burst_of_callbacks_is_applied_a_quarter_of_the_slots_at_a_time,
    webhook_subscribers_get_signed_events_and_a_410_disables_them,
    a_thousand_auto_sync_pushes_through_faults_each_arrive_once,
    metrics_show_jobs_by_state_durations_and_deliveries,
);
