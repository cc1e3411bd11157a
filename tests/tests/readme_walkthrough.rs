//! The README's walkthrough, run as written: every `sh` block of its
//! "Walkthrough" section, in order, in bash, against `ipgate dev`. What the
//! commands print is checked against what the README says they show. Then
//! `docs/admin-api.md`, top to bottom, against the same `ipgate dev`: the
//! README sends readers on to it, so the two must not clash.
//!
//! `ipgate dev` runs on free ports: the lines that set `CP`, `CHECK`,
//! `PROXY` and `ENDPOINT` to its default addresses are pointed at the ones
//! it bound, and no other line may name a default address.

use std::process::Command;

use ipgate_tests::{docs, process::DevMode, tools};

/// The walkthrough's variables, the `ipgate dev` flag each stands for, and
/// the address the README gives them.
const VARIABLES: [(&str, &str, &str); 4] = [
    ("CP", "--listen", "127.0.0.1:7151"),
    ("CHECK", "--grpc-listen", "127.0.0.1:7161"),
    ("PROXY", "--proxy-listen", "127.0.0.1:7180"),
    ("ENDPOINT", "--auth-listen", "127.0.0.1:7190"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_then_the_admin_guide_work_as_written() {
    if !tools::available(&["grpcurl", "curl", "jq"]) {
        return;
    }
    let mut script = docs::section_blocks(&docs::readme(), "Walkthrough").join("\n");
    assert!(
        script.contains("CreateApiKey"),
        "walkthrough blocks not found:\n{script}"
    );

    let dir = tempfile::tempdir().expect("temporary directory");
    let dev = DevMode::start(dir.path());
    for (var, flag, readme_addr) in VARIABLES {
        assert_eq!(
            docs::dev_default(flag),
            readme_addr,
            "the README's {var} is where `ipgate dev` listens by default ({flag})"
        );
        let bound = match var {
            "CP" => dev.control_plane,
            "CHECK" => dev.check,
            "ENDPOINT" => dev.auth,
            _ => dev.proxy,
        };
        script = docs::replace_once(
            &script,
            &format!("\n{var}={readme_addr} "),
            &format!("\n{var}={bound} "),
        );
        assert!(
            !script.contains(readme_addr),
            "only the {var}= line may name {readme_addr}; the commands use ${var}:\n{script}"
        );
    }
    dev.wait_synced().await;

    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env_remove("IPGATE_TOKEN")
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
        "\"door\": \"proxy\"",
        "\"clientIpSource\": \"peer\"",
        // The auth endpoint and ext_authz refuse alike, and say so.
        "x-ipgate-error: {\"error\":{\"code\":\"IP_NOT_ALLOWED\"",
        "\"deniedResponse\"",
        "\"door\": \"auth_request\"",
        "\"door\": \"ext_authz\"",
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

    // The guide next, on the same `ipgate dev`, reading its token where the
    // README left it.
    let transcript = docs::run_admin_guide(dir.path(), dev.control_plane, &[]);
    println!("{transcript}");
    // Here the guide's door filter finds the walkthrough's call to the
    // check door.
    assert!(
        transcript.contains("\"door\": \"check\""),
        "the door filter found no check-door request:\n{transcript}"
    );
}
