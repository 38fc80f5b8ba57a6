//! A fresh store with one account, a manual clock and an engine; rows are
//! inserted straight into the tables (the flows API may not exist yet).
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use outflow_core::clock::to_micros;
use outflow_core::{Clock, ManualClock};
use outflow_engine::{Engine, EngineConfig};
use outflow_store::runs::RunRow;
use outflow_store::{params, Store};
use outflow_testkit::TestDb;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub struct Env {
    pub db: TestDb,
    pub store: Store,
    pub clock: Arc<ManualClock>,
    pub engine: Engine,
    pub account: String,
}

pub fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
        .expect("time")
        .to_utc()
}

static N: AtomicU64 = AtomicU64::new(0);
pub fn id(prefix: &str) -> String {
    format!("{prefix}{}", N.fetch_add(1, Ordering::Relaxed))
}

pub async fn env(backend: &str) -> Env {
    let db = TestDb::by_name(backend);
    let store = Store::open(&db.url()).await.expect("store opens");
    let clock = Arc::new(ManualClock::new(t0()));
    let now = to_micros(t0());
    let b = store
        .write(move |ctx| {
            outflow_store::accounts::bootstrap(ctx.conn, Some("pk_test_engine_0123456789"), now)
        })
        .await
        .expect("bootstrap")
        .expect("fresh account");
    let engine = engine_on(&store, &clock);
    Env {
        db,
        store,
        clock,
        engine,
        account: b.account_id,
    }
}

pub fn engine_on(store: &Store, clock: &Arc<ManualClock>) -> Engine {
    engine_with(store, clock, |_| {})
}

/// An engine whose webhooks may reach the test receivers on 127.0.0.1,
/// with settings changed by `f`.
pub fn engine_with(
    store: &Store,
    clock: &Arc<ManualClock>,
    f: impl FnOnce(&mut EngineConfig),
) -> Engine {
    let mut config = EngineConfig::default();
    config.delivery.allow_private = vec!["127.0.0.1".into()];
    config.delivery.timeout = std::time::Duration::from_secs(5);
    f(&mut config);
    Engine::new(store.clone(), clock.clone(), config).expect("engine")
}

impl Env {
    pub fn now(&self) -> i64 {
        to_micros(self.clock.now())
    }

    pub async fn sql(&self, sql: &'static str, args: Vec<Value>) {
        self.store
            .write(move |ctx| {
                let owned: Vec<Owned> = args.iter().map(Owned::from).collect();
                let p: Vec<outflow_store::db::Param<'_>> = owned.iter().map(Owned::param).collect();
                ctx.conn.execute(sql, &p)?;
                Ok(())
            })
            .await
            .expect(sql);
    }

    pub async fn profile(&self, email: &str, properties: Value) -> String {
        let pid = id("p");
        self.sql(
            "INSERT INTO profiles (id, account_id, email, attributes, properties, subscriptions, created, updated) \
             VALUES ($1, $2, $3, '{}', $4, '{}', $5, $5)",
            vec![pid.clone().into(), self.account.clone().into(), email.into(), properties.to_string().into(), self.now().into()],
        )
        .await;
        pid
    }

    pub async fn set_properties(&self, pid: &str, properties: Value) {
        self.sql(
            "UPDATE profiles SET properties = $2 WHERE id = $1",
            vec![pid.into(), properties.to_string().into()],
        )
        .await;
    }

    pub async fn metric(&self, name: &str) -> String {
        let mid = id("M");
        self.sql(
            "INSERT INTO metrics (id, account_id, name, created, updated) VALUES ($1, $2, $3, $4, $4)",
            vec![mid.clone().into(), self.account.clone().into(), name.into(), self.now().into()],
        )
        .await;
        mid
    }

    pub async fn event(&self, metric: &str, pid: &str, props: Value, backfill: bool) -> String {
        let eid = id("e");
        let value = props.get("$value").and_then(Value::as_f64);
        self.sql(
            "INSERT INTO events (id, account_id, metric_id, profile_id, time, value, unique_key, properties, backfill, created) \
             VALUES ($1, $2, $3, $4, $5, $6, $1, $7, $8, $5)",
            vec![eid.clone().into(), self.account.clone().into(), metric.into(), pid.into(), self.now().into(),
                 value.map_or(Value::Null, Value::from), props.to_string().into(), (backfill as i64).into()],
        )
        .await;
        eid
    }

    pub async fn list(&self, name: &str) -> String {
        let lid = id("L");
        self.sql(
            "INSERT INTO lists (id, account_id, name, created, updated) VALUES ($1, $2, $3, $4, $4)",
            vec![lid.clone().into(), self.account.clone().into(), name.into(), self.now().into()],
        )
        .await;
        lid
    }

    pub async fn join(&self, list: &str, pid: &str, historical: bool) {
        self.sql(
            "INSERT INTO list_members (list_id, profile_id, account_id, joined, source, historical_import) \
             VALUES ($1, $2, $3, $4, 'api', $5)",
            vec![list.into(), pid.into(), self.account.clone().into(), self.now().into(), (historical as i64).into()],
        )
        .await;
    }

    /// Inserts a flow at version 1 with `definition`.
    pub async fn flow(&self, status: &str, trigger: (&str, &str), definition: Value) -> String {
        let fid = id("F");
        self.sql(
            "INSERT INTO flows (id, account_id, name, status, archived, trigger_type, trigger_ref, version, created, updated) \
             VALUES ($1, $2, 'test flow', $3, 0, $4, $5, 1, $6, $6)",
            vec![fid.clone().into(), self.account.clone().into(), status.into(), trigger.0.into(), trigger.1.into(), self.now().into()],
        )
        .await;
        self.sql(
            "INSERT INTO flow_versions (flow_id, version, definition, created) VALUES ($1, 1, $2, $3)",
            vec![fid.clone().into(), definition.to_string().into(), self.now().into()],
        )
        .await;
        fid
    }

    /// Saves a new version and makes it the one new entrants use.
    pub async fn new_version(&self, fid: &str, version: i64, definition: Value) {
        self.sql(
            "INSERT INTO flow_versions (flow_id, version, definition, created) VALUES ($1, $2, $3, $4)",
            vec![fid.into(), version.into(), definition.to_string().into(), self.now().into()],
        )
        .await;
        self.sql(
            "UPDATE flows SET version = $2, updated = $3 WHERE id = $1",
            vec![fid.into(), version.into(), (self.now() + version).into()],
        )
        .await;
    }

    pub async fn runs_of_flow(&self, fid: &str) -> Vec<RunRow> {
        let (a, f) = (self.account.clone(), fid.to_owned());
        self.store
            .read(move |c| outflow_store::runs::for_flow(c, &a, &f, 1000))
            .await
            .expect("runs")
    }

    pub async fn properties(&self, pid: &str) -> Value {
        let p = pid.to_owned();
        self.store
            .read(move |c| {
                Ok(
                    c.query_opt("SELECT properties FROM profiles WHERE id = $1", params![&p])?
                        .map(|r| r.json(0))
                        .transpose()?
                        .unwrap_or(Value::Null),
                )
            })
            .await
            .expect("profile")
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        self.store
            .read(move |c| {
                Ok(c.query_opt(sql, params![])?
                    .map(|r| r.int(0))
                    .transpose()?
                    .unwrap_or(0))
            })
            .await
            .expect(sql)
    }

    pub async fn steps(&self, run_id: &str) -> Vec<(String, String, Option<String>)> {
        let ids = vec![run_id.to_owned()];
        self.store
            .read(move |c| outflow_store::runs::steps_of(c, &ids))
            .await
            .expect("steps")
            .into_iter()
            .map(|s| (s.action_id, s.outcome, s.detail))
            .collect()
    }

    /// An event as the ingest API validates it, for `outflow_store::events::ingest`.
    pub fn valid_event(
        &self,
        metric: &str,
        profile: Value,
        unique: &str,
    ) -> outflow_core::event::ValidEvent {
        let profile = outflow_core::profile::ProfileInput::from_attributes(
            profile.as_object().expect("object"),
        )
        .expect("valid");
        outflow_core::event::EventInput {
            metric_name: metric.into(),
            profile,
            properties: serde_json::Map::new(),
            time: Some(self.clock.now()),
            value: None,
            value_currency: None,
            unique_id: Some(unique.into()),
            backfill: false,
        }
        .validate(self.clock.now())
        .expect("valid event")
    }

    /// The id of the metric named `name` (created by ingest).
    pub async fn metric_named(&self, name: &str) -> String {
        let (account, name) = (self.account.clone(), name.to_owned());
        self.store
            .read(move |c| outflow_store::metrics::list(c, &account, Some(&name), None, 1))
            .await
            .expect("metrics")[0]
            .id
            .clone()
    }

    pub async fn settle(&self) -> outflow_engine::Tick {
        self.engine.run_until_idle().await.expect("engine runs")
    }
}

enum Owned {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl From<&Value> for Owned {
    fn from(v: &Value) -> Self {
        match v {
            Value::Null => Owned::Null,
            Value::Number(n) if n.is_i64() => Owned::Int(n.as_i64().unwrap_or(0)),
            Value::Number(n) => Owned::Real(n.as_f64().unwrap_or(0.0)),
            Value::String(s) => Owned::Text(s.clone()),
            other => Owned::Text(other.to_string()),
        }
    }
}

impl Owned {
    fn param(&self) -> outflow_store::db::Param<'_> {
        use outflow_store::db::Param;
        match self {
            Owned::Null => Param::Null,
            Owned::Int(i) => Param::Int(*i),
            Owned::Real(f) => Param::Real(*f),
            Owned::Text(s) => Param::Text(s),
        }
    }
}

/// A webhook receiver on 127.0.0.1:0 that answers every request with
/// `status` and remembers what it got.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<(String, String)>>>,
}

pub async fn receiver(status: u16) -> Receiver {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                break;
            };
            let g = g.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let head = &text[..end];
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    let body = text[end + 4..end + 4 + len].to_owned();
                    let line = head.lines().next().unwrap_or("").to_owned();
                    g.lock().expect("lock").push((line, body));
                    let resp = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n");
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                    buf.clear();
                }
            });
        }
    });
    Receiver {
        url: format!("http://{addr}/hook"),
        got,
    }
}

/// Runs `$name(backend)` as a test on SQLite and on PostgreSQL.
#[macro_export]
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

/// One scripted answer of a [`Scripted`] receiver.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering (to provoke timeouts).
    pub delay: Option<std::time::Duration>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: None,
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn body(mut self, b: &str) -> Self {
        self.body = b.into();
        self
    }

    pub fn delay(mut self, d: std::time::Duration) -> Self {
        self.delay = Some(d);
        self
    }
}

/// A request as a receiver saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub line: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A receiver on 127.0.0.1:0 that answers with the scripted replies in
/// order (the last one repeats) and records every request whole.
pub struct Scripted {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

pub async fn scripted(replies: Vec<Reply>) -> Scripted {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let (s, replies) = (seen.clone(), Arc::new(replies));
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                break;
            };
            let (s, replies) = (s.clone(), replies.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let mut lines = text[..end].lines();
                    let line = lines.next().unwrap_or("").to_owned();
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                        .collect();
                    let len = headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    let body = text[end + 4..end + 4 + len].to_owned();
                    let n = {
                        let mut g = s.lock().expect("lock");
                        g.push(Seen {
                            line,
                            headers,
                            body,
                        });
                        g.len()
                    };
                    let r = replies[(n - 1).min(replies.len() - 1)].clone();
                    if let Some(d) = r.delay {
                        tokio::time::sleep(d).await;
                    }
                    let mut resp = format!(
                        "HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: keep-alive\r\n",
                        r.status,
                        r.body.len()
                    );
                    for (k, v) in &r.headers {
                        resp.push_str(&format!("{k}: {v}\r\n"));
                    }
                    resp.push_str("\r\n");
                    resp.push_str(&r.body);
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                    buf.clear();
                }
            });
        }
    });
    Scripted {
        url: format!("http://{addr}/hook"),
        seen,
    }
}
