//! The usage log's writer on PostgreSQL: the backend's own sqlx driver
//! (not `Any`), events sent with `COPY … FROM STDIN (FORMAT BINARY)`, one
//! transaction a group. Several writers run side by side; PostgreSQL
//! locks rows, not the table, so they and configuration writes never wait
//! for one another.
//!
//! `usage_events` is partitioned by UTC day (`usage_events_YYYYMMDD`):
//! [`ensure_days`] makes the partitions of the days around now, and
//! retention drops the partitions of days wholly past it
//! ([`drop_days_before`]) before deleting what remains, in chunks.

use std::time::{Duration, SystemTime};

use ipgate_shared::{ClientIpSource, Door, time};
use sqlx::{PgPool, Postgres, Row, Transaction, postgres::PgPoolOptions};

use super::{
    copy_binary::CopyRows,
    error::StoreResult,
    records::{Stored, TenantId, UsageBatch, db_int, ip_key},
    usage_writer::{PruneChunk, Sink, sql},
};

const COPY_EVENTS: &str = "COPY usage_events (tenant_id, enforcer_id, request_id, time_ms, api, \
     api_key_id, method, path, status_code, client_ip, client_ip_key, reason, matched_label, \
     door, client_ip_source) FROM STDIN (FORMAT BINARY)";
const FIELDS: u16 = 15;
const DAY_MS: i64 = 86_400_000;
/// Days before today and after it that have a partition ready: an event
/// whose time falls outside them lands in the default partition.
const DAYS_BEHIND: i64 = 1;
const DAYS_AHEAD: i64 = 7;
/// Longest a partition's creation or drop waits for its lock: it needs the
/// parent table to itself, and an ingest waiting behind it would stall.
const DDL_LOCK_TIMEOUT: &str = "2s";

/// One writer's connection to the database.
pub(super) struct PgSink {
    pool: PgPool,
}

impl PgSink {
    /// `writers` writers on `url`, sharing one pool of that many
    /// connections, and the pool.
    pub(super) async fn connect(url: &str, writers: u32) -> StoreResult<(PgPool, Vec<PgSink>)> {
        let pool = PgPoolOptions::new()
            .max_connections(writers)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        let sinks = (0..writers)
            .map(|_| PgSink { pool: pool.clone() })
            .collect();
        Ok((pool, sinks))
    }
}

impl Sink for PgSink {
    async fn store(&mut self, group: &[(TenantId, &UsageBatch)]) -> StoreResult<Vec<Stored>> {
        let mut tx = self.pool.begin().await?;
        let mut stored = Vec::with_capacity(group.len());
        for (_, batch) in group {
            let inserted = sqlx::query(sql::INSERT_BATCH)
                .bind(batch.id.to_string())
                .bind(batch.enforcer.as_str())
                .bind(time::to_millis(batch.received_at))
                .bind(i64::try_from(batch.events.len()).unwrap_or(i64::MAX))
                .bind(db_int(batch.dropped_allowed))
                .bind(db_int(batch.dropped_blocked))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            stored.push(if inserted == 0 {
                Stored::Duplicate
            } else {
                Stored::New
            });
        }
        let new = || {
            group
                .iter()
                .zip(&stored)
                .filter(|(_, s)| **s == Stored::New)
                .map(|(g, _)| *g)
        };

        let events: usize = new().map(|(_, b)| b.events.len()).sum();
        if events > 0 {
            let data = copy_rows(new(), events);
            let mut copy = tx.copy_in_raw(COPY_EVENTS).await?;
            if let Err(e) = copy.send(data).await {
                let _ = copy.abort(e.to_string()).await;
                return Err(e.into());
            }
            copy.finish().await?;
        }

        for (tenant, batch) in new() {
            let Some((first_ms, last_ms)) = batch.gap_ms() else {
                continue;
            };
            sqlx::query(sql::INSERT_GAP)
                .bind(tenant.0)
                .bind(batch.id.to_string())
                .bind(batch.enforcer.as_str())
                .bind(first_ms)
                .bind(last_ms)
                .bind(db_int(batch.dropped_allowed))
                .bind(db_int(batch.dropped_blocked))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn prune_chunk(&mut self, before_ms: i64, limit: u32) -> StoreResult<PruneChunk> {
        let mut tx = self.pool.begin().await?;
        let limit = i64::from(limit);
        // A row's ctid is unique only within its partition.
        let events = sqlx::query(
            "DELETE FROM usage_events WHERE (tableoid, ctid) IN \
             (SELECT tableoid, ctid FROM usage_events WHERE time_ms < $1 LIMIT $2)",
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

/// Runs one of the shared prune statements: rows deleted.
async fn prune(
    statement: &'static str,
    before_ms: i64,
    limit: i64,
    tx: &mut Transaction<'static, Postgres>,
) -> StoreResult<u64> {
    Ok(sqlx::query(statement)
        .bind(before_ms)
        .bind(limit)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

/// The events of `batches`, `events` in all, as one COPY stream.
fn copy_rows<'a>(
    batches: impl Iterator<Item = (TenantId, &'a UsageBatch)>,
    events: usize,
) -> Vec<u8> {
    // About what an event takes: 15 fields of 4 bytes' length, two
    // integers, a 36-character id, an address, and short text.
    let mut rows = CopyRows::with_capacity(events * 220);
    for (tenant, batch) in batches {
        for e in &batch.events {
            let key = e.key_id.map(|id| id.to_string()).unwrap_or_default();
            rows.row(FIELDS)
                .int(tenant.0)
                .text(batch.enforcer.as_str())
                .text(&e.request_id)
                .int(time::to_millis(e.time))
                .text(&e.api)
                .text(&key)
                .text(&e.method)
                .text(&e.path)
                .int(i64::from(e.status))
                .text(&e.client_ip.to_string())
                .bytes(&ip_key(e.client_ip))
                .text(e.reason.as_str())
                .text(&e.matched_label)
                .text(Door::name(e.door))
                .text(ClientIpSource::name(e.client_ip_source));
        }
    }
    rows.finish()
}

/// The partition name of the UTC day that holds `ms`, and its start.
fn day_of(ms: i64) -> (String, i64) {
    let start = ms.div_euclid(DAY_MS) * DAY_MS;
    // RFC 3339 begins with the date: "2026-12-07T…".
    let date = humantime::format_rfc3339(time::from_millis(start)).to_string();
    let name = format!(
        "usage_events_{}",
        date.get(..10).unwrap_or("").replace('-', "")
    );
    (name, start)
}

/// The start of the day a partition name stands for; `None` for another name.
fn day_start(name: &str) -> Option<i64> {
    let digits = name.strip_prefix("usage_events_")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let date = format!(
        "{}-{}-{}T00:00:00Z",
        &digits[..4],
        &digits[4..6],
        &digits[6..]
    );
    humantime::parse_rfc3339(&date).ok().map(time::to_millis)
}

/// Makes the partitions of the days around `now` that do not exist yet.
/// A day that cannot get one (its default-partition rows, a lock held too
/// long) is logged and left to the default partition.
pub(super) async fn ensure_days(pool: &PgPool, now: SystemTime) -> StoreResult<()> {
    let today = time::to_millis(now);
    let existing = partitions(pool).await?;
    for offset in -DAYS_BEHIND..=DAYS_AHEAD {
        let (name, start) = day_of(today + offset * DAY_MS);
        if existing.contains(&name) {
            continue;
        }
        if let Err(error) = create_day(pool, &name, start).await {
            tracing::warn!(partition = %name, %error, "cannot create a usage-log partition; that day's events go to the default partition");
        }
    }
    Ok(())
}

async fn create_day(pool: &PgPool, name: &str, start: i64) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'"
    )))
    .execute(&mut *tx)
    .await?;
    // `name` is made by `day_of`: letters, digits and underscores only.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {name} PARTITION OF usage_events \
         FOR VALUES FROM ({start}) TO ({})",
        start + DAY_MS
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The day partitions of `usage_events`, by name.
async fn partitions(pool: &PgPool) -> StoreResult<Vec<String>> {
    let rows = sqlx::query(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'usage_events'::regclass",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).map_err(Into::into))
        .collect()
}

/// Drops the partitions of days that end at or before `before_ms`; how
/// many. One whose lock is not granted in time is left for the next run.
pub(super) async fn drop_days_before(pool: &PgPool, before_ms: i64) -> StoreResult<u64> {
    let mut dropped = 0;
    for name in partitions(pool).await? {
        let Some(start) = day_start(&name) else {
            continue;
        };
        if start + DAY_MS > before_ms {
            continue;
        }
        let mut tx = pool.begin().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'"
        )))
        .execute(&mut *tx)
        .await?;
        // `name` passed `day_start`: usage_events_ and eight digits.
        match sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {name}")))
            .execute(&mut *tx)
            .await
        {
            Ok(_) => {
                tx.commit().await?;
                dropped += 1;
            }
            Err(error) => {
                tracing::warn!(partition = %name, %error, "cannot drop an old usage-log partition yet; retrying at the next prune");
            }
        }
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_and_its_partition_name_go_both_ways() {
        // 2026-12-07T13:00:00Z
        let ms = 1_796_648_400_000;
        let (name, start) = day_of(ms);
        assert_eq!(name, "usage_events_20261207");
        assert_eq!(start, 1_796_601_600_000);
        assert_eq!(day_start(&name), Some(start));
        assert_eq!(day_of(start), (name, start), "a day starts in itself");
        assert_eq!(day_start("usage_events_default"), None);
        assert_eq!(day_start("usage_events_2026120"), None);
    }
}
