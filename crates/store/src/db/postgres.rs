use super::{Cell, Conn, DbError, Dialect, Param, Row};
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{Client, NoTls, Statement};
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};

/// Owns the sync client. Dropping one blocks on its own small runtime, which
/// panics on a thread that drives tokio, so such drops move to a thread.
struct ClientGuard(Option<Client>);

impl Deref for ClientGuard {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.0.as_ref().expect("client present until drop")
    }
}

impl DerefMut for ClientGuard {
    fn deref_mut(&mut self) -> &mut Client {
        self.0.as_mut().expect("client present until drop")
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new().spawn(move || drop(client));
            } else {
                drop(client);
            }
        }
    }
}

/// A synchronous PostgreSQL connection. Store work always runs on blocking
/// threads (the writer thread or `spawn_blocking`), so the sync client fits.
pub struct PgConn {
    client: ClientGuard,
    statements: HashMap<String, Statement>,
}

impl PgConn {
    pub fn open(url: &str) -> Result<Self, DbError> {
        let client = Client::connect(url, NoTls).map_err(|e| DbError::Open(e.to_string()))?;
        Ok(Self {
            client: ClientGuard(Some(client)),
            statements: HashMap::new(),
        })
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, DbError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).map_err(map_err)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

fn map_err(e: postgres::Error) -> DbError {
    if let Some(db) = e.as_db_error() {
        if db.code() == &postgres::error::SqlState::UNIQUE_VIOLATION {
            return DbError::Unique(db.message().to_owned());
        }
        return DbError::Other(format!("{}: {}", db.code().code(), db.message()));
    }
    DbError::Other(e.to_string())
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(v) => match *ty {
                Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
                Type::BOOL => (v != 0).to_sql(ty, out),
                Type::FLOAT8 => (v as f64).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Param::Real(v) => v.to_sql(ty, out),
            Param::Text(s) => s.to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn to_row(row: &postgres::Row) -> Result<Row, DbError> {
    let mut cells = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let err = |e: postgres::Error| DbError::Decode {
            index: i,
            detail: e.to_string(),
        };
        let cell = match *col.type_() {
            Type::INT8 => row
                .try_get::<_, Option<i64>>(i)
                .map_err(err)?
                .map(Cell::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)
                .map_err(err)?
                .map(|v| Cell::Int(v.into())),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)
                .map_err(err)?
                .map(|v| Cell::Int(v.into())),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)
                .map_err(err)?
                .map(|v| Cell::Int(v as i64)),
            Type::FLOAT8 => row
                .try_get::<_, Option<f64>>(i)
                .map_err(err)?
                .map(Cell::Real),
            Type::FLOAT4 => row
                .try_get::<_, Option<f32>>(i)
                .map_err(err)?
                .map(|v| Cell::Real(v.into())),
            _ => row
                .try_get::<_, Option<String>>(i)
                .map_err(err)?
                .map(Cell::Text),
        };
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row(cells))
}

fn as_dyn<'a>(params: &'a [Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Conn for PgConn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, DbError> {
        let stmt = self.statement(sql)?;
        self.client.execute(&stmt, &as_dyn(params)).map_err(map_err)
    }

    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, DbError> {
        let stmt = self.statement(sql)?;
        let rows = self.client.query(&stmt, &as_dyn(params)).map_err(map_err)?;
        rows.iter().map(to_row).collect()
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.client.batch_execute(sql).map_err(map_err)
    }
}
