//! Trigger dispatch: follows the store's change feeds (events, list joins)
//! in batches, matches each item against an in-memory index of listening
//! flows, and creates runs. A batch's runs and the feed's new position are
//! written in one transaction, and the position is moved by compare-and-set,
//! so two dispatchers (two processes on one PostgreSQL) never both create
//! runs for the same items.
//!
//! Items recorded before a flow went live (or manual) never start it: each
//! listening flow carries `flows.went_live_seq`, the head of its trigger's
//! feed when it went live, and items at or below it are passed over for
//! that flow even when the cursor was still behind them (a backlog).
//!
//! New kinds of trigger (segment, date, price drop) plug in as another
//! [`TriggerSource`].

use crate::executor::Compiled;
use crate::facts::Loaded;
use crate::EngineError;
use chrono::{DateTime, Utc};
use outflow_core::clock::{from_micros, to_micros};
use outflow_core::flow::{
    entry, may_enter, EntryDecision, FlowDefinition, FlowStatus, MetricQuery, TriggerContext,
};
use outflow_store::db::{Conn, Dialect};
use outflow_store::runs::{self, NewRun};
use outflow_store::{flows, generations, new_ulid, params, Store, StoreError, WriteCtx};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One item of a feed that may start runs.
#[derive(Debug, Clone)]
pub struct Occurrence {
    pub seq: i64,
    pub account_id: String,
    /// The flows' `trigger_type` this item can start (`metric`, `list`, …).
    pub trigger_type: &'static str,
    /// What the trigger listens to: the metric id, the list id, …
    pub trigger_ref: String,
    pub profile_id: String,
    pub event_id: Option<String>,
    pub event: Option<Value>,
    /// Backfilled events and historical imports never trigger flows.
    pub suppressed: bool,
}

/// A feed of items that start runs, read in `seq` order.
pub trait TriggerSource: Send + Sync {
    /// The cursor's name in `dispatch_cursors`.
    fn feed(&self) -> &'static str;
    /// The flows' `trigger_type` this feed can start.
    fn trigger_type(&self) -> &'static str;
    /// The newest `seq` in the feed (0 when empty).
    fn head(&self, conn: &mut dyn Conn) -> Result<i64, StoreError>;
    fn fetch(
        &self,
        conn: &mut dyn Conn,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Occurrence>, StoreError>;
    /// Called in the transaction that moves the cursor to `upto`: a feed
    /// that is only a queue drops what it no longer needs. Events and list
    /// memberships are data and stay.
    fn prune(&self, _conn: &mut dyn Conn, _upto: i64) -> Result<(), StoreError> {
        Ok(())
    }
}

/// `metric` triggers: every new event of the metric.
pub struct EventSource;

impl TriggerSource for EventSource {
    fn feed(&self) -> &'static str {
        runs::FEED_EVENTS
    }

    fn trigger_type(&self) -> &'static str {
        "metric"
    }

    fn head(&self, conn: &mut dyn Conn) -> Result<i64, StoreError> {
        max_seq(conn, "SELECT COALESCE(MAX(seq), 0) FROM events")
    }

    fn fetch(
        &self,
        conn: &mut dyn Conn,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Occurrence>, StoreError> {
        let sql = format!(
            "SELECT seq, account_id, metric_id, profile_id, id, properties, backfill FROM events \
             WHERE seq > $1 ORDER BY seq LIMIT {limit}"
        );
        conn.query(&sql, params![after])?
            .iter()
            .map(|r| {
                Ok(Occurrence {
                    seq: r.int(0)?,
                    account_id: r.text(1)?,
                    trigger_type: "metric",
                    trigger_ref: r.text(2)?,
                    profile_id: r.text(3)?,
                    event_id: Some(r.text(4)?),
                    event: Some(r.json(5)?),
                    suppressed: r.bool(6)?,
                })
            })
            .collect()
    }
}

fn max_seq(conn: &mut dyn Conn, sql: &str) -> Result<i64, StoreError> {
    Ok(conn
        .query_opt(sql, params![])?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0))
}

/// `list` triggers: a profile newly joins a list by any route.
pub struct ListJoinSource;

impl TriggerSource for ListJoinSource {
    fn feed(&self) -> &'static str {
        runs::FEED_LIST_MEMBERS
    }

    fn trigger_type(&self) -> &'static str {
        "list"
    }

    fn head(&self, conn: &mut dyn Conn) -> Result<i64, StoreError> {
        max_seq(conn, "SELECT COALESCE(MAX(seq), 0) FROM list_members")
    }

    fn fetch(
        &self,
        conn: &mut dyn Conn,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Occurrence>, StoreError> {
        let sql = format!(
            "SELECT seq, account_id, list_id, profile_id, historical_import FROM list_members \
             WHERE seq > $1 ORDER BY seq LIMIT {limit}"
        );
        conn.query(&sql, params![after])?
            .iter()
            .map(|r| {
                Ok(Occurrence {
                    seq: r.int(0)?,
                    account_id: r.text(1)?,
                    trigger_type: "list",
                    trigger_ref: r.text(2)?,
                    profile_id: r.text(3)?,
                    event_id: None,
                    event: None,
                    suppressed: r.bool(4)?,
                })
            })
            .collect()
    }
}

/// A flow new entrants can join, with the definition of its current version.
#[derive(Debug)]
pub struct Listening {
    pub flow_id: String,
    pub account_id: String,
    pub status: FlowStatus,
    pub version: i64,
    /// Items at or below this `seq` of the trigger's feed were recorded
    /// before the flow went live (or manual): they never start it, however
    /// far behind the feed's cursor was when it went live.
    pub went_live_seq: i64,
    pub def: Arc<FlowDefinition>,
    pub queries: Vec<MetricQuery>,
    /// The version compiled for the executor (templates compiled once per
    /// index build), so new runs are advanced without reading the flow.
    pub compiled: Arc<Compiled>,
}

pub fn flow_status(s: &str) -> FlowStatus {
    match s {
        "live" => FlowStatus::Live,
        "manual" => FlowStatus::Manual,
        _ => FlowStatus::Draft,
    }
}

type TriggerKey = (String, String, String);

/// Which flows listen to what, kept in memory so matching costs no query.
#[derive(Debug, Default)]
pub struct FlowIndex {
    by_trigger: HashMap<TriggerKey, Vec<Arc<Listening>>>,
    /// The flows' change counter when the index was built.
    generation: Option<i64>,
    /// Every trigger type some flow listens to (derivable from
    /// `by_trigger`, kept so `listens_to` is not a scan per feed and pass).
    trigger_types: HashSet<String>,
}

impl FlowIndex {
    /// Whether any flow listens to triggers of this type: when none does,
    /// dispatch skips the feed without reading its rows.
    pub fn listens_to(&self, trigger_type: &str) -> bool {
        self.trigger_types.contains(trigger_type)
    }

    fn listeners(&self, o: &Occurrence) -> &[Arc<Listening>] {
        self.by_trigger
            .get(&(
                o.account_id.clone(),
                o.trigger_type.to_owned(),
                o.trigger_ref.clone(),
            ))
            .map_or(&[], Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.by_trigger.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_trigger.is_empty()
    }
}

/// A new index if the flows table changed since `known` was built.
fn rebuilt_index(
    conn: &mut dyn Conn,
    known: &FlowIndex,
) -> Result<Option<Arc<FlowIndex>>, StoreError> {
    let generation = generations::current(conn, generations::FLOWS)?;
    if Some(generation) == known.generation {
        return Ok(None);
    }
    Ok(Some(Arc::new(build_index(conn, known, generation)?)))
}

/// Reads every listening flow with its definition in one query. A flow
/// whose definition equals what `known` compiled (an action's status can
/// change a stored version, so the version alone is not enough) is reused
/// rather than compiled again: editing one flow among thousands compiles one.
/// `generation` is the flows' counter read in the same snapshot.
fn build_index(
    conn: &mut dyn Conn,
    known: &FlowIndex,
    generation: i64,
) -> Result<FlowIndex, StoreError> {
    let compiled_before: HashMap<&str, &Arc<Compiled>> = known
        .by_trigger
        .values()
        .flatten()
        .map(|l| (l.flow_id.as_str(), &l.compiled))
        .collect();
    let mut index = FlowIndex {
        generation: Some(generation),
        ..FlowIndex::default()
    };
    for (l, trigger_type, trigger_ref, json) in flows::all_listening_defined(conn)? {
        let Some(trigger_ref) = trigger_ref else {
            continue;
        };
        let Some(json) = json else {
            tracing::warn!(flow = %l.flow_id, version = l.version, "flow version missing; not listening");
            continue;
        };
        let compiled = match compiled_before.get(l.flow_id.as_str()) {
            Some(c) if c.def.raw() == &json => Arc::clone(c),
            _ => match FlowDefinition::parse(json, "") {
                Ok(def) => Arc::new(Compiled::new(Arc::new(def), 0)),
                Err(e) => {
                    tracing::warn!(flow = %l.flow_id, errors = ?e, "stored flow definition does not parse; not listening");
                    continue;
                }
            },
        };
        index.trigger_types.insert(trigger_type.clone());
        index
            .by_trigger
            .entry((l.account_id.clone(), trigger_type, trigger_ref))
            .or_default()
            .push(Arc::new(Listening {
                flow_id: l.flow_id,
                account_id: l.account_id,
                status: flow_status(&l.status),
                version: l.version,
                went_live_seq: l.went_live_seq,
                def: compiled.def.clone(),
                queries: compiled.queries.clone(),
                compiled,
            }));
    }
    Ok(index)
}

/// How long a hole in a PostgreSQL feed is waited for: sequence numbers are
/// taken before commit, so a lower `seq` can become visible after a higher
/// one. Holes also come from rolled-back inserts; those never fill.
const GAP_GRACE: Duration = Duration::from_secs(2);

pub struct Dispatcher {
    sources: Vec<Arc<dyn TriggerSource>>,
    index: Mutex<Arc<FlowIndex>>,
    gaps: Arc<Mutex<HashMap<(&'static str, i64), Instant>>>,
    batch: usize,
    /// New runs are inserted leased to this owner (for this long) and kept
    /// for [`Dispatcher::take_ready`], so the executor advances them
    /// without claiming.
    handoff: Option<(String, chrono::Duration)>,
    ready: Mutex<Vec<runs::RunRow>>,
}

/// What one dispatch pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dispatched {
    pub items: usize,
    pub runs: usize,
}

struct Plan {
    from: i64,
    to: i64,
    items: usize,
    runs: Vec<NewRun>,
    /// Each run's trigger event as parsed, beside `runs` (whose `event` is
    /// the text to store).
    run_events: Vec<Option<Value>>,
    fresh: Fresh,
}

/// What planning read that advancing the new runs needs too: their flows
/// (by id, as listening when planned), the profiles' facts, and the
/// accounts' organization (webhook context).
#[derive(Debug, Default)]
pub struct Fresh {
    pub flows: HashMap<String, Arc<Listening>>,
    pub facts: Loaded,
    pub orgs: HashMap<String, Value>,
}

/// What a batch whose write is still in flight changes for the next plan:
/// where its feeds' cursors will be, and the runs it creates (flow,
/// profile → still active after its first steps), so the next batch can be
/// planned while it commits without giving a profile a second run.
#[derive(Debug, Default, Clone)]
pub struct Carry {
    cursors: HashMap<&'static str, i64>,
    entered: HashMap<(String, String), bool>,
}

impl Carry {
    /// Adds a planned batch; `active` says which of its runs are still
    /// active after the steps about to be written with it.
    pub fn add(&mut self, planned: &Planned, active: &HashMap<String, bool>) {
        self.cursors.insert(planned.source.feed(), planned.plan.to);
        for r in &planned.plan.runs {
            let still = active.get(&r.id).copied().unwrap_or(true);
            self.entered
                .insert((r.flow_id.clone(), r.profile_id.clone()), still);
        }
    }
}

/// What [`Dispatcher::plan_events_in`] found.
pub enum AtIngest {
    /// Nothing to dispatch (or no flow listens to events).
    Idle,
    /// More unplanned events than the caller takes on: the trigger loop's.
    Backlog,
    Planned(Box<Planned>),
}

/// One feed batch planned by [`Dispatcher::plan`], written by
/// [`Planned::commit`].
pub struct Planned {
    source: Arc<dyn TriggerSource>,
    plan: Plan,
    lease: Option<(String, i64)>,
    now_us: i64,
}

impl Planned {
    pub fn dispatched(&self) -> Dispatched {
        Dispatched {
            items: self.plan.items,
            runs: self.plan.runs.len(),
        }
    }

    /// The runs as they will be stored, leased to the handoff owner (empty
    /// without a handoff).
    pub fn leased_rows(&self) -> Vec<runs::RunRow> {
        match &self.lease {
            Some((o, _)) => self
                .plan
                .runs
                .iter()
                .zip(&self.plan.run_events)
                .map(|(r, e)| r.leased_row_with(o, e.clone()))
                .collect(),
            None => Vec::new(),
        }
    }

    /// What planning read, for [`crate::executor::Executor::prepare_fresh`].
    pub fn fresh(&self) -> &Fresh {
        &self.plan.fresh
    }

    /// Moves the feed's cursor (compare-and-set: `Conflict` when another
    /// dispatcher moved it, so the caller's whole transaction is dropped)
    /// and inserts the runs; returns them as leased rows.
    pub fn commit(self, ctx: &mut WriteCtx<'_>) -> Result<Vec<runs::RunRow>, StoreError> {
        self.move_cursor(ctx)?;
        runs::insert_runs_leased(ctx.conn, &self.plan.runs, self.lease())?;
        Ok(self.leased_rows())
    }

    /// [`Planned::commit`] with the new runs' first steps: the cursor
    /// move, then each run inserted already advanced, its steps and
    /// effects (`prepared` from
    /// [`crate::executor::Executor::prepare_fresh`] on this batch).
    pub fn commit_advanced(
        &self,
        ctx: &mut WriteCtx<'_>,
        prepared: crate::executor::Prepared,
    ) -> Result<crate::executor::Written, StoreError> {
        self.move_cursor(ctx)?;
        prepared.write_new(ctx, &self.plan.runs, self.lease())
    }

    fn lease(&self) -> Option<(&str, i64)> {
        self.lease.as_ref().map(|(o, u)| (o.as_str(), *u))
    }

    fn move_cursor(&self, ctx: &mut WriteCtx<'_>) -> Result<(), StoreError> {
        let feed = self.source.feed();
        if !runs::advance_cursor(ctx.conn, feed, self.plan.from, self.plan.to, self.now_us)? {
            return Err(StoreError::Conflict(format!(
                "the {feed} cursor moved under us"
            )));
        }
        self.source.prune(ctx.conn, self.plan.to)
    }
}

impl Dispatcher {
    pub fn new(batch: usize) -> Self {
        Self {
            sources: vec![Arc::new(EventSource), Arc::new(ListJoinSource)],
            index: Mutex::new(Arc::new(FlowIndex::default())),
            gaps: Arc::new(Mutex::new(HashMap::new())),
            batch,
            handoff: None,
            ready: Mutex::new(Vec::new()),
        }
    }

    /// See [`Dispatcher::take_ready`].
    pub fn with_handoff(mut self, owner: String, lease: chrono::Duration) -> Self {
        self.handoff = Some((owner, lease));
        self
    }

    /// The owner new runs are leased to, if handoff is on.
    pub fn handoff_owner(&self) -> Option<&str> {
        self.handoff.as_ref().map(|(o, _)| o.as_str())
    }

    /// Runs created (already leased to the handoff owner) since the last
    /// call.
    pub fn take_ready(&self) -> Vec<runs::RunRow> {
        self.ready
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }

    /// Adds a trigger source (segment, date, price drop…).
    pub fn with_source(mut self, source: Arc<dyn TriggerSource>) -> Self {
        self.sources.push(source);
        self
    }

    pub fn index(&self) -> Arc<FlowIndex> {
        self.index
            .lock()
            .map(|i| i.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Rebuilds the index when the flows table changed since the last
    /// build (one small query when nothing changed).
    pub async fn refresh(&self, store: &Store) -> Result<bool, EngineError> {
        let known = self.index();
        let rebuilt = store.read(move |conn| rebuilt_index(conn, &known)).await?;
        Ok(self.install(rebuilt))
    }

    fn install(&self, rebuilt: Option<Arc<FlowIndex>>) -> bool {
        let Some(index) = rebuilt else { return false };
        tracing::debug!(flows = index.len(), "trigger index rebuilt");
        if let Ok(mut slot) = self.index.lock() {
            *slot = index;
        }
        true
    }

    /// The index to plan with inside a transaction (the writer's batch
    /// hook), or `None` when the flows changed since it was built: the
    /// rebuild reads every listening flow, which with thousands takes long
    /// enough to stall every write, so it is left to [`Dispatcher::refresh`]
    /// on a reader.
    pub fn current_in(&self, conn: &mut dyn Conn) -> Result<Option<Arc<FlowIndex>>, StoreError> {
        let known = self.index();
        let now = generations::current(conn, generations::FLOWS)?;
        Ok((known.generation == Some(now)).then_some(known))
    }

    /// Plans the next batch of the events feed inside the transaction that
    /// stored them (SQLite's single writer: `seq` has no holes from other
    /// writers), when at most `cap` events wait; a longer backlog is left
    /// to the trigger loop, which reads it in batches off the writer
    /// thread. The caller writes the plan before planning again, so each
    /// batch sees the runs of the one before.
    pub fn plan_events_in(
        &self,
        conn: &mut dyn Conn,
        index: &FlowIndex,
        now: DateTime<Utc>,
        cap: i64,
    ) -> Result<AtIngest, StoreError> {
        let src: Arc<dyn TriggerSource> = Arc::new(EventSource);
        if !index.listens_to(src.trigger_type()) {
            return Ok(AtIngest::Idle);
        }
        let after = runs::cursor(conn, src.feed())?;
        let head = src.head(conn)?;
        if head <= after {
            return Ok(AtIngest::Idle);
        }
        if head - after > cap {
            return Ok(AtIngest::Backlog);
        }
        let items = src.fetch(conn, after, self.batch)?;
        let Some(last) = items.last().map(|o| o.seq) else {
            return Ok(AtIngest::Idle);
        };
        let lease = self
            .handoff
            .as_ref()
            .map(|(o, l)| (o.clone(), to_micros(now + *l)));
        Ok(AtIngest::Planned(Box::new(Planned {
            source: src.clone(),
            plan: plan(conn, index, after, last, items, &HashMap::new(), now)?,
            lease,
            now_us: to_micros(now),
        })))
    }

    /// One batch from every feed, each written in its own transaction.
    pub async fn pass(&self, store: &Store, now: DateTime<Utc>) -> Result<Dispatched, EngineError> {
        let mut total = Dispatched::default();
        for planned in self.plan(store, now).await? {
            let done = planned.dispatched();
            match store.write(move |ctx| planned.commit(ctx)).await {
                Ok(rows) => {
                    self.hand(rows);
                    total.items += done.items;
                    total.runs += done.runs;
                }
                // Another dispatcher took this batch; ours is discarded whole.
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(total)
    }

    /// Keeps runs created by a commit for [`Dispatcher::take_ready`].
    pub fn hand(&self, rows: Vec<runs::RunRow>) {
        if rows.is_empty() {
            return;
        }
        if let Ok(mut ready) = self.ready.lock() {
            ready.extend(rows);
        }
    }

    /// In one read (one round trip to a reader, on the event-to-webhook
    /// path): rebuilds the flow index if flows changed, then reads the
    /// next batch of every feed and plans its runs. Writes nothing; a feed
    /// no flow listens to is planned as a move of its cursor to its head,
    /// so flows created later only see newer items.
    pub async fn plan(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<Vec<Planned>, EngineError> {
        self.plan_with(store, now, &Carry::default()).await
    }

    /// [`Dispatcher::plan`] while the batch described by `carry` is still
    /// being written: each feed is read from where that batch leaves its
    /// cursor, and its runs count as entered.
    pub async fn plan_with(
        &self,
        store: &Store,
        now: DateTime<Utc>,
        carry: &Carry,
    ) -> Result<Vec<Planned>, EngineError> {
        let carry = carry.clone();
        let known = self.index();
        let sources = self.sources.clone();
        let gaps = self.gaps.clone();
        let dialect = store.dialect();
        let batch = self.batch;
        let now_us = to_micros(now);
        let lease = self
            .handoff
            .as_ref()
            .map(|(o, l)| (o.clone(), to_micros(now + *l)));
        let (rebuilt, planned) = store
            .read(move |conn| {
                let rebuilt = rebuilt_index(conn, &known)?;
                let index = rebuilt.clone().unwrap_or(known);
                let mut out = Vec::new();
                for src in &sources {
                    let feed = src.feed();
                    let after = runs::cursor(conn, feed)?
                        .max(carry.cursors.get(feed).copied().unwrap_or(0));
                    if !index.listens_to(src.trigger_type()) {
                        let head = src.head(conn)?;
                        if head > after {
                            out.push(Planned {
                                source: src.clone(),
                                plan: Plan {
                                    from: after,
                                    to: head,
                                    items: 0,
                                    runs: Vec::new(),
                                    run_events: Vec::new(),
                                    fresh: Fresh::default(),
                                },
                                lease: None,
                                now_us,
                            });
                        }
                        continue;
                    }
                    let items = src.fetch(conn, after, batch)?;
                    let items = cut_at_gap(&gaps, feed, dialect, after, items);
                    let Some(last) = items.last().map(|o| o.seq) else {
                        continue;
                    };
                    out.push(Planned {
                        source: src.clone(),
                        plan: plan(conn, &index, after, last, items, &carry.entered, now)?,
                        lease: lease.clone(),
                        now_us,
                    });
                }
                Ok((rebuilt, out))
            })
            .await?;
        self.install(rebuilt);
        Ok(planned)
    }
}

/// On PostgreSQL, stop before a hole in `seq` that is younger than
/// [`GAP_GRACE`]; older holes are rolled-back inserts and are skipped.
fn cut_at_gap(
    gaps: &Mutex<HashMap<(&'static str, i64), Instant>>,
    feed: &'static str,
    dialect: Dialect,
    after: i64,
    mut items: Vec<Occurrence>,
) -> Vec<Occurrence> {
    if dialect != Dialect::Postgres {
        return items;
    }
    let Ok(mut gaps) = gaps.lock() else {
        return items;
    };
    let mut expected = after + 1;
    let mut cut = items.len();
    for (i, o) in items.iter().enumerate() {
        if o.seq != expected {
            let first_seen = *gaps.entry((feed, expected)).or_insert_with(Instant::now);
            if first_seen.elapsed() < GAP_GRACE {
                cut = i;
                break;
            }
        }
        expected = o.seq + 1;
    }
    gaps.retain(|(f, seq), _| *f != feed || *seq > after);
    items.truncate(cut);
    items
}

/// A profile's last entry into a flow and whether a run is still active.
type History = (Option<DateTime<Utc>>, bool);

/// Decides, for one batch of feed items, which runs start.
fn plan(
    conn: &mut dyn Conn,
    index: &FlowIndex,
    from: i64,
    to: i64,
    items: Vec<Occurrence>,
    in_flight: &HashMap<(String, String), bool>,
    now: DateTime<Utc>,
) -> Result<Plan, StoreError> {
    let n_items = items.len();
    let mut candidates: Vec<(Occurrence, Arc<Listening>)> = Vec::new();
    for o in items {
        if o.suppressed {
            continue;
        }
        for l in index.listeners(&o) {
            if o.seq > l.went_live_seq {
                candidates.push((o.clone(), l.clone()));
            }
        }
    }
    let mut runs_out = Vec::new();
    let mut run_events = Vec::new();
    let mut fresh = Fresh::default();
    if !candidates.is_empty() {
        let mut profiles: Vec<String> = candidates
            .iter()
            .map(|(o, _)| o.profile_id.clone())
            .collect();
        profiles.sort();
        profiles.dedup();
        let mut flow_ids: Vec<String> = candidates.iter().map(|(_, l)| l.flow_id.clone()).collect();
        flow_ids.sort();
        flow_ids.dedup();
        let mut queries: Vec<MetricQuery> = Vec::new();
        for (_, l) in &candidates {
            for q in &l.queries {
                if !queries.contains(q) {
                    queries.push(q.clone());
                }
            }
        }
        let memberships = candidates.iter().any(|(_, l)| l.compiled.memberships);
        let facts = Loaded::load_with(conn, &profiles, &queries, memberships, memberships)?;
        let mut history: HashMap<(String, String), History> = HashMap::new();
        for chunk in profiles.chunks(400) {
            for a in runs::activity(conn, &flow_ids, chunk)? {
                history.insert(
                    (a.flow_id, a.profile_id),
                    (Some(from_micros(a.last_entered)), a.active),
                );
            }
        }
        // Runs of a batch still being written, which this read cannot see.
        for (key, active) in in_flight {
            let h = history.entry(key.clone()).or_insert((None, false));
            h.0 = Some(now);
            h.1 |= *active;
        }
        for (o, l) in candidates {
            let Some(f) = facts.facts_for(&o.profile_id, &l.queries, now, Some(now)) else {
                continue;
            };
            let key = (l.flow_id.clone(), o.profile_id.clone());
            let (last, active) = history.get(&key).cloned().unwrap_or((None, false));
            if !may_enter(l.def.reentry_criteria.as_ref(), last, active, now) {
                continue;
            }
            let trigger = TriggerContext {
                event: o.event.clone(),
                backfill: o.suppressed,
            };
            let EntryDecision::Enter(run) = entry(&l.def, &f, &trigger, l.status, now) else {
                continue;
            };
            // A second item for the same profile in this batch sees the
            // run the first one started.
            history.insert(key, (Some(now), true));
            fresh
                .flows
                .entry(l.flow_id.clone())
                .or_insert_with(|| l.clone());
            runs_out.push(NewRun {
                id: new_ulid(),
                account_id: o.account_id.clone(),
                flow_id: l.flow_id.clone(),
                flow_version: l.version,
                profile_id: o.profile_id.clone(),
                trigger_event_id: o.event_id.clone(),
                current_action: run.current.clone(),
                event: run.event.as_ref().map(Value::to_string),
                entered: to_micros(now),
            });
            run_events.push(run.event);
        }
        let mut accounts: Vec<&str> = runs_out.iter().map(|r| r.account_id.as_str()).collect();
        accounts.sort_unstable();
        accounts.dedup();
        for a in accounts {
            fresh.orgs.insert(
                a.to_owned(),
                outflow_store::deliveries::organization(conn, a)?,
            );
        }
        fresh.facts = facts;
    }
    Ok(Plan {
        from,
        to,
        items: n_items,
        runs: runs_out,
        run_events,
        fresh,
    })
}
