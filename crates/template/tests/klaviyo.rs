//! Klaviyo's filters and tags (KLAVIYO.md §4): every documented example is a
//! case here, plus one or more checks for each filter and alias, Outflow's
//! `json` filter, the caller-supplied clock and the render limits.

use chrono::NaiveDate;
use outflow_template::{Context, Limits, Options, RenderError, Template, Value};
use serde_json::json;

fn opts() -> Options {
    Options {
        autoescape: false,
        ..Options::default()
    }
}

fn now() -> chrono::NaiveDateTime {
    NaiveDate::from_ymd_opt(2024, 3, 5)
        .and_then(|d| d.and_hms_opt(14, 7, 9))
        .expect("valid date")
}

/// Render with autoescape off against `data`, with "now" = 2024-03-05 14:07:09.
fn r(src: &str, data: serde_json::Value) -> String {
    let t = Template::compile(src, &opts()).unwrap_or_else(|e| panic!("{src}: {e}"));
    let ctx = Context::from_json(&data).with_now(now());
    t.render(&ctx).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn r0(src: &str) -> String {
    r(src, json!({}))
}

// ----- documented examples (KLAVIYO.md §4) -----

#[test]
fn documented_examples() {
    assert_eq!(r0("{{ -1.2|abs }}"), "1.2");
    assert_eq!(r0(r#"{{ "hello"|append:" world" }}"#), "hello world");
    assert_eq!(r0("{{ 1|at_least:5.0 }}"), "5.0");
    assert_eq!(r0("{{ 1|at_most:-1.0 }}"), "-1.0");
    assert_eq!(r0("{{ 5.01|ceil }}"), "6.0");
    assert_eq!(r0(r#"{{"10"|multiply:"2"}}"#), "20.0");
    assert_eq!(r0(r#"{{"abc"|multiply:"2"}}"#), "0.0");
    assert_eq!(r0("{{ .25|percentize:2 }}"), "25.00%");
    assert_eq!(r0(r#"{{"Hi, there,"|find_replace:",|-"}}"#), "Hi- there-");
    assert_eq!(
        r(
            "{{ v|format_date_string|date:'F d, o' }}",
            json!({"v": "2016-02-11T10:00:00"})
        ),
        "February 11, 2016"
    );
    assert_eq!(
        r(
            "{{ organization.url|trim_slash }}/cart",
            json!({"organization": {"url": "https://shop.example/"}})
        ),
        "https://shop.example/cart"
    );
    assert_eq!(
        r("{{ l|compact }}", json!({"l": [1, null, "a", null]})),
        "[1, 'a']"
    );
    assert_eq!(
        r("{{ s|capitalize }}", json!({"s": "hello world"})),
        "Hello world"
    );
}

#[test]
fn lookup_keys_with_spaces_dollar_and_chains() {
    let data = json!({
        "person": {"Favorite Color": "teal", "$timezone": "Europe/London"},
        "event": {"$value": 42.5, "Item Count": 3, "Collection Names": ["Summer", "Sale"],
                  "extra": {"line_items": [{"title": "Mug"}]}, "order_url": ""}
    });
    assert_eq!(
        r("{{ person|lookup:'Favorite Color' }}", data.clone()),
        "teal"
    );
    assert_eq!(
        r("{{ person|lookup:'$timezone' }}", data.clone()),
        "Europe/London"
    );
    assert_eq!(r("{{ event|lookup:'$value' }}", data.clone()), "42.5");
    assert_eq!(r("{{ event|lookup:'Item Count' }}", data.clone()), "3");
    assert_eq!(
        r(
            "{{ event|lookup:'Collection Names'|lookup:'0' }}",
            data.clone()
        ),
        "Summer"
    );
    assert_eq!(
        r("{{ event.extra.line_items.0.title }}", data.clone()),
        "Mug"
    );
    assert_eq!(
        r(
            "{{ event|lookup:'order_url'|default:'https://x.example' }}",
            data.clone()
        ),
        "https://x.example"
    );
    assert_eq!(r("[{{ event|lookup:'nope' }}]", data.clone()), "[]");
    // Event variables render blank when there is no event.
    assert_eq!(
        r0("[{{ event.Prop }}][{{ event|lookup:'$value' }}]"),
        "[][]"
    );
}

#[test]
fn space_after_colon_is_a_compile_error() {
    let err = Template::compile("{{ x | lookup: 'y' }}", &opts()).expect_err("must not compile");
    assert_eq!((err.line, err.column), (1, 1));
    // Spaces around the pipe are fine.
    assert_eq!(r("{{ x | lookup:'y' }}", json!({"x": {"y": 1}})), "1");
}

// ----- numbers -----

#[test]
fn number_filters() {
    assert_eq!(r0("{{ -3|abs }}"), "3");
    assert_eq!(r0("{{ 5.99|floor }}"), "5.0");
    assert_eq!(
        r0("{{ 4.56|round }}|{{ 4.56|round:1 }}|{{ 2.5|round }}"),
        "5.0|4.6|2.0"
    );
    assert_eq!(
        r0("{{ 4.123|round_up:2 }}|{{ 4.129|round_down:2 }}|{{ 4.1|round_up }}"),
        "4.13|4.12|5.0"
    );
    assert_eq!(r0("{{ 10|at_least:5 }}|{{ 10|at_most:5 }}"), "10|5");
    assert_eq!(r0(r#"{{ "10"|divide:"4" }}|[{{ 1|divide:0 }}]"#), "2.5|[]");
    assert_eq!(r0("{{ 1|floatadd:2.5 }}|{{ 1|plus:2 }}"), "3.5|3.0");
    assert_eq!(r0("{{ 5|floatsub:1.5 }}|{{ 5|minus:2 }}"), "3.5|3.0");
    assert_eq!(r0("{{ 7|modulo:3 }}|{{ -7|remainder:3 }}"), "1.0|2.0");
    assert_eq!(r0("{{ 0.5|percentize }}"), "50%");
    assert_eq!(
        r(
            "{{ l|sum_list }}|{{ f|sum_list }}",
            json!({"l": [1, 2, "3"], "f": [0.5, 1]})
        ),
        "6|1.5"
    );
    assert_eq!(
        r0("{{ 3|gt:2 }}{{ 3|gte:3 }}{{ 3|lt:2 }}{{ 3|lte:3 }}{{ '10'|gt:9 }}"),
        "TrueTrueFalseTrueTrue"
    );
    assert_eq!(r0("{% if 3|gt:2 %}yes{% endif %}"), "yes");
}

// ----- strings -----

#[test]
fn string_filters() {
    assert_eq!(r0(r#"{{ "world"|prepend:"hello " }}"#), "hello world");
    assert_eq!(r0(r#"{{ "a"|concat:"b" }}"#), "ab");
    assert_eq!(
        r0(r#"{{ "MiXed"|downcase }}|{{ "MiXed"|upcase }}"#),
        "mixed|MIXED"
    );
    assert_eq!(
        r0(r#"[{{ "  x  "|strip }}][{{ "  x  "|lstrip }}][{{ "  x  "|rstrip }}]"#),
        "[x][x  ][  x]"
    );
    assert_eq!(r0(r#"{{ "xxhixx"|strip:"x" }}"#), "hi");
    assert_eq!(
        r("{{ s|strip_newlines }}", json!({"s": "a\nb\r\nc"})),
        "abc"
    );
    assert_eq!(
        r0(r#"{{ "a-b-a"|replace_first:"a|X" }}|{{ "a-b-a"|replace_last:"a|X" }}"#),
        "X-b-a|a-b-X"
    );
    assert_eq!(r0(r#"{{ "a,b,c"|split:","|join:"+" }}"#), "a+b+c");
    assert_eq!(r0(r#"{{ "a  b c"|split|length }}"#), "3");
    assert_eq!(r0(r#"{{ "a  b c"|resplit:'\s+'|join:"|" }}"#), "a|b|c");
    assert_eq!(
        r0(
            r#"{{ "banana"|remove:"a" }}|{{ "banana"|remove_first:"a" }}|{{ "banana"|remove_last:"a" }}"#
        ),
        "bnn|bnana|banan"
    );
    assert_eq!(
        r0(r#"{{ "Ground control to Major Tom."|truncate:20 }}"#),
        "Ground control to..."
    );
    assert_eq!(
        r0(r#"{{ "short"|truncate:5 }}|{{ "hello world"|truncate }}"#),
        "short|hello world"
    );
    assert_eq!(
        r0(r#"{{ "Hello wonderful world"|truncatechars:10 }}"#),
        "Hello won…"
    );
    assert_eq!(
        r0(r#"{{ "a &amp; b < c"|escape_once }}"#),
        "a &amp; b &lt; c"
    );
    assert_eq!(r0(r#"{{ "a%20b+c%2Fd"|urldecode }}"#), "a b c/d");
    assert_eq!(
        r0(r#"{{ "a b&c"|urlencode }}|{{ "a b&c"|urlencodeplus }}"#),
        "a%20b%26c|a+b%26c"
    );
    assert_eq!(r0(r#"{{ "<b>hi</b>"|strip_html }}"#), "hi");
    assert_eq!(r("{{ s|newline_to_br }}", json!({"s": "a\nb"})), "a<br>b");
    assert_eq!(
        r0(r#"{{ "example.com"|httpize }}|{{ "http://example.com"|httpsize }}"#),
        "http://example.com|https://example.com"
    );
    assert_eq!(r0(r#"{{ "o'neil x"|title }}"#), "O'Neil X");
    assert_eq!(
        r0(r#"{{ 5|stringformat:"03d" }}|{{ 1|yesno:"on,off" }}|{{ 2|pluralize }}"#),
        "005|on|s"
    );
}

// ----- lists -----

#[test]
fn list_filters() {
    let data = json!({
        "l": [3, 1, 2, 3, 1],
        "names": ["bob", "Alice", "carol"],
        "items": [{"name": "a", "price": 3}, {"name": "b", "price": 1}, {"name": "a", "price": 2}]
    });
    assert_eq!(r("{{ l|uniq }}", data.clone()), "[3, 1, 2]");
    assert_eq!(r("{{ l|sort }}", data.clone()), "[1, 1, 2, 3, 3]");
    assert_eq!(
        r("{{ names|sort }}|{{ names|sort_natural }}", data.clone()),
        "['Alice', 'bob', 'carol']|['Alice', 'bob', 'carol']"
    );
    assert_eq!(
        r(
            "{{ names|sort_natural|first }}",
            json!({"names": ["b", "C", "a"]})
        ),
        "a"
    );
    assert_eq!(
        r("{{ items|sort:'price'|map:'price' }}", data.clone()),
        "[1, 2, 3]"
    );
    assert_eq!(r("{{ items|map:'name' }}", data.clone()), "['a', 'b', 'a']");
    assert_eq!(
        r("{{ l|reverse }}|{{ 'abc'|reverse }}", data.clone()),
        "[1, 3, 2, 1, 3]|cba"
    );
    assert_eq!(
        r("{{ names|list_to_string }}", data.clone()),
        "bob, Alice, carol"
    );
    assert_eq!(
        r("{{ items|list_where:'name=a'|length }}", data.clone()),
        "2"
    );
    assert_eq!(
        r("{{ items|dictfilter:'price>1'|map:'price' }}", data.clone()),
        "[3, 2]"
    );
    assert_eq!(
        r(
            "{{ l|size }}|{{ l|count }}|{{ l|length }}|{{ 'abc'|size }}",
            data.clone()
        ),
        "5|5|5|3"
    );
    assert_eq!(
        r("{{ names|join:' & ' }}|{{ l|slice:':2' }}", data.clone()),
        "bob & Alice & carol|[3, 1]"
    );
    assert_eq!(r("{% for x in l|uniq %}{{ x }}{% endfor %}", data), "312");
}

// ----- hashes and encodings -----

#[test]
fn hashes_and_encodings() {
    assert_eq!(
        r0("{{ 'hello'|md5_hash }}"),
        "5d41402abc4b2a76b9719d911017c592"
    );
    assert_eq!(
        r0("{{ 'hello'|sha_1 }}"),
        "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"
    );
    assert_eq!(
        r0("{{ 'hello'|sha_256 }}"),
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    assert_eq!(
        r0("{{ 'hello'|base64_encode }}|{{ 'aGVsbG8='|base64_decode }}"),
        "aGVsbG8=|hello"
    );
    // "??>" and "???" hit the two characters the URL-safe alphabet replaces.
    assert_eq!(
        r0("{{ '??>'|base64_encode }}|{{ '???'|base64_encode }}"),
        "Pz8+|Pz8/"
    );
    assert_eq!(
        r0("{{ '??>'|base64_url_safe_encode }}|{{ '???'|base64_url_safe_encode }}"),
        "Pz8-|Pz8_"
    );
    assert_eq!(
        r0("{{ 'Pz8-'|base64_url_safe_decode }}|{{ 'Pz8_'|base64_url_safe_decode }}"),
        "??>|???"
    );
    assert_eq!(r0("[{{ '%%%'|base64_decode }}]"), "[]");
}

// ----- dates and the clock -----

#[test]
fn date_filters_use_the_context_clock() {
    let data = json!({"d": "2024-02-20T08:00:00Z", "day": "2024-03-01"});
    assert_eq!(
        r("{{ d|format_date_string|date:'Y-m-d H:i' }}", data.clone()),
        "2024-02-20 08:00"
    );
    assert_eq!(
        r("{{ d|datetime_from_string|date:'N j' }}", data.clone()),
        "Feb. 20"
    );
    assert_eq!(
        r(
            "{{ '05/03/2024'|datetime_from_string:'%d/%m/%Y'|date:'Y-m-d' }}",
            data.clone()
        ),
        "2024-03-05"
    );
    assert_eq!(
        r("{{ day|days_later:5|date:'Y-m-d' }}", data.clone()),
        "2024-03-06"
    );
    assert_eq!(
        r("{{ d|days_later:-1|date:'Y-m-d' }}", data.clone()),
        "2024-02-19"
    );
    assert_eq!(r("{{ d|weeks_since }}", data.clone()), "2");
    assert_eq!(
        r0(r#"{% today "%Y-%m-%d" as today %}{{ today }}"#),
        "2024-03-05"
    );
    assert_eq!(
        r0(r#"{% today "%d/%m/%Y %H:%M" as t %}{{ t }}"#),
        "05/03/2024 14:07"
    );
    assert!(
        Template::compile(r#"{% today "%Y" %}"#, &opts()).is_err(),
        "Klaviyo requires 'as'"
    );
    assert_eq!(
        r0(r#"{% now "Y-m-d H:i" %}|{% current_year %}"#),
        "2024-03-05 14:07|2024"
    );
    assert_eq!(r("[{{ 'junk'|format_date_string }}]", data), "[]");
}

#[test]
fn no_clock_means_an_error_not_the_system_time() {
    let t = Template::compile("{% now 'Y' %}", &opts()).expect("compiles");
    assert_eq!(t.render(&Context::new()), Err(RenderError::NoClock));
}

#[test]
fn typed_date_values_in_context() {
    let t = Template::compile("{{ d|date:'D d M' }}|{{ d }}", &opts()).expect("compiles");
    let mut ctx = Context::new();
    ctx.insert("d", Value::DateTime(now()));
    assert_eq!(
        t.render(&ctx).expect("renders"),
        "Tue 05 Mar|March 5, 2024, 2:07 p.m."
    );
}

#[test]
fn missing_image_aliases() {
    assert_eq!(
        r0("{{ ''|missing_image:'x.png' }}|{{ 'a.png'|missing_product_image }}"),
        "x.png|a.png"
    );
}

// ----- Outflow's json filter -----

#[test]
fn json_filter_prints_valid_json() {
    let data =
        json!({"s": "say \"hi\"\n<&>", "n": 1.5, "l": [1, null, true], "d": {"a": "b"}, "z": null});
    let out = r(
        "{{ s|json }}|{{ n|json }}|{{ l|json }}|{{ d|json }}|{{ z|json }}|{{ missing|json }}",
        data,
    );
    assert_eq!(
        out,
        r#""say \"hi\"\n<&>"|1.5|[1,null,true]|{"a":"b"}|null|"""#
    );
    // Safe output: autoescape does not mangle it.
    let t = Template::compile(r#"{"name": {{ s|json }}}"#, &Options::default()).expect("compiles");
    let data = json!({"s": "Tom & \"Jerry\""});
    let body = t.render(&Context::from_json(&data)).expect("renders");
    let parsed: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
    assert_eq!(parsed["name"], "Tom & \"Jerry\"");
}

// ----- limits -----

fn limited(max_output_bytes: usize, max_steps: u64, max_depth: usize) -> Options {
    Options {
        autoescape: false,
        string_if_invalid: String::new(),
        limits: Limits {
            max_output_bytes,
            max_steps,
            max_depth,
        },
    }
}

#[test]
fn output_limit_is_an_error() {
    let t = Template::compile(
        "{% for a in l %}{% for b in l %}xxxxxxxxxx{% endfor %}{% endfor %}",
        &limited(1000, 1_000_000, 64),
    )
    .expect("compiles");
    let data = json!({"l": (0..100).collect::<Vec<_>>()});
    assert!(matches!(
        t.render(&Context::from_json(&data)),
        Err(RenderError::OutputTooLarge(1000))
    ));
    // A single filter cannot build a huge value either.
    let t = Template::compile("{{ 'x'|ljust:100000000 }}", &limited(1000, 1_000_000, 64))
        .expect("compiles");
    assert!(matches!(
        t.render(&Context::new()),
        Err(RenderError::OutputTooLarge(_))
    ));
}

#[test]
fn step_limit_stops_nested_loops() {
    let src =
        "{% for a in l %}{% for b in l %}{% for c in l %}{% endfor %}{% endfor %}{% endfor %}";
    let t = Template::compile(src, &limited(1 << 20, 10_000, 64)).expect("compiles");
    let data = json!({"l": (0..100).collect::<Vec<_>>()});
    assert!(matches!(
        t.render(&Context::from_json(&data)),
        Err(RenderError::TooManySteps(10_000))
    ));
}

#[test]
fn nesting_limits_are_compile_errors() {
    let deep = "{% if x %}".repeat(100) + &"{% endif %}".repeat(100);
    let err = Template::compile(&deep, &limited(1 << 20, 1000, 64)).expect_err("too deep");
    assert!(err.message.contains("nesting"), "{err}");
    let deep_expr = format!("{{% if {}x %}}y{{% endif %}}", "not ".repeat(10_000));
    assert!(Template::compile(&deep_expr, &opts()).is_err());
}

#[test]
fn compile_errors_have_positions() {
    let err = Template::compile("line one\n  {{ x|nosuch }}", &opts()).expect_err("unknown filter");
    assert_eq!((err.line, err.column), (2, 3));
    let err = Template::compile("a\nb {% if x %}", &opts()).expect_err("unclosed");
    assert_eq!((err.line, err.column), (2, 3));
}

#[test]
fn pathological_inputs_stay_fast() {
    let start = std::time::Instant::now();
    // A long line of unclosed openers: tokenizing must stay linear.
    let src = "{{ {% {# ".repeat(200_000);
    let t = Template::compile(&src, &opts()).expect("plain text");
    assert_eq!(t.render(&Context::new()).expect("renders").len(), src.len());
    // uniq over a large list.
    let data = json!({"l": (0..200_000).map(|i| i % 1000).collect::<Vec<_>>()});
    assert_eq!(r("{{ l|uniq|length }}", data), "1000");
    assert!(start.elapsed().as_secs() < 20, "took {:?}", start.elapsed());
}
