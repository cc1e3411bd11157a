//! The enforcer's live state: the current index, swapped atomically by the
//! sync client, and [`Enforcer::decide`], the one function every door calls.

use std::{net::IpAddr, sync::Arc, time::SystemTime};

use arc_swap::ArcSwapOption;
use ipgate_shared::{
    ClientIpSource, Decision, Door, Index, KeyId, PresentedKey, Reason, Request, Revision, decide,
    normalize_ip, time,
};
use tokio::sync::watch;

use crate::events::{Event, EventSink, RequestId, Seen, Text};

/// One request as a door saw it.
#[derive(Clone, Copy, Debug)]
pub struct DecisionInput<'a> {
    /// The door the request came through, for the usage log.
    pub door: Door,
    /// Slug of the API called.
    pub api: &'a str,
    /// The key the request presented.
    pub key: PresentedKey<'a>,
    /// The client address the door determined.
    pub client_ip: IpAddr,
    /// Where the door found it, for the usage log: so an operator can tell
    /// a real client from a fallback on a trusted proxy's address.
    pub client_ip_source: ClientIpSource,
    /// The HTTP method (or what the caller reports).
    pub method: &'a str,
    /// The path without the query string (which may carry secrets).
    pub path: &'a str,
    /// A request id chosen upstream of the door; one is generated when `None`.
    pub request_id: Option<&'a str>,
}

/// What a door needs to answer, owned so it outlives the index it came
/// from; built without the heap, like the event (`events/event.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Why the request was allowed or refused.
    pub reason: Reason,
    /// HTTP status to answer with: 200 when allowed.
    pub status: u16,
    /// The exact JSON body of a denial; `None` when allowed.
    pub body: Option<&'static str>,
    /// Id shared by the response headers and the usage log.
    pub request_id: RequestId,
    /// The address decided on, canonical (IPv4-mapped shown as IPv4).
    pub client_ip: IpAddr,
    /// For allowed requests, the label of the entry that matched.
    pub matched_label: Text,
    /// The presented key's id when it was well-formed.
    pub key_id: Option<KeyId>,
}

impl Outcome {
    /// True when the request may proceed.
    pub fn allowed(&self) -> bool {
        self.reason.allowed()
    }

    /// The denial's `error.code`; `None` when allowed.
    pub fn error_code(&self) -> Option<&'static str> {
        self.reason.error_code()
    }
}

/// The index every door decides from, and where decisions are recorded.
#[derive(Debug)]
pub struct Enforcer {
    /// `None` until the first snapshot; readers never lock.
    index: ArcSwapOption<Index>,
    /// Flips to true with the first index, for readiness.
    synced: watch::Sender<bool>,
    /// Flips to true once the control plane has vouched for the index in
    /// force this run: a cached index is stale until then.
    fresh: watch::Sender<bool>,
    fail_open_until_synced: bool,
    events: EventSink,
}

impl Enforcer {
    /// An enforcer with no index yet.
    pub fn new(fail_open_until_synced: bool, events: EventSink) -> Self {
        Enforcer {
            index: ArcSwapOption::empty(),
            synced: watch::Sender::new(false),
            fresh: watch::Sender::new(false),
            fail_open_until_synced,
            events,
        }
    }

    /// Usage events queued and dropped since start, for sync heartbeats.
    pub fn event_counts(&self) -> (u64, u64) {
        (self.events.buffered(), self.events.dropped_total())
    }

    /// Decides one request, queues its usage event and returns the answer.
    pub fn decide(&self, input: DecisionInput<'_>) -> Outcome {
        self.decide_pending(input).0
    }

    /// Decides one request; its usage event is queued when the returned
    /// [`PendingEvent`] is dropped, so a door that forwards the request can
    /// first record the status the client finally got.
    pub fn decide_pending(&self, input: DecisionInput<'_>) -> (Outcome, PendingEvent<'_>) {
        let client_ip = normalize_ip(input.client_ip);
        let now = SystemTime::now();
        let request = Request {
            api: input.api,
            key: input.key,
            client_ip,
            method: input.method,
            path: input.path,
            now: time::to_millis(now),
        };
        let index = self.index.load();
        let decision = match index.as_deref() {
            Some(index) => decide(index, &request),
            None => Decision::unsynced_request(&request, self.fail_open_until_synced),
        };
        let seen = Seen {
            door: input.door,
            time: now,
            api: input.api,
            method: input.method,
            path: input.path,
            client_ip,
            client_ip_source: input.client_ip_source,
        };
        let event = Event::record(
            &decision,
            seen,
            RequestId::given_or_generate(input.request_id),
        );
        let outcome = Outcome {
            reason: decision.reason,
            status: decision.reason.http_status(),
            body: decision.reason.body(),
            // The event's copy is cut to the log's limit; answer with the same.
            request_id: event.request_id.clone(),
            client_ip,
            matched_label: event.matched_label.clone(),
            key_id: decision.key_id,
        };
        let pending = PendingEvent {
            sink: &self.events,
            event: Some(event),
        };
        (outcome, pending)
    }

    /// True when requests are allowed until the first snapshot.
    pub fn fails_open_until_synced(&self) -> bool {
        self.fail_open_until_synced
    }

    /// The index in force, if any.
    pub fn index(&self) -> Option<Arc<Index>> {
        self.index.load_full()
    }

    /// The revision in force; `None` before the first snapshot.
    pub fn revision(&self) -> Option<Revision> {
        self.index.load().as_deref().map(Index::revision)
    }

    /// Puts `index` in force for every request that starts from now on.
    /// The sync client calls it; so do tests and benches that decide
    /// without a control plane.
    pub fn install(&self, index: Arc<Index>) {
        self.install_cached(index);
        self.mark_fresh();
    }

    /// Puts an index read from the snapshot cache in force: it decides
    /// requests at once, and is stale until [`Enforcer::mark_fresh`].
    pub(crate) fn install_cached(&self, index: Arc<Index>) {
        self.index.store(Some(index));
        self.synced
            .send_if_modified(|synced| !std::mem::replace(synced, true));
    }

    /// The control plane has vouched for the index in force.
    pub(crate) fn mark_fresh(&self) {
        let was_stale = *self.synced.borrow() && !*self.fresh.borrow();
        if self
            .fresh
            .send_if_modified(|fresh| !std::mem::replace(fresh, true))
            && was_stale
        {
            tracing::info!(
                revision = ?self.revision().map(Revision::get),
                "in step with the control plane: the index in force is no longer stale"
            );
        }
    }

    /// True while the index in force came from the snapshot cache and the
    /// control plane has not vouched for it yet.
    pub fn is_stale(&self) -> bool {
        *self.synced.borrow() && !*self.fresh.borrow()
    }

    /// Resolves once the control plane has vouched for the index in force.
    pub async fn fresh(&self) {
        let mut fresh = self.fresh.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = fresh.wait_for(|f| *f).await;
    }

    /// Resolves once the first index is in force.
    pub async fn synced(&self) {
        let mut synced = self.synced.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = synced.wait_for(|s| *s).await;
    }
}

/// A decided request's usage event, queued when dropped — also when the
/// client goes away before the answer, so no decision escapes the log.
#[derive(Debug)]
#[must_use = "the event is queued when this is dropped"]
pub struct PendingEvent<'e> {
    sink: &'e EventSink,
    event: Option<Event>,
}

impl PendingEvent<'_> {
    /// Records the HTTP status the client got (e.g. the upstream's, or 502).
    pub fn set_status(&mut self, status: u16) {
        if let Some(event) = &mut self.event {
            event.status = status;
        }
    }
}

impl Drop for PendingEvent<'_> {
    fn drop(&mut self) {
        if let Some(event) = self.event.take() {
            self.sink.push(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use ipgate_shared::{Allowlist, ApiConfig, Entry};

    use super::*;
    use crate::events::queue;

    fn input(ip: &str) -> DecisionInput<'_> {
        DecisionInput {
            door: Door::Check,
            api: "orders",
            key: PresentedKey::Missing,
            client_ip: ip.parse().unwrap(),
            client_ip_source: ClientIpSource::Named,
            method: "GET",
            path: "/orders",
            request_id: None,
        }
    }

    #[tokio::test]
    async fn decisions_before_and_after_the_first_index() {
        let (sink, mut source) = queue(16);
        let enforcer = Enforcer::new(false, sink);
        let before = enforcer.decide(input("::ffff:203.0.113.5"));
        assert_eq!(before.reason, Reason::NotSynced);
        assert_eq!(before.status, 503);
        assert_eq!(before.client_ip.to_string(), "203.0.113.5");
        assert!(
            before
                .body
                .is_some_and(|b| b.contains("ENFORCER_NOT_READY"))
        );
        assert!(uuid::Uuid::parse_str(&before.request_id).is_ok());

        let list = Allowlist::new(
            vec![Entry::new(
                "203.0.113.0/24".parse().unwrap(),
                "office".parse().unwrap(),
                None,
            )],
            false,
        );
        let api = ApiConfig {
            slug: "orders".parse().unwrap(),
            enabled: true,
            allowlist: list,
            routes: vec![],
        };
        enforcer.install(Arc::new(Index::from_snapshot(Revision::new(4), [api], [])));
        assert_eq!(enforcer.revision(), Some(Revision::new(4)));
        let blocked = enforcer.decide(DecisionInput {
            door: Door::Proxy,
            client_ip_source: ClientIpSource::Malformed,
            request_id: Some("req-7"),
            ..input("198.51.100.1")
        });
        assert_eq!(blocked.reason, Reason::IpNotAllowedApi);
        assert_eq!(&*blocked.request_id, "req-7");

        let mut events = Vec::new();
        source.drain_into(&mut events, 10);
        assert_eq!(events.len(), 2);
        // Each event says the door and the address's source its input named.
        let doors: Vec<_> = events
            .iter()
            .map(|e| (&*e.request_id == "req-7", e.door, e.client_ip_source))
            .collect();
        assert!(
            doors.contains(&(true, Door::Proxy, ClientIpSource::Malformed)),
            "{doors:?}"
        );
        assert!(
            doors.contains(&(false, Door::Check, ClientIpSource::Named)),
            "{doors:?}"
        );
    }

    #[test]
    fn fail_open_allows_until_synced() {
        let (sink, _source) = queue(16);
        let enforcer = Enforcer::new(true, sink);
        let outcome = enforcer.decide(input("203.0.113.5"));
        assert!(outcome.allowed());
        assert_eq!(outcome.reason, Reason::UnsyncedFailOpen);
        assert_eq!(outcome.body, None);
    }
}
