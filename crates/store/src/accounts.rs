//! Accounts, roles, API keys and how a credential becomes a [`Principal`].
//! Keys and session tokens are stored only as SHA-256 hashes; the plain
//! value is shown once, when it is made.

use crate::db::{Conn, Row};
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

/// Prefix of a login session's Bearer token (keys start with `pk_`).
pub const SESSION_PREFIX: &str = "ofs_";

/// A user's role, Klaviyo's names. What each may do is [`Role::scopes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Owner,
    Admin,
    Manager,
    Analyst,
    CampaignCoordinator,
    ContentCreator,
}

const READS: &[&str] = &[
    "events:read",
    "profiles:read",
    "lists:read",
    "segments:read",
    "catalogs:read",
    "flows:read",
    "metrics:read",
    "deliveries:read",
];

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Owner,
        Role::Admin,
        Role::Manager,
        Role::Analyst,
        Role::CampaignCoordinator,
        Role::ContentCreator,
    ];

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::Analyst => "analyst",
            Role::CampaignCoordinator => "campaign_coordinator",
            Role::ContentCreator => "content_creator",
        }
    }

    /// Every scope the role allows; a key of a user acts with at most these.
    /// Owner and admin: all. Manager: all but `admin` (users, every key,
    /// the audit log). Campaign coordinator: reads, and writes to events,
    /// profiles, lists, segments, subscriptions, catalogs and flows (no
    /// webhooks, no delivery retries). Content creator: reads but
    /// deliveries, and writes to catalogs and flows. Analyst: reads only.
    pub fn scopes(self) -> Vec<&'static str> {
        match self {
            Role::Owner | Role::Admin => ALL_SCOPES.to_vec(),
            Role::Manager => ALL_SCOPES
                .iter()
                .copied()
                .filter(|s| *s != "admin")
                .collect(),
            Role::Analyst => READS.to_vec(),
            Role::CampaignCoordinator => {
                let mut v = READS.to_vec();
                v.extend([
                    "events:write",
                    "profiles:write",
                    "lists:write",
                    "segments:write",
                    "subscriptions:write",
                    "catalogs:write",
                    "flows:write",
                ]);
                v
            }
            Role::ContentCreator => {
                let mut v: Vec<&str> = READS
                    .iter()
                    .copied()
                    .filter(|s| *s != "deliveries:read")
                    .collect();
                v.extend(["catalogs:write", "flows:write"]);
                v
            }
        }
    }

    pub fn allows(self, scope: &str) -> bool {
        self.scopes().contains(&scope)
    }

    /// Owner and admin manage users, every key, and read the audit log.
    pub fn is_admin(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }

    /// The roles Klaviyo lets touch webhooks.
    pub fn may_touch_webhooks(self) -> bool {
        matches!(self, Role::Owner | Role::Admin | Role::Manager)
    }
}

/// Who is calling: resolved from an API key or a login session, with the
/// user's role and MFA state as they are now.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub account_id: String,
    pub user_id: String,
    /// The API key used, if one was.
    pub key_id: Option<String>,
    /// The login session used, if one was.
    pub session_id: Option<String>,
    /// What the credential grants: a key's scopes, a session's role scopes.
    pub scopes: Vec<String>,
    pub role: Role,
    pub mfa_enabled: bool,
    /// When a session expires (microseconds); keys do not.
    pub expires: Option<i64>,
}

impl Principal {
    /// Whether the credential grants `scope` (a write scope grants its
    /// read, `admin` grants everything) AND the user's current role allows it.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.role.allows(scope) && self.grants(scope)
    }

    /// Whether the credential itself (not the role) grants `scope`.
    pub fn grants(&self, scope: &str) -> bool {
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

/// A fresh session token: [`SESSION_PREFIX`] and 64 hex characters.
pub fn generate_session_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!("{SESSION_PREFIX}{}", hex::encode(bytes))
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
        "INSERT INTO users (id, account_id, email, role, created, updated) VALUES ($1, $2, $3, 'owner', $4, $4)",
        params![&user_id, &account_id, &owner_email, now],
    )?;
    insert_key(
        conn,
        &account_id,
        &user_id,
        "bootstrap",
        &api_key,
        ALL_SCOPES,
        now,
    )?;
    Ok(Some(Bootstrapped {
        account_id,
        owner_email,
        api_key,
    }))
}

fn insert_key(
    conn: &mut dyn Conn,
    account: &str,
    user: &str,
    name: &str,
    key: &str,
    scopes: &[&str],
    now: i64,
) -> Result<String, StoreError> {
    let id = new_ulid();
    let scopes = serde_json::to_string(scopes).unwrap_or_else(|_| "[]".into());
    conn.execute(
        "INSERT INTO api_keys (id, account_id, user_id, name, prefix, key_hash, scopes, created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        params![
            &id,
            account,
            user,
            name,
            &key[..key.len().min(7)],
            &hash_key(key),
            &scopes,
            now
        ],
    )?;
    Ok(id)
}

fn role_of(row: &Row, i: usize) -> Result<Role, StoreError> {
    let r = row.text(i)?;
    Role::parse(&r).ok_or_else(|| StoreError::Invalid(format!("unknown role '{r}'")))
}

/// Looks a plain key or session token up by its hash, with its user's
/// current role and MFA state. Revoked keys and sessions, and credentials
/// of deleted users, do not authenticate; a session's expiry is for the
/// caller to check against its clock ([`Principal::expires`]).
pub fn authenticate(conn: &mut dyn Conn, key: &str) -> Result<Option<Principal>, StoreError> {
    if key.starts_with(SESSION_PREFIX) {
        let row = conn.query_opt(
            "SELECT s.account_id, s.user_id, s.id, s.expires, u.role, u.mfa_secret \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.revoked IS NULL AND u.disabled IS NULL",
            params![&hash_key(key)],
        )?;
        let Some(row) = row else { return Ok(None) };
        let role = role_of(&row, 4)?;
        return Ok(Some(Principal {
            account_id: row.text(0)?,
            user_id: row.text(1)?,
            key_id: None,
            session_id: Some(row.text(2)?),
            scopes: role.scopes().into_iter().map(str::to_owned).collect(),
            role,
            mfa_enabled: row.opt_text(5)?.is_some(),
            expires: Some(row.int(3)?),
        }));
    }
    let row = conn.query_opt(
        "SELECT k.account_id, k.user_id, k.id, k.scopes, u.role, u.mfa_secret \
         FROM api_keys k JOIN users u ON u.id = k.user_id \
         WHERE k.key_hash = $1 AND k.revoked IS NULL AND u.disabled IS NULL",
        params![&hash_key(key)],
    )?;
    let Some(row) = row else { return Ok(None) };
    let scopes = serde_json::from_value(row.json(3)?).unwrap_or_default();
    Ok(Some(Principal {
        account_id: row.text(0)?,
        user_id: row.text(1)?,
        key_id: Some(row.text(2)?),
        session_id: None,
        scopes,
        role: role_of(&row, 4)?,
        mfa_enabled: row.opt_text(5)?.is_some(),
        expires: None,
    }))
}

/// An API key as listed: never its secret.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyInfo {
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// The first characters of the key, to recognise it by.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created: i64,
    pub revoked: Option<i64>,
}

/// Creates a key for `user`; returns it with the plain key (shown once).
pub fn create_key(
    conn: &mut dyn Conn,
    account: &str,
    user: &str,
    name: &str,
    scopes: &[&str],
    now: i64,
) -> Result<(KeyInfo, String), StoreError> {
    let plain = generate_private_key();
    let id = insert_key(conn, account, user, name, &plain, scopes, now)?;
    let info = KeyInfo {
        id,
        user_id: user.to_owned(),
        name: name.to_owned(),
        prefix: plain[..7].to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        created: now,
        revoked: None,
    };
    Ok((info, plain))
}

const KEY_COLUMNS: &str = "id, user_id, name, prefix, scopes, created, revoked";

fn key_info(row: &Row) -> Result<KeyInfo, StoreError> {
    Ok(KeyInfo {
        id: row.text(0)?,
        user_id: row.text(1)?,
        name: row.text(2)?,
        prefix: row.text(3)?,
        scopes: serde_json::from_value(row.json(4)?).unwrap_or_default(),
        created: row.int(5)?,
        revoked: row.opt_int(6)?,
    })
}

/// The account's keys, or only `user`'s; oldest first.
pub fn list_keys(
    conn: &mut dyn Conn,
    account: &str,
    user: Option<&str>,
) -> Result<Vec<KeyInfo>, StoreError> {
    let rows = match user {
        Some(u) => conn.query(
            &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE account_id = $1 AND user_id = $2 ORDER BY created, id"),
            params![account, u],
        )?,
        None => conn.query(
            &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE account_id = $1 ORDER BY created, id"),
            params![account],
        )?,
    };
    rows.iter().map(key_info).collect()
}

pub fn get_key(
    conn: &mut dyn Conn,
    account: &str,
    id: &str,
) -> Result<Option<KeyInfo>, StoreError> {
    conn.query_opt(
        &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE account_id = $1 AND id = $2"),
        params![account, id],
    )?
    .as_ref()
    .map(key_info)
    .transpose()
}

/// Revokes a key; `false` if it was already revoked.
pub fn revoke_key(
    conn: &mut dyn Conn,
    account: &str,
    id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE api_keys SET revoked = $3 WHERE account_id = $1 AND id = $2 AND revoked IS NULL",
        params![account, id, now],
    )? > 0)
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

    fn principal(role: Role, scopes: &[&str]) -> Principal {
        Principal {
            account_id: "a".into(),
            user_id: "u".into(),
            key_id: Some("k".into()),
            session_id: None,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            role,
            mfa_enabled: false,
            expires: None,
        }
    }

    #[test]
    fn read_scope_follows_write_scope() {
        let p = principal(Role::Owner, &["profiles:write"]);
        assert!(p.has_scope("profiles:read"));
        assert!(p.has_scope("profiles:write"));
        assert!(!p.has_scope("events:write"));
    }

    #[test]
    fn a_key_acts_with_at_most_its_users_role() {
        let p = principal(Role::Analyst, &["admin"]);
        assert!(p.has_scope("flows:read"));
        assert!(!p.has_scope("flows:write"));
        assert!(!p.has_scope("admin"));
        let p = principal(Role::CampaignCoordinator, &["admin"]);
        assert!(p.has_scope("flows:write"));
        assert!(!p.has_scope("webhooks:write"));
        assert!(!p.has_scope("deliveries:write"));
        let p = principal(Role::Manager, &["admin"]);
        assert!(p.has_scope("webhooks:write"));
        assert!(!p.has_scope("admin"));
    }

    #[test]
    fn roles_round_trip_and_every_role_scope_is_known() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            for s in r.scopes() {
                assert!(ALL_SCOPES.contains(&s), "{s}");
            }
        }
        assert_eq!(Role::parse("root"), None);
    }
}
