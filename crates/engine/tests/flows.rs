//! Acceptance of the engine (issue #4) on SQLite and PostgreSQL, moving the
//! clock instead of sleeping.

mod common;

use chrono::Duration;
use common::{env, receiver};
use outflow_core::flow::FlowDefinition;
use outflow_store::flows::{self, FlowChange};
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
    let ev = e.valid_event(
        metric,
        json!({"email": "t@x.io", "properties": {"tier": tier}}),
        unique,
    );
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
    let placed = e.metric_named("Placed").await;
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

/// Creates a flow through the store, as the API does (actions get ids).
async fn create_flow(e: &common::Env, status: &str, def: Value) -> (String, Value) {
    let (acc, status, now) = (e.account.clone(), status.to_owned(), e.now());
    let (flow, stored) = e
        .store
        .write(move |ctx| {
            let def = FlowDefinition::parse(def, "")
                .map_err(|errs| outflow_store::StoreError::Invalid(format!("{errs:?}")))?;
            flows::create(ctx, &acc, "test flow", &status, def, now)
        })
        .await
        .expect("create")
        .expect("no ids given");
    (flow.id, stored)
}

/// `PATCH /api/flows/{id}` through the store: a status and/or a definition.
async fn change(
    e: &common::Env,
    fid: &str,
    status: Option<&str>,
    def: Option<Value>,
) -> (flows::Flow, Value) {
    let (acc, fid, now) = (e.account.clone(), fid.to_owned(), e.now());
    let status = status.map(str::to_owned);
    e.store
        .write(move |ctx| {
            let definition = match def {
                Some(d) => Some(
                    FlowDefinition::parse(d, "")
                        .map_err(|errs| outflow_store::StoreError::Invalid(format!("{errs:?}")))?,
                ),
                None => None,
            };
            let change = FlowChange {
                status,
                definition,
                ..FlowChange::default()
            };
            flows::update(ctx, &acc, &fid, change, now)
        })
        .await
        .expect("update")
        .expect("known ids")
}

/// The status of the action at `index` in every stored version, oldest first.
async fn statuses_in_versions(e: &common::Env, fid: &str, index: usize) -> Vec<Value> {
    let fid = fid.to_owned();
    e.store
        .read(move |c| flows::versions(c, &fid))
        .await
        .expect("versions")
        .into_iter()
        .map(|(_, d, _)| d["actions"][index]["data"]["status"].clone())
        .collect()
}

fn marking(key: &str) -> Value {
    json!({"temporary_id": "mark", "type": "update-profile", "links": {"next": null},
           "data": {"status": "draft", "profile_operations": [
               {"operator": "update", "property_type": "string", "property_key": key, "property_value": "yes"}]}})
}

/// A flow's status is also every action's status, in every version: runs
/// already waiting on an older version follow it.
async fn flow_status_sets_every_action_for_waiting_runs(backend: &str) {
    let e = env(backend).await;
    let m = e.metric("Viewed").await;
    let def = json!({"triggers": [{"type": "metric", "id": m}],
        "actions": [{"temporary_id": "wait", "type": "time-delay", "links": {"next": "mark"},
                     "data": {"unit": "hours", "value": 1, "timezone": "UTC"}},
                    marking("sent")],
        "entry_action_id": "wait"});
    // Klaviyo's default action status is draft; the flow's status overrides it.
    let (f, _) = create_flow(&e, "draft", def).await;
    let (_, d) = change(&e, &f, Some("manual"), None).await;
    assert_eq!(d["actions"][1]["data"]["status"], "manual");
    assert!(
        d["actions"][0]["data"].get("status").is_none(),
        "a delay has no status"
    );
    let a = e.profile("a@x.io", json!({})).await;
    e.event(&m, &a, json!({}), false).await;
    e.settle().await;
    let runs = e.runs_of_flow(&f).await;
    assert_eq!(
        (runs.len(), runs[0].state.as_str(), runs[0].flow_version),
        (1, "waiting", 1)
    );

    // A new version while a waits on version 1; then live.
    let mut v2 = d.clone();
    v2["actions"][0]["data"]["value"] = json!(2);
    let (flow, _) = change(&e, &f, None, Some(v2)).await;
    assert_eq!(flow.version, 2);
    let (flow, d) = change(&e, &f, Some("live"), None).await;
    assert_eq!(flow.version, 2, "a status change is not a new version");
    assert_eq!(d["actions"][1]["data"]["status"], "live");
    assert_eq!(statuses_in_versions(&e, &f, 1).await, ["live", "live"]);
    e.clock.advance(Duration::hours(1));
    e.settle().await;
    assert_eq!(
        e.properties(&a).await["sent"],
        "yes",
        "the run on version 1 sends once the flow is live"
    );
    assert_eq!(e.runs_of_flow(&f).await[0].state, "done");

    // Draft: nobody enters, and runs waiting do not send.
    let b = e.profile("b@x.io", json!({})).await;
    e.event(&m, &b, json!({}), false).await;
    e.settle().await;
    change(&e, &f, Some("draft"), None).await;
    assert_eq!(statuses_in_versions(&e, &f, 1).await, ["draft", "draft"]);
    let c = e.profile("c@x.io", json!({})).await;
    e.event(&m, &c, json!({}), false).await;
    e.clock.advance(Duration::hours(2));
    e.settle().await;
    assert_eq!(e.properties(&b).await.get("sent"), None);
    let runs = e.runs_of_flow(&f).await;
    assert!(
        runs.iter().all(|r| r.profile_id != c),
        "nobody enters a draft flow"
    );
    let b_run = runs.iter().find(|r| r.profile_id == b).expect("b's run");
    assert_eq!(b_run.state, "done");

    // Live again, then one action set to manual by a definition edit (what
    // PATCH /api/flow-actions/{id} does): the run waiting on the older
    // version waits for review there too.
    let (_, d) = change(&e, &f, Some("live"), None).await;
    let g = e.profile("g@x.io", json!({})).await;
    e.event(&m, &g, json!({}), false).await;
    e.settle().await;
    let mut v3 = d.clone();
    v3["actions"][1]["data"]["status"] = json!("manual");
    let (flow, d) = change(&e, &f, None, Some(v3)).await;
    assert_eq!((flow.version, flow.status.as_str()), (3, "live"));
    assert_eq!(d["actions"][1]["data"]["status"], "manual");
    assert_eq!(
        statuses_in_versions(&e, &f, 1).await,
        ["manual", "manual", "manual"]
    );
    e.clock.advance(Duration::hours(2));
    e.settle().await;
    let g_run = e
        .runs_of_flow(&f)
        .await
        .into_iter()
        .find(|r| r.profile_id == g)
        .expect("g's run");
    assert_eq!(
        (g_run.flow_version, g_run.state.as_str()),
        (2, "needs-review")
    );
    assert_eq!(e.properties(&g).await.get("sent"), None);
}

/// Events and list joins recorded before a flow went live never start it,
/// even when dispatch had not read them yet (a backlog).
async fn items_before_going_live_never_start_it(backend: &str) {
    let e = env(backend).await;
    let (m, l) = (e.metric("Placed Order").await, e.list("Newsletter").await);
    let (fm, _) = create_flow(
        &e,
        "draft",
        json!({"triggers": [{"type": "metric", "id": m}], "actions": [marking("metric")],
               "entry_action_id": "mark"}),
    )
    .await;
    let (fl, _) = create_flow(
        &e,
        "draft",
        json!({"triggers": [{"type": "list", "id": l}], "actions": [marking("list")],
               "entry_action_id": "mark"}),
    )
    .await;
    // While draft, and with the engine not ticked: its cursors stay behind.
    let early = e.profile("early@x.io", json!({})).await;
    e.event(&m, &early, json!({}), false).await;
    e.join(&l, &early, false).await;
    let (flow, _) = change(&e, &fm, Some("live"), None).await;
    let went_live = Some(e.now());
    assert_eq!(flow.went_live, went_live);
    assert!(flow.went_live_seq > 0);
    change(&e, &fl, Some("live"), None).await;
    let late = e.profile("late@x.io", json!({})).await;
    e.event(&m, &late, json!({}), false).await;
    e.join(&l, &late, false).await;
    let t = e.settle().await;
    assert_eq!(t.dispatched.items, 4, "every item was read");
    for f in [&fm, &fl] {
        let runs = e.runs_of_flow(f).await;
        assert_eq!(runs.len(), 1, "only the item after going live");
        assert_eq!(runs[0].profile_id, late);
    }
    assert_eq!(e.properties(&early).await, json!({}));
    assert_eq!(
        e.properties(&late).await,
        json!({"metric": "yes", "list": "yes"})
    );

    // Live → manual is no new moment: an event from while it was live,
    // not yet dispatched, still starts it.
    let x = e.profile("x@x.io", json!({})).await;
    e.event(&m, &x, json!({}), false).await;
    e.clock.advance(Duration::minutes(1));
    let (flow, _) = change(&e, &fm, Some("manual"), None).await;
    assert_eq!(flow.went_live, went_live);
    e.settle().await;
    let runs = e.runs_of_flow(&fm).await;
    let x_run = runs.iter().find(|r| r.profile_id == x).expect("x's run");
    assert_eq!(x_run.state, "needs-review");

    // Draft, then live again: a new moment.
    change(&e, &fm, Some("draft"), None).await;
    let y = e.profile("y@x.io", json!({})).await;
    e.event(&m, &y, json!({}), false).await;
    e.clock.advance(Duration::minutes(1));
    let (flow, _) = change(&e, &fm, Some("live"), None).await;
    assert_eq!(flow.went_live, Some(e.now()));
    let z = e.profile("z@x.io", json!({})).await;
    e.event(&m, &z, json!({}), false).await;
    e.settle().await;
    let runs = e.runs_of_flow(&fm).await;
    assert!(
        runs.iter().all(|r| r.profile_id != y),
        "y's event was during draft"
    );
    assert!(runs.iter().any(|r| r.profile_id == z));
}

/// A status change rewrites the actions' statuses inside the stored
/// version (no new version): the flow index compiles the new definition
/// even though the version number is the one it already holds.
async fn a_status_change_reaches_the_indexed_definition(backend: &str) {
    let e = env(backend).await;
    let m = e.metric("Placed Order").await;
    let mut act = marking("bought");
    act["data"]["status"] = json!("manual");
    let (f, _) = create_flow(
        &e,
        "manual",
        json!({"triggers": [{"type": "metric", "id": m}], "actions": [act],
               "entry_action_id": "mark"}),
    )
    .await;
    let a = e.profile("a@x.io", json!({})).await;
    e.event(&m, &a, json!({}), false).await;
    e.settle().await;
    assert_eq!(e.runs_of_flow(&f).await[0].state, "needs-review");

    let (flow, _) = change(&e, &f, Some("live"), None).await;
    assert_eq!(flow.version, 1, "the version was rewritten in place");
    let b = e.profile("b@x.io", json!({})).await;
    e.event(&m, &b, json!({}), false).await;
    e.settle().await;
    let runs = e.runs_of_flow(&f).await;
    let b_run = runs.iter().find(|r| r.profile_id == b).expect("b's run");
    assert_eq!(b_run.state, "done");
    assert_eq!(e.properties(&b).await["bought"], "yes");
}

on_both!(
    a_status_change_reaches_the_indexed_definition,
    flow_status_sets_every_action_for_waiting_runs,
    items_before_going_live_never_start_it,
    update_profile_then_repeated_event_attributes,
    metric_trigger,
    list_trigger,
    profile_filter,
    splits_delay_webhook,
    webhook_failure_is_skipped_and_run_continues,
    manual_release_and_cancel,
    reentry_default_and_versions,
);
