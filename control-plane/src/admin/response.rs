//! Records -> admin API messages.

use std::time::SystemTime;

use ipgate_shared::{
    RouteRule, allowlist::Allowlist, key::display_prefix, proto::admin::v1 as admin, time,
};

use crate::{
    allowlists::Lockout,
    store::{
        ApiRecord, AuditRecord, EntryOrigins, KeyRecord, KeyStatus, Role, TenantRecord, TokenRecord,
    },
};

/// An API as operators see it; its etag is the revision of its last change.
pub fn api(record: &ApiRecord) -> admin::Api {
    let ApiRecord {
        tenant: _,
        name,
        config,
        origins,
        key_count,
        revision,
        created_at,
        updated_at,
    } = record;
    let status = if config.enabled {
        admin::ApiStatus::Active
    } else {
        admin::ApiStatus::Disabled
    };
    admin::Api {
        propagation: None,
        slug: config.slug.to_string(),
        name: name.clone(),
        status: status.into(),
        routes: config.routes.iter().map(route).collect(),
        allowlist: Some(allowlist(&config.allowlist, origins)),
        etag: revision.to_string(),
        revision: revision.get(),
        created_at: Some(time::to_timestamp(*created_at)),
        updated_at: Some(time::to_timestamp(*updated_at)),
        key_count: *key_count,
    }
}

/// An API key as operators see it at `now`: never its secret or hash.
pub fn api_key(record: &KeyRecord, now: SystemTime) -> admin::ApiKey {
    let KeyRecord {
        tenant: _,
        name,
        description,
        revoked_at,
        config,
        origins,
        revision,
        created_at,
        updated_at,
    } = record;
    admin::ApiKey {
        propagation: None,
        id: config.id.to_string(),
        api: config.api.to_string(),
        name: name.clone(),
        description: description.clone(),
        scopes: config.scopes.iter().map(ToString::to_string).collect(),
        status: key_status(record.status(now)).into(),
        expires_at: config.expires_at.map(time::to_timestamp),
        allowlist: Some(allowlist(&config.allowlist, origins)),
        prefix: display_prefix(&config.id),
        etag: revision.to_string(),
        revision: revision.get(),
        created_at: Some(time::to_timestamp(*created_at)),
        updated_at: Some(time::to_timestamp(*updated_at)),
        revoked_at: revoked_at.map(time::to_timestamp),
        previous_secret_expires_at: record
            .previous_secret_expires_at(now)
            .map(time::to_timestamp),
    }
}

/// A key status as the API names it.
pub fn key_status(status: KeyStatus) -> admin::ApiKeyStatus {
    match status {
        KeyStatus::Active => admin::ApiKeyStatus::Active,
        KeyStatus::Revoked => admin::ApiKeyStatus::Revoked,
        KeyStatus::Expired => admin::ApiKeyStatus::Expired,
    }
}

/// A list with each entry's origin (when and by whom it was added).
pub fn allowlist(list: &Allowlist, origins: &EntryOrigins) -> admin::Allowlist {
    admin::Allowlist {
        entries: list
            .entries()
            .iter()
            .map(|e| {
                let origin = origins.get(&e.cidr());
                admin::AllowlistEntry {
                    cidr: e.cidr().to_string(),
                    label: e.label().to_owned(),
                    expires_at: e.expires_at().map(time::to_timestamp),
                    created_at: origin.map(|o| time::to_timestamp(o.created_at)),
                    created_by: origin.map(|o| o.created_by.clone()).unwrap_or_default(),
                }
            })
            .collect(),
        report_only: list.report_only(),
    }
}

/// Who a list change starts blocking.
pub fn lockout(lockout: &Lockout) -> admin::LockoutPreview {
    admin::LockoutPreview {
        callers: lockout
            .callers
            .iter()
            .map(|c| admin::LockedOutCaller {
                client_ip: c.ip.to_string(),
                requests: c.requests,
                last_seen: Some(time::to_timestamp(c.last_seen)),
            })
            .collect(),
        total_callers: u32::try_from(lockout.total).unwrap_or(u32::MAX),
        since: Some(time::to_timestamp(lockout.since)),
    }
}

/// A token as operators see it: never its secret or hash.
pub fn token(record: &TokenRecord) -> admin::Token {
    let TokenRecord {
        id,
        name,
        role,
        tenant,
        created_at,
        created_by,
        revoked_at,
    } = record;
    admin::Token {
        id: id.clone(),
        name: name.clone(),
        role: token_role(*role).into(),
        tenant: tenant.clone(),
        created_at: Some(time::to_timestamp(*created_at)),
        created_by: created_by.clone(),
        revoked_at: revoked_at.map(time::to_timestamp),
    }
}

fn token_role(role: Role) -> admin::TokenRole {
    match role {
        Role::Owner => admin::TokenRole::Owner,
        Role::Editor => admin::TokenRole::Editor,
        Role::Viewer => admin::TokenRole::Viewer,
        Role::Enforcer => admin::TokenRole::Enforcer,
    }
}

/// A tenant.
pub fn tenant(record: &TenantRecord) -> admin::Tenant {
    admin::Tenant {
        id: record.id.clone(),
        name: record.name.clone(),
        created_at: Some(time::to_timestamp(record.created_at)),
    }
}

/// One audit event.
pub fn audit_event(record: AuditRecord) -> admin::AuditEvent {
    let AuditRecord {
        id,
        time: at,
        actor,
        action,
        object_type,
        object_id,
        before_json,
        after_json,
        revision,
    } = record;
    admin::AuditEvent {
        id: id.to_string(),
        time: Some(time::to_timestamp(at)),
        actor_token_id: actor,
        action,
        object_type,
        object_id,
        before_json,
        after_json,
        revision: revision.get(),
    }
}

fn route(rule: &RouteRule) -> admin::RouteRule {
    admin::RouteRule {
        method: rule.method().unwrap_or_default().to_owned(),
        path_prefix: rule.path_prefix().to_owned(),
        scope: rule.scope().to_string(),
    }
}
