//! The Stages tab of a site or device: live views (paged), edits made in
//! Stages, and test mode with windows given in the site's own time zone.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use domain::stages::{StagesContactPatch, StagesDevicePatch};
use domain::stages_tab::{self, HistoryQuery, SiteView, SiteViewItems, TestRequest};
use domain::tenancy::Role;
use domain::test_mode::{LocalReading, TestWindow, WindowEnd};
use domain::validation::ValidationError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::extract::{connection_id, page_slice, JsonBody, PageParams, Query};
use crate::problem::ApiResult;
use crate::routes::stages::{
    with_contact_fields, with_device_fields, ConfigurationBody, ContactBody, PhoneBody,
    StagesDeviceResponse,
};
use crate::routes::stages_tab_edits::{self, HistoryParams};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    let base = "/connections/{connection_id}/stages";
    cfg.route(
        &format!("{base}/sites/{{site_no}}/devices"),
        web::get().to(site_devices),
    )
    .route(
        &format!("{base}/sites/{{site_no}}/notes"),
        web::get().to(site_notes),
    )
    .route(
        &format!("{base}/sites/{{site_no}}/history"),
        web::get().to(site_history),
    )
    .service(
        web::resource(format!("{base}/sites/{{site_no}}/tests"))
            .route(web::post().to(site_tests))
            .route(web::delete().to(stages_tab_edits::clear_site_tests)),
    )
    .service(
        web::resource(format!("{base}/sites/{{site_no}}/contacts"))
            .route(web::get().to(site_contacts))
            .route(web::post().to(create_contact)),
    )
    .service(
        web::resource(format!("{base}/sites/{{site_no}}/contacts/{{contact_id}}"))
            .route(web::patch().to(update_contact))
            .route(web::delete().to(stages_tab_edits::delete_contact)),
    )
    .route(
        &format!("{base}/devices/{{device_id}}"),
        web::patch().to(edit_device),
    )
    .service(
        web::resource(format!("{base}/devices/{{device_id}}/configurations"))
            .route(web::get().to(device_configurations))
            .route(web::post().to(create_configuration)),
    )
    .route(
        &format!("{base}/devices/{{device_id}}/configurations/{{zone}}"),
        web::patch().to(stages_tab_edits::update_zone),
    )
    .route(
        &format!("{base}/devices/{{device_id}}/history"),
        web::get().to(device_history),
    )
    .service(
        web::resource(format!("{base}/devices/{{device_id}}/tests"))
            .route(web::get().to(device_tests))
            .route(web::post().to(start_test)),
    )
    .route(
        &format!("{base}/devices/{{device_id}}/tests/{{test_id}}"),
        web::delete().to(end_test),
    );
}

/// A page of Stages records as Stages gives them (see docs/stages-protocol.md for each shape).
#[derive(Debug, Serialize, ToSchema)]
pub struct StagesItems {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<serde_json::Value>,
    pub next_page_token: Option<String>,
}

fn paged<T: Serialize>(items: Vec<T>, page: &PageParams) -> ApiResult<HttpResponse> {
    let (items, next) = page_slice(items, page)?;
    Ok(HttpResponse::Ok().json(StagesItems {
        items: items
            .into_iter()
            .filter_map(|i| serde_json::to_value(i).ok())
            .collect(),
        next_page_token: next,
    }))
}

/// What a live list of the Stages tab reads: a view of a site, or of a
/// device; every one of them is read whole from Stages and paged here.
enum Listing {
    Site(SiteView),
    SiteHistory(HistoryParams),
    DeviceConfigurations,
    DeviceHistory(HistoryParams),
    DeviceTests,
}

/// The one body of the list routes: `path` is the connection and the site
/// number or device id the listing reads.
async fn listing(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
    page: Query<PageParams>,
    what: Listing,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let (cid, id) = path.into_inner();
    let ports = state.linking();
    // A history's filters are checked before its connection id, as they were
    // when each route had its own body.
    let history = match &what {
        Listing::SiteHistory(filter) | Listing::DeviceHistory(filter) => filter.to_query()?,
        _ => HistoryQuery::default(),
    };
    let cid = connection_id(&cid)?;
    match what {
        Listing::Site(view) => {
            match stages_tab::site_view(ports, caller, cid, &crate::extract::site_no(&id)?, view)
                .await?
            {
                SiteViewItems::Devices(d) => paged(d, &page),
                SiteViewItems::Notes(n) => paged(n, &page),
                SiteViewItems::Contacts(c) => paged(c, &page),
            }
        }
        Listing::SiteHistory(_) => paged(
            stages_tab::site_history(ports, caller, cid, &crate::extract::site_no(&id)?, &history)
                .await?,
            &page,
        ),
        Listing::DeviceConfigurations => paged(
            stages_tab::device_configurations(ports, caller, cid, &crate::extract::device_id(&id)?)
                .await?,
            &page,
        ),
        Listing::DeviceHistory(_) => paged(
            stages_tab::device_history(
                ports,
                caller,
                cid,
                &crate::extract::device_id(&id)?,
                &history,
            )
            .await?,
            &page,
        ),
        Listing::DeviceTests => paged(
            stages_tab::list_tests(ports, caller, cid, &crate::extract::device_id(&id)?).await?,
            &page,
        ),
    }
}

/// List a Stages site's devices.
///
/// The devices of a Stages site, read live from Stages. Changes nothing.
#[utoipa::path(get, path = "/v1/connections/{connection_id}/stages/sites/{site_no}/devices", tag = "stages", security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path), ("site_no" = String, Path), PageParams),
    responses((status = 200, description = "A page of devices", body = StagesItems),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 504, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn site_devices(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
    page: Query<PageParams>,
) -> ApiResult<HttpResponse> {
    listing(state, auth, path, page, Listing::Site(SiteView::Devices)).await
}

/// List a Stages site's notes.
///
/// The notes of a Stages site, read live from Stages. Changes nothing.
#[utoipa::path(get, path = "/v1/connections/{connection_id}/stages/sites/{site_no}/notes", tag = "stages", security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path), ("site_no" = String, Path), PageParams),
    responses((status = 200, description = "A page of notes", body = StagesItems),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn site_notes(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
    page: Query<PageParams>,
) -> ApiResult<HttpResponse> {
    listing(state, auth, path, page, Listing::Site(SiteView::Notes)).await
}

/// List a Stages site's contacts.
///
/// The contacts of a Stages site, read live from Stages. Contacts exist only in Stages; their
/// PINs are never shown.
#[utoipa::path(get, path = "/v1/connections/{connection_id}/stages/sites/{site_no}/contacts", tag = "stages", security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path), ("site_no" = String, Path), PageParams),
    responses((status = 200, description = "A page of contacts", body = StagesItems),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn site_contacts(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
    page: Query<PageParams>,
) -> ApiResult<HttpResponse> {
    listing(state, auth, path, page, Listing::Site(SiteView::Contacts)).await
}

/// Read a Stages site's history.
///
/// The signals and events of a Stages site, read live from Stages, newest first; `from`, `to`
/// and `kind=tests` filter. Changes nothing.
#[utoipa::path(get, path = "/v1/connections/{connection_id}/stages/sites/{site_no}/history", tag = "stages", security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path), ("site_no" = String, Path), HistoryParams, PageParams),
    responses((status = 200, description = "A page of history entries", body = StagesItems),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn site_history(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
    filter: Query<HistoryParams>,
    page: Query<PageParams>,
) -> ApiResult<HttpResponse> {
    listing(state, auth, path, page, Listing::SiteHistory(filter.0)).await
}

/// List a device's zones.
///
/// The configurations (zones) of a Stages device, read live from Stages. Changes nothing.
#[utoipa::path(get, path = "/v1/connections/{connection_id}/stages/devices/{device_id}/configurations", tag = "stages", security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path), ("device_id" = String, Path), PageParams),
    responses((status = 200, description = "A page of zones", body = StagesItems),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn device_configurations(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
    page: Query<PageParams>,
) -> ApiResult<HttpResponse> {
    listing(state, auth, path, page, Listing::DeviceConfigurations).await
}

/// Read a device's history.
///
/// The signals and events of one Stages device only, read live from Stages, newest first;
/// `from`, `to` and `kind=tests` filter. Changes nothing.
#[utoipa::path(get, path = "/v1/connections/{connection_id}/stages/devices/{device_id}/history", tag = "stages", security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path), ("device_id" = String, Path), HistoryParams, PageParams),
    responses((status = 200, description = "A page of history entries", body = StagesItems),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn device_history(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
    filter: Query<HistoryParams>,
    page: Query<PageParams>,
) -> ApiResult<HttpResponse> {
    listing(state, auth, path, page, Listing::DeviceHistory(filter.0)).await
}

/// Add a contact to a Stages site.
///
/// Creates a contact of a Stages site in Stages. Contacts exist only in Stages; nothing is
/// written to the billing records.
#[utoipa::path(post, path = "/v1/connections/{connection_id}/stages/sites/{site_no}/contacts", tag = "stages", security(("bearer" = ["operator"])),
    params(("connection_id" = Uuid, Path), ("site_no" = String, Path)),
    request_body = ContactBody,
    responses((status = 201, description = "The contact as Stages stored it", body = Object, headers(("Location" = String))),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn create_contact(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
    body: JsonBody<ContactBody>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let (cid, site_no) = path.into_inner();
    if body.0.name.trim().is_empty() {
        return Err(ValidationError::field("name", "must not be empty").into());
    }
    let contact = stages_tab::create_contact(
        state.linking(),
        caller,
        connection_id(&cid)?,
        &crate::extract::site_no(&site_no)?,
        &body.0.into(),
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!(
                "/v1/connections/{cid}/stages/sites/{}/contacts/{}",
                contact.site_no, contact.contact_id
            ),
        ))
        .json(contact))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactPatchBody {
    pub name: Option<String>,
    pub relation: Option<String>,
    pub authority: Option<String>,
    pub phones: Option<Vec<PhoneBody>>,
    pub email: Option<String>,
    pub has_keys: Option<bool>,
    pub ecv: Option<bool>,
    pub effective_date: Option<NaiveDate>,
    pub expire_date: Option<NaiveDate>,
    /// Write-only.
    #[schema(format = Password)]
    pub pin: Option<String>,
}

/// Edit a contact of a Stages site.
///
/// Changes the fields given of one contact in Stages. Nothing is written to the billing
/// records.
#[utoipa::path(patch, path = "/v1/connections/{connection_id}/stages/sites/{site_no}/contacts/{contact_id}", tag = "stages", security(("bearer" = ["operator"])),
    params(("connection_id" = Uuid, Path), ("site_no" = String, Path), ("contact_id" = String, Path)),
    request_body = ContactPatchBody,
    responses((status = 200, description = "The contact as Stages stored it", body = Object),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn update_contact(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String, String)>,
    body: JsonBody<ContactPatchBody>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let (cid, site_no, contact_id) = path.into_inner();
    let b = body.0;
    if b.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(ValidationError::field("name", "must not be empty").into());
    }
    let patch = with_contact_fields!(StagesContactPatch from b {
        phones: b.phones.map(|p| p.into_iter().map(Into::into).collect()),
        pin: b.pin,
    });
    let contact = stages_tab::update_contact(
        state.linking(),
        caller,
        connection_id(&cid)?,
        &crate::extract::site_no(&site_no)?,
        &contact_id,
        &patch,
    )
    .await?;
    Ok(HttpResponse::Ok().json(contact))
}

/// Add a zone to a device.
///
/// Creates a configuration (zone) of a Stages device in Stages. Nothing is written to the
/// billing records.
#[utoipa::path(post, path = "/v1/connections/{connection_id}/stages/devices/{device_id}/configurations", tag = "stages", security(("bearer" = ["operator"])),
    params(("connection_id" = Uuid, Path), ("device_id" = String, Path)),
    request_body = ConfigurationBody,
    responses((status = 201, description = "The zone as Stages stored it; `Location` names the device's zone list", body = Object, headers(("Location" = String))),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn create_configuration(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
    body: JsonBody<ConfigurationBody>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let (cid, device_id) = path.into_inner();
    let config = stages_tab::create_configuration(
        state.linking(),
        caller,
        connection_id(&cid)?,
        &crate::extract::device_id(&device_id)?,
        &body.0.into(),
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/v1/connections/{cid}/stages/devices/{device_id}/configurations"),
        ))
        .json(config))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceEditBody {
    /// A new transmitter code (changed with its own Stages call).
    pub transmitter_code: Option<String>,
    pub alt_device_id: Option<String>,
    pub oos_category: Option<String>,
    pub device_type: Option<String>,
    pub timer_test_type: Option<String>,
    pub timer_test_days: Option<u32>,
    pub timer_test_hours: Option<u32>,
    pub timer_test_minutes: Option<u32>,
    pub fail_event: Option<String>,
    pub ivr_number: Option<String>,
    pub primary_xmit: Option<String>,
    pub comm_type: Option<String>,
    pub line_security: Option<String>,
    pub lid_type: Option<String>,
    pub url_text: Option<String>,
    pub url_target: Option<String>,
    pub signal_format: Option<String>,
    pub entry_period: Option<String>,
    pub exit_period: Option<String>,
    pub location: Option<String>,
    pub info: Option<String>,
    pub silent: Option<bool>,
    pub config_only: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceEditResponse {
    pub device: StagesDeviceResponse,
    /// The linked billing system, when the device is linked.
    pub billing_system_id: Option<String>,
    /// Its fields that took the new values (published on the change feed).
    pub billing_updated: std::collections::BTreeMap<String, String>,
}

/// Edit a Stages device.
///
/// Changes the fields given of a device in Stages. When the device is linked, the mapped fields
/// (such as the transmitter code) are written to its billing system too, and published on the
/// change feed.
#[utoipa::path(patch, path = "/v1/connections/{connection_id}/stages/devices/{device_id}", tag = "stages", security(("bearer" = ["operator"])),
    params(("connection_id" = Uuid, Path), ("device_id" = String, Path)),
    request_body = DeviceEditBody,
    responses((status = 200, description = "The device as changed, and what changed on the billing side", body = DeviceEditResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn edit_device(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
    body: JsonBody<DeviceEditBody>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let (cid, device_id) = path.into_inner();
    let b = body.0;
    let patch = with_device_fields!(StagesDevicePatch from b { billing_id: None });
    let edited = stages_tab::edit_device(
        state.linking(),
        caller,
        connection_id(&cid)?,
        &crate::extract::device_id(&device_id)?,
        &patch,
        b.transmitter_code.as_deref(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(DeviceEditResponse {
        device: domain::linking::Browsed {
            record: edited.device,
            link: edited.link,
        }
        .into(),
        billing_system_id: edited.billing_system_id,
        billing_updated: edited.billing_updated,
    }))
}

/// List a device's tests.
///
/// The current and scheduled tests of a Stages device, read live from Stages. Changes nothing.
#[utoipa::path(get, path = "/v1/connections/{connection_id}/stages/devices/{device_id}/tests", tag = "stages", security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path), ("device_id" = String, Path), PageParams),
    responses((status = 200, description = "A page of tests", body = StagesItems),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn device_tests(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
    page: Query<PageParams>,
) -> ApiResult<HttpResponse> {
    listing(state, auth, path, page, Listing::DeviceTests).await
}

/// A test window in the site's local time, e.g. `2027-03-14T01:30` (no
/// offset): a start and either an `end` or a duration (`hours` and/or
/// `minutes`, real time from the start), never both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartTestRequest {
    #[schema(value_type = String, example = "2027-03-14T01:30:00")]
    pub start: NaiveDateTime,
    #[schema(value_type = Option<String>, example = "2027-03-14T04:00:00")]
    #[serde(default)]
    pub end: Option<NaiveDateTime>,
    /// The duration's hours (instead of `end`).
    #[serde(default)]
    pub hours: Option<u32>,
    /// The duration's minutes, 0 to 59 (instead of `end`).
    #[serde(default)]
    pub minutes: Option<u32>,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LocalReadingDto {
    Exact,
    ShiftedOutOfGap,
    EarlierOfTwo,
    LaterOfTwo,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WindowEndResponse {
    #[schema(value_type = String)]
    pub local: NaiveDateTime,
    pub utc: DateTime<Utc>,
    pub utc_offset: String,
    /// How the local time was read: exact, moved out of a daylight-saving gap, or one of two.
    pub reading: LocalReadingDto,
}

impl From<WindowEnd> for WindowEndResponse {
    fn from(w: WindowEnd) -> Self {
        Self {
            local: w.local,
            utc: w.utc,
            utc_offset: w.utc_offset,
            reading: match w.reading {
                LocalReading::Exact => LocalReadingDto::Exact,
                LocalReading::ShiftedOutOfGap => LocalReadingDto::ShiftedOutOfGap,
                LocalReading::EarlierOfTwo => LocalReadingDto::EarlierOfTwo,
                LocalReading::LaterOfTwo => LocalReadingDto::LaterOfTwo,
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestWindowResponse {
    /// The site's IANA zone.
    pub time_zone: String,
    pub start: WindowEndResponse,
    pub end: WindowEndResponse,
}

impl From<TestWindow> for TestWindowResponse {
    fn from(w: TestWindow) -> Self {
        Self {
            time_zone: w.time_zone,
            start: w.start.into(),
            end: w.end.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StartedTestResponse {
    /// The test as Stages holds it.
    #[schema(value_type = Object)]
    pub test: serde_json::Value,
    pub window: TestWindowResponse,
}

pub(crate) fn test_request(state: &AppState, b: StartTestRequest) -> ApiResult<TestRequest> {
    if b.reason.chars().count() > 500 {
        return Err(ValidationError::field("reason", "must be at most 500 characters").into());
    }
    let end = domain::test_mode::TestEnd::from_parts(b.end, b.hours, b.minutes)?;
    Ok(TestRequest {
        start: b.start,
        end,
        reason: b.reason,
        max_hours: state.settings.stages.max_test_hours,
    })
}

/// Put a device on test.
///
/// Puts a Stages device on test (all points) from `start` to `end`, or for `hours` and
/// `minutes`, given in its site's time zone. Refused while the device's status does not allow a
/// test (in alarm, out of service). Changes nothing in the billing records.
#[utoipa::path(post, path = "/v1/connections/{connection_id}/stages/devices/{device_id}/tests", tag = "stages", security(("bearer" = ["operator"])),
    params(("connection_id" = Uuid, Path), ("device_id" = String, Path)),
    request_body = StartTestRequest,
    responses((status = 201, description = "The test started; `Location` names it (DELETE ends it)", body = StartedTestResponse, headers(("Location" = String))),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The device is in alarm or out of service", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn start_test(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
    body: JsonBody<StartTestRequest>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let (cid, device_id) = path.into_inner();
    let request = test_request(&state, body.0)?;
    let started = stages_tab::start_test(
        state.linking(),
        caller,
        connection_id(&cid)?,
        &crate::extract::device_id(&device_id)?,
        &request,
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!(
                "/v1/connections/{cid}/stages/devices/{device_id}/tests/{}",
                started.test.test_id
            ),
        ))
        .json(StartedTestResponse {
            test: serde_json::to_value(started.test).unwrap_or_default(),
            window: started.window.into(),
        }))
}

/// End a device's test.
///
/// Ends one test of a Stages device in Stages. Changes nothing in the billing records.
#[utoipa::path(delete, path = "/v1/connections/{connection_id}/stages/devices/{device_id}/tests/{test_id}", tag = "stages", security(("bearer" = ["operator"])),
    params(("connection_id" = Uuid, Path), ("device_id" = String, Path), ("test_id" = String, Path)),
    responses((status = 204, description = "Ended"),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn end_test(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let (cid, device_id, test_id) = path.into_inner();
    stages_tab::end_test(
        state.linking(),
        caller,
        connection_id(&cid)?,
        &crate::extract::device_id(&device_id)?,
        &test_id,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceTestResultResponse {
    pub device_id: String,
    #[schema(value_type = Option<Object>)]
    pub test: Option<serde_json::Value>,
    /// Why this device is not on test.
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SiteTestsResponse {
    pub window: TestWindowResponse,
    pub devices: Vec<DeviceTestResultResponse>,
}

/// Put every device of a site on test.
///
/// Puts each device of a Stages site on test (all points) for the same period. Each device
/// answers for itself: one refused device does not stop the others, and the answer lists each
/// outcome.
#[utoipa::path(post, path = "/v1/connections/{connection_id}/stages/sites/{site_no}/tests", tag = "stages", security(("bearer" = ["operator"])),
    params(("connection_id" = Uuid, Path), ("site_no" = String, Path)),
    request_body = StartTestRequest,
    responses((status = 200, description = "Each device's outcome", body = SiteTestsResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn site_tests(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
    body: JsonBody<StartTestRequest>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let (cid, site_no) = path.into_inner();
    let request = test_request(&state, body.0)?;
    let (window, results) = stages_tab::start_site_tests(
        state.linking(),
        caller,
        connection_id(&cid)?,
        &crate::extract::site_no(&site_no)?,
        &request,
    )
    .await?;
    Ok(HttpResponse::Ok().json(SiteTestsResponse {
        window: window.into(),
        devices: results
            .into_iter()
            .map(|r| DeviceTestResultResponse {
                device_id: r.device_id.into(),
                test: r.test.and_then(|t| serde_json::to_value(t).ok()),
                error: r.error,
            })
            .collect(),
    }))
}
