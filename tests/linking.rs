//! End to end: billing records, push, link, edit link, unlink, mappings and
//! reconcile, checked on both sides (the service and the Stages simulator).

mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use support::*;

struct World {
    sim: stages_sim::Sim,
    svc: Service,
    op: Who,
    cid: String,
}

async fn world(backend: Backend, seed_sites: usize) -> World {
    let sim = start_sim(seed_sites).await;
    let svc = Service::in_process(backend, Vec::new()).await;
    let admin = Who::admin("acme");
    // The migration (S20) of the new connection finds nothing to take over;
    // it is over before a test sets billing ids in Stages itself.
    let cid = svc.stages_connection(&admin, &sim).await;
    let op = Who::new("acme", "olivia", "operator");
    World { sim, svc, op, cid }
}

impl World {
    async fn put(&self, path: &str, body: Value) -> Answer {
        let a = self.svc.call(Method::PUT, path, &self.op, Some(body)).await;
        assert!(a.status == 200 || a.status == 201, "PUT {path}: {}", a.text);
        a
    }

    /// A billing customer, site and `systems` systems.
    async fn billing_site(&self, site: &str, systems: &[&str]) {
        self.put(
            &format!("/v1/billing/customers/C-{site}"),
            json!({"first_name": "Ada", "last_name": "Lovelace", "phone": "(614) 555-0101"}),
        )
        .await;
        self.put(&format!("/v1/billing/sites/{site}"), json!({
            "customer_id": format!("C-{site}"), "name": format!("Lovelace home {site}"),
            "address1": "12 Elm St", "city": "Columbus", "state": "OH", "zip": "43004", "phone": "614-555-0101"
        })).await;
        for sys in systems {
            self.put(
                &format!("/v1/billing/systems/{sys}"),
                json!({"site_id": site, "panel_type": "VISTA-20P"}),
            )
            .await;
        }
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.svc
            .call(Method::POST, path, &self.op, Some(body))
            .await
    }

    fn push_path(&self) -> String {
        format!("/v1/connections/{}/push", self.cid)
    }

    async fn wait_job(&self, id: &str) -> Value {
        self.svc
            .wait_ended(&self.op, &format!("/v1/jobs/{id}"))
            .await
    }
}

fn device(code: &str) -> Value {
    json!({"transmitter_code": code, "device_type": "VISTA-20P", "comm_type": "CELL", "entry_period": "00:30",
           "exit_period": "01:00", "location": "Basement", "timer_test_type": "DAILY", "timer_test_days": 1, "silent": false})
}

/// Every device field of S5 (the seed's list), none at its default, so that a
/// field the push drops or misspells cannot round-trip by accident.
fn every_device_field(code: &str) -> Value {
    json!({"transmitter_code": code, "alt_device_id": "ALT-77", "oos_category": "SEASON",
           "device_type": "DSC-NEO", "timer_test_type": "INTERVAL", "timer_test_days": 2,
           "timer_test_hours": 3, "timer_test_minutes": 45, "fail_event": "E350",
           "ivr_number": "4455", "primary_xmit": "7700009", "comm_type": "CELL-IP",
           "line_security": "Encrypted", "lid_type": "2WAY", "url_text": "Camera",
           "url_target": "https://cam.example/77", "signal_format": "CID",
           "entry_period": "00:45", "exit_period": "01:30", "location": "Basement",
           "info": "Behind the water heater", "first_signal_at": "2024-03-01T12:34:56Z",
           "silent": true, "config_only": true})
}

/// S5: every site field (billing and Stages-only) and every device field
/// arrives in Stages as sent; records are compared whole, not field by field.
async fn a_new_site_with_two_devices_contacts_and_zones_is_pushed_and_linked(backend: Backend) {
    let w = world(backend, 0).await;
    w.put(
        "/v1/billing/customers/C-S1",
        json!({"first_name": "Ada", "last_name": "Lovelace", "phone": "(614) 555-0101"}),
    )
    .await;
    let billing_site = json!({"name": "Lovelace home S1", "address1": "12 Elm St", "address2": "Unit 4",
        "city": "Columbus", "state": "OH", "zip": "43004", "phone": "614-555-0101", "info": "Dog in the yard"});
    let mut put_site = billing_site.clone();
    put_site["customer_id"] = json!("C-S1");
    w.put("/v1/billing/sites/S1", put_site).await;
    for (sys, location, info) in [
        ("SYS1", "Hall closet", "Old panel"),
        ("SYS2", "Garage", "Smoke only"),
    ] {
        w.put(
            &format!("/v1/billing/systems/{sys}"),
            json!({"site_id": "S1", "panel_type": "VISTA-20P", "location": location, "info": info}),
        )
        .await;
    }
    let targets = w
        .svc
        .call(
            Method::GET,
            "/v1/billing/sites/S1/push-targets",
            &w.op,
            None,
        )
        .await;
    assert_eq!(
        targets.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        targets.text
    );

    let extras = json!({"region": "MW", "time_zone": "America/Chicago", "site_type": "COM",
        "dispatch_type": "PRI", "permit": "P-77", "subdivision": "Elm Park", "pets": "dog",
        "keys": true, "ul_code": "AA", "authority": "MGR"});
    let ada = json!({"name": "Ada Lovelace", "relation": "Owner", "authority": "OWNER",
        "phones": [{"kind": "mobile", "number": "614-555-0101"}], "email": "ada@example.com",
        "has_keys": true, "ecv": true, "effective_date": "2024-01-01",
        "expire_date": (chrono::Utc::now() + chrono::Duration::days(5 * 365)).format("%Y-%m-%d").to_string()});
    let mut ada_with_pin = ada.clone();
    ada_with_pin["pin"] = json!("1234");
    let sys1_zones = json!([{"point": 1, "area": "1", "event_code": "BA", "description": "Front door"},
                            {"point": 2, "area": "", "event_code": "", "description": "Back door"}]);
    let body = json!({
        "billing_site_id": "S1",
        "site": extras,
        "contacts": [ada_with_pin, {"name": "Charles Babbage", "relation": "Neighbour"}],
        "systems": [
            {"billing_system_id": "SYS1", "device": every_device_field("7700001"), "configurations": sys1_zones},
            // Only the code: location and info come from the billing system.
            {"billing_system_id": "SYS2", "device": {"transmitter_code": "7700002"},
             "configurations": [{"point": 9, "description": "Smoke"}]}
        ]
    });
    // A dry run shows what would be sent and creates nothing.
    let dry = w
        .post(&format!("{}?dry_run=true", w.push_path()), body.clone())
        .await;
    assert_eq!(dry.status, 200, "{}", dry.text);
    assert_eq!(
        dry.body["would_send"]["devices"].as_array().unwrap().len(),
        2
    );
    assert_eq!(dry.body["records"][0]["action"], "would_create");
    assert_eq!(w.sim.state().site_count(), 0);

    let pushed = w.post(&w.push_path(), body).await;
    assert_eq!(pushed.status, 201, "{}", pushed.text);
    let records = pushed.body["records"].as_array().unwrap();
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r["action"] == "created"));
    let site_no = records[0]["external_id"].as_str().unwrap().to_owned();

    // Stages side, whole records: the billing site's fields, every Stages-only
    // field and the billing id; nothing dropped, renamed or defaulted.
    let mut want_site = billing_site.clone();
    want_site
        .as_object_mut()
        .unwrap()
        .extend(extras.as_object().unwrap().clone());
    want_site["site_no"] = json!(site_no);
    want_site["billing_id"] = json!("S1");
    let site = serde_json::to_value(w.sim.state().site(&site_no).unwrap()).unwrap();
    assert_eq!(site, want_site);

    let devices: Vec<Value> = w
        .sim
        .state()
        .devices(&site_no)
        .iter()
        .map(|d| serde_json::to_value(d).unwrap())
        .collect();
    assert_eq!(devices.len(), 2);
    let of = |billing: &str| {
        devices
            .iter()
            .find(|d| d["billing_id"] == billing)
            .unwrap_or_else(|| panic!("no device of {billing}: {devices:?}"))
            .clone()
    };
    let (sys1, sys2) = (of("SYS1"), of("SYS2"));
    let mut want_sys1 = every_device_field("7700001");
    for (k, v) in [
        ("device_id", sys1["device_id"].clone()),
        ("site_no", json!(site_no)),
        ("status", json!("normal")),
        ("billing_id", json!("SYS1")),
    ] {
        want_sys1[k] = v;
    }
    assert_eq!(sys1, want_sys1);
    let want_sys2 = json!({"device_id": sys2["device_id"], "site_no": site_no, "status": "normal",
        "transmitter_code": "7700002", "alt_device_id": "", "oos_category": "", "device_type": "",
        "timer_test_type": "", "timer_test_days": null, "timer_test_hours": null,
        "timer_test_minutes": null, "fail_event": "", "ivr_number": "", "primary_xmit": "",
        "comm_type": "", "line_security": "", "lid_type": "", "url_text": "", "url_target": "",
        "signal_format": "", "entry_period": "", "exit_period": "", "location": "Garage",
        "info": "Smoke only", "first_signal_at": null, "silent": false, "config_only": false,
        "billing_id": "SYS2"});
    assert_eq!(sys2, want_sys2);

    // Zones and contacts, also whole (less their Stages ids).
    let zones = |d: &Value| -> Value {
        let id = d["device_id"].as_str().unwrap();
        let mut zs: Vec<Value> = w
            .sim
            .state()
            .configurations(id)
            .iter()
            .map(|z| serde_json::to_value(z).unwrap())
            .collect();
        for z in &mut zs {
            assert_eq!(z["device_id"], id);
            let z = z.as_object_mut().unwrap();
            z.remove("config_id");
            z.remove("device_id");
        }
        Value::Array(zs)
    };
    assert_eq!(zones(&sys1), sys1_zones);
    assert_eq!(
        zones(&sys2),
        json!([{"point": 9, "area": "", "event_code": "", "description": "Smoke"}])
    );
    let contacts: Vec<Value> = w
        .sim
        .state()
        .contacts(&site_no)
        .iter()
        .map(|c| {
            let mut c = serde_json::to_value(c).unwrap();
            assert_eq!(c["site_no"], site_no.as_str());
            let o = c.as_object_mut().unwrap();
            o.remove("contact_id");
            o.remove("site_no");
            c
        })
        .collect();
    let mut want_ada = ada.clone();
    want_ada["has_pin"] = json!(true);
    let charles = json!({"name": "Charles Babbage", "relation": "Neighbour", "authority": "",
        "phones": [], "email": "", "has_keys": false, "ecv": false, "effective_date": null,
        "expire_date": null, "has_pin": false});
    assert_eq!(contacts, [want_ada, charles]);
    let ada_id = w.sim.state().contacts(&site_no)[0].contact_id.clone();
    let pin = w
        .sim
        .state()
        .with_db(|db| db.contact_pin(&site_no, &ada_id));
    assert_eq!(pin.as_deref(), Some("1234"), "the PIN reaches Stages");

    // Service side: links, the system number from the transmitter code, push targets.
    let sys1 = w
        .svc
        .call(Method::GET, "/v1/billing/systems/SYS1", &w.op, None)
        .await;
    assert_eq!(sys1.body["system_number"], "7700001");
    assert_eq!(sys1.body["links"].as_array().unwrap().len(), 1);
    let site = w
        .svc
        .call(Method::GET, "/v1/billing/sites/S1", &w.op, None)
        .await;
    assert_eq!(site.body["links"][0]["external_id"], site_no.as_str());
    let targets = w
        .svc
        .call(
            Method::GET,
            "/v1/billing/sites/S1/push-targets",
            &w.op,
            None,
        )
        .await;
    assert_eq!(targets.body["items"], json!([]));
    let mappings = w
        .svc
        .call(
            Method::GET,
            &format!("/v1/links?connection_id={}&kind=system", w.cid),
            &w.op,
            None,
        )
        .await;
    assert_eq!(mappings.body["items"].as_array().unwrap().len(), 2);

    // Pushing again is refused: the site is linked on this connection.
    let again = w
        .post(&w.push_path(), json!({"billing_site_id": "S1"}))
        .await;
    assert_eq!(again.assert_problem(409), "already_linked");
    let audit = w
        .svc
        .call(Method::GET, "/v1/audit?subject=S1", &w.op, None)
        .await;
    assert_eq!(audit.body["items"][0]["action"], "push");
    assert_eq!(audit.body["items"][0]["actor"], "olivia");
}

async fn a_system_is_pushed_only_when_its_site_is_linked(backend: Backend) {
    let w = world(backend, 0).await;
    w.billing_site("S1", &["SYS1", "SYS2"]).await;
    let early = w
        .post(
            &w.push_path(),
            json!({"billing_system_id": "SYS2", "device": device("7800002")}),
        )
        .await;
    assert_eq!(early.assert_problem(409), "site_not_linked");
    assert!(early.body["detail"].as_str().unwrap().contains("S1"));
    assert_eq!(w.sim.state().device_count(), 0);

    let site = w
        .post(
            &w.push_path(),
            json!({"billing_site_id": "S1", "site": {"time_zone": "America/Chicago"},
        "systems": [{"billing_system_id": "SYS1", "device": device("7800001")}]}),
        )
        .await;
    assert_eq!(site.status, 201, "{}", site.text);
    let later = w
        .post(
            &w.push_path(),
            json!({"billing_system_id": "SYS2", "device": device("7800002")}),
        )
        .await;
    assert_eq!(later.status, 201, "{}", later.text);
    assert_eq!(w.sim.state().device_count(), 2);

    // Lookups are checked before anything is created, and bad input names its field.
    w.billing_site("S9", &["SYS9"]).await;
    let bad = w.post(&w.push_path(), json!({"billing_site_id": "S9", "site": {"site_type": "CASTLE"},
        "systems": [{"billing_system_id": "SYS9", "device": {"transmitter_code": "", "entry_period": "9:99"}}]})).await;
    bad.assert_problem(422);
    let fields: Vec<_> = bad.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        fields.contains(&"systems[0].device.transmitter_code".to_owned()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"systems[0].device.entry_period".to_owned()),
        "{fields:?}"
    );
    let lookups = w
        .post(
            &w.push_path(),
            json!({"billing_site_id": "S9", "site": {"site_type": "CASTLE"},
        "systems": [{"billing_system_id": "SYS9", "device": device("7800009")}]}),
        )
        .await;
    lookups.assert_problem(422);
    assert_eq!(lookups.body["errors"][0]["field"], "site.site_type");
    assert_eq!(w.sim.state().site_count(), 1);
}

async fn an_existing_stages_site_is_linked_with_the_child_rule(backend: Backend) {
    let w = world(backend, 3).await;
    let unlinked = w
        .svc
        .call(
            Method::GET,
            &format!("/v1/connections/{}/stages/sites?unlinked=true", w.cid),
            &w.op,
            None,
        )
        .await;
    assert_eq!(unlinked.status, 200, "{}", unlinked.text);
    let sites = unlinked.body["items"].as_array().unwrap().clone();
    assert_eq!(sites.len(), 3);
    let site_no = sites[0]["site_no"].as_str().unwrap().to_owned();
    let other_site = sites[1]["site_no"].as_str().unwrap().to_owned();
    // Read it to pre-fill the billing site.
    let detail = w
        .svc
        .call(
            Method::GET,
            &format!("/v1/connections/{}/stages/sites/{site_no}", w.cid),
            &w.op,
            None,
        )
        .await;
    let device_id = detail.body["devices"][0]["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let foreign_device = w
        .svc
        .call(
            Method::GET,
            &format!("/v1/connections/{}/stages/sites/{other_site}", w.cid),
            &w.op,
            None,
        )
        .await
        .body["devices"][0]["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    w.put("/v1/billing/sites/S2", json!({"name": detail.body["name"], "address1": detail.body["address1"], "city": detail.body["city"]})).await;
    w.put("/v1/billing/systems/SYS2", json!({"site_id": "S2"}))
        .await;

    let link = |systems: Value| json!({"connection_id": w.cid, "billing_site_id": "S2", "stages_site_no": site_no, "systems": systems});
    w.post("/v1/links", link(json!([])))
        .await
        .assert_problem(422);
    let foreign = w
        .post(
            "/v1/links",
            link(json!([{"billing_system_id": "SYS2", "stages_device_id": foreign_device}])),
        )
        .await;
    foreign.assert_problem(422);
    assert!(foreign.text.contains("not"), "{}", foreign.text);
    assert_eq!(
        w.svc.call(Method::GET, "/v1/links", &w.op, None).await.body["items"],
        json!([])
    );

    let ok = w
        .post(
            "/v1/links",
            link(json!([{"billing_system_id": "SYS2", "stages_device_id": device_id}])),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.text);
    assert_eq!(ok.body["items"].as_array().unwrap().len(), 2);
    // Billing ids are written to Stages.
    assert_eq!(
        serde_json::to_value(w.sim.state().site(&site_no).unwrap()).unwrap()["billing_id"],
        "S2"
    );
    assert_eq!(
        serde_json::to_value(w.sim.state().device(&device_id).unwrap()).unwrap()["billing_id"],
        "SYS2"
    );
    // Now linked on either side: 409.
    w.put("/v1/billing/sites/S3", json!({"name": "Other"}))
        .await;
    w.put("/v1/billing/systems/SYS3", json!({"site_id": "S3"}))
        .await;
    let taken = w
        .post(
            "/v1/links",
            json!({"connection_id": w.cid, "billing_site_id": "S3", "stages_site_no": site_no,
        "systems": [{"billing_system_id": "SYS3", "stages_device_id": device_id}]}),
        )
        .await;
    taken.assert_problem(409);
    let unlinked = w
        .svc
        .call(
            Method::GET,
            &format!("/v1/connections/{}/stages/sites?unlinked=true", w.cid),
            &w.op,
            None,
        )
        .await;
    assert_eq!(unlinked.body["items"].as_array().unwrap().len(), 2);
}

async fn fifty_concurrent_links_of_one_stages_site_let_exactly_one_win(backend: Backend) {
    let w = world(backend, 1).await;
    let site_no = w.sim.state().sites()[0].site_no.clone();
    let device_id = serde_json::to_value(&w.sim.state().devices(&site_no)[0]).unwrap()["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..50 {
        w.put(
            &format!("/v1/billing/sites/R{i}"),
            json!({"name": format!("Racer {i}")}),
        )
        .await;
        w.put(
            &format!("/v1/billing/systems/RS{i}"),
            json!({"site_id": format!("R{i}")}),
        )
        .await;
    }
    let mut tasks = Vec::new();
    for i in 0..50 {
        let rb = w
            .svc
            .req(Method::POST, "/v1/links", &w.op)
            .json(&json!({"connection_id": w.cid, "billing_site_id": format!("R{i}"), "stages_site_no": site_no,
                "systems": [{"billing_system_id": format!("RS{i}"), "stages_device_id": device_id}]}));
        tasks.push(tokio::spawn(async move {
            rb.send().await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        49,
        "{statuses:?}"
    );
    let links = w
        .svc
        .call(Method::GET, "/v1/links?kind=site", &w.op, None)
        .await;
    let items = links.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let winner = items[0]["billing_id"].as_str().unwrap();
    assert_eq!(
        serde_json::to_value(w.sim.state().site(&site_no).unwrap()).unwrap()["billing_id"],
        winner
    );
}

async fn edit_link_moves_billing_ids_and_unlink_then_link_again_works(backend: Backend) {
    let w = world(backend, 2).await;
    let sites = w.sim.state().sites();
    let site_no = sites[0].site_no.clone();
    let devices: Vec<String> = w
        .sim
        .state()
        .devices(&site_no)
        .iter()
        .map(|d| {
            serde_json::to_value(d).unwrap()["device_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // A second device under the same site to move to.
    let extra = w.sim.state().with_db(|db| {
        let d: stages_sim::wire::NewDevice =
            serde_json::from_value(json!({"transmitter_code": "9900001"})).unwrap();
        db.create_device(&site_no, d, chrono::Utc::now()).unwrap()
    });
    let extra_id = serde_json::to_value(&extra).unwrap()["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    w.put("/v1/billing/sites/S5", json!({"name": "Five"})).await;
    w.put("/v1/billing/systems/SYS5", json!({"site_id": "S5"}))
        .await;
    let linked = w
        .post(
            "/v1/links",
            json!({"connection_id": w.cid, "billing_site_id": "S5", "stages_site_no": site_no,
        "systems": [{"billing_system_id": "SYS5", "stages_device_id": devices[0]}]}),
        )
        .await;
    assert_eq!(linked.status, 201, "{}", linked.text);
    assert_eq!(
        linked.headers["location"].to_str().unwrap(),
        format!(
            "/v1/links/{}",
            linked.body["items"][0]["id"].as_str().unwrap()
        ),
        "Location names the site link"
    );
    let system_link = linked.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == "system")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let site_link = linked.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == "site")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A device of another site is refused; an unlinked device of the same site is taken.
    let other_site_device = serde_json::to_value(&w.sim.state().devices(&sites[1].site_no)[0])
        .unwrap()["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    w.svc
        .call(
            Method::PATCH,
            &format!("/v1/links/{system_link}"),
            &w.op,
            Some(json!({"external_id": other_site_device})),
        )
        .await
        .assert_problem(422);
    let edited = w
        .svc
        .call(
            Method::PATCH,
            &format!("/v1/links/{system_link}"),
            &w.op,
            Some(json!({"external_id": extra_id})),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    assert_eq!(
        serde_json::to_value(w.sim.state().device(&extra_id).unwrap()).unwrap()["billing_id"],
        "SYS5"
    );
    assert_eq!(
        serde_json::to_value(w.sim.state().device(&devices[0]).unwrap()).unwrap()["billing_id"],
        Value::Null
    );

    // Unlink the site: both links go, Stages keeps its records as they are.
    let removed = w
        .svc
        .call(
            Method::DELETE,
            &format!("/v1/links/{site_link}"),
            &w.op,
            None,
        )
        .await;
    assert_eq!(removed.status, 200, "{}", removed.text);
    assert_eq!(removed.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        w.svc.call(Method::GET, "/v1/links", &w.op, None).await.body["items"],
        json!([])
    );
    assert_eq!(
        serde_json::to_value(w.sim.state().site(&site_no).unwrap()).unwrap()["billing_id"],
        "S5"
    );
    let targets = w
        .svc
        .call(
            Method::GET,
            "/v1/billing/sites/S5/push-targets",
            &w.op,
            None,
        )
        .await;
    assert_eq!(targets.body["items"].as_array().unwrap().len(), 1);

    // Reconcile does not silently link it again...
    let job = w
        .post(&format!("/v1/connections/{}:reconcile", w.cid), json!({}))
        .await;
    assert_eq!(job.status, 202, "{}", job.text);
    let done = w.wait_job(job.body["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        done["summary"]["drift_counts"]["deliberately_unlinked"], 2,
        "{done}"
    );
    assert_eq!(
        w.svc.call(Method::GET, "/v1/links", &w.op, None).await.body["items"],
        json!([])
    );
    // ...but a person can.
    let again = w
        .post(
            "/v1/links",
            json!({"connection_id": w.cid, "billing_site_id": "S5", "stages_site_no": site_no,
        "systems": [{"billing_system_id": "SYS5", "stages_device_id": extra_id}]}),
        )
        .await;
    assert_eq!(again.status, 201, "{}", again.text);
    let actions: Vec<_> = w
        .svc
        .call(Method::GET, "/v1/audit?subject=S5", &w.op, None)
        .await
        .body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions, ["link", "unlink", "link"], "newest first");
    let system_actions: Vec<_> = w
        .svc
        .call(Method::GET, "/v1/audit?subject=SYS5", &w.op, None)
        .await
        .body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        system_actions,
        ["link", "unlink", "edit_link", "link"],
        "newest first"
    );
}

async fn a_push_survives_a_lost_answer_and_a_failed_device_with_exactly_one_of_each(
    backend: Backend,
) {
    let w = world(backend, 0).await;
    w.billing_site("S7", &["SYS7"]).await;
    let body = json!({"billing_site_id": "S7", "site": {"time_zone": "America/Denver"},
        "systems": [{"billing_system_id": "SYS7", "device": device("7900007")}]});
    // The site is created but its answer comes after the service's timeout (1.5 s).
    w.sim
        .state()
        .add_fault(stages_sim::FaultRule::parse("POST /api/v1/sites=latency:2500,times=1").unwrap())
        .unwrap();
    let lost = w.post(&w.push_path(), body.clone()).await;
    assert_eq!(lost.assert_problem(504), "upstream_timeout");
    // Stages creates it once the latency is over, after the 504.
    eventually(
        "the site was created in Stages",
        Duration::from_secs(10),
        || async { (w.sim.state().site_count() == 1).then_some(()) },
    )
    .await;

    // The device went with the site in the same request (Stages stores a new
    // site whole), so sending the push again finds both by their billing ids.
    let finished = w.post(&w.push_path(), body).await;
    assert_eq!(finished.status, 201, "{}", finished.text);
    assert_eq!(finished.body["records"][0]["action"], "reused");
    assert_eq!(finished.body["records"][1]["action"], "reused");
    assert_eq!(w.sim.state().site_count(), 1);
    assert_eq!(w.sim.state().device_count(), 1);
    assert_eq!(
        w.svc.call(Method::GET, "/v1/links", &w.op, None).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A device of the linked site whose create fails for a while: the answer
    // advises sending again (the failure may pass), and that finishes it.
    w.put(
        "/v1/billing/systems/SYS7B",
        json!({"site_id": "S7", "panel_type": "VISTA-20P"}),
    )
    .await;
    w.sim
        .state()
        .add_fault(stages_sim::FaultRule::parse("POST /api/v1/sites/*=error:500,times=1").unwrap())
        .unwrap();
    let system = json!({"billing_system_id": "SYS7B", "device": device("7900017")});
    let path = w.push_path();
    let failed = w.post(&path, system.clone()).await;
    failed.assert_problem(502);
    assert_eq!(w.sim.state().device_count(), 1);
    let again = w.post(&path, system).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(w.sim.state().device_count(), 2);
}

async fn an_idempotency_key_makes_a_push_happen_once(backend: Backend) {
    let w = world(backend, 0).await;
    w.billing_site("S8", &["SYS8"]).await;
    let body = json!({"billing_site_id": "S8", "systems": [{"billing_system_id": "SYS8", "device": device("7900008")}]});
    let send = || {
        w.svc
            .req(Method::POST, &w.push_path(), &w.op)
            .header("idempotency-key", "push-S8")
            .json(&body)
            .send()
    };
    let first = Answer::from(send().await.unwrap()).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let second = Answer::from(send().await.unwrap()).await;
    assert_eq!(second.status, 201);
    assert_eq!(second.body, first.body);
    assert_eq!(w.sim.state().request_count("POST /api/v1/sites"), 1);
}

async fn reconcile_takes_over_a_thousand_billing_ids_and_reports_every_kind_of_drift(
    backend: Backend,
) {
    let w = world(backend, 1000).await;
    let sites = w.sim.state().sites();
    // An older integration stored billing ids in Stages for the first 1,000 sites and their first devices.
    let mut expected_systems = 0;
    for (i, s) in sites.iter().enumerate() {
        let site_id = format!("OLD-{i}");
        w.sim
            .state()
            .patch_site(
                &s.site_no,
                serde_json::from_value(json!({"billing_id": site_id})).unwrap(),
            )
            .unwrap();
        let dev = serde_json::to_value(&w.sim.state().devices(&s.site_no)[0]).unwrap();
        let dev_id = dev["device_id"].as_str().unwrap().to_owned();
        w.sim
            .state()
            .patch_device(
                &dev_id,
                serde_json::from_value(json!({"billing_id": format!("OLD-SYS-{i}")})).unwrap(),
            )
            .unwrap();
        // The billing side knows all but the last ten sites.
        if i < 990 {
            w.put(
                &format!("/v1/billing/sites/{site_id}"),
                json!({"name": format!("Old {i}")}),
            )
            .await;
            w.put(
                &format!("/v1/billing/systems/OLD-SYS-{i}"),
                json!({"site_id": site_id}),
            )
            .await;
            expected_systems += 1;
        }
    }
    // Drift: two Stages sites claiming one billing id; a link whose Stages site is gone.
    w.sim
        .state()
        .with_db(|db| db.force_site_billing_id(&sites[1].site_no, Some("OLD-0".into())))
        .unwrap();

    let dry = w
        .post(
            &format!("/v1/connections/{}:reconcile?dry_run=true", w.cid),
            json!({}),
        )
        .await;
    let dry = w.wait_job(dry.body["id"].as_str().unwrap()).await;
    assert_eq!(dry["state"], "succeeded", "{dry}");
    assert_eq!(
        w.svc.call(Method::GET, "/v1/links", &w.op, None).await.body["items"],
        json!([]),
        "a dry run changes nothing"
    );

    let job = w
        .post(&format!("/v1/connections/{}:reconcile", w.cid), json!({}))
        .await;
    assert_eq!(job.status, 202);
    let done = w.wait_job(job.body["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let s = &done["summary"];
    assert_eq!(s["sites_seen"], 1000);
    // OLD-0 is claimed twice (sites 0 and 1), so neither is taken over; site 1's own OLD-1 is overwritten.
    assert_eq!(s["taken_over"]["sites"], 988, "{s}");
    assert_eq!(s["drift_counts"]["duplicate_claim"], 2, "{s}");
    assert_eq!(
        s["drift_counts"]["unknown_billing_record"],
        10 + 10,
        "ten sites and their ten devices: {s}"
    );
    assert_eq!(
        s["drift_counts"]["site_not_linked"], 2,
        "devices of the two contested sites: {s}"
    );
    assert_eq!(s["taken_over"]["systems"], expected_systems - 2, "{s}");
    assert_eq!(
        dry["summary"]["taken_over"], s["taken_over"],
        "the dry run reported the same"
    );
    assert_eq!(done["progress"]["done"], done["progress"]["total"]);

    // A second run finds everything linked; a Stages site deleted meanwhile is reported.
    let gone = sites[500].site_no.clone();
    w.sim.state().with_db(|db| db.remove_site(&gone)).unwrap();
    let job = w
        .post(&format!("/v1/connections/{}:reconcile", w.cid), json!({}))
        .await;
    let again = w.wait_job(job.body["id"].as_str().unwrap()).await;
    let s = &again["summary"];
    assert_eq!(s["taken_over"]["sites"], 0, "{s}");
    assert_eq!(s["already_linked"]["sites"], 987, "{s}");
    assert_eq!(
        s["drift_counts"]["missing_external"], 2,
        "the site and its device: {s}"
    );
    let audit = w
        .svc
        .call(Method::GET, "/v1/audit?subject=OLD-42", &w.op, None)
        .await;
    assert_eq!(audit.body["items"][0]["action"], "reconcile_link");
}

on_both_backends!(
    a_new_site_with_two_devices_contacts_and_zones_is_pushed_and_linked,
    a_system_is_pushed_only_when_its_site_is_linked,
    an_existing_stages_site_is_linked_with_the_child_rule,
    fifty_concurrent_links_of_one_stages_site_let_exactly_one_win,
    edit_link_moves_billing_ids_and_unlink_then_link_again_works,
    a_push_survives_a_lost_answer_and_a_failed_device_with_exactly_one_of_each,
    an_idempotency_key_makes_a_push_happen_once,
    reconcile_takes_over_a_thousand_billing_ids_and_reports_every_kind_of_drift,
);
