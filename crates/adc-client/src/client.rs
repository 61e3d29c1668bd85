//! `AdcApi` over the SOAP operations of `ADC-API.md`: what each method sends
//! and how its result becomes a domain record.
//!
//! Results are read by element name along a few alternative paths, because
//! public scripts show only some of ADC's result fields; an element we do
//! not know is ignored and one that is missing leaves its field empty.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use domain::adc::*;
use domain::upstream::CallObserver;
use tokio::sync::OnceCell;

use crate::operation::*;
use crate::soap::parse_bool;
use crate::transport::Transport;
use crate::unpublished;
use crate::xml::{Element, Fields, Node};

/// An ADC connection: one endpoint, one login.
///
/// Made by [`crate::HttpAdcConnector`], whose pool and rate limiter it shares.
/// It remembers ADC's `CallerVersion` and the dealer id after the first call
/// that needs them.
pub struct HttpAdcClient {
    transport: Transport,
    caller_version: OnceCell<i32>,
    dealer_id: OnceCell<i64>,
}

impl std::fmt::Debug for HttpAdcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `AdcTarget`'s Debug leaves the password out.
        f.debug_struct("HttpAdcClient")
            .field("target", self.transport.target())
            .finish_non_exhaustive()
    }
}

impl HttpAdcClient {
    pub(crate) fn new(
        channel: upstream_http::Channel,
        target: AdcTarget,
        observer: Option<Arc<dyn CallObserver>>,
    ) -> Self {
        Self {
            transport: Transport::new(channel, target, observer),
            caller_version: OnceCell::new(),
            dealer_id: OnceCell::new(),
        }
    }

    pub fn target(&self) -> &AdcTarget {
        self.transport.target()
    }

    /// The dealer id of the login (`GetDealerId`), fetched once.
    pub async fn dealer_id(&self) -> AdcResult<i64> {
        self.dealer_id
            .get_or_try_init(|| self.fetch_dealer_id())
            .await
            .copied()
    }

    async fn fetch_dealer_id(&self) -> AdcResult<i64> {
        let result = self.transport.call(&GET_DEALER_ID, Vec::new()).await?;
        scalar(&GET_DEALER_ID, result.as_ref())
    }

    async fn caller_version(&self) -> AdcResult<i32> {
        self.caller_version
            .get_or_try_init(|| self.fetch_caller_version())
            .await
            .copied()
    }

    async fn fetch_caller_version(&self) -> AdcResult<i32> {
        let result = self
            .transport
            .call(&GET_LATEST_CALLER_VERSION, Vec::new())
            .await?;
        scalar(&GET_LATEST_CALLER_VERSION, result.as_ref())
    }
}

/// A result that is one number (`<GetDealerIdResult>123</GetDealerIdResult>`).
fn scalar<T: std::str::FromStr>(op: &Operation, result: Option<&Element>) -> AdcResult<T> {
    let text = result.and_then(Element::value).unwrap_or_default();
    text.parse().map_err(|_| {
        let text = upstream_http::excerpt(text);
        AdcError::BadAnswer(format!("{} answered {text:?}, not a number", op.name))
    })
}

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

fn xsd_date_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
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

fn customer_list_input(query: &AdcCustomerQuery) -> Vec<Node> {
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

/// `<int>1</int><int>2</int>` (an `ArrayOfInt`), or items with a `CustomerId`.
fn read_customer_ids(result: Option<&Element>) -> AdcResult<Vec<AdcCustomerId>> {
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

fn read_customer(requested: AdcCustomerId, result: Option<&Element>) -> AdcResult<AdcCustomer> {
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
    let service_plan = id_of(
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
    });
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
        service_plan,
        add_on_features,
        sales_rep_login_name: text_of(r, &["SalesRepLoginName", "SalesRep/RepLoginName"]),
        sales_rep_support_id: id_of(
            r,
            &["SalesRepSupportId", "SalesRepId", "SalesRep/SupportId"],
        )
        .filter(|id| *id > 0),
        installer_login_name: text_of(r, &["InstallerLoginName"]),
        install_type: text_of(r, &["InstallType"]),
        central_station: AdcCentralStationInfo {
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
        },
        two_way_voice,
        join_date: date_of(r, &["JoinDate"]),
        created_date: date_of(r, &["CreatedDate", "CustomerCreatedDate"]),
        last_modified_date: date_of(r, &["LastModifiedDate", "ModifiedDate"]),
    })
}

fn read_rep(el: &Element) -> Option<AdcRep> {
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

fn read_service_plans(result: Option<&Element>) -> Vec<ServicePlan> {
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

#[async_trait]
impl AdcApi for HttpAdcClient {
    async fn check_credentials(&self) -> AdcResult<()> {
        // Always a call: a check must reach ADC even when the id is known.
        let dealer_id = self.fetch_dealer_id().await?;
        let _ = self.dealer_id.set(dealer_id);
        Ok(())
    }

    async fn latest_caller_version(&self) -> AdcResult<i32> {
        self.caller_version().await
    }

    async fn customer_ids(&self, query: &AdcCustomerQuery) -> AdcResult<Vec<AdcCustomerId>> {
        let result = self
            .transport
            .call(&GET_CUSTOMER_LIST_V2, customer_list_input(query))
            .await?;
        read_customer_ids(result.as_ref())
    }

    async fn customer(&self, id: AdcCustomerId) -> AdcResult<AdcCustomer> {
        let caller_version = self.caller_version().await?;
        let input = Fields::new()
            .text("CallerVersion", caller_version.to_string())
            .text("CustomerId", id.to_string());
        let body = vec![Node::parent("input", input.into_nodes())];
        let result = self.transport.call(&GET_CUSTOMER_INFO_V2, body).await?;
        read_customer(id, result.as_ref())
    }

    async fn create_customer(&self, customer: &NewAdcCustomer) -> AdcResult<AdcCustomerId> {
        let body = vec![Node::parent("input", customer_input(customer).into_nodes())];
        let result = self.transport.call(&CREATE_CUSTOMER, body).await?;
        result
            .as_ref()
            .and_then(|r| id_of(r, &["CustomerId"]))
            .filter(|id| *id > 0)
            .map(AdcCustomerId)
            .ok_or_else(|| {
                AdcError::BadAnswer("CreateCustomer succeeded without a CustomerId".into())
            })
    }

    async fn create_commitment(
        &self,
        commitment: &NewAdcCommitment,
    ) -> AdcResult<CreatedAdcCommitment> {
        let result = self
            .transport
            .call(
                &unpublished::CREATE_COMMITMENT,
                unpublished::create_commitment_body(commitment),
            )
            .await?;
        unpublished::read_created_commitment(result.as_ref())
    }

    async fn terminate_customer(&self, id: AdcCustomerId) -> AdcResult<()> {
        self.transport
            .call(
                &TERMINATE_CUSTOMER,
                unpublished::terminate_customer_body(id),
            )
            .await
            .map(drop)
    }

    async fn change_service_plan(
        &self,
        id: AdcCustomerId,
        package_id: AdcPackageId,
        add_ons: Option<&[String]>,
    ) -> AdcResult<()> {
        self.transport
            .call(
                &unpublished::CHANGE_SERVICE_PLAN,
                unpublished::change_service_plan_body(id, package_id, add_ons),
            )
            .await
            .map(drop)
    }

    async fn update_central_station_info(
        &self,
        id: AdcCustomerId,
        info: &AdcCentralStationInfo,
    ) -> AdcResult<()> {
        let input = Fields::new()
            .text("CustomerId", id.to_string())
            .text("AccountNumber", info.account_number.clone())
            .text("ReceiverNumber", info.receiver_number.clone());
        let body = vec![Node::parent("input", input.into_nodes())];
        self.transport
            .call(&UPDATE_CENTRAL_STATION_INFO_V2, body)
            .await
            .map(drop)
    }

    async fn reps(&self) -> AdcResult<Vec<AdcRep>> {
        let result = self.transport.call(&GET_REP_LIST, Vec::new()).await?;
        Ok(result
            .map(|r| r.children.iter().filter_map(read_rep).collect())
            .unwrap_or_default())
    }

    async fn service_plans(&self) -> AdcResult<Vec<ServicePlan>> {
        let dealer_id = self.dealer_id().await?;
        let caller_version = self.caller_version().await?;
        let input = Fields::new()
            .text("DealerId", dealer_id.to_string())
            .text("CallerVersion", caller_version.to_string());
        let body = vec![Node::parent("input", input.into_nodes())];
        let result = self.transport.call(&GET_PACKAGE_IDS, body).await?;
        Ok(read_service_plans(result.as_ref()))
    }

    async fn permissions(&self) -> AdcResult<AdcPermissions> {
        let result = self
            .transport
            .call(&unpublished::GET_DEALER_PERMISSIONS, Vec::new())
            .await?;
        Ok(unpublished::read_permissions(result.as_ref()))
    }

    async fn sub_dealers(&self) -> AdcResult<Vec<AdcSubDealer>> {
        let result = self
            .transport
            .call(&unpublished::GET_SUB_DEALER_LIST, Vec::new())
            .await?;
        Ok(unpublished::read_sub_dealers(result.as_ref()))
    }

    async fn roles(&self) -> AdcResult<Vec<AdcRole>> {
        let result = self
            .transport
            .call(&unpublished::GET_ROLE_LIST, Vec::new())
            .await?;
        Ok(unpublished::read_roles(result.as_ref()))
    }

    async fn builder_programs(&self) -> AdcResult<Vec<AdcBuilderProgram>> {
        let result = self
            .transport
            .call(&unpublished::GET_BUILDER_PROGRAM_LIST, Vec::new())
            .await?;
        Ok(unpublished::read_builder_programs(result.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{self, Content};

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
