//! The proxy door's client of its one upstream: which protocol it speaks
//! (HTTP/1.1, h2c, or TLS through rustls with ALPN), how long connecting
//! and waiting for an answer may take, and which CAs an `https://`
//! upstream's certificate must chain to (docs/door-proxy.md).
//!
//! Two clients share the upstream's address: one speaks the protocol of
//! `--upstream-protocol`, the other HTTP/1.1 only, for WebSocket upgrades,
//! which HTTP/2 cannot carry without extended CONNECT (RFC 8441).
//!
//! To an `http://` upstream over HTTP/1.1, each client connection has, by
//! default, an upstream connection of its own (`--upstream-reuse
//! per-client`), driven by hyper's connection API directly: its requests
//! come one after another, so one upstream connection carries them all,
//! with no pool to check out from and no second connection opened when a
//! request arrives before the previous answer's connection is back in the
//! pool (BENCHMARKS.md). Requests that find it busy (HTTP/2 clients
//! sending several at once) or closed take the shared pool.
//!
//! Requests name the host the client called in their URI, so an HTTP/2
//! upstream gets it as `:authority` as an HTTP/1.1 one gets it as `Host`;
//! the connector dials the upstream whatever the URI names, and verifies
//! its certificate against the `--upstream` host.

use std::{
    error::Error as StdError,
    fmt,
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use http::{
    HeaderValue, Request, Response, Uri,
    header::HOST,
    uri::{Authority, PathAndQuery, Scheme},
};
use hyper::{body::Incoming, client::conn::http1};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use ipgate_shared::redact;
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, pem::PemObject},
};
use tokio::net::TcpStream;
use tower_service::Service;

use super::limits::parse_timeout;

/// Default `--upstream-connect-timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `--upstream-timeout`.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// The protocol spoken to the upstream.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// `http://`: HTTP/1.1. `https://`: HTTP/2 or HTTP/1.1, as the upstream
    /// chooses in the TLS handshake (ALPN).
    #[default]
    Auto,
    /// HTTP/1.1 only (over TLS, ALPN offers only `http/1.1`).
    Http1,
    /// HTTP/2 only: `http://` with prior knowledge (h2c), `https://` with
    /// ALPN `h2`.
    #[value(alias = "h2c", alias = "h2")]
    Http2,
}

/// How client connections share connections to the upstream.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpstreamReuse {
    /// To an `http://` HTTP/1.1 upstream, each client connection gets an
    /// upstream connection of its own, kept while both stay open; anything
    /// else, and requests that find it busy, use the shared pool.
    #[default]
    PerClient,
    /// Every request takes a connection from one pool shared by all
    /// client connections.
    Shared,
}

/// How the HTTP proxy door talks to its upstream (`ipgate enforcer --help`).
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
#[command(next_help_heading = "Upstream (HTTP proxy door)")]
pub struct UpstreamOptions {
    /// Protocol spoken to the upstream: `auto` (HTTP/1.1 to http://; to
    /// https://, HTTP/2 or HTTP/1.1 as the upstream chooses in the TLS
    /// handshake), `http1`, or `http2` (`h2c`: HTTP/2 with prior knowledge
    /// to http://, ALPN h2 to https://). WebSocket upgrades always go over
    /// HTTP/1.1.
    #[arg(
        long,
        env = "IPGATE_UPSTREAM_PROTOCOL",
        value_enum,
        default_value_t = UpstreamProtocol::Auto
    )]
    pub upstream_protocol: UpstreamProtocol,

    /// How long opening a connection to the upstream may take, TLS
    /// handshake included (`500ms`, `5s`, or plain seconds); then the
    /// client gets 504 UPSTREAM_TIMEOUT.
    #[arg(
        long,
        env = "IPGATE_UPSTREAM_CONNECT_TIMEOUT",
        default_value = "5s",
        value_parser = parse_timeout
    )]
    pub upstream_connect_timeout: Duration,

    /// How long the upstream may take to begin its answer (status line and
    /// headers) once a request is sent, connecting included; then the
    /// client gets 504 UPSTREAM_TIMEOUT. Bodies and WebSockets then stream
    /// for as long as they last.
    #[arg(
        long,
        env = "IPGATE_UPSTREAM_TIMEOUT",
        default_value = "60s",
        value_parser = parse_timeout
    )]
    pub upstream_timeout: Duration,

    /// PEM file with the CA certificates an https:// upstream's
    /// certificate must chain to, trusted instead of the built-in Mozilla
    /// roots (for a service with a private CA).
    #[arg(
        long,
        env = "IPGATE_UPSTREAM_CA",
        value_name = "FILE",
        requires = "upstream"
    )]
    pub upstream_ca: Option<PathBuf>,

    /// How client connections share upstream connections: `per-client`
    /// (each client connection keeps one of its own to an http://
    /// HTTP/1.1 upstream; the fastest, see BENCHMARKS.md) or `shared` (one
    /// pool for all).
    #[arg(
        long,
        env = "IPGATE_UPSTREAM_REUSE",
        value_enum,
        default_value_t = UpstreamReuse::PerClient
    )]
    pub upstream_reuse: UpstreamReuse,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        UpstreamOptions {
            upstream_protocol: UpstreamProtocol::Auto,
            upstream_connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            upstream_ca: None,
            upstream_reuse: UpstreamReuse::PerClient,
        }
    }
}

/// Why the upstream's address or options cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Not `http://` or `https://`.
    #[error("--upstream {0}: expected http://host:port or https://host:port")]
    Scheme(String),
    /// No host.
    #[error("--upstream {0}: the address has no host")]
    NoHost(String),
    /// A path or query.
    #[error(
        "--upstream {0}: give scheme, host and port only; paths are passed through as requested"
    )]
    Path(String),
    /// `--upstream-ca` with an `http://` upstream.
    #[error("--upstream-ca is for https:// upstreams; --upstream {0} is not one")]
    CaWithoutTls(String),
    /// The CA file cannot be read or holds no usable certificate.
    #[error("--upstream-ca {path}: {reason}")]
    Ca {
        /// The file named.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused its own defaults (never with the features built in).
    #[error("cannot configure TLS to the upstream: {0}")]
    Tls(#[from] rustls::Error),
}

/// Why a request got no answer from the upstream.
#[derive(Debug)]
pub enum Failure {
    /// No connection within `--upstream-connect-timeout`.
    ConnectTimeout,
    /// No response head within `--upstream-timeout`.
    ResponseTimeout,
    /// Refused, reset, a TLS failure, a broken answer.
    Unavailable(BoxError),
    /// The request and the upstream make no URI: nothing was sent.
    BadTarget,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::ConnectTimeout => f.write_str("connecting timed out"),
            Failure::ResponseTimeout => f.write_str("no answer in time"),
            Failure::BadTarget => f.write_str("the request target makes no upstream URI"),
            // The client error alone says little ("client error (Connect)");
            // its sources say why.
            Failure::Unavailable(e) => {
                write!(f, "{e}")?;
                let mut source = e.source();
                while let Some(cause) = source {
                    write!(f, ": {cause}")?;
                    source = cause.source();
                }
                Ok(())
            }
        }
    }
}

/// The upstream of one proxy door.
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
    /// The upstream as logs show it, without its secrets.
    shown: String,
    /// Speaks `--upstream-protocol`.
    client: Client<Connector, Incoming>,
    /// HTTP/1.1 only, for upgrades.
    upgrades: Client<Connector, Incoming>,
    /// Where a client connection's own upstream connection dials, when
    /// requests use one (`--upstream-reuse per-client`, `http://`,
    /// HTTP/1.1).
    per_client: Option<Dial>,
    timeout: Duration,
}

/// A client connection's own HTTP/1.1 connection to the upstream.
#[derive(Default)]
pub struct OwnConnection(Mutex<Own>);

#[derive(Default)]
enum Own {
    /// None yet, or the last one closed.
    #[default]
    None,
    /// Open and waiting for the next request.
    Idle(http1::SendRequest<Incoming>),
    /// A request is using it.
    Busy,
}

impl OwnConnection {
    /// Takes the connection for a request: `Err(())` when another request
    /// holds it; `Ok(None)` when there is none. The claim ends when the
    /// [`Claim`] is dropped, with the connection put back only if the
    /// request gave it back.
    fn claim(&self) -> Result<(Claim<'_>, Option<http1::SendRequest<Incoming>>), ()> {
        let mut own = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match std::mem::replace(&mut *own, Own::Busy) {
            Own::Busy => Err(()),
            Own::None => Ok((
                Claim {
                    own: self,
                    back: None,
                },
                None,
            )),
            Own::Idle(sender) => Ok((
                Claim {
                    own: self,
                    back: None,
                },
                Some(sender),
            )),
        }
    }
}

/// A request's hold on its client connection's own upstream connection.
struct Claim<'a> {
    own: &'a OwnConnection,
    /// What goes back into the slot: the sender once its request was sent.
    back: Option<http1::SendRequest<Incoming>>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let back = match self.back.take() {
            Some(sender) => Own::Idle(sender),
            // Failed, cancelled or timed out: the next request dials anew.
            None => Own::None,
        };
        *self.own.0.lock().unwrap_or_else(PoisonError::into_inner) = back;
    }
}

impl Upstream {
    /// A client of `upstream` (`http://host:port` or `https://host:port`).
    pub fn new(upstream: &Uri, options: &UpstreamOptions) -> Result<Self, UpstreamError> {
        let shown = redact::url(&upstream.to_string());
        let scheme = match upstream.scheme() {
            Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => s.clone(),
            _ => return Err(UpstreamError::Scheme(shown)),
        };
        let Some(authority) = upstream.authority().cloned() else {
            return Err(UpstreamError::NoHost(shown));
        };
        if !matches!(upstream.path(), "" | "/") || upstream.query().is_some() {
            return Err(UpstreamError::Path(shown));
        }
        let tls = match (&options.upstream_ca, scheme == Scheme::HTTPS) {
            (Some(_), false) => return Err(UpstreamError::CaWithoutTls(shown)),
            (ca, true) => tls_config(ca.as_deref())?,
            (None, false) => unused_tls()?,
        };
        let dial = Dial {
            upstream: Uri::builder()
                .scheme(scheme.clone())
                .authority(authority.clone())
                .path_and_query("/")
                .build()
                .map_err(|_| UpstreamError::NoHost(shown.clone()))?,
            timeout: options.upstream_connect_timeout,
        };
        let per_client = (options.upstream_reuse == UpstreamReuse::PerClient
            && scheme == Scheme::HTTP
            && options.upstream_protocol != UpstreamProtocol::Http2)
            .then(|| dial.clone());
        let client = client(tls.clone(), options.upstream_protocol, dial.clone());
        let upgrades = client_for_upgrades(tls, dial);
        Ok(Upstream {
            scheme,
            authority,
            shown,
            client,
            upgrades,
            per_client,
            timeout: options.upstream_timeout,
        })
    }

    /// The upstream as logs show it.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The URI of a request for `target` that named `host` (its `Host`):
    /// the upstream's scheme, the host the client called — or the
    /// upstream's when it named none that is a plain `host[:port]` — and
    /// `target`; `None` if it makes none. Only the connection's pool and an
    /// HTTP/2 request's `:authority` read the host: the connection always
    /// goes to the upstream.
    fn uri(&self, target: PathAndQuery, host: Option<&HeaderValue>) -> Option<Uri> {
        let authority = host
            .and_then(|h| Authority::try_from(h.as_bytes()).ok())
            .filter(|a| !a.as_str().contains('@'))
            .unwrap_or_else(|| self.authority.clone());
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(authority)
            .path_and_query(target)
            .build()
            .ok()
    }

    /// Sends `request` (its URI the target, in origin form) and waits for
    /// the head of the answer, at most
    /// `--upstream-timeout`; `upgrade` sends it over HTTP/1.1, so the
    /// connection can switch protocols. `own` is the client connection's
    /// own upstream connection, used when it is idle and the upstream
    /// allows one.
    pub async fn send(
        &self,
        request: Request<Incoming>,
        upgrade: bool,
        own: &OwnConnection,
    ) -> Result<Response<Incoming>, Failure> {
        let exchange = async {
            match &self.per_client {
                Some(dial) if !upgrade => self.send_own(request, dial, own).await,
                _ => self.send_pooled(request, upgrade).await,
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Err(Failure::ResponseTimeout),
            Ok(answer) => answer,
        }
    }

    /// Sends through the shared pool, which needs the absolute URI: it
    /// keys its connections by the host named.
    async fn send_pooled(
        &self,
        mut request: Request<Incoming>,
        upgrade: bool,
    ) -> Result<Response<Incoming>, Failure> {
        let target = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = self
            .uri(target, request.headers().get(HOST))
            .ok_or(Failure::BadTarget)?;
        let client = if upgrade {
            &self.upgrades
        } else {
            &self.client
        };
        match client.request(request).await {
            Ok(response) => Ok(response),
            Err(e) if connect_timed_out(&e) => Err(Failure::ConnectTimeout),
            Err(e) => Err(Failure::Unavailable(e.into())),
        }
    }

    /// Sends over `own`, dialled first when there is none. A request that
    /// finds it busy (several at once on an HTTP/2 client connection), or
    /// closed before the request went out, takes the pool instead.
    async fn send_own(
        &self,
        mut request: Request<Incoming>,
        dial: &Dial,
        own: &OwnConnection,
    ) -> Result<Response<Incoming>, Failure> {
        let Ok((mut claim, idle)) = own.claim() else {
            return self.send_pooled(request, false).await;
        };
        let mut sender = match idle {
            // Ready once the previous answer's body has been read; an
            // error means the upstream closed it.
            Some(mut sender) => match sender.ready().await {
                Ok(()) => sender,
                Err(_) => dial.http1().await?,
            },
            None => dial.http1().await?,
        };
        // The origin form goes as it is; a client that named no host
        // names the upstream's.
        if !request.headers().contains_key(HOST)
            && let Ok(host) = HeaderValue::from_str(self.authority.as_str())
        {
            request.headers_mut().insert(HOST, host);
        }
        match sender.try_send_request(request).await {
            Ok(response) => {
                claim.back = Some(sender);
                Ok(response)
            }
            Err(mut e) => match e.take_message() {
                // Closed before the request was written: nothing was sent.
                Some(request) => self.send_pooled(request, false).await,
                None => Err(Failure::Unavailable(e.into_error().into())),
            },
        }
    }
}

/// True when `error` came from [`Connector`]'s deadline.
fn connect_timed_out(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.is::<ConnectTimedOut>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// TLS with ring's algorithms and rustls' safe default protocol versions,
/// trusting `ca`'s certificates, or Mozilla's roots without one.
fn tls_config(ca: Option<&Path>) -> Result<ClientConfig, UpstreamError> {
    // Named explicitly, so no process-wide default provider is needed.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?;
    let builder = match ca {
        None => builder.with_webpki_roots(),
        Some(path) => builder.with_root_certificates(roots_from(path)?),
    };
    Ok(builder.with_no_client_auth())
}

/// Every certificate in the PEM file at `path`; an unreadable file, one
/// without certificates, or a certificate rustls cannot use is an error,
/// so a typo never leaves the door trusting less (or other) than meant.
fn roots_from(path: &Path) -> Result<RootCertStore, UpstreamError> {
    let bad = |reason: String| UpstreamError::Ca {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate (BEGIN CERTIFICATE)".into()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| bad(format!("a certificate cannot be used as a CA ({e})")))?;
    }
    Ok(roots)
}

/// The main client: `protocol` over plain TCP, or over TLS with `tls`
/// (for `https://` URIs only).
fn client(
    tls: ClientConfig,
    protocol: UpstreamProtocol,
    dial: Dial,
) -> Client<Connector, Incoming> {
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    // ALPN offers what the protocol allows; the upstream picks.
    let https = match protocol {
        UpstreamProtocol::Auto => builder.enable_http1().enable_http2().wrap_connector(tcp()),
        UpstreamProtocol::Http1 => builder.enable_http1().wrap_connector(tcp()),
        UpstreamProtocol::Http2 => builder.enable_http2().wrap_connector(tcp()),
    };
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .http2_only(protocol == UpstreamProtocol::Http2)
        .build(Connector { inner: https, dial })
}

/// The client for upgrades: HTTP/1.1 whatever the upstream offers.
fn client_for_upgrades(tls: ClientConfig, dial: Dial) -> Client<Connector, Incoming> {
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp());
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .build(Connector { inner: https, dial })
}

/// A TLS configuration for an `http://` upstream, which never uses it: the
/// connector wants one whatever the scheme, and one that trusts nothing
/// can never be what lets a connection through.
fn unused_tls() -> Result<ClientConfig, UpstreamError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth())
}

fn tcp() -> HttpConnector {
    let mut tcp = HttpConnector::new();
    // The scheme is checked by the TLS layer above it.
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp
}

type BoxError = Box<dyn StdError + Send + Sync>;

/// The connector's deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("no connection to the upstream within {0:?}")]
struct ConnectTimedOut(Duration);

/// Where and for how long a [`Connector`] dials.
#[derive(Clone)]
struct Dial {
    /// `scheme://host:port/` of `--upstream`.
    upstream: Uri,
    timeout: Duration,
}

impl Dial {
    /// A new HTTP/1.1 connection to an `http://` upstream, its I/O driven
    /// by a task of its own that ends when the connection closes.
    async fn http1(&self) -> Result<http1::SendRequest<Incoming>, Failure> {
        let host = self.upstream.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = self.upstream.port_u16().unwrap_or(80);
        let stream =
            match tokio::time::timeout(self.timeout, TcpStream::connect((host, port))).await {
                Err(_) => return Err(Failure::ConnectTimeout),
                Ok(Err(e)) => return Err(Failure::Unavailable(e.into())),
                Ok(Ok(stream)) => stream,
            };
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Failure::Unavailable(e.into()))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// Connects to the upstream as hyper-rustls does — whatever host the
/// request's URI names, which is the client's — within a deadline that
/// covers the TCP connect and the TLS handshake alike: an upstream that
/// accepts but never finishes its handshake is as unreachable as one that
/// never accepts.
#[derive(Clone)]
pub struct Connector {
    inner: HttpsConnector<HttpConnector>,
    dial: Dial,
}

impl Service<Uri> for Connector {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, _client_named: Uri) -> Self::Future {
        // The TLS layer takes the name to verify from this URI too.
        let connecting = self.inner.call(self.dial.upstream.clone());
        let limit = self.dial.timeout;
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(connected) => connected,
                Err(_) => Err(Box::new(ConnectTimedOut(limit)) as BoxError),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> UpstreamOptions {
        UpstreamOptions::default()
    }

    #[test]
    fn upstreams_are_scheme_host_and_port() {
        for good in [
            "http://127.0.0.1:9",
            "https://api.internal:8443",
            "http://h/",
        ] {
            assert!(
                Upstream::new(&good.parse().unwrap(), &options()).is_ok(),
                "{good}"
            );
        }
        let bad = |uri: &str| {
            Upstream::new(&uri.parse().unwrap(), &options())
                .err()
                .unwrap_or_else(|| panic!("{uri} accepted"))
                .to_string()
        };
        assert!(bad("ftp://h:1").contains("expected http://"));
        assert!(bad("127.0.0.1:9").contains("expected http://"));
        assert!(bad("http://h:1/api").contains("paths are passed through"));
        assert!(bad("http://h:1/?x=1").contains("paths are passed through"));
        // Logged without the password.
        let shown = bad("http://user:hunter2@h:1/x");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn a_ca_file_must_hold_certificates_and_needs_https() {
        let dir = tempfile::tempdir().unwrap();
        let with_ca = |path: &Path| UpstreamOptions {
            upstream_ca: Some(path.to_owned()),
            ..options()
        };
        let https: Uri = "https://h:1".parse().unwrap();

        let missing = dir.path().join("missing.pem");
        let e = Upstream::new(&https, &with_ca(&missing)).err().unwrap();
        assert!(e.to_string().contains("missing.pem"), "{e}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let e = Upstream::new(&https, &with_ca(&empty)).err().unwrap();
        assert!(e.to_string().contains("holds no PEM certificate"), "{e}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = Upstream::new(&https, &with_ca(&garbage)).err().unwrap();
        assert!(e.to_string().contains("cannot be used as a CA"), "{e}");

        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()]).unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, ca.cert.pem()).unwrap();
        assert!(Upstream::new(&https, &with_ca(&good)).is_ok());
        let e = Upstream::new(&"http://h:1".parse().unwrap(), &with_ca(&good))
            .err()
            .unwrap();
        assert!(e.to_string().contains("for https:// upstreams"), "{e}");
    }
}
