//! Property: the entry parser (`Cidr`'s `FromStr` and `Cidr::parse_entry`)
//! never panics, and whatever it accepts is canonical and within the rules
//! of docs/entries.md. Fed arbitrary text, text over the characters
//! addresses are written in, and near misses of real addresses: leading
//! zeros, zones and ports are always refused, and an IPv4-mapped address
//! is accepted exactly when its IPv4 form is, as that IPv4 network.
//!
//! `refusals_lead_somewhere.rs` checks the other side: that what a refusal
//! suggests is accepted.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use ipgate_shared::{
    Cidr,
    entry::{MIN_IPV4_PREFIX, MIN_IPV6_PREFIX},
};
use ipnet::IpNet;
use proptest::prelude::*;

/// Everything the parser can say about `input`: both entry points, with
/// internal ranges refused and allowed. Checks what holds for any input.
fn parse_all(input: &str) -> Result<Option<Cidr>, TestCaseError> {
    let plain = Cidr::from_str(input).ok();
    let allowed = Cidr::parse_entry(input, true).ok();
    let strict = Cidr::parse_entry(input, false).ok();
    // The internal-range rule only ever takes away; with it off, parsing
    // an entry is the plain parse.
    prop_assert_eq!(
        allowed,
        plain,
        "{:?}: parse_entry(allow) vs from_str",
        input
    );
    if let Some(strict) = strict {
        prop_assert_eq!(Some(strict), plain, "{:?}: strict accepts more", input);
        prop_assert!(
            strict.internal_range().is_none(),
            "{:?} accepted as {} inside {:?}",
            input,
            strict,
            strict.internal_range()
        );
    }
    if let Some(cidr) = plain {
        accepted_is_canonical(input, cidr)?;
    }
    Ok(plain)
}

/// What every accepted network must be.
fn accepted_is_canonical(input: &str, cidr: Cidr) -> Result<(), TestCaseError> {
    let shown = cidr.to_string();
    // Canonical: the shown form parses back to the same value, and shows
    // the same again.
    let again = Cidr::from_str(&shown);
    prop_assert_eq!(
        again.as_ref().ok(),
        Some(&cidr),
        "{:?} -> {} -> {:?}",
        input,
        shown,
        again
    );
    prop_assert_eq!(again.map(|c| c.to_string()).ok(), Some(shown.clone()));
    let net = cidr.net();
    prop_assert_eq!(net.trunc(), net, "{:?} -> {} has host bits", input, shown);
    match net {
        IpNet::V4(v4) => prop_assert!(
            (MIN_IPV4_PREFIX..=32).contains(&v4.prefix_len()),
            "{:?} -> {}: IPv4 prefix out of the rules",
            input,
            shown
        ),
        IpNet::V6(v6) => {
            prop_assert!(
                (MIN_IPV6_PREFIX..=128).contains(&v6.prefix_len()),
                "{:?} -> {}: IPv6 prefix out of the rules",
                input,
                shown
            );
            // An IPv4-mapped network is only ever stored as IPv4.
            prop_assert!(
                v6.network().to_ipv4_mapped().is_none(),
                "{:?} -> {}: an IPv4-mapped network kept as IPv6",
                input,
                shown
            );
        }
    }
    // Nothing accepted carried a zone, a port or brackets, or a number
    // with a leading zero (in a dotted part or the prefix length).
    prop_assert!(
        !input.contains(['%', '[', ']']),
        "{:?} accepted as {}",
        input,
        shown
    );
    let (address, prefix) = match input.trim().split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (input.trim(), None),
    };
    let dotted = address.rsplit(':').next().filter(|tail| tail.contains('.'));
    let numbers = dotted.into_iter().flat_map(|d| d.split('.')).chain(prefix);
    for number in numbers {
        prop_assert!(
            number == "0" || !number.starts_with('0'),
            "{:?} accepted as {}: {:?} has a leading zero",
            input,
            shown,
            number
        );
    }
    // What the standard parser makes of it is the same network: ours only
    // refuses more, never reads another address. (The standard IPv4 parser
    // refuses leading zeros, short forms and hex too.)
    let text = input.trim();
    let standard = match text.split_once('/') {
        None => IpAddr::from_str(text).ok().map(IpNet::from),
        Some(_) => IpNet::from_str(text).ok(),
    };
    let standard = standard.map(|n| match n {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).ok(),
            None => Some(n),
        },
        other => Some(other),
    });
    prop_assert_eq!(
        standard,
        Some(Some(net)),
        "{:?} -> {}: the standard parser reads something else",
        input,
        shown
    );
    Ok(())
}

/// Text over the characters addresses are written in, so near misses
/// come up far more often than in arbitrary text.
fn address_like() -> impl Strategy<Value = String> {
    "[0-9a-fA-FxX:./%\\[\\] +-]{0,48}"
}

/// A network as an operator might write it: IPv4, IPv6 or IPv4-mapped,
/// with or without a prefix length, most of them acceptable.
fn written_network() -> impl Strategy<Value = String> {
    prop_oneof![
        (v4(), MIN_IPV4_PREFIX..=32).prop_map(|(ip, len)| {
            let net = IpNet::new(IpAddr::V4(ip), len).map(|n| n.trunc());
            net.map_or_else(|_| ip.to_string(), |n| n.to_string())
        }),
        v4().prop_map(|ip| ip.to_string()),
        (v6(), MIN_IPV6_PREFIX..=128).prop_map(|(ip, len)| {
            let net = IpNet::new(IpAddr::V6(ip), len).map(|n| n.trunc());
            net.map_or_else(|_| ip.to_string(), |n| n.to_string())
        }),
        (v4(), any::<u8>()).prop_map(|(ip, style)| mapped_spelling(ip, style)),
    ]
}

/// One small edit at a place in the text: insert, replace or delete a
/// character the address grammar cares about.
#[derive(Clone, Debug)]
enum Edit {
    Insert(usize, char),
    Replace(usize, char),
    Delete(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let c = prop::sample::select(&b"0123456789abcdefABCDEFx:./%[] +-"[..]).prop_map(char::from);
    prop_oneof![
        (any::<usize>(), c.clone()).prop_map(|(at, c)| Edit::Insert(at, c)),
        (any::<usize>(), c).prop_map(|(at, c)| Edit::Replace(at, c)),
        any::<usize>().prop_map(Edit::Delete),
    ]
}

/// A written network after one to three edits: a near miss far more often
/// than arbitrary text, and still accepted now and then.
fn near_miss() -> impl Strategy<Value = String> {
    (written_network(), prop::collection::vec(edit(), 1..=3)).prop_map(|(text, edits)| {
        // The text is ASCII, and every edit keeps it so: bytes are chars.
        let mut chars: Vec<char> = text.chars().collect();
        for e in edits {
            let len = chars.len();
            match e {
                Edit::Insert(at, c) => chars.insert(at % (len + 1), c),
                Edit::Replace(at, c) if len > 0 => chars[at % len] = c,
                Edit::Delete(at) if len > 0 => {
                    chars.remove(at % len);
                }
                Edit::Replace(..) | Edit::Delete(_) => {}
            }
        }
        chars.into_iter().collect()
    })
}

fn v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}

/// An optional `/len` up to one past the family's longest prefix.
fn prefix(max: u8) -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        (0..=max + 1).prop_map(|p| format!("/{p}"))
    ]
}

/// `ip` with one octet given a leading zero (`010`, `00`, `0255`).
fn leading_zero() -> impl Strategy<Value = String> {
    (v4(), 0usize..4, 1usize..=2, prefix(32)).prop_map(|(ip, at, zeros, prefix)| {
        let octets: Vec<String> = ip
            .octets()
            .iter()
            .enumerate()
            .map(|(i, o)| {
                if i == at {
                    format!("{}{o}", "0".repeat(zeros))
                } else {
                    o.to_string()
                }
            })
            .collect();
        format!("{}{prefix}", octets.join("."))
    })
}

/// An address of either family with a zone: `fe80::1%eth0`, `1.2.3.4%1`.
fn zoned() -> impl Strategy<Value = String> {
    let addr = prop_oneof![
        v4().prop_map(|a| a.to_string()),
        v6().prop_map(|a| a.to_string())
    ];
    (addr, "[a-z0-9]{0,6}", prefix(128)).prop_map(|(a, zone, p)| format!("{a}%{zone}{p}"))
}

/// An address with a port, or in brackets: `1.2.3.4:80`, `[2001:db8::1]`,
/// `[2001:db8::1]:443`.
fn with_port() -> impl Strategy<Value = String> {
    prop_oneof![
        (v4(), any::<u16>()).prop_map(|(a, port)| format!("{a}:{port}")),
        (v6(), any::<u16>()).prop_map(|(a, port)| format!("[{a}]:{port}")),
        v6().prop_map(|a| format!("[{a}]")),
        (v4(), any::<u16>(), prefix(32)).prop_map(|(a, port, p)| format!("{a}:{port}{p}")),
    ]
}

/// Short forms and other spellings only some parsers read as an IPv4
/// address: `127.1`, `0x7f.0.0.1`, a trailing dot, an integer.
fn other_spellings() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<u8>(), any::<u32>()).prop_map(|(a, b)| format!("{a}.{}", b & 0x00ff_ffff)),
        (any::<u8>(), any::<u8>(), any::<u16>()).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
        v4().prop_map(|a| {
            let o = a.octets();
            format!("0x{:x}.{}.{}.{}", o[0], o[1], o[2], o[3])
        }),
        v4().prop_map(|a| format!("{a}.")),
        any::<u32>().prop_map(|n| n.to_string()),
    ]
}

/// Ways to write an IPv4-mapped address: dotted or hex, any case.
fn mapped_spelling(ip: Ipv4Addr, style: u8) -> String {
    let o = ip.octets();
    let hex = format!(
        "{:x}:{:x}",
        u16::from_be_bytes([o[0], o[1]]),
        u16::from_be_bytes([o[2], o[3]])
    );
    match style % 4 {
        0 => format!("::ffff:{ip}"),
        1 => format!("::FFFF:{ip}"),
        2 => format!("::ffff:{hex}"),
        _ => format!("0:0:0:0:0:ffff:{}", hex.to_uppercase()),
    }
}

proptest! {
    // Bounded, so the property runs in every `cargo test`.
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn arbitrary_text_never_panics_and_what_is_accepted_is_canonical(input in any::<String>()) {
        parse_all(&input)?;
    }

    #[test]
    fn address_like_text_never_panics_and_what_is_accepted_is_canonical(
        input in address_like(),
    ) {
        parse_all(&input)?;
    }

    #[test]
    fn near_misses_never_panic_and_what_is_accepted_is_canonical(input in near_miss()) {
        parse_all(&input)?;
    }

    #[test]
    fn real_networks_are_accepted_exactly_when_the_rules_allow(
        ip in prop_oneof![v4().prop_map(IpAddr::V4), v6().prop_map(IpAddr::V6)],
        len in 0u8..=128,
        spaces in (0usize..3, 0usize..3),
    ) {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = len.min(max);
        let min = if ip.is_ipv4() { MIN_IPV4_PREFIX } else { MIN_IPV6_PREFIX };
        let input = format!("{}{ip}/{len}{}", " ".repeat(spaces.0), " ".repeat(spaces.1));
        let net = IpNet::new(ip, len).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mapped = matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
        let parsed = parse_all(&input)?;
        if !mapped {
            let expected = len >= min && net.trunc() == net;
            prop_assert_eq!(parsed.is_some(), expected, "{:?}: {:?}", input, parsed);
            if let Some(cidr) = parsed {
                prop_assert_eq!(cidr.net(), net);
            }
        }
    }

    #[test]
    fn leading_zeros_are_always_refused(input in leading_zero()) {
        prop_assert_eq!(parse_all(&input)?, None, "{:?} accepted", input);
        let mapped = format!("::ffff:{input}");
        prop_assert_eq!(parse_all(&mapped)?, None, "{:?} accepted", mapped);
    }

    #[test]
    fn zones_are_always_refused(input in zoned()) {
        prop_assert_eq!(parse_all(&input)?, None, "{:?} accepted", input);
    }

    #[test]
    fn ports_and_brackets_are_always_refused(input in with_port()) {
        prop_assert_eq!(parse_all(&input)?, None, "{:?} accepted", input);
    }

    #[test]
    fn short_and_hex_ipv4_spellings_are_always_refused(input in other_spellings()) {
        prop_assert_eq!(parse_all(&input)?, None, "{:?} accepted", input);
    }

    #[test]
    fn ipv4_mapped_input_is_accepted_only_as_its_ipv4_form(
        ip in v4(),
        style in any::<u8>(),
        len in prop::option::of(0u8..=32),
    ) {
        let (mapped, plain) = match len {
            None => (mapped_spelling(ip, style), ip.to_string()),
            Some(len) => (
                format!("{}/{}", mapped_spelling(ip, style), u16::from(len) + 96),
                format!("{ip}/{len}"),
            ),
        };
        let from_mapped = parse_all(&mapped)?;
        prop_assert_eq!(from_mapped, parse_all(&plain)?, "{:?} vs {:?}", mapped, plain);
        if let Some(cidr) = from_mapped {
            prop_assert!(matches!(cidr.net(), IpNet::V4(_)), "{:?} -> {}", mapped, cidr);
            // The strict rules treat it as the IPv4 network too.
            prop_assert_eq!(
                Cidr::parse_entry(&mapped, false).ok(),
                Cidr::parse_entry(&plain, false).ok()
            );
        }
    }
}
