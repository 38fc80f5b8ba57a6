//! Lists, their members, and subscription jobs.

use super::events::{profile_input, ProfileData};
use super::{expect_type, Data, Doc, Ident};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::JsonApi;
use crate::filter::Op;
use crate::jsonapi::{single_document, ApiQuery, JsonApiResponse, RequestUrl};
use crate::pagination::{Page, LISTS_PAGE, LIST_PROFILES_PAGE};
use crate::resources;
use crate::state::{store_error, AppState};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use outflow_store::lists::{self as store_lists, JoinSource};
use outflow_store::{profiles, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
pub struct ListAttributes {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub opt_in_process: Option<String>,
}

fn name_of(a: &ListAttributes) -> Result<String, ApiError> {
    match a.name.as_deref().map(str::trim) {
        Some(n) if !n.is_empty() => Ok(n.to_owned()),
        _ => Err(ApiError::missing_field("/data/attributes", "name")),
    }
}

/// `POST /api/lists` → 201
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    JsonApi(doc): JsonApi<Doc<Data<ListAttributes>>>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("lists:write")?;
    expect_type(&doc.data.kind, "list", "/data/type")?;
    let name = name_of(&doc.data.attributes)?;
    let opt_in = doc
        .data
        .attributes
        .opt_in_process
        .clone()
        .unwrap_or_else(|| "single_opt_in".into());
    if !matches!(opt_in.as_str(), "single_opt_in" | "double_opt_in") {
        return Err(ApiError::invalid_pointer(
            "/data/attributes/opt_in_process",
            "opt_in_process must be 'single_opt_in' or 'double_opt_in'.",
        ));
    }
    let (account, now) = (auth.account().to_owned(), state.now());
    let l = state
        .store
        .write(move |ctx| store_lists::create(ctx, &account, &name, &opt_in, now))
        .await
        .map_err(store_error)?;
    Ok(JsonApiResponse::created(single_document(
        &url,
        &resources::list(&url, &l, None),
        &[],
    )))
}

/// `GET /api/lists`
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("lists:read")?;
    let filter = q.filter(&[
        ("name", &[Op::Equals]),
        ("id", &[Op::Equals, Op::Any]),
        ("created", &[Op::GreaterThan]),
        ("updated", &[Op::GreaterThan]),
    ])?;
    let name = filter
        .get("name", Op::Equals)
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let page = q.page(LISTS_PAGE)?;
    let after = page.cursor.as_ref().map(|c| c.id.clone());
    let (account, limit) = (auth.account().to_owned(), page.fetch_limit());
    let rows = state
        .store
        .read(move |c| store_lists::list(c, &account, name.as_deref(), after.as_deref(), limit))
        .await
        .map_err(store_error)?;
    let mut page = Page::from_rows(rows, &page, |l| (String::new(), l.id.clone()));
    page.prev = None;
    Ok(JsonApiResponse::ok(
        page.map(|l| resources::list(&url, &l, None))
            .into_document(&url, &[]),
    ))
}

/// `GET /api/lists/{id}` (`additional-fields[list]=profile_count`)
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    Path(id): Path<String>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("lists:read")?;
    let count = q
        .additional_fields("list", &["profile_count"])?
        .iter()
        .any(|f| f == "profile_count");
    let (account, shown) = (auth.account().to_owned(), id.clone());
    let found = state
        .store
        .read(move |c| {
            let Some(l) = store_lists::get(c, &account, &id)? else {
                return Ok(None);
            };
            let n = if count {
                Some(store_lists::member_count(c, &account, &id)?)
            } else {
                None
            };
            Ok(Some((l, n)))
        })
        .await
        .map_err(store_error)?;
    let (l, n) = found.ok_or_else(|| ApiError::resource_not_found("list", &shown))?;
    Ok(JsonApiResponse::ok(single_document(
        &url,
        &resources::list(&url, &l, n),
        &[],
    )))
}

/// `PATCH /api/lists/{id}`: renames.
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    Path(id): Path<String>,
    JsonApi(doc): JsonApi<Doc<Data<ListAttributes>>>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("lists:write")?;
    expect_type(&doc.data.kind, "list", "/data/type")?;
    let name = name_of(&doc.data.attributes)?;
    let (account, now) = (auth.account().to_owned(), state.now());
    let l = state
        .store
        .write(move |ctx| store_lists::rename(ctx, &account, &id, &name, now))
        .await
        .map_err(store_error)?;
    Ok(JsonApiResponse::ok(single_document(
        &url,
        &resources::list(&url, &l, None),
        &[],
    )))
}

/// `DELETE /api/lists/{id}` → 204
pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("lists:write")?;
    let account = auth.account().to_owned();
    state
        .store
        .write(move |ctx| store_lists::delete(ctx, &account, &id))
        .await
        .map_err(store_error)?;
    Ok(JsonApiResponse::no_content())
}

/// `GET /api/lists/{id}/profiles`
pub async fn members(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    Path(id): Path<String>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("lists:read")?;
    auth.require("profiles:read")?;
    let subs = q
        .additional_fields("profile", &["subscriptions", "predictive_analytics"])?
        .iter()
        .any(|f| f == "subscriptions");
    let page = q.page(LIST_PROFILES_PAGE)?;
    let after = page.cursor.as_ref().map(|c| c.id.clone());
    let (account, limit, shown) = (auth.account().to_owned(), page.fetch_limit(), id.clone());
    let rows = state
        .store
        .read(move |c| {
            if store_lists::get(c, &account, &id)?.is_none() {
                return Ok(None);
            }
            store_lists::members(c, &account, &id, after.as_deref(), limit).map(Some)
        })
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::resource_not_found("list", &shown))?;
    let mut page = Page::from_rows(rows, &page, |m| (String::new(), m.profile.id.clone()));
    page.prev = None;
    let page = page.map(|m| {
        let mut r = resources::profile(&url, &m.profile, subs);
        r.attributes.insert(
            "joined_group_at".into(),
            json!(resources::datetime(m.joined)),
        );
        r
    });
    Ok(JsonApiResponse::ok(page.into_document(&url, &[])))
}

fn profile_ids(doc: Doc<Vec<Ident>>) -> Result<Vec<String>, ApiError> {
    if doc.data.len() > 1000 {
        return Err(ApiError::invalid_pointer(
            "/data",
            "At most 1000 profiles per request.",
        ));
    }
    doc.data
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            expect_type(&d.kind, "profile", &format!("/data/{i}/type"))?;
            Ok(d.id)
        })
        .collect()
}

/// `POST /api/lists/{id}/relationships/profiles` → 204
pub async fn add_members(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonApi(doc): JsonApi<Doc<Vec<Ident>>>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("lists:write")?;
    let ids = profile_ids(doc)?;
    let (account, now) = (auth.account().to_owned(), state.now());
    let how = JoinSource {
        source: "api",
        historical_import: false,
    };
    state
        .store
        .write(move |ctx| store_lists::add_members(ctx, &account, &id, &ids, how, now))
        .await
        .map_err(store_error)?;
    state.wake();
    Ok(JsonApiResponse::no_content())
}

/// `DELETE /api/lists/{id}/relationships/profiles` → 204
pub async fn remove_members(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonApi(doc): JsonApi<Doc<Vec<Ident>>>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("lists:write")?;
    let ids = profile_ids(doc)?;
    let account = auth.account().to_owned();
    state
        .store
        .write(move |ctx| store_lists::remove_members(ctx, &account, &id, &ids))
        .await
        .map_err(store_error)?;
    Ok(JsonApiResponse::no_content())
}

#[derive(Debug, Deserialize)]
pub struct SubscribeAttributes {
    pub profiles: Doc<Vec<ProfileData>>,
    #[serde(default)]
    pub custom_source: Option<String>,
    #[serde(default)]
    pub historical_import: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct SubscribeJob {
    #[serde(rename = "type")]
    pub kind: String,
    pub attributes: SubscribeAttributes,
    #[serde(default)]
    pub relationships: Option<Value>,
}

/// `POST /api/profile-subscription-bulk-create-jobs` → 202. Consent is
/// recorded per channel; the list join keeps `historical_import` so list
/// flows can skip imports, as Klaviyo does.
pub async fn subscribe(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    JsonApi(doc): JsonApi<Doc<SubscribeJob>>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("subscriptions:write")?;
    let _ = headers;
    expect_type(
        &doc.data.kind,
        "profile-subscription-bulk-create-job",
        "/data/type",
    )?;
    let list_id = doc
        .data
        .relationships
        .as_ref()
        .and_then(|r| r.pointer("/list/data/id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let attrs = doc.data.attributes;
    if attrs.profiles.data.len() > 1000 {
        return Err(ApiError::invalid_pointer(
            "/data/attributes/profiles/data",
            "At most 1000 profiles per job.",
        ));
    }
    let historical = attrs.historical_import.unwrap_or(false);
    let source = attrs.custom_source.unwrap_or_else(|| "api".into());
    let now_t = state.clock.now();
    let mut entries = Vec::new();
    for (i, p) in attrs.profiles.data.iter().enumerate() {
        let base = format!("/data/attributes/profiles/data/{i}");
        let mut data = ProfileData {
            kind: p.kind.clone(),
            id: p.id.clone(),
            attributes: p.attributes.clone(),
            meta: None,
        };
        let subs = data
            .attributes
            .remove("subscriptions")
            .unwrap_or(Value::Null);
        let input = profile_input(&data, || base.clone())?;
        if !input.has_identifier() {
            return Err(ApiError::invalid_pointer(
                format!("{base}/attributes"),
                "Each profile needs an email or phone_number.",
            ));
        }
        entries.push((
            input,
            consent_doc(
                &subs,
                &source,
                now_t,
                &format!("{base}/attributes/subscriptions"),
            )?,
        ));
    }
    let (account, now) = (auth.account().to_owned(), state.now());
    state
        .store
        .write(move |ctx| {
            let mut joined = Vec::new();
            for (input, consent) in &entries {
                let (id, _) = profiles::upsert(ctx, &account, input, now)?;
                let mut p = profiles::get(ctx.conn, &account, &id)?
                    .ok_or_else(|| StoreError::NotFound(format!("profile {id}")))?;
                merge(&mut p.subscriptions, consent);
                profiles::set_subscriptions(ctx, &account, &id, &p.subscriptions, now)?;
                joined.push(id);
            }
            if let Some(list_id) = &list_id {
                let how = JoinSource {
                    source: &source,
                    historical_import: historical,
                };
                store_lists::add_members(ctx, &account, list_id, &joined, how, now)?;
            }
            Ok(())
        })
        .await
        .map_err(store_error)?;
    state.wake();
    Ok(JsonApiResponse::accepted())
}

/// Turns the request's `subscriptions` into the stored consent document.
fn consent_doc(
    subs: &Value,
    source: &str,
    now: chrono::DateTime<chrono::Utc>,
    pointer: &str,
) -> Result<Value, ApiError> {
    let mut out = serde_json::Map::new();
    let Some(obj) = subs.as_object() else {
        if subs.is_null() {
            return Ok(Value::Object(out));
        }
        return Err(ApiError::invalid_pointer(
            pointer,
            "subscriptions must be an object.",
        ));
    };
    for (channel, v) in obj {
        if !matches!(channel.as_str(), "email" | "sms" | "whatsapp" | "push") {
            return Err(ApiError::invalid_pointer(
                format!("{pointer}/{channel}"),
                format!("Unknown channel '{channel}'."),
            ));
        }
        let Some(kinds) = v.as_object() else {
            return Err(ApiError::invalid_pointer(
                format!("{pointer}/{channel}"),
                "A channel must be an object.",
            ));
        };
        let mut ch = serde_json::Map::new();
        for (kind, c) in kinds {
            let consent = c.get("consent").and_then(Value::as_str).ok_or_else(|| {
                ApiError::invalid_pointer(
                    format!("{pointer}/{channel}/{kind}/consent"),
                    "consent is required.",
                )
            })?;
            if !matches!(consent, "SUBSCRIBED" | "UNSUBSCRIBED" | "NEVER_SUBSCRIBED") {
                return Err(ApiError::invalid_pointer(
                    format!("{pointer}/{channel}/{kind}/consent"),
                    format!("Invalid consent '{consent}'."),
                ));
            }
            let at = c
                .get("consented_at")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| now.to_rfc3339_opts(chrono::SecondsFormat::Secs, false));
            ch.insert(kind.clone(), json!({"consent": consent, "consent_timestamp": at, "method": "API", "method_detail": source}));
        }
        out.insert(channel.clone(), Value::Object(ch));
    }
    Ok(Value::Object(out))
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}
