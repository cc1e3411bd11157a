//! The ext_authz door: Envoy's external authorization, gRPC v3
//! (`envoy.service.auth.v3.Authorization/Check`), on the enforcer's gRPC
//! port beside the check door.
//!
//! Envoy describes each request it holds; the door reads it as every HTTP
//! door does ([`super::request`]):
//!
//! - the **API** from the route's context extension `ipgate_api`, or else
//!   from `--api-for-host` by the request's host; neither is decided as an
//!   unknown API (`404 API_NOT_FOUND`);
//! - the **key** from the request's `authorization: Bearer` and `x-api-key`
//!   headers;
//! - the **method** and the **path** (Envoy's `path` is the request target,
//!   query included, which is left off);
//! - the **client address** from [`client_ip::Policy`] with the source
//!   address Envoy reports as the peer and the headers Envoy passes, so
//!   `--trusted-proxies` works as on the proxy door.
//!
//! Envoy names the client address, so whoever may call this door can have
//! any address decided on: it asks for the gRPC port's door token
//! (`--check-token`, [`super::token`]) exactly as the check door does, and
//! the enforcer refuses to listen beyond loopback without one.
//!
//! An allowed request goes on with `x-ipgate-key-id` (removed when no key
//! was identified, so a client cannot send its own), `x-ipgate-api` and
//! `x-request-id` set for the upstream and, with `--hide-credentials`, the
//! key headers removed. A denied one gets the decision's status and exact
//! JSON body, with `content-type: application/json`, `x-ipgate-client-ip`
//! and `x-request-id`.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use envoy_types::{
    ext_authz::v3::pb::{
        Address, Authorization, AuthorizationServer, CheckRequest, CheckResponse,
        DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption, HttpResponse,
        HttpStatus, OkHttpResponse,
    },
    pb::{
        envoy::{
            config::core::v3::socket_address::PortSpecifier,
            service::auth::v3::{AttributeContext, attribute_context::HttpRequest},
        },
        google::rpc,
    },
};
use http::HeaderMap;
use ipgate_shared::Door;
use tonic::{Code, Request, Response, Status};
use tracing::debug;

use super::{
    request::{HostApis, ReadRequest, header_map, key_headers, target_path},
    token::{TokenDigest, authorize, unauthenticated},
};
use crate::{
    client_ip,
    config::CheckToken,
    state::{Enforcer, Outcome},
};

/// The context extension that names the API, set per route in Envoy's
/// `ExtAuthzPerRoute.check_settings.context_extensions`.
pub const API_CONTEXT_EXTENSION: &str = "ipgate_api";

/// Answers Envoy's `Check` calls from the shared index.
#[derive(Debug)]
pub struct ExtAuthzDoor {
    enforcer: Arc<Enforcer>,
    token: Option<TokenDigest>,
    client_ip: client_ip::Policy,
    hosts: HostApis,
    hide_credentials: bool,
}

impl ExtAuthzDoor {
    /// The door, ready to add to a tonic server: with `token`, every call
    /// must present it; `client_ip` finds client addresses, `hosts` names
    /// APIs for routes without a context extension, and with
    /// `hide_credentials` allowed requests lose their key headers.
    pub fn server(
        enforcer: Arc<Enforcer>,
        token: Option<&CheckToken>,
        client_ip: client_ip::Policy,
        hosts: HostApis,
        hide_credentials: bool,
    ) -> AuthorizationServer<ExtAuthzDoor> {
        AuthorizationServer::new(ExtAuthzDoor {
            enforcer,
            token: token.map(|t| TokenDigest::of(t.expose())),
            client_ip,
            hosts,
            hide_credentials,
        })
    }

    /// The API a request is for: the route's context extension, else the
    /// host mapping; empty when neither names one (decided as unknown).
    fn api<'a>(&'a self, extensions: &'a HashMap<String, String>, host: &str) -> &'a str {
        if let Some(api) = extensions
            .get(API_CONTEXT_EXTENSION)
            .filter(|api| !api.is_empty())
        {
            return api;
        }
        match self.hosts.lookup(host) {
            Some(api) => api.as_str(),
            None => {
                debug!(
                    host,
                    "ext_authz request names no API: no `{API_CONTEXT_EXTENSION}` context \
                     extension and no --api-for-host for its host"
                );
                ""
            }
        }
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthzDoor {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        // Before anything is decided: a refused caller leaves no usage event.
        authorize(request.metadata(), self.token.as_ref()).map_err(unauthenticated)?;
        let attributes = request.into_inner().attributes.unwrap_or_default();
        let peer = source_address(&attributes).map_err(invalid_source)?;
        let no_http = HttpRequest::default();
        let http = attributes
            .request
            .as_ref()
            .and_then(|r| r.http.as_ref())
            .unwrap_or(&no_http);
        let headers = envoy_headers(http);
        let api = self.api(&attributes.context_extensions, &http.host);
        let read = ReadRequest::read(
            &self.client_ip,
            peer,
            &http.method,
            envoy_path(http),
            &headers,
        );
        let request_id = request_id(&headers, &http.id);
        let outcome = self
            .enforcer
            .decide(read.input(Door::ExtAuthz, api, request_id));
        let response = if outcome.allowed() {
            allowed(&outcome, api, self.hide_credentials.then_some(&headers))
        } else {
            denied(&outcome)
        };
        Ok(Response::new(response))
    }
}

/// The request's id as Envoy knows it, so that Envoy's access log, ipgate's
/// usage log and the upstream share one: the `x-request-id` Envoy passes
/// (which it makes for every request from outside), else the id of
/// Envoy's stream; `None` (a fresh id) when neither is there.
fn request_id<'a>(headers: &'a HeaderMap, envoy_id: &'a str) -> Option<&'a str> {
    headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .or(Some(envoy_id).filter(|id| !id.is_empty()))
}

/// Envoy's `path` without its query string. A request without a path (a
/// `CONNECT`, whose target is an authority) is decided on the `host` it
/// names, as the proxy door decides it: that has no normal form, so the
/// request is refused as `BAD_PATH` rather than decided as `/`.
fn envoy_path(http: &HttpRequest) -> &str {
    if http.path.is_empty() {
        &http.host
    } else {
        target_path(&http.path)
    }
}

/// Why Envoy's request cannot be decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// No `attributes.source.address`, or not a socket address (a Unix
    /// socket or an internal listener has no client address to decide on).
    #[error(
        "attributes.source.address.socket_address is missing: the request came to Envoy \
         over no IP connection, so there is no client address to decide on"
    )]
    Missing,
    /// The address is no plain IP address.
    #[error("attributes.source.address.socket_address.address {0:?} is not an IP address")]
    Invalid(String),
}

/// The peer Envoy reports: the downstream connection's address (or, when
/// Envoy itself follows `X-Forwarded-For`, the client it found there).
fn source_address(attributes: &AttributeContext) -> Result<SocketAddr, SourceError> {
    let address = attributes
        .source
        .as_ref()
        .and_then(|peer| peer.address.as_ref())
        .and_then(|address| address.address.as_ref());
    let Some(Address::SocketAddress(socket)) = address else {
        return Err(SourceError::Missing);
    };
    let ip = client_ip::parse(&socket.address)
        .map_err(|_| SourceError::Invalid(socket.address.clone()))?;
    let port = match socket.port_specifier {
        Some(PortSpecifier::PortValue(port)) => u16::try_from(port).unwrap_or(0),
        _ => 0,
    };
    Ok(SocketAddr::new(ip, port))
}

/// The one place this door maps an unusable source address to a status.
/// Envoy then answers as its `failure_mode_allow` and `status_on_error`
/// say; no decision is made and no usage event recorded.
fn invalid_source(error: SourceError) -> Status {
    Status::invalid_argument(error.to_string())
}

/// The request's headers as Envoy sent them: each line of `header_map`
/// when Envoy encodes raw headers (`encode_raw_headers`), else the
/// `headers` map, whose repeated headers Envoy joined with commas.
fn envoy_headers(http: &HttpRequest) -> HeaderMap {
    match &http.header_map {
        Some(raw) if !raw.headers.is_empty() => header_map(raw.headers.iter().map(|h| {
            let value = if h.raw_value.is_empty() {
                h.value.as_bytes()
            } else {
                &h.raw_value[..]
            };
            (h.key.as_str(), value)
        })),
        _ => header_map(
            http.headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes())),
        ),
    }
}

/// Headers ipgate sets on an allowed request before Envoy sends it on.
const X_IPGATE_KEY_ID: &str = "x-ipgate-key-id";
const X_IPGATE_API: &str = "x-ipgate-api";
const X_REQUEST_ID: &str = "x-request-id";
const X_IPGATE_CLIENT_IP: &str = "x-ipgate-client-ip";

/// `OK`: the request goes upstream with ipgate's headers set (replacing
/// any the client sent) and, when `hide` holds the request's headers, its
/// key headers removed.
fn allowed(outcome: &Outcome, api: &str, hide: Option<&HeaderMap>) -> CheckResponse {
    let mut headers = vec![
        header(X_IPGATE_API, api),
        header(X_REQUEST_ID, &outcome.request_id),
    ];
    let mut headers_to_remove = Vec::new();
    match outcome.key_id {
        Some(id) => headers.push(header(X_IPGATE_KEY_ID, &id.to_string())),
        // Failing open before the first snapshot identifies no key; a
        // client's own header must not pass for one.
        None => headers_to_remove.push(X_IPGATE_KEY_ID.to_owned()),
    }
    if let Some(request_headers) = hide {
        headers_to_remove.extend(
            key_headers(request_headers)
                .iter()
                .map(|name| name.as_str().to_owned()),
        );
    }
    CheckResponse {
        status: Some(rpc::Status {
            code: Code::Ok as i32,
            ..Default::default()
        }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers,
            headers_to_remove,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A denial: the decision's status and exact body, with the diagnosis
/// headers, for Envoy to send to the client.
fn denied(outcome: &Outcome) -> CheckResponse {
    let status = outcome.status;
    CheckResponse {
        status: Some(rpc::Status {
            code: grpc_code(status) as i32,
            message: outcome.error_code().unwrap_or_default().to_owned(),
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                // envoy.type.v3.StatusCode numbers its values by the HTTP
                // status they stand for.
                code: i32::from(status),
            }),
            headers: vec![
                header("content-type", "application/json"),
                header(X_IPGATE_CLIENT_IP, &outcome.client_ip.to_string()),
                header(X_REQUEST_ID, &outcome.request_id),
            ],
            body: outcome.body.unwrap_or_default().to_owned(),
        })),
        ..Default::default()
    }
}

/// The gRPC code Envoy sees for a denial (any but `OK` denies; the HTTP
/// status in the denied response is what the client gets).
fn grpc_code(status: u16) -> Code {
    match status {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        404 => Code::NotFound,
        503 => Code::Unavailable,
        _ => Code::PermissionDenied,
    }
}

/// A header that replaces any of the same name.
fn header(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value: value.to_owned(),
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3::{
        self as core, SocketAddress, address, header_value_option,
    };

    use super::*;

    fn attributes_from(address: Option<address::Address>) -> AttributeContext {
        AttributeContext {
            source: Some(
                envoy_types::pb::envoy::service::auth::v3::attribute_context::Peer {
                    address: Some(core::Address { address }),
                    ..Default::default()
                },
            ),
            ..Default::default()
        }
    }

    fn socket(ip: &str, port: u32) -> Option<address::Address> {
        Some(address::Address::SocketAddress(SocketAddress {
            address: ip.into(),
            port_specifier: Some(PortSpecifier::PortValue(port)),
            ..Default::default()
        }))
    }

    #[test]
    fn the_source_address_is_the_peer() {
        let peer = |a| source_address(&attributes_from(a));
        assert_eq!(
            peer(socket("203.0.113.7", 4711)),
            Ok("203.0.113.7:4711".parse().unwrap())
        );
        assert_eq!(
            peer(socket("::ffff:203.0.113.7", 1)),
            Ok("203.0.113.7:1".parse().unwrap())
        );
        assert_eq!(
            peer(socket("2001:db8::1", 70_000)),
            Ok("[2001:db8::1]:0".parse().unwrap())
        );
        assert_eq!(
            peer(socket("203.0.113.7:80", 1)),
            Err(SourceError::Invalid("203.0.113.7:80".into()))
        );
        assert_eq!(peer(None), Err(SourceError::Missing));
        let pipe = Some(address::Address::Pipe(core::Pipe {
            path: "/run/envoy.sock".into(),
            mode: 0,
        }));
        assert_eq!(peer(pipe), Err(SourceError::Missing));
        assert_eq!(
            source_address(&AttributeContext::default()),
            Err(SourceError::Missing)
        );
    }

    #[test]
    fn raw_headers_keep_their_lines() {
        let mut http = HttpRequest::default();
        http.headers
            .insert("x-forwarded-for".into(), "198.51.100.1,10.0.0.1".into());
        assert_eq!(
            envoy_headers(&http)["x-forwarded-for"],
            "198.51.100.1,10.0.0.1"
        );
        http.header_map = Some(core::HeaderMap {
            headers: vec![
                core::HeaderValue {
                    key: "x-forwarded-for".into(),
                    raw_value: b"198.51.100.1".to_vec(),
                    ..Default::default()
                },
                core::HeaderValue {
                    key: "x-forwarded-for".into(),
                    raw_value: b"10.0.0.1".to_vec(),
                    ..Default::default()
                },
            ],
        });
        let headers = envoy_headers(&http);
        let lines: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
        assert_eq!(lines, ["198.51.100.1", "10.0.0.1"]);
    }

    #[test]
    // Reading the deprecated field is the point: it must stay unset, as
    // Envoy does not take it together with `append_action`.
    #[allow(deprecated)]
    fn headers_overwrite_what_the_client_sent() {
        let h = header(X_IPGATE_API, "orders");
        assert_eq!(
            h.append_action,
            header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32
        );
        assert!(h.append.is_none(), "the deprecated field stays unset");
    }

    #[test]
    fn a_request_without_a_path_is_decided_on_its_target_as_sent() {
        let http = |method: &str, path: &str| HttpRequest {
            method: method.into(),
            path: path.into(),
            host: "api.example.com:443".into(),
            ..Default::default()
        };
        assert_eq!(envoy_path(&http("GET", "/orders/7?x=1")), "/orders/7");
        // CONNECT: no path; its authority is refused, never read as `/`.
        let connect = http("CONNECT", "");
        assert_eq!(envoy_path(&connect), "api.example.com:443");
        assert!(ipgate_shared::path::normalize(envoy_path(&connect)).is_err());
    }

    #[test]
    fn denials_map_to_grpc_codes() {
        assert_eq!(grpc_code(401), Code::Unauthenticated);
        assert_eq!(grpc_code(403), Code::PermissionDenied);
        assert_eq!(grpc_code(404), Code::NotFound);
        assert_eq!(grpc_code(400), Code::InvalidArgument);
        assert_eq!(grpc_code(503), Code::Unavailable);
    }
}
