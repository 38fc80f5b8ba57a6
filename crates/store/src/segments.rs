//! Segments (issue #5): definitions, current members, and the feed of
//! membership changes (`segment_changes`) the segment trigger follows.
//! Membership is computed by the engine; this module moves rows, and makes
//! every change conditional on the current membership, so two evaluators
//! never record the same join twice.

use crate::db::{Conn, Param, Row};
use crate::lists::Member;
use crate::runs::{in_list, padded};
use crate::writer::WriteCtx;
use crate::{new_short_id, params, profiles, StoreError, MAX_PAGE_ROWS};
use serde_json::Value;

/// Feeds of the segment evaluator and the segment trigger (cursor names).
pub const FEED_EVENTS: &str = "segments:events";
pub const FEED_PROFILES: &str = "segments:profiles";
pub const FEED_CHANGES: &str = "segment_changes";

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub definition: Value,
    pub is_active: bool,
    pub is_starred: bool,
    pub version: i64,
    pub built_version: i64,
    /// Keyset position of a running full evaluation.
    pub build_after: Option<String>,
    /// Whether the running full evaluation's joins may trigger flows.
    pub build_organic: bool,
    pub swept: i64,
    pub created: i64,
    pub updated: i64,
}

impl Segment {
    /// Klaviyo's `is_processing`: membership is still being built for the
    /// current definition.
    pub fn is_processing(&self) -> bool {
        self.is_active && self.built_version < self.version
    }
}

const COLUMNS: &str = "id, account_id, name, definition, is_active, is_starred, version, \
    built_version, build_after, build_organic, swept, created, updated";

fn from_row(r: &Row) -> Result<Segment, StoreError> {
    Ok(Segment {
        id: r.text(0)?,
        account_id: r.text(1)?,
        name: r.text(2)?,
        definition: r.json(3)?,
        is_active: r.bool(4)?,
        is_starred: r.bool(5)?,
        version: r.int(6)?,
        built_version: r.int(7)?,
        build_after: r.opt_text(8)?,
        build_organic: r.bool(9)?,
        swept: r.int(10)?,
        created: r.int(11)?,
        updated: r.int(12)?,
    })
}

/// Creates a segment; its membership is built by the engine (silently: a
/// new segment's first members never trigger flows).
pub fn create(
    ctx: &mut WriteCtx<'_>,
    account: &str,
    name: &str,
    definition: &Value,
    starred: bool,
    now: i64,
) -> Result<Segment, StoreError> {
    let id = new_short_id();
    ctx.conn.execute(
        "INSERT INTO segments (id, account_id, name, definition, is_active, is_starred, version, \
         built_version, swept, created, updated) VALUES ($1, $2, $3, $4, 1, $5, 1, 0, $6, $6, $6)",
        params![&id, account, name, &definition.to_string(), starred, now],
    )?;
    get(ctx.conn, account, &id)?.ok_or_else(|| StoreError::NotFound(format!("segment {id}")))
}

pub fn get(conn: &mut dyn Conn, account: &str, id: &str) -> Result<Option<Segment>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM segments WHERE account_id = $1 AND id = $2");
    conn.query_opt(&sql, params![account, id])?
        .map(|r| from_row(&r))
        .transpose()
}

/// A page of the account's segments by id.
pub fn list(
    conn: &mut dyn Conn,
    account: &str,
    name: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Segment>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM segments WHERE account_id = $1 AND (CAST($2 AS TEXT) IS NULL OR name = $2) \
         AND (CAST($3 AS TEXT) IS NULL OR id > $3) ORDER BY id LIMIT {}",
        limit.min(MAX_PAGE_ROWS)
    );
    conn.query(&sql, params![account, name, after])?
        .iter()
        .map(from_row)
        .collect()
}

/// Every active segment of every account, for the evaluator's index.
pub fn all_active(conn: &mut dyn Conn) -> Result<Vec<Segment>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM segments WHERE is_active = 1 ORDER BY id");
    conn.query(&sql, params![])?.iter().map(from_row).collect()
}

/// What `PATCH /api/segments/{id}` may change.
#[derive(Debug, Clone, Default)]
pub struct SegmentChange {
    pub name: Option<String>,
    pub definition: Option<Value>,
    pub is_starred: Option<bool>,
    pub is_active: Option<bool>,
}

/// Applies a change. A new definition (or a reactivation) starts a silent
/// rebuild: Klaviyo does not trigger flows for members gained by editing.
pub fn update(
    ctx: &mut WriteCtx<'_>,
    account: &str,
    id: &str,
    change: &SegmentChange,
    now: i64,
) -> Result<Segment, StoreError> {
    let Some(cur) = get(ctx.conn, account, id)? else {
        return Err(StoreError::NotFound(format!("segment {id}")));
    };
    let name = change.name.clone().unwrap_or(cur.name.clone());
    let starred = change.is_starred.unwrap_or(cur.is_starred);
    let active = change.is_active.unwrap_or(cur.is_active);
    let redefined = change
        .definition
        .as_ref()
        .is_some_and(|d| *d != cur.definition);
    let reactivated = active && !cur.is_active;
    let definition = change.definition.clone().unwrap_or(cur.definition.clone());
    let version = cur.version + i64::from(redefined || reactivated);
    ctx.conn.execute(
        "UPDATE segments SET name = $8, definition = $3, is_starred = $4, is_active = $5, \
         version = $6, build_after = CASE WHEN $6 = version THEN build_after ELSE NULL END, \
         build_organic = CASE WHEN $6 = version THEN build_organic ELSE 0 END, \
         swept = CASE WHEN $6 = version THEN swept ELSE $7 END, updated = $7 \
         WHERE account_id = $1 AND id = $2",
        params![
            account,
            id,
            &definition.to_string(),
            starred,
            active,
            version,
            now,
            &name
        ],
    )?;
    get(ctx.conn, account, id)?.ok_or_else(|| StoreError::NotFound(format!("segment {id}")))
}

pub fn delete(ctx: &mut WriteCtx<'_>, account: &str, id: &str) -> Result<(), StoreError> {
    ctx.conn.execute(
        "DELETE FROM segment_members WHERE account_id = $1 AND segment_id = $2",
        params![account, id],
    )?;
    let n = ctx.conn.execute(
        "DELETE FROM segments WHERE account_id = $1 AND id = $2",
        params![account, id],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("segment {id}")));
    }
    Ok(())
}

/// A page of current members, by profile id.
pub fn members(
    conn: &mut dyn Conn,
    account: &str,
    segment_id: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Member>, StoreError> {
    let sql = format!(
        "SELECT p.id, p.email, p.phone_number, p.external_id, p.anonymous_id, p.attributes, \
         p.properties, p.subscriptions, p.created, p.updated, m.joined \
         FROM segment_members m JOIN profiles p ON p.id = m.profile_id \
         WHERE m.account_id = $1 AND m.segment_id = $2 AND m.profile_id > $3 \
         ORDER BY m.profile_id LIMIT {}",
        limit.min(MAX_PAGE_ROWS)
    );
    conn.query(&sql, params![account, segment_id, after.unwrap_or("")])?
        .iter()
        .map(|r| {
            Ok(Member {
                profile: profiles::from_row(r)?,
                joined: r.int(10)?,
            })
        })
        .collect()
}

/// Member profile ids after `after`, for paging through a segment.
pub fn member_ids(
    conn: &mut dyn Conn,
    segment_id: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let sql = format!(
        "SELECT profile_id FROM segment_members WHERE segment_id = $1 \
         AND profile_id > $2 ORDER BY profile_id LIMIT {limit}"
    );
    conn.query(&sql, params![segment_id, after.unwrap_or("")])?
        .iter()
        .map(|r| r.text(0).map_err(Into::into))
        .collect()
}

pub fn member_count(
    conn: &mut dyn Conn,
    account: &str,
    segment_id: &str,
) -> Result<i64, StoreError> {
    Ok(conn
        .query_opt(
            "SELECT COUNT(*) FROM segment_members WHERE account_id = $1 AND segment_id = $2",
            params![account, segment_id],
        )?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0))
}

/// `(profile_id, segment_id)` for every segment the profiles belong to.
pub fn memberships(
    conn: &mut dyn Conn,
    profile_ids: &[String],
) -> Result<Vec<(String, String)>, StoreError> {
    let mut out = Vec::new();
    for chunk in profile_ids.chunks(500) {
        let (list, n) = in_list(1, chunk.len());
        let sql = format!(
            "SELECT profile_id, segment_id FROM segment_members WHERE profile_id IN ({list})"
        );
        for r in conn.query(&sql, &padded(chunk, n))? {
            out.push((r.text(0)?, r.text(1)?));
        }
    }
    Ok(out)
}

/// A profile's membership as evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub account_id: String,
    pub segment_id: String,
    pub profile_id: String,
    pub entered: bool,
    /// Whether a join may trigger flows (false while building a new or
    /// edited definition).
    pub organic: bool,
}

/// Rows per multi-row statement in [`apply`].
const APPLY_CHUNK: usize = 100;

/// Records joins and leaves; each is applied only if the membership row
/// really changes, and only then appended to the feed. Returns how many
/// took effect. Statements are multi-row: the cost is per statement.
pub fn apply(conn: &mut dyn Conn, changes: &[Change], now: i64) -> Result<usize, StoreError> {
    use std::collections::HashSet;
    let mut effective: Vec<&Change> = Vec::new();
    let joins: Vec<&Change> = changes.iter().filter(|c| c.entered).collect();
    for chunk in joins.chunks(APPLY_CHUNK) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                format!(
                    "(${}, ${}, ${}, ${})",
                    4 * i + 1,
                    4 * i + 2,
                    4 * i + 3,
                    4 * i + 4
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO segment_members (segment_id, profile_id, account_id, joined) VALUES {} \
             ON CONFLICT (segment_id, profile_id) DO NOTHING RETURNING segment_id, profile_id",
            values.join(", ")
        );
        let mut p: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * 4);
        for c in chunk {
            p.extend([
                Param::Text(&c.segment_id),
                Param::Text(&c.profile_id),
                Param::Text(&c.account_id),
                Param::Int(now),
            ]);
        }
        let added: HashSet<(String, String)> = conn
            .query(&sql, &p)?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect::<Result<_, StoreError>>()?;
        effective.extend(
            chunk
                .iter()
                .filter(|c| added.contains(&(c.segment_id.clone(), c.profile_id.clone()))),
        );
    }
    let mut leaves: Vec<&Change> = changes.iter().filter(|c| !c.entered).collect();
    leaves.sort_by(|a, b| a.segment_id.cmp(&b.segment_id));
    for group in leaves.chunk_by(|a, b| a.segment_id == b.segment_id) {
        for chunk in group.chunks(APPLY_CHUNK) {
            let ids: Vec<String> = chunk.iter().map(|c| c.profile_id.clone()).collect();
            let (list, n) = in_list(2, ids.len());
            let sql = format!(
                "DELETE FROM segment_members WHERE segment_id = $1 AND profile_id IN ({list}) \
                 RETURNING profile_id"
            );
            let mut p = vec![Param::Text(&chunk[0].segment_id)];
            p.extend(padded(&ids, n));
            let removed: HashSet<String> = conn
                .query(&sql, &p)?
                .iter()
                .map(|r| r.text(0).map_err(Into::into))
                .collect::<Result<_, StoreError>>()?;
            effective.extend(chunk.iter().filter(|c| removed.contains(&c.profile_id)));
        }
    }
    for chunk in effective.chunks(APPLY_CHUNK) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let b = 6 * i;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO segment_changes (account_id, segment_id, profile_id, entered, organic, at) VALUES {}",
            values.join(", ")
        );
        let mut p: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * 6);
        for c in chunk {
            p.extend([
                Param::Text(&c.account_id),
                Param::Text(&c.segment_id),
                Param::Text(&c.profile_id),
                Param::Int(i64::from(c.entered)),
                Param::Int(i64::from(c.organic)),
                Param::Int(now),
            ]);
        }
        conn.execute(&sql, &p)?;
    }
    Ok(effective.len())
}

/// Moves a full evaluation on: to `after`, or — with `None` — marks
/// `version` built. Ignored if the definition changed meanwhile.
pub fn build_progress(
    conn: &mut dyn Conn,
    id: &str,
    version: i64,
    after: Option<&str>,
) -> Result<bool, StoreError> {
    let n = match after {
        Some(a) => conn.execute(
            "UPDATE segments SET build_after = $3 WHERE id = $1 AND version = $2",
            params![id, version, a],
        )?,
        None => conn.execute(
            "UPDATE segments SET build_after = NULL, build_organic = 0, built_version = $2 \
             WHERE id = $1 AND version = $2",
            params![id, version],
        )?,
    };
    Ok(n == 1)
}

/// Starts an organic full re-evaluation (its joins trigger flows), used
/// when conditions compare profile dates with today.
pub fn start_organic_rebuild(
    conn: &mut dyn Conn,
    id: &str,
    version: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE segments SET built_version = version - 1, build_after = NULL, build_organic = 1 \
         WHERE id = $1 AND version = $2 AND built_version = version",
        params![id, version],
    )?;
    Ok(())
}

/// Records that time-dependent conditions were re-evaluated up to `to`.
pub fn set_swept(conn: &mut dyn Conn, id: &str, from: i64, to: i64) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE segments SET swept = $3 WHERE id = $1 AND swept = $2",
        params![id, from, to],
    )? == 1)
}

/// Profile ids of the account after `after`, by id (full evaluation).
pub fn profile_page(
    conn: &mut dyn Conn,
    account: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    // `account_id || ''` keeps SQLite off the account indexes (which would
    // read every profile of the account and sort, per page): the primary
    // key is walked from `after` instead.
    let sql = format!(
        "SELECT id FROM profiles WHERE account_id || '' = $1 AND id > $2 \
         ORDER BY id LIMIT {limit}"
    );
    conn.query(&sql, params![account, after.unwrap_or("")])?
        .iter()
        .map(|r| r.text(0).map_err(Into::into))
        .collect()
}

/// Profiles with an event of `metric_id` in `[start, end)` (microseconds):
/// the only ones whose sliding-window aggregate can have changed.
pub fn profiles_with_events_between(
    conn: &mut dyn Conn,
    account: &str,
    metric_id: &str,
    start: i64,
    end: i64,
) -> Result<Vec<String>, StoreError> {
    conn.query(
        "SELECT DISTINCT profile_id FROM events WHERE account_id = $1 AND time >= $2 AND time < $3 \
         AND metric_id = $4",
        params![account, start, end, metric_id],
    )?
    .iter()
    .map(|r| r.text(0).map_err(Into::into))
    .collect()
}

/// One event as the evaluator reads the feed.
#[derive(Debug, Clone)]
pub struct EventItem {
    pub seq: i64,
    pub account_id: String,
    pub metric_id: String,
    pub profile_id: String,
}

pub fn events_after(
    conn: &mut dyn Conn,
    after: i64,
    limit: usize,
) -> Result<Vec<EventItem>, StoreError> {
    let sql = format!(
        "SELECT seq, account_id, metric_id, profile_id FROM events WHERE seq > $1 ORDER BY seq LIMIT {limit}"
    );
    conn.query(&sql, params![after])?
        .iter()
        .map(|r| {
            Ok(EventItem {
                seq: r.int(0)?,
                account_id: r.text(1)?,
                metric_id: r.text(2)?,
                profile_id: r.text(3)?,
            })
        })
        .collect()
}

/// One profile change as the evaluator reads the feed.
#[derive(Debug, Clone)]
pub struct ProfileItem {
    pub seq: i64,
    pub account_id: String,
    pub profile_id: String,
    /// The list joined or left; `None` for the profile's own fields.
    pub list_id: Option<String>,
    /// A new profile (every segment may hold it).
    pub created: bool,
}

pub fn profile_changes_after(
    conn: &mut dyn Conn,
    after: i64,
    limit: usize,
) -> Result<Vec<ProfileItem>, StoreError> {
    let sql = format!(
        "SELECT seq, account_id, profile_id, list_id, created FROM profile_changes WHERE seq > $1 \
         ORDER BY seq LIMIT {limit}"
    );
    conn.query(&sql, params![after])?
        .iter()
        .map(|r| {
            Ok(ProfileItem {
                seq: r.int(0)?,
                account_id: r.text(1)?,
                profile_id: r.text(2)?,
                list_id: r.opt_text(3)?,
                created: r.bool(4)?,
            })
        })
        .collect()
}

/// Drops profile changes both of their readers (segments and the date
/// index) have passed (the feed is only a queue).
pub fn prune_profile_changes(conn: &mut dyn Conn) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM profile_changes WHERE seq <= (SELECT COALESCE(MIN(position), 0) \
         FROM dispatch_cursors WHERE feed IN ('segments:profiles', 'dates:profiles'))",
        params![],
    )?;
    Ok(())
}

/// Drops membership changes the segment trigger's cursor has passed: the
/// feed is only a queue (no API reads it), and without this it grew with
/// every join and leave. Sequence numbers are never reused (SQLite's
/// AUTOINCREMENT, PostgreSQL's sequence), so an emptied feed still
/// continues above the cursor. At most [`PRUNE_CHANGES`] rows go per call,
/// so a store that kept years of changes before this existed drains them
/// over many dispatch commits instead of stalling one.
pub fn prune_changes(conn: &mut dyn Conn, upto: i64) -> Result<(), StoreError> {
    conn.execute(
        &format!(
            "DELETE FROM segment_changes WHERE seq <= $1 \
             AND seq <= (SELECT MIN(seq) FROM segment_changes) + {PRUNE_CHANGES}"
        ),
        params![upto],
    )?;
    Ok(())
}

/// See [`prune_changes`]: ten times a dispatch batch, so a backlog drains
/// while new changes arrive.
pub const PRUNE_CHANGES: i64 = 10_000;

pub fn head(conn: &mut dyn Conn, table: &'static str) -> Result<i64, StoreError> {
    let sql = format!("SELECT COALESCE(MAX(seq), 0) FROM {table}");
    Ok(conn
        .query_opt(&sql, params![])?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0))
}

// ---------------------------------------------------------------- add past profiles

/// A request to enrol a flow's current audience.
#[derive(Debug, Clone, PartialEq)]
pub struct Backfill {
    pub id: String,
    pub account_id: String,
    pub flow_id: String,
    pub after: Option<String>,
    pub status: String,
    pub enrolled: i64,
    pub created: i64,
    pub updated: i64,
}

const BACKFILL_COLUMNS: &str = "id, account_id, flow_id, after, status, enrolled, created, updated";

fn backfill_row(r: &Row) -> Result<Backfill, StoreError> {
    Ok(Backfill {
        id: r.text(0)?,
        account_id: r.text(1)?,
        flow_id: r.text(2)?,
        after: r.opt_text(3)?,
        status: r.text(4)?,
        enrolled: r.int(5)?,
        created: r.int(6)?,
        updated: r.int(7)?,
    })
}

pub fn request_backfill(
    conn: &mut dyn Conn,
    account: &str,
    flow_id: &str,
    now: i64,
) -> Result<Backfill, StoreError> {
    let id = new_short_id();
    conn.execute(
        "INSERT INTO flow_backfills (id, account_id, flow_id, status, enrolled, created, updated) \
         VALUES ($1, $2, $3, 'queued', 0, $4, $4)",
        params![&id, account, flow_id, now],
    )?;
    Ok(Backfill {
        id,
        account_id: account.to_owned(),
        flow_id: flow_id.to_owned(),
        after: None,
        status: "queued".into(),
        enrolled: 0,
        created: now,
        updated: now,
    })
}

pub fn next_backfill(conn: &mut dyn Conn) -> Result<Option<Backfill>, StoreError> {
    let sql = format!(
        "SELECT {BACKFILL_COLUMNS} FROM flow_backfills WHERE status = 'queued' ORDER BY created, id LIMIT 1"
    );
    conn.query_opt(&sql, params![])?
        .map(|r| backfill_row(&r))
        .transpose()
}

pub fn get_backfill(conn: &mut dyn Conn, id: &str) -> Result<Option<Backfill>, StoreError> {
    let sql = format!("SELECT {BACKFILL_COLUMNS} FROM flow_backfills WHERE id = $1");
    conn.query_opt(&sql, params![id])?
        .map(|r| backfill_row(&r))
        .transpose()
}

/// Moves a backfill from `from` to `to` (compare-and-set on the position,
/// so two workers never enrol the same page); `to = None` finishes it.
pub fn backfill_progress(
    conn: &mut dyn Conn,
    id: &str,
    from: Option<&str>,
    to: Option<&str>,
    enrolled: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let status = if to.is_some() { "queued" } else { "done" };
    Ok(conn.execute(
        "UPDATE flow_backfills SET after = $3, status = $4, enrolled = enrolled + $5, updated = $6 \
         WHERE id = $1 AND status = 'queued' AND COALESCE(after, '') = COALESCE(CAST($2 AS TEXT), '')",
        params![id, from, to, status, enrolled, now],
    )? == 1)
}
