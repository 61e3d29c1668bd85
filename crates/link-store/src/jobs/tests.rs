//! The plans SQLite makes for the queue's statements (the claim's are
//! tested beside it, in `claim.rs`).

use super::enqueue::QUEUED_WITH_KEY;

/// An edit finds the queued job it coalesces into by one probe of the
/// partial index of queued keys, planned without any value bound.
#[test]
fn the_queued_job_of_a_key_is_one_probe_of_the_queued_keys_index() {
    let mut sqlite = crate::scratch_sqlite::open();
    let steps = crate::scratch_sqlite::plan(&mut sqlite, QUEUED_WITH_KEY);
    assert_eq!(
        steps,
        ["SEARCH jobs USING INDEX jobs_queued_unique_key (dealer=? AND unique_key=?)"]
    );
    // With the state a `?` the plan made before any value is bound
    // cannot use the index: SQLite plans again for each value bound.
    let bound = QUEUED_WITH_KEY.replace("'queued'", "?");
    let steps = crate::scratch_sqlite::plan(&mut sqlite, &bound);
    assert!(
        !steps.iter().any(|s| s.contains("jobs_queued_unique_key")),
        "{steps:?}"
    );
}
