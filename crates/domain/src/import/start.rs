//! Starting a run (A5 precondition): only from an Alarm.com connection that is
//! active and holds the dealer credentials. Its filters are checked against
//! what the Alarm.com account has (sub-dealers, roles), its default rep
//! against billing, and the run is stored with its queued job.

use serde::Serialize;
use uuid::Uuid;

use super::{AdcImportJob, Import, ImportId, ImportPorts, ImportSpec, NewImport};
use crate::adc::{AdcApi, AdcConnector, AdcError};
use crate::connection::{Connection, ConnectionId, ConnectionStatus};
use crate::jobs::Job;
use crate::operations::OperationError;
use crate::store::{ConnectionStore, StoreError};
use crate::tenancy::Caller;
use crate::upstream::{adc_client, ActingAs};
use crate::validation::ValidationError;

/// The ADC client of an import-ready connection (A5): an Alarm.com
/// connection that holds the dealer credentials and, on top of what every
/// use of Alarm.com needs, is active.
pub async fn import_source(
    store: &dyn ConnectionStore,
    connector: &dyn AdcConnector,
    connection: &Connection,
) -> Result<std::sync::Arc<dyn AdcApi>, OperationError> {
    let adc = adc_client(store, connector, ActingAs::Dealer, connection).await?;
    if connection.status != ConnectionStatus::Active {
        return Err(OperationError::Conflict {
            code: "provider_inactive",
            message: format!(
                "the Alarm.com provider entry '{}' is inactive; an admin makes it active before importing",
                connection.name.as_str()
            ),
        });
    }
    Ok(adc)
}

/// What the filters can be chosen from: the dealer's sub-dealers and the
/// roles its users hold, read from Alarm.com through an import-ready connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilterChoices {
    pub sub_dealers: Vec<crate::adc::AdcSubDealer>,
    pub roles: Vec<crate::adc::AdcRole>,
}

pub async fn filter_choices(
    ports: ImportPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
) -> Result<FilterChoices, OperationError> {
    let connection = ports
        .connections
        .connection(&caller.dealer, connection_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => OperationError::NotFound("no such connection".into()),
            other => other.into(),
        })?;
    let adc = import_source(ports.connections, ports.adc, &connection).await?;
    let failed = |e: AdcError| crate::operations::provider_failure(&connection, &e);
    Ok(FilterChoices {
        sub_dealers: adc.sub_dealers().await.map_err(failed)?,
        roles: adc.roles().await.map_err(failed)?,
    })
}

/// Checks the precondition and the options, then stores the run with its
/// queued job (A5: nothing starts unless the provider entry is active and linked).
pub async fn start_import(
    ports: ImportPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    spec: ImportSpec,
) -> Result<(Import, Job), OperationError> {
    let connection = match ports
        .connections
        .connection(&caller.dealer, connection_id)
        .await
    {
        Ok(c) => c,
        Err(StoreError::NotFound) => {
            return Err(ValidationError::field("connection_id", "no such connection").into())
        }
        Err(e) => return Err(e.into()),
    };
    let adc = import_source(ports.connections, ports.adc, &connection).await?;
    check_filter_ids(adc.as_ref(), &connection, &spec).await?;
    if let ImportSpec::Customers { options, .. } = &spec {
        if let Some(rep) = &options.default_rep {
            match ports.billing.user(&caller.dealer, rep).await {
                Ok(_) => {}
                Err(StoreError::NotFound) => {
                    return Err(ValidationError::field(
                        "options.default_rep",
                        format!("no billing user '{rep}'"),
                    )
                    .into())
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    let id = ImportId(Uuid::now_v7());
    let job = AdcImportJob::new_job(id, connection_id, caller);
    let new = NewImport {
        id,
        dealer: caller.dealer.clone(),
        connection_id,
        spec,
        created_by: caller.user.0.clone(),
    };
    Ok(ports.imports.create_import(new, job).await?)
}

/// The sub-dealer and role ids of the filters against the filter choices
/// of the Alarm.com account (a filter on an id it does not have would
/// quietly match nothing). Alarm.com is asked only when such a filter is given.
async fn check_filter_ids(
    adc: &dyn AdcApi,
    connection: &Connection,
    spec: &ImportSpec,
) -> Result<(), OperationError> {
    let (sub_dealer_ids, roles): (&[i64], &[String]) = match spec {
        ImportSpec::Customers { filters, .. } => (&filters.sub_dealer_ids, &[]),
        ImportSpec::Users { filters, .. } => (&filters.sub_dealer_ids, &filters.roles),
    };
    let failed = |error: AdcError| OperationError::Provider {
        connection: connection.name.as_str().to_owned(),
        doing: "reading the filter choices: ",
        error,
    };
    let mut v = ValidationError::default();
    if !sub_dealer_ids.is_empty() {
        let known = adc.sub_dealers().await.map_err(failed)?;
        let unknown = unknown_filter_ids(sub_dealer_ids, &known);
        if !unknown.is_empty() {
            v.push(
                "filters.sub_dealer_ids",
                format!(
                    "no sub-dealer {} in the Alarm.com account; the import filter choices list those it has",
                    unknown.join(", ")
                ),
            );
        }
    }
    if !roles.is_empty() {
        let known = adc.roles().await.map_err(failed)?;
        let unknown = unknown_roles(roles, &known);
        if !unknown.is_empty() {
            v.push(
                "filters.roles",
                format!(
                    "no role {} in the Alarm.com account; the import filter choices list those it has",
                    unknown.join(", ")
                ),
            );
        }
    }
    v.into_result().map_err(OperationError::from)
}

/// The filter's sub-dealer ids that are not among `known`.
pub fn unknown_filter_ids(ids: &[i64], known: &[crate::adc::AdcSubDealer]) -> Vec<String> {
    ids.iter()
        .filter(|id| !known.iter().any(|k| k.id == **id))
        .map(i64::to_string)
        .collect()
}

/// The filter's roles (a name, any case, or an id) that are not among `known`.
pub fn unknown_roles(roles: &[String], known: &[crate::adc::AdcRole]) -> Vec<String> {
    roles
        .iter()
        .filter(|wanted| {
            let wanted = wanted.trim();
            !known
                .iter()
                .any(|k| k.name.eq_ignore_ascii_case(wanted) || wanted.parse::<i64>() == Ok(k.id))
        })
        .map(|r| format!("'{}'", r.trim()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adc::{AdcRole, AdcSubDealer};

    #[test]
    fn filter_ids_are_checked_against_the_choices() {
        let subs = [AdcSubDealer {
            id: 201,
            name: "North".into(),
        }];
        assert!(unknown_filter_ids(&[201], &subs).is_empty());
        assert_eq!(unknown_filter_ids(&[201, 999], &subs), vec!["999"]);
        let roles = [AdcRole {
            id: 3,
            name: "Sales Rep".into(),
        }];
        let asked = [
            "sales rep".to_owned(),
            "3".into(),
            "Wizard".into(),
            "7".into(),
        ];
        assert_eq!(unknown_roles(&asked, &roles), vec!["'Wizard'", "'7'"]);
    }
}
