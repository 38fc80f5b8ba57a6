//! The Klaviyo-compatible API over HTTP, against SQLite and PostgreSQL.

mod common;

use common::{assert_error, event_body, start, App};
use serde_json::{json, Value};

async fn profile_id_by_email(app: &App, email: &str) -> String {
    let r = app
        .get(&format!("/api/profiles?filter=equals(email,\"{email}\")"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["data"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("profile {email} in {}", r.text))
        .to_owned()
}

async fn events_create_and_deduplicate(backend: &str) {
    let app = start(backend).await;
    let r = app
        .post(
            "/api/events",
            event_body("Placed Order", "Sarah@example.com", Some("o-1")),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert!(r.text.is_empty(), "202 has no body");
    let r = app
        .post(
            "/api/events",
            event_body("Placed Order", "sarah@example.com", Some("o-1")),
        )
        .await;
    assert_eq!(r.status, 202);
    let r = app
        .post(
            "/api/events",
            event_body("Placed Order", "sarah@example.com", Some("o-2")),
        )
        .await;
    assert_eq!(r.status, 202);
    let pid = profile_id_by_email(&app, "sarah@example.com").await;
    let r = app
        .get(&format!("/api/events?filter=equals(profile_id,\"{pid}\")"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let data = r.body["data"].as_array().expect("data");
    assert_eq!(data.len(), 2, "unique_id deduplicates: {}", r.text);
    let ev = &data[0];
    assert_eq!(ev["type"], "event");
    assert_eq!(
        ev["attributes"]["event_properties"]["ProductName"],
        "Winnie the Pooh"
    );
    assert!(ev["attributes"]["timestamp"].is_i64());
    assert!(
        ev["links"]["self"].as_str().is_some_and(
            |s| s.ends_with(&format!("/api/events/{}/", ev["id"].as_str().unwrap_or("")))
        )
    );
    let id = ev["id"].as_str().expect("id");
    let one = app.get(&format!("/api/events/{id}")).await;
    assert_eq!(one.status, 200);
    assert_eq!(
        one.body["data"]["relationships"]["profile"]["data"]["id"],
        pid.as_str()
    );
    let metric_id = one.body["data"]["relationships"]["metric"]["data"]["id"]
        .as_str()
        .expect("metric id")
        .to_owned();
    let m = app.get(&format!("/api/metrics/{metric_id}")).await;
    assert_eq!(m.status, 200);
    assert_eq!(m.body["data"]["attributes"]["name"], "Placed Order");
    let ms = app.get("/api/metrics").await;
    assert_eq!(ms.body["data"].as_array().map(Vec::len), Some(1));
    let em = app.get(&format!("/api/events/{id}/metric")).await;
    assert_eq!(em.body["data"]["id"], metric_id.as_str());
    app.stop().await;
}

async fn event_limits_and_malformed_input(backend: &str) {
    let app = start(backend).await;
    // Malformed JSON.
    let r = app
        .raw(
            "POST",
            "/api/events",
            &[
                ("Authorization", &format!("Klaviyo-API-Key {}", common::KEY)),
                ("revision", "2026-07-15"),
                ("Content-Type", "application/json"),
            ],
            Some(b"{\"data\": ".to_vec()),
        )
        .await;
    assert_error(&r, 400, "parse_error");
    // Wrong type.
    let mut b = event_body("M", "a@b.co", None);
    b["data"]["attributes"]["value"] = json!("ten");
    let e = assert_error(&app.post("/api/events", b).await, 400, "invalid");
    assert!(
        e["source"]["pointer"]
            .as_str()
            .is_some_and(|p| p.contains("value")),
        "{e}"
    );
    // Missing required field.
    let mut b = event_body("M", "a@b.co", None);
    b["data"]["attributes"]
        .as_object_mut()
        .expect("obj")
        .remove("metric");
    let e = assert_error(&app.post("/api/events", b).await, 400, "invalid");
    assert!(
        e["detail"].as_str().is_some_and(|d| d.contains("metric")),
        "{e}"
    );
    // No identifier.
    let mut b = event_body("M", "a@b.co", None);
    b["data"]["attributes"]["profile"]["data"]["attributes"] = json!({"first_name": "X"});
    assert_error(&app.post("/api/events", b).await, 400, "invalid");
    // Metric name too long.
    let long = "x".repeat(128);
    assert_error(
        &app.post("/api/events", event_body(&long, "a@b.co", None))
            .await,
        400,
        "invalid",
    );
    // Too many properties.
    let mut b = event_body("M", "a@b.co", None);
    let props: serde_json::Map<String, Value> =
        (0..401).map(|i| (format!("p{i}"), json!(i))).collect();
    b["data"]["attributes"]["properties"] = Value::Object(props);
    assert_error(&app.post("/api/events", b).await, 400, "invalid");
    // Time before 1990 and more than a year ahead.
    let mut b = event_body("M", "a@b.co", None);
    b["data"]["attributes"]["time"] = json!("1989-12-31T00:00:00Z");
    assert_error(&app.post("/api/events", b).await, 400, "invalid");
    let mut b = event_body("M", "a@b.co", None);
    b["data"]["attributes"]["time"] = json!("2028-01-01T00:00:00Z");
    assert_error(&app.post("/api/events", b).await, 400, "invalid");
    // Bad phone number.
    let mut b = event_body("M", "a@b.co", None);
    b["data"]["attributes"]["profile"]["data"]["attributes"] = json!({"phone_number": "12345"});
    assert_error(&app.post("/api/events", b).await, 400, "invalid");
    // Oversized bodies: an event body over 5 MB gets a clean 413…
    let mut b = event_body("M", "a@b.co", None);
    b["data"]["attributes"]["properties"]["blob"] = json!("y".repeat(5 * 1024 * 1024 + 10));
    assert_error(&app.post("/api/events", b).await, 413, "payload_too_large");
    // …a huge declared length is refused before any of it is read…
    let raw = oversized_events_request(&app).await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.contains("payload_too_large"), "{raw}");
    // …and profiles over 100 KB while reading an undeclared-length body.
    let mut p =
        json!({"data": {"type": "profile", "attributes": {"email": "big@b.co", "properties": {}}}});
    p["data"]["attributes"]["properties"]["blob"] = json!("y".repeat(150 * 1024));
    assert_error(
        &app.post("/api/profiles", p).await,
        413,
        "payload_too_large",
    );
    // Wrong content type.
    let r = app
        .raw(
            "POST",
            "/api/events",
            &[
                ("Authorization", &format!("Klaviyo-API-Key {}", common::KEY)),
                ("revision", "2026-07-15"),
                ("Content-Type", "text/plain"),
            ],
            Some(b"{}".to_vec()),
        )
        .await;
    assert_eq!(r.status, 415, "{}", r.text);
    // application/json is accepted as well as vnd.api+json.
    let r = app
        .raw(
            "POST",
            "/api/events",
            &[
                ("Authorization", &format!("Klaviyo-API-Key {}", common::KEY)),
                ("revision", "2023-07-15"),
                ("Content-Type", "application/json"),
            ],
            Some(event_body("M", "ok@b.co", None).to_string().into_bytes()),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    // Nothing half-written: only the last request stored anything.
    let r = app.get("/api/events").await;
    assert_eq!(
        r.body["data"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.text
    );
    app.stop().await;
}

async fn oversized_events_request(app: &App) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Klaviyo-API-Key {}\r\nrevision: 2026-07-15\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"data\":",
        common::KEY,
        64 * 1024 * 1024
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

async fn headers_and_auth(backend: &str) {
    let app = start(backend).await;
    let key = format!("Klaviyo-API-Key {}", common::KEY);
    let r = app
        .raw("GET", "/api/profiles", &[("Authorization", &key)], None)
        .await;
    assert_error(&r, 400, "invalid");
    assert!(r.body["errors"][0]["detail"]
        .as_str()
        .is_some_and(|d| d.contains("revision")));
    let r = app
        .raw(
            "GET",
            "/api/profiles",
            &[("Authorization", &key), ("revision", "yesterday")],
            None,
        )
        .await;
    assert_error(&r, 400, "invalid");
    let r = app
        .raw("GET", "/api/profiles", &[("revision", "2024-10-15")], None)
        .await;
    assert_error(&r, 401, "not_authenticated");
    let r = app
        .raw(
            "GET",
            "/api/profiles",
            &[
                ("revision", "2024-10-15"),
                ("Authorization", "Klaviyo-API-Key pk_wrong_key_000"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = app
        .raw(
            "GET",
            "/api/profiles",
            &[("revision", "2024-10-15.pre"), ("Authorization", &key)],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app.get("/api/nothing-here").await;
    assert_error(&r, 404, "not_found");
    let h = app.raw("GET", "/outflow/v1/health", &[], None).await;
    assert_eq!(h.status, 200, "{}", h.text);
    assert_eq!(h.body["status"], "ok");
    app.stop().await;
}

async fn profiles_crud(backend: &str) {
    let app = start(backend).await;
    let body = json!({"data": {"type": "profile", "attributes": {
        "email": "ada@example.com", "first_name": "Ada", "external_id": "A1",
        "location": {"city": "London", "zip": "N1"}, "properties": {"tier": "gold"}}}});
    let r = app.post("/api/profiles", body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["data"]["id"].as_str().expect("id").to_owned();
    assert_eq!(r.body["data"]["type"], "profile");
    assert_eq!(r.body["data"]["attributes"]["first_name"], "Ada");
    assert_eq!(r.body["data"]["attributes"]["location"]["city"], "London");
    let self_link = r.body["data"]["links"]["self"]
        .as_str()
        .expect("links.self")
        .to_owned();
    assert!(
        self_link.ends_with(&format!("/api/profiles/{id}/")),
        "{self_link}"
    );
    let via_link = app
        .send(
            app.http
                .get(&self_link)
                .header("Authorization", format!("Klaviyo-API-Key {}", common::KEY))
                .header("revision", "2026-07-15"),
        )
        .await;
    assert_eq!(
        via_link.status, 200,
        "links.self is served: {}",
        via_link.text
    );
    let dup = app
        .post(
            "/api/profiles",
            json!({"data": {"type": "profile", "attributes": {"external_id": "A1"}}}),
        )
        .await;
    let e = assert_error(&dup, 409, "duplicate_profile");
    assert_eq!(e["meta"]["duplicate_profile_id"], id.as_str());
    let r = app.patch(&format!("/api/profiles/{id}"), json!({"data": {"type": "profile", "id": id, "attributes": {"first_name": null, "last_name": "Lovelace", "properties": {"vip": true}}}})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let a = &r.body["data"]["attributes"];
    assert!(a["first_name"].is_null());
    assert_eq!(a["last_name"], "Lovelace");
    assert_eq!(a["email"], "ada@example.com", "omitted stays");
    assert_eq!(a["properties"], json!({"tier": "gold", "vip": true}));
    let g = app.get(&format!("/api/profiles/{id}")).await;
    assert_eq!(g.body["data"]["attributes"]["last_name"], "Lovelace");
    assert_error(
        &app.get("/api/profiles/01NOSUCHPROFILE000000000000").await,
        404,
        "not_found",
    );
    assert_error(&app.patch("/api/profiles/01NOSUCHPROFILE000000000000", json!({"data": {"type": "profile", "id": "01NOSUCHPROFILE000000000000", "attributes": {}}})).await, 404, "not_found");
    // PATCH with an identifier another profile holds.
    let other = app
        .post(
            "/api/profiles",
            json!({"data": {"type": "profile", "attributes": {"email": "bob@example.com"}}}),
        )
        .await;
    let oid = other.body["data"]["id"].as_str().expect("id").to_owned();
    let r = app.patch(&format!("/api/profiles/{oid}"), json!({"data": {"type": "profile", "id": oid, "attributes": {"email": "ada@example.com"}}})).await;
    assert_error(&r, 409, "duplicate_profile");
    // profile-import: 201 created, 200 updated.
    let r = app.post("/api/profile-import", json!({"data": {"type": "profile", "attributes": {"email": "cy@example.com", "first_name": "Cy"}}})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let cid = r.body["data"]["id"].as_str().expect("id").to_owned();
    let r = app.post("/api/profile-import", json!({"data": {"type": "profile", "attributes": {"email": "cy@example.com", "last_name": "Young"}}})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["id"], cid.as_str());
    assert_eq!(r.body["data"]["attributes"]["first_name"], "Cy");
    // Invalid attributes.
    assert_error(
        &app.post(
            "/api/profiles",
            json!({"data": {"type": "profile", "attributes": {"email": "not-an-email"}}}),
        )
        .await,
        400,
        "invalid",
    );
    assert_error(&app.post("/api/profiles", json!({"data": {"type": "profile", "attributes": {"first_name": 7, "email": "x@y.co"}}})).await, 400, "invalid");
    assert_error(
        &app.post(
            "/api/profiles",
            json!({"data": {"type": "list", "attributes": {"email": "x@y.co"}}}),
        )
        .await,
        400,
        "invalid",
    );
    app.stop().await;
}

async fn profiles_filter_and_paginate(backend: &str) {
    let app = start(backend).await;
    for i in 0..5 {
        let r = app.post("/api/profiles", json!({"data": {"type": "profile", "attributes": {"email": format!("p{i}@x.co"), "phone_number": format!("+1500555000{i}"), "external_id": format!("e{i}")}}})).await;
        assert_eq!(r.status, 201);
    }
    let r = app.get("/api/profiles?page[size]=2").await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(2));
    let mut seen = 2;
    let mut next = r.body["links"]["next"].as_str().map(str::to_owned);
    while let Some(n) = next {
        let path = n
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()))
            .expect("path");
        let r = app.get(&path).await;
        assert_eq!(r.status, 200, "{}", r.text);
        seen += r.body["data"].as_array().map_or(0, Vec::len);
        next = r.body["links"]["next"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, 5);
    let r = app
        .get("/api/profiles?filter=any(email,[\"p1@x.co\",\"p3@x.co\"])")
        .await;
    assert_eq!(
        r.body["data"].as_array().map(Vec::len),
        Some(2),
        "{}",
        r.text
    );
    let r = app
        .get("/api/profiles?filter=equals(phone_number,\"%2B15005550002\")")
        .await;
    assert_eq!(r.body["data"][0]["attributes"]["email"], "p2@x.co");
    let r = app
        .get("/api/profiles?filter=equals(external_id,\"e4\")")
        .await;
    assert_eq!(r.body["data"][0]["attributes"]["email"], "p4@x.co");
    let r = app
        .get("/api/profiles?filter=greater-than(updated,2020-01-01T00:00:00Z)")
        .await;
    assert_eq!(
        r.body["data"].as_array().map(Vec::len),
        Some(5),
        "{}",
        r.text
    );
    let e = assert_error(
        &app.get("/api/profiles?filter=equals(email").await,
        400,
        "invalid",
    );
    assert_eq!(e["source"]["parameter"], "filter");
    assert_error(
        &app.get("/api/profiles?filter=greater-than(email,\"x\")")
            .await,
        400,
        "invalid",
    );
    assert_error(&app.get("/api/profiles?page[size]=0").await, 400, "invalid");
    assert_error(
        &app.get("/api/profiles?page[cursor]=%%%").await,
        400,
        "invalid",
    );
    app.stop().await;
}

async fn identity_conflict_changes_nothing(backend: &str) {
    let app = start(backend).await;
    app.post(
        "/api/profiles",
        json!({"data": {"type": "profile", "attributes": {"email": "a@x.co"}}}),
    )
    .await;
    app.post(
        "/api/profiles",
        json!({"data": {"type": "profile", "attributes": {"external_id": "X9"}}}),
    )
    .await;
    let mut b = event_body("M", "a@x.co", None);
    b["data"]["attributes"]["profile"]["data"]["attributes"] =
        json!({"email": "a@x.co", "external_id": "X9", "first_name": "Changed"});
    let e = assert_error(&app.post("/api/events", b).await, 409, "conflict");
    assert!(
        e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("two different profiles")),
        "{e}"
    );
    assert_eq!(
        app.get("/api/events").await.body["data"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    let r = app
        .get("/api/profiles?filter=equals(email,\"a@x.co\")")
        .await;
    assert!(r.body["data"][0]["attributes"]["first_name"].is_null());
    app.stop().await;
}

async fn lists_and_subscriptions(backend: &str) {
    let app = start(backend).await;
    let r = app
        .post(
            "/api/lists",
            json!({"data": {"type": "list", "attributes": {"name": "Newsletter"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let lid = r.body["data"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        r.body["data"]["attributes"]["opt_in_process"],
        "single_opt_in"
    );
    let r = app
        .patch(
            &format!("/api/lists/{lid}"),
            json!({"data": {"type": "list", "id": lid, "attributes": {"name": "News"}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["attributes"]["name"], "News");
    let p = app
        .post(
            "/api/profiles",
            json!({"data": {"type": "profile", "attributes": {"email": "m@x.co"}}}),
        )
        .await;
    let pid = p.body["data"]["id"].as_str().expect("id").to_owned();
    let rel = format!("/api/lists/{lid}/relationships/profiles");
    let r = app
        .post(&rel, json!({"data": [{"type": "profile", "id": pid}]}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = app
        .post(&rel, json!({"data": [{"type": "profile", "id": pid}]}))
        .await;
    assert_eq!(r.status, 204, "adding twice is fine");
    assert_error(
        &app.post(
            &rel,
            json!({"data": [{"type": "profile", "id": "01NOPE0000000000000000000"}]}),
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        &app.post(
            "/api/lists/NOPE/relationships/profiles",
            json!({"data": [{"type": "profile", "id": pid}]}),
        )
        .await,
        404,
        "not_found",
    );
    let m = app.get(&format!("/api/lists/{lid}/profiles")).await;
    assert_eq!(m.status, 200, "{}", m.text);
    assert_eq!(m.body["data"][0]["id"], pid.as_str());
    assert!(m.body["data"][0]["attributes"]["joined_group_at"].is_string());
    let g = app
        .get(&format!(
            "/api/lists/{lid}?additional-fields[list]=profile_count"
        ))
        .await;
    assert_eq!(
        g.body["data"]["attributes"]["profile_count"], 1,
        "{}",
        g.text
    );
    // Subscribe: creates the profile, records consent, joins the list.
    let r = app.post("/api/profile-subscription-bulk-create-jobs", json!({"data": {"type": "profile-subscription-bulk-create-job", "attributes": {
        "custom_source": "checkout", "historical_import": true,
        "profiles": {"data": [{"type": "profile", "attributes": {"email": "s@x.co", "subscriptions": {"email": {"marketing": {"consent": "SUBSCRIBED"}}}}}]}},
        "relationships": {"list": {"data": {"type": "list", "id": lid}}}}})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let sid = profile_id_by_email(&app, "s@x.co").await;
    let s = app
        .get(&format!(
            "/api/profiles/{sid}?additional-fields[profile]=subscriptions"
        ))
        .await;
    assert_eq!(
        s.body["data"]["attributes"]["subscriptions"]["email"]["marketing"]["consent"],
        "SUBSCRIBED",
        "{}",
        s.text
    );
    assert_eq!(
        s.body["data"]["attributes"]["subscriptions"]["email"]["marketing"]
            ["can_receive_email_marketing"],
        true
    );
    let m = app.get(&format!("/api/lists/{lid}/profiles")).await;
    assert_eq!(m.body["data"].as_array().map(Vec::len), Some(2));
    let r = app
        .send(
            app.http
                .delete(app.url(&rel))
                .header("Authorization", format!("Klaviyo-API-Key {}", common::KEY))
                .header("revision", "2026-07-15")
                .header("Content-Type", "application/vnd.api+json")
                .body(json!({"data": [{"type": "profile", "id": pid}]}).to_string()),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let m = app.get(&format!("/api/lists/{lid}/profiles")).await;
    assert_eq!(m.body["data"].as_array().map(Vec::len), Some(1));
    let all = app.get("/api/lists").await;
    assert_eq!(all.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(app.delete(&format!("/api/lists/{lid}")).await.status, 204);
    assert_error(
        &app.get(&format!("/api/lists/{lid}")).await,
        404,
        "not_found",
    );
    app.stop().await;
}

async fn catalog_items(backend: &str) {
    let app = start(backend).await;
    let body = json!({"data": {"type": "catalog-item", "attributes": {
        "external_id": "SKU1", "integration_type": "$custom", "catalog_type": "$default",
        "title": "Mug", "description": "A mug", "url": "https://shop.example/mug", "price": 20.0,
        "custom_metadata": {"color": "blue"}, "published": true}}});
    let r = app.post("/api/catalog-items", body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["data"]["id"], "$custom:::$default:::SKU1");
    assert_error(&app.post("/api/catalog-items", body).await, 409, "conflict");
    let path = "/api/catalog-items/%24custom%3A%3A%3A%24default%3A%3A%3ASKU1";
    let r = app.patch(path, json!({"data": {"type": "catalog-item", "id": "$custom:::$default:::SKU1", "attributes": {"price": 15.5}}})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["attributes"]["price"], 15.5);
    assert_eq!(r.body["data"]["attributes"]["title"], "Mug");
    let g = app.get(path).await;
    assert_eq!(
        g.body["data"]["attributes"]["custom_metadata"]["color"],
        "blue"
    );
    let l = app.get("/api/catalog-items").await;
    assert_eq!(l.body["data"].as_array().map(Vec::len), Some(1));
    let missing = json!({"data": {"type": "catalog-item", "attributes": {"external_id": "SKU2", "title": "x"}}});
    assert_error(
        &app.post("/api/catalog-items", missing).await,
        400,
        "invalid",
    );
    assert_eq!(app.delete(path).await.status, 204);
    assert_error(&app.get(path).await, 404, "not_found");
    app.stop().await;
}

async fn bulk_events(backend: &str) {
    let app = start(backend).await;
    let body = json!({"data": {"type": "event-bulk-create-job", "attributes": {"events-bulk-create": {"data": [
        {"type": "event-bulk-create", "attributes": {
            "profile": {"data": {"type": "profile", "attributes": {"email": "b1@x.co"}}},
            "events": {"data": [
                {"type": "event", "attributes": {"properties": {"n": 1}, "metric": {"data": {"type": "metric", "attributes": {"name": "Viewed"}}}, "unique_id": "1"}},
                {"type": "event", "attributes": {"properties": {"n": 2}, "metric": {"data": {"type": "metric", "attributes": {"name": "Viewed"}}}, "unique_id": "2"}}]}}},
        {"type": "event-bulk-create", "attributes": {
            "profile": {"data": {"type": "profile", "attributes": {"email": "b2@x.co"}}},
            "events": {"data": [
                {"type": "event", "attributes": {"properties": {}, "metric": {"data": {"type": "metric", "attributes": {"name": "Viewed"}}}}}]}}}]}}}});
    let r = app.post("/api/event-bulk-create-jobs", body).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let r = app.get("/api/events").await;
    assert_eq!(
        r.body["data"].as_array().map(Vec::len),
        Some(3),
        "{}",
        r.text
    );
    app.stop().await;
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
    events_create_and_deduplicate,
    event_limits_and_malformed_input,
    headers_and_auth,
    profiles_crud,
    profiles_filter_and_paginate,
    identity_conflict_changes_nothing,
    lists_and_subscriptions,
    catalog_items,
    bulk_events,
);
