//! The field issues suite, on SQLite and on PostgreSQL: the fields of links
//! that did not sync are kept per link and kind, published on the feed once
//! when new or changed, removed when settled, scoped by dealer, and listed
//! newest first with the inbox's filters.

#[macro_use]
mod common;

use common::*;
use domain::billing::BillingId;
use domain::events::types;
use domain::field_issues::{FieldIssueFilter, FieldIssueStore, IssueKind, NewFieldIssue};
use domain::link::{LinkId, LinkKind, NewLink};
use domain::store::{EventStore, LinkStore, StoreError};
use link_store::Store;

fn conflict(field: &str, billing: &str, stages: &str) -> NewFieldIssue {
    NewFieldIssue {
        field: field.into(),
        kind: IssueKind::Conflict,
        billing_value: billing.into(),
        stages_value: stages.into(),
        last_synced: Some("old".into()),
        reason: None,
    }
}

store_test!(
    issues_are_kept_published_once_and_settled,
    |db| async move {
        let store = db.store().await;
        let d = dealer("d1");
        let c = stages_connection(&store, "d1", "Stages").await;
        let link = site_link(&store, c, "S1", "10001").await;
        let all = |kind| FieldIssueFilter {
            kind: Some(kind),
            ..Default::default()
        };
        let feed = |store: Store| async move {
            store
                .list_events(&dealer("d1"), None, &[], 100)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.event_type == types::LINK_CONFLICT)
                .count()
        };

        // Two conflicts found: both stored and published.
        let new = store
            .record_field_issues(
                &d,
                link,
                IssueKind::Conflict,
                vec![
                    conflict("city", "Dayton", "Akron"),
                    conflict("zip", "1", "2"),
                ],
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(new.len(), 2);
        assert_eq!(new[0].billing_id.as_str(), "S1");
        assert_eq!(new[0].external_id, "10001");
        assert_eq!(new[0].connection_id, c);
        assert_eq!(feed(store.clone()).await, 2);

        // Found again unchanged: nothing new, nothing published.
        let again = store
            .record_field_issues(
                &d,
                link,
                IssueKind::Conflict,
                vec![conflict("city", "Dayton", "Akron")],
                Vec::new(),
            )
            .await
            .unwrap();
        assert!(again.is_empty());
        assert_eq!(feed(store.clone()).await, 2);

        // Changed values: published again; zip settled: removed.
        let changed = store
            .record_field_issues(
                &d,
                link,
                IssueKind::Conflict,
                vec![conflict("city", "Dayton", "Kent")],
                vec!["city".into(), "zip".into()],
            )
            .await
            .unwrap();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].issue.stages_value, "Kent");
        assert_eq!(feed(store.clone()).await, 3);
        let listed = store
            .list_field_issues(&d, &all(IssueKind::Conflict), first_page(10))
            .await
            .unwrap();
        assert_eq!(
            listed
                .items
                .iter()
                .map(|i| i.issue.field.as_str())
                .collect::<Vec<_>>(),
            ["city"]
        );

        // Refusals are another kind: listed apart, settled apart.
        let refused = NewFieldIssue {
            kind: IssueKind::Refused,
            reason: Some("duplicate transmitter code".into()),
            ..conflict("system_number", "7", "8")
        };
        store
            .record_field_issues(&d, link, IssueKind::Refused, vec![refused], Vec::new())
            .await
            .unwrap();
        assert_eq!(
            store
                .list_field_issues(&d, &all(IssueKind::Refused), first_page(10))
                .await
                .unwrap()
                .items
                .len(),
            1
        );
        assert_eq!(
            store
                .list_field_issues(&d, &all(IssueKind::Conflict), first_page(10))
                .await
                .unwrap()
                .items
                .len(),
            1
        );

        // Filters, and another dealer sees nothing.
        let by_field = FieldIssueFilter {
            field: Some("zip".into()),
            ..all(IssueKind::Conflict)
        };
        assert!(store
            .list_field_issues(&d, &by_field, first_page(10))
            .await
            .unwrap()
            .items
            .is_empty());
        let by_kind = FieldIssueFilter {
            record_kind: Some(LinkKind::System),
            ..all(IssueKind::Conflict)
        };
        assert!(store
            .list_field_issues(&d, &by_kind, first_page(10))
            .await
            .unwrap()
            .items
            .is_empty());
        let old = FieldIssueFilter {
            seen_before: Some(chrono::Utc::now() - chrono::Duration::hours(1)),
            ..all(IssueKind::Conflict)
        };
        assert!(store
            .list_field_issues(&d, &old, first_page(10))
            .await
            .unwrap()
            .items
            .is_empty());
        assert!(store
            .list_field_issues(&dealer("d2"), &all(IssueKind::Conflict), first_page(10))
            .await
            .unwrap()
            .items
            .is_empty());
        assert_eq!(
            store
                .record_field_issues(
                    &dealer("d2"),
                    link,
                    IssueKind::Conflict,
                    vec![conflict("zip", "1", "2")],
                    Vec::new()
                )
                .await,
            Err(StoreError::NotFound)
        );
        // Another dealer's settle clears nothing of d1's.
        store
            .record_field_issues(
                &dealer("d2"),
                link,
                IssueKind::Conflict,
                Vec::new(),
                vec!["city".into()],
            )
            .await
            .unwrap();
        assert_eq!(
            store
                .list_field_issues(&d, &all(IssueKind::Conflict), first_page(10))
                .await
                .unwrap()
                .items
                .len(),
            1
        );

        // Settled: gone; an unlinked record takes its issues with it.
        store
            .record_field_issues(
                &d,
                link,
                IssueKind::Conflict,
                Vec::new(),
                vec!["city".into()],
            )
            .await
            .unwrap();
        assert!(store
            .list_field_issues(&d, &all(IssueKind::Conflict), first_page(10))
            .await
            .unwrap()
            .items
            .is_empty());
        store.discard_links(&d, &[link]).await.unwrap();
        assert_eq!(db.count("link_field_issues"), 0);
    }
);

/// A site link of `billing_id` to Stages site `external_id` on connection
/// `c`, stored.
async fn site_link(
    store: &Store,
    c: domain::connection::ConnectionId,
    billing_id: &str,
    external_id: &str,
) -> LinkId {
    let link = NewLink {
        id: LinkId::new(),
        connection_id: c,
        kind: LinkKind::Site,
        billing_id: BillingId::parse(billing_id).unwrap(),
        external_id: external_id.into(),
        parent_id: None,
    };
    store
        .insert_links(&dealer("d1"), vec![link.clone()], Vec::new())
        .await
        .unwrap();
    link.id
}

store_test!(
    a_batch_of_successes_settles_each_link_whose_job_it_still_holds,
    |db| async move {
        use domain::audit::{AuditFilter, NewAuditEntry};
        use domain::field_issues::{IssueUpdate, LinkSettlement};
        use domain::jobs::{Done, JobId, JobState, NewJob};
        use domain::store::{AuditStore, Claim, JobStore, PageRequest};

        let store = db.store().await;
        let d = dealer("d1");
        let c = stages_connection(&store, "d1", "Stages").await;
        // Kept (its job held), gone (unlinked meanwhile), lost (its job
        // ended elsewhere), and one that found a new conflict.
        let [kept, gone, lost, conflicted] = [
            site_link(&store, c, "S1", "10001").await,
            site_link(&store, c, "S2", "10002").await,
            site_link(&store, c, "S3", "10003").await,
            site_link(&store, c, "S4", "10004").await,
        ];
        for link in [kept, lost, conflicted] {
            store
                .record_field_issues(
                    &d,
                    link,
                    IssueKind::Conflict,
                    vec![
                        conflict("city", "Dayton", "Akron"),
                        conflict("zip", "1", "2"),
                    ],
                    Vec::new(),
                )
                .await
                .unwrap();
        }
        let mut ids = Vec::new();
        for n in 0..4 {
            let job = store
                .enqueue(NewJob {
                    id: JobId::new(),
                    dealer: d.clone(),
                    kind: "auto_sync_push".into(),
                    payload: serde_json::json!({}),
                    max_attempts: 5,
                    run_at: chrono::Utc::now(),
                    unique_key: Some(format!("batch:{n}")),
                    serial_key: None,
                    created_by: "test".into(),
                })
                .await
                .unwrap();
            ids.push(job.id);
        }
        let kinds = vec!["auto_sync_push".to_owned()];
        let claimed = store
            .claim_jobs(Claim {
                kinds: &kinds,
                worker: "w1",
                lease: chrono::TimeDelta::seconds(30),
                now: chrono::Utc::now(),
                limit: 10,
                settle_lost_leases: false,
                max_running_per_dealer: 10,
                most_of_kind: &[],
            })
            .await
            .unwrap();
        assert_eq!(claimed.len(), 4);
        store
            .unlink(&d, &[gone], "tester", Vec::new())
            .await
            .unwrap();
        // The third job ends under its worker before the batch does.
        store
            .complete_jobs(
                "w1",
                vec![(ids[2], Done::from(serde_json::json!({"alone": true})))],
            )
            .await
            .unwrap();

        let entry = |billing_id: &str| NewAuditEntry {
            actor: "system:auto_sync".into(),
            action: "auto_sync".into(),
            connection_id: Some(c),
            kind: "site".into(),
            billing_id: Some(billing_id.into()),
            external_id: None,
            before: None,
            after: Some(serde_json::json!({"city": "Dayton"})),
        };
        let settling = |link: LinkId, billing_id: &str, found: Vec<NewFieldIssue>| LinkSettlement {
            dealer: d.clone(),
            link_id: link,
            snapshot: serde_json::json!({"city": format!("snap {billing_id}")}),
            conflicts: IssueUpdate {
                found,
                settled: vec!["city".into()],
            },
            refusals: IssueUpdate::default(),
            audit: vec![entry(billing_id)],
        };
        let done = |n: usize, settlement| {
            (
                ids[n],
                Done::from(serde_json::json!({"n": n})).settling(Some(settlement)),
            )
        };
        let lost_jobs = store
            .complete_jobs(
                "w1",
                vec![
                    done(0, settling(kept, "S1", Vec::new())),
                    done(1, settling(gone, "S2", Vec::new())),
                    done(2, settling(lost, "S3", Vec::new())),
                    done(
                        3,
                        settling(conflicted, "S4", vec![conflict("name", "A", "B")]),
                    ),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            lost_jobs,
            vec![ids[2]],
            "only the job that ended before is lost"
        );
        for n in [0, 1, 3] {
            let job = store.job(&d, ids[n]).await.unwrap();
            assert_eq!(job.state, JobState::Succeeded);
            assert_eq!(
                job.summary,
                Some(serde_json::json!({"n": n})),
                "job {n}'s own summary"
            );
        }
        assert_eq!(
            store.job(&d, ids[2]).await.unwrap().summary,
            Some(serde_json::json!({"alone": true})),
            "the lost job keeps the end it had"
        );

        let snapshot = |link| {
            let store = store.clone();
            let d = d.clone();
            async move { store.link(&d, link).await.unwrap().last_synced }
        };
        assert_eq!(
            snapshot(kept).await,
            Some(serde_json::json!({"city": "snap S1"}))
        );
        assert_eq!(
            snapshot(conflicted).await,
            Some(serde_json::json!({"city": "snap S4"}))
        );
        assert_eq!(snapshot(lost).await, None, "a lost job settles nothing");

        let fields_of = |link| {
            let store = store.clone();
            let d = d.clone();
            async move {
                let filter = FieldIssueFilter {
                    link_id: Some(link),
                    ..Default::default()
                };
                let page = PageRequest {
                    after: None,
                    limit: 50,
                };
                let mut fields: Vec<String> = store
                    .list_field_issues(&d, &filter, page)
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .map(|i| i.issue.field)
                    .collect();
                fields.sort();
                fields
            }
        };
        assert_eq!(
            fields_of(kept).await,
            vec!["zip"],
            "the settled field's issue cleared"
        );
        assert_eq!(fields_of(lost).await, vec!["city", "zip"]);
        assert_eq!(
            fields_of(conflicted).await,
            vec!["name", "zip"],
            "the new conflict kept"
        );

        let page = PageRequest {
            after: None,
            limit: 50,
        };
        let mut audited: Vec<String> = store
            .list_audit(&d, &AuditFilter::default(), page)
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.entry.actor == "system:auto_sync")
            .filter_map(|e| e.entry.billing_id)
            .collect();
        audited.sort();
        assert_eq!(
            audited,
            vec!["S1", "S4"],
            "entries of the links settled, once each"
        );
    }
);
