//! Catalog items. Every price change is kept with its time: price-drop
//! triggers compare against that history.

use crate::db::{Conn, Row};
use crate::writer::WriteCtx;
use crate::{params, StoreError, MAX_PAGE_ROWS};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct CatalogItem {
    /// `$custom:::$default:::EXTERNAL_ID`
    pub id: String,
    pub external_id: String,
    pub integration_type: String,
    pub catalog_type: String,
    /// Klaviyo's item attributes besides the id parts (title, price, url…).
    pub attributes: Map<String, Value>,
    pub price: Option<f64>,
    pub created: i64,
    pub updated: i64,
}

pub fn item_id(integration_type: &str, catalog_type: &str, external_id: &str) -> String {
    format!("{integration_type}:::{catalog_type}:::{external_id}")
}

const COLUMNS: &str =
    "id, external_id, integration_type, catalog_type, attributes, price, created, updated";

fn from_row(r: &Row) -> Result<CatalogItem, StoreError> {
    let attributes = match r.json(4)? {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    Ok(CatalogItem {
        id: r.text(0)?,
        external_id: r.text(1)?,
        integration_type: r.text(2)?,
        catalog_type: r.text(3)?,
        attributes,
        price: r.opt_real(5)?,
        created: r.int(6)?,
        updated: r.int(7)?,
    })
}

fn price_of(attrs: &Map<String, Value>) -> Option<f64> {
    attrs.get("price").and_then(Value::as_f64)
}

pub fn create(
    ctx: &mut WriteCtx<'_>,
    account: &str,
    external_id: &str,
    integration_type: &str,
    catalog_type: &str,
    attributes: Map<String, Value>,
    now: i64,
) -> Result<CatalogItem, StoreError> {
    let id = item_id(integration_type, catalog_type, external_id);
    if get(ctx.conn, account, &id)?.is_some() {
        return Err(StoreError::Conflict(format!(
            "a catalog item with id {id} already exists"
        )));
    }
    let price = price_of(&attributes);
    ctx.conn.execute(
        "INSERT INTO catalog_items (id, account_id, external_id, integration_type, catalog_type, attributes, price, created, updated) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        params![&id, account, external_id, integration_type, catalog_type, &Value::Object(attributes.clone()).to_string(), price, now],
    )?;
    if price.is_some() {
        record_price(ctx.conn, account, &id, None, price, now)?;
    }
    Ok(CatalogItem {
        id,
        external_id: external_id.to_owned(),
        integration_type: integration_type.to_owned(),
        catalog_type: catalog_type.to_owned(),
        attributes,
        price,
        created: now,
        updated: now,
    })
}

fn record_price(
    conn: &mut dyn Conn,
    account: &str,
    id: &str,
    old: Option<f64>,
    new: Option<f64>,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO catalog_price_history (account_id, item_id, old_price, new_price, changed) VALUES ($1, $2, $3, $4, $5)",
        params![account, id, old, new, now],
    )?;
    Ok(())
}

/// Merges `changes` into the item's attributes (`null` removes a key).
pub fn update(
    ctx: &mut WriteCtx<'_>,
    account: &str,
    id: &str,
    changes: &Map<String, Value>,
    now: i64,
) -> Result<CatalogItem, StoreError> {
    let mut item = get(ctx.conn, account, id)?
        .ok_or_else(|| StoreError::NotFound(format!("catalog item {id}")))?;
    for (k, v) in changes {
        if v.is_null() {
            item.attributes.remove(k);
        } else {
            item.attributes.insert(k.clone(), v.clone());
        }
    }
    let old = item.price;
    item.price = price_of(&item.attributes);
    item.updated = now;
    ctx.conn.execute(
        "UPDATE catalog_items SET attributes = $3, price = $4, updated = $5 WHERE account_id = $1 AND id = $2",
        params![account, id, &Value::Object(item.attributes.clone()).to_string(), item.price, now],
    )?;
    if old != item.price {
        record_price(ctx.conn, account, id, old, item.price, now)?;
    }
    Ok(item)
}

pub fn delete(ctx: &mut WriteCtx<'_>, account: &str, id: &str) -> Result<(), StoreError> {
    let n = ctx.conn.execute(
        "DELETE FROM catalog_items WHERE account_id = $1 AND id = $2",
        params![account, id],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("catalog item {id}")));
    }
    Ok(())
}

pub fn get(
    conn: &mut dyn Conn,
    account: &str,
    id: &str,
) -> Result<Option<CatalogItem>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM catalog_items WHERE account_id = $1 AND id = $2");
    conn.query_opt(&sql, params![account, id])?
        .map(|r| from_row(&r))
        .transpose()
}

pub fn list(
    conn: &mut dyn Conn,
    account: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<CatalogItem>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM catalog_items WHERE account_id = $1 AND (CAST($2 AS TEXT) IS NULL OR id > $2) ORDER BY id LIMIT {}",
        limit.min(MAX_PAGE_ROWS)
    );
    conn.query(&sql, params![account, after])?
        .iter()
        .map(from_row)
        .collect()
}

/// A recorded price change.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceChange {
    pub old_price: Option<f64>,
    pub new_price: Option<f64>,
    pub changed: i64,
}

pub fn price_history(
    conn: &mut dyn Conn,
    account: &str,
    id: &str,
) -> Result<Vec<PriceChange>, StoreError> {
    conn.query(
        "SELECT old_price, new_price, changed FROM catalog_price_history WHERE account_id = $1 AND item_id = $2 ORDER BY seq",
        params![account, id],
    )?
    .iter()
    .map(|r| {
        Ok(PriceChange {
            old_price: r.opt_real(0)?,
            new_price: r.opt_real(1)?,
            changed: r.int(2)?,
        })
    })
    .collect()
}
