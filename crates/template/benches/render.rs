//! Renders/s of the shared webhook-body benchmark (bench_template.txt with
//! bench_context.json), after checking the output is byte-identical to
//! Django's bench_expected.txt. Single thread, template compiled once.
//!
//!   cargo bench -p outflow-template --bench render            # 5 repeats x 2 s
//!   BENCH_SECS=1 BENCH_REPEATS=3 cargo bench -p outflow-template --bench render

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use outflow_template::{Context, Options, Template};

fn main() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/templates");
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let src = read("bench_template.txt");
    let data: serde_json::Value =
        serde_json::from_str(&read("bench_context.json")).expect("context JSON");
    let expected = read("bench_expected.txt");
    let env_num = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let secs = env_num("BENCH_SECS", 2);
    let repeats = env_num("BENCH_REPEATS", 5);

    let options = Options {
        autoescape: false,
        ..Options::default()
    };
    let template = Template::compile(&src, &options).expect("bench template compiles");
    let ctx = Context::from_json(&data);
    let out = template.render(&ctx).expect("bench template renders");
    assert_eq!(
        out, expected,
        "output differs from Django's bench_expected.txt"
    );

    // `cargo test --all-targets` runs this binary without `--bench`: the
    // identity check above is enough there.
    if !std::env::args().any(|a| a == "--bench") {
        println!("render bench: output identical to Django's (run with `cargo bench` to time)");
        return;
    }
    // Warm-up.
    for _ in 0..2000 {
        black_box(template.render(black_box(&ctx)).ok());
    }
    let mut rates = Vec::new();
    for _ in 0..repeats {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs(secs) {
            for _ in 0..1000 {
                black_box(template.render(black_box(&ctx)).ok());
            }
            n += 1000;
        }
        rates.push(n as f64 / start.elapsed().as_secs_f64());
    }
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];

    // Compile + render each time, for comparison with Django's second figure.
    let start = Instant::now();
    let mut m = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        for _ in 0..100 {
            let t = Template::compile(black_box(&src), &options).expect("compiles");
            black_box(t.render(&ctx).ok());
        }
        m += 100;
    }
    let full = m as f64 / start.elapsed().as_secs_f64();

    println!(
        "outflow-template: {}-byte body, output identical to Django's",
        out.len()
    );
    println!(
        "render only (compiled once): {median:.0} renders/s ({:.2} us/render; repeats {:?})",
        1e6 / median,
        rates.iter().map(|r| r.round()).collect::<Vec<_>>()
    );
    println!("compile + render each time : {full:.0} renders/s");
}
