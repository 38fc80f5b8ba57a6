//! The writer's floor per webhook delivery on SQLite: only the SQL the
//! delivery path must write, through the real writer (group commit,
//! savepoints, `synchronous=FULL`), with none of the engine, HTTP or
//! template work around it. Issue #7's throughput target needs the whole
//! writer thread under 40 µs per delivery on two cores; this shows how
//! much of that the rows alone take.
//!
//! Per delivery, in three transactions as the pipeline writes them:
//! - ingest: a new profile and its event (one statement each);
//! - dispatch: the run, its first step and the delivery (multi-row), the
//!   events cursor;
//! - record: the delivery's outcome (multi-row `UPDATE … FROM VALUES`), its
//!   attempt (multi-row), the run's end (one `UPDATE` each) and last step.
//!
//! `cargo run --release -p outflow-store --example write_floor -- --deliveries 100000 --batch 500`
//!
//! What-ifs, for deciding which rows the delivery path could stop writing
//! (each `--without X` may be repeated; none is what Outflow does):
//! - `--without attempt-row`: the first attempt's log kept in the delivery
//!   row (one more column in its UPDATE) instead of a `delivery_attempts` row;
//! - `--without log-indexes`: no `deliveries` indexes for the log's filters
//!   (account + time, flow + action, profile);
//! - `--without run-indexes`: no `runs` indexes by flow + profile and by profile;
//! - `--without steps`: no `run_steps` rows.

use outflow_store::db::Param;
use outflow_store::{params, Store, StoreError, WriteCtx};
use std::time::Instant;

/// The `--without` what-ifs given.
#[derive(Clone, Copy, Default)]
struct Without {
    attempt_row: bool,
    steps: bool,
    log_indexes: bool,
    run_indexes: bool,
}

fn without() -> anyhow::Result<Without> {
    let v: Vec<String> = std::env::args().collect();
    let mut w = Without::default();
    for pair in v.windows(2).filter(|p| p[0] == "--without") {
        match pair[1].as_str() {
            "attempt-row" => w.attempt_row = true,
            "steps" => w.steps = true,
            "log-indexes" => w.log_indexes = true,
            "run-indexes" => w.run_indexes = true,
            other => anyhow::bail!(
                "--without {other}: expected attempt-row, steps, log-indexes or run-indexes"
            ),
        }
    }
    Ok(w)
}

fn arg(name: &str, default: usize) -> usize {
    let v: Vec<String> = std::env::args().collect();
    v.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

/// CPU seconds of the thread named `name` (Linux `/proc`).
fn thread_cpu(name: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut total = 0.0;
    for task in dir.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        if let Some(close) = stat.rfind(')') {
            let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            total += (ticks(11) + ticks(12)) / 100.0;
        }
    }
    total
}

/// `($1, …, $c), ($c+1, …)`: `rows` tuples of `cols` placeholders.
fn values(rows: usize, cols: usize, first: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (0..cols)
                .map(|c| format!("${}", first + r * cols + c))
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

thread_local! {
    static SHAPES: std::cell::RefCell<std::collections::HashMap<(&'static str, usize), std::rc::Rc<str>>> =
        Default::default();
}

/// The SQL text `name` for `rows` rows, built once per shape on the writer
/// thread (as the store does), so building it is not counted as the floor.
fn shaped(name: &'static str, rows: usize, build: impl FnOnce() -> String) -> std::rc::Rc<str> {
    SHAPES.with(|m| {
        m.borrow_mut()
            .entry((name, rows))
            .or_insert_with(|| build().into())
            .clone()
    })
}

struct Ids {
    profile: String,
    event: String,
    run: String,
    delivery: String,
}

const ACCOUNT: &str = "acct_floor";
const METRIC: &str = "metric_floor";
const FLOW: &str = "flow_floor";
const BODY: &str = r#"{"sent": 0, "email": "t123456@bench.io", "n": 123456}"#;
const REQUEST_HEADERS: &str = r#"[["Content-Type","application/json"],["webhook-id","01KBJX3S4Q6Y2C8VZ5M7N9P1R3"],["webhook-timestamp","1764777600"],["webhook-signature","v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="]]"#;
const RESPONSE_HEADERS: &str = r#"[["content-length","0"]]"#;
/// `--without attempt-row`: the same log as one JSON text in the delivery row.
const FIRST_ATTEMPT: &str = r#"{"at":1764777600000000,"request_headers":[["Content-Type","application/json"],["webhook-id","01KBJX3S4Q6Y2C8VZ5M7N9P1R3"],["webhook-timestamp","1764777600"],["webhook-signature","v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="]],"status_code":200,"latency_us":812,"response_headers":[["content-length","0"]],"response_body":"","outcome":"succeeded"}"#;

fn ingest(ctx: &mut WriteCtx<'_>, batch: &[Ids], now: i64) -> Result<(), StoreError> {
    for (i, d) in batch.iter().enumerate() {
        let email = format!("{}@bench.io", d.profile);
        ctx.conn.execute(
            "INSERT INTO profiles (id, account_id, email, phone_number, external_id, anonymous_id, \
             attributes, properties, subscriptions, created, updated) \
             VALUES ($1, $2, $3, NULL, NULL, NULL, '{}', '{}', '{}', $4, $4)",
            params![&d.profile, ACCOUNT, &email, now],
        )?;
        let props = format!("{{\"n\": {i}}}");
        ctx.conn.execute(
            "INSERT INTO events (id, account_id, metric_id, profile_id, time, value, value_currency, \
             unique_key, properties, backfill, created) VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6, $7, 0, $5) \
             ON CONFLICT (profile_id, metric_id, unique_key) DO NOTHING",
            params![&d.event, ACCOUNT, METRIC, &d.profile, now, &d.event, &props],
        )?;
    }
    Ok(())
}

fn dispatch(
    ctx: &mut WriteCtx<'_>,
    batch: &[Ids],
    now: i64,
    cursor: i64,
    w: Without,
) -> Result<(), StoreError> {
    for chunk in batch.chunks(256) {
        let sql = shaped("runs", chunk.len(), || {
            format!(
            "INSERT INTO runs (id, account_id, flow_id, flow_version, profile_id, trigger_event_id, \
             current_action, state, due, entered, event, active, step_count, updated, lease_owner, lease_until) \
             VALUES {}",
            values(chunk.len(), 16, 1)
        )
        });
        let mut p: Vec<Param<'_>> = Vec::new();
        for d in chunk {
            p.extend([
                Param::Text(&d.run),
                Param::Text(ACCOUNT),
                Param::Text(FLOW),
                Param::Int(1),
                Param::Text(&d.profile),
                Param::Text(&d.event),
                Param::Text("1"),
                Param::Text("awaiting-delivery"),
                Param::Null,
                Param::Int(now),
                Param::Text(r#"{"n": 1}"#),
                Param::Int(1),
                Param::Int(1),
                Param::Int(now),
                Param::Null,
                Param::Null,
            ]);
        }
        ctx.conn.execute(&sql, &p)?;
        if !w.steps {
            steps(ctx, chunk, 0, now)?;
        }
        let sql = shaped("deliveries", chunk.len(), || {
            format!(
            "INSERT INTO deliveries (id, account_id, run_id, flow_id, profile_id, action_id, url, \
             method, headers, body, response_map, status, attempts, last_error, due, finished, \
             created, updated, lease_owner, lease_until) VALUES {} \
             ON CONFLICT (run_id, action_id) DO NOTHING RETURNING id",
            values(chunk.len(), 20, 1)
        )
        });
        let mut p: Vec<Param<'_>> = Vec::new();
        for d in chunk {
            p.extend([
                Param::Text(&d.delivery),
                Param::Text(ACCOUNT),
                Param::Text(&d.run),
                Param::Text(FLOW),
                Param::Text(&d.profile),
                Param::Text("1"),
                Param::Text("http://127.0.0.1:8080/hook"),
                Param::Text("POST"),
                Param::Text("[]"),
                Param::Text(BODY),
                Param::Null,
                Param::Text("pending"),
                Param::Int(0),
                Param::Null,
                Param::Int(now),
                Param::Null,
                Param::Int(now),
                Param::Int(now),
                Param::Text("w-floor"),
                Param::Int(now + 120_000_000),
            ]);
        }
        ctx.conn.query(&sql, &p)?;
    }
    ctx.conn.execute(
        "UPDATE dispatch_cursors SET position = $2, updated = $3 WHERE feed = $1",
        params!["events", cursor, now],
    )?;
    Ok(())
}

fn steps(ctx: &mut WriteCtx<'_>, chunk: &[Ids], n: i64, now: i64) -> Result<(), StoreError> {
    let sql = shaped("steps", chunk.len(), || {
        format!(
            "INSERT INTO run_steps (run_id, n, action_id, outcome, at, detail) VALUES {} \
         ON CONFLICT (run_id, n) DO NOTHING",
            values(chunk.len(), 6, 1)
        )
    });
    let mut p: Vec<Param<'_>> = Vec::new();
    for d in chunk {
        p.extend([
            Param::Text(&d.run),
            Param::Int(n),
            Param::Text("1"),
            Param::Text(if n == 0 {
                "webhook queued"
            } else {
                "delivered"
            }),
            Param::Int(now),
            Param::Null,
        ]);
    }
    ctx.conn.execute(&sql, &p)?;
    Ok(())
}

fn record(ctx: &mut WriteCtx<'_>, batch: &[Ids], now: i64, w: Without) -> Result<(), StoreError> {
    for chunk in batch.chunks(256) {
        let sql = shaped("outcomes", chunk.len(), || {
            let rows: Vec<String> = (0..chunk.len())
                .map(|r| format!("(${}, ${})", 3 + 2 * r, 4 + 2 * r))
                .collect();
            format!(
                "UPDATE deliveries SET status = 'succeeded', attempts = deliveries.attempts + 1, \
             last_status_code = 200, last_error = NULL, due = NULL, finished = $1, \
             lease_owner = NULL, lease_until = NULL, updated = $1{} \
             FROM (VALUES {}) AS v \
             WHERE deliveries.id = v.column1 AND deliveries.lease_owner = v.column2 \
             AND deliveries.status = 'pending' RETURNING deliveries.id",
                if w.attempt_row {
                    ", first_attempt = $2"
                } else {
                    ""
                },
                rows.join(", ")
            )
        });
        let mut p: Vec<Param<'_>> = vec![Param::Int(now), Param::Text(FIRST_ATTEMPT)];
        for d in chunk {
            p.extend([Param::Text(&d.delivery), Param::Text("w-floor")]);
        }
        ctx.conn.query(&sql, &p)?;
        if !w.attempt_row {
            attempt_rows(ctx, chunk, now)?;
        }
        for d in chunk {
            ctx.conn.execute(
                "UPDATE runs SET state = 'done', current_action = NULL, active = 0, due = NULL, \
                 input = NULL, lease_owner = NULL, lease_until = NULL, last_worker = $3, \
                 step_count = $5 + 1, updated = $4 \
                 WHERE id = $1 AND current_action = $2 AND state = 'awaiting-delivery' AND step_count = $5",
                params![&d.run, "1", "w-floor", now, 1i64],
            )?;
        }
        if !w.steps {
            steps(ctx, chunk, 1, now)?;
        }
    }
    Ok(())
}

/// The attempt's row in `delivery_attempts`, as Outflow writes it.
fn attempt_rows(ctx: &mut WriteCtx<'_>, chunk: &[Ids], now: i64) -> Result<(), StoreError> {
    let sql = shaped("attempts", chunk.len(), || {
        format!(
            "INSERT INTO delivery_attempts (delivery_id, n, at, request_headers, status_code, \
         latency_us, response_headers, response_body, error, outcome) VALUES {} \
         ON CONFLICT (delivery_id, n) DO NOTHING",
            values(chunk.len(), 10, 1)
        )
    });
    let mut p: Vec<Param<'_>> = Vec::new();
    for d in chunk {
        p.extend([
            Param::Text(&d.delivery),
            Param::Int(1),
            Param::Int(now),
            Param::Text(REQUEST_HEADERS),
            Param::Int(200),
            Param::Int(812),
            Param::Text(RESPONSE_HEADERS),
            Param::Text(""),
            Param::Null,
            Param::Text("succeeded"),
        ]);
    }
    ctx.conn.execute(&sql, &p)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let deliveries = arg("--deliveries", 100_000);
    let batch = arg("--batch", 500).max(1);
    let w = without()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&format!("sqlite://{}/floor.db", dir.path().display())).await?;
        let now = 1_764_777_600_000_000i64;
        store
            .write(move |ctx| {
                if w.attempt_row {
                    ctx.conn.batch("ALTER TABLE deliveries ADD COLUMN first_attempt TEXT")?;
                }
                if w.log_indexes {
                    ctx.conn.batch(
                        "DROP INDEX deliveries_account_created; DROP INDEX deliveries_flow_action; \
                         DROP INDEX deliveries_profile;",
                    )?;
                }
                if w.run_indexes {
                    ctx.conn.batch("DROP INDEX runs_flow_profile; DROP INDEX runs_profile;")?;
                }
                ctx.conn.execute(
                    "INSERT INTO accounts (id, name, public_key, created) VALUES ($1, 'floor', 'PkFloor', $2)",
                    params![ACCOUNT, now],
                )?;
                ctx.conn.execute(
                    "INSERT INTO metrics (id, account_id, name, integration, created, updated) VALUES ($1, $2, 'Floor', NULL, $3, $3)",
                    params![METRIC, ACCOUNT, now],
                )?;
                Ok(())
            })
            .await?;
        // Ids and emails in creation order, as ids made at write time are
        // (ULIDs start with the time): every insert appends to its indexes.
        // The floor, not a worst case.
        let ids: Vec<Ids> = (0..deliveries)
            .map(|n| Ids {
                profile: format!("p{n:025}"),
                event: format!("e{n:025}"),
                run: format!("r{n:025}"),
                delivery: format!("d{n:025}"),
            })
            .collect();
        let ids = std::sync::Arc::new(ids);
        let cpu = thread_cpu("outflow-writer");
        let start = Instant::now();
        // Writer CPU by phase: each write is awaited, so the writer does
        // nothing else in between.
        let mut phases = [0.0f64; 3];
        for b in 0..deliveries.div_ceil(batch) {
            let (lo, hi) = (b * batch, ((b + 1) * batch).min(deliveries));
            let i = ids.clone();
            let t = thread_cpu("outflow-writer");
            store
                .write(move |ctx| ingest(ctx, &i[lo..hi], now))
                .await
                .map_err(|e| anyhow::anyhow!("ingest {lo}: {e}"))?;
            let i = ids.clone();
            let u = thread_cpu("outflow-writer");
            store
                .write(move |ctx| dispatch(ctx, &i[lo..hi], now, hi as i64, w))
                .await
                .map_err(|e| anyhow::anyhow!("dispatch {lo}: {e}"))?;
            let i = ids.clone();
            let v = thread_cpu("outflow-writer");
            store
                .write(move |ctx| record(ctx, &i[lo..hi], now, w))
                .await
                .map_err(|e| anyhow::anyhow!("record {lo}: {e}"))?;
            let w = thread_cpu("outflow-writer");
            phases[0] += u - t;
            phases[1] += v - u;
            phases[2] += w - v;
        }
        let took = start.elapsed().as_secs_f64();
        let cpu = thread_cpu("outflow-writer") - cpu;
        let per = |s: f64| s * 1e6 / deliveries as f64;
        println!(
            "{deliveries} deliveries in batches of {batch}{}: {:.2} s, writer CPU {:.1} µs per delivery \
             (ingest {:.1}, dispatch {:.1}, record {:.1}) = {:.0} deliveries/s by the writer's CPU alone",
            std::env::args()
                .collect::<Vec<_>>()
                .windows(2)
                .filter(|p| p[0] == "--without")
                .map(|p| format!(", without {}", p[1]))
                .collect::<String>(),
            took,
            per(cpu),
            per(phases[0]),
            per(phases[1]),
            per(phases[2]),
            deliveries as f64 / cpu.max(1e-9)
        );
        anyhow::Ok(())
    })
}
