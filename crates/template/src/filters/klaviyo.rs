//! Klaviyo's custom filters (KLAVIYO.md §4) and Outflow's `json` filter.
//! Where Klaviyo documents an example it is a unit test; elsewhere the
//! behaviour follows the third-party reference and Liquid conventions.

use std::borrow::Cow;

use base64::Engine as _;
use chrono::{Datelike, Duration, NaiveDateTime, NaiveTime};
use md5::Digest as _;

use super::django::{into_str, key_cmp, py_float, resolve_path, sort_by_keys};
use super::{Env, Filter};
use crate::date::{parse_iso, When};
use crate::error::RenderError;
use crate::text;
use crate::value::Safe;
use crate::value::{Num, Value};

/// Numeric view used by Klaviyo's math filters: numbers, numeric strings.
fn num(v: &Value<'_>) -> Option<Num> {
    match v {
        Value::Str(s, _) => {
            if let Some(i) = crate::value::parse_py_int(s) {
                Some(Num::Int(i))
            } else {
                crate::value::parse_py_float(s).map(Num::Float)
            }
        }
        other => other.as_number(),
    }
}

fn fnum(v: &Value<'_>) -> Option<f64> {
    num(v).map(Num::as_f64)
}

fn arg_f(arg: &Option<Value<'_>>) -> Option<f64> {
    arg.as_ref().and_then(fnum)
}

fn arg_text<'a>(arg: &Option<Value<'a>>) -> Cow<'a, str> {
    match arg {
        Some(v) => into_str(v.clone()),
        None => Cow::Borrowed(""),
    }
}

fn digits_arg(arg: &Option<Value<'_>>) -> i32 {
    arg.as_ref()
        .and_then(num)
        .map_or(0, |n| n.as_f64().clamp(-15.0, 15.0) as i32)
}

/// `"a|b"` → ("a", "b"): Klaviyo's one-argument find/replace form.
fn split_pair(arg: &str) -> (&str, &str) {
    arg.split_once('|').unwrap_or((arg, ""))
}

fn round_to(x: f64, digits: i32, mode: fn(f64) -> f64) -> f64 {
    let m = 10f64.powi(digits);
    let r = mode(x * m) / m;
    if r.is_finite() {
        r
    } else {
        x
    }
}

/// Python's `round(x, n)` (half-even on the exact binary value).
fn py_round(x: f64, digits: i32) -> f64 {
    if !x.is_finite() {
        return x;
    }
    if digits >= 0 {
        format!("{x:.*}", digits as usize).parse().unwrap_or(x)
    } else {
        let m = 10f64.powi(-digits);
        let q = x / m;
        let r = q.round();
        let r = if (q - q.trunc()).abs() == 0.5 {
            2.0 * (q / 2.0).round()
        } else {
            r
        };
        r * m
    }
}

fn to_when(v: &Value<'_>) -> Option<When> {
    match v {
        Value::Date(d) => Some(When::Date(*d)),
        Value::DateTime(dt) => Some(When::DateTime(*dt)),
        Value::Str(s, _) => parse_iso(s),
        Value::Int(_) | Value::Float(_) => {
            let secs = fnum(v)?;
            chrono::DateTime::from_timestamp(secs.trunc() as i64, 0)
                .map(|d| When::DateTime(d.naive_utc()))
        }
        _ => None,
    }
}

fn when_value<'a>(w: When) -> Value<'a> {
    match w {
        When::Date(d) => Value::Date(d),
        When::DateTime(dt) => Value::DateTime(dt),
    }
}

fn as_datetime(w: When) -> NaiveDateTime {
    match w {
        When::Date(d) => d.and_time(NaiveTime::MIN),
        When::DateTime(dt) => dt,
    }
}

fn list_items<'a>(v: &Value<'a>) -> Vec<Value<'a>> {
    match v {
        Value::List(l) => l.to_vec(),
        Value::None => Vec::new(),
        other => vec![other.clone()],
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn apply<'a>(
    f: Filter,
    v: Value<'a>,
    arg: Option<Value<'a>>,
    env: &Env<'_>,
) -> Result<Value<'a>, RenderError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64url = base64::engine::general_purpose::URL_SAFE;
    Ok(match f {
        Filter::Lookup => lookup(&v, arg.as_ref()),
        Filter::Abs => match num(&v) {
            Some(Num::Int(i)) => Value::Int(i.saturating_abs()),
            Some(Num::Float(x)) => Value::Float(x.abs()),
            None => Value::empty_str(),
        },
        Filter::Ceil | Filter::Floor => match fnum(&v) {
            // Klaviyo returns the float's text (`{{ 5.01|ceil }}` ⇒ "6.0").
            Some(x) => {
                let r = if f == Filter::Ceil {
                    x.ceil()
                } else {
                    x.floor()
                };
                let mut s = String::new();
                crate::value::write_float_repr(r, &mut s);
                Value::str_owned(s)
            }
            None => Value::empty_str(),
        },
        Filter::Round => match fnum(&v) {
            Some(x) => Value::Float(py_round(x, digits_arg(&arg))),
            None => Value::empty_str(),
        },
        Filter::RoundUp | Filter::RoundDown => match fnum(&v) {
            Some(x) => {
                let mode: fn(f64) -> f64 = if f == Filter::RoundUp {
                    f64::ceil
                } else {
                    f64::floor
                };
                Value::Float(round_to(x, digits_arg(&arg), mode))
            }
            None => Value::empty_str(),
        },
        Filter::AtLeast | Filter::AtMost => {
            let (Some(a), Some(b)) = (num(&v), arg.as_ref().and_then(num)) else {
                return Ok(v);
            };
            let pick_arg = match f {
                Filter::AtLeast => b.cmp_num(a) == Some(std::cmp::Ordering::Greater),
                _ => b.cmp_num(a) == Some(std::cmp::Ordering::Less),
            };
            if pick_arg {
                b.to_value()
            } else {
                a.to_value()
            }
        }
        Filter::Multiply
        | Filter::Divide
        | Filter::Floatadd
        | Filter::Floatsub
        | Filter::Modulo => {
            let a = fnum(&v).unwrap_or(0.0);
            let b = arg_f(&arg).unwrap_or(0.0);
            let r = match f {
                Filter::Multiply => a * b,
                Filter::Divide => {
                    if b == 0.0 {
                        return Ok(Value::empty_str());
                    }
                    a / b
                }
                Filter::Floatadd => a + b,
                Filter::Floatsub => a - b,
                _ => {
                    if b == 0.0 {
                        return Ok(Value::empty_str());
                    }
                    // Python's float modulo takes the divisor's sign.
                    let m = a % b;
                    if m != 0.0 && (m < 0.0) != (b < 0.0) {
                        m + b
                    } else {
                        m
                    }
                }
            };
            Value::Float(r)
        }
        Filter::Percentize => match fnum(&v) {
            Some(x) => {
                let d = digits_arg(&arg).max(0) as usize;
                Value::str_owned(format!("{:.d$}%", x * 100.0))
            }
            None => Value::empty_str(),
        },
        Filter::SumList => {
            let mut int_sum: i64 = 0;
            let mut float_sum = 0.0;
            let mut is_float = false;
            for it in list_items(&v) {
                match num(&it) {
                    Some(Num::Int(i)) => {
                        int_sum = int_sum.wrapping_add(i);
                        float_sum += i as f64;
                    }
                    Some(Num::Float(x)) => {
                        is_float = true;
                        float_sum += x;
                    }
                    None => {}
                }
            }
            if is_float {
                Value::Float(float_sum)
            } else {
                Value::Int(int_sum)
            }
        }
        Filter::Gt | Filter::Gte | Filter::Lt | Filter::Lte => {
            let ord = match (num(&v), arg.as_ref().and_then(num)) {
                (Some(a), Some(b)) => a.cmp_num(b),
                _ => arg.as_ref().and_then(|b| v.py_cmp(b)),
            };
            let Some(o) = ord else {
                return Ok(Value::Bool(false));
            };
            Value::Bool(match f {
                Filter::Gt => o.is_gt(),
                Filter::Gte => o.is_ge(),
                Filter::Lt => o.is_lt(),
                _ => o.is_le(),
            })
        }
        Filter::Append | Filter::Prepend | Filter::Concat => {
            let a = into_str(v);
            let b = arg_text(&arg);
            env.check_size(a.len() + b.len())?;
            Value::str_owned(if f == Filter::Prepend {
                format!("{b}{a}")
            } else {
                format!("{a}{b}")
            })
        }
        Filter::TrimSlash => Value::str_owned(into_str(v).trim_end_matches('/').to_string()),
        Filter::Strip | Filter::Lstrip | Filter::Rstrip => {
            let s = into_str(v);
            let chars: Vec<char> = match &arg {
                Some(a) => into_str(a.clone()).chars().collect(),
                None => Vec::new(),
            };
            let pred = |c: char| {
                if chars.is_empty() {
                    text::is_space(c)
                } else {
                    chars.contains(&c)
                }
            };
            Value::str_owned(
                match f {
                    Filter::Strip => s.trim_matches(pred),
                    Filter::Lstrip => s.trim_start_matches(pred),
                    _ => s.trim_end_matches(pred),
                }
                .to_string(),
            )
        }
        Filter::StripNewlines => Value::str_owned(
            into_str(v)
                .chars()
                .filter(|c| *c != '\n' && *c != '\r')
                .collect(),
        ),
        Filter::FindReplace | Filter::ReplaceFirst | Filter::ReplaceLast => {
            let s = into_str(v);
            let a = arg_text(&arg);
            let (from, to) = split_pair(&a);
            if from.is_empty() {
                return Ok(Value::Str(s, Safe::No));
            }
            let out = match f {
                Filter::FindReplace => {
                    let n = s.matches(from).count();
                    env.check_size(s.len() + n.saturating_mul(to.len()))?;
                    s.replace(from, to)
                }
                Filter::ReplaceFirst => s.replacen(from, to, 1),
                _ => match s.rfind(from) {
                    Some(i) => format!("{}{}{}", &s[..i], to, &s[i + from.len()..]),
                    None => s.into_owned(),
                },
            };
            Value::str_owned(out)
        }
        Filter::Split => {
            let s = into_str(v);
            let sep = arg_text(&arg);
            let parts: Vec<Value<'a>> = if sep.is_empty() {
                text::split_ws(&s)
                    .into_iter()
                    .map(|p| Value::str_owned(p.to_string()))
                    .collect()
            } else {
                s.split(sep.as_ref())
                    .map(|p| Value::str_owned(p.to_string()))
                    .collect()
            };
            Value::list(parts)
        }
        Filter::Resplit => {
            // Regular expressions are out of scope; support the common
            // whitespace pattern and otherwise split on the literal text.
            let s = into_str(v);
            let pat = arg_text(&arg);
            let parts: Vec<Value<'a>> = if pat.is_empty() || pat == "\\s+" || pat == "\\s" {
                text::split_ws(&s)
                    .into_iter()
                    .map(|p| Value::str_owned(p.to_string()))
                    .collect()
            } else {
                s.split(pat.as_ref())
                    .map(|p| Value::str_owned(p.to_string()))
                    .collect()
            };
            Value::list(parts)
        }
        Filter::Remove | Filter::RemoveFirst | Filter::RemoveLast => {
            let s = into_str(v);
            let pat = arg_text(&arg);
            if pat.is_empty() {
                return Ok(Value::Str(s, Safe::No));
            }
            Value::str_owned(match f {
                Filter::Remove => s.replace(pat.as_ref(), ""),
                Filter::RemoveFirst => s.replacen(pat.as_ref(), "", 1),
                _ => match s.rfind(pat.as_ref()) {
                    Some(i) => format!("{}{}", &s[..i], &s[i + pat.len()..]),
                    None => s.into_owned(),
                },
            })
        }
        Filter::Truncate => {
            // Liquid-style: the "..." counts toward the length (default 50).
            let n = arg
                .as_ref()
                .and_then(num)
                .map_or(50, |n| n.as_f64().max(0.0) as usize);
            let s = into_str(v);
            if s.chars().count() <= n {
                Value::Str(s, Safe::No)
            } else {
                let keep = n.saturating_sub(3);
                let mut out: String = s.chars().take(keep).collect();
                out.push_str("...");
                Value::str_owned(out)
            }
        }
        Filter::EscapeOnce => Value::safe_owned(escape_once(&into_str(v))),
        Filter::Urldecode => Value::str_owned(text::url_unquote(&into_str(v), true)),
        Filter::Urlencodeplus => {
            let q = text::url_quote(&into_str(v), " ");
            Value::str_owned(q.replace(' ', "+"))
        }
        Filter::Httpize | Filter::Httpsize => {
            let s = into_str(v);
            let scheme = if f == Filter::Httpize {
                "http://"
            } else {
                "https://"
            };
            let rest = s
                .strip_prefix("https://")
                .or_else(|| s.strip_prefix("http://"))
                .unwrap_or(&s);
            Value::str_owned(format!("{scheme}{rest}"))
        }
        Filter::Compact => Value::list(
            list_items(&v)
                .into_iter()
                .filter(|x| !matches!(x, Value::None))
                .collect(),
        ),
        Filter::Uniq => {
            // Hash a canonical key (1, 1.0 and True are equal, as in Python)
            // so large lists stay linear.
            let mut seen = std::collections::HashSet::new();
            let mut out: Vec<Value<'a>> = Vec::new();
            for it in list_items(&v) {
                if seen.insert(uniq_key(&it)) {
                    out.push(it);
                }
            }
            Value::list(out)
        }
        Filter::Map => {
            let key = arg_text(&arg);
            Value::list(
                list_items(&v)
                    .iter()
                    .map(|it| resolve_path(it, &key).unwrap_or(Value::None))
                    .collect(),
            )
        }
        Filter::Sort | Filter::SortNatural => {
            let items = list_items(&v);
            let key = arg_text(&arg);
            let natural = f == Filter::SortNatural;
            let keys: Vec<Value<'a>> = items
                .iter()
                .map(|it| {
                    let k = if key.is_empty() {
                        it.clone()
                    } else {
                        resolve_path(it, &key).unwrap_or(Value::None)
                    };
                    match (natural, k) {
                        (true, Value::Str(s, _)) => Value::str_owned(s.to_lowercase()),
                        (_, k) => k,
                    }
                })
                .collect();
            match sort_by_keys(items.clone(), keys, false) {
                Some(sorted) => Value::list(sorted),
                None => {
                    // Mixed types: order by their text so the filter never fails.
                    let mut pairs: Vec<(String, Value<'a>)> = items
                        .into_iter()
                        .map(|x| (x.to_py_str().into_owned(), x))
                        .collect();
                    pairs.sort_by(|a, b| a.0.cmp(&b.0));
                    Value::list(pairs.into_iter().map(|p| p.1).collect())
                }
            }
        }
        Filter::Reverse => match &v {
            Value::Str(s, _) => Value::str_owned(s.chars().rev().collect()),
            _ => {
                let mut items = list_items(&v);
                items.reverse();
                Value::list(items)
            }
        },
        Filter::ListToString => {
            let sep = match &arg {
                Some(a) => into_str(a.clone()),
                None => Cow::Borrowed(", "),
            };
            let parts: Vec<String> = list_items(&v)
                .iter()
                .map(|x| x.to_py_str().into_owned())
                .collect();
            Value::str_owned(parts.join(&sep))
        }
        Filter::ListWhere | Filter::Dictfilter => {
            let cond = arg_text(&arg);
            Value::list(list_where(&list_items(&v), &cond))
        }
        Filter::Size => Value::Int(v.py_len().unwrap_or(0) as i64),
        Filter::Md5Hash => Value::str_owned(hex(&md5::Md5::digest(into_str(v).as_bytes()))),
        Filter::Sha1 => Value::str_owned(hex(&sha1::Sha1::digest(into_str(v).as_bytes()))),
        Filter::Sha256 => Value::str_owned(hex(&sha2::Sha256::digest(into_str(v).as_bytes()))),
        Filter::Base64Encode => Value::str_owned(b64.encode(into_str(v).as_bytes())),
        Filter::Base64UrlSafeEncode => Value::str_owned(b64url.encode(into_str(v).as_bytes())),
        Filter::Base64Decode | Filter::Base64UrlSafeDecode => {
            let s = into_str(v);
            let t = s.trim();
            let decoded = if f == Filter::Base64Decode {
                b64.decode(t)
            } else {
                b64url.decode(t)
            };
            match decoded {
                Ok(bytes) => Value::str_owned(String::from_utf8_lossy(&bytes).into_owned()),
                Err(_) => Value::empty_str(),
            }
        }
        Filter::FormatDateString | Filter::DatetimeFromString => match &v {
            Value::Str(s, _) => {
                let parsed = match &arg {
                    Some(fmt) if f == Filter::DatetimeFromString => {
                        let fmt = fmt.to_py_str();
                        NaiveDateTime::parse_from_str(s, &fmt)
                            .ok()
                            .map(When::DateTime)
                            .or_else(|| {
                                chrono::NaiveDate::parse_from_str(s, &fmt)
                                    .ok()
                                    .map(When::Date)
                            })
                    }
                    _ => parse_iso(s),
                };
                match parsed {
                    // format_date_string always yields a datetime so `date` can
                    // use time specifiers.
                    Some(w) if f == Filter::FormatDateString => Value::DateTime(as_datetime(w)),
                    Some(w) => when_value(w),
                    None => Value::empty_str(),
                }
            }
            Value::Date(_) | Value::DateTime(_) => v,
            _ => Value::empty_str(),
        },
        Filter::DaysLater => {
            let days = arg.as_ref().and_then(num).map_or(0.0, Num::as_f64);
            let days = days.clamp(-3_000_000.0, 3_000_000.0);
            match to_when(&v) {
                Some(w) => {
                    let delta = Duration::seconds((days * 86400.0) as i64);
                    match w {
                        When::Date(d) if days.fract() == 0.0 => d
                            .checked_add_signed(delta)
                            .map_or_else(Value::empty_str, Value::Date),
                        other => as_datetime(other)
                            .checked_add_signed(delta)
                            .map_or_else(Value::empty_str, Value::DateTime),
                    }
                }
                None => Value::empty_str(),
            }
        }
        Filter::WeeksSince => match to_when(&v) {
            Some(w) => {
                let now = env.now.ok_or(RenderError::NoClock)?;
                let days = (now.date() - as_datetime(w).date()).num_days();
                Value::Int(days.div_euclid(7))
            }
            None => Value::empty_str(),
        },
        Filter::MissingImage => {
            if v.truthy() {
                v
            } else {
                match arg {
                    Some(a) => a,
                    None => Value::str_owned(
                        "https://www.klaviyo.com/media/images/examples/products/product-image-placeholder.png".into(),
                    ),
                }
            }
        }
        Filter::Json => {
            let j = v.to_json();
            Value::safe_owned(serde_json::to_string(&j).unwrap_or_else(|_| "null".into()))
        }
        _ => {
            return Err(RenderError::TypeError(format!(
                "filter {f:?} is not implemented"
            )))
        }
    })
}

/// Equality key for `uniq`: equal keys iff Python `==` (for scalars).
fn uniq_key(v: &Value<'_>) -> String {
    match v.as_number() {
        Some(Num::Int(i)) => format!("n{i}"),
        Some(Num::Float(f)) if f.fract() == 0.0 && f.abs() < 9e15 => format!("n{}", f as i64),
        Some(Num::Float(f)) => format!("f{}", f.to_bits()),
        None => {
            let mut s = String::from(match v {
                Value::Str(..) => "s",
                _ => "r",
            });
            match v {
                Value::Str(t, _) => s.push_str(t),
                other => other.write_repr(&mut s),
            }
            s
        }
    }
}

/// Klaviyo's `lookup`: dict key (any text, spaces and `$` included), or a
/// list index; anything else is blank.
pub fn lookup<'a>(v: &Value<'a>, key: Option<&Value<'a>>) -> Value<'a> {
    let Some(key) = key else {
        return Value::empty_str();
    };
    let k = key.to_py_str();
    let found = match v {
        Value::Dict(d) => d.get(&k),
        Value::List(l) => match key {
            Value::Int(i) => usize::try_from(*i).ok().and_then(|i| l.get(i)),
            _ => k.trim().parse::<usize>().ok().and_then(|i| l.get(i)),
        },
        _ => None,
    };
    found.unwrap_or_else(Value::empty_str)
}

/// `list_where:"key=value"` (also `!=`, `>`, `<`, `>=`, `<=`).
fn list_where<'a>(items: &[Value<'a>], cond: &str) -> Vec<Value<'a>> {
    let ops = [">=", "<=", "!=", "==", "=", ">", "<"];
    let Some((op, (key, want))) = ops
        .iter()
        .find_map(|op| cond.split_once(op).map(|kv| (*op, kv)))
    else {
        return items
            .iter()
            .filter(|it| resolve_path(it, cond.trim()).is_some_and(|v| v.truthy()))
            .cloned()
            .collect();
    };
    let key = key.trim();
    let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
    let want_v: Value<'_> = match crate::value::parse_py_float(want) {
        Some(_) => num(&Value::str_owned(want.to_string())).map_or(Value::None, Num::to_value),
        None => Value::str_owned(want.to_string()),
    };
    items
        .iter()
        .filter(|it| {
            let Some(got) = resolve_path(it, key) else {
                return false;
            };
            let ord = match (num(&got), num(&want_v)) {
                (Some(a), Some(b)) => a.cmp_num(b),
                _ => Some(got.to_py_str().as_ref().cmp(want)),
            };
            let eq = ord == Some(std::cmp::Ordering::Equal);
            match op {
                "=" | "==" => eq,
                "!=" => !eq,
                ">" => ord.is_some_and(|o| o.is_gt()),
                "<" => ord.is_some_and(|o| o.is_lt()),
                ">=" => ord.is_some_and(|o| o.is_ge()),
                _ => ord.is_some_and(|o| o.is_le()),
            }
        })
        .cloned()
        .collect()
}

/// Escape HTML but leave existing entities (`&amp;`, `&#39;`, `&#x27;`) alone.
fn escape_once(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    for (i, c) in s.char_indices() {
        match c {
            '&' => {
                let rest = &b[i + 1..];
                let end = rest.iter().take(32).position(|&x| x == b';');
                let is_entity = end.is_some_and(|e| {
                    e > 0 && {
                        let name = &rest[..e];
                        name.iter().all(|x| x.is_ascii_alphanumeric())
                            || (name[0] == b'#'
                                && name.len() > 1
                                && (name[1..].iter().all(u8::is_ascii_digit)
                                    || ((name[1] == b'x' || name[1] == b'X')
                                        && name.len() > 2
                                        && name[2..].iter().all(u8::is_ascii_hexdigit))))
                    }
                });
                out.push_str(if is_entity { "&" } else { "&amp;" });
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// Unused-import guard for helpers shared with tests.
pub fn year_of(v: &Value<'_>) -> Option<i32> {
    to_when(v).map(|w| as_datetime(w).year())
}

/// Compare helper re-exported for list filters.
pub fn compare(a: &Value<'_>, b: &Value<'_>) -> std::cmp::Ordering {
    key_cmp(a, b)
}

/// `float()` for Klaviyo math, exposed for tests.
pub fn as_float(v: &Value<'_>) -> Option<f64> {
    py_float(v).ok().or_else(|| fnum(v))
}
