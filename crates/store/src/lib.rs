//! Outflow's durable store. Every write goes through the group-commit
//! [`writer`]; reads run on a small pool of connections. Both SQLite (one
//! file, WAL) and PostgreSQL are served by the same queries (see [`db`]).

pub mod accounts;
pub mod audit;
pub mod cache;
pub mod catalog;
pub mod dates;
pub mod db;
pub mod deliveries;
pub mod events;
pub mod flows;
pub mod generations;
pub mod lists;
pub mod metrics;
pub mod migrate;
pub mod profiles;
pub mod runs;
pub mod segments;
pub mod users;
pub mod writer;

mod ids;
pub use ids::{new_short_id, new_ulid};

use db::{Conn, DbError, Dialect};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use thiserror::Error;
pub use writer::WriteCtx;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0} not found")]
    NotFound(String),
    #[error("a profile already exists with one of these identifiers")]
    DuplicateProfile { id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Where the data lives, parsed from `sqlite://PATH` or `postgres://…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Location {
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::Invalid(
                    "sqlite:// needs a file path, e.g. sqlite://./outflow-data/outflow.db".into(),
                ));
            }
            Ok(Location::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Location::Postgres(url.to_owned()))
        } else {
            Err(StoreError::Invalid(format!(
                "unsupported database URL {url:?}: use sqlite://PATH or postgres://…"
            )))
        }
    }

    fn connect(&self) -> Result<Box<dyn Conn>, StoreError> {
        Ok(match self {
            Location::Sqlite(p) => Box::new(db::sqlite::SqliteConn::open(p)?),
            Location::Postgres(u) => Box::new(db::postgres::PgConn::open(u)?),
        })
    }
}

/// Upper bound on rows one page query returns (a page plus the look-ahead row).
pub const MAX_PAGE_ROWS: usize = 1001;

/// Idle read connections kept for reuse.
const MAX_IDLE_READERS: usize = 8;

struct Inner {
    location: Location,
    writer: writer::Writer,
    readers: Mutex<Vec<Box<dyn Conn>>>,
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Connects, runs pending migrations and starts the writer.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let location = Location::parse(url)?;
        let loc = location.clone();
        let (conn, cache) = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            let mut conn: Box<dyn Conn> = match &loc {
                Location::Sqlite(p) => {
                    let c = db::sqlite::SqliteConn::open(p)?;
                    c.tune_for_writer()?;
                    Box::new(c)
                }
                Location::Postgres(_) => loc.connect()?,
            };
            migrate::run(conn.as_mut())?;
            // Only a single-writer SQLite file can trust an in-memory identity
            // index: with PostgreSQL other processes change identifiers too.
            let mut cache = cache::WriteCache::new(conn.dialect() == Dialect::Sqlite);
            if conn.dialect() == Dialect::Sqlite {
                profiles::load_identity_index(conn.as_mut(), &mut cache)?;
                metrics::load_index(conn.as_mut(), &mut cache)?;
                cache.mark_complete();
            }
            Ok((conn, cache))
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))??;
        let hint = writer::MaintainHint::default();
        let (writer, _thread) = writer::Writer::start(conn, cache, hint.clone());
        let inner = Arc::new(Inner {
            location,
            writer,
            readers: Mutex::new(Vec::new()),
        });
        if let Location::Sqlite(path) = &inner.location {
            start_checkpointer(path.clone(), Arc::downgrade(&inner), hint)?;
        }
        Ok(Self { inner })
    }

    pub fn dialect(&self) -> Dialect {
        match self.inner.location {
            Location::Sqlite(_) => Dialect::Sqlite,
            Location::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs `f` in the next group commit; resolves once it is durable.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut WriteCtx<'_>) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        self.inner.writer.write(f).await
    }

    /// Installs or removes the writer's [`writer::BatchHook`].
    pub fn set_batch_hook(&self, hook: Option<Box<dyn writer::BatchHook>>) {
        self.inner.writer.set_hook(hook);
    }

    /// Runs `f` on a read connection on a blocking thread.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut dyn Conn) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().ok().and_then(|mut v| v.pop());
            let mut conn = match pooled {
                Some(c) => c,
                None => inner.location.connect()?,
            };
            let r = f(conn.as_mut());
            // A connection whose last use failed may be broken: drop it.
            if r.is_ok() {
                if let Ok(mut v) = inner.readers.lock() {
                    if v.len() < MAX_IDLE_READERS {
                        v.push(conn);
                    }
                }
            }
            r
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }
}

/// How often the SQLite checkpointer folds the WAL into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Checkpoints the WAL from its own connection and thread, so the writer's
/// commits never stall on copying pages; after each pass it lets the writer
/// copy the little that remains so the log can restart. Stops when the
/// store is dropped.
fn start_checkpointer(
    path: PathBuf,
    store: std::sync::Weak<Inner>,
    hint: writer::MaintainHint,
) -> Result<(), StoreError> {
    let conn = db::sqlite::SqliteConn::open(&path)?;
    std::thread::Builder::new()
        .name("outflow-checkpoint".into())
        .spawn(move || loop {
            std::thread::sleep(CHECKPOINT_EVERY);
            if store.upgrade().is_none() {
                break;
            }
            match conn.checkpoint() {
                Ok(()) => hint.set(),
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
            }
        })
        .map_err(|e| StoreError::Unavailable(format!("starting the checkpointer: {e}")))?;
    Ok(())
}

pub(crate) fn system_now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_database_urls() {
        assert_eq!(
            Location::parse("sqlite://./d/o.db").ok(),
            Some(Location::Sqlite("./d/o.db".into()))
        );
        assert!(matches!(
            Location::parse("postgres://root@127.0.0.1/x"),
            Ok(Location::Postgres(_))
        ));
        assert!(Location::parse("mysql://x").is_err());
        assert!(Location::parse("sqlite://").is_err());
    }
}
