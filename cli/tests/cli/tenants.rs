//! `ipgate tenants`, `ipgate tokens`, `ipgate audit list` and
//! `ipgate revision status`.

use serde_json::Value;

use crate::support::{Env, s};

#[test]
fn tenants_and_tokens_are_managed() {
    let env = Env::start();

    let dry = env.json(&["tenants", "create", "acme", "--name", "Acme", "--dry-run"]);
    assert!(dry.get("ownerSecret").is_none(), "{dry:#}");
    let human = env.ipgate(&["tenants", "create", "acme", "--name", "Acme Corp"]);
    let out = human.ok();
    assert!(
        out.contains("acme") && out.contains("shown only now"),
        "{out}"
    );
    let secret = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("ipg_admin_"))
        .unwrap_or_else(|| panic!("no owner token in:\n{out}"))
        .to_owned();

    let tenants = env.json(&["tenants", "list"]);
    let ids: Vec<&str> = tenants["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| t["id"].as_str().expect("id"))
        .collect();
    assert!(
        ids.contains(&"default") && ids.contains(&"acme"),
        "{tenants:#}"
    );
    assert!(env.ipgate(&["tenants", "list"]).ok().contains("Acme Corp"));

    // The new tenant's owner sees only its own tokens.
    let theirs = env.ipgate_as(&secret, &["tokens", "list", "--json"]);
    let theirs: Value = serde_json::from_str(theirs.ok()).expect("json");
    assert_eq!(s(&theirs, "/tokens/0/tenant"), "acme");

    let created = env.json(&["tokens", "create", "ci", "--role", "editor"]);
    assert_eq!(s(&created, "/token/role"), "TOKEN_ROLE_EDITOR");
    assert!(s(&created, "/secret").starts_with("ipg_admin_"));
    let enforcer = env.ipgate(&["tokens", "create", "edge-1", "--role", "enforcer"]);
    assert!(enforcer.ok().contains("shown only now"), "{enforcer:?}");
    env.json(&[
        "tokens",
        "create",
        "nobody",
        "--role",
        "viewer",
        "--dry-run",
    ]);

    let id = s(&created, "/token/id").to_owned();
    let revoked = env.json(&["tokens", "revoke", &id]);
    assert!(revoked.get("revokedAt").is_some(), "{revoked:#}");
    let active = env.json(&["tokens", "list"]);
    let names = |v: &Value| -> Vec<String> {
        v["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .map(|t| t["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert!(!names(&active).contains(&"ci".to_owned()), "{active:#}");
    assert!(
        !names(&active).contains(&"nobody".to_owned()),
        "dry run stored nothing"
    );
    let all = env.json(&["tokens", "list", "--include-revoked"]);
    assert!(names(&all).contains(&"ci".to_owned()), "{all:#}");
    let table = env.ipgate(&["tokens", "list", "--include-revoked"]);
    let out = table.ok();
    assert!(out.starts_with("ID") && out.contains("editor"), "{out}");
}

#[test]
fn the_audit_log_shows_who_changed_what() {
    let env = Env::start();
    env.ipgate(&["apis", "create", "orders"]).ok();
    let key = env.json(&["keys", "create", "--api", "orders", "--name", "k"]);
    let id = s(&key, "/key/id").to_owned();
    env.ipgate(&["keys", "allowlist", "add", &id, "203.0.113.0/24"])
        .ok();

    let all = env.json(&["audit", "list"]);
    let events = all["events"].as_array().expect("events");
    assert!(events.len() >= 3, "{all:#}");
    let actor = s(&events[0], "/actorTokenId").to_owned();

    let for_key = env.json(&[
        "audit",
        "list",
        "--object-type",
        "api-key",
        "--object-id",
        &id,
    ]);
    let events = for_key["events"].as_array().expect("events");
    assert_eq!(events.len(), 2, "{for_key:#}");
    assert_eq!(s(&events[0], "/objectType"), "api_key");
    assert!(
        s(&events[0], "/afterJson").contains("203.0.113.0/24"),
        "{for_key:#}"
    );
    let by_actor = env.json(&["audit", "list", "--actor", &actor, "--since", "1h"]);
    assert!(by_actor["events"].as_array().is_some_and(|e| e.len() >= 3));
    let none = env.json(&["audit", "list", "--until", "2000-01-01T00:00:00Z"]);
    assert!(none.get("events").is_none(), "{none:#}");
    let paged = env.json(&["audit", "list", "--limit", "1"]);
    assert!(paged.get("nextPageToken").is_some(), "{paged:#}");

    let human = env.ipgate(&["audit", "list", "--object-id", &id]);
    let out = human.ok();
    assert!(out.starts_with("TIME") && out.contains(&actor), "{out}");
    let human = env.ipgate(&["audit", "list", "--object-id", &id, "--changes"]);
    let out = human.ok();
    assert!(out.contains("before:") && out.contains("after:"), "{out}");
}

#[test]
fn revision_status_tells_when_a_change_is_live() {
    let env = Env::start();
    let api = env.json(&["apis", "create", "orders"]);
    let revision = s(&api, "/revision").to_owned();

    let run = env.ipgate(&["revision", "status", &revision, "--wait", "20s"]);
    let out = run.ok();
    assert!(out.contains("Live:") && out.contains("yes"), "{out}");
    assert!(out.contains("cli-test-enforcer"), "{out}");
    let status = env.json(&["revision", "status", &revision]);
    assert_eq!(status["live"], true, "{status:#}");
    assert_eq!(s(&status, "/revision"), revision);
    assert_eq!(s(&status, "/enforcers/0/enforcerId"), "cli-test-enforcer");
    let current = env.json(&["revision", "status"]);
    assert_eq!(s(&current, "/revision"), s(&current, "/currentRevision"));
}

#[test]
fn audit_events_without_a_revision_show_none() {
    let env = Env::start();
    let token = env.json(&["tokens", "create", "ci", "--role", "editor"]);
    let token_id = s(&token, "/token/id").to_owned();
    let api = env.json(&["apis", "create", "orders"]);
    let revision = s(&api, "/revision").to_owned();

    // The table: a token write has no revision, an API write has its own.
    let out = env.ipgate(&["audit", "list"]).ok().to_owned();
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let column = header
        .iter()
        .position(|h| *h == "REVISION")
        .unwrap_or_else(|| panic!("no REVISION column:\n{out}"));
    // Every cell before REVISION is one word except OBJECT (`token tok_…`).
    let cell = |needle: &str| -> String {
        let row = out
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no row with {needle}:\n{out}"));
        row.split_whitespace()
            .nth(column + 1)
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(cell(&format!("token {token_id}")), "-", "{out}");
    assert_eq!(cell("api orders"), revision, "{out}");

    let changes = env.ipgate(&["audit", "list", "--changes"]).ok().to_owned();
    let token_line = changes
        .lines()
        .find(|l| l.contains(&token_id))
        .unwrap_or_else(|| panic!("no token event:\n{changes}"));
    assert!(!token_line.contains("revision"), "{changes}");
    let api_line = changes
        .lines()
        .find(|l| l.contains("api orders"))
        .unwrap_or_else(|| panic!("no API event:\n{changes}"));
    assert!(
        api_line.ends_with(&format!("(revision {revision})")),
        "{changes}"
    );

    // JSON stays what grpcurl prints: proto3 JSON leaves a zero out.
    let all = env.json(&["audit", "list"]);
    let events = all["events"].as_array().expect("events");
    let token_event = events
        .iter()
        .find(|e| e["objectId"] == token_id.as_str())
        .unwrap_or_else(|| panic!("no token event: {all:#}"));
    assert!(token_event.get("revision").is_none(), "{token_event:#}");
    let api_event = events
        .iter()
        .find(|e| e["objectId"] == "orders")
        .unwrap_or_else(|| panic!("no API event: {all:#}"));
    assert_eq!(s(api_event, "/revision"), revision);
}
