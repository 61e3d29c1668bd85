//! Stages sends a site to billing (S16, S17): as a new customer, or to an
//! existing one. It is the wizard's pull (`wizard::pull_site`) of every
//! device of the site, started by Stages and acting with the dealer's
//! credential. It answers with the billing ids or with a failure that left
//! nothing behind.

use serde::Serialize;

use crate::billing::{BillingId, CustomerFields, CustomerKind};
use crate::connection::Connection;
use crate::linking::LinkingPorts;
use crate::operations::{upstream, OperationError};
use crate::stages::SendToBillingTarget;
use crate::stages::SiteNo;
use crate::store::StoreError;
use crate::upstream::{stages_client, ActingAs};
use crate::wizard::{self, Puller};

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

/// Applies `site.send_to_billing`: see `wizard::pull_site` for the order of
/// its steps and what a failure takes back, so that the same event can
/// simply be sent again.
pub async fn send_to_billing(
    ports: LinkingPorts<'_>,
    connection: &Connection,
    site_no: &SiteNo,
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
    let acting = ActingAs::Dealer;
    let api = stages_client(ports.connections, ports.stages, acting, connection).await?;
    let up = upstream(connection);
    let site = api.get_site(site_no).await.map_err(&up)?;
    let devices = api.list_devices(site_no).await.map_err(&up)?;
    wizard::refuse_linked_site(ports, connection, site_no).await?;

    let (customer_id, customer) = match target {
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
                address1: address1.clone(),
                address2: address2.clone(),
                city: city.clone(),
                state: state.clone(),
                zip: zip.clone(),
                ..Default::default()
            };
            (
                wizard::new_id("CUS"),
                Some(wizard::with_site_contact_details(fields, &site)),
            )
        }
    };
    let pulled = wizard::pull_site(
        Puller {
            ports,
            connection,
            api: api.as_ref(),
            actor: "system:stages",
            source: "send_to_billing",
        },
        &site,
        &devices,
        &[],
        customer_id,
        customer,
    )
    .await?;
    Ok(SentToBilling {
        customer_id: pulled.customer_id,
        customer_created: matches!(target, SendToBillingTarget::NewCustomer { .. }),
        site_id: pulled.site_id,
        systems: pulled
            .systems
            .into_iter()
            .map(|s| SentSystem {
                device_id: s.device_id,
                system_id: s.system_id,
            })
            .collect(),
    })
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
