//! API keys: reads, and the writes that create, change, revoke and rotate them.

use std::{fmt::Write as _, time::SystemTime};

use ipgate_shared::{
    ApiSlug, Change, KeyConfig, KeyId, PreviousSecret, Revision, allowlist::Allowlist, time,
};
use prost::Message;
use sqlx::AnyConnection;

use super::{
    args::Args,
    audit,
    db::Store,
    error::{StoreError, StoreResult},
    lists::ListOwner,
    records::db_int,
    records::{
        EntryOrigins, Expected, KeyChanges, KeyCursor, KeyFilter, KeyRecord, KeyStatus, NewKey,
        Rotation, TenantId, WriteCtx,
    },
    rows::{KEY_SELECT, key_derived, key_record, origins_to_json},
    write::{Kind, Object, Write},
};
use crate::etag;

impl Store {
    /// Reads one key of `tenant`.
    pub async fn key(&self, tenant: TenantId, id: &KeyId) -> StoreResult<Option<KeyRecord>> {
        let mut conn = self.pool.acquire().await?;
        load_key(&mut conn, tenant, id).await
    }

    /// Keys of `tenant`, newest first, after `after`.
    pub async fn keys(
        &self,
        tenant: TenantId,
        filter: &KeyFilter,
        after: Option<KeyCursor>,
        limit: u32,
        now: SystemTime,
    ) -> StoreResult<Vec<KeyRecord>> {
        let mut args = Args::default();
        let mut sql = format!("{KEY_SELECT} WHERE k.tenant_id = {}", args.int(tenant.0));
        let KeyFilter {
            api,
            name_contains,
            status,
            has_allowlist,
        } = filter;
        if let Some(api) = api {
            let _ = write!(sql, " AND k.api_slug = {}", args.text(api.as_str()));
        }
        if let Some(text) = name_contains {
            // LIKE with its wildcards escaped, so the text is matched literally.
            let pattern = format!("%{}%", escape_like(&text.to_lowercase()));
            let _ = write!(
                sql,
                " AND LOWER(k.name) LIKE {} ESCAPE '\\'",
                args.text(&pattern)
            );
        }
        if let Some(status) = status {
            let now = args.int(time::to_millis(now));
            let _ = match status {
                KeyStatus::Active => write!(
                    sql,
                    " AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > {now})"
                ),
                KeyStatus::Revoked => write!(sql, " AND k.revoked_at IS NOT NULL"),
                KeyStatus::Expired => write!(
                    sql,
                    " AND k.revoked_at IS NULL AND k.expires_at IS NOT NULL AND k.expires_at <= {now}"
                ),
            };
        }
        match has_allowlist {
            Some(true) => sql.push_str(" AND k.allowlist_entries > 0"),
            Some(false) => sql.push_str(" AND k.allowlist_entries = 0"),
            None => {}
        }
        if let Some(KeyCursor { created_ms, id }) = after {
            let t = args.int(created_ms);
            let i = args.text(id.as_str());
            let _ = write!(
                sql,
                " AND (k.created_at < {t} OR (k.created_at = {t} AND k.id < {i}))"
            );
        }
        let _ = write!(
            sql,
            " ORDER BY k.created_at DESC, k.id DESC LIMIT {}",
            args.int(i64::from(limit))
        );
        let mut conn = self.pool.acquire().await?;
        let rows = args
            .bind(sqlx::query(sqlx::AssertSqlSafe(sql)))
            .fetch_all(&mut *conn)
            .await?;
        rows.iter().map(key_record).collect()
    }

    /// Creates an API key for an existing API of the writer's tenant.
    pub async fn create_key(&self, ctx: &WriteCtx, key: NewKey) -> StoreResult<KeyRecord> {
        self.write(ctx, Kind::Config, async |w| {
            let NewKey {
                name,
                description,
                config,
            } = key;
            let api = sqlx::query("SELECT 1 FROM apis WHERE slug = $1 AND tenant_id = $2")
                .bind(config.api.as_str())
                .bind(w.tenant().0)
                .fetch_optional(w.conn())
                .await?;
            if api.is_none() {
                return Err(StoreError::ApiNotFound(config.api.to_string()));
            }
            let origins: EntryOrigins = config
                .allowlist
                .entries()
                .iter()
                .map(|e| (e.cidr(), w.origin()))
                .collect();
            let record = KeyRecord {
                tenant: w.tenant(),
                name,
                description,
                revoked_at: None,
                config,
                origins,
                revision: w.revision,
                created_at: time::from_millis(w.now_ms),
                updated_at: time::from_millis(w.now_ms),
            };
            insert_key(w, &record).await?;
            w.change(Change::PutKey(record.config.clone()));
            w.audit(
                "api_key.create",
                Object::Key(record.config.id.as_str()),
                None,
                Some(audit::key(&record, w.ctx.now)),
            );
            Ok(record)
        })
        .await
    }

    /// Changes a key's name, description or scopes.
    pub async fn update_key(
        &self,
        ctx: &WriteCtx,
        id: &KeyId,
        changes: KeyChanges,
        expected: Expected,
    ) -> StoreResult<KeyRecord> {
        self.write(ctx, Kind::Config, async |w| {
            let before = edit_key(w, id, expected).await?;
            let mut record = before.clone();
            let KeyChanges {
                name,
                description,
                scopes,
            } = changes;
            if let Some(name) = name {
                record.name = name;
            }
            if let Some(description) = description {
                record.description = description;
            }
            if let Some(scopes) = scopes {
                record.config.scopes = scopes;
            }
            save_key(w, &mut record).await?;
            w.audit_key("api_key.update", &before, &record);
            Ok(record)
        })
        .await
    }

    /// Revokes a key.
    pub async fn revoke_key(
        &self,
        ctx: &WriteCtx,
        id: &KeyId,
        expected: Expected,
    ) -> StoreResult<KeyRecord> {
        self.write(ctx, Kind::Config, async |w| {
            let before = edit_key(w, id, expected).await?;
            if before.revoked_at.is_some() {
                return Err(StoreError::KeyRevoked(id.to_string()));
            }
            let mut record = before.clone();
            record.revoked_at = Some(w.ctx.now);
            save_key(w, &mut record).await?;
            w.audit_key("api_key.revoke", &before, &record);
            Ok(record)
        })
        .await
    }

    /// Gives a key a new secret; the old one works for the grace period.
    pub async fn rotate_key(
        &self,
        ctx: &WriteCtx,
        id: &KeyId,
        rotation: Rotation,
        expected: Expected,
    ) -> StoreResult<KeyRecord> {
        self.write(ctx, Kind::Config, async |w| {
            let before = edit_key(w, id, expected).await?;
            if before.revoked_at.is_some() {
                return Err(StoreError::KeyRevoked(id.to_string()));
            }
            let mut record = before.clone();
            let Rotation { secret_hash, grace } = rotation;
            // Only the secret being replaced may live on, for its grace
            // period: a rotation (often after a leak) retires every older
            // secret at once, whatever grace it had been given.
            record.config.previous_secrets = if grace.is_zero() {
                vec![]
            } else {
                vec![PreviousSecret {
                    hash: record.config.secret_hash,
                    valid_until: w.ctx.now + grace,
                }]
            };
            record.config.secret_hash = secret_hash;
            save_key(w, &mut record).await?;
            w.audit_key("api_key.rotate", &before, &record);
            Ok(record)
        })
        .await
    }
}

impl Write {
    /// Audits a key change and notes what enforcers must apply: a revoked
    /// key leaves their index whatever else changed.
    pub(super) fn audit_key(&mut self, action: &str, before: &KeyRecord, after: &KeyRecord) {
        let change = if after.revoked_at.is_some() {
            Change::DeleteKey(after.config.id)
        } else {
            Change::PutKey(after.config.clone())
        };
        self.change(change);
        let now = self.ctx.now;
        self.audit(
            action,
            Object::Key(after.config.id.as_str()),
            Some(audit::key(before, now)),
            Some(audit::key(after, now)),
        );
    }
}

/// A key's allowlist, checked after authentication.
impl ListOwner for KeyRecord {
    type Id = KeyId;
    const USAGE_COLUMN: &'static str = "api_key_id";
    const AUDIT_NAME: &'static str = "api_key";

    async fn load(
        conn: &mut AnyConnection,
        tenant: TenantId,
        id: &KeyId,
        _now_ms: i64,
    ) -> StoreResult<Option<KeyRecord>> {
        load_key(conn, tenant, id).await
    }

    fn not_found(id: &KeyId) -> StoreError {
        StoreError::KeyNotFound(id.to_string())
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
        before: &KeyRecord,
        after: &mut KeyRecord,
        action: &str,
    ) -> StoreResult<()> {
        save_key(w, after).await?;
        w.audit_key(action, before, after);
        Ok(())
    }

    async fn due_for_sweep(
        conn: &mut AnyConnection,
        now_ms: i64,
    ) -> StoreResult<Vec<(TenantId, KeyId)>> {
        keys_with_expired_entries(conn, now_ms).await
    }
}

// === inside a transaction ===

/// The key `id` of `tenant`; other tenants' keys are not found.
async fn load_key(
    conn: &mut AnyConnection,
    tenant: TenantId,
    id: &KeyId,
) -> StoreResult<Option<KeyRecord>> {
    let sql = format!("{KEY_SELECT} WHERE k.id = $1 AND k.tenant_id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.as_str())
        .bind(tenant.0)
        .fetch_optional(conn)
        .await?;
    row.map(|row| key_record(&row)).transpose()
}

/// Every key of `tenant`'s API, newest first.
pub(super) async fn load_keys_of_api(
    conn: &mut AnyConnection,
    tenant: TenantId,
    slug: &ApiSlug,
) -> StoreResult<Vec<KeyRecord>> {
    let sql = format!(
        "{KEY_SELECT} WHERE k.api_slug = $1 AND k.tenant_id = $2 ORDER BY k.created_at DESC, k.id DESC"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(slug.as_str())
        .bind(tenant.0)
        .fetch_all(conn)
        .await?;
    rows.iter().map(key_record).collect()
}

/// The writer's key `id`, checked against the etag the caller read.
async fn edit_key(w: &mut Write, id: &KeyId, expected: Expected) -> StoreResult<KeyRecord> {
    let tenant = w.tenant();
    let record = load_key(w.conn(), tenant, id)
        .await?
        .ok_or_else(|| StoreError::KeyNotFound(id.to_string()))?;
    etag::check(expected, record.revision)?;
    Ok(record)
}

async fn insert_key(w: &mut Write, record: &KeyRecord) -> StoreResult<()> {
    let (expires_at, entries, next_expiry) = key_derived(&record.config);
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, api_slug, name, description, config, entry_meta, \
         expires_at, allowlist_entries, next_entry_expiry, revision, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
    )
    .bind(record.config.id.as_str())
    .bind(record.tenant.0)
    .bind(record.config.api.as_str())
    .bind(record.name.as_str())
    .bind(record.description.as_str())
    .bind(config_bytes(&record.config))
    .bind(origins_to_json(&record.origins))
    .bind(expires_at)
    .bind(entries)
    .bind(next_expiry)
    .bind(db_int(record.revision.get()))
    .bind(time::to_millis(record.created_at))
    .execute(w.conn())
    .await?;
    Ok(())
}

/// Stores `record` as changed at this write's revision, and stamps it so.
/// Secrets whose rotation grace has ended are dropped on the way.
pub(super) async fn save_key(w: &mut Write, record: &mut KeyRecord) -> StoreResult<()> {
    let now = w.ctx.now;
    record.revision = w.revision;
    record.updated_at = now;
    record
        .config
        .previous_secrets
        .retain(|p| p.valid_until > now);
    let entries = record.config.allowlist.entries();
    record
        .origins
        .retain(|cidr, _| entries.iter().any(|e| e.cidr() == *cidr));
    let (expires_at, entry_count, next_expiry) = key_derived(&record.config);
    sqlx::query(
        "UPDATE api_keys SET name = $1, description = $2, revoked_at = $3, config = $4, \
         entry_meta = $5, expires_at = $6, allowlist_entries = $7, next_entry_expiry = $8, \
         revision = $9, updated_at = $10 WHERE id = $11",
    )
    .bind(record.name.as_str())
    .bind(record.description.as_str())
    .bind(record.revoked_at.map(time::to_millis))
    .bind(config_bytes(&record.config))
    .bind(origins_to_json(&record.origins))
    .bind(expires_at)
    .bind(entry_count)
    .bind(next_expiry)
    .bind(db_int(record.revision.get()))
    .bind(w.now_ms)
    .bind(record.config.id.as_str())
    .execute(w.conn())
    .await?;
    Ok(())
}

/// Ids of keys with an entry expired at `now_ms`, with their tenants.
async fn keys_with_expired_entries(
    conn: &mut AnyConnection,
    now_ms: i64,
) -> StoreResult<Vec<(TenantId, KeyId)>> {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT tenant_id, id FROM api_keys WHERE next_entry_expiry IS NOT NULL \
         AND next_entry_expiry <= $1 ORDER BY id",
    )
    .bind(now_ms)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("id")?;
            let id = id
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("key id: {e}")))?;
            Ok((TenantId(row.try_get("tenant_id")?), id))
        })
        .collect()
}

fn config_bytes(config: &KeyConfig) -> Vec<u8> {
    ipgate_shared::proto::sync::v1::KeyConfig::from(config).encode_to_vec()
}

/// `text` with LIKE's wildcards and the escape character escaped.
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
