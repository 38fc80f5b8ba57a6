//! Starts the real server in-process on port 0 with a fresh database, and
//! talks HTTP to it.
#![allow(dead_code)]

use outflow::config::Config;
use outflow_core::ManualClock;
use outflow_testkit::TestDb;
use serde_json::Value;
use std::sync::Arc;

pub const KEY: &str = "pk_test_0123456789abcdef";
pub const REVISION: &str = "2026-07-15";

pub struct App {
    pub base: String,
    pub http: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub server: Option<outflow::Server>,
    pub db: TestDb,
}

pub async fn start(backend: &str) -> App {
    let db = TestDb::by_name(backend);
    start_on(db).await
}

pub async fn start_on(db: TestDb) -> App {
    let config = Config {
        listen: "127.0.0.1:0".into(),
        database_url: db.url(),
        bootstrap_api_key: Some(KEY.into()),
        log: "warn".into(),
        webhooks_allow_private: vec!["127.0.0.1".into()],
        session_ttl_secs: 3600,
        password_hash_memory_kib: 64,
        ..Config::default()
    };
    let clock = Arc::new(ManualClock::new(
        chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
            .expect("valid time")
            .to_utc(),
    ));
    let server = outflow::start(&config, clock.clone())
        .await
        .expect("server starts");
    App {
        base: format!("http://{}", server.addr),
        http: reqwest::Client::new(),
        clock,
        server: Some(server),
        db,
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl App {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let r = req.send().await.expect("request sent");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body read");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    fn authed(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header("Authorization", format!("Klaviyo-API-Key {KEY}"))
            .header("revision", REVISION)
            .header("Accept", "application/vnd.api+json")
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.authed(reqwest::Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.authed(reqwest::Method::DELETE, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(
            self.authed(reqwest::Method::POST, path)
                .header("Content-Type", "application/vnd.api+json")
                .body(body.to_string()),
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send(
            self.authed(reqwest::Method::PATCH, path)
                .header("Content-Type", "application/vnd.api+json")
                .body(body.to_string()),
        )
        .await
    }

    /// A request with full control over headers and raw body.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let mut req = self
            .http
            .request(method.parse().expect("method"), self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        self.send(req).await
    }

    /// Enrols TOTP MFA for the bootstrap owner through the API (as a real
    /// client would), so its key may touch webhook actions. Returns the
    /// secret; `totp` gives codes for later steps.
    pub async fn enrol_mfa(&self) -> String {
        let r = self.post("/outflow/v1/me/mfa", serde_json::json!({})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let secret = r.body["data"]["secret"]
            .as_str()
            .expect("secret")
            .to_owned();
        let code = self.totp(&secret);
        let r = self
            .post(
                "/outflow/v1/me/mfa/confirm",
                serde_json::json!({"code": code}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        secret
    }

    /// The TOTP code of `secret` at the server's (manual) clock.
    pub fn totp(&self, secret: &str) -> String {
        use outflow_core::Clock;
        outflow_store::users::totp_code(secret, self.clock.now().timestamp_micros())
            .expect("totp code")
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
    }
}

pub fn event_body(metric: &str, email: &str, unique_id: Option<&str>) -> Value {
    let mut attrs = serde_json::json!({
        "properties": {"ProductName": "Winnie the Pooh", "$extra": {"html": "<b>x</b>"}},
        "value": 9.99,
        "value_currency": "USD",
        "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
        "profile": {"data": {"type": "profile", "attributes": {"email": email}}}
    });
    if let Some(u) = unique_id {
        attrs["unique_id"] = Value::String(u.into());
    }
    serde_json::json!({"data": {"type": "event", "attributes": attrs}})
}

/// Asserts Klaviyo's error shape and returns the first error object.
pub fn assert_error(r: &Resp, status: u16, code: &str) -> Value {
    assert_eq!(r.status, status, "status for body {}", r.text);
    let errs = r.body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("errors array in {}", r.text));
    assert!(!errs.is_empty());
    let e = &errs[0];
    for f in ["id", "code", "title", "detail"] {
        assert!(
            e[f].is_string(),
            "error field {f} must be a string in {}",
            r.text
        );
    }
    assert_eq!(e["status"], status, "{}", r.text);
    assert_eq!(e["code"], code, "{}", r.text);
    e.clone()
}
