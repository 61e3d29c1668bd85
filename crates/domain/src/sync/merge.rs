//! Diff and three-way merge (S10, S11, B5). With the values of the last sync
//! kept per link (the `Snapshot`), a field changed on one side only merges
//! without asking; only a field changed on both sides to different values,
//! or one never synced, needs someone to choose. A choice is always one
//! side's value: there is no free-text merge value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::validation::ValidationError;

use super::fields::{Direction, MappedField, Values};
use super::normalize::Normalizer;

/// The values of a link's fields at its last sync, stored with the link
/// (as a JSON object of field name to value).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Snapshot(BTreeMap<String, String>);

impl Snapshot {
    /// The snapshot of a link whose two sides hold `values` (after a push or
    /// a link of equal records); only the fields of `fields` are kept.
    pub fn of(fields: &[MappedField], values: &Values) -> Self {
        Self(
            fields
                .iter()
                .filter_map(|f| values.get(f.name).map(|v| (f.name.to_owned(), v.clone())))
                .collect(),
        )
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn into_values(self) -> BTreeMap<String, String> {
        self.0
    }
}

impl From<BTreeMap<String, String>> for Snapshot {
    fn from(values: BTreeMap<String, String>) -> Self {
        Self(values)
    }
}

/// One side of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Billing,
    External,
}

impl Side {
    /// The choice that takes this side's value.
    pub fn choice(self) -> FieldChoice {
        match self {
            Self::Billing => FieldChoice::TakeBilling,
            Self::External => FieldChoice::TakeExternal,
        }
    }
}

/// Which side's value a field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldChoice {
    TakeBilling,
    TakeExternal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldStatus {
    /// Equal after normalisation: nothing to do.
    Equal,
    /// Only billing moved since the last sync.
    BillingChanged,
    /// Only Stages moved since the last sync.
    ExternalChanged,
    /// Both moved, to different values.
    Conflict,
    /// Different, and no last synced value to tell which side moved.
    Unknown,
}

/// One field of a diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDiff {
    pub field: String,
    pub normalizer: Normalizer,
    pub direction: Direction,
    pub billing: String,
    pub external: String,
    pub last_synced: Option<String>,
    pub status: FieldStatus,
    /// What a merge does when nobody chooses.
    pub proposed: Option<FieldChoice>,
}

impl FieldDiff {
    /// The value a choice takes.
    pub fn value(&self, choice: FieldChoice) -> &str {
        match choice {
            FieldChoice::TakeBilling => &self.billing,
            FieldChoice::TakeExternal => &self.external,
        }
    }

    /// Differs and has no proposal: stays as is unless someone chooses.
    pub fn needs_choice(&self) -> bool {
        self.status != FieldStatus::Equal && self.proposed.is_none()
    }
}

/// Compares the two sides field by field, against the last synced values
/// when there are some. A field missing from a values map is empty; a field
/// missing from the snapshot (e.g. one added to the map since) has no last
/// synced value, as if there were no snapshot.
///
/// - equal after normalisation: `Equal`, no proposal (also when both sides
///   changed to the same value);
/// - one side differs from the last synced value: that side changed, and its
///   value is proposed (if the field's direction lets it travel that way);
/// - both differ from it: `Conflict`, no proposal;
/// - no last synced value: `Unknown`, no proposal.
pub fn diff(
    fields: &[MappedField],
    billing: &Values,
    external: &Values,
    snapshot: Option<&Snapshot>,
) -> Vec<FieldDiff> {
    fields
        .iter()
        .map(|f| {
            let n = f.normalizer;
            let b = billing.get(f.name).cloned().unwrap_or_default();
            let e = external.get(f.name).cloned().unwrap_or_default();
            let last = snapshot.and_then(|s| s.get(f.name)).map(str::to_owned);
            let (status, proposed) = if n.equal(&b, &e) {
                (FieldStatus::Equal, None)
            } else {
                match &last {
                    None => (FieldStatus::Unknown, None),
                    Some(last) => match (!n.equal(&b, last), !n.equal(&e, last)) {
                        (true, false) => {
                            (FieldStatus::BillingChanged, Some(FieldChoice::TakeBilling))
                        }
                        (false, true) => (
                            FieldStatus::ExternalChanged,
                            Some(FieldChoice::TakeExternal),
                        ),
                        _ => (FieldStatus::Conflict, None),
                    },
                }
            };
            FieldDiff {
                field: f.name.to_owned(),
                normalizer: n,
                direction: f.direction,
                billing: b,
                external: e,
                last_synced: last,
                status,
                proposed: proposed.filter(|c| f.direction.allows(*c)),
            }
        })
        .collect()
}

/// What a sync writes, and what it leaves.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MergePlan {
    /// Values to write to the billing record: only fields that differ after
    /// normalisation.
    pub to_billing: Values,
    /// Values to write to Stages, likewise.
    pub to_external: Values,
    /// The merge column (S11's preview): every resolved field's value after
    /// the sync. Unresolved fields are absent.
    pub merged: Values,
    /// Fields that differ and were neither chosen nor proposed; left as they are.
    pub unresolved: Vec<String>,
    /// The snapshot to store once both writes succeeded: the merged values,
    /// and for unresolved fields their previous last synced value (so a
    /// conflict stays a conflict).
    pub new_snapshot: Snapshot,
}

impl MergePlan {
    /// Nothing to write on either side.
    pub fn writes_nothing(&self) -> bool {
        self.to_billing.is_empty() && self.to_external.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("no such field to sync: {}", .0.join(", "))]
    UnknownFields(Vec<String>),
    #[error("field {field} may not be synced that way ({choice:?})")]
    NotAllowed { field: String, choice: FieldChoice },
}

impl From<MergeError> for ValidationError {
    fn from(e: MergeError) -> Self {
        let mut out = ValidationError::default();
        match e {
            MergeError::UnknownFields(fields) => {
                for f in fields {
                    out.push(format!("fields.{f}"), "is not a synced field");
                }
            }
            MergeError::NotAllowed { field, choice } => {
                let way = match choice {
                    FieldChoice::TakeBilling => "from billing to Stages",
                    FieldChoice::TakeExternal => "from Stages to billing",
                };
                out.push(
                    format!("fields.{field}"),
                    format!("may not be synced {way}"),
                );
            }
        }
        out
    }
}

/// Plans a sync from a diff and the choices made.
///
/// Per field: the choice given for it; a field left out is "reset", which
/// means its proposal if it has one, else nothing (an `Equal` field stays
/// equal; a `Conflict` or `Unknown` one stays as is and is listed in
/// `unresolved`). A chosen value is written to the other side only when it
/// differs there after normalisation, so "OH" never overwrites "Ohio".
/// Choosing for an `Equal` field is allowed and writes nothing.
///
/// Refused, before anything is planned: a choice naming a field that is not
/// in the diff, and a choice against the field's direction.
pub fn merge(
    diffs: &[FieldDiff],
    choices: &BTreeMap<String, FieldChoice>,
) -> Result<MergePlan, MergeError> {
    let unknown: Vec<String> = choices
        .keys()
        .filter(|name| !diffs.iter().any(|d| &d.field == *name))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(MergeError::UnknownFields(unknown));
    }
    for d in diffs {
        if let Some(&choice) = choices.get(&d.field) {
            if !d.direction.allows(choice) {
                return Err(MergeError::NotAllowed {
                    field: d.field.clone(),
                    choice,
                });
            }
        }
    }

    let mut plan = MergePlan::default();
    let mut snapshot = BTreeMap::new();
    for d in diffs {
        let choice = choices.get(&d.field).copied().or(d.proposed);
        let value = match (choice, d.status) {
            (Some(choice), _) => {
                let value = d.value(choice).to_owned();
                let (target, current) = match choice {
                    FieldChoice::TakeBilling => (&mut plan.to_external, &d.external),
                    FieldChoice::TakeExternal => (&mut plan.to_billing, &d.billing),
                };
                if !d.normalizer.equal(current, &value) {
                    target.insert(d.field.clone(), value.clone());
                }
                value
            }
            // Equal without a choice: both hold the same value; keep billing's spelling.
            (None, FieldStatus::Equal) => d.billing.clone(),
            (None, _) => {
                plan.unresolved.push(d.field.clone());
                if let Some(last) = &d.last_synced {
                    snapshot.insert(d.field.clone(), last.clone());
                }
                continue;
            }
        };
        plan.merged.insert(d.field.clone(), value.clone());
        snapshot.insert(d.field.clone(), value);
    }
    plan.new_snapshot = Snapshot(snapshot);
    Ok(plan)
}

/// Account sync (S10): every field from one side ("Use AlarmBiller data" /
/// "Use Stages data"). Fields whose direction forbids it are left out, so
/// they fall back to their proposal.
pub fn account_sync(fields: &[MappedField], side: Side) -> BTreeMap<String, FieldChoice> {
    let choice = side.choice();
    fields
        .iter()
        .filter(|f| f.direction.allows(choice))
        .map(|f| (f.name.to_owned(), choice))
        .collect()
}

/// The choices for a Stages change callback (S18): the Stages value of every
/// carried field that callbacks may carry, even over a billing change since
/// the last sync (the callback is the newer word). Other carried names are
/// ignored. Fields not carried are not chosen; to leave them alone entirely,
/// merge only the diffs of the carried fields.
pub fn stages_callback_choices<'a>(
    fields: &[MappedField],
    carried: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, FieldChoice> {
    carried
        .into_iter()
        .filter_map(|name| fields.iter().find(|f| f.name == name))
        .filter(|f| f.from_stages_callback && f.direction.allows(FieldChoice::TakeExternal))
        .map(|f| (f.name.to_owned(), FieldChoice::TakeExternal))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::fields::{SITE_FIELDS, SYSTEM_FIELDS};
    use proptest::prelude::*;

    fn values(pairs: &[(&str, &str)]) -> Values {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn site(state: &str, zip: &str, phone: &str) -> Values {
        values(&[
            ("name", "Acme HQ"),
            ("address1", "1 Main St"),
            ("address2", ""),
            ("city", "Columbus"),
            ("state", state),
            ("zip", zip),
            ("phone", phone),
            ("info", "gate code 12"),
        ])
    }

    fn status_of<'a>(diffs: &'a [FieldDiff], field: &str) -> &'a FieldDiff {
        diffs.iter().find(|d| d.field == field).unwrap()
    }

    fn choices(pairs: &[(&str, FieldChoice)]) -> BTreeMap<String, FieldChoice> {
        pairs.iter().map(|(k, c)| ((*k).to_owned(), *c)).collect()
    }

    #[test]
    fn oh_against_ohio_is_no_update() {
        let billing = site("OH", "43004", "614-555-0101");
        let external = site("Ohio", "43004", "+1 (614) 555-0101");
        let diffs = diff(SITE_FIELDS, &billing, &external, None);
        assert!(diffs.iter().all(|d| d.status == FieldStatus::Equal));
        // Even when someone takes Stages' spelling, nothing is written.
        let plan = merge(&diffs, &account_sync(SITE_FIELDS, Side::External)).unwrap();
        assert!(plan.writes_nothing());
        assert_eq!(plan.merged["state"], "Ohio");
        assert!(plan.unresolved.is_empty());
    }

    #[test]
    fn a_zip_plus_4_from_stages_merges_without_asking() {
        let last = site("OH", "43004", "614-555-0101");
        let snapshot = Snapshot::of(SITE_FIELDS, &last);
        let billing = last.clone();
        let external = site("OH", "43004-1234", "614-555-0101");
        let diffs = diff(SITE_FIELDS, &billing, &external, Some(&snapshot));
        let zip = status_of(&diffs, "zip");
        assert_eq!(zip.status, FieldStatus::ExternalChanged);
        assert_eq!(zip.proposed, Some(FieldChoice::TakeExternal));
        assert_eq!(zip.last_synced.as_deref(), Some("43004"));

        let plan = merge(&diffs, &BTreeMap::new()).unwrap();
        assert_eq!(plan.to_billing, values(&[("zip", "43004-1234")]));
        assert!(plan.to_external.is_empty());
        assert!(plan.unresolved.is_empty());
        assert_eq!(plan.new_snapshot.get("zip"), Some("43004-1234"));
    }

    #[test]
    fn a_conflict_needs_a_choice() {
        let last = site("OH", "43004", "614-555-0101");
        let snapshot = Snapshot::of(SITE_FIELDS, &last);
        let billing = site("OH", "43004", "614-555-0199");
        let external = site("OH", "43004", "614-555-0123");
        let diffs = diff(SITE_FIELDS, &billing, &external, Some(&snapshot));
        let phone = status_of(&diffs, "phone");
        assert_eq!(phone.status, FieldStatus::Conflict);
        assert_eq!(phone.proposed, None);
        assert!(phone.needs_choice());

        let plan = merge(&diffs, &BTreeMap::new()).unwrap();
        assert_eq!(plan.unresolved, ["phone"]);
        assert!(plan.writes_nothing());
        assert!(!plan.merged.contains_key("phone"));
        // The conflict is kept for next time.
        assert_eq!(plan.new_snapshot.get("phone"), Some("614-555-0101"));

        let plan = merge(&diffs, &choices(&[("phone", FieldChoice::TakeExternal)])).unwrap();
        assert_eq!(plan.to_billing, values(&[("phone", "614-555-0123")]));
        assert!(plan.unresolved.is_empty());
    }

    #[test]
    fn both_sides_changed_alike_is_equal() {
        let snapshot = Snapshot::of(SITE_FIELDS, &site("OH", "43004", "614-555-0101"));
        let billing = site("OH", "43004", "614-555-0199");
        let external = site("OH", "43004", "(614) 555-0199");
        let diffs = diff(SITE_FIELDS, &billing, &external, Some(&snapshot));
        assert_eq!(status_of(&diffs, "phone").status, FieldStatus::Equal);
        let plan = merge(&diffs, &BTreeMap::new()).unwrap();
        assert!(plan.writes_nothing());
        assert_eq!(plan.new_snapshot.get("phone"), Some("614-555-0199"));
    }

    #[test]
    fn without_a_snapshot_differences_are_unknown() {
        let billing = site("OH", "43004", "614-555-0101");
        let external = site("PA", "43004", "614-555-0101");
        let diffs = diff(SITE_FIELDS, &billing, &external, None);
        let state = status_of(&diffs, "state");
        assert_eq!(state.status, FieldStatus::Unknown);
        assert_eq!(state.proposed, None);
        let plan = merge(&diffs, &BTreeMap::new()).unwrap();
        assert_eq!(plan.unresolved, ["state"]);
        assert_eq!(plan.new_snapshot.get("state"), None);
        assert_eq!(plan.new_snapshot.get("city"), Some("Columbus"));
    }

    #[test]
    fn an_explicit_choice_overrides_a_proposal() {
        let snapshot = Snapshot::of(SITE_FIELDS, &site("OH", "43004", "614-555-0101"));
        let billing = site("OH", "43004", "614-555-0101");
        let external = site("OH", "43004-1234", "614-555-0101");
        let diffs = diff(SITE_FIELDS, &billing, &external, Some(&snapshot));
        let plan = merge(&diffs, &choices(&[("zip", FieldChoice::TakeBilling)])).unwrap();
        assert_eq!(plan.to_external, values(&[("zip", "43004")]));
        assert!(plan.to_billing.is_empty());
    }

    #[test]
    fn unknown_fields_are_named() {
        let diffs = diff(
            SITE_FIELDS,
            &site("OH", "1", "2"),
            &site("OH", "1", "2"),
            None,
        );
        let err = merge(
            &diffs,
            &choices(&[
                ("keys", FieldChoice::TakeBilling),
                ("pets", FieldChoice::TakeBilling),
                ("city", FieldChoice::TakeBilling),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            MergeError::UnknownFields(vec!["keys".into(), "pets".into()])
        );
        let v: ValidationError = err.into();
        assert_eq!(v.errors[0].field, "fields.keys");
    }

    #[test]
    fn a_choice_against_the_direction_is_refused() {
        let mut diffs = diff(
            SITE_FIELDS,
            &site("OH", "1", "2"),
            &site("PA", "1", "2"),
            None,
        );
        for d in &mut diffs {
            d.direction = Direction::BillingToExternal;
        }
        let err = merge(&diffs, &choices(&[("state", FieldChoice::TakeExternal)])).unwrap_err();
        assert!(matches!(err, MergeError::NotAllowed { ref field, .. } if field == "state"));
        assert!(merge(&diffs, &choices(&[("state", FieldChoice::TakeBilling)])).is_ok());
    }

    #[test]
    fn account_sync_takes_every_field_from_one_side() {
        let c = account_sync(SYSTEM_FIELDS, Side::External);
        assert_eq!(c.len(), SYSTEM_FIELDS.len());
        assert!(c.values().all(|c| *c == FieldChoice::TakeExternal));

        let billing = values(&[
            ("system_number", "4100001"),
            ("panel_type", "VISTA-20P"),
            ("location", "garage"),
            ("info", ""),
        ]);
        let external = values(&[
            ("system_number", "4100002"),
            ("panel_type", "vista-20p"),
            ("location", "Garage"),
            ("info", "x"),
        ]);
        let diffs = diff(SYSTEM_FIELDS, &billing, &external, None);
        let plan = merge(&diffs, &c).unwrap();
        assert_eq!(
            plan.to_billing,
            values(&[("system_number", "4100002"), ("info", "x")])
        );
        let plan = merge(&diffs, &account_sync(SYSTEM_FIELDS, Side::Billing)).unwrap();
        assert_eq!(
            plan.to_external,
            values(&[("system_number", "4100001"), ("info", "")])
        );
    }

    #[test]
    fn callbacks_take_only_what_they_may_carry() {
        let c = stages_callback_choices(SITE_FIELDS, ["name", "zip", "phone", "bogus"]);
        assert_eq!(
            c,
            choices(&[
                ("phone", FieldChoice::TakeExternal),
                ("zip", FieldChoice::TakeExternal)
            ])
        );
        let c = stages_callback_choices(SYSTEM_FIELDS, ["system_number", "location"]);
        assert_eq!(c, choices(&[("system_number", FieldChoice::TakeExternal)]));
    }

    #[test]
    fn serde_forms() {
        assert_eq!(
            serde_json::to_string(&FieldChoice::TakeBilling).unwrap(),
            "\"take_billing\""
        );
        assert_eq!(
            serde_json::from_str::<FieldChoice>("\"take_external\"").unwrap(),
            FieldChoice::TakeExternal
        );
        assert_eq!(
            serde_json::to_string(&Side::External).unwrap(),
            "\"external\""
        );
        assert_eq!(
            serde_json::to_string(&FieldStatus::ExternalChanged).unwrap(),
            "\"external_changed\""
        );
        let s = Snapshot::of(SITE_FIELDS, &site("OH", "43004", "1"));
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.starts_with("{\"address1\":\"1 Main St\""), "{json}");
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), s);
    }

    // ---- properties ----

    /// A few values per kind, with spellings that normalise alike, so random
    /// picks collide often enough to exercise Equal as well as changes.
    fn pool(n: Normalizer) -> Vec<&'static str> {
        match n {
            Normalizer::Text => vec![
                "1 Main St",
                "1 main  st",
                "Elm Rd",
                " ELM rd",
                "",
                "Suite 2",
            ],
            Normalizer::State => vec![
                "OH",
                "Ohio",
                " ohio ",
                "PA",
                "pennsylvania",
                "ON",
                "Bavaria",
                "",
            ],
            Normalizer::Phone => vec![
                "614-555-0101",
                "+1 (614) 555-0101",
                "614.555.0101 x12",
                "6145550101 ext 12",
                "740-555-0199",
                "",
            ],
            Normalizer::Zip => vec![
                "43004",
                " 43004",
                "43004-1234",
                "430041234",
                "K1A 0B1",
                "k1a0b1",
                "",
            ],
            Normalizer::Code => vec!["4100001", " 4100001 ", "4100002", "ab12", "AB12", ""],
        }
    }

    fn values_for(fields: &'static [MappedField]) -> impl Strategy<Value = Values> {
        let per_field: Vec<_> = fields
            .iter()
            .map(|f| {
                prop::sample::select(pool(f.normalizer))
                    .prop_map(move |v| (f.name.to_owned(), v.to_owned()))
            })
            .collect();
        per_field.prop_map(|pairs| pairs.into_iter().collect())
    }

    /// `base` with some fields replaced by random pool values.
    fn edited(fields: &'static [MappedField], base: Values) -> impl Strategy<Value = Values> {
        (
            values_for(fields),
            prop::collection::vec(any::<bool>(), fields.len()),
        )
            .prop_map(move |(new, which)| {
                let mut out = base.clone();
                for (f, edit) in fields.iter().zip(which) {
                    if edit {
                        out.insert(f.name.to_owned(), new[f.name].clone());
                    }
                }
                out
            })
    }

    fn field_sets() -> impl Strategy<Value = &'static [MappedField]> {
        prop::sample::select(vec![SITE_FIELDS, SYSTEM_FIELDS])
    }

    fn apply(values: &Values, writes: &Values) -> Values {
        let mut out = values.clone();
        out.extend(writes.clone());
        out
    }

    fn all_equal(fields: &[MappedField], a: &Values, b: &Values) -> bool {
        fields
            .iter()
            .all(|f| f.normalizer.equal(&a[f.name], &b[f.name]))
    }

    fn random_choices(
        fields: &'static [MappedField],
    ) -> impl Strategy<Value = BTreeMap<String, FieldChoice>> {
        prop::collection::vec(
            prop::option::of(prop::sample::select(vec![
                FieldChoice::TakeBilling,
                FieldChoice::TakeExternal,
            ])),
            fields.len(),
        )
        .prop_map(move |picks| {
            fields
                .iter()
                .zip(picks)
                .filter_map(|(f, c)| c.map(|c| (f.name.to_owned(), c)))
                .collect()
        })
    }

    fn case() -> impl Strategy<
        Value = (
            &'static [MappedField],
            Values,
            Values,
            Option<Values>,
            BTreeMap<String, FieldChoice>,
        ),
    > {
        field_sets().prop_flat_map(|fields| {
            (
                Just(fields),
                values_for(fields),
                values_for(fields),
                prop::option::of(values_for(fields)),
                random_choices(fields),
            )
        })
    }

    fn synced_then_edited(
    ) -> impl Strategy<Value = (&'static [MappedField], Values, Values, Values)> {
        field_sets()
            .prop_flat_map(|fields| (Just(fields), values_for(fields)))
            .prop_flat_map(|(fields, base)| {
                (
                    Just(fields),
                    Just(base.clone()),
                    edited(fields, base.clone()),
                    edited(fields, base),
                )
            })
    }

    proptest! {
        #[test]
        fn merging_is_idempotent((fields, billing, external, last, chosen) in case()) {
            let snapshot = last.map(|l| Snapshot::of(fields, &l));
            let diffs = diff(fields, &billing, &external, snapshot.as_ref());
            let plan = merge(&diffs, &chosen).unwrap();
            let billing2 = apply(&billing, &plan.to_billing);
            let external2 = apply(&external, &plan.to_external);

            let again = diff(fields, &billing2, &external2, Some(&plan.new_snapshot));
            for d in &again {
                if plan.unresolved.contains(&d.field) {
                    prop_assert!(d.needs_choice(), "{d:?}");
                } else {
                    prop_assert_eq!(d.status, FieldStatus::Equal, "{:?}", d);
                    prop_assert!(d.normalizer.equal(&d.billing, &plan.merged[&d.field]));
                }
            }
            let plan2 = merge(&again, &BTreeMap::new()).unwrap();
            prop_assert!(plan2.writes_nothing(), "{plan2:?}");
            prop_assert_eq!(plan2.unresolved, plan.unresolved);
        }

        #[test]
        fn a_change_on_one_side_merges_without_a_choice(
            (fields, base, edit, _) in synced_then_edited(),
            billing_side in any::<bool>(),
        ) {
            let snapshot = Snapshot::of(fields, &base);
            let (billing, external) = if billing_side { (edit.clone(), base) } else { (base, edit.clone()) };
            let diffs = diff(fields, &billing, &external, Some(&snapshot));
            prop_assert!(diffs.iter().all(|d| !d.needs_choice()), "{diffs:?}");
            let plan = merge(&diffs, &BTreeMap::new()).unwrap();
            prop_assert!(plan.unresolved.is_empty());
            let billing2 = apply(&billing, &plan.to_billing);
            let external2 = apply(&external, &plan.to_external);
            prop_assert!(all_equal(fields, &billing2, &external2));
            prop_assert!(all_equal(fields, &billing2, &edit));
        }

        #[test]
        fn edits_on_both_sides_converge((fields, base, billing, external) in synced_then_edited()) {
            let snapshot = Snapshot::of(fields, &base);
            let diffs = diff(fields, &billing, &external, Some(&snapshot));
            let conflicts: BTreeMap<String, FieldChoice> = diffs
                .iter()
                .filter(|d| d.status == FieldStatus::Conflict)
                .map(|d| (d.field.clone(), FieldChoice::TakeBilling))
                .collect();
            let plan = merge(&diffs, &conflicts).unwrap();
            prop_assert!(plan.unresolved.is_empty());
            let billing2 = apply(&billing, &plan.to_billing);
            let external2 = apply(&external, &plan.to_external);
            prop_assert!(all_equal(fields, &billing2, &external2), "{billing2:?} vs {external2:?}");
            for f in fields {
                // A field billing changed keeps billing's value.
                if !f.normalizer.equal(&billing[f.name], &base[f.name]) {
                    prop_assert!(f.normalizer.equal(&billing2[f.name], &billing[f.name]));
                }
            }
        }
    }
}
