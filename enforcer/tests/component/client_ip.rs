//! The proxy door behind trusted proxies and an L4 balancer: requests from
//! chosen loopback addresses (127.0.0.1 trusted, 127.0.0.2 not), with
//! forwarding headers and PROXY protocol headers written on the socket.
//!
//! The world's `office` key may call from 203.0.113.0/24 only, so a request
//! with it is allowed exactly when it is decided on an office address.

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use ipgate_enforcer::Running;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream},
};

use crate::{log_capture, support::*};

const TRUSTED_PEER: &str = "127.0.0.1";
const UNTRUSTED_PEER: &str = "127.0.0.2";

/// An upstream that answers 201 and keeps each request's X-Forwarded-For.
async fn upstream() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            let service = service_fn(move |request: Request<Incoming>| {
                let forwarded_for = request
                    .headers()
                    .get("x-forwarded-for")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                log.lock().unwrap().push(forwarded_for);
                let mut response = Response::new(Full::new(Bytes::from_static(b"upstream")));
                *response.status_mut() = StatusCode::CREATED;
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// A synced enforcer proxying `orders` to `upstream`, started with `flags`.
async fn proxy_with(
    fake: &mut FakeControlPlane,
    world: &World,
    upstream: SocketAddr,
    flags: &[&str],
) -> (Running, Session, SocketAddr) {
    let upstream = format!("http://{upstream}");
    let mut args = vec!["--upstream", &upstream, "--api", "orders"];
    args.extend_from_slice(flags);
    let (running, session) = synced(fake, world, &args).await;
    let proxy = running.proxy_addr.expect("proxy door running");
    (running, session, proxy)
}

/// A connection to `target` from loopback address `source`.
async fn connect_from(source: &str, target: SocketAddr) -> TcpStream {
    let source: IpAddr = source.parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    within("the connection", socket.connect(target))
        .await
        .unwrap_or_else(|e| panic!("connect {source} -> {target}: {e}"))
}

/// `GET /orders/7` with `headers` on `stream`, after writing `preface` (a
/// PROXY header) on it.
async fn get_on(
    mut stream: TcpStream,
    preface: &[u8],
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap) {
    stream.write_all(preface).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder().uri("/orders/7").header("host", "orders");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::<Bytes>::new()).unwrap();
    let response = within("the proxy to answer", sender.send_request(request))
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let _ = response.into_body().collect().await;
    (status, headers)
}

/// `GET /orders/7` from `source` with the office key and `headers`.
async fn office_get(
    source: &str,
    proxy: SocketAddr,
    world: &World,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap) {
    let mut all = vec![("x-api-key", world.office.secret.as_str())];
    all.extend_from_slice(headers);
    get_on(connect_from(source, proxy).await, b"", &all).await
}

fn client_ip_of(headers: &HeaderMap) -> &str {
    headers
        .get("x-ipgate-client-ip")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Waits until the usage log holds a `reason` event decided on `client_ip`.
async fn logged(fake: &FakeControlPlane, client_ip: &str, reason: &str) {
    eventually(&format!("a {reason} event for {client_ip}"), || async {
        fake.events()
            .iter()
            .any(|e| e.client_ip == client_ip && e.reason == reason)
    })
    .await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_request_is_decided_on_the_forwarded_client() {
    let captured = log_capture::capture();
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (upstream_addr, seen) = upstream().await;
    let trust = format!("{TRUSTED_PEER}/32");
    let (running, _session, proxy) = proxy_with(
        &mut fake,
        &world,
        upstream_addr,
        &["--trusted-proxies", &trust],
    )
    .await;

    // The client spoofed an office address on the left; the trusted proxy
    // appended the real one.
    let (status, headers) = office_get(
        TRUSTED_PEER,
        proxy,
        &world,
        &[("x-forwarded-for", "203.0.113.9, 198.51.100.1")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(client_ip_of(&headers), "198.51.100.1");
    logged(&fake, "198.51.100.1", "IP_NOT_ALLOWED_KEY").await;

    // A real office client behind the proxy gets through, and the upstream
    // learns the address decided on.
    let (status, _) = office_get(
        TRUSTED_PEER,
        proxy,
        &world,
        &[("x-forwarded-for", "198.51.100.1, 203.0.113.7")],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        seen.lock().unwrap().clone(),
        ["198.51.100.1, 203.0.113.7, 203.0.113.7"]
    );
    logged(&fake, "203.0.113.7", "ALLOWED").await;

    // The same header from a peer that is not trusted is ignored.
    let (status, headers) = office_get(
        UNTRUSTED_PEER,
        proxy,
        &world,
        &[("x-forwarded-for", "203.0.113.7")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(client_ip_of(&headers), UNTRUSTED_PEER);
    logged(&fake, UNTRUSTED_PEER, "IP_NOT_ALLOWED_KEY").await;

    // Forwarded is read the same way, quotes and ports included.
    let (status, _) = office_get(
        TRUSTED_PEER,
        proxy,
        &world,
        &[("forwarded", r#"for="203.0.113.7:4711";proto=https"#)],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    // A header that cannot be followed decides on the trusted peer, and
    // warns once however often it comes.
    for _ in 0..3 {
        let (status, headers) = office_get(
            TRUSTED_PEER,
            proxy,
            &world,
            &[("x-forwarded-for", "203.0.113.7, not-an-address")],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(client_ip_of(&headers), TRUSTED_PEER);
    }
    running.shutdown().await.unwrap();
    let warnings = captured.lines_with("could not be followed to a client");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("source=malformed"), "{}", warnings[0]);
}

#[tokio::test]
async fn a_client_ip_header_is_believed_only_from_a_trusted_peer() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (upstream_addr, _seen) = upstream().await;
    let trust = format!("{TRUSTED_PEER}/32");
    let (running, _session, proxy) = proxy_with(
        &mut fake,
        &world,
        upstream_addr,
        &[
            "--trusted-proxies",
            &trust,
            "--client-ip-header",
            "X-Real-IP",
        ],
    )
    .await;

    let spoof = [("x-real-ip", "203.0.113.7")];
    let (status, headers) = office_get(UNTRUSTED_PEER, proxy, &world, &spoof).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(client_ip_of(&headers), UNTRUSTED_PEER);

    let (status, _) = office_get(TRUSTED_PEER, proxy, &world, &spoof).await;
    assert_eq!(status, StatusCode::CREATED);
    logged(&fake, "203.0.113.7", "ALLOWED").await;
    running.shutdown().await.unwrap();
}

/// A PROXY v2 header for a TCP/IPv4 connection from `source`:4711 to
/// 127.0.0.1:80, written out byte by byte (HAProxy's proxy-protocol.txt §2.2).
fn proxy_v2(source: [u8; 4]) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&source);
    header.extend_from_slice(&[127, 0, 0, 1, 0x12, 0x67, 0, 80]);
    header
}

#[tokio::test]
async fn behind_an_l4_balancer_the_proxy_header_names_the_peer() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (upstream_addr, seen) = upstream().await;
    let (running, _session, proxy) = proxy_with(
        &mut fake,
        &world,
        upstream_addr,
        &["--proxy-protocol", "--trusted-proxies", "192.0.2.0/24"],
    )
    .await;
    let key = [("x-api-key", world.office.secret.as_str())];

    // v1, from an office client.
    let v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 4711 80\r\n";
    let (status, _) = get_on(connect_from(TRUSTED_PEER, proxy).await, v1, &key).await;
    assert_eq!(status, StatusCode::CREATED);
    logged(&fake, "203.0.113.7", "ALLOWED").await;

    // v2, from elsewhere.
    let v2 = proxy_v2([198, 51, 100, 1]);
    let (status, headers) = get_on(connect_from(TRUSTED_PEER, proxy).await, &v2, &key).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(client_ip_of(&headers), "198.51.100.1");

    // The header's source counts as the peer: a trusted proxy's, so its
    // forwarding header is read.
    let v1 = b"PROXY TCP4 192.0.2.10 127.0.0.1 4711 80\r\n";
    let mut with_xff = key.to_vec();
    with_xff.push(("x-forwarded-for", "203.0.113.8"));
    let (status, _) = get_on(connect_from(TRUSTED_PEER, proxy).await, v1, &with_xff).await;
    assert_eq!(status, StatusCode::CREATED);
    logged(&fake, "203.0.113.8", "ALLOWED").await;
    let upstream_saw = seen.lock().unwrap().len();

    // Without a header the connection is closed unanswered.
    let mut stream = connect_from(TRUSTED_PEER, proxy).await;
    let request = format!(
        "GET /orders/7 HTTP/1.1\r\nhost: orders\r\nx-api-key: {}\r\n\r\n",
        world.office.secret
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = within("the connection to close", stream.read_to_end(&mut answer)).await;
    assert!(
        answer.is_empty(),
        "answered without a PROXY header ({read:?}): {}",
        String::from_utf8_lossy(&answer)
    );
    // The door still serves the next connection, and the closed one never
    // reached the upstream or the usage log.
    let v1 = b"PROXY TCP6 2001:db8::7 ::1 4711 80\r\n";
    let (status, headers) = get_on(connect_from(TRUSTED_PEER, proxy).await, v1, &key).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(client_ip_of(&headers), "2001:db8::7");
    logged(&fake, "2001:db8::7", "IP_NOT_ALLOWED_KEY").await;
    assert_eq!(seen.lock().unwrap().len(), upstream_saw);
    assert!(
        fake.events().iter().all(|e| e.client_ip != TRUSTED_PEER),
        "a request was decided on the balancer's address"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn flags_that_cannot_work_together_stop_the_start() {
    let fake = FakeControlPlane::start().await;
    for (flags, expected) in [
        (
            &["--trusted-proxies", "127.0.0.1", "--trusted-hops", "1"][..],
            "give one",
        ),
        (
            &["--client-ip-header", "X-Real-IP"][..],
            "list them with --trusted-proxies",
        ),
    ] {
        let error = ipgate_enforcer::start(config(fake.addr, flags))
            .await
            .err()
            .unwrap_or_else(|| panic!("{flags:?} started"));
        assert!(error.to_string().contains(expected), "{flags:?}: {error}");
    }
}

/// Each usage event says where its address came from. From the trusted
/// peer, a header that names a client says `x-forwarded-for`; one whose
/// right-most element is not an address is decided on the trusted peer and
/// says `malformed`, so the log tells it from a real client. The same spoof
/// from a peer that is not trusted is decided on that peer and says `peer`;
/// a check-door call, whose caller names the address, says `named`.
#[tokio::test]
async fn usage_events_say_where_the_client_address_came_from() {
    use ipgate_shared::proto::sync::v1::ClientIpSource;

    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (upstream_addr, _seen) = upstream().await;
    let trust = format!("{TRUSTED_PEER}/32");
    let (running, _session, proxy) = proxy_with(
        &mut fake,
        &world,
        upstream_addr,
        &["--trusted-proxies", &trust],
    )
    .await;
    let request_id = |headers: &HeaderMap| {
        headers["x-request-id"]
            .to_str()
            .expect("a request id")
            .to_owned()
    };

    let (status, headers) = office_get(
        TRUSTED_PEER,
        proxy,
        &world,
        &[("x-forwarded-for", "198.51.100.1, 203.0.113.7")],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let forwarded = request_id(&headers);

    let (status, headers) = office_get(
        TRUSTED_PEER,
        proxy,
        &world,
        &[("x-forwarded-for", "203.0.113.7, 203.0.113.8:+80")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(client_ip_of(&headers), TRUSTED_PEER);
    let malformed = request_id(&headers);

    let (status, headers) = office_get(
        UNTRUSTED_PEER,
        proxy,
        &world,
        &[("x-forwarded-for", "203.0.113.7")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(client_ip_of(&headers), UNTRUSTED_PEER);
    let spoofed = request_id(&headers);

    check_with(&running, &world.office.secret, "203.0.113.7", "via-check").await;

    eventually("the four events at the control plane", || async {
        fake.events().len() >= 4
    })
    .await;
    let logged = |id: &str| {
        let event = fake
            .events()
            .into_iter()
            .find(|e| e.request_id == id)
            .unwrap_or_else(|| panic!("no event {id}"));
        (event.client_ip.clone(), event.client_ip_source())
    };
    assert_eq!(
        logged(&forwarded),
        ("203.0.113.7".into(), ClientIpSource::XForwardedFor)
    );
    assert_eq!(
        logged(&malformed),
        (TRUSTED_PEER.into(), ClientIpSource::Malformed)
    );
    assert_eq!(
        logged(&spoofed),
        (UNTRUSTED_PEER.into(), ClientIpSource::Peer)
    );
    assert_eq!(
        logged("via-check"),
        ("203.0.113.7".into(), ClientIpSource::Named)
    );
    running.shutdown().await.unwrap();
}
