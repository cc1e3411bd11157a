//! `ipgate.admin.v1.AdminService`: APIs, API keys, their allowlists, the
//! usage log and revision status, for callers with an admin token.
//!
//! Each RPC authorizes, converts its request to domain values
//! ([`request`]), calls the store, and converts the record back
//! ([`response`]); errors become statuses in `crate::status`.

pub mod request;
pub mod response;
pub mod revision;

use std::{sync::Arc, time::SystemTime};

use ipgate_shared::{
    KeyConfig, ListRules, SecretHash,
    key::NewKey as GeneratedKey,
    proto::admin::v1::{
        Api, ApiKey, CreateApiKeyRequest, CreateApiKeyResponse, CreateApiRequest, GetApiKeyRequest,
        GetApiRequest, GetRevisionStatusRequest, QueryUsageLogsRequest, QueryUsageLogsResponse,
        RevisionStatus, SetApiAllowlistRequest, SetApiKeyAllowlistRequest,
        admin_service_server::AdminService,
    },
};
use tonic::{Request, Response, Status};
use tracing::{Span, field};

use crate::{
    auth::{Access, authorize},
    store::{NewKey, Principal, Store, StoreError},
    sync::Registry,
    usage,
};

/// The admin service over a store.
pub struct AdminApi<S> {
    store: Arc<S>,
    registry: Arc<Registry>,
    key_rules: ListRules,
    api_rules: ListRules,
}

impl<S: Store> AdminApi<S> {
    /// A service validating lists with these rules.
    pub fn new(
        store: Arc<S>,
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

    async fn caller<T>(&self, request: &Request<T>, access: Access) -> Result<Principal, Status> {
        Ok(authorize(&*self.store, request.metadata(), access).await?)
    }
}

/// Notes the revision a write committed on the RPC's span.
fn committed(revision: ipgate_shared::Revision) {
    Span::current().record("revision", revision.get());
}

#[tonic::async_trait]
impl<S: Store> AdminService for AdminApi<S> {
    #[tracing::instrument(name = "CreateApi", skip_all, fields(slug = %request.get_ref().slug, revision = field::Empty))]
    async fn create_api(
        &self,
        request: Request<CreateApiRequest>,
    ) -> Result<Response<Api>, Status> {
        let caller = self.caller(&request, Access::Write).await?;
        let api = request::create_api(request.into_inner())?;
        let record = self
            .store
            .create_api(caller.tenant, api, SystemTime::now())
            .await?;
        committed(record.revision);
        Ok(Response::new(response::api(&record)))
    }

    #[tracing::instrument(name = "GetApi", skip_all, fields(slug = %request.get_ref().slug))]
    async fn get_api(&self, request: Request<GetApiRequest>) -> Result<Response<Api>, Status> {
        let caller = self.caller(&request, Access::Read).await?;
        let slug = request::get_api(request.into_inner())?;
        let record = self
            .store
            .api(caller.tenant, &slug)
            .await?
            .ok_or_else(|| StoreError::ApiNotFound(slug.to_string()))?;
        Ok(Response::new(response::api(&record)))
    }

    #[tracing::instrument(name = "SetApiAllowlist", skip_all, fields(slug = %request.get_ref().slug, revision = field::Empty))]
    async fn set_api_allowlist(
        &self,
        request: Request<SetApiAllowlistRequest>,
    ) -> Result<Response<Api>, Status> {
        let caller = self.caller(&request, Access::Write).await?;
        let now = SystemTime::now();
        let set = request::set_api_allowlist(request.into_inner(), self.api_rules, now)?;
        let record = self
            .store
            .set_api_allowlist(caller.tenant, &set.target, set.allowlist, set.expected, now)
            .await?;
        committed(record.revision);
        Ok(Response::new(response::api(&record)))
    }

    #[tracing::instrument(name = "CreateApiKey", skip_all, fields(api = %request.get_ref().api, key = field::Empty, revision = field::Empty))]
    async fn create_api_key(
        &self,
        request: Request<CreateApiKeyRequest>,
    ) -> Result<Response<CreateApiKeyResponse>, Status> {
        let caller = self.caller(&request, Access::Write).await?;
        let now = SystemTime::now();
        let create = request::create_api_key(request.into_inner(), self.key_rules, now)?;
        let generated = GeneratedKey::generate();
        Span::current().record("key", generated.id.as_str());
        let key = NewKey {
            name: create.name,
            description: create.description,
            config: KeyConfig {
                id: generated.id,
                api: create.api,
                secret_hash: SecretHash::of(&generated.secret),
                scopes: create.scopes,
                expires_at: create.expires_at,
                allowlist: create.allowlist,
            },
        };
        let record = self.store.create_key(caller.tenant, key, now).await?;
        committed(record.revision);
        Ok(Response::new(CreateApiKeyResponse {
            key: Some(response::api_key(&record)),
            secret: generated.secret,
        }))
    }

    #[tracing::instrument(name = "GetApiKey", skip_all, fields(key = %request.get_ref().id))]
    async fn get_api_key(
        &self,
        request: Request<GetApiKeyRequest>,
    ) -> Result<Response<ApiKey>, Status> {
        let caller = self.caller(&request, Access::Read).await?;
        let id = request::get_api_key(request.into_inner())?;
        let record = self
            .store
            .key(caller.tenant, &id)
            .await?
            .ok_or_else(|| StoreError::KeyNotFound(id.to_string()))?;
        Ok(Response::new(response::api_key(&record)))
    }

    #[tracing::instrument(name = "SetApiKeyAllowlist", skip_all, fields(key = %request.get_ref().id, revision = field::Empty))]
    async fn set_api_key_allowlist(
        &self,
        request: Request<SetApiKeyAllowlistRequest>,
    ) -> Result<Response<ApiKey>, Status> {
        let caller = self.caller(&request, Access::Write).await?;
        let now = SystemTime::now();
        let set = request::set_api_key_allowlist(request.into_inner(), self.key_rules, now)?;
        let record = self
            .store
            .set_key_allowlist(caller.tenant, &set.target, set.allowlist, set.expected, now)
            .await?;
        committed(record.revision);
        Ok(Response::new(response::api_key(&record)))
    }

    #[tracing::instrument(name = "QueryUsageLogs", skip_all)]
    async fn query_usage_logs(
        &self,
        request: Request<QueryUsageLogsRequest>,
    ) -> Result<Response<QueryUsageLogsResponse>, Status> {
        let caller = self.caller(&request, Access::Read).await?;
        let page = usage::query(&*self.store, caller, request.into_inner()).await?;
        Ok(Response::new(page))
    }

    #[tracing::instrument(name = "GetRevisionStatus", skip_all, fields(revision = request.get_ref().revision))]
    async fn get_revision_status(
        &self,
        request: Request<GetRevisionStatusRequest>,
    ) -> Result<Response<RevisionStatus>, Status> {
        self.caller(&request, Access::Read).await?;
        let asked = request::get_revision_status(request.into_inner());
        let status = revision::status(&*self.store, &self.registry, asked).await?;
        Ok(Response::new(status))
    }
}
