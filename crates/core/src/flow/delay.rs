//! Time delays: when a profile that reached a `time-delay` wakes up.
//!
//! Without a time of day a delay is a plain duration (a day is 24 hours).
//! With `delay_until_time` a day is a *calendar* day in the delay's time
//! zone, as in Klaviyo: "wait 1 day until 3 PM" entered at 4 PM wakes at
//! 3 PM the next day. `delay_until_weekdays` then pushes the wake-up to the
//! next allowed weekday.

use super::json::At;
use super::{FlowError, FlowErrorKind};
use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;
use std::str::FromStr;

/// The longest delay accepted: beyond this a typo is likelier than intent.
pub const MAX_DELAY_DAYS: i64 = 3 * 365;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayUnit {
    Minutes,
    Hours,
    Days,
}

/// Whose clock a delay reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The profile's own time zone, passed by the caller (UTC when unknown).
    Profile,
    Fixed(Tz),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeDelay {
    pub unit: DelayUnit,
    pub value: i64,
    /// Undocumented in the spec; read as a second, smaller amount: hours
    /// after days, minutes after hours ("1 day 6 hours").
    pub secondary_value: Option<i64>,
    pub timezone: Zone,
    pub until_time: Option<NaiveTime>,
    /// Allowed weekdays; `None` allows every day.
    pub until_weekdays: Option<Vec<Weekday>>,
}

impl TimeDelay {
    /// The plain duration part (value plus secondary value).
    pub fn duration(&self) -> Duration {
        let v = self.value.clamp(0, MAX_DELAY_DAYS * 24 * 60);
        let s = self.secondary_value.unwrap_or(0).clamp(0, 24 * 60);
        match self.unit {
            DelayUnit::Minutes => Duration::minutes(v),
            DelayUnit::Hours => Duration::hours(v) + Duration::minutes(s),
            DelayUnit::Days => Duration::days(v) + Duration::hours(s),
        }
    }
}

/// When a profile that reached `delay` at `entered` wakes up.
/// `profile_tz` is used when the delay's timezone is `profile`; without it
/// the profile's clock is taken to be UTC.
pub fn wake_at(delay: &TimeDelay, entered: DateTime<Utc>, profile_tz: Option<Tz>) -> DateTime<Utc> {
    let tz = match delay.timezone {
        Zone::Fixed(tz) => tz,
        Zone::Profile => profile_tz.unwrap_or(Tz::UTC),
    };
    let allowed = |d: NaiveDate| {
        delay
            .until_weekdays
            .as_ref()
            .is_none_or(|days| days.is_empty() || days.contains(&d.weekday()))
    };
    match delay.until_time {
        Some(time) => {
            let local = entered.with_timezone(&tz).date_naive();
            let days = delay.value.clamp(0, MAX_DELAY_DAYS);
            let mut date = local + Duration::days(days);
            // "0 days until 3 PM" entered after 3 PM means tomorrow.
            if days == 0 && resolve_local(tz, date.and_time(time)) < entered {
                date += Duration::days(1);
            }
            let mut guard = 0;
            while !allowed(date) && guard < 7 {
                date += Duration::days(1);
                guard += 1;
            }
            resolve_local(tz, date.and_time(time)).max(entered)
        }
        None => {
            let base = entered + delay.duration();
            let local = base.with_timezone(&tz).date_naive();
            if allowed(local) {
                return base;
            }
            let mut date = local + Duration::days(1);
            let mut guard = 0;
            while !allowed(date) && guard < 7 {
                date += Duration::days(1);
                guard += 1;
            }
            resolve_local(tz, date.and_time(NaiveTime::MIN))
        }
    }
}

/// A local wall-clock time as an instant. In a DST gap the time does not
/// exist and moves forward by the gap (02:30 on a spring-forward night is
/// 03:30 new time, as RFC 5545 does it); in an overlap the earlier instant
/// is taken.
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        chrono::LocalResult::None => {
            // Read the wall time with the offset in force before the gap.
            let before = Utc.from_utc_datetime(&(local - Duration::days(1)));
            let offset = chrono::Offset::fix(&tz.offset_from_utc_datetime(&before.naive_utc()));
            Utc.from_utc_datetime(&(local - Duration::seconds(i64::from(offset.local_minus_utc()))))
        }
    }
}

const WEEKDAYS: &[(&str, Weekday)] = &[
    ("monday", Weekday::Mon),
    ("tuesday", Weekday::Tue),
    ("wednesday", Weekday::Wed),
    ("thursday", Weekday::Thu),
    ("friday", Weekday::Fri),
    ("saturday", Weekday::Sat),
    ("sunday", Weekday::Sun),
];

pub(crate) fn parse_weekdays(at: &At<'_>) -> Result<Vec<Weekday>, FlowError> {
    let mut out = Vec::new();
    for item in at.items()? {
        let name = item.str()?;
        let day = WEEKDAYS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| *d)
            .ok_or_else(|| {
                item.err(FlowErrorKind::Delay(format!(
                    "'{name}' is not a weekday; use monday … sunday"
                )))
            })?;
        if !out.contains(&day) {
            out.push(day);
        }
    }
    if out.is_empty() {
        return Err(at.err(FlowErrorKind::Delay(
            "delay_until_weekdays must name at least one weekday".into(),
        )));
    }
    Ok(out)
}

pub(crate) fn parse_zone(at: &At<'_>) -> Result<Zone, FlowError> {
    let name = at.str()?;
    if name == "profile" {
        return Ok(Zone::Profile);
    }
    Tz::from_str(name).map(Zone::Fixed).map_err(|_| {
        at.err(FlowErrorKind::Delay(format!(
            "'{name}' is not an IANA time zone name (or 'profile')"
        )))
    })
}

/// `HH:MM` or `HH:MM:SS` (the spec's `format: time`).
pub(crate) fn parse_time_of_day(at: &At<'_>) -> Result<NaiveTime, FlowError> {
    let s = at.str()?;
    NaiveTime::parse_from_str(s, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M:%S"))
        .map_err(|_| {
            at.err(FlowErrorKind::Delay(format!(
                "'{s}' is not a time of day; use HH:MM, 24-hour"
            )))
        })
}

/// Parse `time-delay` data, rejecting values Klaviyo would not accept.
pub(crate) fn parse(data: &At<'_>) -> Result<TimeDelay, FlowError> {
    let delay_err = |at: &At<'_>, msg: String| at.err(FlowErrorKind::Delay(msg));
    let unit = match data.get("unit") {
        None => DelayUnit::Days,
        Some(u) => match u.str()? {
            "minutes" => DelayUnit::Minutes,
            "hours" => DelayUnit::Hours,
            "days" => DelayUnit::Days,
            other => {
                return Err(delay_err(
                    &u,
                    format!("'{other}' is not a delay unit; use minutes, hours or days"),
                ))
            }
        },
    };
    let value_at = data.req("value")?;
    let value = value_at.i64()?;
    let max = match unit {
        DelayUnit::Minutes => MAX_DELAY_DAYS * 24 * 60,
        DelayUnit::Hours => MAX_DELAY_DAYS * 24,
        DelayUnit::Days => MAX_DELAY_DAYS,
    };
    if !(0..=max).contains(&value) {
        return Err(delay_err(
            &value_at,
            format!("the delay value must be between 0 and {max}"),
        ));
    }
    let secondary_value = match data.get("secondary_value") {
        None => None,
        Some(s) => {
            let v = s.i64()?;
            let limit = match unit {
                DelayUnit::Minutes => {
                    return Err(delay_err(
                        &s,
                        "secondary_value needs a unit of hours or days".into(),
                    ))
                }
                DelayUnit::Hours => 59,
                DelayUnit::Days => 23,
            };
            if !(0..=limit).contains(&v) {
                return Err(delay_err(
                    &s,
                    format!("secondary_value must be between 0 and {limit}"),
                ));
            }
            Some(v)
        }
    };
    let timezone = match data.get("timezone") {
        None => Zone::Profile,
        Some(z) => parse_zone(&z)?,
    };
    let until_time = match data.get("delay_until_time") {
        None => None,
        Some(t) => {
            if unit != DelayUnit::Days {
                return Err(delay_err(
                    &t,
                    "delay_until_time needs the unit 'days' (a day then counts as a calendar day)"
                        .into(),
                ));
            }
            if secondary_value.is_some_and(|v| v > 0) {
                return Err(delay_err(
                    &t,
                    "delay_until_time cannot be combined with secondary_value".into(),
                ));
            }
            Some(parse_time_of_day(&t)?)
        }
    };
    let until_weekdays = data
        .get("delay_until_weekdays")
        .map(|w| parse_weekdays(&w))
        .transpose()?;
    Ok(TimeDelay {
        unit,
        value,
        secondary_value,
        timezone,
        until_time,
        until_weekdays,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .expect("test timestamp")
    }

    fn delay(v: serde_json::Value) -> TimeDelay {
        parse(&At::new(&v, "/data")).expect("valid delay")
    }

    #[test]
    fn plain_durations() {
        let cases = [
            (
                json!({"unit": "minutes", "value": 30}),
                "2026-03-01T10:30:00Z",
            ),
            (json!({"unit": "hours", "value": 5}), "2026-03-01T15:00:00Z"),
            (json!({"unit": "days", "value": 2}), "2026-03-03T10:00:00Z"),
            (json!({"value": 1}), "2026-03-02T10:00:00Z"),
            (
                json!({"unit": "days", "value": 1, "secondary_value": 6}),
                "2026-03-02T16:00:00Z",
            ),
            (
                json!({"unit": "hours", "value": 1, "secondary_value": 15}),
                "2026-03-01T11:15:00Z",
            ),
            (json!({"unit": "days", "value": 0}), "2026-03-01T10:00:00Z"),
        ];
        for (d, want) in cases {
            let got = wake_at(&delay(d.clone()), utc("2026-03-01T10:00:00Z"), None);
            assert_eq!(got, utc(want), "{d}");
        }
    }

    #[test]
    fn calendar_days_until_a_time_of_day() {
        // Klaviyo's example: wait 1 day until 3 PM, entered at 4 PM → 3 PM the next day.
        let d = delay(
            json!({"unit": "days", "value": 1, "delay_until_time": "15:00", "timezone": "UTC"}),
        );
        let cases = [
            ("2026-06-10T16:00:00Z", "2026-06-11T15:00:00Z"),
            ("2026-06-10T09:00:00Z", "2026-06-11T15:00:00Z"),
            ("2026-06-10T23:59:00Z", "2026-06-11T15:00:00Z"),
        ];
        for (entered, want) in cases {
            assert_eq!(wake_at(&d, utc(entered), None), utc(want), "{entered}");
        }
        // Zero days: today if still ahead, else tomorrow.
        let d0 = delay(
            json!({"unit": "days", "value": 0, "delay_until_time": "15:00", "timezone": "UTC"}),
        );
        assert_eq!(
            wake_at(&d0, utc("2026-06-10T09:00:00Z"), None),
            utc("2026-06-10T15:00:00Z")
        );
        assert_eq!(
            wake_at(&d0, utc("2026-06-10T16:00:00Z"), None),
            utc("2026-06-11T15:00:00Z")
        );
    }

    #[test]
    fn profile_time_zone_decides_the_calendar_day() {
        let d = delay(json!({"unit": "days", "value": 1, "delay_until_time": "09:00"}));
        // 03:00 UTC on 10 June is still 9 June, 23:00 in New York.
        let ny: Tz = "America/New_York".parse().expect("tz");
        assert_eq!(
            wake_at(&d, utc("2026-06-10T03:00:00Z"), Some(ny)),
            utc("2026-06-10T13:00:00Z")
        );
        // Without a profile zone the calendar is UTC.
        assert_eq!(
            wake_at(&d, utc("2026-06-10T03:00:00Z"), None),
            utc("2026-06-11T09:00:00Z")
        );
    }

    #[test]
    fn weekdays_push_to_the_next_allowed_day() {
        // 2026-06-12 is a Friday.
        let d = delay(
            json!({"unit": "days", "value": 1, "delay_until_time": "10:00", "timezone": "UTC",
            "delay_until_weekdays": ["monday", "tuesday"]}),
        );
        assert_eq!(
            wake_at(&d, utc("2026-06-12T12:00:00Z"), None),
            utc("2026-06-15T10:00:00Z")
        );
        // Without a time of day: the start of the next allowed day.
        let h = delay(
            json!({"unit": "hours", "value": 2, "timezone": "Europe/Berlin",
            "delay_until_weekdays": ["monday"]}),
        );
        // Friday 12:00 UTC + 2 h is Friday 16:00 Berlin → Monday 00:00 Berlin (UTC+2).
        assert_eq!(
            wake_at(&h, utc("2026-06-12T12:00:00Z"), None),
            utc("2026-06-14T22:00:00Z")
        );
        // Already on an allowed day: unchanged.
        let f = delay(
            json!({"unit": "hours", "value": 2, "timezone": "UTC", "delay_until_weekdays": ["friday"]}),
        );
        assert_eq!(
            wake_at(&f, utc("2026-06-12T12:00:00Z"), None),
            utc("2026-06-12T14:00:00Z")
        );
    }

    #[test]
    fn dst_transitions_2026() {
        // New York springs forward on 8 March 2026 (02:00 → 03:00) and falls
        // back on 1 November 2026 (02:00 → 01:00). Berlin: 29 March
        // (02:00 → 03:00) and 25 October (03:00 → 02:00).
        let cases = [
            // Ordinary times either side of the change keep their wall time.
            (
                "America/New_York",
                "09:00",
                "2026-03-07T12:00:00Z",
                "2026-03-08T13:00:00Z",
            ),
            (
                "America/New_York",
                "09:00",
                "2026-03-08T12:00:00Z",
                "2026-03-09T13:00:00Z",
            ),
            // 02:30 does not exist on 8 March: moved forward by the gap to 03:30 EDT.
            (
                "America/New_York",
                "02:30",
                "2026-03-07T12:00:00Z",
                "2026-03-08T07:30:00Z",
            ),
            // 01:30 happens twice on 1 November: the first (EDT) one.
            (
                "America/New_York",
                "01:30",
                "2026-10-31T12:00:00Z",
                "2026-11-01T05:30:00Z",
            ),
            (
                "America/New_York",
                "09:00",
                "2026-10-31T12:00:00Z",
                "2026-11-01T14:00:00Z",
            ),
            (
                "Europe/Berlin",
                "02:30",
                "2026-03-28T12:00:00Z",
                "2026-03-29T01:30:00Z",
            ),
            (
                "Europe/Berlin",
                "09:00",
                "2026-03-28T12:00:00Z",
                "2026-03-29T07:00:00Z",
            ),
            (
                "Europe/Berlin",
                "02:30",
                "2026-10-24T12:00:00Z",
                "2026-10-25T00:30:00Z",
            ),
            (
                "Europe/Berlin",
                "09:00",
                "2026-10-24T12:00:00Z",
                "2026-10-25T08:00:00Z",
            ),
        ];
        for (tz, time, entered, want) in cases {
            let d = delay(
                json!({"unit": "days", "value": 1, "delay_until_time": time, "timezone": tz}),
            );
            assert_eq!(
                wake_at(&d, utc(entered), None),
                utc(want),
                "{tz} {time} {entered}"
            );
        }
        // Plain hour delays are elapsed time and ignore the clock change.
        let h = delay(json!({"unit": "hours", "value": 24, "timezone": "America/New_York"}));
        assert_eq!(
            wake_at(&h, utc("2026-03-07T12:00:00Z"), None),
            utc("2026-03-08T12:00:00Z")
        );
    }

    #[test]
    fn resolve_local_gap_and_overlap() {
        let ny: Tz = "America/New_York".parse().expect("tz");
        let t = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").expect("naive");
        assert_eq!(
            resolve_local(ny, t("2026-03-08 02:00")),
            utc("2026-03-08T07:00:00Z")
        );
        assert_eq!(
            resolve_local(ny, t("2026-03-08 03:00")),
            utc("2026-03-08T07:00:00Z")
        );
        assert_eq!(
            resolve_local(ny, t("2026-11-01 01:00")),
            utc("2026-11-01T05:00:00Z")
        );
    }

    #[test]
    fn invalid_delays_are_rejected() {
        let cases = [
            (json!({"unit": "weeks", "value": 1}), "/data/unit"),
            (json!({"unit": "days"}), "/data/value"),
            (json!({"unit": "days", "value": -1}), "/data/value"),
            (json!({"unit": "days", "value": 5000}), "/data/value"),
            (json!({"unit": "days", "value": 1.5}), "/data/value"),
            (
                json!({"unit": "hours", "value": 1, "delay_until_time": "15:00"}),
                "/data/delay_until_time",
            ),
            (
                json!({"unit": "days", "value": 1, "delay_until_time": "25:00"}),
                "/data/delay_until_time",
            ),
            (
                json!({"unit": "days", "value": 1, "delay_until_time": "3 PM"}),
                "/data/delay_until_time",
            ),
            (
                json!({"unit": "days", "value": 1, "delay_until_weekdays": ["funday"]}),
                "/data/delay_until_weekdays/0",
            ),
            (
                json!({"unit": "days", "value": 1, "delay_until_weekdays": []}),
                "/data/delay_until_weekdays",
            ),
            (
                json!({"unit": "days", "value": 1, "timezone": "Mars/Olympus"}),
                "/data/timezone",
            ),
            (
                json!({"unit": "minutes", "value": 1, "secondary_value": 5}),
                "/data/secondary_value",
            ),
            (
                json!({"unit": "days", "value": 1, "secondary_value": 30}),
                "/data/secondary_value",
            ),
        ];
        for (v, ptr) in cases {
            let err = parse(&At::new(&v, "/data")).expect_err("invalid");
            assert_eq!(err.pointer, ptr, "{v}: {err}");
        }
    }
}
