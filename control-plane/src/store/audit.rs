//! The audit log: what it records of each object — its state as JSON, as an
//! operator reads it, never a secret or a hash (keys show their visible
//! prefix, tokens their public id) — and reading it back. Its rows are
//! written by `write.rs`, in the transaction of the change itself.

use std::{fmt::Write as _, time::SystemTime};

use ipgate_shared::{RouteRule, allowlist::Allowlist, key::display_prefix, time};
use serde_json::{Value, json};
use sqlx::Row;

use super::{
    args::Args,
    db::{Store, revision},
    error::StoreResult,
    records::{
        ApiRecord, AuditFilter, AuditRecord, EntryOrigins, KeyRecord, KeyStatus, TenantId,
        TenantRecord, TokenRecord,
    },
};
use crate::time_format::rfc3339;

impl Store {
    /// Audit events of `tenant`, newest first, older than the event `before`.
    pub async fn audit_events(
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

// === what the log records of an object ===

/// An API as the audit log shows it.
pub(super) fn api(record: &ApiRecord) -> Value {
    let ApiRecord {
        tenant: _,
        name,
        config,
        origins,
        key_count: _,
        revision,
        created_at: _,
        updated_at: _,
    } = record;
    json!({
        "slug": config.slug.as_str(),
        "name": name,
        "status": if config.enabled { "active" } else { "disabled" },
        "routes": config.routes.iter().map(route).collect::<Vec<_>>(),
        "allowlist": allowlist(&config.allowlist, origins),
        "revision": revision.get(),
    })
}

/// An API key as the audit log shows it (its prefix, never its hash).
pub(super) fn key(record: &KeyRecord, now: SystemTime) -> Value {
    let KeyRecord {
        tenant: _,
        name,
        description,
        revoked_at,
        config,
        origins,
        revision,
        created_at: _,
        updated_at: _,
    } = record;
    json!({
        "id": config.id.as_str(),
        "api": config.api.as_str(),
        "name": name,
        "description": description,
        "prefix": display_prefix(&config.id),
        "scopes": config.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "status": match record.status(now) {
            KeyStatus::Active => "active",
            KeyStatus::Revoked => "revoked",
            KeyStatus::Expired => "expired",
        },
        "expires_at": config.expires_at.map(rfc3339),
        "revoked_at": revoked_at.map(rfc3339),
        "previous_secret_expires_at": record.previous_secret_expires_at(now).map(rfc3339),
        "allowlist": allowlist(&config.allowlist, origins),
        "revision": revision.get(),
    })
}

/// A token as the audit log shows it (never its secret or hash).
pub(super) fn token(record: &TokenRecord) -> Value {
    let TokenRecord {
        id,
        name,
        role,
        tenant,
        created_at,
        created_by,
        revoked_at,
    } = record;
    json!({
        "id": id,
        "name": name,
        "role": role.as_str(),
        "tenant": tenant,
        "created_at": rfc3339(*created_at),
        "created_by": created_by,
        "revoked_at": revoked_at.map(rfc3339),
    })
}

/// A tenant as the audit log shows it.
pub(super) fn tenant(record: &TenantRecord) -> Value {
    json!({ "id": record.id, "name": record.name, "created_at": rfc3339(record.created_at) })
}

fn allowlist(list: &Allowlist, origins: &EntryOrigins) -> Value {
    let entries: Vec<Value> = list
        .entries()
        .iter()
        .map(|e| {
            let origin = origins.get(&e.cidr());
            json!({
                "cidr": e.cidr().to_string(),
                "label": e.label(),
                "expires_at": e.expires_at().map(rfc3339),
                "created_at": origin.map(|o| rfc3339(o.created_at)),
                "created_by": origin.map(|o| o.created_by.as_str()),
            })
        })
        .collect();
    json!({ "entries": entries, "report_only": list.report_only() })
}

fn route(rule: &RouteRule) -> Value {
    json!({
        "method": rule.method().unwrap_or_default(),
        "path_prefix": rule.path_prefix(),
        "scope": rule.scope().as_str(),
    })
}
