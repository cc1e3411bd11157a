//! Admin and enforcer tokens, stored as SHA-256 only.

use std::time::SystemTime;

use ipgate_shared::time;
use sqlx::Row;

use super::{
    Principal, Role, StoreError, StoreResult, TenantId,
    sql::{SqlStore, Tx},
};

impl SqlStore {
    pub(super) async fn ensure_token_tx(
        &self,
        tenant: TenantId,
        role: Role,
        sha256: [u8; 32],
        name: &str,
        now: SystemTime,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let result = ensure_token(&mut tx, tenant, role, sha256, name, now).await;
        SqlStore::finish(tx, result).await
    }

    pub(super) async fn count_tokens(&self) -> StoreResult<u64> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query("SELECT COUNT(*) FROM tokens")
            .fetch_one(&mut *conn)
            .await?;
        let n: i64 = row.try_get(0)?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    pub(super) async fn token_by_hash(&self, sha256: [u8; 32]) -> StoreResult<Option<Principal>> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query("SELECT tenant_id, role FROM tokens WHERE secret_sha256 = $1")
            .bind(sha256.to_vec())
            .fetch_optional(&mut *conn)
            .await?;
        row.map(|row| principal(&row)).transpose()
    }
}

async fn ensure_token(
    tx: &mut Tx,
    tenant: TenantId,
    role: Role,
    sha256: [u8; 32],
    name: &str,
    now: SystemTime,
) -> StoreResult<()> {
    let existing = sqlx::query("SELECT tenant_id, role FROM tokens WHERE secret_sha256 = $1")
        .bind(sha256.to_vec())
        .fetch_optional(&mut **tx)
        .await?;
    if let Some(row) = existing {
        let found = principal(&row)?;
        return if found.role == role {
            Ok(())
        } else {
            Err(StoreError::TokenRoleConflict {
                existing: found.role.as_str(),
                wanted: role.as_str(),
            })
        };
    }
    sqlx::query(
        "INSERT INTO tokens (tenant_id, role, secret_sha256, name, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(tenant.0)
    .bind(role.as_str())
    .bind(sha256.to_vec())
    .bind(name)
    .bind(time::to_millis(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn principal(row: &sqlx::any::AnyRow) -> StoreResult<Principal> {
    let role: String = row.try_get("role")?;
    Ok(Principal {
        tenant: TenantId(row.try_get("tenant_id")?),
        role: Role::from_name(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown token role {role:?}")))?,
    })
}
