//! The billing records suite, on SQLite and on PostgreSQL: upserts with
//! versions, references between records, refused deletes, customer search.

#[macro_use]
mod common;

use common::*;
use domain::audit::NewAuditEntry;
use domain::billing::{
    BillingId, CustomerFields, CustomerKind, SiteFields, SystemFields, UserFields,
};
use domain::connection::ProviderKind;
use domain::link::{LinkId, LinkKind, NewLink};
use domain::store::{BillingStore, ConnectionStore, LinkStore, PageRequest, StoreError};
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
    let msg = conflict_text(
        store
            .upsert_site(&d, &bid("S1"), site_of(Some("C9"), "Home"), None)
            .await,
    );
    assert_eq!(msg, "billing customer 'C9' does not exist");
    let msg = conflict_text(
        store
            .upsert_system(&d, &bid("Y1"), system_of("S9", "1"), None)
            .await,
    );
    assert_eq!(msg, "billing site 'S9' does not exist");
    assert_eq!(store.site(&d, &bid("S1")).await, Err(StoreError::NotFound));

    customer_site_system(&store).await;
    // Another dealer's records are no references.
    let other = dealer("d2");
    conflict_text(
        store
            .upsert_site(&other, &bid("S1"), site_of(Some("C1"), "Theirs"), None)
            .await,
    );
    conflict_text(
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
    conflict_text(
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
