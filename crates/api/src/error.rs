//! Klaviyo-shaped error responses.
//!
//! Every 4xx/5xx leaving `/api/` must look like Klaviyo's, because client
//! libraries parse `errors[0].code` / `detail` and some branch on them (e.g. the
//! `duplicate_profile` 409 carries the existing profile id in `meta`).
//! The error codes follow the family Klaviyo uses (`invalid`, `not_found`,
//! `not_authenticated`, `permission_denied`, `parse_error`, `throttled`, …).

use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// Content type of every JSON:API response body, errors included.
pub const JSON_API_CONTENT_TYPE: &str = "application/vnd.api+json";

/// Where in the request an error was found (`errors[].source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorSource {
    /// JSON pointer into the request body, e.g. `/data/attributes/email`.
    Pointer(String),
    /// Name of the offending query parameter, e.g. `filter` or `page[size]`.
    Parameter(String),
}

impl ErrorSource {
    fn to_json(&self) -> Value {
        match self {
            ErrorSource::Pointer(p) => json!({ "pointer": p }),
            ErrorSource::Parameter(p) => json!({ "parameter": p }),
        }
    }
}

/// An error the API reports to the client in Klaviyo's shape.
///
/// The `Display` text is for logs; what the client sees comes from
/// [`ApiError::code`], [`ApiError::title`] and [`ApiError::detail`]
/// (in particular `Internal` never shows its message to the client).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid`: a well-formed request with a bad value.
    #[error("invalid input: {detail}")]
    Invalid {
        detail: String,
        at: Option<ErrorSource>,
    },
    /// 400 `parse_error`: the body is not JSON at all.
    #[error("malformed request: {detail}")]
    ParseError { detail: String },
    /// 401 `not_authenticated`: no usable `Authorization` header.
    #[error("not authenticated: {detail}")]
    NotAuthenticated { detail: String },
    /// 401 `authentication_failed`: a key was given but is not known.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// 403 `permission_denied`: the key lacks a scope.
    #[error("permission denied: {detail}")]
    PermissionDenied { detail: String },
    /// 404 `not_found`.
    #[error("not found: {detail}")]
    NotFound { detail: String },
    /// 405 `method_not_allowed`.
    #[error("method {method} not allowed")]
    MethodNotAllowed { method: String },
    /// 409 `duplicate_profile` with `meta.duplicate_profile_id`.
    #[error("duplicate profile {profile_id}")]
    DuplicateProfile { profile_id: String },
    /// 409 `conflict`.
    #[error("conflict: {detail}")]
    Conflict { detail: String },
    /// 413 `payload_too_large`.
    #[error("payload larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 415 `unsupported_media_type`.
    #[error("unsupported media type {media_type:?}")]
    UnsupportedMediaType { media_type: String },
    /// 429 `throttled`, with a `Retry-After` header.
    #[error("throttled, retry after {retry_after_secs}s")]
    Throttled { retry_after_secs: u64 },
    /// 500 `error`. The message is logged by whoever renders it, never sent.
    #[error("internal error: {message}")]
    Internal { message: String },
}

impl ApiError {
    /// 400 `invalid` with no source.
    pub fn invalid(detail: impl Into<String>) -> Self {
        ApiError::Invalid {
            detail: detail.into(),
            at: None,
        }
    }

    /// 400 `invalid` pointing into the body, e.g. `/data/attributes/email`.
    pub fn invalid_pointer(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::Invalid {
            detail: detail.into(),
            at: Some(ErrorSource::Pointer(pointer.into())),
        }
    }

    /// 400 `invalid` blaming a query parameter, e.g. `filter`.
    pub fn invalid_parameter(parameter: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::Invalid {
            detail: detail.into(),
            at: Some(ErrorSource::Parameter(parameter.into())),
        }
    }

    /// 400 for a required member missing from the object at `parent_pointer`.
    pub fn missing_field(parent_pointer: impl Into<String>, field: &str) -> Self {
        Self::invalid_pointer(parent_pointer, format!("'{field}' is a required field."))
    }

    /// 400 for a member of the wrong JSON type.
    pub fn wrong_type(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::invalid_pointer(pointer, detail)
    }

    /// 400 `parse_error` for a body that is not valid JSON.
    pub fn parse_error(detail: impl Into<String>) -> Self {
        ApiError::ParseError {
            detail: detail.into(),
        }
    }

    /// 400 when the `revision` header is absent.
    pub fn missing_revision() -> Self {
        ApiError::Invalid {
            detail: "Missing required header: revision. Expected format YYYY-MM-DD[.suffix]."
                .into(),
            at: None,
        }
    }

    /// 400 when the `revision` header is not `YYYY-MM-DD[.suffix]`.
    pub fn invalid_revision(value: &str) -> Self {
        ApiError::Invalid {
            detail: format!(
                "Invalid revision header '{}'. Expected format YYYY-MM-DD[.suffix].",
                truncate(value, 64)
            ),
            at: None,
        }
    }

    /// 401 `not_authenticated`.
    pub fn not_authenticated(detail: impl Into<String>) -> Self {
        ApiError::NotAuthenticated {
            detail: detail.into(),
        }
    }

    /// 401 `authentication_failed`: for the store layer when a key is unknown or revoked.
    pub fn authentication_failed() -> Self {
        ApiError::AuthenticationFailed
    }

    /// 403 `permission_denied`.
    pub fn permission_denied(detail: impl Into<String>) -> Self {
        ApiError::PermissionDenied {
            detail: detail.into(),
        }
    }

    /// 404 `not_found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        ApiError::NotFound {
            detail: detail.into(),
        }
    }

    /// 404 for a resource of `kind` (e.g. "profile") with `id`.
    pub fn resource_not_found(kind: &str, id: &str) -> Self {
        Self::not_found(format!(
            "A {kind} with id {} does not exist.",
            truncate(id, 128)
        ))
    }

    /// 405 `method_not_allowed`.
    pub fn method_not_allowed(method: &Method) -> Self {
        ApiError::MethodNotAllowed {
            method: method.as_str().to_owned(),
        }
    }

    /// 409 `duplicate_profile`; `profile_id` is the existing profile.
    pub fn duplicate_profile(profile_id: impl Into<String>) -> Self {
        ApiError::DuplicateProfile {
            profile_id: profile_id.into(),
        }
    }

    /// 409 `conflict`.
    pub fn conflict(detail: impl Into<String>) -> Self {
        ApiError::Conflict {
            detail: detail.into(),
        }
    }

    /// 413 for a body over `limit` bytes.
    pub fn payload_too_large(limit: usize) -> Self {
        ApiError::PayloadTooLarge { limit }
    }

    /// 415 for a body that is neither `application/vnd.api+json` nor `application/json`.
    pub fn unsupported_media_type(media_type: impl Into<String>) -> Self {
        ApiError::UnsupportedMediaType {
            media_type: media_type.into(),
        }
    }

    /// 429 with `Retry-After: retry_after_secs`.
    pub fn throttled(retry_after_secs: u64) -> Self {
        ApiError::Throttled { retry_after_secs }
    }

    /// 500; `message` is for logs only.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::Internal {
            message: message.into(),
        }
    }

    /// HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } | ApiError::ParseError { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotAuthenticated { .. } | ApiError::AuthenticationFailed => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::PermissionDenied { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::DuplicateProfile { .. } | ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Machine-readable `errors[].code`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Invalid { .. } => "invalid",
            ApiError::ParseError { .. } => "parse_error",
            ApiError::NotAuthenticated { .. } => "not_authenticated",
            ApiError::AuthenticationFailed => "authentication_failed",
            ApiError::PermissionDenied { .. } => "permission_denied",
            ApiError::NotFound { .. } => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::DuplicateProfile { .. } => "duplicate_profile",
            ApiError::Conflict { .. } => "conflict",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ApiError::Throttled { .. } => "throttled",
            ApiError::Internal { .. } => "error",
        }
    }

    /// Short human `errors[].title`, fixed per code.
    pub fn title(&self) -> &'static str {
        match self {
            ApiError::Invalid { .. } => "Invalid input.",
            ApiError::ParseError { .. } => "Malformed request.",
            ApiError::NotAuthenticated { .. } => "Authentication credentials were not provided.",
            ApiError::AuthenticationFailed => "Incorrect authentication credentials.",
            ApiError::PermissionDenied { .. } => {
                "You do not have permission to perform this action."
            }
            ApiError::NotFound { .. } => "Not found.",
            ApiError::MethodNotAllowed { .. } => "Method not allowed.",
            ApiError::DuplicateProfile { .. } | ApiError::Conflict { .. } => "Conflict.",
            ApiError::PayloadTooLarge { .. } => "Request entity too large.",
            ApiError::UnsupportedMediaType { .. } => "Unsupported media type.",
            ApiError::Throttled { .. } => "Request was throttled.",
            ApiError::Internal { .. } => "A server error occurred.",
        }
    }

    /// Human `errors[].detail`; never contains internal messages.
    pub fn detail(&self) -> String {
        match self {
            ApiError::Invalid { detail, .. }
            | ApiError::ParseError { detail }
            | ApiError::NotAuthenticated { detail }
            | ApiError::PermissionDenied { detail }
            | ApiError::NotFound { detail }
            | ApiError::Conflict { detail } => detail.clone(),
            ApiError::AuthenticationFailed => "Incorrect authentication credentials.".into(),
            ApiError::MethodNotAllowed { method } => {
                format!("Method \"{}\" not allowed.", truncate(method, 32))
            }
            ApiError::DuplicateProfile { .. } => {
                "A profile already exists with one of these identifiers.".into()
            }
            ApiError::PayloadTooLarge { limit } => {
                format!("The request body exceeds the maximum allowed size of {limit} bytes.")
            }
            ApiError::UnsupportedMediaType { media_type } => format!(
                "Unsupported media type \"{}\" in request. Use application/vnd.api+json or application/json.",
                truncate(media_type, 128)
            ),
            ApiError::Throttled { retry_after_secs } => {
                format!("Request was throttled. Expected available in {retry_after_secs} seconds.")
            }
            ApiError::Internal { .. } => "A server error occurred.".into(),
        }
    }

    /// `errors[].source`, if any.
    pub fn source_location(&self) -> Option<ErrorSource> {
        match self {
            ApiError::Invalid { at, .. } => at.clone(),
            ApiError::DuplicateProfile { .. } => {
                Some(ErrorSource::Pointer("/data/attributes".into()))
            }
            _ => None,
        }
    }

    /// The whole response body: `{"errors":[{id,status,code,title,detail,source?,links,meta}]}`.
    pub fn to_body(&self) -> Value {
        let mut err = Map::new();
        err.insert("id".into(), Value::String(random_uuid_v4()));
        err.insert("status".into(), json!(self.status().as_u16()));
        err.insert("code".into(), json!(self.code()));
        err.insert("title".into(), json!(self.title()));
        err.insert("detail".into(), json!(self.detail()));
        if let Some(src) = self.source_location() {
            err.insert("source".into(), src.to_json());
        }
        err.insert("links".into(), json!({}));
        let meta = match self {
            ApiError::DuplicateProfile { profile_id } => {
                json!({ "duplicate_profile_id": profile_id })
            }
            _ => json!({}),
        };
        err.insert("meta".into(), meta);
        json!({ "errors": [Value::Object(err)] })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.to_body().to_string();
        let mut resp = (self.status(), body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_API_CONTENT_TYPE),
        );
        if let ApiError::Throttled { retry_after_secs } = &self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        resp
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        // A path that matched a route but whose parameter did not parse is a bad id.
        ApiError::not_found(format!("Invalid path parameter: {}", r.body_text()))
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::invalid(format!("Invalid query string: {}", r.body_text()))
    }
}

/// Router fallback: unknown paths get Klaviyo's 404 body instead of axum's empty 404.
pub async fn not_found_fallback(uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "The path {} does not exist.",
        truncate(uri.path(), 256)
    ))
}

/// `Router::method_not_allowed_fallback` handler.
pub async fn method_not_allowed_fallback(method: Method) -> ApiError {
    ApiError::method_not_allowed(&method)
}

/// A random RFC 4122 version-4 UUID string, as Klaviyo uses for `errors[].id`.
pub fn random_uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Caps client-supplied text echoed back in a detail, on a char boundary.
pub(crate) fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn render(e: ApiError) -> (StatusCode, axum::http::HeaderMap, Value) {
        let resp = e.into_response();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            headers,
            serde_json::from_slice(&bytes).expect("json"),
        )
    }

    #[tokio::test]
    async fn duplicate_profile_matches_klaviyo_fixture() {
        let (status, headers, body) = render(ApiError::duplicate_profile("01JAFS0VV")).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(headers[header::CONTENT_TYPE], JSON_API_CONTENT_TYPE);
        let e = &body["errors"][0];
        assert_eq!(e["status"], 409);
        assert_eq!(e["code"], "duplicate_profile");
        assert_eq!(e["title"], "Conflict.");
        assert_eq!(
            e["detail"],
            "A profile already exists with one of these identifiers."
        );
        assert_eq!(e["source"], json!({"pointer": "/data/attributes"}));
        assert_eq!(e["links"], json!({}));
        assert_eq!(e["meta"], json!({"duplicate_profile_id": "01JAFS0VV"}));
        let keys: Vec<&str> = e
            .as_object()
            .expect("object")
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            ["id", "status", "code", "title", "detail", "source", "links", "meta"]
        );
    }

    #[tokio::test]
    async fn statuses_and_codes() {
        let cases = [
            (ApiError::invalid("x"), 400, "invalid"),
            (ApiError::parse_error("x"), 400, "parse_error"),
            (ApiError::missing_revision(), 400, "invalid"),
            (ApiError::not_authenticated("x"), 401, "not_authenticated"),
            (
                ApiError::authentication_failed(),
                401,
                "authentication_failed",
            ),
            (ApiError::permission_denied("x"), 403, "permission_denied"),
            (ApiError::not_found("x"), 404, "not_found"),
            (
                ApiError::method_not_allowed(&Method::PUT),
                405,
                "method_not_allowed",
            ),
            (ApiError::conflict("x"), 409, "conflict"),
            (ApiError::payload_too_large(10), 413, "payload_too_large"),
            (
                ApiError::unsupported_media_type("text/plain"),
                415,
                "unsupported_media_type",
            ),
            (ApiError::throttled(3), 429, "throttled"),
            (ApiError::internal("db down"), 500, "error"),
        ];
        for (err, status, code) in cases {
            let (s, _, body) = render(err).await;
            assert_eq!(s.as_u16(), status);
            assert_eq!(body["errors"][0]["status"], status);
            assert_eq!(body["errors"][0]["code"], code);
        }
    }

    #[tokio::test]
    async fn internal_does_not_leak() {
        let (_, _, body) = render(ApiError::internal("password=hunter2 at db.rs:42")).await;
        let text = body.to_string();
        assert!(!text.contains("hunter2"));
        assert_eq!(body["errors"][0]["detail"], "A server error occurred.");
    }

    #[tokio::test]
    async fn pointer_and_parameter_sources() {
        let (_, _, body) = render(ApiError::missing_field("/data/attributes", "email")).await;
        assert_eq!(
            body["errors"][0]["source"],
            json!({"pointer": "/data/attributes"})
        );
        assert!(body["errors"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("'email'")));
        let (_, _, body) = render(ApiError::invalid_parameter("filter", "bad")).await;
        assert_eq!(body["errors"][0]["source"], json!({"parameter": "filter"}));
        let (_, _, body) = render(ApiError::not_found("x")).await;
        assert!(body["errors"][0].get("source").is_none());
    }

    #[tokio::test]
    async fn throttled_sets_retry_after() {
        let (_, headers, _) = render(ApiError::throttled(7)).await;
        assert_eq!(headers[header::RETRY_AFTER], "7");
    }

    #[tokio::test]
    async fn fallbacks() {
        let e = not_found_fallback(Uri::from_static("/api/nope/")).await;
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert!(e.detail().contains("/api/nope/"));
        let e = method_not_allowed_fallback(Method::PUT).await;
        assert_eq!(e.detail(), "Method \"PUT\" not allowed.");
    }

    #[test]
    fn uuid_shape() {
        let a = random_uuid_v4();
        let b = random_uuid_v4();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("ab", 5), "ab");
    }
}
