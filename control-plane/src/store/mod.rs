//! Storage: the operations the services need, as `trait Store`, and its one
//! SQL implementation ([`SqlStore`], sqlx `Any` over SQLite or PostgreSQL).
//!
//! Every configuration write is one transaction that takes the next
//! revision first, checks the etag, writes the rows, appends the encoded
//! `ipgate.sync.v1.Delta` to the change log and its audit rows, so
//! revisions commit in order with no holes and no change goes unaudited
//! ([`write`] holds that pattern once). Every write takes
//! [`WriteCtx::validate_only`]: it runs in full and is rolled back.

mod apis;
mod args;
mod audit;
mod dispatch;
mod keys;
mod lists;
mod records;
mod rows;
mod sql;
mod sync;
mod tenants;
mod tokens;
mod usage;
mod write;

use std::{future::Future, time::SystemTime};

use ipgate_shared::{ApiSlug, EnforcerId, KeyId, Revision};
use tokio::sync::watch;

pub use records::*;
pub use sql::{Backend, OpenError, SqlStore};

use crate::{allowlists::Lockout, status::InvalidRequest};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("API {0:?} already exists; pick another slug")]
    ApiExists(String),
    #[error("API {0:?} not found")]
    ApiNotFound(String),
    #[error("API key {0:?} not found")]
    KeyNotFound(String),
    #[error("token {0:?} not found")]
    TokenNotFound(String),
    #[error("tenant {0:?} already exists; pick another id")]
    TenantExists(String),
    #[error(
        "etag {given} is stale: the object changed at revision {current}; read it again and reapply your change"
    )]
    StaleEtag { given: Revision, current: Revision },
    #[error(
        "API {slug:?} has {keys} active key(s); revoke them first, or delete with force to revoke them with it"
    )]
    ApiHasActiveKeys { slug: String, keys: usize },
    #[error("API key {0:?} is revoked; create a new key instead")]
    KeyRevoked(String),
    #[error("token {0:?} is already revoked")]
    TokenRevoked(String),
    #[error(
        "token {0:?} is the tenant's last active owner token; create another owner token before revoking it"
    )]
    LastOwner(String),
    #[error("{}", .0.message())]
    LockoutRisk(Box<Lockout>),
    #[error("nothing to change")]
    Unchanged,
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    #[error("token already exists with role {existing}, not {wanted}")]
    TokenRoleConflict {
        existing: &'static str,
        wanted: &'static str,
    },
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// The operations the admin, sync and usage services need. Reads of admin
/// objects take the caller's tenant and see nothing of other tenants.
pub trait Store: Send + Sync + 'static {
    /// The revision of the last committed change.
    fn current_revision(&self) -> impl Future<Output = StoreResult<Revision>> + Send;

    /// Told the revision of every write this process commits, right after the commit.
    fn committed(&self) -> watch::Receiver<Revision>;

    // === tenants and tokens ===

    /// Every tenant, by id.
    fn tenants(&self) -> impl Future<Output = StoreResult<Vec<TenantRecord>>> + Send;

    /// Creates a tenant and its first owner token.
    fn create_tenant(
        &self,
        ctx: &WriteCtx,
        tenant: NewTenant,
        owner: NewToken,
    ) -> impl Future<Output = StoreResult<(TenantRecord, TokenRecord)>> + Send;

    /// Makes sure a token with this SHA-256 exists with `role` (bootstrap).
    fn ensure_token(
        &self,
        tenant: TenantId,
        role: Role,
        sha256: [u8; 32],
        name: &str,
        now: SystemTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// How many tokens exist.
    fn token_count(&self) -> impl Future<Output = StoreResult<u64>> + Send;

    /// The holder of the unrevoked token with this SHA-256.
    fn token(
        &self,
        sha256: [u8; 32],
    ) -> impl Future<Output = StoreResult<Option<Principal>>> + Send;

    /// The tenant's tokens, oldest first.
    fn tokens(
        &self,
        tenant: TenantId,
        include_revoked: bool,
    ) -> impl Future<Output = StoreResult<Vec<TokenRecord>>> + Send;

    /// Creates a token in the writer's tenant.
    fn create_token(
        &self,
        ctx: &WriteCtx,
        token: NewToken,
    ) -> impl Future<Output = StoreResult<TokenRecord>> + Send;

    /// Revokes a token of the writer's tenant.
    fn revoke_token(
        &self,
        ctx: &WriteCtx,
        id: &str,
    ) -> impl Future<Output = StoreResult<TokenRecord>> + Send;

    // === APIs ===

    /// Creates an API (enabled, empty allowlist).
    fn create_api(
        &self,
        ctx: &WriteCtx,
        api: NewApi,
    ) -> impl Future<Output = StoreResult<ApiRecord>> + Send;

    /// Reads one API of `tenant`.
    fn api(
        &self,
        tenant: TenantId,
        slug: &ApiSlug,
        now: SystemTime,
    ) -> impl Future<Output = StoreResult<Option<ApiRecord>>> + Send;

    /// APIs of `tenant` by slug, after `after`.
    fn apis(
        &self,
        tenant: TenantId,
        filter: &ApiFilter,
        after: Option<&ApiSlug>,
        limit: u32,
        now: SystemTime,
    ) -> impl Future<Output = StoreResult<Vec<ApiRecord>>> + Send;

    /// Changes an API's name, status or routes.
    fn update_api(
        &self,
        ctx: &WriteCtx,
        slug: &ApiSlug,
        changes: ApiChanges,
        expected: Expected,
    ) -> impl Future<Output = StoreResult<ApiRecord>> + Send;

    /// Deletes an API and its keys; active keys only with `force`.
    fn delete_api(
        &self,
        ctx: &WriteCtx,
        slug: &ApiSlug,
        expected: Expected,
        force: bool,
    ) -> impl Future<Output = StoreResult<Deleted>> + Send;

    /// Edits an API's allowlist.
    fn write_api_allowlist(
        &self,
        ctx: &WriteCtx,
        slug: &ApiSlug,
        write: ListWrite,
    ) -> impl Future<Output = StoreResult<ListWritten<ApiRecord>>> + Send;

    // === API keys ===

    /// Creates an API key for an existing API of the writer's tenant.
    fn create_key(
        &self,
        ctx: &WriteCtx,
        key: NewKey,
    ) -> impl Future<Output = StoreResult<KeyRecord>> + Send;

    /// Reads one key of `tenant`.
    fn key(
        &self,
        tenant: TenantId,
        id: &KeyId,
    ) -> impl Future<Output = StoreResult<Option<KeyRecord>>> + Send;

    /// Keys of `tenant`, newest first, after `after`.
    fn keys(
        &self,
        tenant: TenantId,
        filter: &KeyFilter,
        after: Option<KeyCursor>,
        limit: u32,
        now: SystemTime,
    ) -> impl Future<Output = StoreResult<Vec<KeyRecord>>> + Send;

    /// Changes a key's name, description or scopes.
    fn update_key(
        &self,
        ctx: &WriteCtx,
        id: &KeyId,
        changes: KeyChanges,
        expected: Expected,
    ) -> impl Future<Output = StoreResult<KeyRecord>> + Send;

    /// Revokes a key.
    fn revoke_key(
        &self,
        ctx: &WriteCtx,
        id: &KeyId,
        expected: Expected,
    ) -> impl Future<Output = StoreResult<KeyRecord>> + Send;

    /// Gives a key a new secret; the old one works for the grace period.
    fn rotate_key(
        &self,
        ctx: &WriteCtx,
        id: &KeyId,
        rotation: Rotation,
        expected: Expected,
    ) -> impl Future<Output = StoreResult<KeyRecord>> + Send;

    /// Edits a key's allowlist.
    fn write_key_allowlist(
        &self,
        ctx: &WriteCtx,
        id: &KeyId,
        write: ListWrite,
    ) -> impl Future<Output = StoreResult<ListWritten<KeyRecord>>> + Send;

    /// Removes entries expired at `now` from every list (one audited
    /// revision per object, actor `system`); returns how many objects changed.
    fn remove_expired_entries(
        &self,
        now: SystemTime,
    ) -> impl Future<Output = StoreResult<usize>> + Send;

    // === audit ===

    /// Audit events of `tenant`, newest first, older than the event `before`.
    fn audit_events(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<AuditRecord>>> + Send;

    // === sync ===

    /// Every API and active key of `tenant`, at one revision.
    fn snapshot(&self, tenant: TenantId) -> impl Future<Output = StoreResult<Snapshot>> + Send;

    /// Up to `limit` revisions after `after`, in order, of every tenant.
    fn changes_after(
        &self,
        after: Revision,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Backlog>> + Send;

    /// Records that an enforcer has applied `revision` (never lowers it).
    fn record_ack(
        &self,
        tenant: TenantId,
        enforcer: &EnforcerId,
        revision: Revision,
        now: SystemTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Records that an enforcer refused `revision`, and why.
    fn record_nack(
        &self,
        tenant: TenantId,
        enforcer: &EnforcerId,
        revision: Revision,
        reason: &str,
        now: SystemTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Every enforcer of `tenant` ever seen, by id.
    fn enforcers(
        &self,
        tenant: TenantId,
    ) -> impl Future<Output = StoreResult<Vec<EnforcerRecord>>> + Send;

    // === usage ===

    /// Stores a batch of usage events under `tenant` at most once (by batch id).
    fn store_usage(
        &self,
        tenant: TenantId,
        batch: UsageBatch,
    ) -> impl Future<Output = StoreResult<Stored>> + Send;

    /// Usage events visible to `tenant`, newest first, after `cursor`.
    fn query_usage(
        &self,
        tenant: TenantId,
        filter: &UsageFilter,
        cursor: Option<UsageCursor>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<UsageRecord>>> + Send;

    /// Deletes usage events older than `usage_before` and change-log rows
    /// more than `keep_revisions` behind the current revision.
    fn prune(
        &self,
        usage_before: SystemTime,
        keep_revisions: u64,
    ) -> impl Future<Output = StoreResult<Pruned>> + Send;
}
