//! Runtime values. JSON data is borrowed, never cloned, while resolving
//! lookups; only filters that build new data allocate.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt::Write;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use serde_json::{Map, Value as Json};

/// A list: either a borrowed JSON array or one built during rendering.
#[derive(Clone, Debug)]
pub enum List<'a> {
    Json(&'a [Json]),
    Owned(Arc<Vec<Value<'a>>>),
}

/// A dict (insertion-ordered): borrowed JSON object or built during rendering.
#[derive(Clone, Debug)]
pub enum Dict<'a> {
    Json(&'a Map<String, Json>),
    Owned(Arc<Vec<(Cow<'a, str>, Value<'a>)>>),
}

/// Whether a string is marked safe (Django's `SafeString`). Word-sized on
/// purpose: with a `bool` here, moving a `Value` copied its 7 padding bytes
/// with overlapping partial moves that stalled the CPU on every filter call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Safe {
    No = 0,
    Yes = 1,
}

impl Safe {
    pub fn is_yes(self) -> bool {
        self == Safe::Yes
    }
}

impl From<bool> for Safe {
    fn from(b: bool) -> Self {
        if b {
            Safe::Yes
        } else {
            Safe::No
        }
    }
}

/// A Python-like value as Django templates see it.
#[derive(Clone, Debug)]
pub enum Value<'a> {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string; the flag marks it safe (no further autoescaping).
    Str(Cow<'a, str>, Safe),
    List(List<'a>),
    Dict(Dict<'a>),
    Date(NaiveDate),
    DateTime(NaiveDateTime),
}

impl<'a> List<'a> {
    pub fn len(&self) -> usize {
        match self {
            List::Json(v) => v.len(),
            List::Owned(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn get(&self, i: usize) -> Option<Value<'a>> {
        match self {
            List::Json(v) => v.get(i).map(Value::from_json),
            List::Owned(v) => v.get(i).cloned(),
        }
    }
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Value<'a>> + '_ {
        (0..self.len()).filter_map(move |i| self.get(i))
    }
    pub fn to_vec(&self) -> Vec<Value<'a>> {
        self.iter().collect()
    }
}

impl<'a> Dict<'a> {
    pub fn len(&self) -> usize {
        match self {
            Dict::Json(m) => m.len(),
            Dict::Owned(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        match self {
            // Small objects: a linear scan beats hashing the key.
            Dict::Json(m) if m.len() <= 8 => m
                .iter()
                .find(|(k, _)| k.as_str() == key)
                .map(|(_, v)| Value::from_json(v)),
            Dict::Json(m) => m.get(key).map(Value::from_json),
            Dict::Owned(v) => v.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
        }
    }
    pub fn contains_key(&self, key: &str) -> bool {
        match self {
            Dict::Json(m) => m.contains_key(key),
            Dict::Owned(v) => v.iter().any(|(k, _)| k == key),
        }
    }
    /// Entries in insertion order.
    pub fn entries(&self) -> Vec<(Cow<'a, str>, Value<'a>)> {
        match self {
            Dict::Json(m) => m
                .iter()
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), Value::from_json(v)))
                .collect(),
            Dict::Owned(v) => v.as_ref().clone(),
        }
    }
    pub fn keys(&self) -> Vec<Cow<'a, str>> {
        match self {
            Dict::Json(m) => m.keys().map(|k| Cow::Borrowed(k.as_str())).collect(),
            Dict::Owned(v) => v.iter().map(|(k, _)| k.clone()).collect(),
        }
    }
}

impl<'a> Value<'a> {
    /// Borrow a JSON value without copying strings, arrays or objects.
    pub fn from_json(j: &'a Json) -> Value<'a> {
        match j {
            Json::Null => Value::None,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(i)
                } else if let Some(f) = n.as_f64() {
                    if n.is_u64() || n.is_i64() {
                        // Beyond i64: keep the magnitude, precision is best-effort.
                        Value::Float(f)
                    } else {
                        Value::Float(f)
                    }
                } else {
                    Value::None
                }
            }
            Json::String(s) => Value::Str(Cow::Borrowed(s.as_str()), Safe::No),
            Json::Array(a) => Value::List(List::Json(a.as_slice())),
            Json::Object(m) => Value::Dict(Dict::Json(m)),
        }
    }

    pub fn str_owned(s: String) -> Value<'a> {
        Value::Str(Cow::Owned(s), Safe::No)
    }
    pub fn safe_owned(s: String) -> Value<'a> {
        Value::Str(Cow::Owned(s), Safe::Yes)
    }
    pub fn empty_str() -> Value<'a> {
        Value::Str(Cow::Borrowed(""), Safe::No)
    }
    pub fn list(v: Vec<Value<'a>>) -> Value<'a> {
        Value::List(List::Owned(Arc::new(v)))
    }

    pub fn is_safe(&self) -> bool {
        matches!(self, Value::Str(_, Safe::Yes))
    }

    /// Python truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s, _) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Dict(d) => !d.is_empty(),
            Value::Date(_) | Value::DateTime(_) => true,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s, _) => Some(s),
            _ => None,
        }
    }

    /// Python `str(value)`.
    pub fn to_py_str(&self) -> Cow<'_, str> {
        match self {
            Value::Str(s, _) => Cow::Borrowed(s),
            _ => {
                let mut out = String::new();
                self.write_str(&mut out);
                Cow::Owned(out)
            }
        }
    }

    /// Append Python `str(value)`.
    pub fn write_str(&self, out: &mut String) {
        match self {
            Value::None => out.push_str("None"),
            Value::Bool(true) => out.push_str("True"),
            Value::Bool(false) => out.push_str("False"),
            Value::Int(i) => out.push_str(itoa::Buffer::new().format(*i)),
            Value::Float(f) => write_float_repr(*f, out),
            Value::Str(s, _) => out.push_str(s),
            Value::Date(d) => {
                let _ = write!(out, "{}", d.format("%Y-%m-%d"));
            }
            Value::DateTime(dt) => {
                let _ = write!(out, "{}", dt.format("%Y-%m-%d %H:%M:%S"));
                let us = dt.nanosecond() / 1000;
                if us != 0 {
                    let _ = write!(out, ".{us:06}");
                }
            }
            Value::List(_) | Value::Dict(_) => self.write_repr(out),
        }
    }

    /// Append Python `repr(value)`.
    pub fn write_repr(&self, out: &mut String) {
        match self {
            Value::Str(s, _) => write_str_repr(s, out),
            Value::List(l) => {
                out.push('[');
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write_repr(out);
                }
                out.push(']');
            }
            Value::Dict(d) => {
                out.push('{');
                for (i, (k, v)) in d.entries().iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_str_repr(k, out);
                    out.push_str(": ");
                    v.write_repr(out);
                }
                out.push('}');
            }
            Value::Date(d) => {
                let _ = write!(
                    out,
                    "datetime.date({}, {}, {})",
                    d.year(),
                    d.month(),
                    d.day()
                );
            }
            Value::DateTime(dt) => {
                let _ = write!(
                    out,
                    "datetime.datetime({}, {}, {}, {}, {}",
                    dt.year(),
                    dt.month(),
                    dt.day(),
                    dt.hour(),
                    dt.minute()
                );
                let us = dt.nanosecond() / 1000;
                if dt.second() != 0 || us != 0 {
                    let _ = write!(out, ", {}", dt.second());
                }
                if us != 0 {
                    let _ = write!(out, ", {us}");
                }
                out.push(')');
            }
            _ => self.write_str(out),
        }
    }

    /// Python `len()`, or None when the value has no length.
    pub fn py_len(&self) -> Option<usize> {
        match self {
            Value::Str(s, _) => Some(s.chars().count()),
            Value::List(l) => Some(l.len()),
            Value::Dict(d) => Some(d.len()),
            _ => None,
        }
    }

    /// Python iteration: lists yield items, dicts keys, strings characters.
    pub fn py_iter(&self) -> Option<Vec<Value<'a>>> {
        match self {
            Value::List(l) => Some(l.to_vec()),
            Value::Dict(d) => Some(
                d.keys()
                    .into_iter()
                    .map(|k| Value::Str(k, Safe::No))
                    .collect(),
            ),
            Value::Str(s, _) => Some(s.chars().map(|c| Value::str_owned(c.to_string())).collect()),
            _ => None,
        }
    }

    /// Numeric view (bool counts as int, like Python).
    pub fn as_number(&self) -> Option<Num> {
        match self {
            Value::Bool(b) => Some(Num::Int(*b as i64)),
            Value::Int(i) => Some(Num::Int(*i)),
            Value::Float(f) => Some(Num::Float(*f)),
            _ => None,
        }
    }

    /// Python `==`.
    pub fn py_eq(&self, other: &Value<'_>) -> bool {
        if let (Some(a), Some(b)) = (self.as_number(), other.as_number()) {
            return a.cmp_num(b) == Some(Ordering::Equal);
        }
        match (self, other) {
            (Value::None, Value::None) => true,
            (Value::Str(a, _), Value::Str(b, _)) => a == b,
            (Value::List(a), Value::List(b)) => {
                a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x.py_eq(&y))
            }
            (Value::Dict(a), Value::Dict(b)) => {
                a.len() == b.len()
                    && a.entries()
                        .iter()
                        .all(|(k, v)| b.get(k).is_some_and(|w| v.py_eq(&w)))
            }
            (Value::Date(a), Value::Date(b)) => a == b,
            (Value::DateTime(a), Value::DateTime(b)) => a == b,
            _ => false,
        }
    }

    /// Python ordering; None when Python would raise `TypeError`.
    pub fn py_cmp(&self, other: &Value<'_>) -> Option<Ordering> {
        if let (Some(a), Some(b)) = (self.as_number(), other.as_number()) {
            return a.cmp_num(b);
        }
        match (self, other) {
            (Value::Str(a, _), Value::Str(b, _)) => Some(a.as_ref().cmp(b.as_ref())),
            (Value::List(a), Value::List(b)) => {
                for (x, y) in a.iter().zip(b.iter()) {
                    if !x.py_eq(&y) {
                        return x.py_cmp(&y);
                    }
                }
                Some(a.len().cmp(&b.len()))
            }
            (Value::Date(a), Value::Date(b)) => Some(a.cmp(b)),
            (Value::DateTime(a), Value::DateTime(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// Python `needle in self`; None when Python raises `TypeError`.
    pub fn py_contains(&self, needle: &Value<'_>) -> Option<bool> {
        match self {
            Value::List(l) => Some(l.iter().any(|v| v.py_eq(needle))),
            Value::Dict(d) => match needle {
                Value::Str(s, _) => Some(d.contains_key(s)),
                Value::List(_) | Value::Dict(_) => None,
                _ => Some(false),
            },
            Value::Str(s, _) => match needle {
                Value::Str(n, _) => Some(s.contains(n.as_ref())),
                _ => None,
            },
            _ => None,
        }
    }

    /// Detach from borrowed data (used for values stored across renders).
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::None => Value::None,
            Value::Bool(b) => Value::Bool(b),
            Value::Int(i) => Value::Int(i),
            Value::Float(f) => Value::Float(f),
            Value::Str(s, safe) => Value::Str(Cow::Owned(s.into_owned()), safe),
            Value::List(l) => Value::list(l.iter().map(Value::into_owned).collect()),
            Value::Dict(d) => Value::Dict(Dict::Owned(Arc::new(
                d.entries()
                    .into_iter()
                    .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
                    .collect(),
            ))),
            Value::Date(d) => Value::Date(d),
            Value::DateTime(d) => Value::DateTime(d),
        }
    }

    /// Convert to JSON (dates become ISO strings); used by the `json` filter.
    pub fn to_json(&self) -> Json {
        match self {
            Value::None => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(Json::Number)
                .unwrap_or(Json::Null),
            Value::Str(s, _) => Json::String(s.to_string()),
            Value::List(List::Json(a)) => Json::Array(a.to_vec()),
            Value::List(l) => Json::Array(l.iter().map(|v| v.to_json()).collect()),
            Value::Dict(Dict::Json(m)) => Json::Object((*m).clone()),
            Value::Dict(d) => Json::Object(
                d.entries()
                    .into_iter()
                    .map(|(k, v)| (k.into_owned(), v.to_json()))
                    .collect(),
            ),
            Value::Date(d) => Json::String(d.format("%Y-%m-%d").to_string()),
            Value::DateTime(d) => Json::String(d.format("%Y-%m-%dT%H:%M:%S").to_string()),
        }
    }
}

/// Object lookup tuned for the small objects event payloads are made of.
#[inline]
pub fn small_get<'m>(m: &'m Map<String, Json>, key: &str) -> Option<&'m Json> {
    if m.len() <= 8 {
        m.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
    } else {
        m.get(key)
    }
}

/// A Python number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
    pub fn cmp_num(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }
    pub fn to_value<'a>(self) -> Value<'a> {
        match self {
            Num::Int(i) => Value::Int(i),
            Num::Float(f) => Value::Float(f),
        }
    }
}

/// Python `repr(str)`: single quotes unless the text has `'` but no `"`.
pub fn write_str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if !is_printable(c) => {
                let n = c as u32;
                if n <= 0xff {
                    let _ = write!(out, "\\x{n:02x}");
                } else if n <= 0xffff {
                    let _ = write!(out, "\\u{n:04x}");
                } else {
                    let _ = write!(out, "\\U{n:08x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Approximation of Python's `str.isprintable` for the characters JSON
/// data realistically carries (controls and separators are not printable).
fn is_printable(c: char) -> bool {
    let n = c as u32;
    !((0x80..=0xa0).contains(&n)
        || n == 0xad
        || (0x2028..=0x2029).contains(&n)
        || (0x200b..=0x200f).contains(&n)
        || (0x202a..=0x202e).contains(&n)
        || (0x2060..=0x2064).contains(&n)
        || n == 0xfeff
        || (0xd800..=0xdfff).contains(&n)
        || (0xe000..=0xf8ff).contains(&n)
        || n == 0x1680
        || (0x2000..=0x200a).contains(&n)
        || n == 0x202f
        || n == 0x205f
        || n == 0x3000)
}

/// Python `repr(float)`: shortest round-trip digits, scientific notation
/// when the exponent is < -4 or >= 16.
pub fn write_float_repr(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("nan");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "inf" } else { "-inf" });
        return;
    }
    let a = f.abs();
    if a == 0.0 || (1e-4..1e16).contains(&a) {
        // In this range ryu's shortest form is positional with ".0" for
        // integral values, exactly Python's repr.
        out.push_str(ryu::Buffer::new().format_finite(f));
    } else {
        // Rust's `{:e}` gives "1.5e-7"; Python wants "1.5e-07".
        let s = format!("{f:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        out.push_str(mant);
        out.push('e');
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        out.push(sign);
        if digits.len() < 2 {
            out.push('0');
        }
        out.push_str(digits);
    }
}

/// Django's `localize(float)`: repr, but scientific notation is expanded
/// into positional digits (numberformat's Decimal path) unless huge.
pub fn write_float_localized(f: f64, out: &mut String) {
    if !f.is_finite() {
        write_float_repr(f, out);
        return;
    }
    let a = f.abs();
    if a == 0.0 || (1e-4..1e16).contains(&a) {
        write_float_repr(f, out);
        return;
    }
    // Decimal(repr) formatted with '{:f}' unless |exponent| + digits > 200.
    let s = format!("{a:e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let ndigits = mant.chars().filter(|c| c.is_ascii_digit()).count() as i64;
    let last_digit_exp = exp - (ndigits - 1);
    if last_digit_exp.abs() + ndigits > 200 {
        write_float_repr(f, out);
    } else {
        let _ = write!(out, "{f}");
    }
}

/// Python `float(str)`: surrounding whitespace, underscores between digits,
/// `inf`/`nan` words.
pub fn parse_py_float(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    let lower = t.to_ascii_lowercase();
    let (sign, body) = match lower.as_bytes().first() {
        Some(b'-') => (-1.0, &lower[1..]),
        Some(b'+') => (1.0, &lower[1..]),
        _ => (1.0, &lower[..]),
    };
    match body {
        "inf" | "infinity" => return Some(sign * f64::INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    let cleaned = strip_digit_underscores(body)?;
    if !cleaned
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'-' | b'+'))
        || !cleaned.bytes().any(|b| b.is_ascii_digit())
    {
        return None;
    }
    cleaned.parse::<f64>().ok().map(|v| sign * v)
}

/// Python `int(str)`.
pub fn parse_py_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return None;
    }
    let cleaned = strip_digit_underscores(body)?;
    let v: i64 = cleaned.parse().ok()?;
    Some(if neg { -v } else { v })
}

fn strip_digit_underscores(s: &str) -> Option<String> {
    if !s.contains('_') {
        return Some(s.to_string());
    }
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'_' {
            let ok =
                i > 0 && i + 1 < b.len() && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit();
            if !ok {
                return None;
            }
        }
    }
    Some(s.replace('_', ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(f: f64) -> String {
        let mut s = String::new();
        write_float_repr(f, &mut s);
        s
    }

    #[test]
    fn float_repr_matches_python() {
        assert_eq!(repr(1.0), "1.0");
        assert_eq!(repr(1e16), "1e+16");
        assert_eq!(repr(1.5e-7), "1.5e-07");
        assert_eq!(repr(0.30000000000000004), "0.30000000000000004");
        assert_eq!(repr(-3.75), "-3.75");
        assert_eq!(repr(1e300), "1e+300");
    }

    #[test]
    fn str_repr_quotes() {
        let mut s = String::new();
        write_str_repr("it's", &mut s);
        assert_eq!(s, "\"it's\"");
    }
}
