//! Tenants: `CreateTenant` and `ListTenants`, for owners of the default tenant.

use ipgate_shared::proto::admin::v1 as admin;

use super::{response, service::AdminApi, tokens::new_token};
use crate::{
    invalid::InvalidRequest,
    request::{self, MAX_NAME_CHARS, nonempty},
    status::RpcError,
    store::{NewTenant, Principal, Role, WriteCtx},
};

/// Longest tenant id.
const MAX_TENANT_ID: usize = 63;

pub async fn create(
    api: &AdminApi,
    caller: &Principal,
    req: admin::CreateTenantRequest,
) -> Result<admin::CreateTenantResponse, RpcError> {
    let admin::CreateTenantRequest {
        id,
        name,
        owner_token_name,
        validate_only,
    } = req;
    let mut bad = InvalidRequest::default();
    let id = bad.check("id", tenant_id(&id));
    let name = bad.check("name", request::text(&name, MAX_NAME_CHARS));
    let owner_name = bad.check(
        "owner_token_name",
        request::text(&owner_token_name, MAX_NAME_CHARS),
    );
    let (id, name, owner_name) = bad.or_value(|| Some((id?, name?, owner_name?)))?;
    let tenant = NewTenant {
        name: nonempty(name).unwrap_or_else(|| id.clone()),
        id,
    };
    let (secret, owner) = new_token(
        Role::Owner,
        nonempty(owner_name).unwrap_or_else(|| "owner".to_owned()),
    );
    let ctx = WriteCtx::by(caller, validate_only);
    let (tenant, token) = api.store.create_tenant(&ctx, tenant, owner).await?;
    Ok(admin::CreateTenantResponse {
        tenant: Some(response::tenant(&tenant)),
        owner_token: Some(response::token(&token)),
        owner_secret: if validate_only { String::new() } else { secret },
    })
}

pub async fn list(
    api: &AdminApi,
    req: admin::ListTenantsRequest,
) -> Result<admin::ListTenantsResponse, RpcError> {
    let admin::ListTenantsRequest {} = req;
    let tenants = api.store.tenants().await?;
    Ok(admin::ListTenantsResponse {
        tenants: tenants.iter().map(response::tenant).collect(),
    })
}

/// A tenant id: 1-63 of `a-z`, `0-9` and `-`, starting with a letter or digit.
fn tenant_id(id: &str) -> Result<String, String> {
    let ok = (1..=MAX_TENANT_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-');
    if ok {
        Ok(id.to_owned())
    } else {
        Err(format!(
            "{id:?} is not a tenant id: use 1-63 lowercase letters, digits and '-', starting with a letter or digit"
        ))
    }
}
