//! Axum extractors for `/api/`: JSON:API bodies, the `revision` header, the API key.
//!
//! All rejections are [`ApiError`]s so clients always get Klaviyo's error body.

use std::fmt::Write as _;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use crate::error::ApiError;

/// Klaviyo's documented limit for events and bulk jobs (5 MB).
pub const EVENTS_BODY_LIMIT: usize = 5 * 1024 * 1024;
/// Klaviyo's documented limit for profile create/update/import (100 KB).
pub const PROFILES_BODY_LIMIT: usize = 100 * 1024;
/// Limit for every other JSON body.
pub const DEFAULT_BODY_LIMIT: usize = 5 * 1024 * 1024;

/// A JSON:API request body deserialized into `T`, at most `LIMIT` bytes.
///
/// The limit is a const parameter so each handler states its own:
/// `JsonApi<CreateProfile, PROFILES_BODY_LIMIT>`. It replaces axum's
/// `DefaultBodyLimit` for this body (the body is read directly).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonApi<T, const LIMIT: usize = DEFAULT_BODY_LIMIT>(pub T);

impl<T, S, const LIMIT: usize> FromRequest<S> for JsonApi<T, LIMIT>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        check_content_type(req.headers())?;
        if let Some(len) = content_length(req.headers()) {
            if len > LIMIT as u64 {
                if len <= DRAIN_LIMIT as u64 {
                    drain(req.into_body(), DRAIN_LIMIT).await;
                }
                return Err(ApiError::payload_too_large(LIMIT));
            }
        }
        let bytes = read_body(req.into_body(), LIMIT).await?;
        parse_json(&bytes).map(JsonApi)
    }
}

/// Oversized bodies up to this size are read and dropped before the 413 is
/// sent: closing a socket with unread input makes the kernel reset the
/// connection, and the client would lose the 413 with it.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

async fn drain(mut body: Body, max: usize) {
    let mut seen = 0usize;
    while seen <= max {
        match body.frame().await {
            Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len()),
            _ => return,
        }
    }
}

/// Reads a whole body, failing with 413 past `limit` bytes.
pub async fn read_body(mut body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::parse_error(format!("Could not read the request body: {e}")))?;
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > limit {
                drain(body, DRAIN_LIMIT.saturating_sub(buf.len())).await;
                return Err(ApiError::payload_too_large(limit));
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(buf.into())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Accepts `application/vnd.api+json` and `application/json` (any parameters),
/// or no content type at all (some HTTP clients omit it); anything else is 415.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let raw = String::from_utf8_lossy(value.as_bytes());
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/vnd.api+json" | "application/json" => Ok(()),
        _ => Err(ApiError::unsupported_media_type(raw.trim())),
    }
}

/// Deserializes a JSON body, mapping failures to Klaviyo-style 400s:
/// syntax errors → `parse_error` naming line and column; type errors →
/// `invalid` with a pointer to the member; missing members → `invalid`
/// pointing at the parent object and naming the member.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // The fast path: valid bodies parse without path tracking; only a body
    // that fails is parsed again to say where.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(map_serde_error)?;
    // Trailing garbage after the document is a syntax error too.
    de.end().map_err(|e| json_syntax_error(&e))?;
    Ok(value)
}

fn map_serde_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let mut pointer = json_pointer(err.path());
    if pointer.is_empty() {
        // The whole document; "/" reads better in a detail than "".
        pointer.push('/');
    }
    let inner = err.into_inner();
    match inner.classify() {
        serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof
        | serde_json::error::Category::Io => json_syntax_error(&inner),
        serde_json::error::Category::Data => {
            let msg = strip_position(&inner.to_string());
            match missing_field_name(&msg) {
                Some(field) => ApiError::missing_field(pointer, field),
                None => {
                    let detail = format!("Invalid value at '{pointer}': {msg}.");
                    ApiError::wrong_type(pointer, detail)
                }
            }
        }
    }
}

fn json_syntax_error(e: &serde_json::Error) -> ApiError {
    let msg = strip_position(&e.to_string());
    ApiError::parse_error(format!(
        "JSON parse error - {msg} at line {} column {}.",
        e.line(),
        e.column()
    ))
}

/// serde_json appends " at line L column C"; we report position ourselves.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Extracts `x` from serde's "missing field `x`".
fn missing_field_name(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("missing field `")?;
    rest.strip_suffix('`')
}

/// Renders a serde path as an RFC 6901 JSON pointer (`""` for the root).
pub fn json_pointer(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => {
                let _ = write!(out, "/{index}");
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                out.push('/');
                out.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            Segment::Unknown => out.push_str("/?"),
        }
    }
    out
}

/// The `revision: YYYY-MM-DD[.suffix]` header Klaviyo requires on `/api/`.
///
/// Any valid date is accepted: real clients still send 2023-era revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub date: NaiveDate,
    /// Text after the first `.`, e.g. `pre`.
    pub suffix: Option<String>,
}

impl Revision {
    /// Parses `YYYY-MM-DD` optionally followed by `.<non-empty suffix>`.
    pub fn parse(value: &str) -> Result<Revision, ApiError> {
        let v = value.trim();
        let (date_part, suffix) = match v.split_once('.') {
            Some((d, s)) => (d, Some(s)),
            None => (v, None),
        };
        let well_formed = date_part.len() == 10
            && date_part.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                _ => b.is_ascii_digit(),
            });
        if !well_formed || suffix.is_some_and(str::is_empty) {
            return Err(ApiError::invalid_revision(v));
        }
        let date = NaiveDate::parse_from_str(date_part, "%Y-%m-%d")
            .map_err(|_| ApiError::invalid_revision(v))?;
        Ok(Revision {
            date,
            suffix: suffix.map(str::to_owned),
        })
    }

    /// Reads and parses the header; missing → 400.
    pub fn from_headers(headers: &HeaderMap) -> Result<Revision, ApiError> {
        let value = headers
            .get("revision")
            .ok_or_else(ApiError::missing_revision)?;
        let text = value
            .to_str()
            .map_err(|_| ApiError::invalid_revision(&String::from_utf8_lossy(value.as_bytes())))?;
        Revision::parse(text)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Revision {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(r) = parts.extensions.get::<Revision>() {
            return Ok(r.clone());
        }
        Revision::from_headers(&parts.headers)
    }
}

/// Middleware (`axum::middleware::from_fn(require_revision)`) that rejects
/// requests without a valid `revision` and stores the parsed [`Revision`] in
/// the request extensions for handlers.
pub async fn require_revision(mut req: Request, next: Next) -> Response {
    match Revision::from_headers(req.headers()) {
        Ok(rev) => {
            req.extensions_mut().insert(rev);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// How the key was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Authorization: Klaviyo-API-Key pk_…` (private API key).
    KlaviyoApiKey,
    /// `Authorization: Bearer …` (Klaviyo's OAuth form; the SDK's `access_token`).
    Bearer,
}

/// The raw credential from `Authorization`. Whether it is valid is for the
/// store layer to decide (unknown key → [`ApiError::authentication_failed`]).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub key: String,
    pub scheme: AuthScheme,
}

impl std::fmt::Debug for ApiKey {
    /// Never print the secret into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: String = self.key.chars().take(6).collect();
        f.debug_struct("ApiKey")
            .field("key", &format_args!("{shown}…"))
            .field("scheme", &self.scheme)
            .finish()
    }
}

impl ApiKey {
    /// The raw key text, for lookup by the store layer.
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// Whether it looks like a Klaviyo private key (`pk_` prefix).
    pub fn is_private_key(&self) -> bool {
        self.key.starts_with("pk_")
    }

    /// Parses `Klaviyo-API-Key <key>` or `Bearer <key>` (scheme case-insensitive).
    pub fn from_headers(headers: &HeaderMap) -> Result<ApiKey, ApiError> {
        const HOW: &str = "Missing or invalid authorization scheme. Please use Klaviyo-API-Key.";
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::not_authenticated(HOW))?;
        let text = value
            .to_str()
            .map_err(|_| ApiError::not_authenticated(HOW))?
            .trim();
        let (scheme, key) = text
            .split_once(|c: char| c.is_ascii_whitespace())
            .ok_or_else(|| ApiError::not_authenticated(HOW))?;
        let scheme = if scheme.eq_ignore_ascii_case("Klaviyo-API-Key") {
            AuthScheme::KlaviyoApiKey
        } else if scheme.eq_ignore_ascii_case("Bearer") {
            AuthScheme::Bearer
        } else {
            return Err(ApiError::not_authenticated(HOW));
        };
        let key = key.trim();
        if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ApiError::not_authenticated(HOW));
        }
        Ok(ApiKey {
            key: key.to_owned(),
            scheme,
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        ApiKey::from_headers(&parts.headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, Request as HttpRequest, StatusCode};
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Doc {
        data: Data,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    struct Data {
        #[serde(rename = "type")]
        kind: String,
        attributes: Attrs,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    struct Attrs {
        email: Option<String>,
        tags: Option<Vec<u32>>,
    }

    fn source(e: &ApiError) -> serde_json::Value {
        e.to_body()["errors"][0]["source"].clone()
    }

    #[test]
    fn parses_valid_body() {
        let d: Doc = parse_json(br#"{"data":{"type":"profile","attributes":{"email":"a@b.c"}}}"#)
            .expect("valid");
        assert_eq!(d.data.attributes.email.as_deref(), Some("a@b.c"));
        assert_eq!(d.data.kind, "profile");
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let e = parse_json::<Doc>(b"{\"data\":\n  {\"type\": }").expect_err("bad");
        assert_eq!(e.code(), "parse_error");
        assert!(e.detail().contains("line 2 column"), "{}", e.detail());
        let e = parse_json::<Doc>(b"").expect_err("empty");
        assert_eq!(e.code(), "parse_error");
        let e = parse_json::<Doc>(br#"{"data":{"type":"x","attributes":{}}} xx"#)
            .expect_err("trailing");
        assert_eq!(e.code(), "parse_error");
    }

    #[test]
    fn wrong_type_points_at_member() {
        let e = parse_json::<Doc>(br#"{"data":{"type":"p","attributes":{"email":5}}}"#)
            .expect_err("bad");
        assert_eq!(e.code(), "invalid");
        assert_eq!(source(&e), json!({"pointer": "/data/attributes/email"}));
        assert!(e.detail().contains("expected a string"), "{}", e.detail());
        let e = parse_json::<Doc>(br#"{"data":{"type":"p","attributes":{"tags":[1,"x"]}}}"#)
            .expect_err("bad");
        assert_eq!(source(&e), json!({"pointer": "/data/attributes/tags/1"}));
    }

    #[test]
    fn missing_field_points_at_parent() {
        let e = parse_json::<Doc>(br#"{"data":{"type":"p"}}"#).expect_err("bad");
        assert_eq!(source(&e), json!({"pointer": "/data"}));
        assert!(e.detail().contains("'attributes'"));
        let e = parse_json::<Doc>(br#"{}"#).expect_err("bad");
        assert_eq!(source(&e), json!({"pointer": "/"}));
    }

    #[test]
    fn wrong_resource_type_points_at_type() {
        // Handlers type `data.type` as a one-variant enum; the error must point at it.
        #[derive(Debug, Deserialize)]
        enum Kind {
            #[serde(rename = "profile")]
            Profile,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct D {
            #[serde(rename = "type")]
            kind: Kind,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Top {
            data: D,
        }
        let e = parse_json::<Top>(br#"{"data":{"type":"event"}}"#).expect_err("bad");
        assert_eq!(source(&e), json!({"pointer": "/data/type"}));
        assert!(e.detail().contains("expected `profile`"), "{}", e.detail());
        let e = parse_json::<Top>(b"[]").expect_err("array");
        assert_eq!(source(&e), json!({"pointer": "/"}));
        assert!(parse_json::<Top>(br#"{"data":{"type":"profile"}}"#).is_ok());
    }

    #[test]
    fn pointer_escapes() {
        let e = parse_json::<std::collections::HashMap<String, Attrs>>(br#"{"a/b~c":{"email":1}}"#)
            .expect_err("bad");
        assert_eq!(source(&e), json!({"pointer": "/a~1b~0c/email"}));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn content_types() {
        for ok in [
            "application/vnd.api+json",
            "application/json",
            "application/json; charset=utf-8",
            "Application/VND.API+JSON;charset=UTF-8",
        ] {
            assert!(
                check_content_type(&headers(&[("content-type", ok)])).is_ok(),
                "{ok}"
            );
        }
        assert!(check_content_type(&HeaderMap::new()).is_ok());
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
        ] {
            let e = check_content_type(&headers(&[("content-type", bad)])).expect_err(bad);
            assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
    }

    async fn extract<const L: usize>(
        ct: &'static str,
        body: &'static str,
    ) -> Result<JsonApi<serde_json::Value, L>, ApiError> {
        let req = HttpRequest::builder()
            .method("POST")
            .header("content-type", ct)
            .body(Body::from(body))
            .expect("request");
        JsonApi::<serde_json::Value, L>::from_request(req, &()).await
    }

    #[tokio::test]
    async fn extractor_enforces_limit_and_type() {
        let ok = extract::<64>("application/json", r#"{"data":1}"#)
            .await
            .expect("ok");
        assert_eq!(ok.0, json!({"data": 1}));
        let e = extract::<4>("application/json", r#"{"data":1}"#)
            .await
            .expect_err("big");
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let e = extract::<64>("text/plain", "{}").await.expect_err("type");
        assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[tokio::test]
    async fn limit_enforced_without_content_length() {
        let stream = futures_stream(vec![b"{\"a\":".to_vec(), b"\"0123456789\"}".to_vec()]);
        let req = HttpRequest::builder()
            .method("POST")
            .body(Body::from_stream(stream))
            .expect("request");
        let e = JsonApi::<serde_json::Value, 8>::from_request(req, &())
            .await
            .expect_err("too big");
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    fn futures_stream(
        chunks: Vec<Vec<u8>>,
    ) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
        struct S(std::collections::VecDeque<Vec<u8>>);
        impl futures_core::Stream for S {
            type Item = Result<Vec<u8>, std::io::Error>;
            fn poll_next(
                mut self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<Self::Item>> {
                std::task::Poll::Ready(self.0.pop_front().map(Ok))
            }
        }
        S(chunks.into())
    }

    #[test]
    fn revisions() {
        for ok in [
            "2026-07-15",
            "2023-07-15",
            "2024-10-15.pre",
            "2024-02-15.beta.1",
            " 2023-02-22 ",
        ] {
            assert!(Revision::parse(ok).is_ok(), "{ok}");
        }
        let r = Revision::parse("2024-10-15.pre").expect("ok");
        assert_eq!(r.suffix.as_deref(), Some("pre"));
        assert_eq!(r.date, NaiveDate::from_ymd_opt(2024, 10, 15).expect("date"));
        for bad in [
            "",
            "2024-13-01",
            "2023-02-30",
            "2024-1-01",
            "20240101",
            "2024-10-15.",
            "latest",
            "2024-10-15x",
        ] {
            let e = Revision::parse(bad).expect_err(bad);
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        }
        let e = Revision::from_headers(&HeaderMap::new()).expect_err("missing");
        assert!(e.detail().contains("revision"));
    }

    #[tokio::test]
    async fn revision_middleware() {
        use axum::routing::get;
        use tower::ServiceExt;
        let app = axum::Router::new()
            .route(
                "/api/x",
                get(|r: Revision| async move { r.date.to_string() }),
            )
            .layer(axum::middleware::from_fn(require_revision));
        let resp = app
            .clone()
            .oneshot(HttpRequest::get("/api/x").body(Body::empty()).expect("req"))
            .await
            .expect("resp");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let resp = app
            .oneshot(
                HttpRequest::get("/api/x")
                    .header("revision", "2023-07-15")
                    .body(Body::empty())
                    .expect("req"),
            )
            .await
            .expect("resp");
        assert_eq!(resp.status(), StatusCode::OK);
    }

    #[test]
    fn api_keys() {
        let k = ApiKey::from_headers(&headers(&[("authorization", "Klaviyo-API-Key pk_abc123")]))
            .expect("ok");
        assert_eq!(k.key, "pk_abc123");
        assert_eq!(k.scheme, AuthScheme::KlaviyoApiKey);
        assert!(k.is_private_key());
        assert!(!format!("{k:?}").contains("abc123"));
        let k = ApiKey::from_headers(&headers(&[("authorization", "bearer tok")])).expect("ok");
        assert_eq!(k.scheme, AuthScheme::Bearer);
        for bad in [
            "",
            "pk_abc",
            "Klaviyo-API-Key",
            "Klaviyo-API-Key   ",
            "Basic abc",
            "Klaviyo-API-Key a b",
        ] {
            let e = ApiKey::from_headers(&headers(&[("authorization", bad)])).expect_err(bad);
            assert_eq!(e.code(), "not_authenticated", "{bad}");
        }
        let e = ApiKey::from_headers(&HeaderMap::new()).expect_err("missing");
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
    }
}
