//! Reading ADC's results into domain records: customers, reps, service
//! plans, and the value helpers the readers share.
//!
//! Results are read by element name along a few alternative paths, because
//! public scripts show only some of ADC's result fields; an element we do
//! not know is ignored and one that is missing leaves its field empty.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};
use domain::adc::*;

use crate::soap::parse_bool;
use crate::unpublished;
use crate::xml::Element;

/// The first non-blank value among alternative paths (`"ModemInfo/PanelType"`).
pub(crate) fn value_at<'a>(el: &'a Element, paths: &[&str]) -> Option<&'a str> {
    paths.iter().find_map(|path| {
        let steps: Vec<&str> = path.split('/').collect();
        el.at(&steps).and_then(Element::value)
    })
}

pub(crate) fn text_of(el: &Element, paths: &[&str]) -> String {
    value_at(el, paths).unwrap_or_default().to_owned()
}

/// An integer; blank or unreadable counts as absent.
pub(crate) fn id_of(el: &Element, paths: &[&str]) -> Option<i64> {
    value_at(el, paths).and_then(|v| v.parse().ok())
}

fn bool_of(el: &Element, paths: &[&str]) -> bool {
    value_at(el, paths).and_then(parse_bool).unwrap_or(false)
}

/// An `xsd:dateTime` (with or without an offset; without one it is taken as
/// UTC) or `xsd:date`. .NET's `DateTime.MinValue` means "never".
fn date_of(el: &Element, paths: &[&str]) -> Option<DateTime<Utc>> {
    let text = value_at(el, paths)?;
    let at = DateTime::parse_from_rfc3339(text)
        .map(|d| d.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").map(|d| d.and_utc())
        })
        .or_else(|_| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
        })
        .ok()?;
    (at.year() > 1).then_some(at)
}

fn address_of(el: Option<&Element>) -> AdcAddress {
    let Some(el) = el else {
        return AdcAddress::default();
    };
    AdcAddress {
        street1: text_of(el, &["Street1"]),
        street2: text_of(el, &["Street2"]),
        city: text_of(el, &["City"]),
        state: text_of(el, &["State"]),
        zip: text_of(el, &["Zip", "ZipCode", "PostalCode"]),
        country_id: text_of(el, &["CountryId", "Country"]),
    }
}

/// `<int>1</int><int>2</int>` (an `ArrayOfInt`), or items with a `CustomerId`.
pub(super) fn read_customer_ids(result: Option<&Element>) -> AdcResult<Vec<AdcCustomerId>> {
    let Some(result) = result else {
        return Ok(Vec::new());
    };
    result
        .children
        .iter()
        .filter_map(|item| {
            let text = if item.children.is_empty() {
                item.value()
            } else {
                value_at(item, &["CustomerId"])
            }?;
            Some(text.parse().map(AdcCustomerId).map_err(|_| {
                AdcError::BadAnswer(format!(
                    "GetCustomerList_V2 listed {:?}, not a customer id",
                    upstream_http::excerpt(text)
                ))
            }))
        })
        .collect()
}

/// The sub-dealer of a customer or rep: a `SubDealer` element, or
/// `SubDealerId`/`SubDealerName`; id 0 is the dealer itself.
fn sub_dealer_of(el: &Element) -> Option<AdcSubDealer> {
    let (id, name) = match el.child("SubDealer") {
        Some(sd) => unpublished::id_name(sd, &["SubDealerId", "Id"])?,
        None => (
            id_of(el, &["SubDealerId"])?,
            text_of(el, &["SubDealerName"]),
        ),
    };
    (id > 0).then_some(AdcSubDealer { id, name })
}

/// The texts of a list's items (`<AddOnFeatures><AddOnFeature>x</AddOnFeature>...`).
fn list_of(el: &Element, path: &str) -> Vec<String> {
    let steps: Vec<&str> = path.split('/').collect();
    el.at(&steps)
        .map(|list| {
            list.children
                .iter()
                .filter_map(Element::value)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn read_customer(
    requested: AdcCustomerId,
    result: Option<&Element>,
) -> AdcResult<AdcCustomer> {
    let Some(r) = result else {
        return Err(AdcError::NotFound(format!("customer {requested}")));
    };
    let customer_id = match value_at(r, &["CustomerId"]) {
        None => requested,
        Some(text) => text.parse().map(AdcCustomerId).map_err(|_| {
            AdcError::BadAnswer(format!(
                "GetCustomerInfo_V2 gave the customer id {:?}",
                upstream_http::excerpt(text)
            ))
        })?,
    };
    let (add_on_features, two_way_voice) = add_ons_of(r);
    Ok(AdcCustomer {
        customer_id,
        dealer_customer_id: text_of(r, &["DealerCustomerId"]),
        login_name: text_of(r, &["LoginName", "CustomerLoginName"]),
        is_terminated: bool_of(r, &["IsTerminated"]),
        terminated_date: date_of(r, &["TerminatedDate", "TerminationDate"]),
        is_commitment: bool_of(r, &["IsCommitment", "IsBuilderCommitment"]),
        commitment_id: id_of(r, &["CommitmentId"]).filter(|id| *id > 0),
        builder_program_id: id_of(r, &["BuilderProgramId"]).filter(|id| *id > 0),
        sub_dealer: sub_dealer_of(r),
        first_name: text_of(
            r,
            &[
                "FirstName",
                "PrimaryContact/FirstName",
                "CustomerAccountAddress/FirstName",
            ],
        ),
        last_name: text_of(
            r,
            &[
                "LastName",
                "PrimaryContact/LastName",
                "CustomerAccountAddress/LastName",
            ],
        ),
        company_name: text_of(
            r,
            &[
                "CompanyName",
                "CommercialName",
                "CustomerAccountAddress/CompanyName",
            ],
        ),
        email: text_of(r, &["Email", "PrimaryEmail", "CustomerAccountEmail"]),
        phone: text_of(
            r,
            &[
                "Phone",
                "PrimaryPhone",
                "PrimaryPhoneNumber",
                "CustomerAccountPhone",
            ],
        ),
        install_address: address_of(
            r.child("InstallAddress")
                .or_else(|| r.child("InstallationAddress")),
        ),
        time_zone: text_of(r, &["TimeZone", "InstallationTimeZone"]),
        panel_type: text_of(r, &["ModemInfo/PanelType", "PanelType"]),
        modem_serial_number: text_of(
            r,
            &[
                "ModemInfo/ModemSerialNumber",
                "ModemInfo/ModemSerial",
                "ModemSerialNumber",
            ],
        ),
        service_plan: service_plan_of(r),
        add_on_features,
        sales_rep_login_name: text_of(r, &["SalesRepLoginName", "SalesRep/RepLoginName"]),
        sales_rep_support_id: id_of(
            r,
            &["SalesRepSupportId", "SalesRepId", "SalesRep/SupportId"],
        )
        .filter(|id| *id > 0),
        installer_login_name: text_of(r, &["InstallerLoginName"]),
        install_type: text_of(r, &["InstallType"]),
        central_station: central_station_of(r),
        two_way_voice,
        join_date: date_of(r, &["JoinDate"]),
        created_date: date_of(r, &["CreatedDate", "CustomerCreatedDate"]),
        last_modified_date: date_of(r, &["LastModifiedDate", "ModifiedDate"]),
    })
}

/// The customer's service plan: its package, read along the paths ADC's
/// answers have shown; none when no package id above 0 is given.
fn service_plan_of(r: &Element) -> Option<ServicePlan> {
    id_of(
        r,
        &[
            "ServicePlan/PackageId",
            "ServicePlanInfo/PackageId",
            "PackageId",
        ],
    )
    .filter(|id| *id > 0)
    .map(|id| ServicePlan {
        package_id: AdcPackageId(id),
        name: text_of(
            r,
            &[
                "ServicePlanName",
                "ServicePlan/Name",
                "ServicePlan/PackageName",
                "ServicePlanInfo/PackageName",
                "ServicePlanInfo/PackageDescription",
                "PackageName",
            ],
        ),
    })
}

/// The add-on names, and whether two-way voice is on (an add-on, or a flag
/// of its own in some answers).
fn add_ons_of(r: &Element) -> (Vec<String>, bool) {
    let mut add_on_features = list_of(r, "AddOnFeatures");
    if add_on_features.is_empty() {
        add_on_features = list_of(r, "ServicePlanInfo/AddOns");
    }
    let two_way_voice = add_on_features
        .iter()
        .any(|f| f.eq_ignore_ascii_case("TwoWayVoice"))
        || bool_of(
            r,
            &[
                "TwoWayVoiceEnabled",
                "CentralStationInfo/TwoWayVoiceEnabled",
            ],
        );
    (add_on_features, two_way_voice)
}

fn central_station_of(r: &Element) -> AdcCentralStationInfo {
    AdcCentralStationInfo {
        account_number: text_of(
            r,
            &[
                "CentralStationAccountNumber",
                "CentralStationInfo/AccountNumber",
            ],
        ),
        receiver_number: text_of(
            r,
            &[
                "CentralStationReceiverNumber",
                "CentralStationInfo/ReceiverNumber",
            ],
        ),
    }
}

pub(super) fn read_rep(el: &Element) -> Option<AdcRep> {
    let login_name = value_at(el, &["RepLoginName", "LoginName"])?.to_owned();
    let address = el.child("Address").or_else(|| el.child("RepAddress"));
    let roles = el
        .child("Roles")
        .map(|roles| {
            roles
                .children
                .iter()
                .filter_map(|role| match unpublished::id_name(role, &["RoleId", "Id"]) {
                    Some((id, name)) => Some(AdcRole { id, name }),
                    // A role given by name only.
                    None => role.value().map(|name| AdcRole {
                        id: 0,
                        name: name.to_owned(),
                    }),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(AdcRep {
        support_id: id_of(el, &["SupportId", "RepSupportId", "RepId"]).filter(|id| *id > 0),
        login_name,
        first_name: text_of(
            el,
            &["FirstName", "Address/FirstName", "RepAddress/FirstName"],
        ),
        last_name: text_of(el, &["LastName", "Address/LastName", "RepAddress/LastName"]),
        email: text_of(el, &["Email", "RepEmail"]),
        phone: text_of(
            el,
            &[
                "Phone",
                "RepPhoneNumber",
                "PhoneNumber",
                "Address/Phone",
                "RepAddress/Phone",
            ],
        ),
        address: address_of(address),
        roles,
        sub_dealer: sub_dealer_of(el),
        active: value_at(el, &["IsActive", "Active", "Enabled"])
            .and_then(parse_bool)
            .unwrap_or(true),
        user_field: text_of(el, &["UserField"]),
    })
}

pub(super) fn read_service_plans(result: Option<&Element>) -> Vec<ServicePlan> {
    let Some(result) = result else {
        return Vec::new();
    };
    result
        .children
        .iter()
        .filter_map(|item| {
            let id = id_of(item, &["PackageId", "Id"])?;
            Some(ServicePlan {
                package_id: AdcPackageId(id),
                name: text_of(
                    item,
                    &["PackageName", "Name", "Description", "PackageDescription"],
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml;

    fn el(xml: &str) -> Element {
        xml::parse(xml.as_bytes()).unwrap()
    }

    #[test]
    fn reads_a_customer() {
        let r = el(
            r#"<GetCustomerInfo_V2Result xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
            <CustomerId>10000001</CustomerId><LoginName>jsmith</LoginName>
            <DealerCustomerId>B-17</DealerCustomerId><IsTerminated>true</IsTerminated>
            <TerminatedDate>2024-02-03T04:05:06Z</TerminatedDate>
            <IsCommitment>false</IsCommitment><CommitmentId>0</CommitmentId>
            <BuilderProgramId>0</BuilderProgramId>
            <SubDealerId>3</SubDealerId><SubDealerName>North</SubDealerName>
            <FirstName>John</FirstName><LastName>Smith</LastName>
            <CompanyName>Smith &amp; Sons</CompanyName><Email>j@example.com</Email>
            <Phone>555-0100</Phone>
            <InstallAddress><Street1>1 Main St</Street1><Street2/><City>Springfield</City>
              <State>IL</State><Zip>62701</Zip><CountryId>USA</CountryId></InstallAddress>
            <TimeZone>Central</TimeZone>
            <ModemInfo><PanelType>IQPanel2</PanelType><ModemSerialNumber>SN1</ModemSerialNumber></ModemInfo>
            <PackageId>12</PackageId><ServicePlanName>Interactive Gold</ServicePlanName>
            <AddOnFeatures><AddOnFeature>Video</AddOnFeature><AddOnFeature>TwoWayVoice</AddOnFeature></AddOnFeatures>
            <SalesRepLoginName>rep1</SalesRepLoginName><SalesRepSupportId>501</SalesRepSupportId>
            <CentralStationAccountNumber>A123</CentralStationAccountNumber>
            <CentralStationReceiverNumber>800-555-0199</CentralStationReceiverNumber>
            <JoinDate>2020-01-02T03:04:05Z</JoinDate><CreatedDate>2020-01-02T03:04:05Z</CreatedDate>
            <LastModifiedDate>0001-01-01T00:00:00</LastModifiedDate>
            <SomethingNew><Deep>ignored</Deep></SomethingNew>
          </GetCustomerInfo_V2Result>"#,
        );
        let c = read_customer(AdcCustomerId(1), Some(&r)).unwrap();
        assert_eq!(c.customer_id, AdcCustomerId(10000001));
        assert_eq!(c.login_name, "jsmith");
        assert_eq!(c.dealer_customer_id, "B-17");
        assert!(c.is_terminated);
        assert!(c.terminated_date.is_some());
        assert!(!c.is_commitment);
        assert_eq!(c.commitment_id, None);
        assert_eq!(c.builder_program_id, None);
        assert_eq!(
            c.sub_dealer,
            Some(AdcSubDealer {
                id: 3,
                name: "North".into()
            })
        );
        assert_eq!(c.company_name, "Smith & Sons");
        assert_eq!(c.email, "j@example.com");
        assert_eq!(c.phone, "555-0100");
        assert_eq!(c.install_address.street1, "1 Main St");
        assert_eq!(c.install_address.street2, "");
        assert_eq!(c.install_address.zip, "62701");
        assert_eq!(c.time_zone, "Central");
        assert_eq!(c.panel_type, "IQPanel2");
        assert_eq!(c.modem_serial_number, "SN1");
        assert_eq!(
            c.service_plan,
            Some(ServicePlan {
                package_id: AdcPackageId(12),
                name: "Interactive Gold".into()
            })
        );
        assert_eq!(c.add_on_features, ["Video", "TwoWayVoice"]);
        assert!(c.two_way_voice);
        assert_eq!(c.sales_rep_login_name, "rep1");
        assert_eq!(c.sales_rep_support_id, Some(501));
        assert_eq!(c.central_station.account_number, "A123");
        assert_eq!(c.central_station.receiver_number, "800-555-0199");
        assert_eq!(
            c.join_date.unwrap().to_rfc3339(),
            "2020-01-02T03:04:05+00:00"
        );
        assert_eq!(c.last_modified_date, None, ".NET's MinValue is no date");
    }

    #[test]
    fn reads_a_sparse_customer_in_another_shape() {
        let r = el(
            r#"<R><IsTerminated>false</IsTerminated><SubDealerId>0</SubDealerId>
            <PrimaryEmail>a@b.c</PrimaryEmail><PackageId>0</PackageId>
            <CentralStationInfo><AccountNumber>9</AccountNumber><TwoWayVoiceEnabled>true</TwoWayVoiceEnabled></CentralStationInfo>
            <ModemInfo><PanelType>Concord</PanelType><ModemSerial>X</ModemSerial></ModemInfo>
            <JoinDate>2019-05-01</JoinDate></R>"#,
        );
        let c = read_customer(AdcCustomerId(5), Some(&r)).unwrap();
        assert_eq!(
            c.customer_id,
            AdcCustomerId(5),
            "the requested id stands in"
        );
        assert_eq!(c.sub_dealer, None, "sub-dealer 0 is the dealer itself");
        assert_eq!(c.service_plan, None);
        assert_eq!(c.email, "a@b.c");
        assert_eq!(c.central_station.account_number, "9");
        assert!(c.two_way_voice);
        assert_eq!(c.modem_serial_number, "X");
        assert_eq!(c.first_name, "");
        assert!(c.join_date.is_some());

        assert!(matches!(
            read_customer(
                AdcCustomerId(5),
                Some(&el("<R><CustomerId>x</CustomerId></R>"))
            ),
            Err(AdcError::BadAnswer(_))
        ));
        assert!(matches!(
            read_customer(AdcCustomerId(5), None),
            Err(AdcError::NotFound(_))
        ));
    }

    #[test]
    fn reads_customer_ids() {
        let r = el("<R><int>3</int><int> 4 </int><CustomerInfo><CustomerId>5</CustomerId></CustomerInfo></R>");
        assert_eq!(
            read_customer_ids(Some(&r)).unwrap(),
            [AdcCustomerId(3), AdcCustomerId(4), AdcCustomerId(5)]
        );
        assert_eq!(read_customer_ids(None).unwrap(), []);
        assert!(read_customer_ids(Some(&el("<R><int>x</int></R>"))).is_err());
    }

    #[test]
    fn reads_reps() {
        let r = el(
            r#"<Rep><SupportId>501</SupportId><RepLoginName>rep1</RepLoginName>
            <FirstName>Ann</FirstName><LastName>Lee</LastName><Email>ann@example.com</Email>
            <Phone>555-0101</Phone><Address><Street1>2 Oak</Street1><City>Town</City></Address>
            <SubDealerId>2</SubDealerId><SubDealerName>South</SubDealerName>
            <Roles><Role><RoleId>4</RoleId><Name>Sales Rep</Name></Role><Role>Technician</Role></Roles>
            <IsActive>false</IsActive><UserField>u1</UserField></Rep>"#,
        );
        let rep = read_rep(&r).unwrap();
        assert_eq!(rep.support_id, Some(501));
        assert_eq!(rep.login_name, "rep1");
        assert_eq!(rep.first_name, "Ann");
        assert_eq!(rep.phone, "555-0101");
        assert_eq!(rep.address.street1, "2 Oak");
        assert_eq!(rep.sub_dealer.unwrap().name, "South");
        assert_eq!(
            rep.roles,
            [
                AdcRole {
                    id: 4,
                    name: "Sales Rep".into()
                },
                AdcRole {
                    id: 0,
                    name: "Technician".into()
                }
            ]
        );
        assert!(!rep.active);
        assert_eq!(rep.user_field, "u1");
        // The seed's shape: names under RepAddress, the login alone is required.
        let r = el("<Rep><RepLoginName>x</RepLoginName><RepAddress><FirstName>F</FirstName><Phone>1</Phone></RepAddress></Rep>");
        let rep = read_rep(&r).unwrap();
        assert_eq!((rep.first_name.as_str(), rep.phone.as_str()), ("F", "1"));
        assert!(rep.active);
        assert!(read_rep(&el("<Rep><FirstName>F</FirstName></Rep>")).is_none());
    }

    #[test]
    fn reads_service_plans() {
        let r = el("<R><PackageInfo><PackageId>1</PackageId><Name>Basic</Name></PackageInfo><PackageInfo><PackageId>2</PackageId><PackageName>Gold</PackageName></PackageInfo><Junk/></R>");
        assert_eq!(
            read_service_plans(Some(&r)),
            [
                ServicePlan {
                    package_id: AdcPackageId(1),
                    name: "Basic".into()
                },
                ServicePlan {
                    package_id: AdcPackageId(2),
                    name: "Gold".into()
                }
            ]
        );
    }
}
