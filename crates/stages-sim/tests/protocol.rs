//! The protocol as a client sees it: auth, records, rules, paging, tests.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::{start, Client};
use serde_json::{json, Value};
use stages_sim::wire::DeviceStatus;

fn full_site(name: &str, xmits: &[&str]) -> Value {
    let devices: Vec<Value> = xmits
        .iter()
        .map(|x| {
            json!({
                "transmitter_code": x,
                "device_type": "VISTA-20P",
                "comm_type": "CELL",
                "timer_test_type": "DAILY",
                "timer_test_days": 1,
                "entry_period": "00:30",
                "exit_period": "01:00",
                "silent": true,
                "configurations": [
                    {"point": 1, "area": "1", "event_code": "E130", "description": "Front door"},
                    {"point": 2, "event_code": "E110", "description": "Smoke"}
                ]
            })
        })
        .collect();
    json!({
        "name": name,
        "address1": "12 Elm St",
        "city": "Austin",
        "state": "TX",
        "zip": "78701",
        "phone": "(512) 555-0199",
        "site_type": "RES",
        "keys": true,
        "devices": devices,
        "contacts": [
            {"name": "Ann Lee", "relation": "Owner", "authority": "OWNER",
             "phones": [{"kind": "mobile", "number": "512-555-0101"}], "ecv": true, "pin": "4321"},
            {"name": "Bob Lee", "effective_date": "2024-01-01"}
        ]
    })
}

async fn create_site(c: &Client, name: &str, xmits: &[&str]) -> Value {
    let a = c.post("/api/v1/sites", full_site(name, xmits)).await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.body
}

#[tokio::test]
async fn auth_is_required_and_users_can_be_added() {
    let sim = start(0).await;
    let anon = Client::anonymous(&sim);
    let a = anon.get("/api/v1/ping").await;
    assert_eq!(a.status, 401);
    assert_eq!(a.error_code(), "unauthorized");
    assert!(a.headers.get("www-authenticate").is_some());

    let mut wrong = Client::new(&sim);
    wrong.auth = Some((common::USER.into(), "nope".into()));
    assert_eq!(wrong.get("/api/v1/ping").await.status, 401);
    assert_eq!(wrong.get("/api/v1/sites").await.status, 401);

    let c = Client::new(&sim);
    let a = c.get("/api/v1/ping").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, json!({"ok": true}));

    let a = anon
        .post(
            "/admin/users",
            json!({"username": "tech", "password": "pw"}),
        )
        .await;
    assert_eq!(a.status, 204);
    let mut tech = Client::new(&sim);
    tech.auth = Some(("tech".into(), "pw".into()));
    assert_eq!(tech.get("/api/v1/ping").await.status, 200);
    assert_eq!(
        c.get("/api/v1/ping").await.status,
        200,
        "first user still works"
    );

    assert_eq!(anon.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn lookups_and_unknown_routes() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    let a = c.get("/api/v1/lookups/time-zones").await;
    assert_eq!(a.status, 200);
    let codes: Vec<&str> = a.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    for tz in [
        "America/New_York",
        "America/Chicago",
        "Pacific/Honolulu",
        "America/Toronto",
    ] {
        assert!(codes.contains(&tz), "{tz}");
    }
    assert!(a.body["next_page_token"].is_null());
    for list in [
        "regions",
        "site-types",
        "dispatch-types",
        "ul-codes",
        "authorities",
        "oos-categories",
        "device-types",
        "timer-test-types",
        "comm-types",
        "lid-types",
    ] {
        let a = c.get(&format!("/api/v1/lookups/{list}")).await;
        assert_eq!(a.status, 200, "{list}");
        assert!(!a.body["items"].as_array().unwrap().is_empty(), "{list}");
        assert!(a.body["items"][0]["description"].is_string());
    }
    let a = c.get("/api/v1/lookups/colors").await;
    assert_eq!((a.status, a.error_code()), (404, "not_found"));

    let a = c.get("/api/v1/nothing/here").await;
    assert_eq!((a.status, a.error_code()), (404, "not_found"));
    let a = c.delete("/api/v1/sites").await;
    assert_eq!((a.status, a.error_code()), (405, "method_not_allowed"));
    for path in [
        "/api/v1/sites/99999",
        "/api/v1/sites/abc",
        "/api/v1/devices/D-77",
        "/api/v1/devices/x/tests",
    ] {
        let a = c.get(path).await;
        assert_eq!((a.status, a.error_code()), (404, "not_found"), "{path}");
    }
}

#[tokio::test]
async fn creates_a_site_with_devices_configurations_and_contacts() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    let created = create_site(&c, "Lee Residence", &["700100", "700101"]).await;

    let site = &created["site"];
    assert_eq!(site["site_no"], "10001");
    assert_eq!(site["name"], "Lee Residence");
    assert_eq!(site["time_zone"], "America/New_York", "default time zone");
    assert_eq!(site["keys"], true);
    assert!(site["billing_id"].is_null());
    assert_eq!(site["address2"], "");

    let devices = created["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[0]["device_id"], "D-1");
    assert_eq!(devices[1]["device_id"], "D-2");
    assert_eq!(devices[0]["site_no"], "10001");
    assert_eq!(devices[0]["transmitter_code"], "700100");
    assert_eq!(devices[0]["status"], "normal");
    assert_eq!(devices[0]["entry_period"], "00:30");
    assert_eq!(devices[0]["timer_test_days"], 1);
    assert!(devices[0]["timer_test_hours"].is_null());
    assert!(devices[0].get("configurations").is_none());

    let contacts = created["contacts"].as_array().unwrap();
    assert_eq!(contacts.len(), 2);
    assert_eq!(contacts[0]["has_pin"], true);
    assert!(contacts[0].get("pin").is_none(), "PINs are write-only");
    assert_eq!(contacts[1]["has_pin"], false);
    assert_eq!(contacts[1]["effective_date"], "2024-01-01");
    assert_eq!(contacts[0]["phones"][0]["kind"], "mobile");

    let a = c.get("/api/v1/devices/D-1/configurations").await;
    assert_eq!(a.status, 200);
    let zones = a.body["items"].as_array().unwrap();
    assert_eq!(zones.len(), 2);
    assert_eq!(zones[0]["device_id"], "D-1");
    assert_eq!(zones[0]["point"], 1);
    assert!(zones[0]["config_id"].is_string());

    let a = c
        .post(
            "/api/v1/devices/D-1/configurations",
            json!({"point": 3, "event_code": "E131", "description": "Window"}),
        )
        .await;
    assert_eq!(a.status, 201);
    assert_eq!(
        c.get("/api/v1/devices/D-1/configurations").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let a = c.get("/api/v1/sites/10001").await;
    assert_eq!(a.body, created["site"]);
    let a = c.get("/api/v1/sites/10001/devices").await;
    assert_eq!(a.body["items"].as_array().unwrap().len(), 2);
    let a = c.get("/api/v1/devices/D-2").await;
    assert_eq!(a.body, created["devices"][1]);

    let a = c
        .post(
            "/api/v1/sites/10001/devices",
            json!({"transmitter_code": "700102"}),
        )
        .await;
    assert_eq!(a.status, 201);
    assert_eq!(a.body["device_id"], "D-3");

    let st = sim.state();
    assert_eq!(st.site_count(), 1);
    assert_eq!(st.device_count(), 3);
    assert_eq!(st.contact_count(), 2);
    assert_eq!(
        st.contacts("10001")[0].contact_id,
        contacts[0]["contact_id"].as_str().unwrap()
    );
    let pin = st.with_db(|db| db.contact_pin("10001", contacts[0]["contact_id"].as_str().unwrap()));
    assert_eq!(pin.as_deref(), Some("4321"));
}

#[tokio::test]
async fn contacts_and_notes() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    create_site(&c, "Lee Residence", &[]).await;
    let a = c
        .post(
            "/api/v1/sites/10001/contacts",
            json!({"name": "Cy Po", "pin": "1111"}),
        )
        .await;
    assert_eq!(a.status, 201);
    let id = a.body["contact_id"].as_str().unwrap().to_string();
    assert_eq!(a.body["has_pin"], true);

    let a = c
        .patch(
            &format!("/api/v1/sites/10001/contacts/{id}"),
            json!({"email": "cy@example.com", "pin": ""}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["email"], "cy@example.com");
    assert_eq!(a.body["name"], "Cy Po");
    assert_eq!(a.body["has_pin"], false);

    let a = c
        .patch(
            &format!("/api/v1/sites/10001/contacts/{id}"),
            json!({"authority": "BOSS"}),
        )
        .await;
    assert_eq!((a.status, a.error_code()), (422, "validation"));
    assert!(a.error_message().contains("authority"));

    assert_eq!(
        c.get("/api/v1/sites/10001/contacts").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        c.delete(&format!("/api/v1/sites/10001/contacts/{id}"))
            .await
            .status,
        204
    );
    assert_eq!(
        c.delete(&format!("/api/v1/sites/10001/contacts/{id}"))
            .await
            .status,
        404
    );
    assert_eq!(
        c.get("/api/v1/sites/10001/contacts").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let a = c
        .post(
            "/api/v1/sites/10001/notes",
            json!({"text": "Gate code 1234"}),
        )
        .await;
    assert_eq!(a.status, 201);
    assert_eq!(a.body["site_no"], "10001");
    assert!(a.body["created_at"].is_string());
    let a = c
        .post("/api/v1/sites/10001/notes", json!({"text": ""}))
        .await;
    assert_eq!(a.status, 422);
    let a = c.get("/api/v1/sites/10001/notes").await;
    assert_eq!(a.body["items"][0]["text"], "Gate code 1234");
}

#[tokio::test]
async fn transmitter_codes_are_unique_and_change_on_their_own_route() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    create_site(&c, "One", &["800001"]).await;

    let a = c.post("/api/v1/sites", full_site("Two", &["800001"])).await;
    assert_eq!(
        (a.status, a.error_code()),
        (409, "duplicate_transmitter_code")
    );
    assert_eq!(sim.state().site_count(), 1, "nothing created on refusal");

    let a = c
        .post("/api/v1/sites", full_site("Three", &["800002", "800002"]))
        .await;
    assert_eq!(
        (a.status, a.error_code()),
        (409, "duplicate_transmitter_code")
    );

    let a = c
        .post(
            "/api/v1/sites/10001/devices",
            json!({"transmitter_code": "800001"}),
        )
        .await;
    assert_eq!(
        (a.status, a.error_code()),
        (409, "duplicate_transmitter_code")
    );

    let a = c
        .post(
            "/api/v1/sites/10001/devices",
            json!({"transmitter_code": "800003"}),
        )
        .await;
    let d2 = a.body["device_id"].as_str().unwrap().to_string();

    let a = c
        .post(
            &format!("/api/v1/devices/{d2}/change-xmit"),
            json!({"new_transmitter_code": "800001"}),
        )
        .await;
    assert_eq!(
        (a.status, a.error_code()),
        (409, "duplicate_transmitter_code")
    );

    let a = c
        .post(
            &format!("/api/v1/devices/{d2}/change-xmit"),
            json!({"new_transmitter_code": "800009"}),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["transmitter_code"], "800009");
    // The old code is free again.
    let a = c
        .post(
            "/api/v1/sites/10001/devices",
            json!({"transmitter_code": "800003"}),
        )
        .await;
    assert_eq!(a.status, 201);

    let a = c
        .patch(
            &format!("/api/v1/devices/{d2}"),
            json!({"transmitter_code": "800010"}),
        )
        .await;
    assert_eq!((a.status, a.error_code()), (422, "validation"));
    assert!(a.error_message().contains("transmitter_code"));

    let h = c.get(&format!("/api/v1/devices/{d2}/history")).await;
    let codes: Vec<&str> = h.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"XMIT_CHANGE"), "{codes:?}");
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    let cases = [
        (json!({"name": ""}), "name"),
        (json!({"address1": "x"}), "name"),
        (json!({"name": "x", "region": "MARS"}), "region"),
        (
            json!({"name": "x", "time_zone": "Europe/Paris"}),
            "time_zone",
        ),
        (json!({"name": "x", "site_type": "?"}), "site_type"),
        (json!({"name": "x", "dispatch_type": "?"}), "dispatch_type"),
        (json!({"name": "x", "ul_code": "?"}), "ul_code"),
        (json!({"name": "x", "authority": "?"}), "authority"),
        (
            json!({"name": "x", "devices": [{"transmitter_code": ""}]}),
            "transmitter_code",
        ),
        (
            json!({"name": "x", "devices": [{"device_type": "VISTA-20P"}]}),
            "transmitter_code",
        ),
        (
            json!({"name": "x", "devices": [{"transmitter_code": "1", "entry_period": "90"}]}),
            "entry_period",
        ),
        (
            json!({"name": "x", "devices": [{"transmitter_code": "1", "exit_period": "1:75"}]}),
            "exit_period",
        ),
        (
            json!({"name": "x", "devices": [{"transmitter_code": "1", "lid_type": "?"}]}),
            "lid_type",
        ),
        (
            json!({"name": "x", "devices": [{"transmitter_code": "1", "oos_category": "?"}]}),
            "oos_category",
        ),
        (
            json!({"name": "x", "devices": [{"transmitter_code": "1", "comm_type": "?"}]}),
            "comm_type",
        ),
        (
            json!({"name": "x", "devices": [{"transmitter_code": "1", "timer_test_type": "?"}]}),
            "timer_test_type",
        ),
        (
            json!({"name": "x", "devices": [{"transmitter_code": "1", "device_type": "?"}]}),
            "device_type",
        ),
        (json!({"name": "x", "keys": "yes"}), "invalid"),
    ];
    for (body, field) in cases {
        let a = c.post("/api/v1/sites", body.clone()).await;
        assert_eq!((a.status, a.error_code()), (422, "validation"), "{body}");
        assert!(
            a.error_message().contains(field),
            "{body}: {}",
            a.error_message()
        );
    }
    // Not JSON at all, and no body.
    let a = c
        .request(reqwest::Method::POST, "/api/v1/sites")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 422);
    let body: Value = a.json().await.unwrap();
    assert_eq!(body["error"]["code"], "validation");
    let a = c
        .request(reqwest::Method::POST, "/api/v1/sites")
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 422);
    let a = c.get("/api/v1/sites?page_size=abc").await;
    assert_eq!((a.status, a.error_code()), (422, "validation"));
    let a = c.get("/api/v1/devices/D-1/history?from=yesterday").await;
    assert!(a.status == 404 || a.status == 422);
    assert_eq!(sim.state().site_count(), 0);
}

/// Every site field of S5, with values that are not the defaults.
fn every_site_field() -> Value {
    json!({
        "name": "Every Field", "address1": "1 Main St", "address2": "Unit 2", "city": "Austin",
        "state": "TX", "zip": "78701", "phone": "512-555-0100", "info": "Side gate",
        "region": "SW", "time_zone": "America/Chicago", "site_type": "COM", "dispatch_type": "PRI",
        "permit": "P-1", "subdivision": "Elm Park", "pets": "dog", "keys": true, "ul_code": "AA",
        "authority": "MGR", "billing_id": "S-EVERY"
    })
}

/// Every device field of S5 (the seed's list plus billing id), none a default.
fn every_device_field(xmit: &str) -> Value {
    json!({
        "transmitter_code": xmit, "alt_device_id": "ALT-1", "oos_category": "SEASON",
        "device_type": "DSC-NEO", "timer_test_type": "INTERVAL", "timer_test_days": 2,
        "timer_test_hours": 3, "timer_test_minutes": 45, "fail_event": "E350",
        "ivr_number": "4455", "primary_xmit": "999001", "comm_type": "CELL-IP",
        "line_security": "Encrypted", "lid_type": "2WAY", "url_text": "Camera",
        "url_target": "https://cam.example/1", "signal_format": "CID", "entry_period": "00:45",
        "exit_period": "01:30", "location": "Basement", "info": "Behind the heater",
        "first_signal_at": "2024-03-01T12:34:56Z", "silent": true, "config_only": true,
        "billing_id": format!("SYS-{xmit}")
    })
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

#[tokio::test]
async fn every_site_and_device_field_is_stored_and_served() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    let body = with(
        every_site_field(),
        "devices",
        json!([every_device_field("910001")]),
    );
    let a = c.post("/api/v1/sites", body).await;
    assert_eq!(a.status, 201, "{}", a.body);
    // Whole-object equality: a field the simulator dropped or renamed fails here.
    let want_site = with(every_site_field(), "site_no", json!("10001"));
    assert_eq!(a.body["site"], want_site);
    assert_eq!(c.get("/api/v1/sites/10001").await.body, want_site);
    let mut want_device = every_device_field("910001");
    want_device["device_id"] = json!("D-1");
    want_device["site_no"] = json!("10001");
    want_device["status"] = json!("normal");
    assert_eq!(a.body["devices"][0], want_device);
    assert_eq!(c.get("/api/v1/devices/D-1").await.body, want_device);
}

/// Stages' schema is fixed: a field it does not know is refused, not dropped,
/// so a client that misspells one learns it at once.
#[tokio::test]
async fn unknown_fields_are_refused_and_nothing_changes() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    create_site(&c, "Known", &["920001"]).await;
    let contact = c.get("/api/v1/sites/10001/contacts").await.body["items"][0]["contact_id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = (
        c.get("/api/v1/sites/10001").await.body,
        c.get("/api/v1/devices/D-1").await.body,
        c.get("/api/v1/sites/10001/contacts").await.body,
    );
    let device = |extra: Value| {
        let mut d = json!({"transmitter_code": "920002"});
        d.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        d
    };
    let now = Utc::now();
    let test = json!({"type": "all_points", "effective": now.to_rfc3339(),
                      "expire": (now + chrono::Duration::hours(1)).to_rfc3339(), "reason": "r"});
    let cases: Vec<(reqwest::Method, String, Value, &str)> = vec![
        // A misspelled S5 site field, and a record id a client may not set.
        (
            reqwest::Method::POST,
            "/api/v1/sites".into(),
            json!({"name": "x", "ul_cod": "AA"}),
            "ul_cod",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/sites".into(),
            json!({"name": "x", "site_no": "1"}),
            "site_no",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/sites".into(),
            json!({"name": "x", "devices": [device(json!({"line_securty": "Encrypted"}))]}),
            "line_securty",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/sites".into(),
            json!({"name": "x", "devices": [device(json!({"status": "alarm"}))]}),
            "status",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/sites".into(),
            json!({"name": "x", "devices": [device(json!({"configurations": [{"point": 1, "zone": "1"}]}))]}),
            "zone",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/sites".into(),
            json!({"name": "x", "contacts": [{"name": "A", "phone": "1"}]}),
            "phone",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/sites".into(),
            json!({"name": "x", "contacts": [{"name": "A", "phones": [{"kind": "home", "number": "1", "ext": "2"}]}]}),
            "ext",
        ),
        (
            reqwest::Method::PATCH,
            "/api/v1/sites/10001".into(),
            json!({"subdivison": "x"}),
            "subdivison",
        ),
        (
            reqwest::Method::PATCH,
            "/api/v1/sites/10001".into(),
            json!({"site_no": "10002"}),
            "site_no",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/sites/10001/devices".into(),
            device(json!({"alt_id": "A"})),
            "alt_id",
        ),
        (
            reqwest::Method::PATCH,
            "/api/v1/devices/D-1".into(),
            json!({"lid": "2WAY"}),
            "lid",
        ),
        (
            reqwest::Method::PATCH,
            "/api/v1/devices/D-1".into(),
            json!({"status": "alarm"}),
            "status",
        ),
        (
            reqwest::Method::PATCH,
            "/api/v1/devices/D-1".into(),
            json!({"first_signal_at": "2024-01-01T00:00:00Z"}),
            "first_signal_at",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/devices/D-1/change-xmit".into(),
            json!({"new_transmitter_code": "920003", "force": true}),
            "force",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/devices/D-1/configurations".into(),
            json!({"point": 7, "zone_type": "fire"}),
            "zone_type",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/sites/10001/contacts".into(),
            json!({"name": "B", "mail": "b@example.com"}),
            "mail",
        ),
        (
            reqwest::Method::PATCH,
            format!("/api/v1/sites/10001/contacts/{contact}"),
            json!({"has_key": true}),
            "has_key",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/sites/10001/notes".into(),
            json!({"text": "t", "author": "me"}),
            "author",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/devices/D-1/tests".into(),
            with(test.clone(), "points", json!([1])),
            "points",
        ),
    ];
    for (method, path, body, field) in cases {
        let a = c.send(method.clone(), &path, Some(body.clone())).await;
        assert_eq!(
            (a.status, a.error_code()),
            (422, "validation"),
            "{method} {path} {body}: {}",
            a.body
        );
        assert!(
            a.error_message()
                .contains(&format!("unknown field `{field}`")),
            "{method} {path} {body}: {}",
            a.error_message()
        );
    }
    let after = (
        c.get("/api/v1/sites/10001").await.body,
        c.get("/api/v1/devices/D-1").await.body,
        c.get("/api/v1/sites/10001/contacts").await.body,
    );
    assert_eq!(before, after);
    let stats = sim.state().stats();
    assert_eq!(
        (
            stats.sites,
            stats.devices,
            stats.contacts,
            stats.configurations,
            stats.notes,
            stats.tests
        ),
        (1, 1, 2, 2, 0, 0),
        "refused requests store nothing"
    );
    // The same bodies without the stray field are accepted.
    let a = c.post("/api/v1/devices/D-1/tests", test).await;
    assert_eq!(a.status, 201, "{}", a.body);
}

/// Fields Stages requires have no default: leaving one out is a 422 naming it.
#[tokio::test]
async fn required_fields_are_refused_when_missing() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    create_site(&c, "Known", &["930001"]).await;
    let cases = [
        ("/api/v1/sites", json!({"address1": "x"}), "name"),
        (
            "/api/v1/sites",
            json!({"name": "x", "devices": [{"device_type": "DSC-NEO"}]}),
            "transmitter_code",
        ),
        (
            "/api/v1/sites/10001/devices",
            json!({"location": "x"}),
            "transmitter_code",
        ),
        (
            "/api/v1/devices/D-1/configurations",
            json!({"description": "x"}),
            "point",
        ),
        (
            "/api/v1/sites/10001/contacts",
            json!({"relation": "x"}),
            "name",
        ),
        ("/api/v1/sites/10001/notes", json!({}), "text"),
        (
            "/api/v1/devices/D-1/tests",
            json!({"expire": (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339()}),
            "effective",
        ),
        (
            "/api/v1/devices/D-1/change-xmit",
            json!({}),
            "new_transmitter_code",
        ),
    ];
    for (path, body, field) in cases {
        let a = c.post(path, body.clone()).await;
        assert_eq!(
            (a.status, a.error_code()),
            (422, "validation"),
            "{path} {body}"
        );
        assert!(
            a.error_message()
                .contains(&format!("missing field `{field}`")),
            "{path} {body}: {}",
            a.error_message()
        );
    }
    assert_eq!(sim.state().site_count(), 1);
}

#[tokio::test]
async fn billing_ids_filter_link_and_clear() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    for n in ["A", "B", "C"] {
        create_site(&c, n, &[]).await;
    }
    let a = c
        .patch("/api/v1/sites/10002", json!({"billing_id": "CS-42"}))
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["billing_id"], "CS-42");
    assert_eq!(a.body["name"], "B", "absent fields are unchanged");

    let a = c.get("/api/v1/sites?billing_id=CS-42").await;
    let items = a.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["site_no"], "10002");
    assert!(a.body["next_page_token"].is_null());
    assert_eq!(
        c.get("/api/v1/sites?billing_id=nope").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    let a = c.get("/api/v1/sites?unlinked=true").await;
    let nos: Vec<&str> = a.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["site_no"].as_str().unwrap())
        .collect();
    assert_eq!(nos, ["10001", "10003"]);

    let a = c
        .patch("/api/v1/sites/10003", json!({"billing_id": "CS-42"}))
        .await;
    assert_eq!((a.status, a.error_code()), (409, "duplicate_billing_id"));
    let mut dup = full_site("D", &[]);
    dup["billing_id"] = json!("CS-42");
    let a = c.post("/api/v1/sites", dup).await;
    assert_eq!((a.status, a.error_code()), (409, "duplicate_billing_id"));

    let a = c
        .patch("/api/v1/sites/10002", json!({"billing_id": ""}))
        .await;
    assert_eq!(a.status, 200);
    assert!(a.body["billing_id"].is_null());
    assert_eq!(
        c.get("/api/v1/sites?unlinked=true").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // Now free for another site.
    assert_eq!(
        c.patch("/api/v1/sites/10003", json!({"billing_id": "CS-42"}))
            .await
            .status,
        200
    );

    // Devices: same rules among devices.
    create_site(&c, "E", &["900001", "900002"]).await;
    let a = c
        .patch(
            "/api/v1/devices/D-1",
            json!({"billing_id": "SYS-1", "info": "hello"}),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["billing_id"], "SYS-1");
    assert_eq!(a.body["info"], "hello");
    let a = c
        .patch("/api/v1/devices/D-2", json!({"billing_id": "SYS-1"}))
        .await;
    assert_eq!((a.status, a.error_code()), (409, "duplicate_billing_id"));
    let a = c
        .patch("/api/v1/devices/D-1", json!({"billing_id": ""}))
        .await;
    assert!(a.body["billing_id"].is_null());
    assert_eq!(a.body["info"], "hello");
    assert_eq!(
        c.patch("/api/v1/devices/D-2", json!({"billing_id": "SYS-1"}))
            .await
            .status,
        200
    );
    let a = c
        .patch("/api/v1/devices/D-2", json!({"entry_period": "bad"}))
        .await;
    assert_eq!(a.status, 422);

    // Site edits leave a trace in the site history.
    let h = c.get("/api/v1/sites/10002/history").await;
    assert!(h.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event_code"] == "SITE_EDIT"));
}

#[tokio::test]
async fn pages_through_sites_in_order() {
    let sim = start(120).await;
    let c = Client::new(&sim);
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &token {
            Some(t) => format!("/api/v1/sites?page_size=50&page_token={t}"),
            None => "/api/v1/sites?page_size=50".to_string(),
        };
        let a = c.get(&path).await;
        assert_eq!(a.status, 200);
        pages += 1;
        for s in a.body["items"].as_array().unwrap() {
            seen.push(s["site_no"].as_str().unwrap().parse::<u64>().unwrap());
        }
        match a.body["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 120);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "ordered by site_no");

    let a = c.get("/api/v1/sites").await;
    assert_eq!(
        a.body["items"].as_array().unwrap().len(),
        50,
        "default page size"
    );
    let a = c.get("/api/v1/sites?page_size=500").await;
    assert_eq!(a.body["items"].as_array().unwrap().len(), 120);
    assert!(a.body["next_page_token"].is_null());
    let a = c.get("/api/v1/sites?page_size=501").await;
    assert_eq!((a.status, a.error_code()), (422, "validation"));
    let a = c.get("/api/v1/sites?page_token=garbage").await;
    assert_eq!((a.status, a.error_code()), (422, "validation"));

    // Free text: city, case-insensitive; site number.
    let first = sim.state().sites()[7].clone();
    let city = first.fields.city.to_uppercase();
    let a = c
        .request(reqwest::Method::GET, "/api/v1/sites")
        .query(&[("q", city.as_str()), ("page_size", "500")])
        .send()
        .await
        .unwrap();
    let body: Value = a.json().await.unwrap();
    let items = body["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(items.iter().all(
        |s| s["city"].as_str().unwrap().to_uppercase().contains(&city)
            || s["name"].as_str().unwrap().to_uppercase().contains(&city)
            || s["address1"]
                .as_str()
                .unwrap()
                .to_uppercase()
                .contains(&city)
    ));
    let a = c.get(&format!("/api/v1/sites?q={}", first.site_no)).await;
    assert!(a.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["site_no"] == first.site_no.as_str()));
}

#[tokio::test]
async fn tests_on_devices() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    create_site(&c, "T", &["600001", "600002"]).await;
    let now = Utc::now();
    let window = |from: i64, to: i64| {
        json!({
            "type": "all_points",
            "effective": (now + chrono::Duration::seconds(from)).to_rfc3339(),
            "expire": (now + chrono::Duration::seconds(to)).to_rfc3339(),
            "reason": "panel service"
        })
    };

    // A device in alarm, or out of service, cannot be put on test.
    let anon = Client::anonymous(&sim);
    let a = anon
        .put("/admin/devices/D-1/status", json!({"status": "alarm"}))
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["status"], "alarm");
    let a = c.post("/api/v1/devices/D-1/tests", window(-5, 3600)).await;
    assert_eq!((a.status, a.error_code()), (409, "device_state"));
    assert!(a.error_message().contains("alarm"), "{}", a.error_message());
    sim.state()
        .set_device_status("D-1", DeviceStatus::OutOfService)
        .unwrap();
    let a = c.post("/api/v1/devices/D-1/tests", window(-5, 3600)).await;
    assert_eq!((a.status, a.error_code()), (409, "device_state"));
    assert!(a.error_message().contains("out of service"));
    sim.state()
        .set_device_status("D-1", DeviceStatus::Normal)
        .unwrap();

    let a = c
        .post("/api/v1/devices/D-1/tests", window(3600, 1800))
        .await;
    assert_eq!((a.status, a.error_code()), (422, "validation"));

    let a = c.post("/api/v1/devices/D-1/tests", window(-5, 3600)).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["state"], "current");
    assert_eq!(a.body["type"], "all_points");
    assert_eq!(a.body["reason"], "panel service");
    let current = a.body["test_id"].as_str().unwrap().to_string();
    let a = c
        .post("/api/v1/devices/D-1/tests", window(7200, 9000))
        .await;
    assert_eq!(a.body["state"], "scheduled");
    let scheduled = a.body["test_id"].as_str().unwrap().to_string();

    assert_eq!(c.get("/api/v1/devices/D-1").await.body["status"], "on_test");
    assert_eq!(c.get("/api/v1/devices/D-2").await.body["status"], "normal");
    let a = c.get("/api/v1/devices/D-1/tests").await;
    let items = a.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["state"], "current");
    assert_eq!(items[1]["state"], "scheduled");
    assert_eq!(sim.state().test_count(), 2);

    // A signal received now is flagged as on test.
    let sig = anon
        .post(
            "/admin/devices/D-1/signals",
            json!({"event_code": "E130", "description": "Burglary", "point": 1}),
        )
        .await;
    assert_eq!(sig.status, 201);
    assert_eq!(sig.body["on_test"], true);

    // Alarm outranks on_test in the status.
    sim.state()
        .set_device_status("D-1", DeviceStatus::Alarm)
        .unwrap();
    assert_eq!(c.get("/api/v1/devices/D-1").await.body["status"], "alarm");
    sim.state()
        .set_device_status("D-1", DeviceStatus::Normal)
        .unwrap();

    let a = c
        .delete(&format!("/api/v1/devices/D-1/tests/{current}"))
        .await;
    assert_eq!(a.status, 204);
    assert_eq!(c.get("/api/v1/devices/D-1").await.body["status"], "normal");
    let a = c
        .delete(&format!("/api/v1/devices/D-1/tests/{current}"))
        .await;
    assert_eq!((a.status, a.error_code()), (404, "not_found"));
    let a = c.get("/api/v1/devices/D-1/tests").await;
    assert_eq!(a.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(a.body["items"][0]["test_id"], scheduled.as_str());

    // A test runs out by itself.
    let a = c.post("/api/v1/devices/D-2/tests", window(-1, 1)).await;
    assert_eq!(a.status, 201);
    assert_eq!(c.get("/api/v1/devices/D-2").await.body["status"], "on_test");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(c.get("/api/v1/devices/D-2").await.body["status"], "normal");
    assert!(c.get("/api/v1/devices/D-2/tests").await.body["items"]
        .as_array()
        .unwrap()
        .is_empty());

    // The history tells what was done.
    let codes = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_code"].as_str().unwrap().to_string())
            .collect()
    };
    let h1 = c.get("/api/v1/devices/D-1/history").await;
    let c1 = codes(&h1.body);
    for code in ["TEST_START", "TEST_END", "ALARM", "RESTORE", "E130"] {
        assert!(c1.contains(&code.to_string()), "{code} in {c1:?}");
    }
    assert!(h1.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["device_id"] == "D-1"));
    let h2 = c.get("/api/v1/devices/D-2/history").await;
    assert!(codes(&h2.body).contains(&"TEST_EXPIRED".to_string()));
    let site = c.get("/api/v1/sites/10001/history").await;
    let all = codes(&site.body);
    assert!(all.contains(&"TEST_EXPIRED".to_string()) && all.contains(&"TEST_END".to_string()));

    // from/to select a window (RFC 3339).
    let later = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let a = c
        .request(reqwest::Method::GET, "/api/v1/devices/D-1/history")
        .query(&[("from", later.as_str())])
        .send()
        .await
        .unwrap();
    let body: Value = a.json().await.unwrap();
    assert!(body["items"].as_array().unwrap().is_empty());
    let a = c.get("/api/v1/devices/D-1/history?from=yesterday").await;
    assert_eq!((a.status, a.error_code()), (422, "validation"));
}

#[tokio::test]
async fn seeding_is_deterministic_and_unlinked() {
    let a = start(3).await;
    let b = start(3).await;
    let sa = a.state().sites();
    let sb = b.state().sites();
    assert_eq!(sa.len(), 3);
    assert_eq!(sa, sb);
    for s in &sa {
        assert!(s.fields.billing_id.is_none());
        assert_eq!(s.fields.state.len(), 2);
        assert_eq!(s.fields.zip.len(), 5);
        assert!(!s.fields.phone.is_empty());
        let devices = a.state().devices(&s.site_no);
        assert!((1..=3).contains(&devices.len()));
        for d in &devices {
            assert!(!a.state().configurations(&d.device_id).is_empty());
            assert!(a
                .state()
                .history(&d.device_id)
                .iter()
                .any(|h| h.kind == stages_sim::wire::HistoryKind::Signal));
            assert!(d.fields.first_signal_at.is_some());
        }
        let contacts = a.state().contacts(&s.site_no);
        assert!((1..=3).contains(&contacts.len()));
        assert_eq!(a.state().notes(&s.site_no).len(), 1);
    }

    let t = Instant::now();
    let big = start(10_000).await;
    let took = t.elapsed();
    assert_eq!(big.state().site_count(), 10_000);
    let st = big.state().stats();
    assert!(st.devices >= 10_000);
    let codes: HashSet<String> = big
        .state()
        .with_db(|db| db.sites())
        .iter()
        .take(200)
        .flat_map(|s| big.state().devices(&s.site_no))
        .map(|d| d.fields.transmitter_code)
        .collect();
    assert!(codes.len() > 200);
    // How long it took is for reading, not a pass mark: speed is measured by
    // `make bench`, and a loaded CI machine must not fail this.
    eprintln!("seeding 10,000 sites took {took:?} (debug build)");

    let c = Client::new(&big);
    let a = c.get("/api/v1/sites?unlinked=true&page_size=500").await;
    assert_eq!(a.body["items"].as_array().unwrap().len(), 500);
    assert!(a.body["next_page_token"].is_string());

    // Every device, a page at a time, without a request per site.
    let t = Instant::now();
    let a = c
        .get("/api/v1/devices?has_billing_id=false&page_size=500")
        .await;
    assert_eq!(a.body["items"].as_array().unwrap().len(), 500);
    let token = a.body["next_page_token"].as_str().unwrap().to_string();
    let a = c
        .get(&format!("/api/v1/devices?page_size=500&page_token={token}"))
        .await;
    assert_eq!(a.body["items"][0]["device_id"], "D-501");
    let a = c.get("/api/v1/devices?has_billing_id=true").await;
    assert!(a.body["items"].as_array().unwrap().is_empty());
    assert!(a.body["next_page_token"].is_null());
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "device pages took {took:?}");
}

#[tokio::test]
async fn stats_count_requests_and_records() {
    let sim = start(2).await;
    let c = Client::new(&sim);
    let anon = Client::anonymous(&sim);
    c.get("/api/v1/ping").await;
    anon.get("/api/v1/ping").await;
    c.get("/api/v1/sites/10001").await;
    c.get("/api/v1/sites/10002").await;
    c.post("/api/v1/sites", json!({"name": ""})).await;
    c.get("/api/v1/nowhere").await;

    let a = anon.get("/admin/stats").await;
    assert_eq!(a.status, 200);
    let r = &a.body["requests"];
    assert_eq!(r["GET /api/v1/ping"], 2, "{}", a.body);
    assert_eq!(r["GET /api/v1/sites/{site_no}"], 2);
    assert_eq!(r["POST /api/v1/sites"], 1);
    assert_eq!(r["GET (unmatched)"], 1);
    assert_eq!(a.body["total_requests"], 6);
    assert_eq!(a.body["sites"], 2);
    assert!(a.body["devices"].as_u64().unwrap() >= 2);
    assert!(a.body["contacts"].as_u64().unwrap() >= 2);
    assert_eq!(a.body["tests"], 0);
    assert_eq!(sim.state().request_count("GET /api/v1/ping"), 2);

    // Reset: back to the seeded start, counters cleared.
    c.post("/api/v1/sites", json!({"name": "extra"})).await;
    assert_eq!(sim.state().site_count(), 3);
    assert_eq!(anon.post("/admin/reset", json!({})).await.status, 204);
    assert_eq!(sim.state().site_count(), 2);
    assert_eq!(sim.state().stats().total_requests, 0);
}

/// Pages through `GET /api/v1/devices` with `filters` (a query string, may be
/// empty); answers the device ids in order and the number of pages.
async fn all_devices(c: &Client, filters: &str, page_size: u32) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query: Vec<(&str, String)> = vec![("page_size", page_size.to_string())];
        if let Some(t) = &token {
            query.push(("page_token", t.clone()));
        }
        let path = format!("/api/v1/devices?{filters}");
        let res = c
            .request(reqwest::Method::GET, &path)
            .query(&query)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        pages += 1;
        let items = body["items"].as_array().unwrap();
        assert!(items.len() <= page_size as usize);
        ids.extend(
            items
                .iter()
                .map(|d| d["device_id"].as_str().unwrap().to_string()),
        );
        match body["next_page_token"].as_str() {
            Some(t) => {
                assert!(!items.is_empty(), "a page with a successor has items");
                token = Some(t.to_string());
            }
            None => break,
        }
    }
    (ids, pages)
}

fn device_no(id: &str) -> u64 {
    id.strip_prefix("D-").unwrap().parse().unwrap()
}

#[tokio::test]
async fn lists_every_device_in_id_order_with_filters_and_pages() {
    let sim = start(30).await;
    let c = Client::new(&sim);
    let sites = sim.state().sites();
    let per_site: Vec<Vec<String>> = sites
        .iter()
        .map(|s| {
            sim.state()
                .devices(&s.site_no)
                .into_iter()
                .map(|d| d.device_id)
                .collect()
        })
        .collect();
    let mut expected: Vec<String> = per_site.iter().flatten().cloned().collect();
    expected.sort_by_key(|id| device_no(id));
    assert!(expected.len() > 30, "seeded sites have 1-3 devices each");
    assert_eq!(expected.len(), sim.state().stats().devices);

    // Every device, across pages, in numeric id order (D-9 before D-10).
    let (ids, pages) = all_devices(&c, "", 7).await;
    assert_eq!(ids, expected);
    assert_eq!(pages, expected.len().div_ceil(7));
    assert!(ids.windows(2).all(|w| device_no(&w[0]) < device_no(&w[1])));

    // Default and largest page sizes.
    let a = c.get("/api/v1/devices").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["items"].as_array().unwrap().len(), 50);
    assert!(a.body["next_page_token"].is_string());
    let a = c.get("/api/v1/devices?page_size=500").await;
    assert_eq!(a.body["items"].as_array().unwrap().len(), expected.len());
    assert!(a.body["next_page_token"].is_null());
    // The devices are the full records, as served one by one.
    let first = &a.body["items"][0];
    let one = c.get(&format!("/api/v1/devices/{}", expected[0])).await;
    assert_eq!(first, &one.body);

    // Link a few devices: two of site 1, one of site 3.
    let linked = [
        (per_site[0][0].clone(), "SYS-A"),
        (per_site[2][0].clone(), "SYS-B"),
    ];
    for (id, b) in &linked {
        let a = c
            .patch(&format!("/api/v1/devices/{id}"), json!({"billing_id": b}))
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let extra = c
        .post(
            &format!("/api/v1/sites/{}/devices", sites[0].site_no),
            json!({"transmitter_code": "990001", "billing_id": "SYS-C"}),
        )
        .await;
    assert_eq!(extra.status, 201, "{}", extra.body);
    let extra_id = extra.body["device_id"].as_str().unwrap().to_string();

    // billing_id: exact, at most one device.
    let a = c.get("/api/v1/devices?billing_id=SYS-B").await;
    let items = a.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["device_id"], per_site[2][0].as_str());
    assert_eq!(items[0]["billing_id"], "SYS-B");
    assert!(a.body["next_page_token"].is_null());
    let a = c.get("/api/v1/devices?billing_id=SYS-404").await;
    assert_eq!(a.status, 200);
    assert!(a.body["items"].as_array().unwrap().is_empty());

    // site_no: the site's devices, as its own list gives them.
    let site1 = &sites[0].site_no;
    let (ids, _) = all_devices(&c, &format!("site_no={site1}"), 2).await;
    let mut own: Vec<String> = per_site[0].clone();
    own.push(extra_id.clone());
    assert_eq!(ids, own);
    let listed = c.get(&format!("/api/v1/sites/{site1}/devices")).await;
    let listed: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, listed);
    for unknown in ["99999", "not-a-site"] {
        let a = c.get(&format!("/api/v1/devices?site_no={unknown}")).await;
        assert_eq!(a.status, 200);
        assert!(a.body["items"].as_array().unwrap().is_empty());
    }

    // has_billing_id: the linked and the unlinked split the whole list.
    let (with, _) = all_devices(&c, "has_billing_id=true", 2).await;
    let mut want = vec![linked[0].0.clone(), linked[1].0.clone(), extra_id.clone()];
    want.sort_by_key(|id| device_no(id));
    assert_eq!(with, want);
    let (without, pages) = all_devices(&c, "has_billing_id=false", 10).await;
    assert_eq!(without.len() + with.len(), expected.len() + 1);
    assert!(without.iter().all(|id| !want.contains(id)));
    assert!(without
        .windows(2)
        .all(|w| device_no(&w[0]) < device_no(&w[1])));
    assert_eq!(pages, without.len().div_ceil(10));

    // Filters combine with AND.
    let (ids, _) = all_devices(&c, &format!("site_no={site1}&has_billing_id=true"), 1).await;
    let mut both = vec![linked[0].0.clone(), extra_id.clone()];
    both.sort_by_key(|id| device_no(id));
    assert_eq!(ids, both);
    let (ids, _) = all_devices(&c, &format!("site_no={site1}&has_billing_id=false"), 50).await;
    assert_eq!(ids, per_site[0][1..].to_vec());
    let (ids, _) = all_devices(&c, &format!("site_no={site1}&billing_id=SYS-B"), 50).await;
    assert!(ids.is_empty(), "SYS-B is on another site");
    let (ids, _) = all_devices(&c, "billing_id=SYS-A&has_billing_id=false", 50).await;
    assert!(ids.is_empty());

    // Refusals.
    for bad in [
        "page_size=0",
        "page_size=501",
        "page_size=-1",
        "page_token=garbage",
        "has_billing_id=maybe",
    ] {
        let a = c.get(&format!("/api/v1/devices?{bad}")).await;
        assert_eq!((a.status, a.error_code()), (422, "validation"), "{bad}");
    }
    // A token of the site list is not one of this list.
    let site_token = c.get("/api/v1/sites?page_size=1").await.body["next_page_token"]
        .as_str()
        .unwrap()
        .to_string();
    let a = c
        .get(&format!("/api/v1/devices?page_token={site_token}"))
        .await;
    assert_eq!((a.status, a.error_code()), (422, "validation"));
    assert!(a.error_message().contains("page_token"), "{}", a.body);
    let a = c.post("/api/v1/devices", json!({})).await;
    assert_eq!((a.status, a.error_code()), (405, "method_not_allowed"));
    let a = Client::anonymous(&sim).get("/api/v1/devices").await;
    assert_eq!(a.status, 401);

    // Counted under its own route, apart from the single device.
    assert!(sim.state().request_count("GET /api/v1/devices") > 20);
    assert_eq!(
        sim.state().request_count("GET /api/v1/devices/{device_id}"),
        1
    );
}

#[tokio::test]
async fn device_list_shows_devices_on_test() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    create_site(&c, "Tested", &["910001", "910002"]).await;
    let now = Utc::now();
    let a = c
        .post(
            "/api/v1/devices/D-2/tests",
            json!({
                "effective": (now - chrono::Duration::minutes(1)).to_rfc3339(),
                "expire": (now + chrono::Duration::hours(1)).to_rfc3339(),
            }),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let a = c.get("/api/v1/devices").await;
    let items = a.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["status"], "normal");
    assert_eq!(
        items[1]["status"], "on_test",
        "served as the single device is"
    );
}
