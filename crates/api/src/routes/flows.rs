//! Flows and flow actions (issue #4), in Klaviyo's shapes. A posted
//! definition is parsed and validated by `outflow_core::flow::check`; every
//! problem found comes back in one 400 with a pointer into the body. A
//! changed definition is stored as a new version, so runs stay on theirs.

use super::{expect_type, Doc};
use crate::auth::Auth;
use crate::error::{ApiError, JSON_API_CONTENT_TYPE};
use crate::filter::{Condition, Filter, Op};
use crate::jsonapi::{single_document, ApiQuery, JsonApiResponse, RequestUrl, Resource, Sort};
use crate::pagination::{Cursor, Direction, Page, PageParams, FLOWS_PAGE, FLOW_ACTIONS_PAGE};
use crate::resources;
use crate::state::{store_error, AppState};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use outflow_core::flow::{check, Checks, FlowDefinition, FlowError, FlowErrorKind};
use outflow_store::db::Conn;
use outflow_store::flows::{self as store_flows, Flow, FlowAction, FlowChange, ForeignActionId};
use outflow_store::{audit, lists, metrics, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Where a flow's definition sits in a create or update body.
const DEFINITION: &str = "/data/attributes/definition";

/// The `send-webhook` actions of a raw definition: id (`None` for a new
/// action, which has only a `temporary_id`) and `data`.
fn webhook_actions(def: &Value) -> Vec<(Option<&str>, Option<&Value>)> {
    def.get("actions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|x| x.get("type").and_then(Value::as_str) == Some("send-webhook"))
                .map(|x| (x.get("id").and_then(Value::as_str), x.get("data")))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether going from `before` to `after` adds, edits (its `data`) or
/// removes a `send-webhook` action: what the webhook gate guards. Moving
/// other actions around a webhook does not touch it.
pub fn touches_webhooks(before: Option<&Value>, after: Option<&Value>) -> bool {
    let old: HashMap<&str, Option<&Value>> = before
        .map(webhook_actions)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(id, data)| Some((id?, data)))
        .collect();
    let new = after.map(webhook_actions).unwrap_or_default();
    let changed = new.iter().any(|(id, data)| match id {
        None => true,
        Some(id) => old.get(id) != Some(data),
    });
    changed
        || old
            .keys()
            .any(|id| !new.iter().any(|(n, _)| n == &Some(*id)))
}

/// Records a flow change in the audit log.
fn audit_flow(
    ctx: &mut outflow_store::WriteCtx<'_>,
    account: &str,
    actor: &audit::Actor,
    action: &str,
    target: (&str, &str),
    detail: Value,
    now: i64,
) -> Result<(), StoreError> {
    audit::record(
        ctx.conn, account, actor, action, target.0, target.1, &detail, now,
    )
}

/// What flow handlers fail with: one error, or all the problems of a
/// posted definition (Klaviyo's `errors` array holds several).
#[derive(Debug, thiserror::Error)]
pub enum FlowApiError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("invalid flow definition ({} problems)", .0.len())]
    Definition(Vec<ApiError>),
}

impl IntoResponse for FlowApiError {
    fn into_response(self) -> Response {
        match self {
            FlowApiError::Api(e) => e.into_response(),
            FlowApiError::Definition(errors) => {
                let objects: Vec<Value> = errors
                    .iter()
                    .filter_map(|e| e.to_body()["errors"].get(0).cloned())
                    .collect();
                let body = json!({ "errors": objects }).to_string();
                let mut resp = (StatusCode::BAD_REQUEST, body).into_response();
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(JSON_API_CONTENT_TYPE),
                );
                resp
            }
        }
    }
}

type FlowResult = Result<JsonApiResponse, FlowApiError>;

fn definition_errors(errors: Vec<FlowError>) -> FlowApiError {
    FlowApiError::Definition(
        errors
            .into_iter()
            .map(|e| ApiError::invalid_pointer(e.pointer.clone(), e.detail()))
            .collect(),
    )
}

fn foreign_id(e: &ForeignActionId, base: &str) -> FlowApiError {
    FlowApiError::Api(ApiError::invalid_pointer(
        format!("{base}/actions/{}/id", e.index),
        e.to_string(),
    ))
}

/// Parses and validates a definition against the account's metrics and
/// lists, read through `conn`, and the operator's allow-list of plain-http
/// webhook hosts. Unknown list ids are reported beside everything `check`
/// finds.
fn validate(
    conn: &mut dyn Conn,
    account: &str,
    json: Value,
    base: &str,
    allow_private: &[String],
) -> Result<Result<FlowDefinition, Vec<FlowError>>, StoreError> {
    let mut names: HashMap<String, String> = HashMap::new();
    let mut list_errors = Vec::new();
    let triggers = json
        .get("triggers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, t) in triggers.iter().enumerate() {
        let Some(id) = t.get("id").and_then(Value::as_str) else {
            continue;
        };
        match t.get("type").and_then(Value::as_str) {
            Some("metric") => {
                if let Some(m) = metrics::get(conn, account, id)? {
                    names.insert(m.id, m.name);
                }
            }
            Some("list") if lists::get(conn, account, id)?.is_none() => {
                list_errors.push(FlowError {
                    pointer: format!("{base}/triggers/{i}/id"),
                    kind: FlowErrorKind::Malformed(format!("list '{id}' does not exist")),
                });
            }
            Some("segment") if outflow_store::segments::get(conn, account, id)?.is_none() => {
                list_errors.push(FlowError {
                    pointer: format!("{base}/triggers/{i}/id"),
                    kind: FlowErrorKind::Malformed(format!("segment '{id}' does not exist")),
                });
            }
            _ => {}
        }
    }
    let lookup = |id: &str| names.get(id).cloned();
    let allow_http = |url: &str| crate::state::host_allowed(url, allow_private);
    let checks = Checks {
        metric_name: &lookup,
        allow_http: &allow_http,
    };
    Ok(match check(json, &checks, base) {
        Ok(def) if list_errors.is_empty() => Ok(def),
        Ok(_) => Err(list_errors),
        Err(mut errs) => {
            errs.extend(list_errors);
            Err(errs)
        }
    })
}

#[derive(Debug, Deserialize)]
pub struct FlowData {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub id: Option<String>,
    pub attributes: FlowAttributes,
}

#[derive(Debug, Deserialize)]
pub struct FlowAttributes {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub definition: Option<Value>,
}

fn status_of(s: Option<&str>) -> Result<Option<String>, ApiError> {
    match s {
        None => Ok(None),
        Some(s @ ("draft" | "manual" | "live")) => Ok(Some(s.to_owned())),
        Some(other) => Err(ApiError::invalid_pointer(
            "/data/attributes/status",
            format!(
                "'{}' is not a flow status; use draft, manual or live.",
                crate::error::truncate(other, 64)
            ),
        )),
    }
}

fn name_of(n: Option<&str>) -> Result<Option<String>, ApiError> {
    match n.map(str::trim) {
        None => Ok(None),
        Some("") => Err(ApiError::invalid_pointer(
            "/data/attributes/name",
            "The flow name must not be empty.",
        )),
        Some(n) => Ok(Some(n.to_owned())),
    }
}

/// `POST /api/flows` → 201, with the stored definition (ids assigned).
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    crate::extract::JsonApi(doc): crate::extract::JsonApi<Doc<FlowData>>,
) -> FlowResult {
    auth.require("flows:write")?;
    let fields = q.fields("flow", &[])?;
    q.additional_fields("flow", &["definition"])?;
    expect_type(&doc.data.kind, "flow", "/data/type")?;
    let attrs = doc.data.attributes;
    let name = name_of(attrs.name.as_deref())?
        .ok_or_else(|| ApiError::missing_field("/data/attributes", "name"))?;
    let status = status_of(attrs.status.as_deref())?.unwrap_or_else(|| "draft".into());
    let definition = attrs
        .definition
        .ok_or_else(|| ApiError::missing_field("/data/attributes", "definition"))?;
    let webhooks = touches_webhooks(None, Some(&definition));
    if webhooks {
        auth.require_webhook_access()?;
    }
    let (account, now, actor) = (auth.account().to_owned(), state.now(), auth.actor());
    let allow = state.webhooks_allow_private();
    let saved = state
        .store
        .write(move |ctx| {
            let def = match validate(ctx.conn, &account, definition, DEFINITION, &allow)? {
                Ok(def) => def,
                Err(errs) => return Ok(Err(definition_errors(errs))),
            };
            let made = store_flows::create(ctx, &account, &name, &status, def, now)?;
            if let Ok((flow, _)) = &made {
                let detail = json!({
                    "name": flow.name,
                    "status": flow.status,
                    "version": flow.version,
                    "webhooks_changed": webhooks,
                });
                audit_flow(
                    ctx,
                    &account,
                    &actor,
                    "flow.create",
                    ("flow", &flow.id),
                    detail,
                    now,
                )?;
            }
            Ok(made.map_err(|e| foreign_id(&e, DEFINITION)))
        })
        .await
        .map_err(store_error)??;
    state.wake();
    let (flow, def) = saved;
    let mut r = resources::flow(&url, &flow, Some(&def));
    r.apply_fields(fields.as_deref());
    Ok(JsonApiResponse::created(single_document(&url, &r, &[])))
}

/// `GET /api/flows/{id}` (`additional-fields[flow]=definition`)
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    Path(id): Path<String>,
) -> FlowResult {
    auth.require("flows:read")?;
    let with_def = wants_definition(&q)?;
    let fields = q.fields("flow", &[])?;
    let (account, shown) = (auth.account().to_owned(), id.clone());
    let (flow, def) = state
        .store
        .read(move |c| store_flows::get_with_definition(c, &account, &id))
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::resource_not_found("flow", &shown))?;
    let mut r = resources::flow(&url, &flow, with_def.then_some(&def));
    r.apply_fields(fields.as_deref());
    Ok(JsonApiResponse::ok(single_document(&url, &r, &[])))
}

fn wants_definition(q: &ApiQuery) -> Result<bool, ApiError> {
    Ok(q.additional_fields("flow", &["definition"])?
        .iter()
        .any(|f| f == "definition"))
}

/// `PATCH /api/flows/{id}`: status (Klaviyo's only field), and, as an
/// Outflow extension, name and definition. A changed definition becomes a
/// new version. A status also becomes the status of every action, in every
/// version (runs already waiting follow it), and going live or manual from
/// draft marks the moment before which events and list joins never start
/// the flow: see `outflow_store::flows::update`. A status-only change is
/// not behind the webhook gate (it never changes where a webhook sends).
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    Path(id): Path<String>,
    crate::extract::JsonApi(doc): crate::extract::JsonApi<Doc<FlowData>>,
) -> FlowResult {
    auth.require("flows:write")?;
    let with_def = wants_definition(&q)?;
    let fields = q.fields("flow", &[])?;
    expect_type(&doc.data.kind, "flow", "/data/type")?;
    check_id(doc.data.id.as_deref(), &id)?;
    let attrs = doc.data.attributes;
    let name = name_of(attrs.name.as_deref())?;
    let status = status_of(attrs.status.as_deref())?;
    let definition = attrs.definition;
    if name.is_none() && status.is_none() && definition.is_none() {
        return Err(ApiError::missing_field("/data/attributes", "status").into());
    }
    let (account, now, shown) = (auth.account().to_owned(), state.now(), id.clone());
    let allow = state.webhooks_allow_private();
    // Decided now, applied only if the change touches a webhook action.
    let gate = auth.require_webhook_access();
    let actor = auth.actor();
    let saved = state
        .store
        .write(move |ctx| {
            let Some((old, before)) = store_flows::get_with_definition(ctx.conn, &account, &id)?
            else {
                return Ok(Err(ApiError::resource_not_found("flow", &id).into()));
            };
            let definition = match definition {
                None => None,
                Some(json) => match validate(ctx.conn, &account, json, DEFINITION, &allow)? {
                    Ok(def) => Some(def),
                    Err(errs) => return Ok(Err(definition_errors(errs))),
                },
            };
            let webhooks = definition
                .as_ref()
                .is_some_and(|d| touches_webhooks(Some(&before), Some(d.raw())));
            if webhooks {
                if let Err(e) = gate {
                    return Ok(Err(e.into()));
                }
            }
            let mut detail = json!({
                "name": name,
                "status": status,
                "webhooks_changed": webhooks,
            });
            let change = FlowChange {
                name,
                status,
                definition,
            };
            let done = store_flows::update(ctx, &account, &id, change, now)?;
            if let Ok((flow, _)) = &done {
                detail["version"] = json!(flow.version);
                detail["definition_changed"] = json!(flow.version != old.version);
                audit_flow(
                    ctx,
                    &account,
                    &actor,
                    "flow.update",
                    ("flow", &id),
                    detail,
                    now,
                )?;
            }
            Ok(done.map_err(|e| foreign_id(&e, DEFINITION)))
        })
        .await
        .map_err(|e| not_found_as("flow", &shown, e))??;
    state.wake();
    let (flow, def) = saved;
    let mut r = resources::flow(&url, &flow, with_def.then_some(&def));
    r.apply_fields(fields.as_deref());
    Ok(JsonApiResponse::ok(single_document(&url, &r, &[])))
}

fn check_id(body_id: Option<&str>, path_id: &str) -> Result<(), ApiError> {
    match body_id {
        Some(b) if b != path_id => Err(ApiError::invalid_pointer(
            "/data/id",
            format!(
                "The id in the body ('{}') does not match the id in the URL.",
                crate::error::truncate(b, 64)
            ),
        )),
        _ => Ok(()),
    }
}

fn not_found_as(kind: &str, id: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(_) => ApiError::resource_not_found(kind, id),
        e => store_error(e),
    }
}

/// `DELETE /api/flows/{id}` → 204
pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> FlowResult {
    auth.require("flows:write")?;
    let (account, shown) = (auth.account().to_owned(), id.clone());
    let (gate, actor, now) = (auth.require_webhook_access(), auth.actor(), state.now());
    state
        .store
        .write(move |ctx| {
            let Some((_, before)) = store_flows::get_with_definition(ctx.conn, &account, &id)?
            else {
                return Err(StoreError::NotFound(format!("flow {id}")));
            };
            let webhooks = touches_webhooks(Some(&before), None);
            if webhooks {
                if let Err(e) = gate {
                    return Ok(Err(e));
                }
            }
            store_flows::delete(ctx, &account, &id)?;
            let detail = json!({"webhooks_changed": webhooks});
            audit_flow(
                ctx,
                &account,
                &actor,
                "flow.delete",
                ("flow", &id),
                detail,
                now,
            )?;
            Ok(Ok(()))
        })
        .await
        .map_err(|e| not_found_as("flow", &shown, e))??;
    state.wake();
    Ok(JsonApiResponse::no_content())
}

// ---------------------------------------------------------------- listing

/// Sorts and pages in memory: an account's flows and a flow's actions are
/// few. `key` gives each item's `(sort key, id)`; keys of numbers are
/// zero-padded so text order is numeric order.
fn paginate<T>(
    mut items: Vec<T>,
    page: &PageParams,
    descending: bool,
    key: impl Fn(&T) -> (String, String),
) -> Page<T> {
    items.sort_by(|a, b| {
        let o = key(a).cmp(&key(b));
        if descending {
            o.reverse()
        } else {
            o
        }
    });
    let mut params = page.clone();
    if let Some(c) = &page.cursor {
        let at = (c.key.clone(), c.id.clone());
        items.retain(|i| {
            let k = key(i);
            if descending {
                k < at
            } else {
                k > at
            }
        });
        // Only `next` links are handed out; treat any cursor as one.
        params.cursor = Some(Cursor {
            direction: Direction::Next,
            ..c.clone()
        });
    }
    items.truncate(params.fetch_limit());
    let mut page = Page::from_rows(items, &params, key);
    page.prev = None;
    page
}

fn padded(n: i64) -> String {
    format!("{n:020}")
}

/// Whether `cond` holds for a time (microseconds). `equals` compares to the
/// second, the precision Klaviyo shows.
fn time_matches(cond: &Condition, us: i64) -> Result<bool, ApiError> {
    let want = cond
        .value
        .as_datetime()
        .ok_or_else(|| {
            ApiError::invalid_parameter(
                "filter",
                format!("'{}' needs a datetime value.", cond.field),
            )
        })?
        .timestamp_micros();
    let secs = |v: i64| v.div_euclid(1_000_000);
    Ok(match cond.op {
        Op::Equals => secs(us) == secs(want),
        Op::GreaterThan => us > want,
        Op::GreaterOrEqual => us >= want,
        Op::LessThan => us < want,
        Op::LessOrEqual => us <= want,
        _ => false,
    })
}

fn string_value(cond: &Condition) -> Result<&str, ApiError> {
    cond.value.as_str().ok_or_else(|| {
        ApiError::invalid_parameter("filter", format!("'{}' needs a string value.", cond.field))
    })
}

fn in_list(cond: &Condition, value: &str) -> Result<bool, ApiError> {
    let values = cond.value.strings().ok_or_else(|| {
        ApiError::invalid_parameter(
            "filter",
            format!("'{}' needs a list of strings.", cond.field),
        )
    })?;
    Ok(values.contains(&value))
}

const TIME_OPS: &[Op] = &[
    Op::Equals,
    Op::GreaterOrEqual,
    Op::GreaterThan,
    Op::LessOrEqual,
    Op::LessThan,
];

/// Whether a flow passes every condition of `GET /api/flows`'s filter.
fn flow_matches(f: &Flow, filter: &Filter) -> Result<bool, ApiError> {
    for c in &filter.conditions {
        let ok = match c.field.as_str() {
            "id" => in_list(c, &f.id)?,
            "name" => {
                let v = string_value(c)?;
                match c.op {
                    Op::Equals => f.name == v,
                    Op::Contains => f.name.contains(v),
                    Op::StartsWith => f.name.starts_with(v),
                    Op::EndsWith => f.name.ends_with(v),
                    _ => false,
                }
            }
            "status" => f.status == string_value(c)?,
            "archived" => {
                let v = c.value.as_bool().ok_or_else(|| {
                    ApiError::invalid_parameter("filter", "'archived' needs true or false.")
                })?;
                f.archived == v
            }
            "trigger_type" => resources::flow_trigger_label(&f.trigger_type) == string_value(c)?,
            "created" => time_matches(c, f.created)?,
            "updated" => time_matches(c, f.updated)?,
            _ => true,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn flow_sort_key(f: &Flow, sort: &Option<Sort>) -> (String, String) {
    let field = sort.as_ref().map_or("created", |s| s.field.as_str());
    let key = match field {
        "id" => String::new(),
        "name" => f.name.clone(),
        "status" => f.status.clone(),
        "trigger_type" => resources::flow_trigger_label(&f.trigger_type).to_owned(),
        "updated" => padded(f.updated),
        _ => padded(f.created),
    };
    (key, f.id.clone())
}

/// The flows page of a listing, rendered.
fn flows_document(
    url: &RequestUrl,
    q: &ApiQuery,
    flows: Vec<Flow>,
    filter: &Filter,
) -> Result<Value, ApiError> {
    let sort = q.sort(&["created", "id", "name", "status", "trigger_type", "updated"])?;
    let fields = q.fields("flow", &[])?;
    let page = q.page(FLOWS_PAGE)?;
    let mut kept = Vec::new();
    for f in flows {
        if flow_matches(&f, filter)? {
            kept.push(f);
        }
    }
    let descending = sort.as_ref().is_some_and(|s| s.descending);
    let page = paginate(kept, &page, descending, |f| flow_sort_key(f, &sort));
    Ok(page
        .map(|f| {
            let mut r = resources::flow(url, &f, None);
            r.apply_fields(fields.as_deref());
            r
        })
        .into_document(url, &[]))
}

/// `GET /api/flows`
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
) -> FlowResult {
    auth.require("flows:read")?;
    let filter = q.filter(&[
        ("id", &[Op::Any]),
        (
            "name",
            &[Op::Contains, Op::EndsWith, Op::Equals, Op::StartsWith],
        ),
        ("status", &[Op::Equals]),
        ("archived", &[Op::Equals]),
        ("created", TIME_OPS),
        ("updated", TIME_OPS),
        ("trigger_type", &[Op::Equals]),
    ])?;
    let account = auth.account().to_owned();
    let flows = state
        .store
        .read(move |c| store_flows::list(c, &account))
        .await
        .map_err(store_error)?;
    Ok(JsonApiResponse::ok(flows_document(
        &url, &q, flows, &filter,
    )?))
}

/// `GET /api/metrics/{id}/flow-triggers` and `GET /api/lists/{id}/flow-triggers`.
async fn triggered_by(
    state: AppState,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    kind: &'static str,
    id: String,
) -> FlowResult {
    auth.require("flows:read")?;
    let (account, shown) = (auth.account().to_owned(), id.clone());
    let found = state
        .store
        .read(move |c| {
            let exists = match kind {
                "metric" => metrics::get(c, &account, &id)?.is_some(),
                "segment" => outflow_store::segments::get(c, &account, &id)?.is_some(),
                _ => lists::get(c, &account, &id)?.is_some(),
            };
            if !exists {
                return Ok(None);
            }
            store_flows::triggered_by(c, &account, kind, &id).map(Some)
        })
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::resource_not_found(kind, &shown))?;
    Ok(JsonApiResponse::ok(flows_document(
        &url,
        &q,
        found,
        &Filter::default(),
    )?))
}

/// `GET /api/metrics/{id}/flow-triggers`
pub async fn metric_flow_triggers(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    Path(id): Path<String>,
) -> FlowResult {
    auth.require("metrics:read")?;
    triggered_by(state, auth, url, q, "metric", id).await
}

/// `GET /api/segments/{id}/flow-triggers`
pub async fn segment_flow_triggers(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    Path(id): Path<String>,
) -> FlowResult {
    auth.require("segments:read")?;
    triggered_by(state, auth, url, q, "segment", id).await
}

/// `GET /api/lists/{id}/flow-triggers`
pub async fn list_flow_triggers(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    Path(id): Path<String>,
) -> FlowResult {
    auth.require("lists:read")?;
    triggered_by(state, auth, url, q, "list", id).await
}

// ---------------------------------------------------------------- flow actions

/// An action with its definition and effective status (its own
/// `data.status`, else the flow's).
struct ActionView {
    action: FlowAction,
    definition: Value,
    status: String,
}

fn action_view(action: FlowAction, flow: &Flow, def: &Value) -> ActionView {
    let definition = store_flows::action_definition(def, &action.id).unwrap_or(Value::Null);
    let status = definition
        .pointer("/data/status")
        .and_then(Value::as_str)
        .unwrap_or(&flow.status)
        .to_owned();
    ActionView {
        action,
        definition,
        status,
    }
}

fn action_matches(a: &ActionView, filter: &Filter) -> Result<bool, ApiError> {
    for c in &filter.conditions {
        let ok = match c.field.as_str() {
            "id" => in_list(c, &a.action.id)?,
            "action_type" => in_list(c, &a.action.action_type)?,
            "status" => a.status == string_value(c)?,
            "created" => time_matches(c, a.action.created)?,
            "updated" => time_matches(c, a.action.updated)?,
            _ => true,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The current actions of a flow with their definitions; `None` if the
/// flow does not exist.
async fn flow_actions(
    state: &AppState,
    account: &str,
    flow_id: &str,
) -> Result<Vec<ActionView>, ApiError> {
    let (account, id) = (account.to_owned(), flow_id.to_owned());
    let found = state
        .store
        .read(move |c| {
            let Some((flow, def)) = store_flows::get_with_definition(c, &account, &id)? else {
                return Ok(None);
            };
            let actions = store_flows::actions(c, &account, &id)?;
            Ok(Some(
                actions
                    .into_iter()
                    .map(|a| action_view(a, &flow, &def))
                    .collect(),
            ))
        })
        .await
        .map_err(store_error)?;
    found.ok_or_else(|| ApiError::resource_not_found("flow", flow_id))
}

/// The filtered, sorted page of a flow's actions.
fn actions_page(q: &ApiQuery, views: Vec<ActionView>) -> Result<Page<ActionView>, ApiError> {
    let filter = q.filter(&[
        ("id", &[Op::Any]),
        ("action_type", &[Op::Any, Op::Equals]),
        ("status", &[Op::Equals]),
        ("created", TIME_OPS),
        ("updated", TIME_OPS),
    ])?;
    let sort = q.sort(&["action_type", "created", "id", "status", "updated"])?;
    let page = q.page(FLOW_ACTIONS_PAGE)?;
    let mut kept = Vec::new();
    for v in views {
        if action_matches(&v, &filter)? {
            kept.push(v);
        }
    }
    let descending = sort.as_ref().is_some_and(|s| s.descending);
    let field = sort.as_ref().map_or("id", |s| s.field.as_str()).to_owned();
    Ok(paginate(kept, &page, descending, move |v| {
        let id = v.action.id.parse::<i64>().map(padded).unwrap_or_default();
        let key = match field.as_str() {
            "action_type" => v.action.action_type.clone(),
            "created" => padded(v.action.created),
            "status" => v.status.clone(),
            "updated" => padded(v.action.updated),
            _ => String::new(),
        };
        (key, id)
    }))
}

/// `GET /api/flows/{id}/flow-actions`
pub async fn actions_of_flow(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    Path(id): Path<String>,
) -> FlowResult {
    auth.require("flows:read")?;
    let fields = q.fields("flow-action", &[])?;
    let views = flow_actions(&state, auth.account(), &id).await?;
    let page = actions_page(&q, views)?;
    Ok(JsonApiResponse::ok(
        page.map(|v| {
            let mut r = resources::flow_action(&url, &v.action, v.definition);
            r.apply_fields(fields.as_deref());
            r
        })
        .into_document(&url, &[]),
    ))
}

/// `GET /api/flows/{id}/relationships/flow-actions`
pub async fn action_ids_of_flow(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    Path(id): Path<String>,
) -> FlowResult {
    auth.require("flows:read")?;
    let views = flow_actions(&state, auth.account(), &id).await?;
    let page = actions_page(&q, views)?;
    let links = page.links(&url);
    let data: Vec<Value> = page
        .items
        .iter()
        .map(|v| json!({"type": "flow-action", "id": v.action.id}))
        .collect();
    Ok(JsonApiResponse::ok(
        json!({"data": data, "links": links.to_value()}),
    ))
}

/// An action, its flow and the flow's current definition.
async fn load_action(
    state: &AppState,
    account: &str,
    id: &str,
) -> Result<(FlowAction, Flow, Value), ApiError> {
    let (account, aid) = (account.to_owned(), id.to_owned());
    let found = state
        .store
        .read(move |c| {
            let Some(action) = store_flows::action(c, &account, &aid)? else {
                return Ok(None);
            };
            let flow = store_flows::get_with_definition(c, &account, &action.flow_id)?;
            Ok(flow.map(|(f, d)| (action, f, d)))
        })
        .await
        .map_err(store_error)?;
    found.ok_or_else(|| ApiError::resource_not_found("flow-action", id))
}

/// `GET /api/flow-actions/{id}`
pub async fn get_action(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    Path(id): Path<String>,
) -> FlowResult {
    auth.require("flows:read")?;
    let fields = q.fields("flow-action", &[])?;
    let (action, flow, def) = load_action(&state, auth.account(), &id).await?;
    let v = action_view(action, &flow, &def);
    let mut r = resources::flow_action(&url, &v.action, v.definition);
    r.apply_fields(fields.as_deref());
    Ok(JsonApiResponse::ok(single_document(&url, &r, &[])))
}

/// `GET /api/flow-actions/{id}/flow`
pub async fn flow_of_action(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    Path(id): Path<String>,
) -> FlowResult {
    auth.require("flows:read")?;
    let fields = q.fields("flow", &[])?;
    let (_, flow, _) = load_action(&state, auth.account(), &id).await?;
    let mut r = resources::flow(&url, &flow, None);
    r.apply_fields(fields.as_deref());
    Ok(JsonApiResponse::ok(single_document(&url, &r, &[])))
}

#[derive(Debug, Deserialize)]
pub struct ActionData {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub id: Option<String>,
    pub attributes: ActionAttributes,
}

#[derive(Debug, Deserialize)]
pub struct ActionAttributes {
    pub definition: Value,
}

/// Rewrites pointers into the whole flow definition so those inside the
/// patched action point into the request body instead.
fn rebase(errors: Vec<FlowError>, action_ptr: &str) -> Vec<FlowError> {
    errors
        .into_iter()
        .map(|mut e| {
            e.pointer = match e.pointer.strip_prefix(action_ptr) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                    format!("{DEFINITION}{rest}")
                }
                _ => DEFINITION.to_owned(),
            };
            e
        })
        .collect()
}

/// `PATCH /api/flow-actions/{id}`: replaces the action's definition, which
/// saves a new version of its flow with that action changed.
pub async fn update_action(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    Path(id): Path<String>,
    crate::extract::JsonApi(doc): crate::extract::JsonApi<Doc<ActionData>>,
) -> FlowResult {
    auth.require("flows:write")?;
    expect_type(&doc.data.kind, "flow-action", "/data/type")?;
    check_id(doc.data.id.as_deref(), &id)?;
    let mut posted = doc.data.attributes.definition;
    let Some(obj) = posted.as_object_mut() else {
        return Err(ApiError::invalid_pointer(
            DEFINITION,
            "The action definition must be an object.",
        )
        .into());
    };
    match obj.get("id").and_then(Value::as_str) {
        Some(given) if given != id => {
            return Err(ApiError::invalid_pointer(
                format!("{DEFINITION}/id"),
                "The action's id cannot be changed.",
            )
            .into())
        }
        _ => {
            obj.remove("temporary_id");
            obj.insert("id".into(), Value::String(id.clone()));
        }
    }
    let (account, now) = (auth.account().to_owned(), state.now());
    let aid = id.clone();
    let allow = state.webhooks_allow_private();
    let (gate, actor) = (auth.require_webhook_access(), auth.actor());
    let saved = state
        .store
        .write(move |ctx| {
            let Some(action) = store_flows::action(ctx.conn, &account, &aid)? else {
                return Ok(Err(ApiError::resource_not_found("flow-action", &aid).into()));
            };
            let Some((_, mut whole)) =
                store_flows::get_with_definition(ctx.conn, &account, &action.flow_id)?
            else {
                return Ok(Err(ApiError::resource_not_found("flow-action", &aid).into()));
            };
            let slot = whole
                .get_mut("actions")
                .and_then(Value::as_array_mut)
                .and_then(|a| {
                    a.iter()
                        .position(|x| x.get("id").and_then(Value::as_str) == Some(aid.as_str()))
                        .map(|i| (i, a))
                });
            let Some((index, actions)) = slot else {
                return Ok(Err(ApiError::resource_not_found("flow-action", &aid).into()));
            };
            let webhooks = touches_webhooks(
                Some(&json!({"actions": [&actions[index]]})),
                Some(&json!({"actions": [&posted]})),
            );
            if webhooks {
                if let Err(e) = gate {
                    return Ok(Err(e.into()));
                }
            }
            actions[index] = posted;
            let inner = format!("{DEFINITION}/actions/{index}");
            let def = match validate(ctx.conn, &account, whole, DEFINITION, &allow)? {
                Ok(def) => def,
                Err(errs) => return Ok(Err(definition_errors(rebase(errs, &inner)))),
            };
            let change = FlowChange {
                definition: Some(def),
                ..FlowChange::default()
            };
            match store_flows::update(ctx, &account, &action.flow_id, change, now)? {
                Ok((flow, def)) => {
                    let detail = json!({"flow_id": flow.id, "webhooks_changed": webhooks});
                    audit_flow(
                        ctx,
                        &account,
                        &actor,
                        "flow-action.update",
                        ("flow-action", &aid),
                        detail,
                        now,
                    )?;
                    let action = store_flows::action(ctx.conn, &account, &aid)?
                        .ok_or_else(|| StoreError::NotFound(format!("flow-action {aid}")))?;
                    Ok(Ok((action, flow, def)))
                }
                Err(e) => Ok(Err(foreign_id(&e, DEFINITION))),
            }
        })
        .await
        .map_err(store_error)??;
    state.wake();
    let (action, flow, def) = saved;
    let v = action_view(action, &flow, &def);
    let r: Resource = resources::flow_action(&url, &v.action, v.definition);
    Ok(JsonApiResponse::ok(single_document(&url, &r, &[])))
}

#[cfg(test)]
mod gate_tests {
    use super::touches_webhooks;
    use serde_json::json;

    fn def(actions: serde_json::Value) -> serde_json::Value {
        json!({ "actions": actions })
    }

    #[test]
    fn what_touches_a_webhook_action() {
        let hook = json!({"id": "2", "type": "send-webhook", "links": {"next": null},
            "data": {"message": {"url": "https://a.example/x"}}});
        let delay = json!({"id": "1", "type": "time-delay", "links": {"next": "2"}, "data": {"unit": "days", "value": 1}});
        let before = def(json!([delay, hook]));
        // Unchanged, or only other actions (and links) changed: no.
        assert!(!touches_webhooks(Some(&before), Some(&before)));
        let mut moved = hook.clone();
        moved["links"]["next"] = json!("3");
        let other = json!({"id": "1", "type": "time-delay", "links": {"next": "2"}, "data": {"unit": "days", "value": 2}});
        assert!(!touches_webhooks(
            Some(&before),
            Some(&def(json!([other, moved])))
        ));
        assert!(!touches_webhooks(None, Some(&def(json!([delay])))));
        // Added (new, temporary id), edited, removed, or retyped: yes.
        let new = json!({"temporary_id": "h", "type": "send-webhook", "data": {}});
        assert!(touches_webhooks(None, Some(&def(json!([new])))));
        assert!(touches_webhooks(
            Some(&before),
            Some(&def(json!([delay, hook, new])))
        ));
        let mut edited = hook.clone();
        edited["data"]["message"]["url"] = json!("https://b.example/x");
        assert!(touches_webhooks(
            Some(&before),
            Some(&def(json!([delay, edited])))
        ));
        assert!(touches_webhooks(Some(&before), Some(&def(json!([delay])))));
        assert!(touches_webhooks(Some(&before), None));
        let retyped =
            json!({"id": "2", "type": "time-delay", "data": {"unit": "days", "value": 1}});
        assert!(touches_webhooks(
            Some(&before),
            Some(&def(json!([delay, retyped])))
        ));
    }
}
