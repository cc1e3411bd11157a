//! `impl Store for SqlStore`: each operation's entry point, handing over to
//! the module of its concern.

use std::time::SystemTime;

use ipgate_shared::{ApiSlug, EnforcerId, KeyId, Revision};
use tokio::sync::watch;

use super::*;

impl Store for SqlStore {
    async fn current_revision(&self) -> StoreResult<Revision> {
        self.read_revision().await
    }

    fn committed(&self) -> watch::Receiver<Revision> {
        self.committed.subscribe()
    }

    // === tenants and tokens ===

    async fn tenants(&self) -> StoreResult<Vec<TenantRecord>> {
        self.list_tenants().await
    }

    async fn create_tenant(
        &self,
        ctx: &WriteCtx,
        tenant: NewTenant,
        owner: NewToken,
    ) -> StoreResult<(TenantRecord, TokenRecord)> {
        self.create_tenant_tx(ctx, tenant, owner).await
    }

    async fn ensure_token(
        &self,
        tenant: TenantId,
        role: Role,
        sha256: [u8; 32],
        name: &str,
        now: SystemTime,
    ) -> StoreResult<()> {
        self.ensure_token_tx(tenant, role, sha256, name, now).await
    }

    async fn token_count(&self) -> StoreResult<u64> {
        self.count_tokens().await
    }

    async fn token(&self, sha256: [u8; 32]) -> StoreResult<Option<Principal>> {
        self.token_by_hash(sha256).await
    }

    async fn tokens(
        &self,
        tenant: TenantId,
        include_revoked: bool,
    ) -> StoreResult<Vec<TokenRecord>> {
        self.list_tokens(tenant, include_revoked).await
    }

    async fn create_token(&self, ctx: &WriteCtx, token: NewToken) -> StoreResult<TokenRecord> {
        self.create_token_tx(ctx, token).await
    }

    async fn revoke_token(&self, ctx: &WriteCtx, id: &str) -> StoreResult<TokenRecord> {
        self.revoke_token_tx(ctx, id).await
    }

    // === APIs ===

    async fn create_api(&self, ctx: &WriteCtx, api: NewApi) -> StoreResult<ApiRecord> {
        self.create_api_tx(ctx, api).await
    }

    async fn api(
        &self,
        tenant: TenantId,
        slug: &ApiSlug,
        now: SystemTime,
    ) -> StoreResult<Option<ApiRecord>> {
        self.api_by_slug(tenant, slug, now).await
    }

    async fn apis(
        &self,
        tenant: TenantId,
        filter: &ApiFilter,
        after: Option<&ApiSlug>,
        limit: u32,
        now: SystemTime,
    ) -> StoreResult<Vec<ApiRecord>> {
        self.list_apis(tenant, filter, after, limit, now).await
    }

    async fn update_api(
        &self,
        ctx: &WriteCtx,
        slug: &ApiSlug,
        changes: ApiChanges,
        expected: Expected,
    ) -> StoreResult<ApiRecord> {
        self.update_api_tx(ctx, slug, changes, expected).await
    }

    async fn delete_api(
        &self,
        ctx: &WriteCtx,
        slug: &ApiSlug,
        expected: Expected,
        force: bool,
    ) -> StoreResult<Deleted> {
        self.delete_api_tx(ctx, slug, expected, force).await
    }

    async fn write_api_allowlist(
        &self,
        ctx: &WriteCtx,
        slug: &ApiSlug,
        write: ListWrite,
    ) -> StoreResult<ListWritten<ApiRecord>> {
        self.write_api_allowlist_tx(ctx, slug, write).await
    }

    // === API keys ===

    async fn create_key(&self, ctx: &WriteCtx, key: NewKey) -> StoreResult<KeyRecord> {
        self.create_key_tx(ctx, key).await
    }

    async fn key(&self, tenant: TenantId, id: &KeyId) -> StoreResult<Option<KeyRecord>> {
        self.key_by_id(tenant, id).await
    }

    async fn keys(
        &self,
        tenant: TenantId,
        filter: &KeyFilter,
        after: Option<KeyCursor>,
        limit: u32,
        now: SystemTime,
    ) -> StoreResult<Vec<KeyRecord>> {
        self.list_keys(tenant, filter, after, limit, now).await
    }

    async fn update_key(
        &self,
        ctx: &WriteCtx,
        id: &KeyId,
        changes: KeyChanges,
        expected: Expected,
    ) -> StoreResult<KeyRecord> {
        self.update_key_tx(ctx, id, changes, expected).await
    }

    async fn revoke_key(
        &self,
        ctx: &WriteCtx,
        id: &KeyId,
        expected: Expected,
    ) -> StoreResult<KeyRecord> {
        self.revoke_key_tx(ctx, id, expected).await
    }

    async fn rotate_key(
        &self,
        ctx: &WriteCtx,
        id: &KeyId,
        rotation: Rotation,
        expected: Expected,
    ) -> StoreResult<KeyRecord> {
        self.rotate_key_tx(ctx, id, rotation, expected).await
    }

    async fn write_key_allowlist(
        &self,
        ctx: &WriteCtx,
        id: &KeyId,
        write: ListWrite,
    ) -> StoreResult<ListWritten<KeyRecord>> {
        self.write_key_allowlist_tx(ctx, id, write).await
    }

    async fn remove_expired_entries(&self, now: SystemTime) -> StoreResult<usize> {
        self.sweep_expired_entries(now).await
    }

    // === audit ===

    async fn audit_events(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        self.list_audit(tenant, filter, before, limit).await
    }

    // === sync ===

    async fn snapshot(&self, tenant: TenantId) -> StoreResult<Snapshot> {
        self.read_snapshot(tenant).await
    }

    async fn changes_after(&self, after: Revision, limit: u32) -> StoreResult<Backlog> {
        self.read_changes_after(after, limit).await
    }

    async fn record_ack(
        &self,
        tenant: TenantId,
        enforcer: &EnforcerId,
        revision: Revision,
        now: SystemTime,
    ) -> StoreResult<()> {
        self.upsert_enforcer(tenant, enforcer, revision, None, now)
            .await
    }

    async fn record_nack(
        &self,
        tenant: TenantId,
        enforcer: &EnforcerId,
        revision: Revision,
        reason: &str,
        now: SystemTime,
    ) -> StoreResult<()> {
        self.upsert_enforcer(
            tenant,
            enforcer,
            Revision::ZERO,
            Some((revision, reason)),
            now,
        )
        .await
    }

    async fn enforcers(&self, tenant: TenantId) -> StoreResult<Vec<EnforcerRecord>> {
        self.read_enforcers(tenant).await
    }

    // === usage ===

    async fn store_usage(&self, tenant: TenantId, batch: UsageBatch) -> StoreResult<Stored> {
        self.store_usage_tx(tenant, batch).await
    }

    async fn query_usage(
        &self,
        tenant: TenantId,
        filter: &UsageFilter,
        cursor: Option<UsageCursor>,
        limit: u32,
    ) -> StoreResult<Vec<UsageRecord>> {
        self.query_usage_rows(tenant, filter, cursor, limit).await
    }


    async fn prune(&self, usage_before: SystemTime, keep_revisions: u64) -> StoreResult<Pruned> {
        self.prune_tx(usage_before, keep_revisions).await
    }
}
