//! Events: the ingest hot path, bulk create, and reads.

use super::{expect_type, parse_time, patch_properties, profile_error, Data, Doc};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{JsonApi, EVENTS_BODY_LIMIT};
use crate::filter::Op;
use crate::jsonapi::{single_document, ApiQuery, JsonApiResponse, RequestUrl};
use crate::pagination::{Page, EVENTS_PAGE};
use crate::resources;
use crate::state::{store_error, AppState};
use axum::extract::{Path, State};
use outflow_core::event::{EventInput, ValidEvent};
use outflow_core::profile::ProfileInput;
use outflow_store::events::{self as store_events, EventCursor, EventFilter};
use outflow_store::{metrics, profiles};
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Deserialize)]
pub struct EventAttributes {
    pub properties: Map<String, Value>,
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(default)]
    pub value_currency: Option<String>,
    #[serde(default)]
    pub unique_id: Option<String>,
    #[serde(default)]
    pub backfill: Option<bool>,
    pub metric: Doc<Data<MetricAttributes>>,
    #[serde(default)]
    pub profile: Option<Doc<ProfileData>>,
}

#[derive(Debug, Deserialize)]
pub struct MetricAttributes {
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub struct ProfileData {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub attributes: Map<String, Value>,
    #[serde(default)]
    pub meta: Option<Value>,
}

/// Reads a profile reference as used inside events (`…/profile/data`).
/// `base` builds the JSON pointer only when there is an error to report: a
/// bulk job would otherwise format thousands of pointers it never uses.
pub fn profile_input(p: &ProfileData, base: impl Fn() -> String) -> Result<ProfileInput, ApiError> {
    if p.kind != "profile" {
        expect_type(&p.kind, "profile", &format!("{}/type", base()))?;
    }
    let mut input = ProfileInput::from_attributes(&p.attributes)
        .map_err(|e| profile_error(&format!("{}/attributes", base()), e))?;
    input.id = p.id.clone().filter(|s| !s.is_empty());
    patch_properties(p.meta.as_ref(), &mut input)?;
    Ok(input)
}

/// `base` builds the event's JSON pointer, only on error (see
/// [`profile_input`]).
fn validate(
    attrs: EventAttributes,
    profile: ProfileInput,
    base: impl Fn() -> String,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<ValidEvent, ApiError> {
    let time = match attrs.time.as_deref() {
        None => None,
        Some(t) => Some(parse_time(t).ok_or_else(|| {
            ApiError::invalid_pointer(
                format!("{}/time", base()),
                format!("'{t}' is not a valid datetime."),
            )
        })?),
    };
    EventInput {
        metric_name: attrs.metric.data.attributes.name,
        profile,
        properties: attrs.properties,
        time,
        value: attrs.value,
        value_currency: attrs.value_currency,
        unique_id: attrs.unique_id,
        backfill: attrs.backfill.unwrap_or(false),
    }
    .validate(now)
    .map_err(|e| {
        use outflow_core::event::EventError as E;
        let field = match e {
            E::EmptyMetric | E::MetricTooLong => "metric/data/attributes/name",
            E::TooManyProperties(_) | E::StringTooLong(_) => "properties",
            E::TooOld | E::TooFarAhead => "time",
            E::NoIdentifier => "profile/data/attributes",
        };
        ApiError::invalid_pointer(format!("{}/{field}", base()), e.to_string())
    })
}

/// `POST /api/events` → 202 once the event is durable.
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonApi(doc): JsonApi<Doc<Data<EventAttributes>>, EVENTS_BODY_LIMIT>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("events:write")?;
    expect_type(&doc.data.kind, "event", "/data/type")?;
    let mut attrs = doc.data.attributes;
    let base = "/data/attributes";
    let profile = match attrs.profile.take() {
        Some(p) => profile_input(&p.data, || format!("{base}/profile/data"))?,
        None => return Err(ApiError::missing_field(base, "profile")),
    };
    expect_type(
        &attrs.metric.data.kind,
        "metric",
        &format!("{base}/metric/data/type"),
    )?;
    let ev = validate(attrs, profile, || base.to_owned(), state.clock.now())?;
    let account = auth.account().to_owned();
    let now = state.now();
    state
        .store
        .write(move |ctx| store_events::ingest(ctx, &account, &ev, now))
        .await
        .map_err(store_error)?;
    state.wake_events();
    Ok(JsonApiResponse::accepted())
}

#[derive(Debug, Deserialize)]
pub struct BulkAttributes {
    #[serde(rename = "events-bulk-create")]
    pub events_bulk_create: Doc<Vec<Data<BulkProfileEvents>>>,
}

#[derive(Debug, Deserialize)]
pub struct BulkProfileEvents {
    pub profile: Doc<ProfileData>,
    pub events: Doc<Vec<Data<EventAttributes>>>,
}

/// Most events accepted in one bulk job (Klaviyo's limit).
const MAX_BULK_EVENTS: usize = 1000;

/// `POST /api/event-bulk-create-jobs` → 202. All events are validated first
/// and stored in one transaction: the job is accepted whole or not at all.
pub async fn bulk_create(
    State(state): State<AppState>,
    auth: Auth,
    JsonApi(doc): JsonApi<Doc<Data<BulkAttributes>>, EVENTS_BODY_LIMIT>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("events:write")?;
    expect_type(&doc.data.kind, "event-bulk-create-job", "/data/type")?;
    let now_t = state.clock.now();
    let mut valid = Vec::new();
    for (i, group) in doc
        .data
        .attributes
        .events_bulk_create
        .data
        .into_iter()
        .enumerate()
    {
        let base = || format!("/data/attributes/events-bulk-create/data/{i}/attributes");
        let profile = profile_input(&group.attributes.profile.data, || {
            format!("{}/profile/data", base())
        })?;
        let events = group.attributes.events.data;
        let last = events.len().saturating_sub(1);
        let mut profile = Some(profile);
        for (j, mut ev) in events.into_iter().enumerate() {
            let eb = || format!("{}/events/data/{j}/attributes", base());
            ev.attributes.profile = None;
            // The group's last event takes the profile; the others copy it.
            let p = if j == last {
                profile.take()
            } else {
                profile.clone()
            };
            let Some(p) = p else { break };
            valid.push(validate(ev.attributes, p, eb, now_t)?);
        }
    }
    if valid.len() > MAX_BULK_EVENTS {
        return Err(ApiError::invalid_pointer(
            "/data/attributes/events-bulk-create/data",
            format!(
                "A bulk job may hold at most {MAX_BULK_EVENTS} events, this one has {}.",
                valid.len()
            ),
        ));
    }
    let account = auth.account().to_owned();
    let now = state.now();
    state
        .store
        .write(move |ctx| {
            for ev in &valid {
                store_events::ingest(ctx, &account, ev, now)?;
            }
            Ok(())
        })
        .await
        .map_err(store_error)?;
    state.wake_events();
    Ok(JsonApiResponse::accepted())
}

const FILTERS: &[(&str, &[Op])] = &[
    ("metric_id", &[Op::Equals]),
    ("profile_id", &[Op::Equals]),
    (
        "datetime",
        &[
            Op::GreaterThan,
            Op::LessThan,
            Op::GreaterOrEqual,
            Op::LessOrEqual,
        ],
    ),
    (
        "timestamp",
        &[
            Op::GreaterThan,
            Op::LessThan,
            Op::GreaterOrEqual,
            Op::LessOrEqual,
        ],
    ),
];

fn time_of(v: &crate::filter::Value) -> Option<i64> {
    v.as_datetime()
        .map(|t| t.timestamp_micros())
        .or_else(|| v.as_i64().map(|s| s * 1_000_000))
}

/// `GET /api/events`
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    q: ApiQuery,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("events:read")?;
    let filter = q.filter(FILTERS)?;
    let mut filters = Vec::new();
    for c in &filter.conditions {
        let f = match (c.field.as_str(), c.op) {
            ("metric_id", _) => EventFilter::MetricId(text(&c.value)?),
            ("profile_id", _) => EventFilter::ProfileId(text(&c.value)?),
            (_, op) => {
                let t = time_of(&c.value).ok_or_else(|| {
                    ApiError::invalid_parameter(
                        "filter",
                        format!("'{}' needs a datetime value.", c.field),
                    )
                })?;
                match op {
                    Op::GreaterThan => EventFilter::TimeAfter(t),
                    Op::LessThan => EventFilter::TimeBefore(t),
                    Op::GreaterOrEqual => EventFilter::TimeAtOrAfter(t),
                    _ => EventFilter::TimeAtOrBefore(t),
                }
            }
        };
        filters.push(f);
    }
    let sort = q.sort(&["datetime", "timestamp"])?;
    let descending = sort.is_some_and(|s| s.descending);
    let page = q.page(EVENTS_PAGE)?;
    let after = match &page.cursor {
        Some(c) => Some(EventCursor {
            time: c
                .key
                .parse()
                .map_err(|_| ApiError::invalid_parameter("page[cursor]", "Invalid page cursor."))?,
            id: c.id.clone(),
        }),
        None => None,
    };
    let (account, limit) = (auth.account().to_owned(), page.fetch_limit());
    let rows = state
        .store
        .read(move |c| store_events::list(c, &account, &filters, descending, after.as_ref(), limit))
        .await
        .map_err(store_error)?;
    let mut page = Page::from_rows(rows, &page, |e| (e.time.to_string(), e.id.clone()));
    page.prev = None;
    let page = page.map(|e| resources::event(&url, &e));
    Ok(JsonApiResponse::ok(page.into_document(&url, &[])))
}

pub fn text(v: &crate::filter::Value) -> Result<String, ApiError> {
    v.as_str().map(str::to_owned).ok_or_else(|| {
        ApiError::invalid_parameter("filter", format!("Expected a string, found {v}."))
    })
}

async fn load(state: &AppState, auth: &Auth, id: String) -> Result<store_events::Event, ApiError> {
    let account = auth.account().to_owned();
    let shown = id.clone();
    state
        .store
        .read(move |c| store_events::get(c, &account, &id))
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::resource_not_found("event", &shown))
}

/// `GET /api/events/{id}`
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    Path(id): Path<String>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("events:read")?;
    let e = load(&state, &auth, id).await?;
    Ok(JsonApiResponse::ok(single_document(
        &url,
        &resources::event(&url, &e),
        &[],
    )))
}

/// `GET /api/events/{id}/metric`
pub async fn metric(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    Path(id): Path<String>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("events:read")?;
    let e = load(&state, &auth, id).await?;
    let account = auth.account().to_owned();
    let m = state
        .store
        .read(move |c| metrics::get(c, &account, &e.metric_id))
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found("Metric not found."))?;
    Ok(JsonApiResponse::ok(single_document(
        &url,
        &resources::metric(&url, &m),
        &[],
    )))
}

/// `GET /api/events/{id}/profile`
pub async fn profile(
    State(state): State<AppState>,
    auth: Auth,
    url: RequestUrl,
    Path(id): Path<String>,
) -> Result<JsonApiResponse, ApiError> {
    auth.require("events:read")?;
    let e = load(&state, &auth, id).await?;
    let account = auth.account().to_owned();
    let p = state
        .store
        .read(move |c| profiles::get(c, &account, &e.profile_id))
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found("Profile not found."))?;
    Ok(JsonApiResponse::ok(single_document(
        &url,
        &resources::profile(&url, &p, false),
        &[],
    )))
}
