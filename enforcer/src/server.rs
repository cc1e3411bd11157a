//! Wiring: binds the doors, starts the sync client and the reporter, and
//! stops them in order (doors drain, then the reporter flushes).

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use ipgate_shared::{Revision, proto::ENFORCER_DESCRIPTOR_SET};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Server, server::Router};
use tracing::{info, warn};

use crate::{
    backoff::Backoff,
    client_ip,
    config::{CheckToken, Config},
    control_plane::ControlPlane,
    doors::{
        auth::{self, AuthDoor},
        check::CheckDoor,
        ext_authz::ExtAuthzDoor,
        proxy::{self, ProxyDoor},
        request::HostApis,
        upstream::Upstream,
    },
    error::Error,
    events::{self, Reporter},
    state::Enforcer,
    sync::{SnapshotCache, SyncClient},
};

/// The health-check name that says whether the index in force is vouched
/// for by the control plane (SERVING) or still the snapshot cache's.
pub const SYNC_HEALTH: &str = "ipgate.enforcer.v1.Sync";

/// Extra time, beyond a task's own deadline, before it is aborted.
const GRACE: Duration = Duration::from_secs(1);

/// Binds every door, starts syncing and reporting, and returns once the
/// doors listen; it does not wait for the first snapshot.
pub async fn start(config: Config) -> Result<Running, Error> {
    check_door_is_guarded(&config)?;
    let control_plane = ControlPlane::new(&config.control_plane, &config.token)?;
    let (min, max) = config.reconnect_bounds();
    let (sink, source) = events::queue(config.event_queue_capacity);
    let enforcer = Arc::new(Enforcer::new(config.fail_open_until_synced, sink));

    // Each door has a policy of its own (with its own rate-limited
    // warnings), all from the same flags.
    let policy =
        || client_ip::Policy::new(&config.client_ip).map_err(|e| Error::Config(e.to_string()));
    let client_ip = policy()?;
    let hosts = HostApis::new(&config.api_for_host).map_err(|e| Error::Config(e.to_string()))?;
    let proxy_door = match (&config.upstream, &config.api) {
        (Some(upstream), Some(api)) => Some(ProxyDoor::new(
            enforcer.clone(),
            api.clone(),
            Upstream::new(upstream, &config.upstream_options)
                .map_err(|e| Error::Config(e.to_string()))?,
            client_ip,
            config.proxy_limits.clone(),
            config.hide_credentials,
        )),
        (Some(_), None) => return Err(Error::Config("--upstream needs --api SLUG".into())),
        (None, _) => None,
    };
    let ext_authz = ExtAuthzDoor::server(
        enforcer.clone(),
        config.check_token.as_ref(),
        // Envoy speaks gRPC here; no PROXY header precedes it.
        policy()?.with_proxy_protocol(false),
        hosts,
        config.hide_credentials,
    );
    let auth_door = match config.auth_listen {
        Some(_) => Some(AuthDoor::new(
            enforcer.clone(),
            policy()?.with_proxy_protocol(config.auth_proxy_protocol),
            config.proxy_limits.clone(),
        )),
        None => None,
    };
    let router = grpc_router(enforcer.clone(), config.check_token.as_ref(), ext_authz).await?;

    let grpc_listener = bind(config.grpc_listen).await?;
    let grpc_addr = local_addr(&grpc_listener, config.grpc_listen)?;
    let proxy_listener = match proxy_door {
        Some(door) => {
            let listener = bind(config.proxy_listen).await?;
            let addr = local_addr(&listener, config.proxy_listen)?;
            Some((listener, addr, Arc::new(door)))
        }
        None => None,
    };
    let auth_listener = match (auth_door, config.auth_listen) {
        (Some(door), Some(listen)) => {
            let listener = bind(listen).await?;
            let addr = local_addr(&listener, listen)?;
            Some((listener, addr, Arc::new(door)))
        }
        _ => None,
    };

    let (stop_doors, doors_stopped) = watch::channel(false);
    let (stop_reporter, reporter_stopped) = watch::channel(false);
    let mut stop = doors_stopped.clone();
    let grpc = tokio::spawn(async move {
        let incoming = TcpListenerStream::new(grpc_listener);
        let signal = async move { crate::shutdown::requested(&mut stop).await };
        router
            .serve_with_incoming_shutdown(incoming, signal)
            .await
            .map_err(Error::from)
    });
    println!("ipgate enforcer serving gRPC on {grpc_addr}");

    let (proxy, proxy_addr) = match proxy_listener {
        Some((listener, addr, door)) => {
            let task = tokio::spawn(proxy::serve(
                listener,
                door,
                doors_stopped.clone(),
                config.drain_timeout,
            ));
            println!("ipgate enforcer serving HTTP proxy on {addr}");
            (Some(task), Some(addr))
        }
        None => (None, None),
    };
    let (auth, auth_addr) = match auth_listener {
        Some((listener, addr, door)) => {
            let task = tokio::spawn(auth::serve(listener, door, doors_stopped));
            println!("ipgate enforcer serving HTTP auth endpoint on {addr}");
            (Some(task), Some(addr))
        }
        None => (None, None),
    };

    let cache = config.snapshot_cache.clone().map(|path| {
        let (cache, writer) = SnapshotCache::new(path);
        tokio::spawn(writer);
        cache
    });
    let sync = SyncClient {
        enforcer: enforcer.clone(),
        control_plane: control_plane.clone(),
        id: config.id.clone(),
        backoff: Backoff::new(min, max),
        cache,
    };
    let reporter = Reporter::new(
        source,
        control_plane,
        config.id.clone(),
        Backoff::new(min, max),
        reporter_stopped,
    );
    info!(
        enforcer = %config.id,
        check_token = config.check_token.is_some(),
        "enforcer started; waiting for the first snapshot"
    );
    Ok(Running {
        grpc_addr,
        proxy_addr,
        auth_addr,
        enforcer,
        drain_timeout: config.drain_timeout,
        stop_doors,
        stop_reporter,
        tasks: Tasks {
            grpc: Some(grpc),
            proxy,
            auth,
            sync: Some(tokio::spawn(sync.run())),
            reporter: Some(tokio::spawn(reporter.run())),
        },
    })
}

/// A Check caller names the client address itself, and so does Envoy
/// calling ext_authz (the source address it reports), so open gRPC doors
/// beyond loopback would let anyone who reaches the port have any address
/// decided on, and fill the usage log. Refused at start rather than served
/// with those doors switched off: an operator who binds beyond loopback
/// means them to be reached, and learns now, not at the first call.
fn check_door_is_guarded(config: &Config) -> Result<(), Error> {
    let addr = config.grpc_listen;
    if config.check_token.is_some() || ipgate_shared::normalize_ip(addr.ip()).is_loopback() {
        return Ok(());
    }
    Err(Error::Config(format!(
        "--grpc-listen {addr} is beyond loopback, where anyone who reaches the port could \
         call Check or Envoy's ext_authz and name any client address: give the gRPC doors a \
         token with --check-token (or IPGATE_CHECK_TOKEN), which callers then send as \
         `authorization: Bearer <token>` (Envoy: in grpc_service.initial_metadata), or \
         listen on loopback (127.0.0.1)"
    )))
}

/// Check, ext_authz, reflection (v1 and v1alpha) and health on one server;
/// only Check and ext_authz ask for the door token.
async fn grpc_router(
    enforcer: Arc<Enforcer>,
    check_token: Option<&CheckToken>,
    ext_authz: AuthorizationServer<ExtAuthzDoor>,
) -> Result<Router, Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    // The server ("") is SERVING as soon as it listens (liveness). The
    // deciding services turn SERVING with the first snapshot (readiness), or
    // at once with --fail-open-until-synced; until then they answer 503.
    type Check =
        ipgate_shared::proto::check::v1::check_service_server::CheckServiceServer<CheckDoor>;
    type ExtAuthz = AuthorizationServer<ExtAuthzDoor>;
    // SYNC_HEALTH is SERVING once the control plane has vouched for the
    // index in force this run: an index from the snapshot cache decides
    // requests (so the doors are ready) but is stale until then.
    health
        .set_service_status(SYNC_HEALTH, tonic_health::ServingStatus::NotServing)
        .await;
    let fresh = enforcer.clone();
    let sync_health = health.clone();
    tokio::spawn(async move {
        fresh.fresh().await;
        sync_health
            .set_service_status(SYNC_HEALTH, tonic_health::ServingStatus::Serving)
            .await;
    });
    if enforcer.fails_open_until_synced() {
        health.set_serving::<Check>().await;
        health.set_serving::<ExtAuthz>().await;
    } else {
        health.set_not_serving::<Check>().await;
        health.set_not_serving::<ExtAuthz>().await;
        let synced = enforcer.clone();
        tokio::spawn(async move {
            synced.synced().await;
            health.set_serving::<Check>().await;
            health.set_serving::<ExtAuthz>().await;
        });
    }
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(ENFORCER_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // So grpcurl can print the check door's field violations.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
            // List what this port serves, not every ipgate service.
            .with_service_name("ipgate.check.v1.CheckService")
            .with_service_name(<ExtAuthz as tonic::server::NamedService>::NAME)
            .with_service_name("grpc.health.v1.Health")
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection")
    };
    Ok(Server::builder()
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(CheckDoor::server(enforcer, check_token))
        .add_service(ext_authz))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, Error> {
    listener
        .local_addr()
        .map_err(|source| Error::Bind { addr, source })
}

/// A started enforcer.
pub struct Running {
    /// Where the gRPC door listens (the real port when 0 was asked for).
    pub grpc_addr: SocketAddr,
    /// Where the HTTP proxy listens, when started with --upstream.
    pub proxy_addr: Option<SocketAddr>,
    /// Where the HTTP auth endpoint listens, when started with --auth-listen.
    pub auth_addr: Option<SocketAddr>,
    enforcer: Arc<Enforcer>,
    /// `--drain-timeout`: how long each door may finish requests in flight.
    drain_timeout: Duration,
    stop_doors: watch::Sender<bool>,
    stop_reporter: watch::Sender<bool>,
    tasks: Tasks,
}

/// The background tasks; a slot is emptied once its task was awaited.
struct Tasks {
    grpc: Option<JoinHandle<Result<(), Error>>>,
    proxy: Option<JoinHandle<()>>,
    auth: Option<JoinHandle<()>>,
    sync: Option<JoinHandle<()>>,
    reporter: Option<JoinHandle<()>>,
}

impl Running {
    /// The revision in force; `None` before the first snapshot.
    pub fn revision(&self) -> Option<Revision> {
        self.enforcer.revision()
    }

    /// The shared state, for doors started in the same process.
    pub fn enforcer(&self) -> &Arc<Enforcer> {
        &self.enforcer
    }

    /// Serves until SIGINT or SIGTERM (or until a task fails), then shuts
    /// down as [`Running::shutdown`] does.
    pub async fn wait(mut self) -> Result<(), Error> {
        let ended = tokio::select! {
            signal = shutdown_signal() => signal,
            failed = first_ended(&mut self.tasks) => Err(failed),
        };
        match &ended {
            Ok(()) => info!("shutdown requested"),
            Err(e) => warn!(error = %e, "enforcer stopping"),
        }
        let stopped = self.shutdown().await;
        ended.and(stopped)
    }

    /// Stops accepting, lets requests in flight finish, stops syncing and
    /// flushes queued usage events (each step bounded in time).
    pub async fn shutdown(mut self) -> Result<(), Error> {
        let _ = self.stop_doors.send(true);
        let mut result = match self.tasks.grpc.take() {
            Some(task) => match bounded("gRPC door", task, self.drain_timeout + GRACE).await {
                Ok(Some(served)) => served,
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
            None => Ok(()),
        };
        if let Some(task) = self.tasks.proxy.take() {
            let drained = bounded("HTTP proxy", task, self.drain_timeout + GRACE).await;
            result = result.and(drained.map(drop));
        }
        if let Some(task) = self.tasks.auth.take() {
            let drained = bounded("auth endpoint", task, auth::DRAIN_TIMEOUT + GRACE).await;
            result = result.and(drained.map(drop));
        }
        if let Some(task) = self.tasks.sync.take() {
            task.abort();
        }
        let _ = self.stop_reporter.send(true);
        if let Some(task) = self.tasks.reporter.take() {
            let flushed = bounded("reporter", task, events::FLUSH_TIMEOUT + GRACE).await;
            result = result.and(flushed.map(drop));
        }
        result
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Doors and reporter stop by themselves when the stop signals drop;
        // the sync client would otherwise run on, detached.
        if let Some(task) = self.tasks.sync.take() {
            task.abort();
        }
    }
}

/// Awaits `task` for at most `limit`, aborting it after that. `Ok(None)`
/// when it had to be aborted.
async fn bounded<T>(
    name: &'static str,
    mut task: JoinHandle<T>,
    limit: Duration,
) -> Result<Option<T>, Error> {
    match tokio::time::timeout(limit, &mut task).await {
        Ok(Ok(value)) => Ok(Some(value)),
        Ok(Err(source)) => Err(Error::Task { task: name, source }),
        Err(_) => {
            warn!("{name} did not stop within {limit:?}; aborting it");
            task.abort();
            Ok(None)
        }
    }
}

/// Resolves with the first task that ends; every task runs until shutdown,
/// so any ending here is a failure.
async fn first_ended(tasks: &mut Tasks) -> Error {
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = poll_slot(&mut tasks.grpc, cx) {
            return Poll::Ready(match r {
                Ok(Ok(())) => Error::Stopped("gRPC door"),
                Ok(Err(e)) => e,
                Err(source) => Error::Task {
                    task: "gRPC door",
                    source,
                },
            });
        }
        let others = [
            ("HTTP proxy", &mut tasks.proxy),
            ("auth endpoint", &mut tasks.auth),
            ("sync client", &mut tasks.sync),
            ("reporter", &mut tasks.reporter),
        ];
        for (name, slot) in others {
            if let Poll::Ready(r) = poll_slot(slot, cx) {
                return Poll::Ready(match r {
                    Ok(()) => Error::Stopped(name),
                    Err(source) => Error::Task { task: name, source },
                });
            }
        }
        Poll::Pending
    })
    .await
}

/// Polls the task in `slot`, emptying the slot once it has finished.
fn poll_slot<T>(
    slot: &mut Option<JoinHandle<T>>,
    cx: &mut Context<'_>,
) -> Poll<Result<T, tokio::task::JoinError>> {
    let Some(task) = slot else {
        return Poll::Pending;
    };
    let polled = Pin::new(task).poll(cx);
    if polled.is_ready() {
        *slot = None;
    }
    polled
}

async fn shutdown_signal() -> Result<(), Error> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(Error::Signal)?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted.map_err(Error::Signal),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(Error::Signal)
    }
}
