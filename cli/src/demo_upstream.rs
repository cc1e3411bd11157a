//! The tiny upstream `ipgate dev` puts behind its enforcer, so a request that
//! gets through has somewhere to go.

use std::{convert::Infallible, net::SocketAddr};

use http_body_util::Full;
use hyper::{Request, Response, body::Bytes, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Binds `addr` and answers every request with a small JSON document that
/// echoes the method, path and request id it received.
pub async fn start(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let served = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
                if let Err(e) = served {
                    tracing::debug!(error = %e, "demo upstream connection ended");
                }
            });
        }
    });
    Ok(local)
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let body = serde_json::json!({
        "message": "hello from the ipgate demo upstream",
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "request_id": request_id,
    });
    let body = format!("{body}\n");
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
