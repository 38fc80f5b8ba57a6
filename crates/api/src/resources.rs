//! Domain values rendered as Klaviyo's JSON:API resource objects.

use crate::jsonapi::{RequestUrl, Resource};
use chrono::{DateTime, SecondsFormat, Utc};
use outflow_core::profile::{Profile, LOCATION_FIELDS};
use outflow_store::catalog::CatalogItem;
use outflow_store::events::Event;
use outflow_store::lists::List;
use outflow_store::metrics::Metric;
use serde_json::{json, Map, Value};

/// Klaviyo's datetime form: `2022-11-08T00:00:00+00:00`.
pub fn datetime(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

pub fn profile_attributes(p: &Profile, with_subscriptions: bool) -> Map<String, Value> {
    let mut a = Map::new();
    a.insert("email".into(), json!(p.email));
    a.insert("phone_number".into(), json!(p.phone_number));
    a.insert("external_id".into(), json!(p.external_id));
    a.insert("anonymous_id".into(), json!(p.anonymous_id));
    for k in [
        "first_name",
        "last_name",
        "organization",
        "locale",
        "title",
        "image",
    ] {
        a.insert(
            k.into(),
            p.attributes.get(k).cloned().unwrap_or(Value::Null),
        );
    }
    a.insert("created".into(), json!(datetime(p.created)));
    a.insert("updated".into(), json!(datetime(p.updated)));
    a.insert("last_event_date".into(), Value::Null);
    let stored = p.attributes.get("location").and_then(Value::as_object);
    let mut loc = Map::new();
    for f in LOCATION_FIELDS {
        let v = stored
            .and_then(|l| l.get(*f))
            .cloned()
            .unwrap_or(Value::Null);
        // The SDK types these as strings: keep numbers out of them.
        let v = match (*f, v) {
            ("latitude" | "longitude", v) => v,
            (_, Value::Number(n)) => Value::String(n.to_string()),
            (_, v) => v,
        };
        loc.insert((*f).into(), v);
    }
    a.insert("location".into(), Value::Object(loc));
    a.insert("properties".into(), Value::Object(p.properties.clone()));
    if with_subscriptions {
        a.insert("subscriptions".into(), subscriptions(&p.subscriptions));
    }
    a
}

/// The subscriptions document with the fields clients require filled in.
fn subscriptions(stored: &Value) -> Value {
    let channel = |name: &str, flag: &str| {
        let m = stored.get(name).and_then(|c| c.get("marketing"));
        let consent = m
            .and_then(|m| m.get("consent"))
            .and_then(Value::as_str)
            .unwrap_or("NEVER_SUBSCRIBED");
        let mut out = json!({
            "consent": consent,
            flag: consent == "SUBSCRIBED",
            "consent_timestamp": m.and_then(|m| m.get("consent_timestamp")).cloned().unwrap_or(Value::Null),
            "method": m.and_then(|m| m.get("method")).cloned().unwrap_or(Value::Null),
            "method_detail": m.and_then(|m| m.get("method_detail")).cloned().unwrap_or(Value::Null),
        });
        if let Some(lists) = m.and_then(|m| m.get("list_suppressions")) {
            out["list_suppressions"] = lists.clone();
        }
        json!({ "marketing": out })
    };
    json!({
        "email": channel("email", "can_receive_email_marketing"),
        "sms": channel("sms", "can_receive_sms_marketing"),
    })
}

pub fn profile(url: &RequestUrl, p: &Profile, with_subscriptions: bool) -> Resource {
    Resource::new(
        url,
        "profile",
        &p.id,
        Value::Object(profile_attributes(p, with_subscriptions)),
    )
    .with_relationship_links("lists")
    .with_relationship_links("segments")
}

pub fn event(url: &RequestUrl, e: &Event) -> Resource {
    Resource::new(
        url,
        "event",
        &e.id,
        json!({
            "timestamp": e.time.div_euclid(1_000_000),
            "event_properties": with_value(&e.properties, e.value, e.value_currency.as_deref()),
            "datetime": datetime(e.time),
            "uuid": e.id,
        }),
    )
    .with_to_one("profile", "profile", Some(&e.profile_id))
    .with_to_one("metric", "metric", Some(&e.metric_id))
}

/// Klaviyo reports the event value inside the properties as `$value`.
fn with_value(props: &Value, value: Option<f64>, currency: Option<&str>) -> Value {
    let mut m = props.as_object().cloned().unwrap_or_default();
    if let Some(v) = value {
        m.entry("$value").or_insert(json!(v));
    }
    if let Some(c) = currency {
        m.entry("$value_currency").or_insert(json!(c));
    }
    Value::Object(m)
}

pub fn metric(url: &RequestUrl, m: &Metric) -> Resource {
    Resource::new(
        url,
        "metric",
        &m.id,
        json!({
            "name": m.name,
            "created": datetime(m.created),
            "updated": datetime(m.updated),
            "integration": {"object": "integration", "id": "api", "key": "api", "name": "API", "category": "API"},
        }),
    )
    .with_relationship_links("flow-triggers")
}

pub fn list(url: &RequestUrl, l: &List, profile_count: Option<i64>) -> Resource {
    let mut attrs = json!({
        "name": l.name,
        "created": datetime(l.created),
        "updated": datetime(l.updated),
        "opt_in_process": l.opt_in_process,
    });
    if let Some(n) = profile_count {
        attrs["profile_count"] = json!(n);
    }
    Resource::new(url, "list", &l.id, attrs)
        .with_relationship_links("profiles")
        .with_relationship_links("tags")
        .with_relationship_links("flow-triggers")
}

pub const CATALOG_FIELDS: &[&str] = &[
    "title",
    "description",
    "price",
    "url",
    "image_full_url",
    "image_thumbnail_url",
    "images",
    "custom_metadata",
    "published",
];

pub fn catalog_item(url: &RequestUrl, i: &CatalogItem) -> Resource {
    let mut a = Map::new();
    a.insert("external_id".into(), json!(i.external_id));
    for f in CATALOG_FIELDS {
        let v = i.attributes.get(*f).cloned().unwrap_or(match *f {
            "images" => json!([]),
            "custom_metadata" => json!({}),
            "published" => json!(true),
            _ => Value::Null,
        });
        a.insert((*f).into(), v);
    }
    a.insert("created".into(), json!(datetime(i.created)));
    a.insert("updated".into(), json!(datetime(i.updated)));
    Resource::new(url, "catalog-item", &i.id, Value::Object(a)).with_relationship_links("variants")
}

/// Klaviyo's `trigger_type` label for a stored trigger type. Klaviyo shows
/// list and segment flows alike as "Added to List".
pub fn flow_trigger_label(trigger_type: &str) -> &'static str {
    match trigger_type {
        "metric" => "Metric",
        "list" | "segment" => "Added to List",
        "date" => "Date Based",
        "price-drop" => "Price Drop",
        "low-inventory" => "Low Inventory",
        _ => "Unconfigured",
    }
}

/// A flow; `definition` is shown when asked for with
/// `additional-fields[flow]=definition` (and on create).
pub fn flow(
    url: &RequestUrl,
    f: &outflow_store::flows::Flow,
    definition: Option<&Value>,
) -> Resource {
    let mut attrs = json!({
        "name": f.name,
        "status": f.status,
        "archived": f.archived,
        "created": datetime(f.created),
        "updated": datetime(f.updated),
        "trigger_type": flow_trigger_label(&f.trigger_type),
    });
    if let Some(d) = definition {
        attrs["definition"] = d.clone();
    }
    Resource::new(url, "flow", &f.id, attrs)
        .with_relationship_links("flow-actions")
        .with_relationship_links("tags")
}

/// A flow action: its element of the flow's current definition.
pub fn flow_action(
    url: &RequestUrl,
    a: &outflow_store::flows::FlowAction,
    definition: Value,
) -> Resource {
    Resource::new(
        url,
        "flow-action",
        &a.id,
        json!({
            "definition": definition,
            "created": datetime(a.created),
            "updated": datetime(a.updated),
        }),
    )
    .with_to_one("flow", "flow", Some(&a.flow_id))
    .with_relationship_links("flow-messages")
}
