//! Login and the caller's own account: `POST /outflow/v1/auth/login`
//! (email, password and, once enrolled, a TOTP code → a Bearer session),
//! logout, and TOTP enrolment under `/outflow/v1/me/mfa`.
//!
//! Failed logins slow down, then lock ([`users::login_wait`]): an attempt
//! before the wait is over gets 429 with `Retry-After`, without checking
//! anything, and does not count.

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::JsonApi;
use crate::state::{store_error, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use outflow_store::audit;
use outflow_store::users::{self, MfaRefusal};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::OnceLock;

/// Login and MFA bodies are small.
const SMALL_BODY: usize = 16 * 1024;

pub fn time(us: i64) -> Value {
    chrono::DateTime::from_timestamp_micros(us)
        .map_or(Value::Null, |t| Value::String(t.to_rfc3339()))
}

#[derive(Deserialize)]
pub struct LoginBody {
    email: String,
    password: String,
    #[serde(default)]
    totp_code: Option<String>,
}

fn bad_login() -> ApiError {
    ApiError::not_authenticated("Incorrect email or password.")
}

fn mfa_error(r: MfaRefusal) -> ApiError {
    match r {
        MfaRefusal::Required => ApiError::not_authenticated(
            "This user has multi-factor authentication: a totp_code is required.",
        ),
        MfaRefusal::Invalid => {
            ApiError::not_authenticated("The TOTP code is wrong, expired or already used.")
        }
        MfaRefusal::NotEnrolled => {
            ApiError::conflict("Multi-factor authentication is not being enrolled or not enabled.")
        }
        MfaRefusal::AlreadyEnabled => {
            ApiError::conflict("Multi-factor authentication is already enabled; disable it first.")
        }
    }
}

fn wait_error(until: i64, now: i64) -> ApiError {
    let secs = ((until - now).max(0) + 999_999) / 1_000_000;
    ApiError::throttled(u64::try_from(secs).unwrap_or(1).max(1))
}

/// Verifies a password off the async executor (argon2 is slow on purpose).
async fn verify(hash: Option<String>, password: String, state: &AppState) -> bool {
    // Unknown users and users without a password still pay for one
    // verification, so timing does not tell which emails exist.
    static DUMMY: OnceLock<String> = OnceLock::new();
    let cost = state.password_cost();
    tokio::task::spawn_blocking(move || {
        let (phc, real) = match hash {
            Some(h) => (h, true),
            None => (
                DUMMY
                    .get_or_init(|| {
                        users::hash_password("dummy password", cost).unwrap_or_default()
                    })
                    .clone(),
                false,
            ),
        };
        users::verify_password(&phc, &password) && real
    })
    .await
    .unwrap_or(false)
}

enum LoginOutcome {
    Session { id: String, token: String },
    Waiting(i64),
    BadPassword,
    Mfa(MfaRefusal),
}

/// `POST /outflow/v1/auth/login` {email, password, totp_code} → a session token.
pub async fn login(
    State(state): State<AppState>,
    JsonApi(body): JsonApi<LoginBody, SMALL_BODY>,
) -> Result<Json<Value>, ApiError> {
    let now = state.now();
    let email = body.email.clone();
    let record = state
        .store
        .read(move |c| users::login_record(c, &email))
        .await
        .map_err(store_error)?;
    let Some(record) = record else {
        verify(None, body.password, &state).await;
        return Err(bad_login());
    };
    if record.locked_until > now {
        return Err(wait_error(record.locked_until, now));
    }
    let ok = verify(record.password_hash.clone(), body.password, &state).await;
    let (user, account, ttl) = (
        record.user_id.clone(),
        record.account_id.clone(),
        state.session_ttl_micros(),
    );
    let code = body.totp_code;
    let outcome = state
        .store
        .write(move |ctx| {
            // Re-read under the writer: concurrent attempts must not slip past a wait.
            let locked = ctx
                .conn
                .query_opt(
                    "SELECT locked_until FROM users WHERE id = $1",
                    outflow_store::params![&user],
                )?
                .map(|r| r.int(0))
                .transpose()?
                .unwrap_or(0);
            if locked > now {
                return Ok(LoginOutcome::Waiting(locked));
            }
            if !ok {
                users::record_login_failure(ctx.conn, &user, now)?;
                return Ok(LoginOutcome::BadPassword);
            }
            if let Err(r) = users::use_totp(ctx.conn, &user, code.as_deref(), now)? {
                users::record_login_failure(ctx.conn, &user, now)?;
                return Ok(LoginOutcome::Mfa(r));
            }
            let (id, token) = users::open_session(ctx.conn, &account, &user, now, ttl)?;
            Ok(LoginOutcome::Session { id, token })
        })
        .await
        .map_err(store_error)?;
    match outcome {
        LoginOutcome::Session { id, token } => Ok(Json(json!({"data": {
            "type": "session",
            "id": id,
            "token": token,
            "token_type": "Bearer",
            "expires_at": time(now + ttl),
            "user_id": record.user_id,
        }}))),
        LoginOutcome::Waiting(until) => Err(wait_error(until, now)),
        LoginOutcome::BadPassword => Err(bad_login()),
        LoginOutcome::Mfa(r) => Err(mfa_error(r)),
    }
}

/// `POST /outflow/v1/auth/logout`: ends the session used (204).
pub async fn logout(State(state): State<AppState>, auth: Auth) -> Result<StatusCode, ApiError> {
    let Some(session) = auth.0.session_id.clone() else {
        return Err(ApiError::invalid(
            "Only a login session can log out; revoke an API key with DELETE /outflow/v1/api-keys/{id}.",
        ));
    };
    let now = state.now();
    state
        .store
        .write(move |ctx| users::revoke_session(ctx.conn, &session, now))
        .await
        .map_err(store_error)?;
    state.forget_credentials();
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /outflow/v1/me`: who the credential acts as, and what it may do.
pub async fn me(State(state): State<AppState>, auth: Auth) -> Result<Json<Value>, ApiError> {
    let (account, id) = (auth.account().to_owned(), auth.user().to_owned());
    let user = state
        .store
        .read(move |c| users::get(c, &account, &id))
        .await
        .map_err(store_error)?
        .ok_or_else(ApiError::authentication_failed)?;
    let p = &auth.0;
    let scopes: Vec<&str> = outflow_store::accounts::ALL_SCOPES
        .iter()
        .copied()
        .filter(|s| p.has_scope(s))
        .collect();
    Ok(Json(json!({"data": {
        "user": super::users::user_json(&user),
        "key_id": p.key_id,
        "session_id": p.session_id,
        "scopes": scopes,
    }})))
}

/// `POST /outflow/v1/me/mfa` → {secret, otpauth_uri}: starts TOTP
/// enrolment for the caller's user; `/confirm` with a code finishes it.
pub async fn enrol(State(state): State<AppState>, auth: Auth) -> Result<Json<Value>, ApiError> {
    auth.require_self_service()?;
    let (account, id) = (auth.account().to_owned(), auth.user().to_owned());
    let (secret, email) = state
        .store
        .write(move |ctx| {
            let email = users::get(ctx.conn, &account, &id)?
                .map(|u| u.email)
                .unwrap_or_default();
            Ok(users::begin_mfa(ctx.conn, &id)?.map(|s| (s, email)))
        })
        .await
        .map_err(store_error)?
        .map_err(mfa_error)?;
    let label = percent_encoding::utf8_percent_encode(&email, percent_encoding::NON_ALPHANUMERIC);
    Ok(Json(json!({"data": {
        "secret": secret,
        "otpauth_uri": users::otpauth_uri(&secret, &label.to_string()),
    }})))
}

#[derive(Deserialize)]
pub struct CodeBody {
    code: String,
}

async fn mfa_change(
    state: AppState,
    auth: Auth,
    code: String,
    enable: bool,
) -> Result<Json<Value>, ApiError> {
    auth.require_self_service()?;
    let (account, id, actor, now) = (
        auth.account().to_owned(),
        auth.user().to_owned(),
        auth.actor(),
        state.now(),
    );
    state
        .store
        .write(move |ctx| {
            let done = if enable {
                users::confirm_mfa(ctx.conn, &id, &code, now)?
            } else {
                users::disable_mfa(ctx.conn, &id, &code, now)?
            };
            if done.is_ok() {
                let action = if enable { "mfa.enable" } else { "mfa.disable" };
                audit::record(
                    ctx.conn,
                    &account,
                    &actor,
                    action,
                    "user",
                    &id,
                    &json!({}),
                    now,
                )?;
            }
            Ok(done)
        })
        .await
        .map_err(store_error)?
        .map_err(|r| match r {
            // A wrong code at enrolment is the caller's input, not a login.
            MfaRefusal::Invalid => ApiError::invalid_pointer(
                "/code",
                "The TOTP code is wrong, expired or already used.",
            ),
            r => mfa_error(r),
        })?;
    state.forget_credentials();
    Ok(Json(json!({"data": {"mfa_enabled": enable}})))
}

/// `POST /outflow/v1/me/mfa/confirm` {code}: enables MFA.
pub async fn confirm(
    State(state): State<AppState>,
    auth: Auth,
    JsonApi(body): JsonApi<CodeBody, SMALL_BODY>,
) -> Result<Json<Value>, ApiError> {
    mfa_change(state, auth, body.code, true).await
}

/// `POST /outflow/v1/me/mfa/disable` {code}: turns MFA off (a current code
/// proves the caller still holds the authenticator).
pub async fn disable(
    State(state): State<AppState>,
    auth: Auth,
    JsonApi(body): JsonApi<CodeBody, SMALL_BODY>,
) -> Result<Json<Value>, ApiError> {
    mfa_change(state, auth, body.code, false).await
}

#[derive(Deserialize)]
pub struct PasswordBody {
    #[serde(default)]
    current_password: Option<String>,
    password: String,
}

/// `PATCH /outflow/v1/me/password` {current_password, password}: a user
/// changes their own password (the current one is needed if there is
/// one). The user's sessions end; log in again.
pub async fn change_password(
    State(state): State<AppState>,
    auth: Auth,
    JsonApi(body): JsonApi<PasswordBody, SMALL_BODY>,
) -> Result<StatusCode, ApiError> {
    auth.require_self_service()?;
    let (account, id) = (auth.account().to_owned(), auth.user().to_owned());
    let uid = id.clone();
    let record = state
        .store
        .read(move |c| {
            let Some(u) = users::get(c, &account, &uid)? else {
                return Ok(None);
            };
            users::login_record(c, &u.email)
        })
        .await
        .map_err(store_error)?
        .filter(|r| r.user_id == id)
        .ok_or_else(ApiError::authentication_failed)?;
    if record.password_hash.is_some() {
        let current = body.current_password.unwrap_or_default();
        if !verify(record.password_hash.clone(), current, &state).await {
            return Err(ApiError::permission_denied(
                "current_password does not match.",
            ));
        }
    }
    let hashed = super::users::hash(&state, body.password).await?;
    let (account, actor, now) = (auth.account().to_owned(), auth.actor(), state.now());
    state
        .store
        .write(move |ctx| {
            let change = users::UserChange {
                password_hash: Some(hashed),
                ..users::UserChange::default()
            };
            users::update(ctx.conn, &account, &id, change, now)?;
            let detail = json!({"password_changed": true});
            audit::record(
                ctx.conn,
                &account,
                &actor,
                "user.password",
                "user",
                &id,
                &detail,
                now,
            )
        })
        .await
        .map_err(store_error)?;
    state.forget_credentials();
    Ok(StatusCode::NO_CONTENT)
}
