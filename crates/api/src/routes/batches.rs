//! Batches (B7): many links, pushes, syncs, account syncs, tests or test
//! ends in one request, run in the background by the single operations'
//! use cases, with progress, a per-item outcome, cancel and a dry run.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, NaiveDateTime, Utc};
use domain::batch::{
    self, Batch, BatchId, BatchItem, BatchItemInput, BatchOperation, BatchRequest, ItemState,
};
use domain::connection::ConnectionId;
use domain::jobs::Job;
use domain::link::LinkId;
use domain::linking::LinkRequest;
use domain::stages::DeviceId;
use domain::store::StoreError;
use domain::sync::Side;
use domain::tenancy::Role;
use domain::validation::ValidationError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Auth;
use crate::extract::{
    encode_page_token, from_value, page_parts, JsonBody, NoBody, PageParams, Query,
};
use crate::problem::{ApiError, ApiResult, ProblemField};
use crate::routes::jobs::{JobProgress, JobStateDto};
use crate::routes::links::{billing_id, pairs, push_request, PushBody, SystemPairBody};
use crate::routes::stages_tab::{test_request, StartTestRequest};
use crate::routes::sync::{FieldChoiceDto, SideDto};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/batches/{batch_id}:cancel", web::post().to(cancel_batch))
        .route("/batches/{batch_id}/items", web::get().to(batch_items))
        .route("/batches/{batch_id}", web::get().to(get_batch))
        .service(
            web::resource("/batches")
                // The handler reads up to the batch limit (see `extract::body_limit`).
                .app_data(web::PayloadConfig::new(crate::extract::BATCH_BODY_LIMIT))
                .route(web::post().to(start_batch))
                .route(web::get().to(list_batches)),
        );
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BatchOperationDto {
    /// Link billing sites to Stages sites (items as `POST /v1/links`, without `connection_id`).
    Link,
    /// Push billing sites or systems to Stages (items as the push body).
    Push,
    /// Record sync of links (`link_id` and the sync body).
    Sync,
    /// Account sync of links (`link_id` and `use`).
    AccountSync,
    /// Put devices on test (`device_id` and the test body).
    Test,
    /// End tests (`device_id` and `test_id`).
    EndTest,
}

impl From<BatchOperationDto> for BatchOperation {
    fn from(o: BatchOperationDto) -> Self {
        match o {
            BatchOperationDto::Link => Self::Link,
            BatchOperationDto::Push => Self::Push,
            BatchOperationDto::Sync => Self::Sync,
            BatchOperationDto::AccountSync => Self::AccountSync,
            BatchOperationDto::Test => Self::Test,
            BatchOperationDto::EndTest => Self::EndTest,
        }
    }
}

impl From<BatchOperation> for BatchOperationDto {
    fn from(o: BatchOperation) -> Self {
        match o {
            BatchOperation::Link => Self::Link,
            BatchOperation::Push => Self::Push,
            BatchOperation::Sync => Self::Sync,
            BatchOperation::AccountSync => Self::AccountSync,
            BatchOperation::Test => Self::Test,
            BatchOperation::EndTest => Self::EndTest,
        }
    }
}

/// Up to 10,000 items of one operation. Each item is the body of the single
/// operation, with the ids its path would name (`link_id`, `device_id`,
/// `test_id`); `connection_id` is the batch's, for every operation but the
/// two syncs (whose links carry their connection).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    pub operation: BatchOperationDto,
    pub connection_id: Option<Uuid>,
    /// Push and sync only: every item shows what it would change and changes nothing.
    #[serde(default)]
    pub dry_run: bool,
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkItem {
    billing_site_id: String,
    stages_site_no: String,
    systems: Vec<SystemPairBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncItem {
    link_id: Uuid,
    #[serde(default)]
    fields: BTreeMap<String, FieldChoiceDto>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountSyncItem {
    link_id: Uuid,
    #[serde(rename = "use")]
    use_side: SideDto,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestItem {
    device_id: String,
    start: NaiveDateTime,
    end: NaiveDateTime,
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndTestItem {
    device_id: String,
    test_id: String,
}

/// The fields of a refused item, under its place in the request.
fn under(at: &str, e: ApiError) -> Vec<ProblemField> {
    if e.errors.is_empty() {
        return vec![ProblemField {
            field: at.to_owned(),
            message: e.detail,
        }];
    }
    e.errors
        .into_iter()
        .map(|f| ProblemField {
            field: format!("{at}.{}", f.field),
            message: f.message,
        })
        .collect()
}

fn not_empty(v: &mut ValidationError, field: String, value: &str) {
    if value.trim().is_empty() {
        v.push(field, "must not be empty");
    }
}

/// One item read as its operation's input; every refusal names its field.
fn item(
    state: &AppState,
    operation: BatchOperation,
    at: &str,
    raw: serde_json::Value,
) -> Result<BatchItemInput, Vec<ProblemField>> {
    fn read<T: DeserializeOwned>(raw: serde_json::Value, at: &str) -> Result<T, Vec<ProblemField>> {
        from_value(raw, at).map_err(|p| vec![p])
    }
    let checked = |v: ValidationError| v.into_result().map_err(|e| under(at, ApiError::from(e)));
    Ok(match operation {
        BatchOperation::Link => {
            let b: LinkItem = read(raw, at)?;
            let mut v = ValidationError::default();
            let site = billing_id(&mut v, "billing_site_id", &b.billing_site_id);
            not_empty(&mut v, "stages_site_no".into(), &b.stages_site_no);
            let systems = pairs(&mut v, "systems", b.systems);
            checked(v)?;
            BatchItemInput::Link(LinkRequest {
                // The batch's connection is set when the item runs.
                connection_id: ConnectionId(Uuid::nil()),
                billing_site_id: site.expect("checked"),
                stages_site_no: b.stages_site_no,
                systems,
            })
        }
        BatchOperation::Push => {
            let b: PushBody = read(raw, at)?;
            BatchItemInput::Push(push_request(b).map_err(|e| under(at, e))?)
        }
        BatchOperation::Sync => {
            let b: SyncItem = read(raw, at)?;
            BatchItemInput::Sync {
                link_id: LinkId(b.link_id),
                choices: b.fields.into_iter().map(|(k, c)| (k, c.into())).collect(),
            }
        }
        BatchOperation::AccountSync => {
            let b: AccountSyncItem = read(raw, at)?;
            BatchItemInput::AccountSync {
                link_id: LinkId(b.link_id),
                side: match b.use_side {
                    SideDto::Billing => Side::Billing,
                    SideDto::External => Side::External,
                },
            }
        }
        BatchOperation::Test => {
            let b: TestItem = read(raw, at)?;
            let mut v = ValidationError::default();
            let device_id = v.check("device_id", DeviceId::parse(&b.device_id));
            checked(v)?;
            let request = test_request(
                state,
                StartTestRequest {
                    start: b.start,
                    end: Some(b.end),
                    hours: None,
                    minutes: None,
                    reason: b.reason,
                },
            )
            .map_err(|e| under(at, e))?;
            BatchItemInput::Test {
                device_id: device_id.expect("checked"),
                request,
            }
        }
        BatchOperation::EndTest => {
            let b: EndTestItem = read(raw, at)?;
            let mut v = ValidationError::default();
            let device_id = v.check("device_id", DeviceId::parse(&b.device_id));
            not_empty(&mut v, "test_id".into(), &b.test_id);
            checked(v)?;
            BatchItemInput::EndTest {
                device_id: device_id.expect("checked"),
                test_id: b.test_id,
            }
        }
    })
}

/// Every item read; the refusals of all items at once.
fn request(state: &AppState, b: BatchBody) -> ApiResult<BatchRequest> {
    let operation = BatchOperation::from(b.operation);
    let mut refused = Vec::new();
    let mut items = Vec::with_capacity(b.items.len());
    // Past the limit nothing is read: the count alone refuses the batch.
    if b.items.len() <= batch::MAX_ITEMS {
        for (i, raw) in b.items.into_iter().enumerate() {
            match item(state, operation, &format!("items[{i}]"), raw) {
                Ok(input) => items.push(input),
                Err(fields) => refused.extend(fields),
            }
        }
    } else {
        refused.push(ProblemField {
            field: "items".into(),
            message: format!(
                "give 1 to {} items (got {})",
                batch::MAX_ITEMS,
                b.items.len()
            ),
        });
    }
    if !refused.is_empty() {
        let mut e = ApiError::unprocessable(
            "validation",
            format!("{} item field(s) refused", refused.len()),
        );
        e.errors = refused;
        return Err(e);
    }
    Ok(BatchRequest {
        operation,
        connection_id: b.connection_id.map(ConnectionId),
        dry_run: b.dry_run,
        items,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchCountsResponse {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Not run: the batch was cancelled (or ended) before them.
    pub cancelled: u64,
    /// Not run yet.
    pub pending: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// Also the id of the job that runs it.
    pub id: Uuid,
    pub operation: BatchOperationDto,
    pub connection_id: Option<Uuid>,
    pub dry_run: bool,
    /// The job's state; a batch whose items failed still succeeds as a whole.
    pub state: JobStateDto,
    pub progress: JobProgress,
    pub counts: BatchCountsResponse,
    /// Why the batch itself stopped (not an item's problem).
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

fn respond(batch: Batch, job: Job) -> BatchResponse {
    let c = batch.counts;
    BatchResponse {
        id: batch.id.0,
        operation: batch.operation.into(),
        connection_id: batch.connection_id.map(|c| c.0),
        dry_run: batch.dry_run,
        state: job.state.into(),
        progress: JobProgress {
            done: c.done(),
            total: Some(c.total),
        },
        counts: BatchCountsResponse {
            total: c.total,
            succeeded: c.succeeded,
            failed: c.failed,
            cancelled: c.cancelled,
            pending: c.total - c.done(),
        },
        error: job.last_error,
        created_at: batch.created_at,
        started_at: job.started_at,
        finished_at: batch.finished_at.or(job.finished_at),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchList {
    pub items: Vec<BatchResponse>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemStateDto {
    Pending,
    Succeeded,
    Failed,
    Cancelled,
}

impl From<ItemState> for ItemStateDto {
    fn from(s: ItemState) -> Self {
        match s {
            ItemState::Pending => Self::Pending,
            ItemState::Succeeded => Self::Succeeded,
            ItemState::Failed => Self::Failed,
            ItemState::Cancelled => Self::Cancelled,
        }
    }
}

impl From<ItemStateDto> for ItemState {
    fn from(s: ItemStateDto) -> Self {
        match s {
            ItemStateDto::Pending => Self::Pending,
            ItemStateDto::Succeeded => Self::Succeeded,
            ItemStateDto::Failed => Self::Failed,
            ItemStateDto::Cancelled => Self::Cancelled,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItemResponse {
    /// The item's place in the request, from 0.
    pub index: u32,
    /// What the item names: a billing id, a link id, a device id (`device/test` for a test end).
    pub subject: String,
    pub state: ItemStateDto,
    /// What the single operation answered.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// The problem document the single operation answered.
    #[schema(value_type = Option<Object>)]
    pub problem: Option<serde_json::Value>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<BatchItem> for BatchItemResponse {
    fn from(i: BatchItem) -> Self {
        Self {
            index: i.index,
            subject: i.subject,
            state: i.state.into(),
            result: i.result,
            problem: i.problem,
            finished_at: i.finished_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItemList {
    pub items: Vec<BatchItemResponse>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemFilter {
    /// Only items in this state.
    pub state: Option<ItemStateDto>,
}

fn batch_id(raw: &str) -> ApiResult<BatchId> {
    Uuid::parse_str(raw)
        .map(BatchId)
        .map_err(|_| ApiError::not_found("no such batch"))
}

fn batch_not_found(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found("no such batch"),
        other => other.into(),
    }
}

async fn load(
    state: &AppState,
    dealer: &domain::tenancy::DealerId,
    id: BatchId,
) -> ApiResult<BatchResponse> {
    // The job first: a batch's end is written before its job's, so a job
    // read as ended is never paired with the batch as it was before its end.
    let job = state
        .jobs
        .job(dealer, id.job_id())
        .await
        .map_err(batch_not_found)?;
    let batch = state
        .batches
        .batch(dealer, id)
        .await
        .map_err(batch_not_found)?;
    Ok(respond(batch, job))
}

/// Start a batch of links, pushes, syncs, account syncs, tests or test ends.
///
/// Up to 10,000 items of one operation run one after another in a background job, through the
/// same code as the single operations and at the pace the connection's Stages rate limit
/// allows. Each item is the single operation's body plus the ids its path would name
/// (`link_id`, `device_id`, `test_id`). Every item is checked before anything is stored, and
/// every refusal is answered at once, named by its place (`items[3].billing_site_id`). An item
/// that fails does not stop the others; its problem is kept with it. `dry_run` (push and sync
/// only) changes nothing anywhere. Poll the batch at `Location`; its end is a `batch.finished`
/// event.
#[utoipa::path(post, path = "/v1/batches", tag = "batches", security(("bearer" = ["operator"])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same key and body")),
    request_body = BatchBody,
    responses((status = 202, description = "Queued; `Location` names the batch", body = BatchResponse, headers(("Location" = String), ("Retry-After" = String))),
        (status = 409, description = "No credentials to act with on the connection", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Items refused, each named by its place (`items[3].billing_site_id`)", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn start_batch(
    state: web::Data<AppState>,
    auth: Auth,
    body: JsonBody<BatchBody>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let request = request(&state, body.0)?;
    let (batch, job) = batch::start_batch(state.batch_ports(), caller, request).await?;
    state.jobs_wake.notify_one();
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/v1/batches/{}", batch.id)))
        .json(respond(batch, job)))
}

/// List batches.
///
/// The batches of the caller's dealer, newest first, with their state and counts. Reads only
/// this service's database.
#[utoipa::path(get, path = "/v1/batches", tag = "batches", security(("bearer" = ["viewer"])),
    params(PageParams),
    responses((status = 200, description = "A page of batches", body = BatchList),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn list_batches(
    state: web::Data<AppState>,
    auth: Auth,
    page: Query<PageParams>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let found = state
        .batches
        .list_batches(&caller.dealer, page.to_request()?)
        .await?;
    let mut items = Vec::with_capacity(found.items.len());
    for b in found.items {
        let job = state.jobs.job(&caller.dealer, b.id.job_id()).await?;
        // Ended since the page was read: its end is written before its job's.
        let b = if job.state.is_finished() && b.finished_state.is_none() {
            state.batches.batch(&caller.dealer, b.id).await?
        } else {
            b
        };
        items.push(respond(b, job));
    }
    Ok(HttpResponse::Ok().json(BatchList {
        next_page_token: found.next_page_token.as_deref().map(encode_page_token),
        items,
    }))
}

/// Read a batch.
///
/// Its state, progress (items with an outcome of the total) and counts: succeeded, failed,
/// cancelled and pending. Reads only this service's database.
#[utoipa::path(get, path = "/v1/batches/{batch_id}", tag = "batches", security(("bearer" = ["viewer"])),
    params(("batch_id" = Uuid, Path)),
    responses((status = 200, description = "The batch", body = BatchResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn get_batch(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let id = batch_id(&path)?;
    Ok(HttpResponse::Ok().json(load(&state, &caller.dealer, id).await?))
}

/// List a batch's items.
///
/// Each item's outcome in request order: the single operation's answer for a succeeded item,
/// its problem document for a failed one. `state` filters (e.g. `state=failed`). Reads only
/// this service's database.
#[utoipa::path(get, path = "/v1/batches/{batch_id}/items", tag = "batches", security(("bearer" = ["viewer"])),
    params(("batch_id" = Uuid, Path), ItemFilter, PageParams),
    responses((status = 200, description = "A page of items", body = BatchItemList),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn batch_items(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    filter: Query<ItemFilter>,
    page: Query<PageParams>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let id = batch_id(&path)?;
    let found = state
        .batches
        .batch_items(
            &caller.dealer,
            id,
            filter.state.map(Into::into),
            page.to_request()?,
        )
        .await
        .map_err(batch_not_found)?;
    let (items, next_page_token) = page_parts(found);
    Ok(HttpResponse::Ok().json(BatchItemList {
        items,
        next_page_token,
    }))
}

/// Cancel a batch.
///
/// A queued batch never starts; a running one stops before its next item, so no item is left
/// half done. What is done stays done; the items not run become `cancelled`, and the batch's
/// end is on the change feed.
#[utoipa::path(post, path = "/v1/batches/{batch_id}:cancel", tag = "batches", security(("bearer" = ["operator"])),
    params(("batch_id" = Uuid, Path)),
    responses((status = 200, description = "The batch, cancelled or stopping", body = BatchResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already finished", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn cancel_batch(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    _no_body: NoBody,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let id = batch_id(&path)?;
    let (batch, job) = batch::cancel_batch(state.batch_ports(), caller, id)
        .await
        .map_err(|e| match e {
            domain::operations::OperationError::Store(StoreError::NotFound) => {
                ApiError::not_found("no such batch")
            }
            other => other.into(),
        })?;
    Ok(HttpResponse::Ok().json(respond(batch, job)))
}
