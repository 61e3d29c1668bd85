//! Push (S5, S9, dry run B6), link (S7), edit link (S12), unlink (S8, S13),
//! the mappings list (S3), and reconcile (B4): every way a record gets into
//! the link table or out of it.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use domain::billing::BillingId;
use domain::connection::ConnectionId;
use domain::link::{Link, LinkFilter, LinkId, LinkKind};
use domain::linking::{
    self, EditLink, LinkRequest, PushRequest, PushSystem, StagesSiteExtras, SystemPair,
};
use domain::stages::{NewStagesConfiguration, NewStagesContact, StagesDeviceFields};
use domain::tenancy::Role;
use domain::validation::ValidationError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Auth;
use crate::extract::{
    connection_id, encode_page_token, etag, if_match, JsonBody, NoBody, PageParams, Query,
};
use crate::problem::{ApiError, ApiResult};
use crate::routes::jobs::JobResponse;
use crate::routes::stages::{ConfigurationBody, ContactBody, DeviceFieldsBody, SiteExtrasBody};
use crate::state::AppState;

/// The mappings list and link creation: one static path, registered ahead
/// of every pattern (see `app::configure`).
pub fn list_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/links")
            .route(web::get().to(list_links))
            .route(web::post().to(create_link)),
    );
}

/// The rest; `/links/{link_id}` goes after the sync routes' `/links/{link_id}:sync`,
/// which it would match too.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/connections/{connection_id}:reconcile",
        web::post().to(reconcile),
    )
    .route("/connections/{connection_id}/push", web::post().to(push))
    .service(
        web::resource("/links/{link_id}")
            .route(web::get().to(get_link))
            .route(web::patch().to(edit_link))
            .route(web::delete().to(unlink)),
    );
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkKindDto {
    Site,
    System,
}

impl From<LinkKind> for LinkKindDto {
    fn from(k: LinkKind) -> Self {
        match k {
            LinkKind::Site => Self::Site,
            LinkKind::System => Self::System,
        }
    }
}

impl From<LinkKindDto> for LinkKind {
    fn from(k: LinkKindDto) -> Self {
        match k {
            LinkKindDto::Site => Self::Site,
            LinkKindDto::System => Self::System,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkResponse {
    pub id: Uuid,
    pub connection_id: Uuid,
    pub kind: LinkKindDto,
    pub billing_id: String,
    /// The Stages site number or device id.
    pub external_id: String,
    /// A system link's site link.
    pub parent_id: Option<Uuid>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Link> for LinkResponse {
    fn from(l: Link) -> Self {
        Self {
            id: l.id.0,
            connection_id: l.connection_id.0,
            kind: l.kind.into(),
            billing_id: l.billing_id.to_string(),
            external_id: l.external_id,
            parent_id: l.parent_id.map(|p| p.0),
            version: l.version,
            created_at: l.created_at,
            updated_at: l.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkList {
    pub items: Vec<LinkResponse>,
    pub next_page_token: Option<String>,
}

fn link_id(raw: &str) -> ApiResult<LinkId> {
    Uuid::parse_str(raw)
        .map(LinkId)
        .map_err(|_| ApiError::not_found("no such link"))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DryRun {
    /// Show what would change and change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushSystemBody {
    pub billing_system_id: String,
    /// The device fields; `transmitter_code` is required and becomes the system number.
    pub device: DeviceFieldsBody,
    #[serde(default)]
    pub configurations: Vec<ConfigurationBody>,
}

/// Exactly one of `billing_site_id` (a new Stages site with its contacts and
/// devices) or `billing_system_id` (a device of the linked site).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushBody {
    pub billing_site_id: Option<String>,
    /// The Stages-only site fields, checked against the central station's lists.
    pub site: Option<SiteExtrasBody>,
    #[serde(default)]
    pub contacts: Vec<ContactBody>,
    /// The billing systems to push as devices with the site.
    #[serde(default)]
    pub systems: Vec<PushSystemBody>,
    pub billing_system_id: Option<String>,
    pub device: Option<DeviceFieldsBody>,
    #[serde(default)]
    pub configurations: Vec<ConfigurationBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PushedRecordResponse {
    pub kind: LinkKindDto,
    pub billing_id: String,
    pub external_id: Option<String>,
    pub action: crate::dto::PushAction,
    pub link_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PushResponse {
    pub dry_run: bool,
    pub records: Vec<PushedRecordResponse>,
    /// In a dry run: the site that would be sent to Stages.
    #[schema(value_type = Option<Object>)]
    pub would_send: Option<serde_json::Value>,
}

pub(crate) fn billing_id(v: &mut ValidationError, field: &str, raw: &str) -> Option<BillingId> {
    v.check(field, BillingId::parse(raw))
}

fn push_system(v: &mut ValidationError, prefix: &str, b: PushSystemBody) -> Option<PushSystem> {
    let id = billing_id(
        v,
        &format!("{prefix}billing_system_id"),
        &b.billing_system_id,
    )?;
    Some(PushSystem {
        billing_system_id: id,
        device: StagesDeviceFields::from(b.device),
        configurations: b
            .configurations
            .into_iter()
            .map(NewStagesConfiguration::from)
            .collect(),
    })
}

pub(crate) fn push_request(b: PushBody) -> ApiResult<PushRequest> {
    let mut v = ValidationError::default();
    match (b.billing_site_id, b.billing_system_id) {
        (Some(site), None) => {
            if b.device.is_some() || !b.configurations.is_empty() {
                v.push("device", "a site push lists its devices under systems[]");
            }
            let site = billing_id(&mut v, "billing_site_id", &site);
            let systems: Vec<_> = b
                .systems
                .into_iter()
                .enumerate()
                .filter_map(|(i, s)| push_system(&mut v, &format!("systems[{i}]."), s))
                .collect();
            v.into_result()?;
            Ok(PushRequest::Site {
                billing_site_id: site.expect("checked"),
                extras: b.site.map(StagesSiteExtras::from).unwrap_or_default(),
                contacts: b.contacts.into_iter().map(NewStagesContact::from).collect(),
                systems,
            })
        }
        (None, Some(system)) => {
            if b.site.is_some() || !b.contacts.is_empty() || !b.systems.is_empty() {
                v.push(
                    "billing_system_id",
                    "a system push takes only device and configurations",
                );
            }
            let Some(device) = b.device else {
                v.push("device", "a system push needs the device fields");
                return Err(v.into());
            };
            let spec = push_system(
                &mut v,
                "",
                PushSystemBody {
                    billing_system_id: system,
                    device,
                    configurations: b.configurations,
                },
            );
            v.into_result()?;
            Ok(PushRequest::System(spec.expect("checked")))
        }
        _ => {
            v.push(
                "billing_site_id",
                "give exactly one of billing_site_id or billing_system_id",
            );
            Err(v.into())
        }
    }
}

/// Push a billing site or system to Stages.
///
/// Sends a billing site to Stages as a new site (with its Stages-only fields, contacts, devices
/// and zones), or a billing system as a new device of its already linked site, and links them.
/// Goes only to connections where the record is not linked yet. The billing ids are written
/// into the Stages records. With `dry_run=true` it answers what it would send and changes
/// nothing anywhere. If it stops part way, what was done stays linked and the same push again
/// finishes it without making anything twice.
#[utoipa::path(post, path = "/v1/connections/{connection_id}/push", tag = "links", security(("bearer" = ["operator"])),
    params(("connection_id" = Uuid, Path), DryRun,
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same key and body")),
    request_body = PushBody,
    responses((status = 200, description = "Dry run", body = PushResponse),
        (status = 201, description = "Pushed and linked", body = PushResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already linked, or the system's site is not linked", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 504, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn push(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    query: Query<DryRun>,
    body: JsonBody<PushBody>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let cid = connection_id(&path)?;
    let request = push_request(body.0)?;
    let outcome = linking::push(state.linking(), caller, cid, request, query.dry_run).await?;
    let body = PushResponse {
        dry_run: outcome.dry_run,
        records: outcome
            .records
            .into_iter()
            .map(|r| PushedRecordResponse {
                kind: r.kind.into(),
                billing_id: r.billing_id,
                external_id: r.external_id,
                action: r.action.into(),
                link_id: r.link_id.map(|l| l.0),
            })
            .collect(),
        would_send: outcome
            .would_send
            .and_then(|s| serde_json::to_value(s).ok()),
    };
    Ok(if body.dry_run {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::Created().json(body)
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SystemPairBody {
    pub billing_system_id: String,
    pub stages_device_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLinkRequest {
    pub connection_id: Uuid,
    pub billing_site_id: String,
    pub stages_site_no: String,
    /// At least one system with a device of the chosen Stages site.
    pub systems: Vec<SystemPairBody>,
}

pub(crate) fn pairs(
    v: &mut ValidationError,
    field: &str,
    systems: Vec<SystemPairBody>,
) -> Vec<SystemPair> {
    systems
        .into_iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let id = billing_id(
                v,
                &format!("{field}[{i}].billing_system_id"),
                &p.billing_system_id,
            )?;
            if p.stages_device_id.trim().is_empty() {
                v.push(
                    format!("{field}[{i}].stages_device_id"),
                    "must not be empty",
                );
                return None;
            }
            Some(SystemPair {
                billing_system_id: id,
                stages_device_id: p.stages_device_id,
            })
        })
        .collect()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkSet {
    pub items: Vec<LinkResponse>,
}

/// Link a billing site to a Stages site.
///
/// Links an existing billing site to an existing Stages site, with at least one of its billing
/// systems to a device of that site. Writes the billing ids into the Stages records; creates
/// nothing in Stages and changes no other field on either side.
#[utoipa::path(post, path = "/v1/links", tag = "links", security(("bearer" = ["operator"])),
    params(("Idempotency-Key" = Option<String>, Header)),
    request_body = CreateLinkRequest,
    responses((status = 201, description = "The links made; `Location` names the site link", body = LinkSet, headers(("Location" = String))),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "A record is already linked on that connection", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "No system, or a device that is not a child of the site", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn create_link(
    state: web::Data<AppState>,
    auth: Auth,
    body: JsonBody<CreateLinkRequest>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let b = body.0;
    let mut v = ValidationError::default();
    let site = billing_id(&mut v, "billing_site_id", &b.billing_site_id);
    if b.stages_site_no.trim().is_empty() {
        v.push("stages_site_no", "must not be empty");
    }
    let systems = pairs(&mut v, "systems", b.systems);
    v.into_result()?;
    let created = linking::link(
        state.linking(),
        caller,
        LinkRequest {
            connection_id: ConnectionId(b.connection_id),
            billing_site_id: site.expect("checked"),
            stages_site_no: b.stages_site_no,
            systems,
        },
    )
    .await?;
    let items: Vec<LinkResponse> = created.into_iter().map(Into::into).collect();
    let mut res = HttpResponse::Created();
    // The set is made around its site link (the first): that is the one to read.
    if let Some(site) = items.first() {
        res.insert_header((header::LOCATION, format!("/v1/links/{}", site.id)));
    }
    Ok(res.json(LinkSet { items }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    pub connection_id: Option<Uuid>,
    pub kind: Option<LinkKindDto>,
    pub billing_id: Option<String>,
    pub external_id: Option<String>,
}

/// List links.
///
/// The links of your dealer, with both sides' ids, filtered by connection, kind or either id.
/// Reads only this service's database.
#[utoipa::path(get, path = "/v1/links", tag = "links", security(("bearer" = ["viewer"])),
    params(LinkQuery, PageParams),
    responses((status = 200, description = "A page of links", body = LinkList),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn list_links(
    state: web::Data<AppState>,
    auth: Auth,
    query: Query<LinkQuery>,
    page: Query<PageParams>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let q = query.into_inner();
    let filter = LinkFilter {
        connection_id: q.connection_id.map(ConnectionId),
        kind: q.kind.map(Into::into),
        billing_id: q.billing_id,
        external_id: q.external_id,
        parent_id: None,
    };
    let found = state
        .links
        .list_links(&caller.dealer, &filter, page.to_request()?)
        .await?;
    Ok(HttpResponse::Ok().json(LinkList {
        next_page_token: found.next_page_token.as_deref().map(encode_page_token),
        items: found.items.into_iter().map(Into::into).collect(),
    }))
}

/// Read a link.
///
/// One link with both sides' ids and its version (the ETag). Reads only this service's
/// database.
#[utoipa::path(get, path = "/v1/links/{link_id}", tag = "links", security(("bearer" = ["viewer"])),
    params(("link_id" = Uuid, Path)),
    responses((status = 200, description = "The link; `ETag` guards a later change", body = LinkResponse, headers(("ETag" = String))),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn get_link(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let id = link_id(&path)?;
    let l = state
        .links
        .link(&caller.dealer, id)
        .await
        .map_err(|e| match e {
            domain::store::StoreError::NotFound => ApiError::not_found("no such link"),
            other => other.into(),
        })?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(l.version)))
        .json(LinkResponse::from(l)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditLinkRequest {
    /// The Stages site number or device id to point at; it must not be linked yet.
    pub external_id: String,
    /// For a site link with linked systems: the device of the new site for each of them.
    #[serde(default)]
    pub systems: Vec<SystemPairBody>,
}

/// Point a link at another Stages record.
///
/// Moves a link to another Stages site or device that is not linked yet; the billing ids move
/// with it in Stages. Send `If-Match` with the ETag you read. The billing records are not
/// changed.
#[utoipa::path(patch, path = "/v1/links/{link_id}", tag = "links", security(("bearer" = ["operator"])),
    params(("link_id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    request_body = EditLinkRequest,
    responses((status = 200, description = "The links as they are now", body = LinkSet),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 412, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn edit_link(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    path: web::Path<String>,
    body: JsonBody<EditLinkRequest>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let id = link_id(&path)?;
    let b = body.0;
    let mut v = ValidationError::default();
    if b.external_id.trim().is_empty() {
        v.push("external_id", "must not be empty");
    }
    let systems = pairs(&mut v, "systems", b.systems);
    v.into_result()?;
    let updated = linking::edit_link(
        state.linking(),
        caller,
        id,
        EditLink {
            external_id: b.external_id,
            systems,
        },
        if_match(&req)?,
    )
    .await?;
    Ok(HttpResponse::Ok().json(LinkSet {
        items: updated.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UnlinkParams {
    /// Also clear the billing ids this link wrote in Stages (audited as
    /// `release`), so the Stages records list as unlinked and can be linked
    /// to any billing record. Needs working Stages credentials.
    #[serde(default)]
    pub release: bool,
}

/// Unlink.
///
/// Removes the link (and, for a site link, its system links). Neither the billing record nor
/// the Stages record is deleted; later changes are no longer pushed, and the records can be
/// linked again. With `release=true` the billing ids this link wrote in Stages are cleared too
/// (audited as `release`), so the Stages records list as unlinked and can be linked to any
/// billing record; if Stages fails part way, what was cleared is put back and no link goes.
#[utoipa::path(delete, path = "/v1/links/{link_id}", tag = "links", security(("bearer" = ["operator"])),
    params(("link_id" = Uuid, Path), UnlinkParams),
    responses((status = 200, description = "The links removed", body = LinkSet),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Release: no Stages credentials", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, description = "Release: Stages failed; nothing changed", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn unlink(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    query: Query<UnlinkParams>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let id = link_id(&path)?;
    let removed = if query.release {
        domain::release::release(state.linking(), caller, id).await?
    } else {
        linking::unlink(state.linking(), caller, id).await?
    };
    Ok(HttpResponse::Ok().json(LinkSet {
        items: removed.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReconcileParams {
    /// Show what would change and change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Write each link's billing id back to the Stages records that lost it
    /// or carry another (drift `billing_id_cleared`, `billing_id_changed`);
    /// each write is audited as `reconcile_repair`.
    #[serde(default)]
    pub repair: bool,
}

/// Rebuild the links from Stages.
///
/// Starts a background job that reads the billing ids stored in the Stages records of this
/// connection, takes over the links they describe and reports drift (including links whose
/// billing id was cleared or changed in Stages). With `dry_run=true` it only reports. It writes
/// to Stages only with `repair=true`, putting a link's own billing id back; it never writes to
/// the billing records. Follow the job at `Location`.
#[utoipa::path(post, path = "/v1/connections/{connection_id}:reconcile", tag = "links", security(("bearer" = ["operator"])),
    params(("connection_id" = Uuid, Path), ReconcileParams),
    responses((status = 202, description = "The job started; `Location` names it", body = JobResponse, headers(("Location" = String))),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A body other than nothing or `{}`", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn reconcile(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    query: Query<ReconcileParams>,
    _no_body: NoBody,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let mode = domain::reconcile::Mode {
        dry_run: query.dry_run,
        repair: query.repair,
    };
    let job = domain::reconcile::start_reconcile(
        state.linking(),
        state.jobs.as_ref(),
        caller,
        connection_id(&path)?,
        mode,
    )
    .await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/v1/jobs/{}", job.id)))
        .json(JobResponse::from(job)))
}
