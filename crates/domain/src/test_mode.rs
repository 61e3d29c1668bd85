//! Test mode (S15): putting a device "on test" for a window given in the
//! site's own time zone. The central station works in local time, so the
//! window is entered that way and converted here, daylight saving included.

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::stages::DeviceStatus;
use crate::validation::ValidationError;

/// How the end of a test is given: a local end time, or a length from the
/// start (SecurityTrax's Bold integration offers hours and minutes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TestEnd {
    /// A local time in the site's zone.
    At(NaiveDateTime),
    /// Real minutes after the start: a two-hour test across a
    /// daylight-saving change still lasts two hours.
    After { minutes: u32 },
}

impl TestEnd {
    /// Exactly one of `end` or a duration (`hours` and/or `minutes`); the
    /// error names the field to fix.
    pub fn from_parts(
        end: Option<NaiveDateTime>,
        hours: Option<u32>,
        minutes: Option<u32>,
    ) -> Result<Self, ValidationError> {
        if minutes.is_some_and(|m| m > 59) {
            return Err(ValidationError::field("minutes", "must be 0 to 59"));
        }
        match (end, hours.is_some() || minutes.is_some()) {
            (Some(_), true) => Err(ValidationError::field(
                "end",
                "give either end or a duration (hours, minutes), not both",
            )),
            (None, false) => Err(ValidationError::field(
                "end",
                "is required, or give a duration (hours, minutes)",
            )),
            (Some(end), false) => Ok(Self::At(end)),
            (None, true) => {
                let total = u64::from(hours.unwrap_or(0)) * 60 + u64::from(minutes.unwrap_or(0));
                if total == 0 {
                    return Err(ValidationError::field(
                        "hours",
                        "the duration must be at least one minute",
                    ));
                }
                // Beyond u32 minutes it is far past any maximum anyway.
                Ok(Self::After {
                    minutes: u32::try_from(total).unwrap_or(u32::MAX),
                })
            }
        }
    }
}

/// How a local time was read in the site's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalReading {
    /// The local time exists once.
    Exact,
    /// It falls in a spring-forward gap: moved forward by the gap.
    ShiftedOutOfGap,
    /// It occurs twice (fall-back): the earlier instant, for a start.
    EarlierOfTwo,
    /// It occurs twice: the later instant, for an end (so the window covers both).
    LaterOfTwo,
}

/// One end of a test window, in both clocks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowEnd {
    pub local: NaiveDateTime,
    pub utc: DateTime<Utc>,
    /// The offset in force, e.g. `-05:00`.
    pub utc_offset: String,
    pub reading: LocalReading,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestWindow {
    pub time_zone: String,
    pub start: WindowEnd,
    pub end: WindowEnd,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TestWindowError {
    #[error("the site's time zone '{0}' is not a known IANA zone; fix it in Stages")]
    UnknownZone(String),
    #[error("the end must be after the start (in real time: {start} to {end})")]
    EndNotAfterStart {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    #[error("a test may last at most {max_hours} hours; this one lasts {hours:.1}")]
    TooLong { max_hours: u32, hours: f64 },
    #[error("the end is already past")]
    EndInPast,
}

fn offset_text(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.abs();
    format!("{sign}{:02}:{:02}", s / 3600, (s % 3600) / 60)
}

/// Reads a local time in `tz`: an ambiguous one as the earlier (start) or
/// later (end) instant, one in a gap moved forward by the gap's length.
fn read(tz: Tz, local: NaiveDateTime, is_end: bool) -> WindowEnd {
    let (dt, reading) = match tz.from_local_datetime(&local) {
        LocalResult::Single(dt) => (dt, LocalReading::Exact),
        LocalResult::Ambiguous(early, late) => {
            if is_end {
                (late, LocalReading::LaterOfTwo)
            } else {
                (early, LocalReading::EarlierOfTwo)
            }
        }
        LocalResult::None => {
            // The wall clock jumped over this time: read it with the offset in
            // force just before the jump, which lands the same distance past it.
            let mut probe = local;
            let before = (0..24 * 60)
                .find_map(|_| {
                    probe -= chrono::Duration::minutes(1);
                    match tz.from_local_datetime(&probe) {
                        LocalResult::Single(dt) | LocalResult::Ambiguous(dt, _) => {
                            Some(dt.offset().fix())
                        }
                        LocalResult::None => None,
                    }
                })
                .expect("a gap ends within a day");
            let utc = Utc.from_utc_datetime(
                &(local - chrono::Duration::seconds(i64::from(before.local_minus_utc()))),
            );
            (utc.with_timezone(&tz), LocalReading::ShiftedOutOfGap)
        }
    };
    WindowEnd {
        local: dt.naive_local(),
        utc: dt.with_timezone(&Utc),
        utc_offset: offset_text(dt.offset().fix().local_minus_utc()),
        reading,
    }
}

/// One end of a window at an instant, read back in `tz`.
fn at_instant(tz: Tz, utc: DateTime<Utc>) -> WindowEnd {
    let dt = utc.with_timezone(&tz);
    WindowEnd {
        local: dt.naive_local(),
        utc,
        utc_offset: offset_text(dt.offset().fix().local_minus_utc()),
        reading: LocalReading::Exact,
    }
}

/// The window of a test from a local start in the site's zone and its end
/// (a local time, or a length in real time from the start).
pub fn test_window(
    time_zone: &str,
    start: NaiveDateTime,
    end: TestEnd,
    max_hours: u32,
    now: DateTime<Utc>,
) -> Result<TestWindow, TestWindowError> {
    let tz: Tz = time_zone
        .parse()
        .map_err(|_| TestWindowError::UnknownZone(time_zone.to_owned()))?;
    let start = read(tz, start, false);
    let end = match end {
        TestEnd::At(local) => read(tz, local, true),
        TestEnd::After { minutes } => {
            let hours = f64::from(minutes) / 60.0;
            if hours > f64::from(max_hours) {
                return Err(TestWindowError::TooLong { max_hours, hours });
            }
            at_instant(
                tz,
                start.utc + chrono::Duration::minutes(i64::from(minutes)),
            )
        }
    };
    if end.utc <= start.utc {
        return Err(TestWindowError::EndNotAfterStart {
            start: start.utc,
            end: end.utc,
        });
    }
    let hours = (end.utc - start.utc).num_seconds() as f64 / 3600.0;
    if hours > f64::from(max_hours) {
        return Err(TestWindowError::TooLong { max_hours, hours });
    }
    if end.utc <= now {
        return Err(TestWindowError::EndInPast);
    }
    Ok(TestWindow {
        time_zone: time_zone.to_owned(),
        start,
        end,
    })
}

/// Why a device may not go on test, if it may not.
pub fn refuse_test(status: DeviceStatus) -> Option<&'static str> {
    match status {
        DeviceStatus::Alarm => {
            Some("the device is in alarm; clear the alarm before putting it on test")
        }
        DeviceStatus::OutOfService => {
            Some("the device is out of service; it cannot be put on test")
        }
        DeviceStatus::Normal | DeviceStatus::OnTest => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").unwrap()
    }

    /// A fixed "now" in the past, so the windows below are in its future
    /// whatever today is (2025's daylight-saving days in New York: March 9
    /// and November 2).
    fn now() -> DateTime<Utc> {
        "2025-01-02T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn an_ordinary_window_converts_with_the_zone_offset() {
        let w = test_window(
            "America/Chicago",
            t("2025-01-10T09:00"),
            TestEnd::At(t("2025-01-10T17:00")),
            72,
            now(),
        )
        .unwrap();
        assert_eq!(w.start.utc.to_rfc3339(), "2025-01-10T15:00:00+00:00");
        assert_eq!(w.start.utc_offset, "-06:00");
        assert_eq!(w.start.reading, LocalReading::Exact);
    }

    #[test]
    fn a_window_across_spring_forward_is_an_hour_shorter_in_real_time() {
        // 2025-03-09 02:00 America/New_York jumps to 03:00.
        let w = test_window(
            "America/New_York",
            t("2025-03-09T01:30"),
            TestEnd::At(t("2025-03-09T04:00")),
            72,
            now(),
        )
        .unwrap();
        assert_eq!(w.start.utc.to_rfc3339(), "2025-03-09T06:30:00+00:00");
        assert_eq!(w.end.utc.to_rfc3339(), "2025-03-09T08:00:00+00:00");
        assert_eq!(w.end.utc_offset, "-04:00");
    }

    #[test]
    fn a_start_in_the_gap_moves_forward_by_the_gap() {
        let w = test_window(
            "America/New_York",
            t("2025-03-09T02:30"),
            TestEnd::At(t("2025-03-09T05:00")),
            72,
            now(),
        )
        .unwrap();
        assert_eq!(w.start.reading, LocalReading::ShiftedOutOfGap);
        assert_eq!(w.start.local, t("2025-03-09T03:30"));
        assert_eq!(w.start.utc.to_rfc3339(), "2025-03-09T07:30:00+00:00");
    }

    #[test]
    fn an_ambiguous_start_takes_the_first_and_an_ambiguous_end_the_second() {
        // 2025-11-02 01:00-02:00 happens twice in America/New_York.
        let w = test_window(
            "America/New_York",
            t("2025-11-02T01:30"),
            TestEnd::At(t("2025-11-02T01:45")),
            72,
            now(),
        )
        .unwrap();
        assert_eq!(w.start.reading, LocalReading::EarlierOfTwo);
        assert_eq!(w.start.utc.to_rfc3339(), "2025-11-02T05:30:00+00:00");
        assert_eq!(w.end.reading, LocalReading::LaterOfTwo);
        assert_eq!(w.end.utc.to_rfc3339(), "2025-11-02T06:45:00+00:00");
        assert_eq!(w.end.utc_offset, "-05:00");
    }

    #[test]
    fn bad_windows_are_refused_with_a_reason() {
        assert!(matches!(
            test_window(
                "America/New_York",
                t("2025-01-10T09:00"),
                TestEnd::At(t("2025-01-10T08:00")),
                72,
                now()
            ),
            Err(TestWindowError::EndNotAfterStart { .. })
        ));
        assert!(matches!(
            test_window(
                "America/New_York",
                t("2025-01-10T09:00"),
                TestEnd::At(t("2025-01-14T09:00")),
                72,
                now()
            ),
            Err(TestWindowError::TooLong { .. })
        ));
        assert!(matches!(
            test_window(
                "Mars/Olympus",
                t("2025-01-10T09:00"),
                TestEnd::At(t("2025-01-10T10:00")),
                72,
                now()
            ),
            Err(TestWindowError::UnknownZone(_))
        ));
        assert!(matches!(
            test_window(
                "UTC",
                t("2024-01-10T09:00"),
                TestEnd::At(t("2024-01-10T10:00")),
                72,
                now()
            ),
            Err(TestWindowError::EndInPast)
        ));
    }

    #[test]
    fn a_duration_is_real_time_across_spring_forward() {
        // 01:30 EST plus two hours is 04:30 EDT on the spring-forward day.
        let w = test_window(
            "America/New_York",
            t("2025-03-09T01:30"),
            TestEnd::After { minutes: 120 },
            72,
            now(),
        )
        .unwrap();
        assert_eq!(w.start.utc.to_rfc3339(), "2025-03-09T06:30:00+00:00");
        assert_eq!(w.end.utc.to_rfc3339(), "2025-03-09T08:30:00+00:00");
        assert_eq!(w.end.local, t("2025-03-09T04:30"));
        assert_eq!(w.end.utc_offset, "-04:00");
        assert!(matches!(
            test_window(
                "UTC",
                t("2025-01-10T09:00"),
                TestEnd::After { minutes: 73 * 60 },
                72,
                now()
            ),
            Err(TestWindowError::TooLong { .. })
        ));
    }

    #[test]
    fn exactly_one_of_an_end_or_a_duration() {
        let end = Some(t("2025-01-10T10:00"));
        let field = |r: Result<TestEnd, ValidationError>| r.unwrap_err().errors[0].field.clone();
        assert_eq!(
            TestEnd::from_parts(end, None, None).unwrap(),
            TestEnd::At(t("2025-01-10T10:00"))
        );
        assert_eq!(
            TestEnd::from_parts(None, Some(1), Some(30)).unwrap(),
            TestEnd::After { minutes: 90 }
        );
        assert_eq!(
            TestEnd::from_parts(None, None, Some(45)).unwrap(),
            TestEnd::After { minutes: 45 }
        );
        assert_eq!(field(TestEnd::from_parts(end, Some(1), None)), "end");
        assert_eq!(field(TestEnd::from_parts(None, None, None)), "end");
        assert_eq!(field(TestEnd::from_parts(None, Some(0), Some(0))), "hours");
        assert_eq!(
            field(TestEnd::from_parts(None, Some(1), Some(60))),
            "minutes"
        );
    }

    #[test]
    fn an_end_time_still_reads_as_before_in_stored_requests() {
        // Batches store their items: an end given as a time keeps its old form.
        let v: TestEnd = serde_json::from_str("\"2025-01-10T10:00:00\"").unwrap();
        assert_eq!(v, TestEnd::At(t("2025-01-10T10:00")));
        let v: TestEnd = serde_json::from_str("{\"minutes\": 5}").unwrap();
        assert_eq!(v, TestEnd::After { minutes: 5 });
    }

    #[test]
    fn alarm_and_out_of_service_refuse_tests() {
        assert!(refuse_test(DeviceStatus::Alarm).is_some());
        assert!(refuse_test(DeviceStatus::OutOfService).is_some());
        assert!(refuse_test(DeviceStatus::Normal).is_none());
    }
}
