//! A stand-in for the service behind the proxy: answers 200 with what it got.

use std::{convert::Infallible, net::SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Body every upstream answer starts with.
pub const UPSTREAM_BODY: &str = "upstream saw";

/// Starts the upstream on a free loopback port.
pub async fn start() -> SocketAddr {
    serve(answer).await
}

/// Starts an HTTP/1.1 service on a free loopback port that answers every
/// request with `answer`.
pub async fn serve<Fut>(answer: fn(Request<Incoming>) -> Fut) -> SocketAddr
where
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    });
    addr
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let body = format!(
        "{UPSTREAM_BODY} {} {} request-id={id}",
        req.method(),
        req.uri()
    );
    Ok(Response::new(Full::new(Bytes::from(body))))
}
