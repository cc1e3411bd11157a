//! The values the store reads and writes: records of admin objects as
//! operators see them, validated changes, filters and positions.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, SystemTime},
};

use ipgate_shared::{
    ApiConfig, ApiSlug, Cidr, EnforcerId, KeyConfig, KeyId, ListRules, Revision, RouteRule, Scope,
    SecretHash, proto::sync::v1 as wire, time, usage::UsageEvent,
};

use crate::allowlists::{Edit, Lockout};
pub use crate::{allowlists::CallerActivity, etag::Expected};

/// A tenant: every admin object and token belongs to one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub i64);

impl TenantId {
    /// The tenant every installation starts with: its owners run the installation.
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantId,
    pub role: Role,
    /// The token's public id (`tok_…`): the actor in the audit log.
    pub token_id: String,
}

/// Who writes, when, and whether for real.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteCtx {
    /// The tenant whose objects are written.
    pub tenant: TenantId,
    /// Token id of the caller, or [`SYSTEM_ACTOR`].
    pub actor: String,
    pub now: SystemTime,
    /// Check and compute everything, then roll back.
    pub validate_only: bool,
}

/// The actor of writes the control plane makes by itself.
pub const SYSTEM_ACTOR: &str = "system";

impl WriteCtx {
    /// A write by `caller`, now.
    pub fn by(caller: &Principal, validate_only: bool) -> Self {
        WriteCtx {
            tenant: caller.tenant,
            actor: caller.token_id.clone(),
            now: SystemTime::now(),
            validate_only,
        }
    }

    /// A write the control plane makes by itself (actor `system`).
    pub fn system(tenant: TenantId, now: SystemTime) -> Self {
        WriteCtx {
            tenant,
            actor: SYSTEM_ACTOR.to_owned(),
            now,
            validate_only: false,
        }
    }
}

// === tenants and tokens ===

/// A tenant as operators see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantRecord {
    pub key: TenantId,
    /// Public id (`default`, `acme`).
    pub id: String,
    pub name: String,
    pub created_at: SystemTime,
}

/// A new tenant, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTenant {
    pub id: String,
    pub name: String,
}

/// A token as operators see it: never its secret or hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// Public id (`tok_…`).
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Public id of its tenant.
    pub tenant: String,
    pub created_at: SystemTime,
    /// Id of the token that created it ("" for bootstrap tokens).
    pub created_by: String,
    pub revoked_at: Option<SystemTime>,
}

/// A new token: its hash only; the secret stays with the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    pub sha256: [u8; 32],
}

// === APIs and keys ===

/// When and by whom an allowlist entry was added: admin-only metadata,
/// never sent to enforcers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryOrigin {
    pub created_at: SystemTime,
    /// Token id, or `system`.
    pub created_by: String,
}

/// The origin of each entry of a list, by network.
pub type EntryOrigins = BTreeMap<Cidr, EntryOrigin>;

/// An API with what operators see beyond the enforcers' view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiRecord {
    pub tenant: TenantId,
    pub name: String,
    pub config: ApiConfig,
    pub origins: EntryOrigins,
    /// Active (unrevoked, unexpired) keys of the API.
    pub key_count: u32,
    /// Revision of the object's last change; its etag.
    pub revision: Revision,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

/// Where a key stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Revoked,
    /// Past its `expires_at`, not revoked.
    Expired,
}

/// An API key with what operators see beyond the enforcers' view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub tenant: TenantId,
    pub name: String,
    pub description: String,
    pub revoked_at: Option<SystemTime>,
    pub config: KeyConfig,
    pub origins: EntryOrigins,
    /// Revision of the object's last change; its etag.
    pub revision: Revision,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

impl KeyRecord {
    /// The key's status at `now`.
    pub fn status(&self, now: SystemTime) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.config.expires_at.is_some_and(|t| t <= now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }

    /// When the last secret replaced by a rotation stops working, if one still does.
    pub fn previous_secret_expires_at(&self, now: SystemTime) -> Option<SystemTime> {
        self.config
            .previous_secrets
            .iter()
            .map(|p| p.valid_until)
            .filter(|t| *t > now)
            .max()
    }
}

/// A new API, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewApi {
    pub slug: ApiSlug,
    pub name: String,
    pub routes: Vec<RouteRule>,
}

/// Changes to an API; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiChanges {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub routes: Option<Vec<RouteRule>>,
}

/// A new API key, validated; `config.api` names its API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewKey {
    pub name: String,
    pub description: String,
    pub config: KeyConfig,
}

/// Changes to a key; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub scopes: Option<Vec<Scope>>,
}

/// A new secret for a key, and how long the old one keeps working.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub secret_hash: SecretHash,
    pub grace: Duration,
}

/// What a deletion removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// The API as it was.
    pub api: ApiRecord,
    /// Keys revoked with it.
    pub revoked_keys: Vec<KeyId>,
    pub revision: Revision,
}

/// An allowlist write: the edit, the rules the result must pass, the etag
/// and whether the caller accepts blocking active callers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListWrite {
    pub edit: Edit,
    pub rules: ListRules,
    pub expected: Expected,
    pub acknowledge_lockout_risk: bool,
}

/// An allowlist write's result: the object and whom it starts blocking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListWritten<R> {
    pub record: R,
    pub lockout: Lockout,
}

/// Filters of `ListApis`; `None` means any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiFilter {
    pub enabled: Option<bool>,
}

/// Filters of `ListApiKeys`; `None` means any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyFilter {
    pub api: Option<ApiSlug>,
    /// Case-insensitive substring of the name.
    pub name_contains: Option<String>,
    pub status: Option<KeyStatus>,
    pub has_allowlist: Option<bool>,
}

/// Position in the key list, newest first: keys strictly older than this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyCursor {
    pub created_ms: i64,
    pub id: KeyId,
}

// === audit ===

/// One audited change, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub time: SystemTime,
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub before_json: String,
    pub after_json: String,
    pub revision: Revision,
}

/// Filters of `ListAuditEvents`; `None` means any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub actor: Option<String>,
    /// Inclusive, Unix milliseconds.
    pub start_ms: Option<i64>,
    /// Exclusive, Unix milliseconds.
    pub end_ms: Option<i64>,
}

// === sync ===

/// Every API and active key of one tenant at one revision, read in one transaction.
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
    /// The tenant whose objects changed: only its enforcers see the changes.
    pub tenant: TenantId,
    pub delta: wire::Delta,
    /// The revision revoked a token: sessions check theirs again before
    /// they send it or anything after it.
    pub revokes_token: bool,
}

impl Committed {
    /// The delta as `tenant`'s enforcers see it: empty unless it is theirs,
    /// so every revision arrives, in order, and nothing of others leaks.
    pub fn delta_for(&self, tenant: TenantId) -> wire::Delta {
        if self.tenant == tenant {
            self.delta.clone()
        } else {
            wire::Delta {
                revision: self.revision.get(),
                changes: Vec::new(),
            }
        }
    }
}

/// The change log after a revision.
#[derive(Clone, Debug, PartialEq)]
pub enum Backlog {
    /// The next revisions, in order, without gaps (possibly none).
    Changes(Vec<Committed>),
    /// Some of the revisions asked for were compacted away: send a snapshot.
    Compacted,
}

/// An enforcer as the database remembers it, or as the replica it is
/// connected to knows it right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnforcerRecord {
    pub id: String,
    /// Highest revision it acknowledged.
    pub acked: Revision,
    /// Its last message (Hello, Ack, Nack or heartbeat).
    pub last_seen: SystemTime,
    /// The control-plane replica it is connected to; empty when none.
    pub replica: String,
    /// Its address as the replica saw it.
    pub address: String,
    /// The version it said in its Hello.
    pub version: String,
    /// When its current session started (`None` when not connected).
    pub connected_since: Option<SystemTime>,
    /// Usage events in its queues, and dropped since it started, at its
    /// last heartbeat.
    pub events_buffered: u64,
    pub events_dropped: u64,
    /// The last update it refused.
    pub nack: Option<NackRecord>,
}

/// An update an enforcer refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NackRecord {
    pub revision: Revision,
    pub reason: String,
    pub at: SystemTime,
}

// === usage ===

/// A validated batch of usage events from one enforcer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageBatch {
    pub id: uuid::Uuid,
    pub enforcer: EnforcerId,
    pub events: Vec<UsageEvent>,
    pub dropped_allowed: u64,
    pub dropped_blocked: u64,
    /// The first and last drop; `None` places drops at `received_at`.
    pub dropped_window: Option<(SystemTime, SystemTime)>,
    pub received_at: SystemTime,
}

impl UsageBatch {
    /// The gap this batch leaves in the log, first and last drop in
    /// milliseconds; `None` when it dropped nothing.
    pub(super) fn gap_ms(&self) -> Option<(i64, i64)> {
        if self.dropped_allowed == 0 && self.dropped_blocked == 0 {
            return None;
        }
        let (first, last) = self
            .dropped_window
            .unwrap_or((self.received_at, self.received_at));
        Some((time::to_millis(first), time::to_millis(last)))
    }
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
    /// Any of these reasons (by name).
    pub reasons: Option<Vec<String>>,
    /// The door, by the name the log stores (`proxy`, …, `unknown`).
    pub door: Option<String>,
    /// Where the client address was found, by the name the log stores
    /// (`peer`, …, `malformed`, …, `unknown`).
    pub client_ip_source: Option<String>,
    /// Client addresses from .. to, inclusive, as 16-byte keys.
    pub client_ips: Option<([u8; 16], [u8; 16])>,
    /// Inclusive, Unix milliseconds.
    pub start_ms: Option<i64>,
    /// Exclusive, Unix milliseconds.
    pub end_ms: Option<i64>,
    /// The reporting enforcer's id.
    pub enforcer_id: Option<String>,
    /// Only requests (`Some(false)`) or only gaps (`Some(true)`).
    pub gaps: Option<bool>,
}

/// An API or a key, as a usage-log filter names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Named<'a> {
    Api(&'a str),
    Key(&'a str),
}

/// Position in the usage log, newest first: rows strictly older than this.
/// A gap's `id` is its row id negated, so within one millisecond requests
/// come before gaps and one cursor orders both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageCursor {
    pub time_ms: i64,
    pub id: i64,
}

/// One stored usage event, or a gap: then `dropped` is set, `time_ms` is
/// the first drop, `enforcer_id` the enforcer, and the other text fields
/// are empty (`status` 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRecord {
    /// The row id; a gap's is negated ([`UsageCursor`]).
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
    /// The door's name, or `unknown`.
    pub door: String,
    /// The client address's source, or `unknown`.
    pub client_ip_source: String,
    /// Set for a gap.
    pub dropped: Option<DroppedRecord>,
}

/// What a gap in the usage log counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DroppedRecord {
    pub allowed: u64,
    pub blocked: u64,
    /// The last drop, Unix milliseconds (the first is the record's `time_ms`).
    pub last_ms: i64,
}

/// How much a prune removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Usage events deleted row by row.
    pub usage_events: u64,
    /// Days of usage events dropped whole (PostgreSQL's day partitions).
    pub usage_days: u64,
    pub changes: u64,
}

/// A counter or revision as a database integer (BIGINT is signed).
pub(super) fn db_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The sortable key of a client address: IPv4 as IPv4-mapped IPv6.
pub fn ip_key(ip: IpAddr) -> [u8; 16] {
    match ipgate_shared::normalize_ip(ip) {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}
