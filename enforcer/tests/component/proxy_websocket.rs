//! WebSocket upgrades through the proxy door: decided like any request,
//! then joined to an upstream that switched protocols and echoes what it
//! reads in capitals; refused before the upstream hears of them; never an
//! `h2c` upgrade; closed when the door shuts down.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{raw, support::*, upstreams::*};

/// The accept value of RFC 6455's example key, passed through untouched.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// An upstream that switches to any protocol it is asked to and then
/// answers every read with the same bytes in capitals; it keeps each
/// request's headers, and never answers `/orders/hang`. Over TLS with
/// `certs`.
async fn echo_upstream(certs: Option<&Certs>) -> (String, Arc<Mutex<Vec<HeaderMap>>>) {
    let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let log = seen.clone();
    let handler = move |mut request: Request<Incoming>| {
        log.lock().unwrap().push(request.headers().clone());
        let asked = request.headers().get("upgrade").cloned();
        let hang = request.uri().path() == "/orders/hang";
        let upgraded = hyper::upgrade::on(&mut request);
        async move {
            let Some(protocol) = asked else {
                if hang {
                    std::future::pending::<()>().await;
                }
                return Response::new(full("no upgrade asked"));
            };
            tokio::spawn(async move {
                let Ok(upgraded) = upgraded.await else { return };
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n].to_ascii_uppercase()).await.is_err() {
                        return;
                    }
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", protocol)
                .header("sec-websocket-accept", ACCEPT)
                .body(full(""))
                .unwrap()
        }
    };
    let url = match certs {
        None => format!("http://{}", start(handler).await),
        Some(certs) => format!("https://{}", start_tls(handler, certs).await),
    };
    (url, seen)
}

/// Writes `head` on a new connection to `proxy` and reads the answer's
/// head; the connection stays open for what follows.
async fn open(proxy: SocketAddr, head: &str) -> (TcpStream, u16, String) {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream
        .write_all(format!("{head}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte, so nothing past the head is taken from the tunnel.
    while !got.ends_with(b"\r\n\r\n") {
        let n = within("the answer's head", stream.read(&mut byte))
            .await
            .unwrap();
        assert_ne!(n, 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (stream, status, head)
}

fn websocket_request(key: &str) -> String {
    format!(
        "GET /orders/live HTTP/1.1\r\nHost: proxy.test\r\nX-API-Key: {key}\r\n\
         Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}"
    )
}

/// Sends `text` through the tunnel and reads the upstream's echo.
async fn echo(stream: &mut TcpStream, text: &str) -> String {
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut got = vec![0u8; text.len()];
    within("the echo", stream.read_exact(&mut got))
        .await
        .unwrap();
    String::from_utf8(got).unwrap()
}

#[tokio::test]
async fn an_allowed_websocket_is_joined_to_the_upstream() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (upstream, seen) = echo_upstream(None).await;
    let (running, _session) =
        door(&mut fake, &world, &upstream, &["--drain-timeout", "300ms"]).await;
    let proxy = running.proxy_addr.unwrap();

    let (mut stream, status, head) = open(proxy, &websocket_request(&world.local.secret)).await;
    assert_eq!(status, 101, "{head}");
    assert!(head.contains("\r\nupgrade: websocket"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade"), "{head}");
    assert!(head.contains(&format!(
        "sec-websocket-accept: {}",
        ACCEPT.to_ascii_lowercase()
    )));
    assert_eq!(echo(&mut stream, "hello").await, "HELLO");
    assert_eq!(echo(&mut stream, "and again").await, "AND AGAIN");

    let upstream_saw = seen.lock().unwrap()[0].clone();
    assert_eq!(upstream_saw["upgrade"], "websocket");
    assert_eq!(upstream_saw["connection"], "upgrade");
    assert_eq!(upstream_saw["sec-websocket-key"], KEY);
    assert!(upstream_saw.get("x-api-key").is_none());
    let request_id = upstream_saw["x-request-id"].to_str().unwrap().to_owned();
    assert!(
        head.contains(&format!("x-request-id: {request_id}")),
        "{head}"
    );
    eventually("the upgrade in the usage log", || async {
        status_of(&fake, &request_id) == Some(101)
    })
    .await;

    // At shutdown the WebSocket is closed, even while a request the drain
    // gave up on still holds the door: the client reads its end.
    let mut hanging = TcpStream::connect(proxy).await.unwrap();
    let head = raw::get("/orders/hang", &world.local.secret, &[]);
    hanging
        .write_all(format!("{head}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    eventually("the hanging request at the upstream", || async {
        seen.lock().unwrap().len() == 2
    })
    .await;
    running.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let read = within("the tunnel to close", stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok_and(|n| n == 0) || rest.is_empty(), "{rest:?}");
    drop(hanging);
}

#[tokio::test]
async fn a_refused_websocket_never_reaches_the_upstream() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (upstream, seen) = echo_upstream(None).await;
    let (running, _session) = door(&mut fake, &world, &upstream, &[]).await;

    // The office key may call from 203.0.113.0/24 only.
    let answer = raw::send(
        running.proxy_addr.unwrap(),
        &raw::get(
            "/orders/live",
            &world.office.secret,
            &[
                "Connection: Upgrade".to_owned(),
                "Upgrade: websocket".to_owned(),
                format!("Sec-WebSocket-Key: {KEY}"),
            ],
        ),
    )
    .await;
    assert_eq!(answer.status, 403);
    assert!(answer.body.contains("IP_NOT_ALLOWED"), "{}", answer.body);
    assert!(seen.lock().unwrap().is_empty());
    running.shutdown().await.unwrap();
}

/// An `h2c` upgrade would tunnel an HTTP/2 connection whose further
/// requests the door never decides: it goes upstream as a plain request.
#[tokio::test]
async fn an_h2c_upgrade_is_never_passed_on() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (upstream, seen) = echo_upstream(None).await;
    let (running, _session) = door(&mut fake, &world, &upstream, &[]).await;

    let answer = raw::send(
        running.proxy_addr.unwrap(),
        &raw::get(
            "/orders/1",
            &world.local.secret,
            &[
                "Connection: Upgrade, HTTP2-Settings".to_owned(),
                "Upgrade: h2c".to_owned(),
                "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA".to_owned(),
            ],
        ),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, "no upgrade asked");
    let upstream_saw = seen.lock().unwrap()[0].clone();
    for gone in ["upgrade", "http2-settings"] {
        assert!(
            upstream_saw.get(gone).is_none(),
            "{gone} reached the upstream"
        );
    }
    running.shutdown().await.unwrap();
}

/// An https:// upstream that offers HTTP/2 still gets the upgrade over
/// HTTP/1.1, on a connection of its own.
#[tokio::test]
async fn a_websocket_reaches_an_https_upstream_over_http_1_1() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let certs = Certs::new();
    let (upstream, seen) = echo_upstream(Some(&certs)).await;
    let ca = certs.ca_path().to_str().unwrap().to_owned();
    let (running, _session) = door(&mut fake, &world, &upstream, &["--upstream-ca", &ca]).await;

    let (mut stream, status, head) = open(
        running.proxy_addr.unwrap(),
        &websocket_request(&world.local.secret),
    )
    .await;
    assert_eq!(status, 101, "{head}");
    assert_eq!(echo(&mut stream, "over tls").await, "OVER TLS");
    assert_eq!(seen.lock().unwrap().len(), 1);
    running.shutdown().await.unwrap();
}
