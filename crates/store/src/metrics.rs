//! Metrics: event names, created on first use.

use crate::cache::{Key, WriteCache};
use crate::db::{Conn, Row};
use crate::writer::WriteCtx;
use crate::{new_short_id, params, StoreError, MAX_PAGE_ROWS};

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub id: String,
    pub name: String,
    pub integration: Option<String>,
    pub created: i64,
    pub updated: i64,
}

fn from_row(r: &Row) -> Result<Metric, StoreError> {
    Ok(Metric {
        id: r.text(0)?,
        name: r.text(1)?,
        integration: r.opt_text(2)?,
        created: r.int(3)?,
        updated: r.int(4)?,
    })
}

const COLUMNS: &str = "id, name, integration, created, updated";

/// The metric's id, creating the metric if this is its first event.
pub fn ensure(
    ctx: &mut WriteCtx<'_>,
    account: &str,
    name: &str,
    now: i64,
) -> Result<String, StoreError> {
    let key = Key::Metric(account.to_owned(), name.to_owned());
    if let Some(Some(id)) = ctx.cache.get(&key) {
        return Ok(id);
    }
    if let Some(r) = ctx.conn.query_opt(
        "SELECT id FROM metrics WHERE account_id = $1 AND name = $2",
        params![account, name],
    )? {
        let id = r.text(0)?;
        ctx.cache.put(key, id.clone());
        return Ok(id);
    }
    let id = new_short_id();
    ctx.conn.execute(
        "INSERT INTO metrics (id, account_id, name, integration, created, updated) VALUES ($1, $2, $3, NULL, $4, $4)",
        params![&id, account, name, now],
    )?;
    ctx.cache.put(key, id.clone());
    Ok(id)
}

pub fn get(conn: &mut dyn Conn, account: &str, id: &str) -> Result<Option<Metric>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM metrics WHERE account_id = $1 AND id = $2");
    conn.query_opt(&sql, params![account, id])?
        .map(|r| from_row(&r))
        .transpose()
}

/// One page of metrics ordered by id; `name` filters exactly.
pub fn list(
    conn: &mut dyn Conn,
    account: &str,
    name: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Metric>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM metrics WHERE account_id = $1 AND (CAST($2 AS TEXT) IS NULL OR name = $2) \
         AND (CAST($3 AS TEXT) IS NULL OR id > $3) ORDER BY id LIMIT {}",
        limit.min(MAX_PAGE_ROWS)
    );
    conn.query(&sql, params![account, name, after])?
        .iter()
        .map(from_row)
        .collect()
}

pub fn load_index(conn: &mut dyn Conn, cache: &mut WriteCache) -> Result<usize, StoreError> {
    let rows = conn.query("SELECT account_id, name, id FROM metrics", params![])?;
    let n = rows.len();
    for r in rows {
        cache.preload(Key::Metric(r.text(0)?, r.text(1)?), r.text(2)?);
    }
    Ok(n)
}
