//! Who holds a record (S6): claims in the link table, taken before anything
//! is written to Stages so that two links never hold one record, and the
//! billing ids Stages records carry: the 409 for one that carries another
//! record's id, writing one, and putting back what an operation wrote.

use crate::billing::BillingId;
use crate::connection::ConnectionId;
use crate::link::{Link, LinkId, LinkKind, NewLink};
use crate::operations::{NextStep, OperationError};
use crate::stages::{
    DeviceId, SiteNo, StagesApi, StagesDevice, StagesDevicePatch, StagesError, StagesSite,
    StagesSitePatch,
};
use crate::store::{LinkStore, StoreError};
use crate::tenancy::Caller;

use super::{link_on, LinkingPorts};

/// Claims records in the link table before anything is written to Stages. A
/// record held by another link or claim is a 409 naming that link.
pub(crate) async fn claim(
    links: &dyn LinkStore,
    caller: &Caller,
    claims: Vec<NewLink>,
) -> Result<Vec<Link>, OperationError> {
    claim_for(links, &caller.dealer, claims).await
}

pub(crate) async fn claim_for(
    links: &dyn LinkStore,
    dealer: &crate::tenancy::DealerId,
    claims: Vec<NewLink>,
) -> Result<Vec<Link>, OperationError> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    links
        .claim_links(
            dealer,
            claims,
            chrono::Duration::seconds(crate::link::CLAIM_LEASE_SECS),
        )
        .await
        .map_err(claim_lost)
}

/// A claim refused (or lost after its lease): the existing `already_linked` conflict.
pub(crate) fn claim_lost(e: StoreError) -> OperationError {
    match e {
        StoreError::Conflict(message) => OperationError::Conflict {
            code: "already_linked",
            message,
        },
        other => other.into(),
    }
}

/// Drops own claims; a failure is logged (the lease frees them anyway).
pub(crate) async fn release_claims(links: &dyn LinkStore, caller: &Caller, ids: &[LinkId]) {
    release_claims_for(links, &caller.dealer, ids).await
}

pub(crate) async fn release_claims_for(
    links: &dyn LinkStore,
    dealer: &crate::tenancy::DealerId,
    ids: &[LinkId],
) {
    if ids.is_empty() {
        return;
    }
    if let Err(e) = links.release_links(dealer, ids).await {
        tracing::warn!(error = %e, "could not release claims; their lease will");
    }
}

/// The 409 for a Stages record that carries another record's billing id,
/// with the way out: the link that holds it (released, it lets go), or, when
/// no link of this connection holds it, how to clear it.
#[allow(clippy::too_many_arguments)]
pub(super) async fn claimed_elsewhere(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    kind: LinkKind,
    id: &str,
    carried: &Option<String>,
    ours: &BillingId,
) -> Result<Option<OperationError>, OperationError> {
    let Some(b) = carried
        .as_deref()
        .filter(|b| !b.is_empty() && *b != ours.as_str())
    else {
        return Ok(None);
    };
    let what = match kind {
        LinkKind::Site => "Stages site",
        LinkKind::System => "Stages device",
    };
    let holder = match BillingId::parse(b) {
        Ok(other) => link_on(ports.links, caller, connection_id, kind, &other).await?,
        Err(_) => None,
    };
    let (advice, next) = match holder {
        Some(l) if l.external_id == id => (
            format!(
                "link {} holds it; delete that link with release to clear the billing id in Stages, then link again",
                l.id
            ),
            Some(NextStep::ReleaseLink(l.id)),
        ),
        // Only Stages' copy is stale: no request here clears it.
        Some(l) => (
            format!(
                "that record is linked to {what} '{}' here, so this is a stale copy: clear the billing id of '{id}' in Stages",
                l.external_id
            ),
            None,
        ),
        None => (
            format!(
                "no link of this connection holds that record (an older integration's id, or a link deleted without release): link '{b}' to '{id}' again and delete that link with release, or clear the billing id in Stages"
            ),
            Some(NextStep::ReleaseTheLinkMadeAgain),
        ),
    };
    Ok(Some(OperationError::ClaimedInStages {
        message: format!("{what} '{id}' carries billing id '{b}' of another record; {advice}"),
        next,
    }))
}

/// Puts back the billing id a site had before this request wrote its own (best effort).
pub(super) async fn restore_site_billing_id(api: &dyn StagesApi, before: &StagesSite) {
    let patch = StagesSitePatch {
        billing_id: Some(before.billing_id.clone().unwrap_or_default()),
        ..Default::default()
    };
    if let Err(e) = api.update_site(&before.site_no, &patch).await {
        tracing::warn!(error = %e, site_no = %before.site_no, "could not put back a billing id");
    }
}

pub(super) async fn restore_device_billing_id(api: &dyn StagesApi, before: &StagesDevice) {
    let patch = StagesDevicePatch {
        billing_id: Some(before.fields.billing_id.clone().unwrap_or_default()),
        ..Default::default()
    };
    if let Err(e) = api.update_device(&before.device_id, &patch).await {
        tracing::warn!(error = %e, device = %before.device_id, "could not put back a billing id");
    }
}

/// Writes one billing id to a Stages site or device (`""` clears it);
/// `external_id` is a link's, or one Stages has answered for.
pub(crate) async fn set_billing_id(
    api: &dyn StagesApi,
    kind: LinkKind,
    external_id: &str,
    billing_id: &str,
) -> Result<(), StagesError> {
    match kind {
        LinkKind::Site => api
            .update_site(
                &SiteNo::known(external_id),
                &StagesSitePatch {
                    billing_id: Some(billing_id.to_owned()),
                    ..Default::default()
                },
            )
            .await
            .map(drop),
        LinkKind::System => api
            .update_device(
                &DeviceId::known(external_id),
                &StagesDevicePatch {
                    billing_id: Some(billing_id.to_owned()),
                    ..Default::default()
                },
            )
            .await
            .map(drop),
    }
}

/// Puts back, last first, the billing ids an operation changed in Stages
/// (best effort); returns what could not be put back.
pub(crate) async fn put_back(
    api: &dyn StagesApi,
    written: &[(LinkKind, String, String)],
) -> Vec<String> {
    let mut left = Vec::new();
    for (kind, external_id, billing_id) in written.iter().rev() {
        if let Err(e) = set_billing_id(api, *kind, external_id, billing_id).await {
            tracing::warn!(error = %e, record = %external_id, "could not put back a billing id");
            let what = match kind {
                LinkKind::Site => "Stages site",
                LinkKind::System => "Stages device",
            };
            left.push(format!(
                "billing id '{billing_id}' of {what} '{external_id}'"
            ));
        }
    }
    left
}
