//! Issue #7, acceptance 4: the binary is killed with SIGKILL during a
//! stream of deliveries; after a restart every delivery is received at least
//! once, and every duplicate carries the same `webhook-id`.
//!
//! Time: the binary runs with the `OUTFLOW_CLOCK_FILE` testing aid, so the
//! dead process's delivery leases can expire without waiting for them.

mod procs;

use procs::{count, Receiver};
use std::time::Duration;

const N: usize = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_survive_a_kill_9_at_least_once_with_stable_ids() {
    let db = outflow_testkit::TestDb::sqlite();
    let url = db.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = dir.path().join("clock-offset");
    procs::set_offset(&clock, 0);

    let receiver = Receiver::default();
    let hook = receiver.start().await;
    let http = procs::client();
    let mut p = procs::spawn(&url, Some(&clock), true);
    let metric = procs::metric_id(&http, &p.base, "Delivery Crash").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // No delay: each event's run goes straight to its webhook.
    procs::create_flow(&http, &p.base, &metric, 0, &hook).await;

    let emails: Vec<String> = (0..N).map(|i| format!("dc{i}@x.io")).collect();
    procs::send_events(&http, &p.base, "Delivery Crash", &emails).await;
    let mut received = 0;
    procs::wait_for(Duration::from_secs(120), "the first deliveries", || {
        received = receiver.counts().1;
        received >= 200
    })
    .await;
    p.kill9();
    let (distinct_at_kill, _) = receiver.counts();
    let mut c = procs::conn(&url);
    let recorded = count(
        c.as_mut(),
        "SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'",
    );
    eprintln!("killed: receiver had {distinct_at_kill} distinct, store had {recorded} succeeded");
    assert!(distinct_at_kill < N, "the kill landed mid-stream");

    // Restart past the dead process's leases.
    procs::set_offset(&clock, 600);
    let p2 = procs::spawn(&url, Some(&clock), false);
    let start = std::time::Instant::now();
    while receiver.counts().0 < N {
        if start.elapsed() > Duration::from_secs(240) {
            let stats: Vec<String> = procs::rows(
                c.as_mut(),
                "SELECT 'delivery ' || status, COUNT(*) FROM deliveries GROUP BY status \
                 UNION ALL SELECT 'run ' || state, COUNT(*) FROM runs GROUP BY state",
            )
            .iter()
            .map(|r| {
                format!(
                    "{}={}",
                    r.text(0).unwrap_or_default(),
                    r.int(1).unwrap_or(0)
                )
            })
            .collect();
            panic!(
                "only {} of {N} webhooks arrived after the restart; store: {stats:?}",
                receiver.counts().0
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    procs::wait_for(Duration::from_secs(60), "every delivery recorded", || {
        count(
            c.as_mut(),
            "SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'",
        ) == N as i64
    })
    .await;
    let (distinct, total) = receiver.counts();
    let ids = receiver.ids.lock().expect("ids").clone();
    let mut duplicates = 0;
    for (email, set) in &ids {
        assert_eq!(
            set.len(),
            1,
            "{email} arrived with several webhook-ids: {set:?}"
        );
        assert!(!set.iter().next().is_some_and(String::is_empty));
    }
    for n in receiver.hits.lock().expect("hits").values() {
        duplicates += n - 1;
    }
    eprintln!("receiver: {distinct} distinct, {total} requests, {duplicates} duplicates");
    assert_eq!(distinct, N);
    assert_eq!(
        count(c.as_mut(), "SELECT COUNT(DISTINCT id) FROM deliveries"),
        N as i64,
        "one delivery per run"
    );
    drop(p2);
}
