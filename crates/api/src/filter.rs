//! Parser for Klaviyo's `filter=` query language.
//!
//! Grammar (whitespace allowed between tokens):
//! ```text
//! filter    := expr ("," expr)*            -- top-level commas mean AND
//! expr      := "and(" expr ("," expr)* ")"
//!            | "has(" field ")"
//!            | op "(" field "," value ")"
//! op        := equals | any | greater-than | less-than | greater-or-equal
//!            | less-or-equal | contains | contains-any | contains-all
//!            | starts-with | ends-with
//! value     := string | number | true | false | null | datetime | "[" value,* "]"
//! string    := "..." | '...'              -- JSON / Python-repr escapes
//! datetime  := unquoted ISO-8601, e.g. 2023-03-01T01:00:00Z, 2023-03-01
//! ```
//! Single quotes, `True`/`False`/`None` and naive datetimes are accepted because
//! the official Python SDK's `FilterBuilder` emits Python list reprs
//! (`any(email,['a@b.com'])`) and `datetime.isoformat()` output. `or(...)` and
//! `not(...)` are rejected: the result is a flat AND of conditions.

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

use crate::error::ApiError;

/// How deep `and(...)` may nest; bounds recursion on hostile input.
const MAX_DEPTH: usize = 16;
/// Most conditions accepted in one filter.
const MAX_CONDITIONS: usize = 100;
/// Longest filter string accepted, in bytes.
const MAX_FILTER_LEN: usize = 64 * 1024;

/// A filter operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Equals,
    Any,
    GreaterThan,
    LessThan,
    GreaterOrEqual,
    LessOrEqual,
    Contains,
    ContainsAny,
    ContainsAll,
    StartsWith,
    EndsWith,
    Has,
}

impl Op {
    /// All operators, for iteration in tests and docs.
    pub const ALL: [Op; 12] = [
        Op::Equals,
        Op::Any,
        Op::GreaterThan,
        Op::LessThan,
        Op::GreaterOrEqual,
        Op::LessOrEqual,
        Op::Contains,
        Op::ContainsAny,
        Op::ContainsAll,
        Op::StartsWith,
        Op::EndsWith,
        Op::Has,
    ];

    /// The operator's name in the filter syntax, e.g. `greater-than`.
    pub fn name(self) -> &'static str {
        match self {
            Op::Equals => "equals",
            Op::Any => "any",
            Op::GreaterThan => "greater-than",
            Op::LessThan => "less-than",
            Op::GreaterOrEqual => "greater-or-equal",
            Op::LessOrEqual => "less-or-equal",
            Op::Contains => "contains",
            Op::ContainsAny => "contains-any",
            Op::ContainsAll => "contains-all",
            Op::StartsWith => "starts-with",
            Op::EndsWith => "ends-with",
            Op::Has => "has",
        }
    }

    /// Looks an operator up by its syntax name.
    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Operators whose value must be a list.
    fn needs_list(self) -> bool {
        matches!(self, Op::Any | Op::ContainsAny | Op::ContainsAll)
    }

    /// Operators whose value must be a scalar.
    fn needs_scalar(self) -> bool {
        matches!(
            self,
            Op::GreaterThan
                | Op::LessThan
                | Op::GreaterOrEqual
                | Op::LessOrEqual
                | Op::StartsWith
                | Op::EndsWith
        )
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A literal in a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    /// Unquoted ISO-8601; naive values are taken as UTC.
    DateTime(DateTime<Utc>),
    List(Vec<Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(x) => Some(*x),
            _ => None,
        }
    }

    /// A datetime, also from a quoted ISO-8601 string (some clients quote them).
    pub fn as_datetime(&self) -> Option<DateTime<Utc>> {
        match self {
            Value::DateTime(d) => Some(*d),
            Value::String(s) => parse_datetime(s),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The value as a list of strings: a list of strings, or one string.
    /// Handy for `equals(email,"x")` and `any(email,["x","y"])` alike.
    pub fn strings(&self) -> Option<Vec<&str>> {
        match self {
            Value::String(s) => Some(vec![s.as_str()]),
            Value::List(l) => l.iter().map(Value::as_str).collect(),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    /// Renders back to filter syntax (strings JSON-escaped).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::String(s) => f.write_str(&serde_json::to_string(s).map_err(|_| fmt::Error)?),
            Value::DateTime(d) => f.write_str(&d.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// One `op(field, value)` term. For `has(field)` the value is [`Value::Null`].
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub op: Op,
    pub field: String,
    pub value: Value,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            Op::Has => write!(f, "has({})", self.field),
            op => write!(f, "{op}({},{})", self.field, self.value),
        }
    }
}

/// Why a filter was rejected. Converts into a 400 with `source.parameter = "filter"`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// Bad syntax; `position` is a 1-based character index into the filter.
    #[error("Invalid filter provided at position {position}: {message}")]
    Syntax { position: usize, message: String },
    /// `or(...)` / `not(...)`.
    #[error("The '{0}' operation is not supported in filters.")]
    Unsupported(String),
    #[error("'{field}' is not a valid field for filtering on this endpoint.")]
    FieldNotAllowed { field: String },
    #[error("'{op}' operation is not allowed for field '{field}'")]
    OperatorNotAllowed { op: Op, field: String },
}

impl From<FilterError> for ApiError {
    fn from(e: FilterError) -> Self {
        ApiError::invalid_parameter("filter", e.to_string())
    }
}

/// A parsed filter: the AND of its conditions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    pub conditions: Vec<Condition>,
}

/// Per-endpoint whitelist: `(field, allowed operators)`.
pub type Rules<'a> = &'a [(&'a str, &'a [Op])];

impl Filter {
    /// Parses a filter expression.
    pub fn parse(input: &str) -> Result<Filter, FilterError> {
        if input.len() > MAX_FILTER_LEN {
            return Err(FilterError::Syntax {
                position: 1,
                message: format!("filter is longer than {MAX_FILTER_LEN} bytes"),
            });
        }
        let mut p = Parser { s: input, pos: 0 };
        let mut out = Vec::new();
        p.skip_ws();
        if p.at_end() {
            return Err(p.error("filter is empty"));
        }
        loop {
            p.expr(&mut out, 0)?;
            p.skip_ws();
            if p.at_end() {
                break;
            }
            p.expect(',')?;
        }
        Ok(Filter { conditions: out })
    }

    /// Checks every condition against the endpoint's whitelist.
    pub fn allow(&self, rules: Rules<'_>) -> Result<(), FilterError> {
        for c in &self.conditions {
            let Some((_, ops)) = rules.iter().find(|(f, _)| *f == c.field) else {
                return Err(FilterError::FieldNotAllowed {
                    field: c.field.clone(),
                });
            };
            if !ops.contains(&c.op) {
                return Err(FilterError::OperatorNotAllowed {
                    op: c.op,
                    field: c.field.clone(),
                });
            }
        }
        Ok(())
    }

    /// Parses the optional raw `filter` parameter and checks it against `rules`;
    /// absent or blank means no conditions. This is what handlers call.
    pub fn from_param(raw: Option<&str>, rules: Rules<'_>) -> Result<Filter, ApiError> {
        match raw {
            None => Ok(Filter::default()),
            Some(s) if s.trim().is_empty() => Ok(Filter::default()),
            Some(s) => {
                let f = Filter::parse(s)?;
                f.allow(rules)?;
                Ok(f)
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Conditions on `field`.
    pub fn on<'a>(&'a self, field: &'a str) -> impl Iterator<Item = &'a Condition> + 'a {
        self.conditions.iter().filter(move |c| c.field == field)
    }

    /// The value of the first `op` condition on `field`.
    pub fn get(&self, field: &str, op: Op) -> Option<&Value> {
        self.conditions
            .iter()
            .find(|c| c.field == field && c.op == op)
            .map(|c| &c.value)
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.conditions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Parses an ISO-8601 datetime or date; naive values are UTC.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f%:z"] {
        if let Ok(d) = DateTime::parse_from_str(s, fmt) {
            return Some(d.with_timezone(&Utc));
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(d.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
}

struct Parser<'a> {
    s: &'a str,
    /// Byte offset; always on a char boundary.
    pos: usize,
}

impl<'a> Parser<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn error_at(&self, byte: usize, message: impl Into<String>) -> FilterError {
        FilterError::Syntax {
            position: self.s[..byte].chars().count() + 1,
            message: message.into(),
        }
    }

    fn error(&self, message: impl Into<String>) -> FilterError {
        self.error_at(self.pos, message)
    }

    fn expect(&mut self, want: char) -> Result<(), FilterError> {
        self.skip_ws();
        match self.peek() {
            Some(c) if c == want => {
                self.bump();
                Ok(())
            }
            Some(c) => Err(self.error(format!("expected '{want}', found '{c}'"))),
            None => Err(self.error(format!("expected '{want}', found end of filter"))),
        }
    }

    /// Reads `[A-Za-z0-9_.$-]+` (operator names and field names).
    fn word(&mut self) -> &'a str {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$' | '-'))
        {
            self.bump();
        }
        &self.s[start..self.pos]
    }

    fn expr(&mut self, out: &mut Vec<Condition>, depth: usize) -> Result<(), FilterError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("filters nest deeper than {MAX_DEPTH} levels")));
        }
        self.skip_ws();
        let start = self.pos;
        let name = self.word();
        if name.is_empty() {
            return Err(match self.peek() {
                Some(c) => self.error(format!("expected an operator, found '{c}'")),
                None => self.error("expected an operator, found end of filter"),
            });
        }
        self.expect('(')?;
        if name == "and" {
            loop {
                self.expr(out, depth + 1)?;
                self.skip_ws();
                match self.bump() {
                    Some(',') => continue,
                    Some(')') => return Ok(()),
                    _ => return Err(self.error("expected ',' or ')' in and(...)")),
                }
            }
        }
        if name == "or" || name == "not" {
            return Err(FilterError::Unsupported(name.to_owned()));
        }
        let op = Op::from_name(name)
            .ok_or_else(|| self.error_at(start, format!("unknown operator '{name}'")))?;
        self.skip_ws();
        let field_start = self.pos;
        let field = self.word();
        if field.is_empty() {
            return Err(self.error_at(field_start, "expected a field name"));
        }
        let value = if op == Op::Has {
            Value::Null
        } else {
            self.expect(',')?;
            self.skip_ws();
            let value_start = self.pos;
            let v = self.value(false)?;
            let is_list = matches!(v, Value::List(_));
            if op.needs_list() && !is_list {
                return Err(self.error_at(value_start, format!("'{op}' requires a list value")));
            }
            if op.needs_scalar() && is_list {
                return Err(self.error_at(value_start, format!("'{op}' does not accept a list")));
            }
            v
        };
        self.expect(')')?;
        if out.len() >= MAX_CONDITIONS {
            return Err(self.error_at(start, format!("more than {MAX_CONDITIONS} conditions")));
        }
        out.push(Condition {
            op,
            field: field.to_owned(),
            value,
        });
        Ok(())
    }

    fn value(&mut self, in_list: bool) -> Result<Value, FilterError> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.error("expected a value, found end of filter")),
            Some(q @ ('"' | '\'')) => self.string(q).map(Value::String),
            Some('[') if in_list => Err(self.error("lists cannot be nested")),
            Some('[') => {
                self.bump();
                let mut items = Vec::new();
                self.skip_ws();
                if self.peek() == Some(']') {
                    self.bump();
                    return Ok(Value::List(items));
                }
                loop {
                    items.push(self.value(true)?);
                    self.skip_ws();
                    match self.bump() {
                        Some(',') => continue,
                        Some(']') => return Ok(Value::List(items)),
                        _ => return Err(self.error("expected ',' or ']' in list")),
                    }
                }
            }
            Some(_) => self.bare(),
        }
    }

    /// An unquoted literal: boolean, null, number or datetime.
    fn bare(&mut self) -> Result<Value, FilterError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| {
            !c.is_whitespace() && !matches!(c, ',' | '(' | ')' | '[' | ']' | '"' | '\'')
        }) {
            self.bump();
        }
        let token = &self.s[start..self.pos];
        if token.is_empty() {
            return Err(self.error("expected a value"));
        }
        match token {
            "true" | "True" => return Ok(Value::Bool(true)),
            "false" | "False" => return Ok(Value::Bool(false)),
            "null" | "None" => return Ok(Value::Null),
            _ => {}
        }
        if looks_like_date(token) {
            // An unencoded '+' in a query string arrives as a space:
            // `2023-01-01T00:00:00 00:00` means `…+00:00`.
            if let Some(rest) = self.s[self.pos..].strip_prefix(' ') {
                let offset: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == ':')
                    .collect();
                if offset.len() >= 4 {
                    if let Some(d) = parse_datetime(&format!("{token}+{offset}")) {
                        self.pos += 1 + offset.len();
                        return Ok(Value::DateTime(d));
                    }
                }
            }
            if let Some(d) = parse_datetime(token) {
                return Ok(Value::DateTime(d));
            }
            return Err(self.error_at(
                start,
                format!("invalid datetime '{}'", crate::error::truncate(token, 64)),
            ));
        }
        if let Ok(i) = token.parse::<i64>() {
            return Ok(Value::Int(i));
        }
        if token
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E'))
        {
            if let Ok(x) = token.parse::<f64>() {
                if x.is_finite() {
                    return Ok(Value::Float(x));
                }
            }
        }
        Err(self.error_at(
            start,
            format!(
                "unexpected value '{}'; strings must be quoted",
                crate::error::truncate(token, 64)
            ),
        ))
    }

    fn hex(&mut self, digits: usize) -> Result<u32, FilterError> {
        let start = self.pos;
        let mut n: u32 = 0;
        for _ in 0..digits {
            let d = self
                .bump()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| self.error_at(start, "invalid hex escape"))?;
            n = n.wrapping_mul(16).wrapping_add(d);
        }
        Ok(n)
    }

    /// A quoted string, JSON and Python-repr escapes both accepted.
    fn string(&mut self, quote: char) -> Result<String, FilterError> {
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            let esc_at = self.pos;
            match self.bump() {
                None => return Err(self.error_at(start, "unterminated string")),
                Some(c) if c == quote => return Ok(out),
                Some('\\') => {
                    let c = match self.bump() {
                        None => return Err(self.error_at(start, "unterminated string")),
                        Some(c @ ('"' | '\'' | '\\' | '/')) => c,
                        Some('b') => '\u{8}',
                        Some('f') => '\u{c}',
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('t') => '\t',
                        Some('0') => '\0',
                        Some('x') => self.code_point(2, esc_at)?,
                        Some('U') => self.code_point(8, esc_at)?,
                        Some('u') => {
                            let hi = self.hex(4)?;
                            if (0xD800..0xDC00).contains(&hi) {
                                if !self.s[self.pos..].starts_with("\\u") {
                                    return Err(self.error_at(esc_at, "unpaired surrogate"));
                                }
                                self.pos += 2;
                                let lo = self.hex(4)?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.error_at(esc_at, "unpaired surrogate"));
                                }
                                let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                char::from_u32(cp)
                                    .ok_or_else(|| self.error_at(esc_at, "invalid escape"))?
                            } else {
                                char::from_u32(hi)
                                    .ok_or_else(|| self.error_at(esc_at, "unpaired surrogate"))?
                            }
                        }
                        Some(other) => {
                            return Err(self.error_at(esc_at, format!("invalid escape '\\{other}'")))
                        }
                    };
                    out.push(c);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn code_point(&mut self, digits: usize, esc_at: usize) -> Result<char, FilterError> {
        let n = self.hex(digits)?;
        char::from_u32(n).ok_or_else(|| self.error_at(esc_at, "invalid escape"))
    }
}

/// `YYYY-` prefix: treat as a datetime rather than a number.
fn looks_like_date(token: &str) -> bool {
    let b = token.as_bytes();
    b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn one(s: &str) -> Condition {
        let f = Filter::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(f.conditions.len(), 1, "{s}");
        f.conditions.into_iter().next().expect("one")
    }

    fn dt(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid")
    }

    fn syntax_pos(s: &str) -> usize {
        match Filter::parse(s) {
            Err(FilterError::Syntax { position, .. }) => position,
            other => panic!("{s}: expected syntax error, got {other:?}"),
        }
    }

    #[test]
    fn equals_strings() {
        let c = one(r#"equals(email,"a@b.com")"#);
        assert_eq!(c.op, Op::Equals);
        assert_eq!(c.field, "email");
        assert_eq!(c.value, Value::String("a@b.com".into()));
        assert_eq!(
            one(r#"equals(phone_number,"+15005550006")"#).value.as_str(),
            Some("+15005550006")
        );
        assert_eq!(
            one(r#"equals(external_id,"42")"#).value.as_str(),
            Some("42")
        );
        assert_eq!(
            one("equals(metric_id,'example')").value.as_str(),
            Some("example")
        );
        assert_eq!(
            one(r#"equals(integration.name,"Shopify")"#).field,
            "integration.name"
        );
        assert_eq!(one(r#"equals(_kx,"x")"#).field, "_kx");
    }

    #[test]
    fn escapes() {
        assert_eq!(
            one(r#"equals(a,"q\"b\\s\/\n\t\u00e9\ud83d\ude00")"#)
                .value
                .as_str(),
            Some("q\"b\\s/\n\té😀")
        );
        assert_eq!(
            one(r#"equals(a,'it\'s \x41')"#).value.as_str(),
            Some("it's A")
        );
        assert_eq!(one(r#"equals(a,"it's")"#).value.as_str(), Some("it's"));
        assert_eq!(one(r#"equals(a,"a,b)c")"#).value.as_str(), Some("a,b)c"));
        assert_eq!(
            one("equals(a,\"héllo wörld\")").value.as_str(),
            Some("héllo wörld")
        );
        assert!(Filter::parse(r#"equals(a,"\q")"#).is_err());
        assert!(Filter::parse(r#"equals(a,"\ud83d")"#).is_err());
        assert!(Filter::parse(r#"equals(a,"\u12")"#).is_err());
    }

    #[test]
    fn any_lists_json_and_python_style() {
        let c = one(r#"any(email,["a@b.com","c@d.com"])"#);
        assert_eq!(c.op, Op::Any);
        assert_eq!(c.value.strings(), Some(vec!["a@b.com", "c@d.com"]));
        let c = one("any(email,['a@b.com','c@d.com'])");
        assert_eq!(c.value.strings(), Some(vec!["a@b.com", "c@d.com"]));
        let c = one("any(id, [ 'x' , \"y\" ])");
        assert_eq!(c.value.strings(), Some(vec!["x", "y"]));
        assert_eq!(one("any(n,[])").value, Value::List(vec![]));
        assert_eq!(
            one("any(b,[True,False])").value,
            Value::List(vec![Value::Bool(true), Value::Bool(false)])
        );
        assert_eq!(
            one("any(d,[2023-01-01T00:00:00+00:00,2023-01-02])").value,
            Value::List(vec![
                Value::DateTime(dt(2023, 1, 1, 0, 0, 0)),
                Value::DateTime(dt(2023, 1, 2, 0, 0, 0))
            ])
        );
    }

    #[test]
    fn datetimes() {
        let want = dt(2023, 3, 1, 1, 0, 0);
        for s in [
            "greater-than(updated,2023-03-01T01:00:00Z)",
            "greater-than(updated,2023-03-01T01:00:00+00:00)",
            "greater-than(updated,2023-03-01T01:00:00)",
            "greater-than(updated,2023-03-01T03:00:00+02:00)",
            "greater-than(updated,2023-03-01T01:00:00.000000+00:00)",
            "greater-than(updated,2023-03-01T01:00:00 00:00)",
            "greater-than(updated,2023-03-01T01:00)",
            "greater-than(updated,\"2023-03-01T01:00:00Z\")",
        ] {
            assert_eq!(one(s).value.as_datetime(), Some(want), "{s}");
        }
        assert_eq!(
            one("less-than(created,2023-03-01)").value,
            Value::DateTime(dt(2023, 3, 1, 0, 0, 0))
        );
        assert!(Filter::parse("less-than(created,2023-13-01)").is_err());
        assert!(Filter::parse("less-than(created,2023-03-01Tnope)").is_err());
    }

    #[test]
    fn scalars() {
        assert_eq!(one("equals(n,42)").value, Value::Int(42));
        assert_eq!(one("equals(n,-7)").value, Value::Int(-7));
        assert_eq!(
            one("greater-or-equal(timestamp,1700000000)").value.as_i64(),
            Some(1_700_000_000)
        );
        assert_eq!(one("less-or-equal(p,9.99)").value, Value::Float(9.99));
        assert_eq!(one("equals(p,1e3)").value, Value::Float(1000.0));
        assert_eq!(one("equals(published,true)").value, Value::Bool(true));
        assert_eq!(one("equals(published,False)").value, Value::Bool(false));
        assert_eq!(one("equals(x,null)").value, Value::Null);
        assert!(Filter::parse("equals(x,inf)").is_err());
        assert!(Filter::parse("equals(x,NaN)").is_err());
        assert!(Filter::parse("equals(email,a@b.com)").is_err());
    }

    #[test]
    fn all_operators() {
        for (s, op) in [
            ("contains(title,\"x\")", Op::Contains),
            ("contains-any(tags,[\"x\"])", Op::ContainsAny),
            ("contains-all(tags,[\"x\"])", Op::ContainsAll),
            ("starts-with(name,\"x\")", Op::StartsWith),
            ("ends-with(name,\"x\")", Op::EndsWith),
            ("less-than(n,1)", Op::LessThan),
            ("greater-or-equal(n,1)", Op::GreaterOrEqual),
            ("less-or-equal(n,1)", Op::LessOrEqual),
            ("has(profile)", Op::Has),
        ] {
            assert_eq!(one(s).op, op, "{s}");
        }
        assert_eq!(one("has( metric )").value, Value::Null);
        for op in Op::ALL {
            assert_eq!(Op::from_name(op.name()), Some(op));
        }
    }

    #[test]
    fn and_and_commas_flatten() {
        let f = Filter::parse(
            r#"equals(email,"a@b.com"), and(greater-than(updated,2023-01-01T00:00:00Z),and(less-than(updated,2024-01-01T00:00:00Z),has(x)))"#,
        )
        .expect("ok");
        let ops: Vec<Op> = f.conditions.iter().map(|c| c.op).collect();
        assert_eq!(ops, [Op::Equals, Op::GreaterThan, Op::LessThan, Op::Has]);
        assert_eq!(f.on("updated").count(), 2);
        assert_eq!(
            f.get("email", Op::Equals).and_then(Value::as_str),
            Some("a@b.com")
        );
        assert!(f.get("email", Op::Any).is_none());
    }

    #[test]
    fn rejects_or_and_not() {
        assert_eq!(
            Filter::parse("or(has(a),has(b))"),
            Err(FilterError::Unsupported("or".into()))
        );
        assert_eq!(
            Filter::parse("not(has(a))"),
            Err(FilterError::Unsupported("not".into()))
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        assert_eq!(syntax_pos(""), 1);
        assert_eq!(syntax_pos("   "), 4);
        assert_eq!(syntax_pos("equals(email"), 13);
        assert_eq!(syntax_pos("equals(email,\"x\""), 17);
        assert_eq!(syntax_pos("frobnicate(a,1)"), 1);
        assert_eq!(syntax_pos("equals(a,1)x"), 12);
        assert_eq!(syntax_pos("equals(a,\"unterminated)"), 10);
        assert_eq!(syntax_pos("équals(a,1)"), 1);
        assert_eq!(syntax_pos("equals(é,1)"), 8);
        assert_eq!(syntax_pos("any(email,\"x\")"), 11);
        assert_eq!(syntax_pos("greater-than(n,[1])"), 16);
        assert_eq!(syntax_pos("any(n,[[1]])"), 8);
        assert_eq!(syntax_pos("any(n,[1,)"), 10);
        assert_eq!(syntax_pos("equals(a,1),"), 13);
        assert_eq!(syntax_pos("and()"), 5);
        assert_eq!(syntax_pos("has(a,1)"), 6);
        let deep = format!("{}has(a){}", "and(".repeat(40), ")".repeat(40));
        assert!(matches!(
            Filter::parse(&deep),
            Err(FilterError::Syntax { .. })
        ));
        let many = vec!["has(a)"; MAX_CONDITIONS + 1].join(",");
        assert!(Filter::parse(&many).is_err());
    }

    #[test]
    fn allow_list() {
        let rules: Rules = &[
            ("email", &[Op::Equals, Op::Any]),
            ("updated", &[Op::GreaterThan, Op::LessThan]),
        ];
        let ok =
            Filter::parse(r#"equals(email,"a"),greater-than(updated,2023-01-01)"#).expect("ok");
        assert!(ok.allow(rules).is_ok());
        let e = Filter::parse(r#"greater-than(email,"a")"#)
            .expect("ok")
            .allow(rules)
            .expect_err("op");
        assert_eq!(
            e.to_string(),
            "'greater-than' operation is not allowed for field 'email'"
        );
        let e = Filter::parse(r#"equals(name,"a")"#)
            .expect("ok")
            .allow(rules)
            .expect_err("field");
        assert!(matches!(e, FilterError::FieldNotAllowed { .. }));
    }

    #[test]
    fn from_param_maps_to_api_error() {
        let rules: Rules = &[("email", &[Op::Equals])];
        assert!(Filter::from_param(None, rules).expect("ok").is_empty());
        assert!(Filter::from_param(Some(""), rules).expect("ok").is_empty());
        assert_eq!(
            Filter::from_param(Some(r#"equals(email,"a")"#), rules)
                .expect("ok")
                .conditions
                .len(),
            1
        );
        let e = Filter::from_param(Some("any(email,[\"a\"])"), rules).expect_err("op");
        let body = e.to_body();
        assert_eq!(body["errors"][0]["status"], 400);
        assert_eq!(body["errors"][0]["source"]["parameter"], "filter");
        let e = Filter::from_param(Some("equals(email"), rules).expect_err("syntax");
        assert!(e.detail().contains("position 13"), "{}", e.detail());
    }

    #[test]
    fn display_round_trips() {
        let s = r#"equals(email,"a\"b"),any(id,["x","y"]),greater-than(updated,2023-03-01T01:00:00Z),has(p),equals(n,1.5)"#;
        let f = Filter::parse(s).expect("ok");
        assert_eq!(f.to_string(), s);
        assert_eq!(Filter::parse(&f.to_string()).expect("reparse"), f);
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn scalar() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::Int),
                (-1.0e9f64..1.0e9).prop_map(Value::Float),
                any::<String>().prop_map(Value::String),
                (0i64..4_000_000_000).prop_map(|s| Value::DateTime(
                    DateTime::from_timestamp(s, 0).unwrap_or_default()
                )),
            ]
        }

        fn condition() -> impl Strategy<Value = Condition> {
            let field = "[a-z_][a-z0-9_.]{0,12}";
            prop_oneof![
                (field, scalar()).prop_map(|(f, v)| Condition {
                    op: Op::Equals,
                    field: f,
                    value: v
                }),
                (field, prop::collection::vec(scalar(), 0..4)).prop_map(|(f, v)| Condition {
                    op: Op::Any,
                    field: f,
                    value: Value::List(v)
                }),
                (field, scalar()).prop_map(|(f, v)| Condition {
                    op: Op::LessThan,
                    field: f,
                    value: v
                }),
                field.prop_map(|f| Condition {
                    op: Op::Has,
                    field: f,
                    value: Value::Null
                }),
            ]
        }

        proptest! {
            #[test]
            fn never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
                let s = String::from_utf8_lossy(&bytes);
                let _ = Filter::parse(&s);
            }

            #[test]
            fn never_panics_on_near_misses(s in r#"[a-z\-(),\[\]"'\\ 0-9:TZ+.éu]{0,60}"#) {
                let _ = Filter::parse(&s);
                let _ = Filter::parse(&format!("equals(a,{s})"));
                let _ = Filter::parse(&format!("any(a,[{s}"));
            }

            #[test]
            fn round_trips(conds in prop::collection::vec(condition(), 1..5)) {
                let f = Filter { conditions: conds };
                let text = f.to_string();
                let back = Filter::parse(&text);
                prop_assert_eq!(back, Ok(f), "{}", text);
            }
        }
    }
}
