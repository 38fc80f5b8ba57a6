//! Flows and their definition versions.
//!
//! The read side the engine needs ([`listening`], [`version`]) is fixed
//! here; the flows API adds create/update/list around it.

use crate::db::{Conn, Row};
use crate::{params, StoreError};
use serde_json::Value;

/// A flow that listens to a trigger, with the version new entrants use.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub flow_id: String,
    pub account_id: String,
    pub status: String,
    pub version: i64,
}

fn listener(r: &Row) -> Result<Listener, StoreError> {
    Ok(Listener {
        flow_id: r.text(0)?,
        account_id: r.text(1)?,
        status: r.text(2)?,
        version: r.int(3)?,
    })
}

/// Non-draft, non-archived flows whose trigger is `trigger_type` on
/// `trigger_ref` (a metric id, a list id…).
pub fn listening(
    conn: &mut dyn Conn,
    account: &str,
    trigger_type: &str,
    trigger_ref: &str,
) -> Result<Vec<Listener>, StoreError> {
    conn.query(
        "SELECT id, account_id, status, version FROM flows \
         WHERE account_id = $1 AND trigger_type = $2 AND trigger_ref = $3 \
         AND archived = 0 AND status <> 'draft'",
        params![account, trigger_type, trigger_ref],
    )?
    .iter()
    .map(listener)
    .collect()
}

/// Every non-draft, non-archived flow, for rebuilding in-memory trigger
/// indexes at start.
pub fn all_listening(
    conn: &mut dyn Conn,
) -> Result<Vec<(Listener, String, Option<String>)>, StoreError> {
    conn.query(
        "SELECT id, account_id, status, version, trigger_type, trigger_ref FROM flows \
         WHERE archived = 0 AND status <> 'draft'",
        params![],
    )?
    .iter()
    .map(|r| Ok((listener(r)?, r.text(4)?, r.opt_text(5)?)))
    .collect()
}

/// The definition JSON of one version of a flow.
pub fn version(
    conn: &mut dyn Conn,
    flow_id: &str,
    version: i64,
) -> Result<Option<Value>, StoreError> {
    conn.query_opt(
        "SELECT definition FROM flow_versions WHERE flow_id = $1 AND version = $2",
        params![flow_id, version],
    )?
    .map(|r| r.json(0))
    .transpose()
    .map_err(Into::into)
}
