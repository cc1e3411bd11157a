//! The decision's cost: key lookup + allowlist match, against a naive
//! `ipnet` scan, at 1, 20 and 1,000 entries, in an index of 10^6 keys.
//! Before the timed runs it prints the build time and resident memory of an
//! index of 10^6 keys x 5 entries, and what one delta costs on it.
//!
//! Run: `cargo bench -p ipgate-shared --bench decision`

use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion};
use ipgate_shared::{
    Allowlist, ApiConfig, Change, Entry, Index, KeyConfig, Label, PresentedKey, Request, Revision,
    SecretHash, decide,
    index::CompiledList,
    key::{self, NewKey},
};
use ipnet::{IpNet, Ipv4Net};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

// Counts heap bytes, so the index's footprint is measured exactly rather
// than read off RSS, which keeps whatever the allocator holds on to.
#[global_allocator]
static ALLOC: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const KEYS: usize = 1_000_000;
const NOW: i64 = 1_800_000_000_000;

/// A cheap deterministic generator, so runs compare like with like.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 32) as u32
    }

    /// A public-looking IPv4 range, /16 to /32.
    fn v4_net(&mut self) -> Ipv4Net {
        let addr = Ipv4Addr::from(0x2D00_0000 | (self.next() & 0x00FF_FFFF));
        let len = 16 + (self.next() % 17) as u8;
        Ipv4Net::new_assert(addr, len).trunc()
    }
}

fn list(nets: &[Ipv4Net]) -> Allowlist {
    let entries = nets
        .iter()
        .map(|n| {
            Entry::new(
                n.to_string().parse().expect("valid"),
                Label::default(),
                None,
            )
        })
        .collect();
    Allowlist::new(entries, false)
}

fn api(slug: &str, allowlist: Allowlist) -> ApiConfig {
    ApiConfig {
        slug: slug.parse().expect("slug"),
        enabled: true,
        allowlist,
        routes: vec![],
    }
}

fn key_config(key: &NewKey, api: &str, allowlist: Allowlist) -> KeyConfig {
    KeyConfig {
        id: key.id,
        api: api.parse().expect("slug"),
        secret_hash: SecretHash::of(&key.secret),
        scopes: vec![],
        expires_at: None,
        allowlist,
        previous_secrets: vec![],
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Keys of the big index: `KEYS` keys with 5 entries each.
fn bulk_keys(rng: &mut Lcg) -> Vec<KeyConfig> {
    (0..KEYS)
        .map(|_| {
            let nets: Vec<Ipv4Net> = (0..5).map(|_| rng.v4_net()).collect();
            key_config(&NewKey::generate(), "bulk", list(&nets))
        })
        .collect()
}

struct Fixture {
    index: Index,
    /// (key, its entries, an address on its list, an address off it)
    keys: Vec<(String, Vec<IpNet>, IpAddr, IpAddr)>,
}

fn build_fixture() -> Fixture {
    let mut rng = Lcg(42);
    let rss_before = rss_bytes();
    let heap = Region::new(ALLOC);
    let configs = bulk_keys(&mut rng);
    let started = Instant::now();
    let mut index = Index::from_snapshot(
        Revision::new(1),
        [api("bulk", Allowlist::default())],
        configs,
    );
    let build = started.elapsed();
    let stats = heap.change();
    let live = stats
        .bytes_allocated
        .saturating_sub(stats.bytes_deallocated) as f64;
    let rss = rss_bytes().saturating_sub(rss_before) as f64;
    const MIB: f64 = 1024.0 * 1024.0;
    println!(
        "index of {KEYS} keys x 5 entries: built in {:.2} s; heap {:.0} MiB ({:.0} bytes/key); resident memory +{:.0} MiB",
        build.as_secs_f64(),
        live / MIB,
        live / KEYS as f64,
        rss / MIB,
    );

    // What one delta costs on this index: clone (pointers only) + apply.
    let extra = NewKey::generate();
    let started = Instant::now();
    let mut next = index.clone();
    next.apply(
        Revision::new(2),
        [Change::PutKey(key_config(
            &extra,
            "bulk",
            Allowlist::default(),
        ))],
    );
    println!(
        "one delta on that index (clone + apply): {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    drop(next);

    // The keys under test, added beside the million.
    let mut keys = Vec::new();
    let mut changes = vec![Change::PutApi(api("big", Allowlist::default()))];
    for size in [1usize, 20] {
        let nets: Vec<Ipv4Net> = (0..size).map(|_| rng.v4_net()).collect();
        let key = NewKey::generate();
        changes.push(Change::PutKey(key_config(&key, "bulk", list(&nets))));
        let inside = IpAddr::V4(nets[size - 1].addr());
        keys.push((
            key.secret,
            nets.iter().map(|n| IpNet::V4(*n)).collect(),
            inside,
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
        ));
    }
    // An API with 1,000 entries and a key with none.
    let api_nets: Vec<Ipv4Net> = (0..1000).map(|_| rng.v4_net()).collect();
    let mut unique = api_nets.clone();
    unique.sort();
    unique.dedup();
    changes[0] = Change::PutApi(api("big", list(&unique)));
    let key = NewKey::generate();
    changes.push(Change::PutKey(key_config(
        &key,
        "big",
        Allowlist::default(),
    )));
    keys.push((
        key.secret,
        unique.iter().map(|n| IpNet::V4(*n)).collect(),
        IpAddr::V4(unique[unique.len() / 2].addr()),
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
    ));
    index.apply(Revision::new(3), changes);
    Fixture { index, keys }
}

fn benches(c: &mut Criterion, fx: &Fixture) {
    let mut group = c.benchmark_group("decide");
    for ((secret, nets, inside, outside), api_slug) in fx.keys.iter().zip(["bulk", "bulk", "big"]) {
        let n = nets.len();
        for (case, ip) in [("hit", *inside), ("miss", *outside)] {
            let req = Request {
                api: api_slug,
                key: PresentedKey::One(secret),
                client_ip: ip,
                method: "GET",
                path: "/orders",
                now: NOW,
            };
            group.bench_with_input(
                BenchmarkId::new(format!("compiled_{case}"), n),
                &req,
                |b, req| b.iter(|| decide(black_box(&fx.index), black_box(req)).reason),
            );
        }
    }
    group.finish();

    // The key part of a decision: shape and checksum, then the hash.
    let mut group = c.benchmark_group("key");
    let secret = &fx.keys[0].0;
    group.bench_function("parse_presented", |b| {
        b.iter(|| key::parse_presented(black_box(secret)))
    });
    group.bench_function("sha256", |b| b.iter(|| SecretHash::of(black_box(secret))));
    group.finish();

    let mut group = c.benchmark_group("allowlist_match");
    for (_, nets, inside, outside) in &fx.keys {
        let entries: Vec<Entry> = nets
            .iter()
            .map(|n| {
                Entry::new(
                    n.to_string().parse().expect("valid"),
                    Label::default(),
                    None,
                )
            })
            .collect();
        let compiled = CompiledList::new(&Allowlist::new(entries, false));
        let n = nets.len();
        for (case, ip) in [("hit", *inside), ("miss", *outside)] {
            group.bench_with_input(
                BenchmarkId::new(format!("compiled_{case}"), n),
                &ip,
                |b, ip| b.iter(|| compiled.lookup(black_box(*ip), NOW)),
            );
            group.bench_with_input(
                BenchmarkId::new(format!("naive_ipnet_{case}"), n),
                &ip,
                |b, ip| {
                    b.iter(|| {
                        black_box(nets)
                            .iter()
                            .any(|net| net.contains(black_box(ip)))
                    })
                },
            );
        }
    }
    group.finish();
}

fn main() {
    let fx = build_fixture();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    benches(&mut c, &fx);
    c.final_summary();
}
