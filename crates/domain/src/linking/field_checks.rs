//! The checks of the Stages fields a push, a wizard or a Stages edit sends
//! (S5): values of the central station's choice lists, the transmitter code,
//! entry and exit periods.

use std::collections::{BTreeMap, HashSet};

use crate::connection::Connection;
use crate::operations::{upstream, OperationError};
use crate::stages::{LookupList, StagesApi, StagesDeviceFields, TransmitterCode};
use crate::validation::ValidationError;

use super::StagesSiteExtras;

/// Checks the fields backed by a central-station choice list.
pub(crate) async fn check_lookups(
    api: &dyn StagesApi,
    connection: &Connection,
    checks: Vec<(String, LookupList, String)>,
) -> Result<(), OperationError> {
    let mut lists: BTreeMap<&'static str, HashSet<String>> = BTreeMap::new();
    let mut v = ValidationError::default();
    for (field, list, value) in checks {
        if value.is_empty() {
            continue;
        }
        if !lists.contains_key(list.as_str()) {
            let items = api.lookup(list).await.map_err(upstream(connection))?;
            lists.insert(list.as_str(), items.into_iter().map(|i| i.code).collect());
        }
        if !lists[list.as_str()].contains(&value) {
            v.push(
                field,
                format!(
                    "'{value}' is not in the central station's {} list",
                    list.as_str()
                ),
            );
        }
    }
    v.into_result().map_err(OperationError::Invalid)
}

pub(crate) fn site_lookup_checks(
    prefix: &str,
    extras: &StagesSiteExtras,
) -> Vec<(String, LookupList, String)> {
    [
        ("region", LookupList::Regions, &extras.region),
        ("time_zone", LookupList::TimeZones, &extras.time_zone),
        ("site_type", LookupList::SiteTypes, &extras.site_type),
        (
            "dispatch_type",
            LookupList::DispatchTypes,
            &extras.dispatch_type,
        ),
        ("ul_code", LookupList::UlCodes, &extras.ul_code),
        ("authority", LookupList::Authorities, &extras.authority),
    ]
    .into_iter()
    .map(|(f, l, v)| (format!("{prefix}.{f}"), l, v.clone()))
    .collect()
}

pub(crate) fn device_lookup_checks(
    prefix: &str,
    d: &StagesDeviceFields,
) -> Vec<(String, LookupList, String)> {
    [
        ("device_type", LookupList::DeviceTypes, &d.device_type),
        ("oos_category", LookupList::OosCategories, &d.oos_category),
        (
            "timer_test_type",
            LookupList::TimerTestTypes,
            &d.timer_test_type,
        ),
        ("comm_type", LookupList::CommTypes, &d.comm_type),
        ("lid_type", LookupList::LidTypes, &d.lid_type),
    ]
    .into_iter()
    .map(|(f, l, v)| (format!("{prefix}.{f}"), l, v.clone()))
    .collect()
}

/// `mm:ss` with seconds below 60.
pub(crate) fn is_period(s: &str) -> bool {
    let Some((m, sec)) = s.split_once(':') else {
        return false;
    };
    m.len() == 2
        && sec.len() == 2
        && m.bytes().all(|b| b.is_ascii_digit())
        && sec.bytes().all(|b| b.is_ascii_digit())
        && sec < "60"
}

pub(crate) fn check_device_fields(v: &mut ValidationError, prefix: &str, d: &StagesDeviceFields) {
    if let Err(why) = TransmitterCode::parse_trimmed(&d.transmitter_code) {
        v.push(format!("{prefix}.transmitter_code"), why);
    }
    for (field, value) in [
        ("entry_period", &d.entry_period),
        ("exit_period", &d.exit_period),
    ] {
        if !value.is_empty() && !is_period(value) {
            v.push(format!("{prefix}.{field}"), "must be mm:ss");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_minutes_and_seconds() {
        assert!(is_period("01:30"));
        assert!(is_period("00:00"));
        for bad in ["1:30", "01:60", "0130", "ab:cd", "01:3"] {
            assert!(!is_period(bad), "{bad}");
        }
    }
}
