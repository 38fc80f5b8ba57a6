//! Layered configuration: built-in defaults, then `outflow.toml`, then
//! `OUTFLOW_*` environment variables, then command-line flags. Validated
//! once at start so a bad value stops the server with a clear message.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds (`OUTFLOW_LISTEN`).
    pub listen: String,
    /// `sqlite://PATH` or `postgres://…` (`OUTFLOW_DATABASE_URL`).
    pub database_url: String,
    /// Makes the first API key of an empty store a known value
    /// (`OUTFLOW_BOOTSTRAP_API_KEY`); ignored once an account exists.
    pub bootstrap_api_key: Option<String>,
    /// Log filter, e.g. `info` or `outflow=debug` (`OUTFLOW_LOG`).
    pub log: String,
    /// Hosts that flow webhooks may reach over plain `http://`: host names,
    /// IP addresses or CIDR blocks (`OUTFLOW_WEBHOOKS_ALLOW_PRIVATE`, comma
    /// separated, e.g. `127.0.0.1,10.0.0.0/8`). Empty: HTTPS only.
    #[serde(default, deserialize_with = "comma_list")]
    pub webhooks_allow_private: Vec<String>,
    /// Webhook connect timeout in milliseconds (`OUTFLOW_WEBHOOKS_CONNECT_TIMEOUT_MS`).
    pub webhooks_connect_timeout_ms: u64,
    /// Webhook total timeout per attempt in milliseconds (`OUTFLOW_WEBHOOKS_TIMEOUT_MS`).
    pub webhooks_timeout_ms: u64,
    /// Attempts per delivery before it fails (`OUTFLOW_WEBHOOKS_RETRY_ATTEMPTS`; Klaviyo: 17).
    pub webhooks_retry_attempts: u32,
    /// First retry delay in seconds; each next one doubles, ±20% jitter.
    pub webhooks_retry_initial_seconds: u64,
    /// Longest delay between two attempts in seconds.
    pub webhooks_retry_max_interval_seconds: u64,
    /// Requests in flight at once per destination host.
    pub webhooks_per_host_concurrency: usize,
    /// How long a replaced signing secret keeps signing, in hours.
    pub webhooks_rotation_window_hours: u64,
    /// How long a login session lasts, in seconds
    /// (`OUTFLOW_SESSION_TTL_SECS`, default 12 hours).
    #[serde(default = "default_session_ttl_secs")]
    pub session_ttl_secs: u64,
    /// Argon2id memory cost of new password hashes, in KiB
    /// (`OUTFLOW_PASSWORD_HASH_MEMORY_KIB`, default 19456, argon2's
    /// recommendation). Lower it only for tests.
    #[serde(default = "default_password_hash_memory_kib")]
    pub password_hash_memory_kib: u32,
    /// On SQLite, an event's runs and webhooks are written in the
    /// transaction that stores it (`OUTFLOW_DISPATCH_AT_INGEST`, default
    /// true; false leaves it to the trigger loop, one commit later).
    #[serde(default = "default_dispatch_at_ingest")]
    pub dispatch_at_ingest: bool,
}

fn default_dispatch_at_ingest() -> bool {
    true
}

fn default_session_ttl_secs() -> u64 {
    outflow_api::state::DEFAULT_SESSION_TTL_SECS
}

fn default_password_hash_memory_kib() -> u32 {
    outflow_store::users::PasswordCost::DEFAULT.memory_kib
}

impl Config {
    /// The argon2 cost for new password hashes.
    pub fn password_cost(&self) -> outflow_store::users::PasswordCost {
        outflow_store::users::PasswordCost {
            memory_kib: self.password_hash_memory_kib,
            ..outflow_store::users::PasswordCost::DEFAULT
        }
    }
}

/// A list given as a TOML array or as one comma-separated string (how an
/// environment variable carries it).
fn comma_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    let items = match Raw::deserialize(d)? {
        Raw::One(s) => s.split(',').map(str::to_owned).collect(),
        Raw::Many(v) => v,
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8484".into(),
            database_url: "sqlite://./outflow-data/outflow.db".into(),
            bootstrap_api_key: None,
            log: "info".into(),
            webhooks_allow_private: Vec::new(),
            webhooks_connect_timeout_ms: 5_000,
            webhooks_timeout_ms: 15_000,
            webhooks_retry_attempts: 17,
            webhooks_retry_initial_seconds: 5,
            webhooks_retry_max_interval_seconds: 3 * 3600,
            webhooks_per_host_concurrency: 64,
            webhooks_rotation_window_hours: 24,
            session_ttl_secs: default_session_ttl_secs(),
            password_hash_memory_kib: default_password_hash_memory_kib(),
            dispatch_at_ingest: default_dispatch_at_ingest(),
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(String),
    #[error("configuration: listen = {value:?} is not an address like 127.0.0.1:8484 ({reason})")]
    Listen { value: String, reason: String },
    #[error("configuration: database_url: {0}")]
    Database(String),
    #[error("configuration: bootstrap_api_key must start with pk_ and be at least 10 characters")]
    BootstrapKey,
    #[error("configuration: password_hash_memory_kib must be at least 8")]
    PasswordCost,
    #[error("configuration: session_ttl_secs must be at least 1")]
    SessionTtl,
}

/// Overrides given on the command line.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

impl Config {
    /// Loads the layers. `file` is the TOML file to read if it exists.
    pub fn load(file: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::from_figment(
            Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::file(file))
                .merge(Env::prefixed("OUTFLOW_").only(&[
                    "listen",
                    "database_url",
                    "bootstrap_api_key",
                    "log",
                    "webhooks_allow_private",
                    "webhooks_connect_timeout_ms",
                    "webhooks_timeout_ms",
                    "webhooks_retry_attempts",
                    "webhooks_retry_initial_seconds",
                    "webhooks_retry_max_interval_seconds",
                    "webhooks_per_host_concurrency",
                    "webhooks_rotation_window_hours",
                    "session_ttl_secs",
                    "password_hash_memory_kib",
                ]))
                .merge(Serialized::defaults(overrides)),
        )
    }

    fn from_figment(f: Figment) -> Result<Self, ConfigError> {
        let c: Config = f.extract().map_err(|e| ConfigError::Load(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        outflow_store::Location::parse(&self.database_url)
            .map_err(|e| ConfigError::Database(e.to_string()))?;
        if let Some(k) = &self.bootstrap_api_key {
            if !k.starts_with("pk_") || k.len() < 10 {
                return Err(ConfigError::BootstrapKey);
            }
        }
        if self.password_hash_memory_kib < 8 {
            return Err(ConfigError::PasswordCost);
        }
        if self.session_ttl_secs == 0 {
            return Err(ConfigError::SessionTtl);
        }
        Ok(())
    }

    /// The engine's settings, webhook delivery included.
    pub fn engine(&self) -> outflow_engine::EngineConfig {
        let mut e = outflow_engine::EngineConfig {
            dispatch_at_ingest: self.dispatch_at_ingest,
            ..outflow_engine::EngineConfig::default()
        };
        let d = &mut e.delivery;
        d.allow_private = self.webhooks_allow_private.clone();
        d.connect_timeout = std::time::Duration::from_millis(self.webhooks_connect_timeout_ms);
        d.timeout = std::time::Duration::from_millis(self.webhooks_timeout_ms);
        d.policy.max_attempts = self.webhooks_retry_attempts.max(1);
        d.policy.initial = chrono::Duration::seconds(self.webhooks_retry_initial_seconds as i64);
        d.policy.max_interval =
            chrono::Duration::seconds(self.webhooks_retry_max_interval_seconds as i64);
        d.per_host = self.webhooks_per_host_concurrency.max(1);
        d.rotation_window = chrono::Duration::hours(self.webhooks_rotation_window_hours as i64);
        // A claim outlives several attempts at the timeout; a queued
        // delivery that would outlive its claim is deferred, not sent.
        d.lease = chrono::Duration::seconds((4 * d.timeout.as_secs() as i64).max(120));
        e
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen
            .parse()
            .map_err(|e: std::net::AddrParseError| ConfigError::Listen {
                value: self.listen.clone(),
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
// figment's Jail closures must return its (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "outflow.toml",
                "listen = \"127.0.0.1:9000\"\nlog = \"debug\"",
            )?;
            jail.set_env("OUTFLOW_LISTEN", "127.0.0.1:9001");
            let c = Config::load(Path::new("outflow.toml"), &Overrides::default()).expect("loads");
            assert_eq!(c.listen, "127.0.0.1:9001");
            assert_eq!(c.log, "debug");
            assert_eq!(c.database_url, "sqlite://./outflow-data/outflow.db");
            let o = Overrides {
                listen: Some("127.0.0.1:9002".into()),
                database_url: None,
            };
            assert_eq!(
                Config::load(Path::new("outflow.toml"), &o)
                    .expect("loads")
                    .listen,
                "127.0.0.1:9002"
            );
            Ok(())
        });
    }

    #[test]
    fn webhooks_allow_private_is_a_comma_list() {
        figment::Jail::expect_with(|jail| {
            let none = Config::load(Path::new("none.toml"), &Overrides::default()).expect("loads");
            assert!(none.webhooks_allow_private.is_empty());
            jail.set_env("OUTFLOW_WEBHOOKS_ALLOW_PRIVATE", "127.0.0.1, 10.0.0.0/8,");
            let c = Config::load(Path::new("none.toml"), &Overrides::default()).expect("loads");
            assert_eq!(c.webhooks_allow_private, vec!["127.0.0.1", "10.0.0.0/8"]);
            jail.clear_env();
            jail.create_file("o.toml", "webhooks_allow_private = [\"hooks.internal\"]")?;
            let c = Config::load(Path::new("o.toml"), &Overrides::default()).expect("loads");
            assert_eq!(c.webhooks_allow_private, vec!["hooks.internal"]);
            Ok(())
        });
    }

    #[test]
    fn bad_values_get_clear_messages() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("OUTFLOW_LISTEN", "localhost");
            let e = Config::load(Path::new("none.toml"), &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains("listen"), "{e}");
            jail.set_env("OUTFLOW_LISTEN", "127.0.0.1:1");
            jail.set_env("OUTFLOW_DATABASE_URL", "mysql://x");
            let e = Config::load(Path::new("none.toml"), &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains("database_url"), "{e}");
            jail.set_env("OUTFLOW_DATABASE_URL", "sqlite://x.db");
            jail.create_file("bad.toml", "lisen = \"x\"")?;
            let e = Config::load(Path::new("bad.toml"), &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains("lisen"), "{e}");
            Ok(())
        });
    }
}
