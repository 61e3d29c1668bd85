//! Browsing Stages through a connection (lookups, sites, devices), and the
//! Stages record shapes the API takes and gives.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use domain::linking::{self, Browsed, StagesSiteExtras};
use domain::stages::{
    ContactPhone, DeviceStatus, LookupList, NewStagesConfiguration, NewStagesContact,
    StagesContactFields, StagesDevice, StagesDeviceFields, StagesSite, StagesSiteQuery,
};
use domain::tenancy::Role;
use domain::validation::ValidationError;
use serde::{Deserialize, Serialize};
use utoipa::openapi::{schema::Schema, RefOr};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Auth;
use crate::extract::{connection_id, page_slice, PageParams, Query};
use crate::problem::{ApiError, ApiResult};
use crate::routes::links::LinkResponse;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/connections/{connection_id}/stages/lookups/{list}",
        web::get().to(lookup),
    )
    .route(
        "/connections/{connection_id}/stages/sites",
        web::get().to(list_sites),
    )
    .route(
        "/connections/{connection_id}/stages/sites/{site_no}",
        web::get().to(get_site),
    )
    .route(
        "/connections/{connection_id}/stages/devices/{device_id}",
        web::get().to(get_device),
    );
}

/// The Stages-only fields of a site; codes come from the central station's lists.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SiteExtrasBody {
    pub region: String,
    /// IANA zone from the time-zones list.
    pub time_zone: String,
    pub site_type: String,
    pub dispatch_type: String,
    pub permit: String,
    pub subdivision: String,
    pub pets: String,
    /// The central station holds keys.
    pub keys: bool,
    pub ul_code: String,
    pub authority: String,
}

impl From<SiteExtrasBody> for StagesSiteExtras {
    fn from(b: SiteExtrasBody) -> Self {
        Self {
            region: b.region,
            time_zone: b.time_zone,
            site_type: b.site_type,
            dispatch_type: b.dispatch_type,
            permit: b.permit,
            subdivision: b.subdivision,
            pets: b.pets,
            keys: b.keys,
            ul_code: b.ul_code,
            authority: b.authority,
        }
    }
}

/// `$record { f: $from.f, ... }` for each listed field `f`, then `$rest`:
/// a body and a Stages record that name their fields alike.
macro_rules! move_fields {
    ($record:ident from $from:ident [$($field:ident),* $(,)?] { $($rest:tt)* }) => {
        $record { $($field: $from.$field,)* $($rest)* }
    };
}

/// Builds `$record` from `$from`, moving the device fields that the device
/// bodies and the Stages device records share (listed once, here), then
/// those in braces, which differ between them.
macro_rules! with_device_fields {
    ($record:ident from $from:ident { $($rest:tt)* }) => {
        $crate::routes::stages::move_fields!($record from $from [
            alt_device_id, oos_category, device_type, timer_test_type, timer_test_days,
            timer_test_hours, timer_test_minutes, fail_event, ivr_number, primary_xmit,
            comm_type, line_security, lid_type, url_text, url_target, signal_format,
            entry_period, exit_period, location, info, silent, config_only,
        ] { $($rest)* })
    };
}

/// As `with_device_fields`, for the contact fields.
macro_rules! with_contact_fields {
    ($record:ident from $from:ident { $($rest:tt)* }) => {
        $crate::routes::stages::move_fields!($record from $from [
            name, relation, authority, email, has_keys, ecv, effective_date, expire_date,
        ] { $($rest)* })
    };
}
pub(crate) use {move_fields, with_contact_fields, with_device_fields};

/// Every device field of a Stages device (a billing system).
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceFieldsBody {
    /// The account identifier (CSID, Xmit#); unique within the central station.
    pub transmitter_code: String,
    pub alt_device_id: String,
    pub oos_category: String,
    pub device_type: String,
    pub timer_test_type: String,
    pub timer_test_days: Option<u32>,
    pub timer_test_hours: Option<u32>,
    pub timer_test_minutes: Option<u32>,
    pub fail_event: String,
    pub ivr_number: String,
    pub primary_xmit: String,
    pub comm_type: String,
    pub line_security: String,
    pub lid_type: String,
    pub url_text: String,
    pub url_target: String,
    pub signal_format: String,
    /// mm:ss
    pub entry_period: String,
    /// mm:ss
    pub exit_period: String,
    pub location: String,
    pub info: String,
    pub first_signal_at: Option<DateTime<Utc>>,
    pub silent: bool,
    pub config_only: bool,
}

impl From<DeviceFieldsBody> for StagesDeviceFields {
    fn from(b: DeviceFieldsBody) -> Self {
        with_device_fields!(Self from b {
            transmitter_code: b.transmitter_code,
            first_signal_at: b.first_signal_at,
            billing_id: None,
        })
    }
}

impl From<StagesDeviceFields> for DeviceFieldsBody {
    fn from(f: StagesDeviceFields) -> Self {
        with_device_fields!(Self from f {
            transmitter_code: f.transmitter_code,
            first_signal_at: f.first_signal_at,
        })
    }
}

/// A zone of a device.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigurationBody {
    pub point: u32,
    #[serde(default)]
    pub area: String,
    #[serde(default)]
    pub event_code: String,
    #[serde(default)]
    pub description: String,
}

impl From<ConfigurationBody> for NewStagesConfiguration {
    fn from(b: ConfigurationBody) -> Self {
        Self {
            point: b.point,
            area: b.area,
            event_code: b.event_code,
            description: b.description,
        }
    }
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneBody {
    pub kind: crate::dto::PhoneKind,
    pub number: String,
}

impl From<PhoneBody> for ContactPhone {
    fn from(p: PhoneBody) -> Self {
        Self {
            kind: p.kind.as_str().to_owned(),
            number: p.number,
        }
    }
}

/// A Stages site contact (Stages-only; billing contacts are separate).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactBody {
    pub name: String,
    #[serde(default)]
    pub relation: String,
    #[serde(default)]
    pub authority: String,
    #[serde(default)]
    pub phones: Vec<PhoneBody>,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub has_keys: bool,
    /// Enhanced call verification.
    #[serde(default)]
    pub ecv: bool,
    pub effective_date: Option<NaiveDate>,
    pub expire_date: Option<NaiveDate>,
    /// Write-only.
    #[schema(format = Password)]
    pub pin: Option<String>,
}

impl From<ContactBody> for NewStagesContact {
    fn from(b: ContactBody) -> Self {
        Self {
            fields: with_contact_fields!(StagesContactFields from b {
                phones: b.phones.into_iter().map(Into::into).collect(),
            }),
            pin: b.pin,
        }
    }
}

/// A request body's schema without its `additionalProperties: false`, for a
/// response that flattens it: under the response's `allOf` a closed part would
/// forbid the response's own fields (found by schemathesis).
fn open_schema<T: utoipa::PartialSchema>() -> RefOr<Schema> {
    let mut schema = T::schema();
    if let RefOr::T(Schema::Object(object)) = &mut schema {
        object.additional_properties = None;
    }
    schema
}

fn site_extras_open() -> RefOr<Schema> {
    open_schema::<SiteExtrasBody>()
}

fn device_fields_open() -> RefOr<Schema> {
    open_schema::<DeviceFieldsBody>()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StagesSiteResponse {
    pub site_no: String,
    pub name: String,
    pub address1: String,
    pub address2: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    pub phone: String,
    pub info: String,
    #[serde(flatten)]
    #[schema(schema_with = site_extras_open)]
    pub extras: SiteExtrasBody,
    /// The billing site id stored in Stages.
    pub billing_id: Option<String>,
    /// The service's link of this site on this connection.
    pub link: Option<LinkResponse>,
}

impl From<Browsed<StagesSite>> for StagesSiteResponse {
    fn from(b: Browsed<StagesSite>) -> Self {
        let s = b.record;
        Self {
            site_no: s.site_no.into(),
            name: s.name,
            address1: s.address1,
            address2: s.address2,
            city: s.city,
            state: s.state,
            zip: s.zip,
            phone: s.phone,
            info: s.info,
            extras: SiteExtrasBody {
                region: s.region,
                time_zone: s.time_zone,
                site_type: s.site_type,
                dispatch_type: s.dispatch_type,
                permit: s.permit,
                subdivision: s.subdivision,
                pets: s.pets,
                keys: s.keys,
                ul_code: s.ul_code,
                authority: s.authority,
            },
            billing_id: s.billing_id,
            link: b.link.map(Into::into),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatusDto {
    Normal,
    Alarm,
    OutOfService,
    OnTest,
}

impl From<DeviceStatus> for DeviceStatusDto {
    fn from(s: DeviceStatus) -> Self {
        match s {
            DeviceStatus::Normal => Self::Normal,
            DeviceStatus::Alarm => Self::Alarm,
            DeviceStatus::OutOfService => Self::OutOfService,
            DeviceStatus::OnTest => Self::OnTest,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StagesDeviceResponse {
    pub device_id: String,
    pub site_no: String,
    #[serde(flatten)]
    #[schema(schema_with = device_fields_open)]
    pub fields: DeviceFieldsBody,
    pub status: DeviceStatusDto,
    /// The billing system id stored in Stages.
    pub billing_id: Option<String>,
    pub link: Option<LinkResponse>,
}

impl From<Browsed<StagesDevice>> for StagesDeviceResponse {
    fn from(b: Browsed<StagesDevice>) -> Self {
        let d = b.record;
        let billing_id = d.fields.billing_id.clone();
        Self {
            device_id: d.device_id.into(),
            site_no: d.site_no.into(),
            status: d.status.into(),
            fields: d.fields.into(),
            billing_id,
            link: b.link.map(Into::into),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StagesSiteList {
    pub items: Vec<StagesSiteResponse>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StagesSiteDetail {
    #[serde(flatten)]
    pub site: StagesSiteResponse,
    pub devices: Vec<StagesDeviceResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LookupItemResponse {
    pub code: String,
    pub description: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LookupList200 {
    pub items: Vec<LookupItemResponse>,
    /// Stages answers a list whole; it is paged here like every other list.
    pub next_page_token: Option<String>,
}

/// Read a Stages choice list.
///
/// One choice list of the central station (regions, time zones, site types, and so on), read
/// live from Stages, to fill the Stages-only fields of a push. Changes nothing.
#[utoipa::path(get, path = "/v1/connections/{connection_id}/stages/lookups/{list}", tag = "stages", security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path),
        ("list" = crate::dto::LookupListName, Path, description = "Which choice list"),
        PageParams),
    responses((status = 200, description = "A page of the list's entries", body = LookupList200),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn lookup(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
    page: Query<PageParams>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let (cid, list) = path.into_inner();
    let cid = connection_id(&cid)?;
    let list = LookupList::parse(&list)
        .ok_or_else(|| ApiError::not_found(format!("no lookup list '{list}'")))?;
    let items = linking::lookup(state.linking(), caller, cid, list).await?;
    let (items, next_page_token) = page_slice(items, &page)?;
    Ok(HttpResponse::Ok().json(LookupList200 {
        items: items
            .into_iter()
            .map(|i| LookupItemResponse {
                code: i.code,
                description: i.description,
            })
            .collect(),
        next_page_token,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SiteBrowse {
    /// Only sites with no billing id and no link on this connection.
    #[serde(default)]
    pub unlinked: bool,
    /// Free text over name, address, city, phone and site number.
    pub q: Option<String>,
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

/// List Stages sites.
///
/// Sites read live from Stages, for example the unlinked ones, to link one or to fill a new
/// billing site from it. Changes nothing.
#[utoipa::path(get, path = "/v1/connections/{connection_id}/stages/sites", tag = "stages", security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path), SiteBrowse),
    responses((status = 200, description = "A page of Stages sites", body = StagesSiteList),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn list_sites(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    query: Query<SiteBrowse>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let cid = connection_id(&path)?;
    let q = query.into_inner();
    if let Some(size) = q.page_size {
        if !(1..=crate::extract::MAX_PAGE_SIZE).contains(&size) {
            return Err(ValidationError::field("page_size", "must be between 1 and 500").into());
        }
    }
    let page = linking::browse_sites(
        state.linking(),
        caller,
        cid,
        StagesSiteQuery {
            billing_id: None,
            unlinked: q.unlinked,
            q: q.q.filter(|s| !s.trim().is_empty()),
            page_token: q.page_token.filter(|s| !s.is_empty()),
            page_size: q.page_size,
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(StagesSiteList {
        items: page.items.into_iter().map(Into::into).collect(),
        next_page_token: page.next_page_token,
    }))
}

/// Read a Stages site.
///
/// One Stages site with its devices, read live from Stages; says whether it is linked here.
/// Changes nothing.
#[utoipa::path(get, path = "/v1/connections/{connection_id}/stages/sites/{site_no}", tag = "stages", operation_id = "get_stages_site", security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path), ("site_no" = String, Path)),
    responses((status = 200, description = "The Stages site with its devices", body = StagesSiteDetail),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn get_site(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let (cid, site_no) = path.into_inner();
    let cid = connection_id(&cid)?;
    let (site, devices) = linking::stages_site(
        state.linking(),
        caller,
        cid,
        &crate::extract::site_no(&site_no)?,
    )
    .await?;
    Ok(HttpResponse::Ok().json(StagesSiteDetail {
        site: site.into(),
        devices: devices.into_iter().map(Into::into).collect(),
    }))
}

/// Read a Stages device.
///
/// One Stages device, read live from Stages; says whether it is on test or in alarm. Changes
/// nothing.
#[utoipa::path(get, path = "/v1/connections/{connection_id}/stages/devices/{device_id}", tag = "stages", security(("bearer" = ["viewer"])),
    params(("connection_id" = Uuid, Path), ("device_id" = String, Path)),
    responses((status = 200, description = "The Stages device", body = StagesDeviceResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn get_device(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let (cid, device_id) = path.into_inner();
    let cid = connection_id(&cid)?;
    let device = linking::stages_device(
        state.linking(),
        caller,
        cid,
        &crate::extract::device_id(&device_id)?,
    )
    .await?;
    Ok(HttpResponse::Ok().json(StagesDeviceResponse::from(device)))
}
