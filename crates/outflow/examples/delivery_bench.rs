//! Issue #7, acceptance 5: webhook deliveries end to end — events posted to
//! the API → flow run → signed webhook → 200 from a fast local receiver.
//!
//! Two measurements, on one server (in this process, as `outflow serve`
//! wires it, on a fresh SQLite file):
//! - throughput: `--events` events posted in bulk jobs of 1,000 as fast as
//!   the API takes them; deliveries per second until the receiver has all;
//! - latency: `--rate` single events per second for `--seconds`; each
//!   webhook body carries the time its event was posted, the receiver
//!   measures event-to-receipt; p50/p99 reported.
//!
//! `cargo run --release -p outflow --example delivery_bench -- --events 100000 --rate 1000 --seconds 10`
//!
//! `--nginx`: the throughput phase's webhooks go to an nginx started by the
//! bench (one worker process, `return 200`, counted by `stub_status`)
//! instead of the in-process receiver. nginx shares the machine's cores, as
//! it would in production. Latency stays with the in-process receiver:
//! nginx logs time only to the millisecond.
//!
//! `--no-at-ingest`: events are dispatched by the trigger loop after their
//! commit instead of in it (`dispatch_at_ingest = false`), for comparison.
//!
//! `--idle-flows N`: N more live flows that no event triggers, to measure
//! what a large flow index costs per event.
//!
//! `--per-host N`: concurrent requests per destination host (the default
//! is `serve`'s).

use outflow_core::SystemClock;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Args {
    events: usize,
    rate: usize,
    seconds: u64,
    nginx: bool,
    /// `--no-at-ingest`: dispatch by the trigger loop (for comparison).
    at_ingest: bool,
    /// `--idle-flows N`: N more live flows, on metrics no event names, so
    /// what a large flow index costs the hot path shows.
    idle_flows: usize,
    /// `--per-host N`: concurrent requests per destination host.
    per_host: usize,
}

fn args() -> Args {
    let mut a = Args {
        events: 100_000,
        rate: 1_000,
        seconds: 10,
        nginx: false,
        at_ingest: true,
        idle_flows: 0,
        per_host: outflow::config::Config::default().webhooks_per_host_concurrency,
    };
    let v: Vec<String> = std::env::args().collect();
    a.nginx = v.iter().any(|x| x == "--nginx");
    a.at_ingest = !v.iter().any(|x| x == "--no-at-ingest");
    for w in v.windows(2) {
        match w[0].as_str() {
            "--events" => a.events = w[1].parse().expect("--events N"),
            "--rate" => a.rate = w[1].parse().expect("--rate N"),
            "--seconds" => a.seconds = w[1].parse().expect("--seconds N"),
            "--idle-flows" => a.idle_flows = w[1].parse().expect("--idle-flows N"),
            "--per-host" => a.per_host = w[1].parse().expect("--per-host N"),
            _ => {}
        }
    }
    a
}

/// (name, user + system CPU seconds) from a Linux `/proc/…/stat` text.
fn stat_cpu(stat: &str) -> Option<(String, f64)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    // Fields after the command name's closing parenthesis: utime is the
    // 12th, stime the 13th (1-based, counting from the state field).
    let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Some((
        stat[open + 1..close].to_string(),
        (ticks(11) + ticks(12)) / 100.0,
    ))
}

/// CPU time of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    stat_cpu(&stat).map_or(0.0, |(_, s)| s)
}

/// CPU seconds per thread name (writer, async workers and blocking pool
/// share names), from `/proc/self/task/*/stat`.
fn cpu_by_thread() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in dir.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        if let Some((name, secs)) = stat_cpu(&stat) {
            *out.entry(name).or_insert(0.0) += secs;
        }
    }
    out
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A minimal keep-alive HTTP/1.1 receiver: answers 200 at once, counts, and
/// records `now - body.sent` (µs) when the body has `sent`.
#[derive(Clone, Default)]
struct Receiver {
    hits: Arc<AtomicUsize>,
    latencies: Arc<Mutex<Vec<i64>>>,
}

impl Receiver {
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move { me.serve(sock).await });
            }
        });
        format!("http://{addr}/hook")
    }

    async fn serve(&self, mut sock: tokio::net::TcpStream) {
        let mut buf = Vec::with_capacity(16 * 1024);
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let Ok(n) = sock.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut out = Vec::new();
            // As lean as a static file server: no allocation per request
            // beyond the body bytes, no JSON parse (the bench's receiver
            // stands in for nginx and must not be what limits the rate).
            while let Some(end) = find(&buf, b"\r\n\r\n") {
                let len = content_length(&buf[..end]).unwrap_or(0);
                if buf.len() < end + 4 + len {
                    break;
                }
                if let Some(sent) = sent_field(&buf[end + 4..end + 4 + len]) {
                    let took = now_us() - sent;
                    if let Ok(mut l) = self.latencies.lock() {
                        l.push(took);
                    }
                    if sent > 0
                        && took > 20_000
                        && std::env::var_os("OUTFLOW_BENCH_TRACE").is_some()
                    {
                        eprintln!(
                            "  slow: event posted at {sent} µs took {:.1} ms",
                            took as f64 / 1e3
                        );
                    }
                }
                buf.drain(..end + 4 + len);
                self.hits.fetch_add(1, Ordering::SeqCst);
                out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            }
            if !out.is_empty() && sock.write_all(&out).await.is_err() {
                return;
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The `content-length` header's value, matched without case.
fn content_length(head: &[u8]) -> Option<usize> {
    const NAME: &[u8] = b"content-length:";
    head.split(|b| *b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        (line.len() > NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME))
            .then(|| std::str::from_utf8(&line[NAME.len()..]).ok())
            .flatten()
            .and_then(|v| v.trim().parse().ok())
    })
}

/// The integer after `"sent":` in a JSON body, if there is one.
fn sent_field(body: &[u8]) -> Option<i64> {
    let at = find(body, b"\"sent\":")? + 7;
    let digits: &[u8] = &body[at..];
    let digits = digits.trim_ascii_start();
    let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&digits[..n]).ok()?.parse().ok()
}

/// An nginx answering 200 on `/hook`, counting by `stub_status` on
/// `/status`. Stopped when dropped.
struct Nginx {
    child: std::process::Child,
    port: u16,
    http: reqwest::Client,
    /// Status requests made so far (each counts itself in `requests`).
    polls: AtomicUsize,
}

impl Nginx {
    async fn start(dir: &std::path::Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let conf = format!(
            "daemon off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{ access_log off; client_body_temp_path {d}; keepalive_requests 1000000;\n\
               server {{ listen 127.0.0.1:{port} reuseport;\n\
                 location /hook {{ return 200; }}\n\
                 location /status {{ stub_status; }} }} }}\n",
            d = dir.display()
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf)?;
        let child = std::process::Command::new("nginx")
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting nginx (apt-get install nginx-light): {e}"))?;
        let me = Self {
            child,
            port,
            http: reqwest::Client::new(),
            polls: AtomicUsize::new(0),
        };
        for _ in 0..100 {
            if me.hits().await.is_some() {
                return Ok(me);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::bail!("nginx did not start; see {}/error.log", dir.display())
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Requests nginx has answered, less this bench's status polls.
    async fn hits(&self) -> Option<usize> {
        let text = self
            .http
            .get(format!("http://127.0.0.1:{}/status", self.port))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let polls = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
        // "Active connections: N \n server accepts handled requests\n A H R \n…"
        let requests: usize = text
            .lines()
            .nth(2)?
            .split_whitespace()
            .nth(2)?
            .parse()
            .ok()?;
        Some(requests.saturating_sub(polls))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would orphan them).
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let _ = self.child.wait();
    }
}

/// Webhooks received so far by the receiver in use.
async fn received(rx: &Receiver, nginx: Option<&Nginx>) -> usize {
    match nginx {
        Some(n) => n.hits().await.unwrap_or(0),
        None => rx.hits.load(Ordering::SeqCst),
    }
}

struct Api {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Api {
    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_text(path, body.to_string()).await
    }

    async fn post_text(&self, path: &str, body: String) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Klaviyo-API-Key {}", self.key))
            .header("revision", "2026-07-15")
            .header("Content-Type", "application/vnd.api+json")
            .body(body)
            .send()
            .await
            .expect("request");
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn get_text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Klaviyo-API-Key {}", self.key))
            .header("revision", "2026-07-15")
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("text")
    }

    async fn get(&self, path: &str) -> Value {
        serde_json::from_str(&self.get_text(path).await).expect("json")
    }
}

fn event(metric: &str, email: &str, sent: Option<i64>, i: usize) -> Value {
    json!({"type": "event", "attributes": {
        "properties": {"sent": sent, "n": i},
        "unique_id": format!("{metric}-{i}"),
        "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
        "profile": {"data": {"type": "profile", "attributes": {"email": email}}}}})
}

/// A live flow on `metric`: one webhook to `url` whose body carries the
/// event's `sent` time.
async fn flow(server: &outflow::Server, api: &Api, metric: &str, url: &str) {
    let (s, b) = api
        .post(
            "/api/events",
            &json!({"data": event(metric, "seed@bench.io", None, usize::MAX)}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let filter = format!("/api/metrics?filter=equals(name,\"{metric}\")");
    let mut metric_id = None;
    for _ in 0..100 {
        let m = api.get(&filter).await;
        if let Some(id) = m["data"][0]["id"].as_str() {
            metric_id = Some(id.to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metric_id = metric_id.expect("metric");
    let def = json!({"triggers": [{"type": "metric", "id": metric_id}],
        "actions": [{"id": "1", "type": "send-webhook", "links": {"next": null},
            "data": {"status": "live", "message": {"url": url,
                "body": "{\"sent\": {{ event.sent|default:0 }}, \"email\": \"{{ person.email }}\", \"n\": {{ event.n }}}"}}}],
        "entry_action_id": "1"});
    let flow = (format!("bench-{metric}"), metric_id);
    insert_live_flows(server, vec![flow], def.to_string()).await;
    server.engine.notify();
    // Let dispatch index the flow and pass the seed event.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// `n` live flows on metrics that no event names.
async fn idle_flows(server: &outflow::Server, n: usize) {
    let def = json!({"triggers": [{"type": "metric", "id": "idle"}],
        "actions": [{"id": "1", "type": "send-webhook", "links": {"next": null},
            "data": {"status": "live", "message": {"url": "https://idle.example/hook", "body": "{}"}}}],
        "entry_action_id": "1"});
    let flows = (0..n)
        .map(|i| (format!("idle-{i}"), format!("idle-metric-{i}")))
        .collect();
    insert_live_flows(server, flows, def.to_string()).await;
}

/// Live flows `(id, metric id)` sharing one definition, written straight to
/// the store in one job (flow creation is not what is measured).
async fn insert_live_flows(server: &outflow::Server, flows: Vec<(String, String)>, def: String) {
    server
        .engine
        .store()
        .write(move |ctx| {
            let account: String = ctx
                .conn
                .query_opt("SELECT id FROM accounts", outflow_store::params![])?
                .map(|r| r.text(0))
                .transpose()?
                .unwrap_or_default();
            for (fid, metric) in &flows {
                ctx.conn.execute(
                    "INSERT INTO flows (id, account_id, name, status, archived, trigger_type, trigger_ref, version, created, updated) \
                     VALUES ($1, $2, 'bench', 'live', 0, 'metric', $3, 1, 1, 1)",
                    outflow_store::params![fid, &account, metric],
                )?;
                ctx.conn.execute(
                    "INSERT INTO flow_versions (flow_id, version, definition, created) VALUES ($1, 1, $2, 1)",
                    outflow_store::params![fid, &def],
                )?;
            }
            Ok(())
        })
        .await
        .expect("flows");
}

fn pct(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() -> anyhow::Result<()> {
    // The runtime `outflow serve` uses (one async worker on this machine).
    outflow::serve_runtime()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let a = args();
    let dir = tempfile::tempdir()?;
    let config = outflow::config::Config {
        listen: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}/bench.db", dir.path().display()),
        bootstrap_api_key: Some("pk_bench_0123456789abcdef".into()),
        log: "warn".into(),
        webhooks_allow_private: vec!["127.0.0.1".into()],
        dispatch_at_ingest: a.at_ingest,
        webhooks_per_host_concurrency: a.per_host,
        ..outflow::config::Config::default()
    };
    let server = outflow::start(&config, Arc::new(SystemClock)).await?;
    let api = Api {
        base: format!("http://{}", server.addr),
        key: "pk_bench_0123456789abcdef".into(),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?,
    };
    let rx = Receiver::default();
    let url = rx.start().await;

    // Throughput.
    let nginx = if a.nginx {
        Some(Nginx::start(dir.path()).await?)
    } else {
        None
    };
    let hook = nginx.as_ref().map_or_else(|| url.clone(), Nginx::url);
    idle_flows(&server, a.idle_flows).await;
    flow(&server, &api, "Bench Throughput", &hook).await;
    // The request bodies are built and serialized before the clock starts:
    // the load generator's JSON work is not the server's.
    let mut posted = 0;
    let mut jobs = Vec::new();
    while posted < a.events {
        let n = 1000.min(a.events - posted);
        let groups: Vec<Value> = (posted..posted + n)
            .map(|i| {
                json!({"type": "event-bulk-create", "attributes": {
                    "profile": {"data": {"type": "profile", "attributes": {"email": format!("t{i}@bench.io")}}},
                    "events": {"data": [{"type": "event", "attributes": {
                        "properties": {"n": i}, "unique_id": format!("t-{i}"),
                        "metric": {"data": {"type": "metric", "attributes": {"name": "Bench Throughput"}}}}}]}}})
            })
            .collect();
        let body = json!({"data": {"type": "event-bulk-create-job", "attributes": {
            "events-bulk-create": {"data": groups}}}});
        jobs.push(body.to_string());
        posted += n;
    }
    let per_poster = jobs.len().div_ceil(4).max(1);
    let mut posters: Vec<Vec<String>> = Vec::new();
    while !jobs.is_empty() {
        let rest = jobs.split_off(per_poster.min(jobs.len()));
        posters.push(std::mem::replace(&mut jobs, rest));
    }
    let base = received(&rx, nginx.as_ref()).await;
    let cpu_start = cpu_seconds();
    let threads_start = cpu_by_thread();
    let start = Instant::now();
    let api = Arc::new(api);
    let mut sends = Vec::new();
    for chunk in posters {
        let api = api.clone();
        sends.push(tokio::spawn(async move {
            for body in chunk {
                let (s, b) = api.post_text("/api/event-bulk-create-jobs", body).await;
                assert_eq!(s, 202, "{b}");
            }
        }));
    }
    // `OUTFLOW_BENCH_TRACE=1`: webhooks received per 100 ms, to see where
    // the pipeline idles.
    if std::env::var_os("OUTFLOW_BENCH_TRACE").is_some() && nginx.is_none() {
        let hits = rx.hits.clone();
        tokio::spawn(async move {
            let mut last = base;
            for tick in 1..=60 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let now = hits.load(Ordering::SeqCst);
                eprintln!("  trace {:>4} ms: +{}", tick * 100, now - last);
                last = now;
                if now - base >= a.events {
                    break;
                }
            }
        });
    }
    for s in sends {
        s.await?;
    }
    let accepted = start.elapsed();
    let at_accepted = received(&rx, nginx.as_ref()).await.saturating_sub(base);
    // nginx is asked over HTTP: poll it less often.
    let poll = Duration::from_millis(if nginx.is_some() { 10 } else { 2 });
    loop {
        let got = received(&rx, nginx.as_ref()).await.saturating_sub(base);
        if got >= a.events {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("stalled at {got} deliveries");
        }
        tokio::time::sleep(poll).await;
    }
    let took = start.elapsed();
    let cpu = cpu_seconds() - cpu_start;
    let threads: Vec<String> = cpu_by_thread()
        .into_iter()
        .map(|(name, s)| {
            (
                name.clone(),
                s - threads_start.get(&name).copied().unwrap_or(0.0),
            )
        })
        .filter(|(_, s)| *s > 0.0)
        .map(|(name, s)| format!("{name} {:.0} µs", s * 1e6 / a.events as f64))
        .collect();
    drop(nginx);
    println!(
        "throughput{}: {} events accepted in {:.2} s; all {} webhooks received after {:.2} s = {:.0} deliveries/s end to end",
        if a.nginx { " (nginx receiver, its CPU not counted below)" } else { "" },
        a.events,
        accepted.as_secs_f64(),
        a.events,
        took.as_secs_f64(),
        a.events as f64 / took.as_secs_f64()
    );
    println!(
        "  received when the last event was accepted: {at_accepted}; the rest at {:.0}/s",
        (a.events - at_accepted) as f64 / (took - accepted).as_secs_f64().max(1e-6)
    );
    println!(
        "CPU (whole process: server, receiver and load): {cpu:.2} s = {:.0} µs per delivery, {:.0}% of the cores",
        1e6 * cpu / a.events as f64,
        100.0 * cpu / took.as_secs_f64() / std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
    );
    println!("  per delivery by thread: {}", threads.join(", "));
    // A delivery deferred for a full host queue waits in the database and
    // is claimed again later: it should not happen to a fast receiver.
    let metrics = api.get_text("/metrics").await;
    let deferred = metrics
        .lines()
        .find_map(|l| l.strip_prefix("outflow_delivery_attempts_total{outcome=\"deferred\"} "))
        .unwrap_or("?");
    println!(
        "  deliveries deferred (full host queue, open breaker or lease too short): {deferred}"
    );

    // Latency at a steady rate.
    flow(&server, &api, "Bench Latency", &url).await;
    if let Ok(mut l) = rx.latencies.lock() {
        l.clear();
    }
    let total = a.rate * a.seconds as usize;
    let interval = Duration::from_secs_f64(1.0 / a.rate as f64);
    let start = Instant::now();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut inflight = Vec::new();
    for i in 0..total {
        tick.tick().await;
        let api = api.clone();
        inflight.push(tokio::spawn(async move {
            let body = json!({"data": event("Bench Latency", &format!("l{i}@bench.io"), Some(now_us()), i)});
            let (s, b) = api.post("/api/events", &body).await;
            assert_eq!(s, 202, "{b}");
        }));
        if inflight.len() > 256 {
            for f in inflight.drain(..) {
                f.await?;
            }
        }
    }
    for f in inflight {
        f.await?;
    }
    let sent_for = start.elapsed();
    loop {
        let got = rx.latencies.lock().map(|l| l.len()).unwrap_or(0);
        if got >= total || start.elapsed() > sent_for + Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut l = rx.latencies.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort_unstable();
    println!(
        "latency: {} events at {}/s over {:.1} s; {} received; event→receipt p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        total,
        a.rate,
        sent_for.as_secs_f64(),
        l.len(),
        pct(&l, 0.5),
        pct(&l, 0.99),
        pct(&l, 1.0)
    );
    server.shutdown().await?;
    Ok(())
}
