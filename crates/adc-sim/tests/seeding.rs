//! Seeded data: the same size gives the same records, at any size.

mod common;

use std::time::Instant;

use common::*;

#[tokio::test]
async fn the_same_seed_gives_the_same_records() {
    let a = start(1_500).await;
    let b = start(1_500).await;
    assert_eq!(a.state().customers(), b.state().customers());
    assert_eq!(a.state().reps(), b.state().reps());
    assert_eq!(a.state().reps().len(), 80);

    // And the same answers on the wire.
    let (ca, cb) = (Client::new(&a), Client::new(&b));
    for id in [10_000_001, 10_000_750, 10_001_500] {
        let params = format!("<CallerVersion>2</CallerVersion><CustomerId>{id}</CustomerId>");
        let ra = ca.call(CM, "GetCustomerInfo_V2", &params).await;
        let rb = cb.call(CM, "GetCustomerInfo_V2", &params).await;
        assert_eq!(ra.status, 200);
        assert_eq!(ra.body, rb.body);
    }
    let ra = ca.call(DM, "GetRepList", "").await;
    assert_eq!(ra.body, cb.call(DM, "GetRepList", "").await.body);

    // A mix of active, terminated and commitments over five sub-dealers.
    let stats = ca.stats().await;
    let terminated = stats["terminated_customers"].as_u64().unwrap();
    let commitments = stats["commitments"].as_u64().unwrap();
    assert!((100..=200).contains(&terminated), "{terminated}");
    assert!((45..=110).contains(&commitments), "{commitments}");
    assert_eq!(
        stats["active_customers"].as_u64().unwrap() + terminated + commitments,
        1_500
    );
    let subs: std::collections::BTreeSet<i64> = a
        .state()
        .customers()
        .iter()
        .map(|c| c.sub_dealer_id)
        .collect();
    assert_eq!(subs.len(), 5);

    // Different sizes share their common prefix of reps only by design, not customers.
    let small = start(10).await;
    assert_eq!(small.state().customer_count(), 10);
    assert_eq!(small.state().reps().len(), 10);
}

#[tokio::test]
async fn a_hundred_thousand_customers_are_all_seeded_and_listed() {
    let t = Instant::now();
    let sim = start(100_000).await;
    // How long it took is for reading, not a pass mark: a loaded CI machine
    // must not fail this. `make bench` measures the seeding speed (release
    // build): its row "Alarm.com simulator seeded".
    eprintln!(
        "seeding 100000 customers took {:?} (debug build)",
        t.elapsed()
    );
    assert_eq!(sim.state().customer_count(), 100_000);
    assert_eq!(sim.state().reps().len(), 5_005);
    let c = Client::new(&sim);
    let r = c
        .call(CM, "GetCustomerList", "<includeTermed>true</includeTermed>")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.matches("<int>").count(), 100_000);
}
