//! The conformance-case runner shared by the CLI (`outflow template cases`)
//! and the crate's tests. Input lines look like
//! `{"name", "template", "context", "autoescape", "string_if_invalid"}`;
//! context values `{"$datetime": "…"}` / `{"$date": "…"}` become dates.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime};
use serde_json::{json, Map, Value as Json};

use crate::{Context, Dict, Options, Template, Value};

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Output(String),
    /// `(kind, message)`, kind being the Django/Python exception name.
    Error(String, String),
}

/// One case's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    pub outcome: Outcome,
}

impl CaseResult {
    /// The JSON line the CLI prints.
    pub fn to_json(&self) -> Json {
        match &self.outcome {
            Outcome::Output(o) => json!({"name": self.name, "output": o}),
            Outcome::Error(kind, msg) => {
                json!({"name": self.name, "error": format!("{kind}: {msg}")})
            }
        }
    }
}

fn marker(j: &Json) -> Option<Value<'static>> {
    let m = j.as_object()?;
    if m.len() != 1 {
        return None;
    }
    let (k, v) = m.iter().next()?;
    let s = v.as_str()?;
    match k.as_str() {
        "$datetime" => NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(Value::DateTime),
        "$date" => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .map(Value::Date),
        _ => None,
    }
}

fn has_marker(j: &Json) -> bool {
    if marker(j).is_some() {
        return true;
    }
    match j {
        Json::Array(a) => a.iter().any(has_marker),
        Json::Object(m) => m.values().any(has_marker),
        _ => false,
    }
}

/// Convert JSON with typed markers into an owned value.
pub fn typed_value(j: &Json) -> Value<'static> {
    if let Some(v) = marker(j) {
        return v;
    }
    match j {
        Json::Array(a) => Value::list(a.iter().map(typed_value).collect()),
        Json::Object(m) => Value::Dict(Dict::Owned(Arc::new(
            m.iter()
                .map(|(k, v)| (Cow::Owned(k.clone()), typed_value(v)))
                .collect(),
        ))),
        other => Value::from_json(other).into_owned(),
    }
}

/// Build a render context from a case's JSON context: plain JSON is
/// borrowed; only keys holding typed markers are converted.
pub fn context_from_json(map: &Map<String, Json>) -> Context<'_> {
    let mut ctx = Context::from_map(map);
    for (k, v) in map {
        if has_marker(v) {
            ctx.insert(k.clone(), typed_value(v));
        }
    }
    ctx
}

/// Run one case object with no clock (tags needing "now" fail).
pub fn run_case(case: &Json) -> CaseResult {
    run_case_at(case, None)
}

/// Run one case object; `now` feeds `{% now %}`, `{% today %}` and friends.
pub fn run_case_at(case: &Json, now: Option<NaiveDateTime>) -> CaseResult {
    let name = case
        .get("name")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_string();
    let template = case.get("template").and_then(Json::as_str).unwrap_or("");
    let options = Options {
        autoescape: case
            .get("autoescape")
            .and_then(Json::as_bool)
            .unwrap_or(false),
        string_if_invalid: case
            .get("string_if_invalid")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string(),
        ..Options::default()
    };
    let empty = Map::new();
    let map = case
        .get("context")
        .and_then(Json::as_object)
        .unwrap_or(&empty);
    let outcome = match Template::compile(template, &options) {
        Err(e) => Outcome::Error("TemplateSyntaxError".into(), e.to_string()),
        Ok(t) => match t.render(&{
            let mut ctx = context_from_json(map);
            if let Some(n) = now {
                ctx.set_now(n);
            }
            ctx
        }) {
            Ok(s) => Outcome::Output(s),
            Err(e) => Outcome::Error(e.kind().into(), e.to_string()),
        },
    };
    CaseResult { name, outcome }
}

/// Run every non-blank JSONL line; a malformed line yields an error result.
pub fn run_jsonl(text: &str, now: Option<NaiveDateTime>) -> Vec<CaseResult> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| match serde_json::from_str::<Json>(line) {
            Ok(case) => run_case_at(&case, now),
            Err(e) => CaseResult {
                name: format!("line {}", i + 1),
                outcome: Outcome::Error("InvalidCase".into(), e.to_string()),
            },
        })
        .collect()
}
