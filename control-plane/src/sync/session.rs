//! One enforcer's sync session, as small named steps:
//! [`handshake`] -> [`Session::send_snapshot`] | [`Session::send_deltas`] ->
//! [`Session::follow`].
//!
//! The session subscribes to the change feed before it reads a snapshot or
//! the backlog, so nothing committed in between is missed; it skips what it
//! already sent, fills gaps from the database, and resyncs a lagging or
//! slow enforcer with a fresh snapshot rather than buffering without bound.

use std::{sync::Arc, time::Duration};

use ipgate_shared::{
    EnforcerId, Revision,
    proto::sync::v1::{
        self as wire, StreamRequest, StreamResponse, stream_request, stream_response,
    },
};
use tokio::{
    sync::{
        broadcast::{self, error::RecvError},
        mpsc::{self, error::TrySendError},
        watch,
    },
    time::Instant,
};
use tonic::{Status, Streaming};
use tracing::Span;

use super::{feed::ChangeFeed, registry::Registry, snapshot};
use crate::{
    invalid::InvalidRequest,
    status::{RpcError, status},
    store::{Backlog, Committed, Store, TenantId},
};

/// How long a new stream may take to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the status ending a session may wait for room in the queue.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(2);
/// Revisions read from the change log per query while catching up.
const BACKLOG_PAGE: u32 = 256;

/// Responses on their way to the enforcer.
pub type Outbound = mpsc::Sender<Result<StreamResponse, Status>>;

/// What a session needs from the server.
pub struct Context {
    pub store: Arc<Store>,
    pub feed: ChangeFeed,
    pub registry: Arc<Registry>,
    pub heartbeat: Duration,
    pub shutdown: watch::Receiver<bool>,
    pub tenant: TenantId,
    /// SHA-256 of the session's token, checked again while idle so a
    /// revoked token ends its sessions.
    pub token: [u8; 32],
}

/// What the enforcer said in its Hello.
#[derive(Debug, PartialEq, Eq)]
pub struct Hello {
    pub enforcer: EnforcerId,
    pub known: Revision,
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The enforcer hung up.
    Gone,
    /// The session fails with this status.
    Failed(Status),
}

type Step = Result<(), End>;

/// Runs a session to its end, in the current tracing span (which has
/// `enforcer` and `revision` fields). Both are recorded once, at the Hello:
/// `revision` is the one the enforcer started from. Recording a field again
/// would append to the span's every later log line, so the revisions sent
/// since go on the events that tell of them.
pub async fn run(ctx: Context, mut inbound: Streaming<StreamRequest>, out: Outbound) {
    let hello = match handshake(&mut inbound).await {
        Ok(hello) => hello,
        Err(status) => {
            tracing::info!(%status, "sync handshake refused");
            farewell(&out, status).await;
            return;
        }
    };
    let span = Span::current();
    span.record("enforcer", hello.enforcer.as_str());
    span.record("revision", hello.known.get());
    // Subscribe before reading anything, so no revision falls in between.
    let updates = ctx.feed.subscribe();
    let _connection = ctx
        .registry
        .connect(ctx.tenant, hello.enforcer.clone(), hello.known);
    record_ack(&ctx, &hello.enforcer, hello.known).await;
    tracing::info!(known = %hello.known, "enforcer connected");

    let mut session = Session {
        position: hello.known,
        enforcer: hello.enforcer,
        updates,
        out,
        inbound,
        last_sent: Instant::now(),
        ctx,
    };
    let result = match session.start().await {
        Ok(()) => session.follow().await,
        Err(end) => Err(end),
    };
    match result {
        Ok(()) | Err(End::Gone) => {
            tracing::info!(sent = %session.position, "enforcer disconnected");
        }
        Err(End::Failed(status)) => {
            tracing::info!(sent = %session.position, %status, "sync session ended");
            farewell(&session.out, status).await;
        }
    }
}

/// Step 1: the first message must be a Hello naming the enforcer.
pub async fn handshake(inbound: &mut Streaming<StreamRequest>) -> Result<Hello, Status> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| Status::deadline_exceeded("no Hello within 30 seconds"))??;
    let Some(StreamRequest {
        kind: Some(stream_request::Kind::Hello(hello)),
    }) = first
    else {
        return Err(status(RpcError::Invalid(InvalidRequest::field(
            "hello",
            "the first message of a sync stream must be Hello",
        ))));
    };
    let wire::Hello {
        enforcer_id,
        known_revision,
    } = hello;
    let enforcer = enforcer_id
        .parse()
        .map_err(|e| status(InvalidRequest::field("hello.enforcer_id", e).into()))?;
    Ok(Hello {
        enforcer,
        known: Revision::new(known_revision),
    })
}

struct Session {
    ctx: Context,
    enforcer: EnforcerId,
    updates: broadcast::Receiver<Arc<Committed>>,
    out: Outbound,
    inbound: Streaming<StreamRequest>,
    /// The last revision the enforcer has, or has been sent.
    position: Revision,
    last_sent: Instant,
}

impl Session {
    /// Step 2: bring the enforcer to the current revision.
    async fn start(&mut self) -> Step {
        if self.position == Revision::ZERO {
            return self.send_snapshot().await;
        }
        let current = self.ctx.store.current_revision().await.map_err(failed)?;
        if self.position >= current {
            // Already there (or ahead, after talking to another database):
            // it ignores anything at or below its revision, so just follow.
            return Ok(());
        }
        self.send_deltas().await
    }

    /// Sends a snapshot read in one transaction, in chunks.
    async fn send_snapshot(&mut self) -> Step {
        let snapshot = self
            .ctx
            .store
            .snapshot(self.ctx.tenant)
            .await
            .map_err(failed)?;
        tracing::debug!(revision = %snapshot.revision, apis = snapshot.apis.len(), keys = snapshot.keys.len(), "sending snapshot");
        for chunk in snapshot::chunks(&snapshot) {
            self.send(stream_response::Kind::Snapshot(chunk)).await?;
        }
        self.advance(self.position.max(snapshot.revision));
        Ok(())
    }

    /// Sends every revision after the current position from the change log,
    /// or a snapshot when part of it was compacted.
    async fn send_deltas(&mut self) -> Step {
        loop {
            let backlog = self
                .ctx
                .store
                .changes_after(self.position, BACKLOG_PAGE)
                .await
                .map_err(failed)?;
            match backlog {
                Backlog::Changes(changes) if changes.is_empty() => return Ok(()),
                Backlog::Changes(changes) => {
                    for change in changes {
                        let delta = change.delta_for(self.ctx.tenant);
                        self.send(stream_response::Kind::Delta(delta)).await?;
                        self.advance(change.revision);
                    }
                }
                Backlog::Compacted => return self.send_snapshot().await,
            }
        }
    }

    /// Step 3: live deltas as they commit, heartbeats when idle, acks in.
    async fn follow(&mut self) -> Step {
        let mut shutdown = self.ctx.shutdown.clone();
        loop {
            let idle = tokio::time::sleep_until(self.last_sent + self.ctx.heartbeat);
            tokio::select! {
                () = stopping(&mut shutdown) => return Err(shutting_down()),
                update = self.updates.recv() => self.on_update(update).await?,
                message = self.inbound.message() => self.on_message(message).await?,
                _ = idle => self.send_heartbeat().await?,
            }
        }
    }

    async fn on_update(&mut self, update: Result<Arc<Committed>, RecvError>) -> Step {
        match update {
            Ok(change) if change.revision <= self.position => Ok(()),
            Ok(change) if change.revision == self.position.next() => self.deliver(&change).await,
            // A gap: revisions published before we subscribed, or skipped
            // by the feed. The change log has them.
            Ok(_) => self.send_deltas().await,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "enforcer fell behind the change feed; resyncing with a snapshot"
                );
                self.send_snapshot().await
            }
            Err(RecvError::Closed) => Err(End::Failed(Status::unavailable(
                "the control plane's change feed stopped; reconnect",
            ))),
        }
    }

    /// Sends one live delta without waiting: when the enforcer's outbound
    /// queue is full it is too slow, and a snapshot replaces the backlog.
    async fn deliver(&mut self, change: &Committed) -> Step {
        let delta = change.delta_for(self.ctx.tenant);
        let message = response(stream_response::Kind::Delta(delta));
        match self.out.try_send(Ok(message)) {
            Ok(()) => {
                self.last_sent = Instant::now();
                self.advance(change.revision);
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                tracing::warn!("enforcer reads too slowly; resyncing with a snapshot");
                self.send_snapshot().await
            }
            Err(TrySendError::Closed(_)) => Err(End::Gone),
        }
    }

    async fn on_message(&mut self, message: Result<Option<StreamRequest>, Status>) -> Step {
        let kind = match message {
            Ok(Some(StreamRequest { kind })) => kind,
            Ok(None) => return Err(End::Gone),
            Err(status) => {
                tracing::debug!(%status, "sync stream broke");
                return Err(End::Gone);
            }
        };
        match kind {
            Some(stream_request::Kind::Ack(wire::Ack { revision })) => {
                let revision = Revision::new(revision);
                tracing::debug!(%revision, "ack");
                self.ctx
                    .registry
                    .ack(self.ctx.tenant, &self.enforcer, revision);
                record_ack(&self.ctx, &self.enforcer, revision).await;
            }
            Some(stream_request::Kind::Nack(wire::Nack { revision, reason })) => {
                tracing::warn!(revision, %reason, "enforcer refused a revision");
                if let Err(error) = self
                    .ctx
                    .store
                    .record_nack(
                        self.ctx.tenant,
                        &self.enforcer,
                        Revision::new(revision),
                        &reason,
                        std::time::SystemTime::now(),
                    )
                    .await
                {
                    tracing::warn!(%error, "cannot record a nack");
                }
            }
            Some(stream_request::Kind::Hello(_)) | None => {
                tracing::debug!("ignoring a repeated Hello or an empty message");
            }
        }
        Ok(())
    }

    async fn send_heartbeat(&mut self) -> Step {
        match self.ctx.store.token(self.ctx.token).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(End::Failed(Status::unauthenticated(
                    "the enforcer token was revoked; start the enforcer with a valid token",
                )));
            }
            // The database is away: keep serving what the enforcer has.
            Err(error) => tracing::warn!(%error, "cannot recheck the enforcer token"),
        }
        let revision = self.position.get();
        self.send(stream_response::Kind::Heartbeat(wire::Heartbeat {
            revision,
        }))
        .await
    }

    /// Sends one message, waiting for room in the outbound queue (but not
    /// past the start of a shutdown).
    async fn send(&mut self, kind: stream_response::Kind) -> Step {
        let mut shutdown = self.ctx.shutdown.clone();
        tokio::select! {
            sent = self.out.send(Ok(response(kind))) => sent.map_err(|_| End::Gone)?,
            () = stopping(&mut shutdown) => return Err(shutting_down()),
        }
        self.last_sent = Instant::now();
        Ok(())
    }

    fn advance(&mut self, revision: Revision) {
        self.position = revision;
    }
}

fn shutting_down() -> End {
    End::Failed(Status::unavailable(
        "the control plane is shutting down; reconnect",
    ))
}

/// Sends the status a session ends with, unless the enforcer does not read
/// it in time (it learns from the stream's end anyway).
async fn farewell(out: &Outbound, status: Status) {
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, out.send(Err(status))).await;
}

/// Resolves once the server starts shutting down.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    // An error means the server is gone: stop as well.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn response(kind: stream_response::Kind) -> StreamResponse {
    StreamResponse { kind: Some(kind) }
}

fn failed(error: crate::store::StoreError) -> End {
    End::Failed(status(error.into()))
}

async fn record_ack(ctx: &Context, enforcer: &EnforcerId, revision: Revision) {
    let now = std::time::SystemTime::now();
    if let Err(error) = ctx
        .store
        .record_ack(ctx.tenant, enforcer, revision, now)
        .await
    {
        // The in-memory registry still has it; the next ack tries again.
        tracing::warn!(%error, "cannot record an ack");
    }
}
