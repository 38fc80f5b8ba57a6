#!/usr/bin/env python3
"""A tiny in-memory stand-in for Outflow's Klaviyo-compatible API, for testing the *test suite*.

Not Outflow, and not used by CI. It answers just enough of /api/ (and /outflow/v1/health) with the
response shapes the klaviyo-api SDK accepts (see ../SDK_NOTES.md) so that test_klaviyo_sdk.py can
be checked before the real server exists, and so the server engineers have an executable example
of minimal responses that pass the SDK's pydantic models.

    python tests/client/tools/fake_server.py --port 8765 --key pk_test_x [--log requests.jsonl]
    OUTFLOW_TEST_URL=http://127.0.0.1:8765 OUTFLOW_TEST_API_KEY=pk_test_x .venv/bin/python -m pytest tests/client
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

LOCK = threading.Lock()
PROFILES: dict[str, dict] = {}
EVENTS: list[dict] = []
METRICS: dict[str, str] = {}  # name -> id
LISTS: dict[str, dict] = {}
ITEMS: dict[str, dict] = {}
PROFILE_FIELDS = ["email", "phone_number", "external_id", "first_name", "last_name", "organization",
                  "locale", "title", "image"]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_id() -> str:
    return uuid.uuid4().hex[:26].upper()


def err(status: int, code: str, title: str, detail: str, **extra) -> tuple[int, dict]:
    e = {"id": str(uuid.uuid4()), "status": status, "code": code, "title": title, "detail": detail,
         "source": {"pointer": "/data/attributes"}, "links": {}, "meta": {}}
    e.update(extra)
    return status, {"errors": [e]}


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-outflow"
    protocol_version = "HTTP/1.1"
    key = ""
    log_file = None

    def log_message(self, *a):
        pass

    def _send(self, status: int, body: dict | None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/vnd.api+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self):
        u = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        body = json.loads(raw) if raw else None
        if self.log_file:
            with LOCK, open(self.log_file, "a") as f:
                f.write(json.dumps({"method": self.command, "path": self.path,
                                    "headers": dict(self.headers), "body": body}) + "\n")
        if u.path == "/outflow/v1/health":
            return self._send(200, {"status": "ok"})
        if self.headers.get("Authorization") != f"Klaviyo-API-Key {self.key}":
            return self._send(*err(401, "not_authenticated", "Authentication credentials were not provided.",
                                   "Missing or invalid private key."))
        with LOCK:
            status, out = route(self.command, u.path, q, body, self.headers)
        self._send(status, out)

    do_GET = do_POST = do_PATCH = do_DELETE = _handle


def profile_res(p, extra_attrs=None, subs=False):
    attrs = {k: p.get(k) for k in PROFILE_FIELDS}
    attrs.update(created=p["created"], updated=p["updated"], last_event_date=None,
                 location=p.get("location") or {}, properties=p.get("properties") or {})
    if subs:
        attrs["subscriptions"] = {"email": {"marketing": {
            "can_receive_email_marketing": p.get("consent") == "SUBSCRIBED",
            "consent": p.get("consent") or "NEVER_SUBSCRIBED"}}}
    attrs.update(extra_attrs or {})
    return {"type": "profile", "id": p["id"], "attributes": attrs,
            "links": {"self": f"/api/profiles/{p['id']}/"}}


def find_profile(attrs):
    for key in ("email", "phone_number", "external_id"):
        if attrs.get(key):
            for p in PROFILES.values():
                if p.get(key) == attrs[key]:
                    return p
    return None


def apply_profile(p, attrs):
    for k in PROFILE_FIELDS:
        if k in attrs:
            p[k] = attrs[k]
    if "location" in attrs:
        p["location"] = {**(p.get("location") or {}), **(attrs["location"] or {})}
    if "properties" in attrs:
        props = p.setdefault("properties", {})
        for k, v in (attrs["properties"] or {}).items():
            if v is None:
                props.pop(k, None)
            else:
                props[k] = v
    p["updated"] = now()


def make_profile(attrs):
    p = {"id": new_id(), "created": now(), "updated": now()}
    apply_profile(p, attrs)
    PROFILES[p["id"]] = p
    return p


def list_res(lst):
    return {"type": "list", "id": lst["id"], "attributes": {
        "name": lst["name"], "created": lst["created"], "updated": lst["created"],
        "opt_in_process": lst["opt_in_process"]}, "links": {"self": f"/api/lists/{lst['id']}/"}}


def item_res(it):
    return {"type": "catalog-item", "id": it["id"], "attributes": {
        k: it.get(k) for k in ("external_id", "title", "description", "price", "url", "image_full_url",
                               "image_thumbnail_url", "images", "custom_metadata", "published",
                               "created", "updated")}, "links": {"self": f"/api/catalog-items/{it['id']}/"}}


def collection(items, path):
    return {"data": items, "links": {"self": path, "next": None, "prev": None}}


def route(method, path, q, body, headers):  # noqa: C901 - a fake, kept in one place
    m = re.fullmatch(r"/api/([a-z-]+)/?(?:([^/]+)/?)?(?:(relationships/)?([a-z-]+)/?)?", path)
    if not m:
        return err(404, "not_found", "Not found.", path)
    coll, rid, _rel, sub = m.groups()
    rid = unquote(rid) if rid else rid  # the SDK percent-encodes path ids ($ and : included)
    data = (body or {}).get("data")

    if coll == "events" and method == "POST" and not rid:
        a = data["attributes"]
        pattrs = a["profile"]["data"]["attributes"]
        p = find_profile(pattrs) or make_profile({})
        apply_profile(p, pattrs)
        name = a["metric"]["data"]["attributes"]["name"]
        mid = METRICS.setdefault(name, new_id())
        t = a.get("time") or now()
        dt = datetime.fromisoformat(t.replace("Z", "+00:00")).replace(microsecond=0)
        uid = a.get("unique_id") or dt.isoformat()
        if not any(e["profile_id"] == p["id"] and e["metric_id"] == mid and e["unique_id"] == uid for e in EVENTS):
            EVENTS.append({"id": new_id(), "profile_id": p["id"], "metric_id": mid, "unique_id": uid,
                           "datetime": dt, "properties": a.get("properties") or {}})
        return 202, None
    if coll == "events" and method == "GET" and not rid:
        f = re.fullmatch(r'equals\(profile_id,"([^"]+)"\)', q.get("filter", ""))
        evs = [e for e in EVENTS if not f or e["profile_id"] == f.group(1)]
        return 200, collection([{
            "type": "event", "id": e["id"], "attributes": {
                "timestamp": int(e["datetime"].timestamp()), "event_properties": e["properties"],
                "datetime": e["datetime"].isoformat(), "uuid": str(uuid.uuid4())},
            "relationships": {
                "profile": {"data": {"type": "profile", "id": e["profile_id"]}},
                "metric": {"data": {"type": "metric", "id": e["metric_id"]}}},
            "links": {"self": f"/api/events/{e['id']}/"}} for e in evs], path)
    if coll == "events" and rid and sub == "metric":
        e = next(e for e in EVENTS if e["id"] == rid)
        name = next(n for n, i in METRICS.items() if i == e["metric_id"])
        return 200, {"data": {"type": "metric", "id": e["metric_id"], "attributes": {
            "name": name, "created": now(), "updated": now(), "integration": None},
            "links": {"self": f"/api/metrics/{e['metric_id']}/"}}}

    if coll == "profiles" and method == "POST" and not rid:
        a = data["attributes"]
        dup = find_profile(a)
        if dup:
            return err(409, "duplicate_profile", "Conflict.", "A profile already exists with one of these identifiers.",
                       meta={"duplicate_profile_id": dup["id"]})
        return 201, {"data": profile_res(make_profile(a))}
    if coll == "profiles" and method == "GET" and not rid:
        f = re.fullmatch(r'equals\(email,"([^"]+)"\)', q.get("filter", ""))
        ps = [p for p in PROFILES.values() if not f or p.get("email") == f.group(1)]
        return 200, collection([profile_res(p) for p in ps], path)
    if coll == "profiles" and rid and not sub:
        p = PROFILES.get(rid)
        if not p:
            return err(404, "not_found", "Not found.", f"Profile {rid} not found.")
        if method == "PATCH":
            apply_profile(p, data["attributes"])
        subs = "subscriptions" in q.get("additional-fields[profile]", "")
        return 200, {"data": profile_res(p, subs=subs)}
    if coll == "profile-import" and method == "POST":
        a = data["attributes"]
        p = find_profile(a)
        if p:
            apply_profile(p, a)
            return 200, {"data": profile_res(p)}
        return 201, {"data": profile_res(make_profile(a))}
    if coll == "profile-subscription-bulk-create-jobs" and method == "POST":
        list_id = data["relationships"]["list"]["data"]["id"]
        for pd in data["attributes"]["profiles"]["data"]:
            a = {k: v for k, v in pd["attributes"].items() if k in ("email", "phone_number")}
            p = find_profile(a) or make_profile(a)
            p["consent"] = "SUBSCRIBED"
            LISTS[list_id]["members"].setdefault(p["id"], now())
        return 202, None

    if coll == "lists" and method == "POST" and not rid:
        a = data["attributes"]
        lst = {"id": new_id()[:6], "name": a["name"], "created": now(),
               "opt_in_process": a.get("opt_in_process") or "single_opt_in", "members": {}}
        LISTS[lst["id"]] = lst
        return 201, {"data": list_res(lst)}
    if coll == "lists" and rid:
        lst = LISTS.get(rid)
        if not lst:
            return err(404, "not_found", "Not found.", f"List {rid} not found.")
        if not sub and method == "GET":
            return 200, {"data": list_res(lst)}
        if sub == "profiles" and method == "POST":
            for r in data:
                lst["members"].setdefault(r["id"], now())
            return 204, None
        if sub == "profiles" and method == "GET":
            return 200, collection([profile_res(PROFILES[pid], {"joined_group_at": at})
                                    for pid, at in lst["members"].items()], path)

    if coll == "catalog-items" and method == "POST" and not rid:
        a = data["attributes"]
        iid = f"{a.get('integration_type', '$custom')}:::{a.get('catalog_type', '$default')}:::{a['external_id']}"
        it = {"id": iid, "created": now(), "updated": now(), "images": [], "image_thumbnail_url": None, **a}
        ITEMS[iid] = it
        return 201, {"data": item_res(it)}
    if coll == "catalog-items" and rid:
        it = ITEMS.get(rid)
        if not it:
            return err(404, "not_found", "Not found.", f"Catalog item {rid} not found.")
        if method == "PATCH":
            it.update(data["attributes"], updated=now())
        return 200, {"data": item_res(it)}

    return err(404, "not_found", "Not found.", f"{method} {path}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--key", default="pk_test_fake")
    ap.add_argument("--log", help="append every request (method, path, headers, body) as JSON lines")
    args = ap.parse_args()
    Handler.key = args.key
    Handler.log_file = args.log
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
