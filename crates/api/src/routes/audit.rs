//! `GET /outflow/v1/audit` (owner and admin): the audit log, newest first,
//! in pages: `page[size]` (1–100, default 50) and `page[cursor]` from
//! `links.next`.

use super::auth::time;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::{store_error, AppState};
use axum::extract::{Query, State};
use axum::Json;
use outflow_store::audit;
use serde_json::{json, Value};
use std::collections::HashMap;

const DEFAULT_SIZE: i64 = 50;
const MAX_SIZE: i64 = 100;

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    auth.require_admin()?;
    let size = match q.get("page[size]") {
        None => DEFAULT_SIZE,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_SIZE).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_parameter("page[size]", format!("Use 1 to {MAX_SIZE}."))
            })?,
    };
    let before = match q.get("page[cursor]") {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            ApiError::invalid_parameter("page[cursor]", "Not a cursor from links.next.")
        })?),
    };
    let account = auth.account().to_owned();
    let mut rows = state
        .store
        .read(move |c| audit::list(c, &account, before, size + 1))
        .await
        .map_err(store_error)?;
    let more = rows.len() as i64 > size;
    rows.truncate(size as usize);
    let next = match rows.last() {
        Some(last) if more => Value::String(format!(
            "/outflow/v1/audit?page[size]={size}&page[cursor]={}",
            last.seq
        )),
        _ => Value::Null,
    };
    let data: Vec<Value> = rows
        .iter()
        .map(|e| {
            json!({
                "type": "audit-entry",
                "id": e.id,
                "at": time(e.at),
                "actor": {
                    "user_id": e.actor.user_id,
                    "api_key_id": e.actor.key_id,
                    "session_id": e.actor.session_id,
                },
                "action": e.action,
                "target": {"type": e.target_type, "id": e.target_id},
                "detail": e.detail,
            })
        })
        .collect();
    Ok(Json(json!({"data": data, "links": {"next": next}})))
}
