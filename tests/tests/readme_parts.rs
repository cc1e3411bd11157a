//! The README's "Running the parts alone" commands, run as written: a
//! control plane and an enforcer started exactly as the two blocks say,
//! which then sync with the token the blocks share.
//!
//! On free ports: the listen addresses the blocks name become port 0, and
//! the enforcer is pointed at the address the control plane bound.

use std::time::Duration;

use ipgate_tests::{docs, eventually, http, process::DocCommand};

/// Addresses the blocks name.
const CONTROL_PLANE: &str = "127.0.0.1:7152";
const CHECK: &str = "127.0.0.1:7162";
const PROXY: &str = "127.0.0.1:7182";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parts_run_alone_as_written() {
    let blocks = docs::section_blocks(&docs::readme(), "Running the parts alone");
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
        &docs::replace_once(
            &command(&blocks[0]),
            &format!("--listen {CONTROL_PLANE} "),
            "--listen 127.0.0.1:0 ",
        ),
        &["control-plane serving gRPC on"],
    );
    let mut enforcer_line = command(&blocks[1]);
    for (from, to) in [
        (
            format!("--control-plane http://{CONTROL_PLANE} "),
            format!("--control-plane http://{} ", control_plane.addrs[0]),
        ),
        (
            format!("--grpc-listen {CHECK} "),
            "--grpc-listen 127.0.0.1:0 ".to_owned(),
        ),
        (
            format!("--proxy-listen {PROXY} "),
            "--proxy-listen 127.0.0.1:0 ".to_owned(),
        ),
    ] {
        enforcer_line = docs::replace_once(&enforcer_line, &from, &to);
    }
    let enforcer = DocCommand::start(
        dir.path(),
        &enforcer_line,
        &["enforcer serving gRPC on", "enforcer serving HTTP proxy on"],
    );
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
