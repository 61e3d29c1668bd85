//! The jobs of the automatic syncs (S18, S19): the Auto Sync push of a linked
//! billing record, and applying a stored Stages callback. Both read and write
//! one Stages record, so both take that record's serial key.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::connection::{ConnectionId, ConnectionStatus};
use crate::jobs::{
    new_job, stages_record_key, summary, Attempt, Done, HasJobPorts, JobError, JobKind, NewJob,
    ProcessedCallback, RunJob,
};
use crate::link::{LinkId, LinkKind};
use crate::operations::OperationError;
use crate::stages::{StagesCallback, StagesCallbackEvent};
use crate::tenancy::DealerId;

/// Who enqueues Auto Sync pushes.
pub const AUTO_SYNC_CREATED_BY: &str = "system:auto_sync";
/// Who enqueues applied Stages callbacks.
pub const CALLBACK_CREATED_BY: &str = "system:stages";

/// The rule "Auto Sync is on for a link": its connection is active with
/// `auto_sync` on. The billing store applies it when it enqueues pushes.
pub fn auto_sync_on(status: ConnectionStatus, auto_sync: bool) -> bool {
    auto_sync && status == ConnectionStatus::Active
}

/// A Stages record that a job reads and writes: its serial key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagesRecord {
    pub connection_id: ConnectionId,
    pub kind: LinkKind,
    pub external_id: String,
}

impl StagesRecord {
    fn key(&self) -> String {
        stages_record_key(self.connection_id, self.kind, &self.external_id)
    }
}

/// Auto Sync (S19): push the fields billing changed on a linked record to
/// Stages. Enqueued in the transaction of the billing write; quick edits
/// coalesce into one queued push (`auto_sync:<link id>`), which reads the
/// latest values when it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoSyncPush {
    pub link_id: LinkId,
    /// The link's Stages record: the serial key, known when the push is
    /// enqueued and kept in the job row, not in the payload.
    #[serde(skip)]
    pub stages_record: Option<StagesRecord>,
}

impl JobKind for AutoSyncPush {
    const KIND: &'static str = "auto_sync_push";
    const MAX_ATTEMPTS: u32 = 8;

    fn unique_key(&self) -> Option<String> {
        Some(format!("auto_sync:{}", self.link_id))
    }

    /// One at a time with the callbacks about that Stages record.
    fn serial_key(&self) -> Option<String> {
        self.stages_record.as_ref().map(StagesRecord::key)
    }
}

impl AutoSyncPush {
    pub fn new(link_id: LinkId, stages_record: StagesRecord) -> Self {
        Self {
            link_id,
            stages_record: Some(stages_record),
        }
    }

    /// The push of a link whose connection has Auto Sync on (see
    /// [`auto_sync_on`]), or nothing.
    pub fn for_link(
        link_id: LinkId,
        stages_record: StagesRecord,
        status: ConnectionStatus,
        auto_sync: bool,
    ) -> Option<Self> {
        auto_sync_on(status, auto_sync).then(|| Self::new(link_id, stages_record))
    }

    pub fn new_job(&self, dealer: &DealerId, run_at: DateTime<Utc>) -> NewJob {
        new_job(dealer, self, AUTO_SYNC_CREATED_BY, run_at)
    }
}

#[async_trait]
impl<C: HasJobPorts + ?Sized> RunJob<C> for AutoSyncPush {
    async fn run(self, ctx: &C, attempt: Attempt<'_>) -> Result<Done, JobError> {
        let ports = ctx.job_ports();
        let (outcome, settlement) =
            super::auto_sync_push(ports.linking, &attempt.job.dealer, self.link_id).await?;
        Ok(summary(&outcome)?.settling(settlement))
    }
}

/// Apply a Stages callback, stored in the inbox when it arrived, to the
/// billing records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyStagesCallback {
    pub connection_id: ConnectionId,
    pub event_id: String,
    /// The Stages record the callback is about (the serial key); kept in the
    /// job row, not in the payload.
    #[serde(skip)]
    pub stages_record: Option<StagesRecord>,
}

impl JobKind for ApplyStagesCallback {
    const KIND: &'static str = "stages_callback";
    const MAX_ATTEMPTS: u32 = 8;

    /// One at a time with the Auto Sync pushes of the same Stages record.
    fn serial_key(&self) -> Option<String> {
        self.stages_record.as_ref().map(StagesRecord::key)
    }
}

impl ApplyStagesCallback {
    pub fn new(connection_id: ConnectionId, callback: &StagesCallback) -> Self {
        let record = |kind, external_id: &str| StagesRecord {
            connection_id,
            kind,
            external_id: external_id.to_owned(),
        };
        let stages_record = match &callback.event {
            StagesCallbackEvent::SiteUpdated { site_no, .. } => {
                Some(record(LinkKind::Site, site_no))
            }
            StagesCallbackEvent::DeviceUpdated { device_id, .. } => {
                Some(record(LinkKind::System, device_id))
            }
            StagesCallbackEvent::SendToBilling { .. } => None,
        };
        Self {
            connection_id,
            event_id: callback.event_id.clone(),
            stages_record,
        }
    }

    pub fn new_job(&self, dealer: &DealerId, run_at: DateTime<Utc>) -> NewJob {
        new_job(dealer, self, CALLBACK_CREATED_BY, run_at)
    }
}

#[async_trait]
impl<C: HasJobPorts + ?Sized> RunJob<C> for ApplyStagesCallback {
    async fn run(self, ctx: &C, attempt: Attempt<'_>) -> Result<Done, JobError> {
        let ports = ctx.job_ports();
        let dealer = &attempt.job.dealer;
        let stored = ports
            .inbox
            .callback(dealer, self.connection_id, &self.event_id)
            .await
            .map_err(OperationError::from)?;
        let callback: StagesCallback = serde_json::from_value(stored)
            .map_err(|e| JobError::Permanent(format!("stored callback does not parse: {e}")))?;
        let mut outcome = super::apply_stages_callback(
            ports.linking,
            ports.events,
            dealer,
            self.connection_id,
            &callback,
        )
        .await?;
        let processed = ProcessedCallback {
            dealer: dealer.clone(),
            connection_id: self.connection_id,
            event_id: self.event_id,
            outcome: format!("{}: {}", outcome.outcome.as_str(), outcome.detail),
        };
        let settlement = outcome.settlement.take();
        Ok(summary(&outcome)?.settling(settlement).marking(processed))
    }
}
