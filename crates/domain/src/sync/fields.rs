//! The field maps: which billing field is which Stages field, how each is
//! compared, which way it may travel and which ones Stages' own change
//! callbacks bring back (S18). Diff and merge work on these names only, so
//! reading and writing the records stays here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::billing::{SiteFields, SystemFields};
use crate::link::LinkKind;
use crate::stages::{StagesDeviceFields, StagesDevicePatch, StagesSite, StagesSitePatch};

use super::merge::FieldChoice;
use super::normalize::Normalizer;

/// Field name -> value, on one side of a link.
pub type Values = BTreeMap<String, String>;

/// Which side's value may overwrite the other's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Either side may update the other.
    Both,
    /// Only billing -> Stages.
    BillingToExternal,
    /// Only Stages -> billing.
    ExternalToBilling,
}

impl Direction {
    /// Whether a sync may take this choice for the field.
    pub fn allows(self, choice: FieldChoice) -> bool {
        matches!(
            (self, choice),
            (Self::Both, _)
                | (Self::BillingToExternal, FieldChoice::TakeBilling)
                | (Self::ExternalToBilling, FieldChoice::TakeExternal)
        )
    }
}

/// One synced field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappedField {
    /// The name in sync requests, diffs and snapshots; also the billing field's name.
    pub name: &'static str,
    /// The Stages field it maps to.
    pub stages_name: &'static str,
    pub normalizer: Normalizer,
    pub direction: Direction,
    /// Whether a Stages change callback (`site.updated`, `device.updated`) may
    /// carry the field into billing without anyone asking (S18).
    pub from_stages_callback: bool,
}

const fn field(
    name: &'static str,
    stages_name: &'static str,
    normalizer: Normalizer,
    from_stages_callback: bool,
) -> MappedField {
    MappedField {
        name,
        stages_name,
        normalizer,
        direction: Direction::Both,
        from_stages_callback,
    }
}

/// Billing site <-> Stages site. `site.updated` carries the address, info
/// and phone; the name travels only by push or sync.
pub const SITE_FIELDS: &[MappedField] = &[
    field("name", "name", Normalizer::Text, false),
    field("address1", "address1", Normalizer::Text, true),
    field("address2", "address2", Normalizer::Text, true),
    field("city", "city", Normalizer::Text, true),
    field("state", "state", Normalizer::State, true),
    field("zip", "zip", Normalizer::Zip, true),
    field("phone", "phone", Normalizer::Phone, true),
    field("info", "info", Normalizer::Text, true),
];

/// Billing system <-> Stages device. `device.updated` carries the
/// transmitter code (the billing account number) and the device type (the
/// billing panel type, a code of Stages' `device-types` list).
pub const SYSTEM_FIELDS: &[MappedField] = &[
    field("system_number", "transmitter_code", Normalizer::Code, true),
    field("panel_type", "device_type", Normalizer::Text, true),
    field("location", "location", Normalizer::Text, false),
    field("info", "info", Normalizer::Text, false),
];

/// The field map of a kind of link.
pub fn fields_for(kind: LinkKind) -> &'static [MappedField] {
    match kind {
        LinkKind::Site => SITE_FIELDS,
        LinkKind::System => SYSTEM_FIELDS,
    }
}

/// The field called `name` (sync name) in `fields`.
pub fn find_field<'a>(fields: &'a [MappedField], name: &str) -> Option<&'a MappedField> {
    fields.iter().find(|f| f.name == name)
}

/// A field name that is not in the map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field:?} is not a synced field")]
pub struct UnknownField {
    pub field: String,
}

fn unknown(field: &str) -> UnknownField {
    UnknownField {
        field: field.to_owned(),
    }
}

fn billing_site_slot<'a>(site: &'a mut SiteFields, field: &str) -> Option<&'a mut String> {
    Some(match field {
        "name" => &mut site.name,
        "address1" => &mut site.address1,
        "address2" => &mut site.address2,
        "city" => &mut site.city,
        "state" => &mut site.state,
        "zip" => &mut site.zip,
        "phone" => &mut site.phone,
        "info" => &mut site.info,
        _ => return None,
    })
}

fn billing_system_slot<'a>(system: &'a mut SystemFields, field: &str) -> Option<&'a mut String> {
    Some(match field {
        "system_number" => &mut system.system_number,
        "panel_type" => &mut system.panel_type,
        "location" => &mut system.location,
        "info" => &mut system.info,
        _ => return None,
    })
}

fn stages_site_patch_slot<'a>(
    patch: &'a mut StagesSitePatch,
    field: &str,
) -> Option<&'a mut Option<String>> {
    Some(match field {
        "name" => &mut patch.name,
        "address1" => &mut patch.address1,
        "address2" => &mut patch.address2,
        "city" => &mut patch.city,
        "state" => &mut patch.state,
        "zip" => &mut patch.zip,
        "phone" => &mut patch.phone,
        "info" => &mut patch.info,
        _ => return None,
    })
}

/// A billing site's value of a synced field; `None` for an unknown field.
pub fn billing_site_value(site: &SiteFields, field: &str) -> Option<String> {
    let v = match field {
        "name" => &site.name,
        "address1" => &site.address1,
        "address2" => &site.address2,
        "city" => &site.city,
        "state" => &site.state,
        "zip" => &site.zip,
        "phone" => &site.phone,
        "info" => &site.info,
        _ => return None,
    };
    Some(v.clone())
}

/// A Stages site's value of a synced field (by sync name); `None` for an unknown field.
pub fn stages_site_value(site: &StagesSite, field: &str) -> Option<String> {
    let v = match field {
        "name" => &site.name,
        "address1" => &site.address1,
        "address2" => &site.address2,
        "city" => &site.city,
        "state" => &site.state,
        "zip" => &site.zip,
        "phone" => &site.phone,
        "info" => &site.info,
        _ => return None,
    };
    Some(v.clone())
}

/// A billing system's value of a synced field; `None` for an unknown field.
pub fn billing_system_value(system: &SystemFields, field: &str) -> Option<String> {
    let v = match field {
        "system_number" => &system.system_number,
        "panel_type" => &system.panel_type,
        "location" => &system.location,
        "info" => &system.info,
        _ => return None,
    };
    Some(v.clone())
}

/// A Stages device's value of a synced field (by sync name: `system_number`
/// is the transmitter code); `None` for an unknown field.
pub fn stages_device_value(device: &StagesDeviceFields, field: &str) -> Option<String> {
    let v = match field {
        "system_number" => &device.transmitter_code,
        "panel_type" => &device.device_type,
        "location" => &device.location,
        "info" => &device.info,
        _ => return None,
    };
    Some(v.clone())
}

fn values_of(fields: &[MappedField], read: impl Fn(&str) -> Option<String>) -> Values {
    fields
        .iter()
        .filter_map(|f| read(f.name).map(|v| (f.name.to_owned(), v)))
        .collect()
}

/// Every `SITE_FIELDS` value of a billing site.
pub fn billing_site_values(site: &SiteFields) -> Values {
    values_of(SITE_FIELDS, |f| billing_site_value(site, f))
}

/// Every `SITE_FIELDS` value of a Stages site.
pub fn stages_site_values(site: &StagesSite) -> Values {
    values_of(SITE_FIELDS, |f| stages_site_value(site, f))
}

/// Every `SYSTEM_FIELDS` value of a billing system.
pub fn billing_system_values(system: &SystemFields) -> Values {
    values_of(SYSTEM_FIELDS, |f| billing_system_value(system, f))
}

/// Every `SYSTEM_FIELDS` value of a Stages device.
pub fn stages_device_values(device: &StagesDeviceFields) -> Values {
    values_of(SYSTEM_FIELDS, |f| stages_device_value(device, f))
}

/// The billing site with `values` written over it (a merge plan's `to_billing`).
pub fn apply_to_billing_site(
    site: &SiteFields,
    values: &Values,
) -> Result<SiteFields, UnknownField> {
    let mut out = site.clone();
    for (field, value) in values {
        *billing_site_slot(&mut out, field).ok_or_else(|| unknown(field))? = value.clone();
    }
    Ok(out)
}

/// The billing system with `values` written over it (a merge plan's `to_billing`).
pub fn apply_to_billing_system(
    system: &SystemFields,
    values: &Values,
) -> Result<SystemFields, UnknownField> {
    let mut out = system.clone();
    for (field, value) in values {
        *billing_system_slot(&mut out, field).ok_or_else(|| unknown(field))? = value.clone();
    }
    Ok(out)
}

/// The Stages site PATCH that writes `values` (a merge plan's `to_external`);
/// fields not in `values` are left out, so Stages leaves them unchanged.
pub fn stages_site_patch(values: &Values) -> Result<StagesSitePatch, UnknownField> {
    let mut patch = StagesSitePatch::default();
    for (field, value) in values {
        *stages_site_patch_slot(&mut patch, field).ok_or_else(|| unknown(field))? =
            Some(value.clone());
    }
    Ok(patch)
}

/// What writing values to a Stages device takes: a PATCH, and separately the
/// new transmitter code, which Stages changes only through change-xmit.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StagesDeviceUpdate {
    pub patch: StagesDevicePatch,
    pub new_transmitter_code: Option<String>,
}

impl StagesDeviceUpdate {
    /// Nothing to send.
    pub fn is_empty(&self) -> bool {
        self.new_transmitter_code.is_none() && self.patch == StagesDevicePatch::default()
    }
}

/// The Stages device update that writes `values` (a merge plan's `to_external`).
pub fn stages_device_update(values: &Values) -> Result<StagesDeviceUpdate, UnknownField> {
    let mut update = StagesDeviceUpdate::default();
    for (field, value) in values {
        let slot = match field.as_str() {
            "system_number" => &mut update.new_transmitter_code,
            "panel_type" => &mut update.patch.device_type,
            "location" => &mut update.patch.location,
            "info" => &mut update.patch.info,
            _ => return Err(unknown(field)),
        };
        *slot = Some(value.clone());
    }
    Ok(update)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::BillingId;

    fn site() -> SiteFields {
        SiteFields {
            customer_id: None,
            name: "Acme HQ".into(),
            address1: "1 Main St".into(),
            address2: "".into(),
            city: "Columbus".into(),
            state: "OH".into(),
            zip: "43004".into(),
            phone: "614-555-0101".into(),
            info: "gate code 12".into(),
        }
    }

    fn system() -> SystemFields {
        SystemFields {
            site_id: BillingId::parse("SITE-1").unwrap(),
            system_number: "4100001".into(),
            panel_type: "Vista".into(),
            location: "garage".into(),
            info: "".into(),
        }
    }

    #[test]
    fn every_field_is_readable_on_both_sides() {
        let stages: StagesSite =
            serde_json::from_value(serde_json::json!({"site_no": "1", "name": "x"})).unwrap();
        for f in SITE_FIELDS {
            assert!(billing_site_value(&site(), f.name).is_some(), "{}", f.name);
            assert!(stages_site_value(&stages, f.name).is_some(), "{}", f.name);
            assert!(stages_site_patch(&Values::from([(f.name.into(), "v".into())])).is_ok());
        }
        let device = StagesDeviceFields::default();
        for f in SYSTEM_FIELDS {
            assert!(
                billing_system_value(&system(), f.name).is_some(),
                "{}",
                f.name
            );
            assert!(stages_device_value(&device, f.name).is_some(), "{}", f.name);
        }
        assert_eq!(billing_site_value(&site(), "region"), None);
        assert_eq!(billing_site_values(&site()).len(), SITE_FIELDS.len());
        assert_eq!(billing_system_values(&system()).len(), SYSTEM_FIELDS.len());
    }

    #[test]
    fn callbacks_carry_address_info_phone_and_transmitter_code() {
        let carried: Vec<_> = SITE_FIELDS
            .iter()
            .filter(|f| f.from_stages_callback)
            .map(|f| f.name)
            .collect();
        assert_eq!(
            carried,
            ["address1", "address2", "city", "state", "zip", "phone", "info"]
        );
        let carried: Vec<_> = SYSTEM_FIELDS
            .iter()
            .filter(|f| f.from_stages_callback)
            .map(|f| f.stages_name)
            .collect();
        assert_eq!(carried, ["transmitter_code", "device_type"]);
    }

    #[test]
    fn values_apply_to_billing_records() {
        let values = Values::from([
            ("state".to_owned(), "Ohio".to_owned()),
            ("zip".to_owned(), "43004-1234".to_owned()),
        ]);
        let updated = apply_to_billing_site(&site(), &values).unwrap();
        assert_eq!(updated.state, "Ohio");
        assert_eq!(updated.zip, "43004-1234");
        assert_eq!(updated.name, "Acme HQ");

        let values = Values::from([("system_number".to_owned(), "4100002".to_owned())]);
        let updated = apply_to_billing_system(&system(), &values).unwrap();
        assert_eq!(updated.system_number, "4100002");
        assert_eq!(updated.panel_type, "Vista");

        let values = Values::from([("panel_type".to_owned(), "DSC-NEO".to_owned())]);
        let updated = apply_to_billing_system(&system(), &values).unwrap();
        assert_eq!(updated.panel_type, "DSC-NEO");

        let bad = Values::from([("site_id".to_owned(), "x".to_owned())]);
        assert_eq!(
            apply_to_billing_system(&system(), &bad).unwrap_err().field,
            "site_id"
        );
    }

    #[test]
    fn stages_patches_carry_only_the_given_fields() {
        let patch = stages_site_patch(&Values::from([(
            "phone".to_owned(),
            "614-555-0199".to_owned(),
        )]))
        .unwrap();
        assert_eq!(
            patch,
            StagesSitePatch {
                phone: Some("614-555-0199".into()),
                ..Default::default()
            }
        );
        assert!(stages_site_patch(&Values::from([("keys".into(), "x".into())])).is_err());
    }

    #[test]
    fn transmitter_code_goes_by_change_xmit_not_the_patch() {
        let update = stages_device_update(&Values::from([
            ("system_number".to_owned(), "4100009".to_owned()),
            ("location".to_owned(), "basement".to_owned()),
        ]))
        .unwrap();
        assert_eq!(update.new_transmitter_code.as_deref(), Some("4100009"));
        assert_eq!(update.patch.location.as_deref(), Some("basement"));
        assert!(!update.is_empty());
        // The panel type is the device type, sent in the patch.
        let update = stages_device_update(&Values::from([(
            "panel_type".to_owned(),
            "VISTA-20P".to_owned(),
        )]))
        .unwrap();
        assert_eq!(update.patch.device_type.as_deref(), Some("VISTA-20P"));
        assert!(stages_device_update(&Values::new()).unwrap().is_empty());
    }

    #[test]
    fn directions() {
        assert!(Direction::Both.allows(FieldChoice::TakeExternal));
        assert!(Direction::BillingToExternal.allows(FieldChoice::TakeBilling));
        assert!(!Direction::BillingToExternal.allows(FieldChoice::TakeExternal));
        assert!(!Direction::ExternalToBilling.allows(FieldChoice::TakeBilling));
        assert_eq!(fields_for(LinkKind::System), SYSTEM_FIELDS);
        assert_eq!(
            find_field(SYSTEM_FIELDS, "system_number")
                .unwrap()
                .normalizer,
            Normalizer::Code
        );
    }
}
