//! Sync sessions over a real gRPC server, driven by hand: snapshot, deltas,
//! live updates, heartbeats, acks and revision status, compaction, auth,
//! and shutdown.

use std::time::{Duration, SystemTime};

use ipgate_control_plane::{
    allowlists::Edit,
    store::{ApiRecord, ListWrite, Store, TenantId, WriteCtx},
};
use ipgate_shared::proto::{
    admin::v1::{
        Allowlist, AllowlistEntry, CreateApiKeyRequest, CreateApiRequest, GetRevisionStatusRequest,
        SetApiAllowlistRequest,
    },
    sync::v1::{
        Ack, ApiConfig, Delta, EnforcerHeartbeat, Hello, KeyConfig, StreamRequest, StreamResponse,
        stream_request, stream_response::Kind,
    },
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

use crate::{
    common::{Admin, Db, ENFORCER, OWNER, admin, eventually, sync_with},
    on_both_backends,
};

/// How long a test waits for a message it expects.
pub const PATIENCE: Duration = Duration::from_secs(10);
/// How soon a committed write must reach a following enforcer (the change
/// feed is woken by the commit itself, not by its one-second poll).
const LIVE: Duration = Duration::from_secs(1);

/// A hand-driven enforcer stream.
pub struct Enforcer {
    requests: mpsc::Sender<StreamRequest>,
    responses: Streaming<StreamResponse>,
}

async fn connect(
    addr: std::net::SocketAddr,
    token: Option<&str>,
    first: stream_request::Kind,
) -> Result<Enforcer, Status> {
    let mut client = sync_with(addr, token).await;
    let (requests, rx) = mpsc::channel(16);
    requests
        .send(StreamRequest { kind: Some(first) })
        .await
        .expect("queue the first message");
    let responses = client.stream(ReceiverStream::new(rx)).await?.into_inner();
    // Heartbeats as a real enforcer sends them, so a long test is not taken
    // for a half-open connection; a weak handle, so dropping the Enforcer
    // still closes the stream.
    let weak = requests.downgrade();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let Some(requests) = weak.upgrade() else {
                return;
            };
            let beat = stream_request::Kind::Heartbeat(EnforcerHeartbeat::default());
            if requests
                .send(StreamRequest { kind: Some(beat) })
                .await
                .is_err()
            {
                return;
            }
        }
    });
    Ok(Enforcer {
        requests,
        responses,
    })
}

fn hello(id: &str, known: u64) -> stream_request::Kind {
    stream_request::Kind::Hello(Hello {
        enforcer_id: id.into(),
        known_revision: known,
        ..Default::default()
    })
}

impl Enforcer {
    pub async fn start(addr: std::net::SocketAddr, id: &str, known: u64) -> Enforcer {
        Enforcer::start_as(addr, ENFORCER, id, known).await
    }

    /// An enforcer with `token` (of some tenant).
    pub async fn start_as(
        addr: std::net::SocketAddr,
        token: &str,
        id: &str,
        known: u64,
    ) -> Enforcer {
        connect(addr, Some(token), hello(id, known))
            .await
            .expect("open a sync stream")
    }

    /// A whole snapshot: its revision, APIs and keys as sent.
    pub async fn full_snapshot(&mut self) -> (u64, Vec<ApiConfig>, Vec<KeyConfig>) {
        let (mut apis, mut keys) = (Vec::new(), Vec::new());
        loop {
            let Kind::Snapshot(chunk) = self.next_update(PATIENCE).await else {
                panic!("expected a snapshot chunk");
            };
            apis.extend(chunk.apis);
            keys.extend(chunk.keys);
            if chunk.last {
                return (chunk.revision, apis, keys);
            }
        }
    }

    /// The next delta, which must come within `within`.
    pub async fn full_delta(&mut self, within: Duration) -> Delta {
        match self.next_update(within).await {
            Kind::Delta(delta) => delta,
            other => panic!("expected a delta, got {other:?}"),
        }
    }

    /// The next message, within `within`.
    pub async fn next_within(&mut self, within: Duration) -> Result<Kind, Status> {
        let message = tokio::time::timeout(within, self.responses.message())
            .await
            .expect("a message in time")?;
        Ok(message.and_then(|m| m.kind).expect("a message with a kind"))
    }

    /// The next snapshot chunk or delta, skipping heartbeats.
    pub async fn next_update(&mut self, within: Duration) -> Kind {
        loop {
            match self.next_within(within).await.expect("stream stays open") {
                Kind::Heartbeat(_) => continue,
                other => return other,
            }
        }
    }

    /// A whole snapshot: (revision, API slugs, key count).
    pub async fn snapshot(&mut self) -> (u64, Vec<String>, usize) {
        let mut apis = Vec::new();
        let mut keys = 0;
        let mut expected_index = 0;
        loop {
            let Kind::Snapshot(chunk) = self.next_update(PATIENCE).await else {
                panic!("expected a snapshot chunk");
            };
            assert_eq!(chunk.index, expected_index);
            expected_index += 1;
            apis.extend(chunk.apis.into_iter().map(|a| a.slug));
            keys += chunk.keys.len();
            if chunk.last {
                return (chunk.revision, apis, keys);
            }
        }
    }

    /// The revision of the next delta, which must come within `within`.
    pub async fn delta(&mut self, within: Duration) -> u64 {
        match self.next_update(within).await {
            Kind::Delta(delta) => delta.revision,
            other => panic!("expected a delta, got {other:?}"),
        }
    }

    pub async fn ack(&self, revision: u64) {
        self.requests
            .send(StreamRequest {
                kind: Some(stream_request::Kind::Ack(Ack { revision })),
            })
            .await
            .expect("send an ack");
    }
}

async fn set_orders_list(admin: &mut Admin, cidr: &str) -> u64 {
    admin
        .set_api_allowlist(SetApiAllowlistRequest {
            wait_for_propagation: None,
            slug: "orders".into(),
            allowlist: Some(Allowlist {
                entries: vec![AllowlistEntry {
                    cidr: cidr.into(),
                    ..Default::default()
                }],
                report_only: false,
            }),
            etag: String::new(),
            options: None,
        })
        .await
        .expect("set the API allowlist")
        .into_inner()
        .api
        .expect("the API")
        .revision
}

async fn with_orders(admin: &mut Admin) {
    admin
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            ..Default::default()
        })
        .await
        .expect("create API");
    admin
        .create_api_key(CreateApiKeyRequest {
            api: "orders".into(),
            ..Default::default()
        })
        .await
        .expect("create key");
}

async fn hello_zero_gets_a_snapshot_then_live_deltas(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    with_orders(&mut admin).await;
    let mut enforcer = Enforcer::start(server.addr, "enforcer-1", 0).await;
    let (revision, apis, keys) = enforcer.snapshot().await;
    assert_eq!((revision, apis, keys), (2, vec!["orders".to_owned()], 1));

    let written = set_orders_list(&mut admin, "203.0.113.5").await;
    assert_eq!(written, 3);
    assert_eq!(enforcer.delta(LIVE).await, 3);
    let written = set_orders_list(&mut admin, "203.0.113.6").await;
    assert_eq!(enforcer.delta(LIVE).await, written);
    server.shutdown().await.unwrap();
}

async fn a_known_revision_gets_only_later_deltas(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    with_orders(&mut admin).await;
    set_orders_list(&mut admin, "203.0.113.5").await;
    let mut enforcer = Enforcer::start(server.addr, "enforcer-1", 1).await;
    assert_eq!(enforcer.delta(PATIENCE).await, 2);
    assert_eq!(enforcer.delta(PATIENCE).await, 3);
    set_orders_list(&mut admin, "203.0.113.6").await;
    assert_eq!(enforcer.delta(LIVE).await, 4);

    // Up to date: just follow.
    let mut current = Enforcer::start(server.addr, "enforcer-2", 4).await;
    // Ahead of this database (restored from a backup, or another one): its
    // claim is refused, never recorded, and a replacing snapshot comes.
    let mut ahead = Enforcer::start(server.addr, "enforcer-3", 50).await;
    let Kind::Snapshot(chunk) = ahead.next_update(PATIENCE).await else {
        panic!("expected a snapshot for a claim above the current revision");
    };
    assert_eq!(chunk.revision, 4);
    assert!(chunk.replace, "{chunk:?}");
    assert!(!chunk.database_id.is_empty());
    set_orders_list(&mut admin, "203.0.113.7").await;
    assert_eq!(current.delta(LIVE).await, 5);
    assert_eq!(ahead.delta(LIVE).await, 5);
    server.shutdown().await.unwrap();
}

async fn sync_needs_an_enforcer_token_and_a_hello(db: Db) {
    let server = db.start().await;
    let refused = |token| async move {
        connect(server.addr, token, hello("enforcer-1", 0))
            .await
            .err()
            .map(|s| s.code())
    };
    assert_eq!(refused(None).await, Some(Code::Unauthenticated));
    assert_eq!(
        refused(Some("ipg_enf_bogus")).await,
        Some(Code::Unauthenticated)
    );
    assert_eq!(refused(Some(OWNER)).await, Some(Code::PermissionDenied));

    let ack_first = stream_request::Kind::Ack(Ack { revision: 1 });
    let mut confused = connect(server.addr, Some(ENFORCER), ack_first)
        .await
        .unwrap();
    let status = confused.next_within(PATIENCE).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let mut nameless = connect(server.addr, Some(ENFORCER), hello("has space", 0))
        .await
        .unwrap();
    assert_eq!(
        nameless.next_within(PATIENCE).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    server.shutdown().await.unwrap();
}

async fn acks_make_a_revision_live(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    with_orders(&mut admin).await;
    let mut enforcer = Enforcer::start(server.addr, "enforcer-1", 0).await;
    let (revision, ..) = enforcer.snapshot().await;
    enforcer.ack(revision).await;
    let reader = admin.clone();
    let status = |revision| {
        let mut admin = reader.clone();
        async move {
            admin
                .get_revision_status(GetRevisionStatusRequest { revision })
                .await
                .unwrap()
                .into_inner()
        }
    };
    eventually(PATIENCE, "the ack to be recorded", || async {
        let s = status(revision).await;
        (s.live && s.enforcers_acked == 1).then_some(())
    })
    .await;

    let written = set_orders_list(&mut admin, "203.0.113.5").await;
    let s = status(written).await;
    assert_eq!(
        (s.enforcers_connected, s.enforcers_acked, s.live),
        (1, 0, false)
    );
    assert_eq!(s.enforcers[0].enforcer_id, "enforcer-1");
    assert!(s.enforcers[0].connected);
    assert_eq!(enforcer.delta(PATIENCE).await, written);
    enforcer.ack(written).await;
    eventually(PATIENCE, "the new revision to be live", || async {
        status(written).await.live.then_some(())
    })
    .await;

    // Disconnected enforcers are remembered but do not hold a revision back.
    drop(enforcer);
    let written = set_orders_list(&mut admin, "203.0.113.6").await;
    let s = eventually(PATIENCE, "the enforcer to disconnect", || async {
        let s = status(written).await;
        (s.enforcers_connected == 0).then_some(s)
    })
    .await;
    // With no enforcer connected, nothing has it in force.
    assert!(!s.live);
    assert_eq!(s.enforcers[0].acked_revision, written - 1);
    server.shutdown().await.unwrap();
}

/// A revoked enforcer token stops its streams at once, even on a busy
/// control plane where the stream is never idle: nothing committed after
/// the revocation reaches it.
async fn a_revoked_token_stops_its_streams_at_once(db: Db) {
    use ipgate_shared::proto::admin::v1::{CreateTokenRequest, RevokeTokenRequest, TokenRole};
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    with_orders(&mut admin).await;
    let created = admin
        .create_token(CreateTokenRequest {
            name: "edge".into(),
            role: TokenRole::Enforcer.into(),
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    let id = created.token.unwrap().id;
    let mut revoked = Enforcer::start_as(server.addr, &created.secret, "edge-1", 0).await;
    revoked.snapshot().await;
    let mut other = Enforcer::start(server.addr, "other", 0).await;
    other.snapshot().await;
    let before = set_orders_list(&mut admin, "203.0.113.8").await;
    assert_eq!(revoked.delta(LIVE).await, before);
    assert_eq!(other.delta(LIVE).await, before);

    admin
        .revoke_token(RevokeTokenRequest {
            id,
            validate_only: false,
        })
        .await
        .unwrap();
    let after = set_orders_list(&mut admin, "203.0.113.9").await;
    let ended = revoked.next_within(PATIENCE).await;
    let status = ended.expect_err("the stream ends before anything after the revocation");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // Others go on: the revocation is an empty revision for them.
    assert_eq!(other.delta(LIVE).await, before + 1);
    assert_eq!(other.delta(LIVE).await, after);
    server.shutdown().await.unwrap();
}

async fn idle_streams_carry_heartbeats(db: Db) {
    let server = db.start().await;
    let mut enforcer = Enforcer::start(server.addr, "enforcer-1", 0).await;
    let (revision, ..) = enforcer.snapshot().await;
    assert_eq!(revision, 0);
    match enforcer.next_within(PATIENCE).await.unwrap() {
        Kind::Heartbeat(beat) => assert_eq!(beat.revision, 0),
        other => panic!("expected a heartbeat, got {other:?}"),
    }
    server.shutdown().await.unwrap();
}

async fn a_compacted_log_is_replaced_by_a_snapshot(db: Db) {
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    with_orders(&mut admin).await;
    for i in 0..3 {
        set_orders_list(&mut admin, &format!("203.0.113.{i}")).await;
    }
    // Another handle on the same database compacts all but the last revision.
    let store = Store::open(db.url()).await.unwrap();
    store.prune(SystemTime::UNIX_EPOCH, 1).await.unwrap();
    store.close().await;

    let mut enforcer = Enforcer::start(server.addr, "enforcer-1", 1).await;
    let (revision, apis, keys) = enforcer.snapshot().await;
    assert_eq!((revision, apis.len(), keys), (5, 1, 1));
    let mut recent = Enforcer::start(server.addr, "enforcer-2", 4).await;
    assert_eq!(recent.delta(PATIENCE).await, 5);
    server.shutdown().await.unwrap();
}

/// An enforcer that stops reading while many revisions commit is not
/// buffered for without bound: it is resynced with a snapshot, and what it
/// receives still applies in order, without gaps, up to the last revision.
async fn a_slow_enforcer_is_resynced_with_a_snapshot(db: Db) {
    const WRITES: u64 = 1500;
    let server = db.start().await;
    let mut admin = admin(server.addr).await;
    with_orders(&mut admin).await;
    let mut enforcer = Enforcer::start(server.addr, "slow", 2).await;
    // Another handle on the database writes quickly; the server's feed
    // picks the revisions up from the change log.
    let store = Store::open(db.url()).await.unwrap();
    let orders: ipgate_shared::ApiSlug = "orders".parse().unwrap();
    for i in 0..WRITES {
        let cidr = format!("203.0.{}.{}/32", 113 + i / 250, i % 250);
        let entry = ipgate_shared::Entry::new(cidr.parse().unwrap(), Default::default(), None);
        let list = ipgate_shared::allowlist::Allowlist::new(vec![entry], false);
        let write = ListWrite {
            edit: Edit::Set(list),
            rules: ipgate_shared::ListRules::for_apis(),
            expected: None,
            acknowledge_lockout_risk: false,
        };
        let ctx = WriteCtx::system(TenantId::DEFAULT, SystemTime::now());
        store
            .write_allowlist::<ApiRecord>(&ctx, &orders, write)
            .await
            .unwrap();
    }
    store.close().await;
    let last = 2 + WRITES;

    // Apply like an enforcer: deltas only in sequence, snapshots whole.
    let mut applied = 2;
    let mut snapshots = 0;
    while applied < last {
        match enforcer.next_update(PATIENCE).await {
            Kind::Delta(delta) if delta.revision <= applied => {}
            Kind::Delta(delta) => {
                assert_eq!(delta.revision, applied + 1, "a gap after {applied}");
                applied = delta.revision;
            }
            Kind::Snapshot(chunk) => {
                if chunk.last {
                    snapshots += 1;
                    applied = applied.max(chunk.revision);
                }
            }
            Kind::Heartbeat(_) => unreachable!("skipped by next_update"),
        }
    }
    assert!(snapshots >= 1, "the slow enforcer was never resynced");
    assert_eq!(applied, last);
    server.shutdown().await.unwrap();
}

async fn shutdown_ends_sessions(db: Db) {
    let server = db.start().await;
    let mut enforcer = Enforcer::start(server.addr, "enforcer-1", 0).await;
    enforcer.snapshot().await;
    tokio::time::timeout(PATIENCE, server.shutdown())
        .await
        .expect("shutdown does not wait for sync streams")
        .expect("clean shutdown");
    let ended = loop {
        match enforcer.responses.message().await {
            Ok(Some(_)) => continue,
            other => break other,
        }
    };
    // The stream ends, with UNAVAILABLE (so the enforcer reconnects) when
    // the session's farewell got out before the connection closed.
    if let Err(status) = ended {
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
}

/// A log writer keeping every line in memory.
#[derive(Clone, Default)]
struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn matching(&self, text: &str) -> Vec<String> {
        let bytes = self.0.lock().expect("log buffer").clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains(text))
            .map(str::to_owned)
            .collect()
    }
}

/// A session's log lines stay as long after 1,000 revisions as after one:
/// its span records the revision it started from once, and never grows.
/// (The runtime has one thread, so the subscriber set here sees every task.)
#[tokio::test(flavor = "current_thread")]
async fn session_log_lines_do_not_grow_with_revisions() {
    let lines = Lines::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let lines = lines.clone();
            move || lines.clone()
        })
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let db = Db::sqlite();
    let cp = db.start().await;
    let mut admin = admin(cp.addr).await;
    with_orders(&mut admin).await;
    let mut enforcer = Enforcer::start(cp.addr, "long-lived", 0).await;
    enforcer.snapshot().await;
    for i in 0..1000 {
        let revision =
            set_orders_list(&mut admin, &format!("198.51.{}.{}", i / 250, i % 250)).await;
        assert_eq!(enforcer.delta(PATIENCE).await, revision);
    }
    drop(enforcer);
    let line = eventually(PATIENCE, "the session's last line", || async {
        lines.matching("enforcer disconnected").pop()
    })
    .await;
    assert!(line.contains("sent=1002"), "{line}");
    assert_eq!(line.matches("revision=").count(), 1, "{line}");
    assert!(line.len() < 300, "{} characters: {line}", line.len());
    cp.shutdown().await.expect("shutdown");
}

on_both_backends!(
    hello_zero_gets_a_snapshot_then_live_deltas,
    a_known_revision_gets_only_later_deltas,
    sync_needs_an_enforcer_token_and_a_hello,
    acks_make_a_revision_live,
    idle_streams_carry_heartbeats,
    a_revoked_token_stops_its_streams_at_once,
    a_compacted_log_is_replaced_by_a_snapshot,
    a_slow_enforcer_is_resynced_with_a_snapshot,
    shutdown_ends_sessions,
);
