//! The reverse-proxy door: an HTTP/1.1 and h2c server in front of one
//! upstream service, for the API named by `--api` (docs/door-proxy.md).
//!
//! The key, method, path and client IP are read as every HTTP door reads
//! them ([`super::request`]): the client IP is what [`client_ip::Policy`]
//! makes of the connection's peer and the request's forwarding headers; the
//! key comes from `Authorization: Bearer` and `X-API-Key` (never the query
//! string). The path is decided on, logged and forwarded in its normal form
//! ([`ipgate_shared::path`]), so the upstream answers for the route that was
//! checked. Denials get the exact body plus `x-ipgate-client-ip` and
//! `x-request-id`; allowed requests go to the [upstream](super::upstream)
//! with their headers [readied](super::forward) and bodies streamed both
//! ways, WebSockets [joined](super::websocket). Heads over the door's
//! [limits](super::limits) get `431` before any decision. At shutdown the
//! door stops accepting and lets requests in flight finish.

use std::{convert::Infallible, net::IpAddr, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{
    HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version,
    header::{CONTENT_TYPE, HOST},
    uri::PathAndQuery,
};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{rt::TokioIo, server::graceful::GracefulShutdown};
use ipgate_shared::{ApiSlug, Door, Reason};
use tokio::{
    net::TcpListener,
    sync::{Notify, watch},
};
use tracing::{Instrument, debug, debug_span, info, warn};

use super::{
    forward::{self, X_REQUEST_ID, set},
    limits::{self, Exceeded, ProxyLimits},
    request::{ReadRequest, uri_path},
    request_id,
    upstream::{Failure, OwnConnection, Upstream},
    websocket::Tunnels,
};
use crate::{
    client_ip,
    state::{Enforcer, Outcome},
};

/// Body of every response the door sends.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Answer when the upstream cannot be reached.
const UPSTREAM_UNAVAILABLE_BODY: &str = r#"{"error":{"code":"UPSTREAM_UNAVAILABLE","message":"The service behind ipgate did not answer; retry shortly"}}"#;
/// Answer when the upstream took longer than its timeouts allow.
const UPSTREAM_TIMEOUT_BODY: &str = r#"{"error":{"code":"UPSTREAM_TIMEOUT","message":"The service behind ipgate did not answer in time; retry shortly"}}"#;
const X_IPGATE_CLIENT_IP: HeaderName = HeaderName::from_static("x-ipgate-client-ip");

/// Decides each request and forwards the allowed ones to the upstream.
pub struct ProxyDoor {
    enforcer: Arc<Enforcer>,
    api: ApiSlug,
    upstream: Upstream,
    client_ip: client_ip::Policy,
    limits: ProxyLimits,
    /// `--hide-credentials`: the ipgate key stays behind.
    hide_credentials: bool,
    tunnels: Tunnels,
}

impl ProxyDoor {
    /// A door for `api` in front of `upstream`, finding client addresses by
    /// `client_ip`; with `hide_credentials` the headers that carried the
    /// ipgate key are not forwarded.
    pub fn new(
        enforcer: Arc<Enforcer>,
        api: ApiSlug,
        upstream: Upstream,
        client_ip: client_ip::Policy,
        limits: ProxyLimits,
        hide_credentials: bool,
    ) -> Self {
        ProxyDoor {
            enforcer,
            api,
            upstream,
            client_ip,
            limits,
            hide_credentials,
            tunnels: Tunnels::new(),
        }
    }

    /// Answers one request from `peer` (the PROXY header's source, with
    /// `--proxy-protocol`), forwarding it over `own`, the client
    /// connection's own upstream connection, when it can.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        own: &OwnConnection,
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
            uri_path(request.uri()),
            request.headers(),
        );
        let client_ip = read.client.ip;
        // A trusted proxy's id ties the usage log to its logs; anyone
        // else's could pass their requests off as another's.
        let trusted = self.client_ip.is_trusted_proxy(peer.ip());
        let request_id = request_id::trusted(request.headers(), trusted);
        let (outcome, mut event) =
            self.enforcer
                .decide_pending(read.input(Door::Proxy, self.api.as_str(), request_id));
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
        let response = self
            .forward(request, target, client_ip, &outcome, own)
            .await;
        // The usage log keeps the status the client got, not just "allowed".
        event.set_status(response.status().as_u16());
        response
    }

    async fn forward(
        &self,
        mut request: Request<Incoming>,
        target: PathAndQuery,
        client_ip: IpAddr,
        outcome: &Outcome,
        own: &OwnConnection,
    ) -> Response<ProxyBody> {
        // Taken before the request moves on: hyper hands the client's
        // connection over through it once the answer is a 101.
        let client_upgrade = hyper::upgrade::on(&mut request);
        let (mut parts, body) = request.into_parts();
        // HTTP/2 clients name the host in the URI, not in a header.
        if !parts.headers.contains_key(HOST)
            && let Some(value) = parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(HOST, value);
        }
        let upgrading = forward::to_upstream(
            &mut parts.headers,
            parts.version,
            &outcome.request_id,
            client_ip,
            self.hide_credentials,
        );
        // The origin form: the upstream adds what its connection needs.
        parts.uri = Uri::from(target);
        // The upstream client picks the protocol (--upstream-protocol).
        parts.version = Version::HTTP_11;

        let failure = match self
            .upstream
            .send(Request::from_parts(parts, body), upgrading, own)
            .await
        {
            Ok(mut response) => {
                let upstream_upgrade = hyper::upgrade::on(&mut response);
                let (mut parts, body) = response.into_parts();
                let switched = forward::to_client(
                    &mut parts.headers,
                    parts.status,
                    &outcome.request_id,
                    upgrading,
                );
                if switched {
                    self.tunnels
                        .join(client_upgrade, upstream_upgrade, &outcome.request_id);
                } else if parts.status == StatusCode::SWITCHING_PROTOCOLS {
                    // A switch the client did not ask for (or to another
                    // protocol) cannot be passed on as an answer.
                    warn!(upstream = %self.upstream.shown(), "upstream switched protocols unasked");
                    return json(StatusCode::BAD_GATEWAY, outcome, UPSTREAM_UNAVAILABLE_BODY);
                }
                return Response::from_parts(parts, body.boxed());
            }
            Err(failure) => failure,
        };
        if !matches!(failure, Failure::BadTarget) {
            warn!(upstream = %self.upstream.shown(), error = %failure, "upstream did not answer");
        }
        match failure {
            Failure::ConnectTimeout | Failure::ResponseTimeout => {
                json(StatusCode::GATEWAY_TIMEOUT, outcome, UPSTREAM_TIMEOUT_BODY)
            }
            Failure::Unavailable(_) => {
                json(StatusCode::BAD_GATEWAY, outcome, UPSTREAM_UNAVAILABLE_BODY)
            }
            Failure::BadTarget => json(StatusCode::BAD_REQUEST, outcome, BAD_TARGET_BODY),
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
    set(headers, X_IPGATE_CLIENT_IP, &outcome.client_ip.to_string());
    set(headers, X_REQUEST_ID, &outcome.request_id);
    response
}

/// Accepts connections until `stop`, then closes the listener, so new
/// connections are refused, and lets requests in flight finish (for at most
/// `drain_timeout`); WebSockets are closed after them. Each connection is
/// served within the door's [`ProxyLimits`].
pub(crate) async fn serve(
    listener: TcpListener,
    door: Arc<ProxyDoor>,
    mut stop: watch::Receiver<bool>,
    drain_timeout: Duration,
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
                let own = Arc::new(OwnConnection::default());
                let service = service_fn(move |request| {
                    seen.notify_one();
                    let door = door.clone();
                    let own = own.clone();
                    async move { Ok::<_, Infallible>(door.handle(request, peer, &own).await) }
                });
                let connection = watcher.watch(
                    server
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
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
    let in_flight = graceful.count();
    if in_flight > 0 {
        info!(connections = in_flight, "proxy door draining");
    }
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("proxy door stopped with requests still in flight after {drain_timeout:?}");
    }
    door.tunnels.close_all();
}
