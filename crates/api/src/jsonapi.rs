//! JSON:API documents in Klaviyo's shape, and the query parameters that shape them
//! (`fields[type]`, `additional-fields[type]`, `include`, `sort`, `filter`, `page[…]`).
//!
//! Links are absolute and built from the request (scheme + Host), like
//! Klaviyo's `https://a.klaviyo.com/api/profiles/01H…/`, so clients that follow
//! `links.next` stay on this server.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::{json, Map, Value};

use crate::error::{ApiError, JSON_API_CONTENT_TYPE};
use crate::filter::{Filter, Rules};
use crate::pagination::{PageParams, PageSpec};

/// Set by the binary as a request extension to force the origin used in links
/// (e.g. `https://outflow.example.com` behind a TLS-terminating proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicOrigin(pub String);

/// The request's absolute URL, split for link building.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestUrl {
    /// `scheme://host[:port]`, no trailing slash.
    pub origin: String,
    /// Path as received, e.g. `/api/profiles/`.
    pub path: String,
    /// Raw query string without `?`, as received.
    pub query: Option<String>,
}

/// Characters escaped in an id placed in a path segment.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

impl RequestUrl {
    /// Builds from the request: `PublicOrigin` if given, else `X-Forwarded-Proto`
    /// (http/https only) or the URI scheme or `http`, plus `Host` (validated)
    /// or the URI authority or `localhost`.
    pub fn from_request(uri: &Uri, headers: &HeaderMap, public_origin: Option<&str>) -> RequestUrl {
        let origin = match public_origin {
            Some(o) => o.trim_end_matches('/').to_owned(),
            None => {
                let forwarded = headers
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split(',').next())
                    .map(|v| v.trim().to_ascii_lowercase())
                    .filter(|v| v == "http" || v == "https");
                let scheme = forwarded
                    .or_else(|| uri.scheme_str().map(str::to_owned))
                    .unwrap_or_else(|| "http".to_owned());
                let host = headers
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .filter(|h| valid_host(h))
                    .map(str::to_owned)
                    .or_else(|| uri.authority().map(|a| a.as_str().to_owned()))
                    .unwrap_or_else(|| "localhost".to_owned());
                format!("{scheme}://{host}")
            }
        };
        RequestUrl {
            origin,
            path: uri.path().to_owned(),
            query: uri.query().filter(|q| !q.is_empty()).map(str::to_owned),
        }
    }

    /// The full URL of this request (`links.self` of a document).
    pub fn href(&self) -> String {
        match &self.query {
            Some(q) => format!("{}{}?{}", self.origin, self.path, q),
            None => format!("{}{}", self.origin, self.path),
        }
    }

    /// This URL with every `key` parameter removed and, if `value` is given,
    /// `key=value` appended. Other parameters are kept verbatim.
    pub fn with_param(&self, key: &str, value: Option<&str>) -> String {
        let mut parts: Vec<String> = self
            .query
            .as_deref()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| {
                let raw_key = p.split('=').next().unwrap_or("");
                let decoded: String = form_urlencoded::parse(raw_key.as_bytes())
                    .map(|(k, _)| k.into_owned())
                    .next()
                    .unwrap_or_default();
                decoded != key
            })
            .map(str::to_owned)
            .collect();
        if let Some(v) = value {
            let pair: String = form_urlencoded::Serializer::new(String::new())
                .append_pair(key, v)
                .finish();
            parts.push(pair);
        }
        if parts.is_empty() {
            format!("{}{}", self.origin, self.path)
        } else {
            format!("{}{}?{}", self.origin, self.path, parts.join("&"))
        }
    }

    /// `<origin>/api/<plural>/<id>/`, Klaviyo's resource `links.self`.
    pub fn resource_url(&self, plural: &str, id: &str) -> String {
        format!(
            "{}/api/{}/{}/",
            self.origin,
            plural,
            utf8_percent_encode(id, SEGMENT)
        )
    }
}

/// Rejects Host values that could inject into links.
fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
        })
}

impl<S: Send + Sync> FromRequestParts<S> for RequestUrl {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let public = parts.extensions.get::<PublicOrigin>().map(|p| p.0.clone());
        Ok(RequestUrl::from_request(
            &parts.uri,
            &parts.headers,
            public.as_deref(),
        ))
    }
}

/// The JSON:API type's URL segment: `profile` → `profiles`,
/// `catalog-item` → `catalog-items` (every Klaviyo type just adds `s`).
pub fn plural(kind: &str) -> String {
    format!("{kind}s")
}

/// A resource object: `{type, id, attributes, relationships?, links: {self}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub kind: String,
    pub id: String,
    pub attributes: Map<String, Value>,
    pub relationships: Map<String, Value>,
    pub self_link: String,
}

impl Resource {
    /// A resource with its `links.self`. `attributes` should be an object;
    /// anything else becomes `{}`.
    pub fn new(url: &RequestUrl, kind: &str, id: impl Into<String>, attributes: Value) -> Resource {
        let id = id.into();
        Resource {
            self_link: url.resource_url(&plural(kind), &id),
            kind: kind.to_owned(),
            id,
            attributes: match attributes {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            relationships: Map::new(),
        }
    }

    fn relationship_links(&self, name: &str) -> Value {
        let base = self.self_link.trim_end_matches('/');
        json!({
            "self": format!("{base}/relationships/{name}/"),
            "related": format!("{base}/{name}/"),
        })
    }

    /// A relationship with links only (Klaviyo omits `data` unless included).
    pub fn with_relationship_links(mut self, name: &str) -> Resource {
        let links = self.relationship_links(name);
        self.relationships
            .insert(name.to_owned(), json!({ "links": links }));
        self
    }

    /// A to-one relationship: `{data: {type, id} | null, links}`.
    pub fn with_to_one(mut self, name: &str, kind: &str, id: Option<&str>) -> Resource {
        let data = match id {
            Some(id) => json!({ "type": kind, "id": id }),
            None => Value::Null,
        };
        let links = self.relationship_links(name);
        self.relationships
            .insert(name.to_owned(), json!({ "data": data, "links": links }));
        self
    }

    /// A to-many relationship: `{data: [{type, id}…], links}`.
    pub fn with_to_many<I, S>(mut self, name: &str, kind: &str, ids: I) -> Resource
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let data: Vec<Value> = ids
            .into_iter()
            .map(|id| json!({ "type": kind, "id": id.into() }))
            .collect();
        let links = self.relationship_links(name);
        self.relationships
            .insert(name.to_owned(), json!({ "data": data, "links": links }));
        self
    }

    /// Keeps only the requested attributes (sparse fieldsets). Dotted names
    /// (`location.city`) keep that nested member. `None` keeps everything.
    pub fn apply_fields(&mut self, fields: Option<&[String]>) {
        if let Some(fields) = fields {
            self.attributes = sparse(&self.attributes, fields);
        }
    }

    /// The resource object as JSON (`relationships` omitted when empty).
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!(self.kind));
        m.insert("id".into(), json!(self.id));
        m.insert("attributes".into(), Value::Object(self.attributes.clone()));
        if !self.relationships.is_empty() {
            m.insert(
                "relationships".into(),
                Value::Object(self.relationships.clone()),
            );
        }
        m.insert("links".into(), json!({ "self": self.self_link }));
        Value::Object(m)
    }
}

/// Copies only `fields` (possibly dotted) out of `attrs`, in `attrs` order.
pub fn sparse(attrs: &Map<String, Value>, fields: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in attrs {
        if fields.iter().any(|f| f == key) {
            out.insert(key.clone(), value.clone());
            continue;
        }
        let prefix = format!("{key}.");
        let nested: Vec<String> = fields
            .iter()
            .filter_map(|f| f.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        if !nested.is_empty() {
            if let Value::Object(inner) = value {
                out.insert(key.clone(), Value::Object(sparse(inner, &nested)));
            }
        }
    }
    out
}

/// `{"data": <resource>, "links": {"self": <request url>}}`, plus `included` if non-empty.
pub fn single_document(url: &RequestUrl, resource: &Resource, included: &[Resource]) -> Value {
    let mut doc = json!({
        "data": resource.to_value(),
        "links": { "self": url.href() },
    });
    add_included(&mut doc, included);
    doc
}

/// `{"data": [...], "links": {self, next, prev}}`, plus `included` if non-empty.
pub fn list_document(resources: &[Resource], links: &PageLinks, included: &[Resource]) -> Value {
    let data: Vec<Value> = resources.iter().map(Resource::to_value).collect();
    let mut doc = json!({ "data": data, "links": links.to_value() });
    add_included(&mut doc, included);
    doc
}

fn add_included(doc: &mut Value, included: &[Resource]) {
    if included.is_empty() {
        return;
    }
    if let Value::Object(m) = doc {
        m.insert(
            "included".into(),
            Value::Array(included.iter().map(Resource::to_value).collect()),
        );
    }
}

/// `links` of a list document. `next`/`prev` are rendered as `null` when
/// absent: SDK users commonly write `resp["links"]["next"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageLinks {
    pub self_link: String,
    pub next: Option<String>,
    pub prev: Option<String>,
}

impl PageLinks {
    pub fn to_value(&self) -> Value {
        json!({ "self": self.self_link, "next": self.next, "prev": self.prev })
    }
}

/// A successful JSON:API response with `Content-Type: application/vnd.api+json`.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonApiResponse {
    pub status: StatusCode,
    /// `None` for bodiless 202/204.
    pub body: Option<Value>,
}

impl JsonApiResponse {
    /// 200 with a body.
    pub fn ok(body: Value) -> Self {
        JsonApiResponse {
            status: StatusCode::OK,
            body: Some(body),
        }
    }
    /// 201 with a body.
    pub fn created(body: Value) -> Self {
        JsonApiResponse {
            status: StatusCode::CREATED,
            body: Some(body),
        }
    }
    /// 202 with no body (create event, bulk jobs, subscribe).
    pub fn accepted() -> Self {
        JsonApiResponse {
            status: StatusCode::ACCEPTED,
            body: None,
        }
    }
    /// 204 with no body (list relationships, deletes).
    pub fn no_content() -> Self {
        JsonApiResponse {
            status: StatusCode::NO_CONTENT,
            body: None,
        }
    }
}

impl IntoResponse for JsonApiResponse {
    fn into_response(self) -> Response {
        match self.body {
            None => self.status.into_response(),
            Some(body) => {
                let mut resp = (self.status, body.to_string()).into_response();
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(JSON_API_CONTENT_TYPE),
                );
                resp
            }
        }
    }
}

/// `sort=field` or `sort=-field`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sort {
    pub field: String,
    pub descending: bool,
}

/// The decoded query string, with typed accessors for the JSON:API parameters.
/// Each accessor validates and returns a Klaviyo 400 naming the parameter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiQuery {
    /// Decoded `(key, value)` pairs in order.
    pub pairs: Vec<(String, String)>,
}

impl ApiQuery {
    pub fn parse(query: Option<&str>) -> ApiQuery {
        ApiQuery {
            pairs: form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    /// The last value of `key` (later parameters win, like most frameworks).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `filter=`, checked against the endpoint's rules.
    pub fn filter(&self, rules: Rules<'_>) -> Result<Filter, ApiError> {
        Filter::from_param(self.get("filter"), rules)
    }

    /// `page[size]` and `page[cursor]`.
    pub fn page(&self, spec: PageSpec) -> Result<PageParams, ApiError> {
        PageParams::parse(self.get("page[size]"), self.get("page[cursor]"), spec)
    }

    /// `fields[<kind>]=a,b`. `None` when absent (all fields). Names not in
    /// `allowed` are a 400, unless `allowed` is empty (no check).
    pub fn fields(&self, kind: &str, allowed: &[&str]) -> Result<Option<Vec<String>>, ApiError> {
        let param = format!("fields[{kind}]");
        self.get(&param)
            .map(|v| csv_checked(&param, v, allowed))
            .transpose()
    }

    /// `additional-fields[<kind>]=subscriptions,…`; empty when absent.
    pub fn additional_fields(&self, kind: &str, allowed: &[&str]) -> Result<Vec<String>, ApiError> {
        let param = format!("additional-fields[{kind}]");
        Ok(self
            .get(&param)
            .map(|v| csv_checked(&param, v, allowed))
            .transpose()?
            .unwrap_or_default())
    }

    /// `include=metric,profile`; empty when absent.
    pub fn include(&self, allowed: &[&str]) -> Result<Vec<String>, ApiError> {
        Ok(self
            .get("include")
            .map(|v| csv_checked("include", v, allowed))
            .transpose()?
            .unwrap_or_default())
    }

    /// `sort=-created`; `allowed` lists field names without `-`.
    pub fn sort(&self, allowed: &[&str]) -> Result<Option<Sort>, ApiError> {
        let Some(raw) = self.get("sort").map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let (field, descending) = match raw.strip_prefix('-') {
            Some(f) => (f, true),
            None => (raw, false),
        };
        if !allowed.contains(&field) {
            return Err(ApiError::invalid_parameter(
                "sort",
                format!(
                    "'{}' is not a valid sort field. Valid fields: {}.",
                    crate::error::truncate(field, 64),
                    allowed.join(", ")
                ),
            ));
        }
        Ok(Some(Sort {
            field: field.to_owned(),
            descending,
        }))
    }
}

fn csv_checked(param: &str, value: &str, allowed: &[&str]) -> Result<Vec<String>, ApiError> {
    let items: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if !allowed.is_empty() {
        if let Some(bad) = items.iter().find(|i| !allowed.contains(&i.as_str())) {
            return Err(ApiError::invalid_parameter(
                param,
                format!(
                    "'{}' is not a valid value for {param}. Valid values: {}.",
                    crate::error::truncate(bad, 64),
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(items)
}

impl<S: Send + Sync> FromRequestParts<S> for ApiQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ApiQuery::parse(parts.uri.query()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(path_and_query: &str) -> RequestUrl {
        let uri: Uri = path_and_query.parse().expect("uri");
        let mut h = HeaderMap::new();
        h.insert(
            header::HOST,
            HeaderValue::from_static("api.example.com:8080"),
        );
        RequestUrl::from_request(&uri, &h, None)
    }

    #[test]
    fn request_url_origin() {
        let u = url("/api/profiles/?page%5Bsize%5D=5");
        assert_eq!(u.origin, "http://api.example.com:8080");
        assert_eq!(
            u.href(),
            "http://api.example.com:8080/api/profiles/?page%5Bsize%5D=5"
        );

        let uri: Uri = "/api/x".parse().expect("uri");
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("h.example"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https, http"));
        assert_eq!(
            RequestUrl::from_request(&uri, &h, None).origin,
            "https://h.example"
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("javascript"));
        assert_eq!(
            RequestUrl::from_request(&uri, &h, None).origin,
            "http://h.example"
        );
        h.insert(header::HOST, HeaderValue::from_static("evil\"host"));
        assert_eq!(
            RequestUrl::from_request(&uri, &h, None).origin,
            "http://localhost"
        );
        assert_eq!(
            RequestUrl::from_request(&uri, &h, Some("https://pub.example/")).origin,
            "https://pub.example"
        );
    }

    #[test]
    fn with_param_replaces_cursor_keeps_rest() {
        let u = url("/api/profiles/?filter=equals(email,%22a%22)&page%5Bcursor%5D=old&page[cursor]=old2&page%5Bsize%5D=5");
        assert_eq!(
            u.with_param("page[cursor]", Some("NEW")),
            "http://api.example.com:8080/api/profiles/?filter=equals(email,%22a%22)&page%5Bsize%5D=5&page%5Bcursor%5D=NEW"
        );
        assert_eq!(u.with_param("filter", None), "http://api.example.com:8080/api/profiles/?page%5Bcursor%5D=old&page[cursor]=old2&page%5Bsize%5D=5");
        let bare = url("/api/lists/");
        assert_eq!(
            bare.with_param("page[cursor]", None),
            "http://api.example.com:8080/api/lists/"
        );
    }

    #[test]
    fn resource_shape() {
        let u = url("/api/profiles/01H/");
        let r = Resource::new(
            &u,
            "profile",
            "01H",
            json!({"email": "a@b.c", "first_name": null}),
        )
        .with_relationship_links("lists")
        .with_to_one("metric", "metric", Some("M1"))
        .with_to_many("tags", "tag", ["t1", "t2"]);
        let v = r.to_value();
        assert_eq!(v["type"], "profile");
        assert_eq!(v["id"], "01H");
        assert_eq!(
            v["links"]["self"],
            "http://api.example.com:8080/api/profiles/01H/"
        );
        assert_eq!(v["attributes"]["first_name"], Value::Null);
        assert_eq!(
            v["relationships"]["lists"]["links"],
            json!({
                "self": "http://api.example.com:8080/api/profiles/01H/relationships/lists/",
                "related": "http://api.example.com:8080/api/profiles/01H/lists/"
            })
        );
        assert_eq!(
            v["relationships"]["metric"]["data"],
            json!({"type": "metric", "id": "M1"})
        );
        assert_eq!(v["relationships"]["tags"]["data"][1]["id"], "t2");
        let keys: Vec<&String> = v.as_object().expect("obj").keys().collect();
        assert_eq!(keys, ["type", "id", "attributes", "relationships", "links"]);

        let bare = Resource::new(&u, "list", "L1", json!({})).to_value();
        assert!(bare.get("relationships").is_none());
        let item = Resource::new(
            &u,
            "catalog-item",
            "$custom:::$default:::SKU 1/2",
            json!({}),
        );
        assert_eq!(
            item.self_link,
            "http://api.example.com:8080/api/catalog-items/$custom:::$default:::SKU%201%2F2/"
        );
    }

    #[test]
    fn documents() {
        let u = url("/api/lists/L1/?fields%5Blist%5D=name");
        let r = Resource::new(&u, "list", "L1", json!({"name": "VIP"}));
        let d = single_document(&u, &r, &[]);
        assert_eq!(d["links"]["self"], u.href());
        assert!(d.get("included").is_none());
        let d = single_document(&u, &r, std::slice::from_ref(&r));
        assert_eq!(d["included"][0]["id"], "L1");
        let links = PageLinks {
            self_link: "s".into(),
            next: Some("n".into()),
            prev: None,
        };
        let d = list_document(&[r], &links, &[]);
        assert_eq!(d["links"], json!({"self": "s", "next": "n", "prev": null}));
        assert_eq!(d["data"][0]["attributes"]["name"], "VIP");
    }

    #[test]
    fn sparse_fieldsets() {
        let q = ApiQuery::parse(Some(
            "fields%5Bprofile%5D=email,location.city,%20first_name",
        ));
        let fields = q
            .fields(
                "profile",
                &["email", "first_name", "location", "location.city"],
            )
            .expect("ok")
            .expect("some");
        assert_eq!(fields, ["email", "location.city", "first_name"]);
        let u = url("/api/profiles/");
        let mut r = Resource::new(
            &u,
            "profile",
            "P",
            json!({"email": "e", "first_name": "f", "last_name": "l",
                   "location": {"city": "c", "zip": "z"}}),
        );
        r.apply_fields(Some(&fields));
        assert_eq!(
            Value::Object(r.attributes.clone()),
            json!({"email": "e", "first_name": "f", "location": {"city": "c"}})
        );
        let e = q.fields("profile", &["email"]).expect_err("bad field");
        assert_eq!(
            e.to_body()["errors"][0]["source"]["parameter"],
            "fields[profile]"
        );
        assert_eq!(q.fields("event", &[]).expect("ok"), None);
    }

    #[test]
    fn additional_fields_include_sort() {
        let q = ApiQuery::parse(Some(
            "additional-fields[profile]=subscriptions,predictive_analytics&include=lists&sort=-created",
        ));
        assert_eq!(
            q.additional_fields("profile", &["subscriptions", "predictive_analytics"])
                .expect("ok"),
            ["subscriptions", "predictive_analytics"]
        );
        assert!(q.additional_fields("profile", &["subscriptions"]).is_err());
        assert!(q
            .additional_fields("list", &["profile_count"])
            .expect("ok")
            .is_empty());
        assert_eq!(q.include(&["lists", "segments"]).expect("ok"), ["lists"]);
        assert_eq!(
            q.sort(&["created", "updated"]).expect("ok"),
            Some(Sort {
                field: "created".into(),
                descending: true
            })
        );
        let e = q.sort(&["updated"]).expect_err("bad");
        assert_eq!(e.to_body()["errors"][0]["source"]["parameter"], "sort");
        assert_eq!(ApiQuery::parse(None).sort(&["x"]).expect("ok"), None);
    }

    #[test]
    fn query_filter_and_last_wins() {
        use crate::filter::Op;
        let q = ApiQuery::parse(Some("filter=equals(email,%22a%40b.com%22)&x=1&x=2"));
        assert_eq!(q.get("x"), Some("2"));
        let f = q.filter(&[("email", &[Op::Equals])]).expect("ok");
        assert_eq!(
            f.get("email", Op::Equals).and_then(|v| v.as_str()),
            Some("a@b.com")
        );
    }

    #[tokio::test]
    async fn json_api_response() {
        use http_body_util::BodyExt;
        let r = JsonApiResponse::created(json!({"data": {}})).into_response();
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()[header::CONTENT_TYPE], JSON_API_CONTENT_TYPE);
        let r = JsonApiResponse::accepted().into_response();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let body = r.into_body().collect().await.expect("body").to_bytes();
        assert!(body.is_empty());
        assert_eq!(
            JsonApiResponse::no_content().into_response().status(),
            StatusCode::NO_CONTENT
        );
    }
}
