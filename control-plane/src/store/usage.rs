//! The usage log: batches stored at most once, and filtered, paged reads.
//! A batch that reports drops also leaves a gap (`gaps.rs`), and reads
//! merge gaps with events by time.

use std::fmt::Write as _;

use ipgate_shared::{ClientIpSource, Door, time};
use sqlx::{Row, any::AnyRow};

use super::{
    args::Args,
    db::{Store, Tx, db_int},
    error::{StoreError, StoreResult},
    gaps::store_gap,
    records::{Named, Stored, TenantId, UsageBatch, UsageCursor, UsageFilter, UsageRecord, ip_key},
};

/// Events per INSERT statement. sqlx's SQLite driver looks each parameter
/// up by name, which SQLite does by scanning them all, so a statement
/// costs time in the square of its parameters (16 an event): at 100 rows
/// that scan took most of the control plane's time under load
/// (BENCHMARKS.md). Ten rows keep it small and still save nine round trips
/// to the database in ten.
const ROWS_PER_INSERT: usize = 10;
const EVENT_COLUMNS: &str = "tenant_id, batch_id, enforcer_id, request_id, time_ms, api, \
     api_key_id, method, path, status_code, client_ip, client_ip_key, reason, matched_label, door, \
     client_ip_source";

impl Store {
    /// Whether `tenant` has, or had, the API or key `named`: it exists
    /// (a revoked key included) or the usage log speaks of it.
    pub async fn knows(&self, tenant: TenantId, named: Named<'_>) -> StoreResult<bool> {
        let (sql, name) = match named {
            Named::Api(slug) => (
                "SELECT 1 FROM apis WHERE slug = $1 AND tenant_id = $2 UNION ALL \
                 SELECT 1 FROM usage_events WHERE api = $1 AND tenant_id = $2 LIMIT 1",
                slug,
            ),
            Named::Key(id) => (
                "SELECT 1 FROM api_keys WHERE id = $1 AND tenant_id = $2 UNION ALL \
                 SELECT 1 FROM usage_events WHERE api_key_id = $1 AND tenant_id = $2 LIMIT 1",
                id,
            ),
        };
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query(sql)
            .bind(name)
            .bind(tenant.0)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(row.is_some())
    }

    /// Stores a batch of usage events under `tenant` at most once (by batch id).
    pub async fn store_usage(&self, tenant: TenantId, batch: UsageBatch) -> StoreResult<Stored> {
        let mut tx = self.begin_write().await?;
        let result = match store_batch(&mut tx, tenant, &batch).await {
            Ok(Stored::New) => store_gap(&mut tx, tenant, &batch)
                .await
                .map(|()| Stored::New),
            other => other,
        };
        Store::finish(tx, result).await
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

        let mut conn = self.pool.acquire().await?;
        let rows = args
            .bind(sqlx::query(sqlx::AssertSqlSafe(sql)))
            .fetch_all(&mut *conn)
            .await?;
        rows.iter().map(usage_record).collect()
    }
}

async fn store_batch(tx: &mut Tx, tenant: TenantId, batch: &UsageBatch) -> StoreResult<Stored> {
    let received_ms = time::to_millis(batch.received_at);
    let inserted = sqlx::query(
        "INSERT INTO usage_batches (id, enforcer_id, received_at, events, dropped_allowed, \
         dropped_blocked) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
    )
    .bind(batch.id.to_string())
    .bind(batch.enforcer.as_str())
    .bind(received_ms)
    .bind(i64::try_from(batch.events.len()).unwrap_or(i64::MAX))
    .bind(db_int(batch.dropped_allowed))
    .bind(db_int(batch.dropped_blocked))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(Stored::Duplicate);
    }

    for chunk in batch.events.chunks(ROWS_PER_INSERT) {
        let mut sql = format!("INSERT INTO usage_events ({EVENT_COLUMNS}) VALUES ");
        let mut args = Args::default();
        for (i, event) in chunk.iter().enumerate() {
            let placeholders = [
                // The enforcer's tenant: its enforcers see only its APIs,
                // and no tenant can write into another's log.
                args.int(tenant.0),
                args.text(&batch.id.to_string()),
                args.text(batch.enforcer.as_str()),
                args.text(&event.request_id),
                args.int(time::to_millis(event.time)),
                args.text(&event.api),
                args.text(&event.key_id.map(|id| id.to_string()).unwrap_or_default()),
                args.text(&event.method),
                args.text(&event.path),
                args.int(i64::from(event.status)),
                args.text(&event.client_ip.to_string()),
                args.bytes(&ip_key(event.client_ip)),
                args.text(event.reason.as_str()),
                args.text(&event.matched_label),
                args.text(Door::name(event.door)),
                args.text(ClientIpSource::name(event.client_ip_source)),
            ];
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(sql, "{sep}({})", placeholders.join(", "));
        }
        args.bind(sqlx::query(sqlx::AssertSqlSafe(sql)))
            .execute(&mut **tx)
            .await?;
    }

    sqlx::query(
        "INSERT INTO enforcers (id, tenant_id, acked_revision, last_seen, dropped_allowed, \
         dropped_blocked) VALUES ($1, $2, 0, $3, $4, $5) \
         ON CONFLICT (tenant_id, id) DO UPDATE SET last_seen = excluded.last_seen, \
           dropped_allowed = enforcers.dropped_allowed + excluded.dropped_allowed, \
           dropped_blocked = enforcers.dropped_blocked + excluded.dropped_blocked",
    )
    .bind(batch.enforcer.as_str())
    .bind(tenant.0)
    .bind(received_ms)
    .bind(db_int(batch.dropped_allowed))
    .bind(db_int(batch.dropped_blocked))
    .execute(&mut **tx)
    .await?;
    Ok(Stored::New)
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
