//! Profiles: identifiers, standard attributes, free properties, and the
//! rules for changing them.

use serde_json::{Map, Value};
use thiserror::Error;

/// Standard profile attributes besides the identifiers, as Klaviyo names them.
pub const STANDARD_ATTRIBUTES: &[&str] = &[
    "first_name",
    "last_name",
    "organization",
    "locale",
    "title",
    "image",
    "location",
];

pub const LOCATION_FIELDS: &[&str] = &[
    "address1",
    "address2",
    "city",
    "country",
    "region",
    "zip",
    "timezone",
    "ip",
    "latitude",
    "longitude",
];

#[derive(Debug, Error, PartialEq)]
pub enum ProfileError {
    #[error("invalid email address {0:?}")]
    Email(String),
    #[error("invalid phone number {0:?}: use E.164, e.g. +15005550006")]
    Phone(String),
    #[error("{field} must be {want}")]
    Type { field: String, want: &'static str },
    #[error("a profile needs at least one identifier: email, phone_number, external_id or id")]
    NoIdentifier,
    #[error("unknown attribute {0:?}")]
    Unknown(String),
}

/// A change to one field: left alone, cleared (`null`), or set.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Patch<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T> Patch<T> {
    pub fn is_keep(&self) -> bool {
        matches!(self, Patch::Keep)
    }
    pub fn set_value(&self) -> Option<&T> {
        match self {
            Patch::Set(v) => Some(v),
            _ => None,
        }
    }
}

/// What a request says about a profile: identifiers to find or create it
/// by, and changes to apply to it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileInput {
    pub id: Option<String>,
    pub email: Patch<String>,
    pub phone_number: Patch<String>,
    pub external_id: Patch<String>,
    pub anonymous_id: Patch<String>,
    /// Standard attributes (first_name, …, location); `null` clears.
    pub attributes: Map<String, Value>,
    /// Custom properties: set or, with `null`, set to null (Klaviyo keeps the key).
    pub properties: Map<String, Value>,
    /// `meta.patch_properties.unset`
    pub unset: Vec<String>,
    /// `meta.patch_properties.append` / `unappend`
    pub append: Map<String, Value>,
    pub unappend: Map<String, Value>,
}

impl ProfileInput {
    /// Reads a Klaviyo profile `attributes` object. Unknown keys are refused
    /// so that a typo does not vanish silently.
    pub fn from_attributes(attrs: &Map<String, Value>) -> Result<Self, ProfileError> {
        let mut input = ProfileInput::default();
        for (k, v) in attrs {
            match k.as_str() {
                "email" => input.email = text_patch(k, v, normalize_email)?,
                "phone_number" => input.phone_number = text_patch(k, v, normalize_phone)?,
                "external_id" => input.external_id = text_patch(k, v, |s| Ok(s.to_owned()))?,
                "anonymous_id" | "_kx" => {
                    input.anonymous_id = text_patch(k, v, |s| Ok(s.to_owned()))?
                }
                "properties" => match v {
                    Value::Object(m) => input.properties = m.clone(),
                    Value::Null => {}
                    _ => return Err(type_err(k, "an object")),
                },
                "location" => match v {
                    Value::Object(m) => {
                        for (lk, lv) in m {
                            if !LOCATION_FIELDS.contains(&lk.as_str()) {
                                return Err(ProfileError::Unknown(format!("location.{lk}")));
                            }
                            let ok = match lk.as_str() {
                                "latitude" | "longitude" => {
                                    lv.is_number() || lv.is_string() || lv.is_null()
                                }
                                _ => lv.is_string() || lv.is_null(),
                            };
                            if !ok {
                                return Err(type_err(&format!("location.{lk}"), "a string"));
                            }
                        }
                        input.attributes.insert(k.clone(), v.clone());
                    }
                    Value::Null => {
                        input.attributes.insert(k.clone(), Value::Null);
                    }
                    _ => return Err(type_err(k, "an object")),
                },
                // Read-only or derived fields clients echo back; ignored.
                "created"
                | "updated"
                | "last_event_date"
                | "predictive_analytics"
                | "subscriptions" => {}
                _ if STANDARD_ATTRIBUTES.contains(&k.as_str()) => {
                    if !(v.is_string() || v.is_null()) {
                        return Err(type_err(k, "a string"));
                    }
                    input.attributes.insert(k.clone(), v.clone());
                }
                _ => return Err(ProfileError::Unknown(k.clone())),
            }
        }
        Ok(input)
    }

    pub fn has_identifier(&self) -> bool {
        self.id.is_some()
            || self.email.set_value().is_some()
            || self.phone_number.set_value().is_some()
            || self.external_id.set_value().is_some()
            || self.anonymous_id.set_value().is_some()
    }
}

fn type_err(field: &str, want: &'static str) -> ProfileError {
    ProfileError::Type {
        field: field.to_owned(),
        want,
    }
}

fn text_patch(
    field: &str,
    v: &Value,
    norm: impl Fn(&str) -> Result<String, ProfileError>,
) -> Result<Patch<String>, ProfileError> {
    match v {
        Value::Null => Ok(Patch::Clear),
        Value::String(s) if s.is_empty() => Ok(Patch::Clear),
        Value::String(s) => Ok(Patch::Set(norm(s)?)),
        _ => Err(type_err(field, "a string")),
    }
}

/// Emails match case-insensitively, as in Klaviyo.
pub fn normalize_email(s: &str) -> Result<String, ProfileError> {
    let t = s.trim();
    let valid = match t.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !t.chars().any(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    };
    if valid {
        Ok(t.to_lowercase())
    } else {
        Err(ProfileError::Email(s.to_owned()))
    }
}

/// E.164: a plus sign and 8–15 digits. Spaces, dashes and parentheses are
/// tolerated and removed.
pub fn normalize_phone(s: &str) -> Result<String, ProfileError> {
    let digits: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    let ok = digits.len() >= 9
        && digits.len() <= 16
        && digits.starts_with('+')
        && digits[1..].chars().all(|c| c.is_ascii_digit())
        && !digits[1..].starts_with('0');
    if ok {
        Ok(digits)
    } else {
        Err(ProfileError::Phone(s.to_owned()))
    }
}

/// A stored profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub id: String,
    pub email: Option<String>,
    pub phone_number: Option<String>,
    pub external_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub attributes: Map<String, Value>,
    pub properties: Map<String, Value>,
    pub subscriptions: Value,
    pub created: i64,
    pub updated: i64,
}

impl Profile {
    pub fn new(id: String, now: i64) -> Self {
        Self {
            id,
            email: None,
            phone_number: None,
            external_id: None,
            anonymous_id: None,
            attributes: Map::new(),
            properties: Map::new(),
            subscriptions: Value::Object(Map::new()),
            created: now,
            updated: now,
        }
    }

    /// Applies `input`'s changes; returns whether anything changed.
    pub fn apply(&mut self, input: &ProfileInput) -> bool {
        let mut changed = false;
        changed |= apply_text(&mut self.email, &input.email);
        changed |= apply_text(&mut self.phone_number, &input.phone_number);
        changed |= apply_text(&mut self.external_id, &input.external_id);
        changed |= apply_text(&mut self.anonymous_id, &input.anonymous_id);
        for (k, v) in &input.attributes {
            if k == "location" {
                changed |= merge_location(&mut self.attributes, v);
            } else if v.is_null() {
                changed |= self.attributes.remove(k).is_some();
            } else if self.attributes.get(k) != Some(v) {
                self.attributes.insert(k.clone(), v.clone());
                changed = true;
            }
        }
        for (k, v) in &input.properties {
            if self.properties.get(k) != Some(v) {
                self.properties.insert(k.clone(), v.clone());
                changed = true;
            }
        }
        for k in &input.unset {
            changed |= self.properties.remove(k).is_some();
        }
        for (k, v) in &input.append {
            let entry = self
                .properties
                .entry(k.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if !entry.is_array() {
                *entry = Value::Array(vec![entry.take()]);
            }
            if let Value::Array(items) = entry {
                match v {
                    Value::Array(vs) => items.extend(vs.iter().cloned()),
                    other => items.push(other.clone()),
                }
                changed = true;
            }
        }
        for (k, v) in &input.unappend {
            if let Some(Value::Array(items)) = self.properties.get_mut(k) {
                let before = items.len();
                items.retain(|x| x != v);
                changed |= items.len() != before;
            }
        }
        changed
    }
}

fn apply_text(field: &mut Option<String>, patch: &Patch<String>) -> bool {
    match patch {
        Patch::Keep => false,
        Patch::Clear => field.take().is_some(),
        Patch::Set(v) => {
            if field.as_deref() == Some(v.as_str()) {
                false
            } else {
                *field = Some(v.clone());
                true
            }
        }
    }
}

fn merge_location(attrs: &mut Map<String, Value>, patch: &Value) -> bool {
    match patch {
        Value::Null => attrs.remove("location").is_some(),
        Value::Object(fields) => {
            let loc = attrs
                .entry("location")
                .or_insert_with(|| Value::Object(Map::new()));
            if !loc.is_object() {
                *loc = Value::Object(Map::new());
            }
            let mut changed = false;
            if let Value::Object(loc) = loc {
                for (k, v) in fields {
                    if v.is_null() {
                        changed |= loc.remove(k).is_some();
                    } else if loc.get(k) != Some(v) {
                        loc.insert(k.clone(), v.clone());
                        changed = true;
                    }
                }
            }
            changed
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> Result<ProfileInput, ProfileError> {
        match v {
            Value::Object(m) => ProfileInput::from_attributes(&m),
            _ => unreachable!(),
        }
    }

    #[test]
    fn normalizes_identifiers() {
        assert_eq!(
            normalize_email(" Sarah@Example.com ").as_deref(),
            Ok("sarah@example.com")
        );
        assert!(normalize_email("nope").is_err());
        assert!(normalize_email("a@b").is_err());
        assert_eq!(
            normalize_phone("+1 (500) 555-0006").as_deref(),
            Ok("+15005550006")
        );
        assert!(normalize_phone("5005550006").is_err());
        assert!(normalize_phone("+0123456789").is_err());
    }

    #[test]
    fn null_clears_and_omitted_stays() {
        let mut p = Profile::new("p".into(), 0);
        assert!(p.apply(
            &input(json!({"email":"a@b.co","first_name":"A","properties":{"x":1}})).unwrap()
        ));
        assert!(!p.apply(&input(json!({"first_name":"A"})).unwrap()));
        assert!(p.apply(&input(json!({"first_name":null})).unwrap()));
        assert_eq!(p.attributes.get("first_name"), None);
        assert_eq!(p.email.as_deref(), Some("a@b.co"));
        assert_eq!(p.properties.get("x"), Some(&json!(1)));
        assert!(p.apply(&input(json!({"email":null})).unwrap()));
        assert_eq!(p.email, None);
    }

    #[test]
    fn location_merges_field_by_field() {
        let mut p = Profile::new("p".into(), 0);
        p.apply(&input(json!({"location":{"city":"Boston","zip":"02110"}})).unwrap());
        p.apply(&input(json!({"location":{"zip":null,"country":"US"}})).unwrap());
        assert_eq!(
            p.attributes["location"],
            json!({"city":"Boston","country":"US"})
        );
    }

    #[test]
    fn refuses_bad_types_and_unknown_keys() {
        assert!(matches!(
            input(json!({"first_name": 3})),
            Err(ProfileError::Type { .. })
        ));
        assert!(matches!(
            input(json!({"frist_name": "x"})),
            Err(ProfileError::Unknown(_))
        ));
        assert!(matches!(
            input(json!({"properties": []})),
            Err(ProfileError::Type { .. })
        ));
    }

    #[test]
    fn append_unappend_and_unset_properties() {
        let mut p = Profile::new("p".into(), 0);
        p.properties.insert("tags".into(), json!(["a"]));
        p.properties.insert("gone".into(), json!(1));
        let mut i = ProfileInput::default();
        i.append.insert("tags".into(), json!("b"));
        i.unset.push("gone".into());
        assert!(p.apply(&i));
        assert_eq!(p.properties["tags"], json!(["a", "b"]));
        assert!(!p.properties.contains_key("gone"));
        let mut i = ProfileInput::default();
        i.unappend.insert("tags".into(), json!("a"));
        p.apply(&i);
        assert_eq!(p.properties["tags"], json!(["b"]));
    }
}
