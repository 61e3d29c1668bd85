//! Billing systems: their row, the check that a system's site exists, and
//! the systems of a site.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use domain::billing::{BillingSystem, SystemFields};
use domain::store::StoreError;

use super::save::{does_not_exist, upsert_row, Saved};
use super::sites::{site_exists, SiteRow};
use super::{record, stored_id, BillingRow};
use crate::db::{per_backend, DbConnection, Fail};
use crate::schema::billing_systems;

#[derive(Debug, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = billing_systems, primary_key(dealer, id))]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct SystemRow {
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

    billing_row_queries!(billing_systems: site_id, system_number, panel_type, location, info);
}

/// A system's site must exist.
pub(super) fn save_system(
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

/// The site's systems, by id.
pub(super) fn systems_of_site(
    conn: &mut DbConnection,
    dealer: &str,
    site_id: &str,
) -> Result<Vec<BillingSystem>, Fail> {
    let rows: Vec<SystemRow> = billing_systems::table
        .filter(billing_systems::dealer.eq(dealer))
        .filter(billing_systems::site_id.eq(site_id))
        .select(SystemRow::as_select())
        .order(billing_systems::id.asc())
        .load(conn)?;
    // A missing site is "not found", not "no systems".
    if rows.is_empty() && !site_exists(conn, dealer, site_id)? {
        return Err(StoreError::NotFound.into());
    }
    rows.into_iter().map(SystemRow::into_record).collect()
}
