//! The `price-drop` trigger: follows `catalog_price_history` one change at a
//! time; for each live price-drop flow the drop satisfies, the profiles with
//! a Viewed Product and/or Started Checkout event naming the item within
//! `timeframe_days` before the change enter, with the item (old and new
//! price) as `catalog_item` in the run's trigger context.

use super::enrol::{self, FlowOnTrigger};
use crate::EngineError;
use chrono::{DateTime, Utc};
use outflow_core::clock::{from_micros, to_micros};
use outflow_core::flow::definition::Audience;
use outflow_core::flow::Trigger;
use outflow_core::segment::price_drop;
use outflow_store::db::Conn;
use outflow_store::runs::{self, NewRun};
use outflow_store::{catalog, params, segments, Store, StoreError};
use serde_json::Value;
use std::collections::HashMap;

pub const FEED: &str = "catalog_price_history";

struct PriceChange {
    seq: i64,
    account_id: String,
    item_id: String,
    old: Option<f64>,
    new: Option<f64>,
    changed: i64,
}

fn next_change(conn: &mut dyn Conn, after: i64) -> Result<Option<PriceChange>, StoreError> {
    conn.query_opt(
        "SELECT seq, account_id, item_id, old_price, new_price, changed FROM catalog_price_history \
         WHERE seq > $1 ORDER BY seq LIMIT 1",
        params![after],
    )?
    .map(|r| {
        Ok(PriceChange {
            seq: r.int(0)?,
            account_id: r.text(1)?,
            item_id: r.text(2)?,
            old: r.opt_real(3)?,
            new: r.opt_real(4)?,
            changed: r.int(5)?,
        })
    })
    .transpose()
}

/// The profiles in the flow's audience for this item, with the audience
/// each qualified through (viewed first).
fn audience(
    conn: &mut dyn Conn,
    flow: &FlowOnTrigger,
    t: &outflow_core::flow::definition::PriceDropTrigger,
    item: &catalog::CatalogItem,
    changed: DateTime<Utc>,
) -> Result<Vec<(String, Audience)>, StoreError> {
    let mut metric_audience: HashMap<String, Audience> = HashMap::new();
    for a in &t.audience {
        if let Some(r) = conn.query_opt(
            "SELECT id FROM metrics WHERE account_id = $1 AND name = $2",
            params![&flow.account_id, price_drop::audience_metric(*a)],
        )? {
            metric_audience.insert(r.text(0)?, *a);
        }
    }
    if metric_audience.is_empty() {
        return Ok(Vec::new());
    }
    let start = to_micros(price_drop::window_start(t, changed));
    let mut found: HashMap<String, Audience> = HashMap::new();
    for (metric, aud) in &metric_audience {
        let rows = conn.query(
            "SELECT profile_id, properties FROM events WHERE account_id = $1 AND time >= $2 \
             AND time <= $3 AND metric_id = $4",
            params![&flow.account_id, start, to_micros(changed), metric],
        )?;
        for r in rows {
            let props: Value = r.json(1)?;
            if price_drop::mentions_item(&props, &item.id, &item.external_id) {
                let pid = r.text(0)?;
                let e = found.entry(pid).or_insert(*aud);
                if *aud == Audience::Viewed {
                    *e = Audience::Viewed;
                }
            }
        }
    }
    let mut out: Vec<(String, Audience)> = found.into_iter().collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Handles the next price change. Returns the number of changes read (0
/// or 1) and runs created.
pub async fn pass(store: &Store, now: DateTime<Utc>) -> Result<(usize, usize), EngineError> {
    let (after, head) = store
        .read(|c| {
            Ok((
                runs::cursor(c, FEED)?,
                segments::head(c, "catalog_price_history")?,
            ))
        })
        .await?;
    if head <= after {
        return Ok((0, 0));
    }
    let planned = store
        .read(move |conn| {
            let flows = enrol::flows_of_type(conn, "price-drop")?;
            if flows.is_empty() {
                return Ok((head, 0, Vec::new()));
            }
            let Some(change) = next_change(conn, after)? else {
                return Ok((after, 0, Vec::new()));
            };
            let mut new_runs: Vec<NewRun> = Vec::new();
            if let (Some(old), Some(new)) = (change.old, change.new) {
                let item = catalog::get(conn, &change.account_id, &change.item_id)?;
                for f in flows.iter().filter(|f| f.account_id == change.account_id) {
                    let (Some(Trigger::PriceDrop(t)), Some(item)) =
                        (f.def.trigger(), item.as_ref())
                    else {
                        continue;
                    };
                    if !price_drop::qualifies(t, old, new) {
                        continue;
                    }
                    let mut shown = item.attributes.clone();
                    shown.insert("id".into(), Value::String(item.id.clone()));
                    shown.insert(
                        "external_id".into(),
                        Value::String(item.external_id.clone()),
                    );
                    let shown = Value::Object(shown);
                    let cands: Vec<(String, Option<Value>)> =
                        audience(conn, f, t, item, from_micros(change.changed))?
                            .into_iter()
                            .map(|(p, a)| (p, Some(price_drop::trigger_event(&shown, old, new, a))))
                            .collect();
                    new_runs.extend(enrol::plan(
                        conn,
                        f,
                        &cands,
                        now,
                        enrol::Past::ReentryRules,
                    )?);
                }
            }
            Ok((change.seq, 1, new_runs))
        })
        .await?;
    let (to, read, new_runs) = planned;
    let n = new_runs.len();
    let now_us = to_micros(now);
    let done = store
        .write(move |ctx| {
            if !runs::advance_cursor(ctx.conn, FEED, after, to, now_us)? {
                return Err(StoreError::Conflict("price feed moved under us".into()));
            }
            runs::insert_runs(ctx.conn, &new_runs)
        })
        .await;
    match done {
        Ok(()) => Ok((read.max(usize::from(to > after)), n)),
        Err(StoreError::Conflict(_)) => Ok((0, 0)),
        Err(e) => Err(e.into()),
    }
}
