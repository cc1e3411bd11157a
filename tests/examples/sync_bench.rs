//! Write → all-acked latency: a real control plane (the `ipgate` binary next
//! to this example, on a fresh SQLite file), N real gRPC sync streams from
//! this one process (one connection each, each acking every revision as it
//! arrives, as an enforcer does), and real admin writes that wait for
//! propagation (`wait_for_propagation`). Each write's latency is from
//! sending it to its answer saying every one of the N streams has it.
//!
//! `STREAMS=1,100,1000 WRITES=200 target/release/examples/sync_bench`
//! (build with `cargo build --release -p ipgate -p ipgate-tests --example
//! sync_bench`). Loopback only; every loop is bounded by WRITES and by
//! timeouts.

use std::time::{Duration, Instant};

use ipgate_shared::proto::{
    admin::v1::{
        CreateApiRequest, GetPropagationRequest, SetApiAllowlistRequest, WaitForPropagation,
    },
    sync::v1::{Ack, EnforcerHeartbeat, Hello, StreamRequest, stream_request, stream_response},
};
use ipgate_tests::{
    Backend, ControlPlane,
    admin::{ack, current_revision, entries},
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let levels: Vec<usize> = env_or("STREAMS", "1,100,1000")
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let writes: usize = env_or("WRITES", "200").parse()?;
    let backend = Backend::sqlite();
    let cp = ControlPlane::start(&backend);
    let mut admin = cp.admin().await;
    admin
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            name: "Orders".into(),
            ..Default::default()
        })
        .await?;
    println!("streams  writes  p50_ms  p99_ms  max_ms  connect_s");
    for (level, &streams) in levels.iter().enumerate() {
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(streams);
        for n in 0..streams {
            let mut client = cp.sync().await;
            let id = format!("bench-{level}-{n}");
            tasks.push(tokio::spawn(async move { follow(&mut client, id).await }));
        }
        // Every stream has the current revision before the writes start.
        let current = current_revision(&mut admin).await;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let p = admin
                .get_propagation(GetPropagationRequest { revision: current })
                .await?
                .into_inner();
            if p.live && p.enforcers_expected as usize == streams {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "streams did not all connect: {p:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let connect = started.elapsed();
        let mut latencies = Vec::with_capacity(writes);
        for i in 0..writes {
            let sent = Instant::now();
            let answer = admin
                .set_api_allowlist(SetApiAllowlistRequest {
                    slug: "orders".into(),
                    allowlist: entries(&[&format!("198.51.100.{}/32", i % 250)]),
                    options: ack(),
                    wait_for_propagation: Some(WaitForPropagation {
                        deadline: Some(prost_types::Duration {
                            seconds: 30,
                            nanos: 0,
                        }),
                    }),
                    ..Default::default()
                })
                .await?
                .into_inner();
            let took = sent.elapsed();
            let p = answer.propagation.unwrap_or_default();
            anyhow::ensure!(
                p.live && p.enforcers_acked as usize == streams,
                "write {i} not live on all {streams} streams: {p:?}"
            );
            latencies.push(took);
        }
        latencies.sort_unstable();
        let at = |q: f64| {
            let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
            latencies[i].as_secs_f64() * 1e3
        };
        println!(
            "{streams:>7}  {writes:>6}  {:>6.2}  {:>6.2}  {:>6.2}  {:>9.1}",
            at(0.50),
            at(0.99),
            at(1.0),
            connect.as_secs_f64()
        );
        for task in tasks {
            task.abort();
        }
        // Let the control plane see them go before the next level counts.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// One simulated enforcer: Hello, then an Ack for every revision reached,
/// and a heartbeat every 5 s, until aborted.
async fn follow(client: &mut ipgate_tests::process::SyncClient, id: String) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel(1024);
    let hello = Hello {
        enforcer_id: id,
        ..Default::default()
    };
    tx.send(StreamRequest {
        kind: Some(stream_request::Kind::Hello(hello)),
    })
    .await?;
    let mut inbound = client.stream(ReceiverStream::new(rx)).await?.into_inner();
    let mut beat = tokio::time::interval(Duration::from_secs(5));
    loop {
        let message = tokio::select! {
            m = inbound.message() => m?,
            _ = beat.tick() => {
                let kind = stream_request::Kind::Heartbeat(EnforcerHeartbeat::default());
                let _ = tx.try_send(StreamRequest { kind: Some(kind) });
                continue;
            }
        };
        let Some(message) = message else {
            return Ok(());
        };
        let reached = match message.kind {
            Some(stream_response::Kind::Snapshot(chunk)) if chunk.last => chunk.revision,
            Some(stream_response::Kind::Delta(delta)) => delta.revision,
            _ => continue,
        };
        let kind = stream_request::Kind::Ack(Ack { revision: reached });
        let _ = tx.try_send(StreamRequest { kind: Some(kind) });
    }
}
