//! Unlink (S8, S13): a link goes, both records stay as they are.

use crate::audit::NewAuditEntry;
use crate::link::{Link, LinkId};
use crate::operations::OperationError;
use crate::tenancy::Caller;

use super::{store_not_found, LinkingPorts};

/// Unlink (S8, S13): the link (and a site link's system links) goes; both
/// records stay as they are, in Stages too. Remembered as deliberate so a
/// reconcile does not silently link them again.
pub async fn unlink(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    link_id: LinkId,
) -> Result<Vec<Link>, OperationError> {
    let current = ports
        .links
        .link(&caller.dealer, link_id)
        .await
        .map_err(store_not_found("no such link"))?;
    let entry = NewAuditEntry {
        actor: caller.user.0.clone(),
        action: "unlink".into(),
        connection_id: Some(current.connection_id),
        kind: current.kind.as_str().into(),
        billing_id: Some(current.billing_id.to_string()),
        external_id: Some(current.external_id.clone()),
        before: Some(
            serde_json::json!({"link_id": current.id, "external_id": current.external_id}),
        ),
        after: None,
    };
    Ok(ports
        .links
        .unlink(&caller.dealer, &[current.id], &caller.user.0, vec![entry])
        .await?)
}
