//! Run execution: claim a batch of due runs under a lease, load the facts
//! they need in a few batched reads, advance every run in memory with the
//! pure state machine, and write all transitions, steps and effects in one
//! transaction.
//!
//! A transition is written only while this worker still holds the run's
//! lease, and each effect is keyed by (run, action): a worker that crashed
//! (or stalled past its lease) never makes an effect happen twice.

use crate::dispatch::flow_status;
use crate::facts::Loaded;
use crate::EngineError;
use chrono::{DateTime, Duration, Utc};
use outflow_core::clock::{from_micros, to_micros};
use outflow_core::flow::definition::ActionKind;
use outflow_core::flow::definition::{apply_operations, ProfileOperation};
use outflow_core::flow::machine::WebhookRenderError;
use outflow_core::flow::machine::{ExitReason, SkipReason, StepOutcome};
use outflow_core::flow::{
    advance, webhook_context, CompiledWebhook, DeliveryOutcome, Effect, FlowDefinition, FlowStatus,
    Input, MetricQuery, Run, RunState,
};
use outflow_store::db::{Conn, Param};
use outflow_store::deliveries::{self, NewDelivery};
use outflow_store::runs::{self, in_list, input, padded, state, RunRow, RunUpdate, StepRow};
use outflow_store::WriteCtx;
use outflow_store::{new_ulid, params, Store, StoreError};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A flow version as the executor uses it: parsed once, cached until the
/// flow's `updated` moves (a status change rewrites the action statuses of
/// every version in place; the rest of a version never changes).
pub struct Compiled {
    /// The flow's `updated` read before this version was.
    stamp: i64,
    pub(crate) def: Arc<FlowDefinition>,
    pub(crate) queries: Vec<MetricQuery>,
    /// Whether a condition of this version names a list or segment.
    pub(crate) memberships: bool,
    /// Each send-webhook action's templates, compiled once.
    webhooks: HashMap<String, Result<Arc<CompiledWebhook>, WebhookRenderError>>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("stamp", &self.stamp)
            .finish()
    }
}

impl Compiled {
    pub fn new(def: Arc<FlowDefinition>, stamp: i64) -> Self {
        let webhooks = def
            .actions
            .iter()
            .filter_map(|a| match (&a.id, &a.kind) {
                (Some(id), ActionKind::SendWebhook(w)) => {
                    Some((id.clone(), CompiledWebhook::compile(w).map(Arc::new)))
                }
                _ => None,
            })
            .collect();
        Self {
            stamp,
            queries: def.required_metric_queries(),
            memberships: def.reads_memberships(),
            def,
            webhooks,
        }
    }
}

/// Where new deliveries go: leased at insert to this owner, and handed to
/// this process's deliverer in memory.
#[derive(Debug, Clone)]
pub struct Handoff {
    pub owner: String,
    pub lease: Duration,
}

pub struct Executor {
    handoff: Option<Handoff>,
    ready: Mutex<Vec<deliveries::Claimed>>,
    worker: String,
    claims: AtomicU64,
    /// Runs advanced since start (all passes, all lanes).
    advanced_total: AtomicU64,
    defs: Mutex<HashMap<(String, i64), Arc<Compiled>>>,
    batch: usize,
    lease: Duration,
}

/// Runs leased to one owner by one claim.
#[derive(Debug)]
pub struct Claimed {
    pub owner: String,
    pub runs: Vec<RunRow>,
}

/// One performed effect, written in the batch transaction.
#[derive(Debug, Clone)]
enum EffectWrite {
    Delivery(Box<NewDelivery>),
    Profile {
        profile_id: String,
        operations: Vec<ProfileOperation>,
        today: chrono::NaiveDate,
    },
    List {
        account_id: String,
        profile_id: String,
        list_id: String,
        add: bool,
    },
    Message,
}

#[derive(Debug)]
struct RunWrite {
    update: RunUpdate,
    steps: Vec<StepRow>,
    effects: Vec<(String, &'static str, EffectWrite)>,
}

/// What a pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Executed {
    pub claimed: usize,
    pub advanced: usize,
    /// Runs whose lease was lost before the write (another worker has them).
    pub lost: usize,
}

impl Executor {
    pub fn new(worker: String, batch: usize, lease: Duration) -> Self {
        Self {
            handoff: None,
            ready: Mutex::new(Vec::new()),
            worker,
            claims: AtomicU64::new(0),
            advanced_total: AtomicU64::new(0),
            defs: Mutex::new(HashMap::new()),
            batch,
            lease,
        }
    }

    /// Inserts new deliveries leased to `h.owner` and keeps them for
    /// [`Executor::take_ready`].
    pub fn with_handoff(mut self, h: Handoff) -> Self {
        self.handoff = Some(h);
        self
    }

    /// Deliveries written (already leased) since the last call.
    pub fn take_ready(&self) -> Vec<deliveries::Claimed> {
        self.ready
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }

    /// Runs advanced by this executor since it started.
    pub fn advanced_total(&self) -> u64 {
        self.advanced_total.load(Ordering::Relaxed)
    }

    /// Leases up to a batch of due runs. Public so tests can simulate a
    /// worker that claims and dies.
    pub async fn claim(&self, store: &Store, now: DateTime<Utc>) -> Result<Claimed, EngineError> {
        let owner = format!(
            "{}:{}",
            self.worker,
            self.claims.fetch_add(1, Ordering::Relaxed)
        );
        let (now_us, until, limit) = (to_micros(now), to_micros(now + self.lease), self.batch);
        let o = owner.clone();
        let runs = store
            .write(move |ctx| runs::claim_due(ctx.conn, &o, now_us, until, limit))
            .await?;
        Ok(Claimed { owner, runs })
    }

    /// Claim one batch and advance it.
    pub async fn pass(&self, store: &Store, now: DateTime<Utc>) -> Result<Executed, EngineError> {
        let claimed = self.claim(store, now).await?;
        if claimed.runs.is_empty() {
            return Ok(Executed::default());
        }
        self.process(store, claimed, now).await
    }

    /// Advances claimed runs and writes the results in one transaction.
    pub async fn process(
        &self,
        store: &Store,
        claimed: Claimed,
        now: DateTime<Utc>,
    ) -> Result<Executed, EngineError> {
        let prepared = self.prepare(store, claimed, now).await?;
        let written = store.write(move |ctx| prepared.write(ctx)).await?;
        Ok(self.written(written))
    }

    /// Reads what the runs need and advances them in memory; nothing is
    /// written until [`Prepared::write`], which may share a transaction
    /// with other work (dispatch writes the runs it created and their
    /// first steps in one).
    pub async fn prepare(
        &self,
        store: &Store,
        claimed: Claimed,
        now: DateTime<Utc>,
    ) -> Result<Prepared, EngineError> {
        if claimed.runs.is_empty() {
            let none = |_: &RunRow| None;
            return Ok(self.advance_all(claimed, none, &Loaded::default(), &HashMap::new(), now));
        }
        let cached: HashMap<(String, i64), Arc<Compiled>> =
            self.defs.lock().map(|m| m.clone()).unwrap_or_default();
        let mut missing: Vec<(String, i64)> = claimed
            .runs
            .iter()
            .map(|r| (r.flow_id.clone(), r.flow_version))
            .filter(|k| !cached.contains_key(k))
            .collect();
        missing.sort();
        missing.dedup();
        // Cached versions with their stamps: reloaded below if the flow's
        // `updated` has moved since.
        let mut stamped: Vec<((String, i64), i64)> = claimed
            .runs
            .iter()
            .filter_map(|r| {
                let k = (r.flow_id.clone(), r.flow_version);
                cached.get(&k).map(|c| (k, c.stamp))
            })
            .collect();
        stamped.sort();
        stamped.dedup();
        let mut flow_ids: Vec<String> = claimed.runs.iter().map(|r| r.flow_id.clone()).collect();
        flow_ids.sort();
        flow_ids.dedup();
        let profile_ids: Vec<String> = claimed.runs.iter().map(|r| r.profile_id.clone()).collect();
        let mut queries: Vec<MetricQuery> = Vec::new();
        let mut memberships = false;
        for c in cached.values() {
            memberships |= c.memberships;
            for q in &c.queries {
                if !queries.contains(q) {
                    queries.push(q.clone());
                }
            }
        }
        let mut accounts: Vec<String> = claimed.runs.iter().map(|r| r.account_id.clone()).collect();
        accounts.sort();
        accounts.dedup();
        let (fresh, statuses, facts, orgs) = store
            .read(move |conn| {
                let mut fresh = HashMap::new();
                // Stamps first: a version read after its stamp is never older.
                let statuses = load_statuses(conn, &flow_ids)?;
                let stale = stamped
                    .into_iter()
                    .filter(|((f, _), had)| statuses.get(f).is_some_and(|s| s.1 != *had))
                    .map(|(k, _)| k);
                for (flow, version) in missing.into_iter().chain(stale) {
                    let stamp = statuses.get(&flow).map_or(0, |s| s.1);
                    if let Some(json) = outflow_store::flows::version(conn, &flow, version)? {
                        match FlowDefinition::parse(json, "") {
                            Ok(def) => {
                                let c = Compiled::new(Arc::new(def), stamp);
                                memberships |= c.memberships;
                                for q in &c.queries {
                                    if !queries.contains(q) {
                                        queries.push(q.clone());
                                    }
                                }
                                fresh.insert((flow, version), Arc::new(c));
                            }
                            Err(e) => {
                                tracing::error!(flow = %flow, version, errors = ?e, "stored flow version does not parse")
                            }
                        }
                    }
                }
                let facts =
                    Loaded::load_with(conn, &profile_ids, &queries, memberships, memberships)?;
                let mut orgs = HashMap::new();
                for a in accounts {
                    let org = deliveries::organization(conn, &a)?;
                    orgs.insert(a, org);
                }
                Ok((fresh, statuses, facts, orgs))
            })
            .await?;
        let mut defs = cached;
        if !fresh.is_empty() {
            if let Ok(mut m) = self.defs.lock() {
                m.extend(fresh.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            defs.extend(fresh);
        }
        Ok(self.advance_all(
            claimed,
            |row| {
                let c = defs.get(&(row.flow_id.clone(), row.flow_version))?;
                let status = statuses
                    .get(&row.flow_id)
                    .map_or(FlowStatus::Draft, |s| s.0);
                Some((c.clone(), status))
            },
            &facts,
            &orgs,
            now,
        ))
    }

    /// [`Executor::prepare`] for runs dispatch has just planned, from what
    /// dispatch already read (the flows' compiled versions, the profiles'
    /// facts, the organizations): no read of its own.
    pub fn prepare_fresh(
        &self,
        claimed: Claimed,
        fresh: &crate::dispatch::Fresh,
        now: DateTime<Utc>,
    ) -> Prepared {
        self.advance_all(
            claimed,
            |row| {
                let l = fresh.flows.get(&row.flow_id)?;
                (l.version == row.flow_version).then(|| (l.compiled.clone(), l.status))
            },
            &fresh.facts,
            &fresh.orgs,
            now,
        )
    }

    /// Advances every run in memory; a run whose flow version is unknown
    /// is released for another pass.
    fn advance_all(
        &self,
        claimed: Claimed,
        flow_of: impl Fn(&RunRow) -> Option<(Arc<Compiled>, FlowStatus)>,
        facts: &Loaded,
        orgs: &HashMap<String, Value>,
        now: DateTime<Utc>,
    ) -> Prepared {
        let n = claimed.runs.len();
        let mut writes = Vec::with_capacity(n);
        let mut orphans = Vec::new();
        for row in claimed.runs {
            match flow_of(&row) {
                Some((c, status)) => {
                    let org = orgs.get(&row.account_id).unwrap_or(&Value::Null);
                    writes.push(step_run(row, &claimed.owner, &c, status, facts, org, now));
                }
                None => orphans.push(row.id),
            }
        }
        Prepared {
            owner: claimed.owner,
            claimed: n,
            writes,
            orphans,
            handoff: self.handoff_until(now),
            now,
        }
    }

    fn handoff_until(&self, now: DateTime<Utc>) -> Option<(String, i64)> {
        self.handoff
            .as_ref()
            .map(|h| (h.owner.clone(), to_micros(now + h.lease)))
    }

    /// Counts a written batch and keeps its deliveries for
    /// [`Executor::take_ready`].
    pub fn written(&self, w: Written) -> Executed {
        self.advanced_total
            .fetch_add(w.advanced as u64, Ordering::Relaxed);
        if !w.handed.is_empty() {
            if let Ok(mut r) = self.ready.lock() {
                r.extend(w.handed);
            }
        }
        Executed {
            claimed: w.claimed,
            advanced: w.advanced,
            lost: w.lost,
        }
    }
}

/// A batch advanced in memory, to be written in one transaction.
#[derive(Debug)]
pub struct Prepared {
    owner: String,
    claimed: usize,
    writes: Vec<RunWrite>,
    orphans: Vec<String>,
    handoff: Option<(String, i64)>,
    now: DateTime<Utc>,
}

/// What [`Prepared::write`] wrote.
#[derive(Debug)]
pub struct Written {
    claimed: usize,
    advanced: usize,
    lost: usize,
    handed: Vec<deliveries::Claimed>,
}

impl Prepared {
    /// Writes a batch of runs dispatch has just planned (`runs`, not yet
    /// stored): each is inserted already in its state after these steps,
    /// then the steps and effects follow as in [`Prepared::write`].
    pub fn write_new(
        self,
        ctx: &mut WriteCtx<'_>,
        new: &[runs::NewRun],
        lease: Option<(&str, i64)>,
    ) -> Result<Written, StoreError> {
        {
            let by_id: HashMap<&str, &RunUpdate> = self
                .writes
                .iter()
                .map(|w| (w.update.id.as_str(), &w.update))
                .collect();
            runs::insert_runs_advanced(ctx.conn, new, &by_id, lease)?;
        }
        self.write_stored(ctx, Stored::Inserted)
    }

    /// Each run's `active` after this batch (for [`crate::dispatch::Carry`]).
    pub fn active_after(&self) -> HashMap<String, bool> {
        self.writes
            .iter()
            .map(|w| (w.update.id.clone(), w.update.active))
            .collect()
    }

    /// Writes the batch (call inside a store write job).
    pub fn write(self, ctx: &mut WriteCtx<'_>) -> Result<Written, StoreError> {
        self.write_stored(ctx, Stored::Leased)
    }

    fn write_stored(self, ctx: &mut WriteCtx<'_>, stored: Stored) -> Result<Written, StoreError> {
        for id in &self.orphans {
            runs::release_lease(ctx.conn, id, &self.owner)?;
        }
        let (advanced, lost, handed) =
            write_batch(ctx, self.writes, self.handoff, self.now, stored)?;
        Ok(Written {
            claimed: self.claimed,
            advanced,
            lost,
            handed,
        })
    }
}

/// Each flow's status and `updated` (the stamp of its cached versions).
fn load_statuses(
    conn: &mut dyn Conn,
    flow_ids: &[String],
) -> Result<HashMap<String, (FlowStatus, i64)>, StoreError> {
    let mut out = HashMap::new();
    for chunk in flow_ids.chunks(500) {
        let (list, n) = in_list(1, chunk.len());
        let sql = format!("SELECT id, status, archived, updated FROM flows WHERE id IN ({list})");
        for r in conn.query(&sql, &padded(chunk, n))? {
            let status = if r.bool(2)? {
                FlowStatus::Draft
            } else {
                flow_status(&r.text(1)?)
            };
            out.insert(r.text(0)?, (status, r.int(3)?));
        }
    }
    Ok(out)
}

fn core_run(row: &RunRow, now: DateTime<Utc>) -> Run {
    let st = match row.state.as_str() {
        state::WAITING => RunState::Waiting {
            until: row.due.map_or(now, from_micros),
        },
        state::AWAITING_DELIVERY => RunState::AwaitingDelivery,
        state::NEEDS_REVIEW => RunState::NeedsReview,
        state::DONE => RunState::Done,
        state::EXITED => RunState::Exited(ExitReason::NothingToDo),
        _ => RunState::Running,
    };
    Run {
        current: row.current_action.clone(),
        state: st,
        event: row.event.clone(),
        entered_at: from_micros(row.entered),
    }
}

fn run_input(row: &RunRow) -> Input {
    match row.input.as_deref() {
        Some(input::RELEASE) => Input::Release,
        Some(input::CANCEL) => Input::Cancel,
        Some(input::DELIVERED) => Input::Delivery(DeliveryOutcome::Succeeded),
        Some(input::SKIPPED) => Input::Delivery(DeliveryOutcome::Skipped),
        _ => Input::Due,
    }
}

fn outcome_text(o: &StepOutcome) -> (&'static str, Option<String>) {
    match o {
        StepOutcome::Executed => ("executed", None),
        StepOutcome::Branched(true) => ("branched", Some("yes".into())),
        StepOutcome::Branched(false) => ("branched", Some("no".into())),
        StepOutcome::Delayed => ("delayed", None),
        StepOutcome::Skipped(SkipReason::ActionNotLive) => {
            ("skipped", Some("action not live".into()))
        }
        StepOutcome::Skipped(SkipReason::Cancelled) => ("skipped", Some("cancelled".into())),
        StepOutcome::AwaitingReview => ("needs-review", None),
    }
}

/// Advances one run as far as it goes now, turning effects into rows.
fn step_run(
    row: RunRow,
    owner: &str,
    c: &Compiled,
    status: FlowStatus,
    facts: &Loaded,
    organization: &Value,
    now: DateTime<Utc>,
) -> RunWrite {
    let now_us = to_micros(now);
    let mut steps = Vec::new();
    let mut effects = Vec::new();
    let mut n = row.step_count;
    let mut push_step = |steps: &mut Vec<StepRow>, action: &str, outcome: &str, detail| {
        steps.push(StepRow {
            run_id: row.id.clone(),
            n,
            action_id: action.to_owned(),
            outcome: outcome.to_owned(),
            at: now_us,
            detail,
        });
        n += 1;
    };
    let entered = from_micros(row.entered);
    let Some(pf) = facts.facts_for(&row.profile_id, &c.queries, now, Some(entered)) else {
        push_step(
            &mut steps,
            row.current_action.as_deref().unwrap_or(""),
            "exited",
            Some("person deleted".into()),
        );
        return RunWrite {
            update: RunUpdate {
                id: row.id.clone(),
                lease_owner: owner.to_owned(),
                current_action: row.current_action.clone(),
                state: state::EXITED.into(),
                exit_reason: Some("person deleted".into()),
                due: None,
                active: false,
                step_count: n,
                updated: now_us,
                rowid: row.rowid,
            },
            steps,
            effects,
        };
    };
    let mut run = core_run(&row, now);
    let mut input = run_input(&row);
    if let Input::Delivery(outcome) = input {
        let text = match outcome {
            DeliveryOutcome::Succeeded => "delivered",
            DeliveryOutcome::Skipped => "delivery skipped",
        };
        push_step(
            &mut steps,
            row.current_action.as_deref().unwrap_or(""),
            text,
            None,
        );
    }
    let mut wake_at;
    // At most two rounds: a webhook that cannot be rendered is skipped at
    // once and the run continues in the same pass.
    let mut rounds = 0;
    loop {
        rounds += 1;
        let t = advance(&c.def, &run, input, &pf, status, now);
        for (action, outcome) in &t.steps {
            let (o, d) = outcome_text(outcome);
            push_step(&mut steps, action, o, d);
        }
        let mut render_failed = false;
        for e in t.effects {
            match e {
                Effect::SendWebhook { action_id, webhook } => {
                    // Price-drop runs carry the item in their trigger context (issue #5).
                    let item = run.event.as_ref().and_then(|e| e.get("catalog_item"));
                    let ctx = webhook_context(&pf.profile, run.event.as_ref(), organization, item);
                    let rendered = match c.webhooks.get(&action_id) {
                        Some(Ok(t)) => t.render(&ctx, now),
                        Some(Err(e)) => Err(e.clone()),
                        None => {
                            CompiledWebhook::compile(&webhook).and_then(|t| t.render(&ctx, now))
                        }
                    };
                    let response_map = (!webhook.response_to_profile.is_empty())
                        .then(|| serde_json::to_string(&webhook.response_to_profile).ok())
                        .flatten();
                    let mut d = NewDelivery {
                        id: new_ulid(),
                        account_id: row.account_id.clone(),
                        run_id: row.id.clone(),
                        flow_id: row.flow_id.clone(),
                        profile_id: row.profile_id.clone(),
                        action_id: action_id.clone(),
                        url: webhook.url.clone(),
                        method: webhook.method.clone(),
                        headers: "[]".into(),
                        header_pairs: Vec::new(),
                        body: String::new(),
                        response_map,
                        status: deliveries::status::PENDING.into(),
                        last_error: None,
                        now: now_us,
                        lease: None,
                        finishes_run: c
                            .def
                            .action(&action_id)
                            .is_some_and(|a| a.links.next.is_none()),
                        run_steps: 0,
                    };
                    match rendered {
                        Ok(r) => {
                            d.url = r.url;
                            d.method = r.method;
                            d.headers =
                                serde_json::to_string(&r.headers).unwrap_or_else(|_| "[]".into());
                            d.header_pairs = r.headers;
                            d.body = r.body;
                        }
                        Err(err) => {
                            render_failed = true;
                            push_step(
                                &mut steps,
                                &action_id,
                                "delivery skipped",
                                Some(err.to_string()),
                            );
                            if let WebhookRenderError::BodyNotJson { body, .. } = &err {
                                d.body = body.clone();
                            }
                            d.status = deliveries::status::SKIPPED.into();
                            d.last_error = Some(err.to_string());
                        }
                    }
                    effects.push((action_id, "webhook", EffectWrite::Delivery(Box::new(d))));
                }
                Effect::UpdateProfile {
                    action_id,
                    operations,
                } => {
                    let today = match pf.timezone {
                        Some(tz) => now.with_timezone(&tz).date_naive(),
                        None => now.date_naive(),
                    };
                    effects.push((
                        action_id,
                        "update-profile",
                        EffectWrite::Profile {
                            profile_id: row.profile_id.clone(),
                            operations,
                            today,
                        },
                    ));
                }
                Effect::ListUpdate {
                    action_id,
                    list_id,
                    add,
                } => effects.push((
                    action_id,
                    "list-update",
                    EffectWrite::List {
                        account_id: row.account_id.clone(),
                        profile_id: row.profile_id.clone(),
                        list_id,
                        add,
                    },
                )),
                // Message channels get pluggable senders later; the step is
                // recorded and keyed like any other effect.
                Effect::Message { action_id, .. } => {
                    effects.push((action_id, "message", EffectWrite::Message))
                }
            }
        }
        run = t.run;
        wake_at = t.wake_at;
        if render_failed && run.state == RunState::AwaitingDelivery && rounds < 2 {
            input = Input::Delivery(DeliveryOutcome::Skipped);
            continue;
        }
        break;
    }
    let (st, exit_reason, due, active) = match &run.state {
        RunState::Running => (state::RUNNING, None, Some(wake_at.unwrap_or(now)), true),
        RunState::Waiting { until } => (state::WAITING, None, Some(*until), true),
        RunState::AwaitingDelivery => (state::AWAITING_DELIVERY, None, None, true),
        RunState::NeedsReview => (state::NEEDS_REVIEW, None, None, true),
        RunState::Done => (state::DONE, None, None, false),
        RunState::Exited(reason) => (state::EXITED, Some(reason.to_string()), None, false),
    };
    if let Some(reason) = &exit_reason {
        let at = run.current.clone().unwrap_or_default();
        push_step(&mut steps, &at, "exited", Some(reason.clone()));
    }
    RunWrite {
        update: RunUpdate {
            id: row.id.clone(),
            lease_owner: owner.to_owned(),
            current_action: run.current,
            state: st.into(),
            exit_reason,
            due: due.map(to_micros),
            active,
            step_count: n,
            updated: now_us,
            rowid: row.rowid,
        },
        steps,
        effects,
    }
}

/// How a batch's runs are stored when [`write_batch`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    /// Leased rows: each transition is written only where the lease holds.
    Leased,
    /// Inserted in this transaction already in their new state.
    Inserted,
}

/// Writes a batch; returns (advanced, lost, deliveries handed off).
///
/// Multi-row statements per batch: the transitions in one
/// `UPDATE … FROM (VALUES …) … AND lease_owner = $1 RETURNING id` (only the
/// runs whose lease is still held are written, and only their steps and
/// effects follow; skipped for runs `Stored::Inserted`), the steps, the
/// effect keys in `INSERT … ON CONFLICT DO NOTHING RETURNING` (only effects
/// whose key is new are performed; a delivery is its own key), the
/// deliveries, and the profile updates in one read and one write.
fn write_batch(
    ctx: &mut WriteCtx<'_>,
    writes: Vec<RunWrite>,
    handoff: Option<(String, i64)>,
    now: DateTime<Utc>,
    stored: Stored,
) -> Result<(usize, usize, Vec<deliveries::Claimed>), StoreError> {
    let now_us = to_micros(now);
    let (mut done, mut lost) = (0, 0);
    let mut kept = Vec::with_capacity(writes.len());
    let one_owner = writes
        .first()
        .map(|w| &w.update.lease_owner)
        .filter(|o| writes.iter().all(|w| &w.update.lease_owner == *o))
        .cloned();
    match one_owner {
        _ if stored == Stored::Inserted => {
            done = writes.len();
            kept = writes;
        }
        Some(owner) => {
            let updates: Vec<&RunUpdate> = writes.iter().map(|w| &w.update).collect();
            let held = runs::finish_many(ctx.conn, &owner, &updates)?;
            for w in writes {
                if held.contains(&w.update.id) {
                    done += 1;
                    kept.push(w);
                } else {
                    lost += 1;
                }
            }
        }
        None => {
            for w in writes {
                if !runs::finish(ctx.conn, &w.update)? {
                    lost += 1;
                    continue;
                }
                done += 1;
                kept.push(w);
            }
        }
    }
    let steps: Vec<&StepRow> = kept.iter().flat_map(|w| w.steps.iter()).collect();
    runs::insert_steps(ctx.conn, &steps)?;
    // A delivery is its own effect key: `deliveries` is unique on (run,
    // action), so its insert claims the key and no run_effects row is
    // written for it.
    let keys: Vec<runs::EffectKey<'_>> = kept
        .iter()
        .flat_map(|w| {
            w.effects
                .iter()
                .filter(|(_, _, e)| !matches!(e, EffectWrite::Delivery(_)))
                .map(|(action, kind, _)| (w.update.id.as_str(), action.as_str(), *kind))
        })
        .collect();
    let mut fresh = runs::record_effects(ctx.conn, &keys, now_us)?;
    drop(keys);
    let mut profile_ops = Vec::new();
    let mut new_deliveries = Vec::new();
    for w in kept {
        let run_id = w.update.id;
        let run_steps = w.update.step_count;
        for (action_id, _, effect) in w.effects {
            // Removing the key makes a repeated (run, action) count once.
            if !matches!(effect, EffectWrite::Delivery(_))
                && !fresh.remove(&(run_id.clone(), action_id))
            {
                continue;
            }
            match effect {
                EffectWrite::Profile {
                    profile_id,
                    operations,
                    today,
                } => profile_ops.push((profile_id, operations, today)),
                EffectWrite::Delivery(mut d) => {
                    let pending = d.status == deliveries::status::PENDING;
                    if pending {
                        d.lease = handoff.clone();
                    }
                    d.run_steps = run_steps;
                    new_deliveries.push(*d);
                }
                EffectWrite::List {
                    account_id,
                    profile_id,
                    list_id,
                    add,
                } => list_update(ctx.conn, &account_id, &profile_id, &list_id, add, now_us)?,
                // Message channels get pluggable senders later; the step
                // and its effect key are recorded.
                EffectWrite::Message => {}
            }
        }
    }
    update_profiles(ctx, profile_ops, now_us)?;
    let inserted = deliveries::insert_many(ctx.conn, &new_deliveries)?;
    let mut handed: Vec<deliveries::Claimed> = new_deliveries
        .into_iter()
        .filter(|d| d.lease.is_some() && inserted.contains(&d.id))
        .map(NewDelivery::into_claimed)
        .collect();
    deliveries::mark_disabled(ctx.conn, &mut handed)?;
    Ok((done, lost, handed))
}

/// Applies update-profile effects: one read of every profile involved,
/// operations applied in order in memory, one multi-row write. Read
/// inside the write transaction so a concurrent API update to the same
/// profile is not lost.
fn update_profiles(
    ctx: &mut WriteCtx<'_>,
    ops: Vec<(String, Vec<ProfileOperation>, chrono::NaiveDate)>,
    now_us: i64,
) -> Result<(), StoreError> {
    if ops.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<String> = ops.iter().map(|(id, _, _)| id.clone()).collect();
    ids.sort();
    ids.dedup();
    let mut props: HashMap<String, Map<String, Value>> = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(512) {
        let (list, n) = in_list(1, chunk.len());
        let sql = format!("SELECT id, properties FROM profiles WHERE id IN ({list})");
        for r in ctx.conn.query(&sql, &padded(chunk, n))? {
            let m = match r.json(1)? {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            props.insert(r.text(0)?, m);
        }
    }
    for (id, operations, today) in &ops {
        // A profile that no longer exists is skipped.
        if let Some(m) = props.get_mut(id) {
            apply_operations(m, operations, *today);
        }
    }
    let rows: Vec<(String, String)> = ids
        .into_iter()
        .filter_map(|id| {
            let m = props.remove(&id)?;
            Some((id, Value::Object(m).to_string()))
        })
        .collect();
    for chunk in rows.chunks(1024) {
        let n = chunk.len().next_power_of_two();
        let values = (0..n)
            .map(|r| format!("(${}, ${})", 2 + 2 * r, 3 + 2 * r))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE profiles SET properties = v.column2, updated = $1 \
             FROM (VALUES {values}) AS v WHERE profiles.id = v.column1"
        );
        let mut p: Vec<Param<'_>> = Vec::with_capacity(1 + 2 * n);
        p.push(Param::Int(now_us));
        for i in 0..n {
            let (id, json) = &chunk[i.min(chunk.len() - 1)];
            p.push(Param::Text(id));
            p.push(Param::Text(json));
        }
        ctx.conn.execute(&sql, &p)?;
        for (id, _) in chunk {
            outflow_store::profiles::forget_applied(ctx.cache, id);
        }
    }
    Ok(())
}

/// A list-update effect: joins or leaves, keyed so a repeat changes nothing.
fn list_update(
    conn: &mut dyn Conn,
    account_id: &str,
    profile_id: &str,
    list_id: &str,
    add: bool,
    now_us: i64,
) -> Result<(), StoreError> {
    if add {
        // A list or profile that no longer exists is not an error that
        // should undo the whole batch.
        conn.execute(
            "INSERT INTO list_members (list_id, profile_id, account_id, joined, source, historical_import) \
             SELECT $1, $2, $3, $4, 'flow', 0 WHERE EXISTS (SELECT 1 FROM lists WHERE id = $1 AND account_id = $3) \
             AND EXISTS (SELECT 1 FROM profiles WHERE id = $2 AND account_id = $3) \
             ON CONFLICT (list_id, profile_id) DO NOTHING",
            params![list_id, profile_id, account_id, now_us],
        )?;
    } else {
        conn.execute(
            "DELETE FROM list_members WHERE account_id = $3 AND list_id = $1 AND profile_id = $2",
            params![list_id, profile_id, account_id],
        )?;
    }
    Ok(())
}
