//! End to end, the queue shared between dealers (B15): dealer A has 5,000
//! Auto Sync pushes queued against a slow Stages, then dealer B makes one
//! edit. B's push is claimed while A's backlog is still there (the claim
//! shares its slots out by dealer), not after it, and A's pushes all run.
//! Ordering, not timing, is what is asserted: the figure of how long B waits
//! comes from `make bench-scale`. On one service (both backends) and on
//! three replicas sharing one PostgreSQL.

mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use support::*;

const BACKLOG: usize = 5_000;

/// A dealer with a Stages connection to `sim` and one pushed site with a
/// device, linked; answers its admin, the connection, the billing site and
/// the site link.
async fn dealer_with_a_linked_site(
    svc: &Service,
    sim: &stages_sim::Sim,
    dealer: &str,
    code: &str,
) -> (Who, String, String, String) {
    let admin = Who::admin(dealer);
    let cid = svc.stages_connection(&admin, sim).await;
    let made = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}/wizard:push"),
            &admin,
            Some(json!({
                "customer": {"new_customer": {"last_name": format!("Dealer {dealer}")}},
                "site": {"name": format!("{dealer} site")},
                "systems": [{"device": {"transmitter_code": code}}]})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let link = made.body["site_link_id"].as_str().unwrap().to_owned();
    let site = made.body["site_id"].as_str().unwrap().to_owned();
    (admin, cid, site, link)
}

/// `n` queued Auto Sync pushes of `dealer`'s link, due ten minutes ago, as
/// a burst of edits on many records would leave them (no coalescing key,
/// no serial key: they may all run at once). Ids in the service's own text
/// form (a hyphenated UUID), or their ends would not be recorded.
fn queue_backlog(svc: &Service, backend: Backend, dealer: &str, link: &str, n: usize) {
    let sql = match backend {
        Backend::Postgres => format!(
            "INSERT INTO jobs (id, dealer, kind, payload, state, attempts, max_attempts, run_at, \
             progress_done, cancel_requested, created_by, created_at) \
             SELECT gen_random_uuid()::text, '{dealer}', 'auto_sync_push', \
             '{{\"link_id\":\"{link}\"}}', 'queued', 0, 8, \
             now() AT TIME ZONE 'UTC' - interval '10 minutes', 0, false, 'test', \
             now() AT TIME ZONE 'UTC' FROM generate_series(1, {n})"
        ),
        Backend::Sqlite => format!(
            "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < {n}) \
             INSERT INTO jobs (id, dealer, kind, payload, state, attempts, max_attempts, run_at, \
             progress_done, cancel_requested, created_by, created_at) \
             SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-' || \
             hex(randomblob(2)) || '-' || hex(randomblob(2)) || '-' || hex(randomblob(6))), \
             '{dealer}', 'auto_sync_push', \
             '{{\"link_id\":\"{link}\"}}', 'queued', 0, 8, \
             strftime('%Y-%m-%d %H:%M:%f', 'now', '-10 minutes'), 0, 0, 'test', \
             strftime('%Y-%m-%d %H:%M:%f', 'now') FROM k"
        ),
    };
    svc.sql(&sql);
}

fn queued_of(svc: &Service, dealer: &str) -> usize {
    svc.sql(&format!(
        "SELECT count(*) FROM jobs WHERE dealer = '{dealer}' AND state = 'queued'"
    ))
    .parse()
    .unwrap()
}

/// The scenario on one service or on replicas sharing one database: set
/// up through the first, B's edit through the second, watched from the last.
async fn backlog_scenario(backend: Backend, replicas: &[Service]) {
    let slow = start_sim(0).await;
    let quick = start_sim(0).await;
    let svc = &replicas[0];
    let (editor, watcher) = (&replicas[1 % replicas.len()], &replicas[replicas.len() - 1]);
    let (a, a_cid, _, a_link) = dealer_with_a_linked_site(svc, &slow, "dealer-a", "9100001").await;
    let (b, _, b_site, _) = dealer_with_a_linked_site(svc, &quick, "dealer-b", "9100002").await;
    // A's Stages answers slowly: its pushes hold their slots a while.
    slow.state()
        .add_fault(stages_sim::FaultRule::parse("* /api/v1/*=latency:100").unwrap())
        .unwrap();
    queue_backlog(svc, backend, "dealer-a", &a_link, BACKLOG);

    let edit = editor
        .call(
            Method::PUT,
            &format!("/v1/billing/sites/{b_site}"),
            &b,
            Some(json!({"name": "dealer-b site, renamed"})),
        )
        .await;
    assert_eq!(edit.status, 200, "{}", edit.text);
    watcher
        .eventually("B's push to run", Duration::from_secs(30), || async {
            let jobs = watcher
                .call(Method::GET, "/v1/jobs?kind=auto_sync_push", &b, None)
                .await;
            jobs.body["items"]
                .as_array()
                .and_then(|items| items.iter().find(|j| j["state"] == "succeeded").cloned())
        })
        .await;
    let left = queued_of(svc, "dealer-a");
    // Claimed oldest first, B's push would have waited for all of A's.
    assert!(
        left > BACKLOG / 2,
        "B's push ran only once A's backlog was down to {left} of {BACKLOG}"
    );
    let site = quick.state().sites()[0].clone();
    assert_eq!(
        serde_json::to_value(site).unwrap()["name"],
        "dealer-b site, renamed"
    );

    // A's all run, none lost: with Auto Sync off they end without calling
    // Stages (whose rate limit would take minutes over 5,000).
    let off = svc
        .call(
            Method::PATCH,
            &format!("/v1/connections/{a_cid}"),
            &a,
            Some(json!({"auto_sync": false})),
        )
        .await;
    assert_eq!(off.status, 200, "{}", off.text);
    svc.eventually("A's backlog to drain", Duration::from_secs(120), || async {
        (queued_of(svc, "dealer-a") == 0).then_some(())
    })
    .await;
    assert_eq!(queued_of(svc, "dealer-a"), 0, "A's backlog drains");
}

async fn one_dealers_backlog_does_not_hold_up_anothers_push(backend: Backend) {
    let svc = Service::start_on(backend, Vec::new()).await;
    backlog_scenario(backend, std::slice::from_ref(&svc)).await;
}

on_both_backends!(one_dealers_backlog_does_not_hold_up_anothers_push);

/// Three replicas on one PostgreSQL: the cap and the shares count every
/// replica's running jobs, so B is not held up on any of them.
#[tokio::test]
async fn on_three_replicas_one_dealers_backlog_does_not_hold_up_anothers_push() {
    let schema = PgSchema::new();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(
            Service::start_with(ServiceOptions {
                database_url: Some(schema.url()),
                env: Vec::new(),
            })
            .await,
        );
    }
    backlog_scenario(Backend::Postgres, &replicas).await;
}
