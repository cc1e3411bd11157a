//! The usage log: batches stored at most once, and filtered, paged reads.

use std::fmt::Write as _;

use ipgate_shared::{ClientIpSource, Door, time};
use sqlx::{Row, any::AnyRow};

use super::{
    args::Args,
    db::{Backend, Store, Tx, db_int},
    error::{StoreError, StoreResult},
    records::{Named, Stored, TenantId, UsageBatch, UsageCursor, UsageFilter, UsageRecord, ip_key},
};

/// Events per INSERT statement on SQLite. sqlx's SQLite driver asks SQLite
/// the name of every parameter it binds, and SQLite finds a name by scanning
/// the statement's list of named parameters (`$1`, `?1`…), so with named
/// ones a statement costs time in the square of its parameters (16 an
/// event; BENCHMARKS.md). Anonymous `?` parameters are not in that list,
/// so the lookup is immediate and a statement can carry many rows: one
/// prepared statement, cached by the connection, for every full chunk.
const SQLITE_ROWS_PER_INSERT: usize = 100;
/// Events per INSERT statement on PostgreSQL (`$n` parameters, bound by
/// position by the server).
const POSTGRES_ROWS_PER_INSERT: usize = 10;
const EVENT_COLUMNS: &str = "tenant_id, batch_id, enforcer_id, request_id, time_ms, api, \
     api_key_id, method, path, status_code, client_ip, client_ip_key, reason, matched_label, door, \
     client_ip_source";
/// Parameters an event binds: one a column of [`EVENT_COLUMNS`].
const EVENT_PARAMS: usize = 16;

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
        let result = store_batch(&mut tx, self.backend(), tenant, &batch).await;
        Store::finish(tx, result).await
    }

    /// Usage events visible to `tenant`, newest first, after `cursor`.
    pub async fn query_usage(
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
        } = filter;
        for (column, value) in [
            ("api", api),
            ("api_key_id", api_key_id),
            ("method", method),
            ("door", door),
            ("client_ip_source", client_ip_source),
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

/// `INSERT INTO usage_events` of `rows` rows: anonymous `?` parameters on
/// SQLite (see [`SQLITE_ROWS_PER_INSERT`]), `$n` on PostgreSQL.
fn insert_events_sql(backend: Backend, rows: usize) -> String {
    let mut sql = format!("INSERT INTO usage_events ({EVENT_COLUMNS}) VALUES ");
    let mut n = 0;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..EVENT_PARAMS {
            if column > 0 {
                sql.push_str(", ");
            }
            n += 1;
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    let _ = write!(sql, "${n}");
                }
            }
        }
        sql.push(')');
    }
    sql
}

async fn store_batch(
    tx: &mut Tx,
    backend: Backend,
    tenant: TenantId,
    batch: &UsageBatch,
) -> StoreResult<Stored> {
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

    let rows_per_insert = match backend {
        Backend::Sqlite => SQLITE_ROWS_PER_INSERT,
        Backend::Postgres => POSTGRES_ROWS_PER_INSERT,
    };
    let batch_id = batch.id.to_string();
    for chunk in batch.events.chunks(rows_per_insert) {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(insert_events_sql(backend, chunk.len())));
        for event in chunk {
            query = query
                // The enforcer's tenant: its enforcers see only its APIs,
                // and no tenant can write into another's log.
                .bind(tenant.0)
                .bind(batch_id.clone())
                .bind(batch.enforcer.as_str().to_owned())
                .bind(event.request_id.clone())
                .bind(time::to_millis(event.time))
                .bind(event.api.clone())
                .bind(event.key_id.map(|id| id.to_string()).unwrap_or_default())
                .bind(event.method.clone())
                .bind(event.path.clone())
                .bind(i64::from(event.status))
                .bind(event.client_ip.to_string())
                .bind(ip_key(event.client_ip).to_vec())
                .bind(event.reason.as_str())
                .bind(event.matched_label.clone())
                .bind(Door::name(event.door))
                .bind(ClientIpSource::name(event.client_ip_source));
        }
        query.execute(&mut **tx).await?;
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
    })
}
