//! `ipgate.admin.v1.AdminService`: tenants, tokens, APIs, API keys, their
//! allowlists, test access, the usage and audit logs and revision status,
//! for callers with an admin token.
//!
//! Each RPC authorizes its caller here and hands over to its concern's
//! module, which converts the request to domain values, calls the store and
//! converts the result back; errors become statuses in `crate::status`.

pub mod access;
pub mod allowlists;
pub mod apis;
pub mod audit;
pub mod keys;
pub mod propagation;
pub mod response;
pub mod revision;
pub mod service;
pub mod tenants;
pub mod tokens;

use std::sync::Arc;

use ipgate_shared::proto::admin::v1::{self as admin, admin_service_server::AdminService};
use tonic::{Request, Response, Status};
use tracing::field;

pub use service::AdminApi;

use self::service::reply;
use crate::{
    auth::Access,
    store::{ApiRecord, KeyRecord},
    usage,
};

#[tonic::async_trait]
impl AdminService for AdminApi {
    #[tracing::instrument(name = "CreateTenant", skip_all, fields(tenant = %request.get_ref().id))]
    async fn create_tenant(
        &self,
        request: Request<admin::CreateTenantRequest>,
    ) -> Result<Response<admin::CreateTenantResponse>, Status> {
        let (caller, req) = self.call(request, Access::Operate).await?;
        reply(tenants::create(self, &caller, req).await)
    }

    #[tracing::instrument(name = "ListTenants", skip_all)]
    async fn list_tenants(
        &self,
        request: Request<admin::ListTenantsRequest>,
    ) -> Result<Response<admin::ListTenantsResponse>, Status> {
        let (_caller, req) = self.call(request, Access::Operate).await?;
        reply(tenants::list(self, req).await)
    }

    #[tracing::instrument(name = "CreateToken", skip_all)]
    async fn create_token(
        &self,
        request: Request<admin::CreateTokenRequest>,
    ) -> Result<Response<admin::CreateTokenResponse>, Status> {
        let (caller, req) = self.call(request, Access::Own).await?;
        reply(tokens::create(self, &caller, req).await)
    }

    #[tracing::instrument(name = "ListTokens", skip_all)]
    async fn list_tokens(
        &self,
        request: Request<admin::ListTokensRequest>,
    ) -> Result<Response<admin::ListTokensResponse>, Status> {
        let (caller, req) = self.call(request, Access::Own).await?;
        reply(tokens::list(self, &caller, req).await)
    }

    #[tracing::instrument(name = "RevokeToken", skip_all, fields(token = %request.get_ref().id))]
    async fn revoke_token(
        &self,
        request: Request<admin::RevokeTokenRequest>,
    ) -> Result<Response<admin::Token>, Status> {
        let (caller, req) = self.call(request, Access::Own).await?;
        reply(tokens::revoke(self, &caller, req).await)
    }

    #[tracing::instrument(name = "CreateApi", skip_all, fields(slug = %request.get_ref().slug, revision = field::Empty))]
    async fn create_api(
        &self,
        request: Request<admin::CreateApiRequest>,
    ) -> Result<Response<admin::Api>, Status> {
        let (caller, mut req) = self.call(request, Access::Write).await?;
        let wait = propagation::requested(&mut req).map_err(Status::from)?;
        reply(
            self.waited(&caller, wait, apis::create(self, &caller, req).await)
                .await,
        )
    }

    #[tracing::instrument(name = "GetApi", skip_all, fields(slug = %request.get_ref().slug))]
    async fn get_api(
        &self,
        request: Request<admin::GetApiRequest>,
    ) -> Result<Response<admin::Api>, Status> {
        let (caller, req) = self.call(request, Access::Read).await?;
        reply(apis::get(self, &caller, req).await)
    }

    #[tracing::instrument(name = "ListApis", skip_all)]
    async fn list_apis(
        &self,
        request: Request<admin::ListApisRequest>,
    ) -> Result<Response<admin::ListApisResponse>, Status> {
        let (caller, req) = self.call(request, Access::Read).await?;
        reply(apis::list(self, &caller, req).await)
    }

    #[tracing::instrument(name = "UpdateApi", skip_all, fields(slug = %request.get_ref().slug, revision = field::Empty))]
    async fn update_api(
        &self,
        request: Request<admin::UpdateApiRequest>,
    ) -> Result<Response<admin::Api>, Status> {
        let (caller, mut req) = self.call(request, Access::Write).await?;
        let wait = propagation::requested(&mut req).map_err(Status::from)?;
        reply(
            self.waited(&caller, wait, apis::update(self, &caller, req).await)
                .await,
        )
    }

    #[tracing::instrument(name = "DeleteApi", skip_all, fields(slug = %request.get_ref().slug, revision = field::Empty))]
    async fn delete_api(
        &self,
        request: Request<admin::DeleteApiRequest>,
    ) -> Result<Response<admin::DeleteApiResponse>, Status> {
        let (caller, mut req) = self.call(request, Access::Write).await?;
        let wait = propagation::requested(&mut req).map_err(Status::from)?;
        reply(
            self.waited(&caller, wait, apis::delete(self, &caller, req).await)
                .await,
        )
    }

    #[tracing::instrument(name = "SetApiAllowlist", skip_all, fields(slug = %request.get_ref().slug, revision = field::Empty))]
    async fn set_api_allowlist(
        &self,
        request: Request<admin::SetApiAllowlistRequest>,
    ) -> Result<Response<admin::ApiAllowlistResponse>, Status> {
        let (caller, mut req) = self.call(request, Access::Write).await?;
        let wait = propagation::requested(&mut req).map_err(Status::from)?;
        reply(
            self.waited(
                &caller,
                wait,
                allowlists::write::<ApiRecord>(self, &caller, req.into()).await,
            )
            .await,
        )
    }

    #[tracing::instrument(name = "AddApiAllowlistEntries", skip_all, fields(slug = %request.get_ref().slug, revision = field::Empty))]
    async fn add_api_allowlist_entries(
        &self,
        request: Request<admin::AddApiAllowlistEntriesRequest>,
    ) -> Result<Response<admin::ApiAllowlistResponse>, Status> {
        let (caller, mut req) = self.call(request, Access::Write).await?;
        let wait = propagation::requested(&mut req).map_err(Status::from)?;
        reply(
            self.waited(
                &caller,
                wait,
                allowlists::write::<ApiRecord>(self, &caller, req.into()).await,
            )
            .await,
        )
    }

    #[tracing::instrument(name = "RemoveApiAllowlistEntries", skip_all, fields(slug = %request.get_ref().slug, revision = field::Empty))]
    async fn remove_api_allowlist_entries(
        &self,
        request: Request<admin::RemoveApiAllowlistEntriesRequest>,
    ) -> Result<Response<admin::ApiAllowlistResponse>, Status> {
        let (caller, mut req) = self.call(request, Access::Write).await?;
        let wait = propagation::requested(&mut req).map_err(Status::from)?;
        reply(
            self.waited(
                &caller,
                wait,
                allowlists::write::<ApiRecord>(self, &caller, req.into()).await,
            )
            .await,
        )
    }

    #[tracing::instrument(name = "UpdateApiAllowlistEntry", skip_all, fields(slug = %request.get_ref().slug, revision = field::Empty))]
    async fn update_api_allowlist_entry(
        &self,
        request: Request<admin::UpdateApiAllowlistEntryRequest>,
    ) -> Result<Response<admin::ApiAllowlistResponse>, Status> {
        let (caller, mut req) = self.call(request, Access::Write).await?;
        let wait = propagation::requested(&mut req).map_err(Status::from)?;
        reply(
            self.waited(
                &caller,
                wait,
                allowlists::write::<ApiRecord>(self, &caller, req.into()).await,
            )
            .await,
        )
    }

    #[tracing::instrument(name = "CreateApiKey", skip_all, fields(api = %request.get_ref().api, key = field::Empty, revision = field::Empty))]
    async fn create_api_key(
        &self,
        request: Request<admin::CreateApiKeyRequest>,
    ) -> Result<Response<admin::CreateApiKeyResponse>, Status> {
        let (caller, mut req) = self.call(request, Access::Write).await?;
        let wait = propagation::requested(&mut req).map_err(Status::from)?;
        reply(
            self.waited(&caller, wait, keys::create(self, &caller, req).await)
                .await,
        )
    }

    #[tracing::instrument(name = "GetApiKey", skip_all, fields(key = %request.get_ref().id))]
    async fn get_api_key(
        &self,
        request: Request<admin::GetApiKeyRequest>,
    ) -> Result<Response<admin::ApiKey>, Status> {
        let (caller, req) = self.call(request, Access::Read).await?;
        reply(keys::get(self, &caller, req).await)
    }

    #[tracing::instrument(name = "ListApiKeys", skip_all)]
    async fn list_api_keys(
        &self,
        request: Request<admin::ListApiKeysRequest>,
    ) -> Result<Response<admin::ListApiKeysResponse>, Status> {
        let (caller, req) = self.call(request, Access::Read).await?;
        reply(keys::list(self, &caller, req).await)
    }

    #[tracing::instrument(name = "UpdateApiKey", skip_all, fields(key = %request.get_ref().id, revision = field::Empty))]
    async fn update_api_key(
        &self,
        request: Request<admin::UpdateApiKeyRequest>,
    ) -> Result<Response<admin::ApiKey>, Status> {
        let (caller, mut req) = self.call(request, Access::Write).await?;
        let wait = propagation::requested(&mut req).map_err(Status::from)?;
        reply(
            self.waited(&caller, wait, keys::update(self, &caller, req).await)
                .await,
        )
    }

    #[tracing::instrument(name = "RevokeApiKey", skip_all, fields(key = %request.get_ref().id, revision = field::Empty))]
    async fn revoke_api_key(
        &self,
        request: Request<admin::RevokeApiKeyRequest>,
    ) -> Result<Response<admin::ApiKey>, Status> {
        let (caller, mut req) = self.call(request, Access::Write).await?;
        let wait = propagation::requested(&mut req).map_err(Status::from)?;
        reply(
            self.waited(&caller, wait, keys::revoke(self, &caller, req).await)
                .await,
        )
    }

    #[tracing::instrument(name = "RotateApiKey", skip_all, fields(key = %request.get_ref().id, revision = field::Empty))]
    async fn rotate_api_key(
        &self,
        request: Request<admin::RotateApiKeyRequest>,
    ) -> Result<Response<admin::RotateApiKeyResponse>, Status> {
        let (caller, mut req) = self.call(request, Access::Write).await?;
        let wait = propagation::requested(&mut req).map_err(Status::from)?;
        reply(
            self.waited(&caller, wait, keys::rotate(self, &caller, req).await)
                .await,
        )
    }

    #[tracing::instrument(name = "SetApiKeyAllowlist", skip_all, fields(key = %request.get_ref().id, revision = field::Empty))]
    async fn set_api_key_allowlist(
        &self,
        request: Request<admin::SetApiKeyAllowlistRequest>,
    ) -> Result<Response<admin::ApiKeyAllowlistResponse>, Status> {
        let (caller, mut req) = self.call(request, Access::Write).await?;
        let wait = propagation::requested(&mut req).map_err(Status::from)?;
        reply(
            self.waited(
                &caller,
                wait,
                allowlists::write::<KeyRecord>(self, &caller, req.into()).await,
            )
            .await,
        )
    }

    #[tracing::instrument(name = "AddApiKeyAllowlistEntries", skip_all, fields(key = %request.get_ref().id, revision = field::Empty))]
    async fn add_api_key_allowlist_entries(
        &self,
        request: Request<admin::AddApiKeyAllowlistEntriesRequest>,
    ) -> Result<Response<admin::ApiKeyAllowlistResponse>, Status> {
        let (caller, mut req) = self.call(request, Access::Write).await?;
        let wait = propagation::requested(&mut req).map_err(Status::from)?;
        reply(
            self.waited(
                &caller,
                wait,
                allowlists::write::<KeyRecord>(self, &caller, req.into()).await,
            )
            .await,
        )
    }

    #[tracing::instrument(name = "RemoveApiKeyAllowlistEntries", skip_all, fields(key = %request.get_ref().id, revision = field::Empty))]
    async fn remove_api_key_allowlist_entries(
        &self,
        request: Request<admin::RemoveApiKeyAllowlistEntriesRequest>,
    ) -> Result<Response<admin::ApiKeyAllowlistResponse>, Status> {
        let (caller, mut req) = self.call(request, Access::Write).await?;
        let wait = propagation::requested(&mut req).map_err(Status::from)?;
        reply(
            self.waited(
                &caller,
                wait,
                allowlists::write::<KeyRecord>(self, &caller, req.into()).await,
            )
            .await,
        )
    }

    #[tracing::instrument(name = "UpdateApiKeyAllowlistEntry", skip_all, fields(key = %request.get_ref().id, revision = field::Empty))]
    async fn update_api_key_allowlist_entry(
        &self,
        request: Request<admin::UpdateApiKeyAllowlistEntryRequest>,
    ) -> Result<Response<admin::ApiKeyAllowlistResponse>, Status> {
        let (caller, mut req) = self.call(request, Access::Write).await?;
        let wait = propagation::requested(&mut req).map_err(Status::from)?;
        reply(
            self.waited(
                &caller,
                wait,
                allowlists::write::<KeyRecord>(self, &caller, req.into()).await,
            )
            .await,
        )
    }

    #[tracing::instrument(name = "TestAccess", skip_all, fields(api = %request.get_ref().api))]
    async fn test_access(
        &self,
        request: Request<admin::TestAccessRequest>,
    ) -> Result<Response<admin::TestAccessResponse>, Status> {
        let (caller, req) = self.call(request, Access::Read).await?;
        reply(access::test(self, &caller, req).await)
    }

    #[tracing::instrument(name = "QueryUsageLogs", skip_all)]
    async fn query_usage_logs(
        &self,
        request: Request<admin::QueryUsageLogsRequest>,
    ) -> Result<Response<admin::QueryUsageLogsResponse>, Status> {
        let (caller, req) = self.call(request, Access::Read).await?;
        reply(usage::query(&self.store, &caller, req).await)
    }

    #[tracing::instrument(name = "ListAuditEvents", skip_all)]
    async fn list_audit_events(
        &self,
        request: Request<admin::ListAuditEventsRequest>,
    ) -> Result<Response<admin::ListAuditEventsResponse>, Status> {
        let (caller, req) = self.call(request, Access::Read).await?;
        reply(audit::list(self, &caller, req).await)
    }

    #[tracing::instrument(name = "GetPropagation", skip_all, fields(revision = request.get_ref().revision))]
    async fn get_propagation(
        &self,
        request: Request<admin::GetPropagationRequest>,
    ) -> Result<Response<admin::Propagation>, Status> {
        let (caller, req) = self.call(request, Access::Read).await?;
        reply(propagation::get(self, &caller, req).await)
    }

    #[tracing::instrument(name = "ListEnforcers", skip_all)]
    async fn list_enforcers(
        &self,
        request: Request<admin::ListEnforcersRequest>,
    ) -> Result<Response<admin::ListEnforcersResponse>, Status> {
        let (caller, req) = self.call(request, Access::Read).await?;
        reply(propagation::list(self, &caller, req).await)
    }

    #[tracing::instrument(name = "GetRevisionStatus", skip_all, fields(revision = request.get_ref().revision))]
    async fn get_revision_status(
        &self,
        request: Request<admin::GetRevisionStatusRequest>,
    ) -> Result<Response<admin::RevisionStatus>, Status> {
        let (caller, req) = self.call(request, Access::Read).await?;
        reply(revision::status(self, &caller, req).await)
    }

    type ExportUsageLogsStream = usage::export::ChunkStream;

    #[tracing::instrument(name = "ExportUsageLogs", skip_all)]
    async fn export_usage_logs(
        &self,
        request: Request<admin::ExportUsageLogsRequest>,
    ) -> Result<Response<Self::ExportUsageLogsStream>, Status> {
        let (caller, req) = self.call(request, Access::Read).await?;
        reply(usage::export(Arc::clone(&self.store), &caller, req).await)
    }
}
