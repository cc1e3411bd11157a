//! The real `ipgate enforcer` stopped with SIGTERM while a request is in
//! flight: it stops taking connections at once, lets the request finish,
//! reports it to the usage log and exits with status 0.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use ipgate_tests::{Backend, Enforcer, World, admin::ip, eventually, http, world::API};
use tokio::{net::TcpListener, sync::Notify};

/// How long any step of this test may take before it fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// An upstream that answers `/orders/slow` only once the test releases it
/// (telling the test when such a request has arrived), and everything else
/// at once.
async fn slow_upstream() -> (SocketAddr, Arc<Notify>, Arc<Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let arrived = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (arrived_tx, release_rx) = (arrived.clone(), release.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (arrived, release) = (arrived_tx.clone(), release_rx.clone());
            let service = service_fn(move |request: Request<Incoming>| {
                let (arrived, release) = (arrived.clone(), release.clone());
                async move {
                    if request.uri().path() == "/orders/slow" {
                        arrived.notify_one();
                        release.notified().await;
                        return Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            b"slow answer",
                        ))));
                    }
                    Ok(Response::new(Full::new(Bytes::from_static(b"quick"))))
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, arrived, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    let w = World::start(&Backend::sqlite()).await;
    let (upstream, arrived, release) = slow_upstream().await;
    let mut enforcer = Enforcer::start_with(&w.cp, API, upstream, &[], &[]);
    let proxy = enforcer.proxy_addr;
    let key = w.key.clone();
    eventually(PATIENCE, "the enforcer to sync", || {
        let key = key.clone();
        async move {
            let res = http::get(ip("127.0.0.1"), proxy, "/orders/7", &[("x-api-key", &key)]).await;
            (res.status == 200).then_some(())
        }
    })
    .await;

    let in_flight = tokio::spawn(async move {
        http::get(
            ip("127.0.0.1"),
            proxy,
            "/orders/slow",
            &[("x-api-key", &key)],
        )
        .await
    });
    tokio::time::timeout(PATIENCE, arrived.notified())
        .await
        .expect("the slow request reaches the upstream");

    enforcer.terminate();
    // New connections are refused from now on…
    eventually(PATIENCE, "new connections to be refused", || async move {
        tokio::net::TcpStream::connect(proxy)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    // …while the request in flight holds the process up.
    assert!(
        enforcer.exited().is_none(),
        "exited with a request in flight"
    );

    release.notify_one();
    let answer = tokio::time::timeout(PATIENCE, in_flight)
        .await
        .expect("the request in flight is answered")
        .expect("the client task");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, "slow answer");

    let status = enforcer.wait_exit(PATIENCE);
    assert!(status.success(), "exited with {status}");
    let log = enforcer.log();
    assert!(log.contains("proxy door draining"), "{log}");

    // Its usage event was flushed before the exit.
    let entry = w.logged(answer.header("x-request-id")).await;
    assert_eq!(entry.status_code, 200);
    assert_eq!(entry.path, "/orders/slow");
}
