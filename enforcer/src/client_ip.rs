//! Which address a request is decided on (docs/client-ip.md).
//!
//! For now the client IP is the TCP peer (proxy door) or the address a
//! trusted caller names (gRPC door); trusted-proxy header parsing comes later
//! and belongs here.

use std::net::{IpAddr, SocketAddr};

use ipgate_shared::normalize_ip;

/// The client address of a direct TCP peer; IPv4-mapped peers (a dual-stack
/// listener) are their IPv4 address.
pub fn from_peer(peer: SocketAddr) -> IpAddr {
    normalize_ip(peer.ip())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_and_named_addresses_are_normalised() {
        let peer: SocketAddr = "[::ffff:203.0.113.5]:4000".parse().unwrap();
        assert_eq!(from_peer(peer).to_string(), "203.0.113.5");
        assert_eq!(
            parse("::ffff:198.51.100.7").unwrap().to_string(),
            "198.51.100.7"
        );
        assert_eq!(parse("2001:db8::1").unwrap().to_string(), "2001:db8::1");
    }

    #[test]
    fn odd_spellings_are_refused() {
        assert_eq!(parse(""), Err(ClientIpError::Missing));
        for bad in [
            "010.0.0.1",
            "127.1",
            "0x7f.0.0.1",
            "fe80::1%eth0",
            "1.2.3.4:80",
            " 1.2.3.4",
            "[::1]",
        ] {
            assert!(
                matches!(parse(bad), Err(ClientIpError::Invalid(_))),
                "{bad}"
            );
        }
    }
}
