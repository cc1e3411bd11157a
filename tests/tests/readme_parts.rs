//! The README's "Running the parts alone" commands, run as written: a
//! control plane and an enforcer started exactly as the two blocks say,
//! which then sync with the token the blocks share.
//!
//! Alone in its test binary: the commands bind fixed ports, and no other
//! test's connections may hold one of them as an ephemeral port meanwhile.

use std::time::Duration;

use ipgate_tests::{docs, eventually, http, process::DocCommand};

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
