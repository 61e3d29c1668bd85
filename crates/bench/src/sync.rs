//! Auto Sync and Stages callbacks (issue 4): how fast billing edits reach
//! Stages as pushes, how long a push job waits before a worker starts it,
//! what a push costs in CPU and (on PostgreSQL) commits (issue 12), and how
//! fast Stages callbacks are taken in. Same rule as the other benchmarks:
//! each figure beside a baseline measured in the same run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::cost::{self, Cpu, CpuProbe};
use crate::load::{self, Load, Rng, Turn};
use crate::report::Bench;
use crate::scenarios::{billing_id, SIM_PASSWORD, SIM_USER};
use crate::service::{Api, Backend, PgDatabase};

/// The worker's idle poll interval (`IDLE_POLL` in crates/api/src/worker.rs):
/// a worker that found nothing to do looks again after this long.
pub const IDLE_POLL_MS: f64 = 250.0;

/// The simulator's counter of pushes (`SimState::request_count` key).
const PATCH_SITE: &str = "PATCH /api/v1/sites/{site_no}";

/// Quiet looks in a row that make quiescence, and the pause between looks.
pub(crate) const QUIET_LOOKS: u32 = 3;
pub(crate) const LOOK_EVERY: Duration = Duration::from_millis(20);
/// While Stages lacks edits, the service is asked about its jobs every this
/// many looks (to tell a lost push from a slow one).
const ASK_EVERY: u64 = 10;

/// A linked site the benchmarks edit: `B-n` in billing, `site_no` in Stages.
#[derive(Debug, Clone)]
pub struct LinkedSite {
    pub n: u64,
    pub site_no: String,
}

/// Sites `B-1..=B-count` with their Stages numbers (the seeded simulator
/// carries the billing ids; reconcile linked them).
pub fn linked_sites(sim: &stages_sim::Sim, count: u64) -> anyhow::Result<Vec<LinkedSite>> {
    let mut by_n: HashMap<u64, String> = HashMap::new();
    for s in sim.state().sites() {
        let n = s
            .fields
            .billing_id
            .as_deref()
            .and_then(|b| b.strip_prefix("B-"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = n.filter(|n| (1..=count).contains(n)) {
            by_n.insert(n, s.site_no);
        }
    }
    (1..=count)
        .map(|n| {
            let site_no = by_n
                .remove(&n)
                .with_context(|| format!("no Stages site carries billing id {}", billing_id(n)))?;
            Ok(LinkedSite { n, site_no })
        })
        .collect()
}

/// The body of a billing edit of site `n` (the fields the bench loaded it with).
fn site_body(n: u64, address1: &str) -> serde_json::Value {
    json!({"name": format!("Bench site {n}"), "city": "Columbus", "state": "OH", "address1": address1})
}

#[derive(Debug, Deserialize)]
struct JobPage {
    items: Vec<JobItem>,
    next_page_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct JobItem {
    id: String,
    state: String,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    error: Option<String>,
}

impl JobItem {
    /// From enqueue to the first start, in milliseconds.
    fn wait_ms(&self) -> Option<f64> {
        let started = self.started_at?;
        Some((started - self.created_at).num_microseconds()? as f64 / 1000.0)
    }
}

/// Every job of `query` (e.g. `kind=auto_sync_push`), 500 a page.
async fn all_jobs(api: &Api, query: &str) -> anyhow::Result<Vec<JobItem>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = format!("/v1/jobs?{query}&page_size=500");
        if let Some(t) = token.take() {
            path.push_str(&format!("&page_token={t}"));
        }
        let page: JobPage =
            serde_json::from_value(api.call(Method::GET, &path, None, &[200]).await?)
                .context("reading a page of jobs")?;
        out.extend(page.items);
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// Whether any job is in `state` (one row asked for).
async fn any_job(api: &Api, state: &str) -> anyhow::Result<bool> {
    let page = api
        .call(
            Method::GET,
            &format!("/v1/jobs?state={state}&page_size=1"),
            None,
            &[200],
        )
        .await?;
    Ok(page["items"].as_array().is_some_and(|a| !a.is_empty()))
}

/// The sites whose `address1` in the simulator is not the expected one.
fn mismatched<'a>(
    sim: &stages_sim::Sim,
    expected: &'a HashMap<String, String>,
) -> Vec<(&'a str, &'a str, Option<String>)> {
    expected
        .iter()
        .filter_map(|(site_no, want)| {
            let got = sim.state().site(site_no).map(|s| s.fields.address1);
            (got.as_deref() != Some(want.as_str())).then_some((
                site_no.as_str(),
                want.as_str(),
                got,
            ))
        })
        .collect()
}

/// Waits until every site in `expected` holds its value in Stages and no job
/// is queued or running, [`QUIET_LOOKS`] looks in a row; returns when the
/// first of those looks was taken. Stages is looked at first (in this
/// process); the service is asked about its jobs only when Stages is
/// complete, or every [`ASK_EVERY`] looks, so that the looking adds little to
/// what the run costs the service and its database. Fails (with what is
/// wrong) when the jobs are done but a value never arrived, or after `timeout`.
async fn quiesce(
    api: &Api,
    sim: &stages_sim::Sim,
    expected: &HashMap<String, String>,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    let mut streak: Option<(Instant, u32)> = None;
    let mut idle_but_wrong = 0;
    for look_no in 0u64.. {
        let look = Instant::now();
        let wrong = mismatched(sim, expected);
        let idle = if wrong.is_empty() || look_no % ASK_EVERY == 0 {
            Some(!any_job(api, "queued").await? && !any_job(api, "running").await?)
        } else {
            None
        };
        if wrong.is_empty() && idle == Some(true) {
            let (since, n) = streak.unwrap_or((look, 0));
            if n + 1 == QUIET_LOOKS {
                return Ok(since);
            }
            streak = Some((since, n + 1));
        } else {
            streak = None;
        }
        match idle {
            // Nothing left to run, yet a site lacks its last edit: a lost push.
            Some(true) if !wrong.is_empty() => {
                idle_but_wrong += 1;
                if idle_but_wrong > 10 {
                    let dead = all_jobs(api, "kind=auto_sync_push&state=dead").await?;
                    let (site_no, want, got) = &wrong[0];
                    bail!(
                        "{} sites never got their last edit (site {site_no}: {got:?}, not {want:?}); \
                         {} dead push jobs{}",
                        wrong.len(),
                        dead.len(),
                        dead.first()
                            .map(|j| format!(", e.g. {}: {:?}", j.id, j.error))
                            .unwrap_or_default()
                    );
                }
            }
            Some(_) => idle_but_wrong = 0,
            None => {}
        }
        if Instant::now() > deadline {
            bail!(
                "Auto Sync did not settle in {:.0} s (jobs idle: {idle:?}, {} sites without their last edit)",
                timeout.as_secs_f64(),
                wrong.len()
            );
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
    unreachable!("the looks never end")
}

/// What the Auto Sync benchmarks need to know.
#[derive(Debug, Clone, Copy)]
pub struct AutoSyncSizes {
    /// Billing edits of the throughput run.
    pub edits: u64,
    /// Edits in flight.
    pub concurrency: usize,
    /// Single edits of the idle run.
    pub idle_edits: usize,
    /// The baseline's load (direct PATCHes to the simulator).
    pub load: Load,
    /// The service's client-side Stages rate limit (0 = off), for the notes.
    pub stages_rps: u32,
}

/// The baseline of the Auto Sync figures: PATCHes sent straight to the
/// simulator, and what they cost this process (the client and the simulator,
/// which runs in it).
#[derive(Debug)]
pub struct Direct {
    pub per_second: f64,
    pub requests: u64,
    pub concurrency: usize,
    /// CPU of this process per PATCH over the whole load (warm-up included).
    pub cpu_ms_per_patch: f64,
}

/// Sends PATCHes straight to the simulator, `sizes.concurrency` in flight.
pub async fn direct_patches(
    http: &reqwest::Client,
    sim: &stages_sim::Sim,
    sites: &[LinkedSite],
    sizes: AutoSyncSizes,
) -> anyhow::Result<Direct> {
    let concurrency = sizes.concurrency.max(1);
    let http = http.clone();
    let urls: Arc<Vec<String>> = Arc::new(
        sites
            .iter()
            .map(|s| format!("{}/api/v1/sites/{}", sim.base_url(), s.site_no))
            .collect(),
    );
    let make: load::MakeRequest = Arc::new(move |t: &Turn, rng: &mut Rng| {
        let url = &urls[rng.one_to(urls.len() as u64) as usize - 1];
        http.patch(url)
            .basic_auth(SIM_USER, Some(SIM_PASSWORD))
            .json(&json!({"address1": format!("{} Direct Rd", t.seq)}))
    });
    let cpu_before = cost::process_cpu_ms("self").context("reading /proc/self/stat")?;
    let t = Instant::now();
    let run = load::run(
        make,
        &[200],
        Load {
            concurrency,
            ..sizes.load
        },
    )
    .await
    .context("PATCHing the simulator directly")?;
    let wall = t.elapsed().as_secs_f64();
    let cpu = cost::process_cpu_ms("self").context("reading /proc/self/stat")? - cpu_before;
    Ok(Direct {
        per_second: run.per_second(),
        requests: run.requests,
        concurrency,
        cpu_ms_per_patch: cpu / (run.per_second() * wall),
    })
}

/// One throughput run of Auto Sync: billing edits spread evenly over the
/// sites, until every site's last edit is in Stages and the jobs are done.
#[derive(Debug)]
pub struct Throughput {
    pub edits: u64,
    pub sites: u64,
    pub concurrency: usize,
    /// PATCHes that reached Stages.
    pub pushes: u64,
    /// Push jobs the run made.
    pub jobs: usize,
    /// First edit to the last edit answered.
    pub edit_secs: f64,
    /// First edit to quiescence.
    pub settle_secs: f64,
    /// Last edit to quiescence.
    pub drain_secs: f64,
    /// Enqueue-to-start of the run's jobs, sorted, in milliseconds.
    pub waits_ms: Vec<f64>,
    /// CPU from the first edit to quiescence.
    pub cpu: Cpu,
}

/// Benchmark 4: `sizes.edits` billing edits, spread evenly over the sites,
/// `sizes.concurrency` in flight, then quiescence. `tag` makes the values
/// new (so every run edits); the CPU of `service_pid` (and of the PostgreSQL
/// processes serving `pg`) is taken from the first edit to quiescence.
pub async fn throughput(
    api: &Api,
    sim: &stages_sim::Sim,
    sites: &[LinkedSite],
    sizes: AutoSyncSizes,
    tag: &str,
    service_pid: u32,
    pg: Option<&PgDatabase>,
) -> anyhow::Result<Throughput> {
    let n_sites = sites.len() as u64;
    if n_sites == 0 || sizes.edits == 0 {
        bail!("Auto Sync needs sites and edits");
    }
    let concurrency = sizes.concurrency.max(1);
    // Each site belongs to one edit worker, so its edits are made in order
    // and its last edit is known.
    let tag = tag.to_owned();
    let value = move |k: u64| format!("{k} Bench St ({tag})");
    let pushes_before = sim.state().request_count(PATCH_SITE);
    let cpu = CpuProbe::start(service_pid, pg)?;
    let created_from = Utc::now();
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let api = api.clone();
        let value = value.clone();
        workers.push(tokio::spawn(async move {
            let mut last = t0;
            for k in (0..sizes.edits).filter(|k| (k % n_sites) as usize % concurrency == w) {
                let n = k % n_sites + 1;
                api.call(
                    Method::PUT,
                    &format!("/v1/billing/sites/{}", billing_id(n)),
                    Some(&site_body(n, &value(k))),
                    &[200],
                )
                .await?;
                last = Instant::now();
            }
            Ok::<_, anyhow::Error>(last)
        }));
    }
    let mut last_edit = t0;
    for w in workers {
        last_edit = last_edit.max(w.await??);
    }
    let mut expected: HashMap<String, String> = HashMap::new();
    for k in sizes.edits.saturating_sub(n_sites)..sizes.edits {
        let site = &sites[(k % n_sites) as usize];
        expected.insert(site.site_no.clone(), value(k));
    }
    let quiet = quiesce(api, sim, &expected, Duration::from_secs(900)).await?;
    let cpu = cpu.finish()?;
    let pushes = sim.state().request_count(PATCH_SITE) - pushes_before;
    let jobs: Vec<JobItem> = all_jobs(api, "kind=auto_sync_push")
        .await?
        .into_iter()
        .filter(|j| j.created_at >= created_from)
        .collect();
    let not_done = jobs.iter().filter(|j| j.state != "succeeded").count();
    if not_done > 0 {
        bail!("{not_done} Auto Sync jobs of the run did not succeed");
    }
    let mut waits_ms: Vec<f64> = jobs.iter().filter_map(JobItem::wait_ms).collect();
    waits_ms.sort_by(f64::total_cmp);
    Ok(Throughput {
        edits: sizes.edits,
        sites: n_sites,
        concurrency,
        pushes,
        jobs: jobs.len(),
        edit_secs: last_edit.duration_since(t0).as_secs_f64(),
        settle_secs: quiet.duration_since(t0).as_secs_f64(),
        drain_secs: quiet.saturating_duration_since(last_edit).as_secs_f64(),
        waits_ms,
        cpu,
    })
}

/// Benchmark 5 on an idle service: single edits spaced out, each to its own
/// site, at a random point of the workers' poll cycle; their enqueue-to-start
/// against the worker's idle poll.
pub async fn idle_starts(
    api: &Api,
    backend: Backend,
    sim: &stages_sim::Sim,
    sites: &[LinkedSite],
    sizes: AutoSyncSizes,
    workers: &str,
) -> anyhow::Result<Vec<Bench>> {
    let label = backend.label();
    let created_from = Utc::now();
    let mut expected: HashMap<String, String> = HashMap::new();
    let mut rng = Rng::new(0x1D1E);
    let t_idle = Instant::now();
    for i in 0..sizes.idle_edits {
        tokio::time::sleep(Duration::from_millis(300 + rng.next_u64() % 250)).await;
        let site = &sites[i % sites.len()];
        let v = format!("idle {i} Bench St ({label})");
        api.call(
            Method::PUT,
            &format!("/v1/billing/sites/{}", billing_id(site.n)),
            Some(&site_body(site.n, &v)),
            &[200],
        )
        .await?;
        expected.insert(site.site_no.clone(), v);
    }
    quiesce(api, sim, &expected, Duration::from_secs(120)).await?;
    let idle_secs = t_idle.elapsed().as_secs_f64();
    let idle: Vec<JobItem> = all_jobs(api, "kind=auto_sync_push")
        .await?
        .into_iter()
        .filter(|j| j.created_at >= created_from)
        .collect();
    let mut idle_ms: Vec<f64> = idle.iter().filter_map(JobItem::wait_ms).collect();
    idle_ms.sort_by(f64::total_cmp);
    let baseline = "worker idle poll interval (IDLE_POLL)";
    Ok(vec![
        Bench::new(
            "Auto Sync: enqueue-to-start p50, idle service",
            Some(label),
            load::percentile(&idle_ms, 50.0),
            "ms",
        )
        .against(baseline, IDLE_POLL_MS)
        .note(format!(
            "{} single edits 300–550 ms apart on an idle service, {idle_secs:.0} s; {workers}, \
             each polling every {IDLE_POLL_MS:.0} ms when idle",
            idle_ms.len()
        )),
        Bench::new(
            "Auto Sync: enqueue-to-start p99, idle service",
            Some(label),
            load::percentile(&idle_ms, 99.0),
            "ms",
        )
        .against(baseline, IDLE_POLL_MS),
    ])
}

/// Benchmark 6: Stages callbacks taken in per second (stored, answered 202,
/// applied later by a job) against plain single-row inserts through the same
/// service (`PUT /v1/billing/users` with new ids), both over HTTP.
pub async fn callbacks(
    api: &Api,
    backend: Backend,
    cid: &str,
    sites: &[LinkedSite],
    load: Load,
) -> anyhow::Result<Vec<Bench>> {
    let label = backend.label();
    let rotated = api
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}/inbound-credentials:rotate"),
            None,
            &[200, 201],
        )
        .await?;
    let user = rotated["username"]
        .as_str()
        .context("rotate answered no username")?
        .to_owned();
    let secret = rotated["secret"]
        .as_str()
        .context("rotate answered no secret")?
        .to_owned();
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();

    // Baseline first, so the callbacks' background jobs do not load it.
    let inserts = {
        let http = api.http.clone();
        let base = api.url("/v1/billing/users/");
        let bearer = api.bearer.clone();
        let run = run.clone();
        let make: load::MakeRequest = Arc::new(move |t: &Turn, _: &mut Rng| {
            http.put(format!("{base}U-{run}-{}-{}", t.worker, t.seq))
                .header(reqwest::header::AUTHORIZATION, &bearer)
                .json(&json!({"first_name": "Bench", "last_name": format!("User {}-{}", t.worker, t.seq),
                    "email": "bench@example.com", "active": true}))
        });
        load::run(make, &[201], load)
            .await
            .context("inserting billing users")?
    };

    let received = {
        let http = api.http.clone();
        let url = api.url(&format!("/v1/webhooks/stages/{cid}"));
        let sites: Arc<Vec<LinkedSite>> = Arc::new(sites.to_vec());
        let make: load::MakeRequest = Arc::new(move |t: &Turn, rng: &mut Rng| {
            let site = &sites[rng.one_to(sites.len() as u64) as usize - 1];
            http.post(&url)
                .basic_auth(&user, Some(&secret))
                .json(&json!({
                    "event_id": format!("bench-{run}-{}-{}", t.worker, t.seq),
                    "occurred_at": Utc::now().to_rfc3339(),
                    "type": "site.updated",
                    "site_no": site.site_no,
                    "billing_id": billing_id(site.n),
                    "changes": {"info": format!("Callback {}-{}", t.worker, t.seq)},
                }))
        });
        // Every callback is new, so every one must be answered 202.
        load::run(make, &[202], load)
            .await
            .context("posting Stages callbacks")?
    };

    Ok(vec![Bench::new(
        "Stages callbacks ingested/s (POST /v1/webhooks/stages, site.updated)",
        Some(label),
        received.per_second(),
        "req/s",
    )
    .against(
        "PUT /v1/billing/users with new ids (plain single-row insert)",
        inserts.per_second(),
    )
    .note(format!(
        "both through HTTP; {} in flight, {:.0} s; {} callbacks (unique event ids, all answered \
         202, applied later by the job workers) vs {} inserts; p50 {:.1} vs {:.1} ms",
        load.concurrency,
        load.duration.as_secs_f64(),
        received.requests,
        inserts.requests,
        received.percentile_ms(50.0),
        inserts.percentile_ms(50.0)
    ))])
}
