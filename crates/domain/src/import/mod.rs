//! Alarm.com imports (A1, A2 rep linking, A3, A4 run state, A5): customers and users (reps) brought over from an
//! Alarm.com connection into the billing records, filtered on our side (ADC
//! filters nothing), each record once per connection, in a background run that
//! records every record's outcome with its effects, so a run killed at any
//! point resumes where it stopped and a later run imports only what is new.
//!
//! The HTTP layer checks and starts a run ([`start_import`]); the job runner
//! drives it ([`run_import`]) and ends it ([`finish_import`]). Storage is the
//! [`ImportStore`] port.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::future::{join, OptionFuture};
use futures_util::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::adc::{
    AdcApi, AdcConnector, AdcCustomer, AdcCustomerId, AdcCustomerQuery, AdcError, AdcRep, AdcTarget,
};
use crate::billing::{BillingId, CustomerFields, CustomerKind, UserFields};
use crate::connection::{
    Connection, ConnectionId, ConnectionStatus, CredentialOwner, ProviderKind,
};
use crate::events::{types, NewEvent};
use crate::isp::{CompletedIspAccount, IspAccountOrigin};
use crate::jobs::{
    new_job, summary, Attempt, Done, HasJobPorts, Job, JobError, JobId, JobKind, JobState, NewJob,
    RunJob,
};
use crate::operations::OperationError;
use crate::reconcile::Progress;
use crate::store::{BillingStore, ConnectionStore, PageRequest, StoreError, StoreResult};
use crate::tenancy::{Caller, DealerId};
use crate::validation::ValidationError;
use crate::Page;

/// A run's id: the id of the job that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ImportId(pub Uuid);

impl ImportId {
    pub fn job_id(self) -> JobId {
        JobId(self.0)
    }
}

impl fmt::Display for ImportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a run brings over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportKind {
    /// ADC customers into billing customers.
    Customers,
    /// ADC reps (dealer logins) into billing users.
    Users,
}

impl ImportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customers => "customers",
            Self::Users => "users",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "customers" => Some(Self::Customers),
            "users" => Some(Self::Users),
            _ => None,
        }
    }
}

/// Which customers a run takes; every filter given must match, an empty one
/// matches all.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CustomerFilters {
    /// Exact ADC customer ids.
    #[serde(default)]
    pub customer_ids: Vec<AdcCustomerId>,
    /// Customers of any of these sub-dealers.
    #[serde(default)]
    pub sub_dealer_ids: Vec<i64>,
}

impl CustomerFilters {
    /// Whether the id filter lets the customer through (known before reading it).
    pub fn check_id(&self, id: AdcCustomerId) -> Result<(), String> {
        if self.customer_ids.is_empty() || self.customer_ids.contains(&id) {
            Ok(())
        } else {
            Err("the customer id is not among the filter's customer ids".into())
        }
    }

    /// Whether the customer, read, passes every filter; `Err` says why not.
    pub fn check(&self, c: &AdcCustomer) -> Result<(), String> {
        self.check_id(c.customer_id)?;
        if self.sub_dealer_ids.is_empty() {
            return Ok(());
        }
        match &c.sub_dealer {
            Some(sd) if self.sub_dealer_ids.contains(&sd.id) => Ok(()),
            Some(sd) => Err(format!(
                "sub-dealer {} ({}) is not among the filter's sub-dealers",
                sd.id, sd.name
            )),
            None => Err("the customer belongs to no sub-dealer".into()),
        }
    }
}

/// What imported customers get on the billing side.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CustomerOptions {
    #[serde(default)]
    pub office_location: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The billing user who becomes the rep of customers whose ADC rep is
    /// not a billing user; none leaves their rep blank (A2).
    #[serde(default)]
    pub default_rep: Option<BillingId>,
    /// List what the run would do (new, matched, filtered) without writing
    /// a billing record, a mapping, an ISP account link or an event.
    #[serde(default)]
    pub dry_run: bool,
}

/// Which reps a run takes; every filter given must match, an empty one matches all.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UserFilters {
    /// Exact ADC support ids.
    #[serde(default)]
    pub support_ids: Vec<i64>,
    /// Reps holding any of these roles (by name, any case, or by role id).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Reps of any of these sub-dealers.
    #[serde(default)]
    pub sub_dealer_ids: Vec<i64>,
}

impl UserFilters {
    pub fn check(&self, r: &AdcRep) -> Result<(), String> {
        if !self.support_ids.is_empty()
            && !r.support_id.is_some_and(|s| self.support_ids.contains(&s))
        {
            return Err("the support id is not among the filter's support ids".into());
        }
        if !self.roles.is_empty() {
            let holds = r.roles.iter().any(|role| {
                self.roles.iter().any(|wanted| {
                    let wanted = wanted.trim();
                    role.name.eq_ignore_ascii_case(wanted)
                        || (role.id != 0 && wanted.parse::<i64>() == Ok(role.id))
                })
            });
            if !holds {
                return Err("the user holds none of the filter's roles".into());
            }
        }
        if !self.sub_dealer_ids.is_empty() {
            match &r.sub_dealer {
                Some(sd) if self.sub_dealer_ids.contains(&sd.id) => {}
                Some(sd) => {
                    return Err(format!(
                        "sub-dealer {} ({}) is not among the filter's sub-dealers",
                        sd.id, sd.name
                    ))
                }
                None => return Err("the user belongs to no sub-dealer".into()),
            }
        }
        Ok(())
    }
}

/// What imported users get on the billing side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserOptions {
    #[serde(default = "yes")]
    pub active: bool,
    /// May log in to the billing system: each such user is announced on the
    /// change feed so the credentials get sent.
    #[serde(default)]
    pub can_login: bool,
    #[serde(default)]
    pub permission_group: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// As for customers: list, write nothing.
    #[serde(default)]
    pub dry_run: bool,
}

fn yes() -> bool {
    true
}

impl Default for UserOptions {
    fn default() -> Self {
        Self {
            active: true,
            can_login: false,
            permission_group: String::new(),
            tags: Vec::new(),
            dry_run: false,
        }
    }
}

/// What a run imports, how it filters, and what it sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImportSpec {
    Customers {
        filters: CustomerFilters,
        options: CustomerOptions,
    },
    Users {
        filters: UserFilters,
        options: UserOptions,
    },
}

impl ImportSpec {
    pub fn kind(&self) -> ImportKind {
        match self {
            Self::Customers { .. } => ImportKind::Customers,
            Self::Users { .. } => ImportKind::Users,
        }
    }

    /// A dry run lists what it would do and writes nothing else.
    pub fn dry_run(&self) -> bool {
        match self {
            Self::Customers { options, .. } => options.dry_run,
            Self::Users { options, .. } => options.dry_run,
        }
    }

    /// The filters and the options as JSON, as stored and shown.
    pub fn parts(&self) -> (serde_json::Value, serde_json::Value) {
        let json = |v: Result<serde_json::Value, serde_json::Error>| v.unwrap_or_default();
        match self {
            Self::Customers { filters, options } => (
                json(serde_json::to_value(filters)),
                json(serde_json::to_value(options)),
            ),
            Self::Users { filters, options } => (
                json(serde_json::to_value(filters)),
                json(serde_json::to_value(options)),
            ),
        }
    }

    /// The spec back from its stored parts.
    pub fn from_parts(
        kind: ImportKind,
        filters: serde_json::Value,
        options: serde_json::Value,
    ) -> Result<Self, serde_json::Error> {
        Ok(match kind {
            ImportKind::Customers => Self::Customers {
                filters: serde_json::from_value(filters)?,
                options: serde_json::from_value(options)?,
            },
            ImportKind::Users => Self::Users {
                filters: serde_json::from_value(filters)?,
                options: serde_json::from_value(options)?,
            },
        })
    }
}

/// How many records a run has seen, and what became of them (A4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ImportCounts {
    pub seen: u64,
    pub imported: u64,
    pub already_imported: u64,
    pub filtered_out: u64,
    pub failed: u64,
}

/// A stored run. Its state and progress are those of its job.
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    pub id: ImportId,
    pub dealer: DealerId,
    pub connection_id: ConnectionId,
    pub spec: ImportSpec,
    pub counts: ImportCounts,
    /// How the run ended, once its summary event is on the feed.
    pub finished_state: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewImport {
    pub id: ImportId,
    pub dealer: DealerId,
    pub connection_id: ConnectionId,
    pub spec: ImportSpec,
    pub created_by: String,
}

/// What became of one record of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemOutcome {
    Imported,
    AlreadyImported,
    FilteredOut,
    Failed,
}

impl ItemOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Imported => "imported",
            Self::AlreadyImported => "already_imported",
            Self::FilteredOut => "filtered_out",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Imported,
            Self::AlreadyImported,
            Self::FilteredOut,
            Self::Failed,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// One record's outcome, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportItem {
    /// Order of recording within the run.
    pub seq: i64,
    /// The ADC customer id or user support id.
    pub external_id: String,
    pub outcome: ItemOutcome,
    /// The billing record it became or already was.
    pub billing_id: Option<BillingId>,
    /// Why it was filtered out or failed, or how it was matched.
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The billing record an imported record becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportWrite {
    Customer {
        id: BillingId,
        fields: CustomerFields,
    },
    User {
        id: BillingId,
        fields: UserFields,
    },
}

impl ImportWrite {
    pub fn billing_id(&self) -> &BillingId {
        match self {
            Self::Customer { id, .. } | Self::User { id, .. } => id,
        }
    }
}

/// One record's outcome, to be recorded with its effects.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordOutcome {
    /// Create the billing record, remember where it came from, publish `events`.
    /// The store records `AlreadyImported` instead when the record was
    /// imported meanwhile, and `Failed` when the billing id is taken.
    Imported {
        external_id: String,
        write: Box<ImportWrite>,
        events: Vec<NewEvent>,
        note: Option<String>,
    },
    AlreadyImported {
        external_id: String,
        billing_id: BillingId,
    },
    /// The record is one billing already holds (matched before create): it
    /// is remembered as imported into `billing_id`, so later runs count it
    /// without reading it, and its ISP account link is recorded when
    /// `link` is given (the billing customer had none). Recorded as
    /// `AlreadyImported` with `how` as the reason.
    Matched {
        external_id: String,
        billing_id: BillingId,
        how: String,
        link: Option<CompletedIspAccount>,
    },
    /// A dry run's outcome: only the item is recorded, nothing else.
    Planned {
        external_id: String,
        outcome: ItemOutcome,
        billing_id: Option<BillingId>,
        reason: String,
    },
    FilteredOut {
        external_id: String,
        reason: String,
    },
    Failed {
        external_id: String,
        reason: String,
    },
}

impl RecordOutcome {
    pub fn external_id(&self) -> &str {
        match self {
            Self::Imported { external_id, .. }
            | Self::AlreadyImported { external_id, .. }
            | Self::Matched { external_id, .. }
            | Self::Planned { external_id, .. }
            | Self::FilteredOut { external_id, .. }
            | Self::Failed { external_id, .. } => external_id,
        }
    }
}

/// Storage of runs, their items, and which ADC record became which billing
/// record (unique per connection, kind and ADC id).
#[async_trait]
pub trait ImportStore: Send + Sync {
    /// The run and the job that runs it, in one transaction.
    async fn create_import(&self, new: NewImport, job: NewJob) -> StoreResult<(Import, Job)>;
    async fn import(&self, dealer: &DealerId, id: ImportId) -> StoreResult<Import>;
    /// Newest first.
    async fn list_imports(&self, dealer: &DealerId, page: PageRequest)
        -> StoreResult<Page<Import>>;
    /// In recording order, of one outcome when given.
    async fn import_items(
        &self,
        dealer: &DealerId,
        id: ImportId,
        outcome: Option<ItemOutcome>,
        page: PageRequest,
    ) -> StoreResult<Page<ImportItem>>;
    /// The ADC ids this run has recorded an outcome for (its checkpoint).
    async fn recorded_external_ids(
        &self,
        dealer: &DealerId,
        id: ImportId,
    ) -> StoreResult<Vec<String>>;
    /// Of `external_ids`, those imported before on the connection, with their billing ids.
    async fn imported_records(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        kind: ImportKind,
        external_ids: &[String],
    ) -> StoreResult<Vec<(String, BillingId)>>;
    /// Every record of `kind` imported on the connection.
    async fn all_imported_records(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        kind: ImportKind,
    ) -> StoreResult<Vec<(String, BillingId)>>;
    /// Of `external_ids` (ADC customer ids), those with an ISP account on the
    /// connection (provisioned, linked, made through the Builder Program),
    /// with the billing customer each belongs to.
    async fn isp_linked_customers(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        external_ids: &[String],
    ) -> StoreResult<Vec<(String, BillingId)>>;
    /// Of `billing_ids`, the billing customers of the dealer that exist, each
    /// with the provider customer id of its ISP account on the connection
    /// when it has one (empty while that account is being provisioned).
    async fn billing_customers_among(
        &self,
        dealer: &DealerId,
        connection_id: ConnectionId,
        billing_ids: &[String],
    ) -> StoreResult<Vec<(BillingId, Option<String>)>>;
    /// Of `billing_ids`, the billing users of the dealer that exist.
    async fn billing_users_among(
        &self,
        dealer: &DealerId,
        billing_ids: &[String],
    ) -> StoreResult<Vec<BillingId>>;
    /// Login name and id of every billing user that has a login name.
    async fn billing_user_logins(&self, dealer: &DealerId)
        -> StoreResult<Vec<(String, BillingId)>>;
    /// Counts `count` records of the run as imported before it ran: found
    /// in one look at its start and not listed one by one as items (a run
    /// with nothing new writes nothing per record). The number replaces the
    /// one an earlier attempt of the run set, so a resumed run counts each
    /// such record once; returns the run's counts.
    async fn record_imported_before(
        &self,
        dealer: &DealerId,
        id: ImportId,
        count: u64,
    ) -> StoreResult<ImportCounts>;
    /// Records the outcomes with their effects in one transaction, skipping
    /// records this run has recorded already; returns the run's counts.
    async fn record_outcomes(
        &self,
        dealer: &DealerId,
        id: ImportId,
        outcomes: Vec<RecordOutcome>,
    ) -> StoreResult<ImportCounts>;
    /// Marks the run ended and writes its summary event, once: `Ok(false)`
    /// when it had ended already (nothing written).
    async fn finish_import(
        &self,
        dealer: &DealerId,
        id: ImportId,
        state: JobState,
        summary: NewEvent,
    ) -> StoreResult<bool>;
}

/// The ports a run uses.
#[derive(Clone, Copy)]
pub struct ImportPorts<'a> {
    pub connections: &'a dyn ConnectionStore,
    pub billing: &'a dyn BillingStore,
    pub imports: &'a dyn ImportStore,
    pub adc: &'a dyn AdcConnector,
}

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

/// How often a run is tried when ADC keeps failing for a while.
pub const IMPORT_ATTEMPTS: u32 = 10;

/// The ADC client of an import-ready connection (A5): an Alarm.com
/// connection that is active and holds the dealer credentials.
pub async fn import_source(
    store: &dyn ConnectionStore,
    connector: &dyn AdcConnector,
    dealer: &DealerId,
    connection: &Connection,
) -> Result<std::sync::Arc<dyn AdcApi>, OperationError> {
    let name = connection.name.as_str();
    if connection.provider != ProviderKind::AlarmCom {
        return Err(OperationError::WrongProvider(format!(
            "connection '{name}' is a {} connection; imports come from an Alarm.com connection",
            connection.provider.as_str()
        )));
    }
    if connection.status != ConnectionStatus::Active {
        return Err(OperationError::Conflict {
            code: "provider_inactive",
            message: format!(
                "the Alarm.com provider entry '{name}' is inactive; an admin makes it active (PATCH the connection with status active) before importing"
            ),
        });
    }
    let credential = store
        .credential(dealer, connection.id, &CredentialOwner::Dealer)
        .await?
        .ok_or_else(|| {
            OperationError::MissingCredentials(format!(
                "the Alarm.com provider entry '{name}' is not linked: it has no API credentials; an admin sets them with PUT /v1/connections/{}/credentials/dealer",
                connection.id
            ))
        })?;
    Ok(connector.connect(AdcTarget {
        key: connection.id.to_string(),
        endpoint: connection.endpoint.url().clone(),
        username: credential.username,
        password: credential.password.expose().to_owned(),
    }))
}

/// What the filters can be chosen from: the dealer's sub-dealers and the
/// roles its users hold, read from Alarm.com through an import-ready connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilterChoices {
    pub sub_dealers: Vec<crate::adc::AdcSubDealer>,
    pub roles: Vec<crate::adc::AdcRole>,
}

pub async fn filter_choices(
    ports: ImportPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
) -> Result<FilterChoices, OperationError> {
    let connection = ports
        .connections
        .connection(&caller.dealer, connection_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => OperationError::NotFound("no such connection".into()),
            other => other.into(),
        })?;
    let adc = import_source(ports.connections, ports.adc, &caller.dealer, &connection).await?;
    let failed = |e: AdcError| OperationError::Provider {
        connection: connection.name.as_str().to_owned(),
        timeout: matches!(e, AdcError::Timeout),
        message: e.to_string(),
    };
    Ok(FilterChoices {
        sub_dealers: adc.sub_dealers().await.map_err(failed)?,
        roles: adc.roles().await.map_err(failed)?,
    })
}

/// The job that runs (or resumes) an import; its id is the import's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdcImportJob {
    pub import_id: ImportId,
    /// Runs of one connection take turns (the serial key); kept in the job
    /// row, not in the payload.
    #[serde(skip)]
    pub connection_id: Option<ConnectionId>,
}

impl JobKind for AdcImportJob {
    const KIND: &'static str = "adc_import";
    const MAX_ATTEMPTS: u32 = IMPORT_ATTEMPTS;

    fn serial_key(&self) -> Option<String> {
        self.connection_id.map(|c| format!("adc_import:{c}"))
    }
}

impl AdcImportJob {
    /// The queue row of the run `import_id`, asked for by `caller`.
    pub fn new_job(import_id: ImportId, connection_id: ConnectionId, caller: &Caller) -> NewJob {
        let job = Self {
            import_id,
            connection_id: Some(connection_id),
        };
        let mut row = new_job(&caller.dealer, &job, &caller.user.0, Utc::now());
        row.id = import_id.job_id();
        row
    }
}

/// Runs (or resumes from its checkpoint), then ends the import with its
/// summary on the change feed, whether it succeeded, failed, was cancelled,
/// or ran out of attempts.
#[async_trait]
impl<C: HasJobPorts + ?Sized> RunJob<C> for AdcImportJob {
    async fn run(self, ctx: &C, attempt: Attempt<'_>) -> Result<Done, JobError> {
        let ports = ctx.job_ports();
        let job = attempt.job;
        let progress = attempt.progress(ports.jobs);
        let result = run_import(
            ports.imports,
            &job.dealer,
            self.import_id,
            &progress,
            ports.import_settings,
        )
        .await;
        let (end, outcome) = match result {
            Ok(counts) => (
                Some((JobState::Succeeded, None)),
                summary(&ImportRunSummary {
                    import_id: self.import_id,
                    counts,
                }),
            ),
            // Progress answers "stop" when the job was cancelled, and also when
            // this worker lost its lease (another one now runs the import, and
            // records its end): only the first is the run's end.
            Err(ImportRunError::Cancelled) if !attempt.still_ours(ports.jobs).await => (
                None,
                Err(JobError::Transient(
                    "the lease was lost; another worker goes on".into(),
                )),
            ),
            Err(ImportRunError::Cancelled) => (
                Some((JobState::Cancelled, None)),
                Err(JobError::Permanent(ImportRunError::Cancelled.to_string())),
            ),
            Err(ImportRunError::Permanent(e)) => (
                Some((JobState::Failed, Some(e.clone()))),
                Err(JobError::Permanent(e)),
            ),
            // Got on before it stopped: try again without using up an attempt.
            Err(ImportRunError::Interrupted(e)) => (None, Err(JobError::Unavailable(e))),
            // The next attempt resumes; the last one ends the run.
            Err(ImportRunError::Transient(e)) => (
                (job.attempts >= job.max_attempts).then(|| (JobState::Dead, Some(e.clone()))),
                Err(JobError::Transient(e)),
            ),
        };
        if let Some((end, error)) = end {
            if let Err(e) = finish_import(
                ports.imports.imports,
                &job.dealer,
                self.import_id,
                end,
                error.as_deref(),
            )
            .await
            {
                tracing::warn!(error = %e, "recording the end of an import failed");
            }
        }
        outcome
    }
}

/// What a finished run's job records.
#[derive(Serialize)]
struct ImportRunSummary {
    import_id: ImportId,
    counts: ImportCounts,
}

/// Checks the precondition and the options, then stores the run with its
/// queued job (A5: nothing starts unless the provider entry is active and linked).
pub async fn start_import(
    ports: ImportPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    spec: ImportSpec,
) -> Result<(Import, Job), OperationError> {
    let connection = match ports
        .connections
        .connection(&caller.dealer, connection_id)
        .await
    {
        Ok(c) => c,
        Err(StoreError::NotFound) => {
            return Err(ValidationError::field("connection_id", "no such connection").into())
        }
        Err(e) => return Err(e.into()),
    };
    let adc = import_source(ports.connections, ports.adc, &caller.dealer, &connection).await?;
    check_filter_ids(adc.as_ref(), &connection, &spec).await?;
    if let ImportSpec::Customers { options, .. } = &spec {
        if let Some(rep) = &options.default_rep {
            match ports.billing.user(&caller.dealer, rep).await {
                Ok(_) => {}
                Err(StoreError::NotFound) => {
                    return Err(ValidationError::field(
                        "options.default_rep",
                        format!("no billing user '{rep}'"),
                    )
                    .into())
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    let id = ImportId(Uuid::now_v7());
    let job = AdcImportJob::new_job(id, connection_id, caller);
    let new = NewImport {
        id,
        dealer: caller.dealer.clone(),
        connection_id,
        spec,
        created_by: caller.user.0.clone(),
    };
    Ok(ports.imports.create_import(new, job).await?)
}

/// The sub-dealer and role ids of the filters against the filter choices
/// of the Alarm.com account (a filter on an id it does not have would
/// quietly match nothing). Alarm.com is asked only when such a filter is given.
async fn check_filter_ids(
    adc: &dyn AdcApi,
    connection: &Connection,
    spec: &ImportSpec,
) -> Result<(), OperationError> {
    let (sub_dealer_ids, roles): (&[i64], &[String]) = match spec {
        ImportSpec::Customers { filters, .. } => (&filters.sub_dealer_ids, &[]),
        ImportSpec::Users { filters, .. } => (&filters.sub_dealer_ids, &filters.roles),
    };
    let failed = |e: AdcError| OperationError::Provider {
        connection: connection.name.as_str().to_owned(),
        timeout: matches!(e, AdcError::Timeout),
        message: format!("reading the filter choices: {e}"),
    };
    let mut v = ValidationError::default();
    if !sub_dealer_ids.is_empty() {
        let known = adc.sub_dealers().await.map_err(failed)?;
        let unknown = unknown_filter_ids(sub_dealer_ids, &known);
        if !unknown.is_empty() {
            v.push(
                "filters.sub_dealer_ids",
                format!(
                    "no sub-dealer {} in the Alarm.com account; GET /v1/imports/filter-choices lists them",
                    unknown.join(", ")
                ),
            );
        }
    }
    if !roles.is_empty() {
        let known = adc.roles().await.map_err(failed)?;
        let unknown = unknown_roles(roles, &known);
        if !unknown.is_empty() {
            v.push(
                "filters.roles",
                format!(
                    "no role {} in the Alarm.com account; GET /v1/imports/filter-choices lists them",
                    unknown.join(", ")
                ),
            );
        }
    }
    v.into_result().map_err(OperationError::from)
}

/// The filter's sub-dealer ids that are not among `known`.
pub fn unknown_filter_ids(ids: &[i64], known: &[crate::adc::AdcSubDealer]) -> Vec<String> {
    ids.iter()
        .filter(|id| !known.iter().any(|k| k.id == **id))
        .map(i64::to_string)
        .collect()
}

/// The filter's roles (a name, any case, or an id) that are not among `known`.
pub fn unknown_roles(roles: &[String], known: &[crate::adc::AdcRole]) -> Vec<String> {
    roles
        .iter()
        .filter(|wanted| {
            let wanted = wanted.trim();
            !known
                .iter()
                .any(|k| k.name.eq_ignore_ascii_case(wanted) || wanted.parse::<i64>() == Ok(k.id))
        })
        .map(|r| format!("'{}'", r.trim()))
        .collect()
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
    let adc = import_source(ports.connections, ports.adc, dealer, &connection)
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

/// A chunk of customers read, with their outcomes.
struct ReadChunk {
    outcomes: Vec<RecordOutcome>,
    /// Why the run stops after recording `outcomes`.
    stop: Option<ImportRunError>,
    /// Whether reads remain.
    more: bool,
}

/// Where a customer's rep comes from (A2).
struct RepMatcher {
    /// ADC support id → billing user imported from it.
    by_support_id: HashMap<String, BillingId>,
    /// Lowercased login name → billing user.
    by_login: HashMap<String, BillingId>,
    default_rep: Option<BillingId>,
}

impl RepMatcher {
    /// The rep's billing user and how it was found.
    fn rep_of(&self, c: &AdcCustomer) -> (Option<BillingId>, &'static str) {
        let by_id = c
            .sales_rep_support_id
            .and_then(|s| self.by_support_id.get(&s.to_string()));
        let by_login = || {
            let login = c.sales_rep_login_name.trim().to_lowercase();
            (!login.is_empty())
                .then(|| self.by_login.get(&login))
                .flatten()
        };
        match by_id.or_else(by_login) {
            Some(user) => (Some(user.clone()), "rep matched a billing user"),
            None => match &self.default_rep {
                Some(rep) => (Some(rep.clone()), "rep set to the default rep"),
                None => (None, "rep left blank"),
            },
        }
    }
}

/// A read customer that billing already holds (matched before create).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerMatch {
    pub billing_id: BillingId,
    /// How it was matched, as the item's reason.
    pub how: String,
    /// The ISP account link to record (the billing customer has none yet).
    pub link: Option<CompletedIspAccount>,
}

/// The billing customer a read Alarm.com customer already is through its
/// DealerCustomerId (the billing id the service sends when it provisions an
/// account, and the one a dealer types into Alarm.com), if any. `known`
/// holds the billing customers found among the DealerCustomerIds, each with
/// the provider customer id of its ISP account on the connection when it
/// has one (empty while that account is being provisioned). An ISP account
/// link of the customer itself is matched before reading it.
pub fn match_by_dealer_customer_id(
    customer: &AdcCustomer,
    known: &HashMap<String, Option<String>>,
) -> Option<CustomerMatch> {
    let dcid = customer.dealer_customer_id.trim();
    if dcid.is_empty() {
        return None;
    }
    let account = known.get(dcid)?;
    let billing_id = BillingId::parse(dcid).ok()?;
    let own = customer.customer_id.to_string();
    let matched = format!("matched by its DealerCustomerId: billing customer '{billing_id}'");
    Some(match account {
        None => CustomerMatch {
            how: format!("{matched}; its ISP account link is recorded"),
            link: Some(crate::isp::completed_from(
                customer,
                IspAccountOrigin::Recovered,
            )),
            billing_id,
        },
        Some(linked) if *linked == own => CustomerMatch {
            how: matched,
            link: None,
            billing_id,
        },
        Some(linked) if linked.is_empty() => CustomerMatch {
            how: format!("{matched}; its ISP account is being provisioned, so no link is recorded"),
            link: None,
            billing_id,
        },
        Some(linked) => CustomerMatch {
            how: format!(
                "{matched}, which is linked to Alarm.com customer {linked}; no link is recorded"
            ),
            link: None,
            billing_id,
        },
    })
}

/// A customer read (or why not), in reading order, before matching.
enum Read {
    Customer(String, Box<AdcCustomer>),
    Done(RecordOutcome),
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

    async fn customers(
        self,
        filters: &CustomerFilters,
        options: &CustomerOptions,
    ) -> Result<ImportCounts, ImportRunError> {
        let ids = self
            .adc
            .customer_ids(&AdcCustomerQuery::default())
            .await
            .map_err(|e| run_error("listing the Alarm.com customers", e))?;
        let mut seen_ids = HashSet::with_capacity(ids.len());
        let todo: Vec<AdcCustomerId> = ids
            .into_iter()
            .filter(|id| seen_ids.insert(*id) && !self.done.contains(&id.to_string()))
            .collect();
        let total = seen_ids.len() as u64;
        let mut first = Vec::new();
        let mut to_check = Vec::with_capacity(todo.len());
        for id in todo {
            match filters.check_id(id) {
                Ok(()) => to_check.push(id.to_string()),
                Err(reason) => first.push(RecordOutcome::FilteredOut {
                    external_id: id.to_string(),
                    reason,
                }),
            }
        }
        // What any run of the connection imported before, in one look for
        // the whole list: counted, neither read again nor listed one by one,
        // so a run with nothing new costs the list and a few statements.
        let before: HashSet<String> = if to_check.is_empty() {
            HashSet::new()
        } else {
            self.ports
                .imports
                .imported_records(
                    self.dealer,
                    self.import.connection_id,
                    ImportKind::Customers,
                    &to_check,
                )
                .await
                .map_err(store_failed)?
                .into_iter()
                .map(|(external_id, _)| external_id)
                .collect()
        };
        let mut to_read: Vec<String> = to_check
            .into_iter()
            .filter(|id| !before.contains(id))
            .collect();
        // Matched before create, without reading them: customers with an ISP
        // account link (provisioned, linked, made through the Builder
        // Program) are the billing customers they are linked to.
        if !to_read.is_empty() {
            let mut linked = self
                .ports
                .imports
                .isp_linked_customers(self.dealer, self.import.connection_id, &to_read)
                .await
                .map_err(store_failed)?;
            linked.sort();
            let linked_ids: HashSet<&str> = linked.iter().map(|(e, _)| e.as_str()).collect();
            to_read.retain(|id| !linked_ids.contains(id.as_str()));
            for (external_id, billing_id) in linked {
                let how =
                    format!("matched by its ISP account link: billing customer '{billing_id}'");
                first.push(self.matched(external_id, billing_id, how, None));
            }
        }
        let mut counts = self.import.counts;
        let mut first = first.into_iter();
        loop {
            let chunk: Vec<RecordOutcome> = first.by_ref().take(self.settings.chunk).collect();
            if chunk.is_empty() {
                break;
            }
            counts = self.record(chunk).await?;
        }
        // Also when none is found now, if an earlier attempt counted some.
        if !before.is_empty() || counts.already_imported > 0 {
            counts = self
                .ports
                .imports
                .record_imported_before(self.dealer, self.import.id, before.len() as u64)
                .await
                .map_err(store_failed)?;
        }
        self.report(counts, total).await?;
        if to_read.is_empty() {
            return Ok(counts);
        }
        let reps = RepMatcher {
            by_support_id: self
                .ports
                .imports
                .all_imported_records(self.dealer, self.import.connection_id, ImportKind::Users)
                .await
                .map_err(store_failed)?
                .into_iter()
                .collect(),
            by_login: self
                .ports
                .imports
                .billing_user_logins(self.dealer)
                .await
                .map_err(store_failed)?
                .into_iter()
                .map(|(login, id)| (login.trim().to_lowercase(), id))
                .collect(),
            default_rep: options.default_rep.clone(),
        };
        let adc = self.adc;
        let reads = stream::iter(to_read)
            .map(|external_id| async move {
                let result = match external_id.parse::<AdcCustomerId>() {
                    Ok(id) => adc.customer(id).await,
                    Err(_) => Err(AdcError::BadAnswer(format!(
                        "'{external_id}' is not a customer id"
                    ))),
                };
                (external_id, result)
            })
            .buffered(self.settings.read_concurrency);
        let mut reads = std::pin::pin!(reads);
        let mut writing = None;
        let mut writing_len = 0u64;
        let seen_at_start = counts.seen;
        loop {
            // The next chunk is read while the one before is written.
            let previous: OptionFuture<_> = writing.take().into();
            let base = counts.seen + writing_len;
            let (written, chunk) = join(
                previous,
                self.read_chunk(&mut reads, filters, options, &reps, base, total),
            )
            .await;
            if let Some(written) = written {
                counts = written?;
                self.report(counts, total).await?;
            }
            if let Some(stop) = chunk.stop {
                let progressed = !chunk.outcomes.is_empty() || counts.seen > seen_at_start;
                if !chunk.outcomes.is_empty() {
                    self.record(chunk.outcomes).await?;
                }
                return Err(match stop {
                    ImportRunError::Transient(e) if progressed => ImportRunError::Interrupted(e),
                    other => other,
                });
            }
            writing_len = chunk.outcomes.len() as u64;
            if !chunk.outcomes.is_empty() {
                writing = Some(self.record(chunk.outcomes));
            }
            if !chunk.more {
                break;
            }
        }
        if let Some(last) = writing {
            counts = last.await?;
            self.report(counts, total).await?;
        }
        Ok(counts)
    }

    /// Reads customers until the chunk is full, or reading it took
    /// `chunk_time` (a slow Alarm.com still sees a checkpoint often), or the
    /// reads end, or the credentials stop working; then matches the ones
    /// read against billing (their DealerCustomerIds, in one look). Progress
    /// is reported as they are read, `base` being the records counted before.
    async fn read_chunk(
        &self,
        reads: &mut (impl Stream<Item = (String, Result<AdcCustomer, AdcError>)> + Unpin),
        filters: &CustomerFilters,
        options: &CustomerOptions,
        reps: &RepMatcher,
        base: u64,
        total: u64,
    ) -> ReadChunk {
        let started = Instant::now();
        let mut chunk = ReadChunk {
            outcomes: Vec::with_capacity(self.settings.chunk),
            stop: None,
            more: true,
        };
        let mut read = Vec::with_capacity(self.settings.chunk);
        for _ in 0..self.settings.chunk {
            let Some((external_id, result)) = reads.next().await else {
                chunk.more = false;
                break;
            };
            match result {
                Ok(customer) => read.push(Read::Customer(external_id, Box::new(customer))),
                // The credentials stopped working: nothing else will.
                Err(e @ AdcError::Unauthorized) => {
                    chunk.stop = Some(run_error("reading a customer", e));
                    break;
                }
                // Left for the next attempt, which resumes here (the client
                // has retried the read already, with backoff, under the
                // connection's throttle); the rest of the chunk is read and
                // recorded first, so an Alarm.com that fails now and then
                // still lets each attempt get on. The last reason is kept.
                Err(e) if e.is_transient() => {
                    chunk.stop = Some(run_error(&format!("reading customer {external_id}"), e));
                }
                Err(e) => read.push(Read::Done(RecordOutcome::Failed {
                    external_id,
                    reason: e.to_string(),
                })),
            }
            if let Err(stop) = self.report_if_due(base + read.len() as u64, total).await {
                chunk.stop = Some(stop);
                break;
            }
            if started.elapsed() >= self.settings.chunk_time {
                break;
            }
        }
        let wanted: Vec<String> = read
            .iter()
            .filter_map(|r| match r {
                Read::Customer(_, c) if filters.check(c).is_ok() => {
                    let dcid = c.dealer_customer_id.trim();
                    (!dcid.is_empty()).then(|| dcid.to_owned())
                }
                _ => None,
            })
            .collect();
        let known: HashMap<String, Option<String>> = if wanted.is_empty() {
            HashMap::new()
        } else {
            match self
                .ports
                .imports
                .billing_customers_among(self.dealer, self.import.connection_id, &wanted)
                .await
            {
                Ok(found) => found
                    .into_iter()
                    .map(|(id, account)| (id.as_str().to_owned(), account))
                    .collect(),
                // The customers read are read again by the next attempt.
                Err(e) => {
                    chunk.stop = Some(store_failed(e));
                    read.retain(|r| matches!(r, Read::Done(_)));
                    HashMap::new()
                }
            }
        };
        for r in read {
            chunk.outcomes.push(match r {
                Read::Customer(external_id, customer) => {
                    self.customer_outcome(external_id, &customer, filters, options, reps, &known)
                }
                Read::Done(outcome) => outcome,
            });
        }
        chunk
    }

    fn customer_outcome(
        &self,
        external_id: String,
        customer: &AdcCustomer,
        filters: &CustomerFilters,
        options: &CustomerOptions,
        reps: &RepMatcher,
        known: &HashMap<String, Option<String>>,
    ) -> RecordOutcome {
        if let Err(reason) = filters.check(customer) {
            return RecordOutcome::FilteredOut {
                external_id,
                reason,
            };
        }
        if let Some(m) = match_by_dealer_customer_id(customer, known) {
            return self.matched(external_id, m.billing_id, m.how, m.link);
        }
        let (rep, how) = reps.rep_of(customer);
        let fields = customer_fields(customer, options, rep);
        if fields.display_name().trim().is_empty() {
            return RecordOutcome::Failed {
                external_id,
                reason: "the Alarm.com customer has neither a name nor a commercial name"
                    .to_owned(),
            };
        }
        let id = match customer_billing_id(customer.customer_id) {
            Ok(id) => id,
            Err(reason) => {
                return RecordOutcome::Failed {
                    external_id,
                    reason,
                }
            }
        };
        let event = NewEvent {
            event_type: types::BILLING_CUSTOMER_CREATED.into(),
            subject_kind: "customer".into(),
            subject_id: id.to_string(),
            connection_id: Some(self.import.connection_id),
            data: serde_json::json!({
                "record": fields,
                "source": "adc_import",
                "import_id": self.import.id,
                "adc_customer_id": customer.customer_id,
            }),
        };
        self.imported(
            external_id,
            ImportWrite::Customer { id, fields },
            vec![event],
            Some(how.to_owned()),
        )
    }

    async fn users(
        self,
        filters: &UserFilters,
        options: &UserOptions,
    ) -> Result<ImportCounts, ImportRunError> {
        let reps = self
            .adc
            .reps()
            .await
            .map_err(|e| run_error("listing the Alarm.com users", e))?;
        let mut seen_ids = HashSet::with_capacity(reps.len());
        let reps: Vec<(String, AdcRep)> = reps
            .into_iter()
            .map(|r| (user_external_id(&r), r))
            .filter(|(id, _)| seen_ids.insert(id.clone()))
            .collect();
        let total = reps.len() as u64;
        let todo: Vec<&(String, AdcRep)> = reps
            .iter()
            .filter(|(id, _)| !self.done.contains(id))
            .collect();
        let logins: HashMap<String, BillingId> = self
            .ports
            .imports
            .billing_user_logins(self.dealer)
            .await
            .map_err(store_failed)?
            .into_iter()
            .map(|(login, id)| (login.trim().to_lowercase(), id))
            .collect();
        let mut counts = self.import.counts;
        self.report(counts, total).await?;
        for chunk in todo.chunks(self.settings.chunk) {
            let ids: Vec<String> = chunk.iter().map(|(id, _)| id.clone()).collect();
            let before: HashMap<String, BillingId> = self
                .ports
                .imports
                .imported_records(
                    self.dealer,
                    self.import.connection_id,
                    ImportKind::Users,
                    &ids,
                )
                .await
                .map_err(store_failed)?
                .into_iter()
                .collect();
            // Billing users that already carry the id an import would give.
            let own_ids: Vec<String> = chunk
                .iter()
                .filter_map(|(_, rep)| user_billing_id(rep).ok())
                .map(|id| id.as_str().to_owned())
                .collect();
            let existing: HashSet<BillingId> = self
                .ports
                .imports
                .billing_users_among(self.dealer, &own_ids)
                .await
                .map_err(store_failed)?
                .into_iter()
                .collect();
            let outcomes = chunk
                .iter()
                .map(|(external_id, rep)| {
                    self.user_outcome(
                        external_id.clone(),
                        rep,
                        filters,
                        options,
                        &before,
                        &logins,
                        &existing,
                    )
                })
                .collect();
            counts = self.record(outcomes).await?;
            self.report(counts, total).await?;
        }
        Ok(counts)
    }

    #[allow(clippy::too_many_arguments)]
    fn user_outcome(
        &self,
        external_id: String,
        rep: &AdcRep,
        filters: &UserFilters,
        options: &UserOptions,
        before: &HashMap<String, BillingId>,
        logins: &HashMap<String, BillingId>,
        existing: &HashSet<BillingId>,
    ) -> RecordOutcome {
        if let Err(reason) = filters.check(rep) {
            return RecordOutcome::FilteredOut {
                external_id,
                reason,
            };
        }
        if let Some(billing_id) = before.get(&external_id) {
            return RecordOutcome::AlreadyImported {
                external_id,
                billing_id: billing_id.clone(),
            };
        }
        // A billing user with the login name is that user already: no duplicate.
        let login = rep.login_name.trim().to_lowercase();
        if let Some(billing_id) = logins.get(&login).filter(|_| !login.is_empty()) {
            let how = format!(
                "matched by its login name '{}': billing user '{billing_id}'",
                rep.login_name.trim()
            );
            return self.matched(external_id, billing_id.clone(), how, None);
        }
        let id = match user_billing_id(rep) {
            Ok(id) => id,
            Err(reason) => {
                return RecordOutcome::Failed {
                    external_id,
                    reason,
                }
            }
        };
        // So is a billing user that carries the user's Alarm.com id.
        if existing.contains(&id) {
            let how = format!("matched by its Alarm.com id: billing user '{id}'");
            return self.matched(external_id, id, how, None);
        }
        let fields = user_fields(rep, options);
        if fields.first_name.trim().is_empty() && fields.last_name.trim().is_empty() {
            return RecordOutcome::Failed {
                external_id,
                reason: "the Alarm.com user has no name".to_owned(),
            };
        }
        let mut events = vec![NewEvent {
            event_type: types::BILLING_USER_CREATED.into(),
            subject_kind: "user".into(),
            subject_id: id.to_string(),
            connection_id: Some(self.import.connection_id),
            data: serde_json::json!({
                "record": fields,
                "source": "adc_import",
                "import_id": self.import.id,
                "adc_support_id": rep.support_id,
            }),
        }];
        if fields.can_login {
            events.push(NewEvent {
                event_type: types::BILLING_USER_CREDENTIALS_REQUIRED.into(),
                subject_kind: "user".into(),
                subject_id: id.to_string(),
                connection_id: Some(self.import.connection_id),
                data: serde_json::json!({
                    "user_id": id,
                    "login_name": fields.login_name,
                    "email": fields.email,
                    "first_name": fields.first_name,
                    "last_name": fields.last_name,
                    "reason": "imported from Alarm.com with the right to log in: send the user a username and password",
                    "import_id": self.import.id,
                }),
            });
        }
        self.imported(external_id, ImportWrite::User { id, fields }, events, None)
    }
}

/// The billing id of an imported customer.
pub fn customer_billing_id(id: AdcCustomerId) -> Result<BillingId, String> {
    BillingId::parse(&format!("adc-{id}"))
}

/// The key a user is imported under: its support id, else its login name.
pub fn user_external_id(rep: &AdcRep) -> String {
    match rep.support_id {
        Some(id) => id.to_string(),
        None => format!("login:{}", rep.login_name.trim()),
    }
}

/// The billing id of an imported user.
pub fn user_billing_id(rep: &AdcRep) -> Result<BillingId, String> {
    let raw = match rep.support_id {
        Some(id) => format!("adc-user-{id}"),
        None => format!("adc-user-{}", rep.login_name.trim()),
    };
    BillingId::parse(&raw).map_err(|why| format!("no billing id can be made of '{raw}': {why}"))
}

/// The customer mapping of the seed: names, commercial name, primary phone
/// and email, install address, rep, join date as sale date, two-way voice,
/// and the central station data points; plus the run's options.
pub fn customer_fields(
    c: &AdcCustomer,
    options: &CustomerOptions,
    rep: Option<BillingId>,
) -> CustomerFields {
    let business = !c.company_name.trim().is_empty();
    CustomerFields {
        kind: if business {
            CustomerKind::Business
        } else {
            CustomerKind::Person
        },
        first_name: c.first_name.trim().to_owned(),
        last_name: c.last_name.trim().to_owned(),
        business_name: c.company_name.trim().to_owned(),
        phone: c.phone.trim().to_owned(),
        email: c.email.trim().to_owned(),
        address1: c.install_address.street1.trim().to_owned(),
        address2: c.install_address.street2.trim().to_owned(),
        city: c.install_address.city.trim().to_owned(),
        state: c.install_address.state.trim().to_owned(),
        zip: c.install_address.zip.trim().to_owned(),
        office_location: options.office_location.clone(),
        tags: options.tags.clone(),
        rep_id: rep,
        sale_date: c.join_date.map(|d| d.date_naive()),
        two_way_voice: c.two_way_voice,
        account_number: c.central_station.account_number.trim().to_owned(),
        receiver_number: c.central_station.receiver_number.trim().to_owned(),
    }
}

/// The user mapping of the seed: user field, the rep address's names, login
/// name as username, email, address and phone (the cell phone); plus the
/// run's options.
pub fn user_fields(r: &AdcRep, options: &UserOptions) -> UserFields {
    UserFields {
        first_name: r.first_name.trim().to_owned(),
        last_name: r.last_name.trim().to_owned(),
        email: r.email.trim().to_owned(),
        phone: r.phone.trim().to_owned(),
        login_name: r.login_name.trim().to_owned(),
        active: options.active,
        can_login: options.can_login,
        permission_group: options.permission_group.clone(),
        tags: options.tags.clone(),
        address1: r.address.street1.trim().to_owned(),
        address2: r.address.street2.trim().to_owned(),
        city: r.address.city.trim().to_owned(),
        state: r.address.state.trim().to_owned(),
        zip: r.address.zip.trim().to_owned(),
        user_field: r.user_field.trim().to_owned(),
    }
}

/// Ends a run: records how it ended and puts its summary on the change feed,
/// once (a run ended twice, after a crash, says so once).
pub async fn finish_import(
    imports: &dyn ImportStore,
    dealer: &DealerId,
    id: ImportId,
    state: JobState,
    error: Option<&str>,
) -> StoreResult<bool> {
    let import = imports.import(dealer, id).await?;
    let c = import.counts;
    let summary = NewEvent {
        event_type: types::IMPORT_FINISHED.into(),
        subject_kind: "import".into(),
        subject_id: id.to_string(),
        connection_id: Some(import.connection_id),
        data: serde_json::json!({
            "import_id": id,
            "kind": import.spec.kind(),
            "state": state.as_str(),
            "counts": c,
            "error": error,
            "summary": format!(
                "Alarm.com {} import {}: {} seen, {} imported, {} already imported, {} filtered out, {} failed",
                import.spec.kind().as_str(),
                state.as_str(),
                c.seen, c.imported, c.already_imported, c.filtered_out, c.failed
            ),
        }),
    };
    imports.finish_import(dealer, id, state, summary).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adc::{AdcAddress, AdcCentralStationInfo, AdcRole, AdcSubDealer};

    fn customer(id: i64, sub_dealer: Option<i64>) -> AdcCustomer {
        AdcCustomer {
            customer_id: AdcCustomerId(id),
            dealer_customer_id: String::new(),
            login_name: "jdoe".into(),
            is_terminated: false,
            terminated_date: None,
            is_commitment: false,
            commitment_id: None,
            builder_program_id: None,
            sub_dealer: sub_dealer.map(|id| AdcSubDealer {
                id,
                name: format!("Branch {id}"),
            }),
            first_name: " Jane ".into(),
            last_name: "Doe".into(),
            company_name: String::new(),
            email: "jane@example.com".into(),
            phone: "5550100".into(),
            install_address: AdcAddress {
                street1: "1 Main St".into(),
                street2: "Apt 2".into(),
                city: "Springfield".into(),
                state: "IL".into(),
                zip: "62701".into(),
                country_id: "USA".into(),
            },
            time_zone: String::new(),
            panel_type: "IQPanel2".into(),
            modem_serial_number: String::new(),
            service_plan: None,
            add_on_features: vec!["TwoWayVoice".into()],
            sales_rep_login_name: "Rep.One".into(),
            sales_rep_support_id: Some(300_001),
            installer_login_name: String::new(),
            install_type: String::new(),
            central_station: AdcCentralStationInfo {
                account_number: "A123".into(),
                receiver_number: "8005550100".into(),
            },
            two_way_voice: true,
            join_date: Some("2024-03-05T15:00:00Z".parse().unwrap()),
            created_date: None,
            last_modified_date: None,
        }
    }

    fn rep(support_id: i64, roles: &[&str], sub_dealer: Option<i64>) -> AdcRep {
        AdcRep {
            support_id: Some(support_id),
            login_name: format!("rep{support_id}"),
            first_name: "Rick".into(),
            last_name: "Rep".into(),
            email: "rick@example.com".into(),
            phone: "5550199".into(),
            address: AdcAddress {
                street1: "9 Elm".into(),
                city: "Dayton".into(),
                state: "OH".into(),
                zip: "45402".into(),
                ..Default::default()
            },
            roles: roles
                .iter()
                .enumerate()
                .map(|(i, n)| AdcRole {
                    id: i as i64 + 1,
                    name: (*n).into(),
                })
                .collect(),
            sub_dealer: sub_dealer.map(|id| AdcSubDealer {
                id,
                name: "B".into(),
            }),
            active: true,
            user_field: "badge 7".into(),
        }
    }

    #[test]
    fn customer_filters_must_all_match() {
        let f = CustomerFilters {
            customer_ids: vec![AdcCustomerId(1), AdcCustomerId(2)],
            sub_dealer_ids: vec![201, 202],
        };
        assert!(f.check(&customer(1, Some(201))).is_ok());
        assert!(f.check(&customer(2, Some(202))).is_ok());
        assert!(f.check(&customer(3, Some(201))).is_err(), "id not listed");
        assert!(
            f.check(&customer(1, Some(203))).is_err(),
            "other sub-dealer"
        );
        assert!(f.check(&customer(1, None)).is_err(), "no sub-dealer");
        assert!(CustomerFilters::default().check(&customer(9, None)).is_ok());
        assert!(f.check_id(AdcCustomerId(3)).is_err());
    }

    #[test]
    fn user_filters_take_any_role_or_sub_dealer() {
        let f = UserFilters {
            support_ids: vec![],
            roles: vec!["sales rep".into(), "5".into()],
            sub_dealer_ids: vec![201],
        };
        assert!(f.check(&rep(1, &["Sales Rep"], Some(201))).is_ok());
        assert!(f.check(&rep(1, &["Technician"], Some(201))).is_err());
        assert!(f.check(&rep(1, &["Sales Rep"], Some(202))).is_err());
        let by_id = rep(1, &["A", "B", "C", "D", "Office"], Some(201));
        assert!(f.check(&by_id).is_ok(), "role id 5");
        let f = UserFilters {
            support_ids: vec![7],
            ..Default::default()
        };
        assert!(f.check(&rep(7, &[], None)).is_ok());
        assert!(f.check(&rep(8, &[], None)).is_err());
    }

    #[test]
    fn the_customer_mapping_is_complete() {
        let options = CustomerOptions {
            office_location: "Dayton".into(),
            tags: vec!["adc".into()],
            default_rep: None,
            dry_run: false,
        };
        let rep = BillingId::parse("U1").unwrap();
        let f = customer_fields(&customer(5, None), &options, Some(rep.clone()));
        assert_eq!(f.kind, CustomerKind::Person);
        assert_eq!(
            (f.first_name.as_str(), f.last_name.as_str()),
            ("Jane", "Doe")
        );
        assert_eq!(f.phone, "5550100");
        assert_eq!(f.email, "jane@example.com");
        assert_eq!(
            (
                f.address1.as_str(),
                f.city.as_str(),
                f.state.as_str(),
                f.zip.as_str()
            ),
            ("1 Main St", "Springfield", "IL", "62701")
        );
        assert_eq!(f.rep_id, Some(rep));
        assert_eq!(f.sale_date, chrono::NaiveDate::from_ymd_opt(2024, 3, 5));
        assert!(f.two_way_voice);
        assert_eq!(f.account_number, "A123");
        assert_eq!(f.receiver_number, "8005550100");
        assert_eq!(f.office_location, "Dayton");
        assert_eq!(f.tags, vec!["adc".to_owned()]);
        let mut business = customer(6, None);
        business.company_name = "Acme".into();
        let f = customer_fields(&business, &options, None);
        assert_eq!(f.kind, CustomerKind::Business);
        assert_eq!(f.business_name, "Acme");
    }

    #[test]
    fn the_user_mapping_is_complete() {
        let options = UserOptions {
            active: false,
            can_login: true,
            permission_group: "Sales".into(),
            tags: vec!["adc".into()],
            dry_run: false,
        };
        let f = user_fields(&rep(42, &["Sales Rep"], None), &options);
        assert_eq!(f.login_name, "rep42");
        assert_eq!(
            (f.first_name.as_str(), f.last_name.as_str()),
            ("Rick", "Rep")
        );
        assert_eq!(f.email, "rick@example.com");
        assert_eq!(f.phone, "5550199");
        assert_eq!((f.address1.as_str(), f.city.as_str()), ("9 Elm", "Dayton"));
        assert_eq!(f.user_field, "badge 7");
        assert!(!f.active && f.can_login);
        assert_eq!(f.permission_group, "Sales");
    }

    #[test]
    fn reps_match_imported_users_then_logins_then_the_default() {
        let u = |s: &str| BillingId::parse(s).unwrap();
        let mut m = RepMatcher {
            by_support_id: [("300001".to_owned(), u("adc-user-300001"))].into(),
            by_login: [("rep.one".to_owned(), u("U-LOGIN"))].into(),
            default_rep: Some(u("DEFAULT")),
        };
        let c = customer(1, None);
        assert_eq!(m.rep_of(&c).0, Some(u("adc-user-300001")));
        m.by_support_id.clear();
        assert_eq!(m.rep_of(&c).0, Some(u("U-LOGIN")));
        m.by_login.clear();
        assert_eq!(m.rep_of(&c).0, Some(u("DEFAULT")));
        m.default_rep = None;
        assert_eq!(m.rep_of(&c).0, None);
    }

    #[test]
    fn a_dealer_customer_id_naming_a_billing_customer_is_a_match() {
        let mut c = customer(10_000_007, None);
        let none = HashMap::new();
        assert_eq!(match_by_dealer_customer_id(&c, &none), None, "no id");
        c.dealer_customer_id = " C-42 ".into();
        assert_eq!(match_by_dealer_customer_id(&c, &none), None, "unknown id");
        let unlinked: HashMap<String, Option<String>> = [("C-42".to_owned(), None)].into();
        let m = match_by_dealer_customer_id(&c, &unlinked).unwrap();
        assert_eq!(m.billing_id.as_str(), "C-42");
        assert!(m.how.contains("DealerCustomerId") && m.how.contains("link is recorded"));
        let link = m.link.unwrap();
        assert_eq!(link.external_id, "10000007");
        assert_eq!(link.origin, IspAccountOrigin::Recovered);
        let own: HashMap<String, Option<String>> =
            [("C-42".to_owned(), Some("10000007".to_owned()))].into();
        assert_eq!(match_by_dealer_customer_id(&c, &own).unwrap().link, None);
        let other: HashMap<String, Option<String>> =
            [("C-42".to_owned(), Some("10000008".to_owned()))].into();
        let m = match_by_dealer_customer_id(&c, &other).unwrap();
        assert_eq!(m.link, None);
        assert!(m.how.contains("10000008"), "{}", m.how);
    }

    #[test]
    fn filter_ids_are_checked_against_the_choices() {
        let subs = [AdcSubDealer {
            id: 201,
            name: "North".into(),
        }];
        assert!(unknown_filter_ids(&[201], &subs).is_empty());
        assert_eq!(unknown_filter_ids(&[201, 999], &subs), vec!["999"]);
        let roles = [AdcRole {
            id: 3,
            name: "Sales Rep".into(),
        }];
        let asked = [
            "sales rep".to_owned(),
            "3".into(),
            "Wizard".into(),
            "7".into(),
        ];
        assert_eq!(unknown_roles(&asked, &roles), vec!["'Wizard'", "'7'"]);
    }

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

    #[test]
    fn specs_round_trip_through_their_parts() {
        let spec = ImportSpec::Users {
            filters: UserFilters {
                support_ids: vec![1],
                roles: vec!["Manager".into()],
                sub_dealer_ids: vec![],
            },
            options: UserOptions::default(),
        };
        let (f, o) = spec.parts();
        assert_eq!(
            ImportSpec::from_parts(ImportKind::Users, f, o).unwrap(),
            spec
        );
        assert_eq!(
            ItemOutcome::parse("filtered_out"),
            Some(ItemOutcome::FilteredOut)
        );
    }
}
