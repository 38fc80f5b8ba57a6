//! The flows store, on SQLite and PostgreSQL alike.

use outflow_core::flow::FlowDefinition;
use outflow_store::flows::{self, FlowChange};
use outflow_store::{accounts, Store, StoreError};
use outflow_testkit::TestDb;
use serde_json::{json, Value};

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

fn definition(delay_days: i64) -> Value {
    json!({
        "triggers": [{"type": "metric", "id": "M1"}],
        "actions": [
            {"temporary_id": "wait", "type": "time-delay", "links": {"next": "hook"},
             "data": {"unit": "days", "value": delay_days}},
            {"temporary_id": "hook", "type": "send-webhook", "links": {"next": null},
             "data": {"status": "live", "message": {"url": "https://example.com/h", "headers": {}, "body": "{}"}}}
        ],
        "entry_action_id": "wait"
    })
}

fn parse(v: Value) -> FlowDefinition {
    FlowDefinition::parse(v, "").expect("definition parses")
}

async fn create(store: &Store, account: &str, def: Value) -> (flows::Flow, Value) {
    let account = account.to_owned();
    store
        .write(move |ctx| flows::create(ctx, &account, "Welcome", "live", parse(def), NOW))
        .await
        .expect("store")
        .expect("no foreign ids")
}

async fn create_version_and_delete(backend: &str) {
    let db = TestDb::by_name(backend);
    let (store, account) = open(&db).await;
    let (flow, stored) = create(&store, &account, definition(1)).await;
    assert_eq!(flow.version, 1);
    assert_eq!(flow.trigger_type, "metric");
    assert_eq!(flow.trigger_ref.as_deref(), Some("M1"));
    // Ids are numeric, unique, and replace the temporary ids everywhere.
    let ids: Vec<String> = stored["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().all(|i| i.parse::<i64>().is_ok()), "{ids:?}");
    assert_ne!(ids[0], ids[1]);
    assert!(!stored.to_string().contains("temporary_id"), "{stored}");
    assert_eq!(stored["entry_action_id"], ids[0].as_str());
    assert_eq!(stored["actions"][0]["links"]["next"], ids[1].as_str());

    // The engine's read side sees it.
    let (a, fid) = (account.clone(), flow.id.clone());
    let listening = store
        .read(move |c| flows::listening(c, &a, "metric", "M1"))
        .await
        .expect("listening");
    assert_eq!(listening.len(), 1);
    assert_eq!(listening[0].flow_id, fid);

    // A second flow's actions never reuse an id.
    let (_, other) = create(&store, &account, definition(1)).await;
    for a in other["actions"].as_array().expect("actions") {
        assert!(!ids.contains(&a["id"].as_str().expect("id").to_owned()));
    }

    // The same definition again: no new version.
    let (a, id, same) = (account.clone(), flow.id.clone(), stored.clone());
    let (f, _) = store
        .write(move |ctx| {
            let change = FlowChange {
                definition: Some(parse(same)),
                ..FlowChange::default()
            };
            flows::update(ctx, &a, &id, change, NOW + 1)
        })
        .await
        .expect("store")
        .expect("known ids");
    assert_eq!(f.version, 1);

    // A changed delay: version 2, old version kept.
    let mut changed = stored.clone();
    changed["actions"][0]["data"]["value"] = json!(3);
    changed["actions"].as_array_mut().expect("actions").push(
        json!({"temporary_id": "new", "type": "time-delay", "links": {"next": null},
                     "data": {"unit": "hours", "value": 1}}),
    );
    changed["actions"][1]["links"]["next"] = json!("new");
    let (a, id) = (account.clone(), flow.id.clone());
    let (f, v2) = store
        .write(move |ctx| {
            let change = FlowChange {
                status: Some("manual".into()),
                definition: Some(parse(changed)),
                ..FlowChange::default()
            };
            flows::update(ctx, &a, &id, change, NOW + 2)
        })
        .await
        .expect("store")
        .expect("known ids");
    assert_eq!((f.version, f.status.as_str()), (2, "manual"));
    assert_eq!(v2["actions"][0]["data"]["value"], 3);
    let id = flow.id.clone();
    let all = store
        .read(move |c| flows::versions(c, &id))
        .await
        .expect("versions");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].1["actions"][0]["data"]["value"], 1);
    assert_eq!(all[1].1["actions"][0]["data"]["value"], 3);
    let id = flow.id.clone();
    let old = store
        .read(move |c| flows::version(c, &id, 1))
        .await
        .expect("version 1")
        .expect("kept");
    // Kept as it was, but for the actions' status: the flow's status is
    // every action's, in every version.
    let mut want = stored.clone();
    want["actions"][1]["data"]["status"] = json!("manual");
    assert_eq!(old, want);
    assert_eq!(v2["actions"][1]["data"]["status"], "manual");
    // The action table follows the current version: three actions, the
    // changed one updated, the untouched one not.
    let (a, id) = (account.clone(), flow.id.clone());
    let actions = store
        .read(move |c| flows::actions(c, &a, &id))
        .await
        .expect("actions");
    assert_eq!(actions.len(), 3);
    let by_id = |i: &str| actions.iter().find(|x| x.id == i).expect("action");
    assert_eq!(by_id(&ids[0]).updated, NOW + 2);
    assert_eq!(by_id(&ids[1]).updated, NOW + 2, "its link changed");

    // An id that is not this flow's is refused, with its position.
    let mut foreign = stored.clone();
    foreign["actions"][0]["id"] = json!("999999999");
    let (a, id) = (account.clone(), flow.id.clone());
    let refused = store
        .write(move |ctx| {
            let change = FlowChange {
                definition: Some(parse(foreign)),
                ..FlowChange::default()
            };
            flows::update(ctx, &a, &id, change, NOW + 3)
        })
        .await
        .expect("store");
    assert_eq!(refused.err().map(|e| e.index), Some(0));

    // Delete takes versions and actions with it.
    let (a, id) = (account.clone(), flow.id.clone());
    store
        .write(move |ctx| flows::delete(ctx, &a, &id))
        .await
        .expect("deleted");
    let (a, id) = (account.clone(), flow.id.clone());
    assert!(store
        .read(move |c| flows::get(c, &a, &id))
        .await
        .expect("get")
        .is_none());
    let (a, aid) = (account.clone(), ids[0].clone());
    assert!(store
        .read(move |c| flows::action(c, &a, &aid))
        .await
        .expect("action")
        .is_none());
    let (a, id) = (account.clone(), flow.id.clone());
    let again = store.write(move |ctx| flows::delete(ctx, &a, &id)).await;
    assert!(matches!(again, Err(StoreError::NotFound(_))));
}

async fn trigger_columns_follow_the_trigger(backend: &str) {
    let db = TestDb::by_name(backend);
    let (store, account) = open(&db).await;
    let cases = [
        (json!({"type": "list", "id": "L1"}), "list", Some("L1")),
        (
            json!({"type": "segment", "id": "S1"}),
            "segment",
            Some("S1"),
        ),
        (
            json!({"type": "date", "date_profile_property": "Birthday", "timedelta_value_before_date": 0,
                   "trigger_time": "09:00"}),
            "date",
            None,
        ),
    ];
    for (trigger, ty, reference) in cases {
        let def = json!({"triggers": [trigger], "actions": [], "entry_action_id": null});
        let (flow, _) = create(&store, &account, def).await;
        assert_eq!(flow.trigger_type, ty);
        assert_eq!(flow.trigger_ref.as_deref(), reference);
    }
    let a = account.clone();
    let by_list = store
        .read(move |c| flows::triggered_by(c, &a, "list", "L1"))
        .await
        .expect("triggered_by");
    assert_eq!(by_list.len(), 1);
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
    create_version_and_delete,
    trigger_columns_follow_the_trigger
);
