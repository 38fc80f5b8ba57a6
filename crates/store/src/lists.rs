//! Lists and their static membership. Each join is a row with a sequence
//! number so the list trigger can follow joins as a feed.

use crate::db::{Conn, Row};
use crate::writer::WriteCtx;
use crate::{new_short_id, params, profiles, StoreError, MAX_PAGE_ROWS};
use outflow_core::profile::Profile;

#[derive(Debug, Clone, PartialEq)]
pub struct List {
    pub id: String,
    pub name: String,
    pub opt_in_process: String,
    pub created: i64,
    pub updated: i64,
}

const COLUMNS: &str = "id, name, opt_in_process, created, updated";

fn from_row(r: &Row) -> Result<List, StoreError> {
    Ok(List {
        id: r.text(0)?,
        name: r.text(1)?,
        opt_in_process: r.text(2)?,
        created: r.int(3)?,
        updated: r.int(4)?,
    })
}

pub fn create(
    ctx: &mut WriteCtx<'_>,
    account: &str,
    name: &str,
    opt_in: &str,
    now: i64,
) -> Result<List, StoreError> {
    let id = new_short_id();
    ctx.conn.execute(
        "INSERT INTO lists (id, account_id, name, opt_in_process, created, updated) VALUES ($1, $2, $3, $4, $5, $5)",
        params![&id, account, name, opt_in, now],
    )?;
    Ok(List {
        id,
        name: name.to_owned(),
        opt_in_process: opt_in.to_owned(),
        created: now,
        updated: now,
    })
}

pub fn get(conn: &mut dyn Conn, account: &str, id: &str) -> Result<Option<List>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM lists WHERE account_id = $1 AND id = $2");
    conn.query_opt(&sql, params![account, id])?
        .map(|r| from_row(&r))
        .transpose()
}

pub fn rename(
    ctx: &mut WriteCtx<'_>,
    account: &str,
    id: &str,
    name: &str,
    now: i64,
) -> Result<List, StoreError> {
    let n = ctx.conn.execute(
        "UPDATE lists SET name = $3, updated = $4 WHERE account_id = $1 AND id = $2",
        params![account, id, name, now],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("list {id}")));
    }
    get(ctx.conn, account, id)?.ok_or_else(|| StoreError::NotFound(format!("list {id}")))
}

pub fn delete(ctx: &mut WriteCtx<'_>, account: &str, id: &str) -> Result<(), StoreError> {
    ctx.conn.execute(
        "DELETE FROM list_members WHERE account_id = $1 AND list_id = $2",
        params![account, id],
    )?;
    let n = ctx.conn.execute(
        "DELETE FROM lists WHERE account_id = $1 AND id = $2",
        params![account, id],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("list {id}")));
    }
    Ok(())
}

pub fn list(
    conn: &mut dyn Conn,
    account: &str,
    name: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<List>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM lists WHERE account_id = $1 AND (CAST($2 AS TEXT) IS NULL OR name = $2) \
         AND (CAST($3 AS TEXT) IS NULL OR id > $3) ORDER BY id LIMIT {}",
        limit.min(MAX_PAGE_ROWS)
    );
    conn.query(&sql, params![account, name, after])?
        .iter()
        .map(from_row)
        .collect()
}

/// How a profile joined; `historical_import` joins never trigger flows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JoinSource<'a> {
    pub source: &'a str,
    pub historical_import: bool,
}

/// Adds profiles to a list; ones already in it are left as they are.
/// Returns how many newly joined. Unknown profile ids fail the whole call.
pub fn add_members(
    ctx: &mut WriteCtx<'_>,
    account: &str,
    list_id: &str,
    profile_ids: &[String],
    how: JoinSource<'_>,
    now: i64,
) -> Result<usize, StoreError> {
    if get(ctx.conn, account, list_id)?.is_none() {
        return Err(StoreError::NotFound(format!("list {list_id}")));
    }
    let mut added = 0;
    for pid in profile_ids {
        if ctx
            .conn
            .query_opt(
                "SELECT 1 FROM profiles WHERE account_id = $1 AND id = $2",
                params![account, pid],
            )?
            .is_none()
        {
            return Err(StoreError::NotFound(format!("profile {pid}")));
        }
        added += ctx.conn.execute(
            "INSERT INTO list_members (list_id, profile_id, account_id, joined, source, historical_import) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (list_id, profile_id) DO NOTHING",
            params![list_id, pid, account, now, how.source, how.historical_import],
        )? as usize;
    }
    Ok(added)
}

pub fn remove_members(
    ctx: &mut WriteCtx<'_>,
    account: &str,
    list_id: &str,
    profile_ids: &[String],
) -> Result<usize, StoreError> {
    if get(ctx.conn, account, list_id)?.is_none() {
        return Err(StoreError::NotFound(format!("list {list_id}")));
    }
    let mut removed = 0;
    for pid in profile_ids {
        removed += ctx.conn.execute(
            "DELETE FROM list_members WHERE account_id = $1 AND list_id = $2 AND profile_id = $3",
            params![account, list_id, pid],
        )? as usize;
    }
    Ok(removed)
}

/// A list member with the time it joined.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub profile: Profile,
    pub joined: i64,
}

pub fn members(
    conn: &mut dyn Conn,
    account: &str,
    list_id: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Member>, StoreError> {
    let sql = format!(
        "SELECT p.id, p.email, p.phone_number, p.external_id, p.anonymous_id, p.attributes, \
         p.properties, p.subscriptions, p.created, p.updated, m.joined \
         FROM list_members m JOIN profiles p ON p.id = m.profile_id \
         WHERE m.account_id = $1 AND m.list_id = $2 AND (CAST($3 AS TEXT) IS NULL OR p.id > $3) \
         ORDER BY p.id LIMIT {}",
        limit.min(MAX_PAGE_ROWS)
    );
    conn.query(&sql, params![account, list_id, after])?
        .iter()
        .map(|r| {
            Ok(Member {
                profile: profiles::from_row(r)?,
                joined: r.int(10)?,
            })
        })
        .collect()
}

pub fn member_count(conn: &mut dyn Conn, account: &str, list_id: &str) -> Result<i64, StoreError> {
    Ok(conn
        .query_opt(
            "SELECT COUNT(*) FROM list_members WHERE account_id = $1 AND list_id = $2",
            params![account, list_id],
        )?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0))
}
