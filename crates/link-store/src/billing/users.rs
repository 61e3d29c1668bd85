//! Billing users: their row and its upsert (a user has no references and
//! nothing depends on it).

use chrono::NaiveDateTime;
use diesel::prelude::*;
use domain::billing::{BillingUser, UserFields};

use super::save::{upsert_row, Saved};
use super::{record, tags_json, BillingRow};
use crate::connections::corrupt;
use crate::db::{per_backend, DbConnection, Fail};
use crate::schema::billing_users;

/// Every value is written as given, none left to DEFAULT: see `insert_rows!`.
#[derive(Debug, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = billing_users, primary_key(dealer, id), treat_none_as_default_value = false)]
pub(super) struct UserRow {
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

    billing_row_queries!(billing_users: first_name, last_name, email, phone, login_name, active, can_login, permission_group, tags, address1, address2, city, state, zip, user_field);
}

pub(super) fn save_user(
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
