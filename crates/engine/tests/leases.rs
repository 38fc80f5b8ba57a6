//! A worker that claims runs and dies: its leases expire (by the clock) and
//! another worker takes the runs over; every effect still happens once.

mod common;

use chrono::Duration;
use common::{engine_on, env, receiver};
use serde_json::json;

const RUNS: usize = 200;

async fn crashed_worker_runs_are_reclaimed_once(backend: &str) {
    let e = env(backend).await;
    let rx = receiver(200).await;
    let l = e.list("L").await;
    let f = e
        .flow("live", ("list", &l), json!({"triggers": [{"type": "list", "id": l}],
            "actions": [
                {"id": "1", "type": "update-profile", "links": {"next": "2"}, "data": {"status": "live",
                 "profile_operations": [{"operator": "create", "property_type": "list", "property_operation": "add",
                                         "property_key": "Tags", "property_value": "welcomed"}]}},
                {"id": "2", "type": "send-webhook", "links": {"next": null},
                 "data": {"status": "live", "message": {"url": rx.url, "body": "{\"id\": \"{{ person.email }}\"}"}}}],
            "entry_action_id": "1"}))
        .await;
    for i in 0..RUNS {
        let p = e.profile(&format!("p{i}@x.io"), json!({})).await;
        e.join(&l, &p, false).await;
    }
    // Worker A dispatches: the runs are created leased to it (handed to its
    // executor in memory), and it dies before advancing them.
    let dead = engine_on(&e.store, &e.clock);
    dead.dispatcher.refresh(&e.store).await.expect("index");
    let d = dead
        .dispatcher
        .pass(&e.store, outflow_core::Clock::now(e.clock.as_ref()))
        .await
        .expect("dispatch");
    assert_eq!(d.runs, RUNS);
    let claimed = outflow_engine::executor::Claimed {
        owner: dead.dispatcher.handoff_owner().expect("handoff").to_owned(),
        runs: dead.dispatcher.take_ready(),
    };
    assert_eq!(claimed.runs.len(), RUNS);

    // While the lease holds, nobody else advances them.
    let t = e.settle().await;
    assert_eq!(t.executed.claimed, 0);
    assert!(e
        .runs_of_flow(&f)
        .await
        .iter()
        .all(|r| r.state == "running"));

    // The lease (60 s) expires; worker B takes over and finishes the runs.
    e.clock.advance(Duration::seconds(61));
    let t = e.settle().await;
    assert_eq!(
        t.executed.claimed, RUNS,
        "once to the webhook; the webhook is the last action, so the recorder ends the run"
    );
    assert!(e.runs_of_flow(&f).await.iter().all(|r| r.state == "done"));

    // Worker A comes back from the dead and writes its stale batch: its
    // lease is gone, so nothing is written.
    let stale = dead
        .executor
        .process(
            &e.store,
            claimed,
            outflow_core::Clock::now(e.clock.as_ref()),
        )
        .await
        .expect("stale");
    assert_eq!(stale.advanced, 0);
    assert_eq!(stale.lost, RUNS);
    e.settle().await;

    assert_eq!(
        rx.got.lock().expect("lock").len(),
        RUNS,
        "one webhook per run"
    );
    assert_eq!(
        e.count("SELECT COUNT(*) FROM deliveries").await,
        RUNS as i64
    );
    // The update's effect key; the webhook's is its delivery row.
    assert_eq!(
        e.count("SELECT COUNT(*) FROM run_effects").await,
        RUNS as i64
    );
    assert_eq!(
        e.count("SELECT COUNT(*) FROM profiles WHERE properties LIKE '%welcomed%welcomed%'")
            .await,
        0,
        "the list-add ran once per profile"
    );
    assert_eq!(
        e.count("SELECT COUNT(*) FROM profiles WHERE properties LIKE '%welcomed%'")
            .await,
        RUNS as i64
    );
}

on_both!(crashed_worker_runs_are_reclaimed_once);

/// A profile changed between the batch's facts read and its write keeps
/// both changes: update-profile reads the properties inside the write.
async fn profile_changed_during_a_batch_keeps_both_changes(backend: &str) {
    let e = env(backend).await;
    let l = e.list("L").await;
    e.flow("live", ("list", &l), json!({"triggers": [{"type": "list", "id": l}],
        "actions": [
            {"id": "1", "type": "update-profile", "links": {"next": null}, "data": {"status": "live",
             "profile_operations": [{"operator": "update", "property_type": "string",
                                     "property_key": "welcomed", "property_value": "yes"}]}}],
        "entry_action_id": "1"}))
        .await;
    let changed = e.profile("changed@x.io", json!({"a": 1})).await;
    let untouched = e.profile("untouched@x.io", json!({"a": 1})).await;
    e.join(&l, &changed, false).await;
    e.join(&l, &untouched, false).await;
    let w = engine_on(&e.store, &e.clock);
    w.dispatcher.refresh(&e.store).await.expect("index");
    let now = outflow_core::Clock::now(e.clock.as_ref());
    w.dispatcher.pass(&e.store, now).await.expect("dispatch");
    let claimed = outflow_engine::executor::Claimed {
        owner: w.dispatcher.handoff_owner().expect("handoff").to_owned(),
        runs: w.dispatcher.take_ready(),
    };
    assert_eq!(claimed.runs.len(), 2);
    let prepared = w
        .executor
        .prepare(&e.store, claimed, now)
        .await
        .expect("prepare");
    // Someone else writes the profile after the batch read it.
    e.sql(
        "UPDATE profiles SET properties = $1 WHERE id = $2",
        vec![
            json!({"a": 2, "b": "api"}).to_string().into(),
            changed.clone().into(),
        ],
    )
    .await;
    let written = e
        .store
        .write(move |ctx| prepared.write(ctx))
        .await
        .expect("write");
    assert_eq!(w.executor.written(written).advanced, 2);
    assert_eq!(
        e.properties(&changed).await,
        json!({"a": 2, "b": "api", "welcomed": "yes"})
    );
    assert_eq!(
        e.properties(&untouched).await,
        json!({"a": 1, "welcomed": "yes"})
    );
}

on_both!(profile_changed_during_a_batch_keeps_both_changes);

/// The pipelined trigger loop plans batch k+1 while batch k commits: the
/// carry makes the plan start where batch k leaves the cursor and count
/// batch k's runs as entered, so a profile never gets a second active run
/// and no item is planned twice.
async fn planning_on_top_of_a_batch_in_flight(backend: &str) {
    let e = env(backend).await;
    let m = e.metric("Viewed").await;
    e.flow("live", ("metric", &m), json!({"triggers": [{"type": "metric", "id": m}],
        "actions": [
            {"id": "1", "type": "time-delay", "links": {"next": "2"}, "data": {"unit": "days", "value": 1}},
            {"id": "2", "type": "update-profile", "links": {"next": null}, "data": {"status": "live",
             "profile_operations": [{"operator": "update", "property_type": "string",
                                     "property_key": "seen", "property_value": "yes"}]}}],
        "entry_action_id": "1"}))
        .await;
    let p = e.profile("p@x.io", json!({})).await;
    let q = e.profile("q@x.io", json!({})).await;
    let w = engine_on(&e.store, &e.clock);
    let now = outflow_core::Clock::now(e.clock.as_ref());
    e.event(&m, &p, json!({}), false).await;
    let first = w.dispatcher.plan(&e.store, now).await.expect("plan");
    let planned: Vec<_> = first.iter().filter(|b| b.dispatched().runs > 0).collect();
    assert_eq!(planned.len(), 1);
    assert_eq!(planned[0].dispatched().runs, 1);
    let mut carry = outflow_engine::dispatch::Carry::default();
    for b in &first {
        carry.add(b, &std::collections::HashMap::new());
    }
    // Batch 1 is not written yet; p and q send events.
    e.event(&m, &p, json!({}), false).await;
    e.event(&m, &q, json!({}), false).await;
    let second = w
        .dispatcher
        .plan_with(&e.store, now, &carry)
        .await
        .expect("plan on top");
    let d: Vec<_> = second.iter().map(|b| b.dispatched()).collect();
    assert_eq!(
        d.iter().map(|d| d.items).sum::<usize>(),
        2,
        "only the two new events: {d:?}"
    );
    assert_eq!(
        d.iter().map(|d| d.runs).sum::<usize>(),
        1,
        "q enters, p already has a run"
    );
    let rows: Vec<_> = second.iter().flat_map(|b| b.leased_rows()).collect();
    assert_eq!(rows[0].profile_id, q);
    // Without the carry the same read would plan the first event again.
    let again = w.dispatcher.plan(&e.store, now).await.expect("plan");
    assert_eq!(again.iter().map(|b| b.dispatched().runs).sum::<usize>(), 2);
}

on_both!(planning_on_top_of_a_batch_in_flight);
