//! End to end: Alarm.com imports (A1-A5) against the Alarm.com SOAP
//! simulator, on SQLite and PostgreSQL: filters, the field mapping, runs that
//! import only what is new, a run killed with SIGKILL and resumed, faults, rep
//! linking, preconditions, cancel and the per-record outcomes.

mod support;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use support::*;

const ADC_USER: &str = "adc-dealer";
const ADC_PASSWORD: &str = "adc-Passw0rd";

async fn adc_sim(seed_customers: usize) -> adc_sim::Sim {
    adc_sim::Sim::start(adc_sim::SimConfig {
        username: ADC_USER.into(),
        password: ADC_PASSWORD.into(),
        seed_customers,
        ..Default::default()
    })
    .await
    .expect("the Alarm.com simulator starts")
}

/// Quick retries, no client throttle: the tests wait for nothing else.
fn env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("CROSSLINK__JOBS__RETRY_BASE_MS", "20"),
        ("CROSSLINK__JOBS__RETRY_CAP_MS", "200"),
        ("CROSSLINK__ADC__REQUESTS_PER_SECOND", "0"),
        ("CROSSLINK__ADC__TIMEOUT_MS", "5000"),
    ];
    env.extend_from_slice(extra);
    env.into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// An Alarm.com provider entry of `admin`'s dealer, with its credentials.
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
    let cid = created.body["id"].as_str().unwrap().to_owned();
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

async fn start(svc: &Service, who: &Who, body: Value) -> String {
    let a = svc.call(Method::POST, "/v1/imports", who, Some(body)).await;
    assert_eq!(a.status, 202, "{}", a.text);
    assert!(["queued", "running"].contains(&a.body["state"].as_str().unwrap()));
    let id = a.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        a.headers["location"].to_str().unwrap(),
        format!("/v1/imports/{id}")
    );
    id
}

/// Polls the import until it has ended.
async fn wait(svc: &Service, who: &Who, id: &str) -> Value {
    svc.wait_ended(who, &format!("/v1/imports/{id}")).await
}

/// Every item of an import, paging through them.
async fn items(svc: &Service, who: &Who, id: &str, query: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = format!("/v1/imports/{id}/items?page_size=37{query}");
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

fn outcomes(items: &[Value]) -> HashMap<String, String> {
    let map: HashMap<String, String> = items
        .iter()
        .map(|i| {
            (
                i["external_id"].as_str().unwrap().to_owned(),
                i["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(map.len(), items.len(), "each record once: {items:#?}");
    map
}

fn with(map: &HashMap<String, String>, outcome: &str) -> BTreeSet<String> {
    map.iter()
        .filter(|(_, o)| *o == outcome)
        .map(|(id, _)| id.clone())
        .collect()
}

/// The ids of the customers an import lists (terminated ones are not listed).
fn listed(adc: &adc_sim::Sim) -> Vec<adc_sim::Customer> {
    adc.state()
        .customers()
        .into_iter()
        .filter(|c| !c.is_terminated)
        .collect()
}

async fn events(svc: &Service, who: &Who, types: &str) -> Vec<Value> {
    let a = svc
        .call(
            Method::GET,
            &format!("/v1/events?types={types}&page_size=500"),
            who,
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.body["items"].as_array().unwrap().clone()
}

/// An item's Alarm.com id as a number.
fn adc_id(v: &Value) -> Option<i64> {
    v.as_str().and_then(|s| s.parse().ok())
}

fn count(body: &Value, what: &str) -> u64 {
    body["counts"][what].as_u64().unwrap()
}

/// Waits until the import has seen 100 customers; returns how many it has.
async fn seen_100(svc: &Service, who: &Who, id: &str) -> u64 {
    let path = format!("/v1/imports/{id}");
    svc.eventually("the import to see 100 customers", STEP_LIMIT, || async {
        let a = svc.call(Method::GET, &path, who, None).await;
        Some(count(&a.body, "seen")).filter(|seen| *seen >= 100)
    })
    .await
}

async fn a_filtered_import_takes_exactly_the_matching_customers(backend: Backend) {
    let adc = adc_sim(80).await;
    let svc = Service::start_on(backend, env(&[])).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let cid = alarm_com(&svc, &admin, &adc).await;

    let customers = listed(&adc);
    // Ten ids across sub-dealers, and one that Alarm.com does not have.
    let chosen: Vec<&adc_sim::Customer> = customers.iter().step_by(5).take(10).collect();
    let mut subs: Vec<i64> = Vec::new();
    for c in &chosen {
        if c.sub_dealer_id != 0 && !subs.contains(&c.sub_dealer_id) && subs.len() < 2 {
            subs.push(c.sub_dealer_id);
        }
    }
    let expected: BTreeSet<String> = chosen
        .iter()
        .filter(|c| subs.contains(&c.sub_dealer_id) && c.sub_dealer_id != 0)
        .map(|c| c.customer_id.to_string())
        .collect();
    assert!(!expected.is_empty() && expected.len() < chosen.len());
    let id_list = chosen
        .iter()
        .map(|c| c.customer_id.to_string())
        .chain(["99999999".to_owned()])
        .collect::<Vec<_>>()
        .join(", ");
    let id = start(
        &svc,
        &op,
        json!({
            "connection_id": cid,
            "kind": "customers",
            "filters": {"customer_ids": id_list, "sub_dealer_ids": subs},
            "options": {"office_location": "Dayton HQ", "tags": ["adc", "import 1"]},
        }),
    )
    .await;
    let done = wait(&svc, &op, &id).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(done["kind"], "customers");
    assert_eq!(done["filters"]["sub_dealer_ids"], json!(subs));
    assert_eq!(done["options"]["office_location"], "Dayton HQ");
    assert_eq!(count(&done, "seen"), customers.len() as u64);
    assert_eq!(count(&done, "imported"), expected.len() as u64);
    assert_eq!(
        count(&done, "filtered_out"),
        (customers.len() - expected.len()) as u64
    );
    assert_eq!(count(&done, "failed") + count(&done, "already_imported"), 0);
    assert_eq!(done["progress"]["done"], done["progress"]["total"]);
    assert_eq!(done["progress"]["total"], customers.len());

    let all = items(&svc, &op, &id, "").await;
    let map = outcomes(&all);
    assert_eq!(with(&map, "imported"), expected);
    let filtered = items(&svc, &op, &id, "&outcome=filtered_out").await;
    assert_eq!(filtered.len() as u64, count(&done, "filtered_out"));
    let by_sub = filtered
        .iter()
        .find(|i| {
            chosen
                .iter()
                .any(|c| adc_id(&i["external_id"]) == Some(c.customer_id))
        })
        .expect("a listed customer of another sub-dealer");
    assert!(
        by_sub["reason"].as_str().unwrap().contains("sub-dealer"),
        "{by_sub}"
    );
    // Only the listed customers were read: the rest were filtered by id.
    assert_eq!(
        adc.state().request_count("GetCustomerInfo_V2"),
        chosen.len() as u64
    );

    // The seed's customer mapping, with the run's options.
    let c = chosen
        .iter()
        .find(|c| expected.contains(&c.customer_id.to_string()))
        .unwrap();
    let item = all
        .iter()
        .find(|i| adc_id(&i["external_id"]) == Some(c.customer_id))
        .unwrap();
    let billing_id = item["billing_id"].as_str().unwrap();
    let got = svc
        .call(
            Method::GET,
            &format!("/v1/billing/customers/{billing_id}"),
            &op,
            None,
        )
        .await;
    assert_eq!(got.status, 200, "{}", got.text);
    let b = &got.body;
    assert_eq!(b["first_name"], c.first_name);
    assert_eq!(b["last_name"], c.last_name);
    assert_eq!(b["business_name"], c.company_name);
    assert_eq!(b["phone"], c.phone);
    assert_eq!(b["email"], c.email);
    assert_eq!(b["address1"], c.install_address.street1);
    assert_eq!(b["city"], c.install_address.city);
    assert_eq!(b["state"], c.install_address.state);
    assert_eq!(b["zip"], c.install_address.zip);
    assert_eq!(b["sale_date"], c.join_date.date_naive().to_string());
    assert_eq!(
        b["two_way_voice"],
        c.add_on_features.iter().any(|f| f == "TwoWayVoice")
    );
    assert_eq!(b["account_number"], c.central_station_account_number);
    assert_eq!(b["receiver_number"], c.central_station_receiver_number);
    assert_eq!(b["office_location"], "Dayton HQ");
    assert_eq!(b["tags"], json!(["adc", "import 1"]));
    assert_eq!(
        b["rep_id"],
        Value::Null,
        "no users imported, no default rep"
    );

    // One creation event per customer, and the summary when the run ended.
    let created = events(&svc, &op, "billing.customer.created").await;
    assert_eq!(created.len(), expected.len());
    let summary = events(&svc, &op, "import.finished").await;
    assert_eq!(summary.len(), 1, "{summary:#?}");
    assert_eq!(summary[0]["data"]["state"], "succeeded");
    assert_eq!(summary[0]["data"]["counts"]["imported"], expected.len());
    assert_eq!(summary[0]["subject_id"], id);

    // The run is listed, and its job is the import's.
    let list = svc.call(Method::GET, "/v1/imports", &op, None).await;
    assert_eq!(list.body["items"][0]["id"], id);
    let job = svc
        .call(Method::GET, &format!("/v1/jobs/{id}"), &op, None)
        .await;
    assert_eq!(job.body["kind"], "adc_import");
}

async fn a_second_run_imports_only_the_customers_added_since(backend: Backend) {
    let adc = adc_sim(40).await;
    let svc = Service::start_on(backend, env(&[])).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let cid = alarm_com(&svc, &admin, &adc).await;
    let body = json!({"connection_id": cid, "kind": "customers"});

    let first = wait(&svc, &op, &start(&svc, &op, body.clone()).await).await;
    assert_eq!(first["state"], "succeeded", "{first:#}");
    let before = listed(&adc).len() as u64;
    assert_eq!(count(&first, "imported"), before);

    let added: BTreeSet<String> = adc
        .state()
        .with_store(|s| s.add_generated_customers(10, chrono::Utc::now()))
        .into_iter()
        .map(|c| c.customer_id.to_string())
        .collect();
    let reads = adc.state().request_count("GetCustomerInfo_V2");
    let second_id = start(&svc, &op, body).await;
    let second = wait(&svc, &op, &second_id).await;
    assert_eq!(second["state"], "succeeded", "{second:#}");
    assert_eq!(count(&second, "imported"), 10);
    assert_eq!(count(&second, "already_imported"), before);
    assert_eq!(count(&second, "seen"), before + 10);
    let map = outcomes(&items(&svc, &op, &second_id, "").await);
    assert_eq!(with(&map, "imported"), added);
    // Customers imported before are not even read again.
    assert_eq!(adc.state().request_count("GetCustomerInfo_V2") - reads, 10);
    let created = events(&svc, &op, "billing.customer.created").await;
    assert_eq!(created.len() as u64, before + 10);
}

async fn a_run_with_nothing_new_reads_the_list_and_writes_no_record(backend: Backend) {
    // Under one page of events (500), so the feed's count is exact.
    let adc = adc_sim(450).await;
    let svc = Service::start_on(backend, env(&[])).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let cid = alarm_com(&svc, &admin, &adc).await;
    let body = json!({"connection_id": cid, "kind": "customers"});
    let first = wait(&svc, &op, &start(&svc, &op, body.clone()).await).await;
    assert_eq!(first["state"], "succeeded", "{first:#}");
    let total = listed(&adc).len() as u64;
    assert_eq!(count(&first, "imported"), total);
    let all = items(&svc, &op, first["id"].as_str().unwrap(), "").await;
    assert_eq!(outcomes(&all).len() as u64, total);

    let (lists, reads) = (
        adc.state().request_count("GetCustomerList_V2"),
        adc.state().request_count("GetCustomerInfo_V2"),
    );
    let events_before = events(&svc, &op, "billing.customer.created").await.len();
    let id = start(&svc, &op, body).await;
    let again = wait(&svc, &op, &id).await;
    assert_eq!(again["state"], "succeeded", "{again:#}");
    assert_eq!(count(&again, "seen"), total);
    assert_eq!(count(&again, "already_imported"), total);
    assert_eq!(
        count(&again, "imported") + count(&again, "failed") + count(&again, "filtered_out"),
        0
    );
    // The list once, no customer read, nothing written per record: the
    // already-imported records are counted, not listed one by one.
    assert_eq!(adc.state().request_count("GetCustomerList_V2") - lists, 1);
    assert_eq!(adc.state().request_count("GetCustomerInfo_V2"), reads);
    assert!(items(&svc, &op, &id, "").await.is_empty());
    assert_eq!(
        events(&svc, &op, "billing.customer.created").await.len(),
        events_before
    );
}

async fn a_run_killed_half_way_resumes_with_nothing_imported_twice(backend: Backend) {
    let adc = adc_sim(300).await;
    // Slow reads, one at a time: the run is killed while it is half way.
    adc.state()
        .add_fault(adc_sim::FaultRule::parse("GetCustomerInfo_V2=latency:15").unwrap())
        .unwrap();
    let env = || {
        env(&[
            ("CROSSLINK__JOBS__LEASE_SECS", "2"),
            ("CROSSLINK__ADC__IMPORT_CONCURRENCY", "1"),
        ])
    };
    let mut first = Service::start_on(backend, env()).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let cid = alarm_com(&first, &admin, &adc).await;
    let id = start(
        &first,
        &op,
        json!({"connection_id": cid, "kind": "customers"}),
    )
    .await;
    let total = listed(&adc).len() as u64;
    let seen_at_kill = seen_100(&first, &op, &id).await;
    first.kill();
    assert!(
        seen_at_kill >= 100 && seen_at_kill < total,
        "killed half way: {seen_at_kill} of {total}"
    );

    let second = Service::start_with(ServiceOptions {
        database_url: Some(first.database_url.clone()),
        env: env(),
    })
    .await;
    let done = wait(&second, &op, &id).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(done["attempts"], 2, "taken again after the kill: {done:#}");
    assert_eq!(count(&done, "seen"), total);
    assert_eq!(count(&done, "imported"), total);
    assert_eq!(count(&done, "already_imported") + count(&done, "failed"), 0);
    let map = outcomes(&items(&second, &op, &id, "").await);
    let expected: BTreeSet<String> = listed(&adc)
        .iter()
        .map(|c| c.customer_id.to_string())
        .collect();
    assert_eq!(with(&map, "imported"), expected);
    // One creation event per customer: nothing was imported twice.
    let created = events(&second, &op, "billing.customer.created").await;
    let subjects: HashSet<&str> = created
        .iter()
        .map(|e| e["subject_id"].as_str().unwrap())
        .collect();
    assert_eq!(created.len() as u64, total);
    assert_eq!(subjects.len() as u64, total);
    // The resumed run read only what the killed one had not recorded.
    assert!(
        adc.state().request_count("GetCustomerInfo_V2") < total + 100,
        "{} reads",
        adc.state().request_count("GetCustomerInfo_V2")
    );
    let summary = events(&second, &op, "import.finished").await;
    assert_eq!(summary.len(), 1);
}

async fn faults_during_an_import_still_import_every_customer_once(backend: Backend) {
    let adc = adc_sim(150).await;
    for rule in [
        "CustomerManagement/*=http_500,probability=0.1",
        "CustomerManagement/*=drop,probability=0.05",
        "CustomerManagement/*=malformed,probability=0.05",
    ] {
        adc.state()
            .add_fault(adc_sim::FaultRule::parse(rule).unwrap())
            .unwrap();
    }
    let svc = Service::start_on(backend, env(&[])).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let cid = alarm_com(&svc, &admin, &adc).await;
    let id = start(
        &svc,
        &op,
        json!({"connection_id": cid, "kind": "customers"}),
    )
    .await;
    let done = wait(&svc, &op, &id).await;
    adc.state().clear_faults();
    let total = listed(&adc).len() as u64;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(count(&done, "imported"), total, "{done:#}");
    assert_eq!(count(&done, "failed"), 0);
    let map = outcomes(&items(&svc, &op, &id, "").await);
    assert_eq!(map.len() as u64, total);
    let created = events(&svc, &op, "billing.customer.created").await;
    let subjects: HashSet<&str> = created
        .iter()
        .map(|e| e["subject_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        (created.len() as u64, subjects.len() as u64),
        (total, total)
    );
    let stats = adc.state().stats();
    assert!(
        stats.total_requests > stats.succeeded.values().sum::<u64>(),
        "faults were injected: {stats:?}"
    );
}

async fn users_then_customers_link_each_rep(backend: Backend) {
    let adc = adc_sim(60).await;
    let svc = Service::start_on(backend, env(&[])).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let cid = alarm_com(&svc, &admin, &adc).await;

    // The filters' choices come from Alarm.com.
    let choices = svc
        .call(
            Method::GET,
            &format!("/v1/imports/filter-choices?connection_id={cid}"),
            &Who::new("acme", "vic", "viewer"),
            None,
        )
        .await;
    assert_eq!(choices.status, 200, "{}", choices.text);
    assert_eq!(choices.body["sub_dealers"].as_array().unwrap().len(), 5);
    assert!(choices.body["roles"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "Sales Rep"));

    let reps = adc.state().reps();
    let sales: BTreeSet<String> = reps
        .iter()
        .filter(|r| r.roles.iter().any(|n| n == "Sales Rep"))
        .map(|r| r.support_id.to_string())
        .collect();
    assert!(!sales.is_empty() && sales.len() < reps.len());
    let users = json!({
        "connection_id": cid,
        "kind": "users",
        "filters": {"roles": ["sales rep"]},
        "options": {"can_login": true, "permission_group": "Sales", "tags": ["adc"]},
    });
    let uid = start(&svc, &op, users.clone()).await;
    let done = wait(&svc, &op, &uid).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let map = outcomes(&items(&svc, &op, &uid, "").await);
    assert_eq!(with(&map, "imported"), sales);
    assert_eq!(
        count(&done, "filtered_out"),
        (reps.len() - sales.len()) as u64
    );

    // The seed's user mapping, with the run's options.
    let r = reps
        .iter()
        .find(|r| sales.contains(&r.support_id.to_string()))
        .unwrap();
    let u = svc
        .call(
            Method::GET,
            &format!("/v1/billing/users/adc-user-{}", r.support_id),
            &op,
            None,
        )
        .await;
    assert_eq!(u.status, 200, "{}", u.text);
    assert_eq!(u.body["first_name"], r.first_name);
    assert_eq!(u.body["last_name"], r.last_name);
    assert_eq!(u.body["login_name"], r.login_name);
    assert_eq!(u.body["email"], r.email);
    assert_eq!(u.body["phone"], r.phone);
    assert_eq!(u.body["address1"], r.address.street1);
    assert_eq!(u.body["city"], r.address.city);
    assert_eq!(u.body["user_field"], r.user_field);
    assert_eq!(u.body["active"], true);
    assert_eq!(u.body["can_login"], true);
    assert_eq!(u.body["permission_group"], "Sales");
    assert_eq!(u.body["tags"], json!(["adc"]));
    // Each user who may log in is announced, so the credentials get sent.
    let notices = events(&svc, &op, "billing.user.credentials_required").await;
    assert_eq!(notices.len(), sales.len());
    assert!(notices
        .iter()
        .any(|n| n["data"]["login_name"] == r.login_name.as_str()));

    // Again: nothing new, no duplicates, no new notices.
    let again = wait(&svc, &op, &start(&svc, &op, users).await).await;
    assert_eq!(count(&again, "imported"), 0);
    assert_eq!(count(&again, "already_imported"), sales.len() as u64);
    assert_eq!(
        events(&svc, &op, "billing.user.credentials_required")
            .await
            .len(),
        sales.len()
    );

    // Customers: the rep is the imported user, else the default rep.
    let put = svc
        .call(
            Method::PUT,
            "/v1/billing/users/U-DEFAULT",
            &op,
            Some(json!({"first_name": "Default", "last_name": "Rep"})),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.text);
    let cust = start(
        &svc,
        &op,
        json!({"connection_id": cid, "kind": "customers", "options": {"default_rep": "U-DEFAULT"}}),
    )
    .await;
    let done = wait(&svc, &op, &cust).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let support_of: HashMap<&str, i64> = reps
        .iter()
        .map(|r| (r.login_name.as_str(), r.support_id))
        .collect();
    let mut matched = 0;
    for c in listed(&adc) {
        let expected = match support_of.get(c.sales_rep_login_name.as_str()) {
            Some(sid) if sales.contains(&sid.to_string()) => {
                matched += 1;
                format!("adc-user-{sid}")
            }
            _ => "U-DEFAULT".to_owned(),
        };
        let got = svc
            .call(
                Method::GET,
                &format!("/v1/billing/customers/adc-{}", c.customer_id),
                &op,
                None,
            )
            .await;
        assert_eq!(got.body["rep_id"], expected.as_str(), "{}", got.text);
    }
    assert!(matched > 0, "some customers' reps are imported users");
}

async fn preconditions_are_clear_problems_before_anything_starts(backend: Backend) {
    let adc = adc_sim(5).await;
    let svc = Service::start_on(backend, env(&[])).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let post = |body: Value| {
        let svc = &svc;
        let op = op.clone();
        async move { svc.call(Method::POST, "/v1/imports", &op, Some(body)).await }
    };

    // Not linked: an Alarm.com entry without credentials.
    let bare = svc
        .call(
            Method::POST,
            "/v1/connections",
            &admin,
            Some(json!({"provider": "alarm_com", "name": "ADC bare", "endpoint": adc.base_url()})),
        )
        .await;
    let bare = bare.body["id"].as_str().unwrap().to_owned();
    let a = post(json!({"connection_id": bare, "kind": "customers"})).await;
    assert_eq!(a.assert_problem(409), "credentials_required");
    let choices = svc
        .call(
            Method::GET,
            &format!("/v1/imports/filter-choices?connection_id={bare}"),
            &op,
            None,
        )
        .await;
    assert_eq!(choices.assert_problem(409), "credentials_required");
    assert!(
        a.body["detail"].as_str().unwrap().contains("not linked"),
        "{}",
        a.text
    );

    // Not Alarm.com.
    let stages = svc
        .create_connection(&admin, "Stages", "http://127.0.0.1:9", "dealer")
        .await;
    let a = post(json!({"connection_id": stages, "kind": "customers"})).await;
    assert_eq!(a.assert_problem(409), "wrong_provider");

    // Inactive.
    let cid = alarm_com(&svc, &admin, &adc).await;
    let patched = svc
        .call(
            Method::PATCH,
            &format!("/v1/connections/{cid}"),
            &admin,
            Some(json!({"status": "inactive"})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    let a = post(json!({"connection_id": cid, "kind": "users"})).await;
    assert_eq!(a.assert_problem(409), "provider_inactive");
    svc.call(
        Method::PATCH,
        &format!("/v1/connections/{cid}"),
        &admin,
        Some(json!({"status": "active"})),
    )
    .await;

    // Bad requests name their fields.
    let a = post(json!({"connection_id": uuid::Uuid::now_v7(), "kind": "customers"})).await;
    assert_eq!(a.assert_problem(422), "validation");
    assert_eq!(a.body["errors"][0]["field"], "connection_id");
    let a = post(json!({
        "connection_id": cid, "kind": "customers",
        "filters": {"customer_ids": "12, x", "roles": ["Manager"]},
        "options": {"can_login": true},
    }))
    .await;
    assert_eq!(a.assert_problem(422), "validation");
    let fields: BTreeSet<&str> = a.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from([
            "filters.customer_ids[1]",
            "filters.roles",
            "options.can_login"
        ]),
        "{}",
        a.text
    );
    let a = post(
        json!({"connection_id": cid, "kind": "customers", "options": {"default_rep": "nobody"}}),
    )
    .await;
    assert_eq!(a.assert_problem(422), "validation");
    assert_eq!(a.body["errors"][0]["field"], "options.default_rep");
    let a = post(json!({"connection_id": cid, "kind": "leads"})).await;
    assert_eq!(a.status, 422, "{}", a.text);
    // Nothing started.
    let list = svc.call(Method::GET, "/v1/imports", &op, None).await;
    assert_eq!(list.body["items"], json!([]));
    assert_eq!(adc.state().request_count("GetCustomerList_V2"), 0);

    // Roles and tenancy.
    let viewer = Who::new("acme", "vic", "viewer");
    svc.call(
        Method::POST,
        "/v1/imports",
        &viewer,
        Some(json!({"connection_id": cid, "kind": "users"})),
    )
    .await
    .assert_problem(403);
    let id = start(&svc, &op, json!({"connection_id": cid, "kind": "users"})).await;
    let done = wait(&svc, &viewer, &id).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let other = Who::new("globex", "gary", "operator");
    for (method, path) in [
        (Method::GET, format!("/v1/imports/{id}")),
        (Method::GET, format!("/v1/imports/{id}/items")),
        (Method::POST, format!("/v1/imports/{id}:cancel")),
    ] {
        svc.call(method, &path, &other, None)
            .await
            .assert_problem(404);
    }
    let theirs = svc.call(Method::GET, "/v1/imports", &other, None).await;
    assert_eq!(theirs.body["items"], json!([]));
    // Another dealer cannot import through this connection either.
    let a = svc
        .call(
            Method::POST,
            "/v1/imports",
            &other,
            Some(json!({"connection_id": cid, "kind": "users"})),
        )
        .await;
    assert_eq!(a.assert_problem(422), "validation");
}

async fn a_cancelled_run_stops_and_a_new_one_takes_up_the_rest(backend: Backend) {
    let adc = adc_sim(300).await;
    adc.state()
        .add_fault(adc_sim::FaultRule::parse("GetCustomerInfo_V2=latency:15").unwrap())
        .unwrap();
    // One nameless customer: its import fails with a reason, the run goes on.
    let nameless = adc
        .state()
        .with_store(|s| {
            s.add_customer(
                adc_sim::CustomerPatch {
                    first_name: Some(String::new()),
                    last_name: Some(String::new()),
                    company_name: Some(String::new()),
                    ..Default::default()
                },
                chrono::Utc::now(),
            )
        })
        .unwrap();
    let svc = Service::start_on(backend, env(&[("CROSSLINK__ADC__IMPORT_CONCURRENCY", "1")])).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let cid = alarm_com(&svc, &admin, &adc).await;
    let body = json!({"connection_id": cid, "kind": "customers"});
    let id = start(&svc, &op, body.clone()).await;
    seen_100(&svc, &op, &id).await;
    let viewer = Who::new("acme", "vic", "viewer");
    svc.call(
        Method::POST,
        &format!("/v1/imports/{id}:cancel"),
        &viewer,
        None,
    )
    .await
    .assert_problem(403);
    let c = svc
        .call(Method::POST, &format!("/v1/imports/{id}:cancel"), &op, None)
        .await;
    assert_eq!(c.status, 200, "{}", c.text);
    let done = wait(&svc, &op, &id).await;
    assert_eq!(done["state"], "cancelled", "{done:#}");
    let total = listed(&adc).len() as u64;
    let first_imported = count(&done, "imported");
    assert!(
        first_imported > 0 && count(&done, "seen") < total,
        "stopped part way: {done:#}"
    );
    let summary = events(&svc, &op, "import.finished").await;
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0]["data"]["state"], "cancelled");

    adc.state().clear_faults();
    let rest = wait(&svc, &op, &start(&svc, &op, body).await).await;
    assert_eq!(rest["state"], "succeeded", "{rest:#}");
    assert_eq!(count(&rest, "already_imported"), first_imported);
    assert_eq!(count(&rest, "failed"), 1, "{rest:#}");
    assert_eq!(
        first_imported + count(&rest, "imported") + 1,
        total,
        "{rest:#}"
    );
    let failed = items(&svc, &op, rest["id"].as_str().unwrap(), "&outcome=failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["external_id"], nameless.customer_id.to_string());
    assert!(
        failed[0]["reason"].as_str().unwrap().contains("name"),
        "{:?}",
        failed[0]
    );
    let imported = items(&svc, &op, rest["id"].as_str().unwrap(), "&outcome=imported").await;
    assert!(imported
        .iter()
        .all(|i| i["billing_id"].as_str().unwrap().starts_with("adc-")
            && i["reason"].as_str().unwrap().contains("rep")));
    let already = items(
        &svc,
        &op,
        rest["id"].as_str().unwrap(),
        "&outcome=already_imported",
    )
    .await;
    assert!(already.iter().all(|i| i["billing_id"].is_string()));
    let created = events(&svc, &op, "billing.customer.created").await;
    assert_eq!(created.len() as u64, total - 1);
}

/// A billing customer through the API.
async fn billing_customer(svc: &Service, who: &Who, id: &str) {
    let a = svc
        .call(
            Method::PUT,
            &format!("/v1/billing/customers/{id}"),
            who,
            Some(json!({
                "first_name": "Ada", "last_name": format!("Lovelace {id}"),
                "email": format!("{}@example.com", id.to_lowercase()),
                "phone": "614-555-0101", "address1": "1 Main St", "city": "Columbus",
                "state": "OH", "zip": "43004"
            })),
        )
        .await;
    assert!(a.status == 200 || a.status == 201, "{}", a.text);
}

/// The ISP accounts of the connection: Alarm.com customer id → billing customer.
async fn isp_links(svc: &Service, who: &Who, cid: &str) -> HashMap<String, String> {
    let a = svc
        .call(
            Method::GET,
            &format!("/v1/connections/{cid}/isp-accounts?page_size=500"),
            who,
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["external_id"].as_str().unwrap().to_owned(),
                i["billing_customer_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Customers billing already holds (provisioned, linked, made through the
/// Builder Program, or named by their DealerCustomerId) are matched, not
/// imported again; a dry run lists the same without writing; later runs
/// import nothing new and double nothing.
async fn customers_billing_holds_are_matched_not_doubled(backend: Backend) {
    let adc = adc_sim(40).await;
    let svc = Service::start_on(backend, env(&[])).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let cid = alarm_com(&svc, &admin, &adc).await;
    let (package, program) = adc.state().with_store(|s| {
        (
            s.packages()[0].package_id,
            s.builder_programs()[0].builder_program_id,
        )
    });
    let on = svc
        .call(
            Method::PATCH,
            &format!("/v1/connections/{cid}"),
            &admin,
            Some(json!({"settings": {"builder_program": true}})),
        )
        .await;
    assert_eq!(on.status, 200, "{}", on.text);
    for id in ["C-1", "C-2", "C-3", "C-4", "C-5"] {
        billing_customer(&svc, &op, id).await;
    }
    let accounts = format!("/v1/connections/{cid}/isp-accounts");
    let provision = |body: Value| {
        let (svc, op, accounts) = (&svc, &op, &accounts);
        async move {
            let a = svc.call(Method::POST, accounts, op, Some(body)).await;
            assert_eq!(a.status, 201, "{}", a.text);
            a.body["external_id"].as_str().unwrap().to_owned()
        }
    };
    let seeded: Vec<adc_sim::Customer> = listed(&adc)
        .into_iter()
        .filter(|c| c.dealer_customer_id.is_empty() && !c.is_commitment)
        .collect();
    // Provisioned (DealerCustomerId C-1 and a link), linked (a link only),
    // made through the Builder Program (a link), named by DealerCustomerId
    // (no link yet).
    let created = provision(
        json!({"billing_customer_id": "C-1", "action": "create_customer",
        "package_id": package}),
    )
    .await;
    let linked = seeded[0].customer_id.to_string();
    provision(json!({"billing_customer_id": "C-2", "action": "link",
        "customer_id": seeded[0].customer_id}))
    .await;
    let builder = provision(
        json!({"billing_customer_id": "C-3", "action": "create_commitment",
        "builder_program_id": program, "package_id": package}),
    )
    .await;
    let named = seeded[1].customer_id;
    adc.state()
        .with_store(|s| {
            s.patch_customer(
                named,
                adc_sim::CustomerPatch {
                    dealer_customer_id: Some("C-4".into()),
                    ..Default::default()
                },
                chrono::Utc::now(),
            )
        })
        .unwrap();
    let named = named.to_string();
    // A DealerCustomerId that names no billing customer matches nothing.
    let stranger = seeded[2].customer_id;
    adc.state()
        .with_store(|s| {
            s.patch_customer(
                stranger,
                adc_sim::CustomerPatch {
                    dealer_customer_id: Some("NOT-IN-BILLING".into()),
                    ..Default::default()
                },
                chrono::Utc::now(),
            )
        })
        .unwrap();
    let expected: HashMap<String, &str> = [
        (created.clone(), "C-1"),
        (linked.clone(), "C-2"),
        (builder.clone(), "C-3"),
        (named.clone(), "C-4"),
    ]
    .into();
    let total = listed(&adc).len() as u64;
    let links_before = isp_links(&svc, &op, &cid).await;
    assert_eq!(links_before.len(), 3);

    // The dry run lists them and writes nothing.
    let dry = start(
        &svc,
        &op,
        json!({"connection_id": cid, "kind": "customers", "dry_run": true}),
    )
    .await;
    let done = wait(&svc, &op, &dry).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(done["dry_run"], true);
    assert_eq!(count(&done, "already_imported"), 4, "{done:#}");
    assert_eq!(count(&done, "imported"), total - 4, "{done:#}");
    let listed_items = items(&svc, &op, &dry, "").await;
    for item in &listed_items {
        let external = item["external_id"].as_str().unwrap();
        match expected.get(external) {
            Some(billing) => {
                assert_eq!(item["outcome"], "already_imported", "{item:#}");
                assert_eq!(item["billing_id"], *billing, "{item:#}");
                assert!(item["reason"]
                    .as_str()
                    .unwrap()
                    .starts_with("dry run: matched by"));
            }
            None => {
                assert_eq!(item["outcome"], "imported", "{item:#}");
                assert!(item["reason"].as_str().unwrap().contains("would become"));
            }
        }
    }
    assert_eq!(listed_items.len() as u64, total);
    assert!(events(&svc, &op, "billing.customer.created")
        .await
        .is_empty());
    assert_eq!(isp_links(&svc, &op, &cid).await, links_before);

    // The real run: the same, written; the missing link is recorded.
    let first = start(
        &svc,
        &op,
        json!({"connection_id": cid, "kind": "customers"}),
    )
    .await;
    let done = wait(&svc, &op, &first).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(count(&done, "already_imported"), 4, "{done:#}");
    assert_eq!(count(&done, "imported"), total - 4, "{done:#}");
    assert_eq!(count(&done, "failed"), 0, "{done:#}");
    let matched = items(&svc, &op, &first, "&outcome=already_imported").await;
    let matched: HashMap<String, (String, String)> = matched
        .iter()
        .map(|i| {
            (
                i["external_id"].as_str().unwrap().to_owned(),
                (
                    i["billing_id"].as_str().unwrap().to_owned(),
                    i["reason"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(matched.len(), 4);
    for (external, billing) in &expected {
        assert_eq!(matched[external].0, *billing);
    }
    assert!(
        matched[&linked].1.contains("ISP account link"),
        "{matched:?}"
    );
    assert!(
        matched[&named].1.contains("DealerCustomerId"),
        "{matched:?}"
    );
    let links = isp_links(&svc, &op, &cid).await;
    assert_eq!(
        links.get(&named).map(String::as_str),
        Some("C-4"),
        "{links:?}"
    );
    assert_eq!(links.len(), 4);
    let created_events = events(&svc, &op, "billing.customer.created").await;
    assert_eq!(created_events.len() as u64, total - 4);
    assert!(created_events
        .iter()
        .all(|e| e["subject_id"].as_str().unwrap().starts_with("adc-")));
    assert!(created_events
        .iter()
        .any(|e| e["subject_id"] == format!("adc-{stranger}")));

    // A second and a third run: nothing new, nothing doubled.
    for _ in 0..2 {
        let again = start(
            &svc,
            &op,
            json!({"connection_id": cid, "kind": "customers"}),
        )
        .await;
        let done = wait(&svc, &op, &again).await;
        assert_eq!(done["state"], "succeeded", "{done:#}");
        assert_eq!(count(&done, "imported"), 0, "{done:#}");
        assert_eq!(count(&done, "already_imported"), total, "{done:#}");
    }
    assert_eq!(
        events(&svc, &op, "billing.customer.created").await.len() as u64,
        total - 4
    );
    assert_eq!(isp_links(&svc, &op, &cid).await.len(), 4);
}

/// Reps billing already holds, by login name or by their Alarm.com id, are
/// matched and remembered.
async fn users_billing_holds_are_matched(backend: Backend) {
    let adc = adc_sim(20).await;
    let svc = Service::start_on(backend, env(&[])).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let cid = alarm_com(&svc, &admin, &adc).await;
    let reps = adc.state().reps();
    let (by_login, by_id) = (&reps[0], &reps[1]);
    for (id, login) in [
        ("U-1".to_owned(), by_login.login_name.to_uppercase()),
        (
            format!("adc-user-{}", by_id.support_id),
            "someone-else".to_owned(),
        ),
    ] {
        let a = svc
            .call(
                Method::PUT,
                &format!("/v1/billing/users/{id}"),
                &op,
                Some(json!({"first_name": "Known", "last_name": "User", "login_name": login})),
            )
            .await;
        assert!(a.status == 200 || a.status == 201, "{}", a.text);
    }
    let run = start(&svc, &op, json!({"connection_id": cid, "kind": "users"})).await;
    let done = wait(&svc, &op, &run).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(count(&done, "failed"), 0, "{done:#}");
    assert_eq!(count(&done, "already_imported"), 2, "{done:#}");
    let matched = items(&svc, &op, &run, "&outcome=already_imported").await;
    let by: HashMap<String, String> = matched
        .iter()
        .map(|i| {
            (
                i["external_id"].as_str().unwrap().to_owned(),
                i["billing_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(by[&by_login.support_id.to_string()], "U-1");
    assert_eq!(
        by[&by_id.support_id.to_string()],
        format!("adc-user-{}", by_id.support_id)
    );
    let again = start(&svc, &op, json!({"connection_id": cid, "kind": "users"})).await;
    let done = wait(&svc, &op, &again).await;
    assert_eq!(count(&done, "imported"), 0, "{done:#}");
    assert_eq!(count(&done, "failed"), 0, "{done:#}");
}

/// Server-busy faults and timeouts on a tenth of the reads are retried
/// within the run: every customer imported once, none failed.
async fn busy_faults_and_timeouts_are_retried_within_the_run(backend: Backend) {
    let adc = adc_sim(120).await;
    for rule in [
        "GetCustomerInfo_V2=fault:Server busy, try again later,probability=0.1",
        "GetCustomerInfo_V2=timeout,probability=0.1",
    ] {
        adc.state()
            .add_fault(adc_sim::FaultRule::parse(rule).unwrap())
            .unwrap();
    }
    let svc = Service::start_on(backend, env(&[("CROSSLINK__ADC__TIMEOUT_MS", "700")])).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let cid = alarm_com(&svc, &admin, &adc).await;
    let id = start(
        &svc,
        &op,
        json!({"connection_id": cid, "kind": "customers"}),
    )
    .await;
    let done = wait(&svc, &op, &id).await;
    adc.state().clear_faults();
    let total = listed(&adc).len() as u64;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(count(&done, "failed"), 0, "{done:#}");
    assert_eq!(count(&done, "imported"), total, "{done:#}");
    let map = outcomes(&items(&svc, &op, &id, "").await);
    assert_eq!(with(&map, "imported").len() as u64, total);
    let created = events(&svc, &op, "billing.customer.created").await;
    let subjects: HashSet<&str> = created
        .iter()
        .map(|e| e["subject_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        (created.len() as u64, subjects.len() as u64),
        (total, total)
    );
    let reads = adc.state().request_count("GetCustomerInfo_V2");
    assert!(
        reads > total,
        "faults were injected and retried: {reads} reads"
    );
}

/// Progress moves while a large run reads, with its pace; unknown filter
/// ids are refused by name; a run that ends well shows no earlier error.
async fn progress_moves_filters_are_checked_and_a_good_end_clears_the_error(backend: Backend) {
    let adc = adc_sim(2000).await;
    adc.state()
        .add_fault(adc_sim::FaultRule::parse("GetCustomerInfo_V2=latency:3").unwrap())
        .unwrap();
    let svc = Service::start_on(backend, env(&[])).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let cid = alarm_com(&svc, &admin, &adc).await;

    for (body, field, named) in [
        (
            json!({"connection_id": cid, "kind": "customers", "filters": {"sub_dealer_ids": [201, 999]}}),
            "filters.sub_dealer_ids",
            "999",
        ),
        (
            json!({"connection_id": cid, "kind": "users", "filters": {"roles": ["sales rep", "Wizard"]}}),
            "filters.roles",
            "Wizard",
        ),
    ] {
        let a = svc.call(Method::POST, "/v1/imports", &op, Some(body)).await;
        assert_eq!(a.status, 422, "{}", a.text);
        assert_eq!(a.body["errors"][0]["field"], field, "{}", a.text);
        assert!(a.text.contains(named), "{}", a.text);
    }

    let id = start(
        &svc,
        &op,
        json!({"connection_id": cid, "kind": "customers"}),
    )
    .await;
    let mut moves = BTreeSet::new();
    let mut paced = false;
    // Steady, so that every move of the progress is seen.
    let mut poll =
        Poll::new(format!("import {id} to end"), ENDED_LIMIT).every(Duration::from_millis(40));
    let done = loop {
        let a = svc
            .call(Method::GET, &format!("/v1/imports/{id}"), &op, None)
            .await;
        let state = a.body["state"].as_str().unwrap().to_owned();
        if state == "running" {
            moves.insert(a.body["progress"]["done"].as_u64().unwrap());
            paced |= a.body["progress"]["per_second"]
                .as_f64()
                .is_some_and(|r| r > 0.0)
                && a.body["progress"]["eta_seconds"].is_u64();
        }
        if !wait::ongoing(&a.body) {
            break a.body;
        }
        poll.pause(|| format!("last: {}\n{}", a.text, svc.log_detail()))
            .await;
    };
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert!(
        moves.len() >= 5,
        "progress moved {} times: {moves:?}",
        moves.len()
    );
    assert!(paced, "a running import shows its pace and time left");

    // The first attempt fails (the list answers HTTP 500 past the client's
    // retries); the second succeeds, and the run shows no error.
    adc.state().clear_faults();
    adc.state()
        .add_fault(adc_sim::FaultRule::parse("GetCustomerList_V2=http_500,times=4").unwrap())
        .unwrap();
    let again = start(
        &svc,
        &op,
        json!({"connection_id": cid, "kind": "customers"}),
    )
    .await;
    let done = wait(&svc, &op, &again).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert!(done["attempts"].as_u64().unwrap() >= 2, "{done:#}");
    assert!(done["error"].is_null(), "{done:#}");
}

/// Credentials refused part way: the run stops there, and starts no read
/// after the refusal came back (Alarm.com locks a login out after failed
/// attempts, so a change that lets reads run ahead must stop them there).
async fn refused_credentials_stop_the_reads_at_once(backend: Backend) {
    // Enough customers that the run is still reading when the fault comes.
    let adc = adc_sim(2_000).await;
    adc.state()
        .add_fault(adc_sim::FaultRule::parse("GetCustomerInfo_V2=latency:10").unwrap())
        .unwrap();
    let svc = Service::start_on(backend, env(&[("CROSSLINK__ADC__IMPORT_CONCURRENCY", "4")])).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let cid = alarm_com(&svc, &admin, &adc).await;
    let id = start(
        &svc,
        &op,
        json!({"connection_id": cid, "kind": "customers"}),
    )
    .await;
    seen_100(&svc, &op, &id).await;
    adc.state()
        .add_fault(adc_sim::FaultRule::parse("GetCustomerInfo_V2=bad_credentials").unwrap())
        .unwrap();
    let refused_from = adc.state().request_count("GetCustomerInfo_V2");
    let done = wait(&svc, &op, &id).await;
    assert_ne!(done["state"], "succeeded", "{done:#}");
    assert!(count(&done, "seen") < listed(&adc).len() as u64, "{done:#}");
    // The reads in flight when the fault came, and those started before
    // the first refusal came back: at most two rounds of 4.
    let after = adc.state().request_count("GetCustomerInfo_V2") - refused_from;
    assert!(
        after <= 8,
        "{after} customer reads after the credentials were refused"
    );
}

on_both_backends!(
    a_filtered_import_takes_exactly_the_matching_customers,
    a_second_run_imports_only_the_customers_added_since,
    a_run_with_nothing_new_reads_the_list_and_writes_no_record,
    a_run_killed_half_way_resumes_with_nothing_imported_twice,
    faults_during_an_import_still_import_every_customer_once,
    users_then_customers_link_each_rep,
    preconditions_are_clear_problems_before_anything_starts,
    a_cancelled_run_stops_and_a_new_one_takes_up_the_rest,
    customers_billing_holds_are_matched_not_doubled,
    users_billing_holds_are_matched,
    busy_faults_and_timeouts_are_retried_within_the_run,
    progress_moves_filters_are_checked_and_a_good_end_clears_the_error,
    refused_credentials_stop_the_reads_at_once,
);
