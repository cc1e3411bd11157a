//! API keys: `CreateApiKey`, `GetApiKey`, `ListApiKeys`, `UpdateApiKey`,
//! `RevokeApiKey`, `RotateApiKey`. Secrets are made here, shown once in the
//! response, and stored only as hashes.

use std::time::{Duration, SystemTime};

use ipgate_shared::{
    ApiSlug, KeyConfig, KeyId, SecretHash, key::NewKey as GeneratedKey, proto::admin::v1 as admin,
    time,
};
use tracing::Span;

use super::{
    response,
    service::{AdminApi, committed},
};
use crate::{
    invalid::InvalidRequest,
    page,
    request::{self, MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, nonempty},
    status::RpcError,
    store::{
        KeyChanges, KeyCursor, KeyFilter, KeyStatus, NewKey, Principal, Rotation, StoreError,
        WriteCtx,
    },
};

/// Longest grace period a rotation may give the old secret.
pub const MAX_GRACE: Duration = Duration::from_secs(30 * 86_400);

pub async fn create(
    api: &AdminApi,
    caller: &Principal,
    req: admin::CreateApiKeyRequest,
) -> Result<admin::CreateApiKeyResponse, RpcError> {
    let admin::CreateApiKeyRequest {
        wait_for_propagation: _,
        api: slug,
        name,
        description,
        scopes,
        expires_at,
        allowlist,
        validate_only,
    } = req;
    let now = SystemTime::now();
    let mut bad = InvalidRequest::default();
    let slug = bad.check("api", slug.parse::<ApiSlug>());
    let name = bad.check("name", request::text(&name, MAX_NAME_CHARS));
    let description = bad.check(
        "description",
        request::text(&description, MAX_DESCRIPTION_CHARS),
    );
    let scopes = request::scopes(&mut bad, "scopes", &scopes);
    let expires_at = request::future(&mut bad, "expires_at", expires_at, now);
    let allowlist = request::allowlist(&mut bad, "allowlist", allowlist, api.key_rules, now);
    let generated = GeneratedKey::generate();
    let key = bad.or_value(|| {
        Some(NewKey {
            name: name?,
            description: description?,
            config: KeyConfig {
                id: generated.id,
                api: slug?,
                secret_hash: SecretHash::of(&generated.secret),
                scopes: scopes?,
                expires_at: expires_at?,
                allowlist: allowlist?,
                previous_secrets: Vec::new(),
            },
        })
    })?;
    Span::current().record("key", generated.id.as_str());
    let ctx = WriteCtx::by(caller, validate_only);
    let record = api.store.create_key(&ctx, key).await?;
    committed(record.revision, validate_only);
    Ok(admin::CreateApiKeyResponse {
        propagation: None,
        key: Some(response::api_key(&record, ctx.now)),
        secret: shown_once(generated.secret, validate_only),
    })
}

pub async fn get(
    api: &AdminApi,
    caller: &Principal,
    req: admin::GetApiKeyRequest,
) -> Result<admin::ApiKey, RpcError> {
    let admin::GetApiKeyRequest { id } = req;
    let id = parse_id(&id)?;
    let record = api
        .store
        .key(caller.tenant, &id)
        .await?
        .ok_or_else(|| StoreError::KeyNotFound(id.to_string()))?;
    Ok(response::api_key(&record, SystemTime::now()))
}

pub async fn list(
    api: &AdminApi,
    caller: &Principal,
    req: admin::ListApiKeysRequest,
) -> Result<admin::ListApiKeysResponse, RpcError> {
    let admin::ListApiKeysRequest {
        api: slug,
        name_contains,
        status,
        has_allowlist,
        page_size,
        page_token,
    } = req;
    let mut bad = InvalidRequest::default();
    let slug = match nonempty(slug) {
        None => Some(None),
        Some(s) => bad.check("api", s.parse::<ApiSlug>()).map(Some),
    };
    let name_contains = bad
        .check(
            "name_contains",
            request::text(&name_contains, MAX_NAME_CHARS),
        )
        .map(nonempty);
    let status = match admin::ApiKeyStatus::try_from(status) {
        Ok(admin::ApiKeyStatus::Unspecified) => Some(None),
        Ok(admin::ApiKeyStatus::Active) => Some(Some(KeyStatus::Active)),
        Ok(admin::ApiKeyStatus::Revoked) => Some(Some(KeyStatus::Revoked)),
        Ok(admin::ApiKeyStatus::Expired) => Some(Some(KeyStatus::Expired)),
        Err(_) => {
            bad.add("status", format!("{status} is not an API key status"));
            None
        }
    };
    let size = request::page_size(&mut bad, page_size);
    let after = match page_token.as_str() {
        "" => Some(None),
        token => bad.check("page_token", decode_cursor(token).map(Some)),
    };
    let (api_slug, name_contains, status, size, after) =
        bad.or_value(|| Some((slug?, name_contains?, status?, size?, after?)))?;
    let filter = KeyFilter {
        api: api_slug,
        name_contains,
        status,
        has_allowlist,
    };
    let now = SystemTime::now();
    let mut rows = api
        .store
        .keys(caller.tenant, &filter, after, size + 1, now)
        .await?;
    let more = rows.len() > size as usize;
    rows.truncate(size as usize);
    let next_page_token = match rows.last() {
        Some(last) if more => encode_cursor(KeyCursor {
            created_ms: time::to_millis(last.created_at),
            id: last.config.id,
        }),
        _ => String::new(),
    };
    Ok(admin::ListApiKeysResponse {
        keys: rows.iter().map(|r| response::api_key(r, now)).collect(),
        next_page_token,
    })
}

pub async fn update(
    api: &AdminApi,
    caller: &Principal,
    req: admin::UpdateApiKeyRequest,
) -> Result<admin::ApiKey, RpcError> {
    let admin::UpdateApiKeyRequest {
        wait_for_propagation: _,
        id,
        name,
        description,
        scopes,
        etag,
        validate_only,
    } = req;
    let mut bad = InvalidRequest::default();
    let id = bad.check("id", id.parse::<KeyId>());
    let name = match name {
        None => Some(None),
        Some(n) => bad
            .check("name", request::text(&n, MAX_NAME_CHARS))
            .map(Some),
    };
    let description = match description {
        None => Some(None),
        Some(d) => bad
            .check("description", request::text(&d, MAX_DESCRIPTION_CHARS))
            .map(Some),
    };
    let scopes = match scopes {
        None => Some(None),
        Some(admin::Scopes { scopes }) => {
            request::scopes(&mut bad, "scopes.scopes", &scopes).map(Some)
        }
    };
    let expected = request::etag(&mut bad, &etag);
    let (id, name, description, scopes, expected) =
        bad.or_value(|| Some((id?, name?, description?, scopes?, expected?)))?;
    // A write that changes nothing would still take a revision and reach
    // every enforcer: refuse it, as entry updates do.
    if name.is_none() && description.is_none() && scopes.is_none() {
        return Err(InvalidRequest::field(
            "name",
            "nothing to change: give a name, a description or scopes",
        )
        .into());
    }
    let changes = KeyChanges {
        name,
        description,
        scopes,
    };
    let ctx = WriteCtx::by(caller, validate_only);
    let record = api.store.update_key(&ctx, &id, changes, expected).await?;
    committed(record.revision, validate_only);
    Ok(response::api_key(&record, ctx.now))
}

pub async fn revoke(
    api: &AdminApi,
    caller: &Principal,
    req: admin::RevokeApiKeyRequest,
) -> Result<admin::ApiKey, RpcError> {
    let admin::RevokeApiKeyRequest {
        wait_for_propagation: _,
        id,
        etag,
        validate_only,
    } = req;
    let mut bad = InvalidRequest::default();
    let id = bad.check("id", id.parse::<KeyId>());
    let expected = request::etag(&mut bad, &etag);
    let (id, expected) = bad.or_value(|| Some((id?, expected?)))?;
    let ctx = WriteCtx::by(caller, validate_only);
    let record = api.store.revoke_key(&ctx, &id, expected).await?;
    committed(record.revision, validate_only);
    Ok(response::api_key(&record, ctx.now))
}

pub async fn rotate(
    api: &AdminApi,
    caller: &Principal,
    req: admin::RotateApiKeyRequest,
) -> Result<admin::RotateApiKeyResponse, RpcError> {
    let admin::RotateApiKeyRequest {
        wait_for_propagation: _,
        id,
        grace_period,
        etag,
        validate_only,
    } = req;
    let mut bad = InvalidRequest::default();
    let id = bad.check("id", id.parse::<KeyId>());
    let grace = match grace_period {
        None => Some(Duration::ZERO),
        Some(d) => bad.check(
            "grace_period",
            Duration::try_from(d)
                .ok()
                .filter(|d| *d <= MAX_GRACE)
                .ok_or("give a grace period from 0 to 30 days (720h)"),
        ),
    };
    let expected = request::etag(&mut bad, &etag);
    let (id, grace, expected) = bad.or_value(|| Some((id?, grace?, expected?)))?;
    let generated = GeneratedKey::with_id(id);
    let rotation = Rotation {
        secret_hash: SecretHash::of(&generated.secret),
        grace,
    };
    let ctx = WriteCtx::by(caller, validate_only);
    let record = api.store.rotate_key(&ctx, &id, rotation, expected).await?;
    committed(record.revision, validate_only);
    Ok(admin::RotateApiKeyResponse {
        propagation: None,
        key: Some(response::api_key(&record, ctx.now)),
        secret: shown_once(generated.secret, validate_only),
    })
}

/// A key id named by a request's `id`.
pub fn parse_id(id: &str) -> Result<KeyId, InvalidRequest> {
    id.parse().map_err(|e| InvalidRequest::field("id", e))
}

/// The secret for the response: nothing was stored on a dry run, so there
/// is no secret to show.
fn shown_once(secret: String, validate_only: bool) -> String {
    if validate_only { String::new() } else { secret }
}

fn encode_cursor(cursor: KeyCursor) -> String {
    let mut payload = page::int(cursor.created_ms).to_vec();
    payload.extend_from_slice(cursor.id.as_str().as_bytes());
    page::encode(page::Kind::Keys, &payload)
}

fn decode_cursor(token: &str) -> Result<KeyCursor, &'static str> {
    let payload = page::decode(page::Kind::Keys, token)?;
    let (created_ms, rest) = page::take_int(&payload)?;
    let id = std::str::from_utf8(rest)
        .ok()
        .and_then(|s| s.parse::<KeyId>().ok())
        .ok_or(page::BAD_TOKEN)?;
    Ok(KeyCursor { created_ms, id })
}
