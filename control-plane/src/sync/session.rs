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

use super::{
    feed::ChangeFeed,
    registry::{Arrival, Registry},
    snapshot,
};
use crate::{
    invalid::InvalidRequest,
    status::{RpcError, status},
    store::{Backlog, Committed, NackRecord, Store, TenantId},
};

/// How long a new stream may take to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an enforcer may stay silent (it heartbeats every 5 s) before
/// the connection counts as half-open and the session ends.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(15);
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
    /// SHA-256 of the session's token, checked again before anything
    /// committed after a token revocation is sent, and while idle.
    pub token: [u8; 32],
    /// The enforcer's address as this replica sees it.
    pub address: String,
}

/// What the enforcer said in its Hello.
#[derive(Debug, PartialEq, Eq)]
pub struct Hello {
    pub enforcer: EnforcerId,
    pub known: Revision,
    /// The database its state came from ("" when none or unknown).
    pub database_id: String,
    pub version: String,
    pub want_snapshot: bool,
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
    let arrival = Arrival {
        address: ctx.address.clone(),
        version: hello.version.clone(),
    };
    let _connection = ctx
        .registry
        .connect(ctx.tenant, hello.enforcer.clone(), arrival);
    tracing::info!(known = %hello.known, version = %hello.version, "enforcer connected");

    let mut session = Session {
        position: hello.known,
        enforcer: hello.enforcer.clone(),
        updates,
        out,
        inbound,
        last_sent: Instant::now(),
        last_heard: Instant::now(),
        replace: false,
        ctx,
    };
    let result = match session.start(&hello).await {
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
        database_id,
        version,
        want_snapshot,
    } = hello;
    let enforcer = enforcer_id
        .parse()
        .map_err(|e| status(InvalidRequest::field("hello.enforcer_id", e).into()))?;
    if version.len() > 128 || version.chars().any(char::is_control) {
        return Err(status(RpcError::Invalid(InvalidRequest::field(
            "hello.version",
            "at most 128 characters, none of them control characters",
        ))));
    }
    Ok(Hello {
        enforcer,
        known: Revision::new(known_revision),
        database_id,
        version,
        want_snapshot,
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
    /// The last message from the enforcer.
    last_heard: Instant,
    /// The next snapshot must replace the enforcer's state whatever its
    /// revision: what it claimed was not of this database.
    replace: bool,
}

impl Session {
    /// Step 2: check what the enforcer claims to have, then bring it to the
    /// current revision.
    async fn start(&mut self, hello: &Hello) -> Step {
        let current = self.ctx.store.current_revision().await.map_err(failed)?;
        let ours = self.ctx.store.database_id();
        if let Some(reason) = refused_claim(hello, ours, current) {
            tracing::warn!(
                known = %hello.known,
                %current,
                "enforcer's state is not of this database ({reason}); sending a fresh snapshot"
            );
            self.position = Revision::ZERO;
            self.replace = true;
            return self.send_snapshot().await;
        }
        self.acknowledged(hello.known);
        if self.position == Revision::ZERO || hello.want_snapshot {
            return self.send_snapshot().await;
        }
        if self.position == current {
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
        self.check_token().await?;
        tracing::debug!(revision = %snapshot.revision, apis = snapshot.apis.len(), keys = snapshot.keys.len(), "sending snapshot");
        let (database_id, replace) = (self.ctx.store.database_id().to_owned(), self.replace);
        for mut chunk in snapshot::chunks(&snapshot) {
            chunk.database_id.clone_from(&database_id);
            chunk.replace = replace;
            self.send(stream_response::Kind::Snapshot(chunk)).await?;
        }
        self.replace = false;
        self.advance(snapshot.revision);
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
                        if change.revokes_token {
                            self.check_token().await?;
                        }
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
            let silent = tokio::time::sleep_until(self.last_heard + SILENCE_LIMIT);
            tokio::select! {
                () = stopping(&mut shutdown) => return Err(shutting_down()),
                update = self.updates.recv() => self.on_update(update).await?,
                message = self.inbound.message() => self.on_message(message).await?,
                _ = idle => self.send_heartbeat().await?,
                _ = silent => {
                    tracing::warn!("no message from the enforcer in {SILENCE_LIMIT:?}; taking the connection for dead");
                    return Err(End::Failed(Status::unavailable(format!(
                        "no message from the enforcer in {} s; reconnect",
                        SILENCE_LIMIT.as_secs()
                    ))));
                }
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
        if change.revokes_token {
            self.check_token().await?;
        }
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
        self.last_heard = Instant::now();
        match kind {
            Some(stream_request::Kind::Ack(wire::Ack { revision })) => {
                let revision = Revision::new(revision);
                if revision > self.position {
                    // Never recorded: it would tell an operator a change is
                    // live where it is not.
                    tracing::warn!(
                        %revision,
                        sent = %self.position,
                        "refusing an ack above the revision sent on this stream"
                    );
                } else {
                    tracing::debug!(%revision, "ack");
                    self.acknowledged(revision);
                }
            }
            Some(stream_request::Kind::Nack(wire::Nack { revision, reason })) => {
                tracing::warn!(revision, %reason, "enforcer refused a revision");
                let nack = NackRecord {
                    revision: Revision::new(revision),
                    reason,
                    at: std::time::SystemTime::now(),
                };
                self.ctx
                    .registry
                    .nack(self.ctx.tenant, &self.enforcer, nack);
            }
            Some(stream_request::Kind::Heartbeat(beat)) => {
                self.ctx.registry.heartbeat(
                    self.ctx.tenant,
                    &self.enforcer,
                    beat.events_buffered,
                    beat.events_dropped,
                );
            }
            Some(stream_request::Kind::Hello(_)) | None => {
                tracing::debug!("ignoring a repeated Hello or an empty message");
            }
        }
        Ok(())
    }

    fn acknowledged(&self, revision: Revision) {
        self.ctx
            .registry
            .ack(self.ctx.tenant, &self.enforcer, revision);
    }

    /// Ends the session when its token was revoked. A database that cannot
    /// be read keeps the session: the enforcer keeps what it has.
    async fn check_token(&self) -> Step {
        match self.ctx.store.token(self.ctx.token).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(End::Failed(Status::unauthenticated(
                "the enforcer token was revoked; start the enforcer with a valid token",
            ))),
            Err(error) => {
                tracing::warn!(%error, "cannot recheck the enforcer token");
                Ok(())
            }
        }
    }

    async fn send_heartbeat(&mut self) -> Step {
        self.check_token().await?;
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

/// Why an enforcer's claimed state cannot be followed from here, if it
/// cannot: it came from another database, or names a revision this one
/// never reached (a database restored from a backup).
fn refused_claim(hello: &Hello, ours: &str, current: Revision) -> Option<String> {
    if !hello.database_id.is_empty() && hello.database_id != ours {
        return Some(format!(
            "it came from database {}, this is {ours}",
            hello.database_id
        ));
    }
    (hello.known > current).then(|| {
        format!(
            "it claims revision {}, above this database's current revision {current}",
            hello.known
        )
    })
}

fn failed(error: crate::store::StoreError) -> End {
    End::Failed(status(error.into()))
}
