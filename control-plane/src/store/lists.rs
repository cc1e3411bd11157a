//! Allowlist writes, once for every object that holds a list ([`ListOwner`]:
//! an API, an API key): the edit, the lockout check against the usage log,
//! entry origins, and the sweep that removes expired entries.
//!
//! The lockout preview reads up to 24 hours of the usage log, so it runs
//! before the write's transaction: on SQLite the write lock covers the
//! whole database, and one editor's scan must not hold up every other
//! tenant's writes and usage ingestion. Inside the transaction the object
//! must still be at the revision the preview was computed for; if another
//! write changed it meanwhile, the edit and the preview are computed again
//! (and, should the list keep changing, inside the transaction, so every
//! write makes progress).

use std::{collections::HashMap, fmt, future::Future, net::IpAddr, time::SystemTime};

use ipgate_shared::{ListRules, Revision, allowlist::Allowlist, normalize_ip, time};
use sqlx::{AnyConnection, Row};

use super::{
    db::Store,
    error::{StoreError, StoreResult},
    preview_hold::PreviewHold,
    records::{
        ApiRecord, CallerActivity, EntryOrigin, EntryOrigins, KeyRecord, ListWrite, ListWritten,
        TenantId, WriteCtx,
    },
    write::{Kind, Write},
};
use crate::{
    allowlists::{Edit, LOCKOUT_WINDOW, Lockout, preview},
    etag,
};

/// Reasons of requests that were let through: the callers a list can lock out.
const ALLOWED_REASONS: &str = "('ALLOWED', 'WOULD_BLOCK_IP', 'UNSYNCED_FAIL_OPEN')";
/// How often a write plans outside its transaction when other writes keep
/// changing the same list, before it plans inside.
const PREVIEW_ATTEMPTS: usize = 3;

/// An object that holds an allowlist. Each kind says how it is found,
/// saved and audited; [`Store::write_allowlist`] does the rest, once for all.
pub trait ListOwner: Clone + Send + Sync + Sized + 'static {
    /// How requests name the object: `ApiSlug`, `KeyId`.
    type Id: fmt::Display + Send + Sync + 'static;
    /// The usage-log column naming the object (`api`, `api_key_id`): whose
    /// callers a lockout preview reads.
    const USAGE_COLUMN: &'static str;
    /// The start of its audit actions (`api` in `api.allowlist.add`).
    const AUDIT_NAME: &'static str;

    /// The object `id` of `tenant`; other tenants' objects are not found.
    fn load(
        conn: &mut AnyConnection,
        tenant: TenantId,
        id: &Self::Id,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<Option<Self>>> + Send;

    /// The error for an object that does not exist (for this tenant).
    fn not_found(id: &Self::Id) -> StoreError;

    /// Revision of the object's last change; its etag.
    fn revision(&self) -> Revision;

    /// The list.
    fn allowlist(&self) -> &Allowlist;

    /// The list and the origins of its entries, to change.
    fn list_mut(&mut self) -> (&mut Allowlist, &mut EntryOrigins);

    /// Stores `after` at the write's revision, and notes the change for
    /// enforcers and the audit row `action` (from `before`).
    fn save(
        w: &mut Write,
        before: &Self,
        after: &mut Self,
        action: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Objects with an entry expired at `now_ms`, with their tenants.
    fn due_for_sweep(
        conn: &mut AnyConnection,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<Vec<(TenantId, Self::Id)>>> + Send;
}

/// A write worked out before its transaction: the list it stores, whom that
/// starts blocking, and the object's revision both were computed from.
struct Plan {
    at: Revision,
    list: Allowlist,
    lockout: Lockout,
}

impl Store {
    /// Edits the allowlist of the object `id`; see the module docs.
    pub async fn write_allowlist<O: ListOwner>(
        &self,
        ctx: &WriteCtx,
        id: &O::Id,
        write: ListWrite,
    ) -> StoreResult<ListWritten<O>> {
        // The instant the plan and the write share, as the write stores it.
        let ctx = WriteCtx {
            now: time::from_millis(time::to_millis(ctx.now)),
            ..ctx.clone()
        };
        let action = format!("{}.allowlist.{}", O::AUDIT_NAME, write.edit.verb());
        for _ in 0..PREVIEW_ATTEMPTS {
            let plan = {
                let mut conn = self.pool.acquire().await?;
                self.plan::<O>(&mut conn, &ctx, id, &write).await?.1
            };
            let result = self
                .write(&ctx, Kind::Config, async |w| {
                    let (tenant, now_ms) = (w.tenant(), w.now_ms);
                    let before = O::load(w.conn(), tenant, id, now_ms)
                        .await?
                        .ok_or_else(|| O::not_found(id))?;
                    etag::check(write.expected, before.revision())?;
                    if before.revision() != plan.at {
                        // Changed since the plan: roll back and plan again.
                        return Err(StoreError::Contended(id.to_string()));
                    }
                    commit(w, &before, &plan, &action).await
                })
                .await;
            match result {
                Err(StoreError::Contended(_)) => continue,
                result => {
                    return result.map(|record| ListWritten {
                        record,
                        lockout: plan.lockout,
                    });
                }
            }
        }
        // Other writes keep changing this list: plan inside the transaction
        // this time, where it cannot change, so the write makes progress.
        self.write(&ctx, Kind::Config, async |w| {
            let ctx = w.ctx.clone();
            let (before, plan) = self.plan::<O>(w.conn(), &ctx, id, &write).await?;
            let record = commit(w, &before, &plan, &action).await?;
            Ok(ListWritten {
                record,
                lockout: plan.lockout,
            })
        })
        .await
    }

    /// Removes entries expired at `now` from every list, object by object,
    /// each a write of its own (actor `system`) so one failure does not hold
    /// back the rest; returns how many objects changed.
    pub async fn remove_expired_entries(&self, now: SystemTime) -> StoreResult<usize> {
        Ok(self.sweep::<ApiRecord>(now).await? + self.sweep::<KeyRecord>(now).await?)
    }

    async fn sweep<O: ListOwner>(&self, now: SystemTime) -> StoreResult<usize> {
        let due = {
            let mut conn = self.pool.acquire().await?;
            O::due_for_sweep(&mut conn, time::to_millis(now)).await?
        };
        let mut changed = 0;
        for (tenant, id) in due {
            let result = self
                .write_allowlist::<O>(&WriteCtx::system(tenant, now), &id, expire())
                .await;
            changed += swept(result.map(|_| ()), &id);
        }
        Ok(changed)
    }

    /// The list after `write` and whom it starts blocking, read and computed
    /// outside any transaction; refused with `LockoutRisk` unless nobody is
    /// blocked, the caller acknowledged it, or this is a dry run (which
    /// reports the preview instead).
    async fn plan<O: ListOwner>(
        &self,
        conn: &mut AnyConnection,
        ctx: &WriteCtx,
        id: &O::Id,
        write: &ListWrite,
    ) -> StoreResult<(O, Plan)> {
        let now = ctx.now;
        let current = O::load(conn, ctx.tenant, id, time::to_millis(now))
            .await?
            .ok_or_else(|| O::not_found(id))?;
        etag::check(write.expected, current.revision())?;
        let list = write.edit.apply(current.allowlist(), write.rules, now)?;
        let since = now
            .checked_sub(LOCKOUT_WINDOW)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let lockout = if write.edit == Edit::Expire {
            if list == *current.allowlist() {
                return Err(StoreError::Unchanged);
            }
            // Expired entries match nothing: dropping them blocks no one,
            // so the sweep never reads the usage log.
            Lockout::none(since)
        } else {
            self.previews.pass(ctx.tenant).await;
            // The usage log may be another database than `conn`'s.
            let mut log = self.usage.reads.acquire().await?;
            let activity = activity(
                &mut log,
                ctx.tenant,
                O::USAGE_COLUMN,
                &id.to_string(),
                since,
            )
            .await?;
            preview(current.allowlist(), &list, activity, since, now)
        };
        if !lockout.is_empty() && !write.acknowledge_lockout_risk && !ctx.validate_only {
            return Err(StoreError::LockoutRisk(Box::new(lockout)));
        }
        let plan = Plan {
            at: current.revision(),
            list,
            lockout,
        };
        Ok((current, plan))
    }
}

/// Stores the planned list on the object as `before` read it.
async fn commit<O: ListOwner>(
    w: &mut Write,
    before: &O,
    plan: &Plan,
    action: &str,
) -> StoreResult<O> {
    let mut after = before.clone();
    let origin = w.origin();
    let (list, origins) = after.list_mut();
    list.clone_from(&plan.list);
    add_origins(origins, list, origin);
    O::save(w, before, &mut after, action).await?;
    Ok(after)
}

/// Dropping expired entries. Expiry was chosen by an operator, so it is not
/// a lockout risk.
fn expire() -> ListWrite {
    ListWrite {
        edit: Edit::Expire,
        rules: ListRules {
            max_entries: usize::MAX,
            allow_private_ranges: true,
        },
        expected: None,
        acknowledge_lockout_risk: true,
    }
}

fn swept(result: StoreResult<()>, object: &dyn fmt::Display) -> usize {
    match result {
        Ok(()) => 1,
        // Deleted meanwhile, or swept by another replica: nothing left to do.
        Err(StoreError::ApiNotFound(_) | StoreError::KeyNotFound(_) | StoreError::Unchanged) => 0,
        Err(error) => {
            tracing::warn!(%error, %object, "cannot remove expired entries; retrying later");
            0
        }
    }
}

/// Keeps the origin of entries already on the list; new ones are this write's.
fn add_origins(origins: &mut EntryOrigins, list: &Allowlist, origin: EntryOrigin) {
    for entry in list.entries() {
        origins
            .entry(entry.cidr())
            .or_insert_with(|| origin.clone());
    }
}

/// Allowed requests per client address since `since`, in the tenant's
/// usage log, of the object whose name is `value` in `column`.
async fn activity(
    conn: &mut AnyConnection,
    tenant: TenantId,
    column: &str,
    value: &str,
    since: SystemTime,
) -> StoreResult<Vec<CallerActivity>> {
    let sql = format!(
        "SELECT client_ip, COUNT(*) AS requests, MAX(time_ms) AS last_seen FROM usage_events \
         WHERE {column} = $1 AND tenant_id = $2 AND time_ms >= $3 AND reason IN {ALLOWED_REASONS} \
         GROUP BY client_ip"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(value)
        .bind(tenant.0)
        .bind(time::to_millis(since))
        .fetch_all(conn)
        .await?;
    // An IPv4-mapped address is its IPv4 address: one caller, counted once.
    let mut callers: HashMap<IpAddr, CallerActivity> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let ip: String = row.try_get("client_ip")?;
        let requests: i64 = row.try_get("requests")?;
        let last_seen = time::from_millis(row.try_get("last_seen")?);
        // Addresses were validated when stored; skip anything else.
        let Ok(ip) = ip.parse::<IpAddr>().map(normalize_ip) else {
            continue;
        };
        let requests = u64::try_from(requests).unwrap_or_default();
        callers
            .entry(ip)
            .and_modify(|c| {
                c.requests += requests;
                c.last_seen = c.last_seen.max(last_seen);
            })
            .or_insert(CallerActivity {
                ip,
                requests,
                last_seen,
            });
    }
    Ok(callers.into_values().collect())
}

impl Store {
    /// For tests: holds `tenant`'s lockout previews at their start until
    /// the returned guard is dropped.
    #[doc(hidden)]
    pub fn hold_lockout_previews(&self, tenant: TenantId) -> PreviewHold {
        self.previews.hold(tenant)
    }
}
