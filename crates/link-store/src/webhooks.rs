//! `WebhookStore` on diesel: where a dealer's events are delivered. The signing
//! secret is sealed like the upstream credentials, bound to its row, and read
//! only by the deliverer; the feed's writers read the active subscriptions
//! here to enqueue one delivery per subscription that wants an event.

use async_trait::async_trait;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use domain::events::{
    NewWebhookSubscription, SubscriptionChanges, SubscriptionId, SubscriptionStatus,
    WebhookSubscription,
};
use domain::store::{PageRequest, StoreError, StoreResult, WebhookStore};
use domain::tenancy::DealerId;
use domain::{Page, Secret};

use crate::audit::{parse_uuid, uuid_text};
use crate::connections::{corrupt, from_db_time, open_secret, to_db_time};
use crate::db::{conflict_on_unique, into_page, page_limit, write_transaction, DbConnection, Fail};
use crate::schema::webhook_subscriptions as subs;
use crate::Store;

/// A subscription as read: everything but the secret, which only
/// `subscription_secret` opens.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = subs)]
struct SubscriptionRow {
    id: String,
    dealer: String,
    url: String,
    types: String,
    status: String,
    disabled_reason: Option<String>,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = subs, treat_none_as_default_value = false)]
struct NewSubscriptionRow {
    id: String,
    dealer: String,
    url: String,
    types: String,
    secret: Vec<u8>,
    status: String,
    disabled_reason: Option<String>,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = subs)]
struct SubscriptionChangeset {
    url: Option<String>,
    types: Option<String>,
    status: Option<String>,
    /// `Some(None)` clears the reason.
    disabled_reason: Option<Option<String>>,
}

fn status_text(status: SubscriptionStatus) -> &'static str {
    match status {
        SubscriptionStatus::Active => "active",
        SubscriptionStatus::Disabled => "disabled",
    }
}

fn parse_status(raw: &str) -> Option<SubscriptionStatus> {
    match raw {
        "active" => Some(SubscriptionStatus::Active),
        "disabled" => Some(SubscriptionStatus::Disabled),
        _ => None,
    }
}

fn types_text(types: &[String]) -> String {
    serde_json::to_string(types).expect("a list of strings is JSON")
}

/// Associated data binding a sealed signing secret to its row.
fn secret_aad(id: &str, dealer: &str) -> String {
    format!("webhook_subscriptions|{id}|{dealer}")
}

impl SubscriptionRow {
    fn into_domain(self) -> Result<WebhookSubscription, Fail> {
        let bad =
            |what: &str| corrupt(format!("webhook subscription {} has a bad {what}", self.id));
        Ok(WebhookSubscription {
            id: SubscriptionId(parse_uuid(&self.id, "webhook subscription")?),
            url: self.url.parse().map_err(|_| bad("url"))?,
            types: serde_json::from_str(&self.types).map_err(|_| bad("list of types"))?,
            status: parse_status(&self.status).ok_or_else(|| bad("status"))?,
            dealer: DealerId(self.dealer),
            disabled_reason: self.disabled_reason,
            version: self.version,
            created_at: from_db_time(self.created_at),
            updated_at: from_db_time(self.updated_at),
        })
    }
}

fn find_subscription(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
) -> QueryResult<Option<SubscriptionRow>> {
    subs::table
        .filter(subs::dealer.eq(dealer))
        .filter(subs::id.eq(id))
        .select(SubscriptionRow::as_select())
        .first(conn)
        .optional()
}

fn require_subscription(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
) -> Result<SubscriptionRow, Fail> {
    find_subscription(conn, dealer, id)?.ok_or_else(|| StoreError::NotFound.into())
}

/// The dealer's active subscriptions, for the writers of the feed: each event
/// is delivered to those that want it (`WebhookSubscription::wants`).
pub(crate) fn active_subscriptions(
    conn: &mut DbConnection,
    dealer: &str,
) -> Result<Vec<WebhookSubscription>, Fail> {
    let rows: Vec<SubscriptionRow> = subs::table
        .filter(subs::dealer.eq(dealer))
        .filter(subs::status.eq(status_text(SubscriptionStatus::Active)))
        .select(SubscriptionRow::as_select())
        .order(subs::id.asc())
        .load(conn)?;
    rows.into_iter().map(SubscriptionRow::into_domain).collect()
}

fn update_blocking(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
    changes: SubscriptionChanges,
    expected_version: Option<i64>,
) -> Result<SubscriptionRow, Fail> {
    let current = require_subscription(conn, dealer, id)?;
    if expected_version.is_some_and(|v| v != current.version) {
        return Err(StoreError::VersionMismatch.into());
    }
    if changes == SubscriptionChanges::default() {
        // Nothing to write: the version stays.
        return Ok(current);
    }
    let set = (
        SubscriptionChangeset {
            url: changes.url.map(|u| u.to_string()),
            types: changes.types.as_deref().map(types_text),
            status: changes.status.map(|s| status_text(s).to_owned()),
            // Turned back on: the reason it was off no longer holds.
            disabled_reason: (changes.status == Some(SubscriptionStatus::Active)).then_some(None),
        },
        subs::version.eq(current.version + 1),
        subs::updated_at.eq(to_db_time(Utc::now())),
    );
    // The version read must still be current: PostgreSQL locks the row only as it writes.
    let updated = diesel::update(
        subs::table
            .filter(subs::id.eq(id))
            .filter(subs::version.eq(current.version)),
    )
    .set(set)
    .execute(conn)?;
    if updated == 0 {
        return Err(match find_subscription(conn, dealer, id)? {
            Some(_) => StoreError::VersionMismatch,
            None => StoreError::NotFound,
        }
        .into());
    }
    require_subscription(conn, dealer, id)
}

#[async_trait]
impl WebhookStore for Store {
    async fn create_subscription(
        &self,
        dealer: &DealerId,
        new: NewWebhookSubscription,
    ) -> StoreResult<WebhookSubscription> {
        let dealer = dealer.0.clone();
        let now = to_db_time(Utc::now());
        self.run(move |conn, cipher| {
            let id = uuid_text(new.id.0);
            let row = NewSubscriptionRow {
                secret: cipher.seal(&secret_aad(&id, &dealer), new.secret.expose().as_bytes()),
                id,
                dealer,
                url: new.url.to_string(),
                types: types_text(&new.types),
                status: status_text(SubscriptionStatus::Active).to_owned(),
                disabled_reason: None,
                version: 1,
                created_at: now,
                updated_at: now,
            };
            conflict_on_unique(
                diesel::insert_into(subs::table).values(&row).execute(conn),
                || format!("webhook subscription {} already exists", row.id),
            )?;
            require_subscription(conn, &row.dealer, &row.id)?.into_domain()
        })
        .await
    }

    async fn subscription(
        &self,
        dealer: &DealerId,
        id: SubscriptionId,
    ) -> StoreResult<WebhookSubscription> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            require_subscription(conn, &dealer, &uuid_text(id.0))?.into_domain()
        })
        .await
    }

    /// Ordered by id (creation order).
    async fn list_subscriptions(
        &self,
        dealer: &DealerId,
        page: PageRequest,
    ) -> StoreResult<Page<WebhookSubscription>> {
        let dealer = dealer.0.clone();
        let limit = page_limit(&page);
        self.run(move |conn, _| {
            let mut query = subs::table
                .filter(subs::dealer.eq(dealer))
                .select(SubscriptionRow::as_select())
                .order(subs::id.asc())
                .limit(limit as i64 + 1)
                .into_boxed();
            if let Some(after) = page.after {
                query = query.filter(subs::id.gt(after));
            }
            let rows: Vec<SubscriptionRow> = query.load(conn)?;
            into_page(rows, limit, |r| r.id.clone(), SubscriptionRow::into_domain)
        })
        .await
    }

    /// Turning a subscription back on clears its `disabled_reason`; changes
    /// that change nothing keep the version (still checked).
    async fn update_subscription(
        &self,
        dealer: &DealerId,
        id: SubscriptionId,
        changes: SubscriptionChanges,
        expected_version: Option<i64>,
    ) -> StoreResult<WebhookSubscription> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                update_blocking(conn, &dealer, &uuid_text(id.0), changes, expected_version)
            })?
            .into_domain()
        })
        .await
    }

    /// Its queued deliveries stay queued and fail for good when they run
    /// (the deliverer finds no subscription).
    async fn delete_subscription(&self, dealer: &DealerId, id: SubscriptionId) -> StoreResult<()> {
        let dealer = dealer.0.clone();
        self.run(move |conn, _| {
            let deleted = diesel::delete(
                subs::table
                    .filter(subs::dealer.eq(&dealer))
                    .filter(subs::id.eq(uuid_text(id.0))),
            )
            .execute(conn)?;
            if deleted == 0 {
                return Err(StoreError::NotFound.into());
            }
            Ok(())
        })
        .await
    }

    async fn subscription_secret(
        &self,
        dealer: &DealerId,
        id: SubscriptionId,
    ) -> StoreResult<Secret> {
        let dealer = dealer.0.clone();
        self.run(move |conn, cipher| {
            let id = uuid_text(id.0);
            let blob: Vec<u8> = subs::table
                .filter(subs::dealer.eq(&dealer))
                .filter(subs::id.eq(&id))
                .select(subs::secret)
                .first(conn)?;
            open_secret(cipher, &secret_aad(&id, &dealer), &blob)
        })
        .await
    }

    /// Bumps the version like any change, so the owner's next If-Match
    /// notices that the service turned it off.
    async fn disable_subscription(
        &self,
        dealer: &DealerId,
        id: SubscriptionId,
        reason: &str,
    ) -> StoreResult<()> {
        let dealer = dealer.0.clone();
        let reason = reason.to_owned();
        let now = to_db_time(Utc::now());
        self.run(move |conn, _| {
            let updated = diesel::update(
                subs::table
                    .filter(subs::dealer.eq(&dealer))
                    .filter(subs::id.eq(uuid_text(id.0))),
            )
            .set((
                subs::status.eq(status_text(SubscriptionStatus::Disabled)),
                subs::disabled_reason.eq(Some(reason)),
                subs::version.eq(subs::version + 1),
                subs::updated_at.eq(now),
            ))
            .execute(conn)?;
            if updated == 0 {
                return Err(StoreError::NotFound.into());
            }
            Ok(())
        })
        .await
    }
}
