//! End to end: hostile input is a 4xx on both backends. Every operation of the
//! committed OpenAPI document is tried with a NUL in each of its string inputs
//! (path, query, body) and must answer 422 naming the input; `.` and `..` are
//! never ids. Answers kept for `Idempotency-Key` replays hold no plaintext
//! secret, and a request refused before any effect does not use up its key.

mod support;

use reqwest::Method;
use serde_json::{json, Map, Value};
use support::*;

const POISON: &str = "x\u{0}y";

fn openapi() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../openapi/openapi.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A body shaped like `schema` with every string poisoned; numbers, flags and
/// lists take a plain value so the strings are what is judged.
fn poisoned(doc: &Value, schema: &Value, depth: usize) -> Value {
    if let Some(name) = schema["$ref"].as_str() {
        let name = name.rsplit('/').next().unwrap();
        return poisoned(doc, &doc["components"]["schemas"][name], depth);
    }
    for combined in ["allOf", "oneOf", "anyOf"] {
        if let Some(first) = schema[combined]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["type"] != "null").or_else(|| a.first()))
        {
            return poisoned(doc, first, depth);
        }
    }
    let kind = match &schema["type"] {
        Value::Array(kinds) => kinds
            .iter()
            .find(|k| *k != "null")
            .and_then(Value::as_str)
            .unwrap_or("string"),
        Value::String(kind) => kind.as_str(),
        _ if schema["properties"].is_object() => "object",
        _ => "string",
    };
    match kind {
        "integer" | "number" => json!(1),
        "boolean" => json!(true),
        "array" if depth < 4 => json!([poisoned(doc, &schema["items"], depth + 1)]),
        "array" => json!([]),
        "object" if depth < 4 => {
            let mut out = Map::new();
            if let Some(properties) = schema["properties"].as_object() {
                for (name, property) in properties {
                    out.insert(name.clone(), poisoned(doc, property, depth + 1));
                }
            }
            if out.is_empty() {
                out.insert("note".into(), json!(POISON));
            }
            Value::Object(out)
        }
        "object" => json!({}),
        _ => json!(POISON),
    }
}

/// A value a path parameter of that name parses as, so the poisoned input is
/// the only thing wrong with the request.
fn plain_value(name: &str) -> &'static str {
    match name {
        "connection_id" | "link_id" | "job_id" | "import_id" | "subscription_id" => {
            "0190a0c4-7b1e-7000-8000-000000000001"
        }
        _ => "1",
    }
}

fn concrete_path(template: &str, poisoned_param: Option<&str>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').unwrap() + start;
        let name = &rest[start + 1..end];
        out.push_str(&rest[..start]);
        if Some(name) == poisoned_param {
            out.push_str("x%00y");
        } else {
            out.push_str(plain_value(name));
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn is_string_input(doc: &Value, schema: &Value) -> bool {
    if let Some(name) = schema["$ref"].as_str() {
        let name = name.rsplit('/').next().unwrap();
        return is_string_input(doc, &doc["components"]["schemas"][name]);
    }
    match &schema["type"] {
        Value::String(kind) => kind == "string",
        Value::Array(kinds) => kinds.iter().any(|k| k == "string"),
        _ => ["allOf", "oneOf", "anyOf"].iter().any(|c| {
            schema[*c]
                .as_array()
                .is_some_and(|a| a.iter().any(|s| is_string_input(doc, s)))
        }),
    }
}

async fn send(
    svc: &Service,
    method: &str,
    path: &str,
    body: Option<&Value>,
    admin: &Who,
    basic: &(String, String),
) -> Answer {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut rb = svc.http.request(method, svc.url(path));
    rb = if path.starts_with("/v1/webhooks/") {
        rb.basic_auth(&basic.0, Some(&basic.1))
    } else {
        rb.bearer_auth(admin.token())
    };
    if let Some(body) = body {
        rb = rb.json(body);
    }
    Answer::from(rb.send().await.unwrap()).await
}

async fn every_string_input_refuses_control_characters(backend: Backend) {
    let svc = Service::start_on(backend, vec![]).await;
    let admin = Who::admin("hostile");
    let cid = svc
        .create_connection(&admin, "Stages", "http://127.0.0.1:9", "dealer")
        .await;
    let rotated = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{cid}/inbound-credentials:rotate"),
            &admin,
            None,
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let basic = (
        rotated.body["username"].as_str().unwrap().to_owned(),
        rotated.body["secret"].as_str().unwrap().to_owned(),
    );

    let doc = openapi();
    let mut tried = 0;
    let mut wrong = Vec::new();
    for (template, operations) in doc["paths"].as_object().unwrap() {
        for (method, op) in operations.as_object().unwrap() {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let mut cases: Vec<(String, Option<Value>, String)> = Vec::new();
            for p in &params {
                let name = p["name"].as_str().unwrap();
                if !is_string_input(&doc, &p["schema"]) {
                    continue;
                }
                match p["in"].as_str().unwrap() {
                    "path" => cases.push((concrete_path(template, Some(name)), None, name.into())),
                    "query" => cases.push((
                        format!("{}?{name}=x%00y", concrete_path(template, None)),
                        None,
                        name.into(),
                    )),
                    _ => {} // headers cannot carry a NUL on the wire
                }
            }
            if let Some(schema) = op["requestBody"]["content"]["application/json"].get("schema") {
                let path = if template == "/v1/webhooks/stages/{connection_id}" {
                    template.replace("{connection_id}", &cid)
                } else {
                    concrete_path(template, None)
                };
                let body = poisoned(&doc, schema, 0);
                // A body of numbers and flags only has no text to refuse.
                if body.to_string().contains("\\u0000") {
                    cases.push((path, Some(body), "body".into()));
                }
            }
            for (path, body, input) in cases {
                tried += 1;
                let a = send(&svc, method, &path, body.as_ref(), &admin, &basic).await;
                // Alarm.com and Alarm.net callbacks are signed over the body:
                // an unsigned one is refused (401) before it is read.
                let signed = template.starts_with("/v1/webhooks/alarm");
                let ok = if input == "body" && signed {
                    a.status == 401
                } else {
                    a.status == 422
                        && a.content_type() == "application/problem+json"
                        && (input == "body"
                            || a.body["errors"]
                                .as_array()
                                .is_some_and(|e| e.iter().any(|f| f["field"] == input.as_str())))
                };
                if !ok {
                    wrong.push(format!(
                        "{method} {path} ({input}): {} {}",
                        a.status, a.text
                    ));
                }
            }
        }
    }
    assert!(tried > 100, "only {tried} inputs tried");
    assert!(
        wrong.is_empty(),
        "not refused with 422:\n{}",
        wrong.join("\n")
    );

    // The callback Stages retries on a 5xx: a NUL in its event id is a 422.
    let a = send(
        &svc,
        "post",
        &format!("/v1/webhooks/stages/{cid}"),
        Some(&json!({"event_id": "e\u{0}1", "occurred_at": "2026-12-01T00:00:00Z", "type": "site.updated", "site_no": 1})),
        &admin,
        &basic,
    )
    .await;
    assert_eq!(a.status, 422, "{}", a.text);
    assert_eq!(a.body["errors"][0]["field"], "event_id", "{}", a.text);
}

/// One request written by hand: HTTP clients remove `.` and `..` segments
/// (and their `%2E` spellings) before sending, as the URL standard says.
async fn raw_put(svc: &Service, path: &str, who: &Who, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = svc.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "PUT {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        who.token(),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer[9..12].parse().unwrap();
    (status, answer)
}

/// Every query parameter of every operation given a value of the wrong type
/// (a word for a number or a flag, an unknown name for a list of choices)
/// answers 422 naming that parameter, in words without Rust type names.
#[tokio::test]
async fn every_query_parameter_of_the_wrong_type_is_named() {
    let svc = Service::start().await;
    let admin = Who::admin("typed");
    let basic = (String::new(), String::new());
    let doc = openapi();
    let mut tried = 0;
    let mut wrong = Vec::new();
    for (template, operations) in doc["paths"].as_object().unwrap() {
        for (method, op) in operations.as_object().unwrap() {
            for p in op["parameters"].as_array().cloned().unwrap_or_default() {
                let name = p["name"].as_str().unwrap();
                let schema = &p["schema"];
                let typed = schema["type"] == "integer"
                    || schema["type"] == "boolean"
                    || schema["type"]
                        .as_array()
                        .is_some_and(|t| t.iter().any(|k| k == "integer" || k == "boolean"))
                    || !is_string_input(&doc, schema)
                    || schema.get("$ref").is_some();
                if p["in"] != "query" || !typed {
                    continue;
                }
                tried += 1;
                let path = format!("{}?{name}=zz-not-it", concrete_path(template, None));
                let body = (op.get("requestBody").is_some()).then(|| json!({}));
                let a = send(&svc, method, &path, body.as_ref(), &admin, &basic).await;
                let named = a.body["errors"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|f| f["field"] == name));
                let plain = !a.text.contains("expected u") && !a.text.contains("struct ");
                if a.status != 422 || !named || !plain {
                    wrong.push(format!("{method} {path}: {} {}", a.status, a.text));
                }
            }
        }
    }
    assert!(tried > 20, "only {tried} parameters tried");
    assert!(wrong.is_empty(), "not named:\n{}", wrong.join("\n"));
}

/// An operation that takes no body refuses one with fields it does not know,
/// as every other operation refuses unknown fields.
#[tokio::test]
async fn operations_without_a_body_refuse_unknown_fields() {
    let svc = Service::start().await;
    let admin = Who::admin("nobody");
    let basic = (String::new(), String::new());
    let doc = openapi();
    let mut tried = 0;
    let mut wrong = Vec::new();
    for (template, operations) in doc["paths"].as_object().unwrap() {
        let Some(op) = operations.get("post") else {
            continue;
        };
        if op.get("requestBody").is_some() || template.starts_with("/v1/webhooks/") {
            continue;
        }
        tried += 1;
        let path = concrete_path(template, None);
        let a = send(
            &svc,
            "post",
            &path,
            Some(&json!({"surprise": 1})),
            &admin,
            &basic,
        )
        .await;
        if a.status != 422 || !a.text.contains("surprise") {
            wrong.push(format!("POST {path}: {} {}", a.status, a.text));
        }
    }
    assert!(tried >= 5, "only {tried} operations tried");
    assert!(
        wrong.is_empty(),
        "a body was not refused:\n{}",
        wrong.join("\n")
    );
}

async fn dot_segments_and_dot_ids_are_not_ids(backend: Backend) {
    let svc = Service::start_on(backend, vec![]).await;
    let admin = Who::admin("dots");
    let customer = r#"{"kind":"business","business_name":"Dot"}"#;
    for path in [
        "/v1/billing/customers/..",
        "/v1/billing/customers/.",
        "/v1/billing/customers/%2E%2E",
        "/v1/billing/sites/%2e",
    ] {
        let (status, answer) = raw_put(&svc, path, &admin, customer).await;
        assert_eq!(status, 422, "{path}: {answer}");
        assert!(answer.contains("'.' or '..'"), "{path}: {answer}");
    }
    // Taken from a body, `..` is no billing id either.
    let cid = svc
        .create_connection(&admin, "Stages", "http://127.0.0.1:9", "dealer")
        .await;
    let a = svc
        .call(
            Method::POST,
            "/v1/links",
            &admin,
            Some(json!({"connection_id": cid, "billing_site_id": "..", "stages_site_no": "1", "systems": []})),
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.text);
    assert!(
        a.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["field"] == "billing_site_id"),
        "{}",
        a.text
    );
    // Nothing was stored under a dot name.
    let list = svc
        .call(Method::GET, "/v1/billing/customers", &admin, None)
        .await;
    assert_eq!(list.body["items"], json!([]), "{}", list.text);
}

/// Every byte the database keeps for this service, as text: the SQLite file
/// and its write-ahead log, or the idempotency rows of the PostgreSQL schema.
fn kept_answers(svc: &Service) -> String {
    if let Some(path) = svc.database_url.strip_prefix("sqlite://") {
        let mut all = Vec::new();
        for suffix in ["", "-wal"] {
            if let Ok(bytes) = std::fs::read(format!("{path}{suffix}")) {
                all.extend(bytes);
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    } else {
        let out = std::process::Command::new("psql")
            .args([
                &svc.database_url,
                "-qtAX",
                "-c",
                "SELECT coalesce(headers, ''), encode(coalesce(body, ''::bytea), 'escape') FROM idempotency_keys",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn count_rows(svc: &Service, sql: &str) -> u64 {
    svc.sql(sql).parse().unwrap()
}

async fn idempotent_answers_are_sealed_and_refusals_do_not_use_the_key(backend: Backend) {
    let svc = Service::start_on(backend, vec![]).await;
    let admin = Who::admin("sealed");
    let cid = svc
        .create_connection(&admin, "Stages", "http://127.0.0.1:9", "dealer")
        .await;
    let rotate = || {
        svc.req(
            Method::POST,
            &format!("/v1/connections/{cid}/inbound-credentials:rotate"),
            &admin,
        )
        .header("idempotency-key", "rotate-1")
        .send()
    };
    let first = Answer::from(rotate().await.unwrap()).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let secret = first.body["secret"].as_str().unwrap().to_owned();
    let subscribe = |url: &str| {
        svc.req(Method::POST, "/v1/webhook-subscriptions", &admin)
            .header("idempotency-key", "subscribe-1")
            .json(&json!({"url": url}))
            .send()
    };
    // Refused by validation: nothing done, so the key is still free for
    // the corrected request.
    let refused = Answer::from(subscribe("not a url").await.unwrap()).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    let created = Answer::from(subscribe("http://127.0.0.1:9/hook").await.unwrap()).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert!(created.headers.get("idempotent-replayed").is_none());
    let signing = created.body["secret"].as_str().unwrap().to_owned();

    assert_eq!(
        count_rows(
            &svc,
            "SELECT count(*) FROM idempotency_keys WHERE state = 'done'"
        ),
        2,
        "both answers are kept for replay"
    );
    let kept = kept_answers(&svc);
    assert!(
        !kept.contains(&secret),
        "the inbound secret is kept in clear"
    );
    assert!(
        !kept.contains(&signing),
        "the signing secret is kept in clear"
    );

    // The rightful caller's replay still gets the secret.
    let again = Answer::from(rotate().await.unwrap()).await;
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body["secret"], secret.as_str());
    let again = Answer::from(subscribe("http://127.0.0.1:9/hook").await.unwrap()).await;
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body["secret"], signing.as_str());
    // Another caller's key of the same name is another key.
    let other = Answer::from(
        svc.req(
            Method::POST,
            &format!("/v1/connections/{cid}/inbound-credentials:rotate"),
            &Who::new("sealed", "mallory", "admin"),
        )
        .header("idempotency-key", "rotate-1")
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(other.status, 200, "{}", other.text);
    assert_ne!(other.body["secret"], secret.as_str());
}

on_both_backends!(
    every_string_input_refuses_control_characters,
    dot_segments_and_dot_ids_are_not_ids,
    idempotent_answers_are_sealed_and_refusals_do_not_use_the_key,
);

/// State, zip and phone are checked with the rules the sync compares them by,
/// and every refused field is listed at once.
#[tokio::test]
async fn loose_state_zip_and_phone_values_are_refused_together() {
    let svc = Service::start().await;
    let admin = Who::admin("loose");
    let a = svc
        .call(
            Method::PUT,
            "/v1/billing/customers/C1",
            &admin,
            Some(
                json!({"kind": "person", "first_name": "Ada", "last_name": "Lovelace",
                "state": "ZZ", "zip": "hello", "phone": "abc"}),
            ),
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.text);
    let mut fields: Vec<&str> = a.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(fields, ["phone", "state", "zip"], "{}", a.text);
    // The same values written the ways people write them are taken as given.
    let ok = svc
        .call(
            Method::PUT,
            "/v1/billing/customers/C1",
            &admin,
            Some(
                json!({"kind": "person", "first_name": "Ada", "last_name": "Lovelace",
                "state": "Ohio", "zip": "43004-1234", "phone": "+1 (614) 555-0101 ext. 7"}),
            ),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.text);
    assert_eq!(ok.body["state"], "Ohio");
}

/// An id given in a body that names nothing is a 422 on that field, on every
/// route (an id in the path that names nothing stays a 404).
#[tokio::test]
async fn ids_in_a_body_that_name_nothing_are_422_naming_the_field() {
    let sim = start_sim(0).await;
    let svc = Service::start().await;
    let admin = Who::admin("refs");
    let cid = svc
        .create_connection(&admin, "Refs", &sim.base_url(), "dealer")
        .await;
    svc.call(
        Method::PUT,
        &format!("/v1/connections/{cid}/credentials/dealer"),
        &admin,
        Some(json!({"username": SIM_USER, "password": SIM_PASSWORD})),
    )
    .await;
    let field_of = |a: &Answer| {
        assert_eq!(a.status, 422, "{}", a.text);
        a.body["errors"][0]["field"].as_str().unwrap().to_owned()
    };
    let site = svc
        .call(
            Method::PUT,
            "/v1/billing/sites/S1",
            &admin,
            Some(json!({"name": "Elm", "customer_id": "nobody"})),
        )
        .await;
    assert_eq!(field_of(&site), "customer_id");
    let system = svc
        .call(
            Method::PUT,
            "/v1/billing/systems/SYS1",
            &admin,
            Some(json!({"site_id": "nowhere"})),
        )
        .await;
    assert_eq!(field_of(&system), "site_id");
    let unknown = "0190a0c4-7b1e-7000-8000-000000000001";
    let link = |connection: &str, site: &str| {
        json!({"connection_id": connection, "billing_site_id": site, "stages_site_no": "1",
            "systems": [{"billing_system_id": "SYS1", "stages_device_id": "1"}]})
    };
    let a = svc
        .call(Method::POST, "/v1/links", &admin, Some(link(unknown, "S1")))
        .await;
    assert_eq!(field_of(&a), "connection_id");
    let a = svc
        .call(Method::POST, "/v1/links", &admin, Some(link(&cid, "S1")))
        .await;
    assert_eq!(field_of(&a), "billing_site_id");
    let push = format!("/v1/connections/{cid}/push");
    let a = svc
        .call(
            Method::POST,
            &push,
            &admin,
            Some(json!({"billing_site_id": "S1", "site": {}, "systems": []})),
        )
        .await;
    assert_eq!(field_of(&a), "billing_site_id");
    svc.call(
        Method::PUT,
        "/v1/billing/sites/S2",
        &admin,
        Some(json!({"name": "Oak"})),
    )
    .await;
    let a = svc
        .call(
            Method::POST,
            &push,
            &admin,
            Some(json!({"billing_site_id": "S2", "site": {},
                "systems": [{"billing_system_id": "GONE", "device": {"transmitter_code": "4400001"}}]})),
        )
        .await;
    assert_eq!(field_of(&a), "systems[0].billing_system_id");
    // A connection named in the path that names nothing is still not found.
    let a = svc
        .call(
            Method::POST,
            &format!("/v1/connections/{unknown}/push"),
            &admin,
            Some(json!({"billing_site_id": "S2", "site": {}, "systems": []})),
        )
        .await;
    assert_eq!(a.status, 404, "{}", a.text);
}
