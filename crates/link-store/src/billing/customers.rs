//! Billing customers: their row, the search text and phone digits stored
//! with it (the customer search folds case and spacing once, on write), the
//! search itself, and the refusal to delete a customer that still has sites.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use domain::billing::{BillingCustomer, CustomerFields, CustomerKind};
use domain::store::PageRequest;
use domain::Page;

use super::save::{still_has, upsert_row, Saved};
use super::{exists, record, stored_id, tags_json, BillingRow, NAMED_DEPENDANTS};
use crate::connections::corrupt;
use crate::db::{into_page, per_backend, DbConnection, Fail};
use crate::schema::{billing_customers, billing_sites};

/// A `None` is NULL in an update (`treat_none_as_null`) and in an insert
/// (`treat_none_as_default_value = false`, see `insert_rows!`).
#[derive(Debug, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = billing_customers, primary_key(dealer, id), treat_none_as_null = true)]
#[diesel(treat_none_as_default_value = false)]
pub(super) struct CustomerRow {
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

    billing_row_queries!(billing_customers: kind, first_name, last_name, business_name, phone, email, address1, address2, city, state, zip, phone_digits, search_text, office_location, tags, rep_id, sale_date, two_way_voice, account_number, receiver_number);
}

pub(super) fn save_customer(
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

pub(super) fn customer_exists(
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

/// The refusal to delete customer `id` while sites name it.
pub(super) fn sites_left(
    conn: &mut DbConnection,
    dealer: &str,
    id: &str,
) -> Result<Option<String>, Fail> {
    let of_customer = || {
        billing_sites::table
            .filter(billing_sites::dealer.eq(dealer))
            .filter(billing_sites::customer_id.eq(id))
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
        id,
        "sites",
        &named,
        total,
    )))
}

/// A search query as the patterns it is matched with: its folded text, and
/// its digits when it looks like a phone number.
pub(super) fn search_patterns(q: Option<&str>) -> Option<(String, Option<String>)> {
    q.map(str::trim).filter(|q| !q.is_empty()).map(|q| {
        (
            contains_pattern(&fold(q)),
            phone_query_digits(q).map(|d| format!("%{d}%")),
        )
    })
}

/// A page of the dealer's customers matching `q` (see [`search_patterns`]).
pub(super) fn search(
    conn: &mut DbConnection,
    dealer: String,
    q: Option<(String, Option<String>)>,
    page: PageRequest,
    limit: usize,
) -> Result<Page<BillingCustomer>, Fail> {
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
