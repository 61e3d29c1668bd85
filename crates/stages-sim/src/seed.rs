//! Deterministic sample data: plausible US sites with devices, zones,
//! contacts, a note and some signal history, so that link, search and paging
//! work can be tried against a populated central station.
//!
//! The same `n` always gives the same records (only timestamps follow the
//! clock), which lets tests name seeded sites and transmitter codes.

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::db::Db;
use crate::lookups;
use crate::wire::*;

/// The RNG seed of the sample data.
pub const SEED: u64 = 0x5eed_57a6;

/// Seeded transmitter codes are increasing numbers above this one.
pub const FIRST_TRANSMITTER_CODE: u64 = 4_100_001;

/// (city, state, zip, area code, time zone, region)
const CITIES: &[(&str, &str, &str, &str, &str, &str)] = &[
    ("New York", "NY", "10001", "212", "America/New_York", "NE"),
    ("Brooklyn", "NY", "11201", "718", "America/New_York", "NE"),
    ("Boston", "MA", "02108", "617", "America/New_York", "NE"),
    (
        "Philadelphia",
        "PA",
        "19103",
        "215",
        "America/New_York",
        "NE",
    ),
    ("Pittsburgh", "PA", "15222", "412", "America/New_York", "NE"),
    ("Newark", "NJ", "07102", "973", "America/New_York", "NE"),
    ("Hartford", "CT", "06103", "860", "America/New_York", "NE"),
    ("Baltimore", "MD", "21201", "410", "America/New_York", "NE"),
    ("Richmond", "VA", "23219", "804", "America/New_York", "SE"),
    ("Charlotte", "NC", "28202", "704", "America/New_York", "SE"),
    ("Raleigh", "NC", "27601", "919", "America/New_York", "SE"),
    ("Atlanta", "GA", "30303", "404", "America/New_York", "SE"),
    ("Miami", "FL", "33130", "305", "America/New_York", "SE"),
    ("Orlando", "FL", "32801", "407", "America/New_York", "SE"),
    ("Tampa", "FL", "33602", "813", "America/New_York", "SE"),
    ("Nashville", "TN", "37203", "615", "America/Chicago", "SE"),
    ("New Orleans", "LA", "70112", "504", "America/Chicago", "SE"),
    ("Columbus", "OH", "43215", "614", "America/New_York", "MW"),
    ("Cleveland", "OH", "44113", "216", "America/New_York", "MW"),
    ("Detroit", "MI", "48226", "313", "America/New_York", "MW"),
    (
        "Indianapolis",
        "IN",
        "46204",
        "317",
        "America/New_York",
        "MW",
    ),
    ("Chicago", "IL", "60602", "312", "America/Chicago", "MW"),
    ("Milwaukee", "WI", "53202", "414", "America/Chicago", "MW"),
    ("Minneapolis", "MN", "55401", "612", "America/Chicago", "MW"),
    ("St. Louis", "MO", "63101", "314", "America/Chicago", "MW"),
    ("Kansas City", "MO", "64105", "816", "America/Chicago", "MW"),
    ("Omaha", "NE", "68102", "402", "America/Chicago", "MW"),
    ("Dallas", "TX", "75201", "214", "America/Chicago", "SW"),
    ("Houston", "TX", "77002", "713", "America/Chicago", "SW"),
    ("Austin", "TX", "78701", "512", "America/Chicago", "SW"),
    ("San Antonio", "TX", "78205", "210", "America/Chicago", "SW"),
    (
        "Oklahoma City",
        "OK",
        "73102",
        "405",
        "America/Chicago",
        "SW",
    ),
    ("Albuquerque", "NM", "87102", "505", "America/Denver", "SW"),
    ("Phoenix", "AZ", "85004", "602", "America/Phoenix", "SW"),
    ("Tucson", "AZ", "85701", "520", "America/Phoenix", "SW"),
    ("Denver", "CO", "80202", "303", "America/Denver", "W"),
    (
        "Salt Lake City",
        "UT",
        "84101",
        "801",
        "America/Denver",
        "W",
    ),
    (
        "Las Vegas",
        "NV",
        "89101",
        "702",
        "America/Los_Angeles",
        "W",
    ),
    (
        "Los Angeles",
        "CA",
        "90012",
        "213",
        "America/Los_Angeles",
        "W",
    ),
    (
        "San Diego",
        "CA",
        "92101",
        "619",
        "America/Los_Angeles",
        "W",
    ),
    ("San Jose", "CA", "95113", "408", "America/Los_Angeles", "W"),
    (
        "Sacramento",
        "CA",
        "95814",
        "916",
        "America/Los_Angeles",
        "W",
    ),
    ("Honolulu", "HI", "96813", "808", "Pacific/Honolulu", "W"),
    (
        "Portland",
        "OR",
        "97204",
        "503",
        "America/Los_Angeles",
        "NW",
    ),
    ("Seattle", "WA", "98101", "206", "America/Los_Angeles", "NW"),
    ("Spokane", "WA", "99201", "509", "America/Los_Angeles", "NW"),
    ("Boise", "ID", "83702", "208", "America/Denver", "NW"),
    ("Anchorage", "AK", "99501", "907", "America/Anchorage", "NW"),
];

const STREETS: &[&str] = &[
    "Main St",
    "Oak Ave",
    "Maple Dr",
    "Cedar Ln",
    "Park Ave",
    "Washington Blvd",
    "Lake Rd",
    "Hillcrest Dr",
    "Elm St",
    "Pine St",
    "Church St",
    "Highland Ave",
    "Ridge Rd",
    "Jefferson St",
    "Lincoln Ave",
    "Franklin St",
    "Spring St",
    "Chestnut St",
    "Walnut St",
    "Meadow Ln",
    "River Rd",
    "Mill St",
    "Center St",
    "Sunset Dr",
];

const FIRST_NAMES: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Carlos",
    "Maria",
    "Daniel",
    "Karen",
    "Kevin",
    "Nancy",
    "Brian",
    "Lisa",
    "Anthony",
    "Angela",
];

const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Walker",
    "Young",
    "King",
];

const BUSINESSES: &[&str] = &[
    "Dental Group",
    "Family Pharmacy",
    "Auto Repair",
    "Hardware",
    "Insurance Agency",
    "Bakery",
    "Law Office",
    "Veterinary Clinic",
    "Liquor Store",
    "Jewelers",
    "Storage",
    "Pediatrics",
];

const ZONES: &[(&str, &str)] = &[
    ("E130", "Front door"),
    ("E130", "Back door"),
    ("E130", "Garage entry door"),
    ("E132", "Living room motion"),
    ("E131", "Basement windows"),
    ("E110", "Smoke detector hallway"),
    ("E111", "Smoke detector upstairs"),
    ("E162", "CO detector"),
    ("E154", "Water sensor basement"),
    ("E120", "Panic button bedroom"),
    ("E137", "Panel tamper"),
];

const NOTES: &[&str] = &[
    "Gate code is #2468.",
    "Large dog in the back yard; responders use the front entrance.",
    "Key lockbox on the side porch.",
    "Owner travels often; call the mobile number first.",
    "Business closes at 6 pm weekdays, closed Sundays.",
    "Construction next door; expect false alarms from the rear motion.",
];

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    // The lists are non-empty constants.
    items.choose(rng).unwrap_or(&items[0])
}

fn phone(rng: &mut StdRng, area: &str) -> String {
    format!(
        "({area}) {}-{:04}",
        rng.gen_range(201..=989),
        rng.gen_range(0..10000)
    )
}

/// Adds `n` sample sites to `db`, as of `now`.
pub fn seed(db: &mut Db, n: usize, now: DateTime<Utc>) {
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut next_code = FIRST_TRANSMITTER_CODE;
    let device_types = lookups::codes("device-types");
    for _ in 0..n {
        let (city, state, zip, area, tz, region) = *pick(&mut rng, CITIES);
        let last = *pick(&mut rng, LAST_NAMES);
        let first = *pick(&mut rng, FIRST_NAMES);
        let street = *pick(&mut rng, STREETS);
        let commercial = rng.gen_bool(0.3);
        let name = if commercial {
            format!("{last} {}", pick(&mut rng, BUSINESSES))
        } else {
            format!("{last} Residence")
        };
        let address2 = match rng.gen_range(0..10) {
            0 => format!(
                "Apt {}{}",
                rng.gen_range(1..20),
                ["A", "B", "C"][rng.gen_range(0..3)]
            ),
            1 if commercial => format!("Suite {}", rng.gen_range(1..6) * 100),
            _ => String::new(),
        };
        let fields = SiteFields {
            name,
            address1: format!("{} {street}", rng.gen_range(10..9900)),
            address2,
            city: city.to_string(),
            state: state.to_string(),
            zip: zip.to_string(),
            phone: phone(&mut rng, area),
            info: if commercial {
                "Panel in the back office".to_string()
            } else {
                String::new()
            },
            region: region.to_string(),
            time_zone: tz.to_string(),
            site_type: if commercial { "COM" } else { "RES" }.to_string(),
            dispatch_type: if rng.gen_bool(0.2) { "ECV" } else { "STD" }.to_string(),
            permit: if rng.gen_bool(0.4) {
                format!(
                    "P-{}-{:05}",
                    rng.gen_range(2015..2025),
                    rng.gen_range(0..100000)
                )
            } else {
                String::new()
            },
            subdivision: if !commercial && rng.gen_bool(0.3) {
                format!("{} Estates", pick(&mut rng, LAST_NAMES))
            } else {
                String::new()
            },
            pets: if !commercial && rng.gen_bool(0.3) {
                "Dog (friendly)".to_string()
            } else {
                String::new()
            },
            keys: rng.gen_bool(0.25),
            ul_code: if commercial { "A" } else { "NONE" }.to_string(),
            authority: "OWNER".to_string(),
            billing_id: None,
        };

        let n_devices = rng.gen_range(1..=3);
        let mut devices = Vec::with_capacity(n_devices);
        let mut primary = String::new();
        for i in 0..n_devices {
            next_code += rng.gen_range(1..=9);
            let code = next_code.to_string();
            let zones = (1..=rng.gen_range(2..=6u32))
                .map(|point| {
                    let (event_code, description) = *pick(&mut rng, ZONES);
                    NewConfiguration {
                        point,
                        area: "1".to_string(),
                        event_code: event_code.to_string(),
                        description: description.to_string(),
                    }
                })
                .collect();
            let backup = i > 0;
            devices.push(NewDevice {
                fields: DeviceFields {
                    transmitter_code: code.clone(),
                    device_type: pick(&mut rng, &device_types).to_string(),
                    timer_test_type: "DAILY".to_string(),
                    timer_test_days: Some(1),
                    timer_test_hours: Some(0),
                    timer_test_minutes: Some(0),
                    comm_type: if backup {
                        "CELL"
                    } else {
                        *pick(&mut rng, &["POTS", "IP", "CELL-IP"])
                    }
                    .to_string(),
                    primary_xmit: if backup {
                        primary.clone()
                    } else {
                        String::new()
                    },
                    line_security: if commercial { "Encrypted" } else { "" }.to_string(),
                    lid_type: if rng.gen_bool(0.2) { "2WAY" } else { "" }.to_string(),
                    signal_format: pick(&mut rng, &["Contact ID", "SIA DC-09", "SIA"]).to_string(),
                    entry_period: "00:30".to_string(),
                    exit_period: "01:00".to_string(),
                    location: pick(
                        &mut rng,
                        &["Basement", "Garage", "Hall closet", "Utility room"],
                    )
                    .to_string(),
                    ..DeviceFields::default()
                },
                configurations: zones,
            });
            if !backup {
                primary = code;
            }
        }

        let n_contacts = rng.gen_range(1..=3);
        let contacts = (0..n_contacts)
            .map(|i| {
                let (cfirst, clast) = if i == 0 {
                    (first, last)
                } else {
                    (*pick(&mut rng, FIRST_NAMES), *pick(&mut rng, LAST_NAMES))
                };
                let relation = if i == 0 {
                    if commercial {
                        "Manager"
                    } else {
                        "Owner"
                    }
                } else {
                    *pick(
                        &mut rng,
                        &["Spouse", "Neighbor", "Employee", "Son", "Daughter"],
                    )
                };
                let mut phones = vec![ContactPhone {
                    kind: "mobile".to_string(),
                    number: phone(&mut rng, area),
                }];
                if rng.gen_bool(0.4) {
                    phones.push(ContactPhone {
                        kind: if commercial { "work" } else { "home" }.to_string(),
                        number: phone(&mut rng, area),
                    });
                }
                NewContact {
                    fields: ContactFields {
                        name: format!("{cfirst} {clast}"),
                        relation: relation.to_string(),
                        authority: if i == 0 { "OWNER" } else { "KEY" }.to_string(),
                        phones,
                        email: format!(
                            "{}.{}@example.com",
                            cfirst.to_lowercase(),
                            clast.to_lowercase()
                        ),
                        has_keys: i == 0 || rng.gen_bool(0.3),
                        ecv: i == 0,
                        effective_date: None,
                        expire_date: None,
                    },
                    pin: rng
                        .gen_bool(0.5)
                        .then(|| format!("{:04}", rng.gen_range(0..10000))),
                }
            })
            .collect();

        let created_at = now - Duration::days(rng.gen_range(60..2000));
        let created = match db.create_site(
            NewSite {
                fields,
                devices,
                contacts,
            },
            created_at,
        ) {
            Ok(c) => c,
            // Codes are unique by construction; a clash with a record a test
            // made first only skips that sample.
            Err(e) => {
                tracing::warn!("seeding skipped a site: {e}");
                continue;
            }
        };
        let note = NewNote {
            text: pick(&mut rng, NOTES).to_string(),
            effective_at: None,
            expire_at: None,
        };
        let _ = db.create_note(&created.site.site_no, note, created_at);

        for device in &created.devices {
            let mut at = created_at + Duration::hours(rng.gen_range(1..48));
            let _ = db.add_signal(&device.device_id, at, "E602", "Periodic test", None);
            for _ in 0..rng.gen_range(2..=5) {
                let span = (now - at).num_seconds().max(2) / 2;
                at += Duration::seconds(rng.gen_range(1..=span));
                let user = rng.gen_range(1..5);
                let (code, text, point) = match rng.gen_range(0..4) {
                    0 => ("E401", format!("Opening by user {user}"), None),
                    1 => ("R401", format!("Closing by user {user}"), None),
                    2 => ("E602", "Periodic test".to_string(), None),
                    _ => {
                        let p = rng.gen_range(1..=2);
                        ("E130", format!("Burglary zone {p}"), Some(p))
                    }
                };
                let _ = db.add_signal(&device.device_id, at, code, &text, point);
            }
        }
    }
}
