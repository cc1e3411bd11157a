//! Bringing rows written by an earlier release up to date where SQL alone
//! cannot: derived columns decoded from `config` (at open, before anything
//! reads them) and usage events' sortable address keys (in the background,
//! as there may be millions).

use std::net::IpAddr;

use sqlx::Row;

use super::{
    StoreResult, ip_key,
    rows::{api_config, api_derived, key_config, key_derived},
    sql::SqlStore,
};

/// Rows converted per transaction.
const BATCH: i64 = 1000;

/// Fills the derived columns of APIs and keys that have none yet.
pub(super) async fn derived_columns(store: &SqlStore) -> StoreResult<()> {
    let mut fixed = 0usize;
    loop {
        let mut tx = store.begin_write().await?;
        let rows = sqlx::query("SELECT slug, config FROM apis WHERE derived = 0 LIMIT $1")
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
        for row in &rows {
            let slug: String = row.try_get("slug")?;
            let (enabled, next) = api_derived(&api_config(&row.try_get::<Vec<u8>, _>("config")?)?);
            sqlx::query(
                "UPDATE apis SET enabled = $1, next_entry_expiry = $2, derived = 1 WHERE slug = $3",
            )
            .bind(enabled)
            .bind(next)
            .bind(slug)
            .execute(&mut *tx)
            .await?;
        }
        let keys = sqlx::query("SELECT id, config FROM api_keys WHERE derived = 0 LIMIT $1")
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
        for row in &keys {
            let id: String = row.try_get("id")?;
            let (expires, entries, next) =
                key_derived(&key_config(&row.try_get::<Vec<u8>, _>("config")?)?);
            sqlx::query(
                "UPDATE api_keys SET expires_at = $1, allowlist_entries = $2, \
                 next_entry_expiry = $3, derived = 1 WHERE id = $4",
            )
            .bind(expires)
            .bind(entries)
            .bind(next)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        fixed += rows.len() + keys.len();
        if rows.is_empty() && keys.is_empty() {
            break;
        }
    }
    if fixed > 0 {
        tracing::info!(rows = fixed, "filled derived columns of earlier rows");
    }
    Ok(())
}

impl SqlStore {
    pub(super) async fn backfill_ip_keys(&self, limit: u32) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "SELECT id, client_ip FROM usage_events WHERE client_ip_key IS NULL LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let ip: String = row.try_get("client_ip")?;
            // Stored addresses were validated on the way in; an unreadable
            // one gets the zero key so it is not visited again.
            let key = ip.parse::<IpAddr>().map(ip_key).unwrap_or([0; 16]);
            sqlx::query("UPDATE usage_events SET client_ip_key = $1 WHERE id = $2")
                .bind(key.to_vec())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }
}
