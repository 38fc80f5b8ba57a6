//! Rules a parsed definition must satisfy before it is stored: one trigger
//! on a metric that may trigger flows, a well-formed action graph (every
//! link resolves, everything reachable, no cycles), webhook templates that
//! compile. Each problem carries the JSON pointer of the offending field.

use super::definition::{Action, ActionKind, FlowDefinition, Trigger, Webhook};
use super::{escape_token, FlowError, FlowErrorKind};
use outflow_template::{Options, Template};
use std::collections::{HashMap, HashSet};

/// Metrics Klaviyo does not let start a flow (DESIGN.md §4): message
/// engagement and deliverability events would make flows feed on their own
/// sends.
pub const METRICS_THAT_CANNOT_TRIGGER: &[&str] = &[
    "Bounced Email",
    "Clicked Email",
    "Clicked SMS",
    "Dropped Email",
    "Failed to Deliver SMS",
    "Failed to Deliver Automated Response SMS",
    "Merged Profile",
    "Marked Email as Spam",
    "Opened Email",
    "Received Email",
    "Received Automated Response SMS",
    "Received SMS",
    "Unsubscribed",
    "Unsubscribed from List",
    "Unsubscribed from SMS Marketing",
];

/// Whether a metric of this name may trigger a flow.
pub fn metric_can_trigger(name: &str) -> bool {
    let name = name.trim();
    !METRICS_THAT_CANNOT_TRIGGER
        .iter()
        .any(|m| m.eq_ignore_ascii_case(name))
}

/// What validation needs from the outside world, as lookups the caller
/// answers from its store and configuration.
pub struct Checks<'a> {
    /// The name of the metric with this id, or `None` if there is none.
    pub metric_name: &'a dyn Fn(&str) -> Option<String>,
    /// Whether a plain `http://` webhook URL is allowed (the operator's
    /// allow-list); HTTPS is required otherwise.
    pub allow_http: &'a dyn Fn(&str) -> bool,
}

impl<'a> Checks<'a> {
    pub fn new(metric_name: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Checks {
            metric_name,
            allow_http: &|_| false,
        }
    }
}

/// Parse and validate a posted definition in one call: what the API does on
/// create and update. Parse errors come first; validation only runs on a
/// definition that parsed.
pub fn check(
    json: serde_json::Value,
    checks: &Checks<'_>,
    base: &str,
) -> Result<FlowDefinition, Vec<FlowError>> {
    let def = FlowDefinition::parse(json, base)?;
    let errors = validate(&def, checks, base);
    if errors.is_empty() {
        Ok(def)
    } else {
        Err(errors)
    }
}

/// All problems of `def`; empty means valid. `base` is the pointer of the
/// definition in the request, the same one given to `FlowDefinition::parse`.
pub fn validate(def: &FlowDefinition, checks: &Checks<'_>, base: &str) -> Vec<FlowError> {
    let mut errors = Vec::new();
    check_triggers(def, checks, base, &mut errors);
    let keys = check_ids(def, base, &mut errors);
    check_links(def, &keys, base, &mut errors);
    check_graph(def, &keys, base, &mut errors);
    for a in &def.actions {
        let at = format!("{base}/actions/{}", a.index);
        match &a.kind {
            ActionKind::TriggerSplit(_) => {
                if let Some(t) = def.trigger().filter(|t| !t.has_event()) {
                    errors.push(FlowError::new(
                        format!("{at}/type"),
                        FlowErrorKind::TriggerSplitWithoutEvent(t.type_name().into()),
                    ));
                }
            }
            ActionKind::SendWebhook(w) => {
                check_webhook(w, checks, &format!("{at}/data/message"), &mut errors)
            }
            _ => {}
        }
    }
    errors
}

fn check_triggers(def: &FlowDefinition, checks: &Checks<'_>, base: &str, out: &mut Vec<FlowError>) {
    if def.triggers.len() != 1 {
        out.push(FlowError::new(
            format!("{base}/triggers"),
            FlowErrorKind::TriggerCount(def.triggers.len()),
        ));
    }
    for (i, t) in def.triggers.iter().enumerate() {
        if let Trigger::Metric { metric_id, .. } = t {
            let ptr = format!("{base}/triggers/{i}/id");
            match (checks.metric_name)(metric_id) {
                None => out.push(FlowError::new(
                    ptr,
                    FlowErrorKind::UnknownMetric(metric_id.clone()),
                )),
                Some(name) if !metric_can_trigger(&name) => out.push(FlowError::new(
                    ptr,
                    FlowErrorKind::MetricCannotTrigger(name),
                )),
                Some(_) => {}
            }
        }
    }
}

/// Map each action key to its index, reporting missing and duplicate ids.
fn check_ids<'d>(
    def: &'d FlowDefinition,
    base: &str,
    out: &mut Vec<FlowError>,
) -> HashMap<&'d str, usize> {
    let mut keys = HashMap::new();
    for a in &def.actions {
        let Some(key) = a.key() else {
            out.push(FlowError::new(
                format!("{base}/actions/{}", a.index),
                FlowErrorKind::MissingActionId,
            ));
            continue;
        };
        if keys.insert(key, a.index).is_some() {
            let field = if a.id.is_some() { "id" } else { "temporary_id" };
            out.push(FlowError::new(
                format!("{base}/actions/{}/{field}", a.index),
                FlowErrorKind::DuplicateActionId(key.into()),
            ));
        }
    }
    match &def.entry_action_id {
        None if !def.actions.is_empty() => out.push(FlowError::new(
            format!("{base}/entry_action_id"),
            FlowErrorKind::MissingEntryAction,
        )),
        Some(e) if !keys.contains_key(e.as_str()) => out.push(FlowError::new(
            format!("{base}/entry_action_id"),
            FlowErrorKind::EntryActionNotFound(e.clone()),
        )),
        _ => {}
    }
    keys
}

/// The outgoing links of an action that apply to its kind, with their names.
pub(crate) fn outgoing(a: &Action) -> Vec<(&'static str, &str)> {
    let l = &a.links;
    let mut v = Vec::new();
    if a.kind.is_split() {
        if let Some(t) = &l.next_if_true {
            v.push(("next_if_true", t.as_str()));
        }
        if let Some(f) = &l.next_if_false {
            v.push(("next_if_false", f.as_str()));
        }
    } else if let Some(n) = &l.next {
        v.push(("next", n.as_str()));
    }
    v
}

fn check_links(
    def: &FlowDefinition,
    keys: &HashMap<&str, usize>,
    base: &str,
    out: &mut Vec<FlowError>,
) {
    for a in &def.actions {
        let at = format!("{base}/actions/{}/links", a.index);
        let l = &a.links;
        let action = a.kind.type_name().to_owned();
        if a.kind.is_split() {
            if l.next.is_some() {
                out.push(FlowError::new(
                    format!("{at}/next"),
                    FlowErrorKind::WrongLink {
                        link: "next",
                        action,
                        expected: "next_if_true and next_if_false",
                    },
                ));
            }
        } else {
            for (name, present) in [
                ("next_if_true", l.next_if_true.is_some()),
                ("next_if_false", l.next_if_false.is_some()),
            ] {
                if present {
                    out.push(FlowError::new(
                        format!("{at}/{name}"),
                        FlowErrorKind::WrongLink {
                            link: name,
                            action: action.clone(),
                            expected: "next",
                        },
                    ));
                }
            }
        }
        for (name, target) in outgoing(a) {
            if !keys.contains_key(target) {
                out.push(FlowError::new(
                    format!("{at}/{name}"),
                    FlowErrorKind::LinkToMissing(target.into()),
                ));
            }
        }
    }
}

/// Reachability from the entry action and cycle detection, iteratively so
/// a long chain cannot overflow the stack.
fn check_graph(
    def: &FlowDefinition,
    keys: &HashMap<&str, usize>,
    base: &str,
    out: &mut Vec<FlowError>,
) {
    let Some(entry) = def
        .entry_action_id
        .as_deref()
        .and_then(|e| keys.get(e).copied())
    else {
        return;
    };
    let by_index: HashMap<usize, &Action> = def.actions.iter().map(|a| (a.index, a)).collect();
    // 0 = unseen, 1 = on the current path, 2 = finished.
    let mut color: HashMap<usize, u8> = HashMap::new();
    let mut reported: HashSet<usize> = HashSet::new();
    let mut stack: Vec<(usize, usize)> = vec![(entry, 0)];
    color.insert(entry, 1);
    while let Some((node, edge)) = stack.pop() {
        let Some(action) = by_index.get(&node) else {
            continue;
        };
        let edges = outgoing(action);
        if edge >= edges.len() {
            color.insert(node, 2);
            continue;
        }
        stack.push((node, edge + 1));
        let (name, target) = edges[edge];
        let Some(&t) = keys.get(target) else { continue };
        match color.get(&t).copied().unwrap_or(0) {
            0 => {
                color.insert(t, 1);
                stack.push((t, 0));
            }
            1 if reported.insert(node) => {
                out.push(FlowError::new(
                    format!("{base}/actions/{node}/links/{name}"),
                    FlowErrorKind::Cycle(target.into()),
                ));
            }
            _ => {}
        }
    }
    for a in &def.actions {
        if let Some(key) = a.key() {
            if !color.contains_key(&a.index) && keys.get(key) == Some(&a.index) {
                out.push(FlowError::new(
                    format!("{base}/actions/{}", a.index),
                    FlowErrorKind::Unreachable(key.into()),
                ));
            }
        }
    }
}

/// Options webhook templates are compiled and rendered with: JSON bodies
/// must not be HTML-escaped.
pub fn webhook_template_options() -> Options {
    Options {
        autoescape: false,
        ..Options::default()
    }
}

fn compile(src: &str, field: &str, ptr: String, out: &mut Vec<FlowError>) -> bool {
    match Template::compile(src, &webhook_template_options()) {
        Ok(_) => true,
        Err(e) => {
            out.push(FlowError::new(
                ptr,
                FlowErrorKind::Template {
                    field: field.into(),
                    line: e.line,
                    column: e.column,
                    message: e.message,
                },
            ));
            false
        }
    }
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn check_webhook(w: &Webhook, checks: &Checks<'_>, at: &str, out: &mut Vec<FlowError>) {
    let url_ptr = format!("{at}/url");
    if w.url.is_empty() {
        out.push(FlowError::new(
            url_ptr,
            FlowErrorKind::Missing("url".into()),
        ));
    } else if compile(&w.url, "url", url_ptr.clone(), out) {
        let lower = w.url.to_ascii_lowercase();
        let https = lower.starts_with("https://");
        let http = lower.starts_with("http://");
        let allowed = https || (http && (checks.allow_http)(&w.url));
        if !allowed {
            let detail = if http {
                "the webhook URL must use HTTPS; plain http:// is only allowed for destinations the operator allows"
            } else {
                "the webhook URL must start with https://"
            };
            out.push(FlowError::new(
                url_ptr,
                FlowErrorKind::Webhook(detail.into()),
            ));
        }
    }
    for (name, value) in &w.headers {
        let ptr = format!("{at}/headers/{}", escape_token(name));
        if !is_token(name) {
            out.push(FlowError::new(
                ptr.clone(),
                FlowErrorKind::Webhook(format!("'{name}' is not a valid HTTP header name")),
            ));
        }
        compile(value, &format!("'{name}' header"), ptr, out);
    }
    if let Some(body) = &w.body {
        let ptr = format!("{at}/body");
        let templated = body.contains("{{") || body.contains("{%");
        if compile(body, "body", ptr.clone(), out)
            && !templated
            && !body.trim().is_empty()
            && serde_json::from_str::<serde_json::Value>(body).is_err()
        {
            out.push(FlowError::new(
                ptr,
                FlowErrorKind::Webhook("the webhook body must be JSON".into()),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::fixtures::{metric_name, placed_order_flow};
    use serde_json::{json, Value};

    const BASE: &str = "/data/attributes/definition";

    fn problems(v: Value) -> Vec<FlowError> {
        let def = FlowDefinition::parse(v, BASE).expect("parses");
        validate(&def, &Checks::new(&metric_name), BASE)
    }

    fn chain(actions: Value, entry: &str) -> Value {
        json!({"triggers": [{"type": "list", "id": "L"}], "actions": actions, "entry_action_id": entry})
    }

    fn sms(id: &str, next: Option<&str>) -> Value {
        json!({"id": id, "type": "send-sms", "links": {"next": next}, "data": {"status": "live"}})
    }

    #[test]
    fn the_fixture_is_valid() {
        assert_eq!(problems(placed_order_flow()), vec![]);
        assert!(check(placed_order_flow(), &Checks::new(&metric_name), BASE).is_ok());
        let bad = json!({"triggers": [{"type": "metric", "id": "M-opened"}], "actions": [], "entry_action_id": null});
        let errs = check(bad, &Checks::new(&metric_name), BASE).expect_err("blocked metric");
        assert_eq!(errs[0].pointer, format!("{BASE}/triggers/0/id"));
        assert_eq!(
            errs[0].to_string(),
            format!("{BASE}/triggers/0/id: metric 'Opened Email' cannot trigger flows: Klaviyo does not let message-engagement and deliverability metrics start a flow")
        );
    }

    #[test]
    fn table_of_problems() {
        let split = |id: &str, t: Option<&str>, f: Option<&str>| {
            json!({"id": id, "type": "conditional-split",
            "links": {"next_if_true": t, "next_if_false": f},
            "data": {"profile_filter": {"condition_groups": []}}})
        };
        let webhook = |msg: Value| {
            chain(
                json!([{"id": "1", "type": "send-webhook", "data": {"message": msg}}]),
                "1",
            )
        };
        let metric = |id: &str| json!({"triggers": [{"type": "metric", "id": id}], "actions": [], "entry_action_id": null});
        let cases: Vec<(Value, &str, &str)> = vec![
            (
                json!({"triggers": [], "actions": [], "entry_action_id": null}),
                "/triggers",
                "exactly one trigger, this one has 0",
            ),
            (
                json!({"triggers": [{"type": "list", "id": "a"}, {"type": "list", "id": "b"}], "actions": [], "entry_action_id": null}),
                "/triggers",
                "has 2",
            ),
            (
                metric("M-opened"),
                "/triggers/0/id",
                "metric 'Opened Email' cannot trigger flows",
            ),
            (
                metric("M-unsub"),
                "/triggers/0/id",
                "'unsubscribed from list' cannot trigger flows",
            ),
            (
                metric("M-none"),
                "/triggers/0/id",
                "metric 'M-none' does not exist",
            ),
            (
                chain(json!([sms("1", None)]), "9"),
                "/entry_action_id",
                "'9' does not name an action",
            ),
            (
                json!({"triggers": [{"type": "list", "id": "L"}], "actions": [sms("1", None)], "entry_action_id": null}),
                "/entry_action_id",
                "entry_action_id is required",
            ),
            (
                chain(json!([sms("1", Some("2"))]), "1"),
                "/actions/0/links/next",
                "link to action '2', which does not exist",
            ),
            (
                chain(json!([sms("1", None), sms("2", None)]), "1"),
                "/actions/1",
                "'2' cannot be reached",
            ),
            (
                chain(json!([sms("1", Some("2")), sms("2", Some("1"))]), "1"),
                "/actions/1/links/next",
                "cycle",
            ),
            (
                chain(json!([sms("1", Some("1"))]), "1"),
                "/actions/0/links/next",
                "cycle",
            ),
            (
                chain(
                    json!([
                        split("1", Some("2"), Some("3")),
                        sms("2", Some("1")),
                        sms("3", None)
                    ]),
                    "1",
                ),
                "/actions/1/links/next",
                "cycle",
            ),
            (
                chain(json!([sms("1", None), sms("1", None)]), "1"),
                "/actions/1/id",
                "used by more than one action",
            ),
            (
                chain(json!([{"type": "send-sms"}]), "1"),
                "/actions/0",
                "'id' or a 'temporary_id'",
            ),
            (
                chain(
                    json!([{"id": "1", "type": "send-sms", "links": {"next_if_true": null, "next_if_false": "1"}}]),
                    "1",
                ),
                "/actions/0/links/next_if_false",
                "not a link of a send-sms action",
            ),
            (
                chain(
                    json!([{"id": "1", "type": "conditional-split", "links": {"next": "2"},
                "data": {"profile_filter": {"condition_groups": []}}}, sms("2", None)]),
                    "1",
                ),
                "/actions/0/links/next",
                "use next_if_true and next_if_false",
            ),
            (
                chain(
                    json!([{"id": "1", "type": "trigger-split", "links": {"next_if_true": null, "next_if_false": null},
                "data": {"trigger_filter": {"condition_groups": []}, "trigger_id": "L", "trigger_type": "list"}}]),
                    "1",
                ),
                "/actions/0/type",
                "needs a metric or price-drop trigger; this flow has a list trigger",
            ),
            (
                webhook(json!({"url": "https://x.example/{{ person.email|no_such_filter }}"})),
                "/actions/0/data/message/url",
                "url template does not compile: line 1, column",
            ),
            (
                webhook(json!({"url": "https://x.example", "headers": {"X-A": "{% if %}"}})),
                "/actions/0/data/message/headers/X-A",
                "'X-A' header template does not compile: line 1",
            ),
            (
                webhook(
                    json!({"url": "https://x.example", "body": "{\n \"a\": {% for x in %}\n}"}),
                ),
                "/actions/0/data/message/body",
                "body template does not compile: line 2, column",
            ),
            (
                webhook(json!({"url": "https://x.example", "body": "{not json"})),
                "/actions/0/data/message/body",
                "must be JSON",
            ),
            (
                webhook(json!({"url": "http://x.example"})),
                "/actions/0/data/message/url",
                "must use HTTPS",
            ),
            (
                webhook(json!({"url": "ftp://x.example"})),
                "/actions/0/data/message/url",
                "must start with https://",
            ),
            (
                webhook(json!({"url": ""})),
                "/actions/0/data/message/url",
                "'url' is required",
            ),
            (
                webhook(json!({"url": "https://x.example", "headers": {"Bad Header": "v"}})),
                "/actions/0/data/message/headers/Bad Header",
                "not a valid HTTP header name",
            ),
        ];
        for (def, ptr, detail) in cases {
            let errs = problems(def.clone());
            let hit = errs.iter().find(|e| e.pointer == format!("{BASE}{ptr}"));
            let Some(e) = hit else {
                panic!("{def}\nno error at {ptr}: {errs:?}")
            };
            assert!(
                e.detail().contains(detail),
                "{def}\n{} does not contain {detail}",
                e.detail()
            );
        }
    }

    #[test]
    fn plain_http_allowed_for_operator_destinations() {
        let def = FlowDefinition::parse(
            chain(json!([{"id": "1", "type": "send-webhook", "data": {"message": {"url": "http://localhost:9000/hook"}}}]), "1"),
            BASE,
        )
        .expect("parses");
        let checks = Checks {
            metric_name: &metric_name,
            allow_http: &|u: &str| u.starts_with("http://localhost"),
        };
        assert_eq!(validate(&def, &checks, BASE), vec![]);
    }

    #[test]
    fn every_blocked_metric_is_rejected_by_name() {
        for name in METRICS_THAT_CANNOT_TRIGGER {
            assert!(!metric_can_trigger(name));
            assert!(!metric_can_trigger(&name.to_uppercase()));
        }
        assert!(metric_can_trigger("Placed Order"));
        assert!(metric_can_trigger("Opened App"));
    }
}
