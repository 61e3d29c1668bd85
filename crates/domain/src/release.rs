//! Releasing a site (S8, S13): an unlink that also clears the billing ids the
//! link wrote into Stages. A plain unlink leaves them, so the Stages records
//! still look taken (`claimed_in_stages`) and never list as unlinked; after a
//! release they can be linked to any billing record.

use crate::audit::NewAuditEntry;
use crate::link::{Link, LinkFilter, LinkId, LinkKind};
use crate::linking::{put_back, set_billing_id, LinkingPorts};
use crate::operations::{upstream, OperationError};
use crate::stages::{StagesApi, StagesError};
use crate::store::{PageRequest, StoreError};
use crate::tenancy::Caller;
use crate::upstream::{stages_client, ActingAs};

/// What one released link's Stages record carried.
struct Held {
    link: Link,
    /// The billing id the record carried (none: none, or the record is gone).
    carried: Option<String>,
    exists: bool,
}

impl Held {
    /// Only the link's own id is cleared; another record's is left alone.
    fn ours(&self) -> bool {
        self.carried.as_deref() == Some(self.link.billing_id.as_str())
    }
}

/// Unlinks like [`crate::linking::unlink`] (the link, and a site link's
/// system links, remembered as deliberate) and first clears, in Stages, the
/// billing id of each of their records that still carries the link's own id.
/// A failure in Stages or in the store puts back what was cleared and changes
/// no link. Each released link is audited as `release`.
pub async fn release(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    link_id: LinkId,
) -> Result<Vec<Link>, OperationError> {
    let current = ports
        .links
        .link(&caller.dealer, link_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => OperationError::NotFound("no such link".into()),
            other => other.into(),
        })?;
    let connection = ports
        .connections
        .connection(&caller.dealer, current.connection_id)
        .await?;
    let acting = ActingAs::Caller(caller);
    let api = stages_client(ports.connections, ports.stages, acting, &connection).await?;
    let mut released = vec![current.clone()];
    if current.kind == LinkKind::Site {
        released.extend(children(ports, caller, current.id).await?);
    }

    // Read everything before writing anything.
    let mut held = Vec::new();
    for link in released {
        let carried = carried_by(api.as_ref(), &link).await;
        let (carried, exists) = match carried {
            Ok(c) => (c, true),
            Err(StagesError::NotFound(_)) => (None, false),
            Err(e) => return Err(upstream(&connection)(e)),
        };
        held.push(Held {
            link,
            carried,
            exists,
        });
    }
    // Devices first, then their site: the reverse of how a link writes them.
    let mut written: Vec<(LinkKind, String, String)> = Vec::new();
    for h in held.iter().rev().filter(|h| h.ours()) {
        if let Err(e) = set_billing_id(api.as_ref(), h.link.kind, &h.link.external_id, "").await {
            undo(api.as_ref(), &written).await;
            return Err(upstream(&connection)(e));
        }
        written.push((
            h.link.kind,
            h.link.external_id.clone(),
            h.link.billing_id.to_string(),
        ));
    }
    let entries = held.iter().map(|h| audit(caller, h)).collect();
    match ports
        .links
        .unlink(&caller.dealer, &[current.id], &caller.user.0, entries)
        .await
    {
        Ok(removed) => Ok(removed),
        Err(e) => {
            undo(api.as_ref(), &written).await;
            Err(e.into())
        }
    }
}

async fn undo(api: &dyn StagesApi, written: &[(LinkKind, String, String)]) {
    let left = put_back(api, written).await;
    if !left.is_empty() {
        tracing::warn!(left = ?left, "a release that failed left billing ids cleared in Stages; a reconcile with repair writes them back");
    }
}

/// The system links of a site link.
async fn children(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    site_link: LinkId,
) -> Result<Vec<Link>, OperationError> {
    let mut found = Vec::new();
    let mut after = None;
    loop {
        let page = ports
            .links
            .list_links(
                &caller.dealer,
                &LinkFilter {
                    parent_id: Some(site_link),
                    ..Default::default()
                },
                PageRequest { after, limit: 500 },
            )
            .await?;
        found.extend(page.items);
        match page.next_page_token {
            Some(t) => after = Some(t),
            None => return Ok(found),
        }
    }
}

/// The billing id a link's Stages record carries now.
async fn carried_by(api: &dyn StagesApi, link: &Link) -> Result<Option<String>, StagesError> {
    let carried = match link.kind {
        LinkKind::Site => api.get_site(&link.site_no()).await?.billing_id,
        LinkKind::System => api.get_device(&link.device_id()).await?.fields.billing_id,
    };
    Ok(carried.filter(|b| !b.is_empty()))
}

fn audit(caller: &Caller, h: &Held) -> NewAuditEntry {
    let after = if h.ours() {
        serde_json::json!({"stages_billing_id": null})
    } else if h.exists {
        // Not this link's id: left as it is.
        serde_json::json!({"stages_billing_id": h.carried})
    } else {
        serde_json::json!({"stages_record": "gone"})
    };
    NewAuditEntry {
        actor: caller.user.0.clone(),
        action: "release".into(),
        connection_id: Some(h.link.connection_id),
        kind: h.link.kind.as_str().into(),
        billing_id: Some(h.link.billing_id.to_string()),
        external_id: Some(h.link.external_id.clone()),
        before: Some(serde_json::json!({
            "link_id": h.link.id,
            "external_id": h.link.external_id,
            "stages_billing_id": h.carried,
        })),
        after: Some(after),
    }
}
