//! Forward-only migrations, one folder per database, embedded in the binary.

use crate::db::{Conn, Dialect};
use crate::StoreError;

struct Migration {
    version: i64,
    sql: &'static str,
}

const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../migrations/sqlite/0001_foundation.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../migrations/sqlite/0002_flows.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("../migrations/sqlite/0003_runs.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("../migrations/sqlite/0004_flow_api.sql"),
    },
    Migration {
        version: 5,
        sql: include_str!("../migrations/sqlite/0005_run_worker.sql"),
    },
    Migration {
        version: 6,
        sql: include_str!("../migrations/sqlite/0006_access.sql"),
    },
    Migration {
        version: 7,
        sql: include_str!("../migrations/sqlite/0007_delivery.sql"),
    },
    Migration {
        version: 8,
        sql: include_str!("../migrations/sqlite/0008_audiences.sql"),
    },
    Migration {
        version: 9,
        sql: include_str!("../migrations/sqlite/0009_went_live.sql"),
    },
    Migration {
        version: 10,
        sql: include_str!("../migrations/sqlite/0010_lean_rows.sql"),
    },
    Migration {
        version: 11,
        sql: include_str!("../migrations/sqlite/0011_generations.sql"),
    },
];

const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../migrations/postgres/0001_foundation.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../migrations/postgres/0002_flows.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("../migrations/postgres/0003_runs.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("../migrations/postgres/0004_flow_api.sql"),
    },
    Migration {
        version: 5,
        sql: include_str!("../migrations/postgres/0005_run_worker.sql"),
    },
    Migration {
        version: 6,
        sql: include_str!("../migrations/postgres/0006_access.sql"),
    },
    Migration {
        version: 7,
        sql: include_str!("../migrations/postgres/0007_delivery.sql"),
    },
    Migration {
        version: 8,
        sql: include_str!("../migrations/postgres/0008_audiences.sql"),
    },
    Migration {
        version: 9,
        sql: include_str!("../migrations/postgres/0009_went_live.sql"),
    },
    Migration {
        version: 10,
        sql: include_str!("../migrations/postgres/0010_lean_rows.sql"),
    },
    Migration {
        version: 11,
        sql: include_str!("../migrations/postgres/0011_generations.sql"),
    },
];

/// Key of the advisory lock that serialises migrations between processes.
const PG_MIGRATION_LOCK: i64 = 0x6f7574666c6f77;

/// Applies every migration newer than the store's version, each in its own
/// transaction. Returns how many were applied.
pub fn run(conn: &mut dyn Conn) -> Result<usize, StoreError> {
    let dialect = conn.dialect();
    if dialect == Dialect::Postgres {
        conn.batch(&format!("SELECT pg_advisory_lock({PG_MIGRATION_LOCK})"))?;
    }
    let result = apply(conn, dialect);
    if dialect == Dialect::Postgres {
        conn.batch(&format!("SELECT pg_advisory_unlock({PG_MIGRATION_LOCK})"))?;
    }
    result
}

fn apply(conn: &mut dyn Conn, dialect: Dialect) -> Result<usize, StoreError> {
    conn.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied BIGINT NOT NULL)",
    )?;
    // Versions are applied when unrecorded, not merely when newer than the
    // highest: migrations written on parallel branches land out of order.
    let recorded: std::collections::HashSet<i64> = conn
        .query("SELECT version FROM schema_migrations", &[])?
        .iter()
        .map(|r| r.int(0))
        .collect::<Result<_, _>>()?;
    let current = recorded.iter().copied().max().unwrap_or(0);
    let all = match dialect {
        Dialect::Sqlite => SQLITE,
        Dialect::Postgres => POSTGRES,
    };
    if let Some(last) = all.last() {
        if current > last.version {
            return Err(StoreError::Invalid(format!(
                "the database is at schema version {current}, newer than this binary knows ({}); \
                 run a newer outflow",
                last.version
            )));
        }
    }
    let mut applied = 0;
    for m in all.iter().filter(|m| !recorded.contains(&m.version)) {
        crate::db::in_transaction(conn, |c| {
            c.batch(m.sql)?;
            c.execute(
                "INSERT INTO schema_migrations (version, applied) VALUES ($1, $2)",
                crate::params![m.version, crate::system_now_micros()],
            )?;
            Ok(())
        })?;
        applied += 1;
    }
    Ok(applied)
}
