//! Access control over HTTP (issue 6): every refusal of the webhook gate
//! and of keys, sessions and TOTP codes, the allowed paths, and a walk of
//! the whole route table without credentials.

mod common;

use common::{assert_error, start, App, Resp, KEY, REVISION};
use serde_json::{json, Value};

fn auth_header(credential: &str) -> String {
    if credential.starts_with("pk_") {
        format!("Klaviyo-API-Key {credential}")
    } else {
        format!("Bearer {credential}")
    }
}

/// A request as `credential` (an API key or a session token).
async fn call(app: &App, credential: &str, method: &str, path: &str, body: Option<Value>) -> Resp {
    let auth = auth_header(credential);
    let mut headers = vec![
        ("revision", REVISION),
        ("Authorization", auth.as_str()),
        ("Accept", "application/vnd.api+json"),
    ];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    app.raw(
        method,
        path,
        &headers,
        body.map(|b| b.to_string().into_bytes()),
    )
    .await
}

async fn metric_id(app: &App) -> String {
    let r = app
        .post(
            "/api/events",
            common::event_body("Placed Order", "seed@example.com", None),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let r = app.get("/api/metrics").await;
    r.body["data"][0]["id"].as_str().expect("metric").to_owned()
}

fn definition(metric: &str, webhook: bool) -> Value {
    let mut actions = vec![json!({"temporary_id": "mark", "type": "update-profile",
        "links": {"next": if webhook { Value::from("hook") } else { Value::Null }},
        "data": {"status": "live", "profile_operations": [
            {"operator": "update", "property_type": "string", "property_key": "seen", "property_value": "yes"}]}})];
    if webhook {
        actions.push(json!({"temporary_id": "hook", "type": "send-webhook", "links": {"next": null},
            "data": {"status": "live", "message": {"name": "hook", "url": "https://hooks.example.com/x",
                "headers": {"Authorization": "Bearer hook-secret"}, "body": "{}"}}}));
    }
    json!({"triggers": [{"type": "metric", "id": metric}], "actions": actions, "entry_action_id": "mark"})
}

fn flow_body(def: Value) -> Value {
    json!({"data": {"type": "flow", "attributes": {"name": "F", "definition": def}}})
}

/// Creates a user with a password (as the bootstrap owner) and returns its id.
async fn user(app: &App, email: &str, role: &str) -> String {
    let r = app
        .post(
            "/outflow/v1/users",
            json!({"email": email, "role": role, "password": "a long password"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["data"]["role"], role);
    assert!(!r.text.contains("argon2"), "{}", r.text);
    r.body["data"]["id"].as_str().expect("id").to_owned()
}

async fn login(app: &App, email: &str, password: &str, code: Option<&str>) -> Resp {
    let mut body = json!({"email": email, "password": password});
    if let Some(c) = code {
        body["totp_code"] = c.into();
    }
    app.raw(
        "POST",
        "/outflow/v1/auth/login",
        &[("Content-Type", "application/json")],
        Some(body.to_string().into_bytes()),
    )
    .await
}

async fn session(app: &App, email: &str) -> String {
    let r = login(app, email, "a long password", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["token_type"], "Bearer");
    r.body["data"]["token"].as_str().expect("token").to_owned()
}

/// Enrols MFA for whoever `credential` acts as; returns the secret.
async fn enrol(app: &App, credential: &str) -> String {
    let r = call(app, credential, "POST", "/outflow/v1/me/mfa", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let secret = r.body["data"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert!(r.body["data"]["otpauth_uri"]
        .as_str()
        .expect("uri")
        .starts_with("otpauth://totp/Outflow:"));
    let code = app.totp(&secret);
    let r = call(
        app,
        credential,
        "POST",
        "/outflow/v1/me/mfa/confirm",
        Some(json!({ "code": code })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    secret
}

async fn new_key(app: &App, credential: &str, scopes: &[&str]) -> (String, String) {
    let r = call(
        app,
        credential,
        "POST",
        "/outflow/v1/api-keys",
        Some(json!({"name": "test", "scopes": scopes})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let key = r.body["data"]["key"].as_str().expect("key").to_owned();
    (r.body["data"]["id"].as_str().expect("id").to_owned(), key)
}

fn denied(r: &Resp, words: &str) {
    let e = assert_error(r, 403, "permission_denied");
    assert!(
        e["detail"].as_str().unwrap_or("").contains(words),
        "expected '{words}' in {}",
        r.text
    );
}

/// Acceptance 1, the allowed path: the bootstrap key cannot touch webhook
/// actions until its owner enrols MFA (through the API, with a computed
/// TOTP code); then it can. Status-only changes never needed MFA.
async fn bootstrap_key_enrols_mfa_then_creates_a_webhook_flow(backend: &str) {
    let app = start(backend).await;
    let m = metric_id(&app).await;
    let r = app
        .post("/api/flows", flow_body(definition(&m, true)))
        .await;
    denied(&r, "multi-factor");
    // Without a webhook: fine; adding one by PATCH: refused; status: fine.
    let r = app
        .post("/api/flows", flow_body(definition(&m, false)))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["data"]["id"].as_str().expect("id").to_owned();
    let patch_def =
        |def: Value| json!({"data": {"type": "flow", "id": id, "attributes": {"definition": def}}});
    let r = app
        .patch(&format!("/api/flows/{id}"), patch_def(definition(&m, true)))
        .await;
    denied(&r, "multi-factor");
    let r = app
        .patch(
            &format!("/api/flows/{id}"),
            json!({"data": {"type": "flow", "id": id, "attributes": {"status": "live"}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    app.enrol_mfa().await;
    let r = app
        .post("/api/flows", flow_body(definition(&m, true)))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let hooked = r.body["data"]["id"].as_str().expect("id").to_owned();
    let r = app
        .patch(&format!("/api/flows/{id}"), patch_def(definition(&m, true)))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // The audit log names the key, the action and the webhook change.
    let r = app.get("/outflow/v1/audit?page[size]=2").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let e = &r.body["data"][0];
    assert_eq!(e["action"], "flow.update");
    assert_eq!(e["target"]["id"], id.as_str());
    assert_eq!(e["detail"]["webhooks_changed"], true);
    assert!(e["actor"]["api_key_id"].is_string(), "{e}");
    assert_eq!(r.body["data"][1]["target"]["id"], hooked.as_str());
    let next = r.body["links"]["next"]
        .as_str()
        .expect("next page")
        .to_owned();
    let r = app.get(&next).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let actions: Vec<&str> = r.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["mfa.enable", "flow.update"]);
    let r = app
        .get(r.body["links"]["next"].as_str().expect("last page"))
        .await;
    assert_eq!(r.body["data"][0]["action"], "flow.create");
    assert_eq!(r.body["data"][0]["detail"]["webhooks_changed"], false);
    assert!(r.body["links"]["next"].is_null(), "{}", r.text);
    app.stop().await;
}

/// Acceptance 1, each refusal: wrong scope, role too low, MFA not
/// enabled, revoked key, expired session, replayed TOTP code; and a role
/// change that applies to a user's key and session at once.
async fn refusals(backend: &str) {
    let app = start(backend).await;
    let m = metric_id(&app).await;
    let secret = app.enrol_mfa().await;
    let _ = secret;

    // No credentials, an unknown key, an unknown session.
    let r = app
        .raw("GET", "/api/flows", &[("revision", REVISION)], None)
        .await;
    assert_error(&r, 401, "not_authenticated");
    let r = call(&app, "pk_unknown_0123456789", "GET", "/api/flows", None).await;
    assert_error(&r, 401, "authentication_failed");
    let r = call(&app, "ofs_unknown", "GET", "/api/flows", None).await;
    assert_error(&r, 401, "authentication_failed");

    // Wrong scope: a read-only key, and a flows key without webhooks:write.
    let (_, reader) = new_key(&app, KEY, &["flows:read"]).await;
    let r = call(&app, &reader, "GET", "/api/flows", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(
        &app,
        &reader,
        "POST",
        "/api/flows",
        Some(flow_body(definition(&m, false))),
    )
    .await;
    denied(&r, "flows:write");
    let (_, writer) = new_key(&app, KEY, &["flows:write", "metrics:read"]).await;
    let r = call(
        &app,
        &writer,
        "POST",
        "/api/flows",
        Some(flow_body(definition(&m, false))),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = call(
        &app,
        &writer,
        "POST",
        "/api/flows",
        Some(flow_body(definition(&m, true))),
    )
    .await;
    denied(&r, "webhooks:write");
    let r = call(&app, &writer, "GET", "/outflow/v1/users", None).await;
    denied(&r, "scope: admin");

    // Role too low: a campaign coordinator may write flows but not
    // webhooks; an analyst only reads; neither may manage users.
    user(&app, "coord@example.com", "campaign_coordinator").await;
    user(&app, "ana@example.com", "analyst").await;
    let coord = session(&app, "coord@example.com").await;
    let ana = session(&app, "ana@example.com").await;
    let r = call(
        &app,
        &coord,
        "POST",
        "/api/flows",
        Some(flow_body(definition(&m, false))),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = call(
        &app,
        &coord,
        "POST",
        "/api/flows",
        Some(flow_body(definition(&m, true))),
    )
    .await;
    denied(&r, "campaign_coordinator");
    let r = call(&app, &ana, "GET", "/api/flows", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(
        &app,
        &ana,
        "POST",
        "/api/flows",
        Some(flow_body(definition(&m, false))),
    )
    .await;
    denied(&r, "role analyst");
    let r = call(&app, &ana, "GET", "/outflow/v1/users", None).await;
    denied(&r, "owner or admin");
    let r = call(
        &app,
        &ana,
        "POST",
        "/outflow/v1/api-keys",
        Some(json!({"name": "x", "scopes": ["flows:write"]})),
    )
    .await;
    denied(&r, "does not allow flows:write");

    // MFA not enabled: a manager's session; then enrolled, allowed.
    let manager = user(&app, "boss@example.com", "manager").await;
    let boss = session(&app, "boss@example.com").await;
    let r = call(
        &app,
        &boss,
        "POST",
        "/api/flows",
        Some(flow_body(definition(&m, true))),
    )
    .await;
    denied(&r, "multi-factor");
    let boss_secret = enrol(&app, &boss).await;
    let r = call(
        &app,
        &boss,
        "POST",
        "/api/flows",
        Some(flow_body(definition(&m, true))),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);

    // The coordinator may edit the flow's other actions and status, but
    // not edit its webhook action nor delete the flow (which removes it).
    let hooked = r.body["data"]["id"].as_str().expect("id").to_owned();
    let actions = r.body["data"]["attributes"]["definition"]["actions"].clone();
    let (mark, hook) = (actions[0].clone(), actions[1].clone());
    let action_body = |a: &Value| json!({"data": {"type": "flow-action", "id": a["id"], "attributes": {"definition": a}}});
    let mut mark2 = mark.clone();
    mark2["data"]["profile_operations"][0]["property_value"] = json!("no");
    let path = format!("/api/flow-actions/{}", mark["id"].as_str().expect("id"));
    let r = call(&app, &coord, "PATCH", &path, Some(action_body(&mark2))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut hook2 = hook.clone();
    hook2["data"]["message"]["url"] = json!("https://elsewhere.example.com/");
    let path = format!("/api/flow-actions/{}", hook["id"].as_str().expect("id"));
    let r = call(&app, &coord, "PATCH", &path, Some(action_body(&hook2))).await;
    denied(&r, "campaign_coordinator");
    let r = call(&app, &boss, "PATCH", &path, Some(action_body(&hook2))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let status = json!({"data": {"type": "flow", "id": hooked, "attributes": {"status": "live"}}});
    let r = call(
        &app,
        &coord,
        "PATCH",
        &format!("/api/flows/{hooked}"),
        Some(status),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(
        &app,
        &coord,
        "DELETE",
        &format!("/api/flows/{hooked}"),
        None,
    )
    .await;
    denied(&r, "campaign_coordinator");
    let r = call(&app, &boss, "DELETE", &format!("/api/flows/{hooked}"), None).await;
    assert_eq!(r.status, 204, "{}", r.text);

    // Login now needs a code; a code is accepted once.
    app.clock.advance(chrono::Duration::seconds(30));
    let r = login(&app, "boss@example.com", "a long password", None).await;
    assert_error(&r, 401, "not_authenticated");
    let code = app.totp(&boss_secret);
    let r = login(&app, "boss@example.com", "a long password", Some(&code)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let boss2 = r.body["data"]["token"].as_str().expect("token").to_owned();
    let r = login(&app, "boss@example.com", "a long password", Some(&code)).await;
    let e = assert_error(&r, 401, "not_authenticated");
    assert!(
        e["detail"].as_str().unwrap_or("").contains("already used"),
        "{e}"
    );

    // A manager's key with webhooks:write may touch webhooks ...
    let (_, boss_key) = new_key(&app, &boss2, &["flows:write", "webhooks:write"]).await;
    let r = call(
        &app,
        &boss_key,
        "POST",
        "/api/flows",
        Some(flow_body(definition(&m, true))),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // ... until the manager is demoted: at once, for the key and the session.
    let r = app
        .patch(
            &format!("/outflow/v1/users/{manager}"),
            json!({"role": "analyst"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(
        &app,
        &boss_key,
        "POST",
        "/api/flows",
        Some(flow_body(definition(&m, false))),
    )
    .await;
    denied(&r, "role analyst");
    let r = call(
        &app,
        &boss2,
        "POST",
        "/api/flows",
        Some(flow_body(definition(&m, true))),
    )
    .await;
    denied(&r, "analyst");

    // Revoked key: refused on the very next request.
    let (rid, revoked) = new_key(&app, KEY, &["flows:read"]).await;
    let r = call(&app, &revoked, "GET", "/api/flows", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app.delete(&format!("/outflow/v1/api-keys/{rid}")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = call(&app, &revoked, "GET", "/api/flows", None).await;
    assert_error(&r, 401, "authentication_failed");
    let r = app.get("/outflow/v1/api-keys").await;
    assert!(
        !r.text.contains(&revoked),
        "keys are listed without secrets"
    );
    let listed = r.body["data"].as_array().expect("keys");
    assert!(listed
        .iter()
        .any(|k| k["id"] == rid.as_str() && k["revoked"].is_string()));

    // Expired session.
    let r = call(&app, &coord, "GET", "/api/flows", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    app.clock.advance(chrono::Duration::seconds(3601));
    let r = call(&app, &coord, "GET", "/api/flows", None).await;
    let e = assert_error(&r, 401, "not_authenticated");
    assert!(
        e["detail"].as_str().unwrap_or("").contains("expired"),
        "{e}"
    );

    // Deleting a user revokes its keys.
    let r = app.delete(&format!("/outflow/v1/users/{manager}")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = call(&app, &boss_key, "GET", "/api/flows", None).await;
    assert_error(&r, 401, "authentication_failed");
    app.stop().await;
}

/// Repeated failed logins slow down (429 with Retry-After, without
/// checking the password), then lock; a success resets the count.
async fn failed_logins_slow_down_then_lock(backend: &str) {
    let app = start(backend).await;
    user(&app, "u@example.com", "analyst").await;
    for _ in 0..3 {
        let r = login(&app, "u@example.com", "wrong password", None).await;
        assert_error(&r, 401, "not_authenticated");
    }
    // Even the right password waits now.
    let r = login(&app, "u@example.com", "a long password", None).await;
    assert_error(&r, 429, "throttled");
    assert_eq!(r.headers["retry-after"], "1");
    app.clock.advance(chrono::Duration::seconds(1));
    let r = login(&app, "u@example.com", "a long password", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Nine failures in a row lock the login for 15 minutes.
    for _ in 0..9 {
        let r = login(&app, "u@example.com", "wrong password", None).await;
        assert_ne!(r.status, 200);
        app.clock.advance(chrono::Duration::seconds(40));
    }
    app.clock.advance(chrono::Duration::seconds(-40));
    let r = login(&app, "u@example.com", "a long password", None).await;
    assert_error(&r, 429, "throttled");
    app.clock.advance(chrono::Duration::minutes(15));
    let r = login(&app, "u@example.com", "a long password", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Unknown emails get the same answer as wrong passwords.
    let r = login(&app, "nobody@example.com", "a long password", None).await;
    assert_error(&r, 401, "not_authenticated");
    app.stop().await;
}

/// Own sign-in changes need a session or an `admin` key: a narrow key
/// cannot enrol an authenticator. Users change their own password (the
/// current one required; sessions end), and an admin can turn a user's
/// MFA off (a lost device).
async fn self_service(backend: &str) {
    let app = start(backend).await;
    let (_, narrow) = new_key(&app, KEY, &["flows:read"]).await;
    let r = call(&app, &narrow, "POST", "/outflow/v1/me/mfa", None).await;
    denied(&r, "admin");
    let r = call(
        &app,
        &narrow,
        "POST",
        "/outflow/v1/api-keys",
        Some(json!({"name": "x", "scopes": ["flows:read"]})),
    )
    .await;
    denied(&r, "admin");

    let id = user(&app, "m@example.com", "manager").await;
    let s = session(&app, "m@example.com").await;
    let me = call(&app, &s, "GET", "/outflow/v1/me", None).await;
    assert_eq!(me.body["data"]["user"]["id"], id.as_str());
    assert!(!me.body["data"]["scopes"]
        .as_array()
        .expect("scopes")
        .contains(&json!("admin")));
    let r = call(
        &app,
        &s,
        "PATCH",
        "/outflow/v1/me/password",
        Some(json!({"current_password": "not it at all", "password": "another long one"})),
    )
    .await;
    denied(&r, "current_password");
    let r = call(
        &app,
        &s,
        "PATCH",
        "/outflow/v1/me/password",
        Some(json!({"current_password": "a long password", "password": "short"})),
    )
    .await;
    assert_error(&r, 400, "invalid");
    let r = call(
        &app,
        &s,
        "PATCH",
        "/outflow/v1/me/password",
        Some(json!({"current_password": "a long password", "password": "another long one"})),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = call(&app, &s, "GET", "/outflow/v1/me", None).await;
    assert_error(&r, 401, "authentication_failed");
    let r = login(&app, "m@example.com", "another long one", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let s = r.body["data"]["token"].as_str().expect("token").to_owned();

    enrol(&app, &s).await;
    let r = call(&app, &s, "POST", "/outflow/v1/me/mfa", None).await;
    assert_error(&r, 409, "conflict");
    let r = app
        .patch(
            &format!("/outflow/v1/users/{id}"),
            json!({"mfa_enabled": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["mfa_enabled"], false);
    let r = login(&app, "m@example.com", "another long one", None).await;
    assert_eq!(r.status, 200, "no code needed once MFA is off: {}", r.text);
    // An admin may not touch an owner; only owners make owners.
    let a = user(&app, "adm@example.com", "admin").await;
    let _ = a;
    let adm = session(&app, "adm@example.com").await;
    let r = call(
        &app,
        &adm,
        "POST",
        "/outflow/v1/users",
        Some(json!({"email": "o2@example.com", "role": "owner"})),
    )
    .await;
    denied(&r, "Only an owner");
    let r = call(
        &app,
        &adm,
        "PATCH",
        &format!("/outflow/v1/users/{id}"),
        Some(json!({"role": "analyst"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    app.stop().await;
}

/// Acceptance 2: every route of the table that is not public refuses a
/// request without credentials (401; 405 for methods it does not serve).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_non_public_route_requires_credentials() {
    let app = start("sqlite").await;
    let methods = ["GET", "POST", "PATCH", "PUT", "DELETE"];
    let mut checked = 0;
    for spec in outflow_api::routes() {
        let path: String = spec
            .path
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    "dummy-id"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        if spec.public {
            continue;
        }
        let variants = if path.starts_with("/api/") {
            vec![path.clone(), format!("{path}/")]
        } else {
            vec![path.clone()]
        };
        for p in variants {
            let mut refused = 0;
            for m in methods {
                for auth in [None, Some("Klaviyo-API-Key pk_not_a_real_key_0000")] {
                    let mut headers =
                        vec![("revision", REVISION), ("Content-Type", "application/json")];
                    if let Some(a) = auth {
                        headers.push(("Authorization", a));
                    }
                    let r = app.raw(m, &p, &headers, Some(b"{}".to_vec())).await;
                    assert!(
                        r.status == 401 || r.status == 405,
                        "{m} {p} without valid credentials answered {}: {}",
                        r.status,
                        r.text
                    );
                    refused += usize::from(r.status == 401);
                }
            }
            assert!(refused > 0, "{p}: no method refused with 401");
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} paths checked");
    // The public ones: health, and login (its credentials are its body).
    let r = app.raw("GET", "/outflow/v1/health", &[], None).await;
    assert_eq!(r.status, 200);
    let r = login(&app, "owner@localhost", "no password set", None).await;
    assert_error(&r, 401, "not_authenticated");
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
    bootstrap_key_enrols_mfa_then_creates_a_webhook_flow,
    refusals,
    failed_logins_slow_down_then_lock,
    self_service,
);
