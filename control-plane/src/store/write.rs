//! The one shape of every admin write: open a write transaction, take the
//! next revision (configuration writes) or the same lock (token and tenant
//! writes), run the operation, append its change-log row and its audit
//! rows, then commit — or roll back, for an error or `validate_only` — and
//! tell the change feed. Each operation is its business logic only.

use ipgate_shared::{Change, Revision, proto::sync::v1 as wire, time};
use prost::Message;
use serde_json::Value;
use sqlx::{AnyConnection, Row};

use super::{
    db::{Store, Tx, revision},
    error::StoreResult,
    records::db_int,
    records::{EntryOrigin, TenantId, WriteCtx},
};

/// Whether a write changes what enforcers see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// APIs, keys, allowlists: a new revision and a change-log row.
    Config,
    /// Tenants and tokens: audited at revision 0, nothing for enforcers.
    Admin,
}

/// An object an audit row is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Object<'a> {
    Tenant(&'a str),
    Token(&'a str),
    Api(&'a str),
    Key(&'a str),
}

impl Object<'_> {
    fn parts(self) -> (&'static str, String) {
        match self {
            Object::Tenant(id) => ("tenant", id.to_owned()),
            Object::Token(id) => ("token", id.to_owned()),
            Object::Api(slug) => ("api", slug.to_owned()),
            Object::Key(id) => ("api_key", id.to_owned()),
        }
    }
}

struct AuditRow {
    tenant: TenantId,
    action: String,
    object_type: &'static str,
    object_id: String,
    before: Option<Value>,
    after: Option<Value>,
}

/// A write in progress: its transaction, its revision, and the changes and
/// audit rows it collects. Only the store makes one.
pub struct Write {
    pub(super) tx: Tx,
    pub(super) ctx: WriteCtx,
    pub(super) now_ms: i64,
    /// The revision this write commits at (zero for [`Kind::Admin`]).
    pub(super) revision: Revision,
    changes: Vec<Change>,
    audit: Vec<AuditRow>,
    revokes_token: bool,
}

impl Write {
    /// The connection, for queries.
    pub(super) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// The writer's tenant.
    pub(super) fn tenant(&self) -> TenantId {
        self.ctx.tenant
    }

    /// The origin of entries this write adds.
    pub(super) fn origin(&self) -> EntryOrigin {
        EntryOrigin {
            created_at: self.ctx.now,
            created_by: self.ctx.actor.clone(),
        }
    }

    /// Notes that this write revokes a token: sessions check their token
    /// again at this revision (a [`Kind::Config`] write).
    pub(super) fn revokes_token(&mut self) {
        self.revokes_token = true;
    }

    /// Notes a change enforcers must apply at this revision.
    pub(super) fn change(&mut self, change: Change) {
        self.changes.push(change);
    }

    /// Notes an audit row for `object`: `before`/`after` are `None` when it
    /// did not exist.
    pub(super) fn audit(
        &mut self,
        action: impl Into<String>,
        object: Object<'_>,
        before: Option<Value>,
        after: Option<Value>,
    ) {
        let tenant = self.ctx.tenant;
        self.audit_in(tenant, action, object, before, after);
    }

    /// Like [`Write::audit`], in another tenant's log.
    pub(super) fn audit_in(
        &mut self,
        tenant: TenantId,
        action: impl Into<String>,
        object: Object<'_>,
        before: Option<Value>,
        after: Option<Value>,
    ) {
        let (object_type, object_id) = object.parts();
        self.audit.push(AuditRow {
            tenant,
            action: action.into(),
            object_type,
            object_id,
            before,
            after,
        });
    }
}

impl Store {
    /// Runs `op` as one write of `kind` for `ctx`; see the module docs.
    pub(super) async fn write<T>(
        &self,
        ctx: &WriteCtx,
        kind: Kind,
        op: impl AsyncFnOnce(&mut Write) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut tx = self.begin_write().await?;
        let revision = match kind {
            Kind::Config => bump_revision(&mut tx).await?,
            Kind::Admin => {
                lock_writes(&mut tx).await?;
                Revision::ZERO
            }
        };
        // Instants are stored in milliseconds: the records returned say
        // exactly what a later read will.
        let now_ms = time::to_millis(ctx.now);
        let mut write = Write {
            tx,
            ctx: WriteCtx {
                now: time::from_millis(now_ms),
                ..ctx.clone()
            },
            now_ms,
            revision,
            changes: Vec::new(),
            audit: Vec::new(),
            revokes_token: false,
        };
        let result = match op(&mut write).await {
            Ok(value) => record(&mut write, kind).await.map(|()| value),
            Err(e) => Err(e),
        };
        let Write { tx, .. } = write;
        if ctx.validate_only || result.is_err() {
            // The error that made us roll back is the one worth reporting.
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "rollback failed");
            }
            return result;
        }
        tx.commit().await?;
        if kind == Kind::Config {
            self.announce(revision);
        }
        result
    }
}

/// Appends the change-log row (configuration writes) and the audit rows.
async fn record(write: &mut Write, kind: Kind) -> StoreResult<()> {
    if kind == Kind::Config {
        let changes: Vec<wire::Change> = write.changes.iter().map(wire::Change::from).collect();
        let row = ChangeRow {
            tenant: write.ctx.tenant,
            revision: write.revision,
            now_ms: write.now_ms,
            revokes_token: write.revokes_token,
        };
        append_change(&mut write.tx, row, changes).await?;
    }
    let rows = std::mem::take(&mut write.audit);
    for row in rows {
        let json = |v: Option<Value>| v.map(|v| v.to_string()).unwrap_or_default();
        sqlx::query(
            "INSERT INTO audit_events (tenant_id, time_ms, actor, action, object_type, \
             object_id, before_json, after_json, revision) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(row.tenant.0)
        .bind(write.now_ms)
        .bind(write.ctx.actor.as_str())
        .bind(row.action)
        .bind(row.object_type)
        .bind(row.object_id)
        .bind(json(row.before))
        .bind(json(row.after))
        .bind(db_int(write.revision.get()))
        .execute(&mut *write.tx)
        .await?;
    }
    Ok(())
}

/// Takes the lock configuration writes take, without a revision: token
/// and tenant writes (e.g. "never revoke the last owner") are serialised
/// with every other write.
async fn lock_writes(tx: &mut Tx) -> StoreResult<()> {
    sqlx::query("UPDATE meta SET revision = revision WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Takes the next revision: the first statement of every write, so the
/// transaction holds the write lock (SQLite) or the `meta` row lock
/// (PostgreSQL) until it commits, and revisions commit in order.
async fn bump_revision(tx: &mut Tx) -> StoreResult<Revision> {
    let row =
        sqlx::query("UPDATE meta SET revision = revision + 1 WHERE id = 1 RETURNING revision")
            .fetch_one(&mut **tx)
            .await?;
    revision(row.try_get(0)?)
}

/// What a change-log row says besides its delta.
struct ChangeRow {
    tenant: TenantId,
    revision: Revision,
    now_ms: i64,
    revokes_token: bool,
}

/// Appends the delta of `row.revision` to the change log.
async fn append_change(tx: &mut Tx, row: ChangeRow, changes: Vec<wire::Change>) -> StoreResult<()> {
    let delta = wire::Delta {
        revision: row.revision.get(),
        changes,
    };
    sqlx::query(
        "INSERT INTO changes (revision, tenant_id, committed_at, delta, revokes_token) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(db_int(row.revision.get()))
    .bind(row.tenant.0)
    .bind(row.now_ms)
    .bind(delta.encode_to_vec())
    .bind(i64::from(row.revokes_token))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
