//! Errors as an operator reads them: field violations line by line, the
//! addresses a lockout would hit, unreachable addresses, bad tokens.

use crate::support::{Env, OWNER_TOKEN, ipgate_command, s};

#[test]
fn every_field_violation_is_printed_on_its_own_line() {
    let env = Env::start();
    env.ipgate(&["apis", "create", "orders"]).ok();
    let key = env.json(&["keys", "create", "--api", "orders", "--name", "k"]);
    let id = s(&key, "/key/id");

    let run = env.ipgate(&[
        "keys",
        "allowlist",
        "set",
        id,
        "203.0.113.0/24",
        "203.0.113.5/24",
        "010.0.0.1",
    ]);
    let err = run.failed();
    assert_eq!(run.code, Some(1));
    assert!(run.stdout.is_empty(), "nothing on stdout: {run:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines[0].starts_with("error: INVALID_ARGUMENT: 2 invalid fields"),
        "{err}"
    );
    assert!(
        lines[1].starts_with("  allowlist.entries[1].cidr: ")
            && lines[1].contains("\"203.0.113.5/24\" has host bits set; use 203.0.113.0/24"),
        "{err}"
    );
    assert!(
        lines[2].starts_with("  allowlist.entries[2].cidr: ") && lines[2].contains("010.0.0.1"),
        "{err}"
    );
    // nothing was stored
    let shown = env.json(&["keys", "allowlist", "show", id]);
    assert!(shown.pointer("/allowlist/entries").is_none(), "{shown:#}");

    // a bad API slug is one violation too
    let run = env.ipgate(&["apis", "create", "Not A Slug"]);
    let err = run.failed();
    assert!(
        err.starts_with("error: INVALID_ARGUMENT: 1 invalid field"),
        "{err}"
    );
    assert!(
        err.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("  slug: ")),
        "{err}"
    );
}

#[test]
fn a_lockout_risk_names_the_addresses_and_how_to_proceed() {
    let env = Env::start();
    env.ipgate(&["apis", "create", "orders"]).ok();
    let key = env.json(&["keys", "create", "--api", "orders", "--name", "k"]);
    let id = s(&key, "/key/id").to_owned();
    let secret = s(&key, "/secret").to_owned();
    env.wait_live();

    // Two callers use the key from two addresses.
    for ip in ["203.0.113.5", "203.0.113.5", "198.51.100.7"] {
        assert_eq!(env.request("orders", &secret, ip, "/"), 200);
    }
    env.wait_logged(&["--key", &id], 3);

    // A list holding neither would lock both out.
    let run = env.ipgate(&["keys", "allowlist", "set", &id, "192.0.2.0/24=New office"]);
    let err = run.failed();
    assert!(err.starts_with("error: FAILED_PRECONDITION"), "{err}");
    assert!(err.contains("LOCKOUT_RISK"), "{err}");
    assert!(
        err.contains("203.0.113.5") && err.contains("198.51.100.7"),
        "{err}"
    );
    assert!(err.contains("--acknowledge-lockout-risk"), "{err}");
    assert!(err.contains("--dry-run"), "{err}");
    let shown = env.json(&["keys", "allowlist", "show", &id]);
    assert!(
        shown.pointer("/allowlist/entries").is_none(),
        "nothing stored: {shown:#}"
    );

    // The dry run previews the same callers, busiest first.
    let dry = env.json(&["keys", "allowlist", "set", &id, "192.0.2.0/24", "--dry-run"]);
    assert_eq!(dry["lockout"]["totalCallers"], 2, "{dry:#}");
    assert_eq!(s(&dry, "/lockout/callers/0/clientIp"), "203.0.113.5");
    assert_eq!(s(&dry, "/lockout/callers/0/requests"), "2");
    let human = env.ipgate(&["keys", "allowlist", "set", &id, "192.0.2.0/24", "--dry-run"]);
    let out = human.ok();
    assert!(out.contains("Lockout risk: 2 addresses seen"), "{out}");
    assert!(
        out.contains("CLIENT IP") && out.contains("198.51.100.7"),
        "{out}"
    );

    // Acknowledged, it is stored (either spelling).
    let stored = env.json(&[
        "keys",
        "allowlist",
        "set",
        &id,
        "192.0.2.0/24",
        "--yes-lock-out",
    ]);
    assert_eq!(s(&stored, "/key/allowlist/entries/0/cidr"), "192.0.2.0/24");
    env.wait_live();
    assert_eq!(env.request("orders", &secret, "203.0.113.5", "/"), 403);
}

#[test]
fn an_unreachable_address_is_named_with_what_to_do() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = ipgate_command(dir.path())
        .args(["apis", "list", "--addr", "127.0.0.1:1"])
        .env("IPGATE_TOKEN", OWNER_TOKEN)
        .output()
        .expect("run ipgate");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http://127.0.0.1:1"), "{err}");
    assert!(
        err.contains("--addr") && err.contains("IPGATE_ADDR"),
        "{err}"
    );

    // Without a token nothing is sent, and the message says where to get one.
    let out = ipgate_command(dir.path())
        .args(["keys", "list"])
        .output()
        .expect("run ipgate");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("IPGATE_TOKEN") && err.contains(".ipgate/admin-token"),
        "{err}"
    );
}

#[test]
fn an_address_is_named_without_its_password() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = ipgate_command(dir.path())
        .args(["apis", "list", "--addr", "http://ops:hunter2@127.0.0.1:1"])
        .env("IPGATE_TOKEN", OWNER_TOKEN)
        .output()
        .expect("run ipgate");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http://ops:***@127.0.0.1:1"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn bad_tokens_and_roles_are_told_apart() {
    let env = Env::start();
    let run = env.ipgate_as("ipg_admin_not-a-real-token", &["apis", "list"]);
    let err = run.failed();
    assert!(err.starts_with("error: UNAUTHENTICATED"), "{err}");
    assert!(err.contains("IPGATE_TOKEN"), "{err}");

    let viewer = env.json(&["tokens", "create", "auditor", "--role", "viewer"]);
    let secret = s(&viewer, "/secret").to_owned();
    env.ipgate_as(&secret, &["apis", "list"]).ok();
    let run = env.ipgate_as(&secret, &["apis", "create", "orders"]);
    let err = run.failed();
    assert!(err.starts_with("error: PERMISSION_DENIED"), "{err}");
    assert!(err.contains("role"), "{err}");
    // a revoked token stops working at once
    env.ipgate(&["tokens", "revoke", s(&viewer, "/token/id")])
        .ok();
    let run = env.ipgate_as(&secret, &["apis", "list"]);
    assert!(run.failed().contains("UNAUTHENTICATED"), "{run:?}");
}
