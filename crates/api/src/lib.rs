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

use axum::routing::get;
use axum::Router;

/// Every route the server answers: Klaviyo's `/api/` and our `/outflow/v1/`.
/// Each `/api/` path is also served with a trailing slash, the form
/// Klaviyo's own `links.self` URLs take.
pub fn router(state: AppState) -> Router {
    use axum::routing::{post, MethodRouter};
    use routes::{catalog, events, flows, health, lists, metrics, profiles, segments};
    let routes: Vec<(&str, MethodRouter<AppState>)> = vec![
        ("/api/events", get(events::list).post(events::create)),
        ("/api/events/{id}", get(events::get)),
        ("/api/events/{id}/metric", get(events::metric)),
        ("/api/events/{id}/profile", get(events::profile)),
        ("/api/event-bulk-create-jobs", post(events::bulk_create)),
        ("/api/metrics", get(metrics::list)),
        ("/api/metrics/{id}", get(metrics::get)),
        ("/api/profiles", get(profiles::list).post(profiles::create)),
        (
            "/api/profiles/{id}",
            get(profiles::get).patch(profiles::patch),
        ),
        ("/api/profile-import", post(profiles::import)),
        (
            "/api/profile-subscription-bulk-create-jobs",
            post(lists::subscribe),
        ),
        ("/api/lists", get(lists::list).post(lists::create)),
        (
            "/api/lists/{id}",
            get(lists::get).patch(lists::update).delete(lists::delete),
        ),
        ("/api/lists/{id}/profiles", get(lists::members)),
        (
            "/api/lists/{id}/relationships/profiles",
            post(lists::add_members).delete(lists::remove_members),
        ),
        (
            "/api/catalog-items",
            get(catalog::list).post(catalog::create),
        ),
        (
            "/api/catalog-items/{id}",
            get(catalog::get)
                .patch(catalog::update)
                .delete(catalog::delete),
        ),
        ("/api/flows", get(flows::list).post(flows::create)),
        (
            "/api/flows/{id}",
            get(flows::get).patch(flows::update).delete(flows::delete),
        ),
        ("/api/flows/{id}/flow-actions", get(flows::actions_of_flow)),
        (
            "/api/flows/{id}/relationships/flow-actions",
            get(flows::action_ids_of_flow),
        ),
        (
            "/api/flow-actions/{id}",
            get(flows::get_action).patch(flows::update_action),
        ),
        ("/api/flow-actions/{id}/flow", get(flows::flow_of_action)),
        (
            "/api/metrics/{id}/flow-triggers",
            get(flows::metric_flow_triggers),
        ),
        (
            "/api/lists/{id}/flow-triggers",
            get(flows::list_flow_triggers),
        ),
        // Segments (issue #5).
        ("/api/segments", get(segments::list).post(segments::create)),
        (
            "/api/segments/{id}",
            get(segments::get)
                .patch(segments::update)
                .delete(segments::delete),
        ),
        ("/api/segments/{id}/profiles", get(segments::members)),
        (
            "/api/segments/{id}/relationships/profiles",
            get(segments::member_ids),
        ),
        (
            "/api/segments/{id}/flow-triggers",
            get(flows::segment_flow_triggers),
        ),
    ];
    let mut api = Router::new();
    for (path, handler) in routes {
        api = api
            .route(path, handler.clone())
            .route(&format!("{path}/"), handler);
    }
    finish_api_router(api)
        .route("/outflow/v1/health", get(health::health))
        .route(
            "/outflow/v1/flows/{id}/actions/{action_id}/release",
            post(routes::review::release),
        )
        .route(
            "/outflow/v1/flows/{id}/actions/{action_id}/cancel",
            post(routes::review::cancel),
        )
        .route(
            "/outflow/v1/flows/{id}/runs",
            get(routes::review::flow_runs),
        )
        .route(
            "/outflow/v1/profiles/{id}/runs",
            get(routes::review::profile_runs),
        )
        // Audiences (issue #5).
        .route(
            "/outflow/v1/flows/{id}/add-past-profiles",
            post(segments::add_past_profiles),
        )
        .route("/outflow/v1/flow-backfills/{id}", get(segments::backfill))
        .with_state(state)
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
