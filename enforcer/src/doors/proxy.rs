//! The reverse-proxy door: an HTTP/1.1 and h2c server in front of one
//! upstream service, for the API named by `--api`.
//!
//! The key, method, path and client IP are read as every HTTP door reads
//! them ([`super::request`]): the client IP is what [`client_ip::Policy`]
//! makes of the connection's peer and the request's forwarding headers; the
//! key comes from `Authorization: Bearer` and `X-API-Key` (never the query
//! string). The path is decided on, logged and forwarded in its normal form
//! ([`ipgate_shared::path`]), so the upstream answers for the route that was
//! checked. Denials get the exact body plus `x-ipgate-client-ip` and
//! `x-request-id`; allowed requests go upstream with `x-request-id` and the
//! address decided on appended to `x-forwarded-for`. Heads over the door's
//! [limits](super::limits) get `431` before any decision.

use std::{convert::Infallible, net::IpAddr, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version,
    header::{CONNECTION, CONTENT_TYPE, HOST},
    uri::{Authority, PathAndQuery, Scheme},
};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
    server::graceful::GracefulShutdown,
};
use ipgate_shared::{ApiSlug, Door, Reason, redact};
use tokio::{
    net::TcpListener,
    sync::{Notify, watch},
};
use tracing::{Instrument, debug, debug_span, warn};

use super::{
    limits::{self, Exceeded, ProxyLimits},
    request::ReadRequest,
};
use crate::{
    client_ip,
    error::Error,
    state::{Enforcer, Outcome},
};

/// Body of every response the door sends.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// How long a connection to the upstream may take to open.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for requests in flight.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Answer when the upstream cannot be reached.
const UPSTREAM_UNAVAILABLE_BODY: &str = r#"{"error":{"code":"UPSTREAM_UNAVAILABLE","message":"The service behind ipgate did not answer; retry shortly"}}"#;
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_IPGATE_CLIENT_IP: HeaderName = HeaderName::from_static("x-ipgate-client-ip");
/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Decides each request and forwards the allowed ones to the upstream.
pub struct ProxyDoor {
    enforcer: Arc<Enforcer>,
    api: ApiSlug,
    scheme: Scheme,
    authority: Authority,
    /// The upstream as logs show it, without its secrets.
    shown_upstream: String,
    client: Client<HttpConnector, Incoming>,
    client_ip: client_ip::Policy,
    limits: ProxyLimits,
}

impl ProxyDoor {
    /// A door for `api` in front of `upstream` (`http://host:port`), finding
    /// client addresses by `client_ip`.
    pub fn new(
        enforcer: Arc<Enforcer>,
        api: ApiSlug,
        upstream: &Uri,
        client_ip: client_ip::Policy,
        limits: ProxyLimits,
    ) -> Result<Self, Error> {
        let shown_upstream = redact::url(&upstream.to_string());
        let bad = |why: &str| Error::Config(format!("--upstream {shown_upstream}: {why}"));
        if upstream.scheme() != Some(&Scheme::HTTP) {
            return Err(bad(
                "expected http://host:port (TLS to the upstream is not supported)",
            ));
        }
        let authority = upstream
            .authority()
            .cloned()
            .ok_or_else(|| bad("the address has no host"))?;
        if !matches!(upstream.path(), "" | "/") || upstream.query().is_some() {
            return Err(bad(
                "give scheme, host and port only; paths are passed through as requested",
            ));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(UPSTREAM_CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(ProxyDoor {
            enforcer,
            api,
            scheme: Scheme::HTTP,
            authority,
            shown_upstream,
            client,
            client_ip,
            limits,
        })
    }

    /// Answers one request from `peer` (the PROXY header's source, with
    /// `--proxy-protocol`).
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        if let Some(exceeded) = self.limits.exceeded(&request) {
            // Not a decision: nothing of the request was looked at.
            debug!(%peer, ?exceeded, "request head over the proxy door's limits");
            return too_large(exceeded, request.version());
        }
        let read = ReadRequest::read(
            &self.client_ip,
            peer,
            request.method().as_str(),
            request.uri().path(),
            request.headers(),
        );
        let client_ip = read.client.ip;
        let (outcome, mut event) =
            self.enforcer
                .decide_pending(read.input(Door::Proxy, self.api.as_str(), None));
        if !outcome.allowed() {
            return denial(&outcome);
        }
        // The decision refuses a path without a normal form; this keeps one
        // from ever being forwarded, whatever state the enforcer is in.
        let target = match &read.normal_path {
            Ok(path) => upstream_target(path, request.uri().query()).ok_or(BAD_TARGET_BODY),
            Err(_) => Err(Reason::BadPath.body().unwrap_or(BAD_TARGET_BODY)),
        };
        let target = match target {
            Ok(target) => target,
            Err(body) => {
                event.set_status(400);
                return json(StatusCode::BAD_REQUEST, &outcome, body);
            }
        };
        let response = self.forward(request, target, client_ip, &outcome).await;
        // The usage log keeps the status the client got, not just "allowed".
        event.set_status(response.status().as_u16());
        response
    }

    async fn forward(
        &self,
        request: Request<Incoming>,
        target: PathAndQuery,
        client_ip: IpAddr,
        outcome: &Outcome,
    ) -> Response<ProxyBody> {
        let (mut parts, body) = request.into_parts();
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(target)
            .build();
        let Ok(uri) = uri else {
            return json(StatusCode::BAD_REQUEST, outcome, BAD_TARGET_BODY);
        };
        // HTTP/2 clients name the host in the URI, not in a header.
        if !parts.headers.contains_key(HOST)
            && let Some(value) = parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(HOST, value);
        }
        strip_hop_by_hop(&mut parts.headers);
        set(&mut parts.headers, X_REQUEST_ID, &outcome.request_id);
        append_forwarded_for(&mut parts.headers, client_ip);
        parts.uri = uri;
        // The upstream is spoken to in HTTP/1.1 whatever the client used.
        parts.version = Version::HTTP_11;

        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                set(&mut parts.headers, X_REQUEST_ID, &outcome.request_id);
                Response::from_parts(parts, body.boxed())
            }
            Err(e) => {
                warn!(upstream = %self.shown_upstream, error = %e, "upstream did not answer");
                json(StatusCode::BAD_GATEWAY, outcome, UPSTREAM_UNAVAILABLE_BODY)
            }
        }
    }
}

const BAD_TARGET_BODY: &str =
    r#"{"error":{"code":"BAD_REQUEST","message":"The request target cannot be forwarded"}}"#;

/// The normal path with the query string as the client sent it (the
/// query is the upstream's business); `None` if it makes no valid target.
fn upstream_target(path: &str, query: Option<&str>) -> Option<PathAndQuery> {
    let target = match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    PathAndQuery::try_from(target).ok()
}

fn denial(outcome: &Outcome) -> Response<ProxyBody> {
    let status = StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::FORBIDDEN);
    json(status, outcome, outcome.body.unwrap_or_default())
}

/// The door's `431`, before any decision (see [`limits::too_large`]).
fn too_large(exceeded: Exceeded, version: Version) -> Response<ProxyBody> {
    limits::too_large(exceeded, version)
        .map(|body| body.map_err(|never: Infallible| match never {}).boxed())
}

/// A JSON answer from the door itself, with the diagnosis headers.
fn json(status: StatusCode, outcome: &Outcome, body: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    set(headers, X_IPGATE_CLIENT_IP, &outcome.client_ip);
    set(headers, X_REQUEST_ID, &outcome.request_id);
    response
}

/// Sets a header from text the door made itself (ids, addresses).
fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn append_forwarded_for(headers: &mut HeaderMap, client_ip: IpAddr) {
    let prior: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let value = if prior.is_empty() {
        client_ip.to_string()
    } else {
        format!("{}, {client_ip}", prior.join(", "))
    };
    set(headers, X_FORWARDED_FOR, &value);
}

/// Accepts connections until `stop`, then lets requests in flight finish
/// (for at most [`DRAIN_TIMEOUT`]). Each connection is served within the
/// door's [`ProxyLimits`].
pub(crate) async fn serve(
    listener: TcpListener,
    door: Arc<ProxyDoor>,
    mut stop: watch::Receiver<bool>,
) {
    let server = door.limits.builder();
    let head_timeout = door.limits.header_read_timeout;
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = crate::shutdown::requested(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause, not spin.
                    warn!(error = %e, "proxy door could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let door = door.clone();
        let server = server.clone();
        let watcher = graceful.watcher();
        let span = debug_span!("proxy_connection", %peer);
        // The PROXY header, when expected, is read here, off the accept loop.
        tokio::spawn(
            async move {
                let Some((stream, peer)) = door.client_ip.accept(stream, peer).await else {
                    return;
                };
                let head_seen = Arc::new(Notify::new());
                let seen = head_seen.clone();
                let service = service_fn(move |request| {
                    seen.notify_one();
                    let door = door.clone();
                    async move { Ok::<_, Infallible>(door.handle(request, peer).await) }
                });
                let connection = watcher.watch(
                    server
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned(),
                );
                match limits::first_head_within(head_timeout, &head_seen, connection).await {
                    Some(Err(e)) => debug!(error = %e, "proxy connection ended with an error"),
                    Some(Ok(())) => {}
                    None => debug!("no request head within {head_timeout:?}; connection closed"),
                }
            }
            .instrument(span),
        );
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("proxy door stopped with requests still in flight");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_dropped_and_forwarded_for_appended() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.1"));
        strip_hop_by_hop(&mut h);
        append_forwarded_for(&mut h, "203.0.113.5".parse().unwrap());
        assert!(h.get("x-secret-hop").is_none() && h.get("upgrade").is_none());
        assert!(h.get(CONNECTION).is_none());
        assert_eq!(h["x-kept"], "1");
        assert_eq!(h[X_FORWARDED_FOR], "198.51.100.1, 203.0.113.5");
    }
}
