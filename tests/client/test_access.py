"""Access control seen by the official SDK: a key made through /outflow/v1/api-keys acts with its
scopes, the webhook gate refuses a key without `webhooks:write` with Klaviyo's 403 error body, and a
revoked key is refused on the next call."""

from __future__ import annotations

import json

import pytest
import requests
from klaviyo_api import KlaviyoAPI
from openapi_client.exceptions import ApiException


def make_key(base_url, api_key, scopes):
    r = requests.post(base_url + "/outflow/v1/api-keys", timeout=10,
                      headers={"Authorization": f"Klaviyo-API-Key {api_key}"},
                      json={"name": "sdk test", "scopes": scopes})
    assert r.status_code == 201, r.text
    return r.json()["data"]


def webhook_flow(list_id, unique):
    return {"data": {"type": "flow", "attributes": {"name": f"gated {unique}", "definition": {
        "triggers": [{"type": "list", "id": list_id}],
        "actions": [{"temporary_id": "hook", "type": "send-webhook", "links": {"next": None},
                     "data": {"status": "draft", "message": {
                         "name": "n", "url": "https://hooks.example.com/", "headers": {},
                         "body": "{}"}}}],
        "entry_action_id": "hook"}}}}


def test_the_webhook_gate_and_revocation_through_the_sdk(klaviyo, base_url, api_key, unique):
    list_id = klaviyo.Lists.create_list(
        {"data": {"type": "list", "attributes": {"name": f"Gate {unique}"}}}).data.id
    made = make_key(base_url, api_key, ["flows:write", "lists:read"])
    assert made["key"].startswith("pk_") and made["scopes"] == ["flows:write", "lists:read"]
    limited = KlaviyoAPI(made["key"], max_delay=0, max_retries=0, test_host=base_url)

    with pytest.raises(ApiException) as ei:
        limited.Flows.create_flow(webhook_flow(list_id, unique))
    assert ei.value.status == 403
    err = json.loads(ei.value.body)["errors"][0]
    assert err["code"] == "permission_denied" and "webhooks:write" in err["detail"]

    # The bootstrap key (owner, MFA enrolled by the session fixture) passes the gate.
    r = klaviyo.Flows.create_flow_with_http_info(webhook_flow(list_id, unique))
    assert r.status_code == 201

    assert limited.Flows.get_flows().data is not None
    r = requests.delete(f"{base_url}/outflow/v1/api-keys/{made['id']}", timeout=10,
                        headers={"Authorization": f"Klaviyo-API-Key {api_key}"})
    assert r.status_code == 204, r.text
    with pytest.raises(ApiException) as ei:
        limited.Flows.get_flows()
    assert ei.value.status == 401
    listed = requests.get(base_url + "/outflow/v1/api-keys", timeout=10,
                          headers={"Authorization": f"Klaviyo-API-Key {api_key}"}).json()["data"]
    assert made["key"] not in json.dumps(listed)
