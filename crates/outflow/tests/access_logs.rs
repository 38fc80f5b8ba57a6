//! Acceptance 3 of issue 6: secrets never reach the logs. Every log line
//! of a whole scenario (at TRACE, every crate) is captured while a
//! password is set and tried, MFA enrolled, a session opened, a key made
//! and used, and a flow's webhook with an `Authorization` header created
//! and run; then none of those secrets may appear in the capture.
//! (Its own test binary: it installs the process-wide subscriber.)

mod common;

use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_the_logs() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(capture.clone())
        .with_ansi(false)
        .init();

    let app = common::start("sqlite").await;
    let password = "owner-password-S3cr3t";
    let wrong = "wrong-password-S3cr3t";
    let hook_auth = "Bearer hook-token-S3cr3t";

    let me = app.get("/outflow/v1/me").await;
    assert_eq!(me.status, 200, "{}", me.text);
    let owner = me.body["data"]["user"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = app
        .patch(
            &format!("/outflow/v1/users/{owner}"),
            json!({ "password": password }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let totp_secret = app.enrol_mfa().await;
    app.clock.advance(chrono::Duration::seconds(30));

    let login = |pw: &str, code: String| {
        app.raw(
            "POST",
            "/outflow/v1/auth/login",
            &[("Content-Type", "application/json")],
            Some(
                json!({"email": "owner@localhost", "password": pw, "totp_code": code})
                    .to_string()
                    .into_bytes(),
            ),
        )
    };
    let r = login(wrong, app.totp(&totp_secret)).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = login(password, app.totp(&totp_secret)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.body["data"]["token"].as_str().expect("token").to_owned();
    let bearer = |method: &str, path: &str, body: serde_json::Value| {
        let auth = format!("Bearer {token}");
        let path = path.to_owned();
        let method = method.to_owned();
        let app = &app;
        async move {
            app.raw(
                &method,
                &path,
                &[
                    ("Authorization", auth.as_str()),
                    ("revision", common::REVISION),
                    ("Content-Type", "application/json"),
                ],
                Some(body.to_string().into_bytes()),
            )
            .await
        }
    };
    let r = bearer(
        "POST",
        "/outflow/v1/api-keys",
        json!({"name": "ci", "scopes": ["events:write", "flows:write", "webhooks:write", "metrics:read"]}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let new_key = r.body["data"]["key"].as_str().expect("key").to_owned();

    // A live flow whose webhook carries an Authorization header, run once.
    let ev = common::event_body("Placed Order", "buyer@example.com", Some("seed"));
    let r = app.post("/api/events", ev).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let metric = app.get("/api/metrics").await.body["data"][0]["id"]
        .as_str()
        .expect("metric")
        .to_owned();
    let def = json!({"triggers": [{"type": "metric", "id": metric}],
        "actions": [{"temporary_id": "hook", "type": "send-webhook", "links": {"next": null},
            "data": {"status": "live", "message": {"name": "hook", "url": "http://127.0.0.1:9/hook",
                "headers": {"Authorization": hook_auth}, "body": "{\"e\": \"{{ person.email }}\"}"}}}],
        "entry_action_id": "hook"});
    let r = bearer(
        "POST",
        "/api/flows",
        json!({"data": {"type": "flow", "attributes": {"name": "hooked", "status": "live", "definition": def}}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let flow = r.body["data"]["id"].as_str().expect("flow").to_owned();
    let ev = common::event_body("Placed Order", "buyer@example.com", Some("go"));
    let r = app
        .raw(
            "POST",
            "/api/events",
            &[
                ("Authorization", &format!("Klaviyo-API-Key {new_key}")),
                ("revision", common::REVISION),
                ("Content-Type", "application/json"),
            ],
            Some(ev.to_string().into_bytes()),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let engine = app.server.as_ref().expect("server").engine.clone();
    // The server's own engine loop may hold the run's lease at first: tick
    // until the step is recorded (bounded).
    let started = std::time::Instant::now();
    let mut runs = app.get(&format!("/outflow/v1/flows/{flow}/runs")).await;
    while !runs.text.contains("\"action_id\"")
        && started.elapsed() < std::time::Duration::from_secs(10)
    {
        engine.run_until_idle().await.expect("engine runs");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        runs = app.get(&format!("/outflow/v1/flows/{flow}/runs")).await;
    }
    assert_eq!(runs.status, 200, "{}", runs.text);
    assert!(
        runs.text.contains("\"action_id\""),
        "the webhook step ran: {}",
        runs.text
    );
    let r = bearer("POST", "/outflow/v1/signing-secret/rotate", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let signing = r.body["secret"]
        .as_str()
        .expect("signing secret")
        .to_owned();
    let r = bearer("POST", "/outflow/v1/auth/logout", json!({})).await;
    assert_eq!(r.status, 204, "{}", r.text);
    app.stop().await;

    let logs = String::from_utf8_lossy(&capture.0.lock().expect("logs")).into_owned();
    assert!(
        logs.contains("group commit"),
        "the capture must see the server's threads: {logs}"
    );
    for (what, secret) in [
        ("bootstrap key", common::KEY),
        ("password", password),
        ("wrong password", wrong),
        ("TOTP secret", totp_secret.as_str()),
        ("session token", token.as_str()),
        ("new API key", new_key.as_str()),
        ("webhook Authorization header", "hook-token-S3cr3t"),
        ("signing secret", signing.as_str()),
        ("signing key", signing.trim_start_matches("whsec_")),
    ] {
        assert!(!logs.contains(secret), "the {what} appears in the logs");
    }
}
