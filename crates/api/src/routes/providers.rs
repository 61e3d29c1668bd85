//! The catalogue of upstream providers a connection can point at.

use actix_web::{get, HttpResponse};
use domain::connection::ProviderKind;
use domain::tenancy::Role;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::dto::{ProviderCategoryDto, ProviderDto};
use crate::problem::ApiResult;

#[derive(Serialize, ToSchema)]
pub struct CredentialFieldResponse {
    pub name: &'static str,
    pub label: &'static str,
    /// Stored encrypted and never returned.
    pub secret: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ProviderResponse {
    pub provider: ProviderDto,
    pub name: &'static str,
    pub category: ProviderCategoryDto,
    pub default_connection_name: &'static str,
    pub credential_fields: Vec<CredentialFieldResponse>,
    /// Whether `auth_mode = user` is allowed.
    pub supports_user_auth: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ProviderList {
    pub items: Vec<ProviderResponse>,
}

/// List the supported providers.
///
/// The upstream systems a connection can be made to (Stages and the interactive services
/// providers such as Alarm.com), with the credential fields each one needs. Reads nothing from
/// any upstream system.
#[utoipa::path(get, path = "/v1/providers", tag = "connections",
    security(("bearer" = ["viewer"])),
    responses((status = 200, description = "Every supported provider with its credential fields", body = ProviderList),
        (status = 401, body = crate::problem::Problem, content_type = "application/problem+json")))]
#[get("/providers")]
pub async fn list_providers(auth: Auth) -> ApiResult<HttpResponse> {
    auth.require(Role::Viewer)?;
    let items = ProviderKind::ALL
        .into_iter()
        .map(|k| {
            let p = k.describe();
            ProviderResponse {
                provider: p.kind.into(),
                name: p.name,
                category: p.category.into(),
                default_connection_name: p.default_connection_name,
                credential_fields: p
                    .credential_fields
                    .into_iter()
                    .map(|f| CredentialFieldResponse {
                        name: f.name,
                        label: f.label,
                        secret: f.secret,
                    })
                    .collect(),
                supports_user_auth: p.supports_user_auth,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(ProviderList { items }))
}
