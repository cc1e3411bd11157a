//! grpcurl, with no `.proto` files at hand, lists the services of both
//! processes through server reflection (grpcurl 1.8 speaks only v1alpha) —
//! each exactly the services it answers, Envoy's ext_authz among the
//! enforcer's — and gets SERVING from `grpc.health.v1.Health/Check` on each.

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

/// Runs grpcurl expecting it to fail; its stderr, or `None` without grpcurl.
fn grpcurl_fails(args: &[&str]) -> Option<String> {
    let out = Command::new("grpcurl").args(args).output().ok()?;
    assert!(
        !out.status.success(),
        "grpcurl {args:?} should fail, printed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    Some(String::from_utf8_lossy(&out.stderr).into_owned())
}

const REFLECTION: [&str; 2] = [
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// The services `list` shows, sorted.
fn listed(addr: &str) -> Option<Vec<String>> {
    let out = grpcurl(&["-plaintext", addr, "list"])?;
    let mut services: Vec<String> = out.lines().map(str::to_owned).collect();
    services.sort();
    Some(services)
}

fn sorted(services: &[&str]) -> Vec<String> {
    let mut services: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
    services.sort();
    services
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_services_and_health_says_serving() {
    let backend = Backend::sqlite();
    let cp = ControlPlane::start(&backend);
    let enforcer = Enforcer::start(&cp, "orders", upstream::start().await);
    let cp_addr = cp.addr.to_string();
    let enforcer_addr = enforcer.grpc_addr.to_string();

    let Some(listed_cp) = listed(&cp_addr) else {
        return;
    };
    let [v1, v1alpha] = REFLECTION;
    assert_eq!(
        listed_cp,
        sorted(&[
            "ipgate.admin.v1.AdminService",
            "ipgate.sync.v1.SyncService",
            "grpc.health.v1.Health",
            v1,
            v1alpha,
        ]),
        "the control plane lists what it serves, and only that"
    );
    assert_eq!(
        listed(&enforcer_addr).unwrap_or_default(),
        sorted(&[
            "ipgate.check.v1.CheckService",
            "envoy.service.auth.v3.Authorization",
            "grpc.health.v1.Health",
            v1,
            v1alpha
        ]),
        "the enforcer lists what it serves, and only that"
    );

    // A service a server lacks is not described there either, so grpcurl
    // says so instead of calling it and getting an empty UNIMPLEMENTED.
    for (addr, absent) in [
        (&cp_addr, "ipgate.check.v1.CheckService"),
        (&enforcer_addr, "ipgate.admin.v1.AdminService"),
        (&enforcer_addr, "ipgate.sync.v1.SyncService"),
    ] {
        let stderr = grpcurl_fails(&["-plaintext", addr, "describe", absent]).unwrap_or_default();
        assert!(
            stderr.contains(&format!("Symbol not found: {absent}")),
            "{addr} {absent}: {stderr}"
        );
    }
    let stderr = grpcurl_fails(&[
        "-plaintext",
        "-d",
        r#"{"api": "orders", "client_ip": "203.0.113.7"}"#,
        &cp_addr,
        "ipgate.check.v1.CheckService/Check",
    ])
    .unwrap_or_default();
    assert!(
        stderr.contains("ipgate.check.v1.CheckService") && !stderr.contains("Unimplemented"),
        "{stderr}"
    );

    // Methods are described too, so grpcurl can build requests from JSON.
    let described = grpcurl(&[
        "-plaintext",
        &cp_addr,
        "describe",
        "ipgate.admin.v1.AdminService",
    ])
    .unwrap_or_default();
    assert!(described.contains("rpc SetApiKeyAllowlist"), "{described}");
    let described = grpcurl(&[
        "-plaintext",
        &enforcer_addr,
        "describe",
        "ipgate.check.v1.CheckService",
    ])
    .unwrap_or_default();
    assert!(described.contains("rpc Check"), "{described}");
    let described = grpcurl(&[
        "-plaintext",
        &enforcer_addr,
        "describe",
        "envoy.service.auth.v3.Authorization",
    ])
    .unwrap_or_default();
    assert!(
        described.contains("rpc Check ( .envoy.service.auth.v3.CheckRequest )"),
        "{described}"
    );

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

/// The enforcer serves the `google.rpc` error details too: grpcurl decodes
/// the check door's field violation for a bad client address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_decodes_the_check_doors_field_violations() {
    let backend = Backend::sqlite();
    let cp = ControlPlane::start(&backend);
    let enforcer = Enforcer::start(&cp, "orders", upstream::start().await);
    let addr = enforcer.grpc_addr.to_string();
    let Some(stderr) = grpcurl_fails(&[
        "-plaintext",
        "-d",
        r#"{"api": "orders", "client_ip": "not-an-ip"}"#,
        &addr,
        "ipgate.check.v1.CheckService/Check",
    ]) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but grpcurl cannot run: tests/run.sh installs it"
        );
        eprintln!("skipped: grpcurl cannot run");
        return;
    };
    assert!(stderr.contains("Code: InvalidArgument"), "{stderr}");
    assert!(
        stderr.contains("fieldViolations")
            && stderr.contains("\"field\":\"client_ip\"")
            && !stderr.contains("is not recognized"),
        "grpcurl could not decode the field violation:\n{stderr}"
    );
}
