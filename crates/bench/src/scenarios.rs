//! The benchmarks themselves. Each returns its [`Bench`] rows; the figure and
//! its baseline are measured back to back so they share the machine's state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::load::{self, Load, Rng};
use crate::report::Bench;
use crate::service::{Api, Backend, Database, Env, Service};

pub const SIM_USER: &str = "bench";
pub const SIM_PASSWORD: &str = "bench-Passw0rd";

/// The billing id the bench gives the `n`-th site (1-based), on both sides.
pub fn billing_id(n: u64) -> String {
    format!("B-{n}")
}

/// The middle of `v` (the mean of the two middle ones for an even count).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn spread(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("median of {}, {min:.0}–{max:.0} ms", v.len())
}

/// Spawns the service on `db` and returns how long until `/readyz` said 200.
async fn time_to_ready(
    env: &Env,
    db: &Database,
    name: &str,
    http: &reqwest::Client,
) -> anyhow::Result<(Service, Duration)> {
    let t0 = Instant::now();
    let svc = Service::spawn(env, db, name).await?;
    svc.wait_ready(http).await?;
    Ok((svc, t0.elapsed()))
}

/// Benchmark 3: start to ready on a fresh database (migrations run) against
/// a second start on the same, already migrated database.
pub async fn cold_start(
    env: &Env,
    backend: Backend,
    runs: usize,
    http: &reqwest::Client,
) -> anyhow::Result<Vec<Bench>> {
    let label = backend.label();
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let db = Database::fresh(env, backend, &format!("cold-{i}"))?;
        let (svc, t) = time_to_ready(env, &db, &format!("{label}-cold-{i}"), http).await?;
        cold.push(t.as_secs_f64() * 1000.0);
        svc.stop().await?;
        let (svc, t) = time_to_ready(env, &db, &format!("{label}-warm-{i}"), http).await?;
        warm.push(t.as_secs_f64() * 1000.0);
        svc.stop().await?;
    }
    let note = format!("cold: {}; migrated: {}", spread(&cold), spread(&warm));
    Ok(vec![Bench::new(
        "cold start to ready (fresh database)",
        Some(label),
        median(&mut cold),
        "ms",
    )
    .against("start on a migrated database", median(&mut warm))
    .note(note)])
}

/// A simulator holding `sites` seeded sites, the `n`-th carrying billing id `B-n`.
pub async fn seeded_sim(sites: usize) -> anyhow::Result<stages_sim::Sim> {
    let sim = stages_sim::Sim::start(stages_sim::SimConfig {
        bind: "127.0.0.1:0".parse()?,
        username: SIM_USER.into(),
        password: SIM_PASSWORD.into(),
        seed_sites: sites,
        faults: vec![],
    })
    .await?;
    let numbers: Vec<String> = sim
        .state()
        .with_db(|db| db.sites().into_iter().map(|s| s.site_no).collect());
    if numbers.len() != sites {
        bail!("the simulator seeded {} sites, not {sites}", numbers.len());
    }
    for (i, site_no) in numbers.iter().enumerate() {
        let patch: stages_sim::wire::SitePatch =
            serde_json::from_value(json!({ "billing_id": billing_id(i as u64 + 1) }))?;
        sim.state()
            .patch_site(site_no, patch)
            .map_err(|e| anyhow::anyhow!("setting the billing id of site {site_no}: {e:?}"))?;
    }
    Ok(sim)
}

/// A Stages connection to the simulator with dealer credentials; its id.
/// Without the automatic migration (S20): the reconcile benchmark asks for
/// its own reconcile and counts what that one takes over.
pub async fn connect(api: &Api, sim: &stages_sim::Sim) -> anyhow::Result<String> {
    connect_to(api, &sim.base_url()).await
}

/// [`connect`] to the simulator at `endpoint`.
pub async fn connect_to(api: &Api, endpoint: &str) -> anyhow::Result<String> {
    let c = api
        .call(
            Method::POST,
            "/v1/connections",
            Some(
                &json!({"provider": "stages", "name": "bench", "endpoint": endpoint,
                "auth_mode": "dealer", "migrate_on_connect": false}),
            ),
            &[201],
        )
        .await?;
    let cid = c["id"]
        .as_str()
        .context("connection without id")?
        .to_owned();
    api.call(
        Method::PUT,
        &format!("/v1/connections/{cid}/credentials/dealer"),
        Some(&json!({"username": SIM_USER, "password": SIM_PASSWORD})),
        &[200, 201],
    )
    .await?;
    Ok(cid)
}

/// Creates billing sites `B-1..=B-sites` with `concurrency` requests in flight.
/// Informational: the rate the billing front end can load records at.
pub async fn billing_upserts(
    api: &Api,
    backend: Backend,
    sites: u64,
    concurrency: usize,
) -> anyhow::Result<Bench> {
    let next = Arc::new(AtomicU64::new(1));
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let api = api.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n > sites {
                    return Ok::<_, anyhow::Error>(());
                }
                let body =
                    json!({"name": format!("Bench site {n}"), "city": "Columbus", "state": "OH"});
                api.call(
                    Method::PUT,
                    &format!("/v1/billing/sites/{}", billing_id(n)),
                    Some(&body),
                    &[200, 201],
                )
                .await?;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    let elapsed = t0.elapsed();
    Ok(Bench::new(
        "billing upserts/s (PUT /v1/billing/sites)",
        Some(backend.label()),
        sites as f64 / elapsed.as_secs_f64(),
        "req/s",
    )
    .note(format!(
        "{sites} sites, {concurrency} in flight, {:.1} s; informational",
        elapsed.as_secs_f64()
    )))
}

#[derive(Deserialize)]
struct SitePage {
    items: Vec<SiteRow>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[allow(dead_code)] // read the way reconcile reads it, then dropped
struct SiteRow {
    site_no: String,
    billing_id: Option<String>,
}

/// The least reconcile must do: read every site of the simulator, 500 a page.
async fn page_all_sites(http: &reqwest::Client, sim: &stages_sim::Sim) -> anyhow::Result<usize> {
    let url = format!("{}/api/v1/sites", sim.base_url());
    let mut token: Option<String> = None;
    let mut seen = 0;
    loop {
        let mut q = vec![("page_size", "500".to_owned())];
        if let Some(t) = token.take() {
            q.push(("page_token", t));
        }
        let r = http
            .get(&url)
            .basic_auth(SIM_USER, Some(SIM_PASSWORD))
            .query(&q)
            .send()
            .await?
            .error_for_status()?;
        let page: SitePage = r.json().await?;
        seen += page.items.len();
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => return Ok(seen),
        }
    }
}

/// Benchmark 2: reconcile wall time against paging the simulator directly.
pub async fn reconcile(
    api: &Api,
    backend: Backend,
    cid: &str,
    sim: &stages_sim::Sim,
    sites: u64,
) -> anyhow::Result<Vec<Bench>> {
    let t0 = Instant::now();
    let paged = page_all_sites(&api.http, sim).await?;
    let paging = t0.elapsed();
    if paged as u64 != sites {
        bail!("paging the simulator saw {paged} sites, not {sites}");
    }

    let t0 = Instant::now();
    let job = api
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}:reconcile"),
            None,
            &[202],
        )
        .await?;
    let id = job["id"].as_str().context("job without id")?.to_owned();
    let deadline = t0 + Duration::from_secs(1800);
    let done = loop {
        let j = api
            .call(Method::GET, &format!("/v1/jobs/{id}"), None, &[200])
            .await?;
        match j["state"].as_str() {
            Some("succeeded") => break j,
            Some("queued" | "running") if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            _ => bail!("reconcile job did not succeed: {j}"),
        }
    };
    let wall = t0.elapsed();
    let summary = &done["summary"];
    let taken = summary["taken_over"]["sites"].as_u64().unwrap_or(0);
    if taken != sites {
        bail!("reconcile took over {taken} site links, not {sites}: {summary}");
    }
    Ok(vec![Bench::new(
        format!("reconcile of {sites} Stages sites (job wall time)"),
        Some(backend.label()),
        wall.as_secs_f64(),
        "s",
    )
    .against(
        "page all sites of the simulator directly",
        paging.as_secs_f64(),
    )
    .note(format!(
        "{sites} sites, {} devices read, {taken} links created; the client-side Stages \
         rate limit off",
        summary["devices_seen"]
    ))])
}

/// Benchmark 1: link lookups by billing id against `GET /healthz`, the same way.
pub async fn lookups(
    api: &Api,
    backend: Backend,
    sites: u64,
    load: Load,
) -> anyhow::Result<Vec<Bench>> {
    // The links are there: a few lookups find exactly their site.
    let mut rng = Rng::new(42);
    for _ in 0..5 {
        let b = billing_id(rng.one_to(sites));
        let found = api
            .call(
                Method::GET,
                &format!("/v1/links?billing_id={b}"),
                None,
                &[200],
            )
            .await?;
        let n = found["items"].as_array().map_or(0, Vec::len);
        if n != 1 {
            bail!("GET /v1/links?billing_id={b} found {n} links, not 1: {found}");
        }
    }

    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, api.bearer.parse()?);
    let health_url = api.url("/healthz");
    let health = load::run_get(
        &api.http,
        headers.clone(),
        Arc::new(move |_: &mut Rng| health_url.clone()),
        load,
    )
    .await?;
    let links = api.url("/v1/links?billing_id=");
    let lookup = load::run_get(
        &api.http,
        headers,
        Arc::new(move |rng: &mut Rng| format!("{links}{}", billing_id(rng.one_to(sites)))),
        load,
    )
    .await?;

    let label = backend.label();
    let how = format!(
        "{} in flight, {:.0} s; {} vs {} requests",
        load.concurrency,
        load.duration.as_secs_f64(),
        lookup.requests,
        health.requests
    );
    Ok(vec![
        Bench::new(
            "link lookup by billing id (GET /v1/links?billing_id=)",
            Some(label),
            lookup.per_second(),
            "req/s",
        )
        .against("GET /healthz", health.per_second())
        .note(format!("{sites} links; {how}")),
        Bench::new(
            "link lookup p50 latency",
            Some(label),
            lookup.percentile_ms(50.0),
            "ms",
        )
        .against("GET /healthz p50", health.percentile_ms(50.0)),
        Bench::new(
            "link lookup p99 latency",
            Some(label),
            lookup.percentile_ms(99.0),
            "ms",
        )
        .against("GET /healthz p99", health.percentile_ms(99.0)),
    ])
}
