//! Retries, error mapping and the wire details, against a scripted HTTP stub.
//!
//! The simulator covers ADC's behaviour; this stub covers what a simulator is
//! awkward at: exact requests, exact attempt counts, broken answers, hangs.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adc_client::{HttpAdcClient, HttpAdcConnector};
use domain::adc::*;
use domain::upstream::UpstreamTarget;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use upstream_http::{ClientSettings, Connector};

/// What the stub does with one request.
enum Reply {
    /// Writes these bytes and closes.
    Raw(String),
    /// Reads the request and says nothing for this long.
    Hang(Duration),
}

/// A connector with these settings.
fn connector_of(settings: ClientSettings) -> HttpAdcConnector {
    HttpAdcConnector(Connector::new(settings).unwrap())
}

fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nconnection: close\r\ncontent-length: {}\r\ncontent-type: text/xml; charset=utf-8\r\n",
        body.len()
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    Reply::Raw(out)
}

fn envelope(inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"><soap:Body>{inner}</soap:Body></soap:Envelope>"#
    )
}

/// `<{op}Response><{op}Result>{result}</{op}Result></{op}Response>`
fn ok(op: &str, result: &str) -> Reply {
    reply(
        200,
        &[],
        &envelope(&format!(
            r#"<{op}Response xmlns="http://www.alarm.com/WebServices"><{op}Result>{result}</{op}Result></{op}Response>"#
        )),
    )
}

fn fault(message: &str) -> Reply {
    reply(
        500,
        &[],
        &envelope(&format!(
            "<soap:Fault><faultcode>soap:Client</faultcode><faultstring>{message}</faultstring><detail /></soap:Fault>"
        )),
    )
}

fn plain_500() -> Reply {
    reply(500, &[], "<html><body>Internal Server Error</body></html>")
}

const REPS: &str = "<Rep><SupportId>7</SupportId><RepLoginName>jdoe</RepLoginName><FirstName>Jane</FirstName><LastName>Doe</LastName></Rep>";

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

    fn target(&self, password: &str) -> UpstreamTarget {
        UpstreamTarget {
            key: format!("stub-{}", self.endpoint.port().unwrap()),
            endpoint: self.endpoint.clone(),
            username: "dealer".into(),
            password: password.into(),
        }
    }

    fn client(&self, settings: ClientSettings) -> Arc<dyn AdcApi> {
        connector_of(settings).connect(self.target("secret"))
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
    match next.unwrap_or_else(|| fault("stub: no scripted reply left")) {
        Reply::Raw(bytes) => {
            let _ = socket.write_all(bytes.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
        Reply::Hang(d) => {
            tokio::time::sleep(d).await;
            drop(socket);
        }
    }
}

/// Fast retries, no rate limit, so that tests measure behaviour, not sleeps.
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
        ..adc_client::default_settings()
    }
}

fn new_customer() -> NewAdcCustomer {
    NewAdcCustomer {
        desired_login_name: "jsmith".into(),
        ..NewAdcCustomer::default()
    }
}

#[tokio::test]
async fn sends_a_soap_1_1_request_with_the_credentials_escaped() {
    let stub = Stub::start(vec![ok("GetRepList", REPS)]).await;
    let password = r#"p<w>&"d'"#;
    let client = connector_of(quick()).connect(stub.target(password));
    let reps = client.reps().await.unwrap();
    assert_eq!(reps.len(), 1);
    assert_eq!(reps[0].login_name, "jdoe");
    assert_eq!(reps[0].support_id, Some(7));

    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.target, "/WebServices/DealerManagement.asmx");
    assert_eq!(
        request.header("content-type"),
        Some("text/xml; charset=utf-8")
    );
    assert_eq!(
        request.header("soapaction"),
        Some("\"http://www.alarm.com/WebServices/GetRepList\"")
    );
    assert!(request.body.contains(
        "<Authentication xmlns=\"http://www.alarm.com/WebServices\"><User>dealer</User><Password>p&lt;w&gt;&amp;&quot;d&apos;</Password><TwoFactorDeviceId/></Authentication>"
    ));
    assert!(request
        .body
        .contains("<GetRepList xmlns=\"http://www.alarm.com/WebServices\"></GetRepList>"));
}

#[tokio::test]
async fn a_read_is_retried_after_a_plain_500() {
    let stub = Stub::start(vec![plain_500(), ok("GetRepList", REPS)]).await;
    let reps = stub.client(quick()).reps().await.unwrap();
    assert_eq!(reps.len(), 1);
    assert_eq!(stub.count(), 2);
}

#[tokio::test]
async fn a_read_gives_up_after_its_retries() {
    let stub = Stub::start(vec![plain_500(), plain_500(), plain_500(), plain_500()]).await;
    let err = stub.client(quick()).reps().await.unwrap_err();
    assert!(matches!(err, AdcError::BadAnswer(ref m) if m.starts_with("HTTP 500")));
    assert!(err.is_transient());
    assert_eq!(stub.count(), 3, "one attempt and max_retries = 2 retries");
}

#[tokio::test]
async fn a_create_is_not_retried_after_a_plain_500() {
    let stub = Stub::start(vec![plain_500(), ok("CreateCustomer", "")]).await;
    let err = stub
        .client(quick())
        .create_customer(&new_customer())
        .await
        .unwrap_err();
    assert!(matches!(err, AdcError::BadAnswer(_)), "{err:?}");
    assert_eq!(stub.count(), 1);
}

#[tokio::test]
async fn no_change_is_retried() {
    let client_calls: Vec<(&str, Reply)> = vec![
        ("terminate", plain_500()),
        ("plan", plain_500()),
        ("commitment", plain_500()),
        ("central station", plain_500()),
    ];
    for (what, first) in client_calls {
        let stub = Stub::start(vec![first]).await;
        let client = stub.client(quick());
        let id = AdcCustomerId(10);
        let result = match what {
            "terminate" => client.terminate_customer(id).await,
            "plan" => client.change_service_plan(id, AdcPackageId(3), None).await,
            "commitment" => client
                .create_commitment(&NewAdcCommitment {
                    builder_program_id: 1,
                    customer: new_customer(),
                })
                .await
                .map(drop),
            _ => {
                client
                    .update_central_station_info(id, &AdcCentralStationInfo::default())
                    .await
            }
        };
        assert!(result.is_err(), "{what}");
        assert_eq!(stub.count(), 1, "{what} was retried");
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let settings = ClientSettings {
        max_retry_delay: Duration::from_secs(2),
        ..quick()
    };
    let stub = Stub::start(vec![
        reply(503, &[("retry-after", "1")], ""),
        ok("GetRepList", REPS),
    ])
    .await;
    let started = Instant::now();
    let reps = stub.client(settings).reps().await.unwrap();
    assert_eq!(reps.len(), 1);
    assert_eq!(stub.count(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited only {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_retry_after_longer_than_we_wait_ends_the_call() {
    let stub = Stub::start(vec![reply(429, &[("retry-after", "60")], "")]).await;
    let started = Instant::now();
    let err = stub.client(quick()).reps().await.unwrap_err();
    assert_eq!(
        err,
        AdcError::RateLimited {
            retry_after_secs: Some(60)
        }
    );
    assert_eq!(stub.count(), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn malformed_xml_is_a_bad_answer() {
    let stub = Stub::start(vec![reply(
        200,
        &[],
        "<soap:Envelope><soap:Body><GetRepListResponse><GetRepListResult><Rep>",
    )])
    .await;
    let err = stub.client(quick()).reps().await.unwrap_err();
    assert!(
        matches!(err, AdcError::BadAnswer(ref m) if m.contains("malformed XML")),
        "{err:?}"
    );
    assert_eq!(stub.count(), 1);
}

#[tokio::test]
async fn a_read_that_hangs_times_out_and_is_retried() {
    let settings = ClientSettings {
        timeout: Duration::from_millis(200),
        max_retries: 1,
        ..quick()
    };
    let stub = Stub::start(vec![
        Reply::Hang(Duration::from_secs(3)),
        Reply::Hang(Duration::from_secs(3)),
    ])
    .await;
    let started = Instant::now();
    let err = stub.client(settings).reps().await.unwrap_err();
    assert_eq!(err, AdcError::Timeout);
    assert_eq!(stub.count(), 2);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_create_that_hangs_times_out_once() {
    let settings = ClientSettings {
        timeout: Duration::from_millis(200),
        ..quick()
    };
    let stub = Stub::start(vec![Reply::Hang(Duration::from_secs(3))]).await;
    let err = stub
        .client(settings)
        .create_customer(&new_customer())
        .await
        .unwrap_err();
    assert_eq!(err, AdcError::Timeout);
    assert!(err.is_transient());
    assert_eq!(stub.count(), 1);
}

#[tokio::test]
async fn faults_are_mapped_and_not_retried() {
    let stub = Stub::start(vec![
        fault("Server was unable to process request. ---&gt; Authentication failed."),
        fault("Customer not found"),
        fault("Invalid value for PanelType"),
    ])
    .await;
    let client = stub.client(quick());
    assert_eq!(client.reps().await.unwrap_err(), AdcError::Unauthorized);
    assert_eq!(stub.count(), 1);
    assert_eq!(
        client
            .terminate_customer(AdcCustomerId(9))
            .await
            .unwrap_err(),
        AdcError::NotFound("Customer not found".into())
    );
    assert_eq!(
        client.create_customer(&new_customer()).await.unwrap_err(),
        AdcError::Fault {
            message: "Invalid value for PanelType".into()
        }
    );
    assert_eq!(stub.count(), 3);
}

#[tokio::test]
async fn success_false_is_a_rejection() {
    let stub = Stub::start(vec![
        ok(
            "CreateCustomer",
            "<Success>false</Success><ErrorMessage>Login name already in use</ErrorMessage><CustomerId>0</CustomerId>",
        ),
        ok(
            "CreateCustomer",
            "<Success>true</Success><ErrorMessage /><CustomerId>10000042</CustomerId>",
        ),
    ])
    .await;
    let client = stub.client(quick());
    assert_eq!(
        client.create_customer(&new_customer()).await.unwrap_err(),
        AdcError::Rejected {
            message: "Login name already in use".into()
        }
    );
    assert_eq!(
        client.create_customer(&new_customer()).await.unwrap(),
        AdcCustomerId(10000042)
    );
    let body = &stub.seen()[0].body;
    assert!(body.contains("<CreateCustomer xmlns=\"http://www.alarm.com/WebServices\">"));
    assert!(body.contains("<DesiredLoginName>jsmith</DesiredLoginName>"));
    assert_eq!(
        stub.seen()[0].header("soapaction"),
        Some("\"http://www.alarm.com/WebServices/CreateCustomer\"")
    );
    assert_eq!(
        stub.seen()[0].target,
        "/WebServices/CustomerManagement.asmx"
    );
}

#[tokio::test]
async fn terminate_sends_a_bare_customer_id() {
    // Unlike the `_V2` calls, public scripts send TerminateCustomer's
    // parameter without an `input` wrapper.
    let stub = Stub::start(vec![ok("TerminateCustomer", "true")]).await;
    stub.client(quick())
        .terminate_customer(AdcCustomerId(10000007))
        .await
        .unwrap();
    let body = &stub.seen()[0].body;
    assert!(
        body.contains("<TerminateCustomer xmlns=\"http://www.alarm.com/WebServices\"><CustomerId>10000007</CustomerId></TerminateCustomer>"),
        "{body}"
    );
}

#[tokio::test]
async fn the_caller_version_is_fetched_once_per_client() {
    let info = "<CustomerId>10000001</CustomerId><IsTerminated>false</IsTerminated><InstallAddress><Street1>1 Main St</Street1><City>Springfield</City></InstallAddress><ModemInfo><PanelType>IQPanel2</PanelType></ModemInfo><JoinDate>2021-03-04T05:06:07</JoinDate>";
    let stub = Stub::start(vec![
        ok("GetLatestCallerVersion", "3"),
        ok("GetCustomerInfo_V2", info),
        ok("GetCustomerInfo_V2", info),
    ])
    .await;
    let client = stub.client(quick());
    let first = client.customer(AdcCustomerId(10000001)).await.unwrap();
    client.customer(AdcCustomerId(10000001)).await.unwrap();
    assert_eq!(first.customer_id, AdcCustomerId(10000001));
    assert_eq!(first.install_address.street1, "1 Main St");
    assert_eq!(first.install_address.city, "Springfield");
    assert_eq!(first.panel_type, "IQPanel2");
    assert_eq!(
        first.join_date.unwrap().to_rfc3339(),
        "2021-03-04T05:06:07+00:00"
    );
    let seen = stub.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen[0].body.contains("<GetLatestCallerVersion"));
    for request in &seen[1..] {
        assert!(
            request.body.contains("<CallerVersion>3</CallerVersion>"),
            "{}",
            request.body
        );
        assert!(request.body.contains("<CustomerId>10000001</CustomerId>"));
    }
}

#[tokio::test]
async fn an_unreachable_host_is_reported() {
    // Bind and drop to get a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = connector_of(quick()).connect(UpstreamTarget {
        key: "nobody".into(),
        endpoint: url::Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap(),
        username: "u".into(),
        password: "p".into(),
    });
    let err = client.check_credentials().await.unwrap_err();
    assert!(matches!(err, AdcError::Unreachable(_)), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn the_rate_limit_is_shared_per_connection_key() {
    let settings = ClientSettings {
        requests_per_second: 2,
        ..quick()
    };
    let stub = Stub::start((0..4).map(|_| ok("GetDealerId", "5")).collect()).await;
    let connector = connector_of(settings);
    let started = Instant::now();
    // Two clients for one key draw on one budget: a burst of 2, then 2 a second.
    for _ in 0..2 {
        let client = connector.connect(stub.target("pw"));
        client.check_credentials().await.unwrap();
        let client = connector.connect(stub.target("pw"));
        client.check_credentials().await.unwrap();
    }
    assert_eq!(stub.count(), 4);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "4 calls at 2/s took only {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn debug_output_never_shows_the_password() {
    let connector = connector_of(quick());
    let client = HttpAdcClient::new(
        &connector.0,
        UpstreamTarget {
            key: "k".into(),
            endpoint: url::Url::parse("https://alarmadmin.example/").unwrap(),
            username: "dealer".into(),
            password: "hunter2".into(),
        },
    );
    let shown = format!("{client:?} {connector:?}");
    assert!(shown.contains("dealer"));
    assert!(!shown.contains("hunter2"));
}

#[tokio::test]
async fn the_default_egress_policy_refuses_loopback_before_anything_is_sent() {
    let stub = Stub::start(vec![ok("GetDealerId", "5")]).await;
    let port = stub.endpoint.port().unwrap();
    let strict = ClientSettings {
        egress: upstream_http::EgressPolicy::default(),
        ..quick()
    };
    let connector = connector_of(strict);
    for endpoint in [
        stub.endpoint.to_string(),
        format!("http://localhost:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
    ] {
        let client = connector.connect(UpstreamTarget {
            endpoint: url::Url::parse(&endpoint).unwrap(),
            ..stub.target("secret")
        });
        let err = client.check_credentials().await.unwrap_err();
        assert!(
            matches!(&err, AdcError::EgressRefused(m) if m.contains("loopback")),
            "{endpoint}: {err:?}"
        );
        assert!(!err.is_transient(), "retrying cannot help");
    }
    assert_eq!(stub.count(), 0, "nothing reached the stub");
    stub.client(quick()).check_credentials().await.unwrap();
    assert_eq!(stub.count(), 1);
}
