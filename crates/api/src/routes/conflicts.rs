//! The conflict inbox (S11, S18, S19, B11): fields of links that did not sync,
//! either held because both sides changed them since the last sync or
//! refused by Stages; and their resolution, one side per field or per link,
//! through the same decision as a record sync (`:sync`).

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use domain::connection::ConnectionId;
use domain::field_issues::{FieldIssue, FieldIssueFilter, IssueKind};
use domain::link::LinkId;
use domain::link_sync;
use domain::store::PageRequest;
use domain::sync::FieldChoice;
use domain::tenancy::Role;
use domain::validation::ValidationError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Auth;
use crate::extract::{page_parts, JsonBody, PageParams, Query};
use crate::problem::{ApiError, ApiResult};
use crate::routes::links::LinkKindDto;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/conflicts", web::get().to(list_conflicts))
        .route("/conflicts:resolve", web::post().to(resolve_conflicts));
}

/// Why a field did not sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IssueKindDto {
    /// Both sides changed it since the last sync; held (`conflict_policy: hold`).
    Conflict,
    /// Stages refused billing's value; the record's other fields still synced.
    Refused,
}

impl From<IssueKindDto> for IssueKind {
    fn from(k: IssueKindDto) -> Self {
        match k {
            IssueKindDto::Conflict => Self::Conflict,
            IssueKindDto::Refused => Self::Refused,
        }
    }
}

impl From<IssueKind> for IssueKindDto {
    fn from(k: IssueKind) -> Self {
        match k {
            IssueKind::Conflict => Self::Conflict,
            IssueKind::Refused => Self::Refused,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConflictQuery {
    /// `conflict` (the default) or `refused`.
    pub issue: Option<IssueKindDto>,
    pub connection_id: Option<Uuid>,
    pub link_id: Option<Uuid>,
    pub record_kind: Option<LinkKindDto>,
    /// A synced field's name, e.g. `city` or `system_number`.
    pub field: Option<String>,
    /// Only issues first seen at least this many seconds ago.
    #[param(minimum = 0)]
    pub older_than_secs: Option<u32>,
    #[param(minimum = 1, maximum = 500)]
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConflictResponse {
    pub id: Uuid,
    pub issue: IssueKindDto,
    pub link_id: Uuid,
    pub connection_id: Uuid,
    pub record_kind: LinkKindDto,
    pub billing_id: String,
    /// The Stages site number or device id.
    pub external_id: String,
    pub field: String,
    pub billing_value: String,
    pub stages_value: String,
    /// The value both sides held at the last sync, when known.
    pub last_synced: Option<String>,
    /// Stages' reason, for a refusal.
    pub reason: Option<String>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

impl From<FieldIssue> for ConflictResponse {
    fn from(i: FieldIssue) -> Self {
        Self {
            id: i.id,
            issue: i.issue.kind.into(),
            link_id: i.link_id.0,
            connection_id: i.connection_id.0,
            record_kind: i.record_kind.into(),
            billing_id: i.billing_id.as_str().to_owned(),
            external_id: i.external_id,
            field: i.issue.field,
            billing_value: i.issue.billing_value,
            stages_value: i.issue.stages_value,
            last_synced: i.issue.last_synced,
            reason: i.issue.reason,
            first_seen_at: i.first_seen_at,
            last_seen_at: i.last_seen_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConflictList {
    pub items: Vec<ConflictResponse>,
    pub next_page_token: Option<String>,
}

/// List held conflicts.
///
/// The conflict inbox, newest first: fields changed on both sides since the last sync and held
/// until someone chooses (or, with `issue=refused`, values Stages refused). Changes nothing.
#[utoipa::path(get, path = "/v1/conflicts", tag = "sync", security(("bearer" = ["viewer"])),
    params(ConflictQuery),
    responses((status = 200, description = "A page of conflicts", body = ConflictList),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn list_conflicts(
    state: web::Data<AppState>,
    auth: Auth,
    query: Query<ConflictQuery>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let q = query.into_inner();
    let page = PageParams {
        page_size: q.page_size,
        page_token: q.page_token,
    };
    let filter = FieldIssueFilter {
        kind: Some(q.issue.unwrap_or(IssueKindDto::Conflict).into()),
        connection_id: q.connection_id.map(ConnectionId),
        link_id: q.link_id.map(LinkId),
        record_kind: q.record_kind.map(Into::into),
        field: q.field,
        seen_before: q
            .older_than_secs
            .map(|s| Utc::now() - chrono::Duration::seconds(i64::from(s))),
    };
    let found = state
        .issues
        .list_field_issues(&caller.dealer, &filter, page.to_request()?)
        .await?;
    let (items, next_page_token) = page_parts(found);
    Ok(HttpResponse::Ok().json(ConflictList {
        items,
        next_page_token,
    }))
}

/// Which side a resolution takes.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResolveSide {
    Billing,
    Stages,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    pub link_id: Uuid,
    /// One field; without it, every field of the link held as a conflict.
    pub field: Option<String>,
    #[serde(rename = "use")]
    pub side: ResolveSide,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// At most 100.
    pub resolutions: Vec<Resolution>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResolutionResult {
    pub link_id: Uuid,
    /// The fields that took the chosen side.
    pub resolved: Vec<String>,
    /// Why this resolution did not apply (the others still did).
    pub error: Option<ResolutionError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResolutionError {
    pub status: u16,
    pub code: String,
    pub detail: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResolveResponse {
    pub items: Vec<ResolutionResult>,
}

/// Resolve conflicts.
///
/// Resolves many conflicts at once: each takes one side for one field, or for every held field
/// of its link, and writes it as a record sync would. Each conflict answers for itself; one
/// failure does not stop the others.
#[utoipa::path(post, path = "/v1/conflicts:resolve", tag = "sync", security(("bearer" = ["operator"])),
    request_body = ResolveRequest,
    responses((status = 200, description = "Each conflict's outcome", body = ResolveResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 504, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn resolve_conflicts(
    state: web::Data<AppState>,
    auth: Auth,
    body: JsonBody<ResolveRequest>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let resolutions = body.0.resolutions;
    let mut v = ValidationError::default();
    if resolutions.is_empty() || resolutions.len() > 100 {
        v.push("resolutions", "give 1 to 100 resolutions");
    }
    v.into_result()?;
    // Every link must be the caller's before anything changes: an id that
    // names nothing of theirs is a 404 for the whole request, as elsewhere.
    for r in &resolutions {
        state
            .links
            .link(&caller.dealer, LinkId(r.link_id))
            .await
            .map_err(|e| match e {
                domain::store::StoreError::NotFound => ApiError::not_found("no such link"),
                other => other.into(),
            })?;
    }
    let mut items = Vec::with_capacity(resolutions.len());
    for r in resolutions {
        let link_id = LinkId(r.link_id);
        let choice = match r.side {
            ResolveSide::Billing => FieldChoice::TakeBilling,
            ResolveSide::Stages => FieldChoice::TakeExternal,
        };
        let fields = match r.field {
            Some(field) => vec![field],
            None => held_fields(&state, &caller.dealer, link_id).await?,
        };
        let choices: BTreeMap<String, FieldChoice> =
            fields.iter().map(|f| (f.clone(), choice)).collect();
        let result = if choices.is_empty() {
            Ok(Vec::new())
        } else {
            link_sync::sync_link(state.linking(), caller, link_id, &choices, false)
                .await
                .map(|_| fields)
        };
        items.push(match result {
            Ok(resolved) => ResolutionResult {
                link_id: r.link_id,
                resolved,
                error: None,
            },
            Err(e) => {
                let e = ApiError::from(e);
                ResolutionResult {
                    link_id: r.link_id,
                    resolved: Vec::new(),
                    error: Some(ResolutionError {
                        status: e.status.as_u16(),
                        code: e.code.to_owned(),
                        detail: e.detail,
                    }),
                }
            }
        });
    }
    Ok(HttpResponse::Ok().json(ResolveResponse { items }))
}

/// The fields of a link held as conflicts now.
async fn held_fields(
    state: &AppState,
    dealer: &domain::tenancy::DealerId,
    link_id: LinkId,
) -> ApiResult<Vec<String>> {
    let found = state
        .issues
        .list_field_issues(
            dealer,
            &FieldIssueFilter {
                kind: Some(IssueKind::Conflict),
                link_id: Some(link_id),
                ..Default::default()
            },
            PageRequest {
                after: None,
                limit: 100,
            },
        )
        .await?;
    Ok(found.items.into_iter().map(|i| i.issue.field).collect())
}
