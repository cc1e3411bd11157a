//! The resident memory of an index of 10^7 keys x 5 entries, read off the
//! process (`/proc/self/statm`) rather than counted by an allocator: what
//! an operator sees of an enforcer holding it. The process builds the
//! index from a snapshot's configs, as an enforcer does, frees everything
//! else and prints its resident memory before the configs existed, with
//! them, once the index is built from them, and once the allocator has
//! returned the freed pages to the system. It uses the allocator the
//! `ipgate` binary ships with (jemalloc with background purging threads,
//! docs/architecture.md "Memory"); the peak is the kernel's high-water
//! mark.
//!
//! Run: `cargo bench -p ipgate-shared --bench index_resident`
//! (`IPGATE_BENCH_KEYS=1000000` for a smaller index).

use std::time::Instant;

use ipgate_shared::{Allowlist, Index, Revision};

mod fixture;
use fixture::{Lcg, api, bulk_keys, key_count, rss_bytes};

/// The `ipgate` binary's allocator.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const MIB: f64 = 1024.0 * 1024.0;
/// Longest wait for the resident memory to settle.
const SETTLE_SECONDS: u64 = 30;

/// Waits, one second at a time, until the resident memory has not changed
/// for three seconds (at most [`SETTLE_SECONDS`]): jemalloc's background
/// threads return freed pages to the system some seconds after the free.
/// The resident memory then, and the seconds it took.
fn settle() -> (u64, u64) {
    let mut last = rss_bytes();
    let mut still = 0;
    for second in 1..=SETTLE_SECONDS {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let now = rss_bytes();
        still = if now == last { still + 1 } else { 0 };
        last = now;
        if still == 3 {
            return (now, second);
        }
    }
    (last, SETTLE_SECONDS)
}

/// The kernel's high-water mark of this process's resident memory.
fn peak_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter naming something else (as
    // `cargo bench -- allowlist_match` does for the other bench) skips this.
    if std::env::args().skip(1).any(|a| !a.starts_with('-')) {
        return;
    }
    let n = key_count();
    let start = rss_bytes();
    let (configs, sample) = bulk_keys(&mut Lcg(42), n);
    drop(sample);
    let with_configs = rss_bytes();
    let started = Instant::now();
    let index = Index::from_snapshot(
        Revision::new(1),
        [api("bulk", Allowlist::default())],
        configs,
    );
    let build = started.elapsed();
    let built = rss_bytes();
    let (settled, after) = settle();
    let per_key = |b: u64| (b.saturating_sub(start)) as f64 / n as f64;
    println!(
        "index of {n} keys x 5 entries, built from a snapshot in {:.2} s",
        build.as_secs_f64()
    );
    println!(
        "resident before the snapshot:   {:>6.0} MiB",
        start as f64 / MIB
    );
    println!(
        "resident with its configs:      {:>6.0} MiB",
        with_configs as f64 / MIB
    );
    println!(
        "resident once built:            {:>6.0} MiB (configs freed, not yet purged)",
        built as f64 / MIB
    );
    println!(
        "resident settled, after {after:>2} s:   {:>6.0} MiB ({:.0} bytes/key)",
        settled as f64 / MIB,
        per_key(settled)
    );
    println!(
        "peak resident:                  {:>6.0} MiB",
        peak_bytes() as f64 / MIB
    );
    // Keep the index alive through the readings.
    assert_eq!(index.revision(), Revision::new(1));
}
