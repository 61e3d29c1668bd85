//! Edits made in Stages from the Stages tab (S14): a site's contacts
//! created, edited and deleted, a device's configurations created and its
//! zones edited (named by configuration id or point).

use crate::connection::ConnectionId;
use crate::linking::LinkingPorts;
use crate::operations::{upstream, OperationError};
use crate::stages::{DeviceId, SiteNo};
use crate::stages::{
    NewStagesConfiguration, NewStagesContact, StagesConfiguration, StagesConfigurationPatch,
    StagesContact, StagesContactPatch,
};
use crate::tenancy::Caller;
use crate::validation::ValidationError;

use super::open;

pub async fn create_contact(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    site_no: &SiteNo,
    contact: &NewStagesContact,
) -> Result<StagesContact, OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    api.create_contact(site_no, contact)
        .await
        .map_err(upstream(&connection))
}

pub async fn update_contact(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    site_no: &SiteNo,
    contact_id: &str,
    patch: &StagesContactPatch,
) -> Result<StagesContact, OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    api.update_contact(site_no, contact_id, patch)
        .await
        .map_err(upstream(&connection))
}

pub async fn create_configuration(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    device_id: &DeviceId,
    config: &NewStagesConfiguration,
) -> Result<StagesConfiguration, OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    api.create_configuration(device_id, config)
        .await
        .map_err(upstream(&connection))
}

pub async fn delete_contact(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    site_no: &SiteNo,
    contact_id: &str,
) -> Result<(), OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    api.delete_contact(site_no, contact_id)
        .await
        .map_err(upstream(&connection))
}

/// The zone that `key` names among a device's zones: its configuration id,
/// or else its point number when exactly one zone has that point.
pub fn find_zone<'a>(
    zones: &'a [StagesConfiguration],
    key: &str,
) -> Result<&'a StagesConfiguration, OperationError> {
    if let Some(z) = zones.iter().find(|z| z.config_id == key) {
        return Ok(z);
    }
    let not_found = || OperationError::NotFound(format!("the device has no zone '{key}'"));
    let point: u32 = key.parse().map_err(|_| not_found())?;
    let mut with_point = zones.iter().filter(|z| z.fields.point == point);
    match (with_point.next(), with_point.next()) {
        (None, _) => Err(not_found()),
        (Some(z), None) => Ok(z),
        (Some(_), Some(_)) => Err(OperationError::Conflict {
            code: "ambiguous_zone",
            message: format!(
                "more than one zone has point {point}; name the zone by its config_id"
            ),
        }),
    }
}

/// The checks of a zone edit: a point is 1 or more; an edit changes something.
pub fn check_zone_patch(patch: &StagesConfigurationPatch) -> Result<(), ValidationError> {
    if *patch == StagesConfigurationPatch::default() {
        return Err(ValidationError::field(
            "point",
            "give at least one of point, area, event_code, description",
        ));
    }
    if patch.point == Some(0) {
        return Err(ValidationError::field("point", "must be 1 or more"));
    }
    Ok(())
}

/// Edits a zone (configuration) of a device in Stages, named by its
/// configuration id or its point.
pub async fn update_zone(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    device_id: &DeviceId,
    zone: &str,
    patch: &StagesConfigurationPatch,
) -> Result<StagesConfiguration, OperationError> {
    check_zone_patch(patch)?;
    let (connection, api) = open(ports, caller, connection_id).await?;
    let up = upstream(&connection);
    let zones = api.list_configurations(device_id).await.map_err(&up)?;
    let config_id = find_zone(&zones, zone)?.config_id.clone();
    api.update_configuration(device_id, &config_id, patch)
        .await
        .map_err(up)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(id: &str, point: u32) -> StagesConfiguration {
        StagesConfiguration {
            config_id: id.into(),
            device_id: DeviceId::parse("D-1").unwrap(),
            fields: NewStagesConfiguration {
                point,
                ..Default::default()
            },
        }
    }

    #[test]
    fn a_zone_is_named_by_its_id_or_its_point() {
        let zones = [zone("Z-1", 1), zone("Z-2", 2), zone("Z-3", 2)];
        assert_eq!(find_zone(&zones, "Z-3").unwrap().config_id, "Z-3");
        assert_eq!(find_zone(&zones, "1").unwrap().config_id, "Z-1");
        assert!(matches!(
            find_zone(&zones, "2"),
            Err(OperationError::Conflict {
                code: "ambiguous_zone",
                ..
            })
        ));
        assert!(matches!(
            find_zone(&zones, "9"),
            Err(OperationError::NotFound(_))
        ));
        assert!(matches!(
            find_zone(&zones, "Z-9"),
            Err(OperationError::NotFound(_))
        ));
        assert!(check_zone_patch(&StagesConfigurationPatch::default()).is_err());
        let zero = StagesConfigurationPatch {
            point: Some(0),
            ..Default::default()
        };
        assert_eq!(
            check_zone_patch(&zero).unwrap_err().errors[0].field,
            "point"
        );
    }
}
