//! String helpers that reproduce Python/Django text behaviour (escaping,
//! `str.split()`, `str.title()`, URL quoting).

use std::fmt::Write;

/// Django's `escape`: the five HTML-significant characters.
pub fn escape_into(s: &str, out: &mut String) {
    let mut last = 0;
    for (i, b) in s.bytes().enumerate() {
        let rep = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#x27;",
            _ => continue,
        };
        out.push_str(&s[last..i]);
        out.push_str(rep);
        last = i + 1;
    }
    out.push_str(&s[last..]);
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    escape_into(s, &mut out);
    out
}

/// Python whitespace for `str.split()` / `str.strip()`.
pub fn is_space(c: char) -> bool {
    crate::lexer::is_py_space(c)
}

/// Python `str.split()` with no separator.
pub fn split_ws(s: &str) -> Vec<&str> {
    s.split(is_space).filter(|w| !w.is_empty()).collect()
}

fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\x0b'
            | '\x0c'
            | '\x1c'
            | '\x1d'
            | '\x1e'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// Python `str.splitlines()` (no line ends kept).
pub fn splitlines(s: &str) -> Vec<&str> {
    splitlines_keep(s)
        .into_iter()
        .map(|l| {
            if let Some(x) = l.strip_suffix("\r\n") {
                return x;
            }
            match l.char_indices().last() {
                Some((i, c)) if is_line_break(c) => &l[..i],
                _ => l,
            }
        })
        .collect()
}

/// Python `str.splitlines(keepends=True)`.
pub fn splitlines_keep(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        let is_break = matches!(
            c,
            '\n' | '\r'
                | '\x0b'
                | '\x0c'
                | '\x1c'
                | '\x1d'
                | '\x1e'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if is_break {
            let mut end = i + c.len_utf8();
            if c == '\r' {
                if let Some(&(j, '\n')) = it.peek() {
                    end = j + 1;
                    it.next();
                }
            }
            out.push(&s[start..end]);
            start = end;
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

fn is_cased(c: char) -> bool {
    c.is_lowercase() || c.is_uppercase()
}

/// Python `str.title()`.
pub fn py_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_cased = false;
    for c in s.chars() {
        if prev_cased {
            out.extend(c.to_lowercase());
        } else {
            // Titlecase: first char of the uppercase form, rest lowercased
            // (so "ß" becomes "Ss" as in Python).
            let mut up = c.to_uppercase();
            if let Some(first) = up.next() {
                out.push(first);
                for rest in up {
                    out.extend(rest.to_lowercase());
                }
            }
        }
        prev_cased = is_cased(c);
    }
    out
}

/// Python `str.capitalize()`-free `capfirst`: upper-case the first char.
pub fn capfirst(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => {
            let mut out: String = c.to_uppercase().collect();
            out.push_str(chars.as_str());
            out
        }
        None => String::new(),
    }
}

/// Python `urllib.parse.quote(s, safe)`.
pub fn url_quote(s: &str, safe: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let c = b as char;
        if b.is_ascii_alphanumeric()
            || matches!(c, '_' | '.' | '-' | '~')
            || (b < 128 && safe.contains(c))
        {
            out.push(c);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Python `urllib.parse.unquote` (optionally `unquote_plus`).
pub fn url_unquote(s: &str, plus: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if plus && b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Python `str.center(width)`.
pub fn center(s: &str, width: usize) -> String {
    let len = s.chars().count();
    if width <= len {
        return s.to_string();
    }
    let marg = width - len;
    let left = marg / 2 + (marg & width & 1);
    let mut out = " ".repeat(left);
    out.push_str(s);
    out.push_str(&" ".repeat(marg - left));
    out
}

/// Python JSON (`json.dumps` defaults): `", "`/`": "` separators,
/// `ensure_ascii`, floats as `repr`.
pub fn py_json(v: &crate::value::Value<'_>, out: &mut String) {
    use crate::value::Value;
    match v {
        Value::None => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => {
            if f.is_nan() {
                out.push_str("NaN");
            } else if f.is_infinite() {
                out.push_str(if *f > 0.0 { "Infinity" } else { "-Infinity" });
            } else {
                crate::value::write_float_repr(*f, out);
            }
        }
        Value::Str(s, _) => json_str_ascii(s, out),
        Value::List(l) => {
            out.push('[');
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_json(&x, out);
            }
            out.push(']');
        }
        Value::Dict(d) => {
            out.push('{');
            for (i, (k, x)) in d.entries().iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                json_str_ascii(k, out);
                out.push_str(": ");
                py_json(x, out);
            }
            out.push('}');
        }
        Value::Date(_) | Value::DateTime(_) => {
            let j = v.to_json();
            if let Some(s) = j.as_str() {
                json_str_ascii(s, out);
            }
        }
    }
}

fn json_str_ascii(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7f => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
