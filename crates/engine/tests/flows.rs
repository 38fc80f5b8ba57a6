//! Acceptance of the engine (issue #4) on SQLite and PostgreSQL, moving the
//! clock instead of sleeping.

mod common;

use chrono::Duration;
use common::{env, receiver};
use outflow_store::runs;
use serde_json::{json, Value};

fn update(id: &str, key: &str, value: &str, next: Option<&str>) -> Value {
    json!({"id": id, "type": "update-profile", "links": {"next": next},
           "data": {"status": "live", "profile_operations": [
               {"operator": "update", "property_type": "string", "property_key": key, "property_value": value}]}})
}

fn delay(id: &str, hours: i64, next: &str) -> Value {
    json!({"id": id, "type": "time-delay", "links": {"next": next},
           "data": {"unit": "hours", "value": hours, "timezone": "UTC"}})
}

fn prop_equals(key: &str, value: &str) -> Value {
    json!({"condition_groups": [{"conditions": [{"type": "profile-property",
        "property": format!("properties['{key}']"),
        "filter": {"type": "string", "operator": "equals", "value": value}}]}]})
}

async fn metric_trigger(backend: &str) {
    let e = env(backend).await;
    let m = e.metric("Placed Order").await;
    let filter = json!({"condition_groups": [{"conditions": [{"type": "metric-property", "metric_id": m,
        "field": "Brand", "filter": {"type": "string", "operator": "equals", "value": "Acme"}}]}]});
    let f = e
        .flow(
            "live",
            ("metric", &m),
            json!({"triggers": [{"type": "metric", "id": m, "trigger_filter": filter}],
            "actions": [update("1", "bought", "yes", None)], "entry_action_id": "1"}),
        )
        .await;
    let (a, b, c) = (
        e.profile("a@x.io", json!({})).await,
        e.profile("b@x.io", json!({})).await,
        e.profile("c@x.io", json!({})).await,
    );
    e.event(&m, &a, json!({"Brand": "Acme"}), false).await;
    e.event(&m, &b, json!({"Brand": "Other"}), false).await;
    e.event(&m, &c, json!({"Brand": "Acme"}), true).await;
    let t = e.settle().await;
    assert_eq!(t.dispatched.items, 3);
    let runs = e.runs_of_flow(&f).await;
    assert_eq!(
        runs.len(),
        1,
        "only the matching, non-backfill event triggers"
    );
    assert_eq!(runs[0].profile_id, a);
    assert_eq!(runs[0].state, "done");
    assert!(runs[0].trigger_event_id.is_some());
    assert_eq!(e.properties(&a).await["bought"], "yes");
    assert_eq!(e.properties(&c).await.get("bought"), None);
}

async fn list_trigger(backend: &str) {
    let e = env(backend).await;
    let (l, l2) = (e.list("Newsletter").await, e.list("Welcomed").await);
    let f = e
        .flow("live", ("list", &l), json!({"triggers": [{"type": "list", "id": l}],
            "actions": [{"id": "1", "type": "list-update", "links": {"next": null},
                         "data": {"status": "live", "list_id": l2, "on_execution": true, "name": "Welcomed"}}],
            "entry_action_id": "1"}))
        .await;
    let (a, b) = (
        e.profile("a@x.io", json!({})).await,
        e.profile("b@x.io", json!({})).await,
    );
    e.join(&l, &a, false).await;
    e.join(&l, &b, true).await;
    e.settle().await;
    let runs = e.runs_of_flow(&f).await;
    assert_eq!(runs.len(), 1, "historical imports never trigger");
    assert_eq!(runs[0].profile_id, a);
    let members = e
        .count("SELECT COUNT(*) FROM list_members WHERE source = 'flow'")
        .await;
    assert_eq!(members, 1);
}

async fn profile_filter(backend: &str) {
    let e = env(backend).await;
    let l = e.list("L").await;
    let f = e
        .flow("live", ("list", &l), json!({"triggers": [{"type": "list", "id": l}],
            "profile_filter": prop_equals("Tier", "gold"),
            "actions": [delay("1", 1, "2"), update("2", "after", "yes", None)], "entry_action_id": "1"}))
        .await;
    let gold = e.profile("g@x.io", json!({"Tier": "gold"})).await;
    let silver = e.profile("s@x.io", json!({"Tier": "silver"})).await;
    let stays = e.profile("k@x.io", json!({"Tier": "gold"})).await;
    for p in [&gold, &silver, &stays] {
        e.join(&l, p, false).await;
    }
    e.settle().await;
    assert_eq!(
        e.runs_of_flow(&f).await.len(),
        2,
        "silver fails the filter at entry"
    );
    e.set_properties(&gold, json!({"Tier": "silver"})).await;
    e.clock.advance(Duration::minutes(59));
    e.settle().await;
    assert!(e
        .runs_of_flow(&f)
        .await
        .iter()
        .all(|r| r.state == "waiting"));
    e.clock.advance(Duration::minutes(1));
    e.settle().await;
    for r in e.runs_of_flow(&f).await {
        if r.profile_id == gold {
            assert_eq!(r.state, "exited");
            assert_eq!(r.exit_reason.as_deref(), Some("fails flow filters"));
        } else {
            assert_eq!(r.state, "done");
        }
    }
    assert_eq!(e.properties(&gold).await.get("after"), None);
    assert_eq!(e.properties(&stays).await["after"], "yes");
}

async fn splits_delay_webhook(backend: &str) {
    let e = env(backend).await;
    let rx = receiver(200).await;
    let m = e.metric("Placed Order").await;
    let def = json!({
        "triggers": [{"type": "metric", "id": m}],
        "actions": [
            {"id": "1", "type": "trigger-split", "links": {"next_if_true": "2", "next_if_false": "9"},
             "data": {"trigger_id": m, "trigger_type": "metric", "trigger_filter": {"condition_groups": [{"conditions": [
                {"type": "metric-property", "metric_id": m, "field": "$value",
                 "filter": {"type": "numeric", "operator": "greater-than", "value": 50}}]}]}}},
            {"id": "2", "type": "conditional-split", "links": {"next_if_true": "3", "next_if_false": "8"},
             "data": {"profile_filter": prop_equals("Color", "blue")}},
            delay("3", 24, "4"),
            {"id": "4", "type": "send-webhook", "links": {"next": "5"},
             "data": {"status": "live", "message": {"url": rx.url, "headers": {"X-Order": "{{ event|lookup:'$value' }}"},
                "body": "{\"email\": \"{{ person.email }}\", \"color\": \"{{ person|lookup:'Color' }}\", \"total\": {{ event|lookup:'$value' }}}"}}},
            update("5", "path", "webhook", None),
            update("8", "path", "not blue", None),
            update("9", "path", "small order", None)
        ],
        "entry_action_id": "1"});
    let f = e.flow("live", ("metric", &m), def).await;
    let blue = e.profile("blue@x.io", json!({"Color": "blue"})).await;
    let red = e.profile("red@x.io", json!({"Color": "red"})).await;
    let small = e.profile("small@x.io", json!({"Color": "blue"})).await;
    e.event(&m, &blue, json!({"$value": 80}), false).await;
    e.event(&m, &red, json!({"$value": 80}), false).await;
    e.event(&m, &small, json!({"$value": 10}), false).await;
    e.settle().await;
    assert_eq!(e.properties(&red).await["path"], "not blue");
    assert_eq!(e.properties(&small).await["path"], "small order");
    assert!(rx.got.lock().expect("lock").is_empty(), "blue waits a day");
    e.clock.advance(Duration::hours(24));
    e.settle().await;
    let got = rx.got.lock().expect("lock").clone();
    assert_eq!(got.len(), 1);
    assert!(got[0].0.starts_with("POST /hook"), "{}", got[0].0);
    let body: Value = serde_json::from_str(&got[0].1).expect("json body");
    assert_eq!(
        body,
        json!({"email": "blue@x.io", "color": "blue", "total": 80})
    );
    assert_eq!(e.properties(&blue).await["path"], "webhook");
    let run = e
        .runs_of_flow(&f)
        .await
        .into_iter()
        .find(|r| r.profile_id == blue)
        .expect("run");
    assert_eq!(run.state, "done");
    let outcomes: Vec<(String, String)> = e
        .steps(&run.id)
        .await
        .into_iter()
        .map(|(a, o, _)| (a, o))
        .collect();
    let want: Vec<(String, String)> = [
        ("1", "branched"),
        ("2", "branched"),
        ("3", "delayed"),
        ("4", "executed"),
        ("4", "delivered"),
        ("5", "executed"),
    ]
    .iter()
    .map(|(a, o)| (a.to_string(), o.to_string()))
    .collect();
    assert_eq!(outcomes, want);
    let code = e
        .count("SELECT last_status_code FROM deliveries WHERE status = 'succeeded'")
        .await;
    assert_eq!(code, 200);
}

async fn webhook_failure_is_skipped_and_run_continues(backend: &str) {
    let e = env(backend).await;
    let rx = receiver(400).await;
    let l = e.list("L").await;
    let f = e
        .flow(
            "live",
            ("list", &l),
            json!({"triggers": [{"type": "list", "id": l}],
            "actions": [{"id": "1", "type": "send-webhook", "links": {"next": "2"},
                         "data": {"status": "live", "message": {"url": rx.url, "body": "{}"}}},
                        update("2", "after", "yes", None)],
            "entry_action_id": "1"}),
        )
        .await;
    let p = e.profile("a@x.io", json!({})).await;
    e.join(&l, &p, false).await;
    e.settle().await;
    assert_eq!(rx.got.lock().expect("lock").len(), 1);
    let run = &e.runs_of_flow(&f).await[0];
    assert_eq!(run.state, "done");
    assert_eq!(e.properties(&p).await["after"], "yes");
    assert_eq!(
        e.count("SELECT last_status_code FROM deliveries WHERE status = 'skipped'")
            .await,
        400
    );
}

async fn manual_release_and_cancel(backend: &str) {
    let e = env(backend).await;
    let l = e.list("L").await;
    let f = e
        .flow(
            "manual",
            ("list", &l),
            json!({"triggers": [{"type": "list", "id": l}],
            "actions": [update("1", "reviewed", "sent", None)], "entry_action_id": "1"}),
        )
        .await;
    let a = e.profile("a@x.io", json!({})).await;
    e.join(&l, &a, false).await;
    e.settle().await;
    let run = &e.runs_of_flow(&f).await[0];
    assert_eq!(run.state, "needs-review");
    assert_eq!(e.properties(&a).await.get("reviewed"), None);
    let (acc, fid, now) = (e.account.clone(), f.clone(), e.now());
    let n = e
        .store
        .write(move |ctx| runs::review(ctx.conn, &acc, &fid, "1", runs::input::RELEASE, now))
        .await
        .expect("release");
    assert_eq!(n, 1);
    e.settle().await;
    assert_eq!(e.properties(&a).await["reviewed"], "sent");
    assert_eq!(e.runs_of_flow(&f).await[0].state, "done");

    let b = e.profile("b@x.io", json!({})).await;
    e.join(&l, &b, false).await;
    e.settle().await;
    let (acc, fid, now) = (e.account.clone(), f.clone(), e.now());
    let n = e
        .store
        .write(move |ctx| runs::review(ctx.conn, &acc, &fid, "1", runs::input::CANCEL, now))
        .await
        .expect("cancel");
    assert_eq!(n, 1);
    e.settle().await;
    assert_eq!(e.properties(&b).await.get("reviewed"), None);
    let run = e
        .runs_of_flow(&f)
        .await
        .into_iter()
        .find(|r| r.profile_id == b)
        .expect("run");
    assert_eq!(run.state, "done");
    let steps = e.steps(&run.id).await;
    assert_eq!(
        steps[1],
        ("1".into(), "skipped".into(), Some("cancelled".into()))
    );
}

async fn reentry_default_and_versions(backend: &str) {
    let e = env(backend).await;
    let m = e.metric("Viewed").await;
    let v1 = json!({"triggers": [{"type": "metric", "id": m}],
        "actions": [delay("1", 2, "2"), update("2", "version", "1", None)], "entry_action_id": "1"});
    let f = e.flow("live", ("metric", &m), v1).await;
    let a = e.profile("a@x.io", json!({})).await;
    e.event(&m, &a, json!({}), false).await;
    e.event(&m, &a, json!({}), false).await;
    e.settle().await;
    e.event(&m, &a, json!({}), false).await;
    e.settle().await;
    assert_eq!(
        e.runs_of_flow(&f).await.len(),
        1,
        "one active run per profile"
    );

    // A new version applies to new entrants only.
    let v2 = json!({"triggers": [{"type": "metric", "id": m}],
        "actions": [delay("1", 2, "2"), update("2", "version", "2", None)], "entry_action_id": "1"});
    e.new_version(&f, 2, v2).await;
    let b = e.profile("b@x.io", json!({})).await;
    e.event(&m, &b, json!({}), false).await;
    e.settle().await;
    e.clock.advance(Duration::hours(2));
    e.settle().await;
    assert_eq!(e.properties(&a).await["version"], "1");
    assert_eq!(e.properties(&b).await["version"], "2");
    // Once done, the profile may enter again.
    e.event(&m, &a, json!({}), false).await;
    e.settle().await;
    let runs = e.runs_of_flow(&f).await;
    assert_eq!(runs.iter().filter(|r| r.profile_id == a).count(), 2);
    assert!(runs
        .iter()
        .any(|r| r.profile_id == a && r.flow_version == 2));
}

/// Stores an event through the ingest path (the one with the writer's
/// memory of the last attributes applied to each profile).
async fn ingest(e: &common::Env, metric: &str, tier: &str, unique: &str) -> String {
    use outflow_core::event::EventInput;
    use outflow_core::profile::ProfileInput;
    use outflow_core::Clock;
    let attrs = json!({"email": "t@x.io", "properties": {"tier": tier}});
    let profile = ProfileInput::from_attributes(attrs.as_object().expect("object")).expect("valid");
    let ev = EventInput {
        metric_name: metric.into(),
        profile,
        properties: serde_json::Map::new(),
        time: Some(e.clock.now()),
        value: None,
        value_currency: None,
        unique_id: Some(unique.into()),
        backfill: false,
    }
    .validate(e.clock.now())
    .expect("valid event");
    let (account, now) = (e.account.clone(), e.now());
    e.store
        .write(move |ctx| outflow_store::events::ingest(ctx, &account, &ev, now))
        .await
        .expect("ingest")
        .profile_id
}

async fn update_profile_then_repeated_event_attributes(backend: &str) {
    let e = env(backend).await;
    let p = ingest(&e, "Viewed", "a", "1").await;
    ingest(&e, "Viewed", "a", "2").await;
    ingest(&e, "Placed", "a", "3").await;
    let account = e.account.clone();
    let placed = e
        .store
        .read(move |c| outflow_store::metrics::list(c, &account, Some("Placed"), None, 1))
        .await
        .expect("metrics")[0]
        .id
        .clone();
    e.settle().await;
    e.flow(
        "live",
        ("metric", &placed),
        json!({"triggers": [{"type": "metric", "id": placed}],
               "actions": [update("1", "tier", "b", None)], "entry_action_id": "1"}),
    )
    .await;
    ingest(&e, "Placed", "a", "4").await;
    e.settle().await;
    assert_eq!(
        e.properties(&p).await["tier"],
        "b",
        "the flow's update-profile ran"
    );
    // The same attributes as before the flow's write must be applied again.
    ingest(&e, "Viewed", "a", "5").await;
    assert_eq!(e.properties(&p).await["tier"], "a");
}

on_both!(
    update_profile_then_repeated_event_attributes,
    metric_trigger,
    list_trigger,
    profile_filter,
    splits_delay_webhook,
    webhook_failure_is_skipped_and_run_continues,
    manual_release_and_cancel,
    reentry_default_and_versions,
);
