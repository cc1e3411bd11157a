//! One element of a forwarding header, and what it says about the hop that
//! wrote it: an address, a hop that hides its client, or nothing readable.
//!
//! Only plain addresses count: the standard parser refuses leading zeros,
//! short forms (`127.1`), hex and zone ids (`fe80::1%eth0`), so an odd
//! spelling is never read as some other address. Ports are allowed and
//! dropped.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use ipgate_shared::normalize_ip;

/// What one element says about a hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hop {
    /// A plain address; IPv4-mapped IPv6 is its IPv4 address.
    Addr(IpAddr),
    /// Well-formed, but names no address: `unknown`, an obfuscated
    /// identifier (`_hidden`), or a `Forwarded` element without `for=`.
    Hidden,
    /// Not an element of the header's grammar (empty ones included).
    Malformed,
}

/// An `X-Forwarded-For` element, or the value of `--client-ip-header`:
/// `203.0.113.7`, `203.0.113.7:80`, `2001:db8::1`, `[2001:db8::1]` or
/// `[2001:db8::1]:4711`, with optional spaces around it. `unknown` and
/// obfuscated identifiers, which some proxies write here too, hide the hop.
/// Quotes are not part of this header's syntax.
pub(crate) fn x_forwarded_for(element: &[u8]) -> Hop {
    let element = trim_ows(element);
    if element.eq_ignore_ascii_case(b"unknown") || is_obfuscated(element) {
        return Hop::Hidden;
    }
    address(element).map_or(Hop::Malformed, |ip| Hop::Addr(normalize_ip(ip)))
}

/// A `Forwarded` element (RFC 7239 §4): `pair *( ";" pair )`, each pair
/// `token "=" ( token / quoted-string )`, names case-insensitive, optional
/// spaces around `;`. Only `for=` is read: a node (§6) whose name is an
/// IPv4 address, a bracketed IPv6 address (which must be quoted), `unknown`
/// or an obfuscated identifier, with an optional numeric or obfuscated port.
/// A parameter named twice, a quoted-pair (`\`) or an unterminated quote is
/// malformed: node values never need them.
pub(crate) fn forwarded(element: &[u8]) -> Hop {
    let mut rest = trim_ows(element);
    if rest.is_empty() {
        return Hop::Malformed;
    }
    let mut node_text = None;
    let mut seen = [false; 4];
    loop {
        rest = trim_ows(rest);
        match rest.split_first() {
            None => break,
            // An empty pair, which the grammar allows.
            Some((b';', after)) => {
                rest = after;
                continue;
            }
            Some(_) => {}
        }
        let Some((name, value, after)) = pair(rest) else {
            return Hop::Malformed;
        };
        let known = [&b"for"[..], b"by", b"host", b"proto"]
            .iter()
            .position(|k| name.eq_ignore_ascii_case(k));
        if let Some(slot) = known.and_then(|k| seen.get_mut(k)) {
            if *slot {
                return Hop::Malformed;
            }
            *slot = true;
        }
        if known == Some(0) {
            node_text = Some(value);
        }
        rest = trim_ows(after);
        match rest.split_first() {
            None => break,
            Some((b';', after)) => rest = after,
            Some(_) => return Hop::Malformed,
        }
    }
    node_text.map_or(Hop::Hidden, node)
}

/// `name=value` at the start of `text`: the name, the value (unquoted) and
/// what follows.
fn pair(text: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let name_len = text.iter().take_while(|b| is_tchar(**b)).count();
    let (name, after) = text.split_at(name_len);
    let after = after.strip_prefix(b"=").filter(|_| name_len > 0)?;
    if let Some(quoted) = after.strip_prefix(b"\"") {
        let end = quoted.iter().position(|b| matches!(b, b'"' | b'\\'))?;
        // `end` indexes `quoted`, so both slices exist.
        (quoted.get(end) == Some(&b'"')).then(|| (name, &quoted[..end], &quoted[end + 1..]))
    } else {
        let len = after.iter().take_while(|b| is_tchar(**b)).count();
        (len > 0).then(|| (name, &after[..len], &after[len..]))
    }
}

/// A `Forwarded` node: `nodename [ ":" node-port ]`.
fn node(text: &[u8]) -> Hop {
    let (name, port) = match text.strip_prefix(b"[") {
        Some(inner) => match inner.iter().position(|b| *b == b']') {
            Some(close) => (&text[..close + 2], &inner[close + 1..]),
            None => return Hop::Malformed,
        },
        None => match text.iter().position(|b| *b == b':') {
            Some(colon) => (&text[..colon], &text[colon..]),
            None => (text, &[][..]),
        },
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', port)) => is_port(port) || is_obfuscated(port),
        Some(_) => false,
    };
    if !port_ok {
        return Hop::Malformed;
    }
    if name.eq_ignore_ascii_case(b"unknown") || is_obfuscated(name) {
        return Hop::Hidden;
    }
    let ip = match name {
        [b'[', v6 @ .., b']'] => ipv6(v6).map(IpAddr::V6),
        v4 => ipv4(v4).map(IpAddr::V4),
    };
    ip.map_or(Hop::Malformed, |ip| Hop::Addr(normalize_ip(ip)))
}

/// An address with an optional port: bracketed IPv6 may carry one; without
/// brackets, one colon is IPv4 and a port, more is IPv6 without a port.
fn address(text: &[u8]) -> Option<IpAddr> {
    if let Some(inner) = text.strip_prefix(b"[") {
        let close = inner.iter().position(|b| *b == b']')?;
        let ip = ipv6(&inner[..close])?;
        return match &inner[close + 1..] {
            [] => Some(IpAddr::V6(ip)),
            [b':', port @ ..] if is_port(port) => Some(IpAddr::V6(ip)),
            _ => None,
        };
    }
    let mut colons = text.iter().enumerate().filter(|(_, b)| **b == b':');
    match (colons.next(), colons.next()) {
        (None, _) => ipv4(text).map(IpAddr::V4),
        (Some((colon, _)), None) => {
            let ip = ipv4(&text[..colon])?;
            is_port(&text[colon + 1..]).then_some(IpAddr::V4(ip))
        }
        (Some(_), Some(_)) => ipv6(text).map(IpAddr::V6),
    }
}

fn ipv4(text: &[u8]) -> Option<Ipv4Addr> {
    Ipv4Addr::from_str(std::str::from_utf8(text).ok()?).ok()
}

fn ipv6(text: &[u8]) -> Option<Ipv6Addr> {
    Ipv6Addr::from_str(std::str::from_utf8(text).ok()?).ok()
}

/// One to five digits, at most 65535.
fn is_port(text: &[u8]) -> bool {
    (1..=5).contains(&text.len())
        && text.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse::<u16>().ok())
            .is_some()
}

/// `"_" 1*( ALPHA / DIGIT / "." / "_" / "-" )` (RFC 7239 §6.3).
fn is_obfuscated(text: &[u8]) -> bool {
    match text.split_first() {
        Some((b'_', rest)) => {
            !rest.is_empty()
                && rest
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        _ => false,
    }
}

/// A token character (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `text` without spaces and tabs at either end.
pub(crate) fn trim_ows(text: &[u8]) -> &[u8] {
    let ows = |b: &u8| matches!(b, b' ' | b'\t');
    let start = text.iter().position(|b| !ows(b)).unwrap_or(text.len());
    let end = text.iter().rposition(|b| !ows(b)).map_or(start, |e| e + 1);
    &text[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Hop {
        Hop::Addr(s.parse().unwrap())
    }

    #[test]
    fn x_forwarded_for_elements() {
        let cases: &[(&str, Hop)] = &[
            ("203.0.113.7", addr("203.0.113.7")),
            ("  203.0.113.7\t", addr("203.0.113.7")),
            ("203.0.113.7:80", addr("203.0.113.7")),
            ("2001:db8::1", addr("2001:db8::1")),
            ("[2001:db8::1]", addr("2001:db8::1")),
            ("[2001:db8::1]:4711", addr("2001:db8::1")),
            // IPv4-mapped decides as IPv4.
            ("::ffff:203.0.113.7", addr("203.0.113.7")),
            ("[::ffff:203.0.113.7]:80", addr("203.0.113.7")),
            ("unknown", Hop::Hidden),
            ("UNKNOWN", Hop::Hidden),
            ("_hidden", Hop::Hidden),
            ("", Hop::Malformed),
            ("   ", Hop::Malformed),
            ("203.0.113.7:", Hop::Malformed),
            ("203.0.113.7:65536", Hop::Malformed),
            ("203.0.113.7:+80", Hop::Malformed),
            ("203.0.113.7:80:80", Hop::Malformed),
            ("[2001:db8::1]:", Hop::Malformed),
            ("[2001:db8::1", Hop::Malformed),
            ("[203.0.113.7]", Hop::Malformed),
            ("\"203.0.113.7\"", Hop::Malformed),
            ("010.0.0.1", Hop::Malformed),
            ("127.1", Hop::Malformed),
            ("0x7f.0.0.1", Hop::Malformed),
            ("fe80::1%eth0", Hop::Malformed),
            ("[fe80::1%25eth0]", Hop::Malformed),
            ("203.0.113.7 198.51.100.1", Hop::Malformed),
            ("_", Hop::Malformed),
            ("example.com", Hop::Malformed),
        ];
        for (text, expected) in cases {
            assert_eq!(x_forwarded_for(text.as_bytes()), *expected, "{text:?}");
        }
        assert_eq!(x_forwarded_for(b"203.0.113.\xff"), Hop::Malformed);
    }

    #[test]
    fn forwarded_elements() {
        let cases: &[(&str, Hop)] = &[
            ("for=203.0.113.7", addr("203.0.113.7")),
            ("For=203.0.113.7", addr("203.0.113.7")),
            ("for=\"203.0.113.7\"", addr("203.0.113.7")),
            ("for=\"203.0.113.7:80\"", addr("203.0.113.7")),
            ("for=\"[2001:db8::1]:4711\"", addr("2001:db8::1")),
            ("for=\"[2001:db8::1]\"", addr("2001:db8::1")),
            ("for=\"[::ffff:203.0.113.7]\"", addr("203.0.113.7")),
            ("for=\"203.0.113.7:_port1\"", addr("203.0.113.7")),
            (
                "for=192.0.2.60;proto=http;by=203.0.113.43",
                addr("192.0.2.60"),
            ),
            ("proto=https ; for=192.0.2.60 ;", addr("192.0.2.60")),
            (";;for=192.0.2.60", addr("192.0.2.60")),
            ("for=192.0.2.60;ext=\"a;b,c\"", addr("192.0.2.60")),
            ("for=unknown", Hop::Hidden),
            ("for=\"unknown:4711\"", Hop::Hidden),
            ("for=_hidden", Hop::Hidden),
            ("for=\"_hidden:_port\"", Hop::Hidden),
            ("for=_x-y.z", Hop::Hidden),
            ("proto=https;by=203.0.113.43", Hop::Hidden),
            ("", Hop::Malformed),
            ("for", Hop::Malformed),
            ("for=", Hop::Malformed),
            ("for=\"\"", Hop::Malformed),
            ("=203.0.113.7", Hop::Malformed),
            ("for = 203.0.113.7", Hop::Malformed),
            // Unquoted IPv6 is not a token, and IPv6 must be bracketed.
            ("for=[2001:db8::1]", Hop::Malformed),
            ("for=\"2001:db8::1\"", Hop::Malformed),
            ("for=\"203.0.113.7", Hop::Malformed),
            ("for=203.0.113.7\"", Hop::Malformed),
            ("for=\"203.0.\\113.7\"", Hop::Malformed),
            ("for=203.0.113.7;for=198.51.100.1", Hop::Malformed),
            ("for=203.0.113.7;by=a;BY=b", Hop::Malformed),
            ("for=203.0.113.7 x", Hop::Malformed),
            ("for=\"203.0.113.7:99999\"", Hop::Malformed),
            ("for=\"[fe80::1%25eth0]\"", Hop::Malformed),
            ("for=\"[203.0.113.7]\"", Hop::Malformed),
            ("for=010.0.0.1", Hop::Malformed),
            ("for=example.com", Hop::Malformed),
            ("for=_", Hop::Malformed),
        ];
        for (text, expected) in cases {
            assert_eq!(forwarded(text.as_bytes()), *expected, "{text:?}");
        }
    }

    #[test]
    fn spaces_and_tabs_are_trimmed() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
    }
}
