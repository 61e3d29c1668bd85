//! End to end (B7): batches of links, syncs and pushes run in the background
//! through the single operations, with progress, per-item outcomes, cancel,
//! a dry run and Idempotency-Key; checked on the simulator's own state.

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

/// `paced`: Stages calls at the default per-connection rate (20/s), which a
/// batch respects like any caller; otherwise unlimited, for the big batches.
async fn world(backend: Backend, seed_sites: usize, paced: bool) -> World {
    let sim = start_sim(seed_sites).await;
    let env = if paced {
        Vec::new()
    } else {
        vec![("CROSSLINK__STAGES__REQUESTS_PER_SECOND".into(), "0".into())]
    };
    let svc = Service::start_on(backend, env).await;
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
        cid,
    }
}

impl World {
    /// Billing site `B{i}` with system `BS{i}` for each `i`, 16 writes at a time.
    async fn billing_sites(&self, range: std::ops::Range<usize>) {
        let indexes: Vec<usize> = range.collect();
        for chunk in indexes.chunks(16) {
            let mut tasks = Vec::new();
            for &i in chunk {
                let site = self
                    .svc
                    .req(Method::PUT, &format!("/v1/billing/sites/B{i}"), &self.op)
                    .json(&json!({"name": format!("Batch home {i}"), "city": "Columbus", "state": "OH"}));
                let system = self
                    .svc
                    .req(Method::PUT, &format!("/v1/billing/systems/BS{i}"), &self.op)
                    .json(&json!({"site_id": format!("B{i}"), "panel_type": "VISTA-20P"}));
                tasks.push(tokio::spawn(async move {
                    let s = site.send().await.unwrap().status().as_u16();
                    let y = system.send().await.unwrap().status().as_u16();
                    (s, y)
                }));
            }
            for t in tasks {
                let (s, y) = t.await.unwrap();
                assert!(s == 200 || s == 201, "site PUT {s}");
                assert!(y == 200 || y == 201, "system PUT {y}");
            }
        }
    }

    /// The link item of billing site `B{i}` and the `i`th seeded Stages site.
    fn link_item(&self, i: usize, site_no: &str) -> Value {
        let device = &self.sim.state().devices(site_no)[0];
        let device_id = serde_json::to_value(device).unwrap()["device_id"]
            .as_str()
            .unwrap()
            .to_owned();
        json!({"billing_site_id": format!("B{i}"), "stages_site_no": site_no,
               "systems": [{"billing_system_id": format!("BS{i}"), "stages_device_id": device_id}]})
    }

    async fn start(&self, body: Value) -> Value {
        let a = self
            .svc
            .call(Method::POST, "/v1/batches", &self.op, Some(body))
            .await;
        assert_eq!(a.status, 202, "{}", a.text);
        assert_eq!(
            a.headers.get("location").and_then(|v| v.to_str().ok()),
            Some(format!("/v1/batches/{}", a.body["id"].as_str().unwrap()).as_str())
        );
        a.body
    }

    async fn batch(&self, id: &str) -> Value {
        let a = self
            .svc
            .call(Method::GET, &format!("/v1/batches/{id}"), &self.op, None)
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.body
    }

    /// Polls until the batch ends; returns it and every `done` figure seen.
    async fn finish(&self, id: &str) -> (Value, Vec<u64>) {
        let mut seen = Vec::new();
        // Steady and close, so that progress between 0 and the end is seen.
        let mut poll =
            Poll::new(format!("batch {id} to end"), ENDED_LIMIT).every(Duration::from_millis(20));
        loop {
            let b = self.batch(id).await;
            seen.push(b["progress"]["done"].as_u64().unwrap());
            if !wait::ongoing(&b) {
                return (b, seen);
            }
            let tail = &seen[seen.len().saturating_sub(20)..];
            poll.pause(|| format!("last: {b}, done seen {tail:?}"))
                .await;
        }
    }

    /// Every item of the batch, page by page.
    async fn items(&self, id: &str, filter: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/v1/batches/{id}/items?page_size=500{filter}");
            if let Some(t) = &token {
                path.push_str(&format!("&page_token={t}"));
            }
            let a = self.svc.call(Method::GET, &path, &self.op, None).await;
            assert_eq!(a.status, 200, "{}", a.text);
            out.extend(a.body["items"].as_array().unwrap().iter().cloned());
            match a.body["next_page_token"].as_str() {
                Some(t) => token = Some(t.to_owned()),
                None => return out,
            }
        }
    }

    async fn site_links(&self) -> usize {
        let a = self
            .svc
            .call(
                Method::GET,
                "/v1/links?kind=site&page_size=500",
                &self.op,
                None,
            )
            .await;
        assert_eq!(a.status, 200);
        let mut n = a.body["items"].as_array().unwrap().len();
        let mut token = a.body["next_page_token"].as_str().map(str::to_owned);
        while let Some(t) = token {
            let a = self
                .svc
                .call(
                    Method::GET,
                    &format!("/v1/links?kind=site&page_size=500&page_token={t}"),
                    &self.op,
                    None,
                )
                .await;
            n += a.body["items"].as_array().unwrap().len();
            token = a.body["next_page_token"].as_str().map(str::to_owned);
        }
        n
    }

    fn stages_billing_id(&self, site_no: &str) -> Option<String> {
        let site = serde_json::to_value(self.sim.state().site(site_no).unwrap()).unwrap();
        site["billing_id"].as_str().map(str::to_owned)
    }
}

/// Done means: 1,000 links and then 1,000 syncs run as batches with their
/// progress seen moving; a bad item fails alone with the single operation's
/// problem; the end is on the change feed.
async fn a_thousand_links_and_a_thousand_syncs_run_as_batches(backend: Backend) {
    const N: usize = 1000;
    let w = world(backend, N, false).await;
    w.billing_sites(0..N).await;
    let sites: Vec<String> = w
        .sim
        .state()
        .sites()
        .into_iter()
        .map(|s| s.site_no)
        .collect();
    let mut items: Vec<Value> = (0..N).map(|i| w.link_item(i, &sites[i])).collect();
    // One item names a billing site that does not exist: it fails alone.
    items.insert(
        500,
        json!({"billing_site_id": "NOPE", "stages_site_no": sites[0],
               "systems": [{"billing_system_id": "NOPE-S", "stages_device_id": "x"}]}),
    );
    let started = w
        .start(json!({"operation": "link", "connection_id": w.cid, "items": items}))
        .await;
    assert_eq!(started["counts"]["total"], N as u64 + 1);
    let id = started["id"].as_str().unwrap().to_owned();
    let (done, seen) = w.finish(&id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["counts"]["succeeded"], N as u64, "{done}");
    assert_eq!(done["counts"]["failed"], 1, "{done}");
    assert_eq!(done["progress"]["done"], N as u64 + 1);
    assert!(
        seen.iter().any(|d| *d > 0 && *d < N as u64),
        "progress was never seen between 0 and the end: {seen:?}"
    );
    let failed = w.items(&id, "&state=failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["index"], 500);
    assert_eq!(failed[0]["subject"], "NOPE");
    let problem = &failed[0]["problem"];
    assert!(
        problem["status"].as_u64().unwrap() >= 400 && problem["code"].is_string(),
        "{problem}"
    );
    let all = w.items(&id, "").await;
    assert_eq!(all.len(), N + 1);
    assert!(all
        .windows(2)
        .all(|p| p[0]["index"].as_u64() < p[1]["index"].as_u64()));
    let ok = all.iter().find(|i| i["index"] == 0).unwrap();
    assert_eq!(ok["state"], "succeeded");
    assert_eq!(ok["result"]["links"].as_array().unwrap().len(), 2, "{ok}");
    // Both sides hold every link.
    assert_eq!(w.site_links().await, N);
    for (i, site_no) in sites.iter().enumerate() {
        assert_eq!(
            w.stages_billing_id(site_no).as_deref(),
            Some(format!("B{i}").as_str())
        );
    }
    let links = ok["result"]["links"].as_array().unwrap();
    assert!(links.iter().any(|l| l["kind"] == "site"));

    // A thousand record syncs of the new site links.
    let site_link_ids: Vec<String> = all
        .iter()
        .filter(|i| i["state"] == "succeeded")
        .map(|i| {
            i["result"]["links"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["kind"] == "site")
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(site_link_ids.len(), N);
    let syncs: Vec<Value> = site_link_ids
        .iter()
        .map(|l| json!({"link_id": l, "fields": {"name": "take_billing"}}))
        .collect();
    let started = w.start(json!({"operation": "sync", "items": syncs})).await;
    let id = started["id"].as_str().unwrap().to_owned();
    let (done, seen) = w.finish(&id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["counts"]["succeeded"], N as u64, "{done}");
    assert!(seen.iter().any(|d| *d > 0 && *d < N as u64), "{seen:?}");
    // The billing name reached Stages through the sync.
    let site = serde_json::to_value(w.sim.state().site(&sites[7]).unwrap()).unwrap();
    assert_eq!(site["name"], "Batch home 7", "{site}");
    let feed = w
        .svc
        .call(Method::GET, "/v1/events?types=batch.finished", &w.op, None)
        .await;
    let ends = feed.body["items"].as_array().unwrap();
    assert_eq!(ends.len(), 2, "{}", feed.text);
    assert_eq!(ends[0]["data"]["operation"], "link");
    assert_eq!(ends[0]["data"]["counts"]["failed"], 1);
    assert_eq!(ends[1]["data"]["operation"], "sync");
}

/// Done means: a batch cancelled half way stops between two items: every
/// item is linked on both sides or on neither, and the rest are `cancelled`.
async fn a_batch_cancelled_half_way_leaves_nothing_half_done(backend: Backend) {
    const N: usize = 1000;
    // Paced, so the cancel lands while most items are still to run.
    let w = world(backend, N, true).await;
    w.billing_sites(0..N).await;
    let sites: Vec<String> = w
        .sim
        .state()
        .sites()
        .into_iter()
        .map(|s| s.site_no)
        .collect();
    let items: Vec<Value> = (0..N).map(|i| w.link_item(i, &sites[i])).collect();
    let started = w
        .start(json!({"operation": "link", "connection_id": w.cid, "items": items}))
        .await;
    let id = started["id"].as_str().unwrap().to_owned();
    let fifty = "50 items done before the cancel";
    w.svc
        .eventually(fifty, ENDED_LIMIT, || async {
            let b = w.batch(&id).await;
            let done = b["progress"]["done"].as_u64().unwrap();
            assert!(
                done < N as u64 / 2,
                "the batch ran too far before the cancel: {b}"
            );
            (done >= 50).then_some(())
        })
        .await;
    let a = w
        .svc
        .call(
            Method::POST,
            &format!("/v1/batches/{id}:cancel"),
            &w.op,
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let (done, _) = w.finish(&id).await;
    assert_eq!(done["state"], "cancelled", "{done}");
    let c = &done["counts"];
    let succeeded = c["succeeded"].as_u64().unwrap();
    assert!(succeeded >= 50 && succeeded < N as u64, "{done}");
    assert_eq!(c["failed"], 0, "{done}");
    assert_eq!(c["pending"], 0, "{done}");
    assert_eq!(
        succeeded + c["cancelled"].as_u64().unwrap(),
        N as u64,
        "{done}"
    );
    // Each item is whole or absent, on both sides.
    let all = w.items(&id, "").await;
    for item in &all {
        let i = item["index"].as_u64().unwrap() as usize;
        let in_stages = w.stages_billing_id(&sites[i]);
        match item["state"].as_str().unwrap() {
            "succeeded" => assert_eq!(in_stages.as_deref(), Some(format!("B{i}").as_str())),
            "cancelled" => assert_eq!(in_stages, None, "item {i} was cancelled but is in Stages"),
            other => panic!("item {i} is {other}"),
        }
    }
    assert_eq!(w.site_links().await as u64, succeeded);
    // Cancelling again answers the ended batch; the feed has its end once.
    let feed = w
        .svc
        .call(Method::GET, "/v1/events?types=batch.finished", &w.op, None)
        .await;
    let ends = feed.body["items"].as_array().unwrap();
    assert_eq!(ends.len(), 1, "{}", feed.text);
    assert_eq!(ends[0]["data"]["state"], "cancelled");
    assert_eq!(ends[0]["data"]["counts"]["succeeded"], succeeded);
}

/// Done means: the same Idempotency-Key replays the batch instead of
/// starting another; a dry run of a push batch creates nothing in Stages.
async fn a_batch_replays_by_idempotency_key_and_a_dry_run_changes_nothing(backend: Backend) {
    let w = world(backend, 0, false).await;
    w.billing_sites(0..3).await;
    let device =
        |i: usize| json!({"transmitter_code": format!("77000{i}"), "device_type": "VISTA-20P"});
    let body = json!({"operation": "push", "connection_id": w.cid, "dry_run": true,
        "items": (0..3).map(|i| json!({"billing_site_id": format!("B{i}"),
            "systems": [{"billing_system_id": format!("BS{i}"), "device": device(i)}]})).collect::<Vec<_>>()});
    let send = || {
        w.svc
            .req(Method::POST, "/v1/batches", &w.op)
            .header("Idempotency-Key", "batch-once")
            .json(&body)
            .send()
    };
    let first = Answer::from(send().await.unwrap()).await;
    assert_eq!(first.status, 202, "{}", first.text);
    let second = Answer::from(send().await.unwrap()).await;
    assert_eq!(second.status, 202, "{}", second.text);
    assert_eq!(second.body["id"], first.body["id"]);
    let list = w.svc.call(Method::GET, "/v1/batches", &w.op, None).await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        list.text
    );
    let id = first.body["id"].as_str().unwrap().to_owned();
    let (done, _) = w.finish(&id).await;
    assert_eq!(done["counts"]["succeeded"], 3, "{done}");
    let items = w.items(&id, "").await;
    assert_eq!(items[0]["result"]["dry_run"], true, "{}", items[0]);
    assert_eq!(items[0]["result"]["records"][0]["action"], "would_create");
    assert_eq!(
        w.sim.state().site_count(),
        0,
        "a dry run created a Stages site"
    );
    assert_eq!(w.site_links().await, 0);
}

/// Every refused item is named at once, by its place; rules that would fail
/// every item alike refuse the batch before anything is stored.
async fn a_batch_names_every_refused_item_at_once(backend: Backend) {
    let w = world(backend, 0, false).await;
    let refuse = |body: Value| {
        let svc = &w.svc;
        let op = &w.op;
        async move {
            let a = svc.call(Method::POST, "/v1/batches", op, Some(body)).await;
            a.assert_problem(422);
            a.body["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let fields = refuse(json!({"operation": "link", "connection_id": w.cid, "items": [
        {"billing_site_id": "B0", "stages_site_no": "1", "systems": [{"billing_system_id": "S", "stages_device_id": "d"}]},
        {"billing_site_id": "B1", "stages_site_no": "1"},
        {"billing_site_id": "B2", "stages_site_no": "", "systems": [{"billing_system_id": "S", "stages_device_id": "d"}]},
        {"billing_site_id": "B3", "stages_site_no": "1", "systems": [], "colour": "red"}
    ]}))
    .await;
    assert_eq!(
        fields,
        vec![
            "items[1].systems",
            "items[2].stages_site_no",
            "items[3].colour"
        ],
        "every refused item is named"
    );
    let fields = refuse(
        json!({"operation": "link", "connection_id": w.cid, "dry_run": true,
        "items": [{"billing_site_id": "B0", "stages_site_no": "1", "systems": []}]}),
    )
    .await;
    assert_eq!(fields, vec!["dry_run"]);
    let fields = refuse(json!({"operation": "sync", "connection_id": w.cid,
        "items": [{"link_id": "0193a1b2-0000-7000-8000-000000000001"}]}))
    .await;
    assert_eq!(fields, vec!["connection_id"]);
    let fields = refuse(json!({"operation": "end_test", "items": []})).await;
    assert_eq!(fields, vec!["items", "connection_id"]);
    let many: Vec<Value> = (0..10_001)
        .map(|_| json!({"device_id": "d", "test_id": "t"}))
        .collect();
    let fields =
        refuse(json!({"operation": "end_test", "connection_id": w.cid, "items": many})).await;
    assert_eq!(fields, vec!["items"]);
    let list = w.svc.call(Method::GET, "/v1/batches", &w.op, None).await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        0,
        "{}",
        list.text
    );
    // Another dealer sees none of it.
    let other = Who::new("globex", "gus", "operator");
    let unknown = w
        .svc
        .call(
            Method::GET,
            "/v1/batches/0193a1b2-0000-7000-8000-000000000001",
            &other,
            None,
        )
        .await;
    unknown.assert_problem(404);
}

on_both_backends!(
    a_thousand_links_and_a_thousand_syncs_run_as_batches,
    a_batch_cancelled_half_way_leaves_nothing_half_done,
    a_batch_replays_by_idempotency_key_and_a_dry_run_changes_nothing,
    a_batch_names_every_refused_item_at_once,
);
