//! Sync of one link (S10, S11): the field-by-field diff, record sync with a
//! choice per field (with a dry run, B6), and account sync of a whole record
//! from one side.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use domain::link::LinkId;
use domain::link_sync::{self, SyncOutcome};
use domain::sync::{FieldChoice, FieldDiff, FieldStatus, Side};
use domain::tenancy::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Auth;
use crate::extract::{JsonBody, Query};
use crate::problem::{ApiError, ApiResult};
use crate::routes::links::{DryRun, LinkKindDto};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/links/{link_id}:sync", web::post().to(sync_link))
        .route(
            "/links/{link_id}:account-sync",
            web::post().to(account_sync),
        )
        .route("/links/{link_id}/diff", web::get().to(diff));
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldChoiceDto {
    TakeBilling,
    TakeExternal,
}

impl From<FieldChoiceDto> for FieldChoice {
    fn from(c: FieldChoiceDto) -> Self {
        match c {
            FieldChoiceDto::TakeBilling => Self::TakeBilling,
            FieldChoiceDto::TakeExternal => Self::TakeExternal,
        }
    }
}

impl From<FieldChoice> for FieldChoiceDto {
    fn from(c: FieldChoice) -> Self {
        match c {
            FieldChoice::TakeBilling => Self::TakeBilling,
            FieldChoice::TakeExternal => Self::TakeExternal,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldStatusDto {
    Equal,
    BillingChanged,
    ExternalChanged,
    Conflict,
    Unknown,
}

impl From<FieldStatus> for FieldStatusDto {
    fn from(s: FieldStatus) -> Self {
        match s {
            FieldStatus::Equal => Self::Equal,
            FieldStatus::BillingChanged => Self::BillingChanged,
            FieldStatus::ExternalChanged => Self::ExternalChanged,
            FieldStatus::Conflict => Self::Conflict,
            FieldStatus::Unknown => Self::Unknown,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldDiffResponse {
    pub field: String,
    pub billing: String,
    /// The Stages value.
    pub external: String,
    /// The value both sides held at the last sync.
    pub last_synced: Option<String>,
    /// equal (after normalisation), changed on one side, in conflict, or unknown (no last sync).
    pub status: FieldStatusDto,
    /// What a sync does with this field when nobody chooses.
    pub proposed: Option<FieldChoiceDto>,
    /// The value after the proposed merge (absent when a choice is needed).
    pub merged: Option<String>,
}

impl From<FieldDiff> for FieldDiffResponse {
    fn from(d: FieldDiff) -> Self {
        let merged = match (d.status, d.proposed) {
            (_, Some(c)) => Some(d.value(c).to_owned()),
            (FieldStatus::Equal, None) => Some(d.billing.clone()),
            _ => None,
        };
        Self {
            field: d.field,
            billing: d.billing,
            external: d.external,
            last_synced: d.last_synced,
            status: d.status.into(),
            proposed: d.proposed.map(Into::into),
            merged,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkDiffResponse {
    pub link_id: Uuid,
    pub kind: LinkKindDto,
    pub fields: Vec<FieldDiffResponse>,
}

fn link_id(raw: &str) -> ApiResult<LinkId> {
    Uuid::parse_str(raw)
        .map(LinkId)
        .map_err(|_| ApiError::not_found("no such link"))
}

/// Compare both sides of a link.
///
/// Field by field: the billing value, the Stages value (read live), the value at the last sync,
/// and the merge a sync would make. Changes nothing.
#[utoipa::path(get, path = "/v1/links/{link_id}/diff", tag = "sync", security(("bearer" = ["viewer"])),
    params(("link_id" = Uuid, Path)),
    responses((status = 200, description = "Each field on both sides", body = LinkDiffResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn diff(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let d = link_sync::link_diff(state.linking(), caller, link_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(LinkDiffResponse {
        link_id: d.link_id.0,
        kind: d.kind.into(),
        fields: d.fields.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// A choice per field; a field left out takes the proposed merge (reset).
    #[serde(default)]
    pub fields: BTreeMap<String, FieldChoiceDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncResponse {
    pub link_id: Uuid,
    pub dry_run: bool,
    pub fields: Vec<FieldDiffResponse>,
    /// Values written (or, in a dry run, to be written) to the billing record.
    pub to_billing: BTreeMap<String, String>,
    /// Values written (or to be written) to Stages.
    pub to_external: BTreeMap<String, String>,
    /// Every resolved field's value after the sync.
    pub merged: BTreeMap<String, String>,
    /// Fields that differ and were left as they are (choose for them).
    pub unresolved: Vec<String>,
}

impl From<SyncOutcome> for SyncResponse {
    fn from(o: SyncOutcome) -> Self {
        Self {
            link_id: o.link_id.0,
            dry_run: o.dry_run,
            fields: o.fields.into_iter().map(Into::into).collect(),
            to_billing: o.plan.to_billing,
            to_external: o.plan.to_external,
            merged: o.plan.merged,
            unresolved: o.plan.unresolved,
        }
    }
}

/// Sync one linked record.
///
/// For each field given, takes the billing value or the Stages value and writes it to the other
/// side: only this record, not its children. Values equal after normalisation are left alone.
/// With `dry_run=true` it answers what it would write and changes nothing.
#[utoipa::path(post, path = "/v1/links/{link_id}:sync", tag = "sync", security(("bearer" = ["operator"])),
    params(("link_id" = Uuid, Path), DryRun),
    request_body = SyncRequest,
    responses((status = 200, description = "What was written to each side", body = SyncResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn sync_link(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    query: Query<DryRun>,
    body: JsonBody<SyncRequest>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let choices = body
        .0
        .fields
        .into_iter()
        .map(|(k, v)| (k, v.into()))
        .collect();
    let outcome = link_sync::sync_link(
        state.linking(),
        caller,
        link_id(&path)?,
        &choices,
        query.dry_run,
    )
    .await?;
    Ok(HttpResponse::Ok().json(SyncResponse::from(outcome)))
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SideDto {
    Billing,
    External,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountSyncRequest {
    /// Whose data wins: the billing record's or Stages'.
    #[serde(rename = "use")]
    pub use_side: SideDto,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountSyncResponse {
    /// The record first, then (for a system) its site.
    pub items: Vec<SyncResponse>,
}

/// Sync a record with its hierarchy.
///
/// Takes every mapped field from one side (billing or Stages) and writes it to the other.
/// Syncing a system also syncs its site; syncing a site syncs the site only.
#[utoipa::path(post, path = "/v1/links/{link_id}:account-sync", tag = "sync", security(("bearer" = ["operator"])),
    params(("link_id" = Uuid, Path)),
    request_body = AccountSyncRequest,
    responses((status = 200, description = "What was written for each record", body = AccountSyncResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn account_sync(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    body: JsonBody<AccountSyncRequest>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let side = match body.0.use_side {
        SideDto::Billing => Side::Billing,
        SideDto::External => Side::External,
    };
    let outcomes = link_sync::account_sync(state.linking(), caller, link_id(&path)?, side).await?;
    Ok(HttpResponse::Ok().json(AccountSyncResponse {
        items: outcomes.into_iter().map(Into::into).collect(),
    }))
}
