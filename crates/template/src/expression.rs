//! Variables and filter expressions (`name.attr.0|filter:arg|...`), parsed
//! once at compile time with Django's grammar (`FilterExpression`,
//! `Variable`, `smart_split`).

use std::borrow::Cow;

use crate::filters::{self, Arity, Filter};
use crate::value::Safe;
use crate::value::{parse_py_int, Value};

/// One dotted lookup step, with its list index pre-parsed.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub key: Box<str>,
    pub index: Option<usize>,
}

/// A context variable path such as `order.items.0.sku`.
#[derive(Debug, Clone)]
pub struct VarPath {
    /// The source text, used by `string_if_invalid` containing `%s`.
    pub text: Box<str>,
    pub parts: Vec<Lookup>,
}

/// A literal or a variable.
#[derive(Debug, Clone)]
pub enum Operand {
    Literal(Value<'static>),
    Var(VarPath),
}

/// A filter application with its pre-parsed argument.
#[derive(Debug, Clone)]
pub struct FilterCall {
    pub filter: Filter,
    pub name: Box<str>,
    pub arg: Option<Operand>,
}

/// `operand|filter:arg|filter...`
#[derive(Debug, Clone)]
pub struct FilterExpr {
    pub base: Operand,
    pub filters: Vec<FilterCall>,
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Length of a quoted string literal at the start of `s` (`"..."` or `'...'`
/// with backslash escapes), or of `_("...")`.
fn constant_len(s: &str) -> Option<usize> {
    if let Some(rest) = s.strip_prefix("_(") {
        let n = quoted_len(rest)?;
        if rest[n..].starts_with(')') {
            return Some(n + 3);
        }
        return None;
    }
    quoted_len(s)
}

fn quoted_len(s: &str) -> Option<usize> {
    let mut chars = s.char_indices();
    let (_, q) = chars.next()?;
    if q != '"' && q != '\'' {
        return None;
    }
    let mut escaped = false;
    for (i, c) in chars {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == q {
            return Some(i + 1);
        }
    }
    None
}

/// Length of `[\w.]+` or Django's number pattern `[-+.]?\d[\d.e]*`.
fn var_len(s: &str) -> Option<usize> {
    let n: usize = s
        .chars()
        .take_while(|&c| is_word(c) || c == '.')
        .map(char::len_utf8)
        .sum();
    if n > 0 {
        return Some(n);
    }
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'-' | b'+' | b'.')) {
        i = 1;
    }
    if !b.get(i).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    i += 1;
    while b
        .get(i)
        .is_some_and(|c| c.is_ascii_digit() || *c == b'.' || *c == b'e')
    {
        i += 1;
    }
    Some(i)
}

/// Django's `unescape_string_literal`.
fn unescape_literal(s: &str) -> String {
    let q = &s[..1];
    let inner = &s[1..s.len() - 1];
    inner.replace(&format!("\\{q}"), q).replace("\\\\", "\\")
}

/// Python `float()` restricted to what Django's `Variable` accepts.
fn number_literal(var: &str) -> Option<Value<'static>> {
    let f = crate::value::parse_py_float(var)?;
    if var.ends_with('.') {
        return None;
    }
    if !var.contains('.') && !var.to_ascii_lowercase().contains('e') {
        if let Some(i) = parse_py_int(var) {
            return Some(Value::Int(i));
        }
        if f.is_finite() {
            // Too large for i64: keep as float magnitude.
            return Some(Value::Float(f.trunc()));
        }
    }
    Some(Value::Float(f))
}

/// Django's `Variable(var)`: a number, a quoted string, or a lookup path.
pub fn parse_variable(var: &str) -> Result<Operand, String> {
    if var.is_empty() {
        return Err("Empty variable".into());
    }
    if let Some(v) = number_literal(var) {
        return Ok(Operand::Literal(v));
    }
    if let Some(inner) = var.strip_prefix("_(").and_then(|r| r.strip_suffix(')')) {
        return Ok(Operand::Literal(string_literal(inner)?));
    }
    if let Ok(v) = string_literal(var) {
        return Ok(Operand::Literal(v));
    }
    if var.contains("._") || var.starts_with('_') {
        return Err(format!(
            "Variables and attributes may not begin with underscores: '{var}'"
        ));
    }
    let parts = var
        .split('.')
        .map(|k| Lookup {
            key: k.into(),
            index: parse_py_int(k).and_then(|i| usize::try_from(i).ok()),
        })
        .collect();
    Ok(Operand::Var(VarPath {
        text: var.into(),
        parts,
    }))
}

fn string_literal(s: &str) -> Result<Value<'static>, String> {
    let first = s.chars().next();
    if s.len() >= 2 && matches!(first, Some('"' | '\'')) && s.ends_with(first.unwrap_or('"')) {
        Ok(Value::Str(Cow::Owned(unescape_literal(s)), Safe::Yes))
    } else {
        Err(format!("Not a string literal: {s}"))
    }
}

/// Parse a full filter expression (Django's `FilterExpression`).
pub fn parse_filter_expr(token: &str) -> Result<FilterExpr, String> {
    let mut pos;
    let base = if let Some(n) = constant_len(token) {
        pos = n;
        let c = &token[..n];
        let lit = match c.strip_prefix("_(").and_then(|r| r.strip_suffix(')')) {
            Some(inner) => string_literal(inner)?,
            None => string_literal(c)?,
        };
        Operand::Literal(lit)
    } else if let Some(n) = var_len(token) {
        pos = n;
        parse_variable(&token[..n])?
    } else {
        if parse_filter_at(token, 0).is_some() {
            return Err(format!("Could not find variable at start of {token}."));
        }
        return Err(format!(
            "Could not parse the remainder: '{token}' from '{token}'"
        ));
    };
    let mut filters = Vec::new();
    while pos < token.len() {
        let Some((name, arg, end)) = parse_filter_at(token, pos) else {
            return Err(format!(
                "Could not parse the remainder: '{}' from '{}'",
                &token[pos..],
                token
            ));
        };
        let Some((filter, arity)) = filters::lookup(name) else {
            return Err(format!("Invalid filter: '{name}'"));
        };
        let arg = match arg {
            None => None,
            Some(a) => Some(if constant_len(a) == Some(a.len()) {
                let inner = a
                    .strip_prefix("_(")
                    .and_then(|r| r.strip_suffix(')'))
                    .unwrap_or(a);
                Operand::Literal(string_literal(inner)?)
            } else {
                parse_variable(a)?
            }),
        };
        match (arity, arg.is_some()) {
            (Arity::None, true) => {
                return Err(format!("{name} requires 1 arguments, 2 provided"));
            }
            (Arity::Required, false) => {
                return Err(format!("{name} requires 2 arguments, 1 provided"));
            }
            _ => {}
        }
        filters.push(FilterCall {
            filter,
            name: name.into(),
            arg,
        });
        pos = end;
    }
    Ok(FilterExpr { base, filters })
}

/// Match `\s*\|\s*(\w+)(?::(constant|var))?` at `pos`.
fn parse_filter_at(token: &str, pos: usize) -> Option<(&str, Option<&str>, usize)> {
    let rest = &token[pos..];
    let trimmed = rest.trim_start_matches(crate::lexer::is_py_space);
    let after_pipe = trimmed.strip_prefix('|')?;
    let after_ws = after_pipe.trim_start_matches(crate::lexer::is_py_space);
    let name_len: usize = after_ws
        .chars()
        .take_while(|&c| is_word(c))
        .map(char::len_utf8)
        .sum();
    if name_len == 0 {
        return None;
    }
    let name = &after_ws[..name_len];
    let mut end = token.len() - after_ws.len() + name_len;
    let mut arg = None;
    if let Some(a) = token[end..].strip_prefix(':') {
        let n = constant_len(a).or_else(|| var_len(a));
        if let Some(n) = n {
            arg = Some(&a[..n]);
            end += 1 + n;
        }
    }
    Some((name, arg, end))
}

/// Django's `smart_split`: whitespace-separated bits, keeping quoted
/// sections (and whatever is glued to them) together.
pub fn smart_split(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = s[i..].chars().next().unwrap_or(' ');
        if crate::lexer::is_py_space(c) {
            i += c.len_utf8();
            continue;
        }
        let start = i;
        // First alternative: [^\s'"]* ( quoted [^\s'"]* )+
        let mut j = i;
        let mut saw_quote = false;
        loop {
            while j < b.len() {
                let c = s[j..].chars().next().unwrap_or(' ');
                if crate::lexer::is_py_space(c) || c == '"' || c == '\'' {
                    break;
                }
                j += c.len_utf8();
            }
            if j < b.len() && (b[j] == b'"' || b[j] == b'\'') {
                if let Some(n) = quoted_len(&s[j..]) {
                    j += n;
                    saw_quote = true;
                    continue;
                }
            }
            break;
        }
        let end = if saw_quote {
            j
        } else {
            // `\S+`
            let mut k = i;
            while k < b.len() {
                let c = s[k..].chars().next().unwrap_or(' ');
                if crate::lexer::is_py_space(c) {
                    break;
                }
                k += c.len_utf8();
            }
            k
        };
        out.push(&s[start..end]);
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_split_keeps_quotes() {
        assert_eq!(
            smart_split(r#"a "b c" x:'d e'f g"#),
            vec!["a", "\"b c\"", "x:'d e'f", "g"]
        );
    }

    #[test]
    fn filter_expr_errors() {
        assert!(parse_filter_expr("x | lookup: 'y'").is_err());
        assert!(parse_filter_expr("x | lower").is_ok());
        assert!(parse_filter_expr("l.-1").is_err());
        assert!(parse_filter_expr("x._p").is_err());
    }
}
