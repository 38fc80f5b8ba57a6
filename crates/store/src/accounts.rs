//! Accounts, their owner, and API keys. Keys are stored only as SHA-256
//! hashes; the plain key is shown once, when it is made.

use crate::db::Conn;
use crate::{new_short_id, new_ulid, params, StoreError};
use rand::Rng;
use sha2::{Digest, Sha256};

/// Every scope a private key can carry (Klaviyo's names, plus ours).
pub const ALL_SCOPES: &[&str] = &[
    "events:read",
    "events:write",
    "profiles:read",
    "profiles:write",
    "lists:read",
    "lists:write",
    "segments:read",
    "segments:write",
    "catalogs:read",
    "catalogs:write",
    "flows:read",
    "flows:write",
    "metrics:read",
    "subscriptions:write",
    "webhooks:write",
    "deliveries:read",
    "deliveries:write",
    "admin",
];

/// Who is calling: resolved from an API key.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub account_id: String,
    pub user_id: String,
    pub key_id: String,
    pub scopes: Vec<String>,
}

impl Principal {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope || s == "admin")
            || scope
                .strip_suffix(":read")
                .is_some_and(|base| self.scopes.iter().any(|s| *s == format!("{base}:write")))
    }
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A fresh private key: `pk_` and 32 hex characters, like Klaviyo's.
pub fn generate_private_key() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    format!("pk_{}", hex::encode(bytes))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bootstrapped {
    pub account_id: String,
    pub owner_email: String,
    /// The plain key: shown once, never stored.
    pub api_key: String,
}

/// On an empty store, creates the account, its owner and a key with every
/// scope. Does nothing (returns `None`) once an account exists.
pub fn bootstrap(
    conn: &mut dyn Conn,
    known_key: Option<&str>,
    now: i64,
) -> Result<Option<Bootstrapped>, StoreError> {
    if conn
        .query_opt("SELECT id FROM accounts LIMIT 1", params![])?
        .is_some()
    {
        return Ok(None);
    }
    if let Some(k) = known_key {
        if !k.starts_with("pk_") || k.len() < 10 {
            return Err(StoreError::Invalid(
                "OUTFLOW_BOOTSTRAP_API_KEY must start with pk_ and be at least 10 characters"
                    .into(),
            ));
        }
    }
    let account_id = new_short_id();
    let user_id = new_ulid();
    let owner_email = "owner@localhost".to_owned();
    let api_key = known_key.map_or_else(generate_private_key, str::to_owned);
    conn.execute(
        "INSERT INTO accounts (id, name, public_key, created) VALUES ($1, $2, $3, $4)",
        params![&account_id, "Outflow", &new_short_id(), now],
    )?;
    conn.execute(
        "INSERT INTO users (id, account_id, email, role, created) VALUES ($1, $2, $3, 'owner', $4)",
        params![&user_id, &account_id, &owner_email, now],
    )?;
    let scopes = serde_json::to_string(ALL_SCOPES).unwrap_or_else(|_| "[]".into());
    conn.execute(
        "INSERT INTO api_keys (id, account_id, user_id, name, prefix, key_hash, scopes, created) \
         VALUES ($1, $2, $3, 'bootstrap', $4, $5, $6, $7)",
        params![
            &new_ulid(),
            &account_id,
            &user_id,
            &api_key[..api_key.len().min(7)],
            &hash_key(&api_key),
            &scopes,
            now
        ],
    )?;
    Ok(Some(Bootstrapped {
        account_id,
        owner_email,
        api_key,
    }))
}

/// Looks a plain key up by its hash; revoked keys do not authenticate.
pub fn authenticate(conn: &mut dyn Conn, key: &str) -> Result<Option<Principal>, StoreError> {
    let row = conn.query_opt(
        "SELECT account_id, user_id, id, scopes FROM api_keys WHERE key_hash = $1 AND revoked IS NULL",
        params![&hash_key(key)],
    )?;
    let Some(row) = row else { return Ok(None) };
    let scopes = serde_json::from_value(row.json(3)?).unwrap_or_default();
    Ok(Some(Principal {
        account_id: row.text(0)?,
        user_id: row.text(1)?,
        key_id: row.text(2)?,
        scopes,
    }))
}

/// The account that owns a public (client) key.
pub fn account_by_public_key(conn: &mut dyn Conn, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_opt(
            "SELECT id FROM accounts WHERE public_key = $1",
            params![key],
        )?
        .map(|r| r.text(0))
        .transpose()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_scope_follows_write_scope() {
        let p = Principal {
            account_id: "a".into(),
            user_id: "u".into(),
            key_id: "k".into(),
            scopes: vec!["profiles:write".into()],
        };
        assert!(p.has_scope("profiles:read"));
        assert!(p.has_scope("profiles:write"));
        assert!(!p.has_scope("events:write"));
    }
}
