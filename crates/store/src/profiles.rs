//! Profiles: identity resolution (writer side) and reads.

use crate::cache::Key;
use crate::db::{Conn, Param, Row};
use crate::writer::WriteCtx;
use crate::{new_ulid, params, StoreError, MAX_PAGE_ROWS};
use outflow_core::profile::{Patch, Profile, ProfileInput};
use serde_json::Value;

const COLUMNS: &str = "id, email, phone_number, external_id, anonymous_id, attributes, \
                       properties, subscriptions, created, updated";

pub fn from_row(r: &Row) -> Result<Profile, StoreError> {
    let obj = |v: Value| match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    Ok(Profile {
        id: r.text(0)?,
        email: r.opt_text(1)?,
        phone_number: r.opt_text(2)?,
        external_id: r.opt_text(3)?,
        anonymous_id: r.opt_text(4)?,
        attributes: obj(r.json(5)?),
        properties: obj(r.json(6)?),
        subscriptions: r.json(7)?,
        created: r.int(8)?,
        updated: r.int(9)?,
    })
}

pub fn get(conn: &mut dyn Conn, account: &str, id: &str) -> Result<Option<Profile>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM profiles WHERE account_id = $1 AND id = $2");
    conn.query_opt(&sql, params![account, id])?
        .map(|r| from_row(&r))
        .transpose()
}

/// Which identifier a lookup uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ident {
    Email,
    Phone,
    External,
}

impl Ident {
    fn column(self) -> &'static str {
        match self {
            Ident::Email => "email",
            Ident::Phone => "phone_number",
            Ident::External => "external_id",
        }
    }
    fn key(self, account: &str, value: &str) -> Key {
        let (a, v) = (account.to_owned(), value.to_owned());
        match self {
            Ident::Email => Key::Email(a, v),
            Ident::Phone => Key::Phone(a, v),
            Ident::External => Key::External(a, v),
        }
    }
}

fn lookup(
    ctx: &mut WriteCtx<'_>,
    account: &str,
    ident: Ident,
    value: &str,
) -> Result<Option<String>, StoreError> {
    let key = ident.key(account, value);
    if let Some(hit) = ctx.cache.get(&key) {
        return Ok(hit);
    }
    let sql = format!(
        "SELECT id FROM profiles WHERE account_id = $1 AND {} = $2",
        ident.column()
    );
    let id = ctx
        .conn
        .query_opt(&sql, params![account, value])?
        .map(|r| r.text(0))
        .transpose()?;
    if let Some(id) = &id {
        ctx.cache.put(key, id.clone());
    }
    Ok(id)
}

fn identifiers(input: &ProfileInput) -> Vec<(Ident, &str)> {
    let mut out = Vec::with_capacity(3);
    for (ident, patch) in [
        (Ident::Email, &input.email),
        (Ident::Phone, &input.phone_number),
        (Ident::External, &input.external_id),
    ] {
        if let Patch::Set(v) = patch {
            out.push((ident, v.as_str()));
        }
    }
    out
}

/// The one profile `input`'s identifiers name, if any. Identifiers naming
/// two different profiles are a conflict: never a silent merge.
pub fn find(
    ctx: &mut WriteCtx<'_>,
    account: &str,
    input: &ProfileInput,
) -> Result<Resolution, StoreError> {
    let mut found: Option<String> = None;
    let mut missing = false;
    if let Some(id) = &input.id {
        if !exists(ctx.conn, account, id)? {
            return Err(StoreError::NotFound(format!("profile {id}")));
        }
        found = Some(id.clone());
    }
    for (ident, value) in identifiers(input) {
        match lookup(ctx, account, ident, value)? {
            Some(id) => match &found {
                Some(f) if *f != id => {
                    return Err(StoreError::Conflict(format!(
                        "the identifiers name two different profiles: {} {value:?} belongs to profile {id}, \
                         while the other identifiers belong to profile {f}",
                        ident.column()
                    )))
                }
                _ => found = Some(id),
            },
            None => missing = true,
        }
    }
    if found.is_none() {
        if let Patch::Set(anon) = &input.anonymous_id {
            found = ctx
                .conn
                .query_opt(
                    "SELECT id FROM profiles WHERE account_id = $1 AND anonymous_id = $2 LIMIT 1",
                    params![account, anon],
                )?
                .map(|r| r.text(0))
                .transpose()?;
        }
    }
    Ok(Resolution { id: found, missing })
}

pub struct Resolution {
    pub id: Option<String>,
    /// Some identifier named no profile yet (so an existing one gains it).
    pub missing: bool,
}

fn exists(conn: &mut dyn Conn, account: &str, id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_opt(
            "SELECT 1 FROM profiles WHERE account_id = $1 AND id = $2",
            params![account, id],
        )?
        .is_some())
}

/// A hash of everything `input` would set, or `None` when applying it twice
/// is not the same as once (append/unappend).
fn fingerprint(input: &ProfileInput) -> Option<String> {
    use std::hash::{Hash, Hasher};
    if !input.append.is_empty() || !input.unappend.is_empty() {
        return None;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in [
        &input.email,
        &input.phone_number,
        &input.external_id,
        &input.anonymous_id,
    ] {
        format!("{p:?}").hash(&mut h);
    }
    hash_map(&input.attributes, &mut h);
    hash_map(&input.properties, &mut h);
    input.unset.hash(&mut h);
    // ULID-shaped so the writer cache can keep it as a number.
    Some(ulid::Ulid(u128::from(h.finish())).to_string())
}

fn hash_map(m: &serde_json::Map<String, Value>, h: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    m.len().hash(h);
    for (k, v) in m {
        k.hash(h);
        hash_value(v, h);
    }
}

fn hash_value(v: &Value, h: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Number(n) => (2u8, n.to_string()).hash(h),
        Value::String(s) => (3u8, s).hash(h),
        Value::Array(a) => {
            (4u8, a.len()).hash(h);
            a.iter().for_each(|x| hash_value(x, h));
        }
        Value::Object(m) => {
            5u8.hash(h);
            hash_map(m, h);
        }
    }
}

fn carries_changes(input: &ProfileInput) -> bool {
    !input.attributes.is_empty()
        || !input.properties.is_empty()
        || !input.unset.is_empty()
        || !input.append.is_empty()
        || !input.unappend.is_empty()
        || [
            &input.email,
            &input.phone_number,
            &input.external_id,
            &input.anonymous_id,
        ]
        .iter()
        .any(|p| matches!(p, Patch::Clear))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Created,
    Updated,
    Unchanged,
}

/// Finds or creates the profile `input` identifies and applies its changes.
/// The hot path (a known profile, nothing to change) touches no table.
pub fn upsert(
    ctx: &mut WriteCtx<'_>,
    account: &str,
    input: &ProfileInput,
    now: i64,
) -> Result<(String, Upserted), StoreError> {
    let res = find(ctx, account, input)?;
    match res.id {
        None => {
            let mut p = Profile::new(new_ulid(), now);
            p.apply(input);
            insert(ctx, account, &p)?;
            Ok((p.id, Upserted::Created))
        }
        Some(id) if !res.missing && !carries_changes(input) => Ok((id, Upserted::Unchanged)),
        Some(id) => {
            let print = fingerprint(input);
            let key = Key::Applied(id.clone());
            if !res.missing && print.is_some() && ctx.cache.get(&key).flatten() == print {
                return Ok((id, Upserted::Unchanged));
            }
            let changed = update_with(ctx, account, &id, input, now)?;
            if let Some(p) = print {
                ctx.cache.put(key, p);
            }
            let how = if changed {
                Upserted::Updated
            } else {
                Upserted::Unchanged
            };
            Ok((id, how))
        }
    }
}

/// `POST /api/profiles`: creates, or fails with the id of the profile that
/// already holds one of the identifiers.
pub fn create(
    ctx: &mut WriteCtx<'_>,
    account: &str,
    input: &ProfileInput,
    now: i64,
) -> Result<Profile, StoreError> {
    if !input.has_identifier() {
        return Err(StoreError::Invalid(
            "a profile needs at least one identifier: email, phone_number or external_id".into(),
        ));
    }
    for (ident, value) in identifiers(input) {
        if let Some(id) = lookup(ctx, account, ident, value)? {
            return Err(StoreError::DuplicateProfile { id });
        }
    }
    let mut p = Profile::new(new_ulid(), now);
    p.apply(input);
    insert(ctx, account, &p)?;
    Ok(p)
}

/// `PATCH /api/profiles/{id}`.
pub fn patch(
    ctx: &mut WriteCtx<'_>,
    account: &str,
    id: &str,
    input: &ProfileInput,
    now: i64,
) -> Result<Profile, StoreError> {
    if !exists(ctx.conn, account, id)? {
        return Err(StoreError::NotFound(format!("profile {id}")));
    }
    for (ident, value) in identifiers(input) {
        if let Some(other) = lookup(ctx, account, ident, value)? {
            if other != id {
                return Err(StoreError::DuplicateProfile { id: other });
            }
        }
    }
    update_with(ctx, account, id, input, now)?;
    get(ctx.conn, account, id)?.ok_or_else(|| StoreError::NotFound(format!("profile {id}")))
}

fn update_with(
    ctx: &mut WriteCtx<'_>,
    account: &str,
    id: &str,
    input: &ProfileInput,
    now: i64,
) -> Result<bool, StoreError> {
    let mut p =
        get(ctx.conn, account, id)?.ok_or_else(|| StoreError::NotFound(format!("profile {id}")))?;
    let before = (
        p.email.clone(),
        p.phone_number.clone(),
        p.external_id.clone(),
    );
    if !p.apply(input) {
        return Ok(false);
    }
    if p.email.is_none()
        && p.phone_number.is_none()
        && p.external_id.is_none()
        && p.anonymous_id.is_none()
    {
        return Err(StoreError::Invalid(
            "a profile must keep at least one identifier: email, phone_number or external_id"
                .into(),
        ));
    }
    p.updated = now;
    let attrs = Value::Object(p.attributes.clone()).to_string();
    let props = Value::Object(p.properties.clone()).to_string();
    ctx.conn
        .execute(
            "UPDATE profiles SET email = $3, phone_number = $4, external_id = $5, anonymous_id = $6, \
             attributes = $7, properties = $8, updated = $9 WHERE account_id = $1 AND id = $2",
            params![account, id, &p.email, &p.phone_number, &p.external_id, &p.anonymous_id, &attrs, &props, now],
        )
        .map_err(unique_to_conflict)?;
    // Whatever changed the profile, the remembered input no longer describes it.
    ctx.cache.remove(Key::Applied(id.to_owned()));
    for (ident, old, new) in [
        (Ident::Email, before.0, &p.email),
        (Ident::Phone, before.1, &p.phone_number),
        (Ident::External, before.2, &p.external_id),
    ] {
        if old.as_ref() != new.as_ref() {
            if let Some(old) = old {
                ctx.cache.remove(ident.key(account, &old));
            }
            if let Some(new) = new {
                ctx.cache.put(ident.key(account, new), id.to_owned());
            }
        }
    }
    Ok(true)
}

fn unique_to_conflict(e: crate::db::DbError) -> StoreError {
    match e {
        crate::db::DbError::Unique(m) => {
            StoreError::Conflict(format!("another profile already has this identifier ({m})"))
        }
        e => e.into(),
    }
}

fn insert(ctx: &mut WriteCtx<'_>, account: &str, p: &Profile) -> Result<(), StoreError> {
    let attrs = Value::Object(p.attributes.clone()).to_string();
    let props = Value::Object(p.properties.clone()).to_string();
    let subs = p.subscriptions.to_string();
    ctx.conn
        .execute(
            "INSERT INTO profiles (id, account_id, email, phone_number, external_id, anonymous_id, \
             attributes, properties, subscriptions, created, updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            params![&p.id, account, &p.email, &p.phone_number, &p.external_id, &p.anonymous_id, &attrs, &props, &subs, p.created, p.updated],
        )
        .map_err(unique_to_conflict)?;
    for (ident, v) in [
        (Ident::Email, &p.email),
        (Ident::Phone, &p.phone_number),
        (Ident::External, &p.external_id),
    ] {
        if let Some(v) = v {
            ctx.cache.put(ident.key(account, v), p.id.clone());
        }
    }
    Ok(())
}

/// Must follow any write to a profile's attributes or properties made
/// outside this module: the writer remembers the last input applied to each
/// profile to skip identical repeats, and that memory is now stale.
pub fn forget_applied(cache: &mut crate::cache::WriteCache, profile_id: &str) {
    cache.remove(Key::Applied(profile_id.to_owned()));
}

/// Replaces a profile's subscriptions document (consent per channel).
pub fn set_subscriptions(
    ctx: &mut WriteCtx<'_>,
    account: &str,
    id: &str,
    subs: &Value,
    now: i64,
) -> Result<(), StoreError> {
    ctx.conn.execute(
        "UPDATE profiles SET subscriptions = $3, updated = $4 WHERE account_id = $1 AND id = $2",
        params![account, id, &subs.to_string(), now],
    )?;
    Ok(())
}

/// Loads every identifier into the writer cache: with one writer (SQLite)
/// the cache is then complete, and a miss means "no such profile".
pub fn load_identity_index(
    conn: &mut dyn Conn,
    cache: &mut crate::cache::WriteCache,
) -> Result<usize, StoreError> {
    // In pages, so a large store is never held in memory as rows at once.
    const PAGE: usize = 20_000;
    let sql = format!(
        "SELECT account_id, id, email, phone_number, external_id FROM profiles \
         WHERE id > $1 ORDER BY id LIMIT {PAGE}"
    );
    let mut after = String::new();
    let mut n = 0;
    loop {
        let rows = conn.query(&sql, params![&after])?;
        for r in &rows {
            let (account, id) = (r.text(0)?, r.text(1)?);
            for (ident, col) in [(Ident::Email, 2), (Ident::Phone, 3), (Ident::External, 4)] {
                if let Some(v) = r.opt_text(col)? {
                    cache.preload(ident.key(&account, &v), id.clone());
                }
            }
            after = id;
        }
        n += rows.len();
        if rows.len() < PAGE {
            return Ok(n);
        }
    }
}

/// A condition of `GET /api/profiles?filter=`.
#[derive(Debug, Clone, PartialEq)]
pub enum ProfileFilter {
    IdIn(Vec<String>),
    EmailIn(Vec<String>),
    PhoneIn(Vec<String>),
    ExternalIn(Vec<String>),
    UpdatedAfter(i64),
    UpdatedBefore(i64),
    CreatedAfter(i64),
    CreatedBefore(i64),
}

/// One page of profiles ordered by id, after the cursor id if given.
pub fn list(
    conn: &mut dyn Conn,
    account: &str,
    filters: &[ProfileFilter],
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Profile>, StoreError> {
    let mut sql = format!("SELECT {COLUMNS} FROM profiles WHERE account_id = $1");
    let mut owned: Vec<String> = Vec::new();
    let mut ints: Vec<(usize, i64)> = Vec::new();
    // Parameters are numbered in the order they are pushed.
    let mut n = 1;
    let push_in =
        |sql: &mut String, col: &str, vals: &[String], owned: &mut Vec<String>, n: &mut usize| {
            let ph: Vec<String> = vals
                .iter()
                .map(|v| {
                    *n += 1;
                    owned.push(v.clone());
                    format!("${n}")
                })
                .collect();
            if ph.is_empty() {
                sql.push_str(" AND 1 = 0");
            } else {
                sql.push_str(&format!(" AND {col} IN ({})", ph.join(", ")));
            }
        };
    for f in filters {
        match f {
            ProfileFilter::IdIn(v) => push_in(&mut sql, "id", v, &mut owned, &mut n),
            ProfileFilter::EmailIn(v) => {
                let v: Vec<String> = v.iter().map(|e| e.trim().to_lowercase()).collect();
                push_in(&mut sql, "email", &v, &mut owned, &mut n)
            }
            ProfileFilter::PhoneIn(v) => push_in(&mut sql, "phone_number", v, &mut owned, &mut n),
            ProfileFilter::ExternalIn(v) => push_in(&mut sql, "external_id", v, &mut owned, &mut n),
            ProfileFilter::UpdatedAfter(t)
            | ProfileFilter::UpdatedBefore(t)
            | ProfileFilter::CreatedAfter(t)
            | ProfileFilter::CreatedBefore(t) => {
                let cond = match f {
                    ProfileFilter::UpdatedAfter(_) => "updated >",
                    ProfileFilter::UpdatedBefore(_) => "updated <",
                    ProfileFilter::CreatedAfter(_) => "created >",
                    _ => "created <",
                };
                n += 1;
                owned.push(String::new());
                ints.push((owned.len() - 1, *t));
                sql.push_str(&format!(" AND {cond} ${n}"));
            }
        }
    }
    if let Some(a) = after {
        n += 1;
        owned.push(a.to_owned());
        sql.push_str(&format!(" AND id > ${n}"));
    }
    sql.push_str(&format!(" ORDER BY id LIMIT {}", limit.min(MAX_PAGE_ROWS)));
    let mut ps: Vec<Param<'_>> = vec![Param::Text(account)];
    for (i, s) in owned.iter().enumerate() {
        match ints.iter().find(|(j, _)| *j == i) {
            Some((_, t)) => ps.push(Param::Int(*t)),
            None => ps.push(Param::Text(s)),
        }
    }
    conn.query(&sql, &ps)?.iter().map(from_row).collect()
}
