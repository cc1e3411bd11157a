//! [`Store`] itself: a connection pool on sqlx's `Any` driver over SQLite or
//! PostgreSQL, the usage log beside it (`usage_log.rs`), transactions, and
//! the watch that tells the change feed of each commit. The operations live
//! beside it, one file per concern.
//!
//! Queries use `$1, $2…` placeholders, which both databases accept; every
//! integer is a BIGINT (`i64`), bytes are BLOB/BYTEA, times Unix milliseconds.

use std::{path::Path, str::FromStr, time::Duration};

use ipgate_shared::{Revision, redact};
use sqlx::{
    Any, AnyPool, Executor, Transaction,
    any::{AnyConnectOptions, AnyPoolOptions},
    migrate::MigrateError,
};
use tokio::sync::watch;

use super::{
    error::{OpenError, StoreError, StoreResult},
    preview_hold::PreviewGate,
    usage_log::UsageLog,
};

/// An open transaction on either database.
pub(super) type Tx = Transaction<'static, Any>;

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The control plane's state: every read and write the services make.
#[derive(Clone, Debug)]
pub struct Store {
    pub(super) pool: AnyPool,
    /// The usage log: its own file on SQLite, its own writers on both.
    pub(super) usage: UsageLog,
    backend: Backend,
    /// The last revision this process committed.
    commits: watch::Sender<Revision>,
    pub(super) previews: PreviewGate,
    /// The database's id (`meta.database_id`), made at its first start.
    database_id: String,
}

impl Store {
    /// Opens (creating a SQLite file and its directory if missing) and
    /// migrates the database at `url`.
    pub async fn open(url: &str) -> Result<Store, OpenError> {
        sqlx::any::install_default_drivers();
        // As given, for errors: without the `mode=rwc` added for SQLite.
        let shown = redact::url(url);
        let (backend, url) = prepare_url(url)?;
        let pool = any_pool(backend, &url).await?;
        let migrated = match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await,
        };
        migrated.map_err(|e| migrate_error(e, &shown))?;
        let usage = match backend {
            Backend::Sqlite => {
                let usage_url = usage_file(&url);
                let reads = any_pool(backend, &usage_url).await?;
                sqlx::migrate!("./migrations/sqlite-usage")
                    .run(&reads)
                    .await
                    .map_err(|e| migrate_error(e, &redact::url(&usage_url)))?;
                UsageLog::sqlite(reads, &usage_url).await?
            }
            Backend::Postgres => UsageLog::postgres(pool.clone(), &url).await?,
        };
        let database_id = database_id(&pool).await.map_err(OpenError::Connect)?;
        let store = Store {
            pool,
            usage,
            backend,
            commits: watch::Sender::new(Revision::ZERO),
            previews: PreviewGate::default(),
            database_id,
        };
        let current = store.current_revision().await.map_err(|e| match e {
            StoreError::Database(e) => OpenError::Connect(e),
            other => OpenError::Connect(sqlx::Error::Protocol(other.to_string())),
        })?;
        store.commits.send_replace(current);
        Ok(store)
    }

    /// Told the revision of every write this process commits, right after the commit.
    pub fn committed(&self) -> watch::Receiver<Revision> {
        self.commits.subscribe()
    }

    /// The id made with the database: a restored backup keeps it, another
    /// database has its own.
    pub fn database_id(&self) -> &str {
        &self.database_id
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection; pending queries finish first.
    pub async fn close(&self) {
        self.usage.close().await;
        self.pool.close().await;
    }

    /// Starts a write transaction. SQLite takes the write lock at once
    /// (`BEGIN IMMEDIATE`) so two writers never deadlock upgrading a read lock.
    pub(super) async fn begin_write(&self) -> StoreResult<Tx> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Starts a read transaction that sees one snapshot of the database.
    /// PostgreSQL needs REPEATABLE READ for that (READ COMMITTED gives each
    /// statement its own); a SQLite read transaction in WAL mode has it.
    pub(super) async fn begin_read(&self) -> StoreResult<Tx> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin().await?,
            Backend::Postgres => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?
            }
        })
    }

    /// Commits `tx` when `result` is a success, rolls it back otherwise.
    pub(super) async fn finish<T>(tx: Tx, result: StoreResult<T>) -> StoreResult<T> {
        match result {
            Ok(value) => {
                tx.commit().await?;
                Ok(value)
            }
            Err(e) => {
                // The error that made us roll back is the one worth reporting.
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(error = %rollback, "rollback failed");
                }
                Err(e)
            }
        }
    }

    /// Tells the change feed that `revision` committed.
    pub(super) fn announce(&self, revision: Revision) {
        self.commits.send_if_modified(|current| {
            let newer = revision > *current;
            if newer {
                *current = revision;
            }
            newer
        });
    }
}

/// A pool on the database at `url` (prepared by [`prepare_url`]); every
/// SQLite connection gets the pragmas the store relies on.
async fn any_pool(backend: Backend, url: &str) -> Result<AnyPool, OpenError> {
    // Each connection to a private `sqlite::memory:` is a database of its own.
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let max_connections = match backend {
        Backend::Sqlite if in_memory => 1,
        Backend::Sqlite => 8,
        Backend::Postgres => 16,
    };
    let options = AnyConnectOptions::from_str(url).map_err(OpenError::Connect)?;
    match backend {
        Backend::Sqlite => AnyPoolOptions::new()
            // Pragmas are per connection, so every new one gets them.
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                         PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                    )
                    .await?;
                    Ok(())
                })
            }),
        Backend::Postgres => AnyPoolOptions::new(),
    }
    .max_connections(max_connections)
    // An in-memory database lives as long as a connection to it does.
    .min_connections(u32::from(in_memory))
    .acquire_timeout(Duration::from_secs(30))
    .connect_with(options)
    .await
    .map_err(OpenError::Connect)
}

/// Reads the database's id, making one first if it has none. Two replicas
/// starting together on a new database agree: only the first UPDATE finds
/// the id empty.
async fn database_id(pool: &AnyPool) -> Result<String, sqlx::Error> {
    let fresh = uuid::Uuid::new_v4().to_string();
    sqlx::query("UPDATE meta SET database_id = $1 WHERE id = 1 AND database_id = ''")
        .bind(fresh)
        .execute(pool)
        .await?;
    let row = sqlx::query("SELECT database_id FROM meta WHERE id = 1")
        .fetch_one(pool)
        .await?;
    sqlx::Row::try_get(&row, 0)
}

fn migrate_error(e: MigrateError, database: &str) -> OpenError {
    match e {
        MigrateError::VersionMismatch(_) | MigrateError::VersionMissing(_) => {
            OpenError::OtherBuild {
                database: database.to_owned(),
                detail: e.to_string(),
            }
        }
        other => OpenError::Migrate(other),
    }
}

/// The SQLite URL of the usage log beside the database at `url` (prepared
/// by [`prepare_url`]): `ipgate.db` -> `ipgate.usage.db`, any other name
/// gets `.usage` added; an in-memory database gets an in-memory log, one
/// of its own that all of the log's connections share.
fn usage_file(url: &str) -> String {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.contains("mode=memory") {
        return format!(
            "sqlite://file:ipgate-usage-{}?mode=memory",
            uuid::Uuid::new_v4().simple()
        );
    }
    let usage = match path.strip_suffix(".db") {
        Some(stem) => format!("{stem}.usage.db"),
        None => format!("{path}.usage"),
    };
    if query.is_empty() {
        format!("sqlite://{usage}")
    } else {
        format!("sqlite://{usage}?{query}")
    }
}

/// A revision read from the database.
pub(super) fn revision(n: i64) -> StoreResult<Revision> {
    u64::try_from(n)
        .map(Revision::new)
        .map_err(|_| StoreError::Corrupt(format!("negative revision {n}")))
}

/// Splits off the backend and, for SQLite, makes sure the file can be
/// created: its directory exists and the URL asks for `mode=rwc`.
fn prepare_url(url: &str) -> Result<(Backend, String), OpenError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_owned()));
    }
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Err(OpenError::UnsupportedUrl(redact::url(url)));
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path.is_empty() || path == ":memory:" || query.contains("mode=memory");
    if !in_memory
        && let Some(dir) = Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|source| OpenError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let url = if in_memory || query.contains("mode=") {
        url.to_owned()
    } else if query.is_empty() {
        format!("sqlite://{path}?mode=rwc")
    } else {
        format!("sqlite://{path}?{query}&mode=rwc")
    };
    Ok((Backend::Sqlite, url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_ask_to_create_the_file() {
        let (backend, url) = prepare_url("sqlite::memory:").unwrap();
        assert_eq!(
            (backend, url.as_str()),
            (Backend::Sqlite, "sqlite::memory:")
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nested/ipgate.db");
        let (_, url) = prepare_url(&format!("sqlite://{}", file.display())).unwrap();
        assert_eq!(url, format!("sqlite://{}?mode=rwc", file.display()));
        assert!(file.parent().unwrap().is_dir());
        let (backend, _) = prepare_url("postgres://u@h/db").unwrap();
        assert_eq!(backend, Backend::Postgres);
        assert!(matches!(
            prepare_url("mysql://x"),
            Err(OpenError::UnsupportedUrl(_))
        ));
        // The URL in the error is shown without its password.
        let error = prepare_url("mysql://root:hunter2@db/x").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
