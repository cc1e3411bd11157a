//! The operators' subcommands: one module per resource of the admin API
//! (`ipgate.admin.v1.AdminService`), each a thin layer that turns flags into
//! a request, calls the control plane and renders the answer.
//!
//! Every group takes the same connection and output flags ([`AdminArgs`]),
//! which may stand anywhere after the group's name.

mod access;
mod allowlist;
mod apis;
mod audit;
mod client;
mod enforcers;
mod errors;
mod keys;
mod logs;
mod output;
mod revision;
mod tenants;
mod time;
mod tokens;

use clap::{Args, Subcommand};

pub use errors::render as render_error;

use client::Admin;
use output::Output;

/// Default `--addr`: where `ipgate dev` and `ipgate control-plane` listen.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:7151";

/// How to reach the admin API and how to print its answers.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Admin API")]
pub struct AdminArgs {
    /// Control plane address (`http://host:port`; `host:port` means plain HTTP/2).
    #[arg(long, env = "IPGATE_ADDR", default_value = DEFAULT_ADDR, global = true)]
    pub addr: String,
    /// Admin token (`ipg_admin_…`); prefer the variable, as flags show in `ps`. `ipgate dev` keeps one in `.ipgate/admin-token`.
    #[arg(long, env = "IPGATE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the response as canonical proto3 JSON (what grpcurl prints) instead of tables.
    #[arg(long, env = "IPGATE_JSON", default_value_t = false, global = true)]
    pub json: bool,
    /// On a write: return once every enforcer has the change in force, waiting at most this long (`5s`, at most `60s`). The write is committed either way; the command fails, naming the enforcers that lag, when the time runs out.
    #[arg(long, value_parser = time::parse_duration, global = true)]
    pub wait: Option<std::time::Duration>,
}

/// A group of subcommands with the shared admin flags.
#[derive(Args, Debug)]
pub struct Group<C: Subcommand> {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: C,
}

/// Every admin subcommand, by resource.
#[derive(Debug)]
pub enum AdminCommand {
    Tenants(Group<tenants::Command>),
    Tokens(Group<tokens::Command>),
    Apis(Group<apis::Command>),
    Keys(Group<keys::Command>),
    TestAccess(access::TestAccessArgs),
    Logs(Group<logs::Command>),
    Audit(Group<audit::Command>),
    Revision(Group<revision::Command>),
    Enforcers(enforcers::EnforcersArgs),
}

/// Re-exported argument types for `main.rs`'s command enum.
pub mod cmd {
    pub use super::{
        access::TestAccessArgs, apis::Command as Apis, audit::Command as Audit,
        enforcers::EnforcersArgs, keys::Command as Keys, logs::Command as Logs,
        revision::Command as Revision, tenants::Command as Tenants, tokens::Command as Tokens,
    };
}

/// Connects, runs one admin subcommand and prints its result.
pub async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Tenants(g) => {
            with_client(&g.admin, |c, o| tenants::run(c, o, g.command)).await
        }
        AdminCommand::Tokens(g) => with_client(&g.admin, |c, o| tokens::run(c, o, g.command)).await,
        AdminCommand::Apis(g) => with_client(&g.admin, |c, o| apis::run(c, o, g.command)).await,
        AdminCommand::Keys(g) => with_client(&g.admin, |c, o| keys::run(c, o, g.command)).await,
        AdminCommand::TestAccess(a) => {
            let admin = a.admin.clone();
            with_client(&admin, |c, o| access::run(c, o, a)).await
        }
        AdminCommand::Logs(g) => with_client(&g.admin, |c, o| logs::run(c, o, g.command)).await,
        AdminCommand::Audit(g) => with_client(&g.admin, |c, o| audit::run(c, o, g.command)).await,
        AdminCommand::Revision(g) => {
            with_client(&g.admin, |c, o| revision::run(c, o, g.command)).await
        }
        AdminCommand::Enforcers(a) => {
            let admin = a.admin.clone();
            with_client(&admin, |c, o| enforcers::run(c, o, a)).await
        }
    }
}

async fn with_client<F, Fut>(args: &AdminArgs, f: F) -> anyhow::Result<()>
where
    F: FnOnce(Admin, Output) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let client = client::connect(args).await?;
    let addr = client::normalize_addr(&args.addr);
    f(client, Output::new(args.json, args.wait))
        .await
        .map_err(|e| errors::attach_addr(e, &addr))
}
