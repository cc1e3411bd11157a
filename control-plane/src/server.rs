//! Wiring: open and migrate the store, bootstrap tokens, start the change
//! feed and the pruner, and serve admin, sync, reflection and health on one
//! gRPC port until shut down.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use ipgate_shared::{
    proto::{
        CONTROL_PLANE_DESCRIPTOR_SET, admin::v1::admin_service_server::AdminServiceServer,
        sync::v1::sync_service_server::SyncServiceServer,
    },
    redact,
};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tonic::transport::{Server, server::TcpIncoming};

use crate::{
    admin::AdminApi,
    bootstrap::{BootstrapTokens, ensure_tokens},
    config::Config,
    error::Error,
    store::Store,
    sync::{ChangeFeed, Registry, SyncApi},
};

/// How long a shutdown waits for calls and streams to finish before it
/// drops the connections left (an enforcer that stopped reading).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often old usage events and change-log rows are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
/// HTTP/2 keepalive pings on accepted connections, to notice vanished enforcers.
const HTTP2_KEEPALIVE: Duration = Duration::from_secs(30);

/// A running control plane.
#[derive(Debug)]
pub struct Running {
    /// The address the gRPC server listens on.
    pub addr: SocketAddr,
    /// Tokens generated at this start (a fresh installation), to show once.
    pub bootstrap: Option<BootstrapTokens>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    tasks: Vec<JoinHandle<()>>,
    store: Arc<Store>,
}

/// Migrates, bootstraps tokens, binds and spawns the server; returns once
/// it listens, after printing `ipgate control-plane serving gRPC on <addr>`.
pub async fn start(config: Config) -> Result<Running, Error> {
    let store = Arc::new(Store::open(&config.database).await?);
    tracing::info!(database = %redact::url(&config.database), backend = ?store.backend(), "database ready");
    let bootstrap = ensure_tokens(&store, &config).await?;

    let (shutdown, stop) = watch::channel(false);
    let (feed, feed_task) = ChangeFeed::spawn(Arc::clone(&store), stop.clone()).await?;
    let pruner = tokio::spawn(prune(Arc::clone(&store), config.clone(), stop.clone()));
    let sweeper = tokio::spawn(sweep(
        Arc::clone(&store),
        config.expiry_sweep_interval,
        stop.clone(),
    ));
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;
    let replica = config
        .replica_id
        .clone()
        .unwrap_or_else(|| format!("{}:{}", host_name(), addr.port()));
    let registry = Arc::new(Registry::new(replica));
    let flusher = registry.spawn_flusher(Arc::clone(&store), stop.clone());

    let admin = AdminApi::new(
        Arc::clone(&store),
        Arc::clone(&registry),
        config.key_rules(),
        config.api_rules(),
    );
    let sync = SyncApi::new(
        Arc::clone(&store),
        feed,
        registry,
        config.heartbeat_interval,
        stop.clone(),
    );

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AdminServiceServer<AdminApi>>()
        .await;
    health_reporter
        .set_serving::<SyncServiceServer<SyncApi>>()
        .await;
    // `health_reporter()` already reports "" (the whole server) as SERVING.

    // grpcurl 1.8 speaks only v1alpha reflection; newer clients want v1.
    // The google.rpc error details are served too, so grpcurl prints field
    // violations and lockout details as JSON instead of raw bytes; they
    // define no service, so nothing more is listed. Only the services this
    // port answers are listed (the check service is the enforcer's).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(CONTROL_PLANE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
            .with_service_name("ipgate.admin.v1.AdminService")
            .with_service_name("ipgate.sync.v1.SyncService")
            .with_service_name("grpc.health.v1.Health")
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection")
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));

    let mut stopped = stop.clone();
    let server = Server::builder()
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AdminServiceServer::new(admin))
        .add_service(SyncServiceServer::new(sync))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        });
    let server = tokio::spawn(server);

    println!("ipgate control-plane serving gRPC on {addr}");
    tracing::info!(%addr, "serving gRPC");
    Ok(Running {
        addr,
        bootstrap,
        shutdown,
        server,
        tasks: vec![feed_task, pruner, sweeper, flusher],
        store,
    })
}

impl Running {
    /// Stops accepting calls, ends sync sessions (enforcers reconnect
    /// elsewhere), lets in-flight calls and writes finish, then closes the
    /// database.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.shutdown.send_replace(true);
        self.finish().await
    }

    /// Runs until the server stops on its own (an error) or is shut down.
    pub async fn wait(self) -> Result<(), Error> {
        self.finish().await
    }

    async fn finish(self) -> Result<(), Error> {
        let Running {
            shutdown,
            server,
            tasks,
            store,
            ..
        } = self;
        let mut server = server;
        let mut stopping = shutdown.subscribe();
        let served = tokio::select! {
            served = &mut server => served,
            () = async {
                let _ = stopping.wait_for(|stop| *stop).await;
                tokio::time::sleep(DRAIN_TIMEOUT).await;
            } => {
                tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; dropping them");
                server.abort();
                server.await
            }
        };
        // The server is gone, whatever the reason: stop the rest too.
        shutdown.send_replace(true);
        for task in tasks {
            task.await?;
        }
        store.close().await;
        tracing::info!("control plane stopped");
        match served {
            Ok(result) => Ok(result?),
            // Aborted after the drain timeout: a shutdown, not a failure.
            Err(e) if e.is_cancelled() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The machine's name, for the default replica id.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "control-plane".to_owned())
}

/// Prunes old usage events and compacts the change log, at start and then
/// every [`PRUNE_INTERVAL`].
async fn prune(store: Arc<Store>, config: Config, mut stop: watch::Receiver<bool>) {
    let retention = Duration::from_secs(u64::from(config.usage_retention_days) * 86_400);
    let mut every = tokio::time::interval(PRUNE_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            _ = every.tick() => {}
        }
        let before = std::time::SystemTime::now()
            .checked_sub(retention)
            .unwrap_or(std::time::UNIX_EPOCH);
        match store.prune(before, config.change_log_retention).await {
            Ok(pruned) => tracing::debug!(?pruned, "pruned"),
            Err(error) => tracing::warn!(%error, "pruning failed; retrying later"),
        }
    }
}

/// Removes expired allowlist entries every `interval`: each object changed
/// is an audited write by `system`, sent to enforcers as a delta. Expired
/// entries stop matching on enforcers at their instant regardless; this
/// only tidies the store.
async fn sweep(store: Arc<Store>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            _ = every.tick() => {}
        }
        match store
            .remove_expired_entries(std::time::SystemTime::now())
            .await
        {
            Ok(0) => {}
            Ok(objects) => tracing::info!(objects, "removed expired allowlist entries"),
            Err(error) => tracing::warn!(%error, "cannot remove expired entries; retrying later"),
        }
    }
}
