//! The headers of an allowed request on its way to the upstream, and of
//! the upstream's answer on its way back (docs/door-proxy.md).
//!
//! Both ways, hop-by-hop fields go: the fixed ones of RFC 9110 §7.6.1 and
//! every field the `Connection` header names. What the door adds or keeps
//! on purpose goes back in afterwards: `TE: trailers` (so trailers, gRPC's
//! among them, can pass), a WebSocket upgrade's `Connection` and `Upgrade`,
//! the request id and the client address in `X-Forwarded-For`. With
//! `--hide-credentials`, the headers that carried the ipgate key stay
//! behind.

use std::net::IpAddr;

use http::{
    HeaderMap, HeaderName, HeaderValue, StatusCode, Version,
    header::{AUTHORIZATION, CONNECTION, TE, UPGRADE},
};
use ipgate_shared::PresentedKey;

pub(crate) const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Fields that describe one connection, never forwarded (RFC 9110 §7.6.1,
/// and the `Proxy-` fields meant for a proxy, which ipgate consumes none
/// of). `Trailer` is not among them: it announces end-to-end trailer
/// fields, and HTTP/1.1 sends only the trailers it names.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// The only protocol a client may switch to through the door. Any other
/// upgrade is dropped, `h2c` above all: an HTTP/2 connection tunnelled
/// after one decided request would carry further requests, to any path,
/// that the door never decides.
const WEBSOCKET: &str = "websocket";

/// What a message's hop-by-hop fields said that the door acts on.
#[derive(Debug, Default, PartialEq, Eq)]
struct Hops {
    /// `Connection: upgrade` with `Upgrade: websocket` (the value as sent).
    websocket: Option<HeaderValue>,
    /// `TE` includes `trailers`.
    trailers: bool,
}

/// Readies an allowed request's headers for the upstream: hop-by-hop
/// fields out, `TE: trailers` kept, the ipgate key dropped when
/// `hide_credentials`, `x-request-id` set, the decided address appended to
/// `X-Forwarded-For`. True when the request asks for a WebSocket, whose
/// `Connection: upgrade` and `Upgrade` go upstream too.
pub(crate) fn to_upstream(
    headers: &mut HeaderMap,
    version: Version,
    request_id: &str,
    client_ip: IpAddr,
    hide_credentials: bool,
) -> bool {
    let hops = strip_hop_by_hop(headers);
    if hide_credentials {
        hide_key(headers);
    }
    if hops.trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    set(headers, X_REQUEST_ID, request_id);
    append_forwarded_for(headers, client_ip);
    // Only HTTP/1.1 upgrades a connection with these fields (HTTP/2 would
    // need extended CONNECT, which the door does not offer).
    match hops.websocket {
        Some(protocol) if version == Version::HTTP_11 => {
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(UPGRADE, protocol);
            true
        }
        _ => false,
    }
}

/// Readies the upstream's answer for the client: hop-by-hop fields out,
/// `x-request-id` set. True when it switches to the WebSocket the client
/// asked for (`upgrading`): a `101` whose `Connection: upgrade` and
/// `Upgrade: websocket` then stay.
pub(crate) fn to_client(
    headers: &mut HeaderMap,
    status: StatusCode,
    request_id: &str,
    upgrading: bool,
) -> bool {
    let hops = strip_hop_by_hop(headers);
    set(headers, X_REQUEST_ID, request_id);
    match hops.websocket {
        Some(protocol) if upgrading && status == StatusCode::SWITCHING_PROTOCOLS => {
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(UPGRADE, protocol);
            true
        }
        _ => false,
    }
}

/// Removes every hop-by-hop field, and says what they asked for.
fn strip_hop_by_hop(headers: &mut HeaderMap) -> Hops {
    let named: Vec<HeaderName> = tokens(headers, &CONNECTION)
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    let upgrade_asked = named.contains(&UPGRADE);
    let trailers = tokens(headers, &TE).any(|t| {
        // `trailers` takes no parameters, but a `;q=` is harmless.
        let token = t.split(';').next().unwrap_or_default().trim();
        token.eq_ignore_ascii_case("trailers")
    });
    let mut upgrades = headers.get_all(UPGRADE).iter();
    let websocket = match (upgrade_asked, upgrades.next(), upgrades.next()) {
        // One protocol, and the one the door passes; a list such as
        // `websocket, h2c` would let the upstream choose the other.
        (true, Some(value), None)
            if value
                .to_str()
                .is_ok_and(|v| v.trim().eq_ignore_ascii_case(WEBSOCKET)) =>
        {
            Some(value.clone())
        }
        _ => None,
    };
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    Hops {
        websocket,
        trailers,
    }
}

/// The comma-separated tokens of every `name` field, trimmed, empty ones
/// skipped; fields that are not text are skipped.
fn tokens<'h>(headers: &'h HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'h str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Drops the fields the door read the ipgate key from: every `X-API-Key`,
/// and every `Authorization` with a bearer token (or that is not text,
/// which the door counted as a key). Other `Authorization` schemes, such
/// as `Basic`, are the upstream's and stay.
fn hide_key(headers: &mut HeaderMap) {
    headers.remove(X_API_KEY);
    let kept: Vec<HeaderValue> = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter(|v| v.to_str().is_ok_and(|t| PresentedKey::bearer(t).is_none()))
        .cloned()
        .collect();
    headers.remove(AUTHORIZATION);
    for value in kept {
        headers.append(AUTHORIZATION, value);
    }
}

/// Sets a header from text the door made itself (ids, addresses).
pub(crate) fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

fn append_forwarded_for(headers: &mut HeaderMap, client_ip: IpAddr) {
    let prior: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let value = if prior.is_empty() {
        client_ip.to_string()
    } else {
        format!("{}, {client_ip}", prior.join(", "))
    };
    set(headers, X_FORWARDED_FOR, &value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(fields: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in fields {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    const IP: &str = "203.0.113.5";

    fn upstream(h: &mut HeaderMap, version: Version, hide: bool) -> bool {
        to_upstream(h, version, "rid-1", IP.parse().unwrap(), hide)
    }

    #[test]
    fn hop_by_hop_fields_go_and_forwarded_for_is_appended() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic eA=="),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-kept", "1"),
            ("trailer", "x-checksum"),
            ("x-forwarded-for", "198.51.100.1"),
            ("x-request-id", "from-the-client"),
        ]);
        assert!(!upstream(&mut h, Version::HTTP_11, false));
        for gone in [
            "connection",
            "x-secret-hop",
            "keep-alive",
            "proxy-authorization",
            "transfer-encoding",
            "upgrade",
        ] {
            assert!(h.get(gone).is_none(), "{gone} forwarded");
        }
        assert_eq!(h["x-kept"], "1");
        assert_eq!(h["trailer"], "x-checksum", "Trailer is end to end");
        assert_eq!(h["x-forwarded-for"], "198.51.100.1, 203.0.113.5");
        assert_eq!(h["x-request-id"], "rid-1");
    }

    #[test]
    fn te_keeps_only_trailers() {
        let mut h = headers(&[("te", "gzip, trailers")]);
        upstream(&mut h, Version::HTTP_2, false);
        assert_eq!(h["te"], "trailers");
        let mut h = headers(&[("te", "gzip")]);
        upstream(&mut h, Version::HTTP_11, false);
        assert!(h.get("te").is_none());
    }

    #[test]
    fn only_a_websocket_upgrade_passes_and_only_over_http_1_1() {
        let ws = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ];
        let mut h = headers(&ws);
        assert!(upstream(&mut h, Version::HTTP_11, false));
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "WebSocket");

        let mut h = headers(&ws);
        assert!(!upstream(&mut h, Version::HTTP_2, false));
        assert!(h.get("upgrade").is_none() && h.get("connection").is_none());

        for refused in [
            &[("connection", "upgrade"), ("upgrade", "h2c")][..],
            &[("connection", "upgrade"), ("upgrade", "websocket, h2c")],
            &[
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("upgrade", "h2c"),
            ],
            // An Upgrade that Connection does not name is not asked for.
            &[("upgrade", "websocket")],
        ] {
            let mut h = headers(refused);
            assert!(!upstream(&mut h, Version::HTTP_11, false), "{refused:?}");
            assert!(h.get("upgrade").is_none(), "{refused:?}");
        }
    }

    #[test]
    fn answers_keep_an_upgrade_only_on_the_101_the_client_asked_for() {
        let fields = [("connection", "Upgrade"), ("upgrade", "websocket")];
        let mut h = headers(&fields);
        assert!(to_client(
            &mut h,
            StatusCode::SWITCHING_PROTOCOLS,
            "r",
            true
        ));
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["x-request-id"], "r");

        let mut h = headers(&fields);
        assert!(!to_client(
            &mut h,
            StatusCode::SWITCHING_PROTOCOLS,
            "r",
            false
        ));
        let mut h = headers(&fields);
        assert!(!to_client(&mut h, StatusCode::OK, "r", true));
        assert!(h.get("upgrade").is_none());
        let mut h = headers(&[("connection", "upgrade"), ("upgrade", "h2c")]);
        assert!(!to_client(
            &mut h,
            StatusCode::SWITCHING_PROTOCOLS,
            "r",
            true
        ));
    }

    #[test]
    fn hiding_credentials_drops_what_carried_the_key_and_keeps_the_rest() {
        let fields = [
            ("x-api-key", "ipg_live_k"),
            ("authorization", "Bearer ipg_live_k"),
            ("authorization", "Basic dXNlcjpwdw=="),
            ("cookie", "session=1"),
        ];
        let mut h = headers(&fields);
        upstream(&mut h, Version::HTTP_11, true);
        assert!(h.get("x-api-key").is_none());
        let auth: Vec<_> = h.get_all("authorization").iter().collect();
        assert_eq!(auth, ["Basic dXNlcjpwdw=="]);
        assert_eq!(h["cookie"], "session=1");

        let mut h = headers(&fields);
        upstream(&mut h, Version::HTTP_11, false);
        assert_eq!(h["x-api-key"], "ipg_live_k");
        assert_eq!(h.get_all("authorization").iter().count(), 2);

        let mut h = HeaderMap::new();
        h.append(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer k\xff").unwrap(),
        );
        upstream(&mut h, Version::HTTP_11, true);
        assert!(h.get("authorization").is_none(), "an unreadable key too");
    }
}
