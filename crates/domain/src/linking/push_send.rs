//! The Stages half of a push (S5), on records claimed in the link table:
//! create the site whole or the devices one by one (or find them, after an
//! answer that was lost), then confirm the claims as links, bring the
//! billing systems in line with what was sent, and answer what was done.

use crate::billing::{BillingId, BillingSite, BillingSystem};
use crate::connection::{Connection, ConnectionId};
use crate::link::{ConfirmLink, Link, LinkId, LinkKind, NewLink};
use crate::operations::{upstream, OperationError};
use crate::stages::{DeviceId, SiteNo};
use crate::stages::{NewStagesContact, StagesApi, StagesDevice, StagesError, StagesSiteQuery};
use crate::tenancy::Caller;

use super::claims::claim_lost;
use super::push::{
    new_device_for, new_site_for, PushAction, PushOutcome, PushSystem, PushedRecord,
    StagesSiteExtras,
};
use super::{audit, LinkingPorts};

/// A record a push made or found in Stages, to be confirmed as a link.
pub(super) struct Pushed<'a> {
    kind: LinkKind,
    billing_id: BillingId,
    external_id: String,
    action: PushAction,
    link_id: LinkId,
    parent_id: Option<LinkId>,
    /// A system's device as it was asked for.
    system: Option<(&'a BillingSystem, &'a PushSystem)>,
}

/// Stages failed: what was done before (confirmed anyway, so a resend finds it
/// linked), the billing system it stopped at, and the error.
pub(super) type PushFailure<'a> = (Vec<Pushed<'a>>, (Option<BillingId>, OperationError));

/// The Stages half of a push, on claimed records. A new site goes in one
/// request with its devices and contacts: Stages checks it whole and stores
/// all or nothing. Devices of a site that exists already must be created one
/// by one; a refusal stops there (Stages cannot delete what was made, so what
/// is done stays, complete and linked, and the answer says so).
#[allow(clippy::too_many_arguments)]
pub(super) async fn push_claimed<'a>(
    connection: &Connection,
    api: &dyn StagesApi,
    site: &BillingSite,
    site_link: Option<&Link>,
    site_link_id: LinkId,
    new_site: Option<(&StagesSiteExtras, &[NewStagesContact])>,
    todo: &'a [(BillingSystem, &'a PushSystem, LinkId)],
) -> Result<Vec<Pushed<'a>>, PushFailure<'a>> {
    let up = upstream(connection);
    let mut done = Vec::new();
    let site_no = match site_link {
        Some(link) => link.site_no(),
        None => {
            let (extras, contacts) = new_site.expect("a system push needs a linked site");
            let found = api
                .list_sites(&StagesSiteQuery {
                    billing_id: Some(site.id.to_string()),
                    ..Default::default()
                })
                .await
                .map_err(|e| (Vec::new(), (None, up(e))))?
                .items
                .into_iter()
                .next();
            match found {
                // An earlier attempt created it but its answer was lost.
                Some(existing) => {
                    done.push(Pushed {
                        kind: LinkKind::Site,
                        billing_id: site.id.clone(),
                        external_id: existing.site_no.to_string(),
                        action: PushAction::Reused,
                        link_id: site_link_id,
                        parent_id: None,
                        system: None,
                    });
                    existing.site_no
                }
                None => {
                    let new_site = (extras, contacts);
                    return create_site(connection, api, site, site_link_id, new_site, todo).await;
                }
            }
        }
    };
    add_devices(connection, api, &site_no, site_link_id, todo, done).await
}

/// A new site in one request with its devices and contacts; each device of
/// the answer is matched to its billing system by the billing id it carries.
async fn create_site<'a>(
    connection: &Connection,
    api: &dyn StagesApi,
    site: &BillingSite,
    site_link_id: LinkId,
    (extras, contacts): (&StagesSiteExtras, &[NewStagesContact]),
    todo: &'a [(BillingSystem, &'a PushSystem, LinkId)],
) -> Result<Vec<Pushed<'a>>, PushFailure<'a>> {
    let up = upstream(connection);
    let mut done = Vec::new();
    let mut new = new_site_for(site, extras, contacts);
    new.devices = todo
        .iter()
        .map(|(system, spec, _)| new_device_for(system, spec))
        .collect();
    let created = api
        .create_site(&new)
        .await
        .map_err(|e| (Vec::new(), (None, up(e))))?;
    done.push(Pushed {
        kind: LinkKind::Site,
        billing_id: site.id.clone(),
        external_id: created.site.site_no.to_string(),
        action: PushAction::Created,
        link_id: site_link_id,
        parent_id: None,
        system: None,
    });
    for (system, spec, id) in todo {
        let Some(device) = created
            .devices
            .iter()
            .find(|d| d.fields.billing_id.as_deref() == Some(system.id.as_str()))
        else {
            let e = StagesError::BadAnswer(format!(
                "the new site has no device for billing system '{}'",
                system.id
            ));
            return Err((done, (Some(system.id.clone()), up(e))));
        };
        done.push(Pushed {
            kind: LinkKind::System,
            billing_id: system.id.clone(),
            external_id: device.device_id.to_string(),
            action: PushAction::Created,
            link_id: *id,
            parent_id: Some(site_link_id),
            system: Some((system, spec)),
        });
    }
    Ok(done)
}

/// Devices of an existing site, one at a time, after what `done` holds
/// already; each is looked up by its billing id first, so a resend after a
/// lost answer creates nothing twice.
async fn add_devices<'a>(
    connection: &Connection,
    api: &dyn StagesApi,
    site_no: &SiteNo,
    site_link_id: LinkId,
    todo: &'a [(BillingSystem, &'a PushSystem, LinkId)],
    mut done: Vec<Pushed<'a>>,
) -> Result<Vec<Pushed<'a>>, PushFailure<'a>> {
    let up = upstream(connection);
    let mut existing: Option<Vec<StagesDevice>> = None;
    for (system, spec, id) in todo {
        let step: Result<(DeviceId, PushAction), StagesError> = async {
            if existing.is_none() {
                existing = Some(api.list_devices(site_no).await?);
            }
            let found = existing.as_ref().and_then(|ds| {
                ds.iter()
                    .find(|d| d.fields.billing_id.as_deref() == Some(system.id.as_str()))
            });
            match found {
                Some(d) => Ok((d.device_id.clone(), PushAction::Reused)),
                None => {
                    let d = api
                        .create_device(site_no, &new_device_for(system, spec))
                        .await?;
                    Ok((d.device_id, PushAction::Created))
                }
            }
        }
        .await;
        match step {
            Ok((device_id, action)) => done.push(Pushed {
                kind: LinkKind::System,
                billing_id: system.id.clone(),
                external_id: device_id.into(),
                action,
                link_id: *id,
                parent_id: Some(site_link_id),
                system: Some((system, spec)),
            }),
            Err(e) => return Err((done, (Some(system.id.clone()), up(e)))),
        }
    }
    Ok(done)
}

/// Confirms the claims of what a push made, with their audit entries, then
/// brings the billing systems in line and keeps the snapshots. Returns the
/// confirmed link ids.
pub(super) async fn confirm_pushed(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    site: &BillingSite,
    done: &[Pushed<'_>],
) -> Result<Vec<LinkId>, OperationError> {
    if done.is_empty() {
        return Ok(Vec::new());
    }
    let mut confirms = Vec::new();
    let mut entries = Vec::new();
    for d in done {
        confirms.push(ConfirmLink {
            link_id: d.link_id,
            external_id: Some(d.external_id.clone()),
        });
        let new = NewLink {
            id: d.link_id,
            connection_id,
            kind: d.kind,
            billing_id: d.billing_id.clone(),
            external_id: d.external_id.clone(),
            parent_id: d.parent_id,
        };
        entries.push(audit(caller, "push", &new, None));
    }
    ports
        .links
        .confirm_links(&caller.dealer, confirms, entries)
        .await
        .map_err(claim_lost)?;
    for d in done {
        match d.system {
            // Both sides now hold the billing values: the base of later syncs.
            None => {
                ports
                    .links
                    .set_link_snapshot(
                        &caller.dealer,
                        d.link_id,
                        crate::link_sync::pushed_snapshot(
                            LinkKind::Site,
                            &crate::sync::billing_site_values(&site.fields),
                        ),
                        Vec::new(),
                    )
                    .await?
            }
            Some((system, spec)) => {
                let device_id = d.external_id.as_str();
                adopt_pushed_device(
                    ports,
                    caller,
                    connection_id,
                    system,
                    spec,
                    d.link_id,
                    device_id,
                )
                .await?
            }
        }
    }
    Ok(done.iter().map(|d| d.link_id).collect())
}

/// The transmitter code entered for Stages becomes the billing system number:
/// a change the service makes, so it is published. Location and info typed
/// for the device are the system's too, so both sides agree after the push.
async fn adopt_pushed_device(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    system: &BillingSystem,
    spec: &PushSystem,
    link_id: LinkId,
    device_id: &str,
) -> Result<(), OperationError> {
    let code = spec.device.transmitter_code.trim();
    let mut fields = system.fields.clone();
    fields.system_number = code.to_owned();
    if !spec.device.location.is_empty() {
        fields.location = spec.device.location.clone();
    }
    if !spec.device.info.is_empty() {
        fields.info = spec.device.info.clone();
    }
    if fields != system.fields {
        let before = crate::sync::billing_system_values(&system.fields);
        let changed: crate::sync::Values = crate::sync::billing_system_values(&fields)
            .into_iter()
            .filter(|(f, v)| before.get(f) != Some(v))
            .collect();
        let record = crate::audit::ChangedRecord {
            connection_id,
            kind: LinkKind::System.as_str(),
            billing_id: system.id.as_str(),
            external_id: device_id,
        };
        let billing = crate::audit::WrittenSide::Billing;
        let entry =
            crate::audit::data_change(&caller.user.0, "push", billing, record, &before, &changed);
        let event = crate::events::NewEvent {
            event_type: crate::events::types::BILLING_SYSTEM_UPDATED.into(),
            subject_kind: "system".into(),
            subject_id: system.id.to_string(),
            connection_id: Some(connection_id),
            data: serde_json::json!({
                "changed": {"system_number": code, "location": fields.location, "info": fields.info},
                "record": fields,
                "source": "push",
            }),
        };
        ports
            .billing
            .write_billing(
                &caller.dealer,
                crate::billing::BillingWrite::System {
                    id: system.id.clone(),
                    fields: fields.clone(),
                },
                vec![event],
                Some(connection_id),
                entry.into_iter().collect(),
            )
            .await?;
    }
    ports
        .links
        .set_link_snapshot(
            &caller.dealer,
            link_id,
            crate::link_sync::pushed_snapshot(
                LinkKind::System,
                &crate::sync::billing_system_values(&fields),
            ),
            Vec::new(),
        )
        .await?;
    Ok(())
}

/// The answer of a push: the records it made or found (after the site's link
/// when the site was linked already), then those linked already. A failure
/// after something was made is a partial push naming both.
pub(super) fn push_answer(
    site: &BillingSite,
    site_link: Option<&Link>,
    done: &[Pushed<'_>],
    already_linked: Vec<PushedRecord>,
    failure: Option<(Option<BillingId>, OperationError)>,
) -> Result<PushOutcome, OperationError> {
    let mut done_records: Vec<PushedRecord> = done
        .iter()
        .map(|d| PushedRecord {
            kind: d.kind,
            billing_id: d.billing_id.to_string(),
            external_id: Some(d.external_id.clone()),
            action: d.action,
            link_id: Some(d.link_id),
        })
        .collect();
    if let Some(link) = site_link {
        done_records.insert(
            0,
            PushedRecord {
                kind: LinkKind::Site,
                billing_id: site.id.to_string(),
                external_id: Some(link.external_id.clone()),
                action: PushAction::AlreadyLinked,
                link_id: Some(link.id),
            },
        );
    }
    let mut all = done_records;
    all.extend(already_linked);
    if let Some((failed, error)) = failure {
        return Err(
            match (
                failed,
                all.iter().any(|r| r.action != PushAction::AlreadyLinked),
            ) {
                // Nothing was made: the plain failure (a refusal is a 422 and not
                // worth sending again; a transient one is).
                (_, false) | (None, _) => error,
                (Some(failed), true) => OperationError::PartialPush {
                    done: all,
                    failed: failed.to_string(),
                    error: Box::new(error),
                },
            },
        );
    }
    Ok(PushOutcome {
        dry_run: false,
        records: all,
        would_send: None,
    })
}
