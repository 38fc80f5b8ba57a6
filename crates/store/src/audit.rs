//! The audit log: who changed a flow, webhook, user or key, when, and what.
//! Entries are written in the transaction of the change they record.

use crate::db::{Conn, Row};
use crate::{new_ulid, params, StoreError};
use serde_json::Value;

/// Who acted: the user, and the credential used (a key or a session).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Actor {
    pub user_id: Option<String>,
    pub key_id: Option<String>,
    pub session_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: i64,
    pub id: String,
    pub at: i64,
    pub actor: Actor,
    /// e.g. `flow.create`, `api_key.revoke`, `user.update`, `mfa.enable`.
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    /// What changed, never a secret.
    pub detail: Value,
}

#[allow(clippy::too_many_arguments)]
pub fn record(
    conn: &mut dyn Conn,
    account: &str,
    actor: &Actor,
    action: &str,
    target_type: &str,
    target_id: &str,
    detail: &Value,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO audit_log (id, account_id, at, actor_user, actor_key, actor_session, action, target_type, target_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        params![
            &new_ulid(),
            account,
            now,
            &actor.user_id,
            &actor.key_id,
            &actor.session_id,
            action,
            target_type,
            target_id,
            &detail.to_string()
        ],
    )?;
    Ok(())
}

fn entry(row: &Row) -> Result<Entry, StoreError> {
    Ok(Entry {
        seq: row.int(0)?,
        id: row.text(1)?,
        at: row.int(2)?,
        actor: Actor {
            user_id: row.opt_text(3)?,
            key_id: row.opt_text(4)?,
            session_id: row.opt_text(5)?,
        },
        action: row.text(6)?,
        target_type: row.text(7)?,
        target_id: row.text(8)?,
        detail: row.json(9)?,
    })
}

/// Newest first: up to `limit` entries older than `before` (a `seq`).
pub fn list(
    conn: &mut dyn Conn,
    account: &str,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Entry>, StoreError> {
    conn.query(
        "SELECT seq, id, at, actor_user, actor_key, actor_session, action, target_type, target_id, detail \
         FROM audit_log WHERE account_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
        params![account, before.unwrap_or(i64::MAX), limit],
    )?
    .iter()
    .map(entry)
    .collect()
}
