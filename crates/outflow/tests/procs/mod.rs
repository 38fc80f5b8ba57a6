//! Helpers for tests that run the real `outflow serve` binary as child
//! processes and drive flows through it: spawning (optionally with the
//! `OUTFLOW_CLOCK_FILE` testing aid), a webhook receiver in the test process,
//! bulk event sending, and raw SQL counts on the store while it runs.
#![allow(dead_code)]

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use outflow_store::db::Conn;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const KEY: &str = "pk_test_0123456789abcdef";
pub const REVISION: &str = "2026-07-15";

pub struct Proc {
    pub child: Child,
    pub base: String,
}

impl Proc {
    /// `kill -9`, then reaps the child.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts `outflow serve` on port 0 and waits for its address on stdout.
/// `bootstrap`: whether to pass OUTFLOW_BOOTSTRAP_API_KEY (a second process
/// on a shared database must find the account already there).
pub fn spawn(db_url: &str, clock_file: Option<&Path>, bootstrap: bool) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outflow"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--database", db_url])
        .env("OUTFLOW_LOG", "warn")
        .env("OUTFLOW_WEBHOOKS_ALLOW_PRIVATE", "127.0.0.1")
        .env_remove("OUTFLOW_BOOTSTRAP_API_KEY")
        .env_remove("OUTFLOW_CLOCK_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if bootstrap {
        cmd.env("OUTFLOW_BOOTSTRAP_API_KEY", KEY);
    }
    if let Some(f) = clock_file {
        cmd.env("OUTFLOW_CLOCK_FILE", f);
    }
    let mut child = cmd.spawn().expect("spawn outflow");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server printed its address")
            .expect("read line");
        if let Some(rest) = line.strip_prefix("Listening on http://") {
            break rest.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Proc {
        child,
        base: format!("http://{addr}"),
    }
}

/// Moves the clock of servers started with `clock_file` (seconds ahead of
/// the system clock); they see it within `outflow::clock::REREAD`.
pub fn set_offset(clock_file: &Path, seconds: i64) {
    let tmp = clock_file.with_extension("tmp");
    std::fs::write(&tmp, format!("{seconds}\n")).expect("write clock file");
    std::fs::rename(&tmp, clock_file).expect("move clock file");
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

pub async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http
        .request(method, url)
        .header("Authorization", format!("Klaviyo-API-Key {KEY}"))
        .header("revision", REVISION)
        .header("accept", "application/vnd.api+json");
    if let Some(b) = body {
        req = req
            .header("content-type", "application/vnd.api+json")
            .body(b.to_string());
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Sends one event (creating its metric) and returns the metric's id.
pub async fn metric_id(http: &reqwest::Client, base: &str, metric: &str) -> String {
    let ev = json!({"data": {"type": "event", "attributes": {
        "properties": {}, "unique_id": "seed",
        "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
        "profile": {"data": {"type": "profile", "attributes": {"email": "seed@example.com"}}}}}});
    let (s, b) = call(
        http,
        reqwest::Method::POST,
        format!("{base}/api/events"),
        Some(ev),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let (s, b) = call(
        http,
        reqwest::Method::GET,
        format!("{base}/api/metrics"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    b["data"]
        .as_array()
        .and_then(|a| a.iter().find(|m| m["attributes"]["name"] == metric))
        .and_then(|m| m["id"].as_str())
        .expect("metric listed")
        .to_owned()
}

/// Enrols TOTP MFA for the bootstrap owner (webhook actions need it),
/// unless it already is. The code is computed from the system clock: call
/// while the clock file's offset is 0.
pub async fn enrol_mfa(http: &reqwest::Client, base: &str) {
    let (s, b) = call(
        http,
        reqwest::Method::POST,
        format!("{base}/outflow/v1/me/mfa"),
        None,
    )
    .await;
    if s == 409 {
        return;
    }
    assert_eq!(s, 200, "{b}");
    let secret = b["data"]["secret"].as_str().expect("secret");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_micros();
    let code =
        outflow_store::users::totp_code(secret, i64::try_from(now).expect("time")).expect("code");
    let (s, b) = call(
        http,
        reqwest::Method::POST,
        format!("{base}/outflow/v1/me/mfa/confirm"),
        Some(json!({ "code": code })),
    )
    .await;
    assert_eq!(s, 200, "{b}");
}

/// Creates a live flow (enrolling the owner's MFA first): metric trigger → time-delay (hours) → update-profile
/// (`woken = yes`) → send-webhook to `hook_url` with the person's email.
pub async fn create_flow(
    http: &reqwest::Client,
    base: &str,
    metric_id: &str,
    delay_hours: i64,
    hook_url: &str,
) -> String {
    let def = json!({
        "triggers": [{"type": "metric", "id": metric_id}],
        "actions": [
            {"temporary_id": "wait", "type": "time-delay", "links": {"next": "mark"},
             "data": {"unit": "hours", "value": delay_hours, "timezone": "UTC"}},
            {"temporary_id": "mark", "type": "update-profile", "links": {"next": "hook"},
             "data": {"status": "live", "profile_operations": [
                {"operator": "update", "property_type": "string", "property_key": "woken", "property_value": "yes"}]}},
            {"temporary_id": "hook", "type": "send-webhook", "links": {"next": null},
             "data": {"status": "live", "message": {"name": "hook", "url": hook_url, "headers": {},
                "body": "{\"email\": \"{{ person.email }}\"}"}}}
        ],
        "entry_action_id": "wait"
    });
    enrol_mfa(http, base).await;
    let (s, b) = call(
        http,
        reqwest::Method::POST,
        format!("{base}/api/flows"),
        Some(json!({"data": {"type": "flow", "attributes": {
            "name": "crash", "status": "live", "definition": def}}})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    b["data"]["id"].as_str().expect("flow id").to_owned()
}

/// Sends one event of `metric` for each of `emails`, in bulk jobs of 1,000.
pub async fn send_events(http: &reqwest::Client, base: &str, metric: &str, emails: &[String]) {
    for chunk in emails.chunks(1000) {
        let groups: Vec<Value> = chunk
            .iter()
            .map(|e| {
                json!({"type": "event-bulk-create", "attributes": {
                    "profile": {"data": {"type": "profile", "attributes": {"email": e}}},
                    "events": {"data": [{"type": "event", "attributes": {
                        "properties": {"n": 1}, "unique_id": format!("ev-{e}"),
                        "metric": {"data": {"type": "metric", "attributes": {"name": metric}}}}}]}}})
            })
            .collect();
        let body = json!({"data": {"type": "event-bulk-create-job", "attributes": {
            "events-bulk-create": {"data": groups}}}});
        let (s, b) = call(
            http,
            reqwest::Method::POST,
            format!("{base}/api/event-bulk-create-jobs"),
            Some(body),
        )
        .await;
        assert_eq!(s, 202, "{b}");
    }
}

/// A webhook receiver in the test process: counts requests per email and
/// remembers the `webhook-id`s each email arrived with.
#[derive(Clone, Default)]
pub struct Receiver {
    pub hits: Arc<Mutex<HashMap<String, usize>>>,
    pub ids: Arc<Mutex<HashMap<String, std::collections::HashSet<String>>>>,
}

impl Receiver {
    /// Serves on 127.0.0.1:0 and returns the hook URL.
    pub async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new()
            .route("/hook", post(hook))
            .with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}/hook")
    }

    /// (distinct emails, total requests)
    pub fn counts(&self) -> (usize, usize) {
        let h = self.hits.lock().expect("hits");
        (h.len(), h.values().sum())
    }
}

async fn hook(
    State(r): State<Receiver>,
    headers: axum::http::HeaderMap,
    body: String,
) -> StatusCode {
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let email = v["email"].as_str().unwrap_or("?").to_owned();
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    r.ids
        .lock()
        .expect("ids")
        .entry(email.clone())
        .or_default()
        .insert(id);
    *r.hits.lock().expect("hits").entry(email).or_default() += 1;
    StatusCode::OK
}

/// A raw connection to the store under a running server, for counting.
/// The PostgreSQL client is synchronous, so calls go through
/// `block_in_place` (tests use the multi-thread runtime).
pub fn conn(db_url: &str) -> Box<dyn Conn> {
    tokio::task::block_in_place(|| -> Box<dyn Conn> {
        if let Some(path) = db_url.strip_prefix("sqlite://") {
            Box::new(
                outflow_store::db::sqlite::SqliteConn::open(Path::new(path)).expect("open sqlite"),
            )
        } else {
            Box::new(outflow_store::db::postgres::PgConn::open(db_url).expect("open postgres"))
        }
    })
}

pub fn rows(c: &mut dyn Conn, sql: &str) -> Vec<outflow_store::db::Row> {
    tokio::task::block_in_place(|| c.query(sql, &[]).expect("query"))
}

pub fn count(c: &mut dyn Conn, sql: &str) -> i64 {
    rows(c, sql).first().map_or(0, |r| r.int(0).expect("count"))
}

/// Polls `f` until it returns true or `limit` passes.
pub async fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
