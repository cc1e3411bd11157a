//! What one revision costs an enforcer holding 10^6 keys x 5 entries and
//! 100 APIs: the clone of the index in force and the revision applied to
//! it (dropping the result is not timed: an enforcer drops the old index
//! after the new one is in force). Cases: a revision that changes nothing this
//! enforcer holds (another tenant's write), one key put, one key deleted,
//! one API's list replaced, and 100 keys put in one revision.
//!
//! Run: `cargo bench -p ipgate-shared --bench delta`
//! (`IPGATE_BENCH_KEYS=100000` for a smaller index).

use std::{hint::black_box, time::Duration};

use criterion::{BatchSize, Criterion};
use ipgate_shared::{Allowlist, Change, Index, Revision, key::NewKey};

mod fixture;
use fixture::{Lcg, api, bulk_keys, key_config, key_count_or, list};

/// Keys of the index unless `IPGATE_BENCH_KEYS` says otherwise.
const KEYS: usize = 1_000_000;
const APIS: usize = 100;

fn main() {
    let n = key_count_or(KEYS);
    let mut rng = Lcg(0x5eed);
    let (configs, _) = bulk_keys(&mut rng, n);
    let some_key = configs[n / 2].id;
    let apis: Vec<_> = (0..APIS)
        .map(|i| {
            let nets: Vec<_> = (0..20).map(|_| rng.v4_net()).collect();
            api(&format!("api-{i}"), list(&nets))
        })
        .chain([api("bulk", Allowlist::default())])
        .collect();
    let index = Index::from_snapshot(Revision::new(1), apis, configs);
    println!(
        "index: {} keys x 5 entries, {} APIs",
        index.key_count(),
        index.api_count()
    );

    let put_key = |rng: &mut Lcg| {
        let nets: Vec<_> = (0..5).map(|_| rng.v4_net()).collect();
        Change::PutKey(key_config(&NewKey::generate(), "bulk", list(&nets)))
    };
    let new_list = {
        let nets: Vec<_> = (0..20).map(|_| rng.v4_net()).collect();
        api("api-7", list(&nets))
    };
    let hundred_keys: Vec<Change> = (0..100).map(|_| put_key(&mut rng)).collect();
    let one_key = put_key(&mut rng);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut group = c.benchmark_group(format!("delta at {n} keys"));
    let cases: [(&str, Vec<Change>); 5] = [
        ("empty (changes nothing held)", vec![]),
        ("one key put", vec![one_key]),
        ("one key deleted", vec![Change::DeleteKey(some_key)]),
        ("one API's list replaced", vec![Change::PutApi(new_list)]),
        ("100 keys put", hundred_keys),
    ];
    for (name, changes) in cases {
        group.bench_function(name, |b| {
            b.iter_batched(
                || changes.clone(),
                |changes| {
                    let mut next = index.clone();
                    next.apply(Revision::new(2), changes);
                    black_box(next)
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
    c.final_summary();
}
