//! The protocols the proxy door speaks to its upstream: HTTP/1.1, h2c
//! with prior knowledge, and TLS with ALPN — trusting a CA named with
//! `--upstream-ca`, or only Mozilla's roots without one.

use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};

use crate::{support::*, upstreams::*};

/// An upstream that answers with the HTTP version it was asked in, plus
/// a trailer when the request allowed trailers (`TE: trailers`).
async fn version_upstream(certs: Option<&Certs>) -> (String, Arc<Mutex<Vec<Version>>>) {
    let seen: Arc<Mutex<Vec<Version>>> = Arc::default();
    let log = seen.clone();
    let handler = move |request: Request<Incoming>| {
        log.lock().unwrap().push(request.version());
        let trailers = request
            .headers()
            .get("te")
            .is_some_and(|te| te == "trailers");
        async move {
            let version = format!("{:?}", request.version());
            if !trailers {
                return Response::new(full(version));
            }
            let mut trailer = HeaderMap::new();
            trailer.insert("grpc-status", HeaderValue::from_static("0"));
            let frames = [
                Ok(Frame::data(bytes::Bytes::from(version))),
                Ok(Frame::trailers(trailer)),
            ];
            let body = StreamBody::new(tokio_stream::iter(frames)).boxed();
            Response::builder()
                .header("trailer", "grpc-status")
                .body(body)
                .unwrap()
        }
    };
    let url = match certs {
        None => format!("http://{}", start(handler).await),
        Some(certs) => format!("https://{}", start_tls(handler, certs).await),
    };
    (url, seen)
}

/// One `GET /orders/v` through a door started with `flags`; the body.
async fn version_through(upstream: &str, flags: &[&str]) -> (StatusCode, String) {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (running, _session) = door(&mut fake, &world, upstream, flags).await;
    let request = get(&world, "/orders/v").body(full("")).unwrap();
    let (status, _, body) = read(send_to(&running, &client(false), request).await).await;
    running.shutdown().await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn plain_upstreams_get_http_1_1_or_h2c_as_told() {
    let (upstream, seen) = version_upstream(None).await;
    assert_eq!(
        version_through(&upstream, &[]).await,
        (StatusCode::OK, "HTTP/1.1".into())
    );
    for h2c in ["h2c", "http2"] {
        assert_eq!(
            version_through(&upstream, &["--upstream-protocol", h2c]).await,
            (StatusCode::OK, "HTTP/2.0".into()),
            "{h2c}"
        );
    }
    assert_eq!(
        *seen.lock().unwrap(),
        [Version::HTTP_11, Version::HTTP_2, Version::HTTP_2]
    );
}

#[tokio::test]
async fn trailers_pass_between_h2c_clients_and_an_h2c_upstream() {
    let mut fake = FakeControlPlane::start().await;
    let world = World::new();
    let (upstream, _seen) = version_upstream(None).await;
    let (running, _session) = door(
        &mut fake,
        &world,
        &upstream,
        &["--upstream-protocol", "h2c"],
    )
    .await;

    // As a gRPC client asks: over HTTP/2, with TE: trailers.
    let request = get(&world, "/orders/v")
        .header("te", "trailers")
        .body(full(""))
        .unwrap();
    let response = send_to(&running, &client(true), request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let collected = within("the body", response.into_body().collect())
        .await
        .unwrap();
    let trailers = collected.trailers().cloned().expect("trailers arrive");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(collected.to_bytes(), "HTTP/2.0");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn https_upstreams_are_verified_against_the_ca_and_alpn_picks_the_protocol() {
    let certs = Certs::new();
    let (upstream, seen) = version_upstream(Some(&certs)).await;
    let ca = certs.ca_path().to_str().unwrap().to_owned();

    // ALPN offers h2 and http/1.1; this upstream prefers h2.
    assert_eq!(
        version_through(&upstream, &["--upstream-ca", &ca]).await,
        (StatusCode::OK, "HTTP/2.0".into())
    );
    assert_eq!(
        version_through(
            &upstream,
            &["--upstream-ca", &ca, "--upstream-protocol", "http1"]
        )
        .await,
        (StatusCode::OK, "HTTP/1.1".into())
    );
    assert_eq!(
        version_through(
            &upstream,
            &["--upstream-ca", &ca, "--upstream-protocol", "http2"]
        )
        .await,
        (StatusCode::OK, "HTTP/2.0".into())
    );
    let served = seen.lock().unwrap().len();
    assert_eq!(served, 3);

    // Without the CA only Mozilla's roots are trusted: the test CA is not
    // among them, the handshake fails and nothing is served.
    let (status, body) = version_through(&upstream, &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("UPSTREAM_UNAVAILABLE"), "{body}");
    assert_eq!(seen.lock().unwrap().len(), served);

    // Nor does another CA's certificate pass for this one.
    let other = Certs::new();
    let other_ca = other.ca_path().to_str().unwrap().to_owned();
    let (status, _) = version_through(&upstream, &["--upstream-ca", &other_ca]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(seen.lock().unwrap().len(), served);
}

#[tokio::test]
async fn a_bad_upstream_or_ca_stops_the_start() {
    let fake = FakeControlPlane::start().await;
    let cases: [(&[&str], &str); 3] = [
        (
            &["--upstream", "ftp://127.0.0.1:9"],
            "expected http://host:port",
        ),
        (
            &[
                "--upstream",
                "http://127.0.0.1:9",
                "--upstream-ca",
                "/nonexistent/ca.pem",
            ],
            "--upstream-ca is for https:// upstreams",
        ),
        (
            &[
                "--upstream",
                "https://127.0.0.1:9",
                "--upstream-ca",
                "/nonexistent/ca.pem",
            ],
            "/nonexistent/ca.pem",
        ),
    ];
    for (flags, expected) in cases {
        let mut args = flags.to_vec();
        args.extend(["--api", "orders"]);
        let error = ipgate_enforcer::start(config(fake.addr, &args))
            .await
            .err()
            .unwrap_or_else(|| panic!("{flags:?} started"));
        assert!(error.to_string().contains(expected), "{flags:?}: {error}");
    }
}

/// The upstream hears the host the client called, whatever the protocol:
/// `Host` over HTTP/1.1, `:authority` (and the same `Host`) over HTTP/2 —
/// while the connection goes to `--upstream`, whose certificate is what is
/// verified.
#[tokio::test]
async fn the_upstream_hears_the_host_the_client_called() {
    let handler = |request: Request<Incoming>| {
        let heard = format!(
            "{:?} authority={} host={}",
            request.version(),
            request.uri().authority().map_or("-", |a| a.as_str()),
            request
                .headers()
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("-"),
        );
        async move { Response::new(full(heard)) }
    };
    let plain = format!("http://{}", start(handler).await);
    let certs = Certs::new();
    let tls = format!("https://{}", start_tls(handler, &certs).await);
    let ca = certs.ca_path().to_str().unwrap().to_owned();

    let cases: [(&str, &[&str], &str); 3] = [
        (&plain, &[], "HTTP/1.1 authority=- host=orders.example"),
        (
            &plain,
            &["--upstream-protocol", "h2c"],
            "HTTP/2.0 authority=orders.example host=orders.example",
        ),
        (
            &tls,
            &["--upstream-ca", &ca],
            "HTTP/2.0 authority=orders.example host=orders.example",
        ),
    ];
    for (upstream, flags, expected) in cases {
        let mut fake = FakeControlPlane::start().await;
        let world = World::new();
        let (running, _session) = door(&mut fake, &world, upstream, flags).await;
        let request = get(&world, "/orders/host")
            .header("host", "orders.example")
            .body(full(""))
            .unwrap();
        let (status, _, body) = read(send_to(&running, &client(false), request).await).await;
        assert_eq!(status, StatusCode::OK, "{upstream} {flags:?}");
        assert_eq!(body, expected, "{upstream} {flags:?}");
        running.shutdown().await.unwrap();
    }
}
