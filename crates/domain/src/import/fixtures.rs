//! Alarm.com customers and users as the tests of the import modules use them:
//! a full customer and a rep with roles, each in a sub-dealer when asked.

use crate::adc::{
    AdcAddress, AdcCentralStationInfo, AdcCustomer, AdcCustomerId, AdcRep, AdcRole, AdcSubDealer,
};

pub fn customer(id: i64, sub_dealer: Option<i64>) -> AdcCustomer {
    AdcCustomer {
        customer_id: AdcCustomerId(id),
        dealer_customer_id: String::new(),
        login_name: "jdoe".into(),
        is_terminated: false,
        terminated_date: None,
        is_commitment: false,
        commitment_id: None,
        builder_program_id: None,
        sub_dealer: sub_dealer.map(|id| AdcSubDealer {
            id,
            name: format!("Branch {id}"),
        }),
        first_name: " Jane ".into(),
        last_name: "Doe".into(),
        company_name: String::new(),
        email: "jane@example.com".into(),
        phone: "5550100".into(),
        install_address: AdcAddress {
            street1: "1 Main St".into(),
            street2: "Apt 2".into(),
            city: "Springfield".into(),
            state: "IL".into(),
            zip: "62701".into(),
            country_id: "USA".into(),
        },
        time_zone: String::new(),
        panel_type: "IQPanel2".into(),
        modem_serial_number: String::new(),
        service_plan: None,
        add_on_features: vec!["TwoWayVoice".into()],
        sales_rep_login_name: "Rep.One".into(),
        sales_rep_support_id: Some(300_001),
        installer_login_name: String::new(),
        install_type: String::new(),
        central_station: AdcCentralStationInfo {
            account_number: "A123".into(),
            receiver_number: "8005550100".into(),
        },
        two_way_voice: true,
        join_date: Some("2024-03-05T15:00:00Z".parse().unwrap()),
        created_date: None,
        last_modified_date: None,
    }
}

pub fn rep(support_id: i64, roles: &[&str], sub_dealer: Option<i64>) -> AdcRep {
    AdcRep {
        support_id: Some(support_id),
        login_name: format!("rep{support_id}"),
        first_name: "Rick".into(),
        last_name: "Rep".into(),
        email: "rick@example.com".into(),
        phone: "5550199".into(),
        address: AdcAddress {
            street1: "9 Elm".into(),
            city: "Dayton".into(),
            state: "OH".into(),
            zip: "45402".into(),
            ..Default::default()
        },
        roles: roles
            .iter()
            .enumerate()
            .map(|(i, n)| AdcRole {
                id: i as i64 + 1,
                name: (*n).into(),
            })
            .collect(),
        sub_dealer: sub_dealer.map(|id| AdcSubDealer {
            id,
            name: "B".into(),
        }),
        active: true,
        user_field: "badge 7".into(),
    }
}
