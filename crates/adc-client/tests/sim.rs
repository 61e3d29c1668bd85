//! The client against the ADC simulator, in process: the SOAP the client
//! writes is read by an independent implementation, and what the simulator
//! answers is read back by the client.

use std::sync::Arc;
use std::time::Duration;

use adc_client::HttpAdcConnector;
use adc_sim::{Permissions, Sim, SimConfig};
use domain::adc::*;
use domain::upstream::UpstreamTarget;
use upstream_http::{ClientSettings, Connector};

/// A connector with these settings.
fn connector_of(settings: ClientSettings) -> HttpAdcConnector {
    HttpAdcConnector(Connector::new(settings).unwrap())
}

const USER: &str = "integration";
const PASSWORD: &str = r#"s3cret<&>"'"#;

async fn sim(permissions: Permissions) -> Sim {
    Sim::start(SimConfig {
        username: USER.into(),
        password: PASSWORD.into(),
        seed_customers: 60,
        permissions,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn settings() -> ClientSettings {
    ClientSettings {
        timeout: Duration::from_secs(10),
        retry_base_delay: Duration::from_millis(10),
        max_retry_delay: Duration::from_millis(100),
        requests_per_second: 0,
        // The simulator listens on loopback, which the default policy refuses.
        egress: upstream_http::EgressPolicy::parse_allow(&["127.0.0.0/8"]).unwrap(),
        ..adc_client::default_settings()
    }
}

fn client(sim: &Sim, password: &str) -> Arc<dyn AdcApi> {
    connector_of(settings()).connect(UpstreamTarget {
        key: "sim".into(),
        endpoint: url::Url::parse(&sim.base_url()).unwrap(),
        username: USER.into(),
        password: password.into(),
    })
}

/// A customer the simulator accepts: named, on a known plan.
async fn new_customer(api: &dyn AdcApi, login: &str) -> NewAdcCustomer {
    let plan = api.service_plans().await.unwrap().remove(0);
    NewAdcCustomer {
        account_address: AdcAccountAddress {
            first_name: "Ada".into(),
            last_name: "O'Brien & Co <test>".into(),
            phone: "5550100".into(),
            address: AdcAddress {
                street1: "1 Main St".into(),
                city: "Springfield".into(),
                state: "IL".into(),
                zip: "62701".into(),
                ..AdcAddress::default()
            },
            ..AdcAccountAddress::default()
        },
        email: "ada@example.com".into(),
        dealer_customer_id: "BILL-42".into(),
        desired_login_name: login.into(),
        installation_address: AdcAddress {
            street1: "2 Oak Ave".into(),
            city: "Springfield".into(),
            state: "IL".into(),
            zip: "62702".into(),
            ..AdcAddress::default()
        },
        panel_type: "IQPanel2".into(),
        central_station: AdcCentralStationInfo {
            account_number: "A-1001".into(),
            receiver_number: "8005550199".into(),
        },
        add_on_features: vec!["TwoWayVoice".into()],
        package_id: Some(plan.package_id),
        ..NewAdcCustomer::default()
    }
}

#[tokio::test]
async fn credentials_are_checked() {
    let sim = sim(Permissions::default()).await;
    client(&sim, PASSWORD).check_credentials().await.unwrap();
    assert_eq!(
        client(&sim, "wrong").check_credentials().await.unwrap_err(),
        AdcError::Unauthorized
    );
    assert!(
        client(&sim, PASSWORD)
            .latest_caller_version()
            .await
            .unwrap()
            >= 1
    );
}

#[tokio::test]
async fn lists_and_reads_customers() {
    let sim = sim(Permissions::default()).await;
    let api = client(&sim, PASSWORD);
    let all = sim.state().customers();

    let active = api
        .customer_ids(&AdcCustomerQuery::default())
        .await
        .unwrap();
    let expected = all.iter().filter(|c| !c.is_terminated).count();
    assert_eq!(active.len(), expected);

    let everything = api
        .customer_ids(&AdcCustomerQuery {
            include_terminated: true,
            ..AdcCustomerQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(everything.len(), all.len());

    let installed = api
        .customer_ids(&AdcCustomerQuery {
            include_terminated: true,
            exclude_commitments: true,
            ..AdcCustomerQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        installed.len(),
        all.iter().filter(|c| !c.is_commitment).count()
    );

    // Every record the simulator holds reads back as it is stored.
    for id in everything.iter().take(25) {
        let read = api.customer(*id).await.unwrap();
        let held = sim.state().customer(id.0).unwrap();
        assert_eq!(read.customer_id, *id);
        assert_eq!(read.login_name, held.login_name);
        assert_eq!(read.dealer_customer_id, held.dealer_customer_id);
        assert_eq!(read.is_terminated, held.is_terminated);
        assert_eq!(read.is_commitment, held.is_commitment);
        assert_eq!(read.first_name, held.first_name);
        assert_eq!(read.last_name, held.last_name);
        assert_eq!(read.company_name, held.company_name);
        assert_eq!(read.email, held.email);
        assert_eq!(read.phone, held.phone);
        assert_eq!(read.install_address.street1, held.install_address.street1);
        assert_eq!(read.install_address.city, held.install_address.city);
        assert_eq!(read.install_address.state, held.install_address.state);
        assert_eq!(read.install_address.zip, held.install_address.zip);
        assert_eq!(read.panel_type, held.panel_type);
        assert_eq!(read.modem_serial_number, held.modem_serial_number);
        assert_eq!(
            read.service_plan.as_ref().map(|p| p.package_id.0),
            Some(held.package_id).filter(|p| *p > 0)
        );
        assert_eq!(read.sales_rep_login_name, held.sales_rep_login_name);
        assert_eq!(
            read.central_station.account_number,
            held.central_station_account_number
        );
        assert_eq!(
            read.central_station.receiver_number,
            held.central_station_receiver_number
        );
        assert_eq!(read.add_on_features, held.add_on_features);
        assert_eq!(
            read.two_way_voice,
            held.add_on_features.iter().any(|f| f == "TwoWayVoice")
        );
        assert_eq!(
            read.sub_dealer.map(|s| s.id),
            Some(held.sub_dealer_id).filter(|id| *id > 0)
        );
        assert_eq!(read.join_date, Some(held.join_date));
    }
    // GetCustomerInfo_V2 needs the CallerVersion: fetched once for all reads.
    assert_eq!(sim.state().request_count("GetLatestCallerVersion"), 1);

    assert!(matches!(
        api.customer(AdcCustomerId(1)).await.unwrap_err(),
        AdcError::NotFound(_)
    ));
}

#[tokio::test]
async fn the_list_window_selects_recent_changes() {
    let sim = sim(Permissions::default()).await;
    let api = client(&sim, PASSWORD);
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    let login = "window-test";
    let created = api
        .create_customer(&new_customer(api.as_ref(), login).await)
        .await
        .unwrap();
    let recent = api
        .customer_ids(&AdcCustomerQuery {
            include_terminated: true,
            start_date: Some(since),
            ..AdcCustomerQuery::default()
        })
        .await
        .unwrap();
    assert!(recent.contains(&created), "{recent:?}");
    assert!(recent.len() < sim.state().customer_count());
}

#[tokio::test]
async fn creates_a_customer_once_per_login() {
    let sim = sim(Permissions::default()).await;
    let api = client(&sim, PASSWORD);
    let new = new_customer(api.as_ref(), "ada.obrien").await;
    let id = api.create_customer(&new).await.unwrap();

    let held = sim.state().customer(id.0).unwrap();
    assert_eq!(held.login_name, "ada.obrien");
    assert_eq!(held.last_name, "O'Brien & Co <test>");
    assert_eq!(held.dealer_customer_id, "BILL-42");
    assert_eq!(held.install_address.street1, "2 Oak Ave");
    assert_eq!(held.central_station_account_number, "A-1001");
    assert_eq!(held.add_on_features, ["TwoWayVoice"]);

    let read = api.customer(id).await.unwrap();
    assert_eq!(read.last_name, "O'Brien & Co <test>");
    assert!(read.two_way_voice);

    let again = api.create_customer(&new).await.unwrap_err();
    assert!(
        matches!(again, AdcError::Rejected { ref message } if message.contains("already in use")),
        "{again:?}"
    );
    assert!(!again.is_transient());
    assert_eq!(sim.state().request_count("CreateCustomer"), 2);
}

#[tokio::test]
async fn changes_a_customer() {
    let sim = sim(Permissions::default()).await;
    let api = client(&sim, PASSWORD);
    let id = api
        .create_customer(&new_customer(api.as_ref(), "to-change").await)
        .await
        .unwrap();
    let plans = api.service_plans().await.unwrap();
    let other = plans.last().unwrap().package_id;
    api.change_service_plan(id, other, None).await.unwrap();
    let before = sim.state().customer(id.0).unwrap().add_on_features;
    assert_eq!(
        before,
        ["TwoWayVoice"],
        "a plan change without add-ons keeps them"
    );
    let add_ons = ["Video".to_owned(), "ImageSensor".to_owned()];
    api.change_service_plan(id, other, Some(&add_ons))
        .await
        .unwrap();
    assert_eq!(
        api.customer(id).await.unwrap().add_on_features,
        ["Video", "ImageSensor"]
    );
    api.change_service_plan(id, other, Some(&[])).await.unwrap();
    assert!(api.customer(id).await.unwrap().add_on_features.is_empty());
    api.update_central_station_info(
        id,
        &AdcCentralStationInfo {
            account_number: "B-2002".into(),
            receiver_number: "8005550100".into(),
        },
    )
    .await
    .unwrap();
    let held = sim.state().customer(id.0).unwrap();
    assert_eq!(held.package_id, other.0);
    assert_eq!(held.central_station_account_number, "B-2002");
    assert_eq!(held.central_station_receiver_number, "8005550100");

    assert!(matches!(
        api.change_service_plan(id, AdcPackageId(999_999), None)
            .await
            .unwrap_err(),
        AdcError::Rejected { .. }
    ));
    assert!(matches!(
        api.change_service_plan(AdcCustomerId(1), other, None)
            .await
            .unwrap_err(),
        AdcError::NotFound(_)
    ));
}

#[tokio::test]
async fn builder_program_needs_its_permission() {
    let sim = sim(Permissions {
        builder_program: false,
        billing: true,
    })
    .await;
    let api = client(&sim, PASSWORD);
    assert_eq!(
        api.permissions().await.unwrap(),
        AdcPermissions {
            builder_program: false,
            billing: true
        }
    );
    let program = api.builder_programs().await.unwrap().remove(0);
    let commitment = NewAdcCommitment {
        builder_program_id: program.id,
        customer: new_customer(api.as_ref(), "").await,
    };
    let err = api.create_commitment(&commitment).await.unwrap_err();
    assert!(matches!(err, AdcError::PermissionDenied { .. }), "{err:?}");

    sim.state()
        .update_permissions(Some(USER), |p| p.builder_program = true);
    assert!(api.permissions().await.unwrap().builder_program);
    let created = api.create_commitment(&commitment).await.unwrap();
    assert!(created.commitment_id.is_some());
    let read = api.customer(created.customer_id).await.unwrap();
    assert!(read.is_commitment);
    assert_eq!(read.builder_program_id, Some(program.id));
    assert_eq!(read.commitment_id, created.commitment_id);
}

#[tokio::test]
async fn reads_reps_plans_sub_dealers_and_roles() {
    let sim = sim(Permissions::default()).await;
    let api = client(&sim, PASSWORD);

    let reps = api.reps().await.unwrap();
    let held = sim.state().reps();
    assert_eq!(reps.len(), held.len());
    for (read, held) in reps.iter().zip(&held) {
        assert_eq!(read.support_id, Some(held.support_id));
        assert_eq!(read.login_name, held.login_name);
        assert_eq!(read.first_name, held.first_name);
        assert_eq!(read.last_name, held.last_name);
        assert_eq!(read.email, held.email);
        assert_eq!(read.phone, held.phone);
        assert_eq!(read.address.street1, held.address.street1);
        assert_eq!(read.active, held.is_active);
        assert_eq!(read.user_field, held.user_field);
        let roles: Vec<&str> = read.roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(roles, held.roles);
        assert_eq!(
            read.sub_dealer.as_ref().map(|s| s.id),
            Some(held.sub_dealer_id).filter(|id| *id > 0)
        );
    }

    let plans = api.service_plans().await.unwrap();
    assert!(!plans.is_empty());
    assert!(plans
        .iter()
        .all(|p| p.package_id.0 > 0 && !p.name.is_empty()));

    let sub_dealers = api.sub_dealers().await.unwrap();
    assert!(!sub_dealers.is_empty());
    assert!(sub_dealers.iter().all(|s| s.id > 0 && !s.name.is_empty()));
    // Every rep's sub-dealer is one of the list.
    for rep in &reps {
        if let Some(sd) = &rep.sub_dealer {
            assert!(sub_dealers.contains(sd), "{sd:?}");
        }
    }

    let roles = api.roles().await.unwrap();
    assert!(!roles.is_empty());
    for rep in &reps {
        for role in &rep.roles {
            assert!(roles.contains(role), "{role:?}");
        }
    }
}

#[tokio::test]
async fn reads_ride_out_injected_failures() {
    let sim = sim(Permissions::default()).await;
    sim.state()
        .add_fault("GetRepList=http_500,times=1".parse().unwrap())
        .unwrap();
    sim.state()
        .add_fault("GetPackageIds=throttle:1,times=1".parse().unwrap())
        .unwrap();
    let api = connector_of(ClientSettings {
        max_retry_delay: Duration::from_secs(2),
        ..settings()
    })
    .connect(UpstreamTarget {
        key: "sim".into(),
        endpoint: url::Url::parse(&sim.base_url()).unwrap(),
        username: USER.into(),
        password: PASSWORD.into(),
    });
    assert!(!api.reps().await.unwrap().is_empty());
    assert_eq!(sim.state().request_count("GetRepList"), 2);
    assert!(!api.service_plans().await.unwrap().is_empty());
    assert_eq!(sim.state().request_count("GetPackageIds"), 2);

    // A change gets one attempt, and the error says whether to try later.
    sim.state()
        .add_fault("CreateCustomer=http_500,times=1".parse().unwrap())
        .unwrap();
    let new = new_customer(api.as_ref(), "after-500").await;
    let err = api.create_customer(&new).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(sim.state().request_count("CreateCustomer"), 1);

    sim.state()
        .add_fault("GetRepList=malformed,times=1".parse().unwrap())
        .unwrap();
    assert!(matches!(
        api.reps().await.unwrap_err(),
        AdcError::BadAnswer(_)
    ));
}

#[tokio::test]
async fn terminates_a_customer() {
    let sim = sim(Permissions::default()).await;
    let api = client(&sim, PASSWORD);
    let id = api
        .create_customer(&new_customer(api.as_ref(), "to-terminate").await)
        .await
        .unwrap();
    api.terminate_customer(id).await.unwrap();
    assert!(sim.state().customer(id.0).unwrap().is_terminated);
    let read = api.customer(id).await.unwrap();
    assert!(read.is_terminated);
    assert!(read.terminated_date.is_some());
    assert!(matches!(
        api.terminate_customer(id).await.unwrap_err(),
        AdcError::Rejected { .. }
    ));
    assert!(matches!(
        api.terminate_customer(AdcCustomerId(1)).await.unwrap_err(),
        AdcError::NotFound(_)
    ));
}
