//! End to end, releasing a site and repairing lost billing ids (S8, S13, B4):
//! an unlink with `release=true` clears the billing ids in Stages, so the
//! site lists as unlinked and links to another billing site; a reconcile
//! reports a link whose billing id was cleared or changed in Stages, and
//! writes it back when asked. Checked on the service and the simulator.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use support::*;

struct World {
    sim: stages_sim::Sim,
    svc: Service,
    op: Who,
    cid: String,
    /// The simulator's sites, each with its first device.
    sites: Vec<(String, String)>,
}

async fn world(backend: Backend) -> World {
    let sim = start_sim(3).await;
    let svc = Service::in_process(backend, Vec::new()).await;
    let op = Who::new("acme", "olivia", "operator");
    // The migration (nothing to take over here) is over before the test starts.
    let cid = svc.stages_connection(&Who::admin("acme"), &sim).await;
    let sites = sim
        .state()
        .sites()
        .iter()
        .map(|s| {
            let d = serde_json::to_value(&sim.state().devices(&s.site_no)[0]).unwrap();
            (
                s.site_no.clone(),
                d["device_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let w = World {
        sim,
        svc,
        op,
        cid,
        sites,
    };
    for n in 1..=4 {
        w.put(
            &format!("/v1/billing/sites/S{n}"),
            json!({"name": format!("Site {n}")}),
        )
        .await;
        w.put(
            &format!("/v1/billing/systems/SYS{n}"),
            json!({"site_id": format!("S{n}")}),
        )
        .await;
    }
    w
}

impl World {
    async fn put(&self, path: &str, body: Value) {
        let a = self.svc.call(Method::PUT, path, &self.op, Some(body)).await;
        assert!(a.status == 200 || a.status == 201, "PUT {path}: {}", a.text);
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.svc.call(method, path, &self.op, body).await
    }

    /// Links billing site `S{n}` and system `SYS{n}` to site `at` and its device.
    async fn link(&self, n: u32, at: usize) -> Answer {
        let (site_no, device) = &self.sites[at];
        self.call(
            Method::POST,
            "/v1/links",
            Some(
                json!({"connection_id": self.cid, "billing_site_id": format!("S{n}"),
                "stages_site_no": site_no,
                "systems": [{"billing_system_id": format!("SYS{n}"), "stages_device_id": device}]}),
            ),
        )
        .await
    }

    fn site_billing_id(&self, at: usize) -> Value {
        serde_json::to_value(self.sim.state().site(&self.sites[at].0).unwrap()).unwrap()
            ["billing_id"]
            .clone()
    }

    fn device_billing_id(&self, at: usize) -> Value {
        serde_json::to_value(self.sim.state().device(&self.sites[at].1).unwrap()).unwrap()
            ["billing_id"]
            .clone()
    }

    async fn unlinked_sites(&self) -> Vec<String> {
        let a = self
            .call(
                Method::GET,
                &format!("/v1/connections/{}/stages/sites?unlinked=true", self.cid),
                None,
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["site_no"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn reconcile(&self, query: &str) -> Value {
        let job = self
            .call(
                Method::POST,
                &format!("/v1/connections/{}:reconcile{query}", self.cid),
                None,
            )
            .await;
        assert_eq!(job.status, 202, "{}", job.text);
        let id = job.body["id"].as_str().unwrap().to_owned();
        let done = self
            .svc
            .wait_ended(&self.op, &format!("/v1/jobs/{id}"))
            .await;
        assert_eq!(done["state"], "succeeded", "{done}");
        done["summary"].clone()
    }

    async fn actions(&self, subject: &str) -> Vec<String> {
        self.call(Method::GET, &format!("/v1/audit?subject={subject}"), None)
            .await
            .body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn site_link(set: &Answer) -> String {
    set.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == "site")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn a_released_site_is_linked_to_another_billing_site(backend: Backend) {
    let w = world(backend).await;
    let site_no = w.sites[0].0.clone();
    let linked = w.link(1, 0).await;
    assert_eq!(linked.status, 201, "{}", linked.text);
    assert!(!w.unlinked_sites().await.contains(&site_no));

    // A plain unlink leaves the billing ids in Stages: the site stays taken,
    // and the advice says how to let it go.
    let plain = w.link(2, 1).await;
    assert_eq!(plain.status, 201, "{}", plain.text);
    let gone = w
        .call(
            Method::DELETE,
            &format!("/v1/links/{}", site_link(&plain)),
            None,
        )
        .await;
    assert_eq!(gone.status, 200, "{}", gone.text);
    assert_eq!(w.site_billing_id(1), "S2");
    assert!(!w.unlinked_sites().await.contains(&w.sites[1].0));
    let refused = w.link(3, 1).await;
    assert_eq!(refused.assert_problem(409), "claimed_in_stages");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("release=true"),
        "{}",
        refused.text
    );
    // So does the advice about a site whose link is still there, naming it.
    let taken = w.link(3, 0).await;
    assert_eq!(taken.assert_problem(409), "claimed_in_stages");
    let detail = taken.body["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("/v1/links/{}?release=true", site_link(&linked))),
        "{detail}"
    );

    // Released: both links go and Stages forgets the billing ids.
    let released = w
        .call(
            Method::DELETE,
            &format!("/v1/links/{}?release=true", site_link(&linked)),
            None,
        )
        .await;
    assert_eq!(released.status, 200, "{}", released.text);
    assert_eq!(released.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(w.site_billing_id(0), Value::Null);
    assert_eq!(w.device_billing_id(0), Value::Null);
    assert!(w.unlinked_sites().await.contains(&site_no));
    let audit = w.call(Method::GET, "/v1/audit?subject=S1", None).await.body["items"][0].clone();
    assert_eq!(audit["action"], "release", "{audit}");
    assert_eq!(audit["before"]["stages_billing_id"], "S1", "{audit}");
    assert_eq!(audit["after"]["stages_billing_id"], Value::Null, "{audit}");
    assert_eq!(w.actions("SYS1").await, ["release", "link"], "newest first");

    // Another billing site takes it.
    let again = w.link(3, 0).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(w.site_billing_id(0), "S3");
    assert_eq!(w.device_billing_id(0), "SYS3");

    // A release cannot leave Stages half cleared: the site's write fails after
    // its device was cleared; the device gets its id back and the links stay.
    w.sim
        .state()
        .add_fault(stages_sim::FaultRule::parse("PATCH /api/v1/sites/*=error:500").unwrap())
        .unwrap();
    let failed = w
        .call(
            Method::DELETE,
            &format!("/v1/links/{}?release=true", site_link(&again)),
            None,
        )
        .await;
    failed.assert_problem(502);
    w.sim.state().clear_faults();
    assert_eq!(w.site_billing_id(0), "S3");
    assert_eq!(w.device_billing_id(0), "SYS3", "put back");
    let still = w
        .call(
            Method::GET,
            &format!("/v1/links/{}", site_link(&again)),
            None,
        )
        .await;
    assert_eq!(still.status, 200, "{}", still.text);
}

async fn a_cleared_billing_id_is_reported_and_repaired_when_asked(backend: Backend) {
    let w = world(backend).await;
    for (n, at) in [(1, 0), (2, 1)] {
        let a = w.link(n, at).await;
        assert_eq!(a.status, 201, "{}", a.text);
    }
    // In Stages someone clears site 0's billing id and retypes device 1's.
    w.sim
        .state()
        .patch_site(
            &w.sites[0].0,
            serde_json::from_value(json!({"billing_id": ""})).unwrap(),
        )
        .unwrap();
    w.sim
        .state()
        .patch_device(
            &w.sites[1].1,
            serde_json::from_value(json!({"billing_id": "SYS-TYPO"})).unwrap(),
        )
        .unwrap();
    assert_eq!(w.site_billing_id(0), Value::Null);

    let drift_of = |s: &Value, kind: &str| -> Vec<Value> {
        s["drift"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"] == kind)
            .cloned()
            .collect()
    };
    let reported = w.reconcile("").await;
    assert_eq!(
        reported["drift_counts"]["billing_id_cleared"], 1,
        "{reported}"
    );
    assert_eq!(
        reported["drift_counts"]["billing_id_changed"], 1,
        "{reported}"
    );
    assert_eq!(
        reported["drift_counts"].as_object().unwrap().len(),
        2,
        "{reported}"
    );
    let cleared = &drift_of(&reported, "billing_id_cleared")[0];
    assert_eq!(cleared["record"], "site");
    assert_eq!(cleared["external_id"], w.sites[0].0.as_str());
    assert_eq!(cleared["billing_id"], "S1");
    assert_eq!(cleared.get("repaired"), None, "{cleared}");
    let changed = &drift_of(&reported, "billing_id_changed")[0];
    assert_eq!(changed["billing_id"], "SYS2");
    assert!(changed["detail"].as_str().unwrap().contains("SYS-TYPO"));
    assert_eq!(reported["repaired"], json!({"sites": 0, "systems": 0}));
    assert_eq!(
        reported["already_linked"],
        json!({"sites": 1, "systems": 1})
    );
    assert_eq!(w.site_billing_id(0), Value::Null, "only reported");

    let dry = w.reconcile("?repair=true&dry_run=true").await;
    assert_eq!(dry["repaired"], json!({"sites": 1, "systems": 1}), "{dry}");
    assert_eq!(
        w.site_billing_id(0),
        Value::Null,
        "a dry run writes nothing"
    );

    let repaired = w.reconcile("?repair=true").await;
    assert_eq!(
        repaired["repaired"],
        json!({"sites": 1, "systems": 1}),
        "{repaired}"
    );
    assert_eq!(
        drift_of(&repaired, "billing_id_cleared")[0]["repaired"],
        true
    );
    assert_eq!(w.site_billing_id(0), "S1");
    assert_eq!(w.device_billing_id(1), "SYS2");
    let audit = w
        .call(Method::GET, "/v1/audit?subject=SYS2", None)
        .await
        .body["items"][0]
        .clone();
    assert_eq!(audit["action"], "reconcile_repair", "{audit}");
    assert_eq!(audit["actor"], "system:reconcile (olivia)");
    assert_eq!(audit["before"]["stages_billing_id"], "SYS-TYPO");
    assert_eq!(audit["after"]["stages_billing_id"], "SYS2");

    let clean = w.reconcile("").await;
    assert_eq!(clean["drift_counts"], json!({}), "{clean}");
    assert_eq!(clean["already_linked"], json!({"sites": 2, "systems": 2}));
}

on_both_backends!(
    a_released_site_is_linked_to_another_billing_site,
    a_cleared_billing_id_is_reported_and_repaired_when_asked,
);
