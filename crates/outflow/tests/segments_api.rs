//! The segments API (issue #5) over HTTP on the real server, on SQLite and
//! PostgreSQL: create, read, update, delete in Klaviyo's shapes, errors
//! with pointers, membership kept current by profile edits and events, a
//! flow on a segment, and `POST /outflow/v1/flows/{id}/add-past-profiles`.

mod common;

use common::{assert_error, App};
use serde_json::{json, Value};

fn segment_body(name: &str, definition: Value) -> Value {
    json!({"data": {"type": "segment", "attributes": {"name": name, "definition": definition}}})
}

fn prop_equals(key: &str, value: &str) -> Value {
    json!({"condition_groups": [{"conditions": [{"type": "profile-property",
        "property": format!("properties['{key}']"),
        "filter": {"type": "string", "operator": "equals", "value": value}}]}]})
}

async fn profile(app: &App, email: &str, props: Value) -> String {
    let r = app
        .post(
            "/api/profiles",
            json!({"data": {"type": "profile", "attributes": {"email": email, "properties": props}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["data"]["id"].as_str().expect("id").to_owned()
}

async fn settle(app: &App) {
    let engine = app.server.as_ref().expect("server").engine.clone();
    engine.run_until_idle().await.expect("engine");
}

/// Settles until `check` holds (or 10 s pass): the server's own engine
/// workers run beside the test's ticks and may hold a batch when the test's
/// engine finds nothing to do.
async fn settled<F, Fut>(app: &App, check: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    loop {
        settle(app).await;
        if check().await {
            return true;
        }
        if start.elapsed() > std::time::Duration::from_secs(10) {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn runs_count(app: &App, fid: &str) -> usize {
    let r = app.get(&format!("/outflow/v1/flows/{fid}/runs")).await;
    r.body["data"].as_array().map_or(0, Vec::len)
}

async fn member_ids(app: &App, sid: &str) -> Vec<String> {
    let r = app.get(&format!("/api/segments/{sid}/profiles")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut ids: Vec<String> = r.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|p| p["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

async fn crud_and_membership(backend: &str) {
    let app = common::start(backend).await;
    let gold = profile(&app, "g@x.io", json!({"Tier": "Gold"})).await;
    let silver = profile(&app, "s@x.io", json!({"Tier": "Silver"})).await;
    let r = app
        .post(
            "/api/segments",
            segment_body("Gold", prop_equals("Tier", "Gold")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let sid = r.body["data"]["id"].as_str().expect("id").to_owned();
    assert_eq!(r.body["data"]["type"], "segment");
    assert_eq!(r.body["data"]["attributes"]["name"], "Gold");
    assert_eq!(r.body["data"]["attributes"]["is_active"], true);
    assert_eq!(r.body["data"]["attributes"]["is_starred"], false);
    assert!(r.body["data"]["attributes"]["is_processing"].is_boolean());
    assert_eq!(
        r.body["data"]["attributes"]["definition"],
        prop_equals("Tier", "Gold")
    );
    assert!(
        settled(&app, || async {
            member_ids(&app, &sid).await == vec![gold.clone()]
        })
        .await
    );
    let r = app
        .get(&format!(
            "/api/segments/{sid}?additional-fields[segment]=profile_count"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["attributes"]["profile_count"], 1);
    assert_eq!(r.body["data"]["attributes"]["is_processing"], false);
    // A profile edit over the API moves membership.
    let r = app
        .patch(
            &format!("/api/profiles/{silver}"),
            json!({"data": {"type": "profile", "id": silver, "attributes": {"properties": {"Tier": "Gold"}}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut both = vec![gold.clone(), silver.clone()];
    both.sort();
    assert!(settled(&app, || async { member_ids(&app, &sid).await == both }).await);
    let r = app
        .get(&format!("/api/segments/{sid}/relationships/profiles"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ids: Vec<Value> = both
        .iter()
        .map(|p| json!({"type": "profile", "id": p}))
        .collect();
    assert_eq!(r.body["data"], json!(ids));
    let r = app
        .get(&format!("/api/segments/{sid}?fields[segment]=name"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["attributes"], json!({"name": "Gold"}));
    // List, rename, edit the definition.
    let r = app.get("/api/segments?filter=equals(name,\"Gold\")").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(1));
    let r = app
        .patch(
            &format!("/api/segments/{sid}"),
            json!({"data": {"type": "segment", "id": sid, "attributes": {"name": "Silver", "definition": prop_equals("Tier", "Silver")}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["attributes"]["name"], "Silver");
    assert!(settled(&app, || async { member_ids(&app, &sid).await.is_empty() }).await);
    // Deactivation must come alone.
    let r = app
        .patch(
            &format!("/api/segments/{sid}"),
            json!({"data": {"type": "segment", "id": sid, "attributes": {"is_active": false, "name": "x"}}}),
        )
        .await;
    let e = assert_error(&r, 400, "invalid");
    assert_eq!(e["source"]["pointer"], "/data/attributes/is_active");
    let r = app.delete(&format!("/api/segments/{sid}")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = app.get(&format!("/api/segments/{sid}")).await;
    assert_error(&r, 404, "not_found");
    app.stop().await;
}

async fn invalid_definitions(backend: &str) {
    let app = common::start(backend).await;
    let base = "/data/attributes/definition";
    let cases = [
        (json!({}), format!("{base}/condition_groups")),
        (
            json!({"condition_groups": [{"conditions": [{"type": "profile-property", "property": "properties['x']",
                "filter": {"type": "string", "operator": "sounds-like", "value": "x"}}]}]}),
            format!("{base}/condition_groups/0/conditions/0/filter/operator"),
        ),
        (
            json!({"condition_groups": [{"conditions": [{"type": "profile-group-membership", "is_member": true,
                "group_ids": ["NOPE"]}]}]}),
            format!("{base}/condition_groups"),
        ),
    ];
    for (def, ptr) in cases {
        let r = app
            .post("/api/segments", segment_body("bad", def.clone()))
            .await;
        let e = assert_error(&r, 400, "invalid");
        assert_eq!(e["source"]["pointer"], ptr.as_str(), "{def}");
    }
    let r = app
        .post("/api/segments", json!({"data": {"type": "segment", "attributes": {"definition": prop_equals("a", "b")}}}))
        .await;
    assert_error(&r, 400, "invalid");
    // Segments may not depend on each other in a cycle.
    let a = app
        .post("/api/segments", segment_body("A", prop_equals("a", "b")))
        .await;
    let a = a.body["data"]["id"].as_str().expect("id").to_owned();
    let on_a = json!({"condition_groups": [{"conditions": [{"type": "profile-group-membership",
        "is_member": true, "group_ids": [a]}]}]});
    let b = app.post("/api/segments", segment_body("B", on_a)).await;
    assert_eq!(b.status, 201, "{}", b.text);
    let b = b.body["data"]["id"].as_str().expect("id").to_owned();
    let on_b = json!({"condition_groups": [{"conditions": [{"type": "profile-group-membership",
        "is_member": true, "group_ids": [b]}]}]});
    let r = app
        .patch(
            &format!("/api/segments/{a}"),
            json!({"data": {"type": "segment", "id": a, "attributes": {"definition": on_b}}}),
        )
        .await;
    let e = assert_error(&r, 400, "invalid");
    assert!(e["detail"].as_str().unwrap_or("").contains("cycle"), "{e}");
    // A flow on a segment that does not exist.
    let r = app
        .post(
            "/api/flows",
            json!({"data": {"type": "flow", "attributes": {"name": "f", "definition": {
                "triggers": [{"type": "segment", "id": "NOPE"}], "actions": [], "entry_action_id": null}}}}),
        )
        .await;
    let e = assert_error(&r, 400, "invalid");
    assert_eq!(
        e["source"]["pointer"],
        "/data/attributes/definition/triggers/0/id"
    );
    app.stop().await;
}

async fn metric_segment_and_past_profiles(backend: &str) {
    let app = common::start(backend).await;
    for email in ["a@x.io", "b@x.io"] {
        let r = app
            .post(
                "/api/events",
                common::event_body("Placed Order", email, None),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
    }
    let r = app.get("/api/metrics").await;
    let metric = r.body["data"]
        .as_array()
        .and_then(|ms| {
            ms.iter()
                .find(|m| m["attributes"]["name"] == "Placed Order")
        })
        .and_then(|m| m["id"].as_str())
        .expect("metric")
        .to_owned();
    let def = json!({"condition_groups": [{"conditions": [{"type": "profile-metric", "metric_id": metric,
        "measurement": "count", "measurement_filter": {"type": "numeric", "operator": "greater-than", "value": 0},
        "timeframe_filter": {"type": "date", "operator": "in-the-last", "quantity": 30, "unit": "day"}}]}]});
    let r = app.post("/api/segments", segment_body("Buyers", def)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let sid = r.body["data"]["id"].as_str().expect("id").to_owned();
    assert!(settled(&app, || async { member_ids(&app, &sid).await.len() == 2 }).await);
    let r = app
        .post(
            "/api/flows",
            json!({"data": {"type": "flow", "attributes": {"name": "Buyers", "status": "live", "definition": {
                "triggers": [{"type": "segment", "id": sid}],
                "actions": [{"temporary_id": "t1", "type": "update-profile", "links": {"next": null},
                    "data": {"status": "live", "profile_operations": [{"operator": "update",
                        "property_type": "string", "property_key": "Thanked", "property_value": "yes"}]}}],
                "entry_action_id": "t1"}}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let fid = r.body["data"]["id"].as_str().expect("id").to_owned();
    settle(&app).await;
    let r = app.get(&format!("/outflow/v1/flows/{fid}/runs")).await;
    assert_eq!(
        r.body["data"].as_array().map(Vec::len),
        Some(0),
        "members before live do not enter"
    );
    // A new buyer enters on its own.
    app.post(
        "/api/events",
        common::event_body("Placed Order", "c@x.io", None),
    )
    .await;
    assert!(settled(&app, || async { runs_count(&app, &fid).await == 1 }).await);
    // Add past profiles enrols the other two, once.
    let r = app
        .post(
            &format!("/outflow/v1/flows/{fid}/add-past-profiles"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let bid = r.body["data"]["id"].as_str().expect("id").to_owned();
    assert!(
        settled(&app, || async {
            let r = app.get(&format!("/outflow/v1/flow-backfills/{bid}")).await;
            r.body["data"]["attributes"]["status"] == "done"
        })
        .await
    );
    let r = app.get(&format!("/outflow/v1/flow-backfills/{bid}")).await;
    assert_eq!(r.body["data"]["attributes"]["enrolled"], 2, "{}", r.text);
    assert!(settled(&app, || async { runs_count(&app, &fid).await == 3 }).await);
    let r = app.get(&format!("/api/segments/{sid}/flow-triggers")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"][0]["id"], fid.as_str());
    let r = app
        .post("/outflow/v1/flows/NOPE/add-past-profiles", json!({}))
        .await;
    assert_error(&r, 404, "not_found");
    app.stop().await;
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name("sqlite").await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name("postgres").await
            }
        })*
    };
}

on_both!(
    crud_and_membership,
    invalid_definitions,
    metric_segment_and_past_profiles
);
