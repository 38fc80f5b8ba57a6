//! Events: ingest (writer side, the hot path) and reads.

use crate::db::{Conn, Param, Row};
use crate::writer::WriteCtx;
use crate::{metrics, new_ulid, params, profiles, StoreError, MAX_PAGE_ROWS};
use outflow_core::event::ValidEvent;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub metric_id: String,
    pub profile_id: String,
    /// Microseconds since the epoch.
    pub time: i64,
    pub value: Option<f64>,
    pub value_currency: Option<String>,
    pub properties: Value,
    pub backfill: bool,
    pub unique_key: String,
}

const COLUMNS: &str =
    "id, metric_id, profile_id, time, value, value_currency, properties, backfill, unique_key";

fn from_row(r: &Row) -> Result<Event, StoreError> {
    Ok(Event {
        id: r.text(0)?,
        metric_id: r.text(1)?,
        profile_id: r.text(2)?,
        time: r.int(3)?,
        value: r.opt_real(4)?,
        value_currency: r.opt_text(5)?,
        properties: r.json(6)?,
        backfill: r.bool(7)?,
        unique_key: r.text(8)?,
    })
}

/// What storing one event did.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingested {
    pub profile_id: String,
    /// `None` when the event was a duplicate (same profile, metric and key).
    pub event_id: Option<String>,
}

/// Stores one validated event: resolves or creates its profile (applying
/// the profile attributes it carries), creates its metric on first use, and
/// drops it silently if it duplicates an earlier one.
pub fn ingest(
    ctx: &mut WriteCtx<'_>,
    account: &str,
    ev: &ValidEvent,
    now: i64,
) -> Result<Ingested, StoreError> {
    let (profile_id, _) = profiles::upsert(ctx, account, &ev.input.profile, now)?;
    let metric_id = metrics::ensure(ctx, account, &ev.input.metric_name, now)?;
    let id = new_ulid();
    let props = serde_json::to_string(&ev.input.properties)
        .map_err(|e| StoreError::Invalid(format!("event properties: {e}")))?;
    let n = ctx.conn.execute(
        "INSERT INTO events (id, account_id, metric_id, profile_id, time, value, value_currency, \
         unique_key, properties, backfill, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (profile_id, metric_id, unique_key) DO NOTHING",
        params![
            &id,
            account,
            &metric_id,
            &profile_id,
            ev.time.timestamp_micros(),
            ev.input.value,
            &ev.input.value_currency,
            &ev.unique_key,
            &props,
            ev.input.backfill,
            now
        ],
    )?;
    if n > 0 {
        ctx.cache.note_event();
    }
    Ok(Ingested {
        profile_id,
        event_id: (n > 0).then_some(id),
    })
}

pub fn get(conn: &mut dyn Conn, account: &str, id: &str) -> Result<Option<Event>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM events WHERE account_id = $1 AND id = $2");
    conn.query_opt(&sql, params![account, id])?
        .map(|r| from_row(&r))
        .transpose()
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventFilter {
    MetricId(String),
    ProfileId(String),
    TimeAfter(i64),
    TimeBefore(i64),
    TimeAtOrAfter(i64),
    TimeAtOrBefore(i64),
}

/// Position in the (time, id) order used by event pagination.
#[derive(Debug, Clone, PartialEq)]
pub struct EventCursor {
    pub time: i64,
    pub id: String,
}

pub fn list(
    conn: &mut dyn Conn,
    account: &str,
    filters: &[EventFilter],
    descending: bool,
    after: Option<&EventCursor>,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    enum P {
        T(String),
        I(i64),
    }
    let mut ps: Vec<P> = Vec::new();
    let mut sql = format!("SELECT {COLUMNS} FROM events WHERE account_id = $1");
    let push = |sql: &mut String, cond: &str, p: P, ps: &mut Vec<P>| {
        ps.push(p);
        sql.push_str(&format!(" AND {cond} ${}", ps.len() + 1));
    };
    for f in filters {
        match f {
            EventFilter::MetricId(m) => push(&mut sql, "metric_id =", P::T(m.clone()), &mut ps),
            EventFilter::ProfileId(p) => push(&mut sql, "profile_id =", P::T(p.clone()), &mut ps),
            EventFilter::TimeAfter(t) => push(&mut sql, "time >", P::I(*t), &mut ps),
            EventFilter::TimeBefore(t) => push(&mut sql, "time <", P::I(*t), &mut ps),
            EventFilter::TimeAtOrAfter(t) => push(&mut sql, "time >=", P::I(*t), &mut ps),
            EventFilter::TimeAtOrBefore(t) => push(&mut sql, "time <=", P::I(*t), &mut ps),
        }
    }
    let (cmp, dir) = if descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some(c) = after {
        ps.push(P::I(c.time));
        ps.push(P::T(c.id.clone()));
        let (a, b) = (ps.len(), ps.len() + 1);
        sql.push_str(&format!(
            " AND (time {cmp} ${a} OR (time = ${a} AND id {cmp} ${b}))"
        ));
    }
    sql.push_str(&format!(
        " ORDER BY time {dir}, id {dir} LIMIT {}",
        limit.min(MAX_PAGE_ROWS)
    ));
    let mut params: Vec<Param<'_>> = vec![Param::Text(account)];
    params.extend(ps.iter().map(|p| match p {
        P::T(s) => Param::Text(s),
        P::I(i) => Param::Int(*i),
    }));
    conn.query(&sql, &params)?.iter().map(from_row).collect()
}

pub fn count(conn: &mut dyn Conn, account: &str) -> Result<i64, StoreError> {
    Ok(conn
        .query_opt(
            "SELECT COUNT(*) FROM events WHERE account_id = $1",
            params![account],
        )?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0))
}
