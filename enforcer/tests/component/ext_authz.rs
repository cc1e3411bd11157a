//! The ext_authz door, driven as Envoy drives it: a tonic client built from
//! `envoy-types` sends `envoy.service.auth.v3.Authorization/Check` to the
//! real enforcer's gRPC port, synced to the [`Doors`] world.

use std::collections::HashMap;

use envoy_types::pb::{
    envoy::{
        config::core::v3::{
            Address, HeaderValueOption, SocketAddress, address, socket_address::PortSpecifier,
        },
        service::auth::v3::{
            AttributeContext, CheckRequest, CheckResponse, attribute_context,
            authorization_client::AuthorizationClient, check_response::HttpResponse,
        },
    },
    google::rpc,
};
use ipgate_enforcer::Running;
use ipgate_shared::proto::sync::v1 as wire;
use prost::Message;
use tonic::{Code, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{doors_world::*, support::*};

const SERVICE: &str = "envoy.service.auth.v3.Authorization";

/// One request as Envoy describes it.
#[derive(Clone)]
struct Ask<'a> {
    /// The downstream address Envoy reports.
    source: &'a str,
    /// The route's `ipgate_api` context extension.
    api: Option<&'a str>,
    host: &'a str,
    method: &'a str,
    path: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    /// Envoy's request id.
    id: &'a str,
}

impl<'a> Ask<'a> {
    /// `GET /orders/7?page=2` to `orders` from `source`, with the key in
    /// `x-api-key`.
    fn new(source: &'a str, key: &'a str, id: &'a str) -> Self {
        Ask {
            source,
            api: Some("orders"),
            host: "api.test",
            method: "GET",
            path: "/orders/7?page=2",
            headers: vec![("x-api-key", key)],
            id,
        }
    }

    fn request(&self) -> CheckRequest {
        let mut headers: HashMap<String, String> = self
            .headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        // Envoy passes the pseudo-headers too.
        headers.insert(":path".into(), self.path.into());
        headers.insert(":method".into(), self.method.into());
        headers.insert(":authority".into(), self.host.into());
        let context_extensions = self
            .api
            .map(|api| HashMap::from([("ipgate_api".to_owned(), api.to_owned())]))
            .unwrap_or_default();
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(attribute_context::Peer {
                    address: Some(Address {
                        address: Some(address::Address::SocketAddress(SocketAddress {
                            address: self.source.into(),
                            port_specifier: Some(PortSpecifier::PortValue(40_000)),
                            ..Default::default()
                        })),
                    }),
                    ..Default::default()
                }),
                request: Some(attribute_context::Request {
                    http: Some(attribute_context::HttpRequest {
                        id: self.id.into(),
                        method: self.method.into(),
                        headers,
                        path: self.path.into(),
                        host: self.host.into(),
                        scheme: "https".into(),
                        protocol: "HTTP/1.1".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                context_extensions,
                ..Default::default()
            }),
        }
    }
}

/// What Envoy is told to do.
#[derive(Debug)]
enum Verdict {
    Ok {
        headers: HashMap<String, String>,
        remove: Vec<String>,
    },
    Denied {
        status: i32,
        headers: HashMap<String, String>,
        body: String,
    },
}

fn headers_of(options: &[HeaderValueOption]) -> HashMap<String, String> {
    options
        .iter()
        .filter_map(|o| o.header.as_ref())
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect()
}

fn verdict(response: CheckResponse) -> (i32, Verdict) {
    let code = response.status.map_or(-1, |s: rpc::Status| s.code);
    let verdict = match response.http_response.expect("an HTTP response") {
        HttpResponse::OkResponse(ok) => Verdict::Ok {
            headers: headers_of(&ok.headers),
            remove: ok.headers_to_remove,
        },
        HttpResponse::DeniedResponse(denied) => Verdict::Denied {
            status: denied.status.map_or(0, |s| s.code),
            headers: headers_of(&denied.headers),
            body: denied.body,
        },
        other => panic!("unexpected {other:?}"),
    };
    (code, verdict)
}

async fn client(running: &Running) -> AuthorizationClient<Channel> {
    AuthorizationClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .expect("connect to the gRPC port")
}

async fn ask(running: &Running, ask: &Ask<'_>) -> (i32, Verdict) {
    let response = client(running)
        .await
        .check(ask.request())
        .await
        .expect("Check answers")
        .into_inner();
    verdict(response)
}

/// Asserts a denial: the gRPC code, HTTP status, exact body and headers.
fn assert_denied(
    (code, verdict): (i32, Verdict),
    want_code: Code,
    want_status: i32,
    want_body: &str,
    client_ip: &str,
) -> String {
    let Verdict::Denied {
        status,
        headers,
        body,
    } = verdict
    else {
        panic!("expected a denial, got {verdict:?}");
    };
    assert_eq!(code, want_code as i32);
    assert_eq!(status, want_status);
    assert_eq!(body, want_body);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-ipgate-client-ip"], client_ip);
    headers["x-request-id"].clone()
}

fn door(event: &wire::UsageEvent) -> wire::Door {
    wire::Door::try_from(event.door).unwrap()
}

#[tokio::test]
async fn allowed_requests_go_upstream_with_ipgate_headers() {
    let mut fake = FakeControlPlane::start().await;
    // Credentials are hidden by default; that has a test of its own.
    let (running, _session, doors) = synced_doors(&mut fake, &["--hide-credentials=false"]).await;

    let (code, verdict) = ask(
        &running,
        &Ask::new(OFFICE_IP, &doors.office.secret, "envoy-req-1"),
    )
    .await;
    assert_eq!(code, Code::Ok as i32);
    let Verdict::Ok { headers, remove } = verdict else {
        panic!("expected OK, got {verdict:?}");
    };
    assert_eq!(headers["x-ipgate-key-id"], doors.office.id.to_string());
    assert_eq!(headers["x-ipgate-api"], "orders");
    // Envoy's request id is the decision's, in the log and upstream alike.
    assert_eq!(headers["x-request-id"], "envoy-req-1");
    assert!(
        remove.is_empty(),
        "nothing hidden with --hide-credentials=false: {remove:?}"
    );

    let allowed = event(&fake, "envoy-req-1").await;
    assert_eq!(door(&allowed), wire::Door::ExtAuthz);
    assert_eq!(
        (
            allowed.api.as_str(),
            allowed.method.as_str(),
            allowed.path.as_str()
        ),
        ("orders", "GET", "/orders/7"),
        "the path without its query string"
    );
    assert_eq!(
        (allowed.client_ip.as_str(), allowed.reason.as_str()),
        (OFFICE_IP, "ALLOWED")
    );
    assert_eq!(allowed.matched_label, "office");
    assert_eq!(allowed.api_key_id, doors.office.id.to_string());

    // The x-request-id Envoy made wins over its stream's id.
    let mut with_header = Ask::new(OFFICE_IP, &doors.office.secret, "envoy-stream-7");
    with_header
        .headers
        .push(("x-request-id", "envoy-made-this-id"));
    let (_, verdict) = ask(&running, &with_header).await;
    let Verdict::Ok { headers, .. } = verdict else {
        panic!("expected OK, got {verdict:?}");
    };
    assert_eq!(headers["x-request-id"], "envoy-made-this-id");
    event(&fake, "envoy-made-this-id").await;

    // Bearer works as well, and a request without an id gets a fresh one.
    let bearer = format!("Bearer {}", doors.office.secret);
    let mut with_bearer = Ask::new(OFFICE_IP, "", "");
    with_bearer.headers = vec![("authorization", &bearer)];
    let (_, verdict) = ask(&running, &with_bearer).await;
    let Verdict::Ok { headers, .. } = verdict else {
        panic!("expected OK, got {verdict:?}");
    };
    assert!(uuid::Uuid::parse_str(&headers["x-request-id"]).is_ok());
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn denials_carry_the_exact_body_and_the_diagnosis_headers() {
    let mut fake = FakeControlPlane::start().await;
    let (running, _session, doors) = synced_doors(&mut fake, &[]).await;

    // Key-level: the office key from a stranger's address.
    let id = assert_denied(
        ask(
            &running,
            &Ask::new(STRANGER_IP, &doors.office.secret, "envoy-key-403"),
        )
        .await,
        Code::PermissionDenied,
        403,
        KEY_BODY,
        STRANGER_IP,
    );
    assert_eq!(id, "envoy-key-403");
    let denied = event(&fake, "envoy-key-403").await;
    assert_eq!(
        (denied.reason.as_str(), denied.status_code),
        ("IP_NOT_ALLOWED_KEY", 403)
    );
    assert_eq!(door(&denied), wire::Door::ExtAuthz);

    // API-level: payments is for the office network, whatever the key.
    let mut payments = Ask::new(STRANGER_IP, &doors.payer.secret, "envoy-api-403");
    payments.api = Some("payments");
    assert_denied(
        ask(&running, &payments).await,
        Code::PermissionDenied,
        403,
        API_BODY,
        STRANGER_IP,
    );
    payments.source = OFFICE_IP;
    payments.id = "envoy-api-ok";
    assert!(matches!(
        ask(&running, &payments).await.1,
        Verdict::Ok { .. }
    ));

    // No key, a wrong key, two different keys: 401, never 403.
    let bearer = format!("Bearer {}", doors.admin.secret);
    for headers in [
        vec![],
        vec![("x-api-key", "ipg_live_not-a-key")],
        vec![
            ("x-api-key", doors.office.secret.as_str()),
            ("authorization", bearer.as_str()),
        ],
    ] {
        let mut keyless = Ask::new(STRANGER_IP, "", "envoy-401");
        keyless.headers = headers;
        assert_denied(
            ask(&running, &keyless).await,
            Code::Unauthenticated,
            401,
            INVALID_KEY_BODY,
            STRANGER_IP,
        );
    }
    // The query string is never read for a key.
    let mut in_query = Ask::new(OFFICE_IP, "", "envoy-query-key");
    in_query.headers = vec![];
    let path = format!("/orders?api_key={}", doors.office.secret);
    in_query.path = &path;
    assert_denied(
        ask(&running, &in_query).await,
        Code::Unauthenticated,
        401,
        INVALID_KEY_BODY,
        OFFICE_IP,
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn scopes_are_decided_on_the_normal_path() {
    let mut fake = FakeControlPlane::start().await;
    let (running, _session, doors) = synced_doors(&mut fake, &[]).await;

    for path in [
        "/admin",
        "/hello/../admin",
        "/%61dmin?x=1",
        "//admin",
        "/ADMIN/users",
    ] {
        let mut spelled = Ask::new(OFFICE_IP, &doors.office.secret, "");
        spelled.path = path;
        assert_denied(
            ask(&running, &spelled).await,
            Code::PermissionDenied,
            403,
            SCOPE_BODY,
            OFFICE_IP,
        );
        let mut scoped = Ask::new(OFFICE_IP, &doors.admin.secret, "");
        scoped.path = path;
        assert!(
            matches!(ask(&running, &scoped).await.1, Verdict::Ok { .. }),
            "{path} with the scope"
        );
    }
    let mut ambiguous = Ask::new(OFFICE_IP, &doors.admin.secret, "envoy-bad-path");
    ambiguous.path = "/hello/..%2fadmin";
    assert_denied(
        ask(&running, &ambiguous).await,
        Code::InvalidArgument,
        400,
        BAD_PATH_BODY,
        OFFICE_IP,
    );
    let refused = event(&fake, "envoy-bad-path").await;
    assert_eq!(
        (refused.reason.as_str(), refused.path.as_str()),
        ("BAD_PATH", "/hello/..%2fadmin")
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_api_comes_from_the_route_or_the_host() {
    let mut fake = FakeControlPlane::start().await;
    let (running, _session, doors) = synced_doors(
        &mut fake,
        &["--api-for-host", "api.test=orders,pay.test:8443=payments"],
    )
    .await;

    // Unknown to the enforcer.
    let mut unknown = Ask::new(OFFICE_IP, &doors.office.secret, "envoy-unknown");
    unknown.api = Some("nope");
    assert_denied(
        ask(&running, &unknown).await,
        Code::NotFound,
        404,
        NOT_FOUND_BODY,
        OFFICE_IP,
    );

    // No context extension: the host decides, port included when mapped so.
    let mut by_host = Ask::new(OFFICE_IP, &doors.office.secret, "envoy-by-host");
    by_host.api = None;
    by_host.host = "API.test:8080";
    let (_, verdict) = ask(&running, &by_host).await;
    let Verdict::Ok { headers, .. } = verdict else {
        panic!("expected OK, got {verdict:?}");
    };
    assert_eq!(headers["x-ipgate-api"], "orders");
    assert_eq!(event(&fake, "envoy-by-host").await.api, "orders");

    let mut payments = Ask::new(STRANGER_IP, &doors.payer.secret, "");
    payments.api = None;
    payments.host = "pay.test:8443";
    assert_denied(
        ask(&running, &payments).await,
        Code::PermissionDenied,
        403,
        API_BODY,
        STRANGER_IP,
    );
    // The context extension wins over the host.
    payments.api = Some("orders");
    payments.headers = vec![("x-api-key", &doors.admin.secret)];
    assert!(matches!(
        ask(&running, &payments).await.1,
        Verdict::Ok { .. }
    ));

    // Neither names an API: decided as unknown, and logged.
    let mut nameless = Ask::new(OFFICE_IP, &doors.office.secret, "envoy-nameless");
    nameless.api = None;
    nameless.host = "pay.test";
    assert_denied(
        ask(&running, &nameless).await,
        Code::NotFound,
        404,
        NOT_FOUND_BODY,
        OFFICE_IP,
    );
    let logged = event(&fake, "envoy-nameless").await;
    assert_eq!(
        (logged.api.as_str(), logged.reason.as_str()),
        ("", "API_NOT_FOUND")
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_client_is_the_source_address_or_whom_a_trusted_proxy_names() {
    let mut fake = FakeControlPlane::start().await;
    let (running, _session, doors) =
        synced_doors(&mut fake, &["--trusted-proxies", "10.0.0.0/8"]).await;

    // Envoy's peer is a trusted proxy: its X-Forwarded-For names the client
    // (a spoofed office address on the left is never read).
    let mut behind = Ask::new("10.1.2.3", &doors.office.secret, "");
    behind
        .headers
        .push(("x-forwarded-for", "203.0.113.99, 198.51.100.1, 203.0.113.7"));
    assert!(matches!(ask(&running, &behind).await.1, Verdict::Ok { .. }));
    behind.headers[1] = ("x-forwarded-for", "203.0.113.9, 198.51.100.1");
    assert_denied(
        ask(&running, &behind).await,
        Code::PermissionDenied,
        403,
        KEY_BODY,
        "198.51.100.1",
    );

    // From any other source the same header is ignored.
    let mut direct = Ask::new(STRANGER_IP, &doors.office.secret, "");
    direct.headers.push(("x-forwarded-for", OFFICE_IP));
    assert_denied(
        ask(&running, &direct).await,
        Code::PermissionDenied,
        403,
        KEY_BODY,
        STRANGER_IP,
    );
    // An IPv4-mapped source is its IPv4 address.
    let mapped = Ask::new("::ffff:203.0.113.7", &doors.office.secret, "envoy-mapped");
    assert!(matches!(ask(&running, &mapped).await.1, Verdict::Ok { .. }));
    assert_eq!(event(&fake, "envoy-mapped").await.client_ip, OFFICE_IP);

    // No usable source address: an error for Envoy, not a decision.
    let mut request = Ask::new(OFFICE_IP, &doors.office.secret, "envoy-no-source").request();
    request.attributes.as_mut().unwrap().source = None;
    let status = client(&running).await.check(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("source"), "{}", status.message());
    let bad = Ask::new("203.0.113.7:80", &doors.office.secret, "envoy-bad-source");
    let status = client(&running)
        .await
        .check(bad.request())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !fake
            .events()
            .iter()
            .any(|e| e.request_id.starts_with("envoy-no-source")
                || e.request_id == "envoy-bad-source"),
        "no decision, no event"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn hidden_credentials_are_removed_before_the_upstream() {
    let mut fake = FakeControlPlane::start().await;
    // The default: no flag needed.
    let (running, _session, doors) = synced_doors(&mut fake, &[]).await;

    let bearer = format!("Bearer {}", doors.office.secret);
    let mut both = Ask::new(OFFICE_IP, &doors.office.secret, "");
    both.headers.push(("authorization", &bearer));
    let (_, verdict) = ask(&running, &both).await;
    let Verdict::Ok { mut remove, .. } = verdict else {
        panic!("expected OK, got {verdict:?}");
    };
    remove.sort();
    assert_eq!(remove, ["authorization", "x-api-key"]);

    // Basic credentials are the upstream's: kept.
    let mut basic = Ask::new(OFFICE_IP, &doors.office.secret, "");
    basic
        .headers
        .push(("authorization", "Basic dXNlcjpwYXNzd29yZA=="));
    let (_, verdict) = ask(&running, &basic).await;
    let Verdict::Ok { remove, .. } = verdict else {
        panic!("expected OK, got {verdict:?}");
    };
    assert_eq!(remove, ["x-api-key"]);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn failing_open_identifies_no_key_so_a_clients_key_id_header_is_removed() {
    let mut fake = FakeControlPlane::start().await;
    let args = ["--fail-open-until-synced", "--hide-credentials=false"];
    let running = ipgate_enforcer::start(config(fake.addr, &args))
        .await
        .unwrap();
    let _session = fake.next_session().await;
    let mut forged = Ask::new(OFFICE_IP, "anything", "");
    forged.headers.push(("x-ipgate-key-id", "forged"));
    let (_, verdict) = ask(&running, &forged).await;
    let Verdict::Ok { headers, remove } = verdict else {
        panic!("expected OK, got {verdict:?}");
    };
    assert!(!headers.contains_key("x-ipgate-key-id"));
    assert_eq!(remove, ["x-ipgate-key-id"]);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn with_a_door_token_envoy_must_present_it() {
    let token = "door-token-for-ext-authz-tests";
    let mut fake = FakeControlPlane::start().await;
    let (running, _session, doors) = synced_doors(&mut fake, &["--check-token", token]).await;
    let request = |authorization: Option<&str>, id: &str| {
        let mut request =
            tonic::Request::new(Ask::new(OFFICE_IP, &doors.office.secret, id).request());
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        request
    };
    for (authorization, id) in [
        (None, "ext-no-token"),
        (Some("Bearer wrong-token-wrong-token"), "ext-wrong-token"),
        (Some(token), "ext-no-bearer"),
    ] {
        let status = client(&running)
            .await
            .check(request(authorization, id))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{id}");
    }
    let allowed = client(&running)
        .await
        .check(request(Some(&format!("Bearer {token}")), "ext-with-token"))
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(verdict(allowed).1, Verdict::Ok { .. }));
    event(&fake, "ext-with-token").await;
    assert!(
        !fake
            .events()
            .iter()
            .any(|e| e.request_id.starts_with("ext-no") || e.request_id == "ext-wrong-token"),
        "a refused caller leaves no event"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_says_serving_once_synced_and_reflection_lists_the_service() {
    let mut fake = FakeControlPlane::start().await;
    let running = ipgate_enforcer::start(config(fake.addr, &[]))
        .await
        .unwrap();
    let channel = Channel::from_shared(format!("http://{}", running.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = HealthClient::new(channel.clone());
    let status = || {
        let mut health = health.clone();
        async move {
            let request = HealthCheckRequest {
                service: SERVICE.into(),
            };
            health.check(request).await.unwrap().into_inner().status()
        }
    };
    assert_eq!(status().await, ServingStatus::NotServing);
    let mut session = fake.next_session().await;
    session.send(Doors::new().snapshot());
    assert_eq!(session.expect_ack().await, 1);
    eventually("ext_authz to be ready", || async {
        status().await == ServingStatus::Serving
    })
    .await;

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(channel);
    let asks = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol(SERVICE.into()),
    ]
    .map(|message| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    });
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter(asks))
        .await
        .unwrap()
        .into_inner();
    let listed = answers.message().await.unwrap().unwrap().message_response;
    let Some(MessageResponse::ListServicesResponse(services)) = listed else {
        panic!("expected a service list, got {listed:?}");
    };
    assert!(services.service.iter().any(|s| s.name == SERVICE));
    let file = answers.message().await.unwrap().unwrap().message_response;
    let Some(MessageResponse::FileDescriptorResponse(files)) = file else {
        panic!("expected the service's file, got {file:?}");
    };
    let names: Vec<String> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| {
            prost_types::FileDescriptorProto::decode(&bytes[..])
                .unwrap()
                .name()
                .to_owned()
        })
        .collect();
    assert!(
        names.contains(&"envoy/service/auth/v3/external_auth.proto".to_owned()),
        "{names:?}"
    );
    running.shutdown().await.unwrap();
}

/// The vendored protos (proto/vendor/) describe what `envoy-types` encodes:
/// every field of a filled-in request and of each answer decodes as a known
/// field through the descriptors reflection serves.
#[test]
fn reflection_describes_what_envoy_types_encodes() {
    use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage, Value};

    let pool = DescriptorPool::decode(ipgate_shared::proto::ENFORCER_DESCRIPTOR_SET)
        .expect("the enforcer's descriptor set decodes");
    fn no_unknown(message: &DynamicMessage, path: &str) {
        assert_eq!(
            message.unknown_fields().count(),
            0,
            "{path} ({}) has fields the descriptors lack",
            message.descriptor().full_name()
        );
        for (field, value) in message.fields() {
            let path = format!("{path}.{}", field.name());
            let mut check = |value: &Value| {
                if let Value::Message(inner) = value {
                    no_unknown(inner, &path);
                }
            };
            match value {
                Value::List(items) => items.iter().for_each(&mut check),
                Value::Map(entries) => entries.values().for_each(&mut check),
                other => check(other),
            }
        }
    }
    let check = |name: &str, bytes: Vec<u8>| {
        let descriptor = pool
            .get_message_by_name(name)
            .unwrap_or_else(|| panic!("{name} is described"));
        let message = DynamicMessage::decode(descriptor, &bytes[..]).expect("decodes");
        no_unknown(&message, name);
    };

    let mut request = Ask::new("203.0.113.7", "k", "id").request();
    let http = request
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .unwrap();
    http.header_map = Some(envoy_types::pb::envoy::config::core::v3::HeaderMap {
        headers: vec![envoy_types::pb::envoy::config::core::v3::HeaderValue {
            key: "x".into(),
            raw_value: b"y".to_vec(),
            ..Default::default()
        }],
    });
    http.query = "page=2".into();
    http.size = 10;
    check(
        "envoy.service.auth.v3.CheckRequest",
        request.encode_to_vec(),
    );

    // And the two answers the door sends.
    let ok = CheckResponse {
        status: Some(rpc::Status {
            code: 0,
            ..Default::default()
        }),
        http_response: Some(HttpResponse::OkResponse(
            envoy_types::pb::envoy::service::auth::v3::OkHttpResponse {
                headers: vec![HeaderValueOption {
                    header: Some(envoy_types::pb::envoy::config::core::v3::HeaderValue {
                        key: "x-ipgate-api".into(),
                        value: "orders".into(),
                        ..Default::default()
                    }),
                    append_action: 2,
                    ..Default::default()
                }],
                headers_to_remove: vec!["x-api-key".into()],
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    check("envoy.service.auth.v3.CheckResponse", ok.encode_to_vec());
    let denied = CheckResponse {
        status: Some(rpc::Status {
            code: 7,
            message: "IP_NOT_ALLOWED".into(),
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(
            envoy_types::pb::envoy::service::auth::v3::DeniedHttpResponse {
                status: Some(envoy_types::pb::envoy::r#type::v3::HttpStatus { code: 403 }),
                body: KEY_BODY.into(),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    check(
        "envoy.service.auth.v3.CheckResponse",
        denied.encode_to_vec(),
    );
}
