//! grpcurl, with no `.proto` files at hand, lists the services of both
//! processes through server reflection (grpcurl 1.8 speaks only v1alpha) and
//! gets SERVING from `grpc.health.v1.Health/Check` on each.

use std::process::Command;

use ipgate_tests::{Backend, ControlPlane, Enforcer, upstream};

/// Runs grpcurl, or returns `None` when it is not installed (outside CI).
fn grpcurl(args: &[&str]) -> Option<String> {
    match Command::new("grpcurl").args(args).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "grpcurl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(String::from_utf8_lossy(&out.stdout).into_owned())
        }
        Err(e) => {
            ipgate_tests::skip::skip(&format!(
                "grpcurl cannot run ({e}); tests/run.sh installs it"
            ));
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_services_and_health_says_serving() {
    let backend = Backend::sqlite();
    let cp = ControlPlane::start(&backend);
    let enforcer = Enforcer::start(&cp, "orders", upstream::start().await);
    let cp_addr = cp.addr.to_string();
    let enforcer_addr = enforcer.grpc_addr.to_string();

    let Some(listed) = grpcurl(&["-plaintext", &cp_addr, "list"]) else {
        return;
    };
    for service in [
        "ipgate.admin.v1.AdminService",
        "ipgate.sync.v1.SyncService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            listed.lines().any(|l| l == service),
            "{service} missing from:\n{listed}"
        );
    }
    let listed = grpcurl(&["-plaintext", &enforcer_addr, "list"]).unwrap_or_default();
    for service in ["ipgate.check.v1.CheckService", "grpc.health.v1.Health"] {
        assert!(
            listed.lines().any(|l| l == service),
            "{service} missing from:\n{listed}"
        );
    }

    // Methods are described too, so grpcurl can build requests from JSON.
    let described = grpcurl(&[
        "-plaintext",
        &cp_addr,
        "describe",
        "ipgate.admin.v1.AdminService",
    ])
    .unwrap_or_default();
    assert!(described.contains("rpc SetApiKeyAllowlist"), "{described}");

    for addr in [&cp_addr, &enforcer_addr] {
        let health =
            grpcurl(&["-plaintext", addr, "grpc.health.v1.Health/Check"]).unwrap_or_default();
        assert!(health.contains("\"SERVING\""), "{addr}: {health}");
    }
}

/// grpcurl shows a refused write's field violations as JSON: reflection
/// also serves `google.rpc`'s error details, so grpcurl can decode the
/// `google.rpc.BadRequest` detail instead of printing it as base64.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_decodes_field_violations() {
    let backend = Backend::sqlite();
    let cp = ControlPlane::start(&backend);
    let auth = format!("authorization: Bearer {}", ipgate_tests::OWNER_TOKEN);
    let addr = cp.addr.to_string();
    let run = |method: &str, body: &str| {
        Command::new("grpcurl")
            .args(["-plaintext", "-H", &auth, "-d", body, &addr])
            .arg(format!("ipgate.admin.v1.AdminService/{method}"))
            .output()
    };
    let Ok(created) = run("CreateApi", r#"{"slug": "orders", "name": "Orders"}"#) else {
        ipgate_tests::skip::skip("grpcurl cannot run; tests/run.sh installs it");
        return;
    };
    assert!(created.status.success(), "{created:?}");
    let refused = run(
        "SetApiAllowlist",
        r#"{"slug": "orders", "allowlist": {"entries": [{"cidr": "203.0.113.5/24"}]}}"#,
    )
    .expect("grpcurl");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("Code: InvalidArgument"), "{stderr}");
    assert!(
        stderr.contains("fieldViolations")
            && stderr.contains("allowlist.entries[0].cidr")
            && !stderr.contains("is not recognized"),
        "grpcurl could not decode the field violations:\n{stderr}"
    );
}
