//! The bounded queue between the doors and the reporter.
//!
//! It holds up to `capacity` events in all, while the control plane is
//! away. Allowed and blocked requests wait in separate queues, and allowed
//! events may fill only nine tenths of the whole: the last tenth is kept
//! for blocked ones, so a flood of allowed traffic drops allowed events
//! first and never costs the record of a block. Every event that does not
//! fit is counted, with the times of the first and last such drop, and the
//! counts travel up with the next batch, where the control plane turns them
//! into a gap in the usage log (docs/sync-protocol.md, "Usage events").

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::SystemTime,
};

use tokio::sync::mpsc::{self, error::TrySendError};

use super::Event;

/// The share of the queue kept for blocked events: allowed ones may fill
/// at most `capacity - capacity / BLOCKED_RESERVE_DIVISOR`.
const BLOCKED_RESERVE_DIVISOR: usize = 10;

/// Makes a queue holding up to `capacity` events, the last tenth of them
/// for blocked requests only.
pub fn queue(capacity: usize) -> (EventSink, EventSource) {
    let capacity = capacity.max(1);
    let allowed_limit = capacity - capacity / BLOCKED_RESERVE_DIVISOR;
    // Tokio's channels allocate as they fill, so the bound costs nothing
    // until events wait; the shared count keeps the two within `capacity`.
    let (allowed_tx, allowed_rx) = mpsc::channel(allowed_limit);
    let (blocked_tx, blocked_rx) = mpsc::channel(capacity);
    let dropped = Arc::new(Mutex::new(Dropped::default()));
    let waiting = Arc::new(AtomicUsize::new(0));
    (
        EventSink {
            allowed: allowed_tx,
            blocked: blocked_tx,
            limits: Limits {
                allowed: allowed_limit,
                blocked: capacity,
            },
            waiting: waiting.clone(),
            dropped: dropped.clone(),
            dropped_total: Arc::default(),
        },
        EventSource {
            allowed: allowed_rx,
            blocked: blocked_rx,
            waiting,
            dropped,
        },
    )
}

/// How many events may wait in all when an event of each class arrives.
#[derive(Clone, Copy, Debug)]
struct Limits {
    allowed: usize,
    blocked: usize,
}

/// Events dropped since the reporter last asked: how many of each class,
/// and when the first and the last of them happened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    pub allowed: u64,
    pub blocked: u64,
    /// The earliest and latest time among the dropped events; `None` when
    /// nothing was dropped.
    pub window: Option<(SystemTime, SystemTime)>,
}

impl Dropped {
    /// Nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.allowed == 0 && self.blocked == 0
    }

    /// Counts `allowed` and `blocked` more events that happened between
    /// `first` and `last`.
    fn add(&mut self, allowed: u64, blocked: u64, first: SystemTime, last: SystemTime) {
        self.allowed += allowed;
        self.blocked += blocked;
        self.window = Some(match self.window {
            None => (first, last),
            Some((f, l)) => (f.min(first), l.max(last)),
        });
    }
}

/// Shared by the doors and the reporter. A lock, not atomics, so a count
/// and its window are always taken together; it is only taken when an
/// event does not fit, or once a batch.
type SharedDropped = Arc<Mutex<Dropped>>;

fn lock(dropped: &SharedDropped) -> std::sync::MutexGuard<'_, Dropped> {
    // A panic while holding the lock leaves plain numbers behind: still usable.
    dropped.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The doors' end: pushing never waits.
#[derive(Clone, Debug)]
pub struct EventSink {
    allowed: mpsc::Sender<Event>,
    blocked: mpsc::Sender<Event>,
    limits: Limits,
    /// Events waiting in both queues, shared with the source.
    waiting: Arc<AtomicUsize>,
    dropped: SharedDropped,
    /// Events dropped at the door since start, for heartbeats.
    dropped_total: Arc<AtomicU64>,
}

impl EventSink {
    /// Events waiting in both queues.
    pub fn buffered(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed) as u64
    }

    /// Events dropped because their queue was full, since start.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    /// Queues `event`, or counts it as dropped when the queue is full for
    /// its class.
    pub fn push(&self, event: Event) {
        let allowed = event.reason.allowed();
        let (queue, limit) = if allowed {
            (&self.allowed, self.limits.allowed)
        } else {
            (&self.blocked, self.limits.blocked)
        };
        // Take a place first, then send: the count never lags what waits.
        let admitted = self.waiting.fetch_add(1, Ordering::AcqRel) < limit;
        let refused = if admitted {
            queue.try_send(event).err().map(|e| match e {
                TrySendError::Full(event) | TrySendError::Closed(event) => event,
            })
        } else {
            Some(event)
        };
        if let Some(event) = refused {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            let (a, b) = if allowed { (1, 0) } else { (0, 1) };
            lock(&self.dropped).add(a, b, event.time, event.time);
            self.dropped_total.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The reporter's end.
#[derive(Debug)]
pub struct EventSource {
    allowed: mpsc::Receiver<Event>,
    blocked: mpsc::Receiver<Event>,
    waiting: Arc<AtomicUsize>,
    dropped: SharedDropped,
}

impl EventSource {
    /// Moves waiting events into `out` until it holds `max`, blocked ones first.
    pub fn drain_into(&mut self, out: &mut Vec<Event>, max: usize) {
        let before = out.len();
        for queue in [&mut self.blocked, &mut self.allowed] {
            while out.len() < max {
                match queue.try_recv() {
                    Ok(e) => out.push(e),
                    Err(_) => break,
                }
            }
        }
        self.waiting.fetch_sub(out.len() - before, Ordering::AcqRel);
    }

    /// True once every sink is gone and both queues are empty: nothing
    /// more will come.
    pub fn is_closed(&self) -> bool {
        self.blocked.is_closed()
            && self.allowed.is_closed()
            && self.blocked.is_empty()
            && self.allowed.is_empty()
    }

    /// Events dropped since the previous call.
    pub fn take_dropped(&self) -> Dropped {
        std::mem::take(&mut *lock(&self.dropped))
    }

    /// Counts events that were taken from the queue but could not be
    /// delivered (`lost`), so the next batch reports them.
    pub fn count_lost(&self, lost: Dropped) {
        self.lost_counter().count(lost);
    }

    /// A handle that counts lost events, for a batch on its way.
    pub(crate) fn lost_counter(&self) -> LostCounter {
        LostCounter(self.dropped.clone())
    }
}

/// Counts events taken from the queue that could not be delivered.
#[derive(Clone, Debug)]
pub(crate) struct LostCounter(SharedDropped);

impl LostCounter {
    /// Adds `lost` to what the next batch reports as dropped.
    pub(crate) fn count(&self, lost: Dropped) {
        if let Some((first, last)) = lost.window {
            lock(&self.0).add(lost.allowed, lost.blocked, first, last);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use ipgate_shared::{Decision, PresentedKey};

    use super::*;
    use crate::events::{RequestId, Seen};

    fn event(fail_open: bool) -> Event {
        // Unsynced decisions give one allowed and one blocked reason.
        let d = Decision::unsynced(PresentedKey::Missing, fail_open);
        let seen = Seen {
            door: ipgate_shared::Door::Proxy,
            time: SystemTime::now(),
            api: "orders",
            method: "GET",
            path: "/",
            client_ip: "203.0.113.5".parse().unwrap(),
            client_ip_source: ipgate_shared::ClientIpSource::Peer,
        };
        Event::record(&d, seen, RequestId::generate())
    }

    #[test]
    fn a_flood_of_allowed_events_leaves_the_last_tenth_for_blocked_ones() {
        let (sink, mut source) = queue(10);
        sink.push(event(false));
        for _ in 0..20 {
            sink.push(event(true));
        }
        assert_eq!(sink.buffered(), 9, "allowed events stop at nine tenths");
        sink.push(event(false));
        sink.push(event(false));
        assert_eq!(sink.buffered(), 10);
        let dropped = source.take_dropped();
        assert_eq!((dropped.allowed, dropped.blocked), (12, 1));
        let (first, last) = dropped.window.expect("a window");
        assert!(first <= last);
        assert_eq!(source.take_dropped(), Dropped::default());

        let mut out = Vec::new();
        source.drain_into(&mut out, 3);
        assert_eq!(out.len(), 3);
        assert!(
            out[..2].iter().all(|e| !e.reason.allowed()),
            "blocked first"
        );
        assert_eq!(sink.buffered(), 7);
        source.drain_into(&mut out, 100);
        assert_eq!((out.len(), sink.buffered()), (10, 0));
    }

    #[test]
    fn blocked_events_may_fill_the_whole_queue() {
        let (sink, source) = queue(10);
        for _ in 0..15 {
            sink.push(event(false));
        }
        sink.push(event(true));
        assert_eq!(sink.buffered(), 10);
        let dropped = source.take_dropped();
        assert_eq!((dropped.allowed, dropped.blocked), (1, 5));
        assert_eq!(sink.dropped_total(), 6);
    }

    #[test]
    fn a_queue_is_closed_once_its_sinks_are_gone_and_it_is_empty() {
        let (sink, mut source) = queue(4);
        sink.push(event(true));
        assert!(!source.is_closed(), "a sink is left");
        drop(sink);
        assert!(!source.is_closed(), "an event is left");
        let mut out = Vec::new();
        source.drain_into(&mut out, 10);
        assert_eq!(out.len(), 1);
        assert!(source.is_closed());
    }

    #[test]
    fn the_window_spans_every_drop_and_lost_batches_widen_it() {
        let (sink, source) = queue(1);
        let at = |secs| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        for secs in [100, 50, 300, 200] {
            let mut e = event(true);
            e.time = at(secs);
            sink.push(e);
        }
        // The first event fitted; 50, 300 and 200 were dropped.
        let dropped = source.take_dropped();
        assert_eq!((dropped.allowed, dropped.blocked), (3, 0));
        assert_eq!(dropped.window, Some((at(50), at(300))));

        source.count_lost(Dropped {
            allowed: 2,
            blocked: 1,
            window: Some((at(10), at(20))),
        });
        // The one place is taken, so this blocked event is dropped too.
        let mut e = event(false);
        e.time = at(400);
        sink.push(e);
        let dropped = source.take_dropped();
        assert_eq!((dropped.allowed, dropped.blocked), (2, 2));
        assert_eq!(dropped.window, Some((at(10), at(400))));
    }
}
