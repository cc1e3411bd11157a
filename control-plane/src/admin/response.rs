//! Domain records -> admin API messages.

use ipgate_shared::{
    RouteRule, allowlist::Allowlist, key::display_prefix, proto::admin::v1 as admin, time,
};

use crate::store::{ApiRecord, KeyRecord};

/// An API as operators see it; its etag is the revision of its last change.
pub fn api(record: &ApiRecord) -> admin::Api {
    let ApiRecord {
        tenant: _,
        name,
        config,
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
        slug: config.slug.to_string(),
        name: name.clone(),
        status: status.into(),
        routes: config.routes.iter().map(route).collect(),
        allowlist: Some(allowlist(&config.allowlist)),
        etag: revision.to_string(),
        revision: revision.get(),
        created_at: Some(time::to_timestamp(*created_at)),
        updated_at: Some(time::to_timestamp(*updated_at)),
        key_count: 0,
    }
}

/// An API key as operators see it: never its secret or hash.
pub fn api_key(record: &KeyRecord) -> admin::ApiKey {
    let KeyRecord {
        tenant: _,
        name,
        description,
        revoked,
        config,
        revision,
        created_at,
        updated_at,
    } = record;
    let status = if *revoked {
        admin::ApiKeyStatus::Revoked
    } else {
        admin::ApiKeyStatus::Active
    };
    admin::ApiKey {
        id: config.id.to_string(),
        api: config.api.to_string(),
        name: name.clone(),
        description: description.clone(),
        scopes: config.scopes.iter().map(ToString::to_string).collect(),
        status: status.into(),
        expires_at: config.expires_at.map(time::to_timestamp),
        allowlist: Some(allowlist(&config.allowlist)),
        prefix: display_prefix(&config.id),
        etag: revision.to_string(),
        revision: revision.get(),
        created_at: Some(time::to_timestamp(*created_at)),
        updated_at: Some(time::to_timestamp(*updated_at)),
        revoked_at: None,
        previous_secret_expires_at: None,
    }
}

fn allowlist(list: &Allowlist) -> admin::Allowlist {
    admin::Allowlist {
        entries: list
            .entries()
            .iter()
            .map(|e| admin::AllowlistEntry {
                cidr: e.cidr().to_string(),
                label: e.label().to_owned(),
                expires_at: e.expires_at().map(time::to_timestamp),
                created_at: None,
                created_by: String::new(),
            })
            .collect(),
        report_only: list.report_only(),
    }
}

fn route(rule: &RouteRule) -> admin::RouteRule {
    admin::RouteRule {
        method: rule.method().unwrap_or_default().to_owned(),
        path_prefix: rule.path_prefix().to_owned(),
        scope: rule.scope().to_string(),
    }
}
