//! The bounded queue between the doors and the reporter.
//!
//! Allowed and blocked requests wait in separate queues of equal capacity:
//! when the control plane is away long enough for them to fill, a flood of
//! allowed traffic can never push out the record of a block. Every event that
//! does not fit is counted, and the counts travel up with the next batch.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use ipgate_shared::usage::UsageEvent;
use tokio::sync::mpsc::{self, error::TrySendError};

/// Makes a queue holding up to `capacity` allowed and `capacity` blocked events.
pub fn queue(capacity: usize) -> (EventSink, EventSource) {
    let capacity = capacity.max(1);
    let (allowed_tx, allowed_rx) = mpsc::channel(capacity);
    let (blocked_tx, blocked_rx) = mpsc::channel(capacity);
    let dropped = Arc::new(Dropped::default());
    (
        EventSink {
            allowed: allowed_tx,
            blocked: blocked_tx,
            dropped: dropped.clone(),
        },
        EventSource {
            allowed: allowed_rx,
            blocked: blocked_rx,
            dropped,
        },
    )
}

#[derive(Debug, Default)]
struct Dropped {
    allowed: AtomicU64,
    blocked: AtomicU64,
}

/// The doors' end: pushing never waits.
#[derive(Clone, Debug)]
pub struct EventSink {
    allowed: mpsc::Sender<UsageEvent>,
    blocked: mpsc::Sender<UsageEvent>,
    dropped: Arc<Dropped>,
}

impl EventSink {
    /// Queues `event`, or counts it as dropped when its queue is full.
    pub fn push(&self, event: UsageEvent) {
        let (queue, dropped) = if event.reason.allowed() {
            (&self.allowed, &self.dropped.allowed)
        } else {
            (&self.blocked, &self.dropped.blocked)
        };
        match queue.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
                // Relaxed: the counter is a tally, read once per batch.
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The reporter's end.
#[derive(Debug)]
pub struct EventSource {
    allowed: mpsc::Receiver<UsageEvent>,
    blocked: mpsc::Receiver<UsageEvent>,
    dropped: Arc<Dropped>,
}

impl EventSource {
    /// Waits for at least one event, then moves whatever else is waiting into
    /// `out` until it holds `max`. Returns false once every sink is gone and
    /// both queues are empty.
    pub async fn recv_into(&mut self, out: &mut Vec<UsageEvent>, max: usize) -> bool {
        let first = tokio::select! {
            biased;
            Some(e) = self.blocked.recv() => e,
            Some(e) = self.allowed.recv() => e,
            else => return false,
        };
        out.push(first);
        self.drain_into(out, max);
        true
    }

    /// Moves waiting events into `out` until it holds `max`, blocked ones first.
    pub fn drain_into(&mut self, out: &mut Vec<UsageEvent>, max: usize) {
        for queue in [&mut self.blocked, &mut self.allowed] {
            while out.len() < max {
                match queue.try_recv() {
                    Ok(e) => out.push(e),
                    Err(_) => break,
                }
            }
        }
    }

    /// Events dropped since the previous call: `(allowed, blocked)`.
    pub fn take_dropped(&self) -> (u64, u64) {
        (
            self.dropped.allowed.swap(0, Ordering::Relaxed),
            self.dropped.blocked.swap(0, Ordering::Relaxed),
        )
    }

    /// Counts events that were taken from the queue but could not be
    /// delivered, so the next batch reports them.
    pub fn count_lost(&self, allowed: u64, blocked: u64) {
        self.dropped.allowed.fetch_add(allowed, Ordering::Relaxed);
        self.dropped.blocked.fetch_add(blocked, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use ipgate_shared::{Decision, PresentedKey};

    use super::*;

    fn event(fail_open: bool) -> UsageEvent {
        // Unsynced decisions give one allowed and one blocked reason.
        let d = Decision::unsynced(PresentedKey::Missing, fail_open);
        UsageEvent::record(
            &d,
            ipgate_shared::Door::Proxy,
            "r",
            SystemTime::now(),
            "orders",
            "GET",
            "/",
            "203.0.113.5".parse().unwrap(),
            ipgate_shared::ClientIpSource::Peer,
        )
    }

    #[tokio::test]
    async fn a_flood_of_allowed_events_never_pushes_out_blocked_ones() {
        let (sink, mut source) = queue(2);
        sink.push(event(false));
        for _ in 0..10 {
            sink.push(event(true));
        }
        sink.push(event(false));
        sink.push(event(false));
        assert_eq!(source.take_dropped(), (8, 1));
        assert_eq!(source.take_dropped(), (0, 0));

        let mut out = Vec::new();
        assert!(source.recv_into(&mut out, 3).await);
        assert_eq!(out.len(), 3);
        assert!(
            out[..2].iter().all(|e| !e.reason.allowed()),
            "blocked first"
        );
        source.drain_into(&mut out, 10);
        assert_eq!(out.len(), 4);
    }

    #[tokio::test]
    async fn a_closed_queue_ends_the_source() {
        let (sink, mut source) = queue(4);
        sink.push(event(true));
        drop(sink);
        let mut out = Vec::new();
        assert!(source.recv_into(&mut out, 10).await);
        assert!(!source.recv_into(&mut out, 10).await);
    }
}
