//! Bearer tokens: who is calling, and may they. Tokens are random strings
//! (`ipg_admin_…`, `ipg_enf_…`) stored only as SHA-256.

use rand::Rng;
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;

use crate::store::{Principal, Role, Store, StoreError, TenantId};

/// Start of generated admin tokens.
pub const ADMIN_TOKEN_PREFIX: &str = "ipg_admin_";
/// Start of generated enforcer tokens.
pub const ENFORCER_TOKEN_PREFIX: &str = "ipg_enf_";
/// Random base62 characters in a generated token (256 bits).
const TOKEN_RANDOM_CHARS: usize = 43;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Start of public token ids.
pub const TOKEN_ID_PREFIX: &str = "tok_";
/// Random characters of a public token id (`0-9a-z`).
const TOKEN_ID_CHARS: usize = 16;

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

/// A fresh token: `prefix` and 43 random base62 characters.
pub fn generate_token(prefix: &str) -> String {
    let mut rng = rand::rng();
    let mut token = String::with_capacity(prefix.len() + TOKEN_RANDOM_CHARS);
    token.push_str(prefix);
    for _ in 0..TOKEN_RANDOM_CHARS {
        token.push(char::from(BASE62[rng.random_range(0..BASE62.len())]));
    }
    token
}

/// A fresh public token id: `tok_` and 16 of `0-9a-z`.
pub fn generate_token_id() -> String {
    let mut rng = rand::rng();
    let mut id = String::with_capacity(TOKEN_ID_PREFIX.len() + TOKEN_ID_CHARS);
    id.push_str(TOKEN_ID_PREFIX);
    for _ in 0..TOKEN_ID_CHARS {
        // The lowercase half of BASE62 plus its digits.
        let i = rng.random_range(0..36);
        id.push(char::from(if i < 10 { BASE62[i] } else { BASE62[i + 26] }));
    }
    id
}

/// The SHA-256 a token is stored as.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The bearer token in `authorization` metadata, if any.
pub fn bearer(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    ipgate_shared::PresentedKey::bearer(value).filter(|token| !token.is_empty())
}

/// Finds the caller by its token and checks it may have `access`.
pub async fn authorize<S: Store>(
    store: &S,
    metadata: &MetadataMap,
    access: Access,
) -> Result<Principal, AuthError> {
    let token = bearer(metadata).ok_or(AuthError::Missing)?;
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
    fn generated_tokens_have_prefix_and_256_bits() {
        let token = generate_token(ADMIN_TOKEN_PREFIX);
        let random = token.strip_prefix(ADMIN_TOKEN_PREFIX).unwrap();
        assert_eq!(random.len(), 43);
        assert!(random.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(token, generate_token(ADMIN_TOKEN_PREFIX));
    }

    #[test]
    fn token_ids_are_short_and_lowercase() {
        let id = generate_token_id();
        let random = id.strip_prefix(TOKEN_ID_PREFIX).unwrap();
        assert_eq!(random.len(), 16);
        assert!(
            random
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        );
    }

    #[test]
    fn bearer_reads_the_authorization_header() {
        let mut md = MetadataMap::new();
        assert_eq!(bearer(&md), None);
        md.insert("authorization", MetadataValue::from_static("Bearer abc"));
        assert_eq!(bearer(&md), Some("abc"));
        md.insert("authorization", MetadataValue::from_static("bearer  abc "));
        assert_eq!(bearer(&md), Some("abc"));
        md.insert("authorization", MetadataValue::from_static("Basic abc"));
        assert_eq!(bearer(&md), None);
        md.insert("authorization", MetadataValue::from_static("Bearer "));
        assert_eq!(bearer(&md), None);
    }
}
