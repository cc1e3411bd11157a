//! Gaps in the usage log: the drops a batch reports, one row per batch in
//! `usage_gaps` (written with the batch by the log's writers), read back as [`UsageRecord`]s with `dropped` set and a
//! negated id, so they page with the events in one order.

use std::fmt::Write as _;

use ipgate_shared::Reason;
use sqlx::{Row, any::AnyRow};

use super::{
    args::Args,
    db::Store,
    error::{StoreError, StoreResult},
    records::{DroppedRecord, TenantId, UsageCursor, UsageFilter, UsageRecord},
};

impl Store {
    /// Gaps visible to `tenant` that `filter` keeps (see
    /// `QueryUsageLogsRequest` in admin.proto), newest first, after `cursor`.
    pub(super) async fn query_gaps(
        &self,
        tenant: TenantId,
        filter: &UsageFilter,
        cursor: Option<UsageCursor>,
        limit: u32,
    ) -> StoreResult<Vec<UsageRecord>> {
        let mut sql = String::from(
            "SELECT id, enforcer_id, first_ms, last_ms, dropped_allowed, dropped_blocked \
             FROM usage_gaps WHERE ",
        );
        let mut args = Args::default();
        let _ = write!(sql, "tenant_id = {}", args.int(tenant.0));
        if let Some(enforcer) = &filter.enforcer_id {
            let _ = write!(sql, " AND enforcer_id = {}", args.text(enforcer));
        }
        if let Some(reasons) = &filter.reasons {
            let class = |allowed: bool| {
                reasons
                    .iter()
                    .any(|r| r.parse::<Reason>().is_ok_and(|r| r.allowed() == allowed))
            };
            let _ = match (class(true), class(false)) {
                (true, true) => Ok(()),
                (true, false) => write!(sql, " AND dropped_allowed > 0"),
                (false, true) => write!(sql, " AND dropped_blocked > 0"),
                (false, false) => write!(sql, " AND 1 = 0"),
            };
        }
        // A gap overlapping the range is in it.
        if let Some(start) = filter.start_ms {
            let _ = write!(sql, " AND last_ms >= {}", args.int(start));
        }
        if let Some(end) = filter.end_ms {
            let _ = write!(sql, " AND first_ms < {}", args.int(end));
        }
        if let Some(UsageCursor { time_ms, id }) = cursor {
            // A gap's position is (first_ms, -id).
            let t = args.int(time_ms);
            let i = args.int(id.saturating_neg());
            let _ = write!(
                sql,
                " AND (first_ms < {t} OR (first_ms = {t} AND id > {i}))"
            );
        }
        let l = args.int(i64::from(limit));
        let _ = write!(sql, " ORDER BY first_ms DESC, id ASC LIMIT {l}");

        let mut conn = self.usage.reads.acquire().await?;
        let rows = args
            .bind(sqlx::query(sqlx::AssertSqlSafe(sql)))
            .fetch_all(&mut *conn)
            .await?;
        rows.iter().map(gap_record).collect()
    }
}

fn gap_record(row: &AnyRow) -> StoreResult<UsageRecord> {
    let count = |column: &str| -> StoreResult<u64> {
        let n: i64 = row.try_get(column)?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{column} {n}")))
    };
    let id: i64 = row.try_get("id")?;
    Ok(UsageRecord {
        id: -id,
        request_id: String::new(),
        time_ms: row.try_get("first_ms")?,
        api: String::new(),
        api_key_id: String::new(),
        method: String::new(),
        path: String::new(),
        status: 0,
        client_ip: String::new(),
        reason: String::new(),
        matched_label: String::new(),
        enforcer_id: row.try_get("enforcer_id")?,
        door: String::new(),
        client_ip_source: String::new(),
        dropped: Some(DroppedRecord {
            allowed: count("dropped_allowed")?,
            blocked: count("dropped_blocked")?,
            last_ms: row.try_get("last_ms")?,
        }),
    })
}
