//! Following runs (A4): one run with its job's state and progress, the runs of
//! a dealer, what a run did per record, its pace, and cancelling it. A run's
//! state is its job's, so each read pairs the two in the order that makes the
//! counts final once the job has ended.

use chrono::{DateTime, Utc};

use super::{finish_import, Import, ImportId, ImportItem, ImportStore, ItemOutcome};
use crate::jobs::{Job, JobState};
use crate::operations::OperationError;
use crate::store::{JobStore, PageRequest, StoreError};
use crate::tenancy::DealerId;
use crate::Page;

fn import_not_found(e: StoreError) -> OperationError {
    match e {
        StoreError::NotFound => OperationError::NotFound("no such import".into()),
        other => other.into(),
    }
}

/// A run with its job.
pub async fn import_with_job(
    jobs: &dyn JobStore,
    imports: &dyn ImportStore,
    dealer: &DealerId,
    id: ImportId,
) -> Result<(Import, Job), OperationError> {
    // The job first: a run records its last counts before its job ends, so
    // counts read after an ended job are final.
    let job = jobs
        .job(dealer, id.job_id())
        .await
        .map_err(import_not_found)?;
    let import = imports.import(dealer, id).await.map_err(import_not_found)?;
    Ok((import, job))
}

/// A page of the dealer's runs, newest first, each with its job.
pub async fn list_imports(
    jobs: &dyn JobStore,
    imports: &dyn ImportStore,
    dealer: &DealerId,
    page: PageRequest,
) -> Result<Page<(Import, Job)>, OperationError> {
    let found = imports.list_imports(dealer, page).await?;
    let mut items = Vec::with_capacity(found.items.len());
    for listed in found.items {
        // As `import_with_job`: the job, then the run's counts read after it.
        items.push(import_with_job(jobs, imports, dealer, listed.id).await?);
    }
    Ok(Page {
        items,
        next_page_token: found.next_page_token,
    })
}

/// What a run did per record, in recording order, of one outcome when given.
pub async fn import_items(
    imports: &dyn ImportStore,
    dealer: &DealerId,
    id: ImportId,
    outcome: Option<ItemOutcome>,
    page: PageRequest,
) -> Result<Page<ImportItem>, OperationError> {
    imports
        .import_items(dealer, id, outcome, page)
        .await
        .map_err(import_not_found)
}

/// Cancels a queued run, or asks a running one to stop after its current
/// chunk; what it imported stays imported. Returns the run as it is now.
pub async fn cancel_import(
    jobs: &dyn JobStore,
    imports: &dyn ImportStore,
    dealer: &DealerId,
    id: ImportId,
) -> Result<(Import, Job), OperationError> {
    // Another dealer's import is not found before anything is asked of its job.
    imports.import(dealer, id).await.map_err(import_not_found)?;
    let job = jobs
        .cancel_job(dealer, id.job_id())
        .await
        .map_err(import_not_found)?;
    // A queued run never starts: it ends here, with its summary.
    if job.state == JobState::Cancelled {
        finish_import(imports, dealer, id, JobState::Cancelled, None).await?;
    }
    import_with_job(jobs, imports, dealer, id).await
}

/// How fast a run goes and how long it still needs: records per second
/// since `started_at`, and the seconds left at that pace (none before the
/// first record, or without a total).
pub fn pace(
    done: u64,
    total: Option<u64>,
    started_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (Option<f64>, Option<u64>) {
    let Some(started_at) = started_at else {
        return (None, None);
    };
    let secs = (now - started_at).num_milliseconds() as f64 / 1000.0;
    if done == 0 || secs <= 0.0 {
        return (None, None);
    }
    let rate = done as f64 / secs;
    let left = total.map(|t| (t.saturating_sub(done) as f64 / rate).ceil() as u64);
    (Some((rate * 10.0).round() / 10.0), left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_is_records_per_second_and_time_left() {
        let start: DateTime<Utc> = "2025-01-01T00:00:00Z".parse().unwrap();
        let now = start + chrono::Duration::seconds(10);
        assert_eq!(pace(0, Some(100), Some(start), now), (None, None));
        assert_eq!(pace(50, None, None, now), (None, None));
        assert_eq!(pace(50, Some(200), Some(start), now), (Some(5.0), Some(30)));
        assert_eq!(pace(50, None, Some(start), now), (Some(5.0), None));
        assert_eq!(pace(300, Some(200), Some(start), now).1, Some(0));
    }
}
