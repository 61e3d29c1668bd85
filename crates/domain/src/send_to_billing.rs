//! Stages sends a site to billing (S16, S17): as a new customer, or to an
//! existing one. The service makes the billing customer (new case), site and
//! one system per device, links them, and writes the billing ids back to
//! Stages. It answers with the ids or with a failure that left nothing behind.

use serde::Serialize;

use crate::audit::NewAuditEntry;
use crate::billing::{
    BillingId, BillingWrite, CustomerFields, CustomerKind, SiteFields, SystemFields,
};
use crate::connection::Connection;
use crate::events::{types, NewEvent};
use crate::link::{ConfirmLink, LinkId, LinkKind, NewLink};
use crate::linking::LinkingPorts;
use crate::operations::{upstream, OperationError};
use crate::stages::{SendToBillingTarget, StagesDevicePatch, StagesError, StagesSitePatch};
use crate::store::StoreError;
use crate::sync::{self, Snapshot};
use crate::syncing::stages_as_dealer;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentSystem {
    pub device_id: String,
    pub system_id: String,
}

/// The answer Stages gets: the billing ids it stores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentToBilling {
    pub customer_id: String,
    pub customer_created: bool,
    pub site_id: String,
    pub systems: Vec<SentSystem>,
}

fn new_id(prefix: &str) -> BillingId {
    BillingId::parse(&format!("{prefix}-{}", uuid::Uuid::now_v7().simple()))
        .expect("a well-formed id")
}

/// Clears billing ids written to Stages by a send that then failed (best effort).
async fn clear_stages_ids(api: &dyn crate::stages::StagesApi, site_no: &str, devices: &[String]) {
    let clear = StagesSitePatch {
        billing_id: Some(String::new()),
        ..Default::default()
    };
    if let Err(e) = api.update_site(site_no, &clear).await {
        tracing::warn!(error = %e, site_no, "could not clear a billing id after a failed send");
    }
    for d in devices {
        let clear = StagesDevicePatch {
            billing_id: Some(String::new()),
            ..Default::default()
        };
        if let Err(e) = api.update_device(d, &clear).await {
            tracing::warn!(error = %e, device = %d, "could not clear a billing id after a failed send");
        }
    }
}

/// A new customer's name: a person needs both a first and a last name; a
/// business is named by its last name (its business name).
pub fn check_new_customer_name(
    business: bool,
    first_name: &str,
    last_name: &str,
) -> Result<(), crate::validation::ValidationError> {
    let mut v = crate::validation::ValidationError::default();
    if !business && first_name.trim().is_empty() {
        v.push("target.first_name", "a person needs a first name");
    }
    if last_name.trim().is_empty() {
        v.push(
            "target.last_name",
            if business {
                "a business needs its name here (a business's last name is its business name)"
            } else {
                "a person needs a last name"
            },
        );
    }
    v.into_result()
}

/// Applies `site.send_to_billing`. The Stages site and devices are claimed in
/// the link table first (of two sends of one site, one wins and the other
/// leaves before writing anything), then billing ids go to Stages and billing
/// records are made last, so a failure on the Stages side leaves billing
/// untouched and the same event can simply be sent again.
pub async fn send_to_billing(
    ports: LinkingPorts<'_>,
    connection: &Connection,
    site_no: &str,
    target: &SendToBillingTarget,
) -> Result<SentToBilling, OperationError> {
    let dealer = &connection.dealer;
    if let SendToBillingTarget::NewCustomer {
        business,
        first_name,
        last_name,
        ..
    } = target
    {
        check_new_customer_name(*business, first_name, last_name)?;
    }
    let api = stages_as_dealer(ports, connection).await?;
    let up = upstream(connection);
    let site = api.get_site(site_no).await.map_err(&up)?;
    let devices = api.list_devices(site_no).await.map_err(&up)?;

    // A site already linked is refused, naming its link.
    if let Some(link) =
        crate::linking::link_of_external(ports, dealer, connection.id, LinkKind::Site, site_no)
            .await?
    {
        return Err(OperationError::Conflict {
            code: "already_linked",
            message: format!(
                "Stages site '{site_no}' is already linked to billing site '{}' (link {})",
                link.billing_id, link.id
            ),
        });
    }

    let (customer_id, customer) =
        match target {
            SendToBillingTarget::ExistingCustomer { customer_id } => {
                let id = BillingId::parse(customer_id).map_err(|why| {
                    OperationError::Invalid(crate::validation::ValidationError::field(
                        "target.customer_id",
                        why,
                    ))
                })?;
                ports
                    .billing
                    .customer(dealer, &id)
                    .await
                    .map_err(|e| match e {
                        StoreError::NotFound => {
                            OperationError::NotFound(format!("no billing customer '{customer_id}'"))
                        }
                        other => other.into(),
                    })?;
                (id, None)
            }
            SendToBillingTarget::NewCustomer {
                business,
                first_name,
                last_name,
                address1,
                address2,
                city,
                state,
                zip,
            } => {
                // A business is named by its last name; a person by first and last.
                let fields = CustomerFields {
                    kind: if *business {
                        CustomerKind::Business
                    } else {
                        CustomerKind::Person
                    },
                    first_name: if *business {
                        String::new()
                    } else {
                        first_name.clone()
                    },
                    last_name: last_name.clone(),
                    business_name: if *business {
                        last_name.clone()
                    } else {
                        String::new()
                    },
                    phone: site.phone.clone(),
                    email: String::new(),
                    address1: if address1.is_empty() {
                        site.address1.clone()
                    } else {
                        address1.clone()
                    },
                    address2: if address1.is_empty() {
                        site.address2.clone()
                    } else {
                        address2.clone()
                    },
                    city: if city.is_empty() {
                        site.city.clone()
                    } else {
                        city.clone()
                    },
                    state: if state.is_empty() {
                        site.state.clone()
                    } else {
                        state.clone()
                    },
                    zip: if zip.is_empty() {
                        site.zip.clone()
                    } else {
                        zip.clone()
                    },
                    ..Default::default()
                };
                if fields.display_name().trim().is_empty() {
                    return Err(OperationError::Invalid(crate::validation::ValidationError::field(
                    "target.last_name",
                    "a new customer needs a name (a business's last name is its business name)",
                )));
                }
                (new_id("CUS"), Some(fields))
            }
        };
    let site_id = new_id("SITE");
    let systems: Vec<(String, BillingId, SystemFields)> = devices
        .iter()
        .map(|d| {
            (
                d.device_id.clone(),
                new_id("SYS"),
                SystemFields {
                    site_id: site_id.clone(),
                    system_number: d.fields.transmitter_code.clone(),
                    panel_type: d.fields.device_type.clone(),
                    location: d.fields.location.clone(),
                    info: d.fields.info.clone(),
                },
            )
        })
        .collect();

    // 1. The claim: the unique constraints decide between concurrent sends.
    let site_link = LinkId::new();
    let mut claims = vec![NewLink {
        id: site_link,
        connection_id: connection.id,
        kind: LinkKind::Site,
        billing_id: site_id.clone(),
        external_id: site_no.to_owned(),
        parent_id: None,
    }];
    for (device_id, system_id, _) in &systems {
        claims.push(NewLink {
            id: LinkId::new(),
            connection_id: connection.id,
            kind: LinkKind::System,
            billing_id: system_id.clone(),
            external_id: device_id.clone(),
            parent_id: Some(site_link),
        });
    }
    let claim_ids: Vec<LinkId> = claims.iter().map(|c| c.id).collect();
    crate::linking::claim_for(ports.links, dealer, claims.clone()).await?;
    // Holding the claim: a billing id in Stages that names a billing site is
    // one no link holds (unlinked on purpose); it is refused. One that names
    // no billing record (left by an earlier failed send) does not count.
    let claimed = match site.billing_id.as_deref().filter(|b| !b.is_empty()) {
        Some(b) => match ports
            .billing
            .existing_billing_ids(dealer, LinkKind::Site, &[b.to_owned()])
            .await
        {
            Ok(found) => !found.is_empty(),
            Err(e) => {
                crate::linking::release_claims_for(ports.links, dealer, &claim_ids).await;
                return Err(e.into());
            }
        },
        None => false,
    };
    if claimed {
        crate::linking::release_claims_for(ports.links, dealer, &claim_ids).await;
        return Err(OperationError::Conflict {
            code: "already_linked",
            message: format!(
                "Stages site '{site_no}' carries billing id '{}' of an existing billing site; unlink or reconcile first",
                site.billing_id.as_deref().unwrap_or_default()
            ),
        });
    }

    // 2. Billing ids to Stages, each device its own. Only the claim holder
    // writes (and on a failure clears) them.
    let written: Result<(), StagesError> = async {
        api.update_site(
            site_no,
            &StagesSitePatch {
                billing_id: Some(site_id.to_string()),
                ..Default::default()
            },
        )
        .await?;
        for (device_id, system_id, _) in &systems {
            api.update_device(
                device_id,
                &StagesDevicePatch {
                    billing_id: Some(system_id.to_string()),
                    ..Default::default()
                },
            )
            .await?;
        }
        Ok(())
    }
    .await;
    let device_ids: Vec<String> = systems.iter().map(|(d, _, _)| d.clone()).collect();
    if let Err(e) = written {
        clear_stages_ids(api.as_ref(), site_no, &device_ids).await;
        crate::linking::release_claims_for(ports.links, dealer, &claim_ids).await;
        return Err(up(e));
    }

    // 3. The billing records, published as they are made, and the links.
    let site_fields = SiteFields {
        customer_id: Some(customer_id.clone()),
        name: site.name.clone(),
        address1: site.address1.clone(),
        address2: site.address2.clone(),
        city: site.city.clone(),
        state: site.state.clone(),
        zip: site.zip.clone(),
        phone: site.phone.clone(),
        info: site.info.clone(),
    };
    let customer_made = customer.is_some();
    let made = make_records(
        ports,
        connection,
        &customer_id,
        customer,
        &site_id,
        site_fields.clone(),
        &systems,
        &claims,
    )
    .await;
    if let Err(e) = made {
        // Stages first, while the claim keeps others away; then the claim,
        // which would keep the billing records from being deleted.
        clear_stages_ids(api.as_ref(), site_no, &device_ids).await;
        crate::linking::release_claims_for(ports.links, dealer, &claim_ids).await;
        undo_records(
            ports,
            connection,
            &customer_id,
            customer_made,
            &site_id,
            &systems,
        )
        .await;
        return Err(e);
    }
    Ok(SentToBilling {
        customer_id: customer_id.to_string(),
        customer_created: matches!(target, SendToBillingTarget::NewCustomer { .. }),
        site_id: site_id.to_string(),
        systems: systems
            .into_iter()
            .map(|(device_id, system_id, _)| SentSystem {
                device_id,
                system_id: system_id.to_string(),
            })
            .collect(),
    })
}

fn created(
    event_type: &str,
    kind: &str,
    id: &BillingId,
    connection: &Connection,
    record: serde_json::Value,
) -> NewEvent {
    NewEvent {
        event_type: event_type.into(),
        subject_kind: kind.into(),
        subject_id: id.to_string(),
        connection_id: Some(connection.id),
        data: serde_json::json!({"record": record, "source": "stages_send_to_billing"}),
    }
}

/// Removes what `make_records` made (best effort; records never made are no error).
async fn undo_records(
    ports: LinkingPorts<'_>,
    connection: &Connection,
    customer_id: &BillingId,
    customer_made: bool,
    site_id: &BillingId,
    systems: &[(String, BillingId, SystemFields)],
) {
    let dealer = &connection.dealer;
    for (_, id, _) in systems.iter().rev() {
        let _ = ports.billing.delete_system(dealer, id, None).await;
    }
    let _ = ports.billing.delete_site(dealer, site_id, None).await;
    if customer_made {
        let _ = ports
            .billing
            .delete_customer(dealer, customer_id, None)
            .await;
    }
}

/// Makes the customer, site and systems, then confirms the claimed links
/// (last, so that a failure leaves only claims, which the caller releases).
#[allow(clippy::too_many_arguments)]
async fn make_records(
    ports: LinkingPorts<'_>,
    connection: &Connection,
    customer_id: &BillingId,
    customer: Option<CustomerFields>,
    site_id: &BillingId,
    site_fields: SiteFields,
    systems: &[(String, BillingId, SystemFields)],
    claims: &[NewLink],
) -> Result<(), OperationError> {
    let dealer = &connection.dealer;
    async {
        if let Some(fields) = customer.clone() {
            let record = serde_json::to_value(&fields).unwrap_or_default();
            ports
                .billing
                .write_billing(
                    dealer,
                    BillingWrite::Customer {
                        id: customer_id.clone(),
                        fields,
                    },
                    vec![created(
                        types::BILLING_CUSTOMER_CREATED,
                        "customer",
                        customer_id,
                        connection,
                        record,
                    )],
                    Some(connection.id),
                    // Created records: the links' `send_to_billing` entries name them.
                    Vec::new(),
                )
                .await?;
        }
        let record = serde_json::to_value(&site_fields).unwrap_or_default();
        ports
            .billing
            .write_billing(
                dealer,
                BillingWrite::Site {
                    id: site_id.clone(),
                    fields: site_fields.clone(),
                },
                vec![created(
                    types::BILLING_SITE_CREATED,
                    "site",
                    site_id,
                    connection,
                    record,
                )],
                Some(connection.id),
                Vec::new(),
            )
            .await?;
        for (_, system_id, fields) in systems {
            let record = serde_json::to_value(fields).unwrap_or_default();
            ports
                .billing
                .write_billing(
                    dealer,
                    BillingWrite::System {
                        id: system_id.clone(),
                        fields: fields.clone(),
                    },
                    vec![created(
                        types::BILLING_SYSTEM_CREATED,
                        "system",
                        system_id,
                        connection,
                        record,
                    )],
                    Some(connection.id),
                    // Created records: the links' `send_to_billing` entries name them.
                    Vec::new(),
                )
                .await?;
        }
        let audit = claims
            .iter()
            .map(|l| NewAuditEntry {
                actor: "system:stages".into(),
                action: "send_to_billing".into(),
                connection_id: Some(connection.id),
                kind: l.kind.as_str().into(),
                billing_id: Some(l.billing_id.to_string()),
                external_id: Some(l.external_id.clone()),
                before: None,
                after: Some(serde_json::json!({"link_id": l.id})),
            })
            .collect();
        // Both sides hold the same values now: the base of later syncs.
        for l in claims {
            let values = match l.kind {
                LinkKind::Site => sync::billing_site_values(&site_fields),
                LinkKind::System => systems
                    .iter()
                    .find(|(_, id, _)| *id == l.billing_id)
                    .map(|(_, _, f)| sync::billing_system_values(f))
                    .unwrap_or_default(),
            };
            let snapshot = Snapshot::of(sync::fields_for(l.kind), &values);
            ports
                .links
                .set_link_snapshot(
                    dealer,
                    l.id,
                    serde_json::to_value(snapshot).unwrap_or_default(),
                    Vec::new(),
                )
                .await?;
        }
        let confirms = claims
            .iter()
            .map(|l| ConfirmLink {
                link_id: l.id,
                external_id: None,
            })
            .collect();
        ports
            .links
            .confirm_links(dealer, confirms, audit)
            .await
            .map_err(crate::linking::claim_lost)?;
        Ok(())
    }
    .await
}

#[cfg(test)]
mod tests {
    use super::check_new_customer_name;

    fn fields(r: Result<(), crate::validation::ValidationError>) -> Vec<String> {
        r.err()
            .map(|v| v.errors.into_iter().map(|e| e.field).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_person_needs_a_first_and_a_last_name_and_a_business_its_name() {
        assert!(check_new_customer_name(false, "Ada", "Lovelace").is_ok());
        assert_eq!(
            fields(check_new_customer_name(false, " ", "Lovelace")),
            ["target.first_name"]
        );
        assert_eq!(
            fields(check_new_customer_name(false, "Ada", "")),
            ["target.last_name"]
        );
        assert!(check_new_customer_name(true, "", "Babbage LLC").is_ok());
        assert_eq!(
            fields(check_new_customer_name(true, "x", " ")),
            ["target.last_name"]
        );
    }
}
