//! Allowlist writes, for APIs and keys alike: the edit, the lockout check
//! against the usage log, entry metadata, and the sweep that removes
//! expired entries.

use std::{collections::HashMap, net::IpAddr, time::SystemTime};

use ipgate_shared::{ApiSlug, Change, KeyId, allowlist::Allowlist, normalize_ip, time};
use sqlx::{AnyConnection, Row};

use super::{
    ApiRecord, CallerActivity, EntryOrigins, KeyRecord, ListWrite, ListWritten, StoreError,
    StoreResult, TenantId, WriteCtx,
    apis::{apis_with_expired_entries, edit_api, save_api},
    keys::{edit_key, keys_with_expired_entries, save_key},
    sql::SqlStore,
    write::{Kind, Object, Write},
};
use crate::{
    allowlists::{Edit, LOCKOUT_WINDOW, Lockout, preview},
    audit,
};

/// Reasons of requests that were let through: the callers a list can lock out.
const ALLOWED_REASONS: &str = "('ALLOWED', 'WOULD_BLOCK_IP', 'UNSYNCED_FAIL_OPEN')";

/// Whose usage a lockout check reads.
enum Target<'a> {
    Api(&'a ApiSlug),
    Key(&'a KeyId),
}

impl SqlStore {
    pub(super) async fn write_api_allowlist_tx(
        &self,
        ctx: &WriteCtx,
        slug: &ApiSlug,
        write: ListWrite,
    ) -> StoreResult<ListWritten<ApiRecord>> {
        self.write(ctx, Kind::Config, async |w| {
            let before = edit_api(w, slug, write.expected).await?;
            let mut record = before.clone();
            let (list, lockout) =
                edited(w, &before.config.allowlist, &write, Target::Api(slug)).await?;
            record.config.allowlist = list;
            add_origins(&mut record.origins, &record.config.allowlist, w);
            save_api(w, &mut record).await?;
            w.change(Change::PutApi(record.config.clone()));
            w.audit(
                format!("api.allowlist.{}", write.edit.verb()),
                Object::Api(slug.as_str()),
                Some(audit::api(&before)),
                Some(audit::api(&record)),
            );
            Ok(ListWritten { record, lockout })
        })
        .await
    }

    pub(super) async fn write_key_allowlist_tx(
        &self,
        ctx: &WriteCtx,
        id: &KeyId,
        write: ListWrite,
    ) -> StoreResult<ListWritten<KeyRecord>> {
        self.write(ctx, Kind::Config, async |w| {
            let before = edit_key(w, id, write.expected).await?;
            let mut record = before.clone();
            let (list, lockout) =
                edited(w, &before.config.allowlist, &write, Target::Key(id)).await?;
            record.config.allowlist = list;
            add_origins(&mut record.origins, &record.config.allowlist, w);
            save_key(w, &mut record).await?;
            let action = format!("api_key.allowlist.{}", write.edit.verb());
            w.audit_key(&action, &before, &record);
            Ok(ListWritten { record, lockout })
        })
        .await
    }

    /// Removes expired entries object by object, each a write of its own so
    /// one failure does not hold back the rest.
    pub(super) async fn sweep_expired_entries(&self, now: SystemTime) -> StoreResult<usize> {
        let now_ms = time::to_millis(now);
        let (apis, keys) = {
            let mut conn = self.pool.acquire().await?;
            (
                apis_with_expired_entries(&mut conn, now_ms).await?,
                keys_with_expired_entries(&mut conn, now_ms).await?,
            )
        };
        let mut changed = 0;
        for (tenant, slug) in apis {
            let result = self
                .write_api_allowlist_tx(&WriteCtx::system(tenant, now), &slug, sweep())
                .await;
            changed += swept(result.map(|_| ()), slug.as_str());
        }
        for (tenant, id) in keys {
            let result = self
                .write_key_allowlist_tx(&WriteCtx::system(tenant, now), &id, sweep())
                .await;
            changed += swept(result.map(|_| ()), id.as_str());
        }
        Ok(changed)
    }
}

/// Dropping expired entries. Expiry was chosen by an operator, so it is not
/// a lockout risk.
fn sweep() -> ListWrite {
    ListWrite {
        edit: Edit::Expire,
        rules: ipgate_shared::ListRules {
            max_entries: usize::MAX,
            allow_private_ranges: true,
        },
        expected: None,
        acknowledge_lockout_risk: true,
    }
}

fn swept(result: StoreResult<()>, object: &str) -> usize {
    match result {
        Ok(()) => 1,
        // Deleted meanwhile, or swept by another replica: nothing left to do.
        Err(StoreError::ApiNotFound(_) | StoreError::KeyNotFound(_) | StoreError::Unchanged) => 0,
        Err(error) => {
            tracing::warn!(%error, object, "cannot remove expired entries; retrying later");
            0
        }
    }
}

/// The list after `write`, and whom it starts blocking; refused with
/// `LockoutRisk` unless nobody is, the caller acknowledged it, or this is a
/// dry run (which reports the preview instead).
async fn edited(
    w: &mut Write,
    current: &Allowlist,
    write: &ListWrite,
    target: Target<'_>,
) -> StoreResult<(Allowlist, Lockout)> {
    let now = w.ctx.now;
    let list = write.edit.apply(current, write.rules, now)?;
    if write.edit == Edit::Expire && list == *current {
        return Err(StoreError::Unchanged);
    }
    let since = now
        .checked_sub(LOCKOUT_WINDOW)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let tenant = w.tenant();
    let activity = activity(w.conn(), tenant, &target, since).await?;
    let lockout = preview(current, &list, activity, since, now);
    if !lockout.is_empty() && !write.acknowledge_lockout_risk && !w.ctx.validate_only {
        return Err(StoreError::LockoutRisk(Box::new(lockout)));
    }
    Ok((list, lockout))
}

/// Keeps the origin of entries already on the list; new ones are this write's.
fn add_origins(origins: &mut EntryOrigins, list: &Allowlist, w: &Write) {
    for entry in list.entries() {
        origins.entry(entry.cidr()).or_insert_with(|| w.origin());
    }
}

/// Allowed requests per client address since `since`, of the tenant's
/// usage log for `target`.
async fn activity(
    conn: &mut AnyConnection,
    tenant: TenantId,
    target: &Target<'_>,
    since: SystemTime,
) -> StoreResult<Vec<CallerActivity>> {
    let (column, value) = match target {
        Target::Api(slug) => ("api", slug.as_str()),
        Target::Key(id) => ("api_key_id", id.as_str()),
    };
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
