//! The flows API over HTTP, against SQLite and PostgreSQL.

mod common;

use common::{assert_error, event_body, start, App, KEY, REVISION};
use serde_json::{json, Value};

/// The id of a metric, created by sending one event of it.
async fn metric_id(app: &App, name: &str) -> String {
    let r = app
        .post("/api/events", event_body(name, "flows@example.com", None))
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let r = app
        .get(&format!("/api/metrics?filter=equals(name,\"{name}\")"))
        .await;
    r.body["data"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("metric {name} in {}", r.text))
        .to_owned()
}

fn definition(metric: &str) -> Value {
    json!({
        "triggers": [{"type": "metric", "id": metric}],
        "actions": [
            {"temporary_id": "wait", "type": "time-delay", "links": {"next": "split"},
             "data": {"unit": "days", "value": 1}},
            {"temporary_id": "split", "type": "conditional-split",
             "links": {"next_if_true": "hook", "next_if_false": null},
             "data": {"profile_filter": {"condition_groups": [{"conditions": [{
                 "type": "profile-property", "property": "properties['Tier']",
                 "filter": {"type": "string", "operator": "equals", "value": "gold"}}]}]}}},
            {"temporary_id": "hook", "type": "send-webhook", "links": {"next": null},
             "data": {"status": "live", "message": {
                 "url": "https://hooks.example.com/x", "headers": {"X-Id": "{{ person.email }}"},
                 "body": "{\"email\": \"{{ person.email }}\"}"}}}
        ],
        "entry_action_id": "wait"
    })
}

fn flow_body(name: &str, def: Value) -> Value {
    json!({"data": {"type": "flow", "attributes": {"name": name, "definition": def}}})
}

async fn create_flow(app: &App, name: &str, def: Value) -> Value {
    let r = app.post("/api/flows", flow_body(name, def)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["data"].clone()
}

fn action_ids(def: &Value) -> Vec<String> {
    def["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| a["id"].as_str().expect("action id").to_owned())
        .collect()
}

async fn create_read_update_delete(backend: &str) {
    let app = start(backend).await;
    app.enrol_mfa().await;
    let m = metric_id(&app, "Placed Order").await;
    let flow = create_flow(&app, "Post-purchase", definition(&m)).await;
    assert_eq!(flow["type"], "flow");
    let id = flow["id"].as_str().expect("id").to_owned();
    let a = &flow["attributes"];
    assert_eq!(a["name"], "Post-purchase");
    assert_eq!(a["status"], "draft");
    assert_eq!(a["archived"], false);
    assert_eq!(a["trigger_type"], "Metric");
    assert_eq!(a["created"], "2026-11-27T10:00:00+00:00");
    let def = &a["definition"];
    assert!(!def.to_string().contains("temporary_id"), "{def}");
    let ids = action_ids(def);
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| i.parse::<u64>().is_ok()), "{ids:?}");
    assert_eq!(def["entry_action_id"], ids[0].as_str());
    assert_eq!(def["actions"][1]["links"]["next_if_true"], ids[2].as_str());
    assert!(flow["relationships"]["flow-actions"]["links"]["related"].is_string());

    // Read back: no definition unless asked for.
    let r = app.get(&format!("/api/flows/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["data"]["attributes"].get("definition").is_none());
    let r = app
        .get(&format!(
            "/api/flows/{id}?additional-fields[flow]=definition"
        ))
        .await;
    assert_eq!(r.body["data"]["attributes"]["definition"], *def);
    let r = app
        .get(&format!("/api/flows/{id}?additional-fields[flow]=nope"))
        .await;
    assert_error(&r, 400, "invalid");

    // Status change.
    let r = app
        .patch(
            &format!("/api/flows/{id}"),
            json!({"data": {"type": "flow", "id": id, "attributes": {"status": "live"}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["attributes"]["status"], "live");
    let bad = app
        .patch(
            &format!("/api/flows/{id}"),
            json!({"data": {"type": "flow", "id": id, "attributes": {"status": "paused"}}}),
        )
        .await;
    let e = assert_error(&bad, 400, "invalid");
    assert_eq!(e["source"]["pointer"], "/data/attributes/status");
    let mismatch = app
        .patch(
            &format!("/api/flows/{id}"),
            json!({"data": {"type": "flow", "id": "other", "attributes": {"status": "live"}}}),
        )
        .await;
    assert_error(&mismatch, 400, "invalid");

    // A changed definition is a new version; the old one stays readable.
    let mut changed = def.clone();
    changed["actions"][0]["data"]["value"] = json!(2);
    let r = app
        .patch(
            &format!("/api/flows/{id}?additional-fields[flow]=definition"),
            json!({"data": {"type": "flow", "id": id, "attributes": {"definition": changed}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["data"]["attributes"]["definition"]["actions"][0]["data"]["value"],
        2
    );
    assert_eq!(action_ids(&r.body["data"]["attributes"]["definition"]), ids);
    let store = app.server.as_ref().expect("server").engine.store().clone();
    let fid = id.clone();
    let versions = store
        .read(move |c| outflow_store::flows::versions(c, &fid))
        .await
        .expect("versions");
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].1["actions"][0]["data"]["value"], 1);
    assert_eq!(versions[1].1["actions"][0]["data"]["value"], 2);

    // An id that is not one of this flow's actions.
    let mut foreign = def.clone();
    foreign["actions"][2]["id"] = json!("424242424242");
    foreign["actions"][1]["links"]["next_if_true"] = json!("424242424242");
    let r = app
        .patch(
            &format!("/api/flows/{id}"),
            json!({"data": {"type": "flow", "id": id, "attributes": {"definition": foreign}}}),
        )
        .await;
    let e = assert_error(&r, 400, "invalid");
    assert_eq!(
        e["source"]["pointer"],
        "/data/attributes/definition/actions/2/id"
    );
    // Ids are not allowed on create.
    let r = app.post("/api/flows", flow_body("Copy", def.clone())).await;
    let e = assert_error(&r, 400, "invalid");
    assert_eq!(
        e["source"]["pointer"],
        "/data/attributes/definition/actions/0/id"
    );

    // Flow triggers of the metric.
    let r = app.get(&format!("/api/metrics/{m}/flow-triggers")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"][0]["id"], id.as_str());
    assert_error(
        &app.get("/api/metrics/nope/flow-triggers").await,
        404,
        "not_found",
    );

    // Delete.
    let r = app.delete(&format!("/api/flows/{id}")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_error(
        &app.get(&format!("/api/flows/{id}")).await,
        404,
        "not_found",
    );
    assert_error(
        &app.delete(&format!("/api/flows/{id}")).await,
        404,
        "not_found",
    );
    assert_error(
        &app.get(&format!("/api/flow-actions/{}", ids[0])).await,
        404,
        "not_found",
    );
    app.stop().await;
}

async fn list_filter_sort_paginate(backend: &str) {
    let app = start(backend).await;
    app.enrol_mfa().await;
    let m = metric_id(&app, "Placed Order").await;
    let r = app
        .post(
            "/api/lists",
            json!({"data": {"type": "list", "attributes": {"name": "Newsletter"}}}),
        )
        .await;
    let list = r.body["data"]["id"].as_str().expect("list id").to_owned();
    let mut ids = Vec::new();
    for i in 0..55 {
        app.clock.advance(chrono::Duration::seconds(1));
        let def = if i % 5 == 0 {
            json!({"triggers": [{"type": "list", "id": list}], "actions": [], "entry_action_id": null})
        } else {
            definition(&m)
        };
        let f = create_flow(&app, &format!("Flow {i:02}"), def).await;
        ids.push(f["id"].as_str().expect("id").to_owned());
    }
    // Default page size 50, then a next link.
    let r = app.get("/api/flows").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let first = r.body["data"].as_array().expect("data").clone();
    assert_eq!(first.len(), 50);
    assert_eq!(first[0]["id"], ids[0].as_str(), "oldest first by default");
    let next = r.body["links"]["next"]
        .as_str()
        .expect("next link")
        .to_owned();
    let path = next.trim_start_matches(&app.base).to_owned();
    let r = app.get(&path).await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(5));
    assert!(r.body["links"]["next"].is_null());
    // Page size above the maximum.
    assert_error(&app.get("/api/flows?page[size]=51").await, 400, "invalid");
    // Sort by name, descending, with small pages across the cursor.
    let r = app.get("/api/flows?sort=-name&page[size]=2").await;
    assert_eq!(r.body["data"][0]["attributes"]["name"], "Flow 54");
    assert_eq!(r.body["data"][1]["attributes"]["name"], "Flow 53");
    let next = r.body["links"]["next"].as_str().expect("next").to_owned();
    let r = app.get(next.trim_start_matches(&app.base)).await;
    assert_eq!(r.body["data"][0]["attributes"]["name"], "Flow 52");
    assert_error(&app.get("/api/flows?sort=color").await, 400, "invalid");
    // Filters.
    let count = |r: &common::Resp| r.body["data"].as_array().map_or(0, Vec::len);
    let r = app
        .get("/api/flows?filter=equals(trigger_type,\"Added to List\")")
        .await;
    assert_eq!(count(&r), 11, "{}", r.text);
    let r = app.get("/api/flows?filter=contains(name,\"w 1\")").await;
    assert_eq!(count(&r), 10);
    let r = app
        .get("/api/flows?filter=starts-with(name,\"Flow 5\")")
        .await;
    assert_eq!(count(&r), 5);
    let r = app.get("/api/flows?filter=equals(name,\"Flow 07\")").await;
    assert_eq!(r.body["data"][0]["id"], ids[7].as_str());
    let r = app
        .get(&format!(
            "/api/flows?filter=any(id,[\"{}\",\"{}\"])",
            ids[1], ids[2]
        ))
        .await;
    assert_eq!(count(&r), 2);
    let r = app
        .patch(
            &format!("/api/flows/{}", ids[3]),
            json!({"data": {"type": "flow", "id": ids[3], "attributes": {"status": "live"}}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = app.get("/api/flows?filter=equals(status,\"live\")").await;
    assert_eq!(count(&r), 1);
    let r = app
        .get("/api/flows?filter=equals(status,\"draft\"),equals(archived,false)")
        .await;
    assert_eq!(count(&r), 50, "a page of the 54 drafts");
    let r = app
        .get("/api/flows?filter=greater-than(created,2026-11-27T10:00:50Z)")
        .await;
    assert_eq!(count(&r), 5);
    let r = app
        .get("/api/flows?filter=less-or-equal(created,2026-11-27T10:00:02Z)")
        .await;
    assert_eq!(count(&r), 2);
    let r = app
        .get("/api/flows?filter=equals(created,2026-11-27T10:00:02Z)")
        .await;
    assert_eq!(r.body["data"][0]["id"], ids[1].as_str());
    let r = app.get("/api/flows?filter=equals(color,\"red\")").await;
    let e = assert_error(&r, 400, "invalid");
    assert_eq!(e["source"]["parameter"], "filter");
    assert_error(
        &app.get("/api/flows?filter=contains(status,\"l\")").await,
        400,
        "invalid",
    );
    // Flows triggered by the list.
    let r = app.get(&format!("/api/lists/{list}/flow-triggers")).await;
    assert_eq!(count(&r), 11, "{}", r.text);
    app.stop().await;
}

async fn flow_actions(backend: &str) {
    let app = start(backend).await;
    app.enrol_mfa().await;
    let m = metric_id(&app, "Placed Order").await;
    let flow = create_flow(&app, "Actions", definition(&m)).await;
    let id = flow["id"].as_str().expect("id").to_owned();
    let ids = action_ids(&flow["attributes"]["definition"]);

    let r = app.get(&format!("/api/flows/{id}/flow-actions")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let data = r.body["data"].as_array().expect("data");
    assert_eq!(data.len(), 3);
    assert_eq!(data[0]["type"], "flow-action");
    assert_eq!(data[0]["id"], ids[0].as_str());
    assert_eq!(data[0]["attributes"]["definition"]["type"], "time-delay");
    assert_eq!(data[0]["relationships"]["flow"]["data"]["id"], id.as_str());
    let r = app
        .get(&format!(
            "/api/flows/{id}/flow-actions?filter=equals(action_type,\"send-webhook\")"
        ))
        .await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(r.body["data"][0]["id"], ids[2].as_str());
    let r = app
        .get(&format!(
            "/api/flows/{id}/flow-actions?filter=equals(status,\"live\")"
        ))
        .await;
    assert_eq!(
        r.body["data"].as_array().map(Vec::len),
        Some(1),
        "only the webhook is live"
    );
    let r = app
        .get(&format!(
            "/api/flows/{id}/flow-actions?page[size]=2&sort=-id"
        ))
        .await;
    assert_eq!(r.body["data"][0]["id"], ids[2].as_str());
    let next = r.body["links"]["next"].as_str().expect("next").to_owned();
    let r = app.get(next.trim_start_matches(&app.base)).await;
    assert_eq!(r.body["data"][0]["id"], ids[0].as_str());
    let r = app
        .get(&format!("/api/flows/{id}/relationships/flow-actions"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["data"],
        json!(ids
            .iter()
            .map(|i| json!({"type": "flow-action", "id": i}))
            .collect::<Vec<_>>())
    );
    assert_error(
        &app.get("/api/flows/nope/flow-actions").await,
        404,
        "not_found",
    );

    // One action, and its flow.
    let r = app.get(&format!("/api/flow-actions/{}", ids[2])).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let hook = r.body["data"]["attributes"]["definition"].clone();
    assert_eq!(
        hook["data"]["message"]["url"],
        "https://hooks.example.com/x"
    );
    assert!(r.body["data"]["attributes"]["created"].is_string());
    let r = app.get(&format!("/api/flow-actions/{}/flow", ids[2])).await;
    assert_eq!(r.body["data"]["id"], id.as_str());
    assert_error(&app.get("/api/flow-actions/123abc").await, 404, "not_found");
    assert_error(&app.get("/api/flow-actions/1").await, 404, "not_found");

    // PATCH an action: a new flow version with only that action changed.
    app.clock.advance(chrono::Duration::minutes(5));
    let mut changed = hook.clone();
    changed["data"]["message"]["url"] = json!("https://hooks.example.com/y");
    let r = app
        .patch(
            &format!("/api/flow-actions/{}", ids[2]),
            json!({"data": {"type": "flow-action", "id": ids[2], "attributes": {"definition": changed}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let a = &r.body["data"]["attributes"];
    assert_eq!(
        a["definition"]["data"]["message"]["url"],
        "https://hooks.example.com/y"
    );
    assert_eq!(a["updated"], "2026-11-27T10:05:00+00:00");
    let r = app
        .get(&format!(
            "/api/flows/{id}?additional-fields[flow]=definition"
        ))
        .await;
    let def = &r.body["data"]["attributes"]["definition"];
    assert_eq!(
        def["actions"][2]["data"]["message"]["url"],
        "https://hooks.example.com/y"
    );
    assert_eq!(
        def["actions"][0],
        flow["attributes"]["definition"]["actions"][0]
    );
    let r = app.get(&format!("/api/flow-actions/{}", ids[0])).await;
    assert_eq!(
        r.body["data"]["attributes"]["updated"], "2026-11-27T10:00:00+00:00",
        "untouched actions keep their time"
    );
    // A bad template in the patched action points into the request.
    let mut broken = hook.clone();
    broken["data"]["message"]["body"] = json!("{\"a\": \"{% if person.email %}\"}");
    let r = app
        .patch(
            &format!("/api/flow-actions/{}", ids[2]),
            json!({"data": {"type": "flow-action", "id": ids[2], "attributes": {"definition": broken}}}),
        )
        .await;
    let e = assert_error(&r, 400, "invalid");
    assert!(
        e["source"]["pointer"]
            .as_str()
            .is_some_and(|p| p.starts_with("/data/attributes/definition/data/message")),
        "{e}"
    );
    assert!(
        e["detail"].as_str().is_some_and(|d| d.contains("line 1")),
        "{e}"
    );
    // A link to an action that does not exist.
    let mut dangling = hook.clone();
    dangling["links"]["next"] = json!("nowhere");
    let r = app
        .patch(
            &format!("/api/flow-actions/{}", ids[2]),
            json!({"data": {"type": "flow-action", "id": ids[2], "attributes": {"definition": dangling}}}),
        )
        .await;
    let e = assert_error(&r, 400, "invalid");
    assert_eq!(
        e["source"]["pointer"],
        "/data/attributes/definition/links/next"
    );
    let mut orphan = hook.clone();
    orphan.as_object_mut().map(|o| o.remove("id"));
    let r = app
        .patch(
            "/api/flow-actions/999999999",
            json!({"data": {"type": "flow-action", "id": "999999999", "attributes": {"definition": orphan}}}),
        )
        .await;
    assert_error(&r, 404, "not_found");
    app.stop().await;
}

fn status_body(id: &str, status: &str) -> Value {
    json!({"data": {"type": "flow", "id": id, "attributes": {"status": status}}})
}

/// The webhook action's status in every stored version, oldest first.
async fn hook_statuses(app: &App, id: &str) -> Vec<Value> {
    let store = app.server.as_ref().expect("server").engine.store().clone();
    let fid = id.to_owned();
    store
        .read(move |c| outflow_store::flows::versions(c, &fid))
        .await
        .expect("versions")
        .into_iter()
        .map(|(_, d, _)| d["actions"][2]["data"]["status"].clone())
        .collect()
}

/// `PATCH /api/flows/{id}` with a status sets every action's status too
/// (Klaviyo: "the status of a flow … and all actions in that flow"), in
/// every version; `PATCH /api/flow-actions/{id}` still sets one afterwards.
async fn status_sets_every_action(backend: &str) {
    let app = start(backend).await;
    app.enrol_mfa().await;
    let m = metric_id(&app, "Placed Order").await;
    let mut def = definition(&m);
    def["actions"][2]["data"]["status"] = json!("draft");
    let flow = create_flow(&app, "Statuses", def).await;
    let id = flow["id"].as_str().expect("id").to_owned();
    let ids = action_ids(&flow["attributes"]["definition"]);

    app.clock.advance(chrono::Duration::minutes(5));
    let r = app
        .patch(
            &format!("/api/flows/{id}?additional-fields[flow]=definition"),
            status_body(&id, "manual"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let a = &r.body["data"]["attributes"];
    assert_eq!(a["status"], "manual");
    assert_eq!(a["definition"]["actions"][2]["data"]["status"], "manual");
    assert!(
        a["definition"]["actions"][0]["data"]
            .get("status")
            .is_none(),
        "a delay has no status"
    );
    let r = app
        .get(&format!(
            "/api/flows/{id}?additional-fields[flow]=definition"
        ))
        .await;
    let def = r.body["data"]["attributes"]["definition"].clone();
    assert_eq!(def["actions"][2]["data"]["status"], "manual");
    let r = app.get(&format!("/api/flows/{id}/flow-actions")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["data"][2]["attributes"]["definition"]["data"]["status"],
        "manual"
    );
    let r = app
        .get(&format!(
            "/api/flows/{id}/flow-actions?filter=equals(status,\"manual\")"
        ))
        .await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(3));
    let r = app.get(&format!("/api/flow-actions/{}", ids[2])).await;
    let a = &r.body["data"]["attributes"];
    assert_eq!(a["definition"]["data"]["status"], "manual");
    assert_eq!(a["updated"], "2026-11-27T10:05:00+00:00");
    let r = app.get(&format!("/api/flow-actions/{}", ids[0])).await;
    assert_eq!(
        r.body["data"]["attributes"]["updated"], "2026-11-27T10:00:00+00:00",
        "the delay has no status to change"
    );
    assert_eq!(hook_statuses(&app, &id).await, ["manual"], "no new version");

    // A second version, then live: both versions' actions are live.
    let mut changed = def.clone();
    changed["actions"][0]["data"]["value"] = json!(2);
    let r = app
        .patch(
            &format!("/api/flows/{id}"),
            json!({"data": {"type": "flow", "id": id, "attributes": {"definition": changed}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app
        .patch(
            &format!("/api/flows/{id}?additional-fields[flow]=definition"),
            status_body(&id, "live"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["data"]["attributes"]["definition"]["actions"][2]["data"]["status"],
        "live"
    );
    assert_eq!(hook_statuses(&app, &id).await, ["live", "live"]);

    // One action's status afterwards.
    let r = app.get(&format!("/api/flow-actions/{}", ids[2])).await;
    let mut hook = r.body["data"]["attributes"]["definition"].clone();
    assert_eq!(hook["data"]["status"], "live");
    hook["data"]["status"] = json!("draft");
    let r = app
        .patch(
            &format!("/api/flow-actions/{}", ids[2]),
            json!({"data": {"type": "flow-action", "id": ids[2], "attributes": {"definition": hook}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["data"]["attributes"]["definition"]["data"]["status"],
        "draft"
    );
    let r = app.get(&format!("/api/flows/{id}")).await;
    assert_eq!(r.body["data"]["attributes"]["status"], "live");
    let r = app.get(&format!("/api/flow-actions/{}", ids[2])).await;
    assert_eq!(
        r.body["data"]["attributes"]["definition"]["data"]["status"],
        "draft"
    );
    let r = app
        .get(&format!(
            "/api/flows/{id}/flow-actions?filter=equals(status,\"live\")"
        ))
        .await;
    assert_eq!(
        r.body["data"].as_array().map(Vec::len),
        Some(2),
        "the delay and the split follow the flow"
    );
    assert_eq!(
        hook_statuses(&app, &id).await,
        ["draft", "draft", "draft"],
        "an action's status reaches the runs on older versions"
    );
    app.stop().await;
}

/// Posts a definition and returns the error objects of the 400.
async fn rejected(app: &App, def: Value) -> Vec<Value> {
    let r = app.post("/api/flows", flow_body("Bad", def)).await;
    assert_error(&r, 400, "invalid");
    r.body["errors"].as_array().expect("errors").clone()
}

fn has(errors: &[Value], pointer: &str, detail: &str) -> bool {
    errors.iter().any(|e| {
        e["source"]["pointer"] == pointer
            && e["detail"].as_str().is_some_and(|d| d.contains(detail))
    })
}

async fn validation_errors(backend: &str) {
    let app = start(backend).await;
    app.enrol_mfa().await;
    let m = metric_id(&app, "Placed Order").await;
    let opened = metric_id(&app, "Opened Email").await;
    const D: &str = "/data/attributes/definition";

    // A link to a missing action.
    let mut def = definition(&m);
    def["actions"][0]["links"]["next"] = json!("ghost");
    let errs = rejected(&app, def).await;
    assert!(
        has(&errs, &format!("{D}/actions/0/links/next"), "ghost"),
        "{errs:?}"
    );

    // Unreachable action.
    let mut def = definition(&m);
    def["actions"][1]["links"]["next_if_true"] = Value::Null;
    let errs = rejected(&app, def).await;
    assert!(
        has(&errs, &format!("{D}/actions/2"), "cannot be reached"),
        "{errs:?}"
    );

    // A cycle.
    let mut def = definition(&m);
    def["actions"][2]["links"]["next"] = json!("wait");
    let errs = rejected(&app, def).await;
    assert!(
        errs.iter()
            .any(|e| e["detail"].as_str().is_some_and(|d| d.contains("cycle"))),
        "{errs:?}"
    );

    // Two triggers.
    let mut def = definition(&m);
    def["triggers"] = json!([{"type": "metric", "id": m}, {"type": "metric", "id": m}]);
    let errs = rejected(&app, def).await;
    assert!(
        has(&errs, &format!("{D}/triggers"), "exactly one trigger"),
        "{errs:?}"
    );

    // Unknown action type and unknown condition type, both reported at once.
    let mut def = definition(&m);
    def["actions"][0]["type"] = json!("teleport");
    def["actions"][1]["data"]["profile_filter"]["condition_groups"][0]["conditions"][0]["type"] =
        json!("horoscope");
    let errs = rejected(&app, def).await;
    assert!(
        has(&errs, &format!("{D}/actions/0/type"), "teleport"),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("horoscope"))),
        "{errs:?}"
    );
    assert!(errs.len() >= 2, "all errors are returned: {errs:?}");

    // A metric that cannot trigger flows, named with the reason.
    let errs = rejected(&app, definition(&opened)).await;
    let e = errs
        .iter()
        .find(|e| e["source"]["pointer"] == format!("{D}/triggers/0/id"))
        .unwrap_or_else(|| panic!("{errs:?}"));
    let detail = e["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("Opened Email") && detail.contains("cannot trigger"),
        "{detail}"
    );

    // An unknown metric, and an unknown list.
    let errs = rejected(&app, definition("NOPE42")).await;
    assert!(
        has(&errs, &format!("{D}/triggers/0/id"), "NOPE42"),
        "{errs:?}"
    );
    let errs = rejected(
        &app,
        json!({"triggers": [{"type": "list", "id": "NOLIST"}], "actions": [], "entry_action_id": null}),
    )
    .await;
    assert!(
        has(&errs, &format!("{D}/triggers/0/id"), "NOLIST"),
        "{errs:?}"
    );

    // A webhook template that does not compile: line and column.
    let mut def = definition(&m);
    def["actions"][2]["data"]["message"]["body"] =
        json!("{\n  \"a\": \"{% if person.email %}\"\n}");
    let errs = rejected(&app, def).await;
    let e = errs
        .iter()
        .find(|e| {
            e["source"]["pointer"]
                .as_str()
                .is_some_and(|p| p.starts_with(&format!("{D}/actions/2/data/message")))
        })
        .unwrap_or_else(|| panic!("{errs:?}"));
    let detail = e["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("line") && detail.contains("column"),
        "{detail}"
    );

    // Malformed bodies.
    let r = app
        .post(
            "/api/flows",
            json!({"data": {"type": "flow", "attributes": {"name": "x"}}}),
        )
        .await;
    let e = assert_error(&r, 400, "invalid");
    assert!(
        e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("definition")),
        "{e}"
    );
    let r = app
        .post(
            "/api/flows",
            json!({"data": {"type": "list", "attributes": {"name": "x", "definition": {}}}}),
        )
        .await;
    assert_error(&r, 400, "invalid");
    let r = app.post("/api/flows", flow_body("x", json!([1, 2]))).await;
    let e = assert_error(&r, 400, "invalid");
    assert_eq!(e["source"]["pointer"], D);
    let r = app
        .raw(
            "POST",
            "/api/flows",
            &[
                ("Authorization", &format!("Klaviyo-API-Key {KEY}")),
                ("revision", REVISION),
                ("Content-Type", "application/vnd.api+json"),
            ],
            Some(b"{\"data\": {".to_vec()),
        )
        .await;
    assert_error(&r, 400, "parse_error");
    // Nothing was created by any of these.
    let r = app.get("/api/flows").await;
    assert_eq!(
        r.body["data"].as_array().map(Vec::len),
        Some(0),
        "{}",
        r.text
    );
    app.stop().await;
}

/// Adds a key with only `scopes` to the account, straight in the database
/// (through the server's own store: a second SQLite writer would contend
/// for the lock).
async fn key_with_scopes(app: &App, key: &str, scopes: &[&str]) {
    let store = app.server.as_ref().expect("server").engine.store().clone();
    let (key, scopes) = (key.to_owned(), serde_json::to_string(scopes).expect("json"));
    store
        .write(move |ctx| {
            let row = ctx
                .conn
                .query_opt("SELECT account_id, id FROM users LIMIT 1", &[])?
                .expect("owner");
            let (account, user) = (row.text(0)?, row.text(1)?);
            ctx.conn.execute(
                "INSERT INTO api_keys (id, account_id, user_id, name, prefix, key_hash, scopes, created) \
                 VALUES ($1, $2, $3, 'limited', 'pk_lim', $4, $5, 0)",
                outflow_store::params![
                    &outflow_store::new_ulid(),
                    &account,
                    &user,
                    &outflow_store::accounts::hash_key(&key),
                    &scopes
                ],
            )?;
            Ok(())
        })
        .await
        .expect("key inserted");
}

async fn auth_and_scopes(backend: &str) {
    let app = start(backend).await;
    app.enrol_mfa().await;
    let m = metric_id(&app, "Placed Order").await;
    let flow = create_flow(&app, "Scoped", definition(&m)).await;
    let id = flow["id"].as_str().expect("id").to_owned();
    let action = action_ids(&flow["attributes"]["definition"])[0].clone();
    // No key, and an unknown key.
    let r = app
        .raw("GET", "/api/flows", &[("revision", REVISION)], None)
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = app
        .raw(
            "GET",
            "/api/flows",
            &[
                ("revision", REVISION),
                ("Authorization", "Klaviyo-API-Key pk_unknown_unknown_1"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    // A read-only key reads but cannot write; a key without flows scopes neither.
    key_with_scopes(&app, "pk_flows_read_only_1", &["flows:read"]).await;
    key_with_scopes(&app, "pk_lists_only_key_1", &["lists:read"]).await;
    let with = |key: &'static str, method: &'static str, path: String, body: Option<Value>| {
        let app = &app;
        async move {
            let auth = format!("Klaviyo-API-Key {key}");
            let headers = [
                ("Authorization", auth.as_str()),
                ("revision", REVISION),
                ("Content-Type", "application/vnd.api+json"),
            ];
            app.raw(
                method,
                &path,
                &headers,
                body.map(|b| b.to_string().into_bytes()),
            )
            .await
        }
    };
    let ro = "pk_flows_read_only_1";
    assert_eq!(
        with(ro, "GET", format!("/api/flows/{id}"), None)
            .await
            .status,
        200
    );
    assert_eq!(
        with(ro, "GET", format!("/api/flow-actions/{action}"), None)
            .await
            .status,
        200
    );
    let patch = json!({"data": {"type": "flow", "id": id, "attributes": {"status": "live"}}});
    assert_error(
        &with(ro, "PATCH", format!("/api/flows/{id}"), Some(patch)).await,
        403,
        "permission_denied",
    );
    assert_error(
        &with(
            ro,
            "POST",
            "/api/flows".into(),
            Some(flow_body("x", definition(&m))),
        )
        .await,
        403,
        "permission_denied",
    );
    assert_error(
        &with(ro, "DELETE", format!("/api/flows/{id}"), None).await,
        403,
        "permission_denied",
    );
    let none = "pk_lists_only_key_1";
    assert_error(
        &with(none, "GET", "/api/flows".into(), None).await,
        403,
        "permission_denied",
    );
    assert_error(
        &with(none, "GET", format!("/api/flows/{id}/flow-actions"), None).await,
        403,
        "permission_denied",
    );
    // Unknown ids.
    assert_error(&app.get("/api/flows/NOPE").await, 404, "not_found");
    let r = app
        .patch(
            "/api/flows/NOPE",
            json!({"data": {"type": "flow", "id": "NOPE", "attributes": {"status": "live"}}}),
        )
        .await;
    assert_error(&r, 404, "not_found");
    app.stop().await;
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name("sqlite").await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name("postgres").await } )*
        }
    };
}

suite!(
    create_read_update_delete,
    list_filter_sort_paginate,
    flow_actions,
    status_sets_every_action,
    validation_errors,
    auth_and_scopes,
);
