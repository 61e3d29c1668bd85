//! Alarm.com imports (A1-A5): start a run of customers or users, follow it,
//! read each record's outcome, cancel it. A run is a background job; its id
//! is the job's id, so `/v1/jobs/{id}` shows it too.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use domain::import::{
    Import, ImportCounts, ImportId, ImportItem, ImportKind, ImportPorts, ImportRequest, ImportSpec,
    ItemOutcome, RequestedFilters, RequestedIds, RequestedOptions,
};
use domain::jobs::{Job, JobState};
use domain::tenancy::Role;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Auth;
use crate::extract::{page_parts, JsonBody, NoBody, PageParams, Query};
use crate::problem::{ApiError, ApiResult};
use crate::routes::jobs::JobStateDto;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/imports/filter-choices", web::get().to(filter_choices))
        .route("/imports/{import_id}:cancel", web::post().to(cancel_import))
        .route("/imports/{import_id}/items", web::get().to(import_items))
        .route("/imports/{import_id}", web::get().to(get_import))
        .service(
            web::resource("/imports")
                .route(web::post().to(start_import))
                .route(web::get().to(list_imports)),
        );
}

impl AppState {
    pub fn import_ports(&self) -> ImportPorts<'_> {
        ImportPorts {
            connections: self.connections.as_ref(),
            billing: self.billing.as_ref(),
            imports: self.imports.as_ref(),
            adc: self.adc.as_ref(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportKindDto {
    /// Alarm.com customers into billing customers.
    Customers,
    /// Alarm.com users (reps) into billing users.
    Users,
}

impl From<ImportKind> for ImportKindDto {
    fn from(k: ImportKind) -> Self {
        match k {
            ImportKind::Customers => Self::Customers,
            ImportKind::Users => Self::Users,
        }
    }
}

/// Ids as a comma-separated text (`"101, 102"`) or a list (`[101, "102"]`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum IdList {
    Text(String),
    List(Vec<IdItem>),
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum IdItem {
    Number(i64),
    Text(String),
}

impl From<IdList> for RequestedIds {
    fn from(ids: IdList) -> Self {
        match ids {
            IdList::Text(t) => Self::Text(t),
            IdList::List(items) => Self::List(
                items
                    .into_iter()
                    .map(|i| match i {
                        IdItem::Number(n) => n.to_string(),
                        IdItem::Text(t) => t,
                    })
                    .collect(),
            ),
        }
    }
}

/// Filters of a run; a record must match every filter given. Customer runs
/// take `customer_ids` and `sub_dealer_ids`; user runs `support_ids`,
/// `roles` and `sub_dealer_ids`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ImportFiltersDto {
    /// Exact Alarm.com customer ids (customers).
    pub customer_ids: Option<IdList>,
    /// Any of these sub-dealers (branches).
    pub sub_dealer_ids: Vec<i64>,
    /// Exact Alarm.com support ids (users).
    pub support_ids: Option<IdList>,
    /// Any of these roles, by name or id (users).
    pub roles: Vec<String>,
}

/// What imported records get. Customer runs take `office_location`, `tags`
/// and `default_rep`; user runs `active` (default true), `can_login`,
/// `permission_group` and `tags`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ImportOptionsDto {
    pub office_location: Option<String>,
    pub tags: Vec<String>,
    /// A billing user id: the rep of customers whose Alarm.com rep is no billing user.
    pub default_rep: Option<String>,
    pub active: Option<bool>,
    /// Imported users may log in; each is announced on the change feed
    /// (`billing.user.credentials_required`) so their credentials get sent.
    pub can_login: Option<bool>,
    pub permission_group: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartImportRequest {
    /// An active Alarm.com connection with its API credentials.
    pub connection_id: String,
    pub kind: ImportKindDto,
    #[serde(default)]
    pub filters: ImportFiltersDto,
    #[serde(default)]
    pub options: ImportOptionsDto,
    /// List what the run would do, record by record (new, matched,
    /// filtered out), without writing a billing record, a link or an event.
    #[serde(default)]
    pub dry_run: bool,
}

impl From<StartImportRequest> for ImportRequest {
    fn from(body: StartImportRequest) -> Self {
        let (f, o) = (body.filters, body.options);
        Self {
            connection_id: body.connection_id,
            kind: match body.kind {
                ImportKindDto::Customers => ImportKind::Customers,
                ImportKindDto::Users => ImportKind::Users,
            },
            filters: RequestedFilters {
                customer_ids: f.customer_ids.map(Into::into),
                sub_dealer_ids: f.sub_dealer_ids,
                support_ids: f.support_ids.map(Into::into),
                roles: f.roles,
            },
            options: RequestedOptions {
                office_location: o.office_location,
                tags: o.tags,
                default_rep: o.default_rep,
                active: o.active,
                can_login: o.can_login,
                permission_group: o.permission_group,
            },
            dry_run: body.dry_run,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportCountsDto {
    /// Records looked at so far.
    pub seen: u64,
    pub imported: u64,
    pub already_imported: u64,
    pub filtered_out: u64,
    pub failed: u64,
}

impl From<ImportCounts> for ImportCountsDto {
    fn from(c: ImportCounts) -> Self {
        Self {
            seen: c.seen,
            imported: c.imported,
            already_imported: c.already_imported,
            filtered_out: c.filtered_out,
            failed: c.failed,
        }
    }
}

/// A run: the job shape (state, progress, summary, error, times) with its
/// filters, options and counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResponse {
    pub id: Uuid,
    pub kind: ImportKindDto,
    pub connection_id: Uuid,
    pub state: JobStateDto,
    pub progress: ImportProgress,
    /// A dry run: its items say what a run would do; nothing else was written.
    pub dry_run: bool,
    pub counts: ImportCountsDto,
    #[schema(value_type = Object)]
    pub filters: serde_json::Value,
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
    /// The counts and how the run ended, once it has.
    #[schema(value_type = Option<Object>)]
    pub summary: Option<serde_json::Value>,
    pub error: Option<String>,
    pub attempts: u32,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// How far a run is: records done of the total, and while it runs its pace
/// and the time it still needs at that pace.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportProgress {
    pub done: u64,
    pub total: Option<u64>,
    /// Records per second since the run (its current attempt) started.
    pub per_second: Option<f64>,
    /// Seconds left at that pace.
    pub eta_seconds: Option<u64>,
}

fn respond(import: Import, job: Job) -> ImportResponse {
    let (filters, options) = import.spec.parts();
    let running = matches!(job.state, JobState::Running);
    let (per_second, eta_seconds) = if running {
        domain::import::pace(
            job.progress_done,
            job.progress_total,
            job.started_at,
            Utc::now(),
        )
    } else {
        (None, None)
    };
    ImportResponse {
        id: import.id.0,
        kind: import.spec.kind().into(),
        connection_id: import.connection_id.0,
        state: job.state.into(),
        progress: ImportProgress {
            done: job.progress_done,
            total: job.progress_total,
            per_second,
            eta_seconds,
        },
        dry_run: import.spec.dry_run(),
        counts: import.counts.into(),
        filters,
        options,
        summary: job.summary,
        error: job.last_error,
        attempts: job.attempts,
        created_by: import.created_by,
        created_at: import.created_at,
        started_at: job.started_at,
        finished_at: job.finished_at,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportList {
    pub items: Vec<ImportResponse>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemOutcomeDto {
    Imported,
    AlreadyImported,
    FilteredOut,
    Failed,
}

impl From<ItemOutcome> for ItemOutcomeDto {
    fn from(o: ItemOutcome) -> Self {
        match o {
            ItemOutcome::Imported => Self::Imported,
            ItemOutcome::AlreadyImported => Self::AlreadyImported,
            ItemOutcome::FilteredOut => Self::FilteredOut,
            ItemOutcome::Failed => Self::Failed,
        }
    }
}

impl From<ItemOutcomeDto> for ItemOutcome {
    fn from(o: ItemOutcomeDto) -> Self {
        match o {
            ItemOutcomeDto::Imported => Self::Imported,
            ItemOutcomeDto::AlreadyImported => Self::AlreadyImported,
            ItemOutcomeDto::FilteredOut => Self::FilteredOut,
            ItemOutcomeDto::Failed => Self::Failed,
        }
    }
}

/// What became of one Alarm.com record.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportItemResponse {
    /// The Alarm.com customer id or user support id.
    pub external_id: String,
    pub outcome: ItemOutcomeDto,
    /// The billing record it became, or already was.
    pub billing_id: Option<String>,
    /// Why it was filtered out or failed; for an imported customer, how its rep was set.
    pub reason: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

impl From<ImportItem> for ImportItemResponse {
    fn from(i: ImportItem) -> Self {
        Self {
            external_id: i.external_id,
            outcome: i.outcome.into(),
            billing_id: i.billing_id.map(|b| b.to_string()),
            reason: i.reason,
            recorded_at: i.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportItemList {
    pub items: Vec<ImportItemResponse>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemFilter {
    /// Only records with this outcome.
    pub outcome: Option<ItemOutcomeDto>,
}

fn import_id(raw: &str) -> ApiResult<ImportId> {
    Uuid::parse_str(raw)
        .map(ImportId)
        .map_err(|_| ApiError::not_found("no such import"))
}

/// Start an Alarm.com import.
///
/// Starts a background job that imports Alarm.com customers or users into the billing records,
/// with the filters and options given. Needs an active Alarm.com connection with credentials.
/// Only records not imported before are imported, so running it again imports only what is new.
/// Nothing is written to Alarm.com. Follow it at `Location`.
#[utoipa::path(post, path = "/v1/imports", tag = "imports", security(("bearer" = ["operator"])),
    request_body = StartImportRequest,
    responses((status = 202, description = "The import started; `Location` names it", body = ImportResponse, headers(("Location" = String))),
        (status = 409, description = "The connection is not an Alarm.com one, is inactive, or has no credentials (not linked)", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn start_import(
    state: web::Data<AppState>,
    auth: Auth,
    body: JsonBody<StartImportRequest>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let (cid, spec) = ImportSpec::new(body.0.into())?;
    let (import, job) =
        domain::import::start_import(state.import_ports(), caller, cid, spec).await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/v1/imports/{}", import.id)))
        .json(respond(import, job)))
}

/// List imports.
///
/// The Alarm.com imports of your dealer, newest first, with their state and counts.
#[utoipa::path(get, path = "/v1/imports", tag = "imports", security(("bearer" = ["viewer"])),
    params(PageParams),
    responses((status = 200, description = "A page of imports", body = ImportList),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn list_imports(
    state: web::Data<AppState>,
    auth: Auth,
    page: Query<PageParams>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let found = domain::import::list_imports(
        state.jobs.as_ref(),
        state.imports.as_ref(),
        &caller.dealer,
        page.to_request()?,
    )
    .await?;
    let (items, next_page_token) = page_parts(found.map(|(import, job)| respond(import, job)));
    Ok(HttpResponse::Ok().json(ImportList {
        items,
        next_page_token,
    }))
}

/// Read an import.
///
/// One import: its state, progress, filters, options and counts.
#[utoipa::path(get, path = "/v1/imports/{import_id}", tag = "imports", security(("bearer" = ["viewer"])),
    params(("import_id" = Uuid, Path)),
    responses((status = 200, description = "The import", body = ImportResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn get_import(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let (import, job) = domain::import::import_with_job(
        state.jobs.as_ref(),
        state.imports.as_ref(),
        &caller.dealer,
        import_id(&path)?,
    )
    .await?;
    Ok(HttpResponse::Ok().json(respond(import, job)))
}

/// List what an import did per record.
///
/// What became of each record an import saw, in the order it saw them. A customer run lists the
/// customers it imported, failed or filtered, and those imported meanwhile by someone else;
/// customers imported by an earlier run are only counted (`counts.already_imported`), not
/// listed, so a re-run with nothing new lists nothing.
#[utoipa::path(get, path = "/v1/imports/{import_id}/items", tag = "imports", security(("bearer" = ["viewer"])),
    params(("import_id" = Uuid, Path), ItemFilter, PageParams),
    responses((status = 200, description = "A page of items", body = ImportItemList),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn import_items(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    filter: Query<ItemFilter>,
    page: Query<PageParams>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let id = import_id(&path)?;
    let found = domain::import::import_items(
        state.imports.as_ref(),
        &caller.dealer,
        id,
        filter.outcome.map(Into::into),
        page.to_request()?,
    )
    .await?;
    let (items, next_page_token) = page_parts(found);
    Ok(HttpResponse::Ok().json(ImportItemList {
        items,
        next_page_token,
    }))
}

/// Cancel an import.
///
/// Cancels a queued import, or asks a running one to stop after its current chunk. What it
/// imported stays imported; a new run takes up the rest.
#[utoipa::path(post, path = "/v1/imports/{import_id}:cancel", tag = "imports", security(("bearer" = ["operator"])),
    params(("import_id" = Uuid, Path)),
    responses((status = 200, description = "The import, cancelled or asked to stop", body = ImportResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already finished", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn cancel_import(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    _no_body: NoBody,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let id = import_id(&path)?;
    let (import, job) = domain::import::cancel_import(
        state.jobs.as_ref(),
        state.imports.as_ref(),
        &caller.dealer,
        id,
    )
    .await?;
    Ok(HttpResponse::Ok().json(respond(import, job)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChoicesQuery {
    /// An active Alarm.com connection with its API credentials.
    pub connection_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NamedId {
    pub id: i64,
    pub name: String,
}

/// What the sub-dealer and role filters can be chosen from.
#[derive(Debug, Serialize, ToSchema)]
pub struct FilterChoicesResponse {
    pub sub_dealers: Vec<NamedId>,
    pub roles: Vec<NamedId>,
}

/// Read the import filter choices.
///
/// The sub-dealers and user roles of the Alarm.com account, read live from Alarm.com, to choose
/// an import's filters from. Changes nothing.
#[utoipa::path(get, path = "/v1/imports/filter-choices", tag = "imports", security(("bearer" = ["viewer"])),
    params(ChoicesQuery),
    responses((status = 200, description = "The sub-dealers and roles", body = FilterChoicesResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The connection is not an Alarm.com one, is inactive, or has no credentials", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn filter_choices(
    state: web::Data<AppState>,
    auth: Auth,
    query: Query<ChoicesQuery>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let cid = Uuid::parse_str(query.connection_id.trim())
        .map(domain::connection::ConnectionId)
        .map_err(|_| ApiError::not_found("no such connection"))?;
    let choices = domain::import::filter_choices(state.import_ports(), caller, cid).await?;
    Ok(HttpResponse::Ok().json(FilterChoicesResponse {
        sub_dealers: choices
            .sub_dealers
            .into_iter()
            .map(|s| NamedId {
                id: s.id,
                name: s.name,
            })
            .collect(),
        roles: choices
            .roles
            .into_iter()
            .map(|r| NamedId {
                id: r.id,
                name: r.name,
            })
            .collect(),
    }))
}
