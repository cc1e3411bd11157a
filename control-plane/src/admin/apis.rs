//! APIs: `CreateApi`, `GetApi`, `ListApis`, `UpdateApi`, `DeleteApi`.

use std::time::SystemTime;

use ipgate_shared::{ApiSlug, proto::admin::v1 as admin};

use super::{
    response,
    service::{AdminApi, committed},
};
use crate::{
    invalid::InvalidRequest,
    page,
    request::{self, MAX_NAME_CHARS, nonempty},
    status::RpcError,
    store::{ApiChanges, ApiFilter, Expected, NewApi, Principal, StoreError, WriteCtx},
};

pub async fn create(
    api: &AdminApi,
    caller: &Principal,
    req: admin::CreateApiRequest,
) -> Result<admin::Api, RpcError> {
    let admin::CreateApiRequest {
        wait_for_propagation: _,
        slug,
        name,
        routes,
        validate_only,
    } = req;
    let mut bad = InvalidRequest::default();
    let slug = bad.check("slug", slug.parse::<ApiSlug>());
    let name = bad.check("name", request::text(&name, MAX_NAME_CHARS));
    let routes = request::routes(&mut bad, "routes", routes);
    let new = bad.or_value(|| {
        let slug = slug?;
        Some(NewApi {
            name: nonempty(name?).unwrap_or_else(|| slug.to_string()),
            slug,
            routes: routes?,
        })
    })?;
    let ctx = WriteCtx::by(caller, validate_only);
    let record = api.store.create_api(&ctx, new).await?;
    committed(record.revision, validate_only);
    Ok(response::api(&record))
}

pub async fn get(
    api: &AdminApi,
    caller: &Principal,
    req: admin::GetApiRequest,
) -> Result<admin::Api, RpcError> {
    let admin::GetApiRequest { slug } = req;
    let slug = parse_slug(&slug)?;
    let record = api
        .store
        .api(caller.tenant, &slug, SystemTime::now())
        .await?
        .ok_or_else(|| StoreError::ApiNotFound(slug.to_string()))?;
    Ok(response::api(&record))
}

pub async fn list(
    api: &AdminApi,
    caller: &Principal,
    req: admin::ListApisRequest,
) -> Result<admin::ListApisResponse, RpcError> {
    let admin::ListApisRequest {
        status,
        page_size,
        page_token,
    } = req;
    let mut bad = InvalidRequest::default();
    let enabled = match admin::ApiStatus::try_from(status) {
        Ok(admin::ApiStatus::Unspecified) => Some(None),
        Ok(admin::ApiStatus::Active) => Some(Some(true)),
        Ok(admin::ApiStatus::Disabled) => Some(Some(false)),
        Err(_) => {
            bad.add("status", format!("{status} is not an API status"));
            None
        }
    };
    let size = request::page_size(&mut bad, page_size);
    let after = match page_token.as_str() {
        "" => Some(None),
        token => bad.check(
            "page_token",
            page::decode(page::Kind::Apis, token).and_then(|b| {
                let slug = String::from_utf8(b).map_err(|_| page::BAD_TOKEN)?;
                slug.parse::<ApiSlug>()
                    .map(Some)
                    .map_err(|_| page::BAD_TOKEN)
            }),
        ),
    };
    let (enabled, size, after) = bad.or_value(|| Some((enabled?, size?, after?)))?;
    let filter = ApiFilter { enabled };
    let mut rows = api
        .store
        .apis(
            caller.tenant,
            &filter,
            after.as_ref(),
            size + 1,
            SystemTime::now(),
        )
        .await?;
    let more = rows.len() > size as usize;
    rows.truncate(size as usize);
    let next_page_token = match rows.last() {
        Some(last) if more => page::encode(page::Kind::Apis, last.config.slug.as_str().as_bytes()),
        _ => String::new(),
    };
    Ok(admin::ListApisResponse {
        apis: rows.iter().map(response::api).collect(),
        next_page_token,
    })
}

pub async fn update(
    api: &AdminApi,
    caller: &Principal,
    req: admin::UpdateApiRequest,
) -> Result<admin::Api, RpcError> {
    let admin::UpdateApiRequest {
        wait_for_propagation: _,
        slug,
        name,
        status,
        routes,
        etag,
        validate_only,
    } = req;
    let mut bad = InvalidRequest::default();
    let slug = bad.check("slug", slug.parse::<ApiSlug>());
    let name = match name {
        None => Some(None),
        Some(n) => bad
            .check("name", request::text(&n, MAX_NAME_CHARS))
            .map(|n| Some(nonempty(n))),
    };
    let enabled = match admin::ApiStatus::try_from(status) {
        Ok(admin::ApiStatus::Unspecified) => Some(None),
        Ok(admin::ApiStatus::Active) => Some(Some(true)),
        Ok(admin::ApiStatus::Disabled) => Some(Some(false)),
        Err(_) => {
            bad.add("status", format!("{status} is not an API status"));
            None
        }
    };
    let routes = match routes {
        None => Some(None),
        Some(admin::RouteRules { rules }) => {
            request::routes(&mut bad, "routes.rules", rules).map(Some)
        }
    };
    let expected = request::etag(&mut bad, &etag);
    let (slug, name, enabled, routes, expected) =
        bad.or_value(|| Some((slug?, name?, enabled?, routes?, expected?)))?;
    // A write that changes nothing would still take a revision and reach
    // every enforcer: refuse it, as entry updates do.
    if name.is_none() && enabled.is_none() && routes.is_none() {
        return Err(InvalidRequest::field(
            "name",
            "nothing to change: give a name, a status or routes",
        )
        .into());
    }
    let changes = ApiChanges {
        // An emptied name falls back to the slug, as at creation.
        name: name.map(|n| n.unwrap_or_else(|| slug.to_string())),
        enabled,
        routes,
    };
    let ctx = WriteCtx::by(caller, validate_only);
    let record = api.store.update_api(&ctx, &slug, changes, expected).await?;
    committed(record.revision, validate_only);
    Ok(response::api(&record))
}

pub async fn delete(
    api: &AdminApi,
    caller: &Principal,
    req: admin::DeleteApiRequest,
) -> Result<admin::DeleteApiResponse, RpcError> {
    let admin::DeleteApiRequest {
        wait_for_propagation: _,
        slug,
        etag,
        force,
        validate_only,
    } = req;
    let mut bad = InvalidRequest::default();
    let slug = bad.check("slug", slug.parse::<ApiSlug>());
    let expected: Option<Expected> = request::etag(&mut bad, &etag);
    let (slug, expected) = bad.or_value(|| Some((slug?, expected?)))?;
    let ctx = WriteCtx::by(caller, validate_only);
    let deleted = api.store.delete_api(&ctx, &slug, expected, force).await?;
    committed(deleted.revision, validate_only);
    Ok(admin::DeleteApiResponse {
        propagation: None,
        api: Some(response::api(&deleted.api)),
        revoked_key_ids: deleted
            .revoked_keys
            .iter()
            .map(ToString::to_string)
            .collect(),
        revision: deleted.revision.get(),
    })
}

/// A slug named by a request's `field`.
pub fn parse_slug(slug: &str) -> Result<ApiSlug, InvalidRequest> {
    slug.parse().map_err(|e| InvalidRequest::field("slug", e))
}
