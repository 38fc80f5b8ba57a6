//! Users CRUD under `/outflow/v1/users` (owner and admin only). Only an
//! owner may create, change or delete an owner, or make one. Passwords are
//! hashed with argon2 before they reach the store, and never returned.

use super::auth::time;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::JsonApi;
use crate::state::{store_error, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use outflow_store::accounts::Role;
use outflow_store::audit;
use outflow_store::users::{self, User, UserChange, MIN_PASSWORD_LEN};
use serde::Deserialize;
use serde_json::{json, Value};

const BODY: usize = 16 * 1024;

pub fn user_json(u: &User) -> Value {
    json!({
        "type": "user",
        "id": u.id,
        "email": u.email,
        "role": u.role.as_str(),
        "mfa_enabled": u.mfa_enabled,
        "has_password": u.has_password,
        "created": time(u.created),
        "updated": time(u.updated),
    })
}

fn role_of(s: &str) -> Result<Role, ApiError> {
    Role::parse(s).ok_or_else(|| {
        ApiError::invalid_pointer(
            "/role",
            format!(
                "'{}' is not a role; use owner, admin, manager, analyst, campaign_coordinator or content_creator.",
                crate::error::truncate(s, 64)
            ),
        )
    })
}

fn email_of(s: &str) -> Result<String, ApiError> {
    let e = users::normalize_email(s);
    match e.split_once('@') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() && e.len() <= 254 => Ok(e),
        _ => Err(ApiError::invalid_pointer(
            "/email",
            "A valid email address is required.",
        )),
    }
}

/// Hashes a new password off the async executor.
pub(crate) async fn hash(state: &AppState, password: String) -> Result<String, ApiError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::invalid_pointer(
            "/password",
            format!("The password must have at least {MIN_PASSWORD_LEN} characters."),
        ));
    }
    let cost = state.password_cost();
    tokio::task::spawn_blocking(move || users::hash_password(&password, cost))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(store_error)
}

fn owner_only(auth: &Auth, what: &str) -> Result<(), ApiError> {
    if auth.0.role == Role::Owner {
        Ok(())
    } else {
        Err(ApiError::permission_denied(format!(
            "Only an owner may {what}."
        )))
    }
}

#[derive(Deserialize)]
pub struct NewUser {
    email: String,
    role: String,
    #[serde(default)]
    password: Option<String>,
}

/// `POST /outflow/v1/users` {email, role, password?} → 201
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonApi(body): JsonApi<NewUser, BODY>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.require_admin()?;
    let email = email_of(&body.email)?;
    let role = role_of(&body.role)?;
    if role == Role::Owner {
        owner_only(&auth, "create an owner")?;
    }
    let hashed = match body.password {
        Some(p) => Some(hash(&state, p).await?),
        None => None,
    };
    let (account, actor, now) = (auth.account().to_owned(), auth.actor(), state.now());
    let user = state
        .store
        .write(move |ctx| {
            let u = users::create(ctx.conn, &account, &email, role, hashed.as_deref(), now)?;
            audit::record(
                ctx.conn,
                &account,
                &actor,
                "user.create",
                "user",
                &u.id,
                &json!({"email": u.email, "role": role.as_str()}),
                now,
            )?;
            Ok(u)
        })
        .await
        .map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(json!({"data": user_json(&user)}))))
}

/// `GET /outflow/v1/users`
pub async fn list(State(state): State<AppState>, auth: Auth) -> Result<Json<Value>, ApiError> {
    auth.require_admin()?;
    let account = auth.account().to_owned();
    let all = state
        .store
        .read(move |c| users::list(c, &account))
        .await
        .map_err(store_error)?;
    Ok(Json(
        json!({"data": all.iter().map(user_json).collect::<Vec<_>>()}),
    ))
}

async fn load(state: &AppState, auth: &Auth, id: &str) -> Result<User, ApiError> {
    let (account, uid) = (auth.account().to_owned(), id.to_owned());
    state
        .store
        .read(move |c| users::get(c, &account, &uid))
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::resource_not_found("user", id))
}

/// `GET /outflow/v1/users/{id}`
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.require_admin()?;
    let u = load(&state, &auth, &id).await?;
    Ok(Json(json!({"data": user_json(&u)})))
}

#[derive(Deserialize)]
pub struct UserPatch {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    password: Option<String>,
    /// `false` turns the user's MFA off (a lost authenticator); they
    /// enrol again with `/outflow/v1/me/mfa`.
    #[serde(default)]
    mfa_enabled: Option<bool>,
}

/// `PATCH /outflow/v1/users/{id}` {email?, role?, password?, mfa_enabled:
/// false?}. A new password ends the user's sessions; every change applies
/// to the user's keys at once.
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonApi(body): JsonApi<UserPatch, BODY>,
) -> Result<Json<Value>, ApiError> {
    auth.require_admin()?;
    let current = load(&state, &auth, &id).await?;
    let role = body.role.as_deref().map(role_of).transpose()?;
    if current.role == Role::Owner || role == Some(Role::Owner) {
        owner_only(&auth, "change an owner or make one")?;
    }
    let email = body.email.as_deref().map(email_of).transpose()?;
    if body.mfa_enabled == Some(true) {
        return Err(ApiError::invalid_pointer(
            "/mfa_enabled",
            "MFA is enabled by its user (POST /outflow/v1/me/mfa); here it can only be turned off.",
        ));
    }
    let reset_mfa = body.mfa_enabled == Some(false);
    if email.is_none() && role.is_none() && body.password.is_none() && !reset_mfa {
        return Err(ApiError::invalid(
            "Nothing to change: give email, role, password or mfa_enabled: false.",
        ));
    }
    let password_hash = match body.password {
        Some(p) => Some(hash(&state, p).await?),
        None => None,
    };
    let detail = json!({
        "email": email,
        "role": role.map(Role::as_str),
        "password_changed": password_hash.is_some(),
        "mfa_reset": reset_mfa,
    });
    let (account, actor, now) = (auth.account().to_owned(), auth.actor(), state.now());
    let change = UserChange {
        email,
        role,
        password_hash,
        reset_mfa,
    };
    let user = state
        .store
        .write(move |ctx| {
            let u = users::update(ctx.conn, &account, &id, change, now)?;
            audit::record(
                ctx.conn,
                &account,
                &actor,
                "user.update",
                "user",
                &u.id,
                &detail,
                now,
            )?;
            Ok(u)
        })
        .await
        .map_err(store_error)?;
    state.forget_credentials();
    Ok(Json(json!({"data": user_json(&user)})))
}

/// `DELETE /outflow/v1/users/{id}` → 204; the user's keys and sessions
/// are revoked with it.
pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    auth.require_admin()?;
    let current = load(&state, &auth, &id).await?;
    if current.role == Role::Owner {
        owner_only(&auth, "delete an owner")?;
    }
    let (account, actor, now) = (auth.account().to_owned(), auth.actor(), state.now());
    state
        .store
        .write(move |ctx| {
            users::delete(ctx.conn, &account, &id, now)?;
            audit::record(
                ctx.conn,
                &account,
                &actor,
                "user.delete",
                "user",
                &id,
                &json!({}),
                now,
            )
        })
        .await
        .map_err(store_error)?;
    state.forget_credentials();
    Ok(StatusCode::NO_CONTENT)
}
