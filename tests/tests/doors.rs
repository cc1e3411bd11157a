//! Every door of the real binary decides, and the usage log names the door:
//! Envoy's ext_authz on the enforcer's gRPC port (a tonic client built from
//! `envoy-types`, and grpcurl through reflection) and the HTTP auth endpoint
//! for nginx and Traefik (asked as they ask it), both in `ipgate dev` and in
//! an enforcer started alone. The real Envoy, nginx and Traefik are not
//! started here.

use std::{collections::HashMap, net::SocketAddr, process::Command};

use envoy_types::pb::envoy::{
    config::core::v3::{Address, SocketAddress, address, socket_address::PortSpecifier},
    service::auth::v3::{
        AttributeContext, CheckRequest, attribute_context,
        authorization_client::AuthorizationClient, check_response::HttpResponse,
    },
};
use ipgate_shared::proto::admin::v1::{CreateApiKeyRequest, QueryUsageLogsRequest, UsageLogEntry};
use ipgate_tests::{
    Backend, ControlPlane, Enforcer,
    admin::{entries, ip},
    eventually, http,
    process::{AdminClient, DevMode},
    tools, upstream,
    world::PROPAGATION,
};

const KEY_BODY: &str = r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Request IP address is not in the API key's allowlist"}}"#;
const OFFICE: &str = "203.0.113.7";
const STRANGER: &str = "198.51.100.1";

/// A key for `api` that may call from 203.0.113.0/24 only: (secret, id).
async fn office_key(admin: &mut AdminClient, api: &str) -> (String, String) {
    let created = admin
        .create_api_key(CreateApiKeyRequest {
            api: api.into(),
            name: "office".into(),
            allowlist: entries(&["203.0.113.0/24"]),
            ..Default::default()
        })
        .await
        .expect("create key")
        .into_inner();
    (created.secret, created.key.expect("key").id)
}

/// `GET /orders/7?page=2` to `api` as Envoy describes it, from `source`,
/// with Envoy's request id `id`.
fn envoy_request(api: &str, source: &str, key: &str, id: &str) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(attribute_context::Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: source.into(),
                        port_specifier: Some(PortSpecifier::PortValue(50_000)),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    id: id.into(),
                    method: "GET".into(),
                    path: "/orders/7?page=2".into(),
                    host: "api.test".into(),
                    headers: HashMap::from([("x-api-key".to_owned(), key.to_owned())]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: HashMap::from([("ipgate_api".to_owned(), api.to_owned())]),
            ..Default::default()
        }),
    }
}

/// Asks ext_authz at `grpc` until the enforcer has synced; the answer.
async fn ext_authz(grpc: SocketAddr, request: CheckRequest) -> HttpResponse {
    let (answer, _) = eventually(PROPAGATION, "ext_authz to decide with the key", || {
        let request = request.clone();
        async move {
            let mut client = AuthorizationClient::connect(format!("http://{grpc}"))
                .await
                .ok()?;
            let answer = client.check(request).await.ok()?.into_inner();
            let http = answer.http_response?;
            // 503 ENFORCER_NOT_READY, or 401 while the key is on its way.
            match &http {
                HttpResponse::DeniedResponse(d)
                    if d.status
                        .as_ref()
                        .is_some_and(|s| s.code == 503 || s.code == 401) =>
                {
                    None
                }
                _ => Some(http),
            }
        }
    })
    .await;
    answer
}

/// An nginx-style auth request for `api` at `auth`, whose client is `client`
/// (in X-Forwarded-For, from the trusted 127.0.0.1).
async fn nginx(auth: SocketAddr, api: &str, key: &str, client: &str) -> http::Response {
    http::get(
        ip("127.0.0.1"),
        auth,
        &format!("/v1/check/{api}"),
        &[
            ("x-original-method", "GET"),
            ("x-original-uri", "/orders/7?page=2"),
            ("x-api-key", key),
            ("x-forwarded-for", client),
        ],
    )
    .await
}

/// The usage-log entries of `door` once `request_id` is among them.
async fn logged(admin: &AdminClient, door: &str, request_id: &str) -> UsageLogEntry {
    let what = format!("request {request_id} in the {door} door's log");
    eventually(PROPAGATION, &what, || {
        let mut admin = admin.clone();
        async move {
            let page = admin
                .query_usage_logs(QueryUsageLogsRequest {
                    door: door.into(),
                    page_size: 1000,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            page.entries
                .into_iter()
                .find(|e| e.request_id == request_id)
        }
    })
    .await
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipgate_dev_serves_ext_authz_and_the_auth_endpoint() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let dev = DevMode::start_with(dir.path(), &["--trusted-proxies", "127.0.0.1"], &[]);
    dev.wait_synced().await;
    let mut admin = dev.admin().await;
    let (key, key_id) = office_key(&mut admin, "demo").await;

    // ext_authz, on the gRPC port beside Check.
    let allowed = ext_authz(dev.check, envoy_request("demo", OFFICE, &key, "dev-ext-ok")).await;
    let HttpResponse::OkResponse(ok) = allowed else {
        panic!("expected OK, got {allowed:?}");
    };
    let set: HashMap<_, _> = ok
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| (h.key.as_str(), h.value.as_str()))
        .collect();
    assert_eq!(set.get("x-ipgate-key-id"), Some(&key_id.as_str()));
    assert_eq!(set.get("x-ipgate-api"), Some(&"demo"));
    let denied = ext_authz(
        dev.check,
        envoy_request("demo", STRANGER, &key, "dev-ext-denied"),
    )
    .await;
    let HttpResponse::DeniedResponse(denied) = denied else {
        panic!("expected a denial, got {denied:?}");
    };
    assert_eq!(denied.status.map(|s| s.code), Some(403));
    assert_eq!(denied.body, KEY_BODY);

    // The auth endpoint on its own port.
    let allowed = nginx(dev.auth, "demo", &key, OFFICE).await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(allowed.header("x-ipgate-key-id"), key_id);
    let denied = nginx(dev.auth, "demo", &key, STRANGER).await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.body, KEY_BODY);
    assert_eq!(denied.header("x-ipgate-error"), KEY_BODY);
    assert_eq!(denied.header("x-ipgate-client-ip"), STRANGER);

    // The usage log says which door each came through.
    let entry = logged(&admin, "ext_authz", "dev-ext-denied").await;
    assert_eq!(
        (
            entry.reason.as_str(),
            entry.client_ip.as_str(),
            entry.path.as_str()
        ),
        ("IP_NOT_ALLOWED_KEY", STRANGER, "/orders/7")
    );
    logged(&admin, "ext_authz", "dev-ext-ok").await;
    let entry = logged(&admin, "auth_request", denied.header("x-request-id")).await;
    assert_eq!(
        (
            entry.reason.as_str(),
            entry.client_ip.as_str(),
            entry.status_code
        ),
        ("IP_NOT_ALLOWED_KEY", STRANGER, 403)
    );
    logged(&admin, "auth_request", allowed.header("x-request-id")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enforcer_alone_serves_both_doors_and_grpcurl_asks_ext_authz() {
    let backend = Backend::sqlite();
    let cp = ControlPlane::start(&backend);
    let mut admin = cp.admin().await;
    admin
        .create_api(ipgate_shared::proto::admin::v1::CreateApiRequest {
            slug: "orders".into(),
            name: "Orders".into(),
            ..Default::default()
        })
        .await
        .expect("create API");
    let (key, _) = office_key(&mut admin, "orders").await;
    let enforcer = Enforcer::start_with(
        &cp,
        "orders",
        upstream::start().await,
        &["--auth-listen", "127.0.0.1:0", "--hide-credentials"],
        // The proxy that asks the auth endpoint is on this machine.
        &[("IPGATE_TRUSTED_PROXIES", "127.0.0.1")],
    );
    let auth = enforcer.auth_addr.expect("the auth endpoint listens");

    // Traefik's style: the original request in X-Forwarded-*.
    let (answer, _) = eventually(PROPAGATION, "the auth endpoint to let the key in", || {
        let key = key.clone();
        async move {
            let answer = http::get(
                ip("127.0.0.1"),
                auth,
                "/v1/check/orders",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-uri", "/orders"),
                    ("x-forwarded-host", "api.test"),
                    ("authorization", &format!("Bearer {key}")),
                    ("x-forwarded-for", OFFICE),
                ],
            )
            .await;
            (answer.status == 200).then_some(answer)
        }
    })
    .await;
    assert_eq!(answer.header("x-ipgate-api"), "orders");

    // --hide-credentials: Envoy is told to drop the key header.
    let allowed = ext_authz(
        enforcer.grpc_addr,
        envoy_request("orders", OFFICE, &key, "alone-ext-ok"),
    )
    .await;
    let HttpResponse::OkResponse(ok) = allowed else {
        panic!("expected OK, got {allowed:?}");
    };
    assert_eq!(ok.headers_to_remove, ["x-api-key"]);

    // grpcurl builds the request from JSON through reflection, as an
    // operator would to try the door.
    if !tools::available(&["grpcurl"]) {
        return;
    }
    let request = serde_json::json!({
        "attributes": {
            "source": {"address": {"socketAddress": {"address": STRANGER, "portValue": 4711}}},
            "contextExtensions": {"ipgate_api": "orders"},
            "request": {"http": {
                "id": "grpcurl-ext",
                "method": "GET",
                "path": "/orders/7",
                "headers": {"x-api-key": key},
            }},
        }
    });
    let grpc = enforcer.grpc_addr.to_string();
    let out = Command::new("grpcurl")
        .args(["-plaintext", "-d", &request.to_string(), &grpc])
        .arg("envoy.service.auth.v3.Authorization/Check")
        .output()
        .expect("run grpcurl");
    assert!(out.status.success(), "{out:?}");
    let answer: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("grpcurl prints JSON");
    let denied = &answer["deniedResponse"];
    assert_eq!(denied["status"]["code"], "Forbidden", "{answer}");
    assert_eq!(denied["body"], KEY_BODY, "{answer}");
    assert_eq!(answer["status"]["code"], 7, "PERMISSION_DENIED: {answer}");
    let health = Command::new("grpcurl")
        .args([
            "-plaintext",
            "-d",
            r#"{"service": "envoy.service.auth.v3.Authorization"}"#,
        ])
        .args([&grpc, "grpc.health.v1.Health/Check"])
        .output()
        .expect("run grpcurl");
    assert!(
        String::from_utf8_lossy(&health.stdout).contains("\"SERVING\""),
        "{health:?}"
    );
    let entry = logged(&admin, "ext_authz", "grpcurl-ext").await;
    assert_eq!(entry.client_ip, STRANGER);
}
