//! Tenants: each owns APIs, keys and tokens; `default` runs the installation.

use ipgate_shared::time;
use sqlx::Row;

use super::{
    audit,
    db::Store,
    error::{StoreError, StoreResult},
    records::{NewTenant, NewToken, TenantId, TenantRecord, TokenRecord, WriteCtx},
    tokens::insert_token,
    write::{Kind, Object},
};

impl Store {
    /// Every tenant, by id.
    pub async fn tenants(&self) -> StoreResult<Vec<TenantRecord>> {
        let mut conn = self.pool.acquire().await?;
        let rows =
            sqlx::query("SELECT id, name, display_name, created_at FROM tenants ORDER BY name")
                .fetch_all(&mut *conn)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(TenantRecord {
                    key: TenantId(row.try_get("id")?),
                    id: row.try_get("name")?,
                    name: row.try_get("display_name")?,
                    created_at: time::from_millis(row.try_get("created_at")?),
                })
            })
            .collect()
    }

    /// Creates a tenant and its first owner token.
    pub async fn create_tenant(
        &self,
        ctx: &WriteCtx,
        tenant: NewTenant,
        owner: NewToken,
    ) -> StoreResult<(TenantRecord, TokenRecord)> {
        self.write(ctx, Kind::Admin, async |w| {
            let NewTenant { id, name } = tenant;
            let taken = sqlx::query("SELECT 1 FROM tenants WHERE name = $1")
                .bind(id.as_str())
                .fetch_optional(w.conn())
                .await?;
            if taken.is_some() {
                return Err(StoreError::TenantExists(id));
            }
            // Writes are serialised (see `write`), so MAX + 1 is free.
            let next: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 FROM tenants")
                .fetch_one(w.conn())
                .await?
                .try_get(0)?;
            sqlx::query(
                "INSERT INTO tenants (id, name, display_name, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(next)
            .bind(id.as_str())
            .bind(name.as_str())
            .bind(w.now_ms)
            .execute(w.conn())
            .await?;
            let record = TenantRecord {
                key: TenantId(next),
                id,
                name,
                created_at: time::from_millis(w.now_ms),
            };
            w.audit(
                "tenant.create",
                Object::Tenant(&record.id),
                None,
                Some(audit::tenant(&record)),
            );
            let actor = w.ctx.actor.clone();
            let token = insert_token(w, record.key, owner, &actor).await?;
            Ok((record, token))
        })
        .await
    }
}
