//! The auth endpoint: an HTTP door for proxies that ask before they
//! forward — nginx `auth_request` and Traefik ForwardAuth — on its own
//! listener (`--auth-listen`).
//!
//! The proxy sends a request of its own, describing the one it holds:
//!
//! - the **API** in the path, `/v1/check/{api}`, or at `/v1/check` in an
//!   `X-Ipgate-Api` header; the path wins, since a proxy may pass on headers
//!   its client wrote;
//! - the original **method and URI** in `X-Original-Method` and
//!   `X-Original-URI` (nginx) or `X-Forwarded-Method` and `X-Forwarded-Uri`
//!   (Traefik). Each proxy passes the other style's headers on as its
//!   client sent them, so when both styles come they must agree, or the
//!   request is refused (`400`): a client must not choose the path decided
//!   on. Neither style: `400`;
//! - the **key** from `Authorization: Bearer` and `X-API-Key` (nginx's
//!   subrequest carries the original request's headers; Traefik copies
//!   them);
//! - the **client address** from [`client_ip::Policy`]: the TCP peer is the
//!   proxy, so only with `--trusted-proxies` (or `--trusted-hops`) is the
//!   client read from the `X-Forwarded-For` it sets.
//!
//! All of it is read as every HTTP door reads it ([`super::request`]), and
//! head limits are the proxy door's ([`super::limits`]).
//!
//! Allowed: `200`, empty, with `x-ipgate-key-id`, `x-ipgate-api` and
//! `x-request-id` for the proxy to pass upstream. Denied: the decision's
//! status and exact JSON body with `x-ipgate-client-ip` and `x-request-id`,
//! and the body again in `x-ipgate-error` with the status in
//! `x-ipgate-status`: nginx reads no body of an auth subrequest and turns
//! every status but 401 and 403 into 500, so its configuration
//! (`deploy/nginx/ipgate-auth.conf`) answers from these headers.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::{rt::TokioIo, server::graceful::GracefulShutdown};
use ipgate_shared::Door;
use tokio::{
    net::TcpListener,
    sync::{Notify, watch},
};
use tracing::{Instrument, debug, debug_span, warn};

use super::{
    limits::{self, ProxyLimits},
    request::{ReadRequest, target_path},
};
use crate::{
    client_ip,
    state::{Enforcer, Outcome},
};

/// Where the auth endpoint answers; the API may follow as one segment.
pub const CHECK_PATH: &str = "/v1/check";
/// How long shutdown waits for requests in flight.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_IPGATE_API: HeaderName = HeaderName::from_static("x-ipgate-api");
const X_IPGATE_KEY_ID: HeaderName = HeaderName::from_static("x-ipgate-key-id");
const X_IPGATE_CLIENT_IP: HeaderName = HeaderName::from_static("x-ipgate-client-ip");
const X_IPGATE_ERROR: HeaderName = HeaderName::from_static("x-ipgate-error");
const X_IPGATE_STATUS: HeaderName = HeaderName::from_static("x-ipgate-status");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Decides the requests proxies describe to it.
#[derive(Debug)]
pub struct AuthDoor {
    enforcer: Arc<Enforcer>,
    client_ip: client_ip::Policy,
    limits: ProxyLimits,
}

/// Why an auth request cannot be decided: the proxy's configuration, not
/// the client, is at fault (or a client tried to name the request itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadAuthRequest {
    /// Not `/v1/check` or `/v1/check/{api}`.
    #[error("not the auth endpoint's path")]
    NotFound,
    /// Neither header style names the original method and URI.
    #[error("no original method and URI")]
    MissingOriginal,
    /// Both styles came and disagree, or a header came twice.
    #[error("the original request is named twice, differently")]
    ConflictingOriginal,
    /// The original method is no HTTP method, or a header is not text.
    #[error("the original method or URI is malformed")]
    MalformedOriginal,
    /// `X-Ipgate-Api` sent twice, or not text.
    #[error("X-Ipgate-Api is malformed")]
    ApiHeader,
}

impl BadAuthRequest {
    /// The status of the door's answer.
    pub fn status(self) -> StatusCode {
        match self {
            BadAuthRequest::NotFound => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The exact JSON body of the door's answer.
    pub const fn body(self) -> &'static str {
        match self {
            BadAuthRequest::NotFound => {
                r#"{"error":{"code":"NOT_FOUND","message":"The auth endpoint answers at /v1/check/{api}"}}"#
            }
            BadAuthRequest::MissingOriginal => {
                r#"{"error":{"code":"BAD_AUTH_REQUEST","message":"The auth request must name the original request: X-Original-Method and X-Original-URI (nginx) or X-Forwarded-Method and X-Forwarded-Uri (Traefik)"}}"#
            }
            BadAuthRequest::ConflictingOriginal => {
                r#"{"error":{"code":"BAD_AUTH_REQUEST","message":"The auth request names the original request more than once, differently"}}"#
            }
            BadAuthRequest::MalformedOriginal => {
                r#"{"error":{"code":"BAD_AUTH_REQUEST","message":"The original request's method or URI is malformed"}}"#
            }
            BadAuthRequest::ApiHeader => {
                r#"{"error":{"code":"BAD_AUTH_REQUEST","message":"X-Ipgate-Api must be sent once, as text"}}"#
            }
        }
    }
}

/// The original request, as the proxy names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Original<'a> {
    method: &'a str,
    uri: &'a str,
}

impl AuthDoor {
    /// A door deciding with `enforcer`, finding client addresses by
    /// `client_ip`, within `limits`.
    pub fn new(enforcer: Arc<Enforcer>, client_ip: client_ip::Policy, limits: ProxyLimits) -> Self {
        if !client_ip.follows_headers() {
            warn!(
                "the auth endpoint is on without --trusted-proxies or --trusted-hops: every \
                 request is decided on the address of the proxy that asks (nginx, Traefik), \
                 not its client's; list the proxy's address in --trusted-proxies"
            );
        }
        AuthDoor {
            enforcer,
            client_ip,
            limits,
        }
    }

    /// Answers one auth request from `peer` (the PROXY header's source, with
    /// `--auth-proxy-protocol`). The body, if any, is never read.
    pub fn handle<B>(&self, request: &Request<B>, peer: SocketAddr) -> Response<Full<Bytes>> {
        if let Some(exceeded) = self.limits.exceeded(request) {
            // Not a decision: nothing of the request was looked at.
            debug!(%peer, ?exceeded, "request head over the auth endpoint's limits");
            let mut response = limits::too_large(exceeded, request.version());
            let status = response.status();
            for_nginx(response.headers_mut(), status, exceeded.body());
            return response;
        }
        match self.decide(request, peer) {
            Ok((outcome, api)) if outcome.allowed() => allowed(&outcome, api),
            Ok((outcome, _)) => denied(&outcome),
            Err(bad) => {
                debug!(%peer, path = request.uri().path(), error = %bad, "auth request refused");
                door_answer(bad.status(), bad.body())
            }
        }
    }

    /// Reads the auth request and has the original one decided.
    fn decide<'r, B>(
        &self,
        request: &'r Request<B>,
        peer: SocketAddr,
    ) -> Result<(Outcome, &'r str), BadAuthRequest> {
        let path_api = api_from_path(request.uri().path())?;
        let headers = request.headers();
        let original = original(headers)?;
        let api = match path_api {
            Some(api) => api,
            None => api_header(headers)?,
        };
        let read = ReadRequest::read(
            &self.client_ip,
            peer,
            original.method,
            target_path(original.uri),
            headers,
        );
        // A fresh request id, as on the proxy door: the proxy's client may
        // have written any `X-Request-Id`. The proxy passes this one on.
        let outcome = self
            .enforcer
            .decide(read.input(Door::AuthRequest, api, None));
        Ok((outcome, api))
    }
}

/// `Some(api)` for `/v1/check/{api}`, `None` for `/v1/check`.
fn api_from_path(path: &str) -> Result<Option<&str>, BadAuthRequest> {
    let rest = path
        .strip_prefix(CHECK_PATH)
        .ok_or(BadAuthRequest::NotFound)?;
    match rest {
        "" | "/" => Ok(None),
        _ => match rest.strip_prefix('/') {
            Some(api) if !api.is_empty() && !api.contains('/') => Ok(Some(api)),
            _ => Err(BadAuthRequest::NotFound),
        },
    }
}

/// The `X-Ipgate-Api` header's API; empty when absent (decided as unknown).
fn api_header(headers: &HeaderMap) -> Result<&str, BadAuthRequest> {
    Ok(one(headers, &X_IPGATE_API)
        .map_err(|()| BadAuthRequest::ApiHeader)?
        .map(str::trim)
        .unwrap_or_default())
}

/// The original request from whichever header style came; see the module
/// docs for why two styles must agree.
fn original(headers: &HeaderMap) -> Result<Original<'_>, BadAuthRequest> {
    let nginx = style(headers, &X_ORIGINAL_METHOD, &X_ORIGINAL_URI)?;
    let traefik = style(headers, &X_FORWARDED_METHOD, &X_FORWARDED_URI)?;
    let (method, uri) = match (nginx, traefik) {
        (Some(a), Some(b)) if a == b => a,
        (Some(_), Some(_)) => return Err(BadAuthRequest::ConflictingOriginal),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => return Err(BadAuthRequest::MissingOriginal),
    };
    let (Some(method), Some(uri)) = (method, uri) else {
        return Err(BadAuthRequest::MissingOriginal);
    };
    if uri.is_empty() {
        return Err(BadAuthRequest::MissingOriginal);
    }
    if Method::from_bytes(method.as_bytes()).is_err() {
        return Err(BadAuthRequest::MalformedOriginal);
    }
    Ok(Original { method, uri })
}

/// A header style's method and URI; `None` when neither header came.
type Style<'a> = Option<(Option<&'a str>, Option<&'a str>)>;

fn style<'a>(
    headers: &'a HeaderMap,
    method: &HeaderName,
    uri: &HeaderName,
) -> Result<Style<'a>, BadAuthRequest> {
    let method = one(headers, method).map_err(|()| BadAuthRequest::ConflictingOriginal)?;
    let uri = one(headers, uri).map_err(|()| BadAuthRequest::ConflictingOriginal)?;
    Ok((method.is_some() || uri.is_some()).then_some((method.map(str::trim), uri.map(str::trim))))
}

/// The one value of `name`; `Err` when it came twice or is not text.
fn one<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, ()> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => value.to_str().map(Some).map_err(drop),
        (Some(_), Some(_)) => Err(()),
    }
}

/// `200`: the proxy lets the request through, with ipgate's headers for
/// the upstream.
fn allowed(outcome: &Outcome, api: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    let headers = response.headers_mut();
    set(headers, X_IPGATE_API, api);
    set(headers, X_REQUEST_ID, &outcome.request_id);
    if let Some(id) = outcome.key_id {
        set(headers, X_IPGATE_KEY_ID, &id.to_string());
    }
    response
}

/// A denial: the decision's status and exact body, with the diagnosis
/// headers.
fn denied(outcome: &Outcome) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::FORBIDDEN);
    let mut response = door_answer(status, outcome.body.unwrap_or_default());
    let headers = response.headers_mut();
    set(headers, X_IPGATE_CLIENT_IP, &outcome.client_ip.to_string());
    set(headers, X_REQUEST_ID, &outcome.request_id);
    response
}

/// A JSON answer, its body also in `x-ipgate-error` and its status in
/// `x-ipgate-status` for nginx.
fn door_answer(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for_nginx(headers, status, body);
    response
}

/// The status and body again, in `x-ipgate-status` and `x-ipgate-error`.
fn for_nginx(headers: &mut HeaderMap, status: StatusCode, body: &str) {
    headers.insert(X_IPGATE_STATUS, HeaderValue::from(status.as_u16()));
    // Every body is ASCII without control characters: a valid header value.
    set(headers, X_IPGATE_ERROR, body);
}

/// Sets a header from text the door made itself (ids, addresses, bodies)
/// or an API name that was found in the index.
fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// Accepts connections until `stop`, then lets requests in flight finish
/// (for at most [`DRAIN_TIMEOUT`]). Each connection is served within the
/// door's [`ProxyLimits`], its PROXY header first read when expected.
pub(crate) async fn serve(
    listener: TcpListener,
    door: Arc<AuthDoor>,
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
                    warn!(error = %e, "auth endpoint could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let door = door.clone();
        let server = server.clone();
        let watcher = graceful.watcher();
        let span = debug_span!("auth_connection", %peer);
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
                    async move { Ok::<_, Infallible>(door.handle(&request, peer)) }
                });
                let connection = watcher.watch(
                    server
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned(),
                );
                match limits::first_head_within(head_timeout, &head_seen, connection).await {
                    Some(Err(e)) => debug!(error = %e, "auth connection ended with an error"),
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
        warn!("auth endpoint stopped with requests still in flight");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_api_comes_from_the_path() {
        assert_eq!(api_from_path("/v1/check/orders"), Ok(Some("orders")));
        assert_eq!(api_from_path("/v1/check"), Ok(None));
        assert_eq!(api_from_path("/v1/check/"), Ok(None));
        for not_found in [
            "/",
            "/v1/checks",
            "/v1/check/a/b",
            "/v1/check//",
            "/v2/check/a",
        ] {
            assert_eq!(
                api_from_path(not_found),
                Err(BadAuthRequest::NotFound),
                "{not_found}"
            );
        }
    }

    #[test]
    fn the_original_request_comes_from_either_style() {
        let nginx = headers(&[("x-original-method", "POST"), ("x-original-uri", "/a?b")]);
        assert_eq!(
            original(&nginx),
            Ok(Original {
                method: "POST",
                uri: "/a?b"
            })
        );
        let traefik = headers(&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/c")]);
        assert_eq!(
            original(&traefik),
            Ok(Original {
                method: "GET",
                uri: "/c"
            })
        );
        let agreeing = headers(&[
            ("x-original-method", "GET"),
            ("x-original-uri", "/c"),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/c"),
        ]);
        assert!(original(&agreeing).is_ok());
    }

    #[test]
    fn a_client_cannot_name_the_original_request() {
        // Traefik sets X-Forwarded-*, and passes on an X-Original-URI its
        // client wrote; nginx does the reverse.
        for (pairs, want) in [
            (
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-uri", "/admin"),
                    ("x-original-uri", "/public"),
                ][..],
                BadAuthRequest::ConflictingOriginal,
            ),
            (
                &[
                    ("x-original-method", "GET"),
                    ("x-original-uri", "/admin"),
                    ("x-forwarded-method", "GET"),
                ][..],
                BadAuthRequest::ConflictingOriginal,
            ),
            (
                &[
                    ("x-original-method", "GET"),
                    ("x-original-uri", "/a"),
                    ("x-original-uri", "/b"),
                ][..],
                BadAuthRequest::ConflictingOriginal,
            ),
            (&[][..], BadAuthRequest::MissingOriginal),
            (
                &[("x-original-uri", "/a")][..],
                BadAuthRequest::MissingOriginal,
            ),
            (
                &[("x-original-method", "GET"), ("x-original-uri", "")][..],
                BadAuthRequest::MissingOriginal,
            ),
            (
                &[("x-original-method", "G E T"), ("x-original-uri", "/a")][..],
                BadAuthRequest::MalformedOriginal,
            ),
        ] {
            assert_eq!(original(&headers(pairs)), Err(want), "{pairs:?}");
        }
    }

    #[test]
    fn door_answers_are_json_with_their_body_in_a_header() {
        for bad in [
            BadAuthRequest::NotFound,
            BadAuthRequest::MissingOriginal,
            BadAuthRequest::ConflictingOriginal,
            BadAuthRequest::MalformedOriginal,
            BadAuthRequest::ApiHeader,
        ] {
            let response = door_answer(bad.status(), bad.body());
            assert!(bad.body().starts_with(r#"{"error":{"code":""#));
            assert_eq!(response.headers()[X_IPGATE_ERROR], bad.body());
            assert_eq!(
                response.headers()[X_IPGATE_STATUS],
                bad.status().as_str(),
                "{bad:?}"
            );
        }
    }
}
