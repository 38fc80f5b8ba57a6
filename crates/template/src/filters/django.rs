//! Django 5.2's built-in filters, reproduced from their documented and
//! observed behaviour (including how each one fails silently or loudly).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt::Write;
use std::sync::Arc;

use super::{Env, Filter};
use crate::date::{self, When};
use crate::error::RenderError;
use crate::text::{self, escape, escape_into};
use crate::value::Safe;
use crate::value::{parse_py_float, parse_py_int, Dict, List, Num, Value};

/// Why a Python conversion failed (callers map these to silent or loud).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PyErr {
    Value,
    Type,
}

/// Python `int(x)`.
pub fn py_int(v: &Value<'_>) -> Result<i64, PyErr> {
    match v {
        Value::Bool(b) => Ok(*b as i64),
        Value::Int(i) => Ok(*i),
        Value::Float(f) => {
            if f.is_finite() {
                Ok(f.trunc() as i64)
            } else {
                Err(PyErr::Value)
            }
        }
        Value::Str(s, _) => parse_py_int(s).ok_or(PyErr::Value),
        _ => Err(PyErr::Type),
    }
}

/// Python `float(x)`.
pub fn py_float(v: &Value<'_>) -> Result<f64, PyErr> {
    match v {
        Value::Bool(b) => Ok(*b as i64 as f64),
        Value::Int(i) => Ok(*i as f64),
        Value::Float(f) => Ok(*f),
        Value::Str(s, _) => parse_py_float(s).ok_or(PyErr::Value),
        _ => Err(PyErr::Type),
    }
}

/// `@stringfilter`: Python `str(value)` without copying borrowed strings.
pub fn into_str<'a>(v: Value<'a>) -> Cow<'a, str> {
    match v {
        Value::Str(s, _) => s,
        other => Cow::Owned(other.to_py_str().into_owned()),
    }
}

fn arg_str<'a>(arg: &Option<Value<'a>>) -> Cow<'a, str> {
    match arg {
        Some(v) => into_str(v.clone()),
        None => Cow::Borrowed(""),
    }
}

fn type_err(name: &str) -> RenderError {
    RenderError::TypeError(format!("unsupported operand for filter '{name}'"))
}

fn value_err(msg: &str) -> RenderError {
    RenderError::ValueError(msg.to_string())
}

fn loud(e: PyErr, what: &str) -> RenderError {
    match e {
        PyErr::Value => value_err(&format!("invalid literal for {what}")),
        PyErr::Type => RenderError::TypeError(format!("{what} argument has the wrong type")),
    }
}

/// Django's `conditional_escape`.
pub fn conditional_escape(v: &Value<'_>) -> String {
    match v {
        Value::Str(s, Safe::Yes) => s.to_string(),
        other => escape(&other.to_py_str()),
    }
}

/// Apply a Django filter; Klaviyo's are delegated to `klaviyo::apply`.
pub fn apply<'a>(
    f: Filter,
    v: Value<'a>,
    arg: Option<Value<'a>>,
    env: &Env<'_>,
) -> Result<Value<'a>, RenderError> {
    let out = match f {
        Filter::Addslashes => {
            let s = into_str(v);
            Value::str_owned(
                s.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\'', "\\'"),
            )
        }
        Filter::Capfirst => Value::str_owned(text::capfirst(&into_str(v))),
        Filter::Escapejs => {
            let s = into_str(v);
            match escapejs(&s) {
                Some(e) => Value::safe_owned(e),
                None => Value::Str(s, Safe::Yes),
            }
        }
        Filter::JsonScript => {
            let mut json = String::new();
            text::py_json(&v, &mut json);
            let json = json
                .replace('>', "\\u003E")
                .replace('<', "\\u003C")
                .replace('&', "\\u0026");
            let s = match arg {
                Some(id) if id.truthy() => format!(
                    "<script id=\"{}\" type=\"application/json\">{}</script>",
                    conditional_escape(&id),
                    json
                ),
                _ => format!("<script type=\"application/json\">{json}</script>"),
            };
            Value::safe_owned(s)
        }
        Filter::Floatformat => floatformat(&v, arg, env)?,
        Filter::Iriencode => {
            Value::str_owned(text::url_quote(&into_str(v), "/#%[]=:;$&()+,!?*@'~"))
        }
        Filter::Linenumbers => {
            let safe = v.is_safe();
            let s = into_str(v);
            let lines: Vec<&str> = s.split('\n').collect();
            let width = lines.len().to_string().len();
            let mut out = String::new();
            for (i, line) in lines.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                let _ = write!(out, "{:0width$}. ", i + 1);
                if env.autoescape && !safe {
                    escape_into(line, &mut out);
                } else {
                    out.push_str(line);
                }
            }
            Value::safe_owned(out)
        }
        Filter::Lower => Value::str_owned(into_str(v).to_lowercase()),
        Filter::MakeList => Value::list(
            into_str(v)
                .chars()
                .map(|c| Value::str_owned(c.to_string()))
                .collect(),
        ),
        Filter::Slugify => Value::str_owned(slugify(&into_str(v))),
        Filter::Stringformat => {
            let spec = arg_str(&arg);
            match stringformat(&v, &spec, env)? {
                Some(s) => Value::str_owned(s),
                None => Value::empty_str(),
            }
        }
        Filter::Title => Value::str_owned(django_title(&into_str(v))),
        Filter::Truncatechars => {
            let n = match arg.as_ref().map(py_int) {
                Some(Ok(n)) => n,
                _ => return Ok(Value::Str(into_str(v), Safe::No)),
            };
            let s = into_str(v);
            if n > 0 && s.len() <= n as usize {
                // Short strings are returned as-is without copying.
                Value::Str(s, Safe::No)
            } else if n > 0 && s.is_ascii() {
                // ASCII: cut the owned buffer in place.
                let mut owned = s.into_owned();
                owned.truncate(n as usize - 1);
                owned.push('…');
                Value::str_owned(owned)
            } else {
                Value::str_owned(truncate_chars(&s, n))
            }
        }
        Filter::Truncatewords => {
            let n = match arg.as_ref().map(py_int) {
                Some(Ok(n)) => n,
                _ => return Ok(Value::Str(into_str(v), Safe::No)),
            };
            if n <= 0 {
                Value::empty_str()
            } else {
                let s = into_str(v);
                let words = text::split_ws(&s);
                let n = n as usize;
                let mut out = words[..n.min(words.len())].join(" ");
                if words.len() > n && !out.ends_with(" …") {
                    out.push_str(" …");
                }
                Value::str_owned(out)
            }
        }
        Filter::Upper => Value::str_owned(into_str(v).to_uppercase()),
        Filter::Urlencode => {
            let safe = match &arg {
                Some(a) => into_str(a.clone()),
                None => Cow::Borrowed("/"),
            };
            Value::str_owned(text::url_quote(&into_str(v), &safe))
        }
        Filter::Wordcount => Value::Int(text::split_ws(&into_str(v)).len() as i64),
        Filter::Wordwrap => {
            let width = arg
                .as_ref()
                .map(py_int)
                .unwrap_or(Err(PyErr::Type))
                .map_err(|e| loud(e, "int()"))?;
            Value::str_owned(wordwrap(&into_str(v), width)?)
        }
        Filter::Ljust | Filter::Rjust | Filter::Center => {
            let width = arg
                .as_ref()
                .map(py_int)
                .unwrap_or(Err(PyErr::Type))
                .map_err(|e| loud(e, "int()"))?;
            let s = into_str(v);
            let width = usize::try_from(width).unwrap_or(0);
            env.check_size(width)?;
            let len = s.chars().count();
            let pad = width.saturating_sub(len);
            Value::str_owned(match f {
                Filter::Ljust => format!("{s}{}", " ".repeat(pad)),
                Filter::Rjust => format!("{}{s}", " ".repeat(pad)),
                _ => text::center(&s, width),
            })
        }
        Filter::Cut => {
            let safe = v.is_safe();
            let pat = match &arg {
                Some(Value::Str(p, _)) => p.clone(),
                _ => return Err(type_err("cut")),
            };
            let s = into_str(v);
            let out = if pat.is_empty() {
                s.into_owned()
            } else {
                s.replace(pat.as_ref(), "")
            };
            Value::Str(Cow::Owned(out), Safe::from(safe && pat != ";"))
        }
        Filter::Escape => match v {
            Value::Str(s, Safe::Yes) => Value::Str(s, Safe::Yes),
            other => Value::safe_owned(escape(&other.to_py_str())),
        },
        Filter::ForceEscape => Value::safe_owned(escape(&into_str(v))),
        Filter::Escapeseq | Filter::Safeseq => match v.py_iter() {
            Some(items) => Value::list(
                items
                    .iter()
                    .map(|x| {
                        if f == Filter::Safeseq {
                            Value::safe_owned(x.to_py_str().into_owned())
                        } else {
                            Value::safe_owned(conditional_escape(x))
                        }
                    })
                    .collect(),
            ),
            None => {
                return Err(type_err(if f == Filter::Safeseq {
                    "safeseq"
                } else {
                    "escapeseq"
                }))
            }
        },
        Filter::Linebreaks => {
            let autoescape = env.autoescape && !v.is_safe();
            let s = normalize_newlines(&into_str(v));
            let mut out = String::new();
            let paras = split_paragraphs(&s);
            for (i, p) in paras.iter().enumerate() {
                if i > 0 {
                    out.push_str("\n\n");
                }
                let p = if autoescape { escape(p) } else { p.to_string() };
                let _ = write!(out, "<p>{}</p>", p.replace('\n', "<br>"));
            }
            Value::safe_owned(out)
        }
        Filter::Linebreaksbr => {
            let autoescape = env.autoescape && !v.is_safe();
            let s = normalize_newlines(&into_str(v));
            let s = if autoescape { escape(&s) } else { s };
            Value::safe_owned(s.replace('\n', "<br>"))
        }
        Filter::Safe => Value::Str(into_str(v), Safe::Yes),
        Filter::Striptags => Value::str_owned(strip_tags(&into_str(v))),
        Filter::Dictsort | Filter::Dictsortreversed => {
            let key = arg_str(&arg);
            dictsort(&v, &key, f == Filter::Dictsortreversed).unwrap_or_else(Value::empty_str)
        }
        Filter::First | Filter::Last => match &v {
            Value::List(l) => {
                let item = if f == Filter::First {
                    l.get(0)
                } else {
                    l.len().checked_sub(1).and_then(|i| l.get(i))
                };
                item.unwrap_or_else(Value::empty_str)
            }
            Value::Str(s, safe) => {
                let c = if f == Filter::First {
                    s.chars().next()
                } else {
                    s.chars().next_back()
                };
                c.map_or_else(Value::empty_str, |c| {
                    Value::Str(Cow::Owned(c.to_string()), *safe)
                })
            }
            Value::Dict(_) => return Err(RenderError::TypeError("KeyError: 0".into())),
            _ => return Err(type_err("first/last")),
        },
        Filter::Join => join(v, arg, env)?,
        Filter::Length => Value::Int(v.py_len().unwrap_or(0) as i64),
        Filter::Slice => {
            let spec = match &arg {
                Some(a) => a.to_py_str().into_owned(),
                None => String::new(),
            };
            slice(v, &spec)
        }
        Filter::UnorderedList => {
            let Some(items) = v.py_iter() else {
                return Err(type_err("unordered_list"));
            };
            Value::safe_owned(unordered_list(&items, env.autoescape, 1))
        }
        Filter::Add => add(v, arg, env)?,
        Filter::GetDigit => {
            let a = match arg.as_ref().map(py_int) {
                Some(Ok(a)) => a,
                Some(Err(PyErr::Type)) | None => return Err(type_err("get_digit")),
                Some(Err(PyErr::Value)) => return Ok(v),
            };
            let n = match py_int(&v) {
                Ok(n) => n,
                Err(PyErr::Value) => return Ok(v),
                Err(PyErr::Type) => return Err(type_err("get_digit")),
            };
            if a < 1 {
                return Ok(v);
            }
            let digits = n.to_string();
            let a = a as usize;
            if a > digits.len() {
                Value::Int(0)
            } else {
                let c = digits.as_bytes()[digits.len() - a];
                if c.is_ascii_digit() {
                    Value::Int((c - b'0') as i64)
                } else {
                    return Err(value_err("invalid literal for int()"));
                }
            }
        }
        Filter::Date => date_filter(&v, arg.as_ref(), "DATE_FORMAT")?,
        Filter::Time => {
            let when = match &v {
                Value::Date(d) => When::Date(*d),
                Value::DateTime(dt) => When::DateTime(*dt),
                _ => return Ok(Value::empty_str()),
            };
            let fmt = match &arg {
                Some(a) if a.truthy() => into_str(a.clone()),
                _ => Cow::Borrowed("TIME_FORMAT"),
            };
            let fmt = date::named_format(&fmt).map_or(fmt, Cow::Borrowed);
            Value::str_owned(date::format_time(when, &fmt).unwrap_or_default())
        }
        Filter::Timesince | Filter::Timeuntil => {
            timesince(&v, arg.as_ref(), env, f == Filter::Timeuntil)?
        }
        Filter::Default => {
            if v.truthy() {
                v
            } else {
                arg.unwrap_or_else(Value::empty_str)
            }
        }
        Filter::DefaultIfNone => match v {
            Value::None => arg.unwrap_or_else(Value::empty_str),
            other => other,
        },
        Filter::Divisibleby => {
            let a = py_int(&v).map_err(|e| loud(e, "int()"))?;
            let b = arg
                .as_ref()
                .map(py_int)
                .unwrap_or(Err(PyErr::Type))
                .map_err(|e| loud(e, "int()"))?;
            if b == 0 {
                return Err(RenderError::ValueError(
                    "ZeroDivisionError: integer modulo by zero".into(),
                ));
            }
            Value::Bool(a.rem_euclid(b) == 0)
        }
        Filter::Yesno => {
            let spec = match &arg {
                None => Cow::Borrowed("yes,no,maybe"),
                Some(Value::Str(s, _)) => s.clone(),
                Some(_) => return Err(type_err("yesno")),
            };
            let bits: Vec<&str> = spec.split(',').collect();
            if bits.len() < 2 {
                return Ok(v);
            }
            let (yes, no, maybe) = if bits.len() == 3 {
                (bits[0], bits[1], bits[2])
            } else {
                (bits[0], bits[1], bits[1])
            };
            let s = match v {
                Value::None => maybe,
                ref x if x.truthy() => yes,
                _ => no,
            };
            Value::str_owned(s.to_string())
        }
        Filter::Filesizeformat => Value::str_owned(filesizeformat(&v)),
        Filter::Pluralize => {
            let spec = match &arg {
                None => Cow::Borrowed("s"),
                Some(a) => into_str(a.clone()),
            };
            let spec = if spec.contains(',') {
                spec.into_owned()
            } else {
                format!(",{spec}")
            };
            let bits: Vec<&str> = spec.split(',').collect();
            if bits.len() > 2 {
                return Ok(Value::empty_str());
            }
            let (one, many) = (bits[0], bits[1]);
            let pick = match py_float(&v) {
                Ok(n) => Some(n == 1.0),
                Err(PyErr::Value) => None,
                Err(PyErr::Type) => v.py_len().map(|n| n == 1),
            };
            Value::str_owned(match pick {
                Some(true) => one.to_string(),
                Some(false) => many.to_string(),
                None => String::new(),
            })
        }
        Filter::Phone2numeric => Value::str_owned(
            match v {
                Value::Str(s, _) => s,
                _ => return Err(type_err("phone2numeric")),
            }
            .chars()
            .map(|c| match c.to_ascii_lowercase() {
                'a' | 'b' | 'c' => '2',
                'd' | 'e' | 'f' => '3',
                'g' | 'h' | 'i' => '4',
                'j' | 'k' | 'l' => '5',
                'm' | 'n' | 'o' => '6',
                'p' | 'q' | 'r' | 's' => '7',
                't' | 'u' | 'v' => '8',
                'w' | 'x' | 'y' | 'z' => '9',
                _ => c,
            })
            .collect(),
        ),
        Filter::Pprint => {
            let mut s = String::new();
            v.write_repr(&mut s);
            Value::str_owned(s)
        }
        _ => return super::klaviyo::apply(f, v, arg, env),
    };
    Ok(out)
}

/// Django's `escapejs`; None when nothing needs escaping (no copy).
fn escapejs(s: &str) -> Option<String> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = s.as_bytes();
    let hit = |i: usize| -> Option<(u32, usize)> {
        let b = bytes[i];
        match b {
            b'\\' | b'\'' | b'"' | b'>' | b'<' | b'&' | b'=' | b'-' | b';' | b'`' => {
                Some((b as u32, 1))
            }
            0..=31 => Some((b as u32, 1)),
            // U+2028 / U+2029 are E2 80 A8 / E2 80 A9 in UTF-8.
            0xE2 if bytes.get(i + 1) == Some(&0x80)
                && matches!(bytes.get(i + 2), Some(0xA8 | 0xA9)) =>
            {
                Some((0x2000 + 0x28 + (bytes[i + 2] - 0xA8) as u32, 3))
            }
            _ => None,
        }
    };
    let first = (0..bytes.len()).find(|&i| hit(i).is_some())?;
    let mut out = String::with_capacity(s.len() + 32);
    out.push_str(&s[..first]);
    let mut last = first;
    let mut i = first;
    while i < bytes.len() {
        match hit(i) {
            Some((n, len)) => {
                out.push_str(&s[last..i]);
                out.push_str("\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(HEX[((n >> shift) & 0xf) as usize] as char);
                }
                i += len;
                last = i;
            }
            None => i += 1,
        }
    }
    out.push_str(&s[last..]);
    Some(out)
}

fn slugify(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let ascii: String = s.nfkd().filter(char::is_ascii).collect();
    let lowered = ascii.to_lowercase();
    let kept: String = lowered
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '_' || text::is_space(*c) || *c == '-')
        .collect();
    let mut out = String::new();
    let mut in_run = false;
    for c in kept.chars() {
        if c == '-' || text::is_space(c) {
            if !in_run {
                out.push('-');
                in_run = true;
            }
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out.trim_matches(|c| c == '-' || c == '_').to_string()
}

fn django_title(s: &str) -> String {
    let t: Vec<char> = text::py_title(s).chars().collect();
    let mut out: Vec<char> = t.clone();
    // ([a-z])'([A-Z]) -> lower the letter after the apostrophe.
    for i in 0..t.len() {
        if i >= 2 && t[i - 1] == '\'' && t[i - 2].is_ascii_lowercase() && t[i].is_ascii_uppercase()
        {
            out[i] = t[i].to_ascii_lowercase();
        }
    }
    // \d([A-Z]) -> lower the letter after a digit.
    for i in 1..t.len() {
        if t[i - 1].is_numeric() && t[i - 1].is_ascii_digit() && out[i].is_ascii_uppercase() {
            out[i] = out[i].to_ascii_lowercase();
        }
    }
    out.into_iter().collect()
}

fn is_combining(c: char) -> bool {
    matches!(c as u32, 0x300..=0x36f | 0x1ab0..=0x1aff | 0x1dc0..=0x1dff | 0x20d0..=0x20ff | 0xfe20..=0xfe2f)
}

/// Django's `Truncator.chars` with the `…` ending.
pub fn truncate_chars(s: &str, n: i64) -> String {
    if n <= 0 {
        return String::new();
    }
    let length = n as usize;
    if s.is_ascii() {
        // No combining characters: byte offsets are character offsets.
        if s.len() <= length {
            return s.to_string();
        }
        let mut out = String::with_capacity(length + 3);
        out.push_str(&s[..length - 1]);
        out.push('…');
        return out;
    }
    let truncate_len = length - 1;
    let mut s_len = 0usize;
    let mut end_index = None;
    for (i, c) in s.char_indices() {
        if is_combining(c) {
            continue;
        }
        s_len += 1;
        if end_index.is_none() && s_len > truncate_len {
            end_index = Some(i);
        }
        if s_len > length {
            let mut out = s[..end_index.unwrap_or(0)].to_string();
            out.push('…');
            return out;
        }
    }
    s.to_string()
}

/// Python `str.expandtabs(8)`.
fn expand_tabs(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut col = 0usize;
    for c in line.chars() {
        match c {
            '\t' => {
                let n = 8 - col % 8;
                out.extend(std::iter::repeat_n(' ', n));
                col += n;
            }
            '\n' | '\r' => {
                out.push(c);
                col = 0;
            }
            c => {
                out.push(c);
                col += 1;
            }
        }
    }
    out
}

/// Django 5.2's `wordwrap`: `textwrap.TextWrapper(width,
/// break_long_words=False, break_on_hyphens=False, replace_whitespace=False)`
/// applied per line.
fn wordwrap(s: &str, width: i64) -> Result<String, RenderError> {
    if width <= 0 {
        return Err(value_err(&format!("invalid width {width} (must be > 0)")));
    }
    let width = width as usize;
    let is_ws = |c: char| matches!(c, '\t' | '\n' | '\x0b' | '\x0c' | '\r' | ' ');
    let mut result: Vec<String> = Vec::new();
    for line in text::splitlines(s) {
        let expanded = expand_tabs(line);
        // Chunks alternate between whitespace runs and words.
        let mut chunks: Vec<&str> = Vec::new();
        let mut start = 0;
        let mut prev: Option<bool> = None;
        for (i, c) in expanded.char_indices() {
            let ws = is_ws(c);
            if prev.is_some_and(|p| p != ws) {
                chunks.push(&expanded[start..i]);
                start = i;
            }
            prev = Some(ws);
        }
        if start < expanded.len() {
            chunks.push(&expanded[start..]);
        }
        let blank = |c: &str| c.trim_matches(text::is_space).is_empty();
        let mut lines: Vec<String> = Vec::new();
        let mut idx = 0;
        while idx < chunks.len() {
            if blank(chunks[idx]) && !lines.is_empty() {
                idx += 1;
                if idx >= chunks.len() {
                    break;
                }
            }
            let mut cur: Vec<&str> = Vec::new();
            let mut cur_len = 0;
            while idx < chunks.len() {
                let l = chunks[idx].chars().count();
                if cur_len + l <= width {
                    cur.push(chunks[idx]);
                    cur_len += l;
                    idx += 1;
                } else {
                    break;
                }
            }
            if idx < chunks.len() && chunks[idx].chars().count() > width && cur.is_empty() {
                cur.push(chunks[idx]);
                idx += 1;
            }
            if cur.last().is_some_and(|c| blank(c)) {
                cur.pop();
            }
            if !cur.is_empty() {
                lines.push(cur.concat());
            }
        }
        if lines.is_empty() {
            result.push(line.to_string());
        } else {
            result.extend(lines);
        }
    }
    if s.ends_with('\n') {
        result.push(String::new());
    }
    Ok(result.join("\n"))
}

fn normalize_newlines(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

fn split_paragraphs(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut nl = 0;
    for c in s.chars() {
        if c == '\n' {
            nl += 1;
            continue;
        }
        if nl >= 2 {
            out.push(std::mem::take(&mut cur));
        } else if nl == 1 {
            cur.push('\n');
        }
        nl = 0;
        cur.push(c);
    }
    if nl >= 2 {
        out.push(std::mem::take(&mut cur));
    } else if nl == 1 {
        cur.push('\n');
    }
    out.push(cur);
    out
}

/// Approximation of Django's HTMLParser-based `strip_tags`: drops tags,
/// comments and declarations, keeps text and entities as written.
fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '<'
            && i + 1 < b.len()
            && (b[i + 1].is_alphabetic() || matches!(b[i + 1], '/' | '!' | '?'))
        {
            if let Some(end) = b[i..].iter().position(|&c| c == '>') {
                i += end + 1;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Sort keys grouped into classes that Python can compare among themselves.
fn sortable(keys: &[Value<'_>]) -> bool {
    let class = |v: &Value<'_>| match v {
        Value::Bool(_) | Value::Int(_) | Value::Float(_) => 0,
        Value::Str(..) => 1,
        Value::Date(_) => 2,
        Value::DateTime(_) => 3,
        _ => 4,
    };
    match keys.first() {
        None => true,
        Some(k) => {
            let c = class(k);
            c != 4 && keys.iter().all(|k| class(k) == c)
        }
    }
}

/// Total order for keys already checked by `sortable`.
pub fn key_cmp(a: &Value<'_>, b: &Value<'_>) -> Ordering {
    match (a.as_number(), b.as_number()) {
        (Some(Num::Int(x)), Some(Num::Int(y))) => x.cmp(&y),
        (Some(x), Some(y)) => x.as_f64().total_cmp(&y.as_f64()),
        _ => a.py_cmp(b).unwrap_or(Ordering::Equal),
    }
}

/// Resolve `a.b.c` on an item like Django's `_property_resolver`.
pub fn resolve_path<'a>(item: &Value<'a>, path: &str) -> Option<Value<'a>> {
    let mut cur = item.clone();
    for part in path.split('.') {
        cur = match &cur {
            Value::Dict(d) => d.get(part)?,
            Value::List(l) => l.get(part.parse().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Sort `items` by keys, stably; None if Python's `sorted` would raise.
pub fn sort_by_keys<'a>(
    items: Vec<Value<'a>>,
    keys: Vec<Value<'a>>,
    reverse: bool,
) -> Option<Vec<Value<'a>>> {
    if items.len() > 1 && !sortable(&keys) {
        return None;
    }
    let mut pairs: Vec<(Value<'a>, Value<'a>)> = keys.into_iter().zip(items).collect();
    if reverse {
        pairs.sort_by(|a, b| key_cmp(&b.0, &a.0));
    } else {
        pairs.sort_by(|a, b| key_cmp(&a.0, &b.0));
    }
    Some(pairs.into_iter().map(|(_, v)| v).collect())
}

fn dictsort<'a>(v: &Value<'a>, key: &str, reverse: bool) -> Option<Value<'a>> {
    if key.is_empty() {
        return None;
    }
    let numeric_key = parse_py_float(key).is_some();
    if !numeric_key && (key.contains("._") || key.starts_with('_')) {
        return None;
    }
    let items = v.py_iter()?;
    let mut keys = Vec::with_capacity(items.len());
    for it in &items {
        let k = if numeric_key {
            match it {
                Value::Dict(d) => d.get(key)?,
                _ => return None,
            }
        } else {
            resolve_path(it, key)?
        };
        keys.push(k);
    }
    sort_by_keys(items, keys, reverse).map(Value::list)
}

fn join<'a>(v: Value<'a>, arg: Option<Value<'a>>, env: &Env<'_>) -> Result<Value<'a>, RenderError> {
    let Some(Value::Str(sep, sep_safe)) = arg else {
        return Ok(v);
    };
    let collected: Vec<Value<'a>>;
    let list: &[Value<'a>] = match &v {
        Value::List(List::Owned(items)) => items,
        Value::List(List::Json(_)) => &[],
        Value::Dict(_) | Value::Str(..) => {
            collected = v.py_iter().unwrap_or_default();
            &collected
        }
        _ => return Ok(v),
    };
    let json: &[serde_json::Value] = match &v {
        Value::List(List::Json(a)) => a,
        _ => &[],
    };
    let mut out = String::new();
    if env.autoescape {
        let sep = if sep_safe.is_yes() {
            sep.to_string()
        } else {
            escape(&sep)
        };
        let mut push = |i: usize, it: &Value<'_>| -> Result<(), RenderError> {
            if i > 0 {
                out.push_str(&sep);
            }
            match it {
                Value::Str(s, Safe::Yes) => out.push_str(s),
                other => escape_into(&other.to_py_str(), &mut out),
            }
            env.check_size(out.len())
        };
        for (i, j) in json.iter().enumerate() {
            push(i, &Value::from_json(j))?;
        }
        for (i, it) in list.iter().enumerate() {
            push(i, it)?;
        }
    } else {
        // Python's str.join raises TypeError on non-strings; Django then
        // returns the input unchanged.
        let strs: Option<Vec<&str>> = if json.is_empty() {
            list.iter().map(Value::as_str).collect()
        } else {
            json.iter().map(serde_json::Value::as_str).collect()
        };
        let Some(strs) = strs else {
            return Ok(v);
        };
        let total: usize = strs.iter().map(|s| s.len()).sum::<usize>() + sep.len() * strs.len();
        env.check_size(total)?;
        out.reserve(total);
        for (i, s) in strs.iter().enumerate() {
            if i > 0 {
                out.push_str(&sep);
            }
            out.push_str(s);
        }
    }
    Ok(Value::safe_owned(out))
}

/// Python slice bounds for `slice(start, stop, step).indices(len)`.
pub fn slice_indices(len: usize, start: Option<i64>, stop: Option<i64>, step: i64) -> Vec<usize> {
    let len = len as i64;
    let clamp = |x: Option<i64>, default: i64, lo: i64, hi: i64| match x {
        None => default,
        Some(v) if v < 0 => (v + len).max(lo),
        Some(v) => v.min(hi),
    };
    let mut out = Vec::new();
    if step > 0 {
        let s = clamp(start, 0, 0, len);
        let e = clamp(stop, len, 0, len);
        let mut i = s;
        while i < e {
            out.push(i as usize);
            i += step;
        }
    } else {
        let s = clamp(start, len - 1, -1, len - 1);
        let e = clamp(stop, -1, -1, len - 1);
        let mut i = s;
        while i > e {
            out.push(i as usize);
            i += step;
        }
    }
    out
}

fn slice<'a>(v: Value<'a>, spec: &str) -> Value<'a> {
    let mut bits = Vec::new();
    for x in spec.split(':') {
        if x.is_empty() {
            bits.push(None);
        } else {
            match parse_py_int(x) {
                Some(n) => bits.push(Some(n)),
                None => return v,
            }
        }
    }
    let (start, stop, step) = match bits.as_slice() {
        [stop] => (None, *stop, None),
        [a, b] => (*a, *b, None),
        [a, b, c] => (*a, *b, *c),
        _ => return v,
    };
    let step = step.unwrap_or(1);
    if step == 0 {
        return v;
    }
    match &v {
        Value::List(l) => {
            let idx = slice_indices(l.len(), start, stop, step);
            Value::list(idx.into_iter().filter_map(|i| l.get(i)).collect())
        }
        Value::Str(s, safe) => {
            let chars: Vec<char> = s.chars().collect();
            let idx = slice_indices(chars.len(), start, stop, step);
            Value::Str(
                Cow::Owned(idx.into_iter().map(|i| chars[i]).collect()),
                *safe,
            )
        }
        _ => v,
    }
}

fn unordered_list(items: &[Value<'_>], autoescape: bool, tabs: usize) -> String {
    let indent = "\t".repeat(tabs);
    let mut out = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let title = &items[i];
        let mut sub = String::new();
        if let Some(Value::List(children)) = items.get(i + 1) {
            if !children.is_empty() {
                let inner = unordered_list(&children.to_vec(), autoescape, tabs + 1);
                sub = format!("\n{indent}<ul>\n{inner}\n{indent}</ul>\n{indent}");
            }
            i += 1;
        }
        let t = if autoescape {
            conditional_escape(title)
        } else {
            title.to_py_str().into_owned()
        };
        out.push(format!("{indent}<li>{t}{sub}</li>"));
        i += 1;
    }
    out.join("\n")
}

fn add<'a>(v: Value<'a>, arg: Option<Value<'a>>, env: &Env<'_>) -> Result<Value<'a>, RenderError> {
    let Some(arg) = arg else {
        return Ok(Value::empty_str());
    };
    if let (Ok(a), Ok(b)) = (py_int(&v), py_int(&arg)) {
        return Ok(match a.checked_add(b) {
            Some(n) => Value::Int(n),
            None => Value::Float(a as f64 + b as f64),
        });
    }
    Ok(match (&v, &arg) {
        (Value::Str(a, _), Value::Str(b, _)) => {
            env.check_size(a.len() + b.len())?;
            Value::str_owned(format!("{a}{b}"))
        }
        (Value::List(a), Value::List(b)) => {
            env.check_size(a.len() + b.len())?;
            let mut items = a.to_vec();
            items.extend(b.iter());
            Value::list(items)
        }
        _ => match (v.as_number(), arg.as_number()) {
            (Some(a), Some(b)) => match (a, b) {
                (Num::Int(x), Num::Int(y)) => Value::Int(x.wrapping_add(y)),
                (x, y) => Value::Float(x.as_f64() + y.as_f64()),
            },
            _ => Value::empty_str(),
        },
    })
}

fn date_filter<'a>(
    v: &Value<'a>,
    arg: Option<&Value<'a>>,
    default: &str,
) -> Result<Value<'a>, RenderError> {
    let when = match v {
        Value::Date(d) => When::Date(*d),
        Value::DateTime(dt) => When::DateTime(*dt),
        _ => return Ok(Value::empty_str()),
    };
    let fmt = match arg {
        Some(a) if a.truthy() => into_str(a.clone()),
        _ => Cow::Borrowed(default),
    };
    let fmt = date::named_format(&fmt).map_or(fmt, Cow::Borrowed);
    Ok(Value::str_owned(date::format(when, &fmt)?))
}

/// Django 5.2's `timesince`/`timeuntil` (calendar months, depth 2).
fn timesince<'a>(
    v: &Value<'a>,
    arg: Option<&Value<'a>>,
    env: &Env<'_>,
    until: bool,
) -> Result<Value<'a>, RenderError> {
    use chrono::{Datelike, NaiveDate, Timelike};
    let to_dt = |x: &Value<'_>| match x {
        Value::Date(d) => d.and_hms_opt(0, 0, 0),
        Value::DateTime(dt) => Some(*dt),
        _ => None,
    };
    if !v.truthy() {
        return Ok(Value::empty_str());
    }
    let Some(d) = to_dt(v) else {
        return Ok(Value::empty_str());
    };
    let now = match arg {
        Some(a) if a.truthy() => match to_dt(a) {
            Some(n) => n,
            None => return Ok(Value::empty_str()),
        },
        _ => env.now.ok_or(RenderError::NoClock)?,
    };
    let (d, now) = if until { (now, d) } else { (d, now) };
    let zero = || Value::str_owned("0\u{a0}minutes".into());
    let delta = now - d;
    if delta.num_seconds() <= 0 {
        return Ok(zero());
    }
    let mut total_months =
        (now.year() - d.year()) as i64 * 12 + now.month() as i64 - d.month() as i64;
    if d.day() > now.day() || (d.day() == now.day() && d.time() > now.time()) {
        total_months -= 1;
    }
    let (years, months) = (total_months.div_euclid(12), total_months.rem_euclid(12));
    const MONTHS_DAYS: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let pivot = if years != 0 || months != 0 {
        let mut py = d.year() as i64 + years;
        let mut pm = d.month() as i64 + months;
        if pm > 12 {
            pm -= 12;
            py += 1;
        }
        let day = MONTHS_DAYS[(pm - 1) as usize].min(d.day());
        i32::try_from(py)
            .ok()
            .and_then(|y| NaiveDate::from_ymd_opt(y, pm as u32, day))
            .and_then(|nd| nd.and_hms_opt(d.hour(), d.minute(), d.second()))
            .unwrap_or(d)
    } else {
        d
    };
    let mut remaining = (now - pivot)
        .num_microseconds()
        .map_or(0.0, |us| us as f64 / 1e6);
    let mut partials = vec![years, months];
    for chunk in [604_800.0, 86_400.0, 3_600.0, 60.0] {
        let count = (remaining / chunk).floor();
        partials.push(count as i64);
        remaining -= chunk * count;
    }
    let names = [
        ("year", "years"),
        ("month", "months"),
        ("week", "weeks"),
        ("day", "days"),
        ("hour", "hours"),
        ("minute", "minutes"),
    ];
    let Some(first) = partials.iter().position(|&x| x != 0) else {
        return Ok(zero());
    };
    let mut parts = Vec::new();
    for i in first..(first + 2).min(partials.len()) {
        let n = partials[i];
        if n == 0 {
            break;
        }
        let (one, many) = names[i];
        parts.push(format!("{n}\u{a0}{}", if n == 1 { one } else { many }));
    }
    Ok(Value::str_owned(parts.join(", ")))
}

fn filesizeformat(v: &Value<'_>) -> String {
    let Ok(mut b) = py_int(v) else {
        return "0\u{a0}bytes".into();
    };
    let negative = b < 0;
    if negative {
        b = b.saturating_neg();
    }
    let kb = 1i64 << 10;
    let units = [
        (kb, "KB"),
        (kb << 10, "MB"),
        (kb << 20, "GB"),
        (kb << 30, "TB"),
        (kb << 40, "PB"),
    ];
    let s = if b < kb {
        format!("{b} {}", if b == 1 { "byte" } else { "bytes" })
    } else {
        let mut idx = units.len() - 1;
        for i in 0..units.len() - 1 {
            if b < units[i + 1].0 {
                idx = i;
                break;
            }
        }
        let (size, name) = units[idx];
        format!("{:.1} {name}", b as f64 / size as f64)
    };
    let s = if negative { format!("-{s}") } else { s };
    s.replace(' ', "\u{a0}")
}

/// A decimal number: `digits` × 10^`exp`.
struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    exp: i64,
}

/// Python `Decimal(str)` for finite numbers, in one pass.
fn parse_decimal(s: &str) -> Option<Decimal> {
    let t = s.trim_matches(text::is_space).as_bytes();
    let (negative, body) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut digits = Vec::with_capacity(body.len());
    let mut frac_len: i64 = 0;
    let mut seen_dot = false;
    let mut prev_digit = false;
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        match c {
            b'0'..=b'9' => {
                digits.push(c - b'0');
                if seen_dot {
                    frac_len += 1;
                }
                prev_digit = true;
            }
            b'_' if prev_digit && body.get(i + 1).is_some_and(u8::is_ascii_digit) => {}
            b'.' if !seen_dot => {
                seen_dot = true;
                prev_digit = false;
            }
            b'e' | b'E' => break,
            _ => return None,
        }
        i += 1;
    }
    if digits.is_empty() {
        return None;
    }
    let exp: i64 = if i < body.len() {
        let e = std::str::from_utf8(&body[i + 1..]).ok()?;
        if e.is_empty() || e.contains('_') {
            return None;
        }
        e.parse().ok()?
    } else {
        0
    };
    if exp.abs() > 1_000_000 {
        return None;
    }
    Some(Decimal {
        negative,
        digits,
        exp: exp - frac_len,
    })
}

fn floatformat<'a>(
    v: &Value<'a>,
    arg: Option<Value<'a>>,
    env: &Env<'_>,
) -> Result<Value<'a>, RenderError> {
    let mut force_grouping = false;
    let mut arg = arg.unwrap_or(Value::Int(-1));
    if let Value::Str(s, _) = &arg {
        let s = s.to_string();
        let stripped = if s.ends_with("gu") || s.ends_with("ug") {
            Some(&s[..s.len() - 2])
        } else if s.ends_with('g') {
            force_grouping = true;
            Some(&s[..s.len() - 1])
        } else if s.ends_with('u') {
            Some(&s[..s.len() - 1])
        } else {
            None
        };
        if let Some(st) = stripped {
            arg = if st.is_empty() {
                Value::Int(-1)
            } else {
                Value::str_owned(st.to_string())
            };
        }
    }
    // Fast path: a float with a small positive precision (the usual
    // `|floatformat:2`), rounded half-up on its repr digits in place.
    if let (Value::Float(f), Value::Int(p @ 1..=20)) = (v, &arg) {
        if !force_grouping && f.is_finite() && (*f == 0.0 || (1e-4..1e16).contains(&f.abs())) {
            return Ok(Value::safe_owned(round_repr_half_up(*f, *p as usize)));
        }
    }
    // str(value) without allocating for the common numeric inputs.
    let mut rb = ryu::Buffer::new();
    let mut ib = itoa::Buffer::new();
    let input: Cow<'_, str> = match v {
        Value::Float(f) if f.is_finite() && (*f == 0.0 || (1e-4..1e16).contains(&f.abs())) => {
            Cow::Borrowed(rb.format_finite(*f))
        }
        Value::Int(i) => Cow::Borrowed(ib.format(*i)),
        other => other.to_py_str(),
    };
    let d = match parse_decimal(&input) {
        Some(d) => d,
        None => {
            let f = match v {
                Value::Bool(b) => *b as i64 as f64,
                Value::Str(s, _) => match parse_py_float(s) {
                    Some(f) => f,
                    None => return Ok(Value::empty_str()),
                },
                Value::Int(i) => *i as f64,
                Value::Float(f) => *f,
                _ => return Ok(Value::empty_str()),
            };
            if !f.is_finite() {
                return Ok(Value::str_owned(input.into_owned()));
            }
            let mut s = String::new();
            crate::value::write_float_repr(f, &mut s);
            match parse_decimal(&s) {
                Some(d) => d,
                None => return Ok(Value::empty_str()),
            }
        }
    };
    let p = match py_int(&arg) {
        Ok(p) => p,
        Err(_) => return Ok(Value::str_owned(input.into_owned())),
    };
    // Django returns values with more than 200 digits+exponent as-is.
    if d.digits.len() as u64 + d.exp.unsigned_abs() > 200 {
        return Ok(Value::str_owned(input.into_owned()));
    }
    env.check_size(p.unsigned_abs() as usize)?;
    env.check_size(d.exp.unsigned_abs() as usize)?;
    let Decimal {
        negative,
        mut digits,
        exp,
    } = d;
    let places = p.unsigned_abs() as usize;
    let frac_nonzero = exp < 0 && {
        let start = digits.len().saturating_sub((-exp) as usize);
        digits[start..].iter().any(|&x| x != 0)
    };
    if !frac_nonzero && p <= 0 {
        // Integral value: Django prints "%d" % int(d) with no decimals.
        let n = (digits.len() as i64 + exp).max(0) as usize;
        digits.truncate(n);
        digits.extend(std::iter::repeat_n(0, exp.max(0) as usize));
        let first = digits.iter().position(|&x| x != 0).unwrap_or(digits.len());
        let mut out = String::with_capacity(digits.len() + 2);
        if first == digits.len() {
            out.push('0');
        } else {
            if negative {
                out.push('-');
            }
            out.extend(digits[first..].iter().map(|x| (b'0' + x) as char));
        }
        return Ok(Value::safe_owned(group(out, force_grouping)));
    }
    // Quantize to `places` decimals, ROUND_HALF_UP.
    let target = -(places as i64);
    if exp >= target {
        digits.extend(std::iter::repeat_n(0, (exp - target) as usize));
    } else {
        let drop = (target - exp) as usize;
        let round_up = if drop > digits.len() {
            digits.clear();
            false
        } else {
            let keep = digits.len() - drop;
            let r = digits[keep] >= 5;
            digits.truncate(keep);
            r
        };
        if round_up {
            let mut i = digits.len();
            loop {
                if i == 0 {
                    digits.insert(0, 1);
                    break;
                }
                i -= 1;
                if digits[i] == 9 {
                    digits[i] = 0;
                } else {
                    digits[i] += 1;
                    break;
                }
            }
        }
    }
    let int_len = digits.len().saturating_sub(places);
    let first = digits[..int_len]
        .iter()
        .position(|&x| x != 0)
        .unwrap_or(int_len);
    let is_zero = digits.iter().all(|&x| x == 0);
    let mut int_part = String::with_capacity(int_len + 2);
    if negative && !is_zero {
        int_part.push('-');
    }
    if first == int_len {
        int_part.push('0');
    } else {
        int_part.extend(digits[first..int_len].iter().map(|x| (b'0' + x) as char));
    }
    let mut out = group(int_part, force_grouping);
    if places > 0 {
        out.push('.');
        let frac = &digits[int_len..];
        out.extend(std::iter::repeat_n('0', places - frac.len()));
        out.extend(frac.iter().map(|x| (b'0' + x) as char));
    }
    Ok(Value::safe_owned(out))
}

/// `floatformat` for a float in positional-repr range and `places` > 0:
/// quantize the shortest repr digits with ROUND_HALF_UP, like Django's
/// `Decimal(repr(f)).quantize(...)`.
fn round_repr_half_up(f: f64, places: usize) -> String {
    let mut rb = ryu::Buffer::new();
    let repr = rb.format_finite(f);
    let (negative, body) = match repr.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, repr),
    };
    let (int_part, frac) = body.split_once('.').unwrap_or((body, ""));
    // Digits of int_part followed by exactly `places` fraction digits.
    let mut digits: Vec<u8> = Vec::with_capacity(int_part.len() + places + 2);
    digits.extend(int_part.bytes().map(|b| b - b'0'));
    let fb = frac.as_bytes();
    for i in 0..places {
        digits.push(fb.get(i).map_or(0, |b| b - b'0'));
    }
    if fb.get(places).is_some_and(|&b| b >= b'5') {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, 1);
                break;
            }
            i -= 1;
            if digits[i] == 9 {
                digits[i] = 0;
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let int_len = digits.len() - places;
    let first = digits[..int_len]
        .iter()
        .position(|&d| d != 0)
        .unwrap_or(int_len);
    let is_zero = digits.iter().all(|&d| d == 0);
    let mut out = String::with_capacity(digits.len() + 3);
    if negative && !is_zero {
        out.push('-');
    }
    if first == int_len {
        out.push('0');
    } else {
        out.extend(digits[first..int_len].iter().map(|d| (b'0' + d) as char));
    }
    out.push('.');
    out.extend(digits[int_len..].iter().map(|d| (b'0' + d) as char));
    out
}

/// Thousands grouping with "," (en locale), sign-aware.
fn group(int_part: String, on: bool) -> String {
    if !on {
        return int_part;
    }
    let (sign, digits) = match int_part.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", int_part.as_str()),
    };
    let mut out = String::from(sign);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Python's `"%<spec>" % value`; None where Python raises (Django then
/// renders an empty string).
fn stringformat(v: &Value<'_>, spec: &str, env: &Env<'_>) -> Result<Option<String>, RenderError> {
    let b: Vec<char> = spec.chars().collect();
    let mut i = 0;
    let mut left = false;
    let mut zero = false;
    let mut plus = false;
    let mut space = false;
    let mut alt = false;
    while i < b.len() && matches!(b[i], '-' | '0' | '+' | ' ' | '#') {
        match b[i] {
            '-' => left = true,
            '0' => zero = true,
            '+' => plus = true,
            ' ' => space = true,
            _ => alt = true,
        }
        i += 1;
    }
    let mut width = 0usize;
    while i < b.len() && b[i].is_ascii_digit() {
        width = width
            .saturating_mul(10)
            .saturating_add(b[i] as usize - '0' as usize);
        i += 1;
    }
    let mut prec: Option<usize> = None;
    if i < b.len() && b[i] == '.' {
        i += 1;
        let mut p = 0usize;
        while i < b.len() && b[i].is_ascii_digit() {
            p = p
                .saturating_mul(10)
                .saturating_add(b[i] as usize - '0' as usize);
            i += 1;
        }
        prec = Some(p);
    }
    env.check_size(width)?;
    env.check_size(prec.unwrap_or(0))?;
    if i + 1 != b.len() {
        return Ok(None);
    }
    let conv = b[i];
    let num = |v: &Value<'_>| -> Option<Num> {
        match v {
            Value::Bool(_) | Value::Int(_) | Value::Float(_) => v.as_number(),
            _ => None,
        }
    };
    let sign_of = |neg: bool| -> &'static str {
        if neg {
            "-"
        } else if plus {
            "+"
        } else if space {
            " "
        } else {
            ""
        }
    };
    let (sign, body, numeric) = match conv {
        's' | 'r' | 'a' => {
            let s = if conv == 's' {
                v.to_py_str().into_owned()
            } else {
                let mut s = String::new();
                v.write_repr(&mut s);
                s
            };
            let s = match prec {
                Some(p) => s.chars().take(p).collect(),
                None => s,
            };
            ("", s, false)
        }
        'd' | 'i' | 'u' => {
            let Some(n) = num(v) else { return Ok(None) };
            let n = match n {
                Num::Int(i) => i as i128,
                Num::Float(f) if f.is_finite() => f.trunc() as i128,
                Num::Float(_) => return Ok(None),
            };
            let mut s = n.unsigned_abs().to_string();
            if let Some(p) = prec {
                while s.len() < p {
                    s.insert(0, '0');
                }
            }
            (sign_of(n < 0), s, true)
        }
        'x' | 'X' | 'o' => {
            let Some(Num::Int(n)) = num(v) else {
                return Ok(None);
            };
            let mag = n.unsigned_abs();
            let mut s = match conv {
                'x' => format!("{mag:x}"),
                'X' => format!("{mag:X}"),
                _ => format!("{mag:o}"),
            };
            if alt {
                s.insert_str(
                    0,
                    match conv {
                        'x' => "0x",
                        'X' => "0X",
                        _ => "0o",
                    },
                );
            }
            (sign_of(n < 0), s, true)
        }
        'f' | 'F' | 'e' | 'E' | 'g' | 'G' => {
            let Some(n) = num(v) else { return Ok(None) };
            let f = n.as_f64();
            let p = prec.unwrap_or(6);
            let mag = f.abs();
            let s = match conv {
                'f' | 'F' => format!("{mag:.p$}"),
                'e' | 'E' => py_exp(mag, p, conv == 'E'),
                _ => {
                    let p = if p == 0 { 1 } else { p };
                    let exp = if mag == 0.0 {
                        0
                    } else {
                        mag.log10().floor() as i64
                    };
                    let s = if exp < -4 || exp >= p as i64 {
                        py_exp(mag, p - 1, conv == 'G')
                    } else {
                        format!("{mag:.*}", (p as i64 - 1 - exp).max(0) as usize)
                    };
                    if alt {
                        s
                    } else {
                        strip_trailing_zeros(&s)
                    }
                }
            };
            (sign_of(f.is_sign_negative() && f != 0.0), s, true)
        }
        'c' => match v {
            Value::Int(n) => match u32::try_from(*n).ok().and_then(char::from_u32) {
                Some(c) => ("", c.to_string(), false),
                None => return Ok(None),
            },
            Value::Str(s, _) if s.chars().count() == 1 => ("", s.to_string(), false),
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    let len = sign.chars().count() + body.chars().count();
    let pad = width.saturating_sub(len);
    Ok(Some(if left {
        format!("{sign}{body}{}", " ".repeat(pad))
    } else if zero && numeric {
        format!("{sign}{}{body}", "0".repeat(pad))
    } else {
        format!("{}{sign}{body}", " ".repeat(pad))
    }))
}

fn strip_trailing_zeros(s: &str) -> String {
    let (m, e) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let m = if m.contains('.') {
        m.trim_end_matches('0').trim_end_matches('.')
    } else {
        m
    };
    format!("{m}{e}")
}

fn py_exp(mag: f64, p: usize, upper: bool) -> String {
    let s = format!("{mag:.p$e}");
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let (sign, digits) = match e.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', e),
    };
    let e = if digits.len() < 2 {
        format!("{sign}0{digits}")
    } else {
        format!("{sign}{digits}")
    };
    format!("{m}{}{e}", if upper { 'E' } else { 'e' })
}

/// Keep `Dict`/`List`/`Arc` imports meaningful for helpers below.
pub fn dict_from_pairs<'a>(pairs: Vec<(Cow<'a, str>, Value<'a>)>) -> Value<'a> {
    Value::Dict(Dict::Owned(Arc::new(pairs)))
}

/// A borrowed JSON list view, used by tests.
pub fn is_json_list(v: &Value<'_>) -> bool {
    matches!(v, Value::List(List::Json(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env<'static> {
        Env {
            autoescape: false,
            now: None,
            max_size: 1 << 20,
            string_if_invalid: "",
        }
    }

    /// The float fast path must agree with the general Decimal path.
    #[test]
    fn floatformat_fast_path_matches_decimal_path() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mag = 10f64.powi((x % 12) as i32 - 3);
            let f = ((x >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * mag;
            let mut repr = String::new();
            crate::value::write_float_repr(f, &mut repr);
            for p in 1..=6 {
                let fast = floatformat(&Value::Float(f), Some(Value::Int(p)), &env())
                    .map(|v| v.to_py_str().into_owned());
                let slow =
                    floatformat(&Value::str_owned(repr.clone()), Some(Value::Int(p)), &env())
                        .map(|v| v.to_py_str().into_owned());
                assert_eq!(fast, slow, "{f} ({repr}) places {p}");
            }
        }
    }
}
