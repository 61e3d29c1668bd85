//! `BillingStore` on diesel: the billing system's customers, sites, systems and
//! users, one row per (dealer, id). The four kinds share one upsert and one
//! delete, written once over `BillingRow`; only their columns and checks differ.
//! A change of a linked site or system enqueues its Auto Sync pushes in the
//! same transaction (outbox), and a change the service makes itself
//! (`write_billing`) writes its events there too.

use async_trait::async_trait;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use domain::audit::NewAuditEntry;
use domain::billing::{
    BillingCustomer, BillingId, BillingRecord, BillingSite, BillingSystem, BillingUser,
    BillingWrite, BillingWritten, CustomerFields, CustomerKind, SiteFields, SystemFields, Upserted,
    UserFields,
};
use domain::connection::{ConnectionId, ConnectionStatus};
use domain::events::NewEvent;
use domain::link::{Link, LinkId, LinkKind};
use domain::store::{BillingStore, PageRequest, StoreError, StoreResult};
use domain::syncing_jobs::{AutoSyncPush, StagesRecord};
use domain::tenancy::DealerId;
use domain::Page;

use crate::audit::{insert_audit, parse_uuid, uuid_text};
use crate::connections::{corrupt, from_db_time, to_db_time};
use crate::db::{
    conflict_on_foreign_key, in_given_order, into_page, page_limit, per_backend, write_transaction,
    DbConnection, Fail, IN_CHUNK,
};
use crate::events::insert_events;
use crate::jobs::enqueue_within;
use crate::links::links_of_record;
use crate::schema::{
    billing_customers, billing_sites, billing_systems, billing_users, connections, links,
};
use crate::Store;

/// How often a write goes round when another writer changed the row between
/// its read and its write (PostgreSQL; on SQLite the write lock is held throughout).
const WRITE_ATTEMPTS: usize = 4;

/// A refusal names at most this many dependants.
const NAMED_DEPENDANTS: i64 = 5;

/// What the shared upsert and delete need of a billing table's row.
trait BillingRow: Sized {
    type Fields: PartialEq;
    /// The kind as messages name it: "billing customer".
    const WHAT: &'static str;

    fn build(
        dealer: &str,
        id: &str,
        fields: &Self::Fields,
        version: i64,
        created_at: NaiveDateTime,
        updated_at: NaiveDateTime,
    ) -> Self;
    fn into_record(self) -> Result<BillingRecord<Self::Fields>, Fail>;
    fn version(&self) -> i64;
    fn created_at(&self) -> NaiveDateTime;
    fn find(conn: &mut DbConnection, dealer: &str, id: &str) -> QueryResult<Option<Self>>;
    /// Inserts the row unless one with its key exists (then 0).
    fn insert_new(&self, conn: &mut DbConnection) -> QueryResult<usize>;
    /// Overwrites the stored row while its version is still `old_version` (else 0).
    fn update_from(&self, conn: &mut DbConnection, old_version: i64) -> QueryResult<usize>;
    /// Deletes the row while its version is still `version` (else 0).
    fn delete_at(
        conn: &mut DbConnection,
        dealer: &str,
        id: &str,
        version: i64,
    ) -> QueryResult<usize>;
}

/// The queries of `BillingRow`, the same for every table but its name.
macro_rules! billing_row_queries {
    ($table:ident) => {
        fn version(&self) -> i64 {
            self.version
        }

        fn created_at(&self) -> NaiveDateTime {
            self.created_at
        }

        fn find(conn: &mut DbConnection, dealer: &str, id: &str) -> QueryResult<Option<Self>> {
            $table::table
                .filter($table::dealer.eq(dealer))
                .filter($table::id.eq(id))
                .select(Self::as_select())
                .first(conn)
                .optional()
        }

        fn insert_new(&self, conn: &mut DbConnection) -> QueryResult<usize> {
            per_backend!(conn, |c| diesel::insert_into($table::table)
                .values(self)
                .on_conflict_do_nothing()
                .execute(c))
        }

        fn update_from(&self, conn: &mut DbConnection, old_version: i64) -> QueryResult<usize> {
            diesel::update(
                $table::table
                    .filter($table::dealer.eq(&self.dealer))
                    .filter($table::id.eq(&self.id))
                    .filter($table::version.eq(old_version)),
            )
            .set(self)
            .execute(conn)
        }

        fn delete_at(
            conn: &mut DbConnection,
            dealer: &str,
            id: &str,
            version: i64,
        ) -> QueryResult<usize> {
            diesel::delete(
                $table::table
                    .filter($table::dealer.eq(dealer))
                    .filter($table::id.eq(id))
                    .filter($table::version.eq(version)),
            )
            .execute(conn)
        }
    };
}

#[derive(Debug, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = billing_customers, primary_key(dealer, id), treat_none_as_null = true)]
struct CustomerRow {
    dealer: String,
    id: String,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    kind: String,
    first_name: String,
    last_name: String,
    business_name: String,
    phone: String,
    email: String,
    address1: String,
    address2: String,
    city: String,
    state: String,
    zip: String,
    phone_digits: String,
    search_text: String,
    office_location: String,
    tags: String,
    rep_id: Option<String>,
    sale_date: Option<String>,
    two_way_voice: bool,
    account_number: String,
    receiver_number: String,
}

#[derive(Debug, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = billing_sites, primary_key(dealer, id), treat_none_as_null = true)]
struct SiteRow {
    dealer: String,
    id: String,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    customer_id: Option<String>,
    name: String,
    address1: String,
    address2: String,
    city: String,
    state: String,
    zip: String,
    phone: String,
    info: String,
}

#[derive(Debug, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = billing_systems, primary_key(dealer, id))]
struct SystemRow {
    dealer: String,
    id: String,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    site_id: String,
    system_number: String,
    panel_type: String,
    location: String,
    info: String,
}

#[derive(Debug, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = billing_users, primary_key(dealer, id))]
struct UserRow {
    dealer: String,
    id: String,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    first_name: String,
    last_name: String,
    email: String,
    phone: String,
    login_name: String,
    active: bool,
    can_login: bool,
    permission_group: String,
    tags: String,
    address1: String,
    address2: String,
    city: String,
    state: String,
    zip: String,
    user_field: String,
}

fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).expect("a list of strings is JSON")
}

fn stored_id(raw: &str, what: &str) -> Result<BillingId, Fail> {
    BillingId::parse(raw).map_err(|_| corrupt(format!("{what} id '{raw}'")))
}

/// A stored row's common columns as the domain's record around `fields`.
fn record<F>(
    what: &str,
    dealer: String,
    id: &str,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    fields: F,
) -> Result<BillingRecord<F>, Fail> {
    Ok(BillingRecord {
        id: stored_id(id, what)?,
        dealer: DealerId(dealer),
        version,
        created_at: from_db_time(created_at),
        updated_at: from_db_time(updated_at),
        fields,
    })
}

fn customer_kind_text(kind: CustomerKind) -> &'static str {
    match kind {
        CustomerKind::Person => "person",
        CustomerKind::Business => "business",
    }
}

fn parse_customer_kind(s: &str) -> Option<CustomerKind> {
    match s {
        "person" => Some(CustomerKind::Person),
        "business" => Some(CustomerKind::Business),
        _ => None,
    }
}

/// Lowercased, with runs of white space as one space: how both the stored
/// search text and a query are compared. Rust's lowercase folds all of Unicode,
/// where SQLite's `lower()` folds ASCII only.
fn fold(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// The searchable fields, one per line so a query never matches across two.
fn search_text(f: &CustomerFields) -> String {
    let name = format!("{} {}", f.first_name, f.last_name);
    let address = [&f.address1, &f.address2, &f.city, &f.state, &f.zip]
        .map(|s| s.as_str())
        .join(" ");
    [
        name.as_str(),
        f.business_name.as_str(),
        f.email.as_str(),
        f.phone.as_str(),
        address.as_str(),
    ]
    .map(fold)
    .join("\n")
}

/// A query that looks like (part of) a phone number, as its digits: only
/// digits and the punctuation of phone numbers, and at least one digit. "12
/// Main St" is not one, so its "12" does not match every phone with a 12.
fn phone_query_digits(q: &str) -> Option<String> {
    let phone_like = q
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    let d = digits(q);
    (phone_like && !d.is_empty()).then_some(d)
}

/// `%text%` for LIKE with `\` as the escape character.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl BillingRow for CustomerRow {
    type Fields = CustomerFields;
    const WHAT: &'static str = "billing customer";

    fn build(
        dealer: &str,
        id: &str,
        f: &CustomerFields,
        version: i64,
        created_at: NaiveDateTime,
        updated_at: NaiveDateTime,
    ) -> Self {
        Self {
            dealer: dealer.to_owned(),
            id: id.to_owned(),
            version,
            created_at,
            updated_at,
            kind: customer_kind_text(f.kind).to_owned(),
            first_name: f.first_name.clone(),
            last_name: f.last_name.clone(),
            business_name: f.business_name.clone(),
            phone: f.phone.clone(),
            email: f.email.clone(),
            address1: f.address1.clone(),
            address2: f.address2.clone(),
            city: f.city.clone(),
            state: f.state.clone(),
            zip: f.zip.clone(),
            phone_digits: digits(&f.phone),
            search_text: search_text(f),
            office_location: f.office_location.clone(),
            tags: tags_json(&f.tags),
            rep_id: f.rep_id.as_ref().map(|r| r.as_str().to_owned()),
            sale_date: f.sale_date.map(|d| d.format("%Y-%m-%d").to_string()),
            two_way_voice: f.two_way_voice,
            account_number: f.account_number.clone(),
            receiver_number: f.receiver_number.clone(),
        }
    }

    fn into_record(self) -> Result<BillingCustomer, Fail> {
        let kind = parse_customer_kind(&self.kind)
            .ok_or_else(|| corrupt(format!("billing customer {} has a bad kind", self.id)))?;
        let tags = serde_json::from_str(&self.tags)
            .map_err(|_| corrupt(format!("billing customer {} has bad tags", self.id)))?;
        let rep_id = self
            .rep_id
            .as_deref()
            .map(|r| stored_id(r, "billing user"))
            .transpose()?;
        let sale_date = self
            .sale_date
            .as_deref()
            .map(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d"))
            .transpose()
            .map_err(|_| corrupt(format!("billing customer {} has a bad sale date", self.id)))?;
        let fields = CustomerFields {
            kind,
            first_name: self.first_name,
            last_name: self.last_name,
            business_name: self.business_name,
            phone: self.phone,
            email: self.email,
            address1: self.address1,
            address2: self.address2,
            city: self.city,
            state: self.state,
            zip: self.zip,
            office_location: self.office_location,
            tags,
            rep_id,
            sale_date,
            two_way_voice: self.two_way_voice,
            account_number: self.account_number,
            receiver_number: self.receiver_number,
        };
        record(
            Self::WHAT,
            self.dealer,
            &self.id,
            self.version,
            self.created_at,
            self.updated_at,
            fields,
        )
    }

    billing_row_queries!(billing_customers);
}

impl BillingRow for SiteRow {
    type Fields = SiteFields;
    const WHAT: &'static str = "billing site";

    fn build(
        dealer: &str,
        id: &str,
        f: &SiteFields,
        version: i64,
        created_at: NaiveDateTime,
        updated_at: NaiveDateTime,
    ) -> Self {
        Self {
            dealer: dealer.to_owned(),
            id: id.to_owned(),
            version,
            created_at,
            updated_at,
            customer_id: f.customer_id.as_ref().map(|c| c.as_str().to_owned()),
            name: f.name.clone(),
            address1: f.address1.clone(),
            address2: f.address2.clone(),
            city: f.city.clone(),
            state: f.state.clone(),
            zip: f.zip.clone(),
            phone: f.phone.clone(),
            info: f.info.clone(),
        }
    }

    fn into_record(self) -> Result<BillingSite, Fail> {
        let customer_id = self
            .customer_id
            .as_deref()
            .map(|c| stored_id(c, "billing customer"))
            .transpose()?;
        let fields = SiteFields {
            customer_id,
            name: self.name,
            address1: self.address1,
            address2: self.address2,
            city: self.city,
            state: self.state,
            zip: self.zip,
            phone: self.phone,
            info: self.info,
        };
        record(
            Self::WHAT,
            self.dealer,
            &self.id,
            self.version,
            self.created_at,
            self.updated_at,
            fields,
        )
    }

    billing_row_queries!(billing_sites);
}

impl BillingRow for SystemRow {
    type Fields = SystemFields;
    const WHAT: &'static str = "billing system";

    fn build(
        dealer: &str,
        id: &str,
        f: &SystemFields,
        version: i64,
        created_at: NaiveDateTime,
        updated_at: NaiveDateTime,
    ) -> Self {
        Self {
            dealer: dealer.to_owned(),
            id: id.to_owned(),
            version,
            created_at,
            updated_at,
            site_id: f.site_id.as_str().to_owned(),
            system_number: f.system_number.clone(),
            panel_type: f.panel_type.clone(),
            location: f.location.clone(),
            info: f.info.clone(),
        }
    }

    fn into_record(self) -> Result<BillingSystem, Fail> {
        let fields = SystemFields {
            site_id: stored_id(&self.site_id, "billing site")?,
            system_number: self.system_number,
            panel_type: self.panel_type,
            location: self.location,
            info: self.info,
        };
        record(
            Self::WHAT,
            self.dealer,
            &self.id,
            self.version,
            self.created_at,
            self.updated_at,
            fields,
        )
    }

    billing_row_queries!(billing_systems);
}

impl BillingRow for UserRow {
    type Fields = UserFields;
    const WHAT: &'static str = "billing user";

    fn build(
        dealer: &str,
        id: &str,
        f: &UserFields,
        version: i64,
        created_at: NaiveDateTime,
        updated_at: NaiveDateTime,
    ) -> Self {
        Self {
            dealer: dealer.to_owned(),
            id: id.to_owned(),
            version,
            created_at,
            updated_at,
            first_name: f.first_name.clone(),
            last_name: f.last_name.clone(),
            email: f.email.clone(),
            phone: f.phone.clone(),
            login_name: f.login_name.clone(),
            active: f.active,
            can_login: f.can_login,
            permission_group: f.permission_group.clone(),
            tags: tags_json(&f.tags),
            address1: f.address1.clone(),
            address2: f.address2.clone(),
            city: f.city.clone(),
            state: f.state.clone(),
            zip: f.zip.clone(),
            user_field: f.user_field.clone(),
        }
    }

    fn into_record(self) -> Result<BillingUser, Fail> {
        let tags = serde_json::from_str(&self.tags)
            .map_err(|_| corrupt(format!("billing user {} has bad tags", self.id)))?;
        let fields = UserFields {
            first_name: self.first_name,
            last_name: self.last_name,
            email: self.email,
            phone: self.phone,
            login_name: self.login_name,
            active: self.active,
            can_login: self.can_login,
            permission_group: self.permission_group,
            tags,
            address1: self.address1,
            address2: self.address2,
            city: self.city,
            state: self.state,
            zip: self.zip,
            user_field: self.user_field,
        };
        record(
            Self::WHAT,
            self.dealer,
            &self.id,
            self.version,
            self.created_at,
            self.updated_at,
            fields,
        )
    }

    billing_row_queries!(billing_users);
}

fn does_not_exist(what: &str, id: &str) -> String {
    format!("{what} '{id}' does not exist")
}

/// What an upsert did, and whether it wrote anything (a creation or a change
/// of fields): only then do Auto Sync pushes and events follow.
pub(crate) struct Saved<F> {
    pub(crate) upserted: Upserted<BillingRecord<F>>,
    pub(crate) changed: bool,
}

/// Creates or replaces the record. A replacement with the very same fields
/// writes nothing and keeps the version, so a billing system that PUTs its
/// records again and again does not churn ETags. `missing_reference` is the
/// message when a foreign key refuses the write (a reference deleted meanwhile).
fn upsert_row<R: BillingRow>(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
    fields: &R::Fields,
    expected_version: Option<i64>,
    missing_reference: impl Fn() -> String,
) -> Result<Saved<R::Fields>, Fail> {
    let now = to_db_time(Utc::now());
    for _ in 0..WRITE_ATTEMPTS {
        let written = match R::find(conn, dealer, id)? {
            None => {
                // If-Match names a version of something that is not there.
                if expected_version.is_some() {
                    return Err(StoreError::VersionMismatch.into());
                }
                let row = R::build(dealer, id, fields, 1, now, now);
                let inserted = conflict_on_foreign_key(row.insert_new(conn), &missing_reference)?;
                (inserted == 1).then_some((row, true))
            }
            Some(current) => {
                let (version, created_at) = (current.version(), current.created_at());
                if expected_version.is_some_and(|v| v != version) {
                    return Err(StoreError::VersionMismatch.into());
                }
                let current = current.into_record()?;
                if current.fields == *fields {
                    return Ok(Saved {
                        upserted: Upserted {
                            record: current,
                            created: false,
                        },
                        changed: false,
                    });
                }
                let row = R::build(dealer, id, fields, version + 1, created_at, now);
                let updated =
                    conflict_on_foreign_key(row.update_from(conn, version), &missing_reference)?;
                (updated == 1).then_some((row, false))
            }
        };
        if let Some((row, created)) = written {
            return Ok(Saved {
                upserted: Upserted {
                    record: row.into_record()?,
                    created,
                },
                changed: true,
            });
        }
        // Created or changed by another writer in between: look again.
    }
    Err(StoreError::Conflict(format!(
        "{} '{id}' kept changing while it was saved; try again",
        R::WHAT
    ))
    .into())
}

pub(crate) fn save_customer(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
    fields: &CustomerFields,
    expected_version: Option<i64>,
) -> Result<Saved<CustomerFields>, Fail> {
    upsert_row::<CustomerRow>(conn, dealer, id, fields, expected_version, || {
        "a billing customer has no references".to_owned()
    })
}

/// A site's customer, when it names one, must exist.
fn save_site(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
    fields: &SiteFields,
    expected_version: Option<i64>,
) -> Result<Saved<SiteFields>, Fail> {
    let customer = fields.customer_id.as_ref().map(BillingId::as_str);
    let missing = || does_not_exist(CustomerRow::WHAT, customer.unwrap_or("(none)"));
    if let Some(customer) = customer {
        if !customer_exists(conn, dealer, customer)? {
            return Err(StoreError::UnknownReference {
                field: "customer_id".into(),
                message: missing(),
            }
            .into());
        }
    }
    upsert_row::<SiteRow>(conn, dealer, id, fields, expected_version, missing)
}

/// A system's site must exist.
fn save_system(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
    fields: &SystemFields,
    expected_version: Option<i64>,
) -> Result<Saved<SystemFields>, Fail> {
    let site = fields.site_id.as_str();
    let missing = || does_not_exist(SiteRow::WHAT, site);
    if !site_exists(conn, dealer, site)? {
        return Err(StoreError::UnknownReference {
            field: "site_id".into(),
            message: missing(),
        }
        .into());
    }
    upsert_row::<SystemRow>(conn, dealer, id, fields, expected_version, missing)
}

pub(crate) fn save_user(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
    fields: &UserFields,
    expected_version: Option<i64>,
) -> Result<Saved<UserFields>, Fail> {
    upsert_row::<UserRow>(conn, dealer, id, fields, expected_version, || {
        "a billing user has no references".to_owned()
    })
}

/// Rows per multi-row insert of billing records: 500 rows of about 25
/// columns stay well under SQLite's 32,766 bound parameters (PostgreSQL
/// takes 65,535).
const ROWS_PER_INSERT: usize = 500;

/// New billing customers and users of an import, in a few multi-row
/// statements, version 1, nothing else written (like `save_customer` and
/// `save_user` on a new id). The caller checked that none exists: one that
/// appeared meanwhile fails the whole statement with a unique violation.
pub(crate) fn insert_new_records(
    conn: &mut DbConnection,
    dealer: &str,
    customers: &[(&str, &CustomerFields)],
    users: &[(&str, &UserFields)],
    now: NaiveDateTime,
) -> QueryResult<()> {
    let customers: Vec<CustomerRow> = customers
        .iter()
        .map(|(id, fields)| <CustomerRow as BillingRow>::build(dealer, id, fields, 1, now, now))
        .collect();
    for chunk in customers.chunks(ROWS_PER_INSERT) {
        per_backend!(&mut *conn, |c| diesel::insert_into(
            billing_customers::table
        )
        .values(chunk)
        .execute(c))?;
    }
    let users: Vec<UserRow> = users
        .iter()
        .map(|(id, fields)| <UserRow as BillingRow>::build(dealer, id, fields, 1, now, now))
        .collect();
    for chunk in users.chunks(ROWS_PER_INSERT) {
        per_backend!(&mut *conn, |c| diesel::insert_into(billing_users::table)
            .values(chunk)
            .execute(c))?;
    }
    Ok(())
}

/// The Auto Sync outbox (S19): an [`AutoSyncPush`] for each link of the
/// record on a connection where Auto Sync is on (the rule is the domain's),
/// but `origin` (the connection a change came from does not get it back).
/// The push's definition builds the job: it coalesces quick edits and takes
/// turns with the callbacks of its Stages record.
fn enqueue_auto_sync(
    conn: &mut DbConnection,
    dealer: &str,
    kind: LinkKind,
    billing_id: &str,
    origin: Option<&str>,
) -> Result<(), Fail> {
    let mut query = links::table
        .inner_join(connections::table)
        .filter(links::dealer.eq(dealer))
        .filter(links::kind.eq(kind.as_str()))
        .filter(links::billing_id.eq(billing_id))
        .select((
            links::id,
            links::connection_id,
            links::external_id,
            connections::status,
            connections::auto_sync,
        ))
        .order(links::id.asc())
        .into_boxed();
    if let Some(origin) = origin {
        query = query.filter(links::connection_id.ne(origin));
    }
    let linked: Vec<(String, String, String, String, bool)> = query.load(conn)?;
    let now = Utc::now();
    let dealer_id = DealerId(dealer.to_owned());
    for (link_id, connection_id, external_id, status, auto_sync) in linked {
        let status = ConnectionStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("connection status '{status}'")))?;
        let record = StagesRecord {
            connection_id: ConnectionId(parse_uuid(&connection_id, "connection")?),
            kind,
            external_id,
        };
        let link_id = LinkId(parse_uuid(&link_id, "link")?);
        if let Some(push) = AutoSyncPush::for_link(link_id, record, status, auto_sync) {
            enqueue_within(conn, push.new_job(&dealer_id, now))?;
        }
    }
    Ok(())
}

fn write_billing_blocking(
    conn: &mut DbConnection,
    dealer: &str,
    write: BillingWrite,
    expected_version: Option<i64>,
    events: Vec<NewEvent>,
    origin: Option<&str>,
    audit: Vec<NewAuditEntry>,
) -> Result<BillingWritten, Fail> {
    let (written, changed, linked) = match &write {
        BillingWrite::Customer { id, fields } => {
            let saved = save_customer(conn, dealer, id.as_str(), fields, expected_version)?;
            (
                BillingWritten::Customer(saved.upserted),
                saved.changed,
                None,
            )
        }
        BillingWrite::Site { id, fields } => {
            let saved = save_site(conn, dealer, id.as_str(), fields, expected_version)?;
            let linked = Some((LinkKind::Site, id));
            (BillingWritten::Site(saved.upserted), saved.changed, linked)
        }
        BillingWrite::System { id, fields } => {
            let saved = save_system(conn, dealer, id.as_str(), fields, expected_version)?;
            let linked = Some((LinkKind::System, id));
            (
                BillingWritten::System(saved.upserted),
                saved.changed,
                linked,
            )
        }
        BillingWrite::User { id, fields } => {
            let saved = save_user(conn, dealer, id.as_str(), fields, expected_version)?;
            (BillingWritten::User(saved.upserted), saved.changed, None)
        }
    };
    if changed {
        if let Some((kind, id)) = linked {
            enqueue_auto_sync(conn, dealer, kind, id.as_str(), origin)?;
        }
        insert_audit(conn, dealer, audit)?;
        // Last: the feed's lock (PostgreSQL) is held for the shortest time.
        insert_events(conn, dealer, events)?;
    }
    Ok(written)
}

/// Deletes the record unless `dependants` names something that still needs it.
fn delete_row<R: BillingRow>(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
    expected_version: Option<i64>,
    dependants: impl Fn(&mut DbConnection) -> Result<Option<String>, Fail>,
) -> Result<(), Fail> {
    for _ in 0..WRITE_ATTEMPTS {
        let current = R::find(conn, dealer, id)?.ok_or(StoreError::NotFound)?;
        let version = current.version();
        if expected_version.is_some_and(|v| v != version) {
            return Err(StoreError::VersionMismatch.into());
        }
        if let Some(refusal) = dependants(conn)? {
            return Err(StoreError::Conflict(refusal).into());
        }
        // The foreign keys back the check up against a dependant added meanwhile.
        let deleted = conflict_on_foreign_key(R::delete_at(conn, dealer, id, version), || {
            format!("{} '{id}' is still referenced; try again", R::WHAT)
        })?;
        if deleted == 1 {
            return Ok(());
        }
    }
    Err(StoreError::Conflict(format!(
        "{} '{id}' kept changing while it was deleted; try again",
        R::WHAT
    ))
    .into())
}

/// "'A', 'B' and 3 more" from the first few ids and the count of all.
fn name_some(ids: &[String], total: i64) -> String {
    let named = ids
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let more = total - ids.len() as i64;
    if more > 0 {
        format!("{named} and {more} more")
    } else {
        named
    }
}

fn still_has(what: &str, id: &str, dependants: &str, ids: &[String], total: i64) -> String {
    format!(
        "{what} '{id}' still has {dependants} {}; delete or move them first",
        name_some(ids, total)
    )
}

/// A refusal while the record is linked on some connection.
fn linked_refusal(
    conn: &mut DbConnection,
    dealer: &str,
    kind: LinkKind,
    id: &str,
) -> Result<Option<String>, Fail> {
    let linked: i64 = links::table
        .filter(links::dealer.eq(dealer))
        .filter(links::kind.eq(kind.as_str()))
        .filter(links::billing_id.eq(id))
        .count()
        .get_result(conn)?;
    Ok((linked > 0).then(|| {
        let what = match kind {
            LinkKind::Site => "billing site",
            LinkKind::System => "billing system",
        };
        let connections = if linked == 1 {
            "1 connection".to_owned()
        } else {
            format!("{linked} connections")
        };
        format!("{what} '{id}' is linked on {connections}; unlink it first")
    }))
}

fn exists<T>(found: QueryResult<Option<T>>) -> Result<bool, Fail> {
    Ok(found?.is_some())
}

pub(crate) fn customer_exists(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
) -> Result<bool, Fail> {
    exists(
        billing_customers::table
            .filter(billing_customers::dealer.eq(dealer))
            .filter(billing_customers::id.eq(id))
            .select(billing_customers::id)
            .first::<String>(conn)
            .optional(),
    )
}

fn site_exists(conn: &mut DbConnection, dealer: &str, id: &str) -> Result<bool, Fail> {
    exists(
        billing_sites::table
            .filter(billing_sites::dealer.eq(dealer))
            .filter(billing_sites::id.eq(id))
            .select(billing_sites::id)
            .first::<String>(conn)
            .optional(),
    )
}

#[async_trait]
impl BillingStore for Store {
    async fn upsert_customer(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        fields: CustomerFields,
        expected_version: Option<i64>,
    ) -> StoreResult<Upserted<BillingCustomer>> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                save_customer(conn, &dealer, &id, &fields, expected_version)
            })
            .map(|saved| saved.upserted)
        })
        .await
    }

    async fn customer(&self, dealer: &DealerId, id: &BillingId) -> StoreResult<BillingCustomer> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            CustomerRow::find(conn, &dealer, &id)?
                .ok_or(StoreError::NotFound)?
                .into_record()
        })
        .await
    }

    async fn delete_customer(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        expected_version: Option<i64>,
    ) -> StoreResult<()> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                delete_row::<CustomerRow>(conn, &dealer, &id, expected_version, |conn| {
                    let of_customer = || {
                        billing_sites::table
                            .filter(billing_sites::dealer.eq(&dealer))
                            .filter(billing_sites::customer_id.eq(&id))
                    };
                    let total: i64 = of_customer().count().get_result(conn)?;
                    if total == 0 {
                        return Ok(None);
                    }
                    let named: Vec<String> = of_customer()
                        .select(billing_sites::id)
                        .order(billing_sites::id.asc())
                        .limit(NAMED_DEPENDANTS)
                        .load(conn)?;
                    Ok(Some(still_has(
                        CustomerRow::WHAT,
                        &id,
                        "sites",
                        &named,
                        total,
                    )))
                })
            })
        })
        .await
    }

    async fn sites_of_customer(
        &self,
        dealer: &DealerId,
        customer_id: &BillingId,
    ) -> StoreResult<Vec<BillingSite>> {
        let (dealer, customer_id) = (dealer.0.clone(), customer_id.as_str().to_owned());
        self.run(move |conn, _| {
            let rows: Vec<SiteRow> = billing_sites::table
                .filter(billing_sites::dealer.eq(&dealer))
                .filter(billing_sites::customer_id.eq(&customer_id))
                .select(SiteRow::as_select())
                .order(billing_sites::id.asc())
                .load(conn)?;
            // A missing customer is "not found", not "no sites".
            if rows.is_empty() && CustomerRow::find(conn, &dealer, &customer_id)?.is_none() {
                return Err(StoreError::NotFound.into());
            }
            rows.into_iter().map(SiteRow::into_record).collect()
        })
        .await
    }

    async fn search_customers(
        &self,
        dealer: &DealerId,
        q: Option<&str>,
        page: PageRequest,
    ) -> StoreResult<Page<BillingCustomer>> {
        let dealer = dealer.0.clone();
        let limit = page_limit(&page);
        let q = q.map(str::trim).filter(|q| !q.is_empty()).map(|q| {
            (
                contains_pattern(&fold(q)),
                phone_query_digits(q).map(|d| format!("%{d}%")),
            )
        });
        self.run(move |conn, _| {
            let mut query = billing_customers::table
                .filter(billing_customers::dealer.eq(dealer))
                .select(CustomerRow::as_select())
                .order(billing_customers::id.asc())
                .limit(limit as i64 + 1)
                .into_boxed();
            match q {
                Some((text, Some(phone))) => {
                    query = query.filter(
                        billing_customers::search_text
                            .like(text)
                            .escape('\\')
                            .or(billing_customers::phone_digits.like(phone)),
                    );
                }
                Some((text, None)) => {
                    query = query.filter(billing_customers::search_text.like(text).escape('\\'));
                }
                None => {}
            }
            if let Some(after) = page.after {
                query = query.filter(billing_customers::id.gt(after));
            }
            let rows: Vec<CustomerRow> = query.load(conn)?;
            into_page(rows, limit, |r| r.id.clone(), CustomerRow::into_record)
        })
        .await
    }

    async fn upsert_site_linked(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        fields: SiteFields,
        expected_version: Option<i64>,
    ) -> StoreResult<(Upserted<BillingSite>, Vec<Link>)> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                let saved = save_site(conn, &dealer, &id, &fields, expected_version)?;
                if saved.changed {
                    enqueue_auto_sync(conn, &dealer, LinkKind::Site, &id, None)?;
                }
                let links = links_of_record(conn, &dealer, LinkKind::Site, &id)?;
                Ok((saved.upserted, links))
            })
        })
        .await
    }

    async fn site(&self, dealer: &DealerId, id: &BillingId) -> StoreResult<BillingSite> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            SiteRow::find(conn, &dealer, &id)?
                .ok_or(StoreError::NotFound)?
                .into_record()
        })
        .await
    }

    async fn delete_site(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        expected_version: Option<i64>,
    ) -> StoreResult<()> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                delete_row::<SiteRow>(conn, &dealer, &id, expected_version, |conn| {
                    let of_site = || {
                        billing_systems::table
                            .filter(billing_systems::dealer.eq(&dealer))
                            .filter(billing_systems::site_id.eq(&id))
                    };
                    let total: i64 = of_site().count().get_result(conn)?;
                    if total > 0 {
                        let named: Vec<String> = of_site()
                            .select(billing_systems::id)
                            .order(billing_systems::id.asc())
                            .limit(NAMED_DEPENDANTS)
                            .load(conn)?;
                        return Ok(Some(still_has(
                            SiteRow::WHAT,
                            &id,
                            "systems",
                            &named,
                            total,
                        )));
                    }
                    linked_refusal(conn, &dealer, LinkKind::Site, &id)
                })
            })
        })
        .await
    }

    async fn upsert_system_linked(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        fields: SystemFields,
        expected_version: Option<i64>,
    ) -> StoreResult<(Upserted<BillingSystem>, Vec<Link>)> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                let saved = save_system(conn, &dealer, &id, &fields, expected_version)?;
                if saved.changed {
                    enqueue_auto_sync(conn, &dealer, LinkKind::System, &id, None)?;
                }
                let links = links_of_record(conn, &dealer, LinkKind::System, &id)?;
                Ok((saved.upserted, links))
            })
        })
        .await
    }

    async fn system(&self, dealer: &DealerId, id: &BillingId) -> StoreResult<BillingSystem> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            SystemRow::find(conn, &dealer, &id)?
                .ok_or(StoreError::NotFound)?
                .into_record()
        })
        .await
    }

    async fn delete_system(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        expected_version: Option<i64>,
    ) -> StoreResult<()> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                delete_row::<SystemRow>(conn, &dealer, &id, expected_version, |conn| {
                    linked_refusal(conn, &dealer, LinkKind::System, &id)
                })
            })
        })
        .await
    }

    async fn systems_of_site(
        &self,
        dealer: &DealerId,
        site_id: &BillingId,
    ) -> StoreResult<Vec<BillingSystem>> {
        let (dealer, site_id) = (dealer.0.clone(), site_id.as_str().to_owned());
        self.run(move |conn, _| {
            let rows: Vec<SystemRow> = billing_systems::table
                .filter(billing_systems::dealer.eq(&dealer))
                .filter(billing_systems::site_id.eq(&site_id))
                .select(SystemRow::as_select())
                .order(billing_systems::id.asc())
                .load(conn)?;
            // A missing site is "not found", not "no systems".
            if rows.is_empty() && !site_exists(conn, &dealer, &site_id)? {
                return Err(StoreError::NotFound.into());
            }
            rows.into_iter().map(SystemRow::into_record).collect()
        })
        .await
    }

    async fn upsert_user(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        fields: UserFields,
        expected_version: Option<i64>,
    ) -> StoreResult<Upserted<BillingUser>> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                save_user(conn, &dealer, &id, &fields, expected_version)
            })
            .map(|saved| saved.upserted)
        })
        .await
    }

    async fn user(&self, dealer: &DealerId, id: &BillingId) -> StoreResult<BillingUser> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            UserRow::find(conn, &dealer, &id)?
                .ok_or(StoreError::NotFound)?
                .into_record()
        })
        .await
    }

    async fn delete_user(
        &self,
        dealer: &DealerId,
        id: &BillingId,
        expected_version: Option<i64>,
    ) -> StoreResult<()> {
        let (dealer, id) = (dealer.0.clone(), id.as_str().to_owned());
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                delete_row::<UserRow>(conn, &dealer, &id, expected_version, |_| Ok(None))
            })
        })
        .await
    }

    /// No version check. When the fields are those already stored, nothing
    /// is written: no version bump, no Auto Sync job, and none of `events` is
    /// recorded (`created` is false and the record is the stored one).
    async fn write_billing(
        &self,
        dealer: &DealerId,
        write: BillingWrite,
        events: Vec<NewEvent>,
        origin: Option<ConnectionId>,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<BillingWritten> {
        let dealer = dealer.0.clone();
        let origin = origin.map(|c| uuid_text(c.0));
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                let origin = origin.as_deref();
                write_billing_blocking(conn, &dealer, write, None, events, origin, audit)
            })
        })
        .await
    }

    async fn write_billing_at(
        &self,
        dealer: &DealerId,
        write: BillingWrite,
        version: i64,
        events: Vec<NewEvent>,
        origin: Option<ConnectionId>,
        audit: Vec<NewAuditEntry>,
    ) -> StoreResult<BillingWritten> {
        let dealer = dealer.0.clone();
        let origin = origin.map(|c| uuid_text(c.0));
        self.run(move |conn, _| {
            write_transaction(conn, |conn| {
                let origin = origin.as_deref();
                let version = Some(version);
                write_billing_blocking(conn, &dealer, write, version, events, origin, audit)
            })
        })
        .await
    }

    async fn existing_billing_ids(
        &self,
        dealer: &DealerId,
        kind: LinkKind,
        ids: &[String],
    ) -> StoreResult<Vec<String>> {
        let dealer = dealer.0.clone();
        let ids = ids.to_vec();
        self.run(move |conn, _| {
            let mut found = std::collections::HashSet::new();
            for chunk in ids.chunks(IN_CHUNK) {
                let rows: Vec<String> = match kind {
                    LinkKind::Site => billing_sites::table
                        .filter(billing_sites::dealer.eq(&dealer))
                        .filter(billing_sites::id.eq_any(chunk))
                        .select(billing_sites::id)
                        .load(conn)?,
                    LinkKind::System => billing_systems::table
                        .filter(billing_systems::dealer.eq(&dealer))
                        .filter(billing_systems::id.eq_any(chunk))
                        .select(billing_systems::id)
                        .load(conn)?,
                };
                found.extend(rows);
            }
            Ok(in_given_order(ids, &found))
        })
        .await
    }
}

/// The billing record a link of `kind` names, if it still exists.
pub(crate) fn find_linked(
    conn: &mut DbConnection,
    dealer: &str,
    kind: LinkKind,
    id: &str,
) -> Result<Option<domain::syncing::LinkedRecord>, Fail> {
    Ok(match kind {
        LinkKind::Site => SiteRow::find(conn, dealer, id)?
            .map(SiteRow::into_record)
            .transpose()?
            .map(domain::syncing::LinkedRecord::Site),
        LinkKind::System => SystemRow::find(conn, dealer, id)?
            .map(SystemRow::into_record)
            .transpose()?
            .map(domain::syncing::LinkedRecord::System),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_queries_are_told_from_text() {
        assert_eq!(
            phone_query_digits("(555) 123-4567").as_deref(),
            Some("5551234567")
        );
        assert_eq!(phone_query_digits("+1 555").as_deref(), Some("1555"));
        assert_eq!(phone_query_digits("12 Main St"), None);
        assert_eq!(phone_query_digits("--"), None);
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(contains_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }

    #[test]
    fn search_text_is_folded_per_field() {
        let f = CustomerFields {
            first_name: "  Ada ".into(),
            last_name: "LOVELACE".into(),
            email: "Ada@Example.com".into(),
            city: "London".into(),
            zip: "N1".into(),
            ..Default::default()
        };
        assert_eq!(
            search_text(&f),
            "ada lovelace\n\nada@example.com\n\nlondon n1"
        );
    }
}
