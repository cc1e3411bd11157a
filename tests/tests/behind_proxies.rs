//! The enforcer's proxy door behind the real software users put in front
//! of it, on loopback, each time deciding on the caller's address:
//! - a two-hop chain: caller -> nginx, a trusted proxy that appends the
//!   caller to `X-Forwarded-For` -> the enforcer (`--trusted-proxies`);
//! - an L4 balancer: caller -> HAProxy in TCP mode with `send-proxy-v2`
//!   -> the enforcer (`--proxy-protocol`).
//!
//! Callers come from 127.0.0.2 (on the key's list) and 127.0.0.3 (not on
//! it); the proxies reach the enforcer from 127.0.0.1, which is never on
//! the list, so a decision on the proxy's address would refuse everyone.

use ipgate_shared::proto::admin::v1::SetApiKeyAllowlistRequest;
use ipgate_tests::{
    Backend, Enforcer, World,
    admin::{ack, entries, ip},
    http,
    peers::Peer,
    tools,
    world::{API, PROPAGATION},
};

/// The key-level refusal, byte for byte (docs/decisions.md).
const KEY_BODY: &str = r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Request IP address is not in the API key's allowlist"}}"#;

/// A world whose key allows only 127.0.0.2.
async fn world() -> World {
    let mut w = World::start(&Backend::sqlite()).await;
    w.admin
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            id: w.key_id.clone(),
            allowlist: entries(&["127.0.0.2"]),
            options: ack(),
            ..Default::default()
        })
        .await
        .expect("allow only 127.0.0.2");
    w.wait_live().await;
    w
}

async fn call(through: &Peer, from: &str, key: &str, spoof: &str) -> http::Response {
    let mut headers = vec![("x-api-key", key)];
    if !spoof.is_empty() {
        headers.push(("x-forwarded-for", spoof));
    }
    http::get(ip(from), through.addr, "/orders/7", &headers).await
}

/// What every chain must show: the allowed caller passes, the other is
/// refused with the exact body and named, a spoofed left-most address
/// changes nothing, and the usage log keeps the callers' addresses.
/// `source` is where the log says the address came from.
async fn decides_on_the_caller(w: &World, through: &Peer, source: &str) {
    let (allowed, _) = ipgate_tests::eventually(PROPAGATION, "127.0.0.2 to pass", || async {
        let res = call(through, "127.0.0.2", &w.key, "").await;
        (res.status == 200).then_some(res)
    })
    .await;
    let refused = call(through, "127.0.0.3", &w.key, "").await;
    assert_eq!(
        refused.status,
        403,
        "{}\n{}",
        refused.body,
        through.output()
    );
    assert_eq!(refused.body, KEY_BODY);
    assert_eq!(refused.header("x-ipgate-client-ip"), "127.0.0.3");
    let spoofed = call(through, "127.0.0.3", &w.key, "127.0.0.2").await;
    assert_eq!(spoofed.status, 403, "a spoofed X-Forwarded-For got through");
    assert_eq!(spoofed.header("x-ipgate-client-ip"), "127.0.0.3");
    for (response, client_ip, status) in [
        (&allowed, "127.0.0.2", 200),
        (&refused, "127.0.0.3", 403),
        (&spoofed, "127.0.0.3", 403),
    ] {
        let entry = w.logged(response.header("x-request-id")).await;
        assert_eq!(entry.client_ip, client_ip, "{entry:?}");
        assert_eq!(entry.status_code, status, "{entry:?}");
        assert_eq!(entry.door, "proxy", "{entry:?}");
        assert_eq!(entry.client_ip_source, source, "{entry:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_the_caller_is_decided_on() {
    if !tools::available(&["nginx"]) {
        return;
    }
    let w = world().await;
    let enforcer = Enforcer::start_with(
        &w.cp,
        API,
        w.upstream,
        &["--trusted-proxies", "127.0.0.1/32"],
        &[],
    );
    let nginx = Peer::nginx(&format!(
        "  server {{\n    listen 127.0.0.1:{{port}};\n    location / {{\n\
         \x20     proxy_pass http://{};\n\
         \x20     proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
         \x20     proxy_set_header Host $host;\n    }}\n  }}",
        enforcer.proxy_addr
    ));
    // nginx appends its peer, the caller, to X-Forwarded-For.
    decides_on_the_caller(&w, &nginx, "x-forwarded-for").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_with_proxy_protocol_the_caller_is_decided_on() {
    if !tools::available(&["haproxy"]) {
        return;
    }
    let w = world().await;
    let enforcer = Enforcer::start_with(&w.cp, API, w.upstream, &["--proxy-protocol"], &[]);
    let haproxy = Peer::haproxy_send_proxy_v2(enforcer.proxy_addr);
    // The PROXY header's source is the peer.
    decides_on_the_caller(&w, &haproxy, "peer").await;
}
