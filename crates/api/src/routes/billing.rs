//! The billing records (the service's copy of the billing system's customers,
//! sites, systems and users): PUT is an upsert guarded by If-Match; GET of a
//! site or system lists its links. One submodule per record kind; here the
//! routes and what every kind's answers share.

mod customers;
mod fields;
mod sites;
mod systems;
mod users;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use domain::billing::{BillingId, BillingRecord, Upserted};
use domain::link::LinkKind;
use domain::validation::ValidationError;
use serde::Serialize;
use utoipa::ToSchema;

pub use customers::*;
pub use sites::*;
pub use systems::*;
pub use users::*;

use crate::extract::etag;
use crate::problem::{ApiError, ApiResult};
use crate::routes::links::LinkResponse;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/billing/customers", web::get().to(search_customers))
        .service(
            web::resource("/billing/customers/{customer_id}")
                .route(web::put().to(put_customer))
                .route(web::get().to(get_customer))
                .route(web::delete().to(delete_customer)),
        )
        .route(
            "/billing/sites/{site_id}/push-targets",
            web::get().to(push_targets),
        )
        .service(
            web::resource("/billing/sites/{site_id}")
                .route(web::put().to(put_site))
                .route(web::get().to(get_site))
                .route(web::delete().to(delete_site)),
        )
        .service(
            web::resource("/billing/systems/{system_id}")
                .route(web::put().to(put_system))
                .route(web::get().to(get_system))
                .route(web::delete().to(delete_system)),
        )
        .service(
            web::resource("/billing/users/{user_id}")
                .route(web::put().to(put_user))
                .route(web::get().to(get_user))
                .route(web::delete().to(delete_user)),
        );
}

/// A billing id from the path of a PUT: refusing it is the caller's mistake.
fn id_to_write(raw: &str) -> ApiResult<BillingId> {
    BillingId::parse(raw).map_err(|why| ValidationError::field("id", why).into())
}

/// A billing id from the path of a read: an impossible id names no record.
fn id_to_read(raw: &str, what: &str) -> ApiResult<BillingId> {
    BillingId::parse(raw).map_err(|_| ApiError::not_found(format!("no billing {what} '{raw}'")))
}

fn not_found_as(what: &str, id: &BillingId) -> impl FnOnce(domain::store::StoreError) -> ApiError {
    let message = format!("no billing {what} '{id}'");
    move |e| match e {
        domain::store::StoreError::NotFound => ApiError::not_found(message),
        other => other.into(),
    }
}

fn respond<F, R: Serialize>(
    upserted: Upserted<BillingRecord<F>>,
    path: &str,
    to: impl FnOnce(BillingRecord<F>) -> R,
) -> HttpResponse {
    let version = upserted.record.version;
    let mut res = if upserted.created {
        let mut r = HttpResponse::Created();
        r.insert_header((header::LOCATION, path.to_owned()));
        r
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, etag(version)))
        .json(to(upserted.record))
}

/// Common parts of every billing record answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordMeta {
    pub id: String,
    /// Also the ETag.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn meta<F>(r: &BillingRecord<F>) -> RecordMeta {
    RecordMeta {
        id: r.id.to_string(),
        version: r.version,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LiveStatusResponse {
    pub connection_id: uuid::Uuid,
    pub device_id: String,
    /// normal, alarm, out_of_service or on_test; absent when it could not be read.
    pub status: Option<String>,
    /// A test is running on the device.
    pub on_test: bool,
    pub in_alarm: bool,
    /// Why the status could not be read.
    pub error: Option<String>,
}

async fn live(
    state: &AppState,
    caller: &domain::tenancy::Caller,
    kind: LinkKind,
    id: &BillingId,
) -> ApiResult<Vec<LiveStatusResponse>> {
    Ok(
        domain::stages_tab::live_status(state.linking(), caller, kind, id)
            .await?
            .into_iter()
            .map(live_status_response)
            .collect(),
    )
}

fn live_status_response(l: domain::stages_tab::LiveStatus) -> LiveStatusResponse {
    LiveStatusResponse {
        connection_id: l.connection_id.0,
        device_id: l.device_id,
        status: l
            .status
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| v.as_str().map(str::to_owned)),
        on_test: l.on_test,
        in_alarm: l.in_alarm,
        error: l.error,
    }
}

async fn links_of(
    state: &AppState,
    dealer: &domain::tenancy::DealerId,
    kind: LinkKind,
    id: &BillingId,
) -> ApiResult<Vec<LinkResponse>> {
    Ok(state
        .links
        .links_of_billing(dealer, kind, id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}
