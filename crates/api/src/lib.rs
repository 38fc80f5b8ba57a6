//! HTTP plumbing for Outflow's Klaviyo-compatible `/api/`: error bodies,
//! extractors, the `filter=` language, cursor pagination and JSON:API documents.
//!
//! Handlers (added with the store) look like:
//! ```ignore
//! async fn get_profiles(
//!     key: ApiKey, url: RequestUrl, q: ApiQuery,
//! ) -> Result<JsonApiResponse, ApiError> {
//!     let filter = q.filter(&[("email", &[Op::Equals, Op::Any])])?;
//!     let page = q.page(PROFILES_PAGE)?;
//!     let fields = q.fields("profile", &[])?;
//!     let rows = store.profiles(&key, &filter, &page).await?; // page.fetch_limit() rows
//!     let page = Page::from_rows(rows, &page, |p| (p.created.to_rfc3339(), p.id.clone()))
//!         .map(|p| { let mut r = Resource::new(&url, "profile", &p.id, p.attrs());
//!                    r.apply_fields(fields.as_deref()); r });
//!     Ok(JsonApiResponse::ok(page.into_document(&url, &[])))
//! }
//! ```

pub mod auth;
pub mod error;
pub mod extract;
pub mod filter;
pub mod jsonapi;
pub mod pagination;
pub mod resources;
pub mod routes;
pub mod state;

pub use error::{ApiError, ErrorSource};
pub use extract::{ApiKey, AuthScheme, JsonApi, Revision};
pub use filter::{Condition, Filter, FilterError, Op, Value as FilterValue};
pub use jsonapi::{ApiQuery, JsonApiResponse, PageLinks, PublicOrigin, RequestUrl, Resource};
pub use pagination::{Cursor, Direction, Page, PageParams, PageSpec};

pub use state::AppState;

use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;

/// One entry of the route table: every path the server answers, with its
/// handlers and whether it answers without credentials.
pub struct RouteSpec {
    pub path: &'static str,
    pub methods: MethodRouter<AppState>,
    /// Only health and login (whose credentials are in its body), plus
    /// Klaviyo's public `/client/` endpoints if they are added. Every other
    /// route is wrapped in [`auth::require_credentials`].
    pub public: bool,
}

fn private(path: &'static str, methods: MethodRouter<AppState>) -> RouteSpec {
    RouteSpec {
        path,
        methods,
        public: false,
    }
}

fn public(path: &'static str, methods: MethodRouter<AppState>) -> RouteSpec {
    RouteSpec {
        path,
        methods,
        public: true,
    }
}

/// The route table: Klaviyo's `/api/` and our `/outflow/v1/`. New routes go
/// here (a test walks it and checks that every non-public route refuses a
/// request without credentials).
pub fn routes() -> Vec<RouteSpec> {
    use routes::{api_keys, audit, catalog, events, flows, health, lists, metrics, profiles};
    use routes::{auth as login, deliveries, review, segments, users};
    vec![
        private("/api/events", get(events::list).post(events::create)),
        private("/api/events/{id}", get(events::get)),
        private("/api/events/{id}/metric", get(events::metric)),
        private("/api/events/{id}/profile", get(events::profile)),
        private("/api/event-bulk-create-jobs", post(events::bulk_create)),
        private("/api/metrics", get(metrics::list)),
        private("/api/metrics/{id}", get(metrics::get)),
        private("/api/profiles", get(profiles::list).post(profiles::create)),
        private(
            "/api/profiles/{id}",
            get(profiles::get).patch(profiles::patch),
        ),
        private("/api/profile-import", post(profiles::import)),
        private(
            "/api/profile-subscription-bulk-create-jobs",
            post(lists::subscribe),
        ),
        private("/api/lists", get(lists::list).post(lists::create)),
        private(
            "/api/lists/{id}",
            get(lists::get).patch(lists::update).delete(lists::delete),
        ),
        private("/api/lists/{id}/profiles", get(lists::members)),
        private(
            "/api/lists/{id}/relationships/profiles",
            post(lists::add_members).delete(lists::remove_members),
        ),
        private(
            "/api/catalog-items",
            get(catalog::list).post(catalog::create),
        ),
        private(
            "/api/catalog-items/{id}",
            get(catalog::get)
                .patch(catalog::update)
                .delete(catalog::delete),
        ),
        private("/api/flows", get(flows::list).post(flows::create)),
        private(
            "/api/flows/{id}",
            get(flows::get).patch(flows::update).delete(flows::delete),
        ),
        private("/api/flows/{id}/flow-actions", get(flows::actions_of_flow)),
        private(
            "/api/flows/{id}/relationships/flow-actions",
            get(flows::action_ids_of_flow),
        ),
        private(
            "/api/flow-actions/{id}",
            get(flows::get_action).patch(flows::update_action),
        ),
        private("/api/flow-actions/{id}/flow", get(flows::flow_of_action)),
        private(
            "/api/metrics/{id}/flow-triggers",
            get(flows::metric_flow_triggers),
        ),
        private(
            "/api/lists/{id}/flow-triggers",
            get(flows::list_flow_triggers),
        ),
        private("/api/segments", get(segments::list).post(segments::create)),
        private(
            "/api/segments/{id}",
            get(segments::get)
                .patch(segments::update)
                .delete(segments::delete),
        ),
        private("/api/segments/{id}/profiles", get(segments::members)),
        private(
            "/api/segments/{id}/relationships/profiles",
            get(segments::member_ids),
        ),
        private(
            "/api/segments/{id}/flow-triggers",
            get(flows::segment_flow_triggers),
        ),
        public("/outflow/v1/health", get(health::health)),
        private(
            "/outflow/v1/flows/{id}/actions/{action_id}/release",
            post(review::release),
        ),
        private(
            "/outflow/v1/flows/{id}/actions/{action_id}/cancel",
            post(review::cancel),
        ),
        private("/outflow/v1/flows/{id}/runs", get(review::flow_runs)),
        private("/outflow/v1/profiles/{id}/runs", get(review::profile_runs)),
        public("/outflow/v1/auth/login", post(login::login)),
        private("/outflow/v1/auth/logout", post(login::logout)),
        private("/outflow/v1/me", get(login::me)),
        private("/outflow/v1/me/mfa", post(login::enrol)),
        private("/outflow/v1/me/mfa/confirm", post(login::confirm)),
        private("/outflow/v1/me/mfa/disable", post(login::disable)),
        private(
            "/outflow/v1/me/password",
            axum::routing::patch(login::change_password),
        ),
        private("/outflow/v1/users", get(users::list).post(users::create)),
        private(
            "/outflow/v1/users/{id}",
            get(users::get).patch(users::update).delete(users::delete),
        ),
        private(
            "/outflow/v1/api-keys",
            get(api_keys::list).post(api_keys::create),
        ),
        private("/outflow/v1/api-keys/{id}", delete(api_keys::revoke)),
        private("/outflow/v1/audit", get(audit::list)),
        private(
            "/outflow/v1/flows/{id}/add-past-profiles",
            post(segments::add_past_profiles),
        ),
        private("/outflow/v1/flow-backfills/{id}", get(segments::backfill)),
        private("/outflow/v1/deliveries", get(deliveries::list)),
        private("/outflow/v1/deliveries/replay", post(deliveries::replay)),
        private("/outflow/v1/deliveries/{id}", get(deliveries::get)),
        private("/outflow/v1/deliveries/{id}/retry", post(deliveries::retry)),
        private(
            "/outflow/v1/flows/{id}/actions/{action_id}/destination",
            get(deliveries::destination),
        ),
        private(
            "/outflow/v1/flows/{id}/actions/{action_id}/destination/enable",
            post(deliveries::enable_destination),
        ),
        private(
            "/outflow/v1/flows/{id}/actions/{action_id}/preview",
            post(deliveries::preview),
        ),
        private(
            "/outflow/v1/signing-secret",
            get(deliveries::signing_secret),
        ),
        private(
            "/outflow/v1/signing-secret/rotate",
            post(deliveries::rotate_signing_secret),
        ),
        private("/metrics", get(deliveries::metrics)),
    ]
}

/// Every route of [`routes`], served. Each `/api/` path is also served
/// with a trailing slash, the form Klaviyo's own `links.self` URLs take,
/// and requires the `revision` header.
pub fn router(state: AppState) -> Router {
    let gate = axum::middleware::from_fn_with_state(state.clone(), auth::require_credentials);
    let mut api = Router::new();
    let mut ours = Vec::new();
    for spec in routes() {
        let methods = if spec.public {
            spec.methods
        } else {
            spec.methods.route_layer(gate.clone())
        };
        if spec.path.starts_with("/api/") {
            api = api
                .route(spec.path, methods.clone())
                .route(&format!("{}/", spec.path), methods);
        } else {
            ours.push((spec.path, methods));
        }
    }
    let mut app = finish_api_router(api);
    for (path, methods) in ours {
        app = app.route(path, methods);
    }
    app.with_state(state)
}

/// Finishes a router of `/api/` routes: requires a valid `revision` header on
/// matched routes (unknown paths still get 404, not 400), and renders unknown
/// paths and wrong methods as Klaviyo error bodies.
///
/// Call after all `.route(...)` calls, since `route_layer` only wraps routes
/// that already exist.
pub fn finish_api_router<S>(router: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        .route_layer(axum::middleware::from_fn(extract::require_revision))
        .method_not_allowed_fallback(error::method_not_allowed_fallback)
        .fallback(error::not_found_fallback)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn call(
        app: Router,
        method: &str,
        uri: &str,
        revision: bool,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if revision {
            req = req.header("revision", "2024-10-15");
        }
        let resp = app
            .oneshot(req.body(Body::empty()).expect("req"))
            .await
            .expect("resp");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    #[tokio::test]
    async fn finished_router_shapes_errors() {
        let app = finish_api_router(Router::new().route("/api/lists/", get(|| async { "ok" })));
        let (s, _) = call(app.clone(), "GET", "/api/lists/", true).await;
        assert_eq!(s, StatusCode::OK);
        let (s, body) = call(app.clone(), "GET", "/api/lists/", false).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(body["errors"][0]["code"], "invalid");
        let (s, body) = call(app.clone(), "GET", "/api/nope/", false).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(body["errors"][0]["code"], "not_found");
        let (s, body) = call(app, "DELETE", "/api/lists/", true).await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["errors"][0]["code"], "method_not_allowed");
    }
}
