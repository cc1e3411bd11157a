//! The reporter: sends queued usage events to the control plane in batches
//! of at most 1,000 events or every 200 ms, each batch with a UUID, up to
//! [`IN_FLIGHT`] batches at once.
//!
//! A batch that fails is retried as it is (same id, same events) until it is
//! delivered: the control plane stores a batch id at most once, so a retry of
//! a batch that did arrive is harmless, and batches in flight together never
//! share an event. Once a delivery fails, batches go one at a time until
//! one is delivered again: events the control plane cannot take stay in the
//! bounded queue, which counts what it cannot hold, rather than in batches
//! being retried.

use std::time::{Duration, SystemTime};

use ipgate_shared::{EnforcerId, Reason, proto::sync::v1::ReportEventsRequest, time};
use tokio::{
    sync::watch,
    task::JoinSet,
    time::{Instant, sleep_until, timeout, timeout_at},
};
use tonic::Code;
use tracing::{Instrument, debug, error, info_span, warn};

use super::{Dropped, Event, EventSource, queue::LostCounter, wire};
use crate::{backoff::Backoff, control_plane::ControlPlane};

/// Most events in one batch.
pub(crate) const MAX_BATCH: usize = 1_000;
/// Longest an event waits for its batch to leave.
pub(crate) const BATCH_INTERVAL: Duration = Duration::from_millis(200);
/// How often [`Reporter::fill`] reads the queue while a batch fills: at
/// most this much is added to an event's wait, and at 100,000 events a
/// second a tick gathers 1,000, one batch.
const FILL_TICK: Duration = Duration::from_millis(10);
/// Most batches sent and not yet acknowledged while deliveries succeed.
/// One at a time, an enforcer could send no faster than one store commit
/// per round trip; several let the control plane's ingest commit them
/// together (BENCHMARKS.md).
pub(crate) const IN_FLIGHT: usize = 4;
/// How long shutdown waits for the last events to reach the control plane.
pub(crate) const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest one `ReportEvents` call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Moves events from the queue to the control plane.
pub(crate) struct Reporter {
    source: EventSource,
    delivery: Delivery,
    stop: watch::Receiver<bool>,
    /// Batches on their way; each task ends true once its batch is
    /// delivered (or refused), false when the flush deadline passed first.
    sending: JoinSet<bool>,
    /// False from a failed delivery until the next one succeeds.
    healthy: watch::Receiver<bool>,
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
        let (health, healthy) = watch::channel(true);
        let delivery = Delivery {
            health: std::sync::Arc::new(health),
            control_plane,
            enforcer_id,
            backoff,
            cursor: 0,
            stop: stop.clone(),
            flush_deadline: None,
            lost: source.lost_counter(),
        };
        Reporter {
            source,
            delivery,
            stop,
            sending: JoinSet::new(),
            healthy,
        }
    }

    /// Collects and sends batches until shutdown, then flushes what is queued.
    pub(crate) async fn run(mut self) {
        loop {
            let mut stopping = self.wait_for_room().await;
            if !stopping {
                let mut events = Vec::new();
                stopping = self.fill(&mut events).await;
                if let Some(batch) = self.batch(events) {
                    self.start(batch);
                }
            }
            if stopping {
                self.flush_rest().await;
                break;
            }
        }
    }

    /// How many batches may be on their way now.
    fn window(&self) -> usize {
        if *self.healthy.borrow() { IN_FLIGHT } else { 1 }
    }

    /// Waits until another batch may leave; true when shutdown was asked
    /// for meanwhile. Waiting leaves new events in the queue, which holds
    /// them (or counts them) as it would for a slow control plane.
    async fn wait_for_room(&mut self) -> bool {
        while self.sending.len() >= self.window() {
            tokio::select! {
                biased;
                () = crate::shutdown::requested(&mut self.stop) => return true,
                _ = self.sending.join_next() => {}
            }
        }
        false
    }

    /// Starts delivering `batch` beside those already on their way.
    fn start(&mut self, batch: ReportEventsRequest) {
        let mut delivery = self.delivery.clone();
        // The earlier batch's success says nothing of this one's first try.
        delivery.backoff.reset();
        self.sending
            .spawn(async move { delivery.deliver(batch).await });
    }

    /// Gathers events for one batch; true when shutdown was asked for. A
    /// delivery failing meanwhile ends the batch early, so what comes after
    /// waits in the queue.
    ///
    /// The queue is read every [`FILL_TICK`], not woken by each event: a
    /// door's push then never wakes the reporter, and at tens of thousands
    /// of requests a second those wake-ups, each a task switch and often a
    /// thread's, cost the proxy door more than the event (BENCHMARKS.md).
    async fn fill(&mut self, events: &mut Vec<Event>) -> bool {
        let window = Instant::now() + BATCH_INTERVAL;
        let mut healthy = self.healthy.clone();
        let watch_health = *healthy.borrow_and_update();
        let failing = async {
            if watch_health {
                let _ = healthy.wait_for(|h| !*h).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(failing);
        loop {
            self.source.drain_into(events, MAX_BATCH);
            if events.len() >= MAX_BATCH {
                return false;
            }
            if self.source.is_closed() {
                // Every door is gone: nothing more will come.
                return true;
            }
            let now = Instant::now();
            if now >= window {
                return false;
            }
            tokio::select! {
                biased;
                () = crate::shutdown::requested(&mut self.stop) => return true,
                () = &mut failing => return false,
                () = sleep_until(window.min(now + FILL_TICK)) => {}
            }
        }
    }

    /// Sends every event still queued, then waits for every batch on its
    /// way; gives up at the flush deadline, saying what was not delivered.
    async fn flush_rest(&mut self) {
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        self.delivery.flush_deadline = Some(deadline);
        loop {
            let room = async {
                while self.sending.len() >= self.window() {
                    self.sending.join_next().await;
                }
            };
            if timeout_at(deadline, room).await.is_err() {
                break;
            }
            let mut events = Vec::new();
            self.source.drain_into(&mut events, MAX_BATCH);
            let Some(batch) = self.batch(events) else {
                break;
            };
            self.start(batch);
        }
        let all_done = async { while self.sending.join_next().await.is_some() {} };
        if timeout_at(deadline, all_done).await.is_err() {
            error!(
                batches = self.sending.len(),
                "shutdown deadline passed: usage batches still on their way were not delivered"
            );
            self.sending.abort_all();
        }
    }

    /// Wraps `events` and the drop counts in a batch with a fresh id; `None`
    /// when there is nothing to say.
    fn batch(&self, events: Vec<Event>) -> Option<ReportEventsRequest> {
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
        let (strings, events) = wire::encode(&events);
        Some(ReportEventsRequest {
            batch_id: uuid::Uuid::new_v4().to_string(),
            enforcer_id: self.delivery.enforcer_id.to_string(),
            events,
            dropped_allowed: dropped.allowed,
            dropped_blocked: dropped.blocked,
            first_dropped,
            last_dropped,
            strings,
        })
    }
}

/// Delivers one batch: what each batch in flight needs of its own.
#[derive(Clone)]
struct Delivery {
    /// Told whether the last delivery succeeded.
    health: std::sync::Arc<watch::Sender<bool>>,
    control_plane: ControlPlane,
    enforcer_id: EnforcerId,
    backoff: Backoff,
    /// Which control-plane address to call; moves on after a failure.
    cursor: usize,
    stop: watch::Receiver<bool>,
    /// Set once shutdown began: the instant the delivery gives up.
    flush_deadline: Option<Instant>,
    lost: LostCounter,
}

impl Delivery {
    fn begin_flush(&mut self) {
        self.flush_deadline
            .get_or_insert_with(|| Instant::now() + FLUSH_TIMEOUT);
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
                        self.health.send_replace(true);
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
                        // Before saying so: the reporter holds back the
                        // next batch from here on.
                        self.health.send_replace(false);
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
        // Reasons travel in the string table.
        let reason = |e: &&ipgate_shared::proto::sync::v1::UsageEvent| {
            let text = match e.reason_ref {
                0 => Some(e.reason.as_str()),
                r => batch.strings.get(r as usize - 1).map(String::as_str),
            };
            text.and_then(|t| t.parse().ok())
        };
        let allowed = batch
            .events
            .iter()
            .filter(|e| reason(e).is_some_and(Reason::allowed))
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
        self.lost.count(Dropped {
            allowed: allowed + batch.dropped_allowed,
            blocked: blocked + batch.dropped_blocked,
            window: Some(window.unwrap_or((now, now))),
        });
    }
}
