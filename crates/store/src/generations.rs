//! Change counters for tables the engine keeps compiled in memory.
//!
//! Triggers (migration 11) bump a table's counter on every change, whatever
//! path made it, so a cache asks "did it change?" with a one-row read
//! instead of an aggregate over the table, which grew with every flow.

use crate::db::Conn;
use crate::{params, StoreError};

/// Bumped by any insert, update or delete of a flow.
pub const FLOWS: &str = "flows";
/// Bumped when a segment is created, deleted or its definition, status or
/// version changes (not by its build's progress).
pub const SEGMENTS: &str = "segments";

/// The current value of a counter (0 if it was never set).
pub fn current(conn: &mut dyn Conn, name: &str) -> Result<i64, StoreError> {
    Ok(
        match conn.query_opt("SELECT n FROM generations WHERE name = $1", params![name])? {
            Some(r) => r.int(0)?,
            None => 0,
        },
    )
}
