//! The usage log: batches of events from enforcers in (`ReportEvents`,
//! stored at most once per batch id under the enforcer's tenant), filtered
//! pages out (`QueryUsageLogs`) and CSV export (`ExportUsageLogs`).

pub mod export;
pub mod ingest;
pub mod query;

use std::{sync::Arc, time::SystemTime};

use ipgate_shared::proto::{admin::v1 as admin, sync::v1 as wire};

use crate::{
    status::RpcError,
    store::{Principal, Store, Stored},
};

/// Validates and stores one batch; a batch id stored before is a retry.
pub async fn report(
    store: &Store,
    caller: &Principal,
    request: wire::ReportEventsRequest,
) -> Result<wire::ReportEventsResponse, RpcError> {
    let batch = ingest::batch(request, SystemTime::now())?;
    let (events, batch_id) = (batch.events.len(), batch.id);
    let stored = store.store_usage(caller.tenant, batch).await?;
    let duplicate = stored == Stored::Duplicate;
    tracing::debug!(%batch_id, events, duplicate, "usage batch");
    Ok(wire::ReportEventsResponse { duplicate })
}

/// One page of the usage log, newest first.
pub async fn query(
    store: &Store,
    caller: &Principal,
    request: admin::QueryUsageLogsRequest,
) -> Result<admin::QueryUsageLogsResponse, RpcError> {
    let q = query::parse(request)?;
    // One row more than asked tells whether another page follows.
    let rows = store
        .query_usage(caller.tenant, &q.filter, q.cursor, q.page_size + 1)
        .await?;
    Ok(query::page(rows, q.page_size))
}

/// The usage log as a stream of CSV chunks.
pub fn export(
    store: Arc<Store>,
    caller: &Principal,
    request: admin::ExportUsageLogsRequest,
) -> Result<export::ChunkStream, RpcError> {
    let filter = query::parse_export(request)?;
    Ok(export::start(store, caller.tenant, filter))
}
