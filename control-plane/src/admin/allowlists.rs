//! Allowlist writes, the same four shapes for an API's list and a key's:
//! Set (the whole list and its report-only mode), Add, Remove, Update one
//! entry. Each takes an etag and `AllowlistWriteOptions`, and answers with
//! the object as stored (or as it would be) and the lockout preview.

use std::time::SystemTime;

use ipgate_shared::{ApiSlug, Cidr, KeyId, Label, ListRules, Revision, proto::admin::v1 as admin};

use super::{AdminApi, committed, request, response};
use crate::{
    allowlists::Edit,
    status::{InvalidRequest, RpcError},
    store::{ListWrite, Principal, Store, WriteCtx},
};

pub async fn set_api<S: Store>(
    api: &AdminApi<S>,
    caller: &Principal,
    req: admin::SetApiAllowlistRequest,
) -> Result<admin::ApiAllowlistResponse, RpcError> {
    let admin::SetApiAllowlistRequest {
        slug,
        allowlist,
        etag,
        options,
    } = req;
    let mut bad = InvalidRequest::default();
    let edit = request::allowlist(
        &mut bad,
        "allowlist",
        allowlist,
        api.api_rules,
        SystemTime::now(),
    )
    .map(Edit::Set);
    write_api(api, caller, bad, &slug, edit, &etag, options).await
}

pub async fn add_api<S: Store>(
    api: &AdminApi<S>,
    caller: &Principal,
    req: admin::AddApiAllowlistEntriesRequest,
) -> Result<admin::ApiAllowlistResponse, RpcError> {
    let admin::AddApiAllowlistEntriesRequest {
        slug,
        entries,
        etag,
        options,
    } = req;
    let mut bad = InvalidRequest::default();
    let edit = add(&mut bad, entries, api.api_rules);
    write_api(api, caller, bad, &slug, edit, &etag, options).await
}

pub async fn remove_api<S: Store>(
    api: &AdminApi<S>,
    caller: &Principal,
    req: admin::RemoveApiAllowlistEntriesRequest,
) -> Result<admin::ApiAllowlistResponse, RpcError> {
    let admin::RemoveApiAllowlistEntriesRequest {
        slug,
        cidrs,
        etag,
        options,
    } = req;
    let mut bad = InvalidRequest::default();
    let edit = remove(&mut bad, &cidrs);
    write_api(api, caller, bad, &slug, edit, &etag, options).await
}

pub async fn update_api<S: Store>(
    api: &AdminApi<S>,
    caller: &Principal,
    req: admin::UpdateApiAllowlistEntryRequest,
) -> Result<admin::ApiAllowlistResponse, RpcError> {
    let admin::UpdateApiAllowlistEntryRequest {
        slug,
        cidr,
        label,
        expires_at,
        clear_expires_at,
        etag,
        options,
    } = req;
    let mut bad = InvalidRequest::default();
    let edit = update(&mut bad, &cidr, label, expires_at, clear_expires_at);
    write_api(api, caller, bad, &slug, edit, &etag, options).await
}

pub async fn set_key<S: Store>(
    api: &AdminApi<S>,
    caller: &Principal,
    req: admin::SetApiKeyAllowlistRequest,
) -> Result<admin::ApiKeyAllowlistResponse, RpcError> {
    let admin::SetApiKeyAllowlistRequest {
        id,
        allowlist,
        etag,
        options,
    } = req;
    let mut bad = InvalidRequest::default();
    let edit = request::allowlist(
        &mut bad,
        "allowlist",
        allowlist,
        api.key_rules,
        SystemTime::now(),
    )
    .map(Edit::Set);
    write_key(api, caller, bad, &id, edit, &etag, options).await
}

pub async fn add_key<S: Store>(
    api: &AdminApi<S>,
    caller: &Principal,
    req: admin::AddApiKeyAllowlistEntriesRequest,
) -> Result<admin::ApiKeyAllowlistResponse, RpcError> {
    let admin::AddApiKeyAllowlistEntriesRequest {
        id,
        entries,
        etag,
        options,
    } = req;
    let mut bad = InvalidRequest::default();
    let edit = add(&mut bad, entries, api.key_rules);
    write_key(api, caller, bad, &id, edit, &etag, options).await
}

pub async fn remove_key<S: Store>(
    api: &AdminApi<S>,
    caller: &Principal,
    req: admin::RemoveApiKeyAllowlistEntriesRequest,
) -> Result<admin::ApiKeyAllowlistResponse, RpcError> {
    let admin::RemoveApiKeyAllowlistEntriesRequest {
        id,
        cidrs,
        etag,
        options,
    } = req;
    let mut bad = InvalidRequest::default();
    let edit = remove(&mut bad, &cidrs);
    write_key(api, caller, bad, &id, edit, &etag, options).await
}

pub async fn update_key<S: Store>(
    api: &AdminApi<S>,
    caller: &Principal,
    req: admin::UpdateApiKeyAllowlistEntryRequest,
) -> Result<admin::ApiKeyAllowlistResponse, RpcError> {
    let admin::UpdateApiKeyAllowlistEntryRequest {
        id,
        cidr,
        label,
        expires_at,
        clear_expires_at,
        etag,
        options,
    } = req;
    let mut bad = InvalidRequest::default();
    let edit = update(&mut bad, &cidr, label, expires_at, clear_expires_at);
    write_key(api, caller, bad, &id, edit, &etag, options).await
}

// === the two targets ===

async fn write_api<S: Store>(
    api: &AdminApi<S>,
    caller: &Principal,
    mut bad: InvalidRequest,
    slug: &str,
    edit: Option<Edit>,
    etag: &str,
    options: Option<admin::AllowlistWriteOptions>,
) -> Result<admin::ApiAllowlistResponse, RpcError> {
    let slug = bad.check("slug", slug.parse::<ApiSlug>());
    let expected = request::etag(&mut bad, etag);
    let (slug, edit, expected) = bad.or_value(|| Some((slug?, edit?, expected?)))?;
    let (ctx, write) = list_write(caller, edit, api.api_rules, expected, options);
    let written = api.store.write_api_allowlist(&ctx, &slug, write).await?;
    committed(written.record.revision, ctx.validate_only);
    Ok(admin::ApiAllowlistResponse {
        api: Some(response::api(&written.record)),
        lockout: Some(response::lockout(&written.lockout)),
        validate_only: ctx.validate_only,
    })
}

async fn write_key<S: Store>(
    api: &AdminApi<S>,
    caller: &Principal,
    mut bad: InvalidRequest,
    id: &str,
    edit: Option<Edit>,
    etag: &str,
    options: Option<admin::AllowlistWriteOptions>,
) -> Result<admin::ApiKeyAllowlistResponse, RpcError> {
    let id = bad.check("id", id.parse::<KeyId>());
    let expected = request::etag(&mut bad, etag);
    let (id, edit, expected) = bad.or_value(|| Some((id?, edit?, expected?)))?;
    let (ctx, write) = list_write(caller, edit, api.key_rules, expected, options);
    let written = api.store.write_key_allowlist(&ctx, &id, write).await?;
    committed(written.record.revision, ctx.validate_only);
    Ok(admin::ApiKeyAllowlistResponse {
        key: Some(response::api_key(&written.record, ctx.now)),
        lockout: Some(response::lockout(&written.lockout)),
        validate_only: ctx.validate_only,
    })
}

fn list_write(
    caller: &Principal,
    edit: Edit,
    rules: ListRules,
    expected: Option<Revision>,
    options: Option<admin::AllowlistWriteOptions>,
) -> (WriteCtx, ListWrite) {
    let admin::AllowlistWriteOptions {
        validate_only,
        acknowledge_lockout_risk,
    } = options.unwrap_or_default();
    let write = ListWrite {
        edit,
        rules,
        expected,
        acknowledge_lockout_risk,
    };
    (WriteCtx::by(caller, validate_only), write)
}

// === the edits ===

fn add(
    bad: &mut InvalidRequest,
    entries: Vec<admin::AllowlistEntry>,
    rules: ListRules,
) -> Option<Edit> {
    request::entries(bad, entries, rules, SystemTime::now()).map(Edit::Add)
}

fn remove(bad: &mut InvalidRequest, cidrs: &[String]) -> Option<Edit> {
    if cidrs.is_empty() {
        bad.add("cidrs", "no entries given; name at least one to remove");
        return None;
    }
    let parsed: Vec<Option<Cidr>> = cidrs
        .iter()
        .enumerate()
        .map(|(i, c)| bad.check(format!("cidrs[{i}]"), c.parse::<Cidr>()))
        .collect();
    parsed.into_iter().collect::<Option<_>>().map(Edit::Remove)
}

fn update(
    bad: &mut InvalidRequest,
    cidr: &str,
    label: Option<String>,
    expires_at: Option<prost_types::Timestamp>,
    clear_expires_at: bool,
) -> Option<Edit> {
    let cidr = bad.check("cidr", cidr.parse::<Cidr>());
    let label = match label {
        None => Some(None),
        Some(l) => bad.check("label", l.parse::<Label>()).map(Some),
    };
    let expires = match (expires_at, clear_expires_at) {
        (Some(_), true) => {
            bad.add(
                "clear_expires_at",
                "give either expires_at or clear_expires_at, not both",
            );
            None
        }
        (None, true) => Some(Some(None)),
        (ts, false) => {
            request::future(bad, "expires_at", ts, SystemTime::now()).map(|t| t.map(Some))
        }
    };
    if matches!((&label, &expires), (Some(None), Some(None))) {
        bad.add(
            "label",
            "nothing to change: give a label, expires_at or clear_expires_at",
        );
        return None;
    }
    Some(Edit::Update {
        cidr: cidr?,
        label: label?,
        expires_at: expires?,
    })
}
