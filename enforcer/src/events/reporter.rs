//! The reporter: sends queued usage events to the control plane in batches
//! of at most 1,000 events or every 200 ms, each batch with a UUID.
//!
//! A batch that fails is retried as it is (same id, same events) until it is
//! delivered: the control plane stores a batch id at most once, so a retry of
//! a batch that did arrive is harmless. Meanwhile the doors keep pushing into
//! the bounded queue, which counts what it cannot hold.

use std::time::{Duration, SystemTime};

use ipgate_shared::{
    EnforcerId, Reason,
    proto::sync::v1::{ReportEventsRequest, UsageEvent as WireEvent},
    time,
    usage::UsageEvent,
};
use tokio::{
    sync::watch,
    time::{Instant, sleep_until, timeout},
};
use tonic::Code;
use tracing::{Instrument, debug, error, info_span, warn};

use super::{Dropped, EventSource};
use crate::{backoff::Backoff, control_plane::ControlPlane};

/// Most events in one batch.
pub(crate) const MAX_BATCH: usize = 1_000;
/// Longest an event waits for its batch to leave.
pub(crate) const BATCH_INTERVAL: Duration = Duration::from_millis(200);
/// How long shutdown waits for the last events to reach the control plane.
pub(crate) const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest one `ReportEvents` call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Moves events from the queue to the control plane.
pub(crate) struct Reporter {
    source: EventSource,
    control_plane: ControlPlane,
    enforcer_id: EnforcerId,
    backoff: Backoff,
    /// Which control-plane address to call; moves on after a failure.
    cursor: usize,
    stop: watch::Receiver<bool>,
    /// Set once shutdown began: the instant the reporter gives up.
    flush_deadline: Option<Instant>,
}

impl Reporter {
    /// A reporter that runs until `stop` turns true, then flushes.
    pub(crate) fn new(
        source: EventSource,
        control_plane: ControlPlane,
        enforcer_id: EnforcerId,
        backoff: Backoff,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Reporter {
            source,
            control_plane,
            enforcer_id,
            backoff,
            cursor: 0,
            stop,
            flush_deadline: None,
        }
    }

    /// Collects and sends batches until shutdown, then flushes what is queued.
    pub(crate) async fn run(mut self) {
        loop {
            let mut events = Vec::new();
            let stopping = self.fill(&mut events).await;
            if stopping {
                self.begin_flush();
            }
            if let Some(batch) = self.batch(events)
                && !self.deliver(batch).await
            {
                break;
            }
            if stopping {
                self.flush_rest().await;
                break;
            }
        }
    }

    /// Gathers events for one batch; true when shutdown was asked for.
    async fn fill(&mut self, events: &mut Vec<UsageEvent>) -> bool {
        let window = Instant::now() + BATCH_INTERVAL;
        while events.len() < MAX_BATCH {
            tokio::select! {
                biased;
                () = crate::shutdown::requested(&mut self.stop) => return true,
                open = self.source.recv_into(events, MAX_BATCH) => {
                    if !open {
                        // Every door is gone: nothing more will come.
                        return true;
                    }
                }
                () = sleep_until(window) => break,
            }
        }
        false
    }

    fn begin_flush(&mut self) {
        self.flush_deadline
            .get_or_insert_with(|| Instant::now() + FLUSH_TIMEOUT);
    }

    /// Sends every event still queued; gives up at the flush deadline.
    async fn flush_rest(&mut self) {
        loop {
            let mut events = Vec::new();
            self.source.drain_into(&mut events, MAX_BATCH);
            let Some(batch) = self.batch(events) else {
                return;
            };
            if !self.deliver(batch).await {
                return;
            }
        }
    }

    /// Wraps `events` and the drop counts in a batch with a fresh id; `None`
    /// when there is nothing to say.
    fn batch(&self, events: Vec<UsageEvent>) -> Option<ReportEventsRequest> {
        let dropped = self.source.take_dropped();
        if events.is_empty() && dropped.is_empty() {
            return None;
        }
        if !dropped.is_empty() {
            warn!(
                dropped_allowed = dropped.allowed,
                dropped_blocked = dropped.blocked,
                "usage-event queue was full; dropped events are counted in the next batch"
            );
        }
        let (first_dropped, last_dropped) = match dropped.window {
            Some((first, last)) => (
                Some(time::to_timestamp(first)),
                Some(time::to_timestamp(last)),
            ),
            None => (None, None),
        };
        Some(ReportEventsRequest {
            batch_id: uuid::Uuid::new_v4().to_string(),
            enforcer_id: self.enforcer_id.to_string(),
            events: events.iter().map(WireEvent::from).collect(),
            dropped_allowed: dropped.allowed,
            dropped_blocked: dropped.blocked,
            first_dropped,
            last_dropped,
        })
    }

    /// Sends `batch` until it is delivered; false when the flush deadline
    /// passed first (the batch is then lost, and said so).
    async fn deliver(&mut self, batch: ReportEventsRequest) -> bool {
        let span =
            info_span!("report_events", batch_id = %batch.batch_id, events = batch.events.len());
        async {
            loop {
                match self.call(&batch).await {
                    Ok(duplicate) => {
                        debug!(duplicate, "usage batch delivered");
                        self.backoff.reset();
                        return true;
                    }
                    Err(status) if status.code() == Code::InvalidArgument => {
                        // Retrying the same events would fail forever.
                        error!(
                            reason = status.message(),
                            "control plane refused a usage batch as invalid; dropping it"
                        );
                        self.count_lost(&batch);
                        return true;
                    }
                    Err(status) => {
                        warn!(
                            code = ?status.code(),
                            reason = status.message(),
                            "could not deliver usage batch; retrying it"
                        );
                        self.cursor = self.cursor.wrapping_add(1);
                    }
                }
                if !self.wait_before_retry().await {
                    error!(
                        "shutdown deadline passed: {} usage events were not delivered",
                        batch.events.len()
                    );
                    return false;
                }
            }
        }
        .instrument(span)
        .await
    }

    /// One `ReportEvents` call; `Ok(duplicate)` on success.
    async fn call(&mut self, batch: &ReportEventsRequest) -> Result<bool, tonic::Status> {
        let (_, mut client) = self.control_plane.client(self.cursor);
        let limit = match self.flush_deadline {
            Some(deadline) => CALL_TIMEOUT.min(deadline.saturating_duration_since(Instant::now())),
            None => CALL_TIMEOUT,
        };
        let request = self.control_plane.request(batch.clone());
        match timeout(limit, client.report_events(request)).await {
            Ok(response) => response.map(|r| r.into_inner().duplicate),
            Err(_) => Err(tonic::Status::deadline_exceeded(
                "ReportEvents did not answer in time",
            )),
        }
    }

    /// Sleeps one backoff step; false when the flush deadline does not allow
    /// another try. A shutdown request during the wait starts the flush clock.
    async fn wait_before_retry(&mut self) -> bool {
        let wake = Instant::now() + self.backoff.next_wait();
        if self.flush_deadline.is_none() {
            tokio::select! {
                () = sleep_until(wake) => return true,
                () = crate::shutdown::requested(&mut self.stop) => {}
            }
            self.begin_flush();
        }
        match self.flush_deadline {
            Some(deadline) if wake >= deadline => false,
            _ => {
                sleep_until(wake).await;
                true
            }
        }
    }

    /// Counts a refused batch's events (and the drops it carried) as dropped,
    /// so the next batch still tells the control plane they existed.
    fn count_lost(&self, batch: &ReportEventsRequest) {
        let allowed = batch
            .events
            .iter()
            .filter(|e| e.reason.parse().is_ok_and(Reason::allowed))
            .count() as u64;
        let blocked = batch.events.len() as u64 - allowed;
        let times = batch
            .events
            .iter()
            .filter_map(|e| e.time)
            .chain(batch.first_dropped)
            .chain(batch.last_dropped)
            .filter_map(|t| time::from_timestamp(&t));
        let window = times.fold(None, |w: Option<(SystemTime, SystemTime)>, t| {
            Some(w.map_or((t, t), |(f, l)| (f.min(t), l.max(t))))
        });
        // A refused batch whose events carry no readable time is placed now.
        let now = SystemTime::now();
        self.source.count_lost(Dropped {
            allowed: allowed + batch.dropped_allowed,
            blocked: blocked + batch.dropped_blocked,
            window: Some(window.unwrap_or((now, now))),
        });
    }
}
