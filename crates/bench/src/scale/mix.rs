//! The mixed load of `make bench-scale` (B15, B9): link lookups, billing
//! edits that Auto Sync pushes, Stages callbacks and change-feed reads from
//! every dealer at once, closed-loop (each worker sends its next request
//! when the last is answered), with one dealer's burst of edits and another
//! dealer's reconcile in the middle. The background load lasts at least
//! `duration`, and as long as the burst and the reconcile, so that the other
//! dealers' jobs are measured while both run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{json, Value};

use super::world::{self, Conn, BURST_DEALER, RECONCILE_DEALER};
use crate::load::{self, LoadResult, MakeRequest, Rng, Stop, Turn};
use crate::service::Api;

/// Everything a request of the load needs, shared by its workers.
pub struct World {
    /// One per dealer (dealer `d` at `d - 1`), each with that dealer's token.
    pub apis: Vec<Api>,
    pub conns: Vec<Conn>,
    /// Stages site numbers of the live sites, by (dealer, record set).
    pub live: HashMap<(u32, u32), String>,
    pub dealers: u32,
    /// Record sets (a site and a system) per dealer.
    pub sites: u32,
    /// Live sites per dealer other than the burst dealer: the ones edited and called back.
    pub live_sites: u32,
    /// The change feed's last position after seeding.
    pub max_seq: u64,
}

/// Workers per operation and the timeline.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub duration: Duration,
    pub burst_after: Duration,
    pub reconcile_after: Duration,
    pub burst_edits: u64,
    pub lookup_workers: usize,
    pub edit_workers: usize,
    pub callback_workers: usize,
    pub feed_workers: usize,
    pub burst_workers: usize,
    /// Edits and callbacks per second over all their workers (0: as fast as they go).
    pub edit_rate: f64,
    pub callback_rate: f64,
}

/// The interval each of `workers` keeps between requests for `rate` a second in all.
fn pace(rate: f64, workers: usize) -> Option<Duration> {
    (rate > 0.0).then(|| Duration::from_secs_f64(workers as f64 / rate))
}

/// The background load never outlasts its duration by more than this,
/// whatever the burst and the reconcile do.
const MAX_OVERRUN: Duration = Duration::from_secs(600);
const WARMUP: Duration = Duration::from_secs(1);

/// What the load saw.
pub struct Mixed {
    /// (operation, what it measured) in the table's order.
    pub ops: Vec<(&'static str, LoadResult)>,
    pub burst: LoadResult,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub burst_from: DateTime<Utc>,
    pub burst_to: DateTime<Utc>,
    pub reconcile: Reconciled,
}

/// The reconcile made in the middle of the load.
pub struct Reconciled {
    pub secs: f64,
    pub state: String,
    pub summary: Value,
}

fn dealer_api(w: &World, d: u32) -> &Api {
    &w.apis[d as usize - 1]
}

/// A request of dealer `d` with its token.
fn request(w: &World, d: u32, method: Method, path: &str) -> reqwest::RequestBuilder {
    let api = dealer_api(w, d);
    api.http
        .request(method, api.url(path))
        .header(reqwest::header::AUTHORIZATION, &api.bearer)
}

/// A dealer other than the burst dealer, uniformly.
fn other_dealer(w: &World, rng: &mut Rng) -> u32 {
    rng.one_to(u64::from(w.dealers - 1)) as u32 + 1
}

/// Any dealer's link, a site's or a system's, by billing id.
pub fn lookups(w: Arc<World>) -> MakeRequest {
    Arc::new(move |_: &Turn, rng: &mut Rng| {
        let d = rng.one_to(u64::from(w.dealers)) as u32;
        let n = rng.one_to(u64::from(w.sites)) as u32;
        let id = match rng.next_u64() % 2 {
            0 => world::site_id(d, n),
            _ => world::system_id(d, n),
        };
        request(&w, d, Method::GET, &format!("/v1/links?billing_id={id}"))
    })
}

/// A billing edit of a linked site: Auto Sync pushes it to Stages.
fn edits(w: Arc<World>) -> MakeRequest {
    Arc::new(move |t: &Turn, rng: &mut Rng| {
        let d = other_dealer(&w, rng);
        let n = rng.one_to(u64::from(w.live_sites)) as u32;
        let address = format!("{}-{} Scale St", t.worker, t.seq);
        request(
            &w,
            d,
            Method::PUT,
            &format!("/v1/billing/sites/{}", world::site_id(d, n)),
        )
        .json(&world::site_body(&world::customer_id(d, n), &address))
    })
}

/// A Stages callback about a linked site (stored, answered 202, applied by a job).
fn callbacks(w: Arc<World>, run: String) -> MakeRequest {
    Arc::new(move |t: &Turn, rng: &mut Rng| {
        let d = other_dealer(&w, rng);
        let n = rng.one_to(u64::from(w.live_sites)) as u32;
        let conn = &w.conns[d as usize - 1];
        let api = dealer_api(&w, d);
        api.http
            .post(api.url(&format!("/v1/webhooks/stages/{}", conn.id)))
            .basic_auth(&conn.inbound_user, Some(&conn.inbound_secret))
            .json(&json!({
                "event_id": format!("scale-{run}-{}-{}", t.worker, t.seq),
                "occurred_at": Utc::now().to_rfc3339(),
                "type": "site.updated",
                "site_no": w.live[&(d, n)],
                "billing_id": world::site_id(d, n),
                "changes": {"info": format!("Callback {}-{}", t.worker, t.seq)},
            }))
    })
}

/// A page of a dealer's change feed from a random position (a consumer
/// somewhere in its catching up).
fn feed(w: Arc<World>) -> MakeRequest {
    Arc::new(move |_: &Turn, rng: &mut Rng| {
        let d = rng.one_to(u64::from(w.dealers)) as u32;
        let after = rng.next_u64() % (w.max_seq + 1);
        request(
            &w,
            d,
            Method::GET,
            &format!("/v1/events?after={after}&page_size=100"),
        )
    })
}

/// The burst: edits of the burst dealer's sites in turn, `total` in all.
fn burst(w: Arc<World>, sent: Arc<AtomicU64>) -> MakeRequest {
    Arc::new(move |_: &Turn, _: &mut Rng| {
        let k = sent.fetch_add(1, Ordering::Relaxed);
        let n = (k % u64::from(w.sites)) as u32 + 1;
        let d = BURST_DEALER;
        request(
            &w,
            d,
            Method::PUT,
            &format!("/v1/billing/sites/{}", world::site_id(d, n)),
        )
        .json(&world::site_body(
            &world::customer_id(d, n),
            &format!("{k} Burst Ave"),
        ))
    })
}

/// Lookups alone on the idle service: the baseline of the lookups under the mix.
pub async fn idle_lookups(w: Arc<World>, workers: usize, secs: f64) -> anyhow::Result<LoadResult> {
    load::run(
        lookups(w),
        &[200],
        load::Load {
            concurrency: workers,
            warmup: WARMUP,
            duration: Duration::from_secs_f64(secs),
        },
    )
    .await
}

/// Asks for the reconcile dealer's reconcile and waits for its end.
async fn reconcile(api: Api, cid: String) -> anyhow::Result<Reconciled> {
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
    loop {
        let j = api
            .call(Method::GET, &format!("/v1/jobs/{id}"), None, &[200])
            .await?;
        let state = j["state"].as_str().unwrap_or("").to_owned();
        if !matches!(state.as_str(), "queued" | "running") {
            return Ok(Reconciled {
                secs: t0.elapsed().as_secs_f64(),
                state,
                summary: j["summary"].clone(),
            });
        }
        if t0.elapsed() > MAX_OVERRUN {
            bail!("the reconcile did not end in {} s", MAX_OVERRUN.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sets a flag when dropped: a burst or reconcile that fails still lets the
/// background load end.
struct Raise(Arc<AtomicBool>);

impl Drop for Raise {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs the whole mix.
pub async fn run(w: Arc<World>, sizes: Sizes) -> anyhow::Result<Mixed> {
    let start = Instant::now();
    let started_at = Utc::now();
    let burst_done = Arc::new(AtomicBool::new(false));
    let reconcile_done = Arc::new(AtomicBool::new(false));
    let stop: Stop = {
        let (b, r) = (burst_done.clone(), reconcile_done.clone());
        Arc::new(move || {
            let t = start.elapsed();
            t >= sizes.duration + MAX_OVERRUN
                || (t >= sizes.duration && b.load(Ordering::Relaxed) && r.load(Ordering::Relaxed))
        })
    };
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let edit_pace = pace(sizes.edit_rate, sizes.edit_workers);
    let callback_pace = pace(sizes.callback_rate, sizes.callback_workers);
    type Background = (
        &'static str,
        MakeRequest,
        &'static [u16],
        usize,
        Option<Duration>,
    );
    let background: Vec<Background> = vec![
        (
            "link lookup by billing id (GET /v1/links?billing_id=)",
            lookups(w.clone()),
            &[200],
            sizes.lookup_workers,
            None,
        ),
        (
            "billing site edit, Auto Sync on (PUT /v1/billing/sites)",
            edits(w.clone()),
            &[200],
            sizes.edit_workers,
            edit_pace,
        ),
        (
            "Stages callback (POST /v1/webhooks/stages)",
            callbacks(w.clone(), run_id),
            &[202],
            sizes.callback_workers,
            callback_pace,
        ),
        (
            "change-feed page (GET /v1/events?after=)",
            feed(w.clone()),
            &[200],
            sizes.feed_workers,
            None,
        ),
    ];
    let mut tasks = Vec::new();
    for (name, make, ok, workers, pace) in background.into_iter().filter(|b| b.3 > 0) {
        let stop = stop.clone();
        tasks.push((
            name,
            tokio::spawn(
                async move { load::run_until(make, ok, workers, WARMUP, pace, stop).await },
            ),
        ));
    }
    let burst_task = {
        let (w, done) = (w.clone(), burst_done.clone());
        tokio::spawn(async move {
            let _done = Raise(done);
            tokio::time::sleep(sizes.burst_after).await;
            let sent = Arc::new(AtomicU64::new(0));
            let total = sizes.burst_edits;
            let until: Stop = {
                let sent = sent.clone();
                Arc::new(move || sent.load(Ordering::Relaxed) >= total)
            };
            let from = Utc::now();
            let r = load::run_until(
                burst(w, sent),
                &[200],
                sizes.burst_workers,
                Duration::ZERO,
                None,
                until,
            )
            .await;
            r.map(|r| (r, from, Utc::now()))
        })
    };
    let reconcile_task = {
        let (api, done) = (
            dealer_api(&w, RECONCILE_DEALER).clone(),
            reconcile_done.clone(),
        );
        let cid = w.conns[RECONCILE_DEALER as usize - 1].id.clone();
        tokio::spawn(async move {
            let _done = Raise(done);
            tokio::time::sleep(sizes.reconcile_after).await;
            reconcile(api, cid).await
        })
    };
    let (burst, burst_from, burst_to) = burst_task.await?.context("the burst")?;
    let reconcile = reconcile_task.await?.context("the reconcile")?;
    let mut ops = Vec::new();
    for (name, task) in tasks {
        ops.push((name, task.await?.with_context(|| name.to_owned())?));
    }
    Ok(Mixed {
        ops,
        burst,
        started_at,
        ended_at: Utc::now(),
        burst_from,
        burst_to,
        reconcile,
    })
}
