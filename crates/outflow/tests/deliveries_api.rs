//! The delivery endpoints over HTTP (issue #7): the log with every attempt,
//! retry, the destination a 410 disabled and its re-enabling, preview, the
//! signing secret and its rotation (both signatures during the window),
//! `/metrics`, and bad input. The server is real; webhooks go to a local
//! receiver.

mod common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use outflow_delivery::signing::{verify, Secret};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Rx {
    status: Arc<AtomicU16>,
    got: Arc<Mutex<Vec<(HeaderMap, String)>>>,
}

impl Rx {
    fn got(&self) -> Vec<(HeaderMap, String)> {
        self.got.lock().expect("lock").clone()
    }
}

async fn hook(State(rx): State<Rx>, headers: HeaderMap, body: String) -> (StatusCode, String) {
    rx.got.lock().expect("lock").push((headers, body));
    let code = StatusCode::from_u16(rx.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK);
    (code, r#"{"received": true}"#.into())
}

async fn receiver(status: u16) -> (String, Rx) {
    let rx = Rx::default();
    rx.status.store(status, Ordering::SeqCst);
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), rx)
}

/// Waits (real time, bounded) until `rx` got `n` requests, ticking the
/// engine so the test does not depend on the background loop's timing.
async fn wait_for(app: &common::App, rx: &Rx, n: usize) {
    let engine = app.server.as_ref().expect("server").engine.clone();
    let start = std::time::Instant::now();
    while rx.got().len() < n && start.elapsed() < std::time::Duration::from_secs(10) {
        engine.run_until_idle().await.expect("engine");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    if rx.got().len() != n {
        let d = app.get("/outflow/v1/deliveries").await;
        let f = app.get("/api/flows").await;
        let fid = f.body["data"][0]["id"].as_str().unwrap_or("").to_owned();
        let runs = app.get(&format!("/outflow/v1/flows/{fid}/runs")).await;
        panic!(
            "{} requests received, not {n}; deliveries: {}; flows: {}; runs: {}",
            rx.got().len(),
            d.text,
            f.text,
            runs.text
        );
    }
    engine.run_until_idle().await.expect("engine");
}

/// A live list flow with one webhook to `url`; returns (flow id, action id,
/// list id).
async fn live_webhook_flow(app: &common::App, url: &str) -> (String, String, String) {
    let r = app
        .post(
            "/api/lists",
            json!({"data": {"type": "list", "attributes": {"name": "Hooked"}}}),
        )
        .await;
    let lid = r.body["data"]["id"].as_str().expect("list").to_owned();
    let def = json!({
        "triggers": [{"type": "list", "id": lid}],
        "actions": [{"temporary_id": "hook", "type": "send-webhook", "links": {"next": null},
            "data": {"status": "live", "message": {"url": url,
                "headers": {"Authorization": "Bearer top-secret-token"},
                "body": "{\"email\": \"{{ person.email }}\", \"org\": \"{{ organization.name }}\"}"}}}],
        "entry_action_id": "hook"
    });
    let r = app
        .post(
            "/api/flows",
            json!({"data": {"type": "flow", "attributes": {"name": "hooked", "definition": def}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let fid = r.body["data"]["id"].as_str().expect("flow").to_owned();
    let r = app
        .patch(
            &format!("/api/flows/{fid}"),
            json!({"data": {"type": "flow", "id": fid, "attributes": {"status": "live"}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app.get(&format!("/api/flows/{fid}/flow-actions")).await;
    let aid = r.body["data"][0]["id"].as_str().expect("action").to_owned();
    (fid, aid, lid)
}

async fn join(app: &common::App, lid: &str, email: &str) -> String {
    let p = app
        .post(
            "/api/profiles",
            json!({"data": {"type": "profile", "attributes": {"email": email}}}),
        )
        .await;
    let pid = p.body["data"]["id"].as_str().expect("profile").to_owned();
    let r = app
        .post(
            &format!("/api/lists/{lid}/relationships/profiles"),
            json!({"data": [{"type": "profile", "id": pid}]}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    pid
}

fn verifies(secret: &str, headers: &HeaderMap, body: &str) -> bool {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let secret = Secret::parse(secret).expect("secret");
    let ts: i64 = h("webhook-timestamp").parse().expect("timestamp");
    verify(
        &secret,
        &h("webhook-id"),
        ts,
        body.as_bytes(),
        &h("webhook-signature"),
    )
}

async fn log_retry_secret_and_rotation(backend: &str) {
    let app = common::start(backend).await;
    app.enrol_mfa().await;
    let (url, rx) = receiver(200).await;
    let (fid, aid, lid) = live_webhook_flow(&app, &url).await;
    let pid = join(&app, &lid, "log@x.io").await;
    wait_for(&app, &rx, 1).await;
    let (headers, body) = rx.got()[0].clone();
    assert_eq!(body, r#"{"email": "log@x.io", "org": "Outflow"}"#);

    let s = app.get("/outflow/v1/signing-secret").await;
    assert_eq!(s.status, 200, "{}", s.text);
    let old = s.body["secret"].as_str().expect("secret").to_owned();
    assert!(old.starts_with("whsec_"));
    assert!(verifies(&old, &headers, &body));

    let r = app
        .get(&format!("/outflow/v1/deliveries?flow_id={fid}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = &r.body["data"][0];
    assert_eq!(d["status"], "succeeded");
    assert_eq!(d["profile_id"], pid.as_str());
    assert_eq!(d["action_id"], aid.as_str());
    let id = d["id"].as_str().expect("id").to_owned();
    assert_eq!(
        headers.get("webhook-id").and_then(|v| v.to_str().ok()),
        Some(id.as_str())
    );
    let r = app.get(&format!("/outflow/v1/deliveries/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let attempt = &r.body["data"]["attempt_log"][0];
    assert_eq!(attempt["response"]["status"], 200);
    assert_eq!(attempt["response"]["body"], r#"{"received": true}"#);
    assert_eq!(attempt["request"]["body"], body.as_str());
    assert!(attempt["latency_ms"].as_f64().is_some());
    assert!(!r.text.contains("top-secret-token"), "{}", r.text);

    // Rotation: the next attempt carries both signatures.
    let rot = app
        .post("/outflow/v1/signing-secret/rotate", json!({}))
        .await;
    assert_eq!(rot.status, 200, "{}", rot.text);
    let new = rot.body["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new, old);
    let r = app
        .post(&format!("/outflow/v1/deliveries/{id}/retry"), json!({}))
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    wait_for(&app, &rx, 2).await;
    let (h2, b2) = rx.got()[1].clone();
    assert_eq!(h2.get("webhook-id"), headers.get("webhook-id"), "same id");
    let sigs = h2
        .get("webhook-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(sigs.split(' ').count(), 2, "{sigs}");
    assert!(verifies(&old, &h2, &b2));
    assert!(verifies(&new, &h2, &b2));
    let s = app.get("/outflow/v1/signing-secret").await;
    assert_eq!(s.body["secret"], new.as_str());
    let r = app.get(&format!("/outflow/v1/deliveries/{id}")).await;
    assert_eq!(r.body["data"]["attempts"], 2);

    // Preview renders without sending.
    let r = app
        .post(
            &format!("/outflow/v1/flows/{fid}/actions/{aid}/preview"),
            json!({"profile_id": pid}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["data"]["body"],
        r#"{"email": "log@x.io", "org": "Outflow"}"#
    );
    assert_eq!(r.body["data"]["url"], url.as_str());
    assert_eq!(rx.got().len(), 2);
    let r = app
        .post(
            &format!("/outflow/v1/flows/{fid}/actions/{aid}/preview"),
            json!({"profile_id": "nope"}),
        )
        .await;
    common::assert_error(&r, 404, "not_found");

    let m = app.get("/metrics").await;
    assert_eq!(m.status, 200);
    assert!(
        m.text
            .contains("outflow_delivery_attempts_total{outcome=\"succeeded\"}"),
        "{}",
        m.text
    );
    assert!(m.text.contains("outflow_delivery_due 0"));
}

async fn gone_then_enabled(backend: &str) {
    let app = common::start(backend).await;
    app.enrol_mfa().await;
    let (url, rx) = receiver(410).await;
    let (fid, aid, lid) = live_webhook_flow(&app, &url).await;
    join(&app, &lid, "a@x.io").await;
    wait_for(&app, &rx, 1).await;
    let path = format!("/outflow/v1/flows/{fid}/actions/{aid}/destination");
    let r = app.get(&path).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["enabled"], false);
    assert!(r.body["data"]["reason"]
        .as_str()
        .unwrap_or("")
        .contains("410"));
    rx.status.store(200, Ordering::SeqCst);
    join(&app, &lid, "b@x.io").await;
    let engine = app.server.as_ref().expect("server").engine.clone();
    engine.run_until_idle().await.expect("engine");
    assert_eq!(rx.got().len(), 1, "disabled destination gets nothing");
    let r = app.post(&format!("{path}/enable"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(app.get(&path).await.body["data"]["enabled"], true);
    // Replaying the action's skipped deliveries sends both.
    let r = app
        .post(
            "/outflow/v1/deliveries/replay",
            json!({"flow_id": fid, "action_id": aid, "since": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["data"]["replayed"], 2);
    wait_for(&app, &rx, 3).await;
    let r = app
        .get("/outflow/v1/deliveries?status=succeeded&page_size=1")
        .await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(1));
    let cursor = r.body["next_cursor"].as_str().expect("more").to_owned();
    let r2 = app
        .get(&format!(
            "/outflow/v1/deliveries?status=succeeded&page_size=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(r2.body["data"].as_array().map(Vec::len), Some(1));
    assert_ne!(r2.body["data"][0]["id"], r.body["data"][0]["id"]);
    assert_eq!(r2.body["next_cursor"], Value::Null);
}

async fn bad_input(backend: &str) {
    let app = common::start(backend).await;
    app.enrol_mfa().await;
    let r = app.get("/outflow/v1/deliveries?status=bogus").await;
    common::assert_error(&r, 400, "invalid");
    let r = app.get("/outflow/v1/deliveries?cursor=%%%").await;
    common::assert_error(&r, 400, "invalid");
    let r = app.get("/outflow/v1/deliveries?since=yesterday").await;
    common::assert_error(&r, 400, "invalid");
    let r = app.get("/outflow/v1/deliveries?page_size=0").await;
    common::assert_error(&r, 400, "invalid");
    let r = app.get("/outflow/v1/deliveries/nope").await;
    common::assert_error(&r, 404, "not_found");
    let r = app
        .post("/outflow/v1/deliveries/nope/retry", json!({}))
        .await;
    common::assert_error(&r, 404, "not_found");
    let r = app
        .post("/outflow/v1/deliveries/replay", json!({"flow_id": 3}))
        .await;
    common::assert_error(&r, 400, "invalid");
    let r = app
        .get("/outflow/v1/flows/nope/actions/1/destination")
        .await;
    common::assert_error(&r, 404, "not_found");
    let r = app
        .post("/outflow/v1/flows/nope/actions/1/preview", json!({}))
        .await;
    common::assert_error(&r, 400, "invalid");
    let r = app.raw("GET", "/outflow/v1/deliveries", &[], None).await;
    assert_eq!(r.status, 401, "{}", r.text);
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

/// The webhook gate covers the delivery endpoints: the bootstrap key has
/// every scope but its owner has no MFA yet.
async fn gate_without_mfa(backend: &str) {
    let app = common::start(backend).await;
    for (method, path) in [
        ("GET", "/outflow/v1/signing-secret"),
        ("POST", "/outflow/v1/signing-secret/rotate"),
        ("POST", "/outflow/v1/deliveries/x/retry"),
        ("POST", "/outflow/v1/deliveries/replay"),
        ("POST", "/outflow/v1/flows/f/actions/1/destination/enable"),
    ] {
        let r = if method == "GET" {
            app.get(path).await
        } else {
            app.post(path, json!({})).await
        };
        let e = common::assert_error(&r, 403, "permission_denied");
        assert!(
            e["detail"].as_str().unwrap_or("").contains("multi-factor"),
            "{path}: {e}"
        );
    }
    let r = app.get("/outflow/v1/deliveries").await;
    assert_eq!(r.status, 200, "reading the log is not gated");
}

on_both!(
    log_retry_secret_and_rotation,
    gone_then_enabled,
    bad_input,
    gate_without_mfa
);
