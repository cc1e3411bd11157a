//! Every request passes through `Enforcer::decide_pending`, so the decision
//! and the usage event it records must not touch the heap: a counting
//! allocator shows none for a request allowed from a listed address (its
//! matched entry labelled), and none for a common refusal. What the queue
//! does when the event is pushed is outside the count: that is the
//! channel's, not the event's.
//!
//! Its own test binary, because the counting allocator is global.

use std::net::IpAddr;

use ipgate_enforcer::{
    DecisionInput, Enforcer,
    events::queue,
    shared::{
        Allowlist, ApiConfig, ClientIpSource, Door, Entry, Index, KeyConfig, Label, PresentedKey,
        Reason, Revision, SecretHash, key::NewKey,
    },
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static ALLOC: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

fn list(entries: &[(&str, &str)]) -> Allowlist {
    let entries = entries
        .iter()
        .map(|(cidr, label)| {
            Entry::new(
                cidr.parse().expect("valid entry"),
                label.parse::<Label>().expect("label"),
                None,
            )
        })
        .collect();
    Allowlist::new(entries, false)
}

/// API `orders` open to 203.0.113.0/24, and a key on it whose 20 entries
/// include 203.0.113.7, labelled "office".
fn index() -> (Index, String) {
    let key = NewKey::generate();
    let mut entries: Vec<(String, &str)> =
        (1..20).map(|i| (format!("198.51.{i}.0/24"), "")).collect();
    entries.push(("203.0.113.7".into(), "office"));
    let entries: Vec<(&str, &str)> = entries.iter().map(|(c, l)| (c.as_str(), *l)).collect();
    let index = Index::from_snapshot(
        Revision::new(1),
        [ApiConfig {
            slug: "orders".parse().expect("slug"),
            enabled: true,
            allowlist: list(&[("203.0.113.0/24", "")]),
            routes: vec![],
        }],
        [KeyConfig {
            id: key.id,
            api: "orders".parse().expect("slug"),
            secret_hash: SecretHash::of(&key.secret),
            scopes: vec![],
            expires_at: None,
            allowlist: list(&entries),
            previous_secrets: vec![],
        }],
    );
    (index, key.secret)
}

#[test]
fn deciding_and_recording_the_event_allocate_nothing() {
    let (sink, mut source) = queue(16);
    let enforcer = Enforcer::new(false, sink);
    let (index, secret) = index();
    enforcer.install(std::sync::Arc::new(index));

    let input = |client: &'static str| DecisionInput {
        door: Door::Proxy,
        api: "orders",
        key: PresentedKey::One(&secret),
        client_ip: client.parse::<IpAddr>().expect("address"),
        client_ip_source: ClientIpSource::XForwardedFor,
        method: "GET",
        path: "/orders/7",
        request_id: None,
    };
    // (what, client, expected reason, expected label)
    let cases = [
        (
            "allowed from a listed address",
            "203.0.113.7",
            Reason::Allowed,
            "office",
        ),
        (
            "refused by the key's list",
            "203.0.113.8",
            Reason::IpNotAllowedKey,
            "",
        ),
        (
            "refused by the API's list",
            "192.0.2.1",
            Reason::IpNotAllowedApi,
            "",
        ),
    ];
    for (what, client, reason, label) in cases {
        // Once to warm what is set up lazily (the thread's random
        // generator, arc-swap's per-thread slot), then counted.
        drop(enforcer.decide_pending(input(client)));
        let region = Region::new(ALLOC);
        let (outcome, pending) = enforcer.decide_pending(input(client));
        let allocations = region.change().allocations;
        drop(pending);

        assert_eq!(outcome.reason, reason, "{what}");
        assert_eq!(&*outcome.matched_label, label, "{what}");
        assert_eq!(allocations, 0, "{what}: {allocations} allocations");
    }

    // The counted events are the real ones: queued with what was decided.
    let mut events = Vec::new();
    source.drain_into(&mut events, 16);
    assert_eq!(events.len(), 6);
    let allowed = events
        .iter()
        .find(|e| e.reason == Reason::Allowed)
        .expect("allowed event");
    assert_eq!(&*allowed.api, "orders");
    assert_eq!(&*allowed.matched_label, "office");
    assert_eq!((&*allowed.method, &*allowed.path), ("GET", "/orders/7"));
    assert_eq!(allowed.request_id.len(), 36, "a generated UUID");
}
