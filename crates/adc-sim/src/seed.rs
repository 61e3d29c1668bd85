//! Deterministic sample data: a dealer with sub-dealers, reps in several
//! roles and customers (active, terminated, commitments) with plausible US
//! names and addresses, so that imports, filters and paging can be tried at
//! realistic sizes.
//!
//! The same `n` always gives the same records, timestamps included: seeded
//! times lie before [`SEED_EPOCH`], so anything a test adds "now" is newer
//! than every seeded record. It must stay fast (100,000 customers in well
//! under a second in release builds), hence plain tables and one RNG.

use std::collections::HashMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::model::*;

/// The RNG seed of the sample data.
pub const SEED: u64 = 0xadc5_eed5;

/// The first seeded customer id; the others follow one by one.
pub const FIRST_CUSTOMER_ID: i64 = 10_000_001;
/// The first commitment id.
pub const FIRST_COMMITMENT_ID: i64 = 800_001;
/// The first rep support id.
pub const FIRST_SUPPORT_ID: i64 = 300_001;
/// The dealer id `GetDealerId` answers.
pub const DEALER_ID: i64 = 7_104;
/// What `GetCSPhoneNumber` answers.
pub const CS_PHONE_NUMBER: &str = "8005550142";

/// Seeded times are before this instant (2025-01-01T00:00:00Z).
pub fn seed_epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

/// How many reps `n` seeded customers come with.
pub fn rep_count(n: usize) -> usize {
    (n / 20 + 5).max(10)
}

pub fn sub_dealers() -> Vec<SubDealer> {
    [
        (201, "Northside Security Partners"),
        (202, "Lakeshore Alarm Co."),
        (203, "Summit Home Protection"),
        (204, "Gulf Coast Smart Homes"),
        (205, "Prairie Secure LLC"),
    ]
    .into_iter()
    .map(|(id, name)| SubDealer {
        sub_dealer_id: id,
        name: name.to_string(),
    })
    .collect()
}

pub const ROLE_ADMIN: &str = "Dealer Administrator";
pub const ROLE_MANAGER: &str = "Manager";
pub const ROLE_SALES: &str = "Sales Rep";
pub const ROLE_TECH: &str = "Technician";
pub const ROLE_OFFICE: &str = "Office";

pub fn roles() -> Vec<Role> {
    [ROLE_ADMIN, ROLE_MANAGER, ROLE_SALES, ROLE_TECH, ROLE_OFFICE]
        .into_iter()
        .enumerate()
        .map(|(i, name)| Role {
            role_id: i as i64 + 1,
            name: name.to_string(),
        })
        .collect()
}

pub fn packages() -> Vec<Package> {
    [
        (1001, "Basic Interactive"),
        (1002, "Advanced Interactive"),
        (1003, "Interactive + Video"),
        (1004, "Interactive + Automation"),
        (1005, "Commercial Interactive"),
        (1006, "Wireless Signal Forwarding"),
    ]
    .into_iter()
    .map(|(id, name)| Package {
        package_id: id,
        name: name.to_string(),
    })
    .collect()
}

pub fn builder_programs() -> Vec<BuilderProgram> {
    [
        (51, "Meadowbrook Homes Phase 2"),
        (52, "Riverstone Townhomes"),
        (53, "Cedar Ridge Estates"),
    ]
    .into_iter()
    .map(|(id, name)| BuilderProgram {
        builder_program_id: id,
        name: name.to_string(),
    })
    .collect()
}

/// Panel types, with relative weights.
const PANELS: &[(&str, u32)] = &[
    ("IQPanel2", 20),
    ("IQPanel4", 18),
    ("LynxTouch", 14),
    ("Vista", 12),
    ("SimonXT", 8),
    ("Concord", 6),
    ("GC3", 12),
    ("PowerSeriesNeo", 10),
];

/// Package ids with relative weights (commercial is rarer).
const PACKAGE_WEIGHTS: &[(i64, u32)] = &[
    (1001, 25),
    (1002, 35),
    (1003, 18),
    (1004, 12),
    (1005, 4),
    (1006, 6),
];

const RECEIVERS: &[&str] = &["8005550100", "8005550111", "8665550123"];

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
    "Charles",
    "Karen",
    "Christopher",
    "Lisa",
    "Daniel",
    "Nancy",
    "Matthew",
    "Betty",
    "Anthony",
    "Sandra",
    "Mark",
    "Margaret",
    "Donald",
    "Ashley",
    "Steven",
    "Kimberly",
    "Andrew",
    "Emily",
    "Paul",
    "Donna",
    "Joshua",
    "Michelle",
    "Kenneth",
    "Carol",
    "Kevin",
    "Amanda",
    "Brian",
    "Melissa",
    "George",
    "Deborah",
    "Timothy",
    "Stephanie",
    "Ronald",
    "Rebecca",
    "Jason",
    "Laura",
    "Edward",
    "Sharon",
    "Jeffrey",
    "Cynthia",
    "Ryan",
    "Kathleen",
    "Jacob",
    "Amy",
    "Luis",
    "Maria",
    "Carlos",
    "Rosa",
    "Jose",
    "Ana",
    "Wei",
    "Mei",
    "Hiroshi",
    "Priya",
    "Arjun",
    "Fatima",
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
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Chen",
    "Patel",
    "O'Brien",
    "Kowalski",
    "Schmidt",
    "Murphy",
];

const STREETS: &[&str] = &[
    "Main",
    "Oak",
    "Maple",
    "Cedar",
    "Pine",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Sunset",
    "Lincoln",
    "Jackson",
    "Highland",
    "Church",
    "Willow",
    "Meadow",
    "River",
    "Forest",
    "Spring",
    "Chestnut",
    "Walnut",
    "Franklin",
    "Jefferson",
    "Madison",
    "Ridge",
    "Valley",
    "Birch",
    "Magnolia",
    "Dogwood",
];

const STREET_SUFFIXES: &[&str] = &["St", "Ave", "Rd", "Dr", "Ln", "Ct", "Blvd", "Way", "Pl"];

const BUSINESS_SUFFIXES: &[&str] = &[
    "Dental",
    "Auto Repair",
    "Bakery",
    "Family Pharmacy",
    "Insurance Agency",
    "Veterinary Clinic",
    "Hardware",
    "Law Office",
    "Cafe",
    "Storage",
];

/// (city, state, zip, area code, time zone)
const CITIES: &[(&str, &str, &str, &str, &str)] = &[
    ("Boston", "MA", "02108", "617", "America/New_York"),
    ("Hartford", "CT", "06103", "860", "America/New_York"),
    ("Albany", "NY", "12207", "518", "America/New_York"),
    ("Philadelphia", "PA", "19103", "215", "America/New_York"),
    ("Baltimore", "MD", "21201", "410", "America/New_York"),
    ("Richmond", "VA", "23219", "804", "America/New_York"),
    ("Raleigh", "NC", "27601", "919", "America/New_York"),
    ("Charlotte", "NC", "28202", "704", "America/New_York"),
    ("Atlanta", "GA", "30303", "404", "America/New_York"),
    ("Orlando", "FL", "32801", "407", "America/New_York"),
    ("Tampa", "FL", "33602", "813", "America/New_York"),
    ("Columbus", "OH", "43215", "614", "America/New_York"),
    ("Detroit", "MI", "48226", "313", "America/Detroit"),
    (
        "Indianapolis",
        "IN",
        "46204",
        "317",
        "America/Indiana/Indianapolis",
    ),
    ("Chicago", "IL", "60602", "312", "America/Chicago"),
    ("Milwaukee", "WI", "53202", "414", "America/Chicago"),
    ("Minneapolis", "MN", "55401", "612", "America/Chicago"),
    ("St. Louis", "MO", "63101", "314", "America/Chicago"),
    ("Nashville", "TN", "37203", "615", "America/Chicago"),
    ("New Orleans", "LA", "70112", "504", "America/Chicago"),
    ("Dallas", "TX", "75201", "214", "America/Chicago"),
    ("Houston", "TX", "77002", "713", "America/Chicago"),
    ("Austin", "TX", "78701", "512", "America/Chicago"),
    ("Oklahoma City", "OK", "73102", "405", "America/Chicago"),
    ("Omaha", "NE", "68102", "402", "America/Chicago"),
    ("Denver", "CO", "80202", "303", "America/Denver"),
    ("Salt Lake City", "UT", "84101", "801", "America/Denver"),
    ("Albuquerque", "NM", "87102", "505", "America/Denver"),
    ("Phoenix", "AZ", "85004", "602", "America/Phoenix"),
    ("Las Vegas", "NV", "89101", "702", "America/Los_Angeles"),
    ("Sacramento", "CA", "95814", "916", "America/Los_Angeles"),
    ("San Diego", "CA", "92101", "619", "America/Los_Angeles"),
    ("Portland", "OR", "97204", "503", "America/Los_Angeles"),
    ("Seattle", "WA", "98101", "206", "America/Los_Angeles"),
    ("Boise", "ID", "83702", "208", "America/Boise"),
];

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

fn weighted<T: Copy>(rng: &mut StdRng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.gen_range(0..total);
    for (item, w) in items {
        if x < *w {
            return *item;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

fn phone(rng: &mut StdRng, area: &str) -> String {
    format!("{area}555{:04}", rng.gen_range(100..10_000))
}

fn address(rng: &mut StdRng) -> (Address, &'static str, &'static str) {
    let (city, state, zip, area, tz) = *pick(rng, CITIES);
    let street2 = if rng.gen_bool(0.1) {
        format!(
            "Apt {}{}",
            rng.gen_range(1..30),
            pick(rng, &["A", "B", "C", "D"])
        )
    } else {
        String::new()
    };
    let a = Address {
        street1: format!(
            "{} {} {}",
            rng.gen_range(100..10_000),
            pick(rng, STREETS),
            pick(rng, STREET_SUFFIXES)
        ),
        street2,
        city: city.to_string(),
        state: state.to_string(),
        zip: zip.to_string(),
        country_id: "USA".to_string(),
    };
    (a, area, tz)
}

fn login_part(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Sales reps and technicians per sub-dealer, to give customers a rep of
/// their own branch.
#[derive(Debug, Default)]
pub(crate) struct RepIndex {
    sales: HashMap<i64, Vec<String>>,
    techs: HashMap<i64, Vec<String>>,
    all_sales: Vec<String>,
    all_techs: Vec<String>,
}

impl RepIndex {
    pub(crate) fn new(reps: &[Rep]) -> Self {
        let mut idx = RepIndex::default();
        for r in reps.iter().filter(|r| r.is_active) {
            if r.roles.iter().any(|x| x == ROLE_SALES) {
                idx.sales
                    .entry(r.sub_dealer_id)
                    .or_default()
                    .push(r.login_name.clone());
                idx.all_sales.push(r.login_name.clone());
            }
            if r.roles.iter().any(|x| x == ROLE_TECH) {
                idx.techs
                    .entry(r.sub_dealer_id)
                    .or_default()
                    .push(r.login_name.clone());
                idx.all_techs.push(r.login_name.clone());
            }
        }
        idx
    }

    fn choose(
        rng: &mut StdRng,
        by_sub: &HashMap<i64, Vec<String>>,
        all: &[String],
        sub: i64,
    ) -> String {
        match by_sub.get(&sub).filter(|v| !v.is_empty()) {
            Some(v) => pick(rng, v).clone(),
            None if !all.is_empty() => pick(rng, all).clone(),
            None => String::new(),
        }
    }
}

/// Generates one rep. `n` makes the login unique.
pub(crate) fn gen_rep(rng: &mut StdRng, support_id: i64, sub_dealer_ids: &[i64]) -> Rep {
    let first = *pick(rng, FIRST_NAMES);
    let last = *pick(rng, LAST_NAMES);
    let (address, area, _) = address(rng);
    let roles: Vec<String> = match rng.gen_range(0..100) {
        0..=44 => vec![ROLE_SALES.into()],
        45..=74 => vec![ROLE_TECH.into()],
        75..=82 => vec![ROLE_MANAGER.into(), ROLE_SALES.into()],
        83..=86 => vec![ROLE_MANAGER.into()],
        87..=95 => vec![ROLE_OFFICE.into()],
        _ => vec![ROLE_ADMIN.into()],
    };
    let sub_dealer_id = if sub_dealer_ids.is_empty() {
        0
    } else {
        sub_dealer_ids[(support_id as usize) % sub_dealer_ids.len()]
    };
    let user_field = if rng.gen_bool(0.3) {
        format!("Badge {}", rng.gen_range(1000..10_000))
    } else {
        String::new()
    };
    Rep {
        support_id,
        login_name: format!(
            "{}{}{}",
            login_part(&first[..1]),
            login_part(last),
            support_id % 100_000
        ),
        first_name: first.to_string(),
        last_name: last.to_string(),
        email: format!(
            "{}.{}{}@example.com",
            login_part(first),
            login_part(last),
            support_id % 100_000
        ),
        phone: phone(rng, area),
        address,
        sub_dealer_id,
        roles,
        is_active: rng.gen_bool(0.9),
        user_field,
    }
}

/// What kind of customer record to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Active,
    Terminated,
    Commitment,
}

/// Generates one customer created at `created` (join date too).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gen_customer(
    rng: &mut StdRng,
    customer_id: i64,
    commitment_id: i64,
    kind: Kind,
    created: DateTime<Utc>,
    modified: DateTime<Utc>,
    sub_dealer_ids: &[i64],
    reps: &RepIndex,
) -> Customer {
    let first = *pick(rng, FIRST_NAMES);
    let last = *pick(rng, LAST_NAMES);
    let (install_address, area, tz) = address(rng);
    let commercial = rng.gen_bool(0.1);
    let company_name = if commercial {
        format!("{last} {}", pick(rng, BUSINESS_SUFFIXES))
    } else {
        String::new()
    };
    let sub_dealer_id = if sub_dealer_ids.is_empty() {
        0
    } else {
        *pick(rng, sub_dealer_ids)
    };
    let package_id = if commercial {
        1005
    } else {
        weighted(rng, PACKAGE_WEIGHTS)
    };
    let mut add_on_features = Vec::new();
    for (feature, p) in [
        ("TwoWayVoice", 0.4),
        ("Video", 0.15),
        ("ImageSensor", 0.1),
        ("EnergyManagement", 0.1),
    ] {
        if rng.gen_bool(p) {
            add_on_features.push(feature.to_string());
        }
    }
    let sales_rep_login_name = if rng.gen_bool(0.97) {
        RepIndex::choose(rng, &reps.sales, &reps.all_sales, sub_dealer_id)
    } else {
        String::new()
    };
    let installer_login_name = RepIndex::choose(rng, &reps.techs, &reps.all_techs, sub_dealer_id);
    let monitored = rng.gen_bool(0.95);
    let seq = customer_id - FIRST_CUSTOMER_ID + 1;
    let is_commitment = kind == Kind::Commitment;
    let (login_name, panel_type, modem_serial_number) = if is_commitment {
        (String::new(), String::new(), String::new())
    } else {
        (
            format!(
                "{}{}{}",
                login_part(&first[..1]),
                login_part(last),
                customer_id % 10_000_000
            ),
            weighted(rng, PANELS).to_string(),
            // Unique per customer id.
            format!("{:012X}", 0x0040_1F00_0000_i64 + customer_id * 13),
        )
    };
    let email_name = if commercial {
        format!("office{seq}")
    } else {
        format!("{}.{}{seq}", login_part(first), login_part(last))
    };
    let terminated_date = (kind == Kind::Terminated).then(|| {
        let span = (modified - created).num_minutes().max(1);
        created + Duration::minutes(rng.gen_range(0..=span))
    });
    Customer {
        customer_id,
        login_name,
        dealer_customer_id: if rng.gen_bool(0.9) {
            format!("ST-{:07}", seq)
        } else {
            String::new()
        },
        first_name: first.to_string(),
        last_name: last.to_string(),
        company_name,
        email: format!(
            "{email_name}@{}",
            pick(rng, &["example.com", "example.net", "example.org"])
        ),
        phone: phone(rng, area),
        install_address,
        time_zone: tz.to_string(),
        panel_type,
        modem_serial_number,
        package_id,
        add_on_features,
        sales_rep_login_name,
        installer_login_name,
        sub_dealer_id,
        central_station_account_number: if monitored && !is_commitment {
            format!("{:06X}", 0x10_0000 + seq)
        } else {
            String::new()
        },
        central_station_receiver_number: if monitored && !is_commitment {
            pick(rng, RECEIVERS).to_string()
        } else {
            String::new()
        },
        install_type: pick(rng, &["NewInstall", "Takeover", "Upgrade"]).to_string(),
        is_terminated: kind == Kind::Terminated,
        terminated_date,
        is_commitment,
        commitment_id: if is_commitment { commitment_id } else { 0 },
        builder_program_id: if is_commitment {
            51 + rng.gen_range(0..3)
        } else {
            0
        },
        join_date: created,
        created,
        modified: modified.max(created),
    }
}

/// The seeded records.
#[derive(Debug)]
pub(crate) struct Seeded {
    pub reps: Vec<Rep>,
    pub customers: Vec<Customer>,
    pub next_commitment_id: i64,
}

/// Builds `n` customers and their reps, the same every time.
pub(crate) fn seed(n: usize) -> Seeded {
    let mut rng = StdRng::seed_from_u64(SEED);
    let subs: Vec<i64> = sub_dealers().iter().map(|s| s.sub_dealer_id).collect();
    let reps: Vec<Rep> = (0..rep_count(n))
        .map(|i| gen_rep(&mut rng, FIRST_SUPPORT_ID + i as i64, &subs))
        .collect();
    let index = RepIndex::new(&reps);
    let epoch = seed_epoch();
    let span_minutes = 6 * 365 * 24 * 60;
    let mut next_commitment_id = FIRST_COMMITMENT_ID;
    let mut customers = Vec::with_capacity(n);
    for i in 0..n {
        let x: f64 = rng.gen();
        let kind = if x < 0.10 {
            Kind::Terminated
        } else if x < 0.15 {
            Kind::Commitment
        } else {
            Kind::Active
        };
        let created = epoch - Duration::minutes(rng.gen_range(1..span_minutes));
        let modified = if rng.gen_bool(0.3) || kind == Kind::Terminated {
            let left = (epoch - created).num_minutes().max(1);
            created + Duration::minutes(rng.gen_range(0..left))
        } else {
            created
        };
        let c = gen_customer(
            &mut rng,
            FIRST_CUSTOMER_ID + i as i64,
            next_commitment_id,
            kind,
            created,
            modified,
            &subs,
            &index,
        );
        if c.is_commitment {
            next_commitment_id += 1;
        }
        customers.push(c);
    }
    Seeded {
        reps,
        customers,
        next_commitment_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_deterministic_and_mixed() {
        let a = seed(2_000);
        let b = seed(2_000);
        assert_eq!(a.customers, b.customers);
        assert_eq!(a.reps, b.reps);
        assert_eq!(a.reps.len(), 105);
        let terminated = a.customers.iter().filter(|c| c.is_terminated).count();
        let commitments = a.customers.iter().filter(|c| c.is_commitment).count();
        assert!((140..=260).contains(&terminated), "{terminated}");
        assert!((60..=140).contains(&commitments), "{commitments}");
        let subs: std::collections::HashSet<i64> =
            a.customers.iter().map(|c| c.sub_dealer_id).collect();
        assert_eq!(subs.len(), 5);
        let logins: std::collections::HashSet<&str> = a
            .customers
            .iter()
            .filter(|c| !c.is_commitment)
            .map(|c| c.login_name.as_str())
            .collect();
        assert_eq!(logins.len(), a.customers.len() - commitments);
        assert!(a.customers.iter().all(|c| c.modified < seed_epoch()));
        assert_eq!(seed(0).reps.len(), 10);
    }
}
