//! APIs: reads, and the writes that create, change and delete them.

use std::{fmt::Write as _, time::SystemTime};

use ipgate_shared::{ApiConfig, ApiSlug, Change, KeyId, Revision, allowlist::Allowlist, time};
use sqlx::{AnyConnection, Row};

use super::{
    args::Args,
    audit,
    db::Store,
    error::{StoreError, StoreResult},
    keys::{load_keys_of_api, save_key},
    lists::ListOwner,
    records::db_int,
    records::{
        ApiChanges, ApiFilter, ApiRecord, Deleted, EntryOrigins, Expected, KeyStatus, NewApi,
        TenantId, WriteCtx,
    },
    rows::{API_SELECT, api_derived, api_record, origins_to_json},
    write::{Kind, Object, Write},
};
use crate::etag;

impl Store {
    /// Reads one API of `tenant`.
    pub async fn api(
        &self,
        tenant: TenantId,
        slug: &ApiSlug,
        now: SystemTime,
    ) -> StoreResult<Option<ApiRecord>> {
        let mut conn = self.pool.acquire().await?;
        load_api(&mut conn, tenant, slug, time::to_millis(now)).await
    }

    /// APIs of `tenant` by slug, after `after`.
    pub async fn apis(
        &self,
        tenant: TenantId,
        filter: &ApiFilter,
        after: Option<&ApiSlug>,
        limit: u32,
        now: SystemTime,
    ) -> StoreResult<Vec<ApiRecord>> {
        let mut args = Args::default();
        let now_p = args.int(time::to_millis(now));
        debug_assert_eq!(now_p, "$1");
        let mut sql = format!("{API_SELECT} WHERE a.tenant_id = {}", args.int(tenant.0));
        let ApiFilter { enabled } = filter;
        if let Some(enabled) = enabled {
            let _ = write!(sql, " AND a.enabled = {}", args.int(i64::from(*enabled)));
        }
        if let Some(after) = after {
            let _ = write!(sql, " AND a.slug > {}", args.text(after.as_str()));
        }
        let _ = write!(sql, " ORDER BY a.slug LIMIT {}", args.int(i64::from(limit)));
        let mut conn = self.pool.acquire().await?;
        let rows = args
            .bind(sqlx::query(sqlx::AssertSqlSafe(sql)))
            .fetch_all(&mut *conn)
            .await?;
        rows.iter().map(api_record).collect()
    }

    /// Creates an API (enabled, empty allowlist).
    pub async fn create_api(&self, ctx: &WriteCtx, api: NewApi) -> StoreResult<ApiRecord> {
        self.write(ctx, Kind::Config, async |w| {
            let NewApi { slug, name, routes } = api;
            // Slugs are global: enforcers know APIs by slug alone.
            let taken = sqlx::query("SELECT 1 FROM apis WHERE slug = $1")
                .bind(slug.as_str())
                .fetch_optional(w.conn())
                .await?;
            if taken.is_some() {
                return Err(StoreError::ApiExists(slug.to_string()));
            }
            let record = ApiRecord {
                tenant: w.tenant(),
                name,
                config: ApiConfig {
                    slug,
                    enabled: true,
                    allowlist: Allowlist::default(),
                    routes,
                },
                origins: EntryOrigins::new(),
                key_count: 0,
                revision: w.revision,
                created_at: time::from_millis(w.now_ms),
                updated_at: time::from_millis(w.now_ms),
            };
            insert_api(w, &record).await?;
            w.change(Change::PutApi(record.config.clone()));
            w.audit(
                "api.create",
                Object::Api(record.config.slug.as_str()),
                None,
                Some(audit::api(&record)),
            );
            Ok(record)
        })
        .await
    }

    /// Changes an API's name, status or routes.
    pub async fn update_api(
        &self,
        ctx: &WriteCtx,
        slug: &ApiSlug,
        changes: ApiChanges,
        expected: Expected,
    ) -> StoreResult<ApiRecord> {
        self.write(ctx, Kind::Config, async |w| {
            let before = edit_api(w, slug, expected).await?;
            let mut record = before.clone();
            let ApiChanges {
                name,
                enabled,
                routes,
            } = changes;
            if let Some(name) = name {
                record.name = name;
            }
            if let Some(enabled) = enabled {
                record.config.enabled = enabled;
            }
            if let Some(routes) = routes {
                record.config.routes = routes;
            }
            save_api(w, &mut record).await?;
            w.change(Change::PutApi(record.config.clone()));
            w.audit(
                "api.update",
                Object::Api(slug.as_str()),
                Some(audit::api(&before)),
                Some(audit::api(&record)),
            );
            Ok(record)
        })
        .await
    }

    /// Deletes an API and its keys; active keys only with `force`.
    pub async fn delete_api(
        &self,
        ctx: &WriteCtx,
        slug: &ApiSlug,
        expected: Expected,
        force: bool,
    ) -> StoreResult<Deleted> {
        self.write(ctx, Kind::Config, async |w| {
            let api = edit_api(w, slug, expected).await?;
            let tenant = w.tenant();
            let keys = load_keys_of_api(w.conn(), tenant, slug).await?;
            let active = keys
                .iter()
                .filter(|k| k.status(w.ctx.now) == KeyStatus::Active)
                .count();
            if active > 0 && !force {
                return Err(StoreError::ApiHasActiveKeys {
                    slug: slug.to_string(),
                    keys: active,
                });
            }
            // Unrevoked keys (active or expired) are revoked with the API;
            // every key stays readable, revoked, for the record.
            let mut revoked_keys: Vec<KeyId> = Vec::new();
            for key in keys.into_iter().filter(|k| k.revoked_at.is_none()) {
                let mut after = key.clone();
                after.revoked_at = Some(w.ctx.now);
                save_key(w, &mut after).await?;
                w.audit_key("api_key.revoke", &key, &after);
                revoked_keys.push(key.config.id);
            }
            sqlx::query("DELETE FROM apis WHERE slug = $1")
                .bind(slug.as_str())
                .execute(w.conn())
                .await?;
            w.change(Change::DeleteApi(slug.clone()));
            w.audit(
                "api.delete",
                Object::Api(slug.as_str()),
                Some(audit::api(&api)),
                None,
            );
            Ok(Deleted {
                api,
                revoked_keys,
                revision: w.revision,
            })
        })
        .await
    }
}

/// An API's own allowlist, checked before any key.
impl ListOwner for ApiRecord {
    type Id = ApiSlug;
    const USAGE_COLUMN: &'static str = "api";
    const AUDIT_NAME: &'static str = "api";

    async fn load(
        conn: &mut AnyConnection,
        tenant: TenantId,
        slug: &ApiSlug,
        now_ms: i64,
    ) -> StoreResult<Option<ApiRecord>> {
        load_api(conn, tenant, slug, now_ms).await
    }

    fn not_found(slug: &ApiSlug) -> StoreError {
        StoreError::ApiNotFound(slug.to_string())
    }

    fn revision(&self) -> Revision {
        self.revision
    }

    fn allowlist(&self) -> &Allowlist {
        &self.config.allowlist
    }

    fn list_mut(&mut self) -> (&mut Allowlist, &mut EntryOrigins) {
        (&mut self.config.allowlist, &mut self.origins)
    }

    async fn save(
        w: &mut Write,
        before: &ApiRecord,
        after: &mut ApiRecord,
        action: &str,
    ) -> StoreResult<()> {
        save_api(w, after).await?;
        w.change(Change::PutApi(after.config.clone()));
        w.audit(
            action,
            Object::Api(after.config.slug.as_str()),
            Some(audit::api(before)),
            Some(audit::api(after)),
        );
        Ok(())
    }

    async fn due_for_sweep(
        conn: &mut AnyConnection,
        now_ms: i64,
    ) -> StoreResult<Vec<(TenantId, ApiSlug)>> {
        apis_with_expired_entries(conn, now_ms).await
    }
}

// === inside a transaction ===

/// The API `slug` of `tenant`; other tenants' APIs are not found.
async fn load_api(
    conn: &mut AnyConnection,
    tenant: TenantId,
    slug: &ApiSlug,
    now_ms: i64,
) -> StoreResult<Option<ApiRecord>> {
    let sql = format!("{API_SELECT} WHERE a.slug = $2 AND a.tenant_id = $3");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now_ms)
        .bind(slug.as_str())
        .bind(tenant.0)
        .fetch_optional(conn)
        .await?;
    row.map(|row| api_record(&row)).transpose()
}

/// The writer's API `slug`, checked against the etag the caller read.
async fn edit_api(w: &mut Write, slug: &ApiSlug, expected: Expected) -> StoreResult<ApiRecord> {
    let (tenant, now_ms) = (w.tenant(), w.now_ms);
    let record = load_api(w.conn(), tenant, slug, now_ms)
        .await?
        .ok_or_else(|| StoreError::ApiNotFound(slug.to_string()))?;
    etag::check(expected, record.revision)?;
    Ok(record)
}

async fn insert_api(w: &mut Write, record: &ApiRecord) -> StoreResult<()> {
    let (enabled, next_expiry) = api_derived(&record.config);
    sqlx::query(
        "INSERT INTO apis (slug, tenant_id, name, config, entry_meta, enabled, \
         next_entry_expiry, revision, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(record.config.slug.as_str())
    .bind(record.tenant.0)
    .bind(record.name.as_str())
    .bind(config_bytes(&record.config))
    .bind(origins_to_json(&record.origins))
    .bind(enabled)
    .bind(next_expiry)
    .bind(db_int(record.revision.get()))
    .bind(time::to_millis(record.created_at))
    .execute(w.conn())
    .await?;
    Ok(())
}

/// Stores `record` as changed at this write's revision, and stamps it so.
async fn save_api(w: &mut Write, record: &mut ApiRecord) -> StoreResult<()> {
    record.revision = w.revision;
    record.updated_at = time::from_millis(w.now_ms);
    record.origins.retain(|cidr, _| {
        record
            .config
            .allowlist
            .entries()
            .iter()
            .any(|e| e.cidr() == *cidr)
    });
    let (enabled, next_expiry) = api_derived(&record.config);
    sqlx::query(
        "UPDATE apis SET name = $1, config = $2, entry_meta = $3, enabled = $4, \
         next_entry_expiry = $5, revision = $6, updated_at = $7 WHERE slug = $8",
    )
    .bind(record.name.as_str())
    .bind(config_bytes(&record.config))
    .bind(origins_to_json(&record.origins))
    .bind(enabled)
    .bind(next_expiry)
    .bind(db_int(record.revision.get()))
    .bind(w.now_ms)
    .bind(record.config.slug.as_str())
    .execute(w.conn())
    .await?;
    Ok(())
}

/// Slugs of APIs with an entry expired at `now_ms`, with their tenants.
async fn apis_with_expired_entries(
    conn: &mut AnyConnection,
    now_ms: i64,
) -> StoreResult<Vec<(TenantId, ApiSlug)>> {
    let rows = sqlx::query(
        "SELECT tenant_id, slug FROM apis WHERE next_entry_expiry IS NOT NULL \
         AND next_entry_expiry <= $1 ORDER BY slug",
    )
    .bind(now_ms)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let slug: String = row.try_get("slug")?;
            let slug = slug
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("API slug: {e}")))?;
            Ok((TenantId(row.try_get("tenant_id")?), slug))
        })
        .collect()
}

fn config_bytes(config: &ApiConfig) -> Vec<u8> {
    use prost::Message;
    ipgate_shared::proto::sync::v1::ApiConfig::from(config).encode_to_vec()
}
