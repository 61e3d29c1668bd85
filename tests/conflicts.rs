//! End to end: where two writers meet on a field (S11, S18, S19). One sync
//! decision settles both directions: a late Stages callback does not
//! overwrite a newer billing edit (the field is held as a conflict, listed
//! in the inbox, announced on the feed, resolved from there or settled by
//! the connection's `conflict_policy`); a field Stages refuses does not stop
//! the record's other fields and is reported; a device field Stages'
//! callbacks do not carry waits for a sync instead of being dropped.

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
    let sim = start_sim(0).await;
    let svc = Service::in_process(
        backend,
        vec![
            ("CROSSLINK__JOBS__RETRY_BASE_MS".into(), "20".into()),
            ("CROSSLINK__JOBS__RETRY_CAP_MS".into(), "200".into()),
        ],
    )
    .await;
    let admin = Who::admin("acme");
    let cid = svc
        .create_connection(&admin, "Stages", &sim.base_url(), "dealer")
        .await;
    let creds = svc
        .call(
            Method::PUT,
            &format!("/v1/connections/{cid}/credentials/dealer"),
            &admin,
            Some(json!({"username": SIM_USER, "password": SIM_PASSWORD})),
        )
        .await;
    assert!(creds.status < 300, "{}", creds.text);
    let w = World {
        sim,
        svc,
        op: Who::new("acme", "olivia", "operator"),
        admin,
        cid,
    };
    w.connect_callbacks().await;
    w
}

const SITE: &str = r#"{"name": "Lovelace home", "address1": "12 Elm St", "city": "Columbus", "state": "Ohio", "zip": "43004", "phone": "(614) 555-0101"}"#;

impl World {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.svc.call(method, path, &self.op, body).await
    }

    /// Billing site `site` with system `SYS-site` pushed to Stages; returns
    /// (site_no, device_id, site link, system link).
    async fn pushed(&self, site: &str, code: &str) -> (String, String, String, String) {
        let s = self
            .call(
                Method::PUT,
                &format!("/v1/billing/sites/{site}"),
                Some(serde_json::from_str(SITE).unwrap()),
            )
            .await;
        assert!(s.status < 300, "{}", s.text);
        let y = self
            .call(
                Method::PUT,
                &format!("/v1/billing/systems/SYS-{site}"),
                Some(json!({"site_id": site, "system_number": code, "location": "Basement"})),
            )
            .await;
        assert!(y.status < 300, "{}", y.text);
        let p = self.call(Method::POST, &format!("/v1/connections/{}/push", self.cid), Some(json!({
            "billing_site_id": site, "systems": [{"billing_system_id": format!("SYS-{site}"), "device": {"transmitter_code": code}}]}))).await;
        assert_eq!(p.status, 201, "{}", p.text);
        let r = &p.body["records"];
        let text = |v: &Value| v.as_str().unwrap().to_owned();
        (
            text(&r[0]["external_id"]),
            text(&r[1]["external_id"]),
            text(&r[0]["link_id"]),
            text(&r[1]["link_id"]),
        )
    }

    /// Billing's edit of one site field (the rest as they are).
    async fn edit_site(&self, site: &str, field: &str, value: &str) {
        let path = format!("/v1/billing/sites/{site}");
        let now = self.call(Method::GET, &path, None).await;
        let mut body = json!({});
        for f in [
            "name", "address1", "address2", "city", "state", "zip", "phone", "info",
        ] {
            body[f] = now.body[f].clone();
        }
        body[field] = json!(value);
        let a = self.call(Method::PUT, &path, Some(body)).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.body[field], value);
    }

    fn stages_site(&self, site_no: &str) -> Value {
        serde_json::to_value(self.sim.state().site(site_no).unwrap()).unwrap()
    }

    fn stages_device(&self, device_id: &str) -> Value {
        serde_json::to_value(self.sim.state().device(device_id).unwrap()).unwrap()
    }

    async fn billing(&self, path: &str) -> Value {
        self.call(Method::GET, path, None).await.body
    }

    async fn quiesce(&self) {
        self.svc.quiesce(&self.op, &[&self.sim]).await
    }

    async fn connect_callbacks(&self) {
        self.svc
            .connect_callbacks(&self.admin, &self.cid, &self.sim)
            .await;
    }

    async fn set_policy(&self, policy: &str) {
        let a = self
            .svc
            .call(
                Method::PATCH,
                &format!("/v1/connections/{}", self.cid),
                &self.admin,
                Some(json!({"conflict_policy": policy})),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.body["conflict_policy"], policy);
    }

    /// Stages changes a site field; its callback is held back until billing
    /// has changed the same field while Stages refused pushes (503); then
    /// Stages recovers and the old callback arrives.
    async fn both_change(
        &self,
        site: &str,
        site_no: &str,
        field: &str,
        stages: &str,
        billing: &str,
    ) {
        self.sim.state().set_callbacks_paused(true);
        self.sim
            .state()
            .patch_site(
                site_no,
                serde_json::from_value(json!({field: stages})).unwrap(),
            )
            .unwrap();
        self.sim
            .state()
            .add_fault(stages_sim::FaultRule::parse("PATCH /api/v1/sites/*=error:503").unwrap())
            .unwrap();
        let tried = self.pushes_tried().await;
        self.edit_site(site, field, billing).await;
        // The Auto Sync push has decided before the old callback arrives
        // (held, pushed into the outage, or pulled, as the policy says).
        self.svc
            .eventually("the Auto Sync push to run", STEP_LIMIT, || async {
                (self.pushes_tried().await > tried).then_some(())
            })
            .await;
        self.sim.state().set_callbacks_paused(false);
        self.sim.state().clear_faults();
        self.quiesce().await;
    }

    /// Auto Sync pushes that ran at least once: an attempt is counted, or
    /// (met an outage, which gives its attempt back) an error is kept.
    async fn pushes_tried(&self) -> usize {
        let jobs = self
            .call(
                Method::GET,
                "/v1/jobs?kind=auto_sync_push&page_size=500",
                None,
            )
            .await;
        jobs.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["attempts"].as_u64().unwrap_or(0) >= 1 || !j["error"].is_null())
            .count()
    }

    /// PATCHes of sites Stages has received, refused ones included.
    fn site_patches(&self) -> u64 {
        self.sim
            .state()
            .request_count("PATCH /api/v1/sites/{site_no}")
    }

    /// Until the Auto Sync push has met the outage: Stages refused its PATCH
    /// and the client's one retry of it (`CROSSLINK__STAGES__MAX_RETRIES=1`
    /// in the harness), so no PATCH decided before now is still on its way.
    async fn wait_push_failed(&self, patches_before: u64) {
        let what = "the Auto Sync push to meet the outage";
        self.svc
            .eventually(what, STEP_LIMIT, || async {
                (self.site_patches() >= patches_before + 2).then_some(())
            })
            .await
    }

    async fn inbox(&self, query: &str) -> Vec<Value> {
        let a = self
            .call(Method::GET, &format!("/v1/conflicts{query}"), None)
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.body["items"].as_array().unwrap().clone()
    }
}

/// Situation 1 of "where two writers meet": Stages changed the address, its
/// callback came late, billing changed the address meanwhile. Neither side's
/// edit is lost: the field is held (each side keeps its value), the other
/// fields still sync, the inbox and the feed say so, and a resolution from
/// the inbox settles it through the same path as a record sync.
async fn a_late_callback_does_not_overwrite_a_newer_billing_edit(backend: Backend) {
    let w = world(backend).await;
    let (site_no, _, site_link, _) = w.pushed("L1", "7100001").await;
    w.both_change("L1", &site_no, "address1", "9 Stages Way", "7 Billing Blvd")
        .await;

    let billing = w.billing("/v1/billing/sites/L1").await;
    assert_eq!(billing["address1"], "7 Billing Blvd", "billing's edit kept");
    assert_eq!(
        w.stages_site(&site_no)["address1"],
        "9 Stages Way",
        "Stages' edit kept"
    );
    let held = w.inbox("").await;
    assert_eq!(held.len(), 1, "{held:?}");
    let c = &held[0];
    assert_eq!(c["issue"], "conflict");
    assert_eq!(c["link_id"], site_link.as_str());
    assert_eq!(c["connection_id"], w.cid.as_str());
    assert_eq!(c["record_kind"], "site");
    assert_eq!(c["billing_id"], "L1");
    assert_eq!(c["external_id"], site_no.as_str());
    assert_eq!(c["field"], "address1");
    assert_eq!(c["billing_value"], "7 Billing Blvd");
    assert_eq!(c["stages_value"], "9 Stages Way");
    assert_eq!(c["last_synced"], "12 Elm St");
    // The filters narrow the inbox.
    assert_eq!(w.inbox("?field=address1&record_kind=site").await.len(), 1);
    assert_eq!(w.inbox("?field=city").await.len(), 0);
    assert_eq!(w.inbox("?record_kind=system").await.len(), 0);
    assert_eq!(w.inbox("?older_than_secs=3600").await.len(), 0);
    assert_eq!(w.inbox(&format!("?connection_id={}", w.cid)).await.len(), 1);
    // Said once on the feed, however many times the jobs decided it again.
    let feed = w
        .call(Method::GET, "/v1/events?types=link.conflict", None)
        .await;
    let events = feed.body["items"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{}", feed.text);
    assert_eq!(events[0]["subject_id"], "L1");
    assert_eq!(events[0]["data"]["field"], "address1");
    // The diff shows it too.
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
    assert_eq!(address["status"], "conflict", "{}", diff.text);

    // A later billing edit of another field still syncs; the held one stays.
    w.edit_site("L1", "city", "Dayton").await;
    w.quiesce().await;
    assert_eq!(w.stages_site(&site_no)["city"], "Dayton");
    assert_eq!(w.stages_site(&site_no)["address1"], "9 Stages Way");
    assert_eq!(w.inbox("").await.len(), 1);

    // Resolved from the inbox: Stages' value, to both sides.
    let r = w
        .call(
            Method::POST,
            "/v1/conflicts:resolve",
            Some(json!({"resolutions": [{"link_id": site_link, "use": "stages"}]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["items"][0]["resolved"],
        json!(["address1"]),
        "{}",
        r.text
    );
    assert_eq!(r.body["items"][0]["error"], Value::Null);
    w.quiesce().await;
    assert_eq!(
        w.billing("/v1/billing/sites/L1").await["address1"],
        "9 Stages Way"
    );
    assert_eq!(w.stages_site(&site_no)["address1"], "9 Stages Way");
    assert_eq!(w.inbox("").await, Vec::<Value>::new());
    // Refused resolutions answer for themselves.
    let bad = w
        .call(
            Method::POST,
            "/v1/conflicts:resolve",
            Some(json!({"resolutions": [{"link_id": site_link, "field": "colour", "use": "billing"}]})),
        )
        .await;
    assert_eq!(bad.status, 200, "{}", bad.text);
    assert_eq!(bad.body["items"][0]["error"]["status"], 422, "{}", bad.text);
    w.call(
        Method::POST,
        "/v1/conflicts:resolve",
        Some(json!({"resolutions": []})),
    )
    .await
    .assert_problem(422);
}

/// `conflict_policy` settles a field both sides changed without anyone:
/// `billing_wins` sends billing's value, `stages_wins` takes Stages',
/// `newest_wins` the later edit, and nothing stays held.
async fn the_conflict_policy_settles_a_field_both_sides_changed(backend: Backend) {
    let w = world(backend).await;
    let created = w
        .svc
        .call(
            Method::GET,
            &format!("/v1/connections/{}", w.cid),
            &w.admin,
            None,
        )
        .await;
    assert_eq!(created.body["conflict_policy"], "hold", "the default");

    w.set_policy("billing_wins").await;
    let (site_no, _, _, _) = w.pushed("P1", "7200001").await;
    w.both_change("P1", &site_no, "address1", "9 Stages Way", "7 Billing Blvd")
        .await;
    assert_eq!(w.stages_site(&site_no)["address1"], "7 Billing Blvd");
    assert_eq!(
        w.billing("/v1/billing/sites/P1").await["address1"],
        "7 Billing Blvd"
    );

    w.set_policy("stages_wins").await;
    let (site_no, _, _, _) = w.pushed("P2", "7200002").await;
    w.both_change("P2", &site_no, "address1", "9 Stages Way", "7 Billing Blvd")
        .await;
    assert_eq!(w.stages_site(&site_no)["address1"], "9 Stages Way");
    assert_eq!(
        w.billing("/v1/billing/sites/P2").await["address1"],
        "9 Stages Way"
    );

    assert_eq!(w.inbox("").await, Vec::<Value>::new());
    let feed = w
        .call(Method::GET, "/v1/events?types=link.conflict", None)
        .await;
    assert_eq!(feed.body["items"], json!([]), "{}", feed.text);

    // newest_wins: the later of the two edits, by billing's record time and
    // the time Stages' callback gives its change.
    w.set_policy("newest_wins").await;
    let (site_no, _, _, _) = w.pushed("P3", "7200003").await;
    w.both_change("P3", &site_no, "address1", "9 Stages Way", "7 Billing Blvd")
        .await;
    assert_eq!(
        w.stages_site(&site_no)["address1"],
        "7 Billing Blvd",
        "billing's edit came last"
    );
    assert_eq!(
        w.billing("/v1/billing/sites/P3").await["address1"],
        "7 Billing Blvd"
    );
    let (site_no, _, _, _) = w.pushed("P4", "7200004").await;
    w.sim.state().set_callbacks_paused(true);
    w.sim
        .state()
        .add_fault(stages_sim::FaultRule::parse("PATCH /api/v1/sites/*=error:503").unwrap())
        .unwrap();
    let patches = w.site_patches();
    w.edit_site("P4", "address1", "7 Billing Blvd").await;
    // The push has failed and waits (Stages has no conditional write: an
    // edit made while our PATCH is on its way is overwritten by it).
    w.wait_push_failed(patches).await;
    w.sim
        .state()
        .patch_site(
            &site_no,
            serde_json::from_value(json!({"address1": "9 Stages Way"})).unwrap(),
        )
        .unwrap();
    w.sim.state().set_callbacks_paused(false);
    w.sim.state().clear_faults();
    w.quiesce().await;
    assert_eq!(
        w.stages_site(&site_no)["address1"],
        "9 Stages Way",
        "Stages' edit came last"
    );
    assert_eq!(
        w.billing("/v1/billing/sites/P4").await["address1"],
        "9 Stages Way"
    );
    assert_eq!(w.inbox("").await, Vec::<Value>::new());
    w.svc
        .call(
            Method::PATCH,
            &format!("/v1/connections/{}", w.cid),
            &w.admin,
            Some(json!({"conflict_policy": "coin_toss"})),
        )
        .await
        .assert_problem(422);
}

/// Situation 5: Stages refuses one field (a transmitter code another device
/// holds). The record's other fields still arrive; the refusal is kept on
/// the link (the inbox with `issue=refused`) and said on the feed; a later
/// change of another field arrives too; correcting the code clears it.
async fn a_field_stages_refuses_does_not_block_the_others(backend: Backend) {
    let w = world(backend).await;
    let (_, device_a, _, system_link) = w.pushed("R1", "7300001").await;
    let (_, device_b, _, _) = w.pushed("R2", "7300002").await;
    let edit_system = |number: &'static str, location: &'static str| {
        let w = &w;
        async move {
            let a = w
                .call(
                    Method::PUT,
                    "/v1/billing/systems/SYS-R1",
                    Some(json!({"site_id": "R1", "system_number": number, "location": location})),
                )
                .await;
            assert_eq!(a.status, 200, "{}", a.text);
            w.quiesce().await;
        }
    };
    // 7300002 is R2's device's code.
    edit_system("7300002", "Garage").await;
    let a = w.stages_device(&device_a);
    assert_eq!(a["transmitter_code"], "7300001", "refused");
    assert_eq!(a["location"], "Garage", "the other field arrived");
    assert_eq!(w.stages_device(&device_b)["transmitter_code"], "7300002");
    let refused = w.inbox("?issue=refused").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["link_id"], system_link.as_str());
    assert_eq!(refused[0]["field"], "system_number");
    assert_eq!(refused[0]["billing_value"], "7300002");
    assert!(
        refused[0]["reason"].as_str().unwrap().contains("7300002"),
        "Stages' reason: {:?}",
        refused[0]
    );
    assert_eq!(w.inbox("").await, Vec::<Value>::new(), "not a conflict");
    let feed = w
        .call(Method::GET, "/v1/events?types=link.sync_failed", None)
        .await;
    assert_eq!(
        feed.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        feed.text
    );
    assert_eq!(feed.body["items"][0]["subject_id"], "SYS-R1");
    let dead = w.call(Method::GET, "/v1/jobs?state=dead", None).await;
    assert_eq!(
        dead.body["items"],
        json!([]),
        "the job did not fail: {}",
        dead.text
    );

    // Another change of the record still arrives; the refusal stays, said once.
    edit_system("7300002", "Attic").await;
    assert_eq!(w.stages_device(&device_a)["location"], "Attic");
    assert_eq!(w.inbox("?issue=refused").await.len(), 1);
    let feed = w
        .call(Method::GET, "/v1/events?types=link.sync_failed", None)
        .await;
    assert_eq!(
        feed.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        feed.text
    );

    // Billing corrects the code: it goes out and the refusal is gone.
    edit_system("7300009", "Attic").await;
    assert_eq!(w.stages_device(&device_a)["transmitter_code"], "7300009");
    assert_eq!(w.inbox("?issue=refused").await, Vec::<Value>::new());
}

/// Situation 6: a device's location is a synced field (the diff compares it,
/// pushes send it) that Stages' callbacks do not carry to billing (S18 lists
/// address, info, phone and the transmitter code). A Stages change of it is
/// not dropped as "unchanged": the callback says it waits for a sync, the
/// diff proposes Stages' value, and a sync takes it.
async fn a_device_location_changed_in_stages_waits_for_a_sync(backend: Backend) {
    let w = world(backend).await;
    let (_, device_id, _, system_link) = w.pushed("D1", "7400001").await;
    w.sim
        .state()
        .patch_device(
            &device_id,
            serde_json::from_value(json!({"location": "Garage"})).unwrap(),
        )
        .unwrap();
    w.quiesce().await;
    assert_eq!(
        w.billing("/v1/billing/systems/SYS-D1").await["location"],
        "Basement",
        "not taken without a sync (S18)"
    );
    let jobs = w
        .call(Method::GET, "/v1/jobs?kind=stages_callback", None)
        .await;
    let outcomes: Vec<&Value> = jobs.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| &j["summary"]["outcome"])
        .collect();
    assert_eq!(outcomes, vec!["awaiting_sync"], "{}", jobs.text);
    let diff = w
        .call(Method::GET, &format!("/v1/links/{system_link}/diff"), None)
        .await;
    let location = diff.body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "location")
        .unwrap()
        .clone();
    assert_eq!(location["status"], "external_changed", "{}", diff.text);
    assert_eq!(location["proposed"], "take_external");
    // Auto Sync does not push the old value back over it either.
    assert_eq!(w.stages_device(&device_id)["location"], "Garage");
    let synced = w
        .call(
            Method::POST,
            &format!("/v1/links/{system_link}:sync"),
            Some(json!({})),
        )
        .await;
    assert_eq!(synced.status, 200, "{}", synced.text);
    assert_eq!(
        w.billing("/v1/billing/systems/SYS-D1").await["location"],
        "Garage"
    );
}

/// A push whose billing write then loses a race keeps what Stages took as
/// its base: Auto Sync pushes billing's phone and takes Stages' new info in
/// one go; billing changes the phone again while the push is on its way, so
/// the info write finds billing changed and the job runs again. The second
/// run must see Stages' phone as the service's own push, not as a change
/// made in Stages: it pushes billing's newer phone, and nothing is held.
async fn a_push_whose_billing_write_loses_a_race_keeps_its_base(backend: Backend) {
    let w = world(backend).await;
    let (site_no, _, _, _) = w.pushed("B1", "7500001").await;
    w.sim.state().set_callbacks_paused(true);
    w.sim
        .state()
        .patch_site(
            &site_no,
            serde_json::from_value(json!({"info": "Gate code 1234"})).unwrap(),
        )
        .unwrap();
    w.sim
        .state()
        .add_fault(
            stages_sim::FaultRule::parse("PATCH /api/v1/sites/*=latency:1500,times=1").unwrap(),
        )
        .unwrap();
    w.edit_site("B1", "phone", "412-555-0199").await;
    // The push is on its way to Stages (held 1.5 s there): billing moves on.
    let patches = || w.sim.state().request_count("PATCH /api/v1/sites/{site_no}");
    w.svc
        .eventually("the push to reach Stages", STEP_LIMIT, || async {
            (patches() > 0).then_some(())
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.edit_site("B1", "phone", "(330) 555-0123").await;
    w.sim.state().set_callbacks_paused(false);
    w.quiesce().await;

    let billing = w.billing("/v1/billing/sites/B1").await;
    let stages = w.stages_site(&site_no);
    assert_eq!(
        billing["phone"], "(330) 555-0123",
        "billing's newer edit kept"
    );
    assert_eq!(stages["phone"], "(330) 555-0123", "and pushed");
    assert_eq!(billing["info"], "Gate code 1234", "Stages' edit taken");
    assert_eq!(stages["info"], "Gate code 1234");
    assert_eq!(w.inbox("").await, Vec::<Value>::new(), "nothing held");
}

on_both_backends!(
    a_push_whose_billing_write_loses_a_race_keeps_its_base,
    a_late_callback_does_not_overwrite_a_newer_billing_edit,
    the_conflict_policy_settles_a_field_both_sides_changed,
    a_field_stages_refuses_does_not_block_the_others,
    a_device_location_changed_in_stages_waits_for_a_sync,
);
