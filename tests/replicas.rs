//! Several replicas on one PostgreSQL (B9): three `crosslink serve` processes,
//! each running its own workers, share the Auto Sync pushes and an Alarm.com
//! import. One replica is killed with SIGKILL half way; the outcome does not
//! change: every upstream effect happens once, counted at the simulators.
//!
//! The sizes are the (10,000 pushes, 20,000 customers);
//! `REPLICA_SITES` and `REPLICA_CUSTOMERS` make a quicker local run.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use support::*;

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Jobs each replica runs at once in the tests that do not say: few, so a
/// kill leaves few in flight.
const FEW_WORKERS: Option<usize> = Some(2);

/// What every replica runs with: `workers` jobs at once (`None`: the
/// service's default, sized from its job pool), short leases so a killed
/// replica's jobs are taken again soon, no client-side rate limits.
fn replica_env(workers: Option<usize>) -> Vec<(String, String)> {
    let workers = workers.map_or_else(|| "auto".to_owned(), |n| n.to_string());
    [
        ("CROSSLINK__JOBS__WORKERS", workers.as_str()),
        ("CROSSLINK__JOBS__LEASE_SECS", "2"),
        ("CROSSLINK__JOBS__RETRY_BASE_MS", "20"),
        ("CROSSLINK__JOBS__RETRY_CAP_MS", "500"),
        ("CROSSLINK__STAGES__REQUESTS_PER_SECOND", "0"),
        ("CROSSLINK__ADC__REQUESTS_PER_SECOND", "0"),
        ("CROSSLINK__ADC__TIMEOUT_MS", "5000"),
        ("CROSSLINK__DATABASE__POOL_SIZE", "8"),
        ("RUST_LOG", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Three replicas on one fresh schema (the first one migrates it).
async fn three_replicas(schema: &PgSchema, workers: Option<usize>) -> Vec<Service> {
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(
            Service::start_with(ServiceOptions {
                database_url: Some(schema.url()),
                env: replica_env(workers),
            })
            .await,
        );
    }
    replicas
}

/// Calls `f(n)` for `n` in `0..count`, `concurrency` at a time, spreading
/// the calls over the live replicas; `on_half` runs once half are done.
async fn spread<F, Fut>(count: usize, concurrency: usize, f: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let f = Arc::new(f);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return;
                }
                f(n).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// An answer from whichever replica is up, trying them in turn from `start`
/// (a replica that is gone, or too busy to read the request in time (408),
/// is passed over: the calls made here are safe to repeat).
async fn call_any(
    bases: &[String],
    start: usize,
    http: &reqwest::Client,
    who: &Who,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    for i in 0..bases.len() {
        let base = &bases[(start + i) % bases.len()];
        let mut rb = http
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(who.token());
        if let Some(b) = &body {
            rb = rb.json(b);
        }
        if let Ok(r) = rb.send().await {
            let status = r.status().as_u16();
            if status == 408 {
                continue;
            }
            let body = r.json().await.unwrap_or(Value::Null);
            return (status, body);
        }
    }
    panic!("no replica answered {method} {path}");
}

#[tokio::test]
async fn three_replicas_push_every_edit_once_with_one_killed_half_way() {
    push_every_edit_once(size("REPLICA_SITES", 10_000), FEW_WORKERS).await;
}

/// The same at each replica's default concurrency: the killed replica had
/// many pushes of its claimed batches in flight, and each still ends once.
#[tokio::test]
async fn three_replicas_at_full_concurrency_push_every_edit_once_with_one_killed_mid_batch() {
    push_every_edit_once(size("REPLICA_SITES", 10_000) / 2, None).await;
}

async fn push_every_edit_once(sites: usize, workers: Option<usize>) {
    let sim = start_sim(sites).await;
    let numbers: Vec<String> = sim
        .state()
        .with_db(|db| db.sites().into_iter().map(|s| s.site_no).collect());
    assert_eq!(numbers.len(), sites);
    // Stages already knows each site's billing id: a reconcile links them.
    for (i, site_no) in numbers.iter().enumerate() {
        let patch = serde_json::from_value(json!({ "billing_id": format!("R-{i}") })).unwrap();
        sim.state().patch_site(site_no, patch).unwrap();
    }
    let t0 = Instant::now();
    let schema = PgSchema::new();
    let mut replicas = three_replicas(&schema, workers).await;
    eprintln!("{:?}: three replicas ready", t0.elapsed());
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let cid = replicas[0]
        .create_connection(&admin, "Stages", &sim.base_url(), "dealer")
        .await;
    let creds = replicas[1]
        .call(
            Method::PUT,
            &format!("/v1/connections/{cid}/credentials/dealer"),
            &admin,
            Some(json!({"username": SIM_USER, "password": SIM_PASSWORD})),
        )
        .await;
    assert_eq!(creds.status, 200, "{}", creds.text);

    let bases: Arc<Vec<String>> = Arc::new(replicas.iter().map(|r| r.base.clone()).collect());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let site_body = |i: usize, street: &str| {
        json!({"name": format!("Replica site {i}"), "address1": street,
            "city": "Columbus", "state": "OH", "zip": "43004"})
    };
    {
        let (bases, http, op) = (bases.clone(), http.clone(), op.clone());
        spread(sites, 16, move |i| {
            let (bases, http, op) = (bases.clone(), http.clone(), op.clone());
            async move {
                let (status, body) = call_any(
                    &bases,
                    i,
                    &http,
                    &op,
                    Method::PUT,
                    &format!("/v1/billing/sites/R-{i}"),
                    Some(site_body(i, "1 Start St")),
                )
                .await;
                assert!([200, 201].contains(&status), "{status} {body}");
            }
        })
        .await;
    }
    eprintln!("{:?}: {sites} billing sites written", t0.elapsed());
    let job = replicas[2]
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}:reconcile"),
            &op,
            None,
        )
        .await;
    assert_eq!(job.status, 202, "{}", job.text);
    replicas[0]
        .drained(&op, "reconcile", Duration::from_secs(600))
        .await;
    let links = schema.query("SELECT count(*) FROM links WHERE kind = 'site'");
    assert_eq!(links.trim(), sites.to_string(), "every site linked");
    eprintln!("{:?}: reconciled", t0.elapsed());

    // The edits, spread over the replicas; one of them dies half way.
    let patches_before = sim.state().request_count("PATCH /api/v1/sites/{site_no}");
    let half = Arc::new(tokio::sync::Notify::new());
    let done = Arc::new(AtomicUsize::new(0));
    let edits = {
        let (bases, http, op) = (bases.clone(), http.clone(), op.clone());
        let (half, done) = (half.clone(), done.clone());
        tokio::spawn(spread(sites, 16, move |i| {
            let (bases, http, op) = (bases.clone(), http.clone(), op.clone());
            let (half, done) = (half.clone(), done.clone());
            async move {
                let (status, body) = call_any(
                    &bases,
                    i,
                    &http,
                    &op,
                    Method::PUT,
                    &format!("/v1/billing/sites/R-{i}"),
                    Some(site_body(i, &format!("{i} Replica Rd"))),
                )
                .await;
                assert_eq!(status, 200, "{body}");
                if done.fetch_add(1, Ordering::Relaxed) + 1 == sites / 2 {
                    half.notify_one();
                }
            }
        }))
    };
    half.notified().await;
    // Some of its pushes are in flight: its leases run out and the others take them.
    replicas[2].kill();
    edits.await.unwrap();
    eprintln!("{:?}: {sites} edits made", t0.elapsed());
    replicas[0]
        .drained(&op, "auto_sync_push", Duration::from_secs(900))
        .await;

    eprintln!("{:?}: pushes drained", t0.elapsed());
    let mut wrong = Vec::new();
    for (i, site_no) in numbers.iter().enumerate() {
        let site = serde_json::to_value(sim.state().site(site_no).unwrap()).unwrap();
        if site["address1"] != format!("{i} Replica Rd") {
            wrong.push(format!("{site_no}: {}", site["address1"]));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} edits missing: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    let dead = replicas[0]
        .call(Method::GET, "/v1/jobs?state=dead", &op, None)
        .await;
    assert_eq!(dead.body["items"], json!([]), "{}", dead.text);
    // One PATCH per edit; a push in flight in the killed replica may have
    // reached Stages before its retry sent the same values again (at most
    // one per job that replica ran at once), which changes nothing a second time.
    let in_flight = match workers {
        Some(n) => n,
        None => jobs_at_once(&replicas[0]),
    };
    let patches = sim.state().request_count("PATCH /api/v1/sites/{site_no}") - patches_before;
    assert!(
        (sites as u64..=(sites + in_flight) as u64).contains(&patches),
        "{patches} PATCHes for {sites} edits ({in_flight} jobs at once per replica)"
    );
    // Every push job ended once, as succeeded: none lost, none left running.
    let unfinished = schema
        .query("SELECT count(*) FROM jobs WHERE kind = 'auto_sync_push' AND state <> 'succeeded'");
    assert_eq!(unfinished.trim(), "0", "every push job succeeded");
}

/// The default number of jobs a replica runs at once, read from its log.
fn jobs_at_once(replica: &Service) -> usize {
    let log = replica.logs();
    log.lines()
        .find(|l| l.contains("job runners starting"))
        .and_then(|l| l.split("concurrency=").nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the replica logs its job concurrency:\n{log}"))
}

#[tokio::test]
async fn three_replicas_import_every_customer_once_with_one_killed_half_way() {
    let customers = size("REPLICA_CUSTOMERS", 20_000);
    let adc = adc_sim::Sim::start(adc_sim::SimConfig {
        username: "adc-dealer".into(),
        password: "adc-Passw0rd".into(),
        seed_customers: customers,
        ..Default::default()
    })
    .await
    .expect("the Alarm.com simulator starts");
    let listed: HashSet<String> = adc
        .state()
        .customers()
        .into_iter()
        .filter(|c| !c.is_terminated)
        .map(|c| c.customer_id.to_string())
        .collect();
    let schema = PgSchema::new();
    let mut replicas = three_replicas(&schema, FEW_WORKERS).await;
    let admin = Who::admin("acme");
    let op = Who::new("acme", "olivia", "operator");
    let created = replicas[0]
        .call(
            Method::POST,
            "/v1/connections",
            &admin,
            Some(json!({"provider": "alarm_com", "endpoint": adc.base_url()})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let cid = created.body["id"].as_str().unwrap().to_owned();
    let creds = replicas[0]
        .call(
            Method::PUT,
            &format!("/v1/connections/{cid}/credentials/dealer"),
            &admin,
            Some(json!({"username": "adc-dealer", "password": "adc-Passw0rd"})),
        )
        .await;
    assert_eq!(creds.status, 200, "{}", creds.text);
    let started = replicas[1]
        .call(
            Method::POST,
            "/v1/imports",
            &op,
            Some(json!({"connection_id": cid, "kind": "customers"})),
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.text);
    let id = started.body["id"].as_str().unwrap().to_owned();

    // Kill the replica running the import once it is half way (the import's
    // job has the import's id; worker ids are `host-pid`).
    let path = format!("/v1/imports/{id}");
    let half_way = "the import to get half way";
    let seen_at_kill = replicas[0]
        .eventually(half_way, Duration::from_secs(300), || async {
            let a = replicas[0].call(Method::GET, &path, &op, None).await;
            assert_eq!(a.status, 200, "{}", a.text);
            let seen = a.body["counts"]["seen"].as_u64().unwrap_or(0);
            (seen as usize >= listed.len() / 2).then_some(seen)
        })
        .await;
    let owner = schema.query(&format!(
        "SELECT lease_owner FROM jobs WHERE id = '{id}' AND state = 'running'"
    ));
    let victim = replicas
        .iter()
        .position(|r| owner.trim().ends_with(&format!("-{}", r.pid())))
        .unwrap_or_else(|| panic!("no replica runs the import: {owner:?}"));
    replicas[victim].kill();
    assert!(
        (seen_at_kill as usize) < listed.len(),
        "killed before the end"
    );
    let survivor = &replicas[(victim + 1) % 3];
    let done = survivor
        .wait_ended_within(&op, &path, Duration::from_secs(900))
        .await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(
        done["counts"]["imported"].as_u64().unwrap() as usize,
        listed.len(),
        "{done:#}"
    );
    // Each listed customer is one billing customer, made once.
    let rows = schema.query("SELECT count(*) FROM billing_customers");
    assert_eq!(rows.trim(), listed.len().to_string());
    let events = schema.query(
        "SELECT count(*), count(DISTINCT subject_id) FROM events \
         WHERE event_type = 'billing.customer.created'",
    );
    assert_eq!(
        events.trim(),
        format!("{}|{}", listed.len(), listed.len()),
        "one creation per customer"
    );
}
