//! A deliberately small SQL layer shared by both backends, so every query is
//! written once. Statements use `$1`-style placeholders (PostgreSQL's form);
//! the SQLite backend rewrites them to `?1`. Column types are kept portable:
//! TEXT, BIGINT (times are microseconds since the epoch, booleans 0/1) and
//! DOUBLE PRECISION; JSON documents are TEXT.

pub mod postgres;
pub mod sqlite;
mod sqlite_vfs;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DbError {
    #[error("unique constraint violated: {0}")]
    Unique(String),
    #[error("database error: {0}")]
    Other(String),
    #[error("unexpected column type at index {index}: {detail}")]
    Decode { index: usize, detail: String },
    #[error("cannot open database: {0}")]
    Open(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A borrowed statement parameter.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::Int(v)
    }
}
impl From<bool> for Param<'_> {
    fn from(v: bool) -> Self {
        Param::Int(v as i64)
    }
}
impl From<f64> for Param<'_> {
    fn from(v: f64) -> Self {
        Param::Real(v)
    }
}
impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(v)
    }
}
impl<'a> From<&'a String> for Param<'a> {
    fn from(v: &'a String) -> Self {
        Param::Text(v.as_str())
    }
}
impl<'a, T> From<Option<T>> for Param<'a>
where
    T: Into<Param<'a>>,
{
    fn from(v: Option<T>) -> Self {
        v.map_or(Param::Null, Into::into)
    }
}
impl<'a> From<&'a Option<String>> for Param<'a> {
    fn from(v: &'a Option<String>) -> Self {
        v.as_deref().map_or(Param::Null, Param::Text)
    }
}

/// Builds a `&[Param]` from expressions convertible into `Param`.
#[macro_export]
macro_rules! params {
    () => { &[] as &[$crate::db::Param<'_>] };
    ($($v:expr),+ $(,)?) => { &[$($crate::db::Param::from($v)),+] as &[$crate::db::Param<'_>] };
}

/// An owned column value read back from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

#[derive(Debug, Clone)]
pub struct Row(pub Vec<Cell>);

impl Row {
    fn cell(&self, i: usize) -> Result<&Cell, DbError> {
        self.0.get(i).ok_or(DbError::Decode {
            index: i,
            detail: "no such column".into(),
        })
    }
    pub fn text(&self, i: usize) -> Result<String, DbError> {
        match self.cell(i)? {
            Cell::Text(s) => Ok(s.clone()),
            other => Err(decode(i, "text", other)),
        }
    }
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, DbError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Text(s) => Ok(Some(s.clone())),
            other => Err(decode(i, "text", other)),
        }
    }
    pub fn int(&self, i: usize) -> Result<i64, DbError> {
        match self.cell(i)? {
            Cell::Int(v) => Ok(*v),
            other => Err(decode(i, "integer", other)),
        }
    }
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, DbError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(*v)),
            other => Err(decode(i, "integer", other)),
        }
    }
    pub fn opt_real(&self, i: usize) -> Result<Option<f64>, DbError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Real(v) => Ok(Some(*v)),
            Cell::Int(v) => Ok(Some(*v as f64)),
            other => Err(decode(i, "real", other)),
        }
    }
    pub fn bool(&self, i: usize) -> Result<bool, DbError> {
        Ok(self.int(i)? != 0)
    }
    /// A TEXT column holding a JSON document.
    pub fn json(&self, i: usize) -> Result<serde_json::Value, DbError> {
        match self.cell(i)? {
            Cell::Null => Ok(serde_json::Value::Null),
            Cell::Text(s) => serde_json::from_str(s).map_err(|e| DbError::Decode {
                index: i,
                detail: format!("invalid JSON: {e}"),
            }),
            other => Err(decode(i, "json text", other)),
        }
    }
}

fn decode(index: usize, want: &str, got: &Cell) -> DbError {
    DbError::Decode {
        index,
        detail: format!("expected {want}, found {got:?}"),
    }
}

/// One connection to either backend. Implementations cache prepared statements.
pub trait Conn: Send {
    fn dialect(&self) -> Dialect;
    /// Runs a statement and returns the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, DbError>;
    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, DbError>;
    /// Runs one or more statements without parameters (DDL, BEGIN, COMMIT…).
    fn batch(&mut self, sql: &str) -> Result<(), DbError>;

    /// Savepoint control for the group-commit writer; backends may use
    /// prepared statements here since it runs twice per job.
    fn savepoint(&mut self, op: Savepoint) -> Result<(), DbError> {
        self.batch(op.sql())
    }

    /// Housekeeping the writer runs between batches now and then (SQLite:
    /// finish the WAL checkpoint so the log can restart instead of growing).
    fn maintain(&mut self) -> Result<(), DbError> {
        Ok(())
    }

    fn query_opt(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Savepoint {
    Begin,
    Release,
    RollBack,
}

impl Savepoint {
    pub fn sql(self) -> &'static str {
        match self {
            Savepoint::Begin => "SAVEPOINT job",
            Savepoint::Release => "RELEASE job",
            Savepoint::RollBack => "ROLLBACK TO job",
        }
    }
}

/// Runs `f` inside a transaction on `conn`, committing on success.
pub fn in_transaction<R>(
    conn: &mut dyn Conn,
    f: impl FnOnce(&mut dyn Conn) -> Result<R, crate::StoreError>,
) -> Result<R, crate::StoreError> {
    conn.batch("BEGIN")?;
    match f(conn) {
        Ok(r) => {
            conn.batch("COMMIT")?;
            Ok(r)
        }
        Err(e) => {
            let _ = conn.batch("ROLLBACK");
            Err(e)
        }
    }
}
