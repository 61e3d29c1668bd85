//! The OpenAPI document as an integrator reads it (B1): every operation
//! described, every body with an example that matches its schema, every
//! answer described, every served route documented, every problem code
//! registered and served as a page at the URI its problems name.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::*;

const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

fn document() -> Value {
    serde_json::from_str(&api::openapi::document()).expect("the document is JSON")
}

/// Every operation: (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((method.to_owned(), path.clone(), op.clone()));
            }
        }
    }
    out
}

/// The operation's own description: what comes before the problem codes.
fn own_description(op: &Value) -> &str {
    let text = op["description"].as_str().unwrap_or_default();
    text.split("**Problem codes:**")
        .next()
        .unwrap_or_default()
        .trim()
}

fn every_operation_is_described_in(doc: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    for (method, path, op) in operations(doc) {
        let summary = op["summary"].as_str().unwrap_or_default();
        if summary.is_empty() || summary.len() > 80 || summary.contains('\n') {
            missing.push(format!(
                "{method} {path}: a one-line summary of at most 80 characters"
            ));
        }
        if own_description(&op).len() < 40 {
            missing.push(format!("{method} {path}: a description"));
        }
    }
    missing
}

#[test]
fn every_operation_has_a_short_summary_and_a_description() {
    let missing = every_operation_is_described_in(&document());
    assert!(missing.is_empty(), "{missing:#?}");
}

#[test]
fn the_description_check_fails_on_an_undescribed_operation() {
    let mut doc = document();
    let op = &mut doc["paths"]["/v1/links"]["post"];
    op["description"] = Value::from("**Problem codes:** `validation` (422).");
    assert_eq!(every_operation_is_described_in(&doc).len(), 1);
}

fn bodies_without_an_example(doc: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    for (method, path, op) in operations(doc) {
        for (media, content) in op["requestBody"]["content"]
            .as_object()
            .into_iter()
            .flatten()
        {
            if content.get("example").is_none() && content.get("examples").is_none() {
                missing.push(format!("{method} {path} ({media})"));
            }
        }
    }
    missing
}

#[test]
fn every_request_body_has_an_example() {
    let missing = bodies_without_an_example(&document());
    assert!(
        missing.is_empty(),
        "request bodies without an example: {missing:#?}"
    );
}

#[test]
fn the_example_check_fails_on_a_body_without_one() {
    let mut doc = document();
    let content =
        &mut doc["paths"]["/v1/links"]["post"]["requestBody"]["content"]["application/json"];
    content.as_object_mut().unwrap().remove("example");
    assert_eq!(
        bodies_without_an_example(&doc),
        ["post /v1/links (application/json)"]
    );
}

/// A small JSON Schema check over what the document uses: `$ref`, `type`
/// (one or several), `enum`, `properties`, `required`,
/// `additionalProperties: false`, `items`, `oneOf`/`anyOf`/`allOf`,
/// `minimum`, `minLength`/`maxLength` and the `uuid`, `date` and
/// `date-time` formats. Returns what does not match, with its place.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return check(doc, &doc["components"]["schemas"][name], value, at, out);
    }
    for all in schema["allOf"].as_array().into_iter().flatten() {
        check(doc, all, value, at, out);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(choices) = schema[key].as_array() {
            let fits = choices.iter().filter(|c| {
                let mut errors = Vec::new();
                check(doc, c, value, at, &mut errors);
                errors.is_empty()
            });
            let n = fits.count();
            if n == 0 || (key == "oneOf" && n > 1) {
                out.push(format!("{at}: {n} of the {key} choices match"));
            }
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        if !values.contains(value) {
            out.push(format!("{at}: {value} is not one of {values:?}"));
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() {
        let fits = types.iter().any(|t| match *t {
            "null" => value.is_null(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => false,
        });
        if !fits {
            out.push(format!("{at}: {value} is not of type {types:?}"));
            return;
        }
    }
    if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), value.as_f64()) {
        if n < min {
            out.push(format!("{at}: {n} is below {min}"));
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|m| len < m)
            || schema["maxLength"].as_u64().is_some_and(|m| len > m)
        {
            out.push(format!("{at}: length {len} is out of bounds"));
        }
        let format_ok = match schema["format"].as_str() {
            Some("uuid") => uuid::Uuid::parse_str(s).is_ok(),
            Some("date-time") => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
            Some("date") => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
            _ => true,
        };
        if !format_ok {
            out.push(format!("{at}: {s:?} is not a {}", schema["format"]));
        }
    }
    if let Some(items) = value.as_array() {
        for (i, item) in items.iter().enumerate() {
            check(doc, &schema["items"], item, &format!("{at}[{i}]"), out);
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema["properties"].as_object();
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap_or_default();
            if !object.contains_key(name) {
                out.push(format!("{at}: {name} is required"));
            }
        }
        for (name, v) in object {
            match properties.and_then(|p| p.get(name)) {
                Some(property) => check(doc, property, v, &format!("{at}.{name}"), out),
                None if schema["additionalProperties"] == false => {
                    out.push(format!("{at}: {name} is not a field"));
                }
                None => {}
            }
        }
    }
}

/// Every example of a body or an answer that does not match its schema.
fn examples_off_schema(doc: &Value) -> (usize, Vec<String>) {
    let (mut checked, mut wrong) = (0, Vec::new());
    for (method, path, op) in operations(doc) {
        let mut contents = Vec::new();
        for (media, content) in op["requestBody"]["content"]
            .as_object()
            .into_iter()
            .flatten()
        {
            contents.push((format!("body {media}"), content));
        }
        for (status, response) in op["responses"].as_object().into_iter().flatten() {
            for (media, content) in response["content"].as_object().into_iter().flatten() {
                contents.push((format!("{status} {media}"), content));
            }
        }
        for (what, content) in contents {
            if let Some(example) = content.get("example") {
                checked += 1;
                check(
                    doc,
                    &content["schema"],
                    example,
                    &format!("{method} {path} {what}"),
                    &mut wrong,
                );
            }
        }
    }
    (checked, wrong)
}

#[test]
fn every_example_matches_its_schema() {
    let (checked, wrong) = examples_off_schema(&document());
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert!(checked >= 35, "only {checked} examples");
}

#[test]
fn the_schema_check_finds_a_wrong_example() {
    let mut doc = document();
    let content =
        &mut doc["paths"]["/v1/links"]["post"]["requestBody"]["content"]["application/json"];
    content["example"]["systems"][0]["stages_device"] = Value::from(7);
    content["example"]["connection_id"] = Value::from("not-a-uuid");
    let push = &mut doc["paths"]["/v1/connections/{connection_id}/push"]["post"];
    push["requestBody"]["content"]["application/json"]["example"]["contacts"][0]["phones"][0]
        ["kind"] = Value::from("cell");
    let (_, wrong) = examples_off_schema(&doc);
    assert_eq!(wrong.len(), 3, "{wrong:#?}");
}

fn undescribed_responses(doc: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    for (method, path, op) in operations(doc) {
        for (status, response) in op["responses"].as_object().unwrap() {
            let response = match response["$ref"].as_str() {
                Some(r) => {
                    &doc["components"]["responses"][r.trim_start_matches("#/components/responses/")]
                }
                None => response,
            };
            if response["description"]
                .as_str()
                .unwrap_or_default()
                .trim()
                .is_empty()
            {
                missing.push(format!("{method} {path} {status}"));
            }
        }
    }
    missing
}

#[test]
fn every_response_is_described() {
    let missing = undescribed_responses(&document());
    assert!(missing.is_empty(), "{missing:#?}");
}

#[test]
fn the_response_check_fails_on_an_undescribed_one() {
    let mut doc = document();
    doc["paths"]["/v1/links"]["get"]["responses"]["200"]["description"] = Value::from("");
    assert_eq!(undescribed_responses(&doc), ["get /v1/links 200"]);
}

// ---- Served routes and documented ones come from one list ----

fn crate_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The body of `fn name` in `text`, from its `{` to the matching `}`.
fn function_body<'a>(text: &'a str, name: &str) -> &'a str {
    let start = text
        .find(&format!("fn {name}("))
        .unwrap_or_else(|| panic!("no fn {name}"));
    let open = start + text[start..].find('{').unwrap();
    let mut depth = 0;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &text[open..open + i + 1];
                }
            }
            _ => {}
        }
    }
    &text[open..]
}

fn literal_after<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(prefix)?.trim_start();
    let rest = rest.strip_prefix('"')?;
    rest.find('"').map(|end| &rest[..end])
}

/// A path argument: `"p"`, `format!("p")` or `&format!("p")`, with the
/// function's `let name = "..."` values put in for `{name}`.
fn path_argument(text: &str, lets: &[(String, String)]) -> Option<String> {
    let text = text.trim_start().trim_start_matches('&');
    let (literal, formatted) = match text.strip_prefix("format!(") {
        Some(rest) => (literal_after(rest, "")?, true),
        None => (literal_after(text, "")?, false),
    };
    if !formatted {
        return Some(literal.to_owned());
    }
    let mut path = literal.replace("{{", "\u{1}").replace("}}", "\u{2}");
    for (name, value) in lets {
        path = path.replace(&format!("{{{name}}}"), value);
    }
    Some(path.replace('\u{1}', "{").replace('\u{2}', "}"))
}

/// The routes a registration function registers, under `prefix`, as
/// "METHOD path": `.route(p, web::m()...)`, and `web::resource(p)` followed
/// by `.route(web::m()...)`, where `p` is a literal or a `format!` of the
/// function's `let` literals. Also returns how many `web::m()` it saw, so
/// that a form this scan does not read is noticed.
fn registered_in(body: &str, prefix: &str) -> (Vec<String>, usize) {
    let mut lets = Vec::new();
    for line in body.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("let ") {
            if let Some((name, value)) = rest.split_once(" = ") {
                if let Some(v) = literal_after(value, "") {
                    lets.push((name.trim().to_owned(), v.to_owned()));
                }
            }
        }
    }
    let mut routes = Vec::new();
    let mut resource = String::new();
    let mut methods_seen = 0;
    let mut i = 0;
    while i < body.len() {
        let rest = &body[i..];
        if let Some(after) = rest.strip_prefix("web::resource(") {
            resource = path_argument(after, &lets).unwrap_or_default();
        } else if let Some(after) = rest.strip_prefix(".route(") {
            let inner = after.trim_start();
            if let Some(m) = METHODS
                .iter()
                .find(|m| inner.starts_with(&format!("web::{m}()")))
            {
                routes.push(format!("{} {prefix}{resource}", m.to_uppercase()));
            } else if let Some(path) = path_argument(inner, &lets) {
                let end = if let Some(quoted) = inner.strip_prefix('"') {
                    quoted.find('"').map(|e| e + 2)
                } else {
                    inner.find("),").map(|e| e + 1)
                };
                let tail = &inner[end.unwrap_or(0)..];
                let tail = tail.trim_start_matches([')', '"', ',', ' ', '\n']);
                if let Some(m) = METHODS
                    .iter()
                    .find(|m| tail.starts_with(&format!("web::{m}()")))
                {
                    routes.push(format!("{} {prefix}{path}", m.to_uppercase()));
                }
            }
        }
        if METHODS
            .iter()
            .any(|m| rest.starts_with(&format!("web::{m}()")))
        {
            methods_seen += 1;
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    (routes, methods_seen)
}

/// The path of a handler registered with an actix macro (`#[get("/p")]`).
fn macro_route(module_file: &Path, handler: &str) -> String {
    let text = std::fs::read_to_string(module_file).unwrap();
    let at = text
        .find(&format!("pub async fn {handler}("))
        .unwrap_or_else(|| panic!("no handler {handler} in {}", module_file.display()));
    let before = &text[..at];
    let attr = before.rfind("#[").unwrap();
    let line = &before[attr..];
    let method = METHODS
        .iter()
        .find(|m| line.starts_with(&format!("#[{m}(")))
        .unwrap_or_else(|| panic!("{handler} has no route macro"));
    let path = literal_after(line, &format!("#[{method}(")).unwrap();
    format!("{} {path}", method.to_uppercase())
}

/// Every route `app::configure` serves, as "METHOD /path".
fn served_routes() -> Vec<String> {
    let src = crate_src();
    let app = std::fs::read_to_string(src.join("app.rs")).unwrap();
    let configure = function_body(&app, "configure");
    let mut routes = Vec::new();
    let mut scope = String::new();
    // How deep in parentheses the scan is, and the depth the open scope
    // was registered at: below it, the routes are outside the scope again.
    let (mut depth, mut scope_depth) = (0usize, 0usize);
    let mut i = 0;
    while i < configure.len() {
        let rest = &configure[i..];
        if let Some(path) = literal_after(rest, "web::scope(") {
            scope = path.to_owned();
            scope_depth = depth;
        } else if let Some(registration) = rest.strip_prefix(".configure(routes::") {
            let registration = &registration[..registration.find(')').unwrap()];
            let (module, function) = registration.split_once("::").unwrap();
            let file = src.join("routes").join(format!("{module}.rs"));
            let text = std::fs::read_to_string(&file).unwrap();
            let body = function_body(&text, function);
            let (found, seen) = registered_in(body, &scope);
            assert_eq!(
                found.len(),
                seen,
                "{module}::{function} registers a route this scan cannot read"
            );
            routes.extend(found);
        } else if rest.starts_with(".service(routes::") || rest.starts_with(".service(crate::") {
            let name = rest[".service(".len()..].split(')').next().unwrap();
            let parts: Vec<&str> = name.split("::").collect();
            let (file, handler) = match parts.as_slice() {
                ["routes", module, handler] => {
                    (src.join("routes").join(format!("{module}.rs")), *handler)
                }
                ["crate", module, handler] => (src.join(format!("{module}.rs")), *handler),
                _ => panic!("cannot read the registration {name}"),
            };
            let route = macro_route(&file, handler);
            let (method, path) = route.split_once(' ').unwrap();
            routes.push(format!("{method} {scope}{path}"));
        } else if rest.starts_with(".route(\"") {
            let line = &rest[..rest.find('\n').unwrap_or(rest.len())];
            let (found, seen) = registered_in(line, &scope);
            assert!(found.len() == 1 && seen == 1, "cannot read {line}");
            routes.extend(found);
        }
        match rest.chars().next() {
            Some('(') => depth += 1,
            Some(')') => {
                depth = depth.saturating_sub(1);
                if depth < scope_depth {
                    scope.clear();
                    scope_depth = 0;
                }
            }
            _ => {}
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    routes
}

/// The routes that serve the documentation itself, not the API.
const UNDOCUMENTED: [&str; 3] = ["GET /openapi.json", "GET /docs", "GET /docs/{file}"];

fn documented_routes(doc: &Value) -> BTreeSet<String> {
    operations(doc)
        .into_iter()
        .map(|(m, p, _)| format!("{} {p}", m.to_uppercase()))
        .collect()
}

#[test]
fn every_served_route_is_documented_and_every_documented_one_served() {
    let served: BTreeSet<String> = served_routes().into_iter().collect();
    assert!(
        served.len() >= 90,
        "the scan found only {} routes: {served:#?}",
        served.len()
    );
    let documented = documented_routes(&document());
    let undocumented: Vec<&String> = served
        .iter()
        .filter(|r| !documented.contains(*r) && !UNDOCUMENTED.contains(&r.as_str()))
        .collect();
    assert!(
        undocumented.is_empty(),
        "served but not in the document: {undocumented:#?}"
    );
    let unserved: Vec<&String> = documented.iter().filter(|r| !served.contains(*r)).collect();
    assert!(
        unserved.is_empty(),
        "in the document but not served: {unserved:#?}"
    );
}

#[test]
fn the_route_scan_reads_every_registration_form() {
    let body = r#"{
        let base = "/c/{cid}";
        cfg.route("/a/{id}:go", web::post().to(go))
            .service(
                web::resource("/b/{id}")
                    .route(web::get().to(get_b))
                    .route(web::delete().to(delete_b)),
            )
            .route(
                &format!("{base}/d/{{d_id}}"),
                web::patch().to(patch_d),
            )
            .service(web::resource(format!("{base}/e")).route(web::put().to(put_e)));
    }"#;
    let (routes, seen) = registered_in(body, "/v1");
    assert_eq!(
        routes,
        [
            "POST /v1/a/{id}:go",
            "GET /v1/b/{id}",
            "DELETE /v1/b/{id}",
            "PATCH /v1/c/{cid}/d/{d_id}",
            "PUT /v1/c/{cid}/e"
        ]
    );
    assert_eq!(seen, 5);
    let served = served_routes();
    for expected in [
        "GET /healthz",
        "GET /problems/{code}",
        "GET /v1/providers",
        "GET /v1/audit",
        "POST /v1/webhooks/stages/{connection_id}",
        "PATCH /v1/links/{link_id}",
    ] {
        assert!(
            served.iter().any(|r| r == expected),
            "the scan missed {expected}"
        );
    }
}

// ---- Problem codes ----

/// For each operation: codes listed that are not registered, codes whose
/// status has no response, and problem responses that name no code.
fn problem_code_gaps(doc: &Value) -> Vec<String> {
    let mut gaps = Vec::new();
    for (method, path, op) in operations(doc) {
        let listed = op["x-problem-codes"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (code, status) in &listed {
            match api::problem_codes::find(code) {
                None => gaps.push(format!("{method} {path}: '{code}' is not registered")),
                Some(entry) => {
                    let status = status.as_u64().unwrap_or(0) as u16;
                    if !entry.statuses.contains(&status) {
                        gaps.push(format!("{method} {path}: '{code}' is never {status}"));
                    }
                    if op["responses"].get(status.to_string()).is_none() {
                        gaps.push(format!(
                            "{method} {path}: '{code}' has no {status} response"
                        ));
                    }
                    if !op["description"]
                        .as_str()
                        .unwrap_or_default()
                        .contains(&format!("/problems/{code}"))
                    {
                        gaps.push(format!(
                            "{method} {path}: the description does not name '{code}'"
                        ));
                    }
                }
            }
        }
        for status in op["responses"].as_object().unwrap().keys() {
            let s: u16 = status.parse().unwrap_or(0);
            if s >= 400 && !listed.values().any(|v| v.as_u64() == Some(s as u64)) {
                gaps.push(format!(
                    "{method} {path}: the {s} response names no problem code"
                ));
            }
        }
    }
    gaps
}

#[test]
fn every_operation_lists_registered_problem_codes_for_its_error_answers() {
    let gaps = problem_code_gaps(&document());
    assert!(gaps.is_empty(), "{gaps:#?}");
}

#[test]
fn the_problem_code_check_finds_an_unregistered_or_missing_code() {
    let mut doc = document();
    let op = &mut doc["paths"]["/v1/links"]["post"];
    op["x-problem-codes"]["no_such_code"] = Value::from(409);
    op["responses"]["418"] = serde_json::json!({"description": "A teapot"});
    let gaps = problem_code_gaps(&doc);
    assert_eq!(gaps.len(), 2, "{gaps:#?}");
}

#[tokio::test]
async fn every_problem_code_has_a_page_and_problems_name_it() {
    let svc = Service::start().await;
    for entry in api::problem_codes::CODES {
        let uri = api::problem_codes::type_uri(entry.code);
        let page = Answer::from(svc.http.get(svc.url(&uri)).send().await.unwrap()).await;
        assert_eq!(page.status, 200, "{uri}");
        assert!(page.content_type().starts_with("text/html"), "{uri}");
        assert_eq!(page.text, api::problem_codes::page(entry), "{uri}");
        assert!(
            page.text.contains(&format!("<code>{}</code>", entry.code)),
            "{uri}"
        );
    }
    let index = Answer::from(svc.http.get(svc.url("/problems")).send().await.unwrap()).await;
    assert_eq!(index.status, 200);
    assert!(index.text.contains("/problems/already_linked"));
    let unknown = Answer::from(
        svc.http
            .get(svc.url("/problems/no_such_code"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(unknown.assert_problem(404), "not_found");
    // A real problem answer: its `type` names a page that explains its code.
    let refused = Answer::from(
        svc.http
            .get(svc.url("/v1/connections"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(refused.assert_problem(401), "unauthorized");
    assert_eq!(refused.body["type"], "/problems/unauthorized");
    assert_eq!(refused.body["title"], "Not authenticated");
    let page = svc
        .http
        .get(svc.url("/problems/unauthorized"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
}
