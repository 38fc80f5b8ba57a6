//! One store suite, run against SQLite and PostgreSQL alike.

use chrono::{TimeZone, Utc};
use outflow_core::event::{EventInput, ValidEvent};
use outflow_core::profile::{Patch, ProfileInput};
use outflow_store::lists::JoinSource;
use outflow_store::{accounts, catalog, events, lists, metrics, profiles, Store, StoreError};
use outflow_testkit::TestDb;
use serde_json::{json, Map, Value};

const NOW: i64 = 1_790_000_000_000_000;

async fn open(db: &TestDb) -> (Store, String) {
    let store = Store::open(&db.url()).await.expect("open");
    let boot = store
        .write(|ctx| accounts::bootstrap(ctx.conn, Some("pk_test_0123456789"), NOW))
        .await
        .expect("bootstrap")
        .expect("first bootstrap creates the account");
    (store, boot.account_id)
}

fn email(e: &str) -> ProfileInput {
    attrs(json!({ "email": e }))
}

fn attrs(v: Value) -> ProfileInput {
    match v {
        Value::Object(m) => ProfileInput::from_attributes(&m).expect("valid attributes"),
        _ => panic!("object expected"),
    }
}

fn event(metric: &str, profile: ProfileInput, unique: Option<&str>, second: i64) -> ValidEvent {
    EventInput {
        metric_name: metric.into(),
        profile,
        properties: Map::from_iter([("Item".to_string(), json!("Book"))]),
        time: Utc.timestamp_opt(1_790_000_000 + second, 0).single(),
        value: Some(9.99),
        value_currency: Some("USD".into()),
        unique_id: unique.map(str::to_owned),
        backfill: false,
    }
    .validate(Utc.timestamp_opt(1_790_000_100, 0).unwrap())
    .expect("valid event")
}

async fn ingest(
    store: &Store,
    account: &str,
    ev: ValidEvent,
) -> Result<events::Ingested, StoreError> {
    let account = account.to_owned();
    store
        .write(move |ctx| events::ingest(ctx, &account, &ev, NOW))
        .await
}

async fn bootstrap_and_authenticate(backend: &str) {
    let db = TestDb::by_name(backend);
    let (store, account) = open(&db).await;
    let again = store
        .write(|ctx| accounts::bootstrap(ctx.conn, Some("pk_other_key_123"), NOW))
        .await
        .unwrap();
    assert_eq!(again, None, "bootstrap does nothing once an account exists");
    let p = store
        .read(|c| accounts::authenticate(c, "pk_test_0123456789"))
        .await
        .unwrap()
        .expect("bootstrap key authenticates");
    assert_eq!(p.account_id, account);
    assert!(p.has_scope("events:write"));
    let none = store
        .read(|c| accounts::authenticate(c, "pk_nope_nope"))
        .await
        .unwrap();
    assert_eq!(none, None);
    // The plain key is not stored anywhere.
    let rows = store
        .read(|c| Ok(c.query("SELECT key_hash, prefix FROM api_keys", &[])?))
        .await
        .unwrap();
    assert!(!rows[0].text(0).unwrap().contains("0123456789"));
}

async fn events_create_profiles_and_deduplicate(backend: &str) {
    let db = TestDb::by_name(backend);
    let (store, acct) = open(&db).await;
    let a = ingest(
        &store,
        &acct,
        event("Placed Order", email("Sarah@Example.com"), Some("o-1"), 0),
    )
    .await
    .unwrap();
    assert!(a.event_id.is_some());
    let b = ingest(
        &store,
        &acct,
        event("Placed Order", email("sarah@example.com"), Some("o-1"), 5),
    )
    .await
    .unwrap();
    assert_eq!(b.profile_id, a.profile_id, "same email, same profile");
    assert_eq!(b.event_id, None, "same unique_id is a duplicate");
    let c = ingest(
        &store,
        &acct,
        event("Placed Order", email("sarah@example.com"), None, 7),
    )
    .await
    .unwrap();
    let d = ingest(
        &store,
        &acct,
        event("Placed Order", email("sarah@example.com"), None, 7),
    )
    .await
    .unwrap();
    assert!(c.event_id.is_some());
    assert_eq!(d.event_id, None, "no unique_id: one event per second");
    let other = ingest(
        &store,
        &acct,
        event("Viewed Product", email("sarah@example.com"), Some("o-1"), 0),
    )
    .await
    .unwrap();
    assert!(other.event_id.is_some(), "dedup is per metric");
    let acct2 = acct.clone();
    let all = store
        .read(move |c| events::list(c, &acct2, &[], false, None, 100))
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    let acct2 = acct.clone();
    let ms = store
        .read(move |c| metrics::list(c, &acct2, None, None, 10))
        .await
        .unwrap();
    let mut names: Vec<_> = ms.iter().map(|m| m.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["Placed Order", "Viewed Product"]);
    let e = &all[0];
    assert_eq!(e.properties, json!({"Item": "Book"}));
    assert_eq!(e.value, Some(9.99));
    // Attributes carried by an event update the profile.
    let mut input = email("sarah@example.com");
    input.attributes.insert("first_name".into(), json!("Sarah"));
    input.properties.insert("tier".into(), json!("gold"));
    ingest(&store, &acct, event("Placed Order", input, Some("o-2"), 9))
        .await
        .unwrap();
    let (acct2, pid) = (acct.clone(), a.profile_id.clone());
    let p = store
        .read(move |c| profiles::get(c, &acct2, &pid))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.attributes["first_name"], json!("Sarah"));
    assert_eq!(p.properties["tier"], json!("gold"));
    // Pagination by (time, id).
    let acct2 = acct.clone();
    let first = store
        .read(move |c| events::list(c, &acct2, &[], false, None, 2))
        .await
        .unwrap();
    let cur = events::EventCursor {
        time: first[1].time,
        id: first[1].id.clone(),
    };
    let acct2 = acct.clone();
    let rest = store
        .read(move |c| events::list(c, &acct2, &[], false, Some(&cur), 10))
        .await
        .unwrap();
    assert_eq!(first.len() + rest.len(), 4);
}

async fn conflicting_identifiers_change_nothing(backend: &str) {
    let db = TestDb::by_name(backend);
    let (store, acct) = open(&db).await;
    ingest(&store, &acct, event("M", email("a@x.co"), Some("1"), 0))
        .await
        .unwrap();
    let ext = ProfileInput {
        external_id: Patch::Set("42".into()),
        ..Default::default()
    };
    ingest(&store, &acct, event("M", ext, Some("2"), 0))
        .await
        .unwrap();
    let both = ProfileInput {
        email: Patch::Set("a@x.co".into()),
        external_id: Patch::Set("42".into()),
        ..Default::default()
    };
    let err = ingest(&store, &acct, event("M", both, Some("3"), 0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let acct2 = acct.clone();
    assert_eq!(
        store.read(move |c| events::count(c, &acct2)).await.unwrap(),
        2
    );
    // A new identifier joins the profile the others name.
    let more = ProfileInput {
        email: Patch::Set("a@x.co".into()),
        phone_number: Patch::Set("+15005550006".into()),
        ..Default::default()
    };
    let r = ingest(&store, &acct, event("M", more, Some("4"), 0))
        .await
        .unwrap();
    let (acct2, pid) = (acct.clone(), r.profile_id.clone());
    let p = store
        .read(move |c| profiles::get(c, &acct2, &pid))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.phone_number.as_deref(), Some("+15005550006"));
}

async fn profile_create_duplicate_and_patch(backend: &str) {
    let db = TestDb::by_name(backend);
    let (store, acct) = open(&db).await;
    let a2 = acct.clone();
    let p = store
        .write(move |ctx| {
            profiles::create(
                ctx,
                &a2,
                &attrs(json!({"email":"x@y.co","first_name":"X","location":{"city":"Oslo"}})),
                NOW,
            )
        })
        .await
        .unwrap();
    let a2 = acct.clone();
    let dup = store
        .write(move |ctx| profiles::create(ctx, &a2, &attrs(json!({"email":"X@y.co"})), NOW))
        .await
        .unwrap_err();
    match dup {
        StoreError::DuplicateProfile { id } => assert_eq!(id, p.id),
        e => panic!("expected duplicate, got {e:?}"),
    }
    let (a2, id) = (acct.clone(), p.id.clone());
    let patched = store
        .write(move |ctx| {
            profiles::patch(
                ctx,
                &a2,
                &id,
                &attrs(json!({"first_name": null, "last_name": "Y"})),
                NOW + 1,
            )
        })
        .await
        .unwrap();
    assert_eq!(patched.attributes.get("first_name"), None);
    assert_eq!(patched.attributes["last_name"], json!("Y"));
    assert_eq!(patched.attributes["location"], json!({"city":"Oslo"}));
    assert_eq!(patched.updated, NOW + 1);
    // Filters and cursor pagination.
    for i in 0..5 {
        let a2 = acct.clone();
        store
            .write(move |ctx| {
                profiles::create(
                    ctx,
                    &a2,
                    &attrs(json!({"email": format!("p{i}@y.co")})),
                    NOW + 10 + i,
                )
            })
            .await
            .unwrap();
    }
    let a2 = acct.clone();
    let by_email = store
        .read(move |c| {
            profiles::list(
                c,
                &a2,
                &[profiles::ProfileFilter::EmailIn(vec!["P3@y.co".into()])],
                None,
                10,
            )
        })
        .await
        .unwrap();
    assert_eq!(by_email.len(), 1);
    let a2 = acct.clone();
    let recent = store
        .read(move |c| {
            profiles::list(
                c,
                &a2,
                &[profiles::ProfileFilter::UpdatedAfter(NOW + 12)],
                None,
                10,
            )
        })
        .await
        .unwrap();
    assert_eq!(recent.len(), 2);
    let a2 = acct.clone();
    let page1 = store
        .read(move |c| profiles::list(c, &a2, &[], None, 4))
        .await
        .unwrap();
    let (a2, after) = (acct.clone(), page1[3].id.clone());
    let page2 = store
        .read(move |c| profiles::list(c, &a2, &[], Some(&after), 4))
        .await
        .unwrap();
    assert_eq!((page1.len(), page2.len()), (4, 2));
}

async fn lists_membership(backend: &str) {
    let db = TestDb::by_name(backend);
    let (store, acct) = open(&db).await;
    let a2 = acct.clone();
    let list = store
        .write(move |ctx| lists::create(ctx, &a2, "Newsletter", "single_opt_in", NOW))
        .await
        .unwrap();
    let r = ingest(&store, &acct, event("M", email("m@x.co"), None, 0))
        .await
        .unwrap();
    let how = JoinSource {
        source: "api",
        historical_import: false,
    };
    let (a2, lid, pids) = (acct.clone(), list.id.clone(), vec![r.profile_id.clone()]);
    let added = store
        .write(move |ctx| lists::add_members(ctx, &a2, &lid, &pids, how, NOW))
        .await
        .unwrap();
    assert_eq!(added, 1);
    let (a2, lid, pids) = (acct.clone(), list.id.clone(), vec![r.profile_id.clone()]);
    let again = store
        .write(move |ctx| lists::add_members(ctx, &a2, &lid, &pids, how, NOW))
        .await
        .unwrap();
    assert_eq!(again, 0, "joining twice is not a new join");
    let (a2, lid, pids) = (
        acct.clone(),
        list.id.clone(),
        vec![r.profile_id.clone(), "01NOPE".to_string()],
    );
    let err = store
        .write(move |ctx| lists::add_members(ctx, &a2, &lid, &pids, how, NOW))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)));
    let (a2, lid) = (acct.clone(), list.id.clone());
    let members = store
        .read(move |c| lists::members(c, &a2, &lid, None, 10))
        .await
        .unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].joined, NOW);
    let (a2, lid, pids) = (acct.clone(), list.id.clone(), vec![r.profile_id.clone()]);
    store
        .write(move |ctx| lists::remove_members(ctx, &a2, &lid, &pids))
        .await
        .unwrap();
    let (a2, lid) = (acct.clone(), list.id.clone());
    assert_eq!(
        store
            .read(move |c| lists::member_count(c, &a2, &lid))
            .await
            .unwrap(),
        0
    );
    let (a2, lid) = (acct.clone(), list.id.clone());
    store
        .write(move |ctx| lists::delete(ctx, &a2, &lid))
        .await
        .unwrap();
    let (a2, lid) = (acct.clone(), list.id.clone());
    assert_eq!(
        store.read(move |c| lists::get(c, &a2, &lid)).await.unwrap(),
        None
    );
}

async fn catalog_keeps_price_history(backend: &str) {
    let db = TestDb::by_name(backend);
    let (store, acct) = open(&db).await;
    let a2 = acct.clone();
    let attrs = Map::from_iter([
        ("title".to_string(), json!("Mug")),
        ("price".to_string(), json!(20.0)),
    ]);
    let item = store
        .write(move |ctx| catalog::create(ctx, &a2, "SKU1", "$custom", "$default", attrs, NOW))
        .await
        .unwrap();
    assert_eq!(item.id, "$custom:::$default:::SKU1");
    for (i, price) in [15.0, 15.0, 12.5].into_iter().enumerate() {
        let (a2, id) = (acct.clone(), item.id.clone());
        let ch = Map::from_iter([("price".to_string(), json!(price))]);
        store
            .write(move |ctx| catalog::update(ctx, &a2, &id, &ch, NOW + 1 + i as i64))
            .await
            .unwrap();
    }
    let (a2, id) = (acct.clone(), item.id.clone());
    let hist = store
        .read(move |c| catalog::price_history(c, &a2, &id))
        .await
        .unwrap();
    let prices: Vec<_> = hist.iter().map(|h| (h.old_price, h.new_price)).collect();
    assert_eq!(
        prices,
        [
            (None, Some(20.0)),
            (Some(20.0), Some(15.0)),
            (Some(15.0), Some(12.5))
        ]
    );
    assert_eq!(hist[2].changed, NOW + 3);
}

async fn group_commit_isolates_failing_jobs(backend: &str) {
    let db = TestDb::by_name(backend);
    let (store, acct) = open(&db).await;
    let mut tasks = Vec::new();
    for i in 0..400 {
        let (store, acct) = (store.clone(), acct.clone());
        tasks.push(tokio::spawn(async move {
            if i % 5 == 0 {
                store
                    .write(move |ctx| {
                        events::ingest(
                            ctx,
                            &acct,
                            &event("M", email(&format!("u{i}@x.co")), Some("k"), 0),
                            NOW,
                        )?;
                        assert!(i % 10 == 0, "a bug in a job after writing");
                        Err::<(), _>(StoreError::Invalid("fails after writing".into()))
                    })
                    .await
                    .map(|()| None)
            } else {
                ingest(
                    &store,
                    &acct,
                    event("M", email(&format!("u{i}@x.co")), Some("k"), 0),
                )
                .await
                .map(|r| r.event_id)
            }
        }));
    }
    let mut ok = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(Some(_)) => ok += 1,
            Err(StoreError::Invalid(_)) => assert_eq!(i % 10, 0),
            // A panicking job fails alone; the writer thread lives on.
            Err(StoreError::Unavailable(_)) => assert_eq!(i % 10, 5),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ok, 320);
    let a2 = acct.clone();
    assert_eq!(
        store.read(move |c| events::count(c, &a2)).await.unwrap(),
        320
    );
    // The failing jobs' profiles were rolled back with them.
    let a2 = acct.clone();
    let gone = store
        .read(move |c| {
            profiles::list(
                c,
                &a2,
                &[profiles::ProfileFilter::EmailIn(vec!["u10@x.co".into()])],
                None,
                10,
            )
        })
        .await
        .unwrap();
    assert!(gone.is_empty());
    // And the identity cache did not keep them either: a new event creates the profile.
    let r = ingest(&store, &acct, event("M", email("u10@x.co"), Some("k"), 0))
        .await
        .unwrap();
    assert!(r.event_id.is_some());
}

async fn reopening_keeps_data_and_indexes(backend: &str) {
    let db = TestDb::by_name(backend);
    let (store, acct) = open(&db).await;
    let first = ingest(&store, &acct, event("M", email("keep@x.co"), Some("1"), 0))
        .await
        .unwrap();
    drop(store);
    let store = Store::open(&db.url()).await.unwrap();
    let again = ingest(&store, &acct, event("M", email("keep@x.co"), Some("2"), 0))
        .await
        .unwrap();
    assert_eq!(
        again.profile_id, first.profile_id,
        "identity index rebuilt at start"
    );
    let dup = ingest(&store, &acct, event("M", email("keep@x.co"), Some("1"), 0))
        .await
        .unwrap();
    assert_eq!(dup.event_id, None);
}

async fn repeated_event_attributes_apply_again_after_a_change(backend: &str) {
    let db = TestDb::by_name(backend);
    let (store, acct) = open(&db).await;
    let named = |n: &str| attrs(json!({"email": "r@x.co", "first_name": n}));
    let r = ingest(&store, &acct, event("M", named("Ann"), Some("1"), 0))
        .await
        .unwrap();
    ingest(&store, &acct, event("M", named("Ann"), Some("2"), 0))
        .await
        .unwrap();
    let (a2, id) = (acct.clone(), r.profile_id.clone());
    store
        .write(move |ctx| {
            profiles::patch(ctx, &a2, &id, &attrs(json!({"first_name": "Bea"})), NOW + 5)
        })
        .await
        .unwrap();
    // The same attributes as before the PATCH must be applied again.
    ingest(&store, &acct, event("M", named("Ann"), Some("3"), 0))
        .await
        .unwrap();
    let (a2, id) = (acct.clone(), r.profile_id.clone());
    let p = store
        .read(move |c| profiles::get(c, &a2, &id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.attributes["first_name"], json!("Ann"));
}

/// Writes a marker row named `feed` in its own savepoint, then panics if
/// asked to; records what `finish` was told.
struct MarkingHook {
    feed: &'static str,
    panics: bool,
    told: std::sync::Arc<std::sync::Mutex<Vec<bool>>>,
}

impl outflow_store::writer::BatchHook for MarkingHook {
    fn run(&mut self, ctx: &mut outflow_store::WriteCtx<'_>) -> Result<(), StoreError> {
        ctx.conn.execute(
            "INSERT INTO dispatch_cursors (feed, position, updated) VALUES ($1, 0, 0)",
            outflow_store::params![self.feed],
        )?;
        assert!(!self.panics, "a bug in the hook after writing");
        Ok(())
    }

    fn finish(&mut self, kept: bool) {
        self.told.lock().unwrap().push(kept);
    }
}

async fn batch_hook_runs_after_events_and_fails_alone(backend: &str) {
    let db = TestDb::by_name(backend);
    let (store, acct) = open(&db).await;
    let told = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let marker = |feed: &'static str| {
        let s = store.clone();
        async move {
            s.read(move |c| {
                Ok(c.query_opt(
                    "SELECT 1 FROM dispatch_cursors WHERE feed = $1",
                    outflow_store::params![feed],
                )?
                .is_some())
            })
            .await
            .unwrap()
        }
    };
    store.set_batch_hook(Some(Box::new(MarkingHook {
        feed: "panicked",
        panics: true,
        told: told.clone(),
    })));
    let r = ingest(&store, &acct, event("M", email("a@x.co"), Some("1"), 0)).await;
    assert!(r.unwrap().event_id.is_some(), "the event is stored");
    assert_eq!(*told.lock().unwrap(), vec![false]);
    assert!(!marker("panicked").await, "the hook's writes are undone");

    store.set_batch_hook(Some(Box::new(MarkingHook {
        feed: "kept",
        panics: false,
        told: told.clone(),
    })));
    // A batch that stores no event does not call the hook.
    store
        .write(|ctx| Ok(ctx.conn.execute("UPDATE accounts SET name = name", &[])?))
        .await
        .unwrap();
    assert_eq!(told.lock().unwrap().len(), 1);
    ingest(&store, &acct, event("M", email("a@x.co"), Some("2"), 0))
        .await
        .unwrap();
    assert_eq!(*told.lock().unwrap(), vec![false, true]);
    assert!(marker("kept").await);
    let a2 = acct.clone();
    assert_eq!(store.read(move |c| events::count(c, &a2)).await.unwrap(), 2);
}

async fn segment_changes_are_pruned_in_bounded_steps(backend: &str) {
    use outflow_store::segments::{prune_changes, PRUNE_CHANGES};
    let db = TestDb::by_name(backend);
    let (store, acct) = open(&db).await;
    let total: i64 = 25_000;
    store
        .write(move |ctx| {
            for chunk in 0..total / 500 {
                let rows = vec![format!("('{acct}', 's', 'p{chunk}', 1, 1, 0)"); 500].join(", ");
                ctx.conn.execute(
                    &format!("INSERT INTO segment_changes (account_id, segment_id, profile_id, entered, organic, at) VALUES {rows}"),
                    &[],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let count = |s: &Store| {
        let s = s.clone();
        async move {
            s.read(|c| {
                let r = c.query_opt(
                    "SELECT COUNT(*), COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM segment_changes",
                    &[],
                )?;
                let r = r.expect("one row");
                Ok((r.int(0)?, r.int(1)?, r.int(2)?))
            })
            .await
            .unwrap()
        }
    };
    let (n, first, last) = count(&store).await;
    assert_eq!(n, total);
    // Only what the cursor passed goes.
    let upto = first + 99;
    store
        .write(move |ctx| prune_changes(ctx.conn, upto))
        .await
        .unwrap();
    assert_eq!(count(&store).await.0, total - 100);
    // A long backlog goes a bounded step per call.
    let mut calls = 0;
    loop {
        let before = count(&store).await.0;
        if before == 0 {
            break;
        }
        store
            .write(move |ctx| prune_changes(ctx.conn, last))
            .await
            .unwrap();
        let after = count(&store).await.0;
        assert!(before - after <= PRUNE_CHANGES + 1, "{before} -> {after}");
        calls += 1;
    }
    assert_eq!(calls, 3);
}

/// Every change to flows, and every change to segments but their build's
/// progress, moves the table's counter, whatever statement made it.
async fn generations_count_flow_and_segment_changes(backend: &str) {
    use outflow_store::generations::{current, FLOWS, SEGMENTS};
    let db = TestDb::by_name(backend);
    let (store, acct) = open(&db).await;
    let run = |sql: String| {
        let s = store.clone();
        async move {
            s.write(move |ctx| {
                ctx.conn.execute(&sql, &[])?;
                Ok(())
            })
            .await
            .unwrap();
        }
    };
    let now = || {
        let s = store.clone();
        async move {
            s.read(|c| Ok((current(c, FLOWS)?, current(c, SEGMENTS)?)))
                .await
                .unwrap()
        }
    };
    let (f0, s0) = now().await;
    run(format!(
        "INSERT INTO flows (id, account_id, name, status, archived, trigger_type, trigger_ref, version, created, updated) \
         VALUES ('f1', '{acct}', 'a', 'draft', 0, 'metric', 'm', 1, 1, 1)"
    ))
    .await;
    let (f1, s1) = now().await;
    assert!(f1 > f0, "insert: {f0} -> {f1}");
    assert_eq!(s1, s0);
    run("UPDATE flows SET status = 'live' WHERE id = 'f1'".into()).await;
    let (f2, _) = now().await;
    assert!(f2 > f1, "update: {f1} -> {f2}");
    run("DELETE FROM flows WHERE id = 'f1'".into()).await;
    let (f3, _) = now().await;
    assert!(f3 > f2, "delete: {f2} -> {f3}");

    run(format!(
        "INSERT INTO segments (id, account_id, name, definition, created, updated) \
         VALUES ('s1', '{acct}', 's', '{{}}', 1, 1)"
    ))
    .await;
    let (f4, s4) = now().await;
    assert!(s4 > s1, "segment insert: {s1} -> {s4}");
    assert_eq!(f4, f3);
    run(
        "UPDATE segments SET build_after = 'p', swept = 5, built_version = 1 WHERE id = 's1'"
            .into(),
    )
    .await;
    assert_eq!(now().await.1, s4, "build progress is not a change");
    run("UPDATE segments SET definition = '{\"x\": 1}', version = 2 WHERE id = 's1'".into()).await;
    let (_, s5) = now().await;
    assert!(s5 > s4, "definition: {s4} -> {s5}");
    run("UPDATE segments SET is_active = 0 WHERE id = 's1'".into()).await;
    let (_, s6) = now().await;
    assert!(s6 > s5, "deactivated: {s5} -> {s6}");
    run("DELETE FROM segments WHERE id = 's1'".into()).await;
    assert!(now().await.1 > s6, "segment delete");
}

/// Postponing a destination moves only its own unleased pending
/// deliveries due before the new time: not other actions, not other hosts
/// (a `_` in the prefix is not a wildcard), not leased or later ones.
async fn postponing_a_destination_moves_only_its_backlog(backend: &str) {
    use outflow_store::deliveries::{self, postpone_destination, NewDelivery};
    let db = TestDb::by_name(backend);
    let (store, acct) = open(&db).await;
    let now = 1_000_000_000;
    // (action, url, due, leased)
    let cases = [
        ("a", "http://a_b.example/x", now, false),
        ("a", "http://a_b.example/y", now - 5, false),
        ("a", "http://a_b.example/z", now, true),
        ("a", "http://a_b.example/later", now + 10_000_000, false),
        ("a", "http://axb.example/x", now, false),
        ("b", "http://a_b.example/x", now, false),
    ];
    let rows: Vec<NewDelivery> = cases
        .iter()
        .enumerate()
        .map(|(i, (action, url, due, leased))| NewDelivery {
            finishes_run: false,
            run_steps: 0,
            header_pairs: Vec::new(),
            id: format!("d{i}"),
            account_id: acct.clone(),
            run_id: format!("r{i}"),
            flow_id: "f".into(),
            profile_id: "p".into(),
            action_id: (*action).into(),
            url: (*url).into(),
            method: "POST".into(),
            headers: "[]".into(),
            body: "{}".into(),
            response_map: None,
            status: deliveries::status::PENDING.into(),
            last_error: None,
            now: *due,
            lease: leased.then(|| ("w".to_owned(), now + 60_000_000)),
        })
        .collect();
    let until = now + 1_000_000;
    let moved = store
        .write(move |ctx| {
            deliveries::insert_many(ctx.conn, &rows)?;
            postpone_destination(ctx.conn, "f", "a", "http://a_b.example/", until, now)
        })
        .await
        .unwrap();
    assert_eq!(moved, 2);
    let dues = store
        .read(|c| {
            c.query("SELECT id, due FROM deliveries ORDER BY id", &[])?
                .iter()
                .map(|r| Ok((r.text(0)?, r.int(1)?)))
                .collect::<Result<Vec<_>, StoreError>>()
        })
        .await
        .unwrap();
    let moved_ids: Vec<&str> = dues
        .iter()
        .filter(|(_, due)| *due == until)
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(moved_ids, ["d0", "d1"]);
    if backend == "sqlite" {
        // The scan stays on the small pending-due index, not the action's
        // whole history.
        let plan = store
            .read(|c| {
                let sql = deliveries::postpone_statement(c.dialect(), "attempts = 0");
                c.query(
                    &format!("EXPLAIN QUERY PLAN {sql}"),
                    outflow_store::params!["f", "a", "x%", 1, 1],
                )?
                .iter()
                .map(|r| r.text(3))
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::from)
            })
            .await
            .unwrap();
        assert!(
            plan.iter().any(|p| p.contains("deliveries_first_due")),
            "{plan:?}"
        );
    }
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name("sqlite").await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name("postgres").await } )*
        }
    };
}

suite!(
    batch_hook_runs_after_events_and_fails_alone,
    segment_changes_are_pruned_in_bounded_steps,
    generations_count_flow_and_segment_changes,
    postponing_a_destination_moves_only_its_backlog,
    bootstrap_and_authenticate,
    events_create_profiles_and_deduplicate,
    conflicting_identifiers_change_nothing,
    profile_create_duplicate_and_patch,
    lists_membership,
    catalog_keeps_price_history,
    group_commit_isolates_failing_jobs,
    reopening_keeps_data_and_indexes,
    repeated_event_attributes_apply_again_after_a_change,
);

/// A job that changes more than the statement journal's in-memory size
/// (SQLITE_STMTJRNL_SPILL in .cargo/config.toml) commits. The journal then
/// spills to a temp file, writing each in-memory chunk in one call; SQLite's
/// unix VFS writes at most 128 KiB - 1 bytes per call, and with an 8 MB
/// chunk that spill failed as "database or disk is full".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_larger_than_the_statement_journal_commits() {
    let db = TestDb::by_name("sqlite");
    let (store, _) = open(&db).await;
    const ROWS: i64 = 3_000;
    store
        .write(|ctx| {
            ctx.conn
                .batch("CREATE TABLE big_job (id BIGINT PRIMARY KEY, pad TEXT NOT NULL)")?;
            let pad = "a".repeat(3_500);
            for i in 0..ROWS {
                ctx.conn.execute(
                    "INSERT INTO big_job (id, pad) VALUES ($1, $2)",
                    outflow_store::params![i, pad.as_str()],
                )?;
            }
            Ok(())
        })
        .await
        .expect("the rows are written");
    // Every page existed before this job's savepoint, so every one is
    // journaled: about 12 MB.
    let changed = store
        .write(|ctx| {
            Ok(ctx
                .conn
                .execute("UPDATE big_job SET pad = pad || 'b'", &[])?)
        })
        .await
        .expect("a job journaling ~12 MB commits");
    assert_eq!(changed, ROWS as u64);
    let long = store
        .read(|conn| {
            let row =
                conn.query_opt("SELECT COUNT(*) FROM big_job WHERE length(pad) = 3501", &[])?;
            Ok(row.map(|r| r.int(0)).transpose()?.unwrap_or(0))
        })
        .await
        .expect("count");
    assert_eq!(long, ROWS);
}
