//! An Alarm.com customer or user as a billing record (A1, A3: the field
//! mapping tables of the seed), the billing ids imports give, how a customer's
//! rep is found among the billing users (A2 rep linking), and when a read
//! customer is one billing already holds.

use std::collections::HashMap;

use super::{CustomerOptions, UserOptions};
use crate::adc::{AdcCustomer, AdcCustomerId, AdcRep};
use crate::billing::{BillingId, CustomerFields, CustomerKind, UserFields};
use crate::isp::{CompletedIspAccount, IspAccountOrigin};

/// Where a customer's rep comes from (A2).
pub(super) struct RepMatcher {
    /// ADC support id → billing user imported from it.
    pub(super) by_support_id: HashMap<String, BillingId>,
    /// Lowercased login name → billing user.
    pub(super) by_login: HashMap<String, BillingId>,
    pub(super) default_rep: Option<BillingId>,
}

impl RepMatcher {
    /// The rep's billing user and how it was found.
    pub(super) fn rep_of(&self, c: &AdcCustomer) -> (Option<BillingId>, &'static str) {
        let by_id = c
            .sales_rep_support_id
            .and_then(|s| self.by_support_id.get(&s.to_string()));
        let by_login = || {
            let login = c.sales_rep_login_name.trim().to_lowercase();
            (!login.is_empty())
                .then(|| self.by_login.get(&login))
                .flatten()
        };
        match by_id.or_else(by_login) {
            Some(user) => (Some(user.clone()), "rep matched a billing user"),
            None => match &self.default_rep {
                Some(rep) => (Some(rep.clone()), "rep set to the default rep"),
                None => (None, "rep left blank"),
            },
        }
    }
}

/// A read customer that billing already holds (matched before create).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerMatch {
    pub billing_id: BillingId,
    /// How it was matched, as the item's reason.
    pub how: String,
    /// The ISP account link to record (the billing customer has none yet).
    pub link: Option<CompletedIspAccount>,
}

/// The billing customer a read Alarm.com customer already is through its
/// DealerCustomerId (the billing id the service sends when it provisions an
/// account, and the one a dealer types into Alarm.com), if any. `known`
/// holds the billing customers found among the DealerCustomerIds, each with
/// the provider customer id of its ISP account on the connection when it
/// has one (empty while that account is being provisioned). An ISP account
/// link of the customer itself is matched before reading it.
pub fn match_by_dealer_customer_id(
    customer: &AdcCustomer,
    known: &HashMap<String, Option<String>>,
) -> Option<CustomerMatch> {
    let dcid = customer.dealer_customer_id.trim();
    if dcid.is_empty() {
        return None;
    }
    let account = known.get(dcid)?;
    let billing_id = BillingId::parse(dcid).ok()?;
    let own = customer.customer_id.to_string();
    let matched = format!("matched by its DealerCustomerId: billing customer '{billing_id}'");
    Some(match account {
        None => CustomerMatch {
            how: format!("{matched}; its ISP account link is recorded"),
            link: Some(crate::isp::completed_from(
                customer,
                IspAccountOrigin::Recovered,
            )),
            billing_id,
        },
        Some(linked) if *linked == own => CustomerMatch {
            how: matched,
            link: None,
            billing_id,
        },
        Some(linked) if linked.is_empty() => CustomerMatch {
            how: format!("{matched}; its ISP account is being provisioned, so no link is recorded"),
            link: None,
            billing_id,
        },
        Some(linked) => CustomerMatch {
            how: format!(
                "{matched}, which is linked to Alarm.com customer {linked}; no link is recorded"
            ),
            link: None,
            billing_id,
        },
    })
}

/// The billing id of an imported customer.
pub fn customer_billing_id(id: AdcCustomerId) -> Result<BillingId, String> {
    BillingId::parse(&format!("adc-{id}"))
}

/// The key a user is imported under: its support id, else its login name.
pub fn user_external_id(rep: &AdcRep) -> String {
    match rep.support_id {
        Some(id) => id.to_string(),
        None => format!("login:{}", rep.login_name.trim()),
    }
}

/// The billing id of an imported user.
pub fn user_billing_id(rep: &AdcRep) -> Result<BillingId, String> {
    let raw = match rep.support_id {
        Some(id) => format!("adc-user-{id}"),
        None => format!("adc-user-{}", rep.login_name.trim()),
    };
    BillingId::parse(&raw).map_err(|why| format!("no billing id can be made of '{raw}': {why}"))
}

/// The customer mapping of the seed: names, commercial name, primary phone
/// and email, install address, rep, join date as sale date, two-way voice,
/// and the central station data points; plus the run's options.
pub fn customer_fields(
    c: &AdcCustomer,
    options: &CustomerOptions,
    rep: Option<BillingId>,
) -> CustomerFields {
    let business = !c.company_name.trim().is_empty();
    CustomerFields {
        kind: if business {
            CustomerKind::Business
        } else {
            CustomerKind::Person
        },
        first_name: c.first_name.trim().to_owned(),
        last_name: c.last_name.trim().to_owned(),
        business_name: c.company_name.trim().to_owned(),
        phone: c.phone.trim().to_owned(),
        email: c.email.trim().to_owned(),
        address1: c.install_address.street1.trim().to_owned(),
        address2: c.install_address.street2.trim().to_owned(),
        city: c.install_address.city.trim().to_owned(),
        state: c.install_address.state.trim().to_owned(),
        zip: c.install_address.zip.trim().to_owned(),
        office_location: options.office_location.clone(),
        tags: options.tags.clone(),
        rep_id: rep,
        sale_date: c.join_date.map(|d| d.date_naive()),
        two_way_voice: c.two_way_voice,
        account_number: c.central_station.account_number.trim().to_owned(),
        receiver_number: c.central_station.receiver_number.trim().to_owned(),
    }
}

/// The user mapping of the seed: user field, the rep address's names, login
/// name as username, email, address and phone (the cell phone); plus the
/// run's options.
pub fn user_fields(r: &AdcRep, options: &UserOptions) -> UserFields {
    UserFields {
        first_name: r.first_name.trim().to_owned(),
        last_name: r.last_name.trim().to_owned(),
        email: r.email.trim().to_owned(),
        phone: r.phone.trim().to_owned(),
        login_name: r.login_name.trim().to_owned(),
        active: options.active,
        can_login: options.can_login,
        permission_group: options.permission_group.clone(),
        tags: options.tags.clone(),
        address1: r.address.street1.trim().to_owned(),
        address2: r.address.street2.trim().to_owned(),
        city: r.address.city.trim().to_owned(),
        state: r.address.state.trim().to_owned(),
        zip: r.address.zip.trim().to_owned(),
        user_field: r.user_field.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::fixtures::{customer, rep};

    #[test]
    fn the_customer_mapping_is_complete() {
        let options = CustomerOptions {
            office_location: "Dayton".into(),
            tags: vec!["adc".into()],
            default_rep: None,
            dry_run: false,
        };
        let rep = BillingId::parse("U1").unwrap();
        let f = customer_fields(&customer(5, None), &options, Some(rep.clone()));
        assert_eq!(f.kind, CustomerKind::Person);
        assert_eq!(
            (f.first_name.as_str(), f.last_name.as_str()),
            ("Jane", "Doe")
        );
        assert_eq!(f.phone, "5550100");
        assert_eq!(f.email, "jane@example.com");
        assert_eq!(
            (
                f.address1.as_str(),
                f.city.as_str(),
                f.state.as_str(),
                f.zip.as_str()
            ),
            ("1 Main St", "Springfield", "IL", "62701")
        );
        assert_eq!(f.rep_id, Some(rep));
        assert_eq!(f.sale_date, chrono::NaiveDate::from_ymd_opt(2024, 3, 5));
        assert!(f.two_way_voice);
        assert_eq!(f.account_number, "A123");
        assert_eq!(f.receiver_number, "8005550100");
        assert_eq!(f.office_location, "Dayton");
        assert_eq!(f.tags, vec!["adc".to_owned()]);
        let mut business = customer(6, None);
        business.company_name = "Acme".into();
        let f = customer_fields(&business, &options, None);
        assert_eq!(f.kind, CustomerKind::Business);
        assert_eq!(f.business_name, "Acme");
    }

    #[test]
    fn the_user_mapping_is_complete() {
        let options = UserOptions {
            active: false,
            can_login: true,
            permission_group: "Sales".into(),
            tags: vec!["adc".into()],
            dry_run: false,
        };
        let f = user_fields(&rep(42, &["Sales Rep"], None), &options);
        assert_eq!(f.login_name, "rep42");
        assert_eq!(
            (f.first_name.as_str(), f.last_name.as_str()),
            ("Rick", "Rep")
        );
        assert_eq!(f.email, "rick@example.com");
        assert_eq!(f.phone, "5550199");
        assert_eq!((f.address1.as_str(), f.city.as_str()), ("9 Elm", "Dayton"));
        assert_eq!(f.user_field, "badge 7");
        assert!(!f.active && f.can_login);
        assert_eq!(f.permission_group, "Sales");
    }

    #[test]
    fn reps_match_imported_users_then_logins_then_the_default() {
        let u = |s: &str| BillingId::parse(s).unwrap();
        let mut m = RepMatcher {
            by_support_id: [("300001".to_owned(), u("adc-user-300001"))].into(),
            by_login: [("rep.one".to_owned(), u("U-LOGIN"))].into(),
            default_rep: Some(u("DEFAULT")),
        };
        let c = customer(1, None);
        assert_eq!(m.rep_of(&c).0, Some(u("adc-user-300001")));
        m.by_support_id.clear();
        assert_eq!(m.rep_of(&c).0, Some(u("U-LOGIN")));
        m.by_login.clear();
        assert_eq!(m.rep_of(&c).0, Some(u("DEFAULT")));
        m.default_rep = None;
        assert_eq!(m.rep_of(&c).0, None);
    }

    #[test]
    fn a_dealer_customer_id_naming_a_billing_customer_is_a_match() {
        let mut c = customer(10_000_007, None);
        let none = HashMap::new();
        assert_eq!(match_by_dealer_customer_id(&c, &none), None, "no id");
        c.dealer_customer_id = " C-42 ".into();
        assert_eq!(match_by_dealer_customer_id(&c, &none), None, "unknown id");
        let unlinked: HashMap<String, Option<String>> = [("C-42".to_owned(), None)].into();
        let m = match_by_dealer_customer_id(&c, &unlinked).unwrap();
        assert_eq!(m.billing_id.as_str(), "C-42");
        assert!(m.how.contains("DealerCustomerId") && m.how.contains("link is recorded"));
        let link = m.link.unwrap();
        assert_eq!(link.external_id, "10000007");
        assert_eq!(link.origin, IspAccountOrigin::Recovered);
        let own: HashMap<String, Option<String>> =
            [("C-42".to_owned(), Some("10000007".to_owned()))].into();
        assert_eq!(match_by_dealer_customer_id(&c, &own).unwrap().link, None);
        let other: HashMap<String, Option<String>> =
            [("C-42".to_owned(), Some("10000008".to_owned()))].into();
        let m = match_by_dealer_customer_id(&c, &other).unwrap();
        assert_eq!(m.link, None);
        assert!(m.how.contains("10000008"), "{}", m.how);
    }
}
