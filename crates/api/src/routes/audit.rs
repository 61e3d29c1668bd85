//! The audit trail of link changes: who, when, which connection, before and after.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use domain::audit::AuditFilter;
use domain::connection::ConnectionId;
use domain::tenancy::Role;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Auth;
use crate::extract::{page_parts, PageParams, Query};
use crate::problem::ApiResult;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// A billing id or an external (Stages) id.
    pub subject: Option<String>,
    /// A user id, `auto_sync`, or `stages_callback:<event id>`.
    pub actor: Option<String>,
    pub connection_id: Option<Uuid>,
    /// Entries whose before or after names this field (e.g. `city`, `panel_type`).
    pub field: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryResponse {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: String,
    /// Link changes: push, link, edit_link, unlink, reconcile_link, ...
    /// Data changes: `<source>_to_billing` or `<source>_to_stages`, the source
    /// being sync, account_sync, auto_sync, stages_callback, push or
    /// stages_edit; before and after hold each changed field's values.
    pub action: String,
    pub connection_id: Option<Uuid>,
    pub kind: String,
    pub billing_id: Option<String>,
    pub external_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub items: Vec<AuditEntryResponse>,
    pub next_page_token: Option<String>,
}

/// Read the audit trail.
///
/// Who changed which link, when and through which connection, and every change crosslink made
/// to the data of a billing or Stages record (sync, account sync, Auto Sync, applied callbacks,
/// push, Stages-tab edits) with each field's value before and after, newest first. Filters by
/// record (`subject`), actor, connection and field. Reads only this service's database.
#[utoipa::path(get, path = "/v1/audit", tag = "links", security(("bearer" = ["viewer"])),
    params(AuditQuery, PageParams),
    responses((status = 200, description = "A page of audit entries", body = AuditList),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn list_audit(
    state: web::Data<AppState>,
    auth: Auth,
    query: Query<AuditQuery>,
    page: Query<PageParams>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let q = query.into_inner();
    if let Some(field) = &q.field {
        if field.is_empty() || !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(domain::validation::ValidationError::field(
                "field",
                "a field name: letters, digits and _",
            )
            .into());
        }
    }
    let found = state
        .audit
        .list_audit(
            &caller.dealer,
            &AuditFilter {
                subject: q.subject,
                actor: q.actor,
                connection_id: q.connection_id.map(ConnectionId),
                field: q.field,
            },
            page.to_request()?,
        )
        .await?;
    let (items, next_page_token) = page_parts(found.map(|a| AuditEntryResponse {
        id: a.id,
        at: a.at,
        actor: a.entry.actor,
        action: a.entry.action,
        connection_id: a.entry.connection_id.map(|c| c.0),
        kind: a.entry.kind,
        billing_id: a.entry.billing_id,
        external_id: a.entry.external_id,
        before: a.entry.before,
        after: a.entry.after,
    }));
    Ok(HttpResponse::Ok().json(AuditList {
        items,
        next_page_token,
    }))
}
