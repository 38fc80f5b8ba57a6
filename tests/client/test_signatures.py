"""Issue #7, acceptance 2: the signatures Outflow sends verify with the stock `standardwebhooks`
library from PyPI, before and after a secret rotation (during the rotation window both the old and
the new secret verify the same request).

A live list flow with one webhook to a receiver on 127.0.0.1; profiles join the list through the
SDK; the receiver keeps each request's raw body and headers, which are handed to the library
unchanged.
"""

from __future__ import annotations

import os

import pytest
import requests
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from test_flows_e2e import Receiver, eventually


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _ours(base_url, api_key, method, path):
    r = requests.request(method, f"{base_url}{path}",
                         headers={"Authorization": f"Klaviyo-API-Key {api_key}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.skipif(bool(os.environ.get("OUTFLOW_TEST_URL")),
                    reason="needs the server conftest starts (OUTFLOW_WEBHOOKS_ALLOW_PRIVATE=127.0.0.1)")
def test_signatures_verify_with_the_stock_library(klaviyo, base_url, api_key, receiver, unique):
    lst = klaviyo.Lists.create_list({"data": {"type": "list", "attributes": {"name": f"Signed {unique}"}}})
    list_id = lst.data.id
    path = f"/signed/{unique}"
    definition = {
        "triggers": [{"type": "list", "id": list_id}],
        "actions": [{"temporary_id": "hook", "type": "send-webhook", "links": {"next": None},
                     "data": {"status": "live", "message": {
                         "url": receiver.url + path,
                         "body": '{"email": "{{ person.email }}", "note": "caf\\u00e9 \u2713"}'}}}],
        "entry_action_id": "hook",
    }
    flow = klaviyo.Flows.create_flow({"data": {"type": "flow", "attributes": {
        "name": f"Signed {unique}", "definition": definition}}})
    klaviyo.Flows.update_flow(flow.data.id, {"data": {"type": "flow", "id": flow.data.id,
                                                      "attributes": {"status": "live"}}})

    def join(email):
        p = klaviyo.Profiles.create_profile(
            {"data": {"type": "profile", "attributes": {"email": email}}})
        klaviyo.Lists.add_profiles_to_list(list_id, {"data": [{"type": "profile", "id": p.data.id}]})

    old = _ours(base_url, api_key, "GET", "/outflow/v1/signing-secret")["secret"]
    join(f"first-{unique}@example.com")
    got = eventually(lambda: receiver.to(path))
    assert got, "the webhook arrived"
    _, _, headers, body = got[0]
    payload = Webhook(old).verify(body, headers)
    assert payload["email"] == f"first-{unique}@example.com"
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(body + b" ", headers)

    new = _ours(base_url, api_key, "POST", "/outflow/v1/signing-secret/rotate")["secret"]
    assert new != old
    join(f"second-{unique}@example.com")
    got = eventually(lambda: len(receiver.to(path)) >= 2 and receiver.to(path))
    assert got, "the second webhook arrived"
    _, _, headers, body = got[1]
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(body, headers)["email"] == f"second-{unique}@example.com"
    assert Webhook(new).verify(body, headers)["email"] == f"second-{unique}@example.com"
