//! `--help` of the binary and of each admin group names what it offers.

use crate::support::ipgate_command;

fn help(args: &[&str]) -> String {
    let dir = std::env::temp_dir();
    let out = ipgate_command(&dir)
        .args(args)
        .arg("--help")
        .output()
        .expect("run ipgate");
    assert!(out.status.success(), "{args:?} --help failed");
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn every_group_documents_its_commands_and_flags() {
    let top = help(&[]);
    for group in [
        "tenants",
        "tokens",
        "apis",
        "keys",
        "test-access",
        "logs",
        "audit",
        "revision",
        "dev",
    ] {
        assert!(top.contains(group), "ipgate --help lacks {group}:\n{top}");
    }
    for (group, commands) in [
        ("tenants", &["create", "list"][..]),
        ("tokens", &["create", "list", "revoke"]),
        (
            "apis",
            &["create", "get", "list", "update", "delete", "allowlist"],
        ),
        (
            "keys",
            &[
                "create",
                "get",
                "list",
                "update",
                "revoke",
                "rotate",
                "allowlist",
            ],
        ),
        ("logs", &["query", "export"]),
        ("audit", &["list"]),
        ("revision", &["status"]),
    ] {
        let text = help(&[group]);
        for command in commands {
            assert!(
                text.contains(&format!("  {command} ")),
                "{group} --help lacks {command}:\n{text}"
            );
        }
        for flag in ["--addr", "IPGATE_ADDR", "--token", "IPGATE_TOKEN", "--json"] {
            assert!(text.contains(flag), "{group} --help lacks {flag}:\n{text}");
        }
    }
    for group in ["apis", "keys"] {
        let text = help(&[group, "allowlist"]);
        for command in ["show", "set", "add", "remove", "update"] {
            assert!(text.contains(&format!("  {command} ")), "{text}");
        }
        let add = help(&[group, "allowlist", "add"]);
        for flag in [
            "--label",
            "--expires-in",
            "--expires-at",
            "--etag",
            "--dry-run",
            "--acknowledge-lockout-risk",
            "--yes-lock-out",
        ] {
            assert!(
                add.contains(flag),
                "{group} allowlist add --help lacks {flag}:\n{add}"
            );
        }
    }
    for command in ["query", "export"] {
        let logs = help(&["logs", command]);
        for flag in [
            "--api",
            "--key",
            "--status",
            "--reason",
            "--ip",
            "--door",
            "--ip-source",
            "--since",
        ] {
            assert!(
                logs.contains(flag),
                "logs {command} --help lacks {flag}:\n{logs}"
            );
        }
    }
    let access = help(&["test-access"]);
    for flag in ["--api", "--key", "--ip", "--method", "--path"] {
        assert!(access.contains(flag), "{access}");
    }
    // The token's value never shows in help, even when it is set.
    let dir = std::env::temp_dir();
    let out = ipgate_command(&dir)
        .args(["keys", "--help"])
        .env("IPGATE_TOKEN", "ipg_admin_secret-value")
        .output()
        .expect("run ipgate");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("secret-value"));
}
