//! Property test over arbitrary template strings (built from Django syntax
//! fragments and random text) and contexts: never a panic, always within
//! limits. CI runs a few hundred cases; the long run raises the count:
//!
//!   PROPTEST_CASES=2000000 cargo test --release -p outflow-template --test fuzz

use outflow_template::fuzzing::check_one;
use proptest::prelude::*;

const FRAGMENTS: &[&str] = &[
    "{{ ",
    " }}",
    "{% ",
    " %}",
    "{# ",
    " #}",
    "|",
    ":",
    ".",
    "'",
    "\"",
    "\n",
    " ",
    "if ",
    "elif ",
    "else",
    "endif",
    "for ",
    " in ",
    "empty",
    "endfor",
    " reversed",
    "with ",
    "endwith",
    " as ",
    " and ",
    " or ",
    "not ",
    " is ",
    "None",
    " == ",
    " != ",
    " < ",
    " >= ",
    "forloop.counter",
    "forloop.parentloop.last",
    "comment",
    "endcomment",
    "cycle ",
    " silent",
    "resetcycle",
    "firstof ",
    "verbatim",
    "endverbatim",
    "spaceless",
    "endspaceless",
    "autoescape off",
    "autoescape on",
    "endautoescape",
    "filter upper",
    "endfilter",
    "templatetag openblock",
    "widthratio n 7 100",
    "ifchanged",
    "endifchanged",
    "regroup items by sku as g",
    "now 'Y-m-d'",
    "today \"%Y\" as y",
    "default:'x'",
    "floatformat:2",
    "floatformat:'-3g'",
    "join:', '",
    "slice:'1:-1'",
    "date:'c'",
    "lookup:'Favorite Color'",
    "add:n",
    "stringformat:'05.2f'",
    "truncatechars:5",
    "center:9",
    "wordwrap:3",
    "dictsort:'sku'",
    "find_replace:'a|b'",
    "split:','",
    "sort:'qty'",
    "map:'sku'",
    "list_where:'sku=A'",
    "days_later:2",
    "json",
    "escapejs",
    "safe",
    "escape",
    "length",
    "upper",
    "title",
    "md5_hash",
    "base64_decode",
    "json_script:'i'",
    "pluralize:'y,ies'",
    "yesno:'a,b'",
    "user.name",
    "user",
    "items",
    "tags.0",
    "n",
    "f",
    "s",
    "d.1",
    "big",
    "when",
    "day",
    "ts",
    "x",
    "1",
    "-2",
    "2.5",
    "1e5",
    "_p",
    "'str'",
    "\"s t\"",
];

fn template() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => proptest::sample::select(FRAGMENTS).prop_map(str::to_string),
        1 => "\\PC{0,6}",
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

fn context() -> impl Strategy<Value = Option<String>> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        "\\PC{0,8}".prop_map(|s| serde_json::Value::String(s).to_string()),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec(("[a-z]{1,3}", inner), 0..4).prop_map(|kv| {
                let body: Vec<String> = kv
                    .into_iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    });
    proptest::option::of(
        proptest::collection::vec(("(n|s|x|items|user|tags|d)", value), 0..5).prop_map(|kv| {
            let body: Vec<String> = kv
                .into_iter()
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect();
            format!("{{{}}}", body.join(","))
        }),
    )
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_templates_never_panic(src in template(), ctx in context()) {
        let mut bytes = src.into_bytes();
        if let Some(c) = ctx {
            bytes.push(0xFF);
            bytes.extend_from_slice(c.as_bytes());
        }
        check_one(&bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        check_one(&bytes);
    }
}
