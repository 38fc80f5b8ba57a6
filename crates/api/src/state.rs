//! What every handler shares: the store, the clock, the credential cache,
//! the hook that wakes the flow engine, the operator's allow-list for
//! plain-http webhook destinations, and the login settings.

use crate::error::ApiError;
use outflow_core::Clock;
use outflow_store::accounts::{self, Principal};
use outflow_store::users::PasswordCost;
use outflow_store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How long a resolved credential is trusted from memory. Changes made
/// through this process (revocation, role, MFA, deletion) clear the cache
/// at once; this bounds how long one made by another process sharing a
/// PostgreSQL database goes unseen.
const CREDENTIAL_TTL: Duration = Duration::from_secs(1);

/// Default lifetime of a login session: 12 hours.
pub const DEFAULT_SESSION_TTL_SECS: u64 = 12 * 3600;

type CredentialCache = HashMap<String, (Arc<Principal>, Instant)>;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    keys: Arc<RwLock<CredentialCache>>,
    wake: Option<Wake>,
    wake_events: Option<Wake>,
    webhooks_allow_private: Arc<Vec<String>>,
    deliverer: Option<Arc<outflow_delivery::Deliverer>>,
    password_cost: PasswordCost,
    session_ttl_secs: u64,
}

/// Called after a write the flow engine follows (events, list joins, flow
/// changes, review decisions), so it does not wait for its next poll. The
/// binary connects it to `Engine::notify`; the API crate knows no engine.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

impl AppState {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            keys: Arc::new(RwLock::new(HashMap::new())),
            wake: None,
            wake_events: None,
            webhooks_allow_private: Arc::new(Vec::new()),
            deliverer: None,
            password_cost: PasswordCost::DEFAULT,
            session_ttl_secs: DEFAULT_SESSION_TTL_SECS,
        }
    }

    /// The argon2 cost of new password hashes.
    pub fn with_password_cost(mut self, cost: PasswordCost) -> Self {
        self.password_cost = cost;
        self
    }

    pub fn password_cost(&self) -> PasswordCost {
        self.password_cost
    }

    /// How long a login session lasts.
    pub fn with_session_ttl_secs(mut self, secs: u64) -> Self {
        self.session_ttl_secs = secs.max(1);
        self
    }

    /// A session's lifetime in microseconds.
    pub fn session_ttl_micros(&self) -> i64 {
        i64::try_from(self.session_ttl_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
    }

    /// Forgets every resolved credential: called after any change to keys,
    /// sessions, users' roles or MFA, so the next request sees it.
    pub fn forget_credentials(&self) {
        if let Ok(mut m) = self.keys.write() {
            m.clear();
        }
    }

    /// Connects this process's delivery workers: woken after a retry or
    /// replay, told when the signing secret changes, and read by `/metrics`.
    pub fn with_deliverer(mut self, d: Arc<outflow_delivery::Deliverer>) -> Self {
        self.deliverer = Some(d);
        self
    }

    pub fn wake_delivery(&self) {
        if let Some(d) = &self.deliverer {
            d.notify();
        }
    }

    pub fn secrets_changed(&self) {
        if let Some(d) = &self.deliverer {
            d.forget_secrets();
        }
    }

    /// How long a replaced signing secret keeps signing.
    pub fn rotation_window(&self) -> chrono::Duration {
        self.deliverer
            .as_ref()
            .map_or(chrono::Duration::hours(24), |d| d.config().rotation_window)
    }

    pub fn delivery_metrics(&self) -> Option<Arc<outflow_delivery::metrics::Metrics>> {
        self.deliverer.as_ref().map(|d| d.metrics.clone())
    }

    /// Sets the hook called after writes the engine follows.
    pub fn with_wake(mut self, wake: Wake) -> Self {
        self.wake = Some(wake);
        self
    }

    /// Sets the hook called after storing events (else [`AppState::wake`]'s).
    pub fn with_wake_events(mut self, wake: Wake) -> Self {
        self.wake_events = Some(wake);
        self
    }

    /// Hosts (names, IP addresses or CIDRs) that webhooks may reach over
    /// plain `http://` (`OUTFLOW_WEBHOOKS_ALLOW_PRIVATE`).
    pub fn with_webhooks_allow_private(mut self, hosts: Vec<String>) -> Self {
        self.webhooks_allow_private = Arc::new(hosts);
        self
    }

    /// The allow-list for plain-http webhook destinations.
    pub fn webhooks_allow_private(&self) -> Arc<Vec<String>> {
        self.webhooks_allow_private.clone()
    }

    /// Wakes the flow engine, if one is connected.
    pub fn wake(&self) {
        if let Some(w) = &self.wake {
            w();
        }
    }

    /// Wakes the flow engine after events were stored.
    pub fn wake_events(&self) {
        match &self.wake_events {
            Some(w) => w(),
            None => self.wake(),
        }
    }

    /// Microseconds since the epoch, by the injected clock.
    pub fn now(&self) -> i64 {
        self.clock.now().timestamp_micros()
    }

    /// Resolves a private key or session token to its principal, with the
    /// user's current role and MFA state. Known credentials are answered
    /// from memory (see [`CREDENTIAL_TTL`]), so authentication costs no
    /// query on the hot path. An expired session is refused by the clock.
    pub async fn authenticate(&self, key: &str) -> Result<Arc<Principal>, ApiError> {
        let hash = accounts::hash_key(key);
        let cached = self.keys.read().ok().and_then(|m| {
            m.get(&hash)
                .filter(|(_, at)| at.elapsed() < CREDENTIAL_TTL)
                .map(|(p, _)| p.clone())
        });
        let p = match cached {
            Some(p) => p,
            None => {
                let k = key.to_owned();
                let found = self
                    .store
                    .read(move |c| accounts::authenticate(c, &k))
                    .await
                    .map_err(store_error)?
                    .ok_or_else(ApiError::authentication_failed)?;
                let p = Arc::new(found);
                if let Ok(mut m) = self.keys.write() {
                    if m.len() > 10_000 {
                        m.clear();
                    }
                    m.insert(hash, (p.clone(), Instant::now()));
                }
                p
            }
        };
        if p.expires.is_some_and(|e| e <= self.now()) {
            return Err(ApiError::not_authenticated(
                "The session has expired. Log in again.",
            ));
        }
        Ok(p)
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

/// Whether the host of `url` (an `http://` URL) is on `allowed`: host
/// names, IP addresses or CIDR blocks — the same list, read the same way,
/// as the delivery worker's SSRF guard.
pub fn host_allowed(url: &str, allowed: &[String]) -> bool {
    outflow_delivery::guard::AllowList::new(allowed).allows_url(url)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plain_http_hosts() {
        let l = list(&["127.0.0.1", "hooks.internal", "10.0.0.0/8", "::1/128"]);
        assert!(host_allowed("http://127.0.0.1:8080/x", &l));
        assert!(host_allowed("http://HOOKS.internal/x?y", &l));
        assert!(host_allowed("http://10.2.3.4/", &l));
        assert!(host_allowed("http://[::1]:9/", &l));
        assert!(host_allowed("http://u:p@127.0.0.1/", &l));
        assert!(!host_allowed("http://127.0.0.2/", &l));
        assert!(!host_allowed("http://11.0.0.1/", &l));
        assert!(!host_allowed("http://evil.com/127.0.0.1", &l));
        assert!(!host_allowed("http://hooks.internal.evil.com/", &l));
        assert!(!host_allowed("http://127.0.0.1/", &[]));
    }
}
