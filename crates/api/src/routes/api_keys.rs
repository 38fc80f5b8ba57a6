//! `/outflow/v1/api-keys`: a user's private keys. A key is shown once, at
//! creation, and stored only as its hash; it belongs to the user who made
//! it and acts with at most that user's rights at the time of use.
//! Revocation is immediate.
//!
//! Who may manage keys: a login session (its own user's keys), or a key
//! that carries the `admin` scope. Owners and admins see and revoke every
//! key of the account; others only their own.

use super::auth::time;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::JsonApi;
use crate::state::{store_error, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use outflow_store::accounts::{self, KeyInfo, ALL_SCOPES};
use outflow_store::audit;
use serde::Deserialize;
use serde_json::{json, Value};

fn key_json(k: &KeyInfo) -> Value {
    json!({
        "type": "api-key",
        "id": k.id,
        "user_id": k.user_id,
        "name": k.name,
        "prefix": k.prefix,
        "scopes": k.scopes,
        "created": time(k.created),
        "revoked": k.revoked.map(time),
    })
}

fn may_manage_keys(auth: &Auth) -> Result<(), ApiError> {
    auth.require_self_service()
}

/// Whether the caller sees every key of the account.
fn sees_all(auth: &Auth) -> bool {
    auth.require_admin().is_ok()
}

#[derive(Deserialize)]
pub struct NewKey {
    name: String,
    scopes: Vec<String>,
}

/// `POST /outflow/v1/api-keys` {name, scopes} → 201 with `key`, shown once.
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonApi(body): JsonApi<NewKey, 16384>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    may_manage_keys(&auth)?;
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ApiError::invalid_pointer(
            "/name",
            "A name of 1 to 255 characters is required.",
        ));
    }
    if body.scopes.is_empty() {
        return Err(ApiError::invalid_pointer(
            "/scopes",
            "At least one scope is required.",
        ));
    }
    let mut scopes: Vec<&'static str> = Vec::new();
    for (i, s) in body.scopes.iter().enumerate() {
        let Some(known) = ALL_SCOPES.iter().copied().find(|k| k == s) else {
            return Err(ApiError::invalid_pointer(
                format!("/scopes/{i}"),
                format!(
                    "'{}' is not a scope; known scopes: {}.",
                    crate::error::truncate(s, 64),
                    ALL_SCOPES.join(", ")
                ),
            ));
        };
        if !auth.0.role.allows(known) {
            return Err(ApiError::permission_denied(format!(
                "The role {} does not allow {known}, so a key of this user cannot carry it.",
                auth.0.role.as_str()
            )));
        }
        if !scopes.contains(&known) {
            scopes.push(known);
        }
    }
    let (account, user, actor, now) = (
        auth.account().to_owned(),
        auth.user().to_owned(),
        auth.actor(),
        state.now(),
    );
    let (info, plain) = state
        .store
        .write(move |ctx| {
            let (info, plain) =
                accounts::create_key(ctx.conn, &account, &user, &name, &scopes, now)?;
            audit::record(
                ctx.conn,
                &account,
                &actor,
                "api_key.create",
                "api_key",
                &info.id,
                &json!({"name": info.name, "scopes": info.scopes, "user_id": info.user_id}),
                now,
            )?;
            Ok((info, plain))
        })
        .await
        .map_err(store_error)?;
    let mut data = key_json(&info);
    data["key"] = Value::String(plain);
    Ok((StatusCode::CREATED, Json(json!({"data": data}))))
}

/// `GET /outflow/v1/api-keys`: without secrets.
pub async fn list(State(state): State<AppState>, auth: Auth) -> Result<Json<Value>, ApiError> {
    may_manage_keys(&auth)?;
    let account = auth.account().to_owned();
    let only = (!sees_all(&auth)).then(|| auth.user().to_owned());
    let keys = state
        .store
        .read(move |c| accounts::list_keys(c, &account, only.as_deref()))
        .await
        .map_err(store_error)?;
    Ok(Json(
        json!({"data": keys.iter().map(key_json).collect::<Vec<_>>()}),
    ))
}

/// `DELETE /outflow/v1/api-keys/{id}` → 204; the key stops working at once.
pub async fn revoke(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    may_manage_keys(&auth)?;
    let all = sees_all(&auth);
    let (account, user, actor, now) = (
        auth.account().to_owned(),
        auth.user().to_owned(),
        auth.actor(),
        state.now(),
    );
    let shown = id.clone();
    let found = state
        .store
        .write(move |ctx| {
            let Some(k) = accounts::get_key(ctx.conn, &account, &id)? else {
                return Ok(false);
            };
            if !all && k.user_id != user {
                return Ok(false);
            }
            if accounts::revoke_key(ctx.conn, &account, &id, now)? {
                audit::record(
                    ctx.conn,
                    &account,
                    &actor,
                    "api_key.revoke",
                    "api_key",
                    &id,
                    &json!({"name": k.name, "user_id": k.user_id}),
                    now,
                )?;
            }
            Ok(true)
        })
        .await
        .map_err(store_error)?;
    if !found {
        return Err(ApiError::resource_not_found("api-key", &shown));
    }
    state.forget_credentials();
    Ok(StatusCode::NO_CONTENT)
}
