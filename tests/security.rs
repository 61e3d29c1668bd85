//! End to end: tokens, roles, tenancy, hostile input, and secrets that must
//! never be readable at rest, in an answer or in a log line.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use support::*;

/// Every operation of the document that needs a token, as (method, path) with ids filled in.
fn protected_operations(connection_id: &str) -> Vec<(Method, String)> {
    let doc: Value = serde_json::from_str(&api::openapi::document()).unwrap();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("security").is_none() {
                continue;
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            ops.push((method, fill_path(path, connection_id)));
        }
    }
    assert!(ops.len() >= 13, "the sweep covers the /v1 routes: {ops:?}");
    ops
}

/// The connection id where the path names one, a made-up id elsewhere.
fn fill_path(template: &str, connection_id: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').unwrap() + start;
        out.push_str(&rest[..start]);
        out.push_str(match &rest[start + 1..end] {
            "connection_id" => connection_id,
            "link_id" | "job_id" => "01a20000-0000-7000-8000-000000000000",
            "list" => "regions",
            _ => "X-1",
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A well-formed body for each operation that takes one, so what is tested is
/// the token or the tenancy, not the body.
fn body_for(method: &Method, path: &str) -> Option<Value> {
    // Tomorrow in any zone a site may have: the end is never past.
    let window = clock::window("UTC", chrono::Duration::days(2), chrono::Duration::hours(1));
    match *method {
        Method::POST if path.ends_with("/v1/connections") => Some(
            json!({"provider": "stages", "name": format!("n-{}", uuid::Uuid::now_v7()), "endpoint": "http://127.0.0.1:9"}),
        ),
        Method::POST if path.ends_with("/push") => Some(json!({"billing_site_id": "S1"})),
        Method::POST if path.ends_with("/wizard:pull") => {
            Some(json!({"site_no": "1", "customer": {"customer_id": "C1"}}))
        }
        Method::POST if path.ends_with("/wizard:push") => {
            Some(json!({"customer": {"customer_id": "C1"}, "site": {"name": "N"}}))
        }
        Method::POST if path.ends_with("/isp-accounts") => {
            Some(json!({"billing_customer_id": "C1", "action": "create_customer"}))
        }
        Method::POST if path.ends_with(":change-service-plan") => Some(json!({"package_id": 1})),
        Method::POST if path.ends_with("/v1/links") => {
            Some(json!({"connection_id": path_connection(path),
            "billing_site_id": "S1", "stages_site_no": "1", "systems": [{"billing_system_id": "Y", "stages_device_id": "D"}]}))
        }
        Method::POST if path.ends_with("/contacts") => Some(json!({"name": "N"})),
        Method::POST if path.ends_with("/configurations") => Some(json!({"point": 1})),
        Method::POST if path.ends_with("/tests") => Some(window),
        Method::POST if path.ends_with(":sync") => Some(json!({})),
        Method::POST if path.ends_with(":account-sync") => Some(json!({"use": "billing"})),
        Method::POST if path.ends_with("/v1/webhook-subscriptions") => {
            Some(json!({"url": "http://127.0.0.1:9/hook"}))
        }
        Method::PATCH if path.contains("/v1/links/") => Some(json!({"external_id": "D-1"})),
        Method::PATCH if path.contains("/configurations/") => Some(json!({"description": "D"})),
        Method::PATCH if path.contains("/stages/devices/") => Some(json!({"location": "L"})),
        Method::PATCH if path.contains("/contacts/") => Some(json!({"relation": "R"})),
        Method::PATCH if path.contains("/webhook-subscriptions/") => Some(json!({"types": []})),
        Method::PATCH => Some(json!({"auto_sync": false})),
        Method::PUT if path.contains("/credentials/") => {
            Some(json!({"username": "u", "password": "p"}))
        }
        Method::PUT if path.contains("/billing/customers/") => Some(json!({"last_name": "L"})),
        Method::PUT if path.contains("/billing/sites/") => Some(json!({"name": "N"})),
        Method::PUT if path.contains("/billing/systems/") => Some(json!({"site_id": "S1"})),
        Method::PUT if path.contains("/billing/users/") => Some(json!({"last_name": "L"})),
        _ => None,
    }
}

fn path_connection(_path: &str) -> String {
    "01a20000-0000-7000-8000-000000000001".into()
}

#[tokio::test]
async fn every_v1_route_rejects_bad_tokens() {
    let svc = Service::start().await;
    let admin = Who::admin("acme");
    let cid = svc
        .create_connection(&admin, "Stages", "http://127.0.0.1:9", "dealer")
        .await;
    let claims = |over: Value| {
        let mut c = json!({"sub": "u", "dealer": "acme", "roles": ["admin"],
            "exp": now() + 600, "iat": now(), "iss": ISSUER, "aud": AUDIENCE});
        for (k, v) in over.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let bad_tokens = [
        ("none", None),
        (
            "expired",
            Some(sign(claims(json!({"exp": now() - 3600})), JWT_SECRET)),
        ),
        (
            "wrong signature",
            Some(sign(
                claims(json!({})),
                "another-secret-entirely-0123456789",
            )),
        ),
        (
            "wrong audience",
            Some(sign(claims(json!({"aud": "someone-else"})), JWT_SECRET)),
        ),
        (
            "wrong issuer",
            Some(sign(claims(json!({"iss": "someone-else"})), JWT_SECRET)),
        ),
        ("garbage", Some("not.a.jwt".to_owned())),
        (
            "not yet valid (nbf an hour ahead)",
            Some(sign(claims(json!({"nbf": now() + 3600})), JWT_SECRET)),
        ),
    ];
    for (method, path) in protected_operations(&cid) {
        for (why, token) in &bad_tokens {
            let mut rb = svc.http.request(method.clone(), svc.url(&path));
            if let Some(t) = token {
                rb = rb.bearer_auth(t);
            }
            if let Some(b) = body_for(&method, &path) {
                rb = rb.json(&b);
            }
            let a = Answer::from(rb.send().await.unwrap()).await;
            assert_eq!(
                a.status, 401,
                "{method} {path} with {why} token: {}",
                a.text
            );
            assert_eq!(a.content_type(), "application/problem+json");
            assert_eq!(a.body["instance"], path.split('?').next().unwrap());
        }
    }
}

/// Every `/v1` operation of the document with the role its security
/// requirement names (OpenAPI 3.1: a scheme's list may hold the role names
/// an operation needs), its required query parameters in the template. An
/// operation that names no role fails the sweep.
fn operations_with_roles() -> Vec<(Method, String, &'static str)> {
    let doc: Value = serde_json::from_str(&api::openapi::document()).unwrap();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        // Callbacks carry the connection's own credentials, not a token.
        if path.starts_with("/v1/webhooks/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let Some(security) = op.get("security") else {
                assert!(!path.starts_with("/v1/"), "{method} {path} needs no token");
                continue;
            };
            let role = match security[0]["bearer"][0].as_str() {
                Some("viewer") => "viewer",
                Some("operator") => "operator",
                Some("admin") => "admin",
                other => panic!("{method} {path} names no role ({other:?}): {security}"),
            };
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let query: Vec<String> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query" && p["required"] == true)
                .map(|p| format!("{0}={{{0}}}", p["name"].as_str().unwrap()))
                .collect();
            let path = if query.is_empty() {
                path.clone()
            } else {
                format!("{path}?{}", query.join("&"))
            };
            ops.push((method, path, role));
        }
    }
    assert!(
        ops.len() >= 70,
        "the sweep covers the /v1 routes: {}",
        ops.len()
    );
    ops
}

const ROLES: [&str; 3] = ["viewer", "operator", "admin"];

/// acme's records, one of each kind a path can name.
struct Acme {
    ids: std::collections::HashMap<&'static str, String>,
    stages_cid: String,
    adc_cid: String,
}

impl Acme {
    /// The path with acme's ids in it.
    fn fill(&self, template: &str) -> String {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            let end = rest[start..].find('}').unwrap() + start;
            out.push_str(&rest[..start]);
            let name = &rest[start + 1..end];
            let alarm_com = [
                "isp-accounts",
                "service-plans",
                "builder-programs",
                "callback-health",
                "billing-notifications",
                "/v1/imports",
            ];
            let value = match name {
                "connection_id" if alarm_com.iter().any(|p| template.contains(p)) => {
                    self.adc_cid.clone()
                }
                "connection_id" => self.stages_cid.clone(),
                "list" => "regions".to_owned(),
                other => self
                    .ids
                    .get(other)
                    .unwrap_or_else(|| panic!("no acme record for {{{other}}} in {template}"))
                    .clone(),
            };
            out.push_str(&value);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// A well-formed body for the operation, naming acme's records.
    fn body(&self, method: &Method, path: &str) -> Option<Value> {
        match *method {
            Method::POST if path.ends_with("/isp-accounts") => Some(
                json!({"billing_customer_id": "C-2", "action": "link", "customer_id": self.ids["spare_adc_customer"].parse::<i64>().unwrap()}),
            ),
            Method::POST if path.ends_with(":change-service-plan") => {
                Some(json!({"package_id": self.ids["other_package"].parse::<i64>().unwrap()}))
            }
            Method::POST if path.ends_with("/v1/imports") => {
                Some(json!({"connection_id": self.adc_cid, "kind": "customers"}))
            }
            Method::POST if path.ends_with("/v1/links") => Some(json!({
                "connection_id": self.stages_cid, "billing_site_id": "S-3",
                "stages_site_no": self.ids["spare_site_no"],
                "systems": [{"billing_system_id": "Y-3", "stages_device_id": self.ids["spare_device_id"]}]})),
            Method::POST if path.ends_with("/push") => Some(json!({"billing_site_id": "S-2"})),
            Method::POST if path.ends_with("/wizard:pull") => Some(json!({
                "site_no": self.ids["wizard_site_no"], "customer": {"new_customer": {"last_name": "Pull"}}})),
            Method::POST if path.ends_with("/wizard:push") => Some(json!({
                "customer": {"new_customer": {"last_name": "Push"}}, "site": {"name": "Wizard"},
                "systems": [{"device": {"transmitter_code": "5550006"}}]})),
            Method::POST if path.ends_with("/v1/batches") => Some(json!({
                "operation": "sync", "items": [{"link_id": self.ids["link_id"]}]})),
            Method::PUT if path.contains("/billing/systems/") => Some(json!({"site_id": "S-1"})),
            // The credentials each upstream really takes, so later calls still reach it.
            Method::PUT
                if path.ends_with("/credentials/dealer") && path.contains(&self.adc_cid) =>
            {
                Some(json!({"username": "adc-dealer", "password": "adc-Passw0rd"}))
            }
            Method::PUT if path.ends_with("/credentials/dealer") => {
                Some(json!({"username": SIM_USER, "password": SIM_PASSWORD}))
            }
            Method::POST if path.ends_with("/v1/conflicts:resolve") => {
                Some(json!({"resolutions": [
                {"link_id": self.ids["link_id"], "field": "city", "use": "billing"}]}))
            }
            // The site link, pointed at the site it already names.
            Method::PATCH if path.contains("/v1/links/") => Some(json!({
                "external_id": self.ids["other_site_no"],
                "systems": [{"billing_system_id": "Y-1", "stages_device_id": self.ids["other_device_id"]}]})),
            _ => body_for(method, path),
        }
    }
}

/// acme's world: a Stages connection and an Alarm.com entry with their
/// credentials, billing records, a pushed site with its device, a contact, a
/// test, an ISP account, an import, a reconcile job and a subscription.
async fn acme_world(svc: &Service, stages: &stages_sim::Sim, adc: &adc_sim::Sim) -> Acme {
    let admin = Who::admin("acme");
    let ok = |a: &Answer, what: &str| assert!(a.status < 300, "{what}: {} {}", a.status, a.text);
    let stages_cid = svc
        .create_connection(&admin, "Stages", &stages.base_url(), "dealer")
        .await;
    let a = svc
        .call(
            Method::PUT,
            &format!("/v1/connections/{stages_cid}/credentials/dealer"),
            &admin,
            Some(json!({"username": SIM_USER, "password": SIM_PASSWORD})),
        )
        .await;
    ok(&a, "stages credentials");
    let a = svc
        .call(
            Method::POST,
            "/v1/connections",
            &admin,
            Some(json!({"provider": "alarm_com", "endpoint": adc.base_url()})),
        )
        .await;
    ok(&a, "alarm.com entry");
    let adc_cid = a.body["id"].as_str().unwrap().to_owned();
    let a = svc
        .call(
            Method::PUT,
            &format!("/v1/connections/{adc_cid}/credentials/dealer"),
            &admin,
            Some(json!({"username": "adc-dealer", "password": "adc-Passw0rd"})),
        )
        .await;
    ok(&a, "alarm.com credentials");
    for (path, body) in [
        (
            "/v1/billing/customers/C-1",
            json!({"last_name": "Lovelace"}),
        ),
        (
            "/v1/billing/sites/S-1",
            json!({"customer_id": "C-1", "name": "Lovelace home"}),
        ),
        ("/v1/billing/systems/Y-1", json!({"site_id": "S-1"})),
        ("/v1/billing/users/U-1", json!({"last_name": "Babbage"})),
    ] {
        ok(&svc.call(Method::PUT, path, &admin, Some(body)).await, path);
    }
    let pushed = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{stages_cid}/push"),
            &admin,
            Some(json!({"billing_site_id": "S-1", "systems": [
                {"billing_system_id": "Y-1", "device": {"transmitter_code": "5550001"},
                 "configurations": [{"point": 7, "area": "1", "event_code": "BA", "description": "Door"}]}]})),
        )
        .await;
    ok(&pushed, "push");
    let records = &pushed.body["records"];
    let site_no = records[0]["external_id"].as_str().unwrap().to_owned();
    let device_id = records[1]["external_id"].as_str().unwrap().to_owned();
    let stages_path = |p: &str| format!("/v1/connections/{stages_cid}/stages{p}");
    let contact = svc
        .call(
            Method::POST,
            &stages_path(&format!("/sites/{site_no}/contacts")),
            &admin,
            Some(json!({"name": "Ada", "relation": "Owner"})),
        )
        .await;
    ok(&contact, "contact");
    let test = svc
        .call(
            Method::POST,
            &stages_path(&format!("/devices/{device_id}/tests")),
            &admin,
            Some(clock::window(
                "UTC",
                chrono::Duration::days(2),
                chrono::Duration::hours(1),
            )),
        )
        .await;
    ok(&test, "test");
    // Spare records for the creating calls of the sweep: a billing customer
    // for a second ISP account, a billing site to push, a billing site and
    // system with an unlinked Stages site (and device) to link them to, and
    // two more Stages sites to point the links at.
    for (path, body) in [
        ("/v1/billing/customers/C-2", json!({"last_name": "Byron"})),
        (
            "/v1/billing/sites/S-2",
            json!({"customer_id": "C-2", "name": "Byron home"}),
        ),
        (
            "/v1/billing/sites/S-3",
            json!({"customer_id": "C-2", "name": "Byron cabin"}),
        ),
        ("/v1/billing/systems/Y-3", json!({"site_id": "S-3"})),
    ] {
        ok(&svc.call(Method::PUT, path, &admin, Some(body)).await, path);
    }
    let spare_site = |code: &str| {
        let created = stages
            .state()
            .create_site(
                serde_json::from_value(
                    json!({"name": "Spare", "devices": [{"transmitter_code": code}]}),
                )
                .unwrap(),
            )
            .unwrap();
        let v = serde_json::to_value(created).unwrap();
        (
            v["site"]["site_no"].as_str().unwrap().to_owned(),
            v["devices"][0]["device_id"].as_str().unwrap().to_owned(),
        )
    };
    let (spare_site_no, spare_device_id) = spare_site("5550003");
    let (other_site_no, other_device_id) = spare_site("5550004");
    let (wizard_site_no, _) = spare_site("5550005");
    let plans = svc
        .call(
            Method::GET,
            &format!("/v1/connections/{adc_cid}/service-plans"),
            &admin,
            None,
        )
        .await;
    ok(&plans, "service plans");
    let adc_customer = adc.state().customers()[0].customer_id;
    let spare_adc_customer = adc.state().customers()[1].customer_id;
    let account = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{adc_cid}/isp-accounts"),
            &admin,
            Some(json!({"billing_customer_id": "C-1", "action": "link", "customer_id": adc_customer})),
        )
        .await;
    ok(&account, "isp account");
    let import = svc
        .call(
            Method::POST,
            "/v1/imports",
            &admin,
            Some(json!({"connection_id": adc_cid, "kind": "users"})),
        )
        .await;
    ok(&import, "import");
    let job = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{stages_cid}:reconcile"),
            &admin,
            None,
        )
        .await;
    ok(&job, "reconcile");
    let link_id = records[0]["link_id"].as_str().unwrap().to_owned();
    let batch = svc
        .call(
            Method::POST,
            "/v1/batches",
            &admin,
            Some(json!({"operation": "sync", "items": [{"link_id": link_id}]})),
        )
        .await;
    ok(&batch, "batch");
    let batch_id = batch.body["id"].as_str().unwrap().to_owned();
    // Ended before the sweep, so its cancel answers as listed below.
    svc.wait_ended(&admin, &format!("/v1/batches/{batch_id}"))
        .await;
    let subscription = svc
        .call(
            Method::POST,
            "/v1/webhook-subscriptions",
            &admin,
            Some(json!({"url": "http://127.0.0.1:9/hook"})),
        )
        .await;
    ok(&subscription, "subscription");
    let text = |v: &Value| {
        v.as_str()
            .unwrap_or_else(|| panic!("no id: {v}"))
            .to_owned()
    };
    let ids = std::collections::HashMap::from([
        ("customer_id", "C-1".to_owned()),
        ("site_id", "S-1".to_owned()),
        ("system_id", "Y-1".to_owned()),
        ("user_id", "U-1".to_owned()),
        ("site_no", site_no),
        ("device_id", device_id),
        ("link_id", text(&records[0]["link_id"])),
        ("contact_id", text(&contact.body["contact_id"])),
        ("test_id", text(&test.body["test"]["test_id"])),
        ("account_id", text(&account.body["id"])),
        ("import_id", text(&import.body["id"])),
        ("job_id", text(&job.body["id"])),
        ("batch_id", batch_id),
        // The zone of the pushed device, by its point (only one zone has it).
        ("zone", "7".to_owned()),
        ("subscription_id", text(&subscription.body["id"])),
        ("adc_customer", adc_customer.to_string()),
        ("spare_adc_customer", spare_adc_customer.to_string()),
        ("spare_site_no", spare_site_no),
        ("spare_device_id", spare_device_id),
        ("other_site_no", other_site_no),
        ("other_device_id", other_device_id),
        ("wizard_site_no", wizard_site_no),
        (
            "other_package",
            // Not the package the ISP account was created with.
            plans.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["package_id"].as_i64().unwrap())
                .find(|p| account.body["package_id"].as_i64() != Some(*p))
                .expect("Alarm.com offers a second package")
                .to_string(),
        ),
    ]);
    Acme {
        ids,
        stages_cid,
        adc_cid,
    }
}

/// The tenancy and role sweep, built from the route table: every `/v1`
/// operation is called with acme's real ids by another dealer's admin (a 404
/// where the path names acme's records, and never a trace of acme in an
/// answer), by each role below the one it names (403), and by that role (not
/// refused).
#[tokio::test]
async fn every_operation_keeps_dealers_apart_and_checks_its_role() {
    let stages = start_sim(0).await;
    let adc = adc_sim::Sim::start(adc_sim::SimConfig {
        username: "adc-dealer".into(),
        password: "adc-Passw0rd".into(),
        seed_customers: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    let svc = Service::start().await;
    let acme = acme_world(&svc, &stages, &adc).await;
    let ops = operations_with_roles();
    let send = |who: Who, method: Method, path: String| {
        let body = acme.body(&method, &path);
        let svc = &svc;
        async move {
            let mut rb = svc.req(method, &path, &who);
            if let Some(b) = body {
                rb = rb.json(&b);
            }
            Answer::from(rb.send().await.unwrap()).await
        }
    };
    let secrets: Vec<&String> = acme
        .ids
        .values()
        .filter(|v| v.len() > 8)
        .chain([&acme.stages_cid, &acme.adc_cid])
        .collect();

    // Another dealer's admin, with acme's ids. Billing upserts last: they
    // make records of the intruder's own under the same ids.
    let mut order = ops.clone();
    order.sort_by_key(|(m, p, _)| *m == Method::PUT && p.starts_with("/v1/billing/"));
    let intruder = Who::admin("intruder");
    for (method, template, _) in &order {
        let path = acme.fill(template);
        let a = send(intruder.clone(), method.clone(), path.clone()).await;
        let what = format!("intruder {method} {path}: {} {}", a.status, a.text);
        assert!(a.status < 500, "{what}");
        if *method == Method::PUT && template.starts_with("/v1/billing/") {
            assert_eq!(a.status, 201, "a record of the intruder's own: {what}");
        } else if template.contains('{') {
            assert_eq!(a.status, 404, "{what}");
            a.assert_problem(404);
        } else if *method == Method::GET {
            assert_eq!(a.status, 200, "{what}");
        } else if a.status < 300 {
            assert!(
                !path.ends_with("/v1/links") && !path.ends_with("/v1/imports"),
                "acme's connection used by another dealer: {what}"
            );
        }
        // The problem's `instance` is the path the intruder sent; anything
        // else naming acme's records is a leak.
        let mut body = a.body.clone();
        if let Some(o) = body.as_object_mut() {
            o.remove("instance");
        }
        let text = body.to_string();
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "acme leaked ({secret}): {what}"
            );
        }
        assert!(!text.contains("Lovelace"), "acme leaked: {what}");
    }

    // Each role below the one an operation names is refused; a token with no
    // known role reads nothing.
    for (method, template, role) in &ops {
        let path = acme.fill(template);
        let rank = ROLES.iter().position(|r| r == role).unwrap();
        for lower in ROLES[..rank].iter().chain(["guest"].iter()) {
            let a = send(Who::new("acme", lower, lower), method.clone(), path.clone()).await;
            assert_eq!(
                a.status, 403,
                "{lower} {method} {path} (needs {role}): {}",
                a.text
            );
            assert_eq!(a.assert_problem(403), "forbidden");
        }
    }

    // The role itself is let through (reads, then changes, deletes last).
    // Some calls change what later ones meet (credentials, Stages records):
    // an upstream refusal then is a 502, which is an answer, not a failure.
    // Deletes go from what depends on a record to the record: links before
    // billing records, systems before sites before customers, the connection
    // last.
    let mut order = ops.clone();
    order.sort_by_key(|(m, p, _)| match *m {
        Method::GET => 0,
        Method::DELETE
            if p.starts_with("/v1/billing/systems/") || p.starts_with("/v1/billing/users/") =>
        {
            3
        }
        Method::DELETE if p.starts_with("/v1/billing/sites/") => 4,
        Method::DELETE if p.starts_with("/v1/billing/customers/") => 5,
        Method::DELETE if p == "/v1/connections/{connection_id}" => 6,
        Method::DELETE => 2,
        _ => 1,
    });
    let mut unexpected = Vec::new();
    let mut expected_seen = Vec::new();
    for (method, template, role) in &order {
        let path = acme.fill(template);
        let a = send(Who::new("acme", role, role), method.clone(), path.clone()).await;
        let known = NOT_2XX_FOR_ITS_ROLE
            .iter()
            .find(|(m, t, _, _)| *m == method.as_str() && t == template);
        match known {
            Some((_, _, status, _)) if a.status == *status => {
                expected_seen.push(template.clone());
            }
            None if (200..300).contains(&a.status) => {}
            _ => unexpected.push(format!(
                "{role} {method} {template}: {} {}",
                a.status, a.text
            )),
        }
    }
    assert!(
        unexpected.is_empty(),
        "called by its own role, each operation succeeds (or answers as NOT_2XX_FOR_ITS_ROLE says):\n{}",
        unexpected.join("\n")
    );
    assert_eq!(
        expected_seen.len(),
        NOT_2XX_FOR_ITS_ROLE.len(),
        "every listed exception still happens: {expected_seen:?}"
    );
}

/// Operations that, called by their own role in the sweep above, answer
/// something other than 2xx, and why: the sweep's one body per operation
/// cannot make every call succeed. Anything else must succeed.
const NOT_2XX_FOR_ITS_ROLE: &[(&str, &str, u16, &str)] = &[
    (
        "GET",
        "/v1/connections/{connection_id}/callback-health",
        409,
        "Alarm.net callbacks are for Honeywell-based providers; acme's entry is Alarm.com",
    ),
    (
        "GET",
        "/v1/connections/{connection_id}/credentials/me",
        409,
        "acme's Stages connection takes one dealer credential, not per-user ones",
    ),
    (
        "PUT",
        "/v1/connections/{connection_id}/credentials/me",
        409,
        "the same",
    ),
    (
        "DELETE",
        "/v1/connections/{connection_id}/credentials/me",
        409,
        "the same",
    ),
    (
        "POST",
        "/v1/imports/{import_id}:cancel",
        409,
        "acme's import has ended before the sweep reaches it",
    ),
    (
        "POST",
        "/v1/jobs/{job_id}:cancel",
        409,
        "acme's reconcile has ended before the sweep reaches it",
    ),
    (
        "POST",
        "/v1/batches/{batch_id}:cancel",
        409,
        "acme's batch has ended before the sweep reaches it",
    ),
    (
        "POST",
        "/v1/jobs/{job_id}:retry",
        409,
        "only a dead or failed job is retried; acme's succeeded",
    ),
];

#[tokio::test]
async fn bad_input_is_a_4xx_problem_never_a_500() {
    let svc = Service::start().await;
    let admin = Who::admin("acme");
    let cid = svc
        .create_connection(&admin, "Stages", "http://127.0.0.1:9", "dealer")
        .await;
    let raw = |method: Method, path: String, body: &'static str| {
        svc.req(method, &path, &admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases: Vec<(Method, String, String, u16)> = vec![
        (
            Method::POST,
            "/v1/connections".into(),
            "{\"provider\": ".into(),
            400,
        ),
        (Method::POST, "/v1/connections".into(), "[]".into(), 422),
        (
            Method::POST,
            "/v1/connections".into(),
            json!({"provider": "stages"}).to_string(),
            422,
        ),
        (
            Method::POST,
            "/v1/connections".into(),
            json!({"provider": 7, "endpoint": "http://h"}).to_string(),
            422,
        ),
        (
            Method::POST,
            "/v1/connections".into(),
            json!({"provider": "nope", "endpoint": "http://h"}).to_string(),
            422,
        ),
        (
            Method::POST,
            "/v1/connections".into(),
            json!({"provider": "stages", "endpoint": "not a url"}).to_string(),
            422,
        ),
        (
            Method::POST,
            "/v1/connections".into(),
            json!({"provider": "stages", "endpoint": "ftp://h/"}).to_string(),
            422,
        ),
        (
            Method::POST,
            "/v1/connections".into(),
            json!({"provider": "stages", "name": "  ", "endpoint": "http://h"}).to_string(),
            422,
        ),
        (
            Method::POST,
            "/v1/connections".into(),
            json!({"provider": "stages", "name": "x".repeat(101), "endpoint": "http://h"})
                .to_string(),
            422,
        ),
        (
            Method::POST,
            "/v1/connections".into(),
            json!({"provider": "stages", "endpoint": "http://h", "auto_sync": "yes"}).to_string(),
            422,
        ),
        (
            Method::POST,
            "/v1/connections".into(),
            json!({"provider": "stages", "endpoint": "http://h", "surprise": 1}).to_string(),
            422,
        ),
        (
            Method::POST,
            "/v1/connections".into(),
            json!({"provider": "alarm_com", "endpoint": "http://h", "auth_mode": "user"})
                .to_string(),
            422,
        ),
        (
            Method::POST,
            "/v1/connections".into(),
            json!({"provider": "stages", "name": "x".repeat(1 << 20), "endpoint": "http://h"})
                .to_string(),
            413,
        ),
        (
            Method::PATCH,
            format!("/v1/connections/{cid}"),
            json!({"name": ""}).to_string(),
            422,
        ),
        (
            Method::PATCH,
            format!("/v1/connections/{cid}"),
            json!({"endpoint": "http://user:pw@h/"}).to_string(),
            422,
        ),
        (
            Method::PATCH,
            format!("/v1/connections/{cid}"),
            json!({"auth_mode": "both"}).to_string(),
            422,
        ),
        (
            Method::PUT,
            format!("/v1/connections/{cid}/credentials/dealer"),
            json!({"username": "", "password": ""}).to_string(),
            422,
        ),
        (
            Method::PUT,
            format!("/v1/connections/{cid}/credentials/dealer"),
            json!({"username": "u"}).to_string(),
            422,
        ),
        (
            Method::GET,
            "/v1/connections/not-a-uuid".into(),
            String::new(),
            404,
        ),
        (Method::GET, "/v1/nowhere".into(), String::new(), 404),
        (Method::PUT, "/v1/connections".into(), "{}".into(), 405),
    ];
    for (method, path, body, status) in cases {
        let body: &'static str = Box::leak(body.into_boxed_str());
        let a = Answer::from(raw(method.clone(), path.clone(), body).await.unwrap()).await;
        assert_eq!(
            a.status,
            status,
            "{method} {path} {}: {}",
            &body[..body.len().min(80)],
            a.text
        );
        a.assert_problem(status);
        if status == 422 {
            let errors = a.body["errors"].as_array().map(Vec::len).unwrap_or(0);
            assert!(
                errors > 0 || a.body["code"] != "validation",
                "{method} {path}: {}",
                a.text
            );
        }
    }
    // A body that is not JSON at all.
    let a = Answer::from(
        svc.req(Method::POST, "/v1/connections", &admin)
            .header("content-type", "text/plain")
            .body("hello")
            .send()
            .await
            .unwrap(),
    )
    .await;
    a.assert_problem(415);
    // Errors name the field.
    let a = svc
        .call(
            Method::POST,
            "/v1/connections",
            &admin,
            Some(json!({"provider": "stages", "endpoint": "nope", "name": ""})),
        )
        .await;
    let fields: Vec<_> = a.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["name", "endpoint"]);
    assert!(!svc.logs().contains("panicked"));
}

fn file_contains(path: &std::path::Path, needle: &str) -> bool {
    std::fs::read(path)
        .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .unwrap_or(false)
}

#[tokio::test]
async fn passwords_are_unreadable_in_the_sqlite_file_answers_and_logs() {
    let sim = start_sim(0).await;
    let svc = Service::start().await;
    let admin = Who::admin("acme");
    let plaintext = "Pl41ntext-Never-Stored-8c1f";
    reqwest::Client::new()
        .post(format!("{}/admin/users", sim.base_url()))
        .json(&json!({"username": "dealer-acme", "password": plaintext}))
        .send()
        .await
        .unwrap();
    let dealer = svc
        .create_connection(&admin, "Dealer", &sim.base_url(), "dealer")
        .await;
    let users = svc
        .create_connection(&admin, "Users", &sim.base_url(), "user")
        .await;
    let a = svc
        .call(
            Method::PUT,
            &format!("/v1/connections/{dealer}/credentials/dealer"),
            &admin,
            Some(json!({"username": "dealer-acme", "password": plaintext})),
        )
        .await;
    assert!(!a.text.contains(plaintext));
    let a = svc
        .call(
            Method::PUT,
            &format!("/v1/connections/{users}/credentials/me"),
            &admin,
            Some(json!({"username": "dealer-acme", "password": plaintext})),
        )
        .await;
    assert!(!a.text.contains(plaintext));
    // The stored password works, so it is really stored.
    let t = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{dealer}:test"),
            &admin,
            None,
        )
        .await;
    assert_eq!(t.body["outcome"], "ok", "{}", t.text);
    assert!(!t.text.contains(plaintext));
    for path in [
        "/v1/connections",
        &format!("/v1/connections/{dealer}"),
        &format!("/v1/connections/{users}/credentials/me"),
    ] {
        assert!(!svc
            .call(Method::GET, path, &admin, None)
            .await
            .text
            .contains(plaintext));
    }

    let db = svc.dir.join("crosslink.db");
    assert!(db.exists());
    for file in [db.clone(), svc.dir.join("crosslink.db-wal")] {
        assert!(
            !file_contains(&file, plaintext),
            "{} holds the plaintext",
            file.display()
        );
    }
    assert!(
        file_contains(&db, "dealer-acme")
            || file_contains(&svc.dir.join("crosslink.db-wal"), "dealer-acme"),
        "the grep itself works: the username is stored in clear"
    );
    assert!(
        !svc.logs().contains(plaintext),
        "a log line holds the plaintext"
    );
    assert!(svc.logs().contains("answered"), "the log was written");
}

#[tokio::test]
async fn passwords_are_unreadable_in_postgresql_rows() {
    let schema = PgSchema::new();
    let svc = Service::start_with(ServiceOptions {
        database_url: Some(schema.url()),
        env: Vec::new(),
    })
    .await;
    let admin = Who::admin("acme");
    let plaintext = "Pg-Pl41ntext-Never-Stored-77";
    let cid = svc
        .create_connection(&admin, "Users", "http://127.0.0.1:9", "user")
        .await;
    svc.call(
        Method::PUT,
        &format!("/v1/connections/{cid}/credentials/dealer"),
        &admin,
        Some(json!({"username": "dealer-u", "password": plaintext})),
    )
    .await;
    svc.call(
        Method::PUT,
        &format!("/v1/connections/{cid}/credentials/me"),
        &admin,
        Some(json!({"username": "me-u", "password": plaintext})),
    )
    .await;
    let rotated = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}/inbound-credentials:rotate"),
            &admin,
            None,
        )
        .await;
    let inbound_secret = rotated.body["secret"].as_str().unwrap().to_owned();

    let rows = schema.query("SELECT row_to_json(c)::text FROM credentials c");
    assert_eq!(rows.lines().count(), 2, "{rows}");
    assert!(rows.contains("dealer-u") && rows.contains("me-u"));
    assert!(!rows.contains(plaintext), "{rows}");
    let inbound = schema.query("SELECT row_to_json(i)::text FROM inbound_credentials i");
    assert_eq!(inbound.lines().count(), 1);
    assert!(!inbound.contains(&inbound_secret));
    assert!(!svc.logs().contains(plaintext));
}

#[tokio::test]
async fn three_replicas_start_together_on_one_empty_postgresql() {
    let schema = PgSchema::new();
    let replicas: Vec<Service> = (0..3)
        .map(|_| {
            Service::spawn(ServiceOptions {
                database_url: Some(schema.url()),
                env: Vec::new(),
            })
        })
        .collect();
    for r in &replicas {
        r.wait_ready().await;
    }
    let versions = schema.query("SELECT version, count(*) FROM __diesel_schema_migrations GROUP BY version ORDER BY version");
    let migrations = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/postgres"
    ))
    .unwrap()
    .filter(|e| e.as_ref().unwrap().path().is_dir())
    .count();
    assert_eq!(versions.lines().count(), migrations, "{versions}");
    assert!(
        versions.lines().all(|l| l.ends_with("|1")),
        "each migration recorded once: {versions}"
    );
    // All three serve the same data.
    let admin = Who::admin("acme");
    let cid = replicas[0]
        .create_connection(&admin, "Shared", "http://127.0.0.1:9", "dealer")
        .await;
    for r in &replicas {
        let a = r
            .call(Method::GET, &format!("/v1/connections/{cid}"), &admin, None)
            .await;
        assert_eq!(a.status, 200);
    }
}

/// B14 per-dealer request limits: a dealer over its rate gets 429 with
/// `Retry-After` (problem+json) while another dealer's requests still pass.
async fn a_dealer_over_its_rate_is_told_to_wait_and_others_are_not(backend: Backend) {
    let svc = Service::start_on(
        backend,
        vec![
            (
                "CROSSLINK__RATE_LIMIT__REQUESTS_PER_SECOND".into(),
                "1".into(),
            ),
            ("CROSSLINK__RATE_LIMIT__BURST".into(), "3".into()),
        ],
    )
    .await;
    let (acme, globex) = (Who::admin("acme"), Who::admin("globex"));
    let other_user = Who::new("acme", "acme-viewer", "viewer");
    let first = svc.call(Method::GET, "/v1/connections", &acme, None).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let mut limited = None;
    for _ in 0..10 {
        let a = svc.call(Method::GET, "/v1/connections", &acme, None).await;
        if a.status == 429 {
            limited = Some(a);
            break;
        }
        assert_eq!(a.status, 200, "{}", a.text);
    }
    let limited = limited.expect("ten requests at once exceed a burst of three");
    // Another user of the same dealer draws on the same bucket: of two
    // calls right away at most one can pass (one request refills per second).
    let mut same_dealer = Vec::new();
    for _ in 0..2 {
        let a = svc
            .call(Method::GET, "/v1/connections", &other_user, None)
            .await;
        same_dealer.push(a.status);
    }
    assert!(
        same_dealer.contains(&429),
        "the limit is the dealer's: {same_dealer:?}"
    );
    assert_eq!(limited.assert_problem(429), "rate_limited");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // Another dealer still passes.
    for _ in 0..3 {
        let a = svc
            .call(Method::GET, "/v1/connections", &globex, None)
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
    // Routes outside the bearer API are not counted.
    let r = svc.http.get(svc.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // After the wait the dealer is served again.
    tokio::time::sleep(std::time::Duration::from_secs(retry + 1)).await;
    let a = svc.call(Method::GET, "/v1/connections", &acme, None).await;
    assert_eq!(a.status, 200, "{}", a.text);
}

on_both_backends!(a_dealer_over_its_rate_is_told_to_wait_and_others_are_not);

fn jwks(keys: &[(&str, &str)]) -> String {
    use base64::Engine;
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, secret)| {
            json!({"kty": "oct", "kid": kid, "alg": "HS256",
                "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)})
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

fn token_with_kid(kid: &str, secret: &str) -> String {
    let claims = json!({"sub": "rotor", "dealer": "acme", "roles": ["viewer"],
        "exp": now() + 600, "iat": now(), "iss": ISSUER, "aud": AUDIENCE});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// B14 keys rotate without a restart: the JWKS file is rewritten and the new
/// key is taken (the old one refused) while the service runs; a broken file
/// keeps the keys in force; SIGHUP re-reads the file and does not stop the service.
#[tokio::test]
async fn keys_rotate_through_the_jwks_file_without_a_restart() {
    const OLD: &str = "old-signing-key-0123456789abcdef-0123";
    const NEW: &str = "new-signing-key-0123456789abcdef-4567";
    let dir = scratch_dir("jwks");
    let file = dir.join("jwks.json");
    let write = |text: String| {
        let tmp = dir.join("jwks.json.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };
    write(jwks(&[("k-old", OLD)]));
    let svc = Service::start_with(ServiceOptions {
        env: vec![(
            "CROSSLINK__AUTH__JWKS_FILE".into(),
            file.display().to_string(),
        )],
        ..Default::default()
    })
    .await;
    let status_of = |token: String| {
        let rb = svc.http.get(svc.url("/v1/connections")).bearer_auth(token);
        async move { Answer::from(rb.send().await.unwrap()).await }
    };
    assert_eq!(status_of(token_with_kid("k-old", OLD)).await.status, 200);
    let a = status_of(token_with_kid("k-new", NEW)).await;
    a.assert_problem(401);
    assert!(
        a.body["detail"].as_str().unwrap().contains("kid"),
        "{}",
        a.text
    );
    // Tokens without a kid still use the configured secret.
    let a = svc
        .call(Method::GET, "/v1/connections", &Who::admin("acme"), None)
        .await;
    assert_eq!(a.status, 200, "{}", a.text);

    write(jwks(&[("k-new", NEW)]));
    svc.eventually("the new key to be taken", STEP_LIMIT, || async {
        (status_of(token_with_kid("k-new", NEW)).await.status == 200).then_some(())
    })
    .await;
    assert_eq!(status_of(token_with_kid("k-old", OLD)).await.status, 401);

    // A broken file: an error in the log, the keys in force kept.
    std::fs::write(&file, "{ \"keys\": [ { \"kty\": \"oct\" } ] }").unwrap();
    let errors = || svc.logs().matches("could not be re-read").count();
    svc.eventually("an error logged", STEP_LIMIT, || async {
        (errors() > 0).then_some(())
    })
    .await;
    assert_eq!(status_of(token_with_kid("k-new", NEW)).await.status, 200);
    // SIGHUP reads it again (another error) and the service keeps running.
    let before = errors();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &svc.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    svc.eventually("SIGHUP to re-read the file", STEP_LIMIT, || async {
        (errors() != before).then_some(())
    })
    .await;
    assert_eq!(status_of(token_with_kid("k-new", NEW)).await.status, 200);
}
