//! The README's walkthrough, run as written: every `sh` block of its
//! "Walkthrough" section, in order, in bash, against `ipgate dev` on its
//! default addresses. What the commands print is checked against what the
//! README says they show.
//!
//! Alone in its test binary: `ipgate dev` binds fixed ports, and no other
//! test's connections may hold one of them as an ephemeral port meanwhile.

use std::{process::Command, time::Duration};

use ipgate_tests::{docs, eventually, process::DevMode, tools};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_works_as_written() {
    if !tools::available(&["grpcurl", "curl", "jq"]) {
        return;
    }
    let script = docs::section_blocks(&docs::readme(), "Walkthrough").join("\n");
    assert!(
        script.contains("CreateApiKey"),
        "walkthrough blocks not found:\n{script}"
    );

    let dir = tempfile::tempdir().expect("temporary directory");
    let dev = DevMode::start(dir.path());
    assert_eq!(
        dev.control_plane.to_string(),
        "127.0.0.1:50051",
        "the README assumes the default addresses"
    );
    assert_eq!(dev.proxy.to_string(), "127.0.0.1:8080");
    // The enforcer takes its first snapshot right after start.
    eventually(
        Duration::from_secs(15),
        "the dev enforcer to sync",
        || async {
            let out = Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "http://127.0.0.1:8080/",
                ])
                .output()
                .ok()?;
            (String::from_utf8_lossy(&out.stdout) == "401").then_some(())
        },
    )
    .await;

    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "walkthrough failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );

    for expected in [
        "ipgate.admin.v1.AdminService",
        "ipgate.sync.v1.SyncService",
        "ipgate.check.v1.CheckService",
        "\"SERVING\"",
        "hello from the ipgate demo upstream",
        "HTTP/1.1 403",
        r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Request IP address is not in the API key's allowlist"}}"#,
        "x-ipgate-client-ip: 127.0.0.2",
        "x-request-id: ",
        "\n200\n",
        "\n401\n",
        "IP_NOT_ALLOWED_KEY",
        "\"clientIp\": \"127.0.0.2\"",
        "IP_NOT_ALLOWED_API",
    ] {
        assert!(
            stdout.contains(expected),
            "walkthrough output lacks {expected:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
    }
    // The refused writes name the caller at risk, and each bad entry and rule.
    assert!(
        stdout.contains("refused, as expected"),
        "the lockout refusal\n{stdout}"
    );
    for expected in [
        "LOCKOUT_RISK",
        "127.0.0.2 (1 request)",
        "InvalidArgument",
        "203.0.113.0/24",
        "010.0.0.1",
        "leading zero",
    ] {
        assert!(
            stderr.contains(expected),
            "error output lacks {expected:?}\n{stderr}"
        );
    }
}
