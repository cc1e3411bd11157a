//! The door token of the enforcer's gRPC port (`--check-token`): the check
//! door and the ext_authz door both decide on a client address their caller
//! names, so both ask for it when it is set. Health and reflection never do.
//!
//! The presented token is hashed and compared in constant time with the
//! hash of the configured one.

use ipgate_shared::PresentedKey;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Status, metadata::MetadataMap};

/// SHA-256 of a door token. Comparing digests of equal length in constant
/// time tells a caller nothing about the token, not even its length.
#[derive(Clone)]
pub(crate) struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub(crate) fn of(token: &str) -> Self {
        TokenDigest(Sha256::digest(token.as_bytes()).into())
    }

    fn matches(&self, presented: &str) -> bool {
        TokenDigest::of(presented).0.ct_eq(&self.0).into()
    }
}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

/// Why a call to a door that decides was turned away before any decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DoorAuthError {
    /// No `authorization` metadata.
    #[error(
        "this check door needs a door token: send `authorization: Bearer <token>` metadata \
         (from Envoy: grpc_service.initial_metadata), with the token the enforcer was given \
         in --check-token"
    )]
    Missing,
    /// Not one `Bearer <token>`.
    #[error(
        "the `authorization` metadata is malformed: send one `authorization: Bearer <token>` \
         (the word Bearer, a space, then the token)"
    )]
    Malformed,
    /// Another token.
    #[error("the door token is not valid")]
    Wrong,
}

/// Checks the caller's door token against `expected`; anyone may call a
/// door without one.
pub(crate) fn authorize(
    metadata: &MetadataMap,
    expected: Option<&TokenDigest>,
) -> Result<(), DoorAuthError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let mut values = metadata.get_all("authorization").iter();
    let value = values.next().ok_or(DoorAuthError::Missing)?;
    // Two values would leave it open which one counts.
    if values.next().is_some() {
        return Err(DoorAuthError::Malformed);
    }
    let text = value.to_str().map_err(|_| DoorAuthError::Malformed)?;
    let token = PresentedKey::bearer(text)
        .filter(|t| !t.is_empty())
        .ok_or(DoorAuthError::Malformed)?;
    if expected.matches(token) {
        Ok(())
    } else {
        Err(DoorAuthError::Wrong)
    }
}

/// The one place a refused caller becomes a status, for every door that
/// asks for the token.
pub(crate) fn unauthenticated(error: DoorAuthError) -> Status {
    Status::unauthenticated(error.to_string())
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataValue;

    use super::*;

    #[test]
    fn door_tokens_are_required_only_when_configured() {
        let mut md = MetadataMap::new();
        assert_eq!(authorize(&md, None), Ok(()));
        let expected = TokenDigest::of("door-token-0123456789");
        assert_eq!(authorize(&md, Some(&expected)), Err(DoorAuthError::Missing));
        for (value, want) in [
            ("Bearer door-token-0123456789", Ok(())),
            ("bearer  door-token-0123456789 ", Ok(())),
            ("Bearer door-token-012345678", Err(DoorAuthError::Wrong)),
            ("Bearer door-token-0123456789x", Err(DoorAuthError::Wrong)),
            ("door-token-0123456789", Err(DoorAuthError::Malformed)),
            ("Basic door-token-0123456789", Err(DoorAuthError::Malformed)),
            ("Bearer ", Err(DoorAuthError::Malformed)),
        ] {
            md.insert("authorization", MetadataValue::from_static(value));
            assert_eq!(authorize(&md, Some(&expected)), want, "{value:?}");
        }
        md.insert(
            "authorization",
            MetadataValue::from_static("Bearer door-token-0123456789"),
        );
        md.append(
            "authorization",
            MetadataValue::from_static("Bearer door-token-0123456789"),
        );
        assert_eq!(
            authorize(&md, Some(&expected)),
            Err(DoorAuthError::Malformed)
        );
    }
}
