//! Keeps segment membership current. Three kinds of work, one batch each per
//! pass:
//! - **incremental**: follows the events feed and the `profile_changes`
//!   feed; each item re-evaluates only the segments it can affect (an
//!   event: segments counting its metric; a list join or leave: segments
//!   naming the list; a profile edit: segments reading the profile; a new
//!   profile: all), plus the segments that depend on those;
//! - **build**: a new or edited definition is evaluated over every profile
//!   of the account, a page at a time, silently (no flow is triggered);
//! - **sweep**: segments whose conditions slide with the clock are
//!   re-evaluated for the profiles with events that crossed a window edge
//!   since the last sweep (and, for profile-date conditions, over every
//!   profile once a day).
//!
//! Each batch's membership changes and the feeds' new positions are written
//! in one transaction, positions moved by compare-and-set as in dispatch.

use crate::facts::Loaded;
use crate::EngineError;
use chrono::{DateTime, Duration, Utc};
use outflow_core::clock::{from_micros, to_micros};
use outflow_core::flow::MetricQuery;
use outflow_core::segment::{
    evaluation_order, window_crossings, with_dependents, SegmentDefinition,
};
use outflow_store::db::{Conn, Dialect};
use outflow_store::segments::{self, Change, Segment};
use outflow_store::{generations, runs, Store, StoreError};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Profiles per page of a full evaluation.
const BUILD_PAGE: usize = 500;
/// How often sliding windows are re-evaluated (clock time).
pub const SWEEP_EVERY: Duration = Duration::hours(1);
/// How long a hole in a PostgreSQL feed is waited for (see dispatch).
const GAP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// One live segment with its parsed definition.
#[derive(Debug)]
pub struct LiveSegment {
    pub row: Segment,
    pub def: SegmentDefinition,
    pub queries: Vec<MetricQuery>,
}

impl LiveSegment {
    /// Whether incremental results for this profile may be written: the
    /// build is done, or has already passed the profile (it would otherwise
    /// evaluate the profile itself, later).
    fn settled_for(&self, profile_id: &str) -> bool {
        self.row.built_version >= self.row.version
            || self
                .row
                .build_after
                .as_deref()
                .is_some_and(|a| profile_id <= a)
    }
}

/// The segments of one account, indexed by what can change them.
#[derive(Debug, Default)]
pub struct AccountSegments {
    pub segments: HashMap<String, Arc<LiveSegment>>,
    /// Evaluation order (dependencies first).
    pub order: Vec<String>,
    pub deps: Vec<(String, BTreeSet<String>)>,
    pub by_metric: HashMap<String, BTreeSet<String>>,
    pub by_group: HashMap<String, BTreeSet<String>>,
    pub reads_profile: BTreeSet<String>,
}

#[derive(Debug, Default)]
pub struct SegmentIndex {
    pub accounts: HashMap<String, AccountSegments>,
    /// The segments' change counter when the index was loaded.
    generation: Option<i64>,
}

impl SegmentIndex {
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    fn load(conn: &mut dyn Conn) -> Result<SegmentIndex, StoreError> {
        let mut index = SegmentIndex {
            generation: Some(generations::current(conn, generations::SEGMENTS)?),
            ..SegmentIndex::default()
        };
        for row in segments::all_active(conn)? {
            let def = match SegmentDefinition::parse(&row.definition, "", Some(&row.id)) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(segment = %row.id, error = %e, "stored segment definition does not parse; skipped");
                    continue;
                }
            };
            let acc = index.accounts.entry(row.account_id.clone()).or_default();
            for m in &def.deps.metrics {
                acc.by_metric
                    .entry(m.clone())
                    .or_default()
                    .insert(row.id.clone());
            }
            for g in &def.deps.groups {
                acc.by_group
                    .entry(g.clone())
                    .or_default()
                    .insert(row.id.clone());
            }
            if def.deps.profile {
                acc.reads_profile.insert(row.id.clone());
            }
            acc.deps.push((row.id.clone(), def.deps.groups.clone()));
            let queries = def.metric_queries();
            acc.segments
                .insert(row.id.clone(), Arc::new(LiveSegment { row, def, queries }));
        }
        for acc in index.accounts.values_mut() {
            acc.order = evaluation_order(&acc.deps);
        }
        Ok(index)
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Evaluated {
    /// Feed items read (events and profile changes).
    pub items: usize,
    /// Profiles evaluated by builds and sweeps.
    pub scanned: usize,
    /// Joins and leaves recorded.
    pub changes: usize,
}

impl Evaluated {
    pub fn is_idle(&self) -> bool {
        self.items == 0 && self.scanned == 0 && self.changes == 0
    }

    pub fn add(&mut self, o: Evaluated) {
        self.items += o.items;
        self.scanned += o.scanned;
        self.changes += o.changes;
    }
}

pub struct SegmentEvaluator {
    index: Mutex<Arc<SegmentIndex>>,
    gaps: Mutex<HashMap<(&'static str, i64), Instant>>,
    batch: usize,
}

impl SegmentEvaluator {
    pub fn new(batch: usize) -> Self {
        Self {
            index: Mutex::new(Arc::new(SegmentIndex::default())),
            gaps: Mutex::new(HashMap::new()),
            batch,
        }
    }

    pub fn index(&self) -> Arc<SegmentIndex> {
        self.index
            .lock()
            .map(|i| i.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Reloads the segments when the table changed.
    pub async fn refresh(&self, store: &Store) -> Result<(), EngineError> {
        let known = self.index().generation;
        let loaded = store
            .read(move |conn| {
                if Some(generations::current(conn, generations::SEGMENTS)?) == known {
                    return Ok(None);
                }
                SegmentIndex::load(conn).map(Some)
            })
            .await?;
        if let Some(index) = loaded {
            if let Ok(mut slot) = self.index.lock() {
                *slot = Arc::new(index);
            }
        }
        Ok(())
    }

    /// One batch of each kind of work.
    pub async fn pass(&self, store: &Store, now: DateTime<Utc>) -> Result<Evaluated, EngineError> {
        self.refresh(store).await?;
        let mut done = self.incremental(store, now).await?;
        done.add(self.build(store, now).await?);
        done.add(self.sweep(store, now).await?);
        Ok(done)
    }

    async fn incremental(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<Evaluated, EngineError> {
        let index = self.index();
        let batch = self.batch;
        let now_us = to_micros(now);
        if index.is_empty() {
            // Nothing to keep current: skip to the ends without reading rows.
            let (e0, p0, eh, ph) = store
                .read(|c| {
                    Ok((
                        runs::cursor(c, segments::FEED_EVENTS)?,
                        runs::cursor(c, segments::FEED_PROFILES)?,
                        segments::head(c, "events")?,
                        segments::head(c, "profile_changes")?,
                    ))
                })
                .await?;
            if eh > e0 || ph > p0 {
                store
                    .write(move |ctx| {
                        runs::advance_cursor(
                            ctx.conn,
                            segments::FEED_EVENTS,
                            e0,
                            eh.max(e0),
                            now_us,
                        )?;
                        runs::advance_cursor(
                            ctx.conn,
                            segments::FEED_PROFILES,
                            p0,
                            ph.max(p0),
                            now_us,
                        )?;
                        segments::prune_profile_changes(ctx.conn)
                    })
                    .await?;
            }
            return Ok(Evaluated::default());
        }
        let (e0, p0, events, changes) = store
            .read(move |c| {
                let e0 = runs::cursor(c, segments::FEED_EVENTS)?;
                let p0 = runs::cursor(c, segments::FEED_PROFILES)?;
                Ok((
                    e0,
                    p0,
                    segments::events_after(c, e0, batch)?,
                    segments::profile_changes_after(c, p0, batch)?,
                ))
            })
            .await?;
        if events.is_empty() && changes.is_empty() {
            return Ok(Evaluated::default());
        }
        let dialect = store.dialect();
        let ev_seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        let pc_seqs: Vec<i64> = changes.iter().map(|e| e.seq).collect();
        let ev_keep = self.cut_at_gap(segments::FEED_EVENTS, dialect, e0, &ev_seqs);
        let pc_keep = self.cut_at_gap(segments::FEED_PROFILES, dialect, p0, &pc_seqs);
        let events = &events[..ev_keep];
        let changes = &changes[..pc_keep];
        let e1 = events.last().map_or(e0, |e| e.seq);
        let p1 = changes.last().map_or(p0, |c| c.seq);
        let items = events.len() + changes.len();
        // account → profile → segments to re-evaluate
        let mut targets: HashMap<String, HashMap<String, BTreeSet<String>>> = HashMap::new();
        for e in events {
            let Some(acc) = index.accounts.get(&e.account_id) else {
                continue;
            };
            if let Some(segs) = acc.by_metric.get(&e.metric_id) {
                targets
                    .entry(e.account_id.clone())
                    .or_default()
                    .entry(e.profile_id.clone())
                    .or_default()
                    .extend(segs.iter().cloned());
            }
        }
        for c in changes {
            let Some(acc) = index.accounts.get(&c.account_id) else {
                continue;
            };
            let segs: Vec<String> = match (&c.list_id, c.created) {
                (_, true) => acc.segments.keys().cloned().collect(),
                (Some(l), _) => acc.by_group.get(l).into_iter().flatten().cloned().collect(),
                (None, false) => acc.reads_profile.iter().cloned().collect(),
            };
            if !segs.is_empty() {
                targets
                    .entry(c.account_id.clone())
                    .or_default()
                    .entry(c.profile_id.clone())
                    .or_default()
                    .extend(segs);
            }
        }
        let idx = index.clone();
        let found = store
            .read(move |conn| {
                let mut out = Vec::new();
                for (account, per_profile) in &targets {
                    if let Some(acc) = idx.accounts.get(account) {
                        out.extend(evaluate(
                            conn,
                            account,
                            acc,
                            per_profile,
                            now,
                            Mode::Incremental,
                        )?);
                    }
                }
                Ok(out)
            })
            .await?;
        let moved = store
            .write(move |ctx| {
                if !runs::advance_cursor(ctx.conn, segments::FEED_EVENTS, e0, e1, now_us)?
                    || !runs::advance_cursor(ctx.conn, segments::FEED_PROFILES, p0, p1, now_us)?
                {
                    return Err(StoreError::Conflict("segment feeds moved under us".into()));
                }
                let n = segments::apply(ctx.conn, &found, now_us)?;
                segments::prune_profile_changes(ctx.conn)?;
                Ok(n)
            })
            .await;
        match moved {
            Ok(n) => Ok(Evaluated {
                items,
                scanned: 0,
                changes: n,
            }),
            Err(StoreError::Conflict(_)) => Ok(Evaluated::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// One page of the first segment whose membership is being built.
    async fn build(&self, store: &Store, now: DateTime<Utc>) -> Result<Evaluated, EngineError> {
        let index = self.index();
        let Some((account, seg)) = index.accounts.iter().find_map(|(a, acc)| {
            acc.order
                .iter()
                .filter_map(|id| acc.segments.get(id))
                .find(|s| s.row.built_version < s.row.version)
                .map(|s| (a.clone(), s.clone()))
        }) else {
            return Ok(Evaluated::default());
        };
        let idx = index.clone();
        let (id, version, after) = (
            seg.row.id.clone(),
            seg.row.version,
            seg.row.build_after.clone(),
        );
        let mode = if seg.row.build_organic {
            Mode::Organic
        } else {
            Mode::Silent
        };
        let (page, found) = store
            .read(move |conn| {
                let page = segments::profile_page(conn, &account, after.as_deref(), BUILD_PAGE)?;
                let Some(acc) = idx.accounts.get(&account) else {
                    return Ok((page, Vec::new()));
                };
                let targets: HashMap<String, BTreeSet<String>> = page
                    .iter()
                    .map(|p| (p.clone(), BTreeSet::from([seg.row.id.clone()])))
                    .collect();
                let found = evaluate(conn, &account, acc, &targets, now, mode)?;
                Ok((page, found))
            })
            .await?;
        let last = (page.len() == BUILD_PAGE)
            .then(|| page.last().cloned())
            .flatten();
        let now_us = to_micros(now);
        let scanned = page.len();
        let written = store
            .write(move |ctx| {
                if !segments::build_progress(ctx.conn, &id, version, last.as_deref())? {
                    return Err(StoreError::Conflict(
                        "the segment changed while building".into(),
                    ));
                }
                segments::apply(ctx.conn, &found, now_us)
            })
            .await;
        // The index caches build positions: reload it next pass.
        if let Ok(mut slot) = self.index.lock() {
            *slot = Arc::new(SegmentIndex::default());
        }
        match written {
            Ok(n) => Ok(Evaluated {
                items: 0,
                scanned: scanned.max(1),
                changes: n,
            }),
            Err(StoreError::Conflict(_)) => Ok(Evaluated::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Re-evaluates one time-dependent segment whose sweep is due.
    async fn sweep(&self, store: &Store, now: DateTime<Utc>) -> Result<Evaluated, EngineError> {
        let index = self.index();
        let now_us = to_micros(now);
        let Some((account, seg)) = index.accounts.iter().find_map(|(a, acc)| {
            acc.order
                .iter()
                .filter_map(|id| acc.segments.get(id))
                .find(|s| {
                    s.def.deps.depends_on_time()
                        && s.row.built_version >= s.row.version
                        && now - from_micros(s.row.swept) >= SWEEP_EVERY
                })
                .map(|s| (a.clone(), s.clone()))
        }) else {
            return Ok(Evaluated::default());
        };
        let (from, to) = (from_micros(seg.row.swept), now);
        let daily = seg.def.deps.relative_dates && from.date_naive() != to.date_naive();
        let idx = index.clone();
        let s2 = seg.clone();
        let (candidates, found) = store
            .read(move |conn| {
                let mut cands: BTreeSet<String> = BTreeSet::new();
                for q in &s2.def.deps.sliding_metrics {
                    for (a, b) in window_crossings(q, from, to) {
                        cands.extend(segments::profiles_with_events_between(
                            conn,
                            &account,
                            &q.metric_id,
                            to_micros(a),
                            to_micros(b),
                        )?);
                    }
                }
                let Some(acc) = idx.accounts.get(&account) else {
                    return Ok((0, Vec::new()));
                };
                let targets: HashMap<String, BTreeSet<String>> = cands
                    .iter()
                    .map(|p| (p.clone(), BTreeSet::from([s2.row.id.clone()])))
                    .collect();
                Ok((
                    cands.len(),
                    evaluate(conn, &account, acc, &targets, to, Mode::Organic)?,
                ))
            })
            .await?;
        let (id, swept, version) = (seg.row.id.clone(), seg.row.swept, seg.row.version);
        let written = store
            .write(move |ctx| {
                if !segments::set_swept(ctx.conn, &id, swept, now_us)? {
                    return Err(StoreError::Conflict("swept by another worker".into()));
                }
                if daily {
                    segments::start_organic_rebuild(ctx.conn, &id, version)?;
                }
                segments::apply(ctx.conn, &found, now_us)
            })
            .await;
        if let Ok(mut slot) = self.index.lock() {
            *slot = Arc::new(SegmentIndex::default());
        }
        match written {
            Ok(n) => Ok(Evaluated {
                items: 0,
                scanned: candidates.max(1),
                changes: n,
            }),
            Err(StoreError::Conflict(_)) => Ok(Evaluated::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// How many of `seqs` may be processed: on PostgreSQL, stop before a
    /// young hole (a transaction not yet committed).
    fn cut_at_gap(&self, feed: &'static str, dialect: Dialect, after: i64, seqs: &[i64]) -> usize {
        if dialect != Dialect::Postgres {
            return seqs.len();
        }
        let Ok(mut gaps) = self.gaps.lock() else {
            return seqs.len();
        };
        let mut expected = after + 1;
        let mut cut = seqs.len();
        for (i, s) in seqs.iter().enumerate() {
            if *s != expected {
                let first = *gaps.entry((feed, expected)).or_insert_with(Instant::now);
                if first.elapsed() < GAP_GRACE {
                    cut = i;
                    break;
                }
            }
            expected = s + 1;
        }
        gaps.retain(|(f, seq), _| *f != feed || *seq > after);
        cut
    }
}

/// Where an evaluation comes from, deciding which results are written and
/// whether joins may trigger flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A data change: results only for settled segments; joins trigger.
    Incremental,
    /// Time passing: joins trigger.
    Organic,
    /// A new or edited definition: joins never trigger.
    Silent,
}

/// Evaluates, for each profile, its target segments and every segment that
/// depends on them (in dependency order, so a segment of segments sees the
/// fresh result), and returns the changes against current membership.
fn evaluate(
    conn: &mut dyn Conn,
    account: &str,
    acc: &AccountSegments,
    targets: &HashMap<String, BTreeSet<String>>,
    now: DateTime<Utc>,
    mode: Mode,
) -> Result<Vec<Change>, StoreError> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let profiles: Vec<String> = targets.keys().cloned().collect();
    let mut wanted_per_profile: HashMap<&str, Arc<BTreeSet<String>>> = HashMap::new();
    let mut involved: BTreeSet<String> = BTreeSet::new();
    // Profiles touched the same way share the work: a batch of events has
    // only a handful of distinct target sets.
    let mut closure: HashMap<&BTreeSet<String>, Arc<BTreeSet<String>>> = HashMap::new();
    for (p, segs) in targets {
        let w = closure
            .entry(segs)
            .or_insert_with(|| Arc::new(with_dependents(segs, &acc.deps)))
            .clone();
        involved.extend(w.iter().cloned());
        wanted_per_profile.insert(p.as_str(), w);
    }
    let mut queries: Vec<MetricQuery> = Vec::new();
    for id in &involved {
        if let Some(s) = acc.segments.get(id) {
            for q in &s.queries {
                if !queries.contains(q) {
                    queries.push(q.clone());
                }
            }
        }
    }
    // List memberships are read only if a segment involved names a group
    // that is not one of the account's segments.
    let lists = involved.iter().any(|id| {
        acc.segments.get(id).is_some_and(|s| {
            s.def
                .deps
                .groups
                .iter()
                .any(|g| !acc.segments.contains_key(g))
        })
    });
    // Only the aggregates each profile's segments read, and only the events
    // of those metrics.
    type Needs = (Arc<Vec<MetricQuery>>, Vec<String>);
    let mut needs_of: HashMap<*const BTreeSet<String>, Needs> = HashMap::new();
    let mut mine_of: HashMap<&str, Arc<Vec<MetricQuery>>> = HashMap::new();
    let mut by_metric: HashMap<String, Vec<String>> = HashMap::new();
    for p in &profiles {
        let Some(wanted) = wanted_per_profile.get(p.as_str()) else {
            continue;
        };
        let (mine, metrics) = needs_of
            .entry(Arc::as_ptr(wanted))
            .or_insert_with(|| {
                let mine: Vec<MetricQuery> = queries
                    .iter()
                    .filter(|q| {
                        wanted
                            .iter()
                            .filter_map(|id| acc.segments.get(id))
                            .any(|s| s.queries.contains(q))
                    })
                    .cloned()
                    .collect();
                let mut metrics: Vec<String> = mine.iter().map(|q| q.metric_id.clone()).collect();
                metrics.sort();
                metrics.dedup();
                (Arc::new(mine), metrics)
            })
            .clone();
        for m in metrics {
            by_metric.entry(m).or_default().push(p.clone());
        }
        mine_of.insert(p.as_str(), mine);
    }
    let mut loaded = Loaded::load_with(conn, &profiles, &[], lists, true)?;
    for (m, ids) in &by_metric {
        loaded.add_events(conn, m, ids)?;
    }
    let mut out = Vec::new();
    for p in &profiles {
        let (Some(wanted), Some(mine)) =
            (wanted_per_profile.get(p.as_str()), mine_of.get(p.as_str()))
        else {
            continue;
        };
        let Some(mut facts) = loaded
            .facts_for(p, mine, now, None)
            .map(std::borrow::Cow::into_owned)
        else {
            continue;
        };
        for id in acc.order.iter().filter(|id| wanted.contains(*id)) {
            let Some(seg) = acc.segments.get(id) else {
                continue;
            };
            if mode == Mode::Incremental && !seg.settled_for(p) {
                continue;
            }
            let is_in = seg.def.contains(&facts, now);
            let was_in = facts.memberships.contains(id);
            if is_in == was_in {
                continue;
            }
            if is_in {
                facts.memberships.insert(id.clone());
            } else {
                facts.memberships.remove(id);
            }
            out.push(Change {
                account_id: account.to_owned(),
                segment_id: id.clone(),
                profile_id: p.clone(),
                entered: is_in,
                organic: mode != Mode::Silent,
            });
        }
    }
    Ok(out)
}
