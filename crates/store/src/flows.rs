//! Flows and their definition versions.
//!
//! The read side the engine needs ([`listening`], [`version`]) is fixed
//! here; the flows API adds create/update/list around it.

use crate::db::{Conn, Row};
use crate::{params, StoreError};
use serde_json::Value;

/// A flow that listens to a trigger, with the version new entrants use.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub flow_id: String,
    pub account_id: String,
    pub status: String,
    pub version: i64,
    /// Items of the trigger's feed at or below this `seq` were recorded
    /// before the flow went live (or manual), and never start it.
    pub went_live_seq: i64,
}

fn listener(r: &Row) -> Result<Listener, StoreError> {
    Ok(Listener {
        flow_id: r.text(0)?,
        account_id: r.text(1)?,
        status: r.text(2)?,
        version: r.int(3)?,
        went_live_seq: r.int(4)?,
    })
}

/// Non-draft, non-archived flows whose trigger is `trigger_type` on
/// `trigger_ref` (a metric id, a list id…).
pub fn listening(
    conn: &mut dyn Conn,
    account: &str,
    trigger_type: &str,
    trigger_ref: &str,
) -> Result<Vec<Listener>, StoreError> {
    conn.query(
        "SELECT id, account_id, status, version, went_live_seq FROM flows \
         WHERE account_id = $1 AND trigger_type = $2 AND trigger_ref = $3 \
         AND archived = 0 AND status <> 'draft'",
        params![account, trigger_type, trigger_ref],
    )?
    .iter()
    .map(listener)
    .collect()
}

/// Every non-draft, non-archived flow, for rebuilding in-memory trigger
/// indexes at start.
pub fn all_listening(
    conn: &mut dyn Conn,
) -> Result<Vec<(Listener, String, Option<String>)>, StoreError> {
    conn.query(
        "SELECT id, account_id, status, version, went_live_seq, trigger_type, trigger_ref FROM flows \
         WHERE archived = 0 AND status <> 'draft'",
        params![],
    )?
    .iter()
    .map(|r| Ok((listener(r)?, r.text(5)?, r.opt_text(6)?)))
    .collect()
}

/// [`all_listening`] with each flow's current definition (`None` if its
/// version row is missing), in one query.
#[allow(clippy::type_complexity)]
pub fn all_listening_defined(
    conn: &mut dyn Conn,
) -> Result<Vec<(Listener, String, Option<String>, Option<Value>)>, StoreError> {
    conn.query(
        "SELECT f.id, f.account_id, f.status, f.version, f.went_live_seq, f.trigger_type, f.trigger_ref, v.definition \
         FROM flows f LEFT JOIN flow_versions v ON v.flow_id = f.id AND v.version = f.version \
         WHERE f.archived = 0 AND f.status <> 'draft'",
        params![],
    )?
    .iter()
    .map(|r| {
        let def = match r.json(7)? {
            Value::Null => None,
            v => Some(v),
        };
        Ok((listener(r)?, r.text(5)?, r.opt_text(6)?, def))
    })
    .collect()
}

/// The definition JSON of one version of a flow.
pub fn version(
    conn: &mut dyn Conn,
    flow_id: &str,
    version: i64,
) -> Result<Option<Value>, StoreError> {
    conn.query_opt(
        "SELECT definition FROM flow_versions WHERE flow_id = $1 AND version = $2",
        params![flow_id, version],
    )?
    .map(|r| r.json(0))
    .transpose()
    .map_err(Into::into)
}

// ---------------------------------------------------------------- the flows API

use crate::writer::WriteCtx;
use crate::{new_short_id, MAX_PAGE_ROWS};
use outflow_core::flow::{assign_ids, FlowDefinition, Trigger};
use std::collections::{HashMap, HashSet};
use thiserror::Error;

/// A flow as the API shows it; the definition lives in `flow_versions`.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub id: String,
    pub name: String,
    pub status: String,
    pub archived: bool,
    /// `metric`, `list`, `segment`, `date` or `price-drop` (what dispatch reads).
    pub trigger_type: String,
    pub trigger_ref: Option<String>,
    /// The version new entrants use.
    pub version: i64,
    pub created: i64,
    pub updated: i64,
    /// When the flow last went live or manual from draft (or was created
    /// so); `None` if it never did.
    pub went_live: Option<i64>,
    /// The head of the trigger's feed at that moment (moved again when the
    /// trigger is edited while the flow listens): dispatch skips the items
    /// at or below it. See [`feed_head`].
    pub went_live_seq: i64,
}

const FLOW_COLUMNS: &str = "id, name, status, archived, trigger_type, trigger_ref, version, \
     created, updated, went_live, went_live_seq";

fn flow_row(r: &Row) -> Result<Flow, StoreError> {
    Ok(Flow {
        id: r.text(0)?,
        name: r.text(1)?,
        status: r.text(2)?,
        archived: r.bool(3)?,
        trigger_type: r.text(4)?,
        trigger_ref: r.opt_text(5)?,
        version: r.int(6)?,
        created: r.int(7)?,
        updated: r.int(8)?,
        went_live: r.opt_int(9)?,
        went_live_seq: r.int(10)?,
    })
}

/// One action of a flow's current version. Its definition is the matching
/// element of the version's `actions`.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowAction {
    /// Numeric, unique in the account (Klaviyo's form), e.g. `"100007"`.
    pub id: String,
    pub flow_id: String,
    pub action_type: String,
    pub created: i64,
    /// When this action's definition last changed.
    pub updated: i64,
}

fn action_row(r: &Row) -> Result<FlowAction, StoreError> {
    Ok(FlowAction {
        id: r.int(0)?.to_string(),
        flow_id: r.text(1)?,
        action_type: r.text(2)?,
        created: r.int(3)?,
        updated: r.int(4)?,
    })
}

/// A saved definition named an action `id` the flow does not have: new
/// actions must use `temporary_id`. `index` is the action's position, so
/// the API can point at it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("action id '{id}' is not an action of this flow; new actions take a 'temporary_id'")]
pub struct ForeignActionId {
    pub index: usize,
    pub id: String,
}

/// The `trigger_type` / `trigger_ref` columns for a definition: the
/// lower-case trigger type, and the id it listens to (none for date and
/// price-drop triggers, which are found by scanning, not by dispatch).
pub fn trigger_columns(def: &FlowDefinition) -> (&'static str, Option<String>) {
    match def.trigger() {
        Some(Trigger::Metric { metric_id, .. }) => ("metric", Some(metric_id.clone())),
        Some(Trigger::List { list_id }) => ("list", Some(list_id.clone())),
        Some(Trigger::Segment { segment_id }) => ("segment", Some(segment_id.clone())),
        Some(t) => (t.type_name(), None),
        None => ("unconfigured", None),
    }
}

/// Reserves `n` consecutive action ids from the account-wide counter.
fn allocate_action_ids(ctx: &mut WriteCtx<'_>, n: usize) -> Result<Vec<String>, StoreError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let n = i64::try_from(n).map_err(|_| StoreError::Invalid("too many actions".into()))?;
    let end = ctx
        .conn
        .query_opt(
            "UPDATE flow_action_ids SET next_id = next_id + $1 WHERE singleton = 1 RETURNING next_id",
            params![n],
        )?
        .ok_or_else(|| StoreError::Invalid("the flow action id counter is missing".into()))?
        .int(0)?;
    Ok((end - n..end).map(|i| i.to_string()).collect())
}

/// Each action of a raw definition keyed by its id.
fn actions_by_id(raw: &Value) -> HashMap<String, &Value> {
    raw.get("actions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| Some((x.get("id")?.as_str()?.to_owned(), x)))
                .collect()
        })
        .unwrap_or_default()
}

/// Gives new actions ids, after checking that every given `id` is one of
/// `known` (the flow's current actions).
fn assign_action_ids(
    ctx: &mut WriteCtx<'_>,
    def: &mut FlowDefinition,
    known: &HashSet<String>,
) -> Result<Result<(), ForeignActionId>, StoreError> {
    for a in &def.actions {
        if let Some(id) = &a.id {
            if !known.contains(id) {
                return Ok(Err(ForeignActionId {
                    index: a.index,
                    id: id.clone(),
                }));
            }
        }
    }
    let fresh = def.actions.iter().filter(|a| a.id.is_none()).count();
    let mut ids = allocate_action_ids(ctx, fresh)?.into_iter();
    assign_ids(def, || ids.next().unwrap_or_default());
    Ok(Ok(()))
}

/// Makes `flow_actions` match the version `raw` of `flow_id`: new actions
/// are inserted, changed ones get `updated = now`, removed ones go.
fn sync_actions(
    ctx: &mut WriteCtx<'_>,
    account: &str,
    flow_id: &str,
    def: &FlowDefinition,
    previous: Option<&Value>,
    now: i64,
) -> Result<(), StoreError> {
    let before = previous.map(actions_by_id).unwrap_or_default();
    let after = actions_by_id(def.raw());
    for a in &def.actions {
        let Some(id) = a.id.as_deref() else { continue };
        let num: i64 = id
            .parse()
            .map_err(|_| StoreError::Invalid(format!("action id '{id}' is not numeric")))?;
        let ty = a.kind.type_name();
        match before.get(id) {
            None => {
                ctx.conn.execute(
                    "INSERT INTO flow_actions (id, account_id, flow_id, action_type, created, updated) \
                     VALUES ($1, $2, $3, $4, $5, $5)",
                    params![num, account, flow_id, ty, now],
                )?;
            }
            Some(old) if after.get(id) != Some(old) => {
                ctx.conn.execute(
                    "UPDATE flow_actions SET action_type = $2, updated = $3 WHERE id = $1",
                    params![num, ty, now],
                )?;
            }
            Some(_) => {}
        }
    }
    for gone in before.keys().filter(|k| !after.contains_key(*k)) {
        if let Ok(num) = gone.parse::<i64>() {
            ctx.conn.execute(
                "DELETE FROM flow_actions WHERE id = $1 AND flow_id = $2",
                params![num, flow_id],
            )?;
        }
    }
    Ok(())
}

/// Creates a flow at version 1 from a validated definition. Actions get
/// their permanent ids here; the stored definition carries them and no
/// temporary ids. Returns the flow and its stored definition.
pub fn create(
    ctx: &mut WriteCtx<'_>,
    account: &str,
    name: &str,
    status: &str,
    mut def: FlowDefinition,
    now: i64,
) -> Result<Result<(Flow, Value), ForeignActionId>, StoreError> {
    if let Err(e) = assign_action_ids(ctx, &mut def, &HashSet::new())? {
        return Ok(Err(e));
    }
    let id = new_short_id();
    let (trigger_type, trigger_ref) = trigger_columns(&def);
    let (went_live, went_live_seq) = if status == "draft" {
        (None, 0)
    } else {
        (Some(now), feed_head(ctx.conn, trigger_type)?)
    };
    ctx.conn.execute(
        "INSERT INTO flows (id, account_id, name, status, archived, trigger_type, trigger_ref, version, created, updated, went_live, went_live_seq) \
         VALUES ($1, $2, $3, $4, 0, $5, $6, 1, $7, $7, $8, $9)",
        params![&id, account, name, status, trigger_type, &trigger_ref, now, went_live, went_live_seq],
    )?;
    ctx.conn.execute(
        "INSERT INTO flow_versions (flow_id, version, definition, created) VALUES ($1, 1, $2, $3)",
        params![&id, &def.raw().to_string(), now],
    )?;
    sync_actions(ctx, account, &id, &def, None, now)?;
    let flow = Flow {
        id,
        name: name.to_owned(),
        status: status.to_owned(),
        archived: false,
        trigger_type: trigger_type.to_owned(),
        trigger_ref,
        version: 1,
        created: now,
        updated: now,
        went_live,
        went_live_seq,
    };
    Ok(Ok((flow, def.into_raw())))
}

pub fn get(conn: &mut dyn Conn, account: &str, id: &str) -> Result<Option<Flow>, StoreError> {
    let sql = format!("SELECT {FLOW_COLUMNS} FROM flows WHERE account_id = $1 AND id = $2");
    conn.query_opt(&sql, params![account, id])?
        .map(|r| flow_row(&r))
        .transpose()
}

/// A flow and the definition of its current version.
pub fn get_with_definition(
    conn: &mut dyn Conn,
    account: &str,
    id: &str,
) -> Result<Option<(Flow, Value)>, StoreError> {
    let Some(flow) = get(conn, account, id)? else {
        return Ok(None);
    };
    let def = version(conn, &flow.id, flow.version)?
        .ok_or_else(|| StoreError::Invalid(format!("flow {id} has no version {}", flow.version)))?;
    Ok(Some((flow, def)))
}

/// Every flow of the account (bounded): accounts have hundreds of flows at
/// most, so the API filters and sorts them in memory, the same way on both
/// databases.
pub fn list(conn: &mut dyn Conn, account: &str) -> Result<Vec<Flow>, StoreError> {
    let sql = format!(
        "SELECT {FLOW_COLUMNS} FROM flows WHERE account_id = $1 ORDER BY id LIMIT {}",
        MAX_PAGE_ROWS * 10
    );
    conn.query(&sql, params![account])?
        .iter()
        .map(flow_row)
        .collect()
}

/// Flows of any status whose trigger is `trigger_type` on `trigger_ref`
/// (the `flow-triggers` of a metric or list).
pub fn triggered_by(
    conn: &mut dyn Conn,
    account: &str,
    trigger_type: &str,
    trigger_ref: &str,
) -> Result<Vec<Flow>, StoreError> {
    let sql = format!(
        "SELECT {FLOW_COLUMNS} FROM flows WHERE account_id = $1 AND trigger_type = $2 \
         AND trigger_ref = $3 ORDER BY id"
    );
    conn.query(&sql, params![account, trigger_type, trigger_ref])?
        .iter()
        .map(flow_row)
        .collect()
}

/// What a PATCH changes; `None` leaves a field alone.
#[derive(Debug, Default)]
pub struct FlowChange {
    pub name: Option<String>,
    /// The flow's status, which is also set on every action (see
    /// [`update`]).
    pub status: Option<String>,
    /// A validated definition. Saved as a new version only if it differs
    /// from the current one, so runs keep the version they entered with.
    pub definition: Option<FlowDefinition>,
}

/// Applies a change to a flow. Returns the flow and its current definition.
///
/// **Statuses.** Setting the flow's status (Klaviyo: "updates the status of
/// a flow … and all actions in that flow") also sets `data.status` of every
/// action that has one (those with an effect) to it: live — everything
/// sends; manual — each such action waits for review; draft — nobody
/// enters, and runs in flight skip those actions (and a delay with nothing
/// left to send after it ends the run). An action's status is not part of a
/// version: the new statuses are written into **every** stored version of
/// the flow in place, so runs already waiting, which stay on the version
/// they entered with, follow them too; no new version is made. Likewise a
/// definition edit that changes an action's explicit status (e.g.
/// `PATCH /api/flow-actions/{id}`, after the flow's status was set) saves a
/// new version as usual and also writes that status into the older
/// versions holding the action. Runs already in Needs Review stay there
/// when the flow goes live (Klaviyo's rule); they are released or
/// cancelled by hand.
///
/// **Went live.** When the flow goes from draft to live or manual,
/// `went_live` is set to `now` and `went_live_seq` to the head of its
/// trigger's feed, so events and list joins recorded before that moment
/// never start it, even if dispatch has not read them yet. Live ↔ manual
/// keeps both; a trigger edited while listening moves `went_live_seq`.
pub fn update(
    ctx: &mut WriteCtx<'_>,
    account: &str,
    id: &str,
    change: FlowChange,
    now: i64,
) -> Result<Result<(Flow, Value), ForeignActionId>, StoreError> {
    let (mut flow, current) = get_with_definition(ctx.conn, account, id)?
        .ok_or_else(|| StoreError::NotFound(format!("flow {id}")))?;
    let was_listening = flow.status != "draft";
    let mut trigger_changed = false;
    let mut stored = current;
    if let Some(mut def) = change.definition {
        let known: HashSet<String> = actions_by_id(&stored).into_keys().collect();
        if let Err(e) = assign_action_ids(ctx, &mut def, &known)? {
            return Ok(Err(e));
        }
        if def.raw() != &stored {
            let next = flow.version + 1;
            let (trigger_type, trigger_ref) = trigger_columns(&def);
            let moved = changed_statuses(&stored, &def);
            ctx.conn.execute(
                "INSERT INTO flow_versions (flow_id, version, definition, created) VALUES ($1, $2, $3, $4)",
                params![&flow.id, next, &def.raw().to_string(), now],
            )?;
            ctx.conn.execute(
                "UPDATE flows SET version = $2, trigger_type = $3, trigger_ref = $4 WHERE id = $1",
                params![&flow.id, next, trigger_type, &trigger_ref],
            )?;
            sync_actions(ctx, account, &flow.id, &def, Some(&stored), now)?;
            if !moved.is_empty() {
                restatus_versions(ctx, &flow.id, &|a| moved.get(a).map(String::as_str))?;
            }
            trigger_changed =
                (trigger_type, &trigger_ref) != (flow.trigger_type.as_str(), &flow.trigger_ref);
            flow.version = next;
            flow.trigger_type = trigger_type.to_owned();
            flow.trigger_ref = trigger_ref;
            stored = def.into_raw();
        }
    }
    if let Some(name) = change.name {
        flow.name = name;
    }
    if let Some(status) = change.status {
        let changed = restatus_versions(ctx, &flow.id, &|_| Some(status.as_str()))?;
        if let Some((raw, ids)) = changed.get(&flow.version) {
            stored = raw.clone();
            for a in ids {
                if let Ok(num) = a.parse::<i64>() {
                    ctx.conn.execute(
                        "UPDATE flow_actions SET updated = $2 WHERE id = $1 AND flow_id = $3",
                        params![num, now, &flow.id],
                    )?;
                }
            }
        }
        flow.status = status;
    }
    if flow.status != "draft" && (!was_listening || trigger_changed) {
        if !was_listening {
            flow.went_live = Some(now);
        }
        flow.went_live_seq = feed_head(ctx.conn, &flow.trigger_type)?;
    }
    // Strictly later than before, even when the clock has not moved: the
    // engine notices flow changes by the sum of `updated` (and the executor
    // reloads a flow's versions when it moves).
    flow.updated = now.max(flow.updated + 1);
    ctx.conn.execute(
        "UPDATE flows SET name = $2, status = $3, updated = $4, went_live = $5, went_live_seq = $6 \
         WHERE id = $1",
        params![
            &flow.id,
            &flow.name,
            &flow.status,
            flow.updated,
            flow.went_live,
            flow.went_live_seq
        ],
    )?;
    Ok(Ok((flow, stored)))
}

/// The newest `seq` of the feed a trigger type is dispatched from (0 for
/// triggers that are not fed: date, price drop).
pub fn feed_head(conn: &mut dyn Conn, trigger_type: &str) -> Result<i64, StoreError> {
    let table = match trigger_type {
        "metric" => "events",
        "list" => "list_members",
        "segment" => "segment_changes",
        _ => return Ok(0),
    };
    crate::segments::head(conn, table)
}

/// The explicit statuses `after` gives to actions that `before` also has
/// but with another status: action id → status.
fn changed_statuses(before: &Value, after: &FlowDefinition) -> HashMap<String, String> {
    let old = actions_by_id(before);
    let mut out = HashMap::new();
    for a in &after.actions {
        let (Some(id), Some(status)) = (a.id.as_deref(), a.status) else {
            continue;
        };
        let Some(prev) = old.get(id) else { continue };
        let status = status.as_str();
        if prev.pointer("/data/status").and_then(Value::as_str) != Some(status) {
            out.insert(id.to_owned(), status.to_owned());
        }
    }
    out
}

/// Writes `status_of(action id)` as `data.status` of each action that has
/// a status (those with an effect), in every stored version of the flow.
/// Returns, for each version it changed, the new definition and the ids of
/// the actions changed.
fn restatus_versions<'s>(
    ctx: &mut WriteCtx<'_>,
    flow_id: &str,
    status_of: &dyn Fn(&str) -> Option<&'s str>,
) -> Result<HashMap<i64, (Value, Vec<String>)>, StoreError> {
    let mut out = HashMap::new();
    for (version, raw, _) in versions(ctx.conn, flow_id)? {
        let Some((raw, ids)) = restatus(&raw, status_of) else {
            continue;
        };
        ctx.conn.execute(
            "UPDATE flow_versions SET definition = $3 WHERE flow_id = $1 AND version = $2",
            params![flow_id, version, &raw.to_string()],
        )?;
        out.insert(version, (raw, ids));
    }
    Ok(out)
}

/// [`restatus_versions`] for one definition: `None` if nothing changes (or
/// the stored definition no longer parses, which validation prevents).
fn restatus<'s>(
    raw: &Value,
    status_of: &dyn Fn(&str) -> Option<&'s str>,
) -> Option<(Value, Vec<String>)> {
    let def = match FlowDefinition::parse(raw.clone(), "") {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(errors = ?e, "stored flow version does not parse; statuses left alone");
            return None;
        }
    };
    let mut out = raw.clone();
    let mut changed = Vec::new();
    for a in def.actions.iter().filter(|a| a.kind.has_effect()) {
        let Some(id) = a.id.as_deref() else { continue };
        let Some(status) = status_of(id) else {
            continue;
        };
        let Some(action) = out
            .get_mut("actions")
            .and_then(|x| x.get_mut(a.index))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let data = action
            .entry("data")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if !data.is_object() {
            *data = Value::Object(serde_json::Map::new());
        }
        let Some(data) = data.as_object_mut() else {
            continue;
        };
        if data.get("status").and_then(Value::as_str) != Some(status) {
            data.insert("status".into(), Value::String(status.to_owned()));
            changed.push(id.to_owned());
        }
    }
    (!changed.is_empty()).then_some((out, changed))
}

/// Deletes a flow with its versions and actions.
pub fn delete(ctx: &mut WriteCtx<'_>, account: &str, id: &str) -> Result<(), StoreError> {
    if get(ctx.conn, account, id)?.is_none() {
        return Err(StoreError::NotFound(format!("flow {id}")));
    }
    ctx.conn
        .execute("DELETE FROM flow_actions WHERE flow_id = $1", params![id])?;
    ctx.conn
        .execute("DELETE FROM flow_versions WHERE flow_id = $1", params![id])?;
    ctx.conn.execute(
        "DELETE FROM flows WHERE account_id = $1 AND id = $2",
        params![account, id],
    )?;
    Ok(())
}

/// Every stored version of a flow, oldest first: `(version, definition, created)`.
pub fn versions(conn: &mut dyn Conn, flow_id: &str) -> Result<Vec<(i64, Value, i64)>, StoreError> {
    conn.query(
        "SELECT version, definition, created FROM flow_versions WHERE flow_id = $1 ORDER BY version",
        params![flow_id],
    )?
    .iter()
    .map(|r| Ok((r.int(0)?, r.json(1)?, r.int(2)?)))
    .collect()
}

/// The actions of a flow's current version, by id.
pub fn actions(
    conn: &mut dyn Conn,
    account: &str,
    flow_id: &str,
) -> Result<Vec<FlowAction>, StoreError> {
    conn.query(
        "SELECT id, flow_id, action_type, created, updated FROM flow_actions \
         WHERE account_id = $1 AND flow_id = $2 ORDER BY id",
        params![account, flow_id],
    )?
    .iter()
    .map(action_row)
    .collect()
}

/// One action by id; `None` for ids that are not numeric or not known.
pub fn action(
    conn: &mut dyn Conn,
    account: &str,
    id: &str,
) -> Result<Option<FlowAction>, StoreError> {
    let Ok(num) = id.parse::<i64>() else {
        return Ok(None);
    };
    conn.query_opt(
        "SELECT id, flow_id, action_type, created, updated FROM flow_actions \
         WHERE account_id = $1 AND id = $2",
        params![account, num],
    )?
    .map(|r| action_row(&r))
    .transpose()
}

/// The element of a definition's `actions` with this id.
pub fn action_definition(definition: &Value, id: &str) -> Option<Value> {
    definition
        .get("actions")?
        .as_array()?
        .iter()
        .find(|a| a.get("id").and_then(Value::as_str) == Some(id))
        .cloned()
}
