//! Loading what conditions read — profiles, list memberships and the events
//! behind metric aggregates — for a whole batch of runs in a few queries,
//! never one query per run.

use chrono::{DateTime, Utc};
use outflow_core::clock::from_micros;
use outflow_core::flow::condition::Measurement;
use outflow_core::flow::{MetricAnswers, MetricQuery, ProfileFacts};
use outflow_store::db::Conn;
use outflow_store::runs::{in_list, padded};
use outflow_store::StoreError;
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};

/// Rows per `IN (…)` list: well under both backends' parameter limits.
const CHUNK: usize = 500;

/// One event that may count towards a metric aggregate.
#[derive(Debug, Clone)]
struct EventFact {
    time: i64,
    value: Option<f64>,
    properties: Value,
}

/// The facts of a batch of profiles, loaded together.
#[derive(Debug, Default)]
pub struct Loaded {
    profiles: HashMap<String, ProfileFacts>,
    events: HashMap<(String, String), Vec<EventFact>>,
}

impl Loaded {
    /// Loads `profile_ids`, their list and segment memberships and, for
    /// every metric the `queries` name, their events of that metric.
    pub fn load(
        conn: &mut dyn Conn,
        profile_ids: &[String],
        queries: &[MetricQuery],
    ) -> Result<Loaded, StoreError> {
        Self::load_with(conn, profile_ids, queries, true, true)
    }

    /// [`Loaded::load`], skipping list memberships when `lists` is false
    /// and segment memberships when `segments` is false: each is an index
    /// lookup per profile that a flow whose conditions name no group, or a
    /// segment that names no list, never reads.
    pub fn load_with(
        conn: &mut dyn Conn,
        profile_ids: &[String],
        queries: &[MetricQuery],
        lists: bool,
        segments: bool,
    ) -> Result<Loaded, StoreError> {
        let mut out = Loaded::default();
        let mut ids: Vec<String> = profile_ids.to_vec();
        ids.sort();
        ids.dedup();
        let mut metrics: Vec<String> = queries.iter().map(|q| q.metric_id.clone()).collect();
        metrics.sort();
        metrics.dedup();
        for chunk in ids.chunks(CHUNK) {
            let (list, n) = in_list(1, chunk.len());
            let params = padded(chunk, n);
            let sql = format!(
                "SELECT id, email, phone_number, external_id, anonymous_id, attributes, properties \
                 FROM profiles WHERE id IN ({list})"
            );
            for r in conn.query(&sql, &params)? {
                let id = r.text(0)?;
                let mut person = match r.json(5)? {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                for (i, key) in [
                    (1, "email"),
                    (2, "phone_number"),
                    (3, "external_id"),
                    (4, "anonymous_id"),
                ] {
                    if let Some(v) = r.opt_text(i)? {
                        person.insert(key.to_owned(), Value::String(v));
                    }
                }
                let properties = match r.json(6)? {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                person.insert("properties".into(), Value::Object(properties));
                person.insert("id".into(), Value::String(id.clone()));
                let timezone = person
                    .get("location")
                    .and_then(|l| l.get("timezone"))
                    .and_then(Value::as_str)
                    .and_then(|tz| tz.parse::<chrono_tz::Tz>().ok());
                out.profiles.insert(
                    id,
                    ProfileFacts {
                        profile: Value::Object(person),
                        timezone,
                        ..ProfileFacts::default()
                    },
                );
            }
            // Segments (issue #5) share the id space of group conditions.
            let groups = [
                (lists, "list_id", "list_members"),
                (segments, "segment_id", "segment_members"),
            ];
            for (_, column, table) in groups.into_iter().filter(|g| g.0) {
                let sql = format!(
                    "SELECT profile_id, {column} FROM {table} WHERE profile_id IN ({list})"
                );
                for r in conn.query(&sql, &params)? {
                    if let Some(p) = out.profiles.get_mut(&r.text(0)?) {
                        p.memberships.insert(r.text(1)?);
                    }
                }
            }
            if metrics.is_empty() {
                continue;
            }
            let (mlist, mn) = in_list(1 + n, metrics.len());
            let sql = format!(
                "SELECT profile_id, metric_id, time, value, properties FROM events \
                 WHERE profile_id IN ({list}) AND metric_id IN ({mlist})"
            );
            let mut p = params.clone();
            p.extend(padded(&metrics, mn));
            for r in conn.query(&sql, &p)? {
                out.events
                    .entry((r.text(0)?, r.text(1)?))
                    .or_default()
                    .push(EventFact {
                        time: r.int(2)?,
                        value: r.opt_real(3)?,
                        properties: r.json(4)?,
                    });
            }
        }
        Ok(out)
    }

    /// Adds one metric's events for these profiles: callers that know which
    /// profiles need which metric read fewer rows than [`Loaded::load`].
    pub fn add_events(
        &mut self,
        conn: &mut dyn Conn,
        metric_id: &str,
        profile_ids: &[String],
    ) -> Result<(), StoreError> {
        for chunk in profile_ids.chunks(CHUNK) {
            let (list, n) = in_list(2, chunk.len());
            let sql = format!(
                "SELECT profile_id, time, value, properties FROM events \
                 WHERE metric_id = $1 AND profile_id IN ({list})"
            );
            let mut p = vec![outflow_store::db::Param::Text(metric_id)];
            p.extend(padded(chunk, n));
            for r in conn.query(&sql, &p)? {
                self.events
                    .entry((r.text(0)?, metric_id.to_owned()))
                    .or_default()
                    .push(EventFact {
                        time: r.int(1)?,
                        value: r.opt_real(2)?,
                        properties: r.json(3)?,
                    });
            }
        }
        Ok(())
    }

    /// The facts one evaluation needs, with the metric aggregates answered
    /// for this run (`flow_start` matters for "since starting this flow").
    /// `None` when the profile no longer exists. Borrowed when the flow
    /// asks no metric questions (the common case: no copy of the profile
    /// per run).
    pub fn facts_for(
        &self,
        profile_id: &str,
        queries: &[MetricQuery],
        now: DateTime<Utc>,
        flow_start: Option<DateTime<Utc>>,
    ) -> Option<std::borrow::Cow<'_, ProfileFacts>> {
        let stored = self.profiles.get(profile_id)?;
        if queries.is_empty() {
            return Some(std::borrow::Cow::Borrowed(stored));
        }
        let mut facts = stored.clone();
        let mut answers = MetricAnswers::default();
        for q in queries {
            answers.insert(q.clone(), self.aggregate(profile_id, q, now, flow_start));
        }
        facts.metrics = answers;
        Some(std::borrow::Cow::Owned(facts))
    }

    fn aggregate(
        &self,
        profile_id: &str,
        q: &MetricQuery,
        now: DateTime<Utc>,
        flow_start: Option<DateTime<Utc>>,
    ) -> f64 {
        let Some(events) = self
            .events
            .get(&(profile_id.to_owned(), q.metric_id.clone()))
        else {
            return 0.0;
        };
        let (start, end) = q.window(now, flow_start);
        let mut total = 0.0;
        for e in events {
            let t = from_micros(e.time);
            if start.is_some_and(|s| t < s) || end.is_some_and(|x| t >= x) {
                continue;
            }
            if !q.matches_event(&e.properties, now) {
                continue;
            }
            total += match q.measurement {
                Measurement::Count => 1.0,
                Measurement::Sum => e
                    .value
                    .or_else(|| e.properties.get("$value").and_then(Value::as_f64))
                    .unwrap_or(0.0),
            };
        }
        total
    }

    /// The list ids a profile belongs to (for callers that only need that).
    pub fn memberships(&self, profile_id: &str) -> Option<&BTreeSet<String>> {
        self.profiles.get(profile_id).map(|p| &p.memberships)
    }
}
