//! Alarm.com import storage on SQLite and on PostgreSQL: a chunk of outcomes
//! larger than one multi-row statement recorded with all its effects in one
//! go, skipped when recorded again, records imported meanwhile or whose
//! billing id is taken recorded as such, records imported before a run
//! counted once however often it is resumed, and "imported before" found
//! for a whole customer list in one call.

#[macro_use]
mod common;

use std::collections::{HashMap, HashSet};

use common::*;
use domain::billing::{BillingId, CustomerFields, UserFields};
use domain::connection::{ConnectionId, ProviderKind};
use domain::events::{NewEvent, NewWebhookSubscription, SubscriptionId};
use domain::import::{
    AdcImportJob, CustomerFilters, CustomerOptions, ImportCounts, ImportId, ImportKind, ImportSpec,
    ImportStore, ImportWrite, ItemOutcome, NewImport, RecordOutcome,
};
use domain::jobs::kinds;
use domain::store::{BillingStore, ConnectionStore, EventStore, JobStore, WebhookStore};
use domain::tenancy::{Caller, Role, UserId};
use domain::Secret;
use link_store::Store;

fn caller() -> Caller {
    Caller {
        dealer: dealer("d1"),
        user: UserId("olivia".into()),
        roles: vec![Role::Operator],
    }
}

async fn alarm_com(store: &Store) -> ConnectionId {
    store
        .insert_connection(new_connection("d1", "ADC", ProviderKind::AlarmCom))
        .await
        .unwrap()
        .id
}

async fn new_run(store: &Store, connection_id: ConnectionId) -> ImportId {
    let id = ImportId(uuid::Uuid::now_v7());
    let spec = ImportSpec::Customers {
        filters: CustomerFilters::default(),
        options: CustomerOptions::default(),
    };
    let new = NewImport {
        id,
        dealer: dealer("d1"),
        connection_id,
        spec,
        created_by: "olivia".into(),
    };
    let job = AdcImportJob::new_job(id, connection_id, &caller());
    store.create_import(new, job).await.unwrap();
    id
}

fn customer(n: u32, connection_id: ConnectionId) -> RecordOutcome {
    let id = BillingId::parse(&format!("adc-{n}")).unwrap();
    let fields = CustomerFields {
        first_name: format!("First {n}"),
        last_name: "Last".into(),
        tags: vec!["adc".into()],
        ..Default::default()
    };
    RecordOutcome::Imported {
        external_id: n.to_string(),
        events: vec![NewEvent {
            event_type: "billing.customer.created".into(),
            subject_kind: "customer".into(),
            subject_id: id.to_string(),
            connection_id: Some(connection_id),
            data: serde_json::json!({"n": n}),
        }],
        write: Box::new(ImportWrite::Customer { id, fields }),
        note: Some("rep left blank".into()),
    }
}

async fn items(store: &Store, id: ImportId) -> HashMap<String, (ItemOutcome, Option<String>)> {
    let mut all = HashMap::new();
    let mut page = first_page(1000);
    loop {
        let found = store
            .import_items(&dealer("d1"), id, None, page.clone())
            .await
            .unwrap();
        for item in found.items {
            let billing_id = item.billing_id.map(|b| b.to_string());
            assert!(
                all.insert(item.external_id, (item.outcome, billing_id))
                    .is_none(),
                "each record once"
            );
        }
        match found.next_page_token {
            Some(next) => page.after = Some(next),
            None => return all,
        }
    }
}

async fn created_events(store: &Store) -> usize {
    let mut n = 0;
    let mut after = None;
    loop {
        let page = store
            .list_events(
                &dealer("d1"),
                after,
                &["billing.customer.created".into()],
                1000,
            )
            .await
            .unwrap();
        let Some(last) = page.last() else {
            return n;
        };
        after = Some(last.seq);
        n += page.len();
    }
}

store_test!(
    a_large_chunk_is_recorded_with_every_effect_once,
    |db| async move {
        let store = db.store().await;
        let d = dealer("d1");
        let cid = alarm_com(&store).await;
        // Every event is delivered to this subscription: one job per event.
        store
            .create_subscription(
                &d,
                NewWebhookSubscription {
                    id: SubscriptionId(uuid::Uuid::now_v7()),
                    url: "https://hooks.example.com/x".parse().unwrap(),
                    types: vec!["billing.customer.created".into()],
                    secret: Secret::new("whsec_0123456789abcdef".to_owned()),
                },
            )
            .await
            .unwrap();
        let run = new_run(&store, cid).await;
        // More than one multi-row statement's worth, with every kind of outcome.
        let mut outcomes: Vec<RecordOutcome> = (1..=1200).map(|n| customer(n, cid)).collect();
        outcomes.push(RecordOutcome::FilteredOut {
            external_id: "5001".into(),
            reason: "not among the filter's sub-dealers".into(),
        });
        outcomes.push(RecordOutcome::Failed {
            external_id: "5002".into(),
            reason: "no name".into(),
        });
        outcomes.push(RecordOutcome::AlreadyImported {
            external_id: "5003".into(),
            billing_id: BillingId::parse("U9").unwrap(),
        });
        // Twice in one chunk: recorded once.
        outcomes.push(customer(7, cid));
        let counts = store.record_outcomes(&d, run, outcomes).await.unwrap();
        assert_eq!(
            counts,
            ImportCounts {
                seen: 1203,
                imported: 1200,
                already_imported: 1,
                filtered_out: 1,
                failed: 1,
            }
        );
        assert_eq!(store.import(&d, run).await.unwrap().counts, counts);
        let listed = items(&store, run).await;
        assert_eq!(listed.len(), 1203);
        assert_eq!(
            listed["1199"],
            (ItemOutcome::Imported, Some("adc-1199".into()))
        );
        assert_eq!(listed["5001"].0, ItemOutcome::FilteredOut);
        // Items come back in recording order.
        let first = store
            .import_items(&d, run, None, first_page(3))
            .await
            .unwrap();
        let seqs: Vec<i64> = first.items.iter().map(|i| i.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
        assert_eq!(first.items[0].external_id, "1");
        assert_eq!(first.items[0].reason.as_deref(), Some("rep left blank"));

        let c = store
            .customer(&d, &BillingId::parse("adc-1000").unwrap())
            .await
            .unwrap();
        assert_eq!(c.version, 1);
        assert_eq!(c.fields.first_name, "First 1000");
        assert_eq!(c.fields.tags, vec!["adc".to_owned()]);
        assert_eq!(created_events(&store).await, 1200);
        assert_eq!(db.count("imported_records"), 1200);
        let deliveries = store
            .list_jobs(&d, None, Some(kinds::WEBHOOK_DELIVERY), first_page(1))
            .await
            .unwrap();
        assert!(!deliveries.items.is_empty());
        // The run's own job, and a delivery per event.
        assert_eq!(db.count("jobs"), 1 + 1200);

        // Recorded again (a resumed attempt): nothing is written twice.
        let again: Vec<RecordOutcome> = (1..=1200).map(|n| customer(n, cid)).collect();
        assert_eq!(store.record_outcomes(&d, run, again).await.unwrap(), counts);
        assert_eq!(created_events(&store).await, 1200);

        // The recorded ids are the checkpoint.
        let recorded: HashSet<String> = store
            .recorded_external_ids(&d, run)
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(recorded.len(), 1203);
    }
);

store_test!(
    records_imported_meanwhile_or_taken_are_not_written,
    |db| async move {
        let store = db.store().await;
        let d = dealer("d1");
        let cid = alarm_com(&store).await;
        let first = new_run(&store, cid).await;
        store
            .record_outcomes(&d, first, vec![customer(1, cid)])
            .await
            .unwrap();
        // A billing customer made by hand under the id the import would give.
        store
            .upsert_customer(
                &d,
                &BillingId::parse("adc-2").unwrap(),
                CustomerFields {
                    first_name: "By hand".into(),
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap();
        // And a billing user under the id a user import would give.
        store
            .upsert_user(
                &d,
                &BillingId::parse("adc-user-9").unwrap(),
                UserFields {
                    first_name: "By hand".into(),
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap();
        let second = new_run(&store, cid).await;
        let user = RecordOutcome::Imported {
            external_id: "9".into(),
            write: Box::new(ImportWrite::User {
                id: BillingId::parse("adc-user-9").unwrap(),
                fields: UserFields {
                    first_name: "Rick".into(),
                    ..Default::default()
                },
            }),
            events: vec![],
            note: None,
        };
        let counts = store
            .record_outcomes(
                &d,
                second,
                vec![customer(1, cid), customer(2, cid), customer(3, cid), user],
            )
            .await
            .unwrap();
        assert_eq!(
            (counts.imported, counts.already_imported, counts.failed),
            (1, 1, 2)
        );
        let listed = items(&store, second).await;
        assert_eq!(
            listed["1"],
            (ItemOutcome::AlreadyImported, Some("adc-1".into()))
        );
        assert_eq!(listed["2"], (ItemOutcome::Failed, None));
        assert_eq!(listed["3"].0, ItemOutcome::Imported);
        assert_eq!(listed["9"], (ItemOutcome::Failed, None));
        let hand = store
            .customer(&d, &BillingId::parse("adc-2").unwrap())
            .await
            .unwrap();
        assert_eq!(hand.fields.first_name, "By hand");
        assert_eq!(created_events(&store).await, 2);
    }
);

store_test!(
    records_imported_before_a_run_are_counted_once,
    |db| async move {
        let store = db.store().await;
        let d = dealer("d1");
        let cid = alarm_com(&store).await;
        let first = new_run(&store, cid).await;
        let outcomes: Vec<RecordOutcome> = (1..=800).map(|n| customer(n, cid)).collect();
        store.record_outcomes(&d, first, outcomes).await.unwrap();

        // The whole list in one call, ids imported or not.
        let list: Vec<String> = (1..=1000).map(|n| n.to_string()).collect();
        let before: HashMap<String, BillingId> = store
            .imported_records(&d, cid, ImportKind::Customers, &list)
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(before.len(), 800);
        assert_eq!(before["800"].as_str(), "adc-800");
        let few = store
            .imported_records(&d, cid, ImportKind::Customers, &list[795..805])
            .await
            .unwrap();
        assert_eq!(few.len(), 5);
        assert!(store
            .imported_records(&d, cid, ImportKind::Users, &list)
            .await
            .unwrap()
            .is_empty());
        // What a customer run sets aside before reading: every id, and only
        // to the connection's dealer.
        let mut ids = store
            .all_imported_external_ids(&d, cid, ImportKind::Customers)
            .await
            .unwrap();
        ids.sort_by_key(|id| id.parse::<u32>().unwrap());
        assert_eq!(ids, list[..800].to_vec());
        assert!(store
            .all_imported_external_ids(&d, cid, ImportKind::Users)
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .all_imported_external_ids(&dealer("d2"), cid, ImportKind::Customers)
            .await
            .unwrap()
            .is_empty());

        let second = new_run(&store, cid).await;
        let counts = store.record_imported_before(&d, second, 800).await.unwrap();
        assert_eq!((counts.seen, counts.already_imported), (800, 800));
        // One record imported meanwhile gets an item; new ones come after.
        let mut chunk: Vec<RecordOutcome> = (801..=900).map(|n| customer(n, cid)).collect();
        chunk.push(customer(5, cid));
        let counts = store.record_outcomes(&d, second, chunk).await.unwrap();
        assert_eq!(
            (counts.seen, counts.imported, counts.already_imported),
            (901, 100, 801)
        );
        // Resumed: the same look counts the same records, not twice; a list
        // that shrank meanwhile counts what it holds now.
        for (before, seen, already) in [(800, 901, 801), (790, 891, 791), (790, 891, 791)] {
            let counts = store
                .record_imported_before(&d, second, before)
                .await
                .unwrap();
            assert_eq!((counts.seen, counts.already_imported), (seen, already));
            assert_eq!(store.import(&d, second).await.unwrap().counts, counts);
        }
        // Items keep distinct seqs after the count changed.
        let counts = store
            .record_outcomes(&d, second, vec![customer(901, cid)])
            .await
            .unwrap();
        assert_eq!((counts.seen, counts.imported), (892, 101));
        let listed = items(&store, second).await;
        assert_eq!(listed.len(), 102);
        assert_eq!(listed["5"].0, ItemOutcome::AlreadyImported);
    }
);

store_test!(
    matched_records_are_remembered_with_their_missing_links_and_planned_ones_write_nothing,
    |db| async move {
        use domain::isp::{CompletedIspAccount, IspAccountKind, IspAccountOrigin, IspStore};
        let store = db.store().await;
        let d = dealer("d1");
        let cid = alarm_com(&store).await;
        for id in ["C-1", "C-2"] {
            store
                .upsert_customer(
                    &d,
                    &BillingId::parse(id).unwrap(),
                    CustomerFields {
                        first_name: "Ada".into(),
                        last_name: id.into(),
                        ..Default::default()
                    },
                    None,
                )
                .await
                .unwrap();
        }
        let link = |external: &str| CompletedIspAccount {
            external_id: external.into(),
            kind: IspAccountKind::Customer,
            origin: IspAccountOrigin::Recovered,
            builder_program_id: None,
            commitment_id: None,
            package_id: None,
            login_name: String::new(),
        };
        let matched = |external: &str, billing: &str, with_link: bool| RecordOutcome::Matched {
            external_id: external.into(),
            billing_id: BillingId::parse(billing).unwrap(),
            how: format!("matched by its DealerCustomerId: billing customer '{billing}'"),
            link: with_link.then(|| link(external)),
        };
        let run = new_run(&store, cid).await;
        let counts = store
            .record_outcomes(
                &d,
                run,
                vec![
                    matched("101", "C-1", true),
                    // The same billing customer again: remembered, no second link.
                    matched("102", "C-1", true),
                    matched("103", "C-2", false),
                    RecordOutcome::Planned {
                        external_id: "104".into(),
                        outcome: ItemOutcome::Imported,
                        billing_id: Some(BillingId::parse("adc-104").unwrap()),
                        reason: "dry run: would become billing customer 'adc-104'".into(),
                    },
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            (counts.seen, counts.already_imported, counts.imported),
            (4, 3, 1)
        );
        let listed = items(&store, run).await;
        assert_eq!(
            listed["101"],
            (ItemOutcome::AlreadyImported, Some("C-1".into()))
        );
        assert_eq!(
            listed["104"],
            (ItemOutcome::Imported, Some("adc-104".into()))
        );
        // Matched records are remembered; the planned one left no trace.
        let before = store
            .imported_records(
                &d,
                cid,
                ImportKind::Customers,
                &["101".into(), "102".into(), "103".into(), "104".into()],
            )
            .await
            .unwrap();
        assert_eq!(before.len(), 3);
        assert!(store
            .customer(&d, &BillingId::parse("adc-104").unwrap())
            .await
            .is_err());
        assert_eq!(created_events(&store).await, 0);
        // One link: C-1 to 101.
        let linked = store
            .isp_linked_customers(&d, cid, &["101".into(), "102".into(), "103".into()])
            .await
            .unwrap();
        assert_eq!(
            linked,
            vec![("101".to_owned(), BillingId::parse("C-1").unwrap())]
        );
        let account = store
            .isp_account_by_external(&d, cid, "101")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(account.origin, IspAccountOrigin::Recovered);
        let among = store
            .billing_customers_among(&d, cid, &["C-1".into(), "C-2".into(), "C-9".into()])
            .await
            .unwrap();
        let among: HashMap<String, Option<String>> = among
            .into_iter()
            .map(|(b, e)| (b.as_str().to_owned(), e))
            .collect();
        assert_eq!(among.len(), 2);
        assert_eq!(among["C-1"], Some("101".into()));
        assert_eq!(among["C-2"], None);
    }
);
