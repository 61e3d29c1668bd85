//! End to end: claim before acting upstream, all or nothing toward Stages
//! (issue 11, items 4 and 5; S5, S14, S16). Writers of billing ids race each
//! other here: one wins, the others get a 409 naming its link and leave what
//! it wrote alone; a push or an edit Stages refuses leaves nothing half made.

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

async fn world(backend: Backend) -> World {
    let sim = start_sim(0).await;
    let svc = Service::start_on(backend, Vec::new()).await;
    let admin = Who::admin("acme");
    let cid = svc
        .create_connection(&admin, "Stages", &sim.base_url(), "dealer")
        .await;
    let a = svc
        .call(
            Method::PUT,
            &format!("/v1/connections/{cid}/credentials/dealer"),
            &admin,
            Some(json!({"username": SIM_USER, "password": SIM_PASSWORD})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    World {
        sim,
        svc,
        op: Who::new("acme", "olivia", "operator"),
        admin,
        cid,
    }
}

fn suffix() -> u32 {
    (uuid::Uuid::now_v7().as_u128() % 100_000) as u32
}

impl World {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.svc.call(method, path, &self.op, body).await
    }

    async fn put(&self, path: &str, body: Value) {
        let a = self.call(Method::PUT, path, Some(body)).await;
        assert!(a.status == 200 || a.status == 201, "PUT {path}: {}", a.text);
    }

    /// Points the simulator's callbacks at the service.
    async fn connect_callbacks(&self) {
        let rotated = self
            .svc
            .call(
                Method::POST,
                &format!("/v1/connections/{}/inbound-credentials:rotate", self.cid),
                &self.admin,
                None,
            )
            .await;
        self.sim
            .state()
            .set_callback_target(stages_sim::CallbackTarget::new(
                self.svc.url(&format!("/v1/webhooks/stages/{}", self.cid)),
                rotated.body["username"].as_str().unwrap(),
                rotated.body["secret"].as_str().unwrap(),
            ))
            .unwrap();
    }

    /// A Stages site with `devices` devices; returns (site_no, device ids).
    fn stages_site(&self, devices: usize) -> (String, Vec<String>) {
        let base = suffix();
        let created = self
            .sim
            .state()
            .create_site(serde_json::from_value(json!({
                "name": "Babbage Works", "address1": "5 Engine Row", "city": "Phoenix", "state": "AZ",
                "zip": "85001", "phone": "602-555-0100",
                "devices": (0..devices).map(|i| json!({"transmitter_code": format!("66{base:05}{i}")})).collect::<Vec<_>>(),
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

    /// A billing customer, site and systems.
    async fn billing_site(&self, site: &str, systems: &[&str]) {
        self.put(
            &format!("/v1/billing/customers/C-{site}"),
            json!({"first_name": "Ada", "last_name": "Lovelace"}),
        )
        .await;
        self.put(
            &format!("/v1/billing/sites/{site}"),
            json!({"customer_id": format!("C-{site}"), "name": format!("Lovelace home {site}"),
                   "address1": "12 Elm St", "city": "Columbus", "state": "OH", "zip": "43004"}),
        )
        .await;
        for sys in systems {
            self.put(
                &format!("/v1/billing/systems/{sys}"),
                json!({"site_id": site, "panel_type": "VISTA-20P"}),
            )
            .await;
        }
    }

    async fn links(&self) -> Vec<Value> {
        let a = self
            .call(Method::GET, "/v1/links?page_size=200", None)
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.body["items"].as_array().unwrap().clone()
    }

    fn stages_json<T: serde::Serialize>(&self, record: T) -> Value {
        serde_json::to_value(record).unwrap()
    }

    /// `n` `site.send_to_billing` callbacks for one site at once, each its own
    /// event; returns the simulator's replies (the service's answers).
    async fn send_to_billing_at_once(&self, site_no: &str, n: usize) -> Vec<Value> {
        let mut tasks = Vec::new();
        for i in 0..n {
            let state = self.sim.state().clone();
            let event = json!({"event_id": format!("send-{i}-{}", uuid::Uuid::now_v7()),
                "type": "site.send_to_billing", "site_no": site_no,
                "target": {"kind": "new_customer", "first_name": "Ada", "last_name": format!("Lovelace {i}")}});
            tasks.push(tokio::spawn(async move {
                serde_json::to_value(state.send_callback(event).await.expect("delivered")).unwrap()
            }));
        }
        let mut replies = Vec::new();
        for t in tasks {
            replies.push(t.await.unwrap());
        }
        replies
    }

    /// Checks the outcome of racing sends: one made everything, every other
    /// one was refused naming the winner's link, and Stages holds the
    /// winner's billing ids.
    async fn one_send_won(&self, site_no: &str, devices: &[String], replies: &[Value]) {
        let winners: Vec<&Value> = replies.iter().filter(|r| r["status"] == 201).collect();
        assert_eq!(winners.len(), 1, "{replies:#?}");
        let winner = &winners[0]["body"];
        let links = self.links().await;
        assert_eq!(links.len(), 1 + devices.len(), "{links:#?}");
        let site_link = links.iter().find(|l| l["kind"] == "site").unwrap();
        assert_eq!(site_link["billing_id"], winner["site_id"]);
        let link_id = site_link["id"].as_str().unwrap();
        for r in replies.iter().filter(|r| r["status"] != 201) {
            assert_eq!(r["status"], 409, "{r}");
            let detail = r["body"]["detail"].as_str().unwrap_or_default();
            let names_winner = detail.contains(link_id)
                || links
                    .iter()
                    .any(|l| detail.contains(l["id"].as_str().unwrap()));
            assert!(names_winner, "names the winner's link {link_id}: {r}");
        }
        let customers = self.call(Method::GET, "/v1/billing/customers", None).await;
        assert_eq!(
            customers.body["items"].as_array().unwrap().len(),
            1,
            "{}",
            customers.text
        );
        let site = self.stages_json(self.sim.state().site(site_no).unwrap());
        assert_eq!(site["billing_id"], winner["site_id"], "{site}");
        for d in devices {
            let device = self.stages_json(self.sim.state().device(d).unwrap());
            let system = winner["systems"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["device_id"] == d.as_str())
                .unwrap();
            assert_eq!(device["billing_id"], system["system_id"], "{device}");
        }
    }

    /// `n` identical pushes of one billing site at once, without an Idempotency-Key.
    async fn push_at_once(&self, body: &Value, n: usize) -> Vec<(u16, Value)> {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let rb = self
                .svc
                .req(
                    Method::POST,
                    &format!("/v1/connections/{}/push", self.cid),
                    &self.op,
                )
                .json(body);
            tasks.push(tokio::spawn(async move {
                let a = Answer::from(rb.send().await.unwrap()).await;
                (a.status, a.body)
            }));
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        answers
    }
}

fn slow(rule: &str) -> stages_sim::FaultRule {
    stages_sim::FaultRule::parse(rule).unwrap()
}

/// Situation 2: a double click in Stages. Without claims both sends wrote
/// ids to Stages and the loser then cleared the winner's.
async fn two_sends_of_one_site_leave_the_winners_billing_ids(backend: Backend) {
    let w = world(backend).await;
    w.connect_callbacks().await;
    let (site_no, devices) = w.stages_site(2);
    // Slow writes to Stages, so that both sends are under way at once.
    w.sim
        .state()
        .add_fault(slow("PATCH /api/v1/*=latency:300"))
        .unwrap();
    let replies = w.send_to_billing_at_once(&site_no, 2).await;
    w.one_send_won(&site_no, &devices, &replies).await;
}

/// Done means: 50 sends of one site with distinct event ids.
async fn fifty_sends_of_one_site_make_one_customer_and_one_link(backend: Backend) {
    let w = world(backend).await;
    w.connect_callbacks().await;
    let (site_no, devices) = w.stages_site(2);
    w.sim
        .state()
        .add_fault(slow("PATCH /api/v1/*=latency:100"))
        .unwrap();
    let replies = w.send_to_billing_at_once(&site_no, 50).await;
    w.one_send_won(&site_no, &devices, &replies).await;
}

/// Situation 3, first half: Stages refuses a device of a new site (its
/// transmitter code is in use). Nothing is left in Stages, nothing is
/// linked, and the answer does not advise sending the same push again.
async fn a_push_stages_refuses_leaves_nothing_in_stages(backend: Backend) {
    let w = world(backend).await;
    let (_, _) = w.stages_site(1);
    let taken = w.sim.state().sites()[0].site_no.clone();
    let in_use = w.sim.state().devices(&taken)[0]
        .fields
        .transmitter_code
        .clone();
    w.billing_site("S1", &["SYS1", "SYS2"]).await;
    let body = json!({"billing_site_id": "S1", "site": {},
        "systems": [{"billing_system_id": "SYS1", "device": {"transmitter_code": format!("55{:05}", suffix())}},
                    {"billing_system_id": "SYS2", "device": {"transmitter_code": in_use}}]});
    let refused = w
        .call(
            Method::POST,
            &format!("/v1/connections/{}/push", w.cid),
            Some(body.clone()),
        )
        .await;
    assert_eq!(refused.assert_problem(422), "upstream_rejected");
    assert!(
        !refused.text.contains("again to finish"),
        "a refusal is not worth sending again: {}",
        refused.text
    );
    assert_eq!(w.sim.state().site_count(), 1, "no new site in Stages");
    assert_eq!(w.links().await, Vec::<Value>::new());
    // Sending it again fails the same way and still leaves nothing.
    let again = w
        .call(
            Method::POST,
            &format!("/v1/connections/{}/push", w.cid),
            Some(body),
        )
        .await;
    assert_eq!(again.assert_problem(422), "upstream_rejected");
    assert_eq!(w.sim.state().site_count(), 1);
    assert_eq!(w.links().await, Vec::<Value>::new());
}

/// Situation 3, second half, and done means: 20 identical pushes at once,
/// no Idempotency-Key. One Stages site, one link; every other answer is a
/// 409 naming that link (not a 422 about a billing id held elsewhere).
async fn twenty_identical_pushes_make_one_site_and_name_the_winner(backend: Backend) {
    let w = world(backend).await;
    w.billing_site("S1", &["SYS1"]).await;
    // A slow Stages keeps the winner's claim held while the others arrive.
    w.sim
        .state()
        .add_fault(slow("POST /api/v1/sites=latency:300"))
        .unwrap();
    let body = json!({"billing_site_id": "S1", "site": {},
        "systems": [{"billing_system_id": "SYS1", "device": {"transmitter_code": format!("44{:05}", suffix())}}]});
    let answers = w.push_at_once(&body, 20).await;
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 1, "{answers:#?}");
    assert_eq!(w.sim.state().site_count(), 1, "one Stages site");
    let links = w.links().await;
    let site_links: Vec<&Value> = links.iter().filter(|l| l["kind"] == "site").collect();
    assert_eq!(site_links.len(), 1, "{links:#?}");
    let link_id = site_links[0]["id"].as_str().unwrap();
    assert_eq!(created[0]["records"][0]["link_id"], link_id);
    for (status, body) in answers.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(body["code"], "already_linked", "{body}");
        assert!(
            body["detail"].as_str().unwrap().contains(link_id),
            "names the winner's link {link_id}: {body}"
        );
    }
}

/// Situation 4: a device edit with a valid new transmitter code and an
/// invalid device type changes nothing, in Stages or in billing.
async fn a_device_edit_with_one_bad_field_changes_nothing(backend: Backend) {
    let w = world(backend).await;
    let (site_no, devices) = w.stages_site(1);
    w.billing_site("B1", &["BS1"]).await;
    let linked = w
        .call(
            Method::POST,
            "/v1/links",
            Some(
                json!({"connection_id": w.cid, "billing_site_id": "B1", "stages_site_no": site_no,
                "systems": [{"billing_system_id": "BS1", "stages_device_id": devices[0]}]}),
            ),
        )
        .await;
    assert_eq!(linked.status, 201, "{}", linked.text);
    let before = w.stages_json(w.sim.state().device(&devices[0]).unwrap());
    let new_code = format!("33{:05}", suffix());
    let edited = w
        .call(
            Method::PATCH,
            &format!("/v1/connections/{}/stages/devices/{}", w.cid, devices[0]),
            Some(json!({"transmitter_code": new_code, "device_type": "NO-SUCH-TYPE"})),
        )
        .await;
    assert_eq!(edited.assert_problem(422), "validation");
    assert!(edited.text.contains("device_type"), "{}", edited.text);
    let after = w.stages_json(w.sim.state().device(&devices[0]).unwrap());
    assert_eq!(
        after["transmitter_code"], before["transmitter_code"],
        "the code did not change in Stages"
    );
    let system = w.call(Method::GET, "/v1/billing/systems/BS1", None).await;
    assert_ne!(system.body["system_number"], new_code.as_str());
    // Both valid: both change, and billing follows.
    let edited = w
        .call(
            Method::PATCH,
            &format!("/v1/connections/{}/stages/devices/{}", w.cid, devices[0]),
            Some(json!({"transmitter_code": new_code, "device_type": "VISTA-20P"})),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    let system = w.call(Method::GET, "/v1/billing/systems/BS1", None).await;
    assert_eq!(system.body["system_number"], new_code.as_str());
}

on_both_backends!(
    two_sends_of_one_site_leave_the_winners_billing_ids,
    fifty_sends_of_one_site_make_one_customer_and_one_link,
    a_push_stages_refuses_leaves_nothing_in_stages,
    twenty_identical_pushes_make_one_site_and_name_the_winner,
    a_device_edit_with_one_bad_field_changes_nothing,
);
