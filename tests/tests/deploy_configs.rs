//! The files in `deploy/` are what their own tools accept, and say what the
//! binary serves:
//! - Envoy's validate mode and `nginx -t` accept the shipped Envoy and nginx
//!   configurations, whose addresses are `ipgate dev`'s (they run as they
//!   are beside it);
//! - Traefik has no offline check: both of its files are read, their
//!   addresses compared with `ipgate dev`'s, and the auth endpoint asked as
//!   the middleware asks it, answering with the headers the middleware
//!   copies;
//! - the Kubernetes sidecar example passes `kubernetes-validate --strict`
//!   (Kubernetes' own schemas, offline), every variable it sets is one of
//!   `ipgate enforcer --help`, its ports and probes are the ones those
//!   variables open, and the enforcer started with them serves the gRPC
//!   health its probes ask for.
//!
//! The real gateways run the first three in `real_gateways.rs`.

use std::{collections::HashMap, net::SocketAddr, process::Command, time::Duration};

use ipgate_shared::proto::admin::v1::CreateApiKeyRequest;
use ipgate_tests::{
    Backend, ENFORCER_TOKEN, Enforcer, World,
    admin::ip,
    docs::{dev_default, read, repo_root},
    eventually, http,
    process::{DevMode, ipgate_bin},
    tools,
    world::{API, PROPAGATION},
};
use serde::Deserialize;
use serde_json::Value;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// The YAML documents of a file of the repository, as JSON values.
fn yaml_documents(relative: &str) -> Vec<Value> {
    let text = read(relative);
    serde_norway::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).unwrap_or_else(|e| panic!("{relative}: {e}")))
        .collect()
}

/// The one YAML document of a file of the repository.
fn yaml(relative: &str) -> Value {
    let mut documents = yaml_documents(relative);
    assert_eq!(documents.len(), 1, "{relative}: one document");
    documents.remove(0)
}

/// The value at `pointer` (RFC 6901) in `value`, which must be there.
#[track_caller]
fn at<'v>(value: &'v Value, pointer: &str) -> &'v Value {
    value
        .pointer(pointer)
        .unwrap_or_else(|| panic!("nothing at {pointer} in {value}"))
}

/// The text at `pointer`.
#[track_caller]
fn text<'v>(value: &'v Value, pointer: &str) -> &'v str {
    at(value, pointer)
        .as_str()
        .unwrap_or_else(|| panic!("{pointer} is no text in {value}"))
}

/// The element of the list at `pointer` whose `name` is `name`.
#[track_caller]
fn named<'v>(value: &'v Value, pointer: &str, name: &str) -> &'v Value {
    at(value, pointer)
        .as_array()
        .and_then(|list| list.iter().find(|item| item["name"] == name))
        .unwrap_or_else(|| panic!("no {name:?} in {pointer} of {value}"))
}

/// The port of an address as `ipgate dev --help` shows its default.
fn dev_port(flag: &str) -> u16 {
    let default = dev_default(flag);
    default
        .parse::<SocketAddr>()
        .unwrap_or_else(|e| panic!("{flag}'s default {default:?}: {e}"))
        .port()
}

#[test]
fn envoy_validates_the_shipped_configuration() {
    if !tools::available(&["envoy"]) {
        return;
    }
    let file = repo_root().join("deploy/envoy/ipgate-ext-authz.yaml");
    let out = Command::new("envoy")
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(&file)
        .output()
        .expect("run envoy");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("OK"), "{printed}");

    // Beside `ipgate dev`: its gRPC port, its demo upstream, its API.
    let config = yaml("deploy/envoy/ipgate-ext-authz.yaml");
    let endpoint_port = |cluster: &str| {
        let cluster = named(&config, "/static_resources/clusters", cluster);
        at(
            cluster,
            "/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address/port_value",
        )
        .as_u64()
    };
    assert_eq!(
        endpoint_port("ipgate"),
        Some(dev_port("--grpc-listen").into())
    );
    assert_eq!(
        endpoint_port("service"),
        Some(dev_port("--upstream-listen").into())
    );
    let ipgate = named(&config, "/static_resources/clusters", "ipgate");
    assert!(
        at(ipgate, "/typed_extension_protocol_options")
            .to_string()
            .contains("http2_protocol_options"),
        "the enforcer's gRPC port speaks HTTP/2: {ipgate}"
    );
    let manager = at(
        &config,
        "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config",
    );
    let ext_authz = at(
        named(manager, "/http_filters", "envoy.filters.http.ext_authz"),
        "/typed_config",
    );
    assert_eq!(ext_authz["transport_api_version"], "V3");
    assert_eq!(ext_authz["failure_mode_allow"], false, "fails closed");
    assert_eq!(
        text(ext_authz, "/grpc_service/envoy_grpc/cluster_name"),
        "ipgate"
    );
    assert!(
        ext_authz.get("with_request_body").is_none(),
        "ipgate decides on the head"
    );
    assert_eq!(
        text(
            manager,
            "/route_config/virtual_hosts/0/routes/0/typed_per_filter_config/envoy.filters.http.ext_authz/check_settings/context_extensions/ipgate_api"
        ),
        dev_default("--api")
    );
    assert_eq!(manager["use_remote_address"], true, "Envoy at the edge");
}

#[test]
fn nginx_accepts_the_shipped_configuration() {
    if !tools::available(&["nginx"]) {
        return;
    }
    let prefix = tempfile::tempdir().expect("temporary directory");
    let file = repo_root().join("deploy/nginx/ipgate-auth.conf");
    let out = Command::new("nginx")
        .arg("-t")
        .arg("-p")
        .arg(prefix.path())
        .arg("-e")
        .arg(prefix.path().join("error.log"))
        .arg("-c")
        .arg(&file)
        .output()
        .expect("run nginx -t");
    let printed = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("test is successful"), "{printed}");

    // Beside `ipgate dev`: its auth endpoint, its demo upstream, its API;
    // and a refusal for every status the auth endpoint answers with.
    let conf = read("deploy/nginx/ipgate-auth.conf");
    for line in [
        format!("server 127.0.0.1:{};", dev_port("--auth-listen")),
        format!("server 127.0.0.1:{};", dev_port("--upstream-listen")),
        format!(
            "proxy_pass http://ipgate_auth/v1/check/{};",
            dev_default("--api")
        ),
        "proxy_set_header X-Original-Method $request_method;".to_owned(),
        "proxy_set_header X-Original-URI    $request_uri;".to_owned(),
        "error_page 401 403 500 = @ipgate_refused;".to_owned(),
    ] {
        assert!(conf.contains(&line), "the nginx file lacks {line:?}");
    }
    for status in [400, 401, 403, 404, 431, 503] {
        let line = format!("if ($ipgate_status = {status}) {{ return {status} $ipgate_error; }}");
        assert!(conf.contains(&line), "the nginx file lacks {line:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_files_agree_with_the_auth_endpoint() {
    let static_config = yaml("deploy/traefik/traefik.yml");
    let dynamic_path = text(&static_config, "/providers/file/filename");
    assert_eq!(dynamic_path, "deploy/traefik/ipgate-forward-auth.yml");
    assert!(
        repo_root().join(dynamic_path).is_file(),
        "run from the repository's root, traefik.yml names {dynamic_path}"
    );
    let entry: SocketAddr = text(&static_config, "/entryPoints/web/address")
        .parse()
        .expect("the entry point's address");
    assert!(entry.ip().is_loopback(), "{entry}");
    assert_eq!(
        at(&static_config, "/global/checkNewVersion").as_bool(),
        Some(false),
        "Traefik calls out to nothing"
    );

    let dynamic = yaml(dynamic_path);
    let router = at(&dynamic, "/http/routers/demo");
    assert_eq!(router["middlewares"], serde_json::json!(["ipgate"]));
    let service = text(router, "/service");
    assert_eq!(
        text(
            &dynamic,
            &format!("/http/services/{service}/loadBalancer/servers/0/url")
        ),
        format!("http://127.0.0.1:{}", dev_port("--upstream-listen"))
    );
    let forward_auth = at(&dynamic, "/http/middlewares/ipgate/forwardAuth");
    let address = text(forward_auth, "/address");
    let dev_auth = format!("http://127.0.0.1:{}", dev_port("--auth-listen"));
    let path = address
        .strip_prefix(&dev_auth)
        .unwrap_or_else(|| panic!("{address} is not ipgate dev's auth endpoint, {dev_auth}"));
    assert_eq!(path, format!("/v1/check/{}", dev_default("--api")));
    assert_eq!(forward_auth["trustForwardHeader"], false);
    let list = |name: &str| -> Vec<String> {
        at(forward_auth, &format!("/{name}"))
            .as_array()
            .unwrap_or_else(|| panic!("{name} is a list"))
            .iter()
            .map(|v| v.as_str().expect("a header name").to_owned())
            .collect()
    };
    let request_headers = list("authRequestHeaders");
    let response_headers = list("authResponseHeaders");
    assert_eq!(request_headers, ["Authorization", "X-Api-Key"]);
    // The hide-credentials middleware drops exactly the key headers.
    let hidden = at(
        &dynamic,
        "/http/middlewares/hide-credentials/headers/customRequestHeaders",
    );
    let mut hidden: Vec<&String> = hidden.as_object().expect("headers").keys().collect();
    hidden.sort();
    assert_eq!(hidden, ["Authorization", "X-Api-Key"]);

    // The auth endpoint of `ipgate dev`, asked at the address's path with
    // what Traefik sends (its X-Forwarded-* and the headers it copies):
    // the key in either copied header lets the request in, and the answer
    // carries every header the middleware copies to the service.
    let dir = tempfile::tempdir().expect("temporary directory");
    let dev = DevMode::start_with(dir.path(), &["--trusted-proxies", "127.0.0.1"], &[]);
    dev.wait_synced().await;
    let mut admin = dev.admin().await;
    let key = admin
        .create_api_key(CreateApiKeyRequest {
            api: dev_default("--api"),
            name: "traefik".into(),
            ..Default::default()
        })
        .await
        .expect("create key")
        .into_inner()
        .secret;
    let bearer = format!("Bearer {key}");
    for (name, value) in [("X-Api-Key", key.as_str()), ("Authorization", &bearer)] {
        assert!(request_headers.iter().any(|h| h == name));
        let headers = [
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/hello?x=1"),
            ("x-forwarded-host", "api.test"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-for", "203.0.113.7"),
            (name, value),
        ];
        // The new key reaches the enforcer asynchronously.
        let what = format!("the key in {name} to let the request in");
        let (answer, _) = eventually(PROPAGATION, &what, || async {
            let answer = http::get(ip("127.0.0.1"), dev.auth, path, &headers).await;
            (answer.status == 200).then_some(answer)
        })
        .await;
        for header in &response_headers {
            assert!(
                !answer.header(header).is_empty(),
                "the auth endpoint's 200 has no {header}: {answer:?}"
            );
        }
    }
}

/// The port of an address variable's value (`host:port`).
fn listen_port(value: &str) -> u16 {
    value
        .parse::<SocketAddr>()
        .unwrap_or_else(|e| panic!("{value:?}: {e}"))
        .port()
}

const MANIFEST: &str = "deploy/kubernetes/enforcer-sidecar.yaml";

#[test]
fn kubernetes_validate_accepts_the_sidecar_manifest() {
    if !tools::available(&["kubernetes-validate"]) {
        return;
    }
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .arg(repo_root().join(MANIFEST))
        .output()
        .expect("run kubernetes-validate");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sidecar manifest's parts.
struct Manifest {
    secret: Value,
    deployment: Value,
    service: Value,
}

fn manifest() -> Manifest {
    let mut by_kind: HashMap<String, Value> = yaml_documents(MANIFEST)
        .into_iter()
        .map(|doc| (text(&doc, "/kind").to_owned(), doc))
        .collect();
    let mut take = |kind: &str| {
        by_kind
            .remove(kind)
            .unwrap_or_else(|| panic!("{MANIFEST} has no {kind}"))
    };
    let parts = Manifest {
        secret: take("Secret"),
        deployment: take("Deployment"),
        service: take("Service"),
    };
    assert!(by_kind.is_empty(), "more in {MANIFEST}: {by_kind:?}");
    parts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_manifest_matches_the_enforcer() {
    let Manifest {
        secret,
        deployment,
        service,
    } = manifest();
    let pod = at(&deployment, "/spec/template/spec");
    let sidecar = named(pod, "/containers", "ipgate-enforcer");
    assert_eq!(sidecar["args"], serde_json::json!(["enforcer"]));

    // Every variable is one of the enforcer's; the secrets come from the
    // Secret of the manifest.
    let help = Command::new(ipgate_bin())
        .args(["enforcer", "--help"])
        .output()
        .expect("run ipgate enforcer --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let secret_name = text(&secret, "/metadata/name");
    let mut env: HashMap<&str, &Value> = HashMap::new();
    for var in at(sidecar, "/env").as_array().expect("env is a list") {
        let name = text(var, "/name");
        assert!(
            help.contains(&format!("[env: {name}=]")) || help.contains(&format!("[env: {name}]")),
            "{name} is no variable of `ipgate enforcer --help`"
        );
        if let Some(secret_ref) = var.pointer("/valueFrom/secretKeyRef") {
            assert_eq!(text(secret_ref, "/name"), secret_name, "{var}");
            let key = text(secret_ref, "/key");
            assert!(
                secret.pointer(&format!("/stringData/{key}")).is_some(),
                "the Secret has no {key}"
            );
        }
        assert!(env.insert(name, var).is_none(), "{name} twice");
    }
    let value = |name: &str| {
        env.get(name)
            .and_then(|var| var["value"].as_str())
            .unwrap_or_else(|| panic!("{MANIFEST} sets no {name}"))
    };
    for name in ["IPGATE_ENFORCER_TOKEN", "IPGATE_CHECK_TOKEN"] {
        assert!(
            env.get(name)
                .is_some_and(|var| var.pointer("/valueFrom/secretKeyRef").is_some()),
            "{name} comes from the Secret"
        );
    }
    assert_eq!(value("IPGATE_API"), API);
    let upstream = value("IPGATE_UPSTREAM");
    assert!(
        upstream.starts_with("http://127.0.0.1:"),
        "the service is on the pod's loopback: {upstream}"
    );

    // The ports are the ones the variables open; the probes ask the gRPC
    // port; the Service sends callers to the proxy.
    let proxy_port = listen_port(value("IPGATE_PROXY_LISTEN"));
    let grpc_port = listen_port(value("IPGATE_GRPC_LISTEN"));
    let container_port = |port: &str| at(named(sidecar, "/ports", port), "/containerPort").as_u64();
    assert_eq!(container_port("proxy"), Some(proxy_port.into()));
    assert_eq!(container_port("grpc"), Some(grpc_port.into()));
    let mut probed = Vec::new();
    for probe in ["readinessProbe", "livenessProbe"] {
        let grpc = at(sidecar, &format!("/{probe}/grpc"));
        assert_eq!(grpc["port"].as_u64(), Some(grpc_port.into()), "{probe}");
        probed.push((probe, grpc["service"].as_str().unwrap_or("").to_owned()));
    }
    let pod_labels = at(&deployment, "/spec/template/metadata/labels");
    assert_eq!(at(&service, "/spec/selector"), pod_labels);
    let target = at(&service, "/spec/ports/0/targetPort");
    assert!(
        target.as_str() == Some("proxy") || target.as_u64() == Some(proxy_port.into()),
        "the Service sends callers to {target}, not the proxy"
    );
    // The grace period covers the drain, the last events (5 s) and the
    // preStop pause.
    let drain: u64 = value("IPGATE_DRAIN_TIMEOUT")
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .expect("IPGATE_DRAIN_TIMEOUT in whole seconds");
    let pause = at(sidecar, "/lifecycle/preStop/sleep/seconds")
        .as_u64()
        .expect("seconds");
    let grace = at(pod, "/terminationGracePeriodSeconds")
        .as_u64()
        .expect("seconds");
    assert!(grace > drain + 6 + pause, "{grace} s");

    // The enforcer started with the manifest's variables (the listeners on
    // loopback, the control plane and service the test's, the secrets the
    // test's) syncs, proxies, and serves the health each probe asks for,
    // with no token, though a door token is set.
    let backend = Backend::sqlite();
    let w = World::start(&backend).await;
    let check_token = "a-door-token-of-the-tests-0123456789";
    let mut envs: Vec<(&str, &str)> = Vec::new();
    for (&name, var) in &env {
        let set = match name {
            "IPGATE_ENFORCER_TOKEN" => ENFORCER_TOKEN,
            "IPGATE_CHECK_TOKEN" => check_token,
            // The harness gives these as flags: its control plane and
            // service, free loopback ports, a unique id.
            "IPGATE_CONTROL_PLANE"
            | "IPGATE_UPSTREAM"
            | "IPGATE_PROXY_LISTEN"
            | "IPGATE_GRPC_LISTEN"
            | "IPGATE_ENFORCER_ID" => continue,
            _ => var["value"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has no value")),
        };
        envs.push((name, set));
    }
    let enforcer = Enforcer::start_with(&w.cp, API, w.upstream, &[], &envs);
    let res = eventually(
        PROPAGATION,
        "the sidecar to let the key through",
        || async {
            let res = http::get(
                ip("127.0.0.1"),
                enforcer.proxy_addr,
                "/orders/7",
                &[("x-api-key", &w.key)],
            )
            .await;
            (res.status == 200).then_some(res)
        },
    )
    .await
    .0;
    assert!(
        res.body.starts_with("upstream saw GET /orders/7"),
        "{res:?}"
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", enforcer.grpc_addr))
        .expect("url")
        .connect()
        .await
        .expect("connect to the gRPC port");
    let mut health = HealthClient::new(channel);
    for (probe, service) in probed {
        let (status, _) = eventually(Duration::from_secs(10), probe, || {
            let mut health = health.clone();
            let service = service.clone();
            async move {
                let status = health
                    .check(HealthCheckRequest { service })
                    .await
                    .ok()?
                    .into_inner()
                    .status;
                (status == ServingStatus::Serving as i32).then_some(status)
            }
        })
        .await;
        assert_eq!(status, ServingStatus::Serving as i32, "{probe}");
    }
    // A service the enforcer does not serve is no answer a probe could use.
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("an unknown service");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}
