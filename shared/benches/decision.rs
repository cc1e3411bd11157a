//! The decision's cost: key lookup + allowlist match, against a naive
//! `ipnet` scan, at 1, 20 and 1,000 entries (IPv4, and IPv6 at 1,000), in an
//! index of 10^7 keys, and against a bare hash-map lookup of the key's id
//! and hash at the same scale (one hot key, and keys taken in turn from a
//! sample of 65,536 so the tables' cache misses count).
//! Before the timed runs it prints the build time and resident memory of an
//! index of 10^7 keys x 5 entries, and what one delta costs on it.
//!
//! Run: `cargo bench -p ipgate-shared --bench decision`
//! (`IPGATE_BENCH_KEYS=1000000` for a smaller index).

use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion};
use hashbrown::HashMap;
use ipgate_shared::{
    Allowlist, Change, Index, KeyId, PresentedKey, Request, Revision, SecretHash, decide,
    index::CompiledList,
    key::{self, NewKey},
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

mod fixture;
use fixture::{Lcg, api, bulk_keys, key_config, key_count, list, rss_bytes};

// Counts heap bytes, so the index's footprint is measured exactly rather
// than read off RSS, which keeps whatever the allocator holds on to.
#[global_allocator]
static ALLOC: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const NOW: i64 = 1_800_000_000_000;

struct Fixture {
    index: Index,
    /// (key, its entries, an address on its list, an address off it)
    keys: Vec<(String, Vec<IpNet>, IpAddr, IpAddr)>,
    /// Keys of the big index taken in turn by the cold cases.
    sample: Vec<(String, IpAddr)>,
    /// The bare floor: every key's hash by its id, in one hash map.
    bare: HashMap<KeyId, SecretHash>,
}

fn build_fixture() -> Fixture {
    let mut rng = Lcg(42);
    let n = key_count();
    // The configs are freed as the index is built from them, so the index's
    // heap is what the build leaves allocated plus what the configs held.
    let generated = Region::new(ALLOC);
    let (configs, sample) = bulk_keys(&mut rng, n);
    let stats = generated.change();
    let sample_bytes = sample.capacity() * std::mem::size_of::<(String, IpAddr)>()
        + sample.iter().map(|(s, _)| s.capacity()).sum::<usize>();
    let config_bytes =
        (stats.bytes_allocated - stats.bytes_deallocated) as i64 - sample_bytes as i64;
    let bare = configs
        .iter()
        .map(|k| (k.id, k.secret_hash))
        .collect::<HashMap<_, _>>();
    let heap = Region::new(ALLOC);
    let rss_before = rss_bytes();
    let started = Instant::now();
    let mut index = Index::from_snapshot(
        Revision::new(1),
        [api("bulk", Allowlist::default())],
        configs,
    );
    let build = started.elapsed();
    let stats = heap.change();
    let live =
        (stats.bytes_allocated as i64 - stats.bytes_deallocated as i64 + config_bytes) as f64;
    let rss = (rss_bytes() as i64 - rss_before as i64) as f64;
    const MIB: f64 = 1024.0 * 1024.0;
    println!(
        "index of {n} keys x 5 entries: built in {:.2} s; heap {:.0} MiB ({:.0} bytes/key); resident memory {:+.0} MiB (freed configs included)",
        build.as_secs_f64(),
        live / MIB,
        live / n as f64,
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
    Fixture {
        index,
        keys,
        sample,
        bare,
    }
}

/// A bare lookup of a presented key: parse, hash, find, compare.
fn bare_lookup(map: &HashMap<KeyId, SecretHash>, presented: &str) -> bool {
    let Ok(id) = key::parse_presented(presented) else {
        return false;
    };
    let hash = SecretHash::of(presented);
    map.get(&id).is_some_and(|h| h.matches(&hash))
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
    // The floor the decision is held to: the key's id parsed, its hash
    // taken and looked up in one hash map of every key, and compared.
    let secret = &fx.keys[1].0;
    group.bench_function("bare_hashmap_hit/20", |b| {
        b.iter(|| bare_lookup(&fx.bare, black_box(secret)))
    });
    let reqs: Vec<Request<'_>> = fx
        .sample
        .iter()
        .map(|(secret, ip)| Request {
            api: "bulk",
            key: PresentedKey::One(secret),
            client_ip: *ip,
            method: "GET",
            path: "/orders",
            now: NOW,
        })
        .collect();
    let mut turn = 0;
    group.bench_function("compiled_hit_cold/5", |b| {
        b.iter(|| {
            turn = (turn + 1) % reqs.len();
            decide(black_box(&fx.index), black_box(&reqs[turn])).reason
        })
    });
    let mut turn = 0;
    group.bench_function("bare_hashmap_hit_cold/5", |b| {
        b.iter(|| {
            turn = (turn + 1) % fx.sample.len();
            bare_lookup(&fx.bare, black_box(&fx.sample[turn].0))
        })
    });
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
    let mut rng = Lcg(7);
    let mut v6: Vec<Ipv6Net> = (0..1000).map(|_| rng.v6_net()).collect();
    v6.sort();
    v6.dedup();
    let v6_case = (
        String::new(),
        v6.iter().map(|n| IpNet::V6(*n)).collect::<Vec<_>>(),
        IpAddr::V6(v6[v6.len() / 2].addr()),
        IpAddr::V6("2001:db8::1".parse().expect("address")),
    );
    let cases = fx.keys.iter().map(|k| (k, "")).chain([(&v6_case, "v6_")]);
    for ((_, nets, inside, outside), family) in cases {
        let compiled = CompiledList::new(&list(nets));
        let n = nets.len();
        for (case, ip) in [("hit", *inside), ("miss", *outside)] {
            group.bench_with_input(
                BenchmarkId::new(format!("compiled_{family}{case}"), n),
                &ip,
                |b, ip| b.iter(|| compiled.lookup(black_box(*ip), NOW)),
            );
            group.bench_with_input(
                BenchmarkId::new(format!("naive_ipnet_{family}{case}"), n),
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
