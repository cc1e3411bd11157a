//! The usage log's reads: filtered, paged, gaps (`gaps.rs`) merged with
//! events by time; and its writes, handed to the log's writers
//! (`usage_log.rs`), which store a batch at most once and leave a gap for
//! a batch that reports drops.

use std::fmt::Write as _;

use sqlx::{Row, any::AnyRow};

use super::{
    args::Args,
    db::Store,
    error::{StoreError, StoreResult},
    records::{Named, Stored, TenantId, UsageBatch, UsageCursor, UsageFilter, UsageRecord},
};

impl Store {
    /// Whether `tenant` has, or had, the API or key `named`: it exists
    /// (a revoked key included) or the usage log speaks of it.
    pub async fn knows(&self, tenant: TenantId, named: Named<'_>) -> StoreResult<bool> {
        let (config, log, name) = match named {
            Named::Api(slug) => (
                "SELECT 1 FROM apis WHERE slug = $1 AND tenant_id = $2",
                "SELECT 1 FROM usage_events WHERE api = $1 AND tenant_id = $2 LIMIT 1",
                slug,
            ),
            Named::Key(id) => (
                "SELECT 1 FROM api_keys WHERE id = $1 AND tenant_id = $2",
                "SELECT 1 FROM usage_events WHERE api_key_id = $1 AND tenant_id = $2 LIMIT 1",
                id,
            ),
        };
        // The log may be another database: two questions, not one.
        for (sql, pool) in [(config, &self.pool), (log, &self.usage.reads)] {
            let mut conn = pool.acquire().await?;
            let row = sqlx::query(sql)
                .bind(name)
                .bind(tenant.0)
                .fetch_optional(&mut *conn)
                .await?;
            if row.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Stores a batch of usage events under `tenant` at most once (by
    /// batch id); answers once it is durable. Never waits for the
    /// configuration's write lock.
    pub async fn store_usage(&self, tenant: TenantId, batch: UsageBatch) -> StoreResult<Stored> {
        self.usage.store(tenant, batch).await
    }

    /// Usage events and gaps visible to `tenant`, newest first, after
    /// `cursor`: the first `limit` of each, merged by time.
    pub async fn query_usage(
        &self,
        tenant: TenantId,
        filter: &UsageFilter,
        cursor: Option<UsageCursor>,
        limit: u32,
    ) -> StoreResult<Vec<UsageRecord>> {
        let events = match filter.gaps {
            Some(true) => Vec::new(),
            _ => self.query_events(tenant, filter, cursor, limit).await?,
        };
        let gaps = match filter.gaps {
            Some(false) => Vec::new(),
            _ => self.query_gaps(tenant, filter, cursor, limit).await?,
        };
        let newest_first = |r: &UsageRecord| std::cmp::Reverse((r.time_ms, r.id));
        let mut rows = events;
        rows.extend(gaps);
        rows.sort_by_key(newest_first);
        rows.truncate(limit as usize);
        Ok(rows)
    }

    /// Usage events visible to `tenant`, newest first, after `cursor`.
    async fn query_events(
        &self,
        tenant: TenantId,
        filter: &UsageFilter,
        cursor: Option<UsageCursor>,
        limit: u32,
    ) -> StoreResult<Vec<UsageRecord>> {
        let mut sql = String::from(
            "SELECT id, request_id, time_ms, api, api_key_id, method, path, status_code, \
             client_ip, reason, matched_label, enforcer_id, door, client_ip_source \
             FROM usage_events WHERE ",
        );
        let mut args = Args::default();
        // Events are stored under the reporting enforcer's tenant.
        let _ = write!(sql, "tenant_id = {}", args.int(tenant.0));
        let UsageFilter {
            api,
            api_key_id,
            method,
            status,
            reasons,
            door,
            client_ip_source,
            client_ips,
            start_ms,
            end_ms,
            enforcer_id,
            gaps: _,
        } = filter;
        for (column, value) in [
            ("api", api),
            ("api_key_id", api_key_id),
            ("method", method),
            ("door", door),
            ("client_ip_source", client_ip_source),
            ("enforcer_id", enforcer_id),
        ] {
            if let Some(value) = value {
                let p = args.text(value);
                let _ = write!(sql, " AND {column} = {p}");
            }
        }
        if let Some(status) = status {
            let p = args.int(i64::from(*status));
            let _ = write!(sql, " AND status_code = {p}");
        }
        if let Some(reasons) = reasons {
            let ps: Vec<String> = reasons.iter().map(|r| args.text(r)).collect();
            let _ = write!(sql, " AND reason IN ({})", ps.join(", "));
        }
        if let Some((from, to)) = client_ips {
            let (f, t) = (args.bytes(from), args.bytes(to));
            let _ = write!(sql, " AND client_ip_key >= {f} AND client_ip_key <= {t}");
        }
        if let Some(start) = start_ms {
            let _ = write!(sql, " AND time_ms >= {}", args.int(*start));
        }
        if let Some(end) = end_ms {
            let _ = write!(sql, " AND time_ms < {}", args.int(*end));
        }
        if let Some(UsageCursor { time_ms, id }) = cursor {
            let t = args.int(time_ms);
            let i = args.int(id);
            let _ = write!(sql, " AND (time_ms < {t} OR (time_ms = {t} AND id < {i}))");
        }
        let l = args.int(i64::from(limit));
        let _ = write!(sql, " ORDER BY time_ms DESC, id DESC LIMIT {l}");

        let mut conn = self.usage.reads.acquire().await?;
        let rows = args
            .bind(sqlx::query(sqlx::AssertSqlSafe(sql)))
            .fetch_all(&mut *conn)
            .await?;
        rows.iter().map(usage_record).collect()
    }
}

fn usage_record(row: &AnyRow) -> StoreResult<UsageRecord> {
    let status: i64 = row.try_get("status_code")?;
    Ok(UsageRecord {
        id: row.try_get("id")?,
        request_id: row.try_get("request_id")?,
        time_ms: row.try_get("time_ms")?,
        api: row.try_get("api")?,
        api_key_id: row.try_get("api_key_id")?,
        method: row.try_get("method")?,
        path: row.try_get("path")?,
        status: u16::try_from(status)
            .map_err(|_| StoreError::Corrupt(format!("status code {status}")))?,
        client_ip: row.try_get("client_ip")?,
        reason: row.try_get("reason")?,
        matched_label: row.try_get("matched_label")?,
        enforcer_id: row.try_get("enforcer_id")?,
        door: row.try_get("door")?,
        client_ip_source: row.try_get("client_ip_source")?,
        dropped: None,
    })
}
