//! What the audit log records of an object: its state as JSON, as an
//! operator reads it. Never a secret or a hash: keys show their visible
//! prefix, tokens their public id.

use std::time::SystemTime;

use ipgate_shared::{RouteRule, allowlist::Allowlist, key::display_prefix};
use serde_json::{Value, json};

use crate::store::{ApiRecord, EntryOrigins, KeyRecord, KeyStatus, TenantRecord, TokenRecord};

/// An API as the audit log shows it.
pub fn api(record: &ApiRecord) -> Value {
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
pub fn key(record: &KeyRecord, now: SystemTime) -> Value {
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
pub fn token(record: &TokenRecord) -> Value {
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
pub fn tenant(record: &TenantRecord) -> Value {
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

/// An instant as RFC 3339 UTC with milliseconds (`2026-05-01T12:00:00.250Z`).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
