//! Catalog items: id `$custom:::$default:::EXTERNAL_ID`; price history kept.

use super::{expect_type, Data, Doc};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::JsonApi;
use crate::jsonapi::{single_document, ApiQuery, JsonApiResponse, RequestUrl};
use crate::pagination::{Page, CATALOG_ITEMS_PAGE};
use crate::resources::{self, CATALOG_FIELDS};
use crate::state::{store_error, AppState};
use axum::extract::{Path, State};
use outflow_store::catalog;
use serde_json::{Map, Value};

/// Checks types of the attributes we store, so bad input is a 400, not a
/// corrupt item.
fn check(attrs: &Map<String, Value>, creating: bool) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    for (k, v) in attrs {
        let p = format!("/data/attributes/{k}");
        let ok = match k.as_str() {
            "external_id" | "integration_type" | "catalog_type" => continue,
            "price" => v.is_number() || v.is_null(),
            "published" => v.is_boolean(),
            "custom_metadata" => v.is_object() || v.is_null(),
            "images" => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            f if CATALOG_FIELDS.contains(&f) => v.is_string() || (!creating && v.is_null()),
            _ => {
                return Err(ApiError::invalid_pointer(
                    p,
                    format!("Unknown catalog item attribute '{k}'."),
                ))
            }
        };
        if !ok {
            return Err(ApiError::wrong_type(
                p,
                format!("'{k}' has the wrong type."),
            ));
        }
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

fn text<'a>(
    attrs: &'a Map<String, Value>,
    key: &str,
    default: Option<&'a str>,
) -> Result<&'a str, ApiError> {
    match attrs.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | None => {
            default.ok_or_else(|| ApiError::missing_field("/data/attributes", key))
        }
        Some(_) => Err(ApiError::wrong_type(
            format!("/data/attributes/{key}"),
            format!("'{key}' must be a string."),
        )),
    }
}

/// `POST /api/catalog-items` → 201, or 409 if it exists.
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    JsonApi(doc): JsonApi<Doc<Data<Map<String, Value>>>>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("catalogs:write")?;
    expect_type(&doc.data.kind, "catalog-item", "/data/type")?;
    let a = &doc.data.attributes;
    let external_id = text(a, "external_id", None)?.to_owned();
    let integration = text(a, "integration_type", Some("$custom"))?.to_owned();
    let catalog_type = text(a, "catalog_type", Some("$default"))?.to_owned();
    if integration != "$custom" {
        return Err(ApiError::invalid_pointer(
            "/data/attributes/integration_type",
            "Only '$custom' catalogs can be written.",
        ));
    }
    for required in ["title", "description", "url"] {
        text(a, required, None)?;
    }
    let attrs = check(a, true)?;
    let (account, now) = (auth.account().to_owned(), state.now());
    let item = state
        .store
        .write(move |ctx| {
            catalog::create(
                ctx,
                &account,
                &external_id,
                &integration,
                &catalog_type,
                attrs,
                now,
            )
        })
        .await
        .map_err(store_error)?;
    Ok(JsonApiResponse::created(single_document(
        &url,
        &resources::catalog_item(&url, &item),
        &[],
    )))
}

/// `PATCH /api/catalog-items/{id}`: merges attributes; a price change is recorded.
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    Path(id): Path<String>,
    JsonApi(doc): JsonApi<Doc<Data<Map<String, Value>>>>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("catalogs:write")?;
    expect_type(&doc.data.kind, "catalog-item", "/data/type")?;
    if doc.data.id.as_deref().is_some_and(|b| b != id) {
        return Err(ApiError::conflict(
            "The id in the body does not match the id in the URL.",
        ));
    }
    let changes = check(&doc.data.attributes, false)?;
    let (account, now) = (auth.account().to_owned(), state.now());
    let item = state
        .store
        .write(move |ctx| catalog::update(ctx, &account, &id, &changes, now))
        .await
        .map_err(store_error)?;
    Ok(JsonApiResponse::ok(single_document(
        &url,
        &resources::catalog_item(&url, &item),
        &[],
    )))
}

/// `GET /api/catalog-items/{id}`
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    Path(id): Path<String>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("catalogs:read")?;
    let (account, shown) = (auth.account().to_owned(), id.clone());
    let item = state
        .store
        .read(move |c| catalog::get(c, &account, &id))
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::resource_not_found("catalog-item", &shown))?;
    Ok(JsonApiResponse::ok(single_document(
        &url,
        &resources::catalog_item(&url, &item),
        &[],
    )))
}

/// `GET /api/catalog-items`
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("catalogs:read")?;
    let page = q.page(CATALOG_ITEMS_PAGE)?;
    let after = page.cursor.as_ref().map(|c| c.id.clone());
    let (account, limit) = (auth.account().to_owned(), page.fetch_limit());
    let rows = state
        .store
        .read(move |c| catalog::list(c, &account, after.as_deref(), limit))
        .await
        .map_err(store_error)?;
    let mut page = Page::from_rows(rows, &page, |i| (String::new(), i.id.clone()));
    page.prev = None;
    Ok(JsonApiResponse::ok(
        page.map(|i| resources::catalog_item(&url, &i))
            .into_document(&url, &[]),
    ))
}

/// `DELETE /api/catalog-items/{id}` → 204
pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("catalogs:write")?;
    let account = auth.account().to_owned();
    state
        .store
        .write(move |ctx| catalog::delete(ctx, &account, &id))
        .await
        .map_err(store_error)?;
    Ok(JsonApiResponse::no_content())
}
