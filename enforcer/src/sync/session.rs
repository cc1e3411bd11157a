//! One sync session, as small steps: `open` the stream with `Hello`, then
//! `follow` it: take each burst of waiting messages, apply it, swap, `Ack`;
//! on a bad message `Nack` and `linger` so the Nack is delivered. While the
//! stream is quiet the enforcer heartbeats, and a control plane silent for
//! [`SILENCE_LIMIT`] is taken for a dead connection.

use std::{sync::Arc, time::Duration};

use futures_util::FutureExt;
use ipgate_shared::{
    EnforcerId, Revision,
    proto::sync::v1::{
        Ack, EnforcerHeartbeat, Hello, Nack, StreamRequest, StreamResponse, stream_request::Kind,
        stream_response, sync_service_client::SyncServiceClient,
    },
};
use tokio::{sync::mpsc, time::Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming, transport::Channel};
use tracing::{debug, error, info, warn};

use super::{
    apply::{Applier, Stop},
    cache::SnapshotCache,
};
use crate::{control_plane::ControlPlane, state::Enforcer};

/// Longest wait for the control plane to accept a stream.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait, after a Nack, for the control plane to close the
/// stream, so the Nack is sent before the stream is torn down.
const LINGER: Duration = Duration::from_secs(1);
/// Most messages applied in one burst; bounds the delay before a swap.
const MAX_BURST: usize = 256;
/// Acks and Nacks waiting to be sent.
const OUTBOUND_CAPACITY: usize = 16;
/// How long the enforcer stays silent before it sends a heartbeat.
pub(crate) const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How long the control plane may stay silent (it heartbeats every 5 s by
/// default) before the connection counts as half-open.
pub(crate) const SILENCE_LIMIT: Duration = Duration::from_secs(15);

/// How a session ended.
#[derive(Debug)]
pub(crate) enum End {
    /// A revision gap: reconnect at once and resume.
    Gap,
    /// A message failed validation and was Nacked.
    Invalid,
    /// The stream broke the protocol.
    Protocol,
    /// The control plane ended the stream.
    Closed,
    /// The stream could not be opened or failed.
    Failed(Status),
}

/// What a session achieved.
#[derive(Debug)]
pub(crate) struct Report {
    /// True when the control plane sent anything: the connection worked.
    pub(crate) progress: bool,
    /// True when an update was swapped in.
    pub(crate) applied: bool,
    pub(crate) end: End,
}

/// What carries over from one session to the next.
#[derive(Debug, Default)]
pub(crate) struct Carry {
    /// The database the index in force came from ("" when unknown).
    pub(crate) database_id: String,
    /// Ask for a full snapshot: the last session refused an update.
    pub(crate) want_snapshot: bool,
    /// The snapshot cache file, when configured.
    pub(crate) cache: Option<SnapshotCache>,
}

/// Runs one session to its end.
pub(crate) async fn run(
    enforcer: &Enforcer,
    control_plane: &ControlPlane,
    client: SyncServiceClient<Channel>,
    id: &EnforcerId,
    carry: &mut Carry,
) -> Report {
    let known = enforcer.revision();
    match open(control_plane, client, id, known, carry).await {
        Ok((outbound, inbound)) => {
            let database_id = std::mem::take(&mut carry.database_id);
            let mut applier = Applier::new(database_id, carry.cache.clone());
            let report = follow(enforcer, &mut applier, outbound, inbound).await;
            carry.database_id = applier.database_id().to_owned();
            report
        }
        Err(status) => Report {
            progress: false,
            applied: false,
            end: End::Failed(status),
        },
    }
}

/// Opens the stream; `Hello` is its first message.
async fn open(
    control_plane: &ControlPlane,
    mut client: SyncServiceClient<Channel>,
    id: &EnforcerId,
    known: Option<Revision>,
    carry: &Carry,
) -> Result<(mpsc::Sender<StreamRequest>, Streaming<StreamResponse>), Status> {
    let (outbound, rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let hello = Kind::Hello(Hello {
        enforcer_id: id.to_string(),
        known_revision: known.map_or(0, Revision::get),
        database_id: carry.database_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        want_snapshot: carry.want_snapshot,
    });
    // The channel is new and empty, so this cannot fail.
    let _ = outbound.try_send(StreamRequest { kind: Some(hello) });
    let request = control_plane.request(ReceiverStream::new(rx));
    let response = tokio::time::timeout(OPEN_TIMEOUT, client.stream(request))
        .await
        .map_err(|_| Status::deadline_exceeded("control plane did not accept the sync stream"))??;
    debug!(known = ?known, "sync stream open");
    Ok((outbound, response.into_inner()))
}

/// Messages taken from the stream in one go, and how the stream stood after.
struct Burst {
    messages: Vec<StreamResponse>,
    /// Set when the stream ended right after these messages.
    ended: Option<End>,
}

/// Applies bursts until the stream ends or a message stops the session;
/// heartbeats while quiet, and ends a session the control plane went
/// silent on.
async fn follow(
    enforcer: &Enforcer,
    applier: &mut Applier,
    outbound: mpsc::Sender<StreamRequest>,
    mut inbound: Streaming<StreamResponse>,
) -> Report {
    let (mut progress, mut applied) = (false, false);
    let mut last_sent = Instant::now();
    let mut last_heard = Instant::now();
    loop {
        // `next_burst` only awaits its first message, which the stream
        // keeps if the wait is dropped: the timers lose nothing.
        let Burst { messages, ended } = tokio::select! {
            burst = next_burst(&mut inbound) => burst,
            () = tokio::time::sleep_until(last_sent + HEARTBEAT_INTERVAL) => {
                let (buffered, dropped) = enforcer.event_counts();
                let beat = EnforcerHeartbeat {
                    revision: enforcer.revision().map_or(0, Revision::get),
                    events_buffered: buffered,
                    events_dropped: dropped,
                };
                send(&outbound, Kind::Heartbeat(beat)).await;
                last_sent = Instant::now();
                continue;
            }
            () = tokio::time::sleep_until(last_heard + SILENCE_LIMIT) => {
                let status = Status::unavailable(format!(
                    "nothing from the control plane in {} s: taking the connection for dead",
                    SILENCE_LIMIT.as_secs()
                ));
                return Report { progress, applied, end: End::Failed(status) };
            }
        };
        last_heard = Instant::now();
        progress |= !messages.is_empty();
        // A heartbeat says the control plane has nothing newer for us.
        let current = messages
            .iter()
            .any(|m| matches!(m.kind, Some(stream_response::Kind::Heartbeat(_))));
        let outcome = applier.apply(enforcer.index(), messages).await;
        if current && outcome.stop.is_none() {
            enforcer.mark_fresh();
        }
        if let Some(index) = outcome.index {
            applied = true;
            let revision = index.revision();
            enforcer.install(Arc::new(index));
            // The revision goes on the event, not on the session's span:
            // recording a span field again appends to it, so a long session's
            // every line would carry every revision it has seen.
            let from = if outcome.from_snapshot {
                "snapshot"
            } else {
                "deltas"
            };
            info!(from, %revision, "index swapped in");
            send(
                &outbound,
                Kind::Ack(Ack {
                    revision: revision.get(),
                }),
            )
            .await;
            last_sent = Instant::now();
        }
        if let Some(stop) = outcome.stop {
            let end = stopped(stop, outbound, inbound).await;
            return Report {
                progress,
                applied,
                end,
            };
        }
        if let Some(end) = ended {
            return Report {
                progress,
                applied,
                end,
            };
        }
    }
}

/// Waits for one message, then takes every message already waiting.
async fn next_burst(inbound: &mut Streaming<StreamResponse>) -> Burst {
    let mut messages = Vec::new();
    let mut next = inbound.message().await;
    loop {
        match next {
            Ok(Some(message)) => messages.push(message),
            Ok(None) => {
                return Burst {
                    messages,
                    ended: Some(End::Closed),
                };
            }
            Err(status) => {
                return Burst {
                    messages,
                    ended: Some(End::Failed(status)),
                };
            }
        }
        if messages.len() >= MAX_BURST {
            return Burst {
                messages,
                ended: None,
            };
        }
        // `message()` keeps its state in the stream, so dropping a pending
        // call loses nothing.
        match inbound.message().now_or_never() {
            Some(result) => next = result,
            None => {
                return Burst {
                    messages,
                    ended: None,
                };
            }
        }
    }
}

/// Ends the session for `stop`, telling the control plane what it must know.
async fn stopped(
    stop: Stop,
    outbound: mpsc::Sender<StreamRequest>,
    inbound: Streaming<StreamResponse>,
) -> End {
    match stop {
        Stop::Gap { have, got } => {
            warn!(
                have = ?have.map(Revision::get),
                got = got.get(),
                "revisions skipped on the sync stream; reconnecting to resume from ours"
            );
            End::Gap
        }
        Stop::Invalid { revision, reason } => {
            error!(
                %revision,
                reason,
                "REJECTED an update from the control plane; the previous index stays in force"
            );
            let nack = Nack {
                revision: revision.get(),
                reason,
            };
            send(&outbound, Kind::Nack(nack)).await;
            linger(outbound, inbound).await;
            End::Invalid
        }
        Stop::Protocol(reason) => {
            error!(reason, "sync stream broke the protocol; resyncing");
            End::Protocol
        }
    }
}

/// Half-closes our side and waits briefly for the control plane to finish,
/// so what was queued (a Nack) is sent before the stream is dropped.
async fn linger(outbound: mpsc::Sender<StreamRequest>, mut inbound: Streaming<StreamResponse>) {
    drop(outbound);
    let drain = async { while let Ok(Some(_)) = inbound.message().await {} };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

async fn send(outbound: &mpsc::Sender<StreamRequest>, kind: Kind) {
    if outbound
        .send(StreamRequest { kind: Some(kind) })
        .await
        .is_err()
    {
        // The stream is gone; reading it will say why.
        debug!("sync stream closed before an answer could be sent");
    }
}
