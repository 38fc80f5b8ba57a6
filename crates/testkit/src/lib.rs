//! Fresh databases for tests: a temp-dir SQLite file, or a new PostgreSQL
//! database on the local server that is dropped when the guard goes.
//! PostgreSQL tests never skip: without a server they fail, loudly.

use rand::Rng;

pub enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

/// The server the PostgreSQL tests use; override with OUTFLOW_TEST_PG_URL.
pub fn pg_admin_url() -> String {
    std::env::var("OUTFLOW_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".to_owned())
}

impl TestDb {
    pub fn sqlite() -> Self {
        TestDb::Sqlite(tempfile::tempdir().expect("creating a temp dir"))
    }

    pub fn postgres() -> Self {
        let admin_url = pg_admin_url();
        let name = format!("outflow_test_{:016x}", rand::rng().random::<u64>());
        admin(&admin_url, format!("CREATE DATABASE {name}")).unwrap_or_else(|e| {
            panic!("PostgreSQL tests need a server at {admin_url} (set OUTFLOW_TEST_PG_URL): {e}")
        });
        TestDb::Postgres { admin_url, name }
    }

    pub fn by_name(backend: &str) -> Self {
        match backend {
            "postgres" => Self::postgres(),
            _ => Self::sqlite(),
        }
    }

    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite(dir) => format!("sqlite://{}", dir.path().join("outflow.db").display()),
            TestDb::Postgres { admin_url, name } => {
                let base = admin_url
                    .rsplit_once('/')
                    .map_or(admin_url.as_str(), |(b, _)| b);
                format!("{base}/{name}")
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { admin_url, name } = self {
            let _ = admin(
                admin_url,
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

/// Runs one statement on its own thread: the sync client cannot run on a
/// thread that is driving an async runtime, which is where tests call this.
fn admin(url: &str, sql: String) -> Result<(), String> {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).map_err(|e| e.to_string())?;
        c.batch_execute(&sql).map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "admin thread panicked".to_string())?
}
