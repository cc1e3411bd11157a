//! HTTP/1.1 requests from a chosen loopback source address (127.0.0.x), so
//! one test can be an allowed client and a blocked one.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{HeaderMap, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;

/// What came back.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Response {
    /// A header's value as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Sends `GET path` with `headers` to `target`, from `source`.
pub async fn get(
    source: IpAddr,
    target: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    request(source, target, "GET", path, headers).await
}

/// Sends a body-less request from `source`.
pub async fn request(
    source: IpAddr,
    target: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .expect("socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("bind the source address");
    let stream = socket
        .connect(target)
        .await
        .unwrap_or_else(|e| panic!("connect {source} -> {target}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", target.to_string());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let req = builder.body(Empty::<Bytes>::new()).expect("request");
    let res = sender.send_request(req).await.expect("response");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}
