//! The README's "The ipgate CLI" section, run as written: its `sh` blocks in
//! order, in bash, with this `ipgate` first on PATH, against `ipgate dev`.
//!
//! `ipgate dev` runs on ports of its own (so this test and the walkthrough's
//! can run side by side): the commands find it through `IPGATE_ADDR`, and the
//! one line naming the dev proxy's address has its port moved.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use crate::support::{eventually, ipgate_command};

const CONTROL_PLANE: &str = "127.0.0.1:50053";
const CHECK: &str = "127.0.0.1:50063";
const PROXY: &str = "127.0.0.1:8083";
const UPSTREAM: &str = "127.0.0.1:8084";
/// How the README names the dev proxy; replaced by [`PROXY`].
const README_PROXY: &str = "PROXY=127.0.0.1:8080";

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

/// `ipgate dev`, killed when dropped.
struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_dev(dir: &Path) -> Dev {
    let mut child = ipgate_command(dir)
        .args(["dev", "--listen", CONTROL_PLANE, "--grpc-listen", CHECK])
        .args(["--proxy-listen", PROXY, "--upstream-listen", UPSTREAM])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ipgate dev");
    let stdout = child.stdout.take().expect("stdout");
    let dev = Dev(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("Press Ctrl-C to stop") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("ipgate dev prints its banner within 60 s (are ports 50053/50063/8083/8084 free?)");
    dev
}

#[test]
fn the_cli_section_works_as_written() {
    let missing: Vec<&str> = ["curl", "jq"].into_iter().filter(|t| !have(t)).collect();
    if !missing.is_empty() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {missing:?} are missing"
        );
        eprintln!("skipped: {missing:?} not installed");
        return;
    }
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let script = shell_blocks(&readme, "The ipgate CLI").join("\n");
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
    let _dev = start_dev(dir.path());
    // The dev enforcer takes its first snapshot right after start.
    eventually("the dev enforcer to sync", || {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{PROXY}/"))
            .output()
            .ok()?;
        (String::from_utf8_lossy(&out.stdout) == "401").then_some(())
    });

    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ipgate"))
        .parent()
        .expect("bin dir");
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
