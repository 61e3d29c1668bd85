//! The change feed and webhook subscriptions suite, on SQLite and on
//! PostgreSQL: events in seq order with paging and type filters, a reader
//! that never skips an event while writers race, one delivery job per
//! subscription that wants an event, and subscriptions with their secrets.

#[macro_use]
mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use domain::connection::ProviderKind;
use domain::events::{
    Event, NewEvent, NewWebhookSubscription, SubscriptionChanges, SubscriptionId,
    SubscriptionStatus,
};
use domain::jobs::{kinds, Job};
use domain::store::{ConnectionStore, EventStore, JobStore, PageRequest, StoreError, WebhookStore};
use domain::Secret;
use link_store::{SecretKey, Store};

fn event(event_type: &str, subject: &str) -> NewEvent {
    NewEvent {
        event_type: event_type.into(),
        subject_kind: event_type.split('.').nth(1).unwrap_or("x").into(),
        subject_id: subject.into(),
        connection_id: None,
        data: serde_json::json!({"id": subject, "fields": {"name": format!("{subject} name")}}),
    }
}

fn types(list: &[&str]) -> Vec<String> {
    list.iter().map(|t| t.to_string()).collect()
}

fn new_subscription(types: &[&str]) -> NewWebhookSubscription {
    NewWebhookSubscription {
        id: SubscriptionId(uuid::Uuid::now_v7()),
        url: "https://hooks.example.com/crosslink".parse().unwrap(),
        types: self::types(types),
        secret: Secret::new(format!("whsec_{}", uuid::Uuid::new_v4().simple())),
    }
}

async fn deliveries(store: &Store, dealer_id: &str) -> Vec<Job> {
    let mut jobs = store
        .list_jobs(
            &dealer(dealer_id),
            None,
            Some(kinds::WEBHOOK_DELIVERY),
            first_page(1000),
        )
        .await
        .unwrap()
        .items;
    jobs.reverse();
    jobs
}

/// (subscription, event) of each delivery job, sorted.
fn delivered(jobs: &[Job]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = jobs
        .iter()
        .map(|j| {
            (
                j.payload["subscription_id"].as_str().unwrap().to_owned(),
                j.payload["event_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

fn pair(subscription: SubscriptionId, event: &Event) -> (String, String) {
    (subscription.to_string(), event.id.to_string())
}

// --- the feed ---------------------------------------------------------------------------

store_test!(events_are_read_in_order_by_type_and_page, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let c = store
        .insert_connection(new_connection("d1", "Stages", ProviderKind::Stages))
        .await
        .unwrap();
    assert_eq!(store.record_events(&d, vec![]).await, Ok(vec![]));
    assert!(store
        .list_events(&d, None, &[], 10)
        .await
        .unwrap()
        .is_empty());

    let mut first = event("billing.site.updated", "S1");
    first.connection_id = Some(c.id);
    let written = store
        .record_events(
            &d,
            vec![
                first.clone(),
                event("billing.customer.created", "C1"),
                event("stages.callback.unmatched", "10001"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(written.len(), 3);
    assert_eq!(written[0].dealer, d);
    assert_eq!(written[0].event_type, first.event_type);
    assert_eq!(written[0].subject_kind, "site");
    assert_eq!(written[0].subject_id, "S1");
    assert_eq!(written[0].connection_id, Some(c.id));
    assert_eq!(written[0].data, first.data);
    assert!(written.windows(2).all(|w| w[0].seq < w[1].seq));
    // Another dealer's events sit between, in another feed.
    store
        .record_events(&dealer("d2"), vec![event("billing.site.updated", "S1")])
        .await
        .unwrap();
    let more = store
        .record_events(
            &d,
            vec![
                event("billing.site.updated", "S2"),
                event("billing.system.updated", "Y1"),
            ],
        )
        .await
        .unwrap();
    let all: Vec<Event> = written.iter().chain(more.iter()).cloned().collect();

    assert_eq!(store.list_events(&d, None, &[], 100).await.unwrap(), all);
    assert_eq!(
        store
            .list_events(&d, Some(all[1].seq), &[], 2)
            .await
            .unwrap(),
        all[2..4].to_vec()
    );
    assert!(store
        .list_events(&d, None, &[], 0)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_events(&d, Some(all[4].seq), &[], 10)
        .await
        .unwrap()
        .is_empty());
    // Paged one at a time, every event once.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_events(&d, after, &[], 1).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        paged.extend(page);
    }
    assert_eq!(paged, all);

    // Only the types asked for; unknown types match nothing.
    let sites = store
        .list_events(&d, None, &types(&["billing.site.updated"]), 10)
        .await
        .unwrap();
    assert_eq!(sites, vec![all[0].clone(), all[3].clone()]);
    let two = store
        .list_events(
            &d,
            Some(all[0].seq),
            &types(&["billing.site.updated", "billing.customer.created"]),
            10,
        )
        .await
        .unwrap();
    assert_eq!(two, vec![all[1].clone(), all[3].clone()]);
    assert!(store
        .list_events(&d, None, &types(&["nope"]), 10)
        .await
        .unwrap()
        .is_empty());

    // One event by id, within its dealer only.
    assert_eq!(store.event(&d, all[2].id).await, Ok(all[2].clone()));
    assert_eq!(
        store.event(&dealer("d2"), all[2].id).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.event(&d, uuid::Uuid::now_v7()).await,
        Err(StoreError::NotFound)
    );
    let theirs = store
        .list_events(&dealer("d2"), None, &[], 10)
        .await
        .unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].dealer, dealer("d2"));

    // The feed outlives the connection it names.
    store.delete_connection(&d, c.id, None).await.unwrap();
    assert_eq!(store.event(&d, all[0].id).await, Ok(all[0].clone()));
});

store_test!(
    a_reader_paging_while_writers_race_sees_every_event_once,
    |db| async move {
        let store = db.store().await;
        const WRITERS: usize = 6;
        const BATCHES: usize = 12;
        let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS + 1));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = store.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    let mut ids = Vec::new();
                    for b in 0..BATCHES {
                        // One or two events per transaction.
                        let batch = (0..1 + (w + b) % 2)
                            .map(|i| event("billing.site.updated", &format!("S{w}-{b}-{i}")))
                            .collect();
                        let written = store.record_events(&dealer("d1"), batch).await.unwrap();
                        ids.extend(written.into_iter().map(|e| e.id));
                    }
                    ids
                })
            })
            .collect();

        // The reader pages with "after" while the writers run, and stops at
        // the first empty page read after they all finished.
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let store = store.clone();
            let barrier = barrier.clone();
            let done = done.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut seen: Vec<Event> = Vec::new();
                let mut after = None;
                loop {
                    let finished = done.load(Ordering::SeqCst);
                    let page = store
                        .list_events(&dealer("d1"), after, &[], 7)
                        .await
                        .unwrap();
                    match page.last() {
                        Some(last) => {
                            after = Some(last.seq);
                            seen.extend(page);
                        }
                        None if finished => break,
                        None => tokio::time::sleep(std::time::Duration::from_millis(2)).await,
                    }
                }
                seen
            })
        };
        let mut written = HashSet::new();
        for w in writers {
            written.extend(w.await.unwrap());
        }
        done.store(true, Ordering::SeqCst);
        let seen = reader.await.unwrap();
        let expected: usize = (0..WRITERS)
            .map(|w| (0..BATCHES).map(|b| 1 + (w + b) % 2).sum::<usize>())
            .sum();
        assert_eq!(written.len(), expected);
        assert!(
            seen.windows(2).all(|w| w[0].seq < w[1].seq),
            "read in seq order"
        );
        let seen_ids: Vec<uuid::Uuid> = seen.iter().map(|e| e.id).collect();
        let unique: HashSet<uuid::Uuid> = seen_ids.iter().copied().collect();
        assert_eq!(unique.len(), seen_ids.len(), "no event read twice");
        assert_eq!(unique, written, "no event skipped");
    }
);

// --- deliveries -------------------------------------------------------------------------

store_test!(
    each_event_is_delivered_to_the_subscriptions_that_want_it,
    |db| async move {
        let store = db.store().await;
        let d = dealer("d1");
        let all = store
            .create_subscription(&d, new_subscription(&[]))
            .await
            .unwrap();
        let sites = store
            .create_subscription(&d, new_subscription(&["billing.site.updated"]))
            .await
            .unwrap();
        let off = store
            .create_subscription(&d, new_subscription(&[]))
            .await
            .unwrap();
        store
            .disable_subscription(&d, off.id, "410 Gone")
            .await
            .unwrap();
        let theirs = store
            .create_subscription(&dealer("d2"), new_subscription(&[]))
            .await
            .unwrap();

        let written = store
            .record_events(
                &d,
                vec![
                    event("billing.site.updated", "S1"),
                    event("billing.customer.created", "C1"),
                ],
            )
            .await
            .unwrap();
        let jobs = deliveries(&store, "d1").await;
        let mut expected = vec![
            pair(all.id, &written[0]),
            pair(sites.id, &written[0]),
            pair(all.id, &written[1]),
        ];
        expected.sort();
        assert_eq!(delivered(&jobs), expected);
        for job in &jobs {
            assert_eq!(job.dealer, d);
            assert_eq!(job.kind, "webhook_delivery");
            assert_eq!((job.max_attempts, job.attempts), (10, 0));
            assert_eq!(job.created_by, "system:webhooks");
            assert_eq!(job.unique_key, None);
            assert_eq!(job.payload.as_object().unwrap().len(), 2, "{}", job.payload);
        }
        assert!(deliveries(&store, "d2").await.is_empty());

        // The other dealer's events go to its own subscription only.
        let mine = store
            .record_events(&dealer("d2"), vec![event("billing.user.created", "U1")])
            .await
            .unwrap();
        assert_eq!(
            delivered(&deliveries(&store, "d2").await),
            vec![pair(theirs.id, &mine[0])]
        );
        assert_eq!(deliveries(&store, "d1").await.len(), 3);

        // Turned back on, a subscription gets the events that follow.
        store
            .update_subscription(
                &d,
                off.id,
                SubscriptionChanges {
                    status: Some(SubscriptionStatus::Active),
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap();
        let later = store
            .record_events(&d, vec![event("billing.system.updated", "Y1")])
            .await
            .unwrap();
        let jobs = deliveries(&store, "d1").await;
        let mut expected = vec![pair(all.id, &later[0]), pair(off.id, &later[0])];
        expected.sort();
        assert_eq!(delivered(&jobs[3..]), expected);

        // A deleted subscription gets nothing more; its queued deliveries stay
        // (they fail for good when they run).
        store.delete_subscription(&d, all.id).await.unwrap();
        let last = store
            .record_events(&d, vec![event("billing.site.updated", "S9")])
            .await
            .unwrap();
        let jobs = deliveries(&store, "d1").await;
        assert_eq!(jobs.len(), 7);
        let mut expected = vec![pair(sites.id, &last[0]), pair(off.id, &last[0])];
        expected.sort();
        assert_eq!(delivered(&jobs[5..]), expected);
    }
);

// --- subscriptions ----------------------------------------------------------------------

store_test!(subscriptions_crud_with_versions, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let new = new_subscription(&["billing.site.updated", "billing.site.created"]);
    let created = store.create_subscription(&d, new.clone()).await.unwrap();
    assert_eq!(created.id, new.id);
    assert_eq!(created.dealer, d);
    assert_eq!(created.url, new.url);
    assert_eq!(created.types, new.types);
    assert_eq!(created.status, SubscriptionStatus::Active);
    assert_eq!(created.disabled_reason, None);
    assert_eq!(created.version, 1);
    assert_eq!(created.created_at, created.updated_at);
    assert!(created.wants("billing.site.created"));
    assert!(!created.wants("billing.user.created"));
    assert_eq!(store.subscription(&d, new.id).await, Ok(created.clone()));
    assert!(matches!(
        store.create_subscription(&d, new.clone()).await,
        Err(StoreError::Conflict(_))
    ));

    // Changes check and bump the version.
    let changes = SubscriptionChanges {
        url: Some("https://other.example.com/hook".parse().unwrap()),
        types: Some(vec![]),
        status: None,
    };
    let url = changes.url.clone().unwrap();
    let changed = store
        .update_subscription(&d, new.id, changes, Some(1))
        .await
        .unwrap();
    assert_eq!((changed.url.clone(), changed.types.clone()), (url, vec![]));
    assert_eq!(changed.version, 2);
    assert!(changed.wants("billing.user.created"));
    assert_eq!(
        store
            .update_subscription(&d, new.id, SubscriptionChanges::default(), Some(1))
            .await,
        Err(StoreError::VersionMismatch)
    );
    // No change, no new version.
    assert_eq!(
        store
            .update_subscription(&d, new.id, SubscriptionChanges::default(), Some(2))
            .await,
        Ok(changed.clone())
    );

    // Disabled by the service with a reason; the version moves on.
    store
        .disable_subscription(&d, new.id, "the receiver answered 410 Gone")
        .await
        .unwrap();
    let disabled = store.subscription(&d, new.id).await.unwrap();
    assert_eq!(disabled.status, SubscriptionStatus::Disabled);
    assert_eq!(
        disabled.disabled_reason.as_deref(),
        Some("the receiver answered 410 Gone")
    );
    assert_eq!(disabled.version, 3);
    assert!(!disabled.wants("billing.site.created"));
    assert_eq!(
        store
            .update_subscription(
                &d,
                new.id,
                SubscriptionChanges {
                    status: Some(SubscriptionStatus::Active),
                    ..Default::default()
                },
                Some(2),
            )
            .await,
        Err(StoreError::VersionMismatch)
    );
    // Turned back on by its owner: the reason goes.
    let active = store
        .update_subscription(
            &d,
            new.id,
            SubscriptionChanges {
                status: Some(SubscriptionStatus::Active),
                ..Default::default()
            },
            Some(3),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            active.status,
            active.disabled_reason.clone(),
            active.version
        ),
        (SubscriptionStatus::Active, None, 4)
    );

    // Listed in creation order, in pages.
    let mut made = vec![new.id];
    for _ in 0..4 {
        made.push(
            store
                .create_subscription(&d, new_subscription(&[]))
                .await
                .unwrap()
                .id,
        );
    }
    store
        .create_subscription(&dealer("d2"), new_subscription(&[]))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut page = PageRequest {
        after: None,
        limit: 2,
    };
    loop {
        let got = store.list_subscriptions(&d, page.clone()).await.unwrap();
        seen.extend(got.items.iter().map(|s| s.id));
        match got.next_page_token {
            Some(token) => page.after = Some(token),
            None => break,
        }
    }
    assert_eq!(seen, made);

    // Another dealer reaches none of it.
    let d2 = dealer("d2");
    assert_eq!(
        store.subscription(&d2, new.id).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store
            .update_subscription(&d2, new.id, SubscriptionChanges::default(), None)
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.disable_subscription(&d2, new.id, "x").await,
        Err(StoreError::NotFound)
    );
    assert!(matches!(
        store.subscription_secret(&d2, new.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.delete_subscription(&d2, new.id).await,
        Err(StoreError::NotFound)
    );

    store.delete_subscription(&d, new.id).await.unwrap();
    assert_eq!(
        store.subscription(&d, new.id).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.delete_subscription(&d, new.id).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.disable_subscription(&d, new.id, "x").await,
        Err(StoreError::NotFound)
    );
});

store_test!(signing_secrets_are_sealed_to_their_row, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let a = new_subscription(&[]);
    let b = new_subscription(&[]);
    store.create_subscription(&d, a.clone()).await.unwrap();
    store.create_subscription(&d, b.clone()).await.unwrap();
    assert_eq!(store.subscription_secret(&d, a.id).await.unwrap(), a.secret);
    assert_eq!(store.subscription_secret(&d, b.id).await.unwrap(), b.secret);
    let raw = db.raw_contents();
    let contains = |needle: &str| raw.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(contains("hooks.example.com"), "the raw reader saw no rows");
    assert!(
        !contains(a.secret.expose()),
        "signing secret stored in plain"
    );

    // Another key, or a's blob pasted into b's row, does not open.
    let wrong = db.open_with(SecretKey::generate()).await;
    assert!(matches!(
        wrong.subscription_secret(&d, a.id).await,
        Err(StoreError::Unavailable(_))
    ));
    db.execute(&format!(
        "UPDATE webhook_subscriptions SET secret = \
             (SELECT secret FROM webhook_subscriptions WHERE id = '{}') WHERE id = '{}'",
        a.id, b.id
    ));
    assert!(matches!(
        store.subscription_secret(&d, b.id).await,
        Err(StoreError::Unavailable(_))
    ));
    assert_eq!(
        store
            .subscription_secret(&d, SubscriptionId(uuid::Uuid::now_v7()))
            .await,
        Err(StoreError::NotFound)
    );
});
