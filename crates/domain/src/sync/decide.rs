//! The one sync decision (S11, S18, S19): for each field, from billing's
//! value, Stages' value and the last synced one, whether to push, to pull, to
//! leave it, or to hold it as a conflict. Auto Sync pushes, applied Stages
//! callbacks, record sync and conflict resolution all ask this, so one rule
//! settles a field however the change reached us: which job happens to run
//! first no longer decides who wins.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::connection::ConflictPolicy;

use super::fields::MappedField;
use super::merge::{FieldChoice, FieldDiff, FieldStatus};

/// What an automatic sync does with one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Equal, or a change that waits for someone to sync (a field Stages'
    /// callbacks do not carry, S18).
    Leave,
    /// Billing's value goes to Stages.
    Push,
    /// Stages' value comes to billing.
    Pull,
    /// Both sides changed it since the last sync: neither side changes, the
    /// link shows the conflict until someone resolves it.
    Hold,
}

/// When each side's record last changed, for `ConflictPolicy::NewestWins`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChangeTimes {
    pub billing: Option<DateTime<Utc>>,
    pub stages: Option<DateTime<Utc>>,
}

/// The decision for one field of a diff.
///
/// - equal after normalisation: leave it;
/// - changed on billing's side only: push;
/// - changed on Stages' side only: pull, when Stages' callbacks carry the
///   field (S18); otherwise it waits for a record sync;
/// - changed on both sides since the last sync: a conflict, settled by the
///   connection's policy (`hold` by default: never overwritten silently);
/// - different with no last synced value (never synced): billing's value is
///   pushed, or Stages' pulled under `stages_wins`.
///
/// A direction the field may not travel is never taken: such a push or pull
/// becomes `Leave`.
pub fn decide(
    field: &MappedField,
    diff: &FieldDiff,
    policy: ConflictPolicy,
    times: ChangeTimes,
) -> Decision {
    let decision = match diff.status {
        FieldStatus::Equal => Decision::Leave,
        FieldStatus::BillingChanged => Decision::Push,
        FieldStatus::ExternalChanged if field.from_stages_callback => Decision::Pull,
        FieldStatus::ExternalChanged => Decision::Leave,
        // Never synced (a link made between existing records, or pointed at
        // another record): no edit of either side can be lost, and billing,
        // the record of reference, is taken unless the connection says
        // Stages wins. The first settle gives the field its base.
        FieldStatus::Unknown if policy == ConflictPolicy::StagesWins => Decision::Pull,
        FieldStatus::Unknown => Decision::Push,
        FieldStatus::Conflict => match policy {
            ConflictPolicy::Hold => Decision::Hold,
            ConflictPolicy::BillingWins => Decision::Push,
            ConflictPolicy::StagesWins => Decision::Pull,
            ConflictPolicy::NewestWins => match (times.billing, times.stages) {
                (Some(b), Some(s)) if b > s => Decision::Push,
                (Some(b), Some(s)) if s > b => Decision::Pull,
                _ => Decision::Hold,
            },
        },
    };
    let allowed = |choice| field.direction.allows(choice);
    match decision {
        Decision::Push if !allowed(FieldChoice::TakeBilling) => Decision::Leave,
        Decision::Pull if !allowed(FieldChoice::TakeExternal) => Decision::Leave,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::fields::{find_field, SITE_FIELDS, SYSTEM_FIELDS};
    use crate::sync::merge::{diff, Snapshot};
    use crate::sync::Values;

    fn values(pairs: &[(&str, &str)]) -> Values {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The decision for `field` of a site whose billing, Stages and last
    /// synced values are given.
    fn site(
        field: &str,
        billing: &str,
        stages: &str,
        synced: Option<&str>,
        policy: ConflictPolicy,
        times: ChangeTimes,
    ) -> Decision {
        let f = find_field(SITE_FIELDS, field).unwrap();
        let snapshot = synced.map(|s| Snapshot::from(values(&[(field, s)])));
        let d = diff(
            std::slice::from_ref(f),
            &values(&[(field, billing)]),
            &values(&[(field, stages)]),
            snapshot.as_ref(),
        );
        decide(f, &d[0], policy, times)
    }

    const NONE: ChangeTimes = ChangeTimes {
        billing: None,
        stages: None,
    };

    #[test]
    fn a_field_changed_on_one_side_merges() {
        let hold = ConflictPolicy::Hold;
        assert_eq!(
            site("city", "Dayton", "Columbus", Some("Columbus"), hold, NONE),
            Decision::Push
        );
        assert_eq!(
            site("city", "Columbus", "Dayton", Some("Columbus"), hold, NONE),
            Decision::Pull
        );
        assert_eq!(
            site("state", "Ohio", "OH", Some("PA"), hold, NONE),
            Decision::Leave,
            "equal after normalisation"
        );
    }

    #[test]
    fn a_field_changed_on_both_sides_is_held_unless_the_policy_settles_it() {
        let both = |policy, times| site("city", "Dayton", "Akron", Some("Columbus"), policy, times);
        assert_eq!(both(ConflictPolicy::Hold, NONE), Decision::Hold);
        assert_eq!(both(ConflictPolicy::BillingWins, NONE), Decision::Push);
        assert_eq!(both(ConflictPolicy::StagesWins, NONE), Decision::Pull);
        let t = |s: &str| Some(s.parse::<DateTime<Utc>>().unwrap());
        let billing_newer = ChangeTimes {
            billing: t("2025-01-02T00:00:00Z"),
            stages: t("2025-01-01T00:00:00Z"),
        };
        let stages_newer = ChangeTimes {
            billing: t("2025-01-01T00:00:00Z"),
            stages: t("2025-01-02T00:00:00Z"),
        };
        assert_eq!(
            both(ConflictPolicy::NewestWins, billing_newer),
            Decision::Push
        );
        assert_eq!(
            both(ConflictPolicy::NewestWins, stages_newer),
            Decision::Pull
        );
        assert_eq!(
            both(ConflictPolicy::NewestWins, NONE),
            Decision::Hold,
            "no times: held"
        );
        // Never synced: no edit to lose; billing is the record of reference.
        let never = |policy| site("city", "Dayton", "Akron", None, policy, NONE);
        assert_eq!(never(ConflictPolicy::Hold), Decision::Push);
        assert_eq!(never(ConflictPolicy::StagesWins), Decision::Pull);
    }

    #[test]
    fn a_stages_change_that_callbacks_do_not_carry_waits_for_a_sync() {
        // The site name travels by push or sync only (S18).
        assert_eq!(
            site(
                "name",
                "Home",
                "Shop",
                Some("Home"),
                ConflictPolicy::Hold,
                NONE
            ),
            Decision::Leave
        );
        let location = find_field(SYSTEM_FIELDS, "location").unwrap();
        let d = diff(
            std::slice::from_ref(location),
            &values(&[("location", "Basement")]),
            &values(&[("location", "Garage")]),
            Some(&Snapshot::from(values(&[("location", "Basement")]))),
        );
        assert_eq!(
            decide(location, &d[0], ConflictPolicy::Hold, NONE),
            Decision::Leave
        );
    }
}
