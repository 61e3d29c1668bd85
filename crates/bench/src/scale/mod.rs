//! `make bench-scale` (B15, B9): one PostgreSQL primary holding 1,000 dealers
//! with 1,000 links each, under a mixed load from all of them, one dealer's
//! burst of 50,000 edits and another's reconcile in the middle. It answers
//! what `make bench` cannot: whether lookups stay flat at a million links,
//! whether the tenant-fair queue keeps the other dealers' jobs starting while
//! one dealer floods it, and what the database and the service grow to.
//!
//! The run: the release service on a database of its own; a connection per
//! dealer through the API; one record set made through the API and copied by
//! SQL into every dealer's (`seed`); Stages sites in the simulators only for
//! the records the load pushes to (`world`); lookups alone as the baseline,
//! then the mix (`mix`); then the jobs table, sizes and WAL (`figures`),
//! written as `scale.md` and `scale.json` (`rows`).

pub mod figures;
pub mod mix;
mod rows;
pub mod seed;
pub mod world;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::cost::CpuProbe;
use crate::imports::memory_mib;
use crate::report::Bench;
use crate::service::{self, Backend, Database, Env, PgDatabase, Service};
use world::{Live, BURST_DEALER, RECONCILE_DEALER};

#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "crosslink-bench-scale",
    about = "One PostgreSQL primary with many dealers' links under a mixed load; writes scale.md / scale.json"
)]
pub struct Cli {
    /// Where scale.md, scale.json and the scratch files (scale-work/) go.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    /// The service binary to measure.
    #[arg(long, default_value = "target/release/crosslink")]
    pub crosslink_bin: PathBuf,
    /// PostgreSQL server URL; the run makes a database of its own on it.
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    pub database_url: String,
    /// Dealers (at least 3: the burst dealer, the reconcile dealer, others).
    #[arg(long, default_value_t = 1_000)]
    pub dealers: u32,
    /// Links per dealer, half site links and half system links (each site
    /// has one system, and a customer of its own).
    #[arg(long, default_value_t = 1_000)]
    pub links_per_dealer: u32,
    /// Linked sites per dealer that exist in the simulator, edited and called
    /// back by the load (the burst dealer's and the reconcile dealer's all do).
    #[arg(long, default_value_t = 2)]
    pub live_sites: u32,
    /// Seconds of the mixed load (it lasts as long as the burst and the reconcile, at least).
    #[arg(long, default_value_t = 120.0)]
    pub duration: f64,
    /// Seconds into the load when the burst starts.
    #[arg(long, default_value_t = 20.0)]
    pub burst_after: f64,
    /// Billing edits of the burst dealer, sent as fast as `--burst-workers` go.
    #[arg(long, default_value_t = 50_000)]
    pub burst_edits: u64,
    /// Seconds into the load when the reconcile dealer's reconcile is asked for.
    #[arg(long, default_value_t = 40.0)]
    pub reconcile_after: f64,
    #[arg(long, default_value_t = 4)]
    pub lookup_workers: usize,
    #[arg(long, default_value_t = 2)]
    pub edit_workers: usize,
    #[arg(long, default_value_t = 1)]
    pub callback_workers: usize,
    #[arg(long, default_value_t = 1)]
    pub feed_workers: usize,
    #[arg(long, default_value_t = 4)]
    pub burst_workers: usize,
    /// Billing edits per second of the other dealers, over the edit workers
    /// (0: as fast as they go, which on 2 cores enqueues more pushes than the
    /// workers run, so every job waits longer and longer whatever the burst does).
    #[arg(long, default_value_t = 40.0)]
    pub edit_rate: f64,
    /// Stages callbacks per second, over the callback workers (0: as fast as they go).
    #[arg(long, default_value_t = 20.0)]
    pub callback_rate: f64,
    /// Seconds of lookups alone before the mix (their baseline).
    #[arg(long, default_value_t = 10.0)]
    pub idle_secs: f64,
    /// The service's client-side Stages rate limit (per process; 0 = off, as
    /// in `make bench`): at the default of 20 the whole load's pushes would
    /// share 10 a second.
    #[arg(long, default_value_t = 0)]
    pub stages_rps: u32,
    /// Longest wait for the queue to empty after the load.
    #[arg(long, default_value_t = 180.0)]
    pub drain_timeout: f64,
    /// Leave the run's database on the server (its name is printed).
    #[arg(long)]
    pub keep_database: bool,
}

impl Cli {
    fn sites(&self) -> u32 {
        self.links_per_dealer / 2
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.dealers < 3 || self.dealers > 99_999 {
            bail!("--dealers must be between 3 and 99,999");
        }
        if self.links_per_dealer < 2
            || !self.links_per_dealer.is_multiple_of(2)
            || self.sites() > 99_999
        {
            bail!("--links-per-dealer must be even, 2 to 199,998");
        }
        if self.live_sites == 0 || self.live_sites > self.sites() {
            bail!("--live-sites must be between 1 and --links-per-dealer / 2");
        }
        Ok(())
    }
}

/// Prints a step to stderr and times it.
async fn step<T>(
    what: &str,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, f64)> {
    eprintln!("bench-scale: {what} ...");
    let t = Instant::now();
    let out = fut.await.with_context(|| what.to_owned())?;
    let secs = t.elapsed().as_secs_f64();
    eprintln!("bench-scale: {what}: {secs:.1} s");
    Ok((out, secs))
}

/// The simulators and which site stands for which record set: simulator A
/// holds every site of the burst dealer and `live_sites` of each other
/// dealer, simulator B every site of the reconcile dealer.
async fn simulators(cli: &Cli) -> anyhow::Result<(stages_sim::Sim, stages_sim::Sim, Vec<Live>)> {
    let sites = cli.sites();
    let others = (cli.dealers - 2) * cli.live_sites;
    let (sim_a, on_a) = world::sim_with((sites + others) as usize).await?;
    let (sim_b, on_b) = world::sim_with(sites as usize).await?;
    let mut on_a = on_a.into_iter();
    let mut live = Vec::new();
    let mut take = |d: u32, n: u32, (site_no, device_id): (String, String)| {
        live.push(Live {
            d,
            n,
            site_no,
            device_id,
        })
    };
    for n in 1..=sites {
        take(BURST_DEALER, n, on_a.next().context("simulator A ran out")?);
    }
    for (n, site) in (1..=sites).zip(on_b) {
        take(RECONCILE_DEALER, n, site);
    }
    for d in 3..=cli.dealers {
        for n in 1..=cli.live_sites {
            take(d, n, on_a.next().context("simulator A ran out")?);
        }
    }
    Ok((sim_a, sim_b, live))
}

/// A few lookups of copied records find exactly their link: the copy is
/// what the service reads.
async fn check_copies(apis: &[service::Api], cli: &Cli) -> anyhow::Result<()> {
    let mut rng = crate::load::Rng::new(7);
    for _ in 0..10 {
        let d = rng.one_to(u64::from(cli.dealers)) as u32;
        let n = rng.one_to(u64::from(cli.sites())) as u32;
        for id in [world::site_id(d, n), world::system_id(d, n)] {
            let found = apis[d as usize - 1]
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/links?billing_id={id}"),
                    None,
                    &[200],
                )
                .await?;
            let count = found["items"].as_array().map_or(0, Vec::len);
            if count != 1 {
                bail!(
                    "{} finds {count} links for {id}, not 1: {found}",
                    world::dealer(d)
                );
            }
        }
    }
    Ok(())
}

/// What the measurements run on: the seeded database and the service on it.
struct Setup {
    sims: (stages_sim::Sim, stages_sim::Sim),
    db: Database,
    pg: PgDatabase,
    svc: Service,
    world: Arc<mix::World>,
    connect_secs: f64,
    seeded: seed::Seeded,
}

/// The simulators, the service on a database of its own, a connection per
/// dealer, the template, the seeding and its check.
async fn setup(cli: &Cli, env: &Env, http: &reqwest::Client) -> anyhow::Result<Setup> {
    let ((sim_a, sim_b, live), _) = step("starting the simulators", simulators(cli)).await?;
    let db = Database::fresh_own(env, Backend::Postgres, "scale")?;
    let pg = db.pg_database().context("no database of its own")?.clone();
    eprintln!("bench-scale: database {}", pg.name);
    let rps = (
        "CROSSLINK__STAGES__REQUESTS_PER_SECOND",
        cli.stages_rps.to_string(),
    );
    let svc = Service::spawn_with(env, &db, "scale-service", &[rps]).await?;
    svc.wait_ready(http).await?;
    let apis = world::dealer_apis(http, &svc.base, &env.jwt_secret, cli.dealers)?;
    let (conns, connect_secs) = step(
        &format!("{} connections through the API", cli.dealers),
        world::connect_all(&apis, &sim_a, &sim_b, 8),
    )
    .await?;
    let template = live[0].clone();
    world::make_template(&apis[0], &sim_a, &conns[0], &template).await?;
    let (on_b, on_a): (Vec<Live>, Vec<Live>) = live[1..]
        .iter()
        .cloned()
        .partition(|l| l.d == RECONCILE_DEALER);
    world::mark_linked(&sim_a, &on_a)?;
    world::mark_linked(&sim_b, &on_b)?;
    let plan = seed::Plan {
        dealers: cli.dealers,
        sites: cli.sites(),
    };
    let seeded = seed::seed(&db.url, plan, &conns, &live, &template)?;
    check_copies(&apis, cli).await?;
    let max_seq: u64 = service::psql_query(&db.url, "SELECT coalesce(max(seq), 0) FROM events")?
        .trim()
        .parse()?;
    let world = Arc::new(mix::World {
        apis,
        conns,
        live: live
            .iter()
            .map(|l| ((l.d, l.n), l.site_no.clone()))
            .collect::<HashMap<_, _>>(),
        dealers: cli.dealers,
        sites: cli.sites(),
        live_sites: cli.live_sites,
        max_seq,
    });
    Ok(Setup {
        sims: (sim_a, sim_b),
        db,
        pg,
        svc,
        world,
        connect_secs,
        seeded,
    })
}

/// Lookups alone, the mix, the drain, and what the database and the
/// service show after it.
async fn measure(cli: &Cli, s: &Setup) -> anyhow::Result<Vec<Bench>> {
    let pg = &s.pg;
    let pid = s.svc.pid().context("the service has no pid")?;
    let links = figures::rows(pg, "links")?;
    let size_before = figures::database_size(pg)?;
    let tables_before = figures::table_sizes(pg)?;
    let rss_idle = memory_mib(pid).map_or(f64::NAN, |(_, rss)| rss);
    let housekeeping = figures::Housekeeping::start(pg)?;
    let (idle, _) = step(
        "lookups alone",
        mix::idle_lookups(s.world.clone(), cli.lookup_workers, cli.idle_secs),
    )
    .await?;
    let sizes = mix::Sizes {
        duration: Duration::from_secs_f64(cli.duration),
        burst_after: Duration::from_secs_f64(cli.burst_after),
        reconcile_after: Duration::from_secs_f64(cli.reconcile_after),
        burst_edits: cli.burst_edits,
        lookup_workers: cli.lookup_workers,
        edit_workers: cli.edit_workers,
        callback_workers: cli.callback_workers,
        feed_workers: cli.feed_workers,
        burst_workers: cli.burst_workers,
        edit_rate: cli.edit_rate,
        callback_rate: cli.callback_rate,
    };
    let wal = figures::WalMark::now(pg)?;
    let cpu = CpuProbe::start(pid, Some(pg))?;
    let (mixed, mix_secs) = step("the mixed load", mix::run(s.world.clone(), sizes)).await?;
    let cpu = cpu.finish()?;
    let wal_bytes = wal.bytes_since(pg)?;
    let ((drain_secs, left), _) = step(
        "draining the queue",
        figures::drain(pg, Duration::from_secs_f64(cli.drain_timeout)),
    )
    .await?;
    let housekept = housekeeping.stop().await;
    let after = rows::After {
        housekept,
        size: figures::database_size(pg)?,
        tables: figures::table_sizes(pg)?,
        memory: memory_mib(pid).unwrap_or((f64::NAN, f64::NAN)),
        jobs: figures::job_counts(pg)?,
        dead_or_failed: figures::jobs_in(pg, "'dead', 'failed'")?,
        drain_secs,
        left,
    };
    let others = figures::Whose::Others;
    let fair = rows::Fairness {
        before: figures::waits(pg, others, mixed.started_at, mixed.burst_from)?,
        during: figures::waits(pg, others, mixed.burst_from, mixed.burst_to)?,
        burst_dealer: figures::waits(
            pg,
            figures::Whose::BurstDealer,
            mixed.burst_from,
            mixed.burst_to,
        )?,
    };
    Ok(rows::all(&rows::Run {
        cli,
        links,
        connect_secs: s.connect_secs,
        seeded: &s.seeded,
        size_before,
        tables_before,
        rss_idle,
        idle: &idle,
        mixed: &mixed,
        mix_secs,
        cpu,
        wal_bytes,
        after,
        fair,
    }))
}

/// The whole run: the rows of the table.
pub async fn run(cli: &Cli) -> anyhow::Result<Vec<Bench>> {
    cli.check()?;
    std::fs::create_dir_all(&cli.out)?;
    let work = std::fs::canonicalize(&cli.out)?.join("scale-work");
    service::fresh_dir(&work)?;
    let env = Env {
        bin: std::fs::canonicalize(&cli.crosslink_bin)
            .with_context(|| format!("no service binary at {}", cli.crosslink_bin.display()))?,
        work,
        postgres_url: cli.database_url.clone(),
        jwt_secret: service::random_secret(),
        encryption_key: service::random_key(),
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(64)
        .build()?;
    let s = setup(cli, &env, &http).await?;
    let rows = measure(cli, &s).await;
    let Setup { sims, db, svc, .. } = s;
    svc.stop().await?;
    sims.0.stop().await;
    sims.1.stop().await;
    if cli.keep_database {
        eprintln!(
            "bench-scale: keeping database {} (--keep-database)",
            s.pg.name
        );
        // Its drop would remove the database.
        std::mem::forget(db);
    }
    rows
}
