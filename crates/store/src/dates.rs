//! The date trigger's bookkeeping (issue #5): the index of profile dates by
//! the keys a daily pass looks up, which (account, property) pairs it
//! covers, and the record of firings that makes the pass idempotent.

use crate::db::{Conn, Param};
use crate::runs::{in_list, padded};
use crate::{params, StoreError};
use outflow_core::segment::date::IndexKeys;

/// The profile-changes cursor of the date index.
pub const FEED_PROFILES: &str = "dates:profiles";

/// Sets (or, with `None`, removes) one profile's indexed date.
pub fn set(
    conn: &mut dyn Conn,
    account: &str,
    property: &str,
    profile_id: &str,
    keys: Option<&IndexKeys>,
) -> Result<(), StoreError> {
    match keys {
        None => {
            conn.execute(
                "DELETE FROM profile_dates WHERE account_id = $1 AND property = $2 AND profile_id = $3",
                params![account, property, profile_id],
            )?;
        }
        Some(k) => {
            conn.execute(
                "INSERT INTO profile_dates (account_id, property, profile_id, month_day, day_of_month, weekday, date) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (account_id, property, profile_id) DO UPDATE \
                 SET month_day = excluded.month_day, day_of_month = excluded.day_of_month, \
                 weekday = excluded.weekday, date = excluded.date",
                params![account, property, profile_id, k.month_day, k.day_of_month, k.weekday, &k.date],
            )?;
        }
    }
    Ok(())
}

/// Sets many profiles' dates under one property: multi-row statements, for
/// index builds.
pub fn set_many(
    conn: &mut dyn Conn,
    account: &str,
    property: &str,
    rows: &[(String, Option<IndexKeys>)],
) -> Result<(), StoreError> {
    let gone: Vec<String> = rows
        .iter()
        .filter(|(_, k)| k.is_none())
        .map(|(p, _)| p.clone())
        .collect();
    for chunk in gone.chunks(200) {
        let (list, n) = in_list(3, chunk.len());
        let sql = format!(
            "DELETE FROM profile_dates WHERE account_id = $1 AND property = $2 AND profile_id IN ({list})"
        );
        let mut p = params![account, property].to_vec();
        p.extend(padded(chunk, n));
        conn.execute(&sql, &p)?;
    }
    let set: Vec<(&String, &IndexKeys)> = rows
        .iter()
        .filter_map(|(p, k)| k.as_ref().map(|k| (p, k)))
        .collect();
    for chunk in set.chunks(100) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let b = 3 + 5 * i;
                format!(
                    "($1, $2, ${}, ${}, ${}, ${}, ${})",
                    b,
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO profile_dates (account_id, property, profile_id, month_day, day_of_month, weekday, date) \
             VALUES {} ON CONFLICT (account_id, property, profile_id) DO UPDATE \
             SET month_day = excluded.month_day, day_of_month = excluded.day_of_month, \
             weekday = excluded.weekday, date = excluded.date",
            values.join(", ")
        );
        let mut p = params![account, property].to_vec();
        for (pid, k) in chunk {
            p.extend([
                Param::Text(pid),
                Param::Int(k.month_day),
                Param::Int(k.day_of_month),
                Param::Int(k.weekday),
                Param::Text(&k.date),
            ]);
        }
        conn.execute(&sql, &p)?;
    }
    Ok(())
}

/// A page of the account's profiles by id, as Klaviyo's attributes object
/// with `properties` inside (what date lookups read), for index builds.
/// (`account_id || ''`: see `segments::profile_page`.)
pub fn profile_documents(
    conn: &mut dyn Conn,
    account: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
    use serde_json::Value;
    let sql = format!(
        "SELECT id, attributes, properties FROM profiles WHERE account_id || '' = $1 \
         AND id > $2 ORDER BY id LIMIT {limit}"
    );
    conn.query(&sql, params![account, after.unwrap_or("")])?
        .iter()
        .map(|r| {
            let mut doc = match r.json(1)? {
                Value::Object(m) => m,
                _ => serde_json::Map::new(),
            };
            doc.insert("properties".into(), r.json(2)?);
            Ok((r.text(0)?, Value::Object(doc)))
        })
        .collect()
}

/// The column a recurrence is looked up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyColumn {
    MonthDay,
    DayOfMonth,
    Weekday,
}

/// Profiles whose indexed date has one of `keys` in `column`.
pub fn by_keys(
    conn: &mut dyn Conn,
    account: &str,
    property: &str,
    column: KeyColumn,
    keys: &[i64],
) -> Result<Vec<String>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let col = match column {
        KeyColumn::MonthDay => "month_day",
        KeyColumn::DayOfMonth => "day_of_month",
        KeyColumn::Weekday => "weekday",
    };
    let (list, n) = in_list(3, keys.len());
    let sql = format!(
        "SELECT profile_id FROM profile_dates WHERE account_id = $1 AND property = $2 \
         AND {col} IN ({list})"
    );
    let mut p = params![account, property].to_vec();
    let last = keys.last().copied().unwrap_or(0);
    p.extend((0..n).map(|i| Param::Int(keys.get(i).copied().unwrap_or(last))));
    conn.query(&sql, &p)?
        .iter()
        .map(|r| r.text(0).map_err(Into::into))
        .collect()
}

/// Profiles whose indexed date is one of `dates` (`YYYY-MM-DD`).
pub fn by_dates(
    conn: &mut dyn Conn,
    account: &str,
    property: &str,
    dates: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for chunk in dates.chunks(200) {
        let (list, n) = in_list(3, chunk.len());
        let sql = format!(
            "SELECT profile_id FROM profile_dates WHERE account_id = $1 AND property = $2 AND date IN ({list})"
        );
        let mut p = params![account, property].to_vec();
        p.extend(padded(chunk, n));
        for r in conn.query(&sql, &p)? {
            out.push(r.text(0)?);
        }
    }
    Ok(out)
}

/// Where the index build of (account, property) stands: `None` if never
/// started, `Some((after, done))` otherwise.
pub fn build_state(
    conn: &mut dyn Conn,
    account: &str,
    property: &str,
) -> Result<Option<(Option<String>, bool)>, StoreError> {
    conn.query_opt(
        "SELECT after, done FROM profile_date_builds WHERE account_id = $1 AND property = $2",
        params![account, property],
    )?
    .map(|r| Ok((r.opt_text(0)?, r.bool(1)?)))
    .transpose()
}

/// Records build progress (`after = None` with `done`: finished).
pub fn build_progress(
    conn: &mut dyn Conn,
    account: &str,
    property: &str,
    after: Option<&str>,
    done: bool,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO profile_date_builds (account_id, property, after, done) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (account_id, property) DO UPDATE SET after = excluded.after, done = excluded.done",
        params![account, property, after, done],
    )?;
    Ok(())
}

/// Records one firing; false if it was already recorded.
pub fn record_firing(
    conn: &mut dyn Conn,
    flow_id: &str,
    profile_id: &str,
    occurrence: &str,
    now: i64,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "INSERT INTO date_trigger_fired (flow_id, profile_id, occurrence, at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (flow_id, profile_id, occurrence) DO NOTHING",
        params![flow_id, profile_id, occurrence, now],
    )? == 1)
}
