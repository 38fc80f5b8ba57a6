//! Acknowledged data survives a hard kill, and SIGTERM stops cleanly.
//! These run the real binary as a child process.

mod common;

use common::{event_body, KEY};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

struct Proc {
    child: Child,
    base: String,
}

fn spawn(db_url: &str) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_outflow"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database", db_url])
        .env("OUTFLOW_BOOTSTRAP_API_KEY", KEY)
        .env("OUTFLOW_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn outflow");
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
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Proc {
        child,
        base: format!("http://{addr}"),
    }
}

async fn post_event(http: &reqwest::Client, base: &str, i: usize) -> u16 {
    http.post(format!("{base}/api/events"))
        .header("Authorization", format!("Klaviyo-API-Key {KEY}"))
        .header("revision", "2026-07-15")
        .header("Content-Type", "application/json")
        .body(
            event_body(
                "Placed Order",
                &format!("user{}@x.co", i % 97),
                Some(&format!("order-{i}")),
            )
            .to_string(),
        )
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn count_events(base: &str) -> usize {
    let http = reqwest::Client::new();
    let mut url = format!("{base}/api/events?page[size]=1000");
    let mut n = 0;
    loop {
        let body: serde_json::Value = http
            .get(&url)
            .header("Authorization", format!("Klaviyo-API-Key {KEY}"))
            .header("revision", "2026-07-15")
            .send()
            .await
            .expect("list events")
            .json()
            .await
            .expect("json");
        n += body["data"].as_array().map_or(0, Vec::len);
        match body["links"]["next"].as_str() {
            Some(next) => url = next.to_owned(),
            None => return n,
        }
    }
}

/// Sends `n` events from 32 concurrent senders; returns how many got 202.
async fn send_many(base: &str, n: usize) -> usize {
    let http = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (http, base, next, acked) =
            (http.clone(), base.to_owned(), next.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    break;
                }
                if post_event(&http, &base, i).await == 202 {
                    acked.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender");
    }
    acked.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9() {
    let db = outflow_testkit::TestDb::sqlite();
    let mut p = spawn(&db.url());
    let n = 3000;
    let acked = send_many(&p.base, n).await;
    assert_eq!(acked, n, "every event was acknowledged");
    // SIGKILL right after the last 202: no chance to flush anything.
    p.child.kill().expect("kill -9");
    p.child.wait().expect("reaped");
    let p2 = spawn(&db.url());
    assert_eq!(
        count_events(&p2.base).await,
        n,
        "all acknowledged events are there after restart"
    );
    let mut c = p2.child;
    let _ = c.kill();
    let _ = c.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_and_exits_zero() {
    let db = outflow_testkit::TestDb::sqlite();
    let p = spawn(&db.url());
    let base = p.base.clone();
    let pid = p.child.id().to_string();
    let sender = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut acked = 0;
        for i in 0..100_000 {
            match post_event(&http, &base, i).await {
                202 => acked += 1,
                _ => break,
            }
        }
        acked
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let acked = sender.await.expect("sender");
    let mut child = p.child;
    let exit = child.wait().expect("exit status");
    assert!(exit.success(), "outflow exits 0 on SIGTERM, got {exit:?}");
    assert!(acked > 0);
    let p2 = spawn(&db.url());
    assert_eq!(
        count_events(&p2.base).await,
        acked,
        "every acknowledged event was committed"
    );
    let mut c = p2.child;
    let _ = c.kill();
    let _ = c.wait();
}
