//! The decision is on every request's path, so it must not touch the heap:
//! a counting allocator shows `decide` allocates nothing for an allowed
//! request from a listed address, with or without route rules, and for
//! the common refusals. The one exception is a path not in normal form
//! (`//`, `.` segments, encoded unreserved characters): its new spelling
//! is what the upstream receives, so it is built on the heap. Clients
//! rarely send one; a path already in normal form is borrowed.

use std::net::IpAddr;

use ipgate_shared::{
    Allowlist, ApiConfig, Change, Entry, Index, KeyConfig, Label, PresentedKey, Reason, Request,
    Revision, RouteRule, SecretHash, decide, key::NewKey,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static ALLOC: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const NOW: i64 = 1_800_000_000_000;

fn list(cidrs: &[&str]) -> Allowlist {
    let entries = cidrs
        .iter()
        .map(|c| Entry::new(c.parse().expect("valid entry"), Label::default(), None))
        .collect();
    Allowlist::new(entries, false)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// An API `orders` (its list allows 203.0.113.0/24 and 2001:db8::/32, and
/// `/admin` needs the scope `admin`), and a key on it whose list holds 20
/// entries, 203.0.113.7 among them.
fn world() -> (Index, String) {
    let key = NewKey::generate();
    let mut cidrs: Vec<String> = (1..20).map(|i| format!("198.51.{i}.0/24")).collect();
    cidrs.push("203.0.113.7".into());
    let cidrs: Vec<&str> = cidrs.iter().map(String::as_str).collect();
    let index = Index::from_snapshot(
        Revision::new(1),
        [ApiConfig {
            slug: "orders".parse().expect("slug"),
            enabled: true,
            allowlist: list(&["203.0.113.0/24", "2001:db8::/48"]),
            routes: vec![RouteRule::new("GET", "/admin", "admin").expect("rule")],
        }],
        [KeyConfig {
            id: key.id,
            api: "orders".parse().expect("slug"),
            secret_hash: SecretHash::of(&key.secret),
            scopes: vec![],
            expires_at: None,
            allowlist: list(&cidrs),
            previous_secrets: vec![],
        }],
    );
    // A second revision, as an enforcer holds after a delta.
    let mut index = index;
    index.apply(Revision::new(2), std::iter::empty::<Change>());
    (index, key.secret)
}

/// Heap allocations made while deciding `req`, and the decision's reason.
fn allocations(index: &Index, req: &Request<'_>) -> (usize, Reason) {
    let region = Region::new(ALLOC);
    let reason = decide(index, req).reason;
    (region.change().allocations, reason)
}

#[test]
fn deciding_allocates_nothing() {
    let (index, secret) = world();
    let request = |client: &str, path: &'static str, key: &str| -> (usize, Reason) {
        let secret_copy = key.to_owned();
        let req = Request {
            api: "orders",
            key: PresentedKey::One(&secret_copy),
            client_ip: ip(client),
            method: "GET",
            path,
            now: NOW,
        };
        allocations(&index, &req)
    };
    // (what, client, path, key, expected reason)
    let cases: [(&str, &str, &'static str, &str, Reason); 6] = [
        (
            "allowed from a listed address",
            "203.0.113.7",
            "/orders/7",
            &secret,
            Reason::Allowed,
        ),
        (
            "allowed, a query string",
            "203.0.113.7",
            "/orders/7/items?x=1&y=2",
            &secret,
            Reason::Allowed,
        ),
        (
            "allowed, an IPv4-mapped client",
            "::ffff:203.0.113.7",
            "/orders/7",
            &secret,
            Reason::Allowed,
        ),
        (
            "refused: the key's list",
            "203.0.113.8",
            "/orders/7",
            &secret,
            Reason::IpNotAllowedKey,
        ),
        (
            "refused: the scope of /admin",
            "203.0.113.7",
            "/admin/users",
            &secret,
            Reason::InsufficientScope,
        ),
        (
            "refused: no such key",
            "203.0.113.7",
            "/orders/7",
            "ipg_live_not-a-key",
            Reason::InvalidApiKey,
        ),
    ];
    for (what, client, path, key, expected) in cases {
        // Once to warm anything lazily initialised, then counted.
        let _ = request(client, path, key);
        let (count, reason) = request(client, path, key);
        assert_eq!(reason, expected, "{what}");
        assert_eq!(count, 0, "{what}: decide allocated {count} times");
    }
}
