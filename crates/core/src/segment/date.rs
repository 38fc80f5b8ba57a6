//! The date trigger's calendar: when a profile's date comes round.
//!
//! A date without a time ("1990-02-29", "02/29/1990", "1990-02-29 00:00:00")
//! is a calendar date, the same day in every time zone — not midnight UTC,
//! which is Klaviyo's known off-by-one. A date with a zone is an instant,
//! read as a date in the flow's (or the profile's) zone. The flow fires at
//! `trigger_time` on the day `timedelta_value_before_date` units before each
//! occurrence, in that zone, whatever the DST offset of that day.

use crate::flow::definition::{DateTrigger, DateUnit, Recurrence};
use crate::flow::delay::{resolve_local, Zone};
use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, Utc, Weekday};
use chrono_tz::Tz;
use serde_json::Value;

/// A profile's date property, as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateValue {
    Calendar(NaiveDate),
    Instant(DateTime<Utc>),
}

impl DateValue {
    pub fn parse(v: &Value) -> Option<DateValue> {
        let s = match v {
            Value::String(s) => s.trim(),
            Value::Number(n) => {
                return n
                    .as_i64()
                    .and_then(|s| DateTime::from_timestamp(s, 0))
                    .map(DateValue::Instant)
            }
            _ => return None,
        };
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Some(DateValue::Instant(t.to_utc()));
        }
        for f in ["%Y-%m-%d", "%m/%d/%Y"] {
            if let Ok(d) = NaiveDate::parse_from_str(s, f) {
                return Some(DateValue::Calendar(d));
            }
        }
        // A time without a zone says nothing about where: keep the day.
        for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
            if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
                return Some(DateValue::Calendar(t.date()));
            }
        }
        None
    }

    /// The calendar day in `tz`.
    pub fn day_in(&self, tz: Tz) -> NaiveDate {
        match self {
            DateValue::Calendar(d) => *d,
            DateValue::Instant(t) => t.with_timezone(&tz).date_naive(),
        }
    }
}

/// The profile's time zone: the `$timezone` property, else
/// `location.timezone`. `profile` is Klaviyo's attributes object.
pub fn profile_zone(profile: &Value) -> Option<Tz> {
    [
        profile.get("properties").and_then(|p| p.get("$timezone")),
        profile.get("location").and_then(|l| l.get("timezone")),
    ]
    .into_iter()
    .flatten()
    .filter_map(Value::as_str)
    .find_map(|s| s.parse::<Tz>().ok())
}

/// The zone a trigger reads dates in for one profile (UTC when the profile
/// has none).
pub fn zone_for(t: &DateTrigger, profile_tz: Option<Tz>) -> Tz {
    match &t.timezone {
        Zone::Fixed(tz) => *tz,
        Zone::Profile => profile_tz.unwrap_or(Tz::UTC),
    }
}

fn last_day(year: i32, month: u32) -> u32 {
    (28..=31)
        .rev()
        .find(|d| NaiveDate::from_ymd_opt(year, month, *d).is_some())
        .unwrap_or(28)
}

/// Whether `day` is an occurrence of `date` under the recurrence. An
/// anniversary of 29 February falls on 28 February in common years; a
/// monthly date of the 31st on the last day of shorter months.
pub fn occurs_on(date: NaiveDate, rec: Recurrence, day: NaiveDate) -> bool {
    if day < date {
        return false;
    }
    match rec {
        Recurrence::Never => day == date,
        Recurrence::Weekly => day.weekday() == date.weekday(),
        Recurrence::Monthly => {
            let last = last_day(day.year(), day.month());
            day.day() == date.day() || (date.day() > last && day.day() == last)
        }
        Recurrence::Annually => {
            (day.month(), day.day()) == (date.month(), date.day())
                || (date.month() == 2
                    && date.day() == 29
                    && day.month() == 2
                    && day.day() == 28
                    && last_day(day.year(), 2) == 28)
        }
    }
}

/// The day the flow fires for an occurrence: the offset before it, moved
/// back to an allowed weekday when `trigger_days` restricts them.
pub fn fire_day(t: &DateTrigger, occurrence: NaiveDate) -> Option<NaiveDate> {
    let n = u64::try_from(t.value_before.clamp(0, 10_000)).ok()?;
    let mut day = match t.unit_before {
        DateUnit::Days => occurrence.checked_sub_days(Days::new(n))?,
        DateUnit::Weeks => occurrence.checked_sub_days(Days::new(n * 7))?,
        DateUnit::Months => occurrence.checked_sub_months(Months::new(u32::try_from(n).ok()?))?,
    };
    if let Some(days) = t.trigger_days.as_ref().filter(|d| !d.is_empty()) {
        for _ in 0..7 {
            if days.contains(&day.weekday()) {
                break;
            }
            day = day.pred_opt()?;
        }
    }
    Some(day)
}

/// The largest gap between a fire day and its occurrence, in days.
pub fn max_lead_days(t: &DateTrigger) -> i64 {
    let n = t.value_before.clamp(0, 10_000);
    let lead = match t.unit_before {
        DateUnit::Days => n,
        DateUnit::Weeks => n * 7,
        DateUnit::Months => n * 31,
    };
    lead + 7
}

/// Most days one call looks through: a clock that jumped further only
/// fires the latest year's worth.
const MAX_SPAN_DAYS: i64 = 800;

/// Every firing in `(after, upto]` for one profile date: the occurrence (the
/// key that makes firing idempotent) and the instant.
pub fn firings(
    t: &DateTrigger,
    value: &DateValue,
    tz: Tz,
    after: DateTime<Utc>,
    upto: DateTime<Utc>,
) -> Vec<(NaiveDate, DateTime<Utc>)> {
    let date = value.day_in(tz);
    let first = after.with_timezone(&tz).date_naive();
    let last = upto.with_timezone(&tz).date_naive();
    let span = (last - first).num_days().clamp(0, MAX_SPAN_DAYS);
    let first = last - chrono::Duration::days(span);
    let mut out = Vec::new();
    let mut day = first;
    let end = last + chrono::Duration::days(max_lead_days(t));
    while day <= end {
        if occurs_on(date, t.recurrence, day) {
            if let Some(fd) = fire_day(t, day) {
                let at = resolve_local(tz, fd.and_time(t.trigger_time));
                if after < at && at <= upto {
                    out.push((day, at));
                }
            }
        }
        match day.succ_opt() {
            Some(d) => day = d,
            None => break,
        }
    }
    out
}

/// The keys a date is indexed under, so the daily pass can find the
/// profiles whose date can match without reading the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexKeys {
    /// `month * 100 + day`, for annual recurrence.
    pub month_day: i64,
    pub day_of_month: i64,
    /// 0 = Monday.
    pub weekday: i64,
    pub date: String,
}

pub fn index_keys(day: NaiveDate) -> IndexKeys {
    IndexKeys {
        month_day: i64::from(day.month() * 100 + day.day()),
        day_of_month: i64::from(day.day()),
        weekday: i64::from(day.weekday().num_days_from_monday()),
        date: day.format("%Y-%m-%d").to_string(),
    }
}

/// The index keys of every stored date that can have an occurrence on
/// `day` (29 February on 28 February in common years, the 29th–31st on a
/// month's last day).
pub fn keys_occurring_on(rec: Recurrence, day: NaiveDate) -> Vec<i64> {
    match rec {
        Recurrence::Annually => {
            let mut v = vec![i64::from(day.month() * 100 + day.day())];
            if day.month() == 2 && day.day() == 28 && last_day(day.year(), 2) == 28 {
                v.push(229);
            }
            v
        }
        Recurrence::Monthly => {
            let last = last_day(day.year(), day.month());
            if day.day() == last {
                (i64::from(last)..=31).collect()
            } else {
                vec![i64::from(day.day())]
            }
        }
        Recurrence::Weekly => vec![i64::from(day.weekday().num_days_from_monday())],
        Recurrence::Never => Vec::new(),
    }
}

/// The occurrence days whose firing may fall in `(after, upto]` in some
/// time zone: the caller looks these up in the index (a superset; each
/// candidate is then checked with [`firings`]).
pub fn candidate_occurrences(
    t: &DateTrigger,
    after: DateTime<Utc>,
    upto: DateTime<Utc>,
) -> Vec<NaiveDate> {
    // Local days differ from UTC days by at most one either way.
    let first = after.date_naive() - chrono::Duration::days(1);
    let last = upto.date_naive() + chrono::Duration::days(1);
    let span = (last - first).num_days().clamp(0, MAX_SPAN_DAYS);
    let first = last - chrono::Duration::days(span);
    let mut out = Vec::new();
    let mut day = first;
    let end = last + chrono::Duration::days(max_lead_days(t));
    while day <= end {
        if fire_day(t, day).is_some_and(|f| f >= first && f <= last) {
            out.push(day);
        }
        match day.succ_opt() {
            Some(d) => day = d,
            None => break,
        }
    }
    out
}

/// Weekday names as the trigger's `trigger_days` uses them.
pub fn weekday_index(w: Weekday) -> i64 {
    i64::from(w.num_days_from_monday())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveTime;
    use serde_json::json;

    fn trigger(unit: DateUnit, n: i64, rec: Recurrence, zone: Zone, time: &str) -> DateTrigger {
        DateTrigger {
            property: "Birthday".into(),
            unit_before: unit,
            value_before: n,
            recurrence: rec,
            timezone: zone,
            trigger_time: NaiveTime::parse_from_str(time, "%H:%M").expect("time"),
            trigger_days: None,
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").to_utc()
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn dates_without_time_are_calendar_days() {
        let v = DateValue::parse(&json!("1990-06-15")).expect("date");
        let tokyo: Tz = "Asia/Tokyo".parse().expect("tz");
        let la: Tz = "America/Los_Angeles".parse().expect("tz");
        assert_eq!(v.day_in(tokyo), d("1990-06-15"));
        assert_eq!(v.day_in(la), d("1990-06-15"));
        assert_eq!(DateValue::parse(&json!("06/15/1990")), Some(v));
        let i = DateValue::parse(&json!("1990-06-15T02:00:00Z")).expect("instant");
        assert_eq!(i.day_in(la), d("1990-06-14"));
    }

    #[test]
    fn profile_zone_prefers_the_timezone_property() {
        let p = json!({"properties": {"$timezone": "Europe/Paris"}, "location": {"timezone": "Asia/Tokyo"}});
        assert_eq!(profile_zone(&p).map(|t| t.name()), Some("Europe/Paris"));
        let p = json!({"location": {"timezone": "Asia/Tokyo"}});
        assert_eq!(profile_zone(&p).map(|t| t.name()), Some("Asia/Tokyo"));
        assert_eq!(profile_zone(&json!({})), None);
    }

    #[test]
    fn leap_day_anniversaries_fall_on_28_february_in_common_years() {
        let born = d("2000-02-29");
        assert!(occurs_on(born, Recurrence::Annually, d("2027-02-28")));
        assert!(!occurs_on(born, Recurrence::Annually, d("2027-03-01")));
        assert!(occurs_on(born, Recurrence::Annually, d("2028-02-29")));
        assert!(!occurs_on(born, Recurrence::Annually, d("2028-02-28")));
        assert_eq!(
            keys_occurring_on(Recurrence::Annually, d("2027-02-28")),
            vec![228, 229]
        );
        assert_eq!(
            keys_occurring_on(Recurrence::Annually, d("2028-02-28")),
            vec![228]
        );
    }

    #[test]
    fn monthly_and_weekly_recurrence() {
        let date = d("2026-01-31");
        assert!(occurs_on(date, Recurrence::Monthly, d("2026-02-28")));
        assert!(occurs_on(date, Recurrence::Monthly, d("2026-04-30")));
        assert!(!occurs_on(date, Recurrence::Monthly, d("2026-03-30")));
        assert!(
            !occurs_on(date, Recurrence::Monthly, d("2025-12-31")),
            "not before the date"
        );
        assert!(occurs_on(date, Recurrence::Weekly, d("2026-02-07")));
        assert!(occurs_on(date, Recurrence::Never, date));
        assert!(!occurs_on(date, Recurrence::Never, d("2027-01-31")));
        assert_eq!(
            keys_occurring_on(Recurrence::Monthly, d("2026-04-30")),
            vec![30, 31]
        );
    }

    #[test]
    fn fires_before_the_date_at_local_time_across_dst() {
        // 2 days before 31 March at 09:00 Berlin: 29 March 2026, the day
        // clocks go forward (CET → CEST), so 07:00 UTC.
        let berlin: Tz = "Europe/Berlin".parse().expect("tz");
        let t = trigger(
            DateUnit::Days,
            2,
            Recurrence::Annually,
            Zone::Fixed(berlin),
            "09:00",
        );
        let v = DateValue::parse(&json!("1980-03-31")).expect("date");
        let f = firings(
            &t,
            &v,
            berlin,
            utc("2026-03-28T12:00:00Z"),
            utc("2026-03-29T12:00:00Z"),
        );
        assert_eq!(f, vec![(d("2026-03-31"), utc("2026-03-29T07:00:00Z"))]);
        // The day before, in winter time, it would have been 08:00 UTC.
        let t1 = trigger(
            DateUnit::Days,
            3,
            Recurrence::Annually,
            Zone::Fixed(berlin),
            "09:00",
        );
        let f = firings(
            &t1,
            &v,
            berlin,
            utc("2026-03-27T12:00:00Z"),
            utc("2026-03-28T12:00:00Z"),
        );
        assert_eq!(f, vec![(d("2026-03-31"), utc("2026-03-28T08:00:00Z"))]);
        // A local time that does not exist that day (02:30) moves forward.
        let t2 = trigger(
            DateUnit::Days,
            2,
            Recurrence::Annually,
            Zone::Fixed(berlin),
            "02:30",
        );
        let f = firings(
            &t2,
            &v,
            berlin,
            utc("2026-03-28T12:00:00Z"),
            utc("2026-03-29T12:00:00Z"),
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].1, utc("2026-03-29T01:30:00Z"));
    }

    #[test]
    fn months_before_and_windows() {
        let t = trigger(
            DateUnit::Months,
            1,
            Recurrence::Never,
            Zone::Profile,
            "10:00",
        );
        let v = DateValue::parse(&json!("2026-03-31")).expect("date");
        // One month before 31 March is 28 February (clamped).
        let f = firings(
            &t,
            &v,
            Tz::UTC,
            utc("2026-02-27T00:00:00Z"),
            utc("2026-03-05T00:00:00Z"),
        );
        assert_eq!(f, vec![(d("2026-03-31"), utc("2026-02-28T10:00:00Z"))]);
        // Outside the window: nothing; never repeats.
        let f = firings(
            &t,
            &v,
            Tz::UTC,
            utc("2027-02-27T00:00:00Z"),
            utc("2027-03-05T00:00:00Z"),
        );
        assert!(f.is_empty());
        let c = candidate_occurrences(&t, utc("2026-02-28T00:00:00Z"), utc("2026-02-28T23:00:00Z"));
        assert!(c.contains(&d("2026-03-31")) && c.contains(&d("2026-03-28")));
    }

    #[test]
    fn trigger_days_move_the_fire_day_back() {
        let mut t = trigger(DateUnit::Days, 0, Recurrence::Never, Zone::Profile, "09:00");
        t.trigger_days = Some(vec![Weekday::Fri]);
        // 2026-03-01 is a Sunday: fire on Friday 27 February.
        assert_eq!(fire_day(&t, d("2026-03-01")), Some(d("2026-02-27")));
    }
}
