//! Browsing Stages to pick what to link (S4): the sites of a connection with
//! their links, one site with its devices, one device, the central station's
//! choice lists.

use std::collections::HashSet;

use crate::connection::ConnectionId;
use crate::link::{Link, LinkFilter, LinkKind};
use crate::operations::{upstream, OperationError};
use crate::stages::{DeviceId, LookupList, SiteNo, StagesDevice, StagesSite, StagesSiteQuery};
use crate::store::PageRequest;
use crate::tenancy::Caller;

use super::{load_connection, LinkingPorts};

/// A Stages record with the link the service holds for it on that connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Browsed<T> {
    pub record: T,
    pub link: Option<Link>,
}

/// The link of a Stages record on one connection, if any.
pub(crate) async fn link_of_external(
    ports: LinkingPorts<'_>,
    dealer: &crate::tenancy::DealerId,
    connection_id: ConnectionId,
    kind: LinkKind,
    external_id: &str,
) -> Result<Option<Link>, OperationError> {
    Ok(ports
        .links
        .list_links(
            dealer,
            &LinkFilter {
                connection_id: Some(connection_id),
                kind: Some(kind),
                external_id: Some(external_id.to_owned()),
                ..Default::default()
            },
            PageRequest {
                after: None,
                limit: 1,
            },
        )
        .await?
        .items
        .into_iter()
        .next())
}

/// The central station's choice list.
pub async fn lookup(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    list: LookupList,
) -> Result<Vec<crate::stages::LookupItem>, OperationError> {
    let (connection, api) = load_connection(ports, caller, connection_id).await?;
    api.lookup(list).await.map_err(upstream(&connection))
}

/// Stages sites to pick from (S4): `unlinked` keeps those without a billing id
/// in Stages and without a link on this connection.
pub async fn browse_sites(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    query: StagesSiteQuery,
) -> Result<crate::Page<Browsed<StagesSite>>, OperationError> {
    let (connection, api) = load_connection(ports, caller, connection_id).await?;
    let unlinked = query.unlinked;
    let page = api
        .list_sites(&query)
        .await
        .map_err(upstream(&connection))?;
    let ids: Vec<String> = page.items.iter().map(|s| s.site_no.to_string()).collect();
    let linked: HashSet<String> = ports
        .links
        .linked_external_ids(&caller.dealer, connection_id, LinkKind::Site, &ids)
        .await?
        .into_iter()
        .collect();
    let mut items = Vec::new();
    for site in page.items {
        let is_linked = linked.contains(site.site_no.as_str());
        if unlinked && is_linked {
            continue;
        }
        let link = if is_linked {
            link_of_external(
                ports,
                &caller.dealer,
                connection_id,
                LinkKind::Site,
                &site.site_no,
            )
            .await?
        } else {
            None
        };
        items.push(Browsed { record: site, link });
    }
    Ok(crate::Page {
        items,
        next_page_token: page.next_page_token,
    })
}

/// One Stages site with its devices, each with its link (to pre-fill a billing site).
pub async fn stages_site(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    site_no: &SiteNo,
) -> Result<(Browsed<StagesSite>, Vec<Browsed<StagesDevice>>), OperationError> {
    let (connection, api) = load_connection(ports, caller, connection_id).await?;
    let site = api.get_site(site_no).await.map_err(upstream(&connection))?;
    let devices = api
        .list_devices(site_no)
        .await
        .map_err(upstream(&connection))?;
    let site_link = link_of_external(
        ports,
        &caller.dealer,
        connection_id,
        LinkKind::Site,
        site_no,
    )
    .await?;
    let mut browsed = Vec::new();
    for d in devices {
        let link = link_of_external(
            ports,
            &caller.dealer,
            connection_id,
            LinkKind::System,
            &d.device_id,
        )
        .await?;
        browsed.push(Browsed { record: d, link });
    }
    Ok((
        Browsed {
            record: site,
            link: site_link,
        },
        browsed,
    ))
}

/// One Stages device with its link.
pub async fn stages_device(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    device_id: &DeviceId,
) -> Result<Browsed<StagesDevice>, OperationError> {
    let (connection, api) = load_connection(ports, caller, connection_id).await?;
    let device = api
        .get_device(device_id)
        .await
        .map_err(upstream(&connection))?;
    let link = link_of_external(
        ports,
        &caller.dealer,
        connection_id,
        LinkKind::System,
        device_id,
    )
    .await?;
    Ok(Browsed {
        record: device,
        link,
    })
}
