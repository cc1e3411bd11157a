//! The README's "The ipgate CLI" section, run as written: its first block
//! (build the binary, put it on PATH) in the repository's root, as the
//! README has it run from the checkout; the rest in order, in bash, with
//! the PATH the first block left, against `ipgate dev`.
//!
//! `ipgate dev` runs on free ports (so a developer's own `ipgate dev` on the
//! defaults does not get in the way): the commands find it through
//! `IPGATE_ADDR`, and the one line naming the dev proxy's address is
//! pointed at the proxy it bound.

use std::process::Command;

use ipgate_tests::{docs, process::DevMode, tools};

/// How the README names the dev proxy.
const README_PROXY: &str = "PROXY=127.0.0.1:7180 ";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_section_works_as_written() {
    if !tools::available(&["curl", "jq"]) {
        return;
    }
    let blocks = docs::section_blocks(&docs::readme(), "The ipgate CLI");
    let (install, rest) = blocks.split_first().expect("the section has blocks");
    assert!(
        install.contains("export PATH="),
        "the section's first block puts ipgate on the PATH:\n{install}"
    );
    assert!(
        !install.contains("--release") && !install.contains("cargo install"),
        "the block the test runs builds a debug binary (the test stays fast):\n{install}"
    );
    assert_eq!(
        docs::dev_default("--proxy-listen"),
        README_PROXY.trim_start_matches("PROXY=").trim(),
        "the README's PROXY is where `ipgate dev` puts its proxy by default"
    );
    let script = rest.join("\n");
    assert!(
        !script.contains("7151") && !script.contains("--addr"),
        "the commands rely on IPGATE_ADDR's default, not a written address"
    );

    // The install block, in the checkout; what it leaves on PATH carries on.
    let root = docs::repo_root();
    let out = Command::new("bash")
        .args([
            "-euo",
            "pipefail",
            "-c",
            &format!("{install}\nprintf '%s' \"$PATH\""),
        ])
        .current_dir(&root)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "the install block failed\n{install}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8(out.stdout).expect("PATH is UTF-8");
    let bin_dir = root.join("target/debug");
    assert!(
        path.starts_with(&format!("{}:", bin_dir.display())),
        "the install block puts {} first on PATH: {path}",
        bin_dir.display()
    );
    assert!(
        bin_dir.join("ipgate").exists(),
        "it built target/debug/ipgate"
    );

    let dir = tempfile::tempdir().expect("temporary directory");
    let dev = DevMode::start(dir.path());
    let script = docs::replace_once(&script, README_PROXY, &format!("PROXY={} ", dev.proxy));
    dev.wait_synced().await;

    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("IPGATE_ADDR", format!("http://{}", dev.control_plane))
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
        // allowlist add --wait, then enforcers
        "Live on every enforcer (1 of 1)",
        "LAST NACK",
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
