//! The gRPC check door beyond loopback, with the real binary: a Check
//! caller names the client address itself, so an enforcer whose gRPC port
//! listens on every address (`0.0.0.0:0`; the test still talks over
//! 127.0.0.1) refuses to start without a door token, and with one answers
//! Check only to callers who present it. Health and reflection stay open,
//! and the admitted call lands in the usage log as the `check` door's.

use std::{net::SocketAddr, process::Command, time::Duration};

use ipgate_shared::proto::{
    admin::v1::{CreateApiRequest, QueryUsageLogsRequest},
    check::v1::{CheckRequest, CheckResponse, check_service_client::CheckServiceClient},
};
use ipgate_tests::{
    Backend, ControlPlane, ENFORCER_TOKEN, Enforcer,
    process::run_to_end,
    tools, upstream,
    world::{API, PROPAGATION},
};
use tonic::Code;

const DOOR_TOKEN: &str = "e2e-door-token-0123456789abcdef";

/// One Check call to the API with `authorization` (none when `None`).
async fn check(
    addr: SocketAddr,
    authorization: Option<&str>,
    request_id: &str,
) -> Result<CheckResponse, tonic::Status> {
    let mut request = tonic::Request::new(CheckRequest {
        api: API.into(),
        client_ip: "203.0.113.7".into(),
        method: "GET".into(),
        path: "/orders/7".into(),
        request_id: request_id.into(),
        ..Default::default()
    });
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().expect("ascii metadata"));
    }
    let mut client = CheckServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to the check door");
    client.check(request).await.map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_the_check_door_asks_for_its_token() {
    let backend = Backend::sqlite();
    let cp = ControlPlane::start(&backend);
    let dir = tempfile::tempdir().expect("temporary directory");

    // Without a token: refused at start, naming the flag and its variable.
    let cp_url = cp.url();
    let refused = run_to_end(
        dir.path(),
        &[
            "enforcer",
            "--control-plane",
            &cp_url,
            "--grpc-listen",
            "0.0.0.0:0",
        ],
        &[("IPGATE_ENFORCER_TOKEN", ENFORCER_TOKEN)],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "started without a token");
    for said in [
        "--grpc-listen 0.0.0.0:0 is beyond loopback",
        "--check-token",
        "IPGATE_CHECK_TOKEN",
    ] {
        assert!(stderr.contains(said), "{said:?} missing from:\n{stderr}");
    }
    assert!(
        !String::from_utf8_lossy(&refused.stdout).contains("serving gRPC"),
        "refused before listening"
    );

    // With a token (from its variable): it listens on every address.
    let mut admin = cp.admin().await;
    admin
        .create_api(CreateApiRequest {
            slug: API.into(),
            name: "Orders".into(),
            ..Default::default()
        })
        .await
        .expect("create API");
    let enforcer = Enforcer::start_listening(
        &cp,
        API,
        upstream::start().await,
        "0.0.0.0:0",
        &[("IPGATE_CHECK_TOKEN", DOOR_TOKEN)],
    );
    assert!(
        enforcer.grpc_addr.ip().is_unspecified(),
        "{}",
        enforcer.grpc_addr
    );
    let door = SocketAddr::from(([127, 0, 0, 1], enforcer.grpc_addr.port()));
    let bearer = format!("Bearer {DOOR_TOKEN}");
    let (answer, _) = ipgate_tests::eventually(PROPAGATION, "the first snapshot", || {
        let bearer = bearer.clone();
        async move {
            let answer = check(door, Some(&bearer), "with-the-token").await.ok()?;
            (answer.reason != "NOT_SYNCED").then_some(answer)
        }
    })
    .await;
    // Decided as always: no key is a 401, and this is the answer.
    assert_eq!(
        (answer.http_status, answer.reason.as_str()),
        (401, "INVALID_API_KEY")
    );

    for (authorization, id, said) in [
        (None, "no-token", "needs a door token"),
        (
            Some("Bearer wrong-token-0123456789abcdef"),
            "wrong",
            "not valid",
        ),
        (Some(DOOR_TOKEN), "no-scheme", "malformed"),
    ] {
        let status = check(door, authorization, id)
            .await
            .expect_err("refused without the right token");
        assert_eq!(status.code(), Code::Unauthenticated, "{id}: {status:?}");
        assert!(status.message().contains(said), "{id}: {status:?}");
    }

    // The admitted call is the check door's in the usage log; the refused
    // ones were never decided.
    let (entries, _) = ipgate_tests::eventually(PROPAGATION, "the check in the log", || {
        let mut admin = admin.clone();
        async move {
            let page = admin
                .query_usage_logs(QueryUsageLogsRequest {
                    door: "check".into(),
                    page_size: 1000,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            let found = page
                .entries
                .iter()
                .any(|e| e.request_id == "with-the-token");
            found.then_some(page.entries)
        }
    })
    .await;
    assert!(entries.iter().all(|e| e.door == "check"), "{entries:?}");
    assert!(
        entries
            .iter()
            .all(|e| !["no-token", "wrong", "no-scheme"].contains(&e.request_id.as_str())),
        "{entries:?}"
    );

    // The token is a secret: in no log line, and not in --help when set.
    assert!(
        !enforcer.log().contains(DOOR_TOKEN),
        "the door token was logged:\n{}",
        enforcer.log()
    );
    let help = Command::new(ipgate_tests::process::ipgate_bin())
        .args(["enforcer", "--help"])
        .env("IPGATE_CHECK_TOKEN", DOOR_TOKEN)
        .output()
        .expect("run ipgate enforcer --help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--check-token") && help.contains("IPGATE_CHECK_TOKEN"),
        "{help}"
    );
    assert!(!help.contains(DOOR_TOKEN), "{help}");

    // grpcurl: reflection and health need no token; Check does.
    if !tools::available(&["grpcurl"]) {
        return;
    }
    let door = door.to_string();
    let grpcurl = |args: &[&str]| {
        let mut all = vec!["-plaintext"];
        all.extend_from_slice(args);
        Command::new("grpcurl")
            .args(&all)
            .output()
            .expect("run grpcurl")
    };
    let listed = grpcurl(&[&door, "list"]);
    assert!(listed.status.success(), "{listed:?}");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("ipgate.check.v1.CheckService"));
    let health = grpcurl(&[&door, "grpc.health.v1.Health/Check"]);
    assert!(
        String::from_utf8_lossy(&health.stdout).contains("SERVING"),
        "{health:?}"
    );
    let body = r#"{"api": "orders", "client_ip": "203.0.113.7"}"#;
    let anonymous = grpcurl(&["-d", body, &door, "ipgate.check.v1.CheckService/Check"]);
    assert!(!anonymous.status.success());
    assert!(
        String::from_utf8_lossy(&anonymous.stderr).contains("Code: Unauthenticated"),
        "{anonymous:?}"
    );
    let header = format!("authorization: {bearer}");
    let admitted = grpcurl(&[
        "-H",
        &header,
        "-d",
        body,
        &door,
        "ipgate.check.v1.CheckService/Check",
    ]);
    assert!(admitted.status.success(), "{admitted:?}");
    assert!(String::from_utf8_lossy(&admitted.stdout).contains("INVALID_API_KEY"));
}
