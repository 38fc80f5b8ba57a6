//! Events and Klaviyo's rules for accepting them.

use crate::profile::ProfileInput;
use chrono::{DateTime, Datelike, Duration, SubsecRound, TimeZone, Utc};
use serde_json::{Map, Value};
use thiserror::Error;

pub const MAX_PROPERTIES: usize = 400;
pub const MAX_METRIC_NAME: usize = 127;
pub const MAX_STRING_BYTES: usize = 100 * 1024;

#[derive(Debug, Error, PartialEq)]
pub enum EventError {
    #[error("metric name must not be empty")]
    EmptyMetric,
    #[error("metric name must be shorter than 128 characters")]
    MetricTooLong,
    #[error("an event may have at most {MAX_PROPERTIES} properties, this one has {0}")]
    TooManyProperties(usize),
    #[error("event time must be after 1990-01-01")]
    TooOld,
    #[error("event time must be at most one year in the future")]
    TooFarAhead,
    #[error("string property {0:?} is longer than 100 KB")]
    StringTooLong(String),
    #[error(
        "the event's profile needs at least one identifier: email, phone_number, external_id or id"
    )]
    NoIdentifier,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventInput {
    pub metric_name: String,
    pub profile: ProfileInput,
    pub properties: Map<String, Value>,
    pub time: Option<DateTime<Utc>>,
    pub value: Option<f64>,
    pub value_currency: Option<String>,
    pub unique_id: Option<String>,
    pub backfill: bool,
}

/// An event that passed validation, with its time settled and its
/// deduplication key chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEvent {
    pub input: EventInput,
    pub time: DateTime<Utc>,
    /// `unique_id`, or else the time to the second (Klaviyo's rule: one event
    /// per profile, metric and second).
    pub unique_key: String,
}

impl EventInput {
    pub fn validate(self, now: DateTime<Utc>) -> Result<ValidEvent, EventError> {
        let name = self.metric_name.trim();
        if name.is_empty() {
            return Err(EventError::EmptyMetric);
        }
        if name.chars().count() > MAX_METRIC_NAME {
            return Err(EventError::MetricTooLong);
        }
        if self.properties.len() > MAX_PROPERTIES {
            return Err(EventError::TooManyProperties(self.properties.len()));
        }
        if let Some(k) = long_string(&self.properties) {
            return Err(EventError::StringTooLong(k));
        }
        if !self.profile.has_identifier() {
            return Err(EventError::NoIdentifier);
        }
        let time = self.time.unwrap_or(now).trunc_subsecs(0);
        let floor = Utc.with_ymd_and_hms(1990, 1, 1, 0, 0, 0).single();
        if floor.is_some_and(|f| time <= f) {
            return Err(EventError::TooOld);
        }
        if time > now + one_year_after(now) {
            return Err(EventError::TooFarAhead);
        }
        let unique_key = match &self.unique_id {
            Some(u) if !u.is_empty() => format!("u:{u}"),
            _ => format!("t:{}", time.timestamp()),
        };
        let metric_name = name.to_owned();
        Ok(ValidEvent {
            input: EventInput {
                metric_name,
                ..self
            },
            time,
            unique_key,
        })
    }
}

fn one_year_after(now: DateTime<Utc>) -> Duration {
    let days = if chrono::NaiveDate::from_ymd_opt(now.year() + 1, 2, 29).is_some() {
        366
    } else {
        365
    };
    Duration::days(days)
}

fn long_string(props: &Map<String, Value>) -> Option<String> {
    fn walk(v: &Value) -> bool {
        match v {
            Value::String(s) => s.len() > MAX_STRING_BYTES,
            Value::Array(a) => a.iter().any(walk),
            Value::Object(o) => o.values().any(walk),
            _ => false,
        }
    }
    props.iter().find(|(_, v)| walk(v)).map(|(k, _)| k.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Patch;

    fn ev() -> EventInput {
        EventInput {
            metric_name: "Placed Order".into(),
            profile: ProfileInput {
                email: Patch::Set("a@b.co".into()),
                ..Default::default()
            },
            properties: Map::new(),
            time: None,
            value: None,
            value_currency: None,
            unique_id: None,
            backfill: false,
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap()
    }

    #[test]
    fn applies_klaviyo_limits() {
        let mut e = ev();
        e.metric_name = "x".repeat(128);
        assert_eq!(e.validate(now()), Err(EventError::MetricTooLong));
        let mut e = ev();
        e.metric_name = "x".repeat(127);
        assert!(e.validate(now()).is_ok());
        let mut e = ev();
        for i in 0..401 {
            e.properties.insert(i.to_string(), Value::Null);
        }
        assert_eq!(e.validate(now()), Err(EventError::TooManyProperties(401)));
        let mut e = ev();
        e.time = Utc.with_ymd_and_hms(1989, 12, 31, 0, 0, 0).single();
        assert_eq!(e.validate(now()), Err(EventError::TooOld));
        let mut e = ev();
        e.time = Some(now() + Duration::days(367));
        assert_eq!(e.validate(now()), Err(EventError::TooFarAhead));
        let mut e = ev();
        e.profile = ProfileInput::default();
        assert_eq!(e.validate(now()), Err(EventError::NoIdentifier));
        let mut e = ev();
        e.properties.insert(
            "big".into(),
            Value::String("x".repeat(MAX_STRING_BYTES + 1)),
        );
        assert!(matches!(
            e.validate(now()),
            Err(EventError::StringTooLong(_))
        ));
    }

    #[test]
    fn dedup_key_is_unique_id_or_the_second() {
        let mut e = ev();
        e.time = Some(now() + Duration::milliseconds(700));
        let v = e.clone().validate(now()).unwrap();
        assert_eq!(v.time, now());
        assert_eq!(v.unique_key, format!("t:{}", now().timestamp()));
        e.unique_id = Some("order-1".into());
        assert_eq!(e.validate(now()).unwrap().unique_key, "u:order-1");
    }
}
