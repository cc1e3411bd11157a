//! Errors as gRPC statuses: every RPC error of the control plane becomes a
//! `tonic::Status` in exactly one function, [`status`].

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::{
    allowlists::{Lockout, plural},
    auth::AuthError,
    invalid::InvalidRequest,
    store::StoreError,
    time_format::rfc3339,
};

/// `ErrorInfo.reason` of a write refused for locking out active callers.
pub const LOCKOUT_RISK: &str = "LOCKOUT_RISK";
/// `ErrorInfo.domain` of ipgate's errors.
pub const ERROR_DOMAIN: &str = "ipgate";

/// Everything an RPC of the control plane can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Unavailable(String),
}

/// The status an error is answered with.
pub fn status(error: RpcError) -> Status {
    match error {
        RpcError::Auth(AuthError::Missing | AuthError::Malformed | AuthError::Unknown) => {
            Status::unauthenticated(error.to_string())
        }
        RpcError::Auth(AuthError::Forbidden { .. }) => Status::permission_denied(error.to_string()),
        RpcError::Auth(AuthError::Store(e)) | RpcError::Store(e) => store_status(e),
        RpcError::Invalid(invalid) => {
            let violations: Vec<FieldViolation> = invalid
                .detailed()
                .iter()
                .map(|f| FieldViolation::new(f.field.clone(), f.description.clone()))
                .collect();
            Status::with_error_details(
                Code::InvalidArgument,
                invalid.to_string(),
                ErrorDetails::with_bad_request(violations),
            )
        }
        RpcError::Unavailable(message) => Status::unavailable(message),
    }
}

fn store_status(error: StoreError) -> Status {
    match error {
        StoreError::ApiExists(_) | StoreError::TenantExists(_) => {
            Status::already_exists(error.to_string())
        }
        StoreError::ApiNotFound(_) | StoreError::KeyNotFound(_) | StoreError::TokenNotFound(_) => {
            Status::not_found(error.to_string())
        }
        StoreError::StaleEtag(_) | StoreError::Contended(_) => Status::aborted(error.to_string()),
        StoreError::ApiHasActiveKeys { .. }
        | StoreError::KeyRevoked(_)
        | StoreError::TokenRevoked(_)
        | StoreError::LastOwner(_)
        | StoreError::Unchanged => Status::failed_precondition(error.to_string()),
        StoreError::LockoutRisk(lockout) => lockout_status(&lockout),
        StoreError::Invalid(invalid) => status(RpcError::Invalid(invalid)),
        StoreError::Database(
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_),
        ) => {
            tracing::warn!(%error, "database unavailable");
            Status::unavailable("the database is unavailable; retry shortly")
        }
        StoreError::TokenRoleConflict { .. } | StoreError::Corrupt(_) | StoreError::Database(_) => {
            tracing::error!(%error, "internal error");
            Status::internal("internal error; the control plane's log says more")
        }
    }
}

/// FAILED_PRECONDITION for a write that would block active callers: an
/// `ErrorInfo` (reason `LOCKOUT_RISK`, the addresses and their total in its
/// metadata) and one `PreconditionFailure` violation per listed address.
fn lockout_status(lockout: &Lockout) -> Status {
    let addresses: Vec<String> = lockout.callers.iter().map(|c| c.ip.to_string()).collect();
    let metadata = HashMap::from([
        ("addresses".to_owned(), addresses.join(",")),
        ("total".to_owned(), lockout.total.to_string()),
    ]);
    let mut details = ErrorDetails::with_error_info(LOCKOUT_RISK, ERROR_DOMAIN, metadata);
    for caller in &lockout.callers {
        details.add_precondition_failure_violation(
            LOCKOUT_RISK,
            caller.ip.to_string(),
            format!(
                "{} made {} in the last 24 hours, the last at {}; the change would block it",
                caller.ip,
                plural(caller.requests, "allowed request", "allowed requests"),
                rfc3339(caller.last_seen)
            ),
        );
    }
    Status::with_error_details(Code::FailedPrecondition, lockout.message(), details)
}

impl From<RpcError> for Status {
    fn from(error: RpcError) -> Status {
        status(error)
    }
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Status {
        status(error.into())
    }
}

impl From<InvalidRequest> for Status {
    fn from(error: InvalidRequest) -> Status {
        status(error.into())
    }
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Status {
        status(error.into())
    }
}
