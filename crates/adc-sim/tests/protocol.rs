//! The SOAP protocol as a client sees it, with hand-written envelopes.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn wrong_credentials_get_an_authentication_fault() {
    let sim = start(5).await;
    let c = Client::new(&sim);
    let body = r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Header>
    <Authentication xmlns="http://www.alarm.com/WebServices">
      <User>dealer-integration</User>
      <Password>wrong</Password>
      <TwoFactorDeviceId />
    </Authentication>
  </soap:Header>
  <soap:Body>
    <GetCustomerList xmlns="http://www.alarm.com/WebServices">
      <includeTermed>true</includeTermed>
    </GetCustomerList>
  </soap:Body>
</soap:Envelope>"#;
    let r = c.post_raw(CM, Some("GetCustomerList"), body.into()).await;
    assert_eq!(r.status, 500);
    assert!(r.content_type.starts_with("text/xml"), "{}", r.content_type);
    assert_eq!(r.one("faultcode").as_deref(), Some("soap:Client"));
    assert_eq!(
        r.faultstring().as_deref(),
        Some("Authentication failed: invalid username or password")
    );
    assert!(r.all("int").is_empty());

    // Unknown user, and no header at all.
    let r = c
        .post_raw(
            DM,
            Some("GetDealerId"),
            envelope_as("nobody", PASSWORD, "GetDealerId", ""),
        )
        .await;
    assert!(r
        .faultstring()
        .unwrap()
        .starts_with("Authentication failed"));
    let no_header = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Body><GetDealerId xmlns="http://www.alarm.com/WebServices" /></soap:Body>
</soap:Envelope>"#;
    let r = c.post_raw(DM, Some("GetDealerId"), no_header.into()).await;
    assert_eq!(r.status, 500);
    assert!(r
        .faultstring()
        .unwrap()
        .starts_with("Authentication failed"));
    // Refused calls are counted but did not succeed.
    let stats = c.stats().await;
    assert_eq!(stats["requests"]["GetCustomerList"], 1);
    assert_eq!(stats["requests"]["GetDealerId"], 2);
    assert!(stats["succeeded"].as_object().unwrap().is_empty());
}

#[tokio::test]
async fn customer_list_honours_include_termed() {
    let sim = start(500).await;
    let c = Client::new(&sim);
    let all = c
        .call(CM, "GetCustomerList", "<includeTermed>true</includeTermed>")
        .await;
    assert_eq!(all.status, 200, "{}", all.body);
    let all = all.ints();
    assert_eq!(all.len(), 500);
    assert_eq!(all[0], 10_000_001);

    let live = c
        .call(
            CM,
            "GetCustomerList",
            "<includeTermed>false</includeTermed>",
        )
        .await
        .ints();
    let terminated = sim
        .state()
        .customers()
        .iter()
        .filter(|c| c.is_terminated)
        .count();
    assert!((25..=80).contains(&terminated), "{terminated}");
    assert_eq!(live.len(), 500 - terminated);
    assert!(live.iter().all(|id| all.contains(id)));
    // An absent includeTermed is false, as for a .NET bool.
    assert_eq!(c.call(CM, "GetCustomerList", "").await.ints(), live);
}

#[tokio::test]
async fn customer_list_v2_filters() {
    let sim = start(400).await;
    let c = Client::new(&sim);
    let customers = sim.state().customers();
    let count = |f: &dyn Fn(&adc_sim::Customer) -> bool| customers.iter().filter(|c| f(c)).count();

    let r = c
        .call(
            CM,
            "GetCustomerList_V2",
            "<IncludeTermed>true</IncludeTermed><ExcludeCommitments>true</ExcludeCommitments>",
        )
        .await;
    assert_eq!(r.ints().len(), count(&|c| !c.is_commitment));
    let r = c
        .call(
            CM,
            "GetCustomerList_V2",
            "<IncludeTermed>false</IncludeTermed><ExcludeCustomers>true</ExcludeCustomers>",
        )
        .await;
    let commitments = count(&|c| c.is_commitment && !c.is_terminated);
    assert!(commitments > 5, "{commitments}");
    assert_eq!(r.ints().len(), commitments);

    let r = c
        .call(
            CM,
            "GetCustomerList_V2",
            "<IncludeTermed>true</IncludeTermed>\
             <PanelVersions><string>IQPanel4</string><string>Vista</string></PanelVersions>",
        )
        .await;
    assert_eq!(
        r.ints().len(),
        count(&|c| c.panel_type == "IQPanel4" || c.panel_type == "Vista")
    );

    let target = customers
        .iter()
        .find(|c| !c.dealer_customer_id.is_empty())
        .unwrap();
    let r = c
        .call(
            CM,
            "GetCustomerList_V2",
            &format!(
                "<IncludeTermed>true</IncludeTermed><AlternateId>{}</AlternateId>",
                target.dealer_customer_id
            ),
        )
        .await;
    assert_eq!(r.ints(), vec![target.customer_id]);

    // 2024: created or modified that year.
    let r = c
        .call(
            CM,
            "GetCustomerList_V2",
            "<IncludeTermed>true</IncludeTermed><StartDate>2024-01-01T00:00:00</StartDate>\
             <EndDate>2025-01-01T00:00:00Z</EndDate>",
        )
        .await;
    let year = |t: chrono::DateTime<chrono::Utc>| t.format("%Y").to_string() == "2024";
    assert_eq!(
        r.ints().len(),
        count(&|c| year(c.created) || year(c.modified))
    );

    let r = c
        .call(
            CM,
            "GetCustomerList_V2",
            "<IncludeTermed>yes</IncludeTermed>",
        )
        .await;
    assert_eq!(r.status, 500);
    assert!(r.faultstring().unwrap().contains("IncludeTermed"));
}

#[tokio::test]
async fn new_and_changed_customers_show_in_a_date_window() {
    let sim = start(200).await;
    let c = Client::new(&sim);
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    let window = format!(
        "<IncludeTermed>true</IncludeTermed><StartDate>{}</StartDate>",
        since.to_rfc3339()
    );
    assert!(c
        .call(CM, "GetCustomerList_V2", &window)
        .await
        .ints()
        .is_empty());

    let added = c
        .admin(Method::POST, "/admin/customers", Some(json!({"count": 10})))
        .await;
    let added: Vec<i64> = added
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["customer_id"].as_i64().unwrap())
        .collect();
    assert_eq!(added.len(), 10);
    assert_eq!(added[0], 10_000_201);

    // A dealer changes one old record in the portal.
    c.admin(
        Method::PATCH,
        "/admin/customers/10000007",
        Some(json!({"first_name": "Renamed"})),
    )
    .await;

    let mut expected = added.clone();
    expected.insert(0, 10_000_007);
    assert_eq!(
        c.call(CM, "GetCustomerList_V2", &window).await.ints(),
        expected
    );
    let info = c
        .call(
            CM,
            "GetCustomerInfo_V2",
            "<CallerVersion>2</CallerVersion><CustomerId>10000007</CustomerId>",
        )
        .await;
    assert_eq!(info.one("FirstName").as_deref(), Some("Renamed"));

    // Explicit records: what is given wins, the rest is generated.
    let one = c
        .admin(
            Method::POST,
            "/admin/customers",
            Some(json!([{"first_name": "Ada", "last_name": "Byron", "sub_dealer_id": 203, "is_terminated": true}])),
        )
        .await;
    assert_eq!(one[0]["first_name"], "Ada");
    assert_eq!(one[0]["is_terminated"], true);
    assert_eq!(sim.state().customer_count(), 211);
    let stats = c.stats().await;
    assert_eq!(stats["customers"], 211);
}

#[tokio::test]
async fn customer_info_of_known_and_unknown_customers() {
    let sim = start(50).await;
    let c = Client::new(&sim);
    let version = c.call(CM, "GetLatestCallerVersion", "").await;
    assert_eq!(
        version.one("GetLatestCallerVersionResult").as_deref(),
        Some("2")
    );

    let want = sim.state().customer(10_000_003).unwrap();
    let r = c
        .call(
            CM,
            "GetCustomerInfo_V2",
            "<CallerVersion>2</CallerVersion><CustomerId>10000003</CustomerId>",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r
        .body
        .contains("<GetCustomerInfo_V2Response xmlns=\"http://www.alarm.com/WebServices\">"));
    assert_eq!(r.one("CustomerId").as_deref(), Some("10000003"));
    assert_eq!(r.one("FirstName").unwrap(), want.first_name);
    assert_eq!(r.one("LastName").unwrap(), want.last_name);
    assert_eq!(r.one("Email").unwrap(), want.email);
    assert_eq!(r.one("Phone").unwrap(), want.phone);
    assert_eq!(r.one("City").unwrap(), want.install_address.city);
    assert_eq!(r.one("Street1").unwrap(), want.install_address.street1);
    assert_eq!(r.one("Zip").unwrap(), want.install_address.zip);
    assert_eq!(r.one("PanelType").unwrap(), want.panel_type);
    assert_eq!(
        r.one("ModemSerialNumber").unwrap(),
        want.modem_serial_number
    );
    assert_eq!(
        r.one("IsTerminated").unwrap(),
        want.is_terminated.to_string()
    );
    assert_eq!(
        r.one("SalesRepLoginName").unwrap(),
        want.sales_rep_login_name
    );
    assert_eq!(
        r.one("SubDealerId").unwrap(),
        want.sub_dealer_id.to_string()
    );
    assert!(!r.one("SubDealerName").unwrap().is_empty());
    assert_eq!(r.one("PackageId").unwrap(), want.package_id.to_string());
    assert_eq!(r.all("AddOnFeature"), want.add_on_features);
    assert_eq!(
        r.one("CentralStationAccountNumber").unwrap(),
        want.central_station_account_number
    );
    assert!(r.one("JoinDate").unwrap().starts_with("20"));

    let r = c
        .call(
            CM,
            "GetCustomerInfo_V2",
            "<CallerVersion>2</CallerVersion><CustomerId>99999999</CustomerId>",
        )
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.one("faultcode").as_deref(), Some("soap:Client"));
    assert_eq!(r.faultstring().as_deref(), Some("Customer not found"));

    let r = c
        .call(
            CM,
            "GetCustomerInfo_V2",
            "<CustomerId>10000003</CustomerId>",
        )
        .await;
    assert!(r.faultstring().unwrap().contains("CallerVersion"));
    let r = c
        .call(
            CM,
            "GetCustomerInfo_V2",
            "<CallerVersion>2</CallerVersion><CustomerId>abc</CustomerId>",
        )
        .await;
    assert!(r.faultstring().unwrap().contains("CustomerId"));
}

const CREATE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Header>
    <Authentication xmlns="http://www.alarm.com/WebServices">
      <User>dealer-integration</User>
      <Password>not-a-real-password</Password>
      <TwoFactorDeviceId />
    </Authentication>
  </soap:Header>
  <soap:Body>
    <CreateCustomer xmlns="http://www.alarm.com/WebServices">
      <CustomerAccountAddress>
        <FirstName>Grace</FirstName>
        <LastName>Hopper</LastName>
        <CompanyName />
        <Phone>2025550123</Phone>
        <Street1>12 Harbor Rd</Street1>
        <City>Arlington</City>
        <State>VA</State>
        <Zip>22201</Zip>
        <CountryId>USA</CountryId>
      </CustomerAccountAddress>
      <CustomerAccountEmail>grace@example.com</CustomerAccountEmail>
      <CustomerAccountPhone>2025550123</CustomerAccountPhone>
      <DealerCustomerId>ST-9000001</DealerCustomerId>
      <DesiredLoginName>ghopper</DesiredLoginName>
      <InstallationAddress>
        <Street1>12 Harbor Rd</Street1>
        <Street2>Unit 5</Street2>
        <City>Arlington</City>
        <State>VA</State>
        <Zip>22201</Zip>
        <CountryId>USA</CountryId>
      </InstallationAddress>
      <InstallationTimeZone>America/New_York</InstallationTimeZone>
      <PanelType>IQPanel4</PanelType>
      <ModemSerialNumber>ABC123XYZ</ModemSerialNumber>
      <CentralStationAccountNumber>C77001</CentralStationAccountNumber>
      <CentralStationReceiverNumber>8005550100</CentralStationReceiverNumber>
      <AddOnFeatures><AddOnFeature>TwoWayVoice</AddOnFeature></AddOnFeatures>
      <SalesRepLoginName />
      <InstallerLoginName />
      <BranchId>202</BranchId>
      <PackageId>1002</PackageId>
      <InstallType>NewInstall</InstallType>
    </CreateCustomer>
  </soap:Body>
</soap:Envelope>"#;

#[tokio::test]
async fn create_customer_then_duplicate_login() {
    let sim = start(20).await;
    let c = Client::new(&sim);
    let r = c.post_raw(CM, Some("CreateCustomer"), CREATE.into()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.one("Success").as_deref(), Some("true"));
    assert_eq!(r.one("ErrorMessage").as_deref(), Some(""));
    let id: i64 = r.one("CustomerId").unwrap().parse().unwrap();
    assert_eq!(id, 10_000_021);

    let info = c
        .call(
            CM,
            "GetCustomerInfo_V2",
            &format!("<CallerVersion>2</CallerVersion><CustomerId>{id}</CustomerId>"),
        )
        .await;
    assert_eq!(info.one("LoginName").as_deref(), Some("ghopper"));
    assert_eq!(info.one("Street2").as_deref(), Some("Unit 5"));
    assert_eq!(info.one("SubDealerId").as_deref(), Some("202"));
    assert_eq!(info.one("DealerCustomerId").as_deref(), Some("ST-9000001"));
    assert_eq!(info.all("AddOnFeature"), vec!["TwoWayVoice"]);
    assert_eq!(
        info.one("CentralStationReceiverNumber").as_deref(),
        Some("8005550100")
    );

    // The same login again (another case too): refused, nothing created.
    let again = CREATE
        .replace("ghopper", "GHopper")
        .replace("ABC123XYZ", "ABC999");
    let r = c.post_raw(CM, Some("CreateCustomer"), again).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.one("Success").as_deref(), Some("false"));
    assert_eq!(
        r.one("ErrorMessage").as_deref(),
        Some("Login name already in use")
    );
    assert_eq!(r.one("CustomerId").as_deref(), Some("0"));

    // The same modem on another login: refused as well.
    let r = c
        .post_raw(CM, Some("CreateCustomer"), CREATE.replace("ghopper", "gh2"))
        .await;
    assert_eq!(r.one("Success").as_deref(), Some("false"));
    assert!(r.one("ErrorMessage").unwrap().contains("serial"));

    // Unknown service plan.
    let bad = CREATE
        .replace("ghopper", "gh3")
        .replace("ABC123XYZ", "S3")
        .replace("<PackageId>1002", "<PackageId>42");
    let r = c.post_raw(CM, Some("CreateCustomer"), bad).await;
    assert_eq!(
        r.one("ErrorMessage").as_deref(),
        Some("Invalid PackageId 42")
    );

    assert_eq!(sim.state().customer_count(), 21);
    let stats = c.stats().await;
    assert_eq!(stats["requests"]["CreateCustomer"], 4);
    assert_eq!(stats["succeeded"]["CreateCustomer"], 1);
    assert_eq!(sim.state().success_count("CreateCustomer"), 1);
}

#[tokio::test]
async fn builder_program_needs_the_permission() {
    let sim = start(10).await;
    let c = Client::new(&sim);
    let perms = c
        .admin(
            Method::PUT,
            "/admin/permissions",
            Some(json!({"builder_program": false, "billing": false})),
        )
        .await;
    assert_eq!(perms[USER]["builder_program"], false);
    let r = c.call(DM, "GetDealerPermissions", "").await;
    assert_eq!(r.one("BuilderProgram").as_deref(), Some("false"));
    assert_eq!(r.one("Billing").as_deref(), Some("false"));

    let builder = CREATE.replace(
        "<InstallType>",
        "<BuilderProgramId>51</BuilderProgramId><InstallType>",
    );
    let r = c
        .post_raw(CM, Some("CreateCustomer"), builder.clone())
        .await;
    assert_eq!(r.one("Success").as_deref(), Some("false"));
    assert!(
        r.one("ErrorMessage").unwrap().contains("permission"),
        "{}",
        r.body
    );
    let commitment = "<CustomerAccountAddress><FirstName>Lot</FirstName><LastName>Seven</LastName>\
        </CustomerAccountAddress><InstallationAddress><Street1>7 New Ct</Street1><City>Austin</City>\
        <State>TX</State><Zip>78701</Zip></InstallationAddress><PackageId>1001</PackageId>\
        <BuilderProgramId>52</BuilderProgramId>";
    let r = c.call(CM, "CreateCommitment", commitment).await;
    assert_eq!(r.one("Success").as_deref(), Some("false"));
    assert!(r.one("ErrorMessage").unwrap().contains("permission"));
    assert_eq!(sim.state().customer_count(), 10);

    c.admin(
        Method::PUT,
        "/admin/permissions",
        Some(json!({"username": USER, "builder_program": true})),
    )
    .await;
    let r = c.post_raw(CM, Some("CreateCustomer"), builder).await;
    assert_eq!(r.one("Success").as_deref(), Some("true"), "{}", r.body);
    let r = c.call(CM, "CreateCommitment", commitment).await;
    assert_eq!(r.one("Success").as_deref(), Some("true"), "{}", r.body);
    let customer = r.one("CustomerId").unwrap();
    assert!(r.one("CommitmentId").unwrap().parse::<i64>().unwrap() >= 800_001);
    let info = c
        .call(
            CM,
            "GetCustomerInfo_V2",
            &format!("<CallerVersion>1</CallerVersion><CustomerId>{customer}</CustomerId>"),
        )
        .await;
    assert_eq!(info.one("IsCommitment").as_deref(), Some("true"));
    assert_eq!(info.one("BuilderProgramId").as_deref(), Some("52"));
    let programs = c.call(DM, "GetBuilderProgramList", "").await;
    assert_eq!(programs.all("BuilderProgramId").len(), 3);
}

#[tokio::test]
async fn terminate_update_and_change_plan() {
    let sim = start(30).await;
    let c = Client::new(&sim);
    let id = sim
        .state()
        .customers()
        .into_iter()
        .find(|c| !c.is_terminated && !c.is_commitment)
        .unwrap()
        .customer_id;

    let r = c
        .call(
            CM,
            "UpdateCentralStationInfo_V2",
            &format!(
                "<CustomerId>{id}</CustomerId><AccountNumber>Z12345</AccountNumber>\
                 <ReceiverNumber>8665550199</ReceiverNumber>"
            ),
        )
        .await;
    assert_eq!(r.one("Success").as_deref(), Some("true"), "{}", r.body);
    let r = c
        .call(
            CM,
            "ChangeServicePlan",
            &format!("<CustomerId>{id}</CustomerId><PackageId>1003</PackageId>"),
        )
        .await;
    assert_eq!(r.one("Success").as_deref(), Some("true"));
    let r = c
        .call(
            CM,
            "ChangeServicePlan",
            &format!("<CustomerId>{id}</CustomerId><PackageId>9</PackageId>"),
        )
        .await;
    assert_eq!(r.one("Success").as_deref(), Some("false"));
    let rec = sim.state().customer(id).unwrap();
    assert_eq!(rec.central_station_account_number, "Z12345");
    assert_eq!(rec.central_station_receiver_number, "8665550199");
    assert_eq!(rec.package_id, 1003);

    let terminate = format!("<CustomerId>{id}</CustomerId>");
    let r = c.call(CM, "TerminateCustomer", &terminate).await;
    assert_eq!(r.one("Success").as_deref(), Some("true"));
    let r = c.call(CM, "TerminateCustomer", &terminate).await;
    assert_eq!(r.one("Success").as_deref(), Some("false"));
    assert!(r.one("ErrorMessage").unwrap().contains("terminated"));
    assert!(sim.state().customer(id).unwrap().is_terminated);

    let r = c
        .call(CM, "TerminateCustomer", "<CustomerId>1</CustomerId>")
        .await;
    assert_eq!(r.faultstring().as_deref(), Some("Customer not found"));
    let stats = c.stats().await;
    assert_eq!(stats["requests"]["TerminateCustomer"], 3);
    assert_eq!(stats["succeeded"]["TerminateCustomer"], 1);
}

#[tokio::test]
async fn rep_list_carries_what_a_user_import_needs() {
    let sim = start(400).await;
    let c = Client::new(&sim);
    let r = c.call(DM, "GetRepList", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let reps = sim.state().reps();
    assert_eq!(reps.len(), 25);
    assert_eq!(r.all("RepLoginName").len(), 25);
    assert_eq!(r.all("SupportId").len(), 25);
    assert_eq!(r.all("IsActive").len(), 25);
    let first = &reps[0];
    assert_eq!(r.one("RepLoginName").unwrap(), first.login_name);
    assert_eq!(r.one("FirstName").unwrap(), first.first_name);
    assert_eq!(r.one("Email").unwrap(), first.email);
    assert_eq!(r.one("Phone").unwrap(), first.phone);
    assert_eq!(r.one("Street1").unwrap(), first.address.street1);
    let roles: std::collections::BTreeSet<String> = r.all("Name").into_iter().collect();
    for role in ["Sales Rep", "Technician"] {
        assert!(roles.contains(role), "{roles:?}");
    }
    let subs: std::collections::BTreeSet<String> = r.all("SubDealerId").into_iter().collect();
    assert_eq!(subs.len(), 5);
    // Customers name existing reps.
    let logins: std::collections::BTreeSet<String> = r.all("RepLoginName").into_iter().collect();
    for cust in sim.state().customers() {
        if !cust.sales_rep_login_name.is_empty() {
            assert!(logins.contains(&cust.sales_rep_login_name));
        }
    }

    let added = c
        .admin(
            Method::POST,
            "/admin/reps",
            Some(json!({"login_name": "new.tech", "roles": ["Technician", "Alarm Tech Lead"], "sub_dealer_id": 201})),
        )
        .await;
    assert_eq!(added[0]["login_name"], "new.tech");
    let r = c.call(DM, "GetRepList", "").await;
    assert_eq!(r.all("RepLoginName").len(), 26);
    let roles = c.call(DM, "GetRoleList", "").await;
    assert!(roles.all("Name").contains(&"Alarm Tech Lead".to_string()));
    let subs = c.call(DM, "GetSubDealerList", "").await;
    assert_eq!(subs.all("SubDealerId").len(), 5);
}

#[tokio::test]
async fn dealer_calls() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    let r = c.call(DM, "GetPackageIds", "").await;
    assert_eq!(r.status, 200);
    let ids = r.all("PackageId");
    assert_eq!(ids.len(), 6);
    assert_eq!(ids[0], "1001");
    assert_eq!(r.all("Name").len(), 6);
    let r = c.call(DM, "GetDealerId", "").await;
    assert_eq!(r.one("GetDealerIdResult").as_deref(), Some("7104"));
    let r = c.call(DM, "GetCSPhoneNumber", "").await;
    assert_eq!(
        r.one("GetCSPhoneNumberResult").as_deref(),
        Some("8005550142")
    );
    let r = c.call(DM, "GetCurrentRepInfo", "").await;
    assert_eq!(r.one("RepLoginName").as_deref(), Some(USER));
    // Parameters wrapped in an <input> element are accepted too.
    let r = c
        .call(
            CM,
            "GetCustomerList",
            "<input><includeTermed>true</includeTermed></input>",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn wsdl_is_served_and_well_formed() {
    let sim = start(0).await;
    let c = Client::new(&sim);
    for (path, own, other) in [
        (CM, "GetCustomerInfo_V2", "GetRepList"),
        (DM, "GetRepList", "CreateCustomer"),
    ] {
        for q in ["?WSDL", "?wsdl"] {
            let r = c.get(&format!("{path}{q}")).await;
            assert_eq!(r.status, 200);
            assert!(r.content_type.starts_with("text/xml"));
            let n = well_formed(&r.body).unwrap_or_else(|e| panic!("{e}"));
            assert!(n > 100, "{n} elements");
            assert!(r.body.contains(&format!(
                "soapAction=\"http://www.alarm.com/WebServices/{own}\""
            )));
            assert!(!r.body.contains(&format!("name=\"{other}\"")));
            assert!(r
                .body
                .contains(&format!("location=\"{}{path}\"", sim.base_url())));
            assert!(r.body.contains("name=\"Authentication\""));
        }
    }
    let help = c.get(CM).await;
    assert_eq!(help.status, 200);
    assert!(help.body.contains("ChangeServicePlan</b> (ours)"));
    assert_eq!(c.stats().await["requests"]["WSDL"], 4);
    assert_eq!(c.get("/nothing").await.status, 404);
}

#[tokio::test]
async fn soap12_is_served() {
    let sim = start(3).await;
    let c = Client::new(&sim);
    let body = r#"<?xml version="1.0" encoding="utf-8"?>
<soap12:Envelope xmlns:soap12="http://www.w3.org/2003/05/soap-envelope">
  <soap12:Header>
    <Authentication xmlns="http://www.alarm.com/WebServices">
      <User>dealer-integration</User><Password>not-a-real-password</Password><TwoFactorDeviceId />
    </Authentication>
  </soap12:Header>
  <soap12:Body>
    <GetCustomerList xmlns="http://www.alarm.com/WebServices"><includeTermed>true</includeTermed></GetCustomerList>
  </soap12:Body>
</soap12:Envelope>"#;
    let send = |body: String, action: &str| {
        c.http
            .post(format!("{}{CM}", c.base))
            .header(
                "Content-Type",
                format!("application/soap+xml; charset=utf-8; action=\"http://www.alarm.com/WebServices/{action}\""),
            )
            .body(body)
            .send()
    };
    let r = reply(send(body.into(), "GetCustomerList").await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.content_type.starts_with("application/soap+xml"));
    assert!(r.body.contains("http://www.w3.org/2003/05/soap-envelope"));
    assert_eq!(r.ints().len(), 3);
    let r = reply(
        send(body.replace("not-a-real", "wrong"), "GetCustomerList")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.one("Value").as_deref(), Some("soap:Sender"));
    assert!(r.one("Text").unwrap().starts_with("Authentication failed"));
    let r = reply(send(body.into(), "GetRepList").await.unwrap()).await;
    assert!(r.one("Text").unwrap().contains("SOAPAction"));
}

#[tokio::test]
async fn soap_action_and_service_must_match_the_body() {
    let sim = start(1).await;
    let c = Client::new(&sim);
    let r = c
        .post_raw(DM, Some("GetRepList"), envelope("GetDealerId", ""))
        .await;
    assert_eq!(r.status, 500);
    assert!(r.faultstring().unwrap().contains("SOAPAction"));
    // Without SOAPAction, the body decides.
    let r = c.post_raw(DM, None, envelope("GetDealerId", "")).await;
    assert_eq!(r.status, 200);
    // A CustomerManagement call sent to DealerManagement.
    let r = c.call(DM, "GetCustomerList", "").await;
    assert_eq!(r.status, 500);
    assert!(r.faultstring().unwrap().contains("did not recognize"));
    // The right name in the wrong namespace.
    let wrong_ns = envelope("GetDealerId", "").replace(
        "<GetDealerId xmlns=\"http://www.alarm.com/WebServices\">",
        "<GetDealerId xmlns=\"http://example.com/other\">",
    );
    let r = c.post_raw(DM, Some("GetDealerId"), wrong_ns).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.one("faultcode").as_deref(), Some("soap:Client"));
    // Paths are matched without regard to case, as IIS does.
    let r = c
        .post_raw(
            "/webservices/dealermanagement.asmx",
            Some("GetDealerId"),
            envelope("GetDealerId", ""),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(c.stats().await["requests"]["(unknown)"], 2);
}

#[tokio::test]
async fn garbage_bodies_are_client_faults() {
    let sim = start(1).await;
    let c = Client::new(&sim);
    let deep = format!(
        "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>{}",
        "<a>".repeat(5_000)
    );
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"hello".to_vec(),
        br#"{"json": true}"#.to_vec(),
        vec![0, 159, 146, 150, 255, 254],
        b"<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>"
            .to_vec(),
        b"<Envelope><Body><GetDealerId/></Body></Envelope>".to_vec(),
        b"<!DOCTYPE x [<!ENTITY a \"aaaa\">]><x>&a;&a;</x>".to_vec(),
        b"<a></b>".to_vec(),
        envelope("GetDealerId", "")
            .replace("</soap:Body>", "")
            .into_bytes(),
        envelope("GetDealerId", "<x>&bogus;</x>").into_bytes(),
        deep.into_bytes(),
        envelope("GetDealerId", "")
            .replace("<soap:Body>", "<soap:Body><Extra xmlns=\"x\"/>")
            .into_bytes(),
    ];
    let n = bodies.len();
    for body in bodies {
        let res = c
            .http
            .post(format!("{}{DM}", c.base))
            .header("Content-Type", "text/xml; charset=utf-8")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let r = reply(res).await;
        assert_eq!(r.status, 500, "{:?}", String::from_utf8_lossy(&body));
        assert!(r.content_type.starts_with("text/xml"));
        assert_eq!(
            r.one("faultcode").as_deref(),
            Some("soap:Client"),
            "{}",
            r.body
        );
    }
    // Still serving.
    assert_eq!(c.call(DM, "GetDealerId", "").await.status, 200);
    let stats = c.stats().await;
    assert_eq!(stats["requests"]["(invalid)"], n as u64);
}

#[tokio::test]
async fn extra_logins_and_reset() {
    let sim = start(5).await;
    let c = Client::new(&sim);
    c.admin(
        Method::POST,
        "/admin/users",
        Some(json!({"username": "second", "password": "pw2", "permissions": {"builder_program": false}})),
    )
    .await;
    let r = c
        .post_raw(
            DM,
            Some("GetDealerPermissions"),
            envelope_as("second", "pw2", "GetDealerPermissions", ""),
        )
        .await;
    assert_eq!(r.one("BuilderProgram").as_deref(), Some("false"));
    assert_eq!(r.one("Billing").as_deref(), Some("true"));
    c.admin(Method::POST, "/admin/customers", Some(json!({"count": 3})))
        .await;
    assert_eq!(sim.state().customer_count(), 8);

    c.admin(Method::POST, "/admin/reset", None).await;
    assert_eq!(sim.state().customer_count(), 5);
    let r = c
        .post_raw(
            DM,
            Some("GetDealerPermissions"),
            envelope_as("second", "pw2", "GetDealerPermissions", ""),
        )
        .await;
    assert!(r
        .faultstring()
        .unwrap()
        .starts_with("Authentication failed"));
    assert_eq!(c.stats().await["total_requests"], 1);
    let health = c
        .http
        .get(format!("{}/healthz", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // Admin input errors are 400 with a message.
    let res = c
        .http
        .post(format!("{}/admin/customers", c.base))
        .json(&json!([{"no_such_field": 1}]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = c
        .http
        .get(format!("{}/admin/customers/1", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}
