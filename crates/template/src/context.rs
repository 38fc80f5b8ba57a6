//! The data a template renders against: borrowed JSON plus typed extras
//! (dates), and the caller-supplied "now" so rendering never reads a clock.

use chrono::NaiveDateTime;
use serde_json::{Map, Value as Json};

use crate::value::Value;

/// Render-time data. Borrows the JSON it is built from; nothing is copied.
#[derive(Debug, Clone, Default)]
pub struct Context<'a> {
    pub(crate) root: Option<&'a Map<String, Json>>,
    /// Values set by the caller; they shadow keys of `root`.
    pub(crate) extra: Vec<(String, Value<'a>)>,
    pub(crate) now: Option<NaiveDateTime>,
}

impl<'a> Context<'a> {
    /// An empty context.
    pub fn new() -> Self {
        Context::default()
    }

    /// A context over a JSON object's keys (non-objects give an empty context).
    pub fn from_json(v: &'a Json) -> Self {
        Context {
            root: v.as_object(),
            ..Context::default()
        }
    }

    /// A context over a JSON map.
    pub fn from_map(m: &'a Map<String, Json>) -> Self {
        Context {
            root: Some(m),
            ..Context::default()
        }
    }

    /// Bind `key` to any value (e.g. `Value::DateTime`), shadowing the JSON.
    pub fn insert(&mut self, key: impl Into<String>, value: Value<'a>) -> &mut Self {
        let key = key.into();
        if let Some(slot) = self.extra.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else {
            self.extra.push((key, value));
        }
        self
    }

    /// Set "now" for `{% now %}`, `{% today %}`, `weeks_since`, `timesince`.
    pub fn with_now(mut self, now: NaiveDateTime) -> Self {
        self.now = Some(now);
        self
    }

    /// Set "now" in place.
    pub fn set_now(&mut self, now: NaiveDateTime) {
        self.now = Some(now);
    }

    /// The raw JSON for a top-level key, unless a typed extra shadows it.
    pub(crate) fn get_json(&self, key: &str) -> Option<Option<&'a Json>> {
        if self.extra.iter().any(|(k, _)| k == key) {
            return None;
        }
        let m = self.root?;
        Some(crate::value::small_get(m, key))
    }

    pub(crate) fn get(&self, key: &str) -> Option<Value<'a>> {
        if let Some((_, v)) = self.extra.iter().rev().find(|(k, _)| k == key) {
            return Some(v.clone());
        }
        let m = self.root?;
        if m.len() <= 8 {
            return m
                .iter()
                .find(|(k, _)| k.as_str() == key)
                .map(|(_, v)| Value::from_json(v));
        }
        m.get(key).map(Value::from_json)
    }
}
