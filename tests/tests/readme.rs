//! The README's walkthrough, run as written: every `sh` block of its
//! "Walkthrough" section, in order, in bash, against `ipgate dev` on its
//! default addresses. What the commands print is checked against what the
//! README says they show.

use std::{path::Path, process::Command, time::Duration};

use ipgate_tests::{
    eventually, http,
    process::{DevMode, DocCommand},
};

/// The `sh` code blocks of the README section titled `section`.
fn shell_blocks(readme: &str, section: &str) -> Vec<String> {
    let start = readme
        .find(&format!("\n## {section}\n"))
        .unwrap_or_else(|| panic!("README has no section {section:?}"));
    let body = &readme[start + 1..];
    let end = body[3..].find("\n## ").map_or(body.len(), |i| i + 3);
    let mut blocks = Vec::new();
    let mut rest = &body[..end];
    while let Some(open) = rest.find("```sh\n") {
        let after = &rest[open + 6..];
        let close = after.find("```").expect("closed code block");
        blocks.push(after[..close].to_owned());
        rest = &after[close + 3..];
    }
    blocks
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_works_as_written() {
    let missing: Vec<&str> = ["grpcurl", "curl", "jq"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !missing.is_empty() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "CI=true but {missing:?} are missing: tests/run.sh installs grpcurl; curl and jq come with the machine"
            );
        }
        eprintln!("skipped: {missing:?} not installed");
        return;
    }

    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let script = shell_blocks(&readme, "Walkthrough").join("\n");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parts_run_alone_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let blocks = shell_blocks(&readme, "Running the parts alone");
    assert_eq!(blocks.len(), 2, "one block per terminal: {blocks:?}");
    // Drop the comment line; join continued lines.
    let command = |block: &str| -> String {
        block
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| l.trim_end_matches('\\').trim())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let control_plane = DocCommand::start(
        dir.path(),
        &command(&blocks[0]),
        &["control-plane serving gRPC on"],
    );
    assert_eq!(control_plane.addrs[0].to_string(), "127.0.0.1:50052");
    let enforcer = DocCommand::start(
        dir.path(),
        &command(&blocks[1]),
        &["enforcer serving gRPC on", "enforcer serving HTTP proxy on"],
    );
    assert_eq!(enforcer.addrs[1].to_string(), "127.0.0.1:8082");
    assert!(
        dir.path().join("parts.db").exists(),
        "the SQLite file is where the README says"
    );
    // Synced with the token: the API is unknown (404), not "not ready" (503).
    let proxy = enforcer.addrs[1];
    eventually(
        Duration::from_secs(15),
        "the enforcer to sync with the token",
        || async move {
            let res = http::get("127.0.0.1".parse().expect("address"), proxy, "/", &[]).await;
            (res.status == 404).then_some(())
        },
    )
    .await;
}
