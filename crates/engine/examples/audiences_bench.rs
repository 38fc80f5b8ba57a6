//! Issue #5, acceptance 2: the cost of keeping audiences current, on SQLite.
//!
//! - `--case segments`: 20 live segments (each mixing a profile-property
//!   and a metric condition, over 5 metrics) and `--profiles` profiles with
//!   two past events each. Timed: the segment evaluator working through
//!   `--events` new events (only the segments counting an event's metric
//!   are re-evaluated, for that profile). Reported per event.
//! - `--case dates`: `--profiles` profiles with a birthday spread over the
//!   year, one live annual date flow. Untimed: the index build. Timed: one
//!   daily pass (the clock moves a day): the profiles whose date matches
//!   are found through the index, checked, and enrolled.
//! - `--case price-drop`: `--viewers` profiles that viewed an item within
//!   the window (and as many views of other items), one live price-drop
//!   flow. Timed: from the price change to every viewer's run created.
//!
//! Setup inserts rows straight into the tables (`INSERT … SELECT` over a
//! recursive counter) and is not timed.
//!
//! ```text
//! cargo run --release -p outflow-engine --example audiences_bench -- --case segments
//! cargo run --release -p outflow-engine --example audiences_bench -- --case dates
//! cargo run --release -p outflow-engine --example audiences_bench -- --case price-drop
//! ```
//!
//! Options: `--profiles N` (default 1,000,000), `--events N` (default
//! 100,000), `--viewers N` (default 100,000). Figures: bench/audiences/README.md.

use chrono::{DateTime, Duration, Utc};
use outflow_core::clock::to_micros;
use outflow_core::{Clock, ManualClock};
use outflow_engine::{Engine, EngineConfig};
use outflow_store::{params, Store, StoreError};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

const CHUNK: i64 = 100_000;
const COUNTER: &str =
    "WITH RECURSIVE c(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM c WHERE i + 1 < $2)";

struct Args {
    case: String,
    profiles: i64,
    events: i64,
    viewers: i64,
}

fn args() -> Args {
    let mut a = Args {
        case: "segments".into(),
        profiles: 1_000_000,
        events: 100_000,
        viewers: 100_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let n = || value.replace('_', "").parse::<i64>().expect("a number");
        match flag.as_str() {
            "--case" => a.case = value.clone(),
            "--profiles" => a.profiles = n(),
            "--events" => a.events = n(),
            "--viewers" => a.viewers = n(),
            other => panic!("unknown option {other}"),
        }
    }
    a
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
        .expect("time")
        .to_utc()
}

async fn exec(store: &Store, sql: String, a: i64, b: i64, account: &str, now: i64) {
    let acc = account.to_owned();
    store
        .write(move |ctx| {
            ctx.conn.execute(&sql, params![a, b, &acc, now])?;
            Ok(())
        })
        .await
        .expect("setup statement");
}

/// Runs `sql` (with `$1..$2` the counter range, `$3` the account, `$4` now)
/// over `0..n` in chunks.
async fn bulk(store: &Store, n: i64, account: &str, now: i64, sql: &str) {
    let mut from = 0;
    while from < n {
        let to = (from + CHUNK).min(n);
        exec(store, format!("{COUNTER} {sql}"), from, to, account, now).await;
        from = to;
    }
}

async fn one(store: &Store, account: &str, now: i64, sql: &'static str) {
    exec(store, sql.to_owned(), 0, 0, account, now).await;
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

async fn profiles(store: &Store, n: i64, account: &str, now: i64) {
    bulk(
        store,
        n,
        account,
        now,
        "INSERT INTO profiles (id, account_id, email, attributes, properties, subscriptions, created, updated) \
         SELECT printf('P%08d', i), $3, printf('bench%08d@example.com', i), '{}', \
         json_object('Age', i % 80, 'plan', CASE WHEN i % 3 = 0 THEN 'pro' ELSE 'free' END, \
           'Birthday', date('1970-01-01', '+' || (i % 18250) || ' days')), '{}', $4, $4 FROM c",
    )
    .await;
}

async fn segments_case(store: &Store, engine: &Engine, account: &str, a: &Args) {
    let now = to_micros(t0());
    let setup = Instant::now();
    profiles(store, a.profiles, account, now).await;
    for m in 0..5 {
        let sql = format!(
            "INSERT INTO metrics (id, account_id, name, created, updated) VALUES ('M{m}', $3, 'Metric {m}', $4, $4)"
        );
        exec(store, sql, 0, 0, account, now).await;
    }
    // Two past events per profile, over the last 60 days.
    bulk(
        store,
        a.profiles * 2,
        account,
        now,
        "INSERT INTO events (id, account_id, metric_id, profile_id, time, value, unique_key, properties, backfill, created) \
         SELECT printf('H%09d', i), $3, printf('M%d', i % 5), printf('P%08d', i / 2), \
         $4 - (i % 60) * 86400000000, 10.0, printf('H%09d', i), '{\"Source\":\"web\"}', 0, $4 FROM c",
    )
    .await;
    for s in 0..20 {
        let m = format!("M{}", s % 5);
        // "Active in the last 30 days and older than …", and "big spender
        // on the web store, or on the pro plan".
        let def = if s % 2 == 0 {
            json!({"condition_groups": [
                {"conditions": [{"type": "profile-property", "property": "properties['Age']",
                    "filter": {"type": "numeric", "operator": "greater-than", "value": s * 3}}]},
                {"conditions": [{"type": "profile-metric", "metric_id": m, "measurement": "count",
                    "measurement_filter": {"type": "numeric", "operator": "greater-than-or-equal", "value": 1},
                    "timeframe_filter": {"type": "date", "operator": "in-the-last", "quantity": 30, "unit": "day"}}]}]})
        } else {
            json!({"condition_groups": [{"conditions": [
                {"type": "profile-metric", "metric_id": m, "measurement": "sum",
                    "measurement_filter": {"type": "numeric", "operator": "greater-than-or-equal", "value": 100 + 10 * s},
                    "timeframe_filter": {"type": "date", "operator": "alltime"},
                    "metric_filters": [{"property": "Source", "filter": {"type": "string", "operator": "equals", "value": "web"}}]},
                {"type": "profile-property", "property": "properties['plan']",
                    "filter": {"type": "string", "operator": "equals", "value": "pro"}}]}]})
        };
        // Built already: the timed phase is incremental work only.
        let sql = "INSERT INTO segments (id, account_id, name, definition, is_active, is_starred, version, \
                   built_version, swept, created, updated) VALUES ($1, $3, $1, $2, 1, 0, 1, 1, $4, $4, $4)";
        let (acc, id, d) = (account.to_owned(), format!("S{s:02}"), def.to_string());
        store
            .write(move |ctx| {
                ctx.conn.execute(sql, params![&id, &d, &acc, now])?;
                Ok(())
            })
            .await
            .expect("segment");
    }
    store
        .write(|ctx| {
            ctx.conn.execute(
                "UPDATE dispatch_cursors SET position = (SELECT MAX(seq) FROM events) \
                 WHERE feed = 'segments:events'",
                params![],
            )?;
            Ok(())
        })
        .await
        .expect("cursor");
    println!(
        "setup: {} profiles, {} past events, 20 segments in {:.1} s",
        a.profiles,
        a.profiles * 2,
        setup.elapsed().as_secs_f64()
    );
    // Two rounds of new events on the same profiles (spread by a stride,
    // the 5 metrics in turn). The first finds memberships empty (the
    // segments were never built), so many evaluations write a join; the
    // second is the steady state: memberships are current and an event
    // rarely changes one, so it measures the evaluation itself.
    for round in ["first touch", "steady state"] {
        let stride = 7919 % a.profiles.max(1);
        let prefix = if round == "first touch" { "N" } else { "S" };
        let sql = format!(
            "INSERT INTO events (id, account_id, metric_id, profile_id, time, value, unique_key, properties, backfill, created) \
             SELECT printf('{prefix}%09d', i), $3, printf('M%d', i % 5), printf('P%08d', (i * {stride}) % {}), \
             $4, 10.0, printf('{prefix}%09d', i), '{{\"Source\":\"web\"}}', 0, $4 FROM c",
            a.profiles
        );
        bulk(store, a.events, account, now, &sql).await;
        let started = Instant::now();
        let mut items = 0;
        let mut changes = 0;
        loop {
            let w = engine
                .audiences
                .segments
                .pass(engine.store(), t0())
                .await
                .expect("pass");
            items += w.items;
            changes += w.changes;
            if w.is_idle() {
                break;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "segments, {round}: {items} events re-evaluated in {secs:.2} s = {:.1} µs/event ({changes} membership changes)",
            secs * 1e6 / items.max(1) as f64
        );
    }
}

async fn dates_case(store: &Store, engine: &Engine, clock: &ManualClock, account: &str, a: &Args) {
    let now = to_micros(t0());
    let setup = Instant::now();
    profiles(store, a.profiles, account, now).await;
    let def = json!({"triggers": [{"type": "date", "date_field_type": "profile-property",
        "date_profile_property": "Birthday", "timedelta_unit_before_date": "days",
        "timedelta_value_before_date": 0, "recurrence_frequency": "annually",
        "timezone": "UTC", "trigger_time": "09:00"}],
        "actions": [{"id": "1", "type": "update-profile", "links": {"next": null},
            "data": {"status": "live", "profile_operations": [{"operator": "update",
                "property_type": "string", "property_key": "Greeted", "property_value": "yes"}]}}],
        "entry_action_id": "1"})
    .to_string();
    flow(store, account, now, "date", &def).await;
    println!(
        "setup: {} profiles in {:.1} s",
        a.profiles,
        setup.elapsed().as_secs_f64()
    );
    let built = Instant::now();
    drain_dates(engine, clock.now()).await;
    println!(
        "index build (once per flow property): {:.1} s, {} rows",
        built.elapsed().as_secs_f64(),
        count(store, "SELECT COUNT(*) FROM profile_dates").await
    );
    clock.advance(Duration::days(1));
    let started = Instant::now();
    let (read, runs) = drain_dates(engine, clock.now()).await;
    println!(
        "daily pass: {:.3} s, {read} candidate profiles read, {runs} runs created (of {} profiles)",
        started.elapsed().as_secs_f64(),
        a.profiles
    );
}

async fn drain_dates(engine: &Engine, now: DateTime<Utc>) -> (usize, usize) {
    let (mut read, mut runs) = (0, 0);
    loop {
        let d = engine
            .audiences
            .dates
            .pass(engine.store(), now)
            .await
            .expect("pass");
        read += d.read;
        runs += d.runs;
        if d.read == 0 && d.runs == 0 {
            return (read, runs);
        }
    }
}

async fn flow(store: &Store, account: &str, now: i64, ty: &'static str, def: &str) {
    let (acc, d) = (account.to_owned(), def.to_owned());
    store
        .write(move |ctx| {
            ctx.conn.execute(
                "INSERT INTO flows (id, account_id, name, status, archived, trigger_type, trigger_ref, \
                 version, created, updated) VALUES ('Fbench', $1, 'bench', 'live', 0, $2, NULL, 1, $3, $3)",
                params![&acc, ty, now],
            )?;
            ctx.conn.execute(
                "INSERT INTO flow_versions (flow_id, version, definition, created) VALUES ('Fbench', 1, $1, $2)",
                params![&d, now],
            )?;
            Ok::<_, StoreError>(())
        })
        .await
        .expect("flow");
}

async fn price_case(store: &Store, engine: &Engine, clock: &ManualClock, account: &str, a: &Args) {
    let now = to_micros(t0());
    let setup = Instant::now();
    profiles(store, a.viewers, account, now).await;
    one(
        store,
        account,
        now,
        "INSERT INTO metrics (id, account_id, name, created, updated) VALUES ('MV', $3, 'Viewed Product', $4, $4)",
    )
    .await;
    // Each viewer viewed the item and another one, within the last 20 days.
    bulk(
        store,
        a.viewers * 2,
        account,
        now,
        "INSERT INTO events (id, account_id, metric_id, profile_id, time, value, unique_key, properties, backfill, created) \
         SELECT printf('V%09d', i), $3, 'MV', printf('P%08d', i / 2), $4 - (i % 20) * 86400000000, NULL, \
         printf('V%09d', i), CASE WHEN i % 2 = 0 THEN '{\"ProductID\":\"SKU1\"}' ELSE '{\"ProductID\":\"SKU2\"}' END, 0, $4 FROM c",
    )
    .await;
    one(
        store,
        account,
        now,
        "INSERT INTO catalog_items (id, account_id, external_id, integration_type, catalog_type, attributes, price, created, updated) \
         VALUES ('$custom:::$default:::SKU1', $3, 'SKU1', '$custom', '$default', '{\"title\":\"Mug\",\"price\":20}', 20, $4, $4)",
    )
    .await;
    let def = json!({"triggers": [{"type": "price-drop", "price_drop_amount_value": 5,
        "audience": ["viewed"], "timeframe_days": 30}],
        "actions": [{"id": "1", "type": "update-profile", "links": {"next": null},
            "data": {"status": "live", "profile_operations": [{"operator": "update",
                "property_type": "string", "property_key": "Told", "property_value": "yes"}]}}],
        "entry_action_id": "1"})
    .to_string();
    flow(store, account, now, "price-drop", &def).await;
    println!(
        "setup: {} viewers, {} view events in {:.1} s",
        a.viewers,
        a.viewers * 2,
        setup.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let (acc, t) = (account.to_owned(), to_micros(clock.now()));
    store
        .write(move |ctx| {
            let mut ch = serde_json::Map::new();
            ch.insert("price".into(), json!(10));
            outflow_store::catalog::update(ctx, &acc, "$custom:::$default:::SKU1", &ch, t)?;
            Ok(())
        })
        .await
        .expect("price change");
    loop {
        let w = engine
            .audiences
            .pass(engine.store(), clock.now())
            .await
            .expect("pass");
        if w.is_idle() {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let runs = count(store, "SELECT COUNT(*) FROM runs").await;
    println!("price drop: {runs} viewers enrolled in {secs:.2} s (from the price change)");
}

// Like the server on a 2-core machine: one async worker, the writer thread.
#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let a = args();
    let dir = outflow_testkit::TestDb::sqlite();
    let url = dir.url();
    let store = Store::open(&url).await.expect("store opens");
    let now = to_micros(t0());
    let account = store
        .write(move |ctx| {
            outflow_store::accounts::bootstrap(ctx.conn, Some("pk_bench_aud_0123456789"), now)
        })
        .await
        .expect("bootstrap")
        .expect("fresh account")
        .account_id;
    let clock = Arc::new(ManualClock::new(t0()));
    let engine =
        Engine::new(store.clone(), clock.clone(), EngineConfig::default()).expect("engine");
    match a.case.as_str() {
        "segments" => segments_case(&store, &engine, &account, &a).await,
        "dates" => dates_case(&store, &engine, &clock, &account, &a).await,
        "price-drop" => price_case(&store, &engine, &clock, &account, &a).await,
        other => panic!("unknown case {other}: use segments, dates or price-drop"),
    }
}
