//! Django's `date` format language (en locale, naive times, UTC) and the
//! date parsing Klaviyo's date filters need.

use std::fmt::Write;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use crate::error::RenderError;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const MONTHS_AP: [&str; 12] = [
    "Jan.", "Feb.", "March", "April", "May", "June", "July", "Aug.", "Sept.", "Oct.", "Nov.",
    "Dec.",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Django's named formats for the en locale.
pub fn named_format(name: &str) -> Option<&'static str> {
    Some(match name {
        "DATE_FORMAT" => "N j, Y",
        "DATETIME_FORMAT" => "N j, Y, P",
        "TIME_FORMAT" => "P",
        "YEAR_MONTH_FORMAT" => "F Y",
        "MONTH_DAY_FORMAT" => "F j",
        "SHORT_DATE_FORMAT" => "m/d/Y",
        "SHORT_DATETIME_FORMAT" => "m/d/Y P",
        _ => return None,
    })
}

/// A date or datetime to format.
#[derive(Clone, Copy)]
pub enum When {
    Date(NaiveDate),
    DateTime(NaiveDateTime),
}

impl When {
    fn date(self) -> NaiveDate {
        match self {
            When::Date(d) => d,
            When::DateTime(dt) => dt.date(),
        }
    }
    fn time(self, spec: char) -> Result<NaiveTime, RenderError> {
        match self {
            When::DateTime(dt) => Ok(dt.time()),
            When::Date(_) => Err(RenderError::TypeError(format!(
                "The format for date objects may not contain time-related format specifiers (found '{spec}')."
            ))),
        }
    }
}

fn f_time(t: NaiveTime, out: &mut String) {
    let h = t.hour() % 12;
    let h = if h == 0 { 12 } else { h };
    if t.minute() == 0 {
        let _ = write!(out, "{h}");
    } else {
        let _ = write!(out, "{h}:{:02}", t.minute());
    }
}

fn ampm(t: NaiveTime) -> &'static str {
    if t.hour() >= 12 {
        "p.m."
    } else {
        "a.m."
    }
}

/// Specifiers Django's `TimeFormat` knows (the `time` filter accepts only these).
pub fn is_time_spec(c: char) -> bool {
    matches!(
        c,
        'a' | 'A' | 'e' | 'f' | 'g' | 'G' | 'h' | 'H' | 'i' | 'O' | 'P' | 's' | 'T' | 'u' | 'Z'
    )
}

/// Every format specifier (others are copied literally).
pub fn is_spec(c: char) -> bool {
    "aAbcdDeEfFgGhHiIjlLmMnNoOPrsStTuUwWyYzZ".contains(c)
}

/// Django's `time_format`: only time specifiers, and only on datetimes;
/// None where Django's `time` filter falls back to "".
pub fn format_time(when: When, fmt: &str) -> Option<String> {
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            chars.next();
        } else if is_spec(c) && (!is_time_spec(c) || matches!(when, When::Date(_))) {
            return None;
        }
    }
    format(when, fmt).ok()
}

/// Format like Django's `dateformat.format`.
pub fn format(when: When, fmt: &str) -> Result<String, RenderError> {
    let d = when.date();
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            'a' => out.push_str(ampm(when.time(c)?)),
            'A' => out.push_str(if when.time(c)?.hour() >= 12 {
                "PM"
            } else {
                "AM"
            }),
            'b' => out.push_str(&MONTHS[d.month0() as usize][..3].to_lowercase()),
            'c' => match when {
                When::DateTime(dt) => {
                    let _ = write!(out, "{}", dt.format("%Y-%m-%dT%H:%M:%S"));
                    let us = dt.nanosecond() / 1000;
                    if us != 0 {
                        let _ = write!(out, ".{us:06}");
                    }
                }
                When::Date(d) => {
                    let _ = write!(out, "{}", d.format("%Y-%m-%d"));
                }
            },
            'd' => {
                let _ = write!(out, "{:02}", d.day());
            }
            'D' => out.push_str(&DAYS[d.weekday().num_days_from_monday() as usize][..3]),
            // Naive datetimes are in the default timezone (UTC here); dates
            // have none, and Django rejects time specifiers for them.
            'e' => {
                when.time(c)?;
            }
            'O' => {
                when.time(c)?;
                out.push_str("+0000");
            }
            'T' => {
                when.time(c)?;
                out.push_str("UTC");
            }
            'Z' => {
                when.time(c)?;
                out.push('0');
            }
            'I' => {
                if let When::DateTime(_) = when {
                    out.push('0');
                }
            }
            'E' | 'F' => out.push_str(MONTHS[d.month0() as usize]),
            'f' => f_time(when.time(c)?, &mut out),
            'g' => {
                let h = when.time(c)?.hour() % 12;
                let _ = write!(out, "{}", if h == 0 { 12 } else { h });
            }
            'G' => {
                let _ = write!(out, "{}", when.time(c)?.hour());
            }
            'h' => {
                let h = when.time(c)?.hour() % 12;
                let _ = write!(out, "{:02}", if h == 0 { 12 } else { h });
            }
            'H' => {
                let _ = write!(out, "{:02}", when.time(c)?.hour());
            }
            'i' => {
                let _ = write!(out, "{:02}", when.time(c)?.minute());
            }
            'j' => {
                let _ = write!(out, "{}", d.day());
            }
            'l' => out.push_str(DAYS[d.weekday().num_days_from_monday() as usize]),
            'L' => out.push_str(if d.leap_year() { "True" } else { "False" }),
            'm' => {
                let _ = write!(out, "{:02}", d.month());
            }
            'M' => out.push_str(&MONTHS[d.month0() as usize][..3]),
            'n' => {
                let _ = write!(out, "{}", d.month());
            }
            'N' => out.push_str(MONTHS_AP[d.month0() as usize]),
            'o' => {
                let _ = write!(out, "{}", d.iso_week().year());
            }
            'P' => {
                let t = when.time(c)?;
                if t.minute() == 0 && t.hour() == 0 {
                    out.push_str("midnight");
                } else if t.minute() == 0 && t.hour() == 12 {
                    out.push_str("noon");
                } else {
                    f_time(t, &mut out);
                    out.push(' ');
                    out.push_str(ampm(t));
                }
            }
            'r' => {
                let dt = match when {
                    When::DateTime(dt) => dt,
                    When::Date(d) => d.and_time(NaiveTime::MIN),
                };
                let _ = write!(out, "{} +0000", dt.format("%a, %d %b %Y %H:%M:%S"));
            }
            's' => {
                let _ = write!(out, "{:02}", when.time(c)?.second());
            }
            'S' => out.push_str(ordinal_suffix(d.day())),
            't' => {
                let _ = write!(out, "{}", days_in_month(d));
            }
            'u' => {
                let _ = write!(out, "{:06}", when.time(c)?.nanosecond() / 1000);
            }
            'U' => {
                let dt = match when {
                    When::DateTime(dt) => dt,
                    When::Date(d) => d.and_time(NaiveTime::MIN),
                };
                let _ = write!(out, "{}", dt.and_utc().timestamp());
            }
            'w' => {
                let _ = write!(out, "{}", d.weekday().num_days_from_sunday());
            }
            'W' => {
                let _ = write!(out, "{}", d.iso_week().week());
            }
            'y' => {
                let _ = write!(out, "{:02}", d.year().rem_euclid(100));
            }
            'Y' => {
                let _ = write!(out, "{:04}", d.year());
            }
            'z' => {
                let _ = write!(out, "{}", d.ordinal());
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

fn ordinal_suffix(day: u32) -> &'static str {
    if (11..=13).contains(&day) {
        return "th";
    }
    match day % 10 {
        1 => "st",
        2 => "nd",
        3 => "rd",
        _ => "th",
    }
}

fn days_in_month(d: NaiveDate) -> u32 {
    let (y, m) = if d.month() == 12 {
        (d.year() + 1, 1)
    } else {
        (d.year(), d.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|n| n.pred_opt())
        .map_or(31, |l| l.day())
}

/// Parse the ISO-8601-ish strings event payloads carry: a date, a datetime
/// with `T` or space, optional fraction and optional `Z`/offset (converted
/// to UTC, since templates work with naive UTC values).
pub fn parse_iso(s: &str) -> Option<When> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(When::Date(d));
    }
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(When::DateTime(dt.naive_utc()));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
    ] {
        if let Ok(dt) = chrono::DateTime::parse_from_str(s, f) {
            return Some(When::DateTime(dt.naive_utc()));
        }
    }
    let s2 = s.strip_suffix('Z').unwrap_or(s);
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s2, f) {
            return Some(When::DateTime(dt));
        }
    }
    None
}

/// Python `strftime` for the directives Klaviyo documents (`%Y-%m-%d`...).
/// Unknown directives are emitted verbatim instead of panicking.
pub fn strftime(dt: NaiveDateTime, fmt: &str) -> String {
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(d) = chars.next() else {
            out.push('%');
            break;
        };
        let _ = match d {
            'Y' => write!(out, "{:04}", dt.year()),
            'y' => write!(out, "{:02}", dt.year().rem_euclid(100)),
            'm' => write!(out, "{:02}", dt.month()),
            'd' => write!(out, "{:02}", dt.day()),
            'e' => write!(out, "{:2}", dt.day()),
            'H' => write!(out, "{:02}", dt.hour()),
            'I' => write!(
                out,
                "{:02}",
                if dt.hour().is_multiple_of(12) {
                    12
                } else {
                    dt.hour() % 12
                }
            ),
            'M' => write!(out, "{:02}", dt.minute()),
            'S' => write!(out, "{:02}", dt.second()),
            'f' => write!(out, "{:06}", dt.nanosecond() / 1000),
            'p' => write!(out, "{}", if dt.hour() >= 12 { "PM" } else { "AM" }),
            'B' => write!(out, "{}", MONTHS[dt.month0() as usize]),
            'b' | 'h' => write!(out, "{}", &MONTHS[dt.month0() as usize][..3]),
            'A' => write!(
                out,
                "{}",
                DAYS[dt.weekday().num_days_from_monday() as usize]
            ),
            'a' => write!(
                out,
                "{}",
                &DAYS[dt.weekday().num_days_from_monday() as usize][..3]
            ),
            'j' => write!(out, "{:03}", dt.ordinal()),
            'w' => write!(out, "{}", dt.weekday().num_days_from_sunday()),
            'u' => write!(out, "{}", dt.weekday().number_from_monday()),
            'U' => write!(
                out,
                "{:02}",
                (dt.ordinal() + 6 - dt.weekday().num_days_from_sunday()) / 7
            ),
            'W' => write!(
                out,
                "{:02}",
                (dt.ordinal() + 6 - dt.weekday().num_days_from_monday()) / 7
            ),
            'V' => write!(out, "{:02}", dt.iso_week().week()),
            'G' => write!(out, "{}", dt.iso_week().year()),
            'F' => write!(out, "{}", dt.format("%Y-%m-%d")),
            'T' => write!(out, "{}", dt.format("%H:%M:%S")),
            'D' => write!(out, "{}", dt.format("%m/%d/%y")),
            'c' => write!(out, "{}", dt.format("%a %b %e %H:%M:%S %Y")),
            'x' => write!(out, "{}", dt.format("%m/%d/%y")),
            'X' => write!(out, "{}", dt.format("%H:%M:%S")),
            'z' | 'Z' => Ok(()),
            '%' => write!(out, "%"),
            other => write!(out, "%{other}"),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_django() {
        let dt = NaiveDate::from_ymd_opt(2024, 3, 5)
            .and_then(|d| d.and_hms_opt(14, 7, 9))
            .map(When::DateTime);
        let Some(dt) = dt else {
            panic!("bad test date")
        };
        assert_eq!(
            format(dt, "N j, Y, P").as_deref(),
            Ok("March 5, 2024, 2:07 p.m.")
        );
        assert_eq!(
            format(dt, "l jS F Y").as_deref(),
            Ok("Tuesday 5th March 2024")
        );
    }
}
