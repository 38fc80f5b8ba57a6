//! Issue #4, acceptance 4: two `outflow serve` processes on one PostgreSQL
//! database share the runs. Every run advances exactly once and both
//! processes do part of the work (`runs.last_worker` names the lease owner,
//! `<worker id>:<claim>`, that wrote each run's latest transition).
//!
//! Both processes use the `OUTFLOW_CLOCK_FILE` testing aid, so the test
//! makes the runs' delay due by writing one offset both read.

mod procs;

use procs::{count, Receiver};
use std::collections::HashMap;
use std::time::Duration;

const N: usize = 4_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_the_runs_on_postgres() {
    let db = outflow_testkit::TestDb::postgres();
    let url = db.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = dir.path().join("clock-offset");
    procs::set_offset(&clock, 0);

    let receiver = Receiver::default();
    let hook = receiver.start().await;
    let http = procs::client();
    // The first process migrates and bootstraps; the second finds both done.
    let a = procs::spawn(&url, Some(&clock), true);
    let b = procs::spawn(&url, Some(&clock), false);
    let mut c = procs::conn(&url);
    assert_eq!(count(c.as_mut(), "SELECT COUNT(*) FROM accounts"), 1);

    let metric = procs::metric_id(&http, &a.base, "Shared Work").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let flow = procs::create_flow(&http, &b.base, &metric, 1, &hook).await;

    // Events arrive through both processes; both dispatch.
    let emails: Vec<String> = (0..N).map(|i| format!("two{i}@x.io")).collect();
    let (first, second) = emails.split_at(N / 2);
    tokio::join!(
        procs::send_events(&http, &a.base, "Shared Work", first),
        procs::send_events(&http, &b.base, "Shared Work", second),
    );
    let runs_of_flow = format!("SELECT COUNT(*) FROM runs WHERE flow_id = '{flow}'");
    let waiting = format!("{runs_of_flow} AND state = 'waiting'");
    procs::wait_for(Duration::from_secs(120), "every run waiting", || {
        count(c.as_mut(), &waiting) == N as i64
    })
    .await;
    assert_eq!(
        count(c.as_mut(), &runs_of_flow),
        N as i64,
        "one run per event"
    );

    procs::set_offset(&clock, 3_700);
    let done = format!("{runs_of_flow} AND state = 'done'");
    procs::wait_for(Duration::from_secs(300), "every run done", || {
        count(c.as_mut(), &done) == N as i64
    })
    .await;
    procs::wait_for(Duration::from_secs(60), "every delivery sent", || {
        count(
            c.as_mut(),
            "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'",
        ) == 0
    })
    .await;

    // Exactly once: one effect of each kind per run, one delivery per run,
    // no step recorded twice, one webhook per profile at the receiver.
    // The update's effect key is a run_effects row; the webhook's is its
    // delivery row (unique per run and action).
    let updates = format!(
        "SELECT COUNT(*) FROM run_effects WHERE kind = 'update-profile' AND run_id IN \
         (SELECT id FROM runs WHERE flow_id = '{flow}')"
    );
    assert_eq!(count(c.as_mut(), &updates), N as i64, "update-profile");
    let webhooks = format!(
        "SELECT COUNT(DISTINCT run_id) FROM deliveries WHERE run_id IN \
         (SELECT id FROM runs WHERE flow_id = '{flow}')"
    );
    assert_eq!(count(c.as_mut(), &webhooks), N as i64, "webhook");
    assert_eq!(
        count(
            c.as_mut(),
            "SELECT COUNT(*) FROM (SELECT run_id, action_id FROM run_effects \
             GROUP BY run_id, action_id HAVING COUNT(*) > 1) d"
        ),
        0
    );
    assert_eq!(
        count(
            c.as_mut(),
            "SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'"
        ),
        N as i64
    );
    assert_eq!(
        count(
            c.as_mut(),
            "SELECT COUNT(*) FROM (SELECT run_id, action_id, outcome FROM run_steps \
             GROUP BY run_id, action_id, outcome HAVING COUNT(*) > 1) d"
        ),
        0
    );
    let (distinct, total) = receiver.counts();
    assert_eq!((distinct, total), (N, N), "one webhook per profile");

    // Both processes advanced runs.
    let rows = procs::rows(
        c.as_mut(),
        &format!("SELECT last_worker FROM runs WHERE flow_id = '{flow}'"),
    );
    let mut by_worker: HashMap<String, usize> = HashMap::new();
    for r in rows {
        let w = r.opt_text(0).expect("text").unwrap_or_default();
        let process = w.split(':').next().unwrap_or_default().to_owned();
        *by_worker.entry(process).or_default() += 1;
    }
    eprintln!("runs last advanced per process: {by_worker:?}");
    assert_eq!(
        by_worker.len(),
        2,
        "both processes did part of the work: {by_worker:?}"
    );
    assert!(by_worker.values().all(|&n| n > 0));
    drop((a, b));
}
