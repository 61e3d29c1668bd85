//! The billing records (the service's copy of the billing system's customers,
//! sites, systems and users): PUT is an upsert guarded by If-Match; GET of a
//! site or system lists its links. One submodule per record kind; here the
//! routes, what every kind's answers share, and the one body of their PUT,
//! GET and DELETE (each kind a `RecordKind`).

mod customers;
mod fields;
mod sites;
mod systems;
mod users;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use domain::billing::{BillingId, BillingRecord, Upserted};
use domain::link::{Link, LinkKind};
use domain::store::StoreResult;
use domain::tenancy::{Caller, DealerId, Role};
use domain::validation::ValidationError;
use serde::Serialize;
use utoipa::ToSchema;

pub use customers::*;
pub use sites::*;
pub use systems::*;
pub use users::*;

use crate::auth::Auth;
use crate::extract::{etag, if_match};
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

/// What the four record kinds' PUT, GET and DELETE differ in: their body,
/// their answer and their store calls. `put`, `get` and `delete` below are
/// those routes' one body; each kind's handlers only name their kind.
trait RecordKind {
    /// As an answer names the kind: "no billing site 'x'".
    const NAME: &'static str;
    /// For the kinds that are linked (sites, systems): their links and the
    /// live status of their devices are part of a read.
    const LINK_KIND: Option<LinkKind> = None;
    type Request;
    type Fields;
    type Response: Serialize;

    fn fields(body: Self::Request) -> Result<Self::Fields, ValidationError>;
    /// The answer, with the record's links and what Stages says now about
    /// its devices (both empty for a kind that is not linked, and the
    /// status empty on a write).
    fn response(
        record: BillingRecord<Self::Fields>,
        links: Vec<LinkResponse>,
        stages_status: Vec<LiveStatusResponse>,
    ) -> Self::Response;
    /// Writes the record; with its links, read in the same transaction, for
    /// a kind that is linked.
    async fn upsert(
        state: &AppState,
        dealer: &DealerId,
        id: &BillingId,
        fields: Self::Fields,
        expected_version: Option<i64>,
    ) -> StoreResult<Written<Self::Fields>>;
    async fn read(
        state: &AppState,
        dealer: &DealerId,
        id: &BillingId,
    ) -> StoreResult<BillingRecord<Self::Fields>>;
    async fn delete(
        state: &AppState,
        dealer: &DealerId,
        id: &BillingId,
        expected_version: Option<i64>,
    ) -> StoreResult<()>;

    /// The answer to a read: for a linked kind, with its links and the live
    /// status of its devices.
    async fn read_answer(
        state: &AppState,
        caller: &Caller,
        record: BillingRecord<Self::Fields>,
    ) -> ApiResult<Self::Response> {
        let Some(kind) = Self::LINK_KIND else {
            return Ok(Self::response(record, Vec::new(), Vec::new()));
        };
        let (links, stages_status) = links_and_status(state, caller, kind, &record.id).await?;
        Ok(Self::response(record, links, stages_status))
    }
}

/// A kind's write, with its links for a linked kind (none for the others).
type Written<F> = (Upserted<BillingRecord<F>>, Vec<Link>);

/// What the store's upsert of a kind answers, as a [`Written`].
trait IntoWritten<F> {
    fn into_written(self) -> Written<F>;
}

impl<F> IntoWritten<F> for Upserted<BillingRecord<F>> {
    fn into_written(self) -> Written<F> {
        (self, Vec::new())
    }
}

impl<F> IntoWritten<F> for Written<F> {
    fn into_written(self) -> Written<F> {
        self
    }
}

/// The answer of a kind that is never linked: the record alone.
fn unlinked<F, R: From<BillingRecord<F>>>(
    record: BillingRecord<F>,
    _: Vec<LinkResponse>,
    _: Vec<LiveStatusResponse>,
) -> R {
    record.into()
}

/// Declares a record kind and its `RecordKind` from what sets it apart, so
/// that each kind is a row: its name in answers, the kind of its links (for
/// a linked kind), its body and fields with the check between them, its
/// answer, and `BillingStore`'s upsert, read and delete of it. Items after
/// `;` replace a default of the trait (a read answer of its own).
macro_rules! record_kind {
    ($(#[$doc:meta])* $kind:ident = $name:literal, links: $links:expr,
        $request:ty => $fields:ty = $check:path, answer: $response:ty = $answer:path,
        store: $upsert:ident, $read:ident, $delete:ident $(; $($own:tt)*)?) => {
        $(#[$doc])*
        struct $kind;

        impl $crate::routes::billing::RecordKind for $kind {
            const NAME: &'static str = $name;
            const LINK_KIND: Option<domain::link::LinkKind> = $links;
            type Request = $request;
            type Fields = $fields;
            type Response = $response;

            fn fields(body: $request) -> Result<$fields, domain::validation::ValidationError> {
                $check(body)
            }

            fn response(
                record: domain::billing::BillingRecord<$fields>,
                links: Vec<$crate::routes::links::LinkResponse>,
                stages_status: Vec<$crate::routes::billing::LiveStatusResponse>,
            ) -> $response {
                $answer(record, links, stages_status)
            }

            async fn upsert(
                state: &$crate::state::AppState,
                dealer: &domain::tenancy::DealerId,
                id: &domain::billing::BillingId,
                fields: $fields,
                expected_version: Option<i64>,
            ) -> domain::store::StoreResult<$crate::routes::billing::Written<$fields>> {
                let written = state.billing.$upsert(dealer, id, fields, expected_version).await?;
                Ok($crate::routes::billing::IntoWritten::into_written(written))
            }

            async fn read(
                state: &$crate::state::AppState,
                dealer: &domain::tenancy::DealerId,
                id: &domain::billing::BillingId,
            ) -> domain::store::StoreResult<domain::billing::BillingRecord<$fields>> {
                state.billing.$read(dealer, id).await
            }

            async fn delete(
                state: &$crate::state::AppState,
                dealer: &domain::tenancy::DealerId,
                id: &domain::billing::BillingId,
                expected_version: Option<i64>,
            ) -> domain::store::StoreResult<()> {
                state.billing.$delete(dealer, id, expected_version).await
            }

            $($($own)*)?
        }
    };
}
use record_kind;

/// PUT: an upsert guarded by `If-Match`; 201 with `Location` when created.
async fn put<K: RecordKind>(
    state: &AppState,
    auth: Auth,
    req: &HttpRequest,
    path: &str,
    body: K::Request,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let id = id_to_write(path)?;
    let fields = K::fields(body)?;
    let (upserted, links) = K::upsert(state, &caller.dealer, &id, fields, if_match(req)?).await?;
    let links = links.into_iter().map(Into::into).collect();
    let version = upserted.record.version;
    let mut res = if upserted.created {
        let mut r = HttpResponse::Created();
        r.insert_header((header::LOCATION, req.path().to_owned()));
        r
    } else {
        HttpResponse::Ok()
    };
    Ok(res
        .insert_header((header::ETAG, etag(version)))
        .json(K::response(upserted.record, links, Vec::new())))
}

/// GET: the record with its version as the `ETag`.
async fn get<K: RecordKind>(state: &AppState, auth: Auth, path: &str) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let id = id_to_read(path, K::NAME)?;
    let record = K::read(state, &caller.dealer, &id)
        .await
        .map_err(not_found_as(K::NAME, &id))?;
    let version = record.version;
    let body = K::read_answer(state, caller, record).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(version)))
        .json(body))
}

/// DELETE, guarded by `If-Match`; what still hangs on the record refuses it.
async fn delete<K: RecordKind>(
    state: &AppState,
    auth: Auth,
    req: &HttpRequest,
    path: &str,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Operator)?;
    let id = id_to_read(path, K::NAME)?;
    K::delete(state, &caller.dealer, &id, if_match(req)?)
        .await
        .map_err(not_found_as(K::NAME, &id))?;
    Ok(HttpResponse::NoContent().finish())
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

/// What a read of a linked kind (site, system) adds: its links on every
/// connection, then what Stages says now about each linked device.
async fn links_and_status(
    state: &AppState,
    caller: &Caller,
    kind: LinkKind,
    id: &BillingId,
) -> ApiResult<(Vec<LinkResponse>, Vec<LiveStatusResponse>)> {
    let links = state
        .links
        .links_of_billing(&caller.dealer, kind, id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let status = domain::stages_tab::live_status(state.linking(), caller, kind, id)
        .await?
        .into_iter()
        .map(live_status_response)
        .collect();
    Ok((links, status))
}
