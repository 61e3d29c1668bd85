//! A run: reads Alarm.com and writes billing (A1 customers, A3 users), in
//! chunks each recorded with its effects in one transaction, so a run killed at
//! any point resumes from its checkpoint and never imports a record twice.
//! This module holds what both kinds share: the run's state, its progress
//! reports, why it stops, and how a dry run only lists what it would do; the
//! customer and user runs are in [`customers`] and [`users`].

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::{
    import_source, Import, ImportCounts, ImportId, ImportPorts, ImportSpec, ImportWrite,
    ItemOutcome, RecordOutcome,
};
use crate::adc::{AdcApi, AdcError};
use crate::billing::BillingId;
use crate::events::NewEvent;
use crate::isp::CompletedIspAccount;
use crate::operations::OperationError;
use crate::reconcile::Progress;
use crate::store::StoreError;
use crate::tenancy::DealerId;

mod customers;
mod users;

/// Tuning of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSettings {
    /// Customers read from ADC at once.
    pub read_concurrency: usize,
    /// Most records written per transaction (and between progress
    /// reports): each chunk is a few multi-row statements, so a larger one
    /// costs little more than a small one.
    pub chunk: usize,
    /// A chunk of customers being read is written once reading it took
    /// this long, so a slow Alarm.com still sees progress, a checkpoint and
    /// a cancel soon.
    pub chunk_time: Duration,
    /// Progress is reported at least this often while records are read...
    pub progress_every: Duration,
    /// ... and every this many records,
    pub progress_records: u64,
    /// ... but not more often than this, so a fast run does not turn into a
    /// stream of progress writes competing with its own chunk writes.
    pub progress_min_interval: Duration,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            read_concurrency: 4,
            chunk: 500,
            chunk_time: Duration::from_millis(500),
            progress_every: Duration::from_secs(2),
            progress_records: 25,
            progress_min_interval: Duration::from_millis(250),
        }
    }
}

/// Why a run stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportRunError {
    /// Someone cancelled it.
    #[error("the import was cancelled")]
    Cancelled,
    /// Worth another attempt later; the next one resumes from the checkpoint.
    #[error("{0}")]
    Transient(String),
    /// Transient, after this attempt recorded records: the import is getting
    /// on, so the attempt does not use up one of the job's attempts (an
    /// Alarm.com that fails now and then never kills a long import).
    #[error("{0}")]
    Interrupted(String),
    #[error("{0}")]
    Permanent(String),
}

/// A store failure during a run (a plain function rather than `From`, so
/// `?` elsewhere keeps one obvious target for a `StoreError`).
fn store_failed(e: StoreError) -> ImportRunError {
    match e {
        StoreError::Unavailable(_) | StoreError::Failed(_) | StoreError::Conflict(_) => {
            ImportRunError::Transient(format!("the database failed: {e}"))
        }
        other => ImportRunError::Permanent(other.to_string()),
    }
}

fn run_error(what: &str, e: AdcError) -> ImportRunError {
    if e.is_transient() {
        ImportRunError::Transient(format!("{what}: {e}"))
    } else {
        ImportRunError::Permanent(format!("{what}: {e}"))
    }
}

/// Runs (or resumes) an import. Every chunk of records is recorded with its
/// effects in one transaction, so a run killed at any point leaves a
/// checkpoint: the records it recorded are skipped when it runs again, and a
/// record imported on the connection before is never imported again.
pub async fn run_import(
    ports: ImportPorts<'_>,
    dealer: &DealerId,
    id: ImportId,
    progress: &dyn Progress,
    settings: RunSettings,
) -> Result<ImportCounts, ImportRunError> {
    let import = ports
        .imports
        .import(dealer, id)
        .await
        .map_err(store_failed)?;
    let connection = ports
        .connections
        .connection(dealer, import.connection_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => {
                ImportRunError::Permanent("the connection was deleted".to_owned())
            }
            other => store_failed(other),
        })?;
    let adc = import_source(ports.connections, ports.adc, &connection)
        .await
        .map_err(|e| match e {
            OperationError::Store(s) => store_failed(s),
            other => ImportRunError::Permanent(other.to_string()),
        })?;
    let done: HashSet<String> = ports
        .imports
        .recorded_external_ids(dealer, id)
        .await
        .map_err(store_failed)?
        .into_iter()
        .collect();
    let run = Run {
        ports,
        dealer,
        import: &import,
        adc: adc.as_ref(),
        progress,
        settings: RunSettings {
            read_concurrency: settings.read_concurrency.max(1),
            chunk: settings.chunk.max(1),
            progress_records: settings.progress_records.max(1),
            ..settings
        },
        done,
        dry_run: import.spec.dry_run(),
        last_report: std::sync::Mutex::new(None),
    };
    match &import.spec {
        ImportSpec::Customers { filters, options } => run.customers(filters, options).await,
        ImportSpec::Users { filters, options } => run.users(filters, options).await,
    }
}

struct Run<'a> {
    ports: ImportPorts<'a>,
    dealer: &'a DealerId,
    import: &'a Import,
    adc: &'a dyn AdcApi,
    progress: &'a dyn Progress,
    settings: RunSettings,
    /// What this run recorded before (a resumed run).
    done: HashSet<String>,
    dry_run: bool,
    /// When progress was last reported, and at how many records.
    last_report: std::sync::Mutex<Option<(Instant, u64)>>,
}

impl Run<'_> {
    async fn report(&self, counts: ImportCounts, total: u64) -> Result<(), ImportRunError> {
        self.report_seen(counts.seen, total).await
    }

    /// Reports `seen` records (never fewer than reported before: reads run
    /// ahead of the writes whose counts follow them).
    async fn report_seen(&self, seen: u64, total: u64) -> Result<(), ImportRunError> {
        let seen = {
            let mut last = self.last_report.lock().unwrap_or_else(|e| e.into_inner());
            let seen = seen.max(last.map_or(0, |(_, n)| n));
            *last = Some((Instant::now(), seen));
            seen
        };
        if self.progress.report(seen, Some(total)).await {
            Ok(())
        } else {
            Err(ImportRunError::Cancelled)
        }
    }

    /// Reports `seen` when the last report is `progress_every` old, or
    /// `progress_records` behind and `progress_min_interval` old, so
    /// progress moves while a chunk is read.
    async fn report_if_due(&self, seen: u64, total: u64) -> Result<(), ImportRunError> {
        let due = match *self.last_report.lock().unwrap_or_else(|e| e.into_inner()) {
            None => true,
            Some((at, n)) => {
                let since = at.elapsed();
                since >= self.settings.progress_every
                    || (seen >= n + self.settings.progress_records
                        && since >= self.settings.progress_min_interval)
            }
        };
        if due {
            self.report_seen(seen, total).await
        } else {
            Ok(())
        }
    }

    /// Lowercased login name → the billing user that has it: an Alarm.com
    /// user, or a customer's rep, with that login is that billing user.
    async fn billing_user_logins(&self) -> Result<HashMap<String, BillingId>, ImportRunError> {
        Ok(self
            .ports
            .imports
            .billing_user_logins(self.dealer)
            .await
            .map_err(store_failed)?
            .into_iter()
            .map(|(login, id)| (login.trim().to_lowercase(), id))
            .collect())
    }

    async fn record(&self, outcomes: Vec<RecordOutcome>) -> Result<ImportCounts, ImportRunError> {
        self.ports
            .imports
            .record_outcomes(self.dealer, self.import.id, outcomes)
            .await
            .map_err(store_failed)
    }

    /// A record billing holds already; a dry run only lists it.
    fn matched(
        &self,
        external_id: String,
        billing_id: BillingId,
        how: String,
        link: Option<CompletedIspAccount>,
    ) -> RecordOutcome {
        if self.dry_run {
            RecordOutcome::Planned {
                external_id,
                outcome: ItemOutcome::AlreadyImported,
                billing_id: Some(billing_id),
                reason: format!("dry run: {how}"),
            }
        } else {
            RecordOutcome::Matched {
                external_id,
                billing_id,
                how,
                link,
            }
        }
    }

    /// A record to create; a dry run only lists it.
    fn imported(
        &self,
        external_id: String,
        write: ImportWrite,
        events: Vec<NewEvent>,
        note: Option<String>,
    ) -> RecordOutcome {
        if self.dry_run {
            let id = write.billing_id().clone();
            let what = match write {
                ImportWrite::Customer { .. } => "customer",
                ImportWrite::User { .. } => "user",
            };
            RecordOutcome::Planned {
                external_id,
                outcome: ItemOutcome::Imported,
                reason: match note {
                    Some(note) => format!("dry run: would become billing {what} '{id}'; {note}"),
                    None => format!("dry run: would become billing {what} '{id}'"),
                },
                billing_id: Some(id),
            }
        } else {
            RecordOutcome::Imported {
                external_id,
                write: Box::new(write),
                events,
                note,
            }
        }
    }
}
