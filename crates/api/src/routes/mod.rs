//! The `/api/` endpoints, one module per Klaviyo resource, and ours under
//! `/outflow/v1/`.

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod deliveries;
pub mod events;
pub mod flows;
pub mod health;
pub mod lists;
pub mod metrics;
pub mod profiles;
pub mod review;
pub mod segments;
pub mod users;

use crate::error::{ApiError, ErrorSource};
use serde::Deserialize;
use serde_json::{Map, Value};

/// `{"data": …}`
#[derive(Debug, Deserialize)]
pub struct Doc<T> {
    pub data: T,
}

/// A resource object in a request body.
#[derive(Debug, Deserialize)]
pub struct Data<A> {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub id: Option<String>,
    pub attributes: A,
}

/// A `{"type", "id"}` identifier in a relationship body.
#[derive(Debug, Deserialize)]
pub struct Ident {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

pub fn expect_type(kind: &str, want: &str, pointer: &str) -> Result<(), ApiError> {
    if kind == want {
        Ok(())
    } else {
        Err(ApiError::invalid_pointer(
            pointer,
            format!("The resource type must be '{want}', not '{kind}'."),
        ))
    }
}

/// Maps a profile attribute error to a 400 pointing into the body.
pub fn profile_error(base: &str, e: outflow_core::profile::ProfileError) -> ApiError {
    use outflow_core::profile::ProfileError as E;
    let field = match &e {
        E::Email(_) => "email".to_owned(),
        E::Phone(_) => "phone_number".to_owned(),
        E::Type { field, .. } => field.replace('.', "/"),
        E::Unknown(f) => f.replace('.', "/"),
        E::NoIdentifier => String::new(),
    };
    let pointer = if field.is_empty() {
        base.to_owned()
    } else {
        format!("{base}/{field}")
    };
    ApiError::Invalid {
        detail: e.to_string(),
        at: Some(ErrorSource::Pointer(pointer)),
    }
}

/// Reads `meta.patch_properties` ({append, unappend, unset}).
pub fn patch_properties(
    meta: Option<&Value>,
    input: &mut outflow_core::profile::ProfileInput,
) -> Result<(), ApiError> {
    let Some(pp) = meta.and_then(|m| m.get("patch_properties")) else {
        return Ok(());
    };
    let obj = |v: Option<&Value>| -> Map<String, Value> {
        v.and_then(Value::as_object).cloned().unwrap_or_default()
    };
    input.append = obj(pp.get("append"));
    input.unappend = obj(pp.get("unappend"));
    input.unset = match pp.get("unset") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(_) => {
            return Err(ApiError::invalid_pointer(
                "/data/meta/patch_properties/unset",
                "unset must be a property name or a list of them.",
            ))
        }
    };
    Ok(())
}

/// A time given as RFC 3339, a naive datetime (UTC) or a date.
pub fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.to_utc());
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}
