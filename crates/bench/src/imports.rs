//! Alarm.com import benchmarks: a run over every customer of a large dealer
//! (the simulator seeded with `--import-customers`), then a run with nothing
//! new. The baseline is the simulator's own serving rate measured in the
//! same run: the same list-then-read-each done directly with `adc-client`,
//! at the concurrency the service reads with, so the ratio is what the
//! service's bookkeeping (filters, billing records, items, events, the
//! checkpoint) costs on top of talking to Alarm.com.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use domain::adc::{AdcConnector, AdcCustomerQuery};
use domain::upstream::UpstreamTarget;
use reqwest::Method;
use serde_json::{json, Value};

use crate::report::Bench;
use crate::scenarios::median;
use crate::service::{Api, Backend, Database, Env, Service};

const ADC_USER: &str = "bench-adc";
const ADC_PASSWORD: &str = "bench-adc-Passw0rd";

/// How often the cheap figures (one list read, a re-run with nothing new)
/// are measured; the median is reported.
const LIST_READS: usize = 3;

/// Customers the service reads at once (`adc.import_concurrency`), and the
/// baseline too.
pub const READ_CONCURRENCY: usize = 4;

pub async fn seeded_adc(customers: usize) -> anyhow::Result<adc_sim::Sim> {
    let sim = adc_sim::Sim::start(adc_sim::SimConfig {
        username: ADC_USER.into(),
        password: ADC_PASSWORD.into(),
        seed_customers: customers,
        ..Default::default()
    })
    .await?;
    let seeded = sim.state().customer_count();
    if seeded != customers {
        bail!("the Alarm.com simulator seeded {seeded} customers, not {customers}");
    }
    Ok(sim)
}

/// What the simulator serves when asked directly: list, then read each
/// customer with `READ_CONCURRENCY` in flight.
pub struct Baseline {
    pub list_secs: f64,
    pub customers: usize,
    pub secs: f64,
}

impl Baseline {
    pub fn per_sec(&self) -> f64 {
        self.customers as f64 / self.secs
    }
}

pub async fn direct_read(sim: &adc_sim::Sim) -> anyhow::Result<Baseline> {
    let connector = upstream_http::Connector::new(upstream_http::ClientSettings {
        requests_per_second: 0,
        // The simulator listens on loopback, which the default policy refuses.
        egress: upstream_http::EgressPolicy::parse_allow(&["127.0.0.0/8"])?,
        ..adc_client::default_settings()
    })?;
    let api = adc_client::HttpAdcConnector(connector).connect(UpstreamTarget {
        key: "bench-direct".into(),
        endpoint: url::Url::parse(&sim.base_url())?,
        username: ADC_USER.into(),
        password: ADC_PASSWORD.into(),
    });
    // One list read varied from 0.05 to 0.28 s between runs: the list
    // figure is the median of a few, and the last one's ids are read.
    let mut list_times = Vec::with_capacity(LIST_READS);
    let mut ids = Vec::new();
    for _ in 0..LIST_READS {
        let t0 = Instant::now();
        ids = api
            .customer_ids(&AdcCustomerQuery::default())
            .await
            .context("listing customers directly")?;
        list_times.push(t0.elapsed().as_secs_f64());
    }
    // The whole direct read is the last list read and the reads of its ids.
    let last_list = list_times[LIST_READS - 1];
    let list_secs = median(&mut list_times);
    let reads = Instant::now();
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..READ_CONCURRENCY {
        let (api, ids, next) = (api.clone(), ids.clone(), next.clone());
        readers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else {
                    return anyhow::Ok(());
                };
                api.customer(*id)
                    .await
                    .with_context(|| format!("reading customer {id}"))?;
            }
        });
    }
    while let Some(joined) = readers.join_next().await {
        joined??;
    }
    Ok(Baseline {
        list_secs,
        customers: ids.len(),
        secs: last_list + reads.elapsed().as_secs_f64(),
    })
}

/// Peak and current resident memory of a process, in MiB (Linux `/proc`).
pub fn memory_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<f64> {
        status
            .lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()
    };
    Some((kib("VmHWM:")? / 1024.0, kib("VmRSS:")? / 1024.0))
}

/// Seconds from the run's creation to its end, by the service's own clock
/// (not the polling's).
fn run_secs(run: &Value) -> anyhow::Result<f64> {
    let at = |field: &str| -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
        run[field]
            .as_str()
            .with_context(|| format!("the import has no {field}"))?
            .parse()
            .with_context(|| format!("the import's {field}"))
    };
    Ok((at("finished_at")? - at("created_at")?)
        .num_microseconds()
        .unwrap_or(0) as f64
        / 1e6)
}

/// Starts an import and waits for its end; the run's body and its seconds.
async fn import(api: &Api, cid: &str) -> anyhow::Result<(Value, f64)> {
    let started = api
        .call(
            Method::POST,
            "/v1/imports",
            Some(&json!({"connection_id": cid, "kind": "customers"})),
            &[202],
        )
        .await?;
    let id = started["id"]
        .as_str()
        .context("import without id")?
        .to_owned();
    loop {
        let run = api
            .call(Method::GET, &format!("/v1/imports/{id}"), None, &[200])
            .await?;
        match run["state"].as_str() {
            Some("queued" | "running") => tokio::time::sleep(Duration::from_millis(50)).await,
            Some("succeeded") => {
                let secs = run_secs(&run)?;
                return Ok((run, secs));
            }
            _ => bail!("the import ended {}: {run}", run["state"]),
        }
    }
}

fn counted(run: &Value, what: &str) -> u64 {
    run["counts"][what].as_u64().unwrap_or(0)
}

/// The service on a fresh database imports every customer, then runs again
/// with nothing new.
pub async fn customer_import(
    env: &Env,
    backend: Backend,
    http: &reqwest::Client,
    token: &str,
    sim: &adc_sim::Sim,
    baseline: &Baseline,
) -> anyhow::Result<Vec<Bench>> {
    let label = backend.label();
    let db = Database::fresh(env, backend, "imports")?;
    let svc = Service::spawn_with(
        env,
        &db,
        &format!("{label}-import-service"),
        &[
            ("CROSSLINK__ADC__REQUESTS_PER_SECOND", "0".to_owned()),
            (
                "CROSSLINK__ADC__IMPORT_CONCURRENCY",
                READ_CONCURRENCY.to_string(),
            ),
        ],
    )
    .await?;
    svc.wait_ready(http).await?;
    let pid = svc.pid().context("the service has no pid")?;
    let idle_mib = memory_mib(pid).map_or(0.0, |(_, rss)| rss);
    let api = Api::new(http.clone(), &svc.base, token);
    let c = api
        .call(
            Method::POST,
            "/v1/connections",
            Some(
                &json!({"provider": "alarm_com", "name": "bench adc", "endpoint": sim.base_url()}),
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
        Some(&json!({"username": ADC_USER, "password": ADC_PASSWORD})),
        &[200, 201],
    )
    .await?;

    let (first, secs) = import(&api, &cid).await?;
    let imported = counted(&first, "imported");
    if imported != baseline.customers as u64 || counted(&first, "failed") != 0 {
        bail!("the import did not take every customer once: {first}");
    }
    let peak_mib = memory_mib(pid).map_or(0.0, |(peak, _)| peak);
    let mut again_times = Vec::new();
    let mut again = Value::Null;
    for _ in 0..LIST_READS {
        let (run, secs) = import(&api, &cid).await?;
        if counted(&run, "imported") != 0 || counted(&run, "already_imported") != imported {
            bail!("a run after the first imported something again: {run}");
        }
        again_times.push(secs);
        again = run;
    }
    let again_secs = median(&mut again_times);
    svc.stop().await?;
    drop(db);

    let rate = imported as f64 / secs;
    Ok(vec![
        Bench::new(
            format!("Alarm.com customer import ({imported} customers)"),
            Some(label),
            rate,
            "customers/s",
        )
        .against(
            "the simulator served directly (adc-client: list, read each)",
            baseline.per_sec(),
        )
        .note(format!(
            "{secs:.1} s from the run's creation to its end; each customer becomes a billing customer, \
             an item, an imported-record row and an event; {READ_CONCURRENCY} reads in flight \
             on both sides; direct: {:.1} s",
            baseline.secs
        )),
        Bench::new(
            "Alarm.com import re-run with nothing new",
            Some(label),
            again_secs,
            "s",
        )
        .against(
            "list customers directly (one GetCustomerList_V2)",
            baseline.list_secs,
        )
        .note(format!(
            "{} customers seen, all already imported, none read again; median of \
             {LIST_READS} runs and of {LIST_READS} list reads",
            counted(&again, "seen")
        )),
        Bench::new(
            "service peak memory during the import",
            Some(label),
            peak_mib,
            "MiB",
        )
        .against("resident memory when idle before it", idle_mib)
        .note("VmHWM of the crosslink process (Linux /proc) after the first run"),
    ])
}
