//! Error mapping, retries and the wire details, against a scripted HTTP stub.
//!
//! The simulator covers the protocol's behaviour; this stub covers what a
//! simulator is awkward at: exact bytes, exact request counts, broken answers.

mod keys;

use keys::{device_id, site_no, xmit};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::TimeZone;
use domain::stages::*;
use domain::upstream::UpstreamTarget;
use stages_client::{HttpStagesClient, HttpStagesConnector};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use upstream_http::{ClientSettings, Connector};

/// What the stub does with one request.
enum Reply {
    /// Writes these bytes and closes.
    Raw(String),
    /// Reads the request and closes without a word.
    Drop,
    /// Reads the request and says nothing for this long.
    Hang(Duration),
}

/// A connector with these settings.
fn connector_of(settings: ClientSettings) -> HttpStagesConnector {
    HttpStagesConnector(Connector::new(settings).unwrap())
}

fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        out.push_str("content-type: application/json\r\n");
    }
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    Reply::Raw(out)
}

fn ok(body: &str) -> Reply {
    reply(200, &[], body)
}

fn error(status: u16, code: &str, message: &str) -> Reply {
    reply(
        status,
        &[],
        &serde_json::json!({"error": {"code": code, "message": message}}).to_string(),
    )
}

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Stub {
    endpoint: url::Url,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Stub {
    async fn start(replies: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint =
            url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        let seen2 = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let seen = Arc::clone(&seen2);
                let replies = Arc::clone(&replies);
                tokio::spawn(async move { serve(socket, seen, replies).await });
            }
        });
        Self { endpoint, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn target(&self) -> UpstreamTarget {
        UpstreamTarget {
            key: format!("stub-{}", self.endpoint.port().unwrap()),
            endpoint: self.endpoint.clone(),
            username: "user".into(),
            password: "secret".into(),
        }
    }

    fn client(&self, settings: ClientSettings) -> Arc<dyn StagesApi> {
        connector_of(settings).connect(self.target())
    }
}

async fn serve(
    mut socket: TcpStream,
    seen: Arc<Mutex<Vec<Seen>>>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let target = request_line.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    seen.lock().unwrap().push(Seen {
        method,
        target,
        headers,
        body,
    });
    let next = replies.lock().unwrap().pop_front();
    match next {
        Some(Reply::Raw(bytes)) => {
            let _ = socket.write_all(bytes.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
        Some(Reply::Drop) => drop(socket),
        Some(Reply::Hang(d)) => {
            tokio::time::sleep(d).await;
            drop(socket);
        }
        None => {
            if let Reply::Raw(bytes) = error(500, "stub_exhausted", "no scripted reply left") {
                let _ = socket.write_all(bytes.as_bytes()).await;
            }
        }
    }
}

/// Fast retries so that tests measure behaviour, not sleeps.
fn quick() -> ClientSettings {
    ClientSettings {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        max_retries: 2,
        retry_base_delay: Duration::from_millis(10),
        max_retry_delay: Duration::from_millis(50),
        requests_per_second: 0,
        // The stub listens on loopback, which the default policy refuses.
        egress: upstream_http::EgressPolicy::parse_allow(&["127.0.0.0/8"]).unwrap(),
        ..stages_client::default_settings()
    }
}

const SITE: &str = r#"{"site_no":"S-1","name":"Home","billing_id":"B-1"}"#;

#[tokio::test]
async fn sends_basic_auth_and_maps_401_without_retrying() {
    let stub = Stub::start(vec![error(401, "unauthorized", "bad credentials")]).await;
    let err = stub.client(quick()).ping().await.unwrap_err();
    assert_eq!(err, StagesError::Unauthorized);
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].target, "/api/v1/ping");
    // base64("user:secret")
    assert_eq!(
        seen[0].header("authorization"),
        Some("Basic dXNlcjpzZWNyZXQ=")
    );
}

#[tokio::test]
async fn forbidden_is_unauthorized_too() {
    let stub = Stub::start(vec![reply(403, &[], "")]).await;
    assert_eq!(
        stub.client(quick())
            .get_site(&site_no("S-1"))
            .await
            .unwrap_err(),
        StagesError::Unauthorized
    );
}

#[tokio::test]
async fn not_found_carries_the_message() {
    let stub = Stub::start(vec![error(404, "not_found", "no site S-9")]).await;
    let err = stub
        .client(quick())
        .get_site(&site_no("S-9"))
        .await
        .unwrap_err();
    assert_eq!(err, StagesError::NotFound("no site S-9".into()));
    assert_eq!(stub.count(), 1);
}

#[tokio::test]
async fn conflict_is_rejected_with_code_and_message() {
    let stub = Stub::start(vec![error(
        409,
        "duplicate_transmitter_code",
        "transmitter code 1234 is in use",
    )])
    .await;
    let err = stub
        .client(quick())
        .create_site(&NewStagesSite::default())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StagesError::Rejected {
            code: "duplicate_transmitter_code".into(),
            message: "transmitter code 1234 is in use".into()
        }
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn rejection_without_an_error_body_still_maps() {
    let stub = Stub::start(vec![reply(422, &[], "bad field"), reply(400, &[], "")]).await;
    let client = stub.client(quick());
    assert_eq!(
        client.get_site(&site_no("S-1")).await.unwrap_err(),
        StagesError::Rejected {
            code: "http_422".into(),
            message: "bad field".into()
        }
    );
    assert_eq!(
        client.get_site(&site_no("S-1")).await.unwrap_err(),
        StagesError::Rejected {
            code: "http_400".into(),
            message: "Bad Request".into()
        }
    );
}

#[tokio::test]
async fn retry_after_is_honoured_on_reads() {
    let stub = Stub::start(vec![
        reply(
            429,
            &[("retry-after", "1")],
            r#"{"error":{"code":"rate_limited","message":"slow down"}}"#,
        ),
        ok(SITE),
    ])
    .await;
    let client = stub.client(ClientSettings {
        max_retry_delay: Duration::from_secs(2),
        ..quick()
    });
    let started = Instant::now();
    let site = client.get_site(&site_no("S-1")).await.unwrap();
    assert_eq!(site.site_no, "S-1");
    assert_eq!(site.billing_id.as_deref(), Some("B-1"));
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stub.count(), 2);
}

#[tokio::test]
async fn retry_after_beyond_the_cap_is_handed_back() {
    let stub = Stub::start(vec![reply(429, &[("retry-after", "60")], ""), ok(SITE)]).await;
    let started = Instant::now();
    let err = stub
        .client(quick())
        .get_site(&site_no("S-1"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StagesError::RateLimited {
            retry_after_secs: Some(60)
        }
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(stub.count(), 1);
}

#[tokio::test]
async fn rate_limited_post_is_not_retried() {
    let stub = Stub::start(vec![reply(429, &[("retry-after", "0")], ""), ok("{}")]).await;
    let err = stub
        .client(quick())
        .create_note(
            &site_no("S-1"),
            &NewStagesNote {
                text: "hi".into(),
                effective_at: None,
                expire_at: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StagesError::RateLimited {
            retry_after_secs: Some(0)
        }
    );
    assert_eq!(stub.count(), 1);
}

#[tokio::test]
async fn server_error_on_a_read_is_retried() {
    let stub = Stub::start(vec![error(503, "unavailable", "maintenance"), ok(SITE)]).await;
    let site = stub
        .client(quick())
        .get_site(&site_no("S-1"))
        .await
        .unwrap();
    assert_eq!(site.name, "Home");
    assert_eq!(stub.count(), 2);
}

#[tokio::test]
async fn server_error_on_a_create_is_not_retried() {
    let stub = Stub::start(vec![error(503, "unavailable", "maintenance"), ok("{}")]).await;
    let err = stub
        .client(quick())
        .create_site(&NewStagesSite::default())
        .await
        .unwrap_err();
    assert_eq!(err, StagesError::BadAnswer("HTTP 503: maintenance".into()));
    assert!(err.is_transient());
    assert_eq!(stub.count(), 1);
}

#[tokio::test]
async fn retries_are_bounded() {
    let stub = Stub::start(vec![
        error(500, "boom", "one"),
        error(502, "boom", "two"),
        error(503, "boom", "three"),
        ok(SITE),
    ])
    .await;
    let err = stub
        .client(quick())
        .get_site(&site_no("S-1"))
        .await
        .unwrap_err();
    assert_eq!(err, StagesError::BadAnswer("HTTP 503: three".into()));
    assert_eq!(stub.count(), 3);

    let stub = Stub::start(vec![error(500, "boom", "one"), ok(SITE)]).await;
    let no_retries = ClientSettings {
        max_retries: 0,
        ..quick()
    };
    let err = stub
        .client(no_retries)
        .get_site(&site_no("S-1"))
        .await
        .unwrap_err();
    assert_eq!(err, StagesError::BadAnswer("HTTP 500: one".into()));
    assert_eq!(stub.count(), 1);
}

#[tokio::test]
async fn patch_is_retried_with_the_same_body() {
    let stub = Stub::start(vec![error(503, "unavailable", "later"), ok(SITE)]).await;
    let patch = StagesSitePatch {
        billing_id: Some(String::new()),
        ..Default::default()
    };
    stub.client(quick())
        .update_site(&site_no("S-1"), &patch)
        .await
        .unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(request.method, "PATCH");
        assert_eq!(request.target, "/api/v1/sites/S-1");
        assert_eq!(request.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body, serde_json::json!({"billing_id": ""}));
    }
}

#[tokio::test]
async fn malformed_success_body_is_a_bad_answer_and_not_retried() {
    let stub = Stub::start(vec![ok(r#"{"site_no": 12"#), ok(SITE)]).await;
    let err = stub
        .client(quick())
        .get_site(&site_no("S-1"))
        .await
        .unwrap_err();
    match err {
        StagesError::BadAnswer(m) => assert!(m.starts_with("malformed"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(stub.count(), 1);

    // Valid JSON of the wrong shape is just as malformed.
    let stub = Stub::start(vec![ok(r#"{"things":[]}"#)]).await;
    let err = stub
        .client(quick())
        .list_devices(&site_no("S-1"))
        .await
        .unwrap_err();
    assert!(matches!(err, StagesError::BadAnswer(m) if m.starts_with("malformed")));
}

#[tokio::test]
async fn dropped_connection_is_unreachable() {
    let stub = Stub::start(vec![Reply::Drop]).await;
    let no_retries = ClientSettings {
        max_retries: 0,
        ..quick()
    };
    let err = stub.client(no_retries).ping().await.unwrap_err();
    assert!(matches!(err, StagesError::Unreachable(_)), "{err:?}");
}

#[tokio::test]
async fn dropped_connection_is_retried_for_reads_only() {
    let stub = Stub::start(vec![Reply::Drop, ok(r#"{"items":[]}"#)]).await;
    let devices = stub
        .client(quick())
        .list_devices(&site_no("S-1"))
        .await
        .unwrap();
    assert!(devices.is_empty());
    assert_eq!(stub.count(), 2);

    let stub = Stub::start(vec![Reply::Drop, ok("{}")]).await;
    let err = stub
        .client(quick())
        .change_transmitter_code(&device_id("D-1"), &xmit("5555"))
        .await
        .unwrap_err();
    assert!(matches!(err, StagesError::Unreachable(_)), "{err:?}");
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/api/v1/devices/D-1/change-xmit");
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body, serde_json::json!({"new_transmitter_code": "5555"}));
}

#[tokio::test]
async fn slow_answer_is_a_timeout() {
    let stub = Stub::start(vec![Reply::Hang(Duration::from_secs(5))]).await;
    let settings = ClientSettings {
        timeout: Duration::from_millis(300),
        max_retries: 0,
        ..quick()
    };
    let started = Instant::now();
    let err = stub.client(settings).ping().await.unwrap_err();
    assert_eq!(err, StagesError::Timeout);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn timeout_on_a_read_is_retried() {
    let stub = Stub::start(vec![Reply::Hang(Duration::from_secs(5)), ok(SITE)]).await;
    let settings = ClientSettings {
        timeout: Duration::from_millis(300),
        ..quick()
    };
    stub.client(settings)
        .get_site(&site_no("S-1"))
        .await
        .unwrap();
    assert_eq!(stub.count(), 2);
}

#[tokio::test]
async fn refused_connection_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    drop(listener);
    let client = connector_of(quick()).connect(UpstreamTarget {
        key: "gone".into(),
        endpoint,
        username: "user".into(),
        password: "secret".into(),
    });
    let err = client.ping().await.unwrap_err();
    match &err {
        StagesError::Unreachable(detail) => {
            assert!(detail.starts_with("GET /api/v1/ping"), "{detail}");
            assert!(!detail.contains("secret"));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.is_transient());
}

#[tokio::test]
async fn path_segments_are_percent_encoded() {
    let stub = Stub::start(vec![ok(SITE), ok(r#"{"items":[]}"#)]).await;
    let client = stub.client(quick());
    client.get_site(&site_no("A/1 ?#%")).await.unwrap();
    client.list_tests(&device_id("../x")).await.unwrap();
    let seen = stub.seen();
    assert_eq!(seen[0].target, "/api/v1/sites/A%2F1%20%3F%23%25");
    assert_eq!(seen[1].target, "/api/v1/devices/..%2Fx/tests");
}

#[tokio::test]
async fn ids_no_url_can_carry_are_not_found_without_a_call() {
    let stub = Stub::start(vec![]).await;
    let client = stub.client(quick());
    // A Stages key cannot be one (`SiteNo::parse` refuses them); the ids of
    // tests, contacts and zones are text.
    for id in ["", ".", ".."] {
        let err = client.end_test(&device_id("D-1"), id).await.unwrap_err();
        assert!(matches!(err, StagesError::NotFound(_)), "{err:?}");
    }
    assert_eq!(stub.count(), 0);
}

#[tokio::test]
async fn site_query_and_history_range_go_in_the_query_string() {
    let stub = Stub::start(vec![
        ok(r#"{"items":[{"site_no":"S-1","name":"Home"}],"next_page_token":"p2"}"#),
        ok(r#"{"items":[]}"#),
        ok(r#"{"items":[]}"#),
    ])
    .await;
    let client = stub.client(quick());
    let page = client
        .list_sites(&StagesSiteQuery {
            billing_id: Some("B 1&2".into()),
            unlinked: true,
            q: Some("Main St".into()),
            page_token: Some("t=1".into()),
            page_size: Some(50),
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].billing_id, None);
    assert_eq!(page.next_page_token.as_deref(), Some("p2"));
    let page = client
        .list_sites(&StagesSiteQuery::default())
        .await
        .unwrap();
    assert_eq!(page.next_page_token, None);

    let from = chrono::Utc.with_ymd_and_hms(2024, 3, 1, 5, 0, 0).unwrap();
    let to = chrono::Utc.with_ymd_and_hms(2024, 3, 2, 5, 0, 0).unwrap();
    client
        .device_history(&device_id("D-1"), Some(from), Some(to))
        .await
        .unwrap();

    let seen = stub.seen();
    assert_eq!(
        seen[0].target,
        "/api/v1/sites?billing_id=B+1%262&unlinked=true&q=Main+St&page_token=t%3D1&page_size=50"
    );
    assert_eq!(seen[1].target, "/api/v1/sites");
    assert_eq!(
        seen[2].target,
        "/api/v1/devices/D-1/history?from=2024-03-01T05%3A00%3A00Z&to=2024-03-02T05%3A00%3A00Z"
    );
}

#[tokio::test]
async fn device_query_goes_in_the_query_string() {
    let stub = Stub::start(vec![
        ok(r#"{"items":[{"device_id":"D-7","site_no":"10001","transmitter_code":"4100001"}],"next_page_token":"n2"}"#),
        ok(r#"{"items":[],"next_page_token":null}"#),
    ])
    .await;
    let client = stub.client(quick());
    let page = client
        .list_all_devices(&StagesDeviceQuery {
            billing_id: Some("SYS 1&2".into()),
            site_no: Some(site_no("10001")),
            has_billing_id: Some(false),
            page_token: Some("t=1".into()),
            page_size: Some(500),
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].device_id, "D-7");
    assert_eq!(page.next_page_token.as_deref(), Some("n2"));
    let page = client
        .list_all_devices(&StagesDeviceQuery::default())
        .await
        .unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.next_page_token, None);

    let seen = stub.seen();
    assert_eq!(seen[0].method, "GET");
    assert_eq!(
        seen[0].target,
        "/api/v1/devices?billing_id=SYS+1%262&site_no=10001&has_billing_id=false&page_token=t%3D1&page_size=500"
    );
    assert_eq!(seen[1].target, "/api/v1/devices");
}

#[tokio::test]
async fn delete_accepts_204() {
    let stub = Stub::start(vec![reply(204, &[], "")]).await;
    stub.client(quick())
        .end_test(&device_id("D-1"), "T-1")
        .await
        .unwrap();
    let seen = stub.seen();
    assert_eq!(seen[0].method, "DELETE");
    assert_eq!(seen[0].target, "/api/v1/devices/D-1/tests/T-1");
}

#[tokio::test]
async fn delete_that_may_have_happened_then_404_is_done() {
    let stub = Stub::start(vec![
        error(502, "gateway", "lost"),
        error(404, "not_found", "no test"),
    ])
    .await;
    stub.client(quick())
        .end_test(&device_id("D-1"), "T-1")
        .await
        .unwrap();
    assert_eq!(stub.count(), 2);

    // A first-attempt 404 is a plain NotFound.
    let stub = Stub::start(vec![error(404, "not_found", "no contact")]).await;
    let err = stub
        .client(quick())
        .delete_contact(&site_no("S-1"), "C-1")
        .await
        .unwrap_err();
    assert_eq!(err, StagesError::NotFound("no contact".into()));
    assert_eq!(stub.seen()[0].target, "/api/v1/sites/S-1/contacts/C-1");
}

#[tokio::test]
async fn created_answers_decode() {
    let created = r#"{
        "site": {"site_no":"S-7","name":"Shop"},
        "devices": [{"device_id":"D-1","site_no":"S-7","transmitter_code":"1234","status":"normal"}],
        "contacts": []
    }"#;
    let stub = Stub::start(vec![reply(201, &[], created)]).await;
    let new = NewStagesSite {
        fields: StagesSiteFields {
            name: "Shop".into(),
            ..Default::default()
        },
        devices: vec![NewStagesDevice {
            fields: StagesDeviceFields {
                transmitter_code: "1234".into(),
                ..Default::default()
            },
            configurations: vec![],
        }],
        contacts: vec![],
    };
    let out = stub.client(quick()).create_site(&new).await.unwrap();
    assert_eq!(out.site.site_no, "S-7");
    assert_eq!(out.devices[0].fields.transmitter_code, "1234");
    let seen = stub.seen();
    assert_eq!(seen[0].method, "POST");
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body["name"], "Shop");
    assert_eq!(body["devices"][0]["transmitter_code"], "1234");
}

#[tokio::test]
async fn one_rate_limit_per_connection_key() {
    let replies = (0..10).map(|_| ok("{}")).collect();
    let stub = Stub::start(replies).await;
    let connector = connector_of(ClientSettings {
        requests_per_second: 5,
        ..quick()
    });
    // Two clients of one connection share its budget: a burst of 5, then 5 a second.
    let a = connector.connect(stub.target());
    let b = connector.connect(stub.target());
    let started = Instant::now();
    for i in 0..10 {
        let client = if i % 2 == 0 { &a } else { &b };
        client.ping().await.unwrap();
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[tokio::test]
async fn debug_output_leaves_the_password_out() {
    let stub = Stub::start(vec![]).await;
    let connector = connector_of(quick());
    let client = HttpStagesClient::new(&connector.0, stub.target());
    let text = format!("{client:?} {connector:?}");
    assert!(text.contains("user"));
    assert!(!text.contains("secret"));
}

#[tokio::test]
async fn the_default_egress_policy_refuses_loopback_before_anything_is_sent() {
    let stub = Stub::start(vec![ok("{}")]).await;
    let port = stub.endpoint.port().unwrap();
    let strict = ClientSettings {
        egress: upstream_http::EgressPolicy::default(),
        ..quick()
    };
    let connector = connector_of(strict);
    // An address in the URL, a name resolving to loopback, loopback inside IPv6.
    for endpoint in [
        stub.endpoint.to_string(),
        format!("http://localhost:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
    ] {
        let client = connector.connect(UpstreamTarget {
            endpoint: url::Url::parse(&endpoint).unwrap(),
            ..stub.target()
        });
        let err = client.ping().await.unwrap_err();
        assert!(
            matches!(&err, StagesError::EgressRefused(m) if m.contains("loopback")),
            "{endpoint}: {err:?}"
        );
        assert!(!err.is_transient(), "retrying cannot help");
    }
    assert_eq!(stub.count(), 0, "nothing reached the stub");
    // The operator's allow-list lets the range through.
    stub.client(quick()).ping().await.unwrap();
    assert_eq!(stub.count(), 1);
}
