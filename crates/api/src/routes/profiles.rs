//! Profiles: create (201/409), import (201/200), get, patch, list.

use super::{expect_type, patch_properties, profile_error, Doc};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{JsonApi, PROFILES_BODY_LIMIT};
use crate::filter::Op;
use crate::jsonapi::{single_document, ApiQuery, JsonApiResponse, RequestUrl};
use crate::pagination::{Page, PROFILES_PAGE};
use crate::resources;
use crate::state::{store_error, AppState};
use axum::extract::{Path, State};
use outflow_core::profile::ProfileInput;
use outflow_store::profiles::{self as store_profiles, ProfileFilter, Upserted};
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Deserialize)]
pub struct ProfileBody {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub id: Option<String>,
    pub attributes: Map<String, Value>,
    #[serde(default)]
    pub meta: Option<Value>,
}

fn input(body: &ProfileBody) -> Result<ProfileInput, ApiError> {
    expect_type(&body.kind, "profile", "/data/type")?;
    let mut input = ProfileInput::from_attributes(&body.attributes)
        .map_err(|e| profile_error("/data/attributes", e))?;
    patch_properties(body.meta.as_ref(), &mut input)?;
    Ok(input)
}

fn wants_subscriptions(q: &ApiQuery) -> Result<bool, ApiError> {
    Ok(
        q.additional_fields("profile", &["subscriptions", "predictive_analytics"])?
            .iter()
            .any(|f| f == "subscriptions"),
    )
}

/// `POST /api/profiles`
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    JsonApi(doc): JsonApi<Doc<ProfileBody>, PROFILES_BODY_LIMIT>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("profiles:write")?;
    let input = input(&doc.data)?;
    if !input.has_identifier() {
        return Err(ApiError::invalid_pointer(
            "/data/attributes",
            "A profile needs at least one identifier: email, phone_number or external_id.",
        ));
    }
    let subs = wants_subscriptions(&q)?;
    let (account, now) = (auth.account().to_owned(), state.now());
    let p = state
        .store
        .write(move |ctx| store_profiles::create(ctx, &account, &input, now))
        .await
        .map_err(store_error)?;
    Ok(JsonApiResponse::created(single_document(
        &url,
        &resources::profile(&url, &p, subs),
        &[],
    )))
}

/// `POST /api/profile-import`: create (201) or update (200) by identifiers.
pub async fn import(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    JsonApi(doc): JsonApi<Doc<ProfileBody>, PROFILES_BODY_LIMIT>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("profiles:write")?;
    let mut input = input(&doc.data)?;
    input.id = doc.data.id.clone().filter(|s| !s.is_empty());
    if !input.has_identifier() {
        return Err(ApiError::invalid_pointer(
            "/data/attributes",
            "A profile needs at least one identifier: id, email, phone_number or external_id.",
        ));
    }
    let subs = wants_subscriptions(&q)?;
    let (account, now) = (auth.account().to_owned(), state.now());
    let (p, how) = state
        .store
        .write(move |ctx| {
            let (id, how) = store_profiles::upsert(ctx, &account, &input, now)?;
            let p = store_profiles::get(ctx.conn, &account, &id)?
                .ok_or_else(|| outflow_store::StoreError::NotFound(format!("profile {id}")))?;
            Ok((p, how))
        })
        .await
        .map_err(store_error)?;
    let doc = single_document(&url, &resources::profile(&url, &p, subs), &[]);
    Ok(match how {
        Upserted::Created => JsonApiResponse::created(doc),
        Upserted::Updated | Upserted::Unchanged => JsonApiResponse::ok(doc),
    })
}

/// `GET /api/profiles/{id}`
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    Path(id): Path<String>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("profiles:read")?;
    let subs = wants_subscriptions(&q)?;
    let fields = q.fields("profile", &[])?;
    let (account, shown) = (auth.account().to_owned(), id.clone());
    let p = state
        .store
        .read(move |c| store_profiles::get(c, &account, &id))
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::resource_not_found("profile", &shown))?;
    let mut r = resources::profile(&url, &p, subs);
    r.apply_fields(fields.as_deref());
    Ok(JsonApiResponse::ok(single_document(&url, &r, &[])))
}

/// `PATCH /api/profiles/{id}`: `null` clears, omitted stays.
pub async fn patch(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    Path(id): Path<String>,
    JsonApi(doc): JsonApi<Doc<ProfileBody>, PROFILES_BODY_LIMIT>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("profiles:write")?;
    if doc.data.id.as_deref().is_some_and(|b| b != id) {
        return Err(ApiError::conflict(
            "The id in the body does not match the id in the URL.",
        ));
    }
    let input = input(&doc.data)?;
    let subs = wants_subscriptions(&q)?;
    let (account, now) = (auth.account().to_owned(), state.now());
    let p = state
        .store
        .write(move |ctx| store_profiles::patch(ctx, &account, &id, &input, now))
        .await
        .map_err(store_error)?;
    Ok(JsonApiResponse::ok(single_document(
        &url,
        &resources::profile(&url, &p, subs),
        &[],
    )))
}

const FILTERS: &[(&str, &[Op])] = &[
    ("id", &[Op::Equals, Op::Any]),
    ("email", &[Op::Equals, Op::Any]),
    ("phone_number", &[Op::Equals, Op::Any]),
    ("external_id", &[Op::Equals, Op::Any]),
    ("_kx", &[Op::Equals]),
    ("created", &[Op::GreaterThan, Op::LessThan]),
    ("updated", &[Op::GreaterThan, Op::LessThan]),
];

/// `GET /api/profiles`
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("profiles:read")?;
    let filter = q.filter(FILTERS)?;
    let mut filters = Vec::new();
    for c in &filter.conditions {
        let strings = || -> Result<Vec<String>, ApiError> {
            c.value
                .strings()
                .map(|v| v.into_iter().map(str::to_owned).collect())
                .ok_or_else(|| {
                    ApiError::invalid_parameter(
                        "filter",
                        format!("'{}' needs a string or a list of strings.", c.field),
                    )
                })
        };
        let time = || -> Result<i64, ApiError> {
            c.value
                .as_datetime()
                .map(|t| t.timestamp_micros())
                .ok_or_else(|| {
                    ApiError::invalid_parameter(
                        "filter",
                        format!("'{}' needs a datetime.", c.field),
                    )
                })
        };
        filters.push(match (c.field.as_str(), c.op) {
            ("id", _) => ProfileFilter::IdIn(strings()?),
            ("email", _) => ProfileFilter::EmailIn(strings()?),
            ("phone_number", _) => ProfileFilter::PhoneIn(strings()?),
            ("external_id" | "_kx", _) => ProfileFilter::ExternalIn(strings()?),
            ("created", Op::GreaterThan) => ProfileFilter::CreatedAfter(time()?),
            ("created", _) => ProfileFilter::CreatedBefore(time()?),
            ("updated", Op::GreaterThan) => ProfileFilter::UpdatedAfter(time()?),
            _ => ProfileFilter::UpdatedBefore(time()?),
        });
    }
    let subs = wants_subscriptions(&q)?;
    let fields = q.fields("profile", &[])?;
    let page = q.page(PROFILES_PAGE)?;
    let after = page.cursor.as_ref().map(|c| c.id.clone());
    let (account, limit) = (auth.account().to_owned(), page.fetch_limit());
    let rows = state
        .store
        .read(move |c| store_profiles::list(c, &account, &filters, after.as_deref(), limit))
        .await
        .map_err(store_error)?;
    let mut page = Page::from_rows(rows, &page, |p| (String::new(), p.id.clone()));
    page.prev = None;
    let page = page.map(|p| {
        let mut r = resources::profile(&url, &p, subs);
        r.apply_fields(fields.as_deref());
        r
    });
    Ok(JsonApiResponse::ok(page.into_document(&url, &[])))
}
