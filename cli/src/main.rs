//! `ipgate`: one binary for every part of ipgate.
//!
//! - `ipgate dev` runs a control plane on SQLite, one enforcer and a demo
//!   upstream in one process, ready for grpcurl;
//! - `ipgate control-plane` and `ipgate enforcer` run each part alone.

mod demo_upstream;
mod dev;
mod logging;

use clap::{Parser, Subcommand};

/// ipgate restricts who may call an API by source IP address.
#[derive(Parser, Debug)]
#[command(
    name = "ipgate",
    version,
    about = "ipgate restricts who may call an API by source IP address."
)]
struct Cli {
    #[command(flatten)]
    log: logging::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a control plane (SQLite under ./.ipgate/), one enforcer and a demo upstream, all on loopback.
    Dev(dev::DevArgs),
    /// Run the control plane: admin API, sync server, usage log.
    ControlPlane(ipgate_control_plane::Config),
    /// Run an enforcer: sync client and front doors.
    Enforcer(ipgate_enforcer::Config),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init(&cli.log)?;
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::ControlPlane(config) => {
            let running = ipgate_control_plane::start(config).await?;
            if let Some(tokens) = &running.bootstrap {
                println!("{}", dev::bootstrap_notice(tokens));
            }
            shutdown_signal().await?;
            running.shutdown().await?;
            Ok(())
        }
        Command::Enforcer(config) => {
            let running = ipgate_enforcer::start(config).await?;
            shutdown_signal().await?;
            running.shutdown().await?;
            Ok(())
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    Ok(())
}
