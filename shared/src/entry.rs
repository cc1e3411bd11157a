//! One allowlist entry: strict parsing of addresses and CIDR ranges, and the
//! rules of docs/entries.md (minimum prefixes, host bits, private ranges, labels).
//!
//! Parsing is ours rather than `ipnet`'s `FromStr` because the rules want
//! precise messages and because only plain dotted-decimal IPv4 is accepted:
//! leading zeros (`010.0.0.1`), short forms (`127.1`) and hex are rejected,
//! whatever a platform parser would make of them.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
    time::SystemTime,
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// IPv4 ranges broader than this (`/8` and below) are rejected.
pub const MIN_IPV4_PREFIX: u8 = 9;
/// IPv6 ranges broader than this (`/32` and below) are rejected.
pub const MIN_IPV6_PREFIX: u8 = 33;
/// Longest label, in characters.
pub const MAX_LABEL_CHARS: usize = 100;

/// The address the decision is made on: an IPv4-mapped IPv6 address
/// (`::ffff:203.0.113.5`) is its IPv4 address, everywhere.
pub fn normalize_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// A validated network: canonical (no host bits), IPv4-mapped ranges turned
/// into IPv4, no broader than /9 (IPv4) or /33 (IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr(IpNet);

/// Why a string is not an acceptable [`Cidr`]. Messages name the input and
/// say what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("entry is empty: give an IP address (203.0.113.5) or a CIDR range (203.0.113.0/24)")]
    Empty,
    #[error("{input:?} has a zone index ('%'); zone-scoped addresses cannot be allowlisted")]
    ZoneIndex { input: String },
    #[error("{input:?} is missing the address before '/'")]
    MissingAddress { input: String },
    #[error("{input:?} is missing the prefix length after '/'")]
    MissingPrefix { input: String },
    #[error("{input:?} has more than one '/'")]
    ExtraSlash { input: String },
    #[error("{input:?} has an invalid prefix length {prefix:?}: use a plain decimal number")]
    BadPrefix { input: String, prefix: String },
    #[error("{input:?} has prefix length /{len}, out of range for {family} (at most /{max})")]
    PrefixOutOfRange {
        input: String,
        len: u32,
        family: &'static str,
        max: u8,
    },
    #[error(
        "{input:?} is not plain dotted-decimal IPv4: {problem}; write four decimal numbers 0-255 without leading zeros, like 203.0.113.5"
    )]
    NotDottedDecimal { input: String, problem: String },
    #[error("{input:?} is not a valid IPv6 address")]
    BadIpv6 { input: String },
    #[error("{input:?} is not an IP address or CIDR range")]
    NotAnAddress { input: String },
    #[error(
        "{input:?} is broader than allowed: {family} ranges must be /{min} or narrower (a single address is /{max})"
    )]
    TooBroad {
        input: String,
        family: &'static str,
        min: u8,
        max: u8,
    },
    #[error("{input:?} has host bits set; use {suggested}")]
    HostBitsSet { input: String, suggested: String },
}

impl Cidr {
    /// The network.
    pub fn net(&self) -> IpNet {
        self.0
    }

    /// True when `ip` (already normalised with [`normalize_ip`]) is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// When this network lies inside a range the API never sees as a client
    /// address (private, link-local, unique-local, shared, multicast,
    /// unspecified), its name. Loopback is not listed: it is allowed for
    /// local testing.
    pub fn internal_range(&self) -> Option<String> {
        internal_ranges_covering(self.0)
    }

    /// Parses an allowlist entry's network under the rules in force.
    ///
    /// With `allow_internal` false, a network inside an internal range is
    /// refused for that before anything else: narrowing a too-broad range
    /// or dropping host bits would only lead into the next refusal, so the
    /// rule that decides is named first. With it true, the usual messages
    /// stand, and the network they suggest is accepted.
    pub fn parse_entry(input: &str, allow_internal: bool) -> Result<Cidr, EntryError> {
        let net = parse_net(input)?;
        if !allow_internal && let Some(range) = internal_ranges_covering(net.trunc()) {
            return Err(EntryError::InternalRange {
                input: input.trim().to_owned(),
                range,
            });
        }
        Ok(canonical(input, net)?)
    }
}

/// Ranges refused unless the control plane runs with `--allow-private-ranges`.
/// They do not overlap, which [`internal_ranges_covering`] relies on.
const INTERNAL_RANGES: &[(&str, &str)] = &[
    ("10.0.0.0/8", "private range 10.0.0.0/8 (RFC 1918)"),
    ("172.16.0.0/12", "private range 172.16.0.0/12 (RFC 1918)"),
    ("192.168.0.0/16", "private range 192.168.0.0/16 (RFC 1918)"),
    (
        "100.64.0.0/10",
        "shared address space 100.64.0.0/10 (carrier-grade NAT, RFC 6598)",
    ),
    ("169.254.0.0/16", "link-local range 169.254.0.0/16"),
    ("0.0.0.0/8", "\"this network\" range 0.0.0.0/8"),
    ("224.0.0.0/4", "multicast range 224.0.0.0/4"),
    ("240.0.0.0/4", "reserved range 240.0.0.0/4"),
    ("fc00::/7", "unique-local range fc00::/7"),
    ("fe80::/10", "link-local range fe80::/10"),
    ("fec0::/10", "site-local range fec0::/10 (deprecated)"),
    ("ff00::/8", "multicast range ff00::/8"),
    ("::/128", "unspecified address ::"),
];

fn internal_ranges() -> impl Iterator<Item = (IpNet, &'static str)> {
    INTERNAL_RANGES
        .iter()
        .filter_map(|(range, name)| range.parse::<IpNet>().ok().map(|net| (net, *name)))
}

/// The names of the internal ranges that together cover all of `net`, or
/// `None` when any part of it is outside them. Usually one range holds it;
/// a broad range such as 224.0.0.0/3 is covered by two (multicast and
/// reserved), and narrowing it never leaves them.
fn internal_ranges_covering(net: IpNet) -> Option<String> {
    if let Some((_, name)) = internal_ranges().find(|(range, _)| range.contains(&net)) {
        return Some(name.to_owned());
    }
    let inside: Vec<(IpNet, &str)> = internal_ranges()
        .filter(|(range, _)| net.contains(range))
        .collect();
    if inside.is_empty() || !covered(net, &inside) {
        return None;
    }
    let names: Vec<&str> = inside.iter().map(|(_, name)| *name).collect();
    Some(names.join(" and the "))
}

/// True when `ranges` (disjoint, each inside `net`) cover all of `net`:
/// each half must be inside one range or covered by the ranges within it.
fn covered(net: IpNet, ranges: &[(IpNet, &str)]) -> bool {
    if ranges.iter().any(|(range, _)| range.contains(&net)) {
        return true;
    }
    if !ranges.iter().any(|(range, _)| net.contains(range)) {
        return false;
    }
    match net.subnets(net.prefix_len().saturating_add(1)) {
        Ok(mut halves) => halves.all(|half| covered(half, ranges)),
        Err(_) => false,
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Parses a network under the rules every [`Cidr`] keeps (syntax,
    /// minimum prefix, no host bits); the internal-range rule is the
    /// caller's, see [`Cidr::parse_entry`].
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        canonical(input, parse_net(input)?)
    }
}

/// The network as written: syntax checked, IPv4-mapped ranges turned into
/// IPv4, possibly too broad and with host bits set.
fn parse_net(input: &str) -> Result<IpNet, CidrError> {
    let s = input.trim();
    let owned = || s.to_owned();
    if s.is_empty() {
        return Err(CidrError::Empty);
    }
    if s.contains('%') {
        return Err(CidrError::ZoneIndex { input: owned() });
    }
    let (addr_part, prefix_part) = match s.split_once('/') {
        None => (s, None),
        Some((_, rest)) if rest.contains('/') => {
            return Err(CidrError::ExtraSlash { input: owned() });
        }
        Some(("", _)) => return Err(CidrError::MissingAddress { input: owned() }),
        Some((_, "")) => return Err(CidrError::MissingPrefix { input: owned() }),
        Some((a, p)) => (a, Some(p)),
    };
    let prefix = prefix_part.map(|p| parse_prefix(s, p)).transpose()?;

    if addr_part.contains(':') {
        let v6 =
            Ipv6Addr::from_str(addr_part).map_err(|_| CidrError::BadIpv6 { input: owned() })?;
        let len = check_len(s, prefix, 128, "IPv6")?;
        match v6.to_ipv4_mapped() {
            // ::ffff:a.b.c.d/len is the IPv4 range a.b.c.d/(len - 96).
            Some(v4) if len >= 96 => Ok(IpNet::V4(v4_net(v4, len - 96))),
            Some(_) => Err(CidrError::TooBroad {
                input: owned(),
                family: "IPv4",
                min: MIN_IPV4_PREFIX,
                max: 32,
            }),
            None => Ok(IpNet::V6(v6_net(v6, len))),
        }
    } else if addr_part
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b'x' || b == b'X')
        && addr_part.contains('.')
    {
        let v4 = parse_dotted_decimal(s, addr_part)?;
        Ok(IpNet::V4(v4_net(v4, check_len(s, prefix, 32, "IPv4")?)))
    } else {
        Err(CidrError::NotAnAddress { input: owned() })
    }
}

/// Checks the minimum prefix, then host bits: the suggested network has
/// the same prefix, so it passes both.
fn canonical(input: &str, net: IpNet) -> Result<Cidr, CidrError> {
    let owned = || input.trim().to_owned();
    let (family, min, max) = match net {
        IpNet::V4(_) => ("IPv4", MIN_IPV4_PREFIX, 32),
        IpNet::V6(_) => ("IPv6", MIN_IPV6_PREFIX, 128),
    };
    if net.prefix_len() < min {
        return Err(CidrError::TooBroad {
            input: owned(),
            family,
            min,
            max,
        });
    }
    if net.trunc() != net {
        return Err(CidrError::HostBitsSet {
            input: owned(),
            suggested: net.trunc().to_string(),
        });
    }
    Ok(Cidr(net))
}

fn parse_prefix(input: &str, p: &str) -> Result<u32, CidrError> {
    let plain = !p.is_empty()
        && p.len() <= 3
        && p.bytes().all(|b| b.is_ascii_digit())
        && !(p.len() > 1 && p.starts_with('0'));
    match p.parse::<u32>() {
        Ok(n) if plain => Ok(n),
        _ => Err(CidrError::BadPrefix {
            input: input.to_owned(),
            prefix: p.to_owned(),
        }),
    }
}

fn check_len(
    input: &str,
    prefix: Option<u32>,
    max: u8,
    family: &'static str,
) -> Result<u8, CidrError> {
    match prefix {
        None => Ok(max),
        Some(len) => u8::try_from(len).ok().filter(|l| *l <= max).ok_or_else(|| {
            CidrError::PrefixOutOfRange {
                input: input.to_owned(),
                len,
                family,
                max,
            }
        }),
    }
}

fn parse_dotted_decimal(input: &str, addr: &str) -> Result<Ipv4Addr, CidrError> {
    let problem = |problem: String| CidrError::NotDottedDecimal {
        input: input.to_owned(),
        problem,
    };
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.len() != 4 {
        return Err(problem(format!(
            "it has {} parts, an IPv4 address has 4",
            parts.len()
        )));
    }
    let mut octets = [0u8; 4];
    for (octet, part) in octets.iter_mut().zip(&parts) {
        if part.is_empty() {
            return Err(problem("it has an empty part".to_owned()));
        }
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(problem(format!("{part:?} is not a decimal number")));
        }
        if part.len() > 1 && part.starts_with('0') {
            return Err(problem(format!("{part:?} has a leading zero")));
        }
        *octet = part
            .parse::<u8>()
            .map_err(|_| problem(format!("{part} is larger than 255")))?;
    }
    Ok(Ipv4Addr::from(octets))
}

fn v4_net(addr: Ipv4Addr, len: u8) -> Ipv4Net {
    // `len` was checked against 32 above.
    Ipv4Net::new_assert(addr, len)
}

fn v6_net(addr: Ipv6Addr, len: u8) -> Ipv6Net {
    // `len` was checked against 128 above.
    Ipv6Net::new_assert(addr, len)
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An entry's label: at most 100 printable characters, possibly empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Label(String);

/// Why a string is not an acceptable [`Label`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("label is {chars} characters long; at most {MAX_LABEL_CHARS} are allowed")]
    TooLong { chars: usize },
    #[error("label contains a control character; use printable characters only")]
    NotPrintable,
}

impl FromStr for Label {
    type Err = LabelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let chars = s.chars().count();
        if chars > MAX_LABEL_CHARS {
            return Err(LabelError::TooLong { chars });
        }
        if s.chars().any(char::is_control) {
            return Err(LabelError::NotPrintable);
        }
        Ok(Label(s.to_owned()))
    }
}

impl Label {
    /// The label text ("" when none).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One allowlist entry: a network, an optional label, an optional expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    cidr: Cidr,
    label: Label,
    expires_at: Option<SystemTime>,
}

/// Why an entry was refused: the field it concerns and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error(transparent)]
    Cidr(#[from] CidrError),
    #[error(
        "{input:?} lies in the {range}: the API sees its callers' public egress addresses; start the control plane with --allow-private-ranges if its enforcers do see internal addresses"
    )]
    InternalRange { input: String, range: String },
    #[error(transparent)]
    Label(#[from] LabelError),
    #[error("expires_at is not a valid timestamp")]
    BadExpiry,
    #[error("expires_at is in the past; give a future instant or none")]
    ExpiryInPast,
}

impl EntryError {
    /// The entry field the error is about: `cidr`, `label` or `expires_at`.
    pub fn field(&self) -> &'static str {
        match self {
            EntryError::Cidr(_) | EntryError::InternalRange { .. } => "cidr",
            EntryError::Label(_) => "label",
            EntryError::BadExpiry | EntryError::ExpiryInPast => "expires_at",
        }
    }
}

impl Entry {
    /// An entry from already-validated parts.
    pub fn new(cidr: Cidr, label: Label, expires_at: Option<SystemTime>) -> Self {
        Entry {
            cidr,
            label,
            expires_at,
        }
    }

    /// The network.
    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    /// The label ("" when none).
    pub fn label(&self) -> &str {
        self.label.as_str()
    }

    /// The label as its validated type, to carry it into a new entry.
    pub fn label_ref(&self) -> &Label {
        &self.label
    }

    /// When the entry stops matching, if ever.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// True when the entry no longer matches at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        match s.parse::<Cidr>() {
            Ok(c) => c.to_string(),
            Err(e) => panic!("{s:?} should be accepted, got: {e}"),
        }
    }

    fn err(s: &str) -> CidrError {
        match s.parse::<Cidr>() {
            Ok(c) => panic!("{s:?} should be rejected, got {c}"),
            Err(e) => e,
        }
    }

    #[test]
    fn single_addresses_become_host_ranges() {
        assert_eq!(ok("203.0.113.5"), "203.0.113.5/32");
        assert_eq!(ok("2001:db8::1"), "2001:db8::1/128");
        assert_eq!(ok(" 203.0.113.5 "), "203.0.113.5/32");
    }

    #[test]
    fn ranges_at_or_above_the_minimum_prefix_are_kept() {
        assert_eq!(ok("203.0.113.0/24"), "203.0.113.0/24");
        assert_eq!(ok("2001:db8::/48"), "2001:db8::/48");
        assert_eq!(ok("128.0.0.0/9"), "128.0.0.0/9");
        assert_eq!(ok("2001:db8::/33"), "2001:db8::/33");
    }

    #[test]
    fn ipv4_mapped_ipv6_is_the_ipv4_address() {
        assert_eq!(ok("::ffff:203.0.113.5"), "203.0.113.5/32");
        assert_eq!(ok("::ffff:203.0.113.0/120"), "203.0.113.0/24");
        assert!(matches!(
            err("::ffff:0.0.0.0/90"),
            CidrError::TooBroad { family: "IPv4", .. }
        ));
    }

    #[test]
    fn other_embeddings_stay_ipv6() {
        assert_eq!(ok("::192.0.2.3"), "::c000:203/128");
        assert_eq!(ok("64:ff9b::c000:203"), "64:ff9b::c000:203/128");
        assert_eq!(ok("2002:c000:0203::"), "2002:c000:203::/128");
    }

    #[test]
    fn host_bits_set_suggests_the_network() {
        let e = err("203.0.113.5/24");
        assert_eq!(
            e,
            CidrError::HostBitsSet {
                input: "203.0.113.5/24".into(),
                suggested: "203.0.113.0/24".into()
            }
        );
        assert!(e.to_string().contains("use 203.0.113.0/24"), "{e}");
        assert!(
            matches!(err("2001:db8::1/48"), CidrError::HostBitsSet { suggested, .. } if suggested == "2001:db8::/48")
        );
    }

    #[test]
    fn broad_ranges_are_rejected() {
        for s in ["10.0.0.0/8", "0.0.0.0/0", "0.0.0.0/8", "128.0.0.0/1"] {
            assert!(
                matches!(
                    err(s),
                    CidrError::TooBroad {
                        family: "IPv4",
                        min: 9,
                        ..
                    }
                ),
                "{s}"
            );
        }
        for s in ["::/0", "2001:db8::/32", "2000::/3"] {
            assert!(
                matches!(
                    err(s),
                    CidrError::TooBroad {
                        family: "IPv6",
                        min: 33,
                        ..
                    }
                ),
                "{s}"
            );
        }
        assert!(err("0.0.0.0/0").to_string().contains("/9 or narrower"));
    }

    #[test]
    fn only_plain_dotted_decimal_ipv4_is_accepted() {
        for (s, needle) in [
            ("010.0.0.1", "leading zero"),
            ("0127.0.0.1/8", "leading zero"),
            ("1.2.3", "3 parts"),
            ("127.1", "2 parts"),
            ("0x7f.0.0.1", "not a decimal number"),
            ("1.2.3.256", "larger than 255"),
            ("1..2.3", "empty part"),
        ] {
            let e = err(s);
            assert!(
                matches!(e, CidrError::NotDottedDecimal { .. }),
                "{s}: {e:?}"
            );
            assert!(e.to_string().contains(needle), "{s}: {e}");
        }
    }

    #[test]
    fn malformed_inputs_name_the_problem() {
        assert_eq!(err(""), CidrError::Empty);
        assert!(matches!(err("fe80::1%eth0"), CidrError::ZoneIndex { .. }));
        assert!(matches!(
            err("1.2.3.4/33"),
            CidrError::PrefixOutOfRange {
                len: 33,
                max: 32,
                ..
            }
        ));
        assert!(matches!(
            err("2001:db8::1/129"),
            CidrError::PrefixOutOfRange { len: 129, .. }
        ));
        assert!(matches!(err("1.2.3.4/"), CidrError::MissingPrefix { .. }));
        assert!(matches!(err("/24"), CidrError::MissingAddress { .. }));
        assert!(matches!(err("1.2.3.4/24/1"), CidrError::ExtraSlash { .. }));
        assert!(matches!(err("1.2.3.4/024"), CidrError::BadPrefix { .. }));
        assert!(matches!(err("1.2.3.4/+24"), CidrError::BadPrefix { .. }));
        assert!(matches!(err("example.com"), CidrError::NotAnAddress { .. }));
        assert!(matches!(err("2001:db8:::1"), CidrError::BadIpv6 { .. }));
        assert!(matches!(err("1.2.3.4 5"), CidrError::NotAnAddress { .. }));
    }

    #[test]
    fn internal_ranges_are_named_and_loopback_is_not_internal() {
        let internal = |s: &str| s.parse::<Cidr>().map(|c| c.internal_range());
        assert!(
            internal("10.0.0.0/16")
                .unwrap()
                .unwrap()
                .contains("10.0.0.0/8")
        );
        assert!(internal("172.16.5.0/24").unwrap().is_some());
        assert!(internal("192.168.1.1").unwrap().is_some());
        assert!(internal("169.254.1.1").unwrap().is_some());
        assert!(internal("fd00::/48").unwrap().unwrap().contains("fc00::/7"));
        assert!(internal("fe80::1").unwrap().is_some());
        assert!(internal("100.64.1.0/24").unwrap().is_some());
        assert_eq!(internal("127.0.0.1").unwrap(), None);
        assert_eq!(internal("::1").unwrap(), None);
        assert_eq!(internal("203.0.113.0/24").unwrap(), None);
        assert_eq!(internal("2001:db8::/48").unwrap(), None);
        // A public range that merely contains a private one is public.
        assert_eq!(internal("172.0.0.0/9").unwrap(), None);
    }

    fn refused(s: &str, allow_internal: bool) -> EntryError {
        match Cidr::parse_entry(s, allow_internal) {
            Ok(c) => panic!("{s:?} should be refused (allow_internal {allow_internal}), got {c}"),
            Err(e) => e,
        }
    }

    /// (input, the range its refusal must name): each also breaks the
    /// breadth or host-bits rule, or both.
    const INTERNAL_AND_MORE: &[(&str, &str)] = &[
        ("10.0.0.0/8", "private range 10.0.0.0/8"),
        ("10.1.2.3/8", "private range 10.0.0.0/8"),
        ("192.168.1.1/24", "private range 192.168.0.0/16"),
        ("172.16.5.1/12", "private range 172.16.0.0/12"),
        ("100.64.0.1/10", "shared address space 100.64.0.0/10"),
        ("169.254.1.1/16", "link-local range 169.254.0.0/16"),
        ("0.0.0.0/8", "\"this network\" range 0.0.0.0/8"),
        ("224.0.0.0/4", "multicast range 224.0.0.0/4"),
        (
            "224.0.0.0/3",
            "multicast range 224.0.0.0/4 and the reserved range 240.0.0.0/4",
        ),
        ("::ffff:192.168.1.1/120", "private range 192.168.0.0/16"),
        ("fd00::1/48", "unique-local range fc00::/7"),
        ("fc00::/7", "unique-local range fc00::/7"),
        ("fd12:3456::/16", "unique-local range fc00::/7"),
        ("fe80::1/64", "link-local range fe80::/10"),
        ("fe80::/10", "link-local range fe80::/10"),
        (
            "fe80::/9",
            "link-local range fe80::/10 and the site-local range fec0::/10",
        ),
        ("ff02::1/8", "multicast range ff00::/8"),
    ];

    #[test]
    fn an_internal_range_is_named_before_breadth_or_host_bits() {
        for (input, range) in INTERNAL_AND_MORE {
            let e = refused(input, false);
            assert!(
                matches!(&e, EntryError::InternalRange { .. }),
                "{input}: {e:?}"
            );
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("{input:?} lies in the {range}")),
                "{text}"
            );
            assert!(text.contains("--allow-private-ranges"), "{text}");
            assert!(
                !text.contains("narrower") && !text.contains(" use "),
                "{text}"
            );
        }
    }

    #[test]
    fn with_internal_ranges_allowed_the_other_rules_speak_and_their_advice_holds() {
        for (input, _) in INTERNAL_AND_MORE {
            match refused(input, true) {
                EntryError::Cidr(CidrError::HostBitsSet { suggested, .. }) => {
                    let accepted = Cidr::parse_entry(&suggested, true);
                    assert_eq!(
                        accepted.map(|c| c.to_string()),
                        Ok(suggested.clone()),
                        "{input}"
                    );
                }
                EntryError::Cidr(CidrError::TooBroad { .. }) => {}
                other => panic!("{input}: {other:?}"),
            }
        }
        assert_eq!(
            refused("192.168.1.1/24", true).to_string(),
            "\"192.168.1.1/24\" has host bits set; use 192.168.1.0/24"
        );
        assert!(
            refused("10.0.0.0/8", true)
                .to_string()
                .contains("must be /9 or narrower")
        );
        assert!(Cidr::parse_entry("10.0.0.0/9", true).is_ok());
        assert!(
            refused("fd00::/7", true)
                .to_string()
                .contains("must be /33 or narrower")
        );
        assert!(Cidr::parse_entry("fd00::/33", true).is_ok());
    }

    #[test]
    fn a_suggestion_under_strict_rules_is_accepted_under_them() {
        // The network of 172.16.0.0/11 is 172.0.0.0/11: it holds the
        // private 172.16.0.0/12 but is not inside it, so it is public.
        assert_eq!(
            refused("172.16.0.0/11", false).to_string(),
            "\"172.16.0.0/11\" has host bits set; use 172.0.0.0/11"
        );
        assert!(Cidr::parse_entry("172.0.0.0/11", false).is_ok());
        assert_eq!(
            refused("203.0.113.5/24", false).to_string(),
            "\"203.0.113.5/24\" has host bits set; use 203.0.113.0/24"
        );
        // Too broad and only partly internal: narrower public ranges exist.
        assert!(matches!(
            refused("10.0.0.0/7", false),
            EntryError::Cidr(CidrError::TooBroad { .. })
        ));
        assert!(Cidr::parse_entry("11.0.0.0/9", false).is_ok());
        assert!(matches!(
            refused("fc00::/6", false),
            EntryError::Cidr(CidrError::TooBroad { .. })
        ));
    }

    #[test]
    fn syntax_errors_come_before_any_range_rule() {
        for allow in [false, true] {
            assert!(matches!(
                refused("010.0.0.1/8", allow),
                EntryError::Cidr(CidrError::NotDottedDecimal { .. })
            ));
            assert!(matches!(
                refused("10.0.0.0/33", allow),
                EntryError::Cidr(CidrError::PrefixOutOfRange { .. })
            ));
            assert!(matches!(
                refused("fe80::1%eth0", allow),
                EntryError::Cidr(CidrError::ZoneIndex { .. })
            ));
        }
    }

    #[test]
    fn loopback_is_never_internal() {
        assert!(matches!(
            refused("127.0.0.0/8", false),
            EntryError::Cidr(CidrError::TooBroad { .. })
        ));
        assert!(Cidr::parse_entry("127.0.0.1", false).is_ok());
        assert!(Cidr::parse_entry("::1", false).is_ok());
    }

    #[test]
    fn mapped_client_addresses_normalise_to_ipv4() {
        let mapped: IpAddr = "::ffff:203.0.113.5".parse().unwrap();
        assert_eq!(
            normalize_ip(mapped),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        let compat: IpAddr = "::192.0.2.3".parse().unwrap();
        assert_eq!(normalize_ip(compat), compat);
    }

    #[test]
    fn labels_are_short_and_printable() {
        assert!("Office network".parse::<Label>().is_ok());
        assert!("".parse::<Label>().is_ok());
        assert!("é".repeat(100).parse::<Label>().is_ok());
        assert_eq!(
            "x".repeat(101).parse::<Label>(),
            Err(LabelError::TooLong { chars: 101 })
        );
        assert_eq!("a\nb".parse::<Label>(), Err(LabelError::NotPrintable));
    }
}
