//! Segments (issue #5) in Klaviyo's shapes, and our
//! `POST /outflow/v1/flows/{id}/add-past-profiles`. A posted definition is
//! parsed by `outflow_core::segment` (errors carry a pointer into the body);
//! the lists and segments it names must exist, and segments may not depend
//! on each other in a cycle. Membership is built and kept current by the
//! engine; `is_processing` is true until the first build is done.

use super::{expect_type, Data, Doc};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::filter::Op;
use crate::jsonapi::{single_document, ApiQuery, JsonApiResponse, RequestUrl, Resource};
use crate::pagination::{Page, SEGMENTS_PAGE, SEGMENT_PROFILES_PAGE};
use crate::resources;
use crate::state::{store_error, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use outflow_core::segment::SegmentDefinition;
use outflow_store::db::Conn;
use outflow_store::segments::{self as store_segments, Segment, SegmentChange};
use outflow_store::{flows, lists, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const DEFINITION: &str = "/data/attributes/definition";

/// What `fields[segment]` may name.
const FIELDS: &[&str] = &[
    "created",
    "definition",
    "definition.condition_groups",
    "id",
    "is_active",
    "is_processing",
    "is_starred",
    "name",
    "profile_count",
    "updated",
];

fn shaped(url: &RequestUrl, s: &Segment, n: Option<i64>, fields: Option<&[String]>) -> Resource {
    let mut r = resource(url, s, n);
    r.apply_fields(fields);
    r
}

#[derive(Debug, Deserialize)]
pub struct SegmentAttributes {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub definition: Option<Value>,
    #[serde(default)]
    pub is_starred: Option<bool>,
    #[serde(default)]
    pub is_active: Option<bool>,
}

pub fn resource(url: &RequestUrl, s: &Segment, profile_count: Option<i64>) -> Resource {
    let mut attrs = json!({
        "name": s.name,
        "definition": s.definition,
        "created": resources::datetime(s.created),
        "updated": resources::datetime(s.updated),
        "is_active": s.is_active,
        "is_processing": s.is_processing(),
        "is_starred": s.is_starred,
    });
    if let Some(n) = profile_count {
        attrs["profile_count"] = json!(n);
    }
    Resource::new(url, "segment", &s.id, attrs)
        .with_relationship_links("profiles")
        .with_relationship_links("tags")
        .with_relationship_links("flow-triggers")
}

fn name_of(n: Option<&str>) -> Result<Option<String>, ApiError> {
    match n.map(str::trim) {
        None => Ok(None),
        Some("") => Err(ApiError::invalid_pointer(
            "/data/attributes/name",
            "The segment name must not be empty.",
        )),
        Some(n) => Ok(Some(n.to_owned())),
    }
}

/// Parses the definition, then checks that every list or segment it names
/// exists in the account and that no segment would end up depending on
/// itself. The outer error is the store's, the inner one the client's.
fn check_definition(
    conn: &mut dyn Conn,
    account: &str,
    json: &Value,
    self_id: Option<&str>,
) -> Result<Result<(), ApiError>, StoreError> {
    let def = match SegmentDefinition::parse(json, DEFINITION, self_id) {
        Ok(d) => d,
        Err(e) => {
            return Ok(Err(ApiError::invalid_pointer(
                e.pointer.clone(),
                e.detail(),
            )))
        }
    };
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<String> = Vec::new();
    for g in &def.deps.groups {
        if lists::get(conn, account, g)?.is_some() {
            continue;
        }
        if store_segments::get(conn, account, g)?.is_none() {
            return Ok(Err(ApiError::invalid_pointer(
                format!("{DEFINITION}/condition_groups"),
                format!("No list or segment with id {g} exists."),
            )));
        }
        todo.push(g.clone());
    }
    // Walk the segments named, transitively, looking for this one.
    while let Some(id) = todo.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        if Some(id.as_str()) == self_id {
            return Ok(Err(ApiError::invalid_pointer(
                format!("{DEFINITION}/condition_groups"),
                "Segments cannot depend on each other in a cycle.",
            )));
        }
        let Some(s) = store_segments::get(conn, account, &id)? else {
            continue;
        };
        if let Ok(d) = SegmentDefinition::parse(&s.definition, "", Some(&s.id)) {
            todo.extend(d.deps.groups);
        }
    }
    Ok(Ok(()))
}

/// `POST /api/segments` → 201
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    crate::extract::JsonApi(doc): crate::extract::JsonApi<Doc<Data<SegmentAttributes>>>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("segments:write")?;
    let fields = q.fields("segment", FIELDS)?;
    expect_type(&doc.data.kind, "segment", "/data/type")?;
    let a = doc.data.attributes;
    let name = name_of(a.name.as_deref())?
        .ok_or_else(|| ApiError::missing_field("/data/attributes", "name"))?;
    let definition = a
        .definition
        .ok_or_else(|| ApiError::missing_field("/data/attributes", "definition"))?;
    let starred = a.is_starred.unwrap_or(false);
    let (account, now) = (auth.account().to_owned(), state.now());
    let saved = state
        .store
        .write(move |ctx| {
            if let Err(e) = check_definition(ctx.conn, &account, &definition, None)? {
                return Ok(Err(e));
            }
            store_segments::create(ctx, &account, &name, &definition, starred, now).map(Ok)
        })
        .await
        .map_err(store_error)??;
    state.wake();
    Ok(JsonApiResponse::created(single_document(
        &url,
        &shaped(&url, &saved, None, fields.as_deref()),
        &[],
    )))
}

/// `GET /api/segments`
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("segments:read")?;
    let fields = q.fields("segment", FIELDS)?;
    let filter = q.filter(&[("name", &[Op::Equals])])?;
    let name = filter
        .get("name", Op::Equals)
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let page = q.page(SEGMENTS_PAGE)?;
    let after = page.cursor.as_ref().map(|c| c.id.clone());
    let (account, limit) = (auth.account().to_owned(), page.fetch_limit());
    let rows = state
        .store
        .read(move |c| store_segments::list(c, &account, name.as_deref(), after.as_deref(), limit))
        .await
        .map_err(store_error)?;
    let mut page = Page::from_rows(rows, &page, |s| (String::new(), s.id.clone()));
    page.prev = None;
    Ok(JsonApiResponse::ok(
        page.map(|s| shaped(&url, &s, None, fields.as_deref()))
            .into_document(&url, &[]),
    ))
}

/// `GET /api/segments/{id}` (`additional-fields[segment]=profile_count`)
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    Path(id): Path<String>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("segments:read")?;
    let fields = q.fields("segment", FIELDS)?;
    let count = q
        .additional_fields("segment", &["profile_count"])?
        .iter()
        .any(|f| f == "profile_count");
    let (account, shown) = (auth.account().to_owned(), id.clone());
    let found = state
        .store
        .read(move |c| {
            let Some(s) = store_segments::get(c, &account, &id)? else {
                return Ok(None);
            };
            let n = if count {
                Some(store_segments::member_count(c, &account, &id)?)
            } else {
                None
            };
            Ok(Some((s, n)))
        })
        .await
        .map_err(store_error)?;
    let (s, n) = found.ok_or_else(|| ApiError::resource_not_found("segment", &shown))?;
    Ok(JsonApiResponse::ok(single_document(
        &url,
        &shaped(&url, &s, n, fields.as_deref()),
        &[],
    )))
}

/// `PATCH /api/segments/{id}`: name, definition, is_starred, or is_active
/// alone (Klaviyo: deactivation cannot be combined with other updates).
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    Path(id): Path<String>,
    crate::extract::JsonApi(doc): crate::extract::JsonApi<Doc<Data<SegmentAttributes>>>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("segments:write")?;
    expect_type(&doc.data.kind, "segment", "/data/type")?;
    if doc.data.id.as_deref().is_some_and(|d| d != id) {
        return Err(ApiError::conflict(
            "The id in the body does not match the id in the URL.",
        ));
    }
    let a = doc.data.attributes;
    if a.is_active == Some(false)
        && (a.name.is_some() || a.definition.is_some() || a.is_starred.is_some())
    {
        return Err(ApiError::invalid_pointer(
            "/data/attributes/is_active",
            "When deactivating a segment, is_active must be the only attribute.",
        ));
    }
    let change = SegmentChange {
        name: name_of(a.name.as_deref())?,
        definition: a.definition,
        is_starred: a.is_starred,
        is_active: a.is_active,
    };
    let (account, now) = (auth.account().to_owned(), state.now());
    let saved = state
        .store
        .write(move |ctx| {
            if store_segments::get(ctx.conn, &account, &id)?.is_none() {
                return Err(StoreError::NotFound(format!("segment {id}")));
            }
            if let Some(d) = &change.definition {
                if let Err(e) = check_definition(ctx.conn, &account, d, Some(&id))? {
                    return Ok(Err(e));
                }
            }
            store_segments::update(ctx, &account, &id, &change, now).map(Ok)
        })
        .await
        .map_err(store_error)??;
    state.wake();
    Ok(JsonApiResponse::ok(single_document(
        &url,
        &resource(&url, &saved, None),
        &[],
    )))
}

/// `DELETE /api/segments/{id}` → 204
pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("segments:write")?;
    let account = auth.account().to_owned();
    state
        .store
        .write(move |ctx| store_segments::delete(ctx, &account, &id))
        .await
        .map_err(store_error)?;
    Ok(JsonApiResponse::no_content())
}

/// `GET /api/segments/{id}/profiles`
pub async fn members(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    Path(id): Path<String>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("segments:read")?;
    auth.require("profiles:read")?;
    let subs = q
        .additional_fields("profile", &["subscriptions", "predictive_analytics"])?
        .iter()
        .any(|f| f == "subscriptions");
    let page = q.page(SEGMENT_PROFILES_PAGE)?;
    let after = page.cursor.as_ref().map(|c| c.id.clone());
    let (account, limit, shown) = (auth.account().to_owned(), page.fetch_limit(), id.clone());
    let rows = state
        .store
        .read(move |c| {
            if store_segments::get(c, &account, &id)?.is_none() {
                return Ok(None);
            }
            store_segments::members(c, &account, &id, after.as_deref(), limit).map(Some)
        })
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::resource_not_found("segment", &shown))?;
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

/// `GET /api/segments/{id}/relationships/profiles`: member ids only.
pub async fn member_ids(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
    Path(id): Path<String>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("segments:read")?;
    auth.require("profiles:read")?;
    let page = q.page(SEGMENT_PROFILES_PAGE)?;
    let after = page.cursor.as_ref().map(|c| c.id.clone());
    let (account, limit, shown) = (auth.account().to_owned(), page.fetch_limit(), id.clone());
    let rows = state
        .store
        .read(move |c| {
            if store_segments::get(c, &account, &id)?.is_none() {
                return Ok(None);
            }
            store_segments::member_ids(c, &id, after.as_deref(), limit).map(Some)
        })
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::resource_not_found("segment", &shown))?;
    let mut page = Page::from_rows(rows, &page, |p| (String::new(), p.clone()));
    page.prev = None;
    let links = page.links(&url);
    let data: Vec<Value> = page
        .items
        .iter()
        .map(|p| json!({"type": "profile", "id": p}))
        .collect();
    Ok(JsonApiResponse::ok(
        json!({"data": data, "links": links.to_value()}),
    ))
}

fn backfill_body(b: &store_segments::Backfill) -> Value {
    json!({"data": {"type": "flow-backfill", "id": b.id, "attributes": {
        "flow_id": b.flow_id,
        "status": b.status,
        "enrolled": b.enrolled,
        "created": resources::datetime(b.created),
        "updated": resources::datetime(b.updated),
    }}})
}

/// `POST /outflow/v1/flows/{id}/add-past-profiles` → 202: enrols the
/// segment's (or list's) current members, subject to the flow's filters and
/// re-entry rules. Poll `GET /outflow/v1/flow-backfills/{id}`.
pub async fn add_past_profiles(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("flows:write")?;
    let (account, now, shown) = (auth.account().to_owned(), state.now(), id.clone());
    let made = state
        .store
        .write(move |ctx| {
            let Some(f) = flows::get(ctx.conn, &account, &id)? else {
                return Ok(None);
            };
            if !matches!(f.trigger_type.as_str(), "segment" | "list") {
                return Ok(Some(Err(ApiError::invalid(
                    "Past profiles can only be added to a flow triggered by a segment or a list.",
                ))));
            }
            if f.status == "draft" || f.archived {
                return Ok(Some(Err(ApiError::invalid(
                    "The flow must be live or manual to add past profiles.",
                ))));
            }
            store_segments::request_backfill(ctx.conn, &account, &id, now).map(|b| Some(Ok(b)))
        })
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::resource_not_found("flow", &shown))??;
    state.wake();
    Ok(JsonApiResponse {
        status: StatusCode::ACCEPTED,
        body: Some(backfill_body(&made)),
    })
}

/// `GET /outflow/v1/flow-backfills/{id}`
pub async fn backfill(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("flows:read")?;
    let (account, shown) = (auth.account().to_owned(), id.clone());
    let b = state
        .store
        .read(move |c| store_segments::get_backfill(c, &id))
        .await
        .map_err(store_error)?
        .filter(|b| b.account_id == account)
        .ok_or_else(|| ApiError::resource_not_found("flow-backfill", &shown))?;
    Ok(JsonApiResponse::ok(backfill_body(&b)))
}
