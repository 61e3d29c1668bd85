//! The central station's choice lists, fixed for the simulator.
//!
//! Fields backed by a list accept only its codes (or empty), so a client that
//! sends a billing-side label instead of a Stages code fails here, not in
//! production.

use crate::wire::LookupItem;

pub const DEFAULT_TIME_ZONE: &str = "America/New_York";

const REGIONS: &[(&str, &str)] = &[
    ("NE", "Northeast"),
    ("SE", "Southeast"),
    ("MW", "Midwest"),
    ("SW", "Southwest"),
    ("W", "West"),
    ("NW", "Northwest"),
    ("CA", "Canada"),
];

const TIME_ZONES: &[(&str, &str)] = &[
    ("America/New_York", "Eastern"),
    ("America/Chicago", "Central"),
    ("America/Denver", "Mountain"),
    ("America/Phoenix", "Mountain (no DST)"),
    ("America/Los_Angeles", "Pacific"),
    ("America/Anchorage", "Alaska"),
    ("Pacific/Honolulu", "Hawaii"),
    ("America/Toronto", "Eastern (Canada)"),
];

const SITE_TYPES: &[(&str, &str)] = &[
    ("RES", "Residential"),
    ("COM", "Commercial"),
    ("IND", "Industrial"),
    ("GOV", "Government"),
    ("EDU", "School"),
    ("MED", "Medical"),
];

const DISPATCH_TYPES: &[(&str, &str)] = &[
    ("STD", "Standard"),
    ("PRI", "Priority"),
    ("ECV", "Enhanced call verification"),
    ("VRF", "Verified response only"),
    ("FIRE", "Fire first"),
];

const UL_CODES: &[(&str, &str)] = &[
    ("NONE", "Not UL certificated"),
    ("AA", "Central station burglar alarm, grade AA"),
    ("A", "Central station burglar alarm, grade A"),
    ("B", "Central station burglar alarm, grade B"),
    ("FIRE", "Central station fire alarm"),
];

const AUTHORITIES: &[(&str, &str)] = &[
    ("OWNER", "Owner: full authority"),
    ("MGR", "Manager: may cancel and schedule"),
    ("KEY", "Key holder: respond only"),
    ("EMERG", "Emergency contact: notify only"),
    ("VIEW", "View only"),
];

const OOS_CATEGORIES: &[(&str, &str)] = &[
    ("NONPAY", "Non-payment"),
    ("CANCEL", "Cancelled"),
    ("CONSTR", "Under construction"),
    ("SEASON", "Seasonal shutdown"),
    ("REPAIR", "Awaiting repair"),
];

const DEVICE_TYPES: &[(&str, &str)] = &[
    ("DSC-PC1864", "DSC PowerSeries PC1864"),
    ("DSC-NEO", "DSC PowerSeries Neo"),
    ("VISTA-20P", "Honeywell Vista 20P"),
    ("VISTA-128", "Honeywell Vista 128BPT"),
    ("DMP-XR150", "DMP XR150"),
    ("BOSCH-B5512", "Bosch B5512"),
    ("QOLSYS-IQ4", "Qolsys IQ Panel 4"),
    ("2GIG-GC3", "2GIG GC3"),
    ("NAPCO-GEM", "Napco Gemini P3200"),
    ("FIRE-LITE", "Fire-Lite MS-9200UDLS"),
];

const TIMER_TEST_TYPES: &[(&str, &str)] = &[
    ("NONE", "No timer test"),
    ("DAILY", "Daily"),
    ("WEEKLY", "Weekly"),
    ("MONTHLY", "Monthly"),
    ("INTERVAL", "Custom interval"),
];

const COMM_TYPES: &[(&str, &str)] = &[
    ("POTS", "Telephone line"),
    ("CELL", "Cellular"),
    ("IP", "Internet"),
    ("CELL-IP", "Cellular and Internet"),
    ("RADIO", "Long-range radio"),
];

const LID_TYPES: &[(&str, &str)] = &[
    ("2WAY", "Two-way voice"),
    ("LISTEN", "Listen-in only"),
    ("VIDEO", "Video verification"),
];

/// Every list: (path segment, codes and descriptions).
pub const LISTS: &[(&str, &[(&str, &str)])] = &[
    ("regions", REGIONS),
    ("time-zones", TIME_ZONES),
    ("site-types", SITE_TYPES),
    ("dispatch-types", DISPATCH_TYPES),
    ("ul-codes", UL_CODES),
    ("authorities", AUTHORITIES),
    ("oos-categories", OOS_CATEGORIES),
    ("device-types", DEVICE_TYPES),
    ("timer-test-types", TIMER_TEST_TYPES),
    ("comm-types", COMM_TYPES),
    ("lid-types", LID_TYPES),
];

/// The raw entries of a list, by path segment.
pub fn entries(list: &str) -> Option<&'static [(&'static str, &'static str)]> {
    LISTS
        .iter()
        .find(|(name, _)| *name == list)
        .map(|(_, e)| *e)
}

/// The items of a list, by path segment (e.g. `site-types`).
pub fn items(list: &str) -> Option<Vec<LookupItem>> {
    entries(list).map(|e| {
        e.iter()
            .map(|(code, description)| LookupItem {
                code: (*code).to_string(),
                description: (*description).to_string(),
            })
            .collect()
    })
}

/// Whether `code` is allowed for a field backed by `list`: empty, or one of its codes.
pub fn allows(list: &str, code: &str) -> bool {
    code.is_empty() || entries(list).is_some_and(|e| e.iter().any(|(c, _)| *c == code))
}

/// The codes of a list (for seeding).
pub fn codes(list: &str) -> Vec<&'static str> {
    entries(list)
        .map(|e| e.iter().map(|(c, _)| *c).collect())
        .unwrap_or_default()
}
