//! Sync under faults, with the real binaries on loopback and a TCP link the
//! test controls between enforcers and the control plane
//! (`ipgate_tests::link`). Each scenario names the one it proves in
//! docs/sync-protocol.md's "Faults" section; every wait is bounded.

use std::{path::Path, time::Duration};

use ipgate_shared::proto::{
    admin::v1::{
        GetPropagationRequest, ListEnforcersRequest, Propagation, SetApiAllowlistRequest,
        SetApiKeyAllowlistRequest, TestAccessRequest, WaitForPropagation,
    },
    sync::v1::{Ack, Hello, StreamRequest, stream_request, stream_response},
};
use ipgate_tests::{
    Backend, ControlPlane, Enforcer,
    admin::{ack, current_revision, entries, ip},
    eventually, http,
    link::Link,
    process::AdminClient,
    upstream,
    world::{API, create_orders_with_key},
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// The protocol's worst case for a change to reach an enforcer.
const PROPAGATION: Duration = Duration::from_secs(10);

/// A control plane with API `orders` and one key, and what a test needs
/// to start enforcers in front of a stand-in upstream.
struct Stage {
    cp: ControlPlane,
    admin: AdminClient,
    upstream: std::net::SocketAddr,
    key: String,
    key_id: String,
}

impl Stage {
    async fn start(backend: &Backend, cp_args: &[&str]) -> Stage {
        let upstream = upstream::start().await;
        let cp = ControlPlane::start_with(backend, cp_args);
        let mut admin = cp.admin().await;
        let (key, key_id) = create_orders_with_key(&mut admin).await;
        Stage {
            cp,
            admin,
            upstream,
            key,
            key_id,
        }
    }

    /// An enforcer syncing through `control_plane` (a URL list or a link).
    fn enforcer(&self, control_plane: &str, envs: &[(&str, &str)]) -> Enforcer {
        Enforcer::start_via(control_plane, API, self.upstream, &[], envs)
    }

    /// Sets the key's allowlist to `cidrs`; returns the write's revision.
    async fn allow(&self, cidrs: &[&str]) -> u64 {
        self.allow_waiting(cidrs, None).await.0
    }

    async fn allow_waiting(
        &self,
        cidrs: &[&str],
        wait: Option<Duration>,
    ) -> (u64, Option<Propagation>) {
        let response = self
            .admin
            .clone()
            .set_api_key_allowlist(SetApiKeyAllowlistRequest {
                id: self.key_id.clone(),
                allowlist: entries(cidrs),
                options: ack(),
                wait_for_propagation: wait.map(|d| WaitForPropagation {
                    deadline: prost_types::Duration::try_from(d).ok(),
                }),
                ..Default::default()
            })
            .await
            .expect("set the key's allowlist")
            .into_inner();
        let revision = response.key.expect("key").revision;
        (revision, response.propagation)
    }

    async fn status(&self, enforcer: &Enforcer) -> u16 {
        status_of(enforcer, &self.key).await
    }

    /// Waits until `enforcer` answers 127.0.0.1 with `status`.
    async fn until_status(&self, enforcer: &Enforcer, status: u16, within: Duration) -> Duration {
        let what = format!("{} to answer {status}", enforcer.id);
        eventually(within, &what, || async {
            (self.status(enforcer).await == status).then_some(())
        })
        .await
        .1
    }

    async fn propagation(&self, revision: u64) -> Propagation {
        self.admin
            .clone()
            .get_propagation(GetPropagationRequest { revision })
            .await
            .expect("GetPropagation")
            .into_inner()
    }

    async fn until_live(&self, revision: u64, expected: u32) {
        let what = format!("revision {revision} live on {expected} enforcers");
        eventually(PROPAGATION, &what, || async {
            let p = self.propagation(revision).await;
            (p.live && p.enforcers_expected == expected).then_some(())
        })
        .await;
    }
}

/// How many of `log`'s lines contain every one of `words`.
fn lines_with(log: &str, words: &[&str]) -> usize {
    log.lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .count()
}

/// GetPropagation and ListEnforcers show the fleet; a write that waits
/// returns once every enforcer has it, and at its deadline names the one
/// that is frozen (SIGSTOP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_the_fleet_and_name_a_frozen_enforcer() {
    let stage = Stage::start(&Backend::sqlite(), &[]).await;
    let url = stage.cp.url();
    let (a, b) = (stage.enforcer(&url, &[]), stage.enforcer(&url, &[]));
    for e in [&a, &b] {
        stage.until_status(e, 200, PROPAGATION).await;
    }
    let current = current_revision(&mut stage.admin.clone()).await;
    stage.until_live(current, 2).await;

    let listed = stage
        .admin
        .clone()
        .list_enforcers(ListEnforcersRequest {})
        .await
        .expect("ListEnforcers")
        .into_inner();
    let mut ids: Vec<&str> = listed.enforcers.iter().map(|e| e.id.as_str()).collect();
    ids.sort_unstable();
    let mut want = vec![a.id.as_str(), b.id.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    for e in &listed.enforcers {
        assert!(e.expected, "{e:?}");
        assert!(
            !e.replica.is_empty() && e.address.starts_with("127.0.0.1:"),
            "{e:?}"
        );
        assert_eq!(e.version, env!("CARGO_PKG_VERSION"), "{e:?}");
        assert_eq!((e.acked_revision, e.lag), (current, 0), "{e:?}");
        assert!(
            e.connected_since.is_some() && e.last_heartbeat.is_some(),
            "{e:?}"
        );
    }

    // Both have it when the write returns.
    let (revision, receipt) = stage
        .allow_waiting(
            &["127.0.0.1/32", "127.0.0.9/32"],
            Some(Duration::from_secs(5)),
        )
        .await;
    let receipt = receipt.expect("a write that waits carries its propagation");
    assert!(receipt.live && !receipt.deadline_exceeded, "{receipt:?}");
    assert_eq!((receipt.revision, receipt.enforcers_acked), (revision, 2));

    // Frozen, `b` cannot ack: the write returns at its deadline naming it,
    // committed all the same.
    let freeze = |signal: &str, pid: u32| {
        let ok = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill {signal} {pid}");
    };
    freeze("-STOP", b.pid());
    let started = std::time::Instant::now();
    let (revision, receipt) = stage
        .allow_waiting(&["127.0.0.2/32"], Some(Duration::from_secs(2)))
        .await;
    let waited = started.elapsed();
    let receipt = receipt.expect("propagation");
    freeze("-CONT", b.pid());
    assert!(receipt.deadline_exceeded && !receipt.live, "{receipt:?}");
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    let lagging: Vec<&str> = receipt.lagging.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(lagging, [b.id.as_str()], "{receipt:?}");
    assert_eq!(
        (receipt.enforcers_expected, receipt.enforcers_acked),
        (2, 1)
    );
    // Committed: `a` already blocks, and `b` catches up once thawed.
    assert_eq!(stage.status(&a).await, 403);
    stage.until_status(&b, 403, PROPAGATION).await;
    stage.until_live(revision, 2).await;

    // A deadline out of range is refused before anything is written.
    let before = current_revision(&mut stage.admin.clone()).await;
    let refused = stage
        .admin
        .clone()
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            id: stage.key_id.clone(),
            allowlist: entries(&["127.0.0.3/32"]),
            options: ack(),
            wait_for_propagation: Some(WaitForPropagation {
                deadline: Some(prost_types::Duration {
                    seconds: 600,
                    nanos: 0,
                }),
            }),
            ..Default::default()
        })
        .await
        .expect_err("a ten-minute wait is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("wait_for_propagation.deadline"),
        "{refused:?}"
    );
    assert_eq!(current_revision(&mut stage.admin.clone()).await, before);
}

/// Scenario 7: a poison update is Nacked and shown; the enforcer keeps its
/// old index, does not loop on it, and recovers with the next revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_update_is_nacked_shown_and_not_looped_on() {
    let stage = Stage::start(&Backend::sqlite(), &[]).await;
    let poison = current_revision(&mut stage.admin.clone()).await + 1;
    let poison_env = poison.to_string();
    let enforcer = stage.enforcer(
        &stage.cp.url(),
        &[("IPGATE_FAULT_CORRUPT_REVISION", poison_env.as_str())],
    );
    stage.until_status(&enforcer, 200, PROPAGATION).await;
    assert!(
        enforcer.log().contains("fault hook armed"),
        "the ipgate binary was built without the `fault-injection` feature \
         (tests/run.sh builds it with):\n{}",
        enforcer.log()
    );

    // The hook corrupts every update at `poison`, delta or snapshot.
    assert_eq!(stage.allow(&["127.0.0.2/32"]).await, poison);
    let what = "the Nack in GetPropagation";
    let (p, _) = eventually(PROPAGATION, what, || async {
        let p = stage.propagation(poison).await;
        (!p.nacked.is_empty()).then_some(p)
    })
    .await;
    assert!(!p.live);
    let nack = p.nacked[0].last_nack.clone().expect("the Nack's reason");
    assert_eq!(
        (p.nacked[0].id.as_str(), nack.revision),
        (enforcer.id.as_str(), poison)
    );
    assert!(
        nack.reason.contains("allowlist.entries[0].cidr"),
        "{nack:?}"
    );
    // The old index stays in force.
    assert_eq!(stage.status(&enforcer).await, 200);

    // It backs off instead of looping: the same update comes again only
    // after waits that grow from about a second.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let log = enforcer.log();
    let refusals = lines_with(&log, &["REJECTED an update"]);
    assert!(
        (1..=4).contains(&refusals),
        "{refusals} refusals in 6 s:\n{log}"
    );
    assert!(log.contains("asking for a full snapshot"), "{log}");
    assert_eq!(stage.status(&enforcer).await, 200);

    // The next revision is good: it gets in (as a snapshot) and is live.
    let next = stage.allow(&["127.0.0.3/32"]).await;
    stage
        .until_status(&enforcer, 403, Duration::from_secs(30))
        .await;
    stage.until_live(next, 1).await;
}

/// Scenario 11: a link that stops forwarding without closing is noticed
/// by both sides within 15 s, and the enforcer reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_connection_is_replaced_within_15_seconds() {
    let stage = Stage::start(&Backend::sqlite(), &[]).await;
    let link = Link::start(stage.cp.addr).await;
    let enforcer = stage.enforcer(&link.url(), &[]);
    stage.until_status(&enforcer, 200, PROPAGATION).await;

    let frozen = std::time::Instant::now();
    link.freeze();
    let (_, noticed) = eventually(
        Duration::from_secs(20),
        "the enforcer to notice",
        || async {
            enforcer
                .log()
                .contains("nothing from the control plane in 15 s")
                .then_some(())
        },
    )
    .await;
    assert!(
        noticed <= Duration::from_secs(17),
        "noticed after {noticed:?}"
    );
    eventually(
        Duration::from_secs(20),
        "the control plane to notice",
        || async {
            stage
                .cp
                .log()
                .contains("no message from the enforcer")
                .then_some(())
        },
    )
    .await;
    // The new connection works: a change reaches the enforcer.
    stage.allow(&["127.0.0.2/32"]).await;
    stage.until_status(&enforcer, 403, PROPAGATION).await;
    assert!(frozen.elapsed() < Duration::from_secs(40));
}

/// The addresses scenario 2 samples: 127.0.4.1 to 127.0.4.40.
fn sample(n: u32) -> String {
    format!("127.0.4.{}", n + 1)
}
const SAMPLES: u32 = 40;

/// Write `i`'s list: a pseudo-random half of the sample addresses (or, for
/// the API's own list, three quarters), different from write to write.
fn list_for(i: u32, keep_one_in: u32) -> Vec<String> {
    (0..SAMPLES)
        .filter(|n| {
            // A small integer hash: every bit of i and n stirs the result.
            let mut h = i.wrapping_mul(0x9E37_79B9) ^ n.wrapping_mul(0x85EB_CA6B);
            h ^= h >> 15;
            h = h.wrapping_mul(0x2C1B_3C6D);
            h ^= h >> 12;
            !h.is_multiple_of(keep_one_in)
        })
        .map(|n| format!("{}/32", sample(n)))
        .collect()
}

/// Scenario 2: the control plane is killed (SIGKILL) twice under
/// continuous writes to the API's and the key's lists. After it is back,
/// every enforcer reaches the final revision, and for every sampled
/// address each enforcer decides as `TestAccess` does: the control plane's
/// decision over the database's final state.
async fn kill_9_under_writes_ends_with_every_enforcer_deciding_as_the_database_says(
    backend: Backend,
) {
    let mut stage = Stage::start(&backend, &[]).await;
    let url = stage.cp.url();
    let enforcers = [stage.enforcer(&url, &[]), stage.enforcer(&url, &[])];
    for e in &enforcers {
        stage.until_status(e, 200, PROPAGATION).await;
    }

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writer = {
        let admin = stage.admin.clone();
        let key_id = stage.key_id.clone();
        tokio::spawn(async move {
            let (mut committed, mut failed) = (0u32, 0u32);
            // Bounded in count; the test stops it sooner.
            for i in 0..100_000u32 {
                if *stopped.borrow() {
                    break;
                }
                let mut admin = admin.clone();
                let result = if i % 3 == 0 {
                    let list = list_for(i, 4);
                    let cidrs: Vec<&str> = list.iter().map(String::as_str).collect();
                    admin
                        .set_api_allowlist(SetApiAllowlistRequest {
                            slug: API.into(),
                            allowlist: entries(&cidrs),
                            options: ack(),
                            ..Default::default()
                        })
                        .await
                        .map(|_| ())
                } else {
                    let list = list_for(i, 2);
                    let cidrs: Vec<&str> = list.iter().map(String::as_str).collect();
                    admin
                        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
                            id: key_id.clone(),
                            allowlist: entries(&cidrs),
                            options: ack(),
                            ..Default::default()
                        })
                        .await
                        .map(|_| ())
                };
                match result {
                    Ok(()) => committed += 1,
                    // The control plane is down: try again shortly.
                    Err(_) => {
                        failed += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (committed, failed)
        })
    };
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stage.cp.kill();
        tokio::time::sleep(Duration::from_millis(500)).await;
        stage.cp.restart();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.send_replace(true);
    let (committed, failed) = writer.await.expect("the writer");
    assert!(
        committed >= 20 && failed >= 2,
        "{committed} writes, {failed} refused"
    );

    stage.admin = stage.cp.admin().await;
    let last = current_revision(&mut stage.admin.clone()).await;
    stage.until_live(last, 2).await;
    let mut allowed = 0;
    for n in 0..SAMPLES {
        let source = sample(n);
        let oracle = stage
            .admin
            .clone()
            .test_access(TestAccessRequest {
                api: API.into(),
                api_key_id: stage.key_id.clone(),
                client_ip: source.clone(),
                method: "GET".into(),
                path: "/orders/7".into(),
            })
            .await
            .expect("TestAccess")
            .into_inner();
        assert_eq!(oracle.revision, last, "the oracle reads the final state");
        allowed += u32::from(oracle.allowed);
        for e in &enforcers {
            let status = status_from(e, &stage.key, &source).await;
            let want = if oracle.allowed {
                200
            } else {
                oracle.http_status as u16
            };
            assert_eq!(status, want, "{} from {source}: {oracle:?}", e.id);
        }
    }
    // The sample says something: some addresses in, some out.
    assert!(
        0 < allowed && allowed < SAMPLES,
        "{allowed} of {SAMPLES} allowed"
    );
}

ipgate_tests::on_both_backends!(
    kill_9_under_writes_ends_with_every_enforcer_deciding_as_the_database_says
);

/// Scenario 3: the link is cut for 30 s while writes go on. The enforcer
/// serves its last good index throughout, then catches up by deltas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_second_cut_is_served_from_the_last_index_and_caught_up_by_deltas() {
    let stage = Stage::start(&Backend::sqlite(), &[]).await;
    let link = Link::start(stage.cp.addr).await;
    let enforcer = stage.enforcer(&link.url(), &[]);
    stage.until_status(&enforcer, 200, PROPAGATION).await;

    link.cut();
    let cut = std::time::Instant::now();
    let mut last = 0;
    let mut i = 0u32;
    while cut.elapsed() < Duration::from_secs(30) {
        // Every write blocks 127.0.0.1; the enforcer cannot know yet.
        last = stage.allow(&[&format!("127.0.1.{}/32", i % 250)]).await;
        i += 1;
        assert_eq!(
            stage.status(&enforcer).await,
            200,
            "during the cut, write {i}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(i >= 20, "only {i} writes during the cut");
    link.forward();
    stage
        .until_status(&enforcer, 403, Duration::from_secs(15))
        .await;
    stage.until_live(last, 1).await;
    let log = enforcer.log();
    assert_eq!(
        lines_with(&log, &["index swapped in", "snapshot"]),
        1,
        "only the first index came as a snapshot:\n{log}"
    );
    assert!(
        lines_with(&log, &["index swapped in", "deltas"]) >= 1,
        "{log}"
    );
}

/// Scenario 4: enforcer restarts with the control plane down. With its
/// snapshot cache it serves the last state at once (stale until the
/// control plane is back, then it resumes by deltas); without one, or with
/// a damaged one, it fails closed, and serves once the control plane is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_with_and_without_the_snapshot_cache_and_a_damaged_one() {
    let mut stage = Stage::start(&Backend::sqlite(), &[]).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cache = dir.path().join("snapshot.cache");
    let cache_env = cache.display().to_string();
    let with_cache = [("IPGATE_SNAPSHOT_CACHE", cache_env.as_str())];
    let url = stage.cp.url();

    let first = stage.enforcer(&url, &with_cache);
    stage.until_status(&first, 200, PROPAGATION).await;
    let cached = stage.allow(&["127.0.0.1/32", "127.0.0.7/32"]).await;
    stage.until_live(cached, 1).await;
    let written = format!("revision={cached}");
    eventually(PROPAGATION, "the cache file written", || async {
        (lines_with(&first.log(), &["snapshot cache written", &written]) > 0).then_some(())
    })
    .await;

    // The control plane goes down, and the enforcer is replaced.
    stage.cp.kill();
    drop(first);
    let damaged = dir.path().join("damaged.cache");
    let mut bytes = std::fs::read(&cache).expect("read the cache");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x5a;
    std::fs::write(&damaged, bytes).expect("write the damaged copy");
    let damaged_env = damaged.display().to_string();

    let warm = stage.enforcer(&url, &with_cache);
    let cold = stage.enforcer(&url, &[]);
    let broken = stage.enforcer(&url, &[("IPGATE_SNAPSHOT_CACHE", damaged_env.as_str())]);
    stage.until_status(&warm, 200, Duration::from_secs(5)).await;
    assert_eq!(
        status_from(&warm, &stage.key, "127.0.0.2").await,
        403,
        "the cached list decides, it does not fail open"
    );
    assert!(
        warm.log()
            .contains("stale until the control plane is reached"),
        "{}",
        warm.log()
    );
    for e in [&cold, &broken] {
        assert_eq!(stage.status(e).await, 503, "{} fails closed", e.id);
    }
    let log = broken.log();
    assert!(
        lines_with(&log, &["ignoring the snapshot cache", "checksum"]) == 1,
        "{log}"
    );

    // Back up: all three follow, and the warm one resumes from its cache.
    stage.cp.restart();
    stage.admin = stage.cp.admin().await;
    for e in [&cold, &broken] {
        stage.until_status(e, 200, Duration::from_secs(20)).await;
    }
    eventually(
        Duration::from_secs(20),
        "the warm enforcer to be in step",
        || async { warm.log().contains("no longer stale").then_some(()) },
    )
    .await;
    let next = stage.allow(&["127.0.0.2/32"]).await;
    for e in [&warm, &cold, &broken] {
        stage.until_status(e, 403, PROPAGATION).await;
    }
    // (The replaced enforcer still counts as expected for a while, so the
    // revision is not yet "live"; the three that run all have it.)
    let (p, _) = eventually(PROPAGATION, "the three to acknowledge", || async {
        let p = stage.propagation(next).await;
        (p.enforcers_acked == 3).then_some(p)
    })
    .await;
    let lagging: Vec<&str> = p.lagging.iter().map(|l| l.id.as_str()).collect();
    for e in [&warm, &cold, &broken] {
        assert!(!lagging.contains(&e.id.as_str()), "{p:?}");
    }
    assert_eq!(
        lines_with(&warm.log(), &["index swapped in", "snapshot"]),
        0,
        "the warm enforcer needed no snapshot:\n{}",
        warm.log()
    );
}

/// Scenario 6: an enforcer away while its revision is compacted out of the
/// change log comes back to one snapshot, not to an error loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_compacted_away_is_followed_by_a_snapshot_not_a_loop() {
    // The log keeps 5 revisions; compaction runs at every start.
    let mut stage = Stage::start(&Backend::sqlite(), &["--change-log-retention", "5"]).await;
    let link = Link::start(stage.cp.addr).await;
    let enforcer = stage.enforcer(&link.url(), &[]);
    stage.until_status(&enforcer, 200, PROPAGATION).await;
    let away_at = current_revision(&mut stage.admin.clone()).await;

    link.cut();
    let mut last = 0;
    for n in 0..12 {
        last = stage.allow(&[&format!("127.0.3.{n}/32")]).await;
    }
    assert!(
        last > away_at + 5,
        "the writes outnumber what the log keeps"
    );
    // A restart compacts: the enforcer's revision is no longer in the log.
    stage.cp.restart();
    stage.admin = stage.cp.admin().await;
    link.forward();
    stage
        .until_status(&enforcer, 403, Duration::from_secs(20))
        .await;
    stage.until_live(last, 1).await;

    let log = enforcer.log();
    assert_eq!(
        lines_with(&log, &["index swapped in", "snapshot"]),
        2,
        "the first index and the one after compaction came as snapshots:\n{log}"
    );
    // Reconnecting through the cut takes a few tries; a loop would take
    // one every backoff step for as long as the test waits.
    let opened = lines_with(&log, &["sync stream open"]);
    assert!(opened <= 6, "{opened} sessions:\n{log}");
    assert_eq!(lines_with(&log, &["REJECTED"]), 0, "{log}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        lines_with(&enforcer.log(), &["sync stream open"]),
        opened,
        "the session after the snapshot stays up"
    );
}

/// Scenario 9: a database restored to an older revision. The enforcer,
/// ahead of it, is sent a replacing snapshot and decides by the restored
/// state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restored_to_an_older_revision_is_followed_by_a_fresh_snapshot() {
    let backend = Backend::sqlite();
    let mut stage = Stage::start(&backend, &[]).await;
    let enforcer = stage.enforcer(&stage.cp.url(), &[]);
    stage.until_status(&enforcer, 200, PROPAGATION).await;
    let file = backend
        .url()
        .strip_prefix("sqlite://")
        .expect("a sqlite URL")
        .to_owned();

    // A backup, taken with the control plane stopped.
    stage.cp.kill();
    let backup = copies(&file, "backup");
    stage.cp.restart();
    stage.admin = stage.cp.admin().await;
    for n in 0..3 {
        stage.allow(&[&format!("127.0.2.{n}/32")]).await;
    }
    stage.until_status(&enforcer, 403, PROPAGATION).await;

    // Restored: the database is back at the backup's revision.
    stage.cp.kill();
    for (suffix, saved) in &backup {
        let live = format!("{file}{suffix}");
        let _ = std::fs::remove_file(&live);
        if let Some(saved) = saved {
            std::fs::copy(saved, &live).expect("restore");
        }
    }
    stage.cp.restart();
    stage.admin = stage.cp.admin().await;
    stage
        .until_status(&enforcer, 200, Duration::from_secs(20))
        .await;
    let restored = current_revision(&mut stage.admin.clone()).await;
    stage.until_live(restored, 1).await;
    assert!(
        stage.cp.log().contains("is not of this database"),
        "{}",
        stage.cp.log()
    );
}

/// Copies of the SQLite file and its WAL files next to it: (suffix, copy).
fn copies(file: &str, tag: &str) -> Vec<(String, Option<String>)> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let from = format!("{file}{suffix}");
            let to = format!("{file}.{tag}{suffix}");
            let saved = Path::new(&from)
                .exists()
                .then(|| std::fs::copy(&from, &to).map(|_| to).expect("copy"));
            ((*suffix).to_owned(), saved)
        })
        .collect()
}

/// Scenario 8: 10,000 writes followed by 50 real sync streams: none sees a
/// revision out of order or skips one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_writes_reach_fifty_streams_in_order() {
    const STREAMS: usize = 50;
    const WRITES: usize = 10_000;
    let stage = Stage::start(&Backend::sqlite(), &[]).await;
    let start = current_revision(&mut stage.admin.clone()).await;
    let last = start + WRITES as u64;
    let mut followers = Vec::new();
    for n in 0..STREAMS {
        let mut client = stage.cp.sync().await;
        followers.push(tokio::spawn(async move {
            let (tx, rx) = mpsc::channel(64);
            let hello = Hello {
                enforcer_id: format!("stream-{n}"),
                ..Default::default()
            };
            tx.send(StreamRequest {
                kind: Some(stream_request::Kind::Hello(hello)),
            })
            .await
            .expect("hello");
            let mut inbound = client
                .stream(ReceiverStream::new(rx))
                .await
                .expect("open a stream")
                .into_inner();
            let mut position = 0u64;
            let mut snapshots = 0;
            while position < last {
                let message = tokio::time::timeout(Duration::from_secs(60), inbound.message())
                    .await
                    .expect("a message within a minute")
                    .expect("the stream stays up")
                    .expect("the stream stays open");
                match message.kind.expect("a kind") {
                    stream_response::Kind::Snapshot(chunk) => {
                        assert!(chunk.revision >= position, "stream {n} went back");
                        if chunk.last {
                            position = chunk.revision;
                            snapshots += 1;
                        }
                    }
                    stream_response::Kind::Delta(delta) => {
                        assert_eq!(delta.revision, position + 1, "stream {n} skipped");
                        position = delta.revision;
                    }
                    stream_response::Kind::Heartbeat(_) => {}
                }
                if position.is_multiple_of(100) || position == last {
                    let ack = Ack { revision: position };
                    let _ = tx.try_send(StreamRequest {
                        kind: Some(stream_request::Kind::Ack(ack)),
                    });
                }
            }
            snapshots
        }));
    }
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let admin = stage.admin.clone();
            let key_id = stage.key_id.clone();
            tokio::spawn(async move {
                for i in 0..WRITES / 4 {
                    admin
                        .clone()
                        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
                            id: key_id.clone(),
                            allowlist: entries(&[&format!(
                                "198.51.{}.{}/32",
                                w * 50 + i / 250,
                                i % 250
                            )]),
                            options: ack(),
                            ..Default::default()
                        })
                        .await
                        .expect("a write");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    assert_eq!(current_revision(&mut stage.admin.clone()).await, last);
    for f in followers {
        let snapshots = f
            .await
            .expect("a stream reached the last revision in order");
        assert!(snapshots >= 1);
    }
}

/// Scenario 10: two control planes on one PostgreSQL with enforcers spread
/// across them. A write on one is live on the other's enforcers; killing
/// one moves its enforcers to the survivor, where writes are live on all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_fleet_and_survive_one_being_killed() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let stage = Stage::start(&backend, &["--replica-id", "replica-a"]).await;
    let mut b = ControlPlane::start_with(&backend, &["--replica-id", "replica-b"]);
    let (a_url, b_url) = (stage.cp.url(), b.url());
    let on_a = stage.enforcer(&format!("{a_url},{b_url}"), &[]);
    let on_b = stage.enforcer(&format!("{b_url},{a_url}"), &[]);
    for e in [&on_a, &on_b] {
        stage.until_status(e, 200, PROPAGATION).await;
    }
    // Written on A, live on B's enforcer, and B answers for the whole fleet.
    let revision = stage.allow(&["127.0.0.1/32", "127.0.0.5/32"]).await;
    let admin_b = b.admin().await;
    let what = "B to see both enforcers acknowledge A's write";
    eventually(PROPAGATION, what, || async {
        let p = admin_b
            .clone()
            .get_propagation(GetPropagationRequest { revision })
            .await
            .ok()?
            .into_inner();
        (p.live && p.enforcers_expected == 2).then_some(())
    })
    .await;
    let listed = admin_b
        .clone()
        .list_enforcers(ListEnforcersRequest {})
        .await
        .expect("ListEnforcers on B")
        .into_inner();
    let mut replicas: Vec<&str> = listed
        .enforcers
        .iter()
        .map(|e| e.replica.as_str())
        .collect();
    replicas.sort_unstable();
    assert_eq!(replicas, ["replica-a", "replica-b"], "{listed:?}");

    // A dies: its enforcer keeps deciding, moves to B, and B's writes reach both.
    let mut a = stage.cp;
    a.kill();
    assert_eq!(status_of(&on_a, &stage.key).await, 200);
    let mut admin_b = admin_b;
    let blocked = admin_b
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            id: stage.key_id.clone(),
            allowlist: entries(&["127.0.0.5/32"]),
            options: ack(),
            ..Default::default()
        })
        .await
        .expect("write on B")
        .into_inner()
        .key
        .expect("key")
        .revision;
    for e in [&on_a, &on_b] {
        let what = format!("{} to take B's write", e.id);
        eventually(Duration::from_secs(20), &what, || async {
            (status_of(e, &stage.key).await == 403).then_some(())
        })
        .await;
    }
    let what = "B's write live on both enforcers";
    eventually(PROPAGATION, what, || async {
        let p = admin_b
            .clone()
            .get_propagation(GetPropagationRequest { revision: blocked })
            .await
            .ok()?
            .into_inner();
        (p.live && p.enforcers_expected == 2).then_some(())
    })
    .await;
    b.kill();
}

/// What `enforcer` answers 127.0.0.1 presenting `key`.
async fn status_of(enforcer: &Enforcer, key: &str) -> u16 {
    status_from(enforcer, key, "127.0.0.1").await
}

/// The status `enforcer` answers a request with `key` from `source`.
async fn status_from(enforcer: &Enforcer, key: &str, source: &str) -> u16 {
    let headers = [("x-api-key", key)];
    http::request(
        ip(source),
        enforcer.proxy_addr,
        "GET",
        "/orders/7",
        &headers,
    )
    .await
    .status
}
