//! The links and audit suite, on SQLite and on PostgreSQL: one link per record
//! on each side, atomic batches, races decided by the database, unlinks that
//! are remembered and audited, and the audit trail's filters.

#[macro_use]
mod common;

use std::sync::Arc;

use common::*;
use domain::audit::{AuditFilter, NewAuditEntry};
use domain::billing::BillingId;
use domain::connection::ConnectionId;
use domain::link::{Link, LinkFilter, LinkId, LinkKind, NewLink, Relink};
use domain::store::{AuditStore, ConnectionStore, LinkStore, PageRequest, StoreError};
use link_store::Store;

fn bid(id: &str) -> BillingId {
    BillingId::parse(id).unwrap()
}

fn site_link(connection: ConnectionId, billing: &str, external: &str) -> NewLink {
    NewLink {
        id: LinkId::new(),
        connection_id: connection,
        kind: LinkKind::Site,
        billing_id: bid(billing),
        external_id: external.into(),
        parent_id: None,
    }
}

fn system_link(parent: &NewLink, billing: &str, external: &str) -> NewLink {
    NewLink {
        id: LinkId::new(),
        connection_id: parent.connection_id,
        kind: LinkKind::System,
        billing_id: bid(billing),
        external_id: external.into(),
        parent_id: Some(parent.id),
    }
}

/// The audit entry a use case writes for a link change.
fn entry(actor: &str, action: &str, link: &NewLink) -> NewAuditEntry {
    NewAuditEntry {
        actor: actor.into(),
        action: action.into(),
        connection_id: Some(link.connection_id),
        kind: link.kind.as_str().into(),
        billing_id: Some(link.billing_id.as_str().into()),
        external_id: Some(link.external_id.clone()),
        before: None,
        after: Some(serde_json::json!({"external_id": link.external_id})),
    }
}

fn conflict_text<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Err(StoreError::Conflict(msg)) => msg,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn all_links(store: &Store, dealer_id: &str, filter: LinkFilter) -> Vec<Link> {
    store
        .list_links(&dealer(dealer_id), &filter, first_page(1000))
        .await
        .unwrap()
        .items
}

store_test!(links_insert_all_or_none, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let c = stages_connection(&store, "d1", "Stages").await;
    let s1 = site_link(c, "S1", "10001");
    let y1 = system_link(&s1, "Y1", "D1");
    let y2 = system_link(&s1, "Y2", "D2");
    // Children before their parent in the batch: the store orders them.
    let batch = vec![y1.clone(), s1.clone(), y2.clone()];
    let audit = batch.iter().map(|l| entry("alice", "link", l)).collect();
    let created = store.insert_links(&d, batch, audit).await.unwrap();
    assert_eq!(
        created.iter().map(|l| l.id).collect::<Vec<_>>(),
        vec![y1.id, s1.id, y2.id],
        "returned in the order given"
    );
    for link in &created {
        assert_eq!(link.version, 1);
        assert_eq!(link.dealer, d);
        assert_eq!(link.created_at, link.updated_at);
        assert_eq!(store.link(&d, link.id).await.unwrap(), *link);
    }
    assert_eq!(created[0].parent_id, Some(s1.id));
    assert_eq!(db.count("audit_log"), 3);

    // One conflicting link fails the batch: the free one is not linked either.
    let s2 = site_link(c, "S2", "10002");
    let taken = site_link(c, "S1", "10003");
    let batch = vec![s2.clone(), taken.clone()];
    let audit = batch.iter().map(|l| entry("alice", "link", l)).collect();
    let msg = conflict_text(store.insert_links(&d, batch, audit).await);
    assert!(
        msg.starts_with("billing site 'S1' is already linked on this connection"),
        "{msg}"
    );
    assert_eq!(store.link(&d, s2.id).await, Err(StoreError::NotFound));
    assert_eq!(db.count("links"), 3);
    assert_eq!(db.count("audit_log"), 3, "no audit of a refused change");

    // Each side is named for what it is.
    let msg = conflict_text(
        store
            .insert_links(&d, vec![site_link(c, "S3", "10001")], vec![])
            .await,
    );
    assert!(
        msg.starts_with("Stages site '10001' is already linked on this connection"),
        "{msg}"
    );
    assert!(msg.contains("billing site 'S1'"), "{msg}");
    let msg = conflict_text(
        store
            .insert_links(&d, vec![system_link(&s1, "Y1", "D9")], vec![])
            .await,
    );
    assert!(
        msg.starts_with("billing system 'Y1' is already linked on this connection"),
        "{msg}"
    );
    let msg = conflict_text(
        store
            .insert_links(&d, vec![system_link(&s1, "Y9", "D2")], vec![])
            .await,
    );
    assert!(
        msg.starts_with("Stages device 'D2' is already linked on this connection"),
        "{msg}"
    );
    // Two links of one batch to the same Stages site.
    let msg = conflict_text(
        store
            .insert_links(
                &d,
                vec![site_link(c, "S4", "20001"), site_link(c, "S5", "20001")],
                vec![],
            )
            .await,
    );
    assert!(
        msg.starts_with("Stages site '20001' is already linked"),
        "{msg}"
    );
    assert_eq!(db.count("links"), 3);

    // The same records may be linked on another connection.
    let c2 = stages_connection(&store, "d1", "Stages 2").await;
    store
        .insert_links(&d, vec![site_link(c2, "S1", "10001")], vec![])
        .await
        .unwrap();
    assert_eq!(
        store
            .links_of_billing(&d, LinkKind::Site, &bid("S1"))
            .await
            .unwrap()
            .len(),
        2
    );

    // A system's parent must be a site link on its connection.
    let stray = NewLink {
        parent_id: Some(LinkId::new()),
        ..system_link(&s1, "Y5", "D5")
    };
    let msg = conflict_text(store.insert_links(&d, vec![stray], vec![]).await);
    assert!(msg.contains("does not exist on this connection"), "{msg}");
    let elsewhere = NewLink {
        connection_id: c2,
        ..system_link(&s1, "Y5", "D5")
    };
    conflict_text(store.insert_links(&d, vec![elsewhere], vec![]).await);

    // Another dealer's connection is not found, and its links never show.
    assert_eq!(
        store
            .insert_links(&dealer("d2"), vec![site_link(c, "S7", "70001")], vec![])
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.link(&dealer("d2"), s1.id).await,
        Err(StoreError::NotFound)
    );
    assert!(all_links(&store, "d2", LinkFilter::default())
        .await
        .is_empty());
    assert_eq!(
        store
            .insert_links(&d, vec![site_link(ConnectionId::new(), "S8", "8")], vec![])
            .await,
        Err(StoreError::NotFound)
    );

    // Deleting the connection takes its links along.
    store.delete_connection(&d, c2, None).await.unwrap();
    assert_eq!(db.count("links"), 3);
});

store_test!(fifty_concurrent_links_to_one_stages_site, |db| async move {
    let store = db.store().await;
    let c = stages_connection(&store, "d1", "Stages").await;
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let link = site_link(c, &format!("S{i}"), "10001");
                let audit = vec![entry("alice", "link", &link)];
                barrier.wait().await;
                store.insert_links(&dealer("d1"), vec![link], audit).await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(links) => {
                assert_eq!(links.len(), 1);
                won += 1;
            }
            Err(StoreError::Conflict(msg)) => assert!(
                msg.starts_with("Stages site '10001' is already linked on this connection"),
                "{msg}"
            ),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(db.count("links"), 1);
    assert_eq!(db.count("audit_log"), 1, "only the winner's audit entry");
});

store_test!(relink_moves_external_ids_all_or_none, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let c = stages_connection(&store, "d1", "Stages").await;
    let s1 = site_link(c, "S1", "10001");
    let s2 = site_link(c, "S2", "10002");
    let y1 = system_link(&s1, "Y1", "D1");
    store
        .insert_links(&d, vec![s1.clone(), s2.clone(), y1.clone()], vec![])
        .await
        .unwrap();

    let moved = store
        .relink(
            &d,
            vec![Relink {
                link_id: s1.id,
                new_external_id: "10005".into(),
            }],
            Some((s1.id, 1)),
            vec![entry("alice", "edit_link", &s1)],
        )
        .await
        .unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].external_id, "10005");
    assert_eq!(moved[0].billing_id, bid("S1"));
    assert_eq!(moved[0].version, 2);
    assert!(moved[0].updated_at >= moved[0].created_at);
    assert_eq!(store.link(&d, s1.id).await.unwrap(), moved[0]);
    assert_eq!(db.count("audit_log"), 1);

    // A stale If-Match is refused.
    assert_eq!(
        store
            .relink(
                &d,
                vec![Relink {
                    link_id: s1.id,
                    new_external_id: "10006".into(),
                }],
                Some((s1.id, 1)),
                vec![],
            )
            .await,
        Err(StoreError::VersionMismatch)
    );

    // A target linked already: refused, and the other change of the batch too.
    let msg = conflict_text(
        store
            .relink(
                &d,
                vec![
                    Relink {
                        link_id: y1.id,
                        new_external_id: "D7".into(),
                    },
                    Relink {
                        link_id: s1.id,
                        new_external_id: "10002".into(),
                    },
                ],
                None,
                vec![entry("alice", "edit_link", &s1)],
            )
            .await,
    );
    assert!(
        msg.starts_with("Stages site '10002' is already linked on this connection"),
        "{msg}"
    );
    assert_eq!(store.link(&d, y1.id).await.unwrap().external_id, "D1");
    assert_eq!(store.link(&d, s1.id).await.unwrap().external_id, "10005");
    assert_eq!(db.count("audit_log"), 1);

    // Two links may swap their Stages sites in one change.
    let swapped = store
        .relink(
            &d,
            vec![
                Relink {
                    link_id: s1.id,
                    new_external_id: "10002".into(),
                },
                Relink {
                    link_id: s2.id,
                    new_external_id: "10005".into(),
                },
            ],
            None,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        swapped
            .iter()
            .map(|l| (l.billing_id.as_str(), l.external_id.as_str(), l.version))
            .collect::<Vec<_>>(),
        vec![("S1", "10002", 3), ("S2", "10005", 2)]
    );

    // Unknown links are not found, another dealer's included.
    assert_eq!(
        store
            .relink(
                &dealer("d2"),
                vec![Relink {
                    link_id: s1.id,
                    new_external_id: "1".into(),
                }],
                None,
                vec![],
            )
            .await,
        Err(StoreError::NotFound)
    );
});

store_test!(unlink_is_remembered_and_audited, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let c = stages_connection(&store, "d1", "Stages").await;
    let s1 = site_link(c, "S1", "10001");
    let y1 = system_link(&s1, "Y1", "D1");
    let y2 = system_link(&s1, "Y2", "D2");
    let s2 = site_link(c, "S2", "10002");
    store
        .insert_links(
            &d,
            vec![s1.clone(), y1.clone(), y2.clone(), s2.clone()],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        store.unlink(&d, &[LinkId::new()], "alice", vec![]).await,
        Err(StoreError::NotFound)
    );

    // Unlinking the site removes its systems' links too, each remembered.
    let removed = store
        .unlink(&d, &[s1.id], "alice", vec![entry("alice", "unlink", &s1)])
        .await
        .unwrap();
    assert_eq!(
        removed.iter().map(|l| l.id).collect::<Vec<_>>(),
        vec![s1.id, y1.id, y2.id]
    );
    let left = all_links(&store, "d1", LinkFilter::default()).await;
    assert_eq!(left.iter().map(|l| l.id).collect::<Vec<_>>(), vec![s2.id]);

    let unlinks = store.deliberate_unlinks(&d, c).await.unwrap();
    let mut remembered: Vec<(LinkKind, String, String, String)> = unlinks
        .iter()
        .map(|u| {
            (
                u.kind,
                u.billing_id.as_str().to_owned(),
                u.external_id.clone(),
                u.actor.clone(),
            )
        })
        .collect();
    remembered.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        remembered,
        vec![
            (LinkKind::Site, "S1".into(), "10001".into(), "alice".into()),
            (LinkKind::System, "Y1".into(), "D1".into(), "alice".into()),
            (LinkKind::System, "Y2".into(), "D2".into(), "alice".into()),
        ]
    );
    assert!(unlinks.iter().all(|u| u.connection_id == c));

    // The caller's entry for the site, and one for each child it did not cover.
    let trail = store
        .list_audit(&d, &AuditFilter::default(), first_page(100))
        .await
        .unwrap()
        .items;
    assert_eq!(trail.len(), 3);
    let mut subjects: Vec<(String, String, String)> = trail
        .iter()
        .map(|e| {
            (
                e.entry.billing_id.clone().unwrap(),
                e.entry.action.clone(),
                e.entry.actor.clone(),
            )
        })
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        vec![
            ("S1".into(), "unlink".into(), "alice".into()),
            ("Y1".into(), "unlink".into(), "alice".into()),
            ("Y2".into(), "unlink".into(), "alice".into()),
        ]
    );
    let y1_entry = trail
        .iter()
        .find(|e| e.entry.billing_id.as_deref() == Some("Y1"))
        .unwrap();
    assert_eq!(y1_entry.entry.external_id.as_deref(), Some("D1"));
    assert_eq!(y1_entry.entry.connection_id, Some(c));
    assert_eq!(y1_entry.entry.kind, "system");
    assert!(y1_entry.entry.before.is_some());

    // A new link of either record forgets its unlink: S1 to another site, and
    // another system to D2.
    let s1_again = site_link(c, "S1", "10009");
    store
        .insert_links(&d, vec![s1_again.clone()], vec![])
        .await
        .unwrap();
    store
        .insert_links(&d, vec![system_link(&s1_again, "Y7", "D2")], vec![])
        .await
        .unwrap();
    let left: Vec<String> = store
        .deliberate_unlinks(&d, c)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.billing_id.as_str().to_owned())
        .collect();
    assert_eq!(left, vec!["Y1"]);

    // Linked and unlinked again: one record of the pair, the latest.
    let y1_again = system_link(&s1_again, "Y1", "D1");
    store
        .insert_links(&d, vec![y1_again.clone()], vec![])
        .await
        .unwrap();
    store
        .unlink(&d, &[y1_again.id, y1_again.id], "bob", vec![])
        .await
        .unwrap();
    let unlinks = store.deliberate_unlinks(&d, c).await.unwrap();
    assert_eq!(unlinks.len(), 1);
    assert_eq!(unlinks[0].actor, "bob");

    // Scoped to the dealer and its connection.
    assert_eq!(
        store.deliberate_unlinks(&dealer("d2"), c).await,
        Err(StoreError::NotFound)
    );
    store.delete_connection(&d, c, None).await.unwrap();
    assert_eq!(db.count("deliberate_unlinks"), 0);
    assert_eq!(db.count("links"), 0);
    // The trail outlives the connection.
    assert!(db.count("audit_log") >= 4);
});

store_test!(
    large_batches_forget_unlinks_and_name_conflicts,
    |db| async move {
        let store = db.store().await;
        let d = dealer("d1");
        let c = stages_connection(&store, "d1", "Stages").await;
        // More records than one lookup takes at once, sites with their systems.
        let sites: Vec<NewLink> = (0..150)
            .map(|i| site_link(c, &format!("S{i}"), &format!("{}", 10000 + i)))
            .collect();
        let systems: Vec<NewLink> = sites
            .iter()
            .enumerate()
            .map(|(i, s)| system_link(s, &format!("Y{i}"), &format!("D{i}")))
            .collect();
        let batch: Vec<NewLink> = systems.iter().chain(&sites).cloned().collect();
        store.insert_links(&d, batch, vec![]).await.unwrap();
        let ids: Vec<LinkId> = sites.iter().map(|s| s.id).collect();
        store.unlink(&d, &ids, "alice", vec![]).await.unwrap();
        assert_eq!(db.count("deliberate_unlinks"), 300);

        // Linked again in one batch, each record with a new partner: the sites
        // keep their billing records, the systems their Stages devices, and every
        // unlink of either side is forgotten.
        let sites: Vec<NewLink> = (0..150)
            .map(|i| site_link(c, &format!("S{i}"), &format!("{}", 20000 + i)))
            .collect();
        let systems: Vec<NewLink> = sites
            .iter()
            .enumerate()
            .map(|(i, s)| system_link(s, &format!("Z{i}"), &format!("D{i}")))
            .collect();
        let batch: Vec<NewLink> = sites.iter().chain(&systems).cloned().collect();
        store.insert_links(&d, batch, vec![]).await.unwrap();
        assert_eq!(db.count("deliberate_unlinks"), 0);
        assert_eq!(db.count("links"), 300);

        // A link of the batch in the way of a later one is named.
        let msg = conflict_text(
            store
                .insert_links(
                    &d,
                    vec![site_link(c, "S900", "90001"), site_link(c, "S900", "90002")],
                    vec![],
                )
                .await,
        );
        // The refusal names the holder: its Stages site and its link.
        assert!(
            msg.starts_with(
                "billing site 'S900' is already linked on this connection (to Stages site '90001', link "
            ),
            "{msg}"
        );
        // A link inserted again by its id.
        let again = NewLink {
            billing_id: bid("S901"),
            external_id: "90003".into(),
            ..sites[0].clone()
        };
        let msg = conflict_text(store.insert_links(&d, vec![again], vec![]).await);
        assert_eq!(msg, format!("link {} already exists", sites[0].id.0));
        assert_eq!(db.count("links"), 300);
    }
);

store_test!(
    unlink_takes_children_listed_with_their_parent,
    |db| async move {
        let store = db.store().await;
        let d = dealer("d1");
        let c = stages_connection(&store, "d1", "Stages").await;
        let s1 = site_link(c, "S1", "10001");
        let y1 = system_link(&s1, "Y1", "D1");
        let y2 = system_link(&s1, "Y2", "D2");
        store
            .insert_links(&d, vec![s1.clone(), y1.clone(), y2.clone()], vec![])
            .await
            .unwrap();
        // A child before its parent, and the same child twice.
        let removed = store
            .unlink(&d, &[y2.id, s1.id, y2.id], "alice", vec![])
            .await
            .unwrap();
        assert_eq!(
            removed.iter().map(|l| l.id).collect::<Vec<_>>(),
            vec![y2.id, s1.id, y1.id]
        );
        assert_eq!(db.count("links"), 0);
        assert_eq!(db.count("deliberate_unlinks"), 3);
        assert_eq!(db.count("audit_log"), 3);
        // Gone now: a second unlink is not found and changes nothing.
        assert_eq!(
            store.unlink(&d, &[s1.id], "alice", vec![]).await,
            Err(StoreError::NotFound)
        );
        assert_eq!(db.count("audit_log"), 3);
    }
);

store_test!(
    link_snapshots_are_kept_apart_from_versions,
    |db| async move {
        let store = db.store().await;
        let d = dealer("d1");
        let c = stages_connection(&store, "d1", "Stages").await;
        let s1 = site_link(c, "S1", "10001");
        let s2 = site_link(c, "S2", "10002");
        let made = store
            .insert_links(&d, vec![s1.clone(), s2.clone()], vec![])
            .await
            .unwrap();
        assert_eq!(made[0].last_synced, None);

        let snapshot = serde_json::json!({"name": "Home", "address1": "1 Main St", "zip": null});
        store
            .set_link_snapshot(&d, s1.id, snapshot.clone(), Vec::new())
            .await
            .unwrap();
        let got = store.link(&d, s1.id).await.unwrap();
        assert_eq!(got.last_synced, Some(snapshot.clone()));
        // Bookkeeping, not a change: the version (ETag) and updated_at stay.
        assert_eq!(
            (got.version, got.updated_at),
            (made[0].version, made[0].updated_at)
        );
        let listed = all_links(&store, "d1", LinkFilter::default()).await;
        assert_eq!(listed[0].last_synced, Some(snapshot.clone()));
        assert_eq!(listed[1].last_synced, None);
        let replaced = serde_json::json!({"name": "Home 2"});
        store
            .set_link_snapshot(&d, s1.id, replaced.clone(), Vec::new())
            .await
            .unwrap();
        assert_eq!(
            store.link(&d, s1.id).await.unwrap().last_synced,
            Some(replaced)
        );

        assert_eq!(
            store
                .set_link_snapshot(&dealer("d2"), s1.id, snapshot.clone(), Vec::new())
                .await,
            Err(StoreError::NotFound)
        );
        assert_eq!(
            store
                .set_link_snapshot(&d, LinkId::new(), snapshot.clone(), Vec::new())
                .await,
            Err(StoreError::NotFound)
        );

        // Pointed at another Stages record, the link has agreed on nothing yet.
        let moved = store
            .relink(
                &d,
                vec![Relink {
                    link_id: s1.id,
                    new_external_id: "10009".into(),
                }],
                None,
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(moved[0].last_synced, None);
        assert_eq!(store.link(&d, s1.id).await.unwrap().last_synced, None);
    }
);

store_test!(discarded_links_are_not_remembered, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let c = stages_connection(&store, "d1", "Stages").await;
    let s1 = site_link(c, "S1", "10001");
    let y1 = system_link(&s1, "Y1", "D1");
    let s2 = site_link(c, "S2", "10002");
    store
        .insert_links(&d, vec![s1.clone(), y1.clone(), s2.clone()], vec![])
        .await
        .unwrap();
    // Children go with their site; an id already gone is no error.
    store
        .discard_links(&d, &[s1.id, LinkId::new()])
        .await
        .unwrap();
    let left = all_links(&store, "d1", LinkFilter::default()).await;
    assert_eq!(left.iter().map(|l| l.id).collect::<Vec<_>>(), vec![s2.id]);
    assert!(store.deliberate_unlinks(&d, c).await.unwrap().is_empty());
    let trail = store
        .list_audit(&d, &AuditFilter::default(), first_page(10))
        .await
        .unwrap()
        .items;
    assert_eq!(trail.len(), 2);
    assert!(trail.iter().all(|e| e.entry.action == "discard_link"));
    // Another dealer discards nothing.
    store.discard_links(&dealer("d2"), &[s2.id]).await.unwrap();
    assert_eq!(store.link(&d, s2.id).await.unwrap().id, s2.id);
});

store_test!(links_list_filter_and_page, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let a = stages_connection(&store, "d1", "A").await;
    let b = stages_connection(&store, "d1", "B").await;
    let sa = site_link(a, "S1", "10001");
    let ya = system_link(&sa, "Y1", "D1");
    let ya2 = system_link(&sa, "Y2", "D2");
    let sb = site_link(b, "S1", "20001");
    let sb2 = site_link(b, "S2", "20002");
    let all = vec![sa.clone(), ya.clone(), ya2.clone(), sb.clone(), sb2.clone()];
    store.insert_links(&d, all.clone(), vec![]).await.unwrap();
    let other_c = stages_connection(&store, "d2", "A").await;
    store
        .insert_links(
            &dealer("d2"),
            vec![site_link(other_c, "S1", "10001")],
            vec![],
        )
        .await
        .unwrap();

    let mut ids: Vec<LinkId> = all.iter().map(|l| l.id).collect();
    ids.sort();
    let mut seen = Vec::new();
    let mut page = first_page(2);
    let mut sizes = Vec::new();
    loop {
        let got = store
            .list_links(&d, &LinkFilter::default(), page.clone())
            .await
            .unwrap();
        sizes.push(got.items.len());
        seen.extend(got.items.iter().map(|l| l.id));
        match got.next_page_token {
            Some(token) => page.after = Some(token),
            None => break,
        }
    }
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(seen, ids);

    let ids_of = |links: Vec<Link>| links.into_iter().map(|l| l.id).collect::<Vec<_>>();
    let on_a = LinkFilter {
        connection_id: Some(a),
        ..Default::default()
    };
    assert_eq!(
        ids_of(all_links(&store, "d1", on_a).await),
        vec![sa.id, ya.id, ya2.id]
    );
    let sites = LinkFilter {
        kind: Some(LinkKind::Site),
        ..Default::default()
    };
    assert_eq!(
        ids_of(all_links(&store, "d1", sites).await),
        vec![sa.id, sb.id, sb2.id]
    );
    let s1 = LinkFilter {
        billing_id: Some("S1".into()),
        ..Default::default()
    };
    assert_eq!(
        ids_of(all_links(&store, "d1", s1).await),
        vec![sa.id, sb.id]
    );
    let by_external = LinkFilter {
        connection_id: Some(b),
        external_id: Some("20002".into()),
        ..Default::default()
    };
    assert_eq!(
        ids_of(all_links(&store, "d1", by_external).await),
        vec![sb2.id]
    );
    let children = LinkFilter {
        parent_id: Some(sa.id),
        ..Default::default()
    };
    assert_eq!(
        ids_of(all_links(&store, "d1", children).await),
        vec![ya.id, ya2.id]
    );
    let nothing = LinkFilter {
        connection_id: Some(a),
        billing_id: Some("S2".into()),
        ..Default::default()
    };
    assert!(all_links(&store, "d1", nothing).await.is_empty());

    assert_eq!(
        ids_of(
            store
                .links_of_billing(&d, LinkKind::Site, &bid("S1"))
                .await
                .unwrap()
        ),
        vec![sa.id, sb.id]
    );
    assert!(store
        .links_of_billing(&d, LinkKind::System, &bid("S1"))
        .await
        .unwrap()
        .is_empty());

    let asked: Vec<String> = ["D2", "D9", "D1", "10001"].map(String::from).to_vec();
    assert_eq!(
        store
            .linked_external_ids(&d, a, LinkKind::System, &asked)
            .await
            .unwrap(),
        vec!["D2", "D1"]
    );
    assert_eq!(
        store
            .linked_external_ids(&d, a, LinkKind::Site, &asked)
            .await
            .unwrap(),
        vec!["10001"]
    );
    assert!(store
        .linked_external_ids(&d, b, LinkKind::System, &asked)
        .await
        .unwrap()
        .is_empty());
});

store_test!(audit_lists_newest_first_with_filters, |db| async move {
    let store = db.store().await;
    let d = dealer("d1");
    let a = ConnectionId::new();
    let b = ConnectionId::new();
    let make = |actor: &str, connection: Option<ConnectionId>, billing: &str, external: &str| {
        NewAuditEntry {
            actor: actor.into(),
            action: "link".into(),
            connection_id: connection,
            kind: "site".into(),
            billing_id: Some(billing.into()),
            external_id: Some(external.into()),
            before: Some(serde_json::json!({"n": 1})),
            after: None,
        }
    };
    // Recorded one call at a time, so each call is newer than the one before.
    let entries = vec![
        make("alice", Some(a), "S1", "10001"),
        make("bob", Some(a), "S2", "10002"),
        make("alice", Some(b), "S3", "S1"),
        make("system:reconcile", None, "S4", "10004"),
    ];
    for e in &entries {
        store.record_audit(&d, vec![e.clone()]).await.unwrap();
    }
    store
        .record_audit(&dealer("d2"), vec![make("alice", Some(a), "S1", "10001")])
        .await
        .unwrap();

    let list = |filter: AuditFilter, page: PageRequest| {
        let store = store.clone();
        let d = d.clone();
        async move { store.list_audit(&d, &filter, page).await.unwrap() }
    };
    let all = list(AuditFilter::default(), first_page(10)).await;
    assert_eq!(
        all.items
            .iter()
            .map(|e| e.entry.clone())
            .collect::<Vec<_>>(),
        entries.iter().rev().cloned().collect::<Vec<_>>(),
        "newest first, stored as given"
    );
    assert!(all.items.iter().all(|e| e.dealer == d));
    assert!(all.items.windows(2).all(|w| w[0].at >= w[1].at));
    assert_eq!(all.next_page_token, None);

    let billing_of = |page: domain::Page<domain::audit::AuditEntry>| {
        page.items
            .into_iter()
            .map(|e| e.entry.billing_id.unwrap())
            .collect::<Vec<_>>()
    };
    // The subject matches either side: S1 is a billing id and an external id.
    let subject = AuditFilter {
        subject: Some("S1".into()),
        ..Default::default()
    };
    assert_eq!(
        billing_of(list(subject, first_page(10)).await),
        vec!["S3", "S1"]
    );
    let subject = AuditFilter {
        subject: Some("10002".into()),
        ..Default::default()
    };
    assert_eq!(billing_of(list(subject, first_page(10)).await), vec!["S2"]);
    let actor = AuditFilter {
        actor: Some("alice".into()),
        ..Default::default()
    };
    assert_eq!(
        billing_of(list(actor, first_page(10)).await),
        vec!["S3", "S1"]
    );
    let on_a = AuditFilter {
        connection_id: Some(a),
        ..Default::default()
    };
    assert_eq!(
        billing_of(list(on_a.clone(), first_page(10)).await),
        vec!["S2", "S1"]
    );
    let combined = AuditFilter {
        actor: Some("alice".into()),
        connection_id: Some(a),
        subject: Some("S1".into()),
        field: None,
    };
    assert_eq!(billing_of(list(combined, first_page(10)).await), vec!["S1"]);

    // Pages go on from the last entry seen, still newest first.
    let first = list(AuditFilter::default(), first_page(3)).await;
    let token = first.next_page_token.clone().expect("another page");
    assert_eq!(billing_of(first), vec!["S4", "S3", "S2"]);
    let rest = list(
        AuditFilter::default(),
        PageRequest {
            after: Some(token),
            limit: 3,
        },
    )
    .await;
    assert_eq!(rest.next_page_token, None);
    assert_eq!(billing_of(rest), vec!["S1"]);
});

store_test!(
    an_edit_claims_its_new_record_until_it_confirms,
    |db| async move {
        let store = db.store().await;
        let d = dealer("d1");
        let c = stages_connection(&store, "d1", "Stages").await;
        let s1 = site_link(c, "S1", "10001");
        let s2 = site_link(c, "S2", "10002");
        store
            .insert_links(&d, vec![s1.clone(), s2.clone()], vec![])
            .await
            .unwrap();
        let to = |link: &NewLink, external: &str| {
            vec![Relink {
                link_id: link.id,
                new_external_id: external.into(),
            }]
        };
        let lease = chrono::Duration::seconds(300);
        let claims = store
            .claim_relinks(&d, to(&s1, "10005"), lease)
            .await
            .unwrap();
        assert_eq!(claims.len(), 1);
        // Claimed, not moved: the link keeps its record, reads show no claim.
        assert_eq!(store.link(&d, s1.id).await.unwrap().external_id, "10001");
        assert_eq!(
            all_links(&store, "d1", LinkFilter::default()).await.len(),
            2
        );
        // Every other writer of the new record is refused, naming the link edited.
        let again = conflict_text(store.claim_relinks(&d, to(&s2, "10005"), lease).await);
        assert!(again.contains(&s1.id.to_string()), "{again}");
        let relinked = conflict_text(store.relink(&d, to(&s2, "10005"), None, vec![]).await);
        assert!(relinked.contains(&s1.id.to_string()), "{relinked}");
        let linked = conflict_text(
            store
                .insert_links(&d, vec![site_link(c, "S3", "10005")], vec![])
                .await,
        );
        assert!(linked.contains(&s1.id.to_string()), "{linked}");

        // Confirmed: the claim goes and the link moves, in one transaction.
        let moved = store
            .confirm_relinks(
                &d,
                claims.clone(),
                to(&s1, "10005"),
                Some((s1.id, 1)),
                vec![entry("alice", "edit_link", &s1)],
            )
            .await
            .unwrap();
        assert_eq!(moved[0].external_id, "10005");
        assert_eq!(moved[0].version, 2);
        assert_eq!(db.count("links"), 2);
        assert_eq!(db.count("audit_log"), 1);
        // A claim no longer held cannot be confirmed.
        let gone = conflict_text(
            store
                .confirm_relinks(&d, claims, to(&s1, "10006"), None, vec![])
                .await,
        );
        assert!(gone.contains("taken over"), "{gone}");
        assert_eq!(store.link(&d, s1.id).await.unwrap().external_id, "10005");

        // Released: the record is free again.
        let claims = store
            .claim_relinks(&d, to(&s2, "10001"), lease)
            .await
            .unwrap();
        store.release_links(&d, &claims).await.unwrap();
        assert_eq!(db.count("links"), 2);
        store
            .relink(&d, to(&s2, "10001"), None, vec![])
            .await
            .unwrap();
    }
);
