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
    store::{Named, Principal, Store, StoreError, Stored, UsageFilter},
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
    named_exist(store, caller, &q.filter).await?;
    // One row more than asked tells whether another page follows.
    let rows = store
        .query_usage(caller.tenant, &q.filter, q.cursor, q.page_size + 1)
        .await?;
    Ok(query::page(rows, q.page_size))
}

/// The usage log as a stream of CSV chunks.
pub async fn export(
    store: Arc<Store>,
    caller: &Principal,
    request: admin::ExportUsageLogsRequest,
) -> Result<export::ChunkStream, RpcError> {
    let filter = query::parse_export(request)?;
    named_exist(&store, caller, &filter).await?;
    Ok(export::start(store, caller.tenant, filter))
}

/// A filter naming an API or a key the caller's tenant has never had is a
/// typo, not an empty log: `NOT_FOUND`, as for every other call naming
/// one. A deleted API's log stays readable.
async fn named_exist(
    store: &Store,
    caller: &Principal,
    filter: &UsageFilter,
) -> Result<(), RpcError> {
    if let Some(api) = &filter.api
        && !store.knows(caller.tenant, Named::Api(api)).await?
    {
        return Err(StoreError::ApiNotFound(api.clone()).into());
    }
    if let Some(key) = &filter.api_key_id
        && !store.knows(caller.tenant, Named::Key(key)).await?
    {
        return Err(StoreError::KeyNotFound(key.clone()).into());
    }
    Ok(())
}
