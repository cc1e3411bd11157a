//! What the sync server reads and records: snapshots, the change log,
//! enforcers' acknowledgements, and change-log compaction.

use std::time::SystemTime;

use ipgate_shared::{Revision, proto::sync::v1 as wire, time};
use prost::Message;
use sqlx::Row;

use super::{
    db::{Store, Tx, revision},
    error::{StoreError, StoreResult},
    records::db_int,
    records::{Backlog, Committed, EnforcerRecord, NackRecord, Pruned, Snapshot, TenantId},
    rows::{api_config, key_config},
};

/// Enforcer rows per upsert statement (10 parameters each, well inside
/// SQLite's and PostgreSQL's limits).
const UPSERT_ROWS: usize = 200;

impl Store {
    /// The revision of the last committed change.
    pub async fn current_revision(&self) -> StoreResult<Revision> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query("SELECT revision FROM meta WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?;
        revision(row.try_get(0)?)
    }

    /// Every API and active key of `tenant`, at one revision.
    pub async fn snapshot(&self, tenant: TenantId) -> StoreResult<Snapshot> {
        let mut tx = self.begin_read().await?;
        let result = read_snapshot(&mut tx, tenant).await;
        Store::finish(tx, result).await
    }

    /// Up to `limit` revisions after `after`, in order, of every tenant.
    pub async fn changes_after(&self, after: Revision, limit: u32) -> StoreResult<Backlog> {
        let mut tx = self.begin_read().await?;
        let result = read_changes_after(&mut tx, after, limit).await;
        Store::finish(tx, result).await
    }

    /// Records what replicas know of their enforcers, in one transaction:
    /// acks are coalesced by the registry and written here in batches,
    /// never one write per ack. An acked revision never goes down.
    pub async fn record_enforcers(
        &self,
        records: &[(TenantId, EnforcerRecord)],
    ) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        // Many rows per statement: a flush at a thousand enforcers is a few
        // statements, not a thousand.
        for rows in records.chunks(UPSERT_ROWS) {
            let values = (0..rows.len())
                .map(|r| {
                    let p: Vec<String> = (1..=10).map(|c| format!("${}", r * 10 + c)).collect();
                    format!("({})", p.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ");
            // CASE rather than MAX/GREATEST: the one spelling both databases share.
            let sql = format!(
                "INSERT INTO enforcers (id, tenant_id, acked_revision, last_seen, replica, address, \
                 version, connected_since, events_buffered, events_dropped) VALUES {values} \
                 ON CONFLICT (tenant_id, id) DO UPDATE SET \
                   acked_revision = CASE WHEN excluded.acked_revision > enforcers.acked_revision \
                     THEN excluded.acked_revision ELSE enforcers.acked_revision END, \
                   last_seen = excluded.last_seen, replica = excluded.replica, \
                   address = excluded.address, version = excluded.version, \
                   connected_since = excluded.connected_since, \
                   events_buffered = excluded.events_buffered, \
                   events_dropped = excluded.events_dropped"
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (tenant, e) in rows {
                query = query
                    .bind(e.id.as_str())
                    .bind(tenant.0)
                    .bind(db_int(e.acked.get()))
                    .bind(time::to_millis(e.last_seen))
                    .bind(e.replica.as_str())
                    .bind(e.address.as_str())
                    .bind(e.version.as_str())
                    .bind(e.connected_since.map_or(0, time::to_millis))
                    .bind(db_int(e.events_buffered))
                    .bind(db_int(e.events_dropped));
            }
            query.execute(&mut *tx).await?;
        }
        for (tenant, e) in records {
            if let Some(nack) = &e.nack {
                sqlx::query(
                    "UPDATE enforcers SET nacked_revision = $1, nack_reason = $2, nacked_at = $3 \
                     WHERE tenant_id = $4 AND id = $5",
                )
                .bind(db_int(nack.revision.get()))
                .bind(nack.reason.as_str())
                .bind(time::to_millis(nack.at))
                .bind(tenant.0)
                .bind(e.id.as_str())
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every enforcer of `tenant` ever seen, by id.
    pub async fn enforcers(&self, tenant: TenantId) -> StoreResult<Vec<EnforcerRecord>> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(
            "SELECT id, acked_revision, last_seen, replica, address, version, connected_since, \
             events_buffered, events_dropped, nacked_revision, nack_reason, nacked_at \
             FROM enforcers WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(tenant.0)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|row| {
                let since: i64 = row.try_get("connected_since")?;
                let nacked = revision(row.try_get("nacked_revision")?)?;
                let count = |name: &str| -> StoreResult<u64> {
                    Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or_default())
                };
                Ok(EnforcerRecord {
                    id: row.try_get("id")?,
                    acked: revision(row.try_get("acked_revision")?)?,
                    last_seen: time::from_millis(row.try_get("last_seen")?),
                    replica: row.try_get("replica")?,
                    address: row.try_get("address")?,
                    version: row.try_get("version")?,
                    connected_since: (since > 0).then(|| time::from_millis(since)),
                    events_buffered: count("events_buffered")?,
                    events_dropped: count("events_dropped")?,
                    nack: (nacked > Revision::ZERO)
                        .then(|| -> StoreResult<NackRecord> {
                            Ok(NackRecord {
                                revision: nacked,
                                reason: row.try_get("nack_reason")?,
                                at: time::from_millis(row.try_get("nacked_at")?),
                            })
                        })
                        .transpose()?,
                })
            })
            .collect()
    }

    /// Deletes usage events older than `usage_before` and change-log rows
    /// more than `keep_revisions` behind the current revision. The usage
    /// log goes by whole days where it can, else in bounded chunks, so
    /// ingests never stall behind it (`usage_log.rs`).
    pub async fn prune(
        &self,
        usage_before: SystemTime,
        keep_revisions: u64,
    ) -> StoreResult<Pruned> {
        let current = self.current_revision().await?;
        let oldest_kept = current.get().saturating_sub(keep_revisions);
        let changes = {
            let mut conn = self.pool.acquire().await?;
            sqlx::query("DELETE FROM changes WHERE revision <= $1")
                .bind(db_int(oldest_kept))
                .execute(&mut *conn)
                .await?
                .rows_affected()
        };
        let usage = self.usage.prune(usage_before).await?;
        Ok(Pruned {
            usage_events: usage.events,
            usage_days: usage.days,
            changes,
        })
    }

    /// For tests: makes the usage log's day partitions around `at`, as a
    /// control plane running then would have (PostgreSQL; SQLite has none).
    #[doc(hidden)]
    pub async fn prepare_usage_days_around(&self, at: SystemTime) -> StoreResult<()> {
        self.usage.prepare_days_around(at).await
    }
}

async fn read_snapshot(tx: &mut Tx, tenant: TenantId) -> StoreResult<Snapshot> {
    let row = sqlx::query("SELECT revision FROM meta WHERE id = 1")
        .fetch_one(&mut **tx)
        .await?;
    let revision = revision(row.try_get(0)?)?;
    let apis = sqlx::query("SELECT config FROM apis WHERE tenant_id = $1 ORDER BY slug")
        .bind(tenant.0)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| api_config(&row.try_get::<Vec<u8>, _>(0)?))
        .collect::<StoreResult<_>>()?;
    let keys = sqlx::query(
        "SELECT config FROM api_keys WHERE revoked_at IS NULL AND tenant_id = $1 ORDER BY id",
    )
    .bind(tenant.0)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|row| key_config(&row.try_get::<Vec<u8>, _>(0)?))
    .collect::<StoreResult<_>>()?;
    Ok(Snapshot {
        revision,
        apis,
        keys,
    })
}

async fn read_changes_after(tx: &mut Tx, after: Revision, limit: u32) -> StoreResult<Backlog> {
    let row = sqlx::query("SELECT revision FROM meta WHERE id = 1")
        .fetch_one(&mut **tx)
        .await?;
    let current = revision(row.try_get(0)?)?;
    if current <= after {
        return Ok(Backlog::Changes(Vec::new()));
    }
    let rows = sqlx::query(
        "SELECT revision, tenant_id, delta, revokes_token FROM changes WHERE revision > $1 \
         ORDER BY revision LIMIT $2",
    )
    .bind(db_int(after.get()))
    .bind(i64::from(limit.max(1)))
    .fetch_all(&mut **tx)
    .await?;
    let mut changes = Vec::with_capacity(rows.len());
    let mut expected = after.next();
    for row in &rows {
        let rev = revision(row.try_get("revision")?)?;
        if rev != expected {
            // Revisions commit without holes, so a missing one was compacted.
            return Ok(Backlog::Compacted);
        }
        let bytes: Vec<u8> = row.try_get("delta")?;
        let delta = wire::Delta::decode(bytes.as_slice())
            .map_err(|e| StoreError::Corrupt(format!("change {rev}: {e}")))?;
        changes.push(Committed {
            revision: rev,
            tenant: TenantId(row.try_get("tenant_id")?),
            delta,
            revokes_token: row.try_get::<i64, _>("revokes_token")? != 0,
        });
        expected = expected.next();
    }
    if changes.is_empty() {
        return Ok(Backlog::Compacted);
    }
    Ok(Backlog::Changes(changes))
}
