//! Test support: a scripted fake control plane, a world of APIs and keys, and
//! bounded waits.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use clap::Parser;
use ipgate_enforcer::{Config, Running};
use ipgate_shared::{
    Allowlist, ApiConfig, Entry, KeyConfig, SecretHash,
    key::NewKey,
    proto::{
        check::v1::{CheckRequest, CheckResponse, check_service_client::CheckServiceClient},
        sync::v1::{
            self as wire, Hello, Nack, ReportEventsRequest, ReportEventsResponse, StreamRequest,
            StreamResponse, stream_request, stream_response,
            sync_service_server::{SyncService, SyncServiceServer},
        },
    },
};
use tokio::{net::TcpListener, sync::mpsc, task::JoinHandle};
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming, transport::Server};

/// Longest any bounded wait in these tests lasts before failing.
pub const PATIENCE: Duration = Duration::from_secs(10);
pub const TOKEN: &str = "ipg_enf_test_token";
pub const ENFORCER_ID: &str = "enforcer-under-test";

/// Polls `check` until it returns true; fails the test after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Awaits `future`, failing the test after [`PATIENCE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

// === the enforcer ===

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

/// A config for an enforcer on loopback talking to `control_plane`, with
/// quick reconnects.
pub fn config(control_plane: SocketAddr, extra: &[&str]) -> Config {
    crate::log_capture::init();
    let cp = format!("http://{control_plane}");
    let args = [
        "enforcer",
        "--control-plane",
        &cp,
        "--token",
        TOKEN,
        "--id",
        ENFORCER_ID,
        "--grpc-listen",
        "127.0.0.1:0",
        "--proxy-listen",
        "127.0.0.1:0",
        "--reconnect-min-ms",
        "10",
        "--reconnect-max-ms",
        "200",
    ];
    Cli::try_parse_from(args.iter().chain(extra))
        .expect("test flags parse")
        .config
}

pub async fn check_client(running: &Running) -> CheckServiceClient<tonic::transport::Channel> {
    CheckServiceClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .expect("connect to the gRPC door")
}

/// Asks the gRPC door about one request to `orders`.
pub async fn check(running: &Running, key: &str, ip: &str) -> CheckResponse {
    check_with(running, key, ip, "").await
}

pub async fn check_with(running: &Running, key: &str, ip: &str, request_id: &str) -> CheckResponse {
    let request = CheckRequest {
        api: "orders".into(),
        api_key: key.into(),
        client_ip: ip.into(),
        method: "GET".into(),
        path: "/orders/7".into(),
        request_id: request_id.into(),
    };
    check_client(running)
        .await
        .check(request)
        .await
        .expect("Check answers")
        .into_inner()
}

// === a world of APIs and keys ===

/// API `orders` (no API allowlist) and two keys: `office` may call from
/// 203.0.113.0/24, `local` from 127.0.0.1.
pub struct World {
    pub office: NewKey,
    pub local: NewKey,
}

impl World {
    pub fn new() -> Self {
        World {
            office: NewKey::generate(),
            local: NewKey::generate(),
        }
    }

    pub fn api() -> wire::ApiConfig {
        wire::ApiConfig::from(&ApiConfig {
            slug: "orders".parse().unwrap(),
            enabled: true,
            allowlist: Allowlist::default(),
            routes: vec![],
        })
    }

    /// The wire form of `key` for API `orders`, allowed from `cidr`.
    pub fn key(key: &NewKey, cidr: &str, label: &str) -> wire::KeyConfig {
        wire::KeyConfig::from(&KeyConfig {
            id: key.id,
            api: "orders".parse().unwrap(),
            secret_hash: SecretHash::of(&key.secret),
            scopes: vec![],
            expires_at: None,
            allowlist: Allowlist::new(
                vec![Entry::new(
                    cidr.parse().unwrap(),
                    label.parse().unwrap(),
                    None,
                )],
                false,
            ),
            previous_secrets: vec![],
        })
    }

    /// The world at `revision`, in three chunks.
    pub fn snapshot(&self, revision: u64) -> Vec<StreamResponse> {
        vec![
            chunk(revision, 0, false, vec![Self::api()], vec![]),
            chunk(
                revision,
                1,
                false,
                vec![],
                vec![Self::key(&self.office, "203.0.113.0/24", "office")],
            ),
            chunk(
                revision,
                2,
                true,
                vec![],
                vec![Self::key(&self.local, "127.0.0.1", "loopback")],
            ),
        ]
    }
}

pub fn chunk(
    revision: u64,
    index: u32,
    last: bool,
    apis: Vec<wire::ApiConfig>,
    keys: Vec<wire::KeyConfig>,
) -> StreamResponse {
    StreamResponse {
        kind: Some(stream_response::Kind::Snapshot(wire::SnapshotChunk {
            revision,
            index,
            last,
            apis,
            keys,
            ..Default::default()
        })),
    }
}

/// A delta that puts `keys`.
pub fn put_keys(revision: u64, keys: Vec<wire::KeyConfig>) -> StreamResponse {
    let changes = keys
        .into_iter()
        .map(|k| wire::Change {
            kind: Some(wire::change::Kind::PutKey(k)),
        })
        .collect();
    StreamResponse {
        kind: Some(stream_response::Kind::Delta(wire::Delta {
            revision,
            changes,
        })),
    }
}

// === the fake control plane ===

/// One sync stream the enforcer opened.
pub struct Session {
    pub hello: Hello,
    pub authorization: Option<String>,
    from_enforcer: Streaming<StreamRequest>,
    to_enforcer: mpsc::UnboundedSender<Result<StreamResponse, Status>>,
}

impl Session {
    pub fn send(&self, message: StreamResponse) {
        self.to_enforcer
            .send(Ok(message))
            .expect("enforcer still listening");
    }

    pub fn send_all(&self, messages: Vec<StreamResponse>) {
        for m in messages {
            self.send(m);
        }
    }

    async fn next(&mut self) -> stream_request::Kind {
        let message = within("a message from the enforcer", self.from_enforcer.message())
            .await
            .expect("stream healthy")
            .expect("stream still open");
        message.kind.expect("message has a kind")
    }

    pub async fn expect_ack(&mut self) -> u64 {
        match self.next().await {
            stream_request::Kind::Ack(ack) => ack.revision,
            other => panic!("expected an Ack, got {other:?}"),
        }
    }

    pub async fn expect_nack(&mut self) -> Nack {
        match self.next().await {
            stream_request::Kind::Nack(nack) => nack,
            other => panic!("expected a Nack, got {other:?}"),
        }
    }
}

/// A `ReportEvents` call as the fake saw it.
#[derive(Clone, Debug)]
pub struct Report {
    pub authorization: Option<String>,
    pub request: ReportEventsRequest,
    /// False when the fake answered with an error.
    pub accepted: bool,
}

#[derive(Clone)]
struct Service {
    sessions: mpsc::UnboundedSender<Session>,
    reports: Arc<Mutex<Vec<Report>>>,
    failures_left: Arc<AtomicUsize>,
    refusals_left: Arc<AtomicUsize>,
}

fn authorization<T>(request: &Request<T>) -> Option<String> {
    request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Counts one scripted failure down; true while any were left.
fn take_one(left: &AtomicUsize) -> bool {
    left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[tonic::async_trait]
impl SyncService for Service {
    type StreamStream = UnboundedReceiverStream<Result<StreamResponse, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<StreamRequest>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let authorization = authorization(&request);
        if take_one(&self.refusals_left) {
            return Err(Status::unauthenticated(
                "scripted refusal: unknown enforcer token",
            ));
        }
        let mut from_enforcer = request.into_inner();
        let hello = match from_enforcer.message().await? {
            Some(StreamRequest {
                kind: Some(stream_request::Kind::Hello(hello)),
            }) => hello,
            other => {
                return Err(Status::invalid_argument(format!(
                    "expected Hello, got {other:?}"
                )));
            }
        };
        let (to_enforcer, rx) = mpsc::unbounded_channel();
        let session = Session {
            hello,
            authorization,
            from_enforcer,
            to_enforcer,
        };
        self.sessions
            .send(session)
            .map_err(|_| Status::unavailable("test is over"))?;
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }

    async fn report_events(
        &self,
        request: Request<ReportEventsRequest>,
    ) -> Result<Response<ReportEventsResponse>, Status> {
        let authorization = authorization(&request);
        let request = request.into_inner();
        let fail = take_one(&self.failures_left);
        let mut reports = self.reports.lock().unwrap();
        let duplicate = reports
            .iter()
            .any(|r| r.accepted && r.request.batch_id == request.batch_id);
        reports.push(Report {
            authorization,
            request,
            accepted: !fail,
        });
        if fail {
            Err(Status::unavailable("scripted failure"))
        } else {
            Ok(Response::new(ReportEventsResponse { duplicate }))
        }
    }
}

/// A control plane on 127.0.0.1 whose every answer the test scripts.
pub struct FakeControlPlane {
    pub addr: SocketAddr,
    sessions: mpsc::UnboundedReceiver<Session>,
    reports: Arc<Mutex<Vec<Report>>>,
    failures_left: Arc<AtomicUsize>,
    refusals_left: Arc<AtomicUsize>,
    server: JoinHandle<()>,
}

impl FakeControlPlane {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (sessions_tx, sessions) = mpsc::unbounded_channel();
        let service = Service {
            sessions: sessions_tx,
            reports: Arc::default(),
            failures_left: Arc::default(),
            refusals_left: Arc::default(),
        };
        let reports = service.reports.clone();
        let failures_left = service.failures_left.clone();
        let refusals_left = service.refusals_left.clone();
        let server = tokio::spawn(async move {
            Server::builder()
                .add_service(SyncServiceServer::new(service))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        FakeControlPlane {
            addr,
            sessions,
            reports,
            failures_left,
            refusals_left,
            server,
        }
    }

    /// Refuses the next `n` sync streams with `UNAUTHENTICATED`.
    pub fn refuse_streams(&self, n: usize) {
        self.refusals_left.store(n, Ordering::SeqCst);
    }

    /// The next sync stream the enforcer opens.
    pub async fn next_session(&mut self) -> Session {
        within("the enforcer to open a sync stream", self.sessions.recv())
            .await
            .expect("fake control plane running")
    }

    /// Answers the next `n` `ReportEvents` calls with `UNAVAILABLE`.
    pub fn fail_reports(&self, n: usize) {
        self.failures_left.store(n, Ordering::SeqCst);
    }

    /// Every `ReportEvents` call so far.
    pub fn reports(&self) -> Vec<Report> {
        self.reports.lock().unwrap().clone()
    }

    /// Every event delivered so far (accepted calls only).
    /// Every event of the accepted batches, its text read back from the
    /// batch's string table as the control plane does.
    pub fn events(&self) -> Vec<wire::UsageEvent> {
        self.reports()
            .into_iter()
            .filter(|r| r.accepted)
            .flat_map(|r| {
                let strings = r.request.strings;
                r.request.events.into_iter().map(move |mut e| {
                    ipgate_enforcer::shared::usage::resolve_refs(&strings, &mut e)
                        .expect("references inside the batch's table");
                    e
                })
            })
            .collect()
    }

    /// Vanishes: the server and every connection are dropped.
    pub fn kill(self) {
        self.server.abort();
    }
}

/// An enforcer synced to the world at revision 1 through `fake`, and its session.
pub async fn synced(
    fake: &mut FakeControlPlane,
    world: &World,
    extra: &[&str],
) -> (Running, Session) {
    let running = ipgate_enforcer::start(config(fake.addr, extra))
        .await
        .unwrap();
    let mut session = fake.next_session().await;
    session.send_all(world.snapshot(1));
    assert_eq!(session.expect_ack().await, 1);
    (running, session)
}
