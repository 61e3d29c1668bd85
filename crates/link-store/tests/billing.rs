//! The billing records suite, on SQLite and on PostgreSQL: upserts with
//! versions, references between records, refused deletes, customer search,
//! the Auto Sync outbox, and the service's own writes with their events.

#[macro_use]
mod common;

use common::*;
use domain::audit::NewAuditEntry;
use domain::billing::{
    BillingId, BillingWrite, BillingWritten, CustomerFields, CustomerKind, SiteFields,
    SystemFields, UserFields,
};
use domain::connection::{
    ConnectionChanges, ConnectionId, ConnectionStatus, CredentialOwner, ProviderKind,
};
use domain::events::{NewEvent, NewWebhookSubscription, SubscriptionId};
use domain::jobs::{kinds, Job, JobState};
use domain::link::{LinkId, LinkKind, NewLink};
use domain::link_sync::jobs::StagesRecord;
use domain::link_sync::LinkedRecord;
use domain::store::{
    BillingStore, ConnectionStore, EventStore, JobStore, LinkStore, PageRequest, StoreError,
    WebhookStore,
};
use domain::tenancy::{DealerId, UserId};
use domain::Secret;
use link_store::Store;

fn bid(id: &str) -> BillingId {
    BillingId::parse(id).unwrap()
}

fn person(first: &str, last: &str) -> CustomerFields {
    CustomerFields {
        kind: CustomerKind::Person,
        first_name: first.into(),
        last_name: last.into(),
        ..Default::default()
    }
}

fn site_of(customer: Option<&str>, name: &str) -> SiteFields {
    SiteFields {
        customer_id: customer.map(bid),
        name: name.into(),
        address1: "1 Main St".into(),
        city: "Springfield".into(),
        ..Default::default()
    }
}

fn system_of(site: &str, number: &str) -> SystemFields {
    SystemFields {
        site_id: bid(site),
        system_number: number.into(),
        panel_type: "DSC".into(),
        location: "hall".into(),
        info: String::new(),
    }
}

fn conflict_text<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Err(StoreError::Conflict(msg)) => msg,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// The message of a reference that names no record, checked to name `field`.
fn unknown_reference<T: std::fmt::Debug>(field: &str, result: Result<T, StoreError>) -> String {
    match result {
        Err(StoreError::UnknownReference { field: f, message }) if f == field => message,
        other => panic!("expected an unknown {field}, got {other:?}"),
    }
}

/// A customer C1 with site S1 and system Y1 under it.
async fn customer_site_system(store: &Store) {
    let d = dealer("d1");
    store
        .upsert_customer(&d, &bid("C1"), person("Ada", "Lovelace"), None)
        .await
        .unwrap();
    store
        .upsert_site(&d, &bid("S1"), site_of(Some("C1"), "Home"), None)
        .await
        .unwrap();
    store
        .upsert_system(&d, &bid("Y1"), system_of("S1", "1001"), None)
        .await
        .unwrap();
}

store_test!(upserts_create_update_and_check_versions, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let id = bid("C1");

    // If-Match on a record that is not there fails the precondition.
    assert_eq!(
        store
            .upsert_customer(&d, &id, person("Ada", "Lovelace"), Some(1))
            .await,
        Err(StoreError::VersionMismatch)
    );
    assert_eq!(store.customer(&d, &id).await, Err(StoreError::NotFound));

    let created = store
        .upsert_customer(&d, &id, person("Ada", "Lovelace"), None)
        .await
        .unwrap();
    assert!(created.created);
    assert_eq!(created.record.version, 1);
    assert_eq!(created.record.id, id);
    assert_eq!(created.record.dealer, d);
    assert_eq!(created.record.created_at, created.record.updated_at);
    assert_eq!(store.customer(&d, &id).await.unwrap(), created.record);

    // The same fields again change nothing, not even the version.
    let same = store
        .upsert_customer(&d, &id, person("Ada", "Lovelace"), Some(1))
        .await
        .unwrap();
    assert!(!same.created);
    assert_eq!(same.record, created.record);

    let mut changed_fields = person("Ada", "King");
    changed_fields.email = "ada@example.com".into();
    let changed = store
        .upsert_customer(&d, &id, changed_fields.clone(), Some(1))
        .await
        .unwrap();
    assert!(!changed.created);
    assert_eq!(changed.record.version, 2);
    assert_eq!(changed.record.fields, changed_fields);
    assert_eq!(changed.record.created_at, created.record.created_at);
    assert!(changed.record.updated_at >= created.record.updated_at);

    // A stale version is refused and changes nothing.
    assert_eq!(
        store
            .upsert_customer(&d, &id, person("Someone", "Else"), Some(1))
            .await,
        Err(StoreError::VersionMismatch)
    );
    assert_eq!(store.customer(&d, &id).await.unwrap(), changed.record);
    // Without If-Match the last writer wins.
    let third = store
        .upsert_customer(&d, &id, person("Someone", "Else"), None)
        .await
        .unwrap();
    assert_eq!(third.record.version, 3);

    // Another dealer's record of the same id is another record.
    assert_eq!(
        store.customer(&dealer("d2"), &id).await,
        Err(StoreError::NotFound)
    );
    let theirs = store
        .upsert_customer(&dealer("d2"), &id, person("Grace", "Hopper"), None)
        .await
        .unwrap();
    assert!(theirs.created);
    assert_eq!(store.customer(&d, &id).await.unwrap(), third.record);

    // Users keep their tags; sites and systems their fields.
    let fields = UserFields {
        first_name: "Op".into(),
        last_name: "Erator".into(),
        email: "op@example.com".into(),
        login_name: "op".into(),
        active: true,
        can_login: true,
        permission_group: "operators".into(),
        tags: vec!["night".into(), "lead".into()],
        ..Default::default()
    };
    let u = store
        .upsert_user(&d, &bid("U1"), fields.clone(), None)
        .await
        .unwrap();
    assert!(u.created);
    assert_eq!(store.user(&d, &bid("U1")).await.unwrap().fields, fields);
    let mut fewer = fields.clone();
    fewer.tags.clear();
    fewer.active = false;
    let u2 = store
        .upsert_user(&d, &bid("U1"), fewer.clone(), Some(1))
        .await
        .unwrap();
    assert_eq!((u2.record.version, u2.record.fields), (2, fewer));
    assert_eq!(
        store.delete_user(&d, &bid("U1"), Some(1)).await,
        Err(StoreError::VersionMismatch)
    );
    store.delete_user(&d, &bid("U1"), Some(2)).await.unwrap();
    assert_eq!(store.user(&d, &bid("U1")).await, Err(StoreError::NotFound));
    assert_eq!(
        store.delete_user(&d, &bid("U1"), None).await,
        Err(StoreError::NotFound)
    );

    // A site may lose its customer (the NULL is written, not skipped).
    store
        .upsert_site(&d, &bid("S1"), site_of(Some("C1"), "Home"), None)
        .await
        .unwrap();
    let orphan = store
        .upsert_site(&d, &bid("S1"), site_of(None, "Home"), None)
        .await
        .unwrap();
    assert_eq!(orphan.record.version, 2);
    assert_eq!(
        store.site(&d, &bid("S1")).await.unwrap().fields.customer_id,
        None
    );
});

store_test!(references_must_exist, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let msg = unknown_reference(
        "customer_id",
        store
            .upsert_site(&d, &bid("S1"), site_of(Some("C9"), "Home"), None)
            .await,
    );
    assert_eq!(msg, "billing customer 'C9' does not exist");
    let msg = unknown_reference(
        "site_id",
        store
            .upsert_system(&d, &bid("Y1"), system_of("S9", "1"), None)
            .await,
    );
    assert_eq!(msg, "billing site 'S9' does not exist");
    assert_eq!(store.site(&d, &bid("S1")).await, Err(StoreError::NotFound));

    customer_site_system(&store).await;
    // Another dealer's records are no references.
    let other = dealer("d2");
    unknown_reference(
        "customer_id",
        store
            .upsert_site(&other, &bid("S1"), site_of(Some("C1"), "Theirs"), None)
            .await,
    );
    unknown_reference(
        "site_id",
        store
            .upsert_system(&other, &bid("Y1"), system_of("S1", "1"), None)
            .await,
    );

    // A system moves to another site that exists, and not to one that does not.
    store
        .upsert_site(&d, &bid("S2"), site_of(None, "Shop"), None)
        .await
        .unwrap();
    let moved = store
        .upsert_system(&d, &bid("Y1"), system_of("S2", "1001"), Some(1))
        .await
        .unwrap();
    assert_eq!(moved.record.fields.site_id, bid("S2"));
    unknown_reference(
        "site_id",
        store
            .upsert_system(&d, &bid("Y1"), system_of("S3", "1001"), None)
            .await,
    );
    assert_eq!(store.system(&d, &bid("Y1")).await.unwrap(), moved.record);

    // The systems of a site, in id order; a missing site is not found.
    for id in ["Y3", "Y2"] {
        store
            .upsert_system(&d, &bid(id), system_of("S1", id), None)
            .await
            .unwrap();
    }
    let of_s1 = store.systems_of_site(&d, &bid("S1")).await.unwrap();
    assert_eq!(
        of_s1.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        vec!["Y2", "Y3"]
    );
    assert!(store
        .systems_of_site(&d, &bid("S2"))
        .await
        .unwrap()
        .iter()
        .all(|s| s.id == bid("Y1")));
    store
        .upsert_site(&d, &bid("S4"), site_of(None, "Empty"), None)
        .await
        .unwrap();
    assert_eq!(store.systems_of_site(&d, &bid("S4")).await, Ok(vec![]));
    assert_eq!(
        store.systems_of_site(&d, &bid("S9")).await,
        Err(StoreError::NotFound)
    );

    // Which ids exist, in the order asked, each once.
    let asked: Vec<String> = ["S4", "S9", "S1", "Y1", "S1"].map(String::from).to_vec();
    assert_eq!(
        store
            .existing_billing_ids(&d, LinkKind::Site, &asked)
            .await
            .unwrap(),
        vec!["S4", "S1"]
    );
    assert_eq!(
        store
            .existing_billing_ids(&d, LinkKind::System, &asked)
            .await
            .unwrap(),
        vec!["Y1"]
    );
    assert!(store
        .existing_billing_ids(&dealer("d2"), LinkKind::Site, &asked)
        .await
        .unwrap()
        .is_empty());
});

store_test!(deletes_are_refused_while_needed, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    customer_site_system(&store).await;
    store
        .upsert_site(&d, &bid("S2"), site_of(Some("C1"), "Shop"), None)
        .await
        .unwrap();

    let msg = conflict_text(store.delete_customer(&d, &bid("C1"), None).await);
    assert!(msg.contains("billing customer 'C1'"), "{msg}");
    assert!(msg.contains("'S1', 'S2'"), "{msg}");
    let msg = conflict_text(store.delete_site(&d, &bid("S1"), None).await);
    assert!(msg.contains("billing site 'S1'"), "{msg}");
    assert!(msg.contains("'Y1'"), "{msg}");

    // Linked records are refused too, until unlinked.
    let c = store
        .insert_connection(new_connection("d1", "Stages", ProviderKind::Stages))
        .await
        .unwrap();
    let site_link = LinkId::new();
    store
        .insert_links(
            &d,
            vec![
                NewLink {
                    id: site_link,
                    connection_id: c.id,
                    kind: LinkKind::Site,
                    billing_id: bid("S2"),
                    external_id: "10002".into(),
                    parent_id: None,
                },
                NewLink {
                    id: LinkId::new(),
                    connection_id: c.id,
                    kind: LinkKind::System,
                    billing_id: bid("Y1"),
                    external_id: "D1".into(),
                    parent_id: Some(site_link),
                },
            ],
            Vec::<NewAuditEntry>::new(),
        )
        .await
        .unwrap();
    let msg = conflict_text(store.delete_system(&d, &bid("Y1"), None).await);
    assert_eq!(
        msg,
        "billing system 'Y1' is linked on 1 connection; unlink it first"
    );
    let msg = conflict_text(store.delete_site(&d, &bid("S2"), None).await);
    assert_eq!(
        msg,
        "billing site 'S2' is linked on 1 connection; unlink it first"
    );
    // A stale version is reported before the dependants.
    assert_eq!(
        store.delete_site(&d, &bid("S2"), Some(9)).await,
        Err(StoreError::VersionMismatch)
    );
    store
        .unlink(&d, &[site_link], "alice", Vec::new())
        .await
        .unwrap();

    store.delete_system(&d, &bid("Y1"), Some(1)).await.unwrap();
    store.delete_site(&d, &bid("S1"), Some(1)).await.unwrap();
    store.delete_site(&d, &bid("S2"), None).await.unwrap();
    store
        .delete_customer(&d, &bid("C1"), Some(1))
        .await
        .unwrap();
    for result in [
        store.customer(&d, &bid("C1")).await.map(drop),
        store.site(&d, &bid("S1")).await.map(drop),
        store.system(&d, &bid("Y1")).await.map(drop),
        store.delete_customer(&d, &bid("C1"), None).await,
        store.delete_site(&d, &bid("S1"), None).await,
        store.delete_system(&d, &bid("Y1"), None).await,
    ] {
        assert_eq!(result, Err(StoreError::NotFound));
    }
    assert_eq!(db.count("billing_customers"), 0);
    assert_eq!(db.count("billing_sites"), 0);
    assert_eq!(db.count("billing_systems"), 0);
});

store_test!(
    deletes_name_a_few_dependants_and_count_the_rest,
    |db| async move {
        let store = db.store().await;
        let d = dealer("d1");
        store
            .upsert_customer(&d, &bid("C1"), person("Big", "Corp"), None)
            .await
            .unwrap();
        for i in 0..8 {
            store
                .upsert_site(&d, &bid(&format!("S{i}")), site_of(Some("C1"), "x"), None)
                .await
                .unwrap();
        }
        let msg = conflict_text(store.delete_customer(&d, &bid("C1"), None).await);
        assert!(
            msg.contains("'S0', 'S1', 'S2', 'S3', 'S4' and 3 more"),
            "{msg}"
        );
    }
);

store_test!(customers_are_searched_case_insensitively, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let customers = [
        (
            "C1",
            CustomerFields {
                first_name: "Ada".into(),
                last_name: "Lovelace".into(),
                phone: "(555) 123-4567".into(),
                email: "ada@analytical.org".into(),
                address1: "12 Babbage Lane".into(),
                city: "London".into(),
                zip: "N1 9GU".into(),
                ..Default::default()
            },
        ),
        (
            "C2",
            CustomerFields {
                kind: CustomerKind::Business,
                business_name: "Acme 100% Security_Co".into(),
                phone: "+1 555 987 6543".into(),
                email: "INFO@ACME.COM".into(),
                city: "Springfield".into(),
                state: "IL".into(),
                ..Default::default()
            },
        ),
        (
            "C3",
            CustomerFields {
                first_name: "Zoë".into(),
                last_name: "Ångström".into(),
                phone: "555.123.9999".into(),
                address1: "7 Main St".into(),
                city: "Springfield".into(),
                ..Default::default()
            },
        ),
    ];
    for (id, fields) in customers {
        store
            .upsert_customer(&d, &bid(id), fields, None)
            .await
            .unwrap();
    }
    store
        .upsert_customer(&dealer("d2"), &bid("X1"), person("Ada", "Other"), None)
        .await
        .unwrap();

    let search = |q: Option<&'static str>| {
        let store = store.clone();
        let d = d.clone();
        async move {
            store
                .search_customers(&d, q, first_page(100))
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|c| c.id.as_str().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(search(None).await, vec!["C1", "C2", "C3"]);
    assert_eq!(search(Some("   ")).await, vec!["C1", "C2", "C3"]);
    for (q, expected) in [
        // names, any case, first and last together
        ("ada", vec!["C1"]),
        ("LOVELACE", vec!["C1"]),
        ("ada  lovelace", vec!["C1"]),
        ("zoë ångström", vec!["C3"]),
        ("ZOË", vec!["C3"]),
        // business name, with LIKE's wildcards taken literally
        ("acme", vec!["C2"]),
        ("100% security_co", vec!["C2"]),
        ("%", vec!["C2"]),
        ("_", vec!["C2"]),
        // email
        ("info@acme", vec!["C2"]),
        ("analytical.ORG", vec!["C1"]),
        // address, city, state, zip
        ("babbage lane", vec!["C1"]),
        ("springfield", vec!["C2", "C3"]),
        ("n1 9gu", vec!["C1"]),
        ("main st springfield", vec!["C3"]),
        // phone by digits, whatever the punctuation
        ("5551234567", vec!["C1"]),
        ("555-123", vec!["C1", "C3"]),
        ("(555) 987-65", vec!["C2"]),
        ("555", vec!["C1", "C2", "C3"]),
        ("123 4567", vec!["C1"]),
        // a street number is not a phone search
        ("12 babbage", vec!["C1"]),
        ("7 main", vec!["C3"]),
        ("nobody", vec![]),
    ] {
        assert_eq!(search(Some(q)).await, expected, "query {q:?}");
    }

    // Search results page like lists do.
    let first = store
        .search_customers(&d, Some("springfield"), first_page(1))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 1);
    assert_eq!(first.items[0].id, bid("C2"));
    let token = first.next_page_token.expect("a second page");
    let second = store
        .search_customers(
            &d,
            Some("springfield"),
            PageRequest {
                after: Some(token),
                limit: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.items[0].id, bid("C3"));
    assert_eq!(second.next_page_token, None);

    // Changing a customer changes what finds it.
    store
        .upsert_customer(&d, &bid("C1"), person("Ada", "King"), None)
        .await
        .unwrap();
    assert!(search(Some("lovelace")).await.is_empty());
    assert_eq!(search(Some("king")).await, vec!["C1"]);
});

store_test!(
    billing_ids_sort_bytewise_on_both_backends,
    |db| async move {
        let store = db.store().await;
        let d = dealer("d1");
        let ids = ["b", "B", "a-2", "a_1", "A", "10", "9"];
        for id in ids {
            store
                .upsert_customer(&d, &bid(id), person("x", "y"), None)
                .await
                .unwrap();
        }
        let mut expected: Vec<&str> = ids.to_vec();
        expected.sort();
        let mut seen = Vec::new();
        let mut page = first_page(3);
        loop {
            let got = store
                .search_customers(&d, None, page.clone())
                .await
                .unwrap();
            seen.extend(got.items.into_iter().map(|c| c.id.as_str().to_owned()));
            match got.next_page_token {
                Some(token) => page.after = Some(token),
                None => break,
            }
        }
        assert_eq!(seen, expected);
    }
);

// --- the Auto Sync outbox ---------------------------------------------------------------

/// A Stages connection with Auto Sync as given, active unless `active` is false.
async fn connection_with(store: &Store, name: &str, auto_sync: bool, active: bool) -> ConnectionId {
    let c = store
        .insert_connection(new_connection("d1", name, ProviderKind::Stages))
        .await
        .unwrap();
    store
        .update_connection(
            &dealer("d1"),
            c.id,
            ConnectionChanges {
                auto_sync: Some(auto_sync),
                status: (!active).then_some(ConnectionStatus::Inactive),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    c.id
}

async fn link(store: &Store, connection: ConnectionId, kind: LinkKind, billing: &str) -> LinkId {
    let parent = match kind {
        LinkKind::Site => None,
        // A system link hangs under its site's link on the same connection.
        LinkKind::System => Some(
            store
                .links_of_billing(&dealer("d1"), LinkKind::Site, &bid("S1"))
                .await
                .unwrap()
                .into_iter()
                .find(|l| l.connection_id == connection)
                .unwrap()
                .id,
        ),
    };
    let new = NewLink {
        id: LinkId::new(),
        connection_id: connection,
        kind,
        billing_id: bid(billing),
        external_id: format!("X-{billing}-{}", connection.0.simple()),
        parent_id: parent,
    };
    store
        .insert_links(&dealer("d1"), vec![new.clone()], vec![])
        .await
        .unwrap();
    new.id
}

/// d1's site S1 and system Y1, linked on a Stages connection of their own:
/// the connection, the site's link and the system's.
async fn linked_site_and_system(store: &Store) -> (ConnectionId, LinkId, LinkId) {
    customer_site_system(store).await;
    let c = connection_with(store, "Stages", true, true).await;
    let site = link(store, c, LinkKind::Site, "S1").await;
    let system = link(store, c, LinkKind::System, "Y1").await;
    (c, site, system)
}

store_test!(
    a_link_to_settle_comes_with_what_its_sync_needs,
    |db| async move {
        let store = db.store().await;
        let d = dealer("d1");
        let (c, site, system) = linked_site_and_system(&store).await;

        // No dealer credential yet: the read says so rather than failing.
        let read = store.link_to_settle(&d, site).await.unwrap();
        assert_eq!((read.link.id, read.connection.id), (site, c));
        assert!(read.dealer_credential.is_none());
        assert!(matches!(read.billing, Some(LinkedRecord::Site(ref s)) if s.id == bid("S1")));

        // A user's credential on the same connection is not the dealer's.
        let user = CredentialOwner::User(UserId("u1".into()));
        store
            .put_credential(&d, c, &user, "user", &Secret::new("theirs"))
            .await
            .unwrap();
        let read = store.link_to_settle(&d, system).await.unwrap();
        assert!(read.dealer_credential.is_none());
        store
            .put_credential(
                &d,
                c,
                &CredentialOwner::Dealer,
                "dealer-user",
                &Secret::new("pw"),
            )
            .await
            .unwrap();
        let read = store.link_to_settle(&d, system).await.unwrap();
        assert_eq!(read.link.id, system);
        let credential = read.dealer_credential.expect("the dealer's credential");
        assert_eq!(credential.username, "dealer-user");
        assert_eq!(credential.password.expose(), "pw");
        assert!(matches!(read.billing, Some(LinkedRecord::System(ref s)) if s.id == bid("Y1")));

        // Another dealer's link, or none, is not found.
        assert_eq!(
            store.link_to_settle(&dealer("d2"), site).await.err(),
            Some(StoreError::NotFound)
        );
        assert_eq!(
            store.link_to_settle(&d, LinkId::new()).await.err(),
            Some(StoreError::NotFound)
        );

        // Found by its Stages record, as a callback finds it: the same read.
        let record = |on: ConnectionId, kind: LinkKind, billing: &str| StagesRecord {
            connection_id: on,
            kind,
            external_id: format!("X-{billing}-{}", c.0.simple()),
        };
        let read = store
            .link_to_settle_of_record(&d, &record(c, LinkKind::System, "Y1"))
            .await
            .unwrap()
            .expect("the system's link");
        assert_eq!((read.link.id, read.connection.id), (system, c));
        assert_eq!(read.dealer_credential.unwrap().username, "dealer-user");
        assert!(matches!(read.billing, Some(LinkedRecord::System(ref s)) if s.id == bid("Y1")));
        let read = store
            .link_to_settle_of_record(&d, &record(c, LinkKind::Site, "S1"))
            .await
            .unwrap()
            .expect("the site's link");
        assert_eq!(read.link.id, site);
        assert!(matches!(read.billing, Some(LinkedRecord::Site(ref s)) if s.id == bid("S1")));
        // Another kind, connection or dealer has no link of that record.
        let other = connection_with(&store, "Other Stages", true, true).await;
        for (who, on, kind) in [
            (&d, c, LinkKind::System),
            (&d, other, LinkKind::Site),
            (&dealer("d2"), c, LinkKind::Site),
        ] {
            let read = store
                .link_to_settle_of_record(who, &record(on, kind, "S1"))
                .await
                .unwrap();
            assert!(read.is_none(), "{who:?} {on:?} {kind:?}");
        }
    }
);

store_test!(
    links_to_settle_read_at_once_each_get_their_own_answer,
    |db| async move {
        let store = db.store().await;
        let d = dealer("d1");
        let (c, site, system) = linked_site_and_system(&store).await;

        // Forty reads in flight, as a runner's pushes make them: on
        // PostgreSQL they go together, a few statements for all, with the
        // same link asked several times in one and other dealers' or no
        // links beside them.
        let asks: Vec<(DealerId, LinkId)> = (0..40)
            .map(|n| match n % 4 {
                0 => (d.clone(), site),
                1 => (d.clone(), system),
                2 => (dealer("d2"), site),
                _ => (d.clone(), LinkId::new()),
            })
            .collect();
        let reads: Vec<_> = asks
            .iter()
            .cloned()
            .map(|(who, id)| {
                let store = store.clone();
                tokio::spawn(async move { store.link_to_settle(&who, id).await })
            })
            .collect();
        for ((who, id), read) in asks.iter().zip(reads) {
            let read = read.await.unwrap();
            let billing = match (who == &d, *id) {
                (true, i) if i == site => "S1",
                (true, i) if i == system => "Y1",
                _ => {
                    assert_eq!(read.err(), Some(StoreError::NotFound), "{who:?} {id:?}");
                    continue;
                }
            };
            let read = read.unwrap();
            assert_eq!((read.link.id, read.connection.id), (*id, c));
            let read_billing = match read.billing {
                Some(LinkedRecord::Site(s)) => s.id,
                Some(LinkedRecord::System(s)) => s.id,
                None => panic!("link {id:?} came without its billing record"),
            };
            assert_eq!(read_billing, bid(billing));
        }
    }
);

async fn pushes(store: &Store) -> Vec<Job> {
    let mut jobs = store
        .list_jobs(
            &dealer("d1"),
            None,
            Some(kinds::AUTO_SYNC_PUSH),
            first_page(100),
        )
        .await
        .unwrap()
        .items;
    jobs.reverse();
    jobs
}

fn pushed_links(jobs: &[Job]) -> Vec<String> {
    let mut links: Vec<String> = jobs
        .iter()
        .map(|j| j.payload["link_id"].as_str().unwrap().to_owned())
        .collect();
    links.sort();
    links
}

fn ids(links: &[LinkId]) -> Vec<String> {
    let mut ids: Vec<String> = links.iter().map(|l| l.to_string()).collect();
    ids.sort();
    ids
}

store_test!(
    changes_of_linked_records_enqueue_auto_sync_pushes,
    |db| async move {
        let store = db.store().await;
        let d = dealer("d1");
        customer_site_system(&store).await;
        let auto = connection_with(&store, "Auto", true, true).await;
        let manual = connection_with(&store, "Manual", false, true).await;
        let inactive = connection_with(&store, "Inactive", true, false).await;
        let site_link = link(&store, auto, LinkKind::Site, "S1").await;
        link(&store, manual, LinkKind::Site, "S1").await;
        link(&store, inactive, LinkKind::Site, "S1").await;
        let system_link = link(&store, auto, LinkKind::System, "Y1").await;

        // The same fields again: nothing changed, nothing to push.
        store
            .upsert_site(&d, &bid("S1"), site_of(Some("C1"), "Home"), None)
            .await
            .unwrap();
        assert!(pushes(&store).await.is_empty());

        // A change: one push, for the link on the active Auto Sync connection only.
        let before = chrono::Utc::now();
        store
            .upsert_site(&d, &bid("S1"), site_of(Some("C1"), "Home 2"), None)
            .await
            .unwrap();
        let jobs = pushes(&store).await;
        assert_eq!(jobs.len(), 1);
        let push = &jobs[0];
        assert_eq!(push.dealer, d);
        assert_eq!(push.kind, "auto_sync_push");
        assert_eq!(
            push.payload,
            serde_json::json!({"link_id": site_link.to_string()})
        );
        assert_eq!(
            push.unique_key.as_deref(),
            Some(format!("auto_sync:{site_link}").as_str())
        );
        assert_eq!((push.max_attempts, push.attempts), (8, 0));
        assert_eq!(push.state, JobState::Queued);
        assert_eq!(push.created_by, "system:auto_sync");
        assert!(push.run_at >= before - chrono::TimeDelta::seconds(1));
        assert!(push.run_at <= chrono::Utc::now());

        // Quick edits coalesce into the queued push.
        store
            .upsert_site(&d, &bid("S1"), site_of(Some("C1"), "Home 3"), None)
            .await
            .unwrap();
        assert_eq!(pushes(&store).await, jobs);

        // A system's change pushes its own link.
        let mut system = system_of("S1", "1001");
        system.location = "garage".into();
        store
            .upsert_system(&d, &bid("Y1"), system.clone(), None)
            .await
            .unwrap();
        assert_eq!(
            pushed_links(&pushes(&store).await),
            ids(&[site_link, system_link])
        );

        // An edit while the push runs gets a push of its own, queued beside it:
        // the running one read the older values.
        let running = store
            .claim_job(
                &[kinds::AUTO_SYNC_PUSH.to_owned()],
                "w1",
                chrono::TimeDelta::seconds(30),
                chrono::Utc::now(),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(running.id, push.id);
        store
            .upsert_site(&d, &bid("S1"), site_of(Some("C1"), "Home 4"), None)
            .await
            .unwrap();
        let jobs = pushes(&store).await;
        let of_site: Vec<&Job> = jobs
            .iter()
            .filter(|j| j.payload["link_id"] == site_link.to_string())
            .collect();
        assert_eq!(of_site.len(), 2);
        assert_eq!(of_site[0].id, push.id);
        assert_eq!(of_site[0].state, JobState::Running);
        assert_eq!(of_site[1].state, JobState::Queued);

        // With no push queued (so a new one would show), none is made for: a
        // refused upsert, a customer, an unlinked record.
        for job in pushes(&store).await {
            if job.state == JobState::Queued {
                store.cancel_job(&d, job.id).await.unwrap();
            }
        }
        let count = pushes(&store).await.len();
        assert_eq!(
            store
                .upsert_site(&d, &bid("S1"), site_of(Some("C1"), "x"), Some(1))
                .await,
            Err(StoreError::VersionMismatch)
        );
        store
            .upsert_customer(&d, &bid("C1"), person("Ada", "King"), None)
            .await
            .unwrap();
        store
            .upsert_site(&d, &bid("S2"), site_of(None, "Unlinked"), None)
            .await
            .unwrap();
        store
            .upsert_site(&d, &bid("S2"), site_of(None, "Unlinked 2"), None)
            .await
            .unwrap();
        assert_eq!(pushes(&store).await.len(), count);

        // Auto Sync turned off: changes stay here.
        store
            .update_connection(
                &d,
                auto,
                ConnectionChanges {
                    auto_sync: Some(false),
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap();
        store
            .upsert_system(&d, &bid("Y1"), system_of("S1", "2002"), None)
            .await
            .unwrap();
        assert_eq!(pushes(&store).await.len(), count);
    }
);

fn site_event(id: &str, connection: Option<ConnectionId>) -> NewEvent {
    NewEvent {
        event_type: "billing.site.updated".into(),
        subject_kind: "site".into(),
        subject_id: id.into(),
        connection_id: connection,
        data: serde_json::json!({"id": id, "changed": ["name"]}),
    }
}

store_test!(
    the_services_own_writes_carry_events_and_skip_their_origin,
    |db| async move {
        let store = db.store().await;
        let d = dealer("d1");
        customer_site_system(&store).await;
        let a = connection_with(&store, "A", true, true).await;
        let b = connection_with(&store, "B", true, true).await;
        let on_a = link(&store, a, LinkKind::Site, "S1").await;
        let on_b = link(&store, b, LinkKind::Site, "S1").await;
        let sub = store
            .create_subscription(
                &d,
                NewWebhookSubscription {
                    id: SubscriptionId(uuid::Uuid::now_v7()),
                    url: "https://hooks.example.com/in".parse().unwrap(),
                    types: vec![],
                    secret: Secret::new("whsec_c2VjcmV0"),
                },
            )
            .await
            .unwrap();
        let deliveries = |store: Store| async move {
            store
                .list_jobs(
                    &dealer("d1"),
                    None,
                    Some(kinds::WEBHOOK_DELIVERY),
                    first_page(100),
                )
                .await
                .unwrap()
                .items
        };

        // A change that came from A: pushed to B only, with its event.
        let write = |name: &str| BillingWrite::Site {
            id: bid("S1"),
            fields: site_of(Some("C1"), name),
        };
        let written = store
            .write_billing(
                &d,
                write("From A"),
                vec![site_event("S1", Some(a))],
                Some(a),
                Vec::new(),
            )
            .await
            .unwrap();
        let BillingWritten::Site(site) = written else {
            panic!("a site write answers with the site: {written:?}");
        };
        assert!(!site.created);
        assert_eq!(site.record.version, 2);
        assert_eq!(site.record.fields.name, "From A");
        assert_eq!(store.site(&d, &bid("S1")).await.unwrap(), site.record);
        assert_eq!(pushed_links(&pushes(&store).await), ids(&[on_b]));
        let events = store.list_events(&d, None, &[], 10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, "billing.site.updated");
        assert_eq!(events[0].connection_id, Some(a));
        assert_eq!(events[0].data["changed"], serde_json::json!(["name"]));
        let sent = deliveries(store.clone()).await;
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0].payload,
            serde_json::json!({"subscription_id": sub.id, "event_id": events[0].id})
        );

        // The same values again: nothing written, no event, no push.
        store
            .claim_job(
                &[kinds::AUTO_SYNC_PUSH.to_owned()],
                "w1",
                chrono::TimeDelta::seconds(30),
                chrono::Utc::now(),
            )
            .await
            .unwrap()
            .unwrap();
        let again = store
            .write_billing(
                &d,
                write("From A"),
                vec![site_event("S1", Some(a))],
                Some(a),
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(again, BillingWritten::Site(site.clone()));
        assert_eq!(store.list_events(&d, None, &[], 10).await.unwrap().len(), 1);
        assert_eq!(pushes(&store).await.len(), 1);
        assert_eq!(deliveries(store.clone()).await.len(), 1);

        // No origin: every Auto Sync link gets it (B's running push gets a queued one beside it).
        store
            .write_billing(
                &d,
                write("From nowhere"),
                vec![site_event("S1", None)],
                None,
                Vec::new(),
            )
            .await
            .unwrap();
        let queued: Vec<Job> = pushes(&store)
            .await
            .into_iter()
            .filter(|j| j.state == JobState::Queued)
            .collect();
        assert_eq!(pushed_links(&queued), ids(&[on_a, on_b]));
        assert_eq!(store.list_events(&d, None, &[], 10).await.unwrap().len(), 2);

        // Records of every kind are created and updated, with no version check.
        let created = store
            .write_billing(
                &d,
                BillingWrite::Customer {
                    id: bid("C2"),
                    fields: person("Grace", "Hopper"),
                },
                vec![],
                None,
                Vec::new(),
            )
            .await
            .unwrap();
        match created {
            BillingWritten::Customer(c) => {
                assert!(c.created);
                assert_eq!(
                    (c.record.version, c.record.fields.first_name.as_str()),
                    (1, "Grace")
                );
            }
            other => panic!("{other:?}"),
        }
        let user = UserFields {
            first_name: "Ada".into(),
            login_name: "ada".into(),
            ..Default::default()
        };
        match store
            .write_billing(
                &d,
                BillingWrite::User {
                    id: bid("U1"),
                    fields: user,
                },
                vec![],
                None,
                Vec::new(),
            )
            .await
            .unwrap()
        {
            BillingWritten::User(u) => assert!(u.created),
            other => panic!("{other:?}"),
        }
        match store
            .write_billing(
                &d,
                BillingWrite::System {
                    id: bid("Y1"),
                    fields: system_of("S1", "7777"),
                },
                vec![],
                Some(b),
                Vec::new(),
            )
            .await
            .unwrap()
        {
            BillingWritten::System(y) => {
                assert!(!y.created);
                assert_eq!(
                    (y.record.version, y.record.fields.system_number.as_str()),
                    (2, "7777")
                );
            }
            other => panic!("{other:?}"),
        }

        // References are enforced, and a refused write records nothing.
        let events_before = db.count("events");
        let jobs_before = db.count("jobs");
        let msg = unknown_reference(
            "site_id",
            store
                .write_billing(
                    &d,
                    BillingWrite::System {
                        id: bid("Y9"),
                        fields: system_of("S404", "1"),
                    },
                    vec![site_event("S404", None)],
                    None,
                    Vec::new(),
                )
                .await,
        );
        assert!(msg.contains("'S404'"), "{msg}");
        let msg = unknown_reference(
            "customer_id",
            store
                .write_billing(
                    &d,
                    BillingWrite::Site {
                        id: bid("S9"),
                        fields: site_of(Some("C404"), "x"),
                    },
                    vec![site_event("S9", None)],
                    None,
                    Vec::new(),
                )
                .await,
        );
        assert!(msg.contains("'C404'"), "{msg}");
        assert_eq!(db.count("events"), events_before);
        assert_eq!(db.count("jobs"), jobs_before);
    }
);
