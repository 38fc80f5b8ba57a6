//! Flow runs, their step history, performed effects, the webhook outbox and
//! the trigger-dispatch cursors (issue #4). The engine decides; this module
//! only moves rows, always in batches: claims take many rows in one
//! statement, and every write of a batch happens inside the caller's one
//! transaction.
//!
//! Exactly-once effects rest on two keys: a run's transition is written only
//! while the writer still holds the run's lease (`lease_owner` compare), and
//! each effect is keyed by (run, action) with a unique index.

use crate::db::{Conn, Dialect, Param, Row};
use crate::{params, StoreError};
use serde_json::Value;

/// Run states as stored.
pub mod state {
    pub const RUNNING: &str = "running";
    pub const WAITING: &str = "waiting";
    pub const AWAITING_DELIVERY: &str = "awaiting-delivery";
    pub const NEEDS_REVIEW: &str = "needs-review";
    pub const DONE: &str = "done";
    pub const EXITED: &str = "exited";
}

/// Outside inputs a run may be waiting to apply.
pub mod input {
    pub const RELEASE: &str = "release";
    pub const CANCEL: &str = "cancel";
    pub const DELIVERED: &str = "delivered";
    pub const SKIPPED: &str = "skipped";
}

/// Feeds the dispatcher follows.
pub const FEED_EVENTS: &str = "events";
pub const FEED_LIST_MEMBERS: &str = "list_members";

/// `$start, $start+1, …` for an `IN (…)` list of `n` values, padded to a
/// power of two (the caller repeats its last value) so the statement cache
/// sees a handful of shapes instead of one per batch size.
pub fn in_list(start: usize, n: usize) -> (String, usize) {
    let padded = n.max(1).next_power_of_two();
    let s = (0..padded)
        .map(|i| format!("${}", start + i))
        .collect::<Vec<_>>()
        .join(", ");
    (s, padded)
}

/// `values` as parameters padded like [`in_list`].
pub fn padded<'a>(values: &'a [String], padded: usize) -> Vec<Param<'a>> {
    let mut out: Vec<Param<'a>> = values.iter().map(|v| Param::Text(v.as_str())).collect();
    let last = out.last().copied().unwrap_or(Param::Text(""));
    out.resize(padded, last);
    out
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: String,
    pub account_id: String,
    pub flow_id: String,
    pub flow_version: i64,
    pub profile_id: String,
    pub trigger_event_id: Option<String>,
    pub current_action: Option<String>,
    pub state: String,
    pub exit_reason: Option<String>,
    pub due: Option<i64>,
    pub input: Option<String>,
    pub lease_owner: Option<String>,
    pub entered: i64,
    pub event: Option<Value>,
    pub step_count: i64,
    pub updated: i64,
    /// SQLite's row number, when a claim read it: the finish then finds
    /// the row without a lookup in the text primary key's index.
    pub rowid: Option<i64>,
}

const RUN_COLUMNS: &str = "id, account_id, flow_id, flow_version, profile_id, trigger_event_id, \
    current_action, state, exit_reason, due, input, lease_owner, entered, event, step_count, updated";

fn run_from_row(r: &Row) -> Result<RunRow, StoreError> {
    Ok(RunRow {
        id: r.text(0)?,
        account_id: r.text(1)?,
        flow_id: r.text(2)?,
        flow_version: r.int(3)?,
        profile_id: r.text(4)?,
        trigger_event_id: r.opt_text(5)?,
        current_action: r.opt_text(6)?,
        state: r.text(7)?,
        exit_reason: r.opt_text(8)?,
        due: r.opt_int(9)?,
        input: r.opt_text(10)?,
        lease_owner: r.opt_text(11)?,
        entered: r.int(12)?,
        event: match r.json(13)? {
            Value::Null => None,
            v => Some(v),
        },
        step_count: r.int(14)?,
        updated: r.int(15)?,
        rowid: None,
    })
}

/// A run about to be created by trigger dispatch.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub id: String,
    pub account_id: String,
    pub flow_id: String,
    pub flow_version: i64,
    pub profile_id: String,
    pub trigger_event_id: Option<String>,
    pub current_action: Option<String>,
    /// The trigger event's properties as JSON text.
    pub event: Option<String>,
    pub entered: i64,
}

/// Creates runs, due at once.
pub fn insert_runs(conn: &mut dyn Conn, runs: &[NewRun]) -> Result<(), StoreError> {
    insert_runs_leased(conn, runs, None)
}

/// Creates runs, due at once, optionally already leased (owner, until) so
/// the creating process can advance them without a claim.
pub fn insert_runs_leased(
    conn: &mut dyn Conn,
    runs: &[NewRun],
    lease: Option<(&str, i64)>,
) -> Result<(), StoreError> {
    for r in runs {
        conn.execute(
            "INSERT INTO runs (id, account_id, flow_id, flow_version, profile_id, trigger_event_id, \
             current_action, state, due, entered, event, active, step_count, updated, lease_owner, lease_until) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $8, $9, 1, 0, $8, $10, $11)",
            params![
                &r.id,
                &r.account_id,
                &r.flow_id,
                r.flow_version,
                &r.profile_id,
                &r.trigger_event_id,
                &r.current_action,
                r.entered,
                &r.event,
                lease.map(|l| l.0),
                lease.map(|l| l.1)
            ],
        )?;
    }
    Ok(())
}

/// Creates runs that their creator has already advanced: each row is
/// inserted in its state after its first steps (`updates` by run id), so
/// a new run costs one row write, not an insert and an update. A run
/// without an update is inserted leased to `lease`, as
/// [`insert_runs_leased`] would.
pub fn insert_runs_advanced(
    conn: &mut dyn Conn,
    runs: &[NewRun],
    updates: &std::collections::HashMap<&str, &RunUpdate>,
    lease: Option<(&str, i64)>,
) -> Result<(), StoreError> {
    const COLS: usize = 16;
    let mut advanced = Vec::with_capacity(runs.len());
    for r in runs {
        match updates.get(r.id.as_str()) {
            Some(u) => advanced.push((r, *u)),
            None => insert_runs_leased(conn, std::slice::from_ref(r), lease)?,
        }
    }
    for chunk in row_chunks(&advanced) {
        let sql = shaped("insert_runs_advanced", chunk.len(), || {
            format!(
                "INSERT INTO runs (id, account_id, flow_id, flow_version, profile_id, trigger_event_id, \
                 current_action, state, exit_reason, due, entered, event, active, step_count, updated, \
                 last_worker) VALUES {}",
                values_list(1, chunk.len(), COLS)
            )
        });
        let mut p: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * COLS);
        for (r, u) in chunk {
            p.extend([
                Param::Text(&r.id),
                Param::Text(&r.account_id),
                Param::Text(&r.flow_id),
                Param::Int(r.flow_version),
                Param::Text(&r.profile_id),
                Param::from(&r.trigger_event_id),
                Param::from(&u.current_action),
                Param::Text(&u.state),
                Param::from(&u.exit_reason),
                Param::from(u.due),
                Param::Int(r.entered),
                Param::from(&r.event),
                Param::from(u.active),
                Param::Int(u.step_count),
                Param::Int(u.updated),
                Param::Text(&u.lease_owner),
            ]);
        }
        conn.execute(&sql, &p)?;
    }
    Ok(())
}

impl NewRun {
    /// The run as its lease holder sees it right after insert.
    pub fn leased_row(&self, owner: &str) -> RunRow {
        let event = self
            .event
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok());
        self.leased_row_with(owner, event)
    }

    /// [`NewRun::leased_row`] with the trigger event already parsed (the
    /// planner has it, so it is not parsed back from `event`).
    pub fn leased_row_with(&self, owner: &str, event: Option<serde_json::Value>) -> RunRow {
        RunRow {
            rowid: None,
            id: self.id.clone(),
            account_id: self.account_id.clone(),
            flow_id: self.flow_id.clone(),
            flow_version: self.flow_version,
            profile_id: self.profile_id.clone(),
            trigger_event_id: self.trigger_event_id.clone(),
            current_action: self.current_action.clone(),
            state: state::RUNNING.to_owned(),
            exit_reason: None,
            due: Some(self.entered),
            input: None,
            lease_owner: Some(owner.to_owned()),
            entered: self.entered,
            event,
            step_count: 0,
            updated: self.entered,
        }
    }
}

/// Leases up to `limit` due runs to `owner` until `lease_until`. On
/// PostgreSQL rows another process is claiming are skipped, not waited on.
pub fn claim_due(
    conn: &mut dyn Conn,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: usize,
) -> Result<Vec<RunRow>, StoreError> {
    // SQLite: by rowid, straight from the due index, not through the
    // text primary key's index.
    let (key, lock) = match conn.dialect() {
        Dialect::Postgres => ("id", " FOR UPDATE SKIP LOCKED"),
        Dialect::Sqlite => ("rowid", ""),
    };
    let sql = format!(
        "UPDATE runs SET lease_owner = $1, lease_until = $2 WHERE {key} IN (\
         SELECT {key} FROM runs WHERE due IS NOT NULL AND due <= $3 \
         AND (lease_until IS NULL OR lease_until < $3) ORDER BY due LIMIT {limit}{lock}) \
         RETURNING {RUN_COLUMNS}{}",
        if key == "rowid" { ", rowid" } else { "" }
    );
    conn.query(&sql, params![owner, lease_until, now])?
        .iter()
        .map(|r| {
            let mut run = run_from_row(r)?;
            if key == "rowid" {
                run.rowid = r.opt_int(16)?;
            }
            Ok(run)
        })
        .collect()
}

/// A run's new position after one advance.
#[derive(Debug, Clone, PartialEq)]
pub struct RunUpdate {
    pub id: String,
    /// The lease the writer must still hold; a stale worker writes nothing.
    pub lease_owner: String,
    pub current_action: Option<String>,
    pub state: String,
    pub exit_reason: Option<String>,
    pub due: Option<i64>,
    pub active: bool,
    pub step_count: i64,
    pub updated: i64,
    /// See [`RunRow::rowid`].
    pub rowid: Option<i64>,
}

/// Writes a transition, records its writer in `last_worker` and releases
/// the lease; false when the lease was
/// lost (another worker re-claimed the run), in which case the caller must
/// not write the step's effects either.
pub fn finish(conn: &mut dyn Conn, u: &RunUpdate) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE runs SET current_action = $3, state = $4, exit_reason = $5, due = $6, active = $7, \
         step_count = $8, updated = $9, input = NULL, lease_owner = NULL, lease_until = NULL, \
         last_worker = $2 WHERE id = $1 AND lease_owner = $2",
        params![
            &u.id,
            &u.lease_owner,
            &u.current_action,
            &u.state,
            &u.exit_reason,
            u.due,
            u.active,
            u.step_count,
            u.updated
        ],
    )?;
    Ok(n == 1)
}

/// Writes many transitions of one lease owner with a few multi-row
/// `UPDATE … FROM (VALUES …)` statements, like [`finish`] for each; returns
/// the ids whose lease was still held (only those were written).
pub fn finish_many(
    conn: &mut dyn Conn,
    owner: &str,
    updates: &[&RunUpdate],
) -> Result<std::collections::HashSet<String>, StoreError> {
    const COLS: usize = 8;
    let mut out = std::collections::HashSet::with_capacity(updates.len());
    for chunk in row_chunks(updates) {
        let by_rowid = conn.dialect() == Dialect::Sqlite && chunk.iter().all(|u| u.rowid.is_some());
        let name = if by_rowid {
            "finish_many_rowid"
        } else {
            "finish_many"
        };
        let sql = shaped(name, chunk.len(), || {
            // VALUES columns are column1… in both SQLite and PostgreSQL.
            let values = typed_values(
                2,
                chunk.len(),
                &[false, false, false, false, true, true, true, true],
            );
            let key = if by_rowid { "runs.rowid" } else { "runs.id" };
            format!(
                "UPDATE runs SET current_action = v.column2, state = v.column3, exit_reason = v.column4, \
                 due = v.column5, active = v.column6, step_count = v.column7, updated = v.column8, \
                 input = NULL, lease_owner = NULL, lease_until = NULL, last_worker = $1 \
                 FROM (VALUES {values}) AS v WHERE {key} = v.column1 AND runs.lease_owner = $1 \
                 RETURNING runs.id"
            )
        });
        let mut p: Vec<Param<'_>> = Vec::with_capacity(1 + chunk.len() * COLS);
        p.push(Param::Text(owner));
        for u in chunk {
            match u.rowid {
                Some(rowid) if by_rowid => p.push(Param::Int(rowid)),
                _ => p.push(Param::Text(&u.id)),
            }
            p.push(Param::from(&u.current_action));
            p.push(Param::Text(&u.state));
            p.push(Param::from(&u.exit_reason));
            p.push(Param::from(u.due));
            p.push(Param::from(u.active));
            p.push(Param::Int(u.step_count));
            p.push(Param::Int(u.updated));
        }
        for r in conn.query(&sql, &p)? {
            out.insert(r.text(0)?);
        }
    }
    Ok(out)
}

/// Gives a claimed run back untouched (e.g. its flow version is missing).
pub fn release_lease(conn: &mut dyn Conn, id: &str, owner: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE runs SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2",
        params![id, owner],
    )?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    pub run_id: String,
    pub n: i64,
    pub action_id: String,
    pub outcome: String,
    pub at: i64,
    pub detail: Option<String>,
}

pub fn insert_step(conn: &mut dyn Conn, s: &StepRow) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO run_steps (run_id, n, action_id, outcome, at, detail) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (run_id, n) DO NOTHING",
        params![&s.run_id, s.n, &s.action_id, &s.outcome, s.at, &s.detail],
    )?;
    Ok(())
}

/// Most rows in one multi-row statement: the widest (new deliveries, 20
/// columns) binds 5,120 parameters, within SQLite's 32,766 and
/// PostgreSQL's 65,535.
const ROWS_PER_STATEMENT: usize = 256;

/// Splits `items` into chunks whose lengths are powers of two (at most
/// [`ROWS_PER_STATEMENT`]): a batch then uses a handful of statement shapes
/// the statement cache keeps, and no row is padded or written twice.
pub(crate) fn row_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let n = ROWS_PER_STATEMENT.min(1 << items.len().ilog2());
        let (head, rest) = items.split_at(n);
        items = rest;
        Some(head)
    })
}

thread_local! {
    /// Multi-row statement texts by (statement, rows): built once per
    /// shape, not per batch.
    static SHAPES: std::cell::RefCell<std::collections::HashMap<(&'static str, usize), std::rc::Rc<str>>> =
        Default::default();
}

/// The text of statement `name` for `rows` rows, built by `build` once.
pub(crate) fn shaped(
    name: &'static str,
    rows: usize,
    build: impl FnOnce() -> String,
) -> std::rc::Rc<str> {
    SHAPES.with(|m| {
        m.borrow_mut()
            .entry((name, rows))
            .or_insert_with(|| build().into())
            .clone()
    })
}

/// `($s, $s+1, …), (…)` for `rows` rows of `cols` columns from `$start`.
pub(crate) fn values_list(start: usize, rows: usize, cols: usize) -> String {
    typed_values(start, rows, &vec![false; cols])
}

/// Like [`values_list`], one column per entry of `bigint`; those marked
/// true are written `CAST($n AS BIGINT)`, so PostgreSQL can type a NULL in
/// a `FROM (VALUES …)` list.
pub(crate) fn typed_values(start: usize, rows: usize, bigint: &[bool]) -> String {
    let cols = bigint.len();
    let mut s = String::with_capacity(rows * cols * 12);
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for (c, cast) in bigint.iter().enumerate() {
            if c > 0 {
                s.push_str(", ");
            }
            let n = start + r * cols + c;
            if *cast {
                s.push_str(&format!("CAST(${n} AS BIGINT)"));
            } else {
                s.push_str(&format!("${n}"));
            }
        }
        s.push(')');
    }
    s
}

/// Inserts many steps with a few multi-row statements (existing (run, n)
/// rows are kept).
pub fn insert_steps(conn: &mut dyn Conn, steps: &[&StepRow]) -> Result<(), StoreError> {
    const COLS: usize = 6;
    for chunk in row_chunks(steps) {
        let sql = shaped("insert_steps", chunk.len(), || {
            format!(
                "INSERT INTO run_steps (run_id, n, action_id, outcome, at, detail) VALUES {} \
                 ON CONFLICT (run_id, n) DO NOTHING",
                values_list(1, chunk.len(), COLS)
            )
        });
        let mut p: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * COLS);
        for s in chunk {
            p.push(Param::Text(&s.run_id));
            p.push(Param::Int(s.n));
            p.push(Param::Text(&s.action_id));
            p.push(Param::Text(&s.outcome));
            p.push(Param::Int(s.at));
            p.push(Param::from(&s.detail));
        }
        conn.execute(&sql, &p)?;
    }
    Ok(())
}

/// One effect key to claim: (run, action, kind).
pub type EffectKey<'a> = (&'a str, &'a str, &'a str);

/// Claims many effect keys with a few multi-row statements; returns the
/// (run, action) keys that were newly inserted — only those effects may be
/// performed, each once.
pub fn record_effects(
    conn: &mut dyn Conn,
    keys: &[EffectKey<'_>],
    at: i64,
) -> Result<std::collections::HashSet<(String, String)>, StoreError> {
    const COLS: usize = 3;
    let mut out = std::collections::HashSet::with_capacity(keys.len());
    for chunk in row_chunks(keys) {
        let sql = shaped("record_effects", chunk.len(), || {
            let values = (0..chunk.len())
                .map(|r| {
                    let b = 2 + r * COLS;
                    format!("(${}, ${}, ${}, $1)", b, b + 1, b + 2)
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "INSERT INTO run_effects (run_id, action_id, kind, at) VALUES {values} \
                 ON CONFLICT (run_id, action_id) DO NOTHING RETURNING run_id, action_id"
            )
        });
        let mut p: Vec<Param<'_>> = Vec::with_capacity(1 + chunk.len() * COLS);
        p.push(Param::Int(at));
        for (run, action, kind) in chunk {
            p.push(Param::Text(run));
            p.push(Param::Text(action));
            p.push(Param::Text(kind));
        }
        for r in conn.query(&sql, &p)? {
            out.insert((r.text(0)?, r.text(1)?));
        }
    }
    Ok(out)
}

/// Claims the key of one effect; true only the first time, so the caller
/// performs the effect exactly once.
pub fn record_effect(
    conn: &mut dyn Conn,
    run_id: &str,
    action_id: &str,
    kind: &str,
    at: i64,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "INSERT INTO run_effects (run_id, action_id, kind, at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (run_id, action_id) DO NOTHING",
        params![run_id, action_id, kind, at],
    )?;
    Ok(n == 1)
}

/// Makes a run waiting at `action_id` for its delivery due with `input`.
pub fn deliver_input(
    conn: &mut dyn Conn,
    run_id: &str,
    action_id: &str,
    run_input: &str,
    now: i64,
) -> Result<u64, StoreError> {
    Ok(conn.execute(
        "UPDATE runs SET input = $3, due = $4, updated = $4 \
         WHERE id = $1 AND current_action = $2 AND state = 'awaiting-delivery'",
        params![run_id, action_id, run_input, now],
    )?)
}

/// The feed position trigger dispatch has reached.
pub fn cursor(conn: &mut dyn Conn, feed: &str) -> Result<i64, StoreError> {
    Ok(conn
        .query_opt(
            "SELECT position FROM dispatch_cursors WHERE feed = $1",
            params![feed],
        )?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0))
}

/// Moves a feed's cursor from `from` to `to`; false if someone else moved
/// it first (then the caller's batch must not be written).
pub fn advance_cursor(
    conn: &mut dyn Conn,
    feed: &str,
    from: i64,
    to: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE dispatch_cursors SET position = $3, updated = $4 WHERE feed = $1 AND position = $2",
        params![feed, from, to, now],
    )?;
    if n == 1 {
        return Ok(true);
    }
    if from == 0 && cursor_missing(conn, feed)? {
        conn.execute(
            "INSERT INTO dispatch_cursors (feed, position, updated) VALUES ($1, $2, $3) \
             ON CONFLICT (feed) DO NOTHING",
            params![feed, to, now],
        )?;
        return Ok(true);
    }
    Ok(false)
}

fn cursor_missing(conn: &mut dyn Conn, feed: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_opt(
            "SELECT 1 FROM dispatch_cursors WHERE feed = $1",
            params![feed],
        )?
        .is_none())
}

/// A profile's history in a flow, for re-entry rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub flow_id: String,
    pub profile_id: String,
    pub last_entered: i64,
    pub active: bool,
}

/// Entry history of every (flow, profile) pair among the given ids, in one
/// query.
pub fn activity(
    conn: &mut dyn Conn,
    flow_ids: &[String],
    profile_ids: &[String],
) -> Result<Vec<Activity>, StoreError> {
    if flow_ids.is_empty() || profile_ids.is_empty() {
        return Ok(Vec::new());
    }
    let (flows, nf) = in_list(1, flow_ids.len());
    let (profiles, np) = in_list(1 + nf, profile_ids.len());
    let sql = format!(
        "SELECT flow_id, profile_id, MAX(entered), MAX(active) FROM runs \
         WHERE flow_id IN ({flows}) AND profile_id IN ({profiles}) GROUP BY flow_id, profile_id"
    );
    let mut p = padded(flow_ids, nf);
    p.extend(padded(profile_ids, np));
    conn.query(&sql, &p)?
        .iter()
        .map(|r| {
            Ok(Activity {
                flow_id: r.text(0)?,
                profile_id: r.text(1)?,
                last_entered: r.int(2)?,
                active: r.int(3)? != 0,
            })
        })
        .collect()
}

/// Releases or cancels every run waiting for review at one action of a
/// flow: they become due with the reviewer's input. Returns how many.
pub fn review(
    conn: &mut dyn Conn,
    account: &str,
    flow_id: &str,
    action_id: &str,
    decision: &str,
    now: i64,
) -> Result<u64, StoreError> {
    Ok(conn.execute(
        "UPDATE runs SET input = $4, due = $5, updated = $5 WHERE account_id = $1 AND flow_id = $2 \
         AND current_action = $3 AND state = 'needs-review' AND input IS NULL",
        params![account, flow_id, action_id, decision, now],
    )?)
}

/// Whether a flow exists in the account.
pub fn flow_exists(conn: &mut dyn Conn, account: &str, flow_id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_opt(
            "SELECT 1 FROM flows WHERE account_id = $1 AND id = $2",
            params![account, flow_id],
        )?
        .is_some())
}

/// A flow's runs, newest first.
pub fn for_flow(
    conn: &mut dyn Conn,
    account: &str,
    flow_id: &str,
    limit: usize,
) -> Result<Vec<RunRow>, StoreError> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE account_id = $1 AND flow_id = $2 \
         ORDER BY entered DESC, id DESC LIMIT {}",
        limit.min(crate::MAX_PAGE_ROWS)
    );
    conn.query(&sql, params![account, flow_id])?
        .iter()
        .map(run_from_row)
        .collect()
}

/// A profile's runs in every flow, newest first.
pub fn for_profile(
    conn: &mut dyn Conn,
    account: &str,
    profile_id: &str,
    limit: usize,
) -> Result<Vec<RunRow>, StoreError> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE account_id = $1 AND profile_id = $2 \
         ORDER BY entered DESC, id DESC LIMIT {}",
        limit.min(crate::MAX_PAGE_ROWS)
    );
    conn.query(&sql, params![account, profile_id])?
        .iter()
        .map(run_from_row)
        .collect()
}

/// The steps of the given runs, in order, in one query.
pub fn steps_of(conn: &mut dyn Conn, run_ids: &[String]) -> Result<Vec<StepRow>, StoreError> {
    let mut out = Vec::new();
    for chunk in run_ids.chunks(512) {
        let (ids, n) = in_list(1, chunk.len());
        let sql = format!(
            "SELECT run_id, n, action_id, outcome, at, detail FROM run_steps \
             WHERE run_id IN ({ids}) ORDER BY run_id, n"
        );
        for r in conn.query(&sql, &padded(chunk, n))? {
            out.push(StepRow {
                run_id: r.text(0)?,
                n: r.int(1)?,
                action_id: r.text(2)?,
                outcome: r.text(3)?,
                at: r.int(4)?,
                detail: r.opt_text(5)?,
            });
        }
    }
    Ok(out)
}

/// Every run of a flow (tests and tools).
pub fn get(conn: &mut dyn Conn, id: &str) -> Result<Option<RunRow>, StoreError> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
    conn.query_opt(&sql, params![id])?
        .map(|r| run_from_row(&r))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::{in_list, row_chunks};

    #[test]
    fn rows_are_chunked_in_powers_of_two_without_padding() {
        let items: Vec<usize> = (0..600).collect();
        let sizes: Vec<usize> = row_chunks(&items).map(<[usize]>::len).collect();
        assert_eq!(sizes, vec![256, 256, 64, 16, 8]);
        let again: Vec<usize> = row_chunks(&items).flatten().copied().collect();
        assert_eq!(again, items);
        assert_eq!(row_chunks::<u8>(&[]).count(), 0);
    }

    #[test]
    fn in_lists_are_padded_to_powers_of_two() {
        assert_eq!(in_list(1, 3), ("$1, $2, $3, $4".to_owned(), 4));
        assert_eq!(in_list(3, 1), ("$3".to_owned(), 1));
        assert_eq!(in_list(1, 0).1, 1);
    }
}
