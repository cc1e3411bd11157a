//! `ipgate.sync.v1.SyncService`: the change feed, enforcers' sync sessions,
//! the registry of connected enforcers, and usage-event reports.

pub mod feed;
pub mod registry;
pub mod session;
pub mod snapshot;

use std::{pin::Pin, sync::Arc, time::Duration};

use ipgate_shared::proto::sync::v1::{
    ReportEventsRequest, ReportEventsResponse, StreamRequest, StreamResponse,
    sync_service_server::SyncService,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, field};

pub use feed::ChangeFeed;
pub use registry::Registry;

use crate::{
    auth::{Access, authorize, bearer},
    store::Store,
    tokens::token_hash,
    usage,
};

/// Messages queued for one enforcer before it counts as too slow.
pub const OUTBOUND_CAPACITY: usize = 64;

/// The sync service over a store.
pub struct SyncApi {
    store: Arc<Store>,
    feed: ChangeFeed,
    registry: Arc<Registry>,
    heartbeat: Duration,
    shutdown: watch::Receiver<bool>,
}

impl SyncApi {
    /// A service whose sessions end when `shutdown` turns true.
    pub fn new(
        store: Arc<Store>,
        feed: ChangeFeed,
        registry: Arc<Registry>,
        heartbeat: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        SyncApi {
            store,
            feed,
            registry,
            heartbeat,
            shutdown,
        }
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<StreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl SyncService for SyncApi {
    type StreamStream = ResponseStream;

    #[tracing::instrument(name = "Stream", skip_all)]
    async fn stream(
        &self,
        request: Request<Streaming<StreamRequest>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let caller = authorize(&self.store, request.metadata(), Access::Enforce).await?;
        let (out, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let ctx = session::Context {
            store: Arc::clone(&self.store),
            feed: self.feed.clone(),
            registry: Arc::clone(&self.registry),
            heartbeat: self.heartbeat,
            shutdown: self.shutdown.clone(),
            tenant: caller.tenant,
            token: bearer(request.metadata())
                .map(token_hash)
                .unwrap_or_default(),
            address: request
                .remote_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
        };
        let span = tracing::info_span!(
            "sync_session",
            enforcer = field::Empty,
            revision = field::Empty
        );
        // The session runs beside the response stream, so the Hello may
        // arrive after the response headers went out.
        tokio::spawn(session::run(ctx, request.into_inner(), out).instrument(span));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(name = "ReportEvents", skip_all, fields(enforcer = %request.get_ref().enforcer_id, batch = %request.get_ref().batch_id))]
    async fn report_events(
        &self,
        request: Request<ReportEventsRequest>,
    ) -> Result<Response<ReportEventsResponse>, Status> {
        let caller = authorize(&self.store, request.metadata(), Access::Enforce).await?;
        let response = usage::report(&self.store, &caller, request.into_inner()).await?;
        Ok(Response::new(response))
    }
}
