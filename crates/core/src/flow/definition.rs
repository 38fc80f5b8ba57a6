//! Klaviyo's `FlowDefinition` as typed Rust. The posted JSON is kept beside
//! the typed form so a GET returns what was posted (with ids assigned),
//! including fields Outflow does not interpret, such as email content.

use super::condition::{self, ConditionGroups, MetricQuery, Scope};
use super::delay::{self, TimeDelay, Zone};
use super::json::At;
use super::{FlowError, FlowErrorKind};
use chrono::{NaiveDate, NaiveTime, Weekday};
use serde_json::{Map, Value};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub struct FlowDefinition {
    pub triggers: Vec<Trigger>,
    pub profile_filter: Option<ConditionGroups>,
    pub actions: Vec<Action>,
    pub entry_action_id: Option<String>,
    pub reentry_criteria: Option<ReentryCriteria>,
    raw: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// Every event of the metric, subject to the trigger filter.
    Metric {
        metric_id: String,
        filter: Option<ConditionGroups>,
    },
    /// A profile newly joins the list.
    List {
        list_id: String,
    },
    /// A profile newly qualifies for the segment.
    Segment {
        segment_id: String,
    },
    Date(DateTrigger),
    PriceDrop(PriceDropTrigger),
}

impl Trigger {
    /// The `type` Klaviyo uses for this trigger.
    pub fn type_name(&self) -> &'static str {
        match self {
            Trigger::Metric { .. } => "metric",
            Trigger::List { .. } => "list",
            Trigger::Segment { .. } => "segment",
            Trigger::Date(_) => "date",
            Trigger::PriceDrop(_) => "price-drop",
        }
    }

    /// Whether runs of this trigger carry an event (and so may use trigger
    /// splits and `event` in templates).
    pub fn has_event(&self) -> bool {
        matches!(self, Trigger::Metric { .. } | Trigger::PriceDrop(_))
    }

    /// The trigger filter checked once at entry, if any.
    pub fn filter(&self) -> Option<&ConditionGroups> {
        match self {
            Trigger::Metric { filter, .. } => filter.as_ref(),
            Trigger::PriceDrop(p) => p.filter.as_ref(),
            _ => None,
        }
    }
}

/// `date` trigger on a profile date property.
#[derive(Debug, Clone, PartialEq)]
pub struct DateTrigger {
    pub property: String,
    pub unit_before: DateUnit,
    pub value_before: i64,
    pub recurrence: Recurrence,
    pub timezone: Zone,
    pub trigger_time: NaiveTime,
    pub trigger_days: Option<Vec<Weekday>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateUnit {
    Days,
    Weeks,
    Months,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recurrence {
    Annually,
    Monthly,
    Weekly,
    Never,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PriceDropTrigger {
    pub amount: f64,
    pub percent: bool,
    pub audience: Vec<Audience>,
    pub timeframe_days: i64,
    pub currency: String,
    pub filter: Option<ConditionGroups>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Viewed,
    CheckoutStarted,
}

/// `{duration, unit}`; see [`super::machine::may_enter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReentryCriteria {
    pub duration: i64,
    pub unit: ReentryUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReentryUnit {
    Hour,
    Day,
    Week,
    AllTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// The permanent id (assigned by [`assign_ids`] for new actions).
    pub id: Option<String>,
    /// The client's placeholder for a new action, used by links until ids
    /// are assigned.
    pub temporary_id: Option<String>,
    /// Position in `actions`, for error pointers.
    pub index: usize,
    pub kind: ActionKind,
    pub links: Links,
    /// `data.status`; `None` follows the flow's status.
    pub status: Option<ActionStatus>,
}

impl Action {
    /// The name links use for this action: its id, else its temporary id.
    pub fn key(&self) -> Option<&str> {
        self.id.as_deref().or(self.temporary_id.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Links {
    pub next: Option<String>,
    pub next_if_true: Option<String>,
    pub next_if_false: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionStatus {
    Disabled,
    Draft,
    Manual,
    Live,
}

impl ActionStatus {
    /// The name in `data.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Disabled => "disabled",
            ActionStatus::Draft => "draft",
            ActionStatus::Manual => "manual",
            ActionStatus::Live => "live",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ActionKind {
    TimeDelay(TimeDelay),
    /// A profile filter evaluated once, when the profile reaches it.
    ConditionalSplit(ConditionGroups),
    /// A filter on the trigger event's properties.
    TriggerSplit(ConditionGroups),
    UpdateProfile(Vec<ProfileOperation>),
    ListUpdate {
        list_id: String,
        /// `on_execution`: true adds to the list, false removes.
        add: bool,
    },
    SendWebhook(Webhook),
    /// Email, SMS or push: handed to a pluggable sender; content stays in
    /// the raw JSON.
    Message(Channel),
}

impl ActionKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            ActionKind::TimeDelay(_) => "time-delay",
            ActionKind::ConditionalSplit(_) => "conditional-split",
            ActionKind::TriggerSplit(_) => "trigger-split",
            ActionKind::UpdateProfile(_) => "update-profile",
            ActionKind::ListUpdate { .. } => "list-update",
            ActionKind::SendWebhook(_) => "send-webhook",
            ActionKind::Message(Channel::Email) => "send-email",
            ActionKind::Message(Channel::Sms) => "send-sms",
            ActionKind::Message(Channel::Push) => "send-push-notification",
        }
    }

    pub fn is_split(&self) -> bool {
        matches!(
            self,
            ActionKind::ConditionalSplit(_) | ActionKind::TriggerSplit(_)
        )
    }

    /// Actions that touch the outside world; only these have a status, wait
    /// for review in manual mode and are skipped when draft or disabled.
    pub fn has_effect(&self) -> bool {
        !matches!(
            self,
            ActionKind::TimeDelay(_)
                | ActionKind::ConditionalSplit(_)
                | ActionKind::TriggerSplit(_)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Sms,
    Push,
}

/// `send-webhook`'s `data.message`. `url`, header values and `body` are
/// templates, rendered by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// Outflow extension; Klaviyo only POSTs.
    pub method: String,
    /// Outflow extension: profile property key → JSON pointer into the
    /// response body, written back after a successful delivery.
    pub response_to_profile: Vec<(String, String)>,
}

pub const WEBHOOK_METHODS: &[&str] = &["POST", "PUT", "PATCH", "DELETE", "GET"];

#[derive(Debug, Clone, PartialEq)]
pub struct ProfileOperation {
    /// A custom property key.
    pub key: String,
    pub change: PropertyChange,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PropertyChange {
    /// `create` / `update` of a string, boolean, numeric or date property.
    Set(Value),
    /// A date set to the day the action runs.
    SetToday,
    ListAdd(String),
    ListRemove(String),
    Delete,
}

/// Apply update-profile operations to a profile's custom `properties`.
/// `today` is the run's calendar date (for `"today"` date values).
pub fn apply_operations(
    properties: &mut Map<String, Value>,
    operations: &[ProfileOperation],
    today: NaiveDate,
) {
    for op in operations {
        match &op.change {
            PropertyChange::Set(v) => {
                properties.insert(op.key.clone(), v.clone());
            }
            PropertyChange::SetToday => {
                properties.insert(
                    op.key.clone(),
                    Value::String(today.format("%Y-%m-%d").to_string()),
                );
            }
            PropertyChange::ListAdd(item) => {
                let slot = properties
                    .entry(op.key.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !slot.is_array() {
                    let old = std::mem::take(slot);
                    *slot = Value::Array(if old.is_null() { vec![] } else { vec![old] });
                }
                if let Value::Array(items) = slot {
                    if !items.iter().any(|i| i.as_str() == Some(item)) {
                        items.push(Value::String(item.clone()));
                    }
                }
            }
            PropertyChange::ListRemove(item) => {
                if let Some(Value::Array(items)) = properties.get_mut(&op.key) {
                    items.retain(|i| i.as_str() != Some(item));
                }
            }
            PropertyChange::Delete => {
                properties.remove(&op.key);
            }
        }
    }
}

const UNSUPPORTED_ACTIONS: &[&str] = &[
    "target-date",
    "countdown-delay",
    "back-in-stock-delay",
    "multi-branch-split",
    "action-output-split",
    "ab-test",
    "content-experiment",
    "send-whatsapp",
    "send-internal-alert",
    "code",
    "internal-service",
];

impl FlowDefinition {
    /// Parse a posted definition. `base` is the pointer of the definition
    /// in the request (e.g. `/data/attributes/definition`); every error
    /// found is returned, not just the first.
    pub fn parse(json: Value, base: &str) -> Result<FlowDefinition, Vec<FlowError>> {
        let mut errors = Vec::new();
        let root = At::new(&json, base);
        if json.as_object().is_none() {
            return Err(vec![root.malformed("the flow definition must be an object")]);
        }
        let mut triggers = Vec::new();
        match root.req("triggers").and_then(|t| t.items()) {
            Ok(items) => {
                for t in &items {
                    match parse_trigger(t) {
                        Ok(tr) => triggers.push(tr),
                        Err(e) => errors.push(e),
                    }
                }
            }
            Err(e) => errors.push(e),
        }
        let profile_filter = match root.get("profile_filter") {
            None => None,
            Some(f) => match condition::parse_groups(&f, Scope::Profile) {
                Ok(g) => Some(g),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
        };
        let mut actions = Vec::new();
        match root.req("actions").and_then(|a| a.items()) {
            Ok(items) => {
                for (index, a) in items.iter().enumerate() {
                    match parse_action(a, index) {
                        Ok(action) => actions.push(action),
                        Err(e) => errors.push(e),
                    }
                }
            }
            Err(e) => errors.push(e),
        }
        let entry_action_id = match root.opt_str("entry_action_id") {
            Ok(s) => s.map(str::to_owned),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let reentry_criteria = match root.get("reentry_criteria").map(|r| parse_reentry(&r)) {
            None => None,
            Some(Ok(r)) => Some(r),
            Some(Err(e)) => {
                errors.push(e);
                None
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(FlowDefinition {
            triggers,
            profile_filter,
            actions,
            entry_action_id,
            reentry_criteria,
            raw: json,
        })
    }

    /// The definition as posted, with assigned ids in place of temporary ids.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    pub fn into_raw(self) -> Value {
        self.raw
    }

    pub fn trigger(&self) -> Option<&Trigger> {
        self.triggers.first()
    }

    /// The action links and `entry_action_id` call `key`.
    pub fn action(&self, key: &str) -> Option<&Action> {
        self.actions.iter().find(|a| a.key() == Some(key))
    }

    /// Whether the profile filter or a conditional split asks about list or
    /// segment membership.
    pub fn reads_memberships(&self) -> bool {
        self.profile_filter
            .as_ref()
            .is_some_and(condition::names_groups)
            || self.actions.iter().any(|a| match &a.kind {
                ActionKind::ConditionalSplit(g) => condition::names_groups(g),
                _ => false,
            })
    }

    /// Every metric aggregate the profile filter and conditional splits may
    /// read, so the caller fetches them in one batch before advancing a run.
    pub fn required_metric_queries(&self) -> Vec<MetricQuery> {
        let mut out = Vec::new();
        if let Some(f) = &self.profile_filter {
            condition::collect_metric_queries(f, &mut out);
        }
        for a in &self.actions {
            if let ActionKind::ConditionalSplit(g) = &a.kind {
                condition::collect_metric_queries(g, &mut out);
            }
        }
        out
    }
}

/// Give every action without an `id` one from `next_id` (the caller decides
/// the numbering), and rewrite links and `entry_action_id` that named its
/// temporary id. Both the typed form and the raw JSON are updated.
pub fn assign_ids(def: &mut FlowDefinition, mut next_id: impl FnMut() -> String) {
    let mut renamed: HashMap<String, String> = HashMap::new();
    for action in &mut def.actions {
        if action.id.is_some() {
            continue;
        }
        let id = next_id();
        if let Some(tmp) = action.temporary_id.take() {
            renamed.insert(tmp, id.clone());
        }
        action.id = Some(id.clone());
        if let Some(Value::Object(obj)) = def
            .raw
            .get_mut("actions")
            .and_then(|a| a.get_mut(action.index))
        {
            obj.remove("temporary_id");
            obj.insert("id".into(), Value::String(id));
        }
    }
    if renamed.is_empty() {
        return;
    }
    let rename = |slot: &mut Option<String>| {
        if let Some(new) = slot.as_ref().and_then(|s| renamed.get(s)) {
            *slot = Some(new.clone());
        }
    };
    for action in &mut def.actions {
        rename(&mut action.links.next);
        rename(&mut action.links.next_if_true);
        rename(&mut action.links.next_if_false);
    }
    rename(&mut def.entry_action_id);
    if let Some(Value::Array(actions)) = def.raw.get_mut("actions") {
        for a in actions {
            if let Some(Value::Object(links)) = a.get_mut("links") {
                for (_, v) in links.iter_mut() {
                    if let Some(new) = v.as_str().and_then(|s| renamed.get(s)) {
                        *v = Value::String(new.clone());
                    }
                }
            }
        }
    }
    if let Some(v) = def.raw.get_mut("entry_action_id") {
        if let Some(new) = v.as_str().and_then(|s| renamed.get(s)) {
            *v = Value::String(new.clone());
        }
    }
}

fn parse_trigger(at: &At<'_>) -> Result<Trigger, FlowError> {
    let ty_at = at.req("type")?;
    match ty_at.str()? {
        "metric" => Ok(Trigger::Metric {
            metric_id: at.req_str("id")?.to_owned(),
            filter: at
                .get("trigger_filter")
                .map(|f| condition::parse_groups(&f, Scope::Event))
                .transpose()?,
        }),
        "list" => Ok(Trigger::List {
            list_id: at.req_str("id")?.to_owned(),
        }),
        "segment" => Ok(Trigger::Segment {
            segment_id: at.req_str("id")?.to_owned(),
        }),
        "date" => {
            let kind = at.opt_str("date_field_type")?.unwrap_or("profile-property");
            if kind != "profile-property" {
                return Err(ty_at.err(FlowErrorKind::UnsupportedTriggerType(format!(
                    "date ({kind})"
                ))));
            }
            parse_date_trigger(at).map(Trigger::Date)
        }
        "price-drop" => parse_price_drop(at).map(Trigger::PriceDrop),
        "low-inventory" => Err(ty_at.err(FlowErrorKind::UnsupportedTriggerType(
            "low-inventory".into(),
        ))),
        other => Err(ty_at.err(FlowErrorKind::UnknownTriggerType(other.into()))),
    }
}

fn parse_date_trigger(at: &At<'_>) -> Result<DateTrigger, FlowError> {
    let property = at.req_str("date_profile_property")?.to_owned();
    let unit_before = match at.get("timedelta_unit_before_date") {
        None => DateUnit::Weeks,
        Some(_) => match at.choice("timedelta_unit_before_date", &["days", "weeks", "months"])? {
            "days" => DateUnit::Days,
            "months" => DateUnit::Months,
            _ => DateUnit::Weeks,
        },
    };
    let v = at.req("timedelta_value_before_date")?;
    let value_before = v.i64()?;
    if value_before < 0 {
        return Err(v.malformed("must not be negative"));
    }
    let recurrence = match at.get("recurrence_frequency") {
        None => Recurrence::Monthly,
        Some(_) => match at.choice(
            "recurrence_frequency",
            &["annually", "monthly", "never", "weekly"],
        )? {
            "annually" => Recurrence::Annually,
            "weekly" => Recurrence::Weekly,
            "never" => Recurrence::Never,
            _ => Recurrence::Monthly,
        },
    };
    let timezone = match at.get("timezone") {
        None => Zone::Profile,
        Some(z) => delay::parse_zone(&z)?,
    };
    let trigger_time = delay::parse_time_of_day(&at.req("trigger_time")?)?;
    let trigger_days = at
        .get("trigger_days")
        .map(|d| delay::parse_weekdays(&d))
        .transpose()?;
    Ok(DateTrigger {
        property,
        unit_before,
        value_before,
        recurrence,
        timezone,
        trigger_time,
        trigger_days,
    })
}

fn parse_price_drop(at: &At<'_>) -> Result<PriceDropTrigger, FlowError> {
    let amt = at.req("price_drop_amount_value")?;
    let amount = amt.f64()?;
    if amount <= 0.0 {
        return Err(amt.malformed("the price drop must be greater than 0"));
    }
    let percent = match at.get("price_drop_amount_unit") {
        None => false,
        Some(_) => at.choice("price_drop_amount_unit", &["currency", "percent"])? == "percent",
    };
    if percent && amount > 100.0 {
        return Err(amt.malformed("a percentage drop cannot exceed 100"));
    }
    let aud = at.req("audience")?;
    let mut audience = Vec::new();
    for item in aud.items()? {
        audience.push(match item.str()? {
            "viewed" => Audience::Viewed,
            "checkout-started" => Audience::CheckoutStarted,
            other => {
                return Err(
                    item.malformed(format!("'{other}' is not one of: viewed, checkout-started"))
                )
            }
        });
    }
    if audience.is_empty() {
        return Err(aud.malformed("choose at least one audience"));
    }
    let timeframe_days = match at.get("timeframe_days") {
        None => 30,
        Some(t) => {
            let d = t.i64()?;
            if !(1..=365).contains(&d) {
                return Err(t.malformed("timeframe_days must be between 1 and 365"));
            }
            d
        }
    };
    let currency = match at.get("currency_type") {
        None => "usd".to_owned(),
        Some(_) => at.choice("currency_type", &["usd"])?.to_owned(),
    };
    let filter = at
        .get("trigger_filter")
        .map(|f| condition::parse_groups(&f, Scope::Event))
        .transpose()?;
    Ok(PriceDropTrigger {
        amount,
        percent,
        audience,
        timeframe_days,
        currency,
        filter,
    })
}

fn parse_reentry(at: &At<'_>) -> Result<ReentryCriteria, FlowError> {
    let d = at.req("duration")?;
    let duration = d.i64()?;
    if duration < 0 {
        return Err(d.malformed("must not be negative"));
    }
    let unit = match at.choice("unit", &["hour", "day", "week", "alltime"])? {
        "hour" => ReentryUnit::Hour,
        "day" => ReentryUnit::Day,
        "week" => ReentryUnit::Week,
        _ => ReentryUnit::AllTime,
    };
    if unit == ReentryUnit::AllTime && duration > 1 {
        return Err(d.malformed(
            "with unit 'alltime', duration 1 means no re-entry and 0 means re-entry allowed",
        ));
    }
    Ok(ReentryCriteria { duration, unit })
}

fn parse_status(data: Option<&At<'_>>) -> Result<Option<ActionStatus>, FlowError> {
    let Some(data) = data else { return Ok(None) };
    if data.get("status").is_none() {
        return Ok(None);
    }
    Ok(Some(
        match data.choice("status", &["disabled", "draft", "manual", "live"])? {
            "disabled" => ActionStatus::Disabled,
            "draft" => ActionStatus::Draft,
            "manual" => ActionStatus::Manual,
            _ => ActionStatus::Live,
        },
    ))
}

fn parse_links(at: &At<'_>) -> Result<Links, FlowError> {
    let Some(links) = at.get("links") else {
        return Ok(Links::default());
    };
    links.object()?;
    let one = |k: &str| links.opt_str(k).map(|s| s.map(str::to_owned));
    Ok(Links {
        next: one("next")?,
        next_if_true: one("next_if_true")?,
        next_if_false: one("next_if_false")?,
    })
}

fn parse_action(at: &At<'_>, index: usize) -> Result<Action, FlowError> {
    at.object()?;
    let ty_at = at.req("type")?;
    let ty = ty_at.str()?;
    let data = at.get("data");
    let need_data = || at.req("data");
    let kind = match ty {
        "time-delay" => ActionKind::TimeDelay(delay::parse(&need_data()?)?),
        "conditional-split" => {
            let d = need_data()?;
            ActionKind::ConditionalSplit(condition::parse_groups(
                &d.req("profile_filter")?,
                Scope::Profile,
            )?)
        }
        "trigger-split" => {
            let d = need_data()?;
            ActionKind::TriggerSplit(condition::parse_groups(
                &d.req("trigger_filter")?,
                Scope::Event,
            )?)
        }
        "update-profile" => {
            let d = need_data()?;
            let mut ops = Vec::new();
            for op in d.req("profile_operations")?.items()? {
                ops.push(parse_operation(&op)?);
            }
            ActionKind::UpdateProfile(ops)
        }
        "list-update" => {
            let d = need_data()?;
            ActionKind::ListUpdate {
                list_id: d.req_str("list_id")?.to_owned(),
                add: d.req("on_execution")?.bool()?,
            }
        }
        "send-webhook" => ActionKind::SendWebhook(parse_webhook(&need_data()?.req("message")?)?),
        "send-email" => ActionKind::Message(Channel::Email),
        "send-sms" => ActionKind::Message(Channel::Sms),
        "send-push-notification" | "send-mobile-push" => ActionKind::Message(Channel::Push),
        other if UNSUPPORTED_ACTIONS.contains(&other) => {
            return Err(ty_at.err(FlowErrorKind::UnsupportedActionType(other.into())))
        }
        other => return Err(ty_at.err(FlowErrorKind::UnknownActionType(other.into()))),
    };
    let status = if kind.has_effect() {
        parse_status(data.as_ref())?
    } else {
        None
    };
    Ok(Action {
        id: at.opt_str("id")?.map(str::to_owned),
        temporary_id: at.opt_str("temporary_id")?.map(str::to_owned),
        index,
        kind,
        links: parse_links(at)?,
        status,
    })
}

fn parse_operation(at: &At<'_>) -> Result<ProfileOperation, FlowError> {
    let operator = at.choice("operator", &["create", "update", "delete"])?;
    let key_at = at.req("property_key")?;
    let key = key_at.str()?.trim().to_owned();
    if key.is_empty() {
        return Err(key_at.malformed("the property key must not be empty"));
    }
    if operator == "delete" {
        return Ok(ProfileOperation {
            key,
            change: PropertyChange::Delete,
        });
    }
    let ty = at.choice(
        "property_type",
        &["string", "boolean", "numeric", "date", "list"],
    )?;
    let v = at.req("property_value")?;
    let change = match ty {
        "string" => PropertyChange::Set(Value::String(v.str()?.to_owned())),
        "boolean" => PropertyChange::Set(Value::Bool(v.bool()?)),
        "numeric" => {
            v.f64()?;
            PropertyChange::Set(v.value.clone())
        }
        "date" => {
            let s = v.str()?;
            if s == "today" {
                PropertyChange::SetToday
            } else if NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() {
                PropertyChange::Set(Value::String(s.to_owned()))
            } else {
                return Err(v.malformed(format!("'{s}' is not a date (YYYY-MM-DD) or 'today'")));
            }
        }
        _ => {
            let item = v.str()?.to_owned();
            match at.opt_str("property_operation")? {
                None | Some("add") => PropertyChange::ListAdd(item),
                Some("remove") => PropertyChange::ListRemove(item),
                Some(other) => {
                    return Err(FlowError::new(
                        at.ptr_of("property_operation"),
                        FlowErrorKind::Malformed(format!("'{other}' is not one of: add, remove")),
                    ))
                }
            }
        }
    };
    Ok(ProfileOperation { key, change })
}

fn parse_webhook(at: &At<'_>) -> Result<Webhook, FlowError> {
    let url = at.req_str("url")?.trim().to_owned();
    let mut headers = Vec::new();
    if let Some(h) = at.get("headers") {
        for (name, value) in h.object()? {
            let v = At::new(value, h.ptr_of(name));
            headers.push((name.clone(), v.str()?.to_owned()));
        }
    }
    let body = at.opt_str("body")?.map(str::to_owned);
    let method = match at.get("method") {
        None => "POST".to_owned(),
        Some(m) => {
            let s = m.str()?.to_ascii_uppercase();
            if !WEBHOOK_METHODS.contains(&s.as_str()) {
                return Err(m.err(FlowErrorKind::Webhook(format!(
                    "method must be one of: {}",
                    WEBHOOK_METHODS.join(", ")
                ))));
            }
            s
        }
    };
    let mut response_to_profile = Vec::new();
    if let Some(r) = at.get("response_to_profile") {
        for (key, ptr) in r.object()? {
            let p = At::new(ptr, r.ptr_of(key));
            let s = p.str()?;
            if !(s.is_empty() || s.starts_with('/')) {
                return Err(p.err(FlowErrorKind::Webhook(
                    "response_to_profile maps a profile property to a JSON pointer into the response, such as /data/id".into(),
                )));
            }
            response_to_profile.push((key.clone(), s.to_owned()));
        }
    }
    Ok(Webhook {
        url,
        headers,
        body,
        method,
        response_to_profile,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::fixtures::placed_order_flow;
    use serde_json::json;

    const BASE: &str = "/data/attributes/definition";

    fn parse(v: Value) -> FlowDefinition {
        FlowDefinition::parse(v, BASE).expect("valid definition")
    }

    fn parse_err(v: Value) -> Vec<FlowError> {
        FlowDefinition::parse(v, BASE).expect_err("invalid definition")
    }

    #[test]
    fn parses_every_action_of_the_fixture() {
        let def = parse(placed_order_flow());
        let kinds: Vec<_> = def.actions.iter().map(|a| a.kind.type_name()).collect();
        assert_eq!(
            kinds,
            [
                "time-delay",
                "conditional-split",
                "send-webhook",
                "update-profile",
                "list-update",
                "send-email"
            ]
        );
        assert!(
            matches!(def.trigger(), Some(Trigger::Metric { metric_id, filter: Some(_) }) if metric_id == "M-placed")
        );
        assert_eq!(def.entry_action_id.as_deref(), Some("action-1"));
        assert_eq!(
            def.reentry_criteria,
            Some(ReentryCriteria {
                duration: 7,
                unit: ReentryUnit::Day
            })
        );
        assert_eq!(
            def.actions[1].links.next_if_false.as_deref(),
            Some("action-5")
        );
        assert_eq!(def.actions[2].status, Some(ActionStatus::Live));
        assert_eq!(def.actions[5].status, Some(ActionStatus::Draft));
        let ActionKind::SendWebhook(w) = &def.actions[2].kind else {
            panic!("webhook")
        };
        assert_eq!(w.method, "POST");
        assert_eq!(w.headers[0], ("X-Token".into(), "secret".into()));
        assert_eq!(def.required_metric_queries().len(), 1);
    }

    #[test]
    fn memberships_are_read_only_when_a_condition_names_a_group() {
        let mut v = placed_order_flow();
        assert!(!parse(v.clone()).reads_memberships(), "a metric split");
        let group = json!({"condition_groups": [{"conditions": [
            {"type": "profile-group-membership", "is_member": false, "group_ids": ["L1"]}]}]});
        v["profile_filter"] = group.clone();
        assert!(parse(v.clone()).reads_memberships(), "the flow filter");
        v["profile_filter"] = Value::Null;
        v["actions"][1]["data"]["profile_filter"] = group;
        assert!(parse(v).reads_memberships(), "a split");
    }

    #[test]
    fn parses_all_five_trigger_types() {
        let triggers = [
            (json!({"type": "list", "id": "L1"}), "list"),
            (json!({"type": "segment", "id": "S1"}), "segment"),
            (json!({"type": "metric", "id": "M1"}), "metric"),
            (
                json!({"type": "date", "date_field_type": "profile-property", "date_profile_property": "Birthday",
                    "timedelta_value_before_date": 1, "timedelta_unit_before_date": "days",
                    "recurrence_frequency": "annually", "timezone": "Europe/Berlin", "trigger_time": "09:30",
                    "trigger_days": ["monday"]}),
                "date",
            ),
            (
                json!({"type": "price-drop", "price_drop_amount_value": 10, "price_drop_amount_unit": "percent",
                    "audience": ["viewed", "checkout-started"], "timeframe_days": 30, "currency_type": "usd",
                    "trigger_filter": {"condition_groups": [{"conditions": [{"type": "price-drop-property",
                        "metric_id": null, "field": "ProductName", "filter": {"type": "string", "operator": "contains", "value": "shoe"}}]}]}}),
                "price-drop",
            ),
        ];
        for (t, name) in triggers {
            let def = parse(json!({"triggers": [t], "actions": [], "entry_action_id": null}));
            assert_eq!(def.trigger().map(Trigger::type_name), Some(name));
        }
        let def = parse(
            json!({"triggers": [{"type": "date", "date_field_type": "profile-property",
            "date_profile_property": "Birthday", "timedelta_value_before_date": 2, "trigger_time": "09:00"}],
            "actions": [], "entry_action_id": null}),
        );
        let Some(Trigger::Date(d)) = def.trigger() else {
            panic!("date")
        };
        assert_eq!(
            (d.unit_before, d.recurrence, d.timezone),
            (DateUnit::Weeks, Recurrence::Monthly, Zone::Profile)
        );
    }

    #[test]
    fn structural_errors_carry_pointers() {
        let cases = [
            (json!({"triggers": [{"type": "webhook"}], "actions": [], "entry_action_id": null}),
             "/data/attributes/definition/triggers/0/type", "unknown trigger type 'webhook'"),
            (json!({"triggers": [{"type": "low-inventory"}], "actions": [], "entry_action_id": null}),
             "/data/attributes/definition/triggers/0/type", "not supported"),
            (json!({"triggers": [{"type": "list"}], "actions": [], "entry_action_id": null}),
             "/data/attributes/definition/triggers/0/id", "'id' is required"),
            (json!({"triggers": [], "actions": [{"id": "1", "type": "send-fax", "data": {}}], "entry_action_id": "1"}),
             "/data/attributes/definition/actions/0/type", "unknown action type 'send-fax'"),
            (json!({"triggers": [], "actions": [{"id": "1", "type": "ab-test", "data": {}}], "entry_action_id": "1"}),
             "/data/attributes/definition/actions/0/type", "not supported by Outflow yet"),
            (json!({"triggers": [], "actions": [{"id": "1", "type": "conditional-split", "data": {"profile_filter":
                {"condition_groups": [{"conditions": [{"type": "profile-astrology", "sign": "leo"}]}]}}}], "entry_action_id": "1"}),
             "/data/attributes/definition/actions/0/data/profile_filter/condition_groups/0/conditions/0/type", "unknown condition type"),
            (json!({"triggers": [], "actions": [{"id": "1", "type": "conditional-split", "data": {"profile_filter":
                {"condition_groups": [{"conditions": [{"type": "metric-property", "field": "x", "metric_id": "m",
                    "filter": {"type": "existence", "operator": "is-set"}}]}]}}}], "entry_action_id": "1"}),
             "/data/attributes/definition/actions/0/data/profile_filter/condition_groups/0/conditions/0/type", "not allowed in a profile filter"),
            (json!({"triggers": [], "actions": [{"id": "1", "type": "conditional-split", "data": {"profile_filter":
                {"condition_groups": [{"conditions": [{"type": "profile-sample", "percentage": 10}]}]}}}], "entry_action_id": "1"}),
             "/data/attributes/definition/actions/0/data/profile_filter/condition_groups/0/conditions/0/type", "not supported"),
            (json!({"triggers": [], "actions": [{"id": "1", "type": "time-delay", "data": {"unit": "fortnights", "value": 1}}], "entry_action_id": "1"}),
             "/data/attributes/definition/actions/0/data/unit", "not a delay unit"),
            (json!({"triggers": [], "actions": [{"id": "1", "type": "send-webhook", "data": {"message": {"url": "https://x", "method": "BREW"}}}], "entry_action_id": "1"}),
             "/data/attributes/definition/actions/0/data/message/method", "method must be one of"),
            (json!({"triggers": [], "actions": [{"id": "1", "type": "update-profile", "data": {"profile_operations": [
                {"operator": "update", "property_type": "date", "property_key": "d", "property_value": "soon"}]}}], "entry_action_id": "1"}),
             "/data/attributes/definition/actions/0/data/profile_operations/0/property_value", "not a date"),
            (json!({"triggers": [], "actions": [], "entry_action_id": null, "reentry_criteria": {"duration": 1, "unit": "month"}}),
             "/data/attributes/definition/reentry_criteria/unit", "not one of"),
            (json!({"triggers": [], "actions": [{"id": "1", "type": "send-sms", "data": {"status": "paused"}}], "entry_action_id": "1"}),
             "/data/attributes/definition/actions/0/data/status", "not one of"),
            (json!({"triggers": [], "actions": [{"id": "1", "type": "conditional-split", "data": {"profile_filter":
                {"condition_groups": [{"conditions": [{"type": "profile-property", "property": "email",
                    "filter": {"type": "string", "operator": "regex", "value": "("}}]}]}}}], "entry_action_id": "1"}),
             "/data/attributes/definition/actions/0/data/profile_filter/condition_groups/0/conditions/0/filter/value", "invalid regular expression"),
        ];
        for (def, ptr, detail) in cases {
            let errs = parse_err(def.clone());
            assert_eq!(errs[0].pointer, ptr, "{def}");
            assert!(
                errs[0].detail().contains(detail),
                "{}: {}",
                def,
                errs[0].detail()
            );
        }
    }

    #[test]
    fn collects_one_error_per_bad_action() {
        let errs = parse_err(json!({"triggers": [{"type": "nope"}], "actions": [
            {"id": "1", "type": "send-fax"}, {"id": "2", "type": "time-delay"}], "entry_action_id": "1"}));
        assert_eq!(errs.len(), 3);
    }

    #[test]
    fn assign_ids_rewrites_links_and_raw_json() {
        let mut def = parse(placed_order_flow());
        let mut n = 100;
        assign_ids(&mut def, || {
            n += 1;
            n.to_string()
        });
        assert_eq!(def.entry_action_id.as_deref(), Some("101"));
        assert_eq!(def.actions[1].links.next_if_true.as_deref(), Some("103"));
        assert_eq!(def.actions[1].links.next_if_false.as_deref(), Some("105"));
        assert!(def.actions.iter().all(|a| a.temporary_id.is_none()));
        let raw = def.raw();
        assert_eq!(raw["entry_action_id"], "101");
        assert_eq!(raw["actions"][0]["id"], "101");
        assert!(raw["actions"][0].get("temporary_id").is_none());
        assert_eq!(raw["actions"][1]["links"]["next_if_false"], "105");
        assert_eq!(raw["actions"][3]["links"]["next"], Value::Null);
        // Content Outflow does not interpret survives.
        assert_eq!(
            raw["actions"][5]["data"]["message"]["subject_line"],
            "Thanks!"
        );
        // Re-parsing the stored JSON gives the same typed definition.
        assert_eq!(parse(raw.clone()).actions, def.actions);
    }

    #[test]
    fn assign_ids_keeps_existing_ids() {
        let mut def = parse(
            json!({"triggers": [{"type": "list", "id": "L"}], "actions": [
            {"id": "7", "type": "send-sms", "links": {"next": "tmp"}},
            {"temporary_id": "tmp", "type": "send-sms"}], "entry_action_id": "7"}),
        );
        assign_ids(&mut def, || "8".into());
        assert_eq!(def.actions[0].id.as_deref(), Some("7"));
        assert_eq!(def.actions[0].links.next.as_deref(), Some("8"));
        assert_eq!(def.raw()["actions"][0]["links"]["next"], "8");
    }

    #[test]
    fn profile_operations_apply() {
        let def = parse(placed_order_flow());
        let ActionKind::UpdateProfile(ops) = &def.actions[3].kind else {
            panic!("ops")
        };
        let mut props = Map::new();
        props.insert("Tags".into(), json!(["new"]));
        let today = NaiveDate::from_ymd_opt(2026, 5, 1).expect("date");
        apply_operations(&mut props, ops, today);
        apply_operations(&mut props, ops, today);
        assert_eq!(
            Value::Object(props.clone()),
            json!({"Tags": ["new", "vip"], "Tier": "repeat"})
        );
        let more = [
            ProfileOperation {
                key: "Tags".into(),
                change: PropertyChange::ListRemove("new".into()),
            },
            ProfileOperation {
                key: "Tier".into(),
                change: PropertyChange::Delete,
            },
            ProfileOperation {
                key: "Seen".into(),
                change: PropertyChange::SetToday,
            },
        ];
        apply_operations(&mut props, &more, today);
        assert_eq!(
            Value::Object(props),
            json!({"Tags": ["vip"], "Seen": "2026-05-01"})
        );
    }
}
