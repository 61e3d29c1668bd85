//! End to end, automatic migration (S20): a Stages connection whose Stages
//! already holds billing ids (an older integration's) links them as soon as
//! its credentials work, with no call to `:reconcile`; `migrate_on_connect:
//! false` queues nothing; checked on the service and the Stages simulator.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use support::*;

const SITES: usize = 3;

/// A simulator whose sites and first devices carry billing ids `OLD-i` and
/// `OLD-SYS-i`, and a service whose billing side knows those records.
async fn older_integration(backend: Backend) -> (stages_sim::Sim, Service) {
    let sim = start_sim(SITES).await;
    for (i, s) in sim.state().sites().iter().enumerate() {
        sim.state()
            .patch_site(
                &s.site_no,
                serde_json::from_value(json!({"billing_id": format!("OLD-{i}")})).unwrap(),
            )
            .unwrap();
        let device = serde_json::to_value(&sim.state().devices(&s.site_no)[0]).unwrap();
        sim.state()
            .patch_device(
                device["device_id"].as_str().unwrap(),
                serde_json::from_value(json!({"billing_id": format!("OLD-SYS-{i}")})).unwrap(),
            )
            .unwrap();
    }
    let svc = Service::in_process(backend, Vec::new()).await;
    let op = Who::new("acme", "olivia", "operator");
    for i in 0..SITES {
        for (path, body) in [
            (
                format!("/v1/billing/sites/OLD-{i}"),
                json!({"name": format!("Old {i}")}),
            ),
            (
                format!("/v1/billing/systems/OLD-SYS-{i}"),
                json!({"site_id": format!("OLD-{i}")}),
            ),
        ] {
            let a = svc.call(Method::PUT, &path, &op, Some(body)).await;
            assert_eq!(a.status, 201, "{}", a.text);
        }
    }
    (sim, svc)
}

async fn connection(svc: &Service, who: &Who, cid: &str) -> Value {
    let a = svc
        .call(Method::GET, &format!("/v1/connections/{cid}"), who, None)
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.body
}

async fn set_credentials(svc: &Service, admin: &Who, cid: &str, password: &str) {
    let a = svc
        .call(
            Method::PUT,
            &format!("/v1/connections/{cid}/credentials/dealer"),
            admin,
            Some(json!({"username": SIM_USER, "password": password})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
}

async fn links(svc: &Service, who: &Who, cid: &str) -> Vec<Value> {
    let a = svc
        .call(
            Method::GET,
            &format!("/v1/links?connection_id={cid}"),
            who,
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.body["items"].as_array().unwrap().clone()
}

async fn reconcile_jobs(svc: &Service, who: &Who) -> Vec<Value> {
    let a = svc
        .call(Method::GET, "/v1/jobs?kind=reconcile", who, None)
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.body["items"].as_array().unwrap().clone()
}

async fn a_connection_is_migrated_when_its_credentials_work(backend: Backend) {
    let (sim, svc) = older_integration(backend).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let cid = svc
        .create_connection(&admin, "Stages", &sim.base_url(), "dealer")
        .await;
    let c = connection(&svc, &op, &cid).await;
    assert_eq!(c["migrate_on_connect"], true, "on by default: {c}");
    assert_eq!(c["migration"], json!({"state": "pending", "job_id": null}));

    // Credentials Stages refuses: nothing is queued yet.
    set_credentials(&svc, &admin, &cid, "wrong").await;
    assert_eq!(
        connection(&svc, &op, &cid).await["migration"]["state"],
        "pending"
    );
    assert!(reconcile_jobs(&svc, &op).await.is_empty());
    assert!(links(&svc, &op, &cid).await.is_empty());

    // Credentials that work: the migration runs without anyone asking.
    set_credentials(&svc, &admin, &cid, SIM_PASSWORD).await;
    let c = svc.migration_settled(&op, &cid).await;
    assert_eq!(c["migration"]["state"], "done", "{c}");
    let job_id = c["migration"]["job_id"].as_str().unwrap().to_owned();
    let job = svc
        .call(Method::GET, &format!("/v1/jobs/{job_id}"), &op, None)
        .await;
    assert_eq!(job.body["kind"], "reconcile", "{}", job.text);
    assert_eq!(job.body["state"], "succeeded", "{}", job.text);
    assert_eq!(
        job.body["summary"]["taken_over"],
        json!({"sites": SITES, "systems": SITES}),
        "{}",
        job.text
    );
    let linked = links(&svc, &op, &cid).await;
    assert_eq!(linked.len(), 2 * SITES, "{linked:#?}");
    let site_of_old_0 = linked
        .iter()
        .find(|l| l["billing_id"] == "OLD-0")
        .expect("OLD-0 is linked");
    assert_eq!(
        site_of_old_0["external_id"],
        sim.state().sites()[0].site_no.as_str()
    );
    let audit = svc
        .call(Method::GET, "/v1/audit?subject=OLD-SYS-1", &op, None)
        .await;
    assert_eq!(audit.body["items"][0]["action"], "reconcile_link");

    // Once: storing the credential again or a passing test queues nothing more.
    set_credentials(&svc, &admin, &cid, SIM_PASSWORD).await;
    let t = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}:test"),
            &op,
            None,
        )
        .await;
    assert_eq!(t.body["outcome"], "ok", "{}", t.text);
    let jobs = reconcile_jobs(&svc, &op).await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(jobs[0]["id"], job_id.as_str());
    // Listed with the same state.
    let list = svc.call(Method::GET, "/v1/connections", &op, None).await;
    assert_eq!(list.body["items"][0]["migration"]["state"], "done");
}

async fn with_migrate_on_connect_off_nothing_is_queued(backend: Backend) {
    let (sim, svc) = older_integration(backend).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let viewer = Who::new("acme", "vic", "viewer");
    let created = svc
        .call(
            Method::POST,
            "/v1/connections",
            &admin,
            Some(json!({"provider": "stages", "endpoint": sim.base_url(), "migrate_on_connect": false})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["migration"]["state"], "off");
    let cid = created.body["id"].as_str().unwrap().to_owned();
    set_credentials(&svc, &admin, &cid, SIM_PASSWORD).await;
    let t = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}:test"),
            &op,
            None,
        )
        .await;
    assert_eq!(t.body["outcome"], "ok", "{}", t.text);
    assert!(reconcile_jobs(&svc, &op).await.is_empty());
    assert!(links(&svc, &op, &cid).await.is_empty());
    assert_eq!(
        connection(&svc, &op, &cid).await["migration"],
        json!({"state": "off", "job_id": null})
    );

    // Turned on later, it waits for the connection to be seen working again:
    // a viewer's test does not start it, an operator's does.
    let on = svc
        .call(
            Method::PATCH,
            &format!("/v1/connections/{cid}"),
            &admin,
            Some(json!({"migrate_on_connect": true})),
        )
        .await;
    assert_eq!(on.status, 200, "{}", on.text);
    assert_eq!(on.body["migrate_on_connect"], true);
    assert_eq!(on.body["migration"]["state"], "pending");
    for (who, queued) in [(&viewer, false), (&op, true)] {
        let t = svc
            .call(
                Method::POST,
                &format!("/v1/connections/{cid}:test"),
                who,
                None,
            )
            .await;
        assert_eq!(t.body["outcome"], "ok", "{}", t.text);
        assert_eq!(!reconcile_jobs(&svc, &op).await.is_empty(), queued);
    }
    let c = svc.migration_settled(&op, &cid).await;
    assert_eq!(c["migration"]["state"], "done", "{c}");
    assert_eq!(links(&svc, &op, &cid).await.len(), 2 * SITES);

    // Not a setting of interactive services providers.
    let isp = svc
        .call(
            Method::POST,
            "/v1/connections",
            &admin,
            Some(json!({"provider": "alarm_com", "endpoint": "https://alarm.example.com/", "migrate_on_connect": true})),
        )
        .await;
    isp.assert_problem(422);
    assert!(isp.text.contains("migrate_on_connect"), "{}", isp.text);
}

on_both_backends!(
    a_connection_is_migrated_when_its_credentials_work,
    with_migrate_on_connect_off_nothing_is_queued,
);
