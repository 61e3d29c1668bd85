//! Callbacks: the simulator calls a receiver back when linked records change.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use common::{start, Client};
use serde_json::{json, Value};
use stages_sim::wire::SitePatch;
use stages_sim::{CallbackTarget, Sim};

const CB_USER: &str = "stages-conn-1";
const CB_PASSWORD: &str = "inbound-s3cret";
const IDLE: Duration = Duration::from_secs(10);

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    method: String,
    path: String,
    authorization: Option<(String, String)>,
    content_type: String,
    body: Value,
}

#[derive(Default)]
struct Script {
    got: Vec<Got>,
    /// Answers to give, in order; 200 `{"ok": true}` once they run out.
    answers: VecDeque<(u16, Value)>,
    delay: Duration,
}

/// A tiny HTTP server collecting every request.
struct Receiver {
    script: Arc<Mutex<Script>>,
    addr: std::net::SocketAddr,
    handle: actix_web::dev::ServerHandle,
}

async fn collect(req: HttpRequest, body: Bytes, script: web::Data<Mutex<Script>>) -> HttpResponse {
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });
    let got = Got {
        method: req.method().to_string(),
        path: req.path().to_string(),
        authorization,
        content_type: req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let (delay, answer) = {
        let mut s = script.lock().unwrap();
        s.got.push(got);
        (s.delay, s.answers.pop_front())
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (status, body) = answer.unwrap_or((200, json!({"ok": true})));
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(body)
}

impl Receiver {
    async fn start() -> Receiver {
        let script = Arc::new(Mutex::new(Script::default()));
        let data = web::Data::from(script.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(collect))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver {
            script,
            addr,
            handle,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/v1/webhooks/stages/conn-1", self.addr)
    }

    fn got(&self) -> Vec<Got> {
        self.script.lock().unwrap().got.clone()
    }

    fn answer_with(&self, answers: &[(u16, Value)]) {
        self.script.lock().unwrap().answers = answers.iter().cloned().collect();
    }

    fn delay(&self, d: Duration) {
        self.script.lock().unwrap().delay = d;
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// A site with one device; both linked when `linked`.
async fn make_site(c: &Client, linked: bool, xmit: &str) -> (String, String) {
    let (site_billing, device_billing) = if linked {
        (format!("CUST-{xmit}"), format!("SYS-{xmit}"))
    } else {
        (String::new(), String::new())
    };
    let res = c
        .post(
            "/api/v1/sites",
            json!({
                "name": "Lee Residence",
                "address1": "12 Elm St",
                "city": "Austin",
                "state": "TX",
                "zip": "78701",
                "phone": "512-555-0199",
                "billing_id": site_billing,
                "devices": [{"transmitter_code": xmit, "location": "Hall", "billing_id": device_billing}]
            }),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    (
        res.body["site"]["site_no"].as_str().unwrap().to_string(),
        res.body["devices"][0]["device_id"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

async fn set_target(c: &Client, body: Value) -> Value {
    let res = c.put("/admin/callbacks", body).await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.body
}

fn target_body(rx: &Receiver) -> Value {
    json!({"url": rx.url(), "username": CB_USER, "password": CB_PASSWORD, "backoff_ms": 20})
}

async fn idle(sim: &Sim) {
    assert!(
        sim.state().callbacks_idle(IDLE).await,
        "callbacks delivered in time"
    );
}

#[tokio::test]
async fn site_patch_emits_site_updated_with_only_changed_fields() {
    let sim = start(0).await;
    let rx = Receiver::start().await;
    let c = Client::new(&sim);
    let (site_no, _) = make_site(&c, true, "5000001").await;
    let shown = set_target(&c, target_body(&rx)).await;
    assert_eq!(shown["target"]["url"], rx.url());
    assert_eq!(shown["target"]["username"], CB_USER);
    assert!(shown["target"].get("password").is_none(), "{shown}");

    let res = c
        .patch(
            &format!("/api/v1/sites/{site_no}"),
            json!({
                "address1": "99 Oak Ave",
                "city": "Austin",            // unchanged
                "phone": "512-555-0100",
                "info": "gate code 1234",
                "name": "Lee Home"           // not a callback field
            }),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    idle(&sim).await;

    let got = rx.got();
    assert_eq!(got.len(), 1, "{got:?}");
    let g = &got[0];
    assert_eq!(g.method, "POST");
    assert_eq!(g.path, "/v1/webhooks/stages/conn-1");
    assert_eq!(
        g.authorization,
        Some((CB_USER.to_string(), CB_PASSWORD.to_string()))
    );
    assert_eq!(g.content_type, "application/json");
    let b = &g.body;
    assert_eq!(b["type"], "site.updated");
    assert_eq!(b["site_no"], site_no.as_str());
    assert_eq!(b["billing_id"], "CUST-5000001");
    assert_eq!(
        b["changes"],
        json!({"address1": "99 Oak Ave", "phone": "512-555-0100", "info": "gate code 1234"})
    );
    assert!(!b["event_id"].as_str().unwrap().is_empty());
    chrono::DateTime::parse_from_rfc3339(b["occurred_at"].as_str().unwrap())
        .expect("occurred_at is RFC 3339");

    let status = c.get("/admin/callbacks").await.body;
    assert_eq!(status["emitted"], 1);
    assert_eq!(status["sent"], 1);
    assert_eq!(status["acknowledged"], 1);
    assert_eq!(status["failed"], 0);
    assert_eq!(status["pending"], 0);

    let log = c.get("/admin/callbacks/log").await.body;
    assert_eq!(log["items"][0]["event_id"], b["event_id"]);
    assert_eq!(log["items"][0]["status"], 200);
}

#[tokio::test]
async fn event_ids_are_unique_and_changes_arrive_in_order() {
    let sim = start(0).await;
    let rx = Receiver::start().await;
    let c = Client::new(&sim);
    let (site_no, _) = make_site(&c, true, "5000002").await;
    set_target(&c, target_body(&rx)).await;
    for zip in ["78702", "78703", "78704"] {
        let res = c
            .patch(&format!("/api/v1/sites/{site_no}"), json!({"zip": zip}))
            .await;
        assert_eq!(res.status, 200);
    }
    idle(&sim).await;
    let got = rx.got();
    let zips: Vec<&str> = got
        .iter()
        .map(|g| g.body["changes"]["zip"].as_str().unwrap())
        .collect();
    assert_eq!(zips, ["78702", "78703", "78704"]);
    let mut ids: Vec<&str> = got
        .iter()
        .map(|g| g.body["event_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
}

#[tokio::test]
async fn the_api_answer_does_not_wait_for_delivery() {
    let sim = start(0).await;
    let rx = Receiver::start().await;
    rx.delay(Duration::from_secs(2));
    let c = Client::new(&sim);
    let (site_no, _) = make_site(&c, true, "5000003").await;
    set_target(&c, target_body(&rx)).await;
    let t = Instant::now();
    let res = c
        .patch(
            &format!("/api/v1/sites/{site_no}"),
            json!({"address2": "Apt 4"}),
        )
        .await;
    assert_eq!(res.status, 200);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    idle(&sim).await;
    assert_eq!(rx.got().len(), 1);
}

#[tokio::test]
async fn other_fields_unlinked_records_and_no_target_send_nothing() {
    let sim = start(0).await;
    let rx = Receiver::start().await;
    let c = Client::new(&sim);
    let (linked, linked_dev) = make_site(&c, true, "5000004").await;
    let (unlinked, unlinked_dev) = make_site(&c, false, "5000005").await;

    // No target yet: a change is not remembered for later.
    let res = c
        .patch(
            &format!("/api/v1/sites/{linked}"),
            json!({"address1": "1 First St"}),
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(sim.state().callback_status().emitted, 0);

    set_target(&c, target_body(&rx)).await;
    // Fields Stages does not report.
    let res = c
        .patch(
            &format!("/api/v1/sites/{linked}"),
            json!({"name": "Renamed", "keys": true, "pets": "dog", "address1": "1 First St"}),
        )
        .await;
    assert_eq!(res.status, 200);
    let res = c
        .patch(
            &format!("/api/v1/devices/{linked_dev}"),
            json!({"alt_device_id": "ALT-1", "silent": true, "location": "Hall"}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    // Unlinked records.
    let res = c
        .patch(
            &format!("/api/v1/sites/{unlinked}"),
            json!({"address1": "2 Second St", "phone": "512-555-0111"}),
        )
        .await;
    assert_eq!(res.status, 200);
    let res = c
        .post(
            &format!("/api/v1/devices/{unlinked_dev}/change-xmit"),
            json!({"new_transmitter_code": "5000095"}),
        )
        .await;
    assert_eq!(res.status, 200);
    // A refused change.
    let res = c
        .patch(
            &format!("/api/v1/sites/{linked}"),
            json!({"address1": "3 Third St", "region": "NOPE"}),
        )
        .await;
    assert_eq!(res.status, 422);

    idle(&sim).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.got().is_empty(), "{:?}", rx.got());
    let status = sim.state().callback_status();
    assert_eq!((status.emitted, status.sent), (0, 0));

    // Stopped: DELETE removes the target.
    let res = c.delete("/admin/callbacks").await;
    assert_eq!(res.status, 204);
    let res = c
        .patch(
            &format!("/api/v1/sites/{linked}"),
            json!({"city": "Dallas"}),
        )
        .await;
    assert_eq!(res.status, 200);
    idle(&sim).await;
    assert!(rx.got().is_empty());
    assert_eq!(c.get("/admin/callbacks").await.body["target"], Value::Null);
}

#[tokio::test]
async fn device_changes_emit_device_updated() {
    let sim = start(0).await;
    let rx = Receiver::start().await;
    let c = Client::new(&sim);
    let (site_no, device_id) = make_site(&c, true, "5000006").await;
    set_target(&c, target_body(&rx)).await;

    let res = c
        .post(
            &format!("/api/v1/devices/{device_id}/change-xmit"),
            json!({"new_transmitter_code": "5000096"}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let res = c
        .patch(
            &format!("/api/v1/devices/{device_id}"),
            json!({"location": "Garage", "info": "new battery", "comm_type": "CELL"}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    // Same code again: no change, no callback.
    let res = c
        .post(
            &format!("/api/v1/devices/{device_id}/change-xmit"),
            json!({"new_transmitter_code": "5000096"}),
        )
        .await;
    assert_eq!(res.status, 200);
    idle(&sim).await;

    let got = rx.got();
    assert_eq!(got.len(), 2, "{got:?}");
    let first = &got[0].body;
    assert_eq!(first["type"], "device.updated");
    assert_eq!(first["device_id"], device_id.as_str());
    assert_eq!(first["site_no"], site_no.as_str());
    assert_eq!(first["billing_id"], "SYS-5000006");
    assert_eq!(first["changes"], json!({"transmitter_code": "5000096"}));
    let second = &got[1].body;
    assert_eq!(second["type"], "device.updated");
    assert_eq!(
        second["changes"],
        json!({"location": "Garage", "info": "new battery"})
    );
    assert_eq!(
        got[1].authorization,
        Some((CB_USER.to_string(), CB_PASSWORD.to_string()))
    );
}

#[tokio::test]
async fn in_process_changes_and_target_work_too() {
    let sim = start(0).await;
    let rx = Receiver::start().await;
    let c = Client::new(&sim);
    let (site_no, device_id) = make_site(&c, true, "5000007").await;
    let state = sim.state();
    assert!(state
        .set_callback_target(CallbackTarget::new("not a url", "u", "p"))
        .is_err());
    state
        .set_callback_target(CallbackTarget::new(rx.url(), CB_USER, CB_PASSWORD))
        .unwrap();
    assert_eq!(state.callback_target().unwrap().password, CB_PASSWORD);

    state
        .patch_site(
            &site_no,
            SitePatch {
                state: Some("OK".into()),
                ..SitePatch::default()
            },
        )
        .unwrap();
    state.change_xmit(&device_id, "5000097").unwrap();
    assert!(state.callbacks_idle(IDLE).await);
    let got = rx.got();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body["changes"], json!({"state": "OK"}));
    assert_eq!(got[1].body["changes"]["transmitter_code"], "5000097");
    let parsed: stages_sim::Callback = serde_json::from_value(got[0].body.clone()).unwrap();
    assert_eq!(parsed.event.type_name(), "site.updated");
}

#[tokio::test]
async fn retries_until_acknowledged_then_gives_up_when_it_never_is() {
    let sim = start(0).await;
    let rx = Receiver::start().await;
    let c = Client::new(&sim);
    let (site_no, _) = make_site(&c, true, "5000008").await;
    set_target(&c, target_body(&rx)).await;
    rx.answer_with(&[(500, json!({})), (503, json!({}))]);

    let res = c
        .patch(&format!("/api/v1/sites/{site_no}"), json!({"zip": "73301"}))
        .await;
    assert_eq!(res.status, 200);
    let res = c
        .patch(&format!("/api/v1/sites/{site_no}"), json!({"zip": "73302"}))
        .await;
    assert_eq!(res.status, 200);
    idle(&sim).await;

    let got = rx.got();
    assert_eq!(got.len(), 4, "{got:?}");
    let ids: Vec<&Value> = got.iter().map(|g| &g.body["event_id"]).collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[1], ids[2]);
    assert_ne!(ids[2], ids[3]);
    // The second change waits for the first: order per record holds.
    assert_eq!(got[2].body["changes"]["zip"], "73301");
    assert_eq!(got[3].body["changes"]["zip"], "73302");
    let status = sim.state().callback_status();
    assert_eq!(
        (
            status.emitted,
            status.sent,
            status.acknowledged,
            status.failed
        ),
        (2, 4, 2, 0)
    );

    // A receiver that always fails: given up after max_attempts.
    let mut body = target_body(&rx);
    body["max_attempts"] = json!(2);
    set_target(&c, body).await;
    rx.answer_with(&[(500, json!({})), (502, json!({})), (500, json!({}))]);
    let res = c
        .patch(&format!("/api/v1/sites/{site_no}"), json!({"zip": "73303"}))
        .await;
    assert_eq!(res.status, 200);
    idle(&sim).await;
    assert_eq!(rx.got().len(), 6);
    let status = c.get("/admin/callbacks").await.body;
    assert_eq!(status["failed"], 1);
    assert_eq!(status["sent"], 6);
    assert_eq!(status["pending"], 0);

    // Connection refused counts as a failure too.
    let mut body = target_body(&rx);
    body["url"] = json!("http://127.0.0.1:9/v1/webhooks/stages/conn-1");
    body["max_attempts"] = json!(2);
    set_target(&c, body).await;
    let res = c
        .patch(&format!("/api/v1/sites/{site_no}"), json!({"zip": "73304"}))
        .await;
    assert_eq!(res.status, 200);
    idle(&sim).await;
    assert_eq!(sim.state().callback_status().failed, 2);
    let log = sim.state().callback_log();
    let last = log.last().unwrap();
    assert_eq!(last.status, None);
    assert!(last.error.is_some());
}

#[tokio::test]
async fn duplicate_knob_delivers_each_callback_twice() {
    let sim = start(0).await;
    let rx = Receiver::start().await;
    let c = Client::new(&sim);
    let (site_no, _) = make_site(&c, true, "5000009").await;
    let mut body = target_body(&rx);
    body["duplicate"] = json!(true);
    let shown = set_target(&c, body).await;
    assert_eq!(shown["target"]["duplicate"], true);

    let res = c
        .patch(
            &format!("/api/v1/sites/{site_no}"),
            json!({"phone": "512-555-0177"}),
        )
        .await;
    assert_eq!(res.status, 200);
    idle(&sim).await;
    let got = rx.got();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body, got[1].body, "the same event, twice");
    let status = sim.state().callback_status();
    assert_eq!((status.emitted, status.acknowledged), (1, 2));
}

#[tokio::test]
async fn send_passes_the_answer_through_and_keeps_the_event_id() {
    let sim = start(0).await;
    let rx = Receiver::start().await;
    let c = Client::new(&sim);

    let event = json!({
        "event_id": "evt-fixed-1",
        "type": "site.send_to_billing",
        "site_no": "10001",
        "target": {"kind": "new_customer", "business": false, "first_name": "Ann",
                   "last_name": "Lee", "address1": "12 Elm St", "city": "Austin",
                   "state": "TX", "zip": "78701"}
    });
    // No target: refused.
    let res = c.post("/admin/callbacks/send", event.clone()).await;
    assert_eq!(res.status, 409);
    assert_eq!(res.error_code(), "no_callback_target");

    set_target(&c, target_body(&rx)).await;
    rx.answer_with(&[
        (201, json!({"customer_id": "CUST-9", "created": true})),
        (409, json!({"error": {"code": "duplicate_event"}})),
    ]);
    let first = c.post("/admin/callbacks/send", event.clone()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["status"], 201);
    assert_eq!(
        first.body["body"],
        json!({"customer_id": "CUST-9", "created": true})
    );
    assert_eq!(first.body["event_id"], "evt-fixed-1");
    let second = c.post("/admin/callbacks/send", event.clone()).await;
    assert_eq!(second.body["status"], 409);
    assert_eq!(second.body["body"]["error"]["code"], "duplicate_event");

    let existing = json!({
        "type": "site.send_to_billing",
        "site_no": "10002",
        "target": {"kind": "existing_customer", "customer_id": "CUST-1"}
    });
    let third = c.post("/admin/callbacks/send", existing).await;
    assert_eq!(third.body["status"], 200);
    let generated = third.body["event_id"].as_str().unwrap().to_string();
    assert!(!generated.is_empty());

    let got = rx.got();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].body["event_id"], "evt-fixed-1");
    assert_eq!(got[1].body["event_id"], "evt-fixed-1");
    assert_eq!(got[0].body["target"]["kind"], "new_customer");
    assert!(got[0].body["occurred_at"].is_string());
    assert_eq!(got[2].body["event_id"], generated.as_str());
    assert_eq!(got[2].body["target"]["customer_id"], "CUST-1");
    assert_eq!(
        got[2].authorization,
        Some((CB_USER.to_string(), CB_PASSWORD.to_string()))
    );
    let parsed: stages_sim::Callback = serde_json::from_value(got[2].body.clone()).unwrap();
    assert_eq!(parsed.event.type_name(), "site.send_to_billing");

    // Not an object: refused; an unreachable target: 502.
    let res = c.post("/admin/callbacks/send", json!([1, 2])).await;
    assert_eq!(res.status, 422);
    set_target(
        &c,
        json!({"url": "http://127.0.0.1:9/v1/webhooks/stages/x", "username": "u", "password": "p"}),
    )
    .await;
    let res = c
        .post("/admin/callbacks/send", json!({"type": "site.updated"}))
        .await;
    assert_eq!(res.status, 502);
    assert_eq!(res.error_code(), "callback_failed");
}

#[tokio::test]
async fn put_checks_the_target_and_reset_keeps_it() {
    let sim = start(0).await;
    let rx = Receiver::start().await;
    let c = Client::new(&sim);
    for bad in [
        json!({"url": "ftp://127.0.0.1/x"}),
        json!({"url": "nope"}),
        json!({"url": rx.url(), "max_attempts": 0}),
        json!({"username": "u"}),
    ] {
        let res = c.put("/admin/callbacks", bad.clone()).await;
        assert_eq!(res.status, 422, "{bad}: {}", res.body);
    }
    let shown = set_target(&c, json!({"url": rx.url()})).await;
    assert_eq!(shown["target"]["max_attempts"], 5);
    assert_eq!(shown["target"]["duplicate"], false);
    let (site_no, _) = make_site(&c, true, "5000010").await;
    c.patch(&format!("/api/v1/sites/{site_no}"), json!({"city": "Waco"}))
        .await;
    idle(&sim).await;
    assert_eq!(rx.got()[0].authorization, None, "no credentials, no header");

    assert_eq!(c.post("/admin/reset", json!({})).await.status, 204);
    let status = c.get("/admin/callbacks").await.body;
    assert_eq!(status["target"]["url"], rx.url());
    assert_eq!(status["sent"], 0);
}
