//! Storage: the operations the services need, as `trait Store`, and its one
//! SQL implementation ([`SqlStore`], sqlx `Any` over SQLite or PostgreSQL).
//!
//! Every write is one transaction that takes the next revision first, checks
//! the etag, writes the rows and appends the encoded `ipgate.sync.v1.Delta`
//! to the change log, so revisions commit in order with no holes.

mod objects;
mod sql;
mod sync;
mod tokens;
mod usage;

use std::{future::Future, time::SystemTime};

use ipgate_shared::{
    ApiConfig, ApiSlug, EnforcerId, KeyConfig, KeyId, Revision, RouteRule, allowlist::Allowlist,
    proto::sync::v1 as wire, usage::UsageEvent,
};
use tokio::sync::watch;

pub use sql::{Backend, OpenError, SqlStore};

/// A tenant: every admin object and token belongs to one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TenantId(pub i64);

impl TenantId {
    /// The tenant every installation starts with.
    pub const DEFAULT: TenantId = TenantId(1);
}

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything an editor may, and manage tokens.
    Owner,
    /// Read and write APIs, keys and allowlists.
    Editor,
    /// Read only.
    Viewer,
    /// Sync and report usage events; nothing else.
    Enforcer,
}

impl Role {
    /// The role's name in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
            Role::Enforcer => "enforcer",
        }
    }

    /// The role stored as `name`.
    pub fn from_name(name: &str) -> Option<Role> {
        [Role::Owner, Role::Editor, Role::Viewer, Role::Enforcer]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

/// A token's holder, as found by its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantId,
    pub role: Role,
}

/// An API with what operators see beyond the enforcers' view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiRecord {
    pub tenant: TenantId,
    pub name: String,
    pub config: ApiConfig,
    /// Revision of the object's last change; its etag.
    pub revision: Revision,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

/// An API key with what operators see beyond the enforcers' view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub tenant: TenantId,
    pub name: String,
    pub description: String,
    pub revoked: bool,
    pub config: KeyConfig,
    /// Revision of the object's last change; its etag.
    pub revision: Revision,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

/// A new API, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewApi {
    pub slug: ApiSlug,
    pub name: String,
    pub routes: Vec<RouteRule>,
}

/// A new API key, validated; `config.api` names its API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewKey {
    pub name: String,
    pub description: String,
    pub config: KeyConfig,
}

/// The etag a write expects the object to have; `None` writes unconditionally.
pub type Expected = Option<Revision>;

/// Every API and active key at one revision, read in one transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub revision: Revision,
    pub apis: Vec<ApiConfig>,
    pub keys: Vec<KeyConfig>,
}

/// One committed revision, as the change log holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    pub revision: Revision,
    pub delta: wire::Delta,
}

/// The change log after a revision.
#[derive(Clone, Debug, PartialEq)]
pub enum Backlog {
    /// The next revisions, in order, without gaps (possibly none).
    Changes(Vec<Committed>),
    /// Some of the revisions asked for were compacted away: send a snapshot.
    Compacted,
}

/// An enforcer as the database remembers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnforcerRecord {
    pub id: String,
    pub acked: Revision,
    pub last_seen: SystemTime,
}

/// A validated batch of usage events from one enforcer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageBatch {
    pub id: uuid::Uuid,
    pub enforcer: EnforcerId,
    pub events: Vec<UsageEvent>,
    pub dropped_allowed: u64,
    pub dropped_blocked: u64,
    pub received_at: SystemTime,
}

/// What happened to a usage batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Stored now.
    New,
    /// Stored before (a retry); nothing was written.
    Duplicate,
}

/// Usage-log filters; `None` means any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageFilter {
    pub api: Option<String>,
    pub api_key_id: Option<String>,
    pub method: Option<String>,
    pub status: Option<u16>,
}

/// Position in the usage log, newest first: rows strictly older than this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageCursor {
    pub time_ms: i64,
    pub id: i64,
}

/// One stored usage event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRecord {
    pub id: i64,
    pub request_id: String,
    pub time_ms: i64,
    pub api: String,
    pub api_key_id: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub client_ip: String,
    pub reason: String,
    pub matched_label: String,
    pub enforcer_id: String,
}

/// How much a prune removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub usage_events: u64,
    pub changes: u64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("API {0:?} already exists; pick another slug")]
    ApiExists(String),
    #[error("API {0:?} not found")]
    ApiNotFound(String),
    #[error("API key {0:?} not found")]
    KeyNotFound(String),
    #[error(
        "etag {given} is stale: the object changed at revision {current}; read it again and reapply your change"
    )]
    StaleEtag { given: Revision, current: Revision },
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

/// The operations the admin, sync and usage services need.
pub trait Store: Send + Sync + 'static {
    /// The revision of the last committed change.
    fn current_revision(&self) -> impl Future<Output = StoreResult<Revision>> + Send;

    /// Told the revision of every write this process commits, right after the commit.
    fn committed(&self) -> watch::Receiver<Revision>;

    // === admin objects ===

    /// Creates an API (enabled, empty allowlist).
    fn create_api(
        &self,
        tenant: TenantId,
        api: NewApi,
        now: SystemTime,
    ) -> impl Future<Output = StoreResult<ApiRecord>> + Send;

    /// Reads one API of `tenant`.
    fn api(
        &self,
        tenant: TenantId,
        slug: &ApiSlug,
    ) -> impl Future<Output = StoreResult<Option<ApiRecord>>> + Send;

    /// Replaces an API's allowlist.
    fn set_api_allowlist(
        &self,
        tenant: TenantId,
        slug: &ApiSlug,
        allowlist: Allowlist,
        expected: Expected,
        now: SystemTime,
    ) -> impl Future<Output = StoreResult<ApiRecord>> + Send;

    /// Creates an API key for an existing API of `tenant`.
    fn create_key(
        &self,
        tenant: TenantId,
        key: NewKey,
        now: SystemTime,
    ) -> impl Future<Output = StoreResult<KeyRecord>> + Send;

    /// Reads one key of `tenant`.
    fn key(
        &self,
        tenant: TenantId,
        id: &KeyId,
    ) -> impl Future<Output = StoreResult<Option<KeyRecord>>> + Send;

    /// Replaces a key's allowlist.
    fn set_key_allowlist(
        &self,
        tenant: TenantId,
        id: &KeyId,
        allowlist: Allowlist,
        expected: Expected,
        now: SystemTime,
    ) -> impl Future<Output = StoreResult<KeyRecord>> + Send;

    // === sync ===

    /// Every API and active key, at one revision.
    fn snapshot(&self) -> impl Future<Output = StoreResult<Snapshot>> + Send;

    /// Up to `limit` revisions after `after`, in order.
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

    /// Every enforcer ever seen, by id.
    fn enforcers(&self) -> impl Future<Output = StoreResult<Vec<EnforcerRecord>>> + Send;

    // === usage ===

    /// Stores a batch of usage events at most once (by batch id).
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

    // === tokens ===

    /// Makes sure a token with this SHA-256 exists with `role`.
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

    /// The holder of the token with this SHA-256.
    fn token(
        &self,
        sha256: [u8; 32],
    ) -> impl Future<Output = StoreResult<Option<Principal>>> + Send;
}
