//! [`AdminApi`]: what every admin RPC works with (the store, the registry of
//! connected enforcers, the allowlist rules), and the steps they share.

use std::sync::Arc;

use ipgate_shared::{ListRules, Revision};
use tonic::{Request, Response, Status};
use tracing::Span;

use crate::{
    auth::{Access, authorize},
    status::RpcError,
    store::{Principal, Store},
    sync::Registry,
};

/// The admin service.
pub struct AdminApi {
    pub(super) store: Arc<Store>,
    pub(super) registry: Arc<Registry>,
    pub(super) key_rules: ListRules,
    pub(super) api_rules: ListRules,
}

impl AdminApi {
    /// A service validating lists with these rules.
    pub fn new(
        store: Arc<Store>,
        registry: Arc<Registry>,
        key_rules: ListRules,
        api_rules: ListRules,
    ) -> Self {
        AdminApi {
            store,
            registry,
            key_rules,
            api_rules,
        }
    }

    /// The caller, if it may have `access`, and the request's message.
    pub(super) async fn call<T>(
        &self,
        request: Request<T>,
        access: Access,
    ) -> Result<(Principal, T), Status> {
        let caller = authorize(&self.store, request.metadata(), access).await?;
        Ok((caller, request.into_inner()))
    }
}

/// Notes the revision a write committed on the RPC's span (none on a dry run).
pub(super) fn committed(revision: Revision, validate_only: bool) {
    if !validate_only {
        Span::current().record("revision", revision.get());
    }
}

/// An RPC's answer, its error as a status.
pub(super) fn reply<T>(result: Result<T, RpcError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}
