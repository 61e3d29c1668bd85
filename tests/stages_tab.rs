//! End to end: the Stages tab (live views, edits, test mode in the site's
//! time zone) and sites that Stages sends to billing.

mod support;

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

async fn world(backend: Backend, seed_sites: usize) -> World {
    let sim = start_sim(seed_sites).await;
    let svc = Service::in_process(backend, Vec::new()).await;
    let admin = Who::admin("acme");
    // Credentials stored and the migration (S20) they queue over.
    let cid = svc.stages_connection(&admin, &sim).await;
    World {
        sim,
        svc,
        op: Who::new("acme", "olivia", "operator"),
        admin,
        cid,
    }
}

impl World {
    /// Points the simulator's callbacks at the service with a fresh inbound credential.
    async fn connect_callbacks(&self) {
        self.svc
            .connect_callbacks(&self.admin, &self.cid, &self.sim)
            .await;
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.svc.call(method, path, &self.op, body).await
    }

    fn stages(&self, rest: &str) -> String {
        format!("/v1/connections/{}/stages{rest}", self.cid)
    }

    /// A site of three devices in `tz`; returns (site_no, device ids).
    fn site_in(&self, tz: &str, devices: usize) -> (String, Vec<String>) {
        let created = self
            .sim
            .state()
            .create_site(serde_json::from_value(json!({
                "name": "Babbage Works", "address1": "5 Engine Row", "city": "Phoenix", "state": "AZ", "zip": "85001",
                "phone": "602-555-0100", "time_zone": tz,
                "devices": (0..devices).map(|i| json!({"transmitter_code": format!("77{}{i:03}", rand_suffix())})).collect::<Vec<_>>(),
            })).unwrap())
            .unwrap();
        let v = serde_json::to_value(created).unwrap();
        let site_no = v["site"]["site_no"].as_str().unwrap().to_owned();
        let ids = v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["device_id"].as_str().unwrap().to_owned())
            .collect();
        (site_no, ids)
    }
}

fn rand_suffix() -> u32 {
    (uuid::Uuid::now_v7().as_u128() % 100_000) as u32
}

async fn live_views_are_paged_and_upstream_failures_name_the_connection(backend: Backend) {
    let w = world(backend, 2).await;
    let site_no = w.sim.state().sites()[0].site_no.clone();
    // Each view lists what Stages holds for the site: the same records, by id.
    let state = w.sim.state();
    let ids = |records: Vec<Value>, key: &str| {
        let mut ids: Vec<String> = records
            .iter()
            .map(|r| {
                r[key]
                    .as_str()
                    .unwrap_or_else(|| panic!("{key} in {r}"))
                    .to_owned()
            })
            .collect();
        ids.sort();
        ids
    };
    let as_values = |v: Value| v.as_array().unwrap().clone();
    let expected = [
        (
            "devices",
            "device_id",
            as_values(serde_json::to_value(state.devices(&site_no)).unwrap()),
        ),
        (
            "notes",
            "note_id",
            as_values(serde_json::to_value(state.notes(&site_no)).unwrap()),
        ),
        (
            "contacts",
            "contact_id",
            as_values(serde_json::to_value(state.contacts(&site_no)).unwrap()),
        ),
        (
            "history",
            "history_id",
            as_values(
                serde_json::to_value(
                    state
                        .with_db(|db| db.site_history(&site_no, None, None, chrono::Utc::now()))
                        .unwrap(),
                )
                .unwrap(),
            ),
        ),
    ];
    for (view, key, held) in expected {
        let a = w
            .call(
                Method::GET,
                &w.stages(&format!("/sites/{site_no}/{view}?page_size=500")),
                None,
            )
            .await;
        assert_eq!(a.status, 200, "{view}: {}", a.text);
        assert!(!held.is_empty(), "the seeded site has {view}");
        assert_eq!(
            ids(as_values(a.body["items"].clone()), key),
            ids(held, key),
            "{view}: {}",
            a.text
        );
    }
    let contacts = w
        .call(
            Method::GET,
            &w.stages(&format!("/sites/{site_no}/contacts?page_size=1")),
            None,
        )
        .await;
    let total = w.sim.state().contacts(&site_no).len();
    assert_eq!(contacts.body["items"].as_array().unwrap().len(), 1);
    if total > 1 {
        let token = contacts.body["next_page_token"].as_str().unwrap();
        let next = w
            .call(
                Method::GET,
                &w.stages(&format!(
                    "/sites/{site_no}/contacts?page_size=1&page_token={token}"
                )),
                None,
            )
            .await;
        assert_ne!(
            next.body["items"][0]["contact_id"],
            contacts.body["items"][0]["contact_id"]
        );
    }
    let device_id = serde_json::to_value(&w.sim.state().devices(&site_no)[0]).unwrap()["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let zones = w
        .call(
            Method::GET,
            &w.stages(&format!("/devices/{device_id}/configurations")),
            None,
        )
        .await;
    assert_eq!(
        zones.body["items"].as_array().unwrap().len(),
        w.sim.state().configurations(&device_id).len()
    );
    let history = w
        .call(
            Method::GET,
            &w.stages(&format!("/devices/{device_id}/history")),
            None,
        )
        .await;
    assert!(history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["device_id"] == device_id.as_str()));

    w.sim
        .state()
        .add_fault(stages_sim::FaultRule::parse("GET /api/v1/sites/*=error:500,times=2").unwrap())
        .unwrap();
    let bad = w
        .call(
            Method::GET,
            &w.stages(&format!("/sites/{site_no}/notes")),
            None,
        )
        .await;
    assert_eq!(bad.assert_problem(502), "upstream_bad_answer");
    assert!(
        bad.body["detail"].as_str().unwrap().contains("'Stages'"),
        "{}",
        bad.text
    );
    w.sim
        .state()
        .add_fault(
            stages_sim::FaultRule::parse("GET /api/v1/sites/*=latency:4000,times=2").unwrap(),
        )
        .unwrap();
    w.call(
        Method::GET,
        &w.stages(&format!("/sites/{site_no}/notes")),
        None,
    )
    .await
    .assert_problem(504);
}

async fn edits_in_stages_reach_the_linked_billing_system(backend: Backend) {
    let w = world(backend, 0).await;
    let (site_no, devices) = w.site_in("America/Phoenix", 2);
    w.call(
        Method::PUT,
        "/v1/billing/sites/B1",
        Some(json!({"name": "Babbage Works"})),
    )
    .await;
    w.call(
        Method::PUT,
        "/v1/billing/systems/BS1",
        Some(json!({"site_id": "B1"})),
    )
    .await;
    w.call(
        Method::PUT,
        "/v1/billing/systems/BS2",
        Some(json!({"site_id": "B1"})),
    )
    .await;
    let l = w
        .call(
            Method::POST,
            "/v1/links",
            Some(
                json!({"connection_id": w.cid, "billing_site_id": "B1", "stages_site_no": site_no,
        "systems": [{"billing_system_id": "BS1", "stages_device_id": devices[0]}]}),
            ),
        )
        .await;
    assert_eq!(l.status, 201, "{}", l.text);
    // Link the other, unlinked device to a billing system of the linked site.
    let l2 = w
        .call(
            Method::POST,
            "/v1/links",
            Some(
                json!({"connection_id": w.cid, "billing_site_id": "B1", "stages_site_no": site_no,
        "systems": [{"billing_system_id": "BS2", "stages_device_id": devices[1]}]}),
            ),
        )
        .await;
    assert_eq!(l2.status, 201, "{}", l2.text);
    assert_eq!(
        l2.body["items"].as_array().unwrap().len(),
        1,
        "only the system link is new"
    );

    let edited = w
        .call(
            Method::PATCH,
            &w.stages(&format!("/devices/{}", devices[0])),
            Some(json!({"location": "Boiler room", "transmitter_code": "7712345"})),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    assert_eq!(edited.body["billing_system_id"], "BS1");
    let system = w.call(Method::GET, "/v1/billing/systems/BS1", None).await;
    assert_eq!(system.body["location"], "Boiler room");
    assert_eq!(system.body["system_number"], "7712345");
    let feed = w
        .call(Method::GET, "/v1/events?types=billing.system.updated", None)
        .await;
    assert!(
        feed.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["subject_id"] == "BS1" && e["data"]["source"] == "stages_edit"),
        "{}",
        feed.text
    );

    let contact = w
        .call(
            Method::POST,
            &w.stages(&format!("/sites/{site_no}/contacts")),
            Some(json!({"name": "Ada", "relation": "Owner", "pin": "4321",
        "phones": [{"kind": "mobile", "number": "602-555-0199"}]})),
        )
        .await;
    assert_eq!(contact.status, 201, "{}", contact.text);
    assert!(!contact.text.contains("4321"), "PINs are write-only");
    assert_eq!(contact.body["has_pin"], true);
    let contact_id = contact.body["contact_id"].as_str().unwrap();
    assert!(
        contact.headers["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("/stages/sites/{site_no}/contacts/{contact_id}")),
        "{:?}",
        contact.headers
    );
    let patched = w
        .call(
            Method::PATCH,
            &w.stages(&format!("/sites/{site_no}/contacts/{contact_id}")),
            Some(json!({"relation": "Neighbour"})),
        )
        .await;
    assert_eq!(patched.body["relation"], "Neighbour");
    let zone = w
        .call(
            Method::POST,
            &w.stages(&format!("/devices/{}/configurations", devices[0])),
            Some(json!({"point": 7, "description": "Back door"})),
        )
        .await;
    assert_eq!(zone.status, 201, "{}", zone.text);
    assert_eq!(w.sim.state().configurations(&devices[0]).len(), 1);
}

async fn tests_are_given_in_the_sites_time_zone_across_daylight_saving(backend: Backend) {
    let w = world(backend, 0).await;
    let (_, devices) = w.site_in("America/New_York", 1);
    let d = &devices[0];
    // The next daylight-saving days in New York, whatever today is.
    let (spring, fall) = clock::next_dst_days("America/New_York");
    // 01:30 on the spring-forward day: 02:00-03:00 does not exist in New York.
    let t = w
        .call(
            Method::POST,
            &w.stages(&format!("/devices/{d}/tests")),
            Some(json!({"start": clock::local_text(clock::at(spring, 1, 30)),
                "end": clock::local_text(clock::at(spring, 4, 0)), "reason": "panel swap"})),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.text);
    // 01:30 EST (-05:00) is 06:30Z; 04:00 EDT (-04:00) is 08:00Z: 1.5 real hours.
    assert_eq!(
        t.body["window"]["start"]["utc"],
        clock::utc_text(clock::at(spring, 6, 30))
    );
    assert_eq!(t.body["window"]["start"]["utc_offset"], "-05:00");
    assert_eq!(
        t.body["window"]["end"]["utc"],
        clock::utc_text(clock::at(spring, 8, 0))
    );
    assert_eq!(t.body["window"]["end"]["utc_offset"], "-04:00");
    // 01:30 on the fall-back day happens twice: a start takes the first
    // (01:30 EDT, 05:30Z).
    let t2 = w
        .call(
            Method::POST,
            &w.stages(&format!("/devices/{d}/tests")),
            Some(json!({"start": clock::local_text(clock::at(fall, 1, 30)),
                "end": clock::local_text(clock::at(fall, 3, 0))})),
        )
        .await;
    assert_eq!(t2.status, 201, "{}", t2.text);
    assert_eq!(t2.body["window"]["start"]["reading"], "earlier_of_two");
    assert_eq!(
        t2.body["window"]["start"]["utc"],
        clock::utc_text(clock::at(fall, 5, 30))
    );
    let listed = w
        .call(Method::GET, &w.stages(&format!("/devices/{d}/tests")), None)
        .await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(w.sim.state().tests(d).len(), 2);

    // End one of the two.
    let first = t.body["test"]["test_id"].as_str().unwrap();
    assert_eq!(
        w.call(
            Method::DELETE,
            &w.stages(&format!("/devices/{d}/tests/{first}")),
            None
        )
        .await
        .status,
        204
    );
    let listed = w
        .call(Method::GET, &w.stages(&format!("/devices/{d}/tests")), None)
        .await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        listed.body["items"][0]["test_id"],
        t2.body["test"]["test_id"]
    );
    // Stages' own history shows what the service did, and so does the device's history view.
    let codes: Vec<String> = w
        .sim
        .state()
        .history(d)
        .iter()
        .map(|h| {
            serde_json::to_value(h).unwrap()["event_code"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        codes.iter().filter(|c| *c == "TEST_START").count(),
        2,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| *c == "TEST_END").count(),
        1,
        "{codes:?}"
    );
    let history = w
        .call(
            Method::GET,
            &w.stages(&format!("/devices/{d}/history")),
            None,
        )
        .await;
    assert!(
        history.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["event_code"] == "TEST_END"),
        "{}",
        history.text
    );

    // Bad windows, tomorrow: each refused for its own reason.
    let tz = "America/New_York";
    let tests_before = w.sim.state().tests(d).len();
    for (window, reason) in [
        (
            clock::window(tz, chrono::Duration::days(1), -chrono::Duration::hours(1)),
            "after the start",
        ),
        (
            clock::window(tz, chrono::Duration::days(1), chrono::Duration::days(10)),
            "at most 72 hours",
        ),
        (
            clock::window(tz, -chrono::Duration::days(2), chrono::Duration::hours(1)),
            "already past",
        ),
    ] {
        let refused = w
            .call(
                Method::POST,
                &w.stages(&format!("/devices/{d}/tests")),
                Some(window.clone()),
            )
            .await;
        refused.assert_problem(422);
        assert!(refused.text.contains(reason), "{window}: {}", refused.text);
    }
    assert_eq!(
        w.sim.state().tests(d).len(),
        tests_before,
        "no refused window reached Stages"
    );
}

async fn a_device_in_alarm_is_refused_and_reads_say_what_runs(backend: Backend) {
    let w = world(backend, 0).await;
    let (site_no, devices) = w.site_in("America/Phoenix", 3);
    w.sim
        .state()
        .set_device_status(&devices[1], serde_json::from_value(json!("alarm")).unwrap())
        .unwrap();
    let refused = w
        .call(
            Method::POST,
            &w.stages(&format!("/devices/{}/tests", devices[1])),
            Some(clock::window(
                "America/Phoenix",
                chrono::Duration::days(1),
                chrono::Duration::hours(1),
            )),
        )
        .await;
    assert_eq!(refused.assert_problem(409), "device_state");
    assert!(refused.body["detail"].as_str().unwrap().contains("alarm"));

    // Every device of the site: each answers for itself; one runs now.
    let now_local = (chrono::Utc::now() - chrono::Duration::hours(7)).naive_utc(); // Phoenix: UTC-7, no DST
    let start = (now_local - chrono::Duration::minutes(5))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let end = (now_local + chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let all = w
        .call(
            Method::POST,
            &w.stages(&format!("/sites/{site_no}/tests")),
            Some(json!({"start": start, "end": end})),
        )
        .await;
    assert_eq!(all.status, 200, "{}", all.text);
    let results = all.body["devices"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results.iter().filter(|r| r["test"].is_object()).count(), 2);
    assert!(results
        .iter()
        .find(|r| r["device_id"] == devices[1].as_str())
        .unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("alarm"));

    w.call(
        Method::PUT,
        "/v1/billing/sites/P1",
        Some(json!({"name": "Phoenix"})),
    )
    .await;
    w.call(
        Method::PUT,
        "/v1/billing/systems/PS0",
        Some(json!({"site_id": "P1"})),
    )
    .await;
    w.call(
        Method::PUT,
        "/v1/billing/systems/PS1",
        Some(json!({"site_id": "P1"})),
    )
    .await;
    let l = w.call(Method::POST, "/v1/links", Some(json!({"connection_id": w.cid, "billing_site_id": "P1", "stages_site_no": site_no,
        "systems": [{"billing_system_id": "PS0", "stages_device_id": devices[0]}, {"billing_system_id": "PS1", "stages_device_id": devices[1]}]}))).await;
    assert_eq!(l.status, 201, "{}", l.text);
    let s0 = w.call(Method::GET, "/v1/billing/systems/PS0", None).await;
    assert_eq!(s0.body["stages_status"][0]["on_test"], true, "{}", s0.text);
    let s1 = w.call(Method::GET, "/v1/billing/systems/PS1", None).await;
    assert_eq!(s1.body["stages_status"][0]["in_alarm"], true, "{}", s1.text);
    let site = w.call(Method::GET, "/v1/billing/sites/P1", None).await;
    assert_eq!(site.body["stages_status"].as_array().unwrap().len(), 2);
}

async fn send(w: &World, event: Value) -> Value {
    let reply = w
        .sim
        .state()
        .send_callback(event)
        .await
        .expect("the callback was delivered");
    serde_json::to_value(reply).unwrap()
}

async fn stages_sends_sites_to_billing_as_new_and_existing_customers(backend: Backend) {
    let w = world(backend, 0).await;
    w.connect_callbacks().await;
    let (site_no, devices) = w.site_in("America/Phoenix", 3);
    let event = json!({"event_id": "send-1", "type": "site.send_to_billing", "site_no": site_no,
        "target": {"kind": "new_customer", "business": true, "first_name": "ignored", "last_name": "Babbage Engines LLC"}});
    let reply = send(&w, event.clone()).await;
    assert_eq!(reply["status"], 201, "{reply}");
    let body = &reply["body"];
    let customer_id = body["customer_id"].as_str().unwrap();
    let site_id = body["site_id"].as_str().unwrap();
    assert_eq!(body["systems"].as_array().unwrap().len(), 3);
    let customer = w
        .call(
            Method::GET,
            &format!("/v1/billing/customers/{customer_id}"),
            None,
        )
        .await;
    assert_eq!(customer.body["kind"], "business");
    assert_eq!(customer.body["business_name"], "Babbage Engines LLC");
    assert_eq!(
        customer.body["address1"], "5 Engine Row",
        "the site's address when none is given"
    );
    let site = w
        .call(Method::GET, &format!("/v1/billing/sites/{site_id}"), None)
        .await;
    assert_eq!(site.body["customer_id"], customer_id);
    assert_eq!(site.body["links"].as_array().unwrap().len(), 1);
    // Each device carries its own system's id in Stages.
    assert_eq!(
        serde_json::to_value(w.sim.state().site(&site_no).unwrap()).unwrap()["billing_id"],
        site_id
    );
    for s in body["systems"].as_array().unwrap() {
        let d = serde_json::to_value(
            w.sim
                .state()
                .device(s["device_id"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(d["billing_id"], s["system_id"]);
    }
    assert!(devices.iter().all(|d| body["systems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["device_id"] == d.as_str())));
    let created = w
        .call(
            Method::GET,
            "/v1/events?types=billing.customer.created,billing.site.created,billing.system.created",
            None,
        )
        .await;
    assert_eq!(
        created.body["items"].as_array().unwrap().len(),
        5,
        "published: {}",
        created.text
    );

    // The same event again: the same answer, nothing made twice.
    let again = send(&w, event.clone()).await;
    assert_eq!(again["body"], *body);
    // Its id with another body is refused, naming the event.
    let mut other = event;
    other["target"]["last_name"] = json!("Other Engines LLC");
    let reused = send(&w, other).await;
    assert_eq!(reused["status"], 422, "{reused}");
    assert_eq!(reused["body"]["code"], "event_id_reused", "{reused}");
    let created = w
        .call(
            Method::GET,
            "/v1/events?types=billing.customer.created,billing.site.created,billing.system.created",
            None,
        )
        .await;
    assert_eq!(created.body["items"].as_array().unwrap().len(), 5);
    // Sending an already linked site under a new event is refused.
    let refused = send(
        &w,
        json!({"event_id": "send-2", "type": "site.send_to_billing", "site_no": site_no,
        "target": {"kind": "existing_customer", "customer_id": customer_id}}),
    )
    .await;
    assert_eq!(refused["status"], 409, "{refused}");

    // To an existing customer found by search.
    let found = w
        .call(Method::GET, "/v1/billing/customers?q=babbage", None)
        .await;
    assert_eq!(found.body["items"][0]["id"], customer_id);
    let (second_site, _) = w.site_in("America/Phoenix", 1);
    let to_existing = send(
        &w,
        json!({"event_id": "send-3", "type": "site.send_to_billing", "site_no": second_site,
        "target": {"kind": "existing_customer", "customer_id": customer_id}}),
    )
    .await;
    assert_eq!(to_existing["status"], 201, "{to_existing}");
    assert_eq!(to_existing["body"]["customer_id"], customer_id);
    assert_eq!(to_existing["body"]["customer_created"], false);
}

async fn a_send_that_fails_in_stages_leaves_nothing_and_can_be_sent_again(backend: Backend) {
    let w = world(backend, 0).await;
    w.connect_callbacks().await;
    let (site_no, _) = w.site_in("America/Phoenix", 3);
    // Writing the billing id to the second device fails (twice, beyond the client's one retry).
    w.sim
        .state()
        .add_fault(
            stages_sim::FaultRule::parse("PATCH /api/v1/devices/*=error:503,times=3").unwrap(),
        )
        .unwrap();
    let event = json!({"event_id": "send-9", "type": "site.send_to_billing", "site_no": site_no,
        "target": {"kind": "new_customer", "first_name": "Ada", "last_name": "Lovelace"}});
    let failed = send(&w, event.clone()).await;
    assert_eq!(failed["status"], 502, "{failed}");
    assert_eq!(
        w.call(Method::GET, "/v1/billing/customers", None)
            .await
            .body["items"],
        json!([]),
        "nothing half made"
    );
    assert_eq!(
        w.call(Method::GET, "/v1/links", None).await.body["items"],
        json!([])
    );
    // Stages is fine again: the same event now succeeds.
    w.sim.state().clear_faults();
    let ok = send(&w, event).await;
    assert_eq!(ok["status"], 201, "{ok}");
    assert_eq!(
        w.call(Method::GET, "/v1/billing/customers", None)
            .await
            .body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        w.call(Method::GET, "/v1/links", None).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

/// The fields a 422 names.
fn fields_named(a: &Answer) -> Vec<String> {
    a.body["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|f| f["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn contacts_are_deleted_and_zones_edited_in_stages(backend: Backend) {
    let w = world(backend, 0).await;
    let (site_no, devices) = w.site_in("America/Phoenix", 1);
    let d = &devices[0];
    let mut ids = Vec::new();
    for name in ["Ada", "Charles"] {
        let c = w
            .call(
                Method::POST,
                &w.stages(&format!("/sites/{site_no}/contacts")),
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(c.status, 201, "{}", c.text);
        ids.push(c.body["contact_id"].as_str().unwrap().to_owned());
    }
    let gone = w
        .call(
            Method::DELETE,
            &w.stages(&format!("/sites/{site_no}/contacts/{}", ids[0])),
            None,
        )
        .await;
    assert_eq!(gone.status, 204, "{}", gone.text);
    let held: Vec<String> = w
        .sim
        .state()
        .contacts(&site_no)
        .iter()
        .map(|c| {
            serde_json::to_value(c).unwrap()["contact_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        held,
        [ids[1].clone()],
        "only the other contact is left in Stages"
    );
    w.call(
        Method::DELETE,
        &w.stages(&format!("/sites/{site_no}/contacts/{}", ids[0])),
        None,
    )
    .await
    .assert_problem(404);

    // Zones: named by point (when only one zone has it) or by config id.
    let mut zone_ids = Vec::new();
    for (point, description) in [(3, "Front door"), (7, "Back door"), (9, "Smoke")] {
        let z = w
            .call(
                Method::POST,
                &w.stages(&format!("/devices/{d}/configurations")),
                Some(json!({"point": point, "description": description})),
            )
            .await;
        assert_eq!(z.status, 201, "{}", z.text);
        zone_ids.push(z.body["config_id"].as_str().unwrap().to_owned());
    }
    let by_point = w
        .call(
            Method::PATCH,
            &w.stages(&format!("/devices/{d}/configurations/7")),
            Some(json!({"description": "Patio door", "event_code": "BA"})),
        )
        .await;
    assert_eq!(by_point.status, 200, "{}", by_point.text);
    assert_eq!(by_point.body["config_id"], zone_ids[1].as_str());
    let by_id = w
        .call(
            Method::PATCH,
            &w.stages(&format!("/devices/{d}/configurations/{}", zone_ids[2])),
            Some(json!({"point": 7, "area": "2"})),
        )
        .await;
    assert_eq!(by_id.status, 200, "{}", by_id.text);
    let zones: Vec<Value> = w
        .sim
        .state()
        .configurations(d)
        .iter()
        .map(|z| serde_json::to_value(z).unwrap())
        .collect();
    assert_eq!(zones.len(), 3, "edited in place, none added: {zones:?}");
    let zone = |id: &str| zones.iter().find(|z| z["config_id"] == id).unwrap().clone();
    assert_eq!(zone(&zone_ids[1])["description"], "Patio door");
    assert_eq!(zone(&zone_ids[1])["event_code"], "BA");
    assert_eq!(zone(&zone_ids[1])["point"], 7);
    assert_eq!(zone(&zone_ids[2])["point"], 7);
    assert_eq!(zone(&zone_ids[2])["area"], "2");
    assert_eq!(zone(&zone_ids[2])["description"], "Smoke");
    assert_eq!(zone(&zone_ids[0])["description"], "Front door");
    // Two zones now have point 7: the point no longer names one.
    let ambiguous = w
        .call(
            Method::PATCH,
            &w.stages(&format!("/devices/{d}/configurations/7")),
            Some(json!({"description": "x"})),
        )
        .await;
    assert_eq!(ambiguous.assert_problem(409), "ambiguous_zone");
    let zero = w
        .call(
            Method::PATCH,
            &w.stages(&format!("/devices/{d}/configurations/{}", zone_ids[0])),
            Some(json!({"point": 0})),
        )
        .await;
    zero.assert_problem(422);
    assert_eq!(fields_named(&zero), ["point"]);
    w.call(
        Method::PATCH,
        &w.stages(&format!("/devices/{d}/configurations/42")),
        Some(json!({"description": "x"})),
    )
    .await
    .assert_problem(404);
    assert_eq!(
        serde_json::to_value(w.sim.state().configurations(d)).unwrap(),
        serde_json::to_value(&zones).unwrap(),
        "refused edits changed nothing"
    );
}

async fn history_is_newest_first_and_filters_by_date_and_tests(backend: Backend) {
    let w = world(backend, 0).await;
    let (site_no, devices) = w.site_in("America/Phoenix", 2);
    let d = &devices[0];
    let now = chrono::Utc::now();
    let days_ago = |n: i64| now - chrono::Duration::days(n);
    for (n, code) in [(3, "E130"), (1, "E131"), (2, "E132")] {
        w.sim
            .state()
            .with_db(|db| db.add_signal(d, days_ago(n), code, "burglary", Some(1)))
            .unwrap();
    }
    // A test running now: what arrives meanwhile is flagged by Stages.
    let started = w
        .call(
            Method::POST,
            &w.stages(&format!("/devices/{d}/tests")),
            Some(clock::window(
                "America/Phoenix",
                -chrono::Duration::minutes(5),
                chrono::Duration::hours(1),
            )),
        )
        .await;
    assert_eq!(started.status, 201, "{}", started.text);
    w.sim
        .state()
        .add_signal(d, "E602", "periodic test", None)
        .unwrap();

    let list = |path: String| {
        let w = &w;
        async move {
            let a = w.call(Method::GET, &path, None).await;
            assert_eq!(a.status, 200, "{}", a.text);
            a.body
        }
    };
    let items = |v: &Value| v["items"].as_array().unwrap().clone();
    let all = list(w.stages(&format!("/devices/{d}/history?page_size=500"))).await;
    let times: Vec<String> = items(&all)
        .iter()
        .map(|h| h["occurred_at"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
    assert_eq!(
        items(&all)[0]["event_code"],
        "E602",
        "the latest signal leads"
    );
    assert_eq!(items(&all).len(), w.sim.state().history(d).len());
    // The first page of one holds the newest entry; the next page the one before.
    let first = list(w.stages(&format!("/devices/{d}/history?page_size=1"))).await;
    assert_eq!(items(&first)[0], items(&all)[0]);
    let token = first["next_page_token"].as_str().unwrap();
    let second = list(w.stages(&format!(
        "/devices/{d}/history?page_size=1&page_token={token}"
    )))
    .await;
    assert_eq!(items(&second)[0], items(&all)[1]);

    // A window of dates: only the signal of two days ago.
    let from = (days_ago(2) - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = (days_ago(2) + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for path in [
        format!("/devices/{d}/history?from={from}&to={to}"),
        format!("/sites/{site_no}/history?from={from}&to={to}"),
    ] {
        let window = list(w.stages(&path)).await;
        let codes: Vec<&str> = window["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["event_code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["E132"], "{path}");
    }
    let since = list(w.stages(&format!("/devices/{d}/history?from={from}"))).await;
    assert!(items(&since)
        .iter()
        .all(|h| h["occurred_at"].as_str().unwrap() >= from.as_str()));
    assert!(items(&since).iter().any(|h| h["event_code"] == "E131"));
    assert!(!items(&since).iter().any(|h| h["event_code"] == "E130"));

    // Tests only: what Stages flagged as received on test, on both views.
    for path in [
        format!("/devices/{d}/history?kind=tests"),
        format!("/sites/{site_no}/history?kind=tests"),
    ] {
        let tests = list(w.stages(&path)).await;
        let flagged = items(&tests);
        assert!(!flagged.is_empty(), "{path}");
        assert!(
            flagged.iter().all(|h| h["on_test"] == true),
            "{path}: {flagged:?}"
        );
        assert!(flagged.iter().any(|h| h["event_code"] == "E602"), "{path}");
    }
    let held_on_test = w
        .sim
        .state()
        .history(d)
        .iter()
        .filter(|h| serde_json::to_value(h).unwrap()["on_test"] == true)
        .count();
    assert_eq!(
        items(&list(w.stages(&format!("/devices/{d}/history?kind=tests"))).await).len(),
        held_on_test
    );

    // Bad filters name their parameter.
    let backwards = w
        .call(
            Method::GET,
            &w.stages(&format!("/devices/{d}/history?from={to}&to={from}")),
            None,
        )
        .await;
    backwards.assert_problem(422);
    assert_eq!(fields_named(&backwards), ["to"]);
    let bad_time = w
        .call(
            Method::GET,
            &w.stages(&format!("/sites/{site_no}/history?from=yesterday")),
            None,
        )
        .await;
    bad_time.assert_problem(422);
    assert!(bad_time.text.contains("from"), "{}", bad_time.text);
    w.call(
        Method::GET,
        &w.stages(&format!("/devices/{d}/history?kind=alarms")),
        None,
    )
    .await
    .assert_problem(422);
}

async fn tests_run_for_a_duration_and_a_site_clears_them_all(backend: Backend) {
    let w = world(backend, 0).await;
    let tz = "America/New_York";
    let (site_no, devices) = w.site_in(tz, 3);
    let start = clock::local_text(clock::local_now(tz) + chrono::Duration::hours(1));
    let t = w
        .call(
            Method::POST,
            &w.stages(&format!("/devices/{}/tests", devices[0])),
            Some(json!({"start": start, "hours": 1, "minutes": 30, "reason": "service"})),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.text);
    let utc = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert_eq!(
        utc(&t.body["window"]["end"]["utc"]) - utc(&t.body["window"]["start"]["utc"]),
        chrono::Duration::minutes(90)
    );
    let held = serde_json::to_value(&w.sim.state().tests(&devices[0])[0]).unwrap();
    assert_eq!(
        utc(&held["expire"]) - utc(&held["effective"]),
        chrono::Duration::minutes(90),
        "Stages holds a 90-minute test: {held}"
    );
    // Minutes alone are a duration too.
    let short = w
        .call(
            Method::POST,
            &w.stages(&format!("/devices/{}/tests", devices[1])),
            Some(json!({"start": start, "minutes": 45})),
        )
        .await;
    assert_eq!(short.status, 201, "{}", short.text);

    // Exactly one of an end or a duration, each refusal naming its field.
    let end = clock::local_text(clock::local_now(tz) + chrono::Duration::hours(3));
    for (body, field) in [
        (json!({"start": start, "end": end, "hours": 1}), "end"),
        (json!({"start": start}), "end"),
        (
            json!({"start": start, "hours": 1, "minutes": 60}),
            "minutes",
        ),
        (json!({"start": start, "hours": 0}), "hours"),
        (json!({"start": start, "hours": 100}), "hours"),
    ] {
        for path in [
            format!("/devices/{}/tests", devices[2]),
            format!("/sites/{site_no}/tests"),
        ] {
            let refused = w
                .call(Method::POST, &w.stages(&path), Some(body.clone()))
                .await;
            refused.assert_problem(422);
            assert_eq!(fields_named(&refused), [field], "{body}: {}", refused.text);
        }
    }
    assert!(
        w.sim.state().tests(&devices[2]).is_empty(),
        "nothing refused reached Stages"
    );

    // The whole site by duration: every device gets a test.
    let site = w
        .call(
            Method::POST,
            &w.stages(&format!("/sites/{site_no}/tests")),
            Some(json!({"start": start, "hours": 2})),
        )
        .await;
    assert_eq!(site.status, 200, "{}", site.text);
    assert_eq!(
        site.body["devices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["test"].is_object())
            .count(),
        3
    );
    let held: Vec<usize> = devices
        .iter()
        .map(|d| w.sim.state().tests(d).len())
        .collect();
    assert_eq!(held, [2, 2, 1]);

    // Clear them all: each device says which tests it ended.
    let cleared = w
        .call(
            Method::DELETE,
            &w.stages(&format!("/sites/{site_no}/tests")),
            None,
        )
        .await;
    assert_eq!(cleared.status, 200, "{}", cleared.text);
    let results = cleared.body["devices"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for (d, n) in devices.iter().zip(held) {
        let r = results
            .iter()
            .find(|r| r["device_id"] == d.as_str())
            .unwrap();
        assert_eq!(r["ended"].as_array().unwrap().len(), n, "{r}");
        assert_eq!(r["error"], Value::Null);
        assert!(
            w.sim.state().tests(d).is_empty(),
            "{d} has no test left in Stages"
        );
    }
    // Nothing left: a second clear ends nothing and still answers per device.
    let again = w
        .call(
            Method::DELETE,
            &w.stages(&format!("/sites/{site_no}/tests")),
            None,
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert!(again.body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["ended"] == json!([])));
}

async fn customer_reads_sum_up_stages_and_device_types_reach_billing(backend: Backend) {
    let w = world(backend, 0).await;
    w.connect_callbacks().await;
    let (site_no, devices) = w.site_in("America/Phoenix", 2);
    let put = |path: &'static str, body: Value| {
        let w = &w;
        async move {
            let a = w.call(Method::PUT, path, Some(body)).await;
            assert!(a.status == 200 || a.status == 201, "{path}: {}", a.text);
        }
    };
    put(
        "/v1/billing/customers/C1",
        json!({"first_name": "Ada", "last_name": "Lovelace"}),
    )
    .await;
    put(
        "/v1/billing/sites/B1",
        json!({"customer_id": "C1", "name": "Babbage Works"}),
    )
    .await;
    put(
        "/v1/billing/systems/BS1",
        json!({"site_id": "B1", "panel_type": "VISTA-20P"}),
    )
    .await;
    // BS2's panel type is not known yet on either side.
    put("/v1/billing/systems/BS2", json!({"site_id": "B1"})).await;
    let customer = w.call(Method::GET, "/v1/billing/customers/C1", None).await;
    assert_eq!(customer.status, 200, "{}", customer.text);
    assert_eq!(
        customer.body["stages_status"]["state"], "not_linked",
        "{}",
        customer.text
    );

    let l = w
        .call(
            Method::POST,
            "/v1/links",
            Some(
                json!({"connection_id": w.cid, "billing_site_id": "B1", "stages_site_no": site_no,
                "systems": [{"billing_system_id": "BS1", "stages_device_id": devices[0]},
                            {"billing_system_id": "BS2", "stages_device_id": devices[1]}]}),
            ),
        )
        .await;
    assert_eq!(l.status, 201, "{}", l.text);
    let customer = w.call(Method::GET, "/v1/billing/customers/C1", None).await;
    assert_eq!(
        customer.body["stages_status"]["state"], "normal",
        "{}",
        customer.text
    );
    assert_eq!(
        customer.body["stages_status"]["devices"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // One system on test: the customer is on test, naming the device.
    let t = w
        .call(
            Method::POST,
            &w.stages(&format!("/devices/{}/tests", devices[1])),
            Some(json!({"start": clock::local_text(clock::local_now("America/Phoenix") - chrono::Duration::minutes(5)), "hours": 1})),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.text);
    let customer = w.call(Method::GET, "/v1/billing/customers/C1", None).await;
    let status = &customer.body["stages_status"];
    assert_eq!(status["state"], "on_test", "{}", customer.text);
    let on_test: Vec<&Value> = status["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["on_test"] == true)
        .collect();
    assert_eq!(on_test.len(), 1);
    assert_eq!(on_test[0]["device_id"], devices[1].as_str());
    assert_eq!(on_test[0]["site_id"], "B1");
    assert_eq!(status["reason"], Value::Null);

    // Stages unreachable: still a 200, the state unknown with the reason.
    w.sim
        .state()
        .add_fault(
            stages_sim::FaultRule::parse("GET /api/v1/devices/*=error:500,times=50").unwrap(),
        )
        .unwrap();
    let customer = w.call(Method::GET, "/v1/billing/customers/C1", None).await;
    assert_eq!(customer.status, 200, "{}", customer.text);
    assert_eq!(customer.body["first_name"], "Ada");
    assert_eq!(
        customer.body["stages_status"]["state"], "unknown",
        "{}",
        customer.text
    );
    assert!(
        customer.body["stages_status"]["reason"]
            .as_str()
            .unwrap()
            .contains("Stages"),
        "{}",
        customer.text
    );
    w.sim.state().clear_faults();
    assert_eq!(
        w.call(Method::GET, "/v1/billing/customers?q=ada", None)
            .await
            .body["items"][0]
            .get("stages_status"),
        None,
        "a list does not call Stages"
    );

    // A device type edited in Stages reaches the billing panel type; the edit
    // answer of a linked device names its link.
    let edited = w
        .call(
            Method::PATCH,
            &w.stages(&format!("/devices/{}", devices[0])),
            Some(json!({"device_type": "DSC-NEO"})),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    assert_eq!(edited.body["billing_updated"]["panel_type"], "DSC-NEO");
    assert_eq!(
        edited.body["device"]["link"]["billing_id"], "BS1",
        "{}",
        edited.text
    );
    assert_eq!(
        w.call(Method::GET, "/v1/billing/systems/BS1", None)
            .await
            .body["panel_type"],
        "DSC-NEO"
    );
    // ... and so does one changed in Stages' own screens (Stages calls back;
    // the edit above gave the link its synced values).
    w.sim
        .state()
        .patch_device(
            &devices[0],
            serde_json::from_value(json!({"device_type": "BOSCH-B5512"})).unwrap(),
        )
        .unwrap();
    w.svc.quiesce(&w.op, &[&w.sim]).await;
    let panel = w
        .call(Method::GET, "/v1/billing/systems/BS1", None)
        .await
        .body["panel_type"]
        .clone();
    let jobs = w
        .call(Method::GET, "/v1/jobs?kind=stages_callback", None)
        .await;
    assert_eq!(panel, "BOSCH-B5512", "{}", jobs.text);
    // The other way: a record sync takes the billing panel type to Stages
    // (Auto Sync off, so the billing edit waits for that sync).
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
    let bs1 = w
        .call(Method::GET, "/v1/billing/systems/BS1", None)
        .await
        .body;
    let mut changed = json!({"panel_type": "VISTA-128"});
    for f in ["site_id", "system_number", "location", "info"] {
        changed[f] = bs1[f].clone();
    }
    put("/v1/billing/systems/BS1", changed).await;
    let link_id = l.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["billing_id"] == "BS1")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let diff = w
        .call(Method::GET, &format!("/v1/links/{link_id}/diff"), None)
        .await;
    assert!(
        diff.body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["field"] == "panel_type" && f["status"] == "billing_changed"),
        "{}",
        diff.text
    );
    let synced = w
        .call(
            Method::POST,
            &format!("/v1/links/{link_id}:sync"),
            Some(json!({"fields": {"panel_type": "take_billing"}})),
        )
        .await;
    assert_eq!(synced.status, 200, "{}", synced.text);
    assert_eq!(
        serde_json::to_value(w.sim.state().device(&devices[0]).unwrap()).unwrap()["device_type"],
        "VISTA-128"
    );
    // Stages' echo of that write comes back as a callback: taken too.
    w.svc.quiesce(&w.op, &[&w.sim]).await;
}

async fn a_person_needs_both_names_and_a_dry_run_hides_pins(backend: Backend) {
    let w = world(backend, 0).await;
    w.connect_callbacks().await;
    let (site_no, _) = w.site_in("America/Phoenix", 1);
    for (first, last, field) in [
        ("", "Lovelace", "target.first_name"),
        ("Ada", " ", "target.last_name"),
    ] {
        let reply = send(
            &w,
            json!({"event_id": format!("named-{field}"), "type": "site.send_to_billing", "site_no": site_no,
                "target": {"kind": "new_customer", "first_name": first, "last_name": last}}),
        )
        .await;
        assert_eq!(reply["status"], 422, "{reply}");
        assert!(reply["body"].to_string().contains(field), "{reply}");
    }
    assert_eq!(
        w.call(Method::GET, "/v1/billing/customers", None)
            .await
            .body["items"],
        json!([]),
        "nothing made"
    );
    assert_eq!(
        serde_json::to_value(w.sim.state().site(&site_no).unwrap()).unwrap()["billing_id"],
        Value::Null
    );

    w.call(
        Method::PUT,
        "/v1/billing/sites/P1",
        Some(json!({"name": "Pin Site"})),
    )
    .await;
    let dry = w
        .call(
            Method::POST,
            &format!("/v1/connections/{}/push?dry_run=true", w.cid),
            Some(json!({"billing_site_id": "P1",
                "site": {"time_zone": "America/Phoenix"},
                "contacts": [{"name": "Ada", "pin": "987654"}, {"name": "Charles"}]})),
        )
        .await;
    assert_eq!(dry.status, 200, "{}", dry.text);
    assert!(!dry.text.contains("987654"), "{}", dry.text);
    assert_eq!(dry.body["would_send"]["contacts"][0]["pin"], "********");
    assert_eq!(dry.body["would_send"]["contacts"][1].get("pin"), None);
    assert_eq!(w.sim.state().site_count(), 1, "a dry run creates nothing");
}

on_both_backends!(
    live_views_are_paged_and_upstream_failures_name_the_connection,
    edits_in_stages_reach_the_linked_billing_system,
    tests_are_given_in_the_sites_time_zone_across_daylight_saving,
    a_device_in_alarm_is_refused_and_reads_say_what_runs,
    stages_sends_sites_to_billing_as_new_and_existing_customers,
    a_send_that_fails_in_stages_leaves_nothing_and_can_be_sent_again,
    contacts_are_deleted_and_zones_edited_in_stages,
    history_is_newest_first_and_filters_by_date_and_tests,
    tests_run_for_a_duration_and_a_site_clears_them_all,
    customer_reads_sum_up_stages_and_device_types_reach_billing,
    a_person_needs_both_names_and_a_dry_run_hides_pins,
);

/// A choice list Stages answers whole is paged like every other list.
#[tokio::test]
async fn lookup_lists_honour_page_size() {
    let w = world(Backend::Sqlite, 0).await;
    let all = w
        .call(Method::GET, &w.stages("/lookups/regions"), None)
        .await;
    assert_eq!(all.status, 200, "{}", all.text);
    let total = all.body["items"].as_array().unwrap().len();
    assert!(total > 2, "{}", all.text);
    let mut seen = Vec::new();
    let mut path = w.stages("/lookups/regions?page_size=2");
    loop {
        let page = w.call(Method::GET, &path, None).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().cloned());
        match page.body["next_page_token"].as_str() {
            Some(token) => {
                path = w.stages(&format!("/lookups/regions?page_size=2&page_token={token}"))
            }
            None => break,
        }
    }
    assert_eq!(serde_json::Value::Array(seen), all.body["items"]);
}
