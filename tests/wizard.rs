//! End to end, the customer wizard (B12): a Stages site with an existing and
//! a new device taken into new billing records and linked (`wizard:pull`),
//! and new billing records pushed to Stages as a new site (`wizard:push`);
//! a fault half way through either leaves nothing on either side, and the
//! same request afterwards goes through without making anything twice.
//! Checked on the service and on the simulator's own state.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use support::*;

struct World {
    sim: stages_sim::Sim,
    svc: Service,
    op: Who,
    cid: String,
}

async fn world(backend: Backend) -> World {
    let sim = start_sim(3).await;
    let svc = Service::in_process(backend, Vec::new()).await;
    let op = Who::new("acme", "olivia", "operator");
    let cid = svc.stages_connection(&Who::admin("acme"), &sim).await;
    World { sim, svc, op, cid }
}

fn fault(rule: &str) -> stages_sim::FaultRule {
    stages_sim::FaultRule::parse(rule).unwrap()
}

impl World {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.svc.call(method, path, &self.op, body).await
    }

    async fn pull(&self, body: Value) -> Answer {
        let path = format!("/v1/connections/{}/wizard:pull", self.cid);
        self.call(Method::POST, &path, Some(body)).await
    }

    async fn push(&self, body: Value) -> Answer {
        let path = format!("/v1/connections/{}/wizard:push", self.cid);
        self.call(Method::POST, &path, Some(body)).await
    }

    /// The first seeded site and its first device.
    fn site(&self, at: usize) -> (String, String) {
        let site = self.sim.state().sites()[at].site_no.clone();
        let device = json_of(&self.sim.state().devices(&site)[0])["device_id"]
            .as_str()
            .unwrap()
            .to_owned();
        (site, device)
    }

    fn site_json(&self, site_no: &str) -> Value {
        json_of(&self.sim.state().site(site_no).unwrap())
    }

    fn device_json(&self, device_id: &str) -> Value {
        json_of(&self.sim.state().device(device_id).unwrap())
    }

    async fn links(&self) -> Vec<Value> {
        let a = self
            .call(
                Method::GET,
                &format!("/v1/links?connection_id={}", self.cid),
                None,
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.body["items"].as_array().unwrap().clone()
    }

    async fn customers_named(&self, q: &str) -> Vec<Value> {
        let a = self
            .call(Method::GET, &format!("/v1/billing/customers?q={q}"), None)
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.body["items"].as_array().unwrap().clone()
    }
}

fn json_of<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap()
}

fn billing_id(v: &Value) -> &str {
    v["billing_id"].as_str().unwrap_or_default()
}

fn new_device(code: &str) -> Value {
    json!({"device": {"transmitter_code": code, "device_type": "VISTA-20P", "location": "Garage",
        "comm_type": "CELL"},
        "configurations": [{"point": 1, "area": "1", "event_code": "BA", "description": "Garage door"}]})
}

fn new_person(last: &str) -> Value {
    json!({"new_customer": {"kind": "person", "first_name": "Ada", "last_name": last,
        "email": "ada@example.com"}})
}

/// A site with one of its devices and one new device: the billing customer,
/// site and two systems are made and linked, the billing ids are in Stages,
/// the new device exists there with its zone, and the audit trail names the
/// records made.
async fn a_pull_takes_an_existing_and_a_new_device(backend: Backend) {
    let w = world(backend).await;
    let (site_no, device) = w.site(0);
    let a = w
        .pull(
            json!({"site_no": site_no, "customer": new_person("Lovelace"),
            "device_ids": [device], "new_devices": [new_device("8800001")]}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let site_id = a.body["site_id"].as_str().unwrap().to_owned();
    let customer_id = a.body["customer_id"].as_str().unwrap().to_owned();
    assert_eq!(a.body["customer_created"], true);
    assert_eq!(a.body["site_no"], site_no.as_str());
    let systems = a.body["systems"].as_array().unwrap();
    assert_eq!(systems.len(), 2, "{}", a.text);
    let existing = systems.iter().find(|s| s["device"] == "existing").unwrap();
    let created = systems.iter().find(|s| s["device"] == "created").unwrap();
    assert_eq!(existing["device_id"], device.as_str());

    // Stages: the ids are written, the new device is made with its zone.
    assert_eq!(billing_id(&w.site_json(&site_no)), site_id);
    assert_eq!(billing_id(&w.device_json(&device)), existing["system_id"]);
    let new_id = created["device_id"].as_str().unwrap();
    let made = w.device_json(new_id);
    assert_eq!(made["site_no"], site_no.as_str());
    assert_eq!(made["transmitter_code"], "8800001");
    assert_eq!(billing_id(&made), created["system_id"]);
    assert_eq!(w.sim.state().configurations(new_id).len(), 1);

    // Billing: the customer takes the site's address; the new system the
    // device's transmitter code, type and location.
    let c = w
        .call(
            Method::GET,
            &format!("/v1/billing/customers/{customer_id}"),
            None,
        )
        .await;
    assert_eq!(c.status, 200, "{}", c.text);
    assert_eq!(c.body["address1"], w.site_json(&site_no)["address1"]);
    let s = w
        .call(Method::GET, &format!("/v1/billing/sites/{site_id}"), None)
        .await;
    assert_eq!(s.body["customer_id"], customer_id.as_str());
    let sys = w
        .call(
            Method::GET,
            &format!(
                "/v1/billing/systems/{}",
                created["system_id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(sys.body["system_number"], "8800001");
    assert_eq!(sys.body["panel_type"], "VISTA-20P");
    assert_eq!(sys.body["location"], "Garage");

    // Linked: a site link and two system links under it, the new one on the new device.
    let links = w.links().await;
    assert_eq!(links.len(), 3, "{links:?}");
    assert!(links
        .iter()
        .any(|l| l["kind"] == "system" && l["external_id"] == new_id));
    // Audited: the links and the records made from Stages.
    let audit = w
        .call(Method::GET, &format!("/v1/audit?subject={site_id}"), None)
        .await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"wizard"), "{actions:?}");
    assert!(actions.contains(&"wizard_to_billing"), "{actions:?}");
    // The same site again is refused: it is linked now.
    let again = w
        .pull(json!({"site_no": site_no, "customer": {"customer_id": customer_id}}))
        .await;
    assert_eq!(again.assert_problem(409), "already_linked");
}

/// Stages refuses the new device, the last step: the billing ids written to
/// the site and its device are cleared, no billing record and no link stays,
/// and the same request afterwards goes through.
async fn a_fault_half_way_through_a_pull_leaves_nothing(backend: Backend) {
    let w = world(backend).await;
    let (site_no, device) = w.site(1);
    let body = json!({"site_no": site_no, "customer": new_person("Hopper"),
        "device_ids": [device], "new_devices": [new_device("8800002")]});
    w.sim
        .state()
        .add_fault(fault("POST /api/v1/sites/*=error:503,times=1"))
        .unwrap();
    let a = w.pull(body.clone()).await;
    assert_eq!(a.assert_problem(502), "upstream_bad_answer", "{}", a.text);
    assert_eq!(billing_id(&w.site_json(&site_no)), "");
    assert_eq!(billing_id(&w.device_json(&device)), "");
    assert!(w
        .sim
        .state()
        .device_by_transmitter_code("8800002")
        .is_none());
    assert!(w.customers_named("Hopper").await.is_empty());
    assert!(w.links().await.is_empty());

    let again = w.pull(body).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(w.customers_named("Hopper").await.len(), 1);
    assert_eq!(w.links().await.len(), 3);
}

/// Of two new devices, Stages makes the first and refuses the second (its
/// transmitter code is another site's). The first cannot be deleted: it
/// stays, without a billing id, and everything else is taken back. The
/// request with the second code corrected takes the first device over
/// instead of making it again.
async fn a_device_stages_made_before_a_refusal_is_reused(backend: Backend) {
    let w = world(backend).await;
    let (site_no, _) = w.site(0);
    let (_, elsewhere) = w.site(2);
    let taken_code = w.device_json(&elsewhere)["transmitter_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = |second: &str| {
        json!({"site_no": site_no, "customer": new_person("Babbage"), "device_ids": [],
            "new_devices": [new_device("8800003"), new_device(second)]})
    };
    let a = w.pull(body(&taken_code)).await;
    assert!(a.status == 409 || a.status == 422, "{}", a.text);
    let first = w.sim.state().device_by_transmitter_code("8800003").unwrap();
    let first = json_of(&first);
    assert_eq!(
        billing_id(&first),
        "",
        "the made device lets go of its billing id"
    );
    assert_eq!(billing_id(&w.site_json(&site_no)), "");
    assert!(w.customers_named("Babbage").await.is_empty());
    assert!(w.links().await.is_empty());
    let devices_before = w.sim.state().device_count();

    let again = w.pull(body("8800004")).await;
    assert_eq!(again.status, 201, "{}", again.text);
    let systems = again.body["systems"].as_array().unwrap();
    let reused = systems.iter().find(|s| s["device"] == "reused").unwrap();
    assert_eq!(reused["device_id"], first["device_id"]);
    assert_eq!(
        billing_id(&w.device_json(reused["device_id"].as_str().unwrap())),
        reused["system_id"]
    );
    // One device more: the second; the first was taken, not made again.
    assert_eq!(w.sim.state().device_count(), devices_before + 1);
}

fn push_body(last: &str, codes: &[&str]) -> Value {
    json!({
        "customer": {"new_customer": {"kind": "business", "business_name": last, "last_name": last}},
        "site": {"name": format!("{last} HQ"), "address1": "1 Main St", "city": "Columbus",
            "state": "OH", "zip": "43004", "phone": "6145550100"},
        "stages_site": {"region": "MW", "time_zone": "America/New_York"},
        "contacts": [{"name": "Grace", "relation": "Owner", "phones": [{"kind": "mobile", "number": "6145550101"}]}],
        "systems": codes.iter().map(|c| new_device(c)).collect::<Vec<_>>(),
    })
}

/// New billing records pushed as a new Stages site with two devices, a
/// contact and zones, all linked.
async fn a_push_makes_billing_records_and_a_stages_site(backend: Backend) {
    let w = world(backend).await;
    let sites_before = w.sim.state().site_count();
    let a = w.push(push_body("Initech", &["8810001", "8810002"])).await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(w.sim.state().site_count(), sites_before + 1);
    let site_no = a.body["site_no"].as_str().unwrap();
    let site_id = a.body["site_id"].as_str().unwrap();
    let site = w.site_json(site_no);
    assert_eq!(billing_id(&site), site_id);
    assert_eq!(site["name"], "Initech HQ");
    assert_eq!(site["region"], "MW");
    assert_eq!(w.sim.state().contacts(site_no).len(), 1);
    let systems = a.body["systems"].as_array().unwrap();
    assert_eq!(systems.len(), 2);
    for s in systems {
        assert_eq!(s["device"], "created");
        let d = w.device_json(s["device_id"].as_str().unwrap());
        assert_eq!(billing_id(&d), s["system_id"]);
        assert_eq!(d["site_no"], site_no);
    }
    let customer = a.body["customer_id"].as_str().unwrap();
    let s = w
        .call(Method::GET, &format!("/v1/billing/sites/{site_id}"), None)
        .await;
    assert_eq!(s.body["customer_id"], customer);
    assert_eq!(s.body["links"].as_array().unwrap().len(), 1);
    assert_eq!(w.links().await.len(), 3);
}

/// Stages fails the new site: the billing customer, site and systems are
/// taken back and Stages holds nothing new; refused input (a region not in
/// the central station's list, no customer) writes nothing at all.
async fn a_failed_push_leaves_nothing(backend: Backend) {
    let w = world(backend).await;
    let sites_before = w.sim.state().site_count();
    w.sim
        .state()
        .add_fault(fault("POST /api/v1/sites=error:500,times=1"))
        .unwrap();
    let a = w.push(push_body("Globex", &["8820001"])).await;
    assert_eq!(a.assert_problem(502), "upstream_bad_answer", "{}", a.text);
    assert_eq!(w.sim.state().site_count(), sites_before);
    assert!(w.customers_named("Globex").await.is_empty());
    assert!(w.links().await.is_empty());

    let mut bad = push_body("Globex", &["8820001"]);
    bad["stages_site"]["region"] = json!("NOWHERE");
    let r = w.push(bad).await;
    assert_eq!(r.assert_problem(422), "validation");
    assert_eq!(r.body["errors"][0]["field"], "stages_site.region");
    let mut none = push_body("Globex", &["8820001"]);
    none["customer"] = json!({});
    let r = w.push(none).await;
    assert_eq!(r.assert_problem(422), "validation");
    assert_eq!(r.body["errors"][0]["field"], "customer");
    assert!(w.customers_named("Globex").await.is_empty());

    // Stages works again: the same request goes through.
    let a = w.push(push_body("Globex", &["8820001"])).await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(w.sim.state().site_count(), sites_before + 1);
    assert_eq!(w.customers_named("Globex").await.len(), 1);
}

/// Requests that name what is not there are refused before anything is written.
async fn a_pull_checks_what_it_names(backend: Backend) {
    let w = world(backend).await;
    let (site_no, _) = w.site(0);
    let r = w
        .pull(json!({"site_no": site_no, "customer": {"customer_id": "NOPE-1"}}))
        .await;
    assert_eq!(r.assert_problem(422), "validation");
    assert_eq!(r.body["errors"][0]["field"], "customer.customer_id");
    let r = w
        .pull(json!({"site_no": "99999999", "customer": new_person("Nobody")}))
        .await;
    assert_eq!(r.assert_problem(422), "validation");
    assert_eq!(r.body["errors"][0]["field"], "site_no");
    let r = w
        .pull(json!({"site_no": site_no, "customer": new_person("Nobody"),
            "device_ids": ["D-NOT-HERE"]}))
        .await;
    assert_eq!(r.assert_problem(422), "validation");
    assert_eq!(r.body["errors"][0]["field"], "device_ids[0]");
    let r = w
        .pull(json!({"site_no": site_no, "customer": {"new_customer": {"kind": "person"}}}))
        .await;
    assert_eq!(r.assert_problem(422), "validation");
    assert!(r.body["errors"][0]["field"]
        .as_str()
        .unwrap()
        .starts_with("customer.new_customer."));
    assert!(w.customers_named("Nobody").await.is_empty());
    assert_eq!(billing_id(&w.site_json(&site_no)), "");
}

on_both_backends!(
    a_pull_takes_an_existing_and_a_new_device,
    a_fault_half_way_through_a_pull_leaves_nothing,
    a_device_stages_made_before_a_refusal_is_reused,
    a_push_makes_billing_records_and_a_stages_site,
    a_failed_push_leaves_nothing,
    a_pull_checks_what_it_names,
);
