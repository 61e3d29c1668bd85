//! Work that outlives a request: a durable queue with leases. Anything that
//! talks to an upstream after the caller's answer is a job, written in the same
//! transaction as the change that causes it (outbox).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::tenancy::DealerId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl JobId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    /// Failed for good (a permanent error).
    Failed,
    Cancelled,
    /// Out of attempts after transient errors; kept with its last error, can be retried by hand.
    Dead,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Running,
            Self::Succeeded,
            Self::Failed,
            Self::Cancelled,
            Self::Dead,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Cancelled | Self::Dead
        )
    }
}

/// Job kinds, as stored.
pub mod kinds {
    pub const RECONCILE: &str = "reconcile";
    /// Push a linked billing record's changed fields to Stages (Auto Sync outbox).
    pub const AUTO_SYNC_PUSH: &str = "auto_sync_push";
    /// Apply a stored Stages callback to the billing records.
    pub const STAGES_CALLBACK: &str = "stages_callback";
    /// Deliver one event to one webhook subscription.
    pub const WEBHOOK_DELIVERY: &str = "webhook_delivery";
    /// Run (or resume) an Alarm.com import.
    pub const ADC_IMPORT: &str = "adc_import";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub dealer: DealerId,
    pub kind: String,
    pub payload: serde_json::Value,
    pub state: JobState,
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_at: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub progress_done: u64,
    pub progress_total: Option<u64>,
    pub summary: Option<serde_json::Value>,
    pub last_error: Option<String>,
    /// At most one queued job per key, and one running at a time (edits coalesce).
    pub unique_key: Option<String>,
    /// Jobs of one serial key never run at the same time, whatever their kind
    /// (an Auto Sync push and a callback of the same Stages record).
    pub serial_key: Option<String>,
    /// Whoever asked for it (a user id or `system`).
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub id: JobId,
    pub dealer: DealerId,
    pub kind: String,
    pub payload: serde_json::Value,
    pub max_attempts: u32,
    pub run_at: DateTime<Utc>,
    pub unique_key: Option<String>,
    /// See [`Job::serial_key`]; [`stages_record_key`] for work on a Stages record.
    pub serial_key: Option<String>,
    pub created_by: String,
}

/// The serial key of work that reads and writes one Stages record: a push of
/// a link and a callback about its Stages record must not interleave, or a
/// callback that read Stages just before the push landed writes the older
/// value into billing.
pub fn stages_record_key(
    connection: crate::connection::ConnectionId,
    kind: crate::link::LinkKind,
    external_id: &str,
) -> String {
    format!("stages:{connection}:{}:{external_id}", kind.as_str())
}

/// How a failed attempt ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobFailure {
    /// Try again at this time (the store turns it into `Dead` when attempts are used up).
    Retry { error: String, at: DateTime<Utc> },
    /// The upstream is down (unreachable, timing out, 5xx): try again at this
    /// time without using up an attempt, so an outage leaves a backlog that
    /// drains when the upstream returns rather than dead jobs.
    Wait { error: String, at: DateTime<Utc> },
    /// Do not try again.
    Permanent { error: String },
}

/// Exponential backoff with full jitter: a delay in `[0, min(cap, base * 2^attempt))`.
/// `unit` in `[0, 1)` is the random draw, passed in so this stays deterministic to test.
pub fn backoff(attempt: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let factor = 2f64.powi(attempt.min(30) as i32);
    let ceiling = (base.num_milliseconds() as f64 * factor).min(cap.num_milliseconds() as f64);
    Duration::milliseconds((ceiling * unit.clamp(0.0, 1.0)) as i64)
}

/// The wait before trying a job again while its upstream is down. Attempts
/// are not counted then, so the delay grows with the job's age instead: half
/// its age, between `base` and `cap`, jittered over its upper half.
pub fn outage_delay(age: Duration, base: Duration, cap: Duration, unit: f64) -> Duration {
    let ceiling = (age.num_milliseconds() / 2)
        .max(base.num_milliseconds())
        .min(cap.num_milliseconds().max(base.num_milliseconds()));
    Duration::milliseconds((ceiling as f64 * (0.5 + unit.clamp(0.0, 1.0) / 2.0)) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outage_delay_grows_with_age_within_bounds() {
        let (base, cap) = (Duration::seconds(1), Duration::seconds(300));
        let at = |age_secs, unit| outage_delay(Duration::seconds(age_secs), base, cap, unit);
        assert_eq!(at(0, 1.0), base, "never under the base");
        assert_eq!(at(60, 1.0), Duration::seconds(30));
        assert_eq!(at(60, 0.0), Duration::seconds(15), "jitter keeps half");
        assert_eq!(at(86_400, 1.0), cap, "never over the cap");
        assert!(at(100, 0.3) < at(400, 0.3));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::milliseconds(100);
        let cap = Duration::seconds(10);
        assert_eq!(backoff(0, base, cap, 0.999).num_milliseconds(), 99);
        assert_eq!(backoff(3, base, cap, 0.5).num_milliseconds(), 400);
        assert_eq!(backoff(20, base, cap, 1.0), cap);
        assert_eq!(backoff(5, base, cap, 0.0), Duration::zero());
    }

    #[test]
    fn states_round_trip() {
        for s in [
            "queued",
            "running",
            "succeeded",
            "failed",
            "cancelled",
            "dead",
        ] {
            assert_eq!(JobState::parse(s).unwrap().as_str(), s);
        }
        assert!(JobState::Dead.is_finished());
        assert!(!JobState::Running.is_finished());
    }
}
