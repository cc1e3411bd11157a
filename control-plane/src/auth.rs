//! Bearer tokens on admin and sync calls: who is calling, and may they.

use tonic::metadata::MetadataMap;

use crate::{
    store::{Principal, Role, Store, StoreError, TenantId},
    tokens::token_hash,
};

/// What a call needs its caller to be allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read admin objects: any admin role.
    Read,
    /// Change APIs, keys and allowlists: owner or editor.
    Write,
    /// Manage tokens: owner.
    Own,
    /// Manage tenants: an owner of the default tenant.
    Operate,
    /// Sync and report usage: enforcer tokens only.
    Enforce,
}

/// Why a caller was turned away.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing `authorization: Bearer <token>` metadata")]
    Missing,
    #[error(
        "the `authorization` metadata is malformed: send `authorization: Bearer <token>` (the word Bearer, a space, then the token)"
    )]
    Malformed,
    #[error("the bearer token is not valid")]
    Unknown,
    #[error("{role} tokens may not {what}")]
    Forbidden {
        role: &'static str,
        what: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The bearer token in `authorization` metadata: `Missing` without the
/// metadata, `Malformed` when it is not `Bearer <token>`.
pub fn bearer(metadata: &MetadataMap) -> Result<&str, AuthError> {
    let value = metadata.get("authorization").ok_or(AuthError::Missing)?;
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    ipgate_shared::PresentedKey::bearer(value)
        .filter(|token| !token.is_empty())
        .ok_or(AuthError::Malformed)
}

/// Finds the caller by its token and checks it may have `access`.
pub async fn authorize(
    store: &Store,
    metadata: &MetadataMap,
    access: Access,
) -> Result<Principal, AuthError> {
    let token = bearer(metadata)?;
    let principal = store
        .token(token_hash(token))
        .await?
        .ok_or(AuthError::Unknown)?;
    let allowed = match access {
        Access::Read => matches!(principal.role, Role::Owner | Role::Editor | Role::Viewer),
        Access::Write => matches!(principal.role, Role::Owner | Role::Editor),
        Access::Own => principal.role == Role::Owner,
        Access::Operate => principal.role == Role::Owner && principal.tenant == TenantId::DEFAULT,
        Access::Enforce => principal.role == Role::Enforcer,
    };
    if allowed {
        Ok(principal)
    } else {
        Err(AuthError::Forbidden {
            role: principal.role.as_str(),
            what: match access {
                Access::Read => "call the admin API",
                Access::Write => "change APIs, keys or allowlists",
                Access::Own => "manage tokens (owner tokens only)",
                Access::Operate => "manage tenants (owner tokens of the default tenant only)",
                Access::Enforce => "sync or report usage events",
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataValue;

    use super::*;

    #[test]
    fn bearer_reads_the_authorization_header() {
        let mut md = MetadataMap::new();
        assert!(matches!(bearer(&md), Err(AuthError::Missing)));
        md.insert("authorization", MetadataValue::from_static("Bearer abc"));
        assert_eq!(bearer(&md).ok(), Some("abc"));
        md.insert("authorization", MetadataValue::from_static("bearer  abc "));
        assert_eq!(bearer(&md).ok(), Some("abc"));
        for malformed in ["Basic abc", "Bearer ", "abc", "ipg_admin_abc"] {
            md.insert("authorization", MetadataValue::from_static(malformed));
            assert!(
                matches!(bearer(&md), Err(AuthError::Malformed)),
                "{malformed}"
            );
        }
    }
}
