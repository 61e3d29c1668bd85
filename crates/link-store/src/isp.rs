//! `IspStore` on diesel: the ISP accounts of billing customers, reserved before
//! the provider is called and completed with its answer, and the log of
//! inbound provider callbacks (stored in the shared inbox, counted here for
//! their health report). Unique constraints keep one account per billing
//! customer and per provider customer on each connection.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use domain::adc::AdcPackageId;
use domain::billing::BillingId;
use domain::connection::ConnectionId;
use domain::events::NewEvent;
use domain::isp::{
    CallbackStats, CompletedIspAccount, IspAccount, IspAccountId, IspAccountKind, IspAccountOrigin,
    IspAccountState, IspStore, NewIspAccount,
};
use domain::store::{PageRequest, StoreError, StoreResult};
use domain::tenancy::DealerId;
use domain::Page;

use crate::audit::{parse_uuid, uuid_text};
use crate::connections::{corrupt, from_db_time, require_connection, to_db_time};
use crate::db::{conflict_on_unique, into_page, page_limit, per_backend, write_transaction, Fail};
use crate::events::insert_events;
use crate::schema::{callback_log, isp_accounts, webhook_inbox};
use crate::Store;

const PENDING: &str = "pending";
const ACTIVE: &str = "active";

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = isp_accounts, treat_none_as_default_value = false)]
struct IspAccountRow {
    id: String,
    dealer: String,
    connection_id: String,
    billing_customer_id: String,
    external_id: Option<String>,
    state: String,
    kind: String,
    origin: String,
    builder_program_id: Option<i64>,
    commitment_id: Option<i64>,
    package_id: Option<i64>,
    login_name: String,
    created_by: String,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl IspAccountRow {
    fn into_domain(self) -> Result<IspAccount, Fail> {
        let bad = |what: &str| corrupt(format!("ISP account {} has a bad {what}", self.id));
        Ok(IspAccount {
            id: IspAccountId(parse_uuid(&self.id, "ISP account")?),
            connection_id: ConnectionId(parse_uuid(&self.connection_id, "connection")?),
            billing_customer_id: BillingId::parse(&self.billing_customer_id)
                .map_err(|_| bad("billing customer id"))?,
            state: IspAccountState::parse(&self.state).ok_or_else(|| bad("state"))?,
            kind: IspAccountKind::parse(&self.kind).ok_or_else(|| bad("kind"))?,
            origin: IspAccountOrigin::parse(&self.origin).ok_or_else(|| bad("origin"))?,
            dealer: DealerId(self.dealer),
            external_id: self.external_id,
            builder_program_id: self.builder_program_id,
            commitment_id: self.commitment_id,
            package_id: self.package_id.map(AdcPackageId),
            login_name: self.login_name,
            created_by: self.created_by,
            version: self.version,
            created_at: from_db_time(self.created_at),
            updated_at: from_db_time(self.updated_at),
        })
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = callback_log, treat_none_as_default_value = false)]
struct CallbackLogRow {
    id: String,
    dealer: String,
    connection_id: String,
    source: String,
    outcome: String,
    event_id: Option<String>,
    reason: Option<String>,
    received_at: NaiveDateTime,
}

impl CallbackLogRow {
    fn new(
        dealer: &str,
        connection_id: &str,
        source: &str,
        outcome: &str,
        event_id: Option<&str>,
        reason: Option<&str>,
    ) -> Self {
        Self {
            id: uuid_text(uuid::Uuid::now_v7()),
            dealer: dealer.to_owned(),
            connection_id: connection_id.to_owned(),
            source: source.to_owned(),
            outcome: outcome.to_owned(),
            event_id: event_id.map(str::to_owned),
            reason: reason.map(|r| r.chars().take(500).collect()),
            received_at: to_db_time(Utc::now()),
        }
    }
}

/// Writes one log row. The health report looks back a day; older rows go
/// with the retention purge (`retention.callback_log_days`, B15).
fn log_callback(conn: &mut crate::db::DbConnection, row: &CallbackLogRow) -> Result<(), Fail> {
    diesel::insert_into(callback_log::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

#[derive(Debug, Insertable)]
#[diesel(table_name = webhook_inbox, treat_none_as_default_value = false)]
struct InboxRow {
    connection_id: String,
    dealer: String,
    event_id: String,
    payload: String,
    received_at: NaiveDateTime,
    outcome: Option<String>,
    processed_at: Option<NaiveDateTime>,
}

fn describe(row: &IspAccountRow) -> String {
    match (&row.state[..], &row.external_id) {
        (ACTIVE, Some(external)) => format!(
            "billing customer '{}' already has an ISP account on this connection (provider customer {external}, account {})",
            row.billing_customer_id, row.id
        ),
        _ => format!(
            "an ISP account for billing customer '{}' is being provisioned on this connection; try again shortly",
            row.billing_customer_id
        ),
    }
}

fn find_account(
    conn: &mut crate::db::DbConnection,
    dealer: &str,
    id: &str,
) -> Result<IspAccountRow, Fail> {
    Ok(isp_accounts::table
        .filter(isp_accounts::dealer.eq(dealer))
        .filter(isp_accounts::id.eq(id))
        .select(IspAccountRow::as_select())
        .first(conn)?)
}

/// Records the ISP account links an import found missing (matched before
/// create), as active accounts, in the caller's transaction. A billing
/// customer or provider customer that has an account on the connection
/// (also one of an earlier entry of `links`) keeps it: nothing is replaced.
/// Returns how many were recorded.
pub(crate) fn record_found_accounts(
    conn: &mut crate::db::DbConnection,
    dealer: &str,
    connection_id: &str,
    links: Vec<(String, CompletedIspAccount)>,
    created_by: &str,
    now: NaiveDateTime,
) -> Result<usize, Fail> {
    let mut recorded = 0;
    for (billing_customer_id, done) in links {
        let taken: i64 = isp_accounts::table
            .filter(isp_accounts::connection_id.eq(connection_id))
            .filter(
                isp_accounts::billing_customer_id
                    .eq(&billing_customer_id)
                    .or(isp_accounts::external_id.eq(&done.external_id)),
            )
            .count()
            .get_result(conn)?;
        if taken > 0 {
            continue;
        }
        let row = IspAccountRow {
            id: uuid_text(IspAccountId::new().0),
            dealer: dealer.to_owned(),
            connection_id: connection_id.to_owned(),
            billing_customer_id,
            external_id: Some(done.external_id),
            state: ACTIVE.to_owned(),
            kind: done.kind.as_str().to_owned(),
            origin: done.origin.as_str().to_owned(),
            builder_program_id: done.builder_program_id,
            commitment_id: done.commitment_id,
            package_id: done.package_id.map(|p| p.0),
            login_name: done.login_name,
            created_by: created_by.to_owned(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        conflict_on_unique(
            diesel::insert_into(isp_accounts::table)
                .values(&row)
                .execute(conn),
            || describe(&row),
        )?;
        recorded += 1;
    }
    Ok(recorded)
}

#[async_trait]
impl IspStore for Store {
    async fn reserve_isp_account(
        &self,
        dealer: &DealerId,
        new: NewIspAccount,
        stale_before: DateTime<Utc>,
    ) -> StoreResult<IspAccount> {
        let now = to_db_time(Utc::now());
        let stale_before = to_db_time(stale_before);
        let row = IspAccountRow {
            id: uuid_text(new.id.0),
            dealer: dealer.0.clone(),
            connection_id: uuid_text(new.connection_id.0),
            billing_customer_id: new.billing_customer_id.as_str().to_owned(),
            external_id: None,
            state: PENDING.to_owned(),
            kind: new.kind.as_str().to_owned(),
            origin: new.origin.as_str().to_owned(),
            builder_program_id: new.builder_program_id,
            commitment_id: None,
            package_id: None,
            login_name: String::new(),
            created_by: new.created_by,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                require_connection(conn, &row.dealer, &row.connection_id)?;
                let existing = isp_accounts::table
                    .filter(isp_accounts::connection_id.eq(&row.connection_id))
                    .filter(isp_accounts::billing_customer_id.eq(&row.billing_customer_id))
                    .select(IspAccountRow::as_select())
                    .first(conn)
                    .optional()?;
                if let Some(existing) = existing {
                    if existing.state == PENDING && existing.updated_at < stale_before {
                        // The request that reserved it died: take its place.
                        diesel::update(
                            isp_accounts::table.filter(isp_accounts::id.eq(&existing.id)),
                        )
                        .set((
                            isp_accounts::kind.eq(&row.kind),
                            isp_accounts::origin.eq(&row.origin),
                            isp_accounts::builder_program_id.eq(row.builder_program_id),
                            isp_accounts::created_by.eq(&row.created_by),
                            isp_accounts::updated_at.eq(now),
                        ))
                        .execute(conn)?;
                        return find_account(conn, &row.dealer, &existing.id)?.into_domain();
                    }
                    return Err(Fail::Store(StoreError::Conflict(describe(&existing))));
                }
                conflict_on_unique(
                    diesel::insert_into(isp_accounts::table)
                        .values(&row)
                        .execute(conn),
                    || describe(&row),
                )?;
                row.clone().into_domain()
            })
        })
        .await
    }

    async fn complete_isp_account(
        &self,
        dealer: &DealerId,
        id: IspAccountId,
        done: CompletedIspAccount,
    ) -> StoreResult<IspAccount> {
        let dealer = dealer.0.clone();
        let id = uuid_text(id.0);
        let now = to_db_time(Utc::now());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                let mine = find_account(conn, &dealer, &id)?;
                if mine.state != PENDING {
                    return Err(Fail::Store(StoreError::Conflict(describe(&mine))));
                }
                let taken = isp_accounts::table
                    .filter(isp_accounts::connection_id.eq(&mine.connection_id))
                    .filter(isp_accounts::external_id.eq(&done.external_id))
                    .select(isp_accounts::billing_customer_id)
                    .first::<String>(conn)
                    .optional()?;
                if let Some(other) = taken {
                    return Err(Fail::Store(StoreError::Conflict(format!(
                        "provider customer {} is already linked to billing customer '{other}' on this connection",
                        done.external_id
                    ))));
                }
                let updated = conflict_on_unique(
                    diesel::update(
                        isp_accounts::table
                            .filter(isp_accounts::id.eq(&id))
                            .filter(isp_accounts::state.eq(PENDING)),
                    )
                    .set((
                        isp_accounts::external_id.eq(Some(&done.external_id)),
                        isp_accounts::state.eq(ACTIVE),
                        isp_accounts::kind.eq(done.kind.as_str()),
                        isp_accounts::origin.eq(done.origin.as_str()),
                        isp_accounts::builder_program_id.eq(done.builder_program_id),
                        isp_accounts::commitment_id.eq(done.commitment_id),
                        isp_accounts::package_id.eq(done.package_id.map(|p| p.0)),
                        isp_accounts::login_name.eq(&done.login_name),
                        isp_accounts::version.eq(isp_accounts::version + 1),
                        isp_accounts::updated_at.eq(now),
                    ))
                    .execute(conn),
                    || {
                        format!(
                            "provider customer {} is already linked on this connection",
                            done.external_id
                        )
                    },
                )?;
                if updated == 0 {
                    return Err(Fail::Store(StoreError::NotFound));
                }
                find_account(conn, &dealer, &id)?.into_domain()
            })
        })
        .await
    }

    async fn release_isp_account(&self, dealer: &DealerId, id: IspAccountId) -> StoreResult<()> {
        let dealer = dealer.0.clone();
        let id = uuid_text(id.0);
        self.run(move |conn, _| {
            diesel::delete(
                isp_accounts::table
                    .filter(isp_accounts::dealer.eq(&dealer))
                    .filter(isp_accounts::id.eq(&id))
                    .filter(isp_accounts::state.eq(PENDING)),
            )
            .execute(conn)?;
            Ok(())
        })
        .await
    }

    async fn isp_account(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        id: IspAccountId,
    ) -> StoreResult<IspAccount> {
        let dealer = dealer.0.clone();
        let connection = uuid_text(connection_id.0);
        let id = uuid_text(id.0);
        self.run(move |conn, _| {
            isp_accounts::table
                .filter(isp_accounts::dealer.eq(&dealer))
                .filter(isp_accounts::connection_id.eq(&connection))
                .filter(isp_accounts::id.eq(&id))
                .select(IspAccountRow::as_select())
                .first(conn)?
                .into_domain()
        })
        .await
    }

    async fn list_isp_accounts(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        billing_customer_id: Option<&BillingId>,
        page: PageRequest,
    ) -> StoreResult<Page<IspAccount>> {
        let dealer = dealer.0.clone();
        let connection = uuid_text(connection_id.0);
        let billing = billing_customer_id.map(|b| b.as_str().to_owned());
        let limit = page_limit(&page);
        self.run(move |conn, _| {
            require_connection(conn, &dealer, &connection)?;
            let mut query = isp_accounts::table
                .filter(isp_accounts::dealer.eq(&dealer))
                .filter(isp_accounts::connection_id.eq(&connection))
                .select(IspAccountRow::as_select())
                .order(isp_accounts::id.asc())
                .limit(limit as i64 + 1)
                .into_boxed();
            if let Some(billing) = billing {
                query = query.filter(isp_accounts::billing_customer_id.eq(billing));
            }
            if let Some(after) = page.after {
                query = query.filter(isp_accounts::id.gt(after));
            }
            let rows: Vec<IspAccountRow> = query.load(conn)?;
            into_page(rows, limit, |r| r.id.clone(), IspAccountRow::into_domain)
        })
        .await
    }

    async fn isp_account_by_external(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        external_id: &str,
    ) -> StoreResult<Option<IspAccount>> {
        let dealer = dealer.0.clone();
        let connection = uuid_text(connection_id.0);
        let external = external_id.to_owned();
        self.run(move |conn, _| {
            isp_accounts::table
                .filter(isp_accounts::dealer.eq(&dealer))
                .filter(isp_accounts::connection_id.eq(&connection))
                .filter(isp_accounts::external_id.eq(&external))
                .filter(isp_accounts::state.eq(ACTIVE))
                .select(IspAccountRow::as_select())
                .first(conn)
                .optional()?
                .map(IspAccountRow::into_domain)
                .transpose()
        })
        .await
    }

    async fn set_isp_account_plan(
        &self,
        dealer: &DealerId,
        id: IspAccountId,
        package_id: AdcPackageId,
        expected_version: Option<i64>,
    ) -> StoreResult<IspAccount> {
        let dealer = dealer.0.clone();
        let id = uuid_text(id.0);
        let now = to_db_time(Utc::now());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                let target = isp_accounts::table
                    .filter(isp_accounts::dealer.eq(&dealer))
                    .filter(isp_accounts::id.eq(&id))
                    .filter(isp_accounts::state.eq(ACTIVE));
                let set = (
                    isp_accounts::package_id.eq(Some(package_id.0)),
                    isp_accounts::version.eq(isp_accounts::version + 1),
                    isp_accounts::updated_at.eq(now),
                );
                let updated = match expected_version {
                    Some(v) => diesel::update(target.filter(isp_accounts::version.eq(v)))
                        .set(set)
                        .execute(conn)?,
                    None => diesel::update(target).set(set).execute(conn)?,
                };
                if updated == 0 {
                    // Missing, or there but changed since it was read.
                    find_account(conn, &dealer, &id)?;
                    return Err(Fail::Store(StoreError::VersionMismatch));
                }
                find_account(conn, &dealer, &id)?.into_domain()
            })
        })
        .await
    }

    async fn receive_provider_callback(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        source: &str,
        event_id: &str,
        payload: serde_json::Value,
        events: Vec<NewEvent>,
    ) -> StoreResult<bool> {
        let now = to_db_time(Utc::now());
        let row = InboxRow {
            connection_id: uuid_text(connection_id.0),
            dealer: dealer.0.clone(),
            event_id: event_id.to_owned(),
            payload: payload.to_string(),
            received_at: now,
            outcome: Some(format!("stored:{source}")),
            processed_at: Some(now),
        };
        let source = source.to_owned();
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                require_connection(conn, &row.dealer, &row.connection_id)?;
                // A concurrent delivery of the same event waits here for the
                // first to commit, then inserts nothing.
                let inserted =
                    per_backend!(&mut *conn, |c| diesel::insert_into(webhook_inbox::table)
                        .values(&row)
                        .on_conflict_do_nothing()
                        .execute(c))?;
                if inserted > 0 {
                    insert_events(conn, &row.dealer, events)?;
                }
                let outcome = if inserted > 0 {
                    "accepted"
                } else {
                    "duplicate"
                };
                log_callback(
                    conn,
                    &CallbackLogRow::new(
                        &row.dealer,
                        &row.connection_id,
                        &source,
                        outcome,
                        Some(&row.event_id),
                        None,
                    ),
                )?;
                Ok::<_, Fail>(inserted > 0)
            })
        })
        .await
    }

    async fn record_rejected_callback(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        source: &str,
        reason: &str,
    ) -> StoreResult<()> {
        let row = CallbackLogRow::new(
            &dealer.0,
            &uuid_text(connection_id.0),
            source,
            "rejected",
            None,
            Some(reason),
        );
        self.run(move |conn, _| {
            require_connection(conn, &row.dealer, &row.connection_id)?;
            log_callback(conn, &row)
        })
        .await
    }

    async fn callback_stats(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        source: &str,
        since: DateTime<Utc>,
    ) -> StoreResult<CallbackStats> {
        let dealer = dealer.0.clone();
        let connection = uuid_text(connection_id.0);
        let source = source.to_owned();
        let since = to_db_time(since);
        self.run(move |conn, _| {
            require_connection(conn, &dealer, &connection)?;
            macro_rules! of_source {
                () => {
                    callback_log::table
                        .filter(callback_log::dealer.eq(&dealer))
                        .filter(callback_log::connection_id.eq(&connection))
                        .filter(callback_log::source.eq(&source))
                };
            }
            let count = |conn: &mut crate::db::DbConnection, outcome: &str| -> Result<u64, Fail> {
                let n: i64 = of_source!()
                    .filter(callback_log::outcome.eq(outcome))
                    .filter(callback_log::received_at.ge(since))
                    .count()
                    .get_result(conn)?;
                Ok(u64::try_from(n).unwrap_or(0))
            };
            let accepted = count(conn, "accepted")?;
            let duplicates = count(conn, "duplicate")?;
            let rejected = count(conn, "rejected")?;
            let last_received_at: Option<NaiveDateTime> = of_source!()
                .filter(callback_log::outcome.ne("rejected"))
                .select(diesel::dsl::max(callback_log::received_at))
                .first(conn)?;
            let last_rejected: Option<(NaiveDateTime, Option<String>)> = of_source!()
                .filter(callback_log::outcome.eq("rejected"))
                .order((callback_log::received_at.desc(), callback_log::id.desc()))
                .select((callback_log::received_at, callback_log::reason))
                .first(conn)
                .optional()?;
            Ok(CallbackStats {
                accepted,
                duplicates,
                rejected,
                last_received_at: last_received_at.map(from_db_time),
                last_rejected_at: last_rejected.as_ref().map(|(at, _)| from_db_time(*at)),
                last_rejection_reason: last_rejected.and_then(|(_, reason)| reason),
            })
        })
        .await
    }
}
