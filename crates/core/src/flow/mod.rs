//! The flow engine's pure core (issue #4): Klaviyo's `FlowDefinition`
//! parsed into typed steps, its validation, the conditions of filters and
//! splits, time-delay arithmetic, and the per-run state machine. The store
//! and the workers own persistence, clocks and HTTP; everything here is a
//! function of its arguments.

pub mod condition;
pub mod definition;
pub mod delay;
#[cfg(test)]
mod fixtures;
pub(crate) mod json;
pub mod machine;
pub mod validate;

use thiserror::Error;

pub use condition::{
    evaluate, required_metric_queries, ConditionGroups, Facts, MetricAnswers, MetricQuery,
    ProfileFacts,
};
pub use definition::{assign_ids, Action, ActionKind, ActionStatus, FlowDefinition, Trigger};
pub use delay::{wake_at, TimeDelay};
pub use machine::{
    advance, entry, may_enter, render_webhook, webhook_context, CompiledWebhook, DeliveryOutcome,
    Effect, EntryDecision, FlowStatus, Input, Run, RunState, Transition, TriggerContext,
};
pub use validate::{check, validate, Checks};

/// One problem in a posted definition, located by a JSON pointer so the API
/// can answer with Klaviyo's `source.pointer`.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{pointer}: {kind}")]
pub struct FlowError {
    pub pointer: String,
    pub kind: FlowErrorKind,
}

impl FlowError {
    pub(crate) fn new(pointer: impl Into<String>, kind: FlowErrorKind) -> Self {
        FlowError {
            pointer: pointer.into(),
            kind,
        }
    }

    /// The human-readable explanation (Klaviyo's `detail`).
    pub fn detail(&self) -> String {
        self.kind.to_string()
    }
}

/// What is wrong; the `Display` text is the `detail` shown to the user.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum FlowErrorKind {
    #[error("{0}")]
    Malformed(String),
    #[error("'{0}' is required")]
    Missing(String),
    #[error("unknown action type '{0}'")]
    UnknownActionType(String),
    #[error("action type '{0}' is not supported by Outflow yet")]
    UnsupportedActionType(String),
    #[error("unknown trigger type '{0}'")]
    UnknownTriggerType(String),
    #[error("trigger type '{0}' is not supported by Outflow yet")]
    UnsupportedTriggerType(String),
    #[error("unknown condition type '{0}'")]
    UnknownConditionType(String),
    #[error("condition type '{kind}' is not allowed in {place}")]
    ConditionNotAllowed { kind: String, place: &'static str },
    #[error("condition type '{0}' is not supported by Outflow yet")]
    UnsupportedConditionType(String),
    #[error("a flow must have exactly one trigger, this one has {0}")]
    TriggerCount(usize),
    #[error("entry_action_id is required when the flow has actions")]
    MissingEntryAction,
    #[error("entry_action_id '{0}' does not name an action of this flow")]
    EntryActionNotFound(String),
    #[error("every action needs an 'id' or a 'temporary_id'")]
    MissingActionId,
    #[error("action id '{0}' is used by more than one action")]
    DuplicateActionId(String),
    #[error("link to action '{0}', which does not exist in this flow")]
    LinkToMissing(String),
    #[error("action '{0}' cannot be reached from the entry action")]
    Unreachable(String),
    #[error("action '{0}' is part of a cycle; flows must not loop")]
    Cycle(String),
    #[error("'{link}' is not a link of a {action} action; use {expected}")]
    WrongLink {
        link: &'static str,
        action: String,
        expected: &'static str,
    },
    #[error("metric '{0}' does not exist")]
    UnknownMetric(String),
    #[error("metric '{0}' cannot trigger flows: Klaviyo does not let message-engagement and deliverability metrics start a flow")]
    MetricCannotTrigger(String),
    #[error("the {field} template does not compile: line {line}, column {column}: {message}")]
    Template {
        field: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{0}")]
    Webhook(String),
    #[error("{0}")]
    Delay(String),
    #[error("a trigger split needs a metric or price-drop trigger; this flow has a {0} trigger")]
    TriggerSplitWithoutEvent(String),
}

/// Escape one reference token of a JSON pointer (RFC 6901).
pub(crate) fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}
