//! Wiring: builds the state from settings and the actix application from routes.

use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use domain::upstream::CallObserver;
use upstream_http::{ClientSettings, Connector};

use crate::auth::TokenVerifier;
use crate::config::Settings;
use crate::extract::{path_config, BodyLimit};
use crate::metrics::Metrics;
use crate::middleware;
use crate::routes;
use crate::state::AppState;

/// Opens the store (and migrates when configured) and builds the shared state.
pub async fn build_state(settings: Settings) -> anyhow::Result<AppState> {
    let key = crate::keys::load_or_create(&settings)?;
    let url = settings.database.url.clone();
    let options = link_store::StoreOptions {
        pool_size: settings.database.pool_size,
        ..Default::default()
    };
    let store = tokio::task::spawn_blocking(move || link_store::Store::open(&url, key, options))
        .await?
        .with_context(|| {
            format!(
                "cannot open the database at {}",
                redact_url(&settings.database.url)
            )
        })?;
    if settings.database.migrate_on_start {
        let report = store.migrate().await.context("database migration failed")?;
        if !report.applied.is_empty() {
            tracing::info!(applied = ?report.applied, "database migrated");
        }
    }
    let metrics = Metrics::new();
    let egress = settings.egress.policy()?;
    let observer: Arc<dyn CallObserver> = Arc::new(metrics.clone());
    let stages = Connector::new(ClientSettings {
        timeout: Duration::from_millis(settings.stages.timeout_ms),
        connect_timeout: Duration::from_millis(settings.stages.connect_timeout_ms),
        max_retries: settings.stages.max_retries,
        requests_per_second: settings.stages.requests_per_second,
        egress: egress.clone(),
        ..stages_client::default_settings()
    })?
    .with_observer(observer.clone());
    let adc = Connector::new(ClientSettings {
        timeout: Duration::from_millis(settings.adc.timeout_ms),
        requests_per_second: settings.adc.requests_per_second,
        egress: egress.clone(),
        ..adc_client::default_settings()
    })?
    .with_observer(observer);
    let verifier = TokenVerifier::from_settings(&settings)?;
    Ok(AppState::new(
        settings,
        store,
        Arc::new(stages_client::HttpStagesConnector(stages)),
        Arc::new(adc_client::HttpAdcConnector(adc)),
        egress,
        verifier,
        metrics,
    ))
}

/// The state the job runners work with: the same as the handlers', on a
/// pool of its own (`jobs.pool_size`) so a burst of jobs never leaves a
/// request waiting for a connection.
async fn job_state(state: &web::Data<AppState>) -> anyhow::Result<web::Data<AppState>> {
    let options = link_store::StoreOptions {
        pool_size: state.settings.jobs.pool_size(),
        ..Default::default()
    };
    let handlers = state.store.clone();
    let store = tokio::task::spawn_blocking(move || handlers.another_pool(options))
        .await?
        .context("cannot open the job runners' database pool")?;
    Ok(web::Data::new(state.with_store(store)))
}

/// A database URL for log lines: the password, if any, replaced.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => raw.to_owned(),
    }
}

/// Registers every route and the middleware around them.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // The router tries routes in the order they are registered, and each
    // pattern with a `{param}` it tries costs a regular-expression match: the
    // hot routes go ahead of such patterns wherever no pattern ahead could
    // match their paths (here, the docs and problem pages after `/v1`).
    cfg.service(routes::health::healthz)
        .service(routes::health::readyz)
        .service(routes::health::metrics)
        .service(routes::docs::openapi_json)
        .service(routes::docs::docs_index)
        .service(crate::problem_codes::problems_index)
        // Callbacks carry their own credentials (Basic or a signature), not a bearer token.
        .service(
            web::scope("/v1/webhooks")
                .configure(routes::webhooks::routes)
                .configure(routes::provider_webhooks::routes),
        )
        .service(
            web::scope("/v1")
                // Runs inner to outer: authenticate first, then the
                // dealer's rate limit, then idempotency.
                .wrap(from_fn(middleware::idempotency))
                .wrap(from_fn(middleware::rate_limit))
                .wrap(from_fn(middleware::authenticate))
                // First the lookup billing front ends make on every screen and
                // the billing edits: no other pattern matches `/links` or a
                // path under `/billing/`.
                .configure(routes::links::list_routes)
                .configure(routes::billing::routes)
                .service(routes::providers::list_providers)
                .route("/audit", web::get().to(routes::audit::list_audit))
                .configure(routes::sync::routes)
                .configure(routes::conflicts::routes)
                .configure(routes::links::routes)
                .configure(routes::wizard::routes)
                .configure(routes::events::routes)
                .configure(routes::connections::routes)
                .configure(routes::isp::routes)
                .configure(routes::stages::routes)
                .configure(routes::stages_tab::routes)
                .configure(routes::imports::routes)
                .configure(routes::batches::routes)
                .configure(routes::jobs::routes),
        )
        .service(routes::docs::docs_asset)
        .service(crate::problem_codes::problem_page);
}

/// Serves until a shutdown signal.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    for warning in settings.check().map_err(anyhow::Error::msg)? {
        tracing::warn!("{warning}");
    }
    let bind = settings.server.bind.clone();
    let json = settings.log.format.eq_ignore_ascii_case("json");
    let workers = settings.server.http_workers();
    let state = web::Data::new(build_state(settings).await?);
    let retention_state = state.clone();
    tokio::spawn(async move { crate::retention::run(retention_state).await });
    let stats_state = state.clone();
    tokio::spawn(async move { refresh_job_stats(stats_state).await });
    let planner_state = state.clone();
    tokio::spawn(async move { keep_planner_statistics(planner_state).await });
    state.verifier.watch_jwks();
    if let Some(limiter) = state.dealer_limit.clone() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                limiter.forget_idle();
            }
        });
    }
    let concurrency = state.settings.jobs.concurrency(state.store.backend());
    if concurrency > 0 {
        let jobs = job_state(&state).await?;
        // Another replica's enqueue wakes this one's runners (PostgreSQL).
        let wake = state.jobs_wake.clone();
        state.store.listen_for_jobs(move || wake.notify_one());
        let worker_id = format!("{}-{}", hostname(), std::process::id());
        tracing::info!(
            concurrency,
            pool = state.settings.jobs.pool_size(),
            "job runners starting"
        );
        tokio::spawn(async move { crate::worker::run(jobs, worker_id, concurrency).await });
    }
    let (server, addrs) = http_server(state, &bind, workers)?;
    for addr in addrs {
        tracing::info!(%addr, "crosslink listening");
        println!("{}", listening_line(addr, json));
    }
    server.await?;
    Ok(())
}

/// The HTTP server of `state`, bound to `bind` with `workers` threads (0:
/// actix's default, one a core), not yet running; and the addresses it listens on.
pub fn http_server(
    state: web::Data<AppState>,
    bind: &str,
    workers: usize,
) -> anyhow::Result<(actix_web::dev::Server, Vec<std::net::SocketAddr>)> {
    let limit = state.settings.server.max_body_bytes;
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(BodyLimit(limit))
            .app_data(web::PayloadConfig::new(limit))
            .app_data(path_config())
            .configure(configure)
            .wrap(from_fn(middleware::refuse_bad_text))
            .wrap(from_fn(middleware::http_conventions))
            .wrap(from_fn(middleware::problem_details))
            .wrap(from_fn(middleware::observe))
    })
    .bind(bind)
    .with_context(|| format!("cannot listen on {bind}"))?;
    if workers > 0 {
        server = server.workers(workers);
    }
    let addrs = server.addrs();
    Ok((server.run(), addrs))
}

/// The line on stdout that says where the service listens (scripts and the
/// test harness read the port from it): plain text, or in JSON log mode a
/// JSON event shaped like the log's, so that stdout holds nothing but JSON.
pub fn listening_line(addr: std::net::SocketAddr, json: bool) -> String {
    if !json {
        return format!("crosslink listening on http://{addr}");
    }
    serde_json::json!({
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": "INFO",
        "fields": {"message": "crosslink listening", "address": format!("http://{addr}")},
        "target": module_path!(),
    })
    .to_string()
}

/// How often the job figures of `/metrics` are read from the database.
const JOB_STATS_EVERY: Duration = Duration::from_secs(5);

/// Reads the queue's figures for `/metrics` every few seconds, so a scrape
/// never queries the database (and many scrapers cost one read).
async fn refresh_job_stats(state: web::Data<AppState>) {
    let kinds = crate::worker::registry().kinds();
    // Queued jobs when the planner's statistics of the queue were last taken.
    let mut analyzed_at = 0;
    let mut tick = tokio::time::interval(JOB_STATS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = chrono::Utc::now();
        match state.store.job_stats(now).await {
            Ok(stats) => {
                state.metrics.set_job_stats(&kinds, &stats, now);
                let queued = queued_jobs(&stats);
                if statistics_stale(analyzed_at, queued) {
                    match state.store.refresh_job_statistics().await {
                        Ok(()) => analyzed_at = queued,
                        Err(e) => {
                            tracing::warn!(error = %e, "refreshing the job queue's statistics failed")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the job figures for /metrics failed"),
        }
    }
}

/// How often the tables' change counts are looked at for stale statistics.
const STATISTICS_EVERY: Duration = Duration::from_secs(5);

/// Analyzes, every few seconds, the tables that changed by a tenth since
/// their statistics were taken (PostgreSQL; see
/// `Store::refresh_stale_statistics`), so plans kept by the store's
/// connections fit the tables as they are. Every replica looks; two
/// ANALYZEs of one table run one after the other.
async fn keep_planner_statistics(state: web::Data<AppState>) {
    if state.store.backend() != link_store::Backend::Postgres {
        return;
    }
    let mut tick = tokio::time::interval(STATISTICS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match state.store.refresh_stale_statistics().await {
            Ok(tables) if tables.is_empty() => {}
            Ok(tables) => tracing::debug!(?tables, "refreshed the planner's statistics"),
            Err(e) => tracing::warn!(error = %e, "refreshing the planner's statistics failed"),
        }
    }
}

fn queued_jobs(stats: &link_store::JobStats) -> u64 {
    stats
        .by_state
        .iter()
        .filter(|(_, state, _)| state == "queued")
        .map(|(_, _, n)| n)
        .sum()
}

/// Whether the queue changed enough since the planner last looked (by the
/// rule autovacuum uses: 50 rows and a tenth of the table, here of the
/// queued rows) to look again; once analyzed at 10,000 queued or more, when
/// it doubled or halved, as other tables (`link_store::statistics`): a plan
/// changes shape when the queue grows by a multiple. By a tenth alone, a
/// burst of Stages callbacks (2,500 queued a second) had `jobs` analyzed at
/// every look, 543 ms of PostgreSQL's time in 8 s (`pg_stat_statements`).
/// Not left to autovacuum, which may be off or late: a claim planned for an
/// empty queue walks a burst of thousands row by row.
fn statistics_stale(analyzed_at: u64, queued: u64) -> bool {
    let (fewer, more) = (analyzed_at.min(queued), analyzed_at.max(queued));
    let changed = more - fewer;
    changed > 50 + more / 10 && (analyzed_at < 10_000 || changed > fewer)
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "crosslink".to_owned())
}

#[cfg(test)]
mod tests {
    use super::statistics_stale;

    #[test]
    fn the_queue_is_analyzed_again_once_it_changed_by_a_tenth_then_by_a_multiple() {
        // A burst into an empty queue, and its draining, are both seen.
        assert!(statistics_stale(0, 5_000));
        assert!(statistics_stale(5_000, 0));
        // Small changes are not worth a look.
        assert!(!statistics_stale(0, 40));
        assert!(!statistics_stale(1_000, 1_090));
        assert!(statistics_stale(1_000, 1_200));
        // Analyzed at 10,000 or more: a multiple.
        assert!(!statistics_stale(10_000, 19_000));
        assert!(statistics_stale(10_000, 21_000));
        assert!(!statistics_stale(40_000, 21_000));
        assert!(statistics_stale(40_000, 19_000));
        assert!(
            statistics_stale(9_000, 10_500),
            "analyzed below 10,000: a tenth"
        );
    }
}
