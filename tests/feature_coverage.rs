//! End to end: the rules of features whose coverage was thin (issue 19), each
//! on SQLite and PostgreSQL against the real binary and the simulators:
//! S2 (no Stages call without the caller's credentials), S12 (a site link
//! edited), S13 (nothing pushed after an unlink), S14 (notes and history equal
//! Stages'), A3 (support-id and sub-dealer filters of the user import), B2 (a
//! webhook retried after a 5xx), B8 (the connection on audit entries) and B10
//! (JSON logs with request ids and no secrets).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::{json, Value};
use support::*;

// ---- shared helpers -------------------------------------------------------

/// Quick job retries: the tests wait for nothing else.
fn quick_jobs() -> Vec<(String, String)> {
    vec![
        ("CROSSLINK__JOBS__RETRY_BASE_MS".into(), "20".into()),
        ("CROSSLINK__JOBS__RETRY_CAP_MS".into(), "200".into()),
    ]
}

fn to_json<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap()
}

fn text(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

/// A site made in the simulator (as a Stages operator would) with
/// `codes.len()` devices; returns (site_no, device ids in the codes' order).
fn stages_site(
    sim: &stages_sim::Sim,
    name: &str,
    codes: &[&str],
    billing: Option<(&str, &[&str])>,
) -> (String, Vec<String>) {
    let mut site = json!({
        "name": name, "address1": "5 Engine Row", "city": "Chicago", "state": "IL",
        "zip": "60601", "phone": "312-555-0100", "time_zone": "America/Chicago",
        "contacts": [{"name": "Grace Hopper", "relation": "Owner"}],
    });
    let mut devices = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        let mut d = json!({"transmitter_code": code});
        if let Some((_, systems)) = billing {
            d["billing_id"] = json!(systems[i]);
        }
        devices.push(d);
    }
    site["devices"] = json!(devices);
    if let Some((site_id, _)) = billing {
        site["billing_id"] = json!(site_id);
    }
    let created = sim
        .state()
        .create_site(serde_json::from_value(site).unwrap())
        .unwrap();
    let v = to_json(&created);
    let ids = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| text(&d["device_id"]))
        .collect();
    (text(&v["site"]["site_no"]), ids)
}

fn sim_site(sim: &stages_sim::Sim, site_no: &str) -> Value {
    to_json(&sim.state().site(site_no).expect("the Stages site exists"))
}

fn sim_device(sim: &stages_sim::Sim, device_id: &str) -> Value {
    to_json(
        &sim.state()
            .device(device_id)
            .expect("the Stages device exists"),
    )
}

/// Every job of `who`'s dealer matching `query`, newest first.
async fn jobs(svc: &Service, who: &Who, query: &str) -> Vec<Value> {
    let a = svc
        .call(
            Method::GET,
            &format!("/v1/jobs?page_size=500{query}"),
            who,
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.body["next_page_token"],
        Value::Null,
        "one page holds them"
    );
    a.body["items"].as_array().unwrap().clone()
}

/// Every audit entry matching `query`, paging through them, newest first.
async fn audit(svc: &Service, who: &Who, query: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = format!("/v1/audit?page_size=3{query}");
        if let Some(t) = &token {
            path.push_str(&format!("&page_token={t}"));
        }
        let a = svc.call(Method::GET, &path, who, None).await;
        assert_eq!(a.status, 200, "{}", a.text);
        all.extend(a.body["items"].as_array().unwrap().iter().cloned());
        match a.body["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return all,
        }
    }
}

/// A test window starting a day from now, an hour long. Local times in any
/// zone: a day ahead of UTC's wall clock is in the future everywhere.
fn window_tomorrow() -> Value {
    let start = (chrono::Utc::now() + chrono::Duration::days(1)).naive_utc();
    let end = start + chrono::Duration::hours(1);
    json!({"start": start.format("%Y-%m-%dT%H:%M:%S").to_string(),
           "end": end.format("%Y-%m-%dT%H:%M:%S").to_string()})
}

// ---- S2 -------------------------------------------------------------------

/// S2: on a `user` mode connection, a user who has stored no credentials gets
/// `409 credentials_required` (naming the connection and saying how to fix
/// it) from every operation that would call Stages, and Stages receives no
/// request; the same calls by a user with credentials succeed, so the refusal
/// is about the credentials and nothing else. Every such answer is documented
/// for its operation in the served OpenAPI document.
async fn without_own_credentials_no_stages_operation_reaches_stages(backend: Backend) {
    let sim = start_sim(0).await;
    let svc = Service::start_on(backend, quick_jobs()).await;
    let admin = Who::admin("acme");
    let one = Who::new("acme", "userone", "operator");
    let two = Who::new("acme", "usertwo", "operator");
    let cid = svc
        .create_connection(&admin, "Rapid", &sim.base_url(), "user")
        .await;
    let put = svc
        .call(
            Method::PUT,
            &format!("/v1/connections/{cid}/credentials/me"),
            &one,
            Some(json!({"username": SIM_USER, "password": SIM_PASSWORD})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    let (site_no, devices) = stages_site(&sim, "Babbage Works", &["6620001", "6620002"], None);
    let (d0, d1) = (devices[0].clone(), devices[1].clone());
    let contact_id = text(&to_json(&sim.state().contacts(&site_no)[0])["contact_id"]);
    for (path, body) in [
        ("/v1/billing/sites/S1", json!({"name": "One"})),
        (
            "/v1/billing/systems/SYS1",
            json!({"site_id": "S1", "system_number": "6620001"}),
        ),
        ("/v1/billing/sites/S2", json!({"name": "Two"})),
    ] {
        let a = svc.call(Method::PUT, path, &one, Some(body)).await;
        assert_eq!(a.status, 201, "{}", a.text);
    }
    let openapi = svc
        .http
        .get(svc.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let requests = || sim.state().stats().total_requests;

    // The connection test says what is missing, without calling Stages.
    let t = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}:test"),
            &two,
            None,
        )
        .await;
    assert_eq!(t.status, 200, "{}", t.text);
    assert_eq!(t.body["outcome"], "missing_credentials", "{}", t.text);
    assert_eq!(requests(), 0, "{:?}", sim.state().stats().requests);
    let t = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}:test"),
            &one,
            None,
        )
        .await;
    assert_eq!(t.body["outcome"], "ok", "{}", t.text);
    // That passing test started the connection's migration (S20), which reads
    // Stages in the background: it is over before requests are counted.
    svc.migration_settled(&one, &cid).await;

    let mut undocumented = Vec::new();
    // Calls `path` as `two` (refused, nothing reaches Stages), then as `one` (done).
    macro_rules! refused_then_done {
        ($method:expr, $path:expr, $template:expr, $body:expr) => {{
            let (method, path, body): (Method, String, Option<Value>) = ($method, $path, $body);
            let before = requests();
            let refused = svc.call(method.clone(), &path, &two, body.clone()).await;
            assert_eq!(
                refused.assert_problem(409),
                "credentials_required",
                "{method} {path}: {}",
                refused.text
            );
            let detail = text(&refused.body["detail"]);
            assert!(
                detail.contains("Rapid") && detail.contains("credentials/me"),
                "{method} {path}: the problem names the connection and the fix: {detail}"
            );
            assert_eq!(
                requests(),
                before,
                "{method} {path} reached Stages without credentials: {:?}",
                sim.state().stats().requests
            );
            let op = method.as_str().to_ascii_lowercase();
            if openapi["paths"][$template][op.as_str()]["responses"]["409"].is_null() {
                undocumented.push(format!("{method} {}", $template));
            }
            let done = svc.call(method.clone(), &path, &one, body).await;
            assert!(
                (200..300).contains(&done.status),
                "{method} {path} as a user with credentials: {}",
                done.text
            );
            done
        }};
    }

    let c = format!("/v1/connections/{cid}");
    let st = format!("{c}/stages");
    let t_base = "/v1/connections/{connection_id}/stages";
    for (path, template) in [
        (
            format!("{st}/lookups/regions"),
            format!("{t_base}/lookups/{{list}}"),
        ),
        (format!("{st}/sites"), format!("{t_base}/sites")),
        (
            format!("{st}/sites?unlinked=true&q=Babbage"),
            format!("{t_base}/sites"),
        ),
        (
            format!("{st}/sites/{site_no}"),
            format!("{t_base}/sites/{{site_no}}"),
        ),
        (
            format!("{st}/sites/{site_no}/devices"),
            format!("{t_base}/sites/{{site_no}}/devices"),
        ),
        (
            format!("{st}/sites/{site_no}/notes"),
            format!("{t_base}/sites/{{site_no}}/notes"),
        ),
        (
            format!("{st}/sites/{site_no}/contacts"),
            format!("{t_base}/sites/{{site_no}}/contacts"),
        ),
        (
            format!("{st}/sites/{site_no}/history"),
            format!("{t_base}/sites/{{site_no}}/history"),
        ),
        (
            format!("{st}/devices/{d0}"),
            format!("{t_base}/devices/{{device_id}}"),
        ),
        (
            format!("{st}/devices/{d0}/configurations"),
            format!("{t_base}/devices/{{device_id}}/configurations"),
        ),
        (
            format!("{st}/devices/{d0}/history"),
            format!("{t_base}/devices/{{device_id}}/history"),
        ),
        (
            format!("{st}/devices/{d0}/tests"),
            format!("{t_base}/devices/{{device_id}}/tests"),
        ),
    ] {
        refused_then_done!(Method::GET, path, &template, None);
    }
    refused_then_done!(
        Method::POST,
        format!("{st}/sites/{site_no}/contacts"),
        &format!("{t_base}/sites/{{site_no}}/contacts"),
        Some(json!({"name": "Alan Turing", "relation": "Neighbour"}))
    );
    refused_then_done!(
        Method::PATCH,
        format!("{st}/sites/{site_no}/contacts/{contact_id}"),
        &format!("{t_base}/sites/{{site_no}}/contacts/{{contact_id}}"),
        Some(json!({"relation": "Friend"}))
    );
    refused_then_done!(
        Method::PATCH,
        format!("{st}/devices/{d0}"),
        &format!("{t_base}/devices/{{device_id}}"),
        Some(json!({"location": "Hall"}))
    );
    refused_then_done!(
        Method::POST,
        format!("{st}/devices/{d0}/configurations"),
        &format!("{t_base}/devices/{{device_id}}/configurations"),
        Some(json!({"point": 9, "description": "Hall motion"}))
    );
    let started = refused_then_done!(
        Method::POST,
        format!("{st}/devices/{d0}/tests"),
        &format!("{t_base}/devices/{{device_id}}/tests"),
        Some(window_tomorrow())
    );
    let test_id = text(&started.body["test"]["test_id"]);
    refused_then_done!(
        Method::DELETE,
        format!("{st}/devices/{d0}/tests/{test_id}"),
        &format!("{t_base}/devices/{{device_id}}/tests/{{test_id}}"),
        None
    );
    refused_then_done!(
        Method::POST,
        format!("{st}/sites/{site_no}/tests"),
        &format!("{t_base}/sites/{{site_no}}/tests"),
        Some(window_tomorrow())
    );
    refused_then_done!(
        Method::POST,
        format!("{c}/push"),
        "/v1/connections/{connection_id}/push",
        Some(json!({"billing_site_id": "S2"}))
    );
    let linked = refused_then_done!(
        Method::POST,
        "/v1/links".to_owned(),
        "/v1/links",
        Some(
            json!({"connection_id": cid, "billing_site_id": "S1", "stages_site_no": site_no,
            "systems": [{"billing_system_id": "SYS1", "stages_device_id": d0}]})
        )
    );
    let link_of = |kind: &str| {
        text(
            &linked.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["kind"] == kind)
                .unwrap()["id"],
        )
    };
    let (site_link, system_link) = (link_of("site"), link_of("system"));
    refused_then_done!(
        Method::GET,
        format!("/v1/links/{site_link}/diff"),
        "/v1/links/{link_id}/diff",
        None
    );
    refused_then_done!(
        Method::POST,
        format!("/v1/links/{site_link}:sync"),
        "/v1/links/{link_id}:sync",
        Some(json!({"fields": {}}))
    );
    refused_then_done!(
        Method::POST,
        format!("/v1/links/{system_link}:account-sync"),
        "/v1/links/{link_id}:account-sync",
        Some(json!({"use": "billing"}))
    );
    refused_then_done!(
        Method::PATCH,
        format!("/v1/links/{system_link}"),
        "/v1/links/{link_id}",
        Some(json!({"external_id": d1}))
    );

    // A billing record is ours: it reads without credentials, its live
    // Stages status left out, and Stages is not asked.
    let before = requests();
    let read = svc
        .call(Method::GET, "/v1/billing/sites/S1", &two, None)
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert!(
        read.body["stages_status"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"].is_null()),
        "{}",
        read.text
    );
    assert_eq!(requests(), before);

    // Reconcile last: as `one` it runs in the background and calls Stages.
    refused_then_done!(
        Method::POST,
        format!("{c}:reconcile"),
        "/v1/connections/{connection_id}:reconcile",
        None
    );
    assert!(
        undocumented.is_empty(),
        "the 409 these operations answer is not in the OpenAPI document: {undocumented:#?}"
    );
}

// ---- S12 ------------------------------------------------------------------

/// S12: a *site* link pointed at another Stages site that is not linked yet,
/// with a device of that site for each linked system. The billing ids move in
/// Stages (the old site and devices are cleared, the new ones carry them),
/// the service's links, billing record, audit, diff and Auto Sync follow the
/// new site; a site or device linked elsewhere, a device of another site and
/// a missing system are refused with nothing changed; a stale ETag is 412.
async fn a_site_link_is_edited_to_another_stages_site(backend: Backend) {
    let sim = start_sim(0).await;
    let svc = Service::in_process(backend, quick_jobs()).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let cid = svc.stages_connection_named(&admin, "Stages", &sim).await;
    let (old_site, old_dev) = stages_site(&sim, "Old site", &["6630001", "6630002"], None);
    let (new_site, new_dev) = stages_site(&sim, "New site", &["6630011", "6630012"], None);
    // Linked to another billing site already.
    let (taken_site, taken_dev) = stages_site(
        &sim,
        "Taken site",
        &["6630021", "6630022"],
        Some(("S6", &["SYS6", "SYS6B"])),
    );
    for (path, body) in [
        ("/v1/billing/sites/S5", json!({"name": "Five"})),
        ("/v1/billing/systems/SYS5A", json!({"site_id": "S5"})),
        ("/v1/billing/systems/SYS5B", json!({"site_id": "S5"})),
        ("/v1/billing/sites/S6", json!({"name": "Six"})),
        ("/v1/billing/systems/SYS6", json!({"site_id": "S6"})),
    ] {
        let a = svc.call(Method::PUT, path, &op, Some(body)).await;
        assert_eq!(a.status, 201, "{}", a.text);
    }
    let linked = svc
        .call(
            Method::POST,
            "/v1/links",
            &op,
            Some(
                json!({"connection_id": cid, "billing_site_id": "S5", "stages_site_no": old_site,
                "systems": [{"billing_system_id": "SYS5A", "stages_device_id": old_dev[0]},
                            {"billing_system_id": "SYS5B", "stages_device_id": old_dev[1]}]}),
            ),
        )
        .await;
    assert_eq!(linked.status, 201, "{}", linked.text);
    let other = svc
        .call(
            Method::POST,
            "/v1/links",
            &op,
            Some(
                json!({"connection_id": cid, "billing_site_id": "S6", "stages_site_no": taken_site,
                "systems": [{"billing_system_id": "SYS6", "stages_device_id": taken_dev[0]}]}),
            ),
        )
        .await;
    assert_eq!(other.status, 201, "{}", other.text);
    let site_link = text(
        &linked.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["kind"] == "site")
            .unwrap()["id"],
    );
    let link_path = format!("/v1/links/{site_link}");
    let got = svc.call(Method::GET, &link_path, &op, None).await;
    assert_eq!(got.status, 200, "{}", got.text);
    let etag = got.headers["etag"].to_str().unwrap().to_owned();
    let stages_before: Vec<Value> = [&old_site, &new_site, &taken_site]
        .iter()
        .map(|s| sim_site(&sim, s))
        .collect();
    let devices_before: Vec<Value> = old_dev
        .iter()
        .chain(&new_dev)
        .chain(&taken_dev)
        .map(|d| sim_device(&sim, d))
        .collect();
    let links_before = svc.call(Method::GET, "/v1/links", &op, None).await.body;

    let edit = |body: Value| {
        let svc = &svc;
        let op = op.clone();
        let link_path = link_path.clone();
        async move { svc.call(Method::PATCH, &link_path, &op, Some(body)).await }
    };
    // A Stages site linked to another billing site: refused.
    let a = edit(json!({"external_id": taken_site, "systems": [
        {"billing_system_id": "SYS5A", "stages_device_id": taken_dev[1]},
        {"billing_system_id": "SYS5B", "stages_device_id": taken_dev[0]}]}))
    .await;
    a.assert_problem(409);
    // A device of another site, and a linked system left without a device: refused.
    let a = edit(json!({"external_id": new_site, "systems": [
        {"billing_system_id": "SYS5A", "stages_device_id": old_dev[0]},
        {"billing_system_id": "SYS5B", "stages_device_id": new_dev[0]}]}))
    .await;
    assert_eq!(a.assert_problem(422), "validation");
    assert_eq!(
        a.body["errors"][0]["field"], "systems[0].stages_device_id",
        "{}",
        a.text
    );
    let a = edit(json!({"external_id": new_site, "systems": [
        {"billing_system_id": "SYS5A", "stages_device_id": new_dev[0]}]}))
    .await;
    assert_eq!(a.assert_problem(422), "validation");
    assert!(a.text.contains("SYS5B"), "{}", a.text);
    // Nothing moved, on either side.
    let stages_after: Vec<Value> = [&old_site, &new_site, &taken_site]
        .iter()
        .map(|s| sim_site(&sim, s))
        .collect();
    assert_eq!(stages_after, stages_before);
    let devices_after: Vec<Value> = old_dev
        .iter()
        .chain(&new_dev)
        .chain(&taken_dev)
        .map(|d| sim_device(&sim, d))
        .collect();
    assert_eq!(devices_after, devices_before);
    assert_eq!(
        svc.call(Method::GET, "/v1/links", &op, None).await.body,
        links_before
    );

    // The edit, systems crossed over to the new site's devices.
    let edited = svc
        .req(Method::PATCH, &link_path, &op)
        .header("if-match", &etag)
        .json(&json!({"external_id": new_site, "systems": [
            {"billing_system_id": "SYS5A", "stages_device_id": new_dev[1]},
            {"billing_system_id": "SYS5B", "stages_device_id": new_dev[0]}]}))
        .send()
        .await
        .unwrap();
    let edited = Answer::from(edited).await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    let now_points: BTreeMap<String, String> = edited.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (text(&l["billing_id"]), text(&l["external_id"])))
        .collect();
    assert_eq!(
        now_points,
        BTreeMap::from([
            ("S5".to_owned(), new_site.clone()),
            ("SYS5A".to_owned(), new_dev[1].clone()),
            ("SYS5B".to_owned(), new_dev[0].clone()),
        ])
    );
    // Stages: the billing ids moved.
    assert_eq!(sim_site(&sim, &new_site)["billing_id"], "S5");
    assert_eq!(sim_site(&sim, &old_site)["billing_id"], Value::Null);
    assert_eq!(sim_device(&sim, &new_dev[1])["billing_id"], "SYS5A");
    assert_eq!(sim_device(&sim, &new_dev[0])["billing_id"], "SYS5B");
    for d in &old_dev {
        assert_eq!(sim_device(&sim, d)["billing_id"], Value::Null, "{d}");
    }
    assert_eq!(sim_site(&sim, &taken_site)["billing_id"], "S6");
    // The service: the link, the billing site, the unlinked list, the audit.
    let got = svc.call(Method::GET, &link_path, &op, None).await;
    assert_eq!(got.body["external_id"], new_site.as_str());
    let billing = svc
        .call(Method::GET, "/v1/billing/sites/S5", &op, None)
        .await;
    assert_eq!(billing.body["links"][0]["external_id"], new_site.as_str());
    let unlinked = svc
        .call(
            Method::GET,
            &format!("/v1/connections/{cid}/stages/sites?unlinked=true&page_size=500"),
            &op,
            None,
        )
        .await;
    let unlinked: BTreeSet<String> = unlinked.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| text(&s["site_no"]))
        .collect();
    assert_eq!(unlinked, BTreeSet::from([old_site.clone()]));
    let trail = audit(&svc, &op, "&subject=S5").await;
    assert_eq!(trail[0]["action"], "edit_link", "{trail:#?}");
    assert_eq!(trail[0]["before"]["external_id"], old_site.as_str());
    assert_eq!(trail[0]["after"]["external_id"], new_site.as_str());
    assert_eq!(trail[0]["actor"], "olivia");
    // The old ETag is stale now.
    let stale = svc
        .req(Method::PATCH, &link_path, &op)
        .header("if-match", &etag)
        .json(&json!({"external_id": old_site, "systems": [
            {"billing_system_id": "SYS5A", "stages_device_id": old_dev[0]},
            {"billing_system_id": "SYS5B", "stages_device_id": old_dev[1]}]}))
        .send()
        .await
        .unwrap();
    Answer::from(stale).await.assert_problem(412);
    assert_eq!(sim_site(&sim, &new_site)["billing_id"], "S5");

    // Sync follows the new site: its values are the Stages side of the diff,
    // and Auto Sync pushes there, not to the old one.
    let diff = svc
        .call(Method::GET, &format!("{link_path}/diff"), &op, None)
        .await;
    assert_eq!(diff.status, 200, "{}", diff.text);
    let name = diff.body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "name")
        .unwrap()
        .clone();
    assert_eq!(name["external"], "New site", "{}", diff.text);
    let a = svc
        .call(
            Method::PUT,
            "/v1/billing/sites/S5",
            &op,
            Some(json!({"name": "Five", "info": "Moved to the new site"})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    svc.quiesce(&op, &[&sim]).await;
    assert_eq!(sim_site(&sim, &new_site)["info"], "Moved to the new site");
    assert_eq!(sim_site(&sim, &old_site)["info"], stages_before[0]["info"]);
}

// ---- S13 ------------------------------------------------------------------

/// S13: a billing site linked on two connections is unlinked on one. Its
/// later changes reach the other connection's Stages (one push per record)
/// and not a single request reaches the unlinked one's; no job is queued for
/// the removed links; the unlinked Stages records keep their values and
/// billing ids. Linked again, the same connection gets the next change.
async fn a_change_after_an_unlink_is_not_pushed(backend: Backend) {
    let sim_a = start_sim(0).await;
    let sim_b = start_sim(0).await;
    let svc = Service::in_process(backend, quick_jobs()).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let a = svc
        .stages_connection_named(&admin, "Stages A", &sim_a)
        .await;
    let b = svc
        .stages_connection_named(&admin, "Stages B", &sim_b)
        .await;
    let site = json!({"name": "Lovelace home", "address1": "12 Elm St", "city": "Columbus",
        "state": "Ohio", "zip": "43004", "phone": "(614) 555-0101"});
    svc.call(Method::PUT, "/v1/billing/sites/S1", &op, Some(site.clone()))
        .await;
    svc.call(
        Method::PUT,
        "/v1/billing/systems/SYS1",
        &op,
        Some(json!({"site_id": "S1", "location": "Hall"})),
    )
    .await;
    let mut pushed = BTreeMap::new();
    for cid in [&a, &b] {
        // The same transmitter code on both: billing's system number stays put.
        let p = svc
            .call(
                Method::POST,
                &format!("/v1/connections/{cid}/push"),
                &op,
                Some(json!({"billing_site_id": "S1",
                    "systems": [{"billing_system_id": "SYS1", "device": {"transmitter_code": "6640001"}}]})),
            )
            .await;
        assert_eq!(p.status, 201, "{}", p.text);
        let r = p.body["records"].as_array().unwrap();
        pushed.insert(
            cid.clone(),
            (
                text(&r[0]["external_id"]),
                text(&r[1]["external_id"]),
                text(&r[0]["link_id"]),
                text(&r[1]["link_id"]),
            ),
        );
    }
    let (a_site, a_device, a_site_link, a_system_link) = pushed[&a].clone();
    let (b_site, _, b_site_link, b_system_link) = pushed[&b].clone();
    svc.quiesce(&op, &[&sim_a, &sim_b]).await;
    let jobs_before: BTreeSet<String> = jobs(&svc, &op, "")
        .await
        .iter()
        .map(|j| text(&j["id"]))
        .collect();

    let removed = svc
        .call(
            Method::DELETE,
            &format!("/v1/links/{a_site_link}"),
            &op,
            None,
        )
        .await;
    assert_eq!(removed.status, 200, "{}", removed.text);
    let removed_ids: BTreeSet<String> = removed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| text(&l["id"]))
        .collect();
    assert_eq!(
        removed_ids,
        BTreeSet::from([a_site_link.clone(), a_system_link.clone()])
    );
    let a_requests = sim_a.state().stats();
    let b_site_patches = sim_b.state().request_count("PATCH /api/v1/sites/{site_no}");
    let b_device_patches = sim_b
        .state()
        .request_count("PATCH /api/v1/devices/{device_id}");
    let a_site_before = sim_site(&sim_a, &a_site);
    let a_device_before = sim_device(&sim_a, &a_device);

    // Billing changes the site and the system.
    let mut changed = site.clone();
    changed["address1"] = json!("99 Oak Ave");
    let put = svc
        .call(Method::PUT, "/v1/billing/sites/S1", &op, Some(changed))
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    let put = svc
        .call(
            Method::PUT,
            "/v1/billing/systems/SYS1",
            &op,
            Some(json!({"site_id": "S1", "system_number": "6640001", "location": "Garage"})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    // The linked connection gets them; then all is quiet.
    let what = "B's Stages to have the new address";
    svc.eventually(what, STEP_LIMIT, || async {
        (sim_site(&sim_b, &b_site)["address1"] == "99 Oak Ave").then_some(())
    })
    .await;
    svc.quiesce(&op, &[&sim_a, &sim_b]).await;
    // The unlinked connection's Stages got no request at all.
    let a_after = sim_a.state().stats();
    assert_eq!(
        a_after.total_requests, a_requests.total_requests,
        "requests after the unlink: {:?} (before: {:?})",
        a_after.requests, a_requests.requests
    );
    assert_eq!(sim_site(&sim_a, &a_site), a_site_before);
    assert_eq!(sim_device(&sim_a, &a_device), a_device_before);
    assert_eq!(sim_site(&sim_a, &a_site)["billing_id"], "S1");
    assert_eq!(sim_site(&sim_a, &a_site)["address1"], "12 Elm St");
    // The linked one got one push per record, no more.
    assert_eq!(
        sim_b.state().request_count("PATCH /api/v1/sites/{site_no}") - b_site_patches,
        1
    );
    assert_eq!(
        sim_b
            .state()
            .request_count("PATCH /api/v1/devices/{device_id}")
            - b_device_patches,
        1
    );
    // Exactly one job per record, both for B's links, none for the removed ones.
    let new_jobs: Vec<Value> = jobs(&svc, &op, "")
        .await
        .into_iter()
        .filter(|j| !jobs_before.contains(&text(&j["id"])))
        .collect();
    let pushed_links: BTreeSet<String> = new_jobs
        .iter()
        .map(|j| {
            assert_eq!(j["kind"], "auto_sync_push", "{new_jobs:#?}");
            assert_eq!(j["state"], "succeeded", "{new_jobs:#?}");
            text(&j["summary"]["link_id"])
        })
        .collect();
    assert_eq!(new_jobs.len(), 2, "{new_jobs:#?}");
    assert_eq!(
        pushed_links,
        BTreeSet::from([b_site_link.clone(), b_system_link.clone()])
    );
    // The removed link is gone for sync too.
    svc.call(
        Method::GET,
        &format!("/v1/links/{a_site_link}/diff"),
        &op,
        None,
    )
    .await
    .assert_problem(404);
    let billing = svc
        .call(Method::GET, "/v1/billing/sites/S1", &op, None)
        .await;
    let on: Vec<String> = billing.body["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| text(&l["connection_id"]))
        .collect();
    assert_eq!(on, [b.as_str()]);

    // Linked again on A, the next change is pushed to A as well.
    let again = svc
        .call(
            Method::POST,
            "/v1/links",
            &op,
            Some(
                json!({"connection_id": a, "billing_site_id": "S1", "stages_site_no": a_site,
                "systems": [{"billing_system_id": "SYS1", "stages_device_id": a_device}]}),
            ),
        )
        .await;
    assert_eq!(again.status, 201, "{}", again.text);
    let mut changed = site.clone();
    changed["address1"] = json!("1 Relinked Rd");
    svc.call(Method::PUT, "/v1/billing/sites/S1", &op, Some(changed))
        .await;
    svc.quiesce(&op, &[&sim_a, &sim_b]).await;
    assert_eq!(sim_site(&sim_a, &a_site)["address1"], "1 Relinked Rd");
    assert_eq!(sim_site(&sim_b, &b_site)["address1"], "1 Relinked Rd");
}

// ---- S14 ------------------------------------------------------------------

/// Every item of a live Stages view, paging through it `page_size` at a time.
async fn all_pages(svc: &Service, who: &Who, path: &str, page_size: usize) -> Vec<Value> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut p = format!("{path}?page_size={page_size}");
        if let Some(t) = &token {
            p.push_str(&format!("&page_token={t}"));
        }
        let a = svc.call(Method::GET, &p, who, None).await;
        assert_eq!(a.status, 200, "{}", a.text);
        let items = a.body["items"].as_array().unwrap();
        assert!(items.len() <= page_size);
        all.extend(items.iter().cloned());
        match a.body["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return all,
        }
    }
}

fn typed<T: serde::de::DeserializeOwned>(items: &[Value]) -> Vec<T> {
    items
        .iter()
        .map(|i| serde_json::from_value(i.clone()).unwrap_or_else(|e| panic!("{e}: {i}")))
        .collect()
}

/// S14: the notes and history (of a site, of a device) the service shows are
/// the records Stages holds, value for value and in Stages' order, read live
/// (a note or signal added in Stages shows on the next read); a contact and a
/// zone created through the service arrive in Stages with the values given.
async fn notes_and_history_are_what_stages_holds(backend: Backend) {
    let sim = start_sim(3).await;
    let svc = Service::in_process(backend, Vec::new()).await;
    let admin = Who::admin("acme");
    let viewer = Who::new("acme", "vic", "viewer");
    let op = Who::new("acme", "olivia", "operator");
    let cid = svc.stages_connection_named(&admin, "Stages", &sim).await;
    let authority = stages_sim::lookups::codes("authorities")[0];
    let site_no = sim.state().sites()[0].site_no.clone();
    let device_id = text(&to_json(&sim.state().devices(&site_no)[0])["device_id"]);
    let st = format!("/v1/connections/{cid}/stages");
    let now = chrono::Utc::now();
    // A note with a validity window, and a signal, besides the seeded ones.
    sim.state()
        .with_db(|db| {
            db.create_note(
                &site_no,
                serde_json::from_value(json!({"text": "Gate code changes monthly",
                    "effective_at": now - chrono::Duration::days(1),
                    "expire_at": now + chrono::Duration::days(30)}))
                .unwrap(),
                now,
            )
        })
        .unwrap();
    sim.state()
        .add_signal(&device_id, "E130", "Burglary zone 2", Some(2))
        .unwrap();
    let stages_notes = || sim.state().notes(&site_no);
    // Stages lists history oldest first; the service shows it newest first.
    let stages_site_history = || {
        let mut h = sim
            .state()
            .with_db(|db| db.site_history(&site_no, None, None, chrono::Utc::now()))
            .unwrap();
        h.reverse();
        h
    };
    let stages_device_history = || {
        let mut h = sim.state().history(&device_id);
        h.reverse();
        h
    };
    assert!(stages_notes().len() >= 2);
    assert!(stages_device_history().len() >= 3);

    let notes: Vec<stages_sim::wire::Note> =
        typed(&all_pages(&svc, &viewer, &format!("{st}/sites/{site_no}/notes"), 1).await);
    assert_eq!(notes, stages_notes());
    let history: Vec<stages_sim::wire::HistoryEntry> =
        typed(&all_pages(&svc, &viewer, &format!("{st}/sites/{site_no}/history"), 4).await);
    assert_eq!(history, stages_site_history());
    assert!(history.iter().any(|h| h.event_code == "E130"
        && h.description == "Burglary zone 2"
        && h.point == Some(2)));
    let device_history: Vec<stages_sim::wire::HistoryEntry> = typed(
        &all_pages(
            &svc,
            &viewer,
            &format!("{st}/devices/{device_id}/history"),
            2,
        )
        .await,
    );
    assert_eq!(device_history, stages_device_history());

    // Live: what Stages adds shows on the next read.
    sim.state()
        .with_db(|db| {
            db.create_note(
                &site_no,
                serde_json::from_value(json!({"text": "Dog is friendly"})).unwrap(),
                chrono::Utc::now(),
            )
        })
        .unwrap();
    sim.state()
        .add_signal(&device_id, "R401", "Closing by user 3", None)
        .unwrap();
    let notes: Vec<stages_sim::wire::Note> =
        typed(&all_pages(&svc, &viewer, &format!("{st}/sites/{site_no}/notes"), 50).await);
    assert_eq!(notes, stages_notes());
    assert_eq!(notes.last().unwrap().text, "Dog is friendly");
    let device_history: Vec<stages_sim::wire::HistoryEntry> = typed(
        &all_pages(
            &svc,
            &viewer,
            &format!("{st}/devices/{device_id}/history"),
            50,
        )
        .await,
    );
    assert_eq!(device_history, stages_device_history());
    assert!(device_history.iter().any(|h| h.event_code == "R401"));

    // Added through the service: a contact and a zone arrive in Stages as given.
    let contact = svc
        .call(
            Method::POST,
            &format!("{st}/sites/{site_no}/contacts"),
            &op,
            Some(json!({"name": "Alan Turing", "relation": "Neighbour", "authority": authority,
                "phones": [{"kind": "mobile", "number": "614-555-0177"}], "email": "alan@example.com",
                "has_keys": true, "ecv": true, "pin": "2468"})),
        )
        .await;
    assert_eq!(contact.status, 201, "{}", contact.text);
    let contact_id = text(&contact.body["contact_id"]);
    let held = sim
        .state()
        .contacts(&site_no)
        .into_iter()
        .find(|c| c.contact_id == contact_id)
        .expect("the contact is in Stages");
    assert_eq!(held.fields.name, "Alan Turing");
    assert_eq!(held.fields.relation, "Neighbour");
    assert_eq!(held.fields.authority, authority);
    assert_eq!(held.fields.email, "alan@example.com");
    assert_eq!(
        to_json(&held.fields.phones),
        json!([{"kind": "mobile", "number": "614-555-0177"}])
    );
    assert!(held.fields.has_keys && held.fields.ecv && held.has_pin);
    assert_eq!(
        sim.state()
            .with_db(|db| db.contact_pin(&site_no, &contact_id)),
        Some("2468".to_owned())
    );
    let zone = svc
        .call(
            Method::POST,
            &format!("{st}/devices/{device_id}/configurations"),
            &op,
            Some(
                json!({"point": 42, "area": "2", "event_code": "BA", "description": "Garage door"}),
            ),
        )
        .await;
    assert_eq!(zone.status, 201, "{}", zone.text);
    let config_id = text(&zone.body["config_id"]);
    let held = sim
        .state()
        .configurations(&device_id)
        .into_iter()
        .find(|c| c.config_id == config_id)
        .expect("the zone is in Stages");
    assert_eq!(
        to_json(&held.fields),
        json!({"point": 42, "area": "2", "event_code": "BA", "description": "Garage door"})
    );
    // The contact list the service shows is Stages' list, PINs never shown.
    let contacts = all_pages(&svc, &viewer, &format!("{st}/sites/{site_no}/contacts"), 50).await;
    assert!(!serde_json::to_string(&contacts).unwrap().contains("2468"));
    let shown: Vec<String> = contacts.iter().map(|c| text(&c["contact_id"])).collect();
    let held: Vec<String> = sim
        .state()
        .contacts(&site_no)
        .iter()
        .map(|c| c.contact_id.clone())
        .collect();
    assert_eq!(shown, held);
}

// ---- A3 -------------------------------------------------------------------

const ADC_USER: &str = "adc-dealer";
const ADC_PASSWORD: &str = "adc-Passw0rd";

async fn alarm_com(svc: &Service, admin: &Who, adc: &adc_sim::Sim) -> String {
    let created = svc
        .call(
            Method::POST,
            "/v1/connections",
            admin,
            Some(json!({"provider": "alarm_com", "endpoint": adc.base_url()})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let cid = text(&created.body["id"]);
    let creds = svc
        .call(
            Method::PUT,
            &format!("/v1/connections/{cid}/credentials/dealer"),
            admin,
            Some(json!({"username": ADC_USER, "password": ADC_PASSWORD})),
        )
        .await;
    assert_eq!(creds.status, 200, "{}", creds.text);
    cid
}

/// Runs a user import to its end; returns (the run, outcome by support id, reason by support id).
async fn user_import(
    svc: &Service,
    who: &Who,
    cid: &str,
    filters: Value,
) -> (Value, BTreeMap<i64, String>, BTreeMap<i64, String>) {
    let a = svc
        .call(
            Method::POST,
            "/v1/imports",
            who,
            Some(json!({"connection_id": cid, "kind": "users", "filters": filters})),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text);
    let id = text(&a.body["id"]);
    let run = svc.wait_ended(who, &format!("/v1/imports/{id}")).await;
    assert_eq!(run["state"], "succeeded", "{run:#}");
    let mut outcomes = BTreeMap::new();
    let mut reasons = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = format!("/v1/imports/{id}/items?page_size=500");
        if let Some(t) = &token {
            path.push_str(&format!("&page_token={t}"));
        }
        let a = svc.call(Method::GET, &path, who, None).await;
        assert_eq!(a.status, 200, "{}", a.text);
        for i in a.body["items"].as_array().unwrap() {
            let sid: i64 = text(&i["external_id"]).parse().unwrap();
            let earlier = outcomes.insert(sid, text(&i["outcome"]));
            assert!(earlier.is_none(), "each user once: {sid}");
            reasons.insert(sid, i["reason"].as_str().unwrap_or_default().to_owned());
        }
        match a.body["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    (run, outcomes, reasons)
}

fn having(outcomes: &BTreeMap<i64, String>, outcome: &str) -> BTreeSet<i64> {
    outcomes
        .iter()
        .filter(|(_, o)| o.as_str() == outcome)
        .map(|(id, _)| *id)
        .collect()
}

/// A3: the user import's support-id filter takes exactly the listed users
/// (an unknown id matches nobody), the sub-dealer filter any of the listed
/// sub-dealers (not the dealer's own users, who belong to none), both
/// together only users matching both; re-runs count users imported before as
/// such, and exactly the imported users exist on the billing side.
async fn user_import_filters_take_exactly_the_matching_users(backend: Backend) {
    let adc = adc_sim::Sim::start(adc_sim::SimConfig {
        username: ADC_USER.into(),
        password: ADC_PASSWORD.into(),
        seed_customers: 60,
        ..Default::default()
    })
    .await
    .expect("the Alarm.com simulator starts");
    // One of the dealer's own users (no sub-dealer).
    let own = adc
        .state()
        .with_store(|s| {
            s.add_rep(adc_sim::RepPatch {
                sub_dealer_id: Some(0),
                ..Default::default()
            })
        })
        .unwrap();
    let svc = Service::in_process(
        backend,
        vec![("CROSSLINK__ADC__REQUESTS_PER_SECOND".into(), "0".into())],
    )
    .await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let cid = alarm_com(&svc, &admin, &adc).await;
    let reps = adc.state().reps();
    let of_sub = |sub: i64| -> Vec<i64> {
        reps.iter()
            .filter(|r| r.sub_dealer_id == sub)
            .map(|r| r.support_id)
            .collect()
    };
    let all: BTreeSet<i64> = reps.iter().map(|r| r.support_id).collect();
    let (s201, s202, s203, s204, s205) = (
        of_sub(201),
        of_sub(202),
        of_sub(203),
        of_sub(204),
        of_sub(205),
    );
    for s in [&s201, &s202, &s203, &s204, &s205] {
        assert!(s.len() >= 2, "two users per sub-dealer at least: {reps:#?}");
    }

    // Support ids: exactly these, whatever their sub-dealer; 999999 is nobody.
    let first: BTreeSet<i64> = [s201[0], s202[0], s205[0], own.support_id].into();
    let list = first
        .iter()
        .map(|id| id.to_string())
        .chain(["999999".to_owned()])
        .collect::<Vec<_>>()
        .join(", ");
    let (run, outcomes, reasons) = user_import(&svc, &op, &cid, json!({"support_ids": list})).await;
    assert_eq!(having(&outcomes, "imported"), first, "{run:#}");
    assert_eq!(
        having(&outcomes, "filtered_out"),
        &all - &first,
        "{outcomes:?}"
    );
    assert_eq!(run["counts"]["seen"], all.len());
    assert_eq!(run["counts"]["imported"], first.len());
    for id in &all - &first {
        assert!(
            reasons[&id].contains("support id"),
            "{id}: {}",
            reasons[&id]
        );
    }

    // Sub-dealers 201 and 203: theirs only; one was imported before.
    let subs: BTreeSet<i64> = s201.iter().chain(&s203).copied().collect();
    let (run, outcomes, reasons) =
        user_import(&svc, &op, &cid, json!({"sub_dealer_ids": [201, 203]})).await;
    assert_eq!(having(&outcomes, "imported"), &subs - &first, "{run:#}");
    assert_eq!(
        having(&outcomes, "already_imported"),
        BTreeSet::from([s201[0]])
    );
    assert_eq!(having(&outcomes, "filtered_out"), &all - &subs);
    assert_eq!(run["counts"]["already_imported"], 1);
    assert!(
        reasons[&s204[0]].contains("sub-dealer 204"),
        "{}",
        reasons[&s204[0]]
    );
    assert!(
        reasons[&own.support_id].contains("no sub-dealer"),
        "{}",
        reasons[&own.support_id]
    );

    // Both filters: a user must match both.
    let (run, outcomes, _) = user_import(
        &svc,
        &op,
        &cid,
        json!({"support_ids": [s204[0], s202[1]], "sub_dealer_ids": [204]}),
    )
    .await;
    assert_eq!(
        having(&outcomes, "imported"),
        BTreeSet::from([s204[0]]),
        "{run:#}"
    );
    assert_eq!(having(&outcomes, "filtered_out").len(), all.len() - 1);

    // Billing has exactly the users the runs imported.
    let imported: BTreeSet<i64> = first
        .iter()
        .chain(&subs)
        .chain([&s204[0]])
        .copied()
        .collect();
    for id in &all {
        let a = svc
            .call(
                Method::GET,
                &format!("/v1/billing/users/adc-user-{id}"),
                &op,
                None,
            )
            .await;
        let expected = if imported.contains(id) { 200 } else { 404 };
        assert_eq!(a.status, expected, "user {id}: {}", a.text);
    }
}

// ---- B2 -------------------------------------------------------------------

/// One request the receiver got and what it answered.
#[derive(Clone)]
struct Delivery {
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
    answered: u16,
}

/// A webhook receiver on a free port answering the `script`ed statuses in
/// turn, then 200; it records every request.
async fn scripted_receiver(script: Vec<u16>) -> (String, Arc<Mutex<Vec<Delivery>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let log = log.clone();
            let script = script.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let request = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let mut headers = reqwest::header::HeaderMap::new();
                    for l in head.lines().skip(1) {
                        if let Some((k, v)) = l.split_once(':') {
                            headers.insert(
                                reqwest::header::HeaderName::from_bytes(k.trim().as_bytes())
                                    .unwrap(),
                                v.trim().parse().unwrap(),
                            );
                        }
                    }
                    let len = headers
                        .get("content-length")
                        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break Some((headers, buf[end + 4..end + 4 + len].to_vec()));
                    }
                };
                let Some((headers, body)) = request else {
                    return;
                };
                let answered = {
                    let mut log = log.lock().unwrap();
                    let answered = script.get(log.len()).copied().unwrap_or(200);
                    log.push(Delivery {
                        headers,
                        body,
                        answered,
                    });
                    answered
                };
                let _ = sock
                    .write_all(
                        format!(
                            "HTTP/1.1 {answered} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    (format!("http://{addr}/hook"), seen)
}

/// Checks a Standard Webhooks signature on its own (HMAC-SHA256 of
/// `id.timestamp.body` keyed with the secret's base64 part).
fn signature_valid(secret: &str, d: &Delivery) -> bool {
    use base64::Engine;
    use hmac::Mac;
    let b64 = base64::engine::general_purpose::STANDARD;
    let header = |name: &str| d.headers[name].to_str().unwrap().to_owned();
    let key = b64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", header("webhook-id"), header("webhook-timestamp")).as_bytes());
    mac.update(&d.body);
    let expected = b64.encode(mac.finalize().into_bytes());
    header("webhook-signature")
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

/// B2: a subscriber answering 503, then 500, then 200 gets the same event
/// (same id and body, each attempt validly signed with a current timestamp)
/// three times and acknowledges it exactly once; the delivery job ends
/// succeeded after three attempts, and a later event is delivered once at the
/// first attempt.
async fn a_webhook_answered_with_5xx_is_retried_and_delivered_once(backend: Backend) {
    let sim = start_sim(0).await;
    let svc = Service::in_process(backend, quick_jobs()).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let cid = svc.stages_connection_named(&admin, "Stages", &sim).await;
    let (url, seen) = scripted_receiver(vec![503, 500]).await;
    let sub = svc
        .call(
            Method::POST,
            "/v1/webhook-subscriptions",
            &admin,
            Some(json!({"url": url, "types": ["billing.system.updated"]})),
        )
        .await;
    assert_eq!(sub.status, 201, "{}", sub.text);
    let secret = text(&sub.body["secret"]);
    let sub_id = text(&sub.body["id"]);

    // A push sets the billing system's number: a change the service makes.
    let push = |site: &'static str, code: &'static str| {
        let svc = &svc;
        let op = op.clone();
        let cid = cid.clone();
        async move {
            for (path, body) in [
                (
                    format!("/v1/billing/sites/{site}"),
                    json!({"name": "Hooked"}),
                ),
                (
                    format!("/v1/billing/systems/SYS-{site}"),
                    json!({"site_id": site}),
                ),
            ] {
                let a = svc.call(Method::PUT, &path, &op, Some(body)).await;
                assert_eq!(a.status, 201, "{}", a.text);
            }
            let p = svc
                .call(
                    Method::POST,
                    &format!("/v1/connections/{cid}/push"),
                    &op,
                    Some(json!({"billing_site_id": site, "systems": [{"billing_system_id": format!("SYS-{site}"),
                        "device": {"transmitter_code": code}}]})),
                )
                .await;
            assert_eq!(p.status, 201, "{}", p.text);
        }
    };
    push("W1", "6650001").await;
    // The delivery job is written with the event: quiet means it has ended.
    svc.quiesce(&op, &[&sim]).await;

    let got = seen.lock().unwrap().clone();
    let answered: Vec<u16> = got.iter().map(|d| d.answered).collect();
    assert_eq!(
        answered,
        [503, 500, 200],
        "retried until a 2xx, then no more"
    );
    let id = got[0].headers["webhook-id"].to_str().unwrap().to_owned();
    for d in &got {
        assert_eq!(d.headers["webhook-id"], id.as_str(), "one event, one id");
        assert_eq!(d.body, got[0].body, "the same body each time");
        assert!(signature_valid(&secret, d), "a valid signature");
        let ts: i64 = d.headers["webhook-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (chrono::Utc::now().timestamp() - ts).abs() < 300,
            "a current timestamp: {ts}"
        );
    }
    let payload: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(payload["type"], "billing.system.updated");
    assert_eq!(payload["data"]["subject_id"], "SYS-W1");
    assert_eq!(
        payload["data"]["data"]["changed"]["system_number"],
        "6650001"
    );
    assert_eq!(
        id,
        format!("evt_{}", text(&payload["data"]["id"]).replace('-', ""))
    );
    // A forged signature does not pass the check above.
    let mut forged = got[2].clone();
    forged.body.push(b' ');
    assert!(!signature_valid(&secret, &forged));
    let deliveries = jobs(&svc, &op, "&kind=webhook_delivery").await;
    assert_eq!(deliveries.len(), 1, "{deliveries:#?}");
    assert_eq!(deliveries[0]["state"], "succeeded");
    assert_eq!(deliveries[0]["attempts"], 3);
    assert_eq!(deliveries[0]["summary"]["delivered"], id.as_str());
    let sub = svc
        .call(
            Method::GET,
            &format!("/v1/webhook-subscriptions/{sub_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(sub.body["status"], "active", "{}", sub.text);

    // The next event goes through at once, exactly once.
    push("W2", "6650002").await;
    svc.quiesce(&op, &[&sim]).await;
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].answered, 200);
    assert_ne!(got[3].headers["webhook-id"], id.as_str());
    assert!(signature_valid(&secret, &got[3]));
    let payload: Value = serde_json::from_slice(&got[3].body).unwrap();
    assert_eq!(payload["data"]["subject_id"], "SYS-W2");
}

// ---- B8 -------------------------------------------------------------------

/// B8: link changes made through one of two connections (push, edit link,
/// unlink, a reconcile takeover) and through the other (link) are each
/// audited with their connection's id, actor and time; `connection_id`
/// filters the trail to exactly one connection's entries, also combined with
/// `subject`; another dealer sees none of them.
async fn audit_entries_carry_their_connection_and_filter_by_it(backend: Backend) {
    let sim_a = start_sim(0).await;
    let sim_b = start_sim(0).await;
    let svc = Service::in_process(backend, quick_jobs()).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let a = svc
        .stages_connection_named(&admin, "Stages A", &sim_a)
        .await;
    let b = svc
        .stages_connection_named(&admin, "Stages B", &sim_b)
        .await;
    for (path, body) in [
        ("/v1/billing/sites/S1", json!({"name": "One"})),
        ("/v1/billing/systems/SYS1", json!({"site_id": "S1"})),
        ("/v1/billing/sites/S2", json!({"name": "Two"})),
        ("/v1/billing/systems/SYS2", json!({"site_id": "S2"})),
        ("/v1/billing/sites/S4", json!({"name": "Four"})),
        ("/v1/billing/systems/SYS4", json!({"site_id": "S4"})),
    ] {
        let r = svc.call(Method::PUT, path, &op, Some(body)).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);

    // Through A: push, edit the system link, unlink, and a reconcile takeover.
    let p = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{a}/push"),
            &op,
            Some(
                json!({"billing_site_id": "S1", "systems": [{"billing_system_id": "SYS1",
                "device": {"transmitter_code": "6660001"}}]}),
            ),
        )
        .await;
    assert_eq!(p.status, 201, "{}", p.text);
    let site_no = text(&p.body["records"][0]["external_id"]);
    let site_link = text(&p.body["records"][0]["link_id"]);
    let system_link = text(&p.body["records"][1]["link_id"]);
    let spare = sim_a.state().with_db(|db| {
        let d: stages_sim::wire::NewDevice =
            serde_json::from_value(json!({"transmitter_code": "6660002"})).unwrap();
        db.create_device(&site_no, d, chrono::Utc::now()).unwrap()
    });
    let spare = text(&to_json(&spare)["device_id"]);
    let e = svc
        .call(
            Method::PATCH,
            &format!("/v1/links/{system_link}"),
            &op,
            Some(json!({"external_id": spare})),
        )
        .await;
    assert_eq!(e.status, 200, "{}", e.text);
    let u = svc
        .call(Method::DELETE, &format!("/v1/links/{site_link}"), &op, None)
        .await;
    assert_eq!(u.status, 200, "{}", u.text);
    stages_site(
        &sim_a,
        "Older integration",
        &["6660004"],
        Some(("S4", &["SYS4"])),
    );
    let r = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{a}:reconcile"),
            &op,
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    svc.quiesce(&op, &[&sim_a, &sim_b]).await;
    let job = svc
        .call(
            Method::GET,
            &format!("/v1/jobs/{}", text(&r.body["id"])),
            &op,
            None,
        )
        .await;
    assert_eq!(job.body["state"], "succeeded", "{}", job.text);

    // Through B: a link of an existing Stages site.
    let (b_site, b_devices) = stages_site(&sim_b, "B site", &["6660011"], None);
    let l = svc
        .call(
            Method::POST,
            "/v1/links",
            &op,
            Some(
                json!({"connection_id": b, "billing_site_id": "S2", "stages_site_no": b_site,
                "systems": [{"billing_system_id": "SYS2", "stages_device_id": b_devices[0]}]}),
            ),
        )
        .await;
    assert_eq!(l.status, 201, "{}", l.text);
    let ended = chrono::Utc::now() + chrono::Duration::seconds(1);

    let actions = |entries: &[Value]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = entries
            .iter()
            .map(|e| (text(&e["action"]), text(&e["billing_id"])))
            .collect();
        v.sort();
        v
    };
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    let of_a = audit(&svc, &op, &format!("&connection_id={a}")).await;
    assert_eq!(
        actions(&of_a),
        [
            pair("edit_link", "SYS1"),
            pair("push", "S1"),
            pair("push", "SYS1"),
            // The push wrote the transmitter code to the billing system (B8).
            pair("push_to_billing", "SYS1"),
            pair("reconcile_link", "S4"),
            pair("reconcile_link", "SYS4"),
            pair("unlink", "S1"),
            pair("unlink", "SYS1"),
        ],
        "{of_a:#?}"
    );
    let of_b = audit(&svc, &op, &format!("&connection_id={b}")).await;
    assert_eq!(
        actions(&of_b),
        [pair("link", "S2"), pair("link", "SYS2")],
        "{of_b:#?}"
    );
    for (cid, entries) in [(&a, &of_a), (&b, &of_b)] {
        for e in entries {
            assert_eq!(e["connection_id"], cid.as_str(), "{e}");
            // A takeover is the reconcile job's, started by olivia.
            let actor = if e["action"] == "reconcile_link" {
                "system:reconcile (olivia)"
            } else {
                "olivia"
            };
            assert_eq!(e["actor"], actor, "{e}");
            let at: chrono::DateTime<chrono::Utc> =
                serde_json::from_value(e["at"].clone()).unwrap();
            assert!(started <= at && at <= ended, "{e}");
        }
    }
    // The whole trail is the two connections' entries, each naming its own.
    let everything = audit(&svc, &op, "").await;
    assert_eq!(everything.len(), of_a.len() + of_b.len());
    // Combined with a subject, newest first.
    let sys1 = audit(&svc, &op, &format!("&connection_id={a}&subject=SYS1")).await;
    let order: Vec<String> = sys1.iter().map(|e| text(&e["action"])).collect();
    assert_eq!(order, ["unlink", "edit_link", "push_to_billing", "push"]);
    assert_eq!(
        sys1[1]["before"]["external_id"],
        text(&p.body["records"][1]["external_id"]).as_str()
    );
    assert_eq!(sys1[1]["after"]["external_id"], spare.as_str());
    assert!(
        audit(&svc, &op, &format!("&connection_id={b}&subject=SYS1"))
            .await
            .is_empty()
    );
    // Another dealer sees nothing through the id.
    let globex = Who::new("globex", "gary", "viewer");
    assert!(audit(&svc, &globex, &format!("&connection_id={a}"))
        .await
        .is_empty());
}

// ---- B10 ------------------------------------------------------------------

/// B10: with `log.format = json` every line of the log is one JSON object;
/// the lines of a request (its access line, and what the request logged
/// while calling Stages) carry the `X-Request-Id` it was sent with; no line
/// holds a password, a token or another secret that passed through.
async fn json_logs_carry_the_request_id_and_no_secret(backend: Backend) {
    let sim = start_sim(0).await;
    let svc = Service::start_on(
        backend,
        vec![("CROSSLINK__LOG__FORMAT".into(), "json".into())],
    )
    .await;
    let admin = Who::admin("acme");
    let token = admin.token();
    let cid = svc
        .create_connection(&admin, "Stages", &sim.base_url(), "dealer")
        .await;
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let send = |method: Method, path: String, rid: String, body: Option<Value>| {
        let mut rb = svc
            .http
            .request(method, svc.url(&path))
            .bearer_auth(&token)
            .header("x-request-id", rid);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        async move { Answer::from(rb.send().await.unwrap()).await }
    };
    let rid_creds = format!("creds-{tag}");
    let a = send(
        Method::PUT,
        format!("/v1/connections/{cid}/credentials/dealer"),
        rid_creds.clone(),
        Some(json!({"username": SIM_USER, "password": SIM_PASSWORD})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.headers["x-request-id"], rid_creds.as_str());
    let rid_test = format!("test-{tag}");
    let t = send(
        Method::POST,
        format!("/v1/connections/{cid}:test"),
        rid_test.clone(),
        None,
    )
    .await;
    assert_eq!(t.body["outcome"], "ok", "{}", t.text);
    // A Stages failure: its cause is logged with the request id.
    sim.state()
        .add_fault(stages_sim::FaultRule::parse("GET /api/v1/sites=error:500").unwrap())
        .unwrap();
    let rid_fail = format!("fail-{tag}");
    let f = send(
        Method::GET,
        format!("/v1/connections/{cid}/stages/sites"),
        rid_fail.clone(),
        None,
    )
    .await;
    assert_eq!(f.status, 502, "{}", f.text);
    sim.state().clear_faults();
    let rotated = send(
        Method::POST,
        format!("/v1/connections/{cid}/inbound-credentials:rotate"),
        format!("rotate-{tag}"),
        None,
    )
    .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let inbound_secret = text(&rotated.body["secret"]);
    let sub = send(
        Method::POST,
        "/v1/webhook-subscriptions".to_owned(),
        format!("sub-{tag}"),
        Some(json!({"url": "http://127.0.0.1:9/hook"})),
    )
    .await;
    assert_eq!(sub.status, 201, "{}", sub.text);
    let webhook_secret = text(&sub.body["secret"]);
    // A refused token is not logged either.
    let forged = sign(
        json!({"sub": "x", "dealer": "acme", "roles": ["admin"], "exp": now() + 60,
        "iss": ISSUER, "aud": AUDIENCE}),
        "not-the-secret-0123456789abcdef",
    );
    let refused = svc
        .http
        .get(svc.url("/v1/connections"))
        .bearer_auth(&forged)
        .header("x-request-id", format!("forged-{tag}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let rid_of = |line: &Value| -> Vec<String> {
        let mut ids: Vec<String> = line["spans"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(std::iter::once(&line["span"]))
            .filter_map(|s| s["request_id"].as_str().map(str::to_owned))
            .collect();
        ids.dedup();
        ids
    };
    // The access line is written as the answer goes out: wait for the last.
    let forged_id = format!("forged-{tag}");
    let lines: Vec<Value> = svc
        .eventually("the forged request's access line", STEP_LIMIT, || async {
            let lines: Vec<Value> = svc
                .logs()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    let v: Value = serde_json::from_str(l)
                        .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {l}"));
                    assert!(v.is_object(), "a log line is not an object: {l}");
                    v
                })
                .collect();
            lines
                .iter()
                .any(|l| {
                    l["fields"]["message"] == "answered"
                        && l["span"]["request_id"] == forged_id.as_str()
                })
                .then_some(lines)
        })
        .await;
    let raw = svc.logs();
    let of = |rid: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| rid_of(l).iter().any(|r| r == rid))
            .collect()
    };
    for (rid, status) in [(&rid_creds, 200), (&rid_test, 200), (&rid_fail, 502)] {
        let mine = of(rid);
        let access: Vec<&&Value> = mine
            .iter()
            .filter(|l| l["fields"]["message"] == "answered")
            .collect();
        assert_eq!(access.len(), 1, "one access line for {rid}: {mine:#?}");
        assert_eq!(access[0]["fields"]["status"], status, "{rid}");
        for l in &mine {
            assert_eq!(rid_of(l), [rid.to_owned()], "one request's line: {l}");
            assert!(l["timestamp"].is_string() && l["level"].is_string(), "{l}");
        }
    }
    // What the failing request logged about Stages carries its id.
    let fail_lines = of(&rid_fail);
    assert!(
        fail_lines.len() >= 2
            && fail_lines
                .iter()
                .any(|l| l.to_string().contains("500") && l["fields"]["message"] != "answered"),
        "the Stages failure is logged with the request id: {fail_lines:#?}"
    );
    // Any line mentioning a request id belongs to that request.
    for l in &lines {
        let s = l.to_string();
        for rid in [&rid_creds, &rid_test, &rid_fail] {
            if s.contains(rid.as_str()) {
                assert!(rid_of(l).contains(rid), "{l}");
            }
        }
    }
    use base64::Engine;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{SIM_USER}:{SIM_PASSWORD}"));
    for (what, secret) in [
        ("the Stages password", SIM_PASSWORD),
        ("the Basic credentials", basic.as_str()),
        ("the bearer token", token.as_str()),
        ("a refused token", forged.as_str()),
        ("the JWT secret", JWT_SECRET),
        ("the encryption key", ENCRYPTION_KEY),
        ("the inbound secret", inbound_secret.as_str()),
        ("the webhook secret", webhook_secret.as_str()),
    ] {
        assert!(!raw.contains(secret), "{what} is in the log");
    }
}

on_both_backends!(
    without_own_credentials_no_stages_operation_reaches_stages,
    a_site_link_is_edited_to_another_stages_site,
    a_change_after_an_unlink_is_not_pushed,
    notes_and_history_are_what_stages_holds,
    user_import_filters_take_exactly_the_matching_users,
    a_webhook_answered_with_5xx_is_retried_and_delivered_once,
    audit_entries_carry_their_connection_and_filter_by_it,
    json_logs_carry_the_request_id_and_no_secret,
);
