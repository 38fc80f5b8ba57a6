//! The price-drop trigger's rules: which price changes qualify, which
//! events make a profile part of the audience, and the `catalog_item`
//! context its runs carry.

use crate::flow::definition::{Audience, PriceDropTrigger};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

/// Tolerance for comparing money after float arithmetic.
const EPSILON: f64 = 1e-9;

/// Whether a change from `old` to `new` is a drop of at least the trigger's
/// amount (in currency, or in percent of the old price).
pub fn qualifies(t: &PriceDropTrigger, old: f64, new: f64) -> bool {
    if !(old.is_finite() && new.is_finite()) || new >= old || old <= 0.0 {
        return false;
    }
    let drop = old - new;
    if t.percent {
        drop / old * 100.0 + EPSILON >= t.amount
    } else {
        drop + EPSILON >= t.amount
    }
}

/// The metric name of each audience, as Klaviyo's integrations send it.
pub fn audience_metric(a: Audience) -> &'static str {
    match a {
        Audience::Viewed => "Viewed Product",
        Audience::CheckoutStarted => "Started Checkout",
    }
}

/// The earliest event time that still counts: `timeframe_days` before now.
pub fn window_start(t: &PriceDropTrigger, now: DateTime<Utc>) -> DateTime<Utc> {
    now - Duration::days(t.timeframe_days.clamp(1, 365))
}

/// Property keys that name a product in Klaviyo's e-commerce events.
const ID_KEYS: &[&str] = &[
    "ProductID",
    "ProductId",
    "product_id",
    "$item_id",
    "ItemID",
    "SKU",
];
/// Keys of the line-item arrays of Started Checkout events.
const ITEM_LISTS: &[&str] = &["Items", "items", "line_items", "LineItems"];

/// Whether an event's properties name the item, by its full catalog id
/// (`$custom:::$default:::SKU1`) or its external id (`SKU1`), at the top
/// level or in a line item.
pub fn mentions_item(properties: &Value, item_id: &str, external_id: &str) -> bool {
    let names = |obj: &Value| {
        ID_KEYS.iter().any(|k| match obj.get(k) {
            Some(Value::String(s)) => s == item_id || s == external_id,
            Some(Value::Number(n)) => n.to_string() == external_id,
            _ => false,
        })
    };
    if names(properties) {
        return true;
    }
    ITEM_LISTS.iter().any(|k| {
        properties
            .get(k)
            .and_then(Value::as_array)
            .is_some_and(|items| items.iter().any(names))
    })
}

/// The trigger context of a price-drop run: the event fields trigger
/// filters read, and `catalog_item` for templates.
pub fn trigger_event(item: &Value, old: f64, new: f64, audience: Audience) -> Value {
    let mut catalog_item = match item {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    catalog_item.insert("old_price".into(), json!(old));
    catalog_item.insert("new_price".into(), json!(new));
    catalog_item.insert("price".into(), json!(new));
    json!({
        "catalog_item": Value::Object(catalog_item),
        "old_price": old,
        "new_price": new,
        "price_drop_amount": old - new,
        "price_drop_percent": if old > 0.0 { (old - new) / old * 100.0 } else { 0.0 },
        "audience": match audience {
            Audience::Viewed => "viewed",
            Audience::CheckoutStarted => "checkout-started",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(amount: f64, percent: bool) -> PriceDropTrigger {
        PriceDropTrigger {
            amount,
            percent,
            audience: vec![Audience::Viewed],
            timeframe_days: 30,
            currency: "usd".into(),
            filter: None,
        }
    }

    #[test]
    fn drops_by_amount_and_percent() {
        assert!(qualifies(&trigger(5.0, false), 50.0, 45.0));
        assert!(!qualifies(&trigger(5.0, false), 50.0, 45.01));
        assert!(!qualifies(&trigger(5.0, false), 45.0, 50.0));
        assert!(qualifies(&trigger(10.0, true), 50.0, 45.0));
        assert!(!qualifies(&trigger(10.0, true), 50.0, 45.5));
        assert!(qualifies(&trigger(10.0, true), 0.3, 0.27));
        assert!(!qualifies(&trigger(1.0, false), f64::NAN, 1.0));
    }

    #[test]
    fn finds_the_item_in_events() {
        let id = "$custom:::$default:::SKU1";
        assert!(mentions_item(&json!({"ProductID": "SKU1"}), id, "SKU1"));
        assert!(mentions_item(&json!({"$item_id": id}), id, "SKU1"));
        assert!(mentions_item(
            &json!({"Items": [{"ProductID": "X"}, {"ProductID": "SKU1"}]}),
            id,
            "SKU1"
        ));
        assert!(mentions_item(
            &json!({"ProductID": 42}),
            "$custom:::$default:::42",
            "42"
        ));
        assert!(!mentions_item(&json!({"ProductID": "SKU2"}), id, "SKU1"));
    }

    #[test]
    fn context_carries_the_item_and_both_prices() {
        let e = trigger_event(&json!({"title": "Mug"}), 20.0, 15.0, Audience::Viewed);
        assert_eq!(e["catalog_item"]["title"], "Mug");
        assert_eq!(e["catalog_item"]["old_price"], 20.0);
        assert_eq!(e["catalog_item"]["new_price"], 15.0);
        assert_eq!(e["price_drop_percent"], 25.0);
    }
}
