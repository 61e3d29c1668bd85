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
        let link = NewLink {
            id: LinkId::new(),
            connection_id: c,
            kind: LinkKind::Site,
            billing_id: BillingId::parse("S1").unwrap(),
            external_id: "10001".into(),
            parent_id: None,
        };
        store
            .insert_links(&d, vec![link.clone()], Vec::new())
            .await
            .unwrap();
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
                link.id,
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
                link.id,
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
                link.id,
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
            .record_field_issues(&d, link.id, IssueKind::Refused, vec![refused], Vec::new())
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
                    link.id,
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
                link.id,
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
                link.id,
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
        store.discard_links(&d, &[link.id]).await.unwrap();
        assert_eq!(db.count("link_field_issues"), 0);
    }
);
