//! Bounded growth (B15): a background purger deletes each kind of history
//! once it is older than its retention (`retention.*`, idempotency keys
//! `idempotency.ttl_hours`), a batch of `retention.batch_size` rows per
//! statement with a pause in between, so it never holds locks requests wait
//! on; and the size of those tables is read for `/metrics` in the background.
//! Every replica purges; two at once only find fewer rows each.

use std::time::Duration;

use actix_web::web;
use chrono::{DateTime, Utc};
use domain::store::{History, RetentionStore, StoreResult};

use crate::config::Settings;
use crate::state::AppState;

/// How often the table figures of `/metrics` are read (and after each purge):
/// counting a large table costs a scan, so not every few seconds.
const TABLE_FIGURES_EVERY: Duration = Duration::from_secs(60);

/// What the purger deletes, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Each purged kind with how long it is kept; kinds kept for good are absent.
    pub keep: Vec<(History, chrono::Duration)>,
    pub batch_size: u32,
    pub pause: Duration,
    pub every: Duration,
}

impl Policy {
    pub fn from_settings(settings: &Settings) -> Self {
        let r = &settings.retention;
        let days = |n: u64| chrono::Duration::days(i64::try_from(n).unwrap_or(i64::MAX / 2));
        let keep = History::ALL
            .into_iter()
            .filter_map(|history| {
                let kept = match history {
                    History::Events => (r.events_days > 0).then(|| days(r.events_days)),
                    History::Audit => (r.audit_days > 0).then(|| days(r.audit_days)),
                    History::CallbackLog => {
                        (r.callback_log_days > 0).then(|| days(r.callback_log_days))
                    }
                    // As before B15: 0 hours keeps none past the next purge.
                    History::IdempotencyKeys => Some(chrono::Duration::hours(
                        i64::try_from(settings.idempotency.ttl_hours).unwrap_or(i64::MAX / 2),
                    )),
                    History::FinishedJobs => {
                        (r.finished_jobs_days > 0).then(|| days(r.finished_jobs_days))
                    }
                    History::DeadJobs => (r.dead_jobs_days > 0).then(|| days(r.dead_jobs_days)),
                    History::ImportItems => {
                        (r.import_items_days > 0).then(|| days(r.import_items_days))
                    }
                    History::Runs => (r.runs_days > 0).then(|| days(r.runs_days)),
                };
                kept.map(|k| (history, k))
            })
            .collect();
        Self {
            keep,
            batch_size: r.batch_size.max(1),
            pause: Duration::from_millis(r.batch_pause_ms),
            every: Duration::from_secs(r.interval_secs.max(1)),
        }
    }
}

/// Deletes one kind's rows from before `before`, batch after batch, until a
/// batch comes back short; returns the rows and the batches it took.
pub async fn purge_kind(
    store: &dyn RetentionStore,
    history: History,
    before: DateTime<Utc>,
    policy: &Policy,
) -> StoreResult<(u64, u32)> {
    let (mut rows, mut batches) = (0, 0);
    loop {
        let n = store
            .purge_history(history, before, policy.batch_size)
            .await?;
        if n > 0 {
            rows += n;
            batches += 1;
            tracing::debug!(
                history = history.as_str(),
                rows = n,
                "retention batch purged"
            );
        }
        if n < u64::from(policy.batch_size) {
            return Ok((rows, batches));
        }
        tokio::time::sleep(policy.pause).await;
    }
}

/// One purge of every kind; a kind that fails is logged and the others go on.
async fn purge_all(state: &AppState, policy: &Policy) {
    for (history, kept) in &policy.keep {
        let before = Utc::now() - *kept;
        match purge_kind(&state.store, *history, before, policy).await {
            Ok((0, _)) => {}
            Ok((rows, batches)) => {
                state.metrics.purged(*history, rows);
                tracing::info!(
                    history = history.as_str(),
                    rows,
                    batches,
                    %before,
                    "history past its retention purged"
                );
            }
            Err(e) => tracing::warn!(
                history = history.as_str(),
                error = %e,
                "purging history past its retention failed"
            ),
        }
    }
}

async fn refresh_table_figures(state: &AppState) {
    match state.store.table_figures().await {
        Ok(figures) => state.metrics.set_table_figures(&figures, Utc::now()),
        Err(e) => tracing::warn!(error = %e, "reading the table figures for /metrics failed"),
    }
}

/// Purges every `retention.interval_secs` (the first time at start) and reads
/// the table figures every minute and after each purge; never returns.
pub async fn run(state: web::Data<AppState>) {
    let policy = Policy::from_settings(&state.settings);
    let mut purge = tokio::time::interval(policy.every);
    purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut figures = tokio::time::interval(TABLE_FIGURES_EVERY);
    figures.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = purge.tick() => {
                purge_all(&state, &policy).await;
                refresh_table_figures(&state).await;
            }
            _ = figures.tick() => refresh_table_figures(&state).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use domain::store::TableFigures;
    use std::sync::Mutex;

    /// Holds `rows` old rows; each call deletes at most its limit.
    struct Pile {
        rows: Mutex<u64>,
        limits: Mutex<Vec<u32>>,
    }

    #[async_trait]
    impl RetentionStore for Pile {
        async fn purge_history(
            &self,
            _: History,
            _: DateTime<Utc>,
            limit: u32,
        ) -> StoreResult<u64> {
            self.limits.lock().unwrap().push(limit);
            let mut rows = self.rows.lock().unwrap();
            let n = (*rows).min(u64::from(limit));
            *rows -= n;
            Ok(n)
        }

        async fn table_figures(&self) -> StoreResult<Vec<TableFigures>> {
            Ok(Vec::new())
        }
    }

    fn policy(batch_size: u32) -> Policy {
        Policy {
            keep: Vec::new(),
            batch_size,
            pause: Duration::from_millis(1),
            every: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn a_kind_is_purged_batch_by_batch_until_a_batch_comes_back_short() {
        let pile = Pile {
            rows: Mutex::new(1_234),
            limits: Mutex::new(Vec::new()),
        };
        let done = purge_kind(&pile, History::Events, Utc::now(), &policy(500)).await;
        assert_eq!(done, Ok((1_234, 3)));
        assert_eq!(*pile.limits.lock().unwrap(), [500, 500, 500]);
        // A kind with exactly a batch left asks once more and stops on 0.
        *pile.rows.lock().unwrap() = 500;
        let done = purge_kind(&pile, History::Events, Utc::now(), &policy(500)).await;
        assert_eq!(done, Ok((500, 1)));
    }

    #[test]
    fn zero_days_keeps_a_kind_for_good() {
        let mut settings = Settings::load_strict(
            None,
            Some(
                [
                    ("CROSSLINK__RETENTION__AUDIT_DAYS", "0"),
                    ("CROSSLINK__RETENTION__EVENTS_DAYS", "2"),
                    ("CROSSLINK__IDEMPOTENCY__TTL_HOURS", "6"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ),
        )
        .unwrap();
        let p = Policy::from_settings(&settings);
        let kept = |h: History| p.keep.iter().find(|(k, _)| *k == h).map(|(_, d)| *d);
        assert_eq!(kept(History::Audit), None);
        assert_eq!(kept(History::Events), Some(chrono::Duration::days(2)));
        assert_eq!(
            kept(History::IdempotencyKeys),
            Some(chrono::Duration::hours(6))
        );
        assert_eq!(kept(History::FinishedJobs), Some(chrono::Duration::days(7)));
        assert_eq!(kept(History::DeadJobs), Some(chrono::Duration::days(30)));
        assert_eq!((p.batch_size, p.every), (500, Duration::from_secs(600)));
        settings.retention.batch_size = 0;
        assert!(settings
            .check()
            .unwrap_err()
            .contains("retention.batch_size"));
    }
}
