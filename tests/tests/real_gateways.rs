//! The three gateway doors behind the real gateways, each started from the
//! configuration shipped in `deploy/` with only its addresses changed:
//! - Envoy (`deploy/envoy/ipgate-ext-authz.yaml`) asking ext_authz on the
//!   enforcer's gRPC port;
//! - nginx (`deploy/nginx/ipgate-auth.conf`) and Traefik
//!   (`deploy/traefik/traefik.yml` and `ipgate-forward-auth.yml`) asking the
//!   auth endpoint (`--auth-listen`), from 127.0.0.1, listed in the
//!   enforcer's `--trusted-proxies`.
//!
//! Callers come from 127.0.0.2 (on the key's list), 127.0.0.3 (on the API's
//! list, not the key's) and 127.0.0.4 (on neither); the gateways reach the
//! enforcer from 127.0.0.1, which is on no list, so every decision shown is
//! on the caller. Each gateway must let the allowed caller through to the
//! service with ipgate's headers, answer every refusal with ipgate's status
//! and exact body (docs/decisions.md), refuse every spelling of a scoped
//! route, and leave a usage-log row with the caller's address and its door.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming};
use ipgate_shared::proto::admin::v1::{
    CreateApiKeyRequest, CreateApiRequest, RouteRule, SetApiAllowlistRequest,
};
use ipgate_tests::{
    Backend, ControlPlane, Enforcer, World,
    admin::{ack, entries, ip},
    docs::{read, replace_once},
    eventually, http,
    peers::Peer,
    tools, upstream,
    world::PROPAGATION,
};

/// The API the shipped configurations name.
const API: &str = "demo";

// docs/decisions.md, "Answers and their exact bodies".
const KEY_BODY: &str = r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Request IP address is not in the API key's allowlist"}}"#;
const API_BODY: &str = r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Request IP address is not in the API's allowlist"}}"#;
const INVALID_KEY_BODY: &str = r#"{"error":{"code":"INVALID_API_KEY","message":"API key is missing, invalid, revoked or expired"}}"#;
const SCOPE_BODY: &str = r#"{"error":{"code":"INSUFFICIENT_SCOPE","message":"API key does not have the scope this route requires"}}"#;
const BAD_PATH_BODY: &str = r#"{"error":{"code":"BAD_PATH","message":"The request path is ambiguous: it holds an encoded slash or backslash, a control character, invalid percent-encoding or dot segments above the root"}}"#;

/// On the key's list (and the API's).
const ALLOWED: &str = "127.0.0.2";
/// On the API's list, not on the key's.
const NOT_ON_KEY: &str = "127.0.0.3";
/// On no list.
const NOT_ON_API: &str = "127.0.0.4";

/// The service behind the gateways: 200 with, as JSON, what reached it.
async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let body = serde_json::json!({
        "upstream": true,
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "x-request-id": header("x-request-id"),
        "x-ipgate-key-id": header("x-ipgate-key-id"),
        "x-ipgate-api": header("x-ipgate-api"),
        "x-api-key": header("x-api-key"),
    });
    Ok(Response::new(Full::new(Bytes::from(body.to_string()))))
}

/// API `demo` with the route rule `GET /admin` needs scope `admin`, the API
/// list {127.0.0.2, 127.0.0.3}, a key without the scope and one with it,
/// each allowed from 127.0.0.2 only; an enforcer started with
/// `enforcer_args`, synced.
struct Stage {
    w: World,
    /// A key with scope `admin`.
    admin_key: String,
    _backend: Backend,
}

async fn stage(enforcer_args: &[&str]) -> Stage {
    let backend = Backend::sqlite();
    let upstream = upstream::serve(echo).await;
    let cp = ControlPlane::start(&backend);
    let mut admin = cp.admin().await;
    admin
        .create_api(CreateApiRequest {
            slug: API.into(),
            name: "Demo".into(),
            routes: vec![RouteRule {
                method: "GET".into(),
                path_prefix: "/admin".into(),
                scope: "admin".into(),
            }],
            ..Default::default()
        })
        .await
        .expect("create API");
    admin
        .set_api_allowlist(SetApiAllowlistRequest {
            slug: API.into(),
            allowlist: entries(&[ALLOWED, NOT_ON_KEY]),
            options: ack(),
            ..Default::default()
        })
        .await
        .expect("the API's list");
    let create_key = |name: &str, scopes: &[&str]| {
        let mut admin = admin.clone();
        let request = CreateApiKeyRequest {
            api: API.into(),
            name: name.into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            allowlist: entries(&[ALLOWED]),
            ..Default::default()
        };
        async move {
            let created = admin
                .create_api_key(request)
                .await
                .expect("create key")
                .into_inner();
            (created.secret, created.key.expect("key").id)
        }
    };
    let (key, key_id) = create_key("no scopes", &[]).await;
    let (admin_key, _) = create_key("admin", &["admin"]).await;
    let enforcer = Enforcer::start_with(&cp, API, upstream, enforcer_args, &[]);
    let w = World {
        cp,
        admin,
        enforcer,
        upstream,
        key,
        key_id,
    };
    w.wait_live().await;
    Stage {
        w,
        admin_key,
        _backend: backend,
    }
}

/// `GET path` through `gateway` from `from`, with `key` in `X-API-Key`
/// (none when empty) and `extra` headers.
async fn call(
    gateway: &Peer,
    from: &str,
    path: &str,
    key: &str,
    extra: &[(&str, &str)],
) -> http::Response {
    let mut headers = extra.to_vec();
    if !key.is_empty() {
        headers.push(("x-api-key", key));
    }
    http::get(ip(from), gateway.addr, path, &headers).await
}

/// What reached the echo service, or `None` when the answer is not its.
fn upstream_saw(res: &http::Response) -> Option<serde_json::Value> {
    let seen: serde_json::Value = serde_json::from_str(&res.body).ok()?;
    (seen["upstream"] == true).then_some(seen)
}

/// Asserts a refusal: `status`, the exact `body` as JSON, the address
/// decided on; returns its request id.
#[track_caller]
fn refused(res: &http::Response, status: u16, body: &str, client: &str, what: &str) -> String {
    assert_eq!(
        (res.status, res.body.as_str()),
        (status, body),
        "{what}: {res:?}"
    );
    assert!(
        res.header("content-type").starts_with("application/json"),
        "{what}: {res:?}"
    );
    assert_eq!(res.header("x-ipgate-client-ip"), client, "{what}: {res:?}");
    let id = res.header("x-request-id");
    assert!(!id.is_empty(), "{what}: no request id: {res:?}");
    id.to_owned()
}

/// Everything each gateway must show; `door` and `source` are what the
/// usage log must say about the requests (the door, and where the client
/// address came from).
async fn decides_on_the_caller(stage: &Stage, gateway: &Peer, door: &str, source: &str) {
    let w = &stage.w;
    // Allowed: the service gets the request with ipgate's headers, in place
    // of the ones the client sent. (Gateways may take a moment to load
    // their routes after they listen.)
    let forged = [("x-ipgate-key-id", "forged"), ("x-ipgate-api", "forged")];
    let (allowed, _) = eventually(PROPAGATION, "the allowed caller to get through", || {
        let key = w.key.clone();
        async move {
            let res = call(gateway, ALLOWED, "/orders/7?page=2", &key, &forged).await;
            (res.status == 200).then_some(res)
        }
    })
    .await;
    let seen = upstream_saw(&allowed).unwrap_or_else(|| {
        panic!(
            "not the service's answer: {allowed:?}\n{}",
            gateway.output()
        )
    });
    assert_eq!(seen["method"], "GET", "{seen}");
    assert_eq!(seen["uri"], "/orders/7?page=2", "{seen}");
    assert_eq!(seen["x-ipgate-key-id"], w.key_id.as_str(), "{seen}");
    assert_eq!(seen["x-ipgate-api"], API, "{seen}");
    let allowed_id = seen["x-request-id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| panic!("the service got no request id: {seen}"))
        .to_owned();

    // Refused, each with ipgate's status and exact body.
    let key = w.key.as_str();
    let key_level = call(gateway, NOT_ON_KEY, "/orders/7", key, &[]).await;
    let key_level = refused(&key_level, 403, KEY_BODY, NOT_ON_KEY, "key list");
    let api_level = call(gateway, NOT_ON_API, "/orders/7", key, &[]).await;
    let api_level = refused(&api_level, 403, API_BODY, NOT_ON_API, "API list");
    let no_key = call(gateway, ALLOWED, "/orders/7", "", &[]).await;
    let no_key = refused(&no_key, 401, INVALID_KEY_BODY, ALLOWED, "no key");
    let unknown = call(gateway, ALLOWED, "/orders/7", "ipg_live_unknown", &[]).await;
    refused(&unknown, 401, INVALID_KEY_BODY, ALLOWED, "unknown key");
    // A client cannot name another address: the gateway says who it is.
    let spoofed = [("x-forwarded-for", ALLOWED), ("forwarded", "for=127.0.0.2")];
    let spoof = call(gateway, NOT_ON_KEY, "/orders/7", key, &spoofed).await;
    refused(
        &spoof,
        403,
        KEY_BODY,
        NOT_ON_KEY,
        "a forged X-Forwarded-For",
    );

    // The scoped route: refused for the key without the scope, however the
    // path is spelt, and however the client names another path in headers;
    // the key with the scope gets through.
    let scoped = call(gateway, ALLOWED, "/admin", key, &[]).await;
    refused(&scoped, 403, SCOPE_BODY, ALLOWED, "the scoped route");
    let named_elsewhere = [
        ("x-original-uri", "/orders/7"),
        ("x-original-method", "GET"),
        ("x-forwarded-uri", "/orders/7"),
        ("x-forwarded-method", "GET"),
        ("x-envoy-original-path", "/orders/7"),
    ];
    // Each with the path in normal form that the usage log keeps.
    let spellings = [
        ("/admin", &named_elsewhere[..], "/admin"),
        ("/%61dmin", &[][..], "/admin"),
        ("//admin", &[], "/admin"),
        ("/hello/../admin", &[], "/admin"),
        ("/./admin", &[], "/admin"),
        ("/ADMIN/users", &[], "/ADMIN/users"),
        ("/admin;x=1", &[], "/admin;x=1"),
    ];
    let mut wrong = Vec::new();
    let mut bypasses = Vec::new();
    for (path, extra, logged_path) in spellings {
        let res = call(gateway, ALLOWED, path, key, extra).await;
        if res.status == 403 && res.body == SCOPE_BODY && upstream_saw(&res).is_none() {
            bypasses.push((res.header("x-request-id").to_owned(), logged_path));
        } else {
            wrong.push(format!(
                "GET {path} {extra:?}: {} {:?}, expected 403 {SCOPE_BODY}",
                res.status, res.body
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\n{}",
        wrong.join("\n"),
        gateway.output()
    );
    let scoped_ok = call(gateway, ALLOWED, "/admin", &stage.admin_key, &[]).await;
    let seen = upstream_saw(&scoped_ok).unwrap_or_else(|| panic!("{scoped_ok:?}"));
    assert_eq!(seen["uri"], "/admin", "{seen}");
    // A path ipgate will not decide on is refused too, with ipgate's body.
    let bad = call(gateway, ALLOWED, "/admin%2fusers", key, &[]).await;
    refused(&bad, 400, BAD_PATH_BODY, ALLOWED, "an encoded slash");

    // The usage log has each, on the caller's address, at this door.
    let mut rows = vec![
        (allowed_id, ALLOWED, 200, "ALLOWED", "/orders/7"),
        (
            key_level,
            NOT_ON_KEY,
            403,
            "IP_NOT_ALLOWED_KEY",
            "/orders/7",
        ),
        (
            api_level,
            NOT_ON_API,
            403,
            "IP_NOT_ALLOWED_API",
            "/orders/7",
        ),
        (no_key, ALLOWED, 401, "INVALID_API_KEY", "/orders/7"),
    ];
    for (id, path) in bypasses {
        rows.push((id, ALLOWED, 403, "INSUFFICIENT_SCOPE", path));
    }
    for (id, client, status, reason, path) in rows {
        let entry = w.logged(&id).await;
        assert_eq!(
            (
                entry.client_ip.as_str(),
                entry.door.as_str(),
                entry.client_ip_source.as_str(),
                entry.status_code,
                entry.reason.as_str(),
                entry.api.as_str(),
                entry.path.as_str(),
            ),
            (client, door, source, status, reason, API, path),
            "request {id}: {entry:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_with_the_shipped_configuration_asks_ext_authz() {
    if !tools::available(&["envoy"]) {
        return;
    }
    // At the edge Envoy reports the caller's own address, so the enforcer
    // gets no forwarding trust; see
    // docs/client-ip.md, "Envoy's ext_authz: the source address Envoy reports".
    let stage = stage(&[]).await;
    let w = &stage.w;
    let config = read("deploy/envoy/ipgate-ext-authz.yaml");
    let config = replace_once(&config, "port_value: 8082", "port_value: {port}");
    let config = replace_once(
        &config,
        "port_value: 7161",
        &format!("port_value: {}", w.enforcer.grpc_addr.port()),
    );
    let config = replace_once(
        &config,
        "port_value: 7181",
        &format!("port_value: {}", w.upstream.port()),
    );
    let envoy = Peer::envoy(&config);
    decides_on_the_caller(&stage, &envoy, "ext_authz", "peer").await;

    // --hide-credentials is on by default: Envoy removes the key header.
    let res = call(&envoy, ALLOWED, "/orders/7", &w.key, &[]).await;
    let seen = upstream_saw(&res).unwrap_or_else(|| panic!("{res:?}"));
    assert_eq!(seen["x-api-key"], serde_json::Value::Null, "{seen}");
}

/// The stage for nginx and Traefik: the HTTP auth endpoint on, the gateway
/// on loopback trusted for `X-Forwarded-For`; and the endpoint's address.
async fn auth_stage() -> (Stage, std::net::SocketAddr) {
    let stage = stage(&[
        "--auth-listen",
        "127.0.0.1:0",
        "--trusted-proxies",
        "127.0.0.1/32",
    ])
    .await;
    let auth = stage
        .w
        .enforcer
        .auth_addr
        .expect("the auth endpoint listens");
    (stage, auth)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_with_the_shipped_configuration_asks_the_auth_endpoint() {
    if !tools::available(&["nginx"]) {
        return;
    }
    let (stage, auth) = auth_stage().await;
    let w = &stage.w;
    let config = read("deploy/nginx/ipgate-auth.conf");
    let config = replace_once(
        &config,
        "listen 127.0.0.1:8080;",
        "listen 127.0.0.1:{port};",
    );
    let config = replace_once(
        &config,
        "server 127.0.0.1:7190;",
        &format!("server {auth};"),
    );
    let config = replace_once(
        &config,
        "server 127.0.0.1:7181;",
        &format!("server {};", w.upstream),
    );
    let nginx = Peer::nginx_conf(&config);
    decides_on_the_caller(&stage, &nginx, "auth_request", "x-forwarded-for").await;

    // The shipped file passes the key on (hiding it is commented out).
    let res = call(&nginx, ALLOWED, "/orders/7", &w.key, &[]).await;
    let seen = upstream_saw(&res).unwrap_or_else(|| panic!("{res:?}"));
    assert_eq!(seen["x-api-key"], w.key.as_str(), "{seen}");

    // ipgate away: the last line of @ipgate_refused answers.
    drop(stage);
    let res = call(&nginx, ALLOWED, "/orders/7", "", &[]).await;
    assert_eq!(
        (res.status, res.body.as_str()),
        (
            503,
            r#"{"error":{"code":"AUTH_UNAVAILABLE","message":"The access check could not be made; retry shortly"}}"#
        ),
        "{res:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_with_the_shipped_configuration_asks_the_auth_endpoint() {
    if !tools::available(&["traefik"]) {
        return;
    }
    let (stage, auth) = auth_stage().await;
    let w = &stage.w;
    let static_config = read("deploy/traefik/traefik.yml");
    let static_config = replace_once(
        &static_config,
        r#"address: "127.0.0.1:8081""#,
        r#"address: "127.0.0.1:{port}""#,
    );
    let dynamic = read("deploy/traefik/ipgate-forward-auth.yml");
    let dynamic = replace_once(
        &dynamic,
        r#"address: "http://127.0.0.1:7190/v1/check/demo""#,
        &format!(r#"address: "http://{auth}/v1/check/demo""#),
    );
    let dynamic = replace_once(
        &dynamic,
        r#"url: "http://127.0.0.1:7181""#,
        &format!(r#"url: "http://{}""#, w.upstream),
    );
    // As run from the repository's root: the static file names the other
    // by its path from there.
    let traefik = Peer::traefik_files(
        &static_config,
        &[("deploy/traefik/ipgate-forward-auth.yml", &dynamic)],
    );
    decides_on_the_caller(&stage, &traefik, "auth_request", "x-forwarded-for").await;
}
