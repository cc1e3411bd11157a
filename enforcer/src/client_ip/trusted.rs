//! `--trusted-proxies`: the networks whose forwarding headers are believed.

use std::{fmt, net::IpAddr, str::FromStr};

use ipgate_shared::normalize_ip;
use ipnet::{IpNet, Ipv4Net};

/// One `--trusted-proxies` entry: an address or a network, canonical, with
/// IPv4-mapped IPv6 networks written as IPv4 (addresses are compared after
/// the same normalisation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedNet(IpNet);

/// Why a `--trusted-proxies` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTrustedNet {
    /// Not an address or `address/prefix`.
    #[error(
        "{0:?} is not an address or network: give a plain address or address/prefix, \
         such as 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32"
    )]
    Syntax(String),
    /// Bits set beyond the prefix, as in `10.0.0.1/8`.
    #[error("{given:?} has host bits set beyond the prefix: write {suggested}")]
    HostBits {
        /// The entry as given.
        given: String,
        /// The network it lies in.
        suggested: String,
    },
    /// `/0`: every address.
    #[error(
        "{0:?} trusts every address, so any client could choose the address it is judged \
         by: list only the networks your proxies connect from"
    )]
    Everything(String),
}

impl FromStr for TrustedNet {
    type Err = InvalidTrustedNet;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // A comma-separated list may be written with spaces after the commas.
        let text = s.trim();
        let syntax = || InvalidTrustedNet::Syntax(text.to_owned());
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        // The standard parser is strict: no leading zeros, ports or zones.
        let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => parse_prefix(p).filter(|p| *p <= max).ok_or_else(syntax)?,
        };
        let net = IpNet::new(addr, prefix).map_err(|_| syntax())?;
        if net.trunc() != net {
            return Err(InvalidTrustedNet::HostBits {
                given: text.to_owned(),
                suggested: net.trunc().to_string(),
            });
        }
        let net = match net {
            IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96)
                    .map(IpNet::V4)
                    .map_err(|_| syntax())?,
                None => net,
            },
            other => other,
        };
        if net.prefix_len() == 0 {
            return Err(InvalidTrustedNet::Everything(text.to_owned()));
        }
        Ok(TrustedNet(net))
    }
}

/// A prefix length in plain decimal: no sign, no leading zeros.
fn parse_prefix(text: &str) -> Option<u8> {
    let plain = !text.is_empty()
        && text.len() <= 3
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    plain.then(|| text.parse().ok()).flatten()
}

impl fmt::Display for TrustedNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Every trusted network.
#[derive(Clone, Debug, Default)]
pub(crate) struct Trusted(Vec<IpNet>);

impl Trusted {
    /// The set of `nets`.
    pub(crate) fn new(nets: &[TrustedNet]) -> Self {
        Trusted(nets.iter().map(|n| n.0).collect())
    }

    /// True when `ip` (IPv4-mapped counts as IPv4) is inside a trusted network.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = normalize_ip(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// True when no network is trusted.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Result<String, InvalidTrustedNet> {
        s.parse::<TrustedNet>().map(|n| n.to_string())
    }

    #[test]
    fn addresses_and_networks_are_canonical() {
        assert_eq!(net("10.0.0.0/8").unwrap(), "10.0.0.0/8");
        assert_eq!(net(" 192.0.2.7").unwrap(), "192.0.2.7/32");
        assert_eq!(net("2001:db8::1").unwrap(), "2001:db8::1/128");
        assert_eq!(net("2001:db8::/32").unwrap(), "2001:db8::/32");
        // IPv4-mapped networks are the IPv4 networks they stand for.
        assert_eq!(net("::ffff:10.0.0.0/104").unwrap(), "10.0.0.0/8");
        assert_eq!(net("::ffff:192.0.2.7").unwrap(), "192.0.2.7/32");
    }

    #[test]
    fn odd_spellings_host_bits_and_everything_are_refused() {
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/08",
            "10.0.0.0/+8",
            "010.0.0.0/8",
            "10.0.0.1:80",
            "fe80::1%eth0",
            "[2001:db8::1]",
            "example.com",
        ] {
            assert!(
                matches!(net(bad), Err(InvalidTrustedNet::Syntax(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            net("10.0.0.1/8"),
            Err(InvalidTrustedNet::HostBits {
                given: "10.0.0.1/8".into(),
                suggested: "10.0.0.0/8".into()
            })
        );
        for everything in ["0.0.0.0/0", "::/0", "::ffff:0.0.0.0/96"] {
            assert!(
                matches!(net(everything), Err(InvalidTrustedNet::Everything(_))),
                "{everything}"
            );
        }
        let message = net("10.0.0.1/8").unwrap_err().to_string();
        assert!(message.contains("write 10.0.0.0/8"), "{message}");
    }

    #[test]
    fn membership_normalises_mapped_addresses() {
        let trusted = Trusted::new(&[
            "127.0.0.1".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ]);
        assert!(trusted.contains("127.0.0.1".parse().unwrap()));
        assert!(trusted.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(trusted.contains("2001:db8::7".parse().unwrap()));
        assert!(!trusted.contains("127.0.0.2".parse().unwrap()));
        assert!(!Trusted::default().contains("127.0.0.1".parse().unwrap()));
    }
}
