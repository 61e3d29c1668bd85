//! Automatic migration (S20): when a Stages connection first works, the
//! billing ids an older integration left in Stages are taken over without
//! anyone asking. "Works" means a call to Stages with the connection's
//! credentials went through: the probe made when an admin stores the dealer
//! credential, or a passing `:test`. The migration is the ordinary reconcile
//! job (B4), queued once per connection; `migrate_on_connect: false` turns it off.

use serde::Serialize;

use crate::connection::{AuthMode, Connection, ProviderKind};
use crate::jobs::{Job, JobState};
use crate::operations::OperationError;
use crate::reconcile::ReconcileJob;
use crate::stages::StagesConnector;
use crate::store::ConnectionStore;
use crate::tenancy::{Caller, Role};
use crate::upstream::{stages_client, ActingAs};

/// Where a connection's migration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationState {
    /// On, but the connection has not worked yet.
    Pending,
    Queued,
    Running,
    /// The reconcile ran; its summary (on the job) says what it took over.
    Done,
    /// The reconcile failed, died or was cancelled; the next credential set
    /// that works, or the next passing `:test`, queues it again.
    Failed,
    /// `migrate_on_connect` is off and no migration was queued.
    Off,
}

impl MigrationState {
    pub fn of(connection: &Connection) -> Self {
        match (&connection.migration, connection.migrate_on_connect) {
            (None, true) => Self::Pending,
            (None, false) => Self::Off,
            (Some(m), _) => match m.state {
                JobState::Queued => Self::Queued,
                JobState::Running => Self::Running,
                JobState::Succeeded => Self::Done,
                JobState::Failed | JobState::Dead | JobState::Cancelled => Self::Failed,
            },
        }
    }
}

/// Whether this connection could have a migration queued now; the store
/// decides for certain (another replica may have armed it meanwhile).
fn armable(connection: &Connection) -> bool {
    connection.provider == ProviderKind::Stages
        && connection.migrate_on_connect
        && matches!(
            MigrationState::of(connection),
            MigrationState::Pending | MigrationState::Failed
        )
}

/// Queues the migration of a connection that has just been seen working,
/// as `caller` (the reconcile acts with their credentials). Only a caller who
/// may reconcile arms it: a viewer's passing `:test` does not.
pub async fn arm(
    connections: &dyn ConnectionStore,
    caller: &Caller,
    connection: &Connection,
) -> Result<Option<Job>, OperationError> {
    if !armable(connection) || !caller.has(Role::Operator) {
        return Ok(None);
    }
    let job = ReconcileJob {
        connection_id: connection.id,
        dry_run: false,
        repair: false,
    }
    .new_job(caller);
    let queued = connections
        .start_migration(&caller.dealer, connection.id, job)
        .await?;
    if let Some(job) = &queued {
        tracing::info!(connection_id = %connection.id, job_id = %job.id, "migration queued");
    }
    Ok(queued)
}

/// After an admin stored the dealer credential of `connection`: when a
/// migration could be queued, checks the credential with one cheap call to
/// Stages and, if it went through, queues the migration. Never fails the
/// caller's request: a failed probe leaves the migration pending (a passing
/// `:test` queues it later) and is logged.
pub async fn after_dealer_credentials(
    connections: &dyn ConnectionStore,
    stages: &dyn StagesConnector,
    caller: &Caller,
    connection: &Connection,
) -> Option<Job> {
    // In user mode the migration needs a user's own credential, not this one.
    if connection.auth_mode != AuthMode::Dealer || !armable(connection) {
        return None;
    }
    let acting = ActingAs::Caller(caller);
    let probe = match stages_client(connections, stages, acting, connection).await {
        Ok(api) => api.ping().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(why) = probe {
        tracing::info!(connection_id = %connection.id, %why, "credentials stored; the migration waits until Stages accepts them");
        return None;
    }
    match arm(connections, caller, connection).await {
        Ok(job) => job,
        Err(e) => {
            tracing::warn!(connection_id = %connection.id, error = %e, "could not queue the migration");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{test_connection, MigrationJob};
    use crate::jobs::JobId;

    fn connection(on: bool, job: Option<JobState>) -> Connection {
        Connection {
            migrate_on_connect: on,
            migration: job.map(|state| MigrationJob {
                job_id: JobId::new(),
                state,
            }),
            ..test_connection()
        }
    }

    #[test]
    fn the_state_follows_the_setting_then_the_job() {
        assert_eq!(
            MigrationState::of(&connection(true, None)),
            MigrationState::Pending
        );
        assert_eq!(
            MigrationState::of(&connection(false, None)),
            MigrationState::Off
        );
        for (job, state) in [
            (JobState::Queued, MigrationState::Queued),
            (JobState::Running, MigrationState::Running),
            (JobState::Succeeded, MigrationState::Done),
            (JobState::Failed, MigrationState::Failed),
            (JobState::Dead, MigrationState::Failed),
            (JobState::Cancelled, MigrationState::Failed),
        ] {
            // A migration queued before the setting was turned off still shows.
            for on in [true, false] {
                assert_eq!(MigrationState::of(&connection(on, Some(job))), state);
            }
        }
    }

    #[test]
    fn only_a_stages_connection_that_is_on_and_not_migrated_is_armed() {
        assert!(armable(&connection(true, None)));
        assert!(armable(&connection(true, Some(JobState::Dead))));
        assert!(!armable(&connection(false, None)));
        assert!(!armable(&connection(false, Some(JobState::Failed))));
        assert!(!armable(&connection(true, Some(JobState::Queued))));
        assert!(!armable(&connection(true, Some(JobState::Succeeded))));
        let mut isp = connection(true, None);
        isp.provider = ProviderKind::AlarmCom;
        assert!(!armable(&isp));
    }
}
