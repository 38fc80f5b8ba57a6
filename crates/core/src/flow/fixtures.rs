//! Definitions shaped exactly like Klaviyo's `FlowDefinition` schema (field
//! names and example values from the flows OpenAPI), shared by the tests.

use serde_json::{json, Value};

/// A metric-triggered flow using every action type Outflow runs, with
/// temporary ids as a client posts them.
pub fn placed_order_flow() -> Value {
    json!({
        "triggers": [{
            "type": "metric",
            "id": "M-placed",
            "trigger_filter": {"condition_groups": [{"conditions": [{
                "type": "metric-property",
                "metric_id": "M-placed",
                "field": "$value",
                "filter": {"type": "numeric", "operator": "greater-than", "value": 50}
            }]}]}
        }],
        "profile_filter": {"condition_groups": [{"conditions": [{
            "type": "profile-property",
            "property": "properties['Favorite Color']",
            "filter": {"type": "string", "operator": "not-equals", "value": "none"}
        }]}]},
        "actions": [
            {
                "temporary_id": "action-1",
                "type": "time-delay",
                "links": {"next": "action-2"},
                "data": {"unit": "days", "value": 1, "timezone": "profile",
                         "delay_until_time": "15:00", "delay_until_weekdays": null}
            },
            {
                "temporary_id": "action-2",
                "type": "conditional-split",
                "links": {"next_if_true": "action-3", "next_if_false": "action-5"},
                "data": {"profile_filter": {"condition_groups": [{"conditions": [{
                    "type": "profile-metric",
                    "metric_id": "M-placed",
                    "measurement": "count",
                    "measurement_filter": {"type": "numeric", "operator": "greater-than-or-equal", "value": 2},
                    "timeframe_filter": {"type": "date", "operator": "alltime"}
                }]}]}}
            },
            {
                "temporary_id": "action-3",
                "type": "send-webhook",
                "links": {"next": "action-4"},
                "data": {"status": "live", "message": {
                    "url": "https://hooks.example.com/orders?email={{ person.email|urlencode }}",
                    "headers": {"X-Token": "secret", "X-Order": "{{ event|lookup:'$value' }}"},
                    "body": "{\"email\": \"{{ person.email }}\", \"total\": {{ event|lookup:'$value' }}}",
                    "name": "notify"
                }}
            },
            {
                "temporary_id": "action-4",
                "type": "update-profile",
                "links": {"next": null},
                "data": {"status": "live", "profile_operations": [
                    {"operator": "update", "property_type": "string", "property_key": "Tier", "property_value": "repeat"},
                    {"operator": "create", "property_type": "list", "property_operation": "add", "property_key": "Tags", "property_value": "vip"}
                ]}
            },
            {
                "temporary_id": "action-5",
                "type": "list-update",
                "links": {"next": "action-6"},
                "data": {"name": "First buyers", "on_execution": true, "list_id": "L-first", "status": "live"}
            },
            {
                "temporary_id": "action-6",
                "type": "send-email",
                "links": {"next": null},
                "data": {"status": "draft", "message": {"subject_line": "Thanks!"}}
            }
        ],
        "entry_action_id": "action-1",
        "reentry_criteria": {"duration": 7, "unit": "day"}
    })
}

/// Metric names keyed by id, as the store would answer.
pub fn metric_name(id: &str) -> Option<String> {
    match id {
        "M-placed" => Some("Placed Order".into()),
        "M-opened" => Some("Opened Email".into()),
        "M-unsub" => Some("unsubscribed from list".into()),
        _ => None,
    }
}
