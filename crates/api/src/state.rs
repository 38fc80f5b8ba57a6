//! What every handler shares: the store, the clock, and the key cache.

use crate::error::ApiError;
use outflow_core::Clock;
use outflow_store::accounts::{self, Principal};
use outflow_store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    keys: Arc<RwLock<HashMap<String, Arc<Principal>>>>,
}

impl AppState {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            keys: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// Microseconds since the epoch, by the injected clock.
    pub fn now(&self) -> i64 {
        self.clock.now().timestamp_micros()
    }

    /// Resolves a private key to its principal. Known keys are answered
    /// from memory, so authentication costs no query on the hot path.
    pub async fn authenticate(&self, key: &str) -> Result<Arc<Principal>, ApiError> {
        let hash = accounts::hash_key(key);
        if let Some(p) = self.keys.read().ok().and_then(|m| m.get(&hash).cloned()) {
            return Ok(p);
        }
        let k = key.to_owned();
        let found = self
            .store
            .read(move |c| accounts::authenticate(c, &k))
            .await
            .map_err(store_error)?;
        match found {
            Some(p) => {
                let p = Arc::new(p);
                if let Ok(mut m) = self.keys.write() {
                    m.insert(hash, p.clone());
                }
                Ok(p)
            }
            None => Err(ApiError::authentication_failed()),
        }
    }
}

/// Maps store failures to Klaviyo's error bodies; internal details are
/// logged, never sent.
pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(what) => {
            ApiError::not_found(format!("{} not found.", capitalize(&what)))
        }
        StoreError::DuplicateProfile { id } => ApiError::duplicate_profile(id),
        StoreError::Conflict(detail) => ApiError::conflict(detail),
        StoreError::Invalid(detail) => ApiError::invalid(detail),
        StoreError::Db(e) => {
            tracing::error!(error = %e, "store error");
            ApiError::internal(e.to_string())
        }
        StoreError::Unavailable(m) => {
            tracing::error!(error = %m, "store unavailable");
            ApiError::internal(m)
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
