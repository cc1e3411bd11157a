//! Reading the audit log (its rows are written by `write`).

use std::fmt::Write as _;

use ipgate_shared::time;
use sqlx::Row;

use super::{
    AuditFilter, AuditRecord, StoreResult, TenantId,
    args::Args,
    sql::{SqlStore, revision},
};

impl SqlStore {
    pub(super) async fn list_audit(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        let mut args = Args::default();
        let mut sql = format!(
            "SELECT id, time_ms, actor, action, object_type, object_id, before_json, after_json, \
             revision FROM audit_events WHERE tenant_id = {}",
            args.int(tenant.0)
        );
        let AuditFilter {
            object_type,
            object_id,
            actor,
            start_ms,
            end_ms,
        } = filter;
        for (column, value) in [
            ("object_type", object_type),
            ("object_id", object_id),
            ("actor", actor),
        ] {
            if let Some(value) = value {
                let _ = write!(sql, " AND {column} = {}", args.text(value));
            }
        }
        if let Some(start) = start_ms {
            let _ = write!(sql, " AND time_ms >= {}", args.int(*start));
        }
        if let Some(end) = end_ms {
            let _ = write!(sql, " AND time_ms < {}", args.int(*end));
        }
        if let Some(before) = before {
            let _ = write!(sql, " AND id < {}", args.int(before));
        }
        let _ = write!(
            sql,
            " ORDER BY id DESC LIMIT {}",
            args.int(i64::from(limit))
        );
        let mut conn = self.pool.acquire().await?;
        let rows = args
            .bind(sqlx::query(sqlx::AssertSqlSafe(sql)))
            .fetch_all(&mut *conn)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditRecord {
                    id: row.try_get("id")?,
                    time: time::from_millis(row.try_get("time_ms")?),
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    object_type: row.try_get("object_type")?,
                    object_id: row.try_get("object_id")?,
                    before_json: row.try_get("before_json")?,
                    after_json: row.try_get("after_json")?,
                    revision: revision(row.try_get("revision")?)?,
                })
            })
            .collect()
    }
}
