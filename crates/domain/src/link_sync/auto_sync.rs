//! The Auto Sync push (S19) of one link: run by the job a billing change
//! enqueued, it settles the link (`settle`) acting with the connection's
//! dealer credential, when the connection has Auto Sync on.

use serde::Serialize;

use crate::audit;
use crate::field_issues::LinkSettlement;
use crate::link::LinkId;
use crate::linking::LinkingPorts;
use crate::operations::OperationError;
use crate::store::StoreError;
use crate::sync::Values;
use crate::tenancy::DealerId;
use crate::upstream::stages_client_with;

use super::jobs::auto_sync_on;
use super::settle::settle;
use super::sides::sides_with;
use super::write::By;

/// What an Auto Sync push did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutoSyncOutcome {
    pub link_id: LinkId,
    /// Fields written to Stages.
    pub pushed: Values,
    /// Fields Stages changed on its own, written to billing.
    pub pulled: Values,
    /// Fields changed on both sides, held as conflicts.
    pub held: Vec<String>,
    /// Fields Stages refused.
    pub refused: Vec<String>,
    /// Why nothing was pushed, when nothing was.
    pub skipped: Option<String>,
}

/// The Auto Sync push (S19) of one link, run by a job the billing change
/// enqueued: the link's two sides are settled by `sync::decide`, so billing's
/// changes go to Stages, Stages' own changes that its callbacks carry come to
/// billing, and a field both changed is held (or settled by the connection's
/// policy). Safe to repeat.
pub async fn auto_sync_push(
    ports: LinkingPorts<'_>,
    dealer: &DealerId,
    link_id: LinkId,
) -> Result<(AutoSyncOutcome, Option<LinkSettlement>), OperationError> {
    let skipped = |why: &str| {
        let outcome = AutoSyncOutcome {
            link_id,
            pushed: Values::new(),
            pulled: Values::new(),
            held: Vec::new(),
            refused: Vec::new(),
            skipped: Some(why.to_owned()),
        };
        (outcome, None)
    };
    // One read of everything on our side: most pushes run in a burst.
    let read = match ports.links.link_to_settle(dealer, link_id).await {
        Ok(read) => read,
        Err(StoreError::NotFound) => return Ok(skipped("the link no longer exists")),
        Err(e) => return Err(e.into()),
    };
    let connection = read.connection;
    if !auto_sync_on(connection.status, connection.auto_sync) {
        return Ok(skipped("auto sync is off for this connection"));
    }
    let api = stages_client_with(ports.stages, &connection, read.dealer_credential)?;
    let billing = read.billing.ok_or(StoreError::NotFound)?;
    let sides = sides_with(read.link, connection, api, billing).await?;
    let by = By {
        source: "auto_sync",
        action: "auto_sync",
        actor: audit::AUTO_SYNC_ACTOR,
    };
    let (settled, settlement) = settle(ports, dealer, &sides, true, None, by).await?;
    Ok((
        AutoSyncOutcome {
            link_id,
            pushed: settled.pushed,
            pulled: settled.pulled,
            held: settled.held,
            refused: settled.refused,
            skipped: None,
        },
        Some(settlement),
    ))
}
