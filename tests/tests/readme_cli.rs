//! The README's "The ipgate CLI" section, run as written: its `sh` blocks
//! in order, in bash, with the built `ipgate` first on PATH, against
//! `ipgate dev`.
//!
//! `ipgate dev` runs on ports of its own (so a developer's own `ipgate dev`
//! on the defaults does not get in the way): the commands find it through
//! `IPGATE_ADDR`, and the one line naming the dev proxy's address has its
//! port moved. Alone in its test binary: no other test's connections may
//! hold one of these fixed ports as an ephemeral port meanwhile.

use std::{process::Command, time::Duration};

use ipgate_tests::{
    docs, eventually,
    process::{DevMode, ipgate_bin},
    tools,
};

const CONTROL_PLANE: &str = "127.0.0.1:50053";
const CHECK: &str = "127.0.0.1:50063";
const PROXY: &str = "127.0.0.1:8083";
const UPSTREAM: &str = "127.0.0.1:8084";
/// How the README names the dev proxy; replaced by [`PROXY`].
const README_PROXY: &str = "PROXY=127.0.0.1:8080";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_section_works_as_written() {
    if !tools::available(&["curl", "jq"]) {
        return;
    }
    let script = docs::section_blocks(&docs::readme(), "The ipgate CLI").join("\n");
    assert_eq!(
        script.matches(README_PROXY).count(),
        1,
        "the section names the dev proxy once, as {README_PROXY:?}:\n{script}"
    );
    assert!(
        !script.contains("50051") && !script.contains("--addr"),
        "the commands rely on IPGATE_ADDR's default, not a written address"
    );
    let script = script.replace(README_PROXY, &format!("PROXY={PROXY}"));

    let dir = tempfile::tempdir().expect("temporary directory");
    let dev = DevMode::start_with(
        dir.path(),
        &[
            "--listen",
            CONTROL_PLANE,
            "--grpc-listen",
            CHECK,
            "--proxy-listen",
            PROXY,
            "--upstream-listen",
            UPSTREAM,
        ],
    );
    let proxy = dev.proxy;
    // The dev enforcer takes its first snapshot right after start.
    eventually(
        Duration::from_secs(15),
        "the dev enforcer to sync",
        || async move {
            let res =
                ipgate_tests::http::get("127.0.0.1".parse().expect("address"), proxy, "/", &[])
                    .await;
            (res.status == 401).then_some(())
        },
    )
    .await;

    let bin = ipgate_bin();
    let bin_dir = bin.parent().expect("bin dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("IPGATE_ADDR", format!("http://{CONTROL_PLANE}"))
        .env("IPGATE_LOG", "warn")
        .env_remove("IPGATE_TOKEN")
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the CLI section failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );

    for expected in [
        // apis list
        "SLUG",
        "demo",
        // keys get
        "deploy bot",
        // allowlist add, with its label
        "Stored at revision",
        "this machine",
        // revision status --wait
        "yes: every connected enforcer has it",
        // the two requests
        "hello from the ipgate demo upstream",
        r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Request IP address is not in the API key's allowlist"}}"#,
        // test-access
        "BLOCKED: 127.0.0.2 gets 403 IP_NOT_ALLOWED (IP_NOT_ALLOWED_KEY)",
        // the dry run and its lockout preview
        "Dry run: nothing was stored",
        "Lockout risk: 1 address seen",
        "refused; nothing was stored",
        // logs query
        "IP_NOT_ALLOWED_KEY",
        // keys rotate
        "the old secret keeps working until",
        "shown only now",
        // audit list
        "ACTION",
    ] {
        assert!(
            stdout.contains(expected),
            "the CLI section's output lacks {expected:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
    }
    // The lockout preview and the refusal name the address at risk.
    let preview = &stdout[stdout.find("Lockout risk").expect("preview")..];
    assert!(preview.contains("127.0.0.1"), "{stdout}");
    assert!(stderr.contains("LOCKOUT_RISK"), "{stderr}");
    assert!(stderr.contains("127.0.0.1"), "{stderr}");
    assert!(stderr.contains("--acknowledge-lockout-risk"), "{stderr}");

    // The export is a CSV file with the blocked request in it.
    let mut reader =
        csv::Reader::from_path(dir.path().join("blocked.csv")).expect("blocked.csv was written");
    let headers = reader.headers().expect("header row").clone();
    let ip = headers
        .iter()
        .position(|h| h == "client_ip")
        .expect("a client_ip column");
    let blocked: Vec<String> = reader
        .records()
        .map(|r| r.expect("record")[ip].to_owned())
        .collect();
    assert!(blocked.contains(&"127.0.0.2".to_owned()), "{blocked:?}");
}
