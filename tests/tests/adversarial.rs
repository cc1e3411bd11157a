//! The adversarial suite: every way a caller can try to choose the address,
//! the key or the path it is judged by, or to knock a door over, sent to
//! the real binary on loopback — one control plane and one enforcer with
//! every door on — with the outcome each case must get written beside it.
//!
//! [`CASES`] is the table (docs/adversarial.md says how to read it). Each
//! row is one request to one door and its expected outcome: the status and
//! exact body, the client address the decision was made on and where it
//! was found (checked in the answer's `x-ipgate-client-ip` and in the usage
//! log), or that the connection was closed. After every row the same door
//! must still answer an ordinary request: no case may take a door down.
//!
//! The enforcer trusts `127.0.0.1` as a proxy (`--trusted-proxies`), like
//! nginx or Traefik on its machine; `127.0.0.2` and `127.0.0.3` are clients
//! that reach it directly. The API `orders` needs the scope `admin` under
//! `/admin`; its key may call from `203.0.113.0/24` and `127.0.0.3` only
//! (IPv4 only, and never from the trusted proxy's own address).

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use envoy_types::pb::envoy::{
    config::core::v3::{Address, SocketAddress, address, socket_address::PortSpecifier},
    service::auth::v3::{
        AttributeContext, CheckRequest as EnvoyCheck, attribute_context,
        authorization_client::AuthorizationClient, check_response::HttpResponse,
    },
};
use ipgate_shared::proto::{
    admin::v1::{
        CreateApiKeyRequest, CreateApiRequest, CreateTenantRequest, QueryUsageLogsRequest,
        RevokeApiKeyRequest, RouteRule, RouteRules, UpdateApiRequest, UsageLogEntry,
    },
    check::v1::{CheckRequest, check_service_client::CheckServiceClient},
};
use ipgate_tests::{
    Backend, ControlPlane, Enforcer,
    admin::{entries, ip},
    eventually, upstream,
    upstream::UPSTREAM_BODY,
    world::PROPAGATION,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpSocket,
    time::Instant,
};
use tonic::{Code, transport::Channel};

// === who calls ===

/// The trusted proxy (`--trusted-proxies 127.0.0.1`).
const PROXY: &str = "127.0.0.1";
/// A client that reaches the enforcer directly, in no allowlist.
const STRANGER: &str = "127.0.0.2";
/// A client that reaches the enforcer directly, in the key's allowlist.
const DIRECT: &str = "127.0.0.3";
/// A client in the key's allowlist (203.0.113.0/24), named by a proxy.
const OFFICE: &str = "203.0.113.7";
/// A client outside every allowlist, named by a proxy.
const OUTSIDER: &str = "198.51.100.1";

/// `--header-read-timeout` of the enforcer under test.
const HEAD_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a case may wait for its answer, or for the door to close.
const ANSWER_LIMIT: Duration = Duration::from_secs(5);

// === the exact bodies of docs/decisions.md ===

const KEY_IP: &str = r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Request IP address is not in the API key's allowlist"}}"#;
const INVALID_KEY: &str = r#"{"error":{"code":"INVALID_API_KEY","message":"API key is missing, invalid, revoked or expired"}}"#;
const SCOPE: &str = r#"{"error":{"code":"INSUFFICIENT_SCOPE","message":"API key does not have the scope this route requires"}}"#;
const BAD_PATH: &str = r#"{"error":{"code":"BAD_PATH","message":"The request path is ambiguous: it holds an encoded slash or backslash, a control character, invalid percent-encoding or dot segments above the root"}}"#;
const TOO_LARGE: &str = r#"{"error":{"code":"HEADERS_TOO_LARGE","message":"The request line and headers are larger than this server accepts"}}"#;
const TOO_MANY: &str = r#"{"error":{"code":"TOO_MANY_HEADERS","message":"The request has more header fields than this server accepts"}}"#;
const NO_ORIGINAL: &str = r#"{"error":{"code":"BAD_AUTH_REQUEST","message":"The auth request must name the original request: X-Original-Method and X-Original-URI (nginx) or X-Forwarded-Method and X-Forwarded-Uri (Traefik)"}}"#;
const TWO_ORIGINALS: &str = r#"{"error":{"code":"BAD_AUTH_REQUEST","message":"The auth request names the original request more than once, differently"}}"#;
const NOT_THE_ENDPOINT: &str =
    r#"{"error":{"code":"NOT_FOUND","message":"The auth endpoint answers at /v1/check/{api}"}}"#;

// === the table's vocabulary ===

/// Which door a case knocks on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Door {
    /// The reverse proxy (`--proxy-listen`): the request itself, from `from`.
    Proxy,
    /// The auth endpoint asked as nginx asks: `GET /v1/check/orders` from
    /// `from`, the original request in `X-Original-Method` and
    /// `X-Original-URI`.
    Nginx,
    /// The auth endpoint asked as Traefik asks: `X-Forwarded-Method` and
    /// `X-Forwarded-Uri`.
    Traefik,
    /// The auth endpoint, for raw bytes.
    Auth,
    /// Envoy's ext_authz: `from` is the source address Envoy reports, the
    /// path and headers those of the request Envoy holds.
    ExtAuthz,
    /// The gRPC check door: `from` is the `client_ip` its caller names, the
    /// key the `x-api-key` among the headers.
    Check,
    /// The gRPC port, for raw bytes.
    Grpc,
}

/// What a case sends.
#[derive(Clone, Copy, Debug)]
enum Payload {
    /// A request: method, path (the request target; the original URI for
    /// the auth endpoint; Envoy's `path`; the check door's `path`) and
    /// header lines in order (a name may repeat).
    Request {
        method: &'static str,
        path: &'static str,
        headers: &'static [(&'static str, &'static str)],
    },
    /// These bytes, at once.
    Bytes(&'static [u8]),
    /// These bytes one at a time, 50 ms apart (longer than the head
    /// timeout in all), and then nothing.
    Slowly(&'static [u8]),
}

/// The client address a decision was made on, and where it was found
/// (`client_ip_source` in the usage log).
#[derive(Clone, Copy, Debug)]
struct Client {
    ip: &'static str,
    source: &'static str,
}

/// What must come back.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Allowed and decided on `client`: the proxy's upstream answers (and
    /// saw `upstream`, `METHOD target`, when given), the auth endpoint
    /// answers `200` with an empty body, ext_authz `OK`, the check door
    /// `allowed`.
    Allowed {
        client: Client,
        upstream: Option<&'static str>,
    },
    /// Refused by the decision: this status and exact body, decided on
    /// `client` (in `x-ipgate-client-ip` and the usage log).
    Refused {
        status: u16,
        body: &'static str,
        client: Client,
    },
    /// Answered by the door before any decision: this status and exact
    /// JSON body, with no `x-request-id`; nothing is logged.
    Door { status: u16, body: &'static str },
    /// Answered by the HTTP server underneath (hyper) before the door saw
    /// a request: this status, an empty body, then the connection closed.
    Bare(u16),
    /// Closed without a byte of answer, after the head timeout.
    Closed,
    /// Closed by an HTTP/2 server with no answer: nothing came back but
    /// its own connection preface and control frames (SETTINGS, GOAWAY,
    /// ...), no HEADERS. After the head timeout when `after_head_timeout`,
    /// else as soon as the server saw the bytes (within [`ANSWER_LIMIT`]).
    H2Closed { after_head_timeout: bool },
    /// A gRPC door refused the call with this code: nothing decided.
    Grpc(Code),
}

/// One row: a name that says what is tried, the door, who sends it and
/// what, and the outcome.
#[derive(Clone, Copy, Debug)]
struct Case {
    name: &'static str,
    door: Door,
    /// The source address (the address Envoy reports, for ext_authz; the
    /// address the caller names, for the check door).
    from: &'static str,
    send: Payload,
    expect: Expect,
}

const fn req(
    name: &'static str,
    door: Door,
    from: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: Expect,
) -> Case {
    Case {
        name,
        door,
        from,
        send: Payload::Request {
            method,
            path,
            headers,
        },
        expect,
    }
}

/// A `GET` to `door` from `from`.
const fn get(
    name: &'static str,
    door: Door,
    from: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: Expect,
) -> Case {
    req(name, door, from, "GET", path, headers, expect)
}

const fn bytes(
    name: &'static str,
    door: Door,
    from: &'static str,
    raw: &'static [u8],
    expect: Expect,
) -> Case {
    Case {
        name,
        door,
        from,
        send: Payload::Bytes(raw),
        expect,
    }
}

const fn slowly(name: &'static str, door: Door, raw: &'static [u8]) -> Case {
    Case {
        name,
        door,
        from: DIRECT,
        send: Payload::Slowly(raw),
        expect: Expect::Closed,
    }
}

const fn at(ip: &'static str, source: &'static str) -> Client {
    Client { ip, source }
}

const fn allowed(client: Client) -> Expect {
    Expect::Allowed {
        client,
        upstream: None,
    }
}

/// Allowed at the proxy door, the upstream seeing `upstream`.
const fn forwarded_as(upstream: &'static str, client: Client) -> Expect {
    Expect::Allowed {
        client,
        upstream: Some(upstream),
    }
}

const fn refused(status: u16, body: &'static str, client: Client) -> Expect {
    Expect::Refused {
        status,
        body,
        client,
    }
}

const fn ip_refused(client: Client) -> Expect {
    refused(403, KEY_IP, client)
}

const fn key_refused(client: Client) -> Expect {
    refused(401, INVALID_KEY, client)
}

const fn scope_refused(client: Client) -> Expect {
    refused(403, SCOPE, client)
}

const fn path_refused(client: Client) -> Expect {
    refused(400, BAD_PATH, client)
}

// Placeholders, filled in when a case is sent: `{key}` the API's key,
// `{key2}` a second valid key of the same API, and the others below
// ([`Secrets::fill`]).
const KEY: (&str, &str) = ("x-api-key", "{key}");
const XFF: &str = "x-forwarded-for";
const FWD: &str = "forwarded";
/// What nginx or Traefik in front adds for an office client.
const VIA_PROXY: (&str, &str) = (XFF, OFFICE);

// Clients as decided on.
const C_DIRECT: Client = at(DIRECT, "peer");
const C_STRANGER: Client = at(STRANGER, "peer");
const C_PROXY: Client = at(PROXY, "peer");
const C_OFFICE_XFF: Client = at(OFFICE, "x-forwarded-for");
const C_OUTSIDER_XFF: Client = at(OUTSIDER, "x-forwarded-for");
const C_OFFICE_NAMED: Client = at(OFFICE, "named");

use Door::*;

/// Every case, with its expected outcome. docs/adversarial.md has the
/// classes and how to read a row. Laid out by hand, a row or two a case.
#[rustfmt::skip]
const CASES: &[Case] = &[
    // --- forwarding headers: the proxy door -------------------------------
    get("xff: a spoofed left-most element is not read", Proxy, PROXY, "/orders/7",
        &[KEY, (XFF, "203.0.113.7, 198.51.100.1")], ip_refused(C_OUTSIDER_XFF)),
    get("xff: the element the trusted proxy appended decides", Proxy, PROXY, "/orders/7",
        &[KEY, (XFF, "198.51.100.1, 203.0.113.7")], allowed(C_OFFICE_XFF)),
    get("xff: from an untrusted peer it is ignored", Proxy, STRANGER, "/orders/7",
        &[KEY, (XFF, OFFICE)], ip_refused(C_STRANGER)),
    get("xff: an untrusted peer naming an outsider is still itself", Proxy, DIRECT, "/orders/7",
        &[KEY, (XFF, OUTSIDER)], allowed(C_DIRECT)),
    get("xff: many lines are one list, the last line's last element first", Proxy, PROXY,
        "/orders/7", &[KEY, (XFF, OFFICE), (XFF, "198.51.100.1")], ip_refused(C_OUTSIDER_XFF)),
    get("xff: many lines, the client in the last", Proxy, PROXY, "/orders/7",
        &[KEY, (XFF, OUTSIDER), (XFF, "10.9.9.9"), (XFF, OFFICE)], allowed(C_OFFICE_XFF)),
    bytes("xff: 90 lines, the client in the last", Proxy, PROXY,
        b"GET /orders/7 HTTP/1.1\r\nHost: ipgate.test\r\nX-API-Key: {key}\r\n{xff_90_lines}Connection: close\r\n\r\n",
        allowed(C_OFFICE_XFF)),
    get("xff: a 56 KB line costs a bounded walk, the client at its right", Proxy, PROXY,
        "/orders/7", &[KEY, (XFF, "{xff_huge}")], allowed(C_OFFICE_XFF)),
    get("xff: over 32 trusted hops stops at the 32nd", Proxy, PROXY, "/orders/7",
        &[KEY, (XFF, "{xff_40_trusted}")], ip_refused(at(PROXY, "too-many-hops"))),
    get("xff: only trusted hops: the left-most is the client", Proxy, PROXY, "/orders/7",
        &[KEY, (XFF, "127.0.0.1, 127.0.0.1")], ip_refused(at(PROXY, "x-forwarded-for"))),
    get("xff: a port is dropped", Proxy, PROXY, "/orders/7",
        &[KEY, (XFF, "203.0.113.7:4711")], allowed(C_OFFICE_XFF)),
    get("xff: an IPv4-mapped client matches its IPv4 entry", Proxy, PROXY, "/orders/7",
        &[KEY, (XFF, "::ffff:203.0.113.7")], allowed(C_OFFICE_XFF)),
    get("xff: an IPv6 client against an IPv4-only list", Proxy, PROXY, "/orders/7",
        &[KEY, (XFF, "[2001:db8::7]:4711")], ip_refused(at("2001:db8::7", "x-forwarded-for"))),
    get("xff: unknown hides the client: decided on the proxy", Proxy, PROXY, "/orders/7",
        &[KEY, (XFF, "203.0.113.7, unknown")], ip_refused(at(PROXY, "unknown-hop"))),
    get("xff: an obfuscated identifier hides the client", Proxy, PROXY, "/orders/7",
        &[KEY, (XFF, "203.0.113.7, _hidden")], ip_refused(at(PROXY, "unknown-hop"))),
    get("xff: a quoted address is malformed", Proxy, PROXY, "/orders/7",
        &[KEY, (XFF, "\"203.0.113.7\"")], ip_refused(at(PROXY, "malformed"))),
    get("xff: an empty element is malformed", Proxy, PROXY, "/orders/7",
        &[KEY, (XFF, "203.0.113.7,")], ip_refused(at(PROXY, "malformed"))),
    get("xff: a leading zero is malformed", Proxy, PROXY, "/orders/7",
        &[KEY, (XFF, "203.0.113.07")], ip_refused(at(PROXY, "malformed"))),
    get("xff: a zone id is malformed", Proxy, PROXY, "/orders/7",
        &[KEY, (XFF, "fe80::1%eth0")], ip_refused(at(PROXY, "malformed"))),
    get("forwarded: quoted, with a port", Proxy, PROXY, "/orders/7",
        &[KEY, (FWD, "for=\"203.0.113.7:4711\"")], allowed(at(OFFICE, "forwarded"))),
    get("forwarded: quoted IPv6 with a port, against an IPv4-only list", Proxy, PROXY,
        "/orders/7", &[KEY, (FWD, "for=\"[2001:db8::7]:4711\";proto=https")],
        ip_refused(at("2001:db8::7", "forwarded"))),
    get("forwarded: an obfuscated port is dropped", Proxy, PROXY, "/orders/7",
        &[KEY, (FWD, "For=\"203.0.113.7:_p1\";by=_lb")], allowed(at(OFFICE, "forwarded"))),
    get("forwarded: for=unknown", Proxy, PROXY, "/orders/7",
        &[KEY, (FWD, "for=203.0.113.7, for=unknown")], ip_refused(at(PROXY, "unknown-hop"))),
    get("forwarded: an obfuscated identifier", Proxy, PROXY, "/orders/7",
        &[KEY, (FWD, "for=203.0.113.7, for=\"_hidden:_p1\"")], ip_refused(at(PROXY, "unknown-hop"))),
    get("forwarded: an element without for=", Proxy, PROXY, "/orders/7",
        &[KEY, (FWD, "for=203.0.113.7, proto=https")], ip_refused(at(PROXY, "unknown-hop"))),
    get("forwarded: unquoted IPv6 is malformed", Proxy, PROXY, "/orders/7",
        &[KEY, (FWD, "for=[2001:db8::7]")], ip_refused(at(PROXY, "malformed"))),
    get("forwarded: a comma inside quotes does not split", Proxy, PROXY, "/orders/7",
        &[KEY, (FWD, "for=\"203.0.113.7, 198.51.100.1\"")], ip_refused(at(PROXY, "malformed"))),
    get("forwarded: an unbalanced quote to the left leaves the proxy's element exact", Proxy,
        PROXY, "/orders/7", &[KEY, (FWD, "for=\"198.51.100.9, for=203.0.113.7")],
        allowed(at(OFFICE, "forwarded"))),
    get("forwarded: a spoofed left-most element is not read", Proxy, PROXY, "/orders/7",
        &[KEY, (FWD, "for=203.0.113.7, for=198.51.100.1")], ip_refused(at(OUTSIDER, "forwarded"))),
    get("forwarded: from an untrusted peer it is ignored", Proxy, STRANGER, "/orders/7",
        &[KEY, (FWD, "for=203.0.113.7")], ip_refused(C_STRANGER)),
    get("xff and forwarded agreeing", Proxy, PROXY, "/orders/7",
        &[KEY, (XFF, OFFICE), (FWD, "for=\"203.0.113.7:80\"")], allowed(at(OFFICE, "forwarded"))),
    get("xff from the proxy, a client's own forwarded: conflicting, the peer", Proxy, PROXY,
        "/orders/7", &[KEY, (XFF, OUTSIDER), (FWD, "for=203.0.113.7")],
        ip_refused(at(PROXY, "conflicting"))),
    get("x-real-ip from a trusted proxy is not read", Proxy, PROXY, "/orders/7",
        &[KEY, ("x-real-ip", OFFICE)], ip_refused(C_PROXY)),
    get("x-real-ip from an untrusted peer is not read", Proxy, STRANGER, "/orders/7",
        &[KEY, ("x-real-ip", OFFICE)], ip_refused(C_STRANGER)),
    get("x-real-ip beside xff: xff decides", Proxy, PROXY, "/orders/7",
        &[KEY, ("x-real-ip", OFFICE), (XFF, OUTSIDER)], ip_refused(C_OUTSIDER_XFF)),
    get("other client-address headers are never read", Proxy, STRANGER, "/orders/7",
        &[KEY, ("true-client-ip", OFFICE), ("cf-connecting-ip", OFFICE), ("x-client-ip", OFFICE),
          ("x-original-forwarded-for", OFFICE), ("x-cluster-client-ip", OFFICE)],
        ip_refused(C_STRANGER)),
    // --- forwarding headers: ext_authz (the source Envoy reports is the peer)
    get("ext_authz: an IPv4-mapped peer matches its IPv4 entry", ExtAuthz, "::ffff:203.0.113.7",
        "/orders/7", &[KEY], allowed(at(OFFICE, "peer"))),
    get("ext_authz: an IPv6 peer against an IPv4-only list", ExtAuthz, "2001:db8::7",
        "/orders/7", &[KEY], ip_refused(at("2001:db8::7", "peer"))),
    get("ext_authz: a NAT64 peer stays IPv6", ExtAuthz, "64:ff9b::cb00:7107", "/orders/7",
        &[KEY], ip_refused(at("64:ff9b::cb00:7107", "peer"))),
    get("ext_authz: an IPv4-compatible peer stays IPv6", ExtAuthz, "::203.0.113.7", "/orders/7",
        &[KEY], ip_refused(at("::cb00:7107", "peer"))),
    get("ext_authz: xff from an untrusted peer is ignored", ExtAuthz, OUTSIDER, "/orders/7",
        &[KEY, (XFF, OFFICE), ("x-real-ip", OFFICE)], ip_refused(at(OUTSIDER, "peer"))),
    get("ext_authz: a spoofed left-most xff element behind a trusted balancer", ExtAuthz, PROXY,
        "/orders/7", &[KEY, (XFF, "203.0.113.7, 198.51.100.1")], ip_refused(C_OUTSIDER_XFF)),
    get("ext_authz: an IPv4-mapped trusted peer is trusted", ExtAuthz, "::ffff:127.0.0.1",
        "/orders/7", &[KEY, (XFF, OFFICE)], allowed(C_OFFICE_XFF)),
    get("ext_authz: a source that is no address is not decided", ExtAuthz, "localhost",
        "/orders/7", &[KEY], Expect::Grpc(Code::InvalidArgument)),
    get("ext_authz: a source with a zone id is not decided", ExtAuthz, "fe80::1%eth0",
        "/orders/7", &[KEY], Expect::Grpc(Code::InvalidArgument)),
    // --- forwarding headers: the auth endpoint (nginx, Traefik) -----------
    get("nginx: a spoofed left-most xff element", Nginx, PROXY, "/orders/7",
        &[KEY, (XFF, "203.0.113.7, 198.51.100.1")], ip_refused(C_OUTSIDER_XFF)),
    get("nginx: a client calling the endpoint itself with xff", Nginx, STRANGER, "/orders/7",
        &[KEY, (XFF, OFFICE)], ip_refused(C_STRANGER)),
    get("nginx: x-real-ip spoofed beside nginx's xff", Nginx, PROXY, "/orders/7",
        &[KEY, ("x-real-ip", OFFICE), (XFF, OUTSIDER)], ip_refused(C_OUTSIDER_XFF)),
    get("nginx: a client's forwarded beside nginx's xff: conflicting, the peer", Nginx, PROXY,
        "/orders/7", &[KEY, (FWD, "for=203.0.113.7"), (XFF, OUTSIDER)],
        ip_refused(at(PROXY, "conflicting"))),
    get("traefik: the client it names", Traefik, PROXY, "/orders/7", &[KEY, VIA_PROXY],
        allowed(C_OFFICE_XFF)),
    // --- forwarding: the check door (the caller names the address) -------
    get("check: an IPv4-mapped address is its IPv4 address", Check, "::ffff:203.0.113.7",
        "/orders/7", &[KEY], allowed(C_OFFICE_NAMED)),
    get("check: an IPv6 address against an IPv4-only list", Check, "2001:db8::7", "/orders/7",
        &[KEY], ip_refused(at("2001:db8::7", "named"))),
    get("check: an address with a port is refused", Check, "203.0.113.7:80", "/orders/7",
        &[KEY], Expect::Grpc(Code::InvalidArgument)),
    get("check: a bracketed address is refused", Check, "[2001:db8::7]", "/orders/7", &[KEY],
        Expect::Grpc(Code::InvalidArgument)),
    get("check: a leading zero is refused", Check, "010.0.0.1", "/orders/7", &[KEY],
        Expect::Grpc(Code::InvalidArgument)),
    get("check: no address is refused", Check, "", "/orders/7", &[KEY],
        Expect::Grpc(Code::InvalidArgument)),
    // --- keys -------------------------------------------------------------
    get("key: in the query string it is ignored", Proxy, DIRECT,
        "/orders/7?api_key={key}&x-api-key={key}&access_token={key}", &[],
        key_refused(C_DIRECT)),
    get("key: the same key twice is one key", Proxy, DIRECT, "/orders/7", &[KEY, KEY],
        allowed(C_DIRECT)),
    get("key: the same key in both headers is one key", Proxy, DIRECT, "/orders/7",
        &[KEY, ("authorization", "Bearer {key}")], allowed(C_DIRECT)),
    get("key: two keys in x-api-key conflict", Proxy, DIRECT, "/orders/7",
        &[KEY, ("x-api-key", "{key2}")], key_refused(C_DIRECT)),
    get("key: x-api-key and a bearer key conflict", Proxy, DIRECT, "/orders/7",
        &[KEY, ("authorization", "Bearer {key2}")], key_refused(C_DIRECT)),
    get("key: two bearer keys conflict", Proxy, DIRECT, "/orders/7",
        &[("authorization", "Bearer {key}"), ("authorization", "Bearer {key2}")],
        key_refused(C_DIRECT)),
    get("key: an empty x-api-key is no key", Proxy, DIRECT, "/orders/7", &[("x-api-key", "")],
        key_refused(C_DIRECT)),
    get("key: an empty x-api-key beside a bearer key", Proxy, DIRECT, "/orders/7",
        &[("x-api-key", ""), ("authorization", "Bearer {key}")], allowed(C_DIRECT)),
    get("key: an empty bearer is no key", Proxy, DIRECT, "/orders/7",
        &[("authorization", "Bearer ")], key_refused(C_DIRECT)),
    get("key: a bad checksum", Proxy, DIRECT, "/orders/7", &[("x-api-key", "{bad_checksum}")],
        key_refused(C_DIRECT)),
    get("key: trailing characters", Proxy, DIRECT, "/orders/7", &[("x-api-key", "{key}x")],
        key_refused(C_DIRECT)),
    get("key: revoked", Proxy, DIRECT, "/orders/7", &[("x-api-key", "{revoked}")],
        key_refused(C_DIRECT)),
    get("key: another API's", Proxy, DIRECT, "/orders/7", &[("x-api-key", "{payments_key}")],
        key_refused(C_DIRECT)),
    get("key: another tenant's", Proxy, DIRECT, "/orders/7", &[("x-api-key", "{tenant_b_key}")],
        key_refused(C_DIRECT)),
    get("key: a lower-case bearer scheme", Proxy, DIRECT, "/orders/7",
        &[("authorization", "bearer {key}")], allowed(C_DIRECT)),
    get("key: an upper-case bearer scheme", Proxy, DIRECT, "/orders/7",
        &[("authorization", "BEARER {key}")], allowed(C_DIRECT)),
    get("key: Basic credentials are not a key", Proxy, DIRECT, "/orders/7",
        &[("authorization", "Basic dXNlcjpwYXNz")], key_refused(C_DIRECT)),
    bytes("key: a header that is not text is an invalid key, not none", Proxy, DIRECT,
        b"GET /orders/7 HTTP/1.1\r\nHost: ipgate.test\r\nX-API-Key: \xff{key}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n",
        key_refused(C_DIRECT)),
    get("ext_authz key: in the query string it is ignored", ExtAuthz, OFFICE,
        "/orders/7?api_key={key}", &[], key_refused(at(OFFICE, "peer"))),
    get("ext_authz key: keys joined by Envoy conflict", ExtAuthz, OFFICE, "/orders/7",
        &[KEY, ("x-api-key", "{key2}")], key_refused(at(OFFICE, "peer"))),
    get("ext_authz key: a lower-case bearer scheme", ExtAuthz, OFFICE, "/orders/7",
        &[("authorization", "bearer {key}")], allowed(at(OFFICE, "peer"))),
    get("ext_authz key: revoked", ExtAuthz, OFFICE, "/orders/7",
        &[("x-api-key", "{revoked}")], key_refused(at(OFFICE, "peer"))),
    get("nginx key: in the original URI's query it is ignored", Nginx, PROXY,
        "/orders/7?api_key={key}", &[VIA_PROXY], key_refused(C_OFFICE_XFF)),
    get("nginx key: two keys conflict", Nginx, PROXY, "/orders/7",
        &[KEY, ("authorization", "Bearer {key2}"), VIA_PROXY], key_refused(C_OFFICE_XFF)),
    get("traefik key: another tenant's", Traefik, PROXY, "/orders/7",
        &[("x-api-key", "{tenant_b_key}"), VIA_PROXY], key_refused(C_OFFICE_XFF)),
    get("traefik key: a lower-case bearer scheme", Traefik, PROXY, "/orders/7",
        &[("authorization", "bearer {key}"), VIA_PROXY], allowed(C_OFFICE_XFF)),
    get("check key: in the path's query it is ignored", Check, OFFICE, "/orders/7?api_key={key}",
        &[], key_refused(C_OFFICE_NAMED)),
    get("check key: another API's", Check, OFFICE, "/orders/7",
        &[("x-api-key", "{payments_key}")], key_refused(C_OFFICE_NAMED)),
    // --- paths and scopes: every spelling, every door ---------------------
    get("path: percent-encoded unreserved", Proxy, DIRECT, "/%61dmin", &[KEY], scope_refused(C_DIRECT)),
    get("path: dot-dot segment", Proxy, DIRECT, "/hello/../admin", &[KEY], scope_refused(C_DIRECT)),
    get("path: dot segment", Proxy, DIRECT, "/./admin", &[KEY], scope_refused(C_DIRECT)),
    get("path: duplicate slashes", Proxy, DIRECT, "//admin", &[KEY], scope_refused(C_DIRECT)),
    get("path: case", Proxy, DIRECT, "/ADMIN", &[KEY], scope_refused(C_DIRECT)),
    get("path: a path parameter", Proxy, DIRECT, "/admin;v=1/x", &[KEY], scope_refused(C_DIRECT)),
    get("path: an absolute-form target", Proxy, DIRECT, "http://ipgate.test/admin", &[KEY],
        scope_refused(C_DIRECT)),
    get("path: an encoded slash", Proxy, DIRECT, "/admin%2f", &[KEY], path_refused(C_DIRECT)),
    get("path: an encoded slash after dot-dot", Proxy, DIRECT, "/hello/..%2fadmin", &[KEY],
        path_refused(C_DIRECT)),
    get("path: an encoded NUL", Proxy, DIRECT, "/admin%00", &[KEY], path_refused(C_DIRECT)),
    get("path: climbing above the root", Proxy, DIRECT, "/../admin", &[KEY],
        path_refused(C_DIRECT)),
    get("path: a dot-dot with a parameter", Proxy, DIRECT, "/hello/..;/admin", &[KEY],
        path_refused(C_DIRECT)),
    get("path: a double-encoded dot-dot", Proxy, DIRECT, "/x/%252e%252e/admin", &[KEY],
        path_refused(C_DIRECT)),
    req("path: OPTIONS *", Proxy, DIRECT, "OPTIONS", "*", &[KEY], path_refused(C_DIRECT)),
    req("path: CONNECT names an authority, not a path", Proxy, DIRECT, "CONNECT",
        "ipgate.test:443", &[KEY], path_refused(C_DIRECT)),
    get("path: a fragment in the target is not part of the path", Proxy, DIRECT, "/admin#x",
        &[KEY], scope_refused(C_DIRECT)),
    get("path: a raw backslash", Proxy, DIRECT, "/hello\\..\\admin", &[KEY],
        path_refused(C_DIRECT)),
    bytes("path: raw UTF-8 is encoded, then dot segments resolved", Proxy, DIRECT,
        b"GET /\xc3\xa9/../admin HTTP/1.1\r\nHost: ipgate.test\r\nX-API-Key: {key}\r\nConnection: close\r\n\r\n",
        scope_refused(C_DIRECT)),
    bytes("path: a raw NUL in the request line", Proxy, DIRECT,
        b"GET /admin\x00 HTTP/1.1\r\nHost: ipgate.test\r\nX-API-Key: {key}\r\nConnection: close\r\n\r\n",
        Expect::Bare(400)),
    bytes("path: a raw tab in the request line", Proxy, DIRECT,
        b"GET /ad\tmin HTTP/1.1\r\nHost: ipgate.test\r\nX-API-Key: {key}\r\nConnection: close\r\n\r\n",
        Expect::Bare(400)),
    req("path: a lower-case method is covered by the rule", Proxy, DIRECT, "get", "/admin",
        &[KEY], scope_refused(C_DIRECT)),
    get("path: IIS-style %u encoding is invalid", Proxy, DIRECT, "/%u0061dmin", &[KEY],
        path_refused(C_DIRECT)),
    // Two edges decided as written, not refused (docs/adversarial.md, "Edges left open").
    get("path: an overlong UTF-8 slash stays opaque", Proxy, DIRECT, "/%c0%afadmin", &[KEY],
        forwarded_as("GET /%C0%AFadmin", C_DIRECT)),
    get("path: a trailing dot is another segment", Proxy, DIRECT, "/admin.", &[KEY],
        forwarded_as("GET /admin.", C_DIRECT)),
    get("path: an allowed spelling reaches the upstream in normal form", Proxy, DIRECT,
        "/hello/../orders/%37?page=../2", &[KEY], forwarded_as("GET /orders/7?page=../2", C_DIRECT)),
    get("ext_authz path: percent-encoded unreserved", ExtAuthz, OFFICE, "/%61dmin", &[KEY],
        scope_refused(at(OFFICE, "peer"))),
    get("ext_authz path: dot-dot segment", ExtAuthz, OFFICE, "/hello/../admin", &[KEY],
        scope_refused(at(OFFICE, "peer"))),
    get("ext_authz path: dot segment", ExtAuthz, OFFICE, "/./admin", &[KEY],
        scope_refused(at(OFFICE, "peer"))),
    get("ext_authz path: duplicate slashes", ExtAuthz, OFFICE, "//admin", &[KEY],
        scope_refused(at(OFFICE, "peer"))),
    get("ext_authz path: case", ExtAuthz, OFFICE, "/ADMIN", &[KEY],
        scope_refused(at(OFFICE, "peer"))),
    get("ext_authz path: an encoded slash", ExtAuthz, OFFICE, "/admin%2f", &[KEY],
        path_refused(at(OFFICE, "peer"))),
    get("ext_authz path: an encoded slash after dot-dot", ExtAuthz, OFFICE, "/hello/..%2fadmin",
        &[KEY], path_refused(at(OFFICE, "peer"))),
    get("ext_authz path: an encoded NUL", ExtAuthz, OFFICE, "/admin%00", &[KEY],
        path_refused(at(OFFICE, "peer"))),
    get("ext_authz path: climbing above the root", ExtAuthz, OFFICE, "/../admin", &[KEY],
        path_refused(at(OFFICE, "peer"))),
    req("ext_authz path: CONNECT names an authority, not a path", ExtAuthz, OFFICE, "CONNECT",
        "", &[KEY], path_refused(at(OFFICE, "peer"))),
    get("nginx path: percent-encoded unreserved", Nginx, PROXY, "/%61dmin", &[KEY, VIA_PROXY],
        scope_refused(C_OFFICE_XFF)),
    get("nginx path: dot-dot segment", Nginx, PROXY, "/hello/../admin", &[KEY, VIA_PROXY],
        scope_refused(C_OFFICE_XFF)),
    get("nginx path: dot segment", Nginx, PROXY, "/./admin", &[KEY, VIA_PROXY],
        scope_refused(C_OFFICE_XFF)),
    get("nginx path: duplicate slashes", Nginx, PROXY, "//admin", &[KEY, VIA_PROXY],
        scope_refused(C_OFFICE_XFF)),
    get("nginx path: case", Nginx, PROXY, "/ADMIN", &[KEY, VIA_PROXY],
        scope_refused(C_OFFICE_XFF)),
    get("nginx path: an absolute URI", Nginx, PROXY, "http://ipgate.test/admin?x=1",
        &[KEY, VIA_PROXY], scope_refused(C_OFFICE_XFF)),
    get("nginx path: an encoded slash", Nginx, PROXY, "/admin%2f", &[KEY, VIA_PROXY],
        path_refused(C_OFFICE_XFF)),
    get("nginx path: an encoded slash after dot-dot", Nginx, PROXY, "/hello/..%2fadmin",
        &[KEY, VIA_PROXY], path_refused(C_OFFICE_XFF)),
    get("nginx path: an encoded NUL", Nginx, PROXY, "/admin%00", &[KEY, VIA_PROXY],
        path_refused(C_OFFICE_XFF)),
    get("nginx path: climbing above the root", Nginx, PROXY, "/../admin", &[KEY, VIA_PROXY],
        path_refused(C_OFFICE_XFF)),
    get("nginx path: an asterisk is no path", Nginx, PROXY, "*", &[KEY, VIA_PROXY],
        path_refused(C_OFFICE_XFF)),
    get("nginx path: an absolute URI without a path is the root", Nginx, PROXY,
        "http://ipgate.test", &[KEY, VIA_PROXY], allowed(C_OFFICE_XFF)),
    get("traefik path: percent-encoded unreserved", Traefik, PROXY, "/%61dmin",
        &[KEY, VIA_PROXY], scope_refused(C_OFFICE_XFF)),
    get("traefik path: dot-dot segment", Traefik, PROXY, "/hello/../admin", &[KEY, VIA_PROXY],
        scope_refused(C_OFFICE_XFF)),
    get("traefik path: dot segment", Traefik, PROXY, "/./admin", &[KEY, VIA_PROXY],
        scope_refused(C_OFFICE_XFF)),
    get("traefik path: duplicate slashes", Traefik, PROXY, "//admin", &[KEY, VIA_PROXY],
        scope_refused(C_OFFICE_XFF)),
    get("traefik path: case", Traefik, PROXY, "/ADMIN", &[KEY, VIA_PROXY],
        scope_refused(C_OFFICE_XFF)),
    get("traefik path: an encoded slash", Traefik, PROXY, "/admin%2f", &[KEY, VIA_PROXY],
        path_refused(C_OFFICE_XFF)),
    get("traefik path: an encoded slash after dot-dot", Traefik, PROXY, "/hello/..%2fadmin",
        &[KEY, VIA_PROXY], path_refused(C_OFFICE_XFF)),
    get("traefik path: an encoded NUL", Traefik, PROXY, "/admin%00", &[KEY, VIA_PROXY],
        path_refused(C_OFFICE_XFF)),
    get("traefik path: climbing above the root", Traefik, PROXY, "/../admin",
        &[KEY, VIA_PROXY], path_refused(C_OFFICE_XFF)),
    get("check path: percent-encoded unreserved", Check, OFFICE, "/%61dmin", &[KEY],
        scope_refused(C_OFFICE_NAMED)),
    get("check path: dot-dot segment", Check, OFFICE, "/hello/../admin", &[KEY],
        scope_refused(C_OFFICE_NAMED)),
    get("check path: dot segment", Check, OFFICE, "/./admin", &[KEY],
        scope_refused(C_OFFICE_NAMED)),
    get("check path: duplicate slashes", Check, OFFICE, "//admin", &[KEY],
        scope_refused(C_OFFICE_NAMED)),
    get("check path: case", Check, OFFICE, "/ADMIN", &[KEY], scope_refused(C_OFFICE_NAMED)),
    get("check path: an encoded slash", Check, OFFICE, "/admin%2f", &[KEY],
        path_refused(C_OFFICE_NAMED)),
    get("check path: an encoded slash after dot-dot", Check, OFFICE, "/hello/..%2fadmin",
        &[KEY], path_refused(C_OFFICE_NAMED)),
    get("check path: an encoded NUL", Check, OFFICE, "/admin%00", &[KEY],
        path_refused(C_OFFICE_NAMED)),
    get("check path: a raw NUL", Check, OFFICE, "/admin\0", &[KEY],
        path_refused(C_OFFICE_NAMED)),
    get("check path: climbing above the root", Check, OFFICE, "/../admin", &[KEY],
        path_refused(C_OFFICE_NAMED)),
    get("check path: empty is the root", Check, OFFICE, "", &[KEY], allowed(C_OFFICE_NAMED)),
    // --- the auth endpoint's own answers: no client names the request -----
    get("auth: neither header pair names the original request", Auth, PROXY, "/v1/check/orders",
        &[KEY, VIA_PROXY], Expect::Door { status: 400, body: NO_ORIGINAL }),
    get("auth: a client's x-forwarded-uri beside nginx's x-original-uri", Nginx, PROXY,
        "/orders/7", &[KEY, VIA_PROXY, ("x-forwarded-method", "GET"), ("x-forwarded-uri", "/public")],
        Expect::Door { status: 400, body: TWO_ORIGINALS }),
    get("auth: the original URI twice", Nginx, PROXY, "/orders/7",
        &[KEY, VIA_PROXY, ("x-original-uri", "/admin")],
        Expect::Door { status: 400, body: TWO_ORIGINALS }),
    get("auth: not the endpoint's path", Auth, PROXY, "/v1/check/orders/../admin",
        &[KEY, VIA_PROXY], Expect::Door { status: 404, body: NOT_THE_ENDPOINT }),
    // --- protocol abuse: the proxy door -----------------------------------
    get("proxy: a 70 KB header", Proxy, DIRECT, "/orders/7", &[KEY, ("x-big", "{70_kb}")],
        Expect::Door { status: 431, body: TOO_LARGE }),
    bytes("proxy: 101 header fields", Proxy, DIRECT,
        b"GET /orders/7 HTTP/1.1\r\nHost: ipgate.test\r\nX-API-Key: {key}\r\n{101_fields}Connection: close\r\n\r\n",
        Expect::Door { status: 431, body: TOO_MANY }),
    get("proxy: a 200 KB header is refused while it is read", Proxy, DIRECT, "/orders/7",
        &[KEY, ("x-big", "{200_kb}")], Expect::Bare(431)),
    bytes("proxy: 201 header fields are refused while they are read", Proxy, DIRECT,
        b"GET /orders/7 HTTP/1.1\r\nHost: ipgate.test\r\n{201_fields}Connection: close\r\n\r\n",
        Expect::Bare(431)),
    bytes("proxy: a 70 KB request target", Proxy, DIRECT,
        b"GET /{70_kb} HTTP/1.1\r\nHost: ipgate.test\r\nConnection: close\r\n\r\n",
        Expect::Bare(414)),
    bytes("proxy: garbage", Proxy, DIRECT, b"\x00\x01\x02garbage\xff\xfe\r\n\r\n",
        Expect::Bare(400)),
    bytes("proxy: a TLS ClientHello on the plain port", Proxy, DIRECT, TLS_CLIENT_HELLO,
        Expect::Bare(400)),
    bytes("proxy: Content-Length and Transfer-Encoding: the body is chunked, the rest never decided",
        Proxy, DIRECT,
        b"POST /orders/7 HTTP/1.1\r\nHost: ipgate.test\r\nX-API-Key: {key}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: ipgate.test\r\nX-API-Key: {key}\r\n\r\n",
        forwarded_as("POST /orders/7", C_DIRECT)),
    bytes("proxy: Transfer-Encoding before Content-Length", Proxy, DIRECT,
        b"POST /orders/7 HTTP/1.1\r\nHost: ipgate.test\r\nX-API-Key: {key}\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: ipgate.test\r\n\r\n",
        forwarded_as("POST /orders/7", C_DIRECT)),
    bytes("proxy: two different Content-Lengths", Proxy, DIRECT,
        b"POST /orders/7 HTTP/1.1\r\nHost: ipgate.test\r\nX-API-Key: {key}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        Expect::Bare(400)),
    bytes("proxy: a Transfer-Encoding that is not chunked", Proxy, DIRECT,
        b"POST /orders/7 HTTP/1.1\r\nHost: ipgate.test\r\nX-API-Key: {key}\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        Expect::Bare(400)),
    bytes("proxy: Transfer-Encoding in HTTP/1.0", Proxy, DIRECT,
        b"POST /orders/7 HTTP/1.0\r\nHost: ipgate.test\r\nX-API-Key: {key}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        Expect::Bare(400)),
    bytes("proxy: a header folded over two lines", Proxy, DIRECT,
        b"GET /orders/7 HTTP/1.1\r\nHost: ipgate.test\r\nX-API-Key: {key}\r\nX-Folded: a\r\n b\r\nConnection: close\r\n\r\n",
        Expect::Bare(400)),
    slowly("proxy: a head a byte at a time", Proxy, SLOW_HEAD),
    bytes("proxy: a head that never ends", Proxy, DIRECT,
        b"GET /orders/7 HTTP/1.1\r\nHost: ipgate.test\r\n", Expect::Closed),
    bytes("proxy: an HTTP/2 preface and then nothing", Proxy, DIRECT,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Expect::H2Closed { after_head_timeout: true }),
    // --- protocol abuse: the auth endpoint --------------------------------
    get("auth: a 70 KB header", Nginx, PROXY, "/orders/7", &[KEY, VIA_PROXY, ("x-big", "{70_kb}")],
        Expect::Door { status: 431, body: TOO_LARGE }),
    bytes("auth: 101 header fields", Auth, PROXY,
        b"GET /v1/check/orders HTTP/1.1\r\nHost: ipgate.test\r\nX-Original-Method: GET\r\nX-Original-URI: /orders/7\r\n{101_fields}Connection: close\r\n\r\n",
        Expect::Door { status: 431, body: TOO_MANY }),
    get("auth: a 200 KB header is refused while it is read", Nginx, PROXY, "/orders/7",
        &[KEY, ("x-big", "{200_kb}")], Expect::Bare(431)),
    bytes("auth: garbage", Auth, PROXY, b"\x00\x01\x02garbage\xff\xfe\r\n\r\n", Expect::Bare(400)),
    bytes("auth: a TLS ClientHello on the plain port", Auth, PROXY, TLS_CLIENT_HELLO,
        Expect::Bare(400)),
    bytes("auth: Content-Length and Transfer-Encoding", Auth, PROXY,
        b"POST /v1/check/orders HTTP/1.1\r\nHost: ipgate.test\r\nX-Original-Method: GET\r\nX-Original-URI: /orders/7\r\nX-Forwarded-For: 203.0.113.7\r\nX-API-Key: {key}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/check/orders HTTP/1.1\r\nX-Original-Method: GET\r\nX-Original-URI: /admin\r\n\r\n",
        allowed(C_OFFICE_XFF)),
    slowly("auth: a head a byte at a time", Auth, SLOW_AUTH_HEAD),
    // --- protocol abuse: the gRPC port ------------------------------------
    bytes("grpc: HTTP/1 garbage", Grpc, DIRECT, b"\x00\x01\x02garbage\xff\xfe\r\n\r\n",
        Expect::H2Closed { after_head_timeout: false }),
    bytes("grpc: a TLS ClientHello on the plain port", Grpc, DIRECT, TLS_CLIENT_HELLO,
        Expect::H2Closed { after_head_timeout: false }),
];

/// The start of a TLS 1.2/1.3 ClientHello for `ipgate.test`, as a client
/// sends it to a port it believes speaks TLS.
const TLS_CLIENT_HELLO: &[u8] = b"\x16\x03\x01\x00\x5e\x01\x00\x00\x5a\x03\x03\
\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\
\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\
\x00\x00\x04\x13\x01\x13\x02\x01\x00\x00\x2d\x00\x00\x00\x10\x00\x0e\x00\x00\x0bipgate.test\
\x00\x0a\x00\x04\x00\x02\x00\x1d\x00\x2b\x00\x03\x02\x03\x04\x00\x0d\x00\x04\x00\x02\x04\x03\
\x00\x33\x00\x02\x00\x00";

/// A request head that never ends: 30 bytes of line, then a header value
/// that would take 10 s at the pace of [`Payload::Slowly`].
const SLOW_HEAD: &[u8] = b"GET /orders/7 HTTP/1.1\r\nX-Slow: \
aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\
aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const SLOW_AUTH_HEAD: &[u8] = b"GET /v1/check/orders HTTP/1.1\r\nX-Slow: \
aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\
aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// The requirement: at least 60 cases, each with its outcome written down.
#[test]
fn the_table_has_at_least_60_cases_with_distinct_names() {
    assert!(CASES.len() >= 60, "only {} cases", CASES.len());
    let mut names = HashSet::new();
    for case in CASES {
        assert!(
            names.insert(case.name),
            "two cases are named {:?}",
            case.name
        );
    }
    // Every path spelling is tried at every door that decides on a path.
    for spelling in [
        "/%61dmin",
        "/hello/../admin",
        "/./admin",
        "//admin",
        "/ADMIN",
        "/admin%2f",
        "/hello/..%2fadmin",
        "/admin%00",
        "/../admin",
    ] {
        for door in [Proxy, ExtAuthz, Nginx, Traefik, Check] {
            assert!(
                CASES.iter().any(|c| c.door == door
                    && matches!(c.send, Payload::Request { path, .. } if path == spelling)),
                "{spelling} is not tried at {door:?}"
            );
        }
    }
}

// === running the table ===

/// Secrets and generated text the placeholders stand for.
struct Secrets(Vec<(&'static str, Vec<u8>)>);

impl Secrets {
    /// `text` with every `{name}` it knows replaced.
    fn fill(&self, text: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len());
        let mut rest = text;
        'scan: while let Some(&first) = rest.first() {
            if first == b'{' {
                for (name, value) in &self.0 {
                    let placeholder = format!("{{{name}}}");
                    if rest.starts_with(placeholder.as_bytes()) {
                        out.extend_from_slice(value);
                        rest = &rest[placeholder.len()..];
                        continue 'scan;
                    }
                }
            }
            out.push(first);
            rest = &rest[1..];
        }
        out
    }

    fn fill_text(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.fill(text.as_bytes())).into_owned()
    }
}

/// What the suite runs against.
struct Stage {
    /// The database's folder lives as long as the control plane using it.
    _backend: Backend,
    _cp: ControlPlane,
    admin: ipgate_tests::process::AdminClient,
    enforcer: Enforcer,
    auth: SocketAddr,
    grpc: Channel,
    secrets: Secrets,
}

/// A control plane; the API `orders` with a rule that `/admin` needs the
/// scope `admin`, a key without it (and a second one) allowed from
/// 203.0.113.0/24 and 127.0.0.3, and a revoked one; an API `payments` with
/// a key; a tenant B with a key of its own; and an enforcer with every door
/// on, trusting 127.0.0.1, with a head timeout of [`HEAD_TIMEOUT`].
async fn stage() -> Stage {
    let backend = Backend::sqlite();
    let cp = ControlPlane::start(&backend);
    let mut admin = cp.admin().await;
    for slug in ["orders", "payments"] {
        admin
            .create_api(CreateApiRequest {
                slug: slug.into(),
                name: slug.into(),
                ..Default::default()
            })
            .await
            .expect("create an API");
    }
    admin
        .update_api(UpdateApiRequest {
            slug: "orders".into(),
            routes: Some(RouteRules {
                rules: vec![RouteRule {
                    method: "*".into(),
                    path_prefix: "/admin".into(),
                    scope: "admin".into(),
                }],
            }),
            ..Default::default()
        })
        .await
        .expect("a rule on /admin");
    let key = |api: &'static str, name: &'static str| {
        let mut admin = admin.clone();
        async move {
            let created = admin
                .create_api_key(CreateApiKeyRequest {
                    api: api.into(),
                    name: name.into(),
                    allowlist: entries(&["203.0.113.0/24", DIRECT]),
                    ..Default::default()
                })
                .await
                .expect("create a key")
                .into_inner();
            (created.secret, created.key.expect("key").id)
        }
    };
    let (orders_key, _) = key("orders", "office").await;
    let (orders_key2, _) = key("orders", "second").await;
    let (revoked, revoked_id) = key("orders", "revoked").await;
    let (payments_key, _) = key("payments", "payments").await;
    admin
        .revoke_api_key(RevokeApiKeyRequest {
            id: revoked_id,
            ..Default::default()
        })
        .await
        .expect("revoke a key");

    let tenant_b = admin
        .create_tenant(CreateTenantRequest {
            id: "tenant-b".into(),
            name: "Tenant B".into(),
            ..Default::default()
        })
        .await
        .expect("create tenant B")
        .into_inner();
    let mut owner_b = cp.admin_with(&tenant_b.owner_secret).await;
    owner_b
        .create_api(CreateApiRequest {
            slug: "b-orders".into(),
            name: "B's orders".into(),
            ..Default::default()
        })
        .await
        .expect("B's API");
    let tenant_b_key = owner_b
        .create_api_key(CreateApiKeyRequest {
            api: "b-orders".into(),
            name: "B's key".into(),
            ..Default::default()
        })
        .await
        .expect("B's key")
        .into_inner()
        .secret;

    let enforcer = Enforcer::start_with(
        &cp,
        "orders",
        upstream::start().await,
        &["--auth-listen", "127.0.0.1:0"],
        &[
            ("IPGATE_TRUSTED_PROXIES", PROXY),
            ("IPGATE_HEADER_READ_TIMEOUT", "1s"),
        ],
    );
    let auth = enforcer.auth_addr.expect("the auth endpoint listens");
    let grpc = Channel::from_shared(format!("http://{}", enforcer.grpc_addr))
        .expect("url")
        .connect()
        .await
        .expect("connect to the gRPC port");

    let secrets = Secrets(vec![
        ("key2", orders_key2.into_bytes()),
        ("key", orders_key.clone().into_bytes()),
        ("revoked", revoked.into_bytes()),
        ("payments_key", payments_key.into_bytes()),
        ("tenant_b_key", tenant_b_key.into_bytes()),
        ("bad_checksum", bad_checksum(&orders_key).into_bytes()),
        ("xff_huge", {
            let mut xff = "198.51.100.1, ".repeat(4_000);
            xff.push_str(OFFICE);
            xff.into_bytes()
        }),
        ("xff_40_trusted", {
            let mut xff = format!("{OFFICE}, ");
            xff.push_str(&vec![PROXY; 40].join(", "));
            xff.into_bytes()
        }),
        ("xff_90_lines", {
            let mut lines = format!("X-Forwarded-For: {OUTSIDER}\r\n").repeat(89);
            lines.push_str(&format!("X-Forwarded-For: {OFFICE}\r\n"));
            lines.into_bytes()
        }),
        ("101_fields", fields(101)),
        ("201_fields", fields(201)),
        ("70_kb", vec![b'v'; 70_000]),
        ("200_kb", vec![b'v'; 200_000]),
    ]);
    let stage = Stage {
        _backend: backend,
        _cp: cp,
        admin,
        enforcer,
        auth,
        grpc,
        secrets,
    };
    // The first snapshot holds everything above.
    eventually(PROPAGATION, "the enforcer to sync", || async {
        let res = exchange(
            ip(DIRECT),
            stage.enforcer.proxy_addr,
            &stage.normal_proxy(),
            false,
        )
        .await;
        res.answer().ok().filter(|a| a.status == 200).map(|_| ())
    })
    .await;
    stage
}

/// `n` header fields `X-F<i>: 1`, each on its line.
fn fields(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| format!("X-F{i}: 1\r\n"))
        .collect::<String>()
        .into_bytes()
}

/// `key` with its last character (part of the checksum) changed.
fn bad_checksum(key: &str) -> String {
    let mut chars: Vec<char> = key.chars().collect();
    let last = chars.last_mut().expect("a key is not empty");
    *last = if *last == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// What came back on a connection.
struct Exchange {
    bytes: Vec<u8>,
    /// The server closed (or reset) the connection within [`ANSWER_LIMIT`].
    closed: bool,
    took: Duration,
}

/// One HTTP/1.1 answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// Bytes after the first answer: a second answer, which no case may get.
    trailing: usize,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Exchange {
    /// The first HTTP/1 answer in what came back.
    fn answer(&self) -> Result<Answer, String> {
        let bytes = &self.bytes;
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("no answer: {:?}", String::from_utf8_lossy(bytes)))?;
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP/1.1 answer: {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let rest = &bytes[end + 4..];
        let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        let (body, used) = if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            dechunk(rest)?
        } else if let Some(length) = find("content-length") {
            let length: usize = length.parse().map_err(|_| "bad content-length")?;
            let body = rest.get(..length).ok_or("a short body")?;
            (body.to_vec(), length)
        } else {
            (rest.to_vec(), rest.len())
        };
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            headers,
            trailing: rest.len() - used,
        })
    }
}

/// A chunked body and how many bytes it took.
fn dechunk(mut rest: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let total = rest.len();
    let mut body = Vec::new();
    // At most one chunk per byte: bounded.
    for _ in 0..=total {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk without its size line")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            let end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("no end of the chunked body")?;
            rest = &rest[end + 2..];
            return Ok((body, total - rest.len()));
        }
        body.extend_from_slice(rest.get(..size).ok_or("a short chunk")?);
        rest = rest.get(size + 2..).ok_or("a short chunk")?;
    }
    Err("too many chunks".into())
}

/// `Ok` when `bytes` are whole HTTP/2 frames, none of them HEADERS,
/// PUSH_PROMISE, CONTINUATION or DATA: a server's preface and control
/// frames, no answer.
fn only_control_frames(mut bytes: &[u8]) -> Result<(), String> {
    const DATA: u8 = 0x0;
    const HEADERS: u8 = 0x1;
    const PUSH_PROMISE: u8 = 0x5;
    const CONTINUATION: u8 = 0x9;
    // At most one frame per 9 bytes: bounded.
    for _ in 0..=bytes.len() / 9 {
        if bytes.is_empty() {
            return Ok(());
        }
        let header = bytes.get(..9).ok_or("a cut HTTP/2 frame header")?;
        let length =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        if matches!(header[3], DATA | HEADERS | PUSH_PROMISE | CONTINUATION) {
            return Err(format!("an HTTP/2 frame of type {} came back", header[3]));
        }
        bytes = bytes.get(9 + length..).ok_or("a cut HTTP/2 frame")?;
    }
    Ok(())
}

/// Sends `bytes` from `from` to `to` (one at a time, 50 ms apart, when
/// `slowly`) and reads until the server closes, at most [`ANSWER_LIMIT`].
async fn exchange(from: IpAddr, to: SocketAddr, bytes: &[u8], slowly: bool) -> Exchange {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(from, 0))
        .expect("bind the source address");
    let stream = socket
        .connect(to)
        .await
        .unwrap_or_else(|e| panic!("connect {from} -> {to}: {e}"));
    let started = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    let write = async {
        if slowly {
            for byte in bytes {
                if writer.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } else {
            // The server may close before it read everything: fine.
            let _ = writer.write_all(bytes).await;
        }
        std::future::pending::<()>().await;
    };
    let read = async {
        let mut got = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let deadline = started + ANSWER_LIMIT;
        loop {
            match tokio::time::timeout_at(deadline, reader.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
                Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
                Err(_) => return (got, false),
            }
        }
    };
    let (bytes, closed) = tokio::select! {
        read = read => read,
        () = write => unreachable!("writing never ends by itself"),
    };
    Exchange {
        bytes,
        closed,
        took: started.elapsed(),
    }
}

/// One HTTP/1.1 request's bytes, closing the connection after the answer.
fn http_request(method: &str, target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut text = format!("{method} {target} HTTP/1.1\r\nHost: ipgate.test\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("Connection: close\r\n\r\n");
    text.into_bytes()
}

/// What a case got, in one shape for every door.
#[derive(Debug)]
enum Got {
    /// An HTTP answer (for ext_authz and the check door: the decision's).
    Answer {
        status: u16,
        body: String,
        /// `x-ipgate-client-ip` (the check door: `client_ip`).
        client_ip: Option<String>,
        request_id: Option<String>,
        /// The proxy's upstream answered.
        from_upstream: bool,
        /// Bytes after the answer (HTTP doors).
        trailing: usize,
        /// The connection was closed after it.
        closed: bool,
    },
    /// Closed with these bytes (not an HTTP/1 answer), after so long.
    Closed { bytes: Vec<u8>, took: Duration },
    /// Still open, unanswered, after [`ANSWER_LIMIT`].
    Open,
    /// A gRPC error.
    Grpc(Code),
}

impl Stage {
    /// An ordinary request to the proxy: the key, from an allowed client.
    fn normal_proxy(&self) -> Vec<u8> {
        self.secrets
            .fill(&http_request("GET", "/orders/7", &[("x-api-key", "{key}")]))
    }

    fn addr(&self, door: Door) -> SocketAddr {
        match door {
            Proxy => self.enforcer.proxy_addr,
            Nginx | Traefik | Auth => self.auth,
            ExtAuthz | Check | Grpc => self.enforcer.grpc_addr,
        }
    }

    /// Sends `case` as its door expects it; what came back.
    async fn send(&self, index: usize, case: &Case) -> Got {
        let id = format!("adversarial-{index}");
        match (case.door, case.send) {
            (
                ExtAuthz,
                Payload::Request {
                    method,
                    path,
                    headers,
                },
            ) => self.ext_authz(&id, case.from, method, path, headers).await,
            (
                Check,
                Payload::Request {
                    method,
                    path,
                    headers,
                },
            ) => self.check(&id, case.from, method, path, headers).await,
            (door, send) => {
                let (bytes, slowly) = match send {
                    Payload::Request {
                        method,
                        path,
                        headers,
                    } => (self.http_bytes(door, method, path, headers), false),
                    Payload::Bytes(raw) => (self.secrets.fill(raw), false),
                    Payload::Slowly(raw) => (self.secrets.fill(raw), true),
                };
                let exchange = exchange(ip(case.from), self.addr(door), &bytes, slowly).await;
                match exchange.answer() {
                    Ok(answer) => Got::Answer {
                        status: answer.status,
                        client_ip: answer.header("x-ipgate-client-ip").map(str::to_owned),
                        request_id: answer.header("x-request-id").map(str::to_owned),
                        from_upstream: answer.body.starts_with(UPSTREAM_BODY),
                        trailing: answer.trailing,
                        body: answer.body,
                        closed: exchange.closed,
                    },
                    Err(_) if exchange.closed => Got::Closed {
                        bytes: exchange.bytes,
                        took: exchange.took,
                    },
                    Err(_) => Got::Open,
                }
            }
        }
    }

    /// The HTTP request a case describes, for the door it is sent to.
    fn http_bytes(
        &self,
        door: Door,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Vec<u8> {
        let mut lines: Vec<(&str, &str)> = match door {
            Nginx => vec![("X-Original-Method", method), ("X-Original-URI", path)],
            Traefik => vec![
                ("X-Forwarded-Method", method),
                ("X-Forwarded-Uri", path),
                ("X-Forwarded-Host", "ipgate.test"),
            ],
            _ => vec![],
        };
        lines.extend_from_slice(headers);
        let raw = match door {
            Nginx | Traefik => http_request("GET", "/v1/check/orders", &lines),
            _ => http_request(method, path, &lines),
        };
        self.secrets.fill(&raw)
    }

    async fn ext_authz(
        &self,
        id: &str,
        source: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Got {
        // Envoy joins repeated headers with commas.
        let mut joined: HashMap<String, String> = HashMap::new();
        for (name, value) in headers {
            let value = self.secrets.fill_text(value);
            joined
                .entry((*name).to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        let request = EnvoyCheck {
            attributes: Some(AttributeContext {
                source: Some(attribute_context::Peer {
                    address: Some(Address {
                        address: Some(address::Address::SocketAddress(SocketAddress {
                            address: source.into(),
                            port_specifier: Some(PortSpecifier::PortValue(50_000)),
                            ..Default::default()
                        })),
                    }),
                    ..Default::default()
                }),
                request: Some(attribute_context::Request {
                    http: Some(attribute_context::HttpRequest {
                        id: id.into(),
                        method: method.into(),
                        path: self.secrets.fill_text(path),
                        host: "ipgate.test".into(),
                        headers: joined,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                context_extensions: HashMap::from([("ipgate_api".to_owned(), "orders".to_owned())]),
                ..Default::default()
            }),
        };
        let mut client = AuthorizationClient::new(self.grpc.clone());
        let answer = match client.check(request).await {
            Ok(answer) => answer.into_inner(),
            Err(status) => return Got::Grpc(status.code()),
        };
        let header = |headers: &[envoy_types::pb::envoy::config::core::v3::HeaderValueOption],
                      name: &str| {
            headers
                .iter()
                .filter_map(|h| h.header.as_ref())
                .find(|h| h.key == name)
                .map(|h| h.value.clone())
        };
        match answer.http_response {
            Some(HttpResponse::OkResponse(ok)) => Got::Answer {
                status: 200,
                body: String::new(),
                client_ip: None,
                request_id: header(&ok.headers, "x-request-id"),
                from_upstream: false,
                trailing: 0,
                closed: true,
            },
            Some(HttpResponse::DeniedResponse(denied)) => Got::Answer {
                status: denied
                    .status
                    .and_then(|s| u16::try_from(s.code).ok())
                    .unwrap_or(0),
                body: denied.body,
                client_ip: header(&denied.headers, "x-ipgate-client-ip"),
                request_id: header(&denied.headers, "x-request-id"),
                from_upstream: false,
                trailing: 0,
                closed: true,
            },
            other => panic!("ext_authz answered neither OK nor denied: {other:?}"),
        }
    }

    async fn check(
        &self,
        id: &str,
        client_ip: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Got {
        let api_key = headers
            .iter()
            .find(|(name, _)| *name == "x-api-key")
            .map(|(_, value)| self.secrets.fill_text(value))
            .unwrap_or_default();
        let mut client = CheckServiceClient::new(self.grpc.clone());
        let answer = client
            .check(CheckRequest {
                api: "orders".into(),
                api_key,
                client_ip: client_ip.into(),
                method: method.into(),
                path: self.secrets.fill_text(path),
                request_id: id.into(),
            })
            .await;
        match answer {
            Ok(answer) => {
                let answer = answer.into_inner();
                Got::Answer {
                    status: u16::try_from(answer.http_status).unwrap_or(0),
                    body: answer.body,
                    client_ip: Some(answer.client_ip),
                    request_id: Some(answer.request_id),
                    from_upstream: false,
                    trailing: 0,
                    closed: true,
                }
            }
            Err(status) => Got::Grpc(status.code()),
        }
    }

    /// After a case: `door` still answers an ordinary, allowed request.
    async fn still_serves(&self, door: Door) -> Result<(), String> {
        let normal = match door {
            Proxy => get("", Proxy, DIRECT, "/orders/7", &[KEY], allowed(C_DIRECT)),
            Nginx | Traefik | Auth => get(
                "",
                Nginx,
                PROXY,
                "/orders/7",
                &[KEY, VIA_PROXY],
                allowed(C_OFFICE_XFF),
            ),
            ExtAuthz => get(
                "",
                ExtAuthz,
                OFFICE,
                "/orders/7",
                &[KEY],
                allowed(at(OFFICE, "peer")),
            ),
            Check | Grpc => get(
                "",
                Check,
                OFFICE,
                "/orders/7",
                &[KEY],
                allowed(C_OFFICE_NAMED),
            ),
        };
        let got = self.send(usize::MAX, &normal).await;
        match got {
            Got::Answer { status: 200, .. } => Ok(()),
            other => Err(format!(
                "afterwards, {door:?} did not serve an ordinary request: {other:?}"
            )),
        }
    }
}

/// The differences between what a case expects and what it got; the
/// decided client to look for in the usage log.
fn compare(case: &Case, got: &Got) -> (Vec<String>, Option<(String, Client)>) {
    let mut wrong = Vec::new();
    let mut logged = None;
    let http_door = matches!(case.door, Proxy | Nginx | Traefik | Auth);
    match (case.expect, got) {
        (
            Expect::Allowed { client, upstream },
            Got::Answer {
                status,
                body,
                request_id,
                from_upstream,
                trailing,
                ..
            },
        ) => {
            if *status != 200 {
                wrong.push(format!("status {status}, body {body:?}"));
            }
            if case.door == Proxy {
                let saw = upstream.map(|u| format!("{UPSTREAM_BODY} {u} "));
                if !from_upstream || saw.is_some_and(|s| !body.starts_with(&s)) {
                    wrong.push(format!(
                        "the upstream should have seen {upstream:?}: {body:?}"
                    ));
                }
            } else if !body.is_empty() {
                wrong.push(format!("allowed with a body {body:?}"));
            }
            if *trailing != 0 {
                wrong.push(format!("{trailing} bytes after the answer"));
            }
            match request_id {
                Some(id) => logged = Some((id.clone(), client)),
                None => wrong.push("no request id".into()),
            }
        }
        (
            Expect::Refused {
                status: want,
                body: want_body,
                client,
            },
            Got::Answer {
                status,
                body,
                client_ip,
                request_id,
                trailing,
                ..
            },
        ) => {
            if (*status, body.as_str()) != (want, want_body) {
                wrong.push(format!("{status} {body:?}, expected {want} {want_body:?}"));
            }
            if client_ip.as_deref() != Some(client.ip) {
                wrong.push(format!("decided on {client_ip:?}, expected {}", client.ip));
            }
            if *trailing != 0 {
                wrong.push(format!("{trailing} bytes after the answer"));
            }
            match request_id {
                Some(id) => logged = Some((id.clone(), client)),
                None => wrong.push("no request id".into()),
            }
        }
        (
            Expect::Door {
                status: want,
                body: want_body,
            },
            Got::Answer {
                status,
                body,
                request_id,
                trailing,
                ..
            },
        ) => {
            if (*status, body.as_str()) != (want, want_body) {
                wrong.push(format!("{status} {body:?}, expected {want} {want_body:?}"));
            }
            if request_id.is_some() {
                wrong.push(format!(
                    "a door's own answer with a request id {request_id:?}"
                ));
            }
            if *trailing != 0 {
                wrong.push(format!("{trailing} bytes after the answer"));
            }
        }
        (
            Expect::Bare(want),
            Got::Answer {
                status,
                body,
                closed,
                ..
            },
        ) => {
            if *status != want || !body.is_empty() || !closed {
                wrong.push(format!(
                    "{status} {body:?} (closed: {closed}), expected a bare {want} and the connection closed"
                ));
            }
        }
        (Expect::Closed, Got::Closed { bytes, took }) => {
            if !bytes.is_empty() {
                wrong.push(format!("{} bytes came back", bytes.len()));
            }
            if *took < HEAD_TIMEOUT || *took >= ANSWER_LIMIT {
                wrong.push(format!(
                    "closed after {took:?}, expected after the head timeout"
                ));
            }
        }
        (Expect::H2Closed { after_head_timeout }, Got::Closed { bytes, took }) => {
            if let Err(e) = only_control_frames(bytes) {
                wrong.push(e);
            }
            // Closed, not left open; a server that closes at once need
            // not beat a busy machine's clock to the head timeout.
            let in_time = *took < ANSWER_LIMIT && (!after_head_timeout || *took >= HEAD_TIMEOUT);
            if !in_time {
                wrong.push(format!(
                    "closed after {took:?} (expected after the head timeout: {after_head_timeout})"
                ));
            }
        }
        (Expect::Grpc(want), Got::Grpc(code)) => {
            if *code != want {
                wrong.push(format!("gRPC {code:?}, expected {want:?}"));
            }
        }
        (expect, got) => wrong.push(format!("got {got:?}, expected {expect:?}")),
    }
    if http_door && let Got::Answer { closed: false, .. } = got {
        wrong.push("the connection stayed open after `Connection: close`".into());
    }
    (wrong, logged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_gets_its_outcome_and_every_door_stays_up() {
    let stage = stage().await;
    let mut wrong = Vec::new();
    let mut to_find: Vec<(&'static str, String, Client)> = Vec::new();
    for (index, case) in CASES.iter().enumerate() {
        let got = if matches!(case.send, Payload::Slowly(_)) {
            // Others are served while a slow client holds its connection.
            let (got, meanwhile) = tokio::join!(stage.send(index, case), async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                stage.still_serves(case.door).await
            });
            if let Err(e) = meanwhile {
                wrong.push(format!("{}: while it ran, {e}", case.name));
            }
            got
        } else {
            stage.send(index, case).await
        };
        let (differences, logged) = compare(case, &got);
        wrong.extend(
            differences
                .into_iter()
                .map(|d| format!("{}: {d}", case.name)),
        );
        if let Some((id, client)) = logged {
            to_find.push((case.name, id, client));
        }
        if let Err(e) = stage.still_serves(case.door).await {
            wrong.push(format!("{}: {e}", case.name));
        }
    }

    // Each decision is in the usage log, on the client and source expected.
    let ids: HashSet<String> = to_find.iter().map(|(_, id, _)| id.clone()).collect();
    let (entries, _) = eventually(PROPAGATION, "every decided case in the usage log", || {
        let admin = stage.admin.clone();
        let ids = ids.clone();
        async move {
            let found = usage_log(admin, &ids).await?;
            (found.len() == ids.len()).then_some(found)
        }
    })
    .await;
    for (name, id, client) in &to_find {
        let entry = &entries[id];
        if (entry.client_ip.as_str(), entry.client_ip_source.as_str()) != (client.ip, client.source)
        {
            wrong.push(format!(
                "{name}: logged as {} from {}, expected {} from {}",
                entry.client_ip, entry.client_ip_source, client.ip, client.source
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases went wrong:\n{}",
        wrong.len(),
        CASES.len(),
        wrong.join("\n")
    );
    println!("{} adversarial cases, each as expected", CASES.len());
}

/// The usage-log entries among `ids`, by request id (at most 20 pages).
async fn usage_log(
    mut admin: ipgate_tests::process::AdminClient,
    ids: &HashSet<String>,
) -> Option<HashMap<String, UsageLogEntry>> {
    let mut found = HashMap::new();
    let mut page_token = String::new();
    for _ in 0..20 {
        let page = admin
            .query_usage_logs(QueryUsageLogsRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await
            .ok()?
            .into_inner();
        for entry in page.entries {
            if ids.contains(&entry.request_id) {
                found.insert(entry.request_id.clone(), entry);
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    Some(found)
}
