//! The engine inside the real server: a list join over HTTP starts a run of
//! a manual flow, the review endpoint releases it, and run history shows
//! each step. The flow row is inserted directly (independent of the flows
//! API).

mod common;

use outflow_store::params;
use serde_json::{json, Value};

/// Ticks the engine until the first run listed at `path` is in `state` (or
/// 10 s pass), then returns the listing.
async fn settled(
    app: &common::App,
    engine: &outflow_engine::Engine,
    path: &str,
    state: &str,
) -> common::Resp {
    let start = std::time::Instant::now();
    loop {
        engine.run_until_idle().await.expect("engine");
        let runs = app.get(path).await;
        if runs.body["data"][0]["state"] == state
            || start.elapsed() > std::time::Duration::from_secs(10)
        {
            return runs;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn manual_flow_released_over_http(backend: &str) {
    let app = common::start(backend).await;
    let server = app.server.as_ref().expect("server");
    let engine = server.engine.clone();
    let r = app
        .post(
            "/api/lists",
            json!({"data": {"type": "list", "attributes": {"name": "VIP"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let lid = r.body["data"]["id"].as_str().expect("list id").to_owned();
    let p = app
        .post(
            "/api/profiles",
            json!({"data": {"type": "profile", "attributes": {"email": "r@x.co"}}}),
        )
        .await;
    assert_eq!(p.status, 201, "{}", p.text);
    let pid = p.body["data"]["id"]
        .as_str()
        .expect("profile id")
        .to_owned();

    let def = json!({"triggers": [{"type": "list", "id": lid}],
        "actions": [{"id": "7", "type": "update-profile", "links": {"next": null},
                     "data": {"status": "live", "profile_operations": [
                        {"operator": "update", "property_type": "string", "property_key": "Reviewed", "property_value": "yes"}]}}],
        "entry_action_id": "7"});
    let (l, d) = (lid.clone(), def.to_string());
    engine
        .store()
        .write(move |ctx| {
            let account: String = ctx
                .conn
                .query_opt("SELECT id FROM accounts", params![])?
                .map(|r| r.text(0))
                .transpose()?
                .unwrap_or_default();
            ctx.conn.execute(
                "INSERT INTO flows (id, account_id, name, status, archived, trigger_type, trigger_ref, version, created, updated) \
                 VALUES ('FE2E', $1, 'e2e', 'manual', 0, 'list', $2, 1, 1, 1)",
                params![&account, &l],
            )?;
            ctx.conn.execute(
                "INSERT INTO flow_versions (flow_id, version, definition, created) VALUES ('FE2E', 1, $1, 1)",
                params![&d],
            )?;
            Ok(())
        })
        .await
        .expect("flow inserted");
    engine.run_until_idle().await.expect("engine");

    let r = app
        .post(
            &format!("/api/lists/{lid}/relationships/profiles"),
            json!({"data": [{"type": "profile", "id": pid}]}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    // The API wakes the server's own engine workers too, which may hold the
    // run's lease while this test ticks: wait for the state, not one tick.
    let runs = settled(&app, &engine, "/outflow/v1/flows/FE2E/runs", "needs-review").await;
    assert_eq!(runs.status, 200, "{}", runs.text);
    assert_eq!(
        runs.body["data"][0]["state"], "needs-review",
        "{}",
        runs.text
    );

    let r = app
        .post("/outflow/v1/flows/FE2E/actions/7/release", Value::Null)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["runs"], 1);
    let runs = settled(
        &app,
        &engine,
        &format!("/outflow/v1/profiles/{pid}/runs"),
        "done",
    )
    .await;
    assert_eq!(runs.status, 200, "{}", runs.text);
    let run = &runs.body["data"][0];
    assert_eq!(run["state"], "done", "{}", runs.text);
    let outcomes: Vec<&str> = run["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["needs-review", "executed"]);
    let prof = app.get(&format!("/api/profiles/{pid}")).await;
    assert_eq!(
        prof.body["data"]["attributes"]["properties"]["Reviewed"], "yes",
        "{}",
        prof.text
    );

    assert_eq!(app.get("/outflow/v1/flows/NOPE/runs").await.status, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_flow_released_over_http_sqlite() {
    manual_flow_released_over_http("sqlite").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_flow_released_over_http_postgres() {
    manual_flow_released_over_http("postgres").await
}
