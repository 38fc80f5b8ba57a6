//! `POST /outflow/v1/flows/{id}/add-past-profiles`: Klaviyo's "Add past
//! profiles". The API records a request; this enrols the flow's current
//! audience (the segment's or list's members) a page at a time, with the
//! usual entry filters; a profile that was ever in the flow is not added.

use super::enrol;
use crate::EngineError;
use chrono::{DateTime, Utc};
use outflow_core::clock::to_micros;
use outflow_store::db::Conn;
use outflow_store::segments;
use outflow_store::{params, runs, Store, StoreError};

const PAGE: usize = 500;

/// Profile ids of a list's members after `after`.
fn list_member_ids(
    conn: &mut dyn Conn,
    list_id: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let sql = format!(
        "SELECT profile_id FROM list_members WHERE list_id = $1 \
         AND profile_id > $2 ORDER BY profile_id LIMIT {limit}"
    );
    conn.query(&sql, params![list_id, after.unwrap_or("")])?
        .iter()
        .map(|r| r.text(0).map_err(Into::into))
        .collect()
}

/// Works on the oldest queued request: one page. Returns profiles read.
pub async fn pass(store: &Store, now: DateTime<Utc>) -> Result<usize, EngineError> {
    let planned = store
        .read(move |conn| {
            let Some(b) = segments::next_backfill(conn)? else {
                return Ok(None);
            };
            let flow = enrol::flow(conn, &b.account_id, &b.flow_id)?;
            let page = match flow
                .as_ref()
                .map(|f| (f.trigger_type.as_str(), f.trigger_ref.clone()))
            {
                Some(("segment", Some(s))) => {
                    segments::member_ids(conn, &s, b.after.as_deref(), PAGE)?
                }
                Some(("list", Some(l))) => list_member_ids(conn, &l, b.after.as_deref(), PAGE)?,
                // Not live, or not a segment or list flow: nothing to add.
                _ => Vec::new(),
            };
            let new_runs = match &flow {
                Some(f) => {
                    let cands: Vec<(String, Option<serde_json::Value>)> =
                        page.iter().map(|p| (p.clone(), None)).collect();
                    enrol::plan(conn, f, &cands, now, enrol::Past::Skip)?
                }
                None => Vec::new(),
            };
            let next = (page.len() == PAGE).then(|| page.last().cloned()).flatten();
            Ok(Some((b, page.len(), next, new_runs)))
        })
        .await?;
    let Some((b, read, next, new_runs)) = planned else {
        return Ok(0);
    };
    let now_us = to_micros(now);
    let n = new_runs.len() as i64;
    let done = store
        .write(move |ctx| {
            if !segments::backfill_progress(
                ctx.conn,
                &b.id,
                b.after.as_deref(),
                next.as_deref(),
                n,
                now_us,
            )? {
                return Err(StoreError::Conflict("backfill moved under us".into()));
            }
            runs::insert_runs(ctx.conn, &new_runs)
        })
        .await;
    match done {
        Ok(()) | Err(StoreError::Conflict(_)) => Ok(read.max(1)),
        Err(e) => Err(e.into()),
    }
}
