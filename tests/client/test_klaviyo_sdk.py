"""The official Klaviyo Python SDK (klaviyo-api, unmodified) against Outflow's /api/.

Every call goes through the SDK, so a response that does not match the SDK's pydantic models fails
here exactly as it would for a real integrator. Status codes are checked with the SDK's own
`*_with_http_info` variants, which return an ApiResponse (status_code, headers, data).
See SDK_NOTES.md for what the SDK requires of each response.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest
from klaviyo_api import KlaviyoAPI
from openapi_client.exceptions import ApiException, UnauthorizedException

# ---------------------------------------------------------------- helpers


def eventually(fn, timeout=10.0, interval=0.1):
    """Poll fn() until it returns a truthy value. Klaviyo documents create-event and subscription
    jobs as asynchronous, so reads after a 202 are allowed a short delay."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    return last


def event_body(email, metric, properties, *, unique_id=None, when=None, value=None, profile_extra=None):
    attrs = {
        "properties": properties,
        "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
        "profile": {"data": {"type": "profile", "attributes": {"email": email, **(profile_extra or {})}}},
    }
    if unique_id is not None:
        attrs["unique_id"] = unique_id
    if when is not None:
        attrs["time"] = when
    if value is not None:
        attrs["value"] = value
    return {"data": {"type": "event", "attributes": attrs}}


def profile_id_by_email(klaviyo, email):
    resp = klaviyo.Profiles.get_profiles(filter=f'equals(email,"{email}")')
    ids = [p.id for p in resp.data]
    assert len(ids) <= 1, f"more than one profile for {email}: {ids}"
    return ids[0] if ids else None


def events_for_profile(klaviyo, profile_id):
    return klaviyo.Events.get_events(filter=f'equals(profile_id,"{profile_id}")').data


def list_member_ids(klaviyo, list_id):
    resp = klaviyo.Lists.get_list_profiles(list_id)
    return {p.id: p for p in resp.data}


def error_of(exc: ApiException) -> dict:
    body = json.loads(exc.body)
    assert isinstance(body.get("errors"), list) and body["errors"], body
    return body["errors"][0]


# ---------------------------------------------------------------- auth


def test_bad_api_key_is_401(base_url):
    bad = KlaviyoAPI("pk_" + "0" * 32, max_retries=1, test_host=base_url)
    with pytest.raises(UnauthorizedException) as ei:
        bad.Profiles.get_profiles()
    assert ei.value.status == 401
    err = error_of(ei.value)
    for field in ("id", "code", "title", "detail"):
        assert isinstance(err.get(field), str), err


# ---------------------------------------------------------------- events


def test_create_event_new_profile(klaviyo, unique):
    email = f"ev-new-{unique}@example.com"
    metric = f"Viewed Product {unique}"
    when = "2026-01-02T03:04:05+00:00"
    resp = klaviyo.Events.create_event_with_http_info(
        event_body(email, metric, {"ProductName": "Winnie the Pooh", "Price": 9.99}, when=when, value=9.99,
                   profile_extra={"first_name": "Sarah"}))
    assert resp.status_code == 202
    assert resp.data is None

    pid = eventually(lambda: profile_id_by_email(klaviyo, email))
    assert pid, "create-event did not create the profile"
    profile = klaviyo.Profiles.get_profile(pid).data
    assert profile.attributes.email == email
    assert profile.attributes.first_name == "Sarah"

    events = eventually(lambda: events_for_profile(klaviyo, pid))
    assert len(events) == 1
    ev = events[0]
    assert ev.type.value == "event" and ev.id
    assert ev.attributes.event_properties["ProductName"] == "Winnie the Pooh"
    assert ev.attributes.event_properties["Price"] == 9.99
    assert ev.attributes.datetime_ == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert ev.attributes.timestamp == int(ev.attributes.datetime_.timestamp())

    # The metric was created by name and the event points at it.
    metric_resp = klaviyo.Events.get_event_metric(ev.id)
    assert metric_resp.data.attributes.name == metric


def test_create_event_existing_profile(klaviyo, unique):
    email = f"ev-old-{unique}@example.com"
    created = klaviyo.Profiles.create_profile(
        {"data": {"type": "profile", "attributes": {"email": email, "first_name": "Ann"}}})
    pid = created.data.id

    resp = klaviyo.Events.create_event_with_http_info(
        event_body(email, "Placed Order", {"OrderId": unique, "Items": ["a", "b"]}, value=42.5))
    assert resp.status_code == 202

    # Attached to the existing profile, not to a new one.
    assert profile_id_by_email(klaviyo, email) == pid
    events = eventually(lambda: events_for_profile(klaviyo, pid))
    assert len(events) == 1
    assert events[0].attributes.event_properties["OrderId"] == unique
    assert events[0].attributes.event_properties["Items"] == ["a", "b"]
    assert klaviyo.Profiles.get_profile(pid).data.attributes.first_name == "Ann"


def test_event_unique_id_deduplicates(klaviyo, unique):
    email = f"ev-dedup-{unique}@example.com"
    metric = f"Dedup Metric {unique}"
    uid = f"order-{unique}"
    for n, when in ((1, "2026-02-01T10:00:00+00:00"), (2, "2026-02-01T10:00:07+00:00")):
        r = klaviyo.Events.create_event_with_http_info(
            event_body(email, metric, {"n": n}, unique_id=uid, when=when))
        assert r.status_code == 202
    # A different unique_id is a different event (proves the count below is not a coincidence).
    r = klaviyo.Events.create_event_with_http_info(
        event_body(email, metric, {"n": 3}, unique_id=uid + "-other", when="2026-02-01T10:00:09+00:00"))
    assert r.status_code == 202

    pid = eventually(lambda: profile_id_by_email(klaviyo, email))
    assert pid
    events = eventually(lambda: (lambda evs: evs if len(evs) >= 2 else None)(events_for_profile(klaviyo, pid)))
    assert events is not None, "expected two events"
    time.sleep(0.3)  # give a wrongly-kept duplicate a chance to show up
    events = events_for_profile(klaviyo, pid)
    ns = sorted(e.attributes.event_properties["n"] for e in events)
    assert len(events) == 2, ns
    assert ns[1] == 3 and ns[0] in (1, 2), ns


# ---------------------------------------------------------------- profiles


def test_create_get_update_profile(klaviyo, unique):
    email = f"prof-{unique}@example.com"
    resp = klaviyo.Profiles.create_profile_with_http_info({"data": {"type": "profile", "attributes": {
        "email": email,
        "external_id": f"ext-{unique}",
        "first_name": "Sarah",
        "last_name": "Mason",
        "location": {"city": "Boston", "country": "United States", "zip": "02110"},
        "properties": {"pseudonym": "Dr. Octopus", "tier": 2},
    }}})
    assert resp.status_code == 201
    created = resp.data.data
    pid = created.id
    assert isinstance(pid, str) and pid
    assert created.type.value == "profile"
    assert created.attributes.email == email
    assert created.attributes.external_id == f"ext-{unique}"
    assert created.attributes.properties == {"pseudonym": "Dr. Octopus", "tier": 2}
    assert created.attributes.created is not None

    got = klaviyo.Profiles.get_profile(pid).data
    assert got.id == pid
    assert got.attributes.email == email
    assert got.attributes.first_name == "Sarah"
    assert got.attributes.location.city == "Boston"
    assert got.attributes.location.zip == "02110"
    assert got.attributes.properties["pseudonym"] == "Dr. Octopus"

    upd = klaviyo.Profiles.update_profile(pid, {"data": {"type": "profile", "id": pid, "attributes": {
        "first_name": "Sally",
        "properties": {"tier": 3},
    }}})
    assert upd.data.id == pid
    assert upd.data.attributes.first_name == "Sally"

    got = klaviyo.Profiles.get_profile(pid).data
    assert got.attributes.first_name == "Sally"
    assert got.attributes.last_name == "Mason"          # omitted -> left alone
    assert got.attributes.email == email
    assert got.attributes.properties["tier"] == 3
    assert got.attributes.properties["pseudonym"] == "Dr. Octopus"  # properties are merged


def test_create_profile_duplicate_is_409(klaviyo, unique):
    email = f"dup-{unique}@example.com"
    first = klaviyo.Profiles.create_profile({"data": {"type": "profile", "attributes": {"email": email}}})
    pid = first.data.id

    with pytest.raises(ApiException) as ei:
        klaviyo.Profiles.create_profile(
            {"data": {"type": "profile", "attributes": {"email": email, "first_name": "Again"}}})
    exc = ei.value
    assert exc.status == 409
    err = error_of(exc)
    assert err["code"] == "duplicate_profile"
    assert err["meta"]["duplicate_profile_id"] == pid
    # The SDK also parsed the body into its error model (requires id, code, title, detail).
    assert exc.data is not None and exc.data.errors[0].code == "duplicate_profile"
    # Nothing was changed by the rejected create.
    assert klaviyo.Profiles.get_profile(pid).data.attributes.first_name is None


def test_profile_import_upsert(klaviyo, unique):
    email = f"imp-{unique}@example.com"
    r1 = klaviyo.Profiles.create_or_update_profile_with_http_info({"data": {"type": "profile", "attributes": {
        "email": email, "first_name": "Imp", "properties": {"source": "import"}}}})
    assert r1.status_code == 201
    pid = r1.data.data.id
    assert pid and r1.data.data.attributes.email == email

    r2 = klaviyo.Profiles.create_profile_import_with_http_info({"data": {"type": "profile", "attributes": {
        "email": email, "last_name": "Orted"}}})
    assert r2.status_code == 200
    assert r2.data.data.id == pid
    assert r2.data.data.attributes.last_name == "Orted"
    assert r2.data.data.attributes.first_name == "Imp"

    got = klaviyo.Profiles.get_profile(pid).data
    assert (got.attributes.first_name, got.attributes.last_name) == ("Imp", "Orted")
    assert got.attributes.properties["source"] == "import"


# ---------------------------------------------------------------- lists


def test_lists_create_add_and_read_members(klaviyo, unique):
    name = f"Newsletter {unique}"
    r = klaviyo.Lists.create_list_with_http_info({"data": {"type": "list", "attributes": {"name": name}}})
    assert r.status_code == 201
    lst = r.data.data
    assert lst.type.value == "list" and lst.id
    assert lst.attributes.name == name
    assert klaviyo.Lists.get_list(lst.id).data.attributes.name == name

    pids = []
    for i in range(3):
        p = klaviyo.Profiles.create_profile(
            {"data": {"type": "profile", "attributes": {"email": f"member{i}-{unique}@example.com"}}})
        pids.append(p.data.id)

    assert list_member_ids(klaviyo, lst.id) == {}

    add = klaviyo.Lists.add_profiles_to_list_with_http_info(
        lst.id, {"data": [{"type": "profile", "id": pid} for pid in pids[:2]]})
    assert add.status_code == 204
    # Same call via its relationship-style alias; adding a member twice is harmless.
    add = klaviyo.Lists.create_list_relationships_profile_with_http_info(
        lst.id, {"data": [{"type": "profile", "id": pids[1]}, {"type": "profile", "id": pids[2]}]})
    assert add.status_code == 204

    members = list_member_ids(klaviyo, lst.id)
    assert set(members) == set(pids)
    for i, pid in enumerate(pids):
        assert members[pid].attributes.email == f"member{i}-{unique}@example.com"
        assert members[pid].attributes.joined_group_at is not None


# ---------------------------------------------------------------- subscriptions


def test_subscribe_bulk_job_adds_to_list(klaviyo, unique):
    lst = klaviyo.Lists.create_list({"data": {"type": "list", "attributes": {
        "name": f"Subscribers {unique}", "opt_in_process": "single_opt_in"}}}).data
    email = f"sub-{unique}@example.com"
    r = klaviyo.Profiles.bulk_subscribe_profiles_with_http_info({"data": {
        "type": "profile-subscription-bulk-create-job",
        "attributes": {
            "custom_source": "checkout",
            "profiles": {"data": [{"type": "profile", "attributes": {
                "email": email,
                "subscriptions": {"email": {"marketing": {"consent": "SUBSCRIBED"}}},
            }}]},
            "historical_import": False,
        },
        "relationships": {"list": {"data": {"type": "list", "id": lst.id}}},
    }})
    assert r.status_code == 202
    assert r.data is None

    members = eventually(lambda: list_member_ids(klaviyo, lst.id))
    assert members, "subscribed profile never appeared in the list"
    assert [m.attributes.email for m in members.values()] == [email]
    pid = next(iter(members))

    prof = klaviyo.Profiles.get_profile(pid, additional_fields_profile=["subscriptions"]).data
    marketing = prof.attributes.subscriptions.email.marketing
    assert marketing.consent == "SUBSCRIBED"
    assert marketing.can_receive_email_marketing is True


# ---------------------------------------------------------------- catalog items


def test_catalog_item_create_update_get(klaviyo, unique):
    sku = f"SKU-{unique}"
    r = klaviyo.Catalogs.create_catalog_item_with_http_info({"data": {"type": "catalog-item", "attributes": {
        "external_id": sku,
        "integration_type": "$custom",
        "catalog_type": "$default",
        "title": "Winnie the Pooh",
        "description": "A bear of very little brain",
        "url": f"https://shop.example.com/p/{sku}",
        "price": 42.0,
        "image_full_url": f"https://shop.example.com/i/{sku}.png",
        "custom_metadata": {"color": "yellow"},
        "published": True,
    }}})
    assert r.status_code == 201
    item = r.data.data
    item_id = f"$custom:::$default:::{sku}"
    assert item.id == item_id
    assert item.type.value == "catalog-item"
    assert item.attributes.external_id == sku
    assert item.attributes.title == "Winnie the Pooh"
    assert item.attributes.price == 42.0

    upd = klaviyo.Catalogs.update_catalog_item(item_id, {"data": {
        "type": "catalog-item", "id": item_id, "attributes": {"price": 29.5}}})
    assert upd.data.id == item_id
    assert upd.data.attributes.price == 29.5

    got = klaviyo.Catalogs.get_catalog_item(item_id).data
    assert got.id == item_id
    assert got.attributes.price == 29.5
    assert got.attributes.title == "Winnie the Pooh"       # untouched by the price update
    assert got.attributes.url == f"https://shop.example.com/p/{sku}"
    assert got.attributes.custom_metadata == {"color": "yellow"}
    assert got.attributes.published is True


# ---------------------------------------------------------------- flows


def test_flow_create_get_definition_and_update_status(klaviyo, unique):
    metric = f"Placed Order {unique}"
    r = klaviyo.Events.create_event_with_http_info(
        event_body(f"flow-{unique}@example.com", metric, {"Total": 10}))
    assert r.status_code == 202
    metric_id = eventually(lambda: next(
        (m.id for m in klaviyo.Metrics.get_metrics(filter=f'equals(name,"{metric}")').data), None))
    assert metric_id

    definition = {
        "triggers": [{"type": "metric", "id": metric_id}],
        "actions": [
            {"temporary_id": "wait", "type": "time-delay", "links": {"next": "hook"},
             "data": {"unit": "hours", "value": 2, "timezone": "profile"}},
            {"temporary_id": "hook", "type": "send-webhook", "links": {"next": None},
             "data": {"status": "draft", "message": {
                 "name": "notify", "url": "https://hooks.example.com/orders",
                 "headers": {"X-Email": "{{ person.email }}"},
                 "body": "{\"email\": \"{{ person.email }}\"}"}}},
        ],
        "entry_action_id": "wait",
    }
    name = f"Post-purchase {unique}"
    r = klaviyo.Flows.create_flow_with_http_info(
        {"data": {"type": "flow", "attributes": {"name": name, "definition": definition}}})
    assert r.status_code == 201
    flow = r.data.data
    assert flow.type.value == "flow" and flow.id
    assert flow.attributes.name == name
    assert flow.attributes.status == "draft"
    assert flow.attributes.trigger_type == "Metric"

    got = klaviyo.Flows.get_flow(flow.id, additional_fields_flow=["definition"]).data
    raw = got.attributes.definition.to_dict()
    ids = [a["id"] for a in raw["actions"]]
    assert len(ids) == 2 and all(i.isdigit() for i in ids)
    assert "temporary_id" not in json.dumps(raw)
    assert raw["entry_action_id"] == ids[0]
    assert raw["actions"][0]["links"]["next"] == ids[1]
    assert raw["actions"][1]["data"]["message"]["url"] == "https://hooks.example.com/orders"
    # Without additional-fields the definition is left out.
    assert klaviyo.Flows.get_flow(flow.id).data.attributes.definition is None

    r = klaviyo.Flows.update_flow_with_http_info(
        flow.id, {"data": {"type": "flow", "id": flow.id, "attributes": {"status": "live"}}})
    assert r.status_code == 200
    assert r.data.data.attributes.status == "live"
    listed = klaviyo.Flows.get_flows(filter=f'equals(name,"{name}")').data
    assert [f.id for f in listed] == [flow.id]
    assert listed[0].attributes.status == "live"

    actions = klaviyo.Flows.get_actions_for_flow(flow.id).data
    assert [a.id for a in actions] == ids
    one = klaviyo.Flows.get_flow_action(ids[1]).data
    # The SDK types an action definition as a oneOf; it may hand back a plain dict.
    action = one.attributes.definition
    action = action if isinstance(action, dict) else action.to_dict()
    assert action["type"] == "send-webhook" and action["id"] == ids[1]


def test_flow_with_a_bad_template_is_400(klaviyo, unique):
    r = klaviyo.Lists.create_list({"data": {"type": "list", "attributes": {"name": f"Flow list {unique}"}}})
    definition = {
        "triggers": [{"type": "list", "id": r.data.id}],
        "actions": [{"temporary_id": "hook", "type": "send-webhook", "links": {"next": None},
                     "data": {"status": "draft", "message": {
                         "name": "n", "url": "https://hooks.example.com/", "headers": {},
                         "body": "{% if person.email %}"}}}],
        "entry_action_id": "hook",
    }
    with pytest.raises(ApiException) as ei:
        klaviyo.Flows.create_flow({"data": {"type": "flow", "attributes": {"name": "bad", "definition": definition}}})
    assert ei.value.status == 400
    err = error_of(ei.value)
    assert err["source"]["pointer"].startswith("/data/attributes/definition/actions/0/data/message")
    assert "line" in err["detail"]


# ---------------------------------------------------------------- segments


def test_segment_create_get_members_update_delete(klaviyo, unique):
    tier = f"Gold-{unique}"
    member = klaviyo.Profiles.create_profile({"data": {"type": "profile", "attributes": {
        "email": f"seg-in-{unique}@example.com", "properties": {"Tier": tier}}}}).data.id
    klaviyo.Profiles.create_profile({"data": {"type": "profile", "attributes": {
        "email": f"seg-out-{unique}@example.com", "properties": {"Tier": "Silver"}}}})
    definition = {"condition_groups": [{"conditions": [{
        "type": "profile-property", "property": "properties['Tier']",
        "filter": {"type": "string", "operator": "equals", "value": tier}}]}]}
    name = f"Gold {unique}"
    r = klaviyo.Segments.create_segment_with_http_info(
        {"data": {"type": "segment", "attributes": {"name": name, "definition": definition}}})
    assert r.status_code == 201
    seg = r.data.data
    assert seg.type.value == "segment" and seg.id
    assert seg.attributes.name == name
    assert seg.attributes.is_active is True

    # Membership is built by the server's engine, asynchronously.
    got = eventually(lambda: [p.id for p in klaviyo.Segments.get_profiles_for_segment(seg.id).data])
    assert got == [member]
    one = klaviyo.Segments.get_segment(seg.id, additional_fields_segment=["profile_count"]).data
    assert one.attributes.profile_count == 1
    assert one.attributes.definition.to_dict()["condition_groups"][0]["conditions"][0]["property"] \
        == "properties['Tier']"
    listed = klaviyo.Segments.get_segments(filter=f'equals(name,"{name}")').data
    assert [s.id for s in listed] == [seg.id]

    r = klaviyo.Segments.update_segment_with_http_info(
        seg.id, {"data": {"type": "segment", "id": seg.id, "attributes": {"name": name + " VIP"}}})
    assert r.status_code == 200
    assert r.data.data.attributes.name == name + " VIP"

    with pytest.raises(ApiException) as e:
        klaviyo.Segments.create_segment({"data": {"type": "segment", "attributes": {
            "name": "bad", "definition": {"condition_groups": []}}}})
    assert e.value.status == 400
    assert error_of(e.value)["source"]["pointer"] == "/data/attributes/definition/condition_groups"

    assert klaviyo.Segments.delete_segment_with_http_info(seg.id).status_code == 204
    with pytest.raises(ApiException) as e:
        klaviyo.Segments.get_segment(seg.id)
    assert e.value.status == 404
