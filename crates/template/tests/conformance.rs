//! Every case of the shared Django 5.2 conformance file must match exactly.

use std::path::PathBuf;

use outflow_template::cases::{run_case, Outcome};
use serde_json::Value as Json;

fn cases_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/templates/cases.jsonl")
}

#[test]
fn django_conformance_cases() {
    let text = std::fs::read_to_string(cases_path()).expect("cases.jsonl next to the repo");
    let mut failures = Vec::new();
    let mut total = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        total += 1;
        let case: Json = serde_json::from_str(line).expect("valid JSON line");
        let result = run_case(&case);
        let expected = case.get("expected").and_then(Json::as_str);
        let expected_err = case.get("error").and_then(Json::as_str);
        let ok = match (&result.outcome, expected, expected_err) {
            (Outcome::Output(o), Some(e), _) => o == e,
            (Outcome::Error(kind, _), None, Some(e)) => kind == e,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{}: got {:?}, expected {:?} / error {:?}",
                result.name, result.outcome, expected, expected_err
            ));
        }
    }
    let passed = total - failures.len();
    println!("conformance: {passed}/{total} cases match Django");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(total, 188);
}
