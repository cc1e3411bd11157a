//! Usage ingestion at load: `ReportEvents` batches of realistic events, sent
//! as an enforcer sends them (gRPC, an enforcer token) to a real release
//! control plane on SQLite or PostgreSQL on loopback, several batches in flight, for
//! DURATION seconds. Prints the events/s sustained (the median of the
//! per-second rates, and the total over the run), then checks that the
//! usage log holds exactly the events acknowledged. `tests/bench/ingest.sh`
//! builds and runs it; BENCHMARKS.md keeps the figures.
//!
//! Environment: `DURATION` seconds (default 60, 1 to 600), `IN_FLIGHT`
//! batches (default 4, 1 to 64), `BATCH` events a batch (default 1,000, 1
//! to 10,000), `IPGATE_BIN` (default: `target/release/ipgate`), `BACKEND`
//! (`sqlite`, the default, or `postgres`: a fresh database in the
//! PostgreSQL named by `IPGATE_TEST_POSTGRES_URL`, as `tests/postgres.sh
//! start` prints it).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, bail};
use ipgate_shared::proto::sync::v1::{
    ClientIpSource, Door, ReportEventsRequest, UsageEvent, sync_service_client::SyncServiceClient,
};
use ipgate_tests::{Backend, ControlPlane, ENFORCER_TOKEN, admin::timestamp, process::Bearer};
use sqlx::{AnyConnection, Connection};
use tonic::{service::interceptor::InterceptedService, transport::Channel};

/// Distinct batches of events the senders cycle through (each sent with a
/// fresh batch id): building events costs the sender, not the control plane.
const TEMPLATES: usize = 16;

fn env_bounded(name: &str, default: u64, min: u64, max: u64) -> Result<u64> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => {
            let n: u64 = v.parse().with_context(|| format!("{name}={v:?}"))?;
            if !(min..=max).contains(&n) {
                bail!("{name}={n}: from {min} to {max}");
            }
            Ok(n)
        }
    }
}

/// A batch like an enforcer's: a few APIs and keys, many client addresses
/// (IPv4 and IPv6), mostly allowed with some blocks, varied paths.
fn template(seed: usize, size: usize) -> Vec<UsageEvent> {
    const APIS: [&str; 4] = ["orders", "billing", "search", "accounts"];
    const PATHS: [&str; 5] = [
        "/v1/orders",
        "/v1/orders/8812/items",
        "/v2/search?q=shoes&page=3",
        "/healthz",
        "/v1/accounts/me",
    ];
    const METHODS: [&str; 4] = ["GET", "GET", "POST", "DELETE"];
    let keys: Vec<String> = (0..8).map(|k| format!("k7q2m9x4t1b8w{k:03}")).collect();
    let now = SystemTime::now();
    (0..size)
        .map(|i| {
            let n = seed * size + i;
            let blocked = n % 10 == 7;
            let client_ip = if n.is_multiple_of(5) {
                format!("2001:db8:{:x}::{:x}", n % 97, n % 65_521)
            } else {
                format!("10.{}.{}.{}", n % 7, (n / 7) % 256, n % 251)
            };
            UsageEvent {
                request_id: format!("{:032x}", (seed as u128) << 64 | i as u128),
                time: Some(timestamp(now - Duration::from_millis((n % 5_000) as u64))),
                api: APIS[n % APIS.len()].to_owned(),
                api_key_id: if n.is_multiple_of(3) {
                    String::new()
                } else {
                    keys[n % keys.len()].clone()
                },
                method: METHODS[n % METHODS.len()].to_owned(),
                path: PATHS[n % PATHS.len()].to_owned(),
                status_code: if blocked { 403 } else { 200 },
                client_ip,
                reason: if blocked {
                    "IP_NOT_ALLOWED_KEY".to_owned()
                } else {
                    "ALLOWED".to_owned()
                },
                matched_label: if blocked {
                    String::new()
                } else {
                    "office".to_owned()
                },
                door: Door::Proxy.into(),
                client_ip_source: ClientIpSource::XForwardedFor.into(),
                ..Default::default()
            }
        })
        .collect()
}

type Client = SyncServiceClient<InterceptedService<Channel, Bearer>>;

/// Sends batches until `stop`, each retried with its id until acknowledged.
async fn sender(
    mut client: Client,
    templates: Arc<Vec<Vec<UsageEvent>>>,
    first: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) -> Result<u64> {
    let mut next = first;
    let mut failures = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut events = templates[next % templates.len()].clone();
        next += 1;
        // Events of the last second, as an enforcer's batch carries.
        let now = SystemTime::now();
        for (i, event) in events.iter_mut().enumerate() {
            event.time = Some(timestamp(
                now - Duration::from_micros(i as u64 * 997 % 1_000_000),
            ));
        }
        let request = ReportEventsRequest {
            batch_id: uuid::Uuid::new_v4().to_string(),
            enforcer_id: "bench-enforcer".to_owned(),
            events,
            dropped_allowed: 0,
            dropped_blocked: 0,
            ..Default::default()
        };
        let n = request.events.len() as u64;
        loop {
            match client.report_events(request.clone()).await {
                Ok(_) => break,
                Err(status) if status.code() == tonic::Code::InvalidArgument => {
                    bail!("the control plane refused a batch: {}", status.message())
                }
                Err(status) if failures < 20 => {
                    failures += 1;
                    eprintln!("ReportEvents failed ({status}); retrying the batch");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(status) => bail!("ReportEvents failed 20 times, the last: {status}"),
            }
        }
        acked.fetch_add(n, Ordering::Relaxed);
    }
    Ok(failures)
}

#[tokio::main]
async fn main() -> Result<()> {
    let duration = env_bounded("DURATION", 60, 1, 600)?;
    let in_flight = env_bounded("IN_FLIGHT", 4, 1, 64)? as usize;
    let batch = env_bounded("BATCH", 1_000, 1, 10_000)? as usize;

    let backend = match std::env::var("BACKEND").as_deref() {
        Err(_) | Ok("sqlite") => Backend::sqlite(),
        Ok("postgres") => Backend::postgres()
            .await
            .context("BACKEND=postgres needs IPGATE_TEST_POSTGRES_URL")?,
        Ok(other) => bail!("BACKEND={other:?}: sqlite or postgres"),
    };
    let control_plane = ControlPlane::start(&backend);
    println!(
        "control plane pid {} on {} ({}); {in_flight} batches of {batch} in flight for {duration} s",
        control_plane.pid(),
        control_plane.addr,
        backend.url()
    );

    let templates: Arc<Vec<Vec<UsageEvent>>> =
        Arc::new((0..TEMPLATES).map(|s| template(s, batch)).collect());
    let channel = Channel::from_shared(control_plane.url())?.connect().await?;
    let client = SyncServiceClient::with_interceptor(channel, Bearer::new(ENFORCER_TOKEN));

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let senders: Vec<_> = (0..in_flight)
        .map(|i| {
            tokio::spawn(sender(
                client.clone(),
                templates.clone(),
                i,
                stop.clone(),
                acked.clone(),
            ))
        })
        .collect();

    let start = Instant::now();
    let mut rates = Vec::new();
    let mut last = 0;
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    for second in 1..=duration {
        tick.tick().await;
        let now = acked.load(Ordering::Relaxed);
        rates.push(now - last);
        if second % 10 == 0 || second == duration {
            println!("{second:>4} s: {:>9} events/s", now - last);
        }
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = 0;
    for s in senders {
        failures += s.await??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let total = acked.load(Ordering::Relaxed);

    let mut sorted = rates.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    println!(
        "sustained: median {median} events/s a second (min {}, max {}); total {total} events in \
         {elapsed:.1} s = {:.0} events/s; {failures} retried calls",
        sorted[0],
        sorted[sorted.len() - 1],
        total as f64 / elapsed
    );

    sqlx::any::install_default_drivers();
    let mut db = AnyConnection::connect(&backend.usage_log_url()).await?;
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM usage_events")
        .fetch_one(&mut db)
        .await?;
    if u64::try_from(rows).ok() != Some(total) {
        bail!("the usage log holds {rows} events, but {total} were acknowledged");
    }
    println!("usage log: {rows} rows = events acknowledged");
    Ok(())
}
