//! `docs/admin-api.md`, run as written: every `sh` block, in order, in bash,
//! with grpcurl through server reflection, against a fresh control plane on
//! SQLite and on PostgreSQL (and, in `readme_walkthrough.rs`, against the
//! `ipgate dev` the README's walkthrough ran on). A block followed by a
//! `text` block that starts with `ERROR:` must fail with the `Code:` shown
//! there; every other block must succeed. Every RPC of `admin.proto` must be
//! called by a block that succeeds, so this test is also the proof that each
//! RPC is reachable by grpcurl on both backends.

use std::collections::BTreeSet;

use ipgate_tests::{
    Backend, ControlPlane, OWNER_TOKEN,
    docs::{self, assigned, examples},
    tools,
};

/// The RPC names of `service AdminService`.
fn rpcs(proto: &str) -> Vec<String> {
    proto
        .lines()
        .filter_map(|l| l.trim().strip_prefix("rpc "))
        .map(|l| l[..l.find('(').expect("rpc Name(")].trim().to_owned())
        .collect()
}

/// Every RPC has an example that succeeds; an example that shows an error
/// makes exactly one call and assigns nothing.
#[test]
fn the_guide_covers_every_rpc() {
    let examples = examples(&docs::read("docs/admin-api.md"));
    let called: BTreeSet<&str> = examples
        .iter()
        .filter(|e| e.expect_error.is_none())
        .flat_map(|e| e.code.split("AdminService/").skip(1))
        .map(|after| {
            let end = after
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(after.len());
            &after[..end]
        })
        .collect();
    let uncovered: Vec<String> = rpcs(&docs::read("proto/ipgate/admin/v1/admin.proto"))
        .into_iter()
        .filter(|rpc| !called.contains(rpc.as_str()))
        .collect();
    assert!(
        uncovered.is_empty(),
        "docs/admin-api.md has no succeeding example for {uncovered:?}"
    );
    for e in examples.iter().filter(|e| e.expect_error.is_some()) {
        assert_eq!(
            e.code.matches("grpcurl ").count(),
            1,
            "a block that shows an error holds exactly one call, so the error is that call's:\n{}",
            e.code
        );
        assert!(assigned(&e.code).is_empty(), "{}", e.code);
    }
}

async fn every_example_runs_as_written(backend: Backend) {
    if !tools::available(&["grpcurl", "jq"]) {
        return;
    }
    let cp = ControlPlane::start(&backend);
    let dir = tempfile::tempdir().expect("temporary directory");
    let transcript = docs::run_admin_guide(dir.path(), cp.addr, &[("IPGATE_TOKEN", OWNER_TOKEN)]);
    println!("{transcript}");
}

ipgate_tests::on_both_backends!(every_example_runs_as_written);
