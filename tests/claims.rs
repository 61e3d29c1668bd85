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

    async fn connect_callbacks(&self) {
        self.svc
            .connect_callbacks(&self.admin, &self.cid, &self.sim)
            .await;
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

impl World {
    /// Links billing site `site` with one system `system` to a Stages site
    /// and its device; returns the site link's id.
    async fn linked(&self, site: &str, system: &str, site_no: &str, device: &str) -> String {
        self.billing_site(site, &[system]).await;
        let linked = self
            .call(
                Method::POST,
                "/v1/links",
                Some(json!({"connection_id": self.cid, "billing_site_id": site,
                    "stages_site_no": site_no,
                    "systems": [{"billing_system_id": system, "stages_device_id": device}]})),
            )
            .await;
        assert_eq!(linked.status, 201, "{}", linked.text);
        linked.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["kind"] == "site")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn site_billing_id(&self, site_no: &str) -> Value {
        self.stages_json(self.sim.state().site(site_no).unwrap())["billing_id"].clone()
    }

    fn device_billing_id(&self, device_id: &str) -> Value {
        self.stages_json(self.sim.state().device(device_id).unwrap())["billing_id"].clone()
    }

    /// The external ids of the links, by billing id.
    async fn pointing(&self) -> std::collections::BTreeMap<String, String> {
        self.links()
            .await
            .iter()
            .map(|l| {
                (
                    l["billing_id"].as_str().unwrap().to_owned(),
                    l["external_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

/// S12 under claims: two site links edited at once to the same new Stages
/// site. One edit's read of Stages is slow, so the other overtakes it. The
/// claim decides: one 200, one 409 naming the winner's link; Stages carries
/// the winner's billing ids, the loser's link and records are as they were.
async fn two_edits_to_one_new_site_name_the_winner(backend: Backend) {
    let w = world(backend).await;
    let (old_a, old_a_dev) = w.stages_site(1);
    let (old_b, old_b_dev) = w.stages_site(1);
    let (new_site, new_dev) = w.stages_site(2);
    let link_a = w.linked("SA", "SYSA", &old_a, &old_a_dev[0]).await;
    let link_b = w.linked("SB", "SYSB", &old_b, &old_b_dev[0]).await;
    let before = w.pointing().await;
    // The first read of the new site is slow; writes are slow enough that
    // the winner still acts on Stages while the other edit arrives.
    w.sim
        .state()
        .add_fault(slow(&format!(
            "GET /api/v1/sites/{new_site}=latency:1000,times=1"
        )))
        .unwrap();
    w.sim
        .state()
        .add_fault(slow("PATCH /api/v1/*=latency:100"))
        .unwrap();
    let edit = |link: &str, system: &str, device: &str| {
        let rb = w
            .svc
            .req(Method::PATCH, &format!("/v1/links/{link}"), &w.op)
            .json(&json!({"external_id": new_site,
                "systems": [{"billing_system_id": system, "stages_device_id": device}]}));
        tokio::spawn(async move { Answer::from(rb.send().await.unwrap()).await })
    };
    let a = edit(&link_a, "SYSA", &new_dev[0]);
    let b = edit(&link_b, "SYSB", &new_dev[1]);
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    w.sim.state().clear_faults();
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "a: {}\nb: {}", a.text, b.text);
    // (winner, loser): link id, billing site, system, old site, old device, new device.
    let (won, lost) = if a.status == 200 {
        (
            (&link_a, "SA", "SYSA", &old_a, &old_a_dev[0], &new_dev[0]),
            (
                &link_b,
                "SB",
                "SYSB",
                &old_b,
                &old_b_dev[0],
                &new_dev[1],
                &b,
            ),
        )
    } else {
        (
            (&link_b, "SB", "SYSB", &old_b, &old_b_dev[0], &new_dev[1]),
            (
                &link_a,
                "SA",
                "SYSA",
                &old_a,
                &old_a_dev[0],
                &new_dev[0],
                &a,
            ),
        )
    };
    let refused = lost.6;
    assert_eq!(
        refused.assert_problem(409),
        "already_linked",
        "{}",
        refused.text
    );
    let winner_links: Vec<String> = w
        .links()
        .await
        .iter()
        .filter(|l| l["id"] == won.0.as_str() || l["parent_id"] == won.0.as_str())
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        winner_links
            .iter()
            .any(|id| refused.text.contains(id.as_str())),
        "names the winner's link {}: {}",
        won.0,
        refused.text
    );
    // Stages: the new site and its device carry the winner's ids; the
    // winner's old records let go; the loser's are untouched, and the device
    // it asked for carries nothing.
    assert_eq!(w.site_billing_id(&new_site), won.1);
    assert_eq!(w.device_billing_id(won.5), won.2);
    assert_eq!(w.device_billing_id(lost.5), Value::Null);
    assert_eq!(w.site_billing_id(won.3), Value::Null);
    assert_eq!(w.device_billing_id(won.4), Value::Null);
    assert_eq!(w.site_billing_id(lost.3), lost.1);
    assert_eq!(w.device_billing_id(lost.4), lost.2);
    // The links: the winner's moved, the loser's stayed.
    let mut expected = before.clone();
    expected.insert(won.1.to_owned(), new_site.clone());
    expected.insert(won.2.to_owned(), won.5.clone());
    assert_eq!(w.pointing().await, expected);
}

/// S12, all or nothing: Stages refuses the new device's billing id for good
/// (a Stages operator put that system's billing id on another device). The
/// edit answers 422 without advising to send it again, and nothing is half
/// done: the link still points at the old site, the old site keeps its
/// billing id, the new site and device carry none. After a transient failure
/// the answer advises sending it again, and nothing is half done either; sent
/// again, it moves everything.
async fn an_edit_stages_refuses_changes_nothing(backend: Backend) {
    let w = world(backend).await;
    let (old_site, old_dev) = w.stages_site(1);
    let (new_site, new_dev) = w.stages_site(1);
    let (_, elsewhere) = w.stages_site(1);
    let link = w.linked("S1", "SYS1", &old_site, &old_dev[0]).await;
    // Drift in Stages: SYS1's billing id moved to a device of another site.
    for (device, billing_id) in [(&old_dev[0], ""), (&elsewhere[0], "SYS1")] {
        w.sim
            .state()
            .patch_device(
                device,
                serde_json::from_value(json!({"billing_id": billing_id})).unwrap(),
            )
            .unwrap();
    }
    let before = w.pointing().await;
    let body = json!({"external_id": new_site,
        "systems": [{"billing_system_id": "SYS1", "stages_device_id": new_dev[0]}]});
    let path = format!("/v1/links/{link}");
    let unchanged = |w: &World| {
        assert_eq!(w.site_billing_id(&old_site), "S1");
        assert_eq!(w.site_billing_id(&new_site), Value::Null);
        assert_eq!(w.device_billing_id(&new_dev[0]), Value::Null);
        assert_eq!(w.device_billing_id(&old_dev[0]), Value::Null);
    };

    let refused = w.call(Method::PATCH, &path, Some(body.clone())).await;
    assert_eq!(
        refused.assert_problem(422),
        "upstream_rejected",
        "{}",
        refused.text
    );
    assert!(
        !refused.text.contains("again."),
        "a refusal is not worth sending again: {}",
        refused.text
    );
    unchanged(&w);
    assert_eq!(w.device_billing_id(&elsewhere[0]), "SYS1");
    assert_eq!(w.pointing().await, before);

    // The drift corrected, Stages fails on the way (the first attempt and
    // the harness's one retry): worth sending again.
    w.sim
        .state()
        .patch_device(
            &elsewhere[0],
            serde_json::from_value(json!({"billing_id": ""})).unwrap(),
        )
        .unwrap();
    w.sim
        .state()
        .add_fault(slow(&format!(
            "PATCH /api/v1/devices/{}=error:503,times=2",
            new_dev[0]
        )))
        .unwrap();
    let failed = w.call(Method::PATCH, &path, Some(body.clone())).await;
    assert_eq!(failed.status, 502, "{}", failed.text);
    assert!(failed.text.contains("Send it again"), "{}", failed.text);
    unchanged(&w);
    assert_eq!(w.pointing().await, before);

    let edited = w.call(Method::PATCH, &path, Some(body)).await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    assert_eq!(w.site_billing_id(&new_site), "S1");
    assert_eq!(w.device_billing_id(&new_dev[0]), "SYS1");
    assert_eq!(w.site_billing_id(&old_site), Value::Null);
    assert_eq!(
        w.pointing().await,
        std::collections::BTreeMap::from([
            ("S1".to_owned(), new_site.clone()),
            ("SYS1".to_owned(), new_dev[0].clone()),
        ])
    );
}

on_both_backends!(
    two_sends_of_one_site_leave_the_winners_billing_ids,
    fifty_sends_of_one_site_make_one_customer_and_one_link,
    a_push_stages_refuses_leaves_nothing_in_stages,
    twenty_identical_pushes_make_one_site_and_name_the_winner,
    a_device_edit_with_one_bad_field_changes_nothing,
    two_edits_to_one_new_site_name_the_winner,
    an_edit_stages_refuses_changes_nothing,
);
