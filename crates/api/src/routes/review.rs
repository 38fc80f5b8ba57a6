//! Outflow's own endpoints for flow runs: releasing or cancelling the runs
//! waiting for review at an action of a manual flow, and run history. The
//! handlers only change rows; the engine's workers pick the runs up.

use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::{store_error, AppState};
use axum::extract::{Path, State};
use axum::Json;
use outflow_store::runs::{self, RunRow, StepRow};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Most recent runs returned by a history request.
const HISTORY_LIMIT: usize = 200;

async fn decide(
    state: AppState,
    auth: Auth,
    flow_id: String,
    action_id: String,
    decision: &'static str,
) -> Result<Json<Value>, ApiError> {
    auth.require("flows:write")?;
    let (account, now) = (auth.account().to_owned(), state.now());
    let (f, a) = (flow_id.clone(), action_id.clone());
    let n = state
        .store
        .write(move |ctx| {
            if !runs::flow_exists(ctx.conn, &account, &f)? {
                return Err(outflow_store::StoreError::NotFound(format!("flow {f}")));
            }
            runs::review(ctx.conn, &account, &f, &a, decision, now)
        })
        .await
        .map_err(store_error)?;
    state.wake();
    Ok(Json(json!({"data": {
        "flow_id": flow_id,
        "action_id": action_id,
        "decision": decision,
        "runs": n,
    }})))
}

/// `POST /outflow/v1/flows/{id}/actions/{action_id}/release`
pub async fn release(
    State(state): State<AppState>,
    auth: Auth,
    Path((flow_id, action_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    decide(state, auth, flow_id, action_id, runs::input::RELEASE).await
}

/// `POST /outflow/v1/flows/{id}/actions/{action_id}/cancel`
pub async fn cancel(
    State(state): State<AppState>,
    auth: Auth,
    Path((flow_id, action_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    decide(state, auth, flow_id, action_id, runs::input::CANCEL).await
}

fn time(us: i64) -> Value {
    chrono::DateTime::from_timestamp_micros(us)
        .map_or(Value::Null, |t| Value::String(t.to_rfc3339()))
}

fn history(rows: Vec<RunRow>, steps: Vec<StepRow>) -> Value {
    let mut by_run: HashMap<String, Vec<Value>> = HashMap::new();
    for s in steps {
        by_run.entry(s.run_id).or_default().push(json!({
            "action_id": s.action_id,
            "outcome": s.outcome,
            "detail": s.detail,
            "at": time(s.at),
        }));
    }
    let data: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id,
                "flow_id": r.flow_id,
                "flow_version": r.flow_version,
                "profile_id": r.profile_id,
                "trigger_event_id": r.trigger_event_id,
                "state": r.state,
                "exit_reason": r.exit_reason,
                "current_action_id": r.current_action,
                "entered": time(r.entered),
                "due": r.due.map(time),
                "updated": time(r.updated),
                "steps": by_run.remove(&r.id).unwrap_or_default(),
            })
        })
        .collect();
    json!({ "data": data })
}

/// `GET /outflow/v1/flows/{id}/runs`: the flow's most recent runs.
pub async fn flow_runs(
    State(state): State<AppState>,
    auth: Auth,
    Path(flow_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.require("flows:read")?;
    let account = auth.account().to_owned();
    let (rows, steps) = state
        .store
        .read(move |c| {
            if !runs::flow_exists(c, &account, &flow_id)? {
                return Err(outflow_store::StoreError::NotFound(format!(
                    "flow {flow_id}"
                )));
            }
            let rows = runs::for_flow(c, &account, &flow_id, HISTORY_LIMIT)?;
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            Ok((rows, runs::steps_of(c, &ids)?))
        })
        .await
        .map_err(store_error)?;
    Ok(Json(history(rows, steps)))
}

/// `GET /outflow/v1/profiles/{id}/runs`: the profile's runs in every flow.
pub async fn profile_runs(
    State(state): State<AppState>,
    auth: Auth,
    Path(profile_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.require("profiles:read")?;
    let account = auth.account().to_owned();
    let (rows, steps) = state
        .store
        .read(move |c| {
            let rows = runs::for_profile(c, &account, &profile_id, HISTORY_LIMIT)?;
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            Ok((rows, runs::steps_of(c, &ids)?))
        })
        .await
        .map_err(store_error)?;
    Ok(Json(history(rows, steps)))
}
