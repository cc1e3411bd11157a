//! [`Policy`]: the client-address flags, checked at start, and the two
//! things an HTTP door asks of them — who the connection's peer is, and which
//! address each request is decided on.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use http::{HeaderMap, HeaderName, HeaderValue, header::FORWARDED};
use ipgate_shared::normalize_ip;
use proxy_header::io::ProxiedStream;
use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::{
    client_ip::{
        ClientIp, Source,
        elements::{FromRight, MAX_ELEMENT_BYTES},
        log_gate::{LogGate, WARN_INTERVAL},
        node::{self, Hop},
        proxy_protocol,
        trusted::Trusted,
        walk,
    },
    config::ClientIpConfig,
};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// A connection as an HTTP door serves it: the TCP stream, after the PROXY
/// header when there was one.
pub type Connection = ProxiedStream<TcpStream>;

/// A combination of client-address flags that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `--trusted-hops` with `--trusted-proxies`.
    #[error(
        "--trusted-hops and --trusted-proxies are two ways to say which forwarding-header \
         entries to believe: give one. --trusted-proxies is the safer, as it believes \
         headers only from the listed addresses"
    )]
    HopsAndProxies,
    /// `--client-ip-header` without `--trusted-proxies`.
    #[error(
        "--client-ip-header {0} is read only from trusted proxies: list them with \
         --trusted-proxies"
    )]
    HeaderWithoutProxies(HeaderName),
    /// `--client-ip-header` naming a list-valued forwarding header.
    #[error(
        "--client-ip-header {0}: X-Forwarded-For and Forwarded are read with \
         --trusted-proxies alone; --client-ip-header names a header holding one address, \
         such as X-Real-IP"
    )]
    HeaderIsAList(HeaderName),
}

/// How requests get their client address, from `--trusted-proxies`,
/// `--trusted-hops`, `--client-ip-header` and `--proxy-protocol`.
#[derive(Debug)]
pub struct Policy {
    rules: Rules,
    proxy_protocol: bool,
    header_timeout: Duration,
    /// Warnings for walks that stopped before a client.
    fallbacks: LogGate,
    /// Warnings for connections refused for their PROXY header.
    refused: LogGate,
}

#[derive(Debug)]
enum Rules {
    /// No flag: the peer, always.
    Peer,
    /// `--trusted-proxies`, with or without `--client-ip-header`.
    Proxies {
        trusted: Trusted,
        header: Option<HeaderName>,
    },
    /// `--trusted-hops N`.
    Hops(u8),
}

impl Default for Policy {
    /// The peer, always; no PROXY header.
    fn default() -> Self {
        Policy::with_rules(Rules::Peer, false)
    }
}

impl Policy {
    /// The policy `config` describes, or why it cannot work.
    pub fn new(config: &ClientIpConfig) -> Result<Self, PolicyError> {
        let trusted = Trusted::new(&config.trusted_proxies);
        let header = config.client_ip_header.clone();
        if config.trusted_hops.is_some() && !trusted.is_empty() {
            return Err(PolicyError::HopsAndProxies);
        }
        if let Some(name) = header.as_ref() {
            if trusted.is_empty() {
                return Err(PolicyError::HeaderWithoutProxies(name.clone()));
            }
            if *name == X_FORWARDED_FOR || *name == FORWARDED {
                return Err(PolicyError::HeaderIsAList(name.clone()));
            }
        }
        let rules = match config.trusted_hops {
            Some(hops) => Rules::Hops(hops),
            None if trusted.is_empty() => Rules::Peer,
            None => Rules::Proxies { trusted, header },
        };
        Ok(Policy::with_rules(rules, config.proxy_protocol))
    }

    /// This policy for a listener that does (or does not) expect a PROXY
    /// header: each HTTP listener has its own flag for it.
    pub fn with_proxy_protocol(mut self, proxy_protocol: bool) -> Self {
        self.proxy_protocol = proxy_protocol;
        self
    }

    /// True when some peer's forwarding headers are believed
    /// (`--trusted-proxies` or `--trusted-hops`); false when every request
    /// is decided on its peer.
    pub fn follows_headers(&self) -> bool {
        !matches!(self.rules, Rules::Peer)
    }

    fn with_rules(rules: Rules, proxy_protocol: bool) -> Self {
        Policy {
            rules,
            proxy_protocol,
            header_timeout: proxy_protocol::HEADER_TIMEOUT,
            fallbacks: LogGate::new(WARN_INTERVAL),
            refused: LogGate::new(WARN_INTERVAL),
        }
    }

    /// The connection as the door should serve it, and its peer: with
    /// `--proxy-protocol`, the stream after the PROXY header and the client
    /// the header names; `None` when the connection must be closed.
    pub async fn accept(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<(Connection, SocketAddr)> {
        if !self.proxy_protocol {
            return Some((ProxiedStream::unproxied(stream), peer));
        }
        match proxy_protocol::read_header(stream, self.header_timeout).await {
            Ok((stream, client)) => {
                debug!(%peer, %client, "PROXY header read");
                Some((stream, client))
            }
            Err(error) => {
                debug!(%peer, %error, "connection closed");
                if let Some(suppressed) = self.refused.admit() {
                    warn!(
                        %peer,
                        %error,
                        suppressed,
                        "closed a connection without a usable PROXY header \
                         (one line a minute at most; debug logs each)"
                    );
                }
                None
            }
        }
    }

    /// True when `peer` is in `--trusted-proxies`: a proxy whose headers
    /// are believed. `--trusted-hops` names no address, so no peer is one
    /// under it.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        matches!(&self.rules, Rules::Proxies { trusted, .. } if trusted.contains(peer))
    }

    /// The address a request from `peer` with `headers` is decided on; a
    /// fallback is logged (each at debug, a warning a minute at most).
    pub fn resolve(&self, peer: SocketAddr, headers: &HeaderMap) -> ClientIp {
        let client = self.decide(peer.ip(), headers);
        if client.source.is_fallback() {
            debug!(
                %peer,
                client_ip = %client.ip,
                source = %client.source,
                "forwarding headers not followed to a client; deciding on the last trusted address"
            );
            if let Some(suppressed) = self.fallbacks.admit() {
                warn!(
                    %peer,
                    client_ip = %client.ip,
                    source = %client.source,
                    suppressed,
                    "a trusted proxy's forwarding header could not be followed to a client; \
                     deciding on the last trusted address (one line a minute at most; \
                     debug logs each)"
                );
            }
        }
        client
    }

    /// [`Policy::resolve`] without logging: the rules of docs/client-ip.md.
    pub fn decide(&self, peer: IpAddr, headers: &HeaderMap) -> ClientIp {
        let peer = normalize_ip(peer);
        match &self.rules {
            Rules::Peer => ClientIp::new(peer, Source::Peer),
            Rules::Hops(hops) => {
                walk::nth_from_right(peer, from_right(headers, &X_FORWARDED_FOR, false), *hops)
            }
            Rules::Proxies { trusted, .. } if !trusted.contains(peer) => {
                ClientIp::new(peer, Source::Peer)
            }
            Rules::Proxies {
                header: Some(name), ..
            } => one_address(peer, headers, name),
            Rules::Proxies {
                trusted,
                header: None,
            } => {
                let xff = walk::past_trusted(
                    peer,
                    from_right(headers, &X_FORWARDED_FOR, false),
                    node::x_forwarded_for,
                    trusted,
                    Source::XForwardedFor,
                );
                let forwarded = walk::past_trusted(
                    peer,
                    from_right(headers, &FORWARDED, true),
                    node::forwarded,
                    trusted,
                    Source::Forwarded,
                );
                match (xff, forwarded) {
                    (None, None) => ClientIp::new(peer, Source::Peer),
                    (Some(one), None) | (None, Some(one)) => one,
                    (Some(xff), Some(forwarded)) => agreed(peer, xff, forwarded),
                }
            }
        }
    }
}

/// The elements of every `name` line, from the right.
fn from_right<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    quotes: bool,
) -> FromRight<'a, impl Iterator<Item = &'a [u8]>> {
    let lines = headers
        .get_all(name)
        .iter()
        .rev()
        .map(HeaderValue::as_bytes);
    FromRight::new(lines, quotes)
}

/// Both headers came: they must name the same client, or fall back alike.
/// Otherwise there is no telling which one the trusted proxies wrote — a
/// client can send either — so the request is decided on the peer.
fn agreed(peer: IpAddr, xff: ClientIp, forwarded: ClientIp) -> ClientIp {
    if xff.ip == forwarded.ip && xff.source.is_fallback() == forwarded.source.is_fallback() {
        forwarded
    } else {
        ClientIp::new(peer, Source::Conflicting)
    }
}

/// `--client-ip-header`: exactly one line holding one address.
fn one_address(peer: IpAddr, headers: &HeaderMap, name: &HeaderName) -> ClientIp {
    let mut lines = headers.get_all(name).iter();
    let hop = match (lines.next(), lines.next()) {
        (None, _) => return ClientIp::new(peer, Source::Peer),
        (Some(_), Some(_)) => Hop::Malformed,
        (Some(line), None) if line.len() > MAX_ELEMENT_BYTES => Hop::Malformed,
        (Some(line), None) => node::x_forwarded_for(line.as_bytes()),
    };
    match hop {
        Hop::Addr(ip) => ClientIp::new(ip, Source::ClientIpHeader),
        Hop::Hidden => ClientIp::new(peer, Source::Unknown),
        Hop::Malformed => ClientIp::new(peer, Source::Malformed),
    }
}
