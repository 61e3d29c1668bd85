//! The client against the simulator, started in-process: the protocol end to
//! end, and the simulator's injected faults seen through `StagesError`.

mod keys;

use keys::{device_id, site_no, xmit};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::stages::*;
use domain::upstream::UpstreamTarget;
use stages_client::HttpStagesConnector;
use stages_sim::{FaultKind, FaultRule, Sim, SimConfig};
use upstream_http::{ClientSettings, Connector};

/// A connector with these settings.
fn connector_of(settings: ClientSettings) -> HttpStagesConnector {
    HttpStagesConnector(Connector::new(settings).unwrap())
}

const USER: &str = "dealer";
const PASSWORD: &str = "s3cret";

async fn start_sim(seed_sites: usize) -> Sim {
    Sim::start(SimConfig {
        username: USER.into(),
        password: PASSWORD.into(),
        seed_sites,
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts")
}

fn quick() -> ClientSettings {
    ClientSettings {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        max_retries: 2,
        retry_base_delay: Duration::from_millis(10),
        max_retry_delay: Duration::from_millis(1500),
        requests_per_second: 0,
        // The simulator listens on loopback, which the default policy refuses.
        egress: upstream_http::EgressPolicy::parse_allow(&["127.0.0.0/8"]).unwrap(),
        ..stages_client::default_settings()
    }
}

fn target(sim: &Sim, username: &str, password: &str) -> UpstreamTarget {
    UpstreamTarget {
        key: "conn-1".into(),
        endpoint: url::Url::parse(&sim.base_url()).unwrap(),
        username: username.into(),
        password: password.into(),
    }
}

fn client_with(sim: &Sim, settings: ClientSettings) -> Arc<dyn StagesApi> {
    connector_of(settings).connect(target(sim, USER, PASSWORD))
}

fn client(sim: &Sim) -> Arc<dyn StagesApi> {
    client_with(sim, quick())
}

fn fault(route: &str, kind: FaultKind) -> FaultRule {
    FaultRule::new(route, kind)
}

fn device(xmit: &str) -> NewStagesDevice {
    NewStagesDevice {
        fields: StagesDeviceFields {
            transmitter_code: xmit.into(),
            location: "Basement".into(),
            entry_period: "00:30".into(),
            exit_period: "01:00".into(),
            ..Default::default()
        },
        configurations: vec![
            NewStagesConfiguration {
                point: 1,
                area: "1".into(),
                event_code: "BA".into(),
                description: "Front door".into(),
            },
            NewStagesConfiguration {
                point: 2,
                area: "1".into(),
                event_code: "FA".into(),
                description: "Smoke".into(),
            },
        ],
    }
}

fn site(name: &str, billing_id: Option<&str>, xmits: &[&str]) -> NewStagesSite {
    NewStagesSite {
        fields: StagesSiteFields {
            name: name.into(),
            address1: "12 Main St".into(),
            city: "Springfield".into(),
            state: "IL".into(),
            zip: "62701".into(),
            phone: "217-555-0100".into(),
            keys: true,
            billing_id: billing_id.map(Into::into),
            ..Default::default()
        },
        devices: xmits.iter().map(|x| device(x)).collect(),
        contacts: vec![],
    }
}

#[tokio::test]
async fn ping_checks_the_credentials() {
    let sim = start_sim(0).await;
    let connector = connector_of(quick());
    connector
        .connect(target(&sim, USER, PASSWORD))
        .ping()
        .await
        .unwrap();
    let err = connector
        .connect(target(&sim, USER, "wrong"))
        .ping()
        .await
        .unwrap_err();
    assert_eq!(err, StagesError::Unauthorized);
    // Refused credentials are not retried.
    assert_eq!(sim.state().request_count("GET /api/v1/ping"), 2);
}

#[tokio::test]
async fn every_lookup_list_answers() {
    let sim = start_sim(0).await;
    let client = client(&sim);
    for list in LookupList::ALL {
        let items = client.lookup(list).await.unwrap();
        assert!(!items.is_empty(), "{list:?} is empty");
        assert!(items.iter().all(|i| !i.code.is_empty()), "{list:?}");
    }
}

#[tokio::test]
async fn created_site_reads_back_with_its_devices() {
    let sim = start_sim(0).await;
    let client = client(&sim);
    let mut new = site("Acme Warehouse", Some("B-100"), &["100200", "100201"]);
    new.contacts.push(NewStagesContact {
        fields: StagesContactFields {
            name: "Pat Owner".into(),
            relation: "owner".into(),
            phones: vec![ContactPhone {
                kind: "mobile".into(),
                number: "217-555-0101".into(),
            }],
            ecv: true,
            ..Default::default()
        },
        pin: Some("1234".into()),
    });
    let created = client.create_site(&new).await.unwrap();
    let site_no = created.site.site_no.clone();
    assert_eq!(created.site.name, "Acme Warehouse");
    assert_eq!(created.site.billing_id.as_deref(), Some("B-100"));
    assert_eq!(created.devices.len(), 2);
    assert_eq!(created.contacts.len(), 1);
    assert!(created.contacts[0].has_pin);

    let read = client.get_site(&site_no).await.unwrap();
    assert_eq!(read, created.site);
    assert!(read.keys);
    assert_eq!(read.city, "Springfield");

    let mut devices = client.list_devices(&site_no).await.unwrap();
    devices.sort_by(|a, b| a.fields.transmitter_code.cmp(&b.fields.transmitter_code));
    let codes: Vec<_> = devices
        .iter()
        .map(|d| d.fields.transmitter_code.as_str())
        .collect();
    assert_eq!(codes, ["100200", "100201"]);
    assert!(devices.iter().all(|d| d.site_no == site_no));
    assert!(devices.iter().all(|d| d.status == DeviceStatus::Normal));

    let one = client.get_device(&devices[0].device_id).await.unwrap();
    assert_eq!(one, devices[0]);
    assert_eq!(one.fields.location, "Basement");
    assert_eq!(one.fields.entry_period, "00:30");

    let configs = client.list_configurations(&one.device_id).await.unwrap();
    let mut points: Vec<_> = configs.iter().map(|c| c.fields.point).collect();
    points.sort();
    assert_eq!(points, [1, 2]);
    let added = client
        .create_configuration(
            &one.device_id,
            &NewStagesConfiguration {
                point: 3,
                area: "2".into(),
                event_code: "BA".into(),
                description: "Back door".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(added.device_id, one.device_id);
    assert_eq!(
        client
            .list_configurations(&one.device_id)
            .await
            .unwrap()
            .len(),
        3
    );

    let contacts = client.list_contacts(&site_no).await.unwrap();
    assert_eq!(contacts, created.contacts);

    // The simulator holds what the client was told.
    assert_eq!(sim.state().site_count(), 1);
    assert_eq!(sim.state().device_count(), 2);
}

#[tokio::test]
async fn a_device_added_later_joins_its_site() {
    let sim = start_sim(0).await;
    let client = client(&sim);
    let created = client.create_site(&site("Shop", None, &[])).await.unwrap();
    let site_no = created.site.site_no;
    let device = client
        .create_device(&site_no, &device("777001"))
        .await
        .unwrap();
    assert_eq!(device.site_no, site_no);
    assert_eq!(device.fields.transmitter_code, "777001");
    assert_eq!(client.list_devices(&site_no).await.unwrap(), vec![device]);
}

#[tokio::test]
async fn duplicate_transmitter_code_is_rejected() {
    let sim = start_sim(0).await;
    let client = client(&sim);
    let first = client
        .create_site(&site("First", None, &["555000"]))
        .await
        .unwrap();
    let second = client
        .create_site(&site("Second", None, &["555001"]))
        .await
        .unwrap();

    let err = client
        .create_device(&second.site.site_no, &device("555000"))
        .await
        .unwrap_err();
    match &err {
        StagesError::Rejected { code, .. } => assert_eq!(code, "duplicate_transmitter_code"),
        other => panic!("{other:?}"),
    }
    assert!(!err.is_transient());

    let err = client
        .create_site(&site("Third", None, &["555000"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StagesError::Rejected { code, .. } if code == "duplicate_transmitter_code"),
        "{err:?}"
    );
    assert_eq!(sim.state().site_count(), 2);

    let err = client
        .change_transmitter_code(&second.devices[0].device_id, &xmit("555000"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StagesError::Rejected { code, .. } if code == "duplicate_transmitter_code"),
        "{err:?}"
    );

    // A free code is taken, and the old one is free again.
    let moved = client
        .change_transmitter_code(&first.devices[0].device_id, &xmit("555999"))
        .await
        .unwrap();
    assert_eq!(moved.fields.transmitter_code, "555999");
    client
        .change_transmitter_code(&second.devices[0].device_id, &xmit("555000"))
        .await
        .unwrap();
}

#[tokio::test]
async fn sites_are_found_by_billing_id_linkage_and_text() {
    let sim = start_sim(0).await;
    let client = client(&sim);
    let a = client
        .create_site(&site("Alpha Bakery", Some("B-1"), &[]))
        .await
        .unwrap()
        .site;
    let b = client
        .create_site(&site("Beta Books", Some("B-2"), &[]))
        .await
        .unwrap()
        .site;
    let c = client
        .create_site(&site("Gamma Gym", None, &[]))
        .await
        .unwrap()
        .site;

    let by_billing = client
        .list_sites(&StagesSiteQuery {
            billing_id: Some("B-2".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_billing.items, vec![b.clone()]);
    assert_eq!(by_billing.next_page_token, None);

    let unknown = client
        .list_sites(&StagesSiteQuery {
            billing_id: Some("B-404".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(unknown.items.is_empty());

    let unlinked = client
        .list_sites(&StagesSiteQuery {
            unlinked: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(unlinked.items, vec![c]);

    let text = client
        .list_sites(&StagesSiteQuery {
            q: Some("bakery".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(text.items, vec![a]);
}

#[tokio::test]
async fn listing_pages_through_every_site() {
    let sim = start_sim(23).await;
    let client = client(&sim);
    let mut seen = Vec::new();
    let mut query = StagesSiteQuery {
        page_size: Some(10),
        ..Default::default()
    };
    let mut pages = 0;
    loop {
        let page = client.list_sites(&query).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 10);
        seen.extend(page.items.into_iter().map(|s| s.site_no));
        match page.next_page_token {
            Some(token) => query.page_token = Some(token),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let total = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!((total, seen.len()), (23, 23));
}

/// Every page of `list_all_devices` for `query`, and the number of pages.
async fn every_device(
    client: &dyn StagesApi,
    mut query: StagesDeviceQuery,
) -> (Vec<StagesDevice>, usize) {
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let page = client.list_all_devices(&query).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= query.page_size.unwrap_or(50) as usize);
        all.extend(page.items);
        match page.next_page_token {
            Some(token) => query.page_token = Some(token),
            None => break,
        }
    }
    (all, pages)
}

fn device_no(d: &StagesDevice) -> u64 {
    d.device_id.strip_prefix("D-").unwrap().parse().unwrap()
}

#[tokio::test]
async fn listing_pages_through_every_device_of_the_central_station() {
    let sim = start_sim(20).await;
    let client = client(&sim);
    let mut per_site = Vec::new();
    for s in sim.state().sites() {
        per_site.extend(client.list_devices(&site_no(&s.site_no)).await.unwrap());
    }
    let per_site_requests = sim
        .state()
        .request_count("GET /api/v1/sites/{site_no}/devices");
    assert_eq!(per_site_requests, 20);
    assert!(per_site.len() > 20, "seeded sites have 1-3 devices each");

    let (all, pages) = every_device(
        client.as_ref(),
        StagesDeviceQuery {
            page_size: Some(8),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(pages, per_site.len().div_ceil(8));
    assert_eq!(
        sim.state().request_count("GET /api/v1/devices"),
        pages as u64
    );
    assert!(
        all.windows(2).all(|w| device_no(&w[0]) < device_no(&w[1])),
        "in device id order"
    );
    let mut expected = per_site.clone();
    expected.sort_by_key(device_no);
    assert_eq!(all, expected, "the same records as the per-site lists");

    // One page holds them all at the largest page size; the default is 50.
    let page = client
        .list_all_devices(&StagesDeviceQuery {
            page_size: Some(500),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items, expected);
    assert_eq!(page.next_page_token, None);
    let page = client
        .list_all_devices(&StagesDeviceQuery::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), expected.len().min(50));
}

#[tokio::test]
async fn all_devices_are_filtered_by_billing_id_site_and_linkage() {
    let sim = start_sim(20).await;
    let client = client(&sim);
    let sites = sim.state().sites();
    let first_site = client
        .list_devices(&site_no(&sites[0].site_no))
        .await
        .unwrap();
    let other_site = client
        .list_devices(&site_no(&sites[5].site_no))
        .await
        .unwrap();
    let link = |device_id: domain::stages::DeviceId, billing_id: &'static str| {
        let client = Arc::clone(&client);
        async move {
            client
                .update_device(
                    &device_id,
                    &StagesDevicePatch {
                        billing_id: Some(billing_id.into()),
                        ..Default::default()
                    },
                )
                .await
                .unwrap()
        }
    };
    let a = link(first_site[0].device_id.clone(), "SYS-A").await;
    let b = link(other_site[0].device_id.clone(), "SYS-B").await;

    // billing_id: the one device that holds it.
    let page = client
        .list_all_devices(&StagesDeviceQuery {
            billing_id: Some("SYS-B".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items, vec![b.clone()]);
    assert_eq!(page.next_page_token, None);
    let page = client
        .list_all_devices(&StagesDeviceQuery {
            billing_id: Some("SYS-404".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(page.items.is_empty());

    // site_no: the site's devices, as the per-site list gives them.
    let (of_site, _) = every_device(
        client.as_ref(),
        StagesDeviceQuery {
            site_no: Some(site_no(&sites[0].site_no)),
            page_size: Some(1),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        of_site,
        client
            .list_devices(&site_no(&sites[0].site_no))
            .await
            .unwrap()
    );
    let (none, _) = every_device(
        client.as_ref(),
        StagesDeviceQuery {
            site_no: Some(site_no("99999")),
            ..Default::default()
        },
    )
    .await;
    assert!(none.is_empty(), "an unknown site matches nothing");

    // has_billing_id: linked and unlinked devices split the whole list.
    let (linked, _) = every_device(
        client.as_ref(),
        StagesDeviceQuery {
            has_billing_id: Some(true),
            page_size: Some(1),
            ..Default::default()
        },
    )
    .await;
    let mut want = vec![a.clone(), b.clone()];
    want.sort_by_key(device_no);
    assert_eq!(linked, want);
    let (unlinked, _) = every_device(
        client.as_ref(),
        StagesDeviceQuery {
            has_billing_id: Some(false),
            page_size: Some(7),
            ..Default::default()
        },
    )
    .await;
    assert!(unlinked.iter().all(|d| d.fields.billing_id.is_none()));
    assert_eq!(
        unlinked.len() + linked.len(),
        sim.state().device_count(),
        "every device is in one of the two"
    );

    // Filters combine with AND.
    let (both, _) = every_device(
        client.as_ref(),
        StagesDeviceQuery {
            site_no: Some(site_no(&sites[0].site_no)),
            has_billing_id: Some(true),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(both, vec![a]);
    let (both, _) = every_device(
        client.as_ref(),
        StagesDeviceQuery {
            site_no: Some(site_no(&sites[0].site_no)),
            billing_id: Some("SYS-B".into()),
            ..Default::default()
        },
    )
    .await;
    assert!(both.is_empty());
}

#[tokio::test]
async fn a_bad_device_page_is_rejected_and_a_5xx_is_retried() {
    let sim = start_sim(3).await;
    let client = client(&sim);
    for query in [
        StagesDeviceQuery {
            page_token: Some("garbage".into()),
            ..Default::default()
        },
        StagesDeviceQuery {
            page_size: Some(0),
            ..Default::default()
        },
        StagesDeviceQuery {
            page_size: Some(501),
            ..Default::default()
        },
    ] {
        match client.list_all_devices(&query).await.unwrap_err() {
            StagesError::Rejected { code, message } => {
                assert_eq!(code, "validation", "{query:?}");
                assert!(message.contains("page_"), "{message}");
            }
            other => panic!("{query:?}: {other:?}"),
        }
    }
    let before = sim.state().request_count("GET /api/v1/devices");
    assert_eq!(before, 3, "refusals are not retried");

    sim.state()
        .add_fault(fault("GET /api/v1/devices", FaultKind::Error { status: 503 }).times(1))
        .unwrap();
    let page = client
        .list_all_devices(&StagesDeviceQuery::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), sim.state().device_count());
    assert_eq!(sim.state().request_count("GET /api/v1/devices"), before + 2);
}

#[tokio::test]
async fn patch_with_empty_billing_id_unlinks() {
    let sim = start_sim(0).await;
    let client = client(&sim);
    let created = client
        .create_site(&site("Linked", Some("B-9"), &["900900"]))
        .await
        .unwrap();
    let site_no = created.site.site_no.clone();

    let patched = client
        .update_site(
            &site_no,
            &StagesSitePatch {
                billing_id: Some(String::new()),
                info: Some("unlinked by test".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.billing_id, None);
    assert_eq!(patched.info, "unlinked by test");
    assert_eq!(patched.name, "Linked", "fields left out stay");
    assert_eq!(client.get_site(&site_no).await.unwrap(), patched);
    let found = client
        .list_sites(&StagesSiteQuery {
            billing_id: Some("B-9".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(found.items.is_empty());

    let device_id = &created.devices[0].device_id;
    let linked = client
        .update_device(
            device_id,
            &StagesDevicePatch {
                billing_id: Some("SYS-1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(linked.fields.billing_id.as_deref(), Some("SYS-1"));
    let unlinked = client
        .update_device(
            device_id,
            &StagesDevicePatch {
                billing_id: Some(String::new()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(unlinked.fields.billing_id, None);
    assert_eq!(unlinked.fields.transmitter_code, "900900");
}

#[tokio::test]
async fn a_test_starts_lists_and_ends() {
    let sim = start_sim(0).await;
    let client = client(&sim);
    let created = client
        .create_site(&site("On test", None, &["300300"]))
        .await
        .unwrap();
    let device_id = created.devices[0].device_id.clone();

    let now = Utc::now();
    let test = client
        .start_test(
            &device_id,
            &NewStagesTest {
                test_type: TestType::AllPoints,
                effective: now - chrono::Duration::seconds(5),
                expire: now + chrono::Duration::hours(1),
                reason: "panel work".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(test.device_id, device_id);
    assert_eq!(test.state, TestState::Current);
    assert_eq!(test.reason, "panel work");
    assert_eq!(
        client.list_tests(&device_id).await.unwrap(),
        vec![test.clone()]
    );
    assert_eq!(
        client.get_device(&device_id).await.unwrap().status,
        DeviceStatus::OnTest
    );

    client.end_test(&device_id, &test.test_id).await.unwrap();
    assert!(client.list_tests(&device_id).await.unwrap().is_empty());
    assert_eq!(
        client.get_device(&device_id).await.unwrap().status,
        DeviceStatus::Normal
    );
    let err = client
        .end_test(&device_id, &test.test_id)
        .await
        .unwrap_err();
    assert!(matches!(err, StagesError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn a_device_in_alarm_cannot_go_on_test() {
    let sim = start_sim(0).await;
    let client = client(&sim);
    let created = client
        .create_site(&site("Alarm", None, &["400400"]))
        .await
        .unwrap();
    let device_id = created.devices[0].device_id.clone();
    sim.state()
        .set_device_status(&device_id, stages_sim::wire::DeviceStatus::Alarm)
        .unwrap();
    let now = Utc::now();
    let err = client
        .start_test(
            &device_id,
            &NewStagesTest {
                test_type: TestType::AllPoints,
                effective: now,
                expire: now + chrono::Duration::hours(1),
                reason: String::new(),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StagesError::Rejected { code, .. } if code == "device_state"),
        "{err:?}"
    );
}

#[tokio::test]
async fn contacts_and_notes_round_trip() {
    let sim = start_sim(0).await;
    let client = client(&sim);
    let site_no = client
        .create_site(&site("People", None, &[]))
        .await
        .unwrap()
        .site
        .site_no;

    let contact = client
        .create_contact(
            &site_no,
            &NewStagesContact {
                fields: StagesContactFields {
                    name: "Sam Keyholder".into(),
                    has_keys: true,
                    ..Default::default()
                },
                pin: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(contact.site_no, site_no);
    assert!(!contact.has_pin);

    let updated = client
        .update_contact(
            &site_no,
            &contact.contact_id,
            &StagesContactPatch {
                email: Some("sam@example.com".into()),
                pin: Some("9876".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.fields.email, "sam@example.com");
    assert_eq!(updated.fields.name, "Sam Keyholder");
    assert!(updated.has_pin);
    assert_eq!(client.list_contacts(&site_no).await.unwrap(), vec![updated]);

    client
        .delete_contact(&site_no, &contact.contact_id)
        .await
        .unwrap();
    assert!(client.list_contacts(&site_no).await.unwrap().is_empty());

    let note = client
        .create_note(
            &site_no,
            &NewStagesNote {
                text: "Dog in yard".into(),
                effective_at: None,
                expire_at: Some(Utc::now() + chrono::Duration::days(7)),
            },
        )
        .await
        .unwrap();
    assert_eq!(note.site_no, site_no);
    assert_eq!(client.list_notes(&site_no).await.unwrap(), vec![note]);
}

#[tokio::test]
async fn history_is_read_by_time_range() {
    let sim = start_sim(0).await;
    let client = client(&sim);
    let created = client
        .create_site(&site("Signals", None, &["600600"]))
        .await
        .unwrap();
    let device_id = created.devices[0].device_id.clone();
    let before = Utc::now() - chrono::Duration::seconds(1);
    let signal = sim
        .state()
        .add_signal(&device_id, "BA", "Burglary", Some(1))
        .unwrap();

    let history = client
        .device_history(&device_id, Some(before), None)
        .await
        .unwrap();
    let entry = history
        .iter()
        .find(|h| h.history_id == signal.history_id)
        .expect("the signal is in the device's history");
    assert_eq!(entry.kind, HistoryKind::Signal);
    assert_eq!(entry.event_code, "BA");
    assert_eq!(entry.point, Some(1));

    let site_history = client
        .site_history(&created.site.site_no, Some(before), Some(Utc::now()))
        .await
        .unwrap();
    assert!(site_history
        .iter()
        .any(|h| h.history_id == signal.history_id));

    let past = client
        .device_history(&device_id, None, Some(before - chrono::Duration::days(1)))
        .await
        .unwrap();
    assert!(past.is_empty(), "{past:?}");
}

#[tokio::test]
async fn odd_ids_are_not_found_rather_than_misrouted() {
    let sim = start_sim(1).await;
    let client = client(&sim);
    for id in ["no/such site", "../ping", "10001?x=1", "%2F"] {
        let err = client.get_site(&site_no(id)).await.unwrap_err();
        assert!(matches!(err, StagesError::NotFound(_)), "{id}: {err:?}");
    }
    let err = client
        .get_device(&device_id("D-does-not-exist"))
        .await
        .unwrap_err();
    assert!(matches!(err, StagesError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn simulator_down_is_unreachable() {
    let sim = start_sim(0).await;
    let down = target(&sim, USER, PASSWORD);
    let pooled = client(&sim);
    pooled.ping().await.unwrap();
    sim.stop().await;
    // `stop` returns once the server is told to stop; its worker threads may
    // still answer on an open connection for a few milliseconds.
    let deadline = Instant::now() + Duration::from_secs(3);
    let err = loop {
        match pooled.ping().await {
            Err(e) => break e,
            Ok(()) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Ok(()) => panic!("the simulator still answers after stop"),
        }
    };
    assert!(matches!(err, StagesError::Unreachable(_)), "{err:?}");
    assert!(err.is_transient());

    // A new connection is refused outright.
    let fresh = connector_of(quick()).connect(down);
    let err = fresh.ping().await.unwrap_err();
    assert!(matches!(err, StagesError::Unreachable(_)), "{err:?}");
}

#[tokio::test]
async fn latency_beyond_the_timeout_is_a_timeout() {
    let sim = start_sim(0).await;
    sim.state()
        .add_fault(fault("GET /api/v1/ping", FaultKind::Latency { ms: 2000 }))
        .unwrap();
    let client = client_with(
        &sim,
        ClientSettings {
            timeout: Duration::from_millis(300),
            max_retries: 0,
            ..quick()
        },
    );
    let started = Instant::now();
    assert_eq!(client.ping().await.unwrap_err(), StagesError::Timeout);
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn a_slow_read_is_retried_once_the_latency_passes() {
    let sim = start_sim(1).await;
    sim.state()
        .add_fault(fault("GET /api/v1/sites", FaultKind::Latency { ms: 2000 }).times(1))
        .unwrap();
    let client = client_with(
        &sim,
        ClientSettings {
            timeout: Duration::from_millis(300),
            ..quick()
        },
    );
    let page = client
        .list_sites(&StagesSiteQuery::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(sim.state().request_count("GET /api/v1/sites"), 2);
}

#[tokio::test]
async fn injected_5xx_is_retried_for_reads_but_not_for_creates() {
    let sim = start_sim(0).await;
    let client = client(&sim);
    sim.state()
        .add_fault(fault("POST /api/v1/sites", FaultKind::Error { status: 503 }).times(1))
        .unwrap();
    let err = client
        .create_site(&site("Flaky", None, &[]))
        .await
        .unwrap_err();
    match &err {
        StagesError::BadAnswer(m) => assert!(m.starts_with("HTTP 503"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.state().request_count("POST /api/v1/sites"), 1);
    assert_eq!(sim.state().site_count(), 0);

    let site_no = client
        .create_site(&site("Flaky", None, &[]))
        .await
        .unwrap()
        .site
        .site_no;
    sim.state()
        .add_fault(fault("GET /api/v1/sites/*", FaultKind::Error { status: 500 }).times(2))
        .unwrap();
    client.get_site(&site_no).await.unwrap();
    assert_eq!(sim.state().request_count("GET /api/v1/sites/{site_no}"), 3);
}

#[tokio::test]
async fn injected_429_waits_for_retry_after() {
    let sim = start_sim(0).await;
    sim.state()
        .add_fault(
            fault(
                "GET /api/v1/ping",
                FaultKind::RateLimit {
                    retry_after_secs: 1,
                },
            )
            .times(1),
        )
        .unwrap();
    let client = client(&sim);
    let started = Instant::now();
    client.ping().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(950));
    assert_eq!(sim.state().request_count("GET /api/v1/ping"), 2);

    // Longer than the client will wait: handed back to the caller.
    sim.state()
        .add_fault(fault(
            "GET /api/v1/ping",
            FaultKind::RateLimit {
                retry_after_secs: 30,
            },
        ))
        .unwrap();
    assert_eq!(
        client.ping().await.unwrap_err(),
        StagesError::RateLimited {
            retry_after_secs: Some(30)
        }
    );
}

#[tokio::test]
async fn injected_garbage_is_a_bad_answer() {
    let sim = start_sim(2).await;
    sim.state()
        .add_fault(fault("GET /api/v1/sites", FaultKind::Malformed).times(1))
        .unwrap();
    let err = client(&sim)
        .list_sites(&StagesSiteQuery::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StagesError::BadAnswer(m) if m.starts_with("malformed")),
        "{err:?}"
    );
    assert_eq!(sim.state().request_count("GET /api/v1/sites"), 1);
}

#[tokio::test]
async fn injected_drop_is_unreachable_and_create_is_not_repeated() {
    let sim = start_sim(0).await;
    sim.state()
        .add_fault(fault("POST /api/v1/sites", FaultKind::Drop).times(1))
        .unwrap();
    let client = client(&sim);
    let err = client
        .create_site(&site("Dropped", None, &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, StagesError::Unreachable(_)), "{err:?}");
    assert_eq!(sim.state().request_count("POST /api/v1/sites"), 1);

    sim.state()
        .add_fault(fault("GET /api/v1/ping", FaultKind::Drop).times(1))
        .unwrap();
    client.ping().await.unwrap();
    assert_eq!(sim.state().request_count("GET /api/v1/ping"), 2);
}

#[tokio::test]
async fn a_hung_request_ends_at_the_timeout() {
    let sim = start_sim(0).await;
    sim.state()
        .add_fault(fault("GET /api/v1/ping", FaultKind::Timeout))
        .unwrap();
    let client = client_with(
        &sim,
        ClientSettings {
            timeout: Duration::from_millis(200),
            max_retries: 1,
            retry_base_delay: Duration::from_millis(10),
            max_retry_delay: Duration::from_millis(50),
            ..quick()
        },
    );
    let started = Instant::now();
    assert_eq!(client.ping().await.unwrap_err(), StagesError::Timeout);
    // Two attempts of 200 ms and one short pause: bounded.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sim.state().request_count("GET /api/v1/ping"), 2);
}
