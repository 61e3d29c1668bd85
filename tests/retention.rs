//! Bounded growth (B15) end to end, on SQLite and PostgreSQL: with retentions
//! of two days set in the environment, history aged past them (the change
//! feed, the audit trail, the callback log, idempotency keys, ended jobs,
//! the items of an ended import) is purged in batches of the configured size
//! while requests keep being answered; younger rows and rows something still
//! reads stay; `/metrics` shows each table's rows and oldest row.

mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use support::*;

const BATCH: u64 = 7;
/// The retention of every kind in this test.
const KEEP_DAYS: i64 = 2;

fn settings() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        "EVENTS_DAYS",
        "AUDIT_DAYS",
        "CALLBACK_LOG_DAYS",
        "FINISHED_JOBS_DAYS",
        "DEAD_JOBS_DAYS",
        "IMPORT_ITEMS_DAYS",
    ]
    .iter()
    .map(|k| (format!("CROSSLINK__RETENTION__{k}"), KEEP_DAYS.to_string()))
    .collect();
    for (k, v) in [
        ("CROSSLINK__RETENTION__BATCH_SIZE", BATCH.to_string()),
        ("CROSSLINK__RETENTION__BATCH_PAUSE_MS", "20".into()),
        ("CROSSLINK__RETENTION__INTERVAL_SECS", "1".into()),
        ("CROSSLINK__IDEMPOTENCY__TTL_HOURS", "48".into()),
        // The queued and running jobs below must stay as they are.
        ("CROSSLINK__JOBS__WORKERS", "0".into()),
        // Batch log lines are read back as JSON.
        ("CROSSLINK__LOG__FORMAT", "json".into()),
    ] {
        env.push((k.to_owned(), v));
    }
    env
}

/// A stored time `hours` ago, as both backends read it in SQL.
fn ago(hours: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::hours(hours))
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

const OLD: i64 = 24 * KEEP_DAYS + 24;
/// Younger than the retention by a margin the test never comes near.
const YOUNG: i64 = 24 * KEEP_DAYS - 6;

/// One transaction, so the purger sees all of it or none.
fn insert_all(svc: &Service, statements: &[String]) {
    svc.sql(&format!("BEGIN; {}; COMMIT;", statements.join("; ")));
}

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// `old` rows of each kind aged past the retention and `young` ones within
/// it, tagged `aged` and `fresh` (ids are uuids: the lists parse them).
fn history_rows(cid: &str, old: usize, young: usize) -> Vec<String> {
    let mut rows = Vec::new();
    let aged = (0..old).map(|n| (n, OLD, "aged"));
    for (n, hours, tag) in aged.chain((0..young).map(|n| (n, YOUNG, "fresh"))) {
        let t = ago(hours);
        rows.push(format!(
            "INSERT INTO events (id, dealer, event_type, subject_kind, subject_id, data, created_at) \
             VALUES ('{}', 'keep', 'billing.customer.updated', 'customer', '{tag}', '{{}}', '{t}')",
            id()
        ));
        rows.push(format!(
            "INSERT INTO audit_log (id, dealer, at, actor, action, kind, billing_id) \
             VALUES ('{}', 'keep', '{t}', 'keep-admin', 'link.created', 'site', '{tag}')",
            id()
        ));
        rows.push(format!(
            "INSERT INTO callback_log (id, dealer, connection_id, source, outcome, received_at) \
             VALUES ('{}', 'keep', '{cid}', 'alarmnet', 'accepted', '{t}')",
            id()
        ));
        rows.push(format!(
            "INSERT INTO idempotency_keys (dealer, user_id, idem_key, fingerprint, state, created_at, updated_at) \
             VALUES ('keep', 'u', '{tag}-{n}', 'fp', 'done', '{t}', '{t}')"
        ));
        rows.push(job_row(tag, "succeeded", &t, Some(&t)));
        rows.push(job_row(tag, "dead", &t, Some(&t)));
    }
    // Unfinished jobs stay, however old.
    let t = ago(OLD);
    rows.push(job_row("needed", "queued", &t, None));
    rows.push(job_row("needed", "running", &t, None));
    rows
}

/// A job row whose `created_by` is `tag`.
fn job_row(tag: &str, state: &str, created: &str, finished: Option<&str>) -> String {
    let finished = finished.map_or("NULL".to_owned(), |f| format!("'{f}'"));
    format!(
        "INSERT INTO jobs (id, dealer, kind, payload, state, attempts, max_attempts, run_at, \
         progress_done, cancel_requested, created_by, created_at, finished_at) \
         VALUES ('{}', 'keep', 'reconcile', '{{}}', '{state}', 1, 5, '{created}', 0, false, '{tag}', '{created}', {finished})",
        id()
    )
}

fn import_rows(id: &str, ended: Option<i64>, items: usize) -> Vec<String> {
    let t = ago(OLD);
    let finished = ended.map_or("NULL".to_owned(), |h| format!("'{}'", ago(h)));
    let mut rows = vec![format!(
        "INSERT INTO imports (id, dealer, connection_id, kind, filters, options, seen, imported, \
         already_imported, filtered_out, failed, created_by, created_at, updated_at, finished_at) \
         VALUES ('{id}', 'keep', 'c', 'customers', '{{}}', '{{}}', 0, 0, 0, 0, 0, 'keep-admin', '{t}', '{t}', {finished})"
    )];
    for seq in 0..items {
        rows.push(format!(
            "INSERT INTO import_items (import_id, seq, external_id, outcome, created_at) \
             VALUES ('{id}', {seq}, 'x{seq}', 'imported', '{t}')"
        ));
    }
    rows
}

fn count(svc: &Service, from: &str) -> u64 {
    svc.sql(&format!("SELECT count(*) FROM {from}"))
        .parse()
        .unwrap()
}

/// The value of one series in the Prometheus text.
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The `rows` of every "retention batch purged" line of `history` in the log.
fn batches(svc: &Service, history: &str) -> Vec<u64> {
    svc.logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| {
            e["fields"]["message"] == "retention batch purged" && e["fields"]["history"] == history
        })
        .filter_map(|e| e["fields"]["rows"].as_u64())
        .collect()
}

async fn history_past_its_retention_is_purged_in_batches(backend: Backend) {
    let svc = Service::start_on(backend, settings()).await;
    let admin = Who::admin("keep");
    let cid = svc
        .create_connection(&admin, "Stages", "http://127.0.0.1:9", "dealer")
        .await;
    // Writes through the API leave a young event and idempotency key.
    let put = svc
        .call(
            Method::PUT,
            "/v1/billing/customers/C1",
            &admin,
            Some(json!({"kind": "person", "first_name": "Ada", "last_name": "Lovelace"})),
        )
        .await;
    assert!(put.status < 300, "{}", put.text);
    let rotate = || {
        svc.req(
            Method::POST,
            &format!("/v1/connections/{cid}/inbound-credentials:rotate"),
            &admin,
        )
        .header("idempotency-key", "rotate-1")
        .send()
    };
    let first = rotate().await.unwrap();
    assert_eq!(first.status(), 200);
    let (old, young) = (30, 3);
    let mut rows = history_rows(&cid, old, young);
    rows.extend(import_rows("ended", Some(OLD), 16));
    rows.extend(import_rows("ended-lately", Some(YOUNG), 2));
    rows.extend(import_rows("running", None, 4));
    let before = (
        count(&svc, "events"),
        count(&svc, "audit_log"),
        count(&svc, "idempotency_keys"),
    );
    insert_all(&svc, &rows);

    // Requests keep being answered while the purger works through its batches.
    let answered = std::cell::Cell::new(0);
    let purged = "the purge to finish";
    svc.eventually(purged, Duration::from_secs(60), || async {
        for path in ["/v1/events?limit=50", "/v1/jobs?limit=50", "/v1/audit"] {
            let a = svc.call(Method::GET, path, &admin, None).await;
            assert_eq!(a.status, 200, "{path}: {}", a.text);
            answered.set(answered.get() + 1);
        }
        // Each kind's young rows (ended jobs: two kinds), the recent and the running import's items.
        let left: u64 = [
            "events WHERE subject_id IN ('aged', 'fresh')",
            "audit_log WHERE billing_id IN ('aged', 'fresh')",
            "callback_log",
            "idempotency_keys WHERE user_id = 'u'",
            "jobs WHERE created_by IN ('aged', 'fresh')",
        ]
        .iter()
        .map(|from| count(&svc, from))
        .sum();
        (left == 6 * young as u64 && count(&svc, "import_items") == 2 + 4).then_some(())
    })
    .await;
    assert!(answered.get() > 0);

    // What is younger than its retention, or still needed, stays.
    let young = young as u64;
    assert_eq!(count(&svc, "events"), before.0 + young);
    assert_eq!(count(&svc, "audit_log"), before.1 + young);
    assert_eq!(count(&svc, "callback_log"), young);
    assert_eq!(count(&svc, "idempotency_keys"), before.2 + young);
    assert_eq!(
        count(&svc, "idempotency_keys WHERE idem_key LIKE 'aged-%'"),
        0
    );
    assert_eq!(count(&svc, "jobs WHERE created_by = 'needed'"), 2);
    assert_eq!(count(&svc, "jobs WHERE created_by = 'fresh'"), 2 * young);
    assert_eq!(count(&svc, "jobs WHERE created_by = 'aged'"), 0);
    assert_eq!(count(&svc, "import_items WHERE import_id = 'running'"), 4);
    assert_eq!(
        count(&svc, "import_items WHERE import_id = 'ended-lately'"),
        2
    );
    assert_eq!(count(&svc, "imports"), 3, "imports themselves stay");
    // The young key still replays its first answer.
    let again = rotate().await.unwrap();
    assert!(again.headers().contains_key("idempotent-replayed"));

    // In batches of at most the configured size, as many as it took.
    for (history, purged) in [
        ("events", old),
        ("audit", old),
        ("callback_log", old),
        ("idempotency_keys", old),
        ("finished_jobs", old),
        ("dead_jobs", old),
        ("import_items", 16),
    ] {
        let sizes = batches(&svc, history);
        assert!(sizes.iter().all(|n| *n <= BATCH), "{history}: {sizes:?}");
        assert_eq!(
            sizes.iter().sum::<u64>(),
            purged as u64,
            "{history}: {sizes:?}"
        );
        assert!(
            sizes.len() as u64 >= (purged as u64).div_ceil(BATCH),
            "{history}: {sizes:?}"
        );
    }

    // /metrics shows the counts, read in the background after the purge.
    let figures = "/metrics to show the purged counts";
    let text = svc
        .eventually(figures, STEP_LIMIT, || async {
            let text = svc.metrics().await;
            let rows = series(&text, "crosslink_table_rows{table=\"callback_log\"}");
            (rows == Some(young as f64)).then_some(text)
        })
        .await;
    let rows = |t: &str| series(&text, &format!("crosslink_table_rows{{table=\"{t}\"}}"));
    assert_eq!(rows("callback_log"), Some(young as f64), "{text}");
    assert_eq!(rows("events"), Some((before.0 + young) as f64), "{text}");
    assert_eq!(rows("import_items"), Some(6.0), "{text}");
    assert_eq!(rows("links"), Some(0.0), "{text}");
    let oldest = series(
        &text,
        "crosslink_table_oldest_age_seconds{table=\"callback_log\"}",
    )
    .unwrap_or_else(|| panic!("no oldest age: {text}"));
    let hours = oldest / 3600.0;
    assert!(
        hours > (YOUNG - 1) as f64 && hours < (YOUNG + 1) as f64,
        "{hours}"
    );
    let purged = series(
        &text,
        "crosslink_retention_purged_rows_total{history=\"events\"}",
    );
    assert_eq!(purged, Some(old as f64), "{text}");
}

on_both_backends!(history_past_its_retention_is_purged_in_batches);
