use super::{Cell, Conn, DbError, Dialect, Param, Row, Savepoint};
use rusqlite::types::{ToSqlOutput, ValueRef};
use std::path::Path;

/// Keyed by SQL text, looked up on every statement: foldhash, not SipHash
/// (the texts are ours, not an attacker's).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub struct SqliteConn {
    conn: rusqlite::Connection,
    /// `$N` → `?N` rewrites, keyed by the original text.
    rewritten: HashMap<String, String>,
}

impl SqliteConn {
    /// Opens a connection in WAL mode with full sync: a commit is on disk
    /// before it returns, which is what "acknowledged means durable" needs.
    ///
    /// New databases get 4 KB pages: a commit writes each dirty page to the
    /// WAL with two system calls, and with 1 KB pages those calls were a
    /// third of the writer's time on the delivery path (4 KB: 18% more
    /// deliveries per second, writer time per delivery 42 → 33 µs).
    pub fn open(path: &Path) -> Result<Self, DbError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    DbError::Open(format!("cannot create directory {}: {e}", dir.display()))
                })?;
            }
        }
        let rc = super::sqlite_vfs::install();
        if rc != rusqlite::ffi::SQLITE_OK {
            return Err(DbError::Open(format!(
                "cannot install the SQLite VFS (SQLite result code {rc})"
            )));
        }
        let conn = rusqlite::Connection::open(path)
            .map_err(|e| DbError::Open(format!("{}: {e}", path.display())))?;
        conn.execute_batch(
            "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; \
             PRAGMA busy_timeout=10000; PRAGMA cache_size=-16384; PRAGMA temp_store=MEMORY;",
        )
        .map_err(|e| DbError::Open(format!("{}: {e}", path.display())))?;
        conn.set_prepared_statement_cache_capacity(256);
        Ok(Self {
            conn,
            rewritten: HashMap::default(),
        })
    }

    /// Stops SQLite from checkpointing inside commits: the writer's commits
    /// then pay only the WAL append and its fsync, and [`checkpoint`] runs
    /// from another connection instead.
    ///
    /// The writer also keeps a small page cache: SQLite walks the whole
    /// cache at the end of every transaction, which with a large cache costs
    /// more than the pages it saves on an append-mostly workload.
    ///
    /// Statement journals go to the temp "file", which SQLite keeps in
    /// memory in one chunk up to `SQLITE_STMTJRNL_SPILL` (set in
    /// `.cargo/config.toml`) and spill to a temp file beyond it, written
    /// through [`super::sqlite_vfs`]; with `temp_store=MEMORY` it used 1 KB
    /// chunks, and closing each statement walked the whole chain of the
    /// job's savepoint journal (7% of the writer's time on bulk ingest).
    ///
    /// The memory map is bounded at 64 MB: mapped pages count in the
    /// process's RSS and a larger map grew it with the file (1M runs:
    /// 425 MB peak at 256 MB, 232 MB at 64 MB, same throughput).
    pub fn tune_for_writer(&self) -> Result<(), DbError> {
        self.conn
            .execute_batch(
                "PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=-4096; PRAGMA temp_store=FILE; \
                 PRAGMA mmap_size=67108864; PRAGMA journal_size_limit=67108864;",
            )
            .map_err(map_err)
    }

    /// Copies committed WAL frames into the database file without blocking
    /// the writer, and restarts the WAL once readers allow it.
    pub fn checkpoint(&self) -> Result<(), DbError> {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(PASSIVE)")
            .map_err(map_err)
    }
}

/// The SQLite text of `sql`, rewritten once and remembered.
fn cached_rewrite<'a>(cache: &'a mut HashMap<String, String>, sql: &'a str) -> &'a str {
    if !sql.contains('$') {
        return sql;
    }
    if !cache.contains_key(sql) {
        cache.insert(sql.to_owned(), rewrite(sql).into_owned());
    }
    cache.get(sql).map_or(sql, String::as_str)
}

/// Rewrites `$N` placeholders into SQLite's `?N`.
fn rewrite(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains('$') {
        return sql.into();
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if c == '\'' {
            in_string = !in_string;
        }
        if c == '$' && !in_string && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out.into()
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Param::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Param::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(v)),
            Param::Real(v) => ToSqlOutput::Borrowed(ValueRef::Real(v)),
            Param::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

fn map_err(e: rusqlite::Error) -> DbError {
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        {
            return DbError::Unique(msg.clone().unwrap_or_default());
        }
    }
    DbError::Other(e.to_string())
}

impl Conn for SqliteConn {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, DbError> {
        let sql = cached_rewrite(&mut self.rewritten, sql);
        let mut stmt = self.conn.prepare_cached(sql).map_err(map_err)?;
        let n = stmt
            .execute(rusqlite::params_from_iter(params.iter()))
            .map_err(map_err)?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, DbError> {
        let sql = cached_rewrite(&mut self.rewritten, sql);
        let mut stmt = self.conn.prepare_cached(sql).map_err(map_err)?;
        let ncols = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(map_err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(map_err)? {
            let mut cells = Vec::with_capacity(ncols);
            for i in 0..ncols {
                cells.push(match row.get_ref(i).map_err(map_err)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    ValueRef::Real(v) => Cell::Real(v),
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        Cell::Text(String::from_utf8_lossy(t).into_owned())
                    }
                });
            }
            out.push(Row(cells));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.conn.execute_batch(sql).map_err(map_err)
    }

    /// The background checkpointer copies most frames while the writer keeps
    /// appending, so it can never catch up with the end of the log; run from
    /// the writer between transactions, right after a checkpointer pass,
    /// this one only copies the remainder, and the next commit starts the
    /// WAL over.
    fn maintain(&mut self) -> Result<(), DbError> {
        self.checkpoint()
    }

    fn savepoint(&mut self, op: Savepoint) -> Result<(), DbError> {
        let mut stmt = self.conn.prepare_cached(op.sql()).map_err(map_err)?;
        stmt.execute([]).map(|_| ()).map_err(map_err)
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn rewrites_placeholders_outside_strings() {
        assert_eq!(rewrite("a = $1 AND b = $12"), "a = ?1 AND b = ?12");
        assert_eq!(rewrite("x = '$1' AND y = $2"), "x = '$1' AND y = ?2");
        assert_eq!(rewrite("no params"), "no params");
    }
}
