//! Audiences (issue #5), pure: Klaviyo's segment definitions (the same
//! condition groups as flow filters, so they are parsed and evaluated by
//! [`crate::flow::condition`]), what each definition depends on — so an
//! event or a profile change re-evaluates only the segments it can affect —
//! and the arithmetic of the date and price-drop triggers.

pub mod date;
pub mod price_drop;

use crate::flow::condition::{
    self, Condition, ConditionGroups, DateFilter, Facts, Filter, MetricQuery, ProfileFacts, Scope,
    Timeframe,
};
use crate::flow::json::At;
use crate::flow::{FlowError, FlowErrorKind};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// A parsed `definition`: AND across `condition_groups`, OR inside each.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentDefinition {
    pub conditions: ConditionGroups,
    pub deps: Dependencies,
}

/// What can change a profile's membership.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dependencies {
    /// Metric ids of `profile-metric` conditions: events of these metrics.
    pub metrics: BTreeSet<String>,
    /// List and segment ids of `profile-group-membership` conditions.
    pub groups: BTreeSet<String>,
    /// Whether any condition reads the profile's attributes or properties.
    pub profile: bool,
    /// Metric aggregates whose window moves with the clock ("in the last 30
    /// days"): members can leave and others join as time passes.
    pub sliding_metrics: Vec<MetricQuery>,
    /// Whether a profile date is compared with today ("anniversary", "in
    /// the last 7 days"): only a re-evaluation of every profile catches it.
    pub relative_dates: bool,
}

impl Dependencies {
    /// Whether membership can change with no event or profile change.
    pub fn depends_on_time(&self) -> bool {
        !self.sliding_metrics.is_empty() || self.relative_dates
    }
}

impl SegmentDefinition {
    /// Parses `{condition_groups: [...]}` found at `base` in the request
    /// (e.g. `/data/attributes/definition`); every error carries a pointer.
    /// `self_id` is the segment's own id when updating, so a definition
    /// cannot name its own segment.
    pub fn parse(
        json: &Value,
        base: &str,
        self_id: Option<&str>,
    ) -> Result<SegmentDefinition, FlowError> {
        let at = At::new(json, base);
        at.object()?;
        let groups_at = at.req("condition_groups")?;
        let items = groups_at.items()?;
        if items.is_empty() {
            return Err(groups_at.malformed("a segment needs at least one condition group"));
        }
        // Checks the shared parser does not make, because flows allow them.
        for g in &items {
            let Some(conds) = g.get("conditions") else {
                continue;
            };
            for c in conds.items()? {
                let ty = c
                    .get("type")
                    .and_then(|t| t.value.as_str().map(str::to_owned));
                if let Some(tf) = c.get("timeframe_filter") {
                    if ty.as_deref() == Some("profile-group-membership") {
                        return Err(tf.err(FlowErrorKind::Malformed(
                            "a timeframe on list or segment membership is not supported by Outflow yet"
                                .into(),
                        )));
                    }
                    if tf.value.get("operator").and_then(Value::as_str) == Some("flow-start") {
                        return Err(FlowError {
                            pointer: tf.ptr_of("operator"),
                            kind: FlowErrorKind::Malformed(
                                "'flow-start' is only meaningful in a flow, not in a segment"
                                    .into(),
                            ),
                        });
                    }
                }
                if let (Some(me), Some("profile-group-membership")) = (self_id, ty.as_deref()) {
                    if let Some(ids) = c.get("group_ids") {
                        if ids
                            .value
                            .as_array()
                            .is_some_and(|a| a.iter().any(|v| v == me))
                        {
                            return Err(ids.malformed("a segment cannot depend on itself"));
                        }
                    }
                }
            }
        }
        let conditions = condition::parse_groups(&at, Scope::Profile)?;
        let deps = dependencies(&conditions);
        Ok(SegmentDefinition { conditions, deps })
    }

    /// The metric aggregates evaluation reads, for the caller to load.
    pub fn metric_queries(&self) -> Vec<MetricQuery> {
        condition::required_metric_queries(&self.conditions)
    }

    /// Whether the profile belongs, given its facts (its list and segment
    /// memberships and the answers to [`Self::metric_queries`]).
    pub fn contains(&self, profile: &ProfileFacts, now: DateTime<Utc>) -> bool {
        condition::evaluate(&self.conditions, &Facts::new(now, profile))
    }
}

fn dependencies(groups: &ConditionGroups) -> Dependencies {
    let mut d = Dependencies::default();
    for c in groups.groups.iter().flatten() {
        match c {
            Condition::ProfileProperty { filter, .. } => {
                d.profile = true;
                if let Filter::Date(f) = filter {
                    d.relative_dates |= is_relative(f);
                }
            }
            Condition::GroupMembership { group_ids, .. } => {
                d.groups.extend(group_ids.iter().cloned());
            }
            Condition::ProfileMetric { query, .. } => {
                d.metrics.insert(query.metric_id.clone());
                if let Timeframe::Date(f) = &query.timeframe {
                    if is_relative(f) && !d.sliding_metrics.contains(query) {
                        d.sliding_metrics.push(query.clone());
                    }
                }
            }
            Condition::Region { .. } => d.profile = true,
            Condition::EventProperty { .. } => {}
        }
    }
    d
}

/// Date filters whose meaning moves with "now".
fn is_relative(f: &DateFilter) -> bool {
    !matches!(
        f,
        DateFilter::Before(_)
            | DateFilter::After(_)
            | DateFilter::Between(..)
            | DateFilter::CalendarMonth(_)
    )
}

/// The event-time ranges `[start, end)` whose events entered or left the
/// query's window while the clock moved from `from` to `to`: only profiles
/// with events in them can have a different aggregate at `to`.
pub fn window_crossings(
    q: &MetricQuery,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let (s0, e0) = q.window(from, None);
    let (s1, e1) = q.window(to, None);
    let mut out = Vec::new();
    for (a, b) in [(s0, s1), (e0, e1)] {
        if let (Some(a), Some(b)) = (a, b) {
            if a < b {
                out.push((a, b));
            } else if b < a {
                out.push((b, a));
            }
        }
    }
    out
}

/// Segment ids in an order where every segment comes after the segments
/// its conditions name, so one pass over a profile sees fresh memberships.
/// Segments on a cycle (which the API refuses to create) keep their input
/// order at the end.
pub fn evaluation_order(segments: &[(String, BTreeSet<String>)]) -> Vec<String> {
    let known: HashMap<&str, &BTreeSet<String>> = segments
        .iter()
        .map(|(id, deps)| (id.as_str(), deps))
        .collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::with_capacity(segments.len());
    loop {
        let before = out.len();
        for (id, deps) in segments {
            if done.contains(id.as_str()) {
                continue;
            }
            let ready = deps
                .iter()
                .all(|d| !known.contains_key(d.as_str()) || done.contains(d.as_str()));
            if ready {
                done.insert(id);
                out.push(id.clone());
            }
        }
        if out.len() == before {
            break;
        }
    }
    for (id, _) in segments {
        if !done.contains(id.as_str()) {
            out.push(id.clone());
        }
    }
    out
}

/// Segments whose membership can depend on `changed`, directly or through
/// other segments, including `changed` themselves.
pub fn with_dependents(
    changed: &BTreeSet<String>,
    deps: &[(String, BTreeSet<String>)],
) -> BTreeSet<String> {
    let mut out = changed.clone();
    loop {
        let mut grew = false;
        for (id, d) in deps {
            if !out.contains(id) && d.iter().any(|g| out.contains(g)) {
                out.insert(id.clone());
                grew = true;
            }
        }
        if !grew {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").to_utc()
    }

    fn parse(v: Value) -> Result<SegmentDefinition, FlowError> {
        SegmentDefinition::parse(&v, "/data/attributes/definition", Some("SELF"))
    }

    #[test]
    fn parses_and_collects_dependencies() {
        let d = parse(json!({"condition_groups": [
            {"conditions": [
                {"type": "profile-metric", "metric_id": "M1", "measurement": "count",
                 "measurement_filter": {"type": "numeric", "operator": "greater-than", "value": 0},
                 "timeframe_filter": {"type": "date", "operator": "in-the-last", "quantity": 30, "unit": "day"}},
                {"type": "profile-group-membership", "is_member": true, "group_ids": ["L1", "S2"]}]},
            {"conditions": [
                {"type": "profile-property", "property": "properties['Birthday']",
                 "filter": {"type": "date", "operator": "anniversary"}}]}]}))
        .expect("valid");
        assert_eq!(d.deps.metrics, BTreeSet::from(["M1".to_owned()]));
        assert_eq!(
            d.deps.groups,
            BTreeSet::from(["L1".to_owned(), "S2".to_owned()])
        );
        assert!(d.deps.profile && d.deps.relative_dates);
        assert_eq!(d.deps.sliding_metrics.len(), 1);
        assert!(d.deps.depends_on_time());
    }

    #[test]
    fn static_definitions_do_not_depend_on_time() {
        let d = parse(json!({"condition_groups": [{"conditions": [
            {"type": "profile-metric", "metric_id": "M1", "measurement": "sum",
             "measurement_filter": {"type": "numeric", "operator": "greater-than-or-equal", "value": 100},
             "timeframe_filter": {"type": "date", "operator": "alltime"}},
            {"type": "profile-property", "property": "properties['Joined']",
             "filter": {"type": "date", "operator": "before", "date": "2026-01-01T00:00:00Z"}}]}]}))
        .expect("valid");
        assert!(!d.deps.depends_on_time());
    }

    #[test]
    fn errors_point_into_the_body() {
        let base = "/data/attributes/definition";
        let cases = [
            (json!({}), format!("{base}/condition_groups")),
            (
                json!({"condition_groups": []}),
                format!("{base}/condition_groups"),
            ),
            (
                json!({"condition_groups": [{"conditions": [{"type": "metric-property", "field": "x",
                    "filter": {"type": "existence", "operator": "is-set"}}]}]}),
                format!("{base}/condition_groups/0/conditions/0/type"),
            ),
            (
                json!({"condition_groups": [{"conditions": [{"type": "profile-metric", "metric_id": "M",
                    "measurement": "count", "measurement_filter": {"type": "numeric", "operator": "equals", "value": 1},
                    "timeframe_filter": {"type": "date", "operator": "flow-start"}}]}]}),
                format!("{base}/condition_groups/0/conditions/0/timeframe_filter/operator"),
            ),
            (
                json!({"condition_groups": [{"conditions": [{"type": "profile-group-membership",
                    "is_member": true, "group_ids": ["SELF"]}]}]}),
                format!("{base}/condition_groups/0/conditions/0/group_ids"),
            ),
            (
                json!({"condition_groups": [{"conditions": [{"type": "profile-group-membership",
                    "is_member": true, "group_ids": ["L1"],
                    "timeframe_filter": {"type": "date", "operator": "in-the-last", "quantity": 3, "unit": "day"}}]}]}),
                format!("{base}/condition_groups/0/conditions/0/timeframe_filter"),
            ),
            (
                json!({"condition_groups": [{"conditions": [{"type": "profile-sample",
                    "percentage": 10}]}]}),
                format!("{base}/condition_groups/0/conditions/0/type"),
            ),
        ];
        for (v, ptr) in cases {
            let e = parse(v.clone()).expect_err("invalid");
            assert_eq!(e.pointer, ptr, "{v}");
        }
    }

    #[test]
    fn region_conditions_read_the_country() {
        let d = parse(json!({"condition_groups": [{"conditions": [
            {"type": "profile-region", "in_region": true, "region": "european_union"}]}]}))
        .expect("valid");
        assert!(d.deps.profile);
        let now = utc("2026-03-02T00:00:00Z");
        let at = |country: &str| ProfileFacts {
            profile: json!({"location": {"country": country}}),
            ..ProfileFacts::default()
        };
        assert!(d.contains(&at("Germany"), now));
        assert!(d.contains(&at("FR"), now));
        assert!(!d.contains(&at("United States"), now));
        assert!(!d.contains(&ProfileFacts::default(), now));
        let us = parse(json!({"condition_groups": [{"conditions": [
            {"type": "profile-region", "in_region": false, "region": "united_states"}]}]}))
        .expect("valid");
        assert!(!us.contains(&at("USA"), now));
        assert!(us.contains(&at("Canada"), now));
    }

    #[test]
    fn crossings_cover_events_entering_and_leaving() {
        let d = parse(json!({"condition_groups": [{"conditions": [
            {"type": "profile-metric", "metric_id": "M1", "measurement": "count",
             "measurement_filter": {"type": "numeric", "operator": "equals", "value": 0},
             "timeframe_filter": {"type": "date", "operator": "between", "start": 10, "end": 20, "unit": "day"}}]}]}))
        .expect("valid");
        let q = &d.deps.sliding_metrics[0];
        let (t0, t1) = (utc("2026-03-21T00:00:00Z"), utc("2026-03-22T00:00:00Z"));
        let c = window_crossings(q, t0, t1);
        assert_eq!(
            c,
            vec![
                (utc("2026-03-01T00:00:00Z"), utc("2026-03-02T00:00:00Z")),
                (utc("2026-03-11T00:00:00Z"), utc("2026-03-12T00:00:00Z")),
            ]
        );
    }

    #[test]
    fn orders_segments_after_their_dependencies() {
        let s = |id: &str, deps: &[&str]| {
            (
                id.to_owned(),
                deps.iter()
                    .map(|d| (*d).to_owned())
                    .collect::<BTreeSet<_>>(),
            )
        };
        let segs = vec![
            s("A", &["B", "L1"]),
            s("B", &["C"]),
            s("C", &[]),
            s("X", &["Y"]),
            s("Y", &["X"]),
        ];
        assert_eq!(evaluation_order(&segs), vec!["C", "B", "A", "X", "Y"]);
        let changed = BTreeSet::from(["C".to_owned()]);
        assert_eq!(
            with_dependents(&changed, &segs),
            BTreeSet::from(["A".to_owned(), "B".to_owned(), "C".to_owned()])
        );
    }
}
