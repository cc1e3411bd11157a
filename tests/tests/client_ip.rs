//! The real `ipgate enforcer` behind a trusted proxy on loopback: started
//! with `IPGATE_TRUSTED_PROXIES=127.0.0.1/32`, it decides requests from
//! 127.0.0.1 on the client their `X-Forwarded-For` names (from the right),
//! and requests from 127.0.0.2 on 127.0.0.2 whatever they claim; the usage
//! log keeps the address decided on and where it was found — a header that
//! could not be followed says so. Flags that cannot work together stop the
//! start with a message that says what to do.

use std::time::Duration;

use ipgate_shared::proto::admin::v1::SetApiKeyAllowlistRequest;
use ipgate_tests::{
    Backend, Enforcer, World,
    admin::{ack, entries, ip},
    http,
    process::run_to_end,
    world::{API, PROPAGATION},
};

const OFFICE: &str = "203.0.113.0/24";

/// `GET /orders/7` from `from` through `enforcer` with the key and `xff`.
async fn call(enforcer: &Enforcer, from: &str, key: &str, xff: &str) -> http::Response {
    http::get(
        ip(from),
        enforcer.proxy_addr,
        "/orders/7",
        &[("x-api-key", key), ("x-forwarded-for", xff)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_real_client_is_decided_on() {
    let mut w = World::start(&Backend::sqlite()).await;
    w.admin
        .set_api_key_allowlist(SetApiKeyAllowlistRequest {
            id: w.key_id.clone(),
            allowlist: entries(&[OFFICE]),
            options: ack(),
            ..Default::default()
        })
        .await
        .expect("allow only the office");
    let behind = Enforcer::start_with(
        &w.cp,
        API,
        w.upstream,
        &[],
        &[("IPGATE_TRUSTED_PROXIES", "127.0.0.1/32")],
    );

    // An office client behind the trusted proxy gets through, once synced.
    let (allowed, _) =
        ipgate_tests::eventually(PROPAGATION, "the office client to pass", || async {
            let res = call(&behind, "127.0.0.1", &w.key, "198.51.100.1, 203.0.113.7").await;
            (res.status == 200).then_some(res)
        })
        .await;

    // A client that spoofs an office address on the left is judged by the
    // address the proxy appended.
    let spoofed = call(&behind, "127.0.0.1", &w.key, "203.0.113.7, 198.51.100.1").await;
    assert_eq!(spoofed.status, 403, "{}", spoofed.body);
    assert_eq!(spoofed.header("x-ipgate-client-ip"), "198.51.100.1");

    // The same header from a peer that is not trusted is ignored.
    let untrusted = call(&behind, "127.0.0.2", &w.key, "203.0.113.7").await;
    assert_eq!(untrusted.status, 403, "{}", untrusted.body);
    assert_eq!(untrusted.header("x-ipgate-client-ip"), "127.0.0.2");

    // A header from the trusted proxy that cannot be followed — its
    // right-most element is no address — is decided on the proxy itself.
    let malformed = call(&behind, "127.0.0.1", &w.key, "203.0.113.7, 203.0.113.7:+80").await;
    assert_eq!(malformed.status, 403, "{}", malformed.body);
    assert_eq!(malformed.header("x-ipgate-client-ip"), "127.0.0.1");

    // The enforcer without the flag ignores the header from 127.0.0.1 too.
    let direct = call(&w.enforcer, "127.0.0.1", &w.key, "203.0.113.7").await;
    assert_eq!(direct.status, 403, "{}", direct.body);
    assert_eq!(direct.header("x-ipgate-client-ip"), "127.0.0.1");

    // The usage log keeps the address and where it was found, so an
    // operator can tell the proxy's own address from a client's.
    for (response, client_ip, source) in [
        (&allowed, "203.0.113.7", "x-forwarded-for"),
        (&spoofed, "198.51.100.1", "x-forwarded-for"),
        (&untrusted, "127.0.0.2", "peer"),
        (&malformed, "127.0.0.1", "malformed"),
        (&direct, "127.0.0.1", "peer"),
    ] {
        let entry = w.logged(response.header("x-request-id")).await;
        assert_eq!(
            (entry.client_ip.as_str(), entry.client_ip_source.as_str()),
            (client_ip, source),
            "{entry:?}"
        );
    }
}

#[test]
fn flags_that_cannot_work_together_stop_the_start() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let envs = [("IPGATE_ENFORCER_TOKEN", "ipg_enf_unused")];
    for (args, expected) in [
        (
            &["--trusted-proxies", "10.0.0.0/8", "--trusted-hops", "1"][..],
            "--trusted-hops and --trusted-proxies are two ways",
        ),
        (
            &["--client-ip-header", "X-Real-IP"],
            "list them with --trusted-proxies",
        ),
        (&["--trusted-proxies", "10.0.0.1/8"], "write 10.0.0.0/8"),
        (&["--trusted-proxies", "0.0.0.0/0"], "trusts every address"),
        (&["--proxy-protocol"], "--upstream"),
    ] {
        let mut all = vec!["enforcer", "--grpc-listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let out = run_to_end(dir.path(), &all, &envs, Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
