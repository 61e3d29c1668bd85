//! Reconcile, steps 1 and 2: what Stages holds (every site and every device,
//! with the billing id each carries) and what the service knows of the
//! connection (its links, its deliberate unlinks, the billing records that
//! the ids found in Stages name).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::connection::{Connection, ConnectionId};
use crate::link::{Link, LinkFilter, LinkKind};
use crate::linking::LinkingPorts;
use crate::operations::{upstream, OperationError};
use crate::stages::{StagesApi, StagesDeviceQuery, StagesSiteQuery};
use crate::store::PageRequest;
use crate::tenancy::Caller;

use super::{Progress, PAGE};

/// A Stages record and the billing id it carries.
pub(super) struct Claim {
    pub(super) external_id: String,
    pub(super) billing_id: String,
    /// A device's site number.
    pub(super) site_no: Option<String>,
}

/// The Stages records of one kind.
#[derive(Default)]
pub(super) struct Seen {
    /// The records that carry a billing id.
    pub(super) claims: Vec<Claim>,
    /// Every Stages record seen, with the billing id it carries.
    pub(super) carried: HashMap<String, Option<String>>,
    /// Records seen (a record listed twice counts twice).
    pub(super) count: u64,
}

/// Every site of the connection's Stages, a page at a time; `None` when the
/// run was cancelled meanwhile. `read` counts the records read by this and
/// by [`read_devices`], which runs beside it.
pub(super) async fn read_sites(
    api: &dyn StagesApi,
    connection: &Connection,
    progress: &dyn Progress,
    read: &AtomicU64,
) -> Result<Option<Seen>, OperationError> {
    let mut seen = Seen::default();
    let mut token = None;
    loop {
        let page = api
            .list_sites(&StagesSiteQuery {
                page_token: token.take(),
                page_size: Some(PAGE),
                ..Default::default()
            })
            .await
            .map_err(upstream(connection))?;
        let n = page.items.len() as u64;
        for s in page.items {
            let carried = s.billing_id.filter(|b| !b.is_empty());
            seen.carried.insert(s.site_no.to_string(), carried.clone());
            if let Some(b) = carried {
                seen.claims.push(Claim {
                    external_id: s.site_no.into(),
                    billing_id: b,
                    site_no: None,
                });
            }
        }
        seen.count += n;
        let so_far = read.fetch_add(n, Ordering::Relaxed) + n;
        if !progress.report(so_far, None).await {
            return Ok(None);
        }
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => return Ok(Some(seen)),
        }
    }
}

/// Every device of the connection's Stages, a page at a time; `None` when
/// the run was cancelled meanwhile. `read` as for [`read_sites`].
pub(super) async fn read_devices(
    api: &dyn StagesApi,
    connection: &Connection,
    progress: &dyn Progress,
    read: &AtomicU64,
) -> Result<Option<Seen>, OperationError> {
    let mut seen = Seen::default();
    let mut token = None;
    loop {
        let page = api
            .list_all_devices(&StagesDeviceQuery {
                page_token: token.take(),
                page_size: Some(PAGE),
                ..Default::default()
            })
            .await
            .map_err(upstream(connection))?;
        let n = page.items.len() as u64;
        for d in page.items {
            let carried = d.fields.billing_id.filter(|b| !b.is_empty());
            seen.carried
                .insert(d.device_id.to_string(), carried.clone());
            if let Some(b) = carried {
                seen.claims.push(Claim {
                    external_id: d.device_id.into(),
                    billing_id: b,
                    site_no: Some(d.site_no.into()),
                });
            }
        }
        seen.count += n;
        let so_far = read.fetch_add(n, Ordering::Relaxed) + n;
        if !progress.report(so_far, None).await {
            return Ok(None);
        }
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => return Ok(Some(seen)),
        }
    }
}

/// The links of one kind on the connection, both ways.
#[derive(Default)]
pub(super) struct Known {
    pub(super) by_billing: HashMap<String, Link>,
    pub(super) by_external: HashMap<String, Link>,
}

/// What the service knows of the connection.
pub(super) struct Ours {
    pub(super) sites: Known,
    pub(super) systems: Known,
    /// The pairs unlinked on purpose, by kind: by billing id, and by
    /// `ext:<external id>`.
    pub(super) tombstones: HashSet<(LinkKind, String)>,
    /// The billing ids claimed in Stages that name a billing site.
    pub(super) existing_sites: HashSet<String>,
    /// The billing ids claimed in Stages that name a billing system.
    pub(super) existing_systems: HashSet<String>,
}

/// The connection's links, its deliberate unlinks, and which of the billing
/// ids that `sites` and `devices` claim name a billing record.
pub(super) async fn read_ours(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    sites: &Seen,
    devices: &Seen,
) -> Result<Ours, OperationError> {
    let mut known_sites = Known::default();
    let mut known_systems = Known::default();
    let mut after = None;
    loop {
        let page = ports
            .links
            .list_links(
                &caller.dealer,
                &LinkFilter {
                    connection_id: Some(connection_id),
                    ..Default::default()
                },
                PageRequest { after, limit: 1000 },
            )
            .await?;
        for l in page.items {
            let known = match l.kind {
                LinkKind::Site => &mut known_sites,
                LinkKind::System => &mut known_systems,
            };
            known.by_billing.insert(l.billing_id.to_string(), l.clone());
            known.by_external.insert(l.external_id.clone(), l);
        }
        match page.next_page_token {
            Some(t) => after = Some(t),
            None => break,
        }
    }
    let tombstones: HashSet<(LinkKind, String)> = ports
        .links
        .deliberate_unlinks(&caller.dealer, connection_id)
        .await?
        .into_iter()
        .flat_map(|t| {
            [
                (t.kind, t.billing_id.to_string()),
                (t.kind, format!("ext:{}", t.external_id)),
            ]
        })
        .collect();
    Ok(Ours {
        sites: known_sites,
        systems: known_systems,
        tombstones,
        existing_sites: existing(ports, caller, LinkKind::Site, &sites.claims).await?,
        existing_systems: existing(ports, caller, LinkKind::System, &devices.claims).await?,
    })
}

async fn existing(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    kind: LinkKind,
    claims: &[Claim],
) -> Result<HashSet<String>, OperationError> {
    let mut ids: Vec<String> = claims.iter().map(|c| c.billing_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let mut found = HashSet::new();
    for chunk in ids.chunks(500) {
        found.extend(
            ports
                .billing
                .existing_billing_ids(&caller.dealer, kind, chunk)
                .await?,
        );
    }
    Ok(found)
}
