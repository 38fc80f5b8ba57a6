//! Conditions of Klaviyo's filters and splits: `condition_groups[]` are
//! combined with AND and the `conditions[]` inside one group with OR (the
//! semantics Klaviyo documents for the same structure in its Segments API).
//!
//! Evaluation is pure: the caller gathers the profile, its list and segment
//! memberships and the metric aggregates named by [`required_metric_queries`]
//! into [`ProfileFacts`], and [`evaluate`] only reads them.

use super::json::At;
use super::{FlowError, FlowErrorKind};
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use std::collections::BTreeSet;

/// AND of groups, OR inside a group. No groups means "no filter": true.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConditionGroups {
    pub groups: Vec<Vec<Condition>>,
}

/// Where a condition group sits decides which condition types it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `profile_filter` and conditional splits: conditions on the profile.
    Profile,
    /// `trigger_filter` and trigger splits: conditions on the trigger event.
    Event,
}

impl Scope {
    fn place(self) -> &'static str {
        match self {
            Scope::Profile => "a profile filter",
            Scope::Event => "a trigger filter",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `profile-property`: an attribute (`email`, `location['city']`) or a
    /// custom property (`properties['Favorite Color']`).
    ProfileProperty {
        property: PropertyPath,
        filter: Filter,
    },
    /// `profile-group-membership`: member of any (or none) of the lists and
    /// segments named.
    GroupMembership {
        is_member: bool,
        group_ids: Vec<String>,
    },
    /// `profile-metric`: how many times (or how much) the profile did
    /// something, compared with a number.
    ProfileMetric {
        query: MetricQuery,
        compare: NumericFilter,
    },
    /// `metric-property` / `price-drop-property`: a property of the trigger
    /// event.
    EventProperty { field: String, filter: Filter },
    /// `profile-region`: whether `location.country` is in the region.
    Region { in_region: bool, region: Region },
}

/// The regions of `profile-region` conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    EuropeanUnion,
    UnitedStates,
}

/// The 27 member states, by English name and ISO 3166 alpha-2 code.
const EU: &[(&str, &str)] = &[
    ("austria", "at"),
    ("belgium", "be"),
    ("bulgaria", "bg"),
    ("croatia", "hr"),
    ("cyprus", "cy"),
    ("czech republic", "cz"),
    ("czechia", "cz"),
    ("denmark", "dk"),
    ("estonia", "ee"),
    ("finland", "fi"),
    ("france", "fr"),
    ("germany", "de"),
    ("greece", "gr"),
    ("hungary", "hu"),
    ("ireland", "ie"),
    ("italy", "it"),
    ("latvia", "lv"),
    ("lithuania", "lt"),
    ("luxembourg", "lu"),
    ("malta", "mt"),
    ("netherlands", "nl"),
    ("poland", "pl"),
    ("portugal", "pt"),
    ("romania", "ro"),
    ("slovakia", "sk"),
    ("slovenia", "si"),
    ("spain", "es"),
    ("sweden", "se"),
];

impl Region {
    /// Whether a free-text `location.country` (a name or an ISO code) is in
    /// the region.
    pub fn contains(self, country: &str) -> bool {
        let c = country.trim().to_lowercase();
        match self {
            Region::UnitedStates => matches!(
                c.as_str(),
                "us" | "usa" | "united states" | "united states of america" | "u.s." | "u.s.a."
            ),
            Region::EuropeanUnion => EU.iter().any(|(name, code)| c == *name || c == *code),
        }
    }
}

/// A path into the profile's attributes: `email` → `["email"]`,
/// `properties['Favorite Color']` → `["properties", "Favorite Color"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyPath(pub Vec<String>);

impl PropertyPath {
    pub fn parse(src: &str) -> Option<PropertyPath> {
        let head_end = src.find('[').unwrap_or(src.len());
        let head = src[..head_end].trim();
        if head.is_empty() {
            return None;
        }
        let mut parts = vec![head.to_owned()];
        let mut rest = &src[head_end..];
        while !rest.is_empty() {
            let quote = match rest.as_bytes() {
                [b'[', q @ (b'\'' | b'"'), ..] => *q as char,
                _ => return None,
            };
            let body = &rest[2..];
            let close = body.find(&format!("{quote}]"))?;
            parts.push(body[..close].to_owned());
            rest = &body[close + 2..];
        }
        Some(PropertyPath(parts))
    }

    fn lookup<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        self.0.iter().try_fold(root, |v, k| v.get(k))
    }
}

/// One aggregate the caller must compute: the count of the profile's events
/// of `metric_id`, or the sum of their `$value`, inside `timeframe`, counting
/// only events whose properties pass every filter in `filters`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    pub metric_id: String,
    pub measurement: Measurement,
    pub timeframe: Timeframe,
    pub filters: Vec<PropertyFilter>,
}

impl MetricQuery {
    /// The half-open window `[start, end)` to aggregate over; `None` is
    /// unbounded. `flow_start` is when the run entered the flow.
    pub fn window(
        &self,
        now: DateTime<Utc>,
        flow_start: Option<DateTime<Utc>>,
    ) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        match &self.timeframe {
            Timeframe::AllTime => (None, None),
            Timeframe::FlowStart => (Some(flow_start.unwrap_or(now)), None),
            Timeframe::Date(d) => match d {
                DateFilter::Before(t) => (None, Some(*t)),
                DateFilter::After(t) => (Some(*t), None),
                DateFilter::Between(a, b) => (Some(*a), Some(*b)),
                DateFilter::InTheLast(s) => (Some(now - s.duration()), None),
                DateFilter::AtLeast(s) => (None, Some(now - s.duration())),
                DateFilter::InTheNext(s) => (Some(now), Some(now + s.duration())),
                DateFilter::Ago { start, end, unit } => {
                    (Some(now - unit.times(*end)), Some(now - unit.times(*start)))
                }
                // Rejected as timeframes when parsing.
                _ => (None, None),
            },
        }
    }

    /// Whether one event (its properties object) counts towards this query.
    pub fn matches_event(&self, properties: &Value, now: DateTime<Utc>) -> bool {
        self.filters.iter().all(|f| match &f.filter {
            None => true,
            Some(filter) => filter.matches(event_field(properties, &f.property), now),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measurement {
    Count,
    /// Sum of the events' `$value`.
    Sum,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Timeframe {
    AllTime,
    /// Since the run entered this flow ("since starting this flow").
    FlowStart,
    Date(DateFilter),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PropertyFilter {
    pub property: String,
    pub filter: Option<Filter>,
}

/// A comparison applied to one value.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Text { op: TextOp, value: Option<String> },
    Pattern { negate: bool, pattern: Pattern },
    TextIn { negate: bool, values: Vec<String> },
    Number(NumericFilter),
    NumberBetween { start: f64, end: f64 },
    Boolean(bool),
    Date(DateFilter),
    ListContains { negate: bool, value: Value },
    ListLength { op: NumOp, value: i64 },
    ListSubstring { negate: bool, value: String },
    ListSet { op: ListSetOp, values: Vec<String> },
    Exists(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextOp {
    Equals,
    NotEquals,
    Contains,
    NotContains,
    StartsWith,
    NotStartsWith,
    EndsWith,
    NotEndsWith,
}

/// A compiled `regex` / `nregex` value. The `regex` crate runs in linear
/// time, so a hostile pattern cannot stall a worker.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumericFilter {
    pub op: NumOp,
    pub value: f64,
}

impl NumericFilter {
    pub fn holds(&self, x: f64) -> bool {
        self.op.holds(x, self.value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl NumOp {
    fn parse(s: &str) -> Option<NumOp> {
        Some(match s {
            "equals" | "length-equals" => NumOp::Eq,
            "not-equals" => NumOp::Ne,
            "greater-than" | "length-greater-than" => NumOp::Gt,
            "greater-than-or-equal" | "length-greater-than-or-equal" => NumOp::Ge,
            "less-than" | "length-less-than" => NumOp::Lt,
            "less-than-or-equal" | "length-less-than-or-equal" => NumOp::Le,
            _ => return None,
        })
    }

    pub fn holds(self, x: f64, y: f64) -> bool {
        match self {
            NumOp::Eq => x == y,
            NumOp::Ne => x != y,
            NumOp::Gt => x > y,
            NumOp::Ge => x >= y,
            NumOp::Lt => x < y,
            NumOp::Le => x <= y,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListSetOp {
    ContainsAll,
    ContainsAny,
    NotContainsAll,
    NotContainsAny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanUnit {
    Hour,
    Day,
    Week,
}

impl SpanUnit {
    fn parse(s: &str) -> Option<SpanUnit> {
        Some(match s {
            "hour" => SpanUnit::Hour,
            "day" => SpanUnit::Day,
            "week" => SpanUnit::Week,
            _ => return None,
        })
    }

    pub fn times(self, n: i64) -> Duration {
        let n = n.clamp(0, 100_000);
        match self {
            SpanUnit::Hour => Duration::hours(n),
            SpanUnit::Day => Duration::days(n),
            SpanUnit::Week => Duration::weeks(n),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub quantity: i64,
    pub unit: SpanUnit,
}

impl Span {
    pub fn duration(&self) -> Duration {
        self.unit.times(self.quantity)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum DateFilter {
    Before(DateTime<Utc>),
    After(DateTime<Utc>),
    Between(DateTime<Utc>, DateTime<Utc>),
    /// Within the last span, up to now.
    InTheLast(Span),
    /// At least the span ago.
    AtLeast(Span),
    /// Between now and now plus the span.
    InTheNext(Span),
    /// Between `start` and `end` units ago ("between 10 and 20 days ago").
    Ago {
        start: i64,
        end: i64,
        unit: SpanUnit,
    },
    AnniversaryLast(Span),
    AnniversaryNext(Span),
    /// The date falls in this calendar month (1–12).
    CalendarMonth(u32),
    /// Today is the date's anniversary (same month and day).
    Anniversary,
    /// This month is the date's month.
    AnniversaryMonth,
}

/// The answers to [`MetricQuery`]s, filled by the caller.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricAnswers(Vec<(MetricQuery, f64)>);

impl MetricAnswers {
    pub fn insert(&mut self, query: MetricQuery, value: f64) {
        match self.0.iter_mut().find(|(q, _)| *q == query) {
            Some(slot) => slot.1 = value,
            None => self.0.push((query, value)),
        }
    }

    pub fn get(&self, query: &MetricQuery) -> Option<f64> {
        self.0.iter().find(|(q, _)| q == query).map(|(_, v)| *v)
    }
}

/// What the caller knows about one profile, gathered before evaluating.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProfileFacts {
    /// Klaviyo's profile `attributes` object: `email`, `first_name`,
    /// `location{…}`, `properties{…}`, ….
    pub profile: Value,
    /// Ids of the lists and segments the profile belongs to.
    pub memberships: BTreeSet<String>,
    pub metrics: MetricAnswers,
    /// The profile's time zone, for delays in the profile's time.
    pub timezone: Option<Tz>,
}

/// Everything one evaluation reads.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub now: DateTime<Utc>,
    pub profile: &'a ProfileFacts,
    /// The trigger event's properties, when the run has one.
    pub event: Option<&'a Value>,
    /// When the run entered the flow (for `flow-start` timeframes).
    pub flow_start: Option<DateTime<Utc>>,
}

impl<'a> Facts<'a> {
    pub fn new(now: DateTime<Utc>, profile: &'a ProfileFacts) -> Self {
        Facts {
            now,
            profile,
            event: None,
            flow_start: None,
        }
    }

    pub fn with_event(mut self, event: Option<&'a Value>) -> Self {
        self.event = event;
        self
    }

    pub fn with_flow_start(mut self, flow_start: Option<DateTime<Utc>>) -> Self {
        self.flow_start = flow_start;
        self
    }
}

/// AND across groups, OR inside each group.
pub fn evaluate(groups: &ConditionGroups, facts: &Facts<'_>) -> bool {
    groups
        .groups
        .iter()
        .all(|group| group.iter().any(|c| c.holds(facts)))
}

/// The metric aggregates `evaluate` will look up, without duplicates, so the
/// caller can fetch them in one batch.
pub fn required_metric_queries(groups: &ConditionGroups) -> Vec<MetricQuery> {
    let mut out = Vec::new();
    collect_metric_queries(groups, &mut out);
    out
}

/// Whether any condition asks about list or segment membership (the only
/// reason to load a profile's memberships).
pub fn names_groups(groups: &ConditionGroups) -> bool {
    groups
        .groups
        .iter()
        .flatten()
        .any(|c| matches!(c, Condition::GroupMembership { .. }))
}

pub(crate) fn collect_metric_queries(groups: &ConditionGroups, out: &mut Vec<MetricQuery>) {
    for c in groups.groups.iter().flatten() {
        if let Condition::ProfileMetric { query, .. } = c {
            if !out.contains(query) {
                out.push(query.clone());
            }
        }
    }
}

impl Condition {
    pub fn holds(&self, facts: &Facts<'_>) -> bool {
        match self {
            Condition::ProfileProperty { property, filter } => {
                filter.matches(property.lookup(&facts.profile.profile), facts.now)
            }
            Condition::GroupMembership {
                is_member,
                group_ids,
            } => {
                let member = group_ids
                    .iter()
                    .any(|g| facts.profile.memberships.contains(g));
                member == *is_member
            }
            // An aggregate the caller did not supply is unknown, so the
            // comparison fails rather than guessing zero.
            Condition::ProfileMetric { query, compare } => facts
                .profile
                .metrics
                .get(query)
                .is_some_and(|v| compare.holds(v)),
            Condition::EventProperty { field, filter } => match facts.event {
                Some(ev) => filter.matches(event_field(ev, field), facts.now),
                None => false,
            },
            Condition::Region { in_region, region } => {
                let inside = facts
                    .profile
                    .profile
                    .get("location")
                    .and_then(|l| l.get("country"))
                    .and_then(Value::as_str)
                    .is_some_and(|c| region.contains(c));
                inside == *in_region
            }
        }
    }
}

/// An event property by exact key first (Klaviyo keys may contain dots),
/// then as a dotted or `a['b']` path.
fn event_field<'v>(props: &'v Value, field: &str) -> Option<&'v Value> {
    if let Some(v) = props.get(field) {
        return Some(v);
    }
    if field.contains('[') {
        return PropertyPath::parse(field).and_then(|p| p.lookup(props));
    }
    field.split('.').try_fold(props, |v, k| v.get(k))
}

fn is_set(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Profile and event dates arrive as ISO 8601 strings (with or without a
/// time), `MM/DD/YYYY`, or Unix seconds. A date without a time is taken as
/// midnight UTC.
pub fn as_datetime(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::Number(n) => n.as_i64().and_then(|s| DateTime::from_timestamp(s, 0)),
        Value::String(s) => parse_date_text(s.trim()),
        _ => None,
    }
}

fn parse_date_text(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    for fmt in ["%Y-%m-%d", "%m/%d/%Y"] {
        if let Ok(d) = NaiveDate::parse_from_str(s, fmt) {
            return d.and_hms_opt(0, 0, 0).map(|t| Utc.from_utc_datetime(&t));
        }
    }
    None
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

impl Filter {
    /// Whether `value` (absent when the property is not set) passes. String
    /// comparisons ignore case. A negated operator (`not-equals`,
    /// `not-contains`, …) holds for an unset value, since the profile does
    /// not have the value it excludes.
    pub fn matches(&self, value: Option<&Value>, now: DateTime<Utc>) -> bool {
        let value = value.filter(|v| !v.is_null());
        match self {
            Filter::Exists(want) => is_set(value) == *want,
            Filter::Text { op, value: want } => {
                let negated = matches!(
                    op,
                    TextOp::NotEquals
                        | TextOp::NotContains
                        | TextOp::NotStartsWith
                        | TextOp::NotEndsWith
                );
                let Some(have) = value.and_then(as_text) else {
                    return negated;
                };
                let have = lower(&have);
                let want = lower(want.as_deref().unwrap_or(""));
                let positive = match op {
                    TextOp::Equals | TextOp::NotEquals => have == want,
                    TextOp::Contains | TextOp::NotContains => have.contains(&want),
                    TextOp::StartsWith | TextOp::NotStartsWith => have.starts_with(&want),
                    TextOp::EndsWith | TextOp::NotEndsWith => have.ends_with(&want),
                };
                positive != negated
            }
            Filter::Pattern { negate, pattern } => match value.and_then(as_text) {
                Some(have) => pattern.0.is_match(&have) != *negate,
                None => *negate,
            },
            Filter::TextIn { negate, values } => match value.and_then(as_text) {
                Some(have) => {
                    let have = lower(&have);
                    values.iter().any(|v| lower(v) == have) != *negate
                }
                None => *negate,
            },
            Filter::Number(f) => match value.and_then(as_number) {
                Some(x) => f.holds(x),
                None => f.op == NumOp::Ne,
            },
            Filter::NumberBetween { start, end } => value
                .and_then(as_number)
                .is_some_and(|x| *start <= x && x <= *end),
            Filter::Boolean(want) => value.and_then(as_bool) == Some(*want),
            Filter::Date(d) => value
                .and_then(as_datetime)
                .is_some_and(|t| date_matches(d, t, now)),
            Filter::ListContains {
                negate,
                value: want,
            } => {
                let found = value
                    .and_then(Value::as_array)
                    .is_some_and(|items| items.iter().any(|i| same_item(i, want)));
                found != *negate
            }
            Filter::ListLength { op, value: want } => {
                let len = value.and_then(Value::as_array).map_or(0, Vec::len);
                op.holds(len as f64, *want as f64)
            }
            Filter::ListSubstring {
                negate,
                value: want,
            } => {
                let want = lower(want);
                let found = value.and_then(Value::as_array).is_some_and(|items| {
                    items
                        .iter()
                        .filter_map(as_text)
                        .any(|s| lower(&s).contains(&want))
                });
                found != *negate
            }
            Filter::ListSet { op, values } => {
                let have: BTreeSet<String> = value
                    .and_then(Value::as_array)
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(as_text)
                            .map(|s| lower(&s))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut wanted = values.iter().map(|v| lower(v));
                match op {
                    ListSetOp::ContainsAll => wanted.all(|v| have.contains(&v)),
                    ListSetOp::ContainsAny => wanted.any(|v| have.contains(&v)),
                    ListSetOp::NotContainsAll => !wanted.all(|v| have.contains(&v)),
                    ListSetOp::NotContainsAny => !wanted.any(|v| have.contains(&v)),
                }
            }
        }
    }
}

fn same_item(item: &Value, want: &Value) -> bool {
    match (as_text(item), as_text(want)) {
        (Some(a), Some(b)) => lower(&a) == lower(&b),
        _ => item == want,
    }
}

fn date_matches(f: &DateFilter, t: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    match f {
        DateFilter::Before(d) => t < *d,
        DateFilter::After(d) => t > *d,
        DateFilter::Between(a, b) => *a <= t && t <= *b,
        DateFilter::InTheLast(s) => now - s.duration() <= t && t <= now,
        DateFilter::AtLeast(s) => t <= now - s.duration(),
        DateFilter::InTheNext(s) => now <= t && t <= now + s.duration(),
        DateFilter::Ago { start, end, unit } => {
            now - unit.times(*end) <= t && t <= now - unit.times(*start)
        }
        DateFilter::CalendarMonth(m) => t.month() == *m,
        DateFilter::Anniversary => t.month() == now.month() && t.day() == now.day(),
        DateFilter::AnniversaryMonth => t.month() == now.month(),
        DateFilter::AnniversaryNext(s) => {
            let today = now.date_naive();
            let next = anniversary_in(t, today.year())
                .filter(|d| *d >= today)
                .or_else(|| anniversary_in(t, today.year() + 1));
            next.is_some_and(|d| d - today <= s.duration())
        }
        DateFilter::AnniversaryLast(s) => {
            let today = now.date_naive();
            let last = anniversary_in(t, today.year())
                .filter(|d| *d <= today)
                .or_else(|| anniversary_in(t, today.year() - 1));
            last.is_some_and(|d| today - d <= s.duration())
        }
    }
}

/// The date's anniversary in `year`; 29 February falls on 28 February in
/// common years.
fn anniversary_in(t: DateTime<Utc>, year: i32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(year, t.month(), t.day())
        .or_else(|| NaiveDate::from_ymd_opt(year, t.month(), 28))
}

// ---------------------------------------------------------------- parsing

const PROFILE_UNSUPPORTED: &[&str] = &[
    "profile-postal-code-distance",
    "profile-predictive-analytics",
    "profile-predictive-analytics-date",
    "profile-predictive-analytics-string",
    "profile-predictive-analytics-numeric",
    "profile-predictive-analytics-channel-affinity-priority",
    "profile-predictive-analytics-channel-affinity-rank",
    "profile-marketing-consent",
    "profile-sample",
    "profile-has-custom-object",
    "profile-permissions",
    "profile-has-not-received-email-message",
    "profile-has-not-received-sms-message",
    "profile-has-not-received-push-message",
    "profile-not-in-flow",
];

const EVENT_UNSUPPORTED: &[&str] = &[
    "custom-object-trigger",
    "custom-object-property",
    "low-inventory-property",
    "low-inventory",
];

/// Parse `{condition_groups: [{conditions: […]}, …]}`.
pub(crate) fn parse_groups(at: &At<'_>, scope: Scope) -> Result<ConditionGroups, FlowError> {
    let groups = at.req("condition_groups")?.items()?;
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let conditions = g.req("conditions")?;
        let items = conditions.items()?;
        if items.is_empty() {
            return Err(conditions.malformed("a condition group needs at least one condition"));
        }
        let mut group = Vec::with_capacity(items.len());
        for c in &items {
            group.push(parse_condition(c, scope)?);
        }
        out.push(group);
    }
    Ok(ConditionGroups { groups: out })
}

fn parse_condition(at: &At<'_>, scope: Scope) -> Result<Condition, FlowError> {
    let ty_at = at.req("type")?;
    let ty = ty_at.str()?;
    let profile_kind = matches!(
        ty,
        "profile-property" | "profile-group-membership" | "profile-metric" | "profile-region"
    ) || PROFILE_UNSUPPORTED.contains(&ty);
    let event_kind =
        matches!(ty, "metric-property" | "price-drop-property") || EVENT_UNSUPPORTED.contains(&ty);
    if !profile_kind && !event_kind {
        return Err(ty_at.err(FlowErrorKind::UnknownConditionType(ty.into())));
    }
    if (scope == Scope::Profile && event_kind) || (scope == Scope::Event && profile_kind) {
        return Err(ty_at.err(FlowErrorKind::ConditionNotAllowed {
            kind: ty.into(),
            place: scope.place(),
        }));
    }
    match ty {
        "profile-property" => {
            let p = at.req("property")?;
            let property = PropertyPath::parse(p.str()?).ok_or_else(|| {
                p.malformed("use a profile attribute such as 'email' or properties['name']")
            })?;
            let filter = parse_filter(&at.req("filter")?)?;
            Ok(Condition::ProfileProperty { property, filter })
        }
        "profile-group-membership" => {
            let is_member = at.req("is_member")?.bool()?;
            let ids = at.req("group_ids")?;
            let group_ids = ids.strings()?;
            if group_ids.is_empty() {
                return Err(ids.malformed("name at least one list or segment"));
            }
            Ok(Condition::GroupMembership {
                is_member,
                group_ids,
            })
        }
        "profile-metric" => {
            let metric_id = at.req_str("metric_id")?.to_owned();
            let measurement = match at.choice("measurement", &["count", "sum"])? {
                "count" => Measurement::Count,
                _ => Measurement::Sum,
            };
            let compare = match parse_filter(&at.req("measurement_filter")?)? {
                Filter::Number(n) => n,
                _ => {
                    return Err(FlowError::new(
                        at.ptr_of("measurement_filter"),
                        FlowErrorKind::Malformed("must be a numeric filter".into()),
                    ))
                }
            };
            let timeframe = parse_timeframe(&at.req("timeframe_filter")?)?;
            let mut filters = Vec::new();
            if let Some(list) = at.get("metric_filters") {
                for f in list.items()? {
                    let property = f.req_str("property")?.to_owned();
                    let filter = f.get("filter").map(|x| parse_filter(&x)).transpose()?;
                    filters.push(PropertyFilter { property, filter });
                }
            }
            Ok(Condition::ProfileMetric {
                query: MetricQuery {
                    metric_id,
                    measurement,
                    timeframe,
                    filters,
                },
                compare,
            })
        }
        "profile-region" => {
            let in_region = at.req("in_region")?.bool()?;
            let region = match at.choice("region", &["european_union", "united_states"])? {
                "european_union" => Region::EuropeanUnion,
                _ => Region::UnitedStates,
            };
            Ok(Condition::Region { in_region, region })
        }
        "metric-property" | "price-drop-property" => {
            let field = at.req_str("field")?.to_owned();
            let filter = parse_filter(&at.req("filter")?)?;
            Ok(Condition::EventProperty { field, filter })
        }
        other => Err(ty_at.err(FlowErrorKind::UnsupportedConditionType(other.into()))),
    }
}

fn parse_timeframe(at: &At<'_>) -> Result<Timeframe, FlowError> {
    let op = at.req_str("operator")?;
    match op {
        "alltime" => Ok(Timeframe::AllTime),
        "flow-start" => Ok(Timeframe::FlowStart),
        _ => match parse_filter(at)? {
            Filter::Date(
                d @ (DateFilter::Before(_)
                | DateFilter::After(_)
                | DateFilter::Between(..)
                | DateFilter::InTheLast(_)
                | DateFilter::AtLeast(_)
                | DateFilter::InTheNext(_)
                | DateFilter::Ago { .. }),
            ) => Ok(Timeframe::Date(d)),
            _ => Err(at.malformed(format!("'{op}' cannot be used as a timeframe"))),
        },
    }
}

fn parse_filter(at: &At<'_>) -> Result<Filter, FlowError> {
    let ty = at.req_str("type")?;
    let op_at = at.req("operator")?;
    let op = op_at.str()?;
    let bad_op = || op_at.malformed(format!("unknown operator '{op}' for a {ty} filter"));
    match ty {
        "string" => parse_string_filter(at, op).and_then(|f| f.ok_or_else(bad_op)),
        "numeric" => match op {
            "between" => {
                let start = at.req("start")?.f64()?;
                let end = at.req("end")?.f64()?;
                Ok(Filter::NumberBetween { start, end })
            }
            _ => {
                let op = NumOp::parse(op)
                    .filter(|_| !op.starts_with("length"))
                    .ok_or_else(bad_op)?;
                let value = at.req("value")?.f64()?;
                Ok(Filter::Number(NumericFilter { op, value }))
            }
        },
        "boolean" => match op {
            "equals" => Ok(Filter::Boolean(at.req("value")?.bool()?)),
            _ => Err(bad_op()),
        },
        "date" => parse_date_filter(at, op).and_then(|f| f.ok_or_else(bad_op)),
        "list" => parse_list_filter(at, op).and_then(|f| f.ok_or_else(bad_op)),
        "existence" => match op {
            "is-set" => Ok(Filter::Exists(true)),
            "not-set" => Ok(Filter::Exists(false)),
            _ => Err(bad_op()),
        },
        other => Err(FlowError::new(
            at.ptr_of("type"),
            FlowErrorKind::Malformed(format!("unknown filter type '{other}'")),
        )),
    }
}

fn parse_string_filter(at: &At<'_>, op: &str) -> Result<Option<Filter>, FlowError> {
    let text = |op| -> Result<Option<Filter>, FlowError> {
        let value = at
            .get("value")
            .map(|v| v.str().map(str::to_owned))
            .transpose()?;
        Ok(Some(Filter::Text { op, value }))
    };
    match op {
        "equals" => text(TextOp::Equals),
        "not-equals" => text(TextOp::NotEquals),
        "contains" => text(TextOp::Contains),
        "not-contains" => text(TextOp::NotContains),
        "starts-with" => text(TextOp::StartsWith),
        "not-starts-with" => text(TextOp::NotStartsWith),
        "ends-with" => text(TextOp::EndsWith),
        "not-ends-with" => text(TextOp::NotEndsWith),
        "regex" | "nregex" => {
            let v = at.req("value")?;
            let src = v.str()?;
            let re = regex::RegexBuilder::new(src)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| v.malformed(format!("invalid regular expression: {e}")))?;
            Ok(Some(Filter::Pattern {
                negate: op == "nregex",
                pattern: Pattern(re),
            }))
        }
        "in" | "not-in" => Ok(Some(Filter::TextIn {
            negate: op == "not-in",
            values: at.req("value")?.strings()?,
        })),
        _ => Ok(None),
    }
}

fn parse_instant(at: &At<'_>, key: &str) -> Result<DateTime<Utc>, FlowError> {
    let v = at.req(key)?;
    let s = v.str()?;
    parse_date_text(s).ok_or_else(|| v.malformed(format!("'{s}' is not an ISO 8601 date-time")))
}

fn parse_span(at: &At<'_>) -> Result<Span, FlowError> {
    let unit_at = at.req("unit")?;
    let unit = SpanUnit::parse(unit_at.str()?)
        .ok_or_else(|| unit_at.malformed("unit must be one of: day, hour, week"))?;
    let q = at.req("quantity")?;
    let quantity = q.i64()?;
    if quantity < 0 {
        return Err(q.malformed("quantity must not be negative"));
    }
    Ok(Span { quantity, unit })
}

fn parse_date_filter(at: &At<'_>, op: &str) -> Result<Option<Filter>, FlowError> {
    let d = match op {
        "before" => DateFilter::Before(parse_instant(at, "date")?),
        "after" => DateFilter::After(parse_instant(at, "date")?),
        "between-static" => {
            DateFilter::Between(parse_instant(at, "start")?, parse_instant(at, "end")?)
        }
        "in-the-last" => DateFilter::InTheLast(parse_span(at)?),
        "at-least" => DateFilter::AtLeast(parse_span(at)?),
        "in-the-next" => DateFilter::InTheNext(parse_span(at)?),
        "anniversary-last" => DateFilter::AnniversaryLast(parse_span(at)?),
        "anniversary-next" => DateFilter::AnniversaryNext(parse_span(at)?),
        "between" => {
            let unit_at = at.req("unit")?;
            let unit = SpanUnit::parse(unit_at.str()?)
                .ok_or_else(|| unit_at.malformed("unit must be one of: day, hour, week"))?;
            let start = at.req("start")?.i64()?;
            let end_at = at.req("end")?;
            let end = end_at.i64()?;
            if start < 0 || end < start {
                return Err(end_at.malformed("need 0 <= start <= end"));
            }
            DateFilter::Ago { start, end, unit }
        }
        "calendar-month" => {
            let v = at.req("value")?;
            let m = v.i64()?;
            if !(1..=12).contains(&m) {
                return Err(v.malformed("month must be between 1 and 12"));
            }
            DateFilter::CalendarMonth(m as u32)
        }
        "anniversary" => DateFilter::Anniversary,
        "anniversary-month" => DateFilter::AnniversaryMonth,
        _ => return Ok(None),
    };
    Ok(Some(Filter::Date(d)))
}

fn parse_list_filter(at: &At<'_>, op: &str) -> Result<Option<Filter>, FlowError> {
    Ok(Some(match op {
        "contains" | "not-contains" => Filter::ListContains {
            negate: op == "not-contains",
            value: at.value.get("value").cloned().unwrap_or(Value::Null),
        },
        "contains-substring" | "not-contains-substring" => Filter::ListSubstring {
            negate: op.starts_with("not"),
            value: at.opt_str("value")?.unwrap_or("").to_owned(),
        },
        "contains-all" | "contains-any" | "not-contains-all" | "not-contains-any" => {
            let values = at.req("value")?.strings()?;
            let op = match op {
                "contains-all" => ListSetOp::ContainsAll,
                "contains-any" => ListSetOp::ContainsAny,
                "not-contains-all" => ListSetOp::NotContainsAll,
                _ => ListSetOp::NotContainsAny,
            };
            Filter::ListSet { op, values }
        }
        _ if op.starts_with("length-") => match NumOp::parse(op) {
            Some(nop) => Filter::ListLength {
                op: nop,
                value: at.req("value")?.i64()?,
            },
            None => return Ok(None),
        },
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .expect("test timestamp")
    }

    const NOW: &str = "2026-06-10T12:00:00Z";

    fn groups(v: Value, scope: Scope) -> ConditionGroups {
        parse_groups(&At::new(&v, ""), scope).expect("valid conditions")
    }

    fn profile() -> ProfileFacts {
        ProfileFacts {
            profile: json!({
                "email": "Ada@Example.com",
                "first_name": "Ada",
                "location": {"city": "Boston"},
                "properties": {
                    "Favorite Color": "Blue",
                    "Age": 36,
                    "Score": "12.5",
                    "VIP": true,
                    "Birthday": "1990-06-15",
                    "Signed Up": "2026-06-01T09:00:00Z",
                    "Tags": ["alpha", "Beta"],
                    "Empty": ""
                }
            }),
            memberships: ["L1".to_owned(), "S9".to_owned()].into_iter().collect(),
            ..ProfileFacts::default()
        }
    }

    fn check(property: &str, filter: Value) -> bool {
        let g = groups(
            json!({"condition_groups": [{"conditions": [{"type": "profile-property", "property": property, "filter": filter}]}]}),
            Scope::Profile,
        );
        let p = profile();
        evaluate(&g, &Facts::new(utc(NOW), &p))
    }

    #[test]
    fn property_paths() {
        assert_eq!(
            PropertyPath::parse("email"),
            Some(PropertyPath(vec!["email".into()]))
        );
        assert_eq!(
            PropertyPath::parse("properties['Favorite Color']"),
            Some(PropertyPath(vec![
                "properties".into(),
                "Favorite Color".into()
            ]))
        );
        assert_eq!(
            PropertyPath::parse("location[\"city\"]"),
            Some(PropertyPath(vec!["location".into(), "city".into()]))
        );
        assert_eq!(PropertyPath::parse("properties['open"), None);
        assert_eq!(PropertyPath::parse("['x']"), None);
    }

    #[test]
    fn profile_property_filters() {
        let s = |op: &str, v: Value| json!({"type": "string", "operator": op, "value": v});
        let n = |op: &str, v: f64| json!({"type": "numeric", "operator": op, "value": v});
        let d = |op: &str, unit: &str, q: i64| json!({"type": "date", "operator": op, "unit": unit, "quantity": q});
        let fav = "properties['Favorite Color']";
        let cases: Vec<(&str, Value, bool)> = vec![
            (fav, s("equals", json!("blue")), true),
            (fav, s("equals", json!("red")), false),
            (fav, s("not-equals", json!("red")), true),
            (fav, s("contains", json!("LU")), true),
            (fav, s("not-contains", json!("lu")), false),
            (fav, s("starts-with", json!("bl")), true),
            (fav, s("not-starts-with", json!("bl")), false),
            (fav, s("ends-with", json!("ue")), true),
            (fav, s("not-ends-with", json!("x")), true),
            (fav, s("regex", json!("^B.u")), true),
            (fav, s("nregex", json!("^B.u")), false),
            (fav, s("in", json!(["red", "BLUE"])), true),
            (fav, s("not-in", json!(["red"])), true),
            ("email", s("ends-with", json!("@example.com")), true),
            ("location['city']", s("equals", json!("boston")), true),
            // Unset: positive operators fail, negated ones hold.
            ("properties['Nope']", s("equals", json!("x")), false),
            ("properties['Nope']", s("not-equals", json!("x")), true),
            ("properties['Nope']", s("not-in", json!(["x"])), true),
            ("properties['Age']", n("greater-than", 30.0), true),
            ("properties['Age']", n("less-than-or-equal", 35.0), false),
            ("properties['Age']", n("equals", 36.0), true),
            ("properties['Age']", n("not-equals", 36.0), false),
            (
                "properties['Score']",
                n("greater-than-or-equal", 12.5),
                true,
            ),
            (
                "properties['Age']",
                json!({"type": "numeric", "operator": "between", "start": 30, "end": 40}),
                true,
            ),
            (
                "properties['VIP']",
                json!({"type": "boolean", "operator": "equals", "value": true}),
                true,
            ),
            (
                "properties['VIP']",
                json!({"type": "boolean", "operator": "equals", "value": false}),
                false,
            ),
            ("properties['Signed Up']", d("in-the-last", "day", 10), true),
            ("properties['Signed Up']", d("in-the-last", "day", 5), false),
            ("properties['Signed Up']", d("at-least", "week", 1), true),
            ("properties['Signed Up']", d("in-the-next", "day", 3), false),
            (
                "properties['Signed Up']",
                json!({"type": "date", "operator": "between", "start": 5, "end": 10, "unit": "day"}),
                true,
            ),
            (
                "properties['Signed Up']",
                json!({"type": "date", "operator": "before", "date": "2026-06-02T00:00:00+00:00"}),
                true,
            ),
            (
                "properties['Signed Up']",
                json!({"type": "date", "operator": "after", "date": "2026-06-02T00:00:00+00:00"}),
                false,
            ),
            (
                "properties['Signed Up']",
                json!({"type": "date", "operator": "between-static",
                "start": "2026-05-01T00:00:00+00:00", "end": "2026-06-05T00:00:00+00:00"}),
                true,
            ),
            (
                "properties['Birthday']",
                d("anniversary-next", "day", 7),
                true,
            ),
            (
                "properties['Birthday']",
                d("anniversary-next", "day", 3),
                false,
            ),
            (
                "properties['Birthday']",
                d("anniversary-last", "day", 30),
                false,
            ),
            (
                "properties['Birthday']",
                json!({"type": "date", "operator": "calendar-month", "value": 6}),
                true,
            ),
            (
                "properties['Birthday']",
                json!({"type": "date", "operator": "anniversary-month"}),
                true,
            ),
            (
                "properties['Birthday']",
                json!({"type": "date", "operator": "anniversary"}),
                false,
            ),
            (
                "properties['Tags']",
                json!({"type": "list", "operator": "contains", "value": "beta"}),
                true,
            ),
            (
                "properties['Tags']",
                json!({"type": "list", "operator": "not-contains", "value": "gamma"}),
                true,
            ),
            (
                "properties['Tags']",
                json!({"type": "list", "operator": "length-equals", "value": 2}),
                true,
            ),
            (
                "properties['Tags']",
                json!({"type": "list", "operator": "length-greater-than", "value": 2}),
                false,
            ),
            (
                "properties['Nope']",
                json!({"type": "list", "operator": "length-less-than", "value": 1}),
                true,
            ),
            (
                "properties['Tags']",
                json!({"type": "existence", "operator": "is-set"}),
                true,
            ),
            (
                "properties['Empty']",
                json!({"type": "existence", "operator": "is-set"}),
                false,
            ),
            (
                "properties['Nope']",
                json!({"type": "existence", "operator": "not-set"}),
                true,
            ),
            (
                "first_name",
                json!({"type": "existence", "operator": "not-set"}),
                false,
            ),
        ];
        for (property, filter, want) in cases {
            assert_eq!(check(property, filter.clone()), want, "{property} {filter}");
        }
    }

    #[test]
    fn groups_are_and_of_ors() {
        let p = profile();
        let yes =
            json!({"type": "profile-group-membership", "is_member": true, "group_ids": ["L1"]});
        let no =
            json!({"type": "profile-group-membership", "is_member": true, "group_ids": ["L2"]});
        let cases = [
            (json!([]), true),
            (json!([{"conditions": [yes]}]), true),
            (json!([{"conditions": [no, yes]}]), true),
            (json!([{"conditions": [no]}]), false),
            (json!([{"conditions": [yes]}, {"conditions": [no]}]), false),
            (
                json!([{"conditions": [yes]}, {"conditions": [no, yes]}]),
                true,
            ),
        ];
        for (gs, want) in cases {
            let g = groups(json!({"condition_groups": gs}), Scope::Profile);
            assert_eq!(evaluate(&g, &Facts::new(utc(NOW), &p)), want, "{gs}");
        }
    }

    #[test]
    fn group_membership() {
        let p = profile();
        let cases = [
            (true, json!(["L1"]), true),
            (true, json!(["L2", "S9"]), true),
            (true, json!(["L2"]), false),
            (false, json!(["L2"]), true),
            (false, json!(["L2", "L1"]), false),
        ];
        for (is_member, ids, want) in cases {
            let g = groups(
                json!({"condition_groups": [{"conditions": [
                {"type": "profile-group-membership", "is_member": is_member, "group_ids": ids}]}]}),
                Scope::Profile,
            );
            assert_eq!(
                evaluate(&g, &Facts::new(utc(NOW), &p)),
                want,
                "{is_member} {ids}"
            );
        }
    }

    fn metric_condition(op: &str, value: f64, timeframe: Value) -> Value {
        json!({"condition_groups": [{"conditions": [{
            "type": "profile-metric", "metric_id": "M1", "measurement": "count",
            "measurement_filter": {"type": "numeric", "operator": op, "value": value},
            "timeframe_filter": timeframe,
            "metric_filters": [{"property": "Brand", "filter": {"type": "string", "operator": "equals", "value": "Acme"}}]
        }]}]})
    }

    #[test]
    fn profile_metric_uses_caller_answers() {
        let g = groups(
            metric_condition(
                "greater-than",
                1.0,
                json!({"type": "date", "operator": "in-the-last", "unit": "day", "quantity": 30}),
            ),
            Scope::Profile,
        );
        let queries = required_metric_queries(&g);
        assert_eq!(queries.len(), 1);
        let now = utc(NOW);
        assert_eq!(
            queries[0].window(now, None),
            (Some(now - Duration::days(30)), None)
        );
        assert!(queries[0].matches_event(&json!({"Brand": "acme"}), now));
        assert!(!queries[0].matches_event(&json!({"Brand": "Other"}), now));

        let mut p = profile();
        // No answer supplied: unknown, so the condition fails.
        assert!(!evaluate(&g, &Facts::new(now, &p)));
        p.metrics.insert(queries[0].clone(), 2.0);
        assert!(evaluate(&g, &Facts::new(now, &p)));
        p.metrics.insert(queries[0].clone(), 1.0);
        assert!(!evaluate(&g, &Facts::new(now, &p)));
    }

    #[test]
    fn metric_timeframes() {
        let now = utc(NOW);
        let start = utc("2026-06-01T00:00:00Z");
        let cases = [
            (json!({"type": "date", "operator": "alltime"}), (None, None)),
            (
                json!({"type": "date", "operator": "flow-start"}),
                (Some(start), None),
            ),
            (
                json!({"type": "date", "operator": "at-least", "unit": "week", "quantity": 1}),
                (None, Some(now - Duration::weeks(1))),
            ),
            (
                json!({"type": "date", "operator": "between", "start": 1, "end": 3, "unit": "hour"}),
                (
                    Some(now - Duration::hours(3)),
                    Some(now - Duration::hours(1)),
                ),
            ),
            (
                json!({"type": "date", "operator": "between-static", "start": "2026-01-01T00:00:00+00:00", "end": "2026-02-01T00:00:00+00:00"}),
                (
                    Some(utc("2026-01-01T00:00:00Z")),
                    Some(utc("2026-02-01T00:00:00Z")),
                ),
            ),
        ];
        for (tf, want) in cases {
            let g = groups(metric_condition("equals", 0.0, tf.clone()), Scope::Profile);
            assert_eq!(
                required_metric_queries(&g)[0].window(now, Some(start)),
                want,
                "{tf}"
            );
        }
        let bad = metric_condition(
            "equals",
            0.0,
            json!({"type": "date", "operator": "anniversary"}),
        );
        assert!(parse_groups(&At::new(&bad, ""), Scope::Profile).is_err());
    }

    #[test]
    fn duplicate_metric_queries_are_fetched_once() {
        let c = metric_condition(
            "equals",
            0.0,
            json!({"type": "date", "operator": "alltime"}),
        );
        let cond = c["condition_groups"][0]["conditions"][0].clone();
        let g = groups(
            json!({"condition_groups": [{"conditions": [cond.clone()]}, {"conditions": [cond]}]}),
            Scope::Profile,
        );
        assert_eq!(required_metric_queries(&g).len(), 1);
    }

    #[test]
    fn event_property_conditions() {
        let g = groups(
            json!({"condition_groups": [{"conditions": [
                {"type": "metric-property", "metric_id": "M", "field": "$value",
                 "filter": {"type": "numeric", "operator": "greater-than", "value": 50}},
                {"type": "metric-property", "metric_id": "M", "field": "Item.Brand",
                 "filter": {"type": "string", "operator": "equals", "value": "acme"}}
            ]}]}),
            Scope::Event,
        );
        let p = ProfileFacts::default();
        let now = utc(NOW);
        let cases = [
            (Some(json!({"$value": 80})), true),
            (Some(json!({"$value": 20})), false),
            (Some(json!({"$value": 20, "Item": {"Brand": "Acme"}})), true),
            (Some(json!({"Item.Brand": "ACME"})), true),
            (None, false),
        ];
        for (event, want) in cases {
            assert_eq!(
                evaluate(&g, &Facts::new(now, &p).with_event(event.as_ref())),
                want,
                "{event:?}"
            );
        }
    }

    #[test]
    fn malformed_conditions() {
        let cases = [
            (
                json!({"condition_groups": [{"conditions": []}]}),
                "/condition_groups/0/conditions",
            ),
            (
                json!({"condition_groups": [{"conditions": [{"type": "profile-property", "property": "email",
                "filter": {"type": "string", "operator": "sounds-like", "value": "x"}}]}]}),
                "/condition_groups/0/conditions/0/filter/operator",
            ),
            (
                json!({"condition_groups": [{"conditions": [{"type": "profile-property", "property": "email",
                "filter": {"type": "colour", "operator": "equals"}}]}]}),
                "/condition_groups/0/conditions/0/filter/type",
            ),
            (
                json!({"condition_groups": [{"conditions": [{"type": "profile-group-membership", "is_member": true, "group_ids": []}]}]}),
                "/condition_groups/0/conditions/0/group_ids",
            ),
            (
                json!({"condition_groups": [{"conditions": [{"type": "profile-property", "property": "properties['x']",
                "filter": {"type": "date", "operator": "calendar-month", "value": 13}}]}]}),
                "/condition_groups/0/conditions/0/filter/value",
            ),
        ];
        for (v, ptr) in cases {
            let err = parse_groups(&At::new(&v, ""), Scope::Profile).expect_err("invalid");
            assert_eq!(err.pointer, ptr, "{v}: {err}");
        }
    }

    #[test]
    fn dates_in_profile_formats() {
        let cases = [
            (json!("2026-06-01T09:00:00Z"), Some("2026-06-01T09:00:00Z")),
            (
                json!("2026-06-01T09:00:00+02:00"),
                Some("2026-06-01T07:00:00Z"),
            ),
            (json!("2026-06-01 09:00:00"), Some("2026-06-01T09:00:00Z")),
            (json!("2026-06-01"), Some("2026-06-01T00:00:00Z")),
            (json!("06/01/2026"), Some("2026-06-01T00:00:00Z")),
            (json!(1780304400), Some("2026-06-01T09:00:00Z")),
            (json!("soon"), None),
            (json!(true), None),
        ];
        for (v, want) in cases {
            assert_eq!(as_datetime(&v), want.map(utc), "{v}");
        }
    }
}
