//! Issue #7, acceptance 3: one destination never answers while another
//! answers at once; the 1,000 deliveries to the healthy one complete within
//! twice the time of the same run without the dead destination.
//!
//! The deliveries are written straight into the outbox and the worker runs
//! its background loops, as in `serve`.

use chrono::{DateTime, Utc};
use outflow_core::clock::to_micros;
use outflow_core::SystemClock;
use outflow_delivery::{Deliverer, DeliveryConfig};
use outflow_store::deliveries::{self, NewDelivery};
use outflow_store::Store;
use outflow_testkit::TestDb;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const N: usize = 1_000;

fn t0() -> DateTime<Utc> {
    Utc::now()
}

/// Answers every request at once with 200 and counts them.
async fn healthy() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let h = h.clone();
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
                    // Bodies are "{}": a request ends two bytes after its head.
                    while let Some(end) = find(&buf, b"\r\n\r\n") {
                        if buf.len() < end + 4 + 2 {
                            break;
                        }
                        buf.drain(..end + 4 + 2);
                        h.fetch_add(1, Ordering::SeqCst);
                        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if sock.write_all(r).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (format!("http://{addr}/hook"), hits)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Accepts connections and never answers.
async fn dead() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .or(tokio::net::TcpListener::bind("127.0.0.1:0").await)
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    format!("http://{addr}/hook")
}

/// A pending first attempt of flow "flow", due at `due`.
fn pending(account: &str, run: &str, action: &str, url: &str, due: i64) -> NewDelivery {
    NewDelivery {
        finishes_run: false,
        run_steps: 0,
        header_pairs: Vec::new(),
        id: outflow_store::new_ulid(),
        account_id: account.to_owned(),
        run_id: run.to_owned(),
        flow_id: "flow".into(),
        profile_id: format!("p-{run}"),
        action_id: action.into(),
        url: url.to_owned(),
        method: "POST".into(),
        headers: "[]".into(),
        body: "{}".into(),
        response_map: None,
        status: deliveries::status::PENDING.into(),
        last_error: None,
        now: due,
        lease: None,
    }
}

async fn outbox(store: &Store, rows: Vec<NewDelivery>) {
    store
        .write(move |ctx| {
            deliveries::insert_many(ctx.conn, &rows)?;
            Ok(())
        })
        .await
        .expect("outbox");
}

/// Writes `N` deliveries to `good` (and `N` to `bad`, interleaved), starts
/// the worker and returns how long the good ones took.
async fn run(backend: &str, good: &str, hits: &AtomicUsize, bad: Option<&str>) -> Duration {
    let db = TestDb::by_name(backend);
    let store = Store::open(&db.url()).await.expect("store");
    let clock = Arc::new(SystemClock);
    let now = to_micros(t0());
    let account = store
        .write(move |ctx| outflow_store::accounts::bootstrap(ctx.conn, None, now))
        .await
        .expect("bootstrap")
        .expect("account")
        .account_id;
    let mut rows = Vec::new();
    for i in 0..N {
        for (url, action) in [(Some(good), "good"), (bad, "bad")] {
            let Some(url) = url else { continue };
            rows.push(pending(
                &account,
                &format!("run-{action}-{i}"),
                action,
                url,
                now,
            ));
        }
    }
    outbox(&store, rows).await;
    let config = DeliveryConfig {
        allow_private: vec!["127.0.0.0/8".into()],
        timeout: Duration::from_secs(30),
        ..DeliveryConfig::default()
    };
    let d = Arc::new(Deliverer::new(store.clone(), clock, config).expect("deliverer"));
    let start = Instant::now();
    let _tasks = d.clone().spawn(Duration::from_millis(5));
    while hits.load(Ordering::SeqCst) < N {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "healthy deliveries stalled at {}",
            hits.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    start.elapsed()
}

/// The two backends' comparisons would otherwise run at once on a 2-core
/// machine, each timing itself against the other's load.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn dead_destination_does_not_delay_a_healthy_one(backend: &str) {
    let _alone_on_the_machine = ONE_AT_A_TIME.lock().await;
    // The best of two runs each, so one scheduler hiccup on a shared
    // machine does not decide the comparison.
    let mut alone = Duration::MAX;
    let mut beside = Duration::MAX;
    for _ in 0..2 {
        let (good, hits) = healthy().await;
        alone = alone.min(run(backend, &good, &hits, None).await);
        let (good, hits) = healthy().await;
        let bad = dead().await;
        beside = beside.min(run(backend, &good, &hits, Some(&bad)).await);
    }
    eprintln!(
        "{backend}: {N} healthy deliveries alone {alone:?}, beside a dead destination {beside:?}"
    );
    // A floor keeps scheduler noise on a tiny base from failing the ratio.
    let limit = 2 * alone.max(Duration::from_millis(250));
    assert!(
        beside <= limit,
        "beside a dead destination {beside:?} > 2 × {alone:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    dead_destination_does_not_delay_a_healthy_one("sqlite").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    dead_destination_does_not_delay_a_healthy_one("postgres").await
}

/// A fresh store with an account, and a clock that moves only when told.
async fn on_a_manual_clock(
    backend: &str,
) -> (TestDb, Store, Arc<outflow_core::ManualClock>, i64, String) {
    use outflow_core::Clock;
    let db = TestDb::by_name(backend);
    let store = Store::open(&db.url()).await.expect("store");
    let clock = Arc::new(outflow_core::ManualClock::new(t0()));
    let now = to_micros(clock.now());
    let account = store
        .write(move |ctx| outflow_store::accounts::bootstrap(ctx.conn, None, now))
        .await
        .expect("bootstrap")
        .expect("account")
        .account_id;
    (db, store, clock, now, account)
}

/// A dead destination whose queue is full has the rest of its backlog
/// postponed in one statement, so the next claim takes the healthy
/// deliveries due after it instead of more of the dead ones (which it would
/// only defer again, one write each).
async fn a_full_queue_postpones_the_destination_backlog(backend: &str) {
    let (_db, store, clock, now, account) = on_a_manual_clock(backend).await;
    let (good, hits) = healthy().await;
    let bad = dead().await;
    // Fifty dead deliveries due first, then ten healthy ones.
    let rows: Vec<NewDelivery> = (0..60)
        .map(|i| {
            let (url, action, due) = if i < 50 {
                (&bad, "bad", now - 1_000_000 + i)
            } else {
                (&good, "good", now)
            };
            pending(&account, &format!("run-{i}"), action, url, due)
        })
        .collect();
    outbox(&store, rows).await;
    let config = DeliveryConfig {
        allow_private: vec!["127.0.0.0/8".into()],
        timeout: Duration::from_secs(30),
        batch: 10,
        per_host: 1,
        per_host_queue: 2,
        ..DeliveryConfig::default()
    };
    let d = Arc::new(Deliverer::new(store.clone(), clock, config).expect("deliverer"));

    let first = d.pass().await.expect("pass");
    assert_eq!((first.claimed, first.started, first.deferred), (10, 2, 8));
    // The forty dead deliveries not claimed are postponed.
    let postponed = || {
        let s = store.clone();
        async move {
            s.read(move |c| {
                Ok(c.query_opt(
                    "SELECT COUNT(*) FROM deliveries WHERE action_id = 'bad' \
                     AND lease_owner IS NULL AND due > $1",
                    outflow_store::params![now],
                )?
                .map(|r| r.int(0))
                .transpose()?
                .unwrap_or(0))
            })
            .await
            .expect("count")
        }
    };
    let started = Instant::now();
    while postponed().await < 40 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "postponed {}",
            postponed().await
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // At the same instant, the next claim is the healthy ten.
    let second = d.pass().await.expect("pass");
    assert_eq!(second.claimed, 10);
    let leased_good = store
        .read(|c| {
            Ok(c.query_opt(
                "SELECT COUNT(*) FROM deliveries WHERE action_id = 'good' AND lease_owner IS NOT NULL",
                outflow_store::params![],
            )?
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0))
        })
        .await
        .expect("count");
    assert_eq!(leased_good, 10);
    while hits.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a healthy delivery"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postponed_backlog_sqlite() {
    a_full_queue_postpones_the_destination_backlog("sqlite").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postponed_backlog_postgres() {
    a_full_queue_postpones_the_destination_backlog("postgres").await
}

/// A host's queue limit follows its pace: before the host has answered,
/// deliveries beyond `per_host_queue` are deferred; once it has answered
/// fast, a burst well past that limit is taken in memory and sent, not
/// deferred to the database.
async fn a_fast_host_takes_a_burst(backend: &str) {
    let (_db, store, clock, now, account) = on_a_manual_clock(backend).await;
    let (good, hits) = healthy().await;
    let burst = |from: usize, n: usize| {
        (from..from + n)
            .map(|i| pending(&account, &format!("run-{i}"), "good", &good, now))
            .collect::<Vec<_>>()
    };
    outbox(&store, burst(0, 10)).await;
    let config = DeliveryConfig {
        allow_private: vec!["127.0.0.0/8".into()],
        batch: 100,
        per_host: 2,
        per_host_queue: 4,
        ..DeliveryConfig::default()
    };
    let d = Arc::new(Deliverer::new(store.clone(), clock, config).expect("deliverer"));
    let first = d.pass().await.expect("pass");
    assert_eq!((first.claimed, first.started, first.deferred), (10, 4, 6));
    d.settle().await.expect("settle");
    assert_eq!(hits.load(Ordering::SeqCst), 4);

    // Answered at once: the limit is now 16 × 4 (5 s at this pace is more).
    outbox(&store, burst(10, 60)).await;
    let second = d.pass().await.expect("pass");
    assert_eq!(
        (second.claimed, second.started, second.deferred),
        (60, 60, 0)
    );
    d.settle().await.expect("settle");
    assert_eq!(hits.load(Ordering::SeqCst), 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_host_burst_sqlite() {
    a_fast_host_takes_a_burst("sqlite").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_host_burst_postgres() {
    a_fast_host_takes_a_burst("postgres").await
}

/// However fast the hosts, deliveries waiting in memory across all of them
/// stay under `queue_total`; the rest are deferred to the database.
async fn memory_is_bounded_across_hosts(backend: &str) {
    let (_db, store, clock, now, account) = on_a_manual_clock(backend).await;
    let (a, hits_a) = healthy().await;
    let (b, hits_b) = healthy().await;
    let rows = (0..10)
        .map(|i| {
            let url = if i % 2 == 0 { &a } else { &b };
            pending(&account, &format!("run-{i}"), "good", url, now)
        })
        .collect();
    outbox(&store, rows).await;
    let config = DeliveryConfig {
        allow_private: vec!["127.0.0.0/8".into()],
        batch: 100,
        per_host_queue: 100,
        queue_total: 6,
        ..DeliveryConfig::default()
    };
    let d = Arc::new(Deliverer::new(store.clone(), clock, config).expect("deliverer"));
    let first = d.pass().await.expect("pass");
    assert_eq!((first.claimed, first.started, first.deferred), (10, 6, 4));
    d.settle().await.expect("settle");
    assert_eq!(
        hits_a.load(Ordering::SeqCst) + hits_b.load(Ordering::SeqCst),
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_memory_sqlite() {
    memory_is_bounded_across_hosts("sqlite").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_memory_postgres() {
    memory_is_bounded_across_hosts("postgres").await
}
