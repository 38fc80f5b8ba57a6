//! Webhook delivery (issue #7) end to end through the engine, against
//! scripted receivers, moving the clock instead of sleeping; on SQLite and
//! PostgreSQL.

mod common;

use chrono::Duration;
use common::{engine_with, env, scripted, Env, Reply, Seen};
use outflow_delivery::signing::{verify, Secret};
use outflow_store::deliveries;
use serde_json::{json, Value};

/// A live list-triggered flow: webhook `message`, then an update-profile
/// marking that the run moved on.
async fn webhook_flow(e: &Env, message: Value) -> (String, String) {
    let l = e.list("L").await;
    let f = e
        .flow(
            "live",
            ("list", &l),
            json!({"triggers": [{"type": "list", "id": l}],
            "actions": [{"id": "1", "type": "send-webhook", "links": {"next": "2"},
                         "data": {"status": "live", "message": message}},
                        {"id": "2", "type": "update-profile", "links": {"next": null},
                         "data": {"status": "live", "profile_operations": [
                            {"operator": "update", "property_type": "string",
                             "property_key": "after", "property_value": "yes"}]}}],
            "entry_action_id": "1"}),
        )
        .await;
    (f, l)
}

async fn enter(e: &Env, list: &str, email: &str) -> String {
    let p = e.profile(email, json!({"tier": "gold"})).await;
    e.join(list, &p, false).await;
    p
}

async fn the_delivery(e: &Env, f: &str) -> deliveries::DeliveryView {
    let (a, f) = (e.account.clone(), f.to_owned());
    let list = e
        .store
        .read(move |c| {
            deliveries::list(
                c,
                &a,
                &deliveries::LogFilter {
                    flow_id: Some(f),
                    ..Default::default()
                },
                10,
            )
        })
        .await
        .expect("log");
    assert_eq!(list.len(), 1, "one delivery");
    list.into_iter().next().expect("delivery")
}

async fn attempts_of(e: &Env, id: &str) -> Vec<deliveries::AttemptView> {
    let id = id.to_owned();
    e.store
        .read(move |c| deliveries::attempts(c, &id))
        .await
        .expect("attempts")
}

async fn secret(e: &Env) -> Secret {
    let a = e.account.clone();
    let now = e.now();
    let s = e
        .store
        .read(move |c| deliveries::signing_secrets(c, &a, now))
        .await
        .expect("secrets");
    Secret::parse(&s[0]).expect("secret parses")
}

fn ts(s: &Seen) -> i64 {
    s.header("webhook-timestamp")
        .and_then(|t| t.parse().ok())
        .expect("timestamp")
}

fn assert_signed(s: &Seen, secret: &Secret) {
    let id = s.header("webhook-id").expect("webhook-id");
    let sig = s.header("webhook-signature").expect("signature");
    assert!(
        verify(secret, id, ts(s), s.body.as_bytes(), sig),
        "signature verifies"
    );
}

async fn success_is_signed_and_logged(backend: &str) {
    let e = env(backend).await;
    let rx = scripted(vec![Reply::status(200).body(r#"{"ok":true}"#)]).await;
    let (f, l) = webhook_flow(
        &e,
        json!({"url": rx.url, "headers": {"Authorization": "Bearer s3cret", "X-Tier": "{{ person.tier }}"},
               "body": "{\"email\": \"{{ person.email }}\", \"org\": \"{{ organization.name }}\"}"}),
    )
    .await;
    let p = enter(&e, &l, "a@x.io").await;
    e.settle().await;
    let seen = rx.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert!(s.line.starts_with("POST /hook"));
    assert_eq!(s.body, r#"{"email": "a@x.io", "org": "Outflow"}"#);
    assert_eq!(s.header("content-type"), Some("application/json"));
    assert_eq!(s.header("x-tier"), Some("gold"));
    assert_eq!(s.header("authorization"), Some("Bearer s3cret"));
    assert!(s
        .header("user-agent")
        .is_some_and(|v| v.starts_with("Outflow/")));
    assert!(s
        .header("host")
        .is_some_and(|v| v.starts_with("127.0.0.1:")));
    assert_eq!(ts(s), e.now() / 1_000_000);
    assert_signed(s, &secret(&e).await);
    let d = the_delivery(&e, &f).await;
    assert_eq!(d.status, "succeeded");
    assert_eq!(s.header("webhook-id"), Some(d.id.as_str()));
    let a = attempts_of(&e, &d.id).await;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].log.status_code, Some(200));
    assert_eq!(a[0].log.outcome, "succeeded");
    assert_eq!(a[0].log.response_body.as_deref(), Some(r#"{"ok":true}"#));
    let logged = a[0].log.request_headers.to_string();
    assert!(
        !logged.contains("s3cret"),
        "authorization redacted: {logged}"
    );
    assert!(logged.contains("[redacted]"));
    assert_eq!(e.properties(&p).await["after"], "yes", "run moved on");
}

async fn retried_with_same_id_and_fresh_timestamp(backend: &str) {
    let e = env(backend).await;
    let rx = scripted(vec![Reply::status(503), Reply::status(200)]).await;
    let (f, l) = webhook_flow(&e, json!({"url": rx.url, "body": "{}"})).await;
    let p = enter(&e, &l, "a@x.io").await;
    e.settle().await;
    assert_eq!(rx.seen().len(), 1);
    let d = the_delivery(&e, &f).await;
    assert_eq!(d.status, "pending");
    let wait = d.next_attempt.expect("retry scheduled") - e.now();
    // 5 s ± 20%.
    assert!((4_000_000..=6_000_000).contains(&wait), "{wait}");
    assert_eq!(e.properties(&p).await.get("after"), None, "run waits");
    e.clock.advance(Duration::seconds(3));
    e.settle().await;
    assert_eq!(rx.seen().len(), 1, "not before its time");
    e.clock.advance(Duration::seconds(4));
    e.settle().await;
    let seen = rx.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("webhook-id"), seen[1].header("webhook-id"));
    assert!(ts(&seen[1]) > ts(&seen[0]), "fresh timestamp");
    let secret = secret(&e).await;
    assert_signed(&seen[0], &secret);
    assert_signed(&seen[1], &secret);
    let d = the_delivery(&e, &f).await;
    assert_eq!((d.status.as_str(), d.attempts), ("succeeded", 2));
    let a = attempts_of(&e, &d.id).await;
    assert_eq!(a[0].log.outcome, "retry");
    assert_eq!(a[0].log.status_code, Some(503));
    assert_eq!(e.properties(&p).await["after"], "yes");
}

async fn retry_after_is_honoured(backend: &str) {
    let e = env(backend).await;
    let rx = scripted(vec![
        Reply::status(429).header("Retry-After", "120"),
        Reply::status(200),
    ])
    .await;
    let (f, l) = webhook_flow(&e, json!({"url": rx.url, "body": "{}"})).await;
    enter(&e, &l, "a@x.io").await;
    e.settle().await;
    let d = the_delivery(&e, &f).await;
    assert_eq!(d.next_attempt, Some(e.now() + 120_000_000));
    e.clock.advance(Duration::seconds(119));
    e.settle().await;
    assert_eq!(rx.seen().len(), 1);
    e.clock.advance(Duration::seconds(1));
    e.settle().await;
    assert_eq!(rx.seen().len(), 2);
    assert_eq!(the_delivery(&e, &f).await.status, "succeeded");
}

async fn client_error_is_skipped_without_retry(backend: &str) {
    let e = env(backend).await;
    let rx = scripted(vec![Reply::status(400)]).await;
    let (f, l) = webhook_flow(&e, json!({"url": rx.url, "body": "{}"})).await;
    let p = enter(&e, &l, "a@x.io").await;
    e.settle().await;
    e.clock.advance(Duration::hours(30));
    e.settle().await;
    assert_eq!(rx.seen().len(), 1);
    let d = the_delivery(&e, &f).await;
    assert_eq!(d.status, "skipped");
    assert_eq!(d.last_error.as_deref(), Some("HTTP 400"));
    assert_eq!(
        e.properties(&p).await["after"],
        "yes",
        "moves on after skip"
    );
}

async fn gone_disables_the_destination(backend: &str) {
    let e = env(backend).await;
    let rx = scripted(vec![Reply::status(410), Reply::status(200)]).await;
    let (f, l) = webhook_flow(&e, json!({"url": rx.url, "body": "{}"})).await;
    enter(&e, &l, "a@x.io").await;
    e.settle().await;
    let (a, f2) = (e.account.clone(), f.clone());
    let dest = e
        .store
        .read(move |c| deliveries::destination(c, &a, &f2, "1"))
        .await
        .expect("destination");
    assert!(dest.disabled.is_some());
    enter(&e, &l, "b@x.io").await;
    e.settle().await;
    assert_eq!(rx.seen().len(), 1, "nothing sent to a disabled destination");
    let skipped = e
        .count("SELECT COUNT(*) FROM deliveries WHERE last_error LIKE 'destination disabled%'")
        .await;
    assert_eq!(skipped, 1);
    let (a, f2, now) = (e.account.clone(), f.clone(), e.now());
    e.store
        .write(move |ctx| deliveries::enable_destination(ctx.conn, &a, &f2, "1", now))
        .await
        .expect("enable");
    enter(&e, &l, "c@x.io").await;
    e.settle().await;
    assert_eq!(rx.seen().len(), 2, "re-enabled");
}

async fn timeout_is_retried(backend: &str) {
    let mut e = env(backend).await;
    e.engine = engine_with(&e.store, &e.clock, |c| {
        c.delivery.timeout = std::time::Duration::from_millis(300);
    });
    let rx = scripted(vec![
        Reply::status(200).delay(std::time::Duration::from_secs(3)),
        Reply::status(200),
    ])
    .await;
    let (f, l) = webhook_flow(&e, json!({"url": rx.url, "body": "{}"})).await;
    enter(&e, &l, "a@x.io").await;
    e.settle().await;
    let d = the_delivery(&e, &f).await;
    assert_eq!(d.status, "pending");
    assert!(
        d.last_error.as_deref().unwrap_or("").starts_with("timeout"),
        "{:?}",
        d.last_error
    );
    e.clock.advance(Duration::seconds(10));
    e.settle().await;
    assert_eq!(the_delivery(&e, &f).await.status, "succeeded");
}

/// A destination whose accept queue is full drops new SYNs, so connecting
/// hangs until the connect timeout: a retried "timeout", told apart from
/// the total timeout of an answer that never completes.
async fn connect_timeout_is_retried(backend: &str) {
    let mut e = env(backend).await;
    e.engine = engine_with(&e.store, &e.clock, |c| {
        c.delivery.connect_timeout = std::time::Duration::from_millis(300);
    });
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut queued = Vec::new();
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)) {
            Ok(s) => queued.push(s),
            Err(_) => break,
        }
    }
    let url = format!("http://{addr}/hook");
    let (f, l) = webhook_flow(&e, json!({"url": url, "body": "{}"})).await;
    enter(&e, &l, "a@x.io").await;
    e.settle().await;
    let d = the_delivery(&e, &f).await;
    assert_eq!(d.status, "pending", "retried");
    let error = d.last_error.unwrap_or_default();
    assert!(error.starts_with("timeout"), "{error}");
    assert!(!error.contains("no complete answer"), "{error}");
    drop((listener, queued));
}

async fn invalid_json_body_is_skipped_and_kept(backend: &str) {
    let e = env(backend).await;
    let rx = scripted(vec![Reply::status(200)]).await;
    let (f, l) = webhook_flow(
        &e,
        json!({"url": rx.url, "body": "{\"email\": {{ person.email }}}"}),
    )
    .await;
    let p = enter(&e, &l, "a@x.io").await;
    e.settle().await;
    assert!(rx.seen().is_empty());
    let d = the_delivery(&e, &f).await;
    assert_eq!(d.status, "skipped");
    assert!(d
        .last_error
        .as_deref()
        .unwrap_or("")
        .starts_with("invalid JSON body"));
    assert_eq!(d.body, "{\"email\": a@x.io}", "rendered text kept");
    assert_eq!(e.properties(&p).await["after"], "yes");
}

async fn private_destinations_are_refused(backend: &str) {
    let mut e = env(backend).await;
    e.engine = engine_with(&e.store, &e.clock, |c| c.delivery.allow_private = vec![]);
    let rx = scripted(vec![Reply::status(200)]).await;
    let port = rx.url.rsplit(':').next().unwrap_or("").to_owned();
    let (f, l) = webhook_flow(&e, json!({"url": rx.url, "body": "{}"})).await;
    enter(&e, &l, "a@x.io").await;
    e.settle().await;
    let d = the_delivery(&e, &f).await;
    assert_eq!(d.status, "skipped");
    assert!(d
        .last_error
        .as_deref()
        .unwrap_or("")
        .starts_with("refused: plain http://"));
    // HTTPS to a name that resolves to loopback: refused after resolution.
    let (f3, l3) = webhook_flow(
        &e,
        json!({"url": format!("https://localhost:{port}"), "body": "{}"}),
    )
    .await;
    enter(&e, &l3, "b@x.io").await;
    e.settle().await;
    let d = the_delivery(&e, &f3).await;
    assert_eq!(d.status, "skipped", "{:?}", d.last_error);
    let err = d.last_error.unwrap_or_default();
    assert!(err.contains("loopback address"), "{err}");
    let a = attempts_of(&e, &d.id).await;
    assert_eq!(a[0].log.outcome, "refused");
    assert!(rx.seen().is_empty(), "nothing reached the receiver");
}

/// An `https://` destination gets TLS: the first bytes on the wire are a
/// TLS handshake record, and a server answering in plain HTTP fails the
/// handshake (retried).
async fn https_speaks_tls(backend: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let e = env(backend).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let first_bytes = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let seen = first_bytes.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 512];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            seen.lock()
                .expect("lock")
                .extend_from_slice(&buf[..n.min(3)]);
            let _ = sock
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let (f, l) = webhook_flow(
        &e,
        json!({"url": format!("https://127.0.0.1:{port}/hook"), "body": "{}"}),
    )
    .await;
    enter(&e, &l, "a@x.io").await;
    e.settle().await;
    let first = first_bytes.lock().expect("lock").clone();
    assert_eq!(first, [0x16, 0x03, 0x01], "a TLS handshake record");
    let d = the_delivery(&e, &f).await;
    assert_eq!(d.status, "pending", "retried");
    let err = d.last_error.unwrap_or_default();
    assert!(err.starts_with("connection failed"), "{err}");
}

async fn redirects_are_not_followed(backend: &str) {
    let e = env(backend).await;
    let target = scripted(vec![Reply::status(200)]).await;
    let rx = scripted(vec![Reply::status(302).header("Location", &target.url)]).await;
    let (f, l) = webhook_flow(&e, json!({"url": rx.url, "body": "{}"})).await;
    enter(&e, &l, "a@x.io").await;
    e.settle().await;
    assert_eq!(rx.seen().len(), 1);
    assert!(target.seen().is_empty());
    let d = the_delivery(&e, &f).await;
    assert_eq!(
        (d.status.as_str(), d.last_status_code),
        ("skipped", Some(302))
    );
}

async fn gives_up_after_the_last_attempt(backend: &str) {
    let mut e = env(backend).await;
    e.engine = engine_with(&e.store, &e.clock, |c| c.delivery.policy.max_attempts = 3);
    let rx = scripted(vec![Reply::status(500)]).await;
    let (f, l) = webhook_flow(&e, json!({"url": rx.url, "body": "{}"})).await;
    let p = enter(&e, &l, "a@x.io").await;
    for _ in 0..5 {
        e.settle().await;
        e.clock.advance(Duration::minutes(5));
    }
    assert_eq!(rx.seen().len(), 3);
    let d = the_delivery(&e, &f).await;
    assert_eq!(d.status, "failed");
    assert!(d.last_error.unwrap_or_default().contains("gave up after 3"));
    assert_eq!(e.properties(&p).await["after"], "yes");
}

async fn response_fields_reach_the_profile(backend: &str) {
    let e = env(backend).await;
    let rx = scripted(vec![
        Reply::status(200).body(r#"{"data": {"id": "crm-42", "score": 7}}"#)
    ])
    .await;
    let (_, l) = webhook_flow(
        &e,
        json!({"url": rx.url, "body": "{}",
               "response_to_profile": {"crm_id": "/data/id", "score": "/data/score"}}),
    )
    .await;
    let p = enter(&e, &l, "a@x.io").await;
    e.settle().await;
    let props = e.properties(&p).await;
    assert_eq!(props["crm_id"], "crm-42");
    assert_eq!(props["score"], 7);
}

async fn manual_retry_and_replay(backend: &str) {
    let e = env(backend).await;
    let rx = scripted(vec![Reply::status(404), Reply::status(200)]).await;
    let (f, l) = webhook_flow(&e, json!({"url": rx.url, "body": "{}"})).await;
    enter(&e, &l, "a@x.io").await;
    e.settle().await;
    let d = the_delivery(&e, &f).await;
    assert_eq!(d.status, "skipped");
    let (a, id, now) = (e.account.clone(), d.id.clone(), e.now());
    let ok = e
        .store
        .write(move |ctx| deliveries::retry(ctx.conn, &a, &id, now))
        .await
        .expect("retry");
    assert!(ok);
    e.settle().await;
    let d2 = the_delivery(&e, &f).await;
    assert_eq!((d2.status.as_str(), d2.attempts), ("succeeded", 2));
    let seen = rx.seen();
    assert_eq!(seen[0].header("webhook-id"), seen[1].header("webhook-id"));
    // Replay picks only failed or skipped deliveries in the range.
    let (a, f2, now) = (e.account.clone(), f.clone(), e.now());
    let n = e
        .store
        .write(move |ctx| deliveries::replay(ctx.conn, &a, &f2, "1", 0, now + 1, now))
        .await
        .expect("replay");
    assert_eq!(n, 0);
}

/// A webhook that is its flow's last action: the recorder ends the run in
/// the delivery's transaction (first attempts handed over in memory); a
/// retried delivery, claimed from the table, goes back through the engine.
/// Both leave the same history.
async fn last_webhook_ends_the_run_either_way(backend: &str) {
    let e = env(backend).await;
    let rx = scripted(vec![
        Reply::status(200),
        Reply::status(400),
        Reply::status(503),
        Reply::status(200),
    ])
    .await;
    let l = e.list("L").await;
    let f = e
        .flow(
            "live",
            ("list", &l),
            json!({"triggers": [{"type": "list", "id": l}],
            "actions": [{"id": "1", "type": "send-webhook", "links": {"next": null},
                         "data": {"status": "live", "message": {"url": rx.url, "body": "{}"}}}],
            "entry_action_id": "1"}),
        )
        .await;
    let mut history = Vec::new();
    for (i, email) in ["ok@x.io", "bad@x.io", "retry@x.io"].iter().enumerate() {
        enter(&e, &l, email).await;
        e.settle().await;
        if i == 2 {
            let t = e.settle().await;
            assert_eq!(t.executed.claimed, 0, "waits for the retry");
            e.clock.advance(Duration::seconds(7));
            e.settle().await;
        }
        let runs = e.runs_of_flow(&f).await;
        assert_eq!(runs.len(), i + 1);
        let run = runs
            .iter()
            .find(|r| history.iter().all(|(id, _)| id != &r.id))
            .expect("the new run")
            .clone();
        assert_eq!(run.state, "done", "{email}");
        assert_eq!(run.current_action, None);
        assert_eq!(run.due, None);
        assert_eq!(run.lease_owner, None);
        let steps: Vec<(String, String)> = e
            .steps(&run.id)
            .await
            .into_iter()
            .map(|(a, o, _)| (a, o))
            .collect();
        assert_eq!(run.step_count as usize, steps.len());
        history.push((run.id, steps));
    }
    let outcome = |o: &str| {
        vec![
            ("1".to_owned(), "executed".to_owned()),
            ("1".to_owned(), o.to_owned()),
        ]
    };
    assert_eq!(history[0].1, outcome("delivered"), "ended by the recorder");
    assert_eq!(
        history[1].1,
        outcome("delivery skipped"),
        "ended by the recorder"
    );
    assert_eq!(
        history[2].1,
        outcome("delivered"),
        "ended by the engine after a retry"
    );
    assert_eq!(rx.seen().len(), 4);
}

on_both!(
    last_webhook_ends_the_run_either_way,
    success_is_signed_and_logged,
    retried_with_same_id_and_fresh_timestamp,
    retry_after_is_honoured,
    client_error_is_skipped_without_retry,
    gone_disables_the_destination,
    timeout_is_retried,
    connect_timeout_is_retried,
    invalid_json_body_is_skipped_and_kept,
    private_destinations_are_refused,
    redirects_are_not_followed,
    https_speaks_tls,
    gives_up_after_the_last_attempt,
    response_fields_reach_the_profile,
    manual_retry_and_replay,
);
