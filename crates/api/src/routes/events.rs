//! The change feed and outbound webhook subscriptions (B2): every change the
//! service makes to a billing record, in order, and signed delivery of it.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use domain::events::{
    Event, NewWebhookSubscription, SubscriptionChanges, SubscriptionId, SubscriptionStatus,
    WebhookSubscription,
};
use domain::tenancy::Role;
use domain::validation::ValidationError;
use domain::Secret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Auth;
use crate::extract::{etag, if_match, page_parts, JsonBody, PageParams, Query};
use crate::problem::{ApiError, ApiResult};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/events", web::get().to(list_events))
        .service(
            web::resource("/webhook-subscriptions")
                .route(web::get().to(list_subscriptions))
                .route(web::post().to(create_subscription)),
        )
        .service(
            web::resource("/webhook-subscriptions/{subscription_id}")
                .route(web::get().to(get_subscription))
                .route(web::patch().to(update_subscription))
                .route(web::delete().to(delete_subscription)),
        );
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventResponse {
    /// Position in the feed: pass the last one you read as `after`.
    pub seq: i64,
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub subject_kind: String,
    pub subject_id: String,
    pub connection_id: Option<Uuid>,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl From<Event> for EventResponse {
    fn from(e: Event) -> Self {
        Self {
            seq: e.seq,
            id: e.id,
            event_type: e.event_type,
            subject_kind: e.subject_kind,
            subject_id: e.subject_id,
            connection_id: e.connection_id.map(|c| c.0),
            data: e.data,
            created_at: e.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub items: Vec<EventResponse>,
    /// Set when the page was full, so more events may follow at once: pass it
    /// as `page_token` (the same list shape as every other list).
    pub next_page_token: Option<String>,
    /// Where to poll from later, caught up or not: the `after` of the next
    /// read (the last item's seq, or the one given).
    pub next_after: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// Only events after this seq.
    pub after: Option<i64>,
    /// Comma-separated event types (all when absent).
    pub types: Option<String>,
    /// 1 to 500, default 50.
    pub page_size: Option<u32>,
    /// From the previous page's `next_page_token`; stands for `after`.
    pub page_token: Option<String>,
}

/// Read the change feed.
///
/// Every change the service made to a billing record, oldest first, for the billing system to
/// apply. Page with `after` (the cursor of the last event you applied).
#[utoipa::path(get, path = "/v1/events", tag = "events", security(("bearer" = ["viewer"])),
    params(FeedQuery),
    responses((status = 200, description = "A page of events", body = EventList),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn list_events(
    state: web::Data<AppState>,
    auth: Auth,
    query: Query<FeedQuery>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let limit = query.page_size.unwrap_or(crate::extract::DEFAULT_PAGE_SIZE);
    if !(1..=crate::extract::MAX_PAGE_SIZE).contains(&limit) {
        return Err(ValidationError::field("page_size", "must be between 1 and 500").into());
    }
    if query.after.is_some_and(|a| a < 0) {
        return Err(ValidationError::field("after", "must not be negative").into());
    }
    let after = match query.page_token.as_deref() {
        None | Some("") => query.after,
        Some(_) if query.after.is_some() => {
            return Err(
                ValidationError::field("page_token", "give after or page_token, not both").into(),
            )
        }
        Some(token) => Some(
            crate::extract::decode_page_token(token)?
                .strip_prefix("after:")
                .and_then(|a| a.parse::<i64>().ok())
                .ok_or_else(|| {
                    ValidationError::field("page_token", "is not a token this service gave out")
                })?,
        ),
    };
    let types: Vec<String> = query
        .types
        .as_deref()
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let events = state
        .events
        .list_events(&caller.dealer, after, &types, limit)
        .await?;
    let next_after = events.last().map(|e| e.seq).or(after);
    let next_page_token = (events.len() == limit as usize)
        .then(|| next_after.map(|a| crate::extract::encode_page_token(&format!("after:{a}"))))
        .flatten();
    Ok(HttpResponse::Ok().json(EventList {
        items: events.into_iter().map(Into::into).collect(),
        next_page_token,
        next_after,
    }))
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatusDto {
    Active,
    Disabled,
}

impl From<SubscriptionStatus> for SubscriptionStatusDto {
    fn from(s: SubscriptionStatus) -> Self {
        match s {
            SubscriptionStatus::Active => Self::Active,
            SubscriptionStatus::Disabled => Self::Disabled,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionResponse {
    pub id: Uuid,
    pub url: String,
    /// Event types delivered; empty means all.
    pub types: Vec<String>,
    pub status: SubscriptionStatusDto,
    pub disabled_reason: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<WebhookSubscription> for SubscriptionResponse {
    fn from(s: WebhookSubscription) -> Self {
        Self {
            id: s.id.0,
            url: s.url.to_string(),
            types: s.types,
            status: s.status.into(),
            disabled_reason: s.disabled_reason,
            version: s.version,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedSubscriptionResponse {
    #[serde(flatten)]
    pub subscription: SubscriptionResponse,
    /// The Standard Webhooks signing secret (`whsec_...`), shown this once.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionList {
    pub items: Vec<SubscriptionResponse>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscriptionRequest {
    /// Where events are POSTed (http or https).
    pub url: String,
    /// Event types to deliver; empty or absent means all.
    #[serde(default)]
    pub types: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubscriptionRequest {
    pub url: Option<String>,
    pub types: Option<Vec<String>>,
    pub status: Option<SubscriptionStatusDto>,
}

fn webhook_url(v: &mut ValidationError, raw: &str) -> Option<url::Url> {
    v.check(
        "url",
        domain::connection::Endpoint::parse(raw).map(|e| e.url().clone()),
    )
}

fn check_types(v: &mut ValidationError, types: &[String]) {
    if types.len() > 50 {
        v.push("types", "at most 50 types");
    }
    for (i, t) in types.iter().enumerate() {
        if t.is_empty() || t.len() > 100 || t.chars().any(|c| c.is_control() || c.is_whitespace()) {
            v.push(
                format!("types[{i}]"),
                "must be an event type like billing.site.updated",
            );
        }
    }
}

fn subscription_id(raw: &str) -> ApiResult<SubscriptionId> {
    Uuid::parse_str(raw)
        .map(SubscriptionId)
        .map_err(|_| ApiError::not_found("no such webhook subscription"))
}

fn not_found(e: domain::store::StoreError) -> ApiError {
    match e {
        domain::store::StoreError::NotFound => ApiError::not_found("no such webhook subscription"),
        other => other.into(),
    }
}

/// A new Standard Webhooks secret: `whsec_` and base64 of 32 random bytes.
fn new_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// Subscribe a URL to events.
///
/// Registers a URL that receives each change-feed event as a signed webhook, with retries.
/// Needs the admin role. The URL must pass the egress policy. The signing secret is shown in
/// this answer only.
#[utoipa::path(post, path = "/v1/webhook-subscriptions", tag = "events", security(("bearer" = ["admin"])),
    request_body = CreateSubscriptionRequest,
    responses((status = 201, description = "The subscription with its signing secret, shown this once", body = CreatedSubscriptionResponse),
        (status = 403, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn create_subscription(
    state: web::Data<AppState>,
    auth: Auth,
    body: JsonBody<CreateSubscriptionRequest>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Admin)?;
    let b = body.0;
    let mut v = ValidationError::default();
    let url = webhook_url(&mut v, &b.url);
    check_types(&mut v, &b.types);
    v.into_result()?;
    let url = url.expect("checked");
    state.check_egress("url", &url).await?;
    let secret = new_secret();
    let created = state
        .webhooks
        .create_subscription(
            &caller.dealer,
            NewWebhookSubscription {
                id: SubscriptionId(Uuid::now_v7()),
                url,
                types: b.types,
                secret: Secret::new(secret.clone()),
            },
        )
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/v1/webhook-subscriptions/{}", created.id),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::ETAG, etag(created.version)))
        .json(CreatedSubscriptionResponse {
            subscription: created.into(),
            secret,
        }))
}

/// List webhook subscriptions.
///
/// The webhook subscriptions of your dealer. Signing secrets are never shown.
#[utoipa::path(get, path = "/v1/webhook-subscriptions", tag = "events", security(("bearer" = ["viewer"])),
    params(PageParams),
    responses((status = 200, description = "A page of subscriptions", body = SubscriptionList)))]
pub async fn list_subscriptions(
    state: web::Data<AppState>,
    auth: Auth,
    page: Query<PageParams>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let found = state
        .webhooks
        .list_subscriptions(&caller.dealer, page.to_request()?)
        .await?;
    let (items, next_page_token) = page_parts(found);
    Ok(HttpResponse::Ok().json(SubscriptionList {
        items,
        next_page_token,
    }))
}

/// Read a webhook subscription.
///
/// One webhook subscription with its delivery state. The signing secret is never shown.
#[utoipa::path(get, path = "/v1/webhook-subscriptions/{subscription_id}", tag = "events", security(("bearer" = ["viewer"])),
    params(("subscription_id" = Uuid, Path)),
    responses((status = 200, description = "The subscription", body = SubscriptionResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn get_subscription(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Viewer)?;
    let s = state
        .webhooks
        .subscription(&caller.dealer, subscription_id(&path)?)
        .await
        .map_err(not_found)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(s.version)))
        .json(SubscriptionResponse::from(s)))
}

/// Change a webhook subscription.
///
/// Changes the URL or the event types of a subscription, or re-activates one that was disabled
/// after failing deliveries. Needs the admin role.
#[utoipa::path(patch, path = "/v1/webhook-subscriptions/{subscription_id}", tag = "events", security(("bearer" = ["admin"])),
    params(("subscription_id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    request_body = UpdateSubscriptionRequest,
    responses((status = 200, description = "The subscription as changed", body = SubscriptionResponse),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 412, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn update_subscription(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    path: web::Path<String>,
    body: JsonBody<UpdateSubscriptionRequest>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Admin)?;
    let id = subscription_id(&path)?;
    let b = body.0;
    let mut v = ValidationError::default();
    let url = b.url.as_deref().and_then(|u| webhook_url(&mut v, u));
    if let Some(t) = &b.types {
        check_types(&mut v, t);
    }
    v.into_result()?;
    if let Some(url) = &url {
        state.check_egress("url", url).await?;
    }
    let s = state
        .webhooks
        .update_subscription(
            &caller.dealer,
            id,
            SubscriptionChanges {
                url,
                types: b.types,
                status: b.status.map(|s| match s {
                    SubscriptionStatusDto::Active => SubscriptionStatus::Active,
                    SubscriptionStatusDto::Disabled => SubscriptionStatus::Disabled,
                }),
            },
            if_match(&req)?,
        )
        .await
        .map_err(not_found)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(s.version)))
        .json(SubscriptionResponse::from(s)))
}

/// Delete a webhook subscription.
///
/// Removes the subscription; no more deliveries go to its URL. Needs the admin role.
#[utoipa::path(delete, path = "/v1/webhook-subscriptions/{subscription_id}", tag = "events", security(("bearer" = ["admin"])),
    params(("subscription_id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn delete_subscription(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = auth.require(Role::Admin)?;
    state
        .webhooks
        .delete_subscription(&caller.dealer, subscription_id(&path)?)
        .await
        .map_err(not_found)?;
    Ok(HttpResponse::NoContent().finish())
}
