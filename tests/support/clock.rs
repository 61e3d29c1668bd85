//! Dates for tests, computed from today. A literal future date in a test
//! turns the suite red by itself on the day it passes (and `suite_hygiene`
//! refuses one), so test windows and daylight-saving days are found here.

use chrono::{Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};

/// The wire form of a local time in a test window: `2026-03-08T01:30:00`.
pub fn local_text(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// Now on the wall clock of `tz`.
pub fn local_now(tz: &str) -> NaiveDateTime {
    let tz: Tz = tz.parse().expect("a known IANA zone");
    Utc::now().with_timezone(&tz).naive_local()
}

/// A test window body in `tz`'s local time: it starts `starts_in` from now
/// and lasts `length`.
pub fn window(tz: &str, starts_in: Duration, length: Duration) -> Value {
    let start = local_now(tz) + starts_in;
    json!({"start": local_text(start), "end": local_text(start + length)})
}

/// The next days (after tomorrow) on which `tz` springs forward and falls
/// back, in that order. Panics for a zone without daylight saving.
pub fn next_dst_days(tz: &str) -> (NaiveDate, NaiveDate) {
    let zone: Tz = tz.parse().expect("a known IANA zone");
    let offset_at = |t: chrono::DateTime<Utc>| t.with_timezone(&zone).offset().fix();
    let mut t = Utc::now() + Duration::days(1);
    let (mut spring, mut fall) = (None, None);
    // Two years of hours always hold both changes of a zone that has them.
    for _ in 0..(2 * 366 * 24) {
        let next = t + Duration::hours(1);
        let (before, after) = (offset_at(t), offset_at(next));
        let day = next.with_timezone(&zone).date_naive();
        if after.local_minus_utc() > before.local_minus_utc() && spring.is_none() {
            spring = Some(day);
        }
        if after.local_minus_utc() < before.local_minus_utc() && fall.is_none() {
            fall = Some(day);
        }
        if let (Some(s), Some(f)) = (spring, fall) {
            return (s, f);
        }
        t = next;
    }
    panic!("{tz} has no daylight saving in the next two years");
}

/// `day` at `hh:mm` local, as a naive date-time.
pub fn at(day: NaiveDate, hh: u32, mm: u32) -> NaiveDateTime {
    day.and_hms_opt(hh, mm, 0).expect("a valid time of day")
}

/// `t` (a UTC instant) in the service's answer form: `2026-03-08T06:30:00Z`.
pub fn utc_text(t: NaiveDateTime) -> String {
    Utc.from_utc_datetime(&t)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
