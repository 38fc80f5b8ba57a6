//! One run (one profile's trip through one flow version) as a pure state
//! machine. The worker loads the run, gathers [`ProfileFacts`], calls
//! [`advance`], performs the returned effects and stores the new run with
//! its `wake_at`, all keyed by (run, action) so a retried step is
//! idempotent.
//!
//! Rules (Klaviyo, DESIGN.md §4): the profile filter is checked at entry and
//! before every action; a conditional split is evaluated once, when
//! reached; a trigger split reads the trigger event; a webhook holds the run
//! until its delivery succeeds or is skipped; in manual mode each action
//! with an effect waits for review; draft and disabled actions are skipped.

use super::condition::{evaluate, Facts, ProfileFacts};
use super::definition::{
    Action, ActionKind, ActionStatus, Channel, FlowDefinition, ProfileOperation, ReentryCriteria,
    ReentryUnit, Webhook,
};
use super::delay;
use super::validate::{outgoing, webhook_template_options};
use chrono::{DateTime, Duration, Utc};
use outflow_template::{Context, Template};
use serde_json::Value;
use std::collections::HashSet;
use thiserror::Error;

/// Instantaneous steps one `advance` may take; past it the run stays
/// `Running` with `wake_at = now`, so a huge graph yields to other runs.
pub const MAX_STEPS_PER_ADVANCE: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowStatus {
    /// Nobody enters; actions with effects are skipped for runs in flight.
    Draft,
    /// Profiles enter and wait for review at each action with an effect.
    Manual,
    Live,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    /// Ready to execute `current` now.
    Running,
    /// At a time delay until `until`.
    Waiting {
        until: DateTime<Utc>,
    },
    /// At a webhook whose delivery has not finished (retries pending).
    AwaitingDelivery,
    /// At an action in manual mode, until released or cancelled.
    NeedsReview,
    /// Reached the end of the graph.
    Done,
    Exited(ExitReason),
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExitReason {
    #[error("fails flow filters")]
    FailsFlowFilters,
    /// The run points at an action its flow version no longer has.
    #[error("action {0} no longer exists")]
    ActionMissing(String),
    /// Klaviyo: a delay with no live or manual action after it is skipped
    /// and the profile leaves at once.
    #[error("no live or manual action after the delay")]
    NothingToDo,
}

/// A run as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The action the run is at; `None` once past the end.
    pub current: Option<String>,
    pub state: RunState,
    /// The trigger event's properties (metric and price-drop flows).
    pub event: Option<Value>,
    pub entered_at: DateTime<Utc>,
}

/// Why `advance` is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The run is due (newly entered, delay over, or continuing).
    Due,
    /// The webhook the run waits at finished.
    Delivery(DeliveryOutcome),
    /// A reviewer sent the action waiting in review.
    Release,
    /// A reviewer cancelled it: the action is skipped, the run continues.
    Cancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Succeeded,
    /// A final failure (non-retryable status or retries exhausted).
    Skipped,
}

/// Work for the caller, each tied to the action that asked for it.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Render with [`render_webhook`] and enqueue; report the outcome with
    /// `Input::Delivery`.
    SendWebhook {
        action_id: String,
        webhook: Webhook,
    },
    UpdateProfile {
        action_id: String,
        operations: Vec<ProfileOperation>,
    },
    ListUpdate {
        action_id: String,
        list_id: String,
        add: bool,
    },
    Message {
        action_id: String,
        channel: Channel,
    },
}

/// What happened at one action, for the run's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Executed,
    Branched(bool),
    Delayed,
    Skipped(SkipReason),
    AwaitingReview,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    ActionNotLive,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub effects: Vec<Effect>,
    pub run: Run,
    /// When to call `advance` again with `Input::Due`; `None` when the run
    /// waits for an outside input or has ended.
    pub wake_at: Option<DateTime<Utc>>,
    pub steps: Vec<(String, StepOutcome)>,
}

enum Disposition {
    Run,
    Review,
    Skip,
}

fn disposition(action: &Action, flow: FlowStatus) -> Disposition {
    if !action.kind.has_effect() {
        return Disposition::Run;
    }
    match (action.status, flow) {
        (Some(ActionStatus::Draft | ActionStatus::Disabled), _) | (_, FlowStatus::Draft) => {
            Disposition::Skip
        }
        (_, FlowStatus::Manual) | (Some(ActionStatus::Manual), _) => Disposition::Review,
        _ => Disposition::Run,
    }
}

/// Whether any action with an effect that would not be skipped can still
/// be reached from `from`'s successors.
fn anything_ahead(def: &FlowDefinition, from: &Action, flow: FlowStatus) -> bool {
    let mut seen = HashSet::new();
    let mut todo: Vec<&str> = outgoing(from).into_iter().map(|(_, t)| t).collect();
    while let Some(key) = todo.pop() {
        if !seen.insert(key) {
            continue;
        }
        let Some(a) = def.action(key) else { continue };
        if a.kind.has_effect() && !matches!(disposition(a, flow), Disposition::Skip) {
            return true;
        }
        todo.extend(outgoing(a).into_iter().map(|(_, t)| t));
    }
    false
}

fn next_of(action: &Action) -> Option<String> {
    action.links.next.clone()
}

fn effect_of(action: &Action, id: &str) -> Option<Effect> {
    let action_id = id.to_owned();
    Some(match &action.kind {
        ActionKind::SendWebhook(w) => Effect::SendWebhook {
            action_id,
            webhook: w.clone(),
        },
        ActionKind::UpdateProfile(ops) => Effect::UpdateProfile {
            action_id,
            operations: ops.clone(),
        },
        ActionKind::ListUpdate { list_id, add } => Effect::ListUpdate {
            action_id,
            list_id: list_id.clone(),
            add: *add,
        },
        ActionKind::Message(channel) => Effect::Message {
            action_id,
            channel: *channel,
        },
        _ => return None,
    })
}

struct Stepper<'a> {
    def: &'a FlowDefinition,
    facts: &'a ProfileFacts,
    status: FlowStatus,
    now: DateTime<Utc>,
    run: Run,
    effects: Vec<Effect>,
    steps: Vec<(String, StepOutcome)>,
    wake_at: Option<DateTime<Utc>>,
}

impl Stepper<'_> {
    fn facts(&self) -> Facts<'_> {
        Facts::new(self.now, self.facts)
            .with_event(self.run.event.as_ref())
            .with_flow_start(Some(self.run.entered_at))
    }

    fn passes_profile_filter(&self) -> bool {
        self.def
            .profile_filter
            .as_ref()
            .is_none_or(|f| evaluate(f, &self.facts()))
    }

    fn exit(&mut self, reason: ExitReason) {
        self.run.state = RunState::Exited(reason);
    }

    /// Perform an action's effect; returns false if the run must stop here
    /// (a webhook awaiting delivery).
    fn perform(&mut self, action: &Action, id: &str) -> bool {
        if let Some(effect) = effect_of(action, id) {
            self.effects.push(effect);
        }
        self.steps.push((id.to_owned(), StepOutcome::Executed));
        if matches!(action.kind, ActionKind::SendWebhook(_)) {
            self.run.state = RunState::AwaitingDelivery;
            return false;
        }
        self.run.current = next_of(action);
        true
    }

    /// Take instantaneous steps until the run waits or ends.
    fn run_on(&mut self) {
        self.run.state = RunState::Running;
        for _ in 0..MAX_STEPS_PER_ADVANCE {
            let Some(id) = self.run.current.clone() else {
                self.run.state = RunState::Done;
                return;
            };
            let Some(action) = self.def.action(&id) else {
                self.exit(ExitReason::ActionMissing(id));
                return;
            };
            if !self.passes_profile_filter() {
                self.exit(ExitReason::FailsFlowFilters);
                return;
            }
            match &action.kind {
                ActionKind::TimeDelay(d) => {
                    if !anything_ahead(self.def, action, self.status) {
                        self.exit(ExitReason::NothingToDo);
                        return;
                    }
                    let until = delay::wake_at(d, self.now, self.facts.timezone);
                    self.steps.push((id, StepOutcome::Delayed));
                    if until > self.now {
                        self.run.state = RunState::Waiting { until };
                        self.wake_at = Some(until);
                        return;
                    }
                    self.run.current = next_of(action);
                }
                ActionKind::ConditionalSplit(g) | ActionKind::TriggerSplit(g) => {
                    let yes = evaluate(g, &self.facts());
                    self.steps.push((id, StepOutcome::Branched(yes)));
                    self.run.current = if yes {
                        action.links.next_if_true.clone()
                    } else {
                        action.links.next_if_false.clone()
                    };
                }
                _ => match disposition(action, self.status) {
                    Disposition::Skip => {
                        self.steps
                            .push((id, StepOutcome::Skipped(SkipReason::ActionNotLive)));
                        self.run.current = next_of(action);
                    }
                    Disposition::Review => {
                        self.steps.push((id, StepOutcome::AwaitingReview));
                        self.run.state = RunState::NeedsReview;
                        return;
                    }
                    Disposition::Run => {
                        if !self.perform(action, &id) {
                            return;
                        }
                    }
                },
            }
        }
        // Step budget spent: continue in a later call.
        self.wake_at = Some(self.now);
    }
}

/// Move a run forward as far as it can go now.
pub fn advance(
    def: &FlowDefinition,
    run: &Run,
    input: Input,
    facts: &ProfileFacts,
    status: FlowStatus,
    now: DateTime<Utc>,
) -> Transition {
    let mut s = Stepper {
        def,
        facts,
        status,
        now,
        run: run.clone(),
        effects: Vec::new(),
        steps: Vec::new(),
        wake_at: None,
    };
    let current = run.current.as_deref().and_then(|id| def.action(id));
    match (&run.state, input) {
        (RunState::Done | RunState::Exited(_), _) => {}
        (RunState::Running, _) => s.run_on(),
        (RunState::Waiting { until }, _) => {
            if now < *until {
                s.wake_at = Some(*until);
            } else {
                s.run.current = current.and_then(next_of);
                s.run_on();
            }
        }
        (RunState::AwaitingDelivery, Input::Delivery(_)) => {
            s.run.current = current.and_then(next_of);
            s.run_on();
        }
        (RunState::NeedsReview, Input::Release) => match current {
            None => s.run_on(),
            Some(action) => {
                let id = run.current.clone().unwrap_or_default();
                if !s.passes_profile_filter() {
                    s.exit(ExitReason::FailsFlowFilters);
                } else if s.perform(action, &id) {
                    s.run_on();
                }
            }
        },
        (RunState::NeedsReview, Input::Cancel) => {
            if let Some(id) = run.current.clone() {
                s.steps
                    .push((id, StepOutcome::Skipped(SkipReason::Cancelled)));
            }
            s.run.current = current.and_then(next_of);
            s.run_on();
        }
        (RunState::AwaitingDelivery | RunState::NeedsReview, _) => {}
    }
    Transition {
        effects: s.effects,
        wake_at: s.wake_at,
        steps: s.steps,
        run: s.run,
    }
}

/// What started a possible run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TriggerContext {
    /// The event's properties, for metric and price-drop triggers.
    pub event: Option<Value>,
    /// Events sent with `backfill: true` never trigger flows.
    pub backfill: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EntryDecision {
    /// Start this run and call [`advance`] with `Input::Due`.
    Enter(Run),
    Rejected(EntryRejection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EntryRejection {
    #[error("the flow is a draft")]
    FlowDraft,
    #[error("backfilled events do not trigger flows")]
    Backfill,
    #[error("fails the trigger filter")]
    TriggerFilter,
    #[error("fails flow filters")]
    ProfileFilter,
    #[error("the flow has no actions")]
    NoActions,
}

/// Whether a profile enters on this trigger. Re-entry rules need the
/// profile's history and are checked with [`may_enter`].
pub fn entry(
    def: &FlowDefinition,
    facts: &ProfileFacts,
    trigger: &TriggerContext,
    status: FlowStatus,
    now: DateTime<Utc>,
) -> EntryDecision {
    use EntryDecision::Rejected;
    if status == FlowStatus::Draft {
        return Rejected(EntryRejection::FlowDraft);
    }
    if trigger.backfill {
        return Rejected(EntryRejection::Backfill);
    }
    let view = Facts::new(now, facts)
        .with_event(trigger.event.as_ref())
        .with_flow_start(Some(now));
    if let Some(f) = def.trigger().and_then(|t| t.filter()) {
        if !evaluate(f, &view) {
            return Rejected(EntryRejection::TriggerFilter);
        }
    }
    if let Some(f) = &def.profile_filter {
        if !evaluate(f, &view) {
            return Rejected(EntryRejection::ProfileFilter);
        }
    }
    let Some(start) = def.entry_action_id.clone() else {
        return Rejected(EntryRejection::NoActions);
    };
    EntryDecision::Enter(Run {
        current: Some(start),
        state: RunState::Running,
        event: trigger.event.clone(),
        entered_at: now,
    })
}

/// Klaviyo's `reentry_criteria`. Without criteria a profile is in a flow at
/// most once at a time. With `alltime`, duration 1 means never again and 0
/// means always; otherwise a profile may re-enter once `duration` hours,
/// days or weeks have passed since its last entry.
pub fn may_enter(
    criteria: Option<&ReentryCriteria>,
    last_entry: Option<DateTime<Utc>>,
    has_active_run: bool,
    now: DateTime<Utc>,
) -> bool {
    let Some(c) = criteria else {
        return !has_active_run;
    };
    let n = c.duration.clamp(0, 1_000_000);
    let span = match c.unit {
        ReentryUnit::AllTime => {
            return c.duration == 0 || (last_entry.is_none() && !has_active_run)
        }
        ReentryUnit::Hour => Duration::hours(n),
        ReentryUnit::Day => Duration::days(n),
        ReentryUnit::Week => Duration::weeks(n),
    };
    last_entry.is_none_or(|t| now - t >= span)
}

/// A webhook request ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedWebhook {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WebhookRenderError {
    #[error("the {field} template: {message}")]
    Template { field: String, message: String },
    /// The rendered text is kept so the delivery log can show it.
    #[error("invalid JSON body: {error}")]
    BodyNotJson { error: String, body: String },
}

/// A webhook's templates compiled once per flow version, so a run renders
/// without parsing.
#[derive(Debug)]
pub struct CompiledWebhook {
    method: String,
    url: Template,
    headers: Vec<(String, Template)>,
    body: Option<Template>,
}

impl CompiledWebhook {
    pub fn compile(webhook: &Webhook) -> Result<Self, WebhookRenderError> {
        let compile = |src: &str, field: &str| {
            Template::compile(src, &webhook_template_options()).map_err(|e| {
                WebhookRenderError::Template {
                    field: field.to_owned(),
                    message: e.to_string(),
                }
            })
        };
        let mut headers = Vec::with_capacity(webhook.headers.len());
        for (name, value) in &webhook.headers {
            headers.push((name.clone(), compile(value, name)?));
        }
        Ok(Self {
            method: webhook.method.clone(),
            url: compile(&webhook.url, "url")?,
            headers,
            body: webhook
                .body
                .as_deref()
                .map(|b| compile(b, "body"))
                .transpose()?,
        })
    }

    /// Renders url, header values and body against `context`
    /// (see [`webhook_context`]), at `now` for date tags. The body must be
    /// valid JSON.
    pub fn render(
        &self,
        context: &Value,
        now: DateTime<Utc>,
    ) -> Result<RenderedWebhook, WebhookRenderError> {
        let ctx = Context::from_json(context).with_now(now.naive_utc());
        let render = |t: &Template, field: &str| {
            t.render(&ctx).map_err(|e| WebhookRenderError::Template {
                field: field.to_owned(),
                message: e.to_string(),
            })
        };
        let url = render(&self.url, "url")?.trim().to_owned();
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, t) in &self.headers {
            headers.push((name.clone(), render(t, name)?));
        }
        let body = match &self.body {
            Some(t) => render(t, "body")?,
            None => "{}".to_owned(),
        };
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&body) {
            return Err(WebhookRenderError::BodyNotJson {
                error: e.to_string(),
                body,
            });
        }
        Ok(RenderedWebhook {
            method: self.method.clone(),
            url,
            headers,
            body,
        })
    }
}

/// Render a webhook's url, header values and body against `context`
/// (`{"person": …, "event": …, "organization": …}`), at `now` for date tags.
pub fn render_webhook(
    webhook: &Webhook,
    context: &Value,
    now: DateTime<Utc>,
) -> Result<RenderedWebhook, WebhookRenderError> {
    CompiledWebhook::compile(webhook)?.render(context, now)
}

/// Klaviyo's template context for a webhook: `person` (attributes, with
/// custom properties also at the top level so `person.Key` and
/// `person|lookup:'Key'` both work), `event` (the trigger event's
/// properties; empty for list, segment and date flows), `organization`
/// (account settings) and, for price-drop flows, `catalog_item`.
pub fn webhook_context(
    profile: &Value,
    event: Option<&Value>,
    organization: &Value,
    catalog_item: Option<&Value>,
) -> Value {
    let mut person = match profile {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    if let Some(Value::Object(props)) = profile.get("properties") {
        for (k, v) in props {
            if !person.contains_key(k) {
                person.insert(k.clone(), v.clone());
            }
        }
    }
    let mut ctx = serde_json::Map::new();
    ctx.insert("person".into(), Value::Object(person));
    ctx.insert(
        "event".into(),
        event
            .cloned()
            .unwrap_or_else(|| Value::Object(serde_json::Map::new())),
    );
    ctx.insert("organization".into(), organization.clone());
    if let Some(item) = catalog_item {
        ctx.insert("catalog_item".into(), item.clone());
    }
    Value::Object(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::condition::MetricAnswers;
    use crate::flow::definition::assign_ids;
    use crate::flow::fixtures::placed_order_flow;
    use serde_json::json;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .expect("test timestamp")
    }

    fn flow() -> FlowDefinition {
        let mut def = FlowDefinition::parse(placed_order_flow(), "").expect("fixture");
        let mut n = 0;
        assign_ids(&mut def, || {
            n += 1;
            n.to_string()
        });
        def
    }

    /// A profile with `orders` Placed Order events, matching the flow filter
    /// unless `color` is "none".
    fn facts(def: &FlowDefinition, color: &str, orders: f64) -> ProfileFacts {
        let mut metrics = MetricAnswers::default();
        for q in def.required_metric_queries() {
            metrics.insert(q, orders);
        }
        ProfileFacts {
            profile: json!({"email": "ada@example.com", "properties": {"Favorite Color": color}}),
            metrics,
            ..ProfileFacts::default()
        }
    }

    fn order(value: f64) -> TriggerContext {
        TriggerContext {
            event: Some(json!({"$value": value, "OrderId": "A1"})),
            backfill: false,
        }
    }

    fn enter(
        def: &FlowDefinition,
        f: &ProfileFacts,
        status: FlowStatus,
        now: DateTime<Utc>,
    ) -> Run {
        match entry(def, f, &order(80.0), status, now) {
            EntryDecision::Enter(run) => run,
            other => panic!("expected entry, got {other:?}"),
        }
    }

    #[test]
    fn entry_rules() {
        let def = flow();
        let now = utc("2026-06-10T16:00:00Z");
        let ok = facts(&def, "blue", 1.0);
        let cases = [
            (
                FlowStatus::Draft,
                order(80.0),
                &ok,
                Some(EntryRejection::FlowDraft),
            ),
            (
                FlowStatus::Live,
                TriggerContext {
                    backfill: true,
                    ..order(80.0)
                },
                &ok,
                Some(EntryRejection::Backfill),
            ),
            (
                FlowStatus::Live,
                order(10.0),
                &ok,
                Some(EntryRejection::TriggerFilter),
            ),
            (
                FlowStatus::Live,
                TriggerContext::default(),
                &ok,
                Some(EntryRejection::TriggerFilter),
            ),
            (
                FlowStatus::Live,
                order(80.0),
                &facts(&def, "None", 1.0),
                Some(EntryRejection::ProfileFilter),
            ),
            (FlowStatus::Live, order(80.0), &ok, None),
            (FlowStatus::Manual, order(80.0), &ok, None),
        ];
        for (status, trigger, f, want) in cases {
            let got = entry(&def, f, &trigger, status, now);
            match want {
                Some(r) => assert_eq!(got, EntryDecision::Rejected(r), "{status:?} {trigger:?}"),
                None => {
                    let EntryDecision::Enter(run) = got else {
                        panic!("{got:?}")
                    };
                    assert_eq!(run.current.as_deref(), Some("1"));
                    assert_eq!(run.state, RunState::Running);
                    assert_eq!(run.entered_at, now);
                }
            }
        }
    }

    #[test]
    fn repeat_buyer_path_delay_split_webhook_update() {
        let def = flow();
        let f = facts(&def, "blue", 3.0);
        let t0 = utc("2026-06-10T16:00:00Z");
        let run = enter(&def, &f, FlowStatus::Live, t0);

        let t = advance(&def, &run, Input::Due, &f, FlowStatus::Live, t0);
        let wake = utc("2026-06-11T15:00:00Z");
        assert_eq!(t.run.state, RunState::Waiting { until: wake });
        assert_eq!(t.wake_at, Some(wake));
        assert!(t.effects.is_empty());

        // Too early: nothing moves.
        let early = advance(
            &def,
            &t.run,
            Input::Due,
            &f,
            FlowStatus::Live,
            wake - Duration::minutes(1),
        );
        assert_eq!(early.run, t.run);
        assert_eq!(early.wake_at, Some(wake));

        let t = advance(&def, &t.run, Input::Due, &f, FlowStatus::Live, wake);
        assert_eq!(
            t.steps,
            vec![
                ("2".into(), StepOutcome::Branched(true)),
                ("3".into(), StepOutcome::Executed)
            ]
        );
        assert_eq!(t.run.state, RunState::AwaitingDelivery);
        assert_eq!(t.wake_at, None);
        let [Effect::SendWebhook { action_id, webhook }] = t.effects.as_slice() else {
            panic!("{:?}", t.effects)
        };
        assert_eq!(action_id, "3");
        assert!(webhook.url.starts_with("https://hooks.example.com/"));

        // Ticks while the delivery is pending change nothing.
        let idle = advance(&def, &t.run, Input::Due, &f, FlowStatus::Live, wake);
        assert_eq!(idle.run, t.run);

        for outcome in [DeliveryOutcome::Succeeded, DeliveryOutcome::Skipped] {
            let t2 = advance(
                &def,
                &t.run,
                Input::Delivery(outcome),
                &f,
                FlowStatus::Live,
                wake,
            );
            assert!(
                matches!(t2.effects.as_slice(), [Effect::UpdateProfile { action_id, .. }] if action_id == "4")
            );
            assert_eq!(t2.run.state, RunState::Done);
            assert_eq!(t2.run.current, None);
        }
    }

    #[test]
    fn first_buyer_path_skips_draft_email() {
        let def = flow();
        let f = facts(&def, "blue", 1.0);
        let run = Run {
            state: RunState::Running,
            current: Some("2".into()),
            ..enter(&def, &f, FlowStatus::Live, utc("2026-06-10T16:00:00Z"))
        };
        let t = advance(
            &def,
            &run,
            Input::Due,
            &f,
            FlowStatus::Live,
            utc("2026-06-10T16:00:00Z"),
        );
        assert_eq!(
            t.effects,
            vec![Effect::ListUpdate {
                action_id: "5".into(),
                list_id: "L-first".into(),
                add: true
            }]
        );
        assert_eq!(
            t.steps.last(),
            Some(&("6".into(), StepOutcome::Skipped(SkipReason::ActionNotLive)))
        );
        assert_eq!(t.run.state, RunState::Done);
    }

    #[test]
    fn profile_filter_rechecked_before_every_action() {
        let def = flow();
        let t0 = utc("2026-06-10T16:00:00Z");
        let run = enter(&def, &facts(&def, "blue", 3.0), FlowStatus::Live, t0);
        let waiting = advance(
            &def,
            &run,
            Input::Due,
            &facts(&def, "blue", 3.0),
            FlowStatus::Live,
            t0,
        )
        .run;
        // The profile changed its colour while waiting.
        let t = advance(
            &def,
            &waiting,
            Input::Due,
            &facts(&def, "none", 3.0),
            FlowStatus::Live,
            utc("2026-06-12T00:00:00Z"),
        );
        assert_eq!(t.run.state, RunState::Exited(ExitReason::FailsFlowFilters));
        assert_eq!(t.run.state, RunState::Exited(ExitReason::FailsFlowFilters));
        assert_eq!(
            ExitReason::FailsFlowFilters.to_string(),
            "fails flow filters"
        );
        assert!(t.effects.is_empty());
    }

    #[test]
    fn manual_flow_waits_for_review_release_and_cancel() {
        let def = flow();
        let f = facts(&def, "blue", 3.0);
        let now = utc("2026-06-11T15:00:00Z");
        let at_split = Run {
            current: Some("2".into()),
            state: RunState::Running,
            event: Some(json!({"$value": 80})),
            entered_at: now,
        };
        let t = advance(&def, &at_split, Input::Due, &f, FlowStatus::Manual, now);
        assert_eq!(t.run.state, RunState::NeedsReview);
        assert_eq!(t.run.current.as_deref(), Some("3"));
        assert!(t.effects.is_empty());

        let released = advance(&def, &t.run, Input::Release, &f, FlowStatus::Manual, now);
        assert!(matches!(
            released.effects.as_slice(),
            [Effect::SendWebhook { .. }]
        ));
        assert_eq!(released.run.state, RunState::AwaitingDelivery);

        let cancelled = advance(&def, &t.run, Input::Cancel, &f, FlowStatus::Manual, now);
        assert!(cancelled.effects.is_empty());
        assert_eq!(
            cancelled.steps[0],
            ("3".into(), StepOutcome::Skipped(SkipReason::Cancelled))
        );
        // The next action waits for review too.
        assert_eq!(cancelled.run.state, RunState::NeedsReview);
        assert_eq!(cancelled.run.current.as_deref(), Some("4"));

        // Switching to live does not release those already in review.
        let still = advance(&def, &t.run, Input::Due, &f, FlowStatus::Live, now);
        assert_eq!(still.run, t.run);
    }

    fn chain_of(n: usize, status: &str) -> FlowDefinition {
        let actions: Vec<Value> = (1..=n)
            .map(|i| json!({"id": i.to_string(), "type": "update-profile",
                "links": {"next": if i < n { Some((i + 1).to_string()) } else { None }},
                "data": {"status": status, "profile_operations": [{"operator": "delete", "property_key": "x"}]}}))
            .collect();
        FlowDefinition::parse(json!({"triggers": [{"type": "list", "id": "L"}], "actions": actions, "entry_action_id": "1"}), "")
            .expect("chain")
    }

    #[test]
    fn step_budget_bounds_one_call() {
        let def = chain_of(100, "live");
        let f = ProfileFacts::default();
        let now = utc("2026-01-01T00:00:00Z");
        let run = enter_list(&def, &f, now);
        let t = advance(&def, &run, Input::Due, &f, FlowStatus::Live, now);
        assert_eq!(t.effects.len(), MAX_STEPS_PER_ADVANCE);
        assert_eq!(t.run.state, RunState::Running);
        assert_eq!(t.wake_at, Some(now));
        let t = advance(&def, &t.run, Input::Due, &f, FlowStatus::Live, now);
        assert_eq!(t.effects.len(), 100 - MAX_STEPS_PER_ADVANCE);
        assert_eq!(t.run.state, RunState::Done);
    }

    fn enter_list(def: &FlowDefinition, f: &ProfileFacts, now: DateTime<Utc>) -> Run {
        match entry(def, f, &TriggerContext::default(), FlowStatus::Live, now) {
            EntryDecision::Enter(run) => run,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn action_status_and_flow_status_table() {
        let now = utc("2026-01-01T00:00:00Z");
        let f = ProfileFacts::default();
        // (action status, flow status) → outcome at the first action.
        let cases = [
            ("live", FlowStatus::Live, StepOutcome::Executed),
            ("manual", FlowStatus::Live, StepOutcome::AwaitingReview),
            ("live", FlowStatus::Manual, StepOutcome::AwaitingReview),
            (
                "draft",
                FlowStatus::Live,
                StepOutcome::Skipped(SkipReason::ActionNotLive),
            ),
            (
                "disabled",
                FlowStatus::Manual,
                StepOutcome::Skipped(SkipReason::ActionNotLive),
            ),
            (
                "live",
                FlowStatus::Draft,
                StepOutcome::Skipped(SkipReason::ActionNotLive),
            ),
        ];
        for (action, flow, want) in cases {
            let def = chain_of(1, action);
            let run = Run {
                current: Some("1".into()),
                state: RunState::Running,
                event: None,
                entered_at: now,
            };
            let t = advance(&def, &run, Input::Due, &f, flow, now);
            assert_eq!(t.steps[0].1, want, "{action} in {flow:?}");
        }
    }

    #[test]
    fn trigger_split_reads_the_event() {
        let def = FlowDefinition::parse(json!({
            "triggers": [{"type": "metric", "id": "M"}],
            "actions": [
                {"id": "1", "type": "trigger-split", "links": {"next_if_true": "2", "next_if_false": "3"},
                 "data": {"trigger_id": "M", "trigger_type": "metric", "trigger_filter": {"condition_groups": [{"conditions": [
                    {"type": "metric-property", "metric_id": "M", "field": "Brand",
                     "filter": {"type": "string", "operator": "equals", "value": "Acme"}}]}]}}},
                {"id": "2", "type": "send-sms", "data": {"status": "live"}},
                {"id": "3", "type": "send-email", "data": {"status": "live"}}
            ],
            "entry_action_id": "1"}), "").expect("def");
        let now = utc("2026-01-01T00:00:00Z");
        let f = ProfileFacts::default();
        for (brand, channel) in [("acme", Channel::Sms), ("Other", Channel::Email)] {
            let run = Run {
                current: Some("1".into()),
                state: RunState::Running,
                event: Some(json!({"Brand": brand})),
                entered_at: now,
            };
            let t = advance(&def, &run, Input::Due, &f, FlowStatus::Live, now);
            assert!(
                matches!(t.effects.as_slice(), [Effect::Message { channel: c, .. }] if *c == channel),
                "{brand}"
            );
        }
    }

    #[test]
    fn delay_with_nothing_live_after_it_exits() {
        let def = FlowDefinition::parse(json!({
            "triggers": [{"type": "list", "id": "L"}],
            "actions": [
                {"id": "1", "type": "time-delay", "links": {"next": "2"}, "data": {"unit": "hours", "value": 1}},
                {"id": "2", "type": "send-email", "data": {"status": "draft"}}
            ],
            "entry_action_id": "1"}), "").expect("def");
        let now = utc("2026-01-01T00:00:00Z");
        let run = enter_list(&def, &ProfileFacts::default(), now);
        let t = advance(
            &def,
            &run,
            Input::Due,
            &ProfileFacts::default(),
            FlowStatus::Live,
            now,
        );
        assert_eq!(t.run.state, RunState::Exited(ExitReason::NothingToDo));
    }

    #[test]
    fn missing_action_exits() {
        let def = chain_of(1, "live");
        let now = utc("2026-01-01T00:00:00Z");
        let run = Run {
            current: Some("99".into()),
            state: RunState::Running,
            event: None,
            entered_at: now,
        };
        let t = advance(
            &def,
            &run,
            Input::Due,
            &ProfileFacts::default(),
            FlowStatus::Live,
            now,
        );
        assert_eq!(
            t.run.state,
            RunState::Exited(ExitReason::ActionMissing("99".into()))
        );
    }

    #[test]
    fn reentry_table() {
        let now = utc("2026-06-10T12:00:00Z");
        let c = |duration, unit| Some(ReentryCriteria { duration, unit });
        let day_ago = Some(now - Duration::days(1));
        let cases = [
            (None, None, false, true),
            (None, day_ago, false, true),
            (None, day_ago, true, false),
            (c(1, ReentryUnit::AllTime), None, false, true),
            (c(1, ReentryUnit::AllTime), day_ago, false, false),
            (c(0, ReentryUnit::AllTime), day_ago, true, true),
            (c(12, ReentryUnit::Hour), day_ago, false, true),
            (c(2, ReentryUnit::Day), day_ago, false, false),
            (c(1, ReentryUnit::Day), day_ago, true, true),
            (c(1, ReentryUnit::Week), day_ago, false, false),
            (c(1, ReentryUnit::Week), None, false, true),
        ];
        for (criteria, last, active, want) in cases {
            assert_eq!(
                may_enter(criteria.as_ref(), last, active, now),
                want,
                "{criteria:?} {last:?} {active}"
            );
        }
    }

    #[test]
    fn renders_the_fixture_webhook() {
        let def = flow();
        let Some(ActionKind::SendWebhook(w)) = def.action("3").map(|a| &a.kind) else {
            panic!("webhook")
        };
        let ctx = json!({"person": {"email": "ada+x@example.com"}, "event": {"$value": 80.5}, "organization": {"name": "Acme"}});
        let r = render_webhook(w, &ctx, utc("2026-01-01T00:00:00Z")).expect("renders");
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.url,
            "https://hooks.example.com/orders?email=ada%2Bx%40example.com"
        );
        assert_eq!(r.headers[1], ("X-Order".into(), "80.5".into()));
        let body: Value = serde_json::from_str(&r.body).expect("json");
        assert_eq!(body, json!({"email": "ada+x@example.com", "total": 80.5}));
        // A body that renders to something other than JSON is an error.
        let bad = Webhook {
            body: Some("{{ person.email }}".into()),
            ..w.clone()
        };
        assert!(matches!(
            render_webhook(&bad, &ctx, utc("2026-01-01T00:00:00Z")),
            Err(WebhookRenderError::BodyNotJson { .. })
        ));
    }
}
