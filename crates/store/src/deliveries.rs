//! The webhook outbox (issue #7). A run's step writes its delivery row in
//! the step's transaction; delivery workers lease due rows in batches, and
//! write each batch's attempts and outcomes in one transaction. A final
//! outcome becomes the waiting run's next input in that same transaction.

use crate::db::{Conn, Dialect, Param, Row};
use crate::runs::input;
use crate::writer::WriteCtx;
use crate::{params, StoreError};
use serde_json::{Map, Value};

pub mod status {
    pub const PENDING: &str = "pending";
    pub const SUCCEEDED: &str = "succeeded";
    /// A final answer that is not success (4xx, refused, invalid body, 410).
    pub const SKIPPED: &str = "skipped";
    /// Retries used up.
    pub const FAILED: &str = "failed";
}

/// A webhook request for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub id: String,
    pub account_id: String,
    pub run_id: String,
    pub flow_id: String,
    pub profile_id: String,
    pub action_id: String,
    pub url: String,
    pub method: String,
    /// JSON array of `[name, value]` pairs.
    pub headers: String,
    /// The same pairs, for handing the delivery to a worker without
    /// parsing `headers` back (empty when not handed over).
    pub header_pairs: Vec<(String, String)>,
    pub body: String,
    /// JSON array of `[property, pointer]` pairs, or `None`.
    pub response_map: Option<String>,
    /// `pending`, or `skipped` when the request could not be rendered.
    pub status: String,
    pub last_error: Option<String>,
    pub now: i64,
    /// Inserted already leased (owner, until): the step hands the delivery
    /// to this process's worker in memory, with no claim round trip.
    pub lease: Option<(String, i64)>,
    /// The webhook is its run's last action: once the delivery succeeds or
    /// is skipped, the recorder ends the run in the same transaction
    /// instead of handing it back to the engine. Not stored: a delivery
    /// claimed from the table takes the engine's path.
    pub finishes_run: bool,
    /// Steps the run had recorded when the delivery was written: the
    /// recorder numbers the run's last step with it (with `finishes_run`).
    pub run_steps: i64,
}

impl NewDelivery {
    /// The delivery as a worker that holds its lease sees it.
    pub fn into_claimed(self) -> Claimed {
        Claimed {
            id: self.id,
            account_id: self.account_id,
            run_id: self.run_id,
            flow_id: self.flow_id,
            profile_id: self.profile_id,
            action_id: self.action_id,
            url: self.url,
            method: self.method,
            headers: self.header_pairs,
            body: self.body,
            response_map: self
                .response_map
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok())
                .unwrap_or_default(),
            attempts: 0,
            retry_base: 0,
            disabled: None,
            finishes_run: self.finishes_run,
            run_steps: self.run_steps,
        }
    }
}

/// Inserts many deliveries with multi-row statements, skipping any whose
/// (run, action) already has one; returns the ids that were inserted.
pub fn insert_many(
    conn: &mut dyn Conn,
    ds: &[NewDelivery],
) -> Result<std::collections::HashSet<String>, StoreError> {
    use crate::runs::{row_chunks, shaped, values_list};
    const COLS: usize = 20;
    let mut inserted = std::collections::HashSet::with_capacity(ds.len());
    for chunk in row_chunks(ds) {
        let sql = shaped("insert_deliveries", chunk.len(), || {
            format!(
                "INSERT INTO deliveries (id, account_id, run_id, flow_id, profile_id, action_id, url, \
                 method, headers, body, response_map, status, attempts, last_error, due, finished, \
                 created, updated, lease_owner, lease_until) VALUES {} \
                 ON CONFLICT (run_id, action_id) DO NOTHING RETURNING id",
                values_list(1, chunk.len(), COLS)
            )
        });
        let mut p: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * COLS);
        for d in chunk {
            let pending = d.status == status::PENDING;
            p.extend([
                Param::Text(&d.id),
                Param::Text(&d.account_id),
                Param::Text(&d.run_id),
                Param::Text(&d.flow_id),
                Param::Text(&d.profile_id),
                Param::Text(&d.action_id),
                Param::Text(&d.url),
                Param::Text(&d.method),
                Param::Text(&d.headers),
                Param::Text(&d.body),
                Param::from(&d.response_map),
                Param::Text(&d.status),
                Param::Int(0),
                Param::from(&d.last_error),
                Param::from(pending.then_some(d.now)),
                Param::from((!pending).then_some(d.now)),
                Param::Int(d.now),
                Param::Int(d.now),
                Param::from(d.lease.as_ref().map(|l| l.0.as_str())),
                Param::from(d.lease.as_ref().map(|l| l.1)),
            ]);
        }
        for r in conn.query(&sql, &p)? {
            inserted.insert(r.text(0)?);
        }
    }
    Ok(inserted)
}

/// A leased delivery, as a worker needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub id: String,
    pub account_id: String,
    pub run_id: String,
    pub flow_id: String,
    pub profile_id: String,
    pub action_id: String,
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub response_map: Vec<(String, String)>,
    /// Attempts made so far, and how many of them came before the current
    /// series (a manual retry starts a new one).
    pub attempts: i64,
    pub retry_base: i64,
    /// Why the destination is disabled (a 410), if it is.
    pub disabled: Option<String>,
    /// See [`NewDelivery::finishes_run`] and [`NewDelivery::run_steps`].
    pub finishes_run: bool,
    pub run_steps: i64,
}

const CLAIM_COLUMNS: &str =
    "id, account_id, run_id, COALESCE(flow_id, ''), COALESCE(profile_id, ''), \
     action_id, url, method, headers, body, response_map, attempts, retry_base";

fn claimed_from_row(r: &Row) -> Result<Claimed, StoreError> {
    let headers = serde_json::from_value(r.json(8)?).unwrap_or_default();
    let response_map = match r.opt_text(10)? {
        Some(t) => serde_json::from_str(&t).unwrap_or_default(),
        None => Vec::new(),
    };
    Ok(Claimed {
        id: r.text(0)?,
        account_id: r.text(1)?,
        run_id: r.text(2)?,
        flow_id: r.text(3)?,
        profile_id: r.text(4)?,
        action_id: r.text(5)?,
        url: r.text(6)?,
        method: r.text(7)?,
        headers,
        body: r.text(9)?,
        response_map,
        attempts: r.int(11)?,
        retry_base: r.int(12)?,
        finishes_run: false,
        run_steps: 0,
        disabled: None,
    })
}

/// Leases due deliveries: up to `first` never tried, then up to `retries`
/// retries, from separate queues so neither starves the other.
pub fn claim(
    conn: &mut dyn Conn,
    owner: &str,
    now: i64,
    lease_until: i64,
    first: usize,
    retries: usize,
) -> Result<Vec<Claimed>, StoreError> {
    let lock = match conn.dialect() {
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        Dialect::Sqlite => "",
    };
    let mut out = Vec::new();
    for (queue, limit) in [("attempts = 0", first), ("attempts > 0", retries)] {
        if limit == 0 {
            continue;
        }
        let sql = format!(
            "UPDATE deliveries SET lease_owner = $1, lease_until = $2 WHERE id IN (\
             SELECT id FROM deliveries WHERE status = 'pending' AND {queue} AND due <= $3 \
             AND (lease_until IS NULL OR lease_until < $3) ORDER BY due LIMIT {limit}{lock}) \
             RETURNING {CLAIM_COLUMNS}"
        );
        for r in conn.query(&sql, params![owner, lease_until, now])? {
            out.push(claimed_from_row(&r)?);
        }
    }
    mark_disabled(conn, &mut out)?;
    Ok(out)
}

/// Postpones to `until` the pending deliveries of one destination that no
/// live lease holds and that are due before then: an action's deliveries
/// whose URL starts with `prefix` (its scheme and authority, up to the
/// path's `/`). The deliverer calls it when it defers a delivery because
/// its host's breaker is open or its queue is full, so the rest of that
/// host's backlog is not claimed and deferred one row at a time, ahead of
/// other hosts' deliveries. Returns how many moved.
pub fn postpone_destination(
    conn: &mut dyn Conn,
    flow_id: &str,
    action_id: &str,
    prefix: &str,
    until: i64,
    now: i64,
) -> Result<u64, StoreError> {
    let pattern = format!(
        "{}%",
        prefix
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let mut moved = 0;
    for queue in ["attempts = 0", "attempts > 0"] {
        moved += conn.execute(
            &postpone_statement(conn.dialect(), queue),
            params![flow_id, action_id, &pattern, until, now],
        )?;
    }
    Ok(moved)
}

/// [`postpone_destination`]'s statement for one of the two due queues
/// (`attempts = 0` or `attempts > 0`, the partial indexes' conditions).
/// Public so a test can check SQLite's plan for it.
pub fn postpone_statement(dialect: Dialect, queue: &str) -> String {
    // On SQLite a bare `flow_id = ` picks the (flow, action, created)
    // index, which holds the action's whole history; `+` keeps the scan on
    // the pending-due index.
    let (flow, action) = match dialect {
        Dialect::Sqlite => ("+flow_id", "+action_id"),
        Dialect::Postgres => ("flow_id", "action_id"),
    };
    format!(
        "UPDATE deliveries SET due = $4, updated = $5 \
         WHERE status = 'pending' AND {queue} AND due < $4 \
         AND (lease_until IS NULL OR lease_until < $5) \
         AND {flow} = $1 AND {action} = $2 AND url LIKE $3 ESCAPE '\\'"
    )
}

/// Sets `disabled` on deliveries whose destination a 410 disabled (one
/// query on a small table, and none for an empty batch).
pub fn mark_disabled(conn: &mut dyn Conn, batch: &mut [Claimed]) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let disabled = disabled_destinations(conn)?;
    if disabled.is_empty() {
        return Ok(());
    }
    for d in batch {
        d.disabled = disabled
            .iter()
            .find(|(f, a, _)| *f == d.flow_id && *a == d.action_id)
            .map(|(_, _, why)| why.clone());
    }
    Ok(())
}

/// (flow, action, reason) of every destination disabled by a 410.
fn disabled_destinations(conn: &mut dyn Conn) -> Result<Vec<(String, String, String)>, StoreError> {
    conn.query(
        "SELECT flow_id, action_id, COALESCE(reason, 'disabled') FROM webhook_destinations \
         WHERE disabled IS NOT NULL",
        params![],
    )?
    .iter()
    .map(|r| Ok((r.text(0)?, r.text(1)?, r.text(2)?)))
    .collect()
}

/// What happens to a delivery after an attempt (or instead of one).
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Succeeded,
    /// Try again at `due`.
    Retry {
        due: i64,
    },
    /// Final: `skipped` or `failed`, with the reason.
    Final {
        status: &'static str,
        reason: String,
    },
    /// Final, and the destination is disabled (410).
    Gone {
        reason: String,
    },
    /// Not attempted (breaker open, host saturated): try at `due`.
    Defer {
        due: i64,
    },
}

/// One attempt as sent and answered.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AttemptLog {
    pub at: i64,
    /// JSON `[[name, value], …]`, secrets redacted.
    pub request_headers: String,
    pub status_code: Option<i64>,
    pub latency_us: Option<i64>,
    pub response_headers: Option<String>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub outcome: &'static str,
}

/// An attempt's result for [`record`].
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The lease owner that claimed it.
    pub owner: String,
    pub delivery: Claimed,
    /// `None` when nothing was sent (deferred).
    pub attempt: Option<AttemptLog>,
    pub next: Next,
    /// Profile properties taken from the response (`response_to_profile`).
    pub profile_properties: Option<Map<String, Value>>,
}

/// Writes a batch of attempts and their consequences while each claimer
/// still holds its lease; a delivery whose lease was lost is left alone (its new
/// owner will send it again, with the same `webhook-id`).
pub fn record(
    ctx: &mut WriteCtx<'_>,
    batch: &[Recorded],
    now: i64,
) -> Result<RecordedBatch, StoreError> {
    let rows: Vec<Outcome<'_>> = batch.iter().map(|r| Outcome::of(r, now)).collect();
    let updated = update_outcomes(ctx.conn, &rows, now)?;
    let mut written = 0;
    let mut attempts = Vec::new();
    let mut finishing = Vec::new();
    let mut inputs = Vec::new();
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    for o in &rows {
        let (r, d) = (o.recorded, &o.recorded.delivery);
        if !updated.contains(&d.id) || !seen.insert(d.id.as_str()) {
            continue;
        }
        written += 1;
        if let Some(a) = &r.attempt {
            attempts.push((d, a));
        }
        if let Next::Gone { reason } = &r.next {
            ctx.conn.execute(
                "INSERT INTO webhook_destinations (flow_id, action_id, account_id, disabled, reason, updated) \
                 VALUES ($1, $2, $3, $4, $5, $4) \
                 ON CONFLICT (flow_id, action_id) DO UPDATE SET disabled = $4, reason = $5, updated = $4",
                params![&d.flow_id, &d.action_id, &d.account_id, now, reason],
            )?;
        }
        if let Some(props) = &r.profile_properties {
            merge_properties(ctx, &d.profile_id, props, now)?;
        }
        let run_input = match r.next {
            Next::Succeeded => input::DELIVERED,
            Next::Final { .. } | Next::Gone { .. } => input::SKIPPED,
            Next::Retry { .. } | Next::Defer { .. } => continue,
        };
        if d.finishes_run {
            finishing.push((d, run_input, r.owner.as_str()));
        } else {
            inputs.push((d, run_input));
        }
    }
    insert_attempts(ctx.conn, &attempts)?;
    let finished = finish_runs(ctx.conn, &finishing, now)?;
    // A run that is not where the delivery left it (it cannot be: it
    // waits) gets the input the engine's way rather than being stuck.
    for (d, run_input, _) in finishing {
        if !finished.contains(&d.run_id) {
            inputs.push((d, run_input));
        }
    }
    for (d, run_input) in &inputs {
        crate::runs::deliver_input(ctx.conn, &d.run_id, &d.action_id, run_input, now)?;
    }
    Ok(RecordedBatch {
        written,
        to_engine: inputs.len(),
    })
}

/// What [`record`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedBatch {
    /// Deliveries whose outcome was recorded.
    pub written: usize,
    /// Runs given the delivery's input for the engine to apply (their next
    /// step is the engine's); the caller wakes the engine for them.
    pub to_engine: usize,
}

/// One delivery's new row values, from its attempt's result.
struct Outcome<'a> {
    recorded: &'a Recorded,
    status: &'static str,
    due: Option<i64>,
    error: Option<String>,
    finished: Option<i64>,
}

impl<'a> Outcome<'a> {
    fn of(r: &'a Recorded, now: i64) -> Self {
        let (status, due, error, finished) = match &r.next {
            Next::Succeeded => (status::SUCCEEDED, None, None, Some(now)),
            Next::Retry { due } | Next::Defer { due } => (status::PENDING, Some(*due), None, None),
            Next::Final { status, reason } => (*status, None, Some(reason.clone()), Some(now)),
            Next::Gone { reason } => (status::SKIPPED, None, Some(reason.clone()), Some(now)),
        };
        let error = error.or_else(|| r.attempt.as_ref().and_then(|a| a.error.clone()));
        Self {
            recorded: r,
            status,
            due,
            error,
            finished,
        }
    }
}

/// Writes the outcomes of deliveries whose claimer still holds the lease;
/// returns their ids.
fn update_outcomes(
    conn: &mut dyn Conn,
    rows: &[Outcome<'_>],
    now: i64,
) -> Result<std::collections::HashSet<String>, StoreError> {
    use crate::runs::{row_chunks, shaped, typed_values};
    const COLS: usize = 8;
    let mut out = std::collections::HashSet::with_capacity(rows.len());
    for chunk in row_chunks(rows) {
        let sql = shaped("update_outcomes", chunk.len(), || {
            let values = typed_values(
                2,
                chunk.len(),
                &[false, false, false, true, true, false, true, true],
            );
            format!(
                "UPDATE deliveries SET status = v.column3, attempts = deliveries.attempts + v.column4, \
                 last_status_code = COALESCE(v.column5, deliveries.last_status_code), \
                 last_error = v.column6, due = v.column7, finished = v.column8, \
                 lease_owner = NULL, lease_until = NULL, updated = $1 \
                 FROM (VALUES {values}) AS v \
                 WHERE deliveries.id = v.column1 AND deliveries.lease_owner = v.column2 \
                 AND deliveries.status = 'pending' RETURNING deliveries.id"
            )
        });
        let mut p: Vec<Param<'_>> = Vec::with_capacity(1 + chunk.len() * COLS);
        p.push(Param::Int(now));
        for o in chunk {
            let r = o.recorded;
            p.extend([
                Param::Text(&r.delivery.id),
                Param::Text(&r.owner),
                Param::Text(o.status),
                Param::Int(i64::from(r.attempt.is_some())),
                Param::from(r.attempt.as_ref().and_then(|a| a.status_code)),
                Param::from(&o.error),
                Param::from(o.due),
                Param::from(o.finished),
            ]);
        }
        for r in conn.query(&sql, &p)? {
            out.insert(r.text(0)?);
        }
    }
    Ok(out)
}

/// Appends each delivery's attempt to its log.
fn insert_attempts(
    conn: &mut dyn Conn,
    rows: &[(&Claimed, &AttemptLog)],
) -> Result<(), StoreError> {
    use crate::runs::{row_chunks, shaped, values_list};
    const COLS: usize = 10;
    for chunk in row_chunks(rows) {
        let sql = shaped("insert_attempts", chunk.len(), || {
            format!(
                "INSERT INTO delivery_attempts (delivery_id, n, at, request_headers, status_code, \
                 latency_us, response_headers, response_body, error, outcome) VALUES {} \
                 ON CONFLICT (delivery_id, n) DO NOTHING",
                values_list(1, chunk.len(), COLS)
            )
        });
        let mut p: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * COLS);
        for (d, a) in chunk {
            p.extend([
                Param::Text(&d.id),
                Param::Int(d.attempts + 1),
                Param::Int(a.at),
                Param::Text(&a.request_headers),
                Param::from(a.status_code),
                Param::from(a.latency_us),
                Param::from(&a.response_headers),
                Param::from(&a.response_body),
                Param::from(&a.error),
                Param::Text(a.outcome),
            ]);
        }
        conn.execute(&sql, &p)?;
    }
    Ok(())
}

/// Ends runs whose last action was the webhook just delivered or skipped
/// (what the engine would do on that input): the run done and one step
/// row each, no claim. A run that moved on meanwhile is left alone. No
/// RETURNING per row: the step number is the one the run had when the
/// delivery was written, and matching it keeps the numbering right.
/// Returns the ids of the runs ended.
fn finish_runs(
    conn: &mut dyn Conn,
    rows: &[(&Claimed, &str, &str)],
    now: i64,
) -> Result<std::collections::HashSet<String>, StoreError> {
    use crate::runs::{insert_steps, StepRow};
    // One UPDATE per run: an UPDATE … FROM (VALUES …) here was planned as
    // a scan of `runs` by SQLite (measured: 60% of the writer's time).
    let mut out = std::collections::HashSet::with_capacity(rows.len());
    for (d, _, owner) in rows {
        let n = conn.execute(
            "UPDATE runs SET state = 'done', current_action = NULL, active = 0, due = NULL, \
             input = NULL, lease_owner = NULL, lease_until = NULL, last_worker = $3, \
             step_count = $5 + 1, updated = $4 \
             WHERE id = $1 AND current_action = $2 AND state = 'awaiting-delivery' AND step_count = $5",
            params![&d.run_id, &d.action_id, *owner, now, d.run_steps],
        )?;
        if n == 1 {
            out.insert(d.run_id.clone());
        }
    }
    let steps: Vec<StepRow> = rows
        .iter()
        .filter(|(d, _, _)| out.contains(&d.run_id))
        .map(|(d, run_input, _)| StepRow {
            run_id: d.run_id.clone(),
            n: d.run_steps,
            action_id: d.action_id.clone(),
            outcome: if *run_input == input::DELIVERED {
                "delivered"
            } else {
                "delivery skipped"
            }
            .into(),
            at: now,
            detail: None,
        })
        .collect();
    insert_steps(conn, &steps.iter().collect::<Vec<_>>())?;
    Ok(out)
}

/// Writes `props` into a profile's custom properties (the response mapping),
/// read and written inside the transaction so a concurrent update survives.
fn merge_properties(
    ctx: &mut WriteCtx<'_>,
    profile_id: &str,
    props: &Map<String, Value>,
    now: i64,
) -> Result<(), StoreError> {
    let Some(row) = ctx.conn.query_opt(
        "SELECT properties FROM profiles WHERE id = $1",
        params![profile_id],
    )?
    else {
        return Ok(());
    };
    let mut current = match row.json(0)? {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (k, v) in props {
        current.insert(k.clone(), v.clone());
    }
    ctx.conn.execute(
        "UPDATE profiles SET properties = $2, updated = $3 WHERE id = $1",
        params![profile_id, &Value::Object(current).to_string(), now],
    )?;
    crate::profiles::forget_applied(ctx.cache, profile_id);
    Ok(())
}

/// A delivery as the log shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryView {
    pub id: String,
    pub run_id: String,
    pub flow_id: Option<String>,
    pub action_id: String,
    pub profile_id: Option<String>,
    pub url: String,
    pub method: String,
    pub headers: Value,
    pub body: String,
    pub status: String,
    pub attempts: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub next_attempt: Option<i64>,
    pub created: i64,
    pub updated: i64,
    pub finished: Option<i64>,
}

const VIEW_COLUMNS: &str =
    "id, run_id, flow_id, action_id, profile_id, url, method, headers, body, \
     status, attempts, last_status_code, last_error, due, created, updated, finished";

fn view_from_row(r: &Row) -> Result<DeliveryView, StoreError> {
    Ok(DeliveryView {
        id: r.text(0)?,
        run_id: r.text(1)?,
        flow_id: r.opt_text(2)?,
        action_id: r.text(3)?,
        profile_id: r.opt_text(4)?,
        url: r.text(5)?,
        method: r.text(6)?,
        headers: r.json(7)?,
        body: r.text(8)?,
        status: r.text(9)?,
        attempts: r.int(10)?,
        last_status_code: r.opt_int(11)?,
        last_error: r.opt_text(12)?,
        next_attempt: r.opt_int(13)?,
        created: r.int(14)?,
        updated: r.int(15)?,
        finished: r.opt_int(16)?,
    })
}

/// Filters of the delivery log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogFilter {
    pub flow_id: Option<String>,
    pub action_id: Option<String>,
    pub profile_id: Option<String>,
    pub status: Option<String>,
    /// Created at or after / before (µs).
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Keyset position: rows strictly before (created, id), newest first.
    pub before: Option<(i64, String)>,
}

/// Newest first; `limit` rows.
pub fn list(
    conn: &mut dyn Conn,
    account: &str,
    f: &LogFilter,
    limit: usize,
) -> Result<Vec<DeliveryView>, StoreError> {
    use crate::db::Param;
    let mut sql = format!("SELECT {VIEW_COLUMNS} FROM deliveries WHERE account_id = $1");
    let mut p: Vec<Param<'_>> = vec![Param::Text(account)];
    for (col, v) in [
        ("flow_id", &f.flow_id),
        ("action_id", &f.action_id),
        ("profile_id", &f.profile_id),
        ("status", &f.status),
    ] {
        if let Some(v) = v {
            p.push(Param::Text(v));
            sql.push_str(&format!(" AND {col} = ${}", p.len()));
        }
    }
    if let Some(s) = f.since {
        p.push(Param::Int(s));
        sql.push_str(&format!(" AND created >= ${}", p.len()));
    }
    if let Some(u) = f.until {
        p.push(Param::Int(u));
        sql.push_str(&format!(" AND created < ${}", p.len()));
    }
    if let Some((at, id)) = &f.before {
        p.push(Param::Int(*at));
        p.push(Param::Text(id));
        let (i, j) = (p.len() - 1, p.len());
        sql.push_str(&format!(
            " AND (created < ${i} OR (created = ${i} AND id < ${j}))"
        ));
    }
    sql.push_str(&format!(" ORDER BY created DESC, id DESC LIMIT {limit}"));
    conn.query(&sql, &p)?.iter().map(view_from_row).collect()
}

pub fn get(
    conn: &mut dyn Conn,
    account: &str,
    id: &str,
) -> Result<Option<DeliveryView>, StoreError> {
    conn.query_opt(
        &format!("SELECT {VIEW_COLUMNS} FROM deliveries WHERE account_id = $1 AND id = $2"),
        params![account, id],
    )?
    .map(|r| view_from_row(&r))
    .transpose()
}

/// One stored attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptView {
    pub n: i64,
    pub log: AttemptLogOwned,
}

/// [`AttemptLog`] as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptLogOwned {
    pub at: i64,
    pub request_headers: Value,
    pub status_code: Option<i64>,
    pub latency_us: Option<i64>,
    pub response_headers: Option<Value>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub outcome: String,
}

pub fn attempts(conn: &mut dyn Conn, delivery_id: &str) -> Result<Vec<AttemptView>, StoreError> {
    conn.query(
        "SELECT n, at, request_headers, status_code, latency_us, response_headers, response_body, \
         error, outcome FROM delivery_attempts WHERE delivery_id = $1 ORDER BY n",
        params![delivery_id],
    )?
    .iter()
    .map(|r| {
        Ok(AttemptView {
            n: r.int(0)?,
            log: AttemptLogOwned {
                at: r.int(1)?,
                request_headers: r.json(2)?,
                status_code: r.opt_int(3)?,
                latency_us: r.opt_int(4)?,
                response_headers: r.opt_text(5)?.and_then(|t| serde_json::from_str(&t).ok()),
                response_body: r.opt_text(6)?,
                error: r.opt_text(7)?,
                outcome: r.text(8)?,
            },
        })
    })
    .collect()
}

/// Sends a delivery again now, as a new series of attempts. Returns false
/// when it does not exist.
pub fn retry(conn: &mut dyn Conn, account: &str, id: &str, now: i64) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE deliveries SET status = 'pending', due = $3, retry_base = attempts, finished = NULL, \
         lease_owner = NULL, lease_until = NULL, updated = $3 WHERE account_id = $1 AND id = $2",
        params![account, id, now],
    )? == 1)
}

/// Sends again every failed or skipped delivery of an action created in
/// `[since, until)`. Returns how many.
pub fn replay(
    conn: &mut dyn Conn,
    account: &str,
    flow_id: &str,
    action_id: &str,
    since: i64,
    until: i64,
    now: i64,
) -> Result<u64, StoreError> {
    Ok(conn.execute(
        "UPDATE deliveries SET status = 'pending', due = $6, retry_base = attempts, finished = NULL, \
         lease_owner = NULL, lease_until = NULL, updated = $6 \
         WHERE account_id = $1 AND flow_id = $2 AND action_id = $3 AND created >= $4 AND created < $5 \
         AND status IN ('failed', 'skipped')",
        params![account, flow_id, action_id, since, until, now],
    )?)
}

/// A send-webhook action's destination state.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    pub disabled: Option<i64>,
    pub reason: Option<String>,
}

pub fn destination(
    conn: &mut dyn Conn,
    account: &str,
    flow_id: &str,
    action_id: &str,
) -> Result<Destination, StoreError> {
    let row = conn.query_opt(
        "SELECT disabled, reason FROM webhook_destinations \
         WHERE account_id = $1 AND flow_id = $2 AND action_id = $3",
        params![account, flow_id, action_id],
    )?;
    Ok(match row {
        Some(r) => Destination {
            disabled: r.opt_int(0)?,
            reason: r.opt_text(1)?,
        },
        None => Destination {
            disabled: None,
            reason: None,
        },
    })
}

/// Re-enables a destination disabled by a 410.
pub fn enable_destination(
    conn: &mut dyn Conn,
    account: &str,
    flow_id: &str,
    action_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE webhook_destinations SET disabled = NULL, reason = NULL, updated = $4 \
         WHERE account_id = $1 AND flow_id = $2 AND action_id = $3",
        params![account, flow_id, action_id, now],
    )?;
    Ok(())
}

/// The secrets that sign now, newest first: the current one and those
/// still inside their rotation window.
pub fn signing_secrets(
    conn: &mut dyn Conn,
    account: &str,
    now: i64,
) -> Result<Vec<String>, StoreError> {
    conn.query(
        "SELECT secret FROM signing_secrets WHERE account_id = $1 AND (expires IS NULL OR expires > $2) \
         ORDER BY created DESC, id DESC",
        params![account, now],
    )?
    .iter()
    .map(|r| Ok(r.text(0)?))
    .collect()
}

/// Makes `secret` the account's secret if it has none yet. Returns the
/// current secret.
pub fn ensure_secret(
    conn: &mut dyn Conn,
    account: &str,
    secret: &str,
    now: i64,
) -> Result<String, StoreError> {
    if let Some(s) = signing_secrets(conn, account, now)?.into_iter().next() {
        return Ok(s);
    }
    insert_secret(conn, account, secret, now)?;
    Ok(secret.to_owned())
}

fn insert_secret(
    conn: &mut dyn Conn,
    account: &str,
    secret: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO signing_secrets (id, account_id, secret, created, expires) VALUES ($1, $2, $3, $4, NULL)",
        params![&crate::new_ulid(), account, secret, now],
    )?;
    Ok(())
}

/// Makes `secret` current; the secrets signing until now keep signing
/// until `old_until`.
pub fn rotate_secret(
    conn: &mut dyn Conn,
    account: &str,
    secret: &str,
    old_until: i64,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE signing_secrets SET expires = $2 WHERE account_id = $1 AND (expires IS NULL OR expires > $2)",
        params![account, old_until],
    )?;
    insert_secret(conn, account, secret, now)
}

/// How far behind delivery is: due pending deliveries, and the oldest due
/// time among them.
pub fn queue_depth(conn: &mut dyn Conn, now: i64) -> Result<(i64, Option<i64>), StoreError> {
    let r = conn.query_opt(
        "SELECT COUNT(*), MIN(due) FROM deliveries WHERE status = 'pending' AND due <= $1",
        params![now],
    )?;
    Ok(match r {
        Some(r) => (r.int(0)?, r.opt_int(1)?),
        None => (0, None),
    })
}

/// The organization's settings for templates: name and url.
pub fn organization(conn: &mut dyn Conn, account: &str) -> Result<Value, StoreError> {
    let r = conn.query_opt(
        "SELECT id, name, url FROM accounts WHERE id = $1",
        params![account],
    )?;
    Ok(match r {
        Some(r) => serde_json::json!({
            "id": r.text(0)?,
            "name": r.text(1)?,
            "url": r.opt_text(2)?.unwrap_or_default(),
        }),
        None => Value::Object(Map::new()),
    })
}
