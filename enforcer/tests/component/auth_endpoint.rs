//! The HTTP auth endpoint, asked as nginx `auth_request` and Traefik
//! ForwardAuth ask it: requests written byte for byte on sockets from chosen
//! loopback addresses (127.0.0.1 plays the trusted proxy, 127.0.0.2 a
//! caller that is not), against the real enforcer synced to [`Doors`].

use std::net::SocketAddr;

use ipgate_enforcer::Running;
use ipgate_shared::proto::sync::v1 as wire;

use crate::{
    doors_world::*,
    raw::{self, Answer},
    support::*,
};

const PROXY_PEER: &str = "127.0.0.1";
const OTHER_PEER: &str = "127.0.0.2";

/// An enforcer with the auth endpoint on, trusting 127.0.0.1 as a proxy,
/// with `flags` more.
async fn endpoint(
    fake: &mut FakeControlPlane,
    flags: &[&str],
) -> (Running, Session, Doors, SocketAddr) {
    let mut all = vec![
        "--auth-listen",
        "127.0.0.1:0",
        "--trusted-proxies",
        "127.0.0.1/32",
    ];
    all.extend_from_slice(flags);
    let (running, session, doors) = synced_doors(fake, &all).await;
    let addr = running.auth_addr.expect("auth endpoint running");
    (running, session, doors, addr)
}

/// `GET target` on the auth endpoint with `headers`, from `source`.
async fn ask_from(
    source: &str,
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut head = format!("GET {target} HTTP/1.1\r\nHost: ipgate-auth");
    for (name, value) in headers {
        head.push_str(&format!("\r\n{name}: {value}"));
    }
    raw::send_on(raw::connect_from(source, addr).await, b"", &head).await
}

/// As nginx asks: the original request in `X-Original-*`, its headers
/// (the key among them) carried along, the client appended to
/// `X-Forwarded-For` by `proxy_set_header`.
async fn nginx(
    addr: SocketAddr,
    api: &str,
    method: &str,
    uri: &str,
    key: &str,
    client: &str,
) -> Answer {
    let target = format!("/v1/check/{api}");
    ask_from(
        PROXY_PEER,
        addr,
        &target,
        &[
            ("X-Original-Method", method),
            ("X-Original-URI", uri),
            ("X-API-Key", key),
            ("X-Forwarded-For", client),
        ],
    )
    .await
}

fn assert_denied(answer: &Answer, status: u16, body: &str, client_ip: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(answer.body, body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.header("x-ipgate-client-ip"), Some(client_ip));
    assert!(
        answer
            .header("x-request-id")
            .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()),
        "{answer:?}"
    );
    // nginx reads no body of an auth subrequest: the body and status come
    // again in headers, exactly.
    assert_eq!(answer.value("x-ipgate-error"), Some(body));
    assert_eq!(
        answer.header("x-ipgate-status"),
        Some(status.to_string().as_str())
    );
}

async fn logged(fake: &FakeControlPlane, answer: &Answer) -> wire::UsageEvent {
    let id = answer.header("x-request-id").expect("a request id");
    event(fake, id).await
}

#[tokio::test]
async fn nginx_style_requests_are_decided_on_the_forwarded_client() {
    let mut fake = FakeControlPlane::start().await;
    let (running, _session, doors, addr) = endpoint(&mut fake, &[]).await;

    let allowed = nginx(
        addr,
        "orders",
        "POST",
        "/orders/7?page=2",
        &doors.office.secret,
        OFFICE_IP,
    )
    .await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(allowed.body, "");
    assert_eq!(
        allowed.header("x-ipgate-key-id"),
        Some(doors.office.id.to_string().as_str())
    );
    assert_eq!(allowed.header("x-ipgate-api"), Some("orders"));
    let event = logged(&fake, &allowed).await;
    assert_eq!(
        wire::Door::try_from(event.door).unwrap(),
        wire::Door::AuthRequest
    );
    assert_eq!(
        (
            event.method.as_str(),
            event.path.as_str(),
            event.client_ip.as_str()
        ),
        ("POST", "/orders/7", OFFICE_IP),
        "the original request, its path without the query"
    );
    assert_eq!(event.matched_label, "office");

    // Key-level: the office key for a stranger.
    let denied = nginx(
        addr,
        "orders",
        "GET",
        "/orders/7",
        &doors.office.secret,
        STRANGER_IP,
    )
    .await;
    assert_denied(&denied, 403, KEY_BODY, STRANGER_IP);
    let event = logged(&fake, &denied).await;
    assert_eq!(
        (event.reason.as_str(), event.status_code),
        ("IP_NOT_ALLOWED_KEY", 403)
    );

    // 401: no key, a wrong one.
    for key in ["", "ipg_live_not-a-key"] {
        let answer = nginx(addr, "orders", "GET", "/orders", key, OFFICE_IP).await;
        assert_denied(&answer, 401, INVALID_KEY_BODY, OFFICE_IP);
    }
    // An unknown API.
    let answer = nginx(addr, "nope", "GET", "/", &doors.office.secret, OFFICE_IP).await;
    assert_denied(&answer, 404, NOT_FOUND_BODY, OFFICE_IP);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn traefik_style_requests_and_the_api_in_a_header() {
    let mut fake = FakeControlPlane::start().await;
    let (running, _session, doors, addr) = endpoint(&mut fake, &[]).await;
    let bearer = format!("Bearer {}", doors.payer.secret);
    let traefik = |client: &'static str, target: &'static str| {
        let bearer = bearer.clone();
        async move {
            ask_from(
                PROXY_PEER,
                addr,
                target,
                &[
                    ("X-Forwarded-Method", "GET"),
                    ("X-Forwarded-Uri", "/charges?limit=5"),
                    ("X-Forwarded-Host", "pay.test"),
                    ("X-Forwarded-Proto", "https"),
                    ("X-Forwarded-For", client),
                    ("Authorization", &bearer),
                    ("X-Ipgate-Api", "payments"),
                ],
            )
            .await
        }
    };
    // The API in the path.
    let allowed = traefik(OFFICE_IP, "/v1/check/payments").await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(allowed.header("x-ipgate-api"), Some("payments"));
    assert_eq!(logged(&fake, &allowed).await.path, "/charges");
    // The API in X-Ipgate-Api, at /v1/check: API-level 403 for a stranger.
    let denied = traefik(STRANGER_IP, "/v1/check").await;
    assert_denied(&denied, 403, API_BODY, STRANGER_IP);
    assert_eq!(logged(&fake, &denied).await.reason, "IP_NOT_ALLOWED_API");
    // The path wins over the header: a client's X-Ipgate-Api, passed on by
    // the proxy, cannot choose another API.
    let other = traefik(OFFICE_IP, "/v1/check/orders").await;
    assert_denied(&other, 401, INVALID_KEY_BODY, OFFICE_IP);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn scopes_are_decided_on_the_normal_path() {
    let mut fake = FakeControlPlane::start().await;
    let (running, _session, doors, addr) = endpoint(&mut fake, &[]).await;
    for uri in [
        "/admin",
        "/hello/../admin",
        "/%61dmin?x=1",
        "//admin",
        "http://api.test/admin",
    ] {
        let denied = nginx(addr, "orders", "GET", uri, &doors.office.secret, OFFICE_IP).await;
        assert_denied(&denied, 403, SCOPE_BODY, OFFICE_IP);
        let allowed = nginx(addr, "orders", "GET", uri, &doors.admin.secret, OFFICE_IP).await;
        assert_eq!(allowed.status, 200, "{uri} with the scope: {allowed:?}");
    }
    let ambiguous = nginx(
        addr,
        "orders",
        "GET",
        "/hello/..%2fadmin",
        &doors.admin.secret,
        OFFICE_IP,
    )
    .await;
    assert_denied(&ambiguous, 400, BAD_PATH_BODY, OFFICE_IP);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn auth_requests_that_name_no_original_request_are_refused() {
    let mut fake = FakeControlPlane::start().await;
    let (running, _session, doors, addr) = endpoint(&mut fake, &[]).await;
    let key = doors.office.secret.as_str();
    const MISSING: &str = r#"{"error":{"code":"BAD_AUTH_REQUEST","message":"The auth request must name the original request: X-Original-Method and X-Original-URI (nginx) or X-Forwarded-Method and X-Forwarded-Uri (Traefik)"}}"#;
    const CONFLICTING: &str = r#"{"error":{"code":"BAD_AUTH_REQUEST","message":"The auth request names the original request more than once, differently"}}"#;
    const NOT_FOUND: &str = r#"{"error":{"code":"NOT_FOUND","message":"The auth endpoint answers at /v1/check/{api}"}}"#;
    /// Target, headers, and the status and body expected.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16, &'a str);
    let cases: &[Case] = &[
        ("/v1/check/orders", &[("X-API-Key", key)], 400, MISSING),
        (
            "/v1/check/orders",
            &[("X-API-Key", key), ("X-Original-URI", "/orders")],
            400,
            MISSING,
        ),
        // Traefik's own headers, and an X-Original-URI its client wrote.
        (
            "/v1/check/orders",
            &[
                ("X-API-Key", key),
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Uri", "/admin"),
                ("X-Original-Method", "GET"),
                ("X-Original-URI", "/orders"),
            ],
            400,
            CONFLICTING,
        ),
        (
            "/v1/check/orders/extra",
            &[("X-Original-Method", "GET"), ("X-Original-URI", "/")],
            404,
            NOT_FOUND,
        ),
        ("/", &[], 404, NOT_FOUND),
    ];
    for (target, headers, status, body) in cases {
        let answer = ask_from(PROXY_PEER, addr, target, headers).await;
        assert_eq!(answer.status, *status, "{target} {headers:?}: {answer:?}");
        assert_eq!(answer.body, *body);
        assert_eq!(answer.value("x-ipgate-error"), Some(*body));
        assert_eq!(answer.header("content-type"), Some("application/json"));
        assert_eq!(answer.header("x-request-id"), None, "not a decision");
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(fake.events().is_empty(), "no decision, no event");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn only_a_trusted_proxy_names_the_client() {
    let mut fake = FakeControlPlane::start().await;
    let (running, _session, doors, addr) = endpoint(&mut fake, &[]).await;
    let from = |source: &'static str| {
        let key = doors.office.secret.clone();
        async move {
            ask_from(
                source,
                addr,
                "/v1/check/orders",
                &[
                    ("X-Original-Method", "GET"),
                    ("X-Original-URI", "/orders"),
                    ("X-API-Key", &key),
                    // A spoofed office address on the left, the real client
                    // appended by the proxy.
                    ("X-Forwarded-For", "203.0.113.9, 198.51.100.1"),
                ],
            )
            .await
        }
    };
    assert_denied(&from(PROXY_PEER).await, 403, KEY_BODY, "198.51.100.1");
    // From a caller that is no trusted proxy the header is ignored.
    assert_denied(&from(OTHER_PEER).await, 403, KEY_BODY, OTHER_PEER);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn behind_an_l4_balancer_the_proxy_header_names_the_peer() {
    let mut fake = FakeControlPlane::start().await;
    let (running, _session, doors, addr) = endpoint(&mut fake, &["--auth-proxy-protocol"]).await;
    // The balancer's client is the proxy that asks, a trusted one.
    let head = format!(
        "GET /v1/check/orders HTTP/1.1\r\nHost: ipgate-auth\r\nX-Original-Method: GET\r\n\
         X-Original-URI: /orders\r\nX-API-Key: {}\r\nX-Forwarded-For: {OFFICE_IP}",
        doors.office.secret
    );
    let stream = raw::connect_from(OTHER_PEER, addr).await;
    let answer = raw::send_on(
        stream,
        b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 7190\r\n",
        &head,
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    // Without a PROXY header the connection is closed unanswered.
    let mut plain = raw::connect_from(PROXY_PEER, addr).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = plain
        .write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
        .await;
    let mut buf = Vec::new();
    let read = within("the endpoint to close", plain.read_to_end(&mut buf)).await;
    assert!(
        read.is_err() || buf.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn heads_over_the_limits_get_431_before_any_decision() {
    let mut fake = FakeControlPlane::start().await;
    let (running, _session, doors, addr) = endpoint(&mut fake, &["--max-headers", "8"]).await;
    let mut headers = vec![
        ("X-Original-Method", "GET"),
        ("X-Original-URI", "/orders"),
        ("X-API-Key", doors.office.secret.as_str()),
    ];
    headers.extend([("X-Filler", "1"); 8]);
    let answer = ask_from(PROXY_PEER, addr, "/v1/check/orders", &headers).await;
    assert_eq!(answer.status, 431, "{answer:?}");
    assert_eq!(
        answer.body,
        r#"{"error":{"code":"TOO_MANY_HEADERS","message":"The request has more header fields than this server accepts"}}"#
    );
    assert_eq!(answer.value("x-ipgate-error"), Some(answer.body.as_str()));
    assert_eq!(answer.header("x-ipgate-status"), Some("431"));
    running.shutdown().await.unwrap();
}
