//! Admin and enforcer tokens, stored as SHA-256 only, known by a public id.

use std::time::SystemTime;

use ipgate_shared::time;
use sqlx::{AnyConnection, Row, any::AnyRow};

use super::{
    audit,
    db::Store,
    error::{StoreError, StoreResult},
    records::{NewToken, Principal, Role, TenantId, TokenRecord, WriteCtx},
    write::{Kind, Object, Write},
};
use crate::tokens::generate_token_id;

const TOKEN_SELECT: &str = "SELECT t.public_id, t.name, t.role, n.name AS tenant, t.created_at, \
     t.created_by, t.revoked_at FROM tokens t JOIN tenants n ON n.id = t.tenant_id";

impl Store {
    /// Makes sure a token with this SHA-256 exists with `role` (bootstrap).
    pub async fn ensure_token(
        &self,
        tenant: TenantId,
        role: Role,
        sha256: [u8; 32],
        name: &str,
        now: SystemTime,
    ) -> StoreResult<()> {
        let ctx = WriteCtx::system(tenant, now);
        self.write(&ctx, Kind::Admin, async |w| {
            let existing =
                sqlx::query("SELECT role, revoked_at FROM tokens WHERE secret_sha256 = $1")
                    .bind(sha256.to_vec())
                    .fetch_optional(w.conn())
                    .await?;
            if let Some(row) = existing {
                let found = role_of(&row)?;
                if found != role {
                    return Err(StoreError::TokenRoleConflict {
                        existing: found.as_str(),
                        wanted: role.as_str(),
                    });
                }
                if row.try_get::<Option<i64>, _>("revoked_at")?.is_some() {
                    // Revoked by an operator: the environment does not revive it.
                    tracing::warn!(
                        name,
                        "a bootstrap token given at start is revoked; it stays revoked"
                    );
                }
                return Ok(());
            }
            let token = NewToken {
                name: name.to_owned(),
                role,
                sha256,
            };
            insert_token(w, tenant, token, "").await?;
            Ok(())
        })
        .await
    }

    /// How many tokens exist.
    pub async fn token_count(&self) -> StoreResult<u64> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query("SELECT COUNT(*) FROM tokens")
            .fetch_one(&mut *conn)
            .await?;
        let n: i64 = row.try_get(0)?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    /// The holder of the unrevoked token with this SHA-256.
    pub async fn token(&self, sha256: [u8; 32]) -> StoreResult<Option<Principal>> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query(
            "SELECT public_id, tenant_id, role FROM tokens \
             WHERE secret_sha256 = $1 AND revoked_at IS NULL",
        )
        .bind(sha256.to_vec())
        .fetch_optional(&mut *conn)
        .await?;
        row.map(|row| {
            Ok(Principal {
                tenant: TenantId(row.try_get("tenant_id")?),
                role: role_of(&row)?,
                token_id: row.try_get("public_id")?,
            })
        })
        .transpose()
    }

    /// The tenant's tokens, oldest first.
    pub async fn tokens(
        &self,
        tenant: TenantId,
        include_revoked: bool,
    ) -> StoreResult<Vec<TokenRecord>> {
        let active = if include_revoked {
            ""
        } else {
            " AND t.revoked_at IS NULL"
        };
        let sql = format!("{TOKEN_SELECT} WHERE t.tenant_id = $1{active} ORDER BY t.id");
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.0)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter().map(token_record).collect()
    }

    /// Creates a token in the writer's tenant.
    pub async fn create_token(&self, ctx: &WriteCtx, token: NewToken) -> StoreResult<TokenRecord> {
        self.write(ctx, Kind::Admin, async |w| {
            let (tenant, actor) = (w.tenant(), w.ctx.actor.clone());
            insert_token(w, tenant, token, &actor).await
        })
        .await
    }

    /// Revokes a token of the writer's tenant. The revocation commits a
    /// revision (with no change for enforcers), so that every replica's
    /// sync sessions check their token before sending anything after it.
    pub async fn revoke_token(&self, ctx: &WriteCtx, id: &str) -> StoreResult<TokenRecord> {
        self.write(ctx, Kind::Config, async |w| {
            w.revokes_token();
            let tenant = w.tenant();
            let sql = format!("{TOKEN_SELECT} WHERE t.public_id = $1 AND t.tenant_id = $2");
            let before = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(tenant.0)
                .fetch_optional(w.conn())
                .await?
                .map(|row| token_record(&row))
                .transpose()?
                .ok_or_else(|| StoreError::TokenNotFound(id.to_owned()))?;
            if before.revoked_at.is_some() {
                return Err(StoreError::TokenRevoked(id.to_owned()));
            }
            if before.role == Role::Owner && active_owners(w.conn(), tenant).await? <= 1 {
                return Err(StoreError::LastOwner(id.to_owned()));
            }
            sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE public_id = $2")
                .bind(w.now_ms)
                .bind(id)
                .execute(w.conn())
                .await?;
            let after = TokenRecord {
                revoked_at: Some(w.ctx.now),
                ..before.clone()
            };
            w.audit(
                "token.revoke",
                Object::Token(id),
                Some(audit::token(&before)),
                Some(audit::token(&after)),
            );
            Ok(after)
        })
        .await
    }
}

/// Stores a new token of `tenant` made by `created_by`, and audits it there.
pub(super) async fn insert_token(
    w: &mut Write,
    tenant: TenantId,
    token: NewToken,
    created_by: &str,
) -> StoreResult<TokenRecord> {
    let NewToken { name, role, sha256 } = token;
    let id = generate_token_id();
    sqlx::query(
        "INSERT INTO tokens (tenant_id, role, secret_sha256, name, created_at, public_id, \
         created_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tenant.0)
    .bind(role.as_str())
    .bind(sha256.to_vec())
    .bind(name.as_str())
    .bind(w.now_ms)
    .bind(id.as_str())
    .bind(created_by)
    .execute(w.conn())
    .await?;
    let tenant_id: String = sqlx::query("SELECT name FROM tenants WHERE id = $1")
        .bind(tenant.0)
        .fetch_one(w.conn())
        .await?
        .try_get("name")?;
    let record = TokenRecord {
        id,
        name,
        role,
        tenant: tenant_id,
        created_at: time::from_millis(w.now_ms),
        created_by: created_by.to_owned(),
        revoked_at: None,
    };
    w.audit_in(
        tenant,
        "token.create",
        Object::Token(&record.id),
        None,
        Some(audit::token(&record)),
    );
    Ok(record)
}

async fn active_owners(conn: &mut AnyConnection, tenant: TenantId) -> StoreResult<i64> {
    let row = sqlx::query(
        "SELECT COUNT(*) FROM tokens WHERE tenant_id = $1 AND role = 'owner' AND revoked_at IS NULL",
    )
    .bind(tenant.0)
    .fetch_one(conn)
    .await?;
    Ok(row.try_get(0)?)
}

fn role_of(row: &AnyRow) -> StoreResult<Role> {
    let role: String = row.try_get("role")?;
    Role::from_name(&role)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown token role {role:?}")))
}

fn token_record(row: &AnyRow) -> StoreResult<TokenRecord> {
    let revoked_at: Option<i64> = row.try_get("revoked_at")?;
    Ok(TokenRecord {
        id: row.try_get("public_id")?,
        name: row.try_get("name")?,
        role: role_of(row)?,
        tenant: row.try_get("tenant")?,
        created_at: time::from_millis(row.try_get("created_at")?),
        created_by: row.try_get("created_by")?,
        revoked_at: revoked_at.map(time::from_millis),
    })
}
