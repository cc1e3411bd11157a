//! The gRPC door: `ipgate.check.v1.CheckService/Check`, served on the same
//! port as reflection (v1 and v1alpha) and `grpc.health.v1`.
//!
//! A Check caller names the client address itself, so whoever may call it
//! can have any address decided on. With a door token (`--check-token`)
//! every call must carry `authorization: Bearer <token>`, compared in
//! constant time; without one, the enforcer listens on loopback only (see
//! [`crate::server`]). Reflection and health never ask for the token.

use std::sync::Arc;

use ipgate_shared::{
    ClientIpSource, Door, PresentedKey,
    proto::check::v1::{
        CheckRequest, CheckResponse,
        check_service_server::{CheckService, CheckServiceServer},
    },
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Code, Request, Response, Status, metadata::MetadataMap};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::debug_span;

use crate::{
    client_ip::{self, ClientIpError},
    config::CheckToken,
    state::{DecisionInput, Enforcer},
};

/// Answers `Check` calls from the shared index.
#[derive(Clone, Debug)]
pub struct CheckDoor {
    enforcer: Arc<Enforcer>,
    token: Option<TokenDigest>,
}

impl CheckDoor {
    /// The door, ready to add to a tonic server; with `token`, every call
    /// must present it.
    pub fn server(
        enforcer: Arc<Enforcer>,
        token: Option<&CheckToken>,
    ) -> CheckServiceServer<CheckDoor> {
        CheckServiceServer::new(CheckDoor {
            enforcer,
            token: token.map(|t| TokenDigest::of(t.expose())),
        })
    }
}

/// SHA-256 of a door token. Comparing digests of equal length in constant
/// time tells a caller nothing about the token, not even its length.
#[derive(Clone)]
struct TokenDigest([u8; 32]);

impl TokenDigest {
    fn of(token: &str) -> Self {
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

/// Why a Check call was turned away before any decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DoorAuthError {
    #[error(
        "this check door needs a door token: send `authorization: Bearer <token>` metadata, \
         with the token the enforcer was given in --check-token"
    )]
    Missing,
    #[error(
        "the `authorization` metadata is malformed: send one `authorization: Bearer <token>` \
         (the word Bearer, a space, then the token)"
    )]
    Malformed,
    #[error("the door token is not valid")]
    Wrong,
}

/// Checks the caller's door token against `expected`; anyone may call a
/// door without one.
fn authorize(metadata: &MetadataMap, expected: Option<&TokenDigest>) -> Result<(), DoorAuthError> {
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

#[tonic::async_trait]
impl CheckService for CheckDoor {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        // Before anything is decided: a refused caller leaves no usage event.
        authorize(request.metadata(), self.token.as_ref()).map_err(unauthenticated)?;
        let CheckRequest {
            api,
            api_key,
            client_ip,
            method,
            path,
            request_id,
        } = request.into_inner();
        let span = debug_span!("check", api = %api, method = %method);
        let _entered = span.enter();
        let ip = client_ip::parse(&client_ip).map_err(invalid_client_ip)?;
        let key = if api_key.is_empty() {
            PresentedKey::Missing
        } else {
            PresentedKey::One(&api_key)
        };
        let outcome = self.enforcer.decide(DecisionInput {
            door: Door::Check,
            api: &api,
            key,
            client_ip: ip,
            // The caller named the address; the door cannot know where the
            // caller found it.
            client_ip_source: ClientIpSource::Named,
            method: &method,
            path: &path,
            request_id: Some(&request_id),
        });
        Ok(Response::new(CheckResponse {
            allowed: outcome.allowed(),
            http_status: u32::from(outcome.status),
            error_code: outcome.error_code().unwrap_or_default().to_owned(),
            body: outcome.body.unwrap_or_default().to_owned(),
            reason: outcome.reason.as_str().to_owned(),
            request_id: outcome.request_id,
            client_ip: outcome.client_ip,
            matched_label: outcome.matched_label,
        }))
    }
}

/// The one place this door maps a refused caller to a status.
fn unauthenticated(error: DoorAuthError) -> Status {
    Status::unauthenticated(error.to_string())
}

/// The one place this door maps an input error to a status.
fn invalid_client_ip(error: ClientIpError) -> Status {
    let message = error.to_string();
    Status::with_error_details(
        Code::InvalidArgument,
        message.clone(),
        ErrorDetails::with_bad_request_violation("client_ip", message),
    )
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
