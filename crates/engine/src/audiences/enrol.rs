//! Entering profiles into one flow outside the dispatch feeds (add past
//! profiles, price drops, date triggers): the same rules as dispatch —
//! re-entry criteria, trigger and profile filters via
//! `outflow_core::flow::entry` — with facts loaded in batches.

use crate::dispatch::flow_status;
use crate::facts::Loaded;
use chrono::{DateTime, Utc};
use outflow_core::clock::{from_micros, to_micros};
use outflow_core::flow::{
    entry, may_enter, EntryDecision, FlowDefinition, FlowStatus, MetricQuery, TriggerContext,
};
use outflow_store::db::Conn;
use outflow_store::runs::{self, NewRun};
use outflow_store::{flows, new_ulid, StoreError};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// A flow new entrants can join, at its current version.
#[derive(Debug, Clone)]
pub struct FlowOnTrigger {
    pub flow_id: String,
    pub account_id: String,
    pub status: FlowStatus,
    pub version: i64,
    pub trigger_type: String,
    pub trigger_ref: Option<String>,
    pub def: Arc<FlowDefinition>,
    pub queries: Vec<MetricQuery>,
}

fn parse(
    conn: &mut dyn Conn,
    l: flows::Listener,
    ty: String,
    r: Option<String>,
) -> Result<Option<FlowOnTrigger>, StoreError> {
    let Some(json) = flows::version(conn, &l.flow_id, l.version)? else {
        return Ok(None);
    };
    let def = match FlowDefinition::parse(json, "") {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(flow = %l.flow_id, errors = ?e, "stored flow definition does not parse");
            return Ok(None);
        }
    };
    let queries = def.required_metric_queries();
    Ok(Some(FlowOnTrigger {
        flow_id: l.flow_id,
        account_id: l.account_id,
        status: flow_status(&l.status),
        version: l.version,
        trigger_type: ty,
        trigger_ref: r,
        def: Arc::new(def),
        queries,
    }))
}

/// Every live or manual flow with this trigger type.
pub fn flows_of_type(
    conn: &mut dyn Conn,
    trigger_type: &str,
) -> Result<Vec<FlowOnTrigger>, StoreError> {
    let mut out = Vec::new();
    for (l, ty, r) in flows::all_listening(conn)? {
        if ty == trigger_type {
            out.extend(parse(conn, l, ty, r)?);
        }
    }
    Ok(out)
}

/// One flow by id, if it is live or manual and not archived.
pub fn flow(
    conn: &mut dyn Conn,
    account: &str,
    flow_id: &str,
) -> Result<Option<FlowOnTrigger>, StoreError> {
    for (l, ty, r) in flows::all_listening(conn)? {
        if l.flow_id == flow_id && l.account_id == account {
            return parse(conn, l, ty, r);
        }
    }
    Ok(None)
}

/// Whether a profile that was ever in the flow may enter again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Past {
    /// The flow's re-entry criteria decide (a trigger firing).
    ReentryRules,
    /// Never (add past profiles: only those the flow has not seen).
    Skip,
}

/// The runs `candidates` (profile, trigger event) start in `flow`: at most
/// one per profile, and none for a profile the re-entry rules or filters
/// keep out.
pub fn plan(
    conn: &mut dyn Conn,
    flow: &FlowOnTrigger,
    candidates: &[(String, Option<Value>)],
    now: DateTime<Utc>,
    past: Past,
) -> Result<Vec<NewRun>, StoreError> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let mut profiles: Vec<String> = candidates.iter().map(|(p, _)| p.clone()).collect();
    profiles.sort();
    profiles.dedup();
    let facts = Loaded::load(conn, &profiles, &flow.queries)?;
    let mut history: HashMap<String, (Option<DateTime<Utc>>, bool)> = HashMap::new();
    let flow_ids = [flow.flow_id.clone()];
    for chunk in profiles.chunks(400) {
        for a in runs::activity(conn, &flow_ids, chunk)? {
            history.insert(a.profile_id, (Some(from_micros(a.last_entered)), a.active));
        }
    }
    let mut out = Vec::new();
    for (pid, event) in candidates {
        let Some(f) = facts.facts_for(pid, &flow.queries, now, Some(now)) else {
            continue;
        };
        let (last, active) = history.get(pid).cloned().unwrap_or((None, false));
        if past == Past::Skip && last.is_some() {
            continue;
        }
        if !may_enter(flow.def.reentry_criteria.as_ref(), last, active, now) {
            continue;
        }
        let trigger = TriggerContext {
            event: event.clone(),
            backfill: false,
        };
        let EntryDecision::Enter(run) = entry(&flow.def, &f, &trigger, flow.status, now) else {
            continue;
        };
        history.insert(pid.clone(), (Some(now), true));
        out.push(NewRun {
            id: new_ulid(),
            account_id: flow.account_id.clone(),
            flow_id: flow.flow_id.clone(),
            flow_version: flow.version,
            profile_id: pid.clone(),
            trigger_event_id: None,
            current_action: run.current.clone(),
            event: run.event.as_ref().map(Value::to_string),
            entered: to_micros(now),
        });
    }
    Ok(out)
}
