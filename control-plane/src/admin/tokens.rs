//! Tokens: `CreateToken`, `ListTokens`, `RevokeToken`, for owners. Secrets
//! are made here, shown once, and stored only as SHA-256.

use ipgate_shared::proto::admin::v1 as admin;

use super::{response, service::AdminApi};
use crate::{
    invalid::InvalidRequest,
    request::{self, MAX_NAME_CHARS, nonempty},
    status::RpcError,
    store::{NewToken, Principal, Role, WriteCtx},
    tokens::{ADMIN_TOKEN_PREFIX, ENFORCER_TOKEN_PREFIX, generate_token, token_hash},
};

pub async fn create(
    api: &AdminApi,
    caller: &Principal,
    req: admin::CreateTokenRequest,
) -> Result<admin::CreateTokenResponse, RpcError> {
    let admin::CreateTokenRequest {
        name,
        role,
        validate_only,
    } = req;
    let mut bad = InvalidRequest::default();
    let name = bad.check("name", request::text(&name, MAX_NAME_CHARS));
    let role = bad.check(
        "role",
        match admin::TokenRole::try_from(role) {
            Ok(admin::TokenRole::Viewer) => Ok(Role::Viewer),
            Ok(admin::TokenRole::Editor) => Ok(Role::Editor),
            Ok(admin::TokenRole::Owner) => Ok(Role::Owner),
            Ok(admin::TokenRole::Enforcer) => Ok(Role::Enforcer),
            Ok(admin::TokenRole::Unspecified) | Err(_) => {
                Err("give a role: TOKEN_ROLE_VIEWER, _EDITOR, _OWNER or _ENFORCER")
            }
        },
    );
    let (name, role) = bad.or_value(|| Some((name?, role?)))?;
    let name = nonempty(name).unwrap_or_else(|| format!("{} token", role.as_str()));
    let (secret, token) = new_token(role, name);
    let ctx = WriteCtx::by(caller, validate_only);
    let record = api.store.create_token(&ctx, token).await?;
    Ok(admin::CreateTokenResponse {
        token: Some(response::token(&record)),
        secret: if validate_only { String::new() } else { secret },
    })
}

pub async fn list(
    api: &AdminApi,
    caller: &Principal,
    req: admin::ListTokensRequest,
) -> Result<admin::ListTokensResponse, RpcError> {
    let admin::ListTokensRequest { include_revoked } = req;
    let tokens = api.store.tokens(caller.tenant, include_revoked).await?;
    Ok(admin::ListTokensResponse {
        tokens: tokens.iter().map(response::token).collect(),
    })
}

pub async fn revoke(
    api: &AdminApi,
    caller: &Principal,
    req: admin::RevokeTokenRequest,
) -> Result<admin::Token, RpcError> {
    let admin::RevokeTokenRequest { id, validate_only } = req;
    if id.trim().is_empty() {
        return Err(
            InvalidRequest::field("id", "give the id of the token to revoke (tok_…)").into(),
        );
    }
    let ctx = WriteCtx::by(caller, validate_only);
    let record = api.store.revoke_token(&ctx, id.trim()).await?;
    Ok(response::token(&record))
}

/// A fresh secret for `role` and the token to store: its hash only.
pub fn new_token(role: Role, name: String) -> (String, NewToken) {
    let prefix = match role {
        Role::Enforcer => ENFORCER_TOKEN_PREFIX,
        Role::Owner | Role::Editor | Role::Viewer => ADMIN_TOKEN_PREFIX,
    };
    let secret = generate_token(prefix);
    let token = NewToken {
        name,
        role,
        sha256: token_hash(&secret),
    };
    (secret, token)
}
