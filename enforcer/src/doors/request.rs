//! One way to read an HTTP request for a decision, for every HTTP door: the
//! reverse proxy (the request itself), Envoy's ext_authz (the request Envoy
//! describes) and the auth endpoint (the request nginx or Traefik
//! describes) all read the same things the same way:
//!
//! - the **key** from `Authorization: Bearer <key>` and `X-API-Key`, never
//!   from the query string, which ends up in logs ([`presented_key`]);
//! - the **method** as sent;
//! - the **path** without query or fragment, put in its normal form
//!   ([`ipgate_shared::path`]), or kept as sent when it has none so the
//!   decision refuses it and the log shows what came ([`target_path`]
//!   first, for a door that is told a whole request target);
//! - the **client address**, from [`client_ip::Policy`], with the peer the
//!   door knows (the TCP peer, a PROXY header's source, or the source Envoy
//!   reports) and the request's headers.
//!
//! [`ReadRequest::input`] turns what was read into the one
//! [`DecisionInput`] every door hands to the enforcer.

use std::{borrow::Cow, net::SocketAddr};

use http::{HeaderMap, HeaderName, HeaderValue, header::AUTHORIZATION};
use ipgate_shared::{ApiSlug, Door, PresentedKey, path};

use crate::{
    client_ip::{self, ClientIp},
    state::DecisionInput,
};

/// The header many clients send their key in.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Stands in for a key header that is not readable text: it never parses as
/// a key, so such a request is refused rather than treated as keyless.
pub(crate) const UNREADABLE_KEY: &str = "<unreadable key header>";

/// What a door read from one request, ready to be decided.
#[derive(Debug)]
pub struct ReadRequest<'a> {
    /// The method as the client sent it.
    pub method: &'a str,
    /// The path as sent, without query string or fragment.
    pub raw_path: &'a str,
    /// The path in normal form, or why it has none.
    pub normal_path: Result<Cow<'a, str>, path::BadPath>,
    /// Every key the request presents.
    pub key: PresentedKey<'a>,
    /// The address the request is decided on, and where it was found.
    pub client: ClientIp,
}

impl<'a> ReadRequest<'a> {
    /// Reads a request for `method` and `path` (without query string; see
    /// [`target_path`]) with `headers`, from `peer`, whose client address
    /// `policy` finds.
    pub fn read(
        policy: &client_ip::Policy,
        peer: SocketAddr,
        method: &'a str,
        path: &'a str,
        headers: &'a HeaderMap,
    ) -> Self {
        ReadRequest {
            method,
            raw_path: path,
            normal_path: path::normalize(path),
            key: presented_key(headers),
            client: policy.resolve(peer, headers),
        }
    }

    /// The path the decision and the usage log get: the normal form, or
    /// the path as sent when it has none (the decision refuses it with
    /// `BAD_PATH`, and the log shows what came).
    pub fn decided_path(&self) -> &str {
        self.normal_path.as_deref().unwrap_or(self.raw_path)
    }

    /// The decision's input for this request to `api` through `door`, with
    /// the request id chosen before the door when there is one.
    pub fn input<'r>(
        &'r self,
        door: Door,
        api: &'r str,
        request_id: Option<&'r str>,
    ) -> DecisionInput<'r> {
        DecisionInput {
            door,
            api,
            key: self.key,
            client_ip: self.client.ip,
            // Where the address came from, fallbacks included, so the usage
            // log can tell a real client from a header that was not followed.
            client_ip_source: self.client.source.into(),
            method: self.method,
            // The decision normalises again (a no-op on a normal path).
            path: self.decided_path(),
            request_id,
        }
    }
}

/// Every key the request presents: bearer tokens and `X-API-Key` values.
///
/// `Authorization` values of other schemes (Basic, ...) are ignored: they
/// may be meant for the service behind. An `X-API-Key` is trimmed, and an
/// empty one counts as absent. The same key in several headers is one key;
/// two different keys are [`PresentedKey::Conflicting`]. A value that is not
/// readable text counts as an invalid key, never as no key.
pub fn presented_key(headers: &HeaderMap) -> PresentedKey<'_> {
    let bearer = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(|v| match v.to_str() {
            Ok(text) => PresentedKey::bearer(text),
            Err(_) => Some(UNREADABLE_KEY),
        });
    let api_key = headers
        .get_all(X_API_KEY)
        .iter()
        .filter_map(|v| match v.to_str() {
            Ok(text) => Some(text.trim()).filter(|t| !t.is_empty()),
            Err(_) => Some(UNREADABLE_KEY),
        });
    PresentedKey::from_candidates(bearer.chain(api_key))
}

/// The headers that carried a key, which `--hide-credentials` keeps from
/// the service behind: `X-API-Key` whenever present, and `Authorization`
/// when one of its values is a bearer token (or unreadable, and so read as
/// a key). An `Authorization: Basic …` alone is left for the service.
pub fn key_headers(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut names = Vec::new();
    let bearer = headers.get_all(AUTHORIZATION).iter().any(|v| {
        v.to_str()
            .map_or(true, |t| PresentedKey::bearer(t).is_some())
    });
    if bearer {
        names.push(AUTHORIZATION);
    }
    if headers.contains_key(X_API_KEY) {
        names.push(X_API_KEY);
    }
    names
}

/// The path of a request target as a proxy reports it, without query
/// string or fragment: `/a/b` of origin-form `/a/b?q=1`, and of
/// absolute-form `http://host/a/b?q=1` (an absolute URI without a path is
/// `""`, which the normal form reads as `/`). Anything else is returned as
/// it is, and the decision refuses it as a path not starting with `/`.
pub fn target_path(target: &str) -> &str {
    let end = target.find(['?', '#']).unwrap_or(target.len());
    let before_query = &target[..end];
    if before_query.starts_with('/') {
        return before_query;
    }
    match before_query.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            rest.find('/').map_or("", |slash| &rest[slash..])
        }
        _ => before_query,
    }
}

/// The path of a request target a door read itself: the URI's path, or,
/// for an authority-form target (`CONNECT host:port`), which names no
/// path, the authority as sent. That has no normal form, so such a request
/// is refused as `BAD_PATH`, like `OPTIONS *`, and never decided as `/`.
pub fn uri_path(uri: &http::Uri) -> &str {
    match (uri.path(), uri.authority()) {
        ("", Some(authority)) => authority.as_str(),
        (path, _) => path,
    }
}

/// A header map from the `(name, value)` pairs a proxy reports a request's
/// headers as. Pseudo-headers (`:path`, `:authority`, ...) and names that
/// are no header names are left out: doors read the method, path and host
/// from their own fields. A value that is no valid header value is kept as
/// an unreadable one, so that it counts as malformed — an invalid key, a
/// forwarding header that cannot be followed — and never as absent.
pub fn header_map<'h>(pairs: impl IntoIterator<Item = (&'h str, &'h [u8])>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        if name.starts_with(':') {
            continue;
        }
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        let value = HeaderValue::from_bytes(value).unwrap_or_else(|_| unreadable_value());
        headers.append(name, value);
    }
    headers
}

/// A valid header value that is not text (`to_str` fails on it).
fn unreadable_value() -> HeaderValue {
    // 0xFF is obs-text: allowed in a field value, never readable as text.
    HeaderValue::from_bytes(b"\xff").unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Looks an API up by the host a request was sent to, from
/// `--api-for-host HOST=SLUG`: `host:port` entries match that port only,
/// `host` entries any port. Host names compare without regard to case.
#[derive(Clone, Debug, Default)]
pub struct HostApis {
    entries: Vec<HostApi>,
}

impl HostApis {
    /// The mapping, or the host named twice.
    pub fn new(entries: &[HostApi]) -> Result<Self, DuplicateHost> {
        for (i, entry) in entries.iter().enumerate() {
            if entries[..i].iter().any(|e| e.host == entry.host) {
                return Err(DuplicateHost(entry.host.clone()));
            }
        }
        Ok(HostApis {
            entries: entries.to_vec(),
        })
    }

    /// True when no host is mapped.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The API for a request to `host` (a `Host` header or `:authority`);
    /// `None` when the host is unmapped or no host name at all.
    pub fn lookup(&self, host: &str) -> Option<&ApiSlug> {
        let authority = host.parse::<http::uri::Authority>().ok()?;
        if authority.as_str().contains('@') {
            return None;
        }
        let name = authority.host().to_ascii_lowercase();
        let with_port = authority.port_u16().map(|port| format!("{name}:{port}"));
        let exact = with_port
            .as_deref()
            .and_then(|key| self.entries.iter().find(|e| e.host == key));
        exact
            .or_else(|| self.entries.iter().find(|e| e.host == name))
            .map(|e| &e.api)
    }
}

/// A host mapped to an API twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--api-for-host names {0} twice; give each host one API")]
pub struct DuplicateHost(pub String);

/// One `--api-for-host HOST=SLUG`: requests to `HOST` are for API `SLUG`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostApi {
    /// Host name (lowercase), with `:port` when only that port is meant.
    pub host: String,
    /// The API.
    pub api: ApiSlug,
}

/// Why an `--api-for-host` value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidHostApi {
    /// No `=`.
    #[error("{0:?}: write HOST=SLUG, e.g. api.example.com=orders")]
    NoEquals(String),
    /// The host part is no host name (or host and port).
    #[error("{0:?} is not a host name (optionally with :port)")]
    BadHost(String),
    /// The API part is no slug.
    #[error("{slug:?} is not an API slug: {why}")]
    BadSlug {
        /// The text given.
        slug: String,
        /// Why the slug was refused.
        why: String,
    },
}

impl std::str::FromStr for HostApi {
    type Err = InvalidHostApi;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, slug) = s
            .trim()
            .split_once('=')
            .ok_or_else(|| InvalidHostApi::NoEquals(s.to_owned()))?;
        let host = host.trim();
        let bad_host = || InvalidHostApi::BadHost(host.to_owned());
        let authority = host
            .parse::<http::uri::Authority>()
            .map_err(|_| bad_host())?;
        if host.is_empty() || host.contains('@') || authority.host().is_empty() {
            return Err(bad_host());
        }
        let name = authority.host().to_ascii_lowercase();
        let host = match authority.port_u16() {
            Some(port) => format!("{name}:{port}"),
            None => name,
        };
        let api = slug
            .trim()
            .parse::<ApiSlug>()
            .map_err(|e| InvalidHostApi::BadSlug {
                slug: slug.trim().to_owned(),
                why: e.to_string(),
            })?;
        Ok(HostApi { host, api })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_both_headers_and_conflicts_are_seen() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), PresentedKey::Missing);
        h.append(
            AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwdw=="),
        );
        assert_eq!(presented_key(&h), PresentedKey::Missing);
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer k1"));
        h.append(X_API_KEY, HeaderValue::from_static("k1"));
        assert_eq!(presented_key(&h), PresentedKey::One("k1"));
        h.append(X_API_KEY, HeaderValue::from_static("k2"));
        assert_eq!(presented_key(&h), PresentedKey::Conflicting);

        let mut h = HeaderMap::new();
        h.append(X_API_KEY, HeaderValue::from_bytes(b"k\xff").unwrap());
        assert_eq!(presented_key(&h), PresentedKey::One(UNREADABLE_KEY));
    }

    #[test]
    fn key_headers_leave_other_schemes_to_the_service() {
        let mut h = HeaderMap::new();
        assert!(key_headers(&h).is_empty());
        h.append(
            AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwdw=="),
        );
        assert!(key_headers(&h).is_empty());
        h.append(X_API_KEY, HeaderValue::from_static("k"));
        assert_eq!(key_headers(&h), [X_API_KEY]);
        h.append(AUTHORIZATION, HeaderValue::from_static("bearer k"));
        assert_eq!(key_headers(&h), [AUTHORIZATION, X_API_KEY]);
    }

    #[test]
    fn targets_give_their_path_without_query() {
        for (target, path) in [
            ("/orders/7?x=1", "/orders/7"),
            ("/orders#frag", "/orders"),
            ("/", "/"),
            ("", ""),
            ("http://api.example.com/orders?x", "/orders"),
            ("HTTPS://api.example.com", ""),
            ("https://h/a/../b", "/a/../b"),
            ("*", "*"),
            ("orders/7", "orders/7"),
            ("ftp://h/x", "ftp://h/x"),
            // A query holding "://" is still a query.
            ("/a?next=http://h/x", "/a"),
        ] {
            assert_eq!(target_path(target), path, "{target:?}");
        }
    }

    #[test]
    fn a_target_without_a_path_is_not_decided_as_the_root() {
        for (target, path) in [
            ("/orders/7?x=1", "/orders/7"),
            ("*", "*"),
            ("http://api.example.com", "/"),
            ("http://api.example.com/a?b", "/a"),
            // CONNECT's authority-form target: refused, as it is sent.
            ("api.example.com:443", "api.example.com:443"),
        ] {
            let uri: http::Uri = target.parse().unwrap();
            assert_eq!(uri_path(&uri), path, "{target:?}");
        }
        assert!(path::normalize(uri_path(&"h:443".parse().unwrap())).is_err());
    }

    #[test]
    fn reported_headers_become_a_header_map() {
        let h = header_map([
            (":path", &b"/x"[..]),
            (":authority", b"h"),
            ("x-forwarded-for", b"203.0.113.7"),
            ("x-forwarded-for", b"10.0.0.1"),
            ("bad name", b"v"),
            ("x-api-key", b"k\r\n"),
        ]);
        assert_eq!(h.len(), 3, "{h:?}");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 2);
        assert!(h["x-api-key"].to_str().is_err(), "kept, unreadable");
        assert_eq!(presented_key(&h), PresentedKey::One(UNREADABLE_KEY));
    }

    #[test]
    fn hosts_map_to_apis() {
        let entries: Vec<HostApi> = [
            "API.example.com=orders",
            "api.example.com:8443=payments",
            "[2001:db8::1]=v6",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(entries[0].host, "api.example.com");
        let hosts = HostApis::new(&entries).unwrap();
        let api = |host: &str| hosts.lookup(host).map(ToString::to_string);
        assert_eq!(api("api.example.com").as_deref(), Some("orders"));
        assert_eq!(api("Api.Example.COM:80").as_deref(), Some("orders"));
        assert_eq!(api("api.example.com:8443").as_deref(), Some("payments"));
        assert_eq!(api("[2001:db8::1]:443").as_deref(), Some("v6"));
        assert_eq!(api("other.example.com"), None);
        assert_eq!(api("user@api.example.com"), None);
        assert_eq!(api(""), None);

        for bad in [
            "api.example.com",
            "=orders",
            "a b=orders",
            "h=Not A Slug",
            "u@h=orders",
        ] {
            assert!(bad.parse::<HostApi>().is_err(), "{bad:?}");
        }
        let twice: Vec<HostApi> = ["h=orders", "H=payments"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            HostApis::new(&twice).unwrap_err(),
            DuplicateHost("h".into())
        );
    }
}
