use crate::auth::Auth;
use crate::error::ApiError;
use crate::filter::Op;
use crate::jsonapi::{single_document, ApiQuery, JsonApiResponse, RequestUrl};
use crate::pagination::{Page, METRICS_PAGE};
use crate::resources;
use crate::state::{store_error, AppState};
use axum::extract::{Path, State};
use outflow_store::metrics;

/// `GET /api/metrics`
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("metrics:read")?;
    let filter = q.filter(&[
        ("name", &[Op::Equals]),
        ("integration.name", &[Op::Equals]),
        ("integration.category", &[Op::Equals]),
    ])?;
    let name = filter
        .get("name", Op::Equals)
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let page = q.page(METRICS_PAGE)?;
    let after = page.cursor.as_ref().map(|c| c.id.clone());
    let (account, limit) = (auth.account().to_owned(), page.fetch_limit());
    let rows = state
        .store
        .read(move |c| metrics::list(c, &account, name.as_deref(), after.as_deref(), limit))
        .await
        .map_err(store_error)?;
    let mut page = Page::from_rows(rows, &page, |m| (String::new(), m.id.clone()));
    page.prev = None;
    Ok(JsonApiResponse::ok(
        page.map(|m| resources::metric(&url, &m))
            .into_document(&url, &[]),
    ))
}

/// `GET /api/metrics/{id}`
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    Path(id): Path<String>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("metrics:read")?;
    let (account, shown) = (auth.account().to_owned(), id.clone());
    let m = state
        .store
        .read(move |c| metrics::get(c, &account, &id))
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::resource_not_found("metric", &shown))?;
    Ok(JsonApiResponse::ok(single_document(
        &url,
        &resources::metric(&url, &m),
        &[],
    )))
}
