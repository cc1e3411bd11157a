//! `ipgate keys create|get|list|update|revoke|rotate` and `ipgate test-access`.

use crate::support::{Env, s};

#[test]
fn keys_are_created_listed_updated_rotated_and_revoked() {
    let env = Env::start();
    env.ipgate(&[
        "apis",
        "create",
        "orders",
        "--route",
        "POST /orders=orders:write",
    ])
    .ok();

    // The secret is printed once, with a note that it is shown only now.
    let human = env.ipgate(&[
        "keys",
        "create",
        "--api",
        "orders",
        "--name",
        "reporting job",
        "--scope",
        "orders:read",
        "--expires-in",
        "30d",
    ]);
    let out = human.ok();
    assert!(out.contains("ipg_live_"), "{out}");
    assert!(out.contains("shown only now"), "{out}");

    let created = env.json(&[
        "keys",
        "create",
        "--api",
        "orders",
        "--name",
        "deploy bot",
        "--description",
        "CI deploys",
        "--scope",
        "orders:write",
        "--allow",
        "203.0.113.0/24=Office",
        "--allow",
        "198.51.100.7",
    ]);
    let id = s(&created, "/key/id").to_owned();
    let secret = s(&created, "/secret").to_owned();
    assert!(
        secret.starts_with(&format!("ipg_live_{id}_")),
        "{created:#}"
    );
    assert_eq!(s(&created, "/key/allowlist/entries/0/label"), "Office");
    assert_eq!(
        s(&created, "/key/allowlist/entries/1/cidr"),
        "198.51.100.7/32"
    );

    let dry = env.json(&[
        "keys",
        "create",
        "--api",
        "orders",
        "--name",
        "x",
        "--dry-run",
    ]);
    assert!(
        dry.get("secret").is_none(),
        "a dry run shows no secret: {dry:#}"
    );

    let got = env.json(&["keys", "get", &id]);
    assert_eq!(s(&got, "/name"), "deploy bot");
    assert_eq!(s(&got, "/status"), "API_KEY_STATUS_ACTIVE");
    assert!(got.get("secret").is_none());
    let human = env.ipgate(&["keys", "get", &id]);
    let out = human.ok();
    assert!(
        out.contains("deploy bot") && out.contains("203.0.113.0/24"),
        "{out}"
    );
    assert!(!out.contains(&secret), "get never shows the secret");

    // List with filters.
    let all = env.json(&["keys", "list", "--api", "orders"]);
    assert_eq!(all["keys"].as_array().map(Vec::len), Some(2), "{all:#}");
    let named = env.json(&["keys", "list", "--name-contains", "DEPLOY"]);
    assert_eq!(s(&named, "/keys/0/id"), id);
    let with = env.json(&["keys", "list", "--with-allowlist"]);
    assert_eq!(with["keys"].as_array().map(Vec::len), Some(1), "{with:#}");
    let without = env.json(&["keys", "list", "--without-allowlist"]);
    assert_eq!(s(&without, "/keys/0/name"), "reporting job");
    let table = env.ipgate(&["keys", "list", "--limit", "1"]);
    let out = table.ok();
    assert!(out.starts_with("ID"), "{out}");
    assert!(
        out.contains("--page-token"),
        "one per page leaves a next page: {out}"
    );

    // Update.
    let etag = s(&got, "/etag").to_owned();
    let updated = env.json(&[
        "keys",
        "update",
        &id,
        "--name",
        "deploy robot",
        "--scope",
        "orders:read",
        "--scope",
        "orders:write",
        "--etag",
        &etag,
    ]);
    assert_eq!(s(&updated, "/name"), "deploy robot");
    assert_eq!(updated["scopes"].as_array().map(Vec::len), Some(2));
    let nothing = env.ipgate(&["keys", "update", &id]);
    assert_eq!(nothing.code, Some(2), "nothing to change: {nothing:?}");
    let cleared = env.json(&["keys", "update", &id, "--clear-scopes"]);
    assert!(cleared.get("scopes").is_none(), "{cleared:#}");

    // Rotate with a grace period: a new secret, the same id and list.
    let rotated = env.json(&["keys", "rotate", &id, "--grace", "1h"]);
    let new_secret = s(&rotated, "/secret");
    assert_ne!(new_secret, secret);
    assert_eq!(s(&rotated, "/key/id"), id);
    assert!(
        rotated.pointer("/key/previousSecretExpiresAt").is_some(),
        "{rotated:#}"
    );
    assert_eq!(
        s(&rotated, "/key/allowlist/entries/0/cidr"),
        "203.0.113.0/24"
    );
    // Without a grace period every older secret stops at once, also the
    // one rotated away with a grace period before.
    let human = env.ipgate(&["keys", "rotate", &id]);
    let out = human.ok();
    assert!(out.contains("the old secret no longer works"), "{out}");
    assert!(out.contains("shown only now"), "{out}");
    let other = s(
        &env.json(&["keys", "list", "--name-contains", "reporting"]),
        "/keys/0/id",
    )
    .to_owned();
    let human = env.ipgate(&["keys", "rotate", &other, "--grace", "0s"]);
    assert!(
        human.ok().contains("the old secret no longer works"),
        "{human:?}"
    );

    // Revoke: a dry run leaves it active.
    env.ipgate(&["keys", "revoke", &id, "--dry-run"]).ok();
    assert_eq!(
        s(&env.json(&["keys", "get", &id]), "/status"),
        "API_KEY_STATUS_ACTIVE"
    );
    let revoked = env.json(&["keys", "revoke", &id]);
    assert_eq!(s(&revoked, "/status"), "API_KEY_STATUS_REVOKED");
    let listed = env.json(&["keys", "list", "--status", "revoked"]);
    assert_eq!(s(&listed, "/keys/0/id"), id);
}

#[test]
fn test_access_tells_the_decision_and_the_matching_entry() {
    let env = Env::start();
    env.ipgate(&["apis", "create", "orders"]).ok();
    let created = env.json(&[
        "keys",
        "create",
        "--api",
        "orders",
        "--name",
        "k",
        "--allow",
        "203.0.113.0/24=Office",
    ]);
    let id = s(&created, "/key/id").to_owned();

    let allowed = env.json(&[
        "test-access",
        "--api",
        "orders",
        "--key",
        &id,
        "--ip",
        "203.0.113.5",
    ]);
    assert_eq!(allowed["allowed"], true, "{allowed:#}");
    assert_eq!(s(&allowed, "/matchedEntry/label"), "Office");
    assert_eq!(s(&allowed, "/matchedList"), "api_key");

    let blocked = env.json(&[
        "test-access",
        "--api",
        "orders",
        "--key",
        &id,
        "--ip",
        "198.51.100.7",
        "--method",
        "POST",
        "--path",
        "/orders",
    ]);
    assert!(
        blocked.get("allowed").is_none(),
        "false is left out: {blocked:#}"
    );
    assert_eq!(blocked["httpStatus"], 403);
    assert_eq!(s(&blocked, "/reason"), "IP_NOT_ALLOWED_KEY");

    let human = env.ipgate(&[
        "test-access",
        "--api",
        "orders",
        "--key",
        &id,
        "--ip",
        "198.51.100.7",
    ]);
    let out = human.ok();
    assert!(out.starts_with("BLOCKED: 198.51.100.7 gets 403"), "{out}");
    assert!(
        out.contains("API key's allowlist"),
        "the exact body is shown: {out}"
    );
    let human = env.ipgate(&[
        "test-access",
        "--api",
        "orders",
        "--key",
        &id,
        "--ip",
        "203.0.113.9",
    ]);
    let out = human.ok();
    assert!(out.starts_with("ALLOWED"), "{out}");
    assert!(
        out.contains("203.0.113.0/24 \"Office\" on the key's allowlist"),
        "{out}"
    );
}

/// `--json` prints what grpcurl prints for the same call.
#[test]
fn json_output_is_what_grpcurl_prints() {
    if std::process::Command::new("grpcurl")
        .arg("-version")
        .output()
        .is_err()
    {
        crate::support::skip("grpcurl is not installed; tests/run.sh installs it");
        return;
    }
    let env = Env::start();
    env.ipgate(&[
        "apis",
        "create",
        "orders",
        "--route",
        "POST /orders=orders:write",
    ])
    .ok();
    let created = env.json(&[
        "keys",
        "create",
        "--api",
        "orders",
        "--name",
        "k",
        "--allow",
        "203.0.113.0/24=Office",
        "--expires-in",
        "1d",
    ]);
    let id = s(&created, "/key/id").to_owned();
    let target = env.addr.trim_start_matches("http://").to_owned();
    let grpcurl = |method: &str, body: &str| -> serde_json::Value {
        let out = std::process::Command::new("grpcurl")
            .args(["-plaintext", "-H"])
            .arg(format!(
                "authorization: Bearer {}",
                crate::support::OWNER_TOKEN
            ))
            .args(["-d", body, &target])
            .arg(format!("ipgate.admin.v1.AdminService/{method}"))
            .output()
            .expect("run grpcurl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("grpcurl prints JSON")
    };
    assert_eq!(
        env.json(&["apis", "get", "orders"]),
        grpcurl("GetApi", r#"{"slug": "orders"}"#)
    );
    assert_eq!(
        env.json(&["keys", "get", &id]),
        grpcurl("GetApiKey", &format!(r#"{{"id": "{id}"}}"#))
    );
    assert_eq!(
        env.json(&["revision", "status", "1"]).get("revision"),
        grpcurl("GetRevisionStatus", r#"{"revision": 1}"#).get("revision")
    );
}
