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
        self as admin, Api, ApiAllowlistResponse, ApiKey, ApiKeyAllowlistResponse,
        CreateApiKeyRequest, CreateApiKeyResponse, CreateApiRequest, GetApiKeyRequest,
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
    ) -> Result<Response<ApiAllowlistResponse>, Status> {
        let caller = self.caller(&request, Access::Write).await?;
        let now = SystemTime::now();
        let set = request::set_api_allowlist(request.into_inner(), self.api_rules, now)?;
        let record = self
            .store
            .set_api_allowlist(caller.tenant, &set.target, set.allowlist, set.expected, now)
            .await?;
        committed(record.revision);
        Ok(Response::new(ApiAllowlistResponse {
            api: Some(response::api(&record)),
            lockout: None,
            validate_only: false,
        }))
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
                previous_secrets: Vec::new(),
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
    ) -> Result<Response<ApiKeyAllowlistResponse>, Status> {
        let caller = self.caller(&request, Access::Write).await?;
        let now = SystemTime::now();
        let set = request::set_api_key_allowlist(request.into_inner(), self.key_rules, now)?;
        let record = self
            .store
            .set_key_allowlist(caller.tenant, &set.target, set.allowlist, set.expected, now)
            .await?;
        committed(record.revision);
        Ok(Response::new(ApiKeyAllowlistResponse {
            key: Some(response::api_key(&record)),
            lockout: None,
            validate_only: false,
        }))
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

    async fn create_tenant(
        &self,
        _request: Request<admin::CreateTenantRequest>,
    ) -> Result<Response<admin::CreateTenantResponse>, Status> {
        Err(Status::unimplemented(
            "create_tenant is not implemented yet",
        ))
    }

    async fn list_tenants(
        &self,
        _request: Request<admin::ListTenantsRequest>,
    ) -> Result<Response<admin::ListTenantsResponse>, Status> {
        Err(Status::unimplemented("list_tenants is not implemented yet"))
    }

    async fn create_token(
        &self,
        _request: Request<admin::CreateTokenRequest>,
    ) -> Result<Response<admin::CreateTokenResponse>, Status> {
        Err(Status::unimplemented("create_token is not implemented yet"))
    }

    async fn list_tokens(
        &self,
        _request: Request<admin::ListTokensRequest>,
    ) -> Result<Response<admin::ListTokensResponse>, Status> {
        Err(Status::unimplemented("list_tokens is not implemented yet"))
    }

    async fn revoke_token(
        &self,
        _request: Request<admin::RevokeTokenRequest>,
    ) -> Result<Response<admin::Token>, Status> {
        Err(Status::unimplemented("revoke_token is not implemented yet"))
    }

    async fn list_apis(
        &self,
        _request: Request<admin::ListApisRequest>,
    ) -> Result<Response<admin::ListApisResponse>, Status> {
        Err(Status::unimplemented("list_apis is not implemented yet"))
    }

    async fn update_api(
        &self,
        _request: Request<admin::UpdateApiRequest>,
    ) -> Result<Response<admin::Api>, Status> {
        Err(Status::unimplemented("update_api is not implemented yet"))
    }

    async fn delete_api(
        &self,
        _request: Request<admin::DeleteApiRequest>,
    ) -> Result<Response<admin::DeleteApiResponse>, Status> {
        Err(Status::unimplemented("delete_api is not implemented yet"))
    }

    async fn add_api_allowlist_entries(
        &self,
        _request: Request<admin::AddApiAllowlistEntriesRequest>,
    ) -> Result<Response<admin::ApiAllowlistResponse>, Status> {
        Err(Status::unimplemented(
            "add_api_allowlist_entries is not implemented yet",
        ))
    }

    async fn remove_api_allowlist_entries(
        &self,
        _request: Request<admin::RemoveApiAllowlistEntriesRequest>,
    ) -> Result<Response<admin::ApiAllowlistResponse>, Status> {
        Err(Status::unimplemented(
            "remove_api_allowlist_entries is not implemented yet",
        ))
    }

    async fn update_api_allowlist_entry(
        &self,
        _request: Request<admin::UpdateApiAllowlistEntryRequest>,
    ) -> Result<Response<admin::ApiAllowlistResponse>, Status> {
        Err(Status::unimplemented(
            "update_api_allowlist_entry is not implemented yet",
        ))
    }

    async fn list_api_keys(
        &self,
        _request: Request<admin::ListApiKeysRequest>,
    ) -> Result<Response<admin::ListApiKeysResponse>, Status> {
        Err(Status::unimplemented(
            "list_api_keys is not implemented yet",
        ))
    }

    async fn update_api_key(
        &self,
        _request: Request<admin::UpdateApiKeyRequest>,
    ) -> Result<Response<admin::ApiKey>, Status> {
        Err(Status::unimplemented(
            "update_api_key is not implemented yet",
        ))
    }

    async fn revoke_api_key(
        &self,
        _request: Request<admin::RevokeApiKeyRequest>,
    ) -> Result<Response<admin::ApiKey>, Status> {
        Err(Status::unimplemented(
            "revoke_api_key is not implemented yet",
        ))
    }

    async fn rotate_api_key(
        &self,
        _request: Request<admin::RotateApiKeyRequest>,
    ) -> Result<Response<admin::RotateApiKeyResponse>, Status> {
        Err(Status::unimplemented(
            "rotate_api_key is not implemented yet",
        ))
    }

    async fn add_api_key_allowlist_entries(
        &self,
        _request: Request<admin::AddApiKeyAllowlistEntriesRequest>,
    ) -> Result<Response<admin::ApiKeyAllowlistResponse>, Status> {
        Err(Status::unimplemented(
            "add_api_key_allowlist_entries is not implemented yet",
        ))
    }

    async fn remove_api_key_allowlist_entries(
        &self,
        _request: Request<admin::RemoveApiKeyAllowlistEntriesRequest>,
    ) -> Result<Response<admin::ApiKeyAllowlistResponse>, Status> {
        Err(Status::unimplemented(
            "remove_api_key_allowlist_entries is not implemented yet",
        ))
    }

    async fn update_api_key_allowlist_entry(
        &self,
        _request: Request<admin::UpdateApiKeyAllowlistEntryRequest>,
    ) -> Result<Response<admin::ApiKeyAllowlistResponse>, Status> {
        Err(Status::unimplemented(
            "update_api_key_allowlist_entry is not implemented yet",
        ))
    }

    async fn test_access(
        &self,
        _request: Request<admin::TestAccessRequest>,
    ) -> Result<Response<admin::TestAccessResponse>, Status> {
        Err(Status::unimplemented("test_access is not implemented yet"))
    }

    async fn list_audit_events(
        &self,
        _request: Request<admin::ListAuditEventsRequest>,
    ) -> Result<Response<admin::ListAuditEventsResponse>, Status> {
        Err(Status::unimplemented(
            "list_audit_events is not implemented yet",
        ))
    }

    type ExportUsageLogsStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<admin::ExportUsageLogsChunk, Status>> + Send>,
    >;

    async fn export_usage_logs(
        &self,
        _request: Request<admin::ExportUsageLogsRequest>,
    ) -> Result<Response<Self::ExportUsageLogsStream>, Status> {
        Err(Status::unimplemented(
            "export_usage_logs is not implemented yet",
        ))
    }
}
