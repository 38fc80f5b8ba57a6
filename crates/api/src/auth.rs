//! The `Auth` extractor: a private key, resolved and checked for a scope.

use crate::error::ApiError;
use crate::extract::ApiKey;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use outflow_store::accounts::Principal;
use std::sync::Arc;

/// An authenticated caller.
pub struct Auth(pub Arc<Principal>);

impl Auth {
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.0.has_scope(scope) {
            Ok(())
        } else {
            Err(ApiError::permission_denied(format!(
                "This API key is missing the required scope: {scope}."
            )))
        }
    }

    /// The webhook gate: adding, editing or removing webhook actions, their
    /// destinations, the signing secret, and retrying or replaying
    /// deliveries. Until access control (issue #6) lands this checks the
    /// `webhooks:write` scope only.
    pub fn require_webhook_access(&self) -> Result<(), ApiError> {
        self.require("webhooks:write")
    }

    pub fn account(&self) -> &str {
        &self.0.account_id
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = ApiKey::from_headers(&parts.headers)?;
        if !key.is_private_key() {
            return Err(ApiError::authentication_failed());
        }
        state.authenticate(&key.key).await.map(Auth)
    }
}
