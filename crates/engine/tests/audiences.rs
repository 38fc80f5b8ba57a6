//! Acceptance of issue #5 on SQLite and PostgreSQL, moving the clock:
//! segment membership kept current by events, profile changes, list joins
//! and time; the segment trigger (existing members do not enter; leaving
//! and re-entering); add past profiles; price drops.

mod common;

use chrono::Duration;
use common::{env, Env};
use outflow_store::{catalog, segments};
use serde_json::{json, Map, Value};

async fn segment(e: &Env, definition: Value) -> String {
    let (a, now) = (e.account.clone(), e.now());
    e.store
        .write(move |ctx| segments::create(ctx, &a, "test segment", &definition, false, now))
        .await
        .expect("segment")
        .id
}

async fn members(e: &Env, sid: &str) -> Vec<String> {
    let (a, s) = (e.account.clone(), sid.to_owned());
    let mut ids: Vec<String> = e
        .store
        .read(move |c| segments::members(c, &a, &s, None, 1000))
        .await
        .expect("members")
        .into_iter()
        .map(|m| m.profile.id)
        .collect();
    ids.sort();
    ids
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn groups(conditions: Value) -> Value {
    json!({"condition_groups": [{"conditions": conditions}]})
}

fn prop(key: &str, op: &str, value: Value) -> Value {
    json!({"type": "profile-property", "property": format!("properties['{key}']"),
           "filter": {"type": "string", "operator": op, "value": value}})
}

fn metric_count(metric: &str, op: &str, n: f64, timeframe: Value) -> Value {
    json!({"type": "profile-metric", "metric_id": metric, "measurement": "count",
           "measurement_filter": {"type": "numeric", "operator": op, "value": n},
           "timeframe_filter": timeframe})
}

fn in_the_last(days: i64) -> Value {
    json!({"type": "date", "operator": "in-the-last", "quantity": days, "unit": "day"})
}

fn mark(key: &str) -> Value {
    json!({"id": "1", "type": "update-profile", "links": {"next": null},
           "data": {"status": "live", "profile_operations": [
               {"operator": "update", "property_type": "string", "property_key": key, "property_value": "yes"}]}})
}

async fn property_conditions(backend: &str) {
    let e = env(backend).await;
    let vip = e.profile("vip@x.io", json!({"Tier": "Gold"})).await;
    let other = e.profile("o@x.io", json!({"Tier": "Silver"})).await;
    let s = segment(&e, groups(json!([prop("Tier", "equals", json!("gold"))]))).await;
    e.settle().await;
    assert_eq!(
        members(&e, &s).await,
        vec![vip.clone()],
        "built over existing profiles"
    );
    e.set_properties(&other, json!({"Tier": "Gold"})).await;
    e.set_properties(&vip, json!({"Tier": "Bronze"})).await;
    let t = e.settle().await;
    assert!(t.audiences.segments.items >= 2);
    assert_eq!(
        members(&e, &s).await,
        vec![other.clone()],
        "joins and leaves follow edits"
    );
    // A new profile is evaluated against every segment.
    let fresh = e.profile("n@x.io", json!({"Tier": "gold"})).await;
    e.settle().await;
    assert_eq!(members(&e, &s).await, sorted(vec![other, fresh]));
}

async fn metric_conditions(backend: &str) {
    let e = env(backend).await;
    let m = e.metric("Placed Order").await;
    let (a, b, c) = (
        e.profile("a@x.io", json!({})).await,
        e.profile("b@x.io", json!({})).await,
        e.profile("c@x.io", json!({})).await,
    );
    // Two orders in the last 30 days, or a lifetime sum of at least 100 on
    // orders from the web store.
    let twice = metric_count(&m, "greater-than-or-equal", 2.0, in_the_last(30));
    let big = json!({"type": "profile-metric", "metric_id": m, "measurement": "sum",
        "measurement_filter": {"type": "numeric", "operator": "greater-than-or-equal", "value": 100},
        "timeframe_filter": {"type": "date", "operator": "alltime"},
        "metric_filters": [{"property": "Source", "filter": {"type": "string", "operator": "equals", "value": "web"}}]});
    let s = segment(&e, groups(json!([twice, big]))).await;
    e.settle().await;
    assert!(members(&e, &s).await.is_empty());
    e.event(&m, &a, json!({"$value": 10}), false).await;
    e.event(&m, &a, json!({"$value": 10}), false).await;
    e.event(&m, &b, json!({"$value": 150, "Source": "pos"}), false)
        .await;
    e.event(&m, &c, json!({"$value": 150, "Source": "web"}), false)
        .await;
    e.settle().await;
    assert_eq!(members(&e, &s).await, sorted(vec![a.clone(), c.clone()]));
    // An event of another metric re-evaluates nothing.
    let other = e.metric("Viewed Page").await;
    e.event(&other, &b, json!({}), false).await;
    let t = e.settle().await;
    assert_eq!(t.audiences.segments.changes, 0);
    // The window slides: 31 days later a's orders are too old.
    e.clock.advance(Duration::days(31));
    e.settle().await;
    assert_eq!(
        members(&e, &s).await,
        vec![c],
        "a left as its orders aged out"
    );
}

async fn group_conditions(backend: &str) {
    let e = env(backend).await;
    let l = e.list("Newsletter").await;
    let (a, b) = (
        e.profile("a@x.io", json!({"Tier": "Gold"})).await,
        e.profile("b@x.io", json!({"Tier": "Gold"})).await,
    );
    let gold = segment(&e, groups(json!([prop("Tier", "equals", json!("Gold"))]))).await;
    // Gold and on the list, and (a segment of segments) gold but not subscribed.
    let both = segment(&e, json!({"condition_groups": [
        {"conditions": [{"type": "profile-group-membership", "is_member": true, "group_ids": [gold]}]},
        {"conditions": [{"type": "profile-group-membership", "is_member": true, "group_ids": [l]}]}]}))
    .await;
    let not_on_list = segment(&e, json!({"condition_groups": [
        {"conditions": [{"type": "profile-group-membership", "is_member": true, "group_ids": [gold]}]},
        {"conditions": [{"type": "profile-group-membership", "is_member": false, "group_ids": [l]}]}]}))
    .await;
    e.settle().await;
    assert!(members(&e, &both).await.is_empty());
    assert_eq!(
        members(&e, &not_on_list).await,
        sorted(vec![a.clone(), b.clone()])
    );
    e.join(&l, &a, false).await;
    e.settle().await;
    assert_eq!(members(&e, &both).await, vec![a.clone()]);
    assert_eq!(members(&e, &not_on_list).await, vec![b.clone()]);
    // Leaving the list, and leaving the inner segment, cascade.
    e.sql(
        "DELETE FROM list_members WHERE profile_id = $1",
        vec![a.clone().into()],
    )
    .await;
    e.set_properties(&b, json!({"Tier": "Silver"})).await;
    e.settle().await;
    assert!(members(&e, &both).await.is_empty());
    assert_eq!(members(&e, &not_on_list).await, vec![a]);
    assert_eq!(members(&e, &gold).await.len(), 1);
}

async fn segment_trigger(backend: &str) {
    let e = env(backend).await;
    let existing = e.profile("old@x.io", json!({"VIP": "yes"})).await;
    let s = segment(&e, groups(json!([prop("VIP", "equals", json!("yes"))]))).await;
    e.settle().await;
    let f = e
        .flow(
            "live",
            ("segment", &s),
            json!({"triggers": [{"type": "segment", "id": s}], "actions": [mark("welcomed")],
                   "entry_action_id": "1"}),
        )
        .await;
    e.settle().await;
    // A profile that was a member before the flow went live does not enter,
    // even when a later edit keeps it in the segment.
    e.set_properties(&existing, json!({"VIP": "yes", "x": 1}))
        .await;
    let newcomer = e.profile("new@x.io", json!({})).await;
    e.settle().await;
    assert!(e.runs_of_flow(&f).await.is_empty());
    e.set_properties(&newcomer, json!({"VIP": "yes"})).await;
    e.settle().await;
    let runs = e.runs_of_flow(&f).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].profile_id, newcomer);
    assert_eq!(runs[0].state, "done");
    assert_eq!(e.properties(&newcomer).await["welcomed"], "yes");
    // Leave, then re-enter: a new entry.
    e.set_properties(&newcomer, json!({"VIP": "no"})).await;
    e.settle().await;
    assert_eq!(e.runs_of_flow(&f).await.len(), 1);
    // Dispatched changes are pruned; the next join still gets a higher seq.
    assert_eq!(e.count("SELECT COUNT(*) FROM segment_changes").await, 0);
    e.set_properties(&newcomer, json!({"VIP": "yes"})).await;
    e.settle().await;
    assert_eq!(e.runs_of_flow(&f).await.len(), 2);
    // Editing the definition never triggers the flow.
    let third = e.profile("t@x.io", json!({"VIP": "maybe"})).await;
    e.settle().await;
    let (a, sid) = (e.account.clone(), s.clone());
    let now = e.now();
    e.store
        .write(move |ctx| {
            let change = segments::SegmentChange {
                definition: Some(groups(json!([prop("VIP", "in", json!(["yes", "maybe"]))]))),
                ..Default::default()
            };
            segments::update(ctx, &a, &sid, &change, now)
        })
        .await
        .expect("update");
    e.settle().await;
    assert!(members(&e, &s).await.contains(&third));
    assert_eq!(e.runs_of_flow(&f).await.len(), 2);
    assert_eq!(e.count("SELECT COUNT(*) FROM segment_changes").await, 0);
}

async fn sliding_window_joins_trigger(backend: &str) {
    let e = env(backend).await;
    let m = e.metric("Placed Order").await;
    let p = e.profile("lapsed@x.io", json!({})).await;
    e.event(&m, &p, json!({}), false).await;
    // Has ordered, but not in the last 7 days: "lapsed".
    let s = segment(&e, json!({"condition_groups": [
        {"conditions": [metric_count(&m, "greater-than", 0.0, json!({"type": "date", "operator": "alltime"}))]},
        {"conditions": [metric_count(&m, "equals", 0.0, in_the_last(7))]}]}))
    .await;
    e.settle().await;
    let f = e
        .flow(
            "live",
            ("segment", &s),
            json!({"triggers": [{"type": "segment", "id": s}], "actions": [mark("winback")],
                   "entry_action_id": "1"}),
        )
        .await;
    e.settle().await;
    assert!(members(&e, &s).await.is_empty());
    e.clock.advance(Duration::days(3));
    e.settle().await;
    assert!(members(&e, &s).await.is_empty());
    e.clock.advance(Duration::days(5));
    e.settle().await;
    assert_eq!(members(&e, &s).await, vec![p.clone()]);
    let runs = e.runs_of_flow(&f).await;
    assert_eq!(runs.len(), 1, "joining as time passes is organic");
    // A new order takes the profile out again.
    e.event(&m, &p, json!({}), false).await;
    e.settle().await;
    assert!(members(&e, &s).await.is_empty());
}

async fn add_past_profiles(backend: &str) {
    let e = env(backend).await;
    let (a, b, c) = (
        e.profile("a@x.io", json!({"VIP": "yes"})).await,
        e.profile("b@x.io", json!({"VIP": "yes"})).await,
        e.profile("c@x.io", json!({"VIP": "no"})).await,
    );
    let s = segment(&e, groups(json!([prop("VIP", "equals", json!("yes"))]))).await;
    e.settle().await;
    let f = e
        .flow(
            "live",
            ("segment", &s),
            json!({"triggers": [{"type": "segment", "id": s}], "actions": [mark("added")],
                   "entry_action_id": "1"}),
        )
        .await;
    e.settle().await;
    assert!(e.runs_of_flow(&f).await.is_empty());
    let (acc, fid, now) = (e.account.clone(), f.clone(), e.now());
    let req = e
        .store
        .write(move |ctx| segments::request_backfill(ctx.conn, &acc, &fid, now))
        .await
        .expect("request");
    e.settle().await;
    let mut got: Vec<String> = e
        .runs_of_flow(&f)
        .await
        .into_iter()
        .map(|r| r.profile_id)
        .collect();
    got.sort();
    assert_eq!(got, sorted(vec![a, b]));
    assert_eq!(e.properties(&c).await.get("added"), None);
    let id = req.id.clone();
    let done = e
        .store
        .read(move |c| segments::get_backfill(c, &id))
        .await
        .expect("read")
        .expect("exists");
    assert_eq!((done.status.as_str(), done.enrolled), ("done", 2));
}

async fn catalog_item(e: &Env, sku: &str, price: f64) -> String {
    let (a, now, sku) = (e.account.clone(), e.now(), sku.to_owned());
    let mut attrs = Map::new();
    attrs.insert("title".into(), json!("Blue Mug"));
    attrs.insert("price".into(), json!(price));
    attrs.insert("url".into(), json!("https://shop.example/mug"));
    e.store
        .write(move |ctx| catalog::create(ctx, &a, &sku, "$custom", "$default", attrs, now))
        .await
        .expect("item")
        .id
}

async fn set_price(e: &Env, item: &str, price: f64) {
    let (a, now, id) = (e.account.clone(), e.now(), item.to_owned());
    let mut ch = Map::new();
    ch.insert("price".into(), json!(price));
    e.store
        .write(move |ctx| catalog::update(ctx, &a, &id, &ch, now))
        .await
        .expect("price");
}

fn price_drop_flow(amount: f64, unit: &str, audience: Value) -> Value {
    json!({"triggers": [{"type": "price-drop", "price_drop_amount_value": amount,
        "price_drop_amount_unit": unit, "audience": audience, "timeframe_days": 30,
        "trigger_filter": {"condition_groups": [{"conditions": [{"type": "price-drop-property",
            "field": "catalog_item.title", "filter": {"type": "string", "operator": "contains", "value": "mug"}}]}]}}],
        "actions": [mark("told")], "entry_action_id": "1"})
}

async fn price_drop(backend: &str) {
    let e = env(backend).await;
    let viewed = e.metric("Viewed Product").await;
    let checkout = e.metric("Started Checkout").await;
    let item = catalog_item(&e, "MUG1", 20.0).await;
    let (old_viewer, viewer, buyer, stranger) = (
        e.profile("old@x.io", json!({})).await,
        e.profile("v@x.io", json!({})).await,
        e.profile("b@x.io", json!({})).await,
        e.profile("s@x.io", json!({})).await,
    );
    e.event(&viewed, &old_viewer, json!({"ProductID": "MUG1"}), false)
        .await;
    e.clock.advance(Duration::days(40));
    e.event(&viewed, &viewer, json!({"ProductID": "MUG1"}), false)
        .await;
    e.event(
        &checkout,
        &buyer,
        json!({"Items": [{"ProductID": "MUG1"}]}),
        false,
    )
    .await;
    e.event(&viewed, &stranger, json!({"ProductID": "OTHER"}), false)
        .await;
    let by_amount = e
        .flow(
            "live",
            ("price-drop", ""),
            price_drop_flow(5.0, "currency", json!(["viewed"])),
        )
        .await;
    let by_percent = e
        .flow(
            "live",
            ("price-drop", ""),
            price_drop_flow(30.0, "percent", json!(["viewed", "checkout-started"])),
        )
        .await;
    e.settle().await;
    // 20 → 16: 4 off (20 %): neither threshold.
    set_price(&e, &item, 16.0).await;
    e.settle().await;
    assert!(e.runs_of_flow(&by_amount).await.is_empty());
    assert!(e.runs_of_flow(&by_percent).await.is_empty());
    // 16 → 10: 6 off (37.5 %): both; only views inside the 30 days count.
    e.clock.advance(Duration::days(1));
    set_price(&e, &item, 10.0).await;
    e.settle().await;
    let a = e.runs_of_flow(&by_amount).await;
    assert_eq!(
        a.iter().map(|r| r.profile_id.clone()).collect::<Vec<_>>(),
        vec![viewer.clone()]
    );
    let ctx = a[0].event.clone().expect("trigger context");
    assert_eq!(ctx["catalog_item"]["title"], "Blue Mug");
    assert_eq!(ctx["catalog_item"]["old_price"], 16.0);
    assert_eq!(ctx["catalog_item"]["new_price"], 10.0);
    let mut p: Vec<String> = e
        .runs_of_flow(&by_percent)
        .await
        .into_iter()
        .map(|r| r.profile_id)
        .collect();
    p.sort();
    assert_eq!(p, sorted(vec![viewer.clone(), buyer.clone()]));
    assert_eq!(e.properties(&old_viewer).await.get("told"), None);
    assert_eq!(e.properties(&stranger).await.get("told"), None);
    // A price rise starts nothing.
    set_price(&e, &item, 30.0).await;
    e.settle().await;
    assert_eq!(e.runs_of_flow(&by_amount).await.len(), 1);
}

async fn date_and_numeric_property_conditions(backend: &str) {
    let e = env(backend).await;
    // Today is 2 March 2026. Birthday today and older than 30, or a
    // birthday within the next 7 days.
    let (today, soon, young, later) = (
        e.profile("t@x.io", json!({"Birthday": "1980-03-02", "Age": 46}))
            .await,
        e.profile("s@x.io", json!({"Birthday": "1990-03-05", "Age": 36}))
            .await,
        e.profile("y@x.io", json!({"Birthday": "2010-03-02", "Age": 16}))
            .await,
        e.profile("l@x.io", json!({"Birthday": "1985-03-20", "Age": 41}))
            .await,
    );
    let s = segment(
        &e,
        json!({"condition_groups": [{"conditions": [
        {"type": "profile-property", "property": "properties['Birthday']",
         "filter": {"type": "date", "operator": "anniversary-next", "quantity": 7, "unit": "day"}},
        {"type": "profile-property", "property": "properties['Birthday']",
         "filter": {"type": "date", "operator": "anniversary"}}]},
        {"conditions": [{"type": "profile-property", "property": "properties['Age']",
         "filter": {"type": "numeric", "operator": "greater-than", "value": 30}}]}]}),
    )
    .await;
    e.settle().await;
    assert_eq!(
        members(&e, &s).await,
        sorted(vec![today.clone(), soon.clone()])
    );
    let f = e
        .flow(
            "live",
            ("segment", &s),
            json!({"triggers": [{"type": "segment", "id": s}], "actions": [mark("wished")],
                   "entry_action_id": "1"}),
        )
        .await;
    e.settle().await;
    // As days pass, the daily re-evaluation moves people in and out, and
    // those who come in enter the flow.
    e.clock.advance(Duration::days(14));
    e.settle().await;
    assert_eq!(members(&e, &s).await, vec![later.clone()]);
    assert_eq!(ran(&e, &f).await, vec![later]);
    assert_eq!(e.properties(&young).await.get("wished"), None);
}

async fn price_drop_webhook_sees_catalog_item(backend: &str) {
    let e = env(backend).await;
    let rx = common::receiver(200).await;
    let viewed = e.metric("Viewed Product").await;
    let item = catalog_item(&e, "MUG9", 40.0).await;
    let p = e.profile("v@x.io", json!({})).await;
    e.event(&viewed, &p, json!({"ProductID": "MUG9"}), false)
        .await;
    let body = "{\"title\": \"{{ catalog_item.title }}\", \"was\": {{ catalog_item.old_price }}, \"now\": {{ catalog_item.new_price }}, \"email\": \"{{ person.email }}\"}";
    e.flow(
        "live",
        ("price-drop", ""),
        json!({"triggers": [{"type": "price-drop", "price_drop_amount_value": 10,
            "price_drop_amount_unit": "percent", "audience": ["viewed"]}],
            "actions": [{"id": "1", "type": "send-webhook", "links": {"next": null},
                "data": {"status": "live", "message": {"url": rx.url, "body": body}}}],
            "entry_action_id": "1"}),
    )
    .await;
    e.settle().await;
    set_price(&e, &item, 30.0).await;
    e.settle().await;
    let got = rx.got.lock().expect("lock").clone();
    assert_eq!(got.len(), 1);
    let sent: Value = serde_json::from_str(&got[0].1).expect("json body");
    assert_eq!(
        sent,
        json!({"title": "Blue Mug", "was": 40.0, "now": 30.0, "email": "v@x.io"})
    );
}

async fn flow_filters_read_segment_membership(backend: &str) {
    let e = env(backend).await;
    let m = e.metric("Placed Order").await;
    let (vip, other) = (
        e.profile("v@x.io", json!({"VIP": "yes"})).await,
        e.profile("o@x.io", json!({})).await,
    );
    let s = segment(&e, groups(json!([prop("VIP", "equals", json!("yes"))]))).await;
    e.settle().await;
    // A metric flow whose profile filter is membership of the segment.
    let f = e
        .flow(
            "live",
            ("metric", &m),
            json!({"triggers": [{"type": "metric", "id": m}],
                   "profile_filter": {"condition_groups": [{"conditions": [
                       {"type": "profile-group-membership", "is_member": true, "group_ids": [s]}]}]},
                   "actions": [mark("vip_order")], "entry_action_id": "1"}),
        )
        .await;
    e.event(&m, &vip, json!({}), false).await;
    e.event(&m, &other, json!({}), false).await;
    e.settle().await;
    assert_eq!(ran(&e, &f).await, vec![vip]);
}

/// A split reached after a delay (a claimed run, not a new one) reads the
/// list membership as it is at the split, not as it was at entry.
async fn split_after_a_delay_reads_list_membership(backend: &str) {
    let e = env(backend).await;
    let m = e.metric("Placed Order").await;
    let l = e.list("Newsletter").await;
    let (joins, stays_out) = (
        e.profile("j@x.io", json!({})).await,
        e.profile("o@x.io", json!({})).await,
    );
    let mut on = mark("on_list");
    on["id"] = json!("3");
    let mut off = mark("off_list");
    off["id"] = json!("4");
    e.flow(
        "live",
        ("metric", &m),
        json!({"triggers": [{"type": "metric", "id": m}],
               "actions": [
                   {"id": "1", "type": "time-delay", "links": {"next": "2"},
                    "data": {"unit": "days", "value": 1}},
                   {"id": "2", "type": "conditional-split",
                    "links": {"next_if_true": "3", "next_if_false": "4"},
                    "data": {"profile_filter": {"condition_groups": [{"conditions": [
                        {"type": "profile-group-membership", "is_member": true, "group_ids": [l]}]}]}}},
                   on, off],
               "entry_action_id": "1"}),
    )
    .await;
    e.event(&m, &joins, json!({}), false).await;
    e.event(&m, &stays_out, json!({}), false).await;
    e.settle().await;
    e.join(&l, &joins, false).await;
    e.clock.advance(Duration::days(2));
    e.settle().await;
    let joined = e.properties(&joins).await;
    assert_eq!(joined["on_list"], "yes", "{joined}");
    assert!(joined.get("off_list").is_none(), "{joined}");
    let out = e.properties(&stays_out).await;
    assert_eq!(out["off_list"], "yes", "{out}");
    assert!(out.get("on_list").is_none(), "{out}");
}

async fn region_conditions(backend: &str) {
    let e = env(backend).await;
    let (berlin, boston) = (
        e.profile("b@x.io", json!({})).await,
        e.profile("o@x.io", json!({})).await,
    );
    for (pid, country) in [(&berlin, "Germany"), (&boston, "United States")] {
        e.sql(
            "UPDATE profiles SET attributes = $2 WHERE id = $1",
            vec![
                pid.clone().into(),
                json!({"location": {"country": country}}).to_string().into(),
            ],
        )
        .await;
    }
    let eu = segment(
        &e,
        groups(json!([{"type": "profile-region", "in_region": true, "region": "european_union"}])),
    )
    .await;
    let not_us = segment(
        &e,
        groups(json!([{"type": "profile-region", "in_region": false, "region": "united_states"}])),
    )
    .await;
    e.settle().await;
    assert_eq!(members(&e, &eu).await, vec![berlin.clone()]);
    assert_eq!(members(&e, &not_us).await, vec![berlin.clone()]);
    // Moving country is a profile change like any other.
    e.sql(
        "UPDATE profiles SET attributes = $2 WHERE id = $1",
        vec![
            boston.clone().into(),
            json!({"location": {"country": "IE"}}).to_string().into(),
        ],
    )
    .await;
    e.settle().await;
    assert_eq!(members(&e, &eu).await, sorted(vec![berlin, boston]));
}

fn date_flow(
    property: &str,
    days_before: i64,
    recurrence: &str,
    timezone: &str,
    time: &str,
) -> Value {
    json!({"triggers": [{"type": "date", "date_field_type": "profile-property",
        "date_profile_property": property, "timedelta_unit_before_date": "days",
        "timedelta_value_before_date": days_before, "recurrence_frequency": recurrence,
        "timezone": timezone, "trigger_time": time}],
        "actions": [mark("dated")], "entry_action_id": "1"})
}

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("time")
        .to_utc()
}

async fn ran(e: &Env, f: &str) -> Vec<String> {
    sorted(
        e.runs_of_flow(f)
            .await
            .into_iter()
            .map(|r| r.profile_id)
            .collect(),
    )
}

async fn date_trigger_across_dst(backend: &str) {
    let e = env(backend).await;
    // Profiles that exist before the flow are indexed by its build.
    let spring = e
        .profile("s@x.io", json!({"Anniversary": "2010-03-31"}))
        .await;
    let winter = e
        .profile("w@x.io", json!({"Anniversary": "2010-03-30"}))
        .await;
    let f = e
        .flow(
            "live",
            ("date", ""),
            date_flow("Anniversary", 2, "annually", "Europe/Berlin", "09:00"),
        )
        .await;
    e.settle().await;
    // 2 days before 30 March is 28 March, still CET: 09:00 is 08:00 UTC.
    e.clock.set(at("2026-03-28T07:59:00Z"));
    e.settle().await;
    assert!(ran(&e, &f).await.is_empty());
    e.clock.set(at("2026-03-28T08:01:00Z"));
    e.settle().await;
    assert_eq!(ran(&e, &f).await, vec![winter.clone()]);
    // 29 March is the switch to CEST: 09:00 is 07:00 UTC.
    e.clock.set(at("2026-03-29T06:59:00Z"));
    e.settle().await;
    assert_eq!(ran(&e, &f).await, vec![winter.clone()]);
    e.clock.set(at("2026-03-29T07:01:00Z"));
    e.settle().await;
    assert_eq!(
        ran(&e, &f).await,
        sorted(vec![winter.clone(), spring.clone()])
    );
    // Settling again fires nothing twice; a year later both come round.
    e.settle().await;
    assert_eq!(e.runs_of_flow(&f).await.len(), 2);
    e.clock.set(at("2027-03-29T07:01:00Z"));
    e.settle().await;
    assert_eq!(e.runs_of_flow(&f).await.len(), 4);
}

async fn date_trigger_on_29_february(backend: &str) {
    let e = env(backend).await;
    let f = e
        .flow(
            "live",
            ("date", ""),
            date_flow("Birthday", 0, "annually", "profile", "10:00"),
        )
        .await;
    e.settle().await;
    // Created after the flow: indexed from the change feed. A date without a
    // time is the same calendar day in New York (not midnight UTC).
    let p = e
        .profile(
            "leap@x.io",
            json!({"Birthday": "2004-02-29", "$timezone": "America/New_York"}),
        )
        .await;
    e.settle().await;
    // 2027 is a common year: 28 February, 10:00 in New York (15:00 UTC).
    e.clock.set(at("2027-02-28T14:59:00Z"));
    e.settle().await;
    assert!(ran(&e, &f).await.is_empty());
    e.clock.set(at("2027-02-28T15:01:00Z"));
    e.settle().await;
    assert_eq!(ran(&e, &f).await, vec![p.clone()]);
    // 2028 is a leap year: not on the 28th, on the 29th.
    e.clock.set(at("2028-02-28T16:00:00Z"));
    e.settle().await;
    assert_eq!(e.runs_of_flow(&f).await.len(), 1);
    e.clock.set(at("2028-02-29T15:01:00Z"));
    e.settle().await;
    assert_eq!(e.runs_of_flow(&f).await.len(), 2);
}

async fn date_trigger_rechecks_changed_dates(backend: &str) {
    let e = env(backend).await;
    let f = e
        .flow(
            "live",
            ("date", ""),
            date_flow("Renewal", 1, "never", "UTC", "09:00"),
        )
        .await;
    let (soon, later, none) = (
        e.profile("soon@x.io", json!({})).await,
        e.profile("later@x.io", json!({})).await,
        e.profile("none@x.io", json!({})).await,
    );
    e.settle().await;
    // Now is 2 March 10:00 UTC. Renewal tomorrow: its firing (today 09:00)
    // has passed, so the profile enters as soon as the date is set.
    e.set_properties(&soon, json!({"Renewal": "2026-03-03"}))
        .await;
    e.set_properties(&later, json!({"Renewal": "2026-03-10"}))
        .await;
    e.set_properties(&none, json!({"Renewal": "not a date"}))
        .await;
    e.settle().await;
    assert_eq!(ran(&e, &f).await, vec![soon.clone()]);
    // "never" fires once, on the day before, at 09:00.
    e.clock.set(at("2026-03-09T09:01:00Z"));
    e.settle().await;
    assert_eq!(ran(&e, &f).await, sorted(vec![soon, later]));
    e.clock.set(at("2027-03-09T09:01:00Z"));
    e.settle().await;
    assert_eq!(e.runs_of_flow(&f).await.len(), 2);
}

on_both!(
    property_conditions,
    metric_conditions,
    group_conditions,
    segment_trigger,
    sliding_window_joins_trigger,
    add_past_profiles,
    price_drop,
    price_drop_webhook_sees_catalog_item,
    date_trigger_across_dst,
    date_trigger_on_29_february,
    date_trigger_rechecks_changed_dates,
    date_and_numeric_property_conditions,
    flow_filters_read_segment_membership,
    split_after_a_delay_reads_list_membership,
    region_conditions,
);
