//! The store suite: every case below runs on SQLite (a temp file) and on
//! PostgreSQL (a fresh schema on `TEST_DATABASE_URL`), as `<case>::sqlite` and
//! `<case>::postgres`. Without `TEST_DATABASE_URL` the PostgreSQL half fails
//! rather than skipping, so a green run means both backends were tried.

#[macro_use]
mod common;

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::*;
use diesel::prelude::*;
use diesel::sql_types::Text;
use domain::audit::AuditFilter;
use domain::connection::{
    ConnectionChanges, ConnectionId, ConnectionName, ConnectionStatus, CredentialOwner, Endpoint,
    InboundCredential, ProviderKind,
};
use domain::jobs::{Done, Job, JobId, JobState, NewJob, ProcessedCallback};
use domain::store::{
    AuditStore, Claim, ConnectionStore, IdempotencyBegin, IdempotencyScope, IdempotencyStore,
    InboundLookup, InboxStore, JobStore, PageRequest, Received, StoreError, StoredResponse,
};
use domain::tenancy::{DealerId, UserId};
use domain::Secret;
use link_store::{Backend, SecretKey, Store, StoreOpenError, StoreOptions};

fn user(id: &str) -> CredentialOwner {
    CredentialOwner::User(UserId(id.into()))
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn scope(dealer_id: &str, user_id: &str, key: &str) -> IdempotencyScope {
    IdempotencyScope {
        dealer: dealer(dealer_id),
        user: user_id.into(),
        key: key.into(),
    }
}

fn response() -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("location".into(), "/v1/connections/1".into()),
        ],
        body: br#"{"id":"1"}"#.to_vec(),
    }
}

// --- migrations -------------------------------------------------------------------------

store_test!(
    migrate_applies_once_and_readiness_follows,
    |db| async move {
        let store = db.open().await;
        let before = store.readiness().await;
        assert!(before.database_reachable);
        assert_eq!(before.pending_migrations, db.migration_names().len());
        assert!(!before.is_ready());

        let first = store.migrate().await.unwrap();
        assert_eq!(first.applied, db.migration_names());
        let after = store.readiness().await;
        assert_eq!(after.pending_migrations, 0);
        assert!(after.is_ready());

        let second = store.migrate().await.unwrap();
        assert!(second.applied.is_empty(), "{:?}", second.applied);
        assert_eq!(
            db.count("__diesel_schema_migrations"),
            db.migration_names().len() as i64
        );
    }
);

store_test!(concurrent_migrations_from_three_stores, |db| async move {
    // Three replicas starting together on one empty database.
    let (a, b, c) = tokio::join!(db.open(), db.open(), db.open());
    let (ra, rb, rc) = tokio::join!(a.migrate(), b.migrate(), c.migrate());
    let mut applied: Vec<String> = [ra, rb, rc]
        .into_iter()
        .flat_map(|r| r.expect("every replica comes up").applied)
        .collect();
    applied.sort();
    assert_eq!(applied, db.migration_names(), "each migration applied once");
    assert_eq!(
        db.count("__diesel_schema_migrations"),
        db.migration_names().len() as i64
    );
    for store in [&a, &b, &c] {
        assert!(store.readiness().await.is_ready());
    }
});

// --- connections ------------------------------------------------------------------------

store_test!(connections_insert_get_update_delete, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let created = store
        .insert_connection(new_connection("d1", "Stages", ProviderKind::Stages))
        .await
        .unwrap();
    assert_eq!(created.version, 1);
    assert_eq!(created.created_at, created.updated_at);
    assert_eq!(store.connection(&d, created.id).await.unwrap(), created);

    // Names are unique per dealer, whatever their case.
    let dup = store
        .insert_connection(new_connection("d1", "  sTAGES ", ProviderKind::AlarmCom))
        .await;
    match dup {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("sTAGES"), "{msg}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Another dealer may use the name.
    store
        .insert_connection(new_connection("d2", "Stages", ProviderKind::Stages))
        .await
        .unwrap();

    let changes = ConnectionChanges {
        name: Some(ConnectionName::parse("Stages main").unwrap()),
        auto_sync: Some(false),
        status: Some(ConnectionStatus::Inactive),
        ..Default::default()
    };
    let updated = store
        .update_connection(&d, created.id, changes.clone(), Some(1))
        .await
        .unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.name.as_str(), "Stages main");
    assert!(!updated.auto_sync);
    assert_eq!(updated.status, ConnectionStatus::Inactive);
    assert_eq!(updated.endpoint, created.endpoint);
    assert_eq!(updated.created_at, created.created_at);
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(store.connection(&d, created.id).await.unwrap(), updated);

    // A stale version is refused and changes nothing.
    assert_eq!(
        store
            .update_connection(&d, created.id, changes.clone(), Some(1))
            .await,
        Err(StoreError::VersionMismatch)
    );
    assert_eq!(store.connection(&d, created.id).await.unwrap(), updated);

    // Without a version the change applies; a case-only rename of itself is fine.
    let renamed = store
        .update_connection(
            &d,
            created.id,
            ConnectionChanges {
                name: Some(ConnectionName::parse("STAGES MAIN").unwrap()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(renamed.version, 3);
    assert_eq!(renamed.name.as_str(), "STAGES MAIN");

    // Renaming onto another connection's name (other case) conflicts.
    let other = store
        .insert_connection(new_connection("d1", "Alarm.com", ProviderKind::AlarmCom))
        .await
        .unwrap();
    let clash = store
        .update_connection(
            &d,
            other.id,
            ConnectionChanges {
                name: Some(ConnectionName::parse("stages main").unwrap()),
                ..Default::default()
            },
            Some(1),
        )
        .await;
    assert!(matches!(clash, Err(StoreError::Conflict(_))), "{clash:?}");

    // An empty change checks the version and leaves it.
    assert_eq!(
        store
            .update_connection(&d, other.id, ConnectionChanges::default(), Some(1))
            .await
            .unwrap(),
        other
    );
    assert_eq!(
        store
            .update_connection(&d, other.id, ConnectionChanges::default(), Some(7))
            .await,
        Err(StoreError::VersionMismatch)
    );

    // Delete: stale version refused, then gone, then "not found".
    assert_eq!(
        store.delete_connection(&d, created.id, Some(2)).await,
        Err(StoreError::VersionMismatch)
    );
    store
        .delete_connection(&d, created.id, Some(3))
        .await
        .unwrap();
    assert_eq!(
        store.connection(&d, created.id).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.delete_connection(&d, created.id, None).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.update_connection(&d, created.id, changes, None).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.connection(&d, ConnectionId::new()).await,
        Err(StoreError::NotFound)
    );
    // The name is free again.
    store
        .insert_connection(new_connection("d1", "Stages", ProviderKind::Stages))
        .await
        .unwrap();
});

store_test!(connections_list_in_pages, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let mut ids = Vec::new();
    for (i, provider) in [
        ProviderKind::Stages,
        ProviderKind::AlarmCom,
        ProviderKind::Stages,
        ProviderKind::TotalConnect,
        ProviderKind::Stages,
    ]
    .into_iter()
    .enumerate()
    {
        let c = store
            .insert_connection(new_connection("d1", &format!("c{i}"), provider))
            .await
            .unwrap();
        ids.push(c.id);
    }
    // Someone else's rows never show.
    store
        .insert_connection(new_connection("d2", "c9", ProviderKind::Stages))
        .await
        .unwrap();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "v7 ids follow creation order");

    let mut seen = Vec::new();
    let mut page = first_page(2);
    let mut sizes = Vec::new();
    loop {
        let got = store
            .list_connections(&d, None, page.clone())
            .await
            .unwrap();
        sizes.push(got.items.len());
        seen.extend(got.items.iter().map(|c| c.id));
        assert!(got.items.iter().all(|c| c.dealer == d));
        match got.next_page_token {
            Some(token) => page.after = Some(token),
            None => break,
        }
    }
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(seen, ids);

    // An exact fit has no next page.
    let all = store
        .list_connections(&d, None, first_page(5))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 5);
    assert_eq!(all.next_page_token, None);

    let stages = store
        .list_connections(&d, Some(ProviderKind::Stages), first_page(2))
        .await
        .unwrap();
    assert_eq!(
        stages.items.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![ids[0], ids[2]]
    );
    let rest = store
        .list_connections(
            &d,
            Some(ProviderKind::Stages),
            PageRequest {
                after: stages.next_page_token,
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![ids[4]]
    );
    assert_eq!(rest.next_page_token, None);
    let none = store
        .list_connections(&d, Some(ProviderKind::BrinksHome), first_page(10))
        .await
        .unwrap();
    assert!(none.items.is_empty());
    assert_eq!(none.next_page_token, None);
});

store_test!(dealers_never_see_each_other, |db| async move {
    let store = db.store().await;
    let mine = store
        .insert_connection(new_connection("d1", "Stages", ProviderKind::Stages))
        .await
        .unwrap();
    store
        .put_credential(
            &dealer("d1"),
            mine.id,
            &CredentialOwner::Dealer,
            "dealer-user",
            &Secret::new("pw"),
        )
        .await
        .unwrap();
    let other = dealer("d2");
    assert_eq!(
        store.connection(&other, mine.id).await,
        Err(StoreError::NotFound)
    );
    assert!(store
        .list_connections(&other, None, first_page(10))
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(
        store
            .update_connection(
                &other,
                mine.id,
                ConnectionChanges {
                    auto_sync: Some(false),
                    ..Default::default()
                },
                None
            )
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.delete_connection(&other, mine.id, None).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store
            .credential(&other, mine.id, &CredentialOwner::Dealer)
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store
            .put_credential(
                &other,
                mine.id,
                &CredentialOwner::Dealer,
                "x",
                &Secret::new("y")
            )
            .await
            .map(|_| ()),
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store
            .delete_credential(&other, mine.id, &CredentialOwner::Dealer)
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.inbound_credential(&other, mine.id).await,
        Err(StoreError::NotFound)
    );
    let inbound = InboundCredential {
        username: "cb".into(),
        secret: Secret::new("s"),
        rotated_at: Utc::now(),
    };
    assert_eq!(
        store
            .set_inbound_credential(&other, mine.id, &inbound)
            .await,
        Err(StoreError::NotFound)
    );
    // All of it still there for its owner.
    assert_eq!(
        store.connection(&dealer("d1"), mine.id).await.unwrap(),
        mine
    );
    let cred = store
        .credential(&dealer("d1"), mine.id, &CredentialOwner::Dealer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cred.password.expose(), "pw");
});

// --- credentials ------------------------------------------------------------------------

store_test!(credentials_stay_bound_to_their_endpoint, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let c = store
        .insert_connection(new_connection("d1", "Stages", ProviderKind::Stages))
        .await
        .unwrap();
    let put = |owner: CredentialOwner, password: &'static str| {
        let store = store.clone();
        let d = d.clone();
        async move {
            store
                .put_credential(&d, c.id, &owner, "u", &Secret::new(password))
                .await
                .unwrap();
        }
    };
    put(CredentialOwner::Dealer, "dealer-pw").await;
    put(user("alice"), "alice-pw").await;
    let endpoint = |s: &str| ConnectionChanges {
        endpoint: Some(Endpoint::parse(s).unwrap()),
        ..Default::default()
    };

    // Another path on the same server keeps them (the default port is the same port).
    let same = store
        .update_connection_as(
            &d,
            c.id,
            endpoint("https://stages.example.com:443/v2"),
            None,
            None,
            "alice",
        )
        .await
        .unwrap();
    assert!(!same.credentials_dropped);
    // A credential is read with the endpoint it is kept for.
    let kept = store
        .credential(&d, c.id, &CredentialOwner::Dealer)
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(kept.endpoint, same.connection.endpoint);

    // Another host drops every credential, in one go with an audit entry.
    let moved = store
        .update_connection_as(
            &d,
            c.id,
            endpoint("https://evil.example.net/v2"),
            Some(same.connection.version),
            None,
            "alice",
        )
        .await
        .unwrap();
    assert!(moved.credentials_dropped);
    assert_eq!(
        moved.connection.endpoint.as_str(),
        "https://evil.example.net/v2"
    );
    assert_eq!(
        store
            .credential(&d, c.id, &CredentialOwner::Dealer)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.credential(&d, c.id, &user("alice")).await.unwrap(),
        None
    );
    let audit = store
        .list_audit(
            &d,
            &AuditFilter {
                connection_id: Some(c.id),
                ..Default::default()
            },
            first_page(10),
        )
        .await
        .unwrap()
        .items;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].entry.action, "drop_credentials");
    assert_eq!(audit[0].entry.actor, "alice");
    assert_eq!(
        audit[0].entry.before.as_ref().unwrap()["endpoint"],
        "https://stages.example.com/v2"
    );

    // Nothing left to drop: no entry. Another scheme or port moves it too,
    // and a dealer credential given with the change is kept.
    put(user("bob"), "bob-pw").await;
    let with_new = store
        .update_connection_as(
            &d,
            c.id,
            endpoint("http://evil.example.net:8080/"),
            None,
            Some(("new-user".into(), Secret::new("new-pw"))),
            "alice",
        )
        .await
        .unwrap();
    assert!(with_new.credentials_dropped, "bob's credential went");
    assert_eq!(
        store.credential(&d, c.id, &user("bob")).await.unwrap(),
        None
    );
    let dealer_cred = store
        .credential(&d, c.id, &CredentialOwner::Dealer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (dealer_cred.username.as_str(), dealer_cred.password.expose()),
        ("new-user", "new-pw")
    );

    // A stale version changes nothing, credentials included.
    assert_eq!(
        store
            .update_connection_as(
                &d,
                c.id,
                endpoint("https://third.example.org/"),
                Some(1),
                None,
                "alice"
            )
            .await,
        Err(StoreError::VersionMismatch)
    );
    assert!(store
        .credential(&d, c.id, &CredentialOwner::Dealer)
        .await
        .unwrap()
        .is_some());
});

store_test!(credentials_per_owner, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let c = store
        .insert_connection(new_connection("d1", "Stages", ProviderKind::Stages))
        .await
        .unwrap();
    assert_eq!(
        store.credential(&d, c.id, &CredentialOwner::Dealer).await,
        Ok(None)
    );

    let put = store
        .put_credential(
            &d,
            c.id,
            &CredentialOwner::Dealer,
            "dealer-login",
            &Secret::new("dealer-pw"),
        )
        .await
        .unwrap();
    let got = store
        .credential(&d, c.id, &CredentialOwner::Dealer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, put);
    assert_eq!(got.username, "dealer-login");
    assert_eq!(got.password.expose(), "dealer-pw");

    // Replacing keeps one row per owner.
    store
        .put_credential(
            &d,
            c.id,
            &CredentialOwner::Dealer,
            "dealer-login-2",
            &Secret::new("dealer-pw-2"),
        )
        .await
        .unwrap();
    let got = store
        .credential(&d, c.id, &CredentialOwner::Dealer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.username.as_str(), got.password.expose()),
        ("dealer-login-2", "dealer-pw-2")
    );

    // Users hold their own, and read only their own.
    for (u, pw) in [("alice", "alice-pw"), ("bob", "bob-pw")] {
        store
            .put_credential(&d, c.id, &user(u), &format!("{u}-login"), &Secret::new(pw))
            .await
            .unwrap();
    }
    let alice = store
        .credential(&d, c.id, &user("alice"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (alice.username.as_str(), alice.password.expose()),
        ("alice-login", "alice-pw")
    );
    let bob = store
        .credential(&d, c.id, &user("bob"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bob.password.expose(), "bob-pw");
    assert_eq!(store.credential(&d, c.id, &user("carol")).await, Ok(None));
    assert_eq!(db.count("credentials"), 3);

    assert_eq!(
        store.delete_credential(&d, c.id, &user("alice")).await,
        Ok(true)
    );
    assert_eq!(
        store.delete_credential(&d, c.id, &user("alice")).await,
        Ok(false)
    );
    assert_eq!(store.credential(&d, c.id, &user("alice")).await, Ok(None));
    assert!(store
        .credential(&d, c.id, &user("bob"))
        .await
        .unwrap()
        .is_some());

    // A missing connection is "not found", not "no credential".
    assert_eq!(
        store
            .credential(&d, ConnectionId::new(), &CredentialOwner::Dealer)
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store
            .put_credential(
                &d,
                ConnectionId::new(),
                &CredentialOwner::Dealer,
                "x",
                &Secret::new("y")
            )
            .await
            .map(|_| ()),
        Err(StoreError::NotFound)
    );

    // Deleting the connection takes its credentials along.
    store
        .set_inbound_credential(
            &d,
            c.id,
            &InboundCredential {
                username: "cb-user".into(),
                secret: Secret::new("cb-secret"),
                rotated_at: Utc::now(),
            },
        )
        .await
        .unwrap();
    store.delete_connection(&d, c.id, None).await.unwrap();
    assert_eq!(db.count("credentials"), 0);
    assert_eq!(db.count("inbound_credentials"), 0);
});

store_test!(inbound_credentials_set_and_rotate, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let a = store
        .insert_connection(new_connection("d1", "A", ProviderKind::Stages))
        .await
        .unwrap();
    let b = store
        .insert_connection(new_connection("d1", "B", ProviderKind::Stages))
        .await
        .unwrap();
    assert_eq!(store.inbound_credential(&d, a.id).await, Ok(None));

    let first = InboundCredential {
        username: "cb-a".into(),
        secret: Secret::new("secret-1"),
        rotated_at: Utc::now() - TimeDelta::hours(1),
    };
    store
        .set_inbound_credential(&d, a.id, &first)
        .await
        .unwrap();
    let got = store.inbound_credential(&d, a.id).await.unwrap().unwrap();
    assert_eq!(got.username, "cb-a");
    assert_eq!(got.secret.expose(), "secret-1");
    // Stored to the microsecond.
    assert!((got.rotated_at - first.rotated_at).abs() < TimeDelta::microseconds(1));

    let rotated = InboundCredential {
        username: "cb-a2".into(),
        secret: Secret::new("secret-2"),
        rotated_at: Utc::now(),
    };
    store
        .set_inbound_credential(&d, a.id, &rotated)
        .await
        .unwrap();
    let got = store.inbound_credential(&d, a.id).await.unwrap().unwrap();
    assert_eq!(
        (got.username.as_str(), got.secret.expose()),
        ("cb-a2", "secret-2")
    );
    assert_eq!(db.count("inbound_credentials"), 1);

    // An inbound username names one connection only.
    let taken = InboundCredential {
        username: "cb-a2".into(),
        secret: Secret::new("other"),
        rotated_at: Utc::now(),
    };
    assert!(matches!(
        store.set_inbound_credential(&d, b.id, &taken).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.inbound_credential(&d, b.id).await, Ok(None));
});

store_test!(
    connections_are_found_for_callbacks_by_id_alone,
    |db| async move {
        let store = db.store().await;
        let c = store
            .insert_connection(new_connection("d1", "Stages", ProviderKind::Stages))
            .await
            .unwrap();
        assert_eq!(
            store.connection_for_callback(ConnectionId::new()).await,
            Ok(None)
        );
        // No dealer asked, none needed: the connection comes with its dealer.
        let (found, inbound) = store.connection_for_callback(c.id).await.unwrap().unwrap();
        assert_eq!(found, c);
        assert_eq!(found.dealer, dealer("d1"));
        assert!(inbound.is_none());

        let credential = InboundCredential {
            username: "cb-stages".into(),
            secret: Secret::new("cb-secret"),
            rotated_at: Utc::now(),
        };
        store
            .set_inbound_credential(&dealer("d1"), c.id, &credential)
            .await
            .unwrap();
        let (_, inbound) = store.connection_for_callback(c.id).await.unwrap().unwrap();
        let inbound = inbound.unwrap();
        assert_eq!(inbound.username, "cb-stages");
        assert_eq!(inbound.secret.expose(), "cb-secret");
        assert!((inbound.rotated_at - credential.rotated_at).abs() < TimeDelta::microseconds(1));

        // A wrong key cannot open the inbound secret: unavailable, not "no credential".
        let wrong = db.open_with(SecretKey::generate()).await;
        assert!(matches!(
            wrong.connection_for_callback(c.id).await,
            Err(StoreError::Unavailable(_))
        ));
        store
            .delete_connection(&dealer("d1"), c.id, None)
            .await
            .unwrap();
        assert_eq!(store.connection_for_callback(c.id).await, Ok(None));
    }
);

// --- the inbox of callbacks -------------------------------------------------------------

fn callback_job(dealer_id: &str) -> NewJob {
    NewJob {
        id: JobId::new(),
        dealer: dealer(dealer_id),
        kind: "stages_callback".into(),
        payload: serde_json::json!({"event_id": "e1"}),
        max_attempts: 5,
        run_at: Utc::now(),
        unique_key: None,
        serial_key: None,
        created_by: "system:callbacks".into(),
    }
}

/// Claims up to `limit` queued callback jobs for worker `w1`.
async fn claim_callback_jobs(store: &Store, limit: usize) -> Vec<Job> {
    let kinds = vec!["stages_callback".to_owned()];
    store
        .claim_jobs(Claim {
            kinds: &kinds,
            worker: "w1",
            lease: TimeDelta::seconds(30),
            now: Utc::now(),
            limit,
            settle_lost_leases: false,
            max_running_per_dealer: 10,
            most_of_kind: &[],
        })
        .await
        .unwrap()
}

/// Claims one queued callback job and records its end with `processed`.
async fn end_callback_job(store: &Store, processed: ProcessedCallback) {
    let claimed = claim_callback_jobs(store, 1).await;
    assert_eq!(claimed.len(), 1, "a callback job is queued");
    let done = Done::from(serde_json::json!({})).marking(processed);
    let lost = store
        .complete_jobs("w1", vec![(claimed[0].id, done)])
        .await
        .unwrap();
    assert!(lost.is_empty());
    assert_eq!(
        store
            .job(&claimed[0].dealer, claimed[0].id)
            .await
            .unwrap()
            .state,
        JobState::Succeeded
    );
}

store_test!(callbacks_are_stored_once_with_their_job, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let c = store
        .insert_connection(new_connection("d1", "Stages", ProviderKind::Stages))
        .await
        .unwrap();
    let other = store
        .insert_connection(new_connection("d1", "Other", ProviderKind::Stages))
        .await
        .unwrap();
    let payload = serde_json::json!({"event_id": "e1", "type": "site.updated", "site_no": "10001"});

    let job = callback_job("d1");
    assert_eq!(
        store
            .receive_callback(&d, c.id, "e1", &payload, job.clone(), None)
            .await,
        Ok(Received::New)
    );
    let queued = store.job(&d, job.id).await.unwrap();
    assert_eq!(queued.kind, "stages_callback");
    assert_eq!(store.callback(&d, c.id, "e1").await, Ok(payload.clone()));

    // A repeat is acknowledged and ignored: nothing stored, nothing enqueued.
    let repeat = callback_job("d1");
    assert_eq!(
        store
            .receive_callback(
                &d,
                c.id,
                "e1",
                &serde_json::json!({"other": true}),
                repeat.clone(),
                None
            )
            .await,
        Ok(Received::Repeat)
    );
    assert_eq!(store.job(&d, repeat.id).await, Err(StoreError::NotFound));
    assert_eq!(store.callback(&d, c.id, "e1").await, Ok(payload.clone()));
    // Event ids are per connection.
    assert_eq!(
        store
            .receive_callback(&d, other.id, "e1", &payload, callback_job("d1"), None)
            .await,
        Ok(Received::New)
    );

    // Two deliveries of one event at once: exactly one is stored with its job.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let barrier = barrier.clone();
            let d = d.clone();
            tokio::spawn(async move {
                let job = callback_job("d1");
                barrier.wait().await;
                let stored = store
                    .receive_callback(
                        &d,
                        c.id,
                        "race",
                        &serde_json::json!({"n": i}),
                        job.clone(),
                        None,
                    )
                    .await
                    .unwrap();
                (stored == Received::New, job.id)
            })
        })
        .collect();
    let mut stored = Vec::new();
    let mut enqueued = 0;
    for task in tasks {
        let (was_stored, job) = task.await.unwrap();
        if was_stored {
            stored.push(job);
        }
        if store.job(&d, job).await.is_ok() {
            enqueued += 1;
        }
    }
    assert_eq!(stored.len(), 1, "exactly one receive stores the event");
    assert_eq!(enqueued, 1, "exactly one job is enqueued");
    assert_eq!(db.count("webhook_inbox WHERE event_id = 'race'"), 1);

    // Processing ends with an outcome, marked with the job's end.
    assert_eq!(db.count("webhook_inbox WHERE processed_at IS NULL"), 3);
    let processed = |dealer: &DealerId, event_id: &str, outcome: &str| ProcessedCallback {
        dealer: dealer.clone(),
        connection_id: c.id,
        event_id: event_id.into(),
        outcome: outcome.into(),
    };
    end_callback_job(&store, processed(&d, "e1", "applied")).await;
    assert_eq!(
        db.count("webhook_inbox WHERE outcome = 'applied' AND processed_at IS NOT NULL"),
        1
    );
    end_callback_job(&store, processed(&d, "e1", "echo")).await;
    assert_eq!(db.count("webhook_inbox WHERE outcome = 'echo'"), 1);
    // A mark of another dealer's, or of no stored callback, changes nothing
    // (and the job still ends).
    end_callback_job(&store, processed(&dealer("d2"), "e1", "x")).await;
    assert_eq!(db.count("webhook_inbox WHERE outcome = 'echo'"), 1);
    assert_eq!(db.count("webhook_inbox WHERE processed_at IS NOT NULL"), 1);
    assert_eq!(
        store.callback(&d, c.id, "nope").await,
        Err(StoreError::NotFound)
    );

    // Another dealer reaches none of it.
    let d2 = dealer("d2");
    assert_eq!(
        store
            .receive_callback(&d2, c.id, "e2", &payload, callback_job("d2"), None)
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.callback(&d2, c.id, "e1").await,
        Err(StoreError::NotFound)
    );
    // A job of another dealer is refused.
    assert!(matches!(
        store
            .receive_callback(&d, c.id, "e3", &payload, callback_job("d2"), None)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(db.count("webhook_inbox"), 3);

    // The inbox goes with its connection.
    store.delete_connection(&d, c.id, None).await.unwrap();
    assert_eq!(db.count("webhook_inbox"), 1);
});

// A callback verified with an inbound credential is stored only while that
// credential is the connection's: once rotated, nothing is stored or
// enqueued, even for an event received before.
store_test!(
    callbacks_verified_with_a_replaced_credential_are_not_stored,
    |db| async move {
        let store = db.store().await;
        let d = dealer("d1");
        let c = stages_connection(&store, "d1", "Stages").await;
        let set = |secret: &str| {
            let (store, d) = (store.clone(), d.clone());
            let credential = InboundCredential {
                username: "cb-stages".into(),
                secret: Secret::new(secret),
                rotated_at: Utc::now(),
            };
            async move {
                store
                    .set_inbound_credential(&d, c, &credential)
                    .await
                    .unwrap();
                // As the callback's check reads it back.
                let (_, read) = store.connection_for_callback(c).await.unwrap().unwrap();
                read.unwrap().rotated_at
            }
        };
        let payload = serde_json::json!({"event_id": "e1"});
        // No credential at all: nothing can have been verified with it.
        let job = callback_job("d1");
        let answer = store
            .receive_callback(&d, c, "e0", &payload, job.clone(), Some(Utc::now()))
            .await;
        assert_eq!(answer, Ok(Received::CredentialReplaced));

        let first = set("one").await;
        let receive = |event: &'static str, set_at| {
            let (store, d, payload) = (store.clone(), d.clone(), payload.clone());
            async move {
                let job = callback_job("d1");
                let answer = store
                    .receive_callback(&d, c, event, &payload, job.clone(), Some(set_at))
                    .await;
                (answer, store.job(&d, job.id).await.is_ok())
            }
        };
        assert_eq!(receive("e1", first).await, (Ok(Received::New), true));
        assert_eq!(receive("e1", first).await, (Ok(Received::Repeat), false));

        let second = set("two").await;
        assert_ne!(first, second);
        assert_eq!(
            receive("e2", first).await,
            (Ok(Received::CredentialReplaced), false)
        );
        assert_eq!(
            receive("e1", first).await,
            (Ok(Received::CredentialReplaced), false)
        );
        assert_eq!(receive("e2", second).await, (Ok(Received::New), true));
        assert_eq!(db.count("webhook_inbox"), 2);
    }
);

// Jobs ending together mark their callbacks together: each with its own
// outcome, none of another dealer's.
store_test!(callbacks_ending_together_are_each_marked, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let c = store
        .insert_connection(new_connection("d1", "Stages", ProviderKind::Stages))
        .await
        .unwrap();
    for event in ["e1", "e2", "e3"] {
        let payload = serde_json::json!({"event_id": event});
        assert_eq!(
            store
                .receive_callback(&d, c.id, event, &payload, callback_job("d1"), None)
                .await,
            Ok(Received::New)
        );
    }
    let claimed = claim_callback_jobs(&store, 10).await;
    assert_eq!(claimed.len(), 3);
    let marks = [
        (&d, "e1", "applied"),
        (&d, "e2", "echo"),
        (&dealer("d2"), "e3", "x"),
    ];
    let done = claimed
        .iter()
        .zip(marks)
        .map(|(job, (dealer, event_id, outcome))| {
            let processed = ProcessedCallback {
                dealer: dealer.clone(),
                connection_id: c.id,
                event_id: event_id.into(),
                outcome: outcome.into(),
            };
            (job.id, Done::from(serde_json::json!({})).marking(processed))
        })
        .collect();
    assert_eq!(store.complete_jobs("w1", done).await, Ok(Vec::new()));
    assert_eq!(
        db.count("webhook_inbox WHERE event_id = 'e1' AND outcome = 'applied' AND processed_at IS NOT NULL"),
        1
    );
    assert_eq!(
        db.count("webhook_inbox WHERE event_id = 'e2' AND outcome = 'echo'"),
        1
    );
    assert_eq!(
        db.count("webhook_inbox WHERE processed_at IS NULL"),
        1,
        "another dealer's mark changes nothing"
    );
});

// Callbacks arriving together are stored a batch per transaction: each still
// gets its own answer, a refused one (another dealer's connection) refuses
// no other, and a repeat inside a batch is a repeat.
store_test!(
    callbacks_received_together_are_each_answered_alone,
    |db| async move {
        let store = db.store().await;
        let d = dealer("d1");
        let c = stages_connection(&store, "d1", "Stages").await;
        let foreign = stages_connection(&store, "d2", "Stages").await;
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(48));
        let tasks: Vec<_> = (0..48)
            .map(|i| {
                let (store, barrier, d) = (store.clone(), barrier.clone(), d.clone());
                let connection = if i % 8 == 7 { foreign } else { c };
                tokio::spawn(async move {
                    let event = format!("e{}", i % 24);
                    let job = callback_job("d1");
                    barrier.wait().await;
                    let payload = serde_json::json!({ "event_id": event });
                    let answer = store
                        .receive_callback(&d, connection, &event, &payload, job.clone(), None)
                        .await;
                    (i, event, job, answer)
                })
            })
            .collect();
        let mut stored = std::collections::HashMap::<String, usize>::new();
        for task in tasks {
            let (i, event, job, answer) = task.await.unwrap();
            if i % 8 == 7 {
                assert_eq!(answer, Err(StoreError::NotFound), "callback {i}");
                assert_eq!(store.job(&d, job.id).await, Err(StoreError::NotFound));
                continue;
            }
            match answer {
                Ok(Received::New) => {
                    *stored.entry(event.clone()).or_default() += 1;
                    assert_eq!(store.job(&d, job.id).await.unwrap().kind, "stages_callback");
                }
                Ok(Received::Repeat) => {
                    assert_eq!(store.job(&d, job.id).await, Err(StoreError::NotFound))
                }
                Ok(other) => panic!("callback {i}: {other:?}"),
                Err(e) => panic!("callback {i} was refused: {e}"),
            }
        }
        // Events e0..e23 on c, less those only ever sent to the foreign connection.
        let expected: Vec<String> = (0..24)
            .filter(|n| !(n % 8 == 7 && (n + 24) % 8 == 7))
            .map(|n| format!("e{n}"))
            .collect();
        let mut got: Vec<String> = stored.keys().cloned().collect();
        got.sort();
        let mut expected_sorted = expected.clone();
        expected_sorted.sort();
        assert_eq!(got, expected_sorted);
        assert!(
            stored.values().all(|&n| n == 1),
            "an event stored twice: {stored:?}"
        );
    }
);

// --- secrets at rest --------------------------------------------------------------------

store_test!(secrets_are_never_stored_in_plain, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let c = store
        .insert_connection(new_connection("d1", "Stages", ProviderKind::Stages))
        .await
        .unwrap();
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let inbound_secret = format!("in-{}", uuid::Uuid::new_v4().simple());
    let username = format!("login-{}", uuid::Uuid::new_v4().simple());
    store
        .put_credential(&d, c.id, &user("alice"), &username, &Secret::new(&password))
        .await
        .unwrap();
    store
        .set_inbound_credential(
            &d,
            c.id,
            &InboundCredential {
                username: format!("cb-{username}"),
                secret: Secret::new(&inbound_secret),
                rotated_at: Utc::now(),
            },
        )
        .await
        .unwrap();
    let raw = db.raw_contents();
    // The reader does see the data (the username is not secret)...
    assert!(contains(&raw, &username), "the raw reader saw no rows");
    // ...but never the secrets.
    assert!(!contains(&raw, &password), "password stored in plain");
    assert!(
        !contains(&raw, &inbound_secret),
        "inbound secret stored in plain"
    );
});

store_test!(
    a_wrong_key_or_a_moved_ciphertext_does_not_decrypt,
    |db| async move {
        let store = db.store().await;
        let d = dealer("d1");
        let c = store
            .insert_connection(new_connection("d1", "Stages", ProviderKind::Stages))
            .await
            .unwrap();
        store
            .put_credential(&d, c.id, &user("alice"), "alice", &Secret::new("alice-pw"))
            .await
            .unwrap();
        store
            .put_credential(&d, c.id, &user("bob"), "bob", &Secret::new("bob-pw"))
            .await
            .unwrap();
        store
            .set_inbound_credential(
                &d,
                c.id,
                &InboundCredential {
                    username: "cb".into(),
                    secret: Secret::new("cb-secret"),
                    rotated_at: Utc::now(),
                },
            )
            .await
            .unwrap();

        let wrong = db.open_with(SecretKey::generate()).await;
        match wrong.credential(&d, c.id, &user("alice")).await {
            Err(StoreError::Unavailable(msg)) => {
                assert!(msg.contains("could not be decrypted"), "{msg}");
                assert!(!msg.contains("alice-pw"));
            }
            other => panic!("expected a decryption failure, got {other:?}"),
        }
        assert!(matches!(
            wrong.inbound_credential(&d, c.id).await,
            Err(StoreError::Unavailable(_))
        ));
        // The right key still reads it.
        let alice = store
            .credential(&d, c.id, &user("alice"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(alice.password.expose(), "alice-pw");

        // Alice's ciphertext pasted into Bob's row does not open as Bob's password.
        db.execute(
            "UPDATE credentials SET secret = \
         (SELECT secret FROM credentials WHERE owner = 'user:alice') WHERE owner = 'user:bob'",
        );
        assert!(matches!(
            store.credential(&d, c.id, &user("bob")).await,
            Err(StoreError::Unavailable(_))
        ));
    }
);

// --- idempotency keys -------------------------------------------------------------------

store_test!(idempotency_lifecycle, |db| async move {
    let store = db.store().await;
    let now = Utc::now();
    let stale = TimeDelta::minutes(5);
    let k = scope("d1", "alice", "key-1");

    assert_eq!(
        store.begin(&k, "fp-1", now, stale).await,
        Ok(IdempotencyBegin::Started)
    );
    assert_eq!(
        store.begin(&k, "fp-1", now, stale).await,
        Ok(IdempotencyBegin::InFlight)
    );
    assert_eq!(
        store.begin(&k, "fp-2", now, stale).await,
        Ok(IdempotencyBegin::Mismatch)
    );
    store.finish(&k, &response()).await.unwrap();
    assert_eq!(
        store.begin(&k, "fp-1", now, stale).await,
        Ok(IdempotencyBegin::Replay(response()))
    );
    assert_eq!(
        store.begin(&k, "fp-2", now, stale).await,
        Ok(IdempotencyBegin::Mismatch)
    );
    // A finished key is not released: its answer is what retries get.
    store.release(&k).await.unwrap();
    assert_eq!(
        store.begin(&k, "fp-1", now, stale).await,
        Ok(IdempotencyBegin::Replay(response()))
    );
    assert_eq!(
        store.finish(&k, &response()).await,
        Err(StoreError::NotFound)
    );

    // The same key of another user or dealer is another key.
    for other in [scope("d1", "bob", "key-1"), scope("d2", "alice", "key-1")] {
        assert_eq!(
            store.begin(&other, "fp-9", now, stale).await,
            Ok(IdempotencyBegin::Started)
        );
    }

    // Release forgets an unfinished claim so the caller may retry.
    let r = scope("d1", "alice", "key-2");
    assert_eq!(
        store.begin(&r, "fp", now, stale).await,
        Ok(IdempotencyBegin::Started)
    );
    store.release(&r).await.unwrap();
    assert_eq!(
        store.begin(&r, "fp", now, stale).await,
        Ok(IdempotencyBegin::Started)
    );

    // An empty answer replays as empty.
    let empty = StoredResponse {
        status: 204,
        headers: vec![],
        body: vec![],
    };
    store.finish(&r, &empty).await.unwrap();
    assert_eq!(
        store.begin(&r, "fp", now, stale).await,
        Ok(IdempotencyBegin::Replay(empty))
    );
});

store_test!(
    idempotency_answers_are_sealed_to_their_key,
    |db| async move {
        let store = db.store().await;
        let now = Utc::now();
        let stale = TimeDelta::minutes(5);
        let (a, b) = (scope("d1", "alice", "key-a"), scope("d1", "alice", "key-b"));
        for k in [&a, &b] {
            assert_eq!(
                store.begin(k, "fp", now, stale).await,
                Ok(IdempotencyBegin::Started)
            );
            store.finish(k, &response()).await.unwrap();
        }
        // Neither the body nor the headers are kept readable.
        assert_eq!(db.count("idempotency_keys WHERE headers IS NOT NULL"), 0);
        // A's sealed answer pasted into B's row does not replay as B's.
        db.execute(
            "UPDATE idempotency_keys SET body = \
         (SELECT body FROM idempotency_keys WHERE idem_key = 'key-a') WHERE idem_key = 'key-b'",
        );
        assert!(matches!(
            store.begin(&b, "fp", now, stale).await,
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(
            store.begin(&a, "fp", now, stale).await,
            Ok(IdempotencyBegin::Replay(response()))
        );
    }
);

store_test!(
    a_statement_the_database_refuses_is_not_unavailable,
    |db| async move {
        let store = db.store().await;
        // PostgreSQL cannot hold a NUL in text; SQLite can. Either way the
        // database answered, so it is never reported as unreachable.
        let nul = scope("d1", "alice", "key\u{0}");
        let got = store
            .begin(&nul, "fp", Utc::now(), TimeDelta::minutes(5))
            .await;
        match db.backend() {
            Backend::Postgres => assert!(matches!(got, Err(StoreError::Failed(_))), "{got:?}"),
            Backend::Sqlite => assert_eq!(got, Ok(IdempotencyBegin::Started)),
        }
    }
);

store_test!(idempotency_stale_claims_are_taken_over, |db| async move {
    let store = db.store().await;
    let stale = TimeDelta::minutes(5);
    let t0 = Utc::now() - TimeDelta::hours(1);
    let k = scope("d1", "alice", "key");
    assert_eq!(
        store.begin(&k, "fp", t0, stale).await,
        Ok(IdempotencyBegin::Started)
    );
    // Still young at t0 + 4 minutes.
    assert_eq!(
        store
            .begin(&k, "fp", t0 + TimeDelta::minutes(4), stale)
            .await,
        Ok(IdempotencyBegin::InFlight)
    );
    // Abandoned by t0 + 6 minutes, but only for the same request.
    let t1 = t0 + TimeDelta::minutes(6);
    assert_eq!(
        store.begin(&k, "other", t1, stale).await,
        Ok(IdempotencyBegin::Mismatch)
    );
    assert_eq!(
        store.begin(&k, "fp", t1, stale).await,
        Ok(IdempotencyBegin::Started)
    );
    // The taker's claim is fresh again.
    assert_eq!(
        store
            .begin(&k, "fp", t1 + TimeDelta::minutes(1), stale)
            .await,
        Ok(IdempotencyBegin::InFlight)
    );

    // Many callers at a stale claim at once: exactly one takes it over.
    let t2 = t1 + TimeDelta::minutes(10);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let k = k.clone();
            tokio::spawn(async move { store.begin(&k, "fp", t2, stale).await.unwrap() })
        })
        .collect();
    let mut started = 0;
    for t in tasks {
        match t.await.unwrap() {
            IdempotencyBegin::Started => started += 1,
            IdempotencyBegin::InFlight => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(started, 1);
});

store_test!(idempotency_concurrent_begins_start_once, |db| async move {
    let store = db.store().await;
    let now = Utc::now();
    for round in 0..3 {
        let k = scope("d1", "alice", &format!("race-{round}"));
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                let k = k.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    store
                        .begin(&k, "fp", now, TimeDelta::minutes(5))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.unwrap());
        }
        let started = outcomes
            .iter()
            .filter(|o| **o == IdempotencyBegin::Started)
            .count();
        assert_eq!(started, 1, "{outcomes:?}");
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, IdempotencyBegin::Started | IdempotencyBegin::InFlight)));
    }
});

store_test!(idempotency_keys_are_purged_by_age, |db| async move {
    let store = db.store().await;
    let now = Utc::now();
    let stale = TimeDelta::minutes(5);
    let old = scope("d1", "alice", "old");
    let new = scope("d1", "alice", "new");
    store
        .begin(&old, "fp", now - TimeDelta::days(2), stale)
        .await
        .unwrap();
    store.finish(&old, &response()).await.unwrap();
    store.begin(&new, "fp", now, stale).await.unwrap();
    assert_eq!(
        store.purge_idempotency_keys(now - TimeDelta::days(1)).await,
        Ok(1)
    );
    // The purged key starts afresh; the young one is untouched.
    assert_eq!(
        store.begin(&old, "fp", now, stale).await,
        Ok(IdempotencyBegin::Started)
    );
    assert_eq!(
        store.begin(&new, "fp", now, stale).await,
        Ok(IdempotencyBegin::InFlight)
    );
    assert_eq!(
        store
            .purge_idempotency_keys(now + TimeDelta::seconds(1))
            .await,
        Ok(2)
    );
    assert_eq!(db.count("idempotency_keys"), 0);
});

// --- opening ----------------------------------------------------------------------------

#[tokio::test]
async fn sqlite_files_use_wal_and_a_plain_path_works() {
    let db = TestDb::sqlite();
    let Kind::Sqlite { file, .. } = &db.kind else {
        unreachable!()
    };
    let path = file.display().to_string();
    let store = tokio::task::spawn_blocking({
        let key = db.key.clone();
        move || Store::open(&path, key, StoreOptions::default())
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    store.migrate().await.unwrap();
    assert!(file.exists(), "the parent directory was created");

    #[derive(QueryableByName)]
    struct Mode {
        #[diesel(sql_type = Text)]
        journal_mode: String,
    }
    // WAL is a property of the file, so a fresh connection reports it.
    let mut conn = SqliteConnection::establish(&file.to_string_lossy()).unwrap();
    let mode: Mode = diesel::sql_query("PRAGMA journal_mode")
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(mode.journal_mode, "wal");
}

#[tokio::test]
async fn sqlite_in_memory_keeps_its_data() {
    let store = tokio::task::spawn_blocking(|| {
        Store::open(
            "sqlite::memory:",
            SecretKey::generate(),
            StoreOptions::default(),
        )
    })
    .await
    .unwrap()
    .unwrap();
    store.migrate().await.unwrap();
    let c = store
        .insert_connection(new_connection("d1", "Stages", ProviderKind::Stages))
        .await
        .unwrap();
    assert_eq!(store.connection(&dealer("d1"), c.id).await.unwrap(), c);
    assert!(store.readiness().await.is_ready());
}

#[tokio::test]
async fn opening_fails_clearly() {
    let bad = Store::open(
        "mysql://h/db",
        SecretKey::generate(),
        StoreOptions::default(),
    );
    assert!(
        matches!(bad, Err(StoreOpenError::UnsupportedUrl(_))),
        "{bad:?}"
    );

    let unreachable = tokio::task::spawn_blocking(|| {
        Store::open(
            "postgres://nobody@127.0.0.1:1/none",
            SecretKey::generate(),
            StoreOptions {
                connect_timeout: Duration::from_secs(1),
                ..Default::default()
            },
        )
    })
    .await
    .unwrap();
    match unreachable {
        Err(StoreOpenError::Connect { backend, .. }) => assert_eq!(backend, "postgres"),
        other => panic!("expected a connection error, got {other:?}"),
    }
}
