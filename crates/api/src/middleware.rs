//! Cross-cutting request handling, built once: request ids and access logs,
//! metrics, problem+json for every error, bearer auth, and Idempotency-Key
//! (B3, B10).

use std::time::Instant;

use actix_web::body::{to_bytes, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse, ResponseError};
use domain::store::{IdempotencyBegin, IdempotencyScope, StoredResponse};
use domain::tenancy::Caller;
use domain::validation::{check_characters, is_dot_segment, TextKind, ValidationError};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::problem::{ApiError, PROBLEM_JSON};
use crate::state::AppState;

pub const REQUEST_ID: &str = "x-request-id";

fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// Gives each request an id (kept from `X-Request-Id` when sane), a tracing
/// span, one access log line, its metrics, and the id on the answer.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&req);
    let method = req.method().to_string();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        route = tracing::field::Empty
    );
    let mut res = next.call(req).instrument(span.clone()).await?;
    // The route is named once the router has matched it: read then, it is
    // the matched resource's pattern; read before, it took a second walk
    // over every route ahead of it, a regular expression for each.
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    span.record("route", route.as_str());
    let status = res.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    if let Some(state) = &state {
        state.metrics.observe(&method, &route, status, seconds);
        // A change may have enqueued work: wake this process's idle workers.
        if changes && status < 400 {
            state.jobs_wake.notify_one();
        }
    }
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_ms = (seconds * 1000.0).round() as u64,
            "answered"
        );
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(header::HeaderName::from_static(REQUEST_ID), v);
    }
    Ok(res)
}

/// Makes every error answer problem+json: fills `instance` in ours, and
/// replaces framework answers (unknown route, wrong method) with a problem.
pub async fn problem_details(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let path = req.path().to_owned();
    let res = next.call(req).await?.map_into_boxed_body();
    if res.status().as_u16() < 400 {
        return Ok(res);
    }
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    let status = res.status();
    let (req, res) = res.into_parts();
    let (head, body) = res.into_parts();
    let bytes = to_bytes(body).await.unwrap_or_default();
    let mut problem: serde_json::Value = if is_problem {
        serde_json::from_slice(&bytes).unwrap_or_default()
    } else {
        serde_json::Value::Null
    };
    if !problem.is_object() {
        let e = framework_error(status);
        problem = serde_json::to_value(e.problem(None)).unwrap_or_default();
    }
    problem["instance"] = serde_json::Value::String(path);
    let mut new = HttpResponse::build(status);
    for (name, value) in head.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.append_header((name.clone(), value.clone()));
        }
    }
    let new = new
        .content_type(PROBLEM_JSON)
        .body(serde_json::to_vec(&problem).unwrap_or_default());
    Ok(ServiceResponse::new(req, new))
}

fn framework_error(status: StatusCode) -> ApiError {
    match status {
        StatusCode::NOT_FOUND => ApiError::not_found("no such route or resource"),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            status,
            "method_not_allowed",
            "this route does not take that method",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(status, "payload_too_large", "the request body is too large")
        }
        s if s.is_client_error() => ApiError::new(s, "bad_request", "the request was refused"),
        s => ApiError::new(s, "internal", "the service failed to handle the request"),
    }
}

/// The one rule for text, for the inputs no body extractor sees: every path
/// segment and query parameter (names and values) refuses control characters,
/// and `.` or `..` is never an id. A 422 names the parameter, before any
/// handler or database sees the value.
pub async fn refuse_bad_text(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // Visible ASCII without a `%` decodes to itself and holds no control
    // character: such a request (nearly every one) is looked at no further
    // than for a dot segment.
    let plain = |text: &str| text.bytes().all(|b| b.is_ascii_graphic() && b != b'%');
    if plain(req.path())
        && req.uri().query().is_none_or(plain)
        && !req.path().split('/').any(is_dot_segment)
    {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let mut refused = ValidationError::default();
    // The route's pattern names a refused segment. Finding it walks every
    // route before this one, so it is looked up only when a segment is refused.
    let mut pattern: Option<String> = None;
    let segments: Vec<&str> = req.path().split('/').collect();
    for (i, raw) in segments.iter().enumerate().skip(1) {
        let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        let mut field = || {
            let pattern = pattern.get_or_insert_with(|| req.match_pattern().unwrap_or_default());
            let names: Vec<&str> = pattern.split('/').collect();
            names
                .get(i)
                .filter(|_| names.len() == segments.len())
                .and_then(|n| parameter_name(n))
                .unwrap_or("path")
                .to_owned()
        };
        if let Err(message) = check_characters(&decoded, TextKind::Token) {
            refused.push(field(), message);
        } else if is_dot_segment(&decoded) {
            refused.push(field(), "must not be '.' or '..'");
        }
    }
    if let Some(query) = req.uri().query() {
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if let Err(message) = check_characters(&name, TextKind::Token) {
                refused.push("query", format!("a parameter name {message}"));
            } else if let Err(message) = check_characters(&value, TextKind::Token) {
                refused.push(name.into_owned(), message);
            }
        }
    }
    if refused.errors.is_empty() {
        Ok(next.call(req).await?.map_into_boxed_body())
    } else {
        Ok(req.into_response(ApiError::from(refused).error_response()))
    }
}

/// HTTP conventions kept in one place rather than in every handler: `Allow`
/// on a 405 (from the API document), `Retry-After` on a 202 (when to poll the
/// job it started), and `If-None-Match` answered with 304 when the current
/// representation's strong ETag is one the caller already has.
pub async fn http_conventions(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let if_none_match = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(|_| matches!(*req.method(), Method::GET | Method::HEAD));
    let path = req.path().to_owned();
    let mut res = next.call(req).await?.map_into_boxed_body();
    match res.status() {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = crate::openapi::allowed_methods(&path);
            if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                res.headers_mut().insert(header::ALLOW, v);
            }
        }
        StatusCode::ACCEPTED if !res.headers().contains_key(header::RETRY_AFTER) => {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        StatusCode::OK => {
            let current = res.headers().get(header::ETAG).cloned();
            if let (Some(wanted), Some(current)) = (if_none_match, current) {
                let current = current.to_str().unwrap_or("");
                let matches = wanted
                    .split(',')
                    .map(|t| t.trim().trim_start_matches("W/"))
                    .any(|t| t == "*" || t == current.trim_start_matches("W/"));
                if matches {
                    let (req, _) = res.into_parts();
                    let not_modified = HttpResponse::NotModified()
                        .insert_header((header::ETAG, current))
                        .finish();
                    return Ok(ServiceResponse::new(req, not_modified));
                }
            }
        }
        _ => {}
    }
    Ok(res)
}

/// `site_id` of a route segment `{site_id}` or `{site_id}:sync`.
fn parameter_name(segment: &str) -> Option<&str> {
    let start = segment.find('{')? + 1;
    let rest = &segment[start..];
    let end = rest.find([':', '}'])?;
    Some(&rest[..end])
}

/// Verifies the bearer token of every `/v1` request and keeps the caller.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("application state missing"))?;
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.verifier.verify(authorization) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            Ok(next.call(req).await?.map_into_boxed_body())
        }
        Err(e) => Ok(req.into_response(e.error_response())),
    }
}

/// Per-dealer request limit (`rate_limit.*`) on authenticated `/v1`
/// requests: runs after [`authenticate`], which found the dealer; a dealer
/// over its rate gets 429 with `Retry-After` and nothing else happens.
pub async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let wait = req.app_data::<web::Data<AppState>>().and_then(|state| {
        let limiter = state.dealer_limit.as_ref()?;
        let extensions = req.extensions();
        let caller = extensions.get::<Caller>()?;
        limiter.check(&caller.dealer.0).err()
    });
    match wait {
        Some(wait) => {
            let e = ApiError::too_many_requests(crate::rate_limit::retry_after_secs(wait));
            Ok(req.into_response(e.error_response()))
        }
        None => Ok(next.call(req).await?.map_into_boxed_body()),
    }
}

/// `Idempotency-Key` on a POST: the first answer is kept (sealed by the store)
/// and replayed for the same key and body; another body is 422; a retry while
/// the first runs is 409. A refusal before any effect is not kept.
pub async fn idempotency(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let key = req
        .headers()
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    let (Some(key), true) = (key, req.method() == Method::POST) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    if key.is_empty() || key.len() > 255 {
        let e = ApiError::bad_request(
            "bad_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible characters",
        );
        return Ok(req.into_response(e.error_response()));
    }
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("application state missing"))?;
    let Some(caller) = req.extensions().get::<Caller>().cloned() else {
        return Ok(
            req.into_response(ApiError::unauthorized("send a bearer token").error_response())
        );
    };
    let body = match read_body(&mut req).await {
        Ok(body) => body,
        Err(refused) => return Ok(req.into_response(refused)),
    };
    let scope = IdempotencyScope {
        dealer: caller.dealer.clone(),
        user: caller.user.0.clone(),
        key,
    };
    let stale_after = chrono::Duration::minutes(5);
    let begun = state
        .idempotency
        .begin(
            &scope,
            &fingerprint(&req, &body),
            chrono::Utc::now(),
            stale_after,
        )
        .await;
    if let Some(answer) = earlier_answer(begun, &HEADER_KEY) {
        return Ok(req.into_response(answer));
    }
    req.set_payload(bytes_payload(body));
    let res = match next.call(req).await {
        Ok(res) => res.map_into_boxed_body(),
        Err(e) => {
            let _ = state.idempotency.release(&scope).await;
            return Err(e);
        }
    };
    Ok(settle(&state, &scope, res).await)
}

/// The whole body, read here to fingerprint it and then handed on to the
/// handler; a body that cannot be read is answered at once.
async fn read_body(req: &mut ServiceRequest) -> Result<web::Bytes, HttpResponse> {
    let limit = crate::extract::body_limit(req.request());
    let payload = req
        .extract::<web::Payload>()
        .await
        .map_err(|e| e.error_response())?;
    match payload.to_bytes_limited(limit).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(e.error_response()),
        Err(_) => Err(crate::extract::too_large(limit).error_response()),
    }
}

/// What makes two requests with one key the same request: method, path,
/// query and body.
fn fingerprint(req: &ServiceRequest, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(req.method().as_str());
    hasher.update([0]);
    hasher.update(req.path());
    hasher.update([0]);
    hasher.update(req.query_string());
    hasher.update([0]);
    hasher.update(body);
    hex::encode(hasher.finalize())
}

/// How a key's refusals are worded: (code, detail) for a key still in
/// flight, and for a key sent again with another request.
pub(crate) struct KeyRefusals {
    pub in_flight: (&'static str, &'static str),
    pub reused: (&'static str, &'static str),
}

/// An `Idempotency-Key` header's refusals.
const HEADER_KEY: KeyRefusals = KeyRefusals {
    in_flight: (
        "idempotency_in_flight",
        "a request with this Idempotency-Key is still being processed; retry later",
    ),
    reused: (
        "idempotency_key_reused",
        "this Idempotency-Key was used with another request; use a new key",
    ),
};

/// The answer the key already has, when the handler must not run: the kept
/// first answer, or why the key cannot be used now (worded by `words`).
/// `None`: the key is ours. Callbacks keyed by their event id use it too.
pub(crate) fn earlier_answer(
    begun: domain::store::StoreResult<IdempotencyBegin>,
    words: &KeyRefusals,
) -> Option<HttpResponse> {
    let e = match begun {
        Ok(IdempotencyBegin::Started) => return None,
        Ok(IdempotencyBegin::Replay(stored)) => {
            let mut res =
                HttpResponse::build(StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK));
            for (name, value) in &stored.headers {
                res.append_header((name.as_str(), value.as_str()));
            }
            res.insert_header(("idempotent-replayed", "true"));
            return Some(res.body(stored.body));
        }
        Ok(IdempotencyBegin::InFlight) => ApiError::conflict(words.in_flight.0, words.in_flight.1),
        Ok(IdempotencyBegin::Mismatch) => ApiError::unprocessable(words.reused.0, words.reused.1),
        Err(e) => ApiError::from(e),
    };
    Some(e.error_response())
}

/// After the handler: its answer is kept for replays of the key, or the key
/// is let go when the answer promised nothing.
async fn settle(
    state: &AppState,
    scope: &IdempotencyScope,
    res: ServiceResponse<BoxBody>,
) -> ServiceResponse<BoxBody> {
    if res.status().is_server_error() || refused_before_any_effect(res.status()) {
        // Nothing was promised, or nothing was done: the caller may retry
        // with the same key (a corrected request included), as Stripe allows.
        if let Err(e) = state.idempotency.release(scope).await {
            tracing::warn!(error = %e, "could not release an idempotency key");
        }
        return res;
    }
    let (req, res) = res.into_parts();
    let (head, body) = res.into_parts();
    let bytes = to_bytes(body).await.unwrap_or_default();
    let headers = head
        .headers()
        .iter()
        .filter(|(name, _)| [header::CONTENT_TYPE, header::LOCATION, header::ETAG].contains(name))
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let stored = StoredResponse {
        status: head.status().as_u16(),
        headers,
        body: bytes.to_vec(),
    };
    if let Err(e) = state.idempotency.finish(scope, &stored).await {
        tracing::warn!(error = %e, "could not store an idempotent answer");
    }
    let res = head.set_body(BoxBody::new(bytes));
    ServiceResponse::new(req, res)
}

/// Answers given before a handler changed anything: the request was refused
/// as it stood (syntax, validation, authority, a name that names nothing).
/// A conflict (409) is kept: it may follow a partial effect upstream.
fn refused_before_any_effect(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_REQUEST
            | StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::NOT_FOUND
            | StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
            | StatusCode::UNPROCESSABLE_ENTITY
    )
}

fn bytes_payload(bytes: web::Bytes) -> actix_web::dev::Payload {
    actix_web::dev::Payload::from(bytes)
}
