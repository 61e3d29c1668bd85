//! Writing ADC's inputs: what `CreateCustomer` and `GetCustomerList_V2`
//! send, in the element names and order of `ADC-API.md`.

use chrono::{DateTime, SecondsFormat, Utc};
use domain::adc::*;

use crate::xml::{Fields, Node};

fn xsd_date_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn address_fields(address: &AdcAddress) -> Fields {
    Fields::new()
        .some_text("Street1", &address.street1)
        .some_text("Street2", &address.street2)
        .some_text("City", &address.city)
        .some_text("State", &address.state)
        .some_text("Zip", &address.zip)
        .some_text("CountryId", &address.country_id)
}

/// The children of `CreateCustomer`'s `input` (and of `CreateCommitment`'s,
/// see `unpublished`), in the order of `ADC-API.md`.
pub(crate) fn customer_input(customer: &NewAdcCustomer) -> Fields {
    let account = &customer.account_address;
    let account_address = Fields::new()
        .some_text("FirstName", &account.first_name)
        .some_text("LastName", &account.last_name)
        .some_text("CompanyName", &account.company_name)
        .some_text("Phone", &account.phone);
    let account_address = address_fields(&account.address)
        .into_nodes()
        .into_iter()
        .fold(account_address, Fields::node);
    Fields::new()
        .group("CustomerAccountAddress", account_address)
        .some_text("CustomerAccountEmail", &customer.email)
        .some_text("CustomerAccountPhone", &customer.phone)
        .some_text("DealerCustomerId", &customer.dealer_customer_id)
        .text("DesiredLoginName", customer.desired_login_name.clone())
        .group(
            "InstallationAddress",
            address_fields(&customer.installation_address),
        )
        .some_text("InstallationTimeZone", &customer.installation_time_zone)
        .some_text("PanelType", &customer.panel_type)
        .some_text("ModemSerialNumber", &customer.modem_serial_number)
        .some_text(
            "CentralStationAccountNumber",
            &customer.central_station.account_number,
        )
        .some_text(
            "CentralStationReceiverNumber",
            &customer.central_station.receiver_number,
        )
        .list(
            "AddOnFeatures",
            "AddOnFeatureEnum",
            &customer.add_on_features,
        )
        .some_text("SalesRepLoginName", &customer.sales_rep_login_name)
        .some_text("InstallerLoginName", &customer.installer_login_name)
        .opt("BranchId", customer.branch_id)
        .opt("PackageId", customer.package_id)
        .opt("BuilderProgramId", customer.builder_program_id)
        .some_text("InstallType", &customer.install_type)
}

pub(super) fn customer_list_input(query: &AdcCustomerQuery) -> Vec<Node> {
    let input = Fields::new()
        .bool("IncludeTermed", query.include_terminated)
        .opt("StartDate", query.start_date.map(xsd_date_time))
        .opt("EndDate", query.end_date.map(xsd_date_time))
        .bool("ExcludeCommitments", query.exclude_commitments)
        .bool("ExcludeCustomers", query.exclude_customers)
        .list("PanelVersions", "PanelVersionEnum", &query.panel_versions)
        .opt(
            "AlternateId",
            query
                .alternate_id
                .as_deref()
                .filter(|s| !s.trim().is_empty()),
        );
    vec![Node::parent("input", input.into_nodes())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::Content;

    fn names(nodes: &[Node]) -> Vec<&str> {
        nodes.iter().map(|n| n.name.as_ref()).collect()
    }

    fn child<'a>(nodes: &'a [Node], name: &str) -> &'a Node {
        nodes.iter().find(|n| n.name == name).unwrap()
    }

    #[test]
    fn create_customer_input_follows_the_published_names() {
        let customer = NewAdcCustomer {
            account_address: AdcAccountAddress {
                first_name: "John".into(),
                last_name: "Smith".into(),
                address: AdcAddress {
                    street1: "1 Main".into(),
                    ..AdcAddress::default()
                },
                ..AdcAccountAddress::default()
            },
            email: "j@example.com".into(),
            desired_login_name: "jsmith".into(),
            installation_address: AdcAddress {
                city: "Springfield".into(),
                ..AdcAddress::default()
            },
            central_station: AdcCentralStationInfo {
                account_number: "A1".into(),
                receiver_number: String::new(),
            },
            add_on_features: vec!["TwoWayVoice".into()],
            package_id: Some(AdcPackageId(12)),
            ..NewAdcCustomer::default()
        };
        let nodes = customer_input(&customer).into_nodes();
        assert_eq!(
            names(&nodes),
            [
                "CustomerAccountAddress",
                "CustomerAccountEmail",
                "DesiredLoginName",
                "InstallationAddress",
                "CentralStationAccountNumber",
                "AddOnFeatures",
                "PackageId"
            ]
        );
        match &child(&nodes, "CustomerAccountAddress").content {
            Content::Children(c) => assert_eq!(names(c), ["FirstName", "LastName", "Street1"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            child(&nodes, "AddOnFeatures").content,
            Content::Children(vec![Node::text("AddOnFeatureEnum", "TwoWayVoice")])
        );
        assert_eq!(
            child(&nodes, "PackageId").content,
            Content::Text("12".into())
        );
    }

    #[test]
    fn customer_list_input_writes_dates_as_xsd_date_times() {
        let query = AdcCustomerQuery {
            include_terminated: true,
            start_date: Some("2024-01-02T03:04:05Z".parse().unwrap()),
            panel_versions: vec!["IQPanel2".into()],
            ..AdcCustomerQuery::default()
        };
        let body = customer_list_input(&query);
        let Content::Children(input) = &body[0].content else {
            panic!("no input");
        };
        assert_eq!(
            names(input),
            [
                "IncludeTermed",
                "StartDate",
                "ExcludeCommitments",
                "ExcludeCustomers",
                "PanelVersions"
            ]
        );
        assert_eq!(
            child(input, "StartDate").content,
            Content::Text("2024-01-02T03:04:05Z".into())
        );
        assert_eq!(
            child(input, "IncludeTermed").content,
            Content::Text("true".into())
        );
    }
}
