//! Writing a sync's values to the two sides of a link: to the billing record
//! (with its event on the feed and its audit entry, in one transaction) and
//! to the Stages record (a refused field does not stop the others), and the
//! audit entries that name what was written.

use crate::audit::{self, ChangedRecord, NewAuditEntry, WrittenSide};
use crate::billing::BillingWrite;
use crate::events::{types, NewEvent};
use crate::link::LinkKind;
use crate::linking::LinkingPorts;
use crate::operations::{upstream, OperationError};
use crate::stages::{StagesError, TransmitterCode};
use crate::sync::{self, Values};
use crate::tenancy::DealerId;
use crate::validation::ValidationError;

use super::sides::{LinkedRecord, Sides};

/// The record of a link as an audit entry names it.
fn changed_record(sides: &Sides) -> ChangedRecord<'_> {
    ChangedRecord {
        connection_id: sides.connection.id,
        kind: sides.link.kind.as_str(),
        billing_id: sides.link.billing_id.as_str(),
        external_id: &sides.link.external_id,
    }
}

/// What a sync is and whom it acts for, as its events (`source`) and its
/// audit entries (action `<action>_to_<side>`, `actor`) name it.
#[derive(Debug, Clone, Copy)]
pub(super) struct By<'a> {
    pub(super) source: &'a str,
    pub(super) action: &'a str,
    pub(super) actor: &'a str,
}

/// The audit entry of `values` written to Stages.
pub(super) fn stages_change(sides: &Sides, by: By<'_>, values: &Values) -> Vec<NewAuditEntry> {
    let record = changed_record(sides);
    let before = &sides.external_values;
    audit::data_change(
        by.actor,
        by.action,
        WrittenSide::Stages,
        record,
        before,
        values,
    )
    .into_iter()
    .collect()
}

/// Writes `values` to the billing record of a link and publishes the change
/// on the feed, with its audit entry, in one transaction. Auto Sync skips
/// `connection_id`, where the values came from. The record must still be as
/// read (`VersionMismatch` otherwise), so a billing edit made meanwhile is
/// never overwritten.
pub(super) async fn write_to_billing(
    ports: LinkingPorts<'_>,
    dealer: &DealerId,
    sides: &Sides,
    values: &Values,
    by: By<'_>,
) -> Result<(), OperationError> {
    let (record, connection_id, source) = (&sides.billing, sides.connection.id, by.source);
    let audit = audit::data_change(
        by.actor,
        by.action,
        WrittenSide::Billing,
        changed_record(sides),
        &sides.billing_values,
        values,
    );
    let unknown = |e: sync::UnknownField| OperationError::Conflict {
        code: "unknown_field",
        message: e.to_string(),
    };
    let version = match record {
        LinkedRecord::Site(site) => site.version,
        LinkedRecord::System(system) => system.version,
    };
    let (write, event_type, kind, id, after) = match record {
        LinkedRecord::Site(site) => {
            let fields = sync::apply_to_billing_site(&site.fields, values).map_err(unknown)?;
            let after = serde_json::to_value(&fields).unwrap_or_default();
            (
                BillingWrite::Site {
                    id: site.id.clone(),
                    fields,
                },
                types::BILLING_SITE_UPDATED,
                "site",
                site.id.to_string(),
                after,
            )
        }
        LinkedRecord::System(system) => {
            let fields = sync::apply_to_billing_system(&system.fields, values).map_err(unknown)?;
            let after = serde_json::to_value(&fields).unwrap_or_default();
            (
                BillingWrite::System {
                    id: system.id.clone(),
                    fields,
                },
                types::BILLING_SYSTEM_UPDATED,
                "system",
                system.id.to_string(),
                after,
            )
        }
    };
    let event = NewEvent {
        event_type: event_type.into(),
        subject_kind: kind.into(),
        subject_id: id,
        connection_id: Some(connection_id),
        data: serde_json::json!({"changed": values, "record": after, "source": source}),
    };
    ports
        .billing
        .write_billing_at(
            dealer,
            write,
            version,
            vec![event],
            Some(connection_id),
            audit.into_iter().collect(),
        )
        .await?;
    Ok(())
}

/// Writes values to the Stages record of a link.
pub(super) async fn write_to_stages(sides: &Sides, values: &Values) -> Result<(), OperationError> {
    let invalid = |e: sync::UnknownField| OperationError::Conflict {
        code: "unknown_field",
        message: e.to_string(),
    };
    match sides.link.kind {
        LinkKind::Site => {
            let patch = sync::stages_site_patch(values).map_err(invalid)?;
            sides
                .api
                .update_site(&sides.link.site_no(), &patch)
                .await
                .map_err(upstream(&sides.connection))?;
        }
        LinkKind::System => {
            let update = sync::stages_device_update(values).map_err(invalid)?;
            if let Some(code) = &update.new_transmitter_code {
                let code = TransmitterCode::parse(code)
                    .map_err(|why| ValidationError::field("system_number", why))?;
                sides
                    .api
                    .change_transmitter_code(&sides.link.device_id(), &code)
                    .await
                    .map_err(upstream(&sides.connection))?;
            }
            if update.patch != Default::default() {
                sides
                    .api
                    .update_device(&sides.link.device_id(), &update.patch)
                    .await
                    .map_err(upstream(&sides.connection))?;
            }
        }
    }
    Ok(())
}

/// Writes `values` to Stages, and when Stages refuses them together, each on
/// its own: a refused field (a duplicate transmitter code, a value Stages'
/// rules do not take) does not stop the record's other fields. Anything but
/// a refusal (Stages down, slow, refusing the credentials) stops the whole,
/// so the job tries again later.
pub(super) async fn write_fields_to_stages(
    sides: &Sides,
    values: &Values,
) -> Result<(Values, Vec<(String, String)>), OperationError> {
    fn refusal(e: &OperationError) -> Option<String> {
        match e {
            OperationError::Upstream {
                error: StagesError::Rejected { message, .. },
                ..
            } => Some(message.clone()),
            _ => None,
        }
    }
    let whole = match write_to_stages(sides, values).await {
        Ok(()) => return Ok((values.clone(), Vec::new())),
        Err(e) => e,
    };
    let Some(reason) = refusal(&whole) else {
        return Err(whole);
    };
    if values.len() == 1 {
        let (field, _) = values.iter().next().expect("one value");
        return Ok((Values::new(), vec![(field.clone(), reason)]));
    }
    let (mut accepted, mut refused) = (Values::new(), Vec::new());
    for (field, value) in values {
        let one = Values::from([(field.clone(), value.clone())]);
        match write_to_stages(sides, &one).await {
            Ok(()) => {
                accepted.insert(field.clone(), value.clone());
            }
            Err(e) => match refusal(&e) {
                Some(reason) => refused.push((field.clone(), reason)),
                None => return Err(e),
            },
        }
    }
    Ok((accepted, refused))
}
