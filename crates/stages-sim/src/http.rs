//! The HTTP face of the simulator: the `/api/v1` protocol behind Basic auth,
//! fault injection and request counting, plus the unauthenticated `/admin`
//! routes that tests use to steer it.

use std::net::TcpListener;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{from_fn, Next};
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, Resource};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::callbacks::CallbackTarget;
use crate::db::{DeviceQuery, SiteQuery};
use crate::error::ApiError;
use crate::faults::{FaultKind, FaultRule};
use crate::lookups;
use crate::state::SimState;
use crate::wire::*;

type Data = web::Data<SimState>;
type ApiResult = Result<HttpResponse, ApiError>;

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
                    .limit(16 * 1024 * 1024)
                    .content_type_required(false)
                    .error_handler(|err, _| {
                        ApiError::validation(format!("invalid JSON body: {err}")).into()
                    }),
            )
            .app_data(web::QueryConfig::default().error_handler(|err, _| {
                ApiError::validation(format!("invalid query: {err}")).into()
            }))
            .app_data(web::PathConfig::default().error_handler(|err, _| {
                ApiError::validation(format!("invalid path: {err}")).into()
            }))
            .route("/healthz", web::get().to(healthz))
            .service(api_scope())
            .service(admin_scope())
            .default_service(web::to(route_not_found))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    Ok(server)
}

/// A resource whose other methods answer 405 in the error shape.
fn res(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

fn api_scope() -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::scope("/api/v1")
        .wrap(from_fn(api_gate))
        .service(res("/ping").route(web::get().to(ping)))
        .service(res("/lookups/{list}").route(web::get().to(lookup)))
        .service(
            res("/sites")
                .route(web::get().to(list_sites))
                .route(web::post().to(create_site)),
        )
        .service(
            res("/sites/{site_no}")
                .route(web::get().to(get_site))
                .route(web::patch().to(patch_site)),
        )
        .service(
            res("/sites/{site_no}/devices")
                .route(web::get().to(list_devices))
                .route(web::post().to(create_device)),
        )
        .service(res("/sites/{site_no}/history").route(web::get().to(site_history)))
        .service(
            res("/sites/{site_no}/contacts")
                .route(web::get().to(list_contacts))
                .route(web::post().to(create_contact)),
        )
        .service(
            res("/sites/{site_no}/contacts/{contact_id}")
                .route(web::patch().to(patch_contact))
                .route(web::delete().to(delete_contact)),
        )
        .service(
            res("/sites/{site_no}/notes")
                .route(web::get().to(list_notes))
                .route(web::post().to(create_note)),
        )
        .service(res("/devices").route(web::get().to(list_all_devices)))
        .service(
            res("/devices/{device_id}")
                .route(web::get().to(get_device))
                .route(web::patch().to(patch_device)),
        )
        .service(res("/devices/{device_id}/change-xmit").route(web::post().to(change_xmit)))
        .service(
            res("/devices/{device_id}/configurations")
                .route(web::get().to(list_configurations))
                .route(web::post().to(create_configuration)),
        )
        .service(
            res("/devices/{device_id}/configurations/{config_id}")
                .route(web::patch().to(patch_configuration)),
        )
        .service(res("/devices/{device_id}/history").route(web::get().to(device_history)))
        .service(
            res("/devices/{device_id}/tests")
                .route(web::get().to(list_tests))
                .route(web::post().to(start_test)),
        )
        .service(res("/devices/{device_id}/tests/{test_id}").route(web::delete().to(end_test)))
        .default_service(web::to(route_not_found))
}

fn admin_scope() -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::scope("/admin")
        .wrap(from_fn(admin_gate))
        .service(
            res("/faults")
                .route(web::get().to(get_faults))
                .route(web::put().to(put_faults))
                .route(web::post().to(add_fault))
                .route(web::delete().to(clear_faults)),
        )
        .service(res("/users").route(web::post().to(add_user)))
        .service(res("/devices/{device_id}/status").route(web::put().to(set_status)))
        .service(res("/devices/{device_id}/signals").route(web::post().to(add_signal)))
        .service(res("/stats").route(web::get().to(stats)))
        .service(res("/reset").route(web::post().to(reset)))
        .service(
            res("/callbacks")
                .route(web::get().to(get_callbacks))
                .route(web::put().to(put_callbacks))
                .route(web::delete().to(delete_callbacks)),
        )
        .service(res("/callbacks/send").route(web::post().to(send_callback)))
        .service(res("/callbacks/log").route(web::get().to(callback_log)))
        .default_service(web::to(route_not_found))
}

// ---- gates --------------------------------------------------------------

fn state_of(req: &ServiceRequest) -> Result<SimState, actix_web::Error> {
    req.app_data::<Data>()
        .map(|d| d.get_ref().clone())
        .ok_or_else(|| actix_web::error::ErrorInternalServerError("simulator state missing"))
}

/// Counts the request, applies faults, then checks the credentials.
async fn api_gate(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = state_of(&req)?;
    let method = req.method().as_str().to_string();
    let template = req
        .match_pattern()
        .filter(|p| p != "/api/v1")
        .unwrap_or_else(|| "(unmatched)".to_string());
    state.count_request(format!("{method} {template}"));

    let plan = state.plan_faults(&method, req.path());
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    if let Some(kind) = plan.action {
        tracing::info!(%method, path = req.path(), ?kind, "injecting fault");
        return Ok(fault_response(req, kind).await);
    }

    if !authorized(&state, &req) {
        return Ok(req.error_response(ApiError::unauthorized()));
    }
    next.call(req).await
}

fn authorized(state: &SimState, req: &ServiceRequest) -> bool {
    let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Ok(raw) = String::from_utf8(raw) else {
        return false;
    };
    match raw.split_once(':') {
        Some((user, password)) => state.check_credentials(user, password),
        None => false,
    }
}

/// A body that fails at once: actix then drops the connection before the
/// response head is flushed, so the client sees the connection close.
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
            "stages-sim: injected dropped connection",
        ))))
    }
}

async fn fault_response(req: ServiceRequest, kind: FaultKind) -> ServiceResponse<BoxBody> {
    match kind {
        FaultKind::Error { status } => req.error_response(ApiError::new(
            status,
            "injected_fault",
            format!("injected fault: status {status}"),
        )),
        FaultKind::RateLimit { retry_after_secs } => {
            let err = ApiError::new(
                429,
                "rate_limited",
                format!("too many requests; retry after {retry_after_secs} s"),
            );
            let res = HttpResponse::TooManyRequests()
                .insert_header((header::RETRY_AFTER, retry_after_secs.to_string()))
                .json(err.body());
            req.into_response(res)
        }
        FaultKind::Drop => req.into_response(
            HttpResponse::Ok()
                .content_type("application/json")
                .body(FailingBody),
        ),
        FaultKind::Timeout => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            req.error_response(ApiError::new(504, "injected_fault", "injected timeout"))
        }
        FaultKind::Malformed => req.into_response(
            HttpResponse::Ok()
                .content_type("application/json")
                .body(r#"{"items": [{"site_no": "10001", "name": "#),
        ),
        // Latency never ends a request; answer normally if it ever gets here.
        FaultKind::Latency { .. } => req.error_response(ApiError::new(
            500,
            "injected_fault",
            "latency rule used as an answer",
        )),
    }
}

/// Admin routes answer only on loopback: they change anything without auth.
async fn admin_gate(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let local = req.peer_addr().is_some_and(|a| a.ip().is_loopback());
    if !local {
        return Ok(req.error_response(ApiError::new(
            403,
            "forbidden",
            "admin routes answer on loopback only",
        )));
    }
    next.call(req).await
}

// ---- fallbacks ------------------------------------------------------------

async fn route_not_found(req: HttpRequest) -> ApiResult {
    Err(ApiError::not_found(format!(
        "no route {} {}",
        req.method(),
        req.path()
    )))
}

async fn method_not_allowed(req: HttpRequest) -> ApiResult {
    Err(ApiError::new(
        405,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.path()),
    ))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"ok": true}))
}

// ---- protocol -------------------------------------------------------------

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn ok<T: serde::Serialize>(v: T) -> ApiResult {
    Ok(HttpResponse::Ok().json(v))
}

fn created<T: serde::Serialize>(v: T) -> ApiResult {
    Ok(HttpResponse::Created().json(v))
}

async fn ping() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"ok": true}))
}

async fn lookup(list: web::Path<String>) -> ApiResult {
    let items = lookups::items(&list)
        .ok_or_else(|| ApiError::not_found(format!("no lookup list {:?}", list.as_str())))?;
    ok(Items::all(items))
}

async fn list_sites(s: Data, q: web::Query<SiteQuery>) -> ApiResult {
    ok(s.with_db(|db| db.list_sites(&q))?)
}

async fn create_site(s: Data, body: web::Json<NewSite>) -> ApiResult {
    created(s.with_db(|db| db.create_site(body.into_inner(), now()))?)
}

async fn get_site(s: Data, site_no: web::Path<String>) -> ApiResult {
    ok(s.with_db(|db| db.get_site(&site_no))?)
}

async fn patch_site(s: Data, site_no: web::Path<String>, body: web::Json<SitePatch>) -> ApiResult {
    ok(s.patch_site_by(&site_no, body.into_inner(), true)?)
}

#[derive(Debug, Deserialize)]
struct Window {
    from: Option<String>,
    to: Option<String>,
}

fn parse_time(name: &str, v: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    match v.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| {
                ApiError::validation(format!("{name}: {s:?} is not an RFC 3339 time ({e})"))
            }),
    }
}

/// The `from`/`to` bounds of a history query.
type Bounds = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

impl Window {
    fn parse(&self) -> Result<Bounds, ApiError> {
        Ok((
            parse_time("from", self.from.as_deref())?,
            parse_time("to", self.to.as_deref())?,
        ))
    }
}

async fn site_history(s: Data, site_no: web::Path<String>, w: web::Query<Window>) -> ApiResult {
    let (from, to) = w.parse()?;
    ok(Items::all(s.with_db(|db| {
        db.site_history(&site_no, from, to, now())
    })?))
}

async fn list_devices(s: Data, site_no: web::Path<String>) -> ApiResult {
    ok(Items::all(
        s.with_db(|db| db.list_devices(&site_no, now()))?,
    ))
}

async fn create_device(
    s: Data,
    site_no: web::Path<String>,
    body: web::Json<NewDevice>,
) -> ApiResult {
    created(s.with_db(|db| db.create_device(&site_no, body.into_inner(), now()))?)
}

async fn list_all_devices(s: Data, q: web::Query<DeviceQuery>) -> ApiResult {
    ok(s.with_db(|db| db.list_all_devices(&q, now()))?)
}

async fn get_device(s: Data, id: web::Path<String>) -> ApiResult {
    ok(s.with_db(|db| db.get_device(&id, now()))?)
}

async fn patch_device(s: Data, id: web::Path<String>, body: web::Json<DevicePatch>) -> ApiResult {
    ok(s.patch_device_by(&id, body.into_inner(), true)?)
}

async fn change_xmit(s: Data, id: web::Path<String>, body: web::Json<ChangeXmit>) -> ApiResult {
    ok(s.change_xmit_by(&id, &body.new_transmitter_code, true)?)
}

async fn list_configurations(s: Data, id: web::Path<String>) -> ApiResult {
    ok(Items::all(
        s.with_db(|db| db.list_configurations(&id, now()))?,
    ))
}

async fn create_configuration(
    s: Data,
    id: web::Path<String>,
    body: web::Json<NewConfiguration>,
) -> ApiResult {
    created(s.with_db(|db| db.create_configuration(&id, body.into_inner(), now()))?)
}

async fn patch_configuration(
    s: Data,
    path: web::Path<(String, String)>,
    body: web::Json<ConfigurationPatch>,
) -> ApiResult {
    let (id, config_id) = path.into_inner();
    ok(s.with_db(|db| db.patch_configuration(&id, &config_id, body.into_inner(), now()))?)
}

async fn list_contacts(s: Data, site_no: web::Path<String>) -> ApiResult {
    ok(Items::all(s.with_db(|db| db.list_contacts(&site_no))?))
}

async fn create_contact(
    s: Data,
    site_no: web::Path<String>,
    body: web::Json<NewContact>,
) -> ApiResult {
    created(s.with_db(|db| db.create_contact(&site_no, body.into_inner(), now()))?)
}

async fn patch_contact(
    s: Data,
    path: web::Path<(String, String)>,
    body: web::Json<ContactPatch>,
) -> ApiResult {
    let (site_no, contact_id) = path.into_inner();
    ok(s.with_db(|db| db.patch_contact(&site_no, &contact_id, body.into_inner(), now()))?)
}

async fn delete_contact(s: Data, path: web::Path<(String, String)>) -> ApiResult {
    let (site_no, contact_id) = path.into_inner();
    s.with_db(|db| db.delete_contact(&site_no, &contact_id, now()))?;
    Ok(HttpResponse::NoContent().finish())
}

async fn list_notes(s: Data, site_no: web::Path<String>) -> ApiResult {
    ok(Items::all(s.with_db(|db| db.list_notes(&site_no))?))
}

async fn create_note(s: Data, site_no: web::Path<String>, body: web::Json<NewNote>) -> ApiResult {
    created(s.with_db(|db| db.create_note(&site_no, body.into_inner(), now()))?)
}

async fn device_history(s: Data, id: web::Path<String>, w: web::Query<Window>) -> ApiResult {
    let (from, to) = w.parse()?;
    ok(Items::all(
        s.with_db(|db| db.device_history(&id, from, to, now()))?,
    ))
}

async fn list_tests(s: Data, id: web::Path<String>) -> ApiResult {
    ok(Items::all(s.with_db(|db| db.list_tests(&id, now()))?))
}

async fn start_test(s: Data, id: web::Path<String>, body: web::Json<NewTest>) -> ApiResult {
    created(s.with_db(|db| db.start_test(&id, body.into_inner(), now()))?)
}

async fn end_test(s: Data, path: web::Path<(String, String)>) -> ApiResult {
    let (id, test_id) = path.into_inner();
    s.with_db(|db| db.end_test(&id, &test_id, now()))?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- admin ----------------------------------------------------------------

async fn get_faults(s: Data) -> ApiResult {
    ok(s.faults())
}

async fn put_faults(s: Data, body: web::Json<Vec<FaultRule>>) -> ApiResult {
    s.set_faults(body.into_inner())
        .map_err(ApiError::validation)?;
    ok(s.faults())
}

async fn add_fault(s: Data, body: web::Json<FaultRule>) -> ApiResult {
    s.add_fault(body.into_inner())
        .map_err(ApiError::validation)?;
    created(s.faults())
}

async fn clear_faults(s: Data) -> ApiResult {
    s.clear_faults();
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize)]
struct NewUser {
    username: String,
    password: String,
}

async fn add_user(s: Data, body: web::Json<NewUser>) -> ApiResult {
    if body.username.is_empty() || body.username.contains(':') {
        return Err(ApiError::validation(
            "username: must be non-empty and without ':'",
        ));
    }
    s.add_user(&body.username, &body.password);
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize)]
struct NewStatus {
    status: DeviceStatus,
}

async fn set_status(s: Data, id: web::Path<String>, body: web::Json<NewStatus>) -> ApiResult {
    ok(s.set_device_status(&id, body.status)?)
}

#[derive(Debug, Deserialize)]
struct NewSignal {
    event_code: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    point: Option<u32>,
    /// Defaults to now.
    #[serde(default)]
    occurred_at: Option<DateTime<Utc>>,
}

async fn add_signal(s: Data, id: web::Path<String>, body: web::Json<NewSignal>) -> ApiResult {
    let b = body.into_inner();
    let at = b.occurred_at.unwrap_or_else(now);
    created(s.with_db(|db| db.add_signal(&id, at, &b.event_code, &b.description, b.point))?)
}

async fn stats(s: Data) -> ApiResult {
    ok(s.stats())
}

async fn reset(s: Data) -> ApiResult {
    s.reset();
    Ok(HttpResponse::NoContent().finish())
}

async fn get_callbacks(s: Data) -> ApiResult {
    ok(s.callback_status())
}

async fn put_callbacks(s: Data, body: web::Json<CallbackTarget>) -> ApiResult {
    s.set_callback_target(body.into_inner())
        .map_err(ApiError::validation)?;
    ok(s.callback_status())
}

async fn delete_callbacks(s: Data) -> ApiResult {
    s.clear_callback_target();
    Ok(HttpResponse::NoContent().finish())
}

async fn send_callback(s: Data, body: web::Json<serde_json::Value>) -> ApiResult {
    ok(s.send_callback(body.into_inner()).await?)
}

async fn callback_log(s: Data) -> ApiResult {
    ok(Items::all(s.callback_log()))
}
