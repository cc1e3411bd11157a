//! Where the usage log lives, apart from the configuration: on SQLite a
//! database file of its own (`ipgate.db` -> `ipgate.usage.db`), so its
//! write lock is its own; on PostgreSQL the same database, its events
//! partitioned by day. Either way ingests go through the log's writers
//! (`usage_writer.rs`) on the backend's own sqlx driver, and reads through
//! sqlx `Any` like the rest of the store.

use std::{str::FromStr, time::SystemTime};

use ipgate_shared::time;
use sqlx::{AnyPool, PgPool, sqlite::SqliteConnectOptions};

use super::{
    error::{OpenError, StoreError, StoreResult},
    records::{Stored, TenantId, UsageBatch},
    usage_postgres::{self, PgSink},
    usage_sqlite::SqliteSink,
    usage_writer::Writer,
};

/// Writers side by side on PostgreSQL: one encodes a group while another's
/// is in the database.
const POSTGRES_WRITERS: u32 = 2;
/// Most rows one retention chunk deletes: a few tens of milliseconds of
/// the log's write lock on SQLite.
const PRUNE_CHUNK: u32 = 5_000;

/// The usage log's pools and writers.
#[derive(Clone, Debug)]
pub(super) struct UsageLog {
    /// Queries, the export and lockout previews read here.
    pub(super) reads: AnyPool,
    writer: Writer,
    /// PostgreSQL's own pool, for the day partitions.
    postgres: Option<PgPool>,
}

/// What one retention pass removed from the usage log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct UsagePruned {
    /// Events deleted row by row.
    pub events: u64,
    /// Day partitions dropped whole (PostgreSQL).
    pub days: u64,
}

impl UsageLog {
    /// The log in the SQLite database at `url` (its own file), which
    /// `reads` is a pool on, already migrated.
    pub(super) async fn sqlite(reads: AnyPool, url: &str) -> Result<UsageLog, OpenError> {
        let options = SqliteConnectOptions::from_str(url).map_err(OpenError::Connect)?;
        let sink = SqliteSink::connect(options).await.map_err(connect_error)?;
        Ok(UsageLog {
            reads,
            writer: Writer::start(vec![sink]),
            postgres: None,
        })
    }

    /// The log in the PostgreSQL database at `url`, which `reads` (the
    /// store's pool) is on, already migrated; makes the days' partitions.
    pub(super) async fn postgres(reads: AnyPool, url: &str) -> Result<UsageLog, OpenError> {
        let (pool, sinks) = PgSink::connect(url, POSTGRES_WRITERS)
            .await
            .map_err(connect_error)?;
        usage_postgres::ensure_days(&pool, SystemTime::now())
            .await
            .map_err(connect_error)?;
        Ok(UsageLog {
            reads,
            writer: Writer::start(sinks),
            postgres: Some(pool),
        })
    }

    /// Stores `batch` under `tenant` at most once (by batch id); answers
    /// once it is durable.
    pub(super) async fn store(&self, tenant: TenantId, batch: UsageBatch) -> StoreResult<Stored> {
        self.writer.store(tenant, batch).await
    }

    /// Removes events, gaps and batch ids older than `before`: whole days
    /// first where the log has them, then the rest in bounded chunks, each
    /// its own short transaction, so ingests go on in between.
    pub(super) async fn prune(&self, before: SystemTime) -> StoreResult<UsagePruned> {
        let before_ms = time::to_millis(before);
        let mut pruned = UsagePruned::default();
        if let Some(pool) = &self.postgres {
            usage_postgres::ensure_days(pool, SystemTime::now()).await?;
            pruned.days = usage_postgres::drop_days_before(pool, before_ms).await?;
        }
        loop {
            let chunk = self.writer.prune_chunk(before_ms, PRUNE_CHUNK).await?;
            pruned.events += chunk.events;
            if !chunk.more {
                return Ok(pruned);
            }
        }
    }

    /// Closes the pools this log opened for itself.
    pub(super) async fn close(&self) {
        if self.postgres.is_none() {
            self.reads.close().await;
        }
    }

    /// For tests: makes the day partitions around `at` (PostgreSQL; a
    /// no-op on SQLite), as a control plane running then would have.
    pub(super) async fn prepare_days_around(&self, at: SystemTime) -> StoreResult<()> {
        match &self.postgres {
            Some(pool) => usage_postgres::ensure_days(pool, at).await,
            None => Ok(()),
        }
    }
}

fn connect_error(e: StoreError) -> OpenError {
    match e {
        StoreError::Database(e) => OpenError::Connect(e),
        other => OpenError::Connect(sqlx::Error::Protocol(other.to_string())),
    }
}
