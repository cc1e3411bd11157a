//! The enforcer's configuration: flags with matching `IPGATE_…` variables.

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

use http::{HeaderName, Uri};
use ipgate_shared::{ApiSlug, EnforcerId};

use crate::{
    client_ip::{MAX_HOPS, TrustedNet},
    doors::{
        limits::{ProxyLimits, parse_timeout},
        request::HostApi,
        upstream::UpstreamOptions,
    },
};

// Default ports sit below 32768, out of Linux's range for outgoing
// connections' ports (32768–60999), so no client of ours or of anyone else
// can be holding one when the enforcer starts.

/// Default `--control-plane`: where `ipgate control-plane` listens by default.
pub const DEFAULT_CONTROL_PLANE: &str = "http://127.0.0.1:7151";
/// Default `--grpc-listen`.
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:7161";
/// Default `--proxy-listen`.
pub const DEFAULT_PROXY_LISTEN: &str = "127.0.0.1:7180";
/// Where `ipgate dev` puts the auth endpoint (`ipgate enforcer` starts it
/// only when given `--auth-listen`).
pub const DEFAULT_AUTH_LISTEN: &str = "127.0.0.1:7190";
/// Default `--drain-timeout`.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How an enforcer is started (`ipgate enforcer --help`).
#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// Control-plane gRPC addresses, comma-separated; the enforcer rotates
    /// over them when one is unreachable.
    #[arg(
        long = "control-plane",
        env = "IPGATE_CONTROL_PLANE",
        value_delimiter = ',',
        default_value = DEFAULT_CONTROL_PLANE
    )]
    pub control_plane: Vec<Uri>,

    /// Enforcer token (`ipg_enf_…`) presented to the control plane.
    #[arg(long, env = "IPGATE_ENFORCER_TOKEN", hide_env_values = true)]
    pub token: Token,

    /// Name this enforcer reports itself by (default: the host name).
    #[arg(long, env = "IPGATE_ENFORCER_ID", default_value_t = default_enforcer_id())]
    pub id: EnforcerId,

    /// Address of the gRPC doors: ipgate's Check and Envoy's ext_authz
    /// (envoy.service.auth.v3.Authorization), with reflection and health.
    #[arg(long, env = "IPGATE_GRPC_LISTEN", default_value = DEFAULT_GRPC_LISTEN)]
    pub grpc_listen: SocketAddr,

    /// Door token of the gRPC doors: callers of Check and of ext_authz
    /// (Envoy, through grpc_service.initial_metadata) must send
    /// `authorization: Bearer <token>`. Required when --grpc-listen is
    /// beyond loopback, since their callers name the client address; when
    /// set, required on loopback too. Health and reflection stay open.
    /// 16-256 printable ASCII characters, no spaces.
    #[arg(long, env = "IPGATE_CHECK_TOKEN", hide_env_values = true)]
    pub check_token: Option<CheckToken>,

    /// Address of the HTTP reverse proxy; used only with --upstream.
    #[arg(long, env = "IPGATE_PROXY_LISTEN", default_value = DEFAULT_PROXY_LISTEN)]
    pub proxy_listen: SocketAddr,

    /// Service behind the reverse proxy (`http://host:port` or
    /// `https://host:port`); turns the proxy on.
    #[arg(long, env = "IPGATE_UPSTREAM", requires = "api")]
    pub upstream: Option<Uri>,

    /// Slug of the API the reverse proxy serves; required with --upstream.
    #[arg(long, env = "IPGATE_API")]
    pub api: Option<ApiSlug>,

    /// For ext_authz requests whose route names no API (no `ipgate_api`
    /// context extension): the API by the host they were sent to,
    /// `HOST=SLUG` (`api.example.com=orders`; `HOST:PORT=SLUG` for one
    /// port only). Repeat the flag, or separate with commas.
    #[arg(
        long,
        env = "IPGATE_API_FOR_HOST",
        value_delimiter = ',',
        value_name = "HOST=SLUG"
    )]
    pub api_for_host: Vec<HostApi>,

    /// Keep the ipgate key from the upstream, at the proxy door and through
    /// ext_authz: the X-API-Key headers and the `Authorization: Bearer`
    /// headers it was read from are not forwarded (other Authorization
    /// schemes are). `--hide-credentials=false` passes them on, for an
    /// upstream that reads the key itself.
    #[arg(
        long,
        env = "IPGATE_HIDE_CREDENTIALS",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub hide_credentials: bool,

    /// Address of the HTTP auth endpoint for nginx `auth_request` and
    /// Traefik ForwardAuth (`/v1/check/{api}`); off unless given
    /// (`ipgate dev` listens on 127.0.0.1:7190). Its callers are proxies:
    /// list them in --trusted-proxies so that the client's address is read
    /// from their X-Forwarded-For.
    #[arg(long, env = "IPGATE_AUTH_LISTEN", value_name = "ADDR")]
    pub auth_listen: Option<SocketAddr>,

    /// Expect a PROXY protocol header (v1 or v2) at the start of every
    /// connection to the auth endpoint, as an L4 balancer in front of it
    /// sends; its source address counts as the peer. Connections without
    /// one are closed.
    #[arg(
        long,
        env = "IPGATE_AUTH_PROXY_PROTOCOL",
        default_value_t = false,
        requires = "auth_listen"
    )]
    pub auth_proxy_protocol: bool,

    /// How long shutdown (SIGTERM, Ctrl-C) waits for requests in flight at
    /// each door after it stops accepting (`500ms`, `10s`, or plain
    /// seconds); whatever is still running then is cut off.
    #[arg(
        long,
        env = "IPGATE_DRAIN_TIMEOUT",
        default_value = "10s",
        value_parser = parse_timeout
    )]
    pub drain_timeout: Duration,

    /// Allow every request until the first snapshot arrives, instead of
    /// answering 503 ENFORCER_NOT_READY.
    #[arg(long, env = "IPGATE_FAIL_OPEN_UNTIL_SYNCED", default_value_t = false)]
    pub fail_open_until_synced: bool,

    /// First wait before reconnecting to the control plane, in milliseconds.
    #[arg(long, env = "IPGATE_RECONNECT_MIN_MS", default_value_t = 100)]
    pub reconnect_min_ms: u64,

    /// Longest wait between reconnection attempts, in milliseconds.
    #[arg(long, env = "IPGATE_RECONNECT_MAX_MS", default_value_t = 5_000)]
    pub reconnect_max_ms: u64,

    /// Usage events held while the control plane is away, in all. Allowed
    /// requests may fill nine tenths of it; the last tenth is kept for
    /// blocked ones, so a flood of allowed traffic never costs the record of
    /// a block. Events that do not fit are dropped and counted; the usage
    /// log shows them as a gap.
    #[arg(long, env = "IPGATE_EVENT_QUEUE_CAPACITY", default_value_t = 1_000_000)]
    pub event_queue_capacity: usize,

    /// A file to keep the index in force in, so that after a restart the
    /// enforcer serves its last state at once (stale until it reaches the
    /// control plane). Written within a second of each change; a damaged
    /// file is ignored with a warning. Costs a second copy of the configs
    /// in memory.
    #[arg(long, env = "IPGATE_SNAPSHOT_CACHE", value_name = "PATH")]
    pub snapshot_cache: Option<std::path::PathBuf>,

    /// Which address each HTTP request is decided on (the proxy, ext_authz
    /// and the auth endpoint).
    #[command(flatten)]
    pub client_ip: ClientIpConfig,

    /// How much of a request's head the HTTP proxy and the auth endpoint
    /// read, and for how long.
    #[command(flatten)]
    pub proxy_limits: ProxyLimits,

    /// How the HTTP proxy talks to its upstream.
    #[command(flatten)]
    pub upstream_options: UpstreamOptions,
}

/// Which address the HTTP doors decide a request on, behind other proxies
/// or an L4 balancer (docs/client-ip.md). Without these flags it is the
/// peer — the TCP peer, or for ext_authz the source address Envoy reports —
/// and forwarding headers are ignored.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "Client address (HTTP doors)")]
pub struct ClientIpConfig {
    /// Proxies whose forwarding headers are believed: comma-separated
    /// addresses or networks (`10.0.0.0/8,2001:db8::7`). A request from one
    /// is decided on the first address, from the right of X-Forwarded-For
    /// or Forwarded, that is not in this list; from anyone else, those
    /// headers are ignored.
    #[arg(
        long,
        env = "IPGATE_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub trusted_proxies: Vec<TrustedNet>,

    /// Instead of --trusted-proxies: the number of proxies in front, each
    /// appending its peer to X-Forwarded-For; the request is decided on the
    /// Nth address from the right (1 = the right-most). Safe only when
    /// nothing but those proxies can reach the enforcer.
    #[arg(
        long,
        env = "IPGATE_TRUSTED_HOPS",
        value_name = "N",
        value_parser = clap::value_parser!(u8).range(1..=i64::from(MAX_HOPS))
    )]
    pub trusted_hops: Option<u8>,

    /// A header in which every trusted proxy puts the client's address
    /// (e.g. X-Real-IP), read instead of X-Forwarded-For and Forwarded, and
    /// only from peers in --trusted-proxies.
    #[arg(long, env = "IPGATE_CLIENT_IP_HEADER", value_name = "NAME")]
    pub client_ip_header: Option<HeaderName>,

    /// Expect a PROXY protocol header (v1 or v2) at the start of every
    /// connection to the HTTP proxy, as an L4 balancer sends it; its source
    /// address counts as the peer. Connections without one are closed.
    #[arg(
        long,
        env = "IPGATE_PROXY_PROTOCOL",
        default_value_t = false,
        requires = "upstream"
    )]
    pub proxy_protocol: bool,
}

impl Config {
    /// The reconnect backoff bounds, with the ceiling never below the floor.
    pub fn reconnect_bounds(&self) -> (Duration, Duration) {
        let min = Duration::from_millis(self.reconnect_min_ms.max(1));
        let max = Duration::from_millis(self.reconnect_max_ms).max(min);
        (min, max)
    }
}

/// The host name when it is a valid id, else `enforcer-` and a random suffix.
pub fn default_enforcer_id() -> EnforcerId {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok());
    host.and_then(|h| h.trim().parse().ok()).unwrap_or_else(|| {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        // A 32-character hex string always makes a valid id.
        format!("enforcer-{}", &suffix[..12])
            .parse()
            .unwrap_or_else(|_| unreachable!("hex ids are printable ASCII"))
    })
}

/// A secret presented to the control plane; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The token as sent in `authorization: Bearer …`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Why a string is not usable as a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the enforcer token must be non-empty printable ASCII without spaces")]
pub struct InvalidToken;

impl FromStr for Token {
    type Err = InvalidToken;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // It travels in a gRPC header, so it must be a valid header value.
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(Token(s.to_owned()))
        } else {
            Err(InvalidToken)
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

/// The check door's token; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct CheckToken(String);

impl CheckToken {
    /// The token callers send in `authorization: Bearer …`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Why a string is not usable as a check token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the check token must be 16-256 printable ASCII characters without spaces \
     (long enough not to be guessed; e.g. `openssl rand -hex 32`)"
)]
pub struct InvalidCheckToken;

impl FromStr for CheckToken {
    type Err = InvalidCheckToken;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Callers send it in a gRPC header, so it must be a valid header
        // value; a short one could be guessed.
        if (16..=256).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(CheckToken(s.to_owned()))
        } else {
            Err(InvalidCheckToken)
        }
    }
}

impl fmt::Debug for CheckToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CheckToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Cli::try_parse_from(std::iter::once("enforcer").chain(args.iter().copied()))
            .map(|c| c.config)
    }

    #[test]
    fn defaults_follow_the_architecture_map() {
        let c = parse(&["--token", "ipg_enf_x"]).unwrap();
        assert_eq!(
            c.control_plane,
            vec![Uri::from_static("http://127.0.0.1:7151")]
        );
        assert_eq!(c.grpc_listen.to_string(), "127.0.0.1:7161");
        assert_eq!(c.proxy_listen.to_string(), "127.0.0.1:7180");
        assert!(!c.fail_open_until_synced);
        assert_eq!(c.proxy_limits, ProxyLimits::default());
        assert_eq!(c.proxy_limits.max_header_bytes, 65_536);
        assert_eq!(c.proxy_limits.max_headers, 100);
        assert_eq!(c.proxy_limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.upstream_options, UpstreamOptions::default());
        assert_eq!(
            c.upstream_options.upstream_connect_timeout,
            Duration::from_secs(5)
        );
        assert_eq!(c.upstream_options.upstream_timeout, Duration::from_secs(60));
        assert!(c.hide_credentials);
        assert_eq!(c.drain_timeout, DEFAULT_DRAIN_TIMEOUT);
        assert_eq!(
            c.reconnect_bounds(),
            (Duration::from_millis(100), Duration::from_secs(5))
        );
        assert!(!format!("{c:?}").contains("ipg_enf_x"), "token printed");
    }

    #[test]
    fn addresses_are_comma_separated_and_upstream_needs_an_api() {
        let c = parse(&["--token", "t", "--control-plane", "http://a:1,http://b:2"]).unwrap();
        assert_eq!(c.control_plane.len(), 2);
        assert!(parse(&["--token", "t", "--upstream", "http://127.0.0.1:9"]).is_err());
        assert!(
            parse(&[
                "--token",
                "t",
                "--upstream",
                "http://127.0.0.1:9",
                "--api",
                "orders"
            ])
            .is_ok()
        );
        assert!(parse(&["--token", "has space"]).is_err());
    }

    #[test]
    fn client_address_flags() {
        use clap::CommandFactory;
        Cli::command().debug_assert();

        let c = parse(&["--token", "t"]).unwrap().client_ip;
        assert!(c.trusted_proxies.is_empty() && c.trusted_hops.is_none());
        assert!(c.client_ip_header.is_none() && !c.proxy_protocol);

        let c = parse(&[
            "--token",
            "t",
            "--trusted-proxies",
            "10.0.0.0/8, 2001:db8::7",
            "--client-ip-header",
            "X-Real-IP",
        ])
        .unwrap()
        .client_ip;
        let nets: Vec<String> = c.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["10.0.0.0/8", "2001:db8::7/128"]);
        assert_eq!(c.client_ip_header.unwrap(), "x-real-ip");

        let error = parse(&["--token", "t", "--trusted-proxies", "10.0.0.1/8"]).unwrap_err();
        assert!(error.to_string().contains("write 10.0.0.0/8"), "{error}");

        assert_eq!(
            parse(&["--token", "t", "--trusted-hops", "32"])
                .unwrap()
                .client_ip
                .trusted_hops,
            Some(32)
        );
        for refused in ["0", "33", "-1"] {
            assert!(
                parse(&["--token", "t", "--trusted-hops", refused]).is_err(),
                "{refused}"
            );
        }

        // The PROXY protocol is spoken on the HTTP proxy's listener only.
        assert!(parse(&["--token", "t", "--proxy-protocol"]).is_err());
        let c = parse(&[
            "--token",
            "t",
            "--proxy-protocol",
            "--upstream",
            "http://127.0.0.1:9",
            "--api",
            "orders",
        ])
        .unwrap();
        assert!(c.client_ip.proxy_protocol);
    }

    #[test]
    fn door_flags_default_off_and_parse() {
        let c = parse(&["--token", "t"]).unwrap();
        assert_eq!(c.auth_listen, None);
        assert!(!c.auth_proxy_protocol);
        // Keys stay behind unless asked (docs/door-proxy.md).
        assert!(c.hide_credentials);
        assert!(
            !parse(&["--token", "t", "--hide-credentials=false"])
                .unwrap()
                .hide_credentials
        );
        assert!(c.api_for_host.is_empty());
        assert_eq!(DEFAULT_AUTH_LISTEN, "127.0.0.1:7190");

        let c = parse(&[
            "--token",
            "t",
            "--auth-listen",
            "127.0.0.1:0",
            "--auth-proxy-protocol",
            "--hide-credentials",
            "--api-for-host",
            "a.example=orders,b.example:8443=payments",
            "--api-for-host",
            "c.example=orders",
        ])
        .unwrap();
        assert!(c.auth_listen.is_some() && c.auth_proxy_protocol && c.hide_credentials);
        let hosts: Vec<&str> = c.api_for_host.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(hosts, ["a.example", "b.example:8443", "c.example"]);

        // The PROXY protocol on the auth endpoint needs the endpoint.
        assert!(parse(&["--token", "t", "--auth-proxy-protocol"]).is_err());
        assert!(parse(&["--token", "t", "--api-for-host", "no-equals"]).is_err());
    }

    #[test]
    fn check_tokens_are_long_printable_and_never_shown() {
        assert_eq!(parse(&["--token", "t"]).unwrap().check_token, None);
        let long = "door-token-0123456789";
        let c = parse(&["--token", "t", "--check-token", long]).unwrap();
        assert_eq!(c.check_token.as_ref().map(CheckToken::expose), Some(long));
        assert!(!format!("{c:?}").contains(long), "check token printed");
        for bad in ["short", "has a space in it!!", &"x".repeat(257)] {
            assert!(
                parse(&["--token", "t", "--check-token", bad]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn forwarding_flags() {
        use crate::doors::upstream::UpstreamProtocol;

        let proxy = [
            "--token",
            "t",
            "--upstream",
            "http://127.0.0.1:9",
            "--api",
            "orders",
        ];
        let with = |extra: &[&str]| {
            let mut args = proxy.to_vec();
            args.extend_from_slice(extra);
            parse(&args)
        };
        assert!(with(&["--hide-credentials"]).unwrap().hide_credentials);
        assert!(
            !with(&["--hide-credentials=false"])
                .unwrap()
                .hide_credentials
        );
        assert!(
            !with(&["--hide-credentials", "false"])
                .unwrap()
                .hide_credentials
        );

        for (value, protocol) in [
            ("auto", UpstreamProtocol::Auto),
            ("http1", UpstreamProtocol::Http1),
            ("http2", UpstreamProtocol::Http2),
            ("h2c", UpstreamProtocol::Http2),
        ] {
            let c = with(&["--upstream-protocol", value]).unwrap();
            assert_eq!(c.upstream_options.upstream_protocol, protocol, "{value}");
        }
        assert!(with(&["--upstream-protocol", "http3"]).is_err());

        let c = with(&[
            "--upstream-connect-timeout",
            "250ms",
            "--upstream-timeout",
            "2m",
            "--drain-timeout",
            "30",
        ])
        .unwrap();
        assert_eq!(
            c.upstream_options.upstream_connect_timeout,
            Duration::from_millis(250)
        );
        assert_eq!(
            c.upstream_options.upstream_timeout,
            Duration::from_secs(120)
        );
        assert_eq!(c.drain_timeout, Duration::from_secs(30));
        assert!(with(&["--upstream-timeout", "0"]).is_err());

        // A CA means nothing without an upstream.
        assert!(parse(&["--token", "t", "--upstream-ca", "/tmp/ca.pem"]).is_err());
    }
}
