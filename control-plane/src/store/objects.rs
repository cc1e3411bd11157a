//! APIs and API keys: reads, and the writes that commit a revision each.

use std::time::SystemTime;

use ipgate_shared::{
    ApiConfig, ApiSlug, Change, KeyConfig, KeyId, Revision, allowlist::Allowlist,
    proto::sync::v1 as wire, time,
};
use prost::Message;
use sqlx::{Row, any::AnyRow};

use super::{
    ApiRecord, Expected, KeyRecord, NewApi, NewKey, StoreError, StoreResult, TenantId,
    sql::{SqlStore, Tx, append_change, bump_revision, db_int, revision},
};

const API_COLUMNS: &str = "tenant_id, name, config, revision, created_at, updated_at";
const KEY_COLUMNS: &str =
    "tenant_id, name, description, revoked, config, revision, created_at, updated_at";

impl SqlStore {
    pub(super) async fn create_api_tx(
        &self,
        tenant: TenantId,
        api: NewApi,
        now: SystemTime,
    ) -> StoreResult<ApiRecord> {
        let mut tx = self.begin_write().await?;
        let result = create_api(&mut tx, tenant, api, now).await;
        let record = SqlStore::finish(tx, result).await?;
        self.announce(record.revision);
        Ok(record)
    }

    pub(super) async fn api_by_slug(
        &self,
        tenant: TenantId,
        slug: &ApiSlug,
    ) -> StoreResult<Option<ApiRecord>> {
        let mut conn = self.pool.acquire().await?;
        let sql = format!("SELECT {API_COLUMNS} FROM apis WHERE slug = $1 AND tenant_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(slug.as_str())
            .bind(tenant.0)
            .fetch_optional(&mut *conn)
            .await?;
        row.map(|row| api_record(&row)).transpose()
    }

    pub(super) async fn set_api_allowlist_tx(
        &self,
        tenant: TenantId,
        slug: &ApiSlug,
        allowlist: Allowlist,
        expected: Expected,
        now: SystemTime,
    ) -> StoreResult<ApiRecord> {
        let mut tx = self.begin_write().await?;
        let result = set_api_allowlist(&mut tx, tenant, slug, allowlist, expected, now).await;
        let record = SqlStore::finish(tx, result).await?;
        self.announce(record.revision);
        Ok(record)
    }

    pub(super) async fn create_key_tx(
        &self,
        tenant: TenantId,
        key: NewKey,
        now: SystemTime,
    ) -> StoreResult<KeyRecord> {
        let mut tx = self.begin_write().await?;
        let result = create_key(&mut tx, tenant, key, now).await;
        let record = SqlStore::finish(tx, result).await?;
        self.announce(record.revision);
        Ok(record)
    }

    pub(super) async fn key_by_id(
        &self,
        tenant: TenantId,
        id: &KeyId,
    ) -> StoreResult<Option<KeyRecord>> {
        let mut conn = self.pool.acquire().await?;
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1 AND tenant_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str())
            .bind(tenant.0)
            .fetch_optional(&mut *conn)
            .await?;
        row.map(|row| key_record(&row)).transpose()
    }

    pub(super) async fn set_key_allowlist_tx(
        &self,
        tenant: TenantId,
        id: &KeyId,
        allowlist: Allowlist,
        expected: Expected,
        now: SystemTime,
    ) -> StoreResult<KeyRecord> {
        let mut tx = self.begin_write().await?;
        let result = set_key_allowlist(&mut tx, tenant, id, allowlist, expected, now).await;
        let record = SqlStore::finish(tx, result).await?;
        self.announce(record.revision);
        Ok(record)
    }
}

// === writes, inside their transaction ===

async fn create_api(
    tx: &mut Tx,
    tenant: TenantId,
    api: NewApi,
    now: SystemTime,
) -> StoreResult<ApiRecord> {
    let rev = bump_revision(tx).await?;
    let NewApi { slug, name, routes } = api;
    // Slugs are global: enforcers know APIs by slug alone.
    let taken = sqlx::query("SELECT 1 FROM apis WHERE slug = $1")
        .bind(slug.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    if taken.is_some() {
        return Err(StoreError::ApiExists(slug.to_string()));
    }
    let config = ApiConfig {
        slug,
        enabled: true,
        allowlist: Allowlist::default(),
        routes,
    };
    let now_ms = time::to_millis(now);
    sqlx::query(
        "INSERT INTO apis (slug, tenant_id, name, config, revision, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(config.slug.as_str())
    .bind(tenant.0)
    .bind(name.as_str())
    .bind(wire::ApiConfig::from(&config).encode_to_vec())
    .bind(db_int(rev.get()))
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    let change = wire::Change::from(&Change::PutApi(config.clone()));
    append_change(tx, tenant, rev, vec![change], now_ms).await?;
    Ok(ApiRecord {
        tenant,
        name,
        config,
        revision: rev,
        created_at: time::from_millis(now_ms),
        updated_at: time::from_millis(now_ms),
    })
}

async fn set_api_allowlist(
    tx: &mut Tx,
    tenant: TenantId,
    slug: &ApiSlug,
    allowlist: Allowlist,
    expected: Expected,
    now: SystemTime,
) -> StoreResult<ApiRecord> {
    let rev = bump_revision(tx).await?;
    let sql = format!("SELECT {API_COLUMNS} FROM apis WHERE slug = $1 AND tenant_id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(slug.as_str())
        .bind(tenant.0)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::ApiNotFound(slug.to_string()))?;
    let mut record = api_record(&row)?;
    check_etag(expected, record.revision)?;
    record.config.allowlist = allowlist;
    let now_ms = time::to_millis(now);
    sqlx::query("UPDATE apis SET config = $1, revision = $2, updated_at = $3 WHERE slug = $4")
        .bind(wire::ApiConfig::from(&record.config).encode_to_vec())
        .bind(db_int(rev.get()))
        .bind(now_ms)
        .bind(slug.as_str())
        .execute(&mut **tx)
        .await?;
    let change = wire::Change::from(&Change::PutApi(record.config.clone()));
    append_change(tx, tenant, rev, vec![change], now_ms).await?;
    record.revision = rev;
    record.updated_at = time::from_millis(now_ms);
    Ok(record)
}

async fn create_key(
    tx: &mut Tx,
    tenant: TenantId,
    key: NewKey,
    now: SystemTime,
) -> StoreResult<KeyRecord> {
    let rev = bump_revision(tx).await?;
    let NewKey {
        name,
        description,
        config,
    } = key;
    let api = sqlx::query("SELECT 1 FROM apis WHERE slug = $1 AND tenant_id = $2")
        .bind(config.api.as_str())
        .bind(tenant.0)
        .fetch_optional(&mut **tx)
        .await?;
    if api.is_none() {
        return Err(StoreError::ApiNotFound(config.api.to_string()));
    }
    let now_ms = time::to_millis(now);
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, api_slug, name, description, revoked, config, \
         revision, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $8)",
    )
    .bind(config.id.as_str())
    .bind(tenant.0)
    .bind(config.api.as_str())
    .bind(name.as_str())
    .bind(description.as_str())
    .bind(wire::KeyConfig::from(&config).encode_to_vec())
    .bind(db_int(rev.get()))
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    let change = wire::Change::from(&Change::PutKey(config.clone()));
    append_change(tx, tenant, rev, vec![change], now_ms).await?;
    Ok(KeyRecord {
        tenant,
        name,
        description,
        revoked: false,
        config,
        revision: rev,
        created_at: time::from_millis(now_ms),
        updated_at: time::from_millis(now_ms),
    })
}

async fn set_key_allowlist(
    tx: &mut Tx,
    tenant: TenantId,
    id: &KeyId,
    allowlist: Allowlist,
    expected: Expected,
    now: SystemTime,
) -> StoreResult<KeyRecord> {
    let rev = bump_revision(tx).await?;
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1 AND tenant_id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.as_str())
        .bind(tenant.0)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::KeyNotFound(id.to_string()))?;
    let mut record = key_record(&row)?;
    check_etag(expected, record.revision)?;
    record.config.allowlist = allowlist;
    let now_ms = time::to_millis(now);
    sqlx::query("UPDATE api_keys SET config = $1, revision = $2, updated_at = $3 WHERE id = $4")
        .bind(wire::KeyConfig::from(&record.config).encode_to_vec())
        .bind(db_int(rev.get()))
        .bind(now_ms)
        .bind(id.as_str())
        .execute(&mut **tx)
        .await?;
    // A revoked key stays out of enforcers' indexes whatever its list says.
    let change = if record.revoked {
        Change::DeleteKey(*id)
    } else {
        Change::PutKey(record.config.clone())
    };
    append_change(tx, tenant, rev, vec![wire::Change::from(&change)], now_ms).await?;
    record.revision = rev;
    record.updated_at = time::from_millis(now_ms);
    Ok(record)
}

fn check_etag(expected: Expected, current: Revision) -> StoreResult<()> {
    match expected {
        Some(given) if given != current => Err(StoreError::StaleEtag { given, current }),
        _ => Ok(()),
    }
}

// === rows -> records ===

/// Decodes a stored `ipgate.sync.v1.ApiConfig`.
pub(super) fn api_config(bytes: &[u8]) -> StoreResult<ApiConfig> {
    let wire = wire::ApiConfig::decode(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    ApiConfig::try_from(wire).map_err(|e| StoreError::Corrupt(format!("API config {e}")))
}

/// Decodes a stored `ipgate.sync.v1.KeyConfig`.
pub(super) fn key_config(bytes: &[u8]) -> StoreResult<KeyConfig> {
    let wire = wire::KeyConfig::decode(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    KeyConfig::try_from(wire).map_err(|e| StoreError::Corrupt(format!("key config {e}")))
}

fn api_record(row: &AnyRow) -> StoreResult<ApiRecord> {
    let config: Vec<u8> = row.try_get("config")?;
    Ok(ApiRecord {
        tenant: TenantId(row.try_get("tenant_id")?),
        name: row.try_get("name")?,
        config: api_config(&config)?,
        revision: revision(row.try_get("revision")?)?,
        created_at: time::from_millis(row.try_get("created_at")?),
        updated_at: time::from_millis(row.try_get("updated_at")?),
    })
}

fn key_record(row: &AnyRow) -> StoreResult<KeyRecord> {
    let config: Vec<u8> = row.try_get("config")?;
    let revoked: i64 = row.try_get("revoked")?;
    Ok(KeyRecord {
        tenant: TenantId(row.try_get("tenant_id")?),
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        revoked: revoked != 0,
        config: key_config(&config)?,
        revision: revision(row.try_get("revision")?)?,
        created_at: time::from_millis(row.try_get("created_at")?),
        updated_at: time::from_millis(row.try_get("updated_at")?),
    })
}
