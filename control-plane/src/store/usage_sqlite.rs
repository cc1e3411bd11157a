//! The usage log's writer on SQLite: the backend's own sqlx driver (not
//! `Any`) on the log's own file, one connection, one transaction a group.
//!
//! Events go in multi-row INSERTs with anonymous `?` parameters, bound by
//! position: sqlx asks SQLite each parameter's name before binding it, and
//! SQLite finds a `$n` name by scanning every parameter of the statement,
//! so numbered parameters made a statement's binding cost grow with the
//! square of its size (BENCHMARKS.md); an anonymous one has no name to
//! scan for. The statement for a full chunk is built once and stays
//! prepared in the connection's cache.

use std::{sync::Arc, time::Duration};

use ipgate_shared::{ClientIpSource, Door, time};
use sqlx::{
    Sqlite, SqlitePool, Transaction,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use super::{
    error::StoreResult,
    records::{Stored, TenantId, UsageBatch, db_int, ip_key},
    usage_writer::{PruneChunk, Sink, sql},
};

/// Events per INSERT: 15 parameters each, far below SQLite's limit of
/// 32,766, and few statements a batch.
const ROWS_PER_INSERT: usize = 100;
const EVENT_COLUMNS: &str = "tenant_id, enforcer_id, request_id, time_ms, api, api_key_id, \
     method, path, status_code, client_ip, client_ip_key, reason, matched_label, door, \
     client_ip_source";
const PARAMS_PER_ROW: usize = 15;
/// WAL pages between checkpoints: a checkpoint copies each page once
/// however many commits wrote it since the last, so fewer, larger ones
/// write less (SQLite's default is 1,000 pages).
const WAL_AUTOCHECKPOINT_PAGES: u32 = 16_000;

/// Writes the usage log's file.
pub(super) struct SqliteSink {
    pool: SqlitePool,
    /// The INSERT for a full chunk.
    full_insert: Arc<str>,
}

impl SqliteSink {
    /// A writer on the usage log at `options`. Every commit is synced to
    /// disk (`synchronous = FULL`): a batch is acknowledged only once
    /// durable, and grouping makes that one sync for many batches.
    pub(super) async fn connect(options: SqliteConnectOptions) -> StoreResult<SqliteSink> {
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(false)
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options)
            .await?;
        Ok(SqliteSink {
            pool,
            full_insert: insert_sql(ROWS_PER_INSERT).into(),
        })
    }
}

impl Sink for SqliteSink {
    async fn store(&mut self, group: &[(TenantId, &UsageBatch)]) -> StoreResult<Vec<Stored>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut stored = Vec::with_capacity(group.len());
        for (tenant, batch) in group {
            stored.push(self.store_one(&mut tx, *tenant, batch).await?);
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn prune_chunk(&mut self, before_ms: i64, limit: u32) -> StoreResult<PruneChunk> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let limit = i64::from(limit);
        let events = sqlx::query(
            "DELETE FROM usage_events WHERE id IN \
             (SELECT id FROM usage_events WHERE time_ms < ? ORDER BY time_ms LIMIT ?)",
        )
        .bind(before_ms)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let gaps = prune(sql::PRUNE_GAPS, before_ms, limit, &mut tx).await?;
        let batches = prune(sql::PRUNE_BATCHES, before_ms, limit, &mut tx).await?;
        tx.commit().await?;
        let limit = limit.unsigned_abs();
        Ok(PruneChunk {
            events,
            more: events >= limit || gaps >= limit || batches >= limit,
        })
    }
}

impl SqliteSink {
    async fn store_one(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        tenant: TenantId,
        batch: &UsageBatch,
    ) -> StoreResult<Stored> {
        let inserted = sqlx::query(sql::INSERT_BATCH)
            .bind(batch.id.to_string())
            .bind(batch.enforcer.as_str())
            .bind(time::to_millis(batch.received_at))
            .bind(i64::try_from(batch.events.len()).unwrap_or(i64::MAX))
            .bind(db_int(batch.dropped_allowed))
            .bind(db_int(batch.dropped_blocked))
            .execute(&mut **tx)
            .await?
            .rows_affected();
        if inserted == 0 {
            return Ok(Stored::Duplicate);
        }

        let enforcer: Arc<str> = batch.enforcer.as_str().into();
        for chunk in batch.events.chunks(ROWS_PER_INSERT) {
            let sql = if chunk.len() == ROWS_PER_INSERT {
                Arc::clone(&self.full_insert)
            } else {
                insert_sql(chunk.len()).into()
            };
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for e in chunk {
                insert = insert
                    // The enforcer's tenant: its enforcers see only its
                    // APIs, and no tenant can write into another's log.
                    .bind(tenant.0)
                    .bind(Arc::clone(&enforcer))
                    .bind(e.request_id.as_str())
                    .bind(time::to_millis(e.time))
                    .bind(e.api.as_str())
                    .bind(e.key_id.map(|id| id.to_string()).unwrap_or_default())
                    .bind(e.method.as_str())
                    .bind(e.path.as_str())
                    .bind(i64::from(e.status))
                    .bind(e.client_ip.to_string())
                    .bind(ip_key(e.client_ip).to_vec())
                    .bind(e.reason.as_str())
                    .bind(e.matched_label.as_str())
                    .bind(Door::name(e.door))
                    .bind(ClientIpSource::name(e.client_ip_source));
            }
            insert.execute(&mut **tx).await?;
        }

        if let Some((first_ms, last_ms)) = batch.gap_ms() {
            sqlx::query(sql::INSERT_GAP)
                .bind(tenant.0)
                .bind(batch.id.to_string())
                .bind(batch.enforcer.as_str())
                .bind(first_ms)
                .bind(last_ms)
                .bind(db_int(batch.dropped_allowed))
                .bind(db_int(batch.dropped_blocked))
                .execute(&mut **tx)
                .await?;
        }
        Ok(Stored::New)
    }
}

/// Runs one of the shared prune statements: rows deleted.
async fn prune(
    statement: &'static str,
    before_ms: i64,
    limit: i64,
    tx: &mut Transaction<'static, Sqlite>,
) -> StoreResult<u64> {
    Ok(sqlx::query(statement)
        .bind(before_ms)
        .bind(limit)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

/// `INSERT INTO usage_events (…) VALUES (?, …), …` for `rows` events.
fn insert_sql(rows: usize) -> String {
    let row = format!("({})", vec!["?"; PARAMS_PER_ROW].join(", "));
    format!(
        "INSERT INTO usage_events ({EVENT_COLUMNS}) VALUES {}",
        vec![row; rows].join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_insert_has_a_parameter_for_every_column_of_every_row() {
        let sql = insert_sql(3);
        assert_eq!(EVENT_COLUMNS.split(',').count(), PARAMS_PER_ROW);
        assert_eq!(sql.matches('?').count(), 3 * PARAMS_PER_ROW);
        assert_eq!(sql.matches("), (").count(), 2);
    }
}
