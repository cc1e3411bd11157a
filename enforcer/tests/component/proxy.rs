//! The reverse-proxy door in front of a tiny upstream on loopback.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use ipgate_enforcer::Running;
use tokio::net::TcpListener;

use crate::support::*;

const KEY_BODY: &str = r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Request IP address is not in the API key's allowlist"}}"#;

/// What the upstream saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// An upstream that answers 201 and remembers every request.
pub async fn upstream() -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            let service = service_fn(move |request: Request<Incoming>| {
                let log = log.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    log.lock().unwrap().push(Seen {
                        uri: parts.uri.to_string(),
                        headers: parts.headers,
                        body,
                    });
                    let mut response =
                        Response::new(Full::new(Bytes::from_static(b"hello from upstream")));
                    *response.status_mut() = StatusCode::CREATED;
                    response
                        .headers_mut()
                        .insert("x-upstream", "yes".parse().unwrap());
                    Ok::<_, Infallible>(response)
                }
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

/// A synced enforcer proxying API `orders` to `upstream`, and its sync
/// session (kept open for the test's length).
async fn proxy_for(
    fake: &mut FakeControlPlane,
    world: &World,
    upstream: SocketAddr,
) -> (Running, Session) {
    let upstream = format!("http://{upstream}");
    synced(fake, world, &["--upstream", &upstream, "--api", "orders"]).await
}

/// Sends one request through the proxy; returns status, headers and body.
async fn send(running: &Running, request: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let (mut parts, body) = request.into_parts();
    let proxy = running.proxy_addr.expect("proxy door running");
    parts.uri = format!("http://{proxy}{}", parts.uri).parse().unwrap();
    let response = within(
        "the proxy to answer",
        client.request(Request::from_parts(parts, body)),
    )
    .await
    .expect("proxy answers");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

fn get(path: &str) -> http::request::Builder {
    Request::builder().method("GET").uri(path)
}

#[tokio::test]
async fn an_allowed_request_reaches_the_upstream_with_a_request_id() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (upstream_addr, seen) = upstream().await;
    let (running, _session) = proxy_for(&mut fake, &world, upstream_addr).await;

    let request = Request::builder()
        .method("POST")
        .uri("/orders/7?expand=items")
        .header("x-api-key", &world.local.secret)
        .header("x-forwarded-for", "198.51.100.1")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .body(Full::new(Bytes::from_static(b"{\"qty\":2}")))
        .unwrap();
    let (status, headers, body) = send(&running, request).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body, "hello from upstream");
    assert_eq!(headers["x-upstream"], "yes");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let upstream_saw = &seen[0];
    assert_eq!(upstream_saw.uri, "/orders/7?expand=items");
    assert_eq!(upstream_saw.body, "{\"qty\":2}");
    let request_id = upstream_saw.headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(request_id).is_ok(), "{request_id}");
    assert_eq!(
        headers["x-request-id"], request_id,
        "the client sees the same id"
    );
    assert_eq!(
        upstream_saw.headers["x-forwarded-for"],
        "198.51.100.1, 127.0.0.1"
    );
    assert!(
        upstream_saw.headers.get("x-hop").is_none(),
        "hop-by-hop headers are dropped"
    );
    assert!(
        upstream_saw.headers.get("x-api-key").is_none(),
        "the ipgate key stays behind by default (--hide-credentials)"
    );
    // The usage log keeps the status the client got from the upstream.
    eventually("the allowed request in the usage log", || async {
        fake.events()
            .iter()
            .any(|e| e.request_id == request_id && e.reason == "ALLOWED" && e.status_code == 201)
    })
    .await;
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_logged_502() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    // A port nothing listens on: bind one, then let it go.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (running, _session) = proxy_for(&mut fake, &world, closed).await;

    let request = get("/orders")
        .header("x-api-key", &world.local.secret)
        .body(Full::default())
        .unwrap();
    let (status, headers, body) = send(&running, request).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(String::from_utf8_lossy(&body).contains("UPSTREAM_UNAVAILABLE"));
    let request_id = headers["x-request-id"].to_str().unwrap().to_owned();
    eventually("the 502 in the usage log", || async {
        fake.events()
            .iter()
            .any(|e| e.request_id == request_id && e.status_code == 502)
    })
    .await;
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_denied_request_gets_the_exact_body_and_both_headers() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (upstream_addr, seen) = upstream().await;
    let (running, _session) = proxy_for(&mut fake, &world, upstream_addr).await;

    // The office key may only call from 203.0.113.0/24; the peer is 127.0.0.1.
    let bearer = format!("Bearer {}", world.office.secret);
    let request = get("/orders/7")
        .header("authorization", bearer)
        .body(Full::default())
        .unwrap();
    let (status, headers, body) = send(&running, request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, KEY_BODY.as_bytes());
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-ipgate-client-ip"], "127.0.0.1");
    let request_id = headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(request_id).is_ok());
    assert!(seen.lock().unwrap().is_empty(), "the upstream never saw it");

    eventually("the denial in the usage log", || async {
        fake.events()
            .iter()
            .any(|e| e.request_id == request_id && e.reason == "IP_NOT_ALLOWED_KEY")
    })
    .await;
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn two_different_keys_are_refused_with_401() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (upstream_addr, seen) = upstream().await;
    let (running, _session) = proxy_for(&mut fake, &world, upstream_addr).await;

    let request = get("/orders")
        .header("authorization", format!("Bearer {}", world.local.secret))
        .header("x-api-key", &world.office.secret)
        .body(Full::default())
        .unwrap();
    let (status, headers, body) = send(&running, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&body).contains("INVALID_API_KEY"));
    assert!(headers.contains_key("x-request-id"));

    // The same key twice is one key.
    let request = get("/orders")
        .header("authorization", format!("Bearer {}", world.local.secret))
        .header("x-api-key", &world.local.secret)
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&running, request).await.0, StatusCode::CREATED);

    // Never from the query string.
    let request = get(&format!("/orders?api_key={}", world.local.secret))
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&running, request).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(seen.lock().unwrap().len(), 1);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_with_a_json_body() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (running, _session) = proxy_for(&mut fake, &world, closed).await;

    let request = get("/orders")
        .header("x-api-key", &world.local.secret)
        .body(Full::default())
        .unwrap();
    let (status, headers, body) = send(&running, request).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(body["error"]["code"], "UPSTREAM_UNAVAILABLE");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn before_any_snapshot_the_proxy_answers_503_not_ready() {
    let fake = FakeControlPlane::start().await;
    let (upstream_addr, seen) = upstream().await;
    let upstream = format!("http://{upstream_addr}");
    let config = config(fake.addr, &["--upstream", &upstream, "--api", "orders"]);
    let running = ipgate_enforcer::start(config).await.unwrap();

    let (status, headers, body) =
        send(&running, get("/orders").body(Full::default()).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&body).contains("ENFORCER_NOT_READY"));
    assert_eq!(headers["x-ipgate-client-ip"], "127.0.0.1");
    assert!(seen.lock().unwrap().is_empty());
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn h2c_clients_are_served_too() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (upstream_addr, seen) = upstream().await;
    let (running, _session) = proxy_for(&mut fake, &world, upstream_addr).await;

    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let proxy = running.proxy_addr.unwrap();
    let request = Request::builder()
        .uri(format!("http://{proxy}/orders/h2"))
        .header("x-api-key", &world.local.secret)
        .body(Full::default())
        .unwrap();
    let response = within("the proxy to answer over h2c", client.request(request))
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::CREATED);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].uri, "/orders/h2");
    assert_eq!(seen[0].headers["host"], proxy.to_string().as_str());
    running.shutdown().await.unwrap();
}

/// Every door names itself in the events it records: the proxy's, allowed
/// or refused, say `proxy`; the gRPC door's on the same enforcer say
/// `check`.
#[tokio::test]
async fn each_door_names_itself_in_its_usage_events() {
    use ipgate_shared::proto::sync::v1::Door;

    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (upstream_addr, _seen) = upstream().await;
    let (running, _session) = proxy_for(&mut fake, &world, upstream_addr).await;

    let allowed = get("/orders/1")
        .header("x-api-key", &world.local.secret)
        .body(Full::default())
        .unwrap();
    let (status, headers, _) = send(&running, allowed).await;
    assert_eq!(status, StatusCode::CREATED);
    let allowed_id = headers["x-request-id"].to_str().unwrap().to_owned();
    let refused = get("/orders/2").body(Full::default()).unwrap();
    let (status, headers, _) = send(&running, refused).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let refused_id = headers["x-request-id"].to_str().unwrap().to_owned();
    check_with(&running, &world.office.secret, "203.0.113.7", "via-check").await;

    eventually("the three events at the control plane", || async {
        fake.events().len() >= 3
    })
    .await;
    let door_of = |id: &str| {
        let event = fake
            .events()
            .into_iter()
            .find(|e| e.request_id == id)
            .unwrap_or_else(|| panic!("no event {id}"));
        event.door()
    };
    assert_eq!(door_of(&allowed_id), Door::Proxy);
    assert_eq!(door_of(&refused_id), Door::Proxy);
    assert_eq!(door_of("via-check"), Door::Check);
    running.shutdown().await.unwrap();
}
