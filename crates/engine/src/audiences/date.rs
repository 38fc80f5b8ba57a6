//! The `date` trigger. Three kinds of work, one batch each per pass:
//! - **index**: follows `profile_changes`; a changed profile's dates (under
//!   every property a live date flow reads) are re-indexed, and if its new
//!   date's firing for the coming occurrence has already passed, it enters
//!   now (Klaviyo re-checks a date when it is added or changed);
//! - **build**: a property a new date flow reads is indexed over every
//!   profile of the account once, a page at a time;
//! - **fire**: for each flow, the window since its last pass: only the
//!   profiles whose indexed date can have a firing in it are read (no full
//!   scan), each checked exactly in its time zone; a firing is recorded per
//!   (flow, profile, occurrence), so no pass fires twice.

use super::enrol::{self, FlowOnTrigger, Past};
use crate::facts::Loaded;
use crate::EngineError;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use outflow_core::clock::{from_micros, to_micros};
use outflow_core::flow::definition::{DateTrigger, Recurrence};
use outflow_core::flow::Trigger;
use outflow_core::segment::date::{
    candidate_occurrences, firings, index_keys, keys_occurring_on, max_lead_days, profile_zone,
    zone_for, DateValue, IndexKeys,
};
use outflow_store::dates::{self, KeyColumn};
use outflow_store::db::Conn;
use outflow_store::runs::{self, NewRun};
use outflow_store::{generations, segments, Store, StoreError};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// Profiles per page of an index build.
const BUILD_PAGE: usize = 1000;
/// Finest step of the firing window: trigger times are minutes.
const FIRE_STEP: Duration = Duration::seconds(60);

/// A live date flow with its trigger.
#[derive(Debug, Clone)]
pub struct DateFlow {
    pub flow: FlowOnTrigger,
    pub trigger: DateTrigger,
}

fn load(conn: &mut dyn Conn) -> Result<Vec<DateFlow>, StoreError> {
    Ok(enrol::flows_of_type(conn, "date")?
        .into_iter()
        .filter_map(|flow| match flow.def.trigger() {
            Some(Trigger::Date(t)) => Some(DateFlow {
                trigger: t.clone(),
                flow,
            }),
            _ => None,
        })
        .collect())
}

/// A profile's date under `property`: a custom property first, then an
/// attribute of that name.
fn date_value(profile: &Value, property: &str) -> Option<DateValue> {
    profile
        .get("properties")
        .and_then(|p| p.get(property))
        .or_else(|| profile.get(property))
        .and_then(DateValue::parse)
}

/// The dispatch-cursor name of one flow's firing window.
fn cursor_name(flow_id: &str) -> String {
    format!("date:{flow_id}")
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DatePass {
    pub read: usize,
    pub runs: usize,
}

pub struct DateTriggers {
    /// The flows' change counter and the date flows loaded at it.
    cache: Mutex<(Option<i64>, Arc<Vec<DateFlow>>)>,
    batch: usize,
}

/// A firing about to be recorded, with the run it starts.
type Firing = (String, String, String, NewRun);

impl DateTriggers {
    pub fn new(batch: usize) -> Self {
        Self {
            cache: Mutex::new((None, Arc::new(Vec::new()))),
            batch,
        }
    }

    async fn flows(&self, store: &Store) -> Result<Arc<Vec<DateFlow>>, EngineError> {
        let known = self.cache.lock().ok().and_then(|c| c.0);
        let loaded = store
            .read(move |conn| {
                let fp = generations::current(conn, generations::FLOWS)?;
                if Some(fp) == known {
                    return Ok(None);
                }
                Ok(Some((fp, load(conn)?)))
            })
            .await?;
        let mut slot = match self.cache.lock() {
            Ok(s) => s,
            Err(e) => e.into_inner(),
        };
        if let Some((fp, flows)) = loaded {
            *slot = (Some(fp), Arc::new(flows));
        }
        Ok(slot.1.clone())
    }

    pub async fn pass(&self, store: &Store, now: DateTime<Utc>) -> Result<DatePass, EngineError> {
        let flows = self.flows(store).await?;
        let a = self.index(store, &flows, now).await?;
        if flows.is_empty() {
            return Ok(a);
        }
        let b = self.build(store, &flows).await?;
        let c = self.fire(store, &flows, now).await?;
        Ok(DatePass {
            read: a.read + b.read + c.read,
            runs: a.runs + b.runs + c.runs,
        })
    }

    /// Re-indexes changed profiles, and enters those whose new date's
    /// firing has passed while its occurrence has not.
    async fn index(
        &self,
        store: &Store,
        flows: &Arc<Vec<DateFlow>>,
        now: DateTime<Utc>,
    ) -> Result<DatePass, EngineError> {
        let now_us = to_micros(now);
        if flows.is_empty() {
            let (p0, head) = store
                .read(|c| {
                    Ok((
                        runs::cursor(c, dates::FEED_PROFILES)?,
                        segments::head(c, "profile_changes")?,
                    ))
                })
                .await?;
            if head > p0 {
                store
                    .write(move |ctx| {
                        runs::advance_cursor(ctx.conn, dates::FEED_PROFILES, p0, head, now_us)?;
                        segments::prune_profile_changes(ctx.conn)
                    })
                    .await?;
            }
            return Ok(DatePass::default());
        }
        let batch = self.batch;
        let fl = flows.clone();
        let planned = store
            .read(move |conn| {
                let p0 = runs::cursor(conn, dates::FEED_PROFILES)?;
                let changes = segments::profile_changes_after(conn, p0, batch)?;
                let Some(p1) = changes.last().map(|c| c.seq) else {
                    return Ok(None);
                };
                let mut per_account: HashMap<String, BTreeSet<String>> = HashMap::new();
                for c in changes.iter().filter(|c| c.list_id.is_none()) {
                    per_account
                        .entry(c.account_id.clone())
                        .or_default()
                        .insert(c.profile_id.clone());
                }
                let mut index_rows = Vec::new();
                let mut fired: Vec<Firing> = Vec::new();
                for (account, profiles) in per_account {
                    let mine: Vec<&DateFlow> =
                        fl.iter().filter(|f| f.flow.account_id == account).collect();
                    if mine.is_empty() {
                        continue;
                    }
                    let ids: Vec<String> = profiles.into_iter().collect();
                    let loaded = Loaded::load(conn, &ids, &[])?;
                    let props: BTreeSet<&str> =
                        mine.iter().map(|f| f.trigger.property.as_str()).collect();
                    for pid in &ids {
                        let Some(facts) = loaded.facts_for(pid, &[], now, None) else {
                            continue;
                        };
                        let ptz = profile_zone(&facts.profile);
                        for prop in &props {
                            let keys = date_value(&facts.profile, prop)
                                .map(|v| index_keys(v.day_in(ptz.unwrap_or(chrono_tz::UTC))));
                            index_rows.push((
                                account.clone(),
                                (*prop).to_owned(),
                                pid.clone(),
                                keys,
                            ));
                        }
                    }
                    // A new or changed date whose firing already passed for
                    // an occurrence still ahead enters now.
                    for f in &mine {
                        let last = runs::cursor(conn, &cursor_name(&f.flow.flow_id))?;
                        if last == 0 {
                            continue;
                        }
                        let t = &f.trigger;
                        let mut cands = Vec::new();
                        for pid in &ids {
                            let Some(facts) = loaded.facts_for(pid, &[], now, None) else {
                                continue;
                            };
                            let Some(v) = date_value(&facts.profile, &t.property) else {
                                continue;
                            };
                            let tz = zone_for(t, profile_zone(&facts.profile));
                            let today = now.with_timezone(&tz).date_naive();
                            let since = now - Duration::days(max_lead_days(t) + 1);
                            for (occ, _) in firings(t, &v, tz, since, from_micros(last)) {
                                if occ >= today {
                                    cands.push((pid.clone(), occ));
                                }
                            }
                        }
                        fired.extend(plan_firings(conn, &f.flow, &cands, now)?);
                    }
                }
                Ok(Some((p0, p1, changes.len(), index_rows, fired)))
            })
            .await?;
        let Some((p0, p1, read, index_rows, fired)) = planned else {
            return Ok(DatePass::default());
        };
        let written = store
            .write(move |ctx| {
                if !runs::advance_cursor(ctx.conn, dates::FEED_PROFILES, p0, p1, now_us)? {
                    return Err(StoreError::Conflict("date index feed moved".into()));
                }
                for (a, prop, pid, keys) in &index_rows {
                    dates::set(ctx.conn, a, prop, pid, keys.as_ref())?;
                }
                let n = record(ctx.conn, &fired, now_us)?;
                segments::prune_profile_changes(ctx.conn)?;
                Ok(n)
            })
            .await;
        match written {
            Ok(n) => Ok(DatePass { read, runs: n }),
            Err(StoreError::Conflict(_)) => Ok(DatePass::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// One page of the first property whose index is not built.
    async fn build(
        &self,
        store: &Store,
        flows: &Arc<Vec<DateFlow>>,
    ) -> Result<DatePass, EngineError> {
        let pairs: BTreeSet<(String, String)> = flows
            .iter()
            .map(|f| (f.flow.account_id.clone(), f.trigger.property.clone()))
            .collect();
        let page = store
            .read(move |conn| {
                for (account, prop) in pairs {
                    let after = match dates::build_state(conn, &account, &prop)? {
                        Some((_, true)) => continue,
                        Some((after, false)) => after,
                        None => None,
                    };
                    let docs =
                        dates::profile_documents(conn, &account, after.as_deref(), BUILD_PAGE)?;
                    let rows: Vec<(String, Option<IndexKeys>)> = docs
                        .iter()
                        .map(|(pid, doc)| {
                            let tz = profile_zone(doc).unwrap_or(chrono_tz::UTC);
                            (
                                pid.clone(),
                                date_value(doc, &prop).map(|v| index_keys(v.day_in(tz))),
                            )
                        })
                        .collect();
                    let next = (docs.len() == BUILD_PAGE)
                        .then(|| docs.last().map(|(p, _)| p.clone()))
                        .flatten();
                    return Ok(Some((account, prop, after, next, rows)));
                }
                Ok(None)
            })
            .await?;
        let Some((account, prop, _after, next, rows)) = page else {
            return Ok(DatePass::default());
        };
        let read = rows.len().max(1);
        store
            .write(move |ctx| {
                dates::set_many(ctx.conn, &account, &prop, &rows)?;
                dates::build_progress(ctx.conn, &account, &prop, next.as_deref(), next.is_none())
            })
            .await?;
        Ok(DatePass { read, runs: 0 })
    }

    /// Fires every flow whose window is due.
    async fn fire(
        &self,
        store: &Store,
        flows: &Arc<Vec<DateFlow>>,
        now: DateTime<Utc>,
    ) -> Result<DatePass, EngineError> {
        let mut total = DatePass::default();
        for f in flows.iter() {
            let d = self.fire_one(store, f.clone(), now).await?;
            total.read += d.read;
            total.runs += d.runs;
        }
        Ok(total)
    }

    async fn fire_one(
        &self,
        store: &Store,
        f: DateFlow,
        now: DateTime<Utc>,
    ) -> Result<DatePass, EngineError> {
        let name = cursor_name(&f.flow.flow_id);
        let n2 = name.clone();
        let (acc, prop) = (f.flow.account_id.clone(), f.trigger.property.clone());
        let (last, built) = store
            .read(move |c| {
                let built = matches!(dates::build_state(c, &acc, &prop)?, Some((_, true)));
                Ok((runs::cursor(c, &n2)?, built))
            })
            .await?;
        let now_us = to_micros(now);
        if last == 0 {
            // A flow just gone live fires from now on.
            store
                .write(move |ctx| runs::advance_cursor(ctx.conn, &name, 0, now_us, now_us))
                .await?;
            return Ok(DatePass::default());
        }
        if !built || now - from_micros(last) < FIRE_STEP {
            return Ok(DatePass::default());
        }
        let from = from_micros(last);
        let planned = store
            .read(move |conn| {
                let t = &f.trigger;
                let account = &f.flow.account_id;
                let occs = candidate_occurrences(t, from, now);
                let ids = candidates(conn, account, t, &occs)?;
                let mut cands = Vec::new();
                for chunk in ids.chunks(2000) {
                    let loaded = Loaded::load(conn, chunk, &[])?;
                    for pid in chunk {
                        let Some(facts) = loaded.facts_for(pid, &[], now, None) else {
                            continue;
                        };
                        let Some(v) = date_value(&facts.profile, &t.property) else {
                            continue;
                        };
                        let tz = zone_for(t, profile_zone(&facts.profile));
                        for (occ, _) in firings(t, &v, tz, from, now) {
                            cands.push((pid.clone(), occ));
                        }
                    }
                }
                Ok((ids.len(), plan_firings(conn, &f.flow, &cands, now)?))
            })
            .await?;
        let (read, fired) = planned;
        let written = store
            .write(move |ctx| {
                if !runs::advance_cursor(ctx.conn, &name, last, now_us, now_us)? {
                    return Err(StoreError::Conflict("date window moved".into()));
                }
                record(ctx.conn, &fired, now_us)
            })
            .await;
        match written {
            Ok(n) => Ok(DatePass {
                read: read.max(1),
                runs: n,
            }),
            Err(StoreError::Conflict(_)) => Ok(DatePass::default()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Profiles whose indexed date can have an occurrence among `occs` (a
/// day either side, for dates with a time read in another zone).
fn candidates(
    conn: &mut dyn Conn,
    account: &str,
    t: &DateTrigger,
    occs: &[NaiveDate],
) -> Result<Vec<String>, StoreError> {
    let mut days: BTreeSet<NaiveDate> = BTreeSet::new();
    for o in occs {
        days.insert(*o);
        days.extend(o.pred_opt());
        days.extend(o.succ_opt());
    }
    let mut ids: BTreeSet<String> = BTreeSet::new();
    if t.recurrence == Recurrence::Never {
        let dates: Vec<String> = days
            .iter()
            .map(|d| d.format("%Y-%m-%d").to_string())
            .collect();
        ids.extend(dates::by_dates(conn, account, &t.property, &dates)?);
    } else {
        let mut keys: BTreeSet<i64> = BTreeSet::new();
        for d in &days {
            keys.extend(keys_occurring_on(t.recurrence, *d));
        }
        let column = match t.recurrence {
            Recurrence::Annually => KeyColumn::MonthDay,
            Recurrence::Monthly => KeyColumn::DayOfMonth,
            _ => KeyColumn::Weekday,
        };
        let keys: Vec<i64> = keys.into_iter().collect();
        for chunk in keys.chunks(64) {
            ids.extend(dates::by_keys(conn, account, &t.property, column, chunk)?);
        }
    }
    Ok(ids.into_iter().collect())
}

/// The runs that the firings start, with the key each is recorded under.
fn plan_firings(
    conn: &mut dyn Conn,
    flow: &FlowOnTrigger,
    cands: &[(String, NaiveDate)],
    now: DateTime<Utc>,
) -> Result<Vec<Firing>, StoreError> {
    let mut occ_of: HashMap<&str, NaiveDate> = HashMap::new();
    for (pid, occ) in cands {
        occ_of.insert(pid.as_str(), *occ);
    }
    let entries: Vec<(String, Option<Value>)> =
        occ_of.keys().map(|p| ((*p).to_owned(), None)).collect();
    let planned = enrol::plan(conn, flow, &entries, now, Past::ReentryRules)?;
    Ok(planned
        .into_iter()
        .filter_map(|run| {
            let occ = occ_of.get(run.profile_id.as_str())?;
            Some((
                flow.flow_id.clone(),
                run.profile_id.clone(),
                occ.format("%Y-%m-%d").to_string(),
                run,
            ))
        })
        .collect())
}

/// Records firings; a run starts only for a firing not recorded before.
fn record(conn: &mut dyn Conn, fired: &[Firing], now_us: i64) -> Result<usize, StoreError> {
    let mut n = 0;
    for (flow_id, pid, occ, run) in fired {
        if dates::record_firing(conn, flow_id, pid, occ, now_us)? {
            runs::insert_runs(conn, std::slice::from_ref(run))?;
            n += 1;
        }
    }
    Ok(n)
}
