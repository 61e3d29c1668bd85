//! Alarm.com imports (A1-A5): start a run of customers or users, follow it,
//! read each record's outcome, cancel it. A run is a background job; its id
//! is the job's id, so `/v1/jobs/{id}` shows it too.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use domain::billing::BillingId;
use domain::import::{
    CustomerFilters, CustomerOptions, Import, ImportCounts, ImportId, ImportItem, ImportKind,
    ImportPorts, ImportSpec, ItemOutcome, UserFilters, UserOptions,
};
use domain::jobs::{Job, JobState};
use domain::store::StoreError;
use domain::tenancy::Role;
use domain::validation::ValidationError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Auth;
use crate::extract::{encode_page_token, JsonBody, NoBody, PageParams, Query};
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

impl IdList {
    /// The ids, each once, in the order given; refusals go to `v` under `field`.
    fn parse(self, v: &mut ValidationError, field: &str) -> Vec<i64> {
        let raw: Vec<String> = match self {
            Self::Text(t) => t
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            Self::List(items) => items
                .into_iter()
                .map(|i| match i {
                    IdItem::Number(n) => n.to_string(),
                    IdItem::Text(t) => t.trim().to_owned(),
                })
                .collect(),
        };
        if raw.len() > 10_000 {
            v.push(field, "at most 10000 ids");
            return Vec::new();
        }
        let mut ids = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            match r.parse::<i64>() {
                Ok(n) if n > 0 => {
                    if !ids.contains(&n) {
                        ids.push(n)
                    }
                }
                _ => v.push(
                    format!("{field}[{i}]"),
                    format!(
                        "'{}' is not an Alarm.com id (a positive whole number)",
                        short(r)
                    ),
                ),
            }
        }
        ids
    }
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
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

fn text(v: &mut ValidationError, field: &str, value: Option<String>, max: usize) -> String {
    let value = value.unwrap_or_default().trim().to_owned();
    if value.chars().count() > max {
        v.push(field, format!("must be at most {max} characters"));
    } else if value.chars().any(char::is_control) {
        v.push(field, "must not contain control characters");
    }
    value
}

fn tags(v: &mut ValidationError, tags: Vec<String>) -> Vec<String> {
    if tags.len() > 50 {
        v.push("options.tags", "at most 50 tags");
    }
    let mut out: Vec<String> = Vec::new();
    for (i, t) in tags.into_iter().enumerate() {
        let t = text(v, &format!("options.tags[{i}]"), Some(t), 50);
        if t.is_empty() {
            v.push(format!("options.tags[{i}]"), "must not be empty");
        } else if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

fn not_for(v: &mut ValidationError, field: &str, given: bool, kind: &str) {
    if given {
        v.push(field, format!("does not apply to {kind} imports"));
    }
}

fn sub_dealers(v: &mut ValidationError, ids: Vec<i64>) -> Vec<i64> {
    if ids.iter().any(|id| *id <= 0) {
        v.push("filters.sub_dealer_ids", "sub-dealer ids are positive");
    }
    let mut out = Vec::new();
    for id in ids {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// The body as the domain's spec, every refusal at once.
fn spec_of(body: StartImportRequest) -> ApiResult<(domain::connection::ConnectionId, ImportSpec)> {
    let mut v = ValidationError::default();
    let cid = Uuid::parse_str(body.connection_id.trim())
        .map(domain::connection::ConnectionId)
        .map_err(|_| v.push("connection_id", "is not a connection id"))
        .ok();
    let f = body.filters;
    let o = body.options;
    let dry_run = body.dry_run;
    let spec = match body.kind {
        ImportKindDto::Customers => {
            not_for(
                &mut v,
                "filters.support_ids",
                f.support_ids.is_some(),
                "customer",
            );
            not_for(&mut v, "filters.roles", !f.roles.is_empty(), "customer");
            not_for(&mut v, "options.active", o.active.is_some(), "customer");
            not_for(
                &mut v,
                "options.can_login",
                o.can_login.is_some(),
                "customer",
            );
            not_for(
                &mut v,
                "options.permission_group",
                o.permission_group.is_some(),
                "customer",
            );
            let customer_ids = f
                .customer_ids
                .map(|ids| ids.parse(&mut v, "filters.customer_ids"))
                .unwrap_or_default()
                .into_iter()
                .map(domain::adc::AdcCustomerId)
                .collect();
            let default_rep = o
                .default_rep
                .as_deref()
                .map(str::trim)
                .filter(|r| !r.is_empty());
            let default_rep =
                default_rep.and_then(|r| v.check("options.default_rep", BillingId::parse(r)));
            ImportSpec::Customers {
                filters: CustomerFilters {
                    customer_ids,
                    sub_dealer_ids: sub_dealers(&mut v, f.sub_dealer_ids),
                },
                options: CustomerOptions {
                    office_location: text(
                        &mut v,
                        "options.office_location",
                        o.office_location,
                        100,
                    ),
                    tags: tags(&mut v, o.tags),
                    default_rep,
                    dry_run,
                },
            }
        }
        ImportKindDto::Users => {
            not_for(
                &mut v,
                "filters.customer_ids",
                f.customer_ids.is_some(),
                "user",
            );
            not_for(
                &mut v,
                "options.office_location",
                o.office_location.is_some(),
                "user",
            );
            not_for(
                &mut v,
                "options.default_rep",
                o.default_rep.is_some(),
                "user",
            );
            let support_ids = f
                .support_ids
                .map(|ids| ids.parse(&mut v, "filters.support_ids"))
                .unwrap_or_default();
            let mut roles: Vec<String> = Vec::new();
            for (i, r) in f.roles.into_iter().enumerate() {
                let r = text(&mut v, &format!("filters.roles[{i}]"), Some(r), 100);
                if r.is_empty() {
                    v.push(format!("filters.roles[{i}]"), "must not be empty");
                } else if !roles.contains(&r) {
                    roles.push(r);
                }
            }
            ImportSpec::Users {
                filters: UserFilters {
                    support_ids,
                    roles,
                    sub_dealer_ids: sub_dealers(&mut v, f.sub_dealer_ids),
                },
                options: UserOptions {
                    active: o.active.unwrap_or(true),
                    can_login: o.can_login.unwrap_or(false),
                    permission_group: text(
                        &mut v,
                        "options.permission_group",
                        o.permission_group,
                        100,
                    ),
                    tags: tags(&mut v, o.tags),
                    dry_run,
                },
            }
        }
    };
    v.into_result()?;
    match cid {
        Some(cid) => Ok((cid, spec)),
        None => Err(ValidationError::field("connection_id", "is not a connection id").into()),
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

fn import_not_found(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found("no such import"),
        other => other.into(),
    }
}

async fn load(
    state: &AppState,
    dealer: &domain::tenancy::DealerId,
    id: ImportId,
) -> ApiResult<(Import, Job)> {
    // The job first: a run records its last counts before its job ends, so
    // counts read after an ended job are final.
    let job = state
        .jobs
        .job(dealer, id.job_id())
        .await
        .map_err(import_not_found)?;
    let import = state
        .imports
        .import(dealer, id)
        .await
        .map_err(import_not_found)?;
    Ok((import, job))
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
    let (cid, spec) = spec_of(body.0)?;
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
    let found = state
        .imports
        .list_imports(&caller.dealer, page.to_request()?)
        .await?;
    let mut items = Vec::with_capacity(found.items.len());
    for listed in found.items {
        // As `load`: the job, then the run's counts read after it.
        let (import, job) = load(&state, &caller.dealer, listed.id).await?;
        items.push(respond(import, job));
    }
    Ok(HttpResponse::Ok().json(ImportList {
        next_page_token: found.next_page_token.as_deref().map(encode_page_token),
        items,
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
    let (import, job) = load(&state, &caller.dealer, import_id(&path)?).await?;
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
    let found = state
        .imports
        .import_items(
            &caller.dealer,
            id,
            filter.outcome.map(Into::into),
            page.to_request()?,
        )
        .await
        .map_err(import_not_found)?;
    Ok(HttpResponse::Ok().json(ImportItemList {
        next_page_token: found.next_page_token.as_deref().map(encode_page_token),
        items: found.items.into_iter().map(Into::into).collect(),
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
    // Another dealer's import is not found before anything is asked of its job.
    state
        .imports
        .import(&caller.dealer, id)
        .await
        .map_err(import_not_found)?;
    let job = state
        .jobs
        .cancel_job(&caller.dealer, id.job_id())
        .await
        .map_err(import_not_found)?;
    // A queued run never starts: it ends here, with its summary.
    if job.state == JobState::Cancelled {
        domain::import::finish_import(
            state.imports.as_ref(),
            &caller.dealer,
            id,
            JobState::Cancelled,
            None,
        )
        .await?;
    }
    let (import, job) = load(&state, &caller.dealer, id).await?;
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
