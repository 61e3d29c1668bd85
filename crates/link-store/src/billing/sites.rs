//! Billing sites: their row, the check that a site's customer exists, the
//! sites of a customer, and the refusal to delete a site that still has
//! systems or is linked.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use domain::billing::{BillingId, BillingSite, SiteFields};
use domain::link::LinkKind;
use domain::store::StoreError;

use super::customers::{customer_exists, CustomerRow};
use super::save::{does_not_exist, linked_refusal, still_has, upsert_row, Saved};
use super::{exists, record, stored_id, BillingRow, NAMED_DEPENDANTS};
use crate::db::{per_backend, DbConnection, Fail};
use crate::schema::{billing_sites, billing_systems};

#[derive(Debug, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = billing_sites, primary_key(dealer, id), treat_none_as_null = true)]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct SiteRow {
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

    billing_row_queries!(billing_sites: customer_id, name, address1, address2, city, state, zip, phone, info);
}

/// A site's customer, when it names one, must exist.
pub(super) fn save_site(
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

pub(super) fn site_exists(conn: &mut DbConnection, dealer: &str, id: &str) -> Result<bool, Fail> {
    exists(
        billing_sites::table
            .filter(billing_sites::dealer.eq(dealer))
            .filter(billing_sites::id.eq(id))
            .select(billing_sites::id)
            .first::<String>(conn)
            .optional(),
    )
}

/// The customer's sites, by id.
pub(super) fn sites_of_customer(
    conn: &mut DbConnection,
    dealer: &str,
    customer_id: &str,
) -> Result<Vec<BillingSite>, Fail> {
    let rows: Vec<SiteRow> = billing_sites::table
        .filter(billing_sites::dealer.eq(dealer))
        .filter(billing_sites::customer_id.eq(customer_id))
        .select(SiteRow::as_select())
        .order(billing_sites::id.asc())
        .load(conn)?;
    // A missing customer is "not found", not "no sites".
    if rows.is_empty() && CustomerRow::find(conn, dealer, customer_id)?.is_none() {
        return Err(StoreError::NotFound.into());
    }
    rows.into_iter().map(SiteRow::into_record).collect()
}

/// The refusal to delete site `id` while systems name it or it is linked.
pub(super) fn systems_or_links_left(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
) -> Result<Option<String>, Fail> {
    let of_site = || {
        billing_systems::table
            .filter(billing_systems::dealer.eq(dealer))
            .filter(billing_systems::site_id.eq(id))
    };
    let total: i64 = of_site().count().get_result(conn)?;
    if total > 0 {
        let named: Vec<String> = of_site()
            .select(billing_systems::id)
            .order(billing_systems::id.asc())
            .limit(NAMED_DEPENDANTS)
            .load(conn)?;
        return Ok(Some(still_has(SiteRow::WHAT, id, "systems", &named, total)));
    }
    linked_refusal(conn, dealer, LinkKind::Site, id)
}
