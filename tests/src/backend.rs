//! The databases a control plane under test runs on: a fresh SQLite file, or
//! a fresh database in the PostgreSQL that `tests/run.sh` provides.

use std::sync::Arc;

use sqlx::{Connection, Executor, postgres::PgConnection};
use tempfile::TempDir;

/// Where a test's control plane keeps its state.
pub enum Backend {
    /// The folder is shared with every control plane started on it, so it
    /// lasts as long as they do, even when the test lets go of its
    /// `Backend` first.
    Sqlite {
        dir: Arc<TempDir>,
        url: String,
    },
    Postgres {
        url: String,
    },
}

impl Backend {
    /// A new SQLite file in a temporary directory.
    pub fn sqlite() -> Backend {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("ipgate.db").display());
        Backend::Sqlite {
            dir: Arc::new(dir),
            url,
        }
    }

    /// A new, empty database in the test PostgreSQL named by
    /// `IPGATE_TEST_POSTGRES_URL`. Without it the test is skipped (`None`)
    /// and says so ([`crate::skip::skip`]), except under `CI=true`, where it
    /// fails.
    pub async fn postgres() -> Option<Backend> {
        let Ok(admin_url) = std::env::var("IPGATE_TEST_POSTGRES_URL") else {
            crate::skip::skip(
                "no PostgreSQL: IPGATE_TEST_POSTGRES_URL is not set (tests/run.sh sets it once \
                 tests/postgres.sh has started one; by hand: `eval \"$(tests/postgres.sh start)\"`)",
            );
            return None;
        };
        let name = format!("ipgate_e2e_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {admin_url}: {e}"));
        // The name is ours (a UUID), not user input.
        let create = sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"));
        conn.execute(sqlx::raw_sql(create))
            .await
            .expect("create test database");
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        Some(Backend::Postgres {
            url: format!("{base}/{name}"),
        })
    }

    /// The `--database` URL.
    pub fn url(&self) -> &str {
        match self {
            Backend::Sqlite { url, .. } | Backend::Postgres { url } => url,
        }
    }

    /// What keeps the database's folder while a control plane uses it.
    pub(crate) fn keep(&self) -> Option<Arc<TempDir>> {
        match self {
            Backend::Sqlite { dir, .. } => Some(dir.clone()),
            Backend::Postgres { .. } => None,
        }
    }

    /// Where the usage log is: on SQLite its own file beside the
    /// database (`ipgate.usage.db`), on PostgreSQL the same database.
    pub fn usage_log_url(&self) -> String {
        match self {
            Backend::Sqlite { url, .. } => url.replace("/ipgate.db", "/ipgate.usage.db"),
            Backend::Postgres { url } => url.clone(),
        }
    }
}
