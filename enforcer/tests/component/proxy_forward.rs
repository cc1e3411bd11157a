//! What the proxy door does to an allowed request on its way through:
//! bodies stream both ways, the upstream's timeouts become 504s,
//! hop-by-hop fields stay behind in both directions, the ipgate key stays
//! behind unless told otherwise, and every path — pages and assets of a
//! web app too — is decided before anything is forwarded.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::{net::TcpListener, sync::mpsc};

use crate::{support::*, upstreams::*};

const TIMEOUT_BODY: &str = r#"{"error":{"code":"UPSTREAM_TIMEOUT","message":"The service behind ipgate did not answer in time; retry shortly"}}"#;

/// Reads `body` until what arrived contains `text`; what arrived.
async fn read_until(body: &mut Incoming, text: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(text) {
        let frame = within(&format!("{text:?} to arrive"), body.frame())
            .await
            .unwrap_or_else(|| panic!("the body ended before {text:?}; got {seen:?}"))
            .expect("a healthy body");
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    seen
}

#[tokio::test]
async fn a_request_body_reaches_the_upstream_while_the_client_is_still_sending() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    // The upstream reports every chunk as it reads it.
    let (chunks_tx, mut chunks) = mpsc::unbounded_channel::<Bytes>();
    let upstream = start(move |request: Request<Incoming>| {
        let chunks = chunks_tx.clone();
        async move {
            let mut body = request.into_body();
            let mut total = 0;
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    total += data.len();
                    let _ = chunks.send(data);
                }
            }
            Response::new(full(format!("read {total} bytes")))
        }
    })
    .await;
    let (running, _session) = door(&mut fake, &world, &format!("http://{upstream}"), &[]).await;

    let (feed, body) = fed();
    let request = get(&world, "/orders/upload")
        .method("POST")
        .body(body)
        .unwrap();
    let client = client(false);
    let answer = tokio::spawn({
        let proxy = running.proxy_addr.unwrap();
        async move {
            let (mut parts, body) = request.into_parts();
            parts.uri = format!("http://{proxy}{}", parts.uri).parse().unwrap();
            client.request(Request::from_parts(parts, body)).await
        }
    });

    feed.send(Bytes::from_static(b"first chunk;"))
        .await
        .unwrap();
    // Had the door buffered the body, nothing would arrive before its end,
    // and the body has no end until the upstream saw this.
    let mut seen = String::new();
    while !seen.contains("first chunk;") {
        let chunk = within("the first chunk at the upstream", chunks.recv())
            .await
            .expect("the upstream is reading");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    feed.send(Bytes::from_static(b"second chunk"))
        .await
        .unwrap();
    drop(feed);

    let response = within("the answer", answer).await.unwrap().unwrap();
    let (status, _, body) = read(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "read 24 bytes");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_answer_body_reaches_the_client_while_the_upstream_is_still_sending() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    // The upstream hands the test the feed of each answer's body.
    let (feeds_tx, mut feeds) = mpsc::unbounded_channel::<mpsc::Sender<Bytes>>();
    let upstream = start(move |_request: Request<Incoming>| {
        let feeds = feeds_tx.clone();
        async move {
            let (feed, body) = fed();
            let _ = feeds.send(feed);
            Response::new(body)
        }
    })
    .await;
    let (running, _session) = door(&mut fake, &world, &format!("http://{upstream}"), &[]).await;

    let client = client(false);
    let request = get(&world, "/orders/export").body(full("")).unwrap();
    let response = send_to(&running, &client, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let feed = within("the upstream's feed", feeds.recv()).await.unwrap();
    let mut body = response.into_body();

    feed.send(Bytes::from_static(b"part one;")).await.unwrap();
    // The upstream's body is still open: only streaming gets this through.
    read_until(&mut body, "part one;").await;
    feed.send(Bytes::from_static(b"part two")).await.unwrap();
    drop(feed);
    let rest = within("the rest", body.collect()).await.unwrap().to_bytes();
    assert_eq!(rest, "part two");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_upstream_that_does_not_answer_in_time_is_a_logged_504() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let upstream = start(|_request: Request<Incoming>| async {
        std::future::pending::<()>().await;
        Response::new(full(""))
    })
    .await;
    let (running, _session) = door(
        &mut fake,
        &world,
        &format!("http://{upstream}"),
        &["--upstream-timeout", "300ms"],
    )
    .await;

    let request = get(&world, "/orders/slow").body(full("")).unwrap();
    let started = Instant::now();
    let (status, headers, body) = read(send_to(&running, &client(false), request).await).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(body, TIMEOUT_BODY);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-ipgate-client-ip"], "127.0.0.1");
    let request_id = headers["x-request-id"].to_str().unwrap().to_owned();
    eventually("the 504 in the usage log", || async {
        status_of(&fake, &request_id) == Some(504)
    })
    .await;
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_upstream_that_never_finishes_connecting_is_a_504_after_the_connect_timeout() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    // Accepts TCP and never says a word: the TLS handshake never ends.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let holding = held.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = silent.accept().await {
            holding.lock().unwrap().push(stream);
        }
    });
    let (running, _session) = door(
        &mut fake,
        &world,
        &format!("https://{addr}"),
        &[
            "--upstream-connect-timeout",
            "300ms",
            "--upstream-timeout",
            "60s",
        ],
    )
    .await;

    let request = get(&world, "/orders").body(full("")).unwrap();
    let started = Instant::now();
    let (status, headers, body) = read(send_to(&running, &client(false), request).await).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body:?}");
    assert_eq!(body, TIMEOUT_BODY);
    // The connect timeout fired, not the minute-long answer timeout.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(!held.lock().unwrap().is_empty(), "the door did connect");
    let request_id = headers["x-request-id"].to_str().unwrap().to_owned();
    eventually("the 504 in the usage log", || async {
        status_of(&fake, &request_id) == Some(504)
    })
    .await;
    running.shutdown().await.unwrap();
}

/// What the upstream saw of each request's headers.
type Seen = Arc<Mutex<Vec<HeaderMap>>>;

/// An upstream that keeps each request's headers and answers with
/// hop-by-hop fields of its own, which must not reach the client.
async fn recording_upstream() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let addr = start(move |request: Request<Incoming>| {
        log.lock().unwrap().push(request.headers().clone());
        async {
            Response::builder()
                .header("connection", "x-upstream-hop")
                .header("x-upstream-hop", "for the door only")
                .header("keep-alive", "timeout=5")
                .header("proxy-authenticate", "Basic realm=upstream")
                .header("x-end-to-end", "kept")
                .body(full("ok"))
                .unwrap()
        }
    })
    .await;
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn hop_by_hop_fields_stay_behind_both_ways() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (upstream, seen) = recording_upstream().await;
    let (running, _session) = door(&mut fake, &world, &upstream, &[]).await;

    let request = get(&world, "/orders/7")
        .header("connection", "keep-alive, x-client-hop")
        .header("x-client-hop", "for the door only")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic cHJveHk6cHc=")
        .header("te", "trailers, deflate")
        .header("x-end-to-end", "kept")
        .body(full(""))
        .unwrap();
    let (status, headers, _) = read(send_to(&running, &client(false), request).await).await;
    assert_eq!(status, StatusCode::OK);
    for gone in ["x-upstream-hop", "keep-alive", "proxy-authenticate"] {
        assert!(headers.get(gone).is_none(), "{gone} reached the client");
    }
    assert_eq!(headers["x-end-to-end"], "kept");

    let upstream_saw = seen.lock().unwrap()[0].clone();
    for gone in ["x-client-hop", "keep-alive", "proxy-authorization"] {
        assert!(
            upstream_saw.get(gone).is_none(),
            "{gone} reached the upstream"
        );
    }
    assert_eq!(upstream_saw["x-end-to-end"], "kept");
    assert_eq!(upstream_saw["te"], "trailers", "TE keeps trailers only");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_ipgate_key_stays_behind_unless_told_otherwise() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (upstream, seen) = recording_upstream().await;
    let bearer = format!("Bearer {}", world.local.secret);
    let requests = |client_auth: &'static str| {
        [
            get(&world, "/orders/1").body(full("")).unwrap(),
            Request::get("/orders/2")
                .header("authorization", &bearer)
                .header("authorization", client_auth)
                .body(full(""))
                .unwrap(),
        ]
    };

    // By default (--hide-credentials): the key's headers go, the
    // upstream's own Basic credentials stay.
    let (running, _session) = door(&mut fake, &world, &upstream, &[]).await;
    for request in requests("Basic dXNlcjpwdw==") {
        let (status, _, _) = read(send_to(&running, &client(false), request).await).await;
        assert_eq!(status, StatusCode::OK);
    }
    running.shutdown().await.unwrap();
    {
        let seen = seen.lock().unwrap();
        assert!(seen[0].get("x-api-key").is_none());
        let auth: Vec<_> = seen[1].get_all("authorization").iter().collect();
        assert_eq!(auth, ["Basic dXNlcjpwdw=="]);
    }

    // --hide-credentials=false passes the key on as sent.
    let mut fake = FakeControlPlane::start().await;
    let (running, _session) =
        door(&mut fake, &world, &upstream, &["--hide-credentials=false"]).await;
    for request in requests("Basic dXNlcjpwdw==") {
        let (status, _, _) = read(send_to(&running, &client(false), request).await).await;
        assert_eq!(status, StatusCode::OK);
    }
    running.shutdown().await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[2]["x-api-key"], world.local.secret.as_str());
    assert_eq!(seen[3].get_all("authorization").iter().count(), 2);
}

/// A web app hosted behind the door: its pages and assets are paths of the
/// API like any other, decided before anything is forwarded.
#[tokio::test]
async fn pages_and_assets_of_a_hosted_web_app_are_decided_like_api_paths() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (upstream, seen) = recording_upstream().await;
    let (running, _session) = door(&mut fake, &world, &upstream, &[]).await;
    let client = client(false);

    let paths = [
        "/",
        "/index.html",
        "/app/settings",
        "/assets/app.3f9a1c.js",
        "/favicon.ico",
    ];
    for path in paths {
        // No key: refused, whatever the path.
        let request = Request::get(path).body(full("")).unwrap();
        let (status, headers, _) = read(send_to(&running, &client, request).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} without a key");
        assert!(headers.contains_key("x-request-id"));

        // A key allowed only from 203.0.113.0/24: refused from here.
        let request = Request::get(path)
            .header("x-api-key", &world.office.secret)
            .body(full(""))
            .unwrap();
        let (status, _, _) = read(send_to(&running, &client, request).await).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{path} from a blocked address"
        );
    }
    assert!(seen.lock().unwrap().is_empty(), "nothing was forwarded");

    for path in paths {
        let request = get(&world, path).body(full("")).unwrap();
        let (status, _, _) = read(send_to(&running, &client, request).await).await;
        assert_eq!(status, StatusCode::OK, "{path} with an allowed key");
    }
    assert_eq!(seen.lock().unwrap().len(), paths.len());
    eventually("every decision in the usage log", || async {
        fake.events().len() >= 3 * paths.len()
    })
    .await;
    let events = fake.events();
    for path in paths {
        // Allowed and refused events travel in queues of their own.
        let mut reasons: Vec<_> = events
            .iter()
            .filter(|e| e.path == path)
            .map(|e| e.reason.as_str())
            .collect();
        reasons.sort_unstable();
        assert_eq!(
            reasons,
            ["ALLOWED", "INVALID_API_KEY", "IP_NOT_ALLOWED_KEY"],
            "{path}"
        );
    }
    running.shutdown().await.unwrap();
}

/// `GET /orders/7` from loopback address `source` with `headers`.
async fn get_from(
    source: &str,
    proxy: std::net::SocketAddr,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    let stream = within("the connection", socket.connect(proxy))
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request = Request::get("/orders/7").header("host", "orders");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = within(
        "the answer",
        sender.send_request(request.body(full("")).unwrap()),
    )
    .await
    .unwrap();
    let (status, headers, _) = read(response).await;
    (status, headers)
}

fn request_id(headers: &HeaderMap) -> String {
    headers["x-request-id"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_trusted_proxys_request_id_is_kept_and_anyone_elses_replaced() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (upstream, seen) = recording_upstream().await;
    let (running, _session) = door(
        &mut fake,
        &world,
        &upstream,
        &["--trusted-proxies", "127.0.0.1/32"],
    )
    .await;
    let proxy = running.proxy_addr.unwrap();
    let key = world.local.secret.as_str();
    // The id the upstream saw on its last request.
    let upstream_id = || request_id(seen.lock().unwrap().last().unwrap());

    // From the trusted proxy: its id, upstream, in the answer and the log.
    let (status, headers) = get_from(
        "127.0.0.1",
        proxy,
        &[("x-api-key", key), ("x-request-id", "lb-7f3c:0001")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(request_id(&headers), "lb-7f3c:0001");
    assert_eq!(upstream_id(), "lb-7f3c:0001");

    // From the trusted proxy, but not well-formed, or twice: replaced.
    for ids in [&["bad id!"][..], &["lb-1", "lb-2"], &[&"x".repeat(129)]] {
        let mut fields = vec![("x-api-key", key)];
        fields.extend(ids.iter().map(|id| ("x-request-id", *id)));
        let (status, headers) = get_from("127.0.0.1", proxy, &fields).await;
        assert_eq!(status, StatusCode::OK);
        let made = request_id(&headers);
        assert!(uuid::Uuid::parse_str(&made).is_ok(), "{ids:?}: {made}");
        assert_eq!(upstream_id(), made);
    }

    // From anyone else (127.0.0.2, where the key is refused): replaced.
    let (status, headers) = get_from(
        "127.0.0.2",
        proxy,
        &[("x-api-key", key), ("x-request-id", "spoofed-0001")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let replaced = request_id(&headers);
    assert!(uuid::Uuid::parse_str(&replaced).is_ok(), "{replaced}");

    eventually("the events in the usage log", || async {
        fake.events().len() >= 5
    })
    .await;
    let ids: Vec<String> = fake.events().into_iter().map(|e| e.request_id).collect();
    assert!(ids.contains(&"lb-7f3c:0001".to_owned()), "{ids:?}");
    assert!(ids.contains(&replaced), "{ids:?}");
    assert!(!ids.iter().any(|id| id == "spoofed-0001"), "{ids:?}");
    running.shutdown().await.unwrap();

    // Without --trusted-proxies no peer is trusted, 127.0.0.1 neither.
    let mut fake = FakeControlPlane::start().await;
    let (running, _session) = door(&mut fake, &world, &upstream, &[]).await;
    let (status, headers) = get_from(
        "127.0.0.1",
        running.proxy_addr.unwrap(),
        &[("x-api-key", key), ("x-request-id", "lb-7f3c:0002")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let made = request_id(&headers);
    assert_ne!(made, "lb-7f3c:0002");
    assert_eq!(upstream_id(), made);
    running.shutdown().await.unwrap();
}
