//! The rules of docs/client-ip.md, case by case, and the property behind
//! them: the address decided on is the peer or one a trusted hop wrote.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};
use ipgate_shared::normalize_ip;
use proptest::prelude::*;

use super::*;
use crate::config::ClientIpConfig;

/// The proxies every case trusts unless it says otherwise.
const TRUSTED: [&str; 2] = ["10.0.0.0/8", "2001:db8:ffff::/48"];
/// A trusted proxy, the peer of most cases.
const PROXY: &str = "10.0.0.1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn config(trusted: &[&str]) -> ClientIpConfig {
    ClientIpConfig {
        trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
        ..ClientIpConfig::default()
    }
}

fn trusting() -> Policy {
    Policy::new(&config(&TRUSTED)).unwrap()
}

fn with_header(name: &str) -> Policy {
    Policy::new(&ClientIpConfig {
        client_ip_header: Some(name.parse().unwrap()),
        ..config(&TRUSTED)
    })
    .unwrap()
}

fn hops(n: u8) -> Policy {
    Policy::new(&ClientIpConfig {
        trusted_hops: Some(n),
        ..ClientIpConfig::default()
    })
    .unwrap()
}

/// Header lines in order; a name may repeat.
fn headers(lines: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in lines {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// One case: who connects, what it sends, and the expected decision.
struct Case {
    what: &'static str,
    peer: &'static str,
    lines: &'static [(&'static str, &'static str)],
    ip: &'static str,
    source: Source,
}

fn check(policy: &Policy, cases: &[Case]) {
    for case in cases {
        let got = policy.decide(ip(case.peer), &headers(case.lines));
        assert_eq!(
            got,
            ClientIp::new(ip(case.ip), case.source),
            "{}: {:?} from {}",
            case.what,
            case.lines,
            case.peer
        );
    }
}

const XFF: &str = "x-forwarded-for";
const FWD: &str = "forwarded";

#[test]
fn x_forwarded_for_is_read_from_the_right_and_only_from_trusted_peers() {
    use Source::*;
    check(
        &trusting(),
        &[
            Case {
                what: "a spoofed left-most entry through a trusted proxy",
                peer: PROXY,
                lines: &[(XFF, "203.0.113.9, 198.51.100.7")],
                ip: "198.51.100.7",
                source: XForwardedFor,
            },
            Case {
                what: "from an untrusted peer the header is ignored",
                peer: "198.51.100.7",
                lines: &[(XFF, "203.0.113.9")],
                ip: "198.51.100.7",
                source: Peer,
            },
            Case {
                what: "trusted hops are skipped",
                peer: PROXY,
                lines: &[(XFF, "203.0.113.9, 198.51.100.7, 10.0.0.3, 10.0.0.2")],
                ip: "198.51.100.7",
                source: XForwardedFor,
            },
            Case {
                what: "several lines are one list, in order",
                peer: PROXY,
                lines: &[
                    (XFF, "203.0.113.9"),
                    (XFF, "198.51.100.7, 10.0.0.3"),
                    (XFF, "10.0.0.2"),
                ],
                ip: "198.51.100.7",
                source: XForwardedFor,
            },
            Case {
                what: "the last line's last element comes first",
                peer: PROXY,
                lines: &[(XFF, "198.51.100.7"), (XFF, "203.0.113.9")],
                ip: "203.0.113.9",
                source: XForwardedFor,
            },
            Case {
                what: "every entry trusted: the left-most",
                peer: PROXY,
                lines: &[(XFF, "10.0.0.9, 10.0.0.2")],
                ip: "10.0.0.9",
                source: XForwardedFor,
            },
            Case {
                what: "a trusted peer without the header",
                peer: PROXY,
                lines: &[],
                ip: PROXY,
                source: Peer,
            },
            Case {
                what: "ports and brackets",
                peer: PROXY,
                lines: &[(XFF, "[2001:db8::1]:4711, 10.0.0.2:80, [2001:db8:ffff::2]")],
                ip: "2001:db8::1",
                source: XForwardedFor,
            },
            Case {
                what: "IPv4-mapped IPv6 decides as IPv4",
                peer: PROXY,
                lines: &[(XFF, "::ffff:198.51.100.7")],
                ip: "198.51.100.7",
                source: XForwardedFor,
            },
            Case {
                what: "an IPv4-mapped peer is trusted as its IPv4 address",
                peer: "::ffff:10.0.0.1",
                lines: &[(XFF, "198.51.100.7")],
                ip: "198.51.100.7",
                source: XForwardedFor,
            },
            Case {
                what: "IPv4-mapped entries are trusted as IPv4",
                peer: PROXY,
                lines: &[(XFF, "198.51.100.7, ::ffff:10.0.0.2")],
                ip: "198.51.100.7",
                source: XForwardedFor,
            },
            Case {
                what: "garbage left of the client is never read",
                peer: PROXY,
                lines: &[(XFF, "not an address, 198.51.100.7")],
                ip: "198.51.100.7",
                source: XForwardedFor,
            },
        ],
    );
}

#[test]
fn an_element_that_is_not_an_address_stops_the_walk_at_the_last_trusted_address() {
    use Source::*;
    check(
        &trusting(),
        &[
            Case {
                what: "garbage right of a trusted hop: that hop",
                peer: PROXY,
                lines: &[(XFF, "198.51.100.7, garbage, 10.0.0.2")],
                ip: "10.0.0.2",
                source: Malformed,
            },
            Case {
                what: "garbage as the right-most entry: the peer",
                peer: PROXY,
                lines: &[(XFF, "198.51.100.7, 1.2.3")],
                ip: PROXY,
                source: Malformed,
            },
            Case {
                what: "an empty line",
                peer: PROXY,
                lines: &[(XFF, "")],
                ip: PROXY,
                source: Malformed,
            },
            Case {
                what: "a trailing comma is an empty element",
                peer: PROXY,
                lines: &[(XFF, "198.51.100.7,")],
                ip: PROXY,
                source: Malformed,
            },
            Case {
                what: "an empty element between",
                peer: PROXY,
                lines: &[(XFF, "198.51.100.7, , 10.0.0.2")],
                ip: "10.0.0.2",
                source: Malformed,
            },
            Case {
                what: "a zone id is refused",
                peer: PROXY,
                lines: &[(XFF, "fe80::1%eth0")],
                ip: PROXY,
                source: Malformed,
            },
            Case {
                what: "leading zeros are refused",
                peer: PROXY,
                lines: &[(XFF, "198.51.100.7, 010.0.0.2")],
                ip: PROXY,
                source: Malformed,
            },
            Case {
                what: "unknown hides the client",
                peer: PROXY,
                lines: &[(XFF, "198.51.100.7, unknown")],
                ip: PROXY,
                source: Unknown,
            },
            Case {
                what: "an obfuscated identifier right of a trusted hop",
                peer: PROXY,
                lines: &[(XFF, "198.51.100.7, _hidden, 10.0.0.2")],
                ip: "10.0.0.2",
                source: Unknown,
            },
        ],
    );
}

#[test]
fn forwarded_is_read_like_x_forwarded_for() {
    use Source::*;
    check(
        &trusting(),
        &[
            Case {
                what: "quotes, brackets and ports",
                peer: PROXY,
                lines: &[(FWD, r#"for="[2001:db8::1]:4711";proto=https"#)],
                ip: "2001:db8::1",
                source: Forwarded,
            },
            Case {
                what: "a spoofed left-most element through trusted hops",
                peer: PROXY,
                lines: &[(
                    FWD,
                    r#"for=203.0.113.9, for="198.51.100.7:80";by=_p, For=10.0.0.2"#,
                )],
                ip: "198.51.100.7",
                source: Forwarded,
            },
            Case {
                what: "several lines",
                peer: PROXY,
                lines: &[(FWD, "for=203.0.113.9"), (FWD, "for=10.0.0.2;proto=http")],
                ip: "203.0.113.9",
                source: Forwarded,
            },
            Case {
                what: "from an untrusted peer the header is ignored",
                peer: "198.51.100.7",
                lines: &[(FWD, "for=203.0.113.9")],
                ip: "198.51.100.7",
                source: Peer,
            },
            Case {
                what: "unknown",
                peer: PROXY,
                lines: &[(FWD, "for=198.51.100.7, for=unknown")],
                ip: PROXY,
                source: Unknown,
            },
            Case {
                what: "an obfuscated identifier right of a trusted hop",
                peer: PROXY,
                lines: &[(FWD, "for=198.51.100.7, for=_hidden, for=10.0.0.2")],
                ip: "10.0.0.2",
                source: Unknown,
            },
            Case {
                what: "an element without for=",
                peer: PROXY,
                lines: &[(FWD, "for=198.51.100.7, proto=https")],
                ip: PROXY,
                source: Unknown,
            },
            Case {
                what: "unquoted IPv6",
                peer: PROXY,
                lines: &[(FWD, "for=198.51.100.7, for=2001:db8::1")],
                ip: PROXY,
                source: Malformed,
            },
            Case {
                what: "a client's unbalanced quote cannot swallow the proxy's element",
                peer: PROXY,
                lines: &[(FWD, r#"for="evil, for=198.51.100.7"#)],
                ip: "198.51.100.7",
                source: Forwarded,
            },
            Case {
                what: "a comma inside quotes does not split",
                peer: PROXY,
                lines: &[(FWD, r#"for=198.51.100.7;ext="a, for=203.0.113.9""#)],
                ip: "198.51.100.7",
                source: Forwarded,
            },
        ],
    );
}

#[test]
fn both_headers_must_agree() {
    use Source::*;
    check(
        &trusting(),
        &[
            Case {
                what: "the same client",
                peer: PROXY,
                lines: &[(XFF, "198.51.100.7"), (FWD, "for=198.51.100.7")],
                ip: "198.51.100.7",
                source: Forwarded,
            },
            Case {
                what: "a client's Forwarded beside the proxy's X-Forwarded-For",
                peer: PROXY,
                lines: &[(XFF, "198.51.100.7"), (FWD, "for=203.0.113.9")],
                ip: PROXY,
                source: Conflicting,
            },
            Case {
                what: "one names a client, the other falls back",
                peer: PROXY,
                lines: &[(XFF, "198.51.100.7"), (FWD, "for=unknown")],
                ip: PROXY,
                source: Conflicting,
            },
            Case {
                what: "both headers from an untrusted peer",
                peer: "198.51.100.7",
                lines: &[(XFF, "203.0.113.9"), (FWD, "for=203.0.113.10")],
                ip: "198.51.100.7",
                source: Peer,
            },
        ],
    );
}

#[test]
fn a_huge_header_costs_a_bounded_walk() {
    let trusted_peer = ip(PROXY);
    // 10,000 untrusted entries: the right-most is the client.
    let many = vec!["198.51.100.7"; 10_000].join(", ");
    assert!(many.len() > 64 * 1024);
    let got = trusting().decide(trusted_peer, &headers(&[(XFF, &many)]));
    assert_eq!(
        got,
        ClientIp::new(ip("198.51.100.7"), Source::XForwardedFor)
    );

    // 10,000 trusted entries: the walk stops after MAX_HOPS of them.
    let mut chain: Vec<String> = (0..10_000)
        .map(|i| format!("10.0.{}.{}", i / 256 % 256, i % 256))
        .collect();
    chain[0] = "198.51.100.7".into();
    let got = trusting().decide(trusted_peer, &headers(&[(XFF, &chain.join(","))]));
    let last_read = &chain[chain.len() - usize::from(MAX_HOPS)];
    assert_eq!(got, ClientIp::new(ip(last_read), Source::TooManyHops));

    // Exactly MAX_HOPS trusted entries are all read.
    let chain: Vec<String> = (1..=MAX_HOPS).map(|i| format!("10.0.0.{i}")).collect();
    let got = trusting().decide(trusted_peer, &headers(&[(XFF, &chain.join(","))]));
    assert_eq!(got, ClientIp::new(ip("10.0.0.1"), Source::XForwardedFor));

    // As many lines of trusted entries.
    let lines: Vec<(&str, &str)> = vec![(XFF, "10.0.0.2"); 10_000];
    let got = trusting().decide(trusted_peer, &headers(&lines));
    assert_eq!(got, ClientIp::new(ip("10.0.0.2"), Source::TooManyHops));

    // One 64 KiB element is not read at all.
    let long = format!("198.51.100.7{}", " ".repeat(64 * 1024));
    let got = trusting().decide(trusted_peer, &headers(&[(XFF, &long)]));
    assert_eq!(got, ClientIp::new(trusted_peer, Source::Malformed));
}

#[test]
fn a_client_ip_header_is_read_only_from_trusted_peers_and_replaces_the_others() {
    use Source::*;
    const REAL: &str = "x-real-ip";
    check(
        &with_header("X-Real-IP"),
        &[
            Case {
                what: "X-Real-IP spoofed from an untrusted peer",
                peer: "198.51.100.7",
                lines: &[(REAL, "203.0.113.9")],
                ip: "198.51.100.7",
                source: Peer,
            },
            Case {
                what: "from a trusted peer",
                peer: PROXY,
                lines: &[(REAL, "203.0.113.9")],
                ip: "203.0.113.9",
                source: ClientIpHeader,
            },
            Case {
                what: "with a port, X-Forwarded-For ignored",
                peer: PROXY,
                lines: &[(REAL, "[2001:db8::1]:4711"), (XFF, "198.51.100.7")],
                ip: "2001:db8::1",
                source: ClientIpHeader,
            },
            Case {
                what: "absent: the peer, whatever X-Forwarded-For says",
                peer: PROXY,
                lines: &[(XFF, "198.51.100.7")],
                ip: PROXY,
                source: Peer,
            },
            Case {
                what: "two lines",
                peer: PROXY,
                lines: &[(REAL, "203.0.113.9"), (REAL, "203.0.113.10")],
                ip: PROXY,
                source: Malformed,
            },
            Case {
                what: "a list",
                peer: PROXY,
                lines: &[(REAL, "203.0.113.9, 203.0.113.10")],
                ip: PROXY,
                source: Malformed,
            },
            Case {
                what: "unknown",
                peer: PROXY,
                lines: &[(REAL, "unknown")],
                ip: PROXY,
                source: Unknown,
            },
        ],
    );
}

#[test]
fn without_flags_every_header_is_ignored() {
    check(
        &Policy::default(),
        &[
            Case {
                what: "X-Forwarded-For and friends",
                peer: "198.51.100.7",
                lines: &[
                    (XFF, "203.0.113.9"),
                    (FWD, "for=203.0.113.9"),
                    ("x-real-ip", "203.0.113.9"),
                ],
                ip: "198.51.100.7",
                source: Source::Peer,
            },
            Case {
                what: "an IPv4-mapped peer",
                peer: "::ffff:198.51.100.7",
                lines: &[],
                ip: "198.51.100.7",
                source: Source::Peer,
            },
        ],
    );
}

#[test]
fn trusted_hops_take_the_nth_entry_from_the_right() {
    use Source::*;
    let chain: &[(&str, &str)] = &[(XFF, "203.0.113.9, 198.51.100.7, 10.0.0.2")];
    let cases = |n: u8, ip: &'static str, source: Source| {
        check(
            &hops(n),
            &[Case {
                what: "the Nth from the right",
                // The peer is whoever connected: hops are counted, not checked.
                peer: "192.0.2.1",
                lines: chain,
                ip,
                source,
            }],
        );
    };
    cases(1, "10.0.0.2", XForwardedFor);
    cases(2, "198.51.100.7", XForwardedFor);
    cases(3, "203.0.113.9", XForwardedFor);
    cases(4, "192.0.2.1", TooFewHops);
    check(
        &hops(2),
        &[
            Case {
                what: "no header: the peer",
                peer: "192.0.2.1",
                lines: &[(FWD, "for=198.51.100.7, for=10.0.0.2")],
                ip: "192.0.2.1",
                source: Peer,
            },
            Case {
                what: "lines combine",
                peer: "192.0.2.1",
                lines: &[(XFF, "198.51.100.7"), (XFF, "10.0.0.2")],
                ip: "198.51.100.7",
                source: XForwardedFor,
            },
            Case {
                what: "garbage among the N",
                peer: "192.0.2.1",
                lines: &[(XFF, "198.51.100.7, garbage")],
                ip: "192.0.2.1",
                source: Malformed,
            },
            Case {
                what: "garbage left of the Nth is never read",
                peer: "192.0.2.1",
                lines: &[(XFF, "garbage, 198.51.100.7, 10.0.0.2")],
                ip: "198.51.100.7",
                source: XForwardedFor,
            },
            Case {
                what: "unknown as the Nth",
                peer: "192.0.2.1",
                lines: &[(XFF, "unknown, 10.0.0.2")],
                ip: "192.0.2.1",
                source: Unknown,
            },
        ],
    );
}

#[test]
fn combinations_that_cannot_work_are_refused_with_what_to_do() {
    let both = ClientIpConfig {
        trusted_hops: Some(1),
        ..config(&TRUSTED)
    };
    let error = Policy::new(&both).unwrap_err();
    assert_eq!(error, PolicyError::HopsAndProxies);
    assert!(error.to_string().contains("give one"), "{error}");

    for alone in [
        ClientIpConfig::default(),
        ClientIpConfig {
            trusted_hops: Some(2),
            ..ClientIpConfig::default()
        },
    ] {
        let error = Policy::new(&ClientIpConfig {
            client_ip_header: Some("x-real-ip".parse().unwrap()),
            ..alone
        })
        .unwrap_err();
        assert!(
            matches!(error, PolicyError::HeaderWithoutProxies(_)),
            "{error}"
        );
        assert!(error.to_string().contains("--trusted-proxies"), "{error}");
    }
    for list in ["x-forwarded-for", "forwarded"] {
        let error = Policy::new(&ClientIpConfig {
            client_ip_header: Some(list.parse().unwrap()),
            ..config(&TRUSTED)
        })
        .unwrap_err();
        assert!(matches!(error, PolicyError::HeaderIsAList(_)), "{error}");
    }
}

#[test]
fn named_addresses_are_parsed_strictly() {
    assert_eq!(
        parse("::ffff:198.51.100.7").unwrap().to_string(),
        "198.51.100.7"
    );
    assert_eq!(parse("2001:db8::1").unwrap().to_string(), "2001:db8::1");
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

// === the property ===

/// Addresses inside [`TRUSTED`].
fn trusted_address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u8..4, 0u8..4).prop_map(|(a, b)| IpAddr::from([10, 0, a, b])),
        (0u16..4).prop_map(|a| IpAddr::from([0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, a])),
        // IPv4-mapped, trusted as IPv4.
        (0u8..4).prop_map(|a| IpAddr::from(std::net::Ipv4Addr::new(10, 0, 0, a).to_ipv6_mapped())),
    ]
}

/// Addresses outside it.
fn untrusted_address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u8..4).prop_map(|a| IpAddr::from([198, 51, 100, a])),
        (0u8..4).prop_map(|a| IpAddr::from([203, 0, 113, a])),
        (0u16..4).prop_map(|a| IpAddr::from([0x2001, 0xdb8, 1, 0, 0, 0, 0, a])),
    ]
}

fn address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![trusted_address(), untrusted_address()]
}

/// One generated element: an address, or something that never is one.
#[derive(Clone, Debug)]
enum Gen {
    Addr(IpAddr, u8),
    /// Starts with `x`, so it never reads as an address, `unknown` or an
    /// obfuscated identifier; holds neither commas nor quotes.
    Garbage(String),
    Unknown,
    Obfuscated,
    Empty,
}

fn element() -> impl Strategy<Value = Gen> {
    prop_oneof![
        6 => (address(), 0u8..4).prop_map(|(a, style)| Gen::Addr(a, style)),
        1 => "x[a-z0-9.:;=\\[\\] ]{0,10}".prop_map(Gen::Garbage),
        1 => Just(Gen::Unknown),
        1 => Just(Gen::Obfuscated),
        1 => Just(Gen::Empty),
    ]
}

/// `element` as an `X-Forwarded-For` element, in one of several spellings.
fn xff_text(element: &Gen) -> String {
    match element {
        Gen::Addr(IpAddr::V4(a), style) if style % 2 == 1 => {
            format!("{a}:{}", 1000 + u16::from(*style))
        }
        Gen::Addr(IpAddr::V6(a), 1) => format!("[{a}]:4711"),
        Gen::Addr(IpAddr::V6(a), 2) => format!("[{a}]"),
        Gen::Addr(a, _) => a.to_string(),
        Gen::Garbage(g) => g.clone(),
        Gen::Unknown => "unknown".into(),
        Gen::Obfuscated => "_hidden".into(),
        Gen::Empty => String::new(),
    }
}

/// `element` as a `Forwarded` element.
fn forwarded_text(element: &Gen) -> String {
    match element {
        Gen::Addr(IpAddr::V4(a), 0) => format!("for={a}"),
        Gen::Addr(IpAddr::V4(a), 1) => format!("for=\"{a}:80\";proto=https"),
        Gen::Addr(IpAddr::V4(a), _) => format!("by=_p;For=\"{a}\""),
        Gen::Addr(IpAddr::V6(a), 1) => format!("for=\"[{a}]:4711\""),
        Gen::Addr(IpAddr::V6(a), _) => format!("proto=http;for=\"[{a}]\""),
        Gen::Garbage(g) => g.clone(),
        Gen::Unknown => "for=unknown".into(),
        Gen::Obfuscated => "for=\"_hidden:_p\"".into(),
        Gen::Empty => String::new(),
    }
}

/// Lines of generated elements, joined with varied spacing.
fn lines() -> impl Strategy<Value = Vec<Vec<Gen>>> {
    // Up to 44 elements: past MAX_HOPS sometimes.
    prop::collection::vec(prop::collection::vec(element(), 0..12), 0..4)
}

fn render(lines: &[Vec<Gen>], text: fn(&Gen) -> String) -> Vec<String> {
    lines
        .iter()
        .map(|line| line.iter().map(text).collect::<Vec<_>>().join(" ,  "))
        .collect()
}

/// Every address the rules allow for one header: an address element whose
/// right neighbour is a trusted address (or, for the right-most element,
/// whose peer is trusted). Lines combine in order; an empty line is one
/// empty element.
fn allowed_from(lines: &[Vec<Gen>], peer_trusted: bool, trusted: &trusted::Trusted) -> Vec<IpAddr> {
    let flat: Vec<&Gen> = lines
        .iter()
        .flat_map(|line| {
            if line.is_empty() {
                vec![&Gen::Empty]
            } else {
                line.iter().collect()
            }
        })
        .collect();
    let mut allowed = Vec::new();
    for (at, element) in flat.iter().enumerate() {
        let Gen::Addr(address, _) = element else {
            continue;
        };
        let right_is_trusted = match flat.get(at + 1) {
            None => peer_trusted,
            Some(Gen::Addr(right, _)) => trusted.contains(*right),
            Some(_) => false,
        };
        if right_is_trusted {
            allowed.push(normalize_ip(*address));
        }
    }
    allowed
}

fn map_of(xff: &[String], forwarded: &[String], extra: &[(String, Vec<u8>)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in xff {
        map.append(XFF, HeaderValue::from_str(line).unwrap());
    }
    for line in forwarded {
        map.append(FWD, HeaderValue::from_str(line).unwrap());
    }
    for (name, value) in extra {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            map.append(name, value);
        }
    }
    map
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    /// The address decided on is the peer, or an address a trusted hop
    /// wrote: the element immediately left of a trusted one. From an
    /// untrusted peer it is always the peer.
    #[test]
    fn the_address_is_the_peer_or_one_a_trusted_hop_wrote(
        peer in address(),
        xff in lines(),
        forwarded in lines(),
    ) {
        let policy = trusting();
        let trusted = trusted::Trusted::new(&TRUSTED.map(|t| t.parse().unwrap()));
        let peer_trusted = trusted.contains(peer);
        let map = map_of(&render(&xff, xff_text), &render(&forwarded, forwarded_text), &[]);
        let got = policy.decide(peer, &map);

        if !peer_trusted {
            prop_assert_eq!(got, ClientIp::new(peer, Source::Peer));
        }
        let mut allowed = vec![normalize_ip(peer)];
        allowed.extend(allowed_from(&xff, peer_trusted, &trusted));
        allowed.extend(allowed_from(&forwarded, peer_trusted, &trusted));
        prop_assert!(
            allowed.contains(&got.ip),
            "{:?} is neither the peer nor written by a trusted hop; allowed: {:?}",
            got,
            allowed
        );
        // A fallback never lands on an untrusted address but the peer.
        if got.source.is_fallback() {
            prop_assert!(got.ip == normalize_ip(peer) || trusted.contains(got.ip), "{:?}", got);
        }
    }

    /// `--trusted-hops N`: the peer, or exactly the Nth element from the right.
    #[test]
    fn trusted_hops_take_the_nth_or_the_peer(
        peer in address(),
        n in 1u8..5,
        xff in lines(),
    ) {
        let map = map_of(&render(&xff, xff_text), &[], &[]);
        let got = hops(n).decide(peer, &map);
        let flat: Vec<&Gen> = xff
            .iter()
            .flat_map(|line| if line.is_empty() { vec![&Gen::Empty] } else { line.iter().collect() })
            .collect();
        let start = flat.len().checked_sub(usize::from(n));
        let nth = start.and_then(|at| flat.get(at));
        let all_addresses = start.is_some_and(|at| flat[at..].iter().all(|e| matches!(e, Gen::Addr(..))));
        prop_assert_eq!(all_addresses, got.source == Source::XForwardedFor, "{:?}", got);
        match nth {
            Some(Gen::Addr(a, _)) if got.source == Source::XForwardedFor => {
                prop_assert_eq!(got.ip, normalize_ip(*a));
            }
            _ => prop_assert_eq!(got.ip, normalize_ip(peer), "{:?}", got),
        }
    }

    /// Whatever a client writes — any printable text, quotes, commas,
    /// brackets, backslashes, `for=` — left of what trusted proxies append,
    /// on the same line or on lines of its own, the walk reads exactly what
    /// they appended: the client address the first proxy wrote, with its
    /// source. Nothing the client wrote is ever read.
    #[test]
    fn what_a_client_writes_left_of_the_proxies_is_never_read(
        peer in trusted_address(),
        client in untrusted_address(),
        chain in prop::collection::vec(trusted_address(), 0..5),
        styles in prop::collection::vec(0u8..4, 6),
        junk in prop::collection::vec("[ -~\t]{0,40}", 1..4),
        same_line in any::<bool>(),
        forwarded in any::<bool>(),
    ) {
        let (header, text, source): (&str, fn(&Gen) -> String, Source) = if forwarded {
            (FWD, forwarded_text, Source::Forwarded)
        } else {
            (XFF, xff_text, Source::XForwardedFor)
        };
        let appended: Vec<String> = std::iter::once(client)
            .chain(chain)
            .zip(styles.iter().copied())
            .map(|(address, style)| text(&Gen::Addr(address, style)))
            .collect();
        let mut lines: Vec<String> = Vec::new();
        if same_line {
            lines.push(format!("{}, {}", junk.join(", "), appended.join(", ")));
        } else {
            lines.extend(junk.iter().cloned());
            lines.push(appended.join(", "));
        }
        let mut map = HeaderMap::new();
        for line in &lines {
            map.append(header, HeaderValue::from_str(line).unwrap());
        }
        prop_assert_eq!(
            trusting().decide(peer, &map),
            ClientIp::new(normalize_ip(client), source),
            "{}: {:?}", header, lines
        );
    }

    /// No input panics, and an untrusted peer is always decided on itself.
    #[test]
    fn arbitrary_headers_never_panic(
        peer in address(),
        raw in prop::collection::vec(
            (
                prop_oneof![
                    Just(XFF.to_owned()),
                    Just(FWD.to_owned()),
                    Just("x-real-ip".to_owned()),
                ],
                prop::collection::vec(any::<u8>(), 0..80),
            ),
            0..6,
        ),
        printable in prop::collection::vec(
            (
                prop_oneof![Just(XFF.to_owned()), Just(FWD.to_owned())],
                "[ -~]{0,60}".prop_map(String::into_bytes),
            ),
            0..6,
        ),
    ) {
        let mut extra = raw;
        extra.extend(printable);
        let map = map_of(&[], &[], &extra);
        let trusted = trusted::Trusted::new(&TRUSTED.map(|t| t.parse().unwrap()));
        // Hops are counted, not checked: only the others depend on the peer.
        let policies = [
            (Policy::default(), true),
            (trusting(), true),
            (with_header("x-real-ip"), true),
            (hops(2), false),
        ];
        for (policy, checks_the_peer) in policies {
            let got = policy.decide(peer, &map);
            if checks_the_peer && !trusted.contains(peer) {
                prop_assert_eq!(got, ClientIp::new(peer, Source::Peer));
            }
        }
    }
}

/// Each source reaches the usage log under a name of its own, never the
/// check door's `named` nor the `unknown` of an event that did not say, and
/// the log counts as fallbacks exactly the walks that stopped short.
#[test]
fn every_source_has_its_own_name_in_the_usage_log() {
    let all = [
        (Source::Peer, "peer"),
        (Source::XForwardedFor, "x-forwarded-for"),
        (Source::Forwarded, "forwarded"),
        (Source::ClientIpHeader, "client-ip-header"),
        (Source::Unknown, "unknown-hop"),
        (Source::Malformed, "malformed"),
        (Source::Conflicting, "conflicting"),
        (Source::TooManyHops, "too-many-hops"),
        (Source::TooFewHops, "too-few-hops"),
    ];
    let mut seen = std::collections::HashSet::new();
    for (source, name) in all {
        let logged = ClientIpSource::from(source);
        assert_eq!(logged.as_str(), name, "{source:?}");
        assert_eq!(source.to_string(), name, "the enforcer's logs say the same");
        assert!(seen.insert(logged), "{source:?} shares {logged}");
        assert_ne!(logged, ClientIpSource::Named);
        let fallback = !matches!(
            source,
            Source::Peer | Source::XForwardedFor | Source::Forwarded | Source::ClientIpHeader
        );
        assert_eq!(logged.is_fallback(), fallback, "{source:?}");
    }
}

#[test]
fn only_peers_in_trusted_proxies_are_trusted_proxies() {
    let policy = trusting();
    assert!(policy.is_trusted_proxy(ip(PROXY)));
    assert!(
        policy.is_trusted_proxy(ip("::ffff:10.0.0.1")),
        "IPv4-mapped"
    );
    assert!(policy.is_trusted_proxy(ip("2001:db8:ffff::7")));
    assert!(!policy.is_trusted_proxy(ip("203.0.113.7")));
    // Without the list, or counting hops, no peer is known to be a proxy.
    assert!(!Policy::default().is_trusted_proxy(ip(PROXY)));
    assert!(!hops(1).is_trusted_proxy(ip(PROXY)));
    assert!(with_header("x-real-ip").is_trusted_proxy(ip(PROXY)));
}
