//! Field-by-field sync between billing records and Stages records: account
//! sync and record sync (S10, S11), updates from Stages (S18) and the values
//! Auto Sync pushes (S19) all go through the same pure steps here —
//! normalise, diff against the last synced values, merge — so they agree on
//! what "changed" means. Reading records and calling Stages stay with the
//! use cases in `link_sync` (and the other operations); nothing here does I/O.

pub mod decide;
pub mod fields;
pub mod merge;
pub mod normalize;

pub use decide::{decide, ChangeTimes, Decision};
pub use fields::{
    apply_to_billing_site, apply_to_billing_system, billing_site_value, billing_site_values,
    billing_system_value, billing_system_values, fields_for, find_field, stages_device_update,
    stages_device_value, stages_device_values, stages_site_patch, stages_site_value,
    stages_site_values, Direction, MappedField, StagesDeviceUpdate, UnknownField, Values,
    SITE_FIELDS, SYSTEM_FIELDS,
};
pub use merge::{
    account_sync, diff, merge, stages_callback_choices, FieldChoice, FieldDiff, FieldStatus,
    MergeError, MergePlan, Side, Snapshot,
};
pub use normalize::Normalizer;
