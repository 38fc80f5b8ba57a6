//! Issue #4, acceptance 5: how many due runs the engine wakes and advances
//! one step per second with N runs in the store, and the process's RSS
//! while holding them.
//!
//! Setup (not timed): a fresh SQLite store in a temp dir, one account, one
//! live flow (metric trigger → time-delay 1 day → update-profile), N
//! profiles and N runs waiting at the delay, inserted straight into the
//! tables with `INSERT … SELECT` over a recursive counter, a chunk per
//! transaction. Setup runs in a child process (`--setup-only`); the
//! measuring process then opens the full store as a restarted server would
//! (so the writer's identity index of N profiles is loaded), and resets the
//! peak-RSS counter.
//!
//! Timed: the clock moves past the delay and the server's background
//! loops (`Engine::spawn`: triggers, two lanes of due runs, audiences,
//! delivery) run until every run has advanced; `--ticks` calls
//! `Engine::tick` in series instead. Every run is woken, runs the
//! update-profile action (a `run_effects` row and a profile UPDATE) and
//! ends.
//!
//! ```text
//! cargo run --release -p outflow-engine --example runs_bench -- --runs 1000000
//! ```
//!
//! Options: `--runs N` (default 1,000,000), `--batch N` (runs per claim,
//! default the engine's), `--phases` (call the parts of a tick separately
//! and time each), `--dir PATH` (keep the database there instead of a temp
//! dir), `--no-setup` (with `--dir`: use the database already there). Figures: bench/runs/README.md.

use chrono::{DateTime, Duration, Utc};
use outflow_core::clock::to_micros;
use outflow_core::{Clock, ManualClock};
use outflow_engine::{Engine, EngineConfig};
use outflow_store::{params, Store};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// Rows per setup transaction.
const CHUNK: i64 = 100_000;

struct Args {
    runs: i64,
    batch: Option<usize>,
    dir: Option<std::path::PathBuf>,
    setup_only: bool,
    no_setup: bool,
    phases: bool,
    ticks: bool,
}

fn args() -> Args {
    let mut a = Args {
        runs: 1_000_000,
        batch: None,
        dir: None,
        setup_only: false,
        no_setup: false,
        phases: false,
        ticks: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--setup-only" {
            a.setup_only = true;
            continue;
        }
        if flag == "--no-setup" {
            a.no_setup = true;
            continue;
        }
        if flag == "--ticks" {
            a.ticks = true;
            continue;
        }
        if flag == "--phases" {
            a.phases = true;
            a.ticks = true;
            continue;
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--runs" => a.runs = value.replace('_', "").parse().expect("--runs N"),
            "--batch" => a.batch = Some(value.parse().expect("--batch N")),
            "--dir" => a.dir = Some(value.into()),
            other => panic!("unknown option {other} (use --runs N, --batch N, --dir PATH)"),
        }
    }
    a
}

/// A line of /proc/self/status in kB (`VmRSS`, `VmHWM`).
fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// RSS split into anonymous memory (heap, SQLite page caches) and file
/// pages (the database mapped by SQLite's mmap reads, shared and evictable).
fn rss_line() -> String {
    format!(
        "RSS {:.0} MB (anon {:.0} MB, file {:.0} MB)",
        mb(status_kb("VmRSS:")),
        mb(status_kb("RssAnon:")),
        mb(status_kb("RssFile:"))
    )
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0), so the peak measured
/// covers the timed phase only, not the bulk setup.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
        .expect("time")
        .to_utc()
}

async fn setup(store: &Store, runs: i64) -> (String, String) {
    let now = to_micros(t0());
    let due = to_micros(t0() + Duration::days(1));
    let account = store
        .write(move |ctx| {
            outflow_store::accounts::bootstrap(ctx.conn, Some("pk_bench_runs_0123456789"), now)
        })
        .await
        .expect("bootstrap")
        .expect("fresh account")
        .account_id;
    let definition = json!({
        "triggers": [{"type": "metric", "id": "Mbench"}],
        "actions": [
            {"id": "1", "type": "time-delay", "links": {"next": "2"},
             "data": {"unit": "days", "value": 1, "timezone": "UTC"}},
            {"id": "2", "type": "update-profile", "links": {"next": null},
             "data": {"status": "live", "profile_operations": [
                 {"operator": "update", "property_type": "string",
                  "property_key": "Welcomed", "property_value": "yes"}]}}],
        "entry_action_id": "1"
    })
    .to_string();
    let a = account.clone();
    store
        .write(move |ctx| {
            ctx.conn.execute(
                "INSERT INTO metrics (id, account_id, name, created, updated) \
                 VALUES ('Mbench', $1, 'Placed Order', $2, $2)",
                params![&a, now],
            )?;
            ctx.conn.execute(
                "INSERT INTO flows (id, account_id, name, status, archived, trigger_type, trigger_ref, \
                 version, created, updated) \
                 VALUES ('Fbench', $1, 'bench flow', 'live', 0, 'metric', 'Mbench', 1, $2, $2)",
                params![&a, now],
            )?;
            ctx.conn.execute(
                "INSERT INTO flow_versions (flow_id, version, definition, created) VALUES ('Fbench', 1, $1, $2)",
                params![&definition, now],
            )?;
            Ok(())
        })
        .await
        .expect("flow");
    let started = Instant::now();
    let mut from = 0;
    while from < runs {
        let to = (from + CHUNK).min(runs);
        let a = account.clone();
        store
            .write(move |ctx| {
                // One counter CTE per table; ids sort like ULIDs would not,
                // but every lookup is by primary key anyway.
                let counter = "WITH RECURSIVE c(i) AS (SELECT $2 UNION ALL SELECT i + 1 FROM c WHERE i + 1 < $3)";
                ctx.conn.execute(
                    &format!(
                        "{counter} INSERT INTO profiles (id, account_id, email, attributes, properties, \
                         subscriptions, created, updated) \
                         SELECT printf('P%08d', i), $1, printf('bench%08d@example.com', i), \
                         '{{\"first_name\":\"Bench\"}}', '{{\"plan\":\"free\"}}', '{{}}', $4, $4 FROM c"
                    ),
                    params![&a, from, to, now],
                )?;
                ctx.conn.execute(
                    &format!(
                        "{counter} INSERT INTO runs (id, account_id, flow_id, flow_version, profile_id, \
                         trigger_event_id, current_action, state, due, entered, event, active, step_count, updated) \
                         SELECT printf('R%08d', i), $1, 'Fbench', 1, printf('P%08d', i), printf('E%08d', i), \
                         '1', 'waiting', $5, $4, '{{\"$value\":10}}', 1, 1, $4 FROM c"
                    ),
                    params![&a, from, to, now, due],
                )?;
                ctx.conn.execute(
                    &format!(
                        "{counter} INSERT INTO run_steps (run_id, n, action_id, outcome, at, detail) \
                         SELECT printf('R%08d', i), 0, '1', 'delayed', $1, NULL FROM c"
                    ),
                    params![now, from, to],
                )?;
                Ok(())
            })
            .await
            .expect("bulk insert");
        from = to;
    }
    println!(
        "setup: {runs} profiles, {runs} waiting runs, {runs} steps inserted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    (account, "Fbench".to_owned())
}

async fn count(store: &Store, sql: &'static str) -> i64 {
    store
        .read(move |c| {
            Ok(c.query_opt(sql, params![])?
                .map(|r| r.int(0))
                .transpose()?
                .unwrap_or(0))
        })
        .await
        .expect(sql)
}

// The server gives its async workers all cores but one (the writer thread
// takes that one); on a 2-core machine that is one worker thread.
#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args = args();
    let tmp = tempfile_dir(&args);
    let url = format!("sqlite://{}", tmp.path().join("outflow.db").display());
    println!("database: {url}");

    if args.setup_only {
        let store = Store::open(&url).await.expect("store opens");
        setup(&store, args.runs).await;
        return;
    }
    // Setup runs in a child process so that none of its memory is counted
    // here: this process starts like a restarted server on a full store.
    // `--dir PATH --no-setup`: a database set up before (copies of one
    // setup, to compare builds or schema changes on identical files).
    if !args.no_setup {
        let status = std::process::Command::new(std::env::current_exe().expect("own path"))
            .args(["--setup-only", "--runs", &args.runs.to_string(), "--dir"])
            .arg(tmp.path())
            .status()
            .expect("setup process");
        assert!(status.success(), "setup failed");
    }

    // Reopen like a restarted server: migrations checked, identity and
    // metric indexes loaded for every profile.
    let opened = Instant::now();
    let store = Store::open(&url).await.expect("store reopens");
    println!(
        "open: {:.2} s, {}",
        opened.elapsed().as_secs_f64(),
        rss_line()
    );
    let reset = reset_peak_rss();
    let clock = Arc::new(ManualClock::new(t0()));
    let mut config = EngineConfig::default();
    if let Some(b) = args.batch {
        config.batch = b;
    }
    let batch = config.batch;
    let engine = Engine::new(store.clone(), clock.clone(), config).expect("engine");
    // Nothing is due yet: one idle tick builds the flow index.
    let idle = engine.tick().await.expect("tick");
    assert!(idle.is_idle(), "nothing is due before the delay ends");
    let held_kb = status_kb("VmRSS:");
    println!("holding {} runs: {}", args.runs, rss_line());

    clock.advance(Duration::days(1) + Duration::seconds(1));
    let now = clock.now();
    let started = Instant::now();
    let (mut advanced, mut ticks, mut lost) = (0usize, 0usize, 0usize);
    let mut last_report = Instant::now();
    let mut phase = [std::time::Duration::ZERO; 4];
    let engine = Arc::new(engine);
    let mut finished = None;
    if args.ticks {
        loop {
            let t = if args.phases {
                tick_timed(&engine, &store, now, &mut phase).await
            } else {
                engine.tick().await.expect("tick")
            };
            if t.is_idle() {
                break;
            }
            ticks += 1;
            advanced += t.executed.advanced;
            lost += t.executed.lost;
            if last_report.elapsed().as_secs() >= 5 {
                last_report = Instant::now();
                println!(
                    "  {advanced} advanced, {:.0} runs/s so far, {}",
                    advanced as f64 / started.elapsed().as_secs_f64(),
                    rss_line()
                );
            }
        }
    } else {
        // The server's background loops, woken as a moved clock wakes them
        // (the poll interval); done when every run has advanced.
        let worker = engine.clone().spawn().await;
        while (engine.executor.advanced_total() as i64) < args.runs {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            if last_report.elapsed().as_secs() >= 5 {
                last_report = Instant::now();
                println!(
                    "  {} advanced, {:.0} runs/s so far, {}",
                    engine.executor.advanced_total(),
                    engine.executor.advanced_total() as f64 / started.elapsed().as_secs_f64(),
                    rss_line()
                );
            }
        }
        advanced = engine.executor.advanced_total() as usize;
        finished = Some(started.elapsed());
        worker.stop().await;
    }
    let secs = finished.unwrap_or_else(|| started.elapsed()).as_secs_f64();
    assert_eq!(clock.now(), now);
    let done = count(&store, "SELECT COUNT(*) FROM runs WHERE state = 'done'").await;
    let effects = count(&store, "SELECT COUNT(*) FROM run_effects").await;
    let updated = count(
        &store,
        "SELECT COUNT(*) FROM profiles WHERE properties LIKE '%\"Welcomed\":\"yes\"%'",
    )
    .await;
    let peak_kb = status_kb("VmHWM:");
    println!("runs: {}", args.runs);
    if args.ticks {
        println!("batch: {batch} runs per claim, {ticks} ticks in series");
    } else {
        println!("batch: {batch} runs per claim, the server's background loops");
    }
    println!("advanced: {advanced} (lost leases: {lost}) in {secs:.2} s");
    println!("throughput: {:.0} runs/s", advanced as f64 / secs);
    println!("check: {done} runs done, {effects} effects, {updated} profiles updated");
    println!(
        "RSS: holding {:.0} MB, peak {:.0} MB (VmHWM{}); at the end {}",
        mb(held_kb),
        mb(peak_kb),
        if reset { ", reset after open" } else { "" },
        rss_line()
    );
    if args.phases {
        for (name, d) in ["dispatch", "claim", "process", "send"].iter().zip(phase) {
            println!(
                "  {name}: {:.2} s ({:.0}%)",
                d.as_secs_f64(),
                100.0 * d.as_secs_f64() / secs
            );
        }
    }
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average: {}", l.trim());
    }
    assert_eq!(advanced as i64, args.runs, "every run advanced once");
    assert_eq!(done, args.runs);
    assert_eq!(effects, args.runs);
    assert_eq!(updated, args.runs);
}

/// What `Engine::tick` does, with each part timed: dispatch (flow index
/// refresh and feed pass), claim (the lease UPDATE … RETURNING, one
/// commit), process (facts read, `advance`, the batch write, one commit),
/// send (the webhook outbox claim, one commit).
async fn tick_timed(
    engine: &Engine,
    store: &Store,
    now: DateTime<Utc>,
    phase: &mut [std::time::Duration; 4],
) -> outflow_engine::Tick {
    let t = Instant::now();
    engine.dispatcher.refresh(store).await.expect("refresh");
    let dispatched = engine.dispatcher.pass(store, now).await.expect("dispatch");
    phase[0] += t.elapsed();
    let t = Instant::now();
    let claimed = engine.executor.claim(store, now).await.expect("claim");
    phase[1] += t.elapsed();
    let t = Instant::now();
    let executed = if claimed.runs.is_empty() {
        outflow_engine::executor::Executed::default()
    } else {
        engine
            .executor
            .process(store, claimed, now)
            .await
            .expect("process")
    };
    phase[2] += t.elapsed();
    let t = Instant::now();
    let passed = engine.deliverer.pass().await.expect("send");
    engine.deliverer.settle().await.expect("settle");
    phase[3] += t.elapsed();
    outflow_engine::Tick {
        dispatched,
        executed,
        delivered: passed.claimed,
        ..Default::default()
    }
}

/// The database directory: `--dir` if given (kept), else a temp dir.
fn tempfile_dir(args: &Args) -> Dir {
    match &args.dir {
        Some(p) => {
            std::fs::create_dir_all(p).expect("--dir");
            Dir::Kept(p.clone())
        }
        None => Dir::Temp(outflow_testkit::TestDb::sqlite()),
    }
}

enum Dir {
    Kept(std::path::PathBuf),
    Temp(outflow_testkit::TestDb),
}

impl Dir {
    fn path(&self) -> std::path::PathBuf {
        match self {
            Dir::Kept(p) => p.clone(),
            Dir::Temp(db) => {
                let url = db.url();
                let file = url.trim_start_matches("sqlite://");
                std::path::Path::new(file)
                    .parent()
                    .map(|p| p.to_path_buf())
                    .unwrap_or_default()
            }
        }
    }
}
