//! Outflow's own delivery endpoints: the delivery log with every attempt,
//! retry and replay, a webhook action's destination (disabled by a 410),
//! the signing secret and its rotation, a preview of an action's request,
//! and `/metrics`.

use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::{store_error, AppState};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use outflow_core::clock::from_micros;
use outflow_core::flow::definition::ActionKind;
use outflow_core::flow::{webhook_context, CompiledWebhook, FlowDefinition};
use outflow_delivery::signing::Secret;
use outflow_store::deliveries::{self, AttemptView, DeliveryView, LogFilter};
use outflow_store::{audit, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

const PAGE_DEFAULT: usize = 50;
const PAGE_MAX: usize = 500;

fn time(us: i64) -> String {
    from_micros(us).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn opt_time(us: Option<i64>) -> Value {
    us.map_or(Value::Null, |t| Value::String(time(t)))
}

fn delivery_json(d: &DeliveryView) -> Value {
    json!({
        "id": d.id,
        "webhook_id": d.id,
        "status": d.status,
        "flow_id": d.flow_id,
        "action_id": d.action_id,
        "profile_id": d.profile_id,
        "run_id": d.run_id,
        "request": {
            "method": d.method,
            "url": d.url,
            "headers": redacted(&d.headers),
            "body": d.body,
        },
        "attempts": d.attempts,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "next_attempt_at": if d.status == deliveries::status::PENDING { opt_time(d.next_attempt) } else { Value::Null },
        "created": time(d.created),
        "updated": time(d.updated),
        "finished": opt_time(d.finished),
    })
}

/// The action's own headers as stored (pairs), secrets redacted.
fn redacted(headers: &Value) -> Value {
    let pairs: Vec<(String, String)> = serde_json::from_value(headers.clone()).unwrap_or_default();
    Value::Array(
        outflow_delivery::worker::redact(&pairs)
            .into_iter()
            .map(|(k, v)| json!([k, v]))
            .collect(),
    )
}

fn attempt_json(a: &AttemptView, body: &str) -> Value {
    json!({
        "n": a.n,
        "at": time(a.log.at),
        "outcome": a.log.outcome,
        "request": {"headers": a.log.request_headers, "body": body},
        "response": {
            "status": a.log.status_code,
            "headers": a.log.response_headers,
            "body": a.log.response_body,
        },
        "latency_ms": a.log.latency_us.map(|us| us as f64 / 1000.0),
        "error": a.log.error,
    })
}

#[derive(Debug, Deserialize)]
pub struct LogQuery {
    flow_id: Option<String>,
    action_id: Option<String>,
    profile_id: Option<String>,
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    page_size: Option<usize>,
    cursor: Option<String>,
}

fn parse_time(name: &str, v: &Option<String>) -> Result<Option<i64>, ApiError> {
    v.as_deref()
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc).timestamp_micros())
                .map_err(|_| {
                    ApiError::invalid_parameter(
                        name,
                        format!("{name} must be an RFC 3339 time, such as 2026-11-27T10:00:00Z"),
                    )
                })
        })
        .transpose()
}

fn encode_cursor(created: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{created}:{id}"))
}

fn decode_cursor(c: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::invalid_parameter("cursor", "cursor is not valid");
    let raw = URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (t, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((t.parse().map_err(|_| bad())?, id.to_owned()))
}

/// `GET /outflow/v1/deliveries`: newest first, keyset-paginated.
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<LogQuery>,
) -> Result<Json<Value>, ApiError> {
    auth.require("deliveries:read")?;
    if let Some(s) = &q.status {
        if ![
            deliveries::status::PENDING,
            deliveries::status::SUCCEEDED,
            deliveries::status::SKIPPED,
            deliveries::status::FAILED,
        ]
        .contains(&s.as_str())
        {
            return Err(ApiError::invalid_parameter(
                "status",
                "status must be one of pending, succeeded, skipped, failed",
            ));
        }
    }
    let size = q.page_size.unwrap_or(PAGE_DEFAULT);
    if size == 0 || size > PAGE_MAX {
        return Err(ApiError::invalid_parameter(
            "page_size",
            format!("page_size must be between 1 and {PAGE_MAX}"),
        ));
    }
    let filter = LogFilter {
        flow_id: q.flow_id.clone(),
        action_id: q.action_id.clone(),
        profile_id: q.profile_id.clone(),
        status: q.status.clone(),
        since: parse_time("since", &q.since)?,
        until: parse_time("until", &q.until)?,
        before: q.cursor.as_deref().map(decode_cursor).transpose()?,
    };
    let account = auth.account().to_owned();
    let mut rows = state
        .store
        .read(move |c| deliveries::list(c, &account, &filter, size + 1))
        .await
        .map_err(store_error)?;
    let next = (rows.len() > size).then(|| {
        rows.truncate(size);
        rows.last().map(|d| encode_cursor(d.created, &d.id))
    });
    Ok(Json(json!({
        "data": rows.iter().map(delivery_json).collect::<Vec<_>>(),
        "next_cursor": next.flatten(),
    })))
}

/// `GET /outflow/v1/deliveries/{id}`: the delivery and every attempt.
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.require("deliveries:read")?;
    let account = auth.account().to_owned();
    let (d, attempts) = state
        .store
        .read(move |c| {
            let d = deliveries::get(c, &account, &id)?
                .ok_or_else(|| StoreError::NotFound(format!("delivery {id}")))?;
            let a = deliveries::attempts(c, &d.id)?;
            Ok((d, a))
        })
        .await
        .map_err(store_error)?;
    let mut out = delivery_json(&d);
    out["attempt_log"] = Value::Array(attempts.iter().map(|a| attempt_json(a, &d.body)).collect());
    Ok(Json(json!({ "data": out })))
}

/// `POST /outflow/v1/deliveries/{id}/retry`: a new series of attempts now.
pub async fn retry(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.require("deliveries:write")?;
    auth.require_webhook_access()?;
    let (account, now, actor) = (auth.account().to_owned(), state.now(), auth.actor());
    let d = state
        .store
        .write(move |ctx| {
            if !deliveries::retry(ctx.conn, &account, &id, now)? {
                return Err(StoreError::NotFound(format!("delivery {id}")));
            }
            audit::record(
                ctx.conn,
                &account,
                &actor,
                "delivery.retry",
                "delivery",
                &id,
                &json!({}),
                now,
            )?;
            deliveries::get(ctx.conn, &account, &id)?
                .ok_or_else(|| StoreError::NotFound(format!("delivery {id}")))
        })
        .await
        .map_err(store_error)?;
    state.wake_delivery();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "data": delivery_json(&d) })),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    flow_id: String,
    action_id: String,
    since: String,
    until: Option<String>,
}

/// `POST /outflow/v1/deliveries/replay`: every failed or skipped delivery
/// of an action created in `[since, until)` is sent again.
pub async fn replay(
    State(state): State<AppState>,
    auth: Auth,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.require("deliveries:write")?;
    auth.require_webhook_access()?;
    let b: ReplayBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "the body must be {{\"flow_id\", \"action_id\", \"since\", \"until\"?}}: {e}"
        ))
    })?;
    let now = state.now();
    let since = parse_time("since", &Some(b.since.clone()))?.unwrap_or(0);
    let until = parse_time("until", &b.until)?.unwrap_or(now + 1);
    let account = auth.account().to_owned();
    let (f, a, actor) = (b.flow_id.clone(), b.action_id.clone(), auth.actor());
    let n = state
        .store
        .write(move |ctx| {
            let n = deliveries::replay(ctx.conn, &account, &f, &a, since, until, now)?;
            let detail = json!({"action_id": a, "since": since, "until": until, "replayed": n});
            audit::record(
                ctx.conn,
                &account,
                &actor,
                "delivery.replay",
                "flow",
                &f,
                &detail,
                now,
            )?;
            Ok(n)
        })
        .await
        .map_err(store_error)?;
    state.wake_delivery();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"data": {"flow_id": b.flow_id, "action_id": b.action_id, "replayed": n}})),
    ))
}

/// The send-webhook action `action_id` of a flow's current version.
async fn webhook_action(
    state: &AppState,
    account: &str,
    flow_id: &str,
    action_id: &str,
) -> Result<outflow_core::flow::definition::Webhook, ApiError> {
    let (a, f) = (account.to_owned(), flow_id.to_owned());
    let found = state
        .store
        .read(move |c| outflow_store::flows::get_with_definition(c, &a, &f))
        .await
        .map_err(store_error)?;
    let Some((_, def)) = found else {
        return Err(ApiError::not_found(format!("Flow {flow_id} not found.")));
    };
    let def = FlowDefinition::parse(def, "")
        .map_err(|_| ApiError::internal("the stored flow definition does not parse"))?;
    def.actions
        .into_iter()
        .find(|a| a.id.as_deref() == Some(action_id))
        .and_then(|a| match a.kind {
            ActionKind::SendWebhook(w) => Some(w),
            _ => None,
        })
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Flow {flow_id} has no send-webhook action {action_id}."
            ))
        })
}

/// `GET /outflow/v1/flows/{id}/actions/{action_id}/destination`
pub async fn destination(
    State(state): State<AppState>,
    auth: Auth,
    Path((flow_id, action_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    auth.require("deliveries:read")?;
    let account = auth.account().to_owned();
    let w = webhook_action(&state, &account, &flow_id, &action_id).await?;
    let (f, a) = (flow_id.clone(), action_id.clone());
    let d = state
        .store
        .read(move |c| deliveries::destination(c, &account, &f, &a))
        .await
        .map_err(store_error)?;
    Ok(Json(json!({"data": {
        "flow_id": flow_id,
        "action_id": action_id,
        "url": w.url,
        "enabled": d.disabled.is_none(),
        "disabled_at": opt_time(d.disabled),
        "reason": d.reason,
    }})))
}

/// `POST /outflow/v1/flows/{id}/actions/{action_id}/destination/enable`
pub async fn enable_destination(
    State(state): State<AppState>,
    auth: Auth,
    Path((flow_id, action_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    auth.require("deliveries:write")?;
    auth.require_webhook_access()?;
    let (account, now) = (auth.account().to_owned(), state.now());
    webhook_action(&state, &account, &flow_id, &action_id).await?;
    let (f, a, actor) = (flow_id.clone(), action_id.clone(), auth.actor());
    state
        .store
        .write(move |ctx| {
            deliveries::enable_destination(ctx.conn, &account, &f, &a, now)?;
            let detail = json!({"action_id": a});
            audit::record(
                ctx.conn,
                &account,
                &actor,
                "webhook.destination.enable",
                "flow",
                &f,
                &detail,
                now,
            )
        })
        .await
        .map_err(store_error)?;
    Ok(Json(json!({"data": {
        "flow_id": flow_id, "action_id": action_id, "enabled": true,
    }})))
}

/// `GET /outflow/v1/signing-secret`: `{"secret": "whsec_…"}` (made on
/// first use).
pub async fn signing_secret(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Value>, ApiError> {
    auth.require_webhook_access()?;
    let secrets =
        outflow_delivery::worker::current_secrets(&state.store, auth.account(), state.now())
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(json!({ "secret": secrets.first() })))
}

/// `POST /outflow/v1/signing-secret/rotate`: a new secret; the old ones
/// keep signing (both signatures are sent) for the rotation window.
pub async fn rotate_signing_secret(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Value>, ApiError> {
    auth.require_webhook_access()?;
    let (account, now) = (auth.account().to_owned(), state.now());
    let old_until = now + state.rotation_window().num_microseconds().unwrap_or(0);
    let fresh = Secret::generate().as_str().to_owned();
    let (f, actor) = (fresh.clone(), auth.actor());
    state
        .store
        .write(move |ctx| {
            deliveries::rotate_secret(ctx.conn, &account, &f, old_until, now)?;
            let detail = json!({"previous_valid_until": old_until});
            audit::record(
                ctx.conn,
                &account,
                &actor,
                "signing_secret.rotate",
                "account",
                &account,
                &detail,
                now,
            )
        })
        .await
        .map_err(store_error)?;
    state.secrets_changed();
    Ok(Json(json!({
        "secret": fresh,
        "previous_valid_until": time(old_until),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    profile_id: String,
    event_id: Option<String>,
}

/// `POST /outflow/v1/flows/{id}/actions/{action_id}/preview`: the request
/// the action would send for a profile (and event), without sending it.
pub async fn preview(
    State(state): State<AppState>,
    auth: Auth,
    Path((flow_id, action_id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    auth.require("flows:read")?;
    auth.require("profiles:read")?;
    let b: PreviewBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "the body must be {{\"profile_id\", \"event_id\"?}}: {e}"
        ))
    })?;
    let account = auth.account().to_owned();
    let webhook = webhook_action(&state, &account, &flow_id, &action_id).await?;
    let (pid, eid) = (b.profile_id.clone(), b.event_id.clone());
    let (facts, event, org) = state
        .store
        .read(move |c| {
            let facts = outflow_engine::facts::Loaded::load(c, std::slice::from_ref(&pid), &[])?;
            let event = match &eid {
                Some(e) => Some(
                    outflow_store::events::get(c, &account, e)?
                        .ok_or_else(|| StoreError::NotFound(format!("event {e}")))?,
                ),
                None => None,
            };
            Ok((facts, event, deliveries::organization(c, &account)?))
        })
        .await
        .map_err(store_error)?;
    let now = state.clock.now();
    let Some(pf) = facts.facts_for(&b.profile_id, &[], now, None) else {
        return Err(ApiError::not_found(format!(
            "Profile {} not found.",
            b.profile_id
        )));
    };
    let ctx = webhook_context(
        &pf.profile,
        event.as_ref().map(|e| &e.properties),
        &org,
        None,
    );
    let rendered = CompiledWebhook::compile(&webhook).and_then(|t| t.render(&ctx, now));
    Ok(Json(match rendered {
        Ok(r) => {
            let mut headers: HashMap<String, String> = r.headers.into_iter().collect();
            if !headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("content-type"))
            {
                headers.insert("Content-Type".into(), "application/json".into());
            }
            json!({"data": {"method": r.method, "url": r.url, "headers": headers, "body": r.body, "error": null}})
        }
        Err(e) => {
            let body = match &e {
                outflow_core::flow::machine::WebhookRenderError::BodyNotJson { body, .. } => {
                    Value::String(body.clone())
                }
                _ => Value::Null,
            };
            json!({"data": {"method": webhook.method, "url": null, "headers": null, "body": body, "error": e.to_string()}})
        }
    }))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>, auth: Auth) -> Result<Response, ApiError> {
    auth.require("deliveries:read")?;
    let now = state.now();
    let (due, oldest) = state
        .store
        .read(move |c| deliveries::queue_depth(c, now))
        .await
        .map_err(store_error)?;
    let Some(m) = state.delivery_metrics() else {
        return Err(ApiError::internal("no delivery workers in this process"));
    };
    let age = oldest.map_or(0.0, |t| ((now - t).max(0)) as f64 / 1e6);
    m.queue(due, age);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response())
}
