//! Dispatch at ingest: on SQLite, `Engine::spawn` installs the writer's
//! batch hook, so an event's runs, first steps and webhook are committed
//! with the event. The engines here poll once an hour and are never
//! notified, so anything that happens before the ingest write returns was
//! done in its transaction.

mod common;

use common::{engine_with, env, receiver, Env};
use outflow_core::event::ValidEvent;
use outflow_engine::at_ingest::CAP;
use serde_json::{json, Value};
use std::sync::Arc;

fn event(e: &Env, metric: &str, email: &str, unique: &str) -> ValidEvent {
    e.valid_event(metric, json!({"email": email}), unique)
}

/// Stores `events` in one write job, as a bulk request does.
async fn ingest(e: &Env, events: Vec<ValidEvent>) {
    let (account, now) = (e.account.clone(), e.now());
    e.store
        .write(move |ctx| {
            for ev in &events {
                outflow_store::events::ingest(ctx, &account, ev, now)?;
            }
            Ok(())
        })
        .await
        .expect("ingest");
}

/// A live flow on metric "Placed" (created by ingesting one event, which
/// the env's own engine then dispatches, so the feed starts caught up).
async fn placed_flow(e: &Env, actions: Value) -> String {
    ingest(e, vec![event(e, "Placed", "first@x.io", "first")]).await;
    let metric = e.metric_named("Placed").await;
    e.settle().await;
    e.flow(
        "live",
        ("metric", &metric),
        json!({"triggers": [{"type": "metric", "id": metric}],
               "actions": actions, "entry_action_id": "1"}),
    )
    .await
}

fn mark(id: &str, next: Option<&str>) -> Value {
    json!({"id": id, "type": "update-profile", "links": {"next": next},
           "data": {"status": "live", "profile_operations": [
               {"operator": "update", "property_type": "string",
                "property_key": "bought", "property_value": "yes"}]}})
}

async fn spawned(e: &Env) -> (Arc<outflow_engine::Engine>, outflow_engine::Worker) {
    let engine = Arc::new(engine_with(&e.store, &e.clock, |c| {
        c.poll = std::time::Duration::from_secs(3600);
    }));
    let worker = engine.clone().spawn().await;
    (engine, worker)
}

async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..1000 {
        if done().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{what} did not happen within 10 s");
}

async fn profile_of(e: &Env, email: &str) -> String {
    let (account, email) = (e.account.clone(), email.to_owned());
    e.store
        .read(move |c| {
            Ok(c.query_opt(
                "SELECT id FROM profiles WHERE account_id = $1 AND email = $2",
                outflow_store::params![&account, &email],
            )?
            .map(|r| r.text(0))
            .transpose()?)
        })
        .await
        .expect("profile")
        .expect("the profile exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_commits_with_its_runs_steps_and_webhook() {
    let e = env("sqlite").await;
    let rx = receiver(200).await;
    let f = placed_flow(
        &e,
        json!([{"id": "1", "type": "send-webhook", "links": {"next": "2"},
                "data": {"status": "live", "message": {"url": rx.url, "body": "{\"who\": \"{{ person.email }}\"}"}}},
               mark("2", None)]),
    )
    .await;
    let (_engine, worker) = spawned(&e).await;
    ingest(&e, vec![event(&e, "Placed", "a@x.io", "a1")]).await;
    // No wait: the run and its delivery were written with the event.
    assert_eq!(e.runs_of_flow(&f).await.len(), 1);
    assert_eq!(e.count("SELECT COUNT(*) FROM deliveries").await, 1);
    // Handed to the deliverer from the writer thread, sent, and the run
    // moved on by the recorder.
    eventually("the webhook", async || {
        rx.got.lock().expect("lock").len() == 1
    })
    .await;
    assert_eq!(rx.got.lock().expect("lock")[0].1, r#"{"who": "a@x.io"}"#);
    let p = profile_of(&e, "a@x.io").await;
    eventually("the step after the webhook", async || {
        e.properties(&p).await.get("bought") == Some(&json!("yes"))
    })
    .await;

    // Once the worker stops, the hook is gone: events wait for an engine.
    worker.stop().await;
    ingest(&e, vec![event(&e, "Placed", "b@x.io", "b1")]).await;
    assert_eq!(e.runs_of_flow(&f).await.len(), 1);
    e.settle().await;
    assert_eq!(e.runs_of_flow(&f).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_beyond_the_cap_goes_to_the_trigger_loop() {
    let e = env("sqlite").await;
    let f = placed_flow(&e, json!([mark("1", None)])).await;
    let (_engine, worker) = spawned(&e).await;
    let n = usize::try_from(CAP).expect("small") + 1;
    let bulk = (0..n)
        .map(|i| event(&e, "Placed", &format!("bulk{i}@x.io"), &format!("u{i}")))
        .collect();
    ingest(&e, bulk).await;
    assert_eq!(
        e.runs_of_flow(&f).await.len(),
        0,
        "the hook leaves a backlog alone"
    );
    // The hook woke the trigger loop (it would otherwise poll in an hour).
    eventually("the backlog's runs", async || {
        e.runs_of_flow(&f).await.len() == n
    })
    .await;
    // Caught up, the next event is the hook's again.
    ingest(&e, vec![event(&e, "Placed", "next@x.io", "n1")]).await;
    assert_eq!(e.runs_of_flow(&f).await.len(), n + 1);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_flow_is_indexed_off_the_writer() {
    let e = env("sqlite").await;
    let f1 = placed_flow(&e, json!([mark("1", None)])).await;
    let (_engine, worker) = spawned(&e).await;
    ingest(&e, vec![event(&e, "Placed", "a@x.io", "a1")]).await;
    assert_eq!(e.runs_of_flow(&f1).await.len(), 1);

    // A second flow on the same metric, written in the same job as the
    // next event: no reader can have indexed it, so the hook's index is
    // stale and it leaves the event to the trigger loop (which it wakes)
    // rather than rebuild the index on the writer thread.
    let metric = e.metric_named("Placed").await;
    let f2 = common::id("F");
    let def = json!({"triggers": [{"type": "metric", "id": metric}],
                     "actions": [mark("1", None)], "entry_action_id": "1"})
    .to_string();
    let b = event(&e, "Placed", "b@x.io", "b1");
    let (account, now, fid) = (e.account.clone(), e.now(), f2.clone());
    e.store
        .write(move |ctx| {
            ctx.conn.execute(
                "INSERT INTO flows (id, account_id, name, status, archived, trigger_type, trigger_ref, version, created, updated) \
                 VALUES ($1, $2, 'second', 'live', 0, 'metric', $3, 1, $4, $4)",
                outflow_store::params![&fid, &account, &metric, now],
            )?;
            ctx.conn.execute(
                "INSERT INTO flow_versions (flow_id, version, definition, created) VALUES ($1, 1, $2, $3)",
                outflow_store::params![&fid, &def, now],
            )?;
            outflow_store::events::ingest(ctx, &account, &b, now)?;
            Ok(())
        })
        .await
        .expect("flow and event");
    assert_eq!(e.runs_of_flow(&f1).await.len(), 1, "not at ingest");
    eventually("both flows' runs for b", async || {
        e.runs_of_flow(&f1).await.len() == 2 && e.runs_of_flow(&f2).await.len() == 1
    })
    .await;
    // Re-indexed, the next event is dispatched at ingest to both.
    ingest(&e, vec![event(&e, "Placed", "c@x.io", "c1")]).await;
    assert_eq!(e.runs_of_flow(&f1).await.len(), 3);
    assert_eq!(e.runs_of_flow(&f2).await.len(), 2);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dispatches_after_the_commit() {
    let e = env("postgres").await;
    let f = placed_flow(&e, json!([mark("1", None)])).await;
    let (engine, worker) = spawned(&e).await;
    ingest(&e, vec![event(&e, "Placed", "a@x.io", "a1")]).await;
    assert_eq!(
        e.runs_of_flow(&f).await.len(),
        0,
        "no hook: other processes may hold lower seqs uncommitted"
    );
    engine.notify_events();
    eventually("the run", async || e.runs_of_flow(&f).await.len() == 1).await;
    worker.stop().await;
}
