//! The body shared by the libFuzzer target (`fuzz/`) and the proptest
//! (`tests/fuzz.rs`): arbitrary bytes must compile or fail with a positioned
//! error, and rendering must finish within the configured limits.

use chrono::NaiveDate;
use serde_json::{json, Value as Json};

use crate::{Context, Limits, Options, Template, Value};

/// Limits small enough that every fuzz execution is fast.
pub fn fuzz_options(autoescape: bool, sii: bool) -> Options {
    Options {
        autoescape,
        string_if_invalid: if sii {
            "INVALID(%s)".into()
        } else {
            String::new()
        },
        limits: Limits {
            max_output_bytes: 1 << 16,
            max_steps: 100_000,
            max_depth: 32,
        },
    }
}

/// A context exercising every value kind.
pub fn default_context() -> Json {
    json!({
        "user": {"name": "Ada <Lovelace>", "email": "ada@example.com", "tags": ["vip", "beta"],
                 "Favorite Color": "teal", "$id": 7, "age": 36, "score": 12.5, "none": null},
        "items": [{"sku": "A", "qty": 2, "price": 19.99, "cats": ["x", "y"]},
                  {"sku": "B", "qty": 0, "price": 0.1, "cats": []},
                  {"sku": "A", "qty": 1, "price": -3.5, "cats": ["z"]}],
        "tags": ["a", "b", "c"], "n": 42, "f": 2.675, "big": 1e300, "t": true, "z": null,
        "s": "Hello, World & \"friends\"\n line2", "e": "", "d": {"k": "v", "1": "one"},
        "ts": "2024-03-05T14:07:09Z", "nested": [[1, 2], [3, [4, [5]]]]
    })
}

/// Run one input. Panics only on an engine bug (which is what fuzzing finds).
pub fn check_one(data: &[u8]) {
    let (tpl, ctx_bytes) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let src = String::from_utf8_lossy(tpl);
    let json: Json = ctx_bytes
        .and_then(|b| serde_json::from_slice(b).ok())
        .filter(Json::is_object)
        .unwrap_or_else(default_context);
    let options = fuzz_options(src.len().is_multiple_of(2), src.len().is_multiple_of(3));
    let template = match Template::compile(&src, &options) {
        Ok(t) => t,
        Err(e) => {
            assert!(e.line >= 1 && e.column >= 1, "bad error position: {e:?}");
            return;
        }
    };
    let now = NaiveDate::from_ymd_opt(2024, 3, 5).and_then(|d| d.and_hms_opt(14, 7, 9));
    let mut ctx = Context::from_json(&json);
    if let Some(n) = now {
        ctx.set_now(n);
        ctx.insert("when", Value::DateTime(n));
        ctx.insert("day", Value::Date(n.date()));
    }
    if let Ok(out) = template.render(&ctx) {
        assert!(
            out.len() <= options.limits.max_output_bytes,
            "output {} exceeds limit",
            out.len()
        );
    }
}
