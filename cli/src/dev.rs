//! `ipgate dev`: everything on one machine, like `vault server -dev`.
//!
//! A control plane on SQLite under `./.ipgate/`, a demo upstream, and one
//! enforcer with every door open: its proxy serves the `demo` API in front
//! of the upstream; Check and Envoy's ext_authz share its gRPC port; the
//! auth endpoint for nginx and Traefik has a port of its own. The dev tokens
//! are kept in `./.ipgate/` too, so every run prints the same ones and the
//! walkthrough's commands keep working across restarts.

use std::{
    fs::File,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::{Path, PathBuf},
};

use anyhow::Context;
use clap::Args;
use ipgate_control_plane::{
    config::{DEFAULT_LISTEN, RuleArgs, TimingArgs},
    tokens::{ADMIN_TOKEN_PREFIX, ENFORCER_TOKEN_PREFIX, generate_token},
};
use ipgate_enforcer::{
    client_ip::TrustedNet,
    config::{
        CheckToken, ClientIpConfig, DEFAULT_AUTH_LISTEN, DEFAULT_GRPC_LISTEN, DEFAULT_PROXY_LISTEN,
    },
};
use ipgate_shared::proto::admin::v1::{CreateApiRequest, admin_service_client::AdminServiceClient};
use tonic::{Code, metadata::MetadataValue, transport::Channel};

use crate::demo_upstream;

/// Default `--upstream-listen`: beside the proxy, below 32768 like every
/// default port (out of the range Linux picks outgoing connections' ports from).
pub const DEFAULT_UPSTREAM_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7181));

/// Name of the lock file in the state folder.
const LOCK_FILE: &str = "dev.lock";

/// Flags of `ipgate dev`.
#[derive(Args, Debug)]
pub struct DevArgs {
    /// Directory for the SQLite database, the dev tokens and the lock that keeps a second `ipgate dev` out.
    #[arg(long, env = "IPGATE_DEV_DIR", default_value = ".ipgate")]
    dir: PathBuf,
    /// Control plane gRPC address (admin API, sync); port 0 picks a free port.
    #[arg(long, env = "IPGATE_LISTEN", default_value_t = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Enforcer gRPC address (check door and Envoy's ext_authz); port 0 picks a free port.
    #[arg(long, env = "IPGATE_GRPC_LISTEN", default_value = DEFAULT_GRPC_LISTEN)]
    grpc_listen: SocketAddr,
    /// Door token Check and ext_authz callers must send as `authorization: Bearer <token>`; needed when --grpc-listen is beyond loopback.
    #[arg(long, env = "IPGATE_CHECK_TOKEN", hide_env_values = true)]
    check_token: Option<CheckToken>,
    /// Enforcer HTTP proxy address; port 0 picks a free port.
    #[arg(long, env = "IPGATE_PROXY_LISTEN", default_value = DEFAULT_PROXY_LISTEN)]
    proxy_listen: SocketAddr,
    /// Enforcer HTTP auth endpoint address (nginx auth_request, Traefik ForwardAuth); port 0 picks a free port.
    #[arg(long, env = "IPGATE_AUTH_LISTEN", default_value = DEFAULT_AUTH_LISTEN)]
    auth_listen: SocketAddr,
    /// Demo upstream address (what the proxy forwards allowed requests to); port 0 picks a free port.
    #[arg(long, env = "IPGATE_DEMO_UPSTREAM_LISTEN", default_value_t = DEFAULT_UPSTREAM_LISTEN)]
    upstream_listen: SocketAddr,
    /// Proxies whose X-Forwarded-For and Forwarded the enforcer believes, comma-separated (e.g. 127.0.0.1 for an nginx or Traefik on this machine asking the auth endpoint); none by default, so every request is decided on its peer.
    #[arg(
        long,
        env = "IPGATE_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    trusted_proxies: Vec<TrustedNet>,
    /// Slug of the API the proxy serves.
    #[arg(long, env = "IPGATE_API", default_value = "demo")]
    api: String,
    #[command(flatten)]
    rules: RuleArgs,
    #[command(flatten)]
    timing: TimingArgs,
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
    // First of all: a second `ipgate dev` on the same folder would share the
    // database and want the same addresses.
    let lock = StateLock::acquire(&args.dir)?;
    let tokens = DevTokens::load_or_create(&args.dir)?;

    let mut cp_config = ipgate_control_plane::Config::with_database(format!(
        "sqlite://{}",
        args.dir.join("ipgate.db").display()
    ));
    cp_config.listen = args.listen;
    cp_config.bootstrap_token = Some(tokens.admin.clone());
    cp_config.bootstrap_enforcer_token = Some(tokens.enforcer.clone());
    args.rules.clone().apply(&mut cp_config);
    args.timing.clone().apply(&mut cp_config);
    let control_plane = match ipgate_control_plane::start(cp_config).await {
        Ok(running) => running,
        // Only a listener's error is about the address; a database made by
        // another build, say, says itself what to do.
        Err(e @ ipgate_control_plane::Error::Bind { .. }) => {
            return Err(anyhow::Error::new(e).context(busy_hint(
                "the control plane",
                "--listen",
                args.listen,
            )));
        }
        Err(e) => return Err(anyhow::Error::new(e).context("cannot start the control plane")),
    };

    // Every listener is bound before the first outgoing connection, so no
    // ephemeral port of ours can take one of the fixed addresses.
    let upstream = demo_upstream::start(args.upstream_listen)
        .await
        .with_context(|| {
            busy_hint(
                "the demo upstream",
                "--upstream-listen",
                args.upstream_listen,
            )
        })?;

    let enforcer = ipgate_enforcer::start(ipgate_enforcer::Config {
        control_plane: vec![format!("http://{}", control_plane.addr).parse()?],
        token: tokens.enforcer.parse()?,
        id: "dev-enforcer".parse()?,
        grpc_listen: args.grpc_listen,
        check_token: args.check_token.clone(),
        proxy_listen: args.proxy_listen,
        upstream: Some(format!("http://{upstream}").parse()?),
        api: Some(args.api.parse()?),
        api_for_host: vec![],
        auth_listen: Some(args.auth_listen),
        auth_proxy_protocol: false,
        fail_open_until_synced: false,
        reconnect_min_ms: 100,
        reconnect_max_ms: 2_000,
        event_queue_capacity: 1_000_000,
        snapshot_cache: None,
        client_ip: ClientIpConfig {
            trusted_proxies: args.trusted_proxies.clone(),
            ..Default::default()
        },
        hide_credentials: true,
        drain_timeout: ipgate_enforcer::config::DEFAULT_DRAIN_TIMEOUT,
        proxy_limits: Default::default(),
        upstream_options: Default::default(),
    })
    .await
    .map_err(|e| match e {
        // Only a listener's error is about the addresses.
        ipgate_enforcer::Error::Bind { .. } => anyhow::Error::new(e).context(format!(
            "cannot start the enforcer on {} (--grpc-listen), {} (--proxy-listen) and {} \
             (--auth-listen); if another program holds one, choose other addresses (port 0 \
             picks a free one)",
            args.grpc_listen, args.proxy_listen, args.auth_listen
        )),
        other => anyhow::Error::new(other).context("cannot start the enforcer"),
    })?;
    let proxy = enforcer
        .proxy_addr
        .context("the dev enforcer has no proxy")?;
    let auth = enforcer
        .auth_addr
        .context("the dev enforcer has no auth endpoint")?;
    create_demo_api(control_plane.addr, &tokens.admin, &args.api).await?;

    let addrs = Addresses {
        control_plane: control_plane.addr,
        check: enforcer.grpc_addr,
        proxy,
        auth,
        upstream,
    };
    // Only a hint for a second `ipgate dev`: the lock itself is what counts.
    if let Err(e) = lock.record(Some(&addrs)) {
        tracing::warn!(error = %e, path = %lock.path.display(), "cannot record the addresses in the lock file");
    }
    println!("{}", banner(&args, &tokens, &addrs));

    crate::shutdown_signal().await?;
    enforcer.shutdown().await?;
    control_plane.shutdown().await?;
    drop(lock);
    Ok(())
}

/// What to say when a listener could not be bound.
fn busy_hint(what: &str, flag: &str, addr: SocketAddr) -> String {
    format!(
        "cannot start {what} on {addr}; if another program holds it, choose another address \
         with {flag} (port 0 picks a free one)"
    )
}

/// Where this `ipgate dev` listens.
struct Addresses {
    control_plane: SocketAddr,
    /// The gRPC port: the check door and ext_authz.
    check: SocketAddr,
    proxy: SocketAddr,
    auth: SocketAddr,
    upstream: SocketAddr,
}

/// An exclusive lock on `<dir>/dev.lock`, held while `ipgate dev` runs. The
/// system releases it when the process ends, however it ends, so a crashed
/// run never blocks the next. The file records the pid and the addresses,
/// for the message a second `ipgate dev` prints.
struct StateLock {
    file: File,
    path: PathBuf,
}

impl StateLock {
    fn acquire(dir: &Path) -> anyhow::Result<StateLock> {
        let path = dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                anyhow::bail!(already_running(dir, &holder));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        let lock = StateLock { file, path };
        lock.record(None)
            .with_context(|| format!("cannot write {}", lock.path.display()))?;
        Ok(lock)
    }

    /// Writes this process's id and, once known, its addresses.
    fn record(&self, addrs: Option<&Addresses>) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut text = format!("pid={}\n", std::process::id());
        if let Some(a) = addrs {
            text.push_str(&format!(
                "control_plane={}\ncheck={}\nproxy={}\nauth={}\nupstream={}\n",
                a.control_plane, a.check, a.proxy, a.auth, a.upstream
            ));
        }
        self.file.set_len(0)?;
        self.file.write_all_at(text.as_bytes(), 0)
    }
}

/// The refusal a second `ipgate dev` on the same folder prints, from what
/// the first one recorded in the lock file.
fn already_running(dir: &Path, recorded: &str) -> String {
    let field = |name: &str| {
        recorded.lines().find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        })
    };
    let dir = dir.display();
    let pid = field("pid");
    let mut text =
        format!("another `ipgate dev` seems to be running already with the state folder {dir}");
    match pid {
        Some(pid) => text.push_str(&format!(" (pid {pid})")),
        None => text.push_str(" (its pid was not recorded)"),
    }
    match (
        field("control_plane"),
        field("check"),
        field("proxy"),
        field("upstream"),
    ) {
        (Some(cp), Some(check), Some(proxy), Some(upstream)) => {
            text.push_str(&format!(
                ".\n  control plane (admin API, sync)  {cp}\n  enforcer check door (gRPC)       {check}\n  \
                 enforcer proxy                   http://{proxy}\n"
            ));
            // Not recorded by a dev from before the auth endpoint.
            if let Some(auth) = field("auth") {
                text.push_str(&format!(
                    "  enforcer auth endpoint           http://{auth}\n"
                ));
            }
            text.push_str(&format!(
                "  demo upstream                    http://{upstream}\n"
            ));
        }
        _ => text.push_str(", still starting.\n"),
    }
    let stop = match pid {
        Some(pid) => format!("Ctrl-C in its terminal, or `kill {pid}`"),
        None => "Ctrl-C in its terminal".to_owned(),
    };
    text.push_str(&format!(
        "Use that one, stop it ({stop}), or start this one with a state folder of its own (--dir) \
         and other addresses."
    ));
    text
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
            wait_for_propagation: None,
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

fn banner(args: &DevArgs, tokens: &DevTokens, addrs: &Addresses) -> String {
    let dir = args.dir.display();
    let api = &args.api;
    let Addresses {
        control_plane,
        check,
        proxy,
        auth,
        upstream,
    } = addrs;
    format!(
        r#"
ipgate dev is running. State and tokens are in {dir}/.

  control plane (admin API, sync)  {control_plane}
  enforcer check door (gRPC)       {check}{check_note}
  enforcer ext_authz (Envoy, gRPC) {check}  envoy.service.auth.v3.Authorization{check_note}
  enforcer proxy for API "{api}"    http://{proxy}  ->  demo upstream http://{upstream}
  enforcer auth endpoint           http://{auth}/v1/check/{api}  (nginx auth_request, Traefik ForwardAuth)

  admin token: {admin}

Try it (README.md walks through more):

  export IPGATE_TOKEN=$(cat {dir}/admin-token)
  grpcurl -plaintext {control_plane} list
  grpcurl -plaintext -H "authorization: Bearer $IPGATE_TOKEN" -d '{{"api":"{api}","name":"my first key"}}' \
    {control_plane} ipgate.admin.v1.AdminService/CreateApiKey
  curl -i -H "X-API-Key: <the secret from above>" http://{proxy}/hello
  curl -i -H "X-API-Key: <the secret from above>" -H "X-Original-Method: GET" -H "X-Original-URI: /hello" \
    http://{auth}/v1/check/{api}

Or with the ipgate CLI (README.md, "The ipgate CLI", puts it on your PATH):
{addr_export}
  ipgate apis list
  ipgate keys create --api {api} --name "my first key"

Press Ctrl-C to stop.
"#,
        admin = tokens.admin,
        addr_export = addr_export(*control_plane),
        // The token itself is the operator's; the banner only says it is asked for.
        check_note = if args.check_token.is_some() {
            "  (asks for --check-token)"
        } else {
            ""
        },
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        dev: DevArgs,
    }

    fn parse(args: &[&str]) -> DevArgs {
        Cli::try_parse_from(std::iter::once("dev").chain(args.iter().copied()))
            .expect("dev flags parse")
            .dev
    }

    /// Linux gives outgoing connections ports from 32768 up; a default in
    /// that range can be taken by one just when `ipgate dev` binds it.
    #[test]
    fn default_ports_are_below_the_ephemeral_range_and_agree() {
        let dev = parse(&[]);
        for addr in [
            dev.listen,
            dev.grpc_listen,
            dev.proxy_listen,
            dev.auth_listen,
            dev.upstream_listen,
        ] {
            assert!(addr.port() < 32768, "{addr}");
            assert!(addr.ip().is_loopback(), "{addr}");
        }
        assert_eq!(dev.listen.to_string(), "127.0.0.1:7151");
        assert_eq!(dev.grpc_listen.to_string(), "127.0.0.1:7161");
        assert_eq!(dev.proxy_listen.to_string(), "127.0.0.1:7180");
        assert_eq!(dev.upstream_listen.to_string(), "127.0.0.1:7181");
        assert_eq!(dev.auth_listen.to_string(), "127.0.0.1:7190");
        // The CLI and the enforcer look for the control plane where it listens.
        let listen = format!("http://{DEFAULT_LISTEN}");
        assert_eq!(crate::admin::DEFAULT_ADDR, listen);
        assert_eq!(ipgate_enforcer::config::DEFAULT_CONTROL_PLANE, listen);
        assert_eq!(addr_export(DEFAULT_LISTEN), "", "no IPGATE_ADDR needed");
    }

    #[test]
    fn server_flags_reach_dev() {
        let dev = parse(&[
            "--allow-private-ranges",
            "--max-key-entries",
            "2",
            "--max-api-entries",
            "3",
            "--expiry-sweep-interval",
            "200ms",
            "--usage-retention-days",
            "4",
            "--heartbeat-interval",
            "1s",
            "--change-log-retention",
            "5",
        ]);
        let mut config = ipgate_control_plane::Config::with_database("sqlite://x.db");
        dev.rules.apply(&mut config);
        dev.timing.apply(&mut config);
        assert!(config.allow_private_ranges);
        assert_eq!(config.max_key_entries, 2);
        assert_eq!(config.max_api_entries, 3);
        assert_eq!(
            config.expiry_sweep_interval,
            std::time::Duration::from_millis(200)
        );
        assert_eq!(config.usage_retention_days, 4);
        assert_eq!(config.heartbeat_interval, std::time::Duration::from_secs(1));
        assert_eq!(config.change_log_retention, 5);
    }

    #[test]
    fn the_banner_names_every_door() {
        let dev = parse(&[]);
        let tokens = DevTokens {
            admin: "ipg_admin_x".into(),
            enforcer: "ipg_enf_x".into(),
        };
        let addrs = Addresses {
            control_plane: "127.0.0.1:1001".parse().unwrap(),
            check: "127.0.0.1:1002".parse().unwrap(),
            proxy: "127.0.0.1:1003".parse().unwrap(),
            auth: "127.0.0.1:1004".parse().unwrap(),
            upstream: "127.0.0.1:1005".parse().unwrap(),
        };
        let text = banner(&dev, &tokens, &addrs);
        for shown in [
            "control plane (admin API, sync)  127.0.0.1:1001",
            "enforcer check door (gRPC)       127.0.0.1:1002",
            "enforcer ext_authz (Envoy, gRPC) 127.0.0.1:1002  envoy.service.auth.v3.Authorization",
            "http://127.0.0.1:1003  ->  demo upstream http://127.0.0.1:1005",
            "enforcer auth endpoint           http://127.0.0.1:1004/v1/check/demo",
            "nginx auth_request, Traefik ForwardAuth",
        ] {
            assert!(text.contains(shown), "{shown:?} missing from {text}");
        }
        assert!(
            !text.contains("ipg_enf_x"),
            "the enforcer token is not shown"
        );
    }

    #[test]
    fn a_second_dev_names_the_first() {
        let text = already_running(
            Path::new(".ipgate"),
            "pid=42\ncontrol_plane=127.0.0.1:7151\ncheck=127.0.0.1:7161\nproxy=127.0.0.1:7180\nauth=127.0.0.1:7190\nupstream=127.0.0.1:7181\n",
        );
        for shown in [
            "already",
            "state folder .ipgate",
            "pid 42",
            "127.0.0.1:7151",
            "127.0.0.1:7161",
            "http://127.0.0.1:7180",
            "http://127.0.0.1:7190",
            "kill 42",
            "--dir",
        ] {
            assert!(text.contains(shown), "{shown:?} missing from {text}");
        }
        let starting = already_running(Path::new("s"), "pid=7\n");
        assert!(starting.contains("(pid 7), still starting"), "{starting}");
        let unknown = already_running(Path::new("s"), "");
        assert!(unknown.contains("not recorded"), "{unknown}");
    }
}
