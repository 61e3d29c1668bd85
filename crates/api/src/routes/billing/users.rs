//! Billing users (reps and staff): upsert, read and delete. Imports link an
//! Alarm.com customer's rep to one of them.

use actix_web::{web, HttpRequest, HttpResponse};
use domain::billing::{BillingRecord, UserFields};
use domain::sync::normalize::Normalizer;
use domain::validation::ValidationError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::fields::{checked, tag_list, text};
use super::{meta, record_kind, unlinked, RecordMeta};
use crate::auth::Auth;
use crate::extract::JsonBody;
use crate::problem::ApiResult;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PutUserRequest {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: String,
    pub login_name: String,
    pub active: bool,
    pub can_login: bool,
    pub permission_group: String,
    pub tags: Vec<String>,
    pub address1: String,
    pub address2: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    /// A free field the dealer uses as it likes.
    pub user_field: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    #[serde(flatten)]
    pub meta: RecordMeta,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: String,
    pub login_name: String,
    pub active: bool,
    pub can_login: bool,
    pub permission_group: String,
    pub tags: Vec<String>,
    pub address1: String,
    pub address2: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    pub user_field: String,
}

impl From<BillingRecord<UserFields>> for UserResponse {
    fn from(r: BillingRecord<UserFields>) -> Self {
        let meta = meta(&r);
        let f = r.fields;
        Self {
            meta,
            first_name: f.first_name,
            last_name: f.last_name,
            email: f.email,
            phone: f.phone,
            login_name: f.login_name,
            active: f.active,
            can_login: f.can_login,
            permission_group: f.permission_group,
            tags: f.tags,
            address1: f.address1,
            address2: f.address2,
            city: f.city,
            state: f.state,
            zip: f.zip,
            user_field: f.user_field,
        }
    }
}

fn user_fields(b: PutUserRequest) -> Result<UserFields, ValidationError> {
    let mut v = ValidationError::default();
    let tags = tag_list(&mut v, b.tags);
    let f = UserFields {
        first_name: text(&mut v, "first_name", b.first_name, 100, false),
        last_name: text(&mut v, "last_name", b.last_name, 100, false),
        email: text(&mut v, "email", b.email, 254, false),
        phone: checked(&mut v, "phone", b.phone, Normalizer::Phone),
        login_name: text(&mut v, "login_name", b.login_name, 100, false),
        active: b.active,
        can_login: b.can_login,
        permission_group: text(&mut v, "permission_group", b.permission_group, 100, false),
        tags,
        address1: text(&mut v, "address1", b.address1, 200, false),
        address2: text(&mut v, "address2", b.address2, 200, false),
        city: text(&mut v, "city", b.city, 100, false),
        state: checked(&mut v, "state", b.state, Normalizer::State),
        zip: checked(&mut v, "zip", b.zip, Normalizer::Zip),
        user_field: text(&mut v, "user_field", b.user_field, 200, false),
    };
    if f.first_name.trim().is_empty() && f.last_name.trim().is_empty() {
        v.push("last_name", "a user needs a first or last name");
    }
    v.into_result()?;
    Ok(f)
}

record_kind!(
    /// The billing users: never linked; a read is the service's copy alone.
    Users = "user", links: None,
    PutUserRequest => UserFields = user_fields, answer: UserResponse = unlinked,
    store: upsert_user, user, delete_user
);

/// Create or replace a billing user.
///
/// Writes the service's copy of a billing user (a rep or staff member). Imports link an
/// Alarm.com customer's rep to the billing user of that rep. Nothing is sent to any provider.
#[utoipa::path(put, path = "/v1/billing/users/{user_id}", tag = "billing", security(("bearer" = ["operator"])),
    params(("user_id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = PutUserRequest,
    responses((status = 200, description = "Replaced", body = UserResponse), (status = 201, description = "Created", body = UserResponse),
        (status = 412, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn put_user(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    path: web::Path<String>,
    body: JsonBody<PutUserRequest>,
) -> ApiResult<HttpResponse> {
    super::put::<Users>(&state, auth, &req, &path, body.0).await
}

/// Read a billing user.
///
/// The service's copy of one billing user (a rep or staff member). Reads only this service's
/// database.
#[utoipa::path(get, path = "/v1/billing/users/{user_id}", tag = "billing", security(("bearer" = ["viewer"])),
    params(("user_id" = String, Path)),
    responses((status = 200, description = "The user", body = UserResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn get_user(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    super::get::<Users>(&state, auth, &path).await
}

/// Delete a billing user.
///
/// Removes the service's copy of a billing user. Nothing changes at any provider.
#[utoipa::path(delete, path = "/v1/billing/users/{user_id}", tag = "billing", security(("bearer" = ["operator"])),
    params(("user_id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204, description = "Deleted"),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn delete_user(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    super::delete::<Users>(&state, auth, &req, &path).await
}
