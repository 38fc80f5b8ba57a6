//! Who is calling, and what they may do. The `Auth` extractor resolves an
//! API key (`Klaviyo-API-Key pk_…` or `Bearer pk_…`) or a login session
//! (`Bearer ofs_…`); [`require_credentials`] runs it for every route that
//! is not public, so no handler can forget. A key acts with at most its
//! user's current rights: a scope must be granted by the key AND allowed
//! by the user's role ([`outflow_store::accounts::Role::scopes`]).

use crate::error::ApiError;
use crate::extract::ApiKey;
use crate::state::AppState;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use outflow_store::accounts::{Principal, SESSION_PREFIX};
use outflow_store::audit::Actor;
use std::sync::Arc;

/// An authenticated caller.
#[derive(Clone)]
pub struct Auth(pub Arc<Principal>);

/// The scope a key needs, besides role and MFA, to touch webhooks.
pub const WEBHOOKS_SCOPE: &str = "webhooks:write";

impl Auth {
    /// Refuses unless the credential grants `scope` and the user's role allows it.
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        let p = &self.0;
        if !p.role.allows(scope) {
            return Err(ApiError::permission_denied(format!(
                "The role {} does not allow {scope}.",
                p.role.as_str()
            )));
        }
        if !p.grants(scope) {
            return Err(ApiError::permission_denied(format!(
                "This API key is missing the required scope: {scope}."
            )));
        }
        Ok(())
    }

    /// The webhook gate (Klaviyo's rule): adding, editing or removing a
    /// webhook action, changing a webhook's destination or the signing
    /// secret, and retrying or replaying deliveries need a user with role
    /// owner, admin or manager who has MFA enabled, and, for an API key,
    /// the `webhooks:write` scope. The detail says which condition failed.
    pub fn require_webhook_access(&self) -> Result<(), ApiError> {
        let p = &self.0;
        if !p.role.may_touch_webhooks() {
            return Err(ApiError::permission_denied(format!(
                "Webhooks can only be changed by an owner, admin or manager; this user's role is {}.",
                p.role.as_str()
            )));
        }
        if !p.mfa_enabled {
            return Err(ApiError::permission_denied(
                "Webhooks can only be changed by a user with multi-factor authentication enabled; \
                 enrol with POST /outflow/v1/me/mfa.",
            ));
        }
        if p.key_id.is_some() && !p.grants(WEBHOOKS_SCOPE) {
            return Err(ApiError::permission_denied(format!(
                "This API key is missing the required scope: {WEBHOOKS_SCOPE}."
            )));
        }
        Ok(())
    }

    /// Owner or admin, and (for a key) the `admin` scope: users, every
    /// key of the account, the audit log.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if !self.0.role.is_admin() {
            return Err(ApiError::permission_denied(format!(
                "Only an owner or admin may do this; this user's role is {}.",
                self.0.role.as_str()
            )));
        }
        if self.0.key_id.is_some() && !self.0.grants("admin") {
            return Err(ApiError::permission_denied(
                "This API key is missing the required scope: admin.",
            ));
        }
        Ok(())
    }

    /// Changes to the caller's own sign-in (MFA, password, keys) need a
    /// login session or a key with the `admin` scope: a leaked narrow key
    /// must not be able to enrol an authenticator for its user.
    pub fn require_self_service(&self) -> Result<(), ApiError> {
        if self.0.session_id.is_some() || self.0.grants("admin") {
            Ok(())
        } else {
            Err(ApiError::permission_denied(
                "This API key is missing the required scope: admin (or log in).",
            ))
        }
    }

    pub fn account(&self) -> &str {
        &self.0.account_id
    }

    pub fn user(&self) -> &str {
        &self.0.user_id
    }

    /// Who to name in the audit log.
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: Some(self.0.user_id.clone()),
            key_id: self.0.key_id.clone(),
            session_id: self.0.session_id.clone(),
        }
    }
}

async fn resolve(parts: &Parts, state: &AppState) -> Result<Arc<Principal>, ApiError> {
    let key = ApiKey::from_headers(&parts.headers)?;
    if !key.is_private_key() && !key.key.starts_with(SESSION_PREFIX) {
        return Err(ApiError::authentication_failed());
    }
    state.authenticate(&key.key).await
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(p) = parts.extensions.get::<Arc<Principal>>() {
            return Ok(Auth(p.clone()));
        }
        let p = resolve(parts, state).await?;
        parts.extensions.insert(p.clone());
        Ok(Auth(p))
    }
}

/// Middleware on every non-public route: no valid credential, no handler.
/// The principal is left in the request for the `Auth` extractor.
pub async fn require_credentials(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    match resolve(&parts, &state).await {
        Ok(p) => {
            parts.extensions.insert(p);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) => e.into_response(),
    }
}
