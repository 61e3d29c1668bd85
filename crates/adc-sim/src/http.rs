//! The HTTP face of the simulator: the two `.asmx` endpoints (SOAP calls,
//! `?WSDL`), fault injection and request counting in front of them, and the
//! unauthenticated loopback-only `/admin` routes that tests steer it with.
//!
//! Paths under `/WebServices/` are matched without regard to case, as IIS
//! does. Whatever arrives, the answer is an HTTP response (a SOAP fault for
//! anything that is not a usable call), never a panic.

use std::net::TcpListener;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{from_fn, Next};
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use chrono::{DateTime, SubsecRound, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::faults::{FaultKind, FaultRule};
use crate::model::{CustomerPatch, Permissions, RepPatch};
use crate::ops::{self, Call, Operation, Service};
use crate::state::SimState;
use crate::store::Refusal;
use crate::wsdl;
use crate::xml::{self, Envelope, FaultCode, SoapVersion, ADC_NS};

type Data = web::Data<SimState>;

/// Larger request bodies are refused with a SOAP fault.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// The faultstring of every authentication failure.
pub const AUTH_FAILED: &str = "Authentication failed: invalid username or password";

/// Builds the server on an already bound listener.
pub(crate) fn server(
    state: SimState,
    listener: TcpListener,
    workers: usize,
) -> std::io::Result<Server> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .app_data(
                web::JsonConfig::default()
                    .limit(64 * 1024 * 1024)
                    .content_type_required(false)
                    .error_handler(|err, _| {
                        let res = bad_request(format!("invalid JSON body: {err}"));
                        actix_web::error::InternalError::from_response(err, res).into()
                    }),
            )
            .route("/healthz", web::get().to(healthz))
            .service(
                web::scope("/admin")
                    .wrap(from_fn(admin_gate))
                    .service(
                        web::resource("/customers")
                            .route(web::post().to(add_customers))
                            .default_service(web::to(method_not_allowed)),
                    )
                    .service(
                        web::resource("/customers/{id}")
                            .route(web::get().to(get_customer))
                            .route(web::patch().to(patch_customer))
                            .default_service(web::to(method_not_allowed)),
                    )
                    .service(
                        web::resource("/reps")
                            .route(web::get().to(get_reps))
                            .route(web::post().to(add_reps))
                            .default_service(web::to(method_not_allowed)),
                    )
                    .service(
                        web::resource("/permissions")
                            .route(web::get().to(get_permissions))
                            .route(web::put().to(put_permissions))
                            .default_service(web::to(method_not_allowed)),
                    )
                    .service(
                        web::resource("/faults")
                            .route(web::get().to(get_faults))
                            .route(web::put().to(put_faults))
                            .route(web::post().to(add_fault))
                            .route(web::delete().to(clear_faults))
                            .default_service(web::to(method_not_allowed)),
                    )
                    .service(
                        web::resource("/stats")
                            .route(web::get().to(stats))
                            .default_service(web::to(method_not_allowed)),
                    )
                    .service(
                        web::resource("/users")
                            .route(web::post().to(add_user))
                            .default_service(web::to(method_not_allowed)),
                    )
                    .service(
                        web::resource("/reset")
                            .route(web::post().to(reset))
                            .default_service(web::to(method_not_allowed)),
                    )
                    .default_service(web::to(not_found)),
            )
            .default_service(web::to(fallback))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    Ok(server)
}

/// Now, to the millisecond: times written to clients round-trip exactly.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"ok": true}))
}

fn bad_request(message: impl Into<String>) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": message.into()}))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/plain; charset=utf-8")
        .body(format!("no route {} {}", req.method(), req.path()))
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .content_type("text/plain; charset=utf-8")
        .body(format!("{} is not allowed on {}", req.method(), req.path()))
}

/// The `.asmx` endpoints (any case), else 404.
async fn fallback(req: HttpRequest, payload: web::Payload, state: Data) -> HttpResponse {
    let path = req.path();
    let service = path
        .get(..13)
        .filter(|p| p.eq_ignore_ascii_case("/WebServices/"))
        .and_then(|_| Service::from_file(&path[13..]));
    let Some(service) = service else {
        return not_found(req).await;
    };
    match *req.method() {
        actix_web::http::Method::POST => soap(req, payload, state.get_ref().clone(), service).await,
        actix_web::http::Method::GET | actix_web::http::Method::HEAD => {
            get_page(req, state.get_ref(), service).await
        }
        _ => method_not_allowed(req).await,
    }
}

// ---- SOAP ----------------------------------------------------------------------

fn soap_answer(version: SoapVersion, status: u16, body: String) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status)
        .content_type(version.content_type())
        .body(body)
}

/// A SOAP fault, HTTP 500 as ASP.NET answers them.
fn soap_fault(version: SoapVersion, code: FaultCode, message: &str) -> HttpResponse {
    soap_answer(version, 500, xml::fault_envelope(version, code, message))
}

/// The SOAPAction of the request: the header (SOAP 1.1) or the `action`
/// parameter of the content type (SOAP 1.2). Empty means none.
fn soap_action(req: &HttpRequest) -> Option<String> {
    let unquote = |s: &str| s.trim().trim_matches('"').trim().to_string();
    if let Some(v) = req
        .headers()
        .get("SOAPAction")
        .and_then(|v| v.to_str().ok())
    {
        let v = unquote(v);
        if !v.is_empty() {
            return Some(v);
        }
    }
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())?;
    ct.split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("action"))
        .map(|(_, v)| unquote(v))
        .filter(|v| !v.is_empty())
}

fn version_hint(req: &HttpRequest) -> SoapVersion {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("application/soap+xml")
    {
        SoapVersion::V12
    } else {
        SoapVersion::V11
    }
}

async fn soap(
    req: HttpRequest,
    payload: web::Payload,
    state: SimState,
    service: Service,
) -> HttpResponse {
    let hint = version_hint(&req);
    let parsed: Result<Envelope, String> = match payload.to_bytes_limited(MAX_BODY).await {
        Ok(Ok(bytes)) => xml::parse_envelope(&bytes),
        Ok(Err(_)) => Err(format!("request body larger than {MAX_BODY} bytes")),
        Err(e) => Err(format!("could not read the request body: {e}")),
    };
    let op: Option<&'static Operation> = parsed.as_ref().ok().and_then(|env| {
        let el = &env.operation;
        (el.ns.as_deref() == Some(ADC_NS))
            .then(|| ops::find(service, &el.name))
            .flatten()
    });
    let key = match (&parsed, op) {
        (_, Some(op)) => op.name,
        (Ok(_), None) => "(unknown)",
        (Err(_), _) => "(invalid)",
    };
    state.count_request(key);
    let version = parsed.as_ref().map(|e| e.version).unwrap_or(hint);

    let plan = state.plan_faults(key, service.name());
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    if let Some(kind) = plan.action {
        tracing::info!(operation = key, ?kind, "injecting fault");
        return injected(kind, version, key).await;
    }

    let env = match parsed {
        Ok(env) => env,
        Err(msg) => {
            return soap_fault(
                version,
                FaultCode::Client,
                &format!("Server was unable to read request: {msg}"),
            )
        }
    };
    let Some(op) = op else {
        let el = &env.operation;
        return soap_fault(
            version,
            FaultCode::Client,
            &format!(
                "Server did not recognize the request element {{{}}}{} on {}",
                el.ns.as_deref().unwrap_or(""),
                el.name,
                service.name()
            ),
        );
    };
    if let Some(action) = soap_action(&req) {
        let expected = format!("{ADC_NS}/{}", op.name);
        if action != expected {
            return soap_fault(
                version,
                FaultCode::Client,
                &format!(
                    "Server did not recognize the value of HTTP Header SOAPAction: {action} \
                     (the request element is {})",
                    op.name
                ),
            );
        }
    }
    let Some(auth) = env.authentication.as_ref() else {
        return soap_fault(
            version,
            FaultCode::Client,
            "Authentication failed: no Authentication SOAP header in namespace \
             http://www.alarm.com/WebServices",
        );
    };
    let user = auth.string("User");
    let Some(permissions) = state.authenticate(&user, &auth.string("Password")) else {
        return soap_fault(version, FaultCode::Client, AUTH_FAILED);
    };

    let result = ops::call(
        op,
        Call {
            state: &state,
            login: &user,
            permissions,
            params: ops::params_of(&env.operation),
            now: now(),
        },
    );
    match result {
        Ok(answer) => {
            if answer.success {
                state.count_success(op.name);
            }
            soap_answer(
                version,
                200,
                xml::response_envelope(version, op.name, &answer.xml),
            )
        }
        Err(f) => soap_fault(version, f.code, &f.message),
    }
}

/// A body that fails at once: actix then closes the connection before the
/// response head is flushed, so the client sees the connection drop.
struct FailingBody;

impl MessageBody for FailingBody {
    type Error = std::io::Error;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "adc-sim: injected dropped connection",
        ))))
    }
}

fn html(status: u16, title: &str, text: &str) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!DOCTYPE html><html><head><title>{title}</title></head>\
             <body><h1>{title}</h1><p>{text}</p></body></html>"
        ))
}

async fn injected(kind: FaultKind, version: SoapVersion, op: &str) -> HttpResponse {
    match kind {
        FaultKind::Http500 => html(
            500,
            "Server Error in '/' Application.",
            "Runtime Error (injected by adc-sim).",
        ),
        FaultKind::Throttle { retry_after_secs } => {
            let mut res = html(
                503,
                "Service Unavailable",
                "The server is busy; retry later (injected by adc-sim).",
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            res
        }
        FaultKind::Malformed => soap_answer(
            version,
            200,
            format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"{}\">\
                 <soap:Body><{op}Response xmlns=\"{ADC_NS}\"><{op}Result><Succ",
                version.namespace()
            ),
        ),
        FaultKind::Timeout => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            html(504, "Gateway Timeout", "injected timeout")
        }
        FaultKind::Drop => HttpResponse::Ok()
            .content_type(version.content_type())
            .body(FailingBody),
        FaultKind::Fault { text } => soap_fault(version, FaultCode::Server, &text),
        FaultKind::BadCredentials => soap_fault(version, FaultCode::Client, AUTH_FAILED),
        // Latency never ends a request; nothing reaches here with it.
        FaultKind::Latency { .. } => soap_fault(version, FaultCode::Server, "latency rule"),
    }
}

// ---- WSDL and help page --------------------------------------------------------

async fn get_page(req: HttpRequest, state: &SimState, service: Service) -> HttpResponse {
    let wants_wsdl = req.query_string().split('&').any(|p| {
        p.split('=')
            .next()
            .unwrap_or("")
            .eq_ignore_ascii_case("wsdl")
    });
    if !wants_wsdl {
        let mut list = String::new();
        for op in ops::OPERATIONS.iter().filter(|o| o.service == service) {
            list.push_str(&format!(
                "<li><b>{}</b>{}: {}</li>",
                op.name,
                if op.public { "" } else { " (ours)" },
                xml::escape(op.summary)
            ));
        }
        return HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(format!(
                "<!DOCTYPE html><html><head><title>{name}</title></head><body><h1>{name}</h1>\
                 <p>adc-sim. The <a href=\"?WSDL\">service description</a> lists these \
                 operations:</p><ul>{list}</ul></body></html>",
                name = service.name()
            ));
    }
    state.count_request("WSDL");
    let plan = state.plan_faults("WSDL", service.name());
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    if let Some(kind) = plan.action {
        return injected(kind, SoapVersion::V11, "WSDL").await;
    }
    let info = req.connection_info();
    let base = format!("{}://{}", info.scheme(), info.host());
    HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(wsdl::wsdl(service, &base))
}

// ---- admin ---------------------------------------------------------------------

/// Admin routes answer only on loopback: they change anything without auth.
async fn admin_gate(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let local = req.peer_addr().is_some_and(|a| a.ip().is_loopback());
    if !local {
        let res = HttpResponse::Forbidden()
            .json(json!({"error": "admin routes answer on loopback only"}));
        return Ok(req.into_response(res));
    }
    next.call(req).await
}

fn refusal(r: Refusal) -> HttpResponse {
    match r {
        Refusal::NotFound(m) => HttpResponse::NotFound().json(json!({"error": m})),
        Refusal::Rejected(m) => bad_request(m),
    }
}

/// `{"count": N}`, an array of partial records, or one partial record.
enum Batch<T> {
    Generate(usize),
    Records(Vec<T>),
}

/// `Err` is the message of a 400 answer.
fn batch<T: serde::de::DeserializeOwned>(body: Value) -> Result<Batch<T>, String> {
    let parse =
        |v: Value, at: &str| serde_json::from_value::<T>(v).map_err(|e| format!("{at}: {e}"));
    match body {
        Value::Object(map) if map.contains_key("count") => {
            let n = map
                .get("count")
                .and_then(Value::as_u64)
                .filter(|n| *n <= 1_000_000 && map.len() == 1)
                .ok_or("{\"count\": N} takes a whole number up to 1000000 and nothing else")?;
            Ok(Batch::Generate(n as usize))
        }
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| parse(v, &format!("item {i}")))
            .collect::<Result<Vec<T>, _>>()
            .map(Batch::Records),
        v @ Value::Object(_) => Ok(Batch::Records(vec![parse(v, "body")?])),
        _ => Err("expected {\"count\": N}, an object or an array of objects".into()),
    }
}

async fn add_customers(s: Data, body: web::Json<Value>) -> HttpResponse {
    let now = now();
    let result = match batch::<CustomerPatch>(body.into_inner()) {
        Err(e) => return bad_request(e),
        Ok(Batch::Generate(n)) => Ok(s.with_store(|st| st.add_generated_customers(n, now))),
        Ok(Batch::Records(patches)) => s.with_store(|st| {
            let mut added = Vec::with_capacity(patches.len());
            for (i, p) in patches.into_iter().enumerate() {
                match st.add_customer(p, now) {
                    Ok(c) => added.push(c),
                    Err(e) => {
                        return Err(format!(
                            "item {i}: {e} ({} earlier item(s) were added)",
                            added.len()
                        ))
                    }
                }
            }
            Ok(added)
        }),
    };
    match result {
        Ok(added) => HttpResponse::Created().json(added),
        Err(e) => bad_request(e),
    }
}

async fn get_customer(s: Data, id: web::Path<i64>) -> HttpResponse {
    match s.customer(*id) {
        Some(c) => HttpResponse::Ok().json(c),
        None => HttpResponse::NotFound().json(json!({"error": "Customer not found"})),
    }
}

async fn patch_customer(
    s: Data,
    id: web::Path<i64>,
    body: web::Json<CustomerPatch>,
) -> HttpResponse {
    match s.with_store(|st| st.patch_customer(*id, body.into_inner(), now())) {
        Ok(c) => HttpResponse::Ok().json(c),
        Err(r) => refusal(r),
    }
}

async fn get_reps(s: Data) -> HttpResponse {
    HttpResponse::Ok().json(s.reps())
}

async fn add_reps(s: Data, body: web::Json<Value>) -> HttpResponse {
    let result = match batch::<RepPatch>(body.into_inner()) {
        Err(e) => return bad_request(e),
        Ok(Batch::Generate(n)) => Ok(s.with_store(|st| st.add_generated_reps(n))),
        Ok(Batch::Records(patches)) => s.with_store(|st| {
            let mut added = Vec::with_capacity(patches.len());
            for (i, p) in patches.into_iter().enumerate() {
                match st.add_rep(p) {
                    Ok(r) => added.push(r),
                    Err(e) => {
                        return Err(format!(
                            "item {i}: {e} ({} earlier item(s) were added)",
                            added.len()
                        ))
                    }
                }
            }
            Ok(added)
        }),
    };
    match result {
        Ok(added) => HttpResponse::Created().json(added),
        Err(e) => bad_request(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PermissionChange {
    /// One login; all logins when absent.
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    builder_program: Option<bool>,
    #[serde(default)]
    billing: Option<bool>,
}

async fn get_permissions(s: Data) -> HttpResponse {
    HttpResponse::Ok().json(s.permissions())
}

async fn put_permissions(s: Data, body: web::Json<PermissionChange>) -> HttpResponse {
    let b = body.into_inner();
    let found = s.update_permissions(b.username.as_deref(), |p| {
        if let Some(v) = b.builder_program {
            p.builder_program = v;
        }
        if let Some(v) = b.billing {
            p.billing = v;
        }
    });
    if !found {
        return HttpResponse::NotFound().json(json!({"error": "no such login"}));
    }
    HttpResponse::Ok().json(s.permissions())
}

async fn get_faults(s: Data) -> HttpResponse {
    HttpResponse::Ok().json(s.faults())
}

async fn put_faults(s: Data, body: web::Json<Vec<FaultRule>>) -> HttpResponse {
    match s.set_faults(body.into_inner()) {
        Ok(()) => HttpResponse::Ok().json(s.faults()),
        Err(e) => bad_request(e),
    }
}

async fn add_fault(s: Data, body: web::Json<FaultRule>) -> HttpResponse {
    match s.add_fault(body.into_inner()) {
        Ok(()) => HttpResponse::Created().json(s.faults()),
        Err(e) => bad_request(e),
    }
}

async fn clear_faults(s: Data) -> HttpResponse {
    s.clear_faults();
    HttpResponse::NoContent().finish()
}

async fn stats(s: Data) -> HttpResponse {
    HttpResponse::Ok().json(s.stats())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    password: String,
    #[serde(default)]
    permissions: Permissions,
}

async fn add_user(s: Data, body: web::Json<NewUser>) -> HttpResponse {
    if body.username.trim().is_empty() {
        return bad_request("username must not be empty");
    }
    s.add_login(&body.username, &body.password, body.permissions);
    HttpResponse::NoContent().finish()
}

async fn reset(s: Data) -> HttpResponse {
    s.reset();
    HttpResponse::NoContent().finish()
}
