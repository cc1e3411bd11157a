//! Which address a request is decided on (docs/client-ip.md): the one place
//! every door asks.
//!
//! - The check door decides on the address its caller names: [`parse`].
//! - The HTTP proxy door decides on the connection's peer — the TCP peer, or
//!   with `--proxy-protocol` the source its PROXY header names
//!   ([`Policy::accept`], [`proxy_protocol`]) — unless that peer is a trusted
//!   proxy whose forwarding header names the client ([`Policy::resolve`]).

mod elements;
mod log_gate;
mod node;
mod policy;
pub mod proxy_protocol;
mod trusted;
mod walk;

#[cfg(test)]
mod tests;

use std::{fmt, net::IpAddr};

use ipgate_shared::{ClientIpSource, normalize_ip};

pub use policy::{Connection, Policy, PolicyError};
pub use trusted::{InvalidTrustedNet, TrustedNet};
pub use walk::MAX_HOPS;

/// The address a request is decided on, and where it was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp {
    /// The address, IPv4-mapped IPv6 as IPv4.
    pub ip: IpAddr,
    /// Where it came from.
    pub source: Source,
}

impl ClientIp {
    /// `ip` (normalised) from `source`.
    pub fn new(ip: IpAddr, source: Source) -> Self {
        ClientIp {
            ip: normalize_ip(ip),
            source,
        }
    }
}

/// Where a proxy-door request's client address came from. The last five
/// are fallbacks: the walk stopped before it reached a client, and the
/// request is decided on the last address known good — the peer, or a
/// trusted proxy's address — never on one a client chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The connection's peer (with `--proxy-protocol`, the PROXY header's
    /// source): it is not a trusted proxy, or it sent no forwarding header.
    Peer,
    /// `X-Forwarded-For`: the first untrusted address from the right (or
    /// the left-most when all are trusted), or with `--trusted-hops N` the
    /// Nth from the right.
    XForwardedFor,
    /// `Forwarded` (`for=`), chosen as for `X-Forwarded-For`; also when both
    /// headers came and named the same client.
    Forwarded,
    /// The header named by `--client-ip-header`, from a trusted peer.
    ClientIpHeader,
    /// A trusted hop wrote `unknown`, an obfuscated identifier (`_hidden`)
    /// or a `Forwarded` element without `for=`.
    Unknown,
    /// An element (or the `--client-ip-header` value) is not an address.
    Malformed,
    /// `X-Forwarded-For` and `Forwarded` both came and disagree.
    Conflicting,
    /// More than [`MAX_HOPS`] trusted hops in a row.
    TooManyHops,
    /// `--trusted-hops N`, and `X-Forwarded-For` has fewer than N elements.
    TooFewHops,
}

impl Source {
    /// A stable name, as logs and usage events show it: the usage log's
    /// name for the source, so the two always agree.
    pub fn as_str(self) -> &'static str {
        ClientIpSource::from(self).as_str()
    }

    /// True when the walk stopped before it reached a client.
    pub fn is_fallback(self) -> bool {
        ClientIpSource::from(self).is_fallback()
    }
}

/// What the usage event says: one wire value for each source, so the log
/// tells every fallback apart, as the enforcer's own logs do.
impl From<Source> for ClientIpSource {
    fn from(source: Source) -> Self {
        match source {
            Source::Peer => ClientIpSource::Peer,
            Source::XForwardedFor => ClientIpSource::XForwardedFor,
            Source::Forwarded => ClientIpSource::Forwarded,
            Source::ClientIpHeader => ClientIpSource::ClientIpHeader,
            Source::Unknown => ClientIpSource::UnknownHop,
            Source::Malformed => ClientIpSource::Malformed,
            Source::Conflicting => ClientIpSource::Conflicting,
            Source::TooManyHops => ClientIpSource::TooManyHops,
            Source::TooFewHops => ClientIpSource::TooFewHops,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a caller-supplied client address cannot be decided on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientIpError {
    /// No address was given.
    #[error("client_ip is required")]
    Missing,
    #[error("{0:?} is not an IP address: give a plain IPv4 or IPv6 address, without port or zone")]
    /// The text is not a plain IP address.
    Invalid(String),
}

/// Parses a client address named by a caller. Only plain addresses are
/// accepted (the standard parser refuses leading zeros, ports and zones), so
/// an odd spelling can never be read as some other address.
pub fn parse(text: &str) -> Result<IpAddr, ClientIpError> {
    if text.is_empty() {
        return Err(ClientIpError::Missing);
    }
    text.parse::<IpAddr>()
        .map(normalize_ip)
        .map_err(|_| ClientIpError::Invalid(text.to_owned()))
}
