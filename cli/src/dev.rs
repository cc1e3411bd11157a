//! `ipgate dev`: everything on one machine, like `vault server -dev`.
//!
//! A control plane on SQLite under `./.ipgate/`, a demo upstream, and one
//! enforcer whose proxy serves the `demo` API in front of it. The dev tokens
//! are kept in `./.ipgate/` too, so every run prints the same ones and the
//! walkthrough's commands keep working across restarts.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::Context;
use clap::Args;
use ipgate_control_plane::tokens::{ADMIN_TOKEN_PREFIX, ENFORCER_TOKEN_PREFIX, generate_token};
use ipgate_shared::proto::admin::v1::{CreateApiRequest, admin_service_client::AdminServiceClient};
use tonic::{Code, metadata::MetadataValue, transport::Channel};

use crate::demo_upstream;

/// Flags of `ipgate dev`.
#[derive(Args, Debug)]
pub struct DevArgs {
    /// Directory for the SQLite database and the dev tokens.
    #[arg(long, env = "IPGATE_DEV_DIR", default_value = ".ipgate")]
    dir: PathBuf,
    /// Control plane gRPC address (admin API, sync).
    #[arg(long, env = "IPGATE_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Enforcer gRPC address (check door).
    #[arg(long, env = "IPGATE_GRPC_LISTEN", default_value = "127.0.0.1:50061")]
    grpc_listen: SocketAddr,
    /// Enforcer HTTP proxy address.
    #[arg(long, env = "IPGATE_PROXY_LISTEN", default_value = "127.0.0.1:8080")]
    proxy_listen: SocketAddr,
    /// Demo upstream address (what the proxy forwards allowed requests to).
    #[arg(
        long,
        env = "IPGATE_DEMO_UPSTREAM_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    upstream_listen: SocketAddr,
    /// Slug of the API the proxy serves.
    #[arg(long, default_value = "demo")]
    api: String,
}

/// The dev tokens, kept in `<dir>/admin-token` and `<dir>/enforcer-token`.
struct DevTokens {
    admin: String,
    enforcer: String,
}

impl DevTokens {
    fn load_or_create(dir: &Path) -> anyhow::Result<DevTokens> {
        Ok(DevTokens {
            admin: read_or_write(&dir.join("admin-token"), || {
                generate_token(ADMIN_TOKEN_PREFIX)
            })?,
            enforcer: read_or_write(&dir.join("enforcer-token"), || {
                generate_token(ENFORCER_TOKEN_PREFIX)
            })?,
        })
    }
}

fn read_or_write(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let token = existing.trim().to_owned();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let token = make();
    write_private(path, &format!("{token}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

/// Writes a file only its owner can read: it holds a token.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

/// Runs everything until Ctrl-C.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let tokens = DevTokens::load_or_create(&args.dir)?;

    let mut cp_config = ipgate_control_plane::Config::with_database(format!(
        "sqlite://{}",
        args.dir.join("ipgate.db").display()
    ));
    cp_config.listen = args.listen;
    cp_config.bootstrap_token = Some(tokens.admin.clone());
    cp_config.bootstrap_enforcer_token = Some(tokens.enforcer.clone());
    let control_plane = ipgate_control_plane::start(cp_config).await?;

    // Every listener is bound before the first outgoing connection, so no
    // ephemeral port of ours can take one of the fixed addresses.
    let upstream = demo_upstream::start(args.upstream_listen).await?;

    let enforcer = ipgate_enforcer::start(ipgate_enforcer::Config {
        control_plane: vec![format!("http://{}", control_plane.addr).parse()?],
        token: tokens.enforcer.parse()?,
        id: "dev-enforcer".parse()?,
        grpc_listen: args.grpc_listen,
        proxy_listen: args.proxy_listen,
        upstream: Some(format!("http://{upstream}").parse()?),
        api: Some(args.api.parse()?),
        fail_open_until_synced: false,
        reconnect_min_ms: 100,
        reconnect_max_ms: 2_000,
        event_queue_capacity: 50_000,
    })
    .await?;
    let proxy = enforcer
        .proxy_addr
        .context("the dev enforcer has no proxy")?;
    create_demo_api(control_plane.addr, &tokens.admin, &args.api).await?;

    println!(
        "{}",
        banner(
            &args,
            &tokens,
            control_plane.addr,
            enforcer.grpc_addr,
            proxy,
            upstream
        )
    );

    crate::shutdown_signal().await?;
    enforcer.shutdown().await?;
    control_plane.shutdown().await?;
    Ok(())
}

/// Creates the API the dev proxy serves, unless it exists.
async fn create_demo_api(addr: SocketAddr, token: &str, slug: &str) -> anyhow::Result<()> {
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let bearer: MetadataValue<_> = format!("Bearer {token}").parse()?;
    let mut admin =
        AdminServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", bearer.clone());
            Ok(req)
        });
    let created = admin
        .create_api(CreateApiRequest {
            slug: slug.to_owned(),
            name: "Demo API (ipgate dev)".to_owned(),
            routes: vec![],
            validate_only: false,
        })
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(status) if status.code() == Code::AlreadyExists => Ok(()),
        Err(status) => Err(anyhow::anyhow!(
            "cannot create the demo API: {}",
            status.message()
        )),
    }
}

fn banner(
    args: &DevArgs,
    tokens: &DevTokens,
    control_plane: SocketAddr,
    check: SocketAddr,
    proxy: SocketAddr,
    upstream: SocketAddr,
) -> String {
    let dir = args.dir.display();
    let api = &args.api;
    format!(
        r#"
ipgate dev is running. State and tokens are in {dir}/.

  control plane (admin API, sync)  {control_plane}
  enforcer check door (gRPC)       {check}
  enforcer proxy for API "{api}"    http://{proxy}  ->  demo upstream http://{upstream}

  admin token: {admin}

Try it (README.md walks through more):

  export IPGATE_TOKEN=$(cat {dir}/admin-token)
  grpcurl -plaintext {control_plane} list
  grpcurl -plaintext -H "authorization: Bearer $IPGATE_TOKEN" -d '{{"api":"{api}","name":"my first key"}}' \
    {control_plane} ipgate.admin.v1.AdminService/CreateApiKey
  curl -i -H "X-API-Key: <the secret from above>" http://{proxy}/hello

Or with the ipgate CLI (README.md, "The ipgate CLI"):
{addr_export}
  ipgate apis list
  ipgate keys create --api {api} --name "my first key"

Press Ctrl-C to stop.
"#,
        admin = tokens.admin,
        addr_export = addr_export(control_plane),
    )
}

/// The line pointing the CLI at a control plane off its default address.
fn addr_export(control_plane: SocketAddr) -> String {
    let addr = format!("http://{control_plane}");
    if addr == crate::admin::DEFAULT_ADDR {
        String::new()
    } else {
        format!("\n  export IPGATE_ADDR={addr}")
    }
}

/// What a control plane started without `ipgate dev` prints when it made
/// the first tokens itself.
pub fn bootstrap_notice(tokens: &ipgate_control_plane::BootstrapTokens) -> String {
    format!(
        "First start: made the bootstrap tokens below. They are stored only as hashes and shown only now.\n  owner admin token: {}\n  enforcer token:    {}",
        tokens.owner, tokens.enforcer
    )
}
