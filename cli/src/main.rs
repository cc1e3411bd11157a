//! `ipgate`: one binary for every part of ipgate.
//!
//! - `ipgate dev` runs a control plane on SQLite, one enforcer and a demo
//!   upstream in one process, ready for grpcurl;
//! - `ipgate control-plane` and `ipgate enforcer` run each part alone;
//! - `ipgate tenants|tokens|apis|keys|test-access|logs|audit|revision` are
//!   the operators' commands over the admin API (see `admin`).

mod admin;
mod demo_upstream;
mod dev;
mod logging;
mod runtime;

use clap::{Parser, Subcommand};

/// jemalloc with background threads that return freed pages to the system:
/// an enforcer's resident memory falls back to its index's size seconds
/// after a snapshot build frees the configs it was built from, where
/// glibc's malloc kept them (docs/architecture.md, "Memory").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    #[command(flatten)]
    runtime: runtime::RuntimeArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a control plane (SQLite under ./.ipgate/), one enforcer and a demo upstream, all on loopback.
    Dev(dev::DevArgs),
    /// Run the control plane: admin API, sync server, usage log.
    ControlPlane(ipgate_control_plane::config::ControlPlaneArgs),
    /// Run an enforcer: sync client and front doors.
    // Boxed: its flags make it much larger than every other command.
    Enforcer(Box<ipgate_enforcer::Config>),

    /// Manage tenants (owners of the default tenant).
    Tenants(admin::Group<admin::cmd::Tenants>),
    /// Manage admin and enforcer tokens (owners).
    Tokens(admin::Group<admin::cmd::Tokens>),
    /// Manage APIs and their allowlists.
    #[command(after_help = "Examples:\n  \
        ipgate apis create orders --name \"Orders API\" --route \"POST /orders=orders:write\"\n  \
        ipgate apis allowlist add orders 203.0.113.0/24 --label \"Office\" --dry-run\n  \
        ipgate apis update orders --status disabled --etag 42")]
    Apis(admin::Group<admin::cmd::Apis>),
    /// Manage API keys and their allowlists.
    #[command(after_help = "Examples:\n  \
        ipgate keys create --api orders --name \"deploy bot\" --scope orders:write\n  \
        ipgate keys allowlist add KEY_ID 203.0.113.0/24 --label \"Office\" --expires-in 2h\n  \
        ipgate keys rotate KEY_ID --grace 1h")]
    Keys(admin::Group<admin::cmd::Keys>),
    /// Ask what an enforcer would decide for an API, a key and an address.
    TestAccess(admin::cmd::TestAccessArgs),
    /// Read and export the usage log (every decided request).
    #[command(after_help = "Examples:\n  \
        ipgate logs query --status 403 --since 24h\n  \
        ipgate logs query --key KEY_ID --reason BLOCKED_ANY --ip 203.0.113.0/24\n  \
        ipgate logs export --status 403 -o blocked.csv")]
    Logs(admin::Group<admin::cmd::Logs>),
    /// Read the audit log (every admin change).
    Audit(admin::Group<admin::cmd::Audit>),
    /// Tell whether a change is live on every enforcer.
    Revision(admin::Group<admin::cmd::Revision>),
    /// List the enforcers: where each is connected, its revision and lag, its queued events and its last refused update.
    Enforcers(admin::cmd::EnforcersArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match cli.runtime.build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let admin_command = match cli.command {
        Command::Tenants(g) => admin::AdminCommand::Tenants(g),
        Command::Tokens(g) => admin::AdminCommand::Tokens(g),
        Command::Apis(g) => admin::AdminCommand::Apis(g),
        Command::Keys(g) => admin::AdminCommand::Keys(g),
        Command::TestAccess(a) => admin::AdminCommand::TestAccess(a),
        Command::Logs(g) => admin::AdminCommand::Logs(g),
        Command::Audit(g) => admin::AdminCommand::Audit(g),
        Command::Revision(g) => admin::AdminCommand::Revision(g),
        Command::Enforcers(a) => admin::AdminCommand::Enforcers(a),
        server => {
            return match runtime.block_on(serve(cli.log, server)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("Error: {e:?}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
    };
    // Admin commands log only warnings unless asked: their output is the answer.
    let _ = logging::init(&cli.log);
    match runtime.block_on(admin::run(admin_command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", admin::render_error(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs `dev`, `control-plane` or `enforcer` until a shutdown signal.
async fn serve(log: logging::LogArgs, command: Command) -> anyhow::Result<()> {
    logging::init(&log)?;
    match command {
        Command::Dev(args) => dev::run(args).await,
        Command::ControlPlane(args) => {
            let running = ipgate_control_plane::start(args.into_config()).await?;
            if let Some(tokens) = &running.bootstrap {
                println!("{}", dev::bootstrap_notice(tokens));
            }
            shutdown_signal().await?;
            running.shutdown().await?;
            Ok(())
        }
        Command::Enforcer(config) => {
            let running = ipgate_enforcer::start(*config).await?;
            shutdown_signal().await?;
            running.shutdown().await?;
            Ok(())
        }
        _ => unreachable!("admin commands are run by admin::run"),
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
