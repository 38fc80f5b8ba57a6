//! Issue #4, acceptance 3: 10,000 runs wait on a delay; the binary is
//! killed with SIGKILL while they are being woken; after a restart every
//! run completes its next steps exactly once.
//!
//! Time: the binary runs with the `OUTFLOW_CLOCK_FILE` testing aid (system
//! time plus an offset the test writes), so "an hour later" takes no hour.

mod procs;

use procs::{count, Receiver};
use std::time::Duration;

const N: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_woken_during_a_kill_9_complete_exactly_once() {
    let db = outflow_testkit::TestDb::sqlite();
    let url = db.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = dir.path().join("clock-offset");
    procs::set_offset(&clock, 0);

    let receiver = Receiver::default();
    let hook = receiver.start().await;
    let http = procs::client();
    let mut p = procs::spawn(&url, Some(&clock), true);
    let metric = procs::metric_id(&http, &p.base, "Crash Test").await;
    // Let the seed event be dispatched before the flow exists.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let flow = procs::create_flow(&http, &p.base, &metric, 1, &hook).await;

    let emails: Vec<String> = (0..N).map(|i| format!("crash{i}@x.io")).collect();
    procs::send_events(&http, &p.base, "Crash Test", &emails).await;

    let mut c = procs::conn(&url);
    let waiting =
        format!("SELECT COUNT(*) FROM runs WHERE flow_id = '{flow}' AND state = 'waiting'");
    procs::wait_for(Duration::from_secs(120), "10,000 waiting runs", || {
        count(c.as_mut(), &waiting) == N as i64
    })
    .await;
    assert_eq!(count(c.as_mut(), "SELECT COUNT(*) FROM run_effects"), 0);

    // An hour and a bit later: every run is due. Kill as soon as some (not
    // all) have been woken.
    procs::set_offset(&clock, 3_700);
    let effects = "SELECT COUNT(*) FROM run_effects";
    let mut at_kill = 0;
    procs::wait_for(Duration::from_secs(60), "the first woken runs", || {
        at_kill = count(c.as_mut(), effects);
        at_kill > 0
    })
    .await;
    p.kill9();
    let at_kill_effects = count(c.as_mut(), effects);
    let at_kill_done = count(
        c.as_mut(),
        &format!("SELECT COUNT(*) FROM runs WHERE flow_id = '{flow}' AND state = 'done'"),
    );
    let (rx_before, _) = receiver.counts();
    eprintln!(
        "killed with {at_kill_effects} effects written, {at_kill_done} runs done, {rx_before} webhooks received"
    );
    assert!(
        (at_kill_effects as usize) < N,
        "the kill landed before all runs were woken ({at_kill_effects} of {N} effects)"
    );
    assert!((at_kill_done as usize) < N);

    // Restart past the dead process's leases (60 s).
    procs::set_offset(&clock, 3_700 + 300);
    let p2 = procs::spawn(&url, Some(&clock), false);
    let done = format!("SELECT COUNT(*) FROM runs WHERE flow_id = '{flow}' AND state = 'done'");
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

    // One effect per run and action: the update (its effect key) and the
    // webhook (its delivery row, unique per run and action, is the key).
    let per_action = procs::rows(
        c.as_mut(),
        "SELECT kind, COUNT(*), COUNT(DISTINCT run_id) FROM run_effects GROUP BY kind \
         UNION ALL SELECT 'webhook', COUNT(*), COUNT(DISTINCT run_id) FROM deliveries",
    );
    let kinds: Vec<(String, i64, i64)> = per_action
        .iter()
        .map(|r| (r.text(0).unwrap(), r.int(1).unwrap(), r.int(2).unwrap()))
        .collect();
    eprintln!("effects by kind: {kinds:?}");
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    for (kind, n, runs) in &kinds {
        assert_eq!((*n, *runs), (N as i64, N as i64), "{kind}");
    }
    assert_eq!(
        count(
            c.as_mut(),
            "SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'"
        ),
        N as i64
    );
    assert_eq!(
        count(c.as_mut(), "SELECT COUNT(DISTINCT run_id) FROM deliveries"),
        N as i64
    );
    // No step was recorded twice for a run (woken once, each action once).
    assert_eq!(
        count(
            c.as_mut(),
            "SELECT COUNT(*) FROM (SELECT run_id, action_id, outcome FROM run_steps \
             GROUP BY run_id, action_id, outcome HAVING COUNT(*) > 1) d"
        ),
        0
    );
    // The profile update happened (once per profile; the writes are keyed).
    assert_eq!(
        count(
            c.as_mut(),
            "SELECT COUNT(*) FROM profiles WHERE properties LIKE '%\"woken\":\"yes\"%'"
        ),
        N as i64
    );

    // The receiver: every profile's webhook arrived. Delivery is
    // at-least-once, so a request in flight at the kill may come twice; the
    // run steps and effects above are what must be exactly once.
    let (distinct, total) = receiver.counts();
    eprintln!("receiver: {distinct} distinct emails, {total} requests");
    assert_eq!(distinct, N);
    assert!(
        total - distinct <= 1000,
        "re-sent only what was in flight at the kill: {}",
        total - distinct
    );
    drop(p2);
}
