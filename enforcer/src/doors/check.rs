//! The gRPC door: `ipgate.check.v1.CheckService/Check`, served on the same
//! port as reflection (v1 and v1alpha) and `grpc.health.v1`.
//!
//! A Check caller names the client address itself, so whoever may call it
//! can have any address decided on. With a door token (`--check-token`)
//! every call must carry `authorization: Bearer <token>`, compared in
//! constant time ([`super::token`]); without one, the enforcer listens on
//! loopback only (see [`crate::server`]). Reflection and health never ask
//! for the token.

use std::sync::Arc;

use ipgate_shared::{
    ClientIpSource, Door, PresentedKey,
    proto::check::v1::{
        CheckRequest, CheckResponse,
        check_service_server::{CheckService, CheckServiceServer},
    },
};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::debug_span;

use super::token::{TokenDigest, authorize, unauthenticated};
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
            request_id: outcome.request_id.to_string(),
            client_ip: outcome.client_ip.to_string(),
            matched_label: outcome.matched_label.to_string(),
        }))
    }
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
